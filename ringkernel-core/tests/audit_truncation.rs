//! Cutting the tail of an audit log (issue 12, point 2): every way is reported as
//! truncated with what is missing; a clean close, a crash and a rollback are told apart.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::fs;
use std::path::{Path, PathBuf};

use ringkernel_core::Error;
use ringkernel_core::security::audit::{
    Anchor, AuditConfig, AuditEvent, AuditLog, AuditLogConfig, AuditPublicKey, AuditSigningKey,
    HeadState, LogStatus, SignedHead, Truncation, VerifyReport, verify, verify_with_anchor,
    verify_with_progress,
};

fn config(dir: &Path, key: &AuditSigningKey, segment_bytes: u64) -> AuditLogConfig {
    AuditLogConfig {
        max_segment_bytes: segment_bytes,
        events: AuditConfig {
            retention_days: 0,
            ..AuditConfig::default()
        },
        signing_key: Some(key.clone()),
        ..AuditLogConfig::in_directory(dir)
    }
}

fn seg(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("segment-{n:08}.jsonl"))
}

fn cp(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("segment-{n:08}.checkpoint"))
}

fn head_file(dir: &Path) -> PathBuf {
    dir.join("log.head")
}

fn append(log: &AuditLog, n: u64) {
    for i in 0..n {
        log.append(AuditEvent::new("k2k.send").detail("i", i))
            .unwrap();
    }
}

/// A closed log of many small segments: 300 appended records plus `audit.open`.
fn closed_log(dir: &Path) -> (AuditSigningKey, AuditPublicKey) {
    let key = AuditSigningKey::generate().unwrap();
    let log = AuditLog::open(config(dir, &key, 4096)).unwrap();
    append(&log, 300);
    log.close().unwrap();
    (key.clone(), key.public_key())
}

fn last_segment(dir: &Path) -> u64 {
    (1..).take_while(|&n| seg(dir, n).exists()).last().unwrap()
}

/// The sequence number of the first record of segment `n`.
fn first_seq(dir: &Path, n: u64) -> u64 {
    let text = fs::read_to_string(seg(dir, n)).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    first["seq"].as_u64().unwrap()
}

/// Copies the files of a log directory (flat) into `to`.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// Replaces the contents of `dir` with those of `from`.
fn restore_dir(from: &Path, dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    copy_dir(from, dir);
}

fn expect_truncated(r: ringkernel_core::Result<VerifyReport>) -> (VerifyReport, Truncation) {
    match r {
        Err(Error::AuditTruncated { report }) => {
            let t = report.truncation().cloned().unwrap();
            (*report, t)
        }
        other => panic!("expected the log to be reported truncated, got {other:?}"),
    }
}

#[test]
fn truncation_deleting_newest_segment_and_checkpoint_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (_, pk) = closed_log(dir.path());
    let last = last_segment(dir.path());
    assert!(last > 4, "small segments roll by size");
    let cut_from = first_seq(dir.path(), last);
    fs::remove_file(seg(dir.path(), last)).unwrap();
    fs::remove_file(cp(dir.path(), last)).unwrap();
    let (report, t) = expect_truncated(verify(dir.path(), &pk));
    assert_eq!(t.missing_records, Some(cut_from..301));
    assert_eq!(t.missing_segments, Some(last..=last));
    assert_eq!(report.records, cut_from, "what remains was checked");
    assert_eq!(t.head_seq, report.head.as_ref().map(|h| h.head_seq));
    let message = Error::AuditTruncated {
        report: Box::new(report),
    }
    .to_string();
    assert!(
        message.contains(&format!("{} record(s) missing", 301 - cut_from))
            && message.contains(&format!("segment {last} missing")),
        "{message}"
    );

    // Two newest segments: both named.
    let cut_from = first_seq(dir.path(), last - 1);
    fs::remove_file(seg(dir.path(), last - 1)).unwrap();
    fs::remove_file(cp(dir.path(), last - 1)).unwrap();
    let (_, t) = expect_truncated(verify(dir.path(), &pk));
    assert_eq!(t.missing_records, Some(cut_from..301));
    assert_eq!(t.missing_segments, Some(last - 1..=last));
}

