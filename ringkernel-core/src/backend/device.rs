//! Kernels that run on a GPU: the [`DeviceProgram`] a launch names, and the round
//! protocol through which a device backend's host driver runs it under the runtime's
//! security gate.
//!
//! A device backend cannot let its kernel spin forever (WebGPU promises no forward
//! progress to a spinning kernel), so a host driver thread dispatches the kernel in
//! rounds. Each round goes through [`KernelDriver::device_round`]: the gate locks the
//! kernel's control block, reserves a device-direction nonce and the next sequence
//! number, hands over the key slots and the route table, and records the re-sealing
//! the device did. The driver takes messages from the kernel's mailbox with
//! [`KernelDriver::next_batch`] and writes them into the kernel's input ring in device
//! memory ([`InputRing`]), which the device consumes a batch per round. Between rounds
//! the driver delivers the device's sends with
//! [`KernelContext::send`](super::KernelContext::send) (checked once more by the host
//! gate) and reports sends the device refused with
//! [`KernelDriver::report_device_refusals`].

use std::collections::VecDeque;
use std::sync::Arc;

use super::KernelDriver;
pub use super::input_ring::{InputRing, RingWrite};
pub use super::round_report::{RoundReport, read_round};
use crate::backend::BufferId;
use crate::error::Result;
use crate::k2k::KernelId;
use crate::security::encryption::{DeviceKey, DeviceSeal};
use crate::security::sandbox::RouteTable;

/// The largest payload a device kernel takes (64 KiB); a larger send is refused with
/// [`Error::TooLarge`](crate::Error::TooLarge). One invocation hashes a whole
/// message in one dispatch, and some drivers (Mesa's lavapipe, which cuts shader loops
/// off after 65,535 iterations) or GPU watchdogs stop one that runs much longer.
pub const MAX_DEVICE_PAYLOAD_LEN: usize = 64 * 1024;

/// The device program of a GPU kernel: the runtime's persistent kernel with its
/// built-in handler.
///
/// The handler computes the FNV-1a (32-bit) checksum of every message payload on the
/// device. With [`DeviceProgram::forward_to`] it also sends each checksum (4 bytes,
/// little-endian, topic `"checksum"`) to a peer kernel; the device checks each such
/// send against the uploaded route bitmap first, so a peer the sandbox denies cannot
/// even be addressed.
#[derive(Clone, Debug, Default)]
pub struct DeviceProgram {
    forward_to: Option<KernelId>,
    max_batch: Option<usize>,
}

impl DeviceProgram {
    /// The checksum kernel.
    pub fn checksum() -> Self {
        DeviceProgram::default()
    }

    /// Sends every checksum to kernel `peer` (validated as a kernel id).
    pub fn forward_to(mut self, peer: &str) -> Result<Self> {
        self.forward_to = Some(KernelId::new(peer)?);
        Ok(self)
    }

    /// At most `n` messages per round (at least 1; backends cap it further).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = Some(n.max(1));
        self
    }

    /// The peer checksums are sent to, if any.
    pub fn peer(&self) -> Option<&KernelId> {
        self.forward_to.as_ref()
    }

    /// The configured batch bound, if any.
    pub fn batch_limit(&self) -> Option<usize> {
        self.max_batch
    }

    /// The checksum the device handler computes for `payload`: FNV-1a (32-bit). The
    /// host reference, for checking what a device kernel sends.
    pub fn checksum_of(payload: &[u8]) -> u32 {
        payload.iter().fold(0x811c9dc5u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x01000193)
        })
    }
}

/// What the gate hands a device driver for one round.
#[derive(Debug)]
pub struct DeviceRound {
    /// The kernel's control-block buffer.
    pub control: BufferId,
    /// The sealing number of the control block now in the buffer (the device refuses
    /// any other: a replayed older block does not open).
    pub sequence: u64,
    /// Messages ever enqueued to the kernel (the control block's `input_tail`).
    pub queued_total: u64,
    /// Present when control blocks are sealed.
    pub sealing: Option<DeviceRoundSealing>,
    /// The sandbox's route table and this kernel's slot in it; `None` without a
    /// sandbox (every route is open).
    pub routes: Option<(Arc<RouteTable>, usize)>,
}

/// Key slots and the reserved sealing of one round.
#[derive(Debug)]
pub struct DeviceRoundSealing {
    /// Key slots: the current epoch first, then the newest older live epoch.
    pub keys: Vec<DeviceKey>,
    /// Header (with the reserved device-direction nonce and the next sequence number)
    /// and key for re-sealing the block at the end of the round.
    pub seal: DeviceSeal,
}

/// What a device driver reports after a round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceRoundOutcome {
    /// The device re-sealed (or, unsealed, rewrote) the control block: the gate moves
    /// the block's sequence number on.
    pub resealed: bool,
    /// The control block as the round left it in device memory (sealed, or plain when
    /// control blocks are not sealed), read back with the round's results. The gate
    /// opens it under the new sequence number, so a bad re-sealing stops the kernel at
    /// once, and keeps the opened block as the kernel's status: `status()` of a device
    /// kernel then needs no device read and never waits for a round.
    pub control_block: Option<Vec<u8>>,
}

/// The control block's sealing number after a round that did or did not re-seal.
pub(crate) fn next_sequence(sequence: u64, outcome: &DeviceRoundOutcome) -> u64 {
    if outcome.resealed {
        sequence + 1
    } else {
        sequence
    }
}

// ----- the round contract shared by every GPU backend ------------------------------------

