//! The AEAD provider seam, in the manner of rustls' `CryptoProvider`: the envelope,
//! keyring, rotation and runtime code name no crypto crate; they hold
//! [`AeadKey`]s made by an [`AeadProvider`].
//!
//! Two providers ship: [`RustCrypto`] (the pure-Rust `aes-gcm` and `chacha20poly1305`
//! crates; every algorithm) and [`AwsLc`] (`aws-lc-rs`; AES-GCM and
//! ChaCha20-Poly1305, no XChaCha20). Which one serves an algorithm is chosen by
//! [`ProviderChoice`], whose default follows `docs/benchmarks.md`.

use std::fmt;

use aes_gcm::aead::{AeadInPlace, KeyInit};

use super::algorithm::{Algorithm, TAG_LEN};
use crate::error::{Error, Result};

/// A keyed AEAD instance. Implementations zero their key material on drop.
pub trait AeadKey: Send + Sync {
    /// The algorithm.
    fn algorithm(&self) -> Algorithm;

    /// Encrypts `buf` in place and returns the tag.
    fn seal_in_place(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN]>;

    /// Authenticates and decrypts `buf` in place. On failure `buf`'s content is
    /// unspecified and must be discarded; the error is [`Error::Tampered`].
    fn open_in_place(
        &self,
        nonce: &[u8],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()>;
}

/// A source of [`AeadKey`]s.
pub trait AeadProvider: Send + Sync + fmt::Debug {
    /// Short name for reports (`"rustcrypto"`, `"aws-lc-rs"`).
    fn name(&self) -> &'static str;

    /// Whether this provider implements `alg`.
    fn supports(&self, alg: Algorithm) -> bool;

    /// A keyed instance of `alg`. `key` must be `alg.key_len()` bytes.
    fn new_key(&self, alg: Algorithm, key: &[u8]) -> Result<Box<dyn AeadKey>>;
}

/// Which provider seals and opens, per algorithm. One provider serves every size: no
/// measurement has favoured another provider for small records than for bulk ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderChoice {
    /// The measured default: the fastest provider per algorithm (see
    /// `docs/benchmarks.md`). Today that is aws-lc-rs for AES-GCM and
    /// ChaCha20-Poly1305, at every size measured, and RustCrypto for
    /// XChaCha20-Poly1305 (which aws-lc-rs lacks): the same as [`ProviderChoice::AwsLc`]
    /// until a measurement says otherwise.
    Auto,
    /// RustCrypto for everything.
    RustCrypto,
    /// aws-lc-rs for everything it supports (XChaCha20 falls back to RustCrypto).
    AwsLc,
}

impl ProviderChoice {
    /// The provider used for `alg`, whatever the record's size.
    pub fn provider_for(self, alg: Algorithm) -> &'static dyn AeadProvider {
        let aws = match self {
            ProviderChoice::RustCrypto => false,
            ProviderChoice::AwsLc => true,
            ProviderChoice::Auto => auto_prefers_aws_lc(alg),
        };
        if aws && AwsLc.supports(alg) {
            &AwsLc
        } else {
            &RustCrypto
        }
    }
}

/// The measured choice (docs/benchmarks.md, "AEAD providers", 2-core x86_64 without
/// `target-cpu=native`): aws-lc-rs is faster for AES-GCM and ChaCha20-Poly1305 at every
/// size measured, 128 B to 16 MiB (at 128 B: 84 ns against 183 ns for AES-256-GCM,
/// 242 ns against 1.6 µs for ChaCha20-Poly1305; in bulk 18 against 1.2 GiB/s and 2.3
/// against 1.1 GiB/s). RustCrypto remains the only XChaCha20-Poly1305 implementation.
/// The choice used to take the record's length, with a small-record limit of 1 KiB,
/// but it never depended on it; re-measure when either crate changes.
fn auto_prefers_aws_lc(alg: Algorithm) -> bool {
    match alg {
        Algorithm::Aes256Gcm | Algorithm::Aes128Gcm | Algorithm::ChaCha20Poly1305 => true,
        Algorithm::XChaCha20Poly1305 | Algorithm::None => false,
    }
}

fn check_key(alg: Algorithm, key: &[u8]) -> Result<()> {
    if alg == Algorithm::None || key.len() != alg.key_len() {
        return Err(Error::InvalidConfig(format!(
            "{alg} needs a {}-byte key, got {} bytes",
            alg.key_len(),
            key.len()
        )));
    }
    Ok(())
}

/// The error for a record the AEAD refuses to seal: only its length can make it do
/// so (GCM takes at most 2^36 − 32 bytes per record, ChaCha20-Poly1305 2^38 − 64).
fn too_long(alg: Algorithm, len: usize) -> Error {
    let max = match alg {
        Algorithm::Aes256Gcm | Algorithm::Aes128Gcm => (1u64 << 36) - 32,
        _ => (1u64 << 38) - 64,
    };
    Error::TooLarge {
        what: "AEAD record",
        len: len as u64,
        max,
    }
}

