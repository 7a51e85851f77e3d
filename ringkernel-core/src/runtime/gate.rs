//! The security gate: the one place every launch, allocation, buffer access, send,
//! receive, termination and periodic tick passes through.
//!
//! [`Runtime`](super::Runtime), [`KernelHandle`](super::KernelHandle), a kernel's
//! [`KernelContext`](crate::backend::KernelContext) and its backend's
//! [`KernelDriver`](crate::backend::KernelDriver) are thin fronts over this type; backends are
//! reachable only from here. A security layer therefore enforces its rules by adding a
//! step to one of the methods below, and no caller can go around it: the backend is
//! owned by the gate and never handed out.
//!
//! The order of the steps on a send is fixed: resolve the real sender and destination,
//! validate, (sandbox decision), (audit), (seal), enqueue.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::security::memory::Plaintext;

use super::counters::Counters;
use super::sealing::{KernelContexts, Sealing};
use super::{KernelState, KernelStatus, LaunchOptions, RuntimeConfig, SecurityMode};
use crate::backend::{
    BatchOutcome, BufferId, ComputeBackend, KernelDriver, KernelLaunch, KernelWorker,
};
use crate::control::ControlBlock;
use crate::error::{Error, HANDLER_ERROR_CODE, Result};
use crate::k2k::{Endpoint, HybridClock, KernelId, Mailbox, Message, validate_message};
use crate::security::audit::{AuditEvent, AuditLog, AuditResult};
use crate::security::encryption::{InstanceId, KeyId, MemoryEncryption};
use crate::security::sandbox::{KernelSandbox, KernelSlot, Verdict, WatchdogStep};

/// Send-side state of one sender (a kernel or the host): its sequence counter. Held
/// across the enqueue so that per-pair order equals sequence order.
#[derive(Debug, Default)]
pub(crate) struct SenderState {
    next_sequence: u64,
}

/// Where a kernel's control block is: in its device buffer while the kernel lives, or
/// as a final host copy once its buffers have been freed.
#[derive(Debug)]
enum ControlSlot {
    /// In device buffer `buf`, sealed (when sealing is on) as sealing number `seq`.
    Live {
        buf: BufferId,
        seq: u64,
    },
    Final(ControlBlock),
}

/// A kernel's saved state: its buffer, the stored length and its sealing number.
#[derive(Debug)]
struct StateSlot {
    buf: BufferId,
    stored_len: usize,
    seq: u64,
}

/// Everything the runtime holds about one kernel.
pub(crate) struct KernelEntry {
    pub(crate) id: KernelId,
    /// This launch's number among the launches of `id` (never reused).
    pub(crate) incarnation: u32,
    /// Sealed regions of this launch that failed to open (see `audit_integrity`).
    integrity_failures: AtomicU64,
    pub(crate) mailbox: Mailbox,
    /// The kernel's sandbox state, when the runtime has a sandbox.
    sandbox: Option<Arc<KernelSlot>>,
    contexts: KernelContexts,
    state: Mutex<Option<StateSlot>>,
    /// The control block's location; its lock serialises read-modify-write cycles.
    control: Mutex<ControlSlot>,
    sender: Mutex<SenderState>,
    clock: HybridClock,
    sent: AtomicU64,
    /// Buffers owned by the kernel, with their reserved sizes.
    buffers: Mutex<HashMap<BufferId, u64>>,
    memory: AtomicU64,
    worker: Mutex<Option<Box<dyn KernelWorker>>>,
    stop_requested: AtomicBool,
    finalized: AtomicBool,
    undelivered: AtomicU64,
    launched_at: Instant,
    /// Runs a device program: its control block is opened and re-sealed on the GPU.
    device: bool,
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
    fn is_stopping(&self) -> bool {
        self.stop_requested.load(Ordering::Acquire) || self.finalized.load(Ordering::Acquire)
    }

    /// How long the kernel has been running.
    pub(crate) fn uptime(&self) -> Duration {
        self.launched_at.elapsed()
    }
}

/// The security layers a runtime was built with.
pub(crate) struct Layers {
    pub(crate) encryption: Option<MemoryEncryption>,
    pub(crate) sandbox: Option<KernelSandbox>,
    pub(crate) audit: Option<AuditLog>,
}

/// Who a runtime is: its instance id and its per-kernel counters.
pub(crate) struct Identity {
    pub(crate) instance: InstanceId,
    pub(crate) incarnations: Counters,
    pub(crate) snapshots: Counters,
}

/// The gate. See the module docs.
pub(crate) struct Gate {
    backend: Box<dyn ComputeBackend>,
    pub(crate) mode: SecurityMode,
    pub(crate) config: RuntimeConfig,
    pub(crate) encryption: Option<MemoryEncryption>,
    pub(crate) sandbox: Option<KernelSandbox>,
    pub(crate) audit: Option<AuditLog>,
    /// This runtime's random identity, bound into every context it seals under.
    pub(crate) instance: InstanceId,
    incarnations: Counters,
    /// State-snapshot generations per kernel id.
    pub(crate) snapshots: Counters,
    pub(super) sealing: Sealing,
    /// The ChaCha20-Poly1305 encryption of device kernels' control blocks when the
    /// configured algorithm has no GPU implementation (see [`Sealing`]).
    companion: Option<MemoryEncryption>,
    /// Key epochs (configured + companion) every live sealed region has been sealed
    /// under, after the last reseal.
    sealed_epoch: AtomicU32,
    pub(crate) notes: Vec<String>,
    kernels: RwLock<HashMap<KernelId, Arc<KernelEntry>>>,
    host_sender: Mutex<SenderState>,
    host_clock: HybridClock,
    shut_down: AtomicBool,
    tick_lock: Mutex<()>,
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
    pub(crate) fn new(
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
            notes,
            kernels: RwLock::new(HashMap::new()),
            host_sender: Mutex::new(SenderState::default()),
            host_clock: HybridClock::new(),
            shut_down: AtomicBool::new(false),
            tick_lock: Mutex::new(()),
        };
        *gate.sealed_epoch.get_mut() = gate.key_generation();
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
    fn encryptions(&self) -> impl Iterator<Item = &MemoryEncryption> {
        self.encryption.iter().chain(self.companion.iter())
    }

