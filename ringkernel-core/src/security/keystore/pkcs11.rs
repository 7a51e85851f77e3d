//! The keystore's key-encryption key in a PKCS#11 token (an HSM, a cloud HSM, SoftHSM2).
//!
//! The token holds a non-extractable, sensitive AES-256 key under a label. The keystore's
//! secrets are sealed and opened *by the token* with `CKM_AES_GCM` (a fresh random IV per
//! write, the keystore's authenticated header as AAD): the key never leaves the token,
//! and the opened secrets are written by the token straight into locked, zeroed-on-drop
//! memory ([`SecureBuffer`]), never into an ordinary heap buffer.
//!
//! ```no_run
//! use ringkernel_core::security::keystore::pkcs11::{
//!     self, PinSource, Pkcs11Config, TokenSelector,
//! };
//! use ringkernel_core::security::keystore::{KeyEncryptionKey, Keystore};
//!
//! let config = Pkcs11Config {
//!     module: pkcs11::SOFTHSM2_MODULE.into(),
//!     token: TokenSelector::Label("ringkernel".into()),
//!     key_label: "ringkernel-kek".into(),
//!     pin: PinSource::Env("RINGKERNEL_PKCS11_PIN".into()),
//! };
//! pkcs11::generate_key(&config)?; // once: creates the AES-256 key in the token if absent
//! let keystore = Keystore::open("/var/lib/my-app", KeyEncryptionKey::pkcs11(&config)?)?;
//! # Ok::<(), ringkernel_core::Error>(())
//! ```
//!
//! The PIN is read from an environment variable or a file when the token is opened, is
//! handed to the token for `C_Login` and never printed: [`Pkcs11Config`]'s `Debug` shows
//! where the PIN comes from, not the PIN. A missing module, an unknown token, a refused
//! PIN and an absent key each fail with [`Error::Token`] naming the module, token or key.
//!
//! PKCS#11 logins belong to the whole process: while one session of this process is
//! logged in to a token, a second login to it is not checked again by the token. A
//! process normally opens one keystore; that is what this module is built for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use parking_lot::Mutex;

use crate::error::{Error, Result, TokenFailure};
use crate::security::memory::SecureBuffer;

/// Where Debian and Ubuntu's `softhsm2` package installs the SoftHSM2 module.
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The token key's length: AES-256.
const KEY_LEN: u64 = 32;
/// GCM tag length in bits.
const TAG_BITS: u64 = 128;
/// GCM IV length in bytes.
pub(crate) const IV_LEN: usize = 12;

/// Which PKCS#11 token holds the key, and how to log in to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Config {
    /// The vendor's PKCS#11 module (shared library), e.g. [`SOFTHSM2_MODULE`],
    /// `/opt/cloudhsm/lib/libcloudhsm_pkcs11.so` or Google's `libkmsp11.so`.
    pub module: PathBuf,
    /// The token: by slot id or by token label.
    pub token: TokenSelector,
    /// The `CKA_LABEL` of the AES-256 key in the token.
    pub key_label: String,
    /// Where the user PIN comes from (never a literal: never in argv or a config file).
    pub pin: PinSource,
}

/// How a token is chosen among a module's slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSelector {
    /// The slot with this id (as `softhsm2-util --show-slots` or `pkcs11-tool -L` print).
    Slot(u64),
    /// The token with this label (trailing blanks ignored).
    Label(String),
}

/// Where the token's user PIN is read from when the token is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// The environment variable with this name.
    Env(String),
    /// The file at this path (one line; a trailing newline is ignored). On Unix it must
    /// not be readable or writable by group or others.
    File(PathBuf),
}

impl std::fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSelector::Slot(id) => write!(f, "slot {id}"),
            TokenSelector::Label(label) => write!(f, "token label {label:?}"),
        }
    }
}

fn token_error(failure: TokenFailure, reason: String) -> Error {
    Error::Token { failure, reason }
}

