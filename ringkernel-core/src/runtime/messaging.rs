//! K2K messaging through the gate: sends from kernels and from the host (sandbox
//! decision, audit, seal, enqueue), and the kernel's side of its queue (the next batch,
//! opened; the stop check; the batch's outcome in the control block).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::gate::Gate;
use super::registry::KernelEntry;
use super::sealing::QueuedRoute;
use crate::backend::BatchOutcome;
use crate::error::{Error, HANDLER_ERROR_CODE, Result};
use crate::k2k::hlc::clock_merge_limit;
use crate::k2k::{Endpoint, MAX_CLOCK_AHEAD, Message, Offer, validate_message};
use crate::security::audit::{Event, Failure};

impl Gate {
    /// Sends from `from` (`None`: the host) to the kernel named `to`. `from` is always a
    /// registry entry reached through a handle or context, never a caller's string.
    pub(super) fn send(
        &self,
        from: Option<&KernelEntry>,
        to: &str,
        topic: &str,
        payload: &[u8],
        wait: Option<Duration>,
    ) -> Result<()> {
        let r = self.send_inner(from, to, topic, payload, wait);
        if let (Ok(_), Some(log)) = (&r, &self.audit)
            && log.config().events.log_k2k_messages
            && log.config().k2k_records.summary_interval().is_some()
        {
            // Delivered: counted for its route's next summary (exact counts, one
            // record per route per interval). Refusals still get a record each.
            if let Err(e) = log.count_k2k_send(from.map(|e| &e.id), to, topic, payload.len() as u64)
            {
                tracing::error!(error = %e, "audit record could not be queued");
            }
        } else if self.audits(|c| c.log_k2k_messages) {
            // Route facts only: never the payload.
            self.audit(|| Event::K2kSend {
                from: from.map(|e| e.id.clone()),
                to: to.to_owned(),
                topic: topic.to_owned(),
                bytes: payload.len() as u64,
                outcome: r.as_ref().copied().map_err(Failure::of),
            });
        }
        r.map(|_| ())
    }

    /// The send itself; returns the message's sequence number.
    fn send_inner(
        &self,
        from: Option<&KernelEntry>,
        to: &str,
        topic: &str,
        payload: &[u8],
        wait: Option<Duration>,
    ) -> Result<u64> {
        self.ensure_open()?;
        validate_message(topic, payload)?;
        if let Some(src) = from
            && src.is_stopping()
        {
            return Err(Error::KernelTerminated {
                id: src.id.to_string(),
            });
        }
        let dest = self.kernels.get(to)?;
        if dest.is_stopping() {
            return Err(Error::KernelTerminated {
                id: dest.id.to_string(),
            });
        }
        // One clock read for the rate limit and the first attempt's timestamp.
        let now = Instant::now();
        let device_limit = crate::backend::device::MAX_DEVICE_PAYLOAD_LEN;
        if dest.device && payload.len() > device_limit {
            return Err(Error::TooLarge {
                what: "payload for a device kernel",
                len: payload.len() as u64,
                max: device_limit as u64,
            });
        }
        if let (Some(sb), Some(src)) = (&self.sandbox, from)
            && let (Some(src_slot), Some(dst_slot)) = (&src.sandbox, &dest.sandbox)
        {
            // ACL, topic, connections, rate: refused sends are never enqueued.
            self.enforce(src, sb.check_send(src_slot, dst_slot, topic, now))?;
        }
        let (source, state, clock) = match from {
            Some(src) => (Endpoint::Kernel(src.id.clone()), &src.sender, &src.clock),
            None => (Endpoint::Host, &self.host_sender, &self.host_clock),
        };
        // As `Mailbox::wait_after_full` takes it: `None`, do not wait; `Some(None)`, no
        // deadline.
        let deadline = wait.map(|w| now.checked_add(w));
        let mut at = now;
        // Once this send has waited for room, its place among the waiting sends.
        let mut ticket = None;
        loop {
            // The sender's lock orders its sequence numbers with its queue entries, and
            // is never held while waiting: a send waiting for room in one queue holds
            // up no other send from the same sender (the host, a kernel's handles).
            let mut state = state.lock();
            let sequence = state.next_sequence;
            // Sealed for the destination's queue, bound to source, destination, topic,
            // sequence and timestamp, so a queued payload cannot be re-attributed,
            // reordered or re-dated.
            let timestamp = clock.now_at(at);
            let stored = self.sealing.seal_payload(
                dest.contexts.queue,
                &QueuedRoute {
                    source: &source,
                    dest: &dest.id,
                    topic,
                    seq: sequence,
                    timestamp,
                },
                payload,
            )?;
            let msg = Message {
                source: source.clone(),
                destination: dest.id.clone(),
                topic: crate::k2k::buffers::copy_str(topic),
                payload: stored,
                sequence,
                timestamp,
            };
            match dest.mailbox.offer_as(msg, ticket.as_ref()) {
                Offer::Accepted => {
                    state.next_sequence += 1;
                    drop(state);
                    if let Some(src) = from {
                        src.sent.fetch_add(1, Ordering::AcqRel);
                    }
                    return Ok(sequence);
                }
                Offer::Closed => return Err(dest.mailbox.terminated()),
                // The refused message (sealed under a sequence number that the next
                // attempt may give to another send) is dropped and its buffers wiped.
                Offer::Full(_) => drop(state),
            }
            dest.mailbox.wait_after_full(deadline, &mut ticket)?;
            // A kernel stopped (or cut off) while its send waited sends nothing more.
            if let Some(src) = from
                && src.is_stopping()
            {
                return Err(Error::KernelTerminated {
                    id: src.id.to_string(),
                });
            }
            at = Instant::now();
        }
    }

