//! What [`verify`](super::verify) found: the typed report and the log's end state.

use std::fmt;
use std::ops::{Range, RangeInclusive};

use serde::{Deserialize, Serialize};

/// A final line cut short by a crash: reported, not treated as tampering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TornTail {
    /// The segment.
    pub segment: u64,
    /// Bytes of the incomplete line.
    pub bytes: u64,
}

/// How the log ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogStatus {
    /// Closed cleanly: the last signed head is a close record (`AuditLog::close`), every
    /// segment is sealed and no record follows the head.
    Closed,
    /// Intact but not closed: the log is still being written, or its writer crashed or
    /// was dropped without `close()`. The last `unanchored_records` records come after
    /// the last signed head: the hash chain checks them, but nothing signed says they
    /// must exist, so they could have been cut without a trace.
    Open {
        /// Records after the last signed head.
        unanchored_records: u64,
    },
    /// Records, segments or the head itself are missing relative to the last signed head
    /// or an external anchor. [`verify`](super::verify) returns this as
    /// [`Error::AuditTruncated`](crate::Error::AuditTruncated), never as `Ok`.
    Truncated(Truncation),
}

impl fmt::Display for LogStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogStatus::Closed => f.write_str("closed"),
            LogStatus::Open {
                unanchored_records: n,
            } => write!(
                f,
                "open (not closed), {n} record(s) after the last signed head checked by the hash chain only"
            ),
            LogStatus::Truncated(t) => write!(f, "truncated: {t}"),
        }
    }
}

/// A head on disk that is older than the log it sits in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleHead {
    /// The `head_seq` of the head found.
    pub head_seq: u64,
    /// The last segment it covers.
    pub covers_through_segment: u64,
    /// A later segment that proves a newer head was written: one sealed after it, or
    /// one started after it although it is a close record.
    pub later_segment: u64,
}

/// What is missing from a truncated log, as far as the evidence tells.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    /// The `head_seq` of the signed head measured against, if one was found.
    pub head_seq: Option<u64>,
    /// Sequence numbers of records that a signed head or the anchor proves were written
    /// and that are not in the log; `None` when nothing tells how many.
    pub missing_records: Option<Range<u64>>,
    /// Segment files that a signed head names and that are gone.
    pub missing_segments: Option<RangeInclusive<u64>>,
    /// The checkpoint of the head's last segment is gone, with records of that segment.
    pub missing_checkpoint: Option<u64>,
    /// The signed head (`log.head`) is gone while other log files remain (or the
    /// anchor says there was a log).
    pub head_missing: bool,
    /// The head on disk was replaced by an older signed head.
    pub stale_head: Option<StaleHead>,
    /// The external anchor names records the log does not hold: the directory was
    /// rolled back (or the anchor belongs to another log).
    pub behind_anchor: bool,
}

impl Truncation {
    /// Whether any evidence of truncation was found.
    pub(crate) fn found(&self) -> bool {
        self.missing_records.is_some()
            || self.missing_segments.is_some()
            || self.missing_checkpoint.is_some()
            || self.head_missing
            || self.stale_head.is_some()
            || self.behind_anchor
    }
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(r) = &self.missing_records {
            parts.push(format!(
                "{} record(s) missing (sequence {}..{})",
                r.end - r.start,
                r.start,
                r.end
            ));
        }
        if let Some(s) = &self.missing_segments {
            parts.push(if s.start() == s.end() {
                format!("segment {} missing", s.start())
            } else {
                format!("segments {}..={} missing", s.start(), s.end())
            });
        }
        if let Some(n) = self.missing_checkpoint {
            parts.push(format!("checkpoint of segment {n} missing"));
        }
        if self.head_missing {
            parts.push(
                "the signed log head is missing (how much was cut cannot be told without an external anchor)"
                    .to_owned(),
            );
        }
        if let Some(s) = &self.stale_head {
            parts.push(format!(
                "the log head on disk (#{}, through segment {}) is older than the log: segment {} came after it, so a newer head was removed or replaced",
                s.head_seq, s.covers_through_segment, s.later_segment
            ));
        }
        if self.behind_anchor {
            parts.push(
                "the log does not reach the external anchor (rolled back, or the anchor belongs to another log)"
                    .to_owned(),
            );
        }
        f.write_str(&parts.join("; "))?;
        if let Some(h) = self.head_seq {
            write!(f, " (measured against signed head #{h})")?;
        }
        Ok(())
    }
}

/// What [`verify`](super::verify) checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// How the log ends: closed, open (with how many unanchored records) or truncated.
    pub status: LogStatus,
    /// The signed head found (its signature verified), if any.
    pub head: Option<Head>,
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
    /// Records in the open (not yet sealed) last segment: chained, but a checkpoint
    /// covers them only once the segment is sealed.
    pub unsealed_records: u64,
    /// Segments up to this one were deleted by retention (signed watermark).
    pub deleted_through_segment: Option<u64>,
    /// A torn final line left by a crash, if any.
    pub torn_tail: Option<TornTail>,
}

impl VerifyReport {
    /// The truncation found, if the status is [`LogStatus::Truncated`].
    pub fn truncation(&self) -> Option<&Truncation> {
        match &self.status {
            LogStatus::Truncated(t) => Some(t),
            _ => None,
        }
    }

    /// Records after the last signed head (0 when closed or truncated).
    pub fn unanchored_records(&self) -> u64 {
        match self.status {
            LogStatus::Open { unanchored_records } => unanchored_records,
            _ => 0,
        }
    }
}

/// Whether the writer that signed a [`Head`] had been closed cleanly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadState {
    /// The log was open (running, or dropped without `close()`): records may follow.
    Open,
    /// Written by `AuditLog::close()`: the log ended here. Only a later open of the
    /// same directory, which first writes a new open head, may add records.
    Closed,
}

/// The signed log head (`log.head`): where the log ends, signed whenever a segment is
/// sealed, when the log opens and when it closes. Written before the checkpoint it
/// names, so a checkpoint on disk always has a head that covers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// Format version (1).
    pub version: u32,
    /// Number of this head: 1 for the first head of a directory, then +1 for each.
    pub head_seq: u64,
    /// `closed` when written by a clean close.
    pub state: HeadState,
    /// Records written when the head was signed: sequence numbers `0..records`.
    pub records: u64,
    /// SHA-256 of record `records - 1`'s line bytes, hex (zeros when `records` is 0).
    pub last_hash: String,
    /// The last sealed segment (0: none sealed yet).
    pub last_segment: u64,
    /// SHA-256 of the body line of `last_segment`'s checkpoint, hex (zeros when none).
    /// Every checkpoint names its segment and the previous checkpoint's hash, so this
    /// one hash is a digest of the whole segment list and of every checkpoint.
    pub last_checkpoint: String,
    /// SHA-256 of the previous head's body line, hex (zeros for the first head).
    pub prev_head: String,
    /// When the head was written.
    pub written_at: String,
    /// The Ed25519 public key that signs, hex.
    pub public_key: String,
}
