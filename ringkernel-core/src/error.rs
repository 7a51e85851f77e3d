//! The one error type of the runtime and its security layers.
//!
//! Every fallible public function returns [`Result<T>`]. Variants are typed so that a
//! caller can match on what happened (a full queue is retried, a denied route is not);
//! none of them carries key material or message payloads.

use std::time::Duration;

/// Result alias used throughout `ringkernel-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An underlying error kept as the [`source`](std::error::Error::source) of an
/// [`Error::Backend`] or [`Error::Corrupt`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `": <source>"` when there is a source, so that printing an [`Error`] alone (as most
/// callers do) still says what the driver or parser said.
fn source_suffix(source: &Option<BoxError>) -> String {
    source
        .as_ref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default()
}

/// Everything that can go wrong in the runtime, its backends and its security layers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A kernel id was empty, too long, or held a character ids may not hold
    /// (control characters, invisible or bidirectional format characters of Unicode
    /// category Cf, line separators, or the pattern characters `*` and `?`).
    #[error("invalid kernel id {id:?}: {reason}")]
    InvalidKernelId {
        /// The id as given.
        id: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// `launch` was called with the id of a kernel that is still registered.
    #[error("a kernel with id {id:?} is already running")]
    DuplicateKernel {
        /// The id already in use.
        id: String,
    },

    /// No kernel with this id is registered in the runtime.
    #[error("no kernel with id {id:?}")]
    UnknownKernel {
        /// The id that was looked up.
        id: String,
    },

    /// The kernel has stopped (or is stopping) and accepts no more messages or work.
    #[error("kernel {id:?} has terminated")]
    KernelTerminated {
        /// The terminated kernel.
        id: String,
    },

    /// The destination's input queue is full. Nothing was enqueued; the caller may retry
    /// (see `KernelHandle::send_timeout` for a bounded blocking send).
    #[error("input queue of kernel {id:?} is full ({capacity} messages)")]
    QueueFull {
        /// The destination kernel.
        id: String,
        /// Its queue capacity in messages.
        capacity: usize,
    },

    /// Waiting for something (a kernel to stop, queue space) took longer than allowed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),

    /// The runtime has been shut down; no more launches or sends are accepted.
    #[error("the runtime has been shut down")]
    RuntimeShutDown,

    /// A buffer id that does not exist (never allocated, already freed, or owned by
    /// another kernel).
    #[error("unknown buffer {0}")]
    UnknownBuffer(u64),

    /// A read or write outside a buffer's bounds.
    #[error("access of {len} bytes at offset {offset} is outside buffer {buffer} of {size} bytes")]
    OutOfBounds {
        /// The buffer accessed.
        buffer: u64,
        /// Requested start.
        offset: u64,
        /// Requested length.
        len: u64,
        /// The buffer's size.
        size: u64,
    },

    /// An allocation size of zero, or one the backend cannot represent.
    #[error("invalid allocation size {0}")]
    InvalidAllocation(u64),

    /// The backend cannot be used here (no driver, no adapter, feature missing).
    #[error("backend unavailable: {reason}")]
    BackendUnavailable {
        /// Why, in words a user can act on.
        reason: String,
    },

    /// The backend was asked for something it does not implement (for example a host
    /// handler on a backend that only runs shader programs).
    #[error("not supported by the {backend} backend: {what}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// What was asked.
        what: String,
    },

    /// A device or system operation failed after the backend was set up. Build it with
    /// [`Error::backend`], or [`Error::backend_caused_by`] to keep the driver's own error
    /// as [`source`](std::error::Error::source).
    #[error("backend error: {what}{}", source_suffix(.source))]
    Backend {
        /// What failed, in words.
        what: String,
        /// The underlying error (wgpu, cudarc, the OS), when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// A configuration value is invalid or, in production mode, insecure. The message
    /// names the fix.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A control block or message was corrupted in a way that is not a cryptographic
    /// failure (wrong length, impossible field values).
    ///
    /// Build it with [`Error::corrupt`], or [`Error::corrupt_caused_by`] to keep the
    /// parser's own error as [`source`](std::error::Error::source).
    #[error("corrupt {what}: {reason}{}", source_suffix(.source))]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// What was wrong with it.
        reason: String,
        /// The parser's error (serde_json, ...), when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// A kernel's message handler panicked; the kernel was stopped.
    #[error("kernel {id:?} panicked: {message}")]
    KernelPanicked {
        /// The kernel.
        id: String,
        /// The panic message, if it was a string.
        message: String,
    },

    /// Authentication failed: the sealed bytes were modified, moved to another kernel or
    /// buffer, relabelled, or opened with the wrong key. Nothing of the plaintext is
    /// returned. This is fatal for the region.
    #[error("authentication failed: sealed data was modified, moved or opened with the wrong key")]
    Tampered,

    /// The envelope names a key epoch that has been retired and zeroized
    /// (crypto-erasure): what was sealed under it can no longer be opened by anyone.
    #[error("key epoch {epoch} has been retired; data sealed under it is unrecoverable")]
    KeyRetired {
        /// The retired epoch.
        epoch: u32,
    },

    /// The envelope names a key epoch this instance never had.
    #[error("unknown key epoch {epoch}")]
    UnknownKeyEpoch {
        /// The epoch named in the envelope.
        epoch: u32,
    },

    /// The sealed bytes are not a well-formed envelope (wrong magic, version, length,
    /// algorithm id). Parsing never panics; it returns this.
    #[error("malformed sealed envelope: {0}")]
    MalformedEnvelope(String),

    /// A sealed region was opened for a different kernel, buffer or runtime instance
    /// than the one it was sealed for (moved, or foreign).
    #[error("sealed data belongs to another context (runtime instance, kernel or buffer)")]
    WrongContext,

    /// A sealed region of this kernel was sealed by an earlier launch (incarnation) of
    /// it: replayed or stale, not tampered.
    #[error(
        "replayed or stale sealed data: sealed by launch {found} of this kernel, which is now at launch {expected}"
    )]
    StaleIncarnation {
        /// The kernel's current launch incarnation.
        expected: u32,
        /// The incarnation named in the envelope.
        found: u32,
    },

    /// The envelope's format version is one this build no longer (or not yet) accepts.
    #[error(
        "sealed envelope format version {found} is not accepted (this build reads version {supported})"
    )]
    EnvelopeVersion {
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },

    /// A sealed region carries an older (or otherwise unexpected) sequence number than
    /// the latest sealed: a replay.
    #[error("replayed or stale sealed data: expected sequence {expected}, found {found}")]
    Replay {
        /// The sequence the opener expected.
        expected: u64,
        /// The sequence in the envelope.
        found: u64,
    },

    /// A key-encryption key (password, key file, bytes) other than the one a keystore
    /// was sealed under; the message names the fix.
    #[error("wrong key-encryption key: {0}")]
    WrongKey(String),

    /// A kernel-state snapshot older than the latest exported for its kernel, or not the
    /// generation the caller named: replayed or stale, not tampered.
    #[error(
        "replayed or stale state snapshot of kernel {kernel:?}: generation {found}, expected {expected}"
    )]
    StaleSnapshot {
        /// The kernel.
        kernel: String,
        /// The generation the restore expected (the latest exported).
        expected: u32,
        /// The generation offered.
        found: u32,
    },

    /// The password does not match the key metadata's check value.
    #[error("wrong password for this key")]
    WrongPassword,

    /// Encryption is configured as `Algorithm::None`; nothing can be sealed.
    #[error("encryption is disabled (Algorithm::None)")]
    EncryptionDisabled,

    /// The kernel sandbox refused the operation (and recorded a violation).
    #[error("denied by the sandbox for kernel {kernel:?}: {reason}")]
    Denied {
        /// The kernel whose operation was refused.
        kernel: String,
        /// The kind of violation.
        violation: crate::kinds::ViolationKind,
        /// What was violated, with the numbers.
        reason: String,
    },

    /// The audit log failed verification: a record or sealed segment was modified,
    /// removed from the middle, reordered, duplicated or cut short, a checkpoint,
    /// watermark or head was forged, or what remains contradicts its signed head. Cuts
    /// at the end of the log are [`Error::AuditTruncated`].
    #[error("audit log integrity failure in segment {segment}{}: {reason}", record.map(|r| format!(", record {r}")).unwrap_or_default())]
    AuditIntegrity {
        /// The first bad segment.
        segment: u64,
        /// The first bad record, when one can be named.
        record: Option<u64>,
        /// What is wrong.
        reason: String,
    },

    /// The audit log is shorter than its own signed head or an external anchor proves it
    /// was: records, segments, a checkpoint or the head itself were cut, or the whole
    /// directory was rolled back to an older copy. What remains verified (tampering with
    /// it is [`Error::AuditIntegrity`]); `report` says what was checked, and
    /// `report.truncation()` what is missing.
    #[error("audit log truncated: {}", report.truncation().map(ToString::to_string).unwrap_or_default())]
    AuditTruncated {
        /// What verification found; its status is `LogStatus::Truncated`.
        report: Box<crate::security::audit::report::VerifyReport>,
    },

    /// There is no audit log to verify: the directory holds no signed head and no
    /// segments (or does not exist). Either it is the wrong directory or the whole log,
    /// head included, was deleted; only an external anchor tells which. Never reported as
    /// a verified log of 0 records.
    #[error("no audit log in {}: no signed head and no segments (a wrong directory, or the whole log was deleted; an external anchor tells which)", directory.display())]
    AuditLogMissing {
        /// The directory that was given.
        directory: std::path::PathBuf,
    },

    /// A shutdown ended with kernels that did not stop in time, or without closing the
    /// audit log (a write failure had stopped it). Everything else was stopped and
    /// freed; the report names what stayed stuck and why the log did not close.
    #[error("{}", shutdown_incomplete(report))]
    ShutdownIncomplete {
        /// What the shutdown did, with the stuck kernels.
        report: Box<crate::kinds::ShutdownReport>,
    },

    /// A message the runtime does not carry: its topic is too long or holds a character
    /// topics may not hold. Nothing was sent.
    #[error("invalid message: {0}")]
    InvalidMessage(String),

    /// Data larger than the limit of where it goes (a payload, a sealed record, a
    /// stream). Nothing was sent or sealed.
    #[error("{what} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size in bytes.
        len: u64,
        /// The limit in bytes.
        max: u64,
    },

    /// A counter that must never wrap or be reused has run out (key epochs, a kernel
    /// id's launch incarnations or snapshot generations).
    #[error("exhausted: {0}")]
    Exhausted(String),

    /// File-system error (audit log, report export).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// The operating system's random generator failed (keys, salts and nonces come
    /// from it; nothing is sealed or generated without it).
    #[error("the OS random generator failed: {0}")]
    Randomness(#[source] getrandom::Error),

    /// A thread the runtime needs (a kernel's, the ticker, the audit writer) could not
    /// be started.
    #[error("cannot start the {what} thread: {source}")]
    ThreadSpawn {
        /// Which thread.
        what: &'static str,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// The PKCS#11 token holding a keystore's key-encryption key could not be used: its
    /// module would not load, the token or the key is not there, the PIN was refused or
    /// could not be read, or the token failed an operation. The message names the
    /// module, token or key label it concerns, never the PIN.
    #[error("PKCS#11 token: {failure}: {reason}")]
    Token {
        /// What went wrong, for matching.
        failure: TokenFailure,
        /// What the operator needs to fix it (names the module, token or key).
        reason: String,
    },

    /// A record was appended to an audit log that was closed (by
    /// [`AuditLog::close`](crate::security::audit::AuditLog::close) or the runtime's
    /// shutdown): a closed log takes no more records.
    #[error("the audit log is closed")]
    AuditLogClosed,
}

/// What went wrong with a PKCS#11 token ([`Error::Token`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenFailure {
    /// The PKCS#11 module (the vendor's shared library) is missing or would not load.
    ModuleUnavailable,
    /// No token in the module matches the configured slot or token label.
    TokenNotFound,
    /// The token refused the PIN (wrong, locked, or of an invalid length).
    WrongPin,
    /// The PIN could not be read from its environment variable or file.
    PinUnavailable,
    /// The token holds no key with the configured label.
    KeyNotFound,
    /// The key is there but unfit to be a key-encryption key (not AES-256, extractable
    /// or not sensitive), or the label names more than one key.
    UnfitKey,
    /// The token failed an operation (the message names the PKCS#11 return code).
    Failed,
}