fn check_nonce(alg: Algorithm, nonce: &[u8]) -> Result<()> {
    if nonce.len() != alg.nonce_len() {
        return Err(Error::MalformedEnvelope(format!(
            "{alg} needs a {}-byte nonce, got {}",
            alg.nonce_len(),
            nonce.len()
        )));
    }
    Ok(())
}

fn tampered() -> Error {
    Error::Tampered
}

// ----- RustCrypto ------------------------------------------------------------------------

/// The pure-Rust RustCrypto AEADs (`aes-gcm`, `chacha20poly1305`).
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCrypto;

struct RcKey<C> {
    alg: Algorithm,
    cipher: C,
}

impl<C> AeadKey for RcKey<C>
where
    C: AeadInPlace + Send + Sync,
{
    fn algorithm(&self) -> Algorithm {
        self.alg
    }

    fn seal_in_place(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        check_nonce(self.alg, nonce)?;
        let tag = self
            .cipher
            .encrypt_in_place_detached(nonce.into(), aad, buf)
            .map_err(|_| too_long(self.alg, buf.len()))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&tag);
        Ok(out)
    }

    fn open_in_place(
        &self,
        nonce: &[u8],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()> {
        check_nonce(self.alg, nonce)?;
        self.cipher
            .decrypt_in_place_detached(nonce.into(), aad, buf, tag.as_slice().into())
            .map_err(|_| tampered())
    }
}

impl AeadProvider for RustCrypto {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }

    fn supports(&self, alg: Algorithm) -> bool {
        alg != Algorithm::None
    }

    fn new_key(&self, alg: Algorithm, key: &[u8]) -> Result<Box<dyn AeadKey>> {
        check_key(alg, key)?;
        let bad = |_| Error::InvalidConfig(format!("bad {alg} key length"));
        Ok(match alg {
            Algorithm::Aes256Gcm => Box::new(RcKey {
                alg,
                cipher: aes_gcm::Aes256Gcm::new_from_slice(key).map_err(bad)?,
            }),
            Algorithm::Aes128Gcm => Box::new(RcKey {
                alg,
                cipher: aes_gcm::Aes128Gcm::new_from_slice(key).map_err(bad)?,
            }),
            Algorithm::ChaCha20Poly1305 => Box::new(RcKey {
                alg,
                cipher: chacha20poly1305::ChaCha20Poly1305::new_from_slice(key).map_err(bad)?,
            }),
            Algorithm::XChaCha20Poly1305 => Box::new(RcKey {
                alg,
                cipher: chacha20poly1305::XChaCha20Poly1305::new_from_slice(key).map_err(bad)?,
            }),
            Algorithm::None => {
                return Err(Error::InvalidConfig("Algorithm::None has no key".into()));
            }
        })
    }
}

// ----- aws-lc-rs -------------------------------------------------------------------------

/// AWS-LC through `aws-lc-rs` (assembly-optimised AES-GCM and ChaCha20-Poly1305).
#[derive(Clone, Copy, Debug, Default)]
pub struct AwsLc;

struct AwsKey {
    alg: Algorithm,
    key: aws_lc_rs::aead::LessSafeKey,
}

impl AwsKey {
    fn nonce(&self, nonce: &[u8]) -> Result<aws_lc_rs::aead::Nonce> {
        check_nonce(self.alg, nonce)?;
        aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| Error::MalformedEnvelope("bad nonce length".into()))
    }
}

impl AeadKey for AwsKey {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }

    fn seal_in_place(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let nonce = self.nonce(nonce)?;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::from(aad), buf)
            .map_err(|_| too_long(self.alg, buf.len()))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    fn open_in_place(
        &self,
        nonce: &[u8],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()> {
        let nonce = self.nonce(nonce)?;
        self.key
            .open_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::from(aad), tag, buf)
            .map(|_| ())
            .map_err(|_| tampered())
    }
}

impl AeadProvider for AwsLc {
    fn name(&self) -> &'static str {
        "aws-lc-rs"
    }

    fn supports(&self, alg: Algorithm) -> bool {
        matches!(
            alg,
            Algorithm::Aes256Gcm | Algorithm::Aes128Gcm | Algorithm::ChaCha20Poly1305
        )
    }

    fn new_key(&self, alg: Algorithm, key: &[u8]) -> Result<Box<dyn AeadKey>> {
        check_key(alg, key)?;
        let which = match alg {
            Algorithm::Aes256Gcm => &aws_lc_rs::aead::AES_256_GCM,
            Algorithm::Aes128Gcm => &aws_lc_rs::aead::AES_128_GCM,
            Algorithm::ChaCha20Poly1305 => &aws_lc_rs::aead::CHACHA20_POLY1305,
            _ => {
                return Err(Error::InvalidConfig(format!(
                    "aws-lc-rs does not implement {alg}"
                )));
            }
        };
        let unbound = aws_lc_rs::aead::UnboundKey::new(which, key)
            .map_err(|_| Error::InvalidConfig(format!("bad {alg} key")))?;
        Ok(Box::new(AwsKey {
            alg,
            key: aws_lc_rs::aead::LessSafeKey::new(unbound),
        }))
    }
}
