//! [`BufferTable`]: the bookkeeping every backend keeps for its buffers (ids, usable
//! lengths, reserved sizes and the live total), so that each backend only handles its
//! device memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use super::{Allocation, BufferId};
use crate::error::{Error, Result};

struct Slot<T> {
    mem: T,
    len: u64,
    reserved: u64,
}

/// Live buffers of one backend, each a handle `T` to its device memory (typically an
/// `Arc` the backend clones out to work on without holding the table).
pub struct BufferTable<T> {
    slots: RwLock<HashMap<BufferId, Slot<T>>>,
    last_id: AtomicU64,
    allocated: AtomicU64,
}

impl<T> Default for BufferTable<T> {
    fn default() -> Self {
        BufferTable {
            slots: RwLock::new(HashMap::new()),
            last_id: AtomicU64::new(0),
            allocated: AtomicU64::new(0),
        }
    }
}

impl<T> std::fmt::Debug for BufferTable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferTable")
            .field("buffers", &self.slots.read().len())
            .field("allocated", &self.allocated.load(Ordering::Acquire))
            .finish()
    }
}

impl<T: Clone> BufferTable<T> {
    /// An empty table; ids start at 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers new memory of `reserved` bytes, `len` of them usable.
    pub fn insert(&self, mem: T, len: u64, reserved: u64) -> Allocation {
        let id = BufferId(self.last_id.fetch_add(1, Ordering::Relaxed) + 1);
        self.slots.write().insert(id, Slot { mem, len, reserved });
        self.allocated.fetch_add(reserved, Ordering::AcqRel);
        Allocation { id, len, reserved }
    }

    /// The buffer's memory handle and usable length, or [`Error::UnknownBuffer`].
    pub fn get(&self, id: BufferId) -> Result<(T, u64)> {
        self.slots
            .read()
            .get(&id)
            .map(|s| (s.mem.clone(), s.len))
            .ok_or(Error::UnknownBuffer(id.0))
    }

    /// Unregisters the buffer (its bytes leave the live total) and returns its memory
    /// with its reserved size, for the backend to zero and release.
    pub fn remove(&self, id: BufferId) -> Result<(T, u64)> {
        let slot = self
            .slots
            .write()
            .remove(&id)
            .ok_or(Error::UnknownBuffer(id.0))?;
        self.allocated.fetch_sub(slot.reserved, Ordering::AcqRel);
        Ok((slot.mem, slot.reserved))
    }

    /// Unregisters every buffer and returns their memory (backend shutdown).
    pub fn drain(&self) -> Vec<T> {
        let slots: Vec<Slot<T>> = self.slots.write().drain().map(|(_, s)| s).collect();
        self.allocated.store(0, Ordering::Release);
        slots.into_iter().map(|s| s.mem).collect()
    }

    /// Bytes reserved by live buffers.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_lengths_and_accounting() {
        let t = BufferTable::new();
        let a = t.insert("a", 1, 64);
        let b = t.insert("b", 100, 128);
        assert_eq!((a.id, b.id), (BufferId(1), BufferId(2)));
        assert_eq!(t.allocated_bytes(), 192);
        assert_eq!(t.get(b.id).unwrap(), ("b", 100));
        assert_eq!(t.remove(a.id).unwrap(), ("a", 64));
        assert!(matches!(t.get(a.id), Err(Error::UnknownBuffer(1))));
        assert!(matches!(t.remove(a.id), Err(Error::UnknownBuffer(1))));
        assert_eq!(t.allocated_bytes(), 128);
        assert_eq!(t.drain(), ["b"]);
        assert_eq!(t.allocated_bytes(), 0);
    }
}