impl std::fmt::Display for TokenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenFailure::ModuleUnavailable => "module unavailable",
            TokenFailure::TokenNotFound => "token not found",
            TokenFailure::WrongPin => "PIN refused",
            TokenFailure::PinUnavailable => "PIN unavailable",
            TokenFailure::KeyNotFound => "key not found",
            TokenFailure::UnfitKey => "unfit key",
            TokenFailure::Failed => "operation failed",
        })
    }
}

/// The message of [`Error::ShutdownIncomplete`].
fn shutdown_incomplete(report: &crate::kinds::ShutdownReport) -> String {
    let mut parts = Vec::new();
    if !report.stuck.is_empty() {
        parts.push(format!(
            "shutdown left {} kernel(s) stuck: {}",
            report.stuck.len(),
            report.stuck.join(", ")
        ));
    }
    if let Some(why) = &report.audit_log_not_closed {
        parts.push(format!("shutdown could not close the audit log: {why}"));
    }
    if parts.is_empty() {
        parts.push("shutdown incomplete".to_owned());
    }
    parts.join("; ")
}

impl Error {
    /// An [`Error::Backend`] with no underlying error.
    pub fn backend(what: impl Into<String>) -> Self {
        Error::Backend {
            what: what.into(),
            source: None,
        }
    }

