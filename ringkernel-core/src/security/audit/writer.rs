//! The audit writer thread: assigns sequence numbers and chain hashes, writes lines,
//! rolls, seals and retires segments.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::files::{
    checkpoint_path, head_path, io_err, list_segments, log_files_present, read_signed,
    segment_path, watermark_path, write_atomic,
};
use super::format::{
    AuditRecord, CHECKPOINT_VERSION, Checkpoint, EncodedRecord, Head, HeadState, Watermark,
    ZERO_HASH, hex, leaf_hash, merkle_root, rfc3339, set_hex, signed_file, utc_day,
};
use super::head::SignedHead;
use super::route_summary::RouteCounts;
use super::syslog::Shipper;
use super::{AuditLogConfig, AuditSigningKey, Event};
use crate::error::{Error, Result};

/// The first write failure of a log, once there has been one (shared between the
/// writer and `AuditLog`).
pub(crate) type Failure = Arc<std::sync::OnceLock<String>>;

/// The error every operation gets once the writer has stopped at a write failure.
pub(crate) fn stopped_error(failure: &Failure, lost: u64) -> Error {
    let cause = failure.get().map_or("unknown", String::as_str);
    Error::Io(std::io::Error::other(format!(
        "the audit log stopped at a failed write ({cause}); {lost} record(s) queued after \
         it were not written, and it accepts no more (reopen it once the cause is fixed)"
    )))
}

pub(crate) enum Command {
    /// A record its producer has already encoded.
    Append(EncodedRecord),
    Flush(Sender<Result<()>>),
    Seal(Sender<Result<()>>),
    Retention(SystemTime, Sender<Result<Vec<u64>>>),
    /// Seal and stop; `Closed` for `AuditLog::close`, `Open` when the last handle is
    /// dropped without it.
    Close(HeadState, Sender<Result<()>>),
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
    /// The line being written (reused: no allocation per record).
    line: Vec<u8>,
    dirty: bool,
    // the signed head: the last one written, shared with `AuditLog::head`
    head: Arc<Mutex<SignedHead>>,
    // heads (and records, if configured) also go to syslog
    shipper: Option<Arc<Shipper>>,
    /// Set at the first failed write: nothing is written after it (see `stop`).
    stopped: bool,
    /// Records that arrived after the stop and were not written.
    lost: u64,
    last_drop_report: Option<Instant>,
    /// Delivered K2K sends counted by the senders, written as per-route summaries.
    routes: Option<Arc<RouteCounts>>,
    /// How often they are written (`None`: only at flush, seal and close).
    summary_interval: Option<Duration>,
    last_summary: Instant,
}

/// A group commit takes at most this many queued commands before it syncs, so that a
/// steady stream of appends cannot hold a flush back.
const GROUP_COMMIT_MAX: usize = 4096;

/// Shipper drops are recorded at most this often (a `syslog.dropped` record that is
/// itself shipped and dropped must not feed a loop).
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Where the chain stands at a point of the log.
struct ChainPoint {
    records: u64,
    last_hash: String,
    /// The last sealed segment up to this point (0: none) and its checkpoint's hash.
    segment: u64,
    checkpoint: String,
}

/// The last segment, left without a checkpoint by a crash.
struct Crashed {
    segment: u64,
    leaves: Vec<[u8; 32]>,
    /// Bytes of an incomplete final line.
    torn_bytes: u64,
    /// Where the chain stands after its complete records.
    records: u64,
    last_hash: String,
}

/// What `Writer::open` found on disk and returns to `AuditLog::open`.
pub(crate) struct Opened {
    pub(crate) writer: Writer,
    /// The last sequence number found, if the directory held records.
    pub(crate) resumed: Option<u64>,
    /// The head just written (shared with the writer, which updates it).
    pub(crate) head: Arc<Mutex<SignedHead>>,
}

