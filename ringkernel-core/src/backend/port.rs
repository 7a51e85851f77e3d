//! The runtime's side of one kernel, as the backend layer names it: the crate-private
//! [`KernelPort`] behind both a kernel's [`KernelContext`](super::KernelContext) and its
//! backend's [`KernelDriver`](super::KernelDriver).

use std::time::Duration;

use super::BufferId;
use super::device::{DeviceRound, DeviceRoundOutcome};
use crate::error::{Error, Result};
use crate::k2k::{KernelId, Message};
use crate::security::memory::Plaintext;

/// What a kernel reports after working through a batch of messages.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchOutcome {
    /// Messages handled (successfully or not).
    pub processed: u64,
    /// Of those, how many the handler returned an error for.
    pub errors: u32,
}

/// One device round as the runtime runs it: the backend's part, called with the
/// round's inputs while the control block is locked.
pub(crate) type RoundFn<'a> = dyn FnMut(DeviceRound) -> Result<DeviceRoundOutcome> + 'a;

/// The runtime's side of one kernel: the user operations of its context and the driver
/// operations of its backend. Implemented by the runtime only.
pub(crate) trait KernelPort: Send + Sync {
    // ----- user operations (KernelContext) ----------------------------------------------
    fn id(&self) -> &KernelId;
    fn send(&self, to: &str, topic: &str, payload: &[u8], wait: Option<Duration>) -> Result<()>;
    fn should_terminate(&self) -> bool;
    fn allocate(&self, len: u64) -> Result<BufferId>;
    fn write(&self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<()>;
    fn read(&self, buffer: BufferId, offset: u64, len: usize) -> Result<Vec<u8>>;
    fn free(&self, buffer: BufferId) -> Result<()>;
    fn save_state(&self, data: &[u8]) -> Result<()>;
    fn load_state(&self) -> Result<Option<Plaintext>>;

    // ----- driver operations (KernelDriver) ---------------------------------------------
    fn next_batch(&self, max: usize) -> Option<Vec<Message>>;
    fn complete_batch(&self, outcome: BatchOutcome);
    fn mark_terminated(&self);
    fn stop_after_panic(&self, message: &str);
    fn device_round(&self, round: &mut RoundFn<'_>) -> Result<()>;
    fn device_refusals(&self, peer: &KernelId, count: u64);
    fn stop_with_error(&self, error: &Error);
}