/// The word layout of a round, shared by the WGSL and CUDA persistent kernels
/// (`shaders/wgsl/persistent_kernel.wgsl`, `shaders/cuda/persistent_kernel.cu`). All
/// words are little-endian `u32`.
///
/// - key slots: two slots of [`KEY_SLOT_WORDS`](layout::KEY_SLOT_WORDS) words: epoch,
///   valid (1), two unused, eight key words; slot 0 holds the sealing (current) key.
/// - parameters ([`PARAM_WORDS`](layout::PARAM_WORDS)), all written by the host before
///   every round: 0 sealed, 1 messages to take from the input ring, 2/3 expected
///   sequence, 4 has peer, 5 own route slot, 6 peer slot, 7 route stride, 8 enforce
///   routes, 9..22 the header to seal with, 22/23 messages ever enqueued, 24 the input
///   ring's entry words, 25/26 its read and write positions, 27 where the round's
///   entries end, 28 the route bitmap's words, 29..41 per key slot: filled (1), epoch,
///   and the key's check value (four words,
///   [`DeviceKey::check_value`](crate::security::encryption::DeviceKey::check_value)),
///   from [`P_RING_ENTRIES`](layout::P_RING_ENTRIES) the position of each entry the
///   round takes (its length word; [`MAX_ROUND_MESSAGES`](layout::MAX_ROUND_MESSAGES)
///   words, zero past word 1's count).
/// - input ring: the kernel's [`InputRing`] (header, then entries).
/// - output: two words per message taken: checksum, status (1 processed, 2 forwarded,
///   3 refused).
/// - status ([`STATUS_WORDS`](layout::STATUS_WORDS)): 0 result, 1 processed,
///   2 forwarded, 3 refused, 4 should_terminate seen, 5 re-sealed, 6 the input ring's
///   read position after the round, 7 what a refusal found wrong (the `D_*` details),
///   8/9 the value found there (an incarnation, a sequence, an epoch).
///
/// The kernels bound every index by lengths the host wrote (the parameters, and the
/// buffer sizes themselves), never by one read from memory the device shares: the
/// ring's header and entry lengths are checked against the host's positions before
/// they are used. The entry positions let every invocation check one entry in
/// parallel: its position lies inside the ring, and its length word leads exactly to
/// the next entry's position (the round's end after the last), past a wrap word only
/// where the round wraps; a position table that disagrees with the ring's length words
/// is refused (`RING_CORRUPT`), a position past the ring's capacity is a parameter that
/// does not fit (`ROUND_INVALID`).
pub mod layout {
    /// Words per key slot.
    pub const KEY_SLOT_WORDS: usize = 12;
    /// Key slots per kernel.
    pub const KEY_SLOTS: usize = 2;
    /// Parameter words: the fixed words, then the entry positions
    /// ([`P_RING_ENTRIES`], one word per message a round can take).
    pub const PARAM_WORDS: usize = P_RING_ENTRIES + MAX_ROUND_MESSAGES;
    /// Parameter: the header to seal with ([`HEADER_WORDS`] words).
    pub const P_HEADER: usize = 9;
    /// Parameter: the input ring's entry words.
    pub const P_RING_CAPACITY: usize = 24;
    /// Parameter: the input ring's read position (as the host wrote it in the header).
    pub const P_RING_READ: usize = 25;
    /// Parameter: the input ring's write position (as the host wrote it in the header).
    pub const P_RING_WRITE: usize = 26;
    /// Parameter: where the entries the round takes end (the read position after it).
    pub const P_RING_END: usize = 27;
    /// Parameter: words of the route bitmap the host uploaded.
    pub const P_ROUTE_WORDS: usize = 28;
    /// Parameter: the key-slot checks, [`KEY_CHECK_WORDS`] per slot.
    pub const P_KEY_CHECK: usize = 29;
    /// Words per key-slot check: filled (1), epoch, check value (4 words).
    pub const KEY_CHECK_WORDS: usize = 6;
    /// Parameter: the position (entry word index) of the length word of each entry the
    /// round takes, in ring order: [`MAX_ROUND_MESSAGES`] words, of which the first
    /// `params[1]` (the round's messages) are used and the rest are zero. An entry
    /// behind a wrap word is at 0. The device checks each against the ring's length
    /// words and refuses a table that disagrees.
    pub const P_RING_ENTRIES: usize = 44;
    const _: () = assert!(P_KEY_CHECK + KEY_SLOTS * KEY_CHECK_WORDS <= P_RING_ENTRIES);
    /// Most messages a round takes (the kernels' workgroup tables hold this many).
    pub const MAX_ROUND_MESSAGES: usize = 256;
    /// Payload words a round takes at most (past its first message): the handler's
    /// loops stay well inside what every driver runs in one dispatch.
    pub const ROUND_PAYLOAD_WORDS: usize = super::MAX_DEVICE_PAYLOAD_LEN / 4;
    /// Status: the input ring's read position after the round.
    pub const S_RING_READ: usize = 6;
    /// Status: what a refusal found wrong (a `D_*` detail).
    pub const S_DETAIL: usize = 7;
    /// Status: the value a refusal found (two words).
    pub const S_FOUND: usize = 8;
    /// Status words.
    pub const STATUS_WORDS: usize = 12;
    /// Words of the single-shot ChaCha20-Poly1305 header (52 bytes).
    pub const HEADER_WORDS: usize = 13;
    /// Result: the round ran.
    pub const OK: u32 = 0;
    /// Result: the control block's tag did not verify.
    pub const OPEN_FAILED: u32 = 1;
    /// Result: the header names another context, sequence, algorithm or length.
    pub const HEADER_MISMATCH: u32 = 2;
    /// Result: no key slot holds the header's epoch.
    pub const NO_KEY: u32 = 3;
    /// Result: the input ring's positions or an entry's length are out of range.
    pub const RING_CORRUPT: u32 = 4;
    /// Result: a key slot does not hold the epoch or key the host wrote.
    pub const KEY_SLOT_CORRUPT: u32 = 5;
    /// Result: the parameters do not fit the kernel's buffers (batch, ring capacity,
    /// positions).
    pub const ROUND_INVALID: u32 = 6;
    /// Detail of `HEADER_MISMATCH`: magic, version, algorithm, kind or length.
    pub const D_HEADER_MALFORMED: u32 = 1;
    /// Detail of `HEADER_MISMATCH`: another runtime's, kernel's or region's block.
    pub const D_HEADER_CONTEXT: u32 = 2;
    /// Detail of `HEADER_MISMATCH`: an earlier launch of this kernel (found: its
    /// incarnation).
    pub const D_HEADER_INCARNATION: u32 = 3;
    /// Detail of `HEADER_MISMATCH`: another sequence number (found: the sequence).
    pub const D_HEADER_SEQUENCE: u32 = 4;
    /// Detail of `RING_CORRUPT`: the header's positions are not the host's.
    pub const D_RING_POSITIONS: u32 = 1;
    /// Detail of `RING_CORRUPT`: an entry runs past the ring's end or the round's, or
    /// into the entry the host placed after it.
    pub const D_RING_ENTRY: u32 = 2;
    /// Detail of `RING_CORRUPT`: a wrap word where the round's entries do not wrap.
    pub const D_RING_WRAP: u32 = 3;
    /// Detail of `RING_CORRUPT`: the entries do not end where the host's end (the
    /// round ends early, the last entry ends elsewhere, or an entry ends short of the
    /// position of the next).
    pub const D_RING_END: u32 = 4;
    /// Output status: processed, nothing sent.
    pub const PROCESSED: u32 = 1;
    /// Output status: processed, checksum sent to the peer.
    pub const FORWARDED: u32 = 2;
    /// Output status: processed, send refused by the route bitmap.
    pub const REFUSED: u32 = 3;

