//! [`CudaBackend`]: device memory with real-size accounting, zeroed on allocation
//! (`alloc_zeros`) and on free (`memset` then release, after the device finished).

use std::sync::Arc;

use parking_lot::Mutex;
use ringkernel_core::Error;
use ringkernel_core::backend::{
    Allocation, BackendInfo, BufferId, BufferTable, ComputeBackend, DeviceKind, KernelLaunch,
    KernelProgram, KernelWorker, check_bounds, spawn_host_kernel,
};

use crate::device::{Device, SharedMem, driver_error};

/// Allocation granule: device allocations are counted in 256-byte units (the CUDA
/// allocation alignment).
pub(crate) const GRANULE: u64 = 256;

/// The CUDA compute backend. See the crate docs.
pub struct CudaBackend {
    pub(crate) dev: Arc<Device>,
    buffers: BufferTable<SharedMem>,
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
            buffers: BufferTable::new(),
        })
    }

    /// The device's name and compute capability.
    pub fn device(&self) -> (String, (i32, i32)) {
        (self.dev.name.clone(), self.dev.arch)
    }

    pub(crate) fn buffer(&self, id: BufferId) -> Result<(SharedMem, u64), Error> {
        self.buffers.get(id)
    }

    /// Zeroes device memory and waits until that is done.
    fn clear(&self, mem: &SharedMem) -> Result<(), Error> {
        self.dev
            .stream
            .memset_zeros(&mut *mem.lock())
            .map_err(|e| driver_error("memset", e))?;
        self.dev.sync()
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
        Ok(self
            .buffers
            .insert(Arc::new(Mutex::new(mem)), len, reserved))
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
        self.clear(&mem)
    }

    fn free(&self, buffer: BufferId) -> Result<(), Error> {
        let (mem, _) = self.buffers.remove(buffer)?;
        // Zero on the device and wait before the memory goes back to the allocator.
        self.clear(&mem)
    }

    fn allocated_bytes(&self) -> u64 {
        self.buffers.allocated_bytes()
    }

    fn launch(&self, launch: KernelLaunch) -> Result<Box<dyn KernelWorker>, Error> {
        match &launch.program {
            KernelProgram::Device(program) => {
                let (control, _) = self.buffer(launch.control)?;
                crate::kernel::launch(self.dev.clone(), control, program.clone(), launch)
            }
            _ => spawn_host_kernel(launch),
        }
    }
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        for mem in self.buffers.drain() {
            if let Err(e) = self.clear(&mem) {
                tracing::error!(error = %e, "cannot clear device memory at shutdown");
            }
        }
    }
}