    /// The kernel side of the queue: the next batch of messages, or `None` when the
    /// kernel must stop. Also merges the senders' clocks into the kernel's.
    pub(super) fn next_batch(&self, entry: &KernelEntry, max: usize) -> Option<Vec<Message>> {
        if self.batch_should_stop(entry) {
            return None;
        }
        let batch = entry.mailbox.pop_batch(max, self.config.poll_interval);
        if batch.is_empty() {
            // Idle: look at the control block again (the watchdog or terminate may
            // have raised should_terminate).
            return if self.batch_should_stop(entry) {
                None
            } else {
                Some(batch)
            };
        }
        let mut open = Vec::with_capacity(batch.len());
        let mut failed: Option<Error> = None;
        let mut failures = 0u32;
        for mut m in batch {
            let stored = std::mem::take(&mut m.payload);
            let route = QueuedRoute {
                source: &m.source,
                dest: &m.destination,
                topic: &m.topic,
                seq: m.sequence,
                timestamp: m.timestamp,
            };
            match self
                .sealing
                .open_payload(entry.contexts.queue, &route, stored)
            {
                Ok(p) => {
                    m.payload = p;
                    open.push(m);
                }
                Err(e) => {
                    failures += 1;
                    tracing::error!(kernel = %entry.id, source = %m.source, sequence = m.sequence, error = %e,
                        "queued message failed to open and was not delivered");
                    self.audit_integrity(entry, "queue", &e);
                    failed = Some(e);
                }
            }
        }
        // The senders' clocks are merged once per batch, before any message of it is
        // handled, at the latest timestamp of the messages that opened (one that did
        // not may carry anything): the clock ends past every one of them, as a merge
        // of each would take it, for one clock read instead of one per message. A
        // timestamp further ahead of the wall clock than any clock of this process can
        // be (a forged or corrupted one: nothing binds it in a plain queue) is not
        // merged, so that it cannot carry the kernel's clock, and every timestamp the
        // kernel sends later, into the future.
        let limit = clock_merge_limit();
        let mut ahead = 0u64;
        let latest = open
            .iter()
            .map(|m| m.timestamp)
            .filter(|t| {
                let within = t.physical <= limit;
                ahead += u64::from(!within);
                within
            })
            .max();
        if let Some(latest) = latest {
            entry.clock.observe(latest);
        }
        if ahead > 0 {
            self.note_clock_ahead(entry, ahead);
        }
        if let Some(e) = failed {
            let code = e.code();
            let _ = self.update_control_settling(entry, u64::from(failures), |cb| {
                cb.error_count = cb.error_count.saturating_add(failures);
                cb.last_error = code;
            });
        }
        Some(open)
    }

    /// Reports `n` received timestamps too far ahead to merge (logged at the first and
    /// then at every power of two, as refused seals are).
    fn note_clock_ahead(&self, entry: &KernelEntry, n: u64) {
        let before = entry.clock_ahead.fetch_add(n, Ordering::AcqRel);
        let total = before + n;
        // A power of two in before+1..=total: total's highest bit is above before's.
        if before == 0 || total.ilog2() > before.ilog2() {
            tracing::error!(kernel = %entry.id, total, max_ahead = ?MAX_CLOCK_AHEAD,
                "received timestamps too far ahead of the wall clock were not merged into the kernel's clock");
        }
    }

