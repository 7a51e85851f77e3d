//! Every event's record, field by field: the log format these names and values make.

use serde_json::{Value, json};

use super::*;

fn id(s: &str) -> KernelId {
    KernelId::new(s).unwrap()
}

fn error(msg: &str) -> Failure {
    Failure {
        result: AuditResult::Error,
        error: msg.into(),
    }
}

/// The record as (event, actor, target, result, details).
fn record(e: Event) -> (String, String, String, &'static str, Value) {
    let r = e.record();
    (
        r.event,
        r.actor,
        r.target,
        r.result.as_str(),
        Value::Object(r.details),
    )
}

fn check(e: Event, event: &str, actor: &str, target: &str, result: &str, details: Value) {
    let got = record(e);
    assert_eq!(
        (
            got.0.as_str(),
            got.1.as_str(),
            got.2.as_str(),
            got.3,
            &got.4
        ),
        (event, actor, target, result, &details),
    );
}

#[test]
fn runtime_and_log_events() {
    let key = AuditPublicKey([7; 32]);
    check(
        Event::AuditOpen {
            public_key: key,
            resumed_after_seq: None,
            previous_head: None,
        },
        "audit.open",
        "runtime",
        "",
        "ok",
        json!({"public_key": key.to_hex(), "resumed_after_seq": null, "previous_head": null}),
    );
    check(
        Event::AuditOpen {
            public_key: key,
            resumed_after_seq: Some(9),
            previous_head: Some("ab".into()),
        },
        "audit.open",
        "runtime",
        "",
        "ok",
        json!({"public_key": key.to_hex(), "resumed_after_seq": 9, "previous_head": "ab"}),
    );
    check(
        Event::SyslogDropped {
            dropped: 3,
            total_dropped: 10,
        },
        "syslog.dropped",
        "runtime",
        "",
        "error",
        json!({"dropped": 3, "total_dropped": 10}),
    );
    check(
        Event::RuntimeInsecureOptOut {
            setting: "allow_insecure_sandbox",
            reason: "r".into(),
            insecurity: "w".into(),
        },
        "runtime.insecure_opt_out",
        "host",
        "",
        "ok",
        json!({"setting": "allow_insecure_sandbox", "reason": "r", "insecurity": "w"}),
    );
    check(
        Event::RuntimeConfigure {
            instance: "00ff".into(),
            keystore: Some(KeystoreFacts {
                path: "/k".into(),
                created: true,
                generation: 3,
            }),
            mode: "Production".into(),
            encryption: "none".into(),
            auto_rotate_secs: None,
            sandbox: true,
            sandbox_default_denies_k2k: false,
            notes: vec!["n".into()],
        },
        "runtime.configure",
        "host",
        "",
        "ok",
        json!({"instance": "00ff", "keystore": {"path": "/k", "created": true, "generation": 3},
               "mode": "Production", "encryption": "none", "auto_rotate_secs": null,
               "sandbox": true, "sandbox_default_denies_k2k": false, "notes": ["n"]}),
    );
    check(
        Event::RuntimeShutdown {
            kernels: 2,
            undelivered: 1,
            memory_in_use: 0,
            stuck: vec!["a".into()],
        },
        "runtime.shutdown",
        "host",
        "",
        "ok",
        json!({"kernels": 2, "undelivered": 1, "memory_in_use": 0, "stuck": ["a"]}),
    );
}

#[test]
fn kernel_events() {
    let launched = Launched {
        incarnation: 2,
        queue_capacity: 64,
        sealed_control_block: true,
    };
    check(
        Event::KernelLaunch {
            kernel: id("k"),
            outcome: Ok(launched),
        },
        "kernel.launch",
        "host",
        "k",
        "ok",
        json!({"incarnation": 2, "queue_capacity": 64, "sealed_control_block": true}),
    );
    check(
        Event::KernelLaunch {
            kernel: id("k"),
            outcome: Err(error("boom")),
        },
        "kernel.launch",
        "host",
        "k",
        "error",
        json!({"error": "boom"}),
    );
    check(
        Event::KernelTerminate { kernel: id("k") },
        "kernel.terminate",
        "runtime",
        "k",
        "ok",
        json!({}),
    );
    check(
        Event::KernelFailed {
            kernel: id("k"),
            failure: error("bad"),
            code: 5,
            kind: "tampered",
        },
        "kernel.failed",
        "runtime",
        "k",
        "error",
        json!({"error": "bad", "code": 5, "kind": "tampered"}),
    );
    check(
        Event::KernelStopped {
            kernel: id("k"),
            messages_processed: 10,
            undelivered: 1,
            errors: 2,
            last_error: 3,
            joined: false,
            uptime_ms: 40,
        },
        "kernel.stopped",
        "runtime",
        "k",
        "ok",
        json!({"messages_processed": 10, "undelivered": 1, "errors": 2, "last_error": 3,
               "joined": false, "uptime_ms": 40}),
    );
    check(
        Event::SealRefused {
            kernel: id("k"),
            region: "control".into(),
            kind: "stale",
            error: "e".into(),
            failures: 4,
        },
        "seal.refused",
        "runtime",
        "k",
        "denied",
        json!({"region": "control", "kind": "stale", "error": "e", "failures": 4}),
    );
    check(
        Event::StateExport {
            kernel: id("k"),
            generation: 3,
        },
        "state.export",
        "host",
        "k",
        "ok",
        json!({"generation": 3}),
    );
    check(
        Event::StateRestore {
            kernel: id("k"),
            expected_generation: 3,
            offered_generation: 2,
            refusal: Some(Refusal {
                error: "stale".into(),
                error_code: 17,
            }),
        },
        "state.restore",
        "host",
        "k",
        "denied",
        json!({"expected_generation": 3, "offered_generation": 2, "error": "stale", "error_code": 17}),
    );
}

