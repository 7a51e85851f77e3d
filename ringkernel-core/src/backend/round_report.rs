//! What a device round did: [`read_round`] turns the status and output words a
//! persistent kernel wrote into a [`RoundReport`] or a typed refusal.
//!
//! Everything here reads words from device memory, which a hostile device (or anyone
//! who can write its memory) controls: no word is trusted beyond what the host can
//! check against its own plan of the round, and no word can make this code panic.

use super::device::{DeviceRoundOutcome, RoundPlan, layout, words_from_le};
use super::input_ring::InputRing;
use crate::error::Result;
use crate::k2k::KernelId;

/// What one round did, for the driver to act on outside the control block's lock.
#[derive(Clone, Debug, Default)]
pub struct RoundReport {
    /// Per message, its checksum.
    pub checksums: Vec<u32>,
    /// Checksums the device sent to the peer.
    pub forwarded: Vec<u32>,
    /// Sends the device refused.
    pub refused: u64,
    /// The device saw should_terminate and marked the kernel terminated.
    pub terminate_seen: bool,
    /// The peer of this round.
    pub peer: Option<KernelId>,
    /// Messages still pending in the input ring after the round.
    pub backlog: usize,
}

/// Interprets a round's status and output words, and moves the input ring's read
/// position on by what the device consumed (checking it against the device's).
///
/// Returns what the device did to the control block, and the round's report or why the
/// round is refused. A refusal the device reported comes with a block it left as it
/// was. A refusal of the host's own checks (status words out of range, a read position
/// out of step, route decisions the host's route table contradicts) may follow a
/// re-sealing, which the outcome then says, so that the gate's sequence number stays
/// the block's. Nothing read back is trusted beyond these checks, and nothing here
/// panics on any words.
///
/// `control` is the control block as the round left it in device memory (its
/// buffer's first `control_len` bytes). It goes into the outcome, for the gate to open
/// and keep as the kernel's status; and when control blocks are sealed, a round that
/// re-sealed it must have done so under exactly the header the host reserved (its
/// nonce above all: a nonce changed in the parameters before the dispatch would make
/// the device seal under a nonce of someone else's choosing).
pub fn read_round(
    plan: &RoundPlan,
    ring: &mut InputRing,
    status: &[u32],
    output: &[u32],
    control: &[u8],
) -> (DeviceRoundOutcome, Result<RoundReport>) {
    use layout::*;
    let block = (!control.is_empty()).then(|| control.to_vec());
    if status.len() < STATUS_WORDS || output.len() < 2 * plan.messages {
        let outcome = DeviceRoundOutcome {
            resealed: false,
            control_block: block,
        };
        let short = crate::Error::backend("short read-back from the device");
        return (outcome, Err(short));
    }
    if status[0] != OK {
        let outcome = DeviceRoundOutcome {
            resealed: false,
            control_block: block,
        };
        return (outcome, Err(refusal(plan, status)));
    }
    let header = words_from_le(control.get(..4 * HEADER_WORDS).unwrap_or_default());
    let outcome = DeviceRoundOutcome {
        resealed: status[5] == 1,
        control_block: block,
    };
    (outcome, check_round(plan, ring, status, output, &header))
}

