//! The runtime's [`SecuritySnapshot`]: the immutable picture of its security state that
//! compliance checks read. The runtime is the compliance layer's
//! [`SnapshotSource`]; the compliance layer never names the runtime.

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use super::Runtime;
use super::gate::Gate;
use crate::security::audit::Event;
use crate::security::compliance::{
    AuditFacts, EncryptionFacts, ReportSubject, SandboxFacts, SecuritySnapshot, SnapshotSource,
    sealed,
};
use crate::security::encryption::KeySource;
use crate::security::memory::memory_protection_info;

impl sealed::Sealed for Gate {}
impl sealed::Sealed for Runtime {}

impl SnapshotSource for Gate {
    fn security_snapshot(&self, at: SystemTime) -> SecuritySnapshot {
        snapshot(self, at)
    }

    fn record_audit(&self, event: Event) {
        self.audit(|| event);
    }
}

impl ReportSubject for Runtime {
    fn snapshot_source(&self) -> Weak<dyn SnapshotSource> {
        let weak: Weak<Gate> = Arc::downgrade(&self.gate);
        weak
    }
}

/// Snapshots the gate's security state for compliance checks.
fn snapshot(gate: &Gate, at: SystemTime) -> SecuritySnapshot {
    let memory_encryption = match &gate.encryption {
        Some(e) if e.is_enabled() => {
            let c = e.config();
            EncryptionFacts {
                enabled: true,
                algorithm: Some(e.algorithm()),
                seals_control_blocks: c.seals_control_blocks(),
                seals_message_queues: c.seals_message_queues(),
                seals_kernel_state: c.seals_kernel_state(),
                auto_rotate: c.get_auto_rotate(),
                current_key_epoch: e.current_key_id().map(|k| k.0),
                key_age: e.current_key_age(),
                key_source: match e.key_metadata().source {
                    KeySource::Random => "random",
                    KeySource::Password => "password-derived",
                    KeySource::Keystore => "keystore",
                    KeySource::Disabled => "disabled",
                }
                .into(),
                key_derivation: c.get_key_derivation().describe(),
                stats: e.stats(),
            }
        }
        _ => EncryptionFacts {
            key_source: "disabled".into(),
            ..EncryptionFacts::default()
        },
    };
    let sandbox = match &gate.sandbox {
        Some(sb) => {
            let l = sb.default_limits();
            SandboxFacts {
                present: true,
                default_denies_k2k: sb.default_policy().is_some_and(|p| p.denies_by_default()),
                default_limits: l,
                limits_set: [
                    l.memory_bytes().is_some(),
                    l.execution_time().is_some(),
                    l.messages_per_second().is_some(),
                    l.k2k_connections().is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count() as u32,
                permitted_routes: sb.route_table().permitted_routes(),
                violations: sb.violation_totals(),
            }
        }
        None => SandboxFacts::default(),
    };
    let audit = match &gate.audit {
        Some(log) => {
            let c = &log.config().events;
            AuditFacts {
                enabled: true,
                directory: Some(log.directory().to_path_buf()),
                retention_days: c.retention_days,
                logs_violations: c.log_violations,
                logs_k2k_messages: c.log_k2k_messages,
                logs_memory_access: c.log_memory_access,
                public_key: Some(log.public_key().to_hex()),
                // A stopped writer answers every flush with its failure: verify what
                // reached the disk before it.
                verification: Some(
                    match log.stopped() {
                        None => log.verify(),
                        Some(_) => {
                            crate::security::audit::verify(log.directory(), &log.public_key())
                        }
                    }
                    .map_err(|e| e.to_string()),
                ),
                stopped: log.stopped().map(str::to_owned),
                unrecorded: log.unrecorded(),
                on_failure: log.config().on_failure.as_str().to_owned(),
                k2k_summary_interval_ms: log
                    .config()
                    .k2k_records
                    .summary_interval()
                    .map(|i| u64::try_from(i.as_millis()).unwrap_or(u64::MAX)),
            }
        }
        None => AuditFacts::default(),
    };
    SecuritySnapshot {
        generated_at: at,
        mode: gate.mode,
        runtime_instance: gate.instance.to_hex(),
        backend: gate.backend_info(),
        memory_encryption,
        memory_protection: memory_protection_info(),
        sandbox,
        audit,
        kernels: gate.kernel_ids().len(),
        notes: gate.notes.clone(),
    }
}
