//! Single-shot envelopes of regions: sealed and opened with nothing allocated on the
//! hot path.
//!
//! Three ways to hold the bytes, one envelope format:
//! - [`MemoryEncryption::seal_region`] / [`MemoryEncryption::open_region`]: a fresh
//!   vector per call (simplest);
//! - [`MemoryEncryption::seal_region_into`] / [`MemoryEncryption::open_region_into`]:
//!   the caller's vector, cleared and reused, so a loop of small records allocates
//!   nothing once the vector has grown;
//! - [`MemoryEncryption::seal_in_place`] / [`MemoryEncryption::open_in_place`]: the
//!   caller's buffer already laid out as the envelope (plaintext at
//!   [`MemoryEncryption::plaintext_offset`]), so a large record is encrypted where it
//!   lies and never copied.
//!
//! Nonces and associated data are built on the stack; the key is used under the
//! keyring's read lock rather than through a reference count (see `keyring.rs`).
//!
//! ```
//! use ringkernel_core::security::encryption::{ContextId, EncryptionConfig, MemoryEncryption, SequenceCheck};
//!
//! let enc = MemoryEncryption::new(EncryptionConfig::new())?;
//! let ctx = ContextId::new("kernel", "bulk");
//! let data = vec![7u8; 1 << 20];
//! // The caller's buffer, laid out as the envelope: the plaintext written at its offset.
//! let mut buf = vec![0u8; enc.sealed_len(data.len())];
//! let at = enc.plaintext_offset();
//! buf[at..at + data.len()].copy_from_slice(&data);
//! enc.seal_in_place(ctx, 1, &mut buf, b"")?;
//! let plain = enc.open_in_place(&mut buf, ctx, SequenceCheck::Exact(1), b"")?;
//! assert_eq!(plain, &data[..]);
//! plain.fill(0); // the plaintext is the caller's to wipe
//! # Ok::<(), ringkernel_core::Error>(())
//! ```

use super::algorithm::TAG_LEN;
use super::envelope::{self, Direction, EnvelopeKind, HeaderRef, SINGLE_FIXED};
use super::{ContextId, MemoryEncryption, SequenceCheck};
use crate::error::{Error, Result};
use crate::security::memory::Plaintext;

/// Longest nonce of any algorithm (XChaCha20-Poly1305).
const MAX_NONCE_LEN: usize = 24;

/// Associated data up to this many bytes is assembled on the stack.
pub(crate) const INLINE_AAD: usize = 512;

/// Bytes assembled on the stack, moving to the heap only past `N` bytes: associated
/// data (the envelope header followed by the caller's own), which the AEAD takes as
/// one slice.
pub(crate) struct AadBuf<const N: usize = INLINE_AAD> {
    inline: [u8; N],
    len: usize,
    heap: Option<Vec<u8>>,
}

impl<const N: usize> AadBuf<N> {
    /// An empty buffer.
    pub(crate) fn new() -> Self {
        AadBuf {
            inline: [0u8; N],
            len: 0,
            heap: None,
        }
    }

    /// Appends `bytes`.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        if let Some(heap) = &mut self.heap {
            heap.extend_from_slice(bytes);
            return;
        }
        let end = self.len + bytes.len();
        if end <= N {
            let dst = &mut self.inline[self.len..end];
            match <&[u8; 8]>::try_from(bytes) {
                // Length prefixes and sequence numbers: a fixed-size copy the compiler
                // inlines, rather than a call to `memcpy` for eight bytes.
                Ok(word) => dst.copy_from_slice(word),
                Err(_) => dst.copy_from_slice(bytes),
            }
            self.len = end;
        } else {
            let mut heap = Vec::with_capacity(end.max(2 * N));
            heap.extend_from_slice(&self.inline[..self.len]);
            heap.extend_from_slice(bytes);
            self.heap = Some(heap);
        }
    }

    /// The bytes appended so far.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match &self.heap {
            Some(heap) => heap,
            None => &self.inline[..self.len],
        }
    }
}

/// Associated data up to this many bytes is assembled in a buffer of this size (a
/// K2K route binding behind its header takes about 100), so that the usual case zeroes
/// 128 bytes of stack, not [`INLINE_AAD`].
const SHORT_AAD: usize = 128;