    /// Sum of the current key epochs of every encryption: changes on any rotation.
    fn key_generation(&self) -> u32 {
        self.encryptions()
            .filter_map(MemoryEncryption::current_key_id)
            .fold(0u32, |acc, k| acc.wrapping_add(k.0))
    }

    pub(crate) fn backend_info(&self) -> crate::backend::BackendInfo {
        self.backend.info()
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    fn ensure_open(&self) -> Result<()> {
        if self.is_shut_down() {
            Err(Error::RuntimeShutDown)
        } else {
            Ok(())
        }
    }

    // ----- launch ------------------------------------------------------------------

    pub(crate) fn launch(
        self: &Arc<Self>,
        id: &str,
        opts: LaunchOptions,
    ) -> Result<Arc<KernelEntry>> {
        self.ensure_open()?;
        let id = KernelId::new(id)?;
        let device = matches!(opts.program, crate::backend::KernelProgram::Device(_));
        let capacity = opts
            .queue_capacity
            .unwrap_or(self.config.default_queue_capacity);
        crate::k2k::validate_queue_capacity("queue_capacity", capacity)?;
        let cb = ControlBlock::new(u32::try_from(capacity).unwrap_or(u32::MAX));
        let mut kernels = self.kernels.write();
        if let Some(old) = kernels.get(&id)
            && !old.finalized.load(Ordering::Acquire)
        {
            return Err(Error::DuplicateKernel { id: id.to_string() });
        }
        let incarnation = self.incarnations.next(&id)?;
        // The sandbox picks the kernel's limits and policy and gives it its route slot.
        let sandbox = self.sandbox.as_ref().map(|s| s.register(&id)).transpose()?;
        let entry = Arc::new(KernelEntry {
            id: id.clone(),
            incarnation,
            integrity_failures: AtomicU64::new(0),
            sandbox,
            mailbox: Mailbox::new(id.clone(), cb.input_capacity as usize),
            contexts: KernelContexts::new(&self.instance, &id, incarnation),
            state: Mutex::new(None),
            control: Mutex::new(ControlSlot::Final(ControlBlock::default())),
            sender: Mutex::new(SenderState::default()),
            clock: HybridClock::new(),
            sent: AtomicU64::new(0),
            buffers: Mutex::new(HashMap::new()),
            memory: AtomicU64::new(0),
            worker: Mutex::new(None),
            stop_requested: AtomicBool::new(false),
            finalized: AtomicBool::new(false),
            undelivered: AtomicU64::new(0),
            launched_at: Instant::now(),
            device,
        });
        kernels.insert(id.clone(), entry.clone());
        drop(kernels);
        match self.start_kernel(&entry, cb, opts) {
            Ok(()) => {
                tracing::info!(kernel = %id, "kernel launched");
                self.audit(|| {
                    AuditEvent::new("kernel.launch")
                        .actor("host")
                        .target(&id)
                        .detail("incarnation", u64::from(incarnation))
                        .detail("queue_capacity", capacity as u64)
                        .detail("sealed_control_block", self.sealing.seals_control())
                });
                Ok(entry)
            }
            Err(e) => {
                self.audit(|| {
                    Self::failed(
                        AuditEvent::new("kernel.launch").actor("host").target(&id),
                        &e,
                    )
                });
                entry.stop_requested.store(true, Ordering::Release);
                entry.mailbox.close();
                self.finalize(&entry);
                self.kernels.write().remove(&id);
                Err(e)
            }
        }
    }

    fn start_kernel(
        self: &Arc<Self>,
        entry: &Arc<KernelEntry>,
        mut cb: ControlBlock,
        opts: LaunchOptions,
    ) -> Result<()> {
        let control_len = self.sealing.control_len(entry.device);
        let control = self.allocate(entry, control_len as u64)?;
        cb.is_active = 1;
        let ts = entry.clock.now();
        cb.hlc_physical = ts.physical;
        cb.hlc_logical = ts.logical;
        self.sealing.write_control(
            &*self.backend,
            control,
            entry.contexts.control,
            0,
            &cb,
            entry.device,
        )?;
        *entry.control.lock() = ControlSlot::Live {
            buf: control,
            seq: 0,
        };
        let worker = self.backend.launch(KernelLaunch {
            id: entry.id.clone(),
            control,
            program: opts.program,
            control_len,
            driver: KernelDriver::new(super::context::GatePort::new(self.clone(), entry.clone())),
        })?;
        *entry.worker.lock() = Some(worker);
        Ok(())
    }

    // ----- audit ---------------------------------------------------------------------

    /// Records an event when an audit log is configured; `make` runs only then.
    pub(crate) fn audit(&self, make: impl FnOnce() -> AuditEvent) {
        if let Some(log) = &self.audit
            && let Err(e) = log.append(make())
        {
            tracing::error!(error = %e, "audit record could not be queued");
        }
    }

    /// Marks an audit event as refused (sandbox) or failed, with the error's message.
    fn failed(ev: AuditEvent, e: &Error) -> AuditEvent {
        let result = if matches!(e, Error::Denied { .. }) {
            AuditResult::Denied
        } else {
            AuditResult::Error
        };
        ev.result(result).detail("error", e.to_string())
    }

    fn audits(&self, pick: impl Fn(&crate::security::audit::AuditConfig) -> bool) -> bool {
        self.audit.as_ref().is_some_and(|l| pick(l.config()))
    }

    fn audit_violation(&self, entry: &KernelEntry, e: &Error, verdict: &Verdict) {
        if !self.audits(|c| c.log_violations) {
            return;
        }
        let (kind, reason) = match e {
            Error::Denied {
                violation, reason, ..
            } => (violation.to_string(), reason.clone()),
            other => ("other".to_owned(), other.to_string()),
        };
        let action = match verdict {
            Verdict::AllowLogged(_) => "log_only",
            Verdict::DenyAndTerminate(_) => "terminate",
            _ => "deny",
        };
        self.audit(|| {
            AuditEvent::new("sandbox.violation")
                .actor(format!("kernel:{}", entry.id))
                .target(&entry.id)
                .result(if action == "log_only" {
                    AuditResult::Ok
                } else {
                    AuditResult::Denied
                })
                .detail("kind", kind)
                .detail("reason", reason)
                .detail("action", action)
        });
    }

    fn audit_memory(
        &self,
        entry: &KernelEntry,
        op: &str,
        buf: BufferId,
        bytes: u64,
        err: Option<&Error>,
    ) {
        if self.audits(|c| c.log_memory_access) {
            self.audit(|| {
                let ev = AuditEvent::new(&format!("memory.{op}"))
                    .actor(format!("kernel:{}", entry.id))
                    .target(format!("buffer:{}", buf.0))
                    .detail("bytes", bytes);
                match err {
                    None => ev,
                    Some(e) => Self::failed(ev, e),
                }
            });
        }
    }

    // ----- control block -------------------------------------------------------------

    /// Reads a kernel's control block (its final copy once the kernel is finalized).
    pub(crate) fn read_control(&self, entry: &KernelEntry) -> Result<ControlBlock> {
        let slot = entry.control.lock();
        match &*slot {
            ControlSlot::Final(cb) => Ok(*cb),
            ControlSlot::Live { buf, seq } => self.load_control(entry, *buf, *seq),
        }
    }

    fn load_control(&self, entry: &KernelEntry, buf: BufferId, seq: u64) -> Result<ControlBlock> {
        self.sealing
            .read_control(
                &*self.backend,
                buf,
                entry.contexts.control,
                seq,
                entry.device,
            )
            .inspect_err(|e| self.audit_integrity(entry, "control", e))
    }

    /// Audits a sealed region of `entry` that failed to open, naming what happened
    /// (tampered, stale, replayed, wrong context or key...): the first failure of a
    /// launch, then at every power of two, so a poller cannot flood the log.
    pub(crate) fn audit_integrity(&self, entry: &KernelEntry, region: &str, e: &Error) {
        let Some(kind) = e.integrity_kind() else {
            return;
        };
        let n = entry.integrity_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n.is_power_of_two() {
            tracing::error!(kernel = %entry.id, region, kind, error = %e, "sealed region refused");
            self.audit(|| {
                AuditEvent::new("seal.refused")
                    .actor("runtime")
                    .target(&entry.id)
                    .result(AuditResult::Denied)
                    .detail("region", region)
                    .detail("kind", kind)
                    .detail("error", e.to_string())
                    .detail("failures", n)
            });
        }
    }

    /// Read-modify-write of a kernel's control block under its lock, so that no update
    /// is lost between the host, the kernel and (later) key rotation.
    pub(crate) fn update_control<R>(
        &self,
        entry: &KernelEntry,
        f: impl FnOnce(&mut ControlBlock) -> R,
    ) -> Result<R> {
        let mut slot = entry.control.lock();
        match &mut *slot {
            ControlSlot::Final(_) => Err(Error::KernelTerminated {
                id: entry.id.to_string(),
            }),
            ControlSlot::Live { buf, seq } => {
                let mut cb = self.load_control(entry, *buf, *seq)?;
                let r = f(&mut cb);
                // Each write is a new sealing (fresh nonce, current key epoch, next
                // sequence), so a stale copy of the buffer can never be passed off.
                let next = *seq + 1;
                self.sealing.write_control(
                    &*self.backend,
                    *buf,
                    entry.contexts.control,
                    next,
                    &cb,
                    entry.device,
                )?;
                *seq = next;
                Ok(r)
            }
        }
    }

    pub(crate) fn status(&self, entry: &KernelEntry) -> Result<KernelStatus> {
        let cb = self.read_control(entry)?;
        let state = if cb.has_terminated == 1 || entry.finalized.load(Ordering::Acquire) {
            KernelState::Terminated
        } else if cb.should_terminate == 1 || entry.stop_requested.load(Ordering::Acquire) {
            KernelState::Terminating
        } else if cb.is_active == 1 {
            KernelState::Active
        } else {
            KernelState::Launching
        };
        Ok(KernelStatus {
            id: entry.id.clone(),
            state,
            messages_processed: cb.messages_processed,
            messages_in_flight: cb.messages_in_flight,
            messages_sent: cb.output_tail,
            error_count: cb.error_count,
            last_error: cb.last_error,
            memory_bytes: entry.memory.load(Ordering::Acquire),
            undelivered: entry.undelivered.load(Ordering::Acquire),
        })
    }

    // ----- buffers -------------------------------------------------------------------

    pub(crate) fn allocate(&self, entry: &KernelEntry, len: u64) -> Result<BufferId> {
        let r = self.allocate_inner(entry, len);
        let buf = *r.as_ref().unwrap_or(&BufferId(0));
        self.audit_memory(entry, "allocate", buf, len, r.as_ref().err());
        r
    }

    fn allocate_inner(&self, entry: &KernelEntry, len: u64) -> Result<BufferId> {
        self.ensure_open()?;
        if entry.finalized.load(Ordering::Acquire) {
            return Err(Error::KernelTerminated {
                id: entry.id.to_string(),
            });
        }
        // Held across the allocation so that concurrent allocations of one kernel are
        // accounted (and, with a sandbox, limited) one at a time.
        let mut buffers = entry.buffers.lock();
        if let (Some(sb), Some(slot)) = (&self.sandbox, &entry.sandbox) {
            // Limits use the backend's real reserved size, never the caller's number.
            let reserved = self.backend.allocation_size(len)?;
            let used = entry.memory.load(Ordering::Acquire);
            self.enforce(entry, sb.check_allocation(slot, used, reserved))?;
        }
        let alloc = self.backend.allocate(len)?;
        buffers.insert(alloc.id, alloc.reserved);
        entry.memory.fetch_add(alloc.reserved, Ordering::AcqRel);
        Ok(alloc.id)
    }

    fn owned(&self, entry: &KernelEntry, buf: BufferId) -> Result<()> {
        if entry.buffers.lock().contains_key(&buf) {
            Ok(())
        } else {
            Err(Error::UnknownBuffer(buf.0))
        }
    }

    /// Writes into a kernel's buffer. `by_kernel` marks writes through the kernel's
    /// own context, which a read-only memory policy refuses.
    pub(crate) fn write(
        &self,
        entry: &KernelEntry,
        buf: BufferId,
        offset: u64,
        data: &[u8],
        by_kernel: bool,
    ) -> Result<()> {
        let r = (|| {
            self.owned(entry, buf)?;
            self.guard_control_buffer(entry, buf)?;
            if by_kernel {
                self.check_kernel_write(entry, buf.0)?;
            }
            self.backend.write(buf, offset, data)
        })();
        self.audit_memory(entry, "write", buf, data.len() as u64, r.as_ref().err());
        r
    }

    fn check_kernel_write(&self, entry: &KernelEntry, buffer: u64) -> Result<()> {
        match (&self.sandbox, &entry.sandbox) {
            (Some(sb), Some(slot)) => self.enforce(entry, sb.check_write(slot, buffer)),
            _ => Ok(()),
        }
    }

    /// Carries out a sandbox verdict for `entry`'s operation.
    fn enforce(&self, entry: &KernelEntry, verdict: Verdict) -> Result<()> {
        match &verdict {
            Verdict::Allow => {}
            Verdict::AllowLogged(e) | Verdict::Deny(e) | Verdict::DenyAndTerminate(e) => {
                self.audit_violation(entry, e, &verdict);
            }
        }
        match verdict {
            Verdict::Allow | Verdict::AllowLogged(_) => Ok(()),
            Verdict::Deny(e) => Err(e),
            Verdict::DenyAndTerminate(e) => {
                if let Err(stop) = self.request_stop(entry) {
                    tracing::error!(kernel = %entry.id, error = %stop, "cannot stop violating kernel");
                }
                Err(e)
            }
        }
    }

    pub(crate) fn read(
        &self,
        entry: &KernelEntry,
        buf: BufferId,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        let r = (|| {
            self.owned(entry, buf)?;
            self.guard_control_buffer(entry, buf)?;
            let mut out = vec![0u8; len];
            self.backend.read(buf, offset, &mut out)?;
            Ok(out)
        })();
        self.audit_memory(entry, "read", buf, len as u64, r.as_ref().err());
        r
    }

    /// The control block and the saved state are reached only through their own
    /// gate paths (which seal and open them), never through the buffer API.
    fn guard_control_buffer(&self, entry: &KernelEntry, buf: BufferId) -> Result<()> {
        if matches!(&*entry.control.lock(), ControlSlot::Live { buf: b, .. } if *b == buf) {
            return Err(Error::UnknownBuffer(buf.0));
        }
        if matches!(&*entry.state.lock(), Some(s) if s.buf == buf) {
            return Err(Error::UnknownBuffer(buf.0));
        }
        Ok(())
    }

    /// Frees a kernel's buffer. `by_kernel` marks frees through the kernel's own
    /// context, which a read-only memory policy refuses like a write.
    pub(crate) fn free(&self, entry: &KernelEntry, buf: BufferId, by_kernel: bool) -> Result<()> {
        self.guard_control_buffer(entry, buf)?;
        if by_kernel && let (Some(sb), Some(slot)) = (&self.sandbox, &entry.sandbox) {
            let checked = self
                .owned(entry, buf)
                .and_then(|()| self.enforce(entry, sb.check_free(slot, buf.0)));
            if let Err(e) = checked {
                self.audit_memory(entry, "free", buf, 0, Some(&e));
                return Err(e);
            }
        }
        self.release(entry, buf)
    }

    fn release(&self, entry: &KernelEntry, buf: BufferId) -> Result<()> {
        let r = (|| {
            let mut buffers = entry.buffers.lock();
            let reserved = buffers.remove(&buf).ok_or(Error::UnknownBuffer(buf.0))?;
            self.backend.free(buf)?;
            entry.memory.fetch_sub(reserved, Ordering::AcqRel);
            Ok(reserved)
        })();
        self.audit_memory(
            entry,
            "free",
            buf,
            *r.as_ref().unwrap_or(&0),
            r.as_ref().err(),
        );
        r.map(|_| ())
    }

    // ----- K2K -----------------------------------------------------------------------

    fn lookup(&self, id: &str) -> Result<Arc<KernelEntry>> {
        self.kernels
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::UnknownKernel { id: id.to_owned() })
    }

