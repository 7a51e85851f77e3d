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
//! The device takes the entries from its read position, at most a batch per round
//! (and never past the write position), processes them, clears the words it consumed
//! and stores its new read position. [`InputRing`] is the host's copy of that state: it
//! places messages, knows where each pending entry starts and ends, and checks after
//! every round that the device's read position is the one the entries it consumed lead
//! to.
//!
//! The host hands the device the position of every entry a round takes
//! ([`InputRing::entry_starts`]), so the device checks them in parallel, one entry per
//! invocation, instead of walking the length chain one entry after another. The table
//! is only a claim: each invocation checks that its entry's length word (which the
//! device shares) leads exactly to the next entry's position (past a wrap word only
//! where the round wraps), and to the round's end after the last; a table that
//! disagrees with the ring is refused, never followed.

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
    /// The pending entries, oldest first.
    entries: VecDeque<Pending>,
}

/// Where a pending entry lies in the ring.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// The position of its length word (past any wrap word in front of it).
    start: usize,
    /// The position after it (0 where it ends at the ring's end).
    end: usize,
    /// Its payload words.
    payload_words: usize,
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
            entries: VecDeque::new(),
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
        self.entries.len()
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
        match n.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(p) => p.end,
            None => self.read,
        }
    }

    /// The positions of the first `n` pending entries' length words (at most as many
    /// as are pending), oldest first: the table a round hands the device, whose
    /// invocations each check one entry against the ring's length words. An entry
    /// behind a wrap word starts at 0.
    pub fn entry_starts(&self, n: usize) -> impl Iterator<Item = usize> + '_ {
        self.entries.iter().take(n).map(|p| p.start)
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
            if self.entries.is_empty() && words >= self.capacity {
                // Never fits: grow, positions back at 0.
                *self = InputRing::new((words + 1).next_power_of_two());
                grown = true;
            } else if self.entries.is_empty() && self.place(words).is_none() {
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
            self.entries.push_back(Pending {
                start,
                end,
                payload_words: words - 1,
            });
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
        for p in self.entries.iter().take(batch) {
            words += p.payload_words;
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
        if n > self.entries.len() {
            return Err(out_of_step(format!(
                "the device consumed {n} entries, {} were pending",
                self.entries.len()
            )));
        }
        let expected = self.end_after(n);
        if device_read as usize != expected {
            return Err(out_of_step(format!(
                "the device reads at word {device_read}, the host expected {expected}"
            )));
        }
        self.entries.drain(..n);
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

    use super::super::ring_model::{device_check, sequential_walk};

    /// The device's round over the model, as the kernels do it: the host's positions
    /// for `take` entries checked, then the payload lengths taken and the consumed
    /// words (entries and wrap words) cleared; the new read position stored.
    fn device_round(buf: &mut [u32], ring: &InputRing, take: usize) -> (Vec<usize>, u32) {
        let (cap, read, end) = (ring.capacity(), buf[1] as usize, ring.end_after(take));
        let starts: Vec<usize> = ring.entry_starts(take).collect();
        assert_eq!(starts.len(), take);
        let entries = device_check(buf, cap, read, end, &starts).expect("an honest round");
        let used = (end + cap - read) % cap;
        for i in 0..used {
            buf[RING_HEADER_WORDS + (read + i) % cap] = 0;
        }
        buf[1] = end as u32;
        (
            entries.iter().map(|(_, l)| *l as usize).collect(),
            end as u32,
        )
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
            let (lens, read) = device_round(&mut buf, &ring, take);
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

    /// Honest rounds of mixed sizes through a small ring, wrapping many times: the
    /// image of the device buffer, the host's ring and the rounds' `take`s, each round
    /// handed to `check` before the device takes it.
    fn honest_rounds(mut check: impl FnMut(&[u32], &InputRing, usize)) {
        let mut ring = InputRing::new(40);
        let mut buf = vec![0u32; ring.buffer_words()];
        let mut seed = 7u32;
        for _ in 0..200 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let mut staged: VecDeque<Message> = (0..1 + (seed >> 8) % 4)
                .map(|i| msg(((seed >> (12 + 3 * i)) % 23) as usize))
                .collect();
            apply(&mut buf, &ring.push(&mut staged, 8).expect("push"));
            let take = ring.round_take(1 + ((seed >> 20) % 4) as usize, usize::MAX);
            check(&buf, &ring, take);
            let (_, read) = device_round(&mut buf, &ring, take);
            ring.consumed(take, read).expect("in step");
        }
    }

    /// The entry checks accept a ring exactly when the walk from the read position
    /// accepts it with the entries where the host placed them. The walk alone also
    /// accepted some rings whose corrupted words lead, entry by entry, to the round's
    /// end along other positions (a wrap word turned into a length, say): it then took
    /// payloads the host never wrote. The checks refuse those.
    #[test]
    fn the_parallel_entry_checks_accept_what_the_walk_accepted_at_the_host_s_positions() {
        let (mut rounds, mut phantoms) = (0, 0);
        honest_rounds(|buf, ring, take| {
            let (cap, read, end) = (ring.capacity(), ring.read_position(), ring.end_after(take));
            let starts: Vec<usize> = ring.entry_starts(take).collect();
            let walked = sequential_walk(buf, cap, read, end, take);
            assert!(walked.is_ok());
            assert_eq!(device_check(buf, cap, read, end, &starts), walked);
            // Every single-word corruption of the ring's entry words: refused by
            // both or accepted by both, with the same entries.
            for w in 0..cap {
                for v in [
                    0,
                    1,
                    4,
                    5,
                    12,
                    0xffff_ff00,
                    RING_WRAP,
                    buf[RING_HEADER_WORDS + w] ^ 4,
                ] {
                    let mut bad = buf.to_vec();
                    bad[RING_HEADER_WORDS + w] = v;
                    let walked = sequential_walk(&bad, cap, read, end, take);
                    let checked = device_check(&bad, cap, read, end, &starts);
                    let at_host = matches!(&walked,
                        Ok(e) if e.iter().map(|(p, _)| *p).eq(starts.iter().copied()));
                    assert_eq!(checked.is_ok(), at_host, "word {w} = {v:#x}");
                    if at_host {
                        assert_eq!(walked, checked);
                    } else if walked.is_ok() {
                        phantoms += 1;
                    }
                    // A refusal is a ring refusal, never a parameter one.
                    assert_ne!(checked, Err(0));
                }
            }
            rounds += 1;
        });
        assert_eq!(rounds, 200);
        eprintln!("rings the walk accepted with entries the host did not place: {phantoms}");
    }

    #[test]
    fn forged_entry_offsets_are_refused() {
        let mut forged_rounds = 0;
        honest_rounds(|buf, ring, take| {
            let (cap, read, end) = (ring.capacity(), ring.read_position(), ring.end_after(take));
            let honest: Vec<usize> = ring.entry_starts(take).collect();
            let mut forgeries: Vec<(String, Vec<usize>)> = Vec::new();
            for i in 0..take {
                for (what, p) in [
                    ("shifted a word on", (honest[i] + 1) % cap),
                    ("shifted a word back", (honest[i] + cap - 1) % cap),
                    ("at the round's end", end),
                    ("at the round's end plus one", (end + 1) % cap),
                    ("behind a wrap claimed at 0", 0),
                    ("at the read position", read),
                ] {
                    let mut t = honest.clone();
                    t[i] = p;
                    forgeries.push((format!("entry {i} {what}"), t));
                }
                if i + 1 < take {
                    let mut t = honest.clone();
                    t.swap(i, i + 1);
                    forgeries.push((format!("entries {i} and {} swapped", i + 1), t));
                }
            }
            for (what, table) in forgeries {
                if table == honest {
                    continue;
                }
                let checked = device_check(buf, cap, read, end, &table);
                assert!(
                    matches!(checked, Err(d) if d != 0),
                    "{what}: {table:?} (honest {honest:?}) gave {checked:?}"
                );
                forged_rounds += 1;
            }
            // Past the capacity: a parameter that does not fit, refused as such.
            if take > 0 {
                let mut table = honest.clone();
                table[take - 1] = cap;
                assert_eq!(device_check(buf, cap, read, end, &table), Err(0));
            }
        });
        assert!(forged_rounds > 1000, "{forged_rounds}");
    }
}
