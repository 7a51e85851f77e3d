//! The mlock refusal path, for real: this test re-runs itself as an unprivileged user
//! (uid 65534 through `setpriv` when we are root; ourselves otherwise) under
//! `ulimit -l 0`, where the kernel refuses every mlock. There the secure buffers must
//! fall back to zeroing only, say so, and encryption must keep working.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

use ringkernel_core::security::encryption::{EncryptionConfig, MemoryEncryption};
use ringkernel_core::security::memory::{
    ProtectionLevel, SecureBuffer, memory_protection_info, set_memory_protection,
};

const CHILD: &str = "RINGKERNEL_MLOCK_REFUSAL_CHILD";

fn child_checks() {
    let info = memory_protection_info();
    assert!(
        !info.has_memory_locking,
        "mlock should be refused here: {info:?}"
    );
    assert_eq!(info.protection_level, ProtectionLevel::ZeroingOnly);
    let mut buf = SecureBuffer::new(64);
    assert!(!buf.is_locked());
    buf.as_mut_slice().fill(0x77);
    drop(buf);
    // Encryption works on zeroing-only memory.
    let enc = MemoryEncryption::new(EncryptionConfig::secure()).unwrap();
    let sealed = enc.encrypt_bytes(b"still sealed").unwrap();
    assert_eq!(&enc.decrypt_bytes(&sealed).unwrap()[..], b"still sealed");
    // Switching protection off is reported as `none`.
    set_memory_protection(false);
    assert_eq!(
        memory_protection_info().protection_level,
        ProtectionLevel::None
    );
    set_memory_protection(true);
    println!("mlock-refusal-child: ok (level {})", info.protection_level);
}

#[test]
fn mlock_refusal_falls_back_to_zeroing_only() {
    if std::env::var_os(CHILD).is_some() {
        child_checks();
        return;
    }
    // The unprivileged user must be able to run the binary wherever the checkout lives
    // (a CI clone may sit in a directory only root can enter): run a world-readable
    // copy from a world-readable directory in the system temp directory, removed when
    // `dir` drops. (The user must be able to enter the temp directory itself:
    // scripts/test.sh makes its private TMPDIR mode 0711.)
    let dir = tempfile::Builder::new()
        .prefix("rk-mlock-child-")
        .tempdir()
        .unwrap();
    let exe = dir.path().join("child");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let uid = Command::new("id").arg("-u").output().unwrap();
    let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    let script = "ulimit -l 0 && exec \"$0\" --exact mlock_refusal_falls_back_to_zeroing_only --nocapture --test-threads=1";
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
        ]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    };
    let out = cmd
        .arg(&exe)
        .env(CHILD, "1")
        .current_dir("/")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("mlock-refusal-child: ok (level zeroing_only)"),
        "child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn locking_works_here_or_is_reported() {
    // In this (normal) process the level matches what the OS allows.
    let info = memory_protection_info();
    let buf = SecureBuffer::new(32);
    assert_eq!(buf.is_locked(), info.has_memory_locking);
    assert_eq!(
        info.protection_level,
        if info.has_memory_locking {
            ProtectionLevel::Full
        } else {
            ProtectionLevel::ZeroingOnly
        }
    );
}
