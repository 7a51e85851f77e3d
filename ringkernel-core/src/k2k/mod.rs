//! Kernel-to-kernel (K2K) messaging: kernel identities, the message envelope and the
//! per-kernel bounded input queues ([`Mailbox`]).
//!
//! Messages are never constructed by callers: the runtime builds each [`Message`] from
//! the sending [`KernelHandle`](crate::runtime::KernelHandle) or
//! [`KernelContext`](crate::runtime::KernelContext), so the `source` a receiver sees is
//! the sender's real identity.
//!
//! Backpressure: every queue is bounded. A send to a full queue fails at once with
//! [`Error::QueueFull`] and enqueues nothing; `send_timeout` waits a bounded time for
//! room. Nothing is dropped silently: messages still queued when a kernel stops are
//! counted in its [`KernelStatus::undelivered`](crate::runtime::KernelStatus) and logged.

pub(crate) mod buffers;
pub(crate) mod hlc;
mod mailbox;

pub use hlc::{HlcTimestamp, HybridClock, MAX_CLOCK_AHEAD};
pub use mailbox::{Mailbox, Offer};

use std::fmt;

use smol_str::SmolStr;

use crate::error::{Error, Result};

/// Longest kernel id accepted, in bytes.
pub const MAX_KERNEL_ID_LEN: usize = 256;

/// A character that may not appear in a kernel id, a topic or a sandbox pattern.
///
/// Refused: control characters (general category Cc), format characters (Cf: the
/// invisible and bidirectional controls such as U+200B ZERO WIDTH SPACE, U+200D ZERO
/// WIDTH JOINER, U+202E RIGHT-TO-LEFT OVERRIDE, U+2066 LEFT-TO-RIGHT ISOLATE, U+FEFF,
/// U+00AD SOFT HYPHEN and the tag characters), and the line and paragraph separators
/// (Zl, Zp). Each makes one id look like another, or reorders or breaks the text
/// around it, in logs, audit records and reports. The categories come from the
/// Unicode Character Database through `unicode-properties`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ForbiddenChar {
    Control,
    Format,
    Separator,
}

impl ForbiddenChar {
    /// The class of `c`, if it is forbidden.
    pub(crate) fn of(c: char) -> Option<Self> {
        use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
        if c.is_control() {
            return Some(ForbiddenChar::Control);
        }
        match c.general_category() {
            GeneralCategory::Control => Some(ForbiddenChar::Control),
            GeneralCategory::Format => Some(ForbiddenChar::Format),
            GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
                Some(ForbiddenChar::Separator)
            }
            _ => None,
        }
    }

    /// The first forbidden character class in `s`, if any.
    pub(crate) fn find(s: &str) -> Option<Self> {
        // ASCII (nearly every id and topic, checked on every send): its only forbidden
        // characters are the controls, U+0000-U+001F and U+007F; it has no format or
        // separator characters. A byte scan instead of a Unicode table lookup per char.
        if s.is_ascii() {
            return s
                .bytes()
                .any(|b| b.is_ascii_control())
                .then_some(ForbiddenChar::Control);
        }
        s.chars().find_map(Self::of)
    }

    /// The rule for kernel ids, as [`Error::InvalidKernelId`] names it.
    fn id_rule(self) -> &'static str {
        match self {
            ForbiddenChar::Control => "ids must not contain control characters",
            ForbiddenChar::Format => {
                "ids must not contain invisible or bidirectional format characters \
                 (Unicode general category Cf, e.g. U+200B, U+202E, U+2066, U+FEFF)"
            }
            ForbiddenChar::Separator => {
                "ids must not contain line or paragraph separators (U+2028, U+2029)"
            }
        }
    }

    /// What is forbidden, in words ("control characters", ...).
    pub(crate) fn what(self) -> &'static str {
        let rule = self.id_rule();
        rule.strip_prefix("ids must not contain ").unwrap_or(rule)
    }
}

