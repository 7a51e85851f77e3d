//! The compute backend seam: [`ComputeBackend`] is everything the runtime knows about a
//! device, and [`CpuBackend`] is the embedded default.
//!
//! A backend owns device buffers and runs persistent kernels. It does **not** decide
//! anything about security: the runtime calls it only after its security gate has
//! checked, accounted and (where configured) sealed. Once a backend has been handed to
//! [`RuntimeBuilder::with_backend`](crate::runtime::RuntimeBuilder::with_backend) the
//! runtime owns it, so no caller can reach its buffers around the gate.
//!
//! Implementing a backend (the contract every implementation keeps):
//! - [`ComputeBackend::allocation_size`] returns the real number of bytes an allocation
//!   of `len` reserves; [`ComputeBackend::allocate`] reserves exactly that and hands out
//!   zeroed memory.
//! - [`ComputeBackend::free`] zeroes the buffer's memory before releasing it.
//! - Reads and writes out of bounds fail with [`Error::OutOfBounds`]; unknown ids with
//!   [`Error::UnknownBuffer`]; nothing panics on bad arguments.
//! - [`ComputeBackend::launch`] starts a kernel that talks to the runtime only through
//!   its [`KernelDriver`]; the kernel's handler gets the driver's [`KernelContext`]
//!   (user operations only) and never the driver.

mod context;
mod cpu;
pub mod device;
mod driver;
#[cfg(feature = "hostile-device-testing")]
pub mod hostile;
pub mod input_ring;
mod port;
pub mod ring_model;
mod round_report;
mod table;
mod words;

pub use context::KernelContext;
pub use cpu::{CpuBackend, spawn_host_kernel, spawn_kernel_thread};
pub use device::{
    AeadJob, AeadOp, DeviceCipher, DeviceProgram, DeviceRound, DeviceRoundOutcome,
    DeviceRoundSealing,
};
pub use driver::KernelDriver;
pub use port::BatchOutcome;
pub(crate) use port::{KernelPort, RoundFn};
pub use table::BufferTable;

use std::fmt;

use crate::error::{Error, Result};
use crate::k2k::{KernelId, Message};

/// Identifies one device buffer of one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufferId(pub u64);

impl fmt::Display for BufferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The result of an allocation: the buffer and the bytes it really occupies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The new buffer.
    pub id: BufferId,
    /// Bytes the caller may read and write (the requested length).
    pub len: u64,
    /// Bytes the device reserved (the requested length rounded up to the backend's
    /// granularity); memory accounting and limits use this number.
    pub reserved: u64,
}

/// What kind of device a backend drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeviceKind {
    /// Host memory and threads.
    Cpu,
    /// A discrete GPU.
    DiscreteGpu,
    /// An integrated GPU.
    IntegratedGpu,
    /// A software implementation of a GPU API (for example Mesa's lavapipe).
    SoftwareGpu,
    /// Anything else.
    Other,
}

/// Facts about a backend, shown in reports and used by compliance checks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BackendInfo {
    /// Short backend name (`"cpu"`, `"wgpu"`, `"cuda"`).
    pub name: &'static str,
    /// The device, in words (adapter name, CPU model).
    pub device: String,
    /// What kind of device it is.
    pub kind: DeviceKind,
    /// Whether buffers are zeroed when allocated.
    pub zeroes_on_allocate: bool,
    /// Whether buffers are zeroed when freed.
    pub zeroes_on_free: bool,
}

/// [`BackendInfo`] as read back from a saved `SecuritySnapshot`.
#[derive(serde::Deserialize)]
struct SavedBackendInfo {
    name: String,
    device: String,
    kind: DeviceKind,
    zeroes_on_allocate: bool,
    zeroes_on_free: bool,
}

impl<'de> serde::Deserialize<'de> for BackendInfo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SavedBackendInfo::deserialize(d).map(Self::from)
    }
}

impl From<SavedBackendInfo> for BackendInfo {
    /// This workspace's backends keep their own static names; any other name is kept by
    /// leaking its few bytes, once per snapshot read, since `BackendInfo` names are
    /// `'static`.
    fn from(s: SavedBackendInfo) -> Self {
        let name = match s.name.as_str() {
            "cpu" => "cpu",
            "wgpu" => "wgpu",
            "cuda" => "cuda",
            _ => Box::leak(s.name.into_boxed_str()),
        };
        BackendInfo {
            name,
            device: s.device,
            kind: s.kind,
            zeroes_on_allocate: s.zeroes_on_allocate,
            zeroes_on_free: s.zeroes_on_free,
        }
    }
}

/// A kernel's message handler on host-executed backends: called once per message, on
/// the kernel's own thread, with the kernel's context (for sending with its identity).
pub type HostHandler = Box<dyn FnMut(&KernelContext, Message) -> HandlerResult + Send + 'static>;

