//! The input ring of a GPU kernel: a ring buffer in device memory that the host fills
//! with messages and the device kernel consumes, a batch per round.
//!
//! The ring buffer holds [`RING_HEADER_WORDS`] header words, then `capacity` entry words:
//!
//! - header word 0 is the write position (the host's, written before each round);
//! - header word 1 is the read position (the device's, written at the end of each round;
//!   the host writes it back unchanged before a round, or rewound to 0 together with the
//!   write position when the ring is empty and the next entry does not fit where they
//!   stand);
//! - an entry is one word with the payload length in bytes, then the payload, padded to a
//!   whole word; an entry never runs past the end of the ring: where it would, the host
//!   writes the word [`RING_WRAP`] and starts the entry at position 0;
//! - the ring is empty when both positions are equal, so the host always leaves one
//!   word free.
//!
//! The device walks the entries from its read position, at most a batch per round
//! (and never past the write position), processes them, clears the words it consumed
//! and stores its new read position. [`InputRing`] is the host's copy of that state: it
//! places messages, knows where each pending entry ends, and checks after every round
//! that the device's read position is the one the entries it consumed lead to.

use std::collections::VecDeque;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::k2k::Message;

/// Header words in front of the ring's entries.
pub const RING_HEADER_WORDS: usize = 4;
/// The word that sends the reader back to position 0.
pub const RING_WRAP: u32 = u32::MAX;
/// Entry words of a new ring (128 KiB): room for the largest message a device kernel
/// takes ([`MAX_DEVICE_PAYLOAD_LEN`](super::device::MAX_DEVICE_PAYLOAD_LEN)). A larger
/// message grows the ring while the ring is empty.
pub const DEFAULT_RING_WORDS: usize = 32 * 1024;

/// Words to write into the ring buffer (positions include the header).
pub struct RingWrite {
    /// Word index into the ring buffer.
    pub at: usize,
    /// The words; zeroized on drop (they hold payloads).
    pub words: Zeroizing<Vec<u32>>,
}

impl std::fmt::Debug for RingWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingWrite")
            .field("at", &self.at)
            .field("words", &self.words.len())
            .finish()
    }
}

/// The host's view of a kernel's input ring.
#[derive(Debug)]
pub struct InputRing {
    capacity: usize,
    read: usize,
    write: usize,
    /// Per pending entry, the position after it and its payload words.
    ends: VecDeque<(usize, usize)>,
}

impl Default for InputRing {
    fn default() -> Self {
        InputRing::new(DEFAULT_RING_WORDS)
    }
}

/// Words of the entry for a payload of `len` bytes.
fn entry_words(len: usize) -> usize {
    1 + len.div_ceil(4)
}

impl InputRing {
    /// An empty ring of `capacity` entry words (at least 2).
    pub fn new(capacity: usize) -> Self {
        InputRing {
            capacity: capacity.max(2),
            read: 0,
            write: 0,
            ends: VecDeque::new(),
        }
    }

    /// Entry words.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Words of the device buffer that holds the ring (header and entries).
    pub fn buffer_words(&self) -> usize {
        RING_HEADER_WORDS + self.capacity
    }

    /// Entries written and not yet consumed by the device.
    pub fn pending(&self) -> usize {
        self.ends.len()
    }

    /// The write position (header word 0).
    pub fn write_position(&self) -> usize {
        self.write
    }

    /// The read position the device last confirmed (header word 1).
    pub fn read_position(&self) -> usize {
        self.read
    }

    /// The position after the first `n` pending entries (the read position when `n` is
    /// 0): where the device's read position must stand once a round took them.
    pub fn end_after(&self, n: usize) -> usize {
        match n.checked_sub(1).and_then(|i| self.ends.get(i)) {
            Some((end, _)) => *end,
            None => self.read,
        }
    }

