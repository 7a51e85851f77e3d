//! The AEAD algorithms a sealed region may use.

use std::fmt;

/// AEAD algorithm for sealed regions.
///
/// | algorithm | key | nonce | use |
/// |-----------|----:|------:|-----|
/// | `Aes256Gcm` | 256 bit | 96 bit, counter | general purpose, AES-NI/CLMUL accelerated |
/// | `Aes128Gcm` | 128 bit | 96 bit, counter | performance-critical, lower security margin |
/// | `ChaCha20Poly1305` | 256 bit | 96 bit, counter | constant-time in software; the GPU kernels' cipher |
/// | `XChaCha20Poly1305` | 256 bit | 192 bit, random | extended nonce, safe with random nonces |
/// | `None` | — | — | no encryption; refused in production mode |
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Algorithm {
    /// AES-256 in Galois/Counter Mode.
    Aes256Gcm,
    /// AES-128 in Galois/Counter Mode.
    Aes128Gcm,
    /// ChaCha20-Poly1305 (RFC 8439).
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha).
    XChaCha20Poly1305,
    /// No encryption. INSECURE: only accepted in development mode.
    None,
}

/// Length of every algorithm's authentication tag.
pub const TAG_LEN: usize = 16;

impl Algorithm {
    /// The four real algorithms, in id order.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Aes256Gcm,
        Algorithm::Aes128Gcm,
        Algorithm::ChaCha20Poly1305,
        Algorithm::XChaCha20Poly1305,
    ];

    /// The id written in envelope headers (0 for `None`, which never seals).
    pub fn id(self) -> u8 {
        match self {
            Algorithm::None => 0,
            Algorithm::Aes256Gcm => 1,
            Algorithm::Aes128Gcm => 2,
            Algorithm::ChaCha20Poly1305 => 3,
            Algorithm::XChaCha20Poly1305 => 4,
        }
    }

    /// The algorithm with envelope id `id`, if it is a real one.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.id() == id)
    }

    /// Key length in bytes (0 for `None`).
    pub fn key_len(self) -> usize {
        match self {
            Algorithm::Aes128Gcm => 16,
            Algorithm::None => 0,
            _ => 32,
        }
    }

    /// Nonce length in bytes (0 for `None`).
    pub fn nonce_len(self) -> usize {
        match self {
            Algorithm::XChaCha20Poly1305 => 24,
            Algorithm::None => 0,
            _ => 12,
        }
    }

    /// Whether nonces are random (true for XChaCha20) rather than counters.
    pub fn random_nonces(self) -> bool {
        self == Algorithm::XChaCha20Poly1305
    }

    /// Display name, e.g. `"AES-256-GCM"`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Aes256Gcm => "AES-256-GCM",
            Algorithm::Aes128Gcm => "AES-128-GCM",
            Algorithm::ChaCha20Poly1305 => "ChaCha20-Poly1305",
            Algorithm::XChaCha20Poly1305 => "XChaCha20-Poly1305",
            Algorithm::None => "none",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
