//! Memory encryption: real AEAD over the data kernels keep in device memory.
//!
//! ```
//! use ringkernel_core::control::ControlBlock;
//! use ringkernel_core::security::encryption::{Algorithm, EncryptionConfig, MemoryEncryption};
//!
//! let encryption = MemoryEncryption::new(EncryptionConfig::new().algorithm(Algorithm::Aes256Gcm))?;
//! let block = ControlBlock::new(1024);
//! let sealed = encryption.encrypt(&block)?;
//! let opened: ControlBlock = encryption.decrypt(&sealed)?;
//! assert_eq!(opened, block);
//! encryption.rotate_key()?;
//! # Ok::<(), ringkernel_core::Error>(())
//! ```
//!
//! What the caller must never do: reuse sealed bytes as a freshness proof without
//! naming the sequence they expect (use [`MemoryEncryption::open_region`] with
//! [`SequenceCheck::Exact`]); choose `Algorithm::None` outside development.
//!
//! Layout of the sealed bytes, nonce policy, key hierarchy, rotation bounds and what is
//! and is not protected: `docs/encryption.md`.

mod algorithm;
mod config;
pub mod device;
pub mod envelope;
pub mod kdf;
mod keyring;
pub mod provider;
mod region;
mod stats;
mod stream;

pub use algorithm::{Algorithm, TAG_LEN};
pub use config::{
    ARGON2ID_DEFAULT, DEFAULT_CHUNK_SIZE, DEFAULT_GRACE, DEFAULT_MAX_BYTES_PER_KEY,
    DEFAULT_MAX_SEALS_PER_KEY, DEFAULT_ROTATION, EncryptionConfig, KeyDerivation,
    PBKDF2_MIN_ITERATIONS,
};
pub use device::{DeviceKey, DeviceOpen, DeviceSeal};
pub use envelope::{ContextId, Direction, EnvelopeKind, Header, InstanceId};
pub use provider::{AeadKey, AeadProvider, AwsLc, ProviderChoice, RustCrypto};
use stats::Counters;
pub use stats::EncryptionStats;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::security::memory::Plaintext;
use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::security::memory::SecureBuffer;
use envelope::{HeaderRef, stream_prefix_96};
pub use keyring::{EPOCH_SALT_LEN, EpochSalt, KeyringState};
use keyring::{Keyring, Reservation};

/// Identifies a data key: its epoch. Printing it reveals nothing secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch-{}", self.0)
    }
}

/// Where the master key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// 256 bits from the OS random generator.
    Random,
    /// Derived from a password or secret with the recorded KDF and salt.
    Password,
    /// Kept in a [`Keystore`](crate::security::keystore::Keystore) across restarts.
    Keystore,
    /// None: encryption disabled.
    Disabled,
}

/// Public facts about the master key: enough to derive it again from the same
/// password ([`MemoryEncryption::unlock`]) and to check the password, nothing secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMetadata {
    /// Random, password-derived, or none.
    pub source: KeySource,
    /// The KDF.
    pub kdf: KeyDerivation,
    /// The random salt used with the password (empty for random keys).
    pub salt: Vec<u8>,
    /// `HKDF(master, info = "ringkernel/v1/key-check")`, 16 bytes: lets `unlock`
    /// refuse a wrong password without revealing anything about the key.
    pub key_check: [u8; 16],
    /// The live key epochs when the metadata was taken (each epoch's random salt), so
    /// that [`MemoryEncryption::unlock`] derives the same data keys again and opens
    /// what was sealed under them. Take the metadata after the last rotation.
    pub keys: KeyringState,
}

/// How [`MemoryEncryption::open_region`] checks the envelope's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Must be exactly this one (the latest sealed): anything else is a replay.
    Exact(u64),
    /// Must be at least this one.
    AtLeast(u64),
    /// Any sequence (standalone data without freshness tracking).
    Any,
}

/// A sealed envelope's bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedData(Vec<u8>);

impl SealedData {
    /// Wraps bytes after checking they parse as an envelope.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Header::parse(&bytes)?;
        Ok(SealedData(bytes))
    }

    /// The envelope bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The envelope bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The parsed header.
    pub fn header(&self) -> Result<Header> {
        Header::parse(&self.0)
    }
}

impl fmt::Debug for SealedData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedData({} bytes)", self.0.len())
    }
}

struct Inner {
    config: EncryptionConfig,
    keyring: Option<Keyring>,
    metadata: KeyMetadata,
    counters: Counters,
    standalone_sequence: AtomicU64,
}

