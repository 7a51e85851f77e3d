//! OSCAL 1.1 assessment results: the format FedRAMP and NIST tooling ingest.
//!
//! One result per report. The runtime instance is the assessed subject (a `software`
//! component in the result's local definitions). Each check is an observation with its
//! evidence; each control it evidences gets a finding whose target status is
//! `satisfied` (compliant) or `not-satisfied` (partially or non-compliant, with the
//! finding and recommendation in its text). Not-applicable checks are observations
//! only. Control ids become OSCAL tokens: NIST SP 800-53 rev5 ids as the OSCAL
//! catalogs write them (`SC-28(1)` -> `sc-28.1`), and for NIST CSF reports each check's
//! 800-53 controls are used as well, since OSCAL catalogs are 800-53; other standards'
//! references are prefixed with the standard (`soc2-cc6.1`, `pci-dss-3.5.1`).
//!
//! UUIDs are derived (SHA-256, version 5 layout) from the report's content, so the same
//! report gives the same bytes.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::super::catalog::CATALOG;
use super::super::{CheckResult, ComplianceReport, ComplianceStandard, ComplianceStatus};

/// The OSCAL version written.
pub const OSCAL_VERSION: &str = "1.1.2";

/// A deterministic RFC 4122 UUID (version 5 layout) from `parts`.
fn uuid(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(b"ringkernel/oscal/v1");
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A NIST SP 800-53 id as OSCAL catalogs write it: `SC-28(1)` -> `sc-28.1`.
fn sp800_53_token(id: &str) -> String {
    id.to_ascii_lowercase()
        .replace(')', "")
        .replace('(', ".")
        .replace(' ', "")
}

/// Any other reference as an OSCAL token, prefixed with its standard.
fn token(standard: &ComplianceStandard, id: &str) -> String {
    let prefix = match standard {
        ComplianceStandard::Soc2 => "soc2",
        ComplianceStandard::Gdpr => "gdpr",
        ComplianceStandard::Hipaa => "hipaa",
        ComplianceStandard::PciDss => "pci-dss",
        ComplianceStandard::Iso27001 => "iso27001",
        ComplianceStandard::FedRamp => return sp800_53_token(id),
        ComplianceStandard::NistCsf => "csf",
        ComplianceStandard::Custom(_) => "custom",
    };
    let mut out = String::from(prefix);
    out.push('-');
    for c in id.chars() {
        match c {
            c if c.is_alphanumeric() || c == '.' || c == '-' || c == '_' => {
                out.extend(c.to_lowercase())
            }
            '(' => out.push('.'),
            ')' => {}
            _ => out.push('_'),
        }
    }
    out
}

/// The control tokens a check evidences in this report: its own references, plus, for
/// NIST CSF, the check's 800-53 controls.
fn controls(report: &ComplianceReport, check: &CheckResult) -> Vec<String> {
    let mut out: Vec<String> = check
        .controls
        .iter()
        .map(|c| token(&report.standard, c))
        .collect();
    if report.standard == ComplianceStandard::NistCsf
        && let Some(b) = CATALOG.iter().find(|b| b.id == check.id)
        && let Some((_, ids)) = b
            .controls
            .iter()
            .find(|(s, _)| *s == ComplianceStandard::FedRamp)
    {
        out.extend(ids.iter().map(|c| sp800_53_token(c)));
    }
    out.dedup();
    out
}

fn text(check: &CheckResult) -> String {
    let mut parts = Vec::new();
    if let Some(e) = &check.evidence {
        parts.push(format!("Evidence: {e}"));
    }
    if let Some(f) = &check.finding {
        parts.push(format!("Finding: {f}"));
    }
    if let Some(r) = &check.recommendation {
        parts.push(format!("Recommendation: {r}"));
    }
    if let ComplianceStatus::NotApplicable { reason } = &check.status {
        parts.push(format!("Not applicable: {reason}"));
    }
    if parts.is_empty() {
        parts.push(check.status.title().to_owned());
    }
    parts.join("\n\n")
}

/// The report as an OSCAL 1.1 `assessment-results` document.
pub(crate) fn render(report: &ComplianceReport) -> Value {
    let std_name = report.standard_name.as_str();
    let doc_uuid = uuid(&[
        "assessment-results",
        std_name,
        &report.runtime_instance,
        &report.generated_at,
    ]);
    let subject_uuid = uuid(&["runtime", &report.runtime_instance]);
    let at = report.generated_at.as_str();
    let mut observations = Vec::new();
    let mut findings = Vec::new();
    let mut reviewed: Vec<String> = Vec::new();
    for check in &report.checks {
        let obs_uuid = uuid(&[&doc_uuid, "observation", &check.id]);
        observations.push(json!({
            "uuid": obs_uuid,
            "title": format!("{} {}", check.id, check.name),
            "description": check.description,
            "methods": ["TEST"],
            "types": ["control-objective"],
            "subjects": [{
                "subject-uuid": subject_uuid,
                "type": "component",
                "title": format!("RingKernel runtime instance {}", report.runtime_instance),
            }],
            "relevant-evidence": [{ "description": text(check) }],
            "collected": at,
        }));
        let state = match check.status {
            ComplianceStatus::Compliant { .. } => "satisfied",
            ComplianceStatus::PartiallyCompliant { .. } | ComplianceStatus::NonCompliant { .. } => {
                "not-satisfied"
            }
            ComplianceStatus::NotApplicable { .. } => continue,
        };
        for control in controls(report, check) {
            findings.push(json!({
                "uuid": uuid(&[&doc_uuid, "finding", &check.id, &control]),
                "title": format!("{} {}: {}", check.id, control, check.status.title()),
                "description": text(check),
                "target": {
                    "type": "objective-id",
                    "target-id": control,
                    "status": { "state": state },
                },
                "related-observations": [{ "observation-uuid": obs_uuid }],
            }));
            if !reviewed.contains(&control) {
                reviewed.push(control);
            }
        }
    }
    reviewed.sort();
    let include: Vec<Value> = reviewed
        .iter()
        .map(|c| json!({ "control-id": c }))
        .collect();
    let mut result = json!({
        "uuid": uuid(&[&doc_uuid, "result"]),
        "title": format!("{std_name} assessment of RingKernel runtime {}", report.runtime_instance),
        "description": format!(
            "Automated checks read from the live runtime ({}, mode {}). {} compliant, {} partially compliant, {} non-compliant, {} not applicable.",
            report.backend,
            report.mode,
            report.summary.compliant,
            report.summary.partially_compliant,
            report.summary.non_compliant,
            report.summary.not_applicable
        ),
        "start": at,
        "local-definitions": {
            "components": [{
                "uuid": subject_uuid,
                "type": "software",
                "title": format!("RingKernel runtime instance {}", report.runtime_instance),
                "description": format!("A RingKernel runtime on {}.", report.backend),
                "status": { "state": "operational" },
            }],
        },
        "reviewed-controls": {
            "control-selections": [{ "include-controls": include }],
        },
        "observations": observations,
    });
    if !findings.is_empty() {
        result["findings"] = Value::Array(findings);
    }
    json!({
        "assessment-results": {
            "uuid": doc_uuid,
            "metadata": {
                "title": format!("RingKernel {std_name} assessment results for {}", report.organization),
                "last-modified": at,
                "version": report.schema,
                "oscal-version": OSCAL_VERSION,
            },
            "import-ap": { "href": format!("urn:ringkernel:assessment-plan:{}", token(&ComplianceStandard::Custom("plan"), std_name)) },
            "results": [result],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_ids_become_oscal_tokens() {
        assert_eq!(sp800_53_token("SC-28(1)"), "sc-28.1");
        assert_eq!(sp800_53_token("AC-6"), "ac-6");
        assert_eq!(token(&ComplianceStandard::Soc2, "CC6.1"), "soc2-cc6.1");
        assert_eq!(
            token(&ComplianceStandard::Gdpr, "Art. 32(1)(a)"),
            "gdpr-art._32.1.a"
        );
        assert_eq!(
            token(&ComplianceStandard::Hipaa, "164.312(a)(2)(iv)"),
            "hipaa-164.312.a.2.iv"
        );
    }

    #[test]
    fn uuids_are_deterministic_rfc4122() {
        let a = uuid(&["x", "y"]);
        assert_eq!(a, uuid(&["x", "y"]));
        assert_ne!(a, uuid(&["xy"]));
        let b: Vec<char> = a.chars().collect();
        assert_eq!(a.len(), 36);
        assert_eq!(b[14], '5');
        assert!(matches!(b[19], '8' | '9' | 'a' | 'b'));
    }
}
