//! HTML export: one self-contained file through maud (which escapes every
//! interpolated string), an inline SVG summary graphic, no scripts, and a
//! Content-Security-Policy that allows nothing but the page's own hashed stylesheet.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::{Digest, Sha256};

use super::super::{ComplianceReport, ComplianceStatus};

const STYLE: &str = "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:2em auto;max-width:60em;color:#222}\
h1{font-size:1.6em}table{border-collapse:collapse;width:100%;margin:1em 0}\
td,th{border:1px solid #ccc;padding:.35em .5em;text-align:left;vertical-align:top;font-size:.92em}\
th{background:#f2f2f2}.s-compliant{color:#1b7f3b}.s-partially_compliant{color:#9a6700}\
.s-non_compliant{color:#b42318}.s-not_applicable{color:#666}.meta td:first-child{width:12em;font-weight:bold}\
.check{border-top:1px solid #ddd;padding-top:.5em}.label{font-weight:bold}";

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn summary_svg(r: &ComplianceReport) -> Markup {
    let m = &r.summary;
    let parts = [
        (m.compliant, "#2e9e5b", "compliant"),
        (m.partially_compliant, "#d4a017", "partially compliant"),
        (m.non_compliant, "#d64541", "non-compliant"),
        (m.not_applicable, "#9e9e9e", "not applicable"),
    ];
    let total = parts.iter().map(|p| p.0).sum::<usize>().max(1) as f64;
    // (x, width, count, colour, label) of each non-empty bar segment.
    let mut x = 0.0;
    let mut bars = Vec::new();
    for (n, color, label) in parts.into_iter().filter(|p| p.0 > 0) {
        let w = 600.0 * n as f64 / total;
        bars.push((x, w, n, color, label));
        x += w;
    }
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width="600" height="60" viewBox="0 0 600 60" role="img" aria-label="Status summary" {
            @for (x, w, n, color, label) in bars {
                rect x=(format!("{x:.1}")) y="0" width=(format!("{w:.1}")) height="30" fill=(color) {
                    title { (n) " " (label) }
                }
            }
            text x="0" y="50" font-size="13" {
                (m.compliant) " compliant · " (m.partially_compliant) " partially compliant · "
                (m.non_compliant) " non-compliant · " (m.not_applicable) " not applicable"
            }
        }
    }
}

fn status_cell(s: &ComplianceStatus) -> Markup {
    html! { span class=(format!("s-{}", s.label())) { (s.title()) } }
}

pub(crate) fn render(r: &ComplianceReport) -> String {
    let style_hash = base64(&Sha256::digest(STYLE.as_bytes()));
    let csp = format!(
        "default-src 'none'; style-src 'sha256-{style_hash}'; img-src 'none'; script-src 'none'; base-uri 'none'; form-action 'none'"
    );
    let title = format!("{} compliance report — {}", r.standard_name, r.organization);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(csp);
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { (r.standard_name) " compliance report" }
                table class="meta" {
                    tr { td { "Organization" } td { (r.organization) } }
                    tr { td { "Generated" } td { (r.generated_at) } }
                    tr { td { "Runtime mode" } td { (r.mode) } }
                    tr { td { "Runtime instance" } td { (r.runtime_instance) } }
                    tr { td { "Backend" } td { (r.backend) } }
                    tr { td { "Schema" } td { (r.schema) } }
                }
                h2 { "Summary" }
                (summary_svg(r))
                h2 { "Checks" }
                table {
                    tr { th { "ID" } th { "Check" } th { "Controls" } th { "Status" } }
                    @for c in &r.checks {
                        tr {
                            td { (c.id) }
                            td { (c.name) }
                            td { (c.controls.join(", ")) }
                            td { (status_cell(&c.status)) }
                        }
                    }
                }
                @for c in &r.checks {
                    div class="check" {
                        h3 { (c.id) " — " (c.name) }
                        @if !c.description.is_empty() { p { (c.description) } }
                        p { span class="label" { "Status: " } (status_cell(&c.status)) }
                        p { span class="label" { "Controls: " } (c.controls.join(", ")) }
                        @if let Some(e) = &c.evidence { p { span class="label" { "Evidence: " } (e) } }
                        @if let Some(f) = &c.finding { p { span class="label" { "Finding: " } (f) } }
                        @if let Some(rec) = &c.recommendation { p { span class="label" { "Recommendation: " } (rec) } }
                    }
                }
            }
        }
    };
    page.into_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
