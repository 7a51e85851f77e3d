//! The encryption layer's counters, sharded per thread: every seal and open adds to
//! counters, and one shared cache line written by all sealing threads would serialise
//! them. Each thread writes the shard of its own index; [`Counters::snapshot`] sums
//! the shards (each counter exact; the set read while others count is not one instant).

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

/// This thread's shard index (threads are numbered in order of first use).
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        let mut v = i.get();
        if v == usize::MAX {
            v = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            i.set(v);
        }
        v
    })
}

impl Counters {
    fn shard(&self) -> &Shard {
        &self.shards[shard_index()]
    }

    /// One record or stream of `len` plaintext bytes sealed.
    pub(super) fn sealed(&self, len: usize) {
        let s = self.shard();
        s.seals.fetch_add(1, Ordering::Relaxed);
        s.bytes_sealed.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// One record or stream of `len` plaintext bytes opened.
    pub(super) fn opened(&self, len: usize) {
        let s = self.shard();
        s.opens.fetch_add(1, Ordering::Relaxed);
        s.bytes_opened.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// One open refused.
    pub(super) fn failed(&self) {
        self.shard().failures.fetch_add(1, Ordering::Relaxed);
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
            out.seals += s.seals.load(Ordering::Relaxed);
            out.opens += s.opens.load(Ordering::Relaxed);
            out.failures += s.failures.load(Ordering::Relaxed);
            out.bytes_sealed += s.bytes_sealed.load(Ordering::Relaxed);
            out.bytes_opened += s.bytes_opened.load(Ordering::Relaxed);
        }
        out
    }
}
