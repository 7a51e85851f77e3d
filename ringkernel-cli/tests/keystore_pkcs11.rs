//! `ringkernel keystore` with the key-encryption key in a real SoftHSM2 token: `init`
//! generates the key in the token and creates the keystore, `inspect` and `rotate` open
//! it again; a wrong PIN and an absent key are refused naming them. Skips (saying why)
//! without SoftHSM2 unless `RINGKERNEL_REQUIRE_SOFTHSM=1`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::process::{Command, Output};

const TOKEN: &str = "ringkernel-cli-test";
const USER_PIN: &str = "2718-user";

/// The SoftHSM2 module, or why this test cannot run here.
fn softhsm() -> Result<PathBuf, String> {
    let module = std::env::var_os("RINGKERNEL_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
    if !module.is_file() {
        return Err(format!("no PKCS#11 module at {}", module.display()));
    }
    match Command::new("softhsm2-util").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(module),
        Ok(out) => Err(format!("softhsm2-util --version failed: {}", out.status)),
        Err(e) => Err(format!("softhsm2-util cannot run ({e}); install softhsm2")),
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn keystore_init_inspect_rotate_with_a_softhsm2_token() {
    let module = match softhsm() {
        Ok(m) => m,
        Err(why) if std::env::var("RINGKERNEL_REQUIRE_SOFTHSM").as_deref() == Ok("1") => {
            panic!("RINGKERNEL_REQUIRE_SOFTHSM=1 but SoftHSM2 is unusable: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: the CLI token test needs SoftHSM2: {why}");
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
        .args(["--so-pin", "1-so-pin", "--pin", USER_PIN])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init));
    let state = tmp.path().join("state");
    let run = |cmd: &str, key_label: &str, pin: &str| {
        Command::new(env!("CARGO_BIN_EXE_ringkernel"))
            .args(["keystore", cmd])
            .arg(&state)
            .arg("--pkcs11-module")
            .arg(&module)
            .args(["--token-label", TOKEN, "--key-label", key_label])
            .args(["--pin-env", "RK_TEST_PIN", "--json"])
            .env("SOFTHSM2_CONF", &conf)
            .env("RK_TEST_PIN", pin)
            .output()
            .unwrap()
    };
    let json = |out: &Output| -> serde_json::Value {
        assert_eq!(out.status.code(), Some(0), "{}", text(out));
        serde_json::from_slice(&out.stdout).unwrap()
    };

    // A wrong PIN: named, never printed, nothing created.
    let out = run("init", "ringkernel-kek", "not-the-pin");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("PIN refused"), "{}", text(&out));
    assert!(!text(&out).contains("not-the-pin"));
    assert!(!state.join("keystore.json").exists());

    let created = json(&run("init", "ringkernel-kek", USER_PIN));
    assert_eq!(created["kek_kind"], "pkcs11");
    assert_eq!(created["kek_key_label"], "ringkernel-kek");
    let info = json(&run("inspect", "ringkernel-kek", USER_PIN));
    assert_eq!(info["audit_public_key"], created["audit_public_key"]);
    let rotated = json(&run("rotate", "ringkernel-kek", USER_PIN));
    assert!(rotated["highest_epoch"].as_u64() > info["highest_epoch"].as_u64());

    // An absent key: named.
    let out = run("inspect", "no-such-key", USER_PIN);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no-such-key"), "{}", text(&out));
    // A module without a PIN source: refused, naming the options.
    let out = Command::new(env!("CARGO_BIN_EXE_ringkernel"))
        .args(["keystore", "inspect"])
        .arg(&state)
        .arg("--pkcs11-module")
        .arg(&module)
        .args(["--token-label", TOKEN])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--pin-env"), "{}", text(&out));
    // The token options without a module: a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_ringkernel"))
        .args(["keystore", "inspect"])
        .arg(&state)
        .args(["--token-label", TOKEN, "--pin-env", "RK_TEST_PIN"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