#[test]
fn truncation_deleting_an_empty_newest_segment_is_reported() {
    // A segment sealed with no records: cutting it loses no record, but the head names
    // it, so its absence is still reported.
    let dir = tempfile::tempdir().unwrap();
    let key = AuditSigningKey::generate().unwrap();
    let log = AuditLog::open(config(dir.path(), &key, 1 << 20)).unwrap();
    append(&log, 3);
    log.seal_segment().unwrap();
    log.close().unwrap(); // segment 2 is sealed empty
    fs::remove_file(seg(dir.path(), 2)).unwrap();
    fs::remove_file(cp(dir.path(), 2)).unwrap();
    let (_, t) = expect_truncated(verify(dir.path(), &key.public_key()));
    assert_eq!(t.missing_segments, Some(2..=2));
    assert_eq!(t.missing_records, None);
}

#[test]
fn truncation_deleting_every_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (_, pk) = closed_log(dir.path());
    let last = last_segment(dir.path());
    for n in 1..=last {
        fs::remove_file(seg(dir.path(), n)).unwrap();
        fs::remove_file(cp(dir.path(), n)).unwrap();
    }
    let (report, t) = expect_truncated(verify(dir.path(), &pk));
    assert_eq!(t.missing_records, Some(0..301));
    assert_eq!(t.missing_segments, Some(1..=last));
    assert_eq!((report.records, report.segments), (0, 0));
}

#[test]
fn truncation_cutting_last_checkpoint_and_later_records_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditSigningKey::generate().unwrap();
    let log = AuditLog::open(config(dir.path(), &key, 1 << 20)).unwrap();
    append(&log, 50);
    log.seal_segment().unwrap(); // segment 1: records 0..51
    append(&log, 20);
    log.close().unwrap(); // segment 2: records 51..71, closed head
    // Cut the last checkpoint and the records after the fifth of its segment, so the
    // segment looks like one a crash left open.
    fs::remove_file(cp(dir.path(), 2)).unwrap();
    let text = fs::read_to_string(seg(dir.path(), 2)).unwrap();
    let kept: Vec<&str> = text.lines().take(5).collect();
    fs::write(seg(dir.path(), 2), kept.join("\n") + "\n").unwrap();
    let (report, t) = expect_truncated(verify(dir.path(), &key.public_key()));
    assert_eq!(t.missing_records, Some(56..71));
    assert_eq!(t.missing_checkpoint, Some(2));
    assert_eq!(t.missing_segments, None);
    assert_eq!(report.unsealed_records, 5);
    // A torn half line at the end, as a crash would leave, does not make it a crash.
    let mut bytes = kept.join("\n").into_bytes();
    bytes.extend_from_slice(b"\n{\"seq\":56,\"ts\":\"20");
    fs::write(seg(dir.path(), 2), &bytes).unwrap();
    let (report, t) = expect_truncated(verify(dir.path(), &key.public_key()));
    assert_eq!(t.missing_records, Some(56..71));
    assert!(report.torn_tail.is_some());
    // The writer refuses to continue such a log: a new head would hide the cut.
    match AuditLog::open(config(dir.path(), &key, 1 << 20)) {
        Err(Error::AuditTruncated { report }) => {
            assert_eq!(report.truncation().unwrap().missing_records, Some(56..71));
        }
        other => panic!("opening a truncated log must fail, got {other:?}"),
    }
}

#[test]
fn truncation_of_a_crashed_log_below_its_last_head_is_reported() {
    // A log that was never closed (a crash image): the last head covers segment 1;
    // cutting its checkpoint, some of its records and the open segment is caught.
    let dir = tempfile::tempdir().unwrap();
    let key = AuditSigningKey::generate().unwrap();
    let log = AuditLog::open(config(dir.path(), &key, 1 << 20)).unwrap();
    append(&log, 30);
    log.seal_segment().unwrap(); // head: 31 records, segment 1
    append(&log, 10);
    log.flush().unwrap();
    let image = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), image.path());
    log.close().unwrap();
    let image = image.path();
    fs::remove_file(cp(image, 1)).unwrap();
    fs::remove_file(seg(image, 2)).unwrap();
    let text = fs::read_to_string(seg(image, 1)).unwrap();
    let kept: Vec<&str> = text.lines().take(20).collect();
    fs::write(seg(image, 1), kept.join("\n") + "\n").unwrap();
    let (_, t) = expect_truncated(verify(image, &key.public_key()));
    assert_eq!(t.missing_records, Some(20..31));
    assert_eq!(t.missing_checkpoint, Some(1));
}

