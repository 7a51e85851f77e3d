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
