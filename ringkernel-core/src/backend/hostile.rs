//! Test-only access to a running device kernel's own buffers, for the hostile-device
//! tests of the conformance suite (cargo feature `hostile-device-testing`, off by
//! default; the GPU backends enable it for their own tests only).
//!
//! A GPU backend allocates a device kernel's key slots, parameters, input ring,
//! output, status and route bitmap itself, outside [`ComputeBackend::allocate`](super::ComputeBackend::allocate),
//! so nothing can reach them through the runtime. This hook lets a test play someone
//! who can write device memory: it queues a [`Corruption`] on the kernel's
//! [`HostileDevice`] (from [`KernelWorker::hostile_device`](super::KernelWorker::hostile_device)),
//! and the kernel's driver applies it at its next round, after it uploaded the round's
//! inputs and before the dispatch: the worst moment for the kernel, since the host
//! rewrites its own inputs (parameters, key slots, the ring's header) at every round.
//!
//! The test never holds a lock the driver needs: a corruption is data (no closure runs
//! on the driver's thread), handed over through a queue whose lock is held only to push
//! or pop, never across device work or a call into the caller.
//!
//! ```
//! use ringkernel_core::backend::hostile::{Corruption, DeviceBuffer, HostileDevice};
//! let hook = HostileDevice::new();
//! // Flip bit 3 of the route bitmap's word 0 at the kernel's next round.
//! hook.corrupt(Corruption::xor(DeviceBuffer::RouteBitmap, 0, &[1 << 3]));
//! assert_eq!(hook.pending(), 1);
//! ```
//!
//! Never ship a build with this feature: it is a way around every guarantee of the
//! device path. A device kernel started with it compiled in logs a warning.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::input_ring::RING_HEADER_WORDS;
use crate::error::{Error, Result};

/// A per-kernel buffer that a GPU backend allocates for a device kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceBuffer {
    /// The control block (sealed or plain), as the kernel reads it.
    Control,
    /// The key slots (current and previous epoch).
    KeySlots,
    /// The round's parameters.
    Params,
    /// The input ring (header, then entries).
    InputRing,
    /// The per-message output words.
    Output,
    /// The route permission bitmap.
    RouteBitmap,
    /// The round's status words.
    Status,
}

/// Where a corruption's word index counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Word 0 of the buffer.
    Start,
    /// The input ring's first pending entry: its header words plus the read position
    /// its header holds when the corruption is applied (the input ring only).
    RingRead,
}

/// What a corruption does to the words it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Overwrites them.
    Set(Vec<u32>),
    /// XORs them with a mask (flips bits).
    Xor(Vec<u32>),
}

/// One change to a device kernel's buffer, applied at a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The buffer.
    pub buffer: DeviceBuffer,
    /// Where `word` counts from.
    pub origin: Origin,
    /// The first word changed.
    pub word: usize,
    /// The change.
    pub edit: Edit,
    /// Applied only at a round that takes at least this many messages (0: any round).
    pub min_messages: usize,
}

impl Corruption {
    /// Overwrites `words` at `word` of `buffer`.
    pub fn set(buffer: DeviceBuffer, word: usize, words: &[u32]) -> Self {
        Corruption {
            buffer,
            origin: Origin::Start,
            word,
            edit: Edit::Set(words.to_vec()),
            min_messages: 0,
        }
    }

    /// XORs the words at `word` of `buffer` with `mask`.
    pub fn xor(buffer: DeviceBuffer, word: usize, mask: &[u32]) -> Self {
        Corruption {
            edit: Edit::Xor(mask.to_vec()),
            ..Corruption::set(buffer, word, &[])
        }
    }

    /// Counts `word` from the input ring's first pending entry ([`Origin::RingRead`]).
    pub fn from_ring_read(mut self) -> Self {
        self.origin = Origin::RingRead;
        self
    }

    /// Waits for a round that takes at least `messages` messages.
    pub fn in_a_round_of(mut self, messages: usize) -> Self {
        self.min_messages = messages;
        self
    }
}

