//! Verifying a log with the public key alone.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use ed25519_dalek::{Signature, VerifyingKey};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::AuditPublicKey;
use super::files::{
    checkpoint_path, head_path, list_segments, log_files_present, segment_path, watermark_path,
};
use super::format::{
    Checkpoint, HeadState, Watermark, ZERO_HASH, hex, hex32, merkle_root, record_leaf, set_hex,
    sha256_hex, split_signed,
};
use super::head::{Anchor, SignedHead};
use super::record_links::{RecordLinks, framed_links};
use super::report::{LogStatus, StaleHead, TornTail, Truncation, VerifyReport};
use crate::error::{Error, Result};

/// Segments with at least this many records have their lines hashed in parallel.
const PARALLEL_MIN_LINES: usize = 1024;

/// The (start, end) of every non-empty line of `bytes` (which ends with a newline, or
/// is empty). An empty line holds no record (as when the writer resumes a log).
fn line_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', bytes) {
        if end > start {
            spans.push((start, end));
        }
        start = end + 1;
    }
    spans
}

/// What `verify` needs of one line that depends on that line alone, worked out for all
/// lines of a segment at once (on the rayon pool for large segments) so that only
/// comparisons stay in the ordered pass.
struct LineFacts {
    /// The line's SHA-256: its chain hash.
    hash: [u8; 32],
    /// Its Merkle leaf under the checkpoint's format version (signed segments only).
    leaf: Option<[u8; 32]>,
    /// For a line of a signed segment in exactly the writer's shape
    /// ([`framed_links`]): its sequence number and the hash its `prev` names, raw.
    framed: Option<(u64, [u8; 32])>,
}

/// The 32 bytes that `framed_links`' 64 lower-case hex digits spell, without a branch
/// per digit (the `hex` crate's checked decoder cost a quarter of verify's time here).
fn unhex32(digits: &[u8; 64]) -> [u8; 32] {
    // '0'..='9' is 0x30..=0x39 and 'a'..='f' 0x61..=0x66: the low nibble, plus 9 for
    // the letters (bit 6 set).
    let nibble = |d: u8| (d & 0x0f) + 9 * (d >> 6);
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *o = (nibble(pair[0]) << 4) | nibble(pair[1]);
    }
    out
}

