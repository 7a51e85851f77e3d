//! [`SandboxPolicy`]: whom a kernel may message, on which topics, and how it may use
//! its memory.

use super::patterns::{Pattern, PatternSet};
use crate::error::Result;

/// How a kernel may use its own buffers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryAccess {
    /// The kernel may read but not write or free its buffers (the host may still
    /// fill and free them), and may not save state.
    ReadOnly,
    /// Read and write.
    #[default]
    ReadWrite,
}

/// What happens to K2K routes no rule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultRoute {
    /// Denied unless an allow rule matches (`restrictive()`).
    Deny,
    /// Allowed unless a deny rule matches (`permissive()`).
    Allow,
    /// `new()`: denied when the policy has an allow list, allowed otherwise.
    Implicit,
}

/// A kernel's sandbox policy. Explicit deny always beats allow.
///
/// ```
/// use ringkernel_core::security::sandbox::{MemoryAccess, SandboxPolicy};
///
/// // Untrusted kernels: only what is allowed, never the admin kernels.
/// let policy = SandboxPolicy::restrictive()
///     .k2k_allow_list(&["processor_*"])
///     .deny_k2k_to(&["admin_kernel", "audit_kernel"])
///     .memory_access(MemoryAccess::ReadOnly)
///     .allow_topics(&["public.*"]);
/// let compiled = policy.compile().unwrap();
/// assert!(compiled.allows_route("processor_1"));
/// assert!(!compiled.allows_route("admin_kernel"));
/// assert!(!compiled.allows_route("aggregator"));
/// assert!(compiled.allows_topic("public.prices"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxPolicy {
    default_route: DefaultRoute,
    allow: Vec<String>,
    deny: Vec<String>,
    topics: Vec<String>,
    memory_access: MemoryAccess,
}

impl Default for SandboxPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl SandboxPolicy {
    /// No rules yet: routes are allowed unless an allow list is added (then only it
    /// is allowed) or a deny rule matches.
    pub fn new() -> Self {
        SandboxPolicy {
            default_route: DefaultRoute::Implicit,
            allow: Vec::new(),
            deny: Vec::new(),
            topics: Vec::new(),
            memory_access: MemoryAccess::ReadWrite,
        }
    }

    /// For untrusted kernels: every route not explicitly allowed is denied.
    pub fn restrictive() -> Self {
        SandboxPolicy {
            default_route: DefaultRoute::Deny,
            ..Self::new()
        }
    }

    /// For trusted kernels: every route not explicitly denied is allowed.
    pub fn permissive() -> Self {
        SandboxPolicy {
            default_route: DefaultRoute::Allow,
            ..Self::new()
        }
    }

    /// Allows routes to kernels matching these patterns.
    pub fn k2k_allow_list<S: AsRef<str>>(mut self, patterns: &[S]) -> Self {
        self.allow
            .extend(patterns.iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// Denies routes to kernels matching these patterns (deny beats allow).
    pub fn k2k_deny_list<S: AsRef<str>>(mut self, patterns: &[S]) -> Self {
        self.deny
            .extend(patterns.iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// Same as [`SandboxPolicy::k2k_deny_list`].
    pub fn deny_k2k_to<S: AsRef<str>>(self, patterns: &[S]) -> Self {
        self.k2k_deny_list(patterns)
    }

    /// Allows every route not denied.
    pub fn allow_all_k2k(mut self) -> Self {
        self.default_route = DefaultRoute::Allow;
        self
    }

    /// Denies every route not allowed.
    pub fn deny_all_k2k(mut self) -> Self {
        self.default_route = DefaultRoute::Deny;
        self
    }

    /// Only these topics may be sent on (no list: any topic).
    pub fn allow_topics<S: AsRef<str>>(mut self, patterns: &[S]) -> Self {
        self.topics
            .extend(patterns.iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// Read-only or read-write access to the kernel's own buffers.
    pub fn memory_access(mut self, access: MemoryAccess) -> Self {
        self.memory_access = access;
        self
    }

    /// The configured memory access.
    pub fn get_memory_access(&self) -> MemoryAccess {
        self.memory_access
    }

    /// Compiles the patterns; invalid ones are refused with the pattern named.
    pub fn compile(&self) -> Result<CompiledPolicy> {
        let allow = PatternSet::new(&self.allow)?;
        let deny = PatternSet::new(&self.deny)?;
        let topics = PatternSet::new(&self.topics)?;
        let default_allow = match self.default_route {
            DefaultRoute::Allow => true,
            DefaultRoute::Deny => false,
            DefaultRoute::Implicit => allow.is_empty(),
        };
        Ok(CompiledPolicy {
            source: self.clone(),
            allow,
            deny,
            topics,
            default_allow,
        })
    }

    /// Number of route and topic rules.
    pub fn rule_count(&self) -> usize {
        self.allow.len() + self.deny.len() + self.topics.len()
    }
}

/// A policy with its patterns compiled.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    source: SandboxPolicy,
    allow: PatternSet,
    deny: PatternSet,
    topics: PatternSet,
    default_allow: bool,
}

impl CompiledPolicy {
    /// Whether a route to `target` is allowed. Deny beats allow; then allow; then the
    /// default.
    pub fn allows_route(&self, target: &str) -> bool {
        if self.deny.matches(target) {
            return false;
        }
        self.default_allow || self.allow.matches(target)
    }

    /// Whether sending on `topic` is allowed.
    pub fn allows_topic(&self, topic: &str) -> bool {
        self.topics.is_empty() || self.topics.matches(topic)
    }

    /// Whether the policy restricts topics at all.
    pub fn restricts_topics(&self) -> bool {
        !self.topics.is_empty()
    }

    /// Memory access.
    pub fn memory_access(&self) -> MemoryAccess {
        self.source.memory_access
    }

    /// Whether routes not named are denied.
    pub fn denies_by_default(&self) -> bool {
        !self.default_allow
    }

    /// The policy it was compiled from.
    pub fn source(&self) -> &SandboxPolicy {
        &self.source
    }
}

/// Selects a policy for kernels whose id matches a pattern.
#[derive(Clone, Debug)]
pub(crate) struct Override {
    pub(crate) selector: Pattern,
    pub(crate) limits: super::ResourceLimits,
    pub(crate) policy: CompiledPolicy,
}
