//! The audit log when the disk refuses a write (a full disk, a file-size limit): the
//! error reaches the caller instead of being logged and dropped, nothing is appended
//! after it, and what was written before stays a log that verifies.
//!
//! The write error is real: the child process runs under a file-size limit
//! (`ulimit -f`, with SIGXFSZ ignored so the kernel answers EFBIG), which needs no
//! mount and no privilege.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::process::Command;

use ringkernel_core::security::audit::{
    AuditConfig, AuditEvent, AuditLog, AuditLogConfig, AuditSigningKey, LogStatus, verify,
};

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
