//! The device: adapter selection, the wgpu device and queue, and the small set of
//! blocking helpers (upload, read back, wait) every other module uses.

use std::sync::{Arc, OnceLock};
use zeroize::Zeroizing;

use ringkernel_core::Error;
use ringkernel_core::backend::DeviceKind;

use crate::shaders::{Pipelines, Poly1305Arithmetic};

/// What the selected adapter is.
#[derive(Clone, Debug)]
pub struct AdapterFacts {
    /// Adapter name (for lavapipe: "llvmpipe (LLVM ...)").
    pub name: String,
    /// Graphics API backend (Vulkan, Metal, Dx12, Gl).
    pub backend: String,
    /// Device type, as wgpu reports it.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Our classification.
    pub kind: DeviceKind,
}

/// One opened wgpu device, shared by the backend and its kernel drivers.
pub(crate) struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) facts: AdapterFacts,
    pub(crate) limits: wgpu::Limits,
    /// How the kernels compute Poly1305's products on this device.
    pub(crate) arithmetic: Poly1305Arithmetic,
    pipelines: OnceLock<Result<Pipelines, String>>,
}

pub(crate) fn backend_error(
    what: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::backend_caused_by(format!("wgpu: {what}"), e)
}

/// The environment variable that lets [`Gpu::open`] take wgpu's OpenGL backend, which
/// wgpu picks by itself where no Vulkan driver is present and which leaves copies of
/// the host's writes to the device (payload plaintext among them; found by
/// tests/host_plaintext.rs) in host memory it frees without wiping.
const ALLOW_GL: &str = "RINGKERNEL_WGPU_ALLOW_GL";