/// A backend's side of the hook: its kernel's buffers as little-endian words. Reads
/// and writes outside a buffer are errors, never panics.
pub trait RawDeviceBuffers {
    /// `len` words at word `at` of `buffer`.
    fn read_words(&mut self, buffer: DeviceBuffer, at: usize, len: usize) -> Result<Vec<u32>>;

    /// Writes `words` at word `at` of `buffer`.
    fn write_words(&mut self, buffer: DeviceBuffer, at: usize, words: &[u32]) -> Result<()>;
}

/// The hook of one device kernel: corruptions queued by a test, applied by the
/// kernel's driver. Cloning shares the hook.
#[derive(Clone, Default)]
pub struct HostileDevice {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    pending: VecDeque<Corruption>,
    /// Applied since the last [`HostileDevice::wait_applied`]: what failed, if anything.
    failures: Vec<String>,
    applied: u64,
    closed: bool,
}

impl std::fmt::Debug for HostileDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.state.lock();
        f.debug_struct("HostileDevice")
            .field("pending", &st.pending.len())
            .field("applied", &st.applied)
            .field("closed", &st.closed)
            .finish()
    }
}

impl HostileDevice {
    /// A hook with nothing queued.
    pub fn new() -> Self {
        HostileDevice::default()
    }

    /// Queues `c`; the kernel's driver applies it at its next round that takes at
    /// least [`Corruption::min_messages`] messages, after the round's uploads and
    /// before the dispatch. Returns at once.
    pub fn corrupt(&self, c: Corruption) {
        self.inner.state.lock().pending.push_back(c);
    }

    /// Corruptions queued and not applied yet.
    pub fn pending(&self) -> usize {
        self.inner.state.lock().pending.len()
    }

    /// Corruptions applied so far.
    pub fn applied(&self) -> u64 {
        self.inner.state.lock().applied
    }

    /// Waits (at most `timeout`) until every queued corruption has been applied. Fails
    /// when one could not be applied (outside its buffer), when the kernel stopped
    /// first, or on timeout. The caller holds no lock while it waits.
    pub fn wait_applied(&self, timeout: Duration) -> std::result::Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.state.lock();
        while !st.pending.is_empty() {
            if st.closed {
                return Err(format!(
                    "the kernel stopped with {} corruption(s) not applied",
                    st.pending.len()
                ));
            }
            if self.inner.changed.wait_until(&mut st, deadline).timed_out() {
                return Err(format!(
                    "{} corruption(s) not applied within {timeout:?}",
                    st.pending.len()
                ));
            }
        }
        match std::mem::take(&mut st.failures) {
            f if f.is_empty() => Ok(()),
            f => Err(f.join("; ")),
        }
    }

    /// The driver's side: applies, in order, every queued corruption that a round of
    /// `messages` messages qualifies for. Failures are kept for
    /// [`wait_applied`](Self::wait_applied); the round itself goes on.
    pub fn apply_pending(&self, messages: usize, dev: &mut dyn RawDeviceBuffers) {
        let due: Vec<Corruption> = {
            let mut st = self.inner.state.lock();
            let (due, wait): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut st.pending)
                .into_iter()
                .partition(|c| c.min_messages <= messages);
            st.pending = wait;
            due.into()
        };
        if due.is_empty() {
            return;
        }
        let outcomes: Vec<Result<()>> = due.iter().map(|c| apply(c, dev)).collect();
        let mut st = self.inner.state.lock();
        for (c, r) in due.iter().zip(outcomes) {
            st.applied += 1;
            if let Err(e) = r {
                st.failures
                    .push(format!("{:?} at word {}: {e}", c.buffer, c.word));
            }
        }
        self.inner.changed.notify_all();
    }

    /// The driver's side: the kernel has stopped; waiting for what is still queued
    /// fails from now on.
    pub fn close(&self) {
        self.inner.state.lock().closed = true;
        self.inner.changed.notify_all();
    }
}

