//! Memory-encryption benchmarks, each beside its baseline in the same run:
//! - `aead/<size>`: raw provider seal/open in place per algorithm and provider (the
//!   open's ciphertext copy is made outside the timed routine), copy + seal (the
//!   like-for-like baseline of an API that keeps the caller's plaintext), our
//!   single-shot envelope on the same provider, and a memcpy of the same bytes;
//! - `stream_16MiB`: chunked STREAM sealing on a 1-thread and a 2-thread pool, into a
//!   fresh envelope and into a reused vector (`seal_stream_into`/`open_stream_into`);
//! - `kdf`: each KDF at its default parameters;
//! - `rotation`: rotate + re-seal of 1, 100 and 10,000 live control blocks.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder, RuntimeConfig};
use ringkernel_core::security::encryption::kdf;
use ringkernel_core::security::encryption::provider::{AeadProvider, AwsLc, RustCrypto};
use ringkernel_core::security::encryption::{
    Algorithm, ContextId, EncryptionConfig, KeyDerivation, MemoryEncryption, ProviderChoice,
    SequenceCheck,
};

const SIZES: [usize; 5] = [128, 4 << 10, 64 << 10, 1 << 20, 16 << 20];

fn choice_of(p: &dyn AeadProvider) -> ProviderChoice {
    if p.name() == "aws-lc-rs" {
        ProviderChoice::AwsLc
    } else {
        ProviderChoice::RustCrypto
    }
}

fn aead(c: &mut Criterion) {
    let providers: [&dyn AeadProvider; 2] = [&RustCrypto, &AwsLc];
    for size in SIZES {
        let mut g = c.benchmark_group(format!("aead/{size}"));
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            g.sample_size(10);
        }
        let data = vec![0x5Au8; size];
        g.bench_function("memcpy", |b| {
            let mut dst = vec![0u8; size];
            b.iter(|| {
                dst.copy_from_slice(black_box(&data));
                black_box(&dst);
            })
        });
        for alg in Algorithm::ALL {
            for p in providers.iter().filter(|p| p.supports(alg)) {
                let key = p.new_key(alg, &vec![7u8; alg.key_len()]).expect("key");
                let nonce = vec![1u8; alg.nonce_len()];
                let mut buf = data.clone();
                g.bench_function(
                    BenchmarkId::new(format!("raw_seal/{}", p.name()), alg.name()),
                    |b| {
                        b.iter(|| {
                            black_box(key.seal_in_place(&nonce, b"", &mut buf).expect("seal"))
                        })
                    },
                );
                // The fair baseline for an API that leaves the caller's plaintext intact:
                // copy into a fresh buffer, then seal in place.
                g.bench_function(
                    BenchmarkId::new(format!("raw_copy_seal/{}", p.name()), alg.name()),
                    |b| {
                        b.iter(|| {
                            let mut work = data.clone();
                            black_box(key.seal_in_place(&nonce, b"", &mut work).expect("seal"));
                            work
                        })
                    },
                );
                let mut ct = data.clone();
                let tag = key.seal_in_place(&nonce, b"", &mut ct).expect("seal");
                // Opening in place consumes the ciphertext: each iteration gets a copy
                // made in criterion's setup, outside the timed routine.
                let batch = if size >= 1 << 20 {
                    BatchSize::LargeInput
                } else {
                    BatchSize::SmallInput
                };
                g.bench_function(
                    BenchmarkId::new(format!("raw_open/{}", p.name()), alg.name()),
                    |b| {
                        b.iter_batched_ref(
                            || ct.clone(),
                            |work| {
                                key.open_in_place(&nonce, b"", work, &tag).expect("open");
                            },
                            batch,
                        )
                    },
                );
                let enc = MemoryEncryption::new(
                    EncryptionConfig::new()
                        .algorithm(alg)
                        .provider(choice_of(*p)),
                )
                .expect("encryption");
                let ctx = ContextId::new("bench", "region");
                g.bench_function(
                    BenchmarkId::new(format!("envelope_seal/{}", p.name()), alg.name()),
                    |b| b.iter(|| black_box(enc.seal_region(ctx, 1, &data, b"").expect("seal"))),
                );
                let sealed = enc.seal_region(ctx, 1, &data, b"").expect("seal");
                g.bench_function(
                    BenchmarkId::new(format!("envelope_open/{}", p.name()), alg.name()),
                    |b| {
                        b.iter(|| {
                            black_box(
                                enc.open_region(&sealed, ctx, SequenceCheck::Exact(1), b"")
                                    .expect("open"),
                            )
                        })
                    },
                );
            }
        }
        g.finish();
    }
}

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_16MiB");
    let size = 16 << 20;
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    let data = vec![0x33u8; size];
    let enc = MemoryEncryption::new(EncryptionConfig::new()).expect("encryption");
    let ctx = ContextId::new("bench", "bulk");
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        g.bench_function(format!("seal_{threads}_threads"), |b| {
            b.iter(|| {
                pool.install(|| black_box(enc.seal_stream(ctx, 1, &data, b"").expect("seal")))
            })
        });
        // Into a reused vector: no allocation, page fault or unmapping per call,
        // and no zero fill: every byte is written by the chunk workers.
        let mut out = Vec::new();
        g.bench_function(format!("seal_into_{threads}_threads"), |b| {
            b.iter(|| {
                pool.install(|| {
                    enc.seal_stream_into(ctx, 1, &data, b"", &mut out)
                        .expect("seal");
                    black_box(&out);
                })
            })
        });
        let sealed = enc.seal_stream(ctx, 1, &data, b"").expect("seal");
        let mut plain = Vec::new();
        g.bench_function(format!("open_into_{threads}_threads"), |b| {
            b.iter(|| {
                pool.install(|| {
                    enc.open_stream_into(&sealed, ctx, SequenceCheck::Any, b"", &mut plain)
                        .expect("open");
                    black_box(&plain);
                })
            })
        });
        g.bench_function(format!("open_{threads}_threads"), |b| {
            b.iter(|| {
                pool.install(|| {
                    black_box(
                        enc.open_stream(&sealed, ctx, SequenceCheck::Any, b"")
                            .expect("open"),
                    )
                })
            })
        });
    }
    g.bench_function("memcpy", |b| b.iter(|| black_box(data.clone())));
    g.finish();
}

