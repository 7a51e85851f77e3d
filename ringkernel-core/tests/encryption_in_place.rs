//! The caller-buffer envelope API: `seal_region_into`/`open_region_into` (reused
//! vectors) and `seal_in_place`/`open_in_place` (the caller's buffer laid out as the
//! envelope). Same format as `seal_region`, same refusals as `open_region`, and nothing
//! decrypted left behind when an open fails.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use ringkernel_core::Error;
use ringkernel_core::security::encryption::envelope::Header;
use ringkernel_core::security::encryption::{
    Algorithm, ContextId, EncryptionConfig, MemoryEncryption, ProviderChoice, SequenceCheck,
};

const CHOICES: [ProviderChoice; 3] = [
    ProviderChoice::Auto,
    ProviderChoice::RustCrypto,
    ProviderChoice::AwsLc,
];

fn enc(alg: Algorithm, choice: ProviderChoice) -> MemoryEncryption {
    MemoryEncryption::new(EncryptionConfig::new().algorithm(alg).provider(choice)).unwrap()
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

/// A buffer laid out for `seal_in_place` with `plain` at the plaintext offset.
fn laid_out(e: &MemoryEncryption, plain: &[u8]) -> Vec<u8> {
    let mut buf = vec![0xEEu8; e.sealed_len(plain.len())];
    let at = e.plaintext_offset();
    buf[at..at + plain.len()].copy_from_slice(plain);
    buf
}

#[test]
fn every_form_opens_every_other_form() {
    let ctx = ContextId::new("k", "region");
    for alg in Algorithm::ALL {
        for choice in CHOICES {
            let e = enc(alg, choice);
            for len in [0usize, 1, 16, 128, 1500, 70_000] {
                let plain = data(len);
                let aad = b"route";
                let a = e.seal_region(ctx, 1, &plain, aad).unwrap();
                let mut b = Vec::new();
                e.seal_region_into(ctx, 1, &plain, aad, &mut b).unwrap();
                let mut c = laid_out(&e, &plain);
                e.seal_in_place(ctx, 1, &mut c, aad).unwrap();
                for sealed in [&a, &b, &c] {
                    assert_eq!(sealed.len(), e.sealed_len(len));
                    let h = Header::parse(sealed).unwrap();
                    assert_eq!(h.length, len as u64);
                    assert_eq!(h.sequence, 1);
                    assert_eq!(h.context, ctx);
                    let opened = e
                        .open_region(sealed, ctx, SequenceCheck::Exact(1), aad)
                        .unwrap();
                    assert_eq!(&*opened, &plain[..], "{alg} {choice:?} {len}");
                    let mut out = vec![9u8; 3];
                    e.open_region_into(sealed, ctx, SequenceCheck::Exact(1), aad, &mut out)
                        .unwrap();
                    assert_eq!(out, plain);
                    let mut copy = sealed.clone();
                    let p = e
                        .open_in_place(&mut copy, ctx, SequenceCheck::Exact(1), aad)
                        .unwrap();
                    assert_eq!(&p[..], &plain[..]);
                }
                // Same format: apart from the nonce (and what it changes), the headers agree.
                let (ha, hc) = (Header::parse(&a).unwrap(), Header::parse(&c).unwrap());
                assert_eq!(
                    (ha.algorithm, ha.kind, ha.epoch),
                    (hc.algorithm, hc.kind, hc.epoch)
                );
                assert_ne!(a, c, "{alg}: a nonce is never reused");
            }
        }
    }
}

#[test]
fn reused_vectors_hold_exactly_the_latest_result() {
    let e = enc(Algorithm::Aes256Gcm, ProviderChoice::Auto);
    let ctx = ContextId::new("k", "control");
    let (mut sealed, mut plain) = (Vec::new(), Vec::new());
    for (seq, len) in [(1u64, 1000usize), (2, 128), (3, 0), (4, 4096)] {
        let d = data(len);
        e.seal_region_into(ctx, seq, &d, b"", &mut sealed).unwrap();
        assert_eq!(sealed.len(), e.sealed_len(len));
        e.open_region_into(&sealed, ctx, SequenceCheck::Exact(seq), b"", &mut plain)
            .unwrap();
        assert_eq!(plain, d);
    }
}

#[test]
fn tampering_is_refused_and_nothing_decrypted_stays() {
    let ctx = ContextId::new("k", "region");
    for alg in Algorithm::ALL {
        let e = enc(alg, ProviderChoice::Auto);
        let plain = data(300);
        let mut good = laid_out(&e, &plain);
        e.seal_in_place(ctx, 5, &mut good, b"aad").unwrap();
        let at = e.plaintext_offset();
        // Every byte of the body and tag, and the header bytes that are not refused
        // before the AEAD (the nonce), flipped in turn.
        for i in (at - alg.nonce_len())..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            let err = e
                .open_in_place(&mut bad, ctx, SequenceCheck::Exact(5), b"aad")
                .unwrap_err();
            assert!(matches!(err, Error::Tampered), "{alg} byte {i}: {err:?}");
            assert!(
                bad[at..at + plain.len()].iter().all(|&b| b == 0),
                "{alg} byte {i}: the body is zeroed after a failed open"
            );
            let mut out = vec![1u8; 8];
            assert!(matches!(
                e.open_region_into(
                    &{
                        let mut b = good.clone();
                        b[i] ^= 0x01;
                        b
                    },
                    ctx,
                    SequenceCheck::Exact(5),
                    b"aad",
                    &mut out
                ),
                Err(Error::Tampered)
            ));
            assert!(out.is_empty());
        }
        // Other associated data: refused too.
        let mut bad = good.clone();
        assert!(matches!(
            e.open_in_place(&mut bad, ctx, SequenceCheck::Exact(5), b"aaX"),
            Err(Error::Tampered)
        ));
        // Truncated or extended: malformed, buffer untouched.
        let mut short = good[..good.len() - 1].to_vec();
        let before = short.clone();
        assert!(matches!(
            e.open_in_place(&mut short, ctx, SequenceCheck::Exact(5), b"aad"),
            Err(Error::MalformedEnvelope(_))
        ));
        assert_eq!(short, before);
    }
}

