//! Persistent kernels on wgpu: a host driver thread dispatches
//! `shaders/wgsl/persistent_kernel.wgsl` in rounds.
//!
//! The round contract (word layouts, what the host reserves, what the device reports)
//! is shared with every GPU backend: `ringkernel_core::backend::device`. This module
//! moves a round's words to the device and back:
//! - the key slots and the parameters are uploaded, and new messages are written into
//!   the kernel's input ring in device memory (only the words that changed);
//! - the route bitmap is uploaded only when the sandbox has rebuilt it;
//! - one workgroup is dispatched; it takes a batch from the ring and clears the words it
//!   consumed, so a payload stays on the device only until the kernel has processed it;
//! - status and outputs come back in one read.
//!
//! The key slots and the ring are cleared when the kernel stops.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use ringkernel_core::Error;
use ringkernel_core::backend::device::{
    DeviceKernel, InputRing, RoundReport, layout, plan_round, read_round, start_device_kernel,
    words_from_le,
};
use ringkernel_core::backend::{
    DeviceProgram, DeviceRound, DeviceRoundOutcome, KernelLaunch, KernelWorker,
};
use ringkernel_core::k2k::Message;
use ringkernel_core::security::sandbox::RouteTable;

use crate::gpu::{Gpu, align4, entry};

/// The resources of one kernel on the device.
struct KernelDevice {
    gpu: Arc<Gpu>,
    control: Arc<wgpu::Buffer>,
    control_len: usize,
    keys: wgpu::Buffer,
    params: wgpu::Buffer,
    status: wgpu::Buffer,
    program: DeviceProgram,
    io: Mutex<Io>,
    #[cfg(feature = "hostile-device-testing")]
    hostile: ringkernel_core::backend::hostile::HostileDevice,
}

/// Per-kernel buffers that grow with the batch, the messages or the number of kernels.
struct Io {
    /// The input ring in device memory, and the host's view of it.
    ring: wgpu::Buffer,
    ring_state: InputRing,
    output: Grown,
    routes: Grown,
    uploaded: Option<Arc<RouteTable>>,
}

struct Grown {
    buffer: wgpu::Buffer,
    size: u64,
}

/// Starts a device kernel on `gpu`, its control block in `control` (the backend's
/// buffer `launch.control`).
pub(crate) fn launch(
    gpu: Arc<Gpu>,
    control: Arc<wgpu::Buffer>,
    program: DeviceProgram,
    launch: KernelLaunch,
) -> Result<Box<dyn KernelWorker>, Error> {
    let grown = |label: &str| -> Result<Grown, Error> {
        Ok(Grown {
            buffer: gpu.storage(label, 256)?,
            size: 256,
        })
    };
    let ring_state = InputRing::default();
    let io = Io {
        ring: gpu.storage("input ring", (ring_state.buffer_words() * 4) as u64)?,
        ring_state,
        output: grown("kernel output")?,
        routes: grown("route bitmap")?,
        uploaded: None,
    };
    let words = |n: usize| (n * 4) as u64;
    let dev = Arc::new(KernelDevice {
        keys: gpu.storage(
            "key slots",
            words(layout::KEY_SLOTS * layout::KEY_SLOT_WORDS),
        )?,
        params: gpu.storage("round params", words(layout::PARAM_WORDS))?,
        status: gpu.storage("round status", words(layout::STATUS_WORDS))?,
        gpu,
        control,
        control_len: launch.control_len,
        program,
        io: Mutex::new(io),
        #[cfg(feature = "hostile-device-testing")]
        hostile: Default::default(),
    });
    start_device_kernel(&launch.id, launch.driver, dev)
}

impl DeviceKernel for KernelDevice {
    fn program(&self) -> &DeviceProgram {
        &self.program
    }

