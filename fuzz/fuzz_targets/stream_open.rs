//! STREAM chunk framing: genuine chunked envelopes (1 KiB chunks, so a few KiB of
//! input make several chunks) changed by fuzzer-chosen edits that a storage or device
//! attacker can make: swap, drop, duplicate or reorder chunks, cut or extend the
//! stream, flip a byte, relabel the header's length or chunk size. And arbitrary bytes
//! that claim to be a stream.
//!
//! Properties: nothing panics; the genuine stream opens to exactly its data; every
//! edited stream that differs from the genuine one fails to open.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ringkernel_core::security::encryption::{
    Algorithm, ContextId, EncryptionConfig, Header, MemoryEncryption, SequenceCheck, TAG_LEN,
};

const CHUNK: u32 = 1024;

fn keys() -> &'static Vec<MemoryEncryption> {
    static KEYS: OnceLock<Vec<MemoryEncryption>> = OnceLock::new();
    KEYS.get_or_init(|| {
        Algorithm::ALL
            .iter()
            .map(|a| {
                MemoryEncryption::new(EncryptionConfig::new().algorithm(*a).chunk_size(CHUNK))
                    .expect("key")
            })
            .collect()
    })
}

#[derive(Arbitrary, Debug)]
enum Edit {
    SwapChunks(u8, u8),
    DropChunk(u8),
    DuplicateChunk(u8),
    Flip {
        at: u16,
        xor: u8,
    },
    Cut {
        len: u16,
    },
    Append(Vec<u8>),
    /// Rewrite the total length field (bytes 40..48).
    SetLength(u64),
    /// Rewrite the chunk size field (bytes 36..40).
    SetChunk(u32),
    /// Splice in a chunk of another genuine stream of the same key and context.
    Foreign(u8),
}

fn split(bytes: &[u8], header_len: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let head = bytes[..header_len].to_vec();
    let chunks = bytes[header_len..]
        .chunks(CHUNK as usize + TAG_LEN)
        .map(<[u8]>::to_vec)
        .collect();
    (head, chunks)
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let e = &keys()[usize::from(u8::arbitrary(u)?) % Algorithm::ALL.len()];
    let edits: Vec<Edit> = u
        .arbitrary_iter()?
        .take(4)
        .collect::<arbitrary::Result<_>>()?;
    let len = usize::from(u16::arbitrary(u)?) % (8 * CHUNK as usize);
    let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let ctx = ContextId::new("fuzz", "buffer");
    let good = e.seal_stream(ctx, 7, &data, b"").expect("seal");
    let opened = e
        .open_stream(&good, ctx, SequenceCheck::Exact(7), b"")
        .expect("a genuine stream opens");
    assert_eq!(&opened[..], &data[..]);
    // The caller-buffer forms, into vectors holding something else: the same stream.
    let mut sealed_into = vec![0xEE; usize::from(u8::arbitrary(u)?) * 97];
    e.seal_stream_into(ctx, 7, &data, b"", &mut sealed_into)
        .expect("seal into");
    let mut opened_into = vec![0xDD; usize::from(u8::arbitrary(u)?) * 89];
    e.open_stream_into(
        &sealed_into,
        ctx,
        SequenceCheck::Exact(7),
        b"",
        &mut opened_into,
    )
    .expect("a genuine stream opens into a vector");
    assert_eq!(opened_into, data);
    let header_len = Header::parse(&good).expect("parses").encoded_len();
    let other = e.seal_stream(ctx, 7, &data, b"").expect("seal");
    let (mut head, mut chunks) = split(&good, header_len);
    let (_, foreign) = split(&other, header_len);
    let mut tail_edits: Vec<Edit> = Vec::new();
    let edits_shown = format!("{edits:?}");
    for edit in edits {
        let n = chunks.len();
        match edit {
            Edit::SwapChunks(a, b) if n > 0 => chunks.swap(usize::from(a) % n, usize::from(b) % n),
            Edit::DropChunk(a) if n > 0 => {
                chunks.remove(usize::from(a) % n);
            }
            Edit::DuplicateChunk(a) if n > 0 => {
                let c = chunks[usize::from(a) % n].clone();
                chunks.insert(usize::from(a) % n, c);
            }
            Edit::SetLength(l) => head[40..48].copy_from_slice(&l.to_le_bytes()),
            Edit::SetChunk(c) => head[36..40].copy_from_slice(&c.to_le_bytes()),
            Edit::Foreign(a) if n > 0 && !foreign.is_empty() => {
                let i = usize::from(a) % n.min(foreign.len());
                chunks[i] = foreign[i].clone();
            }
            e @ (Edit::Flip { .. } | Edit::Cut { .. } | Edit::Append(_)) => tail_edits.push(e),
            _ => {}
        }
    }
    let mut bad = head;
    for c in &chunks {
        bad.extend_from_slice(c);
    }
    for edit in tail_edits {
        match edit {
            Edit::Flip { at, xor } if !bad.is_empty() => {
                let i = usize::from(at) % bad.len();
                bad[i] ^= xor;
            }
            Edit::Cut { len } => bad.truncate(usize::from(len)),
            Edit::Append(extra) => bad.extend_from_slice(&extra),
            _ => {}
        }
    }
    let result = e.open_stream(&bad, ctx, SequenceCheck::Any, b"");
    let mut into = vec![0xDD; 64];
    let result_into = e.open_stream_into(&bad, ctx, SequenceCheck::Any, b"", &mut into);
    assert_eq!(
        result_into.is_ok(),
        result.is_ok(),
        "both open forms decide alike"
    );
    if result_into.is_err() {
        assert!(into.is_empty(), "a refused open leaves its vector empty");
    }
    // The edits can rebuild the other genuine stream whole (its header differs from this
    // one's only in the nonce prefix, one flipped bit away): that one opens too.
    if bad == good || bad == other {
        assert_eq!(&result.expect("a genuine stream opens")[..], &data[..]);
    } else {
        assert!(
            result.is_err(),
            "an edited stream opened: {edits_shown}, data {len} bytes, genuine {} bytes, edited {} bytes, header {:?}",
            good.len(),
            bad.len(),
            Header::parse(&bad)
        );
    }
    assert!(e.open_region(&bad, ctx, SequenceCheck::Any, b"").is_err());
    Ok(())
}

fn raw(bytes: &[u8]) {
    // Arbitrary bytes behind a stream header for the first key's algorithm.
    let ctx = ContextId::new("fuzz", "buffer");
    for e in keys() {
        let mut b = Vec::with_capacity(bytes.len() + 8);
        b.extend_from_slice(b"RKSE");
        b.extend_from_slice(&[2, e.algorithm().id(), 2]);
        b.extend_from_slice(bytes);
        assert!(e.open_stream(&b, ctx, SequenceCheck::Any, b"").is_err());
        assert!(e.open_stream(bytes, ctx, SequenceCheck::Any, b"").is_err());
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, rest)) => raw(rest),
        Some((_, rest)) => {
            let _ = run(&mut Unstructured::new(rest));
        }
        None => {}
    }
});