/// The identity of a kernel: a validated, cheaply clonable string.
///
/// Ids are case-sensitive, non-empty, at most [`MAX_KERNEL_ID_LEN`] bytes of UTF-8
/// (non-ASCII is allowed), and hold neither control characters, nor invisible or
/// bidirectional format characters (Unicode general category Cf, such as U+200B or
/// U+202E), nor line or paragraph separators, nor the pattern characters `*` and `?`
/// (so that an id can never be mistaken for a sandbox pattern). Leading or trailing
/// whitespace is refused, since `"worker "` and `"worker"` would look alike in logs
/// and reports; so are the format characters, for the same reason (`"admin\u{200B}"`
/// prints as `admin`).
///
/// An id of up to 23 bytes is held inline (longer ones behind a reference count), so
/// that the copies a K2K message carries (its source and destination) are byte copies:
/// a shared count would be added to by the sending thread and subtracted from by the
/// receiving one for every message, moving its cache line between them each time.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelId(SmolStr);

impl KernelId {
    /// Validates and wraps an id.
    pub fn new(id: &str) -> Result<Self> {
        let fail = |reason| {
            Err(Error::InvalidKernelId {
                id: id.to_owned(),
                reason,
            })
        };
        if id.is_empty() {
            return fail("ids must not be empty");
        }
        if id.len() > MAX_KERNEL_ID_LEN {
            return fail("ids must be at most 256 bytes");
        }
        if let Some(forbidden) = ForbiddenChar::find(id) {
            return fail(forbidden.id_rule());
        }
        if id.contains(['*', '?']) {
            return fail("ids must not contain the pattern characters '*' or '?'");
        }
        if id.trim() != id {
            return fail("ids must not start or end with whitespace");
        }
        Ok(KernelId(SmolStr::new(id)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KernelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl fmt::Display for KernelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// Hash and Eq of `KernelId` are those of the string, so lookups by `&str` are sound.
impl std::borrow::Borrow<str> for KernelId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for KernelId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Who sent a message: a kernel, or the host program that owns the runtime.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The host program, through [`Runtime::send`](crate::runtime::Runtime::send).
    Host,
    /// A kernel, through its handle or its context.
    Kernel(KernelId),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Host => f.write_str("<host>"),
            Endpoint::Kernel(id) => fmt::Display::fmt(id, f),
        }
    }
}

/// A K2K message as the receiving kernel's handler sees it. Its payload and topic are
/// zeroed over their whole capacity when the message is dropped (wherever it waits: a
/// handler's argument, a device driver's staging queue), so no plaintext stays behind
/// in host memory; the zeroed buffers are then kept for later messages' payloads
/// (`k2k/buffers.rs`) or freed. This covers the buffers the message still holds when
/// it is dropped: a handler that moves the payload out, or grows it (a reallocation),
/// takes over wiping what it moved.
#[derive(Clone, Debug)]
pub struct Message {
    /// The real sender (set by the runtime, never by the caller).
    pub source: Endpoint,
    /// The receiving kernel.
    pub destination: KernelId,
    /// Application topic, for routing inside the handler and for topic ACLs.
    pub topic: String,
    /// Message body.
    pub payload: Vec<u8>,
    /// Per-sender sequence number, increasing by one with each message the sender
    /// delivers; per (sender, receiver) pair messages arrive in sequence order.
    pub sequence: u64,
    /// Sender's hybrid-logical-clock time at send.
    pub timestamp: HlcTimestamp,
}

impl Drop for Message {
    fn drop(&mut self) {
        // Zeroed over their whole capacity, then kept for later messages (or freed).
        buffers::recycle(std::mem::take(&mut self.payload));
        buffers::recycle(std::mem::take(&mut self.topic).into_bytes());
    }
}

/// Largest input-queue capacity a kernel may be launched with, in messages (2^20).
///
/// A queue's slots are allocated when its kernel launches (128 bytes each on 64-bit
/// targets, so 128 MiB at this maximum). A larger capacity, given to
/// `LaunchOptions::queue_capacity` or as `RuntimeConfig::default_queue_capacity`, is
/// refused with [`Error::InvalidConfig`] instead of exhausting memory.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 20;

/// Checks a queue capacity (`what` names the setting) against [`MAX_QUEUE_CAPACITY`].
pub(crate) fn validate_queue_capacity(what: &str, capacity: usize) -> Result<()> {
    if capacity == 0 {
        return Err(Error::InvalidConfig(format!("{what} must be at least 1")));
    }
    if capacity > MAX_QUEUE_CAPACITY {
        return Err(Error::InvalidConfig(format!(
            "{what} of {capacity} messages exceeds the maximum of {MAX_QUEUE_CAPACITY} \
             (ringkernel_core::k2k::MAX_QUEUE_CAPACITY); use a smaller queue"
        )));
    }
    Ok(())
}

/// Longest topic accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Largest payload accepted, in bytes (16 MiB).
pub const MAX_PAYLOAD_LEN: usize = 16 << 20;

/// Checks a topic and payload before anything is enqueued.
pub(crate) fn validate_message(topic: &str, payload: &[u8]) -> Result<()> {
    if topic.len() > MAX_TOPIC_LEN {
        return Err(Error::InvalidMessage(format!(
            "topic {topic:?} must be at most {MAX_TOPIC_LEN} bytes"
        )));
    }
    if let Some(forbidden) = ForbiddenChar::find(topic) {
        return Err(Error::InvalidMessage(format!(
            "topic {topic:?} must not contain {}",
            forbidden.what()
        )));
    }
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(Error::TooLarge {
            what: "payload",
            len: payload.len() as u64,
            max: MAX_PAYLOAD_LEN as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inline (up to 23 bytes) and counted (longer) ids behave as their strings: equal,
    /// hashed, ordered and looked up by `&str` alike, whichever way each is held.
    #[test]
    fn ids_inline_or_counted_behave_as_their_strings() {
        use std::collections::{BTreeSet, HashMap};
        let mut names: Vec<String> = [1usize, 22, 23, 24, 25, 100, MAX_KERNEL_ID_LEN]
            .iter()
            .map(|&n| "k".repeat(n - 1) + "x")
            .collect();
        // Non-ASCII on each side of the inline limit: 22 and 24 bytes.
        names.extend(["ü".repeat(11), "ü".repeat(12)]);
        let ids: Vec<KernelId> = names
            .iter()
            .map(|n| KernelId::new(n).expect("valid id"))
            .collect();
        let by_id: HashMap<KernelId, usize> = ids.iter().cloned().zip(0..).collect();
        for (i, (n, id)) in names.iter().zip(&ids).enumerate() {
            assert_eq!(id.as_str(), n);
            assert_eq!(id.clone(), *id);
            assert_eq!(
                by_id.get(n.as_str()),
                Some(&i),
                "lookup by &str of {} bytes",
                n.len()
            );
            assert_eq!(format!("{id}"), *n);
            assert_eq!(format!("{id:?}"), format!("{n:?}"));
        }
        let sorted: Vec<&str> = ids
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(KernelId::as_str)
            .collect();
        let mut expected: Vec<&str> = names.iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(sorted, expected);
    }

    /// The ASCII byte scan of `find` decides every ASCII character as the Unicode
    /// lookup of `of` does, alone and inside longer strings (ASCII or not).
    #[test]
    fn the_ascii_fast_path_agrees_with_the_unicode_rule() {
        for b in 0u8..=127 {
            let c = char::from(b);
            let alone = c.to_string();
            assert_eq!(
                ForbiddenChar::find(&alone),
                ForbiddenChar::of(c),
                "{b:#04x}"
            );
            let ascii = format!("ab{c}cd");
            let mixed = format!("ü{c}");
            assert_eq!(
                ForbiddenChar::find(&ascii),
                ForbiddenChar::of(c),
                "{b:#04x}"
            );
            assert_eq!(
                ForbiddenChar::find(&mixed),
                ForbiddenChar::of(c),
                "{b:#04x}"
            );
        }
        assert_eq!(ForbiddenChar::find(""), None);
        assert_eq!(
            ForbiddenChar::find("ok\u{202E}"),
            Some(ForbiddenChar::Format)
        );
    }

    #[test]
    fn kernel_id_rules() {
        for ok in [
            "a",
            "processor_1",
            "ümlaut-kernel",
            "with space inside",
            "x.y/z",
        ] {
            assert_eq!(KernelId::new(ok).unwrap().as_str(), ok);
        }
        let long = "k".repeat(MAX_KERNEL_ID_LEN + 1);
        for bad in [
            "",
            "a*",
            "a?c",
            "tab\tid",
            "nl\n",
            " lead",
            "trail ",
            long.as_str(),
        ] {
            assert!(
                matches!(KernelId::new(bad), Err(Error::InvalidKernelId { .. })),
                "{bad:?} accepted"
            );
        }
        assert_ne!(
            KernelId::new("Admin").unwrap(),
            KernelId::new("admin").unwrap()
        );
    }
}
