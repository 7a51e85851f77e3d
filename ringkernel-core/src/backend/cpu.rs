//! The CPU backend: device buffers in host memory, persistent kernels as threads.
//!
//! Buffers are reserved in 64-byte granules (a cache line; a control block takes two).
//! Freed buffers are zeroed and kept in a bounded pool for reuse, like a device
//! allocator does; an allocation served from the pool is already zero, so no caller ever
//! sees a previous owner's bytes.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use zeroize::Zeroize;

use super::{
    Allocation, BackendInfo, BatchOutcome, BufferId, BufferTable, ComputeBackend, DeviceKind,
    FinishSignal, HostHandler, KernelDriver, KernelLaunch, KernelProgram, KernelWorker,
    check_bounds,
};
use crate::error::{Error, Result};

/// Allocation granularity in bytes.
const GRANULE: u64 = 64;
/// Largest single buffer: 4 GiB.
const MAX_BUFFER: u64 = 4 << 30;
/// Freed, zeroed memory kept for reuse, at most.
const POOL_LIMIT: u64 = 64 << 20;
/// Messages a host kernel takes from its queue per control-block update.
const BATCH: usize = 64;

type Block = Arc<Mutex<Box<[u8]>>>;

/// Host-memory backend; the runtime's default.
#[derive(Debug, Default)]
pub struct CpuBackend {
    buffers: BufferTable<Block>,
    pool: Mutex<Pool>,
}

#[derive(Debug, Default)]
struct Pool {
    by_size: HashMap<u64, Vec<Box<[u8]>>>,
    bytes: u64,
}

