//! The seed corpora, made from genuine artefacts: what the library itself seals,
//! signs and exports, as the existing tests make them. Written by the `write_seeds`
//! target (`scripts/fuzz.sh --write-seeds`); the files are committed under
//! `fuzz/corpus/<target>/`.

use std::fs;
use std::path::Path;

use ringkernel_core::security::audit::{AuditEvent, AuditLog, AuditLogConfig, AuditSigningKey};
use ringkernel_core::security::compliance::{
    CheckResult, ComplianceReport, ComplianceReporter, ComplianceStandard, ComplianceStatus,
    ExportFormat, REPORT_SCHEMA, ReportSummary,
};
use ringkernel_core::security::encryption::{
    Algorithm, ContextId, EncryptionConfig, MemoryEncryption,
};

type Res = Result<(), Box<dyn std::error::Error>>;

fn put(root: &Path, target: &str, name: &str, bytes: &[u8]) -> Res {
    let dir = root.join(target);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(name), bytes)?;
    Ok(())
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(bytes);
    v
}

/// Writes every target's seeds under `root`.
pub fn write_all(root: &Path) -> Res {
    // Envelopes: a genuine single-shot envelope per algorithm (raw mode, mode byte 1),
    // and a structured input (mode 0).
    for alg in Algorithm::ALL {
        let e = MemoryEncryption::new(EncryptionConfig::new().algorithm(alg))?;
        let sealed = e.seal_region(ContextId::new("k", "control"), 3, &[0x42; 128], b"")?;
        put(
            root,
            "envelope_open",
            &format!("single-{}", alg.id()),
            &with_mode(1, &sealed),
        )?;
    }
    put(root, "envelope_open", "structured", &with_mode(0, b"\x02\x07\x00\x00\x00\x00\x00\x00\x00\x03aad\x00\x10\x00\x00\x00\x00\x00\x00\x00plaintext"))?;
    // Streams: a genuine 3-chunk stream (raw mode: the bytes after its first 7, which
    // the target writes itself) and structured inputs.
    let e = MemoryEncryption::new(EncryptionConfig::new().chunk_size(1024))?;
    let stream = e.seal_stream(ContextId::new("k", "buffer"), 1, &[7u8; 2500], b"")?;
    put(
        root,
        "stream_open",
        "stream-raw",
        &with_mode(0, &stream[7..]),
    )?;
    put(
        root,
        "stream_open",
        "structured-swap",
        &with_mode(1, b"\x00\x01\x00\x01\x01\x01\xc4\x09"),
    )?;
    put(
        root,
        "stream_open",
        "structured-drop",
        &with_mode(1, b"\x02\x01\x01\x02\x00\xc4\x09"),
    )?;
    // Audit: a genuine signed log (two sealed segments and a closed head) in raw form.
    let tmp = tempfile::tempdir()?;
    let signing = AuditSigningKey::from_seed(&[9; 32]);
    let log = AuditLog::open(AuditLogConfig {
        signing_key: Some(signing),
        max_segment_bytes: 4096,
        ..AuditLogConfig::in_directory(tmp.path())
    })?;
    for i in 0..6 {
        log.append(AuditEvent::new("seed_event").actor(format!("kernel_{i}")))?;
        if i == 2 {
            log.seal_segment()?;
        }
    }
    log.seal_segment()?;
    log.close()?;
    drop(log);
    let mut raw = Vec::new();
    for (i, name) in crate::AUDIT_NAMES.iter().enumerate() {
        if let Ok(bytes) = fs::read(tmp.path().join(name)) {
            let len = u16::try_from(bytes.len())?;
            raw.push(i as u8);
            raw.extend_from_slice(&len.to_le_bytes());
            raw.extend_from_slice(&bytes);
        }
    }
    put(root, "audit_verify", "signed-log", &with_mode(1, &raw))?;
    put(
        root,
        "audit_verify",
        "edit-flip",
        &with_mode(0, b"\x01\x02\x03\x00\x10\x01\x00"),
    )?;
    put(
        root,
        "audit_verify",
        "edit-delete",
        &with_mode(0, b"\x01\x00\x04\x00"),
    )?;
    // Sandbox: the wildcard cases of the pattern unit tests, as bytes.
    for (n, case) in [
        &b"\x00\x02\x00\x04\x02\x05\x05\x01\x01\x03"[..],
        b"\x01\x01external_*\x00admin_kernel\x00\x02",
        b"\x00\x04\x04\x05\x00\x01\x04\x00\x04\x02\x01\x02\x00\x01",
    ]
    .iter()
    .enumerate()
    {
        put(root, "sandbox_patterns", &format!("case-{n}"), case)?;
    }
    // Device ring: pushes and rounds.
    put(
        root,
        "device_ring",
        "push-round",
        b"\x0e\x01\x00\x03\x10\x10\x10\x00\x04\x01\x01\x02\xff\xff\x00",
    )?;
    put(
        root,
        "device_ring",
        "wrap",
        b"\x06\x01\x00\x02\x14\x14\x00\x08\x01\x01\x02\x00\x01\x00\x01\x00\x01\x30\x00\x08",
    )?;
    // Reports: a real report's JSON export (fleet merge raw mode, mode byte 0), and
    // hostile text as structured input.
    let status = ComplianceStatus::NonCompliant {
        finding: "kernel `evil<img src=x onerror=alert(1)>` sent # to _admin_".into(),
        recommendation: "1. deny it\n---\n| a | b |".into(),
    };
    let report = ComplianceReport {
        schema: REPORT_SCHEMA,
        standard: ComplianceStandard::Soc2,
        standard_name: "SOC 2".into(),
        organization: "Org <b>".into(),
        generated_at: "2026-12-02T00:00:00.000000Z".into(),
        mode: "Production".into(),
        runtime_instance: "00".repeat(16),
        backend: "cpu (host)".into(),
        summary: ReportSummary {
            non_compliant: 1,
            ..ReportSummary::default()
        },
        checks: vec![CheckResult {
            id: "CUSTOM-<script>".into(),
            name: "custom | *check* <b>".into(),
            description: String::new(),
            standard: ComplianceStandard::Soc2,
            controls: vec!["CC6.1".into(), "[x](javascript:alert(1))".into()],
            evidence: None,
            finding: Some("kernel `evil<img src=x onerror=alert(1)>` sent # to _admin_".into()),
            recommendation: Some("1. deny it\n---\n| a | b |".into()),
            status,
        }],
    };
    let json = ComplianceReporter::unattached().render(&report, ExportFormat::Json)?;
    put(root, "report_exporters", "fleet-json", &with_mode(0, &json))?;
    for (n, text) in [
        &b"\x01<script>alert(1)</script>\x00| a | b |\n|---|---|\x00# heading\x00- item\x00"[..],
        b"\x02\"quoted\" & 'single' <b>\x00`code` *em* _u_ [l](x) ~s~\x00\\\\\x00\n\n    indented\x00",
        b"\x00\x00\x00\x00\x00\x00\x00\x00",
    ]
    .iter()
    .enumerate()
    {
        put(root, "report_exporters", &format!("hostile-{n}"), text)?;
    }
    runtime_ops(root)
}