#[test]
fn truncation_deleting_the_head_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (key, pk) = closed_log(dir.path());
    fs::remove_file(head_file(dir.path())).unwrap();
    let (report, t) = expect_truncated(verify(dir.path(), &pk));
    assert!(t.head_missing);
    assert_eq!(
        t.missing_records, None,
        "nothing tells how many without an anchor"
    );
    assert_eq!(report.records, 301, "the records present still verify");
    assert!(
        Error::AuditTruncated {
            report: Box::new(report)
        }
        .to_string()
        .contains("head is missing")
    );
    // The writer refuses it too.
    assert!(matches!(
        AuditLog::open(config(dir.path(), &key, 4096)),
        Err(Error::AuditTruncated { .. })
    ));
    // Deleting the newest segment as well: with an anchor, what is missing is known.
    let last = last_segment(dir.path());
    let cut_from = first_seq(dir.path(), last);
    fs::remove_file(seg(dir.path(), last)).unwrap();
    fs::remove_file(cp(dir.path(), last)).unwrap();
    let (_, t) = expect_truncated(verify_with_anchor(dir.path(), &pk, &Anchor::records(301)));
    assert!(t.head_missing && t.behind_anchor);
    assert_eq!(t.missing_records, Some(cut_from..301));
}

#[test]
fn truncation_replacing_the_head_with_an_older_signed_head_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditSigningKey::generate().unwrap();
    let log = AuditLog::open(config(dir.path(), &key, 1 << 20)).unwrap();
    append(&log, 10);
    log.seal_segment().unwrap();
    let older = fs::read(head_file(dir.path())).unwrap();
    let older_seq = log.head().head().head_seq;
    append(&log, 10);
    log.seal_segment().unwrap();
    append(&log, 10);
    log.close().unwrap();
    // The older head is validly signed; only the segments sealed after it give it away.
    fs::write(head_file(dir.path()), &older).unwrap();
    let (_, t) = expect_truncated(verify(dir.path(), &key.public_key()));
    let stale = t.stale_head.unwrap();
    assert_eq!(
        (
            stale.head_seq,
            stale.covers_through_segment,
            stale.later_segment
        ),
        (older_seq, 1, 3)
    );
    // The writer refuses to continue from it.
    assert!(matches!(
        AuditLog::open(config(dir.path(), &key, 1 << 20)),
        Err(Error::AuditTruncated { .. })
    ));

    // A close record put back after the log was opened again: the segment started after
    // it proves that a newer (open) head was written.
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(dir.path(), &key, 1 << 20)).unwrap();
    append(&log, 3);
    log.close().unwrap();
    drop(log);
    let close_record = fs::read(head_file(dir.path())).unwrap();
    let log = AuditLog::open(config(dir.path(), &key, 1 << 20)).unwrap();
    append(&log, 3);
    log.flush().unwrap();
    let image = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), image.path());
    log.close().unwrap();
    fs::write(head_file(image.path()), &close_record).unwrap();
    let (_, t) = expect_truncated(verify(image.path(), &key.public_key()));
    let stale = t.stale_head.unwrap();
    assert_eq!((stale.covers_through_segment, stale.later_segment), (1, 2));
}

#[test]
fn truncation_deleting_everything_is_not_a_verified_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    let (_, pk) = closed_log(dir.path());
    for entry in fs::read_dir(dir.path()).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    match verify(dir.path(), &pk) {
        Err(e @ Error::AuditLogMissing { .. }) => {
            assert!(e.to_string().contains("no signed head"), "{e}")
        }
        other => panic!("an empty directory must not verify, got {other:?}"),
    }
    let gone = dir.path().join("gone");
    assert!(matches!(
        verify(&gone, &pk),
        Err(Error::AuditLogMissing { .. })
    ));
    // With an anchor kept elsewhere, it is a truncation of everything.
    let (_, t) = expect_truncated(verify_with_anchor(dir.path(), &pk, &Anchor::records(301)));
    assert!(t.head_missing && t.behind_anchor);
    assert_eq!(t.missing_records, Some(0..301));
}

