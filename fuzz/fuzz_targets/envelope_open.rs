//! Single-shot envelopes: arbitrary bytes through `Header::parse`, `SealedData` and
//! every open path, and genuine envelopes with one fuzzer-chosen change.
//!
//! Properties: nothing panics; bytes the fuzzer made up never open; a genuine envelope
//! opens to exactly its plaintext, and with any byte changed, cut or appended it no
//! longer opens. The same through the caller-buffer forms (`seal_region_into`,
//! `seal_in_place`, `open_region_into`, `open_in_place`, `open_stream_into`), whose
//! vectors are left empty when an open is refused.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ringkernel_core::security::encryption::{
    Algorithm, ContextId, EncryptionConfig, Header, MemoryEncryption, SealedData, SequenceCheck,
};

fn keys() -> &'static Vec<MemoryEncryption> {
    static KEYS: OnceLock<Vec<MemoryEncryption>> = OnceLock::new();
    KEYS.get_or_init(|| {
        Algorithm::ALL
            .iter()
            .map(|a| MemoryEncryption::new(EncryptionConfig::new().algorithm(*a)).expect("key"))
            .collect()
    })
}

#[derive(Arbitrary, Debug)]
enum Change {
    Flip { at: usize, xor: u8 },
    Cut { len: usize },
    Append { byte: u8 },
}

fn raw(bytes: &[u8]) {
    let ctx = ContextId::standalone();
    let parsed = Header::parse(bytes);
    assert_eq!(
        parsed.is_ok(),
        SealedData::from_bytes(bytes.to_vec()).is_ok()
    );
    if let Ok(h) = &parsed {
        // What parses re-encodes to the same header bytes.
        let mut again = Vec::new();
        h.encode_into(&mut again);
        assert_eq!(&again[..], &bytes[..h.encoded_len()]);
        assert_eq!(h.total_len(), Some(bytes.len()));
    }
    for e in keys() {
        assert!(e.open_region(bytes, ctx, SequenceCheck::Any, b"").is_err());
        assert!(e.open_stream(bytes, ctx, SequenceCheck::Any, b"").is_err());
        // The caller-buffer forms refuse them too and leave nothing behind.
        let mut out = vec![0xDD; 40];
        assert!(
            e.open_region_into(bytes, ctx, SequenceCheck::Any, b"", &mut out)
                .is_err()
        );
        assert!(out.is_empty());
        out = vec![0xDD; 40];
        assert!(
            e.open_stream_into(bytes, ctx, SequenceCheck::Any, b"", &mut out)
                .is_err()
        );
        assert!(out.is_empty());
        let mut copy = bytes.to_vec();
        assert!(
            e.open_in_place(&mut copy, ctx, SequenceCheck::Any, b"")
                .is_err()
        );
        if let Ok(s) = SealedData::from_bytes(bytes.to_vec()) {
            assert!(e.decrypt_bytes(&s).is_err());
        }
    }
}

fn sealed(data: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(data);
    let u = &mut u;
    let e = &keys()[usize::from(u8::arbitrary(u)?) % Algorithm::ALL.len()];
    let seq = u64::arbitrary(u)?;
    let aad = <Vec<u8>>::arbitrary(u)?;
    let change = Change::arbitrary(u)?;
    let plain = std::mem::replace(u, Unstructured::new(&[])).take_rest();
    let ctx = ContextId::new("fuzz", "control");
    let good = e.seal_region(ctx, seq, plain, &aad).expect("seal");
    let opened = e
        .open_region(&good, ctx, SequenceCheck::Exact(seq), &aad)
        .expect("a genuine envelope opens");
    assert_eq!(&opened[..], plain);
    // The caller-buffer forms make envelopes that open, and open the genuine one.
    let mut into = vec![0xEE; 17];
    e.seal_region_into(ctx, seq, plain, &aad, &mut into)
        .expect("seal into");
    let mut laid = vec![0u8; e.sealed_len(plain.len())];
    let at = e.plaintext_offset();
    laid[at..at + plain.len()].copy_from_slice(plain);
    e.seal_in_place(ctx, seq, &mut laid, &aad)
        .expect("seal in place");
    for envelope in [&into, &laid, &good] {
        let mut out = vec![0xDD; 3];
        e.open_region_into(envelope, ctx, SequenceCheck::Exact(seq), &aad, &mut out)
            .expect("opens into a vector");
        assert_eq!(out, plain);
        let mut copy = envelope.clone();
        let opened = e
            .open_in_place(&mut copy, ctx, SequenceCheck::Exact(seq), &aad)
            .expect("opens in place");
        assert_eq!(&opened[..], plain);
    }
    let mut bad = good.clone();
    match change {
        Change::Flip { at, xor } => {
            let i = at % bad.len();
            bad[i] ^= xor.max(1);
        }
        Change::Cut { len } => bad.truncate(len % bad.len()),
        Change::Append { byte } => bad.push(byte),
    }
    assert!(e.open_region(&bad, ctx, SequenceCheck::Any, &aad).is_err());
    assert!(e.open_stream(&bad, ctx, SequenceCheck::Any, &aad).is_err());
    let mut out = vec![0xDD; 8];
    assert!(
        e.open_region_into(&bad, ctx, SequenceCheck::Any, &aad, &mut out)
            .is_err()
    );
    assert!(out.is_empty(), "a refused open leaves its vector empty");
    let mut copy = bad.clone();
    assert!(
        e.open_in_place(&mut copy, ctx, SequenceCheck::Any, &aad)
            .is_err()
    );
    // Another context, sequence or associated data never opens the genuine one.
    assert!(
        e.open_region(
            &good,
            ContextId::new("fuzz", "queue"),
            SequenceCheck::Any,
            &aad
        )
        .is_err()
    );
    assert!(
        e.open_region(&good, ctx, SequenceCheck::Exact(seq ^ 1), &aad)
            .is_err()
    );
    let mut other_aad = aad.clone();
    other_aad.push(0);
    assert!(
        e.open_region(&good, ctx, SequenceCheck::Any, &other_aad)
            .is_err()
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, rest)) => {
            let _ = sealed(rest);
        }
        Some((_, rest)) => raw(rest),
        None => raw(data),
    }
});