    /// Words of a [`ControlBlock`](crate::control::ControlBlock).
    pub const CB_WORDS: usize = crate::control::CONTROL_BLOCK_SIZE / 4;

    /// The word of a [`ControlBlock`](crate::control::ControlBlock) field (the low word
    /// of a `u64`).
    macro_rules! cb_word {
        ($field:ident) => {
            (std::mem::offset_of!(crate::control::ControlBlock, $field) / 4) as u32
        };
    }

    /// The one declaration of the GPU memory layout the kernels use, by the names they
    /// use. [`wgsl_prelude`] and [`cuda_prelude`] render it as WGSL `const` and CUDA
    /// `#define` lines, which the backends put in front of the kernel sources
    /// (`ringkernel-shaders`): the sources define none of these names themselves, so a
    /// kernel and the host cannot drift apart.
    pub const KERNEL_CONSTANTS: &[(&str, u32)] = &[
        // Envelope and control block.
        ("RK_HEADER_WORDS", HEADER_WORDS as u32),
        ("RK_CB_WORDS", CB_WORDS as u32),
        ("RK_CB_IS_ACTIVE", cb_word!(is_active)),
        ("RK_CB_SHOULD_TERMINATE", cb_word!(should_terminate)),
        ("RK_CB_HAS_TERMINATED", cb_word!(has_terminated)),
        ("RK_CB_LAST_ERROR", cb_word!(last_error)),
        ("RK_CB_MESSAGES_PROCESSED", cb_word!(messages_processed)),
        ("RK_CB_MESSAGES_IN_FLIGHT", cb_word!(messages_in_flight)),
        ("RK_CB_INPUT_HEAD", cb_word!(input_head)),
        ("RK_CB_INPUT_TAIL", cb_word!(input_tail)),
        ("RK_CB_OUTPUT_TAIL", cb_word!(output_tail)),
        // Key slots.
        ("RK_KEY_SLOT_WORDS", KEY_SLOT_WORDS as u32),
        ("RK_KEY_SLOTS", KEY_SLOTS as u32),
        (
            "RK_KEY_CHECK_NONCE0",
            u32::from_le_bytes([
                crate::security::encryption::device::KEY_CHECK_NONCE[0],
                crate::security::encryption::device::KEY_CHECK_NONCE[1],
                crate::security::encryption::device::KEY_CHECK_NONCE[2],
                crate::security::encryption::device::KEY_CHECK_NONCE[3],
            ]),
        ),
        // Parameters.
        ("RK_PARAM_WORDS", PARAM_WORDS as u32),
        ("RK_P_HEADER", P_HEADER as u32),
        ("RK_P_RING_CAP", P_RING_CAPACITY as u32),
        ("RK_P_RING_READ", P_RING_READ as u32),
        ("RK_P_RING_WRITE", P_RING_WRITE as u32),
        ("RK_P_RING_END", P_RING_END as u32),
        ("RK_P_ROUTE_WORDS", P_ROUTE_WORDS as u32),
        ("RK_P_KEY_CHECK", P_KEY_CHECK as u32),
        ("RK_KEY_CHECK_WORDS", KEY_CHECK_WORDS as u32),
        ("RK_P_RING_ENTRIES", P_RING_ENTRIES as u32),
        // Input ring.
        (
            "RK_RING_HEADER",
            crate::backend::input_ring::RING_HEADER_WORDS as u32,
        ),
        ("RK_RING_WRAP", crate::backend::input_ring::RING_WRAP),
        ("RK_MAX_BATCH", MAX_ROUND_MESSAGES as u32),
        // Status words, result codes and the details of a refusal.
        ("RK_STATUS_WORDS", STATUS_WORDS as u32),
        ("RK_S_RING_READ", S_RING_READ as u32),
        ("RK_S_DETAIL", S_DETAIL as u32),
        ("RK_S_FOUND", S_FOUND as u32),
        ("RK_OK", OK),
        ("RK_OPEN_FAILED", OPEN_FAILED),
        ("RK_HEADER_MISMATCH", HEADER_MISMATCH),
        ("RK_NO_KEY", NO_KEY),
        ("RK_RING_CORRUPT", RING_CORRUPT),
        ("RK_KEY_SLOT_CORRUPT", KEY_SLOT_CORRUPT),
        ("RK_ROUND_INVALID", ROUND_INVALID),
        ("RK_D_HEADER_MALFORMED", D_HEADER_MALFORMED),
        ("RK_D_HEADER_CONTEXT", D_HEADER_CONTEXT),
        ("RK_D_HEADER_INCARNATION", D_HEADER_INCARNATION),
        ("RK_D_HEADER_SEQUENCE", D_HEADER_SEQUENCE),
        ("RK_D_RING_POSITIONS", D_RING_POSITIONS),
        ("RK_D_RING_ENTRY", D_RING_ENTRY),
        ("RK_D_RING_WRAP", D_RING_WRAP),
        ("RK_D_RING_END", D_RING_END),
        // Output statuses.
        ("RK_PROCESSED", PROCESSED),
        ("RK_FORWARDED", FORWARDED),
        ("RK_REFUSED", REFUSED),
    ];