#[test]
fn a_clean_close_reports_closed() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditSigningKey::generate().unwrap();
    let log = AuditLog::open(config(dir.path(), &key, 4096)).unwrap();
    append(&log, 100);
    log.close().unwrap();
    let head = log.head();
    assert_eq!(head.head().state, HeadState::Closed);
    assert_eq!(head.head().records, 101);
    log.close().unwrap(); // idempotent: no second close record
    assert_eq!(log.head(), head);
    let r = verify(dir.path(), &key.public_key()).unwrap();
    assert_eq!(r.status, LogStatus::Closed);
    assert_eq!(r.head.as_ref(), Some(head.head()));
    assert_eq!((r.records, r.unanchored_records()), (101, 0));
    // The file on disk is the signed head the log hands out, and it verifies alone.
    let on_disk = SignedHead::from_bytes(&fs::read(head_file(dir.path())).unwrap()).unwrap();
    assert_eq!(on_disk, head);
    on_disk.verify(&key.public_key()).unwrap();
    // A head edited in transit does not verify.
    let forged = String::from_utf8(head.to_bytes()).unwrap().replacen(
        "\"records\":101",
        "\"records\":99",
        1,
    );
    assert!(matches!(
        SignedHead::from_bytes(forged.as_bytes())
            .unwrap()
            .verify(&key.public_key()),
        Err(Error::AuditIntegrity { .. })
    ));
}

#[test]
fn a_crash_reports_open_with_the_unanchored_count() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditSigningKey::generate().unwrap();
    let log = AuditLog::open(config(dir.path(), &key, 1 << 20)).unwrap();
    append(&log, 20);
    log.seal_segment().unwrap(); // head: 21 records
    append(&log, 7);
    log.flush().unwrap();
    // What a kill -9 now leaves: the records on disk, nothing sealed after the head.
    let image = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), image.path());
    let r = verify(image.path(), &key.public_key()).unwrap();
    assert_eq!(
        r.status,
        LogStatus::Open {
            unanchored_records: 7
        }
    );
    assert_eq!((r.records, r.unsealed_records), (28, 7));
    // A torn last line stays an open tail, never tampering.
    let mut bytes = fs::read(seg(image.path(), 2)).unwrap();
    bytes.extend_from_slice(b"{\"seq\":28,\"ts\":\"2026-");
    fs::write(seg(image.path(), 2), &bytes).unwrap();
    let r = verify(image.path(), &key.public_key()).unwrap();
    assert_eq!(r.unanchored_records(), 7);
    assert_eq!(r.torn_tail.map(|t| (t.segment, t.bytes)), Some((2, 21)));
    // Reopening the crashed copy seals it and goes on; a clean close is then closed.
    let again = AuditLog::open(config(image.path(), &key, 1 << 20)).unwrap();
    again.close().unwrap();
    let r = verify(image.path(), &key.public_key()).unwrap();
    assert_eq!((r.status, r.records), (LogStatus::Closed, 29));

    // Dropping the last handle without close(): sealed and signed, but not closed.
    drop(log);
    let r = verify(dir.path(), &key.public_key()).unwrap();
    assert_eq!(
        r.status,
        LogStatus::Open {
            unanchored_records: 0
        }
    );
    assert_eq!(r.head.unwrap().state, HeadState::Open);
}

#[test]
fn records_after_the_last_head_can_be_cut_silently_without_an_anchor() {
    // The documented window: what no signed head covers yet, the chain alone cannot
    // defend against cutting.
    let dir = tempfile::tempdir().unwrap();
    let key = AuditSigningKey::generate().unwrap();
    let log = AuditLog::open(config(dir.path(), &key, 1 << 20)).unwrap();
    append(&log, 5);
    log.seal_segment().unwrap();
    append(&log, 9);
    log.flush().unwrap();
    let image = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), image.path());
    log.close().unwrap();
    let text = fs::read_to_string(seg(image.path(), 2)).unwrap();
    let kept: Vec<&str> = text.lines().take(4).collect();
    fs::write(seg(image.path(), 2), kept.join("\n") + "\n").unwrap();
    let r = verify(image.path(), &key.public_key()).unwrap();
    assert_eq!(r.unanchored_records(), 4);
}

