//! The hostile-device tests of the conformance suite: the test writes a running device
//! kernel's own buffers through the backend's hostile-device hook
//! ([`ringkernel_core::backend::hostile`]), as someone who can write device memory could, and
//! checks what the runtime makes of it.
//!
//! For every corruption the suite checks:
//! - the refusal: the device (or the host, reading what the device reported) refuses
//!   the round, before anything from it is delivered;
//! - the kernel afterwards: stopped, with the error's code as `last_error` in its final
//!   control block, and sends to it refused with [`Error::KernelTerminated`];
//! - the audit log: a `kernel.failed` record naming the error (message, code, kind),
//!   and `kernel.stopped` with the same `last_error`;
//! - no panic on any of the runtime's threads;
//! - the other kernels keep running: a bystander device kernel still forwards
//!   checksums, with no error.
//!
//! Corruptions that cannot affect a kernel (a key slot the host left empty, a route
//! bit of another kernel) are checked too: the kernel keeps running, with exact
//! results.

use parking_lot::Mutex;

use super::{Received, Shared, WAIT, audit_records, checksum_kernel, runtime, wait_until};
use ringkernel_core::Error;
use ringkernel_core::backend::device::{layout, words_from_le};
use ringkernel_core::backend::hostile::{Corruption, DeviceBuffer};
use ringkernel_core::backend::{ComputeBackend, DeviceProgram};
use ringkernel_core::k2k::KernelId;
use ringkernel_core::runtime::{KernelHandle, KernelState, Runtime};
use ringkernel_core::security::encryption::{Algorithm, EncryptionConfig, MemoryEncryption};
use ringkernel_core::security::sandbox::SandboxPolicy;

/// Panics on the runtime's threads: `"<thread name>: <message>"`.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every panic on a thread whose name starts with `rk-` (kernel drivers
/// `rk-<id>`, the ticker, the audit writer), then lets the previous hook report it.
fn watch_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(name) = std::thread::current().name()
                && name.starts_with("rk-")
            {
                PANICS.lock().push(format!("{name}: {info}"));
            }
            previous(info);
        }));
    });
}

/// The code an error leaves in a control block's `last_error`.
fn code(e: &Error) -> u32 {
    e.code()
}

/// `Error::Corrupt` of any kind (its code).
fn corrupt() -> Error {
    Error::corrupt("", String::new())
}

/// What a test expects of a kernel it corrupted: its id, the error (by code), a part of
/// the error's message, and the error's kind as audit records name it.
struct Refusal {
    id: &'static str,
    code: u32,
    text: &'static str,
    kind: &'static str,
}

/// A production runtime with a sink, a bystander device kernel, and the kernels a test
/// corrupts.
struct Hostile<B: ComputeBackend> {
    dev: Shared<B>,
    rt: Runtime,
    got: Received,
    /// The runtime's audit directory (dropped after the runtime, which it outlives).
    audit: tempfile::TempDir,
    ids: Vec<String>,
    bystander: KernelHandle,
}

impl<B: ComputeBackend> Hostile<B> {
    fn new(dev: Shared<B>) -> Self {
        watch_panics();
        let enc = MemoryEncryption::new(
            EncryptionConfig::secure().algorithm(Algorithm::ChaCha20Poly1305),
        )
        .unwrap();
        // Every kernel may send to the sink, and to nothing else.
        let policy = SandboxPolicy::restrictive().k2k_allow_list(&["sink"]);
        let (audit, rt, got) = runtime(&dev, enc, policy);
        let bystander = checksum_kernel(&rt, "bystander", "sink");
        Hostile {
            dev,
            rt,
            got,
            audit,
            ids: vec!["bystander".into()],
            bystander,
        }
    }

    /// Launches device kernel `id`, forwarding its checksums to `peer`.
    fn launch(&mut self, id: &'static str, peer: &str) -> KernelHandle {
        self.ids.push(id.into());
        checksum_kernel(&self.rt, id, peer)
    }

    /// Checksums the sink received from `id`.
    fn from(&self, id: &str) -> usize {
        self.got.lock().iter().filter(|(src, _)| src == id).count()
    }

    /// Sends `payload` to `id` and waits for its checksum at the sink.
    fn round_trip(&self, id: &str, payload: &[u8]) {
        let before = self.from(id);
        self.rt.send_timeout(id, "data", payload, WAIT).unwrap();
        wait_until(&format!("a checksum from {id}"), || {
            self.from(id) == before + 1
        });
        let last = self.got.lock().iter().rev().find(|(s, _)| s == id).cloned();
        assert_eq!(
            last.map(|(_, p)| p),
            Some(DeviceProgram::checksum_of(payload).to_le_bytes().to_vec()),
            "{id}'s checksum"
        );
    }

