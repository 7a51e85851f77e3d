//! Keys of the sealed regions: timed and explicit rotation, re-sealing every live
//! region under the new key, and retiring keys whose grace period is over.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::gate::Gate;
use crate::error::{Error, Result};
use crate::security::audit::{Event, KeySet, RotationTrigger};
use crate::security::encryption::{KeyId, MemoryEncryption};

/// The key sets `encryptions()` yields, in its order.
const KEY_SETS: [KeySet; 2] = [KeySet::Configured, KeySet::GpuControlBlocks];

impl Gate {
    /// Timed rotation, re-sealing after any rotation (timed, bound-triggered or
    /// explicit), then retirement of keys whose grace period is over. Re-sealing runs
    /// before retirement, so no live region is left under a key about to be erased.
    pub(super) fn tick_encryption(&self) {
        let Some(enc) = &self.encryption else {
            return;
        };
        if self.ensure_audited().is_err() {
            // Fail-closed: no unrecorded key changes; the keys in use stay usable until
            // the runtime is restarted with a working log.
            return;
        }
        // Rotations at a usage bound happen inside a seal: recorded here, before the
        // re-seal under the new key.
        self.record_unrecorded_rotations();
        for (i, (e, which)) in self.encryptions().zip(KEY_SETS).enumerate() {
            match e.rotate_if_due() {
                Ok(Some(key)) => self.record_rotation(i, e, key, RotationTrigger::Timed(which)),
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(error = %err, keys = which.as_str(), "timed key rotation failed")
                }
            }
        }
        if self.key_generation() != self.sealed_epoch.load(Ordering::Acquire) {
            let current = enc.current_key_id().map_or(0, |k| k.0);
            let n = self.reseal_all();
            self.audit(|| Event::KeyReseal {
                epoch: current,
                regions: n as u64,
            });
        }
        for (e, which) in self.encryptions().zip(KEY_SETS) {
            let retired = e.retire_expired_keys();
            if !retired.is_empty() {
                self.audit(|| Event::KeyRetire {
                    epochs: retired.iter().map(|k| u64::from(k.0)).collect(),
                    keys: which,
                });
            }
        }
    }

    /// Rotates the data key now and re-seals every live region under it.
    pub(super) fn rotate_keys(&self) -> Result<(KeyId, usize)> {
        let enc = self.encryption.as_ref().ok_or(Error::EncryptionDisabled)?;
        self.ensure_audited()?;
        let _g = self.tick_lock.lock();
        let key = enc.rotate_key()?;
        // The companion (GPU control blocks) rotates with it; whatever it does, the
        // configured key has changed: re-seal under it and record it.
        let companion = self
            .companion
            .as_ref()
            .map(|c| c.rotate_key().map(|k| (c, k)))
            .transpose();
        let n = self.reseal_all();
        let explicit = |keys| RotationTrigger::Explicit {
            regions_resealed: n as u64,
            keys,
        };
        self.record_rotation(0, enc, key, explicit(KeySet::Configured));
        if let Some((c, companion_key)) = companion? {
            self.record_rotation(1, c, companion_key, explicit(KeySet::GpuControlBlocks));
        }
        Ok((key, n))
    }

    /// Records every rotation of each key set that the audit log does not have yet
    /// (up to its current epoch): epochs begun at a usage bound during a seal, or
    /// rotated through a `MemoryEncryption` handle rather than the runtime. Without
    /// this an auditor found keys in `key.reseal` records that no rotation introduced.
    pub(super) fn record_unrecorded_rotations(&self) {
        for (i, e) in self.encryptions().enumerate() {
            if let Some(current) = e.current_key_id() {
                self.record_rotations_through(i, e, current.0);
            }
        }
    }

    /// Records `key`'s rotation (timed or explicit) of the `i`th key set, after the
    /// unrecorded ones below it; only then is `key` marked recorded.
    fn record_rotation(
        &self,
        i: usize,
        e: &MemoryEncryption,
        key: KeyId,
        trigger: RotationTrigger,
    ) {
        self.record_rotations_through(i, e, key.0.saturating_sub(1));
        self.audit(|| Event::KeyRotate { key, trigger });
        self.recorded_epochs[i].fetch_max(key.0, Ordering::AcqRel);
    }

    /// Records the rotations of key set `i` (`KEY_SETS[i]`) after the last recorded
    /// one, through epoch `through`. Callers hold the tick lock (ticks, explicit rotations,
    /// shutdown), so no rotation is recorded twice.
    fn record_rotations_through(&self, i: usize, e: &MemoryEncryption, through: u32) {
        let which = KEY_SETS[i];
        let from = self.recorded_epochs[i].load(Ordering::Acquire);
        for epoch in from.saturating_add(1)..=through {
            let key = KeyId(epoch);
            let trigger = match e.rotated_at_usage_bound(key) {
                Some(true) => RotationTrigger::UsageBound(which),
                Some(false) | None => RotationTrigger::Outside(which),
            };
            self.audit(|| Event::KeyRotate { key, trigger });
        }
        self.recorded_epochs[i].fetch_max(through, Ordering::AcqRel);
    }

    /// Re-seals every live sealed region under the current key: control blocks first,
    /// then saved kernel state. Each goes through its region's lock, so no concurrent
    /// update is lost. Returns how many regions were re-sealed.
    fn reseal_all(&self) -> usize {
        let Some(generation) = self
            .encryption
            .as_ref()
            .and_then(|e| e.current_key_id())
            .map(|_| self.key_generation())
        else {
            return 0;
        };
        let entries = self.kernels.live();
        let started = Instant::now();
        let mut n = 0;
        if self.sealing.seals_control() {
            for e in &entries {
                // A device kernel's block is re-sealed by its own kernel, on the device.
                let on_device = if e.device {
                    e.worker.lock().as_ref().and_then(|w| w.reseal_on_device())
                } else {
                    None
                };
                let r = on_device.unwrap_or_else(|| self.update_control(e, |_| ()));
                match r {
                    Ok(()) => n += 1,
                    Err(err) => {
                        tracing::error!(kernel = %e.id, error = %err, "cannot re-seal control block")
                    }
                }
            }
        }
        for e in &entries {
            match self.reseal_state(e) {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(err) => {
                    tracing::error!(kernel = %e.id, error = %err, "cannot re-seal kernel state")
                }
            }
        }
        self.sealed_epoch.store(generation, Ordering::Release);
        tracing::info!(
            generation,
            regions = n,
            elapsed_us = started.elapsed().as_micros() as u64,
            "sealed regions re-sealed under the current key"
        );
        n
    }
}
