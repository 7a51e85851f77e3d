//! The persistent-kernel runtime: [`RuntimeBuilder`], [`Runtime`], [`KernelHandle`].
//!
//! ```
//! use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder};
//! use std::time::Duration;
//!
//! let runtime = RuntimeBuilder::new().development().build()?;
//! let sink = runtime.launch("sink", LaunchOptions::new())?;
//! let source = runtime.launch(
//!     "source",
//!     LaunchOptions::new().handler(|ctx, msg| {
//!         ctx.send("sink", "forwarded", &msg.payload)?;
//!         Ok(())
//!     }),
//! )?;
//! runtime.send("source", "input", b"hello")?;
//! # let t0 = std::time::Instant::now();
//! while sink.status()?.messages_processed < 1 {
//! #   assert!(t0.elapsed() < Duration::from_secs(10));
//!     std::thread::sleep(Duration::from_millis(1));
//! }
//! runtime.shutdown()?;
//! # drop(source);
//! # Ok::<(), ringkernel_core::Error>(())
//! ```

mod buffers;
mod builder;
mod config;
mod control_blocks;
mod counters;
mod device_rounds;
mod events;
mod gate;
mod kernel_state;
mod keys;
mod launch;
mod lifecycle;
mod messaging;
mod port;
mod registry;
mod sealing;
mod snapshot;
mod state_snapshot;
mod tick;
mod verdicts;

pub use crate::backend::{BatchOutcome, KernelContext};
pub use crate::kinds::{SecurityMode, ShutdownReport};
pub use builder::RuntimeBuilder;
pub use config::RuntimeConfig;
pub use state_snapshot::StateSnapshot;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use crate::backend::{BackendInfo, BufferId, HandlerResult, KernelProgram};
use crate::error::Result;
use crate::k2k::{KernelId, Message};
use crate::security::encryption::{KeyId, MemoryEncryption};
use crate::security::sandbox::KernelSandbox;
use gate::Gate;
use registry::KernelEntry;

/// How long `shutdown()` waits for kernels to stop before reporting them stuck.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How a kernel is launched.
#[derive(Debug)]
pub struct LaunchOptions {
    pub(crate) queue_capacity: Option<usize>,
    pub(crate) program: KernelProgram,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl LaunchOptions {
    /// A kernel whose handler accepts every message and does nothing with it (a sink:
    /// each message is still counted as processed), with the runtime's default queue
    /// capacity.
    pub fn new() -> Self {
        LaunchOptions {
            queue_capacity: None,
            program: KernelProgram::Host(Box::new(|_, _| Ok(()))),
        }
    }

    /// The handler run for each message on host-executed backends.
    pub fn handler<F>(mut self, f: F) -> Self
    where
        F: FnMut(&KernelContext, Message) -> HandlerResult + Send + 'static,
    {
        self.program = KernelProgram::Host(Box::new(f));
        self
    }

    /// Any program the chosen backend runs.
    pub fn program(mut self, program: KernelProgram) -> Self {
        self.program = program;
        self
    }

    /// Input queue capacity in messages (rounded up to a power of two). At least 1 and
    /// at most [`crate::k2k::MAX_QUEUE_CAPACITY`]: `launch` refuses anything else with
    /// [`crate::Error::InvalidConfig`].
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = Some(capacity);
        self
    }
}

/// Life-cycle state of a kernel, as read from its control block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelState {
    /// Started, not yet marked active.
    Launching,
    /// Running and accepting messages.
    Active,
    /// Asked to stop, not yet stopped.
    Terminating,
    /// Stopped; its buffers are freed once the runtime has finalized it.
    Terminated,
}

/// A kernel's status, read from its control block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelStatus {
    /// The kernel.
    pub id: KernelId,
    /// Life-cycle state.
    pub state: KernelState,
    /// Messages handled so far.
    pub messages_processed: u64,
    /// Messages waiting in its queue when the control block was last written.
    pub messages_in_flight: u64,
    /// Messages it has sent (accepted into their receivers' queues; for a live device
    /// kernel, what its device has forwarded so far).
    pub messages_sent: u64,
    /// Errors met (handler errors, panics).
    pub error_count: u32,
    /// Code of the last error (0: none).
    pub last_error: u32,
    /// Device memory it owns now, in reserved bytes.
    pub memory_bytes: u64,
    /// Messages accepted for it and never confirmed processed: still queued when it
    /// stopped, behind a handler panic in its last batch, in the batch it was stuck in
    /// when the watchdog cut it off, or (device kernels) staged for or waiting in its
    /// input ring.
    pub undelivered: u64,
}

/// A kernel's handle: its identity for sends, its status, its buffers, its life cycle.
/// Handles are created only by [`Runtime::launch`] (and [`Runtime::kernel`]), so a
/// handle's identity cannot be forged.
#[derive(Clone, Debug)]
pub struct KernelHandle {
    gate: Arc<Gate>,
    entry: Arc<KernelEntry>,
}

