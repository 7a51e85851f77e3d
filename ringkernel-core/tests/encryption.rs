//! MemoryEncryption behaviour: round trips, every tamper case, replay, relabelling,
//! retired keys, passwords, STREAM integrity, rotation under load, malformed input.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use ringkernel_core::Error;
use ringkernel_core::control::ControlBlock;
use ringkernel_core::security::encryption::envelope::Header;
use ringkernel_core::security::encryption::{
    Algorithm, ContextId, EncryptionConfig, InstanceId, KeyDerivation, KeyId, MemoryEncryption,
    ProviderChoice, SealedData, SequenceCheck,
};

const CHOICES: [ProviderChoice; 3] = [
    ProviderChoice::Auto,
    ProviderChoice::RustCrypto,
    ProviderChoice::AwsLc,
];

fn enc(alg: Algorithm) -> MemoryEncryption {
    MemoryEncryption::new(EncryptionConfig::new().algorithm(alg)).unwrap()
}

fn sample_block() -> ControlBlock {
    let mut cb = ControlBlock::new(256);
    cb.is_active = 1;
    cb.messages_processed = 123_456;
    cb.hlc_physical = 42;
    cb
}

#[test]
fn round_trip_every_algorithm_provider_and_size() {
    for alg in Algorithm::ALL {
        for choice in CHOICES {
            let e = MemoryEncryption::new(
                EncryptionConfig::new()
                    .algorithm(alg)
                    .provider(choice)
                    .chunk_size(4096),
            )
            .unwrap();
            assert!(e.is_enabled());
            let cb = sample_block();
            let sealed = e.encrypt(&cb).unwrap();
            assert_ne!(
                &sealed.as_bytes()[52..180],
                cb.as_bytes(),
                "{alg}: not plaintext"
            );
            assert_eq!(e.decrypt::<ControlBlock>(&sealed).unwrap(), cb);
            for len in [0usize, 1, 15, 16, 17, 1000, 4096, 4097, 50_000] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let sealed = e.encrypt_bytes(&data).unwrap();
                assert_eq!(
                    &e.decrypt_bytes(&sealed).unwrap()[..],
                    &data[..],
                    "{alg} {choice:?} {len}"
                );
            }
        }
    }
}

#[test]
fn providers_interoperate() {
    // What one provider seals, the other opens: same algorithm, same key bytes.
    let e = enc(Algorithm::ChaCha20Poly1305);
    let data = vec![9u8; 3000]; // bulk path (aws-lc-rs under Auto)
    let small = vec![1u8; 100]; // small path (RustCrypto under Auto)
    for d in [&data, &small] {
        let s = e.encrypt_bytes(d).unwrap();
        assert_eq!(&e.decrypt_bytes(&s).unwrap()[..], &d[..]);
    }
}

#[test]
fn every_flipped_byte_of_a_sealed_control_block_fails() {
    for alg in Algorithm::ALL {
        let e = enc(alg);
        let ctx = ContextId::new("k", "control");
        let sealed = e
            .seal_region(ctx, 5, sample_block().as_bytes(), b"")
            .unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let r = e.open_region(&bad, ctx, SequenceCheck::Exact(5), b"");
            assert!(r.is_err(), "{alg}: flipping byte {i} was not detected");
        }
        assert!(
            e.open_region(&sealed, ctx, SequenceCheck::Exact(5), b"")
                .is_ok()
        );
        assert_eq!(e.stats().failures, sealed.len() as u64);
    }
}