/// What a handler returns. An error is counted in the control block (`error_count`,
/// `last_error`) and the kernel goes on with the next message.
pub type HandlerResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The code a kernel runs.
#[non_exhaustive]
pub enum KernelProgram {
    /// A Rust closure run over the input queue on a host thread (CPU backend, and GPU
    /// backends for kernels that need no device code).
    Host(HostHandler),
    /// The runtime's persistent kernel on a GPU (GPU backends only).
    Device(DeviceProgram),
}

impl fmt::Debug for KernelProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelProgram::Host(_) => f.write_str("KernelProgram::Host(..)"),
            KernelProgram::Device(p) => f.debug_tuple("KernelProgram::Device").field(p).finish(),
        }
    }
}

/// Everything a backend needs to start a persistent kernel.
#[derive(Debug)]
pub struct KernelLaunch {
    /// The kernel's identity.
    pub id: KernelId,
    /// The device buffer holding its control block.
    pub control: BufferId,
    /// The code to run.
    pub program: KernelProgram,
    /// Bytes of the control block in its buffer (sealed or plain).
    pub control_len: usize,
    /// The kernel's only way to the runtime: queue, control block, sends, buffers. The
    /// handler gets [`KernelDriver::context`], never the driver itself.
    pub driver: KernelDriver,
}

/// A running kernel, as its backend sees it.
pub trait KernelWorker: Send + Sync {
    /// Whether the kernel's execution has ended (normally or not).
    fn is_finished(&self) -> bool;

    /// Waits for the end of execution. Returns [`Error::KernelPanicked`] when the kernel
    /// ended by panicking. Called once, after [`KernelWorker::is_finished`] said true or
    /// after a stop was requested.
    fn join(&mut self) -> Result<()>;

    /// For kernels that open and re-seal their control block on the device: runs one
    /// round now so that the block is re-sealed under the current key (key rotation).
    /// `None` (the default) means the host re-seals it.
    fn reseal_on_device(&self) -> Option<Result<()>> {
        None
    }

    /// The signal raised when execution ends (normally, by panic or by error): the
    /// runtime waits on it and never polls. Workers started with
    /// [`cpu::spawn_kernel_thread`] raise theirs when the thread's body returns or
    /// unwinds.
    fn finish_signal(&self) -> std::sync::Arc<FinishSignal>;

    /// Test-only (cargo feature `hostile-device-testing`): the hook through which a
    /// test overwrites this kernel's own device buffers between rounds; `None` for
    /// kernels without device buffers. See [`hostile`].
    #[cfg(feature = "hostile-device-testing")]
    fn hostile_device(&self) -> Option<hostile::HostileDevice> {
        None
    }
}

/// Raised once when a kernel's execution ends (normally, by panic, or by error);
/// waited on with a condition variable.
#[derive(Debug, Default)]
pub struct FinishSignal {
    done: parking_lot::Mutex<bool>,
    cv: parking_lot::Condvar,
}

impl FinishSignal {
    /// Raises the signal and wakes every waiter.
    pub fn set(&self) {
        *self.done.lock() = true;
        self.cv.notify_all();
    }

    /// Whether the signal was raised.
    pub fn is_set(&self) -> bool {
        *self.done.lock()
    }

    /// Waits until the signal is raised or `deadline` passes; returns whether it was
    /// raised.
    pub fn wait_until(&self, deadline: std::time::Instant) -> bool {
        let mut done = self.done.lock();
        while !*done {
            if self.cv.wait_until(&mut done, deadline).timed_out() {
                break;
            }
        }
        *done
    }
}

/// A compute device: buffers and persistent kernels.
pub trait ComputeBackend: Send + Sync + 'static {
    /// Facts about the backend and its device.
    fn info(&self) -> BackendInfo;

    /// Bytes an allocation of `len` bytes reserves on this device, or
    /// [`Error::InvalidAllocation`] when `len` cannot be allocated (zero, too large).
    fn allocation_size(&self, len: u64) -> Result<u64>;

    /// Allocates a zeroed buffer of `len` bytes.
    fn allocate(&self, len: u64) -> Result<Allocation>;

    /// Writes `data` at `offset`.
    fn write(&self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<()>;

    /// Reads `out.len()` bytes at `offset` into `out`.
    fn read(&self, buffer: BufferId, offset: u64, out: &mut [u8]) -> Result<()>;

    /// Sets every byte of the buffer to zero.
    fn zero(&self, buffer: BufferId) -> Result<()>;

    /// Zeroes and releases the buffer.
    fn free(&self, buffer: BufferId) -> Result<()>;

    /// Bytes currently reserved by live buffers.
    fn allocated_bytes(&self) -> u64;

    /// Starts a persistent kernel.
    fn launch(&self, launch: KernelLaunch) -> Result<Box<dyn KernelWorker>>;
}

/// Checks `offset + len <= size` without overflow.
pub fn check_bounds(buffer: BufferId, offset: u64, len: usize, size: u64) -> Result<()> {
    let len64 = len as u64;
    match offset.checked_add(len64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfBounds {
            buffer: buffer.0,
            offset,
            len: len64,
            size,
        }),
    }
}
