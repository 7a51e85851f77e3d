//! ChaCha20-Poly1305 on the GPU: a batch primitive (many independent records, one per
//! invocation), and sealing/opening whole device buffers in the envelope's STREAM form
//! (one chunk per workgroup).

use ringkernel_core::Error;
use ringkernel_core::backend::device::{self, pack_jobs, unpack_jobs, words_from_le, words_of};
use ringkernel_core::backend::{AeadJob, BufferId, DeviceCipher};
use ringkernel_core::security::encryption::{ContextId, MemoryEncryption, SequenceCheck, TAG_LEN};
use zeroize::Zeroize;

use crate::backend::WgpuBackend;
use crate::gpu::{align4, entry};

/// The WGSL kernels `aead_batch.wgsl` (one record per invocation) and
/// `stream_aead.wgsl` (one STREAM chunk per workgroup). Records are limited to
/// 4 GiB − 1 bytes; the STREAM chunk size must be a multiple of 64 bytes.
impl DeviceCipher for WgpuBackend {
    fn aead_batch(&self, jobs: &mut [AeadJob]) -> Result<Vec<bool>, Error> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let gpu = &self.gpu;
        let pipes = gpu.pipelines()?;
        let packed = pack_jobs(jobs)?;
        let count = packed.count;
        let groups = count.div_ceil(64);
        if groups > gpu.limits.max_compute_workgroups_per_dimension {
            return Err(Error::backend("AEAD batch has too many records"));
        }
        let data_len = (packed.data.len() * 4) as u64;
        let jobs_buf = gpu.storage("aead jobs", (packed.desc.len() * 4) as u64)?;
        let data_buf = gpu.storage("aead data", data_len)?;
        let results_buf = gpu.storage("aead results", u64::from(count) * 4)?;
        let count_buf = gpu.scoped("creating a parameter buffer", || {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("aead count"),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        gpu.queue
            .write_buffer(&jobs_buf, 0, bytemuck::cast_slice(&packed.desc));
        gpu.queue
            .write_buffer(&data_buf, 0, bytemuck::cast_slice(&packed.data));
        gpu.queue
            .write_buffer(&count_buf, 0, bytemuck::cast_slice(&[count, 0, 0, 0]));
        let pipeline = &pipes.aead_batch;
        let bind = gpu.scoped("binding AEAD buffers", || {
            gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("aead batch"),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[
                    entry(0, &jobs_buf),
                    entry(1, &data_buf),
                    entry(2, &results_buf),
                    entry(3, &count_buf),
                ],
            })
        })?;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups, 1, 1);
        }
        let mut back = gpu.scoped("running the AEAD batch", || {
            gpu.read_many(
                &mut enc,
                &[
                    (&data_buf, 0, data_len),
                    (&results_buf, 0, u64::from(count) * 4),
                ],
            )
        })??;
        gpu.clear(&data_buf)?;
        for b in [&jobs_buf, &data_buf, &results_buf, &count_buf] {
            b.destroy();
        }
        let ok = unpack_jobs(jobs, &packed, &back[0], &words_from_le(&back[1]));
        back[0].zeroize();
        Ok(ok)
    }

    fn seal_buffer(
        &self,
        enc: &MemoryEncryption,
        context: ContextId,
        sequence: u64,
        buffer: BufferId,
        len: u64,
    ) -> Result<Vec<u8>, Error> {
        let (src, buf_len) = self.buffer(buffer)?;
        let seal = device::stream_seal_for_buffer(enc, context, sequence, buffer, len, buf_len)?;
        let chunk = seal.parsed.chunk_size;
        let chunks = stream_chunks(len, chunk)?;
        let body_len = len + u64::from(chunks) * TAG_LEN as u64;
        let dst = self.gpu.storage("stream body", align4(body_len))?;
        // One submission and one wait: the dispatch, then the read-back of the body.
        let mut cmds = self.gpu.device.create_command_encoder(&Default::default());
        let run = self.encode_stream(
            &mut cmds,
            true,
            seal.key.bytes(),
            &seal.parsed.nonce,
            &seal.header,
            &src,
            &dst,
            len,
            chunk,
            chunks,
        )?;
        let body = self.gpu.scoped("running the STREAM kernel", || {
            self.gpu
                .read_many(&mut cmds, &[(&dst, 0, align4(body_len))])
        })??;
        run.destroy();
        dst.destroy();
        let body = body
            .first()
            .and_then(|b| b.get(..body_len as usize))
            .ok_or_else(|| Error::backend("short read-back of a sealed body"))?;
        let mut out = Vec::with_capacity(seal.header.len() + body.len());
        out.extend_from_slice(&seal.header);
        out.extend_from_slice(body);
        Ok(out)
    }

    /// The header is checked on the host exactly as
    /// [`MemoryEncryption::open_stream`] would; every chunk's tag on the device, into a
    /// scratch buffer copied to `buffer` only when all verified.
    fn open_into_buffer(
        &self,
        enc: &MemoryEncryption,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
        buffer: BufferId,
    ) -> Result<u64, Error> {
        let (dst, buf_len) = self.buffer(buffer)?;
        let open = device::stream_open_into_buffer(enc, sealed, context, check, buffer, buf_len)?;
        let total = open.parsed.length;
        let chunks = stream_chunks(total, open.parsed.chunk_size)?;
        let body = &sealed[open.header_len..];
        let src = self.gpu.storage("stream body", align4(body.len() as u64))?;
        self.gpu.queue.write_buffer(&src, 0, &pad4(body));
        // Open into a scratch buffer first: a buffer is either fully opened or untouched.
        let scratch = self.gpu.storage("stream plaintext", align4(total))?;
        // One submission and one wait: the dispatch, then the read-back of the failure
        // counter.
        let mut cmds = self.gpu.device.create_command_encoder(&Default::default());
        let run = self.encode_stream(
            &mut cmds,
            false,
            open.key.bytes(),
            &open.parsed.nonce,
            &sealed[..open.header_len],
            &src,
            &scratch,
            total,
            open.parsed.chunk_size,
            chunks,
        )?;
        let counter = self.gpu.scoped("running the STREAM kernel", || {
            self.gpu.read_many(&mut cmds, &[(&run.failures, 0, 4)])
        })??;
        run.destroy();
        src.destroy();
        let failures = counter
            .first()
            .and_then(|c| c.get(..4))
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .ok_or_else(|| Error::backend("short read-back of the failure counter"))?;
        if failures != 0 {
            self.gpu.clear(&scratch)?;
            scratch.destroy();
            return Err(Error::Tampered);
        }
        let mut e = self.gpu.device.create_command_encoder(&Default::default());
        e.copy_buffer_to_buffer(&scratch, 0, &dst, 0, align4(total));
        e.clear_buffer(&scratch, 0, None);
        self.gpu.queue.submit([e.finish()]);
        self.gpu.wait()?;
        scratch.destroy();
        Ok(total)
    }
}

