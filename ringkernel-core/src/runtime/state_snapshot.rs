//! Kernel state that leaves the runtime and comes back: [`StateSnapshot`].
//!
//! `KernelHandle::export_state` seals a kernel's saved state as a snapshot of a new
//! **generation** (a per-kernel number that only grows, persisted in the state
//! directory); the caller keeps the bytes. `KernelHandle::restore_state(snapshot,
//! generation)` takes it back only when the snapshot is of that kernel, of exactly that
//! generation, and that generation is the latest exported: an older snapshot, or one
//! of another kernel or keystore, is refused (`StaleSnapshot`, `WrongContext`,
//! `Tampered`) and the refusal is audited. The generation and kernel are authenticated
//! (the envelope's context), so there is no way to restore one silently.
//!
//! A snapshot names no runtime instance, so a restarted runtime with the same keys (a
//! [`Keystore`](crate::security::keystore::Keystore)) and state directory restores it.

use super::gate::Gate;
use super::registry::KernelEntry;
use crate::error::{Error, Result};
use crate::k2k::KernelId;
use crate::security::audit::{Event, Refusal};
use crate::security::encryption::{ContextId, InstanceId, SequenceCheck};

const MAGIC: &[u8; 4] = b"RKSN";
const VERSION: u8 = 1;
/// The region name snapshots are sealed under (with the generation as incarnation).
const REGION: &str = "state-snapshot";
/// Associated data of every snapshot envelope.
const AAD: &[u8] = b"ringkernel/state-snapshot/v1";

/// A kernel's saved state, sealed to leave the runtime: see the module docs. The
/// kernel id and generation in front of the envelope are for reading; the envelope
/// authenticates both.
#[derive(Clone, PartialEq, Eq)]
pub struct StateSnapshot {
    kernel: KernelId,
    generation: u32,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for StateSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSnapshot")
            .field("kernel", &self.kernel)
            .field("generation", &self.generation)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl StateSnapshot {
    /// The kernel it was exported from.
    pub fn kernel(&self) -> &KernelId {
        &self.kernel
    }

    /// Its generation (1 for the first export of the kernel id).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The bytes to store: `RKSN`, version, kernel id length (u16 LE), kernel id,
    /// generation (u32 LE), then the sealed STREAM envelope.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Parses stored bytes (checks the form only; `restore_state` authenticates).
    /// Malformed input is [`Error::MalformedEnvelope`], never a panic.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let bad = |why: &str| Error::MalformedEnvelope(format!("state snapshot: {why}"));
        if bytes.len() < 7 || &bytes[..4] != MAGIC {
            return Err(bad("not a state snapshot"));
        }
        if bytes[4] != VERSION {
            return Err(bad("unsupported version"));
        }
        let id_len = usize::from(u16::from_le_bytes([bytes[5], bytes[6]]));
        let id_end = 7 + id_len;
        let (Some(id), Some(generation)) = (bytes.get(7..id_end), bytes.get(id_end..id_end + 4))
        else {
            return Err(bad("truncated header"));
        };
        let id = std::str::from_utf8(id).map_err(|_| bad("kernel id is not UTF-8"))?;
        let kernel = KernelId::new(id)?;
        let generation =
            u32::from_le_bytes([generation[0], generation[1], generation[2], generation[3]]);
        Ok(StateSnapshot {
            kernel,
            generation,
            bytes,
        })
    }

    fn envelope(&self) -> &[u8] {
        &self.bytes[7 + self.kernel.as_str().len() + 4..]
    }
}

/// The context of generation `generation` of kernel `kernel`'s snapshots: no runtime
/// instance (restorable after a restart), the generation in the incarnation slot.
fn context(kernel: &KernelId, generation: u32) -> ContextId {
    ContextId::bound(&InstanceId([0; 16]), kernel.as_str(), generation, REGION)
}

impl Gate {
    /// The encryption snapshots are sealed with: the kernel-state encryption.
    fn snapshot_encryption(&self) -> Result<&crate::security::encryption::MemoryEncryption> {
        self.sealing.state_encryption().ok_or_else(|| {
            Error::InvalidConfig(
                "state snapshots are sealed with the kernel-state encryption, which is off; \
                 enable memory encryption with kernel-state sealing"
                    .into(),
            )
        })
    }

