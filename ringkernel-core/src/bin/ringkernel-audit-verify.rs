//! `ringkernel-audit-verify`: checks a (copied) RingKernel audit log with the public
//! key alone.
//!
//! ```text
//! ringkernel-audit-verify <log-directory> <public-key-hex | @file-with-key>
//!                         [--anchor <last-hash>[:<records>]]
//! ```
//!
//! `--anchor` takes a head shipped off the machine earlier (`SignedHead::anchor`, or the
//! `anchor` line this tool prints): a log that falls short of it was rolled back.
//!
//! Exit status:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | verified: `closed` (clean close), or `open` (not closed: still running, or crashed; the records after the last signed head are printed, and a torn final line is noted, not an error) |
//! | 1 | tampered: the first bad segment and record are named |
//! | 2 | usage or I/O error |
//! | 3 | truncated: records, segments, a checkpoint or the head are missing relative to the signed head or the anchor (what is missing is printed) |
//! | 4 | no log: the directory holds no signed head and no segments |

use std::process::ExitCode;

use ringkernel_core::Error;
use ringkernel_core::security::audit::{
    Anchor, AuditPublicKey, HeadState, LogStatus, VerifyReport, verify_with_anchor,
};

const USAGE: &str = "usage: ringkernel-audit-verify <log-directory> <public-key-hex | @key-file> [--anchor <last-hash>[:<records>]]";

fn usage(why: &str) -> ExitCode {
    eprintln!("{why}\n{USAGE}");
    ExitCode::from(2)
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

fn main() -> ExitCode {
    let mut positional = Vec::new();
    let mut anchor = Anchor::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--anchor" {
            let Some(text) = args.next() else {
                return usage("--anchor needs a value");
            };
            match text.parse::<Anchor>() {
                Ok(a) => anchor = a,
                Err(e) => return usage(&e.to_string()),
            }
        } else if let Some(text) = arg.strip_prefix("--anchor=") {
            match text.parse::<Anchor>() {
                Ok(a) => anchor = a,
                Err(e) => return usage(&e.to_string()),
            }
        } else if arg.starts_with("--") {
            return usage(&format!("unknown option {arg}"));
        } else {
            positional.push(arg);
        }
    }
    let [dir, key] = positional.as_slice() else {
        return usage("expected a log directory and a public key");
    };
    let key_text = match key.strip_prefix('@') {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("cannot read {path}: {e}");
                return ExitCode::from(2);
            }
        },
        None => key.clone(),
    };
    let public_key = match AuditPublicKey::from_hex(&key_text) {
        Ok(k) => k,
        Err(e) => return usage(&e.to_string()),
    };
    match verify_with_anchor(dir, &public_key, &anchor) {
        Ok(r) => {
            let state = match r.status {
                LogStatus::Closed => "closed".to_owned(),
                LogStatus::Open { unanchored_records } => format!(
                    "open (not closed) with {unanchored_records} unanchored record(s) after the last signed head"
                ),
                // verify_with_anchor returns truncation as an error.
                LogStatus::Truncated(_) => "truncated".to_owned(),
            };
            println!("audit log {dir}: VERIFIED, {state}, with public key {public_key}");
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
            ExitCode::SUCCESS
        }
        Err(Error::AuditTruncated { report }) => {
            let what = report
                .truncation()
                .map(ToString::to_string)
                .unwrap_or_default();
            println!("audit log {dir}: TRUNCATED: {what}");
            print_counts(&report);
            ExitCode::from(3)
        }
        Err(e @ Error::AuditIntegrity { .. }) => {
            println!("audit log {dir}: FAILED (tampered): {e}");
            ExitCode::from(1)
        }
        Err(e @ Error::AuditLogMissing { .. }) => {
            println!("audit log {dir}: NO LOG: {e}");
            ExitCode::from(4)
        }
        Err(e) => {
            eprintln!("cannot verify {dir}: {e}");
            ExitCode::from(2)
        }
    }
}
