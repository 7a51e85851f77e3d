//! The keystore's key-encryption key in a real PKCS#11 token: SoftHSM2, initialised in a
//! temporary directory. The key is generated in the token; a production runtime seals
//! under the keystore, restarts (a new process) and reopens its keys and its audit log;
//! a wrong PIN, an absent key or token, a missing module, a modified keystore and a
//! keystore sealed by a password are each refused with an error naming what is wrong.
//!
//! SoftHSM2 (Debian `softhsm2`: `softhsm2-util` and its module) must be installed; the
//! module path can be overridden with `RINGKERNEL_PKCS11_MODULE`. Without it the token
//! test prints why it skips, unless `RINGKERNEL_REQUIRE_SOFTHSM=1` (scripts/test.sh sets
//! it when SoftHSM2 is installed), which makes it fail instead.

#![cfg(feature = "pkcs11")]
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

use ringkernel_core::runtime::{Runtime, RuntimeBuilder};
use ringkernel_core::security::audit::{LogStatus, verify};
use ringkernel_core::security::encryption::{KeyDerivation, SealedData};
use ringkernel_core::security::keystore::pkcs11::{self, PinSource, Pkcs11Config, TokenSelector};
use ringkernel_core::security::keystore::{FILE_NAME, KeyEncryptionKey, Keystore};
use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};
use ringkernel_core::{Error, TokenFailure};

/// Set by the parent for its child processes: the test's temporary directory.
const CHILD_DIR: &str = "RINGKERNEL_TEST_SOFTHSM_DIR";
/// The module the children load (the parent's choice, passed on).
const MODULE_ENV: &str = "RINGKERNEL_PKCS11_MODULE";
/// Set by the parent: a PIN the token refuses.
const WRONG_PIN_ENV: &str = "RINGKERNEL_TEST_WRONG_PIN";

const TOKEN: &str = "ringkernel-test";
const KEY: &str = "ringkernel-kek";
const USER_PIN: &str = "4711-user";
const SO_PIN: &str = "0815-so";

/// The SoftHSM2 module, or why the token test cannot run here.
fn softhsm() -> Result<PathBuf, String> {
    let module = std::env::var_os(MODULE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(pkcs11::SOFTHSM2_MODULE));
    if !module.is_file() {
        return Err(format!(
            "no PKCS#11 module at {} (install softhsm2, or set {MODULE_ENV})",
            module.display()
        ));
    }
    match Command::new("softhsm2-util").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(module),
        Ok(out) => Err(format!("softhsm2-util --version failed: {}", out.status)),
        Err(e) => Err(format!("softhsm2-util cannot run ({e}); install softhsm2")),
    }
}

fn config(dir: &Path, key_label: &str) -> Pkcs11Config {
    Pkcs11Config {
        module: std::env::var_os(MODULE_ENV).unwrap().into(),
        token: TokenSelector::Label(TOKEN.into()),
        key_label: key_label.into(),
        pin: PinSource::File(dir.join("pin")),
    }
}

/// A production runtime on the keystore (its directory is the state directory).
fn production(keystore: Keystore) -> Runtime {
    RuntimeBuilder::new()
        .production()
        .with_keystore(keystore)
        .with_sandbox(KernelSandbox::with_policy(
            ResourceLimits::conservative(),
            SandboxPolicy::permissive(),
        ))
        .build()
        .unwrap()
}

fn token_failure(result: Result<impl std::fmt::Debug, Error>) -> (TokenFailure, String) {
    match result {
        Err(e @ Error::Token { failure, .. }) => (failure, e.to_string()),
        other => panic!("expected a token error, got {other:?}"),
    }
}

