//! The end of a kernel's life: asking it to stop, its own last mark, waiting for it,
//! finalizing it (undelivered messages counted, final control block kept, buffers
//! zeroed and freed), and shutting the whole runtime down.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::gate::Gate;
use super::registry::{ControlSlot, KernelEntry};
use crate::backend::BufferId;
use crate::error::{Error, Result};
use crate::security::audit::Event;

impl Gate {
    /// Called by the kernel as its last act: marks it terminated in its control block.
    pub(super) fn mark_terminated(&self, entry: &KernelEntry, error: Option<u32>) {
        let res = self.update_control(entry, |cb| {
            cb.is_active = 0;
            cb.has_terminated = 1;
            if let Some(code) = error {
                cb.last_error = code;
                cb.error_count = cb.error_count.saturating_add(1);
            }
        });
        match res {
            // Already finalized (cut off by the watchdog): nothing left to mark.
            Ok(()) | Err(Error::KernelTerminated { .. }) => {}
            Err(e) => {
                tracing::error!(kernel = %entry.id, error = %e, "cannot mark kernel terminated")
            }
        }
    }

    /// Asks a kernel to stop: raises should_terminate in its control block and closes
    /// its queue to new messages. Idempotent.
    pub(super) fn request_stop(&self, entry: &KernelEntry) -> Result<()> {
        if entry.stop_requested.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        entry.mailbox.close();
        let res = self.update_control(entry, |cb| cb.should_terminate = 1);
        entry.mailbox.wake();
        tracing::info!(kernel = %entry.id, "kernel stop requested");
        self.audit(|| Event::KernelTerminate {
            kernel: entry.id.clone(),
        });
        res
    }

    /// Waits until the kernel has stopped, then releases its resources.
    pub(super) fn wait(&self, entry: &KernelEntry, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        // Woken by the worker's end: no polling.
        let signal = entry.worker.lock().as_ref().map(|w| w.finish_signal());
        let ended = match signal {
            // Raised when the body returns or unwinds: the thread is ending, and joining
            // it (in `finalize`) waits only for that.
            Some(s) => s.wait_until(deadline),
            // Already joined and released by another caller.
            None => true,
        };
        if !ended {
            return Err(Error::Timeout(timeout));
        }
        self.finalize(entry);
        Ok(())
    }

    /// Joins the worker, counts undelivered messages, keeps a final copy of the control
    /// block and frees (zeroes) every buffer of the kernel. Runs once per kernel.
    pub(super) fn finalize(&self, entry: &KernelEntry) {
        self.finalize_with(entry, true);
    }