    /// Where an entry of `words` words goes now: `Some((wrap_at, start))`, with
    /// `wrap_at` the position of a wrap word to write first, or `None` without room.
    fn place(&self, words: usize) -> Option<(Option<usize>, usize)> {
        let (r, w, cap) = (self.read, self.write, self.capacity);
        if w >= r {
            // Free: [w, cap) and [0, r). The write position may reach cap (then 0) only
            // when that does not make it equal to the read position.
            if w + words < cap || (w + words == cap && r != 0) {
                Some((None, w))
            } else if words < r {
                Some((Some(w), 0))
            } else {
                None
            }
        } else if w + words < r {
            Some((None, w))
        } else {
            None
        }
    }

    /// Moves messages from the front of `staged` into the ring while they fit, at most
    /// `max`; returns the writes to make, coalesced into contiguous runs, with the new
    /// write position (header word 0) last.
    ///
    /// When the ring is empty and the first message is larger than the ring can ever
    /// hold, the ring grows to fit it (cursors back at 0) and `grown` is set: the
    /// device buffer must then be replaced by a zeroed one of
    /// [`buffer_words`](Self::buffer_words) before the writes.
    pub fn push(&mut self, staged: &mut VecDeque<Message>, max: usize) -> Result<RingPush> {
        let mut grown = false;
        let mut runs: Vec<RingWrite> = Vec::new();
        let mut pushed = 0;
        while pushed < max {
            let Some(msg) = staged.front() else { break };
            let len = msg.payload.len();
            let len_word = u32::try_from(len)
                .ok()
                .filter(|l| *l != RING_WRAP)
                .ok_or_else(|| Error::backend("message too large for a device ring"))?;
            let words = entry_words(len);
            // Only while nothing is pending (so nothing written in this call either):
            if self.ends.is_empty() && words >= self.capacity {
                // Never fits: grow, positions back at 0.
                *self = InputRing::new((words + 1).next_power_of_two());
                grown = true;
            } else if self.ends.is_empty() && self.place(words).is_none() {
                // Fits an empty ring, not from where the positions stand: rewind both
                // to 0 (the header write below carries the read position too).
                self.read = 0;
                self.write = 0;
            }
            let Some((wrap_at, start)) = self.place(words) else {
                break;
            };
            if let Some(at) = wrap_at {
                append(&mut runs, RING_HEADER_WORDS + at, &[RING_WRAP]);
            }
            let mut entry = Zeroizing::new(Vec::with_capacity(words));
            entry.push(len_word);
            super::words::extend_words(&mut entry, &msg.payload);
            append(&mut runs, RING_HEADER_WORDS + start, &entry);
            let end = (start + words) % self.capacity;
            self.write = end;
            self.ends.push_back((end, words - 1));
            staged.pop_front();
            pushed += 1;
        }
        // Header: the write position, and the read position as the device last
        // reported it (checked in `consumed`) or rewound; no round runs meanwhile.
        runs.push(RingWrite {
            at: 0,
            words: Zeroizing::new(vec![self.write as u32, self.read as u32]),
        });
        Ok(RingPush {
            writes: runs,
            pushed,
            grown,
        })
    }

    /// How many entries a round takes: at most `batch`, and, past the first, only while
    /// their payloads add up to at most `budget` words (this bounds the work of one
    /// dispatch; some drivers, Mesa's lavapipe among them, cut long-running shader
    /// loops short, and GPU watchdogs stop long dispatches).
    pub fn round_take(&self, batch: usize, budget: usize) -> usize {
        let mut words = 0;
        let mut n = 0;
        for (_, w) in self.ends.iter().take(batch) {
            words += w;
            if n > 0 && words > budget {
                break;
            }
            n += 1;
        }
        n
    }