/// The typed error of a round the device refused (status word 0 other than `OK`).
fn refusal(plan: &RoundPlan, status: &[u32]) -> crate::Error {
    use crate::Error;
    use layout::*;
    let (detail, found) = (status[S_DETAIL], status[S_FOUND]);
    let found64 = u64::from(found) | u64::from(status[S_FOUND + 1]) << 32;
    let corrupt = |what: &'static str, reason: String| Error::corrupt(what, reason);
    match status[0] {
        OPEN_FAILED => Error::Tampered,
        HEADER_MISMATCH => match detail {
            D_HEADER_CONTEXT => Error::WrongContext,
            D_HEADER_INCARNATION => Error::StaleIncarnation {
                // Word 6 of the header is the context's incarnation.
                expected: plan.params[9 + 6],
                found,
            },
            D_HEADER_SEQUENCE => Error::Replay {
                expected: u64::from(plan.params[2]) | u64::from(plan.params[3]) << 32,
                found: found64,
            },
            D_HEADER_MALFORMED => Error::MalformedEnvelope(
                "device control block: magic, version, algorithm, kind or length is not \
                 the expected one"
                    .into(),
            ),
            other => corrupt(
                "device control block",
                format!("header does not match (detail {other})"),
            ),
        },
        NO_KEY => corrupt(
            "device control block",
            format!("sealed under epoch {found}, which no key slot holds"),
        ),
        RING_CORRUPT => corrupt(
            "device input ring",
            match detail {
                D_RING_POSITIONS => {
                    "its header does not hold the read and write positions the host wrote"
                }
                D_RING_ENTRY => {
                    "an entry runs past the end of the ring or of the round, or into the \
                     entry the host placed after it"
                }
                D_RING_WRAP => "a wrap word stands where the round's entries do not wrap",
                D_RING_END => {
                    "the entries do not end where the host's entries end, or an entry ends \
                     before the next entry the host placed"
                }
                _ => "the device found a position or entry length out of range",
            }
            .into(),
        ),
        KEY_SLOT_CORRUPT => corrupt(
            "device key slots",
            "a key slot does not hold the epoch or the key the host wrote".into(),
        ),
        ROUND_INVALID => corrupt(
            "device round parameters",
            "the batch, ring capacity, positions or entry positions do not fit the \
             kernel's buffers"
                .into(),
        ),
        other => corrupt(
            "device round status",
            format!("unknown result code {other}"),
        ),
    }
}

