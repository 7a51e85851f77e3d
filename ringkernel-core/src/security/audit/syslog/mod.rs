//! Shipping signed log heads (and, when asked, every record) to a syslog collector, and
//! reading them back as external anchors.
//!
//! A log opened with [`AuditLogConfig::syslog`](super::AuditLogConfig::syslog) hands every
//! signed head it writes (when it opens, with every seal, and the close record) to a
//! shipper thread, which sends it as an RFC 5424 message over TCP with octet counting
//! (RFC 6587 3.4.1) or to a unix datagram socket (rsyslog's `imuxsock`). The writer never
//! waits for the network: messages go through a bounded queue, and when it is full they
//! are dropped and counted, and the count is written into the log itself as a
//! `syslog.dropped` record. The shipper reconnects with exponential backoff and sends
//! what stayed queued.
//!
//! Later, on another machine, [`shipped_heads`] reads the collector's file back, keeps
//! the heads whose signature verifies with the log's public key, and gives the newest
//! one's anchor to [`verify_with_anchor`](super::verify_with_anchor): a directory rewound
//! as a whole to an older copy is then reported as truncated.
//!
//! ```no_run
//! use ringkernel_core::security::audit::syslog::{SyslogConfig, SyslogTransport, shipped_heads};
//! use ringkernel_core::security::audit::{AuditLog, AuditLogConfig, verify_with_anchor};
//!
//! let log = AuditLog::open(AuditLogConfig {
//!     syslog: Some(SyslogConfig::new(SyslogTransport::Tcp("logs.example.net:6514".into()))),
//!     ..AuditLogConfig::in_directory("/var/log/ringkernel")
//! })?;
//! let public_key = log.public_key();
//! // ... the program runs, seals, closes ...
//! log.close()?;
//!
//! // The auditor, with the collector's file and the published public key:
//! let shipped = shipped_heads(std::fs::File::open("/var/log/central/ringkernel.log")?, &public_key)?;
//! let anchor = shipped.anchor().expect("no shipped head");
//! verify_with_anchor("/var/log/ringkernel", &public_key, &anchor)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Operator guide (rsyslog configuration, what a drop means): `docs/syslog.md`.

mod anchors;
mod message;
mod shipper;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use anchors::{ShippedHeads, shipped_heads};
pub(crate) use shipper::Shipper;

use crate::error::{Error, Result};

/// Where the shipper sends its messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyslogTransport {
    /// TCP to `host:port`, framed with octet counting (RFC 6587 3.4.1): `LEN SP MSG`.
    /// Resolved again on every connection attempt.
    Tcp(String),
    /// A unix datagram socket (rsyslog's `imuxsock`), one message per datagram.
    UnixDatagram(PathBuf),
}

impl fmt::Display for SyslogTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogTransport::Tcp(addr) => write!(f, "tcp://{addr}"),
            SyslogTransport::UnixDatagram(p) => write!(f, "unix-dgram://{}", p.display()),
        }
    }
}

/// How signed heads (and optionally records) are shipped to syslog.
///
/// ```
/// use std::time::Duration;
/// use ringkernel_core::security::audit::syslog::{SyslogConfig, SyslogTransport};
/// let config = SyslogConfig {
///     ship_records: true,
///     buffer: 100_000,
///     ..SyslogConfig::new(SyslogTransport::Tcp("127.0.0.1:514".into()))
/// };
/// assert_eq!(config.facility, 13); // "log audit"
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogConfig {
    /// Where to send.
    pub transport: SyslogTransport,
    /// RFC 5424 APP-NAME (printable US-ASCII, 1 to 48 characters).
    pub app_name: String,
    /// RFC 5424 HOSTNAME (printable US-ASCII, at most 255); `None`: this machine's name.
    pub hostname: Option<String>,
    /// RFC 5424 facility, 0 to 23 (default 13, "log audit").
    pub facility: u8,
    /// Also ship every record (MSGID `rk-record`, the record's line as written), not
    /// only the signed heads (`rk-head`).
    pub ship_records: bool,
    /// Messages queued for the network, at most (besides up to 256 the shipper is
    /// sending); beyond it they are dropped, counted and the count recorded in the log
    /// (`syslog.dropped`).
    pub buffer: usize,
    /// The first wait after a failed connection; it doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// The longest wait between connection attempts.
    pub backoff_max: Duration,
    /// How long closing the log waits for queued messages to leave.
    pub shutdown_timeout: Duration,
    /// An id put in every message's structured data; `RuntimeBuilder::build` fills in
    /// the runtime instance id when it is `None`.
    pub instance: Option<String>,
}

/// The IANA private enterprise number in our structured data id (`ringkernel@32473`):
/// 32473 is the number RFC 5612 reserves for documentation and examples.
pub const SD_ID: &str = "ringkernel@32473";

impl SyslogConfig {
    /// Ships heads only, to `transport`, with the defaults: APP-NAME `ringkernel`, this
    /// machine's name, facility 13 (log audit), 10,000 queued messages, backoff from
    /// 100 ms to 30 s, 5 s to flush on close.
    pub fn new(transport: SyslogTransport) -> Self {
        SyslogConfig {
            transport,
            app_name: "ringkernel".into(),
            hostname: None,
            facility: 13,
            ship_records: false,
            buffer: 10_000,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            instance: None,
        }
    }

    /// Checks the fields RFC 5424 constrains, and that the buffer and backoff make sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidConfig(format!("syslog: {what}")));
        let printable = |s: &str| s.bytes().all(|b| (33..=126).contains(&b));
        if self.app_name.is_empty() || self.app_name.len() > 48 || !printable(&self.app_name) {
            return bad("app_name must be 1 to 48 printable US-ASCII characters".into());
        }
        if let Some(h) = &self.hostname
            && (h.is_empty() || h.len() > 255 || !printable(h))
        {
            return bad("hostname must be 1 to 255 printable US-ASCII characters".into());
        }
        if self.facility > 23 {
            return bad(format!("facility {} is not 0 to 23", self.facility));
        }
        if self.buffer == 0 {
            return bad("buffer must hold at least one message".into());
        }
        if self.backoff_min.is_zero() || self.backoff_max < self.backoff_min {
            return bad("backoff_min must be above zero and at most backoff_max".into());
        }
        Ok(())
    }
}

/// What the shipper has done so far ([`AuditLog::syslog_stats`](super::AuditLog::syslog_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyslogStats {
    /// Messages written to the transport.
    pub shipped: u64,
    /// Messages dropped: the queue was full, or closing timed out with them queued.
    pub dropped: u64,
    /// Connections made (the first one included).
    pub connections: u64,
    /// Failed connection attempts and broken connections.
    pub failures: u64,
    /// Whether a connection is up now.
    pub connected: bool,
}
