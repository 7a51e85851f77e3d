//! The kernel registry: what the gate holds about each kernel ([`KernelEntry`], with
//! the regions it points to: its control block, its saved state), each sender's
//! sequence counter, and the [`Registry`] of entries by kernel id.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::sealing::KernelContexts;
use crate::backend::{BufferId, KernelWorker};
use crate::control::ControlBlock;
use crate::error::{Error, Result};
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
    /// Received timestamps not merged into `clock`: too far ahead of the wall clock.
    pub(super) clock_ahead: AtomicU64,
    pub(super) sent: AtomicU64,
    /// Buffers owned by the kernel, with their reserved sizes.
    pub(super) buffers: Mutex<HashMap<BufferId, u64>>,
    pub(super) memory: AtomicU64,
    pub(super) worker: Mutex<Option<Box<dyn KernelWorker>>>,
    pub(super) stop_requested: AtomicBool,
    pub(super) finalized: AtomicBool,
    pub(super) undelivered: AtomicU64,
    /// Messages the kernel took from its queue whose outcome its control block holds:
    /// handled (`messages_processed`) or refused at opening (`error_count`). Added to
    /// only under the control lock, once the block's update is written
    /// (`Gate::update_control_settling`), so that the final count of a stopped kernel
    /// can tell which it took and never accounted for.
    pub(super) settled: AtomicU64,
    pub(super) launched_at: Instant,
    /// Runs a device program: its control block is opened and re-sealed on the GPU.
    pub(super) device: bool,
    /// A device kernel's control block as last written or checked by the host (after
    /// every round, every host update): what `status()` reads, so that a poller
    /// neither makes a device read nor waits for a round.
    pub(super) status_cache: Mutex<Option<ControlBlock>>,
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
    /// A kernel not yet started: its control block is placed by the launch, its
    /// queue holds up to `queue_capacity` messages.
    pub(super) fn new(
        id: KernelId,
        incarnation: u32,
        contexts: KernelContexts,
        sandbox: Option<Arc<KernelSlot>>,
        queue_capacity: usize,
        device: bool,
    ) -> Self {
        KernelEntry {
            id: id.clone(),
            incarnation,
            integrity_failures: AtomicU64::new(0),
            sandbox,
            mailbox: Mailbox::new(id, queue_capacity),
            contexts,
            state: Mutex::new(None),
            status_cache: Mutex::new(None),
            control: Mutex::new(ControlSlot::Final(ControlBlock::default())),
            sender: Mutex::new(SenderState::default()),
            clock: HybridClock::new(),
            clock_ahead: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            buffers: Mutex::new(HashMap::new()),
            memory: AtomicU64::new(0),
            worker: Mutex::new(None),
            stop_requested: AtomicBool::new(false),
            finalized: AtomicBool::new(false),
            undelivered: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            launched_at: Instant::now(),
            device,
        }
    }

    /// Whether a stop was requested or the kernel is already finalized.
    pub(super) fn is_stopping(&self) -> bool {
        self.stop_requested.load(Ordering::Acquire) || self.finalized.load(Ordering::Acquire)
    }

    /// How long the kernel has been running.
    pub(super) fn uptime(&self) -> Duration {
        self.launched_at.elapsed()
    }
}

/// The kernels the gate knows, by id: running ones, and finalized ones (kept for their
/// final status until their id is launched again).
#[derive(Debug, Default)]
pub(super) struct Registry {
    kernels: RwLock<HashMap<KernelId, Arc<KernelEntry>>>,
}

impl Registry {
    /// Adds the entry `make` builds for `id`, unless a kernel not yet finalized holds
    /// the id (`DuplicateKernel`). `make` runs under the registry's lock, so two
    /// launches of one id cannot both pass the check.
    pub(super) fn register(
        &self,
        id: &KernelId,
        make: impl FnOnce() -> Result<KernelEntry>,
    ) -> Result<Arc<KernelEntry>> {
        let mut kernels = self.kernels.write();
        if let Some(old) = kernels.get(id)
            && !old.finalized.load(Ordering::Acquire)
        {
            return Err(Error::DuplicateKernel { id: id.to_string() });
        }
        let entry = Arc::new(make()?);
        kernels.insert(id.clone(), entry.clone());
        Ok(entry)
    }

    /// Forgets `id` (a launch that failed).
    pub(super) fn remove(&self, id: &KernelId) {
        self.kernels.write().remove(id);
    }

    /// The entry of kernel `id`, or `UnknownKernel`.
    pub(super) fn get(&self, id: &str) -> Result<Arc<KernelEntry>> {
        self.kernels
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::UnknownKernel { id: id.to_owned() })
    }

    /// Every kernel's id, sorted.
    pub(super) fn ids(&self) -> Vec<KernelId> {
        let mut ids: Vec<KernelId> = self.kernels.read().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Every entry, finalized or not.
    pub(super) fn entries(&self) -> Vec<Arc<KernelEntry>> {
        self.kernels.read().values().cloned().collect()
    }

    /// The entries of kernels not yet finalized.
    pub(super) fn live(&self) -> Vec<Arc<KernelEntry>> {
        self.kernels
            .read()
            .values()
            .filter(|e| !e.finalized.load(Ordering::Acquire))
            .cloned()
            .collect()
    }
}
