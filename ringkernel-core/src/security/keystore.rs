//! The keystore: production keys that survive restarts.
//!
//! One file in the state directory (`keystore.json`) holds the runtime's master key,
//! the audit log's Ed25519 signing seed and the live key epochs (each epoch's salt),
//! sealed with AES-256-GCM under a **key-encryption key** (KEK) that never touches the
//! disk: derived from a password (Argon2id), read from a key file, bytes the caller
//! supplies, or (feature `pkcs11`) an AES-256 key that never leaves a PKCS#11 token,
//! which then seals and opens the secrets itself ([`pkcs11`]). The file names the kind
//! of KEK that sealed it; opening it with another kind is refused with
//! [`Error::WrongKey`]. A runtime built with the keystore also keeps its kernels'
//! launch and snapshot counts in the file's readable header, authenticated with the
//! sealed part: an edited count is refused as [`Error::Tampered`].
//!
//! ```
//! use ringkernel_core::security::encryption::EncryptionConfig;
//! use ringkernel_core::security::keystore::{KeyEncryptionKey, Keystore};
//!
//! let dir = tempfile::tempdir()?;
//! let kek = || KeyEncryptionKey::from_bytes(&[7u8; 32]);
//! let first = Keystore::open(dir.path(), kek()?)?;
//! assert!(first.is_new());
//! let enc = first.encryption(EncryptionConfig::secure())?;
//! let sealed = enc.encrypt_bytes(b"survives a restart")?;
//! drop((enc, first));
//!
//! // The next run unseals the same keys and opens what the first one sealed.
//! let again = Keystore::open(dir.path(), kek()?)?;
//! assert!(!again.is_new());
//! let enc = again.encryption(EncryptionConfig::secure())?;
//! assert_eq!(&enc.decrypt_bytes(&sealed)?[..], b"survives a restart");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every change (a new epoch, retired epochs) is written to a temporary file, synced,
//! and renamed over the keystore before the new key seals anything, so a crash leaves
//! the old or the new keystore, whole. Each write carries a generation number that
//! only grows. A restart never seals under an earlier process's epoch: it derives the
//! earlier live epochs for opening and starts a fresh one (fresh random salt), so
//! counter nonces never repeat under one key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::security::audit::format::{hex, unhex};
use crate::security::audit::{AuditPublicKey, AuditSigningKey};
use crate::security::encryption::kdf;
use crate::security::encryption::{
    EPOCH_SALT_LEN, EncryptionConfig, EpochSalt, KeyDerivation, KeySource, KeyringState,
    MemoryEncryption,
};
use crate::security::memory::SecureBuffer;

/// The keystore's file name in the state directory.
pub const FILE_NAME: &str = "keystore.json";
/// The file format identifier (also authenticated).
pub const FORMAT: &str = "ringkernel.keystore/v1";
/// Smallest key file accepted, in bytes.
pub const MIN_KEY_FILE_LEN: usize = 32;

#[cfg(feature = "pkcs11")]
pub mod pkcs11;

const SECRETS_MAGIC: &[u8; 4] = b"RKKS";
const SECRETS_VERSION: u8 = 1;
const KEY_LEN: usize = 32;

/// Where a keystore's key-encryption key comes from. The KEK seals the keystore; it is
/// never written to the keystore's directory.
pub struct KeyEncryptionKey {
    source: KekSource,
}

enum KekSource {
    /// A password, stretched with Argon2id under the keystore's salt.
    Password {
        password: SecureBuffer,
        kdf: KeyDerivation,
    },
    /// 32 bytes read from a key file (HKDF-expanded if longer).
    KeyFile { path: PathBuf, key: SecureBuffer },
    /// 32 bytes the caller holds (for example unwrapped by a KMS).
    Bytes(SecureBuffer),
    /// An AES-256 key inside a PKCS#11 token, which seals and opens the secrets.
    #[cfg(feature = "pkcs11")]
    Token(Arc<pkcs11::TokenKey>),
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            KekSource::KeyFile { path, .. } => {
                write!(
                    f,
                    "KeyEncryptionKey(key-file {}, [REDACTED])",
                    path.display()
                )
            }
            #[cfg(feature = "pkcs11")]
            KekSource::Token(key) => write!(f, "KeyEncryptionKey(pkcs11 {key:?})"),
            _ => write!(f, "KeyEncryptionKey({}, [REDACTED])", self.kind()),
        }
    }
}

