//! Shared pieces of the fuzz targets.

/// The naive reference glob matcher of ringkernel-core's sandbox tests, one file for
/// all of them.
#[path = "../../ringkernel-core/tests/support/naive_glob.rs"]
mod naive_glob;
pub use naive_glob::{naive, naive_any};

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