impl PinSource {
    /// Reads the PIN. The returned value zeroes itself when dropped.
    fn read(&self) -> Result<AuthPin> {
        let unavailable = |why: String| token_error(TokenFailure::PinUnavailable, why);
        // Zeroed when dropped: the PIN as read, before its exact-size copy below.
        let pin = zeroize::Zeroizing::new(match self {
            PinSource::Env(var) => std::env::var(var)
                .map_err(|e| unavailable(format!("the PIN variable {var} cannot be read: {e}")))?,
            PinSource::File(path) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(path)
                        .map_err(|e| {
                            unavailable(format!("cannot read PIN file {}: {e}", path.display()))
                        })?
                        .permissions()
                        .mode();
                    if mode & 0o077 != 0 {
                        return Err(unavailable(format!(
                            "PIN file {} is accessible by group or others (mode {:o}); run chmod 600 on it",
                            path.display(),
                            mode & 0o777
                        )));
                    }
                }
                let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    unavailable(format!("cannot read PIN file {}: {e}", path.display()))
                })?);
                text.trim_end_matches(['\r', '\n']).to_owned()
            }
        });
        if pin.is_empty() {
            return Err(unavailable(match self {
                PinSource::Env(var) => format!("the PIN variable {var} is empty"),
                PinSource::File(path) => format!("the PIN file {} is empty", path.display()),
            }));
        }
        // An exact-size copy: turning a String with spare capacity into the boxed secret
        // would reallocate and could leave a copy of the PIN behind, unzeroed.
        let mut exact = String::with_capacity(pin.len());
        exact.push_str(&pin);
        Ok(AuthPin::from(exact))
    }
}

/// One loaded, initialised module. PKCS#11 is initialised once per process and module
/// and never finalised while the process runs, so modules are kept here for good.
struct Module {
    path: PathBuf,
    context: Pkcs11,
    decrypt: RawDecrypt,
}

/// `C_DecryptInit` and `C_Decrypt` called directly, so that the token writes the
/// plaintext into a [`SecureBuffer`] (the `cryptoki` wrapper returns a `Vec`).
struct RawDecrypt {
    init: unsafe extern "C" fn(
        cryptoki_sys::CK_SESSION_HANDLE,
        *mut cryptoki_sys::CK_MECHANISM,
        cryptoki_sys::CK_OBJECT_HANDLE,
    ) -> cryptoki_sys::CK_RV,
    decrypt: unsafe extern "C" fn(
        cryptoki_sys::CK_SESSION_HANDLE,
        *mut cryptoki_sys::CK_BYTE,
        cryptoki_sys::CK_ULONG,
        *mut cryptoki_sys::CK_BYTE,
        *mut cryptoki_sys::CK_ULONG,
    ) -> cryptoki_sys::CK_RV,
    /// Keeps the library mapped while the function pointers above are in use.
    _library: cryptoki_sys::Pkcs11,
}

static MODULES: Mutex<Vec<Arc<Module>>> = Mutex::new(Vec::new());

fn module(path: &Path) -> Result<Arc<Module>> {
    let unavailable = |why: String| token_error(TokenFailure::ModuleUnavailable, why);
    if !path.is_file() {
        return Err(unavailable(format!(
            "the PKCS#11 module {} does not exist or is not a file (install the vendor's \
             PKCS#11 library, or give its path)",
            path.display()
        )));
    }
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut modules = MODULES.lock();
    if let Some(m) = modules.iter().find(|m| m.path == key) {
        return Ok(m.clone());
    }
    let cannot_load =
        |e: &dyn std::fmt::Display| unavailable(format!("cannot load {}: {e}", path.display()));
    let context = Pkcs11::new(&key).map_err(|e| cannot_load(&e))?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(cannot_load(&e)),
    }
    let decrypt = raw_decrypt(&key).map_err(|e| cannot_load(&e))?;
    let m = Arc::new(Module {
        path: key,
        context,
        decrypt,
    });
    modules.push(m.clone());
    Ok(m)
}

