//! The keystore: keys that survive restarts, sealed under a key-encryption key; a wrong
//! KEK, a modified file and a damaged file each get their own clear error.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use ringkernel_core::Error;
use ringkernel_core::security::encryption::{EncryptionConfig, KeyDerivation, KeyId};
use ringkernel_core::security::keystore::{FILE_NAME, KeyEncryptionKey, Keystore};

fn kek(byte: u8) -> KeyEncryptionKey {
    KeyEncryptionKey::from_bytes(&[byte; 32]).unwrap()
}

/// Argon2id cheap enough for tests (the default costs 64 MiB and seconds in debug).
fn cheap_password(p: &str) -> KeyEncryptionKey {
    KeyEncryptionKey::password_with(
        p,
        KeyDerivation::Argon2id {
            memory_cost: 256,
            time_cost: 1,
            parallelism: 1,
        },
    )
    .unwrap()
}

#[test]
fn a_restart_opens_what_the_first_run_sealed_and_seals_under_a_fresh_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let first = Keystore::open(dir.path(), kek(1)).unwrap();
    assert!(first.is_new());
    let audit_key = first.audit_public_key();
    let enc = first.encryption(EncryptionConfig::secure()).unwrap();
    let before = enc.encrypt_bytes(b"epoch one").unwrap();
    enc.rotate_key().unwrap();
    let after = enc.encrypt_bytes(b"epoch two").unwrap();
    assert_eq!(after.header().unwrap().epoch, 2);
    // One encryption per keystore: two keyrings writing one file would lose epochs.
    assert!(matches!(
        first.encryption(EncryptionConfig::secure()),
        Err(Error::InvalidConfig(_))
    ));
    drop((enc, first));

    let again = Keystore::open(dir.path(), kek(1)).unwrap();
    assert!(!again.is_new());
    assert_eq!(
        again.audit_public_key(),
        audit_key,
        "same audit signing key"
    );
    let enc = again.encryption(EncryptionConfig::secure()).unwrap();
    assert_eq!(&enc.decrypt_bytes(&before).unwrap()[..], b"epoch one");
    assert_eq!(&enc.decrypt_bytes(&after).unwrap()[..], b"epoch two");
    assert_eq!(
        enc.current_key_id(),
        Some(KeyId(3)),
        "never seals under an old epoch"
    );
    let info = again.info();
    assert_eq!(info.highest_epoch, 3);
    assert_eq!(info.live_epochs, vec![1, 2, 3]);
    assert_eq!(info.kek_kind, "bytes");
    assert!(info.generation >= 4);
}

#[test]
fn a_wrong_key_encryption_key_is_refused_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    drop(Keystore::open(dir.path(), kek(1)).unwrap());
    let err = Keystore::open(dir.path(), kek(2)).unwrap_err();
    assert!(matches!(err, Error::WrongKey(_)), "{err}");
    assert!(err.to_string().contains("created with"), "{err}");
    // Another kind of KEK altogether.
    let err = Keystore::open(dir.path(), cheap_password("hunter2")).unwrap_err();
    assert!(matches!(err, Error::WrongKey(_)), "{err}");
}

#[test]
fn a_password_keystore_reopens_with_the_password_only() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::open(dir.path(), cheap_password("correct horse")).unwrap();
    let sealed = ks
        .encryption(EncryptionConfig::secure())
        .unwrap()
        .encrypt_bytes(b"x")
        .unwrap();
    drop(ks);
    assert!(matches!(
        Keystore::open(dir.path(), cheap_password("wrong horse")),
        Err(Error::WrongKey(_))
    ));
    let ks = Keystore::open(dir.path(), cheap_password("correct horse")).unwrap();
    let enc = ks.encryption(EncryptionConfig::secure()).unwrap();
    assert_eq!(&enc.decrypt_bytes(&sealed).unwrap()[..], b"x");
    assert_eq!(ks.info().kek_kind, "password");
    // The file holds neither the password nor anything printable of the keys.
    let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
    assert!(!text.contains("correct horse"));
    assert!(matches!(
        KeyEncryptionKey::password_with("", KeyDerivation::argon2id()),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        KeyEncryptionKey::password_with("p", KeyDerivation::HkdfSha256),
        Err(Error::InvalidConfig(_))
    ));
}

#[cfg(unix)]
#[test]
fn key_files_must_be_private_and_long_enough() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kek.bin");
    std::fs::write(&file, [9u8; 64]).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = KeyEncryptionKey::key_file(&file).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let state = dir.path().join("state");
    let ks = Keystore::open(&state, KeyEncryptionKey::key_file(&file).unwrap()).unwrap();
    assert_eq!(ks.info().kek_kind, "key-file");
    drop(ks);
    Keystore::open(&state, KeyEncryptionKey::key_file(&file).unwrap()).unwrap();
    std::fs::write(&file, [9u8; 16]).unwrap();
    assert!(matches!(
        KeyEncryptionKey::key_file(&file),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        KeyEncryptionKey::key_file(dir.path().join("missing")),
        Err(Error::InvalidConfig(_))
    ));
    let mode = std::fs::metadata(state.join(FILE_NAME))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the keystore itself is private");
}

