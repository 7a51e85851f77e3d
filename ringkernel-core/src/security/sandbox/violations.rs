//! Violations: what a kernel tried that its sandbox did not allow, and what was done.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, SystemTime};

pub use crate::kinds::ViolationKind;

/// What was violated, with the numbers that matter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViolationType {
    /// An allocation would have taken the kernel past its memory limit.
    MemoryExceeded {
        /// Reserved bytes the kernel would have owned.
        used: u64,
        /// The limit.
        limit: u64,
    },
    /// The kernel ran longer than its execution-time limit.
    ExecutionTimeout {
        /// How long it had run.
        elapsed: Duration,
    },
    /// A send to a kernel the policy does not allow.
    UnauthorizedK2K {
        /// The refused destination.
        target: String,
    },
    /// A send beyond the kernel's message rate.
    RateLimitExceeded {
        /// The limit, in messages per second.
        rate: u32,
    },
    /// A send on a topic the policy does not allow.
    UnauthorizedTopic {
        /// The refused topic.
        topic: String,
    },
    /// A send to one more distinct peer than allowed.
    ConnectionLimitExceeded {
        /// The peer that would have been one too many.
        target: String,
        /// The limit.
        limit: u32,
    },
    /// A write to (or a free of) a kernel's buffers, or a state save, by the kernel
    /// under read-only memory access.
    ReadOnlyWrite {
        /// The buffer written or freed (0 for saved state).
        buffer: u64,
    },
}

impl ViolationType {
    /// The kind.
    pub fn kind(&self) -> ViolationKind {
        match self {
            ViolationType::MemoryExceeded { .. } => ViolationKind::MemoryExceeded,
            ViolationType::ExecutionTimeout { .. } => ViolationKind::ExecutionTimeout,
            ViolationType::UnauthorizedK2K { .. } => ViolationKind::UnauthorizedK2K,
            ViolationType::RateLimitExceeded { .. } => ViolationKind::RateLimitExceeded,
            ViolationType::UnauthorizedTopic { .. } => ViolationKind::UnauthorizedTopic,
            ViolationType::ConnectionLimitExceeded { .. } => ViolationKind::ConnectionLimitExceeded,
            ViolationType::ReadOnlyWrite { .. } => ViolationKind::ReadOnlyWrite,
        }
    }
}

impl fmt::Display for ViolationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViolationType::MemoryExceeded { used, limit } => {
                write!(f, "memory limit exceeded: {used} > {limit} bytes")
            }
            ViolationType::ExecutionTimeout { elapsed } => {
                write!(f, "execution time limit exceeded after {elapsed:?}")
            }
            ViolationType::UnauthorizedK2K { target } => {
                write!(f, "unauthorized K2K to {target:?}")
            }
            ViolationType::RateLimitExceeded { rate } => {
                write!(f, "message rate limit of {rate} msg/s exceeded")
            }
            ViolationType::UnauthorizedTopic { topic } => write!(f, "unauthorized topic {topic:?}"),
            ViolationType::ConnectionLimitExceeded { target, limit } => {
                write!(
                    f,
                    "K2K connection limit of {limit} peers exceeded by a send to {target:?}"
                )
            }
            ViolationType::ReadOnlyWrite { buffer } => {
                write!(f, "write to buffer {buffer} under read-only memory access")
            }
        }
    }
}

/// What the runtime does when a violation happens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ViolationAction {
    /// Refuse the operation with `Error::Denied` (the default for every kind).
    #[default]
    Deny,
    /// Record the violation but let the operation go ahead.
    LogOnly,
    /// Refuse the operation and stop the kernel.
    Terminate,
}

/// One recorded violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What was violated.
    pub violation_type: ViolationType,
    /// The offending kernel.
    pub kernel: String,
    /// When (wall clock).
    pub timestamp: SystemTime,
    /// The operation, in words.
    pub context: String,
    /// What the runtime did.
    pub action: ViolationAction,
}

/// A bounded ring of a kernel's most recent violations plus its total count.
#[derive(Clone, Debug)]
pub(crate) struct ViolationRing {
    recent: VecDeque<Violation>,
    capacity: usize,
    total: u64,
}

impl ViolationRing {
    pub(crate) fn new(capacity: usize) -> Self {
        ViolationRing {
            recent: VecDeque::with_capacity(capacity.min(64)),
            capacity: capacity.max(1),
            total: 0,
        }
    }

    pub(crate) fn push(&mut self, v: Violation) {
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back(v);
        self.total += 1;
    }

    pub(crate) fn recent(&self) -> Vec<Violation> {
        self.recent.iter().cloned().collect()
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }
}
