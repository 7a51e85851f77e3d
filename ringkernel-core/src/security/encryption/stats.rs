//! The encryption layer's counters, sharded per thread: every seal and open adds to
//! counters, and one shared cache line written by all sealing threads would serialise
//! them. The first `SHARDS - 1` threads of the process to count each own a shard and
//! add with a plain load and store (no atomic read-modify-write: no other thread ever
//! writes it); later threads share the last shard and add atomically.
//! [`Counters::snapshot`] sums the shards (each counter exact; the set read while
//! others count is not one instant).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Counters of the encryption layer (read without locks).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncryptionStats {
    /// Records and streams sealed.
    pub seals: u64,
    /// Records and streams opened successfully.
    pub opens: u64,
    /// Opens that failed (tampered, wrong context, replay, retired key, malformed).
    pub failures: u64,
    /// Key rotations (timed, bound-triggered and explicit).
    pub rotations: u64,
    /// Epochs retired and zeroized.
    pub retirements: u64,
    /// Plaintext bytes sealed.
    pub bytes_sealed: u64,
    /// Plaintext bytes opened.
    pub bytes_opened: u64,
}

/// Shards of the per-record counters; threads beyond this many share shards.
const SHARDS: usize = 16;

/// One thread's share of the per-record counters, on its own cache lines (128 bytes:
/// adjacent-line prefetch pairs lines on x86).
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    seals: AtomicU64,
    opens: AtomicU64,
    failures: AtomicU64,
    bytes_sealed: AtomicU64,
    bytes_opened: AtomicU64,
}

/// The counters of one `MemoryEncryption`.
pub(super) struct Counters {
    shards: Box<[Shard; SHARDS]>,
    rotations: AtomicU64,
    retirements: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            shards: Box::new(std::array::from_fn(|_| Shard::default())),
            rotations: AtomicU64::new(0),
            retirements: AtomicU64::new(0),
        }
    }
}

/// The shard all threads after the first `SHARDS - 1` share.
const SHARED: usize = SHARDS - 1;

/// This thread's shard index: threads are numbered once, in order of first use, and
/// numbers are never reused, so an index below [`SHARED`] belongs to one thread only.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        let mut v = i.get();
        if v == usize::MAX {
            v = NEXT.fetch_add(1, Ordering::Relaxed).min(SHARED);
            i.set(v);
        }
        v
    })
}

/// Adds `n` to a counter of shard `index`: a plain load and store when the shard is
/// this thread's alone, an atomic add when shared.
fn add(counter: &AtomicU64, index: usize, n: u64) {
    if index == SHARED {
        counter.fetch_add(n, Ordering::Relaxed);
    } else {
        // Only this thread writes this shard: no add can be lost between the load and
        // the store. Readers see either value.
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

impl Counters {
    /// One record or stream of `len` plaintext bytes sealed.
    pub(super) fn sealed(&self, len: usize) {
        let i = shard_index();
        let s = &self.shards[i];
        add(&s.seals, i, 1);
        add(&s.bytes_sealed, i, len as u64);
    }

    /// One record or stream of `len` plaintext bytes opened.
    pub(super) fn opened(&self, len: usize) {
        let i = shard_index();
        let s = &self.shards[i];
        add(&s.opens, i, 1);
        add(&s.bytes_opened, i, len as u64);
    }

    /// One open refused.
    pub(super) fn failed(&self) {
        let i = shard_index();
        add(&self.shards[i].failures, i, 1);
    }

    /// One key rotation.
    pub(super) fn rotated(&self) {
        self.rotations.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` epochs retired.
    pub(super) fn retired(&self, n: usize) {
        self.retirements.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The sums over all shards.
    pub(super) fn snapshot(&self) -> EncryptionStats {
        let mut out = EncryptionStats {
            rotations: self.rotations.load(Ordering::Relaxed),
            retirements: self.retirements.load(Ordering::Relaxed),
            ..EncryptionStats::default()
        };
        for s in self.shards.iter() {
            let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
            out.seals = out.seals.wrapping_add(get(&s.seals));
            out.opens = out.opens.wrapping_add(get(&s.opens));
            out.failures = out.failures.wrapping_add(get(&s.failures));
            out.bytes_sealed = out.bytes_sealed.wrapping_add(get(&s.bytes_sealed));
            out.bytes_opened = out.bytes_opened.wrapping_add(get(&s.bytes_opened));
        }
        out
    }
}
