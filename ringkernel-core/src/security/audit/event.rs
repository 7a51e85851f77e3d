//! Every event the runtime and its security layers record, with its fields.
//!
//! Each variant of [`Event`] is one row of the table in `docs/audit.md`; [`Event::record`]
//! is the one place a variant becomes a record (event name, actor, target, result,
//! details), so the names and values written stay the same wherever an event is raised.
//! Applications record their own events with [`AuditEvent::new`].
//!
//! ```
//! use ringkernel_core::k2k::KernelId;
//! use ringkernel_core::security::audit::{AuditConfig, AuditEvent, AuditLog, Event};
//!
//! # let tmp = tempfile::tempdir()?;
//! let log = AuditLog::open(AuditConfig::in_directory(tmp.path()))?;
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

use serde_json::{Value, json};

use super::{AuditEvent, AuditPublicKey, AuditResult};
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
    /// The host asked for it; this many regions were re-sealed under the new key.
    Explicit {
        /// Regions re-sealed.
        regions_resealed: u64,
    },
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

fn failed(ev: AuditEvent, f: Failure) -> AuditEvent {
    ev.result(f.result).detail("error", f.error)
}

fn kernel_actor(kernel: &KernelId) -> String {
    format!("kernel:{kernel}")
}

impl Event {
    /// The record this event is written as: its name, actor, target, result and details.
    pub fn record(self) -> AuditEvent {
        match self {
            Event::AuditOpen {
                public_key,
                resumed_after_seq,
                previous_head,
            } => AuditEvent::new("audit.open")
                .detail("public_key", public_key.to_hex())
                .detail("resumed_after_seq", resumed_after_seq)
                .detail("previous_head", previous_head),
            Event::RuntimeInsecureOptOut {
                setting,
                reason,
                insecurity,
            } => AuditEvent::new("runtime.insecure_opt_out")
                .actor("host")
                .detail("setting", setting)
                .detail("reason", reason)
                .detail("insecurity", insecurity),
            Event::RuntimeConfigure {
                instance,
                keystore,
                mode,
                encryption,
                auto_rotate_secs,
                sandbox,
                sandbox_default_denies_k2k,
                notes,
            } => AuditEvent::new("runtime.configure")
                .actor("host")
                .detail("instance", instance)
                .detail(
                    "keystore",
                    keystore.map_or(Value::Null, |k| {
                        json!({
                            "path": k.path,
                            "created": k.created,
                            "generation": k.generation,
                        })
                    }),
                )
                .detail("mode", mode)
                .detail("encryption", encryption)
                .detail("auto_rotate_secs", auto_rotate_secs)
                .detail("sandbox", sandbox)
                .detail("sandbox_default_denies_k2k", sandbox_default_denies_k2k)
                .detail("notes", notes),
            Event::KernelLaunch { kernel, outcome } => {
                let ev = AuditEvent::new("kernel.launch")
                    .actor("host")
                    .target(kernel);
                match outcome {
                    Ok(l) => ev
                        .detail("incarnation", u64::from(l.incarnation))
                        .detail("queue_capacity", l.queue_capacity)
                        .detail("sealed_control_block", l.sealed_control_block),
                    Err(f) => failed(ev, f),
                }
            }
            Event::KernelTerminate { kernel } => AuditEvent::new("kernel.terminate").target(kernel),
            Event::KernelFailed {
                kernel,
                failure,
                code,
                kind,
            } => failed(
                AuditEvent::new("kernel.failed")
                    .actor("runtime")
                    .target(kernel),
                failure,
            )
            .detail("code", code)
            .detail("kind", kind),
            Event::KernelStopped {
                kernel,
                messages_processed,
                undelivered,
                errors,
                last_error,
                joined,
                uptime_ms,
            } => AuditEvent::new("kernel.stopped")
                .target(kernel)
                .detail("messages_processed", messages_processed)
                .detail("undelivered", undelivered)
                .detail("errors", errors)
                .detail("last_error", last_error)
                .detail("joined", joined)
                .detail("uptime_ms", uptime_ms),
            Event::K2kSend {
                from,
                to,
                topic,
                bytes,
                outcome,
            } => {
                let actor = from.map_or("host".to_owned(), |k| kernel_actor(&k));
                let ev = AuditEvent::new("k2k.send")
                    .actor(actor)
                    .target(to)
                    .detail("topic", topic)
                    .detail("bytes", bytes);
                match outcome {
                    Ok(seq) => ev.detail("sequence", seq),
                    Err(f) => failed(ev, f),
                }
            }
            Event::Memory {
                op,
                kernel,
                buffer,
                bytes,
                failure,
            } => {
                let ev = AuditEvent::new(op.event())
                    .actor(kernel_actor(&kernel))
                    .target(format!("buffer:{buffer}"))
                    .detail("bytes", bytes);
                match failure {
                    None => ev,
                    Some(f) => failed(ev, f),
                }
            }
            Event::SealRefused {
                kernel,
                region,
                kind,
                error,
                failures,
            } => AuditEvent::new("seal.refused")
                .actor("runtime")
                .target(kernel)
                .result(AuditResult::Denied)
                .detail("region", region)
                .detail("kind", kind)
                .detail("error", error)
                .detail("failures", failures),
            Event::StateExport { kernel, generation } => AuditEvent::new("state.export")
                .actor("host")
                .target(kernel)
                .detail("generation", u64::from(generation)),
            Event::StateRestore {
                kernel,
                expected_generation,
                offered_generation,
                refusal,
            } => {
                let ev = AuditEvent::new("state.restore")
                    .actor("host")
                    .target(kernel)
                    .detail("expected_generation", u64::from(expected_generation))
                    .detail("offered_generation", u64::from(offered_generation));
                match refusal {
                    None => ev,
                    Some(r) => ev
                        .result(AuditResult::Denied)
                        .detail("error", r.error)
                        .detail("error_code", u64::from(r.error_code)),
                }
            }
            Event::SandboxViolation {
                kernel,
                kind,
                reason,
                action,
            } => {
                let (result, action) = match action {
                    ViolationAction::Deny => (AuditResult::Denied, "deny"),
                    ViolationAction::LogOnly => (AuditResult::Ok, "log_only"),
                    ViolationAction::Terminate => (AuditResult::Denied, "terminate"),
                };
                AuditEvent::new("sandbox.violation")
                    .actor(kernel_actor(&kernel))
                    .target(kernel)
                    .result(result)
                    .detail("kind", kind)
                    .detail("reason", reason)
                    .detail("action", action)
            }
            Event::SandboxWatchdog { kernel, step } => AuditEvent::new("sandbox.watchdog")
                .target(kernel)
                .result(AuditResult::Denied)
                .detail(
                    "step",
                    match step {
                        WatchdogAction::RaiseShouldTerminate => "raise_should_terminate",
                        WatchdogAction::CutOffAfterGrace => "cut_off_after_grace",
                    },
                ),
            Event::KeyRotate { key, trigger } => match trigger {
                RotationTrigger::Timed(keys) => AuditEvent::new("key.rotate")
                    .target(key)
                    .detail("trigger", "auto_rotate")
                    .detail("keys", keys.as_str()),
                RotationTrigger::Explicit { regions_resealed } => AuditEvent::new("key.rotate")
                    .actor("host")
                    .target(key)
                    .detail("trigger", "explicit")
                    .detail("regions_resealed", regions_resealed),
            },
            Event::KeyReseal { epoch, regions } => AuditEvent::new("key.reseal")
                .target(format!("epoch-{epoch}"))
                .detail("regions", regions),
            Event::KeyRetire { epochs, keys } => AuditEvent::new("key.retire")
                .detail("epochs", epochs)
                .detail("keys", keys.as_str()),
            Event::ComplianceReport {
                standard,
                compliant,
                partially_compliant,
                non_compliant,
            } => AuditEvent::new("compliance.report")
                .target(standard)
                .detail("compliant", compliant)
                .detail("partially_compliant", partially_compliant)
                .detail("non_compliant", non_compliant),
            Event::ComplianceStatusChange {
                standard,
                check,
                from,
                to,
            } => AuditEvent::new("compliance.status_change")
                .target(format!("{standard}/{check}"))
                .detail("from", from)
                .detail("to", to),
            Event::RuntimeShutdown {
                kernels,
                undelivered,
                memory_in_use,
                stuck,
            } => AuditEvent::new("runtime.shutdown")
                .actor("host")
                .detail("kernels", kernels)
                .detail("undelivered", undelivered)
                .detail("memory_in_use", memory_in_use)
                .detail("stuck", stuck),
        }
    }
}

impl From<Event> for AuditEvent {
    fn from(event: Event) -> Self {
        event.record()
    }
}