    /// [`KERNEL_CONSTANTS`] as WGSL: one `const RK_X: u32 = 5u;` line each. WGSL has
    /// no `#include`: the wgpu backend puts this in front of every module it compiles.
    pub fn wgsl_prelude() -> String {
        render(|name, value| format!("const {name}: u32 = {value}u;"))
    }

    /// [`KERNEL_CONSTANTS`] as CUDA C: one `#define RK_X 5u` line each. The CUDA
    /// backend puts this in front of the program it hands NVRTC (and the host-compiled
    /// tests include it as a header).
    pub fn cuda_prelude() -> String {
        render(|name, value| format!("#define {name} {value}u"))
    }

    fn render(line: impl Fn(&str, u32) -> String) -> String {
        let mut out = String::from(
            "// Generated from ringkernel-core backend/device.rs (layout::KERNEL_CONSTANTS).\n\
             // Do not edit: change the Rust declaration.\n",
        );
        for (name, value) in KERNEL_CONSTANTS {
            out.push_str(&line(name, *value));
            out.push('\n');
        }
        out
    }

    /// The constants a kernel source defines, as (name, value): WGSL
    /// `const RK_X: u32 = 5u;` and CUDA `#define RK_X 5u` lines.
    pub fn defined_constants(source: &str) -> Vec<(String, u32)> {
        source
            .lines()
            .filter_map(|line| {
                let line = line.trim();
                let (name, value) = if let Some(rest) = line.strip_prefix("const ") {
                    let (name, rest) = rest.split_once(':')?;
                    (
                        name.trim(),
                        rest.split_once('=')?.1.trim().trim_end_matches(';'),
                    )
                } else {
                    let rest = line.strip_prefix("#define ")?;
                    let (name, value) = rest.split_once(' ')?;
                    (name.trim(), value.trim())
                };
                let digits = value.trim_end_matches('u');
                let parsed = match digits.strip_prefix("0x") {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => digits.parse(),
                };
                Some((name.to_owned(), parsed.ok()?))
            })
            .collect()
    }
}

/// Bytes packed into little-endian words, zero-padded to a whole word.
pub fn words_of(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}
pub use super::words::{extend_words, words_from_le, zeroizing_extend};

/// One round, packed for the device. Key slots and payloads are zeroized on drop.
pub struct RoundPlan {
    /// Parameter words.
    pub params: Vec<u32>,
    /// Key-slot words.
    pub key_slots: zeroize::Zeroizing<Vec<u32>>,
    /// Writes into the input ring (new entries, then the write position).
    pub ring_writes: Vec<RingWrite>,
    /// The input ring grew: replace its device buffer with a zeroed one of
    /// [`InputRing::buffer_words`] words before the writes.
    pub ring_grown: bool,
    /// The route table to have on the device (upload when it is not the one there).
    pub routes: Option<Arc<RouteTable>>,
    /// The peer checksums go to this round, if any.
    pub peer: Option<KernelId>,
    /// Whether the route table permits the send to the peer (`None`: routes are not
    /// enforced this round); every output status must agree with it.
    pub route_permitted: Option<bool>,
    /// Messages the device takes from the input ring this round.
    pub messages: usize,
}

impl std::fmt::Debug for RoundPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoundPlan")
            .field("messages", &self.messages)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl RoundPlan {
    /// The route bitmap as the device reads it (`u32` words, bit `src * stride + dst`),
    /// when this round needs a route table other than the one `on_device` says the
    /// device holds; records the new one as held. `None`: nothing to upload.
    pub fn routes_to_upload(&self, on_device: &mut Option<Arc<RouteTable>>) -> Option<Vec<u32>> {
        let table = self.routes.as_ref()?;
        if on_device
            .as_ref()
            .is_some_and(|held| Arc::ptr_eq(held, table))
        {
            return None;
        }
        *on_device = Some(table.clone());
        Some(
            table
                .bitmap()
                .0
                .iter()
                .flat_map(|w| [*w as u32, (*w >> 32) as u32])
                .collect(),
        )
    }
}

fn word(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| crate::Error::backend(format!("{what} too large for a round")))
}

