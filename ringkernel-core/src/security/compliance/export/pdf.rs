//! PDF export with krilla: A4 pages, DejaVu Sans embedded as subset fonts, a summary
//! bar, one block per check, as many pages as the checks need. No dates or random
//! ids are written, so the same report gives the same bytes.

use std::sync::Arc;

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::Fill;
use krilla::text::{Font, TextDirection};

use super::super::{ComplianceReport, ComplianceStatus};
use crate::error::{Error, Result};

const W: f32 = 595.0;
const H: f32 = 842.0;
const MARGIN: f32 = 50.0;
const BODY: f32 = 9.5;

/// One drawing operation on a page.
enum Op {
    Text {
        x: f32,
        y: f32,
        size: f32,
        bold: bool,
        color: (u8, u8, u8),
        text: String,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        color: (u8, u8, u8),
    },
}

/// Lays out text into pages of operations.
struct Layout {
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        Layout {
            pages: vec![Vec::new()],
            y: MARGIN,
        }
    }

    fn ensure(&mut self, height: f32) {
        if self.y + height > H - MARGIN - 20.0 {
            self.pages.push(Vec::new());
            self.y = MARGIN;
        }
    }

    fn push(&mut self, op: Op) {
        if let Some(p) = self.pages.last_mut() {
            p.push(op);
        }
    }

    /// Writes wrapped text at `x`, starting on a new line.
    fn text(&mut self, x: f32, size: f32, bold: bool, color: (u8, u8, u8), text: &str) {
        // DejaVu Sans averages well under 0.6 em per character; wrapping at 0.6 em keeps
        // every line inside the margin without measuring glyphs.
        let per_line = (((W - MARGIN - x) / (size * 0.6)) as usize).max(10);
        for line in wrap(text, per_line) {
            self.ensure(size * 1.4);
            self.y += size * 1.35;
            let y = self.y;
            self.push(Op::Text {
                x,
                y,
                size,
                bold,
                color,
                text: line,
            });
        }
    }

    fn gap(&mut self, h: f32) {
        self.y += h;
    }
}

/// Greedy word wrap at `width` characters (long words are split).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_owned();
        while word.chars().count() > width {
            if !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
            }
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
        }
        let extra = if cur.is_empty() { 0 } else { 1 };
        if cur.chars().count() + extra + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&word);
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

fn status_color(s: &ComplianceStatus) -> (u8, u8, u8) {
    match s {
        ComplianceStatus::Compliant { .. } => (27, 127, 59),
        ComplianceStatus::PartiallyCompliant { .. } => (154, 103, 0),
        ComplianceStatus::NonCompliant { .. } => (180, 35, 24),
        ComplianceStatus::NotApplicable { .. } => (102, 102, 102),
    }
}

const INK: (u8, u8, u8) = (34, 34, 34);
const GREY: (u8, u8, u8) = (90, 90, 90);

