//! The shipper thread: a bounded queue from the audit writer, a connection kept up
//! with exponential backoff, and counters.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use parking_lot::Mutex;

use super::message::{Header, Outgoing, octet_counted};
use super::{SyslogConfig, SyslogStats, SyslogTransport};
use crate::error::{Error, Result};

/// How often the thread looks at the shutdown deadline while it waits.
const TICK: Duration = Duration::from_millis(50);
/// Messages sent in one write, at most.
const BATCH: usize = 256;
/// The longest a connection attempt or a write may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Shared {
    shipped: AtomicU64,
    dropped: AtomicU64,
    /// Drops not yet recorded in the log (the writer takes them).
    unreported: AtomicU64,
    connections: AtomicU64,
    failures: AtomicU64,
    connected: AtomicBool,
    /// Set by `shutdown`: send what is queued until then, then stop.
    deadline: Mutex<Option<Instant>>,
}

/// The audit writer's end of the shipper. Never blocks.
pub(crate) struct Shipper {
    tx: Sender<Outgoing>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    ship_records: bool,
    shutdown_timeout: Duration,
}

impl Shipper {
    /// Starts the shipper thread (which connects in the background).
    pub(crate) fn start(config: &SyslogConfig) -> Result<Self> {
        config.validate()?;
        let (tx, rx) = bounded(config.buffer);
        let shared = Arc::new(Shared::default());
        let worker = Worker {
            rx,
            shared: Arc::clone(&shared),
            header: Header::new(config),
            transport: config.transport.clone(),
            backoff_min: config.backoff_min,
            backoff_max: config.backoff_max,
        };
        let thread = std::thread::Builder::new()
            .name("rk-audit-syslog".into())
            .spawn(move || worker.run())
            .map_err(|source| Error::ThreadSpawn {
                what: "audit syslog shipper",
                source,
            })?;
        Ok(Shipper {
            tx,
            shared,
            thread: Mutex::new(Some(thread)),
            ship_records: config.ship_records,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// Queues a signed head.
    pub(crate) fn ship_head(&self, head: &crate::security::audit::SignedHead) {
        self.ship(Outgoing::head(head));
    }

    /// Queues a record's line (without its newline), if records are shipped.
    pub(crate) fn ship_record(&self, seq: u64, line: &[u8], at: std::time::SystemTime) {
        if self.ship_records {
            self.ship(Outgoing::record(seq, line, at));
        }
    }

    /// Queues a message, or drops and counts it when the queue is full.
    fn ship(&self, m: Outgoing) {
        match self.tx.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                self.shared.unreported.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Drops counted since the last call (to be recorded in the log).
    pub(crate) fn take_unreported(&self) -> u64 {
        // A load first: this runs after every record, and there is rarely anything.
        if self.shared.unreported.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.shared.unreported.swap(0, Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> SyslogStats {
        let s = &self.shared;
        SyslogStats {
            shipped: s.shipped.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            connections: s.connections.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
        }
    }

    /// Sends what is queued, for at most the shutdown timeout, then stops the thread.
    /// What is left is counted as dropped (and logged: the log is closed by then).
    pub(crate) fn shutdown(&self) {
        let Some(thread) = self.thread.lock().take() else {
            return;
        };
        *self.shared.deadline.lock() = Some(Instant::now() + self.shutdown_timeout);
        let _ = thread.join();
        let lost = self.shared.unreported.swap(0, Ordering::Relaxed);
        if lost > 0 {
            tracing::warn!(
                dropped = lost,
                "audit syslog shipper: messages dropped after the log's last record (not recorded in it)"
            );
        }
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    rx: Receiver<Outgoing>,
    shared: Arc<Shared>,
    header: Header,
    transport: SyslogTransport,
    backoff_min: Duration,
    backoff_max: Duration,
}

enum Conn {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixDatagram),
}

impl Worker {
    fn run(self) {
        let mut conn: Option<Conn> = None;
        // Formatted messages taken from the queue and not yet sent, in order.
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut backoff = self.backoff_min;
        let mut next_attempt = Instant::now();
        let mut warned = false;
        loop {
            let deadline = *self.shared.deadline.lock();
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if pending.is_empty() {
                match self.rx.recv_timeout(TICK) {
                    Ok(m) => pending.push(self.header.format(&m)),
                    // Everything queued before the shutdown has left.
                    Err(RecvTimeoutError::Timeout) if deadline.is_some() => break,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                // Whatever else is queued goes in the same write.
                while pending.len() < BATCH {
                    match self.rx.try_recv() {
                        Ok(m) => pending.push(self.header.format(&m)),
                        Err(_) => break,
                    }
                }
            }
            let Some(c) = conn.as_mut() else {
                let now = Instant::now();
                if now < next_attempt {
                    std::thread::sleep((next_attempt - now).min(TICK));
                    continue;
                }
                match self.connect() {
                    Ok(c) => {
                        conn = Some(c);
                        backoff = self.backoff_min;
                        warned = false;
                        self.shared.connections.fetch_add(1, Ordering::Relaxed);
                        self.shared.connected.store(true, Ordering::Relaxed);
                        tracing::info!(to = %self.transport, "audit syslog shipper connected");
                    }
                    Err(e) => {
                        self.shared.failures.fetch_add(1, Ordering::Relaxed);
                        if !warned {
                            tracing::warn!(to = %self.transport, error = %e, "audit syslog shipper cannot connect; retrying with backoff");
                            warned = true;
                        }
                        next_attempt = Instant::now() + backoff;
                        backoff = (backoff * 2).min(self.backoff_max);
                    }
                }
                continue;
            };
            let sent = send(c, &pending);
            self.shared
                .shipped
                .fetch_add(sent.count as u64, Ordering::Relaxed);
            pending.drain(..sent.count);
            if let Err(e) = sent.error {
                // Keep what was not sent and send it on the next connection.
                conn = None;
                self.shared.connected.store(false, Ordering::Relaxed);
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(to = %self.transport, error = %e, "audit syslog connection lost; reconnecting");
                next_attempt = Instant::now() + backoff;
                backoff = (backoff * 2).min(self.backoff_max);
            }
        }
        let left = pending.len() as u64 + self.rx.try_iter().count() as u64;
        if left > 0 {
            self.shared.dropped.fetch_add(left, Ordering::Relaxed);
            self.shared.unreported.fetch_add(left, Ordering::Relaxed);
        }
        if let Some(Conn::Tcp(s)) = &conn {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        self.shared.connected.store(false, Ordering::Relaxed);
    }

    fn connect(&self) -> io::Result<Conn> {
        match &self.transport {
            SyslogTransport::Tcp(addr) => {
                let mut last = io::Error::new(ErrorKind::NotFound, "no address");
                for a in addr.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&a, IO_TIMEOUT) {
                        Ok(s) => {
                            s.set_nodelay(true)?;
                            s.set_write_timeout(Some(IO_TIMEOUT))?;
                            return Ok(Conn::Tcp(s));
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            #[cfg(unix)]
            SyslogTransport::UnixDatagram(path) => {
                let s = std::os::unix::net::UnixDatagram::unbound()?;
                s.connect(path)?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(Conn::Unix(s))
            }
            #[cfg(not(unix))]
            SyslogTransport::UnixDatagram(_) => Err(io::Error::new(
                ErrorKind::Unsupported,
                "unix sockets need a unix platform",
            )),
        }
    }
}

/// How many messages were sent, and the error that stopped the rest.
struct Sent {
    count: usize,
    error: io::Result<()>,
}

/// Sends messages in order. Over TCP they go in one write, after checking that the
/// collector has not closed the connection (it never sends anything, so a readable
/// end-of-stream means it is gone): a write into a connection the peer closed would
/// succeed and be lost. A write that fails part-way counts nothing as sent, so the
/// batch is sent again whole on the next connection (duplicates rather than gaps).
fn send(conn: &mut Conn, msgs: &[Vec<u8>]) -> Sent {
    match conn {
        Conn::Tcp(s) => {
            let result = peer_open(s).and_then(|()| {
                let mut frames = Vec::with_capacity(msgs.iter().map(|m| m.len() + 8).sum());
                for m in msgs {
                    frames.extend_from_slice(&octet_counted(m));
                }
                s.write_all(&frames)
            });
            match result {
                Ok(()) => Sent {
                    count: msgs.len(),
                    error: Ok(()),
                },
                Err(e) => Sent {
                    count: 0,
                    error: Err(e),
                },
            }
        }
        #[cfg(unix)]
        Conn::Unix(s) => {
            for (i, m) in msgs.iter().enumerate() {
                if let Err(e) = s.send(m) {
                    return Sent {
                        count: i,
                        error: Err(e),
                    };
                }
            }
            Sent {
                count: msgs.len(),
                error: Ok(()),
            }
        }
    }
}

/// Fails when the peer has closed the connection.
fn peer_open(s: &mut TcpStream) -> io::Result<()> {
    s.set_nonblocking(true)?;
    let mut probe = [0u8; 64];
    let state = s.read(&mut probe);
    s.set_nonblocking(false)?;
    match state {
        Ok(0) => Err(io::Error::new(
            ErrorKind::ConnectionReset,
            "closed by the collector",
        )),
        Ok(_) => Ok(()), // the collector said something; syslog has no replies to read
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}