/// Packs a round: key slots and re-sealing header from the gate, routes, and the input:
/// messages from the front of `staged` move into the input `ring` while they fit, and
/// the device takes at most `take` of the ring's pending messages (0 for a round that
/// only re-seals). `control_len` is the control block's size in its buffer (checked
/// against what the kernel expects).
pub fn plan_round(
    round: &DeviceRound,
    program: &DeviceProgram,
    ring: &mut InputRing,
    staged: &mut VecDeque<crate::k2k::Message>,
    take: usize,
    control_len: usize,
) -> Result<RoundPlan> {
    use layout::*;
    let mut params = vec![0u32; PARAM_WORDS];
    let mut slots = zeroize::Zeroizing::new(vec![0u32; KEY_SLOTS * KEY_SLOT_WORDS]);
    let expected_len = match &round.sealing {
        Some(s) => {
            let seal_epoch = s.seal.key.epoch();
            let mut put = |slot: usize, key: &DeviceKey| -> Result<()> {
                let o = slot * KEY_SLOT_WORDS;
                slots[o] = key.epoch();
                slots[o + 1] = 1;
                let mut w = words_of(key.bytes());
                slots[o + 4..o + 12].copy_from_slice(&w);
                zeroize::Zeroize::zeroize(&mut w);
                let c = P_KEY_CHECK + slot * KEY_CHECK_WORDS;
                params[c] = 1;
                params[c + 1] = key.epoch();
                params[c + 2..c + KEY_CHECK_WORDS].copy_from_slice(&words_of(&key.check_value()?));
                Ok(())
            };
            put(0, &s.seal.key)?;
            if let Some(other) = s.keys.iter().find(|k| k.epoch() != seal_epoch) {
                put(1, other)?;
            }
            params[0] = 1;
            let header = words_of(&s.seal.header);
            if header.len() != HEADER_WORDS {
                return Err(crate::Error::backend(
                    "unexpected control-block header size",
                ));
            }
            params[P_HEADER..P_HEADER + HEADER_WORDS].copy_from_slice(&header);
            crate::security::encryption::device::device_sealed_len(
                crate::control::CONTROL_BLOCK_SIZE,
            )
        }
        None => crate::control::CONTROL_BLOCK_SIZE,
    };
    if expected_len != control_len {
        return Err(crate::Error::backend(format!(
            "control block is {control_len} bytes, the device kernel expects {expected_len}"
        )));
    }
    let push = ring.push(staged, layout::MAX_ROUND_MESSAGES)?;
    let messages = ring.round_take(
        take.min(layout::MAX_ROUND_MESSAGES),
        layout::ROUND_PAYLOAD_WORDS,
    );
    params[1] = word(messages, "batch")?;
    params[P_RING_CAPACITY] = word(ring.capacity(), "input ring")?;
    params[P_RING_READ] = word(ring.read_position(), "input ring")?;
    params[P_RING_WRITE] = word(ring.write_position(), "input ring")?;
    params[P_RING_END] = word(ring.end_after(messages), "input ring")?;
    for (slot, start) in params[P_RING_ENTRIES..P_RING_ENTRIES + MAX_ROUND_MESSAGES]
        .iter_mut()
        .zip(ring.entry_starts(messages))
    {
        *slot = word(start, "input ring")?;
    }
    params[2] = round.sequence as u32;
    params[3] = (round.sequence >> 32) as u32;
    params[22] = round.queued_total as u32;
    params[23] = (round.queued_total >> 32) as u32;
    let mut routes = None;
    let mut peer = None;
    let mut route_permitted = None;
    match (&round.routes, program.peer()) {
        (Some((table, own)), Some(p)) => match table.slot_of(p) {
            Some(slot) => {
                params[4] = 1;
                params[5] = word(*own, "route slot")?;
                params[6] = word(slot, "route slot")?;
                params[7] = word(table.bitmap().1, "route stride")?;
                params[8] = 1;
                params[P_ROUTE_WORDS] = word(2 * table.bitmap().0.len(), "route bitmap")?;
                route_permitted = Some(table.permits(*own, slot));
                routes = Some(table.clone());
                peer = Some(p.clone());
            }
            None => {
                tracing::warn!(peer = %p, "peer kernel is not running; checksums are not forwarded this round");
            }
        },
        (None, Some(p)) => {
            params[4] = 1;
            peer = Some(p.clone());
        }
        (_, None) => {}
    }
    Ok(RoundPlan {
        params,
        key_slots: slots,
        ring_writes: push.writes,
        ring_grown: push.grown,
        routes,
        peer,
        route_permitted,
        messages,
    })
}

/// How long a forwarded checksum may wait for room in the peer's queue.
const SEND_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Messages per round unless the program asks for fewer.
pub const DEFAULT_BATCH: usize = layout::MAX_ROUND_MESSAGES;

/// The driver loop every GPU backend runs on its kernel's thread, until the kernel is
/// asked to stop (by the host or, seen by the device, should_terminate); then `wipe`
/// (key slots, input ring) and the kernel's termination mark. A round that fails stops
/// the kernel with its error.
///
/// `round(staged, take)` runs one round: it moves messages from `staged` into the
/// input ring while they fit and lets the device take at most `take` pending ones.
/// Rounds follow each other while the ring or `staged` holds messages; when both are
/// empty the driver waits on the mailbox.
pub fn drive_rounds(
    driver: &KernelDriver,
    program: &DeviceProgram,
    mut round: impl FnMut(&mut VecDeque<crate::k2k::Message>, usize) -> Result<RoundReport>,
    wipe: impl FnOnce(),
) {
    let take = program
        .batch_limit()
        .unwrap_or(DEFAULT_BATCH)
        .min(DEFAULT_BATCH);
    let mut staged = VecDeque::new();
    let mut backlog = 0;
    loop {
        if staged.is_empty() && backlog == 0 {
            match driver.next_batch(DEFAULT_BATCH) {
                None => break,
                Some(msgs) if msgs.is_empty() => continue,
                Some(msgs) => staged.extend(msgs),
            }
        }
        match round(&mut staged, take) {
            Ok(report) => {
                deliver(driver, &report);
                if report.terminate_seen {
                    tracing::info!(kernel = %driver.id(), "device kernel honoured should_terminate");
                    break;
                }
                backlog = report.backlog;
            }
            Err(e) => {
                wipe();
                driver.stop_with_error(&e);
                return;
            }
        }
    }
    wipe();
    driver.mark_terminated();
}

/// Sends what the device forwarded and reports what it refused.
pub fn deliver(driver: &KernelDriver, report: &RoundReport) {
    let ctx = driver.context();
    let Some(peer) = &report.peer else {
        return;
    };
    for sum in &report.forwarded {
        // Backpressure: a full peer queue holds the driver (and so the kernel) back.
        if let Err(e) = ctx.send_timeout(peer.as_str(), "checksum", &sum.to_le_bytes(), SEND_WAIT) {
            tracing::warn!(kernel = %ctx.id(), peer = %peer, error = %e, "forwarded checksum not delivered");
        }
    }
    if report.refused > 0 {
        driver.report_device_refusals(peer, report.refused);
    }
}

// ----- GPU ChaCha20-Poly1305 -----------------------------------------------------------

/// Seal or open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AeadOp {
    /// Encrypt `data` in place and compute `tag`.
    Seal,
    /// Verify `tag`, then decrypt `data` in place.
    Open,
}

