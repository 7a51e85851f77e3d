//! The sealed envelope: one versioned byte format for every sealed region.
//!
//! Every field before the ciphertext is authenticated as associated data, so a sealed
//! block moved to another kernel or buffer (context), replayed from an older sequence,
//! or relabelled with another algorithm, kind or key epoch fails to open. Parsing
//! untrusted bytes never panics: every length is checked before it is used.
//!
//! Single-shot form (control blocks, messages; `kind = 1`):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 4  | magic `"RKSE"` |
//! | 4  | 1  | version (2; version 1 is refused with [`Error::EnvelopeVersion`]) |
//! | 5  | 1  | algorithm id (1 AES-256-GCM, 2 AES-128-GCM, 3 ChaCha20-Poly1305, 4 XChaCha20-Poly1305) |
//! | 6  | 1  | kind (1 single-shot) |
//! | 7  | 1  | nonce length N (12 or 24) |
//! | 8  | 4  | key epoch (u32 LE) |
//! | 12 | 16 | context id: 12 bytes naming runtime instance + kernel + region, then the kernel's launch incarnation (u32 LE) |
//! | 28 | 8  | sequence number (u64 LE) |
//! | 36 | 4  | plaintext length L (u32 LE) |
//! | 40 | N  | nonce |
//! | 40+N | L | ciphertext |
//! | 40+N+L | 16 | tag |
//!
//! Chunked STREAM form (large buffers; `kind = 2`): bytes 0..36 as above (kind 2, N the
//! full nonce length), then chunk size C (u32 LE) at 36, total plaintext length T (u64
//! LE) at 40, the nonce prefix (N − 5 bytes) at 48, then ⌈T/C⌉ chunks (one empty chunk
//! when T = 0), each `ciphertext || tag`. Chunk `i`'s nonce is
//! `prefix || i (u32 BE) || last (1 byte: 1 for the final chunk, else 0)`, and every
//! chunk authenticates the whole stream header, so truncation, reordering, swapping
//! chunks between streams or dropping the last chunk fail to open.

use sha2::{Digest, Sha256};

use super::algorithm::{Algorithm, TAG_LEN};
use crate::error::{Error, Result};

/// Envelope magic.
pub const MAGIC: [u8; 4] = *b"RKSE";
/// Envelope format version. Version 2 binds the runtime instance and the kernel's
/// launch incarnation into the context id ([`ContextId::bound`]); version 1 (kernel +
/// region only, so a block from an earlier launch or another runtime opened) is refused.
pub const VERSION: u8 = 2;
/// Bytes before the nonce in the single-shot form.
pub const SINGLE_FIXED: usize = 40;
/// Bytes before the nonce prefix in the stream form.
pub const STREAM_FIXED: usize = 48;
/// Bytes of the stream nonce that are not prefix: chunk index (4) and last flag (1).
pub const STREAM_NONCE_SUFFIX: usize = 5;

/// The envelope kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeKind {
    /// One AEAD record.
    Single = 1,
    /// A chunked STREAM.
    Stream = 2,
}

/// Which side sealed: separates the host's and the device's nonce spaces under one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sealed on the host.
    Host = 0,
    /// Sealed by a GPU kernel.
    Device = 1,
}

/// The random 128-bit identity of one runtime instance, chosen when the runtime is
/// built; bound into every context the runtime seals under, so that two runtimes (even
/// sharing one [`MemoryEncryption`](super::MemoryEncryption)) never open each other's
/// regions.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstanceId(pub [u8; 16]);

impl InstanceId {
    /// A fresh random instance id (from the operating system's generator).
    pub fn random() -> Result<Self> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(Error::Randomness)?;
        Ok(InstanceId(id))
    }

    /// The id as 32 lowercase hex digits (as shown in audit records and reports).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InstanceId({})", self.to_hex())
    }
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Names a sealed region: which runtime instance, which kernel, which region, and which
/// launch (incarnation) of the kernel. The first 12 bytes are SHA-256 over instance,
/// kernel and region (so ids of any length fit the fixed header); the last 4 are the
/// incarnation, little-endian, so that a block from an earlier launch of the same
/// kernel is told apart ([`Error::StaleIncarnation`]) from one of another region
/// ([`Error::WrongContext`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContextId(pub [u8; 16]);

/// Bytes of a [`ContextId`] that name instance, kernel and region.
const CONTEXT_NAME_LEN: usize = 12;

