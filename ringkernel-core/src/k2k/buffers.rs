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
//! bytes, at most [`SLOTS`] per class, each of exactly its class's size (so at most
//! 128 x 16,320 bytes, about 2 MiB, when every slot is full); a buffer of any other
//! capacity, or arriving at a full class, is freed as before. Every buffer in the pool
//! is all zeros: nothing a message carried outlives its drop.
//!
//! The price: a queued message's payload (up to 8 KiB) and topic occupy their class's
//! size, up to twice their length (a topic at least 64 bytes), while they wait.

use std::sync::LazyLock;

use crossbeam_channel::{Receiver, Sender};

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
/// it, when its class is full or its capacity is not exactly a class's size).
pub(crate) fn recycle(mut buf: Vec<u8>) {
    scrub(&mut buf);
    let Some(c) = class_for_capacity(buf.capacity()) else {
        return; // freed, zeroed
    };
    // Only buffers of exactly the class's size are kept (those `take` made), so the
    // pool never holds more than `SLOTS` times the sum of the class sizes.
    if buf.capacity() == MIN_CLASS << c {
        // A full class hands the buffer back: it is freed here, zeroed.
        let _ = POOL[c].tx.try_send(buf);
    }
}

/// Zeroes `buf` over its whole capacity (contents and spare room), then empties it.
///
/// One `memset` rather than `zeroize`'s byte-at-a-time volatile writes (a tenth of a
/// 256-byte message's cost), followed by a compiler barrier that takes the buffer's
/// address, so that the writes cannot be dropped as dead stores (the technique of
/// BoringSSL's `OPENSSL_cleanse`). Where `asm!` is not available, `zeroize` instead.
fn scrub(buf: &mut Vec<u8>) {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64"))]
    {
        buf.clear();
        buf.resize(buf.capacity(), 0);
        // SAFETY: an empty assembly block: it reads the pointer in a register and
        // executes nothing. Without `nomem`, the compiler must assume it reads the
        // memory behind the pointer, so the zeroing above is kept.
        unsafe {
            std::arch::asm!("/* {0} */", in(reg) buf.as_ptr(), options(nostack, preserves_flags));
        }
        buf.clear();
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
    zeroize::Zeroize::zeroize(buf);
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
    fn scrub_zeroes_contents_and_spare_capacity() {
        // A payload left in a buffer, and bytes past its length (as a handler that
        // truncates leaves them), must not reach the next message taking the buffer.
        let mut v = vec![0xA5u8; 1000];
        v.truncate(10);
        let capacity = v.capacity();
        scrub(&mut v);
        assert!(v.is_empty());
        assert_eq!(v.capacity(), capacity);
        // SAFETY: every byte up to the capacity was initialised (0xA5 by `vec!`, then
        // zeroed by `scrub`), and the capacity is unchanged.
        unsafe { v.set_len(capacity) };
        assert!(
            v.iter().all(|&b| b == 0),
            "a scrubbed buffer holds old bytes"
        );
    }

    #[test]
    fn only_buffers_of_exactly_a_class_size_are_kept() {
        // 300 is in class 256's range but not its size: freed, never handed out.
        let odd = Vec::<u8>::with_capacity(300);
        assert_eq!(class_for_capacity(odd.capacity()), Some(2));
        recycle(odd);
        for _ in 0..=SLOTS {
            let v = take(200);
            assert_eq!(v.capacity(), 256, "every buffer of class 256 is 256 bytes");
        }
    }

    #[test]
    fn outsized_buffers_are_not_kept() {
        assert_eq!(class_for_capacity(MAX_CLASS * 4), None);
        let v = take(MAX_CLASS + 1);
        assert_eq!(v.capacity(), MAX_CLASS + 1);
        recycle(v); // freed, not kept: nothing to observe but no panic
    }
}