/// One ChaCha20-Poly1305 record for [`DeviceCipher::aead_batch`]. Key and data are
/// zeroized when the job is dropped.
#[derive(Clone)]
pub struct AeadJob {
    /// What to do.
    pub op: AeadOp,
    /// 256-bit key.
    pub key: [u8; 32],
    /// 96-bit nonce.
    pub nonce: [u8; 12],
    /// Associated data.
    pub aad: Vec<u8>,
    /// Plaintext (seal) or ciphertext (open); replaced by the result.
    pub data: Vec<u8>,
    /// Output of seal, input of open.
    pub tag: [u8; 16],
}

impl std::fmt::Debug for AeadJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AeadJob")
            .field("op", &self.op)
            .field("aad_len", &self.aad.len())
            .field("data_len", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl Drop for AeadJob {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
        zeroize::Zeroize::zeroize(&mut self.data);
    }
}

/// ChaCha20-Poly1305 run by a GPU backend's own kernels.
pub trait DeviceCipher {
    /// Seals or opens every job on the device in one launch. Returns, per job, whether
    /// it succeeded: an open whose tag does not verify returns `false` and leaves its
    /// data as it was.
    fn aead_batch(&self, jobs: &mut [AeadJob]) -> Result<Vec<bool>>;

    /// Seals the first `len` bytes of device buffer `buffer` on the device as a STREAM
    /// envelope of region `context` at `sequence`; returns the envelope, which
    /// [`MemoryEncryption::open_stream`](crate::security::encryption::MemoryEncryption::open_stream)
    /// opens on the CPU.
    fn seal_buffer(
        &self,
        enc: &crate::security::encryption::MemoryEncryption,
        context: crate::security::encryption::ContextId,
        sequence: u64,
        buffer: BufferId,
        len: u64,
    ) -> Result<Vec<u8>>;

    /// Opens a STREAM envelope on the device into `buffer` (from offset 0); when any
    /// chunk fails, nothing is written and the result is
    /// [`Error::Tampered`](crate::Error::Tampered). Returns the plaintext length.
    fn open_into_buffer(
        &self,
        enc: &crate::security::encryption::MemoryEncryption,
        sealed: &[u8],
        context: crate::security::encryption::ContextId,
        check: crate::security::encryption::SequenceCheck,
        buffer: BufferId,
    ) -> Result<u64>;
}

/// The host's part of [`DeviceCipher::seal_buffer`]: checks that the first `len`
/// bytes lie inside the `buf_len`-byte `buffer`, then (only then, so a refused call
/// spends no nonce) reserves the STREAM sealing of region `context` at `sequence`.
pub fn stream_seal_for_buffer(
    enc: &crate::security::encryption::MemoryEncryption,
    context: crate::security::encryption::ContextId,
    sequence: u64,
    buffer: BufferId,
    len: u64,
    buf_len: u64,
) -> Result<DeviceSeal> {
    super::check_bounds(buffer, 0, len as usize, buf_len)?;
    enc.device_seal(
        crate::security::encryption::EnvelopeKind::Stream,
        context,
        sequence,
        len,
    )
}

/// The host's part of [`DeviceCipher::open_into_buffer`]: checks the STREAM envelope's
/// header as [`MemoryEncryption::open_stream`](crate::security::encryption::MemoryEncryption::open_stream)
/// would, and that its plaintext fits the `buf_len`-byte `buffer`.
pub fn stream_open_into_buffer(
    enc: &crate::security::encryption::MemoryEncryption,
    sealed: &[u8],
    context: crate::security::encryption::ContextId,
    check: crate::security::encryption::SequenceCheck,
    buffer: BufferId,
    buf_len: u64,
) -> Result<crate::security::encryption::DeviceOpen> {
    let open = enc.device_open(
        sealed,
        crate::security::encryption::EnvelopeKind::Stream,
        context,
        check,
    )?;
    super::check_bounds(buffer, 0, open.parsed.length as usize, buf_len)?;
    Ok(open)
}

/// Words per job descriptor of the batch kernels (`aead_batch.wgsl`, `aead_batch.cu`):
/// op, key offset, nonce (3), aad offset, aad length, message offset, message length,
/// tag offset, 2 unused. Offsets are in words into the data array.
pub const JOB_WORDS: usize = 12;

/// Jobs packed for a batch kernel: descriptors and one data array holding every key,
/// AAD, message and tag, each starting on a word. The data is zeroized on drop.
pub struct PackedJobs {
    /// Job descriptors.
    pub desc: Vec<u32>,
    /// Keys, AADs, messages, tags.
    pub data: zeroize::Zeroizing<Vec<u32>>,
    /// Number of jobs.
    pub count: u32,
}

impl std::fmt::Debug for PackedJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedJobs")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// Packs `jobs` for a batch kernel.
pub fn pack_jobs(jobs: &[AeadJob]) -> Result<PackedJobs> {
    // Sized up front, and filled without temporaries: keys and plaintexts leave no
    // copies behind in freed memory.
    let total: usize = jobs
        .iter()
        .map(|j| (j.key.len() + j.aad.len() + j.data.len() + j.tag.len()).div_ceil(4) + 4)
        .sum();
    let mut data = zeroize::Zeroizing::new(Vec::with_capacity(total));
    let mut desc = Vec::with_capacity(jobs.len() * JOB_WORDS);
    for job in jobs {
        let key_off = word(data.len(), "AEAD batch")?;
        extend_words(&mut data, &job.key);
        let aad_off = word(data.len(), "AEAD batch")?;
        extend_words(&mut data, &job.aad);
        let msg_off = word(data.len(), "AEAD batch")?;
        extend_words(&mut data, &job.data);
        let tag_off = word(data.len(), "AEAD batch")?;
        extend_words(&mut data, &job.tag);
        let nonce = words_of(&job.nonce);
        desc.extend([
            match job.op {
                AeadOp::Seal => 1,
                AeadOp::Open => 2,
            },
            key_off,
            nonce[0],
            nonce[1],
            nonce[2],
            aad_off,
            word(job.aad.len(), "AAD")?,
            msg_off,
            word(job.data.len(), "AEAD record")?,
            tag_off,
            0,
            0,
        ]);
    }
    Ok(PackedJobs {
        desc,
        data,
        count: word(jobs.len(), "AEAD batch")?,
    })
}