impl ContextId {
    /// The context of region `region` (e.g. `"control"`, `"queue"`) of kernel `kernel`
    /// outside any runtime (instance all zero, incarnation 0): for data sealed directly
    /// with [`MemoryEncryption`](super::MemoryEncryption).
    pub fn new(kernel: &str, region: &str) -> Self {
        Self::bound(&InstanceId([0; 16]), kernel, 0, region)
    }

    /// The context of region `region` of launch `incarnation` of kernel `kernel` in
    /// runtime `instance`: what a runtime seals its regions under.
    pub fn bound(instance: &InstanceId, kernel: &str, incarnation: u32, region: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"ringkernel/context/v2");
        h.update(instance.0);
        h.update((kernel.len() as u64).to_le_bytes());
        h.update(kernel.as_bytes());
        h.update((region.len() as u64).to_le_bytes());
        h.update(region.as_bytes());
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id[..CONTEXT_NAME_LEN].copy_from_slice(&digest[..CONTEXT_NAME_LEN]);
        id[CONTEXT_NAME_LEN..].copy_from_slice(&incarnation.to_le_bytes());
        ContextId(id)
    }

    /// The launch incarnation this context names.
    pub fn incarnation(&self) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[CONTEXT_NAME_LEN..]);
        u32::from_le_bytes(b)
    }

    /// Whether `other` names the same instance, kernel and region (any incarnation).
    pub fn same_region(&self, other: &ContextId) -> bool {
        self.0[..CONTEXT_NAME_LEN] == other.0[..CONTEXT_NAME_LEN]
    }

    /// The context of data sealed with `MemoryEncryption::encrypt` outside any kernel.
    pub fn standalone() -> Self {
        Self::new("", "standalone")
    }
}

/// The parsed header of an envelope (either form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Algorithm the payload was sealed with.
    pub algorithm: Algorithm,
    /// Single-shot or stream.
    pub kind: EnvelopeKind,
    /// Key epoch.
    pub epoch: u32,
    /// Kernel + buffer.
    pub context: ContextId,
    /// Sequence number of this sealing of the region.
    pub sequence: u64,
    /// Plaintext length (single: L; stream: T).
    pub length: u64,
    /// Stream chunk size (0 for single-shot).
    pub chunk_size: u32,
    /// Single: the nonce; stream: the nonce prefix.
    pub nonce: Vec<u8>,
}

impl Header {
    /// Bytes of the encoded header (all of it is associated data).
    pub fn encoded_len(&self) -> usize {
        match self.kind {
            EnvelopeKind::Single => SINGLE_FIXED + self.nonce.len(),
            EnvelopeKind::Stream => STREAM_FIXED + self.nonce.len(),
        }
    }

    /// Writes the header to `out` (cleared first).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.algorithm.id());
        out.push(self.kind as u8);
        out.push(self.algorithm.nonce_len() as u8);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.context.0);
        out.extend_from_slice(&self.sequence.to_le_bytes());
        match self.kind {
            EnvelopeKind::Single => {
                out.extend_from_slice(&(self.length as u32).to_le_bytes());
            }
            EnvelopeKind::Stream => {
                out.extend_from_slice(&self.chunk_size.to_le_bytes());
                out.extend_from_slice(&self.length.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.nonce);
    }

    /// Total envelope length this header implies, or `None` on overflow.
    pub fn total_len(&self) -> Option<usize> {
        total_len(self.kind, self.encoded_len(), self.length, self.chunk_size)
    }

    /// Parses and checks the header at the start of `bytes`; checks that `bytes` has
    /// exactly the length the header implies.
    pub fn parse(bytes: &[u8]) -> Result<Header> {
        HeaderRef::parse(bytes).map(|h| h.to_owned())
    }
}

/// A parsed header borrowing its nonce from the envelope bytes: what every open uses,
/// so that parsing allocates nothing. [`Header::parse`] is this plus an owned nonce.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeaderRef<'a> {
    pub(crate) algorithm: Algorithm,
    pub(crate) kind: EnvelopeKind,
    pub(crate) epoch: u32,
    pub(crate) context: ContextId,
    pub(crate) sequence: u64,
    pub(crate) length: u64,
    pub(crate) chunk_size: u32,
    pub(crate) nonce: &'a [u8],
}

impl HeaderRef<'_> {
    /// Bytes of the encoded header (all of it is associated data).
    pub(crate) fn encoded_len(&self) -> usize {
        match self.kind {
            EnvelopeKind::Single => SINGLE_FIXED + self.nonce.len(),
            EnvelopeKind::Stream => STREAM_FIXED + self.nonce.len(),
        }
    }

    /// The owned form.
    pub(crate) fn to_owned(self) -> Header {
        Header {
            algorithm: self.algorithm,
            kind: self.kind,
            epoch: self.epoch,
            context: self.context,
            sequence: self.sequence,
            length: self.length,
            chunk_size: self.chunk_size,
            nonce: self.nonce.to_vec(),
        }
    }
}

