//! [`CudaBackend`]: device memory with real-size accounting, zeroed on allocation
//! (`alloc_zeros`) and on free (`memset` then release, after the device finished).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cudarc::driver::CudaSlice;
use parking_lot::Mutex;
use ringkernel_core::Error;
use ringkernel_core::backend::{
    Allocation, BackendInfo, BufferId, ComputeBackend, DeviceKind, KernelLaunch, KernelProgram,
    KernelWorker, check_bounds, spawn_host_kernel,
};

use crate::device::{Device, driver_error};

/// Allocation granule: device allocations are counted in 256-byte units (the CUDA
/// allocation alignment).
pub(crate) const GRANULE: u64 = 256;

/// Device memory shared between the backend and a kernel's driver.
pub(crate) type SharedMem = Arc<Mutex<CudaSlice<u8>>>;

/// One device buffer: `len` usable bytes in a `reserved`-byte allocation.
pub(crate) struct DeviceBuffer {
    pub(crate) mem: SharedMem,
    pub(crate) len: u64,
    pub(crate) reserved: u64,
}

/// The CUDA compute backend. See the crate docs.
pub struct CudaBackend {
    pub(crate) dev: Arc<Device>,
    buffers: Mutex<HashMap<u64, DeviceBuffer>>,
    next_id: AtomicU64,
    allocated: AtomicU64,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.dev.name)
            .field("arch", &self.dev.arch)
            .finish_non_exhaustive()
    }
}

impl CudaBackend {
    /// Opens CUDA device `ordinal` and compiles the kernels for its architecture.
    /// Returns [`Error::BackendUnavailable`] with the reason when there is no driver,
    /// no NVRTC or no such device.
    pub fn new(ordinal: usize) -> Result<Self, Error> {
        Ok(CudaBackend {
            dev: Arc::new(Device::open(ordinal)?),
            buffers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            allocated: AtomicU64::new(0),
        })
    }

    /// The device's name and compute capability.
    pub fn device(&self) -> (String, (i32, i32)) {
        (self.dev.name.clone(), self.dev.arch)
    }

    pub(crate) fn buffer(&self, id: BufferId) -> Result<(SharedMem, u64), Error> {
        self.buffers
            .lock()
            .get(&id.0)
            .map(|b| (b.mem.clone(), b.len))
            .ok_or(Error::UnknownBuffer(id.0))
    }
}

impl ComputeBackend for CudaBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "cuda",
            device: format!(
                "{} (compute capability {}.{})",
                self.dev.name, self.dev.arch.0, self.dev.arch.1
            ),
            kind: DeviceKind::DiscreteGpu,
            zeroes_on_allocate: true,
            zeroes_on_free: true,
        }
    }

    fn allocation_size(&self, len: u64) -> Result<u64, Error> {
        match len.div_ceil(GRANULE).checked_mul(GRANULE) {
            Some(r) if len > 0 && r <= self.dev.total_mem as u64 => Ok(r),
            _ => Err(Error::InvalidAllocation(len)),
        }
    }

    fn allocate(&self, len: u64) -> Result<Allocation, Error> {
        let reserved = self.allocation_size(len)?;
        let n = usize::try_from(reserved).map_err(|_| Error::InvalidAllocation(len))?;
        let mem = self
            .dev
            .stream
            .alloc_zeros::<u8>(n)
            .map_err(|e| driver_error("allocating device memory", e))?;
        self.dev.sync()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.buffers.lock().insert(
            id,
            DeviceBuffer {
                mem: Arc::new(Mutex::new(mem)),
                len,
                reserved,
            },
        );
        self.allocated.fetch_add(reserved, Ordering::AcqRel);
        Ok(Allocation {
            id: BufferId(id),
            len,
            reserved,
        })
    }

    fn write(&self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), Error> {
        let (mem, len) = self.buffer(buffer)?;
        check_bounds(buffer, offset, data.len(), len)?;
        if data.is_empty() {
            return Ok(());
        }
        let start = offset as usize;
        let mut mem = mem.lock();
        let mut view = mem.slice_mut(start..start + data.len());
        self.dev
            .stream
            .memcpy_htod(data, &mut view)
            .map_err(|e| driver_error("copy to the device", e))?;
        self.dev.sync()
    }

    fn read(&self, buffer: BufferId, offset: u64, out: &mut [u8]) -> Result<(), Error> {
        let (mem, len) = self.buffer(buffer)?;
        check_bounds(buffer, offset, out.len(), len)?;
        if out.is_empty() {
            return Ok(());
        }
        let start = offset as usize;
        let mem = mem.lock();
        let view = mem.slice(start..start + out.len());
        self.dev
            .stream
            .memcpy_dtoh(&view, out)
            .map_err(|e| driver_error("copy from the device", e))?;
        self.dev.sync()
    }

    fn zero(&self, buffer: BufferId) -> Result<(), Error> {
        let (mem, _) = self.buffer(buffer)?;
        let mut mem = mem.lock();
        self.dev
            .stream
            .memset_zeros(&mut *mem)
            .map_err(|e| driver_error("memset", e))?;
        self.dev.sync()
    }

    fn free(&self, buffer: BufferId) -> Result<(), Error> {
        let entry = self
            .buffers
            .lock()
            .remove(&buffer.0)
            .ok_or(Error::UnknownBuffer(buffer.0))?;
        self.allocated.fetch_sub(entry.reserved, Ordering::AcqRel);
        // Zero on the device and wait before the memory goes back to the allocator.
        let mut mem = entry.mem.lock();
        self.dev
            .stream
            .memset_zeros(&mut *mem)
            .map_err(|e| driver_error("memset", e))?;
        self.dev.sync()
    }

    fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Acquire)
    }

    fn launch(&self, launch: KernelLaunch) -> Result<Box<dyn KernelWorker>, Error> {
        match launch.program {
            KernelProgram::Device(_) => crate::kernel::launch(self, launch),
            _ => spawn_host_kernel(launch),
        }
    }
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        for (_, b) in self.buffers.get_mut().drain() {
            let mut mem = b.mem.lock();
            if let Err(e) = self.dev.stream.memset_zeros(&mut *mem) {
                tracing::error!(error = ?e, "cannot clear device memory at shutdown");
            }
        }
        if let Err(e) = self.dev.sync() {
            tracing::error!(error = %e, "cannot synchronize at shutdown");
        }
    }
}
