//! Shared pieces of the fuzz targets.

/// The naive reference glob matcher of `ringkernel-core/tests/sandbox.rs`: `*` any run
/// of characters (including none), `?` exactly one character, anything else itself.
/// Recursive and exponential in the number of stars: callers bound the lengths.
pub fn naive(p: &[char], t: &[char]) -> bool {
    match (p.first(), t.first()) {
        (None, None) => true,
        (Some('*'), _) => naive(&p[1..], t) || (!t.is_empty() && naive(p, &t[1..])),
        (Some('?'), Some(_)) => naive(&p[1..], &t[1..]),
        (Some(a), Some(b)) if a == b => naive(&p[1..], &t[1..]),
        _ => false,
    }
}

/// Whether any of `patterns` matches `text`, by the naive matcher.
pub fn naive_any(patterns: &[String], text: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    patterns
        .iter()
        .any(|p| naive(&p.chars().collect::<Vec<_>>(), &t))
}

/// The file names the `audit_verify` target's raw mode writes under: each file of its
/// input starts with an index into this list.
pub const AUDIT_NAMES: [&str; 12] = [
    "segment-00000001.jsonl",
    "segment-00000001.checkpoint",
    "segment-00000002.jsonl",
    "segment-00000002.checkpoint",
    "segment-00000003.jsonl",
    "segment-00000003.checkpoint",
    "segment-00000004.jsonl",
    "log.head",
    "retention.watermark",
    "segment-18446744073709551615.jsonl",
    "segment-00000000.jsonl",
    "segment-x.jsonl",
];

pub mod seeds;