    fn round_locked(
        &self,
        round: DeviceRound,
        staged: &mut VecDeque<Message>,
        take: usize,
    ) -> Result<(DeviceRoundOutcome, Result<RoundReport, Error>), Error> {
        let gpu = &self.gpu;
        let mut io = self.io.lock();
        let io = &mut *io;
        let plan = plan_round(
            &round,
            &self.program,
            &mut io.ring_state,
            staged,
            take,
            self.control_len,
        )?;
        if plan.ring_grown {
            let fresh = gpu.storage("input ring", (io.ring_state.buffer_words() * 4) as u64)?;
            gpu.clear(&io.ring)?;
            std::mem::replace(&mut io.ring, fresh).destroy();
        }
        if let Some(words) = plan.routes_to_upload(&mut io.uploaded) {
            self.ensure(&mut io.routes, (words.len() * 4) as u64)?;
            if !words.is_empty() {
                gpu.queue
                    .write_buffer(&io.routes.buffer, 0, bytemuck::cast_slice(&words));
            }
        }
        let out_bytes = (plan.messages * 8) as u64;
        self.ensure(&mut io.output, out_bytes)?;
        gpu.queue
            .write_buffer(&self.keys, 0, bytemuck::cast_slice(&plan.key_slots));
        gpu.queue
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&plan.params));
        gpu.queue
            .write_buffer(&self.status, 0, &[0u8; layout::STATUS_WORDS * 4]);
        for w in &plan.ring_writes {
            gpu.queue
                .write_buffer(&io.ring, (w.at * 4) as u64, bytemuck::cast_slice(&w.words));
        }
        #[cfg(feature = "hostile-device-testing")]
        self.hostile
            .apply_pending(plan.messages, &mut hostile::Raw { dev: self, io });
        let pipeline = &gpu.pipelines()?.persistent;
        let bind = gpu.scoped("binding kernel buffers", || {
            gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("persistent kernel"),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[
                    entry(0, &self.control),
                    entry(1, &self.keys),
                    entry(2, &self.params),
                    entry(3, &io.ring),
                    entry(4, &io.output.buffer),
                    entry(5, &io.routes.buffer),
                    entry(6, &self.status),
                ],
            })
        })?;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        let back = gpu.scoped("running a kernel round", || {
            gpu.read_many(
                &mut enc,
                &[
                    (&self.status, 0, (layout::STATUS_WORDS * 4) as u64),
                    (&io.output.buffer, 0, out_bytes),
                    (&self.control, 0, align4(self.control_len as u64)),
                ],
            )
        })??;
        let word_of = |i: usize| back.get(i).map(|b| words_from_le(b)).unwrap_or_default();
        // The block as the round left it: read_round checks that it was sealed under the
        // header the host reserved, and the gate opens it and keeps it as status.
        let control = back.get(2).map(|b| b.get(..self.control_len).unwrap_or(b));
        Ok(read_round(
            &plan,
            &mut io.ring_state,
            &word_of(0),
            &word_of(1),
            control.unwrap_or_default(),
        ))
    }

    #[cfg(feature = "hostile-device-testing")]
    fn hostile_device(&self) -> Option<ringkernel_core::backend::hostile::HostileDevice> {
        Some(self.hostile.clone())
    }

    /// Clears the key slots and every per-kernel buffer (the kernel has stopped).
    fn wipe(&self) {
        let io = self.io.lock();
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        for b in [
            &self.keys,
            &self.params,
            &self.status,
            &io.ring,
            &io.output.buffer,
            &io.routes.buffer,
        ] {
            enc.clear_buffer(b, 0, None);
        }
        self.gpu.queue.submit([enc.finish()]);
        if let Err(e) = self.gpu.wait() {
            tracing::error!(error = %e, "cannot wipe a kernel's key slots");
        }
    }
}

impl KernelDevice {
    /// Grows a per-kernel buffer to hold `bytes` (clearing the old one).
    fn ensure(&self, g: &mut Grown, bytes: u64) -> Result<(), Error> {
        if bytes > g.size {
            let size = align4(bytes).next_power_of_two();
            let fresh = self.gpu.storage("kernel buffer", size)?;
            self.gpu.clear(&g.buffer)?;
            g.buffer.destroy();
            *g = Grown {
                buffer: fresh,
                size,
            };
        }
        Ok(())
    }
}

/// The hostile-device hook's access to a kernel's buffers (test builds only).
#[cfg(feature = "hostile-device-testing")]
mod hostile {
    use ringkernel_core::Error;
    use ringkernel_core::backend::device::words_from_le;
    use ringkernel_core::backend::hostile::{DeviceBuffer, RawDeviceBuffers, check_words};

    use super::{Io, KernelDevice};

    /// A kernel's buffers during a round (the driver holds `io`).
    pub(super) struct Raw<'a> {
        pub(super) dev: &'a KernelDevice,
        pub(super) io: &'a mut Io,
    }

    impl Raw<'_> {
        fn buffer(&self, b: DeviceBuffer) -> Result<&wgpu::Buffer, Error> {
            Ok(match b {
                DeviceBuffer::Control => &self.dev.control,
                DeviceBuffer::KeySlots => &self.dev.keys,
                DeviceBuffer::Params => &self.dev.params,
                DeviceBuffer::Status => &self.dev.status,
                DeviceBuffer::InputRing => &self.io.ring,
                DeviceBuffer::Output => &self.io.output.buffer,
                DeviceBuffer::RouteBitmap => &self.io.routes.buffer,
                other => {
                    return Err(Error::InvalidConfig(format!("no such buffer: {other:?}")));
                }
            })
        }
    }

    impl RawDeviceBuffers for Raw<'_> {
        fn read_words(
            &mut self,
            b: DeviceBuffer,
            at: usize,
            len: usize,
        ) -> Result<Vec<u32>, Error> {
            let buf = self.buffer(b)?;
            check_words(b, at, len, (buf.size() / 4) as usize)?;
            // The read submits the round's uploads queued so far: it sees them.
            let bytes = self
                .dev
                .gpu
                .read_back(buf, (at * 4) as u64, (len * 4) as u64)?;
            Ok(words_from_le(&bytes))
        }

        fn write_words(&mut self, b: DeviceBuffer, at: usize, words: &[u32]) -> Result<(), Error> {
            let buf = self.buffer(b)?;
            check_words(b, at, words.len(), (buf.size() / 4) as usize)?;
            if !words.is_empty() {
                self.dev
                    .gpu
                    .queue
                    .write_buffer(buf, (at * 4) as u64, bytemuck::cast_slice(words));
            }
            Ok(())
        }
    }
}
