//! The tamper-evident audit log.
//!
//! JSON lines in size- or day-bounded segment files; each record carries the SHA-256 of
//! the previous record's line bytes; each closed segment gets an Ed25519-signed
//! checkpoint (RFC 6962 Merkle root, counts, chain head, previous checkpoint); a signed
//! log head says where the log ends (rewritten with every checkpoint, and as a close
//! record by [`AuditLog::close`]); retention deletes whole old segments under a signed
//! watermark. An auditor verifies a copied log with the public key alone ([`verify`],
//! or `ringkernel audit verify`), and catches a directory rewound as a whole
//! with a head shipped elsewhere earlier ([`verify_with_anchor`]).
//!
//! ```
//! use ringkernel_core::security::audit::{
//!     AuditEvent, AuditLog, AuditLogConfig, LogStatus, verify, verify_with_anchor,
//! };
//!
//! # let tmp = tempfile::tempdir()?;
//! # let dir = tmp.path();
//! let log = AuditLog::open(AuditLogConfig::in_directory(dir))?;
//! log.append(AuditEvent::new("app.deploy").actor("host").target("processor_1"))?;
//! log.close()?; // seals the segment and signs a close record
//! let report = verify(dir, &log.public_key())?;
//! assert_eq!(report.records, 2); // ours, and the log's own `audit.open`
//! assert_eq!(report.status, LogStatus::Closed);
//! // Kept off the machine, the head's anchor later catches a rolled-back directory.
//! let anchor = log.head().anchor();
//! verify_with_anchor(dir, &log.public_key(), &anchor)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Never treat a truncated log as verified: [`verify`] returns it as
//! [`Error::AuditTruncated`], not `Ok`.
//!
//! Format, keys, retention, heads and how an auditor verifies: `docs/audit.md`.

mod event;
mod files;
pub(crate) mod format;
mod head;
mod record_links;
pub(crate) mod report;
mod route_summary;
pub mod syslog;
mod verify;
mod writer;

pub use event::{
    Event, Failure, KeySet, KeystoreFacts, Launched, MemoryOp, Refusal, RotationTrigger,
    ViolationAction, WatchdogAction,
};
pub use format::{
    AuditRecord, CHECKPOINT_VERSION, Checkpoint, Head, HeadState, Watermark, ZERO_HASH, leaf_hash,
    merkle_root, record_leaf,
};
pub use head::{Anchor, SignedHead};
pub use report::{LogStatus, StaleHead, TornTail, Truncation, VerifyReport};
pub use route_summary::K2kRecords;
use route_summary::{NotCounted, RouteCounts};

/// RFC 3339 UTC with microseconds, as used in audit records and reports.
pub fn format_time(t: SystemTime) -> String {
    format::rfc3339(t)
}
pub use verify::{verify, verify_with_anchor, verify_with_progress};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Sender, bounded};
use ed25519_dalek::Signer;
use parking_lot::Mutex;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::security::memory::SecureBuffer;
use format::EncodedRecord;
use syslog::{Shipper, SyslogConfig, SyslogStats};
use writer::{Command, Writer};

/// What the audit log records, and how long it keeps it: the four settings of the
/// public API page, written as a literal with nothing else to fill in.
///
/// ```
/// use ringkernel_core::security::audit::AuditConfig;
/// let config = AuditConfig {
///     log_k2k_messages: true,
///     log_memory_access: true,
///     log_violations: true,
///     retention_days: 90,
/// };
/// # let _ = config;
/// ```
///
/// Where the log lives and how it is written (directory, signing key, segment size,
/// flush interval) is an [`AuditLogConfig`]; an `AuditConfig` converts into one with
/// the defaults, so `RuntimeBuilder::with_audit_logging` takes either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// Record every K2K send (allowed and denied). Denied sends are also recorded as
    /// violations when `log_violations` is on.
    pub log_k2k_messages: bool,
    /// Record buffer allocations, frees, reads and writes.
    pub log_memory_access: bool,
    /// Record sandbox violations and watchdog actions.
    pub log_violations: bool,
    /// Delete closed segments older than this many days (0: keep forever).
    pub retention_days: u32,
}

