//! Criterion benchmarks for RingKernel; run with `cargo bench -p ringkernel-benches`.
//! Results and the machine they were taken on are in `docs/benchmarks.md`.

use std::time::{Duration, Instant};

use ringkernel_core::runtime::KernelHandle;

/// Spins until `k` has processed `n` messages (panics after two minutes: a stalled
/// benchmark is a bug, not a measurement).
pub fn wait_processed(k: &KernelHandle, n: u64) {
    let t0 = Instant::now();
    while k.status().expect("status").messages_processed < n {
        assert!(t0.elapsed() < Duration::from_secs(120), "bench stalled");
        std::hint::spin_loop();
    }
}

/// Like [`wait_processed`], sleeping `every` between looks: on GPU backends each status
/// read is a device round trip under the control block's lock, and a spinning reader
/// would starve the kernel it waits for.
pub fn wait_processed_every(k: &KernelHandle, n: u64, every: Duration) {
    let t0 = Instant::now();
    while k.status().expect("status").messages_processed < n {
        assert!(t0.elapsed() < Duration::from_secs(120), "bench stalled");
        std::thread::sleep(every);
    }
}