/// The host's checks of a round the device reports as done.
fn check_round(
    plan: &RoundPlan,
    ring: &mut InputRing,
    status: &[u32],
    output: &[u32],
    header: &[u32],
) -> Result<RoundReport> {
    use layout::*;
    let corrupt = |what: &'static str, reason: String| crate::Error::corrupt(what, reason);
    if status[5] != 1 || status[4] > 1 {
        return Err(corrupt(
            "device round status",
            format!(
                "a round reported done with re-sealed = {} and terminated = {}",
                status[5], status[4]
            ),
        ));
    }
    let reserved = plan.params.get(9..9 + HEADER_WORDS);
    if plan.params.first() == Some(&1) && header.get(..HEADER_WORDS) != reserved {
        return Err(corrupt(
            "device control block",
            "re-sealed under a header other than the one the host reserved (nonce, epoch \
             or sequence)"
                .into(),
        ));
    }
    let terminate_seen = status[4] == 1;
    let processed = status[1] as usize;
    let expected = if terminate_seen { 0 } else { plan.messages };
    if processed != expected {
        return Err(corrupt(
            "device input ring",
            format!("the device took {processed} messages, the host expected {expected}"),
        ));
    }
    // Every message's output status must be the one the host's own route decision
    // gives: a route bitmap changed in device memory shows here, before anything is
    // delivered or reported as a violation.
    let want = match (&plan.peer, plan.route_permitted) {
        (None, _) => PROCESSED,
        (Some(_), None | Some(true)) => FORWARDED,
        (Some(_), Some(false)) => REFUSED,
    };
    let mut report = RoundReport {
        terminate_seen,
        peer: plan.peer.clone(),
        ..RoundReport::default()
    };
    for m in 0..processed {
        let (sum, st) = (output[2 * m], output[2 * m + 1]);
        if st != want {
            return Err(match (want, st) {
                (FORWARDED, REFUSED) => corrupt(
                    "device route bitmap",
                    "the device refused a send the route table permits".into(),
                ),
                (REFUSED, FORWARDED) => corrupt(
                    "device route bitmap",
                    "the device forwarded a send the route table denies".into(),
                ),
                _ => corrupt(
                    "device round output",
                    format!("message {m} has status {st}, the host expected {want}"),
                ),
            });
        }
        report.checksums.push(sum);
        if st == FORWARDED {
            report.forwarded.push(sum);
        }
    }
    let refused = if want == REFUSED { processed } else { 0 };
    if status[2] as usize != report.forwarded.len() || status[3] as usize != refused {
        return Err(corrupt(
            "device round status",
            format!(
                "the device counted {} forwarded and {} refused sends, its outputs say {} and {refused}",
                status[2],
                status[3],
                report.forwarded.len()
            ),
        ));
    }
    ring.consumed(processed, status[S_RING_READ])?;
    report.refused = refused as u64;
    report.backlog = ring.pending();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::Error;
    use crate::backend::device::layout::*;

    fn msg(len: usize) -> crate::k2k::Message {
        crate::k2k::Message {
            source: crate::k2k::Endpoint::Host,
            destination: KernelId::new("gpu").expect("valid id"),
            topic: "t".into(),
            payload: vec![7; len],
            sequence: 0,
            timestamp: crate::k2k::HlcTimestamp::default(),
        }
    }

    /// A round of `n` 4-byte messages at sequence 5, with `peer` (and its route
    /// decision), as plan_round leaves it; and the ring holding them.
    fn round(n: usize, peer: Option<&str>, permitted: Option<bool>) -> (RoundPlan, InputRing) {
        let mut ring = InputRing::new(64);
        let mut staged: VecDeque<_> = (0..n).map(|_| msg(4)).collect();
        ring.push(&mut staged, n).expect("push");
        let mut params = vec![0; PARAM_WORDS];
        params[2] = 5;
        params[9 + 6] = 3;
        let plan = RoundPlan {
            params,
            key_slots: zeroize::Zeroizing::new(Vec::new()),
            ring_writes: Vec::new(),
            ring_grown: false,
            routes: None,
            peer: peer.map(|p| KernelId::new(p).expect("valid id")),
            route_permitted: permitted,
            messages: n,
        };
        (plan, ring)
    }

    /// What an honest device reports for `plan`: status and outputs.
    fn honest(plan: &RoundPlan, ring: &InputRing, st: u32) -> (Vec<u32>, Vec<u32>) {
        let n = plan.messages as u32;
        let mut status = vec![0; STATUS_WORDS];
        status[1] = n;
        status[2] = if st == FORWARDED { n } else { 0 };
        status[3] = if st == REFUSED { n } else { 0 };
        status[5] = 1;
        status[S_RING_READ] = ring.end_after(plan.messages) as u32;
        let output = (0..n).flat_map(|i| [i, st]).collect();
        (status, output)
    }

    #[test]
    fn an_honest_round_is_read() {
        for (peer, permitted, st, refused) in [
            (None, None, PROCESSED, 0),
            (Some("p"), None, FORWARDED, 0),
            (Some("p"), Some(true), FORWARDED, 0),
            (Some("p"), Some(false), REFUSED, 3),
        ] {
            let (plan, mut ring) = round(3, peer, permitted);
            let (status, output) = honest(&plan, &ring, st);
            let (outcome, report) = read_round(&plan, &mut ring, &status, &output, &[]);
            let report = report.expect("honest round");
            assert!(outcome.resealed);
            assert_eq!(report.checksums, [0, 1, 2]);
            assert_eq!(report.refused, refused);
            assert_eq!(ring.pending(), 0);
        }
    }

    #[test]
    fn route_decisions_the_route_table_contradicts_are_a_corrupt_bitmap() {
        for (permitted, device_says, reason) in [
            (true, REFUSED, "refused a send the route table permits"),
            (false, FORWARDED, "forwarded a send the route table denies"),
        ] {
            let (plan, mut ring) = round(2, Some("p"), Some(permitted));
            let (status, mut output) = honest(&plan, &ring, device_says);
            output[1] = device_says;
            let (outcome, report) = read_round(&plan, &mut ring, &status, &output, &[]);
            // The device re-sealed the block: the gate must move its sequence on.
            assert!(outcome.resealed);
            match report {
                Err(Error::Corrupt {
                    what, reason: r, ..
                }) => {
                    assert_eq!(what, "device route bitmap");
                    assert!(r.contains(reason), "{r}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_block_sealed_under_another_header_than_the_reserved_one_is_refused() {
        let (mut plan, mut ring) = round(1, None, None);
        plan.params[0] = 1;
        let reserved: Vec<u32> = (0..HEADER_WORDS as u32).map(|w| 0x100 + w).collect();
        plan.params[9..9 + HEADER_WORDS].copy_from_slice(&reserved);
        let (status, output) = honest(&plan, &ring, PROCESSED);
        let bytes = |words: &[u32]| -> Vec<u8> {
            let mut b: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            // The rest of a sealed block: ciphertext and tag.
            b.resize(196, 0xcc);
            b
        };
        let mut other_nonce = reserved.clone();
        other_nonce[10] ^= 1;
        let cases = [
            (bytes(&reserved), true),
            (bytes(&other_nonce), false),
            (Vec::new(), false),
        ];
        for (block, ok) in &cases {
            let mut r = InputRing::new(64);
            let mut staged: VecDeque<_> = [msg(4)].into();
            r.push(&mut staged, 1).expect("push");
            let (outcome, report) = read_round(&plan, &mut r, &status, &output, block);
            assert_eq!(report.is_ok(), *ok, "{block:?}: {report:?}");
            // The block goes to the gate in any case (it opens it and keeps it).
            assert_eq!(outcome.control_block.is_some(), !block.is_empty());
        }
        let block = bytes(&other_nonce);
        let (_, report) = read_round(&plan, &mut ring, &status, &output, &block);
        assert!(
            matches!(
                report,
                Err(Error::Corrupt {
                    what: "device control block",
                    ..
                })
            ),
            "{report:?}"
        );
    }

    #[test]
    fn status_words_out_of_range_are_refused_without_panicking() {
        type Lie = fn(&mut Vec<u32>, &mut Vec<u32>);
        let lies: [(&str, Lie); 7] = [
            ("refusals past the batch", |s, _| s[3] = u32::MAX),
            ("forwards nobody made", |s, _| s[2] = 2),
            ("more messages than the batch", |s, _| s[1] = 1000),
            ("a read position out of step", |s, _| s[S_RING_READ] = 63),
            ("an output status of nothing", |_, o| o[1] = 77),
            ("done without re-sealing", |s, _| s[5] = 0),
            ("a termination flag of 2", |s, _| s[4] = 2),
        ];
        for (what, lie) in lies {
            let (plan, mut ring) = round(2, None, None);
            let (mut status, mut output) = honest(&plan, &ring, PROCESSED);
            lie(&mut status, &mut output);
            let (_, report) = read_round(&plan, &mut ring, &status, &output, &[]);
            assert!(
                matches!(report, Err(Error::Corrupt { .. })),
                "{what}: {report:?}"
            );
        }
        // Short read-backs.
        let (plan, mut ring) = round(2, None, None);
        assert!(
            read_round(&plan, &mut ring, &[0; 3], &[0; 4], &[])
                .1
                .is_err()
        );
        assert!(
            read_round(&plan, &mut ring, &[0; STATUS_WORDS], &[0; 3], &[])
                .1
                .is_err()
        );
    }

    #[test]
    fn device_refusals_become_the_host_s_errors() {
        let (plan, ring) = round(1, None, None);
        let refused = |code: u32, detail: u32, found: [u32; 2]| {
            let mut status = vec![0; STATUS_WORDS];
            status[0] = code;
            // A lying "re-sealed" word does not make the gate move on.
            status[5] = 1;
            status[S_DETAIL] = detail;
            status[S_FOUND] = found[0];
            status[S_FOUND + 1] = found[1];
            let mut ring = InputRing::new(64);
            let (outcome, r) = read_round(&plan, &mut ring, &status, &[0, 0], &[]);
            assert!(!outcome.resealed);
            r.expect_err("refused")
        };
        assert!(matches!(refused(OPEN_FAILED, 0, [0; 2]), Error::Tampered));
        assert!(matches!(
            refused(HEADER_MISMATCH, D_HEADER_CONTEXT, [0; 2]),
            Error::WrongContext
        ));
        assert!(matches!(
            refused(HEADER_MISMATCH, D_HEADER_INCARNATION, [2, 0]),
            Error::StaleIncarnation {
                expected: 3,
                found: 2
            }
        ));
        assert!(matches!(
            refused(HEADER_MISMATCH, D_HEADER_SEQUENCE, [4, 1]),
            Error::Replay {
                expected: 5,
                found: 0x1_0000_0004
            }
        ));
        assert!(matches!(
            refused(HEADER_MISMATCH, D_HEADER_MALFORMED, [0; 2]),
            Error::MalformedEnvelope(_)
        ));
        for (code, detail, what) in [
            (NO_KEY, 0, "device control block"),
            (RING_CORRUPT, D_RING_ENTRY, "device input ring"),
            (KEY_SLOT_CORRUPT, 0, "device key slots"),
            (ROUND_INVALID, 0, "device round parameters"),
            (99, 0, "device round status"),
        ] {
            match refused(code, detail, [0; 2]) {
                Error::Corrupt { what: w, .. } => assert_eq!(w, what, "code {code}"),
                other => panic!("code {code}: {other:?}"),
            }
        }
        assert_eq!(ring.pending(), 1, "nothing consumed");
    }
}
