//! Verifying a log with the public key alone.

use std::fs;
use std::path::Path;

use ed25519_dalek::{Signature, VerifyingKey};

use super::AuditPublicKey;
use super::format::{
    AuditRecord, Checkpoint, Watermark, ZERO_HASH, hex, leaf_hash, merkle_root, sha256_hex,
    split_signed,
};
use super::writer::{checkpoint_path, list_segments, segment_path, watermark_path};
use crate::error::{Error, Result};

/// A final line cut short by a crash: reported, not treated as tampering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub segment: u64,
    /// Bytes of the incomplete line.
    pub bytes: u64,
}

/// What [`verify`] checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments present and checked.
    pub segments: u64,
    /// Of those, closed with a valid signed checkpoint.
    pub sealed_segments: u64,
    /// Records checked.
    pub records: u64,
    /// Sequence of the first record present.
    pub first_seq: Option<u64>,
    /// Sequence of the last record present.
    pub last_seq: Option<u64>,
    /// Records in the open (not yet signed) last segment: chained, but a signature
    /// covers them only once the segment is sealed.
    pub unsealed_records: u64,
    /// Segments up to this one were deleted by retention (signed watermark).
    pub deleted_through_segment: Option<u64>,
    /// A torn final line left by a crash, if any.
    pub torn_tail: Option<TornTail>,
}

fn bad(segment: u64, record: Option<u64>, reason: impl Into<String>) -> Error {
    Error::AuditIntegrity {
        segment,
        record,
        reason: reason.into(),
    }
}

fn check_signed(bytes: &[u8], key: &VerifyingKey, segment: u64, what: &str) -> Result<Vec<u8>> {
    let (body, sig) = split_signed(bytes)
        .ok_or_else(|| bad(segment, None, format!("{what} is not a signed file")))?;
    key.verify_strict(body, &Signature::from_bytes(&sig))
        .map_err(|_| {
            bad(
                segment,
                None,
                format!("{what} signature does not verify with the given public key"),
            )
        })?;
    Ok(body.to_vec())
}

/// Verifies the log in `dir` with `public_key`: every record's chain link and sequence,
/// every closed segment's signed checkpoint (Merkle root, counts, chain head, link to
/// the previous checkpoint), the retention watermark, and that no segment is missing
/// except below the watermark. Returns [`Error::AuditIntegrity`] naming the first bad
/// segment and record; a torn final line is reported in the result, not as an error.
pub fn verify(dir: impl AsRef<Path>, public_key: &AuditPublicKey) -> Result<VerifyReport> {
    let dir = dir.as_ref();
    let key = VerifyingKey::from_bytes(&public_key.0)
        .map_err(|_| Error::InvalidConfig("not a valid Ed25519 public key".into()))?;
    let mut report = VerifyReport::default();
    let (mut next_seq, mut prev_hash, mut prev_cp) =
        (0u64, ZERO_HASH.to_owned(), ZERO_HASH.to_owned());
    let mut first_segment = 1;
    let wm = watermark_path(dir);
    if wm.exists() {
        let body = check_signed(&fs::read(&wm)?, &key, 0, "retention watermark")?;
        let w: Watermark = serde_json::from_slice(&body)
            .map_err(|e| bad(0, None, format!("retention watermark unreadable: {e}")))?;
        next_seq = w.next_seq;
        prev_hash = w.last_hash;
        prev_cp = w.last_checkpoint_hash;
        first_segment = w.deleted_through_segment + 1;
        report.deleted_through_segment = Some(w.deleted_through_segment);
    }
    let segments: Vec<u64> = list_segments(dir)?
        .into_iter()
        .filter(|&n| n >= first_segment)
        .collect();
    let last = segments.last().copied();
    for (expected_segment, &n) in (first_segment..).zip(segments.iter()) {
        if n != expected_segment {
            return Err(bad(
                expected_segment,
                None,
                format!("segment {expected_segment} is missing"),
            ));
        }
        report.segments += 1;
        let bytes = fs::read(segment_path(dir, n))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let tail = (bytes.len() - complete) as u64;
        let first_seq = next_seq;
        let mut leaves = Vec::new();
        for line in bytes[..complete].split(|&b| b == b'\n') {
            if line.is_empty() {
                // Only the piece after the final newline is empty.
                continue;
            }
            let rec: AuditRecord = serde_json::from_slice(line).map_err(|e| {
                bad(
                    n,
                    Some(next_seq),
                    format!("record {next_seq} is not a valid record: {e}"),
                )
            })?;
            if rec.seq != next_seq {
                return Err(bad(
                    n,
                    Some(next_seq),
                    format!(
                        "expected record {next_seq}, found record {} (deleted, reordered or duplicated records)",
                        rec.seq
                    ),
                ));
            }
            if rec.prev != prev_hash {
                let culprit = next_seq.saturating_sub(1);
                return Err(bad(
                    n,
                    Some(culprit),
                    format!(
                        "record {next_seq} does not link to record {culprit}: record {culprit} was modified (or the link of record {next_seq})"
                    ),
                ));
            }
            prev_hash = sha256_hex(line);
            leaves.push(leaf_hash(line));
            report.first_seq.get_or_insert(rec.seq);
            report.last_seq = Some(rec.seq);
            next_seq += 1;
            report.records += 1;
        }
        let cp_path = checkpoint_path(dir, n);
        if cp_path.exists() {
            let body = check_signed(&fs::read(&cp_path)?, &key, n, "checkpoint")?;
            let c: Checkpoint = serde_json::from_slice(&body)
                .map_err(|e| bad(n, None, format!("checkpoint unreadable: {e}")))?;
            let problems = [
                (c.segment != n, "names another segment".to_owned()),
                (
                    c.first_seq != first_seq || c.count != leaves.len() as u64,
                    format!(
                        "covers records {}..{}, the segment holds {}..{}",
                        c.first_seq,
                        c.first_seq + c.count,
                        first_seq,
                        next_seq
                    ),
                ),
                (
                    c.merkle_root != hex(&merkle_root(&leaves)),
                    "Merkle root does not match the records".to_owned(),
                ),
                (
                    c.last_hash != prev_hash,
                    "chain head does not match the last record".to_owned(),
                ),
                (
                    c.prev_checkpoint != prev_cp,
                    "does not link to the previous checkpoint".to_owned(),
                ),
                (
                    c.torn_tail_bytes != tail,
                    format!(
                        "records a {}-byte torn tail, the segment has {tail}",
                        c.torn_tail_bytes
                    ),
                ),
            ];
            if let Some((_, why)) = problems.iter().find(|(p, _)| *p) {
                return Err(bad(n, None, format!("checkpoint of segment {n} {why}")));
            }
            prev_cp = sha256_hex(&body);
            report.sealed_segments += 1;
            if tail > 0 {
                report.torn_tail = Some(TornTail {
                    segment: n,
                    bytes: tail,
                });
            }
        } else if Some(n) != last {
            return Err(bad(
                n,
                None,
                format!("segment {n} is closed but has no checkpoint"),
            ));
        } else {
            report.unsealed_records = leaves.len() as u64;
            if tail > 0 {
                report.torn_tail = Some(TornTail {
                    segment: n,
                    bytes: tail,
                });
            }
        }
    }
    Ok(report)
}
