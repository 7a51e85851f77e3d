//! Markdown export: a summary table, a checks table, and one section per check.

use std::fmt::Write;

use super::super::ComplianceReport;

/// Escapes text for an inline position (a table cell, after a list marker): no raw
/// HTML, no emphasis, code, links or strikethrough, no table breaks. Line breaks
/// become spaces: a newline would end the table row or start a new block. Every other
/// control character but the tab (C0, DEL, C1) becomes a decimal character reference
/// (`&#11;`): renderers disagree on them (pulldown-cmark, unlike CommonMark, takes
/// vertical tab and form feed for whitespace, so a line of them is blank and a heading
/// marker after them opens a heading), and a reference is text to every renderer. A
/// NUL reads back as U+FFFD, as CommonMark replaces it anyway.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c if c.is_control() && c != '\t' => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Escapes text that starts a line (a paragraph of its own): [`esc`], and then the
/// marker that would make the line a block of another kind (ATX heading `#`, list
/// `-` `+` `1.` `1)`, thematic break or setext underline `---` `===`, fence `~~~`) is
/// backslash-escaped, and leading spaces (an indented code block) are kept as
/// character references. (`*`, `_`, `` ` ``, `>`, `|` and `<` are escaped by `esc`.)
fn esc_line(s: &str) -> String {
    let text = esc(s);
    let body = text.trim_start_matches([' ', '\t']);
    let mut out = String::with_capacity(text.len() + 8);
    for c in text[..text.len() - body.len()].chars() {
        out.push_str(if c == '\t' { "&#9;" } else { "&#32;" });
    }
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    match body.as_bytes().get(digits) {
        Some(b'#' | b'-' | b'+' | b'=' | b'~') if digits == 0 => out.push('\\'),
        Some(b'.' | b')') if digits > 0 => {
            out.push_str(&body[..digits]);
            out.push('\\');
            out.push_str(&body[digits..]);
            return out;
        }
        _ => {}
    }
    out.push_str(body);
    out
}

/// Escapes text inside a heading: [`esc`], and every `#`, so that a trailing run of
/// them is not taken for the heading's closing sequence (and dropped).
fn esc_heading(s: &str) -> String {
    esc(s).replace('#', "\\#")
}

pub(crate) fn render(r: &ComplianceReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {} compliance report\n", esc_heading(&r.standard_name));
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
        let _ = writeln!(
            s,
            "\n### {} — {}\n",
            esc_heading(&c.id),
            esc_heading(&c.name)
        );
        if !c.description.is_empty() {
            let _ = writeln!(s, "{}\n", esc_line(&c.description));
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
