//! The runtime's side of a kernel's two surfaces: [`GatePort`] implements the
//! crate-private [`KernelPort`] behind a kernel's
//! [`KernelContext`](crate::backend::KernelContext) (user operations) and its
//! backend's [`KernelDriver`](crate::backend::KernelDriver) (driver operations), so
//! both pass the gate with the kernel's own entry.
//!
//! The port stands on the gate, never the other way: `launch.rs` wraps a new port in
//! the kernel's driver and hands it to the backend.

use std::sync::Arc;
use std::time::Duration;

use super::gate::Gate;
use super::registry::KernelEntry;
use crate::backend::{BatchOutcome, BufferId, KernelPort, RoundFn};
use crate::error::{Error, Result};
use crate::k2k::{KernelId, Message};
use crate::security::memory::Plaintext;

/// One kernel's port into the gate.
pub(super) struct GatePort {
    gate: Arc<Gate>,
    entry: Arc<KernelEntry>,
}

impl GatePort {
    /// The port of `entry`, for its kernel's driver.
    pub(super) fn new(gate: Arc<Gate>, entry: Arc<KernelEntry>) -> Arc<Self> {
        Arc::new(GatePort { gate, entry })
    }
}

impl KernelPort for GatePort {
    fn id(&self) -> &KernelId {
        &self.entry.id
    }

    fn send(&self, to: &str, topic: &str, payload: &[u8], wait: Option<Duration>) -> Result<()> {
        self.gate.send(Some(&self.entry), to, topic, payload, wait)
    }

    fn should_terminate(&self) -> bool {
        self.gate.should_stop(&self.entry)
    }

    fn allocate(&self, len: u64) -> Result<BufferId> {
        self.gate.allocate(&self.entry, len)
    }

    fn write(&self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<()> {
        self.gate.write(&self.entry, buffer, offset, data, true)
    }

    fn read(&self, buffer: BufferId, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.gate.read(&self.entry, buffer, offset, len)
    }

    fn free(&self, buffer: BufferId) -> Result<()> {
        self.gate.free(&self.entry, buffer, true)
    }

    fn save_state(&self, data: &[u8]) -> Result<()> {
        self.gate.save_state(&self.entry, data)
    }

    fn load_state(&self) -> Result<Option<Plaintext>> {
        self.gate.load_state(&self.entry)
    }

    fn next_batch(&self, max: usize) -> Option<Vec<Message>> {
        self.gate.next_batch(&self.entry, max)
    }

    fn complete_batch(&self, outcome: BatchOutcome) {
        self.gate.complete_batch(&self.entry, outcome);
    }

    fn mark_terminated(&self) {
        self.gate.mark_terminated(&self.entry, None);
    }

    fn stop_after_panic(&self, message: &str) {
        tracing::error!(kernel = %self.entry.id, panic = message, "kernel handler panicked; stopping kernel");
        let _ = self.gate.request_stop(&self.entry);
        self.gate.mark_terminated(&self.entry, Some(panic_code()));
    }

    fn device_round(&self, round: &mut RoundFn<'_>) -> Result<()> {
        self.gate
            .device_round(&self.entry, |r| round(r).map(|outcome| (outcome, ())))
    }

    fn device_refusals(&self, peer: &KernelId, count: u64) {
        self.gate.device_refusals(&self.entry, peer, count);
    }

    fn stop_with_error(&self, error: &Error) {
        self.gate.stop_with_error(&self.entry, error);
    }
}

/// Clamp used when a kernel is told to stop after its handler panicked.
fn panic_code() -> u32 {
    Error::KernelPanicked {
        id: String::new(),
        message: String::new(),
    }
    .code()
}
