//! The WGSL sources (one copy, in `ringkernel-shaders`) and their compiled pipelines.
//!
//! WGSL has no `#include`: every module is the layout prelude generated from
//! `ringkernel_core::backend::device::layout`, the cipher library
//! `chacha20_poly1305.wgsl`, Poly1305's products for the chosen
//! [`Poly1305Arithmetic`] and one kernel file.

use ringkernel_core::Error;
use ringkernel_shaders::wgsl;

/// The cipher library: ChaCha20 and Poly1305 in 32-bit arithmetic, no bindings, less
/// Poly1305's two multiplying functions ([`Poly1305Arithmetic::source`]).
pub const CIPHER_WGSL: &str = wgsl::CHACHA20_POLY1305;

/// How the WGSL kernels compute Poly1305's 32×32→64-bit limb products. Both give the
/// same results (the conformance suite runs both); neither branches on secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Poly1305Arithmetic {
    /// Native WGSL `u64` products. Needs the adapter's `SHADER_INT64` feature
    /// (lavapipe has it); the backend uses it whenever the adapter offers it.
    Int64,
    /// Products emulated in 16-bit halves with 32-bit arithmetic only: every adapter.
    /// The fallback when the adapter lacks `SHADER_INT64`.
    Emulated16,
}

impl Poly1305Arithmetic {
    /// The WGSL file with this arithmetic's `rk_poly_block` and `rk_fe_mul`.
    pub fn source(self) -> &'static str {
        match self {
            Poly1305Arithmetic::Int64 => wgsl::POLY1305_MUL_INT64,
            Poly1305Arithmetic::Emulated16 => wgsl::POLY1305_MUL_EMULATED,
        }
    }

    /// The device features the modules need.
    pub fn required_features(self) -> wgpu::Features {
        match self {
            Poly1305Arithmetic::Int64 => wgpu::Features::SHADER_INT64,
            Poly1305Arithmetic::Emulated16 => wgpu::Features::empty(),
        }
    }
}
/// Single-shot seal/open of many records, one per invocation.
pub const AEAD_BATCH_WGSL: &str = wgsl::AEAD_BATCH;
/// Chunked STREAM seal/open of device buffers, one chunk per workgroup.
pub const STREAM_AEAD_WGSL: &str = wgsl::STREAM_AEAD;
/// The persistent kernel: sealed control block, input batch, device route check (its
/// layout constants come from [`prelude`]).
pub const PERSISTENT_WGSL: &str = wgsl::PERSISTENT_KERNEL;

/// The layout constants the kernels use, as WGSL `const` lines rendered from the
/// host's declaration ([`layout::wgsl_prelude`](ringkernel_core::backend::device::layout::wgsl_prelude)).
pub fn prelude() -> String {
    ringkernel_core::backend::device::layout::wgsl_prelude()
}

/// Every module the backend compiles with `arithmetic`, by name: the layout prelude,
/// the cipher library, Poly1305's products, then one kernel file.
pub fn modules(arithmetic: Poly1305Arithmetic) -> Vec<(&'static str, String)> {
    let prelude = prelude();
    let products = arithmetic.source();
    [
        ("aead_batch", AEAD_BATCH_WGSL),
        ("stream_aead", STREAM_AEAD_WGSL),
        ("persistent_kernel", PERSISTENT_WGSL),
    ]
    .into_iter()
    .map(|(name, src)| (name, format!("{prelude}\n{CIPHER_WGSL}\n{products}\n{src}")))
    .collect()
}

/// The compiled compute pipelines.
pub(crate) struct Pipelines {
    pub(crate) aead_batch: wgpu::ComputePipeline,
    pub(crate) stream_seal: wgpu::ComputePipeline,
    pub(crate) stream_open: wgpu::ComputePipeline,
    pub(crate) persistent: wgpu::ComputePipeline,
}

impl Pipelines {
    pub(crate) fn compile(
        device: &wgpu::Device,
        arithmetic: Poly1305Arithmetic,
    ) -> Result<Pipelines, Error> {
        let mut compiled = std::collections::HashMap::new();
        for (name, source) in modules(arithmetic) {
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            if let Some(e) = pollster::block_on(scope.pop()) {
                return Err(Error::backend_caused_by(
                    format!("WGSL module {name} rejected"),
                    e,
                ));
            }
            compiled.insert(name, module);
        }
        let pipeline = |module: &str, entry: &str| -> Result<wgpu::ComputePipeline, Error> {
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &compiled[module],
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
            match pollster::block_on(scope.pop()) {
                Some(e) => Err(Error::backend_caused_by(
                    format!("pipeline {entry} rejected"),
                    e,
                )),
                None => Ok(p),
            }
        };
        Ok(Pipelines {
            aead_batch: pipeline("aead_batch", "aead_batch")?,
            stream_seal: pipeline("stream_aead", "stream_seal")?,
            stream_open: pipeline("stream_aead", "stream_open")?,
            persistent: pipeline("persistent_kernel", "persistent_round")?,
        })
    }
}