impl KernelHandle {
    /// The kernel's id.
    pub fn id(&self) -> &KernelId {
        &self.entry.id
    }

    /// The kernel's status, read from its control block.
    pub fn status(&self) -> Result<KernelStatus> {
        self.gate.status(&self.entry)
    }

    /// This launch's incarnation: 1 for the first launch of the id, then one more for
    /// every relaunch (continued across restarts with a state directory).
    pub fn incarnation(&self) -> u32 {
        self.entry.incarnation
    }

    /// How long ago the kernel was launched.
    pub fn uptime(&self) -> Duration {
        self.entry.uptime()
    }

    /// Sends `payload` on `topic` from this kernel to `to`. Fails at once with
    /// [`crate::Error::QueueFull`] when the destination's queue is full, or while sends
    /// are waiting for room in it (the room goes to them first).
    pub fn send(&self, to: &str, topic: &str, payload: &[u8]) -> Result<()> {
        self.gate.send(Some(&self.entry), to, topic, payload, None)
    }

    /// Like [`KernelHandle::send`], waiting up to `wait` for room in the queue.
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

    /// Allocates a device buffer owned by this kernel; counts towards its memory.
    pub fn allocate(&self, len: u64) -> Result<BufferId> {
        self.gate.allocate(&self.entry, len)
    }

