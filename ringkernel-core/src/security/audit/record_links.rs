//! What `verify` reads of each record line: its sequence number and its link to the
//! previous record. Every other field is checked for presence and type exactly as
//! [`AuditRecord`](super::format::AuditRecord) would be, but nothing is copied: no
//! `String` per field and no map per line (issue #14: verify spent most of its time
//! building records it then dropped).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// A record line as `verify` reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordLinks<'a> {
    /// Sequence number.
    pub(super) seq: u64,
    #[serde(rename = "ts")]
    _ts: AnyStr,
    #[serde(rename = "event")]
    _event: AnyStr,
    #[serde(rename = "actor")]
    _actor: AnyStr,
    #[serde(rename = "target")]
    _target: AnyStr,
    #[serde(rename = "result")]
    _result: AnyStr,
    #[serde(rename = "details")]
    _details: AnyMap,
    /// Hex SHA-256 of the previous record's line (borrowed unless it holds escapes).
    #[serde(borrow)]
    pub(super) prev: Cow<'a, str>,
}

/// `,"prev":"` + 64 hex digits + `"}`: how every line the writer makes ends.
const PREV_SUFFIX_LEN: usize = 9 + 64 + 2;

/// The sequence number and `prev` of a line in exactly the shape the writer makes
/// (`{"seq":<n>,"ts":` first, `,"prev":"<64 lower-case hex>"}` last), read without
/// parsing the members between; `None` for any other shape.
///
/// Only for lines whose bytes a signed checkpoint covers: they are then exactly what
/// the writer wrote (the Merkle root over their chain hashes matches, or `verify`
/// fails), and the writer writes only records that serialise as an
/// [`AuditRecord`](super::format::AuditRecord). A line of the open segment, which
/// nothing signed covers yet, is parsed in full ([`RecordLinks`]).
pub(super) fn framed_links(line: &[u8]) -> Option<(u64, &[u8; 64])> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, rest) = rest.split_at(digits);
    if number.is_empty() || number.len() > 20 || (number.len() > 1 && number[0] == b'0') {
        return None;
    }
    let seq = std::str::from_utf8(number).ok()?.parse::<u64>().ok()?;
    if !rest.starts_with(b",\"ts\":\"") || line.len() < 7 + digits + PREV_SUFFIX_LEN + 6 {
        return None;
    }
    let suffix = &line[line.len() - PREV_SUFFIX_LEN..];
    let prev: &[u8; 64] = suffix
        .strip_prefix(b",\"prev\":\"")?
        .strip_suffix(b"\"}")?
        .try_into()
        .ok()?;
    prev.iter()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        .then_some((seq, prev))
}

/// Any JSON string, not kept.
struct AnyStr;

impl<'de> Deserialize<'de> for AnyStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AnyStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyStr, E> {
                Ok(AnyStr)
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON object, its entries checked for syntax only and not kept.
struct AnyMap;

impl<'de> Deserialize<'de> for AnyMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyMap, A::Error> {
                while map.next_entry::<AnyStr, IgnoredAny>()?.is_some() {}
                Ok(AnyMap)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::AuditRecord;
    use super::*;

    /// Every line the writer makes is framed, and the frame reads what a full parse
    /// reads; lines of other shapes are not framed (and go to the full parse).
    #[test]
    fn the_frame_reads_what_the_full_parse_reads() {
        use crate::security::audit::AuditEvent;
        use crate::security::audit::format::{EncodedRecord, sha256_hex};
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let ev = AuditEvent::new("k2k.send")
            .actor("kernel:a")
            .target("b")
            .detail("topic", ",\"prev\":\"")
            .detail("n", 1);
        let enc = EncodedRecord::encode(&ev, at).unwrap();
        let prev = sha256_hex(b"x");
        for seq in [0u64, 7, 10, u64::MAX] {
            let mut line = Vec::new();
            enc.line_into(seq, &prev, &mut line);
            let (s, p) = framed_links(&line).unwrap();
            let full: RecordLinks<'_> = serde_json::from_slice(&line).unwrap();
            assert_eq!((s, &p[..]), (full.seq, full.prev.as_bytes()));
        }
        let good = {
            let mut l = Vec::new();
            enc.line_into(5, &prev, &mut l);
            String::from_utf8(l).unwrap()
        };
        for odd in [
            good.replace("{\"seq\":5,", "{\"seq\":05,"),
            good.replace("{\"seq\":5,", "{\"seq\":,"),
            good.replace("{\"seq\":5,", "{ \"seq\":5,"),
            good.replace("{\"seq\":5,", "{\"seq\":99999999999999999999,"),
            good.replace(&prev, &prev.to_uppercase()),
            good.replace(&prev, &prev[..63]),
            good.replace("\"}", "\" }"),
            good[..good.len() - 1].to_owned(),
            good.replace(",\"ts\":", ",\"event\":"),
            "{\"seq\":1,\"ts\":\"".to_owned(),
            String::new(),
        ] {
            assert!(framed_links(odd.as_bytes()).is_none(), "{odd}");
        }
    }

    /// The borrowed reader accepts exactly the lines the full record type accepts.
    #[test]
    fn accepts_exactly_what_an_audit_record_accepts() {
        let good = r#"{"seq":7,"ts":"2026-12-02T07:00:00.000001Z","event":"k2k.send","actor":"kernel:a","target":"b","result":"ok","details":{"bytes":256,"topic":"x\"y","nested":{"a":[1,2]}},"prev":"00ff"}"#;
        let lines = [
            good.to_string(),
            good.replace(r#""ts":"2026-12-02T07:00:00.000001Z","#, ""),
            good.replace(r#""prev":"00ff""#, r#""prev":"00ff","extra":1"#),
            good.replace(r#""ts":"2026-12-02T07:00:00.000001Z""#, r#""ts":17"#),
            good.replace(r#""details":{"#, r#""details":[{"#)
                .replace(r#"]}},"prev""#, r#"]}}],"prev""#),
            good.replace(r#""details":{"#, r#""details":{"k":null,"#),
            good.replace(r#""seq":7"#, r#""seq":-1"#),
            good.replace(r#""seq":7"#, r#""seq":"7""#),
            good.replace(r#""prev":"00ff""#, r#""prev":"00\u0066f""#),
            good.replace(r#""prev":"00ff""#, r#""prev":null"#),
            good.replace(r#""event":"k2k.send""#, r#""event":"k2k.send","event":"x""#),
            good[..good.len() - 2].to_string(),
            "[]".to_string(),
            String::new(),
        ];
        for line in &lines {
            let full = serde_json::from_str::<AuditRecord>(line);
            let links = serde_json::from_str::<RecordLinks<'_>>(line);
            assert_eq!(full.is_ok(), links.is_ok(), "{line}: {full:?}");
            if let (Ok(full), Ok(links)) = (full, links) {
                assert_eq!((full.seq, full.prev.as_str()), (links.seq, &*links.prev));
            }
        }
    }
}
