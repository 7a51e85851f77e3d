//! The runtime's audit trail: what a production runtime records, and that it verifies.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use ringkernel_core::Error;
use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder};
use ringkernel_core::security::audit::{
    AuditConfig, AuditLogConfig, AuditRecord, K2kRecords, LogStatus, verify,
};
use ringkernel_core::security::encryption::{EncryptionConfig, MemoryEncryption};
use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};

/// A production runtime with sealed memory, a sandbox that lets kernels send only to
/// `sink`, and `audit` as its audit log.
fn production_runtime(audit: AuditLogConfig) -> ringkernel_core::runtime::Runtime {
    let sandbox = KernelSandbox::with_policy(
        ResourceLimits::new(),
        SandboxPolicy::restrictive().k2k_allow_list(&["sink"]),
    );
    RuntimeBuilder::new()
        .production()
        .with_encryption(MemoryEncryption::new(EncryptionConfig::secure()).unwrap())
        .with_sandbox(sandbox)
        .with_audit_logging(audit)
        .build()
        .unwrap()
}

#[test]
fn a_production_runtime_records_what_happened_and_never_payloads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let rt = production_runtime(AuditLogConfig {
        events: AuditConfig {
            log_k2k_messages: true,
            log_memory_access: true,
            log_violations: true,
            retention_days: 90,
        },
        ..AuditLogConfig::in_directory(&dir)
    });
    let sink = rt.launch("sink", LaunchOptions::new()).unwrap();
    let src = rt.launch("src", LaunchOptions::new()).unwrap();
    src.send("sink", "t", b"SECRET-PAYLOAD-MARKER").unwrap();
    assert!(matches!(
        src.send("src", "t", b"x"),
        Err(Error::Denied { .. })
    ));
    let buf = src.allocate(64).unwrap();
    src.free(buf).unwrap();
    rt.rotate_keys().unwrap();
    let t0 = Instant::now();
    while sink.status().unwrap().messages_processed < 1 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    let pk = rt.audit_log().unwrap().public_key();
    rt.shutdown().unwrap();

    let report = verify(&dir, &pk).unwrap();
    assert_eq!(
        report.sealed_segments, report.segments,
        "shutdown seals the log"
    );
    assert_eq!(
        report.status,
        LogStatus::Closed,
        "shutdown signs a close record"
    );
    let mut records = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            !text.contains("SECRET-PAYLOAD-MARKER"),
            "payload leaked into {path:?}"
        );
        if path.extension().is_some_and(|e| e == "jsonl") {
            records.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<AuditRecord>(l).unwrap()),
            );
        }
    }
    records.sort_by_key(|r| r.seq);
    let has = |event: &str, result: &str| {
        records
            .iter()
            .any(|r| r.event == event && r.result == result)
    };
    for (event, result) in [
        ("audit.open", "ok"),
        ("runtime.configure", "ok"),
        ("kernel.launch", "ok"),
        ("k2k.send", "ok"),
        ("k2k.send", "denied"),
        ("sandbox.violation", "denied"),
        ("memory.allocate", "ok"),
        ("memory.free", "ok"),
        ("key.rotate", "ok"),
        ("kernel.terminate", "ok"),
        ("kernel.stopped", "ok"),
        ("runtime.shutdown", "ok"),
    ] {
        assert!(has(event, result), "no {event} / {result} record");
    }
    let send = records
        .iter()
        .find(|r| r.event == "k2k.send" && r.result == "ok")
        .unwrap();
    assert_eq!(send.actor, "kernel:src");
    assert_eq!(send.target, "sink");
    assert_eq!(send.details["bytes"], 21);
    let configure = records
        .iter()
        .find(|r| r.event == "runtime.configure")
        .unwrap();
    assert_eq!(configure.details["encryption"], "AES-256-GCM");
}

/// Every record of the log in `dir`, in sequence order.
fn read_records(dir: &std::path::Path) -> Vec<AuditRecord> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(&path).unwrap();
            records.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<AuditRecord>(l).unwrap()),
            );
        }
    }
    records.sort_by_key(|r| r.seq);
    records
}

