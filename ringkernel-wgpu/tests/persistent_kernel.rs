//! Persistent kernels on a real adapter, under every security layer: control blocks
//! opened and re-sealed by the WGSL kernel itself (device-direction nonces, exact
//! sequence numbers), counters exact across rotations, device route capabilities
//! turning refused device-side sends into `UnauthorizedK2K` violations.
//!
//! `Dumpable` shares the real backend with the test, which plays the attacker who can
//! read and write raw device memory around the runtime.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ringkernel_core::backend::{
    Allocation, BackendInfo, BufferId, ComputeBackend, DeviceProgram, KernelLaunch, KernelProgram,
    KernelWorker,
};
use ringkernel_core::runtime::{KernelState, LaunchOptions, Runtime, RuntimeBuilder};
use ringkernel_core::security::encryption::{Algorithm, EncryptionConfig, KeyId, MemoryEncryption};
use ringkernel_core::security::sandbox::{
    KernelSandbox, ResourceLimits, SandboxPolicy, ViolationType,
};
use ringkernel_core::{Error, Result};
use ringkernel_wgpu::WgpuBackend;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Dumpable(Arc<WgpuBackend>, Arc<Mutex<Vec<(BufferId, u64)>>>);

impl Dumpable {
    fn raw(&self, buf: BufferId, len: u64) -> Vec<u8> {
        let mut out = vec![0u8; len as usize];
        self.0.read(buf, 0, &mut out).unwrap();
        out
    }
    /// Live buffers of exactly `len` bytes (control blocks are the only such ones here).
    fn buffers_of(&self, len: u64) -> Vec<BufferId> {
        self.1
            .lock()
            .iter()
            .filter(|(_, l)| *l == len)
            .map(|(b, _)| *b)
            .collect()
    }
}

impl ComputeBackend for Dumpable {
    fn info(&self) -> BackendInfo {
        self.0.info()
    }
    fn allocation_size(&self, len: u64) -> Result<u64> {
        self.0.allocation_size(len)
    }
    fn allocate(&self, len: u64) -> Result<Allocation> {
        let a = self.0.allocate(len)?;
        self.1.lock().push((a.id, a.len));
        Ok(a)
    }
    fn write(&self, b: BufferId, o: u64, d: &[u8]) -> Result<()> {
        self.0.write(b, o, d)
    }
    fn read(&self, b: BufferId, o: u64, out: &mut [u8]) -> Result<()> {
        self.0.read(b, o, out)
    }
    fn zero(&self, b: BufferId) -> Result<()> {
        self.0.zero(b)
    }
    fn free(&self, b: BufferId) -> Result<()> {
        self.1.lock().retain(|(id, _)| *id != b);
        self.0.free(b)
    }
    fn allocated_bytes(&self) -> u64 {
        self.0.allocated_bytes()
    }
    fn launch(&self, l: KernelLaunch) -> Result<Box<dyn KernelWorker>> {
        self.0.launch(l)
    }
}

fn dumpable() -> Option<Dumpable> {
    common::backend().map(|b| Dumpable(Arc::new(b), Default::default()))
}

fn audit_dir() -> ringkernel_core::security::audit::AuditConfig {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rk-wgpu-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    ringkernel_core::security::audit::AuditConfig::in_directory(dir)
}

/// What the sink kernel received: (source, payload) per message.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x01000193)
    })
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A runtime on the GPU with `enc`, a sandbox with `policy`, and a host-program kernel
/// "sink" collecting what it receives.
fn runtime(dev: &Dumpable, enc: MemoryEncryption, policy: SandboxPolicy) -> (Runtime, Received) {
    let rt = RuntimeBuilder::new()
        .production()
        .with_backend(dev.clone())
        .with_encryption(enc)
        .with_sandbox(KernelSandbox::with_policy(ResourceLimits::new(), policy))
        .with_audit_logging(audit_dir())
        .build()
        .unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    rt.launch(
        "sink",
        LaunchOptions::new()
            .queue_capacity(4096)
            .handler(move |_, m| {
                sink.lock().push((m.source.to_string(), m.payload.clone()));
                Ok(())
            }),
    )
    .unwrap();
    (rt, got)
}

