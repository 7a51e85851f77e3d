//! The keyring: a master key and the per-epoch data keys derived from it.
//!
//! Each epoch's data key is `HKDF(master, salt = 32 random bytes,
//! info = "ringkernel/v1/data-key" || algorithm id || epoch)`. The random salt makes
//! every epoch key unique to this process even when the master key is derived again
//! from the same password, so counter nonces never repeat under a key; and once an
//! epoch is retired its key and salt are zeroized, so nothing (not even the master key)
//! can derive it again: data still sealed under it is crypto-erased.
//!
//! Nonces: every key has one 64-bit counter; each single-shot record and each stream
//! takes one value. A key is rotated before its counter reaches the configured seal
//! bound or its byte count the byte bound (see docs/encryption.md for the bounds).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use parking_lot::Mutex;

use super::algorithm::Algorithm;
use super::config::EncryptionConfig;
use super::kdf;
use super::provider::AeadKey;
use crate::error::{Error, Result};
use crate::security::memory::SecureBuffer;

/// Bytes of an epoch's random HKDF salt.
pub const EPOCH_SALT_LEN: usize = 32;

/// What it takes to derive one epoch's data key again from the master key: its number
/// and its random salt. Not secret without the master key; kept sealed in a keystore.
#[derive(Clone, PartialEq, Eq)]
pub struct EpochSalt {
    /// The key epoch.
    pub epoch: u32,
    /// The epoch's random HKDF salt.
    pub salt: [u8; EPOCH_SALT_LEN],
}

impl std::fmt::Debug for EpochSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochSalt")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// The persistable state of a keyring: the highest epoch ever issued and the salts of
/// the live epochs (retired epochs are absent: their keys cannot be derived again).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyringState {
    /// Highest epoch ever issued.
    pub highest: u32,
    /// Live epochs, ascending; the last is the current one.
    pub epochs: Vec<EpochSalt>,
}

/// Called with the keyring's new state before a new epoch is used for sealing and after
/// epochs are retired (a keystore writes it to disk). An error refuses the rotation.
pub(crate) type PersistHook = Arc<dyn Fn(&KeyringState) -> Result<()> + Send + Sync>;

/// A key's use so far: nonce counter values taken and plaintext bytes sealed.
#[derive(Default)]
struct Usage {
    counter: AtomicU64,
    bytes: AtomicU64,
}

/// One epoch's data key, as an AEAD instance of the configured provider.
pub(crate) struct EpochKey {
    pub(crate) epoch: u32,
    salt: [u8; EPOCH_SALT_LEN],
    aead: Box<dyn AeadKey>,
    /// The raw key, kept (locked, zeroed on drop) for device key slots.
    raw: SecureBuffer,
    pub(crate) created: Instant,
    /// Written by every seal: on cache lines of its own, so that opening threads
    /// reading the fields above do not pull the line away from sealing threads.
    usage: CachePadded<Usage>,
    retire_at: Mutex<Option<Instant>>,
    /// Whether this epoch began because the one before reached its usage bound
    /// (rather than a rotation asked for).
    pub(crate) at_usage_bound: bool,
}

impl Drop for EpochKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.salt);
    }
}

impl EpochKey {
    /// The AEAD instance (the same for records of every size).
    pub(crate) fn aead(&self) -> &dyn AeadKey {
        self.aead.as_ref()
    }

    /// The raw key bytes (for a device key slot).
    pub(crate) fn raw(&self) -> &[u8] {
        self.raw.as_slice()
    }

    /// Records sealed under this key so far.
    pub(crate) fn seals(&self) -> u64 {
        self.usage.counter.load(Ordering::Acquire)
    }
}

/// Records up to this many bytes are sealed and opened with the epoch list read-locked
/// rather than with a reference taken on the key (two atomic read-modify-writes fewer
/// per call); larger ones take the reference, so rotation never waits on a long AEAD.
pub(crate) const HOLD_LOCK_LIMIT: usize = 64 * 1024;