    /// Sends from `from` (`None`: the host) to the kernel named `to`. `from` is always a
    /// registry entry reached through a handle or context, never a caller's string.
    pub(crate) fn send(
        &self,
        from: Option<&KernelEntry>,
        to: &str,
        topic: &str,
        payload: &[u8],
        wait: Option<Duration>,
    ) -> Result<()> {
        let r = self.send_inner(from, to, topic, payload, wait);
        if self.audits(|c| c.log_k2k_messages) {
            self.audit(|| {
                let actor = from.map_or("host".to_owned(), |e| format!("kernel:{}", e.id));
                // Route facts only: never the payload.
                let ev = AuditEvent::new("k2k.send")
                    .actor(actor)
                    .target(to)
                    .detail("topic", topic)
                    .detail("bytes", payload.len() as u64);
                match &r {
                    Ok(seq) => ev.detail("sequence", *seq),
                    Err(e) => Self::failed(ev, e),
                }
            });
        }
        r.map(|_| ())
    }

    /// The send itself; returns the message's sequence number.
    fn send_inner(
        &self,
        from: Option<&KernelEntry>,
        to: &str,
        topic: &str,
        payload: &[u8],
        wait: Option<Duration>,
    ) -> Result<u64> {
        self.ensure_open()?;
        validate_message(topic, payload)?;
        if let Some(src) = from
            && src.is_stopping()
        {
            return Err(Error::KernelTerminated {
                id: src.id.to_string(),
            });
        }
        let dest = self.lookup(to)?;
        if dest.is_stopping() {
            return Err(Error::KernelTerminated {
                id: dest.id.to_string(),
            });
        }
        let device_limit = crate::backend::device::MAX_DEVICE_PAYLOAD_LEN;
        if dest.device && payload.len() > device_limit {
            return Err(Error::InvalidConfig(format!(
                "payload of {} bytes exceeds the {device_limit}-byte limit of device kernels",
                payload.len()
            )));
        }
        if let (Some(sb), Some(src)) = (&self.sandbox, from)
            && let (Some(src_slot), Some(dst_slot)) = (&src.sandbox, &dest.sandbox)
        {
            // ACL, topic, connections, rate: refused sends are never enqueued.
            self.enforce(src, sb.check_send(src_slot, dst_slot, topic))?;
        }
        let (source, state, clock) = match from {
            Some(src) => (Endpoint::Kernel(src.id.clone()), &src.sender, &src.clock),
            None => (Endpoint::Host, &self.host_sender, &self.host_clock),
        };
        let mut state = state.lock();
        let sequence = state.next_sequence;
        // Sealed for the destination's queue, bound to source, destination, topic and
        // sequence, so a queued payload cannot be re-attributed or reordered.
        let stored = self.sealing.seal_payload(
            dest.contexts.queue,
            &source,
            &dest.id,
            topic,
            sequence,
            payload,
        )?;
        let msg = Message {
            source,
            destination: dest.id.clone(),
            topic: topic.to_owned(),
            payload: stored,
            sequence,
            timestamp: clock.now(),
        };
        dest.mailbox.push(msg, wait)?;
        state.next_sequence += 1;
        if let Some(src) = from {
            src.sent.fetch_add(1, Ordering::AcqRel);
        }
        Ok(sequence)
    }

