//! A real full disk: the audit log's directory, and separately a report export's target,
//! on a 1 MiB tmpfs filled to the last block. The audit log reports ENOSPC as a clear
//! error, stops at the first failed write and damages nothing written before it (the
//! log verifies, and continues once space is freed); a report export reports ENOSPC,
//! leaves the earlier report at its path whole and no temporary file behind; a
//! production runtime whose audit disk fills refuses further sends (fail-closed).
//!
//! The test mounts the tmpfs itself, which needs root (CAP_SYS_ADMIN); it unmounts it
//! when it ends, however it ends. Without the privilege it says SKIPPED, unless
//! `RINGKERNEL_REQUIRE_TMPFS=1` (set by scripts/test.sh where `mount -t tmpfs` works),
//! which makes a skip a failure.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use ringkernel_core::runtime::RuntimeBuilder;
use ringkernel_core::security::audit::{
    AuditConfig, AuditEvent, AuditLog, AuditLogConfig, AuditSigningKey, LogStatus, verify,
};
use ringkernel_core::security::compliance::{
    ComplianceCheck, ComplianceReporter, ComplianceStandard, ComplianceStatus, ExportFormat,
};
use ringkernel_core::{Error, ErrorCode};

/// A tmpfs of `size` mounted on a fresh temporary directory, unmounted (and the
/// directory removed) on drop, also when the test panics.
struct SmallDisk {
    mounted: bool,
    // Dropped after the unmount: the directory is empty again by then.
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts one, or says why it cannot (`Err`): not root, no CAP_SYS_ADMIN...
    fn mount(size: &str) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .replace('\n', "; ")
            ));
        }
        Ok(SmallDisk { mounted: true, dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted {
            let ok = Command::new("umount")
                .arg(self.dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                // Busy (a file still open): detach it, so the directory can go.
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(self.dir.path())
                    .status();
            }
            self.mounted = false;
        }
    }
}

/// The small disk, or `None` after printing why the test is skipped; panics instead
/// when `RINGKERNEL_REQUIRE_TMPFS=1`.
fn small_disk(test: &str) -> Option<SmallDisk> {
    match SmallDisk::mount("1m") {
        Ok(d) => Some(d),
        Err(why) => {
            assert!(
                std::env::var("RINGKERNEL_REQUIRE_TMPFS").as_deref() != Ok("1"),
                "RINGKERNEL_REQUIRE_TMPFS=1 but {test} cannot mount its tmpfs: {why}"
            );
            println!("{test}: SKIPPED (needs root to mount a 1 MiB tmpfs: {why})");
            None
        }
    }
}

/// Writes zeros to `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let block = [0u8; 4096];
    let mut n = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = f.sync_all();
    n
}

