//! The CUDA sources (one copy, in `ringkernel-shaders`), ready for NVRTC: the layout
//! prelude generated from `ringkernel_core::backend::device::layout` and the cipher
//! header are inlined, so nothing is read from disk at run time.

use ringkernel_shaders::cuda;

/// ChaCha20-Poly1305 in plain integer C (device and host).
pub const CIPHER_CUH: &str = cuda::CHACHA20_POLY1305;
/// Single-shot seal/open of many records, one per thread.
pub const AEAD_BATCH_CU: &str = cuda::AEAD_BATCH;
/// Chunked STREAM seal/open, one block per chunk (Poly1305 split across its threads).
pub const STREAM_AEAD_CU: &str = cuda::STREAM_AEAD;
/// The persistent kernel's round (its layout constants come from [`prelude`]).
pub const PERSISTENT_CU: &str = cuda::PERSISTENT_KERNEL;

/// The kernels of the backend and their entry points.
pub const KERNELS: [(&str, &[&str]); 3] = [
    ("aead_batch.cu", &["rk_aead_batch"]),
    ("stream_aead.cu", &["rk_stream_seal", "rk_stream_open"]),
    ("persistent_kernel.cu", &["rk_persistent_round"]),
];

/// The layout constants the kernels use, as `#define` lines rendered from the host's
/// declaration ([`layout::cuda_prelude`](ringkernel_core::backend::device::layout::cuda_prelude)).
pub fn prelude() -> String {
    ringkernel_core::backend::device::layout::cuda_prelude()
}

/// One translation unit with every kernel: the layout prelude, then the header inlined
/// once, then the kernel files.
pub fn program() -> String {
    let strip = |s: &str| s.replace("#include \"chacha20_poly1305.cuh\"", "");
    format!(
        "{}\n{CIPHER_CUH}\n{}\n{}\n{}\n",
        prelude(),
        strip(AEAD_BATCH_CU),
        strip(STREAM_AEAD_CU),
        strip(PERSISTENT_CU)
    )
}
