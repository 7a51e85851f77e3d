//! Report exporters: JSON, Markdown, HTML, PDF and OSCAL assessment results. Each renders the same report the
//! same way every time (no clock, no randomness): same report, same bytes.

#[cfg(feature = "html")]
mod html;
mod markdown;
pub(crate) use markdown::esc as markdown_cell;
pub(crate) mod oscal;
#[cfg(feature = "pdf")]
mod pdf;
#[cfg(feature = "pdf")]
pub use pdf::PdfFonts;

use super::{ComplianceReport, ExportFormat};
use crate::error::{Error, Result};

/// The report in `format`; a PDF uses `pdf_fonts` beyond DejaVu Sans.
pub(crate) fn render(
    report: &ComplianceReport,
    format: ExportFormat,
    #[cfg(feature = "pdf")] pdf_fonts: impl FnOnce() -> Result<std::sync::Arc<PdfFonts>>,
) -> Result<Vec<u8>> {
    match format {
        ExportFormat::Json => {
            let mut v = serde_json::to_vec_pretty(report).map_err(|e| {
                Error::corrupt_caused_by("compliance report", "cannot be written as JSON", e)
            })?;
            v.push(b'\n');
            Ok(v)
        }
        ExportFormat::Markdown => Ok(markdown::render(report).into_bytes()),
        #[cfg(feature = "html")]
        ExportFormat::Html => Ok(html::render(report).into_bytes()),
        #[cfg(not(feature = "html"))]
        ExportFormat::Html => Err(not_built("HTML", "html")),
        #[cfg(feature = "pdf")]
        ExportFormat::Pdf => pdf::render(report, &*pdf_fonts()?),
        #[cfg(not(feature = "pdf"))]
        ExportFormat::Pdf => Err(not_built("PDF", "pdf")),
        ExportFormat::Oscal => {
            let mut v = serde_json::to_vec_pretty(&oscal::render(report)).map_err(|e| {
                Error::corrupt_caused_by("OSCAL assessment results", "cannot be written as JSON", e)
            })?;
            v.push(b'\n');
            Ok(v)
        }
    }
}

/// The error for an export whose cargo feature is off.
#[cfg(any(not(feature = "html"), not(feature = "pdf")))]
fn not_built(format: &str, feature: &str) -> Error {
    Error::Unsupported {
        backend: "ringkernel-core",
        what: format!(
            "the {format} report export (build ringkernel-core with its `{feature}` feature, on by default)"
        ),
    }
}