/// `K2kRecords::PerRoute`: no delivered send goes uncounted or is counted twice, while
/// senders race the writer's summaries, and refused sends keep a record each.
#[test]
fn per_route_summaries_count_every_delivered_send_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let rt = production_runtime(AuditLogConfig {
        events: AuditConfig {
            log_k2k_messages: true,
            ..AuditConfig::default()
        },
        // Shorter than the sends take: summaries are written while they go on.
        k2k_records: K2kRecords::PerRoute {
            interval: Duration::from_millis(5),
        },
        flush_interval: Duration::from_millis(5),
        ..AuditLogConfig::in_directory(&dir)
    });
    let sink = rt.launch("sink", LaunchOptions::new()).unwrap();
    let a = rt.launch("src_a", LaunchOptions::new()).unwrap();
    let b = rt.launch("src_b", LaunchOptions::new()).unwrap();
    let (per_a, per_b) = (3000u64, 2000u64);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..per_a {
                if i == per_a / 2 {
                    // Several intervals pass with counts pending, however fast the
                    // sends are: summaries are written while the sends go on.
                    std::thread::sleep(Duration::from_millis(100));
                }
                let topic = if i % 3 == 0 { "x" } else { "y" };
                a.send_timeout("sink", topic, &[0u8; 10], Duration::from_secs(10))
                    .unwrap();
            }
        });
        s.spawn(|| {
            for i in 0..per_b {
                if i == per_b / 2 {
                    std::thread::sleep(Duration::from_millis(100));
                }
                b.send_timeout("sink", "x", &[0u8; 7], Duration::from_secs(10))
                    .unwrap();
            }
            for _ in 0..5 {
                assert!(matches!(
                    b.send("src_a", "x", b"no"),
                    Err(Error::Denied { .. })
                ));
            }
        });
    });
    let t0 = Instant::now();
    while sink.status().unwrap().messages_processed < per_a + per_b {
        assert!(t0.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(1));
    }
    // What an auditor reads in the compliance snapshot: summaries, not a record each.
    assert_eq!(
        rt.security_snapshot().audit.k2k_summary_interval_ms,
        Some(5)
    );
    let pk = rt.audit_log().unwrap().public_key();
    rt.shutdown().unwrap();
    assert_eq!(verify(&dir, &pk).unwrap().status, LogStatus::Closed);

    let records = read_records(&dir);
    let total = |actor: &str, topic: &str| -> (u64, u64, usize) {
        let mut sum = (0, 0, 0);
        for r in records.iter().filter(|r| {
            r.event == "k2k.route_summary"
                && r.actor == actor
                && r.target == "sink"
                && r.details["topic"] == topic
        }) {
            sum.0 += r.details["messages"].as_u64().unwrap();
            sum.1 += r.details["bytes"].as_u64().unwrap();
            sum.2 += 1;
            assert!(r.details["first_at"].as_str().unwrap() <= r.ts.as_str());
        }
        sum
    };
    let (ax, ay, bx) = (
        total("kernel:src_a", "x"),
        total("kernel:src_a", "y"),
        total("kernel:src_b", "x"),
    );
    assert_eq!((ax.0, ax.1), (1000, 10_000));
    assert_eq!((ay.0, ay.1), (2000, 20_000));
    assert_eq!((bx.0, bx.1), (2000, 14_000));
    assert!(
        ax.2 + ay.2 + bx.2 > 3,
        "the interval wrote summaries while the sends went on"
    );
    let sends: Vec<_> = records.iter().filter(|r| r.event == "k2k.send").collect();
    assert_eq!(
        sends.len(),
        5,
        "only the refused sends have records of their own"
    );
    assert!(
        sends
            .iter()
            .all(|r| r.result == "denied" && r.actor == "kernel:src_b")
    );
}

/// `K2kRecords::PerRoute`: a kernel's route summaries come before the record of its
/// end, not at the next interval after it (an auditor reads a kernel's traffic, then
/// its stop), and each count is still in one summary only.
#[test]
fn a_stopped_kernel_s_route_summaries_precede_its_stop_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let rt = production_runtime(AuditLogConfig {
        events: AuditConfig {
            log_k2k_messages: true,
            ..AuditConfig::default()
        },
        // No interval passes during the test: only the stop and the close summarise.
        k2k_records: K2kRecords::PerRoute {
            interval: Duration::from_secs(3600),
        },
        ..AuditLogConfig::in_directory(&dir)
    });
    let sink = rt.launch("sink", LaunchOptions::new()).unwrap();
    let a = rt.launch("src_a", LaunchOptions::new()).unwrap();
    let b = rt.launch("src_b", LaunchOptions::new()).unwrap();
    for _ in 0..40 {
        a.send_timeout("sink", "x", &[1u8; 8], Duration::from_secs(10))
            .unwrap();
        b.send_timeout("sink", "x", &[2u8; 4], Duration::from_secs(10))
            .unwrap();
    }
    let t0 = Instant::now();
    while sink.status().unwrap().messages_processed < 80 {
        assert!(t0.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(1));
    }
    a.terminate().unwrap();
    a.wait(Duration::from_secs(10)).unwrap();
    // src_b goes on sending after src_a's stop: its route is summarised at the close.
    for _ in 0..10 {
        b.send_timeout("sink", "x", &[2u8; 4], Duration::from_secs(10))
            .unwrap();
    }
    let pk = rt.audit_log().unwrap().public_key();
    rt.shutdown().unwrap();
    assert_eq!(verify(&dir, &pk).unwrap().status, LogStatus::Closed);

    let records = read_records(&dir);
    let position = |pred: &dyn Fn(&AuditRecord) -> bool| {
        records
            .iter()
            .position(pred)
            .expect("the record is in the log")
    };
    let summary_of = |actor: &'static str| {
        move |r: &AuditRecord| r.event == "k2k.route_summary" && r.actor == actor
    };
    let a_summary = position(&summary_of("kernel:src_a"));
    let a_stopped = position(&|r: &AuditRecord| r.event == "kernel.stopped" && r.target == "src_a");
    assert!(
        a_summary < a_stopped,
        "src_a's traffic is summarised before its stop record ({a_summary} vs {a_stopped})"
    );
    let totals = |actor: &str| -> (u64, u64, usize) {
        records
            .iter()
            .filter(|r| r.event == "k2k.route_summary" && r.actor == actor)
            .fold((0, 0, 0), |(m, b, n), r| {
                (
                    m + r.details["messages"].as_u64().unwrap(),
                    b + r.details["bytes"].as_u64().unwrap(),
                    n + 1,
                )
            })
    };
    assert_eq!(totals("kernel:src_a"), (40, 320, 1));
    // src_b's route also ends at sink, which stopped at the shutdown: all 50 sends,
    // in the summaries written when the kernels stopped.
    let (messages, bytes, _) = totals("kernel:src_b");
    assert_eq!((messages, bytes), (50, 200));
}