fn raw_decrypt(path: &Path) -> std::result::Result<RawDecrypt, String> {
    // SAFETY: loading a PKCS#11 module runs its initialisers; the module is the one the
    // operator configured, and `Pkcs11::new` has just loaded the same library.
    let library = unsafe { cryptoki_sys::Pkcs11::new(path) }.map_err(|e| e.to_string())?;
    let get_list = library
        .C_GetFunctionList
        .as_ref()
        .map_err(|_| "the module exports no C_GetFunctionList".to_string())?;
    let mut list: *mut cryptoki_sys::CK_FUNCTION_LIST = std::ptr::null_mut();
    // SAFETY: C_GetFunctionList writes a pointer to the module's static function list
    // into `list`, a valid out pointer.
    let rv = unsafe { get_list(&mut list) };
    if rv != cryptoki_sys::CKR_OK || list.is_null() {
        return Err(format!("C_GetFunctionList failed (CK_RV {rv:#x})"));
    }
    // SAFETY: `list` is non-null and points to the module's function list, which lives
    // as long as the library stays loaded (`library` is kept with the pointers).
    let list = unsafe { *list };
    match (list.C_DecryptInit, list.C_Decrypt) {
        (Some(init), Some(decrypt)) => Ok(RawDecrypt {
            init,
            decrypt,
            _library: library,
        }),
        _ => Err("the module provides no C_DecryptInit/C_Decrypt".into()),
    }
}

/// The token's key, with a logged-in session. Cheap to share (`Arc`).
pub(crate) struct TokenKey {
    module: Arc<Module>,
    session: Mutex<Session>,
    key: ObjectHandle,
    key_label: String,
    token: String,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenKey({} in {}, module {})",
            self.key_label,
            self.token,
            self.module.path.display()
        )
    }
}

/// A PKCS#11 error from `what`, as an [`Error::Token`] naming where it happened.
fn failed(what: &str, place: &str, e: CkError) -> Error {
    token_error(TokenFailure::Failed, format!("{what} ({place}): {e}"))
}

/// Finds the slot the selector names and logs in to it.
fn login(config: &Pkcs11Config, rw: bool) -> Result<(Arc<Module>, Session, String)> {
    let module = module(&config.module)?;
    let ctx = &module.context;
    let module_name = config.module.display().to_string();
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| failed("listing slots", &module_name, e))?;
    let mut found: Option<(Slot, String)> = None;
    for slot in slots {
        let label = match ctx.get_token_info(slot) {
            Ok(info) => info.label().trim_end().to_owned(),
            Err(_) => continue,
        };
        let matches = match &config.token {
            TokenSelector::Slot(id) => slot.id() == *id,
            TokenSelector::Label(want) => label == want.trim_end(),
        };
        if matches {
            found = Some((slot, label));
            break;
        }
    }
    let Some((slot, label)) = found else {
        return Err(token_error(
            TokenFailure::TokenNotFound,
            format!(
                "no token with {} in module {module_name} (list them with \
                 `softhsm2-util --show-slots` or `pkcs11-tool --module {module_name} -L`)",
                config.token
            ),
        ));
    };
    let token = format!("token {label:?} (slot {})", slot.id());
    let session = if rw {
        ctx.open_rw_session(slot)
    } else {
        ctx.open_ro_session(slot)
    }
    .map_err(|e| failed("opening a session", &token, e))?;
    let pin = config.pin.read()?;
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(CkError::Pkcs11(
            rv @ (RvError::PinIncorrect
            | RvError::PinInvalid
            | RvError::PinLenRange
            | RvError::PinLocked
            | RvError::PinExpired
            | RvError::UserPinNotInitialized),
            _,
        )) => {
            let code = match rv {
                RvError::PinIncorrect => "CKR_PIN_INCORRECT: the PIN is wrong",
                RvError::PinInvalid => "CKR_PIN_INVALID: the PIN has invalid characters",
                RvError::PinLenRange => "CKR_PIN_LEN_RANGE: the PIN is too long or too short",
                RvError::PinLocked => "CKR_PIN_LOCKED: too many wrong PINs; the token locked it",
                RvError::PinExpired => "CKR_PIN_EXPIRED: the PIN must be changed first",
                _ => "CKR_USER_PIN_NOT_INITIALIZED: the token has no user PIN yet",
            };
            return Err(token_error(
                TokenFailure::WrongPin,
                format!("{token} refused the user PIN ({code})"),
            ));
        }
        Err(e) => return Err(failed("login", &token, e)),
    }
    Ok((module, session, token))
}

