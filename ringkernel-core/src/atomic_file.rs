//! Files replaced atomically: the one way the audit log (heads, checkpoints,
//! watermarks), the keystore and the per-kernel counters write what must survive a
//! crash whole. The bytes go to a temporary file beside the target, are synced, renamed
//! over the target, and the directory is synced: a crash leaves the old file or the
//! new one, never a mix. A write that fails (a full disk) leaves the old file as it was
//! and removes its temporary file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Who may read the file written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// As the process's umask says.
    Default,
    /// Its owner only (mode 600 on Unix): for secrets at rest.
    OwnerOnly,
}

/// Replaces `path` with `bytes` atomically (see the module docs).
pub(crate) fn write(path: &Path, bytes: &[u8], access: Access) -> Result<()> {
    // Beside the target, named after its whole file name (`.soc2.md.tmp`), so that it
    // never replaces another file of the caller's.
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let written = write_synced(&tmp, bytes, access).and_then(|()| {
        std::fs::rename(&tmp, path)?;
        Ok(())
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Writes `bytes` to a new `tmp` and syncs it.
fn write_synced(tmp: &Path, bytes: &[u8], access: Access) -> Result<()> {
    {
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if access == Access::OwnerOnly {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(tmp).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("create {}: {e}", tmp.display()),
            ))
        })?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    Ok(())
}
