//! Opening a CUDA device: library checks before any cudarc call, the context, the
//! stream, and the kernels compiled by NVRTC for the device's architecture (PTX cached
//! per architecture).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream};
use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};
use parking_lot::Mutex;
use ringkernel_core::Error;

use crate::sources;

/// Device memory shared between the backend and a kernel's driver.
pub(crate) type SharedMem = Arc<Mutex<CudaSlice<u8>>>;

/// An opened device.
pub(crate) struct Device {
    /// Keeps the context alive as long as the stream, module and buffers.
    _ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) name: String,
    pub(crate) arch: (i32, i32),
    pub(crate) total_mem: usize,
    _module: Arc<CudaModule>,
    pub(crate) aead_batch: CudaFunction,
    pub(crate) stream_seal: CudaFunction,
    pub(crate) stream_open: CudaFunction,
    pub(crate) persistent: CudaFunction,
}

pub(crate) fn driver_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::backend_caused_by(format!("cuda: {what}"), e)
}

fn unavailable(reason: String) -> Error {
    Error::BackendUnavailable { reason }
}

/// The PTX of the backend's program per architecture, compiled once per process.
fn ptx_for(arch: (i32, i32)) -> Result<Ptx, Error> {
    static CACHE: OnceLock<Mutex<HashMap<(i32, i32), Ptx>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(p) = cache.lock().get(&arch) {
        return Ok(p.clone());
    }
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture=compute_{}{}", arch.0, arch.1)],
        name: Some("ringkernel.cu".into()),
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(sources::program(), opts)
        .map_err(|e| Error::backend_caused_by("NVRTC could not compile the CUDA kernels", e))?;
    cache.lock().insert(arch, ptx.clone());
    Ok(ptx)
}

impl Device {
    pub(crate) fn open(ordinal: usize) -> Result<Device, Error> {
        // SAFETY: only tries to dlopen the candidate libcuda names; no driver call.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(unavailable(
                "libcuda (the NVIDIA driver) cannot be loaded: no NVIDIA driver on this machine"
                    .into(),
            ));
        }
        // SAFETY: only tries to dlopen the candidate libnvrtc names; no NVRTC call.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(unavailable(
                "libnvrtc cannot be loaded: install the CUDA toolkit or the \
                 nvidia-cuda-nvrtc-cu12 wheel and put its lib directory on LD_LIBRARY_PATH"
                    .into(),
            ));
        }
        let count = CudaContext::device_count()
            .map_err(|e| unavailable(format!("the CUDA driver failed to start: {e:?}")))?;
        if count <= 0 || ordinal >= count as usize {
            return Err(unavailable(format!(
                "no CUDA device {ordinal} ({count} device(s) present)"
            )));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| unavailable(format!("cannot open CUDA device {ordinal}: {e:?}")))?;
        let name = ctx.name().map_err(|e| driver_error("device name", e))?;
        let arch = ctx
            .compute_capability()
            .map_err(|e| driver_error("compute capability", e))?;
        let total_mem = ctx
            .total_mem()
            .map_err(|e| driver_error("memory size", e))?;
        let module = ctx
            .load_module(ptx_for(arch)?)
            .map_err(|e| driver_error("loading the kernels", e))?;
        let f = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| driver_error(name, e))
        };
        Ok(Device {
            stream: ctx.default_stream(),
            aead_batch: f("rk_aead_batch")?,
            stream_seal: f("rk_stream_seal")?,
            stream_open: f("rk_stream_open")?,
            persistent: f("rk_persistent_round")?,
            _module: module,
            _ctx: ctx,
            name,
            arch,
            total_mem,
        })
    }

    pub(crate) fn sync(&self) -> Result<(), Error> {
        self.stream
            .synchronize()
            .map_err(|e| driver_error("synchronize", e))
    }
}
