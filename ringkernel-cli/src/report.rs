//! `ringkernel report`: fleet reports, and reports from a saved security snapshot.

use std::process::ExitCode;

use ringkernel_core::security::compliance::fleet::merge_json;
use ringkernel_core::security::compliance::{
    ComplianceReporter, ComplianceStandard, ExportFormat, SecuritySnapshot,
};

use crate::cli::{FleetArgs, FleetFormat, FormatArg, SnapshotArgs, StandardArg};
use crate::{Failure, Outcome};

/// `report fleet`.
pub(crate) fn fleet(args: &FleetArgs) -> Outcome {
    let inputs = args
        .reports
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| Failure(format!("cannot read {}: {e}", p.display()))))
        .collect::<Result<Vec<_>, _>>()?;
    let fleets = merge_json(&inputs).map_err(|e| Failure(format!("cannot merge: {e}")))?;
    let text = match args.format {
        FleetFormat::Json => {
            let values = fleets
                .iter()
                .map(|f| {
                    let bytes = f.to_json()?;
                    serde_json::from_slice::<serde_json::Value>(&bytes).map_err(Failure::from)
                })
                .collect::<Result<Vec<_>, Failure>>()?;
            serde_json::to_string_pretty(&values)? + "\n"
        }
        FleetFormat::Markdown => fleets
            .iter()
            .map(|f| f.to_markdown())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `report snapshot`.
pub(crate) fn snapshot(args: &SnapshotArgs) -> Outcome {
    let bytes = std::fs::read(&args.snapshot)
        .map_err(|e| Failure(format!("cannot read {}: {e}", args.snapshot.display())))?;
    let snapshot = SecuritySnapshot::from_json(&bytes)
        .map_err(|e| Failure(format!("{}: {e}", args.snapshot.display())))?;
    let standard = match args.standard {
        StandardArg::Soc2 => ComplianceStandard::Soc2,
        StandardArg::Gdpr => ComplianceStandard::Gdpr,
        StandardArg::Hipaa => ComplianceStandard::Hipaa,
        StandardArg::PciDss => ComplianceStandard::PciDss,
        StandardArg::Iso27001 => ComplianceStandard::Iso27001,
        StandardArg::Fedramp => ComplianceStandard::FedRamp,
        StandardArg::NistCsf => ComplianceStandard::NistCsf,
    };
    let format = match args.format {
        FormatArg::Json => ExportFormat::Json,
        FormatArg::Markdown => ExportFormat::Markdown,
        FormatArg::Html => ExportFormat::Html,
        FormatArg::Pdf => ExportFormat::Pdf,
        FormatArg::Oscal => ExportFormat::Oscal,
    };
    if format == ExportFormat::Pdf && args.output.is_none() {
        return Err(Failure("a PDF report needs --output FILE".into()));
    }
    let mut reporter = ComplianceReporter::unattached();
    if let Some(name) = &args.organization {
        reporter = reporter.organization(name);
    }
    let report = reporter.generate_from(&snapshot, standard);
    let bytes = reporter.render(&report, format)?;
    match &args.output {
        Some(path) => std::fs::write(path, bytes)
            .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
