//! Soak test of the secure_runtime workload: the ingest -> processor -> aggregator
//! pipeline of the main example on the CPU backend, with the sandbox, memory
//! encryption, the signed audit log and a passphrase-sealed keystore (all in a
//! temporary directory that is removed at the end), kept running for a given time
//! while readings flow continuously and the keys rotate every second.
//!
//! Every minute (and at the end) it prints one line: elapsed time, resident set size
//! (`VmRSS` from `/proc/self/status`), readings sent and delivered, rotations, failed
//! opens, live key epochs and kernel errors. It exits non-zero if any open failed, any
//! reading was lost or corrupted, any kernel reported an error, or memory grew: RSS at
//! the end may exceed the baseline (RSS after the first minute, or after half the run
//! for runs shorter than two minutes) by at most 10% + 4 MiB. The first minute absorbs
//! one-time growth (thread stacks, allocator arenas, queue capacity, the audit writer's
//! buffers); the tolerance then allows allocator fragmentation jitter (10%) and the
//! page granularity of small RSS values (4 MiB), while a leak of even one small
//! allocation per message or per rotation (~2 M messages and 3600 rotations an hour)
//! exceeds it.
//!
//! It paces itself (batches of readings with sleeps in between) so it uses a small
//! fraction of one core; the machine may be shared.
//!
//! Run: `cargo run --release -p ringkernel-examples --bin soak -- --seconds 3600`
//! (`--rate N` readings per second, default 200; each reading is three K2K hops).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringkernel_core::runtime::{KernelHandle, LaunchOptions, Runtime, RuntimeBuilder};
use ringkernel_core::security::audit::{AuditConfig, AuditLogConfig, LogStatus, verify};
use ringkernel_core::security::keystore::{KeyEncryptionKey, Keystore};
use ringkernel_core::security::{KernelSandbox, ResourceLimits, SandboxPolicy};
use ringkernel_core::{Error, Result};

/// Relative RSS growth allowed between the baseline and the end.
const RSS_GROWTH_FRACTION: f64 = 0.10;
/// Absolute RSS growth allowed on top of the fraction, in KiB.
const RSS_GROWTH_SLACK_KIB: u64 = 4 * 1024;
/// Readings sent per batch; batches are spaced to reach the requested rate.
const BATCH: u64 = 20;

