//! [`SecuritySnapshot`]: a snapshot of the live runtime that checks read.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::backend::BackendInfo;
use crate::kinds::SecurityMode;
use crate::security::audit::VerifyReport;
use crate::security::encryption::{Algorithm, EncryptionStats};
use crate::security::memory::MemoryProtectionInfo;
use crate::security::sandbox::{ResourceLimits, ViolationKind};

/// Facts about memory encryption.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EncryptionFacts {
    /// Whether anything is sealed.
    pub enabled: bool,
    /// The AEAD, when enabled.
    pub algorithm: Option<Algorithm>,
    /// Control blocks sealed in device buffers.
    pub seals_control_blocks: bool,
    /// Queued K2K payloads sealed.
    pub seals_message_queues: bool,
    /// Saved kernel state sealed.
    pub seals_kernel_state: bool,
    /// Timed rotation interval.
    pub auto_rotate: Option<Duration>,
    /// Current key epoch.
    pub current_key_epoch: Option<u32>,
    /// Age of the current key.
    pub key_age: Option<Duration>,
    /// Where the master key came from (`random`, `password`, `disabled`).
    pub key_source: String,
    /// The password KDF, described.
    pub key_derivation: String,
    /// Counters.
    pub stats: EncryptionStats,
}

impl EncryptionFacts {
    /// Whether memory encryption is on (the reference API's name).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }
}

/// Facts about the sandbox.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SandboxFacts {
    /// Whether the runtime has a sandbox.
    pub present: bool,
    /// Whether the default policy denies K2K routes nobody allowed.
    pub default_denies_k2k: bool,
    /// The default limits.
    pub default_limits: ResourceLimits,
    /// How many of the four default limits are set.
    pub limits_set: u32,
    /// Per-kernel overrides (compiled route rules in the route table).
    pub permitted_routes: usize,
    /// Violations so far, by kind.
    pub violations: Vec<(ViolationKind, u64)>,
}

impl SandboxFacts {
    /// All violations.
    pub fn total_violations(&self) -> u64 {
        self.violations.iter().map(|(_, n)| n).sum()
    }
}

/// Facts about the audit log.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuditFacts {
    /// Whether the runtime keeps an audit log.
    pub enabled: bool,
    /// Its directory.
    pub directory: Option<PathBuf>,
    /// Retention in days (0: forever).
    pub retention_days: u32,
    /// Whether sandbox violations are recorded.
    pub logs_violations: bool,
    /// Whether K2K sends are recorded.
    pub logs_k2k_messages: bool,
    /// Whether memory access is recorded.
    pub logs_memory_access: bool,
    /// The public key auditors verify with.
    pub public_key: Option<String>,
    /// The result of verifying the log now (once the writer has stopped, the records
    /// on disk up to the failed write).
    pub verification: Option<Result<VerifyReport, String>>,
    /// Why the writer stopped, once a write has failed (e.g. a full disk); `None`
    /// while it is writing.
    #[serde(default)]
    pub stopped: Option<String>,
    /// Records the runtime could not write since the writer stopped.
    #[serde(default)]
    pub unrecorded: u64,
    /// What the runtime does once the log has stopped: `fail-closed` or `continue`
    /// (`AuditFailurePolicy`).
    #[serde(default)]
    pub on_failure: String,
    /// With `logs_k2k_messages`: how often delivered sends are written as exact
    /// per-route counts (`K2kRecords::PerRoute`), in milliseconds; `None` when every
    /// send has a record of its own.
    #[serde(default)]
    pub k2k_summary_interval_ms: Option<u64>,
}

/// A snapshot of the runtime, taken by `ComplianceReporter::generate`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecuritySnapshot {
    /// When the snapshot was taken (injectable for reproducible reports).
    pub generated_at: SystemTime,
    /// Production or development.
    pub mode: SecurityMode,
    /// The runtime instance's id (32 hex digits), bound into everything it seals.
    pub runtime_instance: String,
    /// The backend.
    pub backend: BackendInfo,
    /// Memory encryption.
    pub memory_encryption: EncryptionFacts,
    /// Host memory protection for secrets.
    pub memory_protection: MemoryProtectionInfo,
    /// The sandbox.
    pub sandbox: SandboxFacts,
    /// The audit log.
    pub audit: AuditFacts,
    /// Kernels known to the runtime.
    pub kernels: usize,
    /// What the builder recorded (insecure choices allowed in development, defaults).
    pub notes: Vec<String>,
}

/// The format tag of a saved snapshot ([`SecuritySnapshot::to_json`]).
pub const SNAPSHOT_FORMAT: &str = "ringkernel.security-snapshot/v1";

/// A saved snapshot: the format tag, then the snapshot.
#[derive(Serialize, Deserialize)]
struct SavedSnapshot {
    format: String,
    snapshot: SecuritySnapshot,
}

impl SecuritySnapshot {
    /// The snapshot as a JSON document (tagged [`SNAPSHOT_FORMAT`]), to report on later
    /// or elsewhere: `ringkernel report snapshot FILE` renders any standard from it
    /// exactly as the runtime would have at the moment it was taken. It holds no secret
    /// (the same facts a report shows).
    pub fn to_json(&self) -> crate::Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(&SavedSnapshot {
            format: SNAPSHOT_FORMAT.to_owned(),
            snapshot: self.clone(),
        })
        .map_err(|e| {
            crate::Error::corrupt_caused_by("security snapshot", "cannot be written as JSON", e)
        })?;
        v.push(b'\n');
        Ok(v)
    }

    /// Reads a snapshot written by [`to_json`](Self::to_json). Anything else (another
    /// format tag, malformed or truncated JSON) is [`Error::Corrupt`](crate::Error::Corrupt)
    /// naming what is wrong.
    pub fn from_json(bytes: &[u8]) -> crate::Result<Self> {
        let saved: SavedSnapshot = serde_json::from_slice(bytes).map_err(|e| {
            crate::Error::corrupt_caused_by("security snapshot", "not valid JSON", e)
        })?;
        if saved.format != SNAPSHOT_FORMAT {
            return Err(crate::Error::corrupt(
                "security snapshot",
                format!("format {:?}, expected {SNAPSHOT_FORMAT:?}", saved.format),
            ));
        }
        Ok(saved.snapshot)
    }
}