#[test]
fn a_keystore_sealed_by_a_softhsm2_token_survives_restarts_and_refuses_what_it_should() {
    let module = match softhsm() {
        Ok(m) => m,
        Err(why) if std::env::var("RINGKERNEL_REQUIRE_SOFTHSM").as_deref() == Ok("1") => {
            panic!("RINGKERNEL_REQUIRE_SOFTHSM=1 but SoftHSM2 is unusable: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: the SoftHSM2 token test needs SoftHSM2: {why}");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = tmp.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", TOKEN])
        .args(["--so-pin", SO_PIN, "--pin", USER_PIN])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "softhsm2-util --init-token: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let pin = tmp.path().join("pin");
    std::fs::write(&pin, format!("{USER_PIN}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // Each step is its own process: PKCS#11 state (initialisation, logins) is per
    // process, and a restart is a new process.
    for step in [
        "token_child_refusals",
        "token_child_create",
        "token_child_reopen",
    ] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", step, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, tmp.path())
            .env(MODULE_ENV, &module)
            .env("SOFTHSM2_CONF", &conf)
            .env(WRONG_PIN_ENV, "not-the-pin")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{step} failed:\n{text}");
        assert!(text.contains("1 passed"), "{step} did not run:\n{text}");
    }
}

/// Step 1 (its own process, before any login): what the token refuses, named.
#[test]
fn token_child_refusals() {
    let Some(dir) = std::env::var_os(CHILD_DIR).map(PathBuf::from) else {
        return;
    };
    // A wrong PIN, before this process has logged in to the token.
    let wrong_pin = Pkcs11Config {
        pin: PinSource::Env(WRONG_PIN_ENV.into()),
        ..config(&dir, KEY)
    };
    let (failure, msg) = token_failure(KeyEncryptionKey::pkcs11(&wrong_pin));
    assert_eq!(failure, TokenFailure::WrongPin, "{msg}");
    assert!(msg.contains(TOKEN), "names the token: {msg}");
    assert!(
        msg.contains("CKR_PIN_INCORRECT"),
        "names the return code: {msg}"
    );
    assert!(!msg.contains("not-the-pin"), "never prints the PIN: {msg}");
    let (failure, _) = token_failure(pkcs11::generate_key(&wrong_pin));
    assert_eq!(failure, TokenFailure::WrongPin);

    // A PIN that cannot be read.
    let no_pin = Pkcs11Config {
        pin: PinSource::Env("RINGKERNEL_TEST_UNSET_PIN_VARIABLE".into()),
        ..config(&dir, KEY)
    };
    let (failure, msg) = token_failure(KeyEncryptionKey::pkcs11(&no_pin));
    assert_eq!(failure, TokenFailure::PinUnavailable, "{msg}");
    assert!(msg.contains("RINGKERNEL_TEST_UNSET_PIN_VARIABLE"), "{msg}");

    // No token with that label, no such slot.
    let no_token = Pkcs11Config {
        token: TokenSelector::Label("no-such-token".into()),
        ..config(&dir, KEY)
    };
    let (failure, msg) = token_failure(KeyEncryptionKey::pkcs11(&no_token));
    assert_eq!(failure, TokenFailure::TokenNotFound, "{msg}");
    assert!(msg.contains("no-such-token"), "{msg}");
    let no_slot = Pkcs11Config {
        token: TokenSelector::Slot(u64::from(u32::MAX) - 7),
        ..config(&dir, KEY)
    };
    let (failure, msg) = token_failure(KeyEncryptionKey::pkcs11(&no_slot));
    assert_eq!(failure, TokenFailure::TokenNotFound, "{msg}");

    // The right PIN, but no key with that label (yet).
    let (failure, msg) = token_failure(KeyEncryptionKey::pkcs11(&config(&dir, "absent-key")));
    assert_eq!(failure, TokenFailure::KeyNotFound, "{msg}");
    assert!(msg.contains("absent-key"), "names the key: {msg}");

    // A key that could leave the token is not a KEK: refused, naming why.
    unfit_key(&dir, "exportable-key");
    let (failure, msg) = token_failure(KeyEncryptionKey::pkcs11(&config(&dir, "exportable-key")));
    assert_eq!(failure, TokenFailure::UnfitKey, "{msg}");
    assert!(
        msg.contains("exportable-key") && msg.contains("CKA_EXTRACTABLE"),
        "{msg}"
    );
    let (failure, _) = token_failure(pkcs11::generate_key(&config(&dir, "exportable-key")));
    assert_eq!(
        failure,
        TokenFailure::UnfitKey,
        "generate_key keeps and checks it"
    );
    // Two keys under one label: ambiguous, refused.
    unfit_key(&dir, "exportable-key");
    let (failure, msg) = token_failure(KeyEncryptionKey::pkcs11(&config(&dir, "exportable-key")));
    assert_eq!(failure, TokenFailure::UnfitKey, "{msg}");
    assert!(msg.contains("2 secret keys"), "{msg}");

    // A missing module.
    let missing = Pkcs11Config {
        module: dir.join("no-such-module.so"),
        ..config(&dir, KEY)
    };
    let (failure, msg) = token_failure(KeyEncryptionKey::pkcs11(&missing));
    assert_eq!(failure, TokenFailure::ModuleUnavailable, "{msg}");
    assert!(msg.contains("no-such-module.so"), "names the module: {msg}");
}

/// Creates an extractable, non-sensitive AES-256 key labelled `label` in the test token,
/// with the PKCS#11 API directly (as a careless operator's tool would).
fn unfit_key(dir: &Path, label: &str) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::{Attribute, KeyType, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;

    let config = config(dir, label);
    let ctx = Pkcs11::new(&config.module).unwrap();
    // Already initialised by the keystore in this process, or not yet: either is fine.
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == TOKEN)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&AuthPin::from(USER_PIN.to_owned())));
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        )
        .unwrap();
}

