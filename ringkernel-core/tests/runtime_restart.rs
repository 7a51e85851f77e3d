//! A production program restarted in the same state directory: it unseals its
//! keystore, reopens what it sealed, continues its kernels' launch counts and the same
//! signed audit chain; after a `kill -9` mid-append the log still verifies to its last
//! whole record and the restart is recorded.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringkernel_core::Error;
use ringkernel_core::runtime::{LaunchOptions, Runtime, RuntimeBuilder, StateSnapshot};
use ringkernel_core::security::audit::{AuditConfig, AuditLogConfig, LogStatus, verify};
use ringkernel_core::security::keystore::{KeyEncryptionKey, Keystore};
use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};

/// The environment variable that turns `crash_child` into the program to be killed.
const CHILD_DIR: &str = "RINGKERNEL_TEST_CRASH_CHILD_DIR";

fn kek() -> KeyEncryptionKey {
    KeyEncryptionKey::from_bytes(&[0x42; 32]).unwrap()
}

/// The production runtime of the "program": keys from the keystore in `state`, the
/// audit log under `state/audit`, every K2K message audited.
fn production(state: &Path) -> Runtime {
    let audit = AuditLogConfig {
        events: AuditConfig {
            log_k2k_messages: true,
            ..AuditConfig::default()
        },
        ..AuditLogConfig::in_directory(state.join("audit"))
    };
    RuntimeBuilder::new()
        .production()
        .with_keystore(Keystore::open(state, kek()).unwrap())
        .with_sandbox(KernelSandbox::with_policy(
            ResourceLimits::conservative(),
            SandboxPolicy::permissive(),
        ))
        .with_audit_logging(audit)
        .build()
        .unwrap()
}

/// Every JSON record of the log, in segment order.
fn records(dir: &Path) -> Vec<serde_json::Value> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut segments: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    segments.sort();
    segments
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<serde_json::Value>>()
        })
        .collect()
}

fn events<'a>(records: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["event"] == name).collect()
}

#[test]
fn a_production_program_restarts_in_its_state_directory() {
    let state = tempfile::tempdir().unwrap();
    let mut sealed_state = None;
    for run in 1..=2u32 {
        let rt = production(state.path());
        let k = rt
            .launch(
                "ledger",
                LaunchOptions::new().handler(|ctx, m| {
                    ctx.save_state(&m.payload)?;
                    Ok(())
                }),
            )
            .unwrap();
        assert_eq!(
            k.incarnation(),
            run,
            "launch count continues across restarts"
        );
        rt.send("ledger", "tx", format!("run {run}").as_bytes())
            .unwrap();
        let t0 = Instant::now();
        while k.load_state().unwrap().is_none() {
            assert!(t0.elapsed() < Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(1));
        }
        // Data sealed directly with the runtime's encryption in run 1 opens in run 2.
        let enc = rt.encryption().unwrap();
        match sealed_state.take() {
            None => sealed_state = Some(enc.encrypt_bytes(b"from run 1").unwrap()),
            Some(s) => assert_eq!(&enc.decrypt_bytes(&s).unwrap()[..], b"from run 1"),
        }
        rt.shutdown().unwrap();
    }
    // One log, one signing key, both runs in one verified chain.
    let key = Keystore::open(state.path(), kek())
        .unwrap()
        .audit_public_key();
    let log = state.path().join("audit");
    let report = verify(&log, &key).unwrap();
    assert_eq!(
        report.status,
        LogStatus::Closed,
        "a clean shutdown closes the log"
    );
    let all = records(&log);
    assert_eq!(events(&all, "runtime.configure").len(), 2);
    let opens = events(&all, "audit.open");
    assert_eq!(opens.len(), 2);
    assert!(
        opens[1]["details"]["resumed_after_seq"].is_u64(),
        "{}",
        opens[1]
    );
    let instances: Vec<&serde_json::Value> = events(&all, "runtime.configure")
        .iter()
        .map(|r| &r["details"]["instance"])
        .collect();
    assert_ne!(
        instances[0], instances[1],
        "each run is its own runtime instance"
    );
}

/// Not a test on its own: the program `kill_9_mid_append_then_restart_loses_nothing`
/// runs and kills. Without the environment variable it returns at once.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let rt = production(Path::new(&dir));
    rt.launch("sink", LaunchOptions::new()).unwrap();
    println!("ready");
    for i in 0u64.. {
        // Every send appends an audit record; the parent kills us in the middle.
        let _ = rt.send_timeout("sink", "tick", &i.to_le_bytes(), Duration::from_secs(1));
    }
}