fn checksum_kernel(rt: &Runtime, id: &str, peer: &str) -> ringkernel_core::runtime::KernelHandle {
    rt.launch(
        id,
        LaunchOptions::new()
            .queue_capacity(4096)
            .program(KernelProgram::Device(
                DeviceProgram::checksum().forward_to(peer).unwrap(),
            )),
    )
    .unwrap()
}

#[test]
fn device_kernel_counts_exactly_across_three_rotations_with_a_sealed_control_block() {
    let Some(dev) = dumpable() else { return };
    let enc = MemoryEncryption::new(
        EncryptionConfig::secure()
            .algorithm(Algorithm::ChaCha20Poly1305)
            .auto_rotate(Duration::from_millis(300))
            .grace_period(Duration::from_millis(200)),
    )
    .unwrap();
    let (rt, got) = runtime(
        &dev,
        enc.clone(),
        SandboxPolicy::restrictive().k2k_allow_list(&["sink"]),
    );
    let k = checksum_kernel(&rt, "gpu", "sink");
    let first = enc.current_key_id().unwrap();
    const N: usize = 600;
    let payloads: Vec<Vec<u8>> = (0..N).map(|i| vec![i as u8; i % 97]).collect();
    for (i, p) in payloads.iter().enumerate() {
        rt.send_timeout("gpu", "data", p, WAIT).unwrap();
        if i % 200 == 199 {
            rt.rotate_keys().unwrap();
        }
    }
    wait_until("all checksums", || got.lock().len() == N);
    // Long enough for timed rotation to fire and re-seal through the kernel path too.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(700) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = k.status().unwrap();
    assert_eq!(st.state, KernelState::Active);
    assert_eq!(
        (st.messages_processed, st.messages_sent, st.error_count),
        (N as u64, N as u64, 0)
    );
    let mut want: Vec<u32> = payloads.iter().map(|p| fnv1a(p)).collect();
    let mut have: Vec<u32> = got
        .lock()
        .iter()
        .map(|(src, p)| {
            assert_eq!(src, "gpu");
            u32::from_le_bytes(p.as_slice().try_into().unwrap())
        })
        .collect();
    want.sort_unstable();
    have.sort_unstable();
    assert_eq!(have, want, "checksums computed on the device");
    let stats = enc.stats();
    assert!(
        stats.rotations >= 4,
        "3 explicit + timed: {}",
        stats.rotations
    );
    assert_eq!(stats.failures, 0);
    assert!(enc.current_key_id().unwrap() > first);

    // The device buffer holds an envelope sealed by the device under the current key.
    rt.tick();
    let len = ringkernel_core::security::encryption::device::device_sealed_len(128) as u64;
    let cbs = dev.buffers_of(len);
    assert_eq!(cbs.len(), 2, "control blocks of gpu and sink");
    let device_sealed = cbs
        .iter()
        .map(|b| dev.raw(*b, len))
        .filter(|raw| raw[40] == 1) // nonce byte 0: direction (1 = device)
        .collect::<Vec<_>>();
    assert_eq!(
        device_sealed.len(),
        1,
        "the device kernel's block was sealed by the device"
    );
    let raw = &device_sealed[0];
    assert_eq!(&raw[..4], b"RKSE");
    assert_eq!(
        KeyId(u32::from_le_bytes(raw[8..12].try_into().unwrap())),
        enc.current_key_id().unwrap()
    );
    assert!(
        raw[52..180].windows(8).all(|w| w != [0u8; 8]),
        "ciphertext, not a plain block"
    );

    // A replayed older block (captured now, restored after the next round) is refused.
    let buf = cbs.into_iter().find(|b| dev.raw(*b, len)[40] == 1).unwrap();
    let old = dev.raw(buf, len);
    rt.send_timeout("gpu", "data", b"one more", WAIT).unwrap();
    wait_until("one more", || got.lock().len() == N + 1);
    dev.0.write(buf, 0, &old).unwrap();
    assert!(matches!(k.status(), Err(Error::Replay { .. })));
    rt.send_timeout("gpu", "data", b"after replay", WAIT)
        .unwrap();
    wait_until("kernel stopped on the replayed block", || {
        k.status().is_ok_and(|s| s.state == KernelState::Terminated) || k.status().is_err()
    });
    assert_eq!(
        got.lock().len(),
        N + 1,
        "nothing processed from a replayed block"
    );
    // Shutting down still frees everything; the replayed block is reported, not opened.
    let r = rt.shutdown();
    assert!(matches!(r, Ok(_) | Err(Error::Replay { .. })), "{r:?}");
    assert_eq!(dev.0.allocated_bytes(), 0, "every device buffer freed");
}

