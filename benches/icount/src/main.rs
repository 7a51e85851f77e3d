//! Instruction-count scenarios of the security layers, counted by callgrind.
//!
//! `scripts/icount.sh` builds this program in release and runs each scenario as
//!
//! ```text
//! valgrind --tool=callgrind --instr-atstart=no ringkernel-icount <scenario>
//! ```
//!
//! Each scenario sets up outside the measurement (runtime, keys, logs, policies, a
//! short warm-up of the same work so that one-time initialisation is not counted),
//! then counts exactly its measured part: instrumentation starts right before it and
//! stops right after, for every thread of the process (see [`callgrind`]). Outside
//! valgrind the program runs the same work uncounted, which is how its checks are
//! tested. Counts, unlike times, repeat on a noisy machine; `docs/benchmarks.md`
//! ("Instruction counts") says how closely.
//!
//! Usage: `ringkernel-icount <scenario>` runs one scenario; `ringkernel-icount --list`
//! prints their names.

mod callgrind;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ringkernel_core::Error;
use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder, RuntimeConfig};
use ringkernel_core::security::audit::{
    AuditConfig, AuditEvent, AuditLog, AuditLogConfig, AuditSigningKey, LogStatus, verify,
};
use ringkernel_core::security::encryption::{
    ContextId, EncryptionConfig, MemoryEncryption, SequenceCheck,
};
use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A scenario: its name (as `scripts/icount.sh` and the baseline file know it), what it
/// counts, and the function that sets it up and measures it.
struct Scenario {
    name: &'static str,
    what: &'static str,
    run: fn() -> Result<()>,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "seal_open_128B",
        what: "1,000 seal_region + open_region pairs of a 128 B record (AES-256-GCM, Auto)",
        run: seal_open_128b,
    },
    Scenario {
        name: "k2k_1000_all_layers",
        what: "1,000 K2K messages of 256 B, CPU backend, with sandbox, sealed payloads and \
               an audit record per message, until delivered and the log flushed",
        run: k2k_1000_all_layers,
    },
    Scenario {
        name: "audit_append_1000",
        what: "1,000 audit appends from one thread, then flush (written and synced)",
        run: audit_append_1000,
    },
    Scenario {
        name: "audit_verify_fixed",
        what: "verify of a 1,000-record log (fixed seed key, fixed events)",
        run: audit_verify_fixed,
    },
    Scenario {
        name: "sandbox_decision",
        what: "10,000 uncached K2K route decisions against 1,001 rules (exact, wildcard, deny)",
        run: sandbox_decision,
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--list" => {
            for s in &SCENARIOS {
                println!("{}\t{}", s.name, s.what);
            }
            ExitCode::SUCCESS
        }
        [name] => match SCENARIOS.iter().find(|s| s.name == name) {
            Some(s) => match (s.run)() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("scenario {name} failed: {e}");
                    ExitCode::FAILURE
                }
            },
            None => {
                eprintln!("unknown scenario {name:?}; `--list` prints the scenarios");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("usage: ringkernel-icount <scenario> | --list");
            ExitCode::from(2)
        }
    }
}

/// Runs `f` with callgrind's instrumentation on (all threads). Kept out of line so that
/// the start and stop requests bracket exactly the call.
#[inline(never)]
fn measured<T>(f: impl FnOnce() -> T) -> T {
    callgrind::start_instrumentation();
    let out = f();
    callgrind::stop_instrumentation();
    out
}

/// A fresh directory in the temp directory, removed on drop.
fn scratch(tag: &str) -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("rk-icount-{tag}-"))
        .tempdir()?)
}

/// The audit log's checkpoint key, the same in every run.
fn fixed_key() -> AuditSigningKey {
    AuditSigningKey::from_seed(&[0x1C; 32])
}

/// A log with a fixed key that writes on flush, not on a timer (no timed wake-ups of
/// the writer during a measurement).
fn log_config(dir: &std::path::Path, log_k2k_messages: bool) -> AuditLogConfig {
    AuditLogConfig {
        events: AuditConfig {
            log_k2k_messages,
            retention_days: 0,
            ..AuditConfig::default()
        },
        signing_key: Some(fixed_key()),
        flush_interval: Duration::from_secs(3600),
        ..AuditLogConfig::in_directory(dir)
    }
}

fn event(i: u64) -> AuditEvent {
    AuditEvent::new("k2k.send")
        .actor("kernel:ingest")
        .target("processor_1")
        .detail("topic", "reading")
        .detail("bytes", 64u64)
        .detail("sequence", i)
}

// ----- seal_open_128B ---------------------------------------------------------------------

fn seal_open_pairs(enc: &MemoryEncryption, from: u64, to: u64) -> Result<()> {
    let ctx = ContextId::new("icount", "control");
    let record = [0x5Au8; 128];
    for seq in from..to {
        let sealed = enc.seal_region(ctx, seq, &record, b"")?;
        let opened = enc.open_region(&sealed, ctx, SequenceCheck::Exact(seq), b"")?;
        if opened.as_ref() != record.as_slice() {
            return Err("a 128 B record did not open to what was sealed".into());
        }
    }
    Ok(())
}

fn seal_open_128b() -> Result<()> {
    let enc = MemoryEncryption::new(EncryptionConfig::new())?;
    seal_open_pairs(&enc, 0, 10)?;
    measured(|| seal_open_pairs(&enc, 10, 1010))
}

