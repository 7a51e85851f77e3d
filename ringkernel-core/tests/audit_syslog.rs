//! Shipping signed heads and records to a real rsyslog (issue 15): each test starts its
//! own unprivileged `rsyslogd` on a loopback port (and a unix socket) with its own
//! configuration in a temp directory, and reads back the file it writes.
//!
//! Without `rsyslogd` installed the tests say SKIP; with `RINGKERNEL_REQUIRE_RSYSLOG=1`
//! (set by scripts/test.sh when it is installed) they fail instead.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringkernel_core::Error;
use ringkernel_core::security::audit::syslog::{SyslogConfig, SyslogTransport, shipped_heads};
use ringkernel_core::security::audit::{
    AuditConfig, AuditEvent, AuditLog, AuditLogConfig, AuditRecord, AuditSigningKey, LogStatus,
    verify, verify_with_anchor,
};

/// `rsyslogd` from PATH or the sbin directories, if installed.
fn rsyslogd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("rsyslogd"))
        .find(|p| p.is_file())
}

/// The rsyslogd to use, or `None` (after saying SKIP) when it is not installed and
/// not required.
fn rsyslogd_or_skip(test: &str) -> Option<PathBuf> {
    let found = rsyslogd();
    if found.is_none() {
        assert!(
            std::env::var("RINGKERNEL_REQUIRE_RSYSLOG").as_deref() != Ok("1"),
            "RINGKERNEL_REQUIRE_RSYSLOG=1 but rsyslogd is not installed (Debian: apt-get install rsyslog)"
        );
        eprintln!("SKIP {test}: rsyslogd is not installed (Debian: apt-get install rsyslog)");
    }
    found
}