/// Runs `f` with `head` followed by every part of `extra` as one slice, assembled on
/// the stack unless long (and not at all when `extra` adds nothing).
fn with_joined<R>(head: &[u8], extra: &[&[u8]], f: impl FnOnce(&[u8]) -> R) -> R {
    let extra_len: usize = extra.iter().map(|part| part.len()).sum();
    if extra_len == 0 {
        return f(head);
    }
    if head.len() + extra_len <= SHORT_AAD {
        joined::<SHORT_AAD, R>(head, extra, f)
    } else {
        joined::<INLINE_AAD, R>(head, extra, f)
    }
}

/// [`with_joined`] through a buffer of `N` bytes on the stack.
fn joined<const N: usize, R>(head: &[u8], extra: &[&[u8]], f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = AadBuf::<N>::new();
    buf.extend(head);
    for part in extra {
        buf.extend(part);
    }
    f(buf.as_slice())
}

/// What an open needs from a checked single-shot header.
struct SingleHeader {
    header_len: usize,
    len: usize,
    epoch: u32,
}

impl MemoryEncryption {
    /// Bytes before the plaintext in a single-shot envelope (header and nonce): where
    /// a buffer for [`MemoryEncryption::seal_in_place`] holds its plaintext.
    pub fn plaintext_offset(&self) -> usize {
        SINGLE_FIXED + self.inner.config.algorithm.nonce_len()
    }

    /// Length of the single-shot envelope of a `len`-byte plaintext.
    pub fn sealed_len(&self, len: usize) -> usize {
        self.plaintext_offset() + len + TAG_LEN
    }

    /// Seals `plaintext` as a single-shot envelope for region `context` at `sequence`,
    /// binding `aad` (not stored) as well as the header.
    pub fn seal_region(
        &self,
        context: ContextId,
        sequence: u64,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.seal_region_into(context, sequence, plaintext, aad, &mut out)?;
        Ok(out)
    }

    /// [`MemoryEncryption::seal_region`] into `out`: cleared, then holding exactly the
    /// envelope. Its capacity is reused, so sealing in a loop with one vector allocates
    /// nothing once it has grown. On an error `out` is zeroed and left empty.
    pub fn seal_region_into(
        &self,
        context: ContextId,
        sequence: u64,
        plaintext: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.seal_region_into_parts(context, sequence, plaintext, &[aad], out)
    }

    /// [`MemoryEncryption::seal_region_into`] with the caller's associated data given
    /// as parts, bound as their concatenation: the runtime's K2K binding (route and
    /// sequence) is assembled once, straight behind the header, with no buffer of its
    /// own.
    pub(crate) fn seal_region_into_parts(
        &self,
        context: ContextId,
        sequence: u64,
        plaintext: &[u8],
        aad: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        single_len(plaintext.len())?;
        let at = self.plaintext_offset();
        let total = self.sealed_len(plaintext.len());
        out.clear();
        out.reserve(total);
        out.resize(at, 0);
        out.extend_from_slice(plaintext);
        out.resize(total, 0);
        let r = self.seal_in_place_parts(context, sequence, out, aad);
        if r.is_err() {
            // The buffer still holds the plaintext copy.
            out.fill(0);
            out.clear();
        }
        r
    }

    /// Seals in the caller's buffer: `envelope` is laid out as the single-shot envelope
    /// it becomes, [`MemoryEncryption::sealed_len`]`(len)` bytes with the `len`-byte
    /// plaintext at [`MemoryEncryption::plaintext_offset`]. The header, the nonce and the
    /// tag are written around the plaintext, which is encrypted where it lies: nothing
    /// is copied or allocated. The bytes before the plaintext and the last 16 are
    /// overwritten whatever they held.
    ///
    /// The envelope is exactly what [`MemoryEncryption::seal_region`] makes of the same
    /// plaintext, and opens with any of the open functions.
    pub fn seal_in_place(
        &self,
        context: ContextId,
        sequence: u64,
        envelope: &mut [u8],
        aad: &[u8],
    ) -> Result<()> {
        self.seal_in_place_parts(context, sequence, envelope, &[aad])
    }