/// [`LineFacts`] of every line: hashes, leaves (when `leaf_version` is the signed
/// segment's checkpoint format) and framed links, in line order.
fn line_facts(bytes: &[u8], spans: &[(usize, usize)], leaf_version: Option<u32>) -> Vec<LineFacts> {
    let facts = |&(s, e): &(usize, usize)| -> LineFacts {
        let line = &bytes[s..e];
        let hash: [u8; 32] = Sha256::digest(line).into();
        let leaf = leaf_version.and_then(|v| record_leaf(v, line, &hash));
        let framed = leaf_version
            .and_then(|_| framed_links(line))
            .map(|(seq, prev)| (seq, unhex32(prev)));
        LineFacts { hash, leaf, framed }
    };
    if spans.len() >= PARALLEL_MIN_LINES {
        spans.par_iter().map(facts).collect()
    } else {
        spans.iter().map(facts).collect()
    }
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

/// Reads a file that may be absent.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Verifies the log in `dir` with `public_key`: every record's chain link and sequence,
/// every closed segment's signed checkpoint (Merkle root, counts, chain head, link to
/// the previous checkpoint), the retention watermark, that no segment is missing
/// except below the watermark, and the signed log head: that the log still reaches it.
///
/// Returns the report for an intact log, [`LogStatus::Closed`] or [`LogStatus::Open`]
/// (a torn final line from a crash is reported in it, not as an error). Fails with
/// [`Error::AuditIntegrity`] naming the first bad segment and record when something
/// was changed; with [`Error::AuditTruncated`] (carrying the report) when the end was
/// cut relative to the signed head; with [`Error::AuditLogMissing`] when there is no
/// log at all (never "verified, 0 records").
///
/// Records written after the last signed head can be cut without a trace here; and a
/// directory rewound as a whole to an older copy is consistent. Both are caught only
/// with an anchor kept elsewhere: [`verify_with_anchor`].
pub fn verify(dir: impl AsRef<Path>, public_key: &AuditPublicKey) -> Result<VerifyReport> {
    verify_with_anchor(dir, public_key, &Anchor::default())
}

/// [`verify`], and also that the log reaches `anchor` (a head shipped off the machine
/// earlier, see [`SignedHead::anchor`]): if it holds fewer records than the anchor, or
/// no record with the anchor's hash, it was rolled back and is reported as truncated
/// ([`Error::AuditTruncated`] with `behind_anchor`). A log that holds record
/// `records - 1` with a different hash contradicts the anchor:
/// [`Error::AuditIntegrity`]. An anchor older than retention's watermark is satisfied
/// by the signed watermark.
pub fn verify_with_anchor(
    dir: impl AsRef<Path>,
    public_key: &AuditPublicKey,
    anchor: &Anchor,
) -> Result<VerifyReport> {
    verify_with_progress(dir, public_key, anchor, &mut |_, _| {})
}

/// [`verify_with_anchor`], calling `progress(verified, total)` with the number of
/// segments checked so far and the number present, before each segment and once at the
/// end (for a progress line on long logs). A log sealed while it is read is walked
/// again, so the count can start over.
pub fn verify_with_progress(
    dir: impl AsRef<Path>,
    public_key: &AuditPublicKey,
    anchor: &Anchor,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport> {
    let dir = dir.as_ref();
    // A live log may be sealed while it is read: the segment list and the head would
    // then describe different moments (a newer checkpoint than the head read, or a head
    // newer than the records read) and look truncated. Every seal rewrites the head with
    // a new head_seq, so an unchanged head file before and after the walk means no
    // seal happened in between; otherwise read again.
    for attempt in 1..=LIVE_ATTEMPTS {
        let before = read_optional(&head_path(dir))?;
        let names_before = file_names(dir);
        let result = examine(dir, public_key, anchor, before.as_deref(), progress);
        // A seal rewrites the head; it also adds a checkpoint and a segment, which a
        // walk that began just after the head was written may see half of. Either
        // change means the walk saw two moments: read again.
        if read_optional(&head_path(dir))? != before || file_names(dir) != names_before {
            continue;
        }
        // An integrity failure of a log that is being written is read again too: a
        // real one is the same every time (and reported after the last attempt), a
        // walk that met a seal half-way is not.
        if matches!(result, Err(Error::AuditIntegrity { .. })) && attempt < LIVE_ATTEMPTS {
            std::thread::sleep(std::time::Duration::from_millis(2));
            continue;
        }
        let report = result?;
        return match report.status {
            LogStatus::Truncated(_) => Err(Error::AuditTruncated {
                report: Box::new(report),
            }),
            _ => Ok(report),
        };
    }
    Err(Error::Io(std::io::Error::new(
        ErrorKind::Interrupted,
        format!(
            "the audit log in {} was sealed {LIVE_ATTEMPTS} times while being verified; verify a copy, or retry",
            dir.display()
        ),
    )))
}

/// The names of the files in `dir`, sorted (empty when it cannot be listed): appends
/// change no name, seals and retention do.
fn file_names(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// How many times [`verify_with_anchor`] reads a log that keeps being sealed.
const LIVE_ATTEMPTS: usize = 5;

/// The chain state after a prefix of the log.
struct Point {
    /// Records before it: the next sequence number.
    records: u64,
    /// Hash of record `records - 1`.
    hash: String,
}

/// Verifies the log in `dir` against the head file's bytes `head_bytes`, read first.
fn examine(
    dir: &Path,
    public_key: &AuditPublicKey,
    anchor: &Anchor,
    head_bytes: Option<&[u8]>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport> {
    let key = VerifyingKey::from_bytes(&public_key.0)
        .map_err(|_| Error::InvalidConfig("not a valid Ed25519 public key".into()))?;
    if !log_files_present(dir)? && anchor.is_empty() {
        return Err(Error::AuditLogMissing {
            directory: dir.to_path_buf(),
        });
    }
    let head = match head_bytes {
        Some(bytes) => {
            let h = SignedHead::from_bytes(bytes)
                .map_err(|e| bad(0, None, format!("log head unreadable: {e}")))?;
            h.verify(public_key)?;
            Some(h.head().clone())
        }
        None => None,
    };
    let mut report = VerifyReport {
        status: LogStatus::Open {
            unanchored_records: 0,
        },
        head: head.clone(),
        segments: 0,
        sealed_segments: 0,
        records: 0,
        first_seq: None,
        last_seq: None,
        unsealed_records: 0,
        deleted_through_segment: None,
        torn_tail: None,
    };
    let (mut next_seq, mut prev_hash, mut prev_cp) =
        (0u64, ZERO_HASH.to_owned(), ZERO_HASH.to_owned());
    let mut first_segment = 1;
    // The last sealed segment (or the last one retention deleted) and where the chain
    // stood after it.
    let mut last_sealed = 0u64;
    let mut watermark_point = None;
    if let Some(bytes) = read_optional(&watermark_path(dir))? {
        let body = check_signed(&bytes, &key, 0, "retention watermark")?;
        let w: Watermark = serde_json::from_slice(&body)
            .map_err(|e| bad(0, None, format!("retention watermark unreadable: {e}")))?;
        next_seq = w.next_seq;
        prev_hash = w.last_hash;
        prev_cp = w.last_checkpoint_hash;
        first_segment = w.deleted_through_segment + 1;
        last_sealed = w.deleted_through_segment;
        report.deleted_through_segment = Some(w.deleted_through_segment);
        watermark_point = Some(Point {
            records: next_seq,
            hash: prev_hash.clone(),
        });
    }
    // Hashes the head and the anchor name, looked up as the records go by.
    let head_target = head.as_ref().and_then(|h| h.records.checked_sub(1));
    let anchor_target = anchor.records.and_then(|n| n.checked_sub(1));
    let anchor_hash = anchor.last_hash.map(|h| hex(&h));
    let (mut head_found, mut anchor_found, mut anchor_hash_seen) = (None, None, false);
    let segments: Vec<u64> = list_segments(dir)?
        .into_iter()
        .filter(|&n| n >= first_segment)
        .collect();
    let last = segments.last().copied();
    let total = segments.len() as u64;
    for (expected_segment, &n) in (first_segment..).zip(segments.iter()) {
        progress(report.segments, total);
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
        // The checkpoint first: its format version says what the Merkle leaves are,
        // and a signed segment's lines need only their frame read (`framed_links`).
        let cp_path = checkpoint_path(dir, n);
        let checkpoint = match read_optional(&cp_path)? {
            Some(cp_bytes) => {
                let body = check_signed(&cp_bytes, &key, n, "checkpoint")?;
                let c: Checkpoint = serde_json::from_slice(&body)
                    .map_err(|e| bad(n, None, format!("checkpoint unreadable: {e}")))?;
                if record_leaf(c.version, b"", &[0; 32]).is_none() {
                    return Err(bad(
                        n,
                        None,
                        format!(
                            "checkpoint of segment {n} has format version {}, which this \
                             verifier does not know",
                            c.version
                        ),
                    ));
                }
                Some((c, body))
            }
            None => None,
        };
        let leaf_version = checkpoint.as_ref().map(|(c, _)| c.version);
        let mut leaves = Vec::new();
        let mut in_segment = 0u64;
        // The previous record's hash within this segment, kept raw: `prev_hash` (hex)
        // is brought up to date once per segment rather than once per record.
        let mut last_raw: Option<[u8; 32]> = None;
        // Each line's hash, leaf and links first, on all cores (hashing is most of
        // verify's work and depends only on the line); the checks then run in order.
        let lines = line_spans(&bytes[..complete]);
        let facts = line_facts(&bytes, &lines, leaf_version);
        for (&(start, end), facts) in lines.iter().zip(facts) {
            let hash = facts.hash;
            // (sequence number, whether `prev` links to the record before)
            let (seq, linked) = match facts.framed {
                Some((seq, prev)) => (
                    seq,
                    match &last_raw {
                        Some(raw) => prev == *raw,
                        None => hex32(&prev).as_slice() == prev_hash.as_bytes(),
                    },
                ),
                None => {
                    if let Some(raw) = last_raw.take() {
                        set_hex(&mut prev_hash, &raw);
                    }
                    let line = &bytes[start..end];
                    let rec: RecordLinks<'_> = serde_json::from_slice(line).map_err(|e| {
                        bad(
                            n,
                            Some(next_seq),
                            format!("record {next_seq} is not a valid record: {e}"),
                        )
                    })?;
                    (rec.seq, rec.prev == prev_hash)
                }
            };
            if seq != next_seq {
                return Err(bad(
                    n,
                    Some(next_seq),
                    format!(
                        "expected record {next_seq}, found record {seq} (deleted, reordered or duplicated records)",
                    ),
                ));
            }
            if !linked {
                let culprit = next_seq.saturating_sub(1);
                return Err(bad(
                    n,
                    Some(culprit),
                    format!(
                        "record {next_seq} does not link to record {culprit}: record {culprit} was modified (or the link of record {next_seq})"
                    ),
                ));
            }
            last_raw = Some(hash);
            if Some(seq) == head_target {
                head_found = Some(hex(&hash));
            }
            if Some(seq) == anchor_target {
                anchor_found = Some(hex(&hash));
            }
            if anchor.last_hash == Some(hash) {
                anchor_hash_seen = true;
            }
            // The open segment has no checkpoint to compare a root with.
            if let Some(leaf) = facts.leaf {
                leaves.push(leaf);
            }
            report.first_seq.get_or_insert(seq);
            report.last_seq = Some(seq);
            next_seq += 1;
            in_segment += 1;
            report.records += 1;
        }
        if let Some(raw) = last_raw {
            set_hex(&mut prev_hash, &raw);
        }
        if let Some((c, body)) = checkpoint {
            let problems = [
                (c.segment != n, "names another segment".to_owned()),
                (
                    c.first_seq != first_seq || c.count != in_segment,
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
            last_sealed = n;
            report.sealed_segments += 1;
        } else if Some(n) != last {
            return Err(bad(
                n,
                None,
                format!("segment {n} is closed but has no checkpoint"),
            ));
        } else {
            report.unsealed_records = in_segment;
        }
        if tail > 0 {
            report.torn_tail = Some(TornTail {
                segment: n,
                bytes: tail,
            });
        }
    }
    progress(report.segments, total);
    let end = Point {
        records: next_seq,
        hash: prev_hash,
    };
    let present_through = last.unwrap_or(first_segment - 1);
    let mut t = Truncation::default();
    let mut unanchored = end.records;
    match &head {
        None => t.head_missing = true,
        Some(h) => {
            t.head_seq = Some(h.head_seq);
            // Heads are written before the checkpoint they name, and a new segment is
            // started only after a head: a later sealed segment, or any segment after
            // a close, proves that a newer head existed.
            let later = if last_sealed > h.last_segment {
                Some(last_sealed)
            } else if h.state == HeadState::Closed && present_through > h.last_segment {
                Some(present_through)
            } else {
                None
            };
            if let Some(later_segment) = later {
                t.stale_head = Some(StaleHead {
                    head_seq: h.head_seq,
                    covers_through_segment: h.last_segment,
                    later_segment,
                });
            }
            if h.last_segment > present_through {
                t.missing_segments = Some(present_through + 1..=h.last_segment);
            }
            if end.records < h.records {
                t.missing_records = Some(end.records..h.records);
                if h.last_segment > last_sealed && h.last_segment <= present_through {
                    t.missing_checkpoint = Some(h.last_segment);
                }
            } else if t.stale_head.is_none() && t.missing_segments.is_none() {
                check_head_matches(
                    h,
                    &end,
                    head_found.as_deref(),
                    watermark_point.as_ref(),
                    last_sealed,
                    &prev_cp,
                )?;
            }
            unanchored = end.records.saturating_sub(h.records);
        }
    }
    if let Some(n) = anchor.records
        && end.records < n
    {
        t.behind_anchor = true;
        let from = end.records;
        let to = t.missing_records.as_ref().map_or(n, |r| r.end.max(n));
        t.missing_records = Some(from..to);
    }
    if let Some(want) = &anchor_hash
        && !t.behind_anchor
    {
        let at_point = |p: &Point| (p.hash == *want).then_some(p.records);
        match anchor.records {
            Some(0) => {
                if want != ZERO_HASH {
                    return Err(bad(
                        0,
                        None,
                        "the anchor names 0 records but a non-zero hash",
                    ));
                }
            }
            Some(n) => {
                let found = anchor_found.or_else(|| {
                    watermark_point
                        .as_ref()
                        .filter(|w| w.records == n)
                        .map(|w| w.hash.clone())
                });
                // None: the record was deleted by retention before the watermark's
                // point; the signed watermark vouches for the count.
                if let Some(found) = found
                    && found != *want
                {
                    return Err(bad(
                        0,
                        Some(n - 1),
                        format!(
                            "record {} does not match the external anchor: the log was rewritten, or the anchor belongs to another log",
                            n - 1
                        ),
                    ));
                }
            }
            None => {
                let seen = anchor_hash_seen
                    || want == ZERO_HASH
                    || watermark_point.as_ref().and_then(at_point).is_some();
                if !seen {
                    t.behind_anchor = true;
                }
            }
        }
    }
    report.status = if t.found() {
        LogStatus::Truncated(t)
    } else if head.as_ref().is_some_and(|h| {
        h.state == HeadState::Closed && unanchored == 0 && h.last_segment == last_sealed
    }) {
        LogStatus::Closed
    } else {
        LogStatus::Open {
            unanchored_records: unanchored,
        }
    };
    Ok(report)
}

/// The log reaches the head's record count: check that it is the same log the head
/// signed (record `records - 1`'s hash, the last checkpoint's hash), and that no record
/// follows the head in a segment the head says is sealed.
fn check_head_matches(
    h: &super::format::Head,
    end: &Point,
    head_found: Option<&str>,
    watermark: Option<&Point>,
    last_sealed: u64,
    last_checkpoint: &str,
) -> Result<()> {
    let contradiction = |segment: u64, record: Option<u64>, what: &str| {
        bad(
            segment,
            record,
            format!(
                "{what} does not match signed log head #{}: the log was rewritten, or the head belongs to another log",
                h.head_seq
            ),
        )
    };
    if let Some(r) = h.records.checked_sub(1) {
        let found = head_found.map(str::to_owned).or_else(|| {
            watermark
                .filter(|w| w.records == h.records)
                .map(|w| w.hash.clone())
        });
        // None: deleted by retention before the watermark's point.
        if found.is_some_and(|f| f != h.last_hash) {
            return Err(contradiction(
                h.last_segment,
                Some(r),
                &format!("record {r}"),
            ));
        }
    }
    if h.last_segment == last_sealed {
        if h.last_checkpoint != last_checkpoint {
            return Err(contradiction(
                h.last_segment,
                None,
                &format!("the checkpoint of segment {}", h.last_segment),
            ));
        }
    } else if end.records != h.records {
        // The head names a last segment whose checkpoint was never written (a crash
        // between the two writes of a seal): nothing may follow the head in it.
        return Err(bad(
            h.last_segment,
            Some(h.records),
            format!(
                "segment {} holds records after the point where signed log head #{} sealed it",
                h.last_segment, h.head_seq
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::files::read_signed;
    use super::super::format::{leaf_hash, signed_file};
    use super::super::{AuditEvent, AuditLog, AuditLogConfig, AuditSigningKey, Head};
    use super::*;

    #[test]
    fn unhex32_reads_every_lower_case_digit_as_the_hex_crate_does() {
        // Every byte value in every position (the encoder is the `hex` crate's).
        for start in 0..=255u8 {
            let bytes: [u8; 32] = std::array::from_fn(|i| start.wrapping_add(i as u8 * 8));
            let digits: [u8; 64] = hex(&bytes).into_bytes().try_into().unwrap();
            assert_eq!(unhex32(&digits), bytes);
            assert_eq!(hex32(&unhex32(&digits)), digits);
        }
    }

    /// Rewrites every checkpoint of the closed log in `dir` as format `version` with
    /// the Merkle root `root(lines)` gives, re-chained and re-signed, and signs a head
    /// over the result: the log an earlier (or a later) writer would have left.
    fn rewrite_checkpoints(
        dir: &Path,
        key: &AuditSigningKey,
        version: u32,
        root: impl Fn(&[&[u8]]) -> [u8; 32],
    ) {
        let mut prev_cp = ZERO_HASH.to_owned();
        for n in list_segments(dir).unwrap() {
            let (mut c, _): (Checkpoint, _) =
                read_signed(&checkpoint_path(dir, n), "checkpoint").unwrap();
            let bytes = fs::read(segment_path(dir, n)).unwrap();
            let lines: Vec<&[u8]> = bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            c.version = version;
            c.merkle_root = hex(&root(&lines));
            c.prev_checkpoint = prev_cp;
            let (file, h) = signed_file(&c, |m| key.sign(m)).unwrap();
            fs::write(checkpoint_path(dir, n), file).unwrap();
            prev_cp = h;
        }
        let old = SignedHead::from_bytes(&fs::read(head_path(dir)).unwrap()).unwrap();
        let head = SignedHead::sign(
            Head {
                last_checkpoint: prev_cp,
                ..old.head().clone()
            },
            key,
        )
        .unwrap();
        fs::write(head_path(dir), head.to_bytes()).unwrap();
    }

    fn closed_log(dir: &Path, key: &AuditSigningKey) {
        let log = AuditLog::open(AuditLogConfig {
            signing_key: Some(key.clone()),
            max_segment_bytes: 4096,
            ..AuditLogConfig::in_directory(dir)
        })
        .unwrap();
        for i in 0..100u64 {
            log.append(AuditEvent::new("test").detail("i", i)).unwrap();
        }
        log.close().unwrap();
    }

    /// Logs sealed before checkpoint format 2 (leaves over line bytes) still verify,
    /// and each format's root is checked by its own rule.
    #[test]
    fn checkpoints_of_format_1_verify_and_formats_are_not_mixed_up() {
        let key = AuditSigningKey::from_seed(&[3; 32]);
        let tmp = tempfile::tempdir().unwrap();
        closed_log(tmp.path(), &key);
        let pk = key.public_key();
        let v2 = verify(tmp.path(), &pk).unwrap();
        assert_eq!(v2.status, LogStatus::Closed);
        assert!(v2.sealed_segments > 3, "{v2:?}");

        let lines_root =
            |lines: &[&[u8]]| merkle_root(&lines.iter().map(|l| leaf_hash(l)).collect::<Vec<_>>());
        rewrite_checkpoints(tmp.path(), &key, 1, lines_root);
        let v1 = verify(tmp.path(), &pk).unwrap();
        assert_eq!((v1.status, v1.records), (LogStatus::Closed, v2.records));

        // A format-1 root labelled format 2 (and the other way round) does not verify.
        rewrite_checkpoints(tmp.path(), &key, 2, lines_root);
        let e = verify(tmp.path(), &pk).unwrap_err().to_string();
        assert!(e.contains("Merkle root does not match"), "{e}");
        let hash_root = |lines: &[&[u8]]| {
            let leaves: Vec<_> = lines
                .iter()
                .map(|l| leaf_hash(&Sha256::digest(l)))
                .collect();
            merkle_root(&leaves)
        };
        rewrite_checkpoints(tmp.path(), &key, 1, hash_root);
        let e = verify(tmp.path(), &pk).unwrap_err().to_string();
        assert!(e.contains("Merkle root does not match"), "{e}");

        // A version this verifier does not know is named, not guessed at.
        rewrite_checkpoints(tmp.path(), &key, 3, hash_root);
        let e = verify(tmp.path(), &pk).unwrap_err().to_string();
        assert!(e.contains("format version 3"), "{e}");
        // A writer resumes a format-1 log: the new segments are format 2.
        rewrite_checkpoints(tmp.path(), &key, 1, lines_root);
        let log = AuditLog::open(AuditLogConfig {
            signing_key: Some(key.clone()),
            max_segment_bytes: 4096,
            ..AuditLogConfig::in_directory(tmp.path())
        })
        .unwrap();
        log.append(AuditEvent::new("after")).unwrap();
        log.close().unwrap();
        let mixed = verify(tmp.path(), &pk).unwrap();
        assert_eq!(mixed.status, LogStatus::Closed);
        assert_eq!(mixed.records, v2.records + 2, "audit.open and ours");
    }
}
