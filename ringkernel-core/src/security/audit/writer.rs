//! The audit writer thread: assigns sequence numbers and chain hashes, writes lines,
//! rolls, seals and retires segments.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::format::{
    AuditRecord, Checkpoint, Watermark, ZERO_HASH, hex, leaf_hash, merkle_root, rfc3339,
    sha256_hex, signed_file, split_signed, utc_day,
};
use super::{AuditConfig, AuditEvent, AuditSigningKey};
use crate::error::{Error, Result};

pub(crate) enum Command {
    Append(AuditEvent, SystemTime),
    Flush(Sender<Result<()>>),
    Seal(Sender<Result<()>>),
    Retention(SystemTime, Sender<Result<Vec<u64>>>),
    Close(Sender<Result<()>>),
}

pub(crate) fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("segment-{n:08}.jsonl"))
}

pub(crate) fn checkpoint_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("segment-{n:08}.checkpoint"))
}

pub(crate) fn watermark_path(dir: &Path) -> PathBuf {
    dir.join("retention.watermark")
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

fn io_err(what: &str, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync of the
/// directory.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(|e| io_err("create", e))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn parse_err(what: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        what,
        reason: e.to_string(),
    }
}

/// Reads and parses a signed two-line file of ours (no signature check: the writer
/// trusts its own directory; auditors use `verify`). Returns the body and its hash.
pub(crate) fn read_signed<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<(T, String)> {
    let bytes = fs::read(path)?;
    let (body, _) = split_signed(&bytes).ok_or_else(|| parse_err(what, "not a signed file"))?;
    let parsed = serde_json::from_slice(body).map_err(|e| parse_err(what, e))?;
    Ok((parsed, sha256_hex(body)))
}

pub(crate) struct Writer {
    dir: PathBuf,
    key: AuditSigningKey,
    _lock: File,
    max_bytes: u64,
    retention_days: u32,
    // current segment
    seg: u64,
    file: BufWriter<File>,
    seg_bytes: u64,
    seg_day: Option<u64>,
    seg_first_seq: u64,
    leaves: Vec<[u8; 32]>,
    // chain
    next_seq: u64,
    prev_hash: String,
    prev_checkpoint: String,
    dirty: bool,
}

