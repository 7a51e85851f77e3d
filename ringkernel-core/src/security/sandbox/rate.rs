//! Token-bucket rate limiting of a kernel's sends.

use std::time::{Duration, Instant};

/// Burst allowance: this fraction of a second's worth of messages (50 ms), so that
/// a one-second flood passes at most `rate × 1.05` messages.
const BURST: Duration = Duration::from_millis(50);

/// A token bucket refilled continuously at `rate` tokens per second.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate);
        let capacity = (rate * BURST.as_secs_f64()).max(1.0);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_flood_stays_within_five_percent() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        let mut passed = 0;
        // 100,000 attempts spread evenly over one second.
        for i in 0..100_000u64 {
            if b.try_take(t0 + Duration::from_micros(i * 10)) {
                passed += 1;
            }
        }
        assert!((1000..=1050).contains(&passed), "{passed}");
    }

    #[test]
    fn tiny_rates_still_allow_one() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_secs(1)));
    }
}
