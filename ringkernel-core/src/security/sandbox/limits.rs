//! [`ResourceLimits`]: how much a kernel may use.

use std::time::Duration;

/// Resource limits of a kernel. `None` (the `new()` default for every field) means
/// unlimited; [`ResourceLimits::conservative`] sets all four.
///
/// ```
/// use ringkernel_core::security::sandbox::ResourceLimits;
/// use std::time::Duration;
///
/// let limits = ResourceLimits::new()
///     .max_memory_bytes(1024 * 1024 * 1024)
///     .max_execution_time(Duration::from_secs(60))
///     .max_messages_per_second(10_000)
///     .max_k2k_connections(10);
/// assert_eq!(limits.memory_bytes(), Some(1 << 30));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResourceLimits {
    max_memory_bytes: Option<u64>,
    max_execution_time: Option<Duration>,
    max_messages_per_second: Option<u32>,
    max_k2k_connections: Option<u32>,
}

impl ResourceLimits {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Conservative limits for untrusted kernels: 256 MiB of device memory, 1 hour of
    /// execution, 1,000 messages/s, 8 distinct K2K peers.
    pub fn conservative() -> Self {
        ResourceLimits::new()
            .max_memory_bytes(256 << 20)
            .max_execution_time(Duration::from_secs(3600))
            .max_messages_per_second(1_000)
            .max_k2k_connections(8)
    }

    /// Device memory the kernel may own, in reserved bytes (its control block counts).
    pub fn max_memory_bytes(mut self, bytes: u64) -> Self {
        self.max_memory_bytes = Some(bytes);
        self
    }

    /// How long the kernel may run before the watchdog stops it.
    pub fn max_execution_time(mut self, d: Duration) -> Self {
        self.max_execution_time = Some(d);
        self
    }

    /// Messages per second the kernel may send (token bucket, 50 ms burst; a kernel
    /// relaunched under the same id continues the bucket).
    pub fn max_messages_per_second(mut self, rate: u32) -> Self {
        self.max_messages_per_second = Some(rate);
        self
    }

    /// Distinct kernels the kernel may send to, counted per kernel id (a kernel
    /// relaunched under the same id continues the count).
    pub fn max_k2k_connections(mut self, n: u32) -> Self {
        self.max_k2k_connections = Some(n);
        self
    }

    /// The memory limit.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.max_memory_bytes
    }

    /// The execution-time limit.
    pub fn execution_time(&self) -> Option<Duration> {
        self.max_execution_time
    }

    /// The message-rate limit.
    pub fn messages_per_second(&self) -> Option<u32> {
        self.max_messages_per_second
    }

    /// The connection limit.
    pub fn k2k_connections(&self) -> Option<u32> {
        self.max_k2k_connections
    }

    /// Whether no limit is set.
    pub fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }
}