/// The child program, killed when the test ends however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kill_9_mid_append_then_restart_loses_nothing() {
    let state = tempfile::tempdir().unwrap();
    let mut child = Killed(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, state.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Let it write a while (the keystore and some audit records), then kill -9.
    let log = state.path().join("audit");
    let t0 = Instant::now();
    while records(&log).len() < 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "child wrote nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.0.kill().unwrap(); // SIGKILL on Unix
    child.0.wait().unwrap();
    let before: Vec<serde_json::Value> = records(&log);

    // The restart: same directory, same keystore.
    let rt = production(state.path());
    rt.launch("sink", LaunchOptions::new()).unwrap();
    rt.shutdown().unwrap();

    let key = Keystore::open(state.path(), kek())
        .unwrap()
        .audit_public_key();
    let report = verify(&log, &key).unwrap();
    let after = records(&log);
    // Nothing before the last whole record was lost...
    assert!(after.len() > before.len());
    for (a, b) in before.iter().zip(after.iter()) {
        assert_eq!(a, b);
    }
    // ...the restart is in the chain, naming where the crashed run stopped...
    let opens = events(&after, "audit.open");
    assert_eq!(opens.len(), 2);
    let resumed = opens[1]["details"]["resumed_after_seq"].as_u64().unwrap();
    assert_eq!(resumed, before.last().unwrap()["seq"].as_u64().unwrap());
    assert!(
        opens[1]["details"]["previous_head"]
            .as_str()
            .is_some_and(|h| h.len() == 64),
        "the restart record names the head it continues: {}",
        opens[1]
    );
    // ...and every record is covered by the one chain.
    assert_eq!(report.records as usize, after.len());
}

/// A kernel that saves every payload as its state.
fn ledger(rt: &Runtime) -> ringkernel_core::runtime::KernelHandle {
    rt.launch(
        "ledger",
        LaunchOptions::new().handler(|ctx, m| {
            ctx.save_state(&m.payload)?;
            Ok(())
        }),
    )
    .unwrap()
}