    /// The stop check between batches. A device kernel's own round opens its control
    /// block and honours should_terminate on the device, and every host-side stop
    /// (terminate, watchdog, shutdown) also raises `stop_requested`; so for device
    /// kernels the flag suffices and no extra device read is made per batch.
    fn batch_should_stop(&self, entry: &KernelEntry) -> bool {
        if entry.device {
            entry.stop_requested.load(Ordering::Acquire)
        } else {
            self.should_stop(entry)
        }
    }

    /// Whether the kernel must stop: a stop was requested, or should_terminate is
    /// raised in its control block (a block that does not open stops it too).
    pub(super) fn should_stop(&self, entry: &KernelEntry) -> bool {
        if entry.stop_requested.load(Ordering::Acquire) {
            return true;
        }
        match self.read_control(entry) {
            Ok(cb) => cb.should_terminate == 1,
            Err(e) => {
                tracing::error!(kernel = %entry.id, error = %e, "control block unreadable; stopping kernel");
                true
            }
        }
    }

    /// Records a batch's outcome and the queue counters in the control block.
    pub(super) fn complete_batch(&self, entry: &KernelEntry, outcome: BatchOutcome) {
        if outcome.processed == 0 {
            return;
        }
        let ts = entry.clock.now();
        let sent = entry.sent.load(Ordering::Acquire);
        let res = self.update_control_settling(entry, outcome.processed, |cb| {
            cb.messages_processed = cb.messages_processed.saturating_add(outcome.processed);
            cb.input_head = entry.mailbox.dequeued();
            cb.input_tail = entry.mailbox.enqueued().max(cb.input_head);
            cb.messages_in_flight = cb.input_tail - cb.input_head;
            cb.output_tail = sent;
            cb.output_head = sent;
            cb.hlc_physical = ts.physical;
            cb.hlc_logical = ts.logical;
            if outcome.errors > 0 {
                cb.error_count = cb.error_count.saturating_add(outcome.errors);
                cb.last_error = HANDLER_ERROR_CODE;
            }
        });
        if let Err(e) = res {
            tracing::error!(kernel = %entry.id, error = %e, "cannot update control block");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use std::time::{Duration, Instant};

    use crate::k2k::hlc::wall_micros;
    use crate::k2k::{Endpoint, HlcTimestamp, KernelId, Message};
    use crate::runtime::{LaunchOptions, RuntimeBuilder};

    /// A writer of plain queue memory (nothing binds a plain message's timestamp)
    /// dates a message a year ahead. The message is delivered, but its timestamp is not
    /// merged: the kernel's clock stays at wall-clock time, so its later messages are
    /// not dated a year ahead and do not carry the forgery on to their receivers.
    #[test]
    fn a_far_future_timestamp_forged_in_a_plain_queue_does_not_drag_the_clock_ahead() {
        let rt = RuntimeBuilder::new().development().build().unwrap();
        let k = rt.launch("clocked", LaunchOptions::new()).unwrap();
        let dated = |sequence, timestamp| Message {
            source: Endpoint::Host,
            destination: KernelId::new("clocked").unwrap(),
            topic: "t".into(),
            payload: b"dated".to_vec(),
            sequence,
            timestamp,
        };
        let year = 365 * 24 * 3600 * 1_000_000u64;
        let forged = HlcTimestamp {
            physical: wall_micros() + year,
            logical: 0,
        };
        k.entry.mailbox.push(dated(0, forged), None).unwrap();
        let t0 = Instant::now();
        while k.status().unwrap().messages_processed < 1 {
            assert!(t0.elapsed() < Duration::from_secs(10), "not processed");
            std::thread::sleep(Duration::from_millis(1));
        }
        let now = k.entry.clock.now();
        assert!(
            now.physical < wall_micros() + 10_000_000,
            "the kernel's clock was dragged {} s ahead",
            (now.physical - wall_micros()) / 1_000_000
        );
        // A timestamp within the bound is still merged (causality kept).
        let near = HlcTimestamp {
            physical: wall_micros() + 200_000,
            logical: 3,
        };
        k.entry.mailbox.push(dated(1, near), None).unwrap();
        while k.status().unwrap().messages_processed < 2 {
            assert!(t0.elapsed() < Duration::from_secs(10), "not processed");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(k.entry.clock.now() > near);
        rt.shutdown().unwrap();
    }
}
