//! `WgpuBackend::new` follows `WGPU_BACKEND`. A backend that does not exist on this
//! machine yields a typed `BackendUnavailable`, not a panic; wgpu's OpenGL backend is
//! refused unless `RINGKERNEL_WGPU_ALLOW_GL=1`. One test in its own binary,
//! because it sets process environment variables.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use ringkernel_core::Error;
use ringkernel_core::backend::ComputeBackend;
use ringkernel_wgpu::{WgpuBackend, adapter_required};

fn set(var: &str, value: &str) {
    // SAFETY: this binary runs this single test on one thread; nothing else reads the
    // environment concurrently.
    unsafe { std::env::set_var(var, value) };
}

#[test]
fn wgpu_backend_env_picks_the_api_and_a_missing_one_is_a_typed_error() {
    // Metal exists only on Apple platforms: elsewhere no adapter can be found.
    if !cfg!(target_vendor = "apple") {
        set("WGPU_BACKEND", "metal");
        match WgpuBackend::new() {
            Err(Error::BackendUnavailable { reason }) => {
                assert!(reason.contains("no wgpu adapter"), "{reason}")
            }
            other => panic!("expected BackendUnavailable, got {other:?}"),
        }
    }
    if cfg!(target_os = "linux") {
        set("WGPU_BACKEND", "vulkan");
        match WgpuBackend::new() {
            Ok(b) => {
                assert_eq!(b.adapter().backend, "Vulkan");
                assert!(b.info().device.contains("Vulkan"), "{}", b.info().device);
            }
            Err(e) if !adapter_required() => eprintln!("SKIPPED: no Vulkan adapter ({e})"),
            Err(e) => panic!("RINGKERNEL_REQUIRE_WGPU=1 but no Vulkan adapter: {e}"),
        }
        // wgpu's OpenGL backend leaves copies of what the host writes to the device
        // (payload plaintext, see tests/host_plaintext.rs) in host memory it frees
        // unwiped: an insecure fallback when no Vulkan driver is present, refused unless
        // asked for explicitly.
        set("WGPU_BACKEND", "gl");
        match WgpuBackend::new() {
            Err(Error::BackendUnavailable { reason }) => assert!(
                reason.contains("no wgpu adapter") || reason.contains("RINGKERNEL_WGPU_ALLOW_GL"),
                "{reason}"
            ),
            Ok(b) => panic!(
                "the OpenGL backend was opened without opt-in: {:?}",
                b.adapter()
            ),
            Err(e) => panic!("expected BackendUnavailable, got {e:?}"),
        }
        set("RINGKERNEL_WGPU_ALLOW_GL", "1");
        match WgpuBackend::new() {
            Ok(b) => assert_eq!(b.adapter().backend, "Gl"),
            Err(Error::BackendUnavailable { reason }) => {
                assert!(reason.contains("no wgpu adapter"), "{reason}");
                eprintln!("SKIPPED: no OpenGL adapter ({reason})");
            }
            Err(e) => panic!("expected an OpenGL adapter or none, got {e:?}"),
        }
    }
}