impl<'a> HeaderRef<'a> {
    /// Parses and checks the header at the start of `bytes`; checks that `bytes` has
    /// exactly the length the header implies. Allocates only for the error message.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<HeaderRef<'a>> {
        let bad = |why: &str| Err(Error::MalformedEnvelope(why.to_owned()));
        if bytes.len() < 36 {
            return bad("shorter than the fixed header");
        }
        if bytes[0..4] != MAGIC {
            return bad("bad magic");
        }
        if bytes[4] != VERSION {
            return Err(Error::EnvelopeVersion {
                found: bytes[4],
                supported: VERSION,
            });
        }
        let Some(algorithm) = Algorithm::from_id(bytes[5]) else {
            return bad("unknown algorithm id");
        };
        let kind = match bytes[6] {
            1 => EnvelopeKind::Single,
            2 => EnvelopeKind::Stream,
            _ => return bad("unknown envelope kind"),
        };
        if usize::from(bytes[7]) != algorithm.nonce_len() {
            return bad("nonce length does not match the algorithm");
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let epoch = u32_at(8);
        let mut context = [0u8; 16];
        context.copy_from_slice(&bytes[12..28]);
        let sequence = u64_at(28);
        let (length, chunk_size, nonce_start, nonce_len) = match kind {
            EnvelopeKind::Single => {
                if bytes.len() < SINGLE_FIXED {
                    return bad("truncated header");
                }
                (
                    u64::from(u32_at(36)),
                    0,
                    SINGLE_FIXED,
                    algorithm.nonce_len(),
                )
            }
            EnvelopeKind::Stream => {
                if bytes.len() < STREAM_FIXED {
                    return bad("truncated header");
                }
                let chunk = u32_at(36);
                if chunk == 0 {
                    return bad("zero chunk size");
                }
                (
                    u64_at(40),
                    chunk,
                    STREAM_FIXED,
                    algorithm.nonce_len() - STREAM_NONCE_SUFFIX,
                )
            }
        };
        let Some(nonce) = bytes.get(nonce_start..nonce_start + nonce_len) else {
            return bad("truncated nonce");
        };
        let header = HeaderRef {
            algorithm,
            kind,
            epoch,
            context: ContextId(context),
            sequence,
            length,
            chunk_size,
            nonce,
        };
        match total_len(kind, header.encoded_len(), length, chunk_size) {
            Some(n) if n == bytes.len() => Ok(header),
            Some(_) => bad("length does not match the header (truncated or extended)"),
            None => bad("length overflow"),
        }
    }
}

/// Total envelope length of a header of `header_len` bytes, or `None` on overflow.
fn total_len(kind: EnvelopeKind, header_len: usize, length: u64, chunk_size: u32) -> Option<usize> {
    let len = usize::try_from(length).ok()?;
    match kind {
        EnvelopeKind::Single => header_len.checked_add(len)?.checked_add(TAG_LEN),
        EnvelopeKind::Stream => {
            let chunks = stream_chunk_count(length, chunk_size)?;
            header_len
                .checked_add(len)?
                .checked_add(chunks.checked_mul(TAG_LEN)?)
        }
    }
}

