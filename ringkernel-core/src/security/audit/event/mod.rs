//! Every event the runtime and its security layers record, with its fields.
//!
//! Each variant of [`Event`] is one row of the table in `docs/audit.md`; [`Event::record`]
//! is the one place a variant becomes a record (event name, actor, target, result,
//! details), so the names and values written stay the same wherever an event is raised.
//! Applications record their own events with [`AuditEvent::new`](super::AuditEvent::new).
//!
//! ```
//! use ringkernel_core::k2k::KernelId;
//! use ringkernel_core::security::audit::{AuditConfig, AuditLogConfig, AuditEvent, AuditLog, Event};
//!
//! # let tmp = tempfile::tempdir()?;
//! let log = AuditLog::open(AuditLogConfig::in_directory(tmp.path()))?;
//! // The runtime's events: typed, named and shaped in one place.
//! let kernel = KernelId::new("processor_1")?;
//! log.append(Event::KernelTerminate { kernel })?;
//! // An application's own event.
//! log.append(AuditEvent::new("app.deploy").actor("host").detail("version", "1.4.2"))?;
//! log.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Never put key material, passwords, message payloads or buffer contents in a field.

mod record;
#[cfg(test)]
mod tests;

use super::{AuditPublicKey, AuditResult};
use crate::error::Error;
use crate::k2k::KernelId;
use crate::security::encryption::KeyId;

/// Why an audited operation did not succeed: refused by a security layer (`denied`)
/// or failed (`error`), with the error's message.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// `Denied` for a sandbox refusal, `Error` otherwise.
    pub result: AuditResult,
    /// The error's message.
    pub error: String,
}

impl Failure {
    /// The failure `e` stands for.
    pub fn of(e: &Error) -> Self {
        Failure {
            result: if matches!(e, Error::Denied { .. }) {
                AuditResult::Denied
            } else {
                AuditResult::Error
            },
            error: e.to_string(),
        }
    }
}

/// What the keystore looked like when the runtime was configured.
#[derive(Clone, Debug, PartialEq)]
pub struct KeystoreFacts {
    /// Where the keystore file is.
    pub path: String,
    /// Whether this build created it.
    pub created: bool,
    /// Its generation.
    pub generation: u64,
}

/// What a successful launch set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launched {
    /// The kernel id's incarnation (how many times it has been launched).
    pub incarnation: u32,
    /// Input queue capacity, in messages.
    pub queue_capacity: u64,
    /// Whether the control block is sealed.
    pub sealed_control_block: bool,
}

/// A buffer operation (`memory.<op>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryOp {
    /// `memory.allocate`.
    Allocate,
    /// `memory.read`.
    Read,
    /// `memory.write`.
    Write,
    /// `memory.free`.
    Free,
}

impl MemoryOp {
    fn event(self) -> &'static str {
        match self {
            MemoryOp::Allocate => "memory.allocate",
            MemoryOp::Read => "memory.read",
            MemoryOp::Write => "memory.write",
            MemoryOp::Free => "memory.free",
        }
    }
}

/// What the sandbox did about a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationAction {
    /// Refused the operation.
    Deny,
    /// Let it through and recorded it.
    LogOnly,
    /// Refused it and stopped the kernel.
    Terminate,
}

/// A step of the execution-time watchdog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchdogAction {
    /// The kernel was asked to stop (`should_terminate` raised).
    RaiseShouldTerminate,
    /// The grace period passed: the kernel was cut off.
    CutOffAfterGrace,
}

/// Which key set an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySet {
    /// The configured encryption's keys.
    Configured,
    /// The keys of the companion that seals GPU control blocks.
    GpuControlBlocks,
}

impl KeySet {
    /// Its name in records (`configured`, `gpu_control_blocks`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeySet::Configured => "configured",
            KeySet::GpuControlBlocks => "gpu_control_blocks",
        }
    }
}

