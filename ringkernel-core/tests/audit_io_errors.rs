//! The audit log when the disk refuses a write (a full disk, a file-size limit): the
//! error reaches the caller instead of being logged and dropped, nothing is appended
//! after it, and what was written before stays a log that verifies.
//!
//! The write error is real: the child process runs under a file-size limit
//! (`ulimit -f`, with SIGXFSZ ignored so the kernel answers EFBIG), which needs no
//! mount and no privilege.
//!
//! A runtime whose audit log stops this way refuses every audited operation from then
//! on (`AuditFailurePolicy::FailClosed`, the default), or goes on with the failure in
//! its compliance snapshot (`AuditFailurePolicy::Continue`).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ringkernel_core::runtime::{LaunchOptions, Runtime, RuntimeBuilder};
use ringkernel_core::security::audit::{
    AuditConfig, AuditEvent, AuditFailurePolicy, AuditLog, AuditLogConfig, AuditPublicKey,
    AuditSigningKey, LogStatus, verify,
};
use ringkernel_core::security::compliance::{
    ComplianceReporter, ComplianceStandard, ComplianceStatus,
};
use ringkernel_core::security::encryption::{EncryptionConfig, MemoryEncryption};
use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};

/// The environment variable that turns `write_until_refused_child` into the child.
const CHILD_DIR: &str = "RINGKERNEL_TEST_AUDIT_IO_CHILD_DIR";

fn key() -> AuditSigningKey {
    AuditSigningKey::from_seed(&[7u8; 32])
}

fn config(dir: &Path) -> AuditLogConfig {
    AuditLogConfig {
        signing_key: Some(key()),
        events: AuditConfig {
            retention_days: 0,
            ..AuditConfig::default()
        },
        ..AuditLogConfig::in_directory(dir)
    }
}

/// The child: appends records under a 64 KiB file-size limit until the log refuses,
/// then prints what it saw. Exits 0 only if the refusal reached it as an error.
#[test]
fn write_until_refused_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let log = AuditLog::open(config(Path::new(&dir))).unwrap();
    let mut accepted = 0u64;
    let mut refused = None;
    for i in 0..100_000u64 {
        let r = log
            .append(
                AuditEvent::new("k2k.send")
                    .actor("kernel:ingest")
                    .target("processor_1")
                    .detail("sequence", i)
                    .detail("padding", "x".repeat(200)),
            )
            .and_then(|()| if i % 16 == 15 { log.flush() } else { Ok(()) });
        match r {
            Ok(()) => accepted += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("a write past the file-size limit was reported as an error");
    println!("accepted {accepted} refused: {refused}");
    // Once refused, the log stays refused: nothing is appended after a lost record.
    assert!(log.append(AuditEvent::new("after")).is_err());
    assert!(log.flush().is_err());
}

#[test]
fn audit_write_failure_is_reported_not_silently_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // 128 blocks of 512 bytes: 64 KiB per file.
    let out = Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 128; exec \"$0\" --exact write_until_refused_child --nocapture --test-threads=1",
        ])
        .arg(&exe)
        .env(CHILD_DIR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the child did not see the write failure as an error:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("refused:"), "{stdout}");

    // Without the limit, the log reopens: the segment cut by the failure is sealed
    // (its torn tail recorded), and everything written before verifies.
    let log = AuditLog::open(config(dir.path())).unwrap();
    log.append(AuditEvent::new("after.restart")).unwrap();
    log.close().unwrap();
    let report = verify(dir.path(), &key().public_key()).unwrap();
    assert_eq!(report.status, LogStatus::Closed, "{report:?}");
    assert!(report.records > 100, "{report:?}");
}

/// The environment variable that turns `runtime_until_the_log_stops_child` into the
/// child; its value is the audit directory, `AUDIT_POLICY` the failure policy.
const RUNTIME_CHILD_DIR: &str = "RINGKERNEL_TEST_AUDIT_IO_RUNTIME_CHILD_DIR";
const AUDIT_POLICY: &str = "RINGKERNEL_TEST_AUDIT_IO_POLICY";

/// A production runtime that audits every send and buffer access into `dir`.
fn audited_runtime(dir: &Path, on_failure: AuditFailurePolicy) -> Runtime {
    RuntimeBuilder::new()
        .production()
        .with_encryption(MemoryEncryption::new(EncryptionConfig::secure()).unwrap())
        .with_sandbox(KernelSandbox::with_policy(
            ResourceLimits::conservative(),
            SandboxPolicy::permissive(),
        ))
        .with_audit_logging(AuditLogConfig {
            events: AuditConfig {
                log_k2k_messages: true,
                log_memory_access: true,
                log_violations: true,
                retention_days: 0,
            },
            on_failure,
            ..AuditLogConfig::in_directory(dir)
        })
        .build()
        .unwrap()
}

