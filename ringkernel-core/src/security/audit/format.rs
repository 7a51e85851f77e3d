//! The on-disk format: records, timestamps, hashes, the RFC 6962 Merkle tree, and the
//! signed two-line files (checkpoints, retention watermark).

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The `prev` of the very first record: 64 zeros.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record, one JSON line. Field order is the order written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Sequence number, from 0, gapless over the whole log.
    pub seq: u64,
    /// UTC time the record was written, RFC 3339 with microseconds.
    pub ts: String,
    /// What happened, e.g. `kernel.launch`, `k2k.send`, `sandbox.violation`.
    pub event: String,
    /// Who did it: `host`, `runtime`, `kernel:<id>`.
    pub actor: String,
    /// What it was done to (a kernel id, a key epoch, a buffer), or empty.
    pub target: String,
    /// `ok`, `denied` or `error`.
    pub result: String,
    /// Event-specific facts (never key bytes or payloads), keys sorted.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Hex SHA-256 of the previous record's line bytes (without its newline).
    pub prev: String,
}

/// A record encoded by the thread that appends it: every member that does not depend on
/// the chain (`ts` through `details`), as JSON. The writer thread only splices in the
/// chain's two members (`seq` before, `prev` after) and hashes the line, so that
/// serialisation runs on the producers, side by side, and only the chain link is serial.
/// The line it makes is byte for byte the one `serde_json` writes for the whole
/// [`AuditRecord`] (pinned by a test), so the format and the verifier are unchanged.
pub(crate) struct EncodedRecord {
    /// `{"ts":...,"details":{...}}`: the members, between the outer braces.
    object: Vec<u8>,
    /// When the record was appended (its `ts`).
    pub(crate) at: SystemTime,
}

impl EncodedRecord {
    /// Encodes `ev`, appended at `at`.
    ///
    /// Written member by member rather than through a derived `Serialize`: strings that
    /// need no escape (nearly all) are copied whole instead of byte by byte, and
    /// anything else goes through `serde_json`'s own escaper, so the bytes are exactly
    /// `serde_json`'s (pinned by a test over every ASCII character).
    pub(crate) fn encode(ev: &super::AuditEvent, at: SystemTime) -> Result<Self> {
        let mut object = Vec::with_capacity(192);
        // Writing into a Vec cannot fail.
        let _ = write!(
            object,
            "{{\"ts\":\"{}\",\"event\":",
            humantime::format_rfc3339_micros(at.max(UNIX_EPOCH))
        );
        json_str(&mut object, &ev.event);
        object.extend_from_slice(b",\"actor\":");
        json_str(&mut object, &ev.actor);
        object.extend_from_slice(b",\"target\":");
        json_str(&mut object, &ev.target);
        object.extend_from_slice(b",\"result\":");
        json_str(&mut object, ev.result.as_str());
        object.extend_from_slice(b",\"details\":{");
        for (i, (key, value)) in ev.details.iter().enumerate() {
            if i > 0 {
                object.push(b',');
            }
            json_str(&mut object, key);
            object.push(b':');
            match value {
                serde_json::Value::String(v) => json_str(&mut object, v),
                other => serde_json::to_writer(&mut object, other).map_err(|e| {
                    Error::corrupt_caused_by("audit record", "cannot be written as JSON", e)
                })?,
            }
        }
        object.extend_from_slice(b"}}");
        Ok(EncodedRecord { object, at })
    }

    /// Writes the record's line (without its newline) into `line`, which is cleared
    /// first: `{"seq":<seq>,<members>,"prev":"<prev>"}`.
    pub(crate) fn line_into(&self, seq: u64, prev: &str, line: &mut Vec<u8>) {
        // `object` is `{` members `}` (a struct always serialises to an object).
        let members = &self.object[1..self.object.len() - 1];
        line.clear();
        line.reserve(members.len() + prev.len() + 40);
        // Writing into a Vec cannot fail.
        let _ = write!(line, "{{\"seq\":{seq},");
        line.extend_from_slice(members);
        line.extend_from_slice(b",\"prev\":\"");
        line.extend_from_slice(prev.as_bytes());
        line.extend_from_slice(b"\"}");
    }
}

