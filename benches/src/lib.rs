//! Criterion benchmarks for RingKernel; run with `cargo bench -p ringkernel-benches`.
//! Results and the machine they were taken on are in `docs/benchmarks.md`.
//!
//! The K2K benches (`k2k`, `sandbox`) share one harness, [`k2k_messages`], so that their
//! figures for the same case agree: the same runtime settings, the same senders and
//! the same way of waiting for delivery ([`Delivered`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ringkernel_core::runtime::{KernelHandle, LaunchOptions, Runtime, RuntimeBuilder};

/// How long a bench waits for delivery before it calls itself stalled (a stalled
/// benchmark is a bug, not a measurement).
const STALLED: Duration = Duration::from_secs(120);

/// Counts the messages a sink kernel's handler has seen and wakes a waiter once a
/// target is reached.
///
/// The waiter sleeps on a condition variable: it neither spins nor reads the sink's
/// control block (`KernelHandle::status` locks it and, when sealed, opens it, which
/// the sink needs after every batch). The handler pays one atomic add and one load per
/// message, and takes the lock only from the target on.
#[derive(Debug)]
pub struct Delivered {
    count: AtomicU64,
    target: AtomicU64,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Delivered {
    /// A counter at zero with no target.
    pub fn new() -> Arc<Self> {
        Arc::new(Delivered {
            count: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        })
    }

    /// Options for a sink kernel whose handler counts into this counter.
    pub fn sink(self: &Arc<Self>) -> LaunchOptions {
        let d = self.clone();
        LaunchOptions::new().handler(move |_, _| {
            d.seen();
            Ok(())
        })
    }

    /// Messages seen so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    fn seen(&self) {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.target.load(Ordering::SeqCst) {
            // Taking the lock orders this wake-up after the waiter's check.
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.wake.notify_all();
        }
    }

    /// Sleeps until the handler has seen `n` messages in all (panics after two
    /// minutes: a stalled benchmark is a bug, not a measurement).
    pub fn wait_for(&self, n: u64) {
        self.target.store(n, Ordering::SeqCst);
        let deadline = Instant::now() + STALLED;
        let mut g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        while self.count() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "bench stalled: {} of {n} messages delivered",
                self.count()
            );
            g = self
                .wake
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Sends `per_sender` messages of `payload` to a sink from each of `senders` kernels,
/// one host thread per sender, and returns the time from the first send until the
/// sink's handler has seen the last message (and, with an audit log, its records are
/// on disk).
///
/// The runtime comes from `builder` with a sink (`"sink"`, queue of 8,192) and the
/// senders (`"src0"`, `"src1"`, ...) launched on it; building, launching and shutting
/// down are outside the time. Senders are threads of their own even when there is
/// one, so that 1 -> 1 and 4 -> 1 differ only in their number.
pub fn k2k_messages(
    builder: RuntimeBuilder,
    senders: usize,
    per_sender: u64,
    payload: &[u8],
) -> Duration {
    let rt: Runtime = builder.build().expect("runtime");
    let delivered = Delivered::new();
    rt.launch("sink", delivered.sink().queue_capacity(8192))
        .expect("sink");
    let handles: Vec<KernelHandle> = (0..senders)
        .map(|i| {
            rt.launch(&format!("src{i}"), LaunchOptions::new())
                .expect("sender")
        })
        .collect();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for h in &handles {
            s.spawn(move || {
                for _ in 0..per_sender {
                    h.send_timeout("sink", "bench", payload, Duration::from_secs(60))
                        .expect("send");
                }
            });
        }
    });
    delivered.wait_for(per_sender * senders as u64);
    // An audit log's writer may still be behind the sink: the time includes writing
    // (and syncing) its records, so that the writer's cost is not left out.
    if let Some(log) = rt.audit_log() {
        log.flush().expect("audit flush");
    }
    let elapsed = t0.elapsed();
    rt.shutdown().expect("shutdown");
    elapsed
}

/// Sleeps `every` between looks at `k`'s control block until it has processed `n`
/// messages (panics after two minutes). For device kernels, whose program runs on
/// the device and has no host handler to count with: each status read is a device
/// round trip under the control block's lock, so a spinning reader would starve the
/// kernel it waits for.
pub fn wait_processed_every(k: &KernelHandle, n: u64, every: Duration) {
    let t0 = Instant::now();
    while k.status().expect("status").messages_processed < n {
        assert!(t0.elapsed() < STALLED, "bench stalled");
        std::thread::sleep(every);
    }
}
