//! Per-route K2K summaries ([`K2kRecords::PerRoute`]): delivered sends are counted by
//! (source, destination, topic) on the sending thread and written by the writer thread
//! as one `k2k.route_summary` record per route per interval, with exact counts.
//!
//! A count never waits for the writer: the sender takes a short lock, finds its route
//! (a hash of the three names, then a string comparison; no allocation once the route
//! is known) and adds one message. The writer swaps the whole table out when it
//! summarises, so every counted send is in exactly one summary.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use super::Event;
use super::format::rfc3339;
use crate::k2k::KernelId;

/// How K2K sends are recorded when [`AuditConfig::log_k2k_messages`](super::AuditConfig)
/// is on (`docs/audit.md`, "K2K records").
///
/// ```
/// use std::time::Duration;
/// use ringkernel_core::security::audit::{AuditLogConfig, K2kRecords};
/// let config = AuditLogConfig {
///     k2k_records: K2kRecords::PerRoute { interval: Duration::from_secs(1) },
///     ..AuditLogConfig::in_directory("/var/log/ringkernel")
/// };
/// assert_ne!(config.k2k_records, K2kRecords::default());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum K2kRecords {
    /// One `k2k.send` record for every send, delivered or refused (the default).
    #[default]
    EachSend,
    /// Refused and failed sends still get one `k2k.send` record each. Delivered sends
    /// are counted per route (source, destination, topic) and written as one
    /// `k2k.route_summary` record per route per `interval`, and at every flush, segment
    /// seal and close: the exact number of messages and bytes, and when the first of
    /// them was sent. Counts are exact; what a crash can lose is the counts of the
    /// current interval (`docs/audit.md`).
    PerRoute {
        /// How often the counts are written (at most: a flush writes them at once);
        /// at least 1 ms, or `AuditLog::open` refuses the configuration.
        interval: Duration,
    },
}

impl K2kRecords {
    /// How often delivered sends are written as per-route counts; `None` when each
    /// send has a record of its own.
    pub fn summary_interval(self) -> Option<Duration> {
        match self {
            K2kRecords::EachSend => None,
            K2kRecords::PerRoute { interval } => Some(interval),
        }
    }
}

/// One route's counts since its last summary.
struct Tally {
    from: Option<KernelId>,
    to: String,
    topic: String,
    messages: u64,
    bytes: u64,
    first_at: SystemTime,
}

/// The counts of the current interval, shared by the senders and the writer.
pub(crate) struct RouteCounts {
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    hasher: std::hash::RandomState,
    /// Route hash -> positions in `tallies` (more than one only on a hash collision).
    index: HashMap<u64, Vec<usize>>,
    tallies: Vec<Tally>,
    /// Set when the log closes: no count is taken after the last summary.
    closed: bool,
}

/// Why a send could not be counted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotCounted {
    /// The log has closed (its last summaries are written).
    Closed,
}

impl RouteCounts {
    pub(crate) fn new() -> Self {
        RouteCounts {
            inner: Mutex::new(Table::default()),
        }
    }

    /// Counts one delivered send of `bytes` from `from` (`None`: the host).
    pub(crate) fn count(
        &self,
        from: Option<&KernelId>,
        to: &str,
        topic: &str,
        bytes: u64,
    ) -> Result<(), NotCounted> {
        let from_name = from.map(KernelId::as_str);
        let mut t = self.inner.lock();
        if t.closed {
            return Err(NotCounted::Closed);
        }
        let h = t.hasher.hash_one((from_name, to, topic));
        let Table { index, tallies, .. } = &mut *t;
        let slots = index.entry(h).or_default();
        let found = slots.iter().copied().find(|&i| {
            let x = &tallies[i];
            x.from.as_ref().map(KernelId::as_str) == from_name && x.to == to && x.topic == topic
        });
        match found {
            Some(i) => {
                let x = &mut tallies[i];
                x.messages += 1;
                x.bytes += bytes;
            }
            None => {
                slots.push(tallies.len());
                tallies.push(Tally {
                    from: from.cloned(),
                    to: to.to_owned(),
                    topic: topic.to_owned(),
                    messages: 1,
                    bytes,
                    first_at: SystemTime::now(),
                });
            }
        }
        Ok(())
    }

    /// Takes the counts so far, as `k2k.route_summary` events in the order the routes
    /// were first used; with `close`, no count is taken afterwards.
    pub(crate) fn take(&self, close: bool) -> Vec<Event> {
        let tallies = {
            let mut t = self.inner.lock();
            t.closed |= close;
            t.index.clear();
            std::mem::take(&mut t.tallies)
        };
        tallies.into_iter().map(Tally::into_event).collect()
    }