fn find_key(session: &Session, label: &str, token: &str) -> Result<Option<ObjectHandle>> {
    let keys = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| failed("finding the key", token, e))?;
    match keys.as_slice() {
        [] => Ok(None),
        [key] => Ok(Some(*key)),
        _ => Err(token_error(
            TokenFailure::UnfitKey,
            format!(
                "{token} holds {} secret keys labelled {label:?}; give the key a unique label",
                keys.len()
            ),
        )),
    }
}

/// Refuses a key that is not a sensitive, non-extractable AES-256 key.
fn check_key(session: &Session, key: ObjectHandle, label: &str, token: &str) -> Result<()> {
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Encrypt,
                AttributeType::Decrypt,
            ],
        )
        .map_err(|e| failed("reading the key's attributes", token, e))?;
    let mut problems = Vec::new();
    let (mut aes, mut len, mut sensitive, mut extractable) = (false, 0u64, false, true);
    let (mut encrypt, mut decrypt) = (false, false);
    for a in attrs {
        match a {
            Attribute::KeyType(t) => aes = t == KeyType::AES,
            Attribute::ValueLen(l) => len = l.into(),
            Attribute::Sensitive(b) => sensitive = b,
            Attribute::Extractable(b) => extractable = b,
            Attribute::Encrypt(b) => encrypt = b,
            Attribute::Decrypt(b) => decrypt = b,
            _ => {}
        }
    }
    if !aes || len != KEY_LEN {
        problems.push("it is not an AES-256 key");
    }
    if !sensitive {
        problems.push("CKA_SENSITIVE is false");
    }
    if extractable {
        problems.push("CKA_EXTRACTABLE is true (the key could leave the token)");
    }
    if !encrypt || !decrypt {
        problems.push("it may not encrypt and decrypt");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(token_error(
            TokenFailure::UnfitKey,
            format!(
                "the key {label:?} in {token} cannot seal a keystore: {}",
                problems.join("; ")
            ),
        ))
    }
}

impl TokenKey {
    /// Opens the token, logs in and finds the key. The key must exist.
    pub(crate) fn open(config: &Pkcs11Config) -> Result<Self> {
        let (module, session, token) = login(config, false)?;
        let label = &config.key_label;
        let key = find_key(&session, label, &token)?.ok_or_else(|| {
            token_error(
                TokenFailure::KeyNotFound,
                format!(
                    "{token} holds no secret key labelled {label:?} (create it with \
                     `ringkernel keystore init --pkcs11-module ... --key-label {label}`)"
                ),
            )
        })?;
        check_key(&session, key, label, &token)?;
        Ok(TokenKey {
            module,
            session: Mutex::new(session),
            key,
            key_label: label.clone(),
            token,
        })
    }

    /// The key's label.
    pub(crate) fn key_label(&self) -> &str {
        &self.key_label
    }

    /// The token, for messages: `token "label" (slot n)`.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Seals `plain` in the token with AES-256-GCM under `iv` (the token may replace it
    /// with one it generates; the IV used is returned with the ciphertext and tag).
    pub(crate) fn seal(
        &self,
        iv: [u8; IV_LEN],
        plain: &[u8],
        aad: &[u8],
    ) -> Result<([u8; IV_LEN], Vec<u8>)> {
        let mut iv = iv;
        let sealed = {
            let params = GcmParams::new(&mut iv, aad, TAG_BITS.into())
                .map_err(|e| failed("AES-GCM parameters", &self.token, e))?;
            let session = self.session.lock();
            session
                .encrypt(&Mechanism::AesGcm(params), self.key, plain)
                .map_err(|e| failed("sealing", &self.token, e))?
        };
        Ok((iv, sealed))
    }