    /// Records that the device consumed `n` entries and now reads at `device_read`;
    /// a read position other than where those entries end means the device and the
    /// host no longer agree on the ring, which stops the kernel.
    pub fn consumed(&mut self, n: usize, device_read: u32) -> Result<()> {
        if n > self.ends.len() {
            return Err(out_of_step(format!(
                "the device consumed {n} entries, {} were pending",
                self.ends.len()
            )));
        }
        let expected = self.end_after(n);
        if device_read as usize != expected {
            return Err(out_of_step(format!(
                "the device reads at word {device_read}, the host expected {expected}"
            )));
        }
        self.ends.drain(..n);
        self.read = expected;
        Ok(())
    }
}

fn out_of_step(reason: String) -> Error {
    Error::corrupt("device input ring", reason)
}

/// Appends `words` at word `at`, extending the last run when it ends there.
fn append(runs: &mut Vec<RingWrite>, at: usize, words: &[u32]) {
    match runs.last_mut() {
        Some(last) if last.at + last.words.len() == at => {
            super::words::zeroizing_extend(&mut last.words, words)
        }
        _ => runs.push(RingWrite {
            at,
            words: Zeroizing::new(words.to_vec()),
        }),
    }
}

/// What [`InputRing::push`] placed.
#[derive(Debug)]
pub struct RingPush {
    /// The writes, the header's write position last.
    pub writes: Vec<RingWrite>,
    /// Messages moved into the ring.
    pub pushed: usize,
    /// The ring grew: replace the device buffer before writing.
    pub grown: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(len: usize) -> Message {
        Message {
            source: crate::k2k::Endpoint::Host,
            destination: crate::k2k::KernelId::new("gpu").expect("valid id"),
            topic: "t".into(),
            payload: vec![0xab; len],
            sequence: 0,
            timestamp: crate::k2k::HlcTimestamp::default(),
        }
    }

    /// Applies writes to a model of the device buffer.
    fn apply(buf: &mut [u32], push: &RingPush) {
        for w in &push.writes {
            buf[w.at..w.at + w.words.len()].copy_from_slice(&w.words);
        }
    }

    /// The device's walk over the model, as the kernels do it: up to `batch` entries.
    fn device_walk(buf: &mut [u32], cap: usize, batch: usize) -> (Vec<usize>, u32) {
        let write = buf[0] as usize;
        let mut r = buf[1] as usize;
        let mut lens = Vec::new();
        while lens.len() < batch && r != write {
            let len = buf[RING_HEADER_WORDS + r];
            if len == RING_WRAP {
                assert_ne!(r, 0, "wrap at 0");
                buf[RING_HEADER_WORDS + r] = 0;
                r = 0;
                continue;
            }
            let words = entry_words(len as usize);
            assert!(words < cap - r + 1, "entry runs past the end");
            lens.push(len as usize);
            for i in 0..words {
                buf[RING_HEADER_WORDS + r + i] = 0;
            }
            r = (r + words) % cap;
        }
        buf[1] = r as u32;
        (lens, r as u32)
    }

    #[test]
    fn entries_wrap_and_the_device_read_position_is_checked() {
        let mut ring = InputRing::new(16);
        let mut buf = vec![0u32; ring.buffer_words()];
        let mut lens_seen = Vec::new();
        // 5-word entries (16 bytes) in a 16-word ring: at most 3 pending, wrapping.
        for round in 0..10 {
            let mut staged: VecDeque<Message> = (0..4).map(|_| msg(16)).collect();
            let push = ring.push(&mut staged, 4).expect("push");
            assert!(!push.grown);
            assert!(ring.pending() <= 3, "round {round}: one word stays free");
            apply(&mut buf, &push);
            let take = ring.round_take(2, usize::MAX);
            let (lens, read) = device_walk(&mut buf, ring.capacity(), 2);
            assert_eq!(lens.len(), take);
            ring.consumed(take, read).expect("in step");
            lens_seen.extend(lens);
        }
        assert!(lens_seen.iter().all(|l| *l == 16));
        // Consumed words are zero; only pending entries remain.
        // (A wrap word the device has not reached yet may remain too.)
        let live: usize = buf[RING_HEADER_WORDS..].iter().filter(|w| **w != 0).count();
        assert!((ring.pending() * 5..=ring.pending() * 5 + 1).contains(&live));
    }

