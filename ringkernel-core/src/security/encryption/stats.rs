//! The encryption layer's counters, sharded per thread: every seal and open adds to
//! counters, and one shared cache line written by all sealing threads would serialise
//! them. Up to `SHARDS - 1` live threads each own a shard (given back when the thread
//! exits) and add with a plain load and store (no atomic read-modify-write: no other
//! thread writes it meanwhile); threads beyond them share the last shard and add
//! atomically.
//! [`Counters::snapshot`] sums the shards (each counter exact; the set read while
//! others count is not one instant).

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

/// Shard indices below [`SHARED`] given back by threads that exited, for the next
/// threads to take.
static FREE_SHARDS: parking_lot::Mutex<Vec<usize>> = parking_lot::Mutex::new(Vec::new());

/// A thread's hold on a shard index, given back when the thread exits.
struct ShardLease(usize);

impl ShardLease {
    fn take() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        if let Some(i) = FREE_SHARDS.lock().pop() {
            return ShardLease(i);
        }
        ShardLease(NEXT.fetch_add(1, Ordering::Relaxed).min(SHARED))
    }
}

impl Drop for ShardLease {
    fn drop(&mut self) {
        // The thread is exiting and writes its shard no more (a count made later in
        // its exit goes to the shared shard: `shard_index`). The next thread to take
        // the index does so under the same lock, after every write of this one.
        if self.0 < SHARED {
            FREE_SHARDS.lock().push(self.0);
        }
    }
}

/// This thread's shard index. Threads take an index when they first count and give it
/// back when they exit, so that an index below [`SHARED`] belongs to one live thread
/// only, and a process that keeps starting threads (a runtime per job, a pool that
/// grows and shrinks) does not end with every thread on the shared shard.
fn shard_index() -> usize {
    thread_local! {
        static LEASE: ShardLease = ShardLease::take();
    }
    LEASE.try_with(|l| l.0).unwrap_or(SHARED)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_that_exit_give_their_shard_to_later_threads() {
        // Before shards were given back, every thread after the first fifteen of the
        // process shared one shard: a sender and its sink each bounced its cache line.
        let counters = Counters::default();
        let indices: Vec<usize> = (0..3 * SHARDS)
            .map(|_| {
                std::thread::scope(|s| {
                    s.spawn(|| {
                        counters.sealed(10);
                        shard_index()
                    })
                    .join()
                    .unwrap_or(SHARED)
                })
            })
            .collect();
        let own = indices[2 * SHARDS..]
            .iter()
            .filter(|&&i| i < SHARED)
            .count();
        assert!(own > 0, "later threads all share a shard: {indices:?}");
        let stats = counters.snapshot();
        assert_eq!(stats.seals, 3 * SHARDS as u64, "no count is lost");
        assert_eq!(stats.bytes_sealed, 30 * SHARDS as u64);
    }
}