struct Args {
    seconds: u64,
    rate: u64,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut args = Args {
        seconds: 60,
        rate: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> std::result::Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse::<u64>()
                .map_err(|e| format!("{name} {v:?}: {e}"))
                .and_then(|n| {
                    if n == 0 {
                        Err(format!("{name} must be positive"))
                    } else {
                        Ok(n)
                    }
                })
        };
        match a.as_str() {
            "--seconds" => args.seconds = value("--seconds")?,
            "--rate" => args.rate = value("--rate")?,
            "-h" | "--help" => {
                return Err(
                    "usage: soak [--seconds N (default 60)] [--rate READINGS_PER_S (default 200)]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    match soak(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resident set size in KiB, from `/proc/self/status`.
fn rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Error::InvalidConfig("no VmRSS line in /proc/self/status".into()))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The secure_runtime configuration: restrictive sandbox with the pipeline's routes,
/// production-mode encryption under the keystore's master key, signed audit log.
fn build_runtime(keystore: Keystore) -> Result<Runtime> {
    let limits = ResourceLimits::conservative().max_messages_per_second(1_000_000);
    let sandbox = KernelSandbox::with_policy(limits, SandboxPolicy::restrictive())
        .with_kernel_policy(
            "ingest",
            limits,
            SandboxPolicy::restrictive()
                .k2k_allow_list(&["processor_*"])
                .allow_topics(&["reading"]),
        )
        .with_kernel_policy(
            "processor_*",
            limits,
            SandboxPolicy::restrictive()
                .k2k_allow_list(&["aggregator"])
                .deny_k2k_to(&["audit_*"])
                .allow_topics(&["scaled"]),
        );
    let audit = AuditLogConfig {
        events: AuditConfig {
            log_k2k_messages: false,
            log_memory_access: true,
            log_violations: true,
            retention_days: 400,
        },
        ..AuditLogConfig::in_directory(keystore.directory().join("audit"))
    };
    RuntimeBuilder::new()
        .production()
        .with_keystore(keystore)
        .with_sandbox(sandbox)
        .with_audit_logging(audit)
        .build()
}

struct Counters {
    sent: u64,
    rotations: u64,
}

fn report_line(
    runtime: &Runtime,
    started: Instant,
    c: &Counters,
    delivered: u64,
    kernels: &[&KernelHandle],
) -> Result<(u64, u64, u64)> {
    let rss = rss_kib()?;
    let (failures, live) = runtime
        .encryption()
        .map_or((0, 0), |e| (e.stats().failures, e.live_key_ids().len()));
    let mut errors = 0u64;
    for k in kernels {
        errors += u64::from(k.status()?.error_count);
    }
    println!(
        "t={:>5}s rss={:>7.1} MiB sent={:>8} delivered={:>8} rotations={:>5} failed_opens={} live_keys={} kernel_errors={}",
        started.elapsed().as_secs(),
        mib(rss),
        c.sent,
        delivered,
        c.rotations,
        failures,
        live,
        errors
    );
    Ok((rss, failures, errors))
}

fn soak(args: &Args) -> Result<bool> {
    let dir = tempfile::Builder::new()
        .prefix("ringkernel-soak-")
        .tempdir()?;
    let keystore = Keystore::open(
        dir.path().join("state"),
        KeyEncryptionKey::password("ringkernel soak passphrase"),
    )?;
    let audit_dir = keystore.directory().join("audit");
    let runtime = build_runtime(keystore)?;

    // aggregator: sums the scaled readings and counts them.
    let total = Arc::new(AtomicU64::new(0));
    let sum = total.clone();
    let aggregator = runtime.launch(
        "aggregator",
        LaunchOptions::new().handler(move |_, msg| {
            let v = u64::from_le_bytes(msg.payload.as_slice().try_into()?);
            sum.fetch_add(v, Ordering::Relaxed);
            Ok(())
        }),
    )?;
    let processor = runtime.launch(
        "processor_1",
        LaunchOptions::new().handler(|ctx, msg| {
            let v = u64::from_le_bytes(msg.payload.as_slice().try_into()?);
            ctx.send_timeout(
                "aggregator",
                "scaled",
                &(v * 2).to_le_bytes(),
                Duration::from_secs(5),
            )?;
            Ok(())
        }),
    )?;
    let ingest = runtime.launch(
        "ingest",
        LaunchOptions::new().handler(|ctx, msg| {
            let text = std::str::from_utf8(&msg.payload)?;
            let v: u64 = text.trim().parse()?;
            ctx.send_timeout(
                "processor_1",
                "reading",
                &v.to_le_bytes(),
                Duration::from_secs(5),
            )?;
            Ok(())
        }),
    )?;
    let kernels = [&ingest, &processor, &aggregator];

    let duration = Duration::from_secs(args.seconds);
    let baseline_at = Duration::from_secs(60.min(args.seconds.div_ceil(2)));
    let batch_gap = Duration::from_secs_f64(BATCH as f64 / args.rate as f64);
    println!(
        "soak: {} s, {} readings/s ({} K2K hops/s), key rotation every second; state in {}",
        args.seconds,
        args.rate,
        args.rate * 3,
        dir.path().display()
    );
    println!(
        "RSS tolerance: end <= baseline (RSS at t={} s) * {:.2} + {} MiB",
        baseline_at.as_secs(),
        1.0 + RSS_GROWTH_FRACTION,
        RSS_GROWTH_SLACK_KIB / 1024
    );
    let rss_start = rss_kib()?;
    println!("t=    0s rss={:>7.1} MiB (start)", mib(rss_start));

    let started = Instant::now();
    let mut c = Counters {
        sent: 0,
        rotations: 0,
    };
    let mut next_rotation = started + Duration::from_secs(1);
    let mut next_report = started + Duration::from_secs(60);
    let mut baseline: Option<u64> = None;
    let mut next_batch = started;
    while started.elapsed() < duration {
        for _ in 0..BATCH {
            c.sent += 1;
            runtime.send_timeout(
                "ingest",
                "raw",
                c.sent.to_string().as_bytes(),
                Duration::from_secs(5),
            )?;
        }
        let now = Instant::now();
        if now >= next_rotation {
            runtime.rotate_keys()?;
            c.rotations += 1;
            next_rotation += Duration::from_secs(1);
        }
        if baseline.is_none() && now.duration_since(started) >= baseline_at {
            let rss = rss_kib()?;
            println!(
                "t={:>5}s rss={:>7.1} MiB (baseline)",
                started.elapsed().as_secs(),
                mib(rss)
            );
            baseline = Some(rss);
        }
        if now >= next_report {
            report_line(
                &runtime,
                started,
                &c,
                aggregator.status()?.messages_processed,
                &kernels,
            )?;
            next_report += Duration::from_secs(60);
        }
        next_batch += batch_gap;
        let now = Instant::now();
        if next_batch > now {
            std::thread::sleep(next_batch - now);
        } else {
            // Fell behind (the machine is busy): do not burst to catch up.
            next_batch = now;
        }
    }

    // Drain: every reading sent must reach the aggregator.
    let t0 = Instant::now();
    while aggregator.status()?.messages_processed < c.sent && t0.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let delivered = aggregator.status()?.messages_processed;
    let (rss_end, failures, errors) = report_line(&runtime, started, &c, delivered, &kernels)?;
    let baseline = baseline.unwrap_or(rss_end);
    let expected_sum = c.sent * (c.sent + 1);
    let got_sum = total.load(Ordering::Relaxed);
    let stats = runtime.encryption().map(|e| e.stats());

    let public_key = runtime.audit_log().map(|l| l.public_key());
    let shutdown = runtime.shutdown()?;
    let audit = match public_key {
        Some(pk) => Some(verify(&audit_dir, &pk)?),
        None => None,
    };

    let limit = (baseline as f64 * (1.0 + RSS_GROWTH_FRACTION)) as u64 + RSS_GROWTH_SLACK_KIB;
    println!("\nSummary after {:.0} s", started.elapsed().as_secs_f64());
    println!(
        "  RSS: start {:.1} MiB, baseline {:.1} MiB, end {:.1} MiB (limit {:.1} MiB)",
        mib(rss_start),
        mib(baseline),
        mib(rss_end),
        mib(limit)
    );
    println!(
        "  readings: sent {}, delivered {}, lost {}; aggregate {} (expected {})",
        c.sent,
        delivered,
        c.sent.saturating_sub(delivered),
        got_sum,
        expected_sum
    );
    if let Some(s) = &stats {
        println!(
            "  encryption: {} rotations requested, {} counted; {} seals, {} opens, {} failed opens, {} epochs retired",
            c.rotations, s.rotations, s.seals, s.opens, s.failures, s.retirements
        );
    }
    println!(
        "  shutdown: {} kernels stopped, {} undelivered",
        shutdown.kernels, shutdown.undelivered
    );
    if let Some(v) = &audit {
        println!(
            "  audit log verified: {} records in {} signed segment(s), {}",
            v.records,
            v.sealed_segments,
            if v.status == LogStatus::Closed {
                "closed cleanly"
            } else {
                "open"
            }
        );
    }

    let mut problems = Vec::new();
    if stats.is_none() {
        problems.push("encryption is not enabled".to_string());
    }
    if failures != 0 {
        problems.push(format!("{failures} failed open(s)"));
    }
    if delivered != c.sent || shutdown.undelivered != 0 {
        problems.push(format!(
            "lost messages: sent {}, delivered {}, undelivered at shutdown {}",
            c.sent, delivered, shutdown.undelivered
        ));
    }
    if got_sum != expected_sum {
        problems.push(format!(
            "aggregate {got_sum}, expected {expected_sum}: a reading was corrupted"
        ));
    }
    if errors != 0 {
        problems.push(format!("{errors} kernel error(s)"));
    }
    if rss_end > limit {
        problems.push(format!(
            "RSS grew from {:.1} MiB to {:.1} MiB (limit {:.1} MiB)",
            mib(baseline),
            mib(rss_end),
            mib(limit)
        ));
    }
    if audit
        .as_ref()
        .is_some_and(|v| v.status != LogStatus::Closed)
    {
        problems.push("audit log not closed cleanly".into());
    }
    dir.close()?;
    if problems.is_empty() {
        println!("SOAK PASSED");
        Ok(true)
    } else {
        for p in &problems {
            println!("SOAK FAILED: {p}");
        }
        Ok(false)
    }
}
