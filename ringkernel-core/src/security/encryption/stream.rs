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

/// Makes `out` exactly `len` bytes long without writing bytes that are about to be
/// overwritten: a vector already that long (or longer) is cut, never filled; a new
/// allocation is zeroed lazily by the OS (calloc), so that the pages of a large output
/// are first touched by the parallel chunk workers rather than on one thread here.
pub(crate) fn size_output(out: &mut Vec<u8>, len: usize) {
    if out.len() >= len {
        out.truncate(len);
    } else if out.capacity() >= len {
        out.resize(len, 0);
    } else {
        *out = vec![0u8; len];
    }
}

/// Seals `data` as the body of a stream: `envelope` is the whole envelope, its
/// encoded header already at the front and exactly `header.total_len()` long.
pub(crate) fn seal_chunks(
    key: &dyn AeadKey,
    header: &Header,
    extra_aad: &[u8],
    data: &[u8],
    envelope: &mut [u8],
) -> Result<()> {
    let chunk = header.chunk_size as usize;
    let count = stream_chunk_count(header.length, header.chunk_size).ok_or_else(|| {
        Error::Exhausted("STREAM chunks: the stream is too large to count".into())
    })?;
    let header_len = header.encoded_len();
    let (head, body) = envelope.split_at_mut(header_len);
    let aad = aad_for(head, extra_aad);
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
/// into `header`) into `out`, exactly `header.length` bytes long. On an error `out`
/// may hold partly opened bytes: the caller wipes it.
fn open_chunks(
    key: &dyn AeadKey,
    header: &Header,
    extra_aad: &[u8],
    bytes: &[u8],
    out: &mut [u8],
) -> Result<()> {
    let chunk = header.chunk_size as usize;
    let count = stream_chunk_count(header.length, header.chunk_size)
        .ok_or_else(|| Error::MalformedEnvelope("stream too large".into()))?;
    let header_len = header.encoded_len();
    let aad = aad_for(&bytes[..header_len], extra_aad);
    let body = &bytes[header_len..];
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
    if out.is_empty() {
        // One empty, final chunk: just its tag.
        let mut empty = [0u8; 0];
        return open_one((0, (body, &mut empty)));
    }
    if count >= PARALLEL_MIN_CHUNKS {
        body.par_chunks(chunk + TAG_LEN)
            .zip(out.par_chunks_mut(chunk))
            .enumerate()
            .try_for_each(open_one)
    } else {
        body.chunks(chunk + TAG_LEN)
            .zip(out.chunks_mut(chunk))
            .enumerate()
            .try_for_each(open_one)
    }
}

/// Opens the body of a stream envelope into `out`, sized to the plaintext (see
/// [`size_output`]). On an error `out` may hold partly opened bytes: the caller wipes
/// it.
pub(crate) fn open_into(
    key: &dyn AeadKey,
    header: &Header,
    extra_aad: &[u8],
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let total = usize::try_from(header.length)
        .map_err(|_| Error::MalformedEnvelope("stream too large".into()))?;
    size_output(out, total);
    open_chunks(key, header, extra_aad, bytes, out)
}

/// Opens the body of a stream envelope into a fresh [`Plaintext`].
pub(crate) fn open_body(
    key: &dyn AeadKey,
    header: &Header,
    extra_aad: &[u8],
    bytes: &[u8],
) -> Result<Plaintext> {
    let mut out = Plaintext::new(Vec::new());
    // On an error `out` is dropped, which wipes it.
    open_into(key, header, extra_aad, bytes, out.as_vec_mut())?;
    Ok(out)
}