#[test]
fn traffic_and_sandbox_events() {
    check(
        Event::K2kSend {
            from: Some(id("a")),
            to: "b".into(),
            topic: "t".into(),
            bytes: 8,
            outcome: Ok(4),
        },
        "k2k.send",
        "kernel:a",
        "b",
        "ok",
        json!({"topic": "t", "bytes": 8, "sequence": 4}),
    );
    let denied = Failure {
        result: AuditResult::Denied,
        error: "no".into(),
    };
    check(
        Event::K2kSend {
            from: None,
            to: "b".into(),
            topic: "t".into(),
            bytes: 8,
            outcome: Err(denied),
        },
        "k2k.send",
        "host",
        "b",
        "denied",
        json!({"topic": "t", "bytes": 8, "error": "no"}),
    );
    check(
        Event::K2kRouteSummary {
            from: Some(id("a")),
            to: "b".into(),
            topic: "t".into(),
            messages: 3,
            bytes: 24,
            first_at: "2026-12-02T00:00:00.000000Z".into(),
        },
        "k2k.route_summary",
        "kernel:a",
        "b",
        "ok",
        json!({"topic": "t", "messages": 3, "bytes": 24, "first_at": "2026-12-02T00:00:00.000000Z"}),
    );
    for (op, name) in [
        (MemoryOp::Allocate, "memory.allocate"),
        (MemoryOp::Read, "memory.read"),
        (MemoryOp::Write, "memory.write"),
        (MemoryOp::Free, "memory.free"),
    ] {
        check(
            Event::Memory {
                op,
                kernel: id("k"),
                buffer: 3,
                bytes: 16,
                failure: None,
            },
            name,
            "kernel:k",
            "buffer:3",
            "ok",
            json!({"bytes": 16}),
        );
    }
    for (action, result, name) in [
        (ViolationAction::Deny, "denied", "deny"),
        (ViolationAction::LogOnly, "ok", "log_only"),
        (ViolationAction::Terminate, "denied", "terminate"),
    ] {
        check(
            Event::SandboxViolation {
                kernel: id("k"),
                kind: "k2k".into(),
                reason: "r".into(),
                action,
            },
            "sandbox.violation",
            "kernel:k",
            "k",
            result,
            json!({"kind": "k2k", "reason": "r", "action": name}),
        );
    }
    check(
        Event::SandboxWatchdog {
            kernel: id("k"),
            step: WatchdogAction::CutOffAfterGrace,
        },
        "sandbox.watchdog",
        "runtime",
        "k",
        "denied",
        json!({"step": "cut_off_after_grace"}),
    );
}

#[test]
fn key_and_compliance_events() {
    check(
        Event::KeyRotate {
            key: KeyId(2),
            trigger: RotationTrigger::Timed(KeySet::GpuControlBlocks),
        },
        "key.rotate",
        "runtime",
        &KeyId(2).to_string(),
        "ok",
        json!({"trigger": "auto_rotate", "keys": "gpu_control_blocks"}),
    );
    check(
        Event::KeyRotate {
            key: KeyId(2),
            trigger: RotationTrigger::Explicit {
                regions_resealed: 5,
                keys: KeySet::Configured,
            },
        },
        "key.rotate",
        "host",
        &KeyId(2).to_string(),
        "ok",
        json!({"trigger": "explicit", "regions_resealed": 5, "keys": "configured"}),
    );
    check(
        Event::KeyRotate {
            key: KeyId(3),
            trigger: RotationTrigger::UsageBound(KeySet::Configured),
        },
        "key.rotate",
        "runtime",
        &KeyId(3).to_string(),
        "ok",
        json!({"trigger": "usage_bound", "keys": "configured"}),
    );
    check(
        Event::KeyRotate {
            key: KeyId(4),
            trigger: RotationTrigger::Outside(KeySet::Configured),
        },
        "key.rotate",
        "runtime",
        &KeyId(4).to_string(),
        "ok",
        json!({"trigger": "outside_runtime", "keys": "configured"}),
    );
    check(
        Event::KeyReseal {
            epoch: 4,
            regions: 6,
        },
        "key.reseal",
        "runtime",
        "epoch-4",
        "ok",
        json!({"regions": 6}),
    );
    check(
        Event::KeyRetire {
            epochs: vec![1, 2],
            keys: KeySet::Configured,
        },
        "key.retire",
        "runtime",
        "",
        "ok",
        json!({"epochs": [1, 2], "keys": "configured"}),
    );
    check(
        Event::ComplianceReport {
            standard: "SOC2".into(),
            compliant: 3,
            partially_compliant: 1,
            non_compliant: 0,
        },
        "compliance.report",
        "runtime",
        "SOC2",
        "ok",
        json!({"compliant": 3, "partially_compliant": 1, "non_compliant": 0}),
    );
    check(
        Event::ComplianceStatusChange {
            standard: "SOC2".into(),
            check: "CC6.1".into(),
            from: "none".into(),
            to: "compliant".into(),
        },
        "compliance.status_change",
        "runtime",
        "SOC2/CC6.1",
        "ok",
        json!({"from": "none", "to": "compliant"}),
    );
}
