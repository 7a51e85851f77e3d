//! `ringkernel report`: fleet reports.

use std::process::ExitCode;

use ringkernel_core::security::compliance::fleet::merge_json;

use crate::cli::{FleetArgs, FleetFormat};
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