    /// Takes the counts of the routes from or to `kernel` only (when it stops, so that
    /// its summaries precede its `kernel.stopped` record), in the order the routes were
    /// first used; the other routes keep counting.
    pub(crate) fn take_kernel(&self, kernel: &KernelId) -> Vec<Event> {
        let taken = {
            let mut t = self.inner.lock();
            let involves = |x: &Tally| x.from.as_ref() == Some(kernel) || x.to == kernel.as_str();
            if !t.tallies.iter().any(involves) {
                return Vec::new();
            }
            let (taken, kept): (Vec<Tally>, Vec<Tally>) = std::mem::take(&mut t.tallies)
                .into_iter()
                .partition(involves);
            // Positions moved: the index is built again over the routes kept.
            let Table {
                hasher,
                index,
                tallies,
                ..
            } = &mut *t;
            index.clear();
            for (i, x) in kept.iter().enumerate() {
                let from = x.from.as_ref().map(KernelId::as_str);
                let h = hasher.hash_one((from, x.to.as_str(), x.topic.as_str()));
                index.entry(h).or_default().push(i);
            }
            *tallies = kept;
            taken
        };
        taken.into_iter().map(Tally::into_event).collect()
    }
}

impl Tally {
    fn into_event(self) -> Event {
        Event::K2kRouteSummary {
            from: self.from,
            to: self.to,
            topic: self.topic,
            messages: self.messages,
            bytes: self.bytes,
            first_at: rfc3339(self.first_at),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn id(s: &str) -> KernelId {
        KernelId::new(s).unwrap()
    }

    #[test]
    fn counts_are_exact_per_route_and_taken_once() {
        let c = RouteCounts::new();
        let (a, b) = (id("a"), id("b"));
        for i in 0..1000u64 {
            c.count(Some(&a), "b", "t", i).unwrap();
            if i % 2 == 0 {
                c.count(Some(&a), "b", "u", 1).unwrap();
                c.count(None, "b", "t", 2).unwrap();
            }
            if i % 5 == 0 {
                c.count(Some(&b), "a", "t", 3).unwrap();
            }
        }
        let got: Vec<(Option<String>, String, String, u64, u64)> = c
            .take(false)
            .into_iter()
            .map(|e| match e {
                Event::K2kRouteSummary {
                    from,
                    to,
                    topic,
                    messages,
                    bytes,
                    ..
                } => (from.map(|k| k.to_string()), to, topic, messages, bytes),
                other => panic!("{other:?}"),
            })
            .collect();
        let s = |x: &str| x.to_owned();
        assert_eq!(
            got,
            vec![
                (Some(s("a")), s("b"), s("t"), 1000, 499_500),
                (Some(s("a")), s("b"), s("u"), 500, 500),
                (None, s("b"), s("t"), 500, 1000),
                (Some(s("b")), s("a"), s("t"), 200, 600),
            ]
        );
        assert!(
            c.take(false).is_empty(),
            "each count is in one summary only"
        );
        c.count(Some(&a), "b", "t", 7).unwrap();
        assert_eq!(c.take(true).len(), 1);
        assert_eq!(c.count(Some(&a), "b", "t", 7), Err(NotCounted::Closed));
        assert!(c.take(false).is_empty());
    }

    #[test]
    fn a_stopping_kernel_s_routes_are_taken_and_the_others_keep_counting() {
        let c = RouteCounts::new();
        let (a, b, x) = (id("a"), id("b"), id("x"));
        for _ in 0..10 {
            c.count(Some(&a), "b", "t", 1).unwrap();
            c.count(Some(&x), "a", "t", 2).unwrap();
            c.count(Some(&b), "x", "t", 3).unwrap();
            c.count(None, "b", "t", 4).unwrap();
        }
        let routes = |events: Vec<Event>| -> Vec<(Option<String>, String, u64)> {
            events
                .into_iter()
                .map(|e| match e {
                    Event::K2kRouteSummary {
                        from, to, messages, ..
                    } => (from.map(|k| k.to_string()), to, messages),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let s = |x: &str| x.to_owned();
        // From a and to a, in first-use order; nothing for a kernel without routes.
        assert_eq!(
            routes(c.take_kernel(&a)),
            vec![(Some(s("a")), s("b"), 10), (Some(s("x")), s("a"), 10)]
        );
        assert!(c.take_kernel(&a).is_empty());
        assert!(c.take_kernel(&id("idle")).is_empty());
        // The routes kept go on counting into the same tallies (the index was rebuilt).
        c.count(Some(&b), "x", "t", 3).unwrap();
        c.count(None, "b", "t", 4).unwrap();
        c.count(Some(&a), "b", "t", 1).unwrap();
        assert_eq!(
            routes(c.take(false)),
            vec![
                (Some(s("b")), s("x"), 11),
                (None, s("b"), 11),
                (Some(s("a")), s("b"), 1),
            ]
        );
    }

    #[test]
    fn names_that_concatenate_alike_are_different_routes() {
        let c = RouteCounts::new();
        c.count(Some(&id("ab")), "c", "d", 1).unwrap();
        c.count(Some(&id("a")), "bc", "d", 1).unwrap();
        c.count(Some(&id("a")), "b", "cd", 1).unwrap();
        c.count(None, "kernel:a", "x", 1).unwrap();
        assert_eq!(c.take(false).len(), 4);
    }
}
