//! Chunked STREAM sealing of large buffers, chunks processed in parallel across cores.
//!
//! See the envelope module docs for the byte layout and the nonce of each chunk.

use crate::security::memory::Plaintext;
use rayon::prelude::*;

use super::algorithm::TAG_LEN;
use super::envelope::{Header, stream_chunk_count, stream_chunk_nonce};
use super::provider::AeadKey;
use crate::error::{Error, Result};

/// Streams with at least this many chunks are processed on the rayon pool.
const PARALLEL_MIN_CHUNKS: usize = 4;

fn aad_for(header_bytes: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header_bytes.len() + extra.len());
    aad.extend_from_slice(header_bytes);
    aad.extend_from_slice(extra);
    aad
}

/// Seals `data` as the body of a stream whose encoded header is already in `out`.
pub(crate) fn seal_body(
    key: &dyn AeadKey,
    header: &Header,
    extra_aad: &[u8],
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let chunk = header.chunk_size as usize;
    let count = stream_chunk_count(header.length, header.chunk_size).ok_or_else(|| {
        Error::Exhausted("STREAM chunks: the stream is too large to count".into())
    })?;
    let header_len = out.len();
    let aad = aad_for(out, extra_aad);
    // A fresh zeroed allocation (calloc: pages are mapped lazily), so that the pages of
    // a large output are first touched by the parallel chunk workers, not zero-filled
    // here on one thread.
    let mut sealed = vec![0u8; header_len + data.len() + count * TAG_LEN];
    sealed[..header_len].copy_from_slice(out);
    *out = sealed;
    let body = &mut out[header_len..];
    let seal_one = |(i, slot): (usize, &mut [u8])| -> Result<()> {
        let start = i * chunk;
        let end = (start + chunk).min(data.len());
        let plain = &data[start.min(end)..end];
        let (ct, tag_slot) = slot.split_at_mut(plain.len());
        ct.copy_from_slice(plain);
        let index = u32::try_from(i)
            .map_err(|_| Error::Exhausted("STREAM chunk indices (2^32 chunks)".into()))?;
        let nonce = stream_chunk_nonce(&header.nonce, index, i + 1 == count);
        let tag = key.seal_in_place(&nonce, &aad, ct)?;
        tag_slot.copy_from_slice(&tag);
        Ok(())
    };
    if count >= PARALLEL_MIN_CHUNKS {
        body.par_chunks_mut(chunk + TAG_LEN)
            .enumerate()
            .try_for_each(seal_one)
    } else {
        body.chunks_mut(chunk + TAG_LEN)
            .enumerate()
            .try_for_each(seal_one)
    }
}

/// Opens the body of a stream envelope (`bytes` is the whole envelope, already parsed
/// into `header`).
pub(crate) fn open_body(
    key: &dyn AeadKey,
    header: &Header,
    extra_aad: &[u8],
    bytes: &[u8],
) -> Result<Plaintext> {
    let chunk = header.chunk_size as usize;
    let count = stream_chunk_count(header.length, header.chunk_size)
        .ok_or_else(|| Error::MalformedEnvelope("stream too large".into()))?;
    let header_len = header.encoded_len();
    let aad = aad_for(&bytes[..header_len], extra_aad);
    let body = &bytes[header_len..];
    let total = usize::try_from(header.length)
        .map_err(|_| Error::MalformedEnvelope("stream too large".into()))?;
    let mut out = Plaintext::new(vec![0u8; total]);
    let open_one = |(i, (slot, plain)): (usize, (&[u8], &mut [u8]))| -> Result<()> {
        let (ct, tag) = slot.split_at(plain.len());
        let tag: &[u8; TAG_LEN] = tag
            .try_into()
            .map_err(|_| Error::MalformedEnvelope("bad chunk length".into()))?;
        plain.copy_from_slice(ct);
        let index =
            u32::try_from(i).map_err(|_| Error::MalformedEnvelope("too many chunks".into()))?;
        let nonce = stream_chunk_nonce(&header.nonce, index, i + 1 == count);
        key.open_in_place(&nonce, &aad, plain, tag)
    };
    if total == 0 {
        // One empty, final chunk: just its tag.
        let mut empty = [0u8; 0];
        return open_one((0, (body, &mut empty))).map(|()| out);
    }
    let result = if count >= PARALLEL_MIN_CHUNKS {
        body.par_chunks(chunk + TAG_LEN)
            .zip(out.par_chunks_mut(chunk))
            .enumerate()
            .try_for_each(open_one)
    } else {
        body.chunks(chunk + TAG_LEN)
            .zip(out.chunks_mut(chunk))
            .enumerate()
            .try_for_each(open_one)
    };
    result.map(|()| out)
}
