//! Bad input is a clear error, never an abort, and loses nothing: each test is one
//! misuse or attack on the configuration and launch surface, named by its class.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

use ringkernel_core::Error;
use ringkernel_core::k2k::MAX_QUEUE_CAPACITY;
use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder, RuntimeConfig};
use ringkernel_core::security::audit::{AuditLogConfig, AuditRecord};
use ringkernel_core::security::compliance::{
    ComplianceReporter, ComplianceStandard, ComplianceStatus,
};
use ringkernel_core::security::encryption::{EncryptionConfig, MemoryEncryption};
use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};

/// Set in the child process that [`in_child`] starts.
const CHILD: &str = "RK_BAD_INPUT_CHILD";

/// Runs `case` in a child process (this test binary, filtered to `test_name`), so that
/// an abort fails this test instead of killing the whole test run.
fn in_child(test_name: &str, case: impl FnOnce()) {
    if std::env::var_os(CHILD).is_some() {
        case();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the child process died ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the child ran no test:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn invalid_config<T: std::fmt::Debug>(r: ringkernel_core::Result<T>, names: &str) {
    match r {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains(names), "{msg}"),
        other => panic!("expected InvalidConfig naming {names:?}, got {other:?}"),
    }
}

#[test]
fn resource_exhaustion_by_huge_queue_capacity_is_refused_not_an_abort() {
    const MAX: usize = MAX_QUEUE_CAPACITY;
    in_child(
        "resource_exhaustion_by_huge_queue_capacity_is_refused_not_an_abort",
        || {
            let rt = RuntimeBuilder::new().development().build().unwrap();
            invalid_config(
                rt.launch("k", LaunchOptions::new().queue_capacity(0)),
                "at least 1",
            );
            for cap in [usize::MAX, usize::MAX / 2 + 2, 1 << 40, MAX + 1] {
                invalid_config(
                    rt.launch("k", LaunchOptions::new().queue_capacity(cap)),
                    &MAX.to_string(),
                );
            }
            // Nothing of the refused launches is left behind; the id is still free.
            assert!(rt.kernels().is_empty());
            assert_eq!(rt.memory_in_use(), 0);
            let k = rt
                .launch("k", LaunchOptions::new().queue_capacity(MAX))
                .unwrap();
            k.terminate().unwrap();
            rt.shutdown().unwrap();

            for cap in [usize::MAX, MAX + 1] {
                invalid_config(
                    RuntimeBuilder::new()
                        .development()
                        .config(RuntimeConfig {
                            default_queue_capacity: cap,
                            ..RuntimeConfig::default()
                        })
                        .build(),
                    &MAX.to_string(),
                );
            }
        },
    );
}

#[test]
fn id_spoofing_with_invisible_bidi_or_format_characters_is_refused() {
    use ringkernel_core::k2k::KernelId;
    use ringkernel_core::security::sandbox::Pattern;
    // Each one makes an id look like another (or reorders the text around it) in logs,
    // audit records and reports.
    let spoofs = [
        "admin\u{200B}",       // ZERO WIDTH SPACE (Cf)
        "ad\u{200D}min",       // ZERO WIDTH JOINER (Cf)
        "\u{202E}nimda",       // RIGHT-TO-LEFT OVERRIDE (Cf)
        "worker\u{2066}_1",    // LEFT-TO-RIGHT ISOLATE (Cf)
        "\u{FEFF}processor_1", // ZERO WIDTH NO-BREAK SPACE / BOM (Cf)
        "proc\u{00AD}essor",   // SOFT HYPHEN (Cf)
        "worker\u{2060}",      // WORD JOINER (Cf)
        "\u{061C}worker",      // ARABIC LETTER MARK (Cf)
        "flag\u{E0041}",       // TAG LATIN CAPITAL LETTER A (Cf)
        "line\u{2028}break",   // LINE SEPARATOR (Zl)
        "para\u{2029}graph",   // PARAGRAPH SEPARATOR (Zp)
        "bell\u{7}",           // BEL (Cc)
        "c1\u{85}control",     // NEXT LINE (Cc)
    ];
    let rt = RuntimeBuilder::new().development().build().unwrap();
    for id in spoofs {
        match KernelId::new(id) {
            Err(Error::InvalidKernelId { id: got, reason }) => {
                assert_eq!(got, id);
                assert!(
                    reason.contains("control")
                        || reason.contains("format")
                        || reason.contains("separator"),
                    "{id:?}: {reason}"
                );
            }
            other => panic!("{id:?} accepted: {other:?}"),
        }
        assert!(
            matches!(
                rt.launch(id, LaunchOptions::new()),
                Err(Error::InvalidKernelId { .. })
            ),
            "{id:?} launched"
        );
        // A pattern holding one could never match an id, so it is refused too.
        assert!(Pattern::new(id).is_err(), "pattern {id:?} accepted");
    }
    let e = KernelId::new("admin\u{200B}").unwrap_err().to_string();
    assert!(e.contains("Cf"), "the rule is named: {e}");
    assert!(rt.kernels().is_empty());
    // Ordinary non-ASCII ids (with combining marks, other scripts, emoji) are fine.
    for id in [
        "处理器_1",
        "مُعالِج",
        "ümlaut-kernel",
        "Ελληνικά",
        "कर्नेल",
        "カーネル",
        "kernel🚀",
        "with space inside",
    ] {
        assert_eq!(KernelId::new(id).unwrap().as_str(), id);
        rt.launch(id, LaunchOptions::new()).unwrap();
    }
    assert_eq!(rt.kernels().len(), 8);
    // Topics name routes in audit records too: the same characters are refused there.
    match rt.send("处理器_1", "prices\u{202E}", b"") {
        Err(Error::InvalidMessage(msg)) => assert!(msg.contains("Cf"), "{msg}"),
        other => panic!("expected InvalidMessage naming Cf, got {other:?}"),
    }
    rt.send("处理器_1", "价格", b"").unwrap();
    rt.shutdown().unwrap();
}

/// A fresh audit directory for one runtime; removed when the guard drops.
fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("rk-bad-input-{tag}-"))
        .tempdir()
        .unwrap()
}