    /// [`Gate::finalize`]; with `join == false` the worker is abandoned instead of
    /// joined (a host thread stuck in user code cannot be killed; it is cut off from
    /// the runtime instead: its sends, buffers and control block are gone).
    pub(super) fn finalize_with(&self, entry: &KernelEntry, join: bool) {
        let worker = entry.worker.lock().take();
        if let Some(mut w) = worker {
            if join {
                if let Err(e) = w.join() {
                    tracing::error!(kernel = %entry.id, error = %e, "kernel ended abnormally");
                }
            } else {
                tracing::warn!(kernel = %entry.id, "kernel did not stop within the watchdog grace period; cut off from the runtime");
            }
        }
        if entry.finalized.swap(true, Ordering::AcqRel) {
            return;
        }
        if let (Some(sb), Some(slot)) = (&self.sandbox, &entry.sandbox) {
            sb.unregister(slot);
        }
        // Closes the queue, waits for sends already under way, counts what is left.
        let drained = entry.mailbox.drain();
        let mut undelivered = drained;
        if undelivered > 0 {
            entry.undelivered.fetch_add(undelivered, Ordering::AcqRel);
            tracing::warn!(kernel = %entry.id, undelivered, "kernel stopped with messages still queued; they were not processed");
        }
        {
            let mut slot = entry.control.lock();
            if let ControlSlot::Live { buf, seq } = *slot {
                let mut last = self.load_control(entry, buf, seq).unwrap_or_default();
                // Messages the kernel took and never accounted for: those behind a
                // panic in its last batch, the batch a cut-off kernel is stuck in, and
                // a device kernel's messages staged for or left in its input ring (or
                // lost with a failed round). A host kernel's accounted messages are
                // `settled`; a device kernel's are those refused at opening (`settled`)
                // plus what its device counted as processed in the block (all of them
                // unconfirmed when the block does not open). Counted undelivered here,
                // under the control lock, so that a batch or round completed
                // concurrently is counted once (the block is final after this section
                // and takes no later outcome).
                let taken = entry.mailbox.dequeued().saturating_sub(drained);
                let mut accounted = entry.settled.load(Ordering::Acquire);
                if entry.device {
                    accounted = accounted.saturating_add(last.messages_processed);
                }
                let unsettled = taken.saturating_sub(accounted);
                if unsettled > 0 {
                    undelivered += unsettled;
                    entry.undelivered.fetch_add(unsettled, Ordering::AcqRel);
                    tracing::warn!(kernel = %entry.id, unsettled, "kernel stopped with messages it took and never processed; they were counted undelivered");
                }
                last.is_active = 0;
                last.has_terminated = 1;
                last.input_head = entry.mailbox.dequeued();
                last.input_tail = entry.mailbox.enqueued().max(last.input_head);
                // The sends the runtime accepted from the kernel: a host kernel's block
                // has them up to its last completed batch (not those made since, from
                // its handle or in a batch cut short); a device kernel's block counts
                // what its device forwarded, including a last round's forwards that
                // were refused because the kernel was stopping.
                last.output_tail = entry.sent.load(Ordering::Acquire);
                last.messages_in_flight = 0;
                *slot = ControlSlot::Final(last);
            }
        }
        *entry.state.lock() = None;
        let buffers: Vec<BufferId> = entry.buffers.lock().keys().copied().collect();
        for buf in buffers {
            if let Err(e) = self.release(entry, buf) {
                tracing::error!(kernel = %entry.id, buffer = %buf, error = %e, "cannot free kernel buffer");
            }
        }
        tracing::info!(kernel = %entry.id, "kernel terminated and its buffers freed");
        let last = self.read_control(entry).unwrap_or_default();
        if let Some(log) = &self.audit {
            // With per-route K2K counts, the kernel's routes are summarised before its
            // end is recorded (their counts are final: its mailbox is closed).
            log.summarize_routes_of(&entry.id);
        }
        self.audit(|| Event::KernelStopped {
            kernel: entry.id.clone(),
            messages_processed: last.messages_processed,
            undelivered,
            errors: last.error_count,
            last_error: last.last_error,
            joined: join,
            uptime_ms: entry.uptime().as_millis() as u64,
        });
    }

    /// Stops every kernel, waits for each (up to `timeout` in all), frees everything.
    pub(super) fn shutdown(&self, timeout: Duration) -> Result<super::ShutdownReport> {
        self.shut_down.store(true, Ordering::Release);
        let entries = self.kernels.entries();
        for e in &entries {
            // Keep going: a kernel whose control block cannot be updated (tampered,
            // replayed) is still stopped by its flag and closed queue, and every other
            // kernel must still be stopped and its buffers freed.
            if let Err(err) = self.request_stop(e) {
                tracing::error!(kernel = %e.id, error = %err, "cannot raise should_terminate; stopping by flag");
            }
        }
        let deadline = Instant::now() + timeout;
        let mut stuck = Vec::new();
        for e in &entries {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.wait(e, left).is_err() {
                stuck.push(e.id.to_string());
            }
        }
        let undelivered = entries
            .iter()
            .map(|e| e.undelivered.load(Ordering::Acquire))
            .sum();
        let mut report = super::ShutdownReport {
            kernels: entries.len(),
            undelivered,
            memory_in_use: self.backend.allocated_bytes(),
            stuck,
            audit_log_not_closed: None,
        };
        // Kernels stopping may have sealed past a key's usage bound. Under the tick
        // lock, so that a tick running meanwhile does not record the same rotations.
        {
            let _g = self.tick_lock.lock();
            self.record_unrecorded_rotations();
        }
        self.audit(|| Event::RuntimeShutdown {
            kernels: report.kernels as u64,
            undelivered: report.undelivered,
            memory_in_use: report.memory_in_use,
            stuck: report.stuck.clone(),
        });
        if let Some(log) = &self.audit
            && let Err(e) = log.close()
        {
            tracing::error!(error = %e, "closing the audit log failed");
            report.audit_log_not_closed = Some(e.to_string());
        }
        if report.is_complete() {
            tracing::info!(kernels = report.kernels, "runtime shut down");
            Ok(report)
        } else {
            if !report.stuck.is_empty() {
                tracing::error!(stuck = ?report.stuck, ?timeout, "kernels did not stop in time");
            }
            Err(Error::ShutdownIncomplete {
                report: Box::new(report),
            })
        }
    }
}