/// Default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Default retention: 400 days (covers PCI-DSS 10.5.1's 12 months with margin).
pub const DEFAULT_RETENTION_DAYS: u32 = 400;
/// Default directory, relative to the working directory, of a log whose configuration
/// names none and whose runtime has no state directory.
pub const DEFAULT_DIRECTORY: &str = "ringkernel-audit";

impl Default for AuditConfig {
    /// Violations recorded (sends and memory access not), kept 400 days.
    fn default() -> Self {
        AuditConfig {
            log_k2k_messages: false,
            log_memory_access: false,
            log_violations: true,
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

/// Where and how the audit log is kept: its directory and signing key, segment size,
/// flush interval, what it records ([`AuditConfig`]), and what a runtime does once it
/// can no longer be written ([`AuditFailurePolicy`], fail-closed by default).
///
/// ```
/// use ringkernel_core::security::audit::{AuditConfig, AuditLogConfig};
/// let config = AuditLogConfig {
///     events: AuditConfig { log_k2k_messages: true, ..AuditConfig::default() },
///     max_segment_bytes: 16 << 20,
///     ..AuditLogConfig::in_directory("/var/log/ringkernel")
/// };
/// assert!(config.enabled);
/// ```
#[derive(Clone, Debug)]
pub struct AuditLogConfig {
    /// Whether to keep an audit log at all (`false` is refused in production mode).
    pub enabled: bool,
    /// What is recorded and how long it is kept.
    pub events: AuditConfig,
    /// Directory of the segment files (created if missing; one log per directory).
    /// `None`: `audit/` in the runtime's state directory when it has one (production
    /// with a keystore), else `./ringkernel-audit`.
    pub directory: Option<PathBuf>,
    /// The checkpoint signing key (`None`: the keystore's when the runtime has one,
    /// else a fresh random key; publish its public key).
    pub signing_key: Option<AuditSigningKey>,
    /// A segment is closed and signed when it would grow past this size.
    pub max_segment_bytes: u64,
    /// Written records reach the operating system at least this often.
    pub flush_interval: Duration,
    /// Ship every signed head (and, when configured, every record) to a syslog
    /// collector (`None`: keep the log local). See [`syslog`] and `docs/syslog.md`.
    pub syslog: Option<SyslogConfig>,
    /// What a runtime does once this log has stopped at a failed write (a full disk,
    /// an I/O error): refuse every audited operation (the default), or go on
    /// unaudited with the failure shown in its compliance snapshot.
    pub on_failure: AuditFailurePolicy,
    /// How K2K sends are recorded when `events.log_k2k_messages` is on: a record for
    /// each send (the default), or per-route summaries with exact counts for delivered
    /// sends ([`K2kRecords::PerRoute`]).
    pub k2k_records: K2kRecords,
}

/// What a runtime does once its audit log has stopped at a failed write (a full disk,
/// a file-size limit, an I/O error). The log itself accepts nothing after the first
/// failed write either way ([`AuditLog::stopped`]); the policy decides whether the
/// runtime goes on without it.
///
/// ```
/// use ringkernel_core::security::audit::{AuditFailurePolicy, AuditLogConfig};
/// let config = AuditLogConfig::in_directory("/var/log/ringkernel");
/// assert_eq!(config.on_failure, AuditFailurePolicy::FailClosed);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuditFailurePolicy {
    /// The default: once the log has stopped, the runtime refuses every operation it
    /// would audit (launch, K2K send, buffer allocation, state save, export and
    /// restore, explicit key rotation, and buffer write, read and free when memory
    /// access is audited; timed rotation is held) with an [`Error::Io`] that names the
    /// log's failure, so nothing happens unrecorded. Stopping
    /// kernels and shutting down still work. An operation already under way when the
    /// write failed may have its record among the lost ones the error counts.
    #[default]
    FailClosed,
    /// The runtime goes on unaudited; the records it could not write are counted
    /// ([`AuditLog::unrecorded`]) and the compliance snapshot shows the stopped log
    /// (its check AUD-01 is non-compliant, naming the cause). For development, or where availability is
    /// explicitly preferred over a complete trail.
    Continue,
}

impl AuditFailurePolicy {
    /// `fail-closed` or `continue`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditFailurePolicy::FailClosed => "fail-closed",
            AuditFailurePolicy::Continue => "continue",
        }
    }
}

