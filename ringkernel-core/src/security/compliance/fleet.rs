//! Fleet reports: the compliance reports of many runtimes (gathered as JSON from many
//! machines) merged into one report per standard that names which runtime failed which
//! check.
//!
//! ```
//! use ringkernel_core::runtime::RuntimeBuilder;
//! use ringkernel_core::security::compliance::{ComplianceReporter, ComplianceStandard, ExportFormat};
//! use ringkernel_core::security::compliance::fleet::merge_json;
//!
//! let (a, b) = (
//!     RuntimeBuilder::new().development().build()?,
//!     RuntimeBuilder::new().development().build()?,
//! );
//! let json: Vec<Vec<u8>> = [&a, &b]
//!     .iter()
//!     .map(|rt| {
//!         let r = ComplianceReporter::new(*rt);
//!         r.render(&r.generate(ComplianceStandard::Soc2)?, ExportFormat::Json)
//!     })
//!     .collect::<Result<_, _>>()?;
//! let fleet = merge_json(&json)?;
//! assert_eq!(fleet.len(), 1); // one standard
//! let enc = fleet[0].checks.iter().find(|c| c.id == "ENC-01").unwrap();
//! assert_eq!(enc.failing.len(), 2); // neither development runtime seals memory
//! # Ok::<(), ringkernel_core::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::{ComplianceReport, ComplianceStatus, REPORT_SCHEMA};
use crate::error::{Error, Result};

/// The JSON schema id of fleet reports.
pub const FLEET_SCHEMA: &str = "ringkernel.compliance-fleet/v1";

/// One runtime's report as read from its JSON export.
#[derive(Clone, Debug, Deserialize)]
struct ReportRecord {
    schema: String,
    standard_name: String,
    organization: String,
    generated_at: String,
    #[serde(default)]
    runtime_instance: String,
    backend: String,
    mode: String,
    checks: Vec<CheckRecord>,
}

#[derive(Clone, Debug, Deserialize)]
struct CheckRecord {
    id: String,
    name: String,
    controls: Vec<String>,
    status: ComplianceStatus,
}

/// A runtime that contributed a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FleetRuntime {
    /// Its instance id (32 hex digits; empty for reports that predate instance ids).
    pub instance: String,
    /// The organization its report names.
    pub organization: String,
    /// When its report was generated.
    pub generated_at: String,
    /// Its backend and device.
    pub backend: String,
    /// Production or development.
    pub mode: String,
}

/// A runtime for which a check was not compliant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FleetFailure {
    /// The runtime's instance id.
    pub runtime: String,
    /// `partially_compliant` or `non_compliant`.
    pub status: String,
    /// What its report found.
    pub finding: String,
}

/// One check across the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FleetCheck {
    /// The check's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Control references (as in the reports).
    pub controls: Vec<String>,
    /// The worst status any runtime had (`non_compliant` > `partially_compliant` >
    /// `compliant` > `not_applicable`).
    pub worst: String,
    /// Runtimes per status label.
    pub counts: BTreeMap<String, usize>,
    /// The runtimes that failed it (partially or not compliant), with their findings.
    pub failing: Vec<FleetFailure>,
    /// Runtimes whose report does not contain the check.
    pub missing: Vec<String>,
}

/// The reports of one standard across the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FleetReport {
    /// [`FLEET_SCHEMA`].
    pub schema: &'static str,
    /// The standard's name.
    pub standard: String,
    /// Every runtime that contributed, ordered by instance id.
    pub runtimes: Vec<FleetRuntime>,
    /// Every check, ordered by id.
    pub checks: Vec<FleetCheck>,
    /// Checks that at least one runtime failed.
    pub failing_checks: usize,
}

fn rank(label: &str) -> u8 {
    match label {
        "non_compliant" => 3,
        "partially_compliant" => 2,
        "compliant" => 1,
        _ => 0,
    }
}

fn finding(status: &ComplianceStatus) -> String {
    match status {
        ComplianceStatus::PartiallyCompliant { finding, .. }
        | ComplianceStatus::NonCompliant { finding, .. } => finding.clone(),
        _ => String::new(),
    }
}

/// Merges the JSON exports (`ExportFormat::Json`) of many runtimes' reports into one
/// fleet report per standard, ordered by standard name. An input that is not such a
/// report is [`Error::Corrupt`] naming its position.
pub fn merge_json(inputs: &[Vec<u8>]) -> Result<Vec<FleetReport>> {
    let records = inputs
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let r: ReportRecord = serde_json::from_slice(bytes).map_err(|e| {
                Error::corrupt_caused_by(
                    "compliance report",
                    format!("input {i}: not a report's JSON export"),
                    e,
                )
            })?;
            if r.schema != REPORT_SCHEMA {
                return Err(Error::corrupt(
                    "compliance report",
                    format!(
                        "input {i}: schema {:?}, this build merges {REPORT_SCHEMA:?}",
                        r.schema
                    ),
                ));
            }
            Ok(r)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(merge_records(records))
}