impl Writer {
    /// Opens the directory, takes its lock, checks that the log still reaches its signed
    /// head, seals a segment a crash left open, writes an open head, and starts a new
    /// segment.
    ///
    /// A directory that falls short of its head (records or segments cut, the head gone
    /// or replaced by an older one) is refused with the error `verify` gives: continuing
    /// would sign a new head over the cut and hide it.
    pub(crate) fn open(config: &AuditLogConfig, key: AuditSigningKey) -> Result<Opened> {
        let dir = config.resolved_directory().to_path_buf();
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
        let public_key = key.public_key();
        let wrong_key = |found: &str| {
            Error::InvalidConfig(format!(
                "audit directory {} holds a log signed by key {found}; open it with that \
                 signing key (AuditLogConfig::signing_key) or use a new directory",
                dir.display()
            ))
        };
        let old_head = match fs::read(head_path(&dir)) {
            Ok(bytes) => {
                let h = SignedHead::from_bytes(&bytes)?;
                if h.head().public_key != public_key.to_hex() {
                    return Err(wrong_key(&h.head().public_key));
                }
                h.verify(&public_key)?;
                Some(h)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("audit log head", e)),
        };
        let files_before = log_files_present(&dir)?;

        // The chain after the last sealed segment (or the watermark).
        let mut sealed = ChainPoint {
            records: 0,
            last_hash: ZERO_HASH.to_owned(),
            segment: 0,
            checkpoint: ZERO_HASH.to_owned(),
        };
        let mut first_free = 1u64;
        let wm = watermark_path(&dir);
        if wm.exists() {
            let (w, _): (Watermark, _) = read_signed(&wm, "retention watermark")?;
            sealed = ChainPoint {
                records: w.next_seq,
                last_hash: w.last_hash,
                segment: w.deleted_through_segment,
                checkpoint: w.last_checkpoint_hash,
            };
            first_free = w.deleted_through_segment + 1;
        }
        let segments = list_segments(&dir)?;
        let sealed_point = |n: u64| -> Result<Option<ChainPoint>> {
            let cp = checkpoint_path(&dir, n);
            if !cp.exists() {
                return Ok(None);
            }
            let (c, h): (Checkpoint, _) = read_signed(&cp, "checkpoint")?;
            if c.public_key != public_key.to_hex() {
                return Err(wrong_key(&c.public_key));
            }
            Ok(Some(ChainPoint {
                records: c.first_seq + c.count,
                last_hash: c.last_hash,
                segment: n,
                checkpoint: h,
            }))
        };
        // A segment left open by a crash, and whether its records chain on.
        let mut crashed = None;
        let mut chain_broken = false;
        if let Some(&last) = segments.last() {
            if let Some(p) = sealed_point(last)? {
                sealed = p;
            } else {
                if let Some(&before) = segments.iter().rev().nth(1)
                    && let Some(p) = sealed_point(before)?
                {
                    sealed = p;
                }
                let bytes = fs::read(segment_path(&dir, last))?;
                let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let mut c = Crashed {
                    segment: last,
                    leaves: Vec::new(),
                    torn_bytes: (bytes.len() - complete) as u64,
                    records: sealed.records,
                    last_hash: sealed.last_hash.clone(),
                };
                for line in bytes[..complete]
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                {
                    match serde_json::from_slice::<AuditRecord>(line) {
                        Ok(rec) if rec.seq == c.records && rec.prev == c.last_hash => {}
                        _ => {
                            // Never sign over a broken chain: the verifier names it.
                            chain_broken = true;
                            break;
                        }
                    }
                    let hash: [u8; 32] = Sha256::digest(line).into();
                    c.records += 1;
                    c.last_hash = hex(&hash);
                    // Sealed below under this version's checkpoint format.
                    c.leaves.push(leaf_hash(&hash));
                }
                crashed = Some(c);
            }
            first_free = first_free.max(last + 1);
        }

        // Does the directory still reach its signed head?
        let consistent = match &old_head {
            None => !files_before,
            Some(h) => {
                let h = h.head();
                let at_sealed = h.last_segment == sealed.segment
                    && h.last_checkpoint == sealed.checkpoint
                    && h.records == sealed.records
                    && h.last_hash == sealed.last_hash
                    && !(h.state == HeadState::Closed && crashed.is_some());
                // A crash between a seal's two writes: the head names the segment, its
                // checkpoint was not written, and the segment ends where the head says.
                let sealing = crashed.as_ref().is_some_and(|c| {
                    h.last_segment == c.segment
                        && h.records == c.records
                        && h.last_hash == c.last_hash
                });
                at_sealed || sealing
            }
        };
        if !consistent || chain_broken {
            // Let the verifier say exactly what is wrong.
            super::verify(&dir, &public_key)?;
            return Err(Error::corrupt(
                "audit log",
                format!(
                    "{} does not continue its signed head; run `ringkernel audit verify` on it",
                    dir.display()
                ),
            ));
        }

        let (mut head_seq, mut prev_head) = match &old_head {
            Some(h) => (h.head().head_seq, h.hash()),
            None => (0, ZERO_HASH.to_owned()),
        };
        let mut sign_head = |point: &ChainPoint| -> Result<SignedHead> {
            head_seq += 1;
            let signed = SignedHead::sign(
                Head {
                    version: 1,
                    head_seq,
                    state: HeadState::Open,
                    records: point.records,
                    last_hash: point.last_hash.clone(),
                    last_segment: point.segment,
                    last_checkpoint: point.checkpoint.clone(),
                    prev_head: prev_head.clone(),
                    written_at: rfc3339(SystemTime::now()),
                    public_key: public_key.to_hex(),
                },
                &key,
            )?;
            write_atomic(&head_path(&dir), &signed.to_bytes())?;
            prev_head = signed.hash();
            Ok(signed)
        };
        let head = match crashed {
            // Seal what is complete in the crashed segment, head first (see `seal`).
            Some(c) => {
                let checkpoint = Checkpoint {
                    version: CHECKPOINT_VERSION,
                    segment: c.segment,
                    first_seq: sealed.records,
                    count: c.leaves.len() as u64,
                    merkle_root: hex(&merkle_root(&c.leaves)),
                    last_hash: c.last_hash.clone(),
                    prev_checkpoint: sealed.checkpoint.clone(),
                    closed_at: rfc3339(SystemTime::now()),
                    torn_tail_bytes: c.torn_bytes,
                    public_key: public_key.to_hex(),
                };
                let (file, h) = signed_file(&checkpoint, |m| key.sign(m))?;
                sealed = ChainPoint {
                    records: c.records,
                    last_hash: c.last_hash,
                    segment: c.segment,
                    checkpoint: h,
                };
                let head = sign_head(&sealed)?;
                write_atomic(&checkpoint_path(&dir, c.segment), &file)?;
                head
            }
            None => sign_head(&sealed)?,
        };
        let resumed = sealed.records.checked_sub(1);
        let head = Arc::new(Mutex::new(head));
        let seg = first_free;
        let file = Self::create_segment(&dir, seg)?;
        let writer = Writer {
            dir,
            key,
            _lock: lock,
            max_bytes: config.max_segment_bytes,
            retention_days: config.events.retention_days,
            seg,
            file,
            seg_bytes: 0,
            seg_day: None,
            seg_first_seq: sealed.records,
            leaves: Vec::new(),
            next_seq: sealed.records,
            prev_hash: sealed.last_hash,
            prev_checkpoint: sealed.checkpoint,
            line: Vec::with_capacity(512),
            dirty: false,
            head: Arc::clone(&head),
            shipper: None,
            last_drop_report: None,
            routes: None,
            summary_interval: None,
            last_summary: Instant::now(),
            stopped: false,
            lost: 0,
        };
        Ok(Opened {
            writer,
            resumed,
            head,
        })
    }

