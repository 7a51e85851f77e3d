//! [`RuntimeBuilder`]: backend, mode and (as their layers land) security layers.

use std::sync::Arc;

use super::config::RuntimeConfig;
use super::counters::{self, Counters};
use super::gate::{Gate, Identity, Layers};
use super::{Runtime, SecurityMode};
use crate::backend::{ComputeBackend, CpuBackend};
use crate::error::{Error, Result};
use crate::kinds::PRODUCTION_OPT_OUT_NOTE;
use crate::security::audit::{AuditLog, AuditLogConfig, Event, KeystoreFacts};
use crate::security::compliance::ComplianceReporter;
use crate::security::encryption::{EncryptionConfig, InstanceId, MemoryEncryption};
use crate::security::keystore::{CountKind, Keystore};
use crate::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};

/// Builds a [`Runtime`].
///
/// ```
/// use ringkernel_core::runtime::RuntimeBuilder;
/// use ringkernel_core::security::audit::{AuditConfig, AuditLogConfig};
/// # let tmp = tempfile::tempdir()?;
/// # let dir = tmp.path();
/// // Production: every layer on, with its secure default unless configured.
/// let runtime = RuntimeBuilder::new()
///     .production()
///     .with_audit_logging(AuditLogConfig::in_directory(dir))
///     .build()?;
/// assert_eq!(runtime.backend_info().name, "cpu");
/// assert!(runtime.encryption().is_some() && runtime.sandbox().is_some());
/// # runtime.shutdown()?;
/// # Ok::<(), ringkernel_core::Error>(())
/// ```
pub struct RuntimeBuilder {
    backend: Option<Box<dyn ComputeBackend>>,
    mode: SecurityMode,
    config: RuntimeConfig,
    encryption: Option<MemoryEncryption>,
    sandbox: Option<KernelSandbox>,
    audit: Option<AuditLogConfig>,
    compliance: Option<ComplianceReporter>,
    state_directory: Option<std::path::PathBuf>,
    keystore: Option<Keystore>,
    /// Reasons given to `allow_insecure_sandbox` and `allow_unsealed_regions`.
    insecure_sandbox: Option<String>,
    unsealed_regions: Option<String>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("backend", &self.backend.as_ref().map(|b| b.info().name))
            .field("mode", &self.mode)
            .field("config", &self.config)
            .field("encryption", &self.encryption)
            .field("sandbox", &self.sandbox)
            .field("audit", &self.audit)
            .field("compliance", &self.compliance)
            .field("insecure_sandbox", &self.insecure_sandbox)
            .field("unsealed_regions", &self.unsealed_regions)
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
            audit: None,
            compliance: None,
            state_directory: None,
            keystore: None,
            insecure_sandbox: None,
            unsealed_regions: None,
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

    /// The tamper-evident audit log: launches, stops, sends, violations, key
    /// rotations, compliance runs (and memory access when asked) are recorded.
    ///
    /// Takes what to record (an
    /// [`AuditConfig`](crate::security::audit::AuditConfig), as on the public API page)
    /// or, to say also where and how the log is kept, an [`AuditLogConfig`]. A log whose directory
    /// is not given goes to `audit/` in the state directory when the runtime has a
    /// keystore, else to `./ringkernel-audit`. Without this call, production mode logs
    /// there with the default settings (signed with the keystore's key, or a fresh one);
    /// development mode keeps no log. Production refuses `AuditLogConfig::disabled()`.
    pub fn with_audit_logging(mut self, config: impl Into<AuditLogConfig>) -> Self {
        self.audit = Some(config.into());
        self
    }

    /// A compliance reporter to attach to the runtime being built (its continuous
    /// monitoring, if enabled, starts once the runtime runs). `Runtime::compliance()`
    /// returns it.
    pub fn with_compliance(mut self, reporter: ComplianceReporter) -> Self {
        self.compliance = Some(reporter);
        self
    }

    /// The directory holding what must survive a restart: the kernels' launch
    /// incarnation and snapshot generation counts (`incarnations.json`,
    /// `snapshots.json`, plain files), so that a restarted runtime never reuses an
    /// incarnation or takes an older snapshot for the latest. Created if missing.
    /// Without one, counts start at 1 in every runtime (each runtime's random instance
    /// id still keeps them apart). With [`with_keystore`](Self::with_keystore) the
    /// counts are kept in the keystore instead, authenticated under its KEK.
    pub fn state_directory(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.state_directory = Some(dir.into());
        self
    }

    /// Keys that survive restarts: the keystore's master key seals memory (unless
    /// [`with_encryption`](Self::with_encryption) gives other keys), its audit signing
    /// key signs the log (unless the audit configuration names another), and its
    /// directory becomes the state directory (unless one is set). Without an audit
    /// configuration, production logs to `audit/` in the keystore's directory. A
    /// restarted program opens the same keystore, so it reopens what was sealed and
    /// continues the same signed audit chain.
    pub fn with_keystore(mut self, keystore: Keystore) -> Self {
        self.keystore = Some(keystore);
        self
    }