/// Writes `s` as a JSON string exactly as `serde_json` does: copied whole when no byte
/// needs an escape (a control character, `"` or `\\`), else through `serde_json`.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Serialising a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Whether any byte of `bytes` is one JSON escapes: below 0x20, `"` or `\\`. Eight
/// bytes at a time (SWAR): a word has a byte below `n` (`n` <= 0x80) exactly when
/// `(w - n * 0x01..01) & !w & 0x80..80` is not zero, and a byte equal to `c` exactly
/// when `w ^ c * 0x01..01` has a zero byte.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, n: u64| w.wrapping_sub(n * ONES) & !w & HIGHS;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        if below(w, 0x20)
            | below(w ^ (u64::from(b'"') * ONES), 1)
            | below(w ^ (u64::from(b'\\') * ONES), 1)
            != 0
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A 32-byte hash as lower-case hex, on the stack (the per-record paths of the writer
/// and the verifier: no allocation, a table lookup per nibble).
pub(crate) fn hex32(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

/// Writes a 32-byte hash as lower-case hex into `out`, reusing its buffer.
pub(crate) fn set_hex(out: &mut String, bytes: &[u8; 32]) {
    out.clear();
    // Hex digits are ASCII, so always UTF-8; pushed as one string (a `char` at a time
    // cost 1,500 instructions per record on the writer thread).
    if let Ok(digits) = std::str::from_utf8(&hex32(bytes)) {
        out.push_str(digits);
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// Parses lower- or upper-case hex (`None` for odd lengths or other characters).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    ::hex::decode(s).ok()
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-22T03:17:00.123456Z` (times before
/// 1970 are written as the epoch).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t.max(UNIX_EPOCH)).to_string()
}

/// The UTC day number of `t` (segments roll when it changes).
pub fn utc_day(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86_400
}

/// RFC 6962 leaf hash: SHA-256(0x00 || leaf).
pub fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

fn node_hash(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// RFC 6962 Merkle tree hash over leaf hashes: the empty tree is SHA-256(""), a split
/// point is the largest power of two smaller than the number of leaves.
pub fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => leaves[0],
        n => {
            // The largest power of two smaller than n (= the highest bit of n - 1).
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            // Large trees: the two halves on the rayon pool (each node costs two
            // SHA-256 blocks; a 64 MiB segment has about 250,000 leaves).
            let (left, right) = if n >= 8192 {
                rayon::join(|| merkle_root(&leaves[..k]), || merkle_root(&leaves[k..]))
            } else {
                (merkle_root(&leaves[..k]), merkle_root(&leaves[k..]))
            };
            node_hash(&left, &right)
        }
    }
}

/// The checkpoint format this version writes: 2, whose Merkle leaves are the records'
/// chain hashes. Version 1 (written before 2026-12-02) hashed each record's line bytes
/// into its leaf; `verify` reads both.
pub const CHECKPOINT_VERSION: u32 = 2;

/// The Merkle leaf of a record under checkpoint format `version`: RFC 6962's leaf hash
/// of the record's line bytes (version 1) or of its chain hash, the SHA-256 of those
/// bytes (version 2: one 32-byte block instead of a second pass over the line; the
/// leaf still binds every byte of the line through the chain hash). `None` for a
/// version this build does not know.
pub fn record_leaf(version: u32, line: &[u8], line_hash: &[u8; 32]) -> Option<[u8; 32]> {
    match version {
        1 => Some(leaf_hash(line)),
        2 => Some(leaf_hash(line_hash)),
        _ => None,
    }
}

/// A checkpoint: the signed summary of a closed segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Format version: 2 (leaves over chain hashes), or 1 (over line bytes); see
    /// [`CHECKPOINT_VERSION`] and [`record_leaf`].
    pub version: u32,
    /// Segment number.
    pub segment: u64,
    /// Sequence number of the segment's first record.
    pub first_seq: u64,
    /// Number of complete records in the segment.
    pub count: u64,
    /// RFC 6962 Merkle root over the records' leaves ([`record_leaf`]), hex.
    pub merkle_root: String,
    /// SHA-256 of the last record's line bytes (the chain head), hex.
    pub last_hash: String,
    /// SHA-256 of the previous checkpoint's body line, hex (zeros for the first).
    pub prev_checkpoint: String,
    /// When the segment was closed.
    pub closed_at: String,
    /// Bytes of a torn final line left by a crash before the segment was sealed.
    pub torn_tail_bytes: u64,
    /// The Ed25519 public key that signs, hex.
    pub public_key: String,
}

/// The retention watermark: which segments were deleted and where the chain goes on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watermark {
    /// Format version (1).
    pub version: u32,
    /// Every segment up to and including this one may be missing.
    pub deleted_through_segment: u64,
    /// Sequence number of the first record after the deleted segments.
    pub next_seq: u64,
    /// Chain head after the deleted segments (prev of the next record).
    pub last_hash: String,
    /// SHA-256 of the last deleted segment's checkpoint body line.
    pub last_checkpoint_hash: String,
    /// When retention ran.
    pub updated_at: String,
}

pub use super::report::{Head, HeadState};

/// Encodes `body` as a signed two-line file: the JSON body, then the hex signature of
/// exactly those bytes.
pub fn signed_file<T: Serialize>(
    body: &T,
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Result<(Vec<u8>, String)> {
    let line = serde_json::to_vec(body)
        .map_err(|e| Error::corrupt_caused_by("audit file", "cannot be written as JSON", e))?;
    let sig = sign(&line);
    let mut out = line.clone();
    out.push(b'\n');
    out.extend_from_slice(hex(&sig).as_bytes());
    out.push(b'\n');
    Ok((out, sha256_hex(&line)))
}

/// Splits a signed two-line file into (body bytes, signature).
pub fn split_signed(bytes: &[u8]) -> Option<(&[u8], [u8; 64])> {
    let text = bytes.strip_suffix(b"\n")?;
    let nl = text.iter().position(|&b| b == b'\n')?;
    let (body, sig) = (&text[..nl], &text[nl + 1..]);
    let sig = unhex(std::str::from_utf8(sig).ok()?)?;
    Some((body, sig.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_root(leaves: &[[u8; 32]]) -> [u8; 32] {
        if leaves.is_empty() {
            return Sha256::digest(b"").into();
        }
        if leaves.len() == 1 {
            return leaves[0];
        }
        let mut k = 1;
        while k * 2 < leaves.len() {
            k *= 2;
        }
        node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
    }

    #[test]
    fn merkle_matches_the_rfc6962_definition() {
        // RFC 6962 §2.1: empty tree and single empty leaf.
        assert_eq!(
            hex(&merkle_root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let leaves: Vec<[u8; 32]> = (0..40u8).map(|i| leaf_hash(&[i])).collect();
        for n in 0..=leaves.len() {
            assert_eq!(
                merkle_root(&leaves[..n]),
                naive_root(&leaves[..n]),
                "n = {n}"
            );
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_795_000_000_123_456);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123456Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339(leap)[..10], "2000-02-29");
    }

    #[test]
    fn needs_escape_agrees_with_a_byte_by_byte_check() {
        let slow = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        // Every byte value at every position of strings 0..=17 bytes long, among
        // bytes that need no escape (so a word's other bytes cannot hide or fake one).
        for len in 0..=17usize {
            for at in 0..len {
                for v in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    b[at] = v;
                    assert_eq!(needs_escape(&b), slow(&b), "{b:?}");
                    // Neighbours at the edges of the ranges around it.
                    for n in [
                        0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b, 0x5c, 0x5d, 0x7f, 0x80, 0xff,
                    ] {
                        if at + 1 < len {
                            b[at + 1] = n;
                            assert_eq!(needs_escape(&b), slow(&b), "{b:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn an_encoded_record_makes_the_line_serde_writes_for_the_whole_record() {
        use crate::security::audit::{AuditEvent, AuditResult};
        let at = UNIX_EPOCH + std::time::Duration::from_micros(1_795_000_000_123_456);
        let events = [
            AuditEvent::new("k2k.send")
                .actor("kernel:a\"b")
                .target("c\u{7}\u{2028}d")
                .detail("bytes", 256)
                .detail("topic", "t\\x")
                .detail(
                    "nested",
                    serde_json::json!({"z": [1, null, 2.5], "a": "\n"}),
                ),
            AuditEvent::new("x").result(AuditResult::Denied),
            AuditEvent::new(""),
            AuditEvent::new("values")
                .detail("t", true)
                .detail("f", false)
                .detail("null", serde_json::Value::Null)
                .detail("neg", i64::MIN)
                .detail("max", u64::MAX)
                .detail("float", -0.1f64)
                .detail("array", serde_json::json!(["\u{0}", 1, {"k": "v"}])),
        ];
        // Every ASCII character, and a few others, in every string the encoder writes
        // itself: whether it copies a string whole or escapes it, the line is serde's.
        let chars =
            (0u8..=0x7f)
                .map(char::from)
                .chain(['\u{80}', '\u{2028}', '\u{fffd}', '\u{1f600}']);
        let events: Vec<AuditEvent> = events
            .into_iter()
            .chain(chars.map(|c| {
                let s = format!("a{c}b{c}");
                AuditEvent::new(&s)
                    .actor(&s)
                    .target(&s)
                    .detail(&s, s.as_str())
                    .detail("n", 1)
            }))
            .collect();
        let prev = sha256_hex(b"earlier");
        for (i, ev) in events.iter().enumerate() {
            let enc = EncodedRecord::encode(ev, at).unwrap();
            let mut line = Vec::new();
            enc.line_into(u64::MAX - i as u64, &prev, &mut line);
            let whole = AuditRecord {
                seq: u64::MAX - i as u64,
                ts: rfc3339(at),
                event: ev.event.clone(),
                actor: ev.actor.clone(),
                target: ev.target.clone(),
                result: ev.result.as_str().to_owned(),
                details: ev.details.clone(),
                prev: prev.clone(),
            };
            assert_eq!(
                String::from_utf8(line.clone()).unwrap(),
                String::from_utf8(serde_json::to_vec(&whole).unwrap()).unwrap()
            );
            let back: AuditRecord = serde_json::from_slice(&line).unwrap();
            assert_eq!(back, whole);
        }
    }

    #[test]
    fn hex_round_trip_and_signed_files() {
        assert_eq!(unhex(&hex(&[0, 15, 255])).unwrap(), vec![0, 15, 255]);
        let h: [u8; 32] = Sha256::digest(b"abc").into();
        assert_eq!(hex32(&h).as_slice(), hex(&h).as_bytes());
        let mut s = String::from("old");
        set_hex(&mut s, &h);
        assert_eq!(
            s,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(unhex("abc").is_none() && unhex("zz").is_none());
        let (bytes, h) = signed_file(&serde_json::json!({"a": 1}), |_| [7u8; 64]).unwrap();
        let (body, sig) = split_signed(&bytes).unwrap();
        assert_eq!(body, br#"{"a":1}"#);
        assert_eq!(sig, [7u8; 64]);
        assert_eq!(h, sha256_hex(body));
        assert!(split_signed(b"no newline").is_none());
    }
}