    /// Queues `c` on kernel `id`, sends `payload` to start a round, and waits until the
    /// corruption is in device memory.
    fn corrupt_next_round(&self, id: &str, c: Corruption, payload: &[u8]) {
        let hook = self.dev.hostile(id);
        hook.corrupt(c);
        self.rt.send_timeout(id, "data", payload, WAIT).unwrap();
        hook.wait_applied(WAIT)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
    }

    /// Waits until `k` has stopped, and checks its final state: terminated, with the
    /// error's code as `last_error`; new sends refused; no checksum from it past
    /// `delivered`.
    fn expect_stopped(&self, k: &KernelHandle, expect: &Refusal, delivered: usize) {
        let id = expect.id;
        wait_until(&format!("{id} stopped"), || {
            k.status().is_ok_and(|s| s.state == KernelState::Terminated)
        });
        let st = k.wait(WAIT).unwrap();
        assert_eq!(st.state, KernelState::Terminated, "{id}");
        assert_eq!(
            st.last_error, expect.code,
            "{id}: the final control block names the error"
        );
        assert!(st.error_count >= 1, "{id}: {st:?}");
        assert!(
            matches!(
                self.rt.send_timeout(id, "data", b"after", WAIT),
                Err(Error::KernelTerminated { .. })
            ),
            "{id}: a stopped kernel takes nothing"
        );
        assert_eq!(
            self.from(id),
            delivered,
            "{id}: nothing from the refused round"
        );
    }

    /// The bystander still forwards checksums, with no error.
    fn bystander_runs(&self) {
        self.round_trip("bystander", b"still running");
        let st = self.bystander.status().unwrap();
        assert_eq!(st.state, KernelState::Active);
        assert_eq!(st.error_count, 0);
    }

    /// Route-table slots of `src` and `dst` and the table's stride: the bit
    /// `src * stride + dst` of the device bitmap, as (word, mask).
    fn route_bit(&self, src: &str, dst: &str) -> (usize, u32) {
        let table = self.rt.sandbox().unwrap().route_table();
        let slot = |id: &str| table.slot_of(&KernelId::new(id).unwrap()).unwrap();
        let bit = slot(src) * table.bitmap().1 + slot(dst);
        (bit / 32, 1 << (bit % 32))
    }

    /// Shuts down, then checks the audit log for every refusal and that no thread of
    /// the runtime panicked.
    fn finish(self, refusals: &[Refusal]) {
        let Hostile { rt, audit, ids, .. } = self;
        rt.shutdown().unwrap();
        let records = audit_records(audit.path());
        for r in refusals {
            let of = |event: &str| -> Vec<&serde_json::Value> {
                records
                    .iter()
                    .filter(|rec| rec["event"] == event && rec["target"] == r.id)
                    .collect()
            };
            let failed = of("kernel.failed");
            assert_eq!(failed.len(), 1, "{}: {failed:?}", r.id);
            let d = &failed[0]["details"];
            assert_eq!(failed[0]["result"], "error", "{}", r.id);
            assert_eq!(d["code"], r.code, "{}: {d}", r.id);
            assert_eq!(d["kind"], r.kind, "{}: {d}", r.id);
            let message = d["error"].as_str().unwrap_or_default();
            assert!(message.contains(r.text), "{}: {message}", r.id);
            let stopped = of("kernel.stopped");
            assert_eq!(stopped.len(), 1, "{}", r.id);
            assert_eq!(stopped[0]["details"]["last_error"], r.code, "{}", r.id);
        }
        let panics: Vec<String> = PANICS
            .lock()
            .iter()
            .filter(|p| {
                ids.iter().any(|id| p.starts_with(&format!("rk-{id}: ")))
                    || p.starts_with("rk-ticker: ")
                    || p.starts_with("rk-audit: ")
            })
            .cloned()
            .collect();
        assert!(
            panics.is_empty(),
            "panics on the runtime's threads: {panics:?}"
        );
    }
}