#[test]
fn an_external_anchor_catches_a_directory_rewound_to_an_older_copy() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditSigningKey::generate().unwrap();
    let log = AuditLog::open(config(dir.path(), &key, 4096)).unwrap();
    append(&log, 40);
    log.close().unwrap();
    let old_anchor = log.head().anchor();
    drop(log);
    let older = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), older.path());

    let log = AuditLog::open(config(dir.path(), &key, 4096)).unwrap();
    append(&log, 60);
    log.close().unwrap();
    let anchor = log.head().anchor(); // shipped off the machine
    let records = anchor.records.unwrap();
    drop(log);
    let r = verify_with_anchor(dir.path(), &key.public_key(), &anchor).unwrap();
    assert_eq!(r.status, LogStatus::Closed);
    // An anchor from earlier in the same chain is satisfied too.
    verify_with_anchor(dir.path(), &key.public_key(), &old_anchor).unwrap();

    // Rewind the whole directory: on its own the old copy is a consistent closed log...
    restore_dir(older.path(), dir.path());
    let r = verify(dir.path(), &key.public_key()).unwrap();
    assert_eq!(r.status, LogStatus::Closed);
    // ...which the anchor exposes, naming the records it lacks.
    let (r, t) = expect_truncated(verify_with_anchor(dir.path(), &key.public_key(), &anchor));
    assert!(t.behind_anchor);
    assert_eq!(t.missing_records, Some(r.records..records));
    // The anchor's hash alone: the record is not in the log.
    let hash_only = Anchor {
        records: None,
        ..anchor
    };
    let (_, t) = expect_truncated(verify_with_anchor(
        dir.path(),
        &key.public_key(),
        &hash_only,
    ));
    assert!(t.behind_anchor && t.missing_records.is_none());
    // The anchor parses from its text form (what `ringkernel audit verify --anchor` takes).
    assert_eq!(anchor.to_string().parse::<Anchor>().unwrap(), anchor);
    // An anchor whose record exists with another hash is a contradiction, not a cut.
    let other = Anchor {
        last_hash: Some([7u8; 32]),
        records: Some(10),
    };
    assert!(matches!(
        verify_with_anchor(dir.path(), &key.public_key(), &other),
        Err(Error::AuditIntegrity {
            record: Some(9),
            ..
        })
    ));
}

#[test]
fn verifying_a_live_log_while_it_is_sealed_never_reports_truncation() {
    // Segments are sealed, heads rewritten and old segments retired while verify reads
    // the directory: the head and the segments it reads must describe the same moment.
    let dir = tempfile::tempdir().unwrap();
    let key = AuditSigningKey::generate().unwrap();
    let log = AuditLog::open(AuditLogConfig {
        events: AuditConfig {
            retention_days: 1,
            ..AuditConfig::default()
        },
        ..config(dir.path(), &key, 64 * 1024)
    })
    .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    /// Stops the appender also when an assertion fails (or the scope would wait forever).
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(2 * 86_400);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let (writer, stop_ref) = (log.clone(), &stop);
        s.spawn(move || {
            let mut i = 0u64;
            while !stop_ref.load(std::sync::atomic::Ordering::Relaxed) {
                writer
                    .append(AuditEvent::new("live").detail("i", i))
                    .unwrap();
                i += 1;
                if i.is_multiple_of(2000) {
                    writer.apply_retention(later).unwrap(); // retires sealed segments
                }
                if i.is_multiple_of(20) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        });
        let t0 = std::time::Instant::now();
        let (mut first_head, mut last_head, mut runs) = (None, 0, 0);
        while runs < 30 || last_head < first_head.unwrap_or(0) + 10 {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(60),
                "no seals seen"
            );
            match verify(dir.path(), &key.public_key()) {
                Ok(r) => {
                    assert!(matches!(r.status, LogStatus::Open { .. }), "{r:?}");
                    let h = r.head.unwrap().head_seq;
                    first_head.get_or_insert(h);
                    last_head = h;
                    runs += 1;
                }
                // Sealed again on every one of verify's reads: allowed, never wrong.
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => panic!("a live log must verify as open, got {other:?}"),
            }
        }
    });
    log.close().unwrap();
    assert_eq!(
        verify(dir.path(), &key.public_key()).unwrap().status,
        LogStatus::Closed
    );
}

#[test]
fn progress_counts_every_segment_once_and_ends_at_the_total() {
    let tmp = tempfile::tempdir().unwrap();
    let key = AuditSigningKey::generate().unwrap();
    let log = AuditLog::open(config(tmp.path(), &key, 4096)).unwrap();
    for i in 0..60 {
        log.append(AuditEvent::new("e").detail("pad", "x".repeat(100 + i)))
            .unwrap();
    }
    log.close().unwrap();
    let mut calls = Vec::new();
    let report = verify_with_progress(
        tmp.path(),
        &key.public_key(),
        &Anchor::default(),
        &mut |done, total| calls.push((done, total)),
    )
    .unwrap();
    let total = report.segments;
    assert!(total > 1, "{report:?}");
    let expected: Vec<(u64, u64)> = (0..=total).map(|d| (d, total)).collect();
    assert_eq!(calls, expected);
}