    /// Hands every head written from now on (and every record, if configured) to
    /// `shipper`.
    pub(crate) fn with_shipper(mut self, shipper: Option<Arc<Shipper>>) -> Self {
        self.shipper = shipper;
        self
    }

    /// Writes the per-route K2K counts the senders gather in `routes` every `interval`
    /// (and at every flush, seal and close).
    pub(crate) fn with_route_counts(
        mut self,
        routes: Arc<RouteCounts>,
        interval: Option<Duration>,
    ) -> Self {
        self.routes = Some(routes);
        self.summary_interval = interval;
        self
    }

    /// Writes a `k2k.route_summary` record for every route counted since the last
    /// summary; with `close`, no more counts are taken (the log is closing). Once the
    /// writer has stopped they are counted as lost, like any record.
    fn write_summaries(&mut self, close: bool, failure: &Failure) {
        self.last_summary = Instant::now();
        let Some(routes) = &self.routes else {
            return;
        };
        for event in routes.take(close) {
            self.write_event(event, failure);
        }
    }

    /// Writes a record of the writer's own (encoded here, now), or counts it as lost
    /// once the writer has stopped; like every record, a failure stops the writer.
    fn write_event(&mut self, event: Event, failure: &Failure) {
        match EncodedRecord::encode(&event.record(), SystemTime::now()) {
            Ok(rec) => self.write_or_count(rec, failure),
            Err(e) => self.stop(failure, &e),
        }
    }