    /// Lets production mode run a sandbox it would refuse (default limits all unlimited
    /// and a default policy that allows every K2K route it does not deny; see
    /// [`KernelSandbox::insecurity`]). `reason` must say why; it is recorded in the
    /// audit log at build (`runtime.insecure_opt_out`) and in
    /// [`Runtime::security_notes`], and the compliance reports show it.
    pub fn allow_insecure_sandbox(mut self, reason: &str) -> Self {
        self.insecure_sandbox = Some(reason.to_owned());
        self
    }

    /// Lets production mode run an encryption layer that seals no region (control
    /// blocks, message queues and kernel state all off). `reason` must say why; it is
    /// recorded like [`RuntimeBuilder::allow_insecure_sandbox`]'s.
    pub fn allow_unsealed_regions(mut self, reason: &str) -> Self {
        self.unsealed_regions = Some(reason.to_owned());
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
        crate::k2k::validate_queue_capacity("default_queue_capacity", c.default_queue_capacity)?;
        if c.poll_interval.is_zero() || c.tick_interval.is_zero() {
            return Err(Error::InvalidConfig(
                "poll_interval and tick_interval must be greater than zero".into(),
            ));
        }
        for (method, reason) in [
            ("allow_insecure_sandbox", &self.insecure_sandbox),
            ("allow_unsealed_regions", &self.unsealed_regions),
        ] {
            if reason.as_deref().is_some_and(|r| r.trim().is_empty()) {
                return Err(Error::InvalidConfig(format!(
                    "RuntimeBuilder::{method} needs a reason: say why this runtime may run \
                     with that setting (it is recorded in the audit log and the reports)"
                )));
            }
        }
        let instance = InstanceId::random()?;
        let keystore = self.keystore;
        let state_directory = self
            .state_directory
            .or_else(|| keystore.as_ref().map(|k| k.directory().to_owned()));
        // With a keystore the counts live in it (authenticated under its KEK), so that
        // lowering one to have an older snapshot accepted needs more than write access
        // to a plain file; a state directory alone keeps them in plain files.
        let counter = |kind, file, what| match (&keystore, &state_directory) {
            (Some(ks), dir) => {
                let dir = dir.as_deref().unwrap_or_else(|| ks.directory());
                Counters::in_keystore(ks, kind, dir, file, what)
            }
            (None, Some(dir)) => Counters::in_directory(dir, file, what),
            (None, None) => Ok(Counters::in_memory(what)),
        };
        let incarnations = counter(
            CountKind::Incarnations,
            counters::INCARNATIONS,
            "incarnation",
        )?;
        let snapshots = counter(
            CountKind::Snapshots,
            counters::SNAPSHOTS,
            "snapshot generation",
        )?;
        let mut notes = Vec::new();
        let mut opt_outs = Vec::new();
        let from_keystore = match (&keystore, &self.encryption) {
            (Some(ks), None) if self.mode == SecurityMode::Production => {
                notes.push(format!(
                    "memory encryption: keys kept in the keystore {} across restarts",
                    ks.path().display()
                ));
                Some(ks.encryption(EncryptionConfig::secure())?)
            }
            (Some(ks), None) => Some(ks.encryption(EncryptionConfig::secure())?),
            (Some(_), Some(_)) => {
                notes.push(
                    "memory encryption: keys supplied by the caller, not the keystore's".into(),
                );
                None
            }
            (None, _) => None,
        };
        let encryption = match (self.mode, self.encryption.or(from_keystore)) {
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
        if let Some(why) = encryption.as_ref().and_then(|e| seals_nothing(e.config())) {
            let reason = self.unsealed_regions.as_deref();
            opt_outs.extend(insecure_setting(
                self.mode,
                "allow_unsealed_regions",
                reason,
                &why,
                &mut notes,
            )?);
        }
        if let Some(why) = sandbox.as_ref().and_then(KernelSandbox::insecurity) {
            let reason = self.insecure_sandbox.as_deref();
            opt_outs.extend(insecure_setting(
                self.mode,
                "allow_insecure_sandbox",
                reason,
                &why,
                &mut notes,
            )?);
        }
        let audit_config = match (&keystore, self.audit) {
            (Some(ks), Some(mut cfg)) => {
                cfg.signing_key
                    .get_or_insert_with(|| ks.audit_signing_key());
                cfg.directory
                    .get_or_insert_with(|| ks.directory().join("audit"));
                Some(cfg)
            }
            (Some(ks), None) if self.mode == SecurityMode::Production => Some(AuditLogConfig {
                signing_key: Some(ks.audit_signing_key()),
                ..AuditLogConfig::in_directory(ks.directory().join("audit"))
            }),
            (_, cfg) => cfg,
        };
        let audit = match (self.mode, audit_config) {
            (SecurityMode::Production, Some(cfg)) if !cfg.enabled => {
                return Err(Error::InvalidConfig(
                    "production mode refuses a disabled audit log; pass an AuditConfig or an \
                     AuditLogConfig with enabled: true (e.g. \
                     AuditLogConfig::in_directory(\"/var/log/ringkernel\")), \
                     or build with RuntimeBuilder::development()"
                        .into(),
                ));
            }
            (_, Some(mut cfg)) if cfg.enabled => {
                if !cfg.events.log_violations {
                    notes.push("audit log does not record sandbox violations".into());
                }
                // Shipped heads name the runtime instance they come from.
                if let Some(syslog) = cfg.syslog.as_mut() {
                    syslog.instance.get_or_insert_with(|| instance.to_hex());
                }
                Some(AuditLog::open(cfg)?)
            }
            (_, Some(_)) => {
                notes.push("development mode: audit log disabled".into());
                None
            }
            (SecurityMode::Production, None) => {
                notes.push(format!(
                    "audit log: secure default in ./{} (fresh signing key; publish its public key)",
                    crate::security::audit::DEFAULT_DIRECTORY
                ));
                Some(AuditLog::open(AuditLogConfig::default())?)
            }
            (SecurityMode::Development, None) => {
                notes.push("development mode: no audit log".into());
                None
            }
        };
        if let Some(log) = &audit {
            for (method, reason, why) in opt_outs {
                log.append(Event::RuntimeInsecureOptOut {
                    setting: method,
                    reason,
                    insecurity: why,
                })?;
            }
            let enc = encryption.as_ref();
            log.append(Event::RuntimeConfigure {
                instance: instance.to_hex(),
                keystore: keystore.as_ref().map(|k| KeystoreFacts {
                    path: k.path().display().to_string(),
                    created: k.is_new(),
                    generation: k.info().generation,
                }),
                mode: format!("{:?}", self.mode),
                encryption: enc.map_or("none".to_owned(), |e| e.algorithm().to_string()),
                auto_rotate_secs: enc
                    .and_then(|e| e.config().get_auto_rotate())
                    .map(|d| d.as_secs()),
                sandbox: sandbox.is_some(),
                sandbox_default_denies_k2k: sandbox
                    .as_ref()
                    .and_then(|s| s.default_policy())
                    .is_some_and(|p| p.denies_by_default()),
                notes: notes.clone(),
            })?;
        }
        let backend = self.backend.unwrap_or_else(|| Box::new(CpuBackend::new()));
        tracing::info!(backend = backend.info().name, mode = ?self.mode, "building runtime");
        let mut runtime = Runtime::start(Arc::new(Gate::new(
            backend,
            self.mode,
            self.config,
            Layers {
                encryption,
                sandbox,
                audit,
            },
            Identity {
                instance,
                incarnations,
                snapshots,
            },
            notes,
        )?))?;
        if let Some(reporter) = self.compliance {
            reporter.attach(crate::security::compliance::ReportSubject::snapshot_source(
                &runtime,
            ));
            runtime.set_compliance(reporter);
        }
        Ok(runtime)
    }
}

/// Why an encryption configuration seals nothing, if it seals nothing although it has
/// an algorithm (`Algorithm::None` is refused on its own).
fn seals_nothing(config: &EncryptionConfig) -> Option<String> {
    let off = config.get_algorithm() != crate::security::encryption::Algorithm::None
        && !config.seals_control_blocks()
        && !config.seals_message_queues()
        && !config.seals_kernel_state();
    off.then(|| {
        "encryption is configured but seals no region (control blocks, message queues \
         and kernel state are all off); turn one on (EncryptionConfig::\
         encrypt_control_blocks(true), encrypt_message_queues(true), \
         encrypt_kernel_state(true))"
            .to_owned()
    })
}

/// An insecure setting met at build, `why` saying what is wrong. Development mode
/// notes it. Production refuses it with an error naming the fix, unless the caller
/// opted out through `method` with a reason: then it is noted (the note starts with
/// [`PRODUCTION_OPT_OUT_NOTE`]) and returned for the audit log.
fn insecure_setting(
    mode: SecurityMode,
    method: &'static str,
    reason: Option<&str>,
    why: &str,
    notes: &mut Vec<String>,
) -> Result<Option<(&'static str, String, String)>> {
    match (mode, reason) {
        (SecurityMode::Development, _) => {
            notes.push(format!(
                "development mode allowed an insecure setting: {why}"
            ));
            Ok(None)
        }
        (SecurityMode::Production, None) => Err(Error::InvalidConfig(format!(
            "production mode refuses this configuration: {why}; or opt out on record with \
             RuntimeBuilder::{method}(\"reason\"), or build with RuntimeBuilder::development()"
        ))),
        (SecurityMode::Production, Some(reason)) => {
            tracing::warn!(
                setting = method,
                reason,
                insecurity = why,
                "production mode: insecure setting allowed by explicit opt-out"
            );
            notes.push(format!(
                "{PRODUCTION_OPT_OUT_NOTE}: {method}({reason:?}) allowed this: {why}"
            ));
            Ok(Some((method, reason.to_owned(), why.to_owned())))
        }
    }
}
