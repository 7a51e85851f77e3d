//! Audit log verification over arbitrary directories.
//!
//! Two modes. Raw: the fuzzer writes any bytes under log file names (segments,
//! checkpoints, head, watermark, stray files) and `verify` runs with a public key whose
//! secret it cannot know: that must never report an intact log. Edited: a genuine
//! closed log (three sealed segments, written once per process with a fixed key) has
//! files deleted, replaced, cut, extended, byte-flipped or copied over each other, and
//! is verified with the genuine public key (and its head as an anchor).
//!
//! Properties: nothing panics; the unchanged log verifies as closed; an edited log
//! that verifies has every signed file body and every segment a signed checkpoint
//! covers unchanged, and one that verifies as closed has every segment unchanged.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ringkernel_core::security::audit::{
    AuditEvent, AuditLog, AuditLogConfig, AuditPublicKey, AuditSigningKey, LogStatus, SignedHead,
    verify, verify_with_anchor,
};
use ringkernel_fuzz::AUDIT_NAMES;

type Files = BTreeMap<String, Vec<u8>>;

struct Genuine {
    files: Files,
    key: AuditPublicKey,
    head: SignedHead,
}

fn genuine() -> &'static Genuine {
    static G: OnceLock<Genuine> = OnceLock::new();
    G.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let signing = AuditSigningKey::from_seed(&[7; 32]);
        let key = signing.public_key();
        let log = AuditLog::open(AuditLogConfig {
            signing_key: Some(signing),
            max_segment_bytes: 4096,
            ..AuditLogConfig::in_directory(dir.path())
        })
        .expect("open log");
        for i in 0..12 {
            log.append(
                AuditEvent::new("fuzz_event")
                    .actor(format!("kernel_{i}"))
                    .detail("i", i),
            )
            .expect("append");
            if i % 4 == 3 {
                log.seal_segment().expect("seal");
            }
        }
        log.close().expect("close");
        let head = log.head();
        drop(log);
        let files = read_dir(dir.path());
        assert!(matches!(
            verify(dir.path(), &key)
                .expect("genuine log verifies")
                .status,
            LogStatus::Closed
        ));
        Genuine { files, key, head }
    })
}

fn read_dir(dir: &std::path::Path) -> Files {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).expect("read"))
        })
        .collect()
}

fn unknown_key() -> &'static AuditPublicKey {
    static K: OnceLock<AuditPublicKey> = OnceLock::new();
    K.get_or_init(|| AuditSigningKey::generate().expect("key").public_key())
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Delete(u8),
    Replace(u8, Vec<u8>),
    Flip {
        file: u8,
        at: u16,
        xor: u8,
    },
    Cut {
        file: u8,
        len: u16,
    },
    Append(u8, Vec<u8>),
    CopyOver {
        from: u8,
        to: u8,
    },
    /// Replace one line of a file by another line of any file.
    SwapLine {
        file: u8,
        line: u8,
        from_file: u8,
        from_line: u8,
    },
}

fn write_and_verify(files: &Files, key: &AuditPublicKey, anchor: Option<&SignedHead>) -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).expect("write");
    }
    let ok = match anchor {
        None => verify(dir.path(), key).map(|r| r.status),
        Some(h) => verify_with_anchor(dir.path(), key, &h.anchor()).map(|r| r.status),
    };
    match ok {
        Ok(LogStatus::Closed) => {
            // Closed: every record is covered by something signed.
            let g = genuine();
            for (name, bytes) in &g.files {
                if name.ends_with(".jsonl") {
                    assert_eq!(
                        files.get(name),
                        Some(bytes),
                        "{name} changed and the log verifies as closed"
                    );
                }
            }
            true
        }
        Ok(LogStatus::Truncated(_)) => panic!("verify returned Ok(Truncated)"),
        Ok(LogStatus::Open { .. }) => true,
        Err(_) => false,
    }
}

