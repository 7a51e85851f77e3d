//! Persistent kernels on CUDA: a host driver thread launches `rk_persistent_round`
//! (`shaders/cuda/persistent_kernel.cu`) once per round, under the round contract
//! shared with the wgpu backend (`ringkernel_core::backend::device`). One block of 64
//! threads per round takes a batch from the kernel's input ring in device memory and
//! clears the ring words it consumed; the key slots and the ring are cleared when the
//! kernel stops.

use std::collections::VecDeque;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use parking_lot::Mutex;
use ringkernel_core::Error;
use ringkernel_core::backend::device::{
    DeviceKernel, InputRing, RoundReport, layout, plan_round, read_round, start_device_kernel,
};
use ringkernel_core::backend::{
    DeviceProgram, DeviceRound, DeviceRoundOutcome, KernelLaunch, KernelWorker,
};
use ringkernel_core::k2k::Message;
use ringkernel_core::security::sandbox::RouteTable;

use crate::device::{Device, SharedMem, driver_error};

struct KernelDevice {
    dev: Arc<Device>,
    control: SharedMem,
    control_len: usize,
    program: DeviceProgram,
    io: Mutex<Io>,
    #[cfg(feature = "hostile-device-testing")]
    hostile: ringkernel_core::backend::hostile::HostileDevice,
}

struct Io {
    keys: CudaSlice<u32>,
    params: CudaSlice<u32>,
    status: CudaSlice<u32>,
    /// The input ring in device memory, and the host's view of it.
    ring: CudaSlice<u32>,
    ring_state: InputRing,
    output: CudaSlice<u32>,
    routes: CudaSlice<u32>,
    uploaded: Option<Arc<RouteTable>>,
}

/// Starts a device kernel on `dev`, its control block in `control` (the backend's
/// buffer `launch.control`).
pub(crate) fn launch(
    dev: Arc<Device>,
    control: SharedMem,
    program: DeviceProgram,
    launch: KernelLaunch,
) -> Result<Box<dyn KernelWorker>, Error> {
    let zeros = |n: usize| {
        dev.stream
            .alloc_zeros::<u32>(n)
            .map_err(|e| driver_error("allocating kernel buffers", e))
    };
    let io = Io {
        keys: zeros(layout::KEY_SLOTS * layout::KEY_SLOT_WORDS)?,
        params: zeros(layout::PARAM_WORDS)?,
        status: zeros(layout::STATUS_WORDS)?,
        ring: zeros(InputRing::default().buffer_words())?,
        ring_state: InputRing::default(),
        output: zeros(64)?,
        routes: zeros(64)?,
        uploaded: None,
    };
    let kd = Arc::new(KernelDevice {
        dev,
        control,
        control_len: launch.control_len,
        program,
        io: Mutex::new(io),
        #[cfg(feature = "hostile-device-testing")]
        hostile: Default::default(),
    });
    start_device_kernel(&launch.id, launch.driver, kd)
}

