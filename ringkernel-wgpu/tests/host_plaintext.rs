//! No plaintext left on the host: payloads a device kernel receives pass through the
//! driver's staging queue and the input ring's host-side writes; when that memory is
//! freed it must hold none of them.
//!
//! The test binary's global allocator scans every heap block as it is freed (and the old
//! block of every reallocation) for a marker that only the test's payloads contain.
//! Freed memory is not overwritten by the allocator, so a block freed with the marker
//! in it is plaintext left behind for whoever reads the heap next (a core dump, a swap
//! page, a later allocation). The test's own copies of the payload are zeroized by the
//! test, so every hit is the runtime's or its dependencies'.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ringkernel_core::backend::{DeviceProgram, KernelProgram};
use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder};
use ringkernel_core::security::encryption::{Algorithm, EncryptionConfig, MemoryEncryption};
use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};
use zeroize::Zeroize;

/// 16 bytes found only in the test's payloads.
const MARKER: &[u8; 16] = b"\xa7RKPLAIN\x19\xe3\x5c\x01SEC\x7f";

struct Scanning;

static ARMED: AtomicBool = AtomicBool::new(false);
static HITS: AtomicUsize = AtomicUsize::new(0);
/// The size of the last few offending blocks (no allocation inside the allocator).
static HIT_SIZES: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

fn contains_marker(bytes: &[u8]) -> bool {
    bytes.windows(MARKER.len()).any(|w| w == MARKER)
}

// SAFETY: every call is forwarded to the system allocator with the same arguments; the
// scan only reads the `layout.size()` bytes of a block the caller is giving back, which
// are valid and not yet released.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) && layout.size() >= MARKER.len() {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes until the call below.
            let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if contains_marker(bytes) {
                let n = HITS.fetch_add(1, Ordering::Relaxed);
                HIT_SIZES[n % HIT_SIZES.len()].store(layout.size(), Ordering::Relaxed);
            }
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Scanning = Scanning;

fn payload(i: usize) -> zeroize::Zeroizing<Vec<u8>> {
    let mut p = zeroize::Zeroizing::new(Vec::with_capacity(1024));
    for _ in 0..(1 + i % 40) {
        p.extend_from_slice(MARKER);
    }
    p.extend_from_slice(&(i as u64).to_le_bytes());
    p
}

#[test]
fn device_kernel_payloads_leave_no_plaintext_in_freed_host_memory() {
    let Some(gpu) = common::backend() else { return };
    let state = tempfile::tempdir().unwrap();
    let rt = RuntimeBuilder::new()
        .production()
        .with_backend(gpu)
        .with_encryption(
            MemoryEncryption::new(
                EncryptionConfig::secure().algorithm(Algorithm::ChaCha20Poly1305),
            )
            .unwrap(),
        )
        .with_sandbox(KernelSandbox::with_policy(
            ResourceLimits::new(),
            SandboxPolicy::restrictive().k2k_allow_list(&["sink"]),
        ))
        .with_audit_logging(
            ringkernel_core::security::audit::AuditLogConfig::in_directory(state.path()),
        )
        .build()
        .unwrap();
    let sink = rt
        .launch("sink", LaunchOptions::new().queue_capacity(4096))
        .unwrap();
    let gpu = rt
        .launch(
            "gpu",
            LaunchOptions::new()
                .queue_capacity(4096)
                .program(KernelProgram::Device(
                    DeviceProgram::checksum()
                        .forward_to("sink")
                        .unwrap()
                        .max_batch(7),
                )),
        )
        .unwrap();

    const N: usize = 300;
    ARMED.store(true, Ordering::SeqCst);
    for i in 0..N {
        let p = payload(i);
        rt.send_timeout("gpu", "data", &p, Duration::from_secs(20))
            .unwrap();
    }
    let t0 = Instant::now();
    while sink.status().unwrap().messages_processed < N as u64 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "checksums did not arrive"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(gpu.status().unwrap().messages_processed, N as u64);
    let after_delivery = HITS.load(Ordering::SeqCst);
    rt.shutdown().unwrap();
    drop(rt);
    ARMED.store(false, Ordering::SeqCst);
    let after_shutdown = HITS.load(Ordering::SeqCst);
    let sizes: Vec<usize> = HIT_SIZES
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .collect();
    assert_eq!(
        (after_delivery, after_shutdown),
        (0, 0),
        "freed host blocks held payload plaintext (last sizes {sizes:?})"
    );
    // The scan itself works: a plain Vec with the marker is caught when freed.
    ARMED.store(true, Ordering::SeqCst);
    let mut leak = payload(0).to_vec();
    drop(std::hint::black_box(leak.clone()));
    ARMED.store(false, Ordering::SeqCst);
    assert!(
        HITS.load(Ordering::SeqCst) > after_shutdown,
        "the scanner sees freed plaintext"
    );
    leak.zeroize();
}
