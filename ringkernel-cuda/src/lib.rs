//! # ringkernel-cuda
//!
//! The CUDA backend (cudarc, NVRTC) for `ringkernel-core`.
//!
//! **Status:** not implemented yet. [`CudaBackend::new`] always returns
//! [`Error::BackendUnavailable`] with the reason, so that programs can select the
//! backend today and fall back cleanly. The CUDA path is tracked in its own issue.

use ringkernel_core::Error;
use ringkernel_core::backend::{
    Allocation, BackendInfo, BufferId, ComputeBackend, DeviceKind, KernelLaunch, KernelWorker,
};

/// The CUDA compute backend.
#[derive(Debug)]
pub struct CudaBackend {
    _private: (),
}

impl CudaBackend {
    /// Opens CUDA device `ordinal`. Not implemented yet: always
    /// [`Error::BackendUnavailable`].
    pub fn new(ordinal: usize) -> Result<Self, Error> {
        Err(Error::BackendUnavailable {
            reason: format!(
                "the CUDA backend is not implemented in this build of ringkernel (device {ordinal})"
            ),
        })
    }
}

fn unavailable() -> Error {
    Error::BackendUnavailable {
        reason: "the cuda backend is not implemented in this build of ringkernel".into(),
    }
}

// No value of this type can exist yet (`new` always fails), so these methods are never
// reached; they keep the type usable with `RuntimeBuilder::with_backend` today.
impl ComputeBackend for CudaBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "cuda",
            device: "unavailable".into(),
            kind: DeviceKind::Other,
            zeroes_on_allocate: false,
            zeroes_on_free: false,
        }
    }
    fn allocation_size(&self, _len: u64) -> Result<u64, Error> {
        Err(unavailable())
    }
    fn allocate(&self, _len: u64) -> Result<Allocation, Error> {
        Err(unavailable())
    }
    fn write(&self, _b: BufferId, _o: u64, _d: &[u8]) -> Result<(), Error> {
        Err(unavailable())
    }
    fn read(&self, _b: BufferId, _o: u64, _out: &mut [u8]) -> Result<(), Error> {
        Err(unavailable())
    }
    fn zero(&self, _b: BufferId) -> Result<(), Error> {
        Err(unavailable())
    }
    fn free(&self, _b: BufferId) -> Result<(), Error> {
        Err(unavailable())
    }
    fn allocated_bytes(&self) -> u64 {
        0
    }
    fn launch(&self, _l: KernelLaunch) -> Result<Box<dyn KernelWorker>, Error> {
        Err(unavailable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_unavailable_without_panicking() {
        assert!(matches!(
            CudaBackend::new(0),
            Err(Error::BackendUnavailable { .. })
        ));
    }
}
