//! The built-in checks: what each evidences, mapped to control references, and how it
//! derives its status from the live runtime. The references were checked against their
//! sources (see `docs/compliance.md`).

use std::time::Duration;

use super::context::SecuritySnapshot;
use super::{ComplianceStandard as S, ComplianceStatus};
use crate::backend::DeviceKind;
use crate::kinds::{PRODUCTION_OPT_OUT_NOTE, SecurityMode};
use crate::security::encryption::Algorithm;
use crate::security::memory::ProtectionLevel;

/// A built-in check.
pub(crate) struct BuiltIn {
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) controls: &'static [(S, &'static [&'static str])],
    pub(crate) eval: fn(&SecuritySnapshot, &S) -> ComplianceStatus,
}

fn ok(evidence: impl Into<String>) -> ComplianceStatus {
    ComplianceStatus::Compliant {
        evidence: evidence.into(),
    }
}

fn partial(
    evidence: impl Into<String>,
    finding: impl Into<String>,
    rec: impl Into<String>,
) -> ComplianceStatus {
    ComplianceStatus::PartiallyCompliant {
        evidence: evidence.into(),
        finding: finding.into(),
        recommendation: rec.into(),
    }
}

fn fail(finding: impl Into<String>, rec: impl Into<String>) -> ComplianceStatus {
    ComplianceStatus::NonCompliant {
        finding: finding.into(),
        recommendation: rec.into(),
    }
}

fn days(d: Duration) -> String {
    let h = d.as_secs_f64() / 3600.0;
    if h >= 48.0 {
        format!("{:.0} days", h / 24.0)
    } else if h >= 1.0 {
        format!("{h:.1} hours")
    } else {
        format!("{:.0} s", d.as_secs_f64())
    }
}

