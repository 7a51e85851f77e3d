//! The signed log head as it travels (a file, a syslog message), and external anchors.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, VerifyingKey};

use super::format::{Head, hex, sha256_hex, signed_file, split_signed, unhex};
use super::{AuditPublicKey, AuditSigningKey};
use crate::error::{Error, Result};

/// A [`Head`] with its Ed25519 signature: the exact bytes of `log.head`.
///
/// Ship it off the machine (a syslog collector, a ticket, a transparency log) each time
/// it changes; [`SignedHead::anchor`] is what to hand back to
/// [`verify_with_anchor`](super::verify_with_anchor) later.
///
/// ```
/// # use ringkernel_core::security::audit::{AuditConfig, AuditLogConfig, AuditLog, SignedHead};
/// # let dir = tempfile::tempdir()?;
/// let log = AuditLog::open(AuditLogConfig::in_directory(dir.path()))?;
/// log.seal_segment()?; // sign a head that covers everything so far
/// let shipped: Vec<u8> = log.head().to_bytes();
/// // ... elsewhere, with the published public key:
/// let head = SignedHead::from_bytes(&shipped)?;
/// head.verify(&log.public_key())?;
/// println!("anchor: {}", head.anchor()); // <last hash>:<records>
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SignedHead {
    head: Head,
    body: Vec<u8>,
    signature: [u8; 64],
}

impl SignedHead {
    pub(crate) fn sign(head: Head, key: &AuditSigningKey) -> Result<Self> {
        let (bytes, _) = signed_file(&head, |m| key.sign(m))?;
        Self::from_bytes(&bytes)
    }

    /// Parses the two-line form (JSON body, hex signature of the body's bytes). Checks
    /// the form only; [`SignedHead::verify`] checks the signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let corrupt = |reason: String| Error::corrupt("audit log head", reason);
        let (body, signature) = split_signed(bytes)
            .ok_or_else(|| corrupt("not a signed two-line file (body, hex signature)".into()))?;
        let head: Head = serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()))?;
        if head.version != 1 {
            return Err(corrupt(format!("unsupported version {}", head.version)));
        }
        Ok(SignedHead {
            head,
            body: body.to_vec(),
            signature,
        })
    }

    /// Checks the signature with `public_key`. Fails with [`Error::AuditIntegrity`]
    /// (segment 0) when it does not verify.
    pub fn verify(&self, public_key: &AuditPublicKey) -> Result<()> {
        let bad = |reason: String| Error::AuditIntegrity {
            segment: 0,
            record: None,
            reason,
        };
        let key = VerifyingKey::from_bytes(&public_key.0)
            .map_err(|_| Error::InvalidConfig("not a valid Ed25519 public key".into()))?;
        if self.head.public_key != public_key.to_hex() {
            return Err(bad(format!(
                "the log head names public key {}, not the given key",
                self.head.public_key
            )));
        }
        key.verify_strict(&self.body, &Signature::from_bytes(&self.signature))
            .map_err(|_| bad("log head signature does not verify with the given public key".into()))
    }

    /// The signed facts.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// SHA-256 of the body line, hex: what the next head's `prev_head` names.
    pub fn hash(&self) -> String {
        sha256_hex(&self.body)
    }

    /// The file bytes: the body line, then the hex signature line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.body.clone();
        out.push(b'\n');
        out.extend_from_slice(hex(&self.signature).as_bytes());
        out.push(b'\n');
        out
    }

    /// The one-line form shipped to syslog: the body line, one space, the hex
    /// signature. [`SignedHead::from_line`] reads it back.
    pub fn to_line(&self) -> String {
        format!(
            "{} {}",
            String::from_utf8_lossy(&self.body),
            hex(&self.signature)
        )
    }

    /// Parses the one-line form of [`SignedHead::to_line`] (surrounding whitespace
    /// ignored). Checks the form only; [`SignedHead::verify`] checks the signature.
    pub fn from_line(line: &str) -> Result<Self> {
        let (body, signature) = line.trim().rsplit_once(' ').ok_or_else(|| {
            Error::corrupt(
                "audit log head",
                "not a one-line head (body, space, hex signature)",
            )
        })?;
        Self::from_bytes(format!("{body}\n{signature}\n").as_bytes())
    }

    /// The anchor this head gives: its record count and chain hash.
    pub fn anchor(&self) -> Anchor {
        Anchor {
            last_hash: unhex(&self.head.last_hash).and_then(|b| <[u8; 32]>::try_from(b).ok()),
            records: Some(self.head.records),
        }
    }
}