impl Writer {
    /// Opens the directory, takes its lock, seals a segment a crash left open, and
    /// starts a new segment. Returns the writer and the last sequence found, if any.
    pub(crate) fn open(config: &AuditConfig, key: AuditSigningKey) -> Result<(Self, Option<u64>)> {
        let dir = config.directory.clone();
        fs::create_dir_all(&dir).map_err(|e| io_err("audit directory", e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        lock.try_lock().map_err(|_| {
            Error::InvalidConfig(format!(
                "audit directory {} is in use by another audit log",
                dir.display()
            ))
        })?;
        let (mut next_seq, mut prev_hash, mut prev_checkpoint, mut first_free) =
            (0u64, ZERO_HASH.to_owned(), ZERO_HASH.to_owned(), 1u64);
        let wm = watermark_path(&dir);
        if wm.exists() {
            let (w, _): (Watermark, _) = read_signed(&wm, "retention watermark")?;
            next_seq = w.next_seq;
            prev_hash = w.last_hash;
            prev_checkpoint = w.last_checkpoint_hash;
            first_free = w.deleted_through_segment + 1;
        }
        let segments = list_segments(&dir)?;
        let mut resumed = None;
        if let Some(&last) = segments.last() {
            // Chain state after the last sealed segment before `last`.
            if let Some(&before) = segments.iter().rev().nth(1) {
                let cp = checkpoint_path(&dir, before);
                if cp.exists() {
                    let (c, h): (Checkpoint, _) = read_signed(&cp, "checkpoint")?;
                    next_seq = c.first_seq + c.count;
                    prev_hash = c.last_hash;
                    prev_checkpoint = h;
                }
            }
            let cp = checkpoint_path(&dir, last);
            if cp.exists() {
                let (c, h): (Checkpoint, _) = read_signed(&cp, "checkpoint")?;
                if c.public_key != key.public_key().to_hex() {
                    return Err(Error::InvalidConfig(format!(
                        "audit directory {} holds a log signed by key {}; open it with that \
                         signing key (AuditConfig::signing_key) or use a new directory",
                        dir.display(),
                        c.public_key
                    )));
                }
                next_seq = c.first_seq + c.count;
                prev_hash = c.last_hash;
                prev_checkpoint = h;
            } else {
                // A segment left open by a crash: seal what is complete in it.
                let bytes = fs::read(segment_path(&dir, last))?;
                let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let mut leaves = Vec::new();
                let first_seq = next_seq;
                for line in bytes[..complete]
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                {
                    let rec: AuditRecord =
                        serde_json::from_slice(line).map_err(|e| parse_err("audit record", e))?;
                    next_seq = rec.seq + 1;
                    prev_hash = sha256_hex(line);
                    leaves.push(leaf_hash(line));
                }
                let checkpoint = Checkpoint {
                    version: 1,
                    segment: last,
                    first_seq,
                    count: leaves.len() as u64,
                    merkle_root: hex(&merkle_root(&leaves)),
                    last_hash: prev_hash.clone(),
                    prev_checkpoint: prev_checkpoint.clone(),
                    closed_at: rfc3339(SystemTime::now()),
                    torn_tail_bytes: (bytes.len() - complete) as u64,
                    public_key: key.public_key().to_hex(),
                };
                let (file, h) = signed_file(&checkpoint, |m| key.sign(m))?;
                write_atomic(&dir, &cp, &file)?;
                prev_checkpoint = h;
            }
            if next_seq > 0 {
                resumed = Some(next_seq - 1);
            }
            first_free = first_free.max(last + 1);
        }
        let seg = first_free;
        let file = Self::create_segment(&dir, seg)?;
        Ok((
            Writer {
                dir,
                key,
                _lock: lock,
                max_bytes: config.max_segment_bytes,
                retention_days: config.retention_days,
                seg,
                file,
                seg_bytes: 0,
                seg_day: None,
                seg_first_seq: next_seq,
                leaves: Vec::new(),
                next_seq,
                prev_hash,
                prev_checkpoint,
                dirty: false,
            },
            resumed,
        ))
    }

    fn create_segment(dir: &Path, n: u64) -> Result<BufWriter<File>> {
        let f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(segment_path(dir, n))
            .map_err(|e| io_err("new audit segment", e))?;
        Ok(BufWriter::with_capacity(64 * 1024, f))
    }

    pub(crate) fn run(mut self, rx: Receiver<Command>, flush_interval: Duration) {
        let mut last_flush = Instant::now();
        loop {
            let cmd = rx.recv_timeout(flush_interval);
            match cmd {
                Ok(Command::Append(ev, at)) => {
                    if let Err(e) = self.append(ev, at) {
                        tracing::error!(error = %e, "audit record could not be written");
                    }
                }
                Ok(Command::Flush(ack)) => {
                    let _ = ack.send(self.sync());
                }
                Ok(Command::Seal(ack)) => {
                    let _ = ack.send(self.seal_and_roll(SystemTime::now()));
                }
                Ok(Command::Retention(now, ack)) => {
                    let _ = ack.send(self.retention(now));
                }
                Ok(Command::Close(ack)) => {
                    // Drain what was queued before the close.
                    while let Ok(Command::Append(ev, at)) = rx.try_recv() {
                        let _ = self.append(ev, at);
                    }
                    let _ = ack.send(self.seal(SystemTime::now()));
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.seal(SystemTime::now());
                    return;
                }
            }
            if self.dirty && last_flush.elapsed() >= flush_interval {
                if let Err(e) = self.file.flush() {
                    tracing::error!(error = %e, "audit flush failed");
                }
                self.dirty = false;
                last_flush = Instant::now();
            }
        }
    }

    fn append(&mut self, ev: AuditEvent, at: SystemTime) -> Result<()> {
        let day = utc_day(at);
        let rec = AuditRecord {
            seq: self.next_seq,
            ts: rfc3339(at),
            event: ev.event,
            actor: ev.actor,
            target: ev.target,
            result: ev.result.as_str().to_owned(),
            details: ev.details,
            prev: self.prev_hash.clone(),
        };
        let mut line = serde_json::to_vec(&rec).map_err(|e| parse_err("audit record", e))?;
        let roll = !self.leaves.is_empty()
            && (self.seg_bytes + line.len() as u64 + 1 > self.max_bytes
                || self.seg_day.is_some_and(|d| d != day));
        if roll {
            self.seal_and_roll(at)?;
            // The record moves to the new segment; its prev stays the chain head.
        }
        self.seg_day.get_or_insert(day);
        let hash = sha256_hex(&line);
        self.leaves.push(leaf_hash(&line));
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.seg_bytes += line.len() as u64;
        self.prev_hash = hash;
        self.next_seq += 1;
        self.dirty = true;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        self.dirty = false;
        Ok(())
    }

    /// Closes the current segment with a signed checkpoint.
    fn seal(&mut self, now: SystemTime) -> Result<()> {
        self.sync()?;
        let checkpoint = Checkpoint {
            version: 1,
            segment: self.seg,
            first_seq: self.seg_first_seq,
            count: self.leaves.len() as u64,
            merkle_root: hex(&merkle_root(&self.leaves)),
            last_hash: self.prev_hash.clone(),
            prev_checkpoint: self.prev_checkpoint.clone(),
            closed_at: rfc3339(now),
            torn_tail_bytes: 0,
            public_key: self.key.public_key().to_hex(),
        };
        let (file, h) = signed_file(&checkpoint, |m| self.key.sign(m))?;
        write_atomic(&self.dir, &checkpoint_path(&self.dir, self.seg), &file)?;
        self.prev_checkpoint = h;
        Ok(())
    }

    fn seal_and_roll(&mut self, now: SystemTime) -> Result<()> {
        self.seal(now)?;
        self.seg += 1;
        self.file = Self::create_segment(&self.dir, self.seg)?;
        self.seg_bytes = 0;
        self.seg_day = None;
        self.seg_first_seq = self.next_seq;
        self.leaves.clear();
        if self.retention_days > 0 {
            self.retention(now)?;
        }
        Ok(())
    }

    /// Deletes the oldest sealed segments closed before `now - retention_days`, after
    /// signing a watermark that says where the chain continues.
    fn retention(&mut self, now: SystemTime) -> Result<Vec<u64>> {
        if self.retention_days == 0 {
            return Ok(Vec::new());
        }
        let horizon = now
            .checked_sub(Duration::from_secs(u64::from(self.retention_days) * 86_400))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let cutoff = rfc3339(horizon);
        let mut doomed = Vec::new();
        let mut mark = None;
        for n in list_segments(&self.dir)? {
            if n >= self.seg {
                break;
            }
            let cp = checkpoint_path(&self.dir, n);
            if !cp.exists() {
                break;
            }
            let (c, h): (Checkpoint, _) = read_signed(&cp, "checkpoint")?;
            // RFC 3339 UTC strings of fixed width compare in time order.
            if c.closed_at >= cutoff {
                break;
            }
            mark = Some(Watermark {
                version: 1,
                deleted_through_segment: n,
                next_seq: c.first_seq + c.count,
                last_hash: c.last_hash.clone(),
                last_checkpoint_hash: h,
                updated_at: rfc3339(now),
            });
            doomed.push(n);
        }
        if let Some(w) = mark {
            let (file, _) = signed_file(&w, |m| self.key.sign(m))?;
            write_atomic(&self.dir, &watermark_path(&self.dir), &file)?;
            for n in &doomed {
                fs::remove_file(segment_path(&self.dir, *n))?;
                fs::remove_file(checkpoint_path(&self.dir, *n))?;
            }
            tracing::info!(segments = ?doomed, "audit retention deleted old segments");
        }
        Ok(doomed)
    }
}