impl Default for AuditLogConfig {
    fn default() -> Self {
        AuditLogConfig {
            enabled: true,
            events: AuditConfig::default(),
            directory: None,
            signing_key: None,
            max_segment_bytes: DEFAULT_SEGMENT_BYTES,
            flush_interval: Duration::from_millis(100),
            syslog: None,
            on_failure: AuditFailurePolicy::FailClosed,
            k2k_records: K2kRecords::EachSend,
        }
    }
}

impl From<AuditConfig> for AuditLogConfig {
    /// What `events` says is recorded, everything else as by default.
    fn from(events: AuditConfig) -> Self {
        AuditLogConfig {
            events,
            ..Self::default()
        }
    }
}

impl AuditLogConfig {
    /// The defaults, in `dir`.
    pub fn in_directory(dir: impl AsRef<Path>) -> Self {
        AuditLogConfig {
            directory: Some(dir.as_ref().to_path_buf()),
            ..Self::default()
        }
    }

    /// No audit log (development only).
    pub fn disabled() -> Self {
        AuditLogConfig {
            enabled: false,
            ..Self::default()
        }
    }

    /// The directory the log is kept in: the one configured, else `./ringkernel-audit`.
    pub fn resolved_directory(&self) -> &Path {
        self.directory
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_DIRECTORY))
    }
}

/// The Ed25519 key that signs checkpoints and watermarks. Its 32-byte seed lives in a
/// [`SecureBuffer`] (locked, zeroed); `Debug` shows only the public key.
#[derive(Clone)]
pub struct AuditSigningKey {
    seed: SecureBuffer,
}

impl AuditSigningKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self> {
        let mut seed = SecureBuffer::new(32);
        getrandom::fill(seed.as_mut_slice()).map_err(Error::Randomness)?;
        Ok(AuditSigningKey { seed })
    }

    /// A key from its 32-byte seed (the caller should zero its copy).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        AuditSigningKey {
            seed: SecureBuffer::from_slice(seed),
        }
    }

    fn with_key<R>(&self, f: impl FnOnce(&ed25519_dalek::SigningKey) -> R) -> R {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.seed.as_slice());
        let key = ed25519_dalek::SigningKey::from_bytes(&bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        f(&key) // `key` is zeroized on drop
    }

    /// The public key auditors verify with.
    pub fn public_key(&self) -> AuditPublicKey {
        AuditPublicKey(self.with_key(|k| k.verifying_key().to_bytes()))
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.with_key(|k| k.sign(msg).to_bytes())
    }
}

impl fmt::Debug for AuditSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AuditSigningKey(public {}, secret [REDACTED])",
            self.public_key()
        )
    }
}

/// An Ed25519 public key for verifying the log.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditPublicKey(pub [u8; 32]);

impl AuditPublicKey {
    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self> {
        format::unhex(s.trim())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(AuditPublicKey)
            .ok_or_else(|| Error::InvalidConfig("a public key is 64 hex digits".into()))
    }

    /// 64 hex digits.
    pub fn to_hex(&self) -> String {
        format::hex(&self.0)
    }
}

impl fmt::Display for AuditPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for AuditPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditPublicKey({self})")
    }
}

/// How an audited operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditResult {
    /// It happened.
    Ok,
    /// It was refused by a security layer.
    Denied,
    /// It failed.
    Error,
}