fn apply(c: &Corruption, dev: &mut dyn RawDeviceBuffers) -> Result<()> {
    let base = match (c.origin, c.buffer) {
        (Origin::Start, _) => 0,
        (Origin::RingRead, DeviceBuffer::InputRing) => {
            let read = dev.read_words(DeviceBuffer::InputRing, 1, 1)?;
            RING_HEADER_WORDS + read.first().copied().unwrap_or(0) as usize
        }
        (Origin::RingRead, other) => {
            return Err(Error::InvalidConfig(format!(
                "{other:?} has no ring read position"
            )));
        }
    };
    let at = base
        .checked_add(c.word)
        .ok_or_else(|| Error::InvalidConfig("word index overflows".into()))?;
    match &c.edit {
        Edit::Set(words) => dev.write_words(c.buffer, at, words),
        Edit::Xor(mask) => {
            let mut words = dev.read_words(c.buffer, at, mask.len())?;
            for (w, m) in words.iter_mut().zip(mask) {
                *w ^= m;
            }
            dev.write_words(c.buffer, at, &words)
        }
    }
}

/// Checks that `len` words at `at` lie inside a buffer of `size_words` words.
pub fn check_words(buffer: DeviceBuffer, at: usize, len: usize, size_words: usize) -> Result<()> {
    match at.checked_add(len) {
        Some(end) if end <= size_words => Ok(()),
        _ => Err(Error::InvalidConfig(format!(
            "words {at}..{} are outside {buffer:?} ({size_words} words)",
            at.saturating_add(len)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffers in host memory, for the queue's logic.
    struct Words(Vec<u32>);

    impl RawDeviceBuffers for Words {
        fn read_words(&mut self, b: DeviceBuffer, at: usize, len: usize) -> Result<Vec<u32>> {
            check_words(b, at, len, self.0.len())?;
            Ok(self.0[at..at + len].to_vec())
        }
        fn write_words(&mut self, b: DeviceBuffer, at: usize, words: &[u32]) -> Result<()> {
            check_words(b, at, words.len(), self.0.len())?;
            self.0[at..at + words.len()].copy_from_slice(words);
            Ok(())
        }
    }

    #[test]
    fn corruptions_apply_in_order_when_a_round_qualifies() {
        let hook = HostileDevice::new();
        let mut dev = Words(vec![0, 2, 0, 0, 10, 11, 12, 13]);
        hook.corrupt(Corruption::set(DeviceBuffer::InputRing, 0, &[5]));
        hook.corrupt(
            Corruption::xor(DeviceBuffer::InputRing, 1, &[0xff])
                .from_ring_read()
                .in_a_round_of(2),
        );
        hook.apply_pending(1, &mut dev);
        assert_eq!((hook.pending(), hook.applied()), (1, 1));
        assert!(hook.wait_applied(Duration::from_millis(10)).is_err());
        hook.apply_pending(2, &mut dev);
        // Ring read position 2: the entry starts at word 4 + 2 = 6.
        assert_eq!(dev.0, [5, 2, 0, 0, 10, 11, 12, 13 ^ 0xff]);
        assert_eq!(hook.wait_applied(Duration::from_millis(10)), Ok(()));
    }

    #[test]
    fn a_corruption_outside_its_buffer_is_reported_not_applied() {
        let hook = HostileDevice::new();
        let mut dev = Words(vec![0; 4]);
        hook.corrupt(Corruption::set(DeviceBuffer::Params, 3, &[1, 2]));
        hook.corrupt(Corruption::set(DeviceBuffer::Params, usize::MAX, &[1]));
        hook.corrupt(Corruption::set(DeviceBuffer::Params, 0, &[1]).from_ring_read());
        hook.apply_pending(0, &mut dev);
        assert_eq!(dev.0, [0; 4]);
        let e = hook.wait_applied(Duration::from_millis(10)).unwrap_err();
        assert_eq!(e.matches("; ").count(), 2, "three failures: {e}");
    }

    #[test]
    fn waiting_ends_when_the_kernel_stops() {
        let hook = HostileDevice::new();
        hook.corrupt(Corruption::set(DeviceBuffer::Status, 0, &[1]));
        let driver = hook.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            driver.close();
        });
        let e = hook.wait_applied(Duration::from_secs(30)).unwrap_err();
        assert!(e.contains("stopped"), "{e}");
        t.join().expect("joined");
    }
}