    fn seal_in_place_parts(
        &self,
        context: ContextId,
        sequence: u64,
        envelope: &mut [u8],
        aad: &[&[u8]],
    ) -> Result<()> {
        let at = self.plaintext_offset();
        let len = envelope.len().checked_sub(at + TAG_LEN).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "a buffer to seal in place needs at least {} bytes (header, nonce and tag), got {}",
                at + TAG_LEN,
                envelope.len()
            ))
        })?;
        let length = single_len(len)?;
        let ring = self.ring()?;
        let max = self.inner.config.max_bytes_per_key;
        if len as u64 > max {
            return Err(Error::TooLarge {
                what: "record (max_bytes_per_key)",
                len: len as u64,
                max,
            });
        }
        let alg = self.inner.config.algorithm;
        let nonce_len = alg.nonce_len();
        let mut nonce = [0u8; MAX_NONCE_LEN];
        if alg.random_nonces() {
            getrandom::fill(&mut nonce[..nonce_len]).map_err(Error::Randomness)?;
        }
        let (head, body) = envelope.split_at_mut(at);
        let (plain, tag_slot) = body.split_at_mut(len);
        let ((), rotated) = ring.with_reserved(len, |key, counter| {
            if !alg.random_nonces() {
                nonce[..12].copy_from_slice(&envelope::single_nonce_96(Direction::Host, counter));
            }
            let nonce = &nonce[..nonce_len];
            envelope::encode_single(head, alg, key.epoch, &context, sequence, length, nonce);
            let tag = with_joined(head, aad, |full_aad| {
                key.aead().seal_in_place(nonce, full_aad, plain)
            })?;
            tag_slot.copy_from_slice(&tag);
            Ok(())
        })?;
        self.note_rotation(rotated);
        self.inner.counters.sealed(len);
        Ok(())
    }

    /// Opens a single-shot envelope of region `context`, checking its sequence.
    pub fn open_region(
        &self,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
        aad: &[u8],
    ) -> Result<Plaintext> {
        let mut out = Plaintext::new(Vec::new());
        self.open_into_vec(sealed, context, check, aad, out.as_vec_mut())?;
        Ok(out)
    }

    /// [`MemoryEncryption::open_region`] into `out`: cleared, then holding exactly the
    /// plaintext. Its capacity is reused, so opening in a loop with one vector allocates
    /// nothing once it has grown. On an error `out` is zeroed and left empty.
    ///
    /// `out` then holds plaintext in ordinary memory: wipe it when done (or open into a
    /// [`Plaintext`] with [`MemoryEncryption::open_region`], which wipes on drop).
    pub fn open_region_into(
        &self,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.open_into_vec(sealed, context, check, aad, out)
    }

    /// Opens the single-shot envelope in `envelope` where it lies and returns the
    /// plaintext, a sub-slice of `envelope` at [`MemoryEncryption::plaintext_offset`].
    /// Nothing is copied or allocated.
    ///
    /// Every check of [`MemoryEncryption::open_region`] applies. A header refused
    /// (wrong context, replay, unknown or retired key, malformed) leaves `envelope`
    /// untouched; when the tag does not verify (tampering, wrong key) the body is
    /// zeroed, so nothing decrypted stays in the buffer. The plaintext is the caller's
    /// to wipe after use.
    pub fn open_in_place<'a>(
        &self,
        envelope: &'a mut [u8],
        context: ContextId,
        check: SequenceCheck,
        aad: &[u8],
    ) -> Result<&'a mut [u8]> {
        self.open_in_place_parts(envelope, context, check, &[aad])
    }

    /// [`MemoryEncryption::open_in_place`] with the associated data given as parts
    /// (see [`MemoryEncryption::seal_region_into_parts`]).
    pub(crate) fn open_in_place_parts<'a>(
        &self,
        envelope: &'a mut [u8],
        context: ContextId,
        check: SequenceCheck,
        aad: &[&[u8]],
    ) -> Result<&'a mut [u8]> {
        let r = self.open_in_place_inner(envelope, context, check, aad);
        match &r {
            Ok(p) => self.inner.counters.opened(p.len()),
            Err(_) => self.inner.counters.failed(),
        }
        r
    }

    fn open_in_place_inner<'a>(
        &self,
        envelope: &'a mut [u8],
        context: ContextId,
        check: SequenceCheck,
        aad: &[&[u8]],
    ) -> Result<&'a mut [u8]> {
        let h = self.single_header(envelope, context, check)?;
        let (head, body) = envelope.split_at_mut(h.header_len);
        let (ct, tag) = body.split_at_mut(h.len);
        let tag: &[u8; TAG_LEN] = (&*tag)
            .try_into()
            .map_err(|_| Error::MalformedEnvelope("bad tag length".into()))?;
        self.open_single(head, h.epoch, aad, ct, tag)?;
        Ok(ct)
    }

    /// Opens `sealed` (single-shot) into `out`, counting the outcome.
    pub(super) fn open_into_vec(
        &self,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let r = self.open_into_vec_inner(sealed, context, check, aad, out);
        match &r {
            Ok(()) => self.inner.counters.opened(out.len()),
            Err(_) => self.inner.counters.failed(),
        }
        r
    }

    pub(super) fn open_into_vec_inner(
        &self,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        // Wipe what `out` held before: it is reused for plaintext.
        out.fill(0);
        out.clear();
        let h = self.single_header(sealed, context, check)?;
        let (head, body) = sealed.split_at(h.header_len);
        let (ct, tag) = body.split_at(h.len);
        let tag: &[u8; TAG_LEN] = tag
            .try_into()
            .map_err(|_| Error::MalformedEnvelope("bad tag length".into()))?;
        out.extend_from_slice(ct);
        let r = self.open_single(head, h.epoch, &[aad], out, tag);
        if r.is_err() {
            out.clear();
        }
        r
    }

    /// Parses `sealed` as a single-shot envelope and checks its header as every open
    /// does. Allocates nothing unless it fails.
    fn single_header(
        &self,
        sealed: &[u8],
        context: ContextId,
        check: SequenceCheck,
    ) -> Result<SingleHeader> {
        self.ring()?;
        let h = HeaderRef::parse(sealed)?;
        self.check_header(&h, context, check, Some(EnvelopeKind::Single))?;
        let len = usize::try_from(h.length)
            .map_err(|_| Error::MalformedEnvelope("record too large".into()))?;
        Ok(SingleHeader {
            header_len: h.encoded_len(),
            len,
            epoch: h.epoch,
        })
    }

    /// Authenticates and decrypts `ct` in place under `epoch`'s key: `head` is the
    /// envelope's header (associated data, nonce at its end), `aad` the caller's. When
    /// the tag does not verify, `ct` is zeroed before the error returns.
    fn open_single(
        &self,
        head: &[u8],
        epoch: u32,
        aad: &[&[u8]],
        ct: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()> {
        let nonce = &head[SINGLE_FIXED..];
        let len = ct.len();
        self.ring()?.with_key(epoch, len, |key| {
            let r = with_joined(head, aad, |full_aad| {
                key.aead().open_in_place(nonce, full_aad, ct, tag)
            });
            if r.is_err() {
                // Whatever the AEAD wrote before refusing must not stay behind. The
                // bytes are the caller's (or returned to it), so the writes are kept.
                ct.fill(0);
            }
            r
        })
    }
}

