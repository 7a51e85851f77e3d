//! The CUDA sources (one copy, in `shaders/cuda/`), ready for NVRTC: the cipher header
//! is inlined, so nothing is read from disk at run time.

/// ChaCha20-Poly1305 in plain integer C (device and host).
pub const CIPHER_CUH: &str = include_str!("../../shaders/cuda/chacha20_poly1305.cuh");
/// Single-shot seal/open of many records, one per thread.
pub const AEAD_BATCH_CU: &str = include_str!("../../shaders/cuda/aead_batch.cu");
/// Chunked STREAM seal/open, one block per chunk (Poly1305 split across its threads).
pub const STREAM_AEAD_CU: &str = include_str!("../../shaders/cuda/stream_aead.cu");
/// The persistent kernel's round.
pub const PERSISTENT_CU: &str = include_str!("../../shaders/cuda/persistent_kernel.cu");

/// The kernels of the backend and their entry points.
pub const KERNELS: [(&str, &[&str]); 3] = [
    ("aead_batch.cu", &["rk_aead_batch"]),
    ("stream_aead.cu", &["rk_stream_seal", "rk_stream_open"]),
    ("persistent_kernel.cu", &["rk_persistent_round"]),
];

/// One translation unit with every kernel, the header inlined once.
pub fn program() -> String {
    let strip = |s: &str| s.replace("#include \"chacha20_poly1305.cuh\"", "");
    format!(
        "{CIPHER_CUH}\n{}\n{}\n{}\n",
        strip(AEAD_BATCH_CU),
        strip(STREAM_AEAD_CU),
        strip(PERSISTENT_CU)
    )
}
