//! ChaCha20-Poly1305 on the CUDA device: the batch primitive (`aead_batch.cu`, one
//! record per thread) and STREAM sealing/opening of device buffers (`stream_aead.cu`,
//! one chunk per block, its keystream and Poly1305 split across the block's threads),
//! in the same layouts as the wgpu backend.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use ringkernel_core::Error;
use ringkernel_core::backend::device::{
    pack_jobs, stream_chunks, stream_open_into_buffer, stream_seal_for_buffer, unpack_jobs,
};
use ringkernel_core::backend::{AeadJob, BufferId, DeviceCipher};
use ringkernel_core::security::encryption::{ContextId, MemoryEncryption, SequenceCheck, TAG_LEN};
use zeroize::Zeroize;

use crate::backend::CudaBackend;
use crate::device::driver_error;

const THREADS: u32 = 64;

fn blocks(n: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(THREADS).max(1), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Threads per block of the STREAM kernels: `RK_SPLIT_MAX_THREADS` of
/// `chacha20_poly1305.cuh`, the most that take part in one chunk.
const STREAM_THREADS: u32 = 256;

/// Blocks of the STREAM kernels: one per chunk, up to a grid the kernels stride over.
fn chunk_blocks(chunks: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (chunks.clamp(1, 65_535), 1, 1),
        block_dim: (STREAM_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Each chunk's plaintext range and its slot in the STREAM body: (start, length, slot
/// offset); the empty chunk of an empty buffer has nothing to move.
fn chunk_spans(total: u64, chunk: u32, chunks: u32) -> impl Iterator<Item = (usize, usize, usize)> {
    (0..chunks as usize).filter_map(move |i| {
        let start = i * chunk as usize;
        let n = (total as usize).saturating_sub(start).min(chunk as usize);
        (n > 0).then_some((start, n, i * (chunk as usize + TAG_LEN)))
    })
}

impl CudaBackend {
    fn upload_u8(&self, bytes: &[u8]) -> Result<CudaSlice<u8>, Error> {
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().max(1), 0);
        let s = self
            .dev
            .stream
            .clone_htod(&padded)
            .map_err(|e| driver_error("copy to the device", e));
        padded.zeroize();
        s
    }

    fn wipe_u8(&self, mut s: CudaSlice<u8>) {
        if let Err(e) = self.dev.stream.memset_zeros(&mut s) {
            tracing::error!(error = ?e, "cannot clear a device buffer");
        }
    }
}

impl DeviceCipher for CudaBackend {
    fn aead_batch(&self, jobs: &mut [AeadJob]) -> Result<Vec<bool>, Error> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let st = &self.dev.stream;
        let packed = pack_jobs(jobs)?;
        let desc = st
            .clone_htod(&packed.desc)
            .map_err(|e| driver_error("copy to the device", e))?;
        let mut data = st
            .clone_htod(&packed.data[..])
            .map_err(|e| driver_error("copy to the device", e))?;
        let mut results = st
            .alloc_zeros::<u32>(packed.count as usize)
            .map_err(|e| driver_error("allocating results", e))?;
        let count = packed.count;
        let mut launch = st.launch_builder(&self.dev.aead_batch);
        launch
            .arg(&desc)
            .arg(&mut data)
            .arg(&mut results)
            .arg(&count);
        // SAFETY: the arguments match `rk_aead_batch(const u32 *jobs, u32 *data,
        // u32 *results, u32 count)`; every offset in `desc` was computed by pack_jobs
        // inside `data`, and `results` holds `count` words.
        unsafe { launch.launch(blocks(count)) }.map_err(|e| driver_error("launch", e))?;
        let mut out = st
            .clone_dtoh(&data)
            .map_err(|e| driver_error("copy from the device", e))?;
        let res = st
            .clone_dtoh(&results)
            .map_err(|e| driver_error("copy from the device", e))?;
        st.memset_zeros(&mut data)
            .map_err(|e| driver_error("memset", e))?;
        self.dev.sync()?;
        // Sized up front so no partial copy of the results is freed unzeroed.
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(out.len() * 4));
        for w in &out {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        out.zeroize();
        Ok(unpack_jobs(jobs, &packed, &bytes, &res))
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
        let seal = stream_seal_for_buffer(enc, context, sequence, buffer, len, buf_len)?;
        let chunk = seal.parsed.chunk_size;
        let chunks = stream_chunks(len, chunk)?;
        let st = &self.dev.stream;
        let body_len = len as usize + chunks as usize * TAG_LEN;
        let mut body = st
            .alloc_zeros::<u8>(body_len)
            .map_err(|e| driver_error("allocating the body", e))?;
        {
            // Each chunk's plaintext goes to its slot, where it is sealed in place.
            let src = src.lock();
            for (start, n, slot) in chunk_spans(len, chunk, chunks) {
                st.memcpy_dtod(
                    &src.slice(start..start + n),
                    &mut body.slice_mut(slot..slot + n),
                )
                .map_err(|e| driver_error("copy on the device", e))?;
            }
        }
        let key = self.upload_u8(seal.key.bytes())?;
        let prefix = self.upload_u8(&seal.parsed.nonce)?;
        let aad = self.upload_u8(&seal.header)?;
        let (aad_len, chunk_size) = (seal.header.len() as u64, chunk);
        let mut failures = st
            .alloc_zeros::<u32>(1)
            .map_err(|e| driver_error("allocating a counter", e))?;
        let mut launch = st.launch_builder(&self.dev.stream_seal);
        launch
            .arg(&key)
            .arg(&prefix)
            .arg(&aad)
            .arg(&aad_len)
            .arg(&mut body)
            .arg(&len)
            .arg(&chunk_size)
            .arg(&chunks)
            .arg(&mut failures);
        // SAFETY: the arguments match `rk_stream_seal(const u8 *key, const u8 *prefix,
        // const u8 *aad, u64 aad_len, u8 *body, u64 total, u32 chunk_size, u32 chunks,
        // u32 *failures)`; `body` holds `chunks` slots of chunk_size + 16 bytes (the last
        // one shorter, as the kernel computes), key 32 bytes, prefix 7 bytes, aad
        // `aad_len` bytes, `failures` one word; the kernel checks that `chunks` is the
        // chunk count of `len` before it touches the body.
        unsafe { launch.launch(chunk_blocks(chunks)) }.map_err(|e| driver_error("launch", e))?;
        let failed = st
            .clone_dtoh(&failures)
            .map_err(|e| driver_error("copy from the device", e))?;
        self.wipe_u8(key);
        if failed.first().copied().unwrap_or(1) != 0 {
            // Not sealed: the slots may still hold plaintext.
            self.wipe_u8(body);
            self.dev.sync()?;
            return Err(Error::backend(
                "cuda: the STREAM kernel refused the chunk geometry",
            ));
        }
        let sealed_body = st
            .clone_dtoh(&body)
            .map_err(|e| driver_error("copy from the device", e))?;
        self.dev.sync()?;
        let mut out = seal.header.clone();
        out.extend_from_slice(&sealed_body);
        Ok(out)
    }

    fn open_into_buffer(
        &self,
        enc: &MemoryEncryption,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
        buffer: BufferId,
    ) -> Result<u64, Error> {
        let (dst, buf_len) = self.buffer(buffer)?;
        let open = stream_open_into_buffer(enc, sealed, context, check, buffer, buf_len)?;
        let total = open.parsed.length;
        let chunk = open.parsed.chunk_size;
        let chunks = stream_chunks(total, chunk)?;
        let st = &self.dev.stream;
        let mut body = self.upload_u8(&sealed[open.header_len..])?;
        let key = self.upload_u8(open.key.bytes())?;
        let prefix = self.upload_u8(&open.parsed.nonce)?;
        let aad = self.upload_u8(&sealed[..open.header_len])?;
        let mut failures = st
            .alloc_zeros::<u32>(1)
            .map_err(|e| driver_error("allocating a counter", e))?;
        let aad_len = open.header_len as u64;
        let mut launch = st.launch_builder(&self.dev.stream_open);
        launch
            .arg(&key)
            .arg(&prefix)
            .arg(&aad)
            .arg(&aad_len)
            .arg(&mut body)
            .arg(&total)
            .arg(&chunk)
            .arg(&chunks)
            .arg(&mut failures);
        // SAFETY: the arguments match `rk_stream_open(const u8 *key, const u8 *prefix,
        // const u8 *aad, u64 aad_len, u8 *body, u64 total, u32 chunk_size, u32 chunks,
        // u32 *failures)`; the body's length was checked against the header on the host,
        // and the kernel checks that `chunks` is the chunk count of `total`.
        unsafe { launch.launch(chunk_blocks(chunks)) }.map_err(|e| driver_error("launch", e))?;
        let failed = st
            .clone_dtoh(&failures)
            .map_err(|e| driver_error("copy from the device", e))?;
        self.wipe_u8(key);
        if failed.first().copied().unwrap_or(1) != 0 {
            self.wipe_u8(body);
            self.dev.sync()?;
            return Err(Error::Tampered);
        }
        {
            // Every chunk verified: move the plaintexts from their slots to the target.
            let mut dst = dst.lock();
            for (start, n, slot) in chunk_spans(total, chunk, chunks) {
                st.memcpy_dtod(
                    &body.slice(slot..slot + n),
                    &mut dst.slice_mut(start..start + n),
                )
                .map_err(|e| driver_error("copy on the device", e))?;
            }
        }
        self.wipe_u8(body);
        self.dev.sync()?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_blocks_have_as_many_threads_as_take_part_in_a_chunk() {
        let define = format!("#define RK_SPLIT_MAX_THREADS {STREAM_THREADS}u");
        assert!(crate::sources::CIPHER_CUH.contains(&define), "{define}");
        assert_eq!(chunk_blocks(0).grid_dim, (1, 1, 1));
        assert_eq!(chunk_blocks(3).grid_dim, (3, 1, 1));
        assert_eq!(chunk_blocks(u32::MAX).grid_dim, (65_535, 1, 1));
    }

    #[test]
    fn chunk_spans_follow_the_stream_slot_layout() {
        assert_eq!(chunk_spans(0, 64, 1).count(), 0);
        assert_eq!(chunk_spans(10, 64, 1).collect::<Vec<_>>(), [(0, 10, 0)]);
        assert_eq!(
            chunk_spans(130, 64, 3).collect::<Vec<_>>(),
            [(0, 64, 0), (64, 64, 80), (128, 2, 160)]
        );
        assert_eq!(stream_chunks(0, 64).unwrap(), 1);
        assert_eq!(stream_chunks(129, 64).unwrap(), 3);
        assert!(stream_chunks(1, 0).is_err());
    }
}
