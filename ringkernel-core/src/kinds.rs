//! Leaf kinds that every layer names: the runtime's [`SecurityMode`], the kind of a
//! sandbox violation ([`ViolationKind`]) and what a shutdown did ([`ShutdownReport`],
//! which an error can carry). They depend on nothing else in the crate, so
//! errors, security layers, backends and the runtime can all use them without an
//! import circle. Their public homes are `runtime::SecurityMode` and
//! `security::sandbox::ViolationKind` and `runtime::ShutdownReport`.

use std::fmt;

/// Production refuses insecure settings and fills in secure defaults; development allows
/// them and says so in the compliance report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SecurityMode {
    /// Secure defaults for every layer not configured; insecure settings are errors.
    Production,
    /// Insecure settings allowed (for tests and local work); reported as such.
    Development,
}

/// How the security notes of a production runtime begin when the caller opted out of
/// a refusal (`RuntimeBuilder::allow_insecure_sandbox`, `allow_unsealed_regions`); the
/// compliance checks look for it.
pub(crate) const PRODUCTION_OPT_OUT_NOTE: &str =
    "production mode allowed an insecure setting by explicit opt-out";

/// The kind of a violation, without its numbers: the key for configured actions and
/// counters.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum ViolationKind {
    /// [`crate::security::sandbox::ViolationType::MemoryExceeded`].
    MemoryExceeded,
    /// [`crate::security::sandbox::ViolationType::ExecutionTimeout`].
    ExecutionTimeout,
    /// [`crate::security::sandbox::ViolationType::UnauthorizedK2K`].
    UnauthorizedK2K,
    /// [`crate::security::sandbox::ViolationType::RateLimitExceeded`].
    RateLimitExceeded,
    /// [`crate::security::sandbox::ViolationType::UnauthorizedTopic`].
    UnauthorizedTopic,
    /// [`crate::security::sandbox::ViolationType::ConnectionLimitExceeded`].
    ConnectionLimitExceeded,
    /// [`crate::security::sandbox::ViolationType::ReadOnlyWrite`].
    ReadOnlyWrite,
}

impl ViolationKind {
    /// Every kind, in declaration order.
    pub const ALL: [ViolationKind; 7] = [
        ViolationKind::MemoryExceeded,
        ViolationKind::ExecutionTimeout,
        ViolationKind::UnauthorizedK2K,
        ViolationKind::RateLimitExceeded,
        ViolationKind::UnauthorizedTopic,
        ViolationKind::ConnectionLimitExceeded,
        ViolationKind::ReadOnlyWrite,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What `shutdown()` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Kernels stopped.
    pub kernels: usize,
    /// Messages left unprocessed in queues.
    pub undelivered: u64,
    /// Device memory still reserved afterwards (0 unless a kernel was stuck).
    pub memory_in_use: u64,
    /// Kernels that did not stop in time.
    pub stuck: Vec<String>,
    /// Why the audit log could not be closed (its last segment sealed and the close
    /// record signed), if it could not: typically the write failure that stopped it.
    /// Its records up to that failure verify; `verify` reports the log as open.
    pub audit_log_not_closed: Option<String>,
}

impl ShutdownReport {
    /// Whether everything stopped and the audit log (if any) closed.
    pub fn is_complete(&self) -> bool {
        self.stuck.is_empty() && self.audit_log_not_closed.is_none()
    }
}