impl WgpuBackend {
    /// Records the STREAM kernel's dispatch into `cmds`, followed by the clearing of
    /// its parameters (the key). Nothing is submitted: the caller appends its
    /// read-back, so that a call costs one submission and one wait.
    #[allow(clippy::too_many_arguments)]
    fn encode_stream(
        &self,
        cmds: &mut wgpu::CommandEncoder,
        seal: bool,
        key: &[u8],
        prefix: &[u8],
        aad: &[u8],
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        total: u64,
        chunk: u32,
        chunks: u32,
    ) -> Result<StreamRun, Error> {
        let gpu = &self.gpu;
        let pipes = gpu.pipelines()?;
        let total32 = u32::try_from(total)
            .map_err(|_| Error::backend("GPU STREAM sealing is limited to 4 GiB - 1"))?;
        if prefix.len() != 7 {
            return Err(Error::backend("unexpected STREAM nonce prefix length"));
        }
        let mut p = [0u8; 8];
        p[..7].copy_from_slice(prefix);
        let mut params: Vec<u32> = words_of(key);
        params.extend(words_of(&p));
        params.extend([
            total32,
            chunk,
            chunks,
            u32::try_from(aad.len()).map_err(|_| Error::backend("header too long"))?,
            0,
            0,
        ]);
        let params_buf = gpu.scoped("creating a parameter buffer", || {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("stream params"),
                size: (params.len() * 4) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        gpu.queue
            .write_buffer(&params_buf, 0, bytemuck::cast_slice(&params));
        params.zeroize();
        let aad_buf = gpu.storage("stream aad", align4(aad.len() as u64))?;
        gpu.queue.write_buffer(&aad_buf, 0, &pad4(aad));
        let fail_buf = gpu.storage("stream failures", 4)?;
        let pipeline = if seal {
            &pipes.stream_seal
        } else {
            &pipes.stream_open
        };
        let bind = gpu.scoped("binding STREAM buffers", || {
            gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("stream"),
                layout: &pipeline.get_bind_group_layout(0),
                // The seal entry point does not use the failure counter, and layouts
                // derived from a shader hold only the bindings it uses.
                entries: &[
                    entry(0, &params_buf),
                    entry(1, &aad_buf),
                    entry(2, src),
                    entry(3, dst),
                    entry(4, &fail_buf),
                ][..if seal { 4 } else { 5 }],
            })
        })?;
        let groups = chunks.min(gpu.limits.max_compute_workgroups_per_dimension);
        {
            let mut pass = cmds.begin_compute_pass(&Default::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups, 1, 1);
        }
        // The key leaves the device with this submission.
        cmds.clear_buffer(&params_buf, 0, None);
        Ok(StreamRun {
            params: params_buf,
            aad: aad_buf,
            failures: fail_buf,
        })
    }
}

/// The buffers of one recorded STREAM dispatch, released once it has run.
struct StreamRun {
    params: wgpu::Buffer,
    aad: wgpu::Buffer,
    failures: wgpu::Buffer,
}

impl StreamRun {
    fn destroy(self) {
        for b in [&self.params, &self.aad, &self.failures] {
            b.destroy();
        }
    }
}

/// Number of STREAM chunks (one empty chunk for an empty buffer); the chunk size must
/// be a non-zero multiple of 64 for the GPU kernel's word-aligned slots.
fn stream_chunks(total: u64, chunk: u32) -> Result<u32, Error> {
    if chunk == 0 || !chunk.is_multiple_of(64) {
        return Err(Error::Unsupported {
            backend: "wgpu",
            what: format!("STREAM chunk size {chunk}: the GPU kernel needs a multiple of 64"),
        });
    }
    device::stream_chunks(total, chunk)
}

pub(crate) fn pad4(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(align4(bytes.len() as u64) as usize, 0);
    v
}
