//! [`WgpuBackend`]: device buffers with real-size accounting, zeroed on allocation
//! (wgpu zero-initialises every buffer) and cleared on the device before release.

use std::sync::Arc;

use parking_lot::Mutex;
use ringkernel_core::Error;
use ringkernel_core::backend::{
    Allocation, BackendInfo, BufferId, BufferTable, ComputeBackend, KernelLaunch, KernelProgram,
    KernelWorker, check_bounds, spawn_host_kernel,
};

use crate::gpu::{AdapterFacts, Gpu, align4};
use crate::shaders::Poly1305Arithmetic;

/// Allocation granule: buffers are created in multiples of 256 bytes (the storage
/// binding offset alignment of most adapters), and that is what accounting counts.
pub(crate) const GRANULE: u64 = 256;

/// The wgpu compute backend. See the crate docs.
pub struct WgpuBackend {
    pub(crate) gpu: Arc<Gpu>,
    buffers: BufferTable<Arc<wgpu::Buffer>>,
    /// Serialises read-modify-write cycles of unaligned writes.
    write_lock: Mutex<()>,
}

impl std::fmt::Debug for WgpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuBackend")
            .field("adapter", &self.gpu.facts.name)
            .field("backend", &self.gpu.facts.backend)
            .finish_non_exhaustive()
    }
}

impl WgpuBackend {
    /// Opens the adapter the environment names, or the default one, and compiles the
    /// kernels. Returns [`Error::BackendUnavailable`] when there is no usable adapter.
    ///
    /// Poly1305 runs on 64-bit integers ([`Poly1305Arithmetic::Int64`]) when the
    /// adapter offers `SHADER_INT64`, and on 32-bit arithmetic with emulated products
    /// ([`Poly1305Arithmetic::Emulated16`]) otherwise; [`WgpuBackend::poly1305`] says
    /// which.
    pub fn new() -> Result<Self, Error> {
        Self::open(None)
    }

    /// Like [`WgpuBackend::new`], with Poly1305's arithmetic chosen by the caller
    /// instead of by the adapter's features: for tests and benchmarks that run both
    /// paths on one adapter. [`Poly1305Arithmetic::Int64`] on an adapter without
    /// `SHADER_INT64` is [`Error::BackendUnavailable`], never a silent fallback.
    pub fn with_poly1305(arithmetic: Poly1305Arithmetic) -> Result<Self, Error> {
        Self::open(Some(arithmetic))
    }

    fn open(arithmetic: Option<Poly1305Arithmetic>) -> Result<Self, Error> {
        let gpu = Gpu::open(arithmetic)?;
        gpu.pipelines()?;
        Ok(WgpuBackend {
            gpu,
            buffers: BufferTable::new(),
            write_lock: Mutex::new(()),
        })
    }

    /// The selected adapter.
    pub fn adapter(&self) -> &AdapterFacts {
        &self.gpu.facts
    }

    /// How this backend's kernels compute Poly1305's products.
    pub fn poly1305(&self) -> Poly1305Arithmetic {
        self.gpu.arithmetic
    }

    pub(crate) fn buffer(&self, id: BufferId) -> Result<(Arc<wgpu::Buffer>, u64), Error> {
        self.buffers.get(id)
    }
}

impl ComputeBackend for WgpuBackend {
    fn info(&self) -> BackendInfo {
        let f = &self.gpu.facts;
        BackendInfo {
            name: "wgpu",
            device: format!(
                "{} ({}, {}, Poly1305 {})",
                f.name,
                f.backend,
                f.device_type,
                match self.gpu.arithmetic {
                    Poly1305Arithmetic::Int64 => "int64",
                    Poly1305Arithmetic::Emulated16 => "emulated 16-bit",
                }
            ),
            kind: f.kind,
            zeroes_on_allocate: true,
            zeroes_on_free: true,
        }
    }

    fn allocation_size(&self, len: u64) -> Result<u64, Error> {
        let max = self
            .gpu
            .limits
            .max_buffer_size
            .min(self.gpu.limits.max_storage_buffer_binding_size);
        let reserved = len.div_ceil(GRANULE).checked_mul(GRANULE);
        match reserved {
            Some(r) if len > 0 && r <= max => Ok(r),
            _ => Err(Error::InvalidAllocation(len)),
        }
    }

    fn allocate(&self, len: u64) -> Result<Allocation, Error> {
        let reserved = self.allocation_size(len)?;
        let buffer = self.gpu.storage("ringkernel buffer", reserved)?;
        Ok(self.buffers.insert(Arc::new(buffer), len, reserved))
    }

    fn write(&self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), Error> {
        let (buf, len) = self.buffer(buffer)?;
        check_bounds(buffer, offset, data.len(), len)?;
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        let (a0, a1) = (offset & !3, align4(end));
        if a0 == offset && a1 == end {
            self.gpu.queue.write_buffer(&buf, offset, data);
        } else {
            // wgpu copies whole words: patch the enclosing words.
            let _g = self.write_lock.lock();
            let mut words = self.gpu.read_back(&buf, a0, a1 - a0)?;
            let start = (offset - a0) as usize;
            words[start..start + data.len()].copy_from_slice(data);
            self.gpu.queue.write_buffer(&buf, a0, &words);
            zeroize::Zeroize::zeroize(&mut words);
        }
        self.gpu.queue.submit([]);
        Ok(())
    }

    fn read(&self, buffer: BufferId, offset: u64, out: &mut [u8]) -> Result<(), Error> {
        let (buf, len) = self.buffer(buffer)?;
        check_bounds(buffer, offset, out.len(), len)?;
        if out.is_empty() {
            return Ok(());
        }
        let end = offset + out.len() as u64;
        let a0 = offset & !3;
        let mut words = self.gpu.read_back(&buf, a0, align4(end) - a0)?;
        let start = (offset - a0) as usize;
        out.copy_from_slice(&words[start..start + out.len()]);
        zeroize::Zeroize::zeroize(&mut words);
        Ok(())
    }

    fn zero(&self, buffer: BufferId) -> Result<(), Error> {
        let (buf, _) = self.buffer(buffer)?;
        self.gpu.clear(&buf)
    }

    fn free(&self, buffer: BufferId) -> Result<(), Error> {
        let (mem, _) = self.buffers.remove(buffer)?;
        // Zero on the device, wait, then release: the next owner of this memory finds
        // zeros even on drivers that do not clear new allocations.
        let r = self.gpu.clear(&mem);
        mem.destroy();
        r
    }

    fn allocated_bytes(&self) -> u64 {
        self.buffers.allocated_bytes()
    }

    fn launch(&self, launch: KernelLaunch) -> Result<Box<dyn KernelWorker>, Error> {
        match &launch.program {
            KernelProgram::Device(program) => {
                let (control, _) = self.buffer(launch.control)?;
                crate::kernel::launch(self.gpu.clone(), control, program.clone(), launch)
            }
            _ => spawn_host_kernel(launch),
        }
    }
}

impl Drop for WgpuBackend {
    fn drop(&mut self) {
        for b in self.buffers.drain() {
            if let Err(e) = self.gpu.clear(&b) {
                tracing::error!(error = %e, "cannot clear a device buffer at shutdown");
            }
            b.destroy();
        }
    }
}