#[test]
fn a_modified_keystore_is_tampered_and_a_damaged_one_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    drop(Keystore::open(dir.path(), kek(1)).unwrap());
    let path = dir.path().join(FILE_NAME);
    let original = std::fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&original).unwrap();

    // A flipped bit in the sealed secrets.
    let mut flipped = json.clone();
    let sealed = flipped["sealed"].as_str().unwrap().to_owned();
    let first = if sealed.starts_with('0') { "1" } else { "0" };
    flipped["sealed"] = format!("{first}{}", &sealed[1..]).into();
    std::fs::write(&path, flipped.to_string()).unwrap();
    assert!(matches!(
        Keystore::open(dir.path(), kek(1)),
        Err(Error::Tampered)
    ));

    // The authenticated generation rolled back.
    let mut rolled = json.clone();
    rolled["generation"] = 0.into();
    std::fs::write(&path, rolled.to_string()).unwrap();
    assert!(matches!(
        Keystore::open(dir.path(), kek(1)),
        Err(Error::Tampered)
    ));

    // Not a keystore at all, or a truncated one: corrupt, never a panic.
    for junk in [
        &b"{not json"[..],
        b"",
        &original.as_bytes()[..original.len() / 2],
    ] {
        std::fs::write(&path, junk).unwrap();
        assert!(matches!(
            Keystore::open(dir.path(), kek(1)),
            Err(Error::Corrupt { .. })
        ));
    }
}

#[test]
fn retired_epochs_are_erased_from_the_keystore_too() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::open(dir.path(), kek(1)).unwrap();
    let enc = ks
        .encryption(EncryptionConfig::secure().grace_period(Duration::ZERO))
        .unwrap();
    let old = enc.encrypt_bytes(b"under epoch 1").unwrap();
    enc.rotate_key().unwrap();
    assert_eq!(enc.retire_expired_keys(), vec![KeyId(1)]);
    assert_eq!(ks.info().live_epochs, vec![2]);
    drop((enc, ks));

    let ks = Keystore::open(dir.path(), kek(1)).unwrap();
    let enc = ks.encryption(EncryptionConfig::secure()).unwrap();
    // Crypto-erasure survives the restart: epoch 1's salt is gone from the file.
    assert!(matches!(
        enc.decrypt_bytes(&old),
        Err(Error::KeyRetired { epoch: 1 })
    ));
}

/// Lost key state: two handles on one keystore file (a second process started on the
/// same state directory, or a second `Keystore::open` in one) each rewrote the whole
/// file from what they had read. The second writer silently dropped the first one's
/// new epoch, and data sealed under it no longer opened after a restart. A write over
/// a generation the handle has not seen is now refused, naming the cause.
#[test]
fn a_second_handle_cannot_overwrite_key_epochs_it_has_not_seen() {
    let dir = tempfile::tempdir().unwrap();
    let first = Keystore::open(dir.path(), kek(4)).unwrap();
    let second = Keystore::open(dir.path(), kek(4)).unwrap();
    let enc = first.encryption(EncryptionConfig::secure()).unwrap();
    let sealed = enc
        .encrypt_bytes(b"under the first handle's epoch")
        .unwrap();
    match second.encryption(EncryptionConfig::secure()) {
        Err(Error::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::ResourceBusy);
            assert!(e.to_string().contains("another"), "{e}");
        }
        other => panic!("the stale handle wrote over the keystore: {other:?}"),
    }
    drop((enc, first, second));
    // Another keystore's file put in its place at the same generation number (a
    // restored backup, a fresh one recreated after a delete): not this handle's file.
    let other = tempfile::tempdir().unwrap();
    let _ = Keystore::open(other.path(), kek(4)).unwrap();
    let third = Keystore::open(other.path(), kek(4)).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let theirs = Keystore::open(elsewhere.path(), kek(4)).unwrap();
    std::fs::copy(theirs.path(), third.path()).unwrap();
    assert!(matches!(
        third.encryption(EncryptionConfig::secure()),
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::ResourceBusy
    ));
    let again = Keystore::open(dir.path(), kek(4)).unwrap();
    let enc = again.encryption(EncryptionConfig::secure()).unwrap();
    assert_eq!(
        &enc.decrypt_bytes(&sealed).unwrap()[..],
        b"under the first handle's epoch"
    );
}