impl KeyEncryptionKey {
    /// A KEK derived from `password` with Argon2id at its defaults (64 MiB, 3 passes,
    /// 4 lanes) and the keystore's random salt.
    pub fn password(password: &str) -> Self {
        Self::password_with(password, crate::security::encryption::ARGON2ID_DEFAULT)
            .unwrap_or_else(|_| unreachable!("the default is Argon2id"))
    }

    /// A KEK derived from `password` with the given Argon2id parameters (recorded in the
    /// keystore; only Argon2id is accepted for passwords).
    pub fn password_with(password: &str, kdf: KeyDerivation) -> Result<Self> {
        if !matches!(kdf, KeyDerivation::Argon2id { .. }) {
            return Err(Error::InvalidConfig(
                "a keystore password is stretched with Argon2id; pass KeyDerivation::Argon2id { .. }".into(),
            ));
        }
        if password.is_empty() {
            return Err(Error::InvalidConfig(
                "an empty keystore password protects nothing".into(),
            ));
        }
        Ok(KeyEncryptionKey {
            source: KekSource::Password {
                password: SecureBuffer::from_slice(password.as_bytes()),
                kdf,
            },
        })
    }

    /// A KEK read from the file at `path`: at least 32 bytes of key material (longer
    /// files are expanded with HKDF-SHA256). On Unix the file must not be readable or
    /// writable by group or others.
    pub fn key_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| {
            Error::InvalidConfig(format!("cannot read key file {}: {e}", path.display()))
        })?;
        let bytes = SecureBuffer::from_slice(&zeroize::Zeroizing::new(bytes));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(Error::InvalidConfig(format!(
                    "key file {} is accessible by group or others (mode {:o}); run chmod 600 on it",
                    path.display(),
                    mode & 0o777
                )));
            }
        }
        if bytes.len() < MIN_KEY_FILE_LEN {
            return Err(Error::InvalidConfig(format!(
                "key file {} holds {} bytes; a key file needs at least {MIN_KEY_FILE_LEN} random bytes",
                path.display(),
                bytes.len()
            )));
        }
        let mut key = SecureBuffer::new(KEY_LEN);
        kdf::hkdf(
            &KeyDerivation::HkdfSha256,
            None,
            bytes.as_slice(),
            b"ringkernel/keystore/key-file",
            key.as_mut_slice(),
        )?;
        Ok(KeyEncryptionKey {
            source: KekSource::KeyFile {
                path: path.to_owned(),
                key,
            },
        })
    }

    /// A KEK from 32 bytes the caller holds (for example unwrapped by a cloud KMS).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != KEY_LEN {
            return Err(Error::InvalidConfig(format!(
                "a key-encryption key is {KEY_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(KeyEncryptionKey {
            source: KekSource::Bytes(SecureBuffer::from_slice(bytes)),
        })
    }

    /// A KEK held in a PKCS#11 token: opens the module, finds the token, logs in with
    /// the PIN from its source and finds the AES-256 key labelled `key_label` (create it
    /// once with [`pkcs11::generate_key`]). The key never leaves the token: the token
    /// seals and opens the keystore's secrets. A missing module, an unknown token, a
    /// refused PIN or an absent key is an [`Error::Token`] naming it.
    #[cfg(feature = "pkcs11")]
    pub fn pkcs11(config: &pkcs11::Pkcs11Config) -> Result<Self> {
        Ok(KeyEncryptionKey {
            source: KekSource::Token(Arc::new(pkcs11::TokenKey::open(config)?)),
        })
    }

    /// What kind of KEK this is: `"password"`, `"key-file"`, `"bytes"` or `"pkcs11"`.
    pub fn kind(&self) -> &'static str {
        match self.source {
            KekSource::Password { .. } => "password",
            KekSource::KeyFile { .. } => "key-file",
            KekSource::Bytes(_) => "bytes",
            #[cfg(feature = "pkcs11")]
            KekSource::Token(_) => "pkcs11",
        }
    }

    /// A fresh descriptor for a new keystore (a random salt for passwords).
    fn new_descriptor(&self) -> Result<KekDescriptor> {
        Ok(match &self.source {
            KekSource::Password { kdf, .. } => {
                let KeyDerivation::Argon2id {
                    memory_cost,
                    time_cost,
                    parallelism,
                } = *kdf
                else {
                    unreachable!("checked at construction")
                };
                let mut salt = [0u8; kdf::SALT_LEN];
                getrandom::fill(&mut salt).map_err(Error::Randomness)?;
                KekDescriptor {
                    kind: "password".into(),
                    salt: Some(hex(&salt)),
                    memory_kib: Some(memory_cost),
                    time_cost: Some(time_cost),
                    lanes: Some(parallelism),
                    key_label: None,
                }
            }
            #[cfg(feature = "pkcs11")]
            KekSource::Token(key) => KekDescriptor {
                kind: self.kind().into(),
                salt: None,
                memory_kib: None,
                time_cost: None,
                lanes: None,
                key_label: Some(key.key_label().to_owned()),
            },
            _ => KekDescriptor {
                kind: self.kind().into(),
                salt: None,
                memory_kib: None,
                time_cost: None,
                lanes: None,
                key_label: None,
            },
        })
    }

    /// What seals and opens a keystore described by `desc`: a 256-bit wrapping key in
    /// locked memory, or the token.
    fn sealer(&self, desc: &KekDescriptor, path: &Path) -> Result<Sealer> {
        if desc.kind != self.kind() {
            return Err(Error::WrongKey(format!(
                "the keystore {} is sealed under a {} key-encryption key, not a {} one; \
                 open it with the kind of key it was created with",
                path.display(),
                desc.kind,
                self.kind()
            )));
        }
        match &self.source {
            KekSource::Password { password, .. } => {
                let corrupt =
                    |why: &str| Error::corrupt("keystore", format!("{}: {why}", path.display()));
                let salt = desc
                    .salt
                    .as_deref()
                    .and_then(unhex)
                    .ok_or_else(|| corrupt("password salt missing or not hex"))?;
                let (Some(m), Some(t), Some(p)) = (desc.memory_kib, desc.time_cost, desc.lanes)
                else {
                    return Err(corrupt("Argon2id parameters missing"));
                };
                let mut key = SecureBuffer::new(KEY_LEN);
                kdf::argon2id(
                    password.as_slice(),
                    &salt,
                    None,
                    None,
                    m,
                    t,
                    p,
                    key.as_mut_slice(),
                )?;
                Ok(Sealer::Host(key))
            }
            KekSource::KeyFile { key, .. } | KekSource::Bytes(key) => {
                Ok(Sealer::Host(SecureBuffer::from_slice(key.as_slice())))
            }
            #[cfg(feature = "pkcs11")]
            KekSource::Token(key) => Ok(Sealer::Token(key.clone())),
        }
    }
}

