//! K2K message framing on a device kernel's input ring, and the host's reading of what
//! a (possibly hostile) device reports after a round.
//!
//! The host places messages with `InputRing::push`; a model of the device kernel's
//! entry checks (the ones the WGSL and CUDA kernels make, one entry per invocation, in
//! parallel: each entry at the position the host gives it in the round's parameters,
//! its length word, payload padded to words, its link to the next entry's position past
//! a wrap word only where the round wraps) takes each round's batch back out of the
//! modelled device buffer. Rounds are then read back with `read_round`, either from an
//! honest device or from fuzzer-chosen status, output and control words.
//!
//! Properties: nothing panics; the device gets back exactly the payloads the host
//! pushed, in order, and never reads an entry running past the ring's end; the entry
//! checks accept a round exactly when the walk from the read position (what the kernels
//! did before) accepts it with the entries at the host's positions, also with a
//! fuzzer-corrupted ring word, and refuse any position table other than the host's; an honest round is accepted and keeps host and
//! device in step; a hostile round is accepted only when its words are those of an
//! honest round.
#![no_main]

use std::collections::VecDeque;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ringkernel_core::backend::device::{RoundPlan, layout::*, read_round};
use ringkernel_core::backend::input_ring::{InputRing, RING_HEADER_WORDS};
use ringkernel_core::backend::ring_model::{device_check, sequential_walk};
use ringkernel_core::k2k::{Endpoint, HlcTimestamp, KernelId, Message};

#[derive(Arbitrary, Debug)]
enum Op {
    /// Stage messages of these lengths (bytes, capped) and push at most `max`.
    Push { lens: Vec<u8>, big: bool, max: u8 },
    /// A round taking at most `batch` entries within `budget` words.
    Round {
        batch: u8,
        budget: u16,
        hostile: Option<Hostile>,
        /// One entry position of the round's table changed (index, value).
        forge: Option<(u8, u16)>,
        /// One ring word changed (entry word, value), for the checks only.
        corrupt: Option<(u16, u32)>,
    },
}

#[derive(Arbitrary, Debug)]
struct Hostile {
    status: Vec<u32>,
    output: Vec<u32>,
    control: Vec<u8>,
    /// Words of an honest status to overwrite (index, value).
    patch: Vec<(u8, u32)>,
}

fn message(len: usize, n: u64) -> Message {
    Message {
        source: Endpoint::Host,
        destination: KernelId::new("gpu").expect("valid id"),
        topic: "t".into(),
        payload: (0..len).map(|i| (i as u64 ^ n) as u8).collect(),
        sequence: n,
        timestamp: HlcTimestamp::default(),
    }
}

/// The device's round: the entries at the host's positions checked, their payloads
/// taken, the consumed words (entries and wrap words) cleared, the read position
/// stored. Returns the payloads and the read position.
fn device_round(buf: &mut [u32], cap: usize, end: usize, starts: &[usize]) -> (Vec<Vec<u8>>, u32) {
    let read = buf[1] as usize;
    assert!(read < cap, "read position {read} outside the ring of {cap}");
    let entries = device_check(buf, cap, read, end, starts).expect("an honest round is accepted");
    let mut out = Vec::with_capacity(entries.len());
    for (p, len) in entries {
        let words = (len as usize).div_ceil(4);
        assert!(
            p + 1 + words <= cap,
            "an entry runs past the end of the ring"
        );
        let mut payload = Vec::with_capacity(len as usize);
        for w in &buf[RING_HEADER_WORDS + p + 1..RING_HEADER_WORDS + p + 1 + words] {
            payload.extend_from_slice(&w.to_le_bytes());
        }
        payload.truncate(len as usize);
        out.push(payload);
    }
    for i in 0..(end + cap - read) % cap {
        buf[RING_HEADER_WORDS + (read + i) % cap] = 0;
    }
    buf[1] = end as u32;
    (out, end as u32)
}

