//! A production CPU runtime driven through a random sequence of operations (at most
//! [`MAX_OPS`] per input): launch and relaunch kernels, K2K sends on allowed and denied
//! routes (and from stale handles), key rotation, state export and restore, restart in
//! the same state directory (keystore, incarnation and snapshot counts, audit log),
//! shutdown, and tampering: byte-flipped or replayed state snapshots, byte-flipped
//! sealed data, a byte-flipped keystore file at restart.
//!
//! The runtime: keys from a keystore in a temporary state directory (its memory
//! encryption seals control blocks, queues and kernel state), the audit log in `audit/`
//! there (every K2K send recorded), a restrictive sandbox: `src_*` kernels may send to
//! `sink_*` on topics `data.*`, `vault` is denied to them explicitly, and no other
//! kernel route is allowed.
//!
//! Invariants, after every step: nothing panics; a send on an allowed route between
//! running kernels succeeds and a denied one fails with `Denied`; every message sent is
//! delivered exactly once, to its destination, from its real source, with its topic and
//! payload, and no refused send is ever delivered; each kernel's `messages_processed`
//! and `messages_sent` count exactly what it received and sent; launch incarnations
//! only grow; only the latest exported snapshot of a kernel restores (unchanged, named
//! with its generation, into that kernel), and a restore gives back its state; no
//! changed snapshot or sealed datum is accepted; a changed keystore opens only with the
//! same keys; at the end the audit log verifies as closed and accounts for every
//! accepted send exactly once (a `k2k.send` record each, or counted in a
//! `k2k.route_summary`: the runtimes of an input alternate between the two modes).
//!
//! Not covered: flipping bytes of a sealed control block or queue in place. The CPU
//! backend keeps them in host memory the public API does not reach (the hostile-device
//! hook, `backend::hostile`, is for device backends; the conformance suite uses it).
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ringkernel_core::Error;
use ringkernel_core::k2k::Endpoint;
use ringkernel_core::runtime::{
    KernelHandle, KernelState, LaunchOptions, Runtime, RuntimeBuilder, RuntimeConfig, StateSnapshot,
};
use ringkernel_core::security::audit::{
    AuditConfig, AuditLogConfig, AuditRecord, K2kRecords, LogStatus, verify,
};
use ringkernel_core::security::encryption::SealedData;
use ringkernel_core::security::keystore::{KeyEncryptionKey, Keystore};
use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};

/// Operations per input, at most: keeps each execution short.
const MAX_OPS: usize = 16;

/// The kernels an input can name (index modulo the length).
const KERNELS: [&str; 5] = ["src_a", "src_b", "sink_a", "sink_b", "vault"];
/// The topics an input can send on: the first is allowed to `src_*`, the second not.
const TOPICS: [&str; 2] = ["data.x", "ctl"];

/// How long a delivery or a stop may take before the target reports it lost.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Arbitrary, Debug)]
enum Op {
    Launch {
        k: u8,
    },
    /// From kernel `from` (an index past the kernels: the host) to kernel `to`.
    Send {
        from: u8,
        to: u8,
        topic: u8,
        len: u8,
    },
    /// From a handle of an earlier launch (or an earlier runtime): always refused.
    SendStale {
        handle: u8,
        to: u8,
    },
    Rotate,
    Export {
        k: u8,
    },
    /// Restores snapshot `snap` into kernel `k`, naming its generation plus `skew`
    /// (0 names it exactly).
    Restore {
        k: u8,
        snap: u8,
        skew: i8,
    },
    /// Restores snapshot `snap` with byte `at` xor `mask` (0 taken as 1).
    RestoreTampered {
        snap: u8,
        at: u16,
        mask: u8,
    },
    Seal {
        len: u8,
    },
    /// Opens sealed datum `blob`, byte `at` xor `mask` (0: unchanged).
    Open {
        blob: u8,
        at: u16,
        mask: u8,
    },
    Terminate {
        k: u8,
    },
    /// Shutdown and a new runtime in the same state directory.
    Restart,
    /// Restart, first trying the keystore with byte `at` xor `mask` (0 taken as 1).
    RestartTamperedKeystore {
        at: u16,
        mask: u8,
    },
    Shutdown,
    Tick,
}

fn kek() -> KeyEncryptionKey {
    KeyEncryptionKey::from_bytes(&[0x5a; 32]).expect("32-byte KEK")
}

