//! `ringkernel audit`: verify, tail, heads.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ringkernel_core::Error;
use ringkernel_core::security::audit::syslog::shipped_heads;
use ringkernel_core::security::audit::{
    Anchor, AuditPublicKey, AuditRecord, HeadState, LogStatus, SignedHead, VerifyReport,
    verify_with_progress,
};
use serde_json::json;

use crate::cli::{HeadsArgs, TailArgs, VerifyArgs};
use crate::{Failure, Outcome};

const TAMPERED: u8 = 1;
const TRUNCATED: u8 = 3;
const NO_LOG: u8 = 4;

/// Reads `--key`: hex, or `@file` holding hex.
fn public_key(key: &str) -> Result<AuditPublicKey, Failure> {
    let text = match key.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Failure(format!("cannot read key file {path}: {e}")))?,
        None => key.to_owned(),
    };
    AuditPublicKey::from_hex(&text).map_err(|e| Failure(format!("--key: {e}")))
}

/// The segment files of `dir`, in order.
fn segments(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Failure(format!("cannot read {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Failure(format!("cannot read {}: {e}", dir.display())))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("segment-") && name.ends_with(".jsonl") {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn counts_json(r: &VerifyReport) -> serde_json::Value {
    json!({
        "records": r.records,
        "first_seq": r.first_seq,
        "last_seq": r.last_seq,
        "segments": r.segments,
        "sealed_segments": r.sealed_segments,
        "deleted_through_segment": r.deleted_through_segment,
        "unanchored_records": r.unanchored_records(),
        "torn_tail": r.torn_tail.as_ref().map(|t| json!({"segment": t.segment, "bytes": t.bytes})),
    })
}

fn print_counts(r: &VerifyReport) {
    println!(
        "  records {}..{} ({} records) in {} segment(s), {} sealed",
        r.first_seq.map_or("-".into(), |s| s.to_string()),
        r.last_seq.map_or("-".into(), |s| s.to_string()),
        r.records,
        r.segments,
        r.sealed_segments
    );
    if let Some(n) = r.deleted_through_segment {
        println!("  segments 1..={n} deleted by retention (signed watermark)");
    }
    if let Some(t) = &r.torn_tail {
        println!(
            "  note: segment {} ends in a torn {}-byte line (a crash while writing), not tampering",
            t.segment, t.bytes
        );
    }
}

/// `audit verify`.
pub(crate) fn verify(args: &VerifyArgs) -> Outcome {
    let key = public_key(&args.key)?;
    let anchor = match &args.anchors_from_syslog {
        Some(file) => syslog_anchor(file, &key)?,
        None => args.anchor.unwrap_or_default(),
    };
    let dir = args.dir.display().to_string();
    // A progress line, rewritten in place on a terminal, one line per 1000 segments
    // otherwise (`--progress` into a file), and the final count.
    let progress = args.progress || std::io::stderr().is_terminal();
    let terminal = std::io::stderr().is_terminal();
    let mut report_progress = |done: u64, total: u64| {
        if !progress {
            return;
        }
        if done == total {
            if terminal {
                eprint!("\r");
            }
            eprintln!("verified {done} of {total} segment(s)");
        } else if terminal {
            eprint!("\rverifying {dir}: {done} of {total} segment(s) verified");
        } else if done > 0 && done.is_multiple_of(1000) {
            eprintln!("verifying {dir}: {done} of {total} segment(s) verified");
        }
    };
    let result = verify_with_progress(&args.dir, &key, &anchor, &mut report_progress);
    if progress && terminal && result.is_err() {
        eprintln!();
    }
    if args.json {
        return verify_json(&dir, &key, &anchor, result);
    }
    match result {
        Ok(r) => {
            let state = match r.status {
                LogStatus::Closed => "closed".to_owned(),
                LogStatus::Open { unanchored_records } => format!(
                    "open (not closed) with {unanchored_records} unanchored record(s) after the last signed head"
                ),
                // verify_with_anchor returns truncation as an error.
                LogStatus::Truncated(_) => "truncated".to_owned(),
            };
            println!("audit log {dir}: VERIFIED, {state}, with public key {key}");
            print_counts(&r);
            if r.unanchored_records() > 0 {
                println!(
                    "  the last {} record(s) are checked by the hash chain only: no signed head covers them yet",
                    r.unanchored_records()
                );
            }
            if !anchor.is_empty() {
                println!("  reaches the external anchor {anchor}");
            }
            if let Some(h) = &r.head {
                println!(
                    "  signed head #{} ({}, {} records); anchor to keep elsewhere: {}:{}",
                    h.head_seq,
                    if h.state == HeadState::Closed {
                        "close record"
                    } else {
                        "open"
                    },
                    h.records,
                    h.last_hash,
                    h.records
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::AuditTruncated { report }) => {
            let what = report
                .truncation()
                .map(ToString::to_string)
                .unwrap_or_default();
            println!("audit log {dir}: TRUNCATED: {what}");
            print_counts(&report);
            Ok(ExitCode::from(TRUNCATED))
        }
        Err(e @ Error::AuditIntegrity { .. }) => {
            println!("audit log {dir}: FAILED (tampered): {e}");
            Ok(ExitCode::from(TAMPERED))
        }
        Err(e @ Error::AuditLogMissing { .. }) => {
            println!("audit log {dir}: NO LOG: {e}");
            Ok(ExitCode::from(NO_LOG))
        }
        Err(e) => Err(Failure(format!("cannot verify {dir}: {e}"))),
    }
}

/// The anchor of the newest head this log shipped to the syslog `file`, with what was
/// found there on stderr (stdout stays the verdict, text or JSON).
fn syslog_anchor(file: &Path, key: &AuditPublicKey) -> Result<Anchor, Failure> {
    let f = std::fs::File::open(file)
        .map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
    let shipped = shipped_heads(f, key)
        .map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
    let skipped = format!(
        "{} line(s) read; skipped: {} malformed, {} of other logs, {} with a bad signature, {} duplicate(s)",
        shipped.lines,
        shipped.malformed,
        shipped.other_key,
        shipped.bad_signature,
        shipped.duplicates
    );
    let Some(newest) = shipped.newest() else {
        return Err(Failure(format!(
            "{}: no signed head of the log with key {key} ({skipped})",
            file.display()
        )));
    };
    eprintln!(
        "{}: {} shipped head(s) verified, newest #{} ({} records) is the anchor; {skipped}",
        file.display(),
        shipped.heads.len(),
        newest.head().head_seq,
        newest.head().records
    );
    if shipped.bad_signature > 0 {
        eprintln!(
            "WARNING: {} head(s) in {} name this log's key but do not verify: forged or damaged",
            shipped.bad_signature,
            file.display()
        );
    }
    if shipped.forks > 0 {
        eprintln!(
            "WARNING: {} head number(s) were shipped twice with different contents: the log was rewound and written on from an older state",
            shipped.forks
        );
    }
    Ok(newest.anchor())
}

fn verify_json(
    dir: &str,
    key: &AuditPublicKey,
    anchor: &Anchor,
    result: ringkernel_core::Result<VerifyReport>,
) -> Outcome {
    let (value, code) = match result {
        Ok(r) => {
            let status = match r.status {
                LogStatus::Closed => "closed",
                _ => "open",
            };
            let mut v = json!({
                "directory": dir,
                "result": "verified",
                "status": status,
                "public_key": key.to_hex(),
                "external_anchor": (!anchor.is_empty()).then(|| anchor.to_string()),
                "head": r.head,
                "anchor": r.head.as_ref().map(|h| format!("{}:{}", h.last_hash, h.records)),
            });
            merge(&mut v, counts_json(&r));
            (v, 0)
        }
        Err(Error::AuditTruncated { report }) => {
            let mut v = json!({
                "directory": dir,
                "result": "truncated",
                "truncation": report.truncation().map(ToString::to_string),
            });
            merge(&mut v, counts_json(&report));
            (v, TRUNCATED)
        }
        Err(e @ Error::AuditIntegrity { .. }) => (
            json!({"directory": dir, "result": "tampered", "error": e.to_string()}),
            TAMPERED,
        ),
        Err(e @ Error::AuditLogMissing { .. }) => (
            json!({"directory": dir, "result": "no_log", "error": e.to_string()}),
            NO_LOG,
        ),
        Err(e) => return Err(Failure(format!("cannot verify {dir}: {e}"))),
    };
    println!("{value}");
    Ok(ExitCode::from(code))
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

/// `audit tail`.
pub(crate) fn tail(args: &TailArgs) -> Outcome {
    let segments = segments(&args.dir)?;
    if segments.is_empty() {
        println!("audit log {}: NO LOG: no segments", args.dir.display());
        return Ok(ExitCode::from(NO_LOG));
    }
    // Newest segment first, until enough lines are in hand.
    let mut lines: Vec<String> = Vec::new();
    for path in segments.iter().rev() {
        if lines.len() >= args.count {
            break;
        }
        let bytes = std::fs::read(path)
            .map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
        let text = String::from_utf8_lossy(&bytes);
        let mut in_segment: Vec<String> = Vec::new();
        let complete = text.ends_with('\n');
        let mut parts: Vec<&str> = text.split('\n').collect();
        // What follows the last newline is empty, or a line torn by a crash.
        if let Some(last) = parts.pop()
            && !complete
            && !last.is_empty()
        {
            eprintln!(
                "note: {} ends in a torn {}-byte line (not shown)",
                path.display(),
                last.len()
            );
        }
        in_segment.extend(parts.into_iter().map(str::to_owned));
        in_segment.append(&mut lines);
        lines = in_segment;
    }
    let start = lines.len().saturating_sub(args.count);
    for line in &lines[start..] {
        if args.json {
            println!("{line}");
            continue;
        }
        match serde_json::from_str::<AuditRecord>(line) {
            Ok(r) => {
                let details = serde_json::Value::Object(r.details);
                println!(
                    "{:>8} {} {} actor={} target={} result={} {}",
                    r.seq, r.ts, r.event, r.actor, r.target, r.result, details
                );
            }
            Err(e) => println!("(not a record: {e}) {line}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit heads`.
pub(crate) fn heads(args: &HeadsArgs) -> Outcome {
    let key = public_key(&args.key)?;
    let path = args.dir.join("log.head");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("audit log {}: NO LOG: no signed head", args.dir.display());
            return Ok(ExitCode::from(NO_LOG));
        }
        Err(e) => return Err(Failure(format!("cannot read {}: {e}", path.display()))),
    };
    let head = SignedHead::from_bytes(&bytes).map_err(|e| Failure(e.to_string()))?;
    if let Err(e) = head.verify(&key) {
        return match e {
            Error::AuditIntegrity { .. } => {
                println!("{}: FAILED (tampered): {e}", path.display());
                Ok(ExitCode::from(TAMPERED))
            }
            e => Err(Failure(e.to_string())),
        };
    }
    let h = head.head();
    let anchor = head.anchor().to_string();
    if args.json {
        println!(
            "{}",
            json!({"head": h, "hash": head.hash(), "anchor": anchor, "verified": true})
        );
    } else {
        println!(
            "signed head #{} of {}: {}, {} records, last sealed segment {}, written {}",
            h.head_seq,
            args.dir.display(),
            if h.state == HeadState::Closed {
                "closed"
            } else {
                "open"
            },
            h.records,
            h.last_segment,
            h.written_at
        );
        println!("  signature verifies with public key {key}");
        println!("  anchor to keep elsewhere: {anchor}");
    }
    Ok(ExitCode::SUCCESS)
}