    #[test]
    fn a_device_out_of_step_is_an_error() {
        let mut ring = InputRing::new(64);
        let mut staged: VecDeque<Message> = (0..3).map(|_| msg(7)).collect();
        ring.push(&mut staged, 8).expect("push");
        // Each entry is 1 + 2 words: after two, the device should read at 6.
        assert!(matches!(
            ring.consumed(2, 5),
            Err(Error::Corrupt {
                what: "device input ring",
                ..
            })
        ));
        assert!(ring.consumed(4, 0).is_err());
        ring.consumed(2, 6).expect("in step");
        assert_eq!(ring.pending(), 1);
    }

    #[test]
    fn a_full_ring_keeps_messages_staged_and_a_huge_one_grows_an_empty_ring() {
        let mut ring = InputRing::new(8);
        let mut staged: VecDeque<Message> = (0..3).map(|_| msg(8)).collect();
        let push = ring.push(&mut staged, 8).expect("push");
        // 3-word entries in 8 words with one free: two fit.
        assert_eq!(push.pushed, 2);
        assert_eq!(staged.len(), 1);
        // A 100-byte message cannot fit while entries are pending: it waits.
        staged.push_front(msg(100));
        assert_eq!(ring.push(&mut staged, 8).expect("push").pushed, 0);
        ring.consumed(2, 6).expect("in step");
        let push = ring.push(&mut staged, 8).expect("push");
        assert!(push.grown);
        assert!(ring.capacity() > entry_words(100));
        assert_eq!(push.pushed, 2);
        assert_eq!(push.writes.first().map(|w| w.at), Some(RING_HEADER_WORDS));
    }

    #[test]
    fn a_round_takes_whole_messages_within_its_word_budget() {
        let mut ring = InputRing::new(1024);
        let mut staged: VecDeque<Message> = [40, 40, 40, 400, 4].into_iter().map(msg).collect();
        ring.push(&mut staged, 8).expect("push");
        // 10 + 10 + 10 words fit 32; the 4th would not.
        assert_eq!(ring.round_take(8, 32), 3);
        assert_eq!(ring.round_take(2, 32), 2);
        ring.consumed(3, 33).expect("in step");
        // A first message over the budget still goes, alone.
        assert_eq!(ring.round_take(8, 32), 1);
    }

    #[test]
    fn an_empty_payload_is_one_word() {
        let mut ring = InputRing::new(4);
        let mut staged: VecDeque<Message> = (0..5).map(|_| msg(0)).collect();
        let push = ring.push(&mut staged, 8).expect("push");
        assert_eq!(push.pushed, 3);
        assert_eq!(push.writes.len(), 2);
        assert_eq!(&push.writes[0].words[..], &[0, 0, 0]);
        assert_eq!(&push.writes[1].words[..], &[3, 0]);
    }

    #[test]
    fn an_empty_ring_rewinds_for_an_entry_that_fits_only_from_0() {
        let mut ring = InputRing::new(16);
        let mut staged: VecDeque<Message> = (0..2).map(|_| msg(20)).collect();
        ring.push(&mut staged, 8).expect("push");
        ring.consumed(2, 12).expect("in step");
        // 13 words fit an empty 16-word ring, but neither after 12 nor before it.
        staged.push_back(msg(48));
        let push = ring.push(&mut staged, 8).expect("push");
        assert_eq!((push.pushed, push.grown), (1, false));
        assert_eq!(push.writes[0].at, RING_HEADER_WORDS);
        assert_eq!(&push.writes[1].words[..], &[13, 0]);
        assert_eq!((ring.read_position(), ring.write_position()), (0, 13));
    }
}
