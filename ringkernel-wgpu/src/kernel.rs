//! Persistent kernels on wgpu: a host driver thread dispatches
//! `shaders/wgsl/persistent_kernel.wgsl` in rounds.
//!
//! Each round, under the gate's lock of the control block
//! ([`KernelContext::device_round`]): upload the key slots (current epoch first, then
//! the older live epoch), the round's parameters (expected sequence number, the header
//! and device-direction nonce the host reserved for the re-sealing), the route bitmap
//! (only when the sandbox rebuilt it: a kernel started or stopped) and the input batch;
//! dispatch one workgroup; read back the per-message results and the status words. The
//! input buffer is cleared in the same submission, so no plaintext payload stays on the
//! device between rounds; the key slots are cleared when the kernel stops.

use std::sync::Arc;

use parking_lot::Mutex;
use ringkernel_core::Error;
use ringkernel_core::backend::{
    DeviceProgram, DeviceRound, DeviceRoundOutcome, KernelLaunch, KernelProgram, KernelWorker,
    spawn_kernel_thread,
};
use ringkernel_core::control::CONTROL_BLOCK_SIZE;
use ringkernel_core::k2k::{KernelId, Message};
use ringkernel_core::runtime::KernelContext;
use ringkernel_core::security::sandbox::RouteTable;
use zeroize::Zeroize;

use crate::aead::entry;
use crate::backend::WgpuBackend;
use crate::gpu::{Gpu, align4, words_of};

/// Messages per round unless the program asks for fewer.
const DEFAULT_BATCH: usize = 256;
const KEY_SLOT_WORDS: usize = 12;
const PARAM_WORDS: usize = 9 + 13 + 2;
const STATUS_WORDS: usize = 8;
/// How long a forwarded checksum may wait for room in the peer's queue.
const SEND_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Device status codes (status word 0).
const OPEN_FAILED: u32 = 1;
const HEADER_MISMATCH: u32 = 2;
const NO_KEY: u32 = 3;

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
}

struct Io {
    input: wgpu::Buffer,
    input_size: u64,
    output: wgpu::Buffer,
    output_size: u64,
    routes: wgpu::Buffer,
    routes_size: u64,
    uploaded: Option<Arc<RouteTable>>,
}

/// What one round did, for the driver to act on outside the control block's lock.
#[derive(Debug, Default)]
struct RoundReport {
    checksums: Vec<u32>,
    forwarded: Vec<u32>,
    refused: u64,
    terminate_seen: bool,
    peer: Option<KernelId>,
}

pub(crate) fn launch(
    backend: &WgpuBackend,
    launch: KernelLaunch,
) -> Result<Box<dyn KernelWorker>, Error> {
    let KernelProgram::Device(program) = launch.program else {
        return Err(Error::Unsupported {
            backend: "wgpu",
            what: "this launch path runs device programs only".into(),
        });
    };
    let (control, _) = backend.buffer(launch.control)?;
    let gpu = backend.gpu.clone();
    let io = Io {
        input: gpu.storage("kernel input", 256)?,
        input_size: 256,
        output: gpu.storage("kernel output", 256)?,
        output_size: 256,
        routes: gpu.storage("route bitmap", 256)?,
        routes_size: 256,
        uploaded: None,
    };
    let dev = Arc::new(KernelDevice {
        keys: gpu.storage("key slots", (2 * KEY_SLOT_WORDS * 4) as u64)?,
        params: gpu.storage("round params", (PARAM_WORDS * 4) as u64)?,
        status: gpu.storage("round status", (STATUS_WORDS * 4) as u64)?,
        gpu,
        control,
        control_len: launch.control_len,
        program,
        io: Mutex::new(io),
    });
    let ctx = launch.context;
    let driver = {
        let dev = dev.clone();
        let ctx = ctx.clone();
        spawn_kernel_thread(&launch.id, move || drive(&dev, &ctx))?
    };
    Ok(Box::new(WgpuWorker { driver, dev, ctx }))
}

/// The driver loop: a round per non-empty batch, until the kernel is asked to stop.
fn drive(dev: &KernelDevice, ctx: &KernelContext) {
    let batch = dev
        .program
        .batch_limit()
        .unwrap_or(DEFAULT_BATCH)
        .min(DEFAULT_BATCH);
    while let Some(msgs) = ctx.next_batch(batch) {
        if msgs.is_empty() {
            continue;
        }
        match dev.round(ctx, &msgs) {
            Ok(report) => {
                deliver(ctx, &report);
                if report.terminate_seen {
                    tracing::info!(kernel = %ctx.id(), "device kernel honoured should_terminate");
                    break;
                }
            }
            Err(e) => {
                dev.wipe();
                ctx.stop_with_error(&e);
                return;
            }
        }
    }
    dev.wipe();
    ctx.mark_terminated();
}