/// The memory-encryption layer: seals and opens regions, owns the keys, rotates them.
///
/// Cheap to clone (clones share keys and counters), so an application can keep a handle
/// after giving one to `RuntimeBuilder::with_encryption`.
#[derive(Clone)]
pub struct MemoryEncryption {
    inner: Arc<Inner>,
}

impl fmt::Debug for MemoryEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryEncryption")
            .field("algorithm", &self.inner.config.algorithm)
            .field("key", &"[REDACTED]")
            .field("current_key_id", &self.current_key_id())
            .finish()
    }
}

impl MemoryEncryption {
    /// Encryption under a random 256-bit master key.
    pub fn new(config: EncryptionConfig) -> Result<Self> {
        config.validate()?;
        if config.algorithm == Algorithm::None {
            return Ok(Self::disabled(config));
        }
        let mut master = SecureBuffer::new(kdf::MASTER_KEY_LEN);
        getrandom::fill(master.as_mut_slice()).map_err(Error::Randomness)?;
        Self::with_master(config, master, KeySource::Random, Vec::new())
    }

    /// Encryption under a master key derived from `password` with `kdf` and a fresh
    /// random salt (kept in [`MemoryEncryption::key_metadata`]); other settings from
    /// [`EncryptionConfig::secure`].
    pub fn from_password(password: &str, kdf: KeyDerivation) -> Result<Self> {
        Self::from_password_with_config(
            password.as_bytes(),
            EncryptionConfig::secure().key_derivation(kdf),
        )
    }

    /// [`MemoryEncryption::from_password`] with a full configuration (its KDF is used).
    pub fn from_password_with_config(password: &[u8], config: EncryptionConfig) -> Result<Self> {
        let mut salt = vec![0u8; kdf::SALT_LEN];
        getrandom::fill(&mut salt).map_err(Error::Randomness)?;
        Self::derive(password, config, salt, &KeyringState::default())
    }

    /// Derives the master key again from `password` and earlier `metadata` (same salt
    /// and KDF), refusing a wrong password with [`Error::WrongPassword`]. The live
    /// epochs of the metadata are derived again (so data sealed under them opens, for
    /// their grace period), and a fresh epoch is started for sealing (so no nonce is
    /// ever used twice under one key).
    pub fn unlock(
        password: &[u8],
        metadata: &KeyMetadata,
        config: EncryptionConfig,
    ) -> Result<Self> {
        if metadata.source != KeySource::Password {
            return Err(Error::InvalidConfig(
                "only password-derived keys can be unlocked from metadata".into(),
            ));
        }
        let me = Self::derive(
            password,
            config.key_derivation(metadata.kdf),
            metadata.salt.clone(),
            &metadata.keys,
        )?;
        let a = me.inner.metadata.key_check;
        let b = metadata.key_check;
        let diff = a
            .iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        if diff != 0 {
            return Err(Error::WrongPassword);
        }
        Ok(me)
    }

    fn derive(
        password: &[u8],
        config: EncryptionConfig,
        salt: Vec<u8>,
        keys: &KeyringState,
    ) -> Result<Self> {
        config.validate()?;
        if config.algorithm == Algorithm::None {
            return Ok(Self::disabled(config));
        }
        let secret = SecureBuffer::from_slice(password);
        let master = kdf::derive_master(&config.key_derivation, secret.as_slice(), &salt)?;
        Self::restored(config, master, KeySource::Password, salt, keys, None)
    }

    fn disabled(config: EncryptionConfig) -> Self {
        MemoryEncryption {
            inner: Arc::new(Inner {
                metadata: KeyMetadata {
                    source: KeySource::Disabled,
                    kdf: config.key_derivation,
                    salt: Vec::new(),
                    key_check: [0; 16],
                    keys: KeyringState::default(),
                },
                config,
                keyring: None,
                counters: Counters::default(),
                standalone_sequence: AtomicU64::new(0),
            }),
        }
    }

    fn with_master(
        config: EncryptionConfig,
        master: SecureBuffer,
        source: KeySource,
        salt: Vec<u8>,
    ) -> Result<Self> {
        Self::restored(config, master, source, salt, &KeyringState::default(), None)
    }