    /// The kernel side of the queue: the next batch of messages, or `None` when the
    /// kernel must stop. Also merges the senders' clocks into the kernel's.
    pub(crate) fn next_batch(&self, entry: &KernelEntry, max: usize) -> Option<Vec<Message>> {
        if self.batch_should_stop(entry) {
            return None;
        }
        let batch = entry.mailbox.pop_batch(max, self.config.poll_interval);
        if batch.is_empty() {
            // Idle: look at the control block again (the watchdog or terminate may
            // have raised should_terminate).
            return if self.batch_should_stop(entry) {
                None
            } else {
                Some(batch)
            };
        }
        let mut open = Vec::with_capacity(batch.len());
        let mut failed: Option<Error> = None;
        let mut failures = 0u32;
        for mut m in batch {
            entry.clock.observe(m.timestamp);
            let stored = std::mem::take(&mut m.payload);
            match self.sealing.open_payload(
                entry.contexts.queue,
                &m.source,
                &m.destination,
                &m.topic,
                m.sequence,
                stored,
            ) {
                Ok(p) => {
                    m.payload = p;
                    open.push(m);
                }
                Err(e) => {
                    failures += 1;
                    tracing::error!(kernel = %entry.id, source = %m.source, sequence = m.sequence, error = %e,
                        "queued message failed to open and was not delivered");
                    self.audit_integrity(entry, "queue", &e);
                    failed = Some(e);
                }
            }
        }
        if let Some(e) = failed {
            let code = e.code();
            let _ = self.update_control(entry, |cb| {
                cb.error_count = cb.error_count.saturating_add(failures);
                cb.last_error = code;
            });
        }
        Some(open)
    }

