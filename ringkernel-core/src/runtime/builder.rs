//! [`RuntimeBuilder`]: backend, mode and (as their layers land) security layers.

use std::sync::Arc;
use std::time::Duration;

use super::Runtime;
use super::gate::Gate;
use crate::backend::{ComputeBackend, CpuBackend};
use crate::error::{Error, Result};
use crate::security::encryption::{EncryptionConfig, MemoryEncryption};
use crate::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};

/// Production refuses insecure settings and fills in secure defaults; development allows
/// them and says so in the compliance report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityMode {
    /// Secure defaults for every layer not configured; insecure settings are errors.
    Production,
    /// Insecure settings allowed (for tests and local work); reported as such.
    Development,
}

/// Tunables of the runtime itself.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Queue capacity of kernels launched without one (default 1024).
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

/// Builds a [`Runtime`].
///
/// ```
/// use ringkernel_core::runtime::RuntimeBuilder;
/// let runtime = RuntimeBuilder::new().production().build()?;
/// assert_eq!(runtime.backend_info().name, "cpu");
/// # Ok::<(), ringkernel_core::Error>(())
/// ```
pub struct RuntimeBuilder {
    backend: Option<Box<dyn ComputeBackend>>,
    mode: SecurityMode,
    config: RuntimeConfig,
    encryption: Option<MemoryEncryption>,
    sandbox: Option<KernelSandbox>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("backend", &self.backend.as_ref().map(|b| b.info().name))
            .field("mode", &self.mode)
            .field("config", &self.config)
            .field("encryption", &self.encryption)
            .field("sandbox", &self.sandbox)
            .finish()
    }
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RuntimeBuilder {
    /// A builder in production mode on the CPU backend.
    pub fn new() -> Self {
        RuntimeBuilder {
            backend: None,
            mode: SecurityMode::Production,
            config: RuntimeConfig::default(),
            encryption: None,
            sandbox: None,
        }
    }

    /// Production mode (the default): secure defaults, insecure settings refused.
    pub fn production(mut self) -> Self {
        self.mode = SecurityMode::Production;
        self
    }

    /// Development mode: insecure settings allowed, and reported.
    pub fn development(mut self) -> Self {
        self.mode = SecurityMode::Development;
        self
    }

    /// The compute backend (the CPU backend when not given). The runtime takes
    /// ownership: from then on the backend is reached only through the runtime.
    pub fn with_backend(mut self, backend: impl ComputeBackend) -> Self {
        self.backend = Some(Box::new(backend));
        self
    }

    /// The memory-encryption layer: control blocks, queued messages and kernel state
    /// are sealed as its configuration says, and its keys rotate on the runtime's
    /// ticker. Without it, production mode uses `EncryptionConfig::secure()` with a
    /// random key; development mode seals nothing.
    pub fn with_encryption(mut self, encryption: MemoryEncryption) -> Self {
        self.encryption = Some(encryption);
        self
    }

    /// The kernel sandbox: its limits and policies are enforced on every send,
    /// allocation, kernel-side write and watchdog tick. Without it, production mode
    /// uses `ResourceLimits::conservative()` with `SandboxPolicy::restrictive()` (no
    /// K2K route unless allowed); development mode has no sandbox.
    pub fn with_sandbox(mut self, sandbox: KernelSandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Runtime tunables.
    pub fn config(mut self, config: RuntimeConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds and starts the runtime.
    pub fn build(self) -> Result<Runtime> {
        let c = &self.config;
        if c.default_queue_capacity == 0 {
            return Err(Error::InvalidConfig(
                "default_queue_capacity must be at least 1".into(),
            ));
        }
        if c.poll_interval.is_zero() || c.tick_interval.is_zero() {
            return Err(Error::InvalidConfig(
                "poll_interval and tick_interval must be greater than zero".into(),
            ));
        }
        let mut notes = Vec::new();
        let encryption = match (self.mode, self.encryption) {
            (SecurityMode::Production, Some(enc)) => {
                if let Some(why) = enc.config().insecurity() {
                    return Err(Error::InvalidConfig(format!(
                        "production mode refuses this encryption configuration: {why}"
                    )));
                }
                Some(enc)
            }
            (SecurityMode::Production, None) => {
                notes.push(
                    "memory encryption: secure default (AES-256-GCM, random key, 24 h rotation)"
                        .into(),
                );
                Some(MemoryEncryption::new(EncryptionConfig::secure())?)
            }
            (SecurityMode::Development, Some(enc)) => {
                if let Some(why) = enc.config().insecurity() {
                    tracing::warn!(reason = %why, "development mode: insecure encryption configuration allowed");
                    notes.push(format!(
                        "development mode allowed an insecure setting: {why}"
                    ));
                }
                Some(enc)
            }
            (SecurityMode::Development, None) => {
                notes.push(
                    "development mode: memory encryption not configured; nothing is sealed".into(),
                );
                None
            }
        };
        let sandbox = match (self.mode, self.sandbox) {
            (_, Some(sb)) => {
                sb.validate()?;
                Some(sb)
            }
            (SecurityMode::Production, None) => {
                notes.push(
                    "sandbox: secure default (conservative limits, restrictive policy: no K2K route unless allowed)"
                        .into(),
                );
                Some(KernelSandbox::with_policy(
                    ResourceLimits::conservative(),
                    SandboxPolicy::restrictive(),
                ))
            }
            (SecurityMode::Development, None) => {
                notes.push("development mode: no sandbox; kernels are not limited".into());
                None
            }
        };
        let backend = self.backend.unwrap_or_else(|| Box::new(CpuBackend::new()));
        tracing::info!(backend = backend.info().name, mode = ?self.mode, "building runtime");
        Runtime::start(Arc::new(Gate::new(
            backend,
            self.mode,
            self.config,
            encryption,
            sandbox,
            notes,
        )))
    }
}