/// A loopback port nothing listens on (for now).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An rsyslogd of our own: TCP on a loopback port and a unix datagram socket, writing
/// each message's MSG to `msg.log` and its parsed RFC 5424 header to `parsed.log`.
/// Killed on drop; everything it writes is in its temp directory.
struct Rsyslog {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Rsyslog {
    fn start(bin: &Path, port: u16) -> Rsyslog {
        let dir = tempfile::Builder::new()
            .prefix("rk-rsyslog-")
            .tempdir()
            .unwrap();
        let d = dir.path().display();
        fs::create_dir(dir.path().join("work")).unwrap();
        let conf = format!(
            r#"global(workDirectory="{d}/work" maxMessageSize="64k")
module(load="imtcp")
module(load="imuxsock" SysSock.Use="off")
template(name="msg" type="string" string="%msg%\n")
template(name="parsed" type="string" string="%pri% %hostname% %app-name% %msgid% %structured-data% %msg%\n")
ruleset(name="rk") {{
  action(type="omfile" file="{d}/msg.log" template="msg")
  action(type="omfile" file="{d}/parsed.log" template="parsed")
}}
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="rk")
input(type="imuxsock" Socket="{d}/sock" useSpecialParser="off" parseHostname="on" ruleset="rk")
"#
        );
        fs::write(dir.path().join("rsyslog.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(dir.path().join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut rs = Rsyslog { child, dir, port };
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = rs.child.try_wait().unwrap() {
                let err = fs::read_to_string(rs.dir.path().join("stderr")).unwrap_or_default();
                panic!("rsyslogd exited ({status}): {err}");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() && rs.socket().exists() {
                return rs;
            }
            assert!(Instant::now() < until, "rsyslogd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn read(&self, name: &str) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(self.dir.path().join(name)) {
            f.read_to_string(&mut s).unwrap();
        }
        s
    }

    /// `msg.log` once `done` holds for it (rsyslog writes asynchronously).
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.read("msg.log");
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < until,
                "rsyslog never wrote {what}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn key() -> AuditSigningKey {
    AuditSigningKey::from_seed(&[21; 32])
}

fn config(dir: &Path, syslog: SyslogConfig) -> AuditLogConfig {
    AuditLogConfig {
        events: AuditConfig {
            retention_days: 0,
            ..AuditConfig::default()
        },
        signing_key: Some(key()),
        syslog: Some(syslog),
        ..AuditLogConfig::in_directory(dir)
    }
}

fn tcp(port: u16) -> SyslogConfig {
    SyslogConfig {
        hostname: Some("rk-test".into()),
        instance: Some("test-instance".into()),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..SyslogConfig::new(SyslogTransport::Tcp(format!("127.0.0.1:{port}")))
    }
}

fn append(log: &AuditLog, n: u64) {
    for i in 0..n {
        log.append(AuditEvent::new("app.step").detail("i", i))
            .unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Every record of the log, as the lines written.
fn record_lines(dir: &Path) -> Vec<String> {
    let mut segments: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    segments.sort();
    segments
        .iter()
        .flat_map(|p| {
            fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn shipped_heads_catch_a_rewound_directory() {
    let Some(bin) = rsyslogd_or_skip("shipped_heads_catch_a_rewound_directory") else {
        return;
    };
    let rs = Rsyslog::start(&bin, free_port());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let snapshot = tmp.path().join("snapshot");
    let log = AuditLog::open(config(&dir, tcp(rs.port))).unwrap();
    for round in 1..=3 {
        append(&log, 5);
        log.seal_segment().unwrap();
        if round == 1 {
            copy_dir(&dir, &snapshot); // what a rollback will put back
        }
    }
    log.close().unwrap();
    let last = log.head();
    let heads = last.head().head_seq; // the open head, three seals, the close record
    assert_eq!(heads, 5);
    let stats = log.syslog_stats().unwrap();
    assert_eq!((stats.shipped, stats.dropped), (heads, 0));

    let text = rs.wait_for("the close record", |t| t.contains("\"state\":\"closed\""));
    let public_key = key().public_key();
    let shipped = shipped_heads(text.as_bytes(), &public_key).unwrap();
    let seqs: Vec<u64> = shipped.heads.iter().map(|h| h.head().head_seq).collect();
    assert_eq!(seqs, (1..=heads).collect::<Vec<_>>());
    assert_eq!(shipped.newest(), Some(&last));
    assert_eq!(
        (shipped.malformed, shipped.bad_signature, shipped.forks),
        (0, 0, 0)
    );
    // rsyslog parsed them as RFC 5424: facility 13, severity notice, our header and SD.
    let parsed = rs.read("parsed.log");
    let first = parsed.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "109 rk-test ringkernel rk-head [ringkernel@32473 instance=\"test-instance\" key=\"{public_key}\" head_seq=\"1\""
        )),
        "{first}"
    );

    // The directory as it stands, and with the shipped anchor: both fine.
    assert_eq!(verify(&dir, &public_key).unwrap().status, LogStatus::Closed);
    let anchor = shipped.anchor().unwrap();
    verify_with_anchor(&dir, &public_key, &anchor).unwrap();

    // Rewound as a whole to the copy taken after the first seal: consistent in itself,
    // caught only by the heads the central log kept.
    fs::remove_dir_all(&dir).unwrap();
    copy_dir(&snapshot, &dir);
    let alone = verify(&dir, &public_key).unwrap();
    assert!(matches!(alone.status, LogStatus::Open { .. }), "{alone:?}");
    match verify_with_anchor(&dir, &public_key, &anchor) {
        Err(Error::AuditTruncated { report }) => {
            assert!(report.truncation().unwrap().behind_anchor, "{report:?}");
        }
        other => panic!("a rewound directory passed with the shipped anchor: {other:?}"),
    }
}

#[test]
fn records_are_shipped_as_written() {
    let Some(bin) = rsyslogd_or_skip("records_are_shipped_as_written") else {
        return;
    };
    let rs = Rsyslog::start(&bin, free_port());
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(
        tmp.path(),
        SyslogConfig {
            ship_records: true,
            ..tcp(rs.port)
        },
    ))
    .unwrap();
    append(&log, 20);
    log.close().unwrap();
    let text = rs.wait_for("the close record", |t| t.contains("\"state\":\"closed\""));
    let shipped: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("{\"seq\":"))
        .collect();
    let written = record_lines(tmp.path());
    assert_eq!(written.len(), 21); // `audit.open` and ours
    assert_eq!(
        shipped,
        written.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let parsed = rs.read("parsed.log");
    assert!(
        parsed.contains("110 rk-test ringkernel rk-record [ringkernel@32473 instance=\"test-instance\" seq=\"20\"] {\"seq\":20,"),
        "{parsed}"
    );
}

#[test]
fn collector_down_at_start_is_reached_later_without_loss() {
    let Some(bin) = rsyslogd_or_skip("collector_down_at_start_is_reached_later_without_loss")
    else {
        return;
    };
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(tmp.path(), tcp(port))).unwrap();
    for _ in 0..3 {
        append(&log, 2);
        log.seal_segment().unwrap();
    }
    wait_until("failed connection attempts", || {
        log.syslog_stats().unwrap().failures >= 2
    });
    let stats = log.syslog_stats().unwrap();
    assert!(!stats.connected && stats.shipped == 0, "{stats:?}");

    let rs = Rsyslog::start(&bin, port);
    wait_until("the queued heads to leave", || {
        log.syslog_stats().unwrap().shipped == 4
    });
    log.close().unwrap();
    let stats = log.syslog_stats().unwrap();
    assert_eq!((stats.shipped, stats.dropped, stats.connections), (5, 0, 1));
    let text = rs.wait_for("the close record", |t| t.contains("\"state\":\"closed\""));
    let shipped = shipped_heads(text.as_bytes(), &key().public_key()).unwrap();
    let seqs: Vec<u64> = shipped.heads.iter().map(|h| h.head().head_seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_full_buffer_drops_counts_and_audits() {
    let Some(bin) = rsyslogd_or_skip("a_full_buffer_drops_counts_and_audits") else {
        return;
    };
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(
        tmp.path(),
        SyslogConfig {
            ship_records: true,
            buffer: 4,
            ..tcp(port)
        },
    ))
    .unwrap();
    append(&log, 50);
    log.flush().unwrap();
    // The collector is down: the buffer (and the messages in hand) waits, the rest of
    // the 52 (a head, `audit.open` and ours) is dropped.
    let stats = log.syslog_stats().unwrap();
    assert!(stats.dropped >= 40, "{stats:?}");

    // Once it is up, the queue drains and a `syslog.dropped` record reaches it too.
    let rs = Rsyslog::start(&bin, port);
    rs.wait_for("a syslog.dropped record", |t| {
        t.contains("\"event\":\"syslog.dropped\"")
    });
    log.close().unwrap();
    let stats = log.syslog_stats().unwrap();

    // Every drop is in the log, which is itself whole.
    let mut audited = 0;
    for line in record_lines(tmp.path()) {
        let rec: AuditRecord = serde_json::from_str(&line).unwrap();
        if rec.event == "syslog.dropped" {
            assert_eq!(rec.result, "error");
            audited += rec.details["dropped"].as_u64().unwrap();
        }
    }
    assert_eq!(audited, stats.dropped, "{stats:?}");
    assert_eq!(
        verify(tmp.path(), &key().public_key()).unwrap().status,
        LogStatus::Closed
    );
}

#[cfg(unix)]
#[test]
fn heads_over_a_unix_datagram_socket() {
    let Some(bin) = rsyslogd_or_skip("heads_over_a_unix_datagram_socket") else {
        return;
    };
    let rs = Rsyslog::start(&bin, free_port());
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(
        tmp.path(),
        SyslogConfig {
            hostname: Some("rk-test".into()),
            ..SyslogConfig::new(SyslogTransport::UnixDatagram(rs.socket()))
        },
    ))
    .unwrap();
    log.seal_segment().unwrap();
    log.close().unwrap();
    let text = rs.wait_for("the close record", |t| t.contains("\"state\":\"closed\""));
    let shipped = shipped_heads(text.as_bytes(), &key().public_key()).unwrap();
    assert_eq!(shipped.heads.len(), 3);
    assert_eq!(shipped.newest(), Some(&log.head()));
}

#[test]
fn a_runtime_names_its_instance_in_what_it_ships() {
    let Some(bin) = rsyslogd_or_skip("a_runtime_names_its_instance_in_what_it_ships") else {
        return;
    };
    let rs = Rsyslog::start(&bin, free_port());
    let tmp = tempfile::tempdir().unwrap();
    let runtime = ringkernel_core::runtime::RuntimeBuilder::new()
        .development()
        .with_audit_logging(config(
            tmp.path(),
            SyslogConfig::new(SyslogTransport::Tcp(format!("127.0.0.1:{}", rs.port))),
        ))
        .build()
        .unwrap();
    let instance = runtime.instance_id().to_hex();
    runtime.shutdown().unwrap();
    let text = rs.wait_for("the close record", |t| t.contains("\"state\":\"closed\""));
    let shipped = shipped_heads(text.as_bytes(), &key().public_key()).unwrap();
    assert_eq!(shipped.newest(), Some(&runtime.audit_log().unwrap().head()));
    let parsed = rs.read("parsed.log");
    assert!(
        parsed
            .lines()
            .all(|l| l.contains(&format!("[ringkernel@32473 instance=\"{instance}\" "))),
        "{parsed}"
    );
}