fn key() -> AuditSigningKey {
    AuditSigningKey::from_seed(&[9u8; 32])
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

/// The segment files' bytes, in order.
fn segments(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[test]
fn audit_append_on_a_full_disk_stops_at_enospc_and_damages_nothing_written() {
    let Some(disk) = small_disk("audit_append_on_a_full_disk") else {
        return;
    };
    // Room to give back later: the log fills what is left.
    let reserve = disk.path().join("reserve");
    std::fs::write(&reserve, vec![0u8; 256 << 10]).unwrap();
    let dir = disk.path().join("audit");
    let log = AuditLog::open(config(&dir)).unwrap();
    let mut accepted = 0u64;
    // Appends acknowledged by a successful flush: on disk, synced.
    let mut synced = 0u64;
    let refused = loop {
        let r = log
            .append(
                AuditEvent::new("k2k.send")
                    .actor("kernel:ingest")
                    .target("processor_1")
                    .detail("sequence", accepted)
                    .detail("padding", "x".repeat(300)),
            )
            .and_then(|()| {
                if accepted % 16 == 15 {
                    log.flush()
                } else {
                    Ok(())
                }
            });
        match r {
            Ok(()) => {
                accepted += 1;
                if accepted.is_multiple_of(16) {
                    synced = accepted;
                }
            }
            Err(e) => break e,
        }
        assert!(accepted < 100_000, "a 1 MiB disk never filled");
    };
    println!(
        "accepted {accepted}, then refused (code {}): {refused}",
        refused.code()
    );
    // A clear error: an I/O error (code 17) that names the full disk.
    assert_eq!(refused.code(), ErrorCode::Io as u32);
    assert!(matches!(refused, Error::Io(_)), "{refused:?}");
    let msg = refused.to_string();
    assert!(msg.contains("No space left on device"), "{msg}");
    let cause = log.stopped().unwrap().to_owned();
    assert!(cause.contains("No space left on device"), "{cause}");
    // The writer stopped at the first failure: nothing more goes in.
    assert!(log.append(AuditEvent::new("after.enospc")).is_err());
    assert!(log.flush().is_err());
    assert!(log.unrecorded() >= 1);
    assert!(
        log.close().is_err(),
        "closing a stopped log reports the failure"
    );
    drop(log);

    // Read on the full disk: what was written verifies, as an open log (a torn final
    // line at worst, never tampering), with every record a flush acknowledged (and
    // the log's own `audit.open`).
    let report = verify(&dir, &key().public_key()).unwrap();
    println!("on the full disk: {report:?}");
    assert!(
        matches!(report.status, LogStatus::Open { .. }),
        "{report:?}"
    );
    assert!(report.records > synced, "{synced} synced: {report:?}");
    let before = segments(&dir);

    // Free space: the log reopens (sealing the segment cut by the failure), continues
    // its chain, and every byte written before the failure is still there.
    std::fs::remove_file(&reserve).unwrap();
    let log = AuditLog::open(config(&dir)).unwrap();
    log.append(AuditEvent::new("after.space.freed")).unwrap();
    log.close().unwrap();
    let after_report = verify(&dir, &key().public_key()).unwrap();
    assert_eq!(after_report.status, LogStatus::Closed, "{after_report:?}");
    assert!(after_report.records > report.records, "{after_report:?}");
    let after = segments(&dir);
    for (path, bytes) in &before {
        let now = &after.iter().find(|(p, _)| p == path).unwrap().1;
        assert_eq!(now, bytes, "{} changed", path.display());
    }
    drop(disk);
}

/// A SOC 2 report whose Markdown is larger than `min` bytes.
fn big_report(
    min: usize,
) -> (
    ComplianceReporter,
    ringkernel_core::security::compliance::ComplianceReport,
) {
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let reporter = ComplianceReporter::new(&rt).organization("Disk Full Corp");
    let mut n = 0;
    loop {
        let report = reporter.generate(ComplianceStandard::Soc2).unwrap();
        if reporter
            .render(&report, ExportFormat::Markdown)
            .unwrap()
            .len()
            > min
        {
            rt.shutdown().unwrap();
            return (reporter, report);
        }
        for _ in 0..50 {
            n += 1;
            reporter.add_check(
                ComplianceCheck::new(&format!("PAD-{n}"))
                    .name(&format!("padding check {n} {}", "x".repeat(100)))
                    .standard(ComplianceStandard::Soc2)
                    .check(|_| ComplianceStatus::Compliant {
                        evidence: "y".repeat(200),
                    }),
            );
        }
    }
}

#[test]
fn report_export_on_a_full_disk_fails_with_enospc_and_keeps_the_earlier_report() {
    let Some(disk) = small_disk("report_export_on_a_full_disk") else {
        return;
    };
    let path = disk.path().join("soc2.md");
    let earlier = b"# the earlier report, whole\n".repeat(100);
    std::fs::write(&path, &earlier).unwrap();
    let filler = disk.path().join("filler");
    let filled = fill(&filler);
    println!("filled {filled} bytes");
    let (reporter, report) = big_report(64 * 1024);
    let e = reporter
        .export(&report, ExportFormat::Markdown, &path)
        .expect_err("an export onto a full disk is an error");
    println!("refused (code {}): {e}", e.code());
    assert_eq!(e.code(), ErrorCode::Io as u32);
    match &e {
        Error::Io(io) => assert_eq!(io.kind(), ErrorKind::StorageFull, "{io}"),
        other => panic!("not an I/O error: {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        earlier,
        "the earlier report was damaged"
    );
    let mut names: Vec<String> = std::fs::read_dir(disk.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["filler", "soc2.md"],
        "a temporary file was left behind"
    );

    // With room again, the same export replaces the report whole.
    std::fs::remove_file(&filler).unwrap();
    reporter
        .export(&report, ExportFormat::Markdown, &path)
        .unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        reporter.render(&report, ExportFormat::Markdown).unwrap()
    );
    drop(disk);
}

#[test]
fn audit_log_stopped_by_full_disk_refuses_further_k2k_sends_on_tmpfs() {
    use ringkernel_core::runtime::LaunchOptions;
    use ringkernel_core::security::encryption::{EncryptionConfig, MemoryEncryption};
    use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};
    use std::time::{Duration, Instant};

    let Some(disk) = small_disk("audit_log_stopped_by_full_disk_refuses_further_k2k_sends") else {
        return;
    };
    let reserve = disk.path().join("reserve");
    std::fs::write(&reserve, vec![0u8; 256 << 10]).unwrap();
    let dir = disk.path().join("audit");
    let rt = RuntimeBuilder::new()
        .production()
        .with_encryption(MemoryEncryption::new(EncryptionConfig::secure()).unwrap())
        .with_sandbox(KernelSandbox::with_policy(
            ResourceLimits::conservative(),
            SandboxPolicy::permissive(),
        ))
        .with_audit_logging(AuditLogConfig {
            events: AuditConfig {
                log_k2k_messages: true,
                ..config(&dir).events
            },
            ..config(&dir)
        })
        .build()
        .unwrap();
    rt.launch("sink", LaunchOptions::new()).unwrap();
    let t0 = Instant::now();
    let mut sent = 0u64;
    let refused = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{sent} sends went on unaudited on a full disk"
        );
        match rt.send_timeout("sink", "tick", &sent.to_le_bytes(), Duration::from_secs(1)) {
            Ok(()) => sent += 1,
            Err(e) if e.to_string().contains("audit log") => break e,
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    println!(
        "{sent} sends, then refused (code {}): {refused}",
        refused.code()
    );
    assert_eq!(refused.code(), ErrorCode::Io as u32);
    let msg = refused.to_string();
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(msg.contains("AuditFailurePolicy::FailClosed"), "{msg}");
    assert!(rt.launch("other", LaunchOptions::new()).is_err());
    // Shutdown stops everything but cannot close (seal and sign) the stopped log: it
    // says so instead of reporting a clean shutdown.
    match rt.shutdown() {
        Err(Error::ShutdownIncomplete { report }) => {
            assert!(report.stuck.is_empty(), "{report:?}");
            let why = report.audit_log_not_closed.as_deref().unwrap_or_default();
            assert!(why.contains("No space left on device"), "{report:?}");
        }
        other => panic!("a shutdown that could not close the audit log said {other:?}"),
    }
    drop(rt);

    // The log up to the failure verifies on the full disk, and continues once space
    // is freed.
    let report = verify(&dir, &key().public_key()).unwrap();
    assert!(
        matches!(report.status, LogStatus::Open { .. }),
        "{report:?}"
    );
    std::fs::remove_file(&reserve).unwrap();
    let log = AuditLog::open(config(&dir)).unwrap();
    log.close().unwrap();
    let after = verify(&dir, &key().public_key()).unwrap();
    assert_eq!(after.status, LogStatus::Closed, "{after:?}");
    assert!(after.records > report.records);
    drop(disk);
}
