//! A kernel's saved state: stored in a device buffer of its own (a sealed STREAM when
//! kernel-state sealing is on), opened on load and re-sealed after key rotation.
//! Snapshots that leave the runtime are in `state_snapshot.rs`.

use std::sync::atomic::Ordering;

use super::gate::Gate;
use super::registry::{KernelEntry, StateSlot};
use crate::error::{Error, Result};
use crate::security::memory::Plaintext;

impl Gate {
    /// Stores `data` as the kernel's state in a device buffer of its own (sealed as a
    /// STREAM when kernel-state encryption is on), replacing any earlier state.
    pub(super) fn save_state(&self, entry: &KernelEntry, data: &[u8]) -> Result<()> {
        self.ensure_open()?;
        self.check_kernel_write(entry, 0)?;
        if entry.finalized.load(Ordering::Acquire) {
            return Err(Error::KernelTerminated {
                id: entry.id.to_string(),
            });
        }
        let mut slot = entry.state.lock();
        let seq = slot.as_ref().map_or(1, |s| s.seq + 1);
        let stored = self.sealing.seal_state(entry.contexts.state, seq, data)?;
        match slot.as_mut() {
            Some(s) if s.stored_len == stored.len() => {
                self.backend.write(s.buf, 0, &stored)?;
                s.seq = seq;
            }
            _ => {
                let buf = self.allocate(entry, stored.len().max(1) as u64)?;
                if let Err(e) = self.backend.write(buf, 0, &stored) {
                    let _ = self.release(entry, buf);
                    return Err(e);
                }
                if let Some(old) = slot.take() {
                    self.release(entry, old.buf)?;
                }
                *slot = Some(StateSlot {
                    buf,
                    stored_len: stored.len(),
                    seq,
                });
            }
        }
        Ok(())
    }

    /// The kernel's saved state, if any (zeroed when dropped).
    pub(super) fn load_state(&self, entry: &KernelEntry) -> Result<Option<Plaintext>> {
        let slot = entry.state.lock();
        let Some(s) = slot.as_ref() else {
            return Ok(None);
        };
        let mut stored = vec![0u8; s.stored_len];
        self.backend.read(s.buf, 0, &mut stored)?;
        self.sealing
            .open_state(entry.contexts.state, s.seq, &stored)
            .map(Some)
            .inspect_err(|e| self.audit_integrity(entry, "state", e))
    }

    /// Re-seals the kernel's saved state under the current key as its next sealing;
    /// `false` when it has none.
    pub(super) fn reseal_state(&self, entry: &KernelEntry) -> Result<bool> {
        let mut slot = entry.state.lock();
        let Some(s) = slot.as_mut() else {
            return Ok(false);
        };
        let mut stored = vec![0u8; s.stored_len];
        self.backend.read(s.buf, 0, &mut stored)?;
        let plain = self
            .sealing
            .open_state(entry.contexts.state, s.seq, &stored)?;
        let resealed = self
            .sealing
            .seal_state(entry.contexts.state, s.seq + 1, &plain)?;
        if resealed.len() != s.stored_len {
            return Err(Error::corrupt("kernel state", "re-sealed length differs"));
        }
        self.backend.write(s.buf, 0, &resealed)?;
        s.seq += 1;
        Ok(true)
    }
}