/// Makes `buf` hold at least `words` words (clearing and replacing it when it grows).
fn ensure(dev: &Device, buf: &mut CudaSlice<u32>, words: usize) -> Result<(), Error> {
    if words > buf.len() {
        dev.stream
            .memset_zeros(buf)
            .map_err(|e| driver_error("memset", e))?;
        *buf = dev
            .stream
            .alloc_zeros::<u32>(words.next_power_of_two())
            .map_err(|e| driver_error("allocating kernel buffers", e))?;
    }
    Ok(())
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
        let st = &self.dev.stream;
        let copy = |e| driver_error("copy to the device", e);
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
            // `ensure` clears the old ring before replacing it with a zeroed one.
            ensure(&self.dev, &mut io.ring, io.ring_state.buffer_words())?;
        }
        if let Some(words) = plan.routes_to_upload(&mut io.uploaded) {
            ensure(&self.dev, &mut io.routes, words.len())?;
            if !words.is_empty() {
                st.memcpy_htod(&words, &mut io.routes.slice_mut(..words.len()))
                    .map_err(copy)?;
            }
        }
        ensure(&self.dev, &mut io.output, 2 * plan.messages)?;
        st.memcpy_htod(&plan.key_slots[..], &mut io.keys)
            .map_err(copy)?;
        st.memcpy_htod(&plan.params, &mut io.params).map_err(copy)?;
        st.memset_zeros(&mut io.status)
            .map_err(|e| driver_error("memset", e))?;
        for w in &plan.ring_writes {
            let end = w.at + w.words.len();
            if end > io.ring.len() {
                return Err(Error::backend("input ring write out of range"));
            }
            st.memcpy_htod(&w.words[..], &mut io.ring.slice_mut(w.at..end))
                .map_err(copy)?;
        }
        #[cfg(feature = "hostile-device-testing")]
        self.hostile.apply_pending(
            plan.messages,
            &mut hostile::Raw {
                dev: &self.dev,
                control: &self.control,
                io,
            },
        );
        let words = |n: usize, what: &str| {
            u32::try_from(n).map_err(|_| Error::backend(format!("{what} too large")))
        };
        let ring_words = words(io.ring.len(), "input ring")?;
        let output_words = words(io.output.len(), "kernel output")?;
        let route_words = words(io.routes.len(), "route bitmap")?;
        {
            let mut control = self.control.lock();
            let mut launch = st.launch_builder(&self.dev.persistent);
            launch
                .arg(&mut *control)
                .arg(&io.keys)
                .arg(&io.params)
                .arg(&mut io.ring)
                .arg(&ring_words)
                .arg(&mut io.output)
                .arg(&output_words)
                .arg(&io.routes)
                .arg(&route_words)
                .arg(&mut io.status);
            let cfg = LaunchConfig {
                grid_dim: (1, 1, 1),
                block_dim: (64, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: the arguments match `rk_persistent_round(u32 *control,
            // const u32 *keys, const u32 *params, u32 *ring, u32 ring_words,
            // u32 *output, u32 output_words, const u32 *routes, u32 route_words,
            // u32 *status)`. The control buffer holds `control_len` bytes (checked by
            // plan_round against the sealed or plain layout); keys, params and status
            // have their layout sizes; `ring_words`, `output_words` and `route_words`
            // are the real lengths of those buffers, and the kernel bounds the ring's
            // capacity, the batch and every route bit by them before any access (the
            // ring's positions and entry lengths, which device memory holds, are
            // checked against the host's parameters first).
            unsafe { launch.launch(cfg) }.map_err(|e| driver_error("launching a round", e))?;
        }
        let status = st
            .clone_dtoh(&io.status)
            .map_err(|e| driver_error("copy from the device", e))?;
        let output = st
            .clone_dtoh(&io.output.slice(..(2 * plan.messages).max(1)))
            .map_err(|e| driver_error("copy from the device", e))?;
        // The block as the round left it: read_round checks that it was sealed under the
        // header the host reserved, and the gate opens it and keeps it as status.
        let control = st
            .clone_dtoh(&*self.control.lock())
            .map_err(|e| driver_error("copy from the device", e))?;
        self.dev.sync()?;
        let control = control.get(..self.control_len).unwrap_or(&control);
        Ok(read_round(
            &plan,
            &mut io.ring_state,
            &status,
            &output,
            control,
        ))
    }

    #[cfg(feature = "hostile-device-testing")]
    fn hostile_device(&self) -> Option<ringkernel_core::backend::hostile::HostileDevice> {
        Some(self.hostile.clone())
    }

    /// Clears the key slots and every per-kernel buffer (the kernel has stopped).
    fn wipe(&self) {
        let mut io = self.io.lock();
        let io = &mut *io;
        let st = &self.dev.stream;
        for b in [
            &mut io.keys,
            &mut io.params,
            &mut io.status,
            &mut io.ring,
            &mut io.output,
            &mut io.routes,
        ] {
            if let Err(e) = st.memset_zeros(b) {
                tracing::error!(error = ?e, "cannot wipe a kernel buffer");
            }
        }
        if let Err(e) = self.dev.sync() {
            tracing::error!(error = %e, "cannot wipe a kernel's key slots");
        }
    }
}

/// The hostile-device hook's access to a kernel's buffers (test builds only).
#[cfg(feature = "hostile-device-testing")]
mod hostile {
    use cudarc::driver::CudaSlice;
    use ringkernel_core::Error;
    use ringkernel_core::backend::device::words_from_le;
    use ringkernel_core::backend::hostile::{DeviceBuffer, RawDeviceBuffers, check_words};

    use super::Io;
    use crate::device::{Device, driver_error};

    /// A kernel's buffers during a round (the driver holds `io`).
    pub(super) struct Raw<'a> {
        pub(super) dev: &'a Device,
        pub(super) control: &'a crate::device::SharedMem,
        pub(super) io: &'a mut Io,
    }

    impl Raw<'_> {
        fn words(&mut self, b: DeviceBuffer) -> Result<&mut CudaSlice<u32>, Error> {
            Ok(match b {
                DeviceBuffer::KeySlots => &mut self.io.keys,
                DeviceBuffer::Params => &mut self.io.params,
                DeviceBuffer::Status => &mut self.io.status,
                DeviceBuffer::InputRing => &mut self.io.ring,
                DeviceBuffer::Output => &mut self.io.output,
                DeviceBuffer::RouteBitmap => &mut self.io.routes,
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
            let st = self.dev.stream.clone();
            let back = |e| driver_error("copy from the device", e);
            if b == DeviceBuffer::Control {
                let control = self.control.lock();
                check_words(b, at, len, control.len() / 4)?;
                let bytes = st
                    .clone_dtoh(&control.slice(at * 4..(at + len) * 4))
                    .map_err(back)?;
                return Ok(words_from_le(&bytes));
            }
            let buf = self.words(b)?;
            check_words(b, at, len, buf.len())?;
            st.clone_dtoh(&buf.slice(at..at + len)).map_err(back)
        }

        fn write_words(&mut self, b: DeviceBuffer, at: usize, words: &[u32]) -> Result<(), Error> {
            let st = self.dev.stream.clone();
            let copy = |e| driver_error("copy to the device", e);
            if b == DeviceBuffer::Control {
                let mut control = self.control.lock();
                check_words(b, at, words.len(), control.len() / 4)?;
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                return st
                    .memcpy_htod(
                        &bytes,
                        &mut control.slice_mut(at * 4..(at + words.len()) * 4),
                    )
                    .map_err(copy);
            }
            let buf = self.words(b)?;
            check_words(b, at, words.len(), buf.len())?;
            st.memcpy_htod(words, &mut buf.slice_mut(at..at + words.len()))
                .map_err(copy)
        }
    }
}