#[test]
fn wrong_key_is_refused_and_zeroed() {
    let ctx = ContextId::new("k", "region");
    let a = enc(Algorithm::ChaCha20Poly1305, ProviderChoice::Auto);
    let b = enc(Algorithm::ChaCha20Poly1305, ProviderChoice::Auto);
    let plain = data(128);
    let mut buf = laid_out(&a, &plain);
    a.seal_in_place(ctx, 1, &mut buf, b"").unwrap();
    // Same epoch number, another instance's key.
    let err = b
        .open_in_place(&mut buf, ctx, SequenceCheck::Exact(1), b"")
        .unwrap_err();
    assert!(matches!(err, Error::Tampered), "{err:?}");
    let at = b.plaintext_offset();
    assert!(buf[at..at + plain.len()].iter().all(|&x| x == 0));
    assert_eq!(b.stats().failures, 1);
}

#[test]
fn moved_or_replayed_envelopes_are_refused_untouched() {
    let ctx = ContextId::new("k", "region");
    let e = enc(Algorithm::Aes128Gcm, ProviderChoice::Auto);
    let mut buf = laid_out(&e, &data(64));
    e.seal_in_place(ctx, 7, &mut buf, b"").unwrap();
    let sealed = buf.clone();
    assert!(matches!(
        e.open_in_place(
            &mut buf,
            ContextId::new("k", "other"),
            SequenceCheck::Exact(7),
            b""
        ),
        Err(Error::WrongContext)
    ));
    assert!(matches!(
        e.open_in_place(
            &mut buf,
            ContextId::new("other", "region"),
            SequenceCheck::Any,
            b""
        ),
        Err(Error::WrongContext)
    ));
    assert!(matches!(
        e.open_in_place(&mut buf, ctx, SequenceCheck::Exact(8), b""),
        Err(Error::Replay {
            expected: 8,
            found: 7
        })
    ));
    assert_eq!(buf, sealed, "a refused header leaves the buffer as it was");
    let mut out = Vec::new();
    assert!(matches!(
        e.open_region_into(&buf, ctx, SequenceCheck::AtLeast(8), b"", &mut out),
        Err(Error::Replay { .. })
    ));
    assert!(
        e.open_in_place(&mut buf, ctx, SequenceCheck::Exact(7), b"")
            .is_ok()
    );
}

#[test]
fn retired_keys_refuse_in_place_opens() {
    let ctx = ContextId::new("k", "region");
    let e = MemoryEncryption::new(EncryptionConfig::new().grace_period(std::time::Duration::ZERO))
        .unwrap();
    let mut buf = laid_out(&e, &data(32));
    e.seal_in_place(ctx, 1, &mut buf, b"").unwrap();
    e.rotate_key().unwrap();
    e.retire_expired_keys();
    assert!(matches!(
        e.open_in_place(&mut buf, ctx, SequenceCheck::Any, b""),
        Err(Error::KeyRetired { epoch: 1 })
    ));
}

#[test]
fn bad_buffers_and_disabled_encryption_are_refused() {
    let ctx = ContextId::new("k", "region");
    let e = enc(Algorithm::Aes256Gcm, ProviderChoice::Auto);
    let mut tiny = vec![0u8; e.plaintext_offset() + 15];
    assert!(matches!(
        e.seal_in_place(ctx, 1, &mut tiny, b""),
        Err(Error::InvalidConfig(_))
    ));
    let mut garbage = vec![0u8; 100];
    assert!(
        e.open_in_place(&mut garbage, ctx, SequenceCheck::Any, b"")
            .is_err()
    );
    let off = MemoryEncryption::new(EncryptionConfig::new().algorithm(Algorithm::None)).unwrap();
    let mut buf = vec![0u8; off.sealed_len(4)];
    assert!(matches!(
        off.seal_in_place(ctx, 1, &mut buf, b""),
        Err(Error::EncryptionDisabled)
    ));
    let mut out = Vec::new();
    assert!(matches!(
        off.seal_region_into(ctx, 1, b"abcd", b"", &mut out),
        Err(Error::EncryptionDisabled)
    ));
    assert!(out.is_empty());
}

