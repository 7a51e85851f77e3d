//! A kernel's control block, reached only through the gate: read (opening the latest
//! sealing), read-modify-write under the block's lock (writing a fresh sealing), and
//! the kernel status read from it.

use std::sync::atomic::Ordering;

use super::gate::Gate;
use super::registry::{ControlSlot, KernelEntry};
use super::{KernelState, KernelStatus};
use crate::backend::BufferId;
use crate::control::ControlBlock;
use crate::error::{Error, Result};

impl Gate {
    /// Reads a kernel's control block (its final copy once the kernel is finalized).
    pub(super) fn read_control(&self, entry: &KernelEntry) -> Result<ControlBlock> {
        let slot = entry.control.lock();
        match &*slot {
            ControlSlot::Final(cb) => Ok(*cb),
            ControlSlot::Live { buf, seq } => self.load_control(entry, *buf, *seq),
        }
    }

    /// Opens the control block sealed as number `seq` in `buf`; a refusal is audited
    /// (`seal.refused`). The caller holds the block's lock.
    pub(super) fn load_control(
        &self,
        entry: &KernelEntry,
        buf: BufferId,
        seq: u64,
    ) -> Result<ControlBlock> {
        self.sealing
            .read_control(
                &*self.backend,
                buf,
                entry.contexts.control,
                seq,
                entry.device,
            )
            .inspect(|cb| self.cache_status(entry, cb))
            .inspect_err(|e| self.audit_integrity(entry, "control", e))
    }

    /// Keeps `cb` as a device kernel's status (host kernels read their block).
    pub(super) fn cache_status(&self, entry: &KernelEntry, cb: &ControlBlock) {
        if entry.device {
            *entry.status_cache.lock() = Some(*cb);
        }
    }

    /// Read-modify-write of a kernel's control block under its lock, so that no update
    /// is lost between the host, the kernel and (later) key rotation.
    pub(super) fn update_control<R>(
        &self,
        entry: &KernelEntry,
        f: impl FnOnce(&mut ControlBlock) -> R,
    ) -> Result<R> {
        self.update_control_settling(entry, 0, f)
    }

    /// [`Gate::update_control`] recording the outcome of `settled` messages the kernel
    /// took: they are added to the entry's count once the block is written, under the
    /// same lock (see `KernelEntry::settled`); not when the write fails.
    pub(super) fn update_control_settling<R>(
        &self,
        entry: &KernelEntry,
        settled: u64,
        f: impl FnOnce(&mut ControlBlock) -> R,
    ) -> Result<R> {
        let mut slot = entry.control.lock();
        match &mut *slot {
            ControlSlot::Final(_) => Err(Error::KernelTerminated {
                id: entry.id.to_string(),
            }),
            ControlSlot::Live { buf, seq } => {
                let mut cb = self.load_control(entry, *buf, *seq)?;
                let r = f(&mut cb);
                // Each write is a new sealing (fresh nonce, current key epoch, next
                // sequence), so a stale copy of the buffer can never be passed off.
                let next = *seq + 1;
                self.sealing.write_control(
                    &*self.backend,
                    *buf,
                    entry.contexts.control,
                    next,
                    &cb,
                    entry.device,
                )?;
                *seq = next;
                entry
                    .settled
                    .fetch_add(settled, std::sync::atomic::Ordering::AcqRel);
                self.cache_status(entry, &cb);
                Ok(r)
            }
        }
    }

    /// The kernel's status, read from its control block and the gate's counters.
    pub(super) fn status(&self, entry: &KernelEntry) -> Result<KernelStatus> {
        // A live device kernel's status is the block its last round left (checked by
        // the host then): no device read, no wait for the control block's lock.
        let cached = match entry.device && !entry.finalized.load(Ordering::Acquire) {
            true => *entry.status_cache.lock(),
            false => None,
        };
        let cb = match cached {
            Some(cb) => cb,
            None => self.read_control(entry)?,
        };
        let state = if cb.has_terminated == 1 || entry.finalized.load(Ordering::Acquire) {
            KernelState::Terminated
        } else if cb.should_terminate == 1 || entry.stop_requested.load(Ordering::Acquire) {
            KernelState::Terminating
        } else if cb.is_active == 1 {
            KernelState::Active
        } else {
            KernelState::Launching
        };
        Ok(KernelStatus {
            id: entry.id.clone(),
            state,
            messages_processed: cb.messages_processed,
            messages_in_flight: cb.messages_in_flight,
            messages_sent: cb.output_tail,
            error_count: cb.error_count,
            last_error: cb.last_error,
            memory_bytes: entry.memory.load(Ordering::Acquire),
            undelivered: entry.undelivered.load(Ordering::Acquire),
        })
    }
}
