//! Shared by the wgpu test files: the backend, or a printed reason to skip.

use ringkernel_wgpu::{WgpuBackend, adapter_required};

/// A backend on the environment's adapter. Without one the test prints why and skips,
/// unless `RINGKERNEL_REQUIRE_WGPU=1` (CI), where that is a failure.
pub fn backend() -> Option<WgpuBackend> {
    match WgpuBackend::new() {
        Ok(b) => {
            eprintln!("wgpu adapter: {:?}", b.adapter());
            Some(b)
        }
        Err(e) if adapter_required() => {
            panic!("RINGKERNEL_REQUIRE_WGPU=1 but the wgpu backend is unavailable: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no wgpu adapter here ({e})");
            None
        }
    }
}
