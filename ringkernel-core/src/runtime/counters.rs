//! Per-kernel counters that only grow and are never reused: launch incarnations (bound
//! into the context of everything a launch seals) and state-snapshot generations
//! (bound into every exported snapshot). Each count is persisted before the number is
//! used, so a restarted runtime continues it instead of starting again at 1:
//!
//! - with a keystore, in the keystore's authenticated part (lowering a count then
//!   needs the KEK, or an older copy of the whole keystore); counts found in the
//!   plain files of an earlier version are taken over once (raising, never lowering)
//!   and the files removed;
//! - with a state directory alone, in a plain file each (`incarnations.json`,
//!   `snapshots.json`), replaced atomically: whoever can write the directory can
//!   lower a count (docs/threat-model.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::k2k::KernelId;
use crate::security::keystore::{CountKind, Keystore};

/// The file in the state directory holding launch incarnations.
pub(crate) const INCARNATIONS: &str = "incarnations.json";
/// The file in the state directory holding state-snapshot generations.
pub(crate) const SNAPSHOTS: &str = "snapshots.json";

/// Where a [`Counters`] keeps its counts.
#[derive(Debug)]
enum Store {
    /// In memory only.
    Memory(Mutex<BTreeMap<String, u32>>),
    /// In memory, written to a plain file before a number is used.
    File(PathBuf, Mutex<BTreeMap<String, u32>>),
    /// In the keystore, which holds them (shared by every runtime built from it).
    Keystore(Keystore, CountKind),
}

#[derive(Debug)]
pub(crate) struct Counters {
    store: Store,
    /// What is counted, for messages ("incarnation", "snapshot generation").
    what: &'static str,
}

impl Counters {
    /// Counts kept in memory only (no state directory): they start at 1 in every
    /// runtime instance, whose random id already separates them from any other.
    pub(crate) fn in_memory(what: &'static str) -> Self {
        Counters {
            store: Store::Memory(Mutex::new(BTreeMap::new())),
            what,
        }
    }

    /// Counts persisted in `dir/file_name` (created if missing), continuing what is
    /// there.
    pub(crate) fn in_directory(dir: &Path, file_name: &str, what: &'static str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = dir.join(file_name);
        let counts = read_file(&file)?.unwrap_or_default();
        Ok(Counters {
            store: Store::File(file, Mutex::new(counts)),
            what,
        })
    }