impl AuditResult {
    fn as_str(self) -> &'static str {
        match self {
            AuditResult::Ok => "ok",
            AuditResult::Denied => "denied",
            AuditResult::Error => "error",
        }
    }
}

/// A record to append: event name, actor, target, result and details. Never put key
/// material or message payloads in it.
///
/// The runtime's own events are declared, with their fields, in [`Event`], which
/// [`Event::record`] turns into this shape. Build one with [`AuditEvent::new`] for an
/// application's own events.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    pub(crate) event: String,
    pub(crate) actor: String,
    pub(crate) target: String,
    pub(crate) result: AuditResult,
    pub(crate) details: serde_json::Map<String, Value>,
}

impl AuditEvent {
    /// An application's own event named `event` (e.g. `app.deploy`), actor `runtime`,
    /// result ok. The runtime's events are [`Event`]s; use a name outside theirs.
    pub fn new(event: &str) -> Self {
        AuditEvent {
            event: event.to_owned(),
            actor: "runtime".into(),
            target: String::new(),
            result: AuditResult::Ok,
            details: serde_json::Map::new(),
        }
    }

    /// Who did it.
    pub fn actor(mut self, actor: impl fmt::Display) -> Self {
        self.actor = actor.to_string();
        self
    }

    /// What it was done to.
    pub fn target(mut self, target: impl fmt::Display) -> Self {
        self.target = target.to_string();
        self
    }

    /// How it ended.
    pub fn result(mut self, result: AuditResult) -> Self {
        self.result = result;
        self
    }

    /// One detail.
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

struct LogInner {
    config: AuditLogConfig,
    public_key: AuditPublicKey,
    tx: Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    appended: AtomicU64,
    head: Arc<Mutex<SignedHead>>,
    shipper: Option<Arc<Shipper>>,
    /// The writer's first write failure: appends are refused from then on.
    failure: writer::Failure,
    /// Appends refused because the writer had stopped.
    unrecorded: AtomicU64,
    /// Delivered K2K sends counted for the next per-route summaries.
    routes: Arc<RouteCounts>,
}

impl LogInner {
    /// Sends what the shipper still holds (for at most its shutdown timeout) and stops it.
    fn stop_shipper(&self) {
        if let Some(s) = &self.shipper {
            s.shutdown();
        }
    }
}

/// An open audit log. Cheap to clone; appends from any thread form one chain.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<LogInner>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("directory", &self.directory())
            .field("public_key", &self.inner.public_key)
            .finish_non_exhaustive()
    }
}

/// Records waiting for the writer thread, at most; appends wait when it is this far
/// behind (an audit log never drops records).
pub const QUEUE_CAPACITY: usize = 65_536;

impl AuditLog {
    /// Opens (or resumes) the log in `config`'s directory. A log left unsealed by a
    /// crash is sealed first, its torn final line (if any) recorded in the checkpoint.
    pub fn open(config: impl Into<AuditLogConfig>) -> Result<Self> {
        let mut config = config.into();
        config.directory = Some(config.resolved_directory().to_path_buf());
        if !config.enabled {
            return Err(Error::InvalidConfig(
                "the audit log is disabled in this configuration".into(),
            ));
        }
        if config.max_segment_bytes < 4096 {
            return Err(Error::InvalidConfig(
                "max_segment_bytes must be at least 4096".into(),
            ));
        }
        if config
            .k2k_records
            .summary_interval()
            .is_some_and(|i| i < Duration::from_millis(1))
        {
            return Err(Error::InvalidConfig(
                "K2kRecords::PerRoute needs an interval of at least 1 ms".into(),
            ));
        }
        let key = match &config.signing_key {
            Some(k) => k.clone(),
            None => AuditSigningKey::generate()?,
        };
        let public_key = key.public_key();
        let shipper = match &config.syslog {
            Some(c) => Some(Arc::new(Shipper::start(c)?)),
            None => None,
        };
        let writer::Opened {
            writer,
            resumed,
            head,
        } = Writer::open(&config, key)?;
        if let Some(s) = &shipper {
            s.ship_head(&head.lock());
        }
        let routes = Arc::new(RouteCounts::new());
        let writer = writer
            .with_shipper(shipper.clone())
            .with_route_counts(Arc::clone(&routes), config.k2k_records.summary_interval());
        let (tx, rx) = bounded(QUEUE_CAPACITY);
        let flush_interval = config.flush_interval;
        let failure = writer::Failure::default();
        let writer_failure = failure.clone();
        let thread = std::thread::Builder::new()
            .name("rk-audit".into())
            .spawn(move || writer.run(rx, flush_interval, writer_failure))
            .map_err(|source| Error::ThreadSpawn {
                what: "audit writer",
                source,
            })?;
        let log = AuditLog {
            inner: Arc::new(LogInner {
                config,
                public_key,
                tx,
                thread: Mutex::new(Some(thread)),
                closed: AtomicBool::new(false),
                appended: AtomicU64::new(0),
                head,
                failure,
                unrecorded: AtomicU64::new(0),
                shipper,
                routes,
            }),
        };
        // A restart record: where the earlier run's chain ended, and the signed head
        // (hash) the new head links to, so the chain runs through the restart.
        let previous_head = resumed.map(|_| log.inner.head.lock().head().prev_head.clone());
        log.append(Event::AuditOpen {
            public_key,
            resumed_after_seq: resumed,
            previous_head,
        })?;
        Ok(log)
    }