#[test]
fn moved_replayed_and_relabelled_blocks_fail_with_typed_errors() {
    let e = enc(Algorithm::Aes256Gcm);
    let a = ContextId::new("kernel_a", "control");
    let b = ContextId::new("kernel_b", "control");
    let a_queue = ContextId::new("kernel_a", "queue");
    let v1 = e.seal_region(a, 1, b"version one", b"").unwrap();
    let v2 = e.seal_region(a, 2, b"version two", b"").unwrap();

    // Moved to another kernel or buffer.
    assert!(matches!(
        e.open_region(&v2, b, SequenceCheck::Exact(2), b""),
        Err(Error::WrongContext)
    ));
    assert!(matches!(
        e.open_region(&v2, a_queue, SequenceCheck::Exact(2), b""),
        Err(Error::WrongContext)
    ));
    // ...and with the header rewritten to claim the new context: authentication fails.
    let mut moved = v2.clone();
    moved[12..28].copy_from_slice(&b.0);
    assert!(matches!(
        e.open_region(&moved, b, SequenceCheck::Exact(2), b""),
        Err(Error::Tampered)
    ));

    // Replay of the older sealing.
    assert!(matches!(
        e.open_region(&v1, a, SequenceCheck::Exact(2), b""),
        Err(Error::Replay {
            expected: 2,
            found: 1
        })
    ));
    assert!(matches!(
        e.open_region(&v1, a, SequenceCheck::AtLeast(2), b""),
        Err(Error::Replay { .. })
    ));
    // ...with the sequence rewritten: authentication fails.
    let mut replayed = v1.clone();
    replayed[28..36].copy_from_slice(&2u64.to_le_bytes());
    assert!(matches!(
        e.open_region(&replayed, a, SequenceCheck::Exact(2), b""),
        Err(Error::Tampered)
    ));

    // Relabelled algorithm.
    let mut relabel = v2.clone();
    relabel[5] = Algorithm::ChaCha20Poly1305.id();
    assert!(matches!(
        e.open_region(&relabel, a, SequenceCheck::Exact(2), b""),
        Err(Error::Tampered)
    ));

    // Relabelled key epoch: another live epoch, an unknown one, a retired one.
    e.rotate_key().unwrap();
    let mut other_epoch = v2.clone();
    other_epoch[8..12].copy_from_slice(&2u32.to_le_bytes());
    assert!(matches!(
        e.open_region(&other_epoch, a, SequenceCheck::Exact(2), b""),
        Err(Error::Tampered)
    ));
    let mut unknown = v2.clone();
    unknown[8..12].copy_from_slice(&99u32.to_le_bytes());
    assert!(matches!(
        e.open_region(&unknown, a, SequenceCheck::Exact(2), b""),
        Err(Error::UnknownKeyEpoch { epoch: 99 })
    ));

    // An envelope of a retired format version (1: no instance or incarnation in its
    // context) is refused, naming the version, before any key is tried.
    let mut v1_format = v2.clone();
    v1_format[4] = 1;
    assert!(matches!(
        e.open_region(&v1_format, a, SequenceCheck::Exact(2), b""),
        Err(Error::EnvelopeVersion {
            found: 1,
            supported: 2
        })
    ));
    let err = e
        .open_region(&v1_format, a, SequenceCheck::Exact(2), b"")
        .unwrap_err();
    assert!(err.to_string().contains("version 1"), "{err}");

    // The same region of an earlier launch of the kernel: stale, not tampered.
    let instance = InstanceId([7; 16]);
    let launch1 = ContextId::bound(&instance, "kernel_a", 1, "control");
    let launch2 = ContextId::bound(&instance, "kernel_a", 2, "control");
    let old = e.seal_region(launch1, 0, b"launch one", b"").unwrap();
    assert!(matches!(
        e.open_region(&old, launch2, SequenceCheck::Exact(0), b""),
        Err(Error::StaleIncarnation {
            expected: 2,
            found: 1
        })
    ));
    // Another runtime instance's region: foreign.
    let other_instance = ContextId::bound(&InstanceId([8; 16]), "kernel_a", 1, "control");
    assert!(matches!(
        e.open_region(&old, other_instance, SequenceCheck::Exact(0), b""),
        Err(Error::WrongContext)
    ));

    // Associated data bound but not stored: a different AAD fails.
    let with_aad = e.seal_region(a, 3, b"msg", b"src=a;dst=b").unwrap();
    assert!(
        e.open_region(&with_aad, a, SequenceCheck::Exact(3), b"src=a;dst=b")
            .is_ok()
    );
    assert!(matches!(
        e.open_region(&with_aad, a, SequenceCheck::Exact(3), b"src=x;dst=b"),
        Err(Error::Tampered)
    ));
}

#[test]
fn retired_epoch_is_crypto_erased() {
    let e = MemoryEncryption::new(EncryptionConfig::new().grace_period(Duration::ZERO)).unwrap();
    let sealed = e.encrypt_bytes(b"old secret").unwrap();
    assert_eq!(e.current_key_id(), Some(KeyId(1)));
    assert_eq!(e.rotate_key().unwrap(), KeyId(2));
    // Still in the key ring until retirement runs.
    assert_eq!(e.live_key_ids(), vec![KeyId(1), KeyId(2)]);
    assert_eq!(e.retire_expired_keys(), vec![KeyId(1)]);
    assert_eq!(e.live_key_ids(), vec![KeyId(2)]);
    assert!(matches!(
        e.decrypt_bytes(&sealed),
        Err(Error::KeyRetired { epoch: 1 })
    ));
    let stats = e.stats();
    assert_eq!((stats.rotations, stats.retirements), (1, 1));
}