/// Merges reports generated in this process (see [`merge_json`]).
pub fn merge(reports: &[ComplianceReport]) -> Result<Vec<FleetReport>> {
    let inputs = reports
        .iter()
        .map(|r| {
            serde_json::to_vec(r).map_err(|e| {
                Error::corrupt_caused_by("compliance report", "cannot be written as JSON", e)
            })
        })
        .collect::<Result<Vec<_>>>()?;
    merge_json(&inputs)
}

fn merge_records(records: Vec<ReportRecord>) -> Vec<FleetReport> {
    let mut by_standard: BTreeMap<String, Vec<ReportRecord>> = BTreeMap::new();
    for r in records {
        by_standard
            .entry(r.standard_name.clone())
            .or_default()
            .push(r);
    }
    by_standard
        .into_iter()
        .map(|(standard, mut reports)| {
            reports.sort_by(|a, b| a.runtime_instance.cmp(&b.runtime_instance));
            let runtimes: Vec<FleetRuntime> = reports
                .iter()
                .map(|r| FleetRuntime {
                    instance: r.runtime_instance.clone(),
                    organization: r.organization.clone(),
                    generated_at: r.generated_at.clone(),
                    backend: r.backend.clone(),
                    mode: r.mode.clone(),
                })
                .collect();
            let mut checks: BTreeMap<String, FleetCheck> = BTreeMap::new();
            for r in &reports {
                for c in &r.checks {
                    let fc = checks.entry(c.id.clone()).or_insert_with(|| FleetCheck {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        controls: c.controls.clone(),
                        worst: c.status.label().into(),
                        counts: BTreeMap::new(),
                        failing: Vec::new(),
                        missing: Vec::new(),
                    });
                    let label = c.status.label();
                    *fc.counts.entry(label.into()).or_default() += 1;
                    if rank(label) > rank(&fc.worst) {
                        fc.worst = label.into();
                    }
                    if rank(label) >= 2 {
                        fc.failing.push(FleetFailure {
                            runtime: r.runtime_instance.clone(),
                            status: label.into(),
                            finding: finding(&c.status),
                        });
                    }
                }
            }
            for fc in checks.values_mut() {
                fc.missing = reports
                    .iter()
                    .filter(|r| !r.checks.iter().any(|c| c.id == fc.id))
                    .map(|r| r.runtime_instance.clone())
                    .collect();
            }
            let checks: Vec<FleetCheck> = checks.into_values().collect();
            FleetReport {
                schema: FLEET_SCHEMA,
                failing_checks: checks.iter().filter(|c| !c.failing.is_empty()).count(),
                standard,
                runtimes,
                checks,
            }
        })
        .collect()
}

impl FleetReport {
    /// The fleet report as pretty JSON.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(self).map_err(|e| {
            Error::corrupt_caused_by("fleet report", "cannot be written as JSON", e)
        })?;
        v.push(b'\n');
        Ok(v)
    }

    /// The fleet report as Markdown: the runtimes, then per check its worst status and
    /// which runtime failed it with what finding. Report text is escaped as in the
    /// single-runtime Markdown export, so it stays text.
    pub fn to_markdown(&self) -> String {
        let esc = super::export::markdown_cell;
        let mut s = String::new();
        let _ = writeln!(s, "# Fleet compliance: {}\n", esc(&self.standard));
        let _ = writeln!(
            s,
            "{} runtime(s); {} check(s) failed by at least one.\n",
            self.runtimes.len(),
            self.failing_checks
        );
        let _ = writeln!(s, "| runtime | organization | mode | backend | generated |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for r in &self.runtimes {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                esc(&r.instance),
                esc(&r.organization),
                esc(&r.mode),
                esc(&r.backend),
                esc(&r.generated_at)
            );
        }
        let _ = writeln!(s, "\n| check | name | worst | failed by |");
        let _ = writeln!(s, "|---|---|---|---|");
        for c in &self.checks {
            let failed: Vec<String> = c
                .failing
                .iter()
                .map(|f| format!("{} ({}): {}", esc(&f.runtime), f.status, esc(&f.finding)))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                esc(&c.id),
                esc(&c.name),
                c.worst,
                if failed.is_empty() {
                    "-".to_owned()
                } else {
                    failed.join("; ")
                }
            );
        }
        s
    }
}
