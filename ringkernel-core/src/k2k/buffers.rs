//! Message buffers recycled from receivers back to senders.
//!
//! A K2K message's payload and topic are allocated by the sending thread and freed by
//! the receiving kernel's thread, once per message. With the system allocator (glibc)
//! that pattern makes both threads take the same arena lock for every message: in a
//! profile of `k2k_layers` (1 -> 1, 256 B) half of all CPU time went to `malloc` and
//! `free`, most of it waiting on that lock (docs/benchmarks.md).
//!
//! So a dropped [`Message`](super::Message) hands its buffers, zeroed over their whole
//! capacity, to a process-wide pool, and senders take their next buffers from it: a
//! buffer goes round between the threads instead of through the allocator. The pool
//! keeps buffers in power-of-two size classes from [`MIN_CLASS`] to [`MAX_CLASS`]
//! bytes, at most [`SLOTS`] per class (about 2 MiB when every slot is full); a buffer
//! outside the classes, or arriving at a full class, is freed as before. Every buffer
//! in the pool is all zeros: nothing a message carried outlives its drop.

use std::sync::LazyLock;

use crossbeam_channel::{Receiver, Sender};
use zeroize::Zeroize;

/// Smallest capacity kept, in bytes.
pub(crate) const MIN_CLASS: usize = 64;

/// Largest capacity kept, in bytes: buffers above it come from the allocator.
pub(crate) const MAX_CLASS: usize = 8192;

/// Number of size classes (64, 128, ..., 8192).
const CLASSES: usize = (MAX_CLASS.trailing_zeros() - MIN_CLASS.trailing_zeros() + 1) as usize;

/// Buffers kept per size class.
pub(crate) const SLOTS: usize = 128;

/// One class's free buffers: a bounded lock-free queue, used only with `try_` calls
/// (nobody ever waits on it).
struct Class {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
}

static POOL: LazyLock<[Class; CLASSES]> = LazyLock::new(|| {
    std::array::from_fn(|_| {
        let (tx, rx) = crossbeam_channel::bounded(SLOTS);
        Class { tx, rx }
    })
});

/// The class whose buffers hold `len` bytes: the smallest at least `len`.
fn class_for_len(len: usize) -> Option<usize> {
    let size = len.max(MIN_CLASS).checked_next_power_of_two()?;
    (size <= MAX_CLASS).then(|| (size.trailing_zeros() - MIN_CLASS.trailing_zeros()) as usize)
}

/// The class a buffer of `capacity` bytes can serve: the largest at most `capacity`.
fn class_for_capacity(capacity: usize) -> Option<usize> {
    if !(MIN_CLASS..2 * MAX_CLASS).contains(&capacity) {
        return None;
    }
    let floor = usize::BITS - 1 - capacity.leading_zeros();
    Some((floor - MIN_CLASS.trailing_zeros()) as usize).filter(|&c| c < CLASSES)
}

/// An empty vector with room for at least `len` bytes: a recycled one when its class
/// has one, a fresh one (with the class's capacity, so that it can be recycled) if not.
pub(crate) fn take(len: usize) -> Vec<u8> {
    match class_for_len(len) {
        Some(c) => POOL[c]
            .rx
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(MIN_CLASS << c)),
        None => Vec::with_capacity(len),
    }
}

/// A copy of `bytes` in a vector from [`take`].
pub(crate) fn copy(bytes: &[u8]) -> Vec<u8> {
    let mut v = take(bytes.len());
    v.extend_from_slice(bytes);
    v
}

/// A copy of `s` in a string whose buffer comes from [`take`].
pub(crate) fn copy_str(s: &str) -> String {
    // `copy` of a `&str`'s bytes is valid UTF-8; the fallback is never taken.
    String::from_utf8(copy(s.as_bytes())).unwrap_or_else(|_| s.to_owned())
}

/// Zeroes `buf` over its whole capacity and keeps it for a later [`take`] (or frees
/// it, when its class is full or it fits none).
pub(crate) fn recycle(mut buf: Vec<u8>) {
    let Some(c) = class_for_capacity(buf.capacity()) else {
        // Freed: `zeroize`'s volatile writes, which no optimisation can drop before
        // the deallocation.
        buf.zeroize();
        return;
    };
    // Kept: zeroed with one `memset` over the whole capacity (`zeroize` writes a byte
    // at a time, a tenth of a 256-byte message's cost). The buffer is then published
    // to the pool for other threads to take, so these writes cannot be elided.
    buf.clear();
    buf.resize(buf.capacity(), 0);
    buf.clear();
    if let Err(full) = POOL[c].tx.try_send(buf) {
        // The class is full: freed here, already zeroed.
        drop(full.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_64_to_8192() {
        assert_eq!(CLASSES, 8);
        assert_eq!(class_for_len(0), Some(0));
        assert_eq!(class_for_len(64), Some(0));
        assert_eq!(class_for_len(65), Some(1));
        assert_eq!(class_for_len(8192), Some(7));
        assert_eq!(class_for_len(8193), None);
        assert_eq!(class_for_len(usize::MAX), None);
        assert_eq!(class_for_capacity(63), None);
        assert_eq!(class_for_capacity(64), Some(0));
        assert_eq!(class_for_capacity(127), Some(0));
        assert_eq!(class_for_capacity(8192), Some(7));
        assert_eq!(class_for_capacity(16383), Some(7));
        assert_eq!(class_for_capacity(16384), None);
    }

    #[test]
    fn a_taken_buffer_always_has_room() {
        for len in [0, 1, 63, 64, 65, 300, 8191, 8192, 8193, 100_000] {
            let v = take(len);
            assert!(v.is_empty());
            assert!(v.capacity() >= len, "len {len}: capacity {}", v.capacity());
            recycle(v);
        }
    }

    #[test]
    fn recycled_buffers_come_back_zeroed_over_their_capacity() {
        // A payload left in a buffer (and bytes past its length, as an open in place
        // leaves them) must not reach the next message that takes the buffer.
        let len = 3000; // the 4096 class, used by no other test here
        let mut v = take(len);
        v.resize(v.capacity(), 0xA5);
        v.truncate(10);
        let ptr = v.as_ptr();
        let capacity = v.capacity();
        recycle(v);
        // Other threads may use the class meanwhile: look for this very allocation.
        let mut others = Vec::new();
        let mut found = None;
        for _ in 0..=SLOTS {
            let v = take(len);
            if v.as_ptr() == ptr {
                found = Some(v);
                break;
            }
            others.push(v);
        }
        others.into_iter().for_each(recycle);
        let mut v = found.expect("the recycled buffer comes back from its class");
        assert!(v.is_empty());
        assert_eq!(v.capacity(), capacity);
        // SAFETY: this is the allocation recycled above, whose every byte up to its
        // capacity was written (0xA5, then zeroed by `recycle`): all initialised.
        unsafe { v.set_len(capacity) };
        assert!(
            v.iter().all(|&b| b == 0),
            "a recycled buffer holds old bytes"
        );
    }

    #[test]
    fn outsized_buffers_are_not_kept() {
        assert_eq!(class_for_capacity(MAX_CLASS * 4), None);
        let v = take(MAX_CLASS + 1);
        assert_eq!(v.capacity(), MAX_CLASS + 1);
        recycle(v); // freed, not kept: nothing to observe but no panic
    }
}