/// A reserved nonce counter value under a specific key.
pub(crate) struct Reservation {
    pub(crate) key: Arc<EpochKey>,
    pub(crate) counter: u64,
}

/// Master key plus live epochs (ascending; the last is current).
pub(crate) struct Keyring {
    algorithm: Algorithm,
    config: EncryptionConfig,
    master: SecureBuffer,
    /// Sharded by thread: every seal and open read-locks it, and one lock word written
    /// by a sealing and an opening thread on two cores bounced between them per record.
    epochs: ShardedLock<Vec<Arc<EpochKey>>>,
    /// Highest epoch ever issued (epochs are issued 1, 2, 3, ...).
    highest: AtomicU64,
    rotation_lock: Mutex<()>,
    persist: Option<PersistHook>,
}

impl Keyring {
    /// The epoch list, read-locked (on this thread's shard). A poisoned lock (a panic
    /// while it was written) still holds a whole list: every write leaves one.
    fn read_epochs(&self) -> ShardedLockReadGuard<'_, Vec<Arc<EpochKey>>> {
        self.epochs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The epoch list, write-locked (every shard).
    fn write_epochs(&self) -> ShardedLockWriteGuard<'_, Vec<Arc<EpochKey>>> {
        self.epochs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A keyring whose master key was kept, with the live epochs of `state` derived
    /// again for opening, then a fresh epoch (`state.highest + 1`, a new random salt)
    /// for sealing: nothing is ever sealed again under an epoch of an earlier process,
    /// so counter nonces never repeat across restarts. The restored epochs enter their
    /// grace period now. `persist` (if any) sees every new state before it is used.
    pub(crate) fn restore(
        config: &EncryptionConfig,
        master: SecureBuffer,
        state: &KeyringState,
        persist: Option<PersistHook>,
    ) -> Result<Self> {
        let ring = Keyring {
            algorithm: config.algorithm,
            config: config.clone(),
            master,
            epochs: ShardedLock::new(Vec::new()),
            highest: AtomicU64::new(u64::from(state.highest)),
            rotation_lock: Mutex::new(()),
            persist,
        };
        let retire_at = Instant::now() + config.grace_period;
        let mut restored = Vec::with_capacity(state.epochs.len());
        for e in &state.epochs {
            if e.epoch == 0 || e.epoch > state.highest {
                return Err(Error::corrupt(
                    "key state",
                    format!("epoch {} outside 1..={}", e.epoch, state.highest),
                ));
            }
            let key = ring.derive_epoch(e.epoch, e.salt)?;
            *key.retire_at.lock() = Some(retire_at);
            restored.push(Arc::new(key));
        }
        restored.sort_by_key(|k| k.epoch);
        *ring.write_epochs() = restored;
        ring.rotate()?;
        Ok(ring)
    }

    /// The persistable state: highest epoch and the live epochs' salts.
    pub(crate) fn state(&self) -> KeyringState {
        Self::state_of(&self.read_epochs(), self.highest.load(Ordering::Acquire))
    }

    fn state_of(epochs: &[Arc<EpochKey>], highest: u64) -> KeyringState {
        KeyringState {
            highest: u32::try_from(highest).unwrap_or(u32::MAX),
            epochs: epochs
                .iter()
                .map(|k| EpochSalt {
                    epoch: k.epoch,
                    salt: k.salt,
                })
                .collect(),
        }
    }

    fn make_epoch(&self, epoch: u32) -> Result<EpochKey> {
        let mut salt = [0u8; EPOCH_SALT_LEN];
        getrandom::fill(&mut salt).map_err(Error::Randomness)?;
        self.derive_epoch(epoch, salt)
    }

