//! [`EncryptionConfig`] and [`KeyDerivation`]: what is sealed, with what, and how keys
//! are made and rotated.

use std::time::Duration;

use super::algorithm::Algorithm;
use super::provider::ProviderChoice;
use crate::error::{Error, Result};

/// How the master key is derived from a password or secret
/// ([`MemoryEncryption::from_password`](super::MemoryEncryption::from_password)), and
/// which hash the per-epoch data keys are expanded with.
///
/// Pick the defaults without spelling them: [`KeyDerivation::argon2id`],
/// [`KeyDerivation::pbkdf2_sha256`], or `KeyDerivation::default()` (Argon2id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyDerivation {
    /// HKDF-SHA256 (RFC 5869). Fast; only for high-entropy input (at least 32 bytes,
    /// e.g. a key from a KMS) — never for human passwords.
    HkdfSha256,
    /// HKDF-SHA384: as `HkdfSha256` with SHA-384 (also used to expand data keys).
    HkdfSha384,
    /// Argon2id (RFC 9106): memory-hard, for passwords.
    Argon2id {
        /// Memory in KiB (default 65,536 = 64 MiB).
        memory_cost: u32,
        /// Passes (default 3).
        time_cost: u32,
        /// Lanes (default 4).
        parallelism: u32,
    },
    /// PBKDF2-HMAC-SHA256: for compatibility with systems that mandate it.
    Pbkdf2Sha256 {
        /// Iterations (default 600,000, the OWASP 2023 figure for HMAC-SHA256).
        iterations: u32,
    },
}

/// Argon2id defaults (RFC 9106 §4's second recommended option scaled to 64 MiB, as in
/// the reference API).
pub const ARGON2ID_DEFAULT: KeyDerivation = KeyDerivation::Argon2id {
    memory_cost: 65_536,
    time_cost: 3,
    parallelism: 4,
};

/// PBKDF2 iterations below which a configuration is refused in production.
pub const PBKDF2_MIN_ITERATIONS: u32 = 600_000;

impl Default for KeyDerivation {
    fn default() -> Self {
        ARGON2ID_DEFAULT
    }
}

impl KeyDerivation {
    /// Argon2id with m = 64 MiB, t = 3, p = 4.
    pub fn argon2id() -> Self {
        ARGON2ID_DEFAULT
    }

    /// PBKDF2-HMAC-SHA256 with 600,000 iterations.
    pub fn pbkdf2_sha256() -> Self {
        KeyDerivation::Pbkdf2Sha256 {
            iterations: PBKDF2_MIN_ITERATIONS,
        }
    }

    /// Display name with parameters.
    pub fn describe(&self) -> String {
        match *self {
            KeyDerivation::HkdfSha256 => "HKDF-SHA256".into(),
            KeyDerivation::HkdfSha384 => "HKDF-SHA384".into(),
            KeyDerivation::Argon2id {
                memory_cost,
                time_cost,
                parallelism,
            } => format!("Argon2id (m={memory_cost} KiB, t={time_cost}, p={parallelism})"),
            KeyDerivation::Pbkdf2Sha256 { iterations } => {
                format!("PBKDF2-HMAC-SHA256 ({iterations} iterations)")
            }
        }
    }

    /// Why these parameters are too weak for production, if they are.
    pub fn weakness(&self) -> Option<String> {
        match *self {
            KeyDerivation::Argon2id {
                memory_cost,
                time_cost,
                ..
            } if memory_cost < 19_456 || time_cost < 2 => Some(format!(
                "Argon2id with m={memory_cost} KiB, t={time_cost} is below the minimum of \
                 m=19456 KiB, t=2; use KeyDerivation::argon2id()"
            )),
            KeyDerivation::Pbkdf2Sha256 { iterations } if iterations < PBKDF2_MIN_ITERATIONS => {
                Some(format!(
                    "PBKDF2 with {iterations} iterations is below {PBKDF2_MIN_ITERATIONS}; \
                     use KeyDerivation::pbkdf2_sha256()"
                ))
            }
            _ => None,
        }
    }
}

/// Default interval of automatic key rotation in [`EncryptionConfig::secure`].
pub const DEFAULT_ROTATION: Duration = Duration::from_secs(24 * 3600);
/// Default time a superseded key stays usable for opening before it is zeroized.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);
/// Default bound on records sealed under one key before it is rotated (2^32).
pub const DEFAULT_MAX_SEALS_PER_KEY: u64 = 1 << 32;
/// Default bound on bytes sealed under one key before it is rotated (2^40 = 1 TiB).
pub const DEFAULT_MAX_BYTES_PER_KEY: u64 = 1 << 40;
/// Default STREAM chunk size for large buffers (64 KiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;