impl Gpu {
    /// Opens the adapter chosen by the environment (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME`,
    /// `WGPU_POWER_PREF`), or the default one. `arithmetic: None` takes
    /// [`Poly1305Arithmetic::Int64`] when the adapter has `SHADER_INT64` and
    /// [`Poly1305Arithmetic::Emulated16`] otherwise; `Some` insists on one, and an
    /// adapter without what it needs is `BackendUnavailable`. wgpu's OpenGL backend is
    /// `BackendUnavailable` too, unless `RINGKERNEL_WGPU_ALLOW_GL` is set (`ALLOW_GL`).
    pub(crate) fn open(arithmetic: Option<Poly1305Arithmetic>) -> Result<Arc<Gpu>, Error> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(
            &instance, None,
        ))
        .map_err(|e| Error::BackendUnavailable {
            reason: format!(
                "no wgpu adapter ({e}); install a Vulkan driver (for example Mesa's lavapipe: \
                 apt-get install mesa-vulkan-drivers libvulkan1) or pick another with WGPU_BACKEND"
            ),
        })?;
        let info = adapter.get_info();
        let kind = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu,
            wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu,
            wgpu::DeviceType::Cpu => DeviceKind::SoftwareGpu,
            _ => DeviceKind::Other,
        };
        let facts = AdapterFacts {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_owned(),
            kind,
        };
        if info.backend == wgpu::Backend::Gl && std::env::var_os(ALLOW_GL).is_none() {
            return Err(Error::BackendUnavailable {
                reason: format!(
                    "adapter {} is wgpu's OpenGL backend, which leaves copies of data written                      to the device (payload plaintext) in host memory it frees without wiping;                      install a Vulkan driver (for example Mesa's lavapipe: apt-get install                      mesa-vulkan-drivers libvulkan1), or set {ALLOW_GL}=1 to accept that",
                    facts.name
                ),
            });
        }
        let adapter_limits = adapter.limits();
        if adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        {
            tracing::debug!(adapter = %facts.name, "adapter supports compute shaders");
        } else {
            return Err(Error::BackendUnavailable {
                reason: format!("adapter {} has no compute shaders", facts.name),
            });
        }
        let has_int64 = adapter.features().contains(wgpu::Features::SHADER_INT64);
        let arithmetic = match arithmetic {
            Some(Poly1305Arithmetic::Int64) if !has_int64 => {
                return Err(Error::BackendUnavailable {
                    reason: format!(
                        "adapter {} lacks SHADER_INT64, which 64-bit Poly1305 needs",
                        facts.name
                    ),
                });
            }
            Some(a) => a,
            None if has_int64 => Poly1305Arithmetic::Int64,
            None => Poly1305Arithmetic::Emulated16,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("ringkernel"),
            // Only what the chosen arithmetic needs: SHADER_INT64 for Int64, nothing
            // for the emulated fallback.
            required_features: arithmetic.required_features(),
            required_limits: adapter_limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::BackendUnavailable {
            reason: format!("adapter {} refused a device: {e}", facts.name),
        })?;
        // wgpu's default handler panics on an error nobody captured; ours logs it. Every
        // operation that can fail is also run inside an error scope and reported as a
        // typed error.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            tracing::error!(error = %e, "uncaptured wgpu error");
        }));
        let limits = device.limits();
        tracing::info!(adapter = %facts.name, backend = %facts.backend, kind = ?facts.kind, poly1305 = ?arithmetic, "wgpu device opened");
        Ok(Arc::new(Gpu {
            device,
            queue,
            facts,
            limits,
            arithmetic,
            pipelines: OnceLock::new(),
        }))
    }

    /// The compiled pipelines (compiled once, on first use).
    pub(crate) fn pipelines(&self) -> Result<&Pipelines, Error> {
        self.pipelines
            .get_or_init(|| {
                Pipelines::compile(&self.device, self.arithmetic).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::backend(format!("wgpu: shader pipelines: {e}")))
    }

    /// Blocks until all submitted work has finished.
    pub(crate) fn wait(&self) -> Result<(), Error> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| backend_error("waiting for the device", e))
    }

    /// Runs `f` inside validation and out-of-memory error scopes; an error in either
    /// becomes a typed error instead of a panic.
    pub(crate) fn scoped<R>(&self, what: &str, f: impl FnOnce() -> R) -> Result<R, Error> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        match (v, o) {
            (Some(e), _) | (None, Some(e)) => Err(backend_error(what, e)),
            (None, None) => Ok(r),
        }
    }

    /// A storage buffer of `size` bytes (a multiple of 4), zero-initialised by wgpu.
    pub(crate) fn storage(&self, label: &str, size: u64) -> Result<wgpu::Buffer, Error> {
        self.scoped("creating a buffer", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(4),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// Reads `size` bytes at `offset` (both multiples of 4) of `buffer`. The copy is
    /// zeroed when dropped (device buffers hold plaintext too).
    pub(crate) fn read_back(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut enc = self.device.create_command_encoder(&Default::default());
        self.read_many(&mut enc, &[(buffer, offset, size)])
            .map(|mut v| v.pop().unwrap_or_default())
    }

    /// Appends copies of every `(buffer, offset, size)` range (multiples of 4) to `enc`,
    /// submits it, and returns the ranges' bytes: one staging buffer, one submission,
    /// one map, whatever the number of ranges. Each copy is zeroed when dropped.
    pub(crate) fn read_many(
        &self,
        enc: &mut wgpu::CommandEncoder,
        ranges: &[(&wgpu::Buffer, u64, u64)],
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, Error> {
        let total: u64 = ranges.iter().map(|r| r.2).sum();
        let staging = self.scoped("creating a staging buffer", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("ringkernel read-back"),
                size: total.max(4),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let mut at = 0;
        for (buffer, offset, size) in ranges {
            if *size > 0 {
                enc.copy_buffer_to_buffer(buffer, *offset, &staging, at, *size);
            }
            at += size;
        }
        let done = std::mem::replace(enc, self.device.create_command_encoder(&Default::default()));
        self.queue.submit([done.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|e| backend_error("mapping a read-back buffer", e))?
            .map_err(|e| backend_error("mapping a read-back buffer", e))?;
        let mut out = Vec::with_capacity(ranges.len());
        {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| backend_error("reading a mapped buffer", e))?;
            let mut at = 0usize;
            for (_, _, size) in ranges {
                out.push(Zeroizing::new(view[at..at + *size as usize].to_vec()));
                at += *size as usize;
            }
        }
        staging.unmap();
        // The staging copy held the data in host-visible memory: clear it before release.
        let mut clear = self.device.create_command_encoder(&Default::default());
        clear.clear_buffer(&staging, 0, None);
        self.queue.submit([clear.finish()]);
        staging.destroy();
        Ok(out)
    }

    /// Zeroes a whole buffer and waits until it is done.
    pub(crate) fn clear(&self, buffer: &wgpu::Buffer) -> Result<(), Error> {
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.clear_buffer(buffer, 0, None);
        self.queue.submit([enc.finish()]);
        self.wait()
    }
}

/// `n` rounded up to a multiple of 4.
pub(crate) fn align4(n: u64) -> u64 {
    n.div_ceil(4) * 4
}

/// Binds the whole of `buffer` at `binding`.
pub(crate) fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}