    /// Encryption under a kept master key with the live epochs of `keys` restored and
    /// a fresh epoch for sealing; `persist` sees every later key state before use.
    pub(crate) fn restored(
        config: EncryptionConfig,
        master: SecureBuffer,
        source: KeySource,
        salt: Vec<u8>,
        keys: &KeyringState,
        persist: Option<keyring::PersistHook>,
    ) -> Result<Self> {
        let mut key_check = [0u8; 16];
        kdf::hkdf(
            &config.key_derivation,
            None,
            master.as_slice(),
            b"ringkernel/v1/key-check",
            &mut key_check,
        )?;
        let keyring = Keyring::restore(&config, master, keys, persist)?;
        Ok(MemoryEncryption {
            inner: Arc::new(Inner {
                metadata: KeyMetadata {
                    source,
                    kdf: config.key_derivation,
                    salt,
                    key_check,
                    keys: KeyringState::default(),
                },
                config,
                keyring: Some(keyring),
                counters: Counters::default(),
                standalone_sequence: AtomicU64::new(0),
            }),
        })
    }

    fn ring(&self) -> Result<&Keyring> {
        self.inner
            .keyring
            .as_ref()
            .ok_or_else(|| Error::EncryptionDisabled)
    }

    /// Whether anything is sealed (false for `Algorithm::None`).
    pub fn is_enabled(&self) -> bool {
        self.inner.keyring.is_some()
    }

