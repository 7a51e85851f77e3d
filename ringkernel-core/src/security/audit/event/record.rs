//! [`Event::record`]: the one place an event becomes a record. A field renamed or a
//! value reshaped here changes the log format; `tests.rs` pins every event's record.

use serde_json::{Value, json};

use super::{Event, Failure, RotationTrigger, ViolationAction, WatchdogAction};
use crate::k2k::KernelId;
use crate::security::audit::{AuditEvent, AuditResult};

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
            Event::K2kRouteSummary {
                from,
                to,
                topic,
                messages,
                bytes,
                first_at,
            } => AuditEvent::new("k2k.route_summary")
                .actor(from.map_or("host".to_owned(), |k| kernel_actor(&k)))
                .target(to)
                .detail("topic", topic)
                .detail("messages", messages)
                .detail("bytes", bytes)
                .detail("first_at", first_at),
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
                RotationTrigger::Explicit {
                    regions_resealed,
                    keys,
                } => AuditEvent::new("key.rotate")
                    .actor("host")
                    .target(key)
                    .detail("trigger", "explicit")
                    .detail("regions_resealed", regions_resealed)
                    .detail("keys", keys.as_str()),
                RotationTrigger::UsageBound(keys) => AuditEvent::new("key.rotate")
                    .target(key)
                    .detail("trigger", "usage_bound")
                    .detail("keys", keys.as_str()),
                RotationTrigger::Outside(keys) => AuditEvent::new("key.rotate")
                    .target(key)
                    .detail("trigger", "outside_runtime")
                    .detail("keys", keys.as_str()),
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
            Event::SyslogDropped {
                dropped,
                total_dropped,
            } => AuditEvent::new("syslog.dropped")
                .result(AuditResult::Error)
                .detail("dropped", dropped)
                .detail("total_dropped", total_dropped),
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