#[test]
fn grace_period_keeps_old_epoch_readable() {
    let e = MemoryEncryption::new(EncryptionConfig::new().grace_period(Duration::from_secs(3600)))
        .unwrap();
    let sealed = e.encrypt_bytes(b"still readable").unwrap();
    e.rotate_key().unwrap();
    assert!(e.retire_expired_keys().is_empty());
    assert_eq!(&e.decrypt_bytes(&sealed).unwrap()[..], b"still readable");
    // New seals use the new epoch.
    let fresh = e.encrypt_bytes(b"x").unwrap();
    assert_eq!(fresh.header().unwrap().epoch, 2);
}

#[test]
fn usage_bound_rotates_before_it_is_crossed() {
    let e = MemoryEncryption::new(EncryptionConfig::new().max_seals_per_key(10)).unwrap();
    for _ in 0..10 {
        e.encrypt_bytes(b"a").unwrap();
    }
    assert_eq!(e.current_key_id(), Some(KeyId(1)));
    let s = e.encrypt_bytes(b"b").unwrap();
    assert_eq!(s.header().unwrap().epoch, 2);
    assert_eq!(e.stats().rotations, 1);

    let e = MemoryEncryption::new(EncryptionConfig::new().max_bytes_per_key(1000)).unwrap();
    e.encrypt_bytes(&[0; 600]).unwrap();
    let s = e.encrypt_bytes(&[0; 600]).unwrap();
    assert_eq!(s.header().unwrap().epoch, 2);
    assert!(matches!(
        e.encrypt_bytes(&[0; 1001]),
        Err(Error::TooLarge {
            len: 1001,
            max: 1000,
            ..
        })
    ));
}

#[test]
fn auto_rotate_becomes_due_after_its_interval() {
    let e = MemoryEncryption::new(EncryptionConfig::new().auto_rotate(Duration::from_millis(30)))
        .unwrap();
    assert_eq!(e.rotate_if_due().unwrap(), None);
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(e.rotate_if_due().unwrap(), Some(KeyId(2)));
    assert_eq!(e.rotate_if_due().unwrap(), None);
}

#[test]
fn counter_nonces_are_unique_and_xchacha_nonces_random() {
    for alg in Algorithm::ALL {
        let e = enc(alg);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let s = e.encrypt_bytes(b"same plaintext").unwrap();
            let h = s.header().unwrap();
            assert!(seen.insert(h.nonce.clone()), "{alg}: nonce repeated");
        }
    }
}

#[test]
fn password_derived_data_reopens_after_unlock_with_the_same_password() {
    let cheap = KeyDerivation::Argon2id {
        memory_cost: 256,
        time_cost: 1,
        parallelism: 1,
    };
    // The first instance seals under two epochs, then goes away.
    let first = MemoryEncryption::from_password("correct horse", cheap).unwrap();
    let early = first.encrypt(&sample_block()).unwrap();
    first.rotate_key().unwrap();
    let late = first.encrypt_bytes(b"sealed under epoch 2").unwrap();
    let meta = first.key_metadata();
    assert_eq!(meta.keys.highest, 2);
    assert_eq!(meta.keys.epochs.len(), 2);
    drop(first);

    // A second instance from the same password and metadata opens both...
    let second =
        MemoryEncryption::unlock(b"correct horse", &meta, EncryptionConfig::secure()).unwrap();
    assert_eq!(
        second.decrypt::<ControlBlock>(&early).unwrap(),
        sample_block()
    );
    assert_eq!(
        &second.decrypt_bytes(&late).unwrap()[..],
        b"sealed under epoch 2"
    );
    // ...and seals under a fresh epoch of its own, never reusing an earlier key's nonces.
    let fresh = second.encrypt_bytes(b"new").unwrap();
    assert_eq!(fresh.header().unwrap().epoch, 3);
    // An epoch the metadata never knew is named as such, not called tampering.
    let mut unknown = late.into_bytes();
    unknown[8..12].copy_from_slice(&9u32.to_le_bytes());
    assert!(matches!(
        second.decrypt_bytes(&SealedData::from_bytes(unknown).unwrap()),
        Err(Error::UnknownKeyEpoch { epoch: 9 })
    ));
    assert!(matches!(
        MemoryEncryption::unlock(b"wrong horse", &meta, EncryptionConfig::secure()),
        Err(Error::WrongPassword)
    ));
}