fn first_line(b: &[u8]) -> &[u8] {
    b.split(|&c| c == b'\n').next().unwrap_or_default()
}

fn edited(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let g = genuine();
    let mut files = g.files.clone();
    let names: Vec<String> = g.files.keys().cloned().collect();
    let pick = |i: u8| names[usize::from(i) % names.len()].clone();
    for edit in u.arbitrary_iter::<Edit>()?.take(4) {
        match edit? {
            Edit::Delete(f) => {
                files.remove(&pick(f));
            }
            Edit::Replace(f, b) => {
                files.insert(pick(f), b);
            }
            Edit::Flip { file, at, xor } => {
                if let Some(b) = files.get_mut(&pick(file)).filter(|b| !b.is_empty()) {
                    let i = usize::from(at) % b.len();
                    b[i] ^= xor;
                }
            }
            Edit::Cut { file, len } => {
                if let Some(b) = files.get_mut(&pick(file)) {
                    b.truncate(usize::from(len));
                }
            }
            Edit::Append(f, extra) => {
                if let Some(b) = files.get_mut(&pick(f)) {
                    b.extend_from_slice(&extra);
                }
            }
            Edit::CopyOver { from, to } => {
                if let Some(b) = files.get(&pick(from)).cloned() {
                    files.insert(pick(to), b);
                }
            }
            Edit::SwapLine {
                file,
                line,
                from_file,
                from_line,
            } => {
                let src = files.get(&pick(from_file)).cloned().unwrap_or_default();
                let src_lines: Vec<&[u8]> = src.split(|&c| c == b'\n').collect();
                let new_line = src_lines[usize::from(from_line) % src_lines.len()].to_vec();
                if let Some(b) = files.get_mut(&pick(file)) {
                    let mut lines: Vec<Vec<u8>> =
                        b.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
                    let i = usize::from(line) % lines.len();
                    lines[i] = new_line;
                    *b = lines.join(&b'\n');
                }
            }
        }
    }
    let anchored = bool::arbitrary(u)?;
    let ok = write_and_verify(&files, &g.key, anchored.then_some(&g.head));
    if files == g.files {
        assert!(ok, "the unchanged genuine log does not verify");
        return Ok(());
    }
    if ok {
        for (name, bytes) in &g.files {
            let signed = name.ends_with(".checkpoint")
                || name == "log.head"
                || name == "retention.watermark";
            if signed {
                if let Some(now) = files.get(name) {
                    assert_eq!(
                        first_line(now),
                        first_line(bytes),
                        "the signed body of {name} changed and the log verifies"
                    );
                }
            } else if name.ends_with(".jsonl") {
                let cp = name.replace(".jsonl", ".checkpoint");
                if g.files.contains_key(&cp) && files.get(&cp) == g.files.get(&cp) {
                    assert_eq!(
                        files.get(name),
                        Some(bytes),
                        "{name}, sealed by a signed checkpoint, changed and the log verifies"
                    );
                }
            }
        }
    }
    Ok(())
}

/// Raw mode's input: files as `[name index][length: u16 LE][bytes]`, repeated (the
/// seed corpus holds a genuine log in this form, see `ringkernel_fuzz::seeds`).
fn raw(mut data: &[u8]) {
    let mut files = Files::new();
    while let [i, a, b, rest @ ..] = data {
        let len = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
        files.insert(
            AUDIT_NAMES[usize::from(*i) % AUDIT_NAMES.len()].to_owned(),
            rest[..len].to_vec(),
        );
        data = &rest[len..];
    }
    // A key whose secret never left this process: nothing the fuzzer wrote is signed
    // with it, so no directory may verify.
    assert!(
        !write_and_verify(&files, unknown_key(), None),
        "a log nobody signed verifies"
    );
    let _ = write_and_verify(&files, &genuine().key, None);
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let _ = edited(&mut Unstructured::new(rest));
    } else {
        raw(rest);
    }
});
