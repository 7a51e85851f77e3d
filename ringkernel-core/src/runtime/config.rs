//! [`RuntimeConfig`]: the runtime's own tunables (queue capacity, poll and tick
//! intervals), apart from the security layers the builder configures.

use std::time::Duration;

/// Tunables of the runtime itself.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Queue capacity of kernels launched without one (default 1024; at most
    /// [`crate::k2k::MAX_QUEUE_CAPACITY`], or `build()` fails).
    pub default_queue_capacity: usize,
    /// How often an idle kernel looks at its control block (default 5 ms).
    pub poll_interval: Duration,
    /// Period of the runtime's ticker (watchdog, rotation, reaping; default 50 ms).
    pub tick_interval: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            default_queue_capacity: 1024,
            poll_interval: Duration::from_millis(5),
            tick_interval: Duration::from_millis(50),
        }
    }
}