/// The constant a token-held KEK seals as its check value, and the AAD it seals it under.
#[cfg(feature = "pkcs11")]
const TOKEN_CHECK: &[u8; 16] = b"rk/kek-check/v1\0";
#[cfg(feature = "pkcs11")]
const TOKEN_CHECK_AAD: &[u8] = b"ringkernel/keystore/kek-check";

/// Seals and opens the keystore's secrets with AES-256-GCM: on the host under a wrapping
/// key in locked memory, or inside a PKCS#11 token.
enum Sealer {
    Host(SecureBuffer),
    #[cfg(feature = "pkcs11")]
    Token(Arc<pkcs11::TokenKey>),
}

impl Sealer {
    /// Seals `plain` under a fresh random nonce; returns the nonce and the ciphertext.
    fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<([u8; 12], Vec<u8>)> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(Error::Randomness)?;
        match self {
            Sealer::Host(key) => {
                let cipher = aes_gcm::Aes256Gcm::new_from_slice(key.as_slice())
                    .map_err(|_| Error::backend("AES-256-GCM key setup failed"))?;
                let sealed = cipher
                    .encrypt(
                        aes_gcm::Nonce::from_slice(&nonce),
                        Payload { msg: plain, aad },
                    )
                    .map_err(|_| Error::backend("keystore sealing failed"))?;
                Ok((nonce, sealed))
            }
            #[cfg(feature = "pkcs11")]
            Sealer::Token(key) => key.seal(nonce, plain, aad),
        }
    }

    /// Opens what [`Sealer::seal`] sealed, into locked memory; [`Error::Tampered`] when
    /// it does not authenticate.
    fn open(&self, nonce: &[u8], sealed: &[u8], aad: &[u8]) -> Result<SecureBuffer> {
        match self {
            Sealer::Host(key) => {
                let cipher = aes_gcm::Aes256Gcm::new_from_slice(key.as_slice())
                    .map_err(|_| Error::backend("AES-256-GCM key setup failed"))?;
                let plain = cipher
                    .decrypt(
                        aes_gcm::Nonce::from_slice(nonce),
                        Payload { msg: sealed, aad },
                    )
                    .map_err(|_| Error::Tampered)?;
                let plain = zeroize::Zeroizing::new(plain);
                Ok(SecureBuffer::from_slice(&plain))
            }
            #[cfg(feature = "pkcs11")]
            Sealer::Token(key) => key.open_sealed(nonce, sealed, aad),
        }
    }

    /// A fresh check value, stored in the keystore, that tells a wrong KEK from a
    /// damaged file: HKDF of the wrapping key (16 bytes), or for a token, a constant
    /// sealed by the token (nonce, ciphertext and tag).
    fn new_check(&self) -> Result<Vec<u8>> {
        match self {
            Sealer::Host(key) => Ok(kek_check(key)?.to_vec()),
            #[cfg(feature = "pkcs11")]
            Sealer::Token(_) => {
                let (nonce, sealed) = self.seal(TOKEN_CHECK, TOKEN_CHECK_AAD)?;
                Ok([&nonce[..], &sealed].concat())
            }
        }
    }

    /// Whether `stored` is this KEK's check value; `None` when it cannot be one (wrong
    /// length). `Err` only when the token failed.
    fn matches_check(&self, stored: &[u8]) -> Result<Option<bool>> {
        match self {
            Sealer::Host(key) => {
                if stored.len() != 16 {
                    return Ok(None);
                }
                Ok(Some(bool::from(kek_check(key)?.ct_eq(stored))))
            }
            #[cfg(feature = "pkcs11")]
            Sealer::Token(key) => {
                if stored.len() <= 12 {
                    return Ok(None);
                }
                match key.open_sealed(&stored[..12], &stored[12..], TOKEN_CHECK_AAD) {
                    Ok(plain) => Ok(Some(bool::from(plain.as_slice().ct_eq(TOKEN_CHECK)))),
                    Err(Error::Tampered) => Ok(Some(false)),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Names the key for a "wrong key" message.
    fn describe(&self, kind: &str) -> String {
        match self {
            Sealer::Host(_) => format!("{kind} key-encryption key"),
            #[cfg(feature = "pkcs11")]
            Sealer::Token(key) => format!(
                "token key (not the key {:?} in {})",
                key.key_label(),
                key.token()
            ),
        }
    }
}

/// How the KEK is derived, as stored (and authenticated) in the keystore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct KekDescriptor {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memory_kib: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time_cost: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lanes: Option<u32>,
    /// For a PKCS#11 token: the label of the key in the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_label: Option<String>,
}

/// The authenticated, non-secret part of the file.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Public {
    format: String,
    kek: KekDescriptor,
    /// HKDF(KEK, "ringkernel/keystore/kek-check"), 16 bytes, or for a token a constant
    /// the token sealed (nonce, ciphertext, tag): a wrong KEK is named as such before
    /// the secrets are opened.
    kek_check: String,
    /// Grows by one with every write.
    generation: u64,
    /// The audit log's public key (so an operator can read it without the KEK).
    audit_public_key: String,
    /// The runtime's per-kernel counts (launch incarnations, exported snapshot
    /// generations): not secret, authenticated with the rest of this part. Absent
    /// while empty, so a file written before they were kept here reads the same.
    #[serde(default, skip_serializing_if = "KernelCounts::is_empty")]
    counts: KernelCounts,
}

/// Per-kernel counts that only grow, kept in the keystore so that lowering one (to
/// have an older snapshot accepted as the latest, or an earlier launch's sealed
/// context again) needs the KEK, or an older copy of the whole keystore, keys and all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KernelCounts {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    incarnations: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    snapshots: BTreeMap<String, u32>,
}

