//! Report exporters: JSON, Markdown, HTML, PDF and OSCAL assessment results. Each renders the same report the
//! same way every time (no clock, no randomness): same report, same bytes.

mod html;
mod markdown;
pub(crate) mod oscal;
mod pdf;

use super::{ComplianceReport, ExportFormat};
use crate::error::{Error, Result};

pub(crate) fn render(report: &ComplianceReport, format: ExportFormat) -> Result<Vec<u8>> {
    match format {
        ExportFormat::Json => {
            let mut v = serde_json::to_vec_pretty(report).map_err(|e| Error::Corrupt {
                what: "compliance report",
                reason: e.to_string(),
            })?;
            v.push(b'\n');
            Ok(v)
        }
        ExportFormat::Markdown => Ok(markdown::render(report).into_bytes()),
        ExportFormat::Html => Ok(html::render(report).into_bytes()),
        ExportFormat::Pdf => pdf::render(report),
        ExportFormat::Oscal => {
            let mut v =
                serde_json::to_vec_pretty(&oscal::render(report)).map_err(|e| Error::Corrupt {
                    what: "OSCAL assessment results",
                    reason: e.to_string(),
                })?;
            v.push(b'\n');
            Ok(v)
        }
    }
}