#[test]
fn production_refuses_a_disabled_audit_log() {
    match RuntimeBuilder::new()
        .production()
        .with_audit_logging(AuditLogConfig::disabled())
        .build()
    {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains("development()"), "{msg}"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    let rt = RuntimeBuilder::new()
        .development()
        .with_audit_logging(AuditLogConfig::disabled())
        .build()
        .unwrap();
    assert!(rt.audit_log().is_none());
    assert!(
        rt.security_notes()
            .iter()
            .any(|n| n.contains("audit log disabled"))
    );
}

/// Unrecorded key change: a data key rotated because it reached its usage bound (here
/// 20 seals) was re-sealed under and used without any `key.rotate` record, so an
/// auditor saw keys appear in `key.reseal` records that no rotation introduced.
/// Every epoch the runtime seals under must have its rotation recorded, with what
/// started it.
#[test]
fn a_key_rotated_at_its_usage_bound_is_not_left_out_of_the_audit_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let rt = RuntimeBuilder::new()
        .production()
        .with_encryption(
            MemoryEncryption::new(EncryptionConfig::secure().max_seals_per_key(20)).unwrap(),
        )
        .with_sandbox(KernelSandbox::with_policy(
            ResourceLimits::new(),
            SandboxPolicy::restrictive().k2k_allow_list(&["sink"]),
        ))
        .with_audit_logging(AuditLogConfig::in_directory(&dir))
        .build()
        .unwrap();
    let first = rt.encryption().unwrap().current_key_id().unwrap().0;
    let sink = rt.launch("sink", LaunchOptions::new()).unwrap();
    let src = rt.launch("src", LaunchOptions::new()).unwrap();
    for i in 0..60u64 {
        src.send("sink", "t", &i.to_le_bytes()).unwrap();
    }
    let t0 = Instant::now();
    while sink.status().unwrap().messages_processed < 60 {
        assert!(t0.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(1));
    }
    rt.tick();
    let last = rt.encryption().unwrap().current_key_id().unwrap().0;
    assert!(
        last >= first + 3,
        "60 sends at 20 seals per key rotate: {first}..{last}"
    );
    // An explicit rotation is recorded once, as explicit; one made through the
    // encryption handle behind the runtime's back is recorded too.
    let (explicit, _) = rt.rotate_keys().unwrap();
    let outside = rt.encryption().unwrap().rotate_key().unwrap();
    rt.shutdown().unwrap();

    let records = read_records(&dir);
    let rotated: Vec<(u32, String)> = records
        .iter()
        .filter(|r| r.event == "key.rotate")
        .map(|r| {
            let epoch = r.target.trim_start_matches("epoch-").parse().unwrap();
            (epoch, r.details["trigger"].as_str().unwrap().to_owned())
        })
        .collect();
    let mut expected: Vec<(u32, String)> = (first + 1..=explicit.0)
        .map(|e| (e, "usage_bound".to_owned()))
        .collect();
    expected.last_mut().unwrap().1 = "explicit".to_owned();
    expected.push((outside.0, "outside_runtime".to_owned()));
    assert_eq!(
        rotated, expected,
        "one key.rotate record per epoch, in order"
    );
}
