//! GPU backends (wgpu, CUDA), each figure beside its baseline from the same run:
//! - `<backend>_stream/<size>`: STREAM seal and open of a device buffer with the GPU
//!   ChaCha20-Poly1305 (end to end: launch plus read-back of the sealed body), against
//!   the CPU ChaCha20-Poly1305 STREAM of the same bytes (`cpu_seal/<provider>`: the
//!   provider `ProviderChoice::Auto` uses, aws-lc-rs, on the default rayon pool). On
//!   wgpu both Poly1305 arithmetics of the WGSL kernels run in the same group:
//!   `gpu_seal/int64` (WGSL `u64`, where the adapter has `SHADER_INT64`) and
//!   `gpu_seal/emulated16` (32-bit only, products in 16-bit halves, the fallback);
//! - `<backend>_kernel`: persistent-kernel messages/s (bursts of 1,000 64-byte messages
//!   from the host) with and without a sealed control block (opened and re-sealed by
//!   the kernel on every round).
//!
//! Each backend's device is printed first. A backend without a device says so and is
//! skipped; the bench exits cleanly. On lavapipe (CI) the "GPU" is the CPU: those
//! figures are CPU figures.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringkernel_benches::wait_processed_every;
use ringkernel_core::backend::{ComputeBackend, DeviceCipher, DeviceProgram, KernelProgram};
use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder};
use ringkernel_core::security::encryption::{
    Algorithm, ContextId, EncryptionConfig, MemoryEncryption, ProviderChoice, SequenceCheck,
};
use ringkernel_cuda::CudaBackend;
use ringkernel_wgpu::{Poly1305Arithmetic, WgpuBackend};

const SIZES: [usize; 3] = [64 << 10, 1 << 20, 16 << 20];

/// Messages per measured iteration: a burst, as a busy kernel sees them (one message
/// per iteration would measure the latency of a round instead of throughput).
const BURST: u64 = 1000;

fn wgpu() -> Option<WgpuBackend> {
    match WgpuBackend::new() {
        Ok(b) => {
            println!("wgpu bench adapter: {:?}", b.adapter());
            Some(b)
        }
        Err(e) => {
            println!("wgpu bench SKIPPED: {e}");
            None
        }
    }
}

/// One wgpu backend per Poly1305 arithmetic the adapter can run, labelled for the
/// bench ids (`gpu_seal/int64`, `gpu_seal/emulated16`).
fn wgpu_per_arithmetic() -> Vec<(&'static str, WgpuBackend)> {
    let mut backends = Vec::new();
    for (label, arithmetic) in [
        ("int64", Poly1305Arithmetic::Int64),
        ("emulated16", Poly1305Arithmetic::Emulated16),
    ] {
        match WgpuBackend::with_poly1305(arithmetic) {
            Ok(b) => backends.push((label, b)),
            Err(e) => println!("wgpu bench: no {label} Poly1305 here: {e}"),
        }
    }
    backends
}

fn cuda() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(b) => {
            println!("cuda bench device: {:?}", b.device());
            Some(b)
        }
        Err(e) => {
            println!("cuda bench SKIPPED: {e}");
            None
        }
    }
}

/// The CPU side's provider choice: the default, `Auto`.
const CPU_PROVIDER: ProviderChoice = ProviderChoice::Auto;

fn chacha(seal_control: bool) -> MemoryEncryption {
    MemoryEncryption::new(
        EncryptionConfig::secure()
            .algorithm(Algorithm::ChaCha20Poly1305)
            .provider(CPU_PROVIDER)
            .encrypt_control_blocks(seal_control),
    )
    .expect("encryption")
}

/// The provider that actually seals and opens the CPU side's chunks (`Auto` picks
/// aws-lc-rs for ChaCha20-Poly1305), named in the CPU cases' ids.
fn cpu_provider_name() -> &'static str {
    CPU_PROVIDER
        .provider_for(Algorithm::ChaCha20Poly1305)
        .name()
}

