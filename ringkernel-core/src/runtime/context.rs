//! The kernel's own view of the runtime.

use std::sync::Arc;
use std::time::Duration;

use super::gate::{BatchOutcome, Gate, KernelEntry, panic_code};
use crate::backend::BufferId;
use crate::error::Result;
use crate::k2k::{KernelId, Message};

/// Handed to a running kernel (and to its handler with every message): sends carry this
/// kernel's identity, buffers are this kernel's, and every call passes the runtime's
/// security gate. A context cannot be constructed outside the runtime.
#[derive(Clone)]
pub struct KernelContext {
    gate: Arc<Gate>,
    entry: Arc<KernelEntry>,
}

impl std::fmt::Debug for KernelContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelContext")
            .field("kernel", &self.entry.id)
            .finish()
    }
}

impl KernelContext {
    pub(crate) fn new(gate: Arc<Gate>, entry: Arc<KernelEntry>) -> Self {
        KernelContext { gate, entry }
    }

    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
    }

    pub(crate) fn entry(&self) -> &KernelEntry {
        &self.entry
    }

    /// This kernel's id.
    pub fn id(&self) -> &KernelId {
        &self.entry.id
    }

    /// Sends a message from this kernel to `to`. Fails at once with `QueueFull` when
    /// the destination's queue is full (a handler should not block its own queue).
    pub fn send(&self, to: &str, topic: &str, payload: &[u8]) -> Result<()> {
        self.gate.send(Some(&self.entry), to, topic, payload, None)
    }

    /// Like [`KernelContext::send`], waiting up to `wait` for room in the queue.
    pub fn send_timeout(
        &self,
        to: &str,
        topic: &str,
        payload: &[u8],
        wait: Duration,
    ) -> Result<()> {
        self.gate
            .send(Some(&self.entry), to, topic, payload, Some(wait))
    }

    /// Whether the runtime has asked this kernel to stop (terminate, watchdog). A
    /// handler that loops for long should check it and return.
    pub fn should_terminate(&self) -> bool {
        self.gate.should_stop(&self.entry)
    }

    /// Allocates a device buffer owned by this kernel.
    pub fn allocate(&self, len: u64) -> Result<BufferId> {
        self.gate.allocate(&self.entry, len)
    }

    /// Writes into one of this kernel's buffers.
    pub fn write(&self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<()> {
        self.gate.write(&self.entry, buffer, offset, data, true)
    }

    /// Reads from one of this kernel's buffers.
    pub fn read(&self, buffer: BufferId, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.gate.read(&self.entry, buffer, offset, len)
    }

    /// Frees (and zeroes) one of this kernel's buffers.
    pub fn free(&self, buffer: BufferId) -> Result<()> {
        self.gate.free(&self.entry, buffer)
    }

    /// Saves `data` as this kernel's state in device memory (sealed when kernel-state
    /// encryption is on), replacing earlier state.
    pub fn save_state(&self, data: &[u8]) -> Result<()> {
        self.gate.save_state(&self.entry, data)
    }

    /// This kernel's saved state, if any; zeroed when dropped.
    pub fn load_state(&self) -> Result<Option<crate::security::memory::Plaintext>> {
        self.gate.load_state(&self.entry)
    }

    // ----- used by backends to drive the persistent-kernel loop ----------------------

    /// Backend API: the next batch of at most `max` messages (possibly empty after the
    /// poll interval), or `None` once the kernel must stop.
    pub fn next_batch(&self, max: usize) -> Option<Vec<Message>> {
        self.gate.next_batch(&self.entry, max)
    }

    /// Backend API: records a finished batch in the control block.
    pub fn complete_batch(&self, outcome: BatchOutcome) {
        self.gate.complete_batch(&self.entry, outcome);
    }

    /// Backend API: the kernel's last act on a normal stop.
    pub fn mark_terminated(&self) {
        self.gate.mark_terminated(&self.entry, None);
    }

    /// Backend API: the handler panicked; the kernel stops and records why.
    pub fn stop_after_panic(&self, message: &str) {
        tracing::error!(kernel = %self.entry.id, panic = message, "kernel handler panicked; stopping kernel");
        let _ = self.gate.request_stop(&self.entry);
        self.gate.mark_terminated(&self.entry, Some(panic_code()));
    }
}
