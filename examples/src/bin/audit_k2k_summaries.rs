//! The two ways the audit log records K2K traffic, side by side: one `k2k.send` record
//! per send (`K2kRecords::EachSend`, the default) and exact per-route counts
//! (`K2kRecords::PerRoute`). The same workload runs under each: two producers send to
//! a ledger kernel, and one of them also tries a route the sandbox denies. Each log is
//! then verified with its public key alone and read back the way an auditor would:
//! every delivered message must be accounted for exactly once, every refusal must have
//! its own record.
//!
//! Run: `cargo run -p ringkernel-examples --bin audit_k2k_summaries`
//! (exits non-zero if any of that does not hold).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use ringkernel_core::Error;
use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder};
use ringkernel_core::security::audit::{
    AuditConfig, AuditLogConfig, AuditRecord, K2kRecords, LogStatus, verify,
};
use ringkernel_core::security::{
    EncryptionConfig, KernelSandbox, MemoryEncryption, ResourceLimits, SandboxPolicy,
};

/// Messages each producer sends to the ledger.
const PER_PRODUCER: u64 = 2_000;
/// Sends to a denied route.
const DENIED: u64 = 3;

fn main() -> ExitCode {
    let modes = [
        ("each send", K2kRecords::EachSend),
        (
            "per route",
            K2kRecords::PerRoute {
                interval: Duration::from_millis(200),
            },
        ),
    ];
    for (name, mode) in modes {
        match run(mode) {
            Ok(summary) => println!("{name:>9}: {summary}"),
            Err(e) => {
                eprintln!("audit_k2k_summaries ({name}) failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn run(mode: K2kRecords) -> Result<String, Box<dyn std::error::Error>> {
    let dir = tempfile::Builder::new()
        .prefix("rk-example-k2k-audit-")
        .tempdir()?;
    let runtime = RuntimeBuilder::new()
        .production()
        .with_encryption(MemoryEncryption::new(EncryptionConfig::secure())?)
        .with_sandbox(KernelSandbox::with_policy(
            ResourceLimits::conservative().max_messages_per_second(1_000_000),
            SandboxPolicy::restrictive().k2k_allow_list(&["ledger"]),
        ))
        .with_audit_logging(AuditLogConfig {
            events: AuditConfig {
                log_k2k_messages: true,
                ..AuditConfig::default()
            },
            k2k_records: mode,
            ..AuditLogConfig::in_directory(dir.path())
        })
        .build()?;
    let ledger = runtime.launch("ledger", LaunchOptions::new())?;
    let payments = runtime.launch("payments", LaunchOptions::new())?;
    let refunds = runtime.launch("refunds", LaunchOptions::new())?;
    for i in 0..PER_PRODUCER {
        payments.send_timeout("ledger", "tx", &i.to_le_bytes(), Duration::from_secs(5))?;
        refunds.send_timeout("ledger", "refund", &[0u8; 24], Duration::from_secs(5))?;
    }
    for _ in 0..DENIED {
        match refunds.send("payments", "tx", b"not allowed") {
            Err(Error::Denied { .. }) => {}
            other => return Err(format!("a denied route answered {other:?}").into()),
        }
    }
    let public_key = runtime.audit_log().map(|l| l.public_key());
    runtime.shutdown()?;
    drop((ledger, payments, refunds));

    // What an auditor does: verify with the public key, then read the records.
    let public_key = public_key.ok_or("no audit log")?;
    let report = verify(dir.path(), &public_key)?;
    if report.status != LogStatus::Closed {
        return Err(format!("the log is {:?}, not closed", report.status).into());
    }
    let mut delivered: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let (mut records, mut refused) = (0u64, 0u64);
    for entry in std::fs::read_dir(dir.path())? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            let r: AuditRecord = serde_json::from_str(line)?;
            records += 1;
            let topic = r.details.get("topic").and_then(|t| t.as_str());
            let route = (r.actor.clone(), topic.unwrap_or_default().to_owned());
            let bytes = r.details.get("bytes").and_then(|b| b.as_u64()).unwrap_or(0);
            match (r.event.as_str(), r.result.as_str()) {
                ("k2k.send", "ok") => {
                    let e = delivered.entry(route).or_default();
                    e.0 += 1;
                    e.1 += bytes;
                }
                ("k2k.send", _) => refused += 1,
                ("k2k.route_summary", _) => {
                    let n = r.details.get("messages").and_then(|m| m.as_u64());
                    let e = delivered.entry(route).or_default();
                    e.0 += n.unwrap_or(0);
                    e.1 += bytes;
                }
                _ => {}
            }
        }
    }
    let expected: BTreeMap<(String, String), (u64, u64)> = [
        (
            ("kernel:payments".into(), "tx".into()),
            (PER_PRODUCER, PER_PRODUCER * 8),
        ),
        (
            ("kernel:refunds".into(), "refund".into()),
            (PER_PRODUCER, PER_PRODUCER * 24),
        ),
    ]
    .into_iter()
    .collect();
    if delivered != expected || refused != DENIED {
        return Err(format!(
            "the log accounts for {delivered:?} delivered and {refused} refused, \
             expected {expected:?} and {DENIED}"
        )
        .into());
    }
    Ok(format!(
        "{} messages delivered and {refused} refused, all accounted for in {records} \
         records (log verified, closed)",
        2 * PER_PRODUCER
    ))
}