/// What started a key rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationTrigger {
    /// The rotation interval passed (`auto_rotate`), for this key set.
    Timed(KeySet),
    /// The host asked for it (`Runtime::rotate_keys`, which rotates every key set);
    /// this many regions were re-sealed under the new keys.
    Explicit {
        /// Regions re-sealed.
        regions_resealed: u64,
        /// Which key set this record's key belongs to.
        keys: KeySet,
    },
    /// The key before reached its usage bound (`max_seals_per_key` or
    /// `max_bytes_per_key`) during a seal, which rotated at once; recorded by the
    /// runtime's next tick (or shutdown), before any re-seal under the new key.
    UsageBound(KeySet),
    /// Rotated through the `MemoryEncryption` handle rather than the runtime (or
    /// retired before the runtime saw why); recorded like `UsageBound`.
    Outside(KeySet),
}

/// Why a saved state was not restored.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// The error's message.
    pub error: String,
    /// The error's code.
    pub error_code: u32,
}

/// An event of the runtime or a security layer. One variant per event of the table in
/// `docs/audit.md`; [`Event::record`] gives its record.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// `audit.open`: the log opened, or resumed after an earlier run.
    AuditOpen {
        /// The log's signing key.
        public_key: AuditPublicKey,
        /// On a resume, the last sequence number of the earlier run.
        resumed_after_seq: Option<u64>,
        /// On a resume, the hash of the signed head the new one links to.
        previous_head: Option<String>,
    },
    /// `runtime.insecure_opt_out`: a production build used an insecure setting.
    RuntimeInsecureOptOut {
        /// The builder method.
        setting: &'static str,
        /// The reason given for it.
        reason: String,
        /// What it lets through.
        insecurity: String,
    },
    /// `runtime.configure`: `build()` configured a runtime.
    RuntimeConfigure {
        /// The runtime instance id, hex.
        instance: String,
        /// The keystore, if any.
        keystore: Option<KeystoreFacts>,
        /// The security mode (`Production`, `Development`).
        mode: String,
        /// The encryption algorithm, or `none`.
        encryption: String,
        /// The rotation interval in seconds, if any.
        auto_rotate_secs: Option<u64>,
        /// Whether a sandbox is configured.
        sandbox: bool,
        /// Whether its default policy denies K2K.
        sandbox_default_denies_k2k: bool,
        /// The builder's notes.
        notes: Vec<String>,
    },
    /// `kernel.launch`: a launch by the host, and how it ended.
    KernelLaunch {
        /// The kernel id.
        kernel: KernelId,
        /// What was set up, or why the launch failed.
        outcome: Result<Launched, Failure>,
    },
    /// `kernel.terminate`: a stop was requested.
    KernelTerminate {
        /// The kernel id.
        kernel: KernelId,
    },
    /// `kernel.failed`: a kernel stopped because its device failed or was refused.
    KernelFailed {
        /// The kernel id.
        kernel: KernelId,
        /// The error.
        failure: Failure,
        /// Its code (the control block's `last_error`).
        code: u32,
        /// Its integrity kind (as in `seal.refused`), or `other`.
        kind: &'static str,
    },
    /// `kernel.stopped`: a kernel was finalized.
    KernelStopped {
        /// The kernel id.
        kernel: KernelId,
        /// Messages it processed.
        messages_processed: u64,
        /// Messages left undelivered.
        undelivered: u64,
        /// Errors it counted.
        errors: u32,
        /// The last error's code (0 for none).
        last_error: u32,
        /// Whether its worker was joined (false: cut off).
        joined: bool,
        /// How long it ran, in milliseconds.
        uptime_ms: u64,
    },
    /// `k2k.send`: a message was sent, or refused. Never the payload.
    K2kSend {
        /// The sending kernel, or `None` for the host.
        from: Option<KernelId>,
        /// The destination.
        to: String,
        /// The topic.
        topic: String,
        /// Payload size in bytes.
        bytes: u64,
        /// The message's sequence number, or why it was not sent.
        outcome: Result<u64, Failure>,
    },
    /// `k2k.route_summary`: delivered sends on one route since its last summary
    /// ([`K2kRecords::PerRoute`](super::K2kRecords)). Never payloads.
    K2kRouteSummary {
        /// The sending kernel, or `None` for the host.
        from: Option<KernelId>,
        /// The destination.
        to: String,
        /// The topic.
        topic: String,
        /// Messages delivered (exact).
        messages: u64,
        /// Their payload bytes in all.
        bytes: u64,
        /// When the first of them was sent (RFC 3339); the last was sent before the
        /// record's own `ts`.
        first_at: String,
    },
    /// `memory.<op>`: a buffer operation of a kernel.
    Memory {
        /// The operation.
        op: MemoryOp,
        /// The kernel id.
        kernel: KernelId,
        /// The buffer.
        buffer: u64,
        /// Bytes concerned.
        bytes: u64,
        /// Why it failed, if it did.
        failure: Option<Failure>,
    },
    /// `seal.refused`: a sealed region failed to open.
    SealRefused {
        /// The kernel id.
        kernel: KernelId,
        /// Which region (control block, queued payload, saved state...).
        region: String,
        /// What happened (`tampered`, `stale`, `replayed`...).
        kind: &'static str,
        /// The error's message.
        error: String,
        /// Failures of this launch so far.
        failures: u64,
    },
    /// `state.export`: a kernel's state left as a snapshot.
    StateExport {
        /// The kernel id.
        kernel: KernelId,
        /// The generation exported.
        generation: u32,
    },
    /// `state.restore`: a snapshot was offered back, and restored or refused.
    StateRestore {
        /// The kernel id.
        kernel: KernelId,
        /// The generation the host named.
        expected_generation: u32,
        /// The generation the snapshot carries.
        offered_generation: u32,
        /// Why it was refused, if it was.
        refusal: Option<Refusal>,
    },
    /// `sandbox.violation`: the sandbox caught a kernel.
    SandboxViolation {
        /// The kernel id.
        kernel: KernelId,
        /// The kind of violation.
        kind: String,
        /// Why.
        reason: String,
        /// What the sandbox did.
        action: ViolationAction,
    },
    /// `sandbox.watchdog`: the execution-time limit stepped in.
    SandboxWatchdog {
        /// The kernel id.
        kernel: KernelId,
        /// What it did.
        step: WatchdogAction,
    },
    /// `key.rotate`: a new data key.
    KeyRotate {
        /// The new key.
        key: KeyId,
        /// What started the rotation.
        trigger: RotationTrigger,
    },
    /// `key.reseal`: live regions re-sealed under the current key epoch.
    KeyReseal {
        /// The current key epoch.
        epoch: u32,
        /// Regions re-sealed.
        regions: u64,
    },
    /// `key.retire`: old key epochs retired.
    KeyRetire {
        /// The epochs retired.
        epochs: Vec<u64>,
        /// Which key set.
        keys: KeySet,
    },
    /// `compliance.report`: a compliance report ran.
    ComplianceReport {
        /// The standard's name.
        standard: String,
        /// Checks compliant.
        compliant: u64,
        /// Checks partially compliant.
        partially_compliant: u64,
        /// Checks not compliant.
        non_compliant: u64,
    },
    /// `compliance.status_change`: a check's status changed under monitoring.
    ComplianceStatusChange {
        /// The standard's name.
        standard: String,
        /// The check's id.
        check: String,
        /// The earlier status, or `none`.
        from: String,
        /// The new status.
        to: String,
    },
    /// `syslog.dropped`: the syslog shipper's queue was full (the collector down or
    /// slow for longer than the buffer lasts) and messages were not shipped. The log
    /// itself is complete; the collector misses these messages.
    SyslogDropped {
        /// Messages dropped since the last `syslog.dropped` record.
        dropped: u64,
        /// Messages dropped since the log opened.
        total_dropped: u64,
    },
    /// `runtime.shutdown`: the runtime shut down.
    RuntimeShutdown {
        /// Kernels stopped.
        kernels: u64,
        /// Messages left undelivered.
        undelivered: u64,
        /// Device memory still allocated.
        memory_in_use: u64,
        /// Kernels that did not stop in time.
        stuck: Vec<String>,
    },
}