fn sandbox() -> KernelSandbox {
    let limits = ResourceLimits::conservative().max_messages_per_second(1_000_000);
    KernelSandbox::with_policy(limits, SandboxPolicy::restrictive()).with_kernel_policy(
        "src_*",
        limits,
        SandboxPolicy::restrictive()
            .k2k_allow_list(&["sink_*", "vault"])
            .deny_k2k_to(&["vault"])
            .allow_topics(&["data.*"]),
    )
}

/// Whether the sandbox lets kernel `from` send to kernel `to` on topic `topic`.
fn allowed(from: usize, to: usize, topic: usize) -> bool {
    from < 2 && (2..4).contains(&to) && topic == 0
}

/// `per_route`: delivered sends are audited as per-route counts (`K2kRecords::PerRoute`,
/// a 2 ms interval) instead of a record each; the runs of one input alternate.
fn build(state: &Path, per_route: bool) -> Runtime {
    let keystore = Keystore::open(state, kek()).expect("keystore opens");
    RuntimeBuilder::new()
        .production()
        .with_keystore(keystore)
        .with_sandbox(sandbox())
        .with_audit_logging(AuditLogConfig {
            events: AuditConfig {
                log_k2k_messages: true,
                ..AuditConfig::default()
            },
            k2k_records: if per_route {
                K2kRecords::PerRoute {
                    interval: Duration::from_millis(2),
                }
            } else {
                K2kRecords::EachSend
            },
            ..AuditLogConfig::default()
        })
        .config(RuntimeConfig {
            poll_interval: Duration::from_millis(1),
            ..RuntimeConfig::default()
        })
        .build()
        .expect("runtime builds")
}

/// A message as its handler received it.
#[derive(Debug)]
struct Seen {
    to: usize,
    incarnation: u32,
    source: Endpoint,
    topic: String,
    payload: Vec<u8>,
}

/// A send the runtime accepted, and the launch it went to.
#[derive(Debug)]
struct Sent {
    to: usize,
    incarnation: u32,
    source: Option<usize>,
    topic: usize,
}

/// A launch of a kernel that is still running, and what it has done.
struct Live {
    handle: KernelHandle,
    /// Messages it has sent and had accepted.
    sent: u64,
    /// Messages accepted for it.
    expected: u64,
    /// The state it holds (the last payload it received, or a restored snapshot's).
    state: Option<Vec<u8>>,
}

struct Snapshot {
    kernel: usize,
    generation: u32,
    bytes: Vec<u8>,
    state: Vec<u8>,
}

/// The runtime under test and what the target knows it must have done.
struct World {
    dir: tempfile::TempDir,
    /// `None` only while a restart replaces it.
    rt: Option<Runtime>,
    up: bool,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Sends accepted, by payload.
    sent: BTreeMap<Vec<u8>, Sent>,
    /// Payloads of refused sends.
    refused: BTreeSet<Vec<u8>>,
    live: BTreeMap<usize, Live>,
    /// Every handle ever launched (for stale sends), with its kernel.
    handles: Vec<(usize, KernelHandle)>,
    /// The highest incarnation seen per kernel, and the latest snapshot generation.
    incarnations: [u32; 5],
    generations: [u32; 5],
    snapshots: Vec<Snapshot>,
    blobs: Vec<(SealedData, Vec<u8>)>,
    next_payload: u64,
    /// Runtimes built so far (odd ones audit K2K sends per route).
    builds: u32,
}