    /// An [`Error::Backend`] that keeps the driver's (or the OS's) error as its source.
    pub fn backend_caused_by(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Backend {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }

    /// An [`Error::Corrupt`] with no underlying error.
    pub fn corrupt(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            what,
            reason: reason.into(),
            source: None,
        }
    }

    /// An [`Error::Corrupt`] that keeps the parser's error as its source.
    pub fn corrupt_caused_by(
        what: &'static str,
        reason: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Corrupt {
            what,
            reason: reason.into(),
            source: Some(Box::new(source)),
        }
    }

    /// For failures to open sealed data or to verify the log: what happened, in one
    /// word, as audit records and reports name it (`tampered`, `stale`, `replayed`,
    /// `wrong_context`, `wrong_key`, `unknown_key_epoch`, `key_retired`, `malformed`,
    /// `truncated`). `None` for every other error.
    pub fn integrity_kind(&self) -> Option<&'static str> {
        Some(match self {
            Error::Tampered | Error::AuditIntegrity { .. } => "tampered",
            Error::StaleIncarnation { .. } | Error::StaleSnapshot { .. } => "stale",
            Error::Replay { .. } => "replayed",
            Error::WrongContext => "wrong_context",
            Error::WrongKey(_) | Error::WrongPassword => "wrong_key",
            Error::UnknownKeyEpoch { .. } => "unknown_key_epoch",
            Error::KeyRetired { .. } => "key_retired",
            Error::MalformedEnvelope(_) | Error::EnvelopeVersion { .. } => "malformed",
            Error::AuditTruncated { .. } | Error::AuditLogMissing { .. } => "truncated",
            _ => return None,
        })
    }

    /// The stable numeric code of this error (see [`ErrorCode`]), stored in a control
    /// block's `last_error` so that GPU-side code and the host agree on numbers.
    pub fn code(&self) -> u32 {
        self.error_code() as u32
    }

    /// The kind of this error as an [`ErrorCode`].
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Error::InvalidKernelId { .. } => ErrorCode::InvalidKernelId,
            Error::DuplicateKernel { .. } => ErrorCode::DuplicateKernel,
            Error::UnknownKernel { .. } => ErrorCode::UnknownKernel,
            Error::KernelTerminated { .. } => ErrorCode::KernelTerminated,
            Error::QueueFull { .. } => ErrorCode::QueueFull,
            Error::Timeout(_) => ErrorCode::Timeout,
            Error::RuntimeShutDown => ErrorCode::RuntimeShutDown,
            Error::UnknownBuffer(_) => ErrorCode::UnknownBuffer,
            Error::OutOfBounds { .. } => ErrorCode::OutOfBounds,
            Error::InvalidAllocation(_) => ErrorCode::InvalidAllocation,
            Error::BackendUnavailable { .. } => ErrorCode::BackendUnavailable,
            Error::Unsupported { .. } => ErrorCode::Unsupported,
            Error::Backend { .. } => ErrorCode::Backend,
            Error::InvalidConfig(_) => ErrorCode::InvalidConfig,
            Error::Corrupt { .. } => ErrorCode::Corrupt,
            Error::KernelPanicked { .. } => ErrorCode::KernelPanicked,
            Error::Io(_) => ErrorCode::Io,
            Error::Tampered => ErrorCode::Tampered,
            Error::KeyRetired { .. } => ErrorCode::KeyRetired,
            Error::UnknownKeyEpoch { .. } => ErrorCode::UnknownKeyEpoch,
            Error::MalformedEnvelope(_) => ErrorCode::MalformedEnvelope,
            Error::WrongContext => ErrorCode::WrongContext,
            Error::Replay { .. } => ErrorCode::Replay,
            Error::WrongPassword => ErrorCode::WrongPassword,
            Error::EncryptionDisabled => ErrorCode::EncryptionDisabled,
            Error::Denied { .. } => ErrorCode::Denied,
            Error::AuditIntegrity { .. } => ErrorCode::AuditIntegrity,
            Error::StaleIncarnation { .. } => ErrorCode::StaleIncarnation,
            Error::EnvelopeVersion { .. } => ErrorCode::EnvelopeVersion,
            Error::WrongKey(_) => ErrorCode::WrongKey,
            Error::AuditTruncated { .. } => ErrorCode::AuditTruncated,
            Error::AuditLogMissing { .. } => ErrorCode::AuditLogMissing,
            Error::StaleSnapshot { .. } => ErrorCode::StaleSnapshot,
            Error::ShutdownIncomplete { .. } => ErrorCode::ShutdownIncomplete,
            Error::InvalidMessage(_) => ErrorCode::InvalidMessage,
            Error::TooLarge { .. } => ErrorCode::TooLarge,
            Error::Exhausted(_) => ErrorCode::Exhausted,
            Error::Randomness(_) => ErrorCode::Randomness,
            Error::ThreadSpawn { .. } => ErrorCode::ThreadSpawn,
            Error::Token { .. } => ErrorCode::Token,
            Error::AuditLogClosed => ErrorCode::AuditLogClosed,
        }
    }
}