fn save(rt: &Runtime, k: &ringkernel_core::runtime::KernelHandle, state: &[u8]) {
    rt.send(k.id().as_str(), "set", state).unwrap();
    let t0 = Instant::now();
    while k.load_state().unwrap().as_deref() != Some(state) {
        assert!(t0.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn state_snapshot_rollback_to_an_older_generation_is_refused_and_audited() {
    let state = tempfile::tempdir().unwrap();
    let rt = production(state.path());
    let k = ledger(&rt);
    save(&rt, &k, b"balance=100");
    let rich = k.export_state().unwrap().unwrap();
    assert_eq!(rich.generation(), 1);
    save(&rt, &k, b"balance=5");
    let poor = k.export_state().unwrap().unwrap();
    assert_eq!(poor.generation(), 2);

    // Rolling back to the richer snapshot: refused whichever generation is named.
    for named in [1, 2, 3] {
        let err = k.restore_state(&rich, named).unwrap_err();
        assert!(matches!(err, Error::StaleSnapshot { .. }), "{named}: {err}");
        assert!(err.to_string().contains("stale"), "{err}");
    }
    assert_eq!(k.load_state().unwrap().as_deref(), Some(&b"balance=5"[..]));
    // Another kernel's snapshot, named with this kernel's latest generation: foreign.
    let other = ledger_named(&rt, "other");
    save(&rt, &other, b"balance=999999");
    let theirs = other.export_state().unwrap().unwrap();
    assert!(matches!(
        k.restore_state(&theirs, 2),
        Err(Error::WrongContext)
    ));
    // The latest, named: restored.
    save(&rt, &k, b"balance=0");
    k.restore_state(&poor, 2).unwrap();
    assert_eq!(k.load_state().unwrap().as_deref(), Some(&b"balance=5"[..]));
    // Stored bytes come back through from_bytes; garbage is an error, not a panic.
    let again = StateSnapshot::from_bytes(poor.as_bytes().to_vec()).unwrap();
    assert_eq!((again.kernel().as_str(), again.generation()), ("ledger", 2));
    for junk in [
        &b""[..],
        b"RKSN",
        &poor.as_bytes()[..9],
        b"RKSN\x01\xff\xff",
    ] {
        assert!(StateSnapshot::from_bytes(junk.to_vec()).is_err());
    }
    let mut flipped = poor.as_bytes().to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(
        k.restore_state(&StateSnapshot::from_bytes(flipped).unwrap(), 2),
        Err(Error::Tampered)
    ));
    let key = rt.audit_log().unwrap().public_key();
    rt.shutdown().unwrap();

    let all = records(&state.path().join("audit"));
    verify(state.path().join("audit"), &key).unwrap();
    let restores = events(&all, "state.restore");
    assert_eq!(restores.len(), 6, "every attempt is audited");
    assert_eq!(
        restores.iter().filter(|r| r["result"] == "denied").count(),
        5,
        "the five refusals say so"
    );
}

fn ledger_named(rt: &Runtime, id: &str) -> ringkernel_core::runtime::KernelHandle {
    rt.launch(
        id,
        LaunchOptions::new().handler(|ctx, m| {
            ctx.save_state(&m.payload)?;
            Ok(())
        }),
    )
    .unwrap()
}

#[test]
fn state_snapshot_survives_a_restart_and_only_the_latest_restores() {
    let state = tempfile::tempdir().unwrap();
    let (old, latest) = {
        let rt = production(state.path());
        let k = ledger(&rt);
        save(&rt, &k, b"v1");
        let old = k.export_state().unwrap().unwrap();
        save(&rt, &k, b"v2");
        let latest = k.export_state().unwrap().unwrap();
        rt.shutdown().unwrap();
        (old.as_bytes().to_vec(), latest.as_bytes().to_vec())
    };
    // The restarted program: new runtime instance, same keystore and state directory.
    let rt = production(state.path());
    let k = ledger(&rt);
    assert!(
        k.load_state().unwrap().is_none(),
        "a relaunch starts without state"
    );
    let old = StateSnapshot::from_bytes(old).unwrap();
    assert!(matches!(
        k.restore_state(&old, old.generation()),
        Err(Error::StaleSnapshot {
            expected: 2,
            found: 1,
            ..
        })
    ));
    let latest = StateSnapshot::from_bytes(latest).unwrap();
    k.restore_state(&latest, 2).unwrap();
    assert_eq!(k.load_state().unwrap().as_deref(), Some(&b"v2"[..]));
    rt.shutdown().unwrap();
}

/// The public page's audit literal, as written (four fields, nothing else to fill in):
/// with a keystore its log goes to `audit/` in the state directory, signed with the
/// keystore's key, and records what the literal says.
#[test]
fn seed_audit_literal_logs_into_the_state_directory() {
    let state = tempfile::tempdir().unwrap();
    let runtime = RuntimeBuilder::new()
        .production()
        .with_keystore(Keystore::open(state.path(), kek()).unwrap())
        .with_sandbox(KernelSandbox::with_policy(
            ResourceLimits::conservative(),
            SandboxPolicy::permissive(),
        ))
        .with_audit_logging(AuditConfig {
            log_k2k_messages: true,
            log_memory_access: true,
            log_violations: true,
            retention_days: 90,
        })
        .build()
        .unwrap();
    let log = runtime.audit_log().unwrap();
    assert_eq!(log.directory(), state.path().join("audit"));
    assert_eq!(log.config().events.retention_days, 90);
    assert!(log.config().events.log_memory_access);
    let a = runtime.launch("a", LaunchOptions::new()).unwrap();
    let b = runtime.launch("b", LaunchOptions::new()).unwrap();
    a.send("b", "t", b"x").unwrap();
    let key = log.public_key();
    drop((a, b));
    runtime.shutdown().unwrap();
    let report = verify(state.path().join("audit"), &key).unwrap();
    assert_eq!(report.status, LogStatus::Closed);
    // Every K2K send is recorded, as the literal asks.
    let all = records(&state.path().join("audit"));
    assert_eq!(events(&all, "k2k.send").len(), 1);
}

/// A snapshot's label (kernel id and generation, outside the sealed envelope) changed
/// while its sealed content is the latest: the label is what callers and audit records
/// read, so a forged one is refused rather than restored (fuzz finding G,
/// `runtime_ops`).
#[test]
fn state_snapshot_with_a_forged_label_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let rt = production(state.path());
    let k = ledger(&rt);
    save(&rt, &k, b"balance=100");
    save(&rt, &k, b"balance=5");
    let _ = k.export_state().unwrap().unwrap();
    let latest = k.export_state().unwrap().unwrap();
    assert_eq!(latest.generation(), 2);
    // "RKSN", version, id length (u16), "ledger", then the generation (u32 LE).
    let at = 4 + 1 + 2 + "ledger".len();
    for (byte, mask) in [(at, 0x01u8), (at + 3, 0x80)] {
        let mut forged = latest.as_bytes().to_vec();
        forged[byte] ^= mask;
        let forged = StateSnapshot::from_bytes(forged).unwrap();
        assert_ne!(forged.generation(), 2);
        for named in [2, forged.generation()] {
            let err = k.restore_state(&forged, named).unwrap_err();
            assert!(matches!(err, Error::StaleSnapshot { .. }), "{named}: {err}");
        }
    }
    // The kernel id in the label: "ledger" -> "ledges", the envelope untouched.
    let mut forged = latest.as_bytes().to_vec();
    forged[at - 1] ^= 0x01;
    let forged = StateSnapshot::from_bytes(forged).unwrap();
    assert_eq!(forged.kernel().as_str(), "ledges");
    let err = k.restore_state(&forged, 2).unwrap_err();
    assert!(matches!(err, Error::WrongContext), "{err}");
    k.restore_state(&latest, 2).unwrap();
    rt.shutdown().unwrap();
}

/// Snapshot rollback through the state directory: the count of exported generations
/// lived in `snapshots.json`, a plain file, so whoever could write the directory (no
/// key needed) lowered a kernel's count and the older snapshot was then accepted as
/// the latest. With a keystore the counts are kept in it, authenticated under the
/// KEK: a plain count file is only ever taken over upwards, and an edited count in
/// the keystore is refused as tampering. (Putting back an older copy of the whole
/// keystore is the window left: docs/threat-model.md.)
#[test]
fn snapshot_rollback_by_editing_the_counts_in_the_state_directory_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let old = {
        let rt = production(state.path());
        let k = ledger(&rt);
        save(&rt, &k, b"v1");
        let old = k.export_state().unwrap().unwrap();
        save(&rt, &k, b"v2");
        k.export_state().unwrap().unwrap();
        rt.shutdown().unwrap();
        old.as_bytes().to_vec()
    };
    let old = StateSnapshot::from_bytes(old).unwrap();
    // The plain count file an earlier version kept, written with a lower count.
    let count_file = state.path().join("snapshots.json");
    std::fs::write(&count_file, br#"{"ledger": 1}"#).unwrap();
    {
        let rt = production(state.path());
        let k = ledger(&rt);
        let r = k.restore_state(&old, 1);
        assert!(
            matches!(
                r,
                Err(Error::StaleSnapshot {
                    expected: 2,
                    found: 1,
                    ..
                })
            ),
            "rolled back through snapshots.json: {r:?}"
        );
        rt.shutdown().unwrap();
    }
    assert!(!count_file.exists(), "taken over and removed");
    // The count edited inside the keystore's readable part.
    let path = state.path().join("keystore.json");
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(file["counts"]["snapshots"]["ledger"], 2);
    file["counts"]["snapshots"]["ledger"] = 1.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    assert!(matches!(
        Keystore::open(state.path(), kek()),
        Err(Error::Tampered)
    ));
}

/// An upgrade with the state directory apart from the keystore: the count files an
/// earlier version kept there are taken over (not silently dropped, which would start
/// every kernel's counts again and let an older snapshot pass as the latest).
#[test]
fn counts_of_an_earlier_version_in_a_separate_state_directory_are_taken_over() {
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("snapshots.json"), br#"{"ledger": 5}"#).unwrap();
    std::fs::write(state.path().join("incarnations.json"), br#"{"ledger": 7}"#).unwrap();
    let rt = RuntimeBuilder::new()
        .production()
        .with_keystore(Keystore::open(keys.path(), kek()).unwrap())
        .state_directory(state.path())
        .with_sandbox(KernelSandbox::with_policy(
            ResourceLimits::conservative(),
            SandboxPolicy::permissive(),
        ))
        .with_audit_logging(AuditLogConfig::in_directory(keys.path().join("audit")))
        .build()
        .unwrap();
    let k = ledger(&rt);
    save(&rt, &k, b"v");
    assert_eq!(k.export_state().unwrap().unwrap().generation(), 6);
    rt.shutdown().unwrap();
    assert!(!state.path().join("snapshots.json").exists());
    assert!(!state.path().join("incarnations.json").exists());
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(keys.path().join("keystore.json")).unwrap()).unwrap();
    assert_eq!(file["counts"]["snapshots"]["ledger"], 6);
    assert_eq!(file["counts"]["incarnations"]["ledger"], 8);
}