#[test]
fn a_device_side_send_to_a_denied_peer_is_refused_and_reported() {
    let Some(dev) = dumpable() else { return };
    let enc =
        MemoryEncryption::new(EncryptionConfig::secure().algorithm(Algorithm::ChaCha20Poly1305))
            .unwrap();
    let (rt, got) = runtime(
        &dev,
        enc,
        SandboxPolicy::restrictive().k2k_allow_list(&["other*"]),
    );
    let k = checksum_kernel(&rt, "gpu", "sink");
    for i in 0..10u8 {
        rt.send_timeout("gpu", "data", &[i; 5], WAIT).unwrap();
    }
    wait_until("processed", || k.status().unwrap().messages_processed == 10);
    let st = k.status().unwrap();
    assert_eq!(st.messages_sent, 0, "the device sent nothing");
    assert!(got.lock().is_empty(), "the denied peer received nothing");
    let violations = rt.sandbox().unwrap().check_violations("gpu").unwrap();
    assert_eq!(violations.len(), 10, "{violations:?}");
    for v in &violations {
        assert!(
            matches!(&v.violation_type, ViolationType::UnauthorizedK2K { target } if target == "sink")
        );
        assert!(v.context.contains("device route table"), "{}", v.context);
    }
    rt.shutdown().unwrap();
}

#[test]
fn aes_gcm_runtimes_seal_gpu_control_blocks_with_chacha20_poly1305_and_say_so() {
    let Some(dev) = dumpable() else { return };
    let enc =
        MemoryEncryption::new(EncryptionConfig::secure().algorithm(Algorithm::Aes256Gcm)).unwrap();
    let (rt, got) = runtime(
        &dev,
        enc,
        SandboxPolicy::restrictive().k2k_allow_list(&["sink"]),
    );
    assert!(
        rt.security_notes()
            .iter()
            .any(|n| n.contains("ChaCha20-Poly1305") && n.contains("AES-256-GCM")),
        "{:?}",
        rt.security_notes()
    );
    let k = checksum_kernel(&rt, "gpu", "sink");
    for i in 0..50u8 {
        rt.send_timeout("gpu", "data", &[i; 33], WAIT).unwrap();
    }
    wait_until("forwarded", || got.lock().len() == 50);
    rt.rotate_keys().unwrap();
    rt.send_timeout("gpu", "data", b"x", WAIT).unwrap();
    wait_until("after rotation", || got.lock().len() == 51);
    assert_eq!(k.status().unwrap().messages_processed, 51);
    let report = k.terminate();
    assert!(report.is_ok());
    let st = k.wait(WAIT).unwrap();
    assert_eq!(st.state, KernelState::Terminated);
    rt.shutdown().unwrap();
}

#[test]
fn device_programs_are_refused_by_the_cpu_backend() {
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let r = rt.launch(
        "gpu",
        LaunchOptions::new().program(KernelProgram::Device(DeviceProgram::checksum())),
    );
    assert!(matches!(r, Err(Error::Unsupported { .. })), "{r:?}");
}