    /// Counts kept in `keystore` (its `kind`; the keystore holds them, shared by every
    /// runtime built from it), after taking over those of the plain file
    /// `state_dir/file_name` an earlier version wrote, if there is one: raised to them
    /// (never lowered), written to the keystore, then the file is removed.
    pub(crate) fn in_keystore(
        keystore: &Keystore,
        kind: CountKind,
        state_dir: &Path,
        file_name: &str,
        what: &'static str,
    ) -> Result<Self> {
        let file = state_dir.join(file_name);
        if let Some(earlier) = read_file(&file)? {
            keystore.update_counts(kind, |counts| {
                for (id, n) in earlier {
                    let at = counts.entry(id).or_insert(0);
                    *at = (*at).max(n);
                }
                Ok(())
            })?;
            match std::fs::remove_file(&file) {
                // Another runtime built at the same time took it over first.
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            tracing::info!(file = %file.display(), "per-kernel counts moved into the keystore");
        }
        Ok(Counters {
            store: Store::Keystore(keystore.clone(), kind),
            what,
        })
    }

    /// The last number issued for kernel `id` (0: none yet).
    pub(crate) fn current(&self, id: &KernelId) -> u32 {
        match &self.store {
            Store::Memory(counts) | Store::File(_, counts) => {
                counts.lock().get(id.as_str()).copied().unwrap_or(0)
            }
            Store::Keystore(keystore, kind) => keystore.count(*kind, id.as_str()),
        }
    }

    /// The next number of kernel `id`, recorded (and persisted) before it is
    /// returned; a count that would wrap is refused.
    pub(crate) fn next(&self, id: &KernelId) -> Result<u32> {
        let bump = |counts: &mut BTreeMap<String, u32>| {
            let last = counts.get(id.as_str()).copied().unwrap_or(0);
            let next = last.checked_add(1).ok_or_else(|| {
                Error::Exhausted(format!(
                    "kernel {id:?} has used {last} of its {} numbers (use another id)",
                    self.what
                ))
            })?;
            counts.insert(id.as_str().to_owned(), next);
            Ok(next)
        };
        match &self.store {
            Store::Memory(counts) => bump(&mut counts.lock()),
            Store::File(file, counts) => {
                let mut counts = counts.lock();
                let last = counts.get(id.as_str()).copied();
                let next = bump(&mut counts)?;
                if let Err(e) = persist(file, &counts) {
                    match last {
                        Some(last) => counts.insert(id.as_str().to_owned(), last),
                        None => counts.remove(id.as_str()),
                    };
                    return Err(e);
                }
                Ok(next)
            }
            Store::Keystore(keystore, kind) => keystore.update_counts(*kind, bump),
        }
    }
}

/// The counts in `file`, or `None` when there is no such file.
fn read_file(file: &Path) -> Result<Option<BTreeMap<String, u32>>> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::corrupt_caused_by("per-kernel counts", file.display().to_string(), e)
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes the counts atomically: a crash leaves the old or the new counts, whole.
fn persist(file: &Path, counts: &BTreeMap<String, u32>) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(counts)
        .map_err(|e| Error::backend_caused_by("cannot encode per-kernel counts", e))?;
    crate::atomic_file::write(file, &bytes, crate::atomic_file::Access::Default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_increase_per_kernel_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let a = KernelId::new("a").unwrap();
        let b = KernelId::new("b").unwrap();
        let inc = Counters::in_directory(dir.path(), INCARNATIONS, "incarnation").unwrap();
        assert_eq!(inc.next(&a).unwrap(), 1);
        assert_eq!(inc.next(&a).unwrap(), 2);
        assert_eq!(inc.next(&b).unwrap(), 1);
        drop(inc);
        let again = Counters::in_directory(dir.path(), INCARNATIONS, "incarnation").unwrap();
        assert_eq!(again.next(&a).unwrap(), 3);
        assert_eq!(again.next(&b).unwrap(), 2);
    }

    #[test]
    fn counters_sharing_a_keystore_never_issue_a_number_twice() {
        use crate::security::keystore::KeyEncryptionKey;
        let dir = tempfile::tempdir().unwrap();
        let ks =
            Keystore::open(dir.path(), KeyEncryptionKey::from_bytes(&[3; 32]).unwrap()).unwrap();
        let open = || {
            Counters::in_keystore(&ks, CountKind::Snapshots, dir.path(), SNAPSHOTS, "snapshot")
                .unwrap()
        };
        let (one, two) = (open(), open());
        let a = KernelId::new("a").unwrap();
        let issued = [one.next(&a), two.next(&a), one.next(&a), two.next(&a)];
        let issued: Vec<u32> = issued.into_iter().map(Result::unwrap).collect();
        assert_eq!(issued, [1, 2, 3, 4]);
        assert_eq!(one.current(&a), 4);
        assert_eq!(ks.count(CountKind::Snapshots, "a"), 4);
    }

    #[test]
    fn a_damaged_count_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SNAPSHOTS), b"{not json").unwrap();
        assert!(matches!(
            Counters::in_directory(dir.path(), SNAPSHOTS, "snapshot generation"),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn an_exhausted_count_is_refused_not_wrapped() {
        let inc = Counters::in_memory("incarnation");
        let a = KernelId::new("a").unwrap();
        let Store::Memory(counts) = &inc.store else {
            unreachable!("in_memory")
        };
        counts.lock().insert("a".into(), u32::MAX);
        assert!(matches!(inc.next(&a), Err(Error::Exhausted(_))));
        assert_eq!(inc.current(&a), u32::MAX);
    }
}
