//! Sandbox benchmarks:
//! - `sandbox_decision`: the send path's route decision (one bit of the route table)
//!   and the uncached policy decision, with 10, 1,000 and 10,000 rules, allowed and
//!   denied targets;
//! - `k2k_sandbox`: messages/s from one kernel to another with a 10,000-rule
//!   restrictive sandbox against no sandbox, in the same run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringkernel_benches::k2k_messages;
use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder};
use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};

/// `n` rules: allow 90% exact ids and 10% wildcards, deny one wildcard family.
fn policy(n: usize) -> SandboxPolicy {
    let mut allow: Vec<String> = (0..n * 9 / 10).map(|i| format!("worker_{i}")).collect();
    allow.extend((0..n / 10).map(|i| format!("pool_{i}_*")));
    allow.push("sink".into());
    SandboxPolicy::restrictive()
        .k2k_allow_list(&allow)
        .deny_k2k_to(&["external_*"])
}

fn decision(c: &mut Criterion) {
    let mut g = c.benchmark_group("sandbox_decision");
    for rules in [10usize, 1_000, 10_000] {
        let sb = KernelSandbox::with_policy(ResourceLimits::new(), policy(rules));
        let rt = RuntimeBuilder::new()
            .development()
            .with_sandbox(sb.clone())
            .build()
            .expect("runtime");
        let _src = rt.launch("src", LaunchOptions::new()).expect("launch");
        let _ok = rt.launch("pool_0_x", LaunchOptions::new()).expect("launch");
        let _no = rt
            .launch("external_x", LaunchOptions::new())
            .expect("launch");
        let table = sb.route_table();
        let slot = |id: &str| {
            (0..table.slots())
                .find(|&s| table.kernel(s).is_some_and(|k| k.as_str() == id))
                .expect("slot")
        };
        let (s, allowed, denied) = (slot("src"), slot("pool_0_x"), slot("external_x"));
        assert!(table.permits(s, allowed) && !table.permits(s, denied));
        g.bench_function(format!("route_table/{rules}_rules/allowed"), |b| {
            b.iter(|| black_box(table.permits(black_box(s), black_box(allowed))))
        });
        g.bench_function(format!("route_table/{rules}_rules/denied"), |b| {
            b.iter(|| black_box(table.permits(black_box(s), black_box(denied))))
        });
        let compiled = policy(rules).compile().expect("compile");
        g.bench_function(
            format!("policy_uncached/{rules}_rules/allowed_exact"),
            |b| b.iter(|| black_box(compiled.allows_route(black_box("worker_7")))),
        );
        g.bench_function(
            format!("policy_uncached/{rules}_rules/allowed_wildcard"),
            |b| b.iter(|| black_box(compiled.allows_route(black_box("pool_0_x")))),
        );
        g.bench_function(format!("policy_uncached/{rules}_rules/denied"), |b| {
            b.iter(|| black_box(compiled.allows_route(black_box("external_x"))))
        });
        rt.shutdown().expect("shutdown");
    }
    g.finish();
}

fn k2k(c: &mut Criterion) {
    // The same harness and case as `k2k_cpu/1to1_64B` in the k2k bench, so that
    // `sandbox_off` here and that figure measure the same thing.
    let mut g = c.benchmark_group("k2k_sandbox");
    g.throughput(Throughput::Elements(1));
    for on in [false, true] {
        g.bench_function(
            if on {
                "sandbox_on_10000_rules"
            } else {
                "sandbox_off"
            },
            |b| {
                b.iter_custom(|iters| {
                    let mut builder = RuntimeBuilder::new().development();
                    if on {
                        builder = builder.with_sandbox(KernelSandbox::with_policy(
                            ResourceLimits::new()
                                .max_messages_per_second(u32::MAX)
                                .max_k2k_connections(16),
                            policy(10_000),
                        ));
                    }
                    k2k_messages(builder, 1, iters, &[0xA5u8; 64])
                })
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = decision, k2k
}
criterion_main!(benches);