    /// The stop check between batches. A device kernel's own round opens its control
    /// block and honours should_terminate on the device, and every host-side stop
    /// (terminate, watchdog, shutdown) also raises `stop_requested`; so for device
    /// kernels the flag suffices and no extra device read is made per batch.
    fn batch_should_stop(&self, entry: &KernelEntry) -> bool {
        if entry.device {
            entry.stop_requested.load(Ordering::Acquire)
        } else {
            self.should_stop(entry)
        }
    }

    pub(crate) fn should_stop(&self, entry: &KernelEntry) -> bool {
        if entry.stop_requested.load(Ordering::Acquire) {
            return true;
        }
        match self.read_control(entry) {
            Ok(cb) => cb.should_terminate == 1,
            Err(e) => {
                tracing::error!(kernel = %entry.id, error = %e, "control block unreadable; stopping kernel");
                true
            }
        }
    }

    /// Records a batch's outcome and the queue counters in the control block.
    pub(crate) fn complete_batch(&self, entry: &KernelEntry, outcome: BatchOutcome) {
        if outcome.processed == 0 {
            return;
        }
        let ts = entry.clock.now();
        let sent = entry.sent.load(Ordering::Acquire);
        let res = self.update_control(entry, |cb| {
            cb.messages_processed = cb.messages_processed.saturating_add(outcome.processed);
            cb.input_head = entry.mailbox.dequeued();
            cb.input_tail = entry.mailbox.enqueued().max(cb.input_head);
            cb.messages_in_flight = cb.input_tail - cb.input_head;
            cb.output_tail = sent;
            cb.output_head = sent;
            cb.hlc_physical = ts.physical;
            cb.hlc_logical = ts.logical;
            if outcome.errors > 0 {
                cb.error_count = cb.error_count.saturating_add(outcome.errors);
                cb.last_error = HANDLER_ERROR_CODE;
            }
        });
        if let Err(e) = res {
            tracing::error!(kernel = %entry.id, error = %e, "cannot update control block");
        }
    }

    /// Called by the kernel as its last act: marks it terminated in its control block.
    pub(crate) fn mark_terminated(&self, entry: &KernelEntry, error: Option<u32>) {
        let res = self.update_control(entry, |cb| {
            cb.is_active = 0;
            cb.has_terminated = 1;
            if let Some(code) = error {
                cb.last_error = code;
                cb.error_count = cb.error_count.saturating_add(1);
            }
        });
        match res {
            // Already finalized (cut off by the watchdog): nothing left to mark.
            Ok(()) | Err(Error::KernelTerminated { .. }) => {}
            Err(e) => {
                tracing::error!(kernel = %entry.id, error = %e, "cannot mark kernel terminated")
            }
        }
    }

    // ----- termination ------------------------------------------------------------------

