//! `ringkernel audit tail|heads`, `report fleet`, `keystore` and `completions`: output
//! and exit status.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use ringkernel_core::runtime::RuntimeBuilder;
use ringkernel_core::security::audit::{
    AuditConfig, AuditEvent, AuditLog, AuditLogConfig, AuditSigningKey,
};
use ringkernel_core::security::compliance::{ComplianceReporter, ComplianceStandard, ExportFormat};

fn ringkernel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringkernel"))
        .args(args)
        .env_remove("RK_TEST_PASSPHRASE")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A closed log of `n` appended records in `dir`; returns the public key (hex).
fn closed_log(dir: &Path, n: u64) -> (AuditLog, String) {
    let key = AuditSigningKey::generate().unwrap();
    let pk = key.public_key().to_hex();
    let log = AuditLog::open(AuditLogConfig {
        events: AuditConfig {
            retention_days: 0,
            ..AuditConfig::default()
        },
        signing_key: Some(key),
        ..AuditLogConfig::in_directory(dir)
    })
    .unwrap();
    for i in 0..n {
        log.append(AuditEvent::new("kernel.launch").detail("i", i))
            .unwrap();
    }
    log.close().unwrap();
    (log, pk)
}

#[test]
fn audit_tail_prints_the_last_records() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 30);

    let out = ringkernel(&["audit", "tail", p(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 20, "{stdout}");

    let out = ringkernel(&["audit", "tail", p(dir.path()), "-n", "3", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let records: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    // 0 is the log's `audit.open`, 1..=30 ours.
    assert_eq!(records[0]["seq"], 28);
    assert_eq!(records[1]["details"]["i"], 28);
    assert_eq!(records[2]["seq"], 30);

    // More than there are: all of them.
    let out = ringkernel(&["audit", "tail", p(dir.path()), "-n", "1000", "--json"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 31);

    let empty = tempfile::tempdir().unwrap();
    let out = ringkernel(&["audit", "tail", p(empty.path())]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let out = ringkernel(&["audit", "tail", "/nonexistent/ringkernel-log"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = ringkernel(&["audit", "tail", p(dir.path()), "-n", "many"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn audit_heads_prints_the_verified_head_and_its_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (log, pk) = closed_log(dir.path(), 3);
    let anchor = log.head().anchor().to_string();

    let out = ringkernel(&["audit", "heads", p(dir.path()), "--key", &pk]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = text(&out);
    assert!(stdout.contains("closed, 4 records"), "{stdout}");
    assert!(
        stdout.contains(&format!("anchor to keep elsewhere: {anchor}")),
        "{stdout}"
    );

    let out = ringkernel(&["audit", "heads", p(dir.path()), "--key", &pk, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["anchor"], anchor.as_str());
    assert_eq!(v["head"]["records"], 4);
    assert_eq!(v["head"]["state"], "closed");
    assert_eq!(v["verified"], true);

    // The anchor it prints is what `audit verify --anchor` takes.
    let out = ringkernel(&[
        "audit",
        "verify",
        p(dir.path()),
        "--key",
        &pk,
        "--anchor",
        &anchor,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Another key: the head does not verify.
    let other = AuditSigningKey::generate().unwrap().public_key().to_hex();
    let out = ringkernel(&["audit", "heads", p(dir.path()), "--key", &other]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("FAILED"), "{}", text(&out));

    let empty = tempfile::tempdir().unwrap();
    let out = ringkernel(&["audit", "heads", p(empty.path()), "--key", &pk]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let out = ringkernel(&["audit", "heads", p(dir.path()), "--key", "beef"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn report_fleet_merges_reports_into_json_or_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut ids = Vec::new();
    for i in 0..2 {
        let rt = RuntimeBuilder::new().development().build().unwrap();
        ids.push(rt.instance_id().to_hex());
        let r = ComplianceReporter::new(&rt).organization("Fleet Corp");
        for standard in [ComplianceStandard::Soc2, ComplianceStandard::FedRamp] {
            let bytes = r
                .render(&r.generate(standard).unwrap(), ExportFormat::Json)
                .unwrap();
            let path = dir.path().join(format!("{i}-{standard:?}.json"));
            fs::write(&path, bytes).unwrap();
            files.push(path.to_str().unwrap().to_owned());
        }
    }
    let mut args = vec!["report", "fleet", "--format", "json"];
    args.extend(files.iter().map(String::as_str));
    let out = ringkernel(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fleets = v.as_array().unwrap();
    assert_eq!(fleets.len(), 2, "one fleet report per standard");
    for fleet in fleets {
        assert_eq!(fleet["runtimes"].as_array().unwrap().len(), 2);
    }

    // Markdown, to a file.
    let md = dir.path().join("fleet.md");
    let mut args = vec!["report", "fleet", "-o", p(&md)];
    args.extend(files.iter().map(String::as_str));
    let out = ringkernel(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.is_empty());
    let written = fs::read_to_string(&md).unwrap();
    for id in &ids {
        assert!(written.contains(id.as_str()), "{written}");
    }

    // Not a report, a missing file, no file: exit 2.
    let bad = dir.path().join("bad.json");
    fs::write(&bad, b"{}").unwrap();
    let out = ringkernel(&["report", "fleet", p(&bad)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("not a report"), "{}", text(&out));
    let out = ringkernel(&["report", "fleet", "/nonexistent/report.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(ringkernel(&["report", "fleet"]).status.code(), Some(2));
}

/// A report rendered by `ringkernel report snapshot` from a saved snapshot is the
/// report the runtime gives from the same snapshot, byte for byte, in every format;
/// a file that is not a snapshot is refused (exit 2).
#[test]
fn report_snapshot_renders_what_the_runtime_would() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit");
    let rt = RuntimeBuilder::new()
        .production()
        .with_audit_logging(AuditLogConfig::in_directory(&audit))
        .build()
        .unwrap();
    rt.launch("ingest", ringkernel_core::LaunchOptions::new())
        .unwrap();
    let snapshot = rt.security_snapshot();
    let file = dir.path().join("snapshot.json");
    fs::write(&file, snapshot.to_json().unwrap()).unwrap();
    let reporter = ComplianceReporter::unattached().organization("Snap Corp");

    for (standard, arg) in [
        (ComplianceStandard::Soc2, "soc2"),
        (ComplianceStandard::FedRamp, "fedramp"),
    ] {
        let expected = reporter.generate_from(&snapshot, standard);
        for (format, farg) in [
            (ExportFormat::Json, "json"),
            (ExportFormat::Markdown, "markdown"),
            (ExportFormat::Oscal, "oscal"),
        ] {
            let out = ringkernel(&[
                "report",
                "snapshot",
                p(&file),
                "--standard",
                arg,
                "--format",
                farg,
                "--organization",
                "Snap Corp",
            ]);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            assert_eq!(
                out.stdout,
                reporter.render(&expected, format).unwrap(),
                "{arg} {farg}"
            );
        }
    }
    // PDF needs a file.
    let out = ringkernel(&[
        "report",
        "snapshot",
        p(&file),
        "--standard",
        "hipaa",
        "--format",
        "pdf",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let pdf = dir.path().join("hipaa.pdf");
    let out = ringkernel(&[
        "report",
        "snapshot",
        p(&file),
        "--standard",
        "hipaa",
        "--format",
        "pdf",
        "-o",
        p(&pdf),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(fs::read(&pdf).unwrap().starts_with(b"%PDF-"));

    // Not a snapshot: a report, another format tag, a cut file.
    let report = dir.path().join("report.json");
    fs::write(
        &report,
        reporter
            .render(
                &reporter.generate_from(&snapshot, ComplianceStandard::Soc2),
                ExportFormat::Json,
            )
            .unwrap(),
    )
    .unwrap();
    let text_of = fs::read_to_string(&file).unwrap();
    let other = dir.path().join("other.json");
    fs::write(
        &other,
        text_of.replace("security-snapshot/v1", "security-snapshot/v9"),
    )
    .unwrap();
    let cut = dir.path().join("cut.json");
    fs::write(&cut, &text_of[..text_of.len() / 2]).unwrap();
    for bad in [&report, &other, &cut] {
        let out = ringkernel(&["report", "snapshot", p(bad), "--standard", "soc2"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("security snapshot"), "{}", text(&out));
    }
    rt.shutdown().unwrap();
}

fn key_file(dir: &Path) -> String {
    let path = dir.join("kek.bin");
    let mut bytes = [0u8; 48];
    getrandom::fill(&mut bytes).unwrap();
    fs::write(&path, bytes).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    }
    path.to_str().unwrap().to_owned()
}

#[test]
fn keystore_init_inspect_rotate_with_a_key_file() {
    let keys = tempfile::tempdir().unwrap();
    let kek = key_file(keys.path());
    let state = tempfile::tempdir().unwrap();
    let dir = p(state.path());

    // Inspect and rotate need a keystore; they do not create one.
    let out = ringkernel(&["keystore", "inspect", dir, "--key-file", &kek]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no keystore"), "{}", text(&out));
    assert!(!state.path().join("keystore.json").exists());

    let out = ringkernel(&["keystore", "init", dir, "--key-file", &kek, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["kek_kind"], "key-file");
    // A second init is refused.
    let out = ringkernel(&["keystore", "init", dir, "--key-file", &kek]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already exists"), "{}", text(&out));

    let out = ringkernel(&["keystore", "inspect", dir, "--key-file", &kek, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["audit_public_key"], created["audit_public_key"]);
    let before = info["highest_epoch"].as_u64().unwrap();

    let out = ringkernel(&["keystore", "rotate", dir, "--key-file", &kek]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("rotated: key epoch"), "{}", text(&out));

    // The rotation was written to the keystore.
    let out = ringkernel(&["keystore", "inspect", dir, "--key-file", &kek, "--json"]);
    let after: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // One rotation moves the epoch by exactly one (not two: opening the keystore's
    // encryption already starts the fresh epoch).
    assert_eq!(
        after["highest_epoch"].as_u64().unwrap(),
        before + 1,
        "{after}"
    );
    assert!(after["generation"].as_u64() > info["generation"].as_u64());
    assert_eq!(after["audit_public_key"], created["audit_public_key"]);
    // Nothing secret in what it prints: only the fields of KeystoreInfo.
    let fields: Vec<&String> = after.as_object().unwrap().keys().collect();
    assert_eq!(
        fields.len(),
        7,
        "path, format, kek_kind, generation, highest_epoch, live_epochs, audit_public_key: {fields:?}"
    );

    // Another key file: refused, exit 2.
    let other = tempfile::tempdir().unwrap();
    let wrong = key_file(other.path());
    let out = ringkernel(&["keystore", "inspect", dir, "--key-file", &wrong]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // Neither or both KEK options: usage error.
    assert_eq!(
        ringkernel(&["keystore", "inspect", dir]).status.code(),
        Some(2)
    );
    let out = ringkernel(&[
        "keystore",
        "inspect",
        dir,
        "--key-file",
        &kek,
        "--passphrase-env",
        "RK_TEST_PASSPHRASE",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn keystore_passphrase_comes_from_the_environment_and_is_never_printed() {
    let state = tempfile::tempdir().unwrap();
    let dir = p(state.path());
    let secret = "correct horse battery staple 4711";
    let run = |cmd: &str, passphrase: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ringkernel"));
        c.args([
            "keystore",
            cmd,
            dir,
            "--passphrase-env",
            "RK_TEST_PASSPHRASE",
        ]);
        match passphrase {
            Some(pw) => c.env("RK_TEST_PASSPHRASE", pw),
            None => c.env_remove("RK_TEST_PASSPHRASE"),
        };
        c.output().unwrap()
    };
    // The variable unset: a clear error naming the variable, not the value.
    let out = run("init", None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("RK_TEST_PASSPHRASE"), "{}", text(&out));

    let out = run("init", Some(secret));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("password"), "{}", text(&out));
    assert!(!text(&out).contains(secret));
    let out = run("inspect", Some(secret));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(secret));
    let out = run("inspect", Some("not the passphrase"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!text(&out).contains("not the passphrase"));
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = ringkernel(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains("ringkernel"), "{shell}");
        assert!(script.contains("keystore"), "{shell}");
    }
    assert_eq!(ringkernel(&["completions", "tcsh"]).status.code(), Some(2));
}
