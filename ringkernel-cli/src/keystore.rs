//! `ringkernel keystore`: init, inspect, rotate.

use std::process::ExitCode;

use ringkernel_core::security::EncryptionConfig;
use ringkernel_core::security::keystore::pkcs11::{self, PinSource, Pkcs11Config, TokenSelector};
use ringkernel_core::security::keystore::{FILE_NAME, KeyEncryptionKey, Keystore, KeystoreInfo};

use crate::cli::{KeystoreArgs, KeystoreCommand};
use crate::{Failure, Outcome};

/// The key-encryption key the arguments name. The passphrase comes from the
/// environment, never argv, and is never printed.
fn kek(args: &KeystoreArgs) -> Result<KeyEncryptionKey, Failure> {
    if let Some(var) = &args.passphrase_env {
        let passphrase = std::env::var(var).map_err(|e| {
            Failure(format!(
                "--passphrase-env {var}: the variable cannot be read: {e}"
            ))
        })?;
        if passphrase.is_empty() {
            return Err(Failure(format!(
                "--passphrase-env {var}: the variable is empty"
            )));
        }
        return Ok(KeyEncryptionKey::password(&passphrase));
    }
    if let Some(config) = pkcs11_config(args)? {
        return Ok(KeyEncryptionKey::pkcs11(&config)?);
    }
    match &args.key_file {
        Some(path) => Ok(KeyEncryptionKey::key_file(path)?),
        None => Err(Failure(
            "give --passphrase-env VAR, --key-file PATH or --pkcs11-module PATH".into(),
        )),
    }
}

/// The PKCS#11 token the arguments name, if any. The PIN is read from the environment
/// or a file when the token is opened, never from argv.
fn pkcs11_config(args: &KeystoreArgs) -> Result<Option<Pkcs11Config>, Failure> {
    let Some(module) = &args.pkcs11_module else {
        return Ok(None);
    };
    let token = match (&args.token_label, args.slot) {
        (Some(label), _) => TokenSelector::Label(label.clone()),
        (None, Some(slot)) => TokenSelector::Slot(slot),
        (None, None) => {
            return Err(Failure(
                "--pkcs11-module needs --token-label LABEL or --slot ID".into(),
            ));
        }
    };
    let pin = match (&args.pin_env, &args.pin_file) {
        (Some(var), _) => PinSource::Env(var.clone()),
        (None, Some(path)) => PinSource::File(path.clone()),
        (None, None) => {
            return Err(Failure(
                "--pkcs11-module needs --pin-env VAR or --pin-file PATH".into(),
            ));
        }
    };
    Ok(Some(Pkcs11Config {
        module: module.clone(),
        token,
        key_label: args.key_label.clone(),
        pin,
    }))
}

fn print_info(info: &KeystoreInfo, json: bool) -> Result<(), Failure> {
    if json {
        println!("{}", serde_json::to_string(info)?);
    } else {
        println!("keystore {}", info.path.display());
        println!("  format: {}", info.format);
        match &info.kek_key_label {
            Some(label) => println!("  key-encryption key: {} (key {label:?})", info.kek_kind),
            None => println!("  key-encryption key: {}", info.kek_kind),
        }
        println!("  generation: {}", info.generation);
        println!("  highest key epoch: {}", info.highest_epoch);
        println!("  live key epochs: {:?}", info.live_epochs);
        println!("  audit public key: {}", info.audit_public_key);
    }
    Ok(())
}

/// `keystore init|inspect|rotate`.
pub(crate) fn run(cmd: &KeystoreCommand) -> Outcome {
    let (args, init) = match cmd {
        KeystoreCommand::Init(a) => (a, true),
        KeystoreCommand::Inspect(a) | KeystoreCommand::Rotate(a) => (a, false),
    };
    let file = args.dir.join(FILE_NAME);
    // Keystore::open creates a keystore where there is none: init must not overwrite
    // one, and inspect and rotate must not create one.
    match (init, file.try_exists()?) {
        (true, true) => {
            return Err(Failure(format!("{} already exists", file.display())));
        }
        (false, false) => {
            return Err(Failure(format!(
                "no keystore at {} (create one with `ringkernel keystore init`)",
                file.display()
            )));
        }
        _ => {}
    }
    if init && let Some(config) = pkcs11_config(args)? {
        let created = pkcs11::generate_key(&config)?;
        if !args.json {
            let what = if created { "created" } else { "using existing" };
            println!("{what} AES-256 key {:?} in the token", config.key_label);
        }
    }
    let store = Keystore::open(&args.dir, kek(args)?)?;
    if let KeystoreCommand::Rotate(_) = cmd {
        // Taking the keystore's encryption starts a fresh key epoch and writes it to
        // the keystore (every start of a program does the same, so that no epoch's
        // nonce space spans two processes): that is the rotation. Rotating again here
        // moved the epoch by two.
        let encryption = store.encryption(EncryptionConfig::default())?;
        let id = encryption
            .current_key_id()
            .ok_or_else(|| Failure("the keystore's encryption has no current key".into()))?;
        if !args.json {
            println!("rotated: key epoch {id} now seals");
        }
    } else if init && !args.json {
        println!("created keystore {}", file.display());
    }
    print_info(&store.info(), args.json)?;
    Ok(ExitCode::SUCCESS)
}
