//! # ringkernel-wgpu
//!
//! The wgpu backend for `ringkernel-core`: device buffers on any Vulkan, Metal, DX12 or
//! GL adapter, persistent kernels dispatched in rounds, and ChaCha20-Poly1305 written in
//! WGSL so that a kernel opens and re-seals its own control block on the GPU. Poly1305
//! runs on 64-bit integers where the adapter has `SHADER_INT64`, and on 32-bit
//! arithmetic otherwise ([`Poly1305Arithmetic`]).
//!
//! ```no_run
//! use ringkernel_core::backend::{DeviceProgram, KernelProgram};
//! use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder};
//! use ringkernel_wgpu::WgpuBackend;
//!
//! let runtime = RuntimeBuilder::new()
//!     .production()
//!     .with_backend(WgpuBackend::new()?)
//!     .build()?;
//! let kernel = runtime.launch(
//!     "checksummer",
//!     LaunchOptions::new().program(KernelProgram::Device(DeviceProgram::checksum())),
//! )?;
//! runtime.send("checksummer", "data", b"hello")?;
//! # Ok::<(), ringkernel_core::Error>(())
//! ```
//!
//! The adapter is chosen by wgpu's environment variables (`WGPU_BACKEND`,
//! `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF`); without any adapter
//! [`WgpuBackend::new`] returns [`Error::BackendUnavailable`] with the reason. wgpu's
//! OpenGL backend is refused the same way unless `RINGKERNEL_WGPU_ALLOW_GL=1`: it leaves
//! copies of what the host writes to the device in host memory it frees unwiped.
//!
//! What the GPU path protects and where it stops: `docs/backends.md`.

mod aead;
mod backend;
mod gpu;
mod kernel;
pub mod shaders;

pub use backend::WgpuBackend;
pub use gpu::AdapterFacts;
pub use ringkernel_core::backend::{AeadJob, AeadOp, DeviceCipher};
pub use shaders::Poly1305Arithmetic;

pub use ringkernel_core::Error;

/// Whether wgpu tests must find an adapter: `RINGKERNEL_REQUIRE_WGPU=1` (set by CI)
/// turns a missing adapter into a failure instead of a skip.
pub fn adapter_required() -> bool {
    std::env::var("RINGKERNEL_REQUIRE_WGPU").is_ok_and(|v| v == "1")
}