/// The number of `Op` variants of the `runtime_ops` target.
const RUNTIME_OPS: u64 = 14;

/// One operation of the `runtime_ops` target as its input bytes, as `arbitrary`'s derive
/// reads them: the variant (its index in `Op`, as a little-endian `u32` scaled to the
/// variant count) and then the fields, little-endian.
fn op(variant: u64, fields: &[u8]) -> Vec<u8> {
    let scaled = u32::try_from((variant << 32).div_ceil(RUNTIME_OPS)).unwrap_or(u32::MAX);
    let mut v = scaled.to_le_bytes().to_vec();
    v.extend_from_slice(fields);
    v
}

/// Seeds of the `runtime_ops` target: short sequences that reach every operation.
/// Kernels: 0 `src_a`, 1 `src_b`, 2 `sink_a`, 3 `sink_b`, 4 `vault` (5 as a sender:
/// the host). Topics: 0 `data.x` (allowed to `src_*`), 1 `ctl`.
fn runtime_ops(root: &Path) -> Res {
    let (launch, send, stale, rotate, export, restore, tampered) = (0, 1, 2, 3, 4, 5, 6);
    let (seal, open, terminate, restart, restart_tampered, shutdown, tick) =
        (7, 8, 9, 10, 11, 12, 13);
    let seeds: [(&str, Vec<Vec<u8>>); 3] = [
        (
            "routes-and-restart",
            vec![
                op(launch, &[2]),
                op(launch, &[0]),
                op(send, &[0, 2, 0, 5]),
                op(send, &[0, 4, 0, 1]),
                op(send, &[0, 1, 0, 0]),
                op(send, &[0, 2, 1, 0]),
                op(send, &[5, 4, 1, 3]),
                op(launch, &[4]),
                op(send, &[5, 4, 0, 0]),
                op(export, &[2]),
                op(rotate, &[]),
                op(restart, &[]),
                op(launch, &[2]),
                op(restore, &[2, 0, 0]),
                op(stale, &[0, 2]),
                op(tick, &[]),
            ],
        ),
        (
            "snapshots-and-tampering",
            vec![
                op(launch, &[3]),
                op(send, &[5, 3, 0, 4]),
                op(export, &[3]),
                op(send, &[5, 3, 0, 2]),
                op(export, &[3]),
                op(restore, &[3, 0, 0]),
                op(restore, &[3, 1, 0]),
                op(tampered, &[1, 40, 0, 0x10]),
                op(seal, &[8]),
                op(open, &[0, 0, 0, 0]),
                op(open, &[0, 20, 0, 1]),
                op(restart_tampered, &[100, 0, 4]),
                op(open, &[0, 0, 0, 0]),
                op(terminate, &[3]),
                op(launch, &[3]),
                op(restore, &[3, 1, 0]),
            ],
        ),
        (
            "shutdown-and-stale-handles",
            vec![
                op(launch, &[0]),
                op(launch, &[1]),
                op(launch, &[2]),
                op(send, &[1, 2, 0, 0]),
                op(shutdown, &[]),
                op(send, &[5, 2, 0, 0]),
                op(launch, &[0]),
                op(restart, &[]),
                op(launch, &[0]),
                op(send, &[0, 3, 0, 0]),
                op(terminate, &[0]),
                op(stale, &[0, 0]),
                op(stale, &[3, 2]),
            ],
        ),
    ];
    for (name, ops) in seeds {
        put(root, "runtime_ops", name, &ops.concat())?;
    }
    Ok(())
}
