//! Provokes every sandbox violation type with real runtime activity and prints what the
//! sandbox recorded.
//!
//! Run: `cargo run -p ringkernel-examples --bin sandbox_violations`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ringkernel_core::Error;
use ringkernel_core::runtime::{KernelState, LaunchOptions, RuntimeBuilder};
use ringkernel_core::security::sandbox::{
    KernelSandbox, MemoryAccess, ResourceLimits, SandboxPolicy, ViolationType,
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbox_violations failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn expect_denied(what: &str, r: Result<(), Error>) -> Result<(), Error> {
    match r {
        Err(e @ Error::Denied { .. }) => {
            println!("  {what:<28} refused: {e}");
            Ok(())
        }
        other => Err(Error::InvalidConfig(format!(
            "{what}: expected a denial, got {other:?}"
        ))),
    }
}

fn run() -> Result<(), Error> {
    let limits = ResourceLimits::new()
        .max_memory_bytes(4096)
        .max_messages_per_second(100)
        .max_k2k_connections(2);
    let sandbox = KernelSandbox::with_policy(
        limits,
        SandboxPolicy::restrictive()
            .k2k_allow_list(&["peer_*"])
            .deny_k2k_to(&["peer_secret"])
            .allow_topics(&["public.*"]),
    )
    .with_kernel_policy(
        "reader",
        limits,
        SandboxPolicy::new().memory_access(MemoryAccess::ReadOnly),
    )
    .with_kernel_policy(
        "slow",
        ResourceLimits::new().max_execution_time(Duration::from_millis(200)),
        SandboxPolicy::new(),
    );
    // Audit records go to a scratch directory for this demonstration, removed when
    // `audit_dir` drops (after the runtime, declared below it).
    let audit_dir = scratch_audit_dir("sandbox-violations")?;
    let runtime = RuntimeBuilder::new()
        .production()
        .with_audit_logging(
            ringkernel_core::security::audit::AuditLogConfig::in_directory(audit_dir.path()),
        )
        .with_sandbox(sandbox.clone())
        .build()?;
    for p in ["peer_a", "peer_b", "peer_c", "peer_secret", "admin_kernel"] {
        runtime.launch(p, LaunchOptions::new())?;
    }
    let k = runtime.launch("untrusted", LaunchOptions::new())?;

    println!("Provoking violations from kernel \"untrusted\":");
    let mut refused = 0;
    for _ in 0..500 {
        if k.send("peer_b", "public.x", b"").is_err() {
            refused += 1;
        }
    }
    println!(
        "  {:<28} refused {refused} of 500 sends at 100 msg/s",
        "message flood"
    );
    // Let the token bucket refill before the next sends.
    std::thread::sleep(Duration::from_millis(100));
    expect_denied(
        "send to admin_kernel",
        k.send("admin_kernel", "public.x", b""),
    )?;
    expect_denied(
        "send to peer_secret",
        k.send("peer_secret", "public.x", b""),
    )?;
    expect_denied("topic private.keys", k.send("peer_a", "private.keys", b""))?;
    k.send("peer_a", "public.x", b"")?;
    k.send("peer_b", "public.x", b"")?;
    expect_denied("third distinct peer", k.send("peer_c", "public.x", b""))?;
    expect_denied("allocate 8 KiB (limit 4 KiB)", k.allocate(8192).map(|_| ()))?;

    let reader = runtime.launch(
        "reader",
        LaunchOptions::new().handler(|ctx, _| {
            let buf = ctx.allocate(64)?;
            if let Err(e) = ctx.write(buf, 0, b"overwrite") {
                println!("  {:<28} refused: {e}", "write under read-only");
            }
            Ok(())
        }),
    )?;
    runtime.send("reader", "go", b"")?;

    let slow = runtime.launch(
        "slow",
        LaunchOptions::new().handler(|ctx, _| {
            while !ctx.should_terminate() {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        }),
    )?;
    runtime.send("slow", "go", b"")?;
    let t0 = Instant::now();
    while slow.status()?.state != KernelState::Terminated {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(Error::Timeout(Duration::from_secs(10)));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("  {:<28} stopped by the watchdog", "kernel past 200 ms");
    while reader.status()?.messages_processed < 1 {
        std::thread::sleep(Duration::from_millis(5));
    }

    println!("\nRecorded violations:");
    let mut kinds = std::collections::BTreeSet::new();
    for id in ["untrusted", "reader", "slow"] {
        let recent = sandbox.check_violations(id)?;
        let total = sandbox.violation_count(id).max(recent.len() as u64);
        println!("  {id}: {total} in all");
        for v in recent
            .iter()
            .filter(|v| kinds.insert(v.violation_type.kind()))
        {
            let detail = match &v.violation_type {
                ViolationType::MemoryExceeded { used, limit } => {
                    format!("Memory limit exceeded: {used} > {limit}")
                }
                ViolationType::ExecutionTimeout { elapsed } => {
                    format!("Execution timeout: {elapsed:?}")
                }
                ViolationType::UnauthorizedK2K { target } => {
                    format!("Unauthorized K2K to: {target}")
                }
                ViolationType::RateLimitExceeded { rate } => {
                    format!("Rate limit exceeded: {rate} msg/s")
                }
                other => other.to_string(),
            };
            println!(
                "    [{:?}] {detail} (action {:?})",
                v.violation_type.kind(),
                v.action
            );
        }
    }
    println!("\nTotals by kind:");
    for (kind, n) in sandbox.violation_totals() {
        println!("  {:<24} {n}", kind.to_string());
    }
    runtime.shutdown()?;
    let seen = sandbox
        .violation_totals()
        .iter()
        .filter(|(_, n)| *n > 0)
        .count();
    if seen != 7 {
        return Err(Error::InvalidConfig(format!(
            "only {seen} of 7 violation kinds seen"
        )));
    }
    Ok(())
}

/// A fresh scratch directory in the temp directory for this example's audit log,
/// removed when the returned guard drops.
fn scratch_audit_dir(tag: &str) -> Result<tempfile::TempDir, Error> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("ringkernel-example-{tag}-"))
        .tempdir()?)
}