#[test]
fn passwords_derive_checkable_keys() {
    let cheap = KeyDerivation::Argon2id {
        memory_cost: 256,
        time_cost: 1,
        parallelism: 1,
    };
    let e = MemoryEncryption::from_password("correct horse", cheap).unwrap();
    let meta = e.key_metadata();
    assert_eq!(meta.salt.len(), 16);
    let again = MemoryEncryption::unlock(b"correct horse", &meta, EncryptionConfig::new()).unwrap();
    assert_eq!(again.key_metadata().key_check, meta.key_check);
    assert!(matches!(
        MemoryEncryption::unlock(b"wrong horse", &meta, EncryptionConfig::new()),
        Err(Error::WrongPassword)
    ));
    // A second derivation from the same password gets a new random salt and key.
    let other = MemoryEncryption::from_password("correct horse", cheap).unwrap();
    assert_ne!(other.key_metadata().salt, meta.salt);

    for kdf in [
        KeyDerivation::Pbkdf2Sha256 { iterations: 1000 },
        KeyDerivation::HkdfSha256,
        KeyDerivation::HkdfSha384,
    ] {
        let secret = [0x5Au8; 32];
        let e = MemoryEncryption::from_password_with_config(
            &secret,
            EncryptionConfig::new().key_derivation(kdf),
        )
        .unwrap();
        let s = e.encrypt(&sample_block()).unwrap();
        assert_eq!(
            e.decrypt::<ControlBlock>(&s).unwrap(),
            sample_block(),
            "{kdf:?}"
        );
    }
    // HKDF refuses low-entropy input.
    assert!(matches!(
        MemoryEncryption::from_password("short", KeyDerivation::HkdfSha256),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn default_kdf_parameters_are_the_documented_ones() {
    assert_eq!(
        KeyDerivation::argon2id(),
        KeyDerivation::Argon2id {
            memory_cost: 65_536,
            time_cost: 3,
            parallelism: 4
        }
    );
    assert_eq!(KeyDerivation::default(), KeyDerivation::argon2id());
    assert_eq!(
        KeyDerivation::pbkdf2_sha256(),
        KeyDerivation::Pbkdf2Sha256 {
            iterations: 600_000
        }
    );
    assert!(
        KeyDerivation::Pbkdf2Sha256 { iterations: 1000 }
            .weakness()
            .is_some()
    );
    assert!(KeyDerivation::argon2id().weakness().is_none());
    assert_eq!(
        EncryptionConfig::secure().get_algorithm(),
        Algorithm::Aes256Gcm
    );
    assert_eq!(
        EncryptionConfig::secure().get_key_derivation(),
        KeyDerivation::argon2id()
    );
    assert!(
        EncryptionConfig::new()
            .algorithm(Algorithm::None)
            .insecurity()
            .is_some()
    );
}

#[test]
fn default_argon2id_password_derivation_works() {
    // The real default: 64 MiB, 3 passes, 4 lanes.
    let e =
        MemoryEncryption::from_password("secure-passphrase", KeyDerivation::argon2id()).unwrap();
    let s = e.encrypt(&sample_block()).unwrap();
    assert_eq!(e.decrypt::<ControlBlock>(&s).unwrap(), sample_block());
}

#[test]
fn disabled_encryption_seals_nothing() {
    let e = enc(Algorithm::None);
    assert!(!e.is_enabled());
    assert_eq!(e.current_key_id(), None);
    assert!(matches!(
        e.encrypt(&sample_block()),
        Err(Error::EncryptionDisabled)
    ));
}

#[test]
fn stream_detects_truncation_reordering_and_swaps() {
    for alg in Algorithm::ALL {
        let e =
            MemoryEncryption::new(EncryptionConfig::new().algorithm(alg).chunk_size(1024)).unwrap();
        let ctx = ContextId::new("k", "state");
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let s1 = e.seal_stream(ctx, 1, &data, b"").unwrap();
        let s2 = e.seal_stream(ctx, 1, &data, b"").unwrap();
        assert_eq!(
            &e.open_stream(&s1, ctx, SequenceCheck::Exact(1), b"")
                .unwrap()[..],
            &data[..]
        );
        let h = Header::parse(&s1).unwrap();
        let hl = h.encoded_len();
        let slot = 1024 + 16;
        // Truncation: drop the last chunk, with the header's length fixed up to match.
        let mut trunc = s1[..s1.len() - (10_000 % 1024 + 16)].to_vec();
        trunc[40..48].copy_from_slice(&(9 * 1024u64).to_le_bytes());
        assert!(
            e.open_stream(&trunc, ctx, SequenceCheck::Any, b"").is_err(),
            "{alg}: truncation"
        );
        // Plain truncation without fixing the header is malformed.
        assert!(matches!(
            e.open_stream(&s1[..s1.len() - 1], ctx, SequenceCheck::Any, b""),
            Err(Error::MalformedEnvelope(_))
        ));
        // Reorder chunks 0 and 1.
        let mut reordered = s1.clone();
        let (c0, c1) = (
            s1[hl..hl + slot].to_vec(),
            s1[hl + slot..hl + 2 * slot].to_vec(),
        );
        reordered[hl..hl + slot].copy_from_slice(&c1);
        reordered[hl + slot..hl + 2 * slot].copy_from_slice(&c0);
        assert!(matches!(
            e.open_stream(&reordered, ctx, SequenceCheck::Any, b""),
            Err(Error::Tampered)
        ));
        // Swap chunk 3 in from another stream of the same data.
        let mut swapped = s1.clone();
        swapped[hl + 3 * slot..hl + 4 * slot].copy_from_slice(&s2[hl + 3 * slot..hl + 4 * slot]);
        assert!(matches!(
            e.open_stream(&swapped, ctx, SequenceCheck::Any, b""),
            Err(Error::Tampered)
        ));
        // Every chunk's bytes are authenticated.
        for i in (hl..s1.len()).step_by(997) {
            let mut bad = s1.clone();
            bad[i] ^= 0x80;
            assert!(e.open_stream(&bad, ctx, SequenceCheck::Any, b"").is_err());
        }
    }
}

#[test]
fn rotation_storm_has_zero_failures() {
    let e = MemoryEncryption::new(EncryptionConfig::new().grace_period(Duration::from_secs(30)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for t in 0..4 {
        let (e, stop, ops) = (e.clone(), stop.clone(), ops.clone());
        workers.push(std::thread::spawn(move || {
            let ctx = ContextId::new(&format!("k{t}"), "control");
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut cb = sample_block();
                cb.messages_processed = seq;
                let sealed = e.seal_region(ctx, seq, cb.as_bytes(), b"").unwrap();
                let opened = e
                    .open_region(&sealed, ctx, SequenceCheck::Exact(seq), b"")
                    .unwrap();
                let back = ControlBlock::from_bytes(&opened).unwrap();
                assert_eq!(back.messages_processed, seq);
                seq += 1;
                ops.fetch_add(1, Ordering::Relaxed);
            }
            seq
        }));
    }
    let mut rotations = 0;
    while rotations < 50 {
        e.rotate_key().unwrap();
        rotations += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(total, ops.load(Ordering::Relaxed));
    let stats = e.stats();
    assert_eq!(stats.failures, 0);
    assert_eq!(stats.rotations, 50);
    assert_eq!(stats.opens, total);
    assert_eq!(e.current_key_id(), Some(KeyId(51)));
}

#[test]
fn debug_output_never_shows_keys() {
    let e = enc(Algorithm::Aes256Gcm);
    let dbg = format!("{e:?}");
    assert!(dbg.contains("[REDACTED]"), "{dbg}");
    let s = e.encrypt_bytes(b"secret payload").unwrap();
    assert_eq!(
        format!("{s:?}"),
        format!("SealedData({} bytes)", s.as_bytes().len())
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let e = enc(Algorithm::ChaCha20Poly1305);
        let ctx = ContextId::standalone();
        prop_assert!(e.open_region(&bytes, ctx, SequenceCheck::Any, b"").is_err());
        prop_assert!(e.open_stream(&bytes, ctx, SequenceCheck::Any, b"").is_err());
        prop_assert!(SealedData::from_bytes(bytes.clone()).is_err() || Header::parse(&bytes).is_ok());
    }

    #[test]
    fn mutated_envelopes_never_panic_and_never_open(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        pos in any::<usize>(),
        xor in 1u8..=255,
        cut in any::<usize>(),
    ) {
        let e = MemoryEncryption::new(EncryptionConfig::new().chunk_size(1024)).unwrap();
        let sealed = e.encrypt_bytes(&data).unwrap().into_bytes();
        let mut bad = sealed.clone();
        let i = pos % bad.len();
        bad[i] ^= xor;
        if let Ok(parsed) = SealedData::from_bytes(bad.clone()) {
            prop_assert!(e.decrypt_bytes(&parsed).is_err());
        }
        prop_assert!(e.open_region(&bad, ContextId::standalone(), SequenceCheck::Any, b"").is_err());
        prop_assert!(e.open_stream(&bad, ContextId::standalone(), SequenceCheck::Any, b"").is_err());
        let truncated = &sealed[..cut % sealed.len()];
        prop_assert!(SealedData::from_bytes(truncated.to_vec()).is_err());
    }
}