    /// The configuration (its directory resolved).
    pub fn config(&self) -> &AuditLogConfig {
        &self.inner.config
    }

    /// The public key checkpoints are signed for.
    pub fn public_key(&self) -> AuditPublicKey {
        self.inner.public_key
    }

    /// The log's directory.
    pub fn directory(&self) -> &Path {
        self.inner.config.resolved_directory()
    }

    /// Records appended through this handle's log since it was opened.
    pub fn appended(&self) -> u64 {
        self.inner.appended.load(Ordering::Relaxed)
    }

    /// Why the writer stopped, once a write has failed (the I/O error's text, e.g.
    /// "No space left on device (os error 28)"); `None` while it is writing. The log
    /// accepts no more records after that; reopen it once the cause is fixed.
    pub fn stopped(&self) -> Option<&str> {
        self.inner.failure.get().map(String::as_str)
    }

    /// Appends refused since the writer stopped: records that are not in the log.
    /// (Records queued before the failure was known and dropped by the writer are
    /// counted in the error a flush or close returns.)
    pub fn unrecorded(&self) -> u64 {
        self.inner.unrecorded.load(Ordering::Relaxed)
    }

    /// Queues a record. Returns at once unless the writer is [`QUEUE_CAPACITY`] records
    /// behind; the record reaches the OS within the flush interval.
    ///
    /// Takes an [`Event`] of the runtime or an application's own [`AuditEvent`].
    pub fn append(&self, event: impl Into<AuditEvent>) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::AuditLogClosed);
        }
        self.refuse_once_stopped()?;
        // Encoded here, on the appending thread: producers serialise side by side, and
        // the writer thread only links each record into the chain.
        let record = EncodedRecord::encode(&event.into(), SystemTime::now())?;
        self.inner
            .tx
            .send(Command::Append(record))
            .map_err(|_| Error::backend("the audit writer has stopped"))?;
        self.inner.appended.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Counts a delivered K2K send for its route's next `k2k.route_summary` record
    /// ([`K2kRecords::PerRoute`]); the runtime calls it instead of appending a
    /// `k2k.send` record. Refused like [`AuditLog::append`] once the log is closed or
    /// has stopped.
    pub(crate) fn count_k2k_send(
        &self,
        from: Option<&crate::k2k::KernelId>,
        to: &str,
        topic: &str,
        bytes: u64,
    ) -> Result<()> {
        self.refuse_once_stopped()?;
        match self.inner.routes.count(from, to, topic, bytes) {
            Ok(()) => Ok(()),
            Err(NotCounted::Closed) => Err(Error::AuditLogClosed),
        }
    }

    /// Queues the `k2k.route_summary` records of the routes from or to `kernel` now,
    /// ahead of the other routes' next interval ([`K2kRecords::PerRoute`]; nothing
    /// otherwise). The runtime calls it when the kernel stops, just before its
    /// `kernel.stopped` record, so that the log shows a kernel's traffic before its end.
    pub(crate) fn summarize_routes_of(&self, kernel: &crate::k2k::KernelId) {
        for event in self.inner.routes.take_kernel(kernel) {
            if let Err(e) = self.append(event) {
                tracing::error!(error = %e, %kernel, "a route summary could not be queued");
            }
        }
    }

    /// Once the writer has stopped, a record (or count) is refused and counted as
    /// unrecorded.
    fn refuse_once_stopped(&self) -> Result<()> {
        if self.inner.failure.get().is_some() {
            self.inner.unrecorded.fetch_add(1, Ordering::Relaxed);
            return Err(writer::stopped_error(&self.inner.failure, 0));
        }
        Ok(())
    }

    fn call<T>(&self, make: impl FnOnce(Sender<Result<T>>) -> Command) -> Result<T> {
        let (tx, rx) = bounded(1);
        self.inner
            .tx
            .send(make(tx))
            .map_err(|_| Error::backend("the audit writer has stopped"))?;
        rx.recv()
            .map_err(|_| Error::backend("the audit writer has stopped"))?
    }

    /// Writes everything queued so far and syncs it to disk.
    pub fn flush(&self) -> Result<()> {
        self.call(Command::Flush)
    }

    /// Closes and signs the current segment now (even if small) and starts a new one.
    pub fn seal_segment(&self) -> Result<()> {
        self.call(Command::Seal)
    }

    /// Deletes closed segments whose checkpoint is older than `now` minus the
    /// retention period, under a signed watermark. Returns the deleted segment numbers.
    /// Retention also runs by itself each time a segment is sealed.
    pub fn apply_retention(&self, now: SystemTime) -> Result<Vec<u64>> {
        self.call(|tx| Command::Retention(now, tx))
    }

    /// Verifies the log on disk (after a flush) with this log's public key.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.flush()?;
        verify(self.directory(), &self.public_key())
    }

    /// The last signed head: how many records the log held and the chain hash when a
    /// segment was last sealed (or the log opened or closed). Ship it off the machine
    /// (its [`SignedHead::to_bytes`] is the signed file) and give its
    /// [`SignedHead::anchor`] to [`verify_with_anchor`] later: that catches a directory
    /// rewound to an older copy. Records appended since are not covered yet; call
    /// [`AuditLog::seal_segment`] first for a head that covers everything so far.
    pub fn head(&self) -> SignedHead {
        self.inner.head.lock().clone()
    }

    /// What the syslog shipper has done so far (`None`: no shipper configured).
    pub fn syslog_stats(&self) -> Option<SyslogStats> {
        self.inner.shipper.as_ref().map(|s| s.stats())
    }

    /// Writes, seals the current segment, signs a closed head (the close record) and
    /// stops the writer. Later appends fail; calling it again does nothing. Dropping
    /// the last handle without `close()` also seals, but signs an open head.
    ///
    /// With a syslog shipper, waits up to its `shutdown_timeout` for the close record
    /// and whatever else is queued to leave.
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let r = self.call(|tx| Command::Close(HeadState::Closed, tx));
        if let Some(t) = self.inner.thread.lock().take() {
            let _ = t.join();
        }
        self.inner.stop_shipper();
        r
    }
}

impl Drop for LogInner {
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let (tx, rx) = bounded(1);
            // Dropped without `close()`: seal and sign, but as an open head, so that
            // `verify` does not report a clean close that never happened.
            if self.tx.send(Command::Close(HeadState::Open, tx)).is_ok() {
                let _ = rx.recv();
            }
            if let Some(t) = self.thread.lock().take() {
                let _ = t.join();
            }
        }
        self.stop_shipper();
    }
}
