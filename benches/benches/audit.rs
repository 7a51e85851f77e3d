//! Audit and compliance benchmarks:
//! - `audit_append`: records/s through the hash-chained log from 1 and 4 threads,
//!   against writing the same JSON lines to a plain buffered file;
//! - `audit_syslog`: appends with the signed heads, or every record too, shipped to
//!   syslog over loopback TCP (a sink thread in the bench reads it), against
//!   local-only appends in the same run;
//! - `audit_verify`: verification throughput (MB of log per second) on 1 and 2
//!   threads, against one SHA-256 pass over the same files;
//! - `compliance`: report generation and each export, for all seven standards.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringkernel_core::runtime::RuntimeBuilder;
use ringkernel_core::security::audit::syslog::{SyslogConfig, SyslogTransport};
use ringkernel_core::security::audit::{AuditConfig, AuditEvent, AuditLog, AuditLogConfig, verify};
use ringkernel_core::security::compliance::{ComplianceReporter, ComplianceStandard, ExportFormat};
use sha2::{Digest, Sha256};

/// A fresh directory in the temp directory, removed when the guard drops.
fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("rk-bench-{tag}-"))
        .tempdir()
        .expect("temp dir")
}

fn event(i: u64) -> AuditEvent {
    AuditEvent::new("k2k.send")
        .actor("kernel:ingest")
        .target("processor_1")
        .detail("topic", "reading")
        .detail("bytes", 64u64)
        .detail("sequence", i)
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit_append");
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 4] {
        g.bench_function(format!("chained_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let dir = scratch("append");
                let log = AuditLog::open(AuditLogConfig {
                    events: AuditConfig {
                        retention_days: 0,
                        ..AuditConfig::default()
                    },
                    ..AuditLogConfig::in_directory(dir.path())
                })
                .expect("log");
                let per = iters.div_ceil(threads as u64);
                let t0 = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        let log = log.clone();
                        s.spawn(move || {
                            for i in 0..per {
                                log.append(event(i)).expect("append");
                            }
                        });
                    }
                });
                log.flush().expect("flush");
                let elapsed = t0.elapsed();
                log.close().expect("close");
                drop(log);
                drop(dir);
                elapsed.mul_f64(iters as f64 / (per * threads as u64) as f64)
            })
        });
    }
    // Baseline: the same lines (serialized once) written to a plain buffered file.
    let line = br#"{"seq":12345,"ts":"2026-11-22T03:17:00.123456Z","event":"k2k.send","actor":"kernel:ingest","target":"processor_1","result":"ok","details":{"bytes":64,"sequence":12345,"topic":"reading"},"prev":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#;
    g.bench_function("plain_file_same_lines", |b| {
        b.iter_custom(|iters| {
            let dir = scratch("plain");
            let f = std::fs::File::create(dir.path().join("plain.jsonl")).expect("file");
            let mut w = std::io::BufWriter::with_capacity(64 * 1024, f);
            let t0 = Instant::now();
            for _ in 0..iters {
                w.write_all(line).expect("write");
                w.write_all(b"\n").expect("write");
            }
            w.flush().expect("flush");
            w.get_ref().sync_data().expect("sync");
            let elapsed = t0.elapsed();
            drop(w);
            drop(dir);
            elapsed
        })
    });
    g.finish();
}

/// A syslog collector stand-in: accepts one TCP connection on loopback and reads it to
/// the end. Returns its address and the thread (which yields the bytes read).
fn tcp_sink() -> (String, std::thread::JoinHandle<u64>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let t = std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return 0;
        };
        std::io::copy(&mut s, &mut std::io::sink()).unwrap_or(0)
    });
    (addr, t)
}