/// Step 2 (its own process): the key is generated in the token, a production runtime
/// seals under a keystore the token seals.
#[test]
fn token_child_create() {
    let Some(dir) = std::env::var_os(CHILD_DIR).map(PathBuf::from) else {
        return;
    };
    let config = config(&dir, KEY);
    assert!(pkcs11::generate_key(&config).unwrap(), "creates the key");
    assert!(!pkcs11::generate_key(&config).unwrap(), "keeps the key");

    let state = dir.join("state");
    let kek = KeyEncryptionKey::pkcs11(&config).unwrap();
    assert_eq!(kek.kind(), "pkcs11");
    assert!(!format!("{kek:?} {config:?}").contains(USER_PIN));
    let keystore = Keystore::open(&state, kek).unwrap();
    assert!(keystore.is_new());
    let info = keystore.info();
    assert_eq!(info.kek_kind, "pkcs11");
    assert_eq!(info.kek_key_label.as_deref(), Some(KEY));

    let rt = production(keystore);
    let sealed = rt
        .encryption()
        .unwrap()
        .encrypt_bytes(b"sealed in run 1")
        .unwrap();
    std::fs::write(dir.join("sealed.bin"), sealed.as_bytes()).unwrap();
    rt.shutdown().unwrap();

    // The file holds no secret in the clear, and names its KEK.
    let file = std::fs::read_to_string(state.join(FILE_NAME)).unwrap();
    assert!(file.contains("\"pkcs11\"") && file.contains(KEY), "{file}");
    assert!(!file.contains(USER_PIN));
}

