//! The security gate: the one place every launch, allocation, buffer access, send,
//! receive, termination and periodic tick passes through.
//!
//! [`Runtime`](super::Runtime), [`KernelHandle`](super::KernelHandle), a kernel's
//! [`KernelContext`](crate::backend::KernelContext) and its backend's
//! [`KernelDriver`](crate::backend::KernelDriver) are thin fronts over this type; backends are
//! reachable only from here. A security layer therefore enforces its rules by adding a
//! step to one of the gate's methods, and no caller can go around it: the backend is
//! owned by the gate and never handed out.
//!
//! The order of the steps on a send is fixed: resolve the real sender and destination,
//! validate, (sandbox decision), (audit), (seal), enqueue.
//!
//! This file holds the gate itself: what it owns, how it is built and the helpers every
//! job shares. Each job is an `impl Gate` block in a file of its own beside this one:
//!
//! | file | job |
//! |---|---|
//! | `launch.rs` | launch a kernel: register it, write its first control block, start it |
//! | `registry.rs` | what the gate holds about each kernel |
//! | `control_blocks.rs` | read and update a kernel's control block; its status |
//! | `buffers.rs` | a kernel's buffers: allocate, write, read, free |
//! | `kernel_state.rs` | a kernel's saved state |
//! | `messaging.rs` | K2K: send, and the kernel's side of its queue |
//! | `device_rounds.rs` | the rounds of kernels that run on the device |
//! | `verdicts.rs` | carry out the sandbox's verdicts |
//! | `events.rs` | audit records |
//! | `lifecycle.rs` | stop, wait for, finalize kernels; shut down |
//! | `keys.rs` | key rotation and re-sealing |
//! | `tick.rs` | the periodic tick: rotation, watchdog, reaping |

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use parking_lot::Mutex;

use super::config::RuntimeConfig;
use super::counters::Counters;
use super::registry::{KernelEntry, Registry, SenderState};
use super::sealing::Sealing;
use crate::backend::ComputeBackend;
use crate::error::{Error, Result};
use crate::k2k::{HybridClock, KernelId};
use crate::kinds::SecurityMode;
use crate::security::audit::AuditLog;
use crate::security::encryption::{InstanceId, MemoryEncryption};
use crate::security::sandbox::KernelSandbox;

/// The security layers a runtime was built with.
pub(super) struct Layers {
    pub(super) encryption: Option<MemoryEncryption>,
    pub(super) sandbox: Option<KernelSandbox>,
    pub(super) audit: Option<AuditLog>,
}

/// Who a runtime is: its instance id and its per-kernel counters.
pub(super) struct Identity {
    pub(super) instance: InstanceId,
    pub(super) incarnations: Counters,
    pub(super) snapshots: Counters,
}

/// The gate. See the module docs.
pub(super) struct Gate {
    pub(super) backend: Box<dyn ComputeBackend>,
    pub(super) mode: SecurityMode,
    pub(super) config: RuntimeConfig,
    pub(super) encryption: Option<MemoryEncryption>,
    pub(super) sandbox: Option<KernelSandbox>,
    pub(super) audit: Option<AuditLog>,
    /// This runtime's random identity, bound into every context it seals under.
    pub(super) instance: InstanceId,
    pub(super) incarnations: Counters,
    /// State-snapshot generations per kernel id.
    pub(super) snapshots: Counters,
    pub(super) sealing: Sealing,
    /// The ChaCha20-Poly1305 encryption of device kernels' control blocks when the
    /// configured algorithm has no GPU implementation (see [`Sealing`]).
    pub(super) companion: Option<MemoryEncryption>,
    /// Key epochs (configured + companion) every live sealed region has been sealed
    /// under, after the last reseal.
    pub(super) sealed_epoch: AtomicU32,
    /// Per key set (in `encryptions()`'s order), the highest epoch whose rotation the
    /// audit log has (or that was current at start): see `record_unrecorded_rotations`.
    pub(super) recorded_epochs: [AtomicU32; 2],
    pub(super) notes: Vec<String>,
    pub(super) kernels: Registry,
    pub(super) host_sender: Mutex<SenderState>,
    pub(super) host_clock: HybridClock,
    pub(super) shut_down: AtomicBool,
    pub(super) tick_lock: Mutex<()>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("backend", &self.backend.info().name)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// Builds the gate over `backend` with the layers and identity the builder chose.
    pub(super) fn new(
        backend: Box<dyn ComputeBackend>,
        mode: SecurityMode,
        config: RuntimeConfig,
        layers: Layers,
        identity: Identity,
        mut notes: Vec<String>,
    ) -> Result<Self> {
        let Layers {
            encryption,
            sandbox,
            audit,
        } = layers;
        let Identity {
            instance,
            incarnations,
            snapshots,
        } = identity;
        let companion = Self::device_companion(&*backend, encryption.as_ref(), &mut notes)?;
        let sealing = Sealing::new(encryption.as_ref(), companion.as_ref());
        let mut gate = Gate {
            backend,
            mode,
            config,
            encryption,
            sandbox,
            audit,
            instance,
            incarnations,
            snapshots,
            sealing,
            companion,
            sealed_epoch: AtomicU32::new(0),
            recorded_epochs: Default::default(),
            notes,
            kernels: Registry::default(),
            host_sender: Mutex::new(SenderState::default()),
            host_clock: HybridClock::new(),
            shut_down: AtomicBool::new(false),
            tick_lock: Mutex::new(()),
        };
        *gate.sealed_epoch.get_mut() = gate.key_generation();
        let current: Vec<u32> = gate
            .encryptions()
            .map(|e| e.current_key_id().map_or(0, |k| k.0))
            .collect();
        for (recorded, epoch) in gate.recorded_epochs.iter_mut().zip(current) {
            *recorded.get_mut() = epoch;
        }
        Ok(gate)
    }

