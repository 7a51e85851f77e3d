//! The audit log against every tamper case, retention, concurrency and a real crash.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use ringkernel_core::Error;
use ringkernel_core::security::audit::{
    AuditConfig, AuditEvent, AuditLog, AuditLogConfig, AuditSigningKey, LogStatus, verify,
};

/// A fresh directory under the system temp dir, removed when dropped.
fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("rk-audit-{tag}-"))
        .tempdir()
        .unwrap()
}

fn config(dir: &Path, segment_bytes: u64) -> AuditLogConfig {
    AuditLogConfig {
        max_segment_bytes: segment_bytes,
        events: AuditConfig {
            retention_days: 0,
            ..AuditConfig::default()
        },
        ..AuditLogConfig::in_directory(dir)
    }
}

fn seg(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("segment-{n:08}.jsonl"))
}

fn write_log(dir: &Path, records: u64, segment_bytes: u64) -> AuditLog {
    let log = AuditLog::open(config(dir, segment_bytes)).unwrap();
    for i in 0..records {
        log.append(
            AuditEvent::new("k2k.send")
                .actor("kernel:ingest")
                .target("processor_1")
                .detail("sequence", i)
                .detail("topic", "reading"),
        )
        .unwrap();
    }
    log.close().unwrap();
    log
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn expect_integrity(
    r: ringkernel_core::Result<impl std::fmt::Debug>,
    segment: u64,
    record: Option<u64>,
) -> String {
    match r {
        Err(Error::AuditIntegrity {
            segment: s,
            record: rec,
            reason,
        }) => {
            assert_eq!((s, rec), (segment, record), "{reason}");
            reason
        }
        other => panic!("expected an integrity failure in segment {segment}, got {other:?}"),
    }
}

#[test]
fn a_clean_log_verifies_with_the_public_key() {
    let dir = temp_dir("clean");
    let log = write_log(dir.path(), 500, 4096);
    let r = verify(dir.path(), &log.public_key()).unwrap();
    assert_eq!(r.records, 501); // + audit.open
    assert_eq!((r.first_seq, r.last_seq), (Some(0), Some(500)));
    assert!(r.segments > 5, "small segments roll by size: {r:?}");
    assert_eq!(
        r.sealed_segments, r.segments,
        "close seals the last segment"
    );
    assert_eq!(r.unsealed_records, 0);
    assert!(r.torn_tail.is_none());
    // Another key does not verify it: the signed head, checked first, names its key.
    let other = AuditSigningKey::generate().unwrap().public_key();
    let why = expect_integrity(verify(dir.path(), &other), 0, None);
    assert!(why.contains("not the given key"), "{why}");
    // Records are JSON lines with the documented fields, and hold no payload bytes.
    let first = lines(&seg(dir.path(), 1));
    let v: serde_json::Value = serde_json::from_str(&first[1]).unwrap();
    for field in [
        "seq", "ts", "event", "actor", "target", "result", "details", "prev",
    ] {
        assert!(v.get(field).is_some(), "{field}");
    }
    assert!(v["ts"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn every_tamper_case_is_detected_and_named() {
    let dir = temp_dir("tamper");
    let log = write_log(dir.path(), 300, 4096);
    let pk = log.public_key();
    let original: Vec<(u64, Vec<u8>)> = (1..=3)
        .map(|n| (n, fs::read(seg(dir.path(), n)).unwrap()))
        .collect();
    let restore = || {
        for (n, b) in &original {
            fs::write(seg(dir.path(), *n), b).unwrap();
        }
    };
    let l2 = lines(&seg(dir.path(), 2));
    let first2: u64 = serde_json::from_str::<serde_json::Value>(&l2[0]).unwrap()["seq"]
        .as_u64()
        .unwrap();
    let rewrite = |ls: &[String]| fs::write(seg(dir.path(), 2), ls.join("\n") + "\n").unwrap();

    // Edit one byte of record first2+3 (still valid JSON).
    let mut ls = l2.clone();
    ls[3] = ls[3].replacen("ingest", "ingesT", 1);
    rewrite(&ls);
    let why = expect_integrity(verify(dir.path(), &pk), 2, Some(first2 + 3));
    assert!(why.contains("modified"), "{why}");
    restore();

    // Delete a record.
    let mut ls = l2.clone();
    ls.remove(5);
    rewrite(&ls);
    expect_integrity(verify(dir.path(), &pk), 2, Some(first2 + 5));
    restore();

    // Reorder two records.
    let mut ls = l2.clone();
    ls.swap(2, 3);
    rewrite(&ls);
    expect_integrity(verify(dir.path(), &pk), 2, Some(first2 + 2));
    restore();

    // Duplicate a record.
    let mut ls = l2.clone();
    ls.insert(4, ls[3].clone());
    rewrite(&ls);
    expect_integrity(verify(dir.path(), &pk), 2, Some(first2 + 4));
    restore();

    // Truncate a record in the middle of a sealed segment.
    let mut ls = l2.clone();
    let cut = ls[6].len() / 2;
    ls[6].truncate(cut);
    rewrite(&ls);
    expect_integrity(verify(dir.path(), &pk), 2, Some(first2 + 6));
    restore();

    // Edit the last record of a sealed segment: the signed checkpoint catches it.
    let mut ls = l2.clone();
    let last = ls.len() - 1;
    ls[last] = ls[last].replacen("reading", "Reading", 1);
    rewrite(&ls);
    let why = expect_integrity(verify(dir.path(), &pk), 2, None);
    assert!(why.contains("checkpoint"), "{why}");
    restore();

    // Remove a middle segment.
    fs::rename(seg(dir.path(), 2), dir.path().join("moved")).unwrap();
    let why = expect_integrity(verify(dir.path(), &pk), 2, None);
    assert!(why.contains("missing"), "{why}");
    fs::rename(dir.path().join("moved"), seg(dir.path(), 2)).unwrap();

    // Forge a checkpoint: change its count, keep the old signature.
    let cp = dir.path().join("segment-00000002.checkpoint");
    let orig_cp = fs::read_to_string(&cp).unwrap();
    fs::write(&cp, orig_cp.replacen("\"count\":", "\"count\":1", 1)).unwrap();
    let why = expect_integrity(verify(dir.path(), &pk), 2, None);
    assert!(why.contains("signature"), "{why}");
    // ...or sign a forged checkpoint with another key.
    let forger = AuditSigningKey::generate().unwrap();
    let body = orig_cp.lines().next().unwrap();
    let sig = forger_sign(&forger, body.as_bytes());
    fs::write(&cp, format!("{body}\n{sig}\n")).unwrap();
    expect_integrity(verify(dir.path(), &pk), 2, None);
    fs::write(&cp, &orig_cp).unwrap();

    assert!(
        verify(dir.path(), &pk).is_ok(),
        "restored log verifies again"
    );
}

fn forger_sign(_key: &AuditSigningKey, msg: &[u8]) -> String {
    // The checkpoint format is public: an attacker can produce well-formed, validly
    // signed files — only not with our key.
    use ed25519_dalek::Signer;
    let forger = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    forger
        .sign(msg)
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn concurrent_appenders_form_one_chain() {
    let dir = temp_dir("concurrent");
    let log = AuditLog::open(config(dir.path(), 1 << 20)).unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let log = log.clone();
            s.spawn(move || {
                for i in 0..500 {
                    log.append(
                        AuditEvent::new("test")
                            .actor(format!("thread:{t}"))
                            .detail("i", i),
                    )
                    .unwrap();
                }
            });
        }
    });
    let r = log.verify().unwrap();
    assert_eq!(r.records, 4001);
    assert_eq!(
        r.unsealed_records, 4001,
        "nothing sealed yet: all in the open segment"
    );
    log.close().unwrap();
    assert_eq!(
        verify(dir.path(), &log.public_key())
            .unwrap()
            .sealed_segments,
        1
    );
    assert!(matches!(
        log.append(AuditEvent::new("late")),
        Err(Error::AuditLogClosed)
    ));
}

/// Group commit: flushes from several threads that meet in the writer's queue are
/// answered by one sync, and each still returns only once its own records are on disk.
#[test]
fn concurrent_flushes_each_cover_their_own_records() {
    let dir = temp_dir("group-commit");
    let log = AuditLog::open(config(dir.path(), 1 << 20)).unwrap();
    let segment = seg(dir.path(), 1);
    std::thread::scope(|s| {
        for t in 0..4 {
            let log = log.clone();
            let segment = &segment;
            s.spawn(move || {
                for i in 0..100 {
                    let mark = format!("flush-{t}-{i}");
                    log.append(AuditEvent::new("test").detail("mark", mark.as_str()))
                        .unwrap();
                    log.flush().unwrap();
                    let on_disk = fs::read_to_string(segment).unwrap();
                    assert!(
                        on_disk.contains(&format!("\"{mark}\"")),
                        "{mark} not on disk after its flush returned"
                    );
                }
            });
        }
    });
    let r = log.verify().unwrap();
    assert_eq!(r.records, 401);
    log.close().unwrap();
}

/// A segment large enough that `verify` hashes its lines on the rayon pool: an edit
/// deep inside it is still found and named at the right record, in a sealed segment
/// and in the open one.
#[test]
fn edits_inside_a_large_segment_are_named_at_their_record() {
    let dir = temp_dir("large");
    let log = write_log(dir.path(), 5000, 4 << 20);
    let pk = log.public_key();
    assert_eq!(verify(dir.path(), &pk).unwrap().records, 5001);
    let path = seg(dir.path(), 1);
    let original = fs::read(&path).unwrap();
    let edit = |record: u64| {
        let mut l = lines(&path);
        l[record as usize] = l[record as usize].replace("reading", "Reading");
        fs::write(&path, l.join("\n") + "\n").unwrap();
    };
    edit(3210);
    let why = expect_integrity(verify(dir.path(), &pk), 1, Some(3210));
    assert!(why.contains("record 3210 was modified"), "{why}");
    // The same segment without its checkpoint: the open segment, parsed in full.
    fs::write(&path, &original).unwrap();
    fs::remove_file(dir.path().join("segment-00000001.checkpoint")).unwrap();
    edit(4321);
    let why = expect_integrity(verify(dir.path(), &pk), 1, Some(4321));
    assert!(why.contains("record 4321 was modified"), "{why}");
}

#[test]
fn forged_links_inside_a_signed_segment_are_named_at_their_record() {
    let dir = temp_dir("links");
    let log = write_log(dir.path(), 5000, 4 << 20);
    let pk = log.public_key();
    let path = seg(dir.path(), 1);
    let original = lines(&path);
    let prev_of = |l: &str| -> String {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["prev"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Record 3000 relinked to record 2998 (another genuine hash, lower-case hex, so the
    // line keeps the writer's exact shape), and then its own link in upper case (the
    // same hash, another spelling).
    let forged = |prev: &str| {
        let mut l = original.clone();
        l[3000] = l[3000].replace(&prev_of(&l[3000]), prev);
        fs::write(&path, l.join("\n") + "\n").unwrap();
    };
    forged(&prev_of(&original[2999]));
    let why = expect_integrity(verify(dir.path(), &pk), 1, Some(2999));
    assert!(why.contains("link of record 3000"), "{why}");
    forged(&prev_of(&original[3000]).to_uppercase());
    let why = expect_integrity(verify(dir.path(), &pk), 1, Some(2999));
    assert!(why.contains("link of record 3000"), "{why}");
    fs::write(&path, original.join("\n") + "\n").unwrap();
    assert!(
        verify(dir.path(), &pk).is_ok(),
        "restored log verifies again"
    );
}

#[test]
fn a_per_route_interval_under_a_millisecond_is_refused() {
    use ringkernel_core::security::audit::K2kRecords;
    let dir = temp_dir("per-route-zero");
    for interval in [Duration::ZERO, Duration::from_micros(999)] {
        match AuditLog::open(AuditLogConfig {
            k2k_records: K2kRecords::PerRoute { interval },
            ..config(dir.path(), 1 << 20)
        }) {
            Err(Error::InvalidConfig(msg)) => assert!(msg.contains("at least 1 ms"), "{msg}"),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }
}

#[test]
fn retention_deletes_old_segments_under_a_signed_watermark() {
    let dir = temp_dir("retention");
    let log = AuditLog::open(AuditLogConfig {
        events: AuditConfig {
            retention_days: 30,
            ..AuditConfig::default()
        },
        ..config(dir.path(), 4096)
    })
    .unwrap();
    for i in 0..200 {
        log.append(AuditEvent::new("e").detail("i", i)).unwrap();
    }
    log.seal_segment().unwrap();
    let before = verify(dir.path(), &log.public_key()).unwrap();
    // Nothing is old enough today.
    assert!(log.apply_retention(SystemTime::now()).unwrap().is_empty());
    // 31 days later every sealed segment is past retention.
    let later = SystemTime::now() + Duration::from_secs(31 * 86_400);
    let deleted = log.apply_retention(later).unwrap();
    assert_eq!(deleted.len() as u64, before.sealed_segments);
    log.append(AuditEvent::new("after retention")).unwrap();
    let r = log.verify().unwrap();
    assert_eq!(r.deleted_through_segment, deleted.last().copied());
    assert_eq!(r.first_seq, before.last_seq.map(|s| s + 1));
    assert_eq!(r.records, 1);
    // The head still names the last sealed segment, now covered by the watermark.
    assert_eq!(
        r.status,
        LogStatus::Open {
            unanchored_records: 1
        }
    );
    // A forged watermark (claiming more was deleted) does not verify.
    let wm = dir.path().join("retention.watermark");
    let text = fs::read_to_string(&wm).unwrap();
    fs::write(
        &wm,
        text.replacen(
            "\"deleted_through_segment\":",
            "\"deleted_through_segment\":9",
            1,
        ),
    )
    .unwrap();
    expect_integrity(verify(dir.path(), &log.public_key()), 0, None);
    fs::write(&wm, text).unwrap();
    log.close().unwrap();
    assert_eq!(
        verify(dir.path(), &log.public_key()).unwrap().status,
        LogStatus::Closed
    );
}

#[test]
fn a_log_resumes_after_close_and_keeps_one_chain() {
    let dir = temp_dir("resume");
    let key = AuditSigningKey::generate().unwrap();
    let open = || {
        AuditLog::open(AuditLogConfig {
            signing_key: Some(key.clone()),
            ..config(dir.path(), 1 << 20)
        })
        .unwrap()
    };
    let a = open();
    assert!(matches!(
        AuditLog::open(config(dir.path(), 1 << 20)),
        Err(Error::InvalidConfig(msg)) if msg.contains("in use")
    ));
    a.append(AuditEvent::new("first run")).unwrap();
    a.close().unwrap();
    // A closed log takes no more records, and says so.
    let late = a.append(AuditEvent::new("after close")).unwrap_err();
    assert!(matches!(late, Error::AuditLogClosed), "{late}");
    assert_eq!(
        late.error_code(),
        ringkernel_core::ErrorCode::AuditLogClosed
    );
    drop(a);
    let b = open();
    b.append(AuditEvent::new("second run")).unwrap();
    b.close().unwrap();
    let r = verify(dir.path(), &key.public_key()).unwrap();
    assert_eq!((r.records, r.segments, r.sealed_segments), (4, 2, 2));
    // A different signing key cannot continue this log.
    assert!(matches!(
        AuditLog::open(config(dir.path(), 1 << 20)),
        Err(Error::InvalidConfig(msg)) if msg.contains("signed by key")
    ));
}

const CRASH_CHILD: &str = "RINGKERNEL_AUDIT_CRASH_CHILD";

#[test]
fn kill_dash_nine_leaves_at_most_a_torn_tail() {
    if let Some(dir) = std::env::var_os(CRASH_CHILD) {
        // Child: append as fast as possible until killed.
        let seed = [7u8; 32];
        let log = AuditLog::open(AuditLogConfig {
            signing_key: Some(AuditSigningKey::from_seed(&seed)),
            flush_interval: Duration::from_millis(1),
            ..config(Path::new(&dir), 64 * 1024)
        })
        .unwrap();
        println!("child-ready");
        for i in 0u64.. {
            log.append(
                AuditEvent::new("crash.test")
                    .detail("i", i)
                    .detail("pad", "x".repeat(100)),
            )
            .unwrap();
        }
        return;
    }
    let dir = temp_dir("crash");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "kill_dash_nine_leaves_at_most_a_torn_tail",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Let it write for a while, then SIGKILL it mid-stream.
    let t0 = std::time::Instant::now();
    while fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(0) < 4
        && t0.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let key = AuditSigningKey::from_seed(&[7u8; 32]);
    let r = verify(dir.path(), &key.public_key()).unwrap();
    assert!(r.records > 100, "{r:?}");
    assert!(
        matches!(r.status, LogStatus::Open { .. }),
        "a killed writer leaves an open log: {r:?}"
    );
    // Reopening seals what the crash left open (torn line recorded) and goes on.
    let log = AuditLog::open(AuditLogConfig {
        signing_key: Some(key.clone()),
        ..config(dir.path(), 64 * 1024)
    })
    .unwrap();
    log.append(AuditEvent::new("after crash")).unwrap();
    log.close().unwrap();
    let r2 = verify(dir.path(), &key.public_key()).unwrap();
    assert_eq!(r2.records, r.records + 2);
    assert_eq!(r2.sealed_segments, r2.segments);
    assert_eq!(r2.status, LogStatus::Closed);
    if let Some(t) = &r.torn_tail {
        assert_eq!(r2.torn_tail.as_ref().map(|x| x.segment), Some(t.segment));
    }
}

#[test]
fn a_torn_final_line_is_reported_not_called_tampering() {
    let dir = temp_dir("torn");
    let key = AuditSigningKey::generate().unwrap();
    let cfg = || AuditLogConfig {
        signing_key: Some(key.clone()),
        ..config(dir.path(), 1 << 20)
    };
    let log = AuditLog::open(cfg()).unwrap();
    for i in 0..10 {
        log.append(AuditEvent::new("e").detail("i", i)).unwrap();
    }
    log.close().unwrap();
    drop(log);
    // As a crash mid-write leaves it: no checkpoint yet, half a line at the end.
    fs::remove_file(dir.path().join("segment-00000001.checkpoint")).unwrap();
    let mut bytes = fs::read(seg(dir.path(), 1)).unwrap();
    bytes.extend_from_slice(br#"{"seq":11,"ts":"2026-11-22T0"#);
    fs::write(seg(dir.path(), 1), &bytes).unwrap();
    let r = verify(dir.path(), &key.public_key()).unwrap();
    assert_eq!(r.records, 11);
    assert_eq!(
        r.torn_tail.as_ref().map(|t| (t.segment, t.bytes)),
        Some((1, 28))
    );
    // The closed head still covers all 11 records: open (its checkpoint is gone), with
    // nothing after the head.
    assert_eq!(
        r.status,
        LogStatus::Open {
            unanchored_records: 0
        }
    );
    // A torn line anywhere but at the very end is tampering.
    let mut mid = bytes.clone();
    mid.extend_from_slice(b"\n");
    fs::write(seg(dir.path(), 1), &mid).unwrap();
    expect_integrity(verify(dir.path(), &key.public_key()), 1, Some(11));
    fs::write(seg(dir.path(), 1), &bytes).unwrap();
    // Reopening seals the crashed segment, recording the torn bytes, and continues.
    let log = AuditLog::open(cfg()).unwrap();
    log.append(AuditEvent::new("after")).unwrap();
    log.close().unwrap();
    let r = verify(dir.path(), &key.public_key()).unwrap();
    assert_eq!((r.records, r.sealed_segments), (13, 2));
    assert_eq!(r.torn_tail.map(|t| t.segment), Some(1));
}
