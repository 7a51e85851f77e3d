//! Key derivation: passwords and secrets to master keys; master keys to epoch keys.

use hkdf::Hkdf;
use sha2::{Sha256, Sha384};

use super::config::KeyDerivation;
use crate::error::{Error, Result};
use crate::security::memory::SecureBuffer;

/// Length of master and data keys.
pub const MASTER_KEY_LEN: usize = 32;
/// Length of password salts.
pub const SALT_LEN: usize = 16;

/// Derives the 32-byte master key from `secret` with `kdf` and `salt`.
pub fn derive_master(kdf: &KeyDerivation, secret: &[u8], salt: &[u8]) -> Result<SecureBuffer> {
    let mut out = SecureBuffer::new(MASTER_KEY_LEN);
    match *kdf {
        KeyDerivation::HkdfSha256 | KeyDerivation::HkdfSha384 => {
            if secret.len() < 32 {
                return Err(Error::InvalidConfig(
                    "HKDF needs high-entropy input of at least 32 bytes; derive keys from \
                     passwords with KeyDerivation::argon2id()"
                        .into(),
                ));
            }
            hkdf(
                kdf,
                Some(salt),
                secret,
                b"ringkernel/v1/master-key",
                out.as_mut_slice(),
            )?;
        }
        KeyDerivation::Argon2id {
            memory_cost,
            time_cost,
            parallelism,
        } => argon2id(
            secret,
            salt,
            None,
            None,
            memory_cost,
            time_cost,
            parallelism,
            out.as_mut_slice(),
        )?,
        KeyDerivation::Pbkdf2Sha256 { iterations } => {
            pbkdf2_sha256(secret, salt, iterations, out.as_mut_slice())?
        }
    }
    Ok(out)
}

/// HKDF (extract then expand) with the hash `kdf` names (SHA-384 for `HkdfSha384`,
/// SHA-256 otherwise).
pub fn hkdf(
    kdf: &KeyDerivation,
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<()> {
    let too_long = |_| Error::InvalidConfig("HKDF output too long".into());
    match kdf {
        KeyDerivation::HkdfSha384 => Hkdf::<Sha384>::new(salt, ikm)
            .expand(info, out)
            .map_err(too_long),
        _ => Hkdf::<Sha256>::new(salt, ikm)
            .expand(info, out)
            .map_err(too_long),
    }
}

/// Argon2id (version 0x13) with optional secret and associated data (RFC 9106 §3.1).
#[allow(clippy::too_many_arguments)]
pub fn argon2id(
    password: &[u8],
    salt: &[u8],
    secret: Option<&[u8]>,
    associated_data: Option<&[u8]>,
    memory_cost: u32,
    time_cost: u32,
    parallelism: u32,
    out: &mut [u8],
) -> Result<()> {
    let bad = |e: argon2::Error| Error::InvalidConfig(format!("Argon2id: {e}"));
    let mut builder = argon2::ParamsBuilder::new();
    builder
        .m_cost(memory_cost)
        .t_cost(time_cost)
        .p_cost(parallelism)
        .output_len(out.len());
    if let Some(ad) = associated_data {
        builder.data(argon2::AssociatedData::new(ad).map_err(bad)?);
    }
    let params = builder.build().map_err(bad)?;
    let a2 = match secret {
        Some(s) => argon2::Argon2::new_with_secret(
            s,
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        )
        .map_err(bad)?,
        None => argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params),
    };
    a2.hash_password_into(password, salt, out).map_err(bad)
}

/// PBKDF2-HMAC-SHA256.
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) -> Result<()> {
    if iterations == 0 {
        return Err(Error::InvalidConfig(
            "PBKDF2 needs at least one iteration".into(),
        ));
    }
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, out);
    Ok(())
}
