//! K2K messages/s on the CPU backend: 1 -> 1 and 4 -> 1 senders, 64 B and 4 KiB
//! payloads. This is the baseline the security layers are measured against; the
//! `memcpy` group copies the same bytes per message as a floor in the same run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringkernel_benches::wait_processed;
use ringkernel_core::runtime::{KernelHandle, LaunchOptions, RuntimeBuilder};

fn k2k(c: &mut Criterion) {
    let mut group = c.benchmark_group("k2k_cpu");
    for &size in &[64usize, 4096] {
        for &senders in &[1usize, 4] {
            group.throughput(Throughput::Elements(1));
            group.bench_function(format!("{senders}to1_{size}B"), |b| {
                b.iter_custom(|iters| {
                    let rt = RuntimeBuilder::new()
                        .development()
                        .build()
                        .expect("runtime");
                    let sink = rt
                        .launch("sink", LaunchOptions::new().queue_capacity(8192))
                        .expect("sink");
                    let handles: Vec<KernelHandle> = (0..senders)
                        .map(|i| {
                            rt.launch(&format!("src{i}"), LaunchOptions::new())
                                .expect("sender")
                        })
                        .collect();
                    let payload = vec![0xA5u8; size];
                    let per = iters.div_ceil(senders as u64);
                    let t0 = Instant::now();
                    std::thread::scope(|s| {
                        for h in &handles {
                            let p = &payload;
                            s.spawn(move || {
                                for _ in 0..per {
                                    h.send_timeout("sink", "bench", p, Duration::from_secs(60))
                                        .expect("send");
                                }
                            });
                        }
                    });
                    wait_processed(&sink, per * senders as u64);
                    let elapsed = t0.elapsed();
                    rt.shutdown().expect("shutdown");
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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = k2k
}
criterion_main!(benches);