    /// Seals the kernel's saved state as the next snapshot generation.
    pub(crate) fn export_state(&self, entry: &KernelEntry) -> Result<Option<StateSnapshot>> {
        let enc = self.snapshot_encryption()?;
        self.ensure_audited()?;
        let Some(state) = self.load_state(entry)? else {
            return Ok(None);
        };
        let generation = self.snapshots.next(&entry.id)?;
        let envelope = enc.seal_stream(
            context(&entry.id, generation),
            u64::from(generation),
            &state,
            AAD,
        )?;
        let id = entry.id.as_str().as_bytes();
        let id_len = u16::try_from(id.len()).map_err(|_| Error::TooLarge {
            what: "kernel id in a snapshot",
            len: id.len() as u64,
            max: u64::from(u16::MAX),
        })?;
        let mut bytes = Vec::with_capacity(11 + id.len() + envelope.len());
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        bytes.extend_from_slice(&id_len.to_le_bytes());
        bytes.extend_from_slice(id);
        bytes.extend_from_slice(&generation.to_le_bytes());
        bytes.extend_from_slice(&envelope);
        self.audit(|| Event::StateExport {
            kernel: entry.id.clone(),
            generation,
        });
        Ok(Some(StateSnapshot {
            kernel: entry.id.clone(),
            generation,
            bytes,
        }))
    }

    /// Restores `snapshot` as the kernel's state if it is generation `expected` of
    /// this kernel and `expected` is the latest exported; audits either way.
    pub(crate) fn restore_state(
        &self,
        entry: &KernelEntry,
        snapshot: &StateSnapshot,
        expected: u32,
    ) -> Result<()> {
        let result = self
            .ensure_audited()
            .and_then(|()| self.restore_checked(entry, snapshot, expected));
        self.audit(|| Event::StateRestore {
            kernel: entry.id.clone(),
            expected_generation: expected,
            offered_generation: snapshot.generation,
            // A stale, foreign or forged snapshot is refused, not an accident.
            refusal: result.as_ref().err().map(|e| Refusal {
                error: e.to_string(),
                error_code: e.code(),
            }),
        });
        result
    }

    fn restore_checked(
        &self,
        entry: &KernelEntry,
        snapshot: &StateSnapshot,
        expected: u32,
    ) -> Result<()> {
        let enc = self.snapshot_encryption()?;
        let latest = self.snapshots.current(&entry.id);
        if expected != latest {
            // Naming an older generation than the latest exported is asking for a
            // rollback; naming one never exported here is a snapshot from elsewhere.
            return Err(Error::StaleSnapshot {
                kernel: entry.id.to_string(),
                expected: latest,
                found: expected,
            });
        }
        let plain = enc
            .open_stream(
                snapshot.envelope(),
                context(&entry.id, expected),
                SequenceCheck::Exact(u64::from(expected)),
                AAD,
            )
            .map_err(|e| match e {
                // The envelope is of another generation of this kernel's snapshots.
                Error::StaleIncarnation { expected, found } => Error::StaleSnapshot {
                    kernel: entry.id.to_string(),
                    expected,
                    found,
                },
                Error::Replay { .. } => Error::StaleSnapshot {
                    kernel: entry.id.to_string(),
                    expected,
                    found: snapshot.generation,
                },
                other => other,
            })?;
        if snapshot.generation != expected {
            // The envelope opened under the generation named, but the label outside
            // it (which the envelope does not authenticate) says another: it was
            // changed. Refused, so that what callers and the audit record read is
            // never a forged generation.
            return Err(Error::StaleSnapshot {
                kernel: entry.id.to_string(),
                expected,
                found: snapshot.generation,
            });
        }
        if snapshot.kernel != entry.id {
            // The same for the kernel id in the label: the envelope opened under this
            // kernel's context, so the label was changed.
            return Err(Error::WrongContext);
        }
        self.save_state(entry, &plain)
    }
}