/// Appends `iters` records from one thread and returns the time until the last one is
/// on disk and, with a shipper, until every message has left (shipped or dropped).
fn timed_appends(iters: u64, syslog: Option<SyslogConfig>) -> Duration {
    let dir = scratch("syslog");
    // Messages to wait for: the open head, then `audit.open` and ours if records go too.
    let expected = syslog
        .as_ref()
        .map(|c| if c.ship_records { iters + 2 } else { 1 });
    let log = AuditLog::open(AuditLogConfig {
        events: AuditConfig {
            retention_days: 0,
            ..AuditConfig::default()
        },
        syslog,
        ..AuditLogConfig::in_directory(dir.path())
    })
    .expect("log");
    let t0 = Instant::now();
    for i in 0..iters {
        log.append(event(i)).expect("append");
    }
    log.flush().expect("flush");
    if let Some(expected) = expected {
        while log.syslog_stats().map_or(0, |s| s.shipped + s.dropped) < expected {
            // Sleep, not spin: on two cores a spinning waiter slows the shipper down.
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    let elapsed = t0.elapsed();
    if let Some(s) = log.syslog_stats()
        && s.dropped > 0
    {
        eprintln!(
            "audit_syslog: {} of {} messages dropped",
            s.dropped,
            expected.unwrap_or(0)
        );
    }
    log.close().expect("close");
    elapsed
}

/// Records per criterion iteration: the fixed costs of a run (opening the log, the
/// final fsync, connecting) are spread over this many.
const SYSLOG_BATCH: u64 = 1000;

fn syslog_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit_syslog");
    g.throughput(Throughput::Elements(SYSLOG_BATCH));
    g.sample_size(20);
    g.bench_function("local_only", |b| {
        b.iter_custom(|iters| timed_appends(iters * SYSLOG_BATCH, None))
    });
    for (name, ship_records) in [
        ("ship_heads_only_tcp", false),
        ("ship_every_record_tcp", true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (addr, sink) = tcp_sink();
                let elapsed = timed_appends(
                    iters * SYSLOG_BATCH,
                    Some(SyslogConfig {
                        ship_records,
                        buffer: 65_536,
                        ..SyslogConfig::new(SyslogTransport::Tcp(addr))
                    }),
                );
                let _ = sink.join();
                elapsed
            })
        });
    }
    g.finish();
}

fn verify_bench(c: &mut Criterion) {
    let dir = scratch("verify");
    let log = AuditLog::open(AuditLogConfig {
        events: AuditConfig {
            retention_days: 0,
            ..AuditConfig::default()
        },
        max_segment_bytes: 4 << 20,
        ..AuditLogConfig::in_directory(dir.path())
    })
    .expect("log");
    for i in 0..50_000 {
        log.append(event(i)).expect("append");
    }
    log.close().expect("close");
    let bytes: u64 = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    let pk = log.public_key();
    let mut g = c.benchmark_group("audit_verify");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    // verify hashes the lines of a segment on the rayon pool: on one thread, and on
    // two (this VM's cores).
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        g.bench_function(format!("50000_records_{threads}_threads"), |b| {
            b.iter(|| pool.install(|| black_box(verify(dir.path(), &pk).expect("verify"))))
        });
    }
    // Baseline (issue #14: verify at >= 0.5x of it): read the same files and one
    // SHA-256 pass over all their bytes, with the same crate `verify` hashes with.
    g.bench_function("sha256_same_files", |b| {
        b.iter(|| {
            let mut h = Sha256::new();
            for e in std::fs::read_dir(dir.path()).expect("dir") {
                let path = e.expect("entry").path();
                if path.is_file() {
                    h.update(std::fs::read(&path).expect("read"));
                }
            }
            black_box(h.finalize())
        })
    });
    g.finish();
}

fn compliance(c: &mut Criterion) {
    let dir = scratch("compliance");
    let rt = RuntimeBuilder::new()
        .production()
        .with_audit_logging(AuditLogConfig::in_directory(dir.path()))
        .build()
        .expect("runtime");
    let reporter = ComplianceReporter::new(&rt).organization("Bench Corp");
    let mut g = c.benchmark_group("compliance");
    g.sample_size(20);
    g.bench_function("context_snapshot", |b| {
        b.iter(|| black_box(reporter.context().expect("ctx")))
    });
    let ctx = reporter.context().expect("ctx");
    g.bench_function("generate_all_7_standards", |b| {
        b.iter(|| {
            for s in ComplianceStandard::BUILT_IN {
                black_box(reporter.generate_from(&ctx, s));
            }
        })
    });
    let reports: Vec<_> = ComplianceStandard::BUILT_IN
        .iter()
        .map(|s| reporter.generate_from(&ctx, *s))
        .collect();
    for format in [
        ExportFormat::Json,
        ExportFormat::Markdown,
        ExportFormat::Html,
        ExportFormat::Pdf,
    ] {
        g.bench_function(format!("export_all_7_{}", format.extension()), |b| {
            b.iter(|| {
                for r in &reports {
                    black_box(reporter.render(r, format).expect("render"));
                }
            })
        });
    }
    g.finish();
    rt.shutdown().expect("shutdown");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = append, syslog_bench, verify_bench, compliance
}
criterion_main!(benches);