/// A corrupted input ring (the ring's header and entry lengths live in device memory):
/// an entry length past the end of the ring, a read position out of range or rewound
/// (which would replay consumed words), a wrapped write position, and entries that
/// overlap. Each is refused by the device before anything is processed, as
/// `Error::Corrupt { what: "device input ring", .. }`, and stops the kernel. So is an
/// entry position in the parameters a word off (the device checks each entry against
/// the host's table of positions), and a ring capacity or an entry position in the
/// parameters past the ring's buffer (`"device round parameters"`).
pub fn hostile_input_ring<B: ComputeBackend>(dev: Shared<B>) {
    let mut h = Hostile::new(dev);
    let ring = |id, text| Refusal {
        id,
        code: code(&corrupt()),
        text,
        kind: "other",
    };
    let cases = [
        (
            // The first pending entry's length word.
            Corruption::set(DeviceBuffer::InputRing, 0, &[0xffff_fff0]).from_ring_read(),
            ring(
                "ring-length",
                "device input ring: an entry runs past the end",
            ),
        ),
        (
            Corruption::set(DeviceBuffer::InputRing, 1, &[u32::MAX]),
            ring(
                "ring-read-range",
                "device input ring: its header does not hold",
            ),
        ),
        (
            // Back to the consumed warm-up entry.
            Corruption::set(DeviceBuffer::InputRing, 1, &[0]),
            ring(
                "ring-read-rewound",
                "device input ring: its header does not hold",
            ),
        ),
        (
            // Before the read position: the ring would look wrapped and nearly full.
            Corruption::set(DeviceBuffer::InputRing, 0, &[1]),
            ring(
                "ring-write-wrapped",
                "device input ring: its header does not hold",
            ),
        ),
        (
            // Not the ring, but what bounds it: a capacity in the parameters (which
            // the host rewrites every round) past the ring's buffer.
            Corruption::set(DeviceBuffer::Params, layout::P_RING_CAPACITY, &[1 << 30]),
            ring("ring-capacity", "device round parameters"),
        ),
        (
            // The round's first entry position a word off: the table the device
            // checks its entries against no longer matches the ring.
            Corruption::xor(DeviceBuffer::Params, layout::P_RING_ENTRIES, &[1]),
            ring("ring-entry-shifted", "device input ring"),
        ),
        (
            // An entry position past the ring's capacity: never read there.
            Corruption::set(DeviceBuffer::Params, layout::P_RING_ENTRIES, &[1 << 30]),
            ring("ring-entry-range", "device round parameters"),
        ),
    ];
    let mut refusals = Vec::new();
    for (c, expect) in cases {
        let k = h.launch(expect.id, "sink");
        h.round_trip(expect.id, &[0x22; 8]);
        h.corrupt_next_round(expect.id, c, &[0x11; 8]);
        h.expect_stopped(&k, &expect, 1);
        h.bystander_runs();
        refusals.push(expect);
    }

    // Overlapping entries: in a round of at least two 8-byte messages (entries of three
    // words), the first entry's length grows to 12 bytes, so that it ends inside the
    // second, whose payload (0x11 bytes) the walk would then read as a length.
    let id = "ring-overlap";
    let k = h.launch(id, "sink");
    h.round_trip(id, &[0x22; 8]);
    let hook = h.dev.hostile(id);
    hook.corrupt(
        Corruption::set(DeviceBuffer::InputRing, 0, &[12])
            .from_ring_read()
            .in_a_round_of(2),
    );
    let mut sent = 1;
    for _ in 0..20 {
        for _ in 0..16 {
            if h.rt.send_timeout(id, "data", &[0x11; 8], WAIT).is_err() {
                break;
            }
            sent += 1;
        }
        if hook
            .wait_applied(std::time::Duration::from_millis(500))
            .is_ok()
        {
            break;
        }
    }
    assert_eq!(hook.pending(), 0, "no round of two messages came");
    let expect = ring(id, "device input ring: an entry runs past the end");
    wait_until("ring-overlap stopped", || {
        k.status().is_ok_and(|s| s.state == KernelState::Terminated)
    });
    let delivered = h.from(id);
    assert!(
        delivered <= sent - 2,
        "the two messages of the refused round were not delivered ({delivered} of {sent})"
    );
    h.expect_stopped(&k, &expect, delivered);
    refusals.push(expect);
    h.bystander_runs();
    h.finish(&refusals);
}