impl CpuBackend {
    /// A new CPU backend with no buffers.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ComputeBackend for CpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "cpu",
            device: format!(
                "host memory, {} threads available",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
            kind: DeviceKind::Cpu,
            zeroes_on_allocate: true,
            zeroes_on_free: true,
        }
    }

    fn allocation_size(&self, len: u64) -> Result<u64> {
        if len == 0 || len > MAX_BUFFER {
            return Err(Error::InvalidAllocation(len));
        }
        Ok(len.div_ceil(GRANULE) * GRANULE)
    }

    fn allocate(&self, len: u64) -> Result<Allocation> {
        let reserved = self.allocation_size(len)?;
        let size = usize::try_from(reserved).map_err(|_| Error::InvalidAllocation(len))?;
        let reused = {
            let mut pool = self.pool.lock();
            let block = pool.by_size.get_mut(&reserved).and_then(Vec::pop);
            if block.is_some() {
                pool.bytes -= reserved;
            }
            block
        };
        // Pooled blocks were zeroed when freed; fresh ones are zeroed by the allocator.
        let block = reused.unwrap_or_else(|| vec![0u8; size].into_boxed_slice());
        Ok(self
            .buffers
            .insert(Arc::new(Mutex::new(block)), len, reserved))
    }

    fn write(&self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<()> {
        let (block, len) = self.buffers.get(buffer)?;
        check_bounds(buffer, offset, data.len(), len)?;
        let start = offset as usize;
        block.lock()[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn read(&self, buffer: BufferId, offset: u64, out: &mut [u8]) -> Result<()> {
        let (block, len) = self.buffers.get(buffer)?;
        check_bounds(buffer, offset, out.len(), len)?;
        let start = offset as usize;
        out.copy_from_slice(&block.lock()[start..start + out.len()]);
        Ok(())
    }

    fn zero(&self, buffer: BufferId) -> Result<()> {
        let (block, _) = self.buffers.get(buffer)?;
        block.lock().zeroize();
        Ok(())
    }

    fn free(&self, buffer: BufferId) -> Result<()> {
        let (block, reserved) = self.buffers.remove(buffer)?;
        let mut bytes = std::mem::take(&mut *block.lock());
        bytes.zeroize();
        let mut pool = self.pool.lock();
        if pool.bytes + reserved <= POOL_LIMIT {
            pool.bytes += reserved;
            pool.by_size.entry(reserved).or_default().push(bytes);
        }
        Ok(())
    }

    fn allocated_bytes(&self) -> u64 {
        self.buffers.allocated_bytes()
    }

    fn launch(&self, launch: KernelLaunch) -> Result<Box<dyn KernelWorker>> {
        spawn_host_kernel(launch)
    }
}

/// Runs a [`KernelProgram::Host`] kernel on a thread of its own (any backend may use
/// this for host programs); a device program is refused as unsupported.
pub fn spawn_host_kernel(launch: KernelLaunch) -> Result<Box<dyn KernelWorker>> {
    match launch.program {
        KernelProgram::Host(handler) => {
            let driver = launch.driver;
            spawn_kernel_thread(&launch.id, move || host_kernel_loop(driver, handler))
        }
        KernelProgram::Device(_) => Err(Error::Unsupported {
            backend: "cpu",
            what: "device programs run on GPU backends (wgpu, cuda)".into(),
        }),
    }
}

/// Starts `body` on a thread named after kernel `id` and returns its worker.
pub fn spawn_kernel_thread(
    id: &crate::k2k::KernelId,
    body: impl FnOnce() + Send + 'static,
) -> Result<Box<dyn KernelWorker>> {
    let signal = Arc::new(FinishSignal::default());
    let raised = RaiseOnDrop(signal.clone());
    let thread = std::thread::Builder::new()
        .name(format!("rk-{id}"))
        .spawn(move || {
            // Raised when the body returns or unwinds.
            let _raised = raised;
            body()
        })
        .map_err(|source| Error::ThreadSpawn {
            what: "kernel",
            source,
        })?;
    Ok(Box::new(CpuWorker {
        thread: Mutex::new(Some(thread)),
        signal,
    }))
}

/// Raises its signal when dropped (at the end of a kernel thread, also by panic).
struct RaiseOnDrop(Arc<FinishSignal>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

impl Drop for CpuBackend {
    fn drop(&mut self) {
        for block in self.buffers.drain() {
            block.lock().zeroize();
        }
    }
}

/// The persistent-kernel loop of the CPU backend: take a batch, run the handler on each
/// message, record the outcome in the control block, until asked to stop.
fn host_kernel_loop(driver: KernelDriver, mut handler: HostHandler) {
    let ctx = driver.context();
    while let Some(batch) = driver.next_batch(BATCH) {
        let mut outcome = BatchOutcome::default();
        for msg in batch {
            match catch_unwind(AssertUnwindSafe(|| handler(ctx, msg))) {
                Ok(Ok(())) => outcome.processed += 1,
                Ok(Err(e)) => {
                    outcome.processed += 1;
                    outcome.errors += 1;
                    tracing::debug!(kernel = %ctx.id(), error = %e, "handler returned an error");
                }
                Err(panic) => {
                    outcome.processed += 1;
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic".to_owned());
                    driver.complete_batch(outcome);
                    driver.stop_after_panic(&message);
                    return;
                }
            }
        }
        driver.complete_batch(outcome);
    }
    driver.mark_terminated();
}

#[derive(Debug)]
struct CpuWorker {
    thread: Mutex<Option<JoinHandle<()>>>,
    signal: Arc<FinishSignal>,
}

impl KernelWorker for CpuWorker {
    fn is_finished(&self) -> bool {
        self.thread
            .lock()
            .as_ref()
            .is_none_or(JoinHandle::is_finished)
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.lock().take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::backend("kernel thread panicked")),
            None => Ok(()),
        }
    }

    fn finish_signal(&self) -> Arc<FinishSignal> {
        self.signal.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounting_uses_reserved_sizes() {
        let b = CpuBackend::new();
        let a = b.allocate(1).unwrap();
        assert_eq!((a.len, a.reserved), (1, 64));
        let c = b.allocate(129).unwrap();
        assert_eq!(c.reserved, 192);
        assert_eq!(b.allocated_bytes(), 256);
        b.free(a.id).unwrap();
        b.free(c.id).unwrap();
        assert_eq!(b.allocated_bytes(), 0);
    }

    #[test]
    fn bad_arguments_are_typed_errors() {
        let b = CpuBackend::new();
        assert!(matches!(b.allocate(0), Err(Error::InvalidAllocation(0))));
        assert!(matches!(
            b.allocate(MAX_BUFFER + 1),
            Err(Error::InvalidAllocation(_))
        ));
        let a = b.allocate(16).unwrap();
        assert!(matches!(
            b.write(a.id, 10, &[0; 7]),
            Err(Error::OutOfBounds { .. })
        ));
        assert!(matches!(
            b.read(a.id, u64::MAX, &mut [0; 1]),
            Err(Error::OutOfBounds { .. })
        ));
        // The 64-byte reservation is not addressable beyond the requested 16 bytes.
        assert!(b.write(a.id, 16, &[1]).is_err());
        b.free(a.id).unwrap();
        assert!(matches!(b.free(a.id), Err(Error::UnknownBuffer(_))));
        assert!(matches!(
            b.read(a.id, 0, &mut [0; 1]),
            Err(Error::UnknownBuffer(_))
        ));
    }

    #[test]
    fn freed_memory_is_zero_when_handed_out_again() {
        let b = CpuBackend::new();
        let a = b.allocate(100).unwrap();
        b.write(a.id, 0, &[0xAB; 100]).unwrap();
        let ptr_before = b.buffers.get(a.id).unwrap().0.lock().as_ptr() as usize;
        b.free(a.id).unwrap();
        let again = b.allocate(100).unwrap();
        // Same physical block, served from the pool without re-zeroing on allocate.
        let ptr_after = b.buffers.get(again.id).unwrap().0.lock().as_ptr() as usize;
        assert_eq!(ptr_before, ptr_after);
        let mut out = [0xFFu8; 100];
        b.read(again.id, 0, &mut out).unwrap();
        assert_eq!(out, [0u8; 100]);
        b.write(again.id, 0, &[7; 100]).unwrap();
        b.zero(again.id).unwrap();
        b.read(again.id, 0, &mut out).unwrap();
        assert_eq!(out, [0u8; 100]);
    }
}