/// Sends until a send is refused because the audit log stopped (`Err`), or until
/// `deadline` (`Ok(sends)`). Other refusals (a full queue) are retried.
fn send_until_refused(rt: &Runtime, deadline: Duration) -> Result<u64, ringkernel_core::Error> {
    let t0 = Instant::now();
    let mut sent = 0u64;
    while t0.elapsed() < deadline {
        match rt.send_timeout("sink", "tick", &sent.to_le_bytes(), Duration::from_secs(1)) {
            Ok(()) => sent += 1,
            Err(e) if e.to_string().contains("audit log") => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    Ok(sent)
}

fn aud_01(rt: &Runtime) -> ComplianceStatus {
    let reporter = ComplianceReporter::new(rt);
    let report = reporter.generate(ComplianceStandard::Soc2).unwrap();
    report
        .checks
        .into_iter()
        .find(|c| c.id == "AUD-01")
        .unwrap()
        .status
}

/// The child: a production runtime whose audit log runs into a 64 KiB file-size
/// limit. Prints what it saw; exits 0 only if the runtime behaved as its
/// `AuditFailurePolicy` says.
#[test]
fn runtime_until_the_log_stops_child() {
    let Ok(dir) = std::env::var(RUNTIME_CHILD_DIR) else {
        return;
    };
    let policy = match std::env::var(AUDIT_POLICY).as_deref() {
        Ok("continue") => AuditFailurePolicy::Continue,
        _ => AuditFailurePolicy::FailClosed,
    };
    let rt = audited_runtime(Path::new(&dir), policy);
    let sink = rt.launch("sink", LaunchOptions::new()).unwrap();
    let buf = sink.allocate(64).unwrap();
    let log = rt.audit_log().unwrap().clone();
    println!("public key: {}", log.public_key());
    match policy {
        AuditFailurePolicy::FailClosed => {
            let refused = send_until_refused(&rt, Duration::from_secs(60))
                .expect_err("sends went on unaudited after the audit log stopped");
            println!("send refused: {refused}");
            assert!(log.stopped().is_some());
            let msg = refused.to_string();
            assert!(msg.contains("FailClosed"), "{msg}");
            assert!(msg.contains("audit log stopped at a failed write"), "{msg}");
            // Every audited operation is refused from now on...
            let e = rt.launch("other", LaunchOptions::new()).unwrap_err();
            println!("launch refused: {e}");
            assert!(rt.send("sink", "t", b"x").is_err());
            assert!(
                rt.rotate_keys()
                    .unwrap_err()
                    .to_string()
                    .contains("FailClosed")
            );
            assert!(sink.allocate(64).is_err());
            assert!(sink.write(buf, 0, b"data").is_err());
            assert!(sink.read(buf, 0, 4).is_err());
            assert!(sink.free(buf).is_err());
            assert!(
                rt.kernel("other").is_err(),
                "the refused launch left no kernel"
            );
            // ...the compliance snapshot says why...
            let snap = rt.security_snapshot();
            assert!(snap.audit.stopped.is_some(), "{:?}", snap.audit);
            assert_eq!(snap.audit.on_failure, "fail-closed");
            let status = aud_01(&rt);
            println!("AUD-01: {status:?}");
            assert!(
                matches!(&status, ComplianceStatus::NonCompliant { finding, .. }
                    if finding.contains("stopped at a failed write")),
                "{status:?}"
            );
            // ...and stopping still works; the shutdown says the log did not close.
            sink.terminate().unwrap();
            expect_log_not_closed(rt.shutdown());
            println!("fail-closed: ok");
        }
        AuditFailurePolicy::Continue => {
            let t0 = Instant::now();
            while log.stopped().is_none() {
                assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "the log never stopped"
                );
                send_until_refused(&rt, Duration::from_millis(20))
                    .expect("Continue: sends go on when the audit log stops");
            }
            let sent = send_until_refused(&rt, Duration::from_millis(200))
                .expect("Continue: sends go on after the audit log stopped");
            assert!(sent > 0);
            sink.write(buf, 0, b"data").unwrap();
            rt.launch("other", LaunchOptions::new()).unwrap();
            let snap = rt.security_snapshot();
            println!("audit facts: {:?}", snap.audit);
            assert!(snap.audit.stopped.is_some());
            assert!(snap.audit.unrecorded >= sent, "{:?}", snap.audit);
            assert_eq!(snap.audit.on_failure, "continue");
            let status = aud_01(&rt);
            println!("AUD-01: {status:?}");
            assert!(
                matches!(&status, ComplianceStatus::NonCompliant { finding, .. }
                    if finding.contains("continue")),
                "{status:?}"
            );
            expect_log_not_closed(rt.shutdown());
            println!("continue: ok");
        }
    }
}

/// Runs `runtime_until_the_log_stops_child` under a 64 KiB file-size limit.
fn run_runtime_child(dir: &Path, policy: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 128; exec \"$0\" --exact runtime_until_the_log_stops_child --nocapture --test-threads=1",
        ])
        .arg(&exe)
        .env(RUNTIME_CHILD_DIR, dir)
        .env(AUDIT_POLICY, policy)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    stdout
}

#[test]
fn audit_log_stopped_by_full_disk_refuses_further_k2k_sends() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_runtime_child(dir.path(), "fail-closed");
    assert!(stdout.contains("fail-closed: ok"), "{stdout}");
    // What reached the disk before the failure verifies, as an open log (at worst a
    // torn final line), never as tampering.
    let key = stdout
        .lines()
        .find_map(|l| l.split_once("public key: ").map(|(_, k)| k))
        .unwrap();
    let report = verify(dir.path(), &AuditPublicKey::from_hex(key).unwrap()).unwrap();
    assert!(
        matches!(report.status, LogStatus::Open { .. }),
        "{report:?}"
    );
    assert!(report.records > 100, "{report:?}");
}

#[test]
fn audit_log_stopped_under_continue_policy_goes_on_and_shows_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_runtime_child(dir.path(), "continue");
    assert!(stdout.contains("continue: ok"), "{stdout}");
}

/// A shutdown after the audit log stopped: everything stopped, but the log could not
/// be closed, and the shutdown says so rather than reporting success.
fn expect_log_not_closed(r: ringkernel_core::Result<ringkernel_core::runtime::ShutdownReport>) {
    match r {
        Err(ringkernel_core::Error::ShutdownIncomplete { report }) => {
            assert!(report.stuck.is_empty(), "{report:?}");
            assert!(report.audit_log_not_closed.is_some(), "{report:?}");
        }
        other => panic!("expected ShutdownIncomplete naming the audit log, got {other:?}"),
    }
}
