//! Kernels that run on the device: each round passes the gate under the control
//! block's lock (the gate reserves the device-side re-sealing and hands over key slots
//! and route table), sends the device refused become violations, and a device failure
//! stops the kernel.

use std::sync::atomic::Ordering;

use super::gate::Gate;
use super::registry::{ControlSlot, KernelEntry};
use crate::control::ControlBlock;
use crate::error::{Error, Result};
use crate::k2k::KernelId;
use crate::security::audit::{Event, Failure};

impl Gate {
    /// One round of a device kernel under its control block's lock: the gate reserves
    /// the re-sealing (device-direction nonce, next sequence number, current key),
    /// hands over key slots and route table, and records what the device did.
    pub(super) fn device_round<R>(
        &self,
        entry: &KernelEntry,
        f: impl FnOnce(crate::backend::DeviceRound) -> Result<(crate::backend::DeviceRoundOutcome, R)>,
    ) -> Result<R> {
        use crate::backend::{DeviceRound, DeviceRoundSealing, device};
        use crate::security::encryption::EnvelopeKind;
        if !entry.device {
            return Err(Error::Unsupported {
                backend: self.backend.info().name,
                what: "device rounds for a host-program kernel".into(),
            });
        }
        let mut slot = entry.control.lock();
        let ControlSlot::Live { buf, seq } = &mut *slot else {
            return Err(Error::KernelTerminated {
                id: entry.id.to_string(),
            });
        };
        let sealing = match self.sealing.control_for(true) {
            None => None,
            Some(enc) => Some(DeviceRoundSealing {
                keys: enc.device_key_slots()?,
                seal: enc.device_seal(
                    EnvelopeKind::Single,
                    entry.contexts.control,
                    *seq + 1,
                    crate::control::CONTROL_BLOCK_SIZE as u64,
                )?,
            }),
        };
        let routes = match (&self.sandbox, &entry.sandbox) {
            (Some(sb), Some(s)) => Some((sb.route_table(), s.index)),
            _ => None,
        };
        let (outcome, r) = f(DeviceRound {
            control: *buf,
            sequence: *seq,
            queued_total: entry.mailbox.enqueued(),
            sealing,
            routes,
        })?;
        *seq = device::next_sequence(*seq, &outcome);
        // The block the round left, checked now under the new sequence: a bad
        // re-sealing fails this round (and stops the kernel) instead of the next read.
        if let Some(bytes) = &outcome.control_block {
            let cb = self
                .sealing
                .open_control(bytes, entry.contexts.control, *seq, true)
                .inspect_err(|e| self.audit_integrity(entry, "control", e))?;
            self.cache_status(entry, &cb);
        }
        Ok(r)
    }

    /// Turns sends the device refused into `UnauthorizedK2K` violations (audited, with
    /// the configured action).
    pub(super) fn device_refusals(&self, entry: &KernelEntry, peer: &KernelId, count: u64) {
        let (Some(sb), Some(slot)) = (&self.sandbox, &entry.sandbox) else {
            return;
        };
        for _ in 0..count {
            let verdict = sb.record_device_refusal(slot, peer);
            if let Err(e) = self.enforce(entry, verdict) {
                tracing::debug!(kernel = %entry.id, error = %e, "device-side send refused");
            }
        }
    }

    /// Stops a kernel whose device failed, recording `error`.
    pub(super) fn stop_with_error(&self, entry: &KernelEntry, error: &Error) {
        tracing::error!(kernel = %entry.id, error = %error, "device kernel failed; stopping it");
        self.audit(|| Event::KernelFailed {
            kernel: entry.id.clone(),
            failure: Failure::of(error),
            code: error.code(),
            kind: error.integrity_kind().unwrap_or("other"),
        });
        entry.stop_requested.store(true, Ordering::Release);
        entry.mailbox.close();
        let mut slot = entry.control.lock();
        if let ControlSlot::Live { buf, seq } = *slot {
            // The block may not open (that may be the failure): keep what can be read,
            // and when the host can say more precisely why (a replayed, stale or moved
            // block, where the device saw only a header mismatch), record that.
            let (mut last, code) = match self.load_control(entry, buf, seq) {
                Ok(cb) => (cb, error.code()),
                Err(e) if e.integrity_kind().is_some() => (ControlBlock::default(), e.code()),
                Err(_) => (ControlBlock::default(), error.code()),
            };
            last.is_active = 0;
            last.has_terminated = 1;
            last.last_error = code;
            last.error_count = last.error_count.saturating_add(1);
            if let Err(e) = self.sealing.write_control(
                &*self.backend,
                buf,
                entry.contexts.control,
                seq + 1,
                &last,
                entry.device,
            ) {
                tracing::error!(kernel = %entry.id, error = %e, "cannot record the device failure");
                *slot = ControlSlot::Final(last);
            } else {
                *slot = ControlSlot::Live { buf, seq: seq + 1 };
            }
            self.cache_status(entry, &last);
        }
    }
}