/// The records of a closed audit log.
fn audit_records(dir: &std::path::Path) -> Vec<AuditRecord> {
    let mut records: Vec<AuditRecord> = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(&path).unwrap();
            records.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
        }
    }
    records.sort_by_key(|r| r.seq);
    records
}

fn production(dir: &std::path::Path) -> RuntimeBuilder {
    RuntimeBuilder::new()
        .production()
        .with_audit_logging(AuditLogConfig::in_directory(dir))
}

/// Builds `builder` (which must be refused), then removes `dir`, its audit directory.
fn refused(builder: RuntimeBuilder, dir: tempfile::TempDir, names: &str) {
    invalid_config(builder.build(), names);
    drop(dir);
}

/// The opt-out reached the security notes, the compliance report and the audit log.
fn opt_out_on_record(
    rt: ringkernel_core::runtime::Runtime,
    dir: tempfile::TempDir,
    setting: &str,
    reason: &str,
) {
    assert!(
        rt.security_notes()
            .iter()
            .any(|n| n.contains(setting) && n.contains(reason)),
        "{:?}",
        rt.security_notes()
    );
    let report = ComplianceReporter::new(&rt)
        .generate(ComplianceStandard::Soc2)
        .unwrap();
    let secure_config = report
        .checks
        .iter()
        .find(|c| {
            [&c.evidence, &c.finding]
                .iter()
                .any(|t| t.as_deref().is_some_and(|t| t.contains(reason)))
        })
        .expect("the opt-out appears in the compliance report");
    assert!(
        !matches!(secure_config.status, ComplianceStatus::Compliant { .. }),
        "an opted-out production runtime is not fully compliant: {secure_config:?}"
    );
    rt.shutdown().unwrap();
    let records = audit_records(dir.path());
    let opt_out = records
        .iter()
        .find(|r| r.event == "runtime.insecure_opt_out")
        .expect("the opt-out is audited at build");
    assert_eq!(opt_out.actor, "host");
    assert_eq!(opt_out.details["setting"], setting);
    assert_eq!(opt_out.details["reason"], reason);
    dir.close().unwrap();
}

#[test]
fn downgrade_to_an_open_sandbox_in_production_is_refused_unless_opted_out_on_record() {
    let open = || KernelSandbox::with_policy(ResourceLimits::new(), SandboxPolicy::permissive());
    for sandbox in [
        open(),
        // new() without an allow list also allows every route.
        KernelSandbox::new(ResourceLimits::new()),
        KernelSandbox::with_policy(ResourceLimits::new(), SandboxPolicy::new().allow_all_k2k()),
    ] {
        let dir = scratch("sandbox");
        refused(
            production(dir.path()).with_sandbox(sandbox),
            dir,
            "allow_insecure_sandbox",
        );
    }
    let dir = scratch("sandbox");
    refused(
        production(dir.path())
            .with_sandbox(open())
            .allow_insecure_sandbox("  "),
        dir,
        "reason",
    );
    // Limits, or a policy that denies what it does not allow, are enough.
    for sandbox in [
        KernelSandbox::with_policy(ResourceLimits::conservative(), SandboxPolicy::permissive()),
        KernelSandbox::with_policy(ResourceLimits::new(), SandboxPolicy::restrictive()),
    ] {
        let dir = scratch("sandbox");
        production(dir.path())
            .with_sandbox(sandbox)
            .build()
            .unwrap()
            .shutdown()
            .unwrap();
        dir.close().unwrap();
    }
    let dir = scratch("sandbox");
    let reason = "benchmark of trusted kernels, ticket SEC-42";
    let rt = production(dir.path())
        .with_sandbox(open())
        .allow_insecure_sandbox(reason)
        .build()
        .unwrap();
    opt_out_on_record(rt, dir, "allow_insecure_sandbox", reason);
}

#[test]
fn downgrade_to_encryption_that_seals_nothing_in_production_is_refused_unless_opted_out_on_record()
{
    let unsealed = || {
        MemoryEncryption::new(
            EncryptionConfig::secure()
                .encrypt_control_blocks(false)
                .encrypt_message_queues(false)
                .encrypt_kernel_state(false),
        )
        .unwrap()
    };
    let dir = scratch("unsealed");
    refused(
        production(dir.path()).with_encryption(unsealed()),
        dir,
        "allow_unsealed_regions",
    );
    let dir = scratch("unsealed");
    refused(
        production(dir.path())
            .with_encryption(unsealed())
            .allow_unsealed_regions(""),
        dir,
        "reason",
    );
    // One sealed region is a choice the caller may make.
    let dir = scratch("unsealed");
    let one = MemoryEncryption::new(
        EncryptionConfig::secure()
            .encrypt_message_queues(false)
            .encrypt_kernel_state(false),
    )
    .unwrap();
    production(dir.path())
        .with_encryption(one)
        .build()
        .unwrap()
        .shutdown()
        .unwrap();
    dir.close().unwrap();
    let dir = scratch("unsealed");
    let reason = "device memory is encrypted by the platform (confidential computing)";
    let rt = production(dir.path())
        .with_encryption(unsealed())
        .allow_unsealed_regions(reason)
        .build()
        .unwrap();
    opt_out_on_record(rt, dir, "allow_unsealed_regions", reason);
}
