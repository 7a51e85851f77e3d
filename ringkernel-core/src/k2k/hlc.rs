//! Hybrid logical clock: wall-clock microseconds plus a logical counter, so that
//! timestamps are monotonic per kernel and respect causality across messages even when
//! host clocks step backwards.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// A hybrid-logical-clock reading. Ordered by physical time, then logical counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HlcTimestamp {
    /// Microseconds since the Unix epoch (the largest seen, never decreasing).
    pub physical: u64,
    /// Events within the same physical microsecond.
    pub logical: u32,
}

/// A thread-safe hybrid logical clock.
#[derive(Debug, Default)]
pub struct HybridClock {
    last: Mutex<HlcTimestamp>,
}

/// The system clock in microseconds since the Unix epoch (0 before it).
pub(crate) fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How often the wall clock is read again to follow steps of it (an NTP step, an
/// operator setting the time): between reads, wall time is derived from the monotonic
/// clock. On Linux NTP slews both alike; elsewhere they drift apart by a few
/// microseconds per interval at most. After a suspend (during which the monotonic
/// clock stops) timestamps lag for up to one interval; the logical counter keeps them
/// increasing.
const WALL_REFRESH_MICROS: u64 = 10_000;

/// A measurement of the offset whose two monotonic reads (around the wall-clock read)
/// are at most this far apart is taken at once; otherwise the narrowest of four tries
/// is (a thread preempted in between would store an offset off by the time it lost).
const MEASURE_GAP_MICROS: i64 = 200;

/// Wall-clock time derived from a monotonic reading: the offset between the two,
/// measured again every [`WALL_REFRESH_MICROS`]. A send reads one clock, the monotonic
/// one, for both its rate limit and its timestamp.
struct WallAnchor {
    /// Monotonic origin.
    base: Instant,
    /// Wall micros minus monotonic micros since `base`, at the last measurement.
    offset: AtomicI64,
    /// Monotonic micros since `base` of the last measurement.
    measured: AtomicU64,
    /// The latest wall time any measurement read: a clock of this process may hold a
    /// physical time up to about here after the wall clock is set back.
    highest: AtomicU64,
}

fn micros_since(base: Instant, at: Instant) -> i64 {
    i64::try_from(at.saturating_duration_since(base).as_micros()).unwrap_or(i64::MAX)
}

impl WallAnchor {
    fn get() -> &'static WallAnchor {
        static ANCHOR: OnceLock<WallAnchor> = OnceLock::new();
        ANCHOR.get_or_init(WallAnchor::new)
    }

    /// An anchor measured now.
    fn new() -> Self {
        let anchor = WallAnchor {
            base: Instant::now(),
            offset: AtomicI64::new(0),
            measured: AtomicU64::new(0),
            highest: AtomicU64::new(0),
        };
        anchor.measure();
        anchor
    }

    /// Reads the monotonic clock, the wall clock and the monotonic clock again, and
    /// stores the offset at the middle, retrying (a few times) when the two monotonic
    /// reads are far apart. Threads measuring at once each store a measured offset.
    fn measure(&self) {
        let mut best: Option<(i64, i64, i64)> = None;
        for _ in 0..4 {
            let before = micros_since(self.base, Instant::now());
            let wall = i64::try_from(wall_micros()).unwrap_or(i64::MAX);
            let after = micros_since(self.base, Instant::now());
            let gap = after.saturating_sub(before);
            let mid = before.saturating_add(gap / 2);
            if best.is_none_or(|(g, _, _)| gap < g) {
                best = Some((gap, wall, mid));
            }
            if gap <= MEASURE_GAP_MICROS {
                break;
            }
        }
        if let Some((_, wall, mono)) = best {
            self.highest
                .fetch_max(u64::try_from(wall).unwrap_or(0), Ordering::Relaxed);
            // Release, after `highest`: a thread deriving wall time from this offset
            // also sees the wall time it was measured at in `highest`.
            self.offset
                .store(wall.saturating_sub(mono), Ordering::Release);
            self.measured
                .store(u64::try_from(mono).unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// The latest physical time a received timestamp may carry at `at` and still be
    /// merged: [`MAX_CLOCK_AHEAD`] past the wall clock, or past the latest wall time
    /// read before, when the wall clock was set back since (the clocks of the process
    /// keep the times they reached, and their messages are not forgeries).
    fn merge_limit_at(&self, at: Instant) -> u64 {
        let ahead = u64::try_from(MAX_CLOCK_AHEAD.as_micros()).unwrap_or(u64::MAX);
        self.wall_micros_at(at)
            .max(self.highest.load(Ordering::Relaxed))
            .saturating_add(ahead)
    }

    /// Wall micros at the monotonic instant `at`.
    fn wall_micros_at(&self, at: Instant) -> u64 {
        let mono = micros_since(self.base, at);
        let since = u64::try_from(mono)
            .unwrap_or(0)
            .saturating_sub(self.measured.load(Ordering::Relaxed));
        if since > WALL_REFRESH_MICROS {
            self.measure();
        }
        u64::try_from(mono.saturating_add(self.offset.load(Ordering::Acquire))).unwrap_or(0)
    }
}

/// How far ahead of this process's wall clock a received timestamp may be and still be
/// merged into a kernel's clock by the runtime. Every clock of a process derives its
/// physical part from the same wall clock, and runs ahead of it only by borrowing a
/// microsecond per 2^32 events within one; a timestamp a second ahead was forged or
/// corrupted, and merging it would date everything the kernel sends after it that far
/// ahead (and, once saturated, at the end of time for good).
pub const MAX_CLOCK_AHEAD: std::time::Duration = std::time::Duration::from_secs(1);

/// The latest physical time (wall-clock microseconds) a received timestamp may carry now
/// and still be merged: the wall clock (or, after it was set back, the latest wall time
/// read before) plus [`MAX_CLOCK_AHEAD`].
pub(crate) fn clock_merge_limit() -> u64 {
    WallAnchor::get().merge_limit_at(Instant::now())
}

impl HybridClock {
    /// A clock starting at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A timestamp for a local event (send, state change), greater than every earlier one
    /// (equal to it only once the clock has saturated at the end of time, where only a
    /// forged timestamp could have taken it).
    pub fn now(&self) -> HlcTimestamp {
        self.now_at(Instant::now())
    }

    /// [`HybridClock::now`] for an event at the monotonic instant `at` (a send, which
    /// reads the clock once for its rate limit and its timestamp).
    pub(crate) fn now_at(&self, at: Instant) -> HlcTimestamp {
        self.advance(at, None)
    }

    /// Merges a timestamp received from another kernel and returns a local timestamp
    /// greater than both it and every earlier local one (equal once saturated, as for
    /// [`HybridClock::now`]).
    ///
    /// Any timestamp is merged, however far ahead: check it first against a bound (the
    /// runtime merges nothing more than [`MAX_CLOCK_AHEAD`] ahead of the wall clock, or
    /// of the latest wall time read when the wall clock was set back).
    pub fn observe(&self, remote: HlcTimestamp) -> HlcTimestamp {
        self.advance(Instant::now(), Some(remote))
    }

    fn advance(&self, at: Instant, remote: Option<HlcTimestamp>) -> HlcTimestamp {
        let wall = WallAnchor::get().wall_micros_at(at);
        let mut last = self.last.lock();
        let max_seen = remote.map_or(*last, |r| r.max(*last));
        let next = if wall > max_seen.physical {
            HlcTimestamp {
                physical: wall,
                logical: 0,
            }
        } else if max_seen.logical == u32::MAX {
            // Counter exhausted within one microsecond: borrow the next microsecond.
            // (At the end of time, a clock pushed there by a forged timestamp stays.)
            HlcTimestamp {
                physical: max_seen.physical.saturating_add(1),
                logical: if max_seen.physical == u64::MAX {
                    u32::MAX
                } else {
                    0
                },
            }
        } else {
            HlcTimestamp {
                physical: max_seen.physical,
                logical: max_seen.logical + 1, // below u32::MAX: the branch above
            }
        };
        *last = next;
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_and_respects_remote() {
        let c = HybridClock::new();
        let mut prev = c.now();
        for _ in 0..10_000 {
            let t = c.now();
            assert!(t > prev);
            prev = t;
        }
        let future = HlcTimestamp {
            physical: prev.physical + 10_000_000,
            logical: 7,
        };
        let t = c.observe(future);
        assert!(t > future);
        assert!(c.now() > t);
    }

    /// A timestamp at the very end of time (only a forged one can be there) saturates
    /// the clock rather than wrapping it back to zero or panicking.
    #[test]
    fn a_timestamp_at_the_end_of_time_saturates_the_clock() {
        let c = HybridClock::new();
        let end = HlcTimestamp {
            physical: u64::MAX,
            logical: u32::MAX,
        };
        assert_eq!(c.observe(end), end);
        assert_eq!(c.now(), end);
        assert!(c.now() >= end);
    }

    /// The wall clock set back (an NTP step, an operator): the timestamps the
    /// process's clocks handed out before stay mergeable, they are not forgeries; one
    /// past the bound still is not.
    #[test]
    fn a_wall_clock_set_back_does_not_make_earlier_timestamps_look_forged() {
        let anchor = WallAnchor::new();
        let now = Instant::now();
        let before = anchor.wall_micros_at(now);
        let sent_before = before + 500_000; // a clock half a second ahead, say
        // The next measurement finds the wall clock 10 s back.
        anchor.offset.fetch_sub(10_000_000, Ordering::Relaxed);
        assert!(anchor.wall_micros_at(now) + 9_000_000 < before);
        let limit = anchor.merge_limit_at(now);
        assert!(limit >= sent_before, "{limit} refuses {sent_before}");
        assert!(limit < before + 2_000_000, "the bound still holds");
    }

    /// The physical part is wall-clock time: derived from the monotonic clock, it stays
    /// within a few milliseconds of the system clock read around it.
    #[test]
    fn physical_time_follows_the_wall_clock() {
        let c = HybridClock::new();
        for _ in 0..3 {
            let before = wall_micros();
            let t = c.now();
            let after = wall_micros();
            assert!(
                t.physical + 5_000 >= before && t.physical <= after + 5_000,
                "{} outside {before}..={after}",
                t.physical
            );
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
    }
}