/// The stable numeric code of each kind of [`Error`]: what a control block's
/// `last_error` holds (GPU kernels write some of them) and what audit records and
/// reports carry as `error_code`. Numbers are never reused or renumbered.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorCode {
    /// [`Error::InvalidKernelId`].
    InvalidKernelId = 1,
    /// [`Error::DuplicateKernel`].
    DuplicateKernel = 2,
    /// [`Error::UnknownKernel`].
    UnknownKernel = 3,
    /// [`Error::KernelTerminated`].
    KernelTerminated = 4,
    /// [`Error::QueueFull`].
    QueueFull = 5,
    /// [`Error::Timeout`].
    Timeout = 6,
    /// [`Error::RuntimeShutDown`].
    RuntimeShutDown = 7,
    /// [`Error::UnknownBuffer`].
    UnknownBuffer = 8,
    /// [`Error::OutOfBounds`].
    OutOfBounds = 9,
    /// [`Error::InvalidAllocation`].
    InvalidAllocation = 10,
    /// [`Error::BackendUnavailable`].
    BackendUnavailable = 11,
    /// [`Error::Unsupported`].
    Unsupported = 12,
    /// [`Error::Backend`].
    Backend = 13,
    /// [`Error::InvalidConfig`].
    InvalidConfig = 14,
    /// [`Error::Corrupt`].
    Corrupt = 15,
    /// [`Error::KernelPanicked`].
    KernelPanicked = 16,
    /// [`Error::Io`].
    Io = 17,
    /// [`Error::Tampered`].
    Tampered = 18,
    /// [`Error::KeyRetired`].
    KeyRetired = 19,
    /// [`Error::UnknownKeyEpoch`].
    UnknownKeyEpoch = 20,
    /// [`Error::MalformedEnvelope`].
    MalformedEnvelope = 21,
    /// [`Error::WrongContext`].
    WrongContext = 22,
    /// [`Error::Replay`].
    Replay = 23,
    /// [`Error::WrongPassword`].
    WrongPassword = 24,
    /// [`Error::EncryptionDisabled`].
    EncryptionDisabled = 25,
    /// [`Error::Denied`].
    Denied = 26,
    /// [`Error::AuditIntegrity`].
    AuditIntegrity = 27,
    /// [`Error::StaleIncarnation`].
    StaleIncarnation = 28,
    /// [`Error::EnvelopeVersion`].
    EnvelopeVersion = 29,
    /// [`Error::WrongKey`].
    WrongKey = 30,
    /// [`Error::AuditTruncated`].
    AuditTruncated = 31,
    /// [`Error::AuditLogMissing`].
    AuditLogMissing = 32,
    /// [`Error::StaleSnapshot`].
    StaleSnapshot = 33,
    /// [`Error::ShutdownIncomplete`].
    ShutdownIncomplete = 34,
    /// [`Error::InvalidMessage`].
    InvalidMessage = 35,
    /// [`Error::TooLarge`].
    TooLarge = 36,
    /// [`Error::Exhausted`].
    Exhausted = 37,
    /// [`Error::Randomness`].
    Randomness = 38,
    /// [`Error::ThreadSpawn`].
    ThreadSpawn = 39,
    /// [`Error::Token`].
    Token = 40,
    /// [`Error::AuditLogClosed`].
    AuditLogClosed = 41,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 41] = [
        ErrorCode::InvalidKernelId,
        ErrorCode::DuplicateKernel,
        ErrorCode::UnknownKernel,
        ErrorCode::KernelTerminated,
        ErrorCode::QueueFull,
        ErrorCode::Timeout,
        ErrorCode::RuntimeShutDown,
        ErrorCode::UnknownBuffer,
        ErrorCode::OutOfBounds,
        ErrorCode::InvalidAllocation,
        ErrorCode::BackendUnavailable,
        ErrorCode::Unsupported,
        ErrorCode::Backend,
        ErrorCode::InvalidConfig,
        ErrorCode::Corrupt,
        ErrorCode::KernelPanicked,
        ErrorCode::Io,
        ErrorCode::Tampered,
        ErrorCode::KeyRetired,
        ErrorCode::UnknownKeyEpoch,
        ErrorCode::MalformedEnvelope,
        ErrorCode::WrongContext,
        ErrorCode::Replay,
        ErrorCode::WrongPassword,
        ErrorCode::EncryptionDisabled,
        ErrorCode::Denied,
        ErrorCode::AuditIntegrity,
        ErrorCode::StaleIncarnation,
        ErrorCode::EnvelopeVersion,
        ErrorCode::WrongKey,
        ErrorCode::AuditTruncated,
        ErrorCode::AuditLogMissing,
        ErrorCode::StaleSnapshot,
        ErrorCode::ShutdownIncomplete,
        ErrorCode::InvalidMessage,
        ErrorCode::TooLarge,
        ErrorCode::Exhausted,
        ErrorCode::Randomness,
        ErrorCode::ThreadSpawn,
        ErrorCode::Token,
        ErrorCode::AuditLogClosed,
    ];

    /// The code with number `n`, if there is one (e.g. read back from a control block).
    pub fn from_u32(n: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u32 == n)
    }
}