/// Step 3 (a restart: a new process): the keystore opens under the token again, the
/// runtime reopens what it sealed and continues its audit log; modified keystores, a
/// password keystore and another token key are refused.
#[test]
fn token_child_reopen() {
    let Some(dir) = std::env::var_os(CHILD_DIR).map(PathBuf::from) else {
        return;
    };
    let config = config(&dir, KEY);
    let state = dir.join("state");
    let keystore = Keystore::open(&state, KeyEncryptionKey::pkcs11(&config).unwrap()).unwrap();
    assert!(!keystore.is_new());
    let audit_key = keystore.audit_public_key();
    let rt = production(keystore.clone());
    {
        let enc = rt.encryption().unwrap();
        let sealed =
            SealedData::from_bytes(std::fs::read(dir.join("sealed.bin")).unwrap()).unwrap();
        assert_eq!(&enc.decrypt_bytes(&sealed).unwrap()[..], b"sealed in run 1");
        // A rotation is sealed by the token too.
        enc.rotate_key().unwrap();
    }
    rt.shutdown().unwrap();
    drop((rt, keystore));
    let report = verify(state.join("audit"), &audit_key).unwrap();
    assert_eq!(report.status, LogStatus::Closed, "one chain over both runs");

    // Modified keystores are refused: the sealed secrets, or the authenticated header.
    let original = std::fs::read_to_string(state.join(FILE_NAME)).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&original).unwrap();
    let sealed_hex = json["sealed"].as_str().unwrap().to_owned();
    let flipped = if sealed_hex.starts_with('0') {
        "1"
    } else {
        "0"
    };
    json["sealed"] = format!("{flipped}{}", &sealed_hex[1..]).into();
    let open_modified = |json: &serde_json::Value| {
        let copy = dir.join("modified");
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::write(copy.join(FILE_NAME), serde_json::to_vec(json).unwrap()).unwrap();
        Keystore::open(&copy, KeyEncryptionKey::pkcs11(&config).unwrap())
    };
    let result = open_modified(&json);
    assert!(matches!(result, Err(Error::Tampered)), "{result:?}");
    let mut json: serde_json::Value = serde_json::from_str(&original).unwrap();
    json["generation"] = (json["generation"].as_u64().unwrap() + 10).into();
    let result = open_modified(&json);
    assert!(matches!(result, Err(Error::Tampered)), "{result:?}");

    // A keystore sealed by a password, opened with the token: named as such.
    let password_dir = dir.join("password");
    let fast = KeyDerivation::Argon2id {
        memory_cost: 8,
        time_cost: 1,
        parallelism: 1,
    };
    Keystore::open(
        &password_dir,
        KeyEncryptionKey::password_with("correct horse", fast).unwrap(),
    )
    .unwrap();
    match Keystore::open(&password_dir, KeyEncryptionKey::pkcs11(&config).unwrap()) {
        Err(Error::WrongKey(msg)) => {
            assert!(msg.contains("password") && msg.contains("pkcs11"), "{msg}")
        }
        other => panic!("expected WrongKey, got {other:?}"),
    }
    // ... and the token's keystore opened with other kinds of key, or another token key.
    assert!(matches!(
        Keystore::open(&state, KeyEncryptionKey::from_bytes(&[1; 32]).unwrap()),
        Err(Error::WrongKey(_))
    ));
    let other = Pkcs11Config {
        key_label: "another-key".into(),
        ..config.clone()
    };
    assert!(pkcs11::generate_key(&other).unwrap());
    match Keystore::open(&state, KeyEncryptionKey::pkcs11(&other).unwrap()) {
        Err(Error::WrongKey(msg)) => assert!(msg.contains("another-key"), "{msg}"),
        other => panic!("expected WrongKey, got {other:?}"),
    }
    // None of that changed the keystore.
    assert_eq!(
        std::fs::read_to_string(state.join(FILE_NAME)).unwrap(),
        original
    );
}

/// Needs no token: a module that is not there is named.
#[test]
fn a_missing_module_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = Pkcs11Config {
        module: dir.path().join("libvendor-pkcs11.so"),
        token: TokenSelector::Slot(0),
        key_label: KEY.into(),
        pin: PinSource::Env("RINGKERNEL_TEST_UNSET_PIN_VARIABLE".into()),
    };
    let (failure, msg) = token_failure(KeyEncryptionKey::pkcs11(&config));
    assert_eq!(failure, TokenFailure::ModuleUnavailable);
    assert!(msg.contains("libvendor-pkcs11.so"), "{msg}");
    let (failure, _) = token_failure(pkcs11::generate_key(&config));
    assert_eq!(failure, TokenFailure::ModuleUnavailable);
}

/// A module that is a file but not a PKCS#11 library is named too (no panic).
#[test]
fn a_file_that_is_not_a_module_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("not-a-library.so");
    std::fs::write(&fake, b"not an ELF file").unwrap();
    let config = Pkcs11Config {
        module: fake,
        token: TokenSelector::Label(TOKEN.into()),
        key_label: KEY.into(),
        pin: PinSource::Env("RINGKERNEL_TEST_UNSET_PIN_VARIABLE".into()),
    };
    let (failure, msg) = token_failure(KeyEncryptionKey::pkcs11(&config));
    assert_eq!(failure, TokenFailure::ModuleUnavailable);
    assert!(msg.contains("not-a-library.so"), "{msg}");
}
