//! Files replaced atomically: the one way the audit log (heads, checkpoints,
//! watermarks), the keystore and the per-kernel counters write what must survive a
//! crash whole. The bytes go to a temporary file beside the target, are synced, renamed
//! over the target, and the directory is synced: a crash leaves the old file or the
//! new one, never a mix.

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
    let tmp = path.with_extension("tmp");
    {
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if access == Access::OwnerOnly {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("create {}: {e}", tmp.display()),
            ))
        })?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()?;
    Ok(())
}
