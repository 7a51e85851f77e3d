//! What the gate holds about each kernel: [`KernelEntry`] and the regions it points to
//! (its control block, its saved state), and each sender's sequence counter.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::sealing::KernelContexts;
use crate::backend::{BufferId, KernelWorker};
use crate::control::ControlBlock;
use crate::k2k::{HybridClock, KernelId, Mailbox};
use crate::security::sandbox::KernelSlot;

/// Send-side state of one sender (a kernel or the host): its sequence counter. Held
/// across the enqueue so that per-pair order equals sequence order.
#[derive(Debug, Default)]
pub(super) struct SenderState {
    pub(super) next_sequence: u64,
}

/// Where a kernel's control block is: in its device buffer while the kernel lives, or
/// as a final host copy once its buffers have been freed.
#[derive(Debug)]
pub(super) enum ControlSlot {
    /// In device buffer `buf`, sealed (when sealing is on) as sealing number `seq`.
    Live {
        buf: BufferId,
        seq: u64,
    },
    Final(ControlBlock),
}

/// A kernel's saved state: its buffer, the stored length and its sealing number.
#[derive(Debug)]
pub(super) struct StateSlot {
    pub(super) buf: BufferId,
    pub(super) stored_len: usize,
    pub(super) seq: u64,
}

/// Everything the runtime holds about one kernel.
pub(super) struct KernelEntry {
    pub(super) id: KernelId,
    /// This launch's number among the launches of `id` (never reused).
    pub(super) incarnation: u32,
    /// Sealed regions of this launch that failed to open (see `audit_integrity`).
    pub(super) integrity_failures: AtomicU64,
    pub(super) mailbox: Mailbox,
    /// The kernel's sandbox state, when the runtime has a sandbox.
    pub(super) sandbox: Option<Arc<KernelSlot>>,
    pub(super) contexts: KernelContexts,
    pub(super) state: Mutex<Option<StateSlot>>,
    /// The control block's location; its lock serialises read-modify-write cycles.
    pub(super) control: Mutex<ControlSlot>,
    pub(super) sender: Mutex<SenderState>,
    pub(super) clock: HybridClock,
    pub(super) sent: AtomicU64,
    /// Buffers owned by the kernel, with their reserved sizes.
    pub(super) buffers: Mutex<HashMap<BufferId, u64>>,
    pub(super) memory: AtomicU64,
    pub(super) worker: Mutex<Option<Box<dyn KernelWorker>>>,
    pub(super) stop_requested: AtomicBool,
    pub(super) finalized: AtomicBool,
    pub(super) undelivered: AtomicU64,
    pub(super) launched_at: Instant,
    /// Runs a device program: its control block is opened and re-sealed on the GPU.
    pub(super) device: bool,
}

impl std::fmt::Debug for KernelEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelEntry")
            .field("id", &self.id)
            .field("finalized", &self.finalized)
            .finish_non_exhaustive()
    }
}

impl KernelEntry {
    pub(super) fn is_stopping(&self) -> bool {
        self.stop_requested.load(Ordering::Acquire) || self.finalized.load(Ordering::Acquire)
    }

    /// How long the kernel has been running.
    pub(super) fn uptime(&self) -> Duration {
        self.launched_at.elapsed()
    }
}
