//! `ringkernel keystore`: init, inspect, rotate.

use std::process::ExitCode;

use ringkernel_core::security::EncryptionConfig;
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
    match &args.key_file {
        Some(path) => Ok(KeyEncryptionKey::key_file(path)?),
        None => Err(Failure(
            "give --passphrase-env VAR or --key-file PATH".into(),
        )),
    }
}

fn print_info(info: &KeystoreInfo, json: bool) -> Result<(), Failure> {
    if json {
        println!("{}", serde_json::to_string(info)?);
    } else {
        println!("keystore {}", info.path.display());
        println!("  format: {}", info.format);
        println!("  key-encryption key: {}", info.kek_kind);
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
    let store = Keystore::open(&args.dir, kek(args)?)?;
    if let KeystoreCommand::Rotate(_) = cmd {
        let encryption = store.encryption(EncryptionConfig::default())?;
        let id = encryption.rotate_key()?;
        if !args.json {
            println!("rotated: key epoch {id} now seals");
        }
    } else if init && !args.json {
        println!("created keystore {}", file.display());
    }
    print_info(&store.info(), args.json)?;
    Ok(ExitCode::SUCCESS)
}