/// A garbled key-slot buffer: garbage over both slots, one flipped bit of the current
/// key, a changed epoch word. The device checks each slot the host filled against the
/// key's check value in the parameters and refuses the round as
/// `Error::Corrupt { what: "device key slots", .. }`, before it opens the control block
/// (so the block is not reported as tampered). Garbage in a slot the host left empty
/// has no effect.
pub fn hostile_key_slots<B: ComputeBackend>(dev: Shared<B>) {
    let mut h = Hostile::new(dev);
    let garbage: Vec<u32> = (1..=24u32).map(|i| i.wrapping_mul(0x9e37_79b9)).collect();
    let keys = |id, text| Refusal {
        id,
        code: code(&corrupt()),
        text,
        kind: "other",
    };
    let cases = [
        (
            Corruption::set(DeviceBuffer::KeySlots, 0, &garbage),
            keys("keys-garbage", "device key slots"),
        ),
        (
            // Slot 0: epoch, valid, two unused words, then the key; flip one key bit.
            Corruption::xor(DeviceBuffer::KeySlots, 4 + 3, &[1 << 7]),
            keys("keys-bit", "device key slots"),
        ),
        (
            Corruption::xor(DeviceBuffer::KeySlots, 0, &[1]),
            keys("keys-epoch", "device key slots"),
        ),
    ];
    let mut refusals = Vec::new();
    for (c, expect) in cases {
        let k = h.launch(expect.id, "sink");
        h.round_trip(expect.id, &[0x22; 8]);
        h.corrupt_next_round(expect.id, c, &[0x11; 8]);
        h.expect_stopped(&k, &expect, 1);
        h.bystander_runs();
        refusals.push(expect);
    }

    // Slot 1 holds a key only during a rotation's grace period; empty, it is never
    // read, whatever it holds, and the host rewrites it at the next round.
    let id = "keys-unused";
    let k = h.launch(id, "sink");
    h.round_trip(id, &[0x22; 8]);
    h.corrupt_next_round(
        id,
        Corruption::set(DeviceBuffer::KeySlots, 12, &garbage[..12]),
        &[0x11; 8],
    );
    wait_until("keys-unused's round", || h.from(id) == 2);
    h.round_trip(id, &[0x33; 8]);
    let st = k.status().unwrap();
    assert_eq!(
        (st.state, st.messages_processed, st.error_count),
        (KernelState::Active, 3, 0)
    );
    h.finish(&refusals);
}

/// A flipped bit in a kernel's device route bitmap. The host checks every route
/// decision the device reports against its own route table:
/// - the kernel's own route to a permitted peer flipped: the device refuses the send,
///   the host refuses the round (no `UnauthorizedK2K` violation is recorded against
///   the kernel, which did nothing wrong) and stops the kernel;
/// - its route to a denied peer flipped: the device would forward, the host refuses the
///   round and the peer receives nothing;
/// - a bit of another kernel's route: no effect on this kernel.
///
/// The refusals are `Error::Corrupt { what: "device route bitmap", .. }`.
pub fn hostile_route_bitmap<B: ComputeBackend>(dev: Shared<B>) {
    let mut h = Hostile::new(dev);
    let sandbox_violations = |h: &Hostile<B>, id: &str| h.rt.sandbox().unwrap().violation_count(id);
    let mut refusals = Vec::new();

    // Permitted route, flipped to denied.
    let id = "route-permitted";
    let k = h.launch(id, "sink");
    h.round_trip(id, &[0x22; 8]);
    let (word, mask) = h.route_bit(id, "sink");
    h.corrupt_next_round(
        id,
        Corruption::xor(DeviceBuffer::RouteBitmap, word, &[mask]),
        &[0x11; 8],
    );
    let expect = Refusal {
        id,
        code: code(&corrupt()),
        text: "device route bitmap: the device refused a send the route table permits",
        kind: "other",
    };
    h.expect_stopped(&k, &expect, 1);
    assert_eq!(
        sandbox_violations(&h, id),
        0,
        "no violation for a corrupt bitmap"
    );
    refusals.push(expect);
    h.bystander_runs();

    // Denied route (the bystander is not on the allow list), flipped to permitted. No
    // warm-up: its first round uploads the bitmap, then the bit is flipped.
    let id = "route-denied";
    let k = h.launch(id, "bystander");
    let (word, mask) = h.route_bit(id, "bystander");
    let bystander_before = h.bystander.status().unwrap().messages_processed;
    h.corrupt_next_round(
        id,
        Corruption::xor(DeviceBuffer::RouteBitmap, word, &[mask]),
        &[0x11; 8],
    );
    let expect = Refusal {
        id,
        code: code(&corrupt()),
        text: "device route bitmap: the device forwarded a send the route table denies",
        kind: "other",
    };
    h.expect_stopped(&k, &expect, 0);
    assert_eq!(
        h.bystander.status().unwrap().messages_processed,
        bystander_before,
        "the denied peer received nothing"
    );
    assert_eq!(sandbox_violations(&h, id), 0);
    refusals.push(expect);
    h.bystander_runs();

    // Another kernel's route bit, in this kernel's bitmap: never read by it.
    let id = "route-other";
    let k = h.launch(id, "sink");
    h.round_trip(id, &[0x22; 8]);
    let (word, mask) = h.route_bit("bystander", "sink");
    h.corrupt_next_round(
        id,
        Corruption::xor(DeviceBuffer::RouteBitmap, word, &[mask]),
        &[0x11; 8],
    );
    wait_until("route-other's round", || h.from(id) == 2);
    let st = k.status().unwrap();
    assert_eq!(
        (st.state, st.messages_processed, st.error_count),
        (KernelState::Active, 2, 0)
    );
    h.bystander_runs();
    h.finish(&refusals);
}

