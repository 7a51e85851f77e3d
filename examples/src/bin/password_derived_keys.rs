//! Keys derived from a passphrase: Argon2id at its defaults (64 MiB, 3 passes, 4 lanes),
//! a random salt kept in the key metadata, a wrong passphrase refused, and the derived
//! key protecting a runtime's control blocks.
//!
//! Run: `cargo run --release -p ringkernel-examples --bin password_derived_keys`

use std::process::ExitCode;
use std::time::Instant;

use ringkernel_core::Error;
use ringkernel_core::control::ControlBlock;
use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder};
use ringkernel_core::security::encryption::{EncryptionConfig, KeyDerivation, MemoryEncryption};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("password_derived_keys failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let passphrase = std::env::var("RINGKERNEL_PASSPHRASE")
        .unwrap_or_else(|_| "correct horse battery staple".into());

    let t0 = Instant::now();
    let encryption = MemoryEncryption::from_password(&passphrase, KeyDerivation::argon2id())?;
    let meta = encryption.key_metadata();
    println!(
        "derived a master key with {} in {:.0} ms",
        meta.kdf.describe(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "  salt (random, stored with the metadata): {}",
        hex(&meta.salt)
    );
    println!(
        "  key check value (reveals nothing about the key): {}",
        hex(&meta.key_check)
    );
    println!(
        "  algorithm: {}, current key: {:?}",
        encryption.algorithm(),
        encryption.current_key_id()
    );

    // The same passphrase and metadata derive the same master key...
    MemoryEncryption::unlock(passphrase.as_bytes(), &meta, EncryptionConfig::secure())?;
    println!("unlock with the right passphrase: ok");
    // ...a wrong one is refused.
    match MemoryEncryption::unlock(b"Tr0ub4dor&3", &meta, EncryptionConfig::secure()) {
        Err(Error::WrongPassword) => {
            println!("unlock with a wrong passphrase: refused (WrongPassword)")
        }
        other => {
            return Err(Error::InvalidConfig(format!(
                "a wrong passphrase was not refused: {other:?}"
            )));
        }
    }

    // Seal and open a control block directly.
    let mut block = ControlBlock::new(1024);
    block.messages_processed = 42;
    let sealed = encryption.encrypt(&block)?;
    let opened: ControlBlock = encryption.decrypt(&sealed)?;
    println!(
        "sealed a 128-byte control block into {} bytes; opened: messages_processed = {}",
        sealed.as_bytes().len(),
        opened.messages_processed
    );

    // The passphrase-rooted keys protect a runtime.
    // Audit records go to a scratch directory for this demonstration, removed when
    // `audit_dir` drops (after the runtime, declared below it).
    let audit_dir = scratch_audit_dir("password-keys")?;
    let runtime = RuntimeBuilder::new()
        .production()
        .with_audit_logging(
            ringkernel_core::security::audit::AuditLogConfig::in_directory(audit_dir.path()),
        )
        .with_encryption(encryption.clone())
        .build()?;
    let kernel = runtime.launch("records", LaunchOptions::new())?;
    runtime.send("records", "patient", b"{\"id\": 7, \"diagnosis\": \"...\"}")?;
    let (key, resealed) = runtime.rotate_keys()?;
    println!("rotated to {key}; re-sealed {resealed} region(s)");
    println!("kernel status: {:?}", kernel.status()?.state);
    runtime.shutdown()?;
    let stats = encryption.stats();
    println!(
        "encryption stats: {} seals, {} opens, {} failures, {} rotations",
        stats.seals, stats.opens, stats.failures, stats.rotations
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh scratch directory in the temp directory for this example's audit log,
/// removed when the returned guard drops.
fn scratch_audit_dir(tag: &str) -> Result<tempfile::TempDir, Error> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("ringkernel-example-{tag}-"))
        .tempdir()?)
}