#[test]
fn long_associated_data_spills_to_the_heap_and_still_binds() {
    let ctx = ContextId::new("k", "region");
    let e = enc(Algorithm::Aes256Gcm, ProviderChoice::Auto);
    let aad = data(5000);
    let sealed = e.seal_region(ctx, 1, b"payload", &aad).unwrap();
    let mut out = Vec::new();
    e.open_region_into(&sealed, ctx, SequenceCheck::Exact(1), &aad, &mut out)
        .unwrap();
    assert_eq!(out, b"payload");
    let mut other = aad.clone();
    other[4999] ^= 1;
    assert!(matches!(
        e.open_region_into(&sealed, ctx, SequenceCheck::Exact(1), &other, &mut out),
        Err(Error::Tampered)
    ));
}

#[test]
fn statistics_count_every_thread() {
    let ctx = ContextId::new("k", "region");
    let e = enc(Algorithm::Aes256Gcm, ProviderChoice::Auto);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let (mut sealed, mut plain) = (Vec::new(), Vec::new());
                for _ in 0..250 {
                    e.seal_region_into(ctx, 1, &[1u8; 100], b"", &mut sealed)
                        .unwrap();
                    e.open_region_into(&sealed, ctx, SequenceCheck::Any, b"", &mut plain)
                        .unwrap();
                }
            });
        }
    });
    let st = e.stats();
    assert_eq!((st.seals, st.opens, st.failures), (1000, 1000, 0));
    assert_eq!((st.bytes_sealed, st.bytes_opened), (100_000, 100_000));
    assert_eq!(e.current_key_seals(), 1000);
}

/// `seal_stream_into`/`open_stream_into`: the same envelopes as `seal_stream`/
/// `open_stream` (each opens the other's), a reused vector holding exactly the latest
/// result through sizes that grow and shrink, and the refusals of `open_stream` with
/// nothing decrypted left behind.
#[test]
fn stream_into_reused_vectors_match_the_allocating_forms() {
    let ctx = ContextId::new("k", "bulk");
    for alg in Algorithm::ALL {
        let e =
            MemoryEncryption::new(EncryptionConfig::new().algorithm(alg).chunk_size(4096)).unwrap();
        let (mut sealed, mut plain) = (Vec::new(), Vec::new());
        for len in [50_000usize, 0, 1, 4096, 4097, 200_000, 12_288, 3] {
            let d = data(len);
            e.seal_stream_into(ctx, 9, &d, b"aad", &mut sealed).unwrap();
            let header = Header::parse(&sealed).unwrap();
            assert_eq!(header.length, len as u64, "{alg:?} {len}");
            assert_eq!(sealed.len(), header.total_len().unwrap());
            let opened = e
                .open_stream(&sealed, ctx, SequenceCheck::Exact(9), b"aad")
                .unwrap();
            assert_eq!(&opened[..], &d[..], "{alg:?} {len}");
            let other = e.seal_stream(ctx, 9, &d, b"aad").unwrap();
            e.open_stream_into(&other, ctx, SequenceCheck::Exact(9), b"aad", &mut plain)
                .unwrap();
            assert_eq!(plain, d, "{alg:?} {len}");
        }

        // Refusals: flipped body byte, wrong AAD, other region, replay. `plain` is
        // zeroed and emptied every time.
        let d = data(30_000);
        e.seal_stream_into(ctx, 2, &d, b"", &mut sealed).unwrap();
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last - 5000] ^= 1;
        let cases: [(&[u8], ContextId, SequenceCheck, &[u8]); 4] = [
            (&flipped, ctx, SequenceCheck::Exact(2), b""),
            (&sealed, ctx, SequenceCheck::Exact(2), b"other"),
            (
                &sealed,
                ContextId::new("k", "other"),
                SequenceCheck::Exact(2),
                b"",
            ),
            (&sealed, ctx, SequenceCheck::AtLeast(3), b""),
        ];
        for (bytes, c, check, aad) in cases {
            plain = vec![0xAB; 64];
            let r = e.open_stream_into(bytes, c, check, aad, &mut plain);
            assert!(r.is_err(), "{alg:?}");
            assert!(plain.is_empty());
        }
        assert!(matches!(
            e.open_stream_into(&flipped, ctx, SequenceCheck::Exact(2), b"", &mut plain),
            Err(Error::Tampered)
        ));
    }
}