fn layout(r: &ComplianceReport) -> Vec<Vec<Op>> {
    let mut l = Layout::new();
    l.text(
        MARGIN,
        18.0,
        true,
        INK,
        &format!("{} compliance report", r.standard_name),
    );
    l.gap(6.0);
    for (k, v) in [
        ("Organization", &r.organization),
        ("Generated", &r.generated_at),
        ("Runtime mode", &r.mode),
        ("Runtime instance", &r.runtime_instance),
        ("Backend", &r.backend),
    ] {
        l.text(MARGIN, BODY, false, GREY, &format!("{k}: {v}"));
    }
    l.gap(10.0);
    l.text(MARGIN, 13.0, true, INK, "Summary");
    l.gap(6.0);
    let m = &r.summary;
    let parts = [
        (m.compliant, (46, 158, 91)),
        (m.partially_compliant, (212, 160, 23)),
        (m.non_compliant, (214, 69, 65)),
        (m.not_applicable, (158, 158, 158)),
    ];
    let total = parts.iter().map(|p| p.0).sum::<usize>().max(1) as f32;
    let mut x = MARGIN;
    l.ensure(30.0);
    let bar_y = l.y;
    for (n, color) in parts {
        if n > 0 {
            let w = (W - 2.0 * MARGIN) * n as f32 / total;
            l.push(Op::Rect {
                x,
                y: bar_y,
                w,
                h: 16.0,
                color,
            });
            x += w;
        }
    }
    l.gap(18.0);
    l.text(
        MARGIN,
        BODY,
        false,
        INK,
        &format!(
            "{} compliant, {} partially compliant, {} non-compliant, {} not applicable",
            m.compliant, m.partially_compliant, m.non_compliant, m.not_applicable
        ),
    );
    l.gap(10.0);
    l.text(MARGIN, 13.0, true, INK, "Checks");
    for c in &r.checks {
        l.gap(8.0);
        l.ensure(60.0);
        l.text(MARGIN, 11.0, true, INK, &format!("{}  {}", c.id, c.name));
        l.text(
            MARGIN + 12.0,
            BODY,
            true,
            status_color(&c.status),
            c.status.title(),
        );
        l.text(
            MARGIN + 12.0,
            BODY,
            false,
            GREY,
            &format!("Controls: {}", c.controls.join(", ")),
        );
        if !c.description.is_empty() {
            l.text(MARGIN + 12.0, BODY, false, INK, &c.description);
        }
        for (label, v) in [
            ("Evidence", &c.evidence),
            ("Finding", &c.finding),
            ("Recommendation", &c.recommendation),
        ] {
            if let Some(v) = v {
                l.text(MARGIN + 12.0, BODY, false, INK, &format!("{label}: {v}"));
            }
        }
    }
    l.pages
}

fn fill(color: (u8, u8, u8)) -> Fill {
    Fill {
        paint: rgb::Color::new(color.0, color.1, color.2).into(),
        opacity: NormalizedF32::ONE,
        rule: Default::default(),
    }
}

fn font(bytes: &'static [u8]) -> Result<Font> {
    Font::new(Arc::new(bytes.to_vec()).into(), 0).ok_or_else(|| Error::Corrupt {
        what: "embedded font",
        reason: "DejaVu Sans could not be parsed".into(),
    })
}

pub(crate) fn render(r: &ComplianceReport) -> Result<Vec<u8>> {
    let regular = font(dejavu::sans::regular())?;
    let bold = font(dejavu::sans::bold())?;
    let pages = layout(r);
    let count = pages.len();
    let mut doc = Document::new();
    doc.set_metadata(
        Metadata::new()
            .title(format!(
                "{} compliance report — {}",
                r.standard_name, r.organization
            ))
            .creator("ringkernel-core".into())
            .language("en".into()),
    );
    let settings = PageSettings::from_wh(W, H).ok_or_else(|| Error::Corrupt {
        what: "PDF page",
        reason: "invalid page size".into(),
    })?;
    for (i, ops) in pages.into_iter().enumerate() {
        let mut page = doc.start_page_with(settings.clone());
        let mut surface = page.surface();
        for op in ops {
            match op {
                Op::Text {
                    x,
                    y,
                    size,
                    bold: b,
                    color,
                    text,
                } => {
                    surface.set_fill(Some(fill(color)));
                    let f = if b { bold.clone() } else { regular.clone() };
                    surface.draw_text(
                        Point::from_xy(x, y),
                        f,
                        size,
                        &text,
                        false,
                        TextDirection::Auto,
                    );
                }
                Op::Rect { x, y, w, h, color } => {
                    let mut pb = PathBuilder::new();
                    if let Some(rect) = Rect::from_xywh(x, y, w, h) {
                        pb.push_rect(rect);
                    }
                    if let Some(path) = pb.finish() {
                        surface.set_fill(Some(fill(color)));
                        surface.draw_path(&path);
                    }
                }
            }
        }
        surface.set_fill(Some(fill(GREY)));
        surface.draw_text(
            Point::from_xy(MARGIN, H - MARGIN + 10.0),
            regular.clone(),
            8.0,
            &format!("{} — page {} of {count}", r.standard_name, i + 1),
            false,
            TextDirection::Auto,
        );
        surface.finish();
        page.finish();
    }
    doc.finish().map_err(|e| Error::Corrupt {
        what: "PDF report",
        reason: format!("{e:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrap_keeps_words_and_splits_long_ones() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), vec![""]);
    }
}