/// What to seal, with which algorithm, keys and rotation.
///
/// ```
/// use ringkernel_core::security::encryption::{Algorithm, EncryptionConfig, KeyDerivation};
/// use std::time::Duration;
///
/// let config = EncryptionConfig::new()
///     .algorithm(Algorithm::Aes256Gcm)
///     .key_derivation(KeyDerivation::argon2id())
///     .auto_rotate(Duration::from_secs(24 * 3600));
/// assert_eq!(config.get_algorithm(), Algorithm::Aes256Gcm);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionConfig {
    pub(crate) algorithm: Algorithm,
    pub(crate) key_derivation: KeyDerivation,
    pub(crate) auto_rotate: Option<Duration>,
    pub(crate) grace_period: Duration,
    pub(crate) max_seals_per_key: u64,
    pub(crate) max_bytes_per_key: u64,
    pub(crate) provider: ProviderChoice,
    pub(crate) encrypt_control_blocks: bool,
    pub(crate) encrypt_message_queues: bool,
    pub(crate) encrypt_kernel_state: bool,
    pub(crate) chunk_size: u32,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl EncryptionConfig {
    /// AES-256-GCM, Argon2id for passwords, no timed rotation (the usage bound still
    /// rotates), control blocks, message queues and kernel state all sealed.
    pub fn new() -> Self {
        EncryptionConfig {
            algorithm: Algorithm::Aes256Gcm,
            key_derivation: ARGON2ID_DEFAULT,
            auto_rotate: None,
            grace_period: DEFAULT_GRACE,
            max_seals_per_key: DEFAULT_MAX_SEALS_PER_KEY,
            max_bytes_per_key: DEFAULT_MAX_BYTES_PER_KEY,
            provider: ProviderChoice::Auto,
            encrypt_control_blocks: true,
            encrypt_message_queues: true,
            encrypt_kernel_state: true,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }

    /// The secure default: AES-256-GCM, Argon2id, rotation every 24 hours, everything
    /// sealed.
    pub fn secure() -> Self {
        Self::new().auto_rotate(DEFAULT_ROTATION)
    }

    /// The AEAD. `Algorithm::None` disables encryption (refused in production).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The password KDF (and the hash for data-key expansion).
    pub fn key_derivation(mut self, kdf: KeyDerivation) -> Self {
        self.key_derivation = kdf;
        self
    }

    /// Rotate the data key this often.
    pub fn auto_rotate(mut self, every: Duration) -> Self {
        self.auto_rotate = Some(every);
        self
    }

    /// How long a superseded key still opens data before it is zeroized (default 60 s).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// Rotate after this many records sealed under one key (default 2^32).
    pub fn max_seals_per_key(mut self, n: u64) -> Self {
        self.max_seals_per_key = n;
        self
    }

    /// Rotate after this many bytes sealed under one key (default 2^40).
    pub fn max_bytes_per_key(mut self, n: u64) -> Self {
        self.max_bytes_per_key = n;
        self
    }

    /// Which AEAD provider seals and opens (see [`ProviderChoice`]).
    pub fn provider(mut self, choice: ProviderChoice) -> Self {
        self.provider = choice;
        self
    }

    /// Seal kernels' control blocks in their device buffers (default on).
    pub fn encrypt_control_blocks(mut self, on: bool) -> Self {
        self.encrypt_control_blocks = on;
        self
    }

    /// Seal K2K payloads while they wait in queues (default on).
    pub fn encrypt_message_queues(mut self, on: bool) -> Self {
        self.encrypt_message_queues = on;
        self
    }

    /// Seal kernel state saved with `KernelContext::save_state` (default on).
    pub fn encrypt_kernel_state(mut self, on: bool) -> Self {
        self.encrypt_kernel_state = on;
        self
    }

    /// STREAM chunk size for large buffers (default 64 KiB, at least 1 KiB).
    pub fn chunk_size(mut self, bytes: u32) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// The configured algorithm.
    pub fn get_algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The configured KDF.
    pub fn get_key_derivation(&self) -> KeyDerivation {
        self.key_derivation
    }

    /// The configured rotation interval.
    pub fn get_auto_rotate(&self) -> Option<Duration> {
        self.auto_rotate
    }

    /// Whether control blocks are sealed.
    pub fn seals_control_blocks(&self) -> bool {
        self.algorithm != Algorithm::None && self.encrypt_control_blocks
    }

    /// Whether queued K2K payloads are sealed.
    pub fn seals_message_queues(&self) -> bool {
        self.algorithm != Algorithm::None && self.encrypt_message_queues
    }

    /// Whether saved kernel state is sealed.
    pub fn seals_kernel_state(&self) -> bool {
        self.algorithm != Algorithm::None && self.encrypt_kernel_state
    }

    /// Checks values that can never work.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.chunk_size < 1024 {
            return Err(Error::InvalidConfig(format!(
                "chunk_size {} is below 1024 bytes",
                self.chunk_size
            )));
        }
        if self.max_seals_per_key == 0 || self.max_bytes_per_key == 0 {
            return Err(Error::InvalidConfig(
                "max_seals_per_key and max_bytes_per_key must be at least 1".into(),
            ));
        }
        if self.auto_rotate.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidConfig(
                "auto_rotate must be longer than zero".into(),
            ));
        }
        if let KeyDerivation::Pbkdf2Sha256 { iterations: 0 } = self.key_derivation {
            return Err(Error::InvalidConfig(
                "PBKDF2 needs at least one iteration".into(),
            ));
        }
        Ok(())
    }

    /// Why this configuration must not run in production, if it must not.
    pub fn insecurity(&self) -> Option<String> {
        if self.algorithm == Algorithm::None {
            return Some(
                "Algorithm::None disables memory encryption; use EncryptionConfig::secure() \
                 (or choose an algorithm), or build with RuntimeBuilder::development()"
                    .into(),
            );
        }
        self.key_derivation.weakness()
    }
}
