//! RFC 5424 messages and their RFC 6587 octet-counting frames.

use std::time::SystemTime;

use super::{SD_ID, SyslogConfig};
use crate::security::audit::format::rfc3339;
use crate::security::audit::{HeadState, SignedHead};

/// RFC 5424 severities we use.
const NOTICE: u8 = 5;
const INFORMATIONAL: u8 = 6;

/// One message waiting for the network: everything but the per-process header.
pub(crate) struct Outgoing {
    msgid: &'static str,
    severity: u8,
    at: SystemTime,
    params: Vec<(&'static str, String)>,
    msg: Vec<u8>,
}

impl Outgoing {
    /// A signed head: MSGID `rk-head`, MSG its one-line form.
    pub(crate) fn head(head: &SignedHead) -> Self {
        let h = head.head();
        Outgoing {
            msgid: "rk-head",
            severity: NOTICE,
            at: SystemTime::now(),
            params: vec![
                ("key", h.public_key.clone()),
                ("head_seq", h.head_seq.to_string()),
                ("records", h.records.to_string()),
                (
                    "state",
                    match h.state {
                        HeadState::Open => "open",
                        HeadState::Closed => "closed",
                    }
                    .to_owned(),
                ),
            ],
            msg: head.to_line().into_bytes(),
        }
    }

    /// A record: MSGID `rk-record`, MSG its line exactly as written (without newline).
    pub(crate) fn record(seq: u64, line: &[u8], at: SystemTime) -> Self {
        Outgoing {
            msgid: "rk-record",
            severity: INFORMATIONAL,
            at,
            params: vec![("seq", seq.to_string())],
            msg: line.to_vec(),
        }
    }
}

/// The parts of the header that are the same for every message of a process.
pub(crate) struct Header {
    facility: u8,
    hostname: String,
    app_name: String,
    procid: String,
    instance: Option<String>,
}

impl Header {
    pub(crate) fn new(config: &SyslogConfig) -> Self {
        Header {
            facility: config.facility,
            hostname: config.hostname.clone().unwrap_or_else(local_hostname),
            app_name: config.app_name.clone(),
            procid: std::process::id().to_string(),
            instance: config.instance.clone(),
        }
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`.
    pub(crate) fn format(&self, m: &Outgoing) -> Vec<u8> {
        let pri = u16::from(self.facility) * 8 + u16::from(m.severity);
        let mut sd = format!("[{SD_ID}");
        let instance = self.instance.as_ref().map(|i| ("instance", i));
        for (k, v) in instance
            .into_iter()
            .chain(m.params.iter().map(|(k, v)| (*k, v)))
        {
            sd.push(' ');
            sd.push_str(k);
            sd.push_str("=\"");
            sd.push_str(&escape_param(v));
            sd.push('"');
        }
        sd.push(']');
        let mut out = format!(
            "<{pri}>1 {} {} {} {} {} {sd} ",
            rfc3339(m.at),
            self.hostname,
            self.app_name,
            self.procid,
            m.msgid
        )
        .into_bytes();
        out.extend_from_slice(&m.msg);
        out
    }
}

/// RFC 6587 3.4.1 octet counting: `MSG-LEN SP SYSLOG-MSG`.
pub(crate) fn octet_counted(msg: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg);
    out
}

/// RFC 5424 6.3.3: `"`, `\` and `]` are escaped in a PARAM-VALUE.
fn escape_param(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// This machine's name, as RFC 5424 allows it (printable US-ASCII), or `-` (NILVALUE).
fn local_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let name = name.trim();
    if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| (33..=126).contains(&b)) {
        "-".into()
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::audit::syslog::SyslogTransport;

    #[test]
    fn rfc5424_header_and_octet_counting() {
        let config = SyslogConfig {
            hostname: Some("gpu-7".into()),
            instance: Some("a\"b]".into()),
            ..SyslogConfig::new(SyslogTransport::Tcp("127.0.0.1:1".into()))
        };
        let header = Header::new(&config);
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_500_000);
        let msg = header.format(&Outgoing::record(3, b"{\"seq\":3}", at));
        let text = String::from_utf8(msg.clone()).unwrap();
        let expected = format!(
            "<110>1 1970-01-01T00:00:01.500000Z gpu-7 ringkernel {} rk-record \
             [ringkernel@32473 instance=\"a\\\"b\\]\" seq=\"3\"] {{\"seq\":3}}",
            std::process::id()
        );
        assert_eq!(text, expected);
        let framed = octet_counted(&msg);
        assert_eq!(
            framed,
            format!("{} {expected}", expected.len()).into_bytes()
        );
    }
}
