//! # ringkernel-cuda
//!
//! The CUDA backend for `ringkernel-core`, on cudarc's driver API with dynamic loading.
//!
//! - Kernels live in `ringkernel-shaders` (`shaders/cuda/*.cu`), behind the layout
//!   prelude generated from `ringkernel_core::backend::device::layout`, and are compiled
//!   at run time by NVRTC for the device's architecture. The PTX is cached per architecture for the life of the
//!   process.
//! - Buffers are device memory, zeroed on allocation and on free.
//! - Device programs (`KernelProgram::Device`) run the persistent kernel in rounds,
//!   under the same round contract as the wgpu backend
//!   (`ringkernel_core::backend::device`): the control block is opened and re-sealed by
//!   the kernel with ChaCha20-Poly1305, and device-side sends are checked against the
//!   sandbox's route bitmap on the device.
//!
//! cudarc panics when libcuda or libnvrtc cannot be loaded, so [`CudaBackend::new`]
//! first checks that both are present. Without them, or without a device, it returns
//! [`Error::BackendUnavailable`] with the reason; it never panics.
//!
//! **Verification status:**
//! - Every `.cu` file is compiled by NVRTC in CI.
//! - The cipher is checked on the host against RFC 8439, Wycheproof and RustCrypto.
//! - The persistent kernel's open, update and re-seal are checked on the host against
//!   the CPU envelope.
//! - The GPU execution tests (the conformance suite) are written, but they run only
//!   where an NVIDIA driver and device exist. No build machine has one yet, so they have
//!   not yet run on a GPU.

mod aead;
mod backend;
mod device;
mod kernel;
pub mod sources;

pub use backend::CudaBackend;
pub use ringkernel_core::Error;
pub use ringkernel_core::backend::{AeadJob, AeadOp, DeviceCipher};

/// Whether CUDA tests must find a device: `RINGKERNEL_REQUIRE_CUDA=1` turns a missing
/// driver or device into a failure instead of a skip (for GPU machines).
pub fn device_required() -> bool {
    std::env::var("RINGKERNEL_REQUIRE_CUDA").is_ok_and(|v| v == "1")
}