/// Writes the single-shot header of a record to `out` (exactly
/// `SINGLE_FIXED + nonce.len()` bytes, the same bytes as [`Header::encode_into`]).
pub(crate) fn encode_single(
    out: &mut [u8],
    algorithm: Algorithm,
    epoch: u32,
    context: &ContextId,
    sequence: u64,
    length: u32,
    nonce: &[u8],
) {
    out[0..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = algorithm.id();
    out[6] = EnvelopeKind::Single as u8;
    out[7] = algorithm.nonce_len() as u8;
    out[8..12].copy_from_slice(&epoch.to_le_bytes());
    out[12..28].copy_from_slice(&context.0);
    out[28..36].copy_from_slice(&sequence.to_le_bytes());
    out[36..40].copy_from_slice(&length.to_le_bytes());
    out[SINGLE_FIXED..SINGLE_FIXED + nonce.len()].copy_from_slice(nonce);
}

/// Number of chunks of a stream of `len` bytes in chunks of `chunk` (at least one).
pub fn stream_chunk_count(len: u64, chunk: u32) -> Option<usize> {
    if chunk == 0 {
        return None;
    }
    let n = len.div_ceil(u64::from(chunk)).max(1);
    usize::try_from(n).ok()
}

/// A 96-bit counter nonce for a single-shot record: direction in byte 0 (bit 7
/// clear: single-shot), three zero bytes, the counter big-endian.
pub fn single_nonce_96(dir: Direction, counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[0] = dir as u8;
    n[4..12].copy_from_slice(&counter.to_be_bytes());
    n
}

/// A 56-bit STREAM nonce prefix for 96-bit-nonce AEADs: direction with bit 7 set
/// (stream) in byte 0, then the low 48 bits of the counter, big-endian. Shares the
/// key's counter with single-shot nonces, and bit 7 keeps the two forms apart.
pub fn stream_prefix_96(dir: Direction, counter: u64) -> [u8; 7] {
    let mut p = [0u8; 7];
    p[0] = 0x80 | dir as u8;
    p[1..7].copy_from_slice(&counter.to_be_bytes()[2..8]);
    p
}

/// The nonce of chunk `index` of a stream with `prefix`.
pub fn stream_chunk_nonce(prefix: &[u8], index: u32, last: bool) -> Vec<u8> {
    let mut n = Vec::with_capacity(prefix.len() + STREAM_NONCE_SUFFIX);
    n.extend_from_slice(prefix);
    n.extend_from_slice(&index.to_be_bytes());
    n.push(u8::from(last));
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: EnvelopeKind, alg: Algorithm, length: u64) -> Header {
        let nonce_len = match kind {
            EnvelopeKind::Single => alg.nonce_len(),
            EnvelopeKind::Stream => alg.nonce_len() - STREAM_NONCE_SUFFIX,
        };
        Header {
            algorithm: alg,
            kind,
            epoch: 7,
            context: ContextId::new("k", "control"),
            sequence: 42,
            length,
            chunk_size: if kind == EnvelopeKind::Stream { 64 } else { 0 },
            nonce: vec![0xAA; nonce_len],
        }
    }

    #[test]
    fn header_round_trip_both_forms() {
        for alg in Algorithm::ALL {
            for (kind, len) in [(EnvelopeKind::Single, 128), (EnvelopeKind::Stream, 1000)] {
                let h = header(kind, alg, len);
                let mut bytes = Vec::new();
                h.encode_into(&mut bytes);
                assert_eq!(bytes.len(), h.encoded_len());
                bytes.resize(h.total_len().unwrap(), 0);
                assert_eq!(Header::parse(&bytes).unwrap(), h);
                // Any truncation or extension is refused.
                assert!(Header::parse(&bytes[..bytes.len() - 1]).is_err());
                bytes.push(0);
                assert!(Header::parse(&bytes).is_err());
            }
        }
    }

    #[test]
    fn layout_offsets() {
        let h = header(EnvelopeKind::Single, Algorithm::Aes256Gcm, 128);
        let mut b = Vec::new();
        h.encode_into(&mut b);
        assert_eq!(&b[0..4], b"RKSE");
        assert_eq!(b[4], 2);
        assert_eq!(b[5], 1);
        assert_eq!(b[6], 1);
        assert_eq!(b[7], 12);
        assert_eq!(&b[8..12], &7u32.to_le_bytes());
        assert_eq!(&b[28..36], &42u64.to_le_bytes());
        assert_eq!(&b[36..40], &128u32.to_le_bytes());
        assert_eq!(b.len(), 52);
    }

    #[test]
    fn nonces_never_overlap_between_forms_and_directions() {
        let s = single_nonce_96(Direction::Host, 5);
        let d = single_nonce_96(Direction::Device, 5);
        let p = stream_chunk_nonce(&stream_prefix_96(Direction::Host, 5), 0, true);
        assert_ne!(s.to_vec(), d.to_vec());
        assert_ne!(s.to_vec(), p);
        assert_eq!(p.len(), 12);
        assert_eq!(s[0] & 0x80, 0);
        assert_eq!(p[0] & 0x80, 0x80);
    }

    #[test]
    fn context_ids_separate_kernels_and_regions() {
        let a = ContextId::new("k1", "control");
        assert_eq!(a, ContextId::new("k1", "control"));
        assert_ne!(a, ContextId::new("k2", "control"));
        assert_ne!(a, ContextId::new("k1", "queue"));
        // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(ContextId::new("ab", "c"), ContextId::new("a", "bc"));
    }
}