/// Which of a keystore's [`KernelCounts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CountKind {
    /// Launch incarnations.
    Incarnations,
    /// Exported state-snapshot generations.
    Snapshots,
}

impl KernelCounts {
    fn is_empty(&self) -> bool {
        self.incarnations.is_empty() && self.snapshots.is_empty()
    }

    fn of_mut(&mut self, kind: CountKind) -> &mut BTreeMap<String, u32> {
        match kind {
            CountKind::Incarnations => &mut self.incarnations,
            CountKind::Snapshots => &mut self.snapshots,
        }
    }
}

/// The file.
#[derive(Debug, Serialize, Deserialize)]
struct File {
    #[serde(flatten)]
    public: Public,
    nonce: String,
    sealed: String,
}

/// What can be read from a keystore without printing a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeystoreInfo {
    /// The keystore file.
    pub path: PathBuf,
    /// File format.
    pub format: String,
    /// `"password"`, `"key-file"`, `"bytes"` or `"pkcs11"`.
    pub kek_kind: String,
    /// For a `"pkcs11"` keystore, the label of the key in the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kek_key_label: Option<String>,
    /// Writes so far (grows with every rotation, retirement and restart).
    pub generation: u64,
    /// Highest key epoch ever issued.
    pub highest_epoch: u32,
    /// Live key epochs (ascending; the last seals).
    pub live_epochs: Vec<u32>,
    /// The audit log's public key (hex).
    pub audit_public_key: String,
}

