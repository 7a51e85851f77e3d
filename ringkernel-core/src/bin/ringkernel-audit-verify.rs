//! `ringkernel-audit-verify`: checks a (copied) RingKernel audit log with the public
//! key alone.
//!
//! ```text
//! ringkernel-audit-verify <log-directory> <public-key-hex | @file-with-key>
//! ```
//!
//! Exit status: 0 the log verifies (a torn final line from a crash is reported, not an
//! error), 1 the log fails verification (the first bad segment and record are named),
//! 2 usage or I/O error.

use std::process::ExitCode;

use ringkernel_core::Error;
use ringkernel_core::security::audit::{AuditPublicKey, verify};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, key] = args.as_slice() else {
        eprintln!("usage: ringkernel-audit-verify <log-directory> <public-key-hex | @key-file>");
        return ExitCode::from(2);
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
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match verify(dir, &public_key) {
        Ok(r) => {
            println!("audit log {dir}: VERIFIED with public key {public_key}");
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
            if r.unsealed_records > 0 {
                println!(
                    "  {} record(s) in the open segment are chained but not yet signed",
                    r.unsealed_records
                );
            }
            if let Some(t) = r.torn_tail {
                println!(
                    "  note: segment {} ends in a torn {}-byte line (a crash while writing), not tampering",
                    t.segment, t.bytes
                );
            }
            ExitCode::SUCCESS
        }
        Err(e @ Error::AuditIntegrity { .. }) => {
            println!("audit log {dir}: FAILED: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("cannot verify {dir}: {e}");
            ExitCode::from(2)
        }
    }
}