/// STREAM on each of `gpus` (label, backend), beside the CPU, in one group per size. An
/// empty label gives the ids `gpu_seal` and `gpu_open`; otherwise `gpu_seal/<label>`.
fn stream<B: DeviceCipher + ComputeBackend>(c: &mut Criterion, name: &str, gpus: &[(&str, B)]) {
    let enc = chacha(true);
    let ctx = ContextId::new("bench", "bulk");
    for size in SIZES {
        let mut g = c.benchmark_group(format!("{name}_stream/{size}"));
        g.throughput(Throughput::Bytes(size as u64));
        g.sample_size(10);
        let data = vec![0x5Au8; size];
        let cpu = cpu_provider_name();
        g.bench_function(format!("cpu_seal/{cpu}"), |b| {
            b.iter(|| black_box(enc.seal_stream(ctx, 0, &data, b"").expect("seal")))
        });
        let sealed = enc.seal_stream(ctx, 0, &data, b"").expect("seal");
        g.bench_function(format!("cpu_open/{cpu}"), |b| {
            b.iter(|| {
                black_box(
                    enc.open_stream(&sealed, ctx, SequenceCheck::Any, b"")
                        .expect("open"),
                )
            })
        });
        for (label, gpu) in gpus {
            let id = |op: &str| match label {
                &"" => op.to_owned(),
                _ => format!("{op}/{label}"),
            };
            let buf = gpu.allocate(size as u64).expect("buffer").id;
            gpu.write(buf, 0, &data).expect("write");
            g.bench_function(id("gpu_seal"), |b| {
                b.iter(|| {
                    black_box(
                        gpu.seal_buffer(&enc, ctx, 0, buf, size as u64)
                            .expect("seal"),
                    )
                })
            });
            g.bench_function(id("gpu_open"), |b| {
                b.iter(|| {
                    black_box(
                        gpu.open_into_buffer(&enc, &sealed, ctx, SequenceCheck::Any, buf)
                            .expect("open"),
                    )
                })
            });
            gpu.free(buf).expect("free");
        }
        g.finish();
    }
}

fn kernel<B: ComputeBackend>(c: &mut Criterion, name: &str, make: impl Fn() -> B) {
    let mut g = c.benchmark_group(format!("{name}_kernel"));
    g.throughput(Throughput::Elements(BURST));
    g.sample_size(10);
    for sealed in [false, true] {
        let case = if sealed {
            "sealed_control_block"
        } else {
            "plain_control_block"
        };
        g.bench_function(case, |b| {
            b.iter_custom(|iters| {
                let rt = RuntimeBuilder::new()
                    .development()
                    .with_backend(make())
                    .with_encryption(chacha(sealed))
                    .build()
                    .expect("runtime");
                let k = rt
                    .launch(
                        "gpu",
                        LaunchOptions::new()
                            .queue_capacity(8192)
                            .program(KernelProgram::Device(DeviceProgram::checksum())),
                    )
                    .expect("launch");
                let t0 = Instant::now();
                for i in 0..iters {
                    for _ in 0..BURST {
                        rt.send_timeout("gpu", "bench", &[0xA5; 64], Duration::from_secs(60))
                            .expect("send");
                    }
                    wait_processed_every(&k, (i + 1) * BURST, Duration::from_millis(1));
                }
                let elapsed = t0.elapsed();
                rt.shutdown().expect("shutdown");
                elapsed
            })
        });
    }
    g.finish();
}

fn gpu_stream(c: &mut Criterion) {
    if let Some(gpu) = wgpu() {
        println!("wgpu bench default Poly1305: {:?}", gpu.poly1305());
        drop(gpu);
        stream(c, "wgpu", &wgpu_per_arithmetic());
    }
    if let Some(gpu) = cuda() {
        stream(c, "cuda", &[("", gpu)]);
    }
}

fn gpu_kernel(c: &mut Criterion) {
    if wgpu().is_some() {
        kernel(c, "wgpu", || WgpuBackend::new().expect("backend"));
    }
    if cuda().is_some() {
        kernel(c, "cuda", || CudaBackend::new(0).expect("backend"));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = gpu_stream, gpu_kernel
}
criterion_main!(benches);
