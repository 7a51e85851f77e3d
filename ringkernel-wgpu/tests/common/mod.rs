//! Shared by the wgpu test files: the backend, or a printed reason to skip.

#![allow(dead_code)] // each test binary uses part of it

use ringkernel_wgpu::{Poly1305Arithmetic, WgpuBackend, adapter_required};

/// A backend on the environment's adapter, with the arithmetic it picks itself. Without
/// one the test prints why and skips, unless `RINGKERNEL_REQUIRE_WGPU=1` (CI), where
/// that is a failure.
pub fn backend() -> Option<WgpuBackend> {
    usable(WgpuBackend::new())
}

/// A backend whose kernels compute Poly1305 with `arithmetic`. With
/// `RINGKERNEL_REQUIRE_WGPU=1` an adapter that cannot (no `SHADER_INT64` for
/// [`Poly1305Arithmetic::Int64`]) fails the test; otherwise it skips.
pub fn backend_with(arithmetic: Poly1305Arithmetic) -> Option<WgpuBackend> {
    let backend = usable(WgpuBackend::with_poly1305(arithmetic))?;
    assert_eq!(backend.poly1305(), arithmetic);
    Some(backend)
}

fn usable(backend: Result<WgpuBackend, ringkernel_wgpu::Error>) -> Option<WgpuBackend> {
    match backend {
        Ok(b) => {
            eprintln!(
                "wgpu adapter: {:?}, Poly1305 {:?}",
                b.adapter(),
                b.poly1305()
            );
            Some(b)
        }
        Err(e) if adapter_required() => {
            panic!("RINGKERNEL_REQUIRE_WGPU=1 but the wgpu backend is unavailable: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no usable wgpu backend here ({e})");
            None
        }
    }
}
