//! Markdown export: a summary table, a checks table, and one section per check.

use std::fmt::Write;

use super::super::ComplianceReport;

/// Escapes text for a Markdown table cell or paragraph: no raw HTML, no table breaks.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn render(r: &ComplianceReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {} compliance report\n", esc(&r.standard_name));
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| Organization | {} |", esc(&r.organization));
    let _ = writeln!(s, "| Generated | {} |", esc(&r.generated_at));
    let _ = writeln!(s, "| Runtime mode | {} |", esc(&r.mode));
    let _ = writeln!(s, "| Runtime instance | {} |", esc(&r.runtime_instance));
    let _ = writeln!(s, "| Backend | {} |", esc(&r.backend));
    let _ = writeln!(s, "| Schema | {} |\n", esc(r.schema));
    let m = &r.summary;
    let _ = writeln!(s, "## Summary\n");
    let _ = writeln!(
        s,
        "| Compliant | Partially compliant | Non-compliant | Not applicable |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|");
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} |\n",
        m.compliant, m.partially_compliant, m.non_compliant, m.not_applicable
    );
    let _ = writeln!(s, "## Checks\n");
    let _ = writeln!(s, "| ID | Check | Controls | Status |");
    let _ = writeln!(s, "|---|---|---|---|");
    for c in &r.checks {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            esc(&c.id),
            esc(&c.name),
            esc(&c.controls.join(", ")),
            c.status.title()
        );
    }
    for c in &r.checks {
        let _ = writeln!(s, "\n### {} — {}\n", esc(&c.id), esc(&c.name));
        if !c.description.is_empty() {
            let _ = writeln!(s, "{}\n", esc(&c.description));
        }
        let _ = writeln!(s, "- **Status:** {}", c.status.title());
        let _ = writeln!(s, "- **Controls:** {}", esc(&c.controls.join(", ")));
        for (label, v) in [
            ("Evidence", &c.evidence),
            ("Finding", &c.finding),
            ("Recommendation", &c.recommendation),
        ] {
            if let Some(v) = v {
                let _ = writeln!(s, "- **{label}:** {}", esc(v));
            }
        }
    }
    s
}