    fn derive_epoch(&self, epoch: u32, salt: [u8; EPOCH_SALT_LEN]) -> Result<EpochKey> {
        let mut info = Vec::with_capacity(32);
        info.extend_from_slice(b"ringkernel/v1/data-key");
        info.push(self.algorithm.id());
        info.extend_from_slice(&epoch.to_le_bytes());
        let mut key = SecureBuffer::new(self.algorithm.key_len());
        kdf::hkdf(
            &self.config.key_derivation,
            Some(&salt),
            self.master.as_slice(),
            &info,
            key.as_mut_slice(),
        )?;
        let aead = self
            .config
            .provider
            .provider_for(self.algorithm)
            .new_key(self.algorithm, key.as_slice())?;
        Ok(EpochKey {
            epoch,
            salt,
            aead,
            raw: key,
            created: Instant::now(),
            usage: CachePadded::new(Usage::default()),
            retire_at: Mutex::new(None),
            at_usage_bound: false,
        })
    }

    /// The current epoch's key.
    pub(crate) fn current(&self) -> Arc<EpochKey> {
        // Invariant: the ring always holds at least one epoch (the current one).
        self.read_epochs()
            .last()
            .cloned()
            .unwrap_or_else(|| unreachable!("keyring without a current epoch"))
    }

    /// Takes a nonce counter value under the current key for a record of `len` bytes,
    /// rotating first when the key's usage bound would be crossed.
    pub(crate) fn reserve(&self, len: usize) -> Result<(Reservation, Option<u32>)> {
        let mut rotated = None;
        loop {
            let key = self.current();
            if let Some(counter) = self.take_counter(&key, len) {
                return Ok((Reservation { key, counter }, rotated));
            }
            // Bound reached: move to a fresh key (once, even with many racing sealers).
            if let Some(e) = self.rotate_from(key.epoch)? {
                rotated = Some(e);
            }
        }
    }

    /// Takes the next nonce counter value of `key` for `len` bytes, or `None` when that
    /// would cross the key's usage bound. The counter is a single atomic add, so every
    /// caller gets a distinct value (ordering adds nothing to uniqueness: `Relaxed`).
    fn take_counter(&self, key: &EpochKey, len: usize) -> Option<u64> {
        let counter = key.usage.counter.fetch_add(1, Ordering::Relaxed);
        let bytes = key.usage.bytes.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
        (counter < self.config.max_seals_per_key && bytes <= self.config.max_bytes_per_key)
            .then_some(counter)
    }

    /// [`Keyring::reserve`] without taking a reference on the key: `f` runs with the
    /// current key and the reserved counter value while the epoch list is read-locked,
    /// so no rotation or retirement can drop the key meanwhile. For records above
    /// [`HOLD_LOCK_LIMIT`] the key is cloned out instead, so that a long seal never
    /// holds up a rotation (and the sealers queued behind it).
    pub(crate) fn with_reserved<R>(
        &self,
        len: usize,
        f: impl FnOnce(&EpochKey, u64) -> Result<R>,
    ) -> Result<(R, Option<u32>)> {
        if len > HOLD_LOCK_LIMIT {
            let (res, rotated) = self.reserve(len)?;
            return f(&res.key, res.counter).map(|r| (r, rotated));
        }
        let mut rotated = None;
        loop {
            let epoch = {
                let epochs = self.read_epochs();
                let key = epochs
                    .last()
                    .unwrap_or_else(|| unreachable!("keyring without a current epoch"));
                if let Some(counter) = self.take_counter(key, len) {
                    return f(key, counter).map(|r| (r, rotated));
                }
                key.epoch
            };
            if let Some(e) = self.rotate_from(epoch)? {
                rotated = Some(e);
            }
        }
    }

    /// Rotates unless someone already rotated away from `epoch`. Returns the new epoch.
    fn rotate_from(&self, epoch: u32) -> Result<Option<u32>> {
        let _g = self.rotation_lock.lock();
        if self.current().epoch != epoch {
            return Ok(None);
        }
        self.rotate_locked(true).map(Some)
    }

    /// Starts a new epoch; older epochs enter their grace period.
    pub(crate) fn rotate(&self) -> Result<u32> {
        let _g = self.rotation_lock.lock();
        self.rotate_locked(false)
    }

