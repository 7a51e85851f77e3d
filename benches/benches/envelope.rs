//! The envelope's small-record hot path and its in-place bulk API, each beside its
//! baseline in the same run (AES-256-GCM, aws-lc-rs, one core):
//! - `envelope_128B`: seal+open of a 128-byte control block through each API form,
//!   against raw aws-lc-rs seal+open in place on one buffer (no copy, no clone);
//! - `envelope_16MiB`: seal and open of 16 MiB in the caller's buffer, against raw
//!   aws-lc-rs in place, and the copying `seal_region`/`open_region` for contrast;
//! - `k2k_sealed_256B`: K2K 1 -> 1 with sealed payloads only, against the same runtime
//!   with plain queues (the sink is waited for with a sleeping poll, not a spin).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringkernel_benches::wait_processed_every;
use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder};
use ringkernel_core::security::encryption::provider::{AeadProvider, AwsLc};
use ringkernel_core::security::encryption::{
    Algorithm, ContextId, EncryptionConfig, MemoryEncryption, ProviderChoice, SequenceCheck,
};

fn encryption() -> MemoryEncryption {
    MemoryEncryption::new(
        EncryptionConfig::new()
            .algorithm(Algorithm::Aes256Gcm)
            .provider(ProviderChoice::AwsLc),
    )
    .expect("encryption")
}

fn small(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope_128B");
    let size = 128;
    g.throughput(Throughput::Bytes(size as u64));
    let data = vec![0x5Au8; size];
    let alg = Algorithm::Aes256Gcm;
    let key = AwsLc.new_key(alg, &[7u8; 32]).expect("key");
    let nonce = [1u8; 12];
    let mut buf = data.clone();
    g.bench_function("raw_seal_open_in_place", |b| {
        b.iter(|| {
            let tag = key
                .seal_in_place(&nonce, black_box(&[0u8; 52]), &mut buf)
                .expect("seal");
            key.open_in_place(&nonce, black_box(&[0u8; 52]), &mut buf, &tag)
                .expect("open");
            black_box(&buf);
        })
    });
    let enc = encryption();
    let ctx = ContextId::new("bench", "control");
    g.bench_function("seal_region+open_region", |b| {
        b.iter(|| {
            let sealed = enc.seal_region(ctx, 1, &data, b"").expect("seal");
            black_box(
                enc.open_region(&sealed, ctx, SequenceCheck::Exact(1), b"")
                    .expect("open"),
            )
        })
    });
    let (mut sealed, mut plain) = (Vec::new(), Vec::new());
    g.bench_function("seal_region_into+open_region_into", |b| {
        b.iter(|| {
            enc.seal_region_into(ctx, 1, &data, b"", &mut sealed)
                .expect("seal");
            enc.open_region_into(&sealed, ctx, SequenceCheck::Exact(1), b"", &mut plain)
                .expect("open");
            black_box(&plain);
        })
    });
    let mut envelope = vec![0u8; enc.sealed_len(size)];
    let at = enc.plaintext_offset();
    g.bench_function("seal_in_place+open_in_place", |b| {
        b.iter(|| {
            envelope[at..at + size].copy_from_slice(&data);
            enc.seal_in_place(ctx, 1, &mut envelope, b"").expect("seal");
            black_box(
                enc.open_in_place(&mut envelope, ctx, SequenceCheck::Exact(1), b"")
                    .expect("open"),
            );
        })
    });
    g.finish();
}

fn bulk(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope_16MiB");
    let size = 16 << 20;
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    let data = vec![0x33u8; size];
    let key = AwsLc
        .new_key(Algorithm::Aes256Gcm, &[7u8; 32])
        .expect("key");
    let nonce = [1u8; 12];
    let mut raw = data.clone();
    g.bench_function("raw_seal_in_place", |b| {
        b.iter(|| black_box(key.seal_in_place(&nonce, b"", &mut raw).expect("seal")))
    });
    let tag = key.seal_in_place(&nonce, b"", &mut raw).expect("seal");
    g.bench_function("raw_open_in_place", |b| {
        // A fresh copy of the ciphertext per iteration, made outside the timing, so
        // every open succeeds (as open_in_place's below do).
        b.iter_batched_ref(
            || raw.clone(),
            |ct| key.open_in_place(&nonce, b"", ct, &tag).expect("open"),
            criterion::BatchSize::LargeInput,
        )
    });
    let enc = encryption();
    let ctx = ContextId::new("bench", "bulk");
    let mut envelope = vec![0u8; enc.sealed_len(size)];
    let at = enc.plaintext_offset();
    envelope[at..at + size].copy_from_slice(&data);
    g.bench_function("seal_in_place", |b| {
        b.iter(|| enc.seal_in_place(ctx, 1, &mut envelope, b"").expect("seal"))
    });
    enc.seal_in_place(ctx, 1, &mut envelope, b"").expect("seal");
    let sealed = envelope.clone();
    g.bench_function("open_in_place", |b| {
        b.iter_batched_ref(
            || sealed.clone(),
            |env| {
                black_box(
                    enc.open_in_place(env, ctx, SequenceCheck::Exact(1), b"")
                        .expect("open")
                        .len(),
                )
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("seal_region", |b| {
        b.iter(|| black_box(enc.seal_region(ctx, 1, &data, b"").expect("seal")))
    });
    g.finish();
}

fn k2k_sealed(c: &mut Criterion) {
    let mut g = c.benchmark_group("k2k_sealed_256B");
    g.throughput(Throughput::Elements(1));
    let payload = vec![0xA5u8; 256];
    for sealed in [false, true] {
        let name = if sealed { "sealed_payloads" } else { "plain" };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut builder = RuntimeBuilder::new().development();
                if sealed {
                    builder = builder.with_encryption(encryption());
                }
                let rt = builder.build().expect("runtime");
                let sink = rt
                    .launch("sink", LaunchOptions::new().queue_capacity(8192))
                    .expect("sink");
                let src = rt.launch("src", LaunchOptions::new()).expect("sender");
                let t0 = Instant::now();
                for _ in 0..iters {
                    src.send_timeout("sink", "bench", &payload, Duration::from_secs(60))
                        .expect("send");
                }
                wait_processed_every(&sink, iters, Duration::from_micros(200));
                let elapsed = t0.elapsed();
                rt.shutdown().expect("shutdown");
                elapsed
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = small, bulk, k2k_sealed
}
criterion_main!(benches);