/// Sends what the device forwarded and reports what it refused.
fn deliver(ctx: &KernelContext, report: &RoundReport) {
    let Some(peer) = &report.peer else {
        return;
    };
    for sum in &report.forwarded {
        // Backpressure: a full peer queue holds the driver (and so the kernel) back.
        if let Err(e) = ctx.send_timeout(peer.as_str(), "checksum", &sum.to_le_bytes(), SEND_WAIT) {
            tracing::warn!(kernel = %ctx.id(), peer = %peer, error = %e, "forwarded checksum not delivered");
        }
    }
    if report.refused > 0 {
        ctx.report_device_refusals(peer, report.refused);
    }
}

impl KernelDevice {
    /// One round over `msgs` (empty: just open, check and re-seal the control block).
    fn round(&self, ctx: &KernelContext, msgs: &[Message]) -> Result<RoundReport, Error> {
        ctx.device_round(|round| self.round_locked(round, msgs))
    }

    fn round_locked(
        &self,
        round: DeviceRound,
        msgs: &[Message],
    ) -> Result<(DeviceRoundOutcome, RoundReport), Error> {
        let gpu = &self.gpu;
        let mut io = self.io.lock();
        let n = u32::try_from(msgs.len()).map_err(|_| Error::Backend("batch too large".into()))?;

        // Key slots and the header to re-seal with.
        let mut params = vec![0u32; PARAM_WORDS];
        let mut slots = vec![0u32; 2 * KEY_SLOT_WORDS];
        let expected_len = match &round.sealing {
            Some(s) => {
                let seal_epoch = s.seal.key.epoch();
                let mut put = |slot: usize, epoch: u32, key: &[u8]| {
                    let o = slot * KEY_SLOT_WORDS;
                    slots[o] = epoch;
                    slots[o + 1] = 1;
                    slots[o + 4..o + 12].copy_from_slice(&words_of(key));
                };
                put(0, seal_epoch, s.seal.key.bytes());
                if let Some(other) = s.keys.iter().find(|k| k.epoch() != seal_epoch) {
                    put(1, other.epoch(), other.bytes());
                }
                params[0] = 1;
                let header = words_of(&s.seal.header);
                if header.len() != 13 {
                    return Err(Error::Backend(
                        "unexpected control-block header size".into(),
                    ));
                }
                params[9..22].copy_from_slice(&header);
                ringkernel_core::security::encryption::device::device_sealed_len(CONTROL_BLOCK_SIZE)
            }
            None => CONTROL_BLOCK_SIZE,
        };
        if expected_len != self.control_len {
            return Err(Error::Backend(format!(
                "control block is {} bytes, the device kernel expects {expected_len}",
                self.control_len
            )));
        }
        params[1] = n;
        params[2] = round.sequence as u32;
        params[3] = (round.sequence >> 32) as u32;
        params[22] = round.queued_total as u32;
        params[23] = (round.queued_total >> 32) as u32;

        // Routes: only the sandbox's permitted routes exist on the device.
        let peer = self.program.peer().cloned();
        let mut resolved_peer = None;
        match (&round.routes, &peer) {
            (Some((table, own)), Some(p)) => {
                if let Some(slot) = table.slot_of(p) {
                    let (bits, stride) = table.bitmap();
                    let changed = io.uploaded.as_ref().is_none_or(|u| !Arc::ptr_eq(u, table));
                    if changed {
                        let bytes: Vec<u8> = bits.iter().flat_map(|w| w.to_le_bytes()).collect();
                        self.ensure(&mut io, Which::Routes, bytes.len() as u64)?;
                        if !bytes.is_empty() {
                            gpu.queue.write_buffer(&io.routes, 0, &bytes);
                        }
                        io.uploaded = Some(table.clone());
                    }
                    params[4] = 1;
                    params[5] = u32::try_from(*own).unwrap_or(u32::MAX);
                    params[6] = u32::try_from(slot).unwrap_or(u32::MAX);
                    params[7] = u32::try_from(stride).unwrap_or(0);
                    params[8] = 1;
                    resolved_peer = Some(p.clone());
                } else {
                    tracing::warn!(peer = %p, "peer kernel is not running; checksums are not forwarded this round");
                }
            }
            (None, Some(p)) => {
                params[4] = 1;
                resolved_peer = Some(p.clone());
            }
            (_, None) => {}
        }

        // Input batch: descriptors, then payloads (word-aligned).
        let mut input: Vec<u32> = Vec::with_capacity(2 * msgs.len());
        let mut payload_words: Vec<u32> = Vec::new();
        for m in msgs {
            let off = 2 * msgs.len() + payload_words.len();
            input.push(u32::try_from(off).map_err(|_| Error::Backend("batch too large".into()))?);
            input.push(
                u32::try_from(m.payload.len())
                    .map_err(|_| Error::Backend("message too large".into()))?,
            );
            payload_words.extend(words_of(&m.payload));
        }
        input.append(&mut payload_words);
        let input_bytes = (input.len() * 4) as u64;
        self.ensure(&mut io, Which::Input, input_bytes)?;
        self.ensure(&mut io, Which::Output, u64::from(n) * 8)?;

        gpu.queue
            .write_buffer(&self.keys, 0, bytemuck::cast_slice(&slots));
        gpu.queue
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&params));
        gpu.queue
            .write_buffer(&self.status, 0, &[0u8; STATUS_WORDS * 4]);
        if !input.is_empty() {
            gpu.queue
                .write_buffer(&io.input, 0, bytemuck::cast_slice(&input));
        }
        slots.zeroize();
        input.zeroize();

        let pipeline = &gpu.pipelines()?.persistent;
        let bind = gpu.scoped("binding kernel buffers", || {
            gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("persistent kernel"),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[
                    entry(0, &self.control),
                    entry(1, &self.keys),
                    entry(2, &self.params),
                    entry(3, &io.input),
                    entry(4, &io.output),
                    entry(5, &io.routes),
                    entry(6, &self.status),
                ],
            })
        })?;
        gpu.scoped("dispatching a kernel round", || {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups(1, 1, 1);
            }
            // No plaintext payload stays on the device after the round.
            enc.clear_buffer(&io.input, 0, None);
            gpu.queue.submit([enc.finish()]);
        })?;
        let status = words(&gpu.read_back(&self.status, 0, (STATUS_WORDS * 4) as u64)?);
        match status[0] {
            0 => {}
            OPEN_FAILED => return Err(Error::Tampered),
            HEADER_MISMATCH => {
                return Err(Error::Corrupt {
                    what: "device control block",
                    reason: "header does not match (context, sequence or algorithm)".into(),
                });
            }
            NO_KEY => {
                return Err(Error::Corrupt {
                    what: "device control block",
                    reason: "sealed under an epoch that has no key slot".into(),
                });
            }
            other => return Err(Error::Backend(format!("device kernel status {other}"))),
        }
        let out = if n > 0 {
            words(&gpu.read_back(&io.output, 0, u64::from(n) * 8)?)
        } else {
            Vec::new()
        };
        let mut report = RoundReport {
            terminate_seen: status[4] == 1,
            refused: u64::from(status[3]),
            peer: resolved_peer,
            ..RoundReport::default()
        };
        for m in 0..msgs.len() {
            let (sum, st) = (out[2 * m], out[2 * m + 1]);
            report.checksums.push(sum);
            if st == 2 {
                report.forwarded.push(sum);
            }
        }
        Ok((
            DeviceRoundOutcome {
                resealed: status[5] == 1,
            },
            report,
        ))
    }

    /// Grows a per-kernel buffer to hold `bytes`.
    fn ensure(&self, io: &mut Io, which: Which, bytes: u64) -> Result<(), Error> {
        let (buf, size) = match which {
            Which::Input => (&mut io.input, &mut io.input_size),
            Which::Output => (&mut io.output, &mut io.output_size),
            Which::Routes => (&mut io.routes, &mut io.routes_size),
        };
        if bytes > *size {
            let new_size = align4(bytes).next_power_of_two();
            let fresh = self.gpu.storage("kernel buffer", new_size)?;
            self.gpu.clear(buf)?;
            buf.destroy();
            *buf = fresh;
            *size = new_size;
        }
        Ok(())
    }

    /// Clears the key slots and every per-kernel buffer (the kernel has stopped).
    fn wipe(&self) {
        let io = self.io.lock();
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        for b in [
            &self.keys,
            &self.params,
            &self.status,
            &io.input,
            &io.output,
            &io.routes,
        ] {
            enc.clear_buffer(b, 0, None);
        }
        self.gpu.queue.submit([enc.finish()]);
        if let Err(e) = self.gpu.wait() {
            tracing::error!(error = %e, "cannot wipe a kernel's key slots");
        }
    }
}

enum Which {
    Input,
    Output,
    Routes,
}

fn words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The backend's handle on a device kernel: its driver thread, and a way to run a
/// round from the runtime's ticker (re-sealing under a new key).
struct WgpuWorker {
    driver: Box<dyn KernelWorker>,
    dev: Arc<KernelDevice>,
    ctx: KernelContext,
}

impl KernelWorker for WgpuWorker {
    fn is_finished(&self) -> bool {
        self.driver.is_finished()
    }

    fn join(&mut self) -> Result<(), Error> {
        self.driver.join()
    }

    fn reseal_on_device(&self) -> Option<Result<(), Error>> {
        if self.driver.is_finished() {
            return None;
        }
        Some(self.dev.round(&self.ctx, &[]).map(|report| {
            if report.terminate_seen {
                tracing::debug!(kernel = %self.ctx.id(), "re-sealing round saw should_terminate");
            }
        }))
    }
}