// ----- k2k_1000_all_layers ----------------------------------------------------------------

/// Counts the messages the sink's handler has seen and wakes a waiter at a target:
/// the waiter sleeps, so it neither spins nor reads the sink's control block.
#[derive(Default)]
struct Delivered {
    count: AtomicU64,
    target: AtomicU64,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Delivered {
    fn new() -> Arc<Self> {
        let d = Delivered::default();
        d.target.store(u64::MAX, Ordering::SeqCst);
        Arc::new(d)
    }

    fn seen(&self) {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.target.load(Ordering::SeqCst) {
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.wake.notify_all();
        }
    }

    fn wait_for(&self, n: u64) -> Result<()> {
        self.target.store(n, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        while self.count.load(Ordering::SeqCst) < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "only {} of {n} messages delivered",
                    self.count.load(Ordering::SeqCst)
                )
                .into());
            }
            g = self
                .wake
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }
}

fn k2k_1000_all_layers() -> Result<()> {
    const MESSAGES: u64 = 1000;
    const WARM_UP: u64 = 10;
    let dir = scratch("k2k")?;
    let sandbox = KernelSandbox::with_policy(
        ResourceLimits::new().max_messages_per_second(u32::MAX),
        SandboxPolicy::restrictive()
            .k2k_allow_list(&["sink", "pool_*"])
            .deny_k2k_to(&["external_*"]),
    );
    let rt = RuntimeBuilder::new()
        .development()
        .config(RuntimeConfig {
            // No timed wake-ups while counting: idle kernels are woken by sends and
            // stops, and the ticker (watchdog, rotation) stays quiet.
            poll_interval: Duration::from_secs(10),
            tick_interval: Duration::from_secs(3600),
            ..RuntimeConfig::default()
        })
        .with_encryption(MemoryEncryption::new(EncryptionConfig::new())?)
        .with_sandbox(sandbox)
        .with_audit_logging(log_config(dir.path(), true))
        .build()?;
    let delivered = Delivered::new();
    let d = delivered.clone();
    rt.launch(
        "sink",
        LaunchOptions::new()
            .queue_capacity(2048)
            .handler(move |_, _| {
                d.seen();
                Ok(())
            }),
    )?;
    let src = rt.launch("src", LaunchOptions::new())?;
    let log = rt
        .audit_log()
        .ok_or("the runtime was built without its audit log")?
        .clone();
    let payload = [0xA5u8; 256];
    let send = |n: u64| -> std::result::Result<(), Error> {
        for _ in 0..n {
            src.send_timeout("sink", "bench", &payload, Duration::from_secs(60))?;
        }
        Ok(())
    };
    send(WARM_UP)?;
    delivered.wait_for(WARM_UP)?;
    log.flush()?;
    let appended = log.appended();
    measured(|| -> Result<()> {
        send(MESSAGES)?;
        delivered.wait_for(WARM_UP + MESSAGES)?;
        log.flush()?;
        Ok(())
    })?;
    let audited = log.appended() - appended;
    if audited < MESSAGES {
        return Err(format!("{audited} audit records for {MESSAGES} messages").into());
    }
    rt.shutdown()?;
    Ok(())
}

// ----- audit_append_1000 ------------------------------------------------------------------

fn audit_append_1000() -> Result<()> {
    let dir = scratch("append")?;
    let log = AuditLog::open(log_config(dir.path(), false))?;
    for i in 0..10 {
        log.append(event(i))?;
    }
    log.flush()?;
    measured(|| -> Result<()> {
        for i in 10..1010 {
            log.append(event(i))?;
        }
        log.flush()?;
        Ok(())
    })?;
    log.close()?;
    Ok(())
}

// ----- audit_verify_fixed -----------------------------------------------------------------

fn audit_verify_fixed() -> Result<()> {
    let dir = scratch("verify")?;
    let log = AuditLog::open(log_config(dir.path(), false))?;
    for i in 0..1000 {
        log.append(event(i))?;
    }
    log.close()?;
    let pk = fixed_key().public_key();
    // Warm-up: the first verify also faults the files into the page cache.
    verify(dir.path(), &pk)?;
    let report = measured(|| verify(dir.path(), &pk))?;
    if report.status != LogStatus::Closed || report.records < 1000 {
        return Err(format!("verify of the fixed log: {report:?}").into());
    }
    Ok(())
}

// ----- sandbox_decision -------------------------------------------------------------------

fn sandbox_decision() -> Result<()> {
    // 900 exact ids, 100 `pool_N_*` wildcards and one deny wildcard, as in the
    // criterion sandbox bench at 1,000 rules.
    let mut allow: Vec<String> = (0..900).map(|i| format!("worker_{i}")).collect();
    allow.extend((0..100).map(|i| format!("pool_{i}_*")));
    let policy = SandboxPolicy::restrictive()
        .k2k_allow_list(&allow)
        .deny_k2k_to(&["external_*"])
        .compile()?;
    let targets = ["worker_7", "pool_42_x", "external_x", "unknown_kernel"];
    let decide = |n: usize| -> usize {
        (0..n)
            .filter(|i| policy.allows_route(std::hint::black_box(targets[i % targets.len()])))
            .count()
    };
    decide(100);
    let allowed = measured(|| decide(10_000));
    if allowed != 5_000 {
        return Err(format!("{allowed} of 10,000 decisions allowed, expected 5,000").into());
    }
    Ok(())
}