fn plan(messages: usize) -> RoundPlan {
    RoundPlan {
        params: vec![0; PARAM_WORDS],
        key_slots: Default::default(),
        ring_writes: Vec::new(),
        ring_grown: false,
        routes: None,
        peer: None,
        route_permitted: None,
        messages,
    }
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let cap = usize::from(u8::arbitrary(u)?) + 2;
    let mut ring = InputRing::new(cap);
    let mut buf = vec![0u32; ring.buffer_words()];
    let mut staged: VecDeque<Message> = VecDeque::new();
    // Payloads in the ring, in order, not yet taken by the device.
    let mut in_ring: VecDeque<Vec<u8>> = VecDeque::new();
    let mut n = 0u64;
    for op in u.arbitrary_iter::<Op>()?.take(24) {
        match op? {
            Op::Push { lens, big, max } => {
                for l in lens.into_iter().take(16) {
                    let len = if big {
                        usize::from(l) * 37
                    } else {
                        usize::from(l)
                    };
                    staged.push_back(message(len, n));
                    n += 1;
                }
                let before = staged.len();
                let payloads: Vec<Vec<u8>> = staged.iter().map(|m| m.payload.clone()).collect();
                let push = ring.push(&mut staged, usize::from(max)).expect("push");
                assert_eq!(before - staged.len(), push.pushed);
                if push.grown {
                    assert!(in_ring.is_empty(), "the ring grew with entries pending");
                    buf = vec![0u32; ring.buffer_words()];
                }
                assert_eq!(push.writes.last().map(|w| w.at), Some(0));
                for w in &push.writes {
                    assert!(
                        w.at + w.words.len() <= buf.len(),
                        "a write past the ring buffer"
                    );
                    buf[w.at..w.at + w.words.len()].copy_from_slice(&w.words);
                }
                in_ring.extend(payloads.into_iter().take(push.pushed));
                assert!(ring.pending() == in_ring.len());
                assert!(ring.write_position() < ring.capacity());
            }
            Op::Round {
                batch,
                budget,
                hostile,
                forge,
                corrupt,
            } => {
                let take = ring.round_take(usize::from(batch), usize::from(budget));
                assert!(take <= ring.pending() && take <= usize::from(batch));
                let p = plan(take);
                let (cap, read, end) =
                    (ring.capacity(), ring.read_position(), ring.end_after(take));
                let starts: Vec<usize> = ring.entry_starts(take).collect();
                assert_eq!(starts.len(), take);
                assert_eq!(
                    buf[1] as usize, read,
                    "the ring's header holds the host's read position"
                );
                let honest = sequential_walk(&buf, cap, read, end, take);
                assert!(honest.is_ok(), "the walk refused an honest round");
                assert_eq!(device_check(&buf, cap, read, end, &starts), honest);
                if let Some((i, v)) = forge.filter(|_| take > 0) {
                    let mut table = starts.clone();
                    table[usize::from(i) % take] = usize::from(v) % (cap + 2);
                    if table != starts {
                        let checked = device_check(&buf, cap, read, end, &table);
                        assert!(
                            checked.is_err(),
                            "a forged table {table:?} (honest {starts:?}) was accepted"
                        );
                    }
                }
                if let Some((w, v)) = corrupt {
                    let mut bad = buf.clone();
                    bad[RING_HEADER_WORDS + usize::from(w) % cap] = v;
                    // Accepted exactly when the walk accepts with the entries where
                    // the host placed them (the walk alone also took entries the
                    // host never wrote, along corrupted lengths that reach the end).
                    let walked = sequential_walk(&bad, cap, read, end, take);
                    let checked = device_check(&bad, cap, read, end, &starts);
                    let at_host = matches!(&walked,
                        Ok(e) if e.iter().map(|(p, _)| *p).eq(starts.iter().copied()));
                    assert_eq!(checked.is_ok(), at_host, "the checks and the walk disagree");
                    if at_host {
                        assert_eq!(walked, checked);
                    }
                    assert_ne!(checked, Err(0), "a ring word made a parameter refusal");
                }
                let mut device = buf.clone();
                let (payloads, read) = device_round(&mut device, cap, end, &starts);
                assert_eq!(payloads.len(), take);
                // The device reads back exactly what the host framed, in order.
                for (got, want) in payloads.iter().zip(&in_ring) {
                    assert_eq!(
                        got, want,
                        "the device read another payload than the host wrote"
                    );
                }
                assert_eq!(read as usize, ring.end_after(take));
                let mut status = vec![0; STATUS_WORDS];
                status[1] = take as u32;
                status[5] = 1;
                status[S_RING_READ] = read;
                let output: Vec<u32> = (0..take as u32).flat_map(|i| [i, PROCESSED]).collect();
                match hostile {
                    None => {
                        let (outcome, report) = read_round(&p, &mut ring, &status, &output, &[]);
                        let report = report.expect("an honest round is accepted");
                        assert!(outcome.resealed);
                        assert_eq!(report.checksums.len(), take);
                        buf = device;
                        in_ring.drain(..take);
                    }
                    Some(h) => {
                        let mut status = if h.status.is_empty() {
                            status
                        } else {
                            h.status
                        };
                        for (i, v) in h.patch.into_iter().take(4) {
                            if let Some(w) = status.get_mut(usize::from(i) % STATUS_WORDS.max(1)) {
                                *w = v;
                            }
                        }
                        let output = if h.output.is_empty() {
                            output
                        } else {
                            h.output
                        };
                        let before = (ring.read_position(), ring.pending());
                        let (_, report) = read_round(&p, &mut ring, &status, &output, &h.control);
                        match report {
                            Ok(r) => {
                                // Accepted: the words said what an honest device says
                                // about the ring (checksums are the device's own).
                                assert_eq!(status[0], OK);
                                assert_eq!(
                                    status[1] as usize,
                                    if status[4] == 1 { 0 } else { take }
                                );
                                assert_eq!(r.checksums.len(), status[1] as usize);
                                let consumed = status[1] as usize;
                                assert_eq!(
                                    ring.read_position(),
                                    if consumed == 0 {
                                        before.0
                                    } else {
                                        read as usize
                                    }
                                );
                                if consumed == take {
                                    buf = device;
                                    in_ring.drain(..take);
                                } else {
                                    assert_eq!(consumed, 0);
                                }
                            }
                            Err(_) => {
                                assert_eq!(
                                    (ring.read_position(), ring.pending()),
                                    before,
                                    "a refused round moved the ring"
                                );
                            }
                        }
                    }
                }
                assert_eq!(ring.pending(), in_ring.len());
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
