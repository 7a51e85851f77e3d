//! # ringkernel-wgpu
//!
//! The wgpu backend (Vulkan, Metal, DX12, GL adapters) for `ringkernel-core`.
//!
//! **Status:** not implemented yet. [`WgpuBackend::new`] always returns
//! [`Error::BackendUnavailable`] with the reason, so that programs can select the
//! backend today and fall back cleanly. The GPU path (persistent kernels dispatched in
//! rounds, GPU-side ChaCha20-Poly1305, device route capabilities) is tracked in its own
//! issue.

use ringkernel_core::Error;
use ringkernel_core::backend::{
    Allocation, BackendInfo, BufferId, ComputeBackend, DeviceKind, KernelLaunch, KernelWorker,
};

/// The wgpu compute backend.
#[derive(Debug)]
pub struct WgpuBackend {
    _private: (),
}

impl WgpuBackend {
    /// Opens the default adapter. Not implemented yet: always
    /// [`Error::BackendUnavailable`].
    pub fn new() -> Result<Self, Error> {
        Err(Error::BackendUnavailable {
            reason: "the wgpu backend is not implemented in this build of ringkernel".into(),
        })
    }
}

fn unavailable() -> Error {
    Error::BackendUnavailable {
        reason: "the wgpu backend is not implemented in this build of ringkernel".into(),
    }
}

// No value of this type can exist yet (`new` always fails), so these methods are never
// reached; they keep the type usable with `RuntimeBuilder::with_backend` today.
impl ComputeBackend for WgpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "wgpu",
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
            WgpuBackend::new(),
            Err(Error::BackendUnavailable { .. })
        ));
    }
}