    /// Writes into one of this kernel's buffers.
    pub fn write(&self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<()> {
        self.gate.write(&self.entry, buffer, offset, data, false)
    }

    /// Reads from one of this kernel's buffers.
    pub fn read(&self, buffer: BufferId, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.gate.read(&self.entry, buffer, offset, len)
    }

    /// Frees (and zeroes) one of this kernel's buffers. The host may free them also
    /// under a read-only memory policy, which refuses frees from the kernel itself.
    pub fn free(&self, buffer: BufferId) -> Result<()> {
        self.gate.free(&self.entry, buffer, false)
    }

    /// The kernel's saved state (see [`KernelContext::save_state`]), opened.
    pub fn load_state(&self) -> Result<Option<crate::security::memory::Plaintext>> {
        self.gate.load_state(&self.entry)
    }

    /// Seals the kernel's saved state as a [`StateSnapshot`] of the next generation
    /// (persisted in the state directory, so a restart continues the count), for the
    /// caller to keep; `None` when the kernel has saved no state. Needs kernel-state
    /// sealing. Audited (`state.export`).
    pub fn export_state(&self) -> Result<Option<StateSnapshot>> {
        self.gate.export_state(&self.entry)
    }

    /// Restores `snapshot` as the kernel's state, if it is this kernel's snapshot of
    /// generation `expected_generation` and that generation is the latest exported
    /// for this kernel id (also by an earlier run with the same state directory and
    /// keys). Anything else is refused: an older or never-exported generation is
    /// [`Error::StaleSnapshot`](crate::Error::StaleSnapshot), another kernel's
    /// snapshot `WrongContext`, other keys `Tampered` or `UnknownKeyEpoch`. Audited
    /// either way (`state.restore`).
    pub fn restore_state(&self, snapshot: &StateSnapshot, expected_generation: u32) -> Result<()> {
        self.gate
            .restore_state(&self.entry, snapshot, expected_generation)
    }

    /// Asks the kernel to stop (raises `should_terminate` in its control block and
    /// closes its queue). Returns at once; calling it again does nothing.
    pub fn terminate(&self) -> Result<()> {
        self.gate.request_stop(&self.entry)
    }

    /// Waits up to `timeout` for the kernel to stop, then frees its buffers.
    pub fn wait(&self, timeout: Duration) -> Result<KernelStatus> {
        self.gate.wait(&self.entry, timeout)?;
        self.status()
    }
}

impl AsRef<str> for KernelHandle {
    fn as_ref(&self) -> &str {
        self.entry.id.as_str()
    }
}

/// A running runtime. Dropping it shuts it down.
#[derive(Debug)]
pub struct Runtime {
    gate: Arc<Gate>,
    ticker: Mutex<Option<(crossbeam_channel::Sender<()>, JoinHandle<()>)>>,
    compliance: Option<crate::security::compliance::ComplianceReporter>,
}

impl Runtime {
    fn start(gate: Arc<Gate>) -> Result<Self> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let weak = Arc::downgrade(&gate);
        let interval = gate.config.tick_interval;
        let ticker = std::thread::Builder::new()
            .name("rk-ticker".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(interval)
                {
                    match weak.upgrade() {
                        Some(g) => g.tick(),
                        None => break,
                    }
                }
            })
            .map_err(|source| crate::Error::ThreadSpawn {
                what: "ticker",
                source,
            })?;
        Ok(Runtime {
            gate,
            ticker: Mutex::new(Some((stop_tx, ticker))),
            compliance: None,
        })
    }

    /// Launches a persistent kernel named `id`.
    pub fn launch(&self, id: &str, options: LaunchOptions) -> Result<KernelHandle> {
        let entry = self.gate.launch(id, options)?;
        Ok(KernelHandle {
            gate: self.gate.clone(),
            entry,
        })
    }

    /// A handle to a kernel launched earlier.
    pub fn kernel(&self, id: &str) -> Result<KernelHandle> {
        Ok(KernelHandle {
            gate: self.gate.clone(),
            entry: self.gate.kernel(id)?,
        })
    }

    /// Ids of every kernel known to the runtime (running or terminated), sorted.
    pub fn kernels(&self) -> Vec<KernelId> {
        self.gate.kernel_ids()
    }

    /// Sends a message from the host program (source [`crate::k2k::Endpoint::Host`]).
    pub fn send(&self, to: &str, topic: &str, payload: &[u8]) -> Result<()> {
        self.gate.send(None, to, topic, payload, None)
    }

    /// Like [`Runtime::send`], waiting up to `wait` for room in the queue.
    pub fn send_timeout(
        &self,
        to: &str,
        topic: &str,
        payload: &[u8],
        wait: Duration,
    ) -> Result<()> {
        self.gate.send(None, to, topic, payload, Some(wait))
    }

    /// This runtime's random 128-bit identity, chosen at build: bound into the context
    /// of everything it seals, and shown in its audit log and compliance reports.
    pub fn instance_id(&self) -> crate::security::encryption::InstanceId {
        self.gate.instance
    }

    /// Production or development mode.
    pub fn mode(&self) -> SecurityMode {
        self.gate.mode
    }

    /// Facts about the backend in use.
    pub fn backend_info(&self) -> BackendInfo {
        self.gate.backend_info()
    }

    /// Device memory reserved by live buffers, in bytes.
    pub fn memory_in_use(&self) -> u64 {
        self.gate.memory_in_use()
    }

    /// The memory-encryption layer, when one is configured (also when it is
    /// `Algorithm::None` in development mode).
    pub fn encryption(&self) -> Option<&MemoryEncryption> {
        self.gate.encryption.as_ref()
    }

    pub(crate) fn set_compliance(&mut self, r: crate::security::compliance::ComplianceReporter) {
        self.compliance = Some(r);
    }

    /// The compliance reporter given to `RuntimeBuilder::with_compliance`.
    pub fn compliance(&self) -> Option<&crate::security::compliance::ComplianceReporter> {
        self.compliance.as_ref()
    }

    /// The immutable picture of this runtime's security state that compliance checks
    /// read (encryption, sandbox, audit, memory protection, backend), dated now.
    pub fn security_snapshot(&self) -> crate::security::compliance::SecuritySnapshot {
        use crate::security::compliance::SnapshotSource;
        self.gate.security_snapshot(std::time::SystemTime::now())
    }

    /// The audit log, when one is configured.
    pub fn audit_log(&self) -> Option<&crate::security::audit::AuditLog> {
        self.gate.audit.as_ref()
    }

    /// The kernel sandbox, when one is configured.
    pub fn sandbox(&self) -> Option<&KernelSandbox> {
        self.gate.sandbox.as_ref()
    }

    /// Rotates the data key now and re-seals every live sealed region (control blocks,
    /// kernel state) under it. Returns the new key and the number of regions re-sealed.
    pub fn rotate_keys(&self) -> Result<(KeyId, usize)> {
        self.gate.rotate_keys()
    }

    /// What the builder recorded about this runtime's security configuration, in
    /// particular every insecure choice development mode allowed.
    pub fn security_notes(&self) -> &[String] {
        &self.gate.notes
    }

    /// Runs the periodic work now (it also runs on the tick interval by itself).
    pub fn tick(&self) {
        self.gate.tick();
    }

    /// Stops every kernel, waits for them, frees (zeroes) all their buffers and stops
    /// the ticker. Later launches and sends fail with `RuntimeShutDown`.
    pub fn shutdown(&self) -> Result<ShutdownReport> {
        self.shutdown_timeout(DEFAULT_SHUTDOWN_TIMEOUT)
    }

    /// [`Runtime::shutdown`] with an explicit wait limit.
    pub fn shutdown_timeout(&self, timeout: Duration) -> Result<ShutdownReport> {
        let report = self.gate.shutdown(timeout);
        if let Some((stop, thread)) = self.ticker.lock().take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
        report
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if (!self.gate.is_shut_down() || self.ticker.lock().is_some())
            && let Err(e) = self.shutdown()
        {
            tracing::error!(error = %e, "runtime shutdown on drop failed");
        }
    }
}
