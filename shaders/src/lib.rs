//! The one copy of every GPU kernel of ringkernel, as source text: WGSL for
//! `ringkernel-wgpu`, CUDA C for `ringkernel-cuda` (compiled at run time by NVRTC).
//!
//! The sources define none of the layout constants they use (`RK_HEADER_WORDS`,
//! `RK_P_*`, `RK_CB_*`, the result codes, ...): the backends put the prelude
//! `ringkernel_core::backend::device::layout` renders from its Rust declaration
//! (`wgsl_prelude()`, `cuda_prelude()`) in front of them before they compile, so a
//! kernel and the host read one layout.
//!
//! ```
//! assert!(ringkernel_shaders::wgsl::PERSISTENT_KERNEL.contains("fn persistent_round"));
//! assert!(ringkernel_shaders::cuda::PERSISTENT_KERNEL.contains("rk_persistent_round"));
//! ```

/// The WGSL sources (`wgsl/`). WGSL has no `#include`: a module is the prelude, the
/// cipher library, one of the two Poly1305 product files and one kernel file.
pub mod wgsl {
    /// The cipher library: ChaCha20 and Poly1305 in 32-bit arithmetic, no bindings,
    /// less Poly1305's two multiplying functions (one of the two files below).
    pub const CHACHA20_POLY1305: &str = include_str!("../wgsl/chacha20_poly1305.wgsl");
    /// Poly1305's products on 64-bit integers (WGSL `u64`): needs `SHADER_INT64`.
    pub const POLY1305_MUL_INT64: &str = include_str!("../wgsl/poly1305_mul_int64.wgsl");
    /// Poly1305's products emulated in 16-bit halves: 32-bit arithmetic only, every
    /// adapter.
    pub const POLY1305_MUL_EMULATED: &str = include_str!("../wgsl/poly1305_mul_emulated.wgsl");
    /// Single-shot seal/open of many records, one per invocation.
    pub const AEAD_BATCH: &str = include_str!("../wgsl/aead_batch.wgsl");
    /// Chunked STREAM seal/open of device buffers, one chunk per workgroup.
    pub const STREAM_AEAD: &str = include_str!("../wgsl/stream_aead.wgsl");
    /// The persistent kernel: sealed control block, input batch, device route check.
    pub const PERSISTENT_KERNEL: &str = include_str!("../wgsl/persistent_kernel.wgsl");

    /// Every file, by its name in `wgsl/`.
    pub const FILES: [(&str, &str); 6] = [
        ("chacha20_poly1305.wgsl", CHACHA20_POLY1305),
        ("poly1305_mul_int64.wgsl", POLY1305_MUL_INT64),
        ("poly1305_mul_emulated.wgsl", POLY1305_MUL_EMULATED),
        ("aead_batch.wgsl", AEAD_BATCH),
        ("stream_aead.wgsl", STREAM_AEAD),
        ("persistent_kernel.wgsl", PERSISTENT_KERNEL),
    ];
}

/// The CUDA C sources (`cuda/`). The kernel files `#include "chacha20_poly1305.cuh"`.
pub mod cuda {
    /// ChaCha20-Poly1305 in plain integer C (device and host).
    pub const CHACHA20_POLY1305: &str = include_str!("../cuda/chacha20_poly1305.cuh");
    /// Single-shot seal/open of many records, one per thread.
    pub const AEAD_BATCH: &str = include_str!("../cuda/aead_batch.cu");
    /// Chunked STREAM seal/open, one block per chunk (Poly1305 split across its threads).
    pub const STREAM_AEAD: &str = include_str!("../cuda/stream_aead.cu");
    /// The persistent kernel's round.
    pub const PERSISTENT_KERNEL: &str = include_str!("../cuda/persistent_kernel.cu");

    /// Every file, by its name in `cuda/`.
    pub const FILES: [(&str, &str); 4] = [
        ("chacha20_poly1305.cuh", CHACHA20_POLY1305),
        ("aead_batch.cu", AEAD_BATCH),
        ("stream_aead.cu", STREAM_AEAD),
        ("persistent_kernel.cu", PERSISTENT_KERNEL),
    ];
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly by design
mod tests {
    /// Every file on disk is one of the embedded sources (a new kernel file must be
    /// added here, or no backend compiles it).
    #[test]
    fn every_file_on_disk_is_exposed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (dir, files) in [
            ("wgsl", &super::wgsl::FILES[..]),
            ("cuda", &super::cuda::FILES[..]),
        ] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    files.iter().any(|(n, t)| *n == name && *t == text),
                    "{} is not exposed by ringkernel-shaders",
                    path.display()
                );
            }
        }
    }
}