    /// Records the shipper's drops since the last report as `syslog.dropped`, at most
    /// once per [`DROP_REPORT_INTERVAL`] unless `now` (before the close record).
    fn report_drops(&mut self, now: bool, failure: &Failure) {
        let Some(shipper) = &self.shipper else {
            return;
        };
        if !now
            && self
                .last_drop_report
                .is_some_and(|t| t.elapsed() < DROP_REPORT_INTERVAL)
        {
            return;
        }
        let dropped = shipper.take_unreported();
        if dropped == 0 {
            return;
        }
        let event = Event::SyslogDropped {
            dropped,
            total_dropped: shipper.stats().dropped,
        };
        self.last_drop_report = Some(Instant::now());
        self.write_event(event, failure);
    }

    fn create_segment(dir: &Path, n: u64) -> Result<BufWriter<File>> {
        let f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(segment_path(dir, n))
            .map_err(|e| io_err("new audit segment", e))?;
        Ok(BufWriter::with_capacity(64 * 1024, f))
    }

    /// The writer thread's loop. `failure` is shared with the `AuditLog`: the first
    /// failed write is recorded there, the writer stops writing (see [`Self::stop`]),
    /// and from then on appends are refused and every flush, seal or close answers
    /// with the failure, so no record is lost without an error reaching someone.
    pub(crate) fn run(mut self, rx: Receiver<Command>, flush_interval: Duration, failure: Failure) {
        let mut last_flush = Instant::now();
        // A command taken from the queue while gathering a group commit, run next.
        let mut pending = None;
        loop {
            let cmd = match pending.take() {
                Some(c) => Ok(c),
                None => rx.recv_timeout(flush_interval),
            };
            match cmd {
                Ok(Command::Append(rec)) => self.write_or_count(rec, &failure),
                Ok(Command::Flush(ack)) => {
                    // Group commit: the records and flushes already queued behind this
                    // flush are written and answered by the same sync.
                    let mut acks = vec![ack];
                    for _ in 0..GROUP_COMMIT_MAX {
                        match rx.try_recv() {
                            Ok(Command::Append(rec)) => self.write_or_count(rec, &failure),
                            Ok(Command::Flush(a)) => acks.push(a),
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.write_summaries(false, &failure);
                    let r = self.guarded(&failure, Self::sync);
                    let failed = r.is_err();
                    let mut acks = acks.into_iter();
                    if let Some(first) = acks.next() {
                        let _ = first.send(r);
                    }
                    for a in acks {
                        let _ = a.send(if failed {
                            Err(stopped_error(&failure, self.lost))
                        } else {
                            Ok(())
                        });
                    }
                }
                Ok(Command::Seal(ack)) => {
                    self.write_summaries(false, &failure);
                    let r = self.guarded(&failure, |w| w.seal_and_roll(SystemTime::now()));
                    let _ = ack.send(r);
                }
                Ok(Command::Retention(now, ack)) => {
                    let r = self.guarded(&failure, |w| w.retention(now));
                    let _ = ack.send(r);
                }
                Ok(Command::Close(state, ack)) => {
                    // Drain what was queued before the close.
                    while let Ok(Command::Append(rec)) = rx.try_recv() {
                        self.write_or_count(rec, &failure);
                    }
                    self.write_summaries(true, &failure);
                    if !self.stopped {
                        self.report_drops(true, &failure);
                    }
                    // A stopped log is left as a crash leaves it: the next open seals
                    // the segment, its torn tail recorded.
                    let r = self.guarded(&failure, |w| w.seal(SystemTime::now(), state));
                    let _ = ack.send(r);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.write_summaries(true, &failure);
                    if !self.stopped {
                        self.report_drops(true, &failure);
                        let _ = self.seal(SystemTime::now(), HeadState::Open);
                    }
                    return;
                }
            }
            if self.stopped {
                continue;
            }
            self.report_drops(false, &failure);
            if self
                .summary_interval
                .is_some_and(|i| self.last_summary.elapsed() >= i)
            {
                self.write_summaries(false, &failure);
            }
            if self.dirty && last_flush.elapsed() >= flush_interval {
                if let Err(e) = self.file.flush() {
                    self.stop(&failure, &e.into());
                }
                self.dirty = false;
                last_flush = Instant::now();
            }
        }
    }

    /// Writes a record, or counts it as lost once the writer has stopped.
    fn write_or_count(&mut self, rec: EncodedRecord, failure: &Failure) {
        if self.stopped {
            self.lost += 1;
        } else if let Err(e) = self.append(&rec) {
            self.stop(failure, &e);
        }
    }

    /// Runs `op` unless the writer has stopped; a failure of `op` stops it.
    fn guarded<T>(
        &mut self,
        failure: &Failure,
        op: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        if self.stopped {
            return Err(stopped_error(failure, self.lost));
        }
        op(self).inspect_err(|e| self.stop(failure, e))
    }

    /// After a failed write nothing more is written: the segment ends where the disk
    /// refused (a torn final line at worst, which the next open seals and records), the
    /// chain and Merkle leaves stay those of the records on disk, and the bytes still in
    /// the write buffer are discarded rather than written later, after the tear.
    fn stop(&mut self, failure: &Failure, e: &Error) {
        tracing::error!(error = %e, "audit log write failed; the log accepts no more records");
        let _ = failure.set(e.to_string());
        self.stopped = true;
        if let Ok(f) = self.file.get_ref().try_clone() {
            let old = std::mem::replace(&mut self.file, BufWriter::with_capacity(0, f));
            let _ = old.into_parts();
        }
    }

    /// Links `rec` into the chain: its sequence number and `prev` spliced in, the line
    /// hashed (chain link and Merkle leaf) and written. The only serial step per record.
    fn append(&mut self, rec: &EncodedRecord) -> Result<()> {
        let at = rec.at;
        let day = utc_day(at);
        let mut line = std::mem::take(&mut self.line);
        rec.line_into(self.next_seq, &self.prev_hash, &mut line);
        let roll = !self.leaves.is_empty()
            && (self.seg_bytes + line.len() as u64 + 1 > self.max_bytes
                || self.seg_day.is_some_and(|d| d != day));
        // On a roll the record moves to the new segment; its prev stays the chain head.
        if roll && let Err(e) = self.seal_and_roll(at) {
            self.line = line;
            return Err(e);
        }
        self.seg_day.get_or_insert(day);
        let hash: [u8; 32] = Sha256::digest(&line).into();
        // Checkpoint format 2: the leaf is over the chain hash (one block, not a
        // second pass over the line).
        let leaf = leaf_hash(&hash);
        line.push(b'\n');
        let written = self.file.write_all(&line);
        if written.is_ok() {
            // Only a record handed to the file joins the Merkle tree and the chain.
            self.leaves.push(leaf);
            if let Some(s) = &self.shipper {
                s.ship_record(self.next_seq, &line[..line.len() - 1], at);
            }
            self.seg_bytes += line.len() as u64;
            set_hex(&mut self.prev_hash, &hash);
            self.next_seq += 1;
            self.dirty = true;
        }
        self.line = line;
        Ok(written?)
    }

    fn sync(&mut self) -> Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        self.dirty = false;
        Ok(())
    }

    /// Closes the current segment with a signed checkpoint and signs a head that covers
    /// it (`Closed` on a clean close).
    ///
    /// The head is written first: a checkpoint on disk then always has a head covering
    /// it, so `verify` reads a head older than the last checkpoint as a replaced head,
    /// never as a crash. A crash between the two writes leaves a head naming a segment
    /// without a checkpoint, whose records end exactly where the head says; `verify`
    /// reports that as open, and the next open seals the segment again.
    fn seal(&mut self, now: SystemTime, state: HeadState) -> Result<()> {
        self.sync()?;
        let checkpoint = Checkpoint {
            version: CHECKPOINT_VERSION,
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
        let sealed = ChainPoint {
            records: self.next_seq,
            last_hash: self.prev_hash.clone(),
            segment: self.seg,
            checkpoint: h.clone(),
        };
        self.write_head(&sealed, state, now)?;
        write_atomic(&checkpoint_path(&self.dir, self.seg), &file)?;
        self.prev_checkpoint = h;
        Ok(())
    }

    /// Signs the next head (number and `prev_head` follow the last one) for the log as
    /// it stands at `at`, and writes it atomically.
    fn write_head(&mut self, at: &ChainPoint, state: HeadState, now: SystemTime) -> Result<()> {
        let (head_seq, prev_head) = {
            let last = self.head.lock();
            (last.head().head_seq + 1, last.hash())
        };
        let head = SignedHead::sign(
            Head {
                version: 1,
                head_seq,
                state,
                records: at.records,
                last_hash: at.last_hash.clone(),
                last_segment: at.segment,
                last_checkpoint: at.checkpoint.clone(),
                prev_head,
                written_at: rfc3339(now),
                public_key: self.key.public_key().to_hex(),
            },
            &self.key,
        )?;
        write_atomic(&head_path(&self.dir), &head.to_bytes())?;
        if let Some(s) = &self.shipper {
            s.ship_head(&head);
        }
        *self.head.lock() = head;
        Ok(())
    }

    fn seal_and_roll(&mut self, now: SystemTime) -> Result<()> {
        self.seal(now, HeadState::Open)?;
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
            write_atomic(&watermark_path(&self.dir), &file)?;
            for n in &doomed {
                fs::remove_file(segment_path(&self.dir, *n))?;
                fs::remove_file(checkpoint_path(&self.dir, *n))?;
            }
            tracing::info!(segments = ?doomed, "audit retention deleted old segments");
            // The same facts under a new head number: a verifier reading the directory
            // meanwhile sees the head change and reads again.
            let current = self.head.lock().head().clone();
            let at = ChainPoint {
                records: current.records,
                last_hash: current.last_hash,
                segment: current.last_segment,
                checkpoint: current.last_checkpoint,
            };
            self.write_head(&at, HeadState::Open, SystemTime::now())?;
        }
        Ok(doomed)
    }
}