    /// On a GPU backend with sealed control blocks and an algorithm GPU kernels do not
    /// implement: a ChaCha20-Poly1305 encryption (own random master key, same rotation
    /// policy) for the control blocks of device kernels, and a note saying so.
    fn device_companion(
        backend: &dyn ComputeBackend,
        enc: Option<&MemoryEncryption>,
        notes: &mut Vec<String>,
    ) -> Result<Option<MemoryEncryption>> {
        use crate::security::encryption::device::DEVICE_ALGORITHM;
        let Some(enc) = enc.filter(|e| e.is_enabled() && e.config().seals_control_blocks()) else {
            return Ok(None);
        };
        if backend.info().kind == crate::backend::DeviceKind::Cpu
            || enc.algorithm() == DEVICE_ALGORITHM
        {
            return Ok(None);
        }
        let config = enc.config().clone().algorithm(DEVICE_ALGORITHM);
        let companion = MemoryEncryption::new(config)?;
        notes.push(format!(
            "control blocks of GPU kernels are sealed with {DEVICE_ALGORITHM} under their own \
             keys and the same rotation policy: GPU kernels do not implement the configured {}",
            enc.algorithm()
        ));
        Ok(Some(companion))
    }

    /// The configured and companion encryptions.
    pub(super) fn encryptions(&self) -> impl Iterator<Item = &MemoryEncryption> {
        self.encryption.iter().chain(self.companion.iter())
    }

    /// Sum of the current key epochs of every encryption: changes on any rotation.
    pub(super) fn key_generation(&self) -> u32 {
        self.encryptions()
            .filter_map(MemoryEncryption::current_key_id)
            .fold(0u32, |acc, k| acc.wrapping_add(k.0))
    }

    /// Facts about the backend.
    pub(super) fn backend_info(&self) -> crate::backend::BackendInfo {
        self.backend.info()
    }

    /// Whether shutdown has begun.
    pub(super) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Refuses with `RuntimeShutDown` once shutdown has begun, and with the audit log's
    /// stopped error once it has stopped under `AuditFailurePolicy::FailClosed`.
    pub(super) fn ensure_open(&self) -> Result<()> {
        if self.is_shut_down() {
            Err(Error::RuntimeShutDown)
        } else {
            self.ensure_audited()
        }
    }

    /// The entry of kernel `id`, or `UnknownKernel`.
    pub(super) fn kernel(&self, id: &str) -> Result<Arc<KernelEntry>> {
        self.kernels.get(id)
    }

    /// The ids of every kernel known (running or finalized), sorted.
    pub(super) fn kernel_ids(&self) -> Vec<KernelId> {
        self.kernels.ids()
    }

    /// Device memory reserved by live buffers, in bytes.
    pub(super) fn memory_in_use(&self) -> u64 {
        self.backend.allocated_bytes()
    }
}