struct Secrets {
    master: SecureBuffer,
    audit_seed: SecureBuffer,
    keys: KeyringState,
    /// Written to the file's authenticated public part, not the sealed payload.
    counts: KernelCounts,
    /// The nonce of the file this handle last read or wrote (random per write): with
    /// the generation, what a write checks is still the file on disk.
    file_nonce: String,
}

impl Secrets {
    /// The audit log's signing key, from its seed.
    fn audit_key(&self) -> AuditSigningKey {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(self.audit_seed.as_slice());
        let key = AuditSigningKey::from_seed(&seed);
        zeroize::Zeroize::zeroize(&mut seed);
        key
    }
}

struct Inner {
    path: PathBuf,
    sealer: Sealer,
    kek_kind: &'static str,
    descriptor: KekDescriptor,
    kek_check: Vec<u8>,
    secrets: Mutex<(u64, Secrets)>,
    fresh: bool,
    encryption_taken: AtomicBool,
}

/// Production keys kept across restarts, sealed under a [`KeyEncryptionKey`]. Cheap to
/// clone. See the module docs.
#[derive(Clone)]
pub struct Keystore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("path", &self.inner.path)
            .field("kek", &self.inner.kek_kind)
            .finish_non_exhaustive()
    }
}

impl Keystore {
    /// Opens the keystore in `dir` (created with fresh random keys when `dir` holds
    /// none). A KEK other than the one it was created with is refused with
    /// [`Error::WrongKey`]; a damaged or modified file with [`Error::Corrupt`] or
    /// [`Error::Tampered`].
    pub fn open(dir: impl AsRef<Path>, kek: KeyEncryptionKey) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => Self::unseal(path, &bytes, &kek),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path, &kek),
            Err(e) => Err(e.into()),
        }
    }

    fn create(path: PathBuf, kek: &KeyEncryptionKey) -> Result<Self> {
        let descriptor = kek.new_descriptor()?;
        let sealer = kek.sealer(&descriptor, &path)?;
        let mut master = SecureBuffer::new(KEY_LEN);
        let mut audit_seed = SecureBuffer::new(KEY_LEN);
        for b in [&mut master, &mut audit_seed] {
            getrandom::fill(b.as_mut_slice()).map_err(Error::Randomness)?;
        }
        let ks = Keystore {
            inner: Arc::new(Inner {
                kek_check: sealer.new_check()?,
                path,
                sealer,
                kek_kind: kek.kind(),
                descriptor,
                secrets: Mutex::new((
                    0,
                    Secrets {
                        master,
                        audit_seed,
                        keys: KeyringState::default(),
                        counts: KernelCounts::default(),
                        file_nonce: String::new(),
                    },
                )),
                fresh: true,
                encryption_taken: AtomicBool::new(false),
            }),
        };
        {
            let mut guard = ks.inner.secrets.lock();
            ks.inner.write(&mut guard)?;
        }
        Ok(ks)
    }

    fn unseal(path: PathBuf, bytes: &[u8], kek: &KeyEncryptionKey) -> Result<Self> {
        let corrupt =
            |why: String| Error::corrupt("keystore", format!("{}: {why}", path.display()));
        let file: File =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not a keystore: {e}")))?;
        if file.public.format != FORMAT {
            return Err(corrupt(format!(
                "format {:?} is not {FORMAT:?}",
                file.public.format
            )));
        }
        let sealer = kek.sealer(&file.public.kek, &path)?;
        let stored =
            unhex(&file.public.kek_check).ok_or_else(|| corrupt("kek_check is not hex".into()))?;
        match sealer.matches_check(&stored)? {
            Some(true) => {}
            Some(false) => {
                return Err(Error::WrongKey(format!(
                    "the keystore {} was sealed under a different {}; give the one it was \
                     created with (or move the file away to start a new keystore, which \
                     leaves data sealed under the old keys unreadable)",
                    path.display(),
                    sealer.describe(kek.kind())
                )));
            }
            None => return Err(corrupt("kek_check has the wrong length".into())),
        }
        let nonce = unhex(&file.nonce)
            .filter(|n| n.len() == 12)
            .ok_or_else(|| corrupt("nonce is not 12 hex bytes".into()))?;
        let sealed = unhex(&file.sealed).ok_or_else(|| corrupt("sealed part is not hex".into()))?;
        let aad = aad(&file.public)?;
        let plain = sealer.open(&nonce, &sealed, &aad)?;
        let mut secrets = decode_secrets(plain.as_slice()).map_err(corrupt)?;
        // Authenticated with the rest of the public part (the AEAD's associated data).
        secrets.counts = file.public.counts.clone();
        secrets.file_nonce = file.nonce.clone();
        let public_key = secrets.audit_key().public_key();
        if public_key.to_hex() != file.public.audit_public_key {
            return Err(Error::Tampered);
        }
        Ok(Keystore {
            inner: Arc::new(Inner {
                path,
                sealer,
                kek_kind: kek.kind(),
                descriptor: file.public.kek,
                kek_check: stored,
                secrets: Mutex::new((file.public.generation, secrets)),
                fresh: false,
                encryption_taken: AtomicBool::new(false),
            }),
        })
    }

    /// Whether [`Keystore::open`] created this keystore (no earlier one was there).
    pub fn is_new(&self) -> bool {
        self.inner.fresh
    }

    /// The keystore file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The directory holding the keystore (the state directory).
    pub fn directory(&self) -> &Path {
        self.inner.path.parent().unwrap_or_else(|| Path::new("."))
    }

    /// The audit log's signing key (the same across restarts).
    pub fn audit_signing_key(&self) -> AuditSigningKey {
        let guard = self.inner.secrets.lock();
        guard.1.audit_key()
    }

    /// The memory encryption of this keystore's master key: the live epochs of the
    /// earlier run derived again for opening, a fresh epoch for sealing, and every
    /// later key change written to the keystore before it is used. One per keystore:
    /// a second call is refused (two keyrings writing one file would lose epochs).
    pub fn encryption(&self, config: EncryptionConfig) -> Result<MemoryEncryption> {
        if self.inner.encryption_taken.swap(true, Ordering::AcqRel) {
            return Err(Error::InvalidConfig(
                "this keystore's encryption is already in use; share that MemoryEncryption (it is cheap to clone)".into(),
            ));
        }
        let (master, keys) = {
            let guard = self.inner.secrets.lock();
            (
                SecureBuffer::from_slice(guard.1.master.as_slice()),
                guard.1.keys.clone(),
            )
        };
        let inner = self.inner.clone();
        let persist = Arc::new(move |state: &KeyringState| {
            let mut guard = inner.secrets.lock();
            guard.1.keys = state.clone();
            inner.write(&mut guard)
        });
        let result = MemoryEncryption::restored(
            config,
            master,
            KeySource::Keystore,
            Vec::new(),
            &keys,
            Some(persist),
        );
        if result.is_err() {
            self.inner.encryption_taken.store(false, Ordering::Release);
        }
        result
    }

    /// What the keystore holds, without any secret.
    pub fn info(&self) -> KeystoreInfo {
        let guard = self.inner.secrets.lock();
        KeystoreInfo {
            path: self.inner.path.clone(),
            format: FORMAT.into(),
            kek_kind: self.inner.kek_kind.into(),
            kek_key_label: self.inner.descriptor.key_label.clone(),
            generation: guard.0,
            highest_epoch: guard.1.keys.highest,
            live_epochs: guard.1.keys.epochs.iter().map(|e| e.epoch).collect(),
            audit_public_key: guard.1.audit_key().public_key().to_hex(),
        }
    }

    /// The audit log's public key.
    pub fn audit_public_key(&self) -> AuditPublicKey {
        self.audit_signing_key().public_key()
    }

    /// Kernel `id`'s count of `kind` kept here (0: none yet).
    pub(crate) fn count(&self, kind: CountKind, id: &str) -> u32 {
        self.inner
            .secrets
            .lock()
            .1
            .counts
            .of_mut(kind)
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// Runs `change` on the counts of `kind` and, when it changed them, writes the
    /// keystore before returning its result. A failed `change` or write leaves the
    /// counts as they were: what is not on disk is not in force.
    pub(crate) fn update_counts<R>(
        &self,
        kind: CountKind,
        change: impl FnOnce(&mut BTreeMap<String, u32>) -> Result<R>,
    ) -> Result<R> {
        let mut guard = self.inner.secrets.lock();
        let before = guard.1.counts.of_mut(kind).clone();
        let changed = change(guard.1.counts.of_mut(kind)).and_then(|r| {
            if *guard.1.counts.of_mut(kind) != before {
                self.inner.write(&mut guard)?;
            }
            Ok(r)
        });
        if changed.is_err() {
            *guard.1.counts.of_mut(kind) = before;
        }
        changed
    }
}