    /// Opens what [`TokenKey::seal`] sealed, into locked memory. A wrong key, a wrong
    /// AAD or a modified ciphertext is [`Error::Tampered`].
    pub(crate) fn open_sealed(&self, iv: &[u8], sealed: &[u8], aad: &[u8]) -> Result<SecureBuffer> {
        match self.decrypt(iv, sealed, aad) {
            Ok(plain) => Ok(plain),
            Err(CkError::Pkcs11(
                RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
                _,
            )) => Err(Error::Tampered),
            // SoftHSM2 (and other tokens) report a GCM tag that does not verify as
            // CKR_GENERAL_ERROR. A token that still seals and opens a probe with this
            // key has worked: what it refused did not authenticate.
            Err(e @ CkError::Pkcs11(RvError::GeneralError, _)) => {
                if self.round_trips() {
                    Err(Error::Tampered)
                } else {
                    Err(failed("opening", &self.token, e))
                }
            }
            Err(e) => Err(failed("opening", &self.token, e)),
        }
    }

    /// Whether the key seals and opens a random probe: the token works.
    fn round_trips(&self) -> bool {
        const AAD: &[u8] = b"ringkernel/keystore/pkcs11-probe";
        let mut probe = [0u8; 16];
        let mut iv = [0u8; IV_LEN];
        if getrandom::fill(&mut probe).is_err() || getrandom::fill(&mut iv).is_err() {
            return false;
        }
        match self.seal(iv, &probe, AAD) {
            Ok((iv, sealed)) => {
                matches!(self.decrypt(&iv, &sealed, AAD), Ok(p) if p.as_slice() == probe)
            }
            Err(_) => false,
        }
    }

    /// `C_DecryptInit` and `C_Decrypt` with AES-GCM, the token writing the plaintext
    /// into a [`SecureBuffer`].
    fn decrypt(
        &self,
        iv: &[u8],
        sealed: &[u8],
        aad: &[u8],
    ) -> std::result::Result<SecureBuffer, CkError> {
        let mut iv = iv.to_vec();
        let mechanism = Mechanism::AesGcm(GcmParams::new(&mut iv, aad, TAG_BITS.into())?);
        let mut ck_mechanism = cryptoki_sys::CK_MECHANISM::from(&mechanism);
        let sealed_len = cryptoki_sys::CK_ULONG::try_from(sealed.len())?;
        let raw = &self.module.decrypt;
        let session = self.session.lock();
        // SAFETY: the session handle belongs to the locked `session`, which stays open
        // and is used by this thread alone while the lock is held; `ck_mechanism`
        // points into `mechanism`'s GCM parameters (the IV and AAD buffers above), all
        // alive for this call.
        let rv = unsafe { (raw.init)(session.handle(), &mut ck_mechanism, self.key.handle()) };
        cryptoki::error::Rv::from(rv).into_result(Function::DecryptInit)?;
        // GCM's plaintext is shorter than its ciphertext: this buffer is large enough,
        // so the single call below ends the operation, as PKCS#11 requires.
        let mut plain = SecureBuffer::new(sealed.len());
        let mut plain_len = sealed_len;
        // SAFETY: `sealed` is read-only input of `sealed_len` bytes (C_Decrypt does not
        // write it despite the `*mut` in its signature); `plain` is a writable buffer of
        // `plain_len` bytes; `plain_len` is a valid in/out pointer. The lock is held.
        let rv = unsafe {
            (raw.decrypt)(
                session.handle(),
                sealed.as_ptr().cast_mut(),
                sealed_len,
                plain.as_mut_slice().as_mut_ptr(),
                &mut plain_len,
            )
        };
        cryptoki::error::Rv::from(rv).into_result(Function::Decrypt)?;
        let len = usize::try_from(plain_len)?;
        if len > sealed.len() {
            return Err(CkError::InvalidValue);
        }
        Ok(SecureBuffer::from_slice(&plain.as_slice()[..len]))
    }
}

/// Creates the configured key in the token when it holds none: AES-256, generated by the
/// token (`C_GenerateKey`), `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE`, not
/// `CKA_EXTRACTABLE`. Returns whether it created the key. An existing key with the label
/// is checked and kept.
pub fn generate_key(config: &Pkcs11Config) -> Result<bool> {
    let (_module, session, token) = login(config, true)?;
    let label = &config.key_label;
    if let Some(key) = find_key(&session, label, &token)? {
        check_key(&session, key, label, &token)?;
        return Ok(false);
    }
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(KEY_LEN.into()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
    ];
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(|e| failed(&format!("generating the key {label:?}"), &token, e))?;
    Ok(true)
}
