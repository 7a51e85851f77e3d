//! What a kernel's own code sees: [`KernelContext`], with user operations only.
//!
//! A handler gets a `&KernelContext` with every message. Through it the kernel sends
//! (with its own identity), allocates, reads, writes and frees its own buffers, saves
//! and loads its state, and checks whether it must stop. Nothing here drives the
//! kernel's loop: taking batches, recording outcomes, running device rounds and
//! reporting device refusals belong to the backend's
//! [`KernelDriver`](super::KernelDriver), which the runtime hands only to the backend
//! and which no method of this type returns.

use std::sync::Arc;
use std::time::Duration;

use super::BufferId;
use super::port::KernelPort;
use crate::error::Result;
use crate::k2k::KernelId;
use crate::security::memory::Plaintext;

/// Handed to a running kernel (and to its handler with every message): sends carry this
/// kernel's identity, buffers are this kernel's, and every call passes the runtime's
/// security gate. A context cannot be constructed outside the runtime.
#[derive(Clone)]
pub struct KernelContext {
    port: Arc<dyn KernelPort>,
}

impl std::fmt::Debug for KernelContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelContext")
            .field("kernel", self.port.id())
            .finish()
    }
}

impl KernelContext {
    pub(crate) fn new(port: Arc<dyn KernelPort>) -> Self {
        KernelContext { port }
    }

    /// This kernel's id.
    pub fn id(&self) -> &KernelId {
        self.port.id()
    }

    /// Sends a message from this kernel to `to`. Fails at once with `QueueFull` when
    /// the destination's queue is full, or while sends are waiting for room in it (the
    /// room goes to them first). A handler should not block its own queue.
    pub fn send(&self, to: &str, topic: &str, payload: &[u8]) -> Result<()> {
        self.port.send(to, topic, payload, None)
    }

    /// Like [`KernelContext::send`], waiting up to `wait` for room in the queue.
    pub fn send_timeout(
        &self,
        to: &str,
        topic: &str,
        payload: &[u8],
        wait: Duration,
    ) -> Result<()> {
        self.port.send(to, topic, payload, Some(wait))
    }

    /// Whether the runtime has asked this kernel to stop (terminate, watchdog). A
    /// handler that loops for long should check it and return.
    pub fn should_terminate(&self) -> bool {
        self.port.should_terminate()
    }

    /// Allocates a device buffer owned by this kernel.
    pub fn allocate(&self, len: u64) -> Result<BufferId> {
        self.port.allocate(len)
    }

    /// Writes into one of this kernel's buffers.
    pub fn write(&self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<()> {
        self.port.write(buffer, offset, data)
    }

    /// Reads from one of this kernel's buffers.
    pub fn read(&self, buffer: BufferId, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.port.read(buffer, offset, len)
    }

    /// Frees (and zeroes) one of this kernel's buffers. Under a read-only memory
    /// policy this is refused like a write (`Error::Denied`, `ReadOnlyWrite`).
    pub fn free(&self, buffer: BufferId) -> Result<()> {
        self.port.free(buffer)
    }

    /// Saves `data` as this kernel's state in device memory (sealed when kernel-state
    /// encryption is on), replacing earlier state.
    pub fn save_state(&self, data: &[u8]) -> Result<()> {
        self.port.save_state(data)
    }

    /// This kernel's saved state, if any; zeroed when dropped.
    pub fn load_state(&self) -> Result<Option<Plaintext>> {
        self.port.load_state()
    }
}