impl fmt::Debug for SignedHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedHead")
            .field("head", &self.head)
            .field("hash", &self.hash())
            .finish_non_exhaustive()
    }
}

/// What a caller kept outside the log directory about how far the log had got: the
/// chain hash and/or record count of a shipped [`SignedHead`] (or of any record it
/// trusts). [`verify_with_anchor`](super::verify_with_anchor) reports a log that does
/// not reach the anchor as truncated (rolled back), which the directory alone cannot
/// show when it was rewound as a whole to an older, consistent copy.
///
/// The text form, as `ringkernel audit verify --anchor` takes it, is
/// `<last-hash>[:<records>]`:
///
/// ```
/// use ringkernel_core::security::audit::Anchor;
/// let a: Anchor = "00000000000000000000000000000000000000000000000000000000000000ab:42"
///     .parse()?;
/// assert_eq!(a.records, Some(42));
/// assert_eq!(a.to_string().parse::<Anchor>()?, a);
/// # Ok::<(), ringkernel_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anchor {
    /// SHA-256 of the line bytes of record `records - 1` (a head's `last_hash`). Without
    /// `records`, any record still present with this hash (or the retention
    /// watermark's point) satisfies the anchor.
    pub last_hash: Option<[u8; 32]>,
    /// The log held at least this many records (sequence numbers `0..records`).
    pub records: Option<u64>,
}

impl Anchor {
    /// An anchor on the record count alone.
    pub fn records(records: u64) -> Self {
        Anchor {
            last_hash: None,
            records: Some(records),
        }
    }

    /// True when the anchor says nothing (plain [`verify`](super::verify)).
    pub fn is_empty(&self) -> bool {
        self.last_hash.is_none() && self.records.is_none()
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last_hash {
            Some(h) => f.write_str(&hex(&h))?,
            None => f.write_str("-")?,
        }
        match self.records {
            Some(n) => write!(f, ":{n}"),
            None => Ok(()),
        }
    }
}

impl FromStr for Anchor {
    type Err = Error;

    /// Parses `<64 hex digits>[:<records>]`; `-:<records>` anchors on the count alone.
    fn from_str(s: &str) -> Result<Self> {
        let usage = || {
            Error::InvalidConfig(format!(
                "an anchor is <last-hash: 64 hex digits>[:<record count>] (or -:<record count>), not {s:?}"
            ))
        };
        let (hash, count) = match s.trim().split_once(':') {
            Some((h, c)) => (h, Some(c)),
            None => (s.trim(), None),
        };
        let last_hash = match hash {
            "-" => None,
            h => Some(
                unhex(h)
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(usage)?,
            ),
        };
        let records = count
            .map(|c| c.parse::<u64>().map_err(|_| usage()))
            .transpose()?;
        let anchor = Anchor { last_hash, records };
        if anchor.is_empty() {
            return Err(usage());
        }
        Ok(anchor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_parse_and_print() {
        let h = "ab".repeat(32);
        let a: Anchor = format!("{h}:7").parse().unwrap();
        assert_eq!((a.last_hash, a.records), (Some([0xab; 32]), Some(7)));
        assert_eq!(a.to_string(), format!("{h}:7"));
        let a: Anchor = h.parse().unwrap();
        assert_eq!(a.records, None);
        let a: Anchor = "-:12".parse().unwrap();
        assert_eq!(a, Anchor::records(12));
        assert_eq!(a.to_string(), "-:12");
        for bad in [
            "",
            "-",
            "abc",
            &format!("{h}:x"),
            &format!("{h}:-1"),
            "zz:1",
        ] {
            assert!(
                matches!(bad.parse::<Anchor>(), Err(Error::InvalidConfig(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_heads_are_errors_not_panics() {
        for bytes in [
            &b""[..],
            b"\n",
            b"{}\n00\n",
            b"{\"version\":1}\nzz\n",
            b"not json\n0000\n",
        ] {
            assert!(matches!(
                SignedHead::from_bytes(bytes),
                Err(Error::Corrupt { .. })
            ));
        }
    }
}
