//! The log directory: file names, listing, atomic writes, reading signed files.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::format::{sha256_hex, split_signed};
use crate::error::{Error, Result};

pub(crate) fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("segment-{n:08}.jsonl"))
}

pub(crate) fn checkpoint_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("segment-{n:08}.checkpoint"))
}

pub(crate) fn watermark_path(dir: &Path) -> PathBuf {
    dir.join("retention.watermark")
}

pub(crate) fn head_path(dir: &Path) -> PathBuf {
    dir.join("log.head")
}

/// Whether `dir` holds any file of a log (segment, checkpoint, watermark, head). A
/// directory that does not exist holds none.
pub(crate) fn log_files_present(dir: &Path) -> Result<bool> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name == "log.head"
            || name == "retention.watermark"
            || (name.starts_with("segment-")
                && (name.ends_with(".jsonl") || name.ends_with(".checkpoint")))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Segment numbers present in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut v = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("segment-")
            .and_then(|r| r.strip_suffix(".jsonl"))
            .and_then(|d| d.parse::<u64>().ok())
        {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

pub(crate) fn io_err(what: &str, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// Writes `bytes` to `path` in the log directory atomically (see
/// [`crate::atomic_file`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::atomic_file::write(path, bytes, crate::atomic_file::Access::Default)
}

pub(crate) fn parse_err(what: &'static str, e: serde_json::Error) -> Error {
    Error::corrupt_caused_by(what, "not valid JSON", e)
}

/// Reads and parses a signed two-line file of ours (no signature check: the writer
/// trusts its own directory; auditors use `verify`). Returns the body and its hash.
pub(crate) fn read_signed<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<(T, String)> {
    let bytes = fs::read(path)?;
    let (body, _) =
        split_signed(&bytes).ok_or_else(|| Error::corrupt(what, "not a signed file"))?;
    let parsed = serde_json::from_slice(body).map_err(|e| parse_err(what, e))?;
    Ok((parsed, sha256_hex(body)))
}
