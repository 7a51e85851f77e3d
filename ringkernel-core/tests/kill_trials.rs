//! `kill -9` at random moments, many times: (a) while a production runtime appends audit
//! records, (b) while it rotates keys with live sealed control blocks (explicit and
//! timed rotation, kernels whose control blocks are sealed, the keystore in the state
//! directory). After every kill the audit log verifies to its last whole record (a
//! torn tail is an open tail, never tampering), and a runtime restarted in the same
//! state directory opens everything: its keystore, the data sealed before the kill,
//! the control blocks of its kernels through more rotations, and it closes its log.
//!
//! Each test runs `RINGKERNEL_KILL_TRIALS` trials (default 5; scripts/test.sh runs
//! 100). The kill points are drawn from a seed (`RINGKERNEL_KILL_SEED`, else the
//! clock), printed so a failing trial can be replayed: a random delay after the child
//! starts (during start-up too), or right after its k-th marker line ("batch" after
//! each 64 audited sends, "rotating" just before a rotation), at once or after a
//! random delay of up to 2 ms. Each test prints how many kills fell during start-up
//! and how many between "rotating" and "rotated" (during an explicit rotation;
//! timed rotations run in the background every 20 ms besides).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringkernel_core::Error;
use ringkernel_core::runtime::{LaunchOptions, Runtime, RuntimeBuilder, RuntimeConfig};
use ringkernel_core::security::audit::{AuditConfig, AuditLogConfig, LogStatus, verify};
use ringkernel_core::security::encryption::{EncryptionConfig, MemoryEncryption, SealedData};
use ringkernel_core::security::keystore::{KeyEncryptionKey, Keystore};
use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};

/// The environment variables that turn the `*_child` tests into the programs killed.
const CHILD_DIR: &str = "RINGKERNEL_TEST_KILL_CHILD_DIR";
const CHILD_MODE: &str = "RINGKERNEL_TEST_KILL_CHILD_MODE";
const KERNELS: [&str; 3] = ["k0", "k1", "k2"];

fn kek() -> KeyEncryptionKey {
    KeyEncryptionKey::from_bytes(&[0x24; 32]).unwrap()
}

/// The program's production runtime in `state`: the keystore's keys (rotated every
/// `rotate` by the ticker, superseded keys kept an hour), every send audited under
/// `state/audit`.
fn production(state: &Path, rotate: Duration) -> (Runtime, MemoryEncryption) {
    let ks = Keystore::open(state, kek()).unwrap();
    let enc = ks
        .encryption(
            EncryptionConfig::secure()
                .auto_rotate(rotate)
                .grace_period(Duration::from_secs(3600)),
        )
        .unwrap();
    let rt = RuntimeBuilder::new()
        .production()
        .with_keystore(ks)
        .with_encryption(enc.clone())
        .with_sandbox(KernelSandbox::with_policy(
            ResourceLimits::conservative(),
            SandboxPolicy::permissive(),
        ))
        .with_audit_logging(AuditLogConfig {
            events: AuditConfig {
                log_k2k_messages: true,
                ..AuditConfig::default()
            },
            ..AuditLogConfig::in_directory(state.join("audit"))
        })
        .config(RuntimeConfig {
            tick_interval: Duration::from_millis(5),
            ..RuntimeConfig::default()
        })
        .build()
        .unwrap();
    (rt, enc)
}

fn launch_all(rt: &Runtime) {
    for k in KERNELS {
        rt.launch(k, LaunchOptions::new()).unwrap();
    }
}

/// Replaces `state/name` atomically (a temporary file renamed over it).
fn write_atomic(state: &Path, name: &str, bytes: &[u8]) {
    let tmp = state.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, state.join(name)).unwrap();
}

/// Not a test on its own: the program the trials run and kill. Without the
/// environment variables it returns at once.
#[test]
fn kill_trial_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let state = Path::new(&dir);
    let rotating = std::env::var(CHILD_MODE).as_deref() == Ok("rotation");
    let every = if rotating {
        Duration::from_millis(20)
    } else {
        Duration::from_secs(3600)
    };
    let (rt, enc) = production(state, every);
    launch_all(&rt);
    println!("ready");
    for i in 0u64.. {
        for k in KERNELS {
            // Every send appends an audit record and updates a sealed control block.
            let _ = rt.send_timeout(k, "tick", &i.to_le_bytes(), Duration::from_secs(1));
        }
        if i % 64 == 63 {
            println!("batch");
        }
        if rotating && i % 8 == 7 {
            // Data sealed under the current key, kept where the restart finds it.
            let sealed = enc.encrypt_bytes(&i.to_le_bytes()).unwrap();
            write_atomic(state, "sealed.bin", sealed.as_bytes());
            println!("rotating");
            // Re-seals every live control block under a new key (kept in the keystore).
            let _ = rt.rotate_keys();
            println!("rotated");
        }
    }
}