/// A sealed control block replaced between rounds: by garbage (header included), by
/// garbage under its own header, by another kernel's block, and by its own block of
/// an earlier round. The device refuses to open each, as the host's open would:
/// `MalformedEnvelope`, `Tampered`, `WrongContext` and `Replay`; the kernel stops and
/// its final control block (rewritten by the host) names the error. A nonce changed
/// in the parameters (the header the device seals with) is caught by the host after
/// the round: `Corrupt { what: "device control block", .. }`.
pub fn hostile_control_block<B: ComputeBackend>(dev: Shared<B>) {
    let mut h = Hostile::new(dev);
    let len = ringkernel_core::security::encryption::device::device_sealed_len(128) as u64;
    let words = (len / 4) as usize;
    let garbage: Vec<u32> = (1..=words as u32)
        .map(|i| i.wrapping_mul(0x85eb_ca6b))
        .collect();
    let mut refusals = Vec::new();

    // Two warm-up rounds, then the replacement, made at the third.
    let mut case =
        |h: &mut Hostile<B>, replace: &dyn Fn(&Hostile<B>) -> Corruption, expect: Refusal| {
            let id = expect.id;
            let k = h.launch(id, "sink");
            h.round_trip(id, &[0x22; 8]);
            h.round_trip(id, &[0x23; 8]);
            let c = replace(h);
            h.corrupt_next_round(id, c, &[0x11; 8]);
            h.expect_stopped(&k, &expect, 2);
            h.bystander_runs();
            refusals.push(expect);
        };

    case(
        &mut h,
        &|_| Corruption::set(DeviceBuffer::Control, 0, &garbage),
        Refusal {
            id: "control-garbage",
            code: code(&Error::MalformedEnvelope(String::new())),
            text: "malformed sealed envelope",
            kind: "malformed",
        },
    );
    case(
        &mut h,
        // Words 13..45 are the ciphertext.
        &|_| Corruption::set(DeviceBuffer::Control, 13, &garbage[..32]),
        Refusal {
            id: "control-ciphertext",
            code: code(&Error::Tampered),
            text: "authentication failed",
            kind: "tampered",
        },
    );
    case(
        &mut h,
        &|h| {
            let theirs = h.dev.raw(h.dev.control_of("bystander"), len);
            Corruption::set(DeviceBuffer::Control, 0, &words_from_le(&theirs))
        },
        Refusal {
            id: "control-foreign",
            code: code(&Error::WrongContext),
            text: "another context",
            kind: "wrong_context",
        },
    );
    // Not the block but its header as the parameters hand it to the device: another
    // nonce (header word 10) would have the device seal under a nonce of the writer's
    // choosing, perhaps one used before. The host finds the block sealed under a header
    // other than the one it reserved, and stops the kernel.
    case(
        &mut h,
        &|_| Corruption::xor(DeviceBuffer::Params, 9 + 10, &[0x0100_0000]),
        Refusal {
            id: "control-nonce",
            code: code(&corrupt()),
            text: "device control block: re-sealed under a header other than the one the host reserved",
            kind: "other",
        },
    );
    // Its own block as it was one round earlier: captured after the first warm-up
    // round, written back after the second.
    let id = "control-replayed";
    let k = h.launch(id, "sink");
    h.round_trip(id, &[0x22; 8]);
    let earlier = h.dev.raw(h.dev.control_of(id), len);
    h.round_trip(id, &[0x23; 8]);
    h.corrupt_next_round(
        id,
        Corruption::set(DeviceBuffer::Control, 0, &words_from_le(&earlier)),
        &[0x11; 8],
    );
    let expect = Refusal {
        id,
        code: code(&Error::Replay {
            expected: 0,
            found: 0,
        }),
        text: "replayed or stale sealed data: expected sequence",
        kind: "replayed",
    };
    h.expect_stopped(&k, &expect, 2);
    h.bystander_runs();
    refusals.push(expect);
    h.finish(&refusals);
}