    fn rotate_locked(&self, at_usage_bound: bool) -> Result<u32> {
        let next = self.highest.load(Ordering::Acquire) + 1;
        let next = u32::try_from(next)
            .map_err(|_| Error::Exhausted("key epochs (2^32 rotations)".into()))?;
        let mut key = self.make_epoch(next)?;
        key.at_usage_bound = at_usage_bound;
        let key = Arc::new(key);
        if let Some(persist) = &self.persist {
            // The new epoch's salt is stored before anything is sealed under it, so a
            // crash never leaves data sealed under a key that cannot be derived again.
            let mut next_state = self.state();
            next_state.highest = next;
            next_state.epochs.push(EpochSalt {
                epoch: next,
                salt: key.salt,
            });
            persist(&next_state)?;
        }
        let retire_at = Instant::now() + self.config.grace_period;
        let mut epochs = self.write_epochs();
        // Only the outgoing current key starts its grace period now; older ones
        // already have theirs.
        if let Some(outgoing) = epochs.last() {
            outgoing.retire_at.lock().get_or_insert(retire_at);
        }
        epochs.push(key);
        self.highest.store(u64::from(next), Ordering::Release);
        Ok(next)
    }

    /// Zeroizes every superseded epoch whose grace period is over; returns them.
    pub(crate) fn retire_expired(&self, now: Instant) -> Vec<u32> {
        let mut epochs = self.write_epochs();
        let current = epochs.last().map(|k| k.epoch);
        let mut retired = Vec::new();
        epochs.retain(|k| {
            let expired = Some(k.epoch) != current && k.retire_at.lock().is_some_and(|t| t <= now);
            if expired {
                retired.push(k.epoch);
            }
            !expired
        });
        // Dropping the last Arc of a retired EpochKey drops its AEAD instances, which
        // zero their key schedules; readers holding a clone finish their operation first.
        if !retired.is_empty()
            && let Some(persist) = &self.persist
        {
            let state = Self::state_of(&epochs, self.highest.load(Ordering::Acquire));
            drop(epochs);
            // A failure leaves the retired salts on disk until the next retirement
            // writes the state again; said loudly, since erasure is then incomplete.
            if let Err(e) = persist(&state) {
                tracing::error!(error = %e, ?retired, "retired key epochs could not be erased from the keystore yet");
            }
        }
        retired
    }

    /// The key of `epoch`, or why it cannot be had.
    pub(crate) fn key(&self, epoch: u32) -> Result<Arc<EpochKey>> {
        {
            // Epochs are kept in ascending order.
            let epochs = self.read_epochs();
            if let Ok(i) = epochs.binary_search_by_key(&epoch, |k| k.epoch) {
                return Ok(epochs[i].clone());
            }
        }
        Err(self.missing(epoch))
    }

    /// Runs `f` with the key of `epoch` (see [`Keyring::with_reserved`] for why the
    /// epoch list stays read-locked meanwhile for records up to [`HOLD_LOCK_LIMIT`]).
    pub(crate) fn with_key<R>(
        &self,
        epoch: u32,
        len: usize,
        f: impl FnOnce(&EpochKey) -> Result<R>,
    ) -> Result<R> {
        if len > HOLD_LOCK_LIMIT {
            let key = self.key(epoch)?;
            return f(&key);
        }
        {
            let epochs = self.read_epochs();
            if let Ok(i) = epochs.binary_search_by_key(&epoch, |k| k.epoch) {
                return f(&epochs[i]);
            }
        }
        Err(self.missing(epoch))
    }

    /// Why `epoch` has no key: retired, or never issued.
    fn missing(&self, epoch: u32) -> Error {
        if epoch >= 1 && u64::from(epoch) <= self.highest.load(Ordering::Acquire) {
            Error::KeyRetired { epoch }
        } else {
            Error::UnknownKeyEpoch { epoch }
        }
    }

    /// Epoch numbers currently usable for opening (ascending).
    pub(crate) fn live_epochs(&self) -> Vec<u32> {
        self.read_epochs().iter().map(|k| k.epoch).collect()
    }

    /// Whether the current key is older than `every`.
    pub(crate) fn older_than(&self, every: Duration) -> bool {
        self.current().created.elapsed() >= every
    }
}
