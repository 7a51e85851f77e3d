//! Reading shipped heads back from a collector's file.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read};

use crate::error::Result;
use crate::security::audit::{Anchor, AuditPublicKey, SignedHead};

/// The signed heads of one log found in a syslog file by [`shipped_heads`].
#[derive(Clone, Debug, Default)]
pub struct ShippedHeads {
    /// The heads whose signature verifies with the key, each once, oldest first
    /// (by record count, then head number).
    pub heads: Vec<SignedHead>,
    /// Lines read.
    pub lines: u64,
    /// Lines that carry something head-shaped that does not parse (damaged, cut by a
    /// message size limit, or not ours). Skipped.
    pub malformed: u64,
    /// Heads of other logs (signed for another public key). Skipped.
    pub other_key: u64,
    /// Heads that name this log's key but whose signature does not verify: forged or
    /// damaged on the way. Skipped, and worth a look.
    pub bad_signature: u64,
    /// The same head seen again (a resend after a reconnect, or two collectors).
    pub duplicates: u64,
    /// Head numbers with more than one verified head: the log was rewound and went on
    /// writing from the older state (a fork of its history).
    pub forks: u64,
}

impl ShippedHeads {
    /// The head that reached furthest: most records (then the highest head number).
    pub fn newest(&self) -> Option<&SignedHead> {
        self.heads.last()
    }

    /// The newest head's anchor, for [`verify_with_anchor`](crate::security::audit::verify_with_anchor).
    pub fn anchor(&self) -> Option<Anchor> {
        self.newest().map(SignedHead::anchor)
    }
}

/// Reads a syslog file (as a collector wrote it, one message per line, with the MSG
/// kept intact at the end of the line, e.g. rsyslog's `%msg%` or its default file
/// formats) and returns the signed heads of the log whose public key is `public_key`.
///
/// The file is untrusted input: lines that do not parse, heads of other logs and heads
/// whose signature does not verify are skipped and counted, never trusted. Fails only
/// when the file cannot be read.
///
/// ```
/// use ringkernel_core::security::audit::{AuditLog, AuditLogConfig};
/// use ringkernel_core::security::audit::syslog::shipped_heads;
/// # let dir = tempfile::tempdir()?;
/// let log = AuditLog::open(AuditLogConfig::in_directory(dir.path()))?;
/// log.close()?;
/// // A line as a collector might keep it: its own prefix, then the message.
/// let file = format!("Dec  2 03:00:00 gpu-7 ringkernel[42]: {}\ngarbage\n", log.head().to_line());
/// let shipped = shipped_heads(file.as_bytes(), &log.public_key())?;
/// assert_eq!(shipped.heads.len(), 1);
/// assert_eq!(shipped.anchor(), Some(log.head().anchor()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn shipped_heads(reader: impl Read, public_key: &AuditPublicKey) -> Result<ShippedHeads> {
    let mut out = ShippedHeads::default();
    let key_hex = public_key.to_hex();
    let mut reader = BufReader::new(reader);
    let mut raw = Vec::new();
    let mut seen = HashSet::new();
    let mut by_seq: BTreeMap<u64, HashSet<String>> = BTreeMap::new();
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        out.lines += 1;
        let line = String::from_utf8_lossy(&raw);
        // A head's body starts with its version and names its number.
        let Some(start) = line.find("{\"version\":") else {
            continue;
        };
        let text = &line[start..];
        if !text.contains("\"head_seq\"") {
            continue;
        }
        let head = match SignedHead::from_line(text) {
            Ok(h) => h,
            Err(_) => {
                out.malformed += 1;
                continue;
            }
        };
        if head.head().public_key != key_hex {
            out.other_key += 1;
            continue;
        }
        if head.verify(public_key).is_err() {
            out.bad_signature += 1;
            continue;
        }
        let hash = head.hash();
        if !seen.insert(hash.clone()) {
            out.duplicates += 1;
            continue;
        }
        by_seq.entry(head.head().head_seq).or_default().insert(hash);
        out.heads.push(head);
    }
    out.forks = by_seq.values().filter(|h| h.len() > 1).count() as u64;
    out.heads
        .sort_by_key(|h| (h.head().records, h.head().head_seq));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::audit::{AuditLog, AuditLogConfig, AuditSigningKey};

    #[test]
    fn skips_and_counts_what_is_not_a_good_head() {
        let dir = tempfile::tempdir().unwrap();
        let key = AuditSigningKey::from_seed(&[3; 32]);
        let log = AuditLog::open(AuditLogConfig {
            signing_key: Some(key.clone()),
            ..AuditLogConfig::in_directory(dir.path())
        })
        .unwrap();
        let first = log.head().to_line();
        log.seal_segment().unwrap();
        let second = log.head().to_line();
        log.close().unwrap();
        let other = tempfile::tempdir().unwrap();
        let foreign = AuditLog::open(AuditLogConfig::in_directory(other.path())).unwrap();
        foreign.close().unwrap();
        // One hex digit of the signature changed.
        let mut forged = second.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        let file = [
            first.as_str(),
            "{\"version\":1,\"head_seq\":",
            "<13>1 - - - - - - {\"version\":1,\"head_seq\":2} zz",
            &forged,
            &foreign.head().to_line(),
            &second,
            &second,
            "\u{0}\u{ff}",
        ]
        .join("\n");
        let mut bytes = file.into_bytes();
        bytes.extend_from_slice(b"\n\xff\xfe{\"version\":1,\"head_seq\"\n");
        let shipped = shipped_heads(&bytes[..], &key.public_key()).unwrap();
        assert_eq!(shipped.heads.len(), 2);
        assert_eq!(shipped.malformed, 3);
        assert_eq!(shipped.bad_signature, 1);
        assert_eq!(shipped.other_key, 1);
        assert_eq!(shipped.duplicates, 1);
        assert_eq!(shipped.forks, 0);
        assert_eq!(shipped.newest().map(SignedHead::to_line), Some(second));
        let empty = shipped_heads(&b""[..], &key.public_key()).unwrap();
        assert!(empty.anchor().is_none());
    }
}