fn encryption_at_rest(ctx: &SecuritySnapshot, _: &S) -> ComplianceStatus {
    let e = &ctx.memory_encryption;
    let Some(alg) = e.algorithm.filter(|_| e.enabled) else {
        return fail(
            "GPU/device memory encryption is not enabled: control blocks, queued messages and kernel state rest in plaintext",
            "Configure MemoryEncryption::new(EncryptionConfig::secure()) with RuntimeBuilder::with_encryption, and build in production mode",
        );
    };
    let regions: Vec<&str> = [
        (e.seals_control_blocks, "control blocks"),
        (e.seals_message_queues, "queued K2K messages"),
        (e.seals_kernel_state, "kernel state"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect();
    let evidence = format!(
        "{alg} seals {} in device memory; {} seals and {} opens so far, {} failed opens",
        if regions.is_empty() {
            "nothing".to_owned()
        } else {
            regions.join(", ")
        },
        e.stats.seals,
        e.stats.opens,
        e.stats.failures
    );
    if regions.len() == 3 {
        ok(evidence)
    } else {
        partial(
            evidence,
            "some device-memory regions are stored in plaintext",
            "Enable encrypt_control_blocks, encrypt_message_queues and encrypt_kernel_state in EncryptionConfig",
        )
    }
}

fn approved_crypto(ctx: &SecuritySnapshot, standard: &S) -> ComplianceStatus {
    let e = &ctx.memory_encryption;
    let Some(alg) = e.algorithm.filter(|_| e.enabled) else {
        return fail(
            "no encryption algorithm is in use",
            "Use EncryptionConfig::secure() (AES-256-GCM)",
        );
    };
    let evidence = format!(
        "{alg} (AEAD, 128-bit tags); keys from {} ({} master key)",
        e.key_derivation, e.key_source
    );
    match (standard, alg) {
        (S::FedRamp, Algorithm::Aes256Gcm | Algorithm::Aes128Gcm) => partial(
            evidence,
            "FedRAMP requires FIPS 140 validated cryptographic modules; this build uses aws-lc-rs and RustCrypto without a FIPS-validated module",
            "Build with a FIPS 140-3 validated AWS-LC (aws-lc-rs `fips` feature) and record its certificate",
        ),
        (S::FedRamp, _) => fail(
            format!("{alg} is not a FIPS-approved algorithm"),
            "Use Algorithm::Aes256Gcm from a FIPS 140-3 validated module",
        ),
        (_, Algorithm::Aes128Gcm) => partial(
            evidence,
            "AES-128 has a lower security margin than the 256-bit algorithms",
            "Prefer Algorithm::Aes256Gcm",
        ),
        _ => ok(evidence),
    }
}

fn key_rotation(ctx: &SecuritySnapshot, _: &S) -> ComplianceStatus {
    let e = &ctx.memory_encryption;
    if !e.enabled {
        return fail(
            "no encryption keys are in use",
            "Enable memory encryption with auto_rotate",
        );
    }
    let age = e.key_age.unwrap_or_default();
    let epoch = e.current_key_epoch.unwrap_or(0);
    let evidence = format!(
        "current key epoch {epoch}, {} old; {} rotations and {} retirements (crypto-erasure) so far",
        days(age),
        e.stats.rotations,
        e.stats.retirements
    );
    match e.auto_rotate {
        None => partial(
            evidence,
            "no timed key rotation is configured (keys rotate only at their usage bound)",
            "Set EncryptionConfig::auto_rotate (for example 24 hours, as EncryptionConfig::secure() does)",
        ),
        Some(every) if every > Duration::from_secs(365 * 86_400) => partial(
            format!("{evidence}; rotation every {}", days(every)),
            "the cryptoperiod exceeds one year",
            "Rotate at least yearly; daily rotation costs about 1.4 µs per live control block",
        ),
        Some(every) if age > every + Duration::from_secs(3600) => fail(
            format!(
                "the current key is {} old but should rotate every {}",
                days(age),
                days(every)
            ),
            "Check that the runtime's ticker runs (rotation is driven by it)",
        ),
        Some(every) => ok(format!("{evidence}; timed rotation every {}", days(every))),
    }
}

fn key_protection(ctx: &SecuritySnapshot, _: &S) -> ComplianceStatus {
    let m = &ctx.memory_protection;
    let evidence = format!(
        "host secret memory on {}: protection level {}, locking {}, secure zeroing {}; key material never printed (redacted Debug)",
        m.platform,
        m.protection_level,
        if m.has_memory_locking {
            "available"
        } else {
            "refused"
        },
        if m.has_secure_zeroing { "on" } else { "off" }
    );
    match m.protection_level {
        ProtectionLevel::Full => ok(evidence),
        ProtectionLevel::ZeroingOnly => partial(
            evidence,
            "the OS refused to lock key memory (RLIMIT_MEMLOCK): keys may be written to swap",
            "Raise the memlock limit for the service (ulimit -l / LimitMEMLOCK=) or grant CAP_IPC_LOCK",
        ),
        ProtectionLevel::None => fail(
            "memory protection for keys is switched off",
            "Do not call set_memory_protection(false) in production",
        ),
    }
}

fn least_privilege(ctx: &SecuritySnapshot, _: &S) -> ComplianceStatus {
    let s = &ctx.sandbox;
    if !s.present {
        return fail(
            "no kernel sandbox: every kernel may message every other kernel",
            "Configure KernelSandbox::with_policy(ResourceLimits::conservative(), SandboxPolicy::restrictive()) and allow the needed routes",
        );
    }
    let evidence = format!(
        "kernel sandbox enforced on every send; default policy {}; {} permitted route(s) among live kernels",
        if s.default_denies_k2k {
            "denies routes not explicitly allowed"
        } else {
            "allows routes not explicitly denied"
        },
        s.permitted_routes
    );
    if s.default_denies_k2k {
        ok(evidence)
    } else {
        partial(
            evidence,
            "the default policy is permissive (allow unless denied)",
            "Use SandboxPolicy::restrictive() as the default and allow routes explicitly",
        )
    }
}

fn resource_limits(ctx: &SecuritySnapshot, _: &S) -> ComplianceStatus {
    let s = &ctx.sandbox;
    if !s.present {
        return fail(
            "no resource limits: a kernel can exhaust memory, time and message capacity",
            "Configure a KernelSandbox with ResourceLimits::conservative() or explicit limits",
        );
    }
    let l = &s.default_limits;
    let evidence = format!(
        "default limits: memory {}, execution time {}, {} msg/s, {} K2K peers",
        l.memory_bytes()
            .map_or("unlimited".into(), |b| format!("{b} bytes")),
        l.execution_time().map_or("unlimited".into(), days),
        l.messages_per_second()
            .map_or("unlimited".into(), |r| r.to_string()),
        l.k2k_connections()
            .map_or("unlimited".into(), |c| c.to_string()),
    );
    match s.limits_set {
        4 => ok(evidence),
        0 => fail(
            "the sandbox sets no resource limit",
            "Set max_memory_bytes, max_execution_time, max_messages_per_second and max_k2k_connections",
        ),
        _ => partial(
            evidence,
            "some resource limits are unlimited",
            "Set all four limits (ResourceLimits::conservative() sets them)",
        ),
    }
}

fn violations_reviewed(ctx: &SecuritySnapshot, _: &S) -> ComplianceStatus {
    let s = &ctx.sandbox;
    if !s.present {
        return fail("no sandbox records violations", "Configure a KernelSandbox");
    }
    let total = s.total_violations();
    if total == 0 {
        return ok("no sandbox violations recorded since the runtime started");
    }
    let by_kind: Vec<String> = s
        .violations
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    partial(
        format!(
            "violations are detected, refused and recorded ({})",
            by_kind.join(", ")
        ),
        format!("{total} sandbox violation(s) were recorded and need review"),
        "Review KernelSandbox::check_violations and the sandbox.violation audit records; tighten or fix the offending kernels",
    )
}

fn audit_logging(ctx: &SecuritySnapshot, _: &S) -> ComplianceStatus {
    let a = &ctx.audit;
    if !a.enabled {
        return fail(
            "no audit log is kept",
            "Configure RuntimeBuilder::with_audit_logging(AuditConfig { log_violations: true, .. })",
        );
    }
    if let Some(cause) = &a.stopped {
        return fail(
            format!(
                "the audit log stopped at a failed write ({cause}); {} record(s) since were \
                 not written; on failure the runtime is set to {}",
                a.unrecorded,
                if a.on_failure.is_empty() {
                    "?"
                } else {
                    &a.on_failure
                },
            ),
            "Fix the cause (free disk space, repair the volume) and restart the runtime: \
             the log reopens, seals the segment cut by the failure and continues its chain",
        );
    }
    let evidence = format!(
        "audit log in {} records launches, stops, key rotations, configuration{}{}{}",
        a.directory
            .as_ref()
            .map_or("?".into(), |d| d.display().to_string()),
        if a.logs_violations {
            ", sandbox violations"
        } else {
            ""
        },
        match (a.logs_k2k_messages, a.k2k_summary_interval_ms) {
            (false, _) => String::new(),
            (true, None) => ", every K2K send".to_owned(),
            (true, Some(ms)) => format!(
                ", K2K sends (refusals one by one, deliveries as exact per-route counts \
                 every {ms} ms)"
            ),
        },
        if a.logs_memory_access {
            ", buffer access"
        } else {
            ""
        },
    );
    if a.logs_violations {
        ok(evidence)
    } else {
        partial(
            evidence,
            "sandbox violations are not recorded",
            "Set AuditConfig::log_violations = true",
        )
    }
}

fn audit_integrity(ctx: &SecuritySnapshot, _: &S) -> ComplianceStatus {
    let a = &ctx.audit;
    match &a.verification {
        None => fail("no audit log to verify", "Enable the audit log"),
        Some(Ok(r)) => ok(format!(
            "hash chain, Ed25519-signed checkpoints and signed log head verify: {} records in {} segment(s), {} sealed{}; log {}; public key {}",
            r.records,
            r.segments,
            r.sealed_segments,
            if r.unsealed_records > 0 {
                format!(", {} in the open segment", r.unsealed_records)
            } else {
                String::new()
            },
            r.status,
            a.public_key.as_deref().unwrap_or("?")
        )),
        Some(Err(e)) => fail(
            format!("the audit log does not verify: {e}"),
            "Treat as a security incident: preserve the log directory and investigate the named segment and record",
        ),
    }
}

fn audit_retention(ctx: &SecuritySnapshot, standard: &S) -> ComplianceStatus {
    let a = &ctx.audit;
    if !a.enabled {
        return fail(
            "no audit log is kept, so nothing is retained",
            "Enable the audit log",
        );
    }
    let d = a.retention_days;
    if matches!(standard, S::Gdpr) {
        return if d == 0 {
            partial(
                "audit records are kept indefinitely",
                "no storage limit is set for records that may contain personal data (kernel and route names)",
                "Set AuditConfig::retention_days to the period your records of processing require",
            )
        } else {
            ok(format!(
                "audit records are deleted after {d} days under a signed retention watermark"
            ))
        };
    }
    let (need, why) = match standard {
        S::Hipaa => (6 * 365, "six years (45 CFR 164.316(b)(2)(i))"),
        S::PciDss => (365, "twelve months (PCI DSS 10.5.1)"),
        _ => (365, "one year"),
    };
    if d == 0 {
        ok("audit records are kept indefinitely")
    } else if d >= need {
        ok(format!("audit records are kept {d} days (required: {why})"))
    } else {
        fail(
            format!("audit records are kept only {d} days; {why} is required"),
            format!("Set AuditConfig::retention_days to at least {need}"),
        )
    }
}

fn production_mode(ctx: &SecuritySnapshot, _: &S) -> ComplianceStatus {
    let opt_outs: Vec<&str> = ctx
        .notes
        .iter()
        .filter(|n| n.starts_with(PRODUCTION_OPT_OUT_NOTE))
        .map(String::as_str)
        .collect();
    match ctx.mode {
        SecurityMode::Production if !opt_outs.is_empty() => partial(
            "built in production mode: insecure settings are refused at build time, except \
             where the caller opted out on record",
            opt_outs.join("; "),
            "Remove the opt-outs (RuntimeBuilder::allow_insecure_sandbox, \
             allow_unsealed_regions) once their reasons no longer hold, and fix the settings \
             they allowed",
        ),
        SecurityMode::Production => ok(format!(
            "built in production mode: insecure settings are refused at build time; {}",
            if ctx.notes.is_empty() {
                "no notes".to_owned()
            } else {
                ctx.notes.join("; ")
            }
        )),
        SecurityMode::Development => fail(
            format!(
                "built in development mode, which allows insecure settings{}",
                if ctx.notes.is_empty() {
                    String::new()
                } else {
                    format!(": {}", ctx.notes.join("; "))
                }
            ),
            "Build with RuntimeBuilder::production()",
        ),
    }
}

fn memory_sanitized(ctx: &SecuritySnapshot, _: &S) -> ComplianceStatus {
    let b = &ctx.backend;
    let evidence = format!(
        "backend {} ({}{}): buffers zeroed on allocation: {}, on free: {}",
        b.name,
        b.device,
        if b.kind == DeviceKind::Cpu {
            ", host memory"
        } else {
            ""
        },
        b.zeroes_on_allocate,
        b.zeroes_on_free
    );
    if b.zeroes_on_allocate && b.zeroes_on_free {
        ok(evidence)
    } else {
        fail(
            evidence,
            "Use a backend that zeroes device memory on allocation and on free",
        )
    }
}

macro_rules! refs {
    ($($s:ident => [$($c:expr),* $(,)?]),* $(,)?) => {
        &[$((S::$s, &[$($c),*])),*]
    };
}

pub(crate) static CATALOG: &[BuiltIn] = &[
    BuiltIn {
        id: "ENC-01",
        name: "Encryption of data at rest in device memory",
        description: "Kernel control blocks, queued K2K messages and saved kernel state are sealed with an AEAD in device memory.",
        controls: refs! {
            Soc2 => ["CC6.1"], Gdpr => ["Art. 32(1)(a)"], Hipaa => ["164.312(a)(2)(iv)"],
            PciDss => ["3.5", "3.5.1"], Iso27001 => ["A.8.24"], FedRamp => ["SC-28", "SC-28(1)"],
            NistCsf => ["PR.DS-01"],
        },
        eval: encryption_at_rest,
    },
    BuiltIn {
        id: "ENC-02",
        name: "Approved cryptographic algorithms",
        description: "Sealing uses a modern AEAD with full-length keys and tags; FedRAMP additionally needs FIPS-validated modules.",
        controls: refs! {
            Soc2 => ["CC6.1"], Gdpr => ["Art. 32(1)(a)"], Hipaa => ["164.312(a)(2)(iv)"],
            PciDss => ["3.5.1"], Iso27001 => ["A.8.24"], FedRamp => ["SC-13"], NistCsf => ["PR.DS-01"],
        },
        eval: approved_crypto,
    },
    BuiltIn {
        id: "KEY-01",
        name: "Cryptographic key rotation",
        description: "Data keys rotate on a schedule and before a usage bound; superseded keys are zeroized after a grace period.",
        controls: refs! {
            Soc2 => ["CC6.1"], PciDss => ["3.6", "3.6.1", "3.7", "3.7.4"], Iso27001 => ["A.8.24"],
            FedRamp => ["SC-12", "SC-12(1)"], NistCsf => ["PR.DS-01"], Hipaa => ["164.312(a)(2)(iv)"],
        },
        eval: key_rotation,
    },
    BuiltIn {
        id: "KEY-02",
        name: "Protection of keys in memory",
        description: "Keys live in locked memory that never reaches swap or core dumps and is zeroed on release.",
        controls: refs! {
            Soc2 => ["CC6.1"], PciDss => ["3.6.1"], Iso27001 => ["A.8.24"],
            FedRamp => ["SC-12", "SC-28"], NistCsf => ["PR.DS-01"], Hipaa => ["164.312(a)(2)(iv)"],
        },
        eval: key_protection,
    },
    BuiltIn {
        id: "ACC-01",
        name: "Least privilege between kernels",
        description: "A sandbox enforces K2K allow/deny lists on every send; routes nobody allowed are denied.",
        controls: refs! {
            Soc2 => ["CC6.3"], PciDss => ["7.2", "7.2.2"], Iso27001 => ["A.5.15", "A.8.2", "A.8.3"],
            FedRamp => ["AC-3", "AC-6"], NistCsf => ["PR.AA-05"], Hipaa => ["164.312(a)(1)"],
            Gdpr => ["Art. 32(1)(b)"],
        },
        eval: least_privilege,
    },
    BuiltIn {
        id: "AVL-01",
        name: "Resource limits per kernel",
        description: "Memory, execution time, message rate and K2K connections are limited and enforced.",
        controls: refs! {
            Soc2 => ["A1.1"], FedRamp => ["SC-6"], NistCsf => ["DE.CM-09"], Gdpr => ["Art. 32(1)(b)"],
            Iso27001 => ["A.8.6"],
        },
        eval: resource_limits,
    },
    BuiltIn {
        id: "MON-01",
        name: "Sandbox violations detected and reviewed",
        description: "Violations are refused, recorded per kernel and in the audit log; any recorded violation needs review.",
        controls: refs! {
            Soc2 => ["CC7.2"], FedRamp => ["SI-4"], NistCsf => ["DE.CM-09"], Iso27001 => ["A.8.16"],
            PciDss => ["10.4.1"], Hipaa => ["164.308(a)(1)(ii)(D)"],
        },
        eval: violations_reviewed,
    },
    BuiltIn {
        id: "AUD-01",
        name: "Audit logging of security events",
        description: "Launches, stops, sends, violations, key rotations and configuration are recorded.",
        controls: refs! {
            Soc2 => ["CC7.2"], PciDss => ["10.2"], Hipaa => ["164.312(b)"], Iso27001 => ["A.8.15"],
            FedRamp => ["AU-2"], NistCsf => ["PR.PS-04"], Gdpr => ["Art. 32(1)(d)"],
        },
        eval: audit_logging,
    },
    BuiltIn {
        id: "AUD-02",
        name: "Audit log integrity",
        description: "The hash chain and Ed25519-signed checkpoints of the audit log verify with the public key.",
        controls: refs! {
            Soc2 => ["CC7.2"], PciDss => ["10.3", "10.3.2"], Hipaa => ["164.312(c)(1)"],
            Iso27001 => ["A.8.15"], FedRamp => ["AU-9", "AU-9(3)"], NistCsf => ["PR.PS-04"],
        },
        eval: audit_integrity,
    },
    BuiltIn {
        id: "AUD-03",
        name: "Audit log retention",
        description: "Audit records are kept as long as the standard requires, and no longer than configured.",
        controls: refs! {
            Soc2 => ["CC7.2"], PciDss => ["10.5.1"], Hipaa => ["164.316(b)(2)(i)"], Iso27001 => ["A.8.15"],
            FedRamp => ["AU-11"], NistCsf => ["PR.PS-04"], Gdpr => ["Art. 5(1)(e)"],
        },
        eval: audit_retention,
    },
    BuiltIn {
        id: "CFG-01",
        name: "Secure configuration",
        description: "The runtime was built in production mode, which refuses insecure settings.",
        controls: refs! {
            Soc2 => ["CC6.1"], PciDss => ["2.2"], Iso27001 => ["A.8.9"], FedRamp => ["CM-6"],
            NistCsf => ["PR.PS-01"], Gdpr => ["Art. 25"], Hipaa => ["164.308(a)(1)(ii)(B)"],
        },
        eval: production_mode,
    },
    BuiltIn {
        id: "MEM-01",
        name: "Device memory sanitized on reuse",
        description: "Device buffers are zeroed on allocation and on free, so no kernel reads another's leftovers.",
        controls: refs! {
            Soc2 => ["CC6.5"], FedRamp => ["SC-4"], Iso27001 => ["A.8.10"], NistCsf => ["PR.DS-01"],
            Gdpr => ["Art. 32(1)(b)"], Hipaa => ["164.310(d)(2)(ii)"],
        },
        eval: memory_sanitized,
    },
];
