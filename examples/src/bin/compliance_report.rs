//! Writes every compliance report (SOC 2, GDPR, HIPAA, PCI DSS, ISO 27001, FedRAMP,
//! NIST CSF and a custom standard) in all four formats into `./reports/`, from a
//! secured runtime that has done some work.
//!
//! Run: `cargo run -p ringkernel-examples --bin compliance_report`

use std::process::ExitCode;

use ringkernel_core::Error;
use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder};
use ringkernel_core::security::audit::{AuditConfig, AuditLogConfig};
use ringkernel_core::security::compliance::{
    ComplianceCheck, ComplianceReporter, ComplianceStandard, ComplianceStatus, ExportFormat,
};
use ringkernel_core::security::{
    EncryptionConfig, KernelSandbox, MemoryEncryption, ResourceLimits, SandboxPolicy,
};

const OUT: &str = "reports";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compliance_report failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let audit_dir = format!("{OUT}/compliance_report-audit");
    let _ = std::fs::remove_dir_all(&audit_dir);
    let runtime = RuntimeBuilder::new()
        .production()
        .with_encryption(MemoryEncryption::new(EncryptionConfig::secure())?)
        .with_sandbox(KernelSandbox::with_policy(
            ResourceLimits::conservative().max_messages_per_second(100_000),
            SandboxPolicy::restrictive().k2k_allow_list(&["ledger"]),
        ))
        .with_audit_logging(AuditLogConfig {
            events: AuditConfig {
                log_k2k_messages: true,
                log_memory_access: false,
                log_violations: true,
                // six years: HIPAA's documentation period
                retention_days: 2190,
            },
            ..AuditLogConfig::in_directory(&audit_dir)
        })
        .build()?;
    let ledger = runtime.launch("ledger", LaunchOptions::new())?;
    let payments = runtime.launch("payments", LaunchOptions::new())?;
    for i in 0..100u32 {
        payments.send("ledger", "tx", &i.to_le_bytes())?;
    }
    runtime.rotate_keys()?;

    let reporter = ComplianceReporter::new(&runtime).organization("Example Payments Ltd");
    reporter.add_check(
        ComplianceCheck::new("GPU_MEM_ENCRYPT")
            .name("GPU Memory Encryption")
            .description("All GPU memory must be encrypted at rest")
            .standard(ComplianceStandard::Custom("INTERNAL_SEC_001"))
            .controls(&["INTERNAL-SEC-001"])
            .check(|ctx| {
                if ctx.memory_encryption.is_enabled() {
                    ComplianceStatus::Compliant {
                        evidence: format!(
                            "{} encryption enabled",
                            ctx.memory_encryption
                                .algorithm
                                .map_or("?".into(), |a| a.to_string())
                        ),
                    }
                } else {
                    ComplianceStatus::NonCompliant {
                        finding: "GPU memory encryption not enabled".to_string(),
                        recommendation: "Enable memory encryption with MemoryEncryption::new()"
                            .to_string(),
                    }
                }
            }),
    );

    let mut standards = ComplianceStandard::BUILT_IN.to_vec();
    standards.push(ComplianceStandard::Custom("INTERNAL_SEC_001"));
    println!("Writing reports to ./{OUT}/");
    for standard in standards {
        let report = reporter.generate(standard)?;
        for format in [
            ExportFormat::Json,
            ExportFormat::Html,
            ExportFormat::Markdown,
            ExportFormat::Pdf,
        ] {
            let path = format!("{OUT}/{}_report.{}", standard.slug(), format.extension());
            reporter.export(&report, format, &path)?;
        }
        let s = report.summary;
        println!(
            "  {:<26} {:>2} checks: {:>2} compliant, {:>2} partial, {:>2} non-compliant  -> {OUT}/{}_report.{{json,html,md,pdf}}",
            standard.name(),
            report.checks.len(),
            s.compliant,
            s.partially_compliant,
            s.non_compliant,
            standard.slug()
        );
        for c in report.checks.iter().filter(|c| c.finding.is_some()) {
            println!(
                "      {} {}: {}",
                c.id,
                c.status.title(),
                c.finding.as_deref().unwrap_or_default()
            );
        }
    }
    drop((ledger, payments));
    runtime.shutdown()?;
    Ok(())
}