    /// Asks a kernel to stop: raises should_terminate in its control block and closes
    /// its queue to new messages. Idempotent.
    pub(crate) fn request_stop(&self, entry: &KernelEntry) -> Result<()> {
        if entry.stop_requested.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        entry.mailbox.close();
        let res = self.update_control(entry, |cb| cb.should_terminate = 1);
        entry.mailbox.wake();
        tracing::info!(kernel = %entry.id, "kernel stop requested");
        self.audit(|| AuditEvent::new("kernel.terminate").target(&entry.id));
        res
    }

    /// Waits until the kernel has stopped, then releases its resources.
    pub(crate) fn wait(&self, entry: &KernelEntry, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let finished = entry.worker.lock().as_ref().is_none_or(|w| w.is_finished());
            if finished {
                self.finalize(entry);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Joins the worker, counts undelivered messages, keeps a final copy of the control
    /// block and frees (zeroes) every buffer of the kernel. Runs once per kernel.
    fn finalize(&self, entry: &KernelEntry) {
        self.finalize_with(entry, true);
    }

    /// [`Gate::finalize`]; with `join == false` the worker is abandoned instead of
    /// joined (a host thread stuck in user code cannot be killed; it is cut off from
    /// the runtime instead: its sends, buffers and control block are gone).
    fn finalize_with(&self, entry: &KernelEntry, join: bool) {
        let worker = entry.worker.lock().take();
        if let Some(mut w) = worker {
            if join {
                if let Err(e) = w.join() {
                    tracing::error!(kernel = %entry.id, error = %e, "kernel ended abnormally");
                }
            } else {
                tracing::warn!(kernel = %entry.id, "kernel did not stop within the watchdog grace period; cut off from the runtime");
            }
        }
        if entry.finalized.swap(true, Ordering::AcqRel) {
            return;
        }
        if let (Some(sb), Some(slot)) = (&self.sandbox, &entry.sandbox) {
            sb.unregister(slot);
        }
        entry.mailbox.close();
        let undelivered = entry.mailbox.drain();
        if undelivered > 0 {
            entry.undelivered.fetch_add(undelivered, Ordering::AcqRel);
            tracing::warn!(kernel = %entry.id, undelivered, "kernel stopped with messages still queued; they were not processed");
        }
        {
            let mut slot = entry.control.lock();
            if let ControlSlot::Live { buf, seq } = *slot {
                let mut last = self.load_control(entry, buf, seq).unwrap_or_default();
                last.is_active = 0;
                last.has_terminated = 1;
                last.input_head = entry.mailbox.dequeued();
                last.input_tail = entry.mailbox.enqueued().max(last.input_head);
                last.messages_in_flight = 0;
                *slot = ControlSlot::Final(last);
            }
        }
        *entry.state.lock() = None;
        let buffers: Vec<BufferId> = entry.buffers.lock().keys().copied().collect();
        for buf in buffers {
            if let Err(e) = self.release(entry, buf) {
                tracing::error!(kernel = %entry.id, buffer = %buf, error = %e, "cannot free kernel buffer");
            }
        }
        tracing::info!(kernel = %entry.id, "kernel terminated and its buffers freed");
        let last = self.read_control(entry).unwrap_or_default();
        self.audit(|| {
            AuditEvent::new("kernel.stopped")
                .target(&entry.id)
                .detail("messages_processed", last.messages_processed)
                .detail("undelivered", undelivered)
                .detail("errors", last.error_count)
                .detail("joined", join)
                .detail("uptime_ms", entry.uptime().as_millis() as u64)
        });
    }

    // ----- tick and shutdown -------------------------------------------------------------

    /// Periodic work, driven by the runtime's ticker thread: finalize kernels whose
    /// execution ended on its own (handler panic, backend failure).
    pub(crate) fn tick(&self) {
        let Some(_only_one) = self.tick_lock.try_lock() else {
            return;
        };
        self.tick_encryption();
        self.tick_watchdog();
        let entries: Vec<Arc<KernelEntry>> = self.kernels.read().values().cloned().collect();
        for entry in entries {
            if entry.finalized.load(Ordering::Acquire) {
                continue;
            }
            let finished = entry
                .worker
                .lock()
                .as_ref()
                .is_some_and(|w| w.is_finished());
            if finished {
                entry.stop_requested.store(true, Ordering::Release);
                self.finalize(&entry);
            }
        }
    }

    /// Execution-time limits: raise should_terminate, then stop by force after the
    /// sandbox's grace period.
    fn tick_watchdog(&self) {
        let Some(sb) = &self.sandbox else {
            return;
        };
        for step in sb.watchdog(Instant::now()) {
            let (WatchdogStep::Raise(id) | WatchdogStep::Force(id)) = &step;
            let Ok(entry) = self.lookup(id.as_str()) else {
                continue;
            };
            if entry.finalized.load(Ordering::Acquire) {
                continue;
            }
            self.audit(|| {
                AuditEvent::new("sandbox.watchdog")
                    .target(&entry.id)
                    .result(AuditResult::Denied)
                    .detail(
                        "step",
                        match step {
                            WatchdogStep::Raise(_) => "raise_should_terminate",
                            WatchdogStep::Force(_) => "cut_off_after_grace",
                        },
                    )
            });
            match step {
                WatchdogStep::Raise(_) => {
                    if let Err(e) = self.request_stop(&entry) {
                        tracing::error!(kernel = %entry.id, error = %e, "watchdog cannot raise should_terminate");
                    }
                }
                WatchdogStep::Force(_) => {
                    let finished = entry.worker.lock().as_ref().is_none_or(|w| w.is_finished());
                    self.finalize_with(&entry, finished);
                }
            }
        }
    }

    /// Timed rotation, re-sealing after any rotation (timed, bound-triggered or
    /// explicit), then retirement of keys whose grace period is over. Re-sealing runs
    /// before retirement, so no live region is left under a key about to be erased.
    fn tick_encryption(&self) {
        let Some(enc) = &self.encryption else {
            return;
        };
        for (e, which) in self.encryptions().zip(["configured", "gpu_control_blocks"]) {
            match e.rotate_if_due() {
                Ok(Some(k)) => self.audit(|| {
                    AuditEvent::new("key.rotate")
                        .target(k)
                        .detail("trigger", "auto_rotate")
                        .detail("keys", which)
                }),
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(error = %err, keys = which, "timed key rotation failed")
                }
            }
        }
        if self.key_generation() != self.sealed_epoch.load(Ordering::Acquire) {
            let current = enc.current_key_id().map_or(0, |k| k.0);
            let n = self.reseal_all();
            self.audit(|| {
                AuditEvent::new("key.reseal")
                    .target(format!("epoch-{current}"))
                    .detail("regions", n as u64)
            });
        }
        for (e, which) in self.encryptions().zip(["configured", "gpu_control_blocks"]) {
            let retired = e.retire_expired_keys();
            if !retired.is_empty() {
                self.audit(|| {
                    AuditEvent::new("key.retire")
                        .detail(
                            "epochs",
                            retired.iter().map(|k| u64::from(k.0)).collect::<Vec<u64>>(),
                        )
                        .detail("keys", which)
                });
            }
        }
    }

    /// Rotates the data key now and re-seals every live region under it.
    pub(crate) fn rotate_keys(&self) -> Result<(KeyId, usize)> {
        let enc = self.encryption.as_ref().ok_or(Error::EncryptionDisabled)?;
        let _g = self.tick_lock.lock();
        let key = enc.rotate_key()?;
        if let Some(c) = &self.companion {
            c.rotate_key()?;
        }
        let n = self.reseal_all();
        self.audit(|| {
            AuditEvent::new("key.rotate")
                .actor("host")
                .target(key)
                .detail("trigger", "explicit")
                .detail("regions_resealed", n as u64)
        });
        Ok((key, n))
    }

    /// Re-seals every live sealed region under the current key: control blocks first,
    /// then saved kernel state. Each goes through its region's lock, so no concurrent
    /// update is lost. Returns how many regions were re-sealed.
    pub(crate) fn reseal_all(&self) -> usize {
        let Some(generation) = self
            .encryption
            .as_ref()
            .and_then(|e| e.current_key_id())
            .map(|_| self.key_generation())
        else {
            return 0;
        };
        let entries: Vec<Arc<KernelEntry>> = self
            .kernels
            .read()
            .values()
            .filter(|e| !e.finalized.load(Ordering::Acquire))
            .cloned()
            .collect();
        let started = Instant::now();
        let mut n = 0;
        if self.sealing.seals_control() {
            for e in &entries {
                // A device kernel's block is re-sealed by its own kernel, on the device.
                let on_device = if e.device {
                    e.worker.lock().as_ref().and_then(|w| w.reseal_on_device())
                } else {
                    None
                };
                let r = on_device.unwrap_or_else(|| self.update_control(e, |_| ()));
                match r {
                    Ok(()) => n += 1,
                    Err(err) => {
                        tracing::error!(kernel = %e.id, error = %err, "cannot re-seal control block")
                    }
                }
            }
        }
        for e in &entries {
            match self.reseal_state(e) {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(err) => {
                    tracing::error!(kernel = %e.id, error = %err, "cannot re-seal kernel state")
                }
            }
        }
        self.sealed_epoch.store(generation, Ordering::Release);
        tracing::info!(
            generation,
            regions = n,
            elapsed_us = started.elapsed().as_micros() as u64,
            "sealed regions re-sealed under the current key"
        );
        n
    }

    // ----- device kernels --------------------------------------------------------------

    /// One round of a device kernel under its control block's lock: the gate reserves
    /// the re-sealing (device-direction nonce, next sequence number, current key),
    /// hands over key slots and route table, and records what the device did.
    pub(crate) fn device_round<R>(
        &self,
        entry: &KernelEntry,
        f: impl FnOnce(crate::backend::DeviceRound) -> Result<(crate::backend::DeviceRoundOutcome, R)>,
    ) -> Result<R> {
        use crate::backend::{DeviceRound, DeviceRoundSealing, device};
        use crate::security::encryption::EnvelopeKind;
        if !entry.device {
            return Err(Error::Unsupported {
                backend: self.backend.info().name,
                what: "device rounds for a host-program kernel".into(),
            });
        }
        let mut slot = entry.control.lock();
        let ControlSlot::Live { buf, seq } = &mut *slot else {
            return Err(Error::KernelTerminated {
                id: entry.id.to_string(),
            });
        };
        let sealing = match self.sealing.control_for(true) {
            None => None,
            Some(enc) => Some(DeviceRoundSealing {
                keys: enc.device_key_slots()?,
                seal: enc.device_seal(
                    EnvelopeKind::Single,
                    entry.contexts.control,
                    *seq + 1,
                    crate::control::CONTROL_BLOCK_SIZE as u64,
                )?,
            }),
        };
        let routes = match (&self.sandbox, &entry.sandbox) {
            (Some(sb), Some(s)) => Some((sb.route_table(), s.index)),
            _ => None,
        };
        let (outcome, r) = f(DeviceRound {
            control: *buf,
            sequence: *seq,
            queued_total: entry.mailbox.enqueued(),
            sealing,
            routes,
        })?;
        *seq = device::next_sequence(*seq, outcome);
        Ok(r)
    }

    /// Turns sends the device refused into `UnauthorizedK2K` violations (audited, with
    /// the configured action).
    pub(crate) fn device_refusals(&self, entry: &KernelEntry, peer: &KernelId, count: u64) {
        let (Some(sb), Some(slot)) = (&self.sandbox, &entry.sandbox) else {
            return;
        };
        for _ in 0..count {
            let verdict = sb.record_device_refusal(slot, peer);
            if let Err(e) = self.enforce(entry, verdict) {
                tracing::debug!(kernel = %entry.id, error = %e, "device-side send refused");
            }
        }
    }

    /// Stops a kernel whose device failed, recording `error`.
    pub(crate) fn stop_with_error(&self, entry: &KernelEntry, error: &Error) {
        tracing::error!(kernel = %entry.id, error = %error, "device kernel failed; stopping it");
        entry.stop_requested.store(true, Ordering::Release);
        entry.mailbox.close();
        let mut slot = entry.control.lock();
        if let ControlSlot::Live { buf, seq } = *slot {
            // The block may not open (that may be the failure): keep what can be read.
            let mut last = self.load_control(entry, buf, seq).unwrap_or_default();
            last.is_active = 0;
            last.has_terminated = 1;
            last.last_error = error.code();
            last.error_count = last.error_count.saturating_add(1);
            if let Err(e) = self.sealing.write_control(
                &*self.backend,
                buf,
                entry.contexts.control,
                seq + 1,
                &last,
                entry.device,
            ) {
                tracing::error!(kernel = %entry.id, error = %e, "cannot record the device failure");
                *slot = ControlSlot::Final(last);
            } else {
                *slot = ControlSlot::Live { buf, seq: seq + 1 };
            }
        }
    }

    // ----- kernel state ------------------------------------------------------------------

    /// Stores `data` as the kernel's state in a device buffer of its own (sealed as a
    /// STREAM when kernel-state encryption is on), replacing any earlier state.
    pub(crate) fn save_state(&self, entry: &KernelEntry, data: &[u8]) -> Result<()> {
        self.ensure_open()?;
        self.check_kernel_write(entry, 0)?;
        if entry.finalized.load(Ordering::Acquire) {
            return Err(Error::KernelTerminated {
                id: entry.id.to_string(),
            });
        }
        let mut slot = entry.state.lock();
        let seq = slot.as_ref().map_or(1, |s| s.seq + 1);
        let stored = self.sealing.seal_state(entry.contexts.state, seq, data)?;
        match slot.as_mut() {
            Some(s) if s.stored_len == stored.len() => {
                self.backend.write(s.buf, 0, &stored)?;
                s.seq = seq;
            }
            _ => {
                let buf = self.allocate(entry, stored.len().max(1) as u64)?;
                if let Err(e) = self.backend.write(buf, 0, &stored) {
                    let _ = self.release(entry, buf);
                    return Err(e);
                }
                if let Some(old) = slot.take() {
                    self.release(entry, old.buf)?;
                }
                *slot = Some(StateSlot {
                    buf,
                    stored_len: stored.len(),
                    seq,
                });
            }
        }
        Ok(())
    }

    /// The kernel's saved state, if any (zeroed when dropped).
    pub(crate) fn load_state(&self, entry: &KernelEntry) -> Result<Option<Plaintext>> {
        let slot = entry.state.lock();
        let Some(s) = slot.as_ref() else {
            return Ok(None);
        };
        let mut stored = vec![0u8; s.stored_len];
        self.backend.read(s.buf, 0, &mut stored)?;
        self.sealing
            .open_state(entry.contexts.state, s.seq, &stored)
            .map(Some)
            .inspect_err(|e| self.audit_integrity(entry, "state", e))
    }

    fn reseal_state(&self, entry: &KernelEntry) -> Result<bool> {
        let mut slot = entry.state.lock();
        let Some(s) = slot.as_mut() else {
            return Ok(false);
        };
        let mut stored = vec![0u8; s.stored_len];
        self.backend.read(s.buf, 0, &mut stored)?;
        let plain = self
            .sealing
            .open_state(entry.contexts.state, s.seq, &stored)?;
        let resealed = self
            .sealing
            .seal_state(entry.contexts.state, s.seq + 1, &plain)?;
        if resealed.len() != s.stored_len {
            return Err(Error::Corrupt {
                what: "kernel state",
                reason: "re-sealed length differs".into(),
            });
        }
        self.backend.write(s.buf, 0, &resealed)?;
        s.seq += 1;
        Ok(true)
    }

    pub(crate) fn kernel(&self, id: &str) -> Result<Arc<KernelEntry>> {
        self.lookup(id)
    }

    pub(crate) fn kernel_ids(&self) -> Vec<KernelId> {
        let mut ids: Vec<KernelId> = self.kernels.read().keys().cloned().collect();
        ids.sort();
        ids
    }

    pub(crate) fn memory_in_use(&self) -> u64 {
        self.backend.allocated_bytes()
    }

    /// Stops every kernel, waits for each (up to `timeout` in all), frees everything.
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<super::ShutdownReport> {
        self.shut_down.store(true, Ordering::Release);
        let entries: Vec<Arc<KernelEntry>> = self.kernels.read().values().cloned().collect();
        for e in &entries {
            // Keep going: a kernel whose control block cannot be updated (tampered,
            // replayed) is still stopped by its flag and closed queue, and every other
            // kernel must still be stopped and its buffers freed.
            if let Err(err) = self.request_stop(e) {
                tracing::error!(kernel = %e.id, error = %err, "cannot raise should_terminate; stopping by flag");
            }
        }
        let deadline = Instant::now() + timeout;
        let mut stuck = Vec::new();
        for e in &entries {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.wait(e, left).is_err() {
                stuck.push(e.id.to_string());
            }
        }
        let undelivered = entries
            .iter()
            .map(|e| e.undelivered.load(Ordering::Acquire))
            .sum();
        let report = super::ShutdownReport {
            kernels: entries.len(),
            undelivered,
            memory_in_use: self.backend.allocated_bytes(),
            stuck,
        };
        self.audit(|| {
            AuditEvent::new("runtime.shutdown")
                .actor("host")
                .detail("kernels", report.kernels as u64)
                .detail("undelivered", report.undelivered)
                .detail("memory_in_use", report.memory_in_use)
                .detail("stuck", report.stuck.clone())
        });
        if let Some(log) = &self.audit
            && let Err(e) = log.close()
        {
            tracing::error!(error = %e, "closing the audit log failed");
        }
        if report.stuck.is_empty() {
            tracing::info!(kernels = report.kernels, "runtime shut down");
            Ok(report)
        } else {
            tracing::error!(stuck = ?report.stuck, ?timeout, "kernels did not stop in time");
            Err(Error::ShutdownIncomplete {
                report: Box::new(report),
            })
        }
    }
}

/// Clamp used when a kernel is told to stop after its handler panicked.
pub(crate) fn panic_code() -> u32 {
    Error::KernelPanicked {
        id: String::new(),
        message: String::new(),
    }
    .code()
}