/// Copies a batch kernel's results back into `jobs` (`data` is the data array read
/// back as bytes, `results` one word per job: 0 success). Returns per job whether it
/// succeeded; failed jobs keep their input.
pub fn unpack_jobs(
    jobs: &mut [AeadJob],
    packed: &PackedJobs,
    data: &[u8],
    results: &[u32],
) -> Vec<bool> {
    let mut ok = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter_mut().enumerate() {
        let d = &packed.desc[i * JOB_WORDS..(i + 1) * JOB_WORDS];
        let success = results.get(i) == Some(&0);
        if success {
            let msg = d[7] as usize * 4;
            let n = job.data.len();
            job.data.copy_from_slice(&data[msg..msg + n]);
            if job.op == AeadOp::Seal {
                let tag = d[9] as usize * 4;
                job.tag.copy_from_slice(&data[tag..tag + 16]);
            }
        }
        ok.push(success);
    }
    ok
}

/// One kernel on a GPU backend's device: what [`start_device_kernel`] drives.
pub trait DeviceKernel: Send + Sync + 'static {
    /// The kernel's program.
    fn program(&self) -> &DeviceProgram;

    /// One round on the device, run while the gate holds the control block's lock:
    /// messages from `staged` into the input ring ([`plan_round`]), at most `take` of
    /// the ring's messages processed (0: only open, check and re-seal the control
    /// block), and what the device did ([`read_round`]). An error means the round did
    /// not run (nothing was re-sealed); a round that ran returns its outcome with its
    /// report or the reason it is refused.
    fn round_locked(
        &self,
        round: DeviceRound,
        staged: &mut VecDeque<crate::k2k::Message>,
        take: usize,
    ) -> Result<(DeviceRoundOutcome, Result<RoundReport>)>;

    /// Clears the key slots and every per-kernel buffer (the kernel has stopped).
    fn wipe(&self);

    /// Test-only (cargo feature `hostile-device-testing`): the hook whose corruptions
    /// this kernel applies in its rounds, after the uploads and before the dispatch
    /// ([`HostileDevice::apply_pending`](super::hostile::HostileDevice::apply_pending)).
    /// `None`: the backend offers none.
    #[cfg(feature = "hostile-device-testing")]
    fn hostile_device(&self) -> Option<super::hostile::HostileDevice> {
        None
    }
}

/// Starts `kernel` for the runtime: a driver thread running [`drive_rounds`] with the
/// kernel's rounds, and a worker whose [`reseal_on_device`](super::KernelWorker::reseal_on_device)
/// runs a round that takes no messages.
pub fn start_device_kernel<K: DeviceKernel>(
    id: &KernelId,
    driver: KernelDriver,
    kernel: Arc<K>,
) -> Result<Box<dyn super::KernelWorker>> {
    #[cfg(feature = "hostile-device-testing")]
    let hostile = kernel.hostile_device();
    #[cfg(feature = "hostile-device-testing")]
    if hostile.is_some() {
        tracing::warn!(kernel = %id, "built with the hostile-device-testing feature: tests can overwrite this kernel's device buffers; never ship such a build");
    }
    let thread = {
        let kernel = kernel.clone();
        let driver = driver.clone();
        #[cfg(feature = "hostile-device-testing")]
        let hostile = hostile.clone();
        super::spawn_kernel_thread(id, move || {
            drive_rounds(
                &driver,
                kernel.program(),
                |staged, take| {
                    driver
                        .device_round(|round| kernel.round_locked(round, staged, take))
                        .and_then(|report| report)
                },
                || {
                    kernel.wipe();
                    #[cfg(feature = "hostile-device-testing")]
                    if let Some(h) = &hostile {
                        h.close();
                    }
                },
            )
        })?
    };
    #[cfg_attr(not(feature = "hostile-device-testing"), allow(unused_mut))]
    let mut worker = DeviceWorker::new(thread, move || {
        let r = driver
            .device_round(|round| kernel.round_locked(round, &mut VecDeque::new(), 0))
            .and_then(|report| report.map(|_| ()));
        if let Err(e) = &r
            && !matches!(e, crate::Error::KernelTerminated { .. })
        {
            // The device refused the round (or could not run it): the kernel stops
            // here as it would after a round of its own; its driver thread then finds
            // the queue closed, wipes the device buffers and ends.
            driver.stop_with_error(e);
        }
        r
    });
    #[cfg(feature = "hostile-device-testing")]
    {
        worker.hostile = hostile;
    }
    Ok(Box::new(worker))
}

/// A device kernel as its backend hands it to the runtime: the driver thread, plus a
/// way to run an empty round from the runtime's ticker, so that key rotation re-seals
/// the control block on the device ([`KernelWorker::reseal_on_device`](super::KernelWorker::reseal_on_device)).
pub struct DeviceWorker<F> {
    driver: Box<dyn super::KernelWorker>,
    reseal: F,
    #[cfg(feature = "hostile-device-testing")]
    hostile: Option<super::hostile::HostileDevice>,
}

impl<F: Fn() -> Result<()> + Send + Sync> DeviceWorker<F> {
    /// Wraps `driver` (from [`spawn_kernel_thread`](super::spawn_kernel_thread) running
    /// [`drive_rounds`]); `reseal` runs one empty round.
    pub fn new(driver: Box<dyn super::KernelWorker>, reseal: F) -> Self {
        DeviceWorker {
            driver,
            reseal,
            #[cfg(feature = "hostile-device-testing")]
            hostile: None,
        }
    }
}

impl<F: Fn() -> Result<()> + Send + Sync> super::KernelWorker for DeviceWorker<F> {
    fn is_finished(&self) -> bool {
        self.driver.is_finished()
    }

    fn join(&mut self) -> Result<()> {
        self.driver.join()
    }

    fn finish_signal(&self) -> Arc<super::FinishSignal> {
        self.driver.finish_signal()
    }