    /// The configured algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.config.algorithm
    }

    /// The configuration.
    pub fn config(&self) -> &EncryptionConfig {
        &self.inner.config
    }

    /// The current data key's id (its epoch); `None` when disabled.
    pub fn current_key_id(&self) -> Option<KeyId> {
        self.inner
            .keyring
            .as_ref()
            .map(|r| KeyId(r.current().epoch))
    }

    /// How long the current data key has been in use.
    pub fn current_key_age(&self) -> Option<Duration> {
        self.inner
            .keyring
            .as_ref()
            .map(|r| r.current().created.elapsed())
    }

    /// Records sealed under the current key.
    pub fn current_key_seals(&self) -> u64 {
        self.inner
            .keyring
            .as_ref()
            .map_or(0, |r| r.current().seals())
    }

    /// Epochs that can still open data (the current one and those in grace).
    pub fn live_key_ids(&self) -> Vec<KeyId> {
        self.inner
            .keyring
            .as_ref()
            .map(|r| r.live_epochs().into_iter().map(KeyId).collect())
            .unwrap_or_default()
    }

    /// Public facts about the master key (salt, KDF, password check value) and the
    /// live key epochs now (what [`MemoryEncryption::unlock`] needs to open what this
    /// instance sealed).
    pub fn key_metadata(&self) -> KeyMetadata {
        let mut meta = self.inner.metadata.clone();
        if let Some(ring) = &self.inner.keyring {
            meta.keys = ring.state();
        }
        meta
    }

    /// The counters.
    pub fn stats(&self) -> EncryptionStats {
        self.inner.counters.snapshot()
    }

    // ----- the reference API -------------------------------------------------------

    /// Seals a plain-old-data value (a [`ControlBlock`](crate::control::ControlBlock),
    /// say) as standalone data.
    pub fn encrypt<T: Pod>(&self, value: &T) -> Result<SealedData> {
        self.encrypt_bytes(bytemuck::bytes_of(value))
    }

    /// Opens standalone data sealed by [`MemoryEncryption::encrypt`] as a `T`.
    pub fn decrypt<T: Pod>(&self, sealed: &SealedData) -> Result<T> {
        let bytes = self.decrypt_bytes(sealed)?;
        if bytes.len() != std::mem::size_of::<T>() {
            return Err(Error::MalformedEnvelope(format!(
                "sealed value is {} bytes, the type needs {}",
                bytes.len(),
                std::mem::size_of::<T>()
            )));
        }
        Ok(bytemuck::pod_read_unaligned(&bytes))
    }

    /// Seals bytes as standalone data (single-shot up to 64 KiB, STREAM above).
    pub fn encrypt_bytes(&self, plaintext: &[u8]) -> Result<SealedData> {
        let seq = self
            .inner
            .standalone_sequence
            .fetch_add(1, Ordering::Relaxed);
        let ctx = ContextId::standalone();
        let bytes = if plaintext.len() > self.inner.config.chunk_size as usize {
            self.seal_stream(ctx, seq, plaintext, &[])?
        } else {
            self.seal_region(ctx, seq, plaintext, &[])?
        };
        Ok(SealedData(bytes))
    }

    /// Opens standalone data (either form). The plaintext is zeroed when dropped.
    pub fn decrypt_bytes(&self, sealed: &SealedData) -> Result<Plaintext> {
        self.open_any(
            sealed.as_bytes(),
            ContextId::standalone(),
            SequenceCheck::Any,
            &[],
        )
    }

    /// Starts a new key epoch now; the previous one still opens data for the grace
    /// period, then is zeroized. Returns the new key id.
    pub fn rotate_key(&self) -> Result<KeyId> {
        let epoch = self.ring()?.rotate()?;
        self.inner.counters.rotated();
        tracing::info!(epoch, "encryption key rotated");
        Ok(KeyId(epoch))
    }

    /// Rotates when the `auto_rotate` interval has passed since the current key was
    /// made. Returns the new key id if it rotated.
    pub fn rotate_if_due(&self) -> Result<Option<KeyId>> {
        let (Some(ring), Some(every)) = (&self.inner.keyring, self.inner.config.auto_rotate) else {
            return Ok(None);
        };
        if ring.older_than(every) {
            self.rotate_key().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Whether epoch `key` began because the key before it reached its usage bound
    /// (`max_seals_per_key` or `max_bytes_per_key`) during a seal: `Some(false)` when
    /// it was asked for (`rotate_key`, `rotate_if_due`), `None` when the epoch is not
    /// live (retired, or never issued).
    pub fn rotated_at_usage_bound(&self, key: KeyId) -> Option<bool> {
        self.inner
            .keyring
            .as_ref()?
            .key(key.0)
            .ok()
            .map(|k| k.at_usage_bound)
    }

    /// Zeroizes superseded keys whose grace period is over; returns their ids.
    pub fn retire_expired_keys(&self) -> Vec<KeyId> {
        let Some(ring) = &self.inner.keyring else {
            return Vec::new();
        };
        let retired = ring.retire_expired(Instant::now());
        if !retired.is_empty() {
            self.inner.counters.retired(retired.len());
            tracing::info!(?retired, "retired key epochs zeroized");
        }
        retired.into_iter().map(KeyId).collect()
    }

    // ----- regions (what the runtime uses) -------------------------------------------

    fn reserve(&self, len: usize) -> Result<Reservation> {
        let ring = self.ring()?;
        if len as u64 > self.inner.config.max_bytes_per_key {
            return Err(Error::TooLarge {
                what: "record (max_bytes_per_key)",
                len: len as u64,
                max: self.inner.config.max_bytes_per_key,
            });
        }
        let (res, rotated) = ring.reserve(len)?;
        self.note_rotation(rotated);
        Ok(res)
    }

    /// Counts and logs a rotation made at a key's usage bound.
    fn note_rotation(&self, rotated: Option<u32>) {
        if let Some(epoch) = rotated {
            self.inner.counters.rotated();
            tracing::info!(epoch, "encryption key rotated at its usage bound");
        }
    }

    fn count_seal(&self, len: usize) {
        self.inner.counters.sealed(len);
    }

    /// Seals a large buffer as a chunked STREAM envelope (chunks in parallel).
    pub fn seal_stream(
        &self,
        context: ContextId,
        sequence: u64,
        data: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.seal_stream_into(context, sequence, data, aad, &mut out)?;
        Ok(out)
    }

    /// [`MemoryEncryption::seal_stream`] into `out`, which then holds exactly the
    /// envelope. Its allocation is reused: sealing buffers of one size in a loop with
    /// one vector allocates nothing, and no byte is written twice (no zero fill), so
    /// every byte of the body is written by the parallel chunk workers. On an error
    /// `out` is left empty.
    pub fn seal_stream_into(
        &self,
        context: ContextId,
        sequence: u64,
        data: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let r = self.seal_stream_inner(context, sequence, data, aad, out);
        if r.is_err() {
            out.clear();
        }
        r
    }

    fn seal_stream_inner(
        &self,
        context: ContextId,
        sequence: u64,
        data: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let alg = self.inner.config.algorithm;
        let res = self.reserve(data.len())?;
        let prefix = if alg.random_nonces() {
            let mut p = vec![0u8; alg.nonce_len() - envelope::STREAM_NONCE_SUFFIX];
            getrandom::fill(&mut p).map_err(Error::Randomness)?;
            p
        } else {
            stream_prefix_96(Direction::Host, res.counter).to_vec()
        };
        let header = Header {
            algorithm: alg,
            kind: EnvelopeKind::Stream,
            epoch: res.key.epoch,
            context,
            sequence,
            length: data.len() as u64,
            chunk_size: self.inner.config.chunk_size,
            nonce: prefix,
        };
        let total = header
            .total_len()
            .ok_or_else(|| Error::Exhausted("STREAM envelope length".into()))?;
        let mut head = Vec::with_capacity(header.encoded_len());
        header.encode_into(&mut head);
        stream::size_output(out, total);
        out[..head.len()].copy_from_slice(&head);
        stream::seal_chunks(res.key.aead(), &header, aad, data, out)?;
        self.count_seal(data.len());
        Ok(())
    }

    /// Opens a STREAM envelope of region `context`, checking its sequence.
    pub fn open_stream(
        &self,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
        aad: &[u8],
    ) -> Result<Plaintext> {
        self.counted(self.open_inner(sealed, context, check, aad, Some(EnvelopeKind::Stream)))
    }

    /// [`MemoryEncryption::open_stream`] into `out`, which then holds exactly the
    /// plaintext; its allocation is reused and no byte is written twice. On an error
    /// `out` is zeroed and left empty.
    ///
    /// `out` then holds plaintext in ordinary memory: wipe it when done (or open into
    /// a [`Plaintext`] with [`MemoryEncryption::open_stream`], which wipes on drop).
    pub fn open_stream_into(
        &self,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let r = self.open_stream_into_inner(sealed, context, check, aad, out);
        match &r {
            Ok(()) => self.inner.counters.opened(out.len()),
            Err(_) => {
                out.fill(0);
                out.clear();
                self.inner.counters.failed();
            }
        }
        r
    }

    fn open_stream_into_inner(
        &self,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let (header, key) =
            self.checked_header(sealed, context, check, Some(EnvelopeKind::Stream))?;
        stream::open_into(key.aead(), &header, aad, sealed, out)
    }

    fn open_any(
        &self,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
        aad: &[u8],
    ) -> Result<Plaintext> {
        self.counted(self.open_inner(sealed, context, check, aad, None))
    }

    fn counted(&self, r: Result<Plaintext>) -> Result<Plaintext> {
        match &r {
            Ok(p) => self.inner.counters.opened(p.len()),
            Err(_) => self.inner.counters.failed(),
        }
        r
    }

    /// Parses `sealed`'s header and checks it as every open does (kind, algorithm,
    /// context, sequence); returns it with the key of its epoch.
    pub(crate) fn checked_header(
        &self,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
        kind: Option<EnvelopeKind>,
    ) -> Result<(Header, Arc<keyring::EpochKey>)> {
        let ring = self.ring()?;
        let header = HeaderRef::parse(sealed)?;
        self.check_header(&header, context, check, kind)?;
        let key = ring.key(header.epoch)?;
        Ok((header.to_owned(), key))
    }

    /// The checks of every open on a parsed header: kind, algorithm, context, sequence.
    fn check_header(
        &self,
        header: &HeaderRef<'_>,
        context: ContextId,
        check: SequenceCheck,
        kind: Option<EnvelopeKind>,
    ) -> Result<()> {
        if kind.is_some_and(|k| k != header.kind) {
            return Err(Error::MalformedEnvelope("unexpected envelope kind".into()));
        }
        if header.algorithm != self.inner.config.algorithm {
            // A relabelled algorithm id: the key is for another algorithm.
            return Err(Error::Tampered);
        }
        if header.context != context {
            // Same region of an earlier (or later) launch of the kernel: a replay across
            // incarnations, told apart from a block moved in from elsewhere.
            if header.context.same_region(&context) {
                return Err(Error::StaleIncarnation {
                    expected: context.incarnation(),
                    found: header.context.incarnation(),
                });
            }
            return Err(Error::WrongContext);
        }
        match check {
            SequenceCheck::Exact(expected) if header.sequence != expected => Err(Error::Replay {
                expected,
                found: header.sequence,
            }),
            SequenceCheck::AtLeast(min) if header.sequence < min => Err(Error::Replay {
                expected: min,
                found: header.sequence,
            }),
            _ => Ok(()),
        }
    }

    fn open_inner(
        &self,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
        aad: &[u8],
        kind: Option<EnvelopeKind>,
    ) -> Result<Plaintext> {
        self.ring()?;
        let parsed_kind = HeaderRef::parse(sealed)?.kind;
        if parsed_kind == EnvelopeKind::Single && kind != Some(EnvelopeKind::Stream) {
            let mut plain = Plaintext::new(Vec::new());
            self.open_into_vec_inner(sealed, context, check, aad, plain.as_vec_mut())?;
            return Ok(plain);
        }
        let (header, key) = self.checked_header(sealed, context, check, kind)?;
        stream::open_body(key.aead(), &header, aad, sealed)
    }
}