/// A single-shot record's length as its header holds it (at most 4 GiB).
fn single_len(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::TooLarge {
        what: "single-shot record",
        len: len as u64,
        max: u64::from(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use super::*;
    use crate::security::encryption::EncryptionConfig;

    /// Associated data given as parts binds their concatenation, at every length: on
    /// the short stack buffer, the long one, and past it on the heap.
    #[test]
    fn associated_data_in_parts_binds_their_concatenation_at_every_length() {
        let enc = MemoryEncryption::new(EncryptionConfig::new()).unwrap();
        let ctx = ContextId::new("k", "aad");
        let head = enc.plaintext_offset();
        for len in [
            1,
            40,
            SHORT_AAD - head,
            SHORT_AAD - head + 1,
            300,
            INLINE_AAD - head,
            INLINE_AAD - head + 1,
            3000,
        ] {
            let aad: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let (a, b) = aad.split_at(len / 3);
            let (b, c) = b.split_at(b.len() / 2);
            let mut sealed = Vec::new();
            enc.seal_region_into_parts(ctx, 1, b"payload", &[a, b, c], &mut sealed)
                .unwrap();
            let plain = enc
                .open_region(&sealed, ctx, SequenceCheck::Exact(1), &aad)
                .unwrap();
            assert_eq!(&plain[..], b"payload", "aad of {len} bytes");
            let mut other = aad.clone();
            other[len - 1] ^= 1;
            assert!(
                matches!(
                    enc.open_region(&sealed, ctx, SequenceCheck::Exact(1), &other),
                    Err(Error::Tampered)
                ),
                "a changed last byte of {len} bytes of aad must be refused"
            );
        }
    }
}
