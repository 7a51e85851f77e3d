//! Fleet reports: many runtimes' reports, gathered as JSON, merged per standard, naming
//! which runtime failed which check; bad inputs are clear errors.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use ringkernel_core::runtime::{Runtime, RuntimeBuilder};
use ringkernel_core::security::audit::AuditLogConfig;
use ringkernel_core::security::compliance::fleet::{FLEET_SCHEMA, merge, merge_json};
use ringkernel_core::security::compliance::{ComplianceReporter, ComplianceStandard, ExportFormat};

fn json(rt: &Runtime, standard: ComplianceStandard) -> Vec<u8> {
    let r = ComplianceReporter::new(rt).organization("Fleet | Corp");
    r.render(&r.generate(standard).unwrap(), ExportFormat::Json)
        .unwrap()
}

#[test]
fn a_fleet_report_names_the_runtimes_that_failed_each_check() {
    let audit = tempfile::tempdir().unwrap();
    let secured = RuntimeBuilder::new()
        .production()
        .with_audit_logging(AuditLogConfig::in_directory(audit.path()))
        .build()
        .unwrap();
    let dev_a = RuntimeBuilder::new().development().build().unwrap();
    let dev_b = RuntimeBuilder::new().development().build().unwrap();
    let mut inputs = Vec::new();
    for rt in [&secured, &dev_a, &dev_b] {
        inputs.push(json(rt, ComplianceStandard::Soc2));
        inputs.push(json(rt, ComplianceStandard::FedRamp));
    }
    let fleet = merge_json(&inputs).unwrap();
    assert_eq!(fleet.len(), 2, "one report per standard");
    for report in &fleet {
        assert_eq!(report.schema, FLEET_SCHEMA);
        assert_eq!(report.runtimes.len(), 3);
        let enc = report.checks.iter().find(|c| c.id == "ENC-01").unwrap();
        let mut failed: Vec<&str> = enc.failing.iter().map(|f| f.runtime.as_str()).collect();
        failed.sort_unstable();
        let mut dev = vec![dev_a.instance_id().to_hex(), dev_b.instance_id().to_hex()];
        dev.sort();
        assert_eq!(
            failed, dev,
            "exactly the two unencrypted runtimes failed ENC-01"
        );
        assert_eq!(enc.worst, "non_compliant");
        assert!(enc.failing.iter().all(|f| !f.finding.is_empty()));
        assert!(enc.missing.is_empty());
        let md = report.to_markdown();
        assert!(md.contains(&dev_a.instance_id().to_hex()));
        assert!(md.contains("Fleet \\| Corp"), "report text is escaped");
        let back: serde_json::Value = serde_json::from_slice(&report.to_json().unwrap()).unwrap();
        assert_eq!(back["standard"], report.standard.as_str());
    }
    // The same reports merged in process give the same fleet reports.
    let reporter = ComplianceReporter::new(&dev_a);
    let in_process = merge(&[reporter.generate(ComplianceStandard::Soc2).unwrap()]).unwrap();
    assert_eq!(
        in_process[0].runtimes[0].instance,
        dev_a.instance_id().to_hex()
    );
    for rt in [secured, dev_a, dev_b] {
        rt.shutdown().unwrap();
    }
}

#[test]
fn inputs_that_are_not_reports_are_refused_naming_them() {
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let good = json(&rt, ComplianceStandard::Soc2);
    let err = merge_json(&[good.clone(), b"{not json".to_vec()]).unwrap_err();
    assert!(err.to_string().contains("input 1"), "{err}");
    let mut other: serde_json::Value = serde_json::from_slice(&good).unwrap();
    other["schema"] = "someone-else/v9".into();
    let err = merge_json(&[serde_json::to_vec(&other).unwrap()]).unwrap_err();
    assert!(err.to_string().contains("someone-else/v9"), "{err}");
    assert!(merge_json(&[]).unwrap().is_empty());
    rt.shutdown().unwrap();
}

/// Found by the `report_exporters` fuzz target: the fleet Markdown wrote runtime ids in
/// code spans, where backslash escapes do not apply, so a backtick in an id (the JSON
/// input of `merge_json` is anyone's) closed the span and the rest of the id was read as
/// Markdown. Runtime ids are now escaped text like every other field.
#[test]
fn a_backtick_in_a_runtime_id_stays_text_in_the_fleet_markdown() {
    use ringkernel_core::security::compliance::{
        CheckResult, ComplianceReport, ComplianceStatus, REPORT_SCHEMA, ReportSummary,
    };
    let finding = "x".to_owned();
    let report = ComplianceReport {
        schema: REPORT_SCHEMA,
        standard: ComplianceStandard::Soc2,
        standard_name: "SOC 2".into(),
        organization: "org".into(),
        generated_at: "2026-12-02T00:00:00.000000Z".into(),
        mode: "Development".into(),
        runtime_instance: " `**bold** [l](x)`".into(),
        backend: "cpu".into(),
        summary: ReportSummary {
            non_compliant: 1,
            ..ReportSummary::default()
        },
        checks: vec![CheckResult {
            id: "ENC-01".into(),
            name: "n".into(),
            description: String::new(),
            standard: ComplianceStandard::Soc2,
            controls: Vec::new(),
            evidence: None,
            finding: Some(finding.clone()),
            recommendation: Some("r".into()),
            status: ComplianceStatus::NonCompliant {
                finding,
                recommendation: "r".into(),
            },
        }],
    };
    let md = merge(&[report]).unwrap()[0].to_markdown();
    let escaped = r" \`\*\*bold\*\* \[l\](x)\`";
    // In the runtimes table and in the check's "failed by" column.
    assert_eq!(md.matches(escaped).count(), 2, "{md}");
    // No backtick opens a code span: every one is escaped.
    assert!(
        md.match_indices('`').all(|(i, _)| md[..i].ends_with('\\')),
        "{md}"
    );
}