/// Locks `m`, also when a panic poisoned it (the target reports the panic itself).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn launch(
    rt: &Runtime,
    k: usize,
    seen: &Arc<Mutex<Vec<Seen>>>,
) -> ringkernel_core::Result<KernelHandle> {
    let seen = seen.clone();
    // The incarnation is known only once launched; the handler reads it here (no
    // message reaches the kernel before `launch` returns its handle to the target).
    let incarnation = Arc::new(Mutex::new(0u32));
    let inc = incarnation.clone();
    let h = rt.launch(
        KERNELS[k],
        LaunchOptions::new().handler(move |ctx, m| {
            ctx.save_state(&m.payload)?;
            lock(&seen).push(Seen {
                to: k,
                incarnation: *lock(&inc),
                source: m.source.clone(),
                topic: m.topic.clone(),
                payload: m.payload.clone(),
            });
            Ok(())
        }),
    )?;
    *lock(&incarnation) = h.incarnation();
    Ok(h)
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = build(dir.path(), false);
        World {
            dir,
            rt: Some(rt),
            up: true,
            seen: Arc::default(),
            sent: BTreeMap::new(),
            refused: BTreeSet::new(),
            live: BTreeMap::new(),
            handles: Vec::new(),
            incarnations: [0; 5],
            generations: [0; 5],
            snapshots: Vec::new(),
            blobs: Vec::new(),
            next_payload: 0,
            builds: 1,
        }
    }

    fn rt(&self) -> &Runtime {
        self.rt.as_ref().expect("a runtime")
    }

    fn payload(&mut self, len: u8) -> Vec<u8> {
        self.next_payload += 1;
        let mut p = self.next_payload.to_le_bytes().to_vec();
        p.extend(std::iter::repeat_n(0xa5, usize::from(len % 32)));
        p
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Launch { k } => self.launch(usize::from(k) % KERNELS.len()),
            Op::Send {
                from,
                to,
                topic,
                len,
            } => {
                let from = usize::from(from) % (KERNELS.len() + 1);
                let from = (from < KERNELS.len()).then_some(from);
                self.send(
                    from,
                    usize::from(to) % KERNELS.len(),
                    usize::from(topic) % TOPICS.len(),
                    len,
                );
            }
            Op::SendStale { handle, to } => self.send_stale(usize::from(handle), usize::from(to)),
            Op::Rotate => {
                let r = self.rt().rotate_keys();
                if self.up {
                    r.unwrap_or_else(|e| panic!("rotate_keys failed: {e}"));
                }
            }
            Op::Export { k } => self.export(usize::from(k) % KERNELS.len()),
            Op::Restore { k, snap, skew } => {
                self.restore(usize::from(k) % KERNELS.len(), usize::from(snap), skew)
            }
            Op::RestoreTampered { snap, at, mask } => {
                self.restore_tampered(usize::from(snap), usize::from(at), mask)
            }
            Op::Seal { len } => {
                if !self.up {
                    return;
                }
                let p = self.payload(len);
                let enc = self.rt().encryption().expect("production seals");
                let sealed = enc.encrypt_bytes(&p).expect("encrypt_bytes");
                self.blobs.push((sealed, p));
            }
            Op::Open { blob, at, mask } => self.open(usize::from(blob), usize::from(at), mask),
            Op::Terminate { k } => self.terminate(usize::from(k) % KERNELS.len()),
            Op::Restart => self.restart(None),
            Op::RestartTamperedKeystore { at, mask } => {
                self.restart(Some((usize::from(at), mask.max(1))))
            }
            Op::Shutdown => self.shutdown(),
            Op::Tick => self.rt().tick(),
        }
    }

    fn launch(&mut self, k: usize) {
        let r = launch(self.rt(), k, &self.seen);
        if !self.up {
            assert!(
                matches!(r, Err(Error::RuntimeShutDown)),
                "launch after shutdown: {r:?}"
            );
            return;
        }
        if self.live.contains_key(&k) {
            assert!(
                matches!(r, Err(Error::DuplicateKernel { .. })),
                "a second launch of running {} was not refused: {r:?}",
                KERNELS[k]
            );
            return;
        }
        let h = r.unwrap_or_else(|e| panic!("launch of {} failed: {e}", KERNELS[k]));
        assert!(
            h.incarnation() > self.incarnations[k],
            "{} launched with incarnation {} after {}",
            KERNELS[k],
            h.incarnation(),
            self.incarnations[k]
        );
        self.incarnations[k] = h.incarnation();
        assert!(
            h.load_state().expect("load_state").is_none(),
            "a launch starts without state"
        );
        self.handles.push((k, h.clone()));
        self.live.insert(
            k,
            Live {
                handle: h,
                sent: 0,
                expected: 0,
                state: None,
            },
        );
    }

    fn send(&mut self, from: Option<usize>, to: usize, topic: usize, len: u8) {
        let p = self.payload(len);
        let r = match from {
            None => self.rt().send(KERNELS[to], TOPICS[topic], &p),
            Some(f) => match self.live.get(&f) {
                Some(l) => l.handle.send(KERNELS[to], TOPICS[topic], &p),
                // No running sender: nothing to send with.
                None => return,
            },
        };
        let dest = self.live.get(&to).map(|l| l.handle.incarnation());
        let must_fail = !self.up || dest.is_none() || from.is_some_and(|f| !allowed(f, to, topic));
        match (&r, must_fail) {
            (Ok(()), false) => {}
            (Err(_), true) => {}
            (Ok(()), true) => panic!(
                "send {from:?} -> {} on {} accepted: up {}, destination running {}",
                KERNELS[to],
                TOPICS[topic],
                self.up,
                dest.is_some()
            ),
            (Err(e), false) => panic!(
                "send {from:?} -> {} on {} refused: {e}",
                KERNELS[to], TOPICS[topic]
            ),
        }
        if let (Err(e), Some(f), Some(_), true) = (&r, from, dest, self.up)
            && !allowed(f, to, topic)
        {
            assert!(
                matches!(e, Error::Denied { .. }),
                "a route the sandbox denies failed otherwise: {e}"
            );
        }
        match (r, dest) {
            (Ok(()), Some(incarnation)) => {
                if let Some(f) = from {
                    self.live.get_mut(&f).expect("sender").sent += 1;
                }
                let dest = self.live.get_mut(&to).expect("destination");
                dest.expected += 1;
                // The handler saves each payload as its state.
                dest.state = Some(p.clone());
                self.sent.insert(
                    p,
                    Sent {
                        to,
                        incarnation,
                        source: from,
                        topic,
                    },
                );
            }
            _ => {
                self.refused.insert(p);
            }
        }
    }

    /// A send from a handle of a launch that is no longer running (stopped, relaunched,
    /// or of an earlier runtime): refused whatever the route.
    fn send_stale(&mut self, handle: usize, to: usize) {
        if self.handles.is_empty() {
            return;
        }
        let (k, h) = self.handles[handle % self.handles.len()].clone();
        let current = self
            .live
            .get(&k)
            .is_some_and(|l| l.handle.incarnation() == h.incarnation() && self.up);
        if current {
            return;
        }
        let p = self.payload(0);
        let r = h.send(KERNELS[to % KERNELS.len()], TOPICS[0], &p);
        assert!(r.is_err(), "a stopped launch's handle sent a message");
        self.refused.insert(p);
    }

    /// Waits until every accepted message has been handled, then checks deliveries
    /// and counters.
    fn settle(&mut self) {
        let t0 = Instant::now();
        loop {
            let done = {
                let seen = lock(&self.seen);
                self.live.iter().all(|(k, l)| {
                    let got = seen
                        .iter()
                        .filter(|s| s.to == *k && s.incarnation == l.handle.incarnation())
                        .count() as u64;
                    got == l.expected
                        && l.handle
                            .status()
                            .is_ok_and(|s| s.messages_processed == l.expected)
                })
            };
            if done {
                break;
            }
            assert!(
                t0.elapsed() < PATIENCE,
                "messages accepted but not handled within {PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        let seen = lock(&self.seen);
        let mut once = BTreeSet::new();
        for s in seen.iter() {
            assert!(
                !self.refused.contains(&s.payload),
                "a refused message was delivered: {s:?}"
            );
            let sent = self
                .sent
                .get(&s.payload)
                .unwrap_or_else(|| panic!("a message nobody sent was delivered: {s:?}"));
            assert!(once.insert(s.payload.clone()), "delivered twice: {s:?}");
            let source = match sent.source {
                None => Endpoint::Host,
                Some(f) => Endpoint::Kernel(
                    ringkernel_core::k2k::KernelId::new(KERNELS[f]).expect("kernel id"),
                ),
            };
            assert_eq!(
                (s.to, s.incarnation, &s.source, s.topic.as_str()),
                (sent.to, sent.incarnation, &source, TOPICS[sent.topic]),
                "delivered as something else"
            );
        }
        drop(seen);
        for (k, l) in &self.live {
            let st = l.handle.status().expect("status of a running kernel");
            assert_eq!(st.state, KernelState::Active, "{}", KERNELS[*k]);
            assert_eq!(st.messages_processed, l.expected, "{}", KERNELS[*k]);
            assert!(
                st.messages_sent <= l.sent,
                "{} reports {} sent of {}",
                KERNELS[*k],
                st.messages_sent,
                l.sent
            );
            assert_eq!(
                (st.error_count, st.last_error),
                (0, 0),
                "{} met errors",
                KERNELS[*k]
            );
            let state = l.handle.load_state().expect("load_state");
            assert_eq!(
                state.as_deref(),
                l.state.as_deref(),
                "{} holds other state",
                KERNELS[*k]
            );
        }
    }

    fn export(&mut self, k: usize) {
        let Some(l) = self.live.get(&k) else {
            return;
        };
        let h = l.handle.clone();
        self.settle();
        let l = &self.live[&k];
        let snap = h.export_state().expect("export_state");
        match (snap, &l.state) {
            (None, None) => {}
            (Some(s), Some(state)) => {
                assert_eq!(s.kernel().as_str(), KERNELS[k]);
                assert!(
                    s.generation() > self.generations[k],
                    "snapshot generation {} after {}",
                    s.generation(),
                    self.generations[k]
                );
                self.generations[k] = s.generation();
                self.snapshots.push(Snapshot {
                    kernel: k,
                    generation: s.generation(),
                    bytes: s.as_bytes().to_vec(),
                    state: state.clone(),
                });
            }
            (s, state) => panic!(
                "export of {} gave {:?} with state {state:?}",
                KERNELS[k],
                s.map(|s| s.generation())
            ),
        }
    }

    fn restore(&mut self, k: usize, snap: usize, skew: i8) {
        if self.snapshots.is_empty() || !self.up || !self.live.contains_key(&k) {
            return;
        }
        self.settle();
        let l = &self.live[&k];
        let s = &self.snapshots[snap % self.snapshots.len()];
        let named = s.generation.wrapping_add_signed(i32::from(skew));
        let snapshot = StateSnapshot::from_bytes(s.bytes.clone()).expect("genuine snapshot parses");
        let r = l.handle.restore_state(&snapshot, named);
        let ok = s.kernel == k && skew == 0 && s.generation == self.generations[k];
        match r {
            Ok(()) => {
                assert!(
                    ok,
                    "restored {}'s snapshot of generation {} (latest {}) into {} named {named}",
                    KERNELS[s.kernel], s.generation, self.generations[s.kernel], KERNELS[k]
                );
                let state = s.state.clone();
                let l = self.live.get_mut(&k).expect("live");
                assert_eq!(
                    l.handle.load_state().expect("load_state").as_deref(),
                    Some(&state[..]),
                    "restored state differs"
                );
                l.state = Some(state);
            }
            Err(e) => assert!(
                !ok,
                "the latest snapshot of {} was refused: {e}",
                KERNELS[k]
            ),
        }
    }

    fn restore_tampered(&mut self, snap: usize, at: usize, mask: u8) {
        if self.snapshots.is_empty() || !self.up {
            return;
        }
        let s = &self.snapshots[snap % self.snapshots.len()];
        let Some(l) = self.live.get(&s.kernel) else {
            return;
        };
        let mut bytes = s.bytes.clone();
        let at = at % bytes.len();
        bytes[at] ^= mask.max(1);
        let Ok(snapshot) = StateSnapshot::from_bytes(bytes) else {
            return;
        };
        for named in [s.generation, snapshot.generation()] {
            let r = l.handle.restore_state(&snapshot, named);
            assert!(
                r.is_err(),
                "a snapshot with byte {at} changed was restored (named {named})"
            );
        }
    }

    fn open(&mut self, blob: usize, at: usize, mask: u8) {
        if self.blobs.is_empty() {
            return;
        }
        let (sealed, plain) = &self.blobs[blob % self.blobs.len()];
        let enc = self.rt().encryption().expect("production seals");
        let mut bytes = sealed.as_bytes().to_vec();
        let at = at % bytes.len();
        bytes[at] ^= mask;
        let Ok(changed) = SealedData::from_bytes(bytes) else {
            assert!(mask != 0, "genuine sealed data does not parse");
            return;
        };
        match enc.decrypt_bytes(&changed) {
            Ok(p) => {
                assert_eq!(mask, 0, "sealed data with byte {at} changed opened");
                assert_eq!(&p[..], &plain[..], "sealed data opened as something else");
            }
            Err(e) => assert!(
                mask != 0 || matches!(e, Error::KeyRetired { .. } | Error::UnknownKeyEpoch { .. }),
                "genuine sealed data refused: {e}"
            ),
        }
    }

    fn terminate(&mut self, k: usize) {
        if !self.up || !self.live.contains_key(&k) {
            return;
        }
        self.settle();
        let l = self.live.remove(&k).expect("live");
        l.handle.terminate().expect("terminate");
        let st = l.handle.wait(PATIENCE).expect("kernel stops");
        Self::check_final(k, &l, &st);
    }

    /// The final status of a stopped launch: everything it handled and sent, nothing
    /// left behind.
    fn check_final(k: usize, l: &Live, st: &ringkernel_core::runtime::KernelStatus) {
        assert_eq!(st.state, KernelState::Terminated, "{}", KERNELS[k]);
        assert_eq!(
            (st.messages_processed, st.messages_sent, st.undelivered),
            (l.expected, l.sent, 0),
            "final status of {} (processed, sent, undelivered)",
            KERNELS[k]
        );
    }

    fn shutdown(&mut self) {
        if !self.up {
            assert!(
                self.rt().shutdown().is_ok(),
                "a second shutdown is harmless"
            );
            return;
        }
        self.settle();
        let report = self.rt().shutdown().expect("shutdown");
        assert_eq!(report.undelivered, 0, "messages left behind at shutdown");
        self.up = false;
        for (k, l) in std::mem::take(&mut self.live) {
            let st = l.handle.status().expect("final status");
            Self::check_final(k, &l, &st);
        }
    }

    fn restart(&mut self, tamper: Option<(usize, u8)>) {
        self.shutdown();
        let state = self.dir.path();
        if let Some((at, mask)) = tamper {
            let file = Keystore::open(state, kek())
                .expect("keystore")
                .path()
                .to_owned();
            let genuine = std::fs::read(&file).expect("keystore file");
            let key = Keystore::open(state, kek())
                .expect("keystore")
                .audit_public_key();
            let mut changed = genuine.clone();
            let at = at % changed.len();
            changed[at] ^= mask;
            std::fs::write(&file, &changed).expect("write keystore");
            if let Ok(ks) = Keystore::open(state, kek()) {
                // Only a change that means nothing (JSON whitespace, say) may open,
                // and then with the same keys.
                assert!(
                    ks.audit_public_key() == key,
                    "a keystore with byte {at} changed opened with other keys"
                );
                if let Some((sealed, plain)) = self.blobs.last() {
                    let enc = ks
                        .encryption(
                            ringkernel_core::security::encryption::EncryptionConfig::secure(),
                        )
                        .expect("keystore encryption");
                    if let Ok(p) = enc.decrypt_bytes(sealed) {
                        assert_eq!(&p[..], &plain[..]);
                    }
                }
            }
            std::fs::write(&file, &genuine).expect("write keystore");
        }
        self.rt = None;
        self.rt = Some(build(state, self.builds % 2 == 1));
        self.builds += 1;
        self.up = true;
    }

    /// The end of an input: everything handled, a clean shutdown, and a log that
    /// verifies as closed.
    fn finish(mut self) {
        self.shutdown();
        let key = Keystore::open(self.dir.path(), kek())
            .expect("keystore")
            .audit_public_key();
        let audit = self.dir.path().join("audit");
        let report = verify(&audit, &key).expect("the audit log verifies");
        assert_eq!(
            report.status,
            LogStatus::Closed,
            "a clean shutdown closes the log"
        );
        // Every accepted send is in the log exactly once: as its own `k2k.send` record
        // or counted in one `k2k.route_summary`.
        let mut delivered = 0u64;
        for entry in std::fs::read_dir(&audit).expect("audit dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "jsonl") {
                let text = std::fs::read_to_string(&path).expect("segment");
                for line in text.lines() {
                    let r: AuditRecord = serde_json::from_str(line).expect("a record");
                    match (r.event.as_str(), r.result.as_str()) {
                        ("k2k.send", "ok") => delivered += 1,
                        ("k2k.route_summary", _) => {
                            delivered += r.details["messages"].as_u64().expect("a count")
                        }
                        _ => {}
                    }
                }
            }
        }
        assert_eq!(
            delivered,
            self.sent.len() as u64,
            "accepted sends and the sends the audit log accounts for"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS && !u.is_empty() {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    let mut world = World::new();
    for op in &ops {
        world.step(op);
        if world.up {
            world.settle();
        }
    }
    world.finish();
});
