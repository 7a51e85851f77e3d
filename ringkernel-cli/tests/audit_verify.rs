//! `ringkernel audit verify`: what it prints and its exit status per case.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::fs;
use std::path::Path;
use std::process::Command;

use ringkernel_core::security::audit::{
    AuditConfig, AuditEvent, AuditLog, AuditLogConfig, AuditSigningKey,
};

fn run(dir: &Path, key: &str, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringkernel"))
        .args(["audit", "verify"])
        .arg(dir)
        .arg("--key")
        .arg(key)
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

#[test]
fn the_tool_prints_the_status_and_exits_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditSigningKey::generate().unwrap();
    let pk = key.public_key().to_hex();
    let config = || AuditLogConfig {
        events: AuditConfig {
            retention_days: 0,
            ..AuditConfig::default()
        },
        max_segment_bytes: 1 << 20,
        signing_key: Some(key.clone()),
        ..AuditLogConfig::in_directory(dir.path())
    };

    // Open: records after the last head.
    let log = AuditLog::open(config()).unwrap();
    for i in 0..5 {
        log.append(AuditEvent::new("e").detail("i", i)).unwrap();
    }
    log.flush().unwrap();
    let (code, out) = run(dir.path(), &pk, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("VERIFIED, open (not closed) with 6 unanchored record(s)"),
        "{out}"
    );

    // Closed, and the anchor it prints is accepted back.
    log.close().unwrap();
    let anchor = log.head().anchor().to_string();
    let (code, out) = run(dir.path(), &pk, &["--anchor", &anchor]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("VERIFIED, closed"), "{out}");
    assert!(
        out.contains(&format!("anchor to keep elsewhere: {anchor}")),
        "{out}"
    );

    // A key file works the same.
    let key_file = dir.path().join("key.txt");
    fs::write(&key_file, format!("{pk}\n")).unwrap();
    let (code, _) = run(dir.path(), &format!("@{}", key_file.display()), &[]);
    assert_eq!(code, 0);
    fs::remove_file(&key_file).unwrap();

    // Truncated: the anchor is further than the log.
    let (code, out) = run(dir.path(), &pk, &[&format!("--anchor=-:{}", 9)]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("TRUNCATED") && out.contains("3 record(s) missing (sequence 6..9)"),
        "{out}"
    );

    // Truncated: the head is gone.
    let head = fs::read(dir.path().join("log.head")).unwrap();
    fs::remove_file(dir.path().join("log.head")).unwrap();
    let (code, out) = run(dir.path(), &pk, &[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("head is missing"), "{out}");
    fs::write(dir.path().join("log.head"), &head).unwrap();

    // Tampered.
    let seg = dir.path().join("segment-00000001.jsonl");
    let text = fs::read_to_string(&seg).unwrap();
    fs::write(&seg, text.replacen("\"i\":2", "\"i\":3", 1)).unwrap();
    let (code, out) = run(dir.path(), &pk, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED (tampered)"), "{out}");

    // No log at all.
    let empty = tempfile::tempdir().unwrap();
    let (code, out) = run(empty.path(), &pk, &[]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("NO LOG"), "{out}");

    // Usage errors.
    for bad in [
        &["--anchor", "xyz"][..],
        &["--anchor"],
        &["--what"],
        &["extra"],
    ] {
        let (code, out) = run(dir.path(), &pk, bad);
        assert_eq!(code, 2, "{bad:?}: {out}");
        assert!(out.contains("error:"), "{out}");
    }

    // A key that is not one, and a key file that is not there: exit 2, said why.
    for key in ["xyz", "@/nonexistent/key.txt"] {
        let (code, out) = run(dir.path(), key, &[]);
        assert_eq!(code, 2, "{key}: {out}");
        assert!(
            out.contains("--key") || out.contains("cannot read"),
            "{out}"
        );
    }
}

#[test]
fn json_output_and_progress() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditSigningKey::generate().unwrap();
    let pk = key.public_key().to_hex();
    let log = AuditLog::open(AuditLogConfig {
        events: AuditConfig {
            retention_days: 0,
            ..AuditConfig::default()
        },
        max_segment_bytes: 4096,
        signing_key: Some(key.clone()),
        ..AuditLogConfig::in_directory(dir.path())
    })
    .unwrap();
    for i in 0..60 {
        log.append(
            AuditEvent::new("e")
                .detail("i", i)
                .detail("pad", "x".repeat(100)),
        )
        .unwrap();
    }
    log.close().unwrap();
    let anchor = log.head().anchor().to_string();

    let (code, out) = run(dir.path(), &pk, &["--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["result"], "verified");
    assert_eq!(v["status"], "closed");
    assert!(v["records"].as_u64().unwrap() > 60, "{v}");
    assert_eq!(v["anchor"], anchor.as_str());
    assert!(v["segments"].as_u64().unwrap() > 1, "{v}");

    // --progress: the segment count on stderr, stdout unchanged.
    let out = Command::new(env!("CARGO_BIN_EXE_ringkernel"))
        .args(["audit", "verify", "--progress", "--json", "--key", &pk])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("verified {0} of {0} segment(s)", v["segments"])),
        "{stderr}"
    );
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again, v);

    // Truncated, tampered and no log in JSON keep their exit status.
    let (code, out) = run(dir.path(), &pk, &["--json", "--anchor", "-:99"]);
    assert_eq!(code, 3, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["result"], "truncated");
    assert!(v["truncation"].as_str().unwrap().contains("missing"), "{v}");

    let empty = tempfile::tempdir().unwrap();
    let (code, out) = run(empty.path(), &pk, &["--json"]);
    assert_eq!(code, 4, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["result"], "no_log");

    let seg = dir.path().join("segment-00000001.jsonl");
    let text = fs::read_to_string(&seg).unwrap();
    fs::write(&seg, text.replacen("\"i\":0", "\"i\":7", 1)).unwrap();
    let (code, out) = run(dir.path(), &pk, &["--json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["result"], "tampered");
}

#[test]
fn anchors_from_a_syslog_file_catch_a_rewound_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let snapshot = tmp.path().join("snapshot");
    let key = AuditSigningKey::from_seed(&[5; 32]);
    let pk = key.public_key().to_hex();
    let log = AuditLog::open(AuditLogConfig {
        events: AuditConfig {
            retention_days: 0,
            ..AuditConfig::default()
        },
        signing_key: Some(key.clone()),
        ..AuditLogConfig::in_directory(&dir)
    })
    .unwrap();
    // The collector's file: each head as rsyslog writes it, with noise in between.
    let mut syslog = String::from("Dec  2 03:00:00 gpu-7 sshd[1]: unrelated\n");
    let mut ship = |log: &AuditLog| {
        syslog += &format!(
            "2026-12-02T03:00:00Z gpu-7 ringkernel[42]: {}\n",
            log.head().to_line()
        );
    };
    ship(&log);
    log.append(AuditEvent::new("e")).unwrap();
    log.seal_segment().unwrap();
    ship(&log);
    fs::create_dir(&snapshot).unwrap();
    for e in fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), snapshot.join(e.file_name())).unwrap();
    }
    log.append(AuditEvent::new("e")).unwrap();
    log.close().unwrap();
    ship(&log);
    syslog += "{\"version\":1,\"head_seq\": broken\n";
    let file = tmp.path().join("central.log");
    fs::write(&file, &syslog).unwrap();
    let from_syslog = ["--anchors-from-syslog", file.to_str().unwrap()];

    let (code, out) = run(&dir, &pk, &from_syslog);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("3 shipped head(s) verified, newest #3"),
        "{out}"
    );
    assert!(out.contains("1 malformed"), "{out}");

    // Rewound to the copy: fine on its own, truncated against the shipped heads.
    fs::remove_dir_all(&dir).unwrap();
    fs::rename(&snapshot, &dir).unwrap();
    let (code, out) = run(&dir, &pk, &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&dir, &pk, &from_syslog);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("TRUNCATED"), "{out}");
    assert!(out.contains("does not reach the external anchor"), "{out}");

    // A file without this log's heads is an error, not a pass.
    let other = AuditSigningKey::from_seed(&[6; 32]).public_key().to_hex();
    let (code, out) = run(&dir, &other, &from_syslog);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no signed head of the log"), "{out}");
}
