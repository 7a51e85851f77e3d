//! Hybrid logical clock: wall-clock microseconds plus a logical counter, so that
//! timestamps are monotonic per kernel and respect causality across messages even when
//! host clocks step backwards.

use std::time::{SystemTime, UNIX_EPOCH};

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

fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl HybridClock {
    /// A clock starting at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A timestamp for a local event (send, state change), greater than every earlier one.
    pub fn now(&self) -> HlcTimestamp {
        self.advance(None)
    }

    /// Merges a timestamp received from another kernel and returns a local timestamp
    /// greater than both it and every earlier local one.
    pub fn observe(&self, remote: HlcTimestamp) -> HlcTimestamp {
        self.advance(Some(remote))
    }

    fn advance(&self, remote: Option<HlcTimestamp>) -> HlcTimestamp {
        let wall = wall_micros();
        let mut last = self.last.lock();
        let max_seen = remote.map_or(*last, |r| r.max(*last));
        let next = if wall > max_seen.physical {
            HlcTimestamp {
                physical: wall,
                logical: 0,
            }
        } else if max_seen.logical == u32::MAX {
            // Counter exhausted within one microsecond: borrow the next microsecond.
            HlcTimestamp {
                physical: max_seen.physical + 1,
                logical: 0,
            }
        } else {
            HlcTimestamp {
                physical: max_seen.physical,
                logical: max_seen.logical + 1,
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
}
