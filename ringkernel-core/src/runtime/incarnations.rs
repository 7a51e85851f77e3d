//! Launch incarnations: a number per kernel id, strictly increasing with every launch
//! and never reused, bound into the context of everything the launch seals. With a
//! state directory the counts persist (`incarnations.json`, replaced atomically before
//! the launch proceeds), so a restarted runtime continues each kernel's count instead
//! of starting again at 1.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::k2k::KernelId;

/// The file in the state directory holding the counts.
pub(crate) const FILE_NAME: &str = "incarnations.json";

#[derive(Debug)]
pub(crate) struct Incarnations {
    counts: Mutex<BTreeMap<String, u32>>,
    file: Option<PathBuf>,
}

impl Incarnations {
    /// Counts kept in memory only (no state directory): they start at 1 in every
    /// runtime instance, whose random id already separates them from any other.
    pub(crate) fn in_memory() -> Self {
        Incarnations {
            counts: Mutex::new(BTreeMap::new()),
            file: None,
        }
    }

    /// Counts persisted in `dir` (created if missing), continuing what is there.
    pub(crate) fn in_directory(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = dir.join(FILE_NAME);
        let counts = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                what: "incarnation counts",
                reason: format!("{}: {e}", file.display()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Incarnations {
            counts: Mutex::new(counts),
            file: Some(file),
        })
    }

    /// The next incarnation of kernel `id`, recorded (and persisted) before it is
    /// returned; a count that would wrap is refused.
    pub(crate) fn next(&self, id: &KernelId) -> Result<u32> {
        let mut counts = self.counts.lock();
        let last = counts.get(id.as_str()).copied().unwrap_or(0);
        let next = last.checked_add(1).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "kernel {id:?} has been launched {last} times; its incarnation count is exhausted (use another id)"
            ))
        })?;
        counts.insert(id.as_str().to_owned(), next);
        if let Some(file) = &self.file
            && let Err(e) = persist(file, &counts)
        {
            counts.insert(id.as_str().to_owned(), last);
            return Err(e);
        }
        Ok(next)
    }
}

/// Writes the counts to a temporary file beside `file`, syncs it, renames it over
/// `file` and syncs the directory: a crash leaves the old or the new counts, whole.
fn persist(file: &Path, counts: &BTreeMap<String, u32>) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(counts)
        .map_err(|e| Error::Backend(format!("cannot encode incarnation counts: {e}")))?;
    let tmp = file.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, file)?;
    if let Some(dir) = file.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        d.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_increase_per_kernel_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let a = KernelId::new("a").unwrap();
        let b = KernelId::new("b").unwrap();
        let inc = Incarnations::in_directory(dir.path()).unwrap();
        assert_eq!(inc.next(&a).unwrap(), 1);
        assert_eq!(inc.next(&a).unwrap(), 2);
        assert_eq!(inc.next(&b).unwrap(), 1);
        drop(inc);
        let again = Incarnations::in_directory(dir.path()).unwrap();
        assert_eq!(again.next(&a).unwrap(), 3);
        assert_eq!(again.next(&b).unwrap(), 2);
    }

    #[test]
    fn a_damaged_count_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        assert!(matches!(
            Incarnations::in_directory(dir.path()),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn an_exhausted_count_is_refused_not_wrapped() {
        let inc = Incarnations::in_memory();
        let a = KernelId::new("a").unwrap();
        inc.counts.lock().insert("a".into(), u32::MAX);
        assert!(matches!(inc.next(&a), Err(Error::InvalidConfig(_))));
        assert_eq!(inc.counts.lock().get("a"), Some(&u32::MAX));
    }
}