/// Error code stored in `ControlBlock::last_error` when a user handler returned an error.
pub const HANDLER_ERROR_CODE: u32 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_errors_keep_their_source() {
        use std::error::Error as _;
        let io = std::io::Error::other("no more threads");
        let e = Error::ThreadSpawn {
            what: "kernel",
            source: io,
        };
        assert_eq!(e.error_code(), ErrorCode::ThreadSpawn);
        let source = e.source().expect("the OS error is the source");
        assert_eq!(source.to_string(), "no more threads");
        let e = Error::Io(std::io::Error::other("disk"));
        assert!(e.source().is_some());
        // Errors that wrap nothing say so.
        assert!(Error::Tampered.source().is_none());
        assert!(Error::backend("device lost").source().is_none());
        assert!(Error::corrupt("control block", "short").source().is_none());
    }

    #[test]
    fn parser_and_driver_errors_stay_reachable_as_the_source() {
        use std::error::Error as _;
        // A parser's error: kept whole (line and column), and still in the message.
        let json = serde_json::from_slice::<serde_json::Value>(b"{\"a\": ").unwrap_err();
        let line = json.line();
        let e = Error::corrupt_caused_by("security snapshot", "not valid JSON", json);
        assert_eq!(e.error_code(), ErrorCode::Corrupt);
        let source = e.source().expect("the parser's error is the source");
        let parsed = source
            .downcast_ref::<serde_json::Error>()
            .expect("a serde_json::Error");
        assert_eq!(parsed.line(), line);
        assert!(
            e.to_string()
                .starts_with("corrupt security snapshot: not valid JSON: ")
        );
        // A driver's error the same way.
        let e = Error::backend_caused_by("wgpu: map", std::io::Error::other("device lost"));
        assert_eq!(e.error_code(), ErrorCode::Backend);
        assert_eq!(e.to_string(), "backend error: wgpu: map: device lost");
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("device lost")
        );
        // The snapshot parser keeps its cause.
        let e = crate::security::compliance::SecuritySnapshot::from_json(b"[").unwrap_err();
        assert!(
            e.source()
                .and_then(|s| s.downcast_ref::<serde_json::Error>())
                .is_some()
        );
    }

    #[test]
    fn codes_are_stable_distinct_and_round_trip() {
        // The numbers are part of the control-block format: never renumbered.
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*code as u32, i as u32 + 1, "{code:?}");
            assert_eq!(ErrorCode::from_u32(*code as u32), Some(*code));
        }
        assert_eq!(ErrorCode::from_u32(0), None);
        assert_eq!(ErrorCode::from_u32(HANDLER_ERROR_CODE), None);
        assert_eq!(Error::Tampered.code(), 18);
        assert_eq!(
            Error::StaleIncarnation {
                expected: 2,
                found: 1
            }
            .error_code(),
            ErrorCode::StaleIncarnation
        );
    }
}
