//! K2K messages/s on the CPU backend, through the shared harness
//! (`ringkernel_benches::k2k_messages`: sender threads, a sink whose handler counts,
//! a waiter that sleeps until the count is reached):
//! - `k2k_cpu`: 1 -> 1 and 4 -> 1 senders, 64 B and 4 KiB payloads, no security layer,
//!   the baseline the layers are measured against; the `memcpy` cases copy the same
//!   bytes per message as a floor in the same run;
//! - `k2k_layers`: 1 -> 1 at 256 B with each security layer alone and all together
//!   (sandbox, sealed payloads and control blocks, an audit record per message)
//!   beside no layer, in the same run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringkernel_benches::k2k_messages;
use ringkernel_core::runtime::RuntimeBuilder;
use ringkernel_core::security::audit::{AuditConfig, AuditLogConfig, K2kRecords};
use ringkernel_core::security::encryption::{EncryptionConfig, MemoryEncryption};
use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};

fn k2k(c: &mut Criterion) {
    let mut group = c.benchmark_group("k2k_cpu");
    for &size in &[64usize, 4096] {
        for &senders in &[1usize, 4] {
            group.throughput(Throughput::Elements(1));
            group.bench_function(format!("{senders}to1_{size}B"), |b| {
                b.iter_custom(|iters| {
                    let per = iters.div_ceil(senders as u64);
                    let payload = vec![0xA5u8; size];
                    let builder = RuntimeBuilder::new().development();
                    let elapsed = k2k_messages(builder, senders, per, &payload);
                    // Report time per message actually sent.
                    elapsed.mul_f64(iters as f64 / (per * senders as u64) as f64)
                });
            });
        }
        group.bench_function(format!("memcpy_{size}B"), |b| {
            let src = vec![0xA5u8; size];
            b.iter(|| black_box(src.to_vec()));
        });
    }
    group.finish();
}

/// Which security layers a `k2k_layers` case turns on.
#[derive(Clone, Copy)]
struct Layers {
    sandbox: bool,
    sealed: bool,
    audit: Option<K2kRecords>,
}

fn layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("k2k_layers");
    group.throughput(Throughput::Elements(1));
    // Audit of every send: one `k2k.send` record per message, or exact per-route
    // counts written as one `k2k.route_summary` record per route per second.
    let each = Some(K2kRecords::EachSend);
    let per_route = Some(K2kRecords::PerRoute {
        interval: Duration::from_secs(1),
    });
    let cases = [
        ("plain_256B", false, false, None),
        ("sandbox_256B", true, false, None),
        ("sealed_256B", false, true, None),
        ("audit_every_message_256B", false, false, each),
        ("audit_per_route_256B", false, false, per_route),
        ("all_layers_256B", true, true, each),
        ("all_layers_per_route_256B", true, true, per_route),
    ];
    for (name, sandbox, sealed, audit) in cases {
        let on = Layers {
            sandbox,
            sealed,
            audit,
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::Builder::new()
                    .prefix("rk-bench-k2k-")
                    .tempdir()
                    .expect("temp dir");
                let mut builder = RuntimeBuilder::new().development();
                if on.sandbox {
                    builder = builder.with_sandbox(KernelSandbox::with_policy(
                        ResourceLimits::new().max_messages_per_second(u32::MAX),
                        SandboxPolicy::restrictive()
                            .k2k_allow_list(&["sink", "pool_*"])
                            .deny_k2k_to(&["external_*"]),
                    ));
                }
                if on.sealed {
                    builder = builder.with_encryption(
                        MemoryEncryption::new(EncryptionConfig::new()).expect("encryption"),
                    );
                }
                if let Some(k2k_records) = on.audit {
                    builder = builder.with_audit_logging(AuditLogConfig {
                        k2k_records,
                        events: AuditConfig {
                            log_k2k_messages: true,
                            retention_days: 0,
                            ..AuditConfig::default()
                        },
                        ..AuditLogConfig::in_directory(dir.path())
                    });
                }
                k2k_messages(builder, 1, iters, &[0xA5u8; 256])
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = k2k, layers
}
criterion_main!(benches);