fn kdfs(c: &mut Criterion) {
    let mut g = c.benchmark_group("kdf");
    g.sample_size(10);
    let salt = [9u8; 16];
    for kdf_kind in [
        KeyDerivation::argon2id(),
        KeyDerivation::pbkdf2_sha256(),
        KeyDerivation::HkdfSha256,
        KeyDerivation::HkdfSha384,
    ] {
        let secret = [0x42u8; 32];
        g.bench_function(kdf_kind.describe(), |b| {
            b.iter(|| black_box(kdf::derive_master(&kdf_kind, &secret, &salt).expect("kdf")))
        });
    }
    g.finish();
}

fn rotation(c: &mut Criterion) {
    let mut g = c.benchmark_group("rotation");
    g.sample_size(10);
    for kernels in [1usize, 100, 10_000] {
        let config = RuntimeConfig {
            // Idle kernels poll rarely, so 10,000 of them do not drown the measurement.
            poll_interval: Duration::from_secs(2),
            tick_interval: Duration::from_secs(3600),
            ..RuntimeConfig::default()
        };
        let enc = MemoryEncryption::new(EncryptionConfig::secure()).expect("encryption");
        // Development mode: no audit log or sandbox in the way of the measurement.
        let rt = RuntimeBuilder::new()
            .development()
            .config(config)
            .with_encryption(enc)
            .build()
            .expect("runtime");
        for i in 0..kernels {
            rt.launch(&format!("k{i}"), LaunchOptions::new())
                .expect("launch");
        }
        g.throughput(Throughput::Elements(kernels as u64));
        g.bench_function(format!("{kernels}_control_blocks"), |b| {
            b.iter(|| black_box(rt.rotate_keys().expect("rotate")))
        });
        rt.shutdown_timeout(Duration::from_secs(120))
            .expect("shutdown");
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = aead, stream, kdfs, rotation
}
criterion_main!(benches);