/// What a writer reads back from the file before replacing it.
#[derive(Deserialize)]
struct Version {
    generation: u64,
    nonce: String,
}

/// How long a write waits for another process's write to the keystore to finish.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Inner {
    /// An exclusive lock on `.keystore.json.lock` beside the keystore, held until the
    /// returned file is dropped.
    fn lock_for_writing(&self) -> Result<std::fs::File> {
        let mut name = std::ffi::OsString::from(".");
        name.push(self.path.file_name().unwrap_or_default());
        name.push(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.with_file_name(name))?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::Io(std::io::Error::new(
                        std::io::ErrorKind::ResourceBusy,
                        format!(
                            "the keystore {} has been locked by another process for {LOCK_WAIT:?}",
                            self.path.display()
                        ),
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
            }
        }
    }

    /// Writes the secrets as the next generation: temporary file, sync, rename, sync
    /// of the directory. The generation moves on only when the write succeeded.
    ///
    /// Writers are serialised across processes by an exclusive lock on a lock file
    /// beside the keystore, and a handle writes only over the generation it last read
    /// or wrote: another handle's write in between (a second process on the same state
    /// directory, or a second `Keystore::open`) is refused with
    /// `ErrorKind::ResourceBusy` rather than silently overwritten, which would drop
    /// that handle's key epochs and counts.
    fn write(&self, guard: &mut (u64, Secrets)) -> Result<()> {
        let _lock = self.lock_for_writing()?;
        // Removed meanwhile (None): writing puts the keys back.
        if let Some((on_disk, nonce)) = self.version_on_disk()?
            && (on_disk != guard.0 || nonce != guard.1.file_nonce)
        {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::ResourceBusy,
                format!(
                    "refused to write the keystore {}: another handle or process wrote it \
                     since this one read it (generation {on_disk} on disk, {} here); one \
                     runtime per state directory, and one Keystore::open per process (it is \
                     cheap to clone)",
                    self.path.display(),
                    guard.0
                ),
            )));
        }
        let generation = guard.0 + 1;
        let public = Public {
            format: FORMAT.into(),
            kek: self.descriptor.clone(),
            kek_check: hex(&self.kek_check),
            generation,
            audit_public_key: guard.1.audit_key().public_key().to_hex(),
            counts: guard.1.counts.clone(),
        };
        let plain = encode_secrets(&guard.1);
        let (nonce, sealed) = self.sealer.seal(plain.as_slice(), &aad(&public)?)?;
        let file = File {
            public,
            nonce: hex(&nonce),
            sealed: hex(&sealed),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::backend_caused_by("cannot encode the keystore", e))?;
        let nonce = file.nonce;
        let written =
            crate::atomic_file::write(&self.path, &bytes, crate::atomic_file::Access::OwnerOnly);
        // A write can fail after its rename (syncing the directory): the file on disk is
        // then this one, and the handle must know it, or it would refuse its own file.
        if written.is_ok()
            || self.version_on_disk().ok().flatten() == Some((generation, nonce.clone()))
        {
            guard.0 = generation;
            guard.1.file_nonce = nonce;
        }
        written
    }

    /// The generation and nonce of the keystore file on disk (`None`: no file).
    fn version_on_disk(&self) -> Result<Option<(u64, String)>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice::<Version>(&bytes)
                .map(|v| Some((v.generation, v.nonce)))
                .map_err(|e| {
                    Error::corrupt_caused_by(
                        "keystore (on disk, refusing to write over it)",
                        self.path.display().to_string(),
                        e,
                    )
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn kek_check(wrapping: &SecureBuffer) -> Result<[u8; 16]> {
    let mut check = [0u8; 16];
    kdf::hkdf(
        &KeyDerivation::HkdfSha256,
        None,
        wrapping.as_slice(),
        b"ringkernel/keystore/kek-check",
        &mut check,
    )?;
    Ok(check)
}

fn aad(public: &Public) -> Result<Vec<u8>> {
    serde_json::to_vec(public)
        .map_err(|e| Error::backend_caused_by("cannot encode the keystore header", e))
}

/// `RKKS`, version, master (32), audit seed (32), highest epoch (u32 LE), epoch count
/// (u32 LE), then per epoch: number (u32 LE), salt (32).
fn encode_secrets(s: &Secrets) -> SecureBuffer {
    let n = s.keys.epochs.len();
    let mut out = SecureBuffer::new(4 + 1 + 2 * KEY_LEN + 8 + n * (4 + EPOCH_SALT_LEN));
    let buf = out.as_mut_slice();
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(SECRETS_MAGIC);
    put(&[SECRETS_VERSION]);
    put(s.master.as_slice());
    put(s.audit_seed.as_slice());
    put(&s.keys.highest.to_le_bytes());
    put(&(n as u32).to_le_bytes());
    for e in &s.keys.epochs {
        put(&e.epoch.to_le_bytes());
        put(&e.salt);
    }
    out
}

fn decode_secrets(b: &[u8]) -> std::result::Result<Secrets, String> {
    let fixed = 4 + 1 + 2 * KEY_LEN + 8;
    if b.len() < fixed || &b[..4] != SECRETS_MAGIC {
        return Err("sealed secrets are not a keystore payload".into());
    }
    if b[4] != SECRETS_VERSION {
        return Err(format!(
            "sealed secrets version {} is not {SECRETS_VERSION}",
            b[4]
        ));
    }
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let master = SecureBuffer::from_slice(&b[5..5 + KEY_LEN]);
    let audit_seed = SecureBuffer::from_slice(&b[5 + KEY_LEN..5 + 2 * KEY_LEN]);
    let highest = u32_at(5 + 2 * KEY_LEN);
    let n = u32_at(9 + 2 * KEY_LEN) as usize;
    let body = &b[fixed..];
    if n.checked_mul(4 + EPOCH_SALT_LEN) != Some(body.len()) {
        return Err("epoch list length does not match the payload".into());
    }
    let epochs = body
        .chunks_exact(4 + EPOCH_SALT_LEN)
        .map(|c| {
            let mut salt = [0u8; EPOCH_SALT_LEN];
            salt.copy_from_slice(&c[4..]);
            EpochSalt {
                epoch: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                salt,
            }
        })
        .collect();
    Ok(Secrets {
        master,
        audit_seed,
        keys: KeyringState { highest, epochs },
        counts: KernelCounts::default(),
        file_nonce: String::new(),
    })
}