    fn reseal_on_device(&self) -> Option<Result<()>> {
        if self.driver.is_finished() {
            // The kernel is gone; the host keeps its final copy.
            return None;
        }
        Some((self.reseal)())
    }

    #[cfg(feature = "hostile-device-testing")]
    fn hostile_device(&self) -> Option<super::hostile::HostileDevice> {
        self.hostile.clone()
    }
}

/// Chunks of a STREAM of `total` bytes (one empty chunk when `total` is 0), as a device
/// launch counts them: the envelope's
/// [`stream_chunk_count`](crate::security::encryption::envelope::stream_chunk_count),
/// refused when the chunk size is zero or the count does not fit a `u32`.
pub fn stream_chunks(total: u64, chunk: u32) -> Result<u32> {
    if chunk == 0 {
        return Err(crate::Error::MalformedEnvelope("zero chunk size".into()));
    }
    crate::security::encryption::envelope::stream_chunk_count(total, chunk)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| crate::Error::backend("too many STREAM chunks"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_fnv1a_32() {
        // Known answers of FNV-1a (32-bit), from the FNV reference test suite.
        assert_eq!(DeviceProgram::checksum_of(b""), 0x811c_9dc5);
        assert_eq!(DeviceProgram::checksum_of(b"a"), 0xe40c_292c);
        assert_eq!(DeviceProgram::checksum_of(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn the_preludes_give_the_control_block_s_field_offsets() {
        use crate::control::ControlBlock;
        use std::mem::offset_of;
        let fields = [
            ("RK_CB_IS_ACTIVE", offset_of!(ControlBlock, is_active)),
            (
                "RK_CB_SHOULD_TERMINATE",
                offset_of!(ControlBlock, should_terminate),
            ),
            (
                "RK_CB_HAS_TERMINATED",
                offset_of!(ControlBlock, has_terminated),
            ),
            ("RK_CB_LAST_ERROR", offset_of!(ControlBlock, last_error)),
            (
                "RK_CB_MESSAGES_PROCESSED",
                offset_of!(ControlBlock, messages_processed),
            ),
            (
                "RK_CB_MESSAGES_IN_FLIGHT",
                offset_of!(ControlBlock, messages_in_flight),
            ),
            ("RK_CB_INPUT_HEAD", offset_of!(ControlBlock, input_head)),
            ("RK_CB_INPUT_TAIL", offset_of!(ControlBlock, input_tail)),
            ("RK_CB_OUTPUT_TAIL", offset_of!(ControlBlock, output_tail)),
            ("RK_CB_WORDS", size_of::<ControlBlock>()),
        ];
        for prelude in [layout::wgsl_prelude(), layout::cuda_prelude()] {
            let defined = layout::defined_constants(&prelude);
            for (name, bytes) in fields {
                let found: Vec<u32> = defined
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| *v)
                    .collect();
                assert_eq!(found, [(bytes / 4) as u32], "{name} in\n{prelude}");
            }
        }
    }

    #[test]
    fn each_prelude_defines_every_kernel_constant_once() {
        for prelude in [layout::wgsl_prelude(), layout::cuda_prelude()] {
            let defined = layout::defined_constants(&prelude);
            assert_eq!(defined.len(), layout::KERNEL_CONSTANTS.len(), "{prelude}");
            for ((name, value), (n, v)) in layout::KERNEL_CONSTANTS.iter().zip(&defined) {
                assert_eq!((*name, *value), (n.as_str(), *v));
            }
        }
        // The key check values' nonce starts with the byte the host uses.
        let nonce = crate::security::encryption::device::KEY_CHECK_NONCE;
        assert!(layout::KERNEL_CONSTANTS.contains(&(
            "RK_KEY_CHECK_NONCE0",
            u32::from_le_bytes([nonce[0], nonce[1], nonce[2], nonce[3]])
        )));
    }

    #[test]
    fn a_round_hands_the_device_every_entry_s_position() {
        let round = DeviceRound {
            control: BufferId(0),
            sequence: 0,
            queued_total: 0,
            sealing: None,
            routes: None,
        };
        let msg = |len: usize| crate::k2k::Message {
            source: crate::k2k::Endpoint::Host,
            destination: KernelId::new("gpu").expect("valid id"),
            topic: "t".into(),
            payload: vec![7; len],
            sequence: 0,
            timestamp: crate::k2k::HlcTimestamp::default(),
        };
        let program = DeviceProgram::checksum();
        let cb = crate::control::CONTROL_BLOCK_SIZE;
        // A 16-word ring: entries of 5 words at 0 and 5, then (once both are taken) a
        // 7-word entry behind a wrap word at 10, at 0.
        let mut ring = InputRing::new(16);
        let mut staged: VecDeque<_> = [msg(16), msg(16)].into();
        let plan = plan_round(&round, &program, &mut ring, &mut staged, 2, cb).expect("plan");
        assert_eq!(plan.params.len(), layout::PARAM_WORDS);
        let table = &plan.params[layout::P_RING_ENTRIES..];
        assert_eq!(table.len(), layout::MAX_ROUND_MESSAGES);
        assert_eq!(&table[..3], &[0, 5, 0]);
        assert_eq!(plan.params[layout::P_RING_END], 10);
        ring.consumed(2, 10).expect("in step");
        let mut staged: VecDeque<_> = [msg(24)].into();
        let plan = plan_round(&round, &program, &mut ring, &mut staged, 1, cb).expect("plan");
        assert_eq!(plan.params[layout::P_RING_READ], 10);
        assert_eq!(
            plan.params[layout::P_RING_ENTRIES],
            0,
            "behind the wrap word"
        );
        assert_eq!(plan.params[layout::P_RING_END], 7);
        // A round that takes nothing hands no position.
        let plan =
            plan_round(&round, &program, &mut ring, &mut VecDeque::new(), 0, cb).expect("plan");
        assert!(
            plan.params[layout::P_RING_ENTRIES..]
                .iter()
                .all(|w| *w == 0)
        );
    }
}