/// The child, killed when the trial ends however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SplitMix64: the trials' kill points, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn trials() -> u64 {
    std::env::var("RINGKERNEL_KILL_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

fn seed() -> u64 {
    std::env::var("RINGKERNEL_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Where a trial kills the child.
#[derive(Debug)]
enum KillPoint {
    /// This long after the child was started (possibly before it is ready).
    AfterStart(Duration),
    /// Right after the `n`-th line containing `marker` (1-based), then `delay`.
    AfterMarker {
        marker: &'static str,
        n: u64,
        delay: Duration,
    },
}

/// Every JSON record of the log's whole lines, in segment order.
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

/// Runs the child in a fresh state directory, kills it at `point`, and checks the
/// state it left.
fn trial(mode: &str, point: &KillPoint, label: &str) -> Killed9 {
    let state = tempfile::tempdir().unwrap();
    let mut child = Killed(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "kill_trial_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, state.path())
            .env(CHILD_MODE, mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ready = false;
    match point {
        KillPoint::AfterStart(d) => {
            let until = started + *d;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                match rx.recv_timeout(left) {
                    Ok(l) => ready |= l.contains("ready"),
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        panic!("{label}: the child ended before it was killed")
                    }
                }
            }
        }
        KillPoint::AfterMarker { marker, n, delay } => {
            let mut seen = 0;
            while seen < *n {
                let l = rx
                    .recv_timeout(Duration::from_secs(60))
                    .unwrap_or_else(|e| {
                        panic!("{label}: no marker {marker:?} from the child: {e}")
                    });
                ready |= l.contains("ready");
                if l.contains(marker) {
                    seen += 1;
                }
            }
            if !delay.is_zero() {
                std::thread::sleep(*delay);
            }
        }
    }
    child.0.kill().unwrap(); // SIGKILL on Unix
    child.0.wait().unwrap();
    drop(child);
    // The child's last words: killed between "rotating" and "rotated"?
    let mut last = String::new();
    while let Ok(l) = rx.recv() {
        ready |= l.contains("ready");
        if l.contains("rotat") {
            last = l;
        }
    }
    let mid_rotation = last.contains("rotating");
    reader.join().unwrap();

    // The log as the kill left it: it verifies to its last whole record.
    let log = state.path().join("audit");
    let key = Keystore::open(state.path(), kek()).map(|k| k.audit_public_key());
    let before = records(&log);
    if ready {
        let key = key.as_ref().unwrap();
        match verify(&log, key) {
            Ok(r) => assert!(
                matches!(r.status, LogStatus::Open { .. }),
                "{label}: a killed log is open: {r:?}"
            ),
            Err(e) => panic!("{label}: the log a kill left does not verify: {e}"),
        }
    } else if let Ok(key) = &key {
        // Killed during start-up: there may be no log yet, but never a damaged one.
        match verify(&log, key) {
            Ok(_) | Err(Error::AuditLogMissing { .. }) => {}
            Err(e) => panic!("{label}: killed during start-up, the log does not verify: {e}"),
        }
    }

    // The restart, in the same state directory: the keystore opens, data sealed
    // before the kill opens, the kernels' sealed control blocks open through more
    // rotations, and the log closes cleanly.
    let (rt, enc) = production(state.path(), Duration::from_millis(20));
    launch_all(&rt);
    if let Ok(sealed) = std::fs::read(state.path().join("sealed.bin")) {
        SealedData::from_bytes(sealed)
            .and_then(|s| enc.decrypt_bytes(&s))
            .unwrap_or_else(|e| panic!("{label}: data sealed before the kill does not open: {e}"));
    }
    for i in 0..3u64 {
        for k in KERNELS {
            rt.send(k, "after", &i.to_le_bytes()).unwrap();
        }
        rt.rotate_keys().unwrap();
    }
    for k in KERNELS {
        let h = rt.kernel(k).unwrap();
        let t0 = Instant::now();
        loop {
            let st = h
                .status()
                .unwrap_or_else(|e| panic!("{label}: control block of {k} does not open: {e}"));
            if st.messages_processed == 3 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{label}: {k}: {st:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    rt.shutdown().unwrap();
    let key = Keystore::open(state.path(), kek())
        .unwrap()
        .audit_public_key();
    let report = verify(&log, &key)
        .unwrap_or_else(|e| panic!("{label}: the log after the restart does not verify: {e}"));
    assert_eq!(report.status, LogStatus::Closed, "{label}: {report:?}");
    // Nothing whole before the kill was lost.
    let after = records(&log);
    assert!(after.len() > before.len(), "{label}");
    for (a, b) in before.iter().zip(after.iter()) {
        assert_eq!(a, b, "{label}: a record written before the kill changed");
    }
    Killed9 {
        ready,
        mid_rotation,
    }
}

/// When a trial's kill came.
struct Killed9 {
    /// After the child was ready (else during its start-up).
    ready: bool,
    /// Between its "rotating" and "rotated" lines: during an explicit rotation.
    mid_rotation: bool,
}

fn run_trials(mode: &str, marker: &'static str) {
    let n = trials();
    let seed = seed();
    println!("{mode}: {n} kill -9 trials, RINGKERNEL_KILL_SEED={seed}");
    let mut rng = Rng(seed);
    let t0 = Instant::now();
    let (mut by_delay, mut by_marker, mut during_startup, mut mid_rotation) = (0, 0, 0, 0);
    for i in 0..n {
        let point = if rng.below(2) == 0 {
            by_delay += 1;
            KillPoint::AfterStart(Duration::from_millis(rng.below(400)))
        } else {
            by_marker += 1;
            KillPoint::AfterMarker {
                marker,
                n: 1 + rng.below(8),
                // Half at once (as close to the marker as a kill gets), half a little
                // later.
                delay: Duration::from_micros(rng.below(2) * rng.below(2000)),
            }
        };
        let label = format!("{mode} trial {i} (seed {seed}, {point:?})");
        let killed = trial(mode, &point, &label);
        during_startup += u64::from(!killed.ready);
        mid_rotation += u64::from(killed.mid_rotation);
    }
    println!(
        "{mode}: {n} trials in {:.1} s, failures: 0; kill points: {by_delay} after a \
         random delay, {by_marker} right after a {marker:?} marker; {during_startup} \
         during start-up, {mid_rotation} during an explicit rotation",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn kill_9_during_audit_appends_trials() {
    run_trials("appends", "batch");
}

#[test]
fn kill_9_during_key_rotation_trials() {
    run_trials("rotation", "rotating");
}
