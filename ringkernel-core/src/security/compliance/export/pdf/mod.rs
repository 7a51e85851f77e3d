//! PDF export with krilla: A4 pages, DejaVu Sans and the fallback fonts a report needs
//! embedded as subset fonts, a summary bar, one block per check, as many pages as the
//! checks need. No dates or random ids are written, so the same report with the same
//! fonts gives the same bytes.

mod fonts;
mod text;

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::Fill;
use krilla::surface::Surface;
use krilla::text::Font;

pub use fonts::PdfFonts;
use text::{Face, Shaper};

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
struct Layout<'s, 'a> {
    shaper: &'s Shaper<'a>,
    pages: Vec<Vec<Op>>,
    y: f32,
    /// Characters no font has (drawn as U+FFFD).
    uncovered: usize,
}

impl<'s, 'a> Layout<'s, 'a> {
    fn new(shaper: &'s Shaper<'a>) -> Self {
        Layout {
            shaper,
            pages: vec![Vec::new()],
            y: MARGIN,
            uncovered: 0,
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
        self.uncovered += self.shaper.uncovered(text, bold);
        // Lines are measured with unshaped advances; the 5 % margin absorbs what shaping
        // (kerning, Arabic joining forms) changes.
        let width = (W - MARGIN - x) * 0.95 / size;
        for line in wrap(text, width, |s| self.shaper.width(s, bold)) {
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

/// Greedy word wrap at `width` as `measure` measures (words wider than a line are
/// split between characters, as CJK text without spaces needs).
fn wrap(text: &str, width: f32, measure: impl Fn(&str) -> f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    let mut cur_w = 0.0;
    let space = measure(" ");
    for word in text.split_whitespace() {
        let mut word = word.to_owned();
        let mut word_w = measure(&word);
        if word_w > width {
            if !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
                cur_w = 0.0;
            }
            let mut piece = String::new();
            let mut piece_w = 0.0;
            let mut buf = [0u8; 4];
            for c in word.chars() {
                let w = measure(c.encode_utf8(&mut buf));
                if !piece.is_empty() && piece_w + w > width {
                    lines.push(std::mem::take(&mut piece));
                    piece_w = 0.0;
                }
                piece.push(c);
                piece_w += w;
            }
            word = piece;
            word_w = piece_w;
        }
        if !cur.is_empty() && cur_w + space + word_w > width {
            lines.push(std::mem::take(&mut cur));
            cur_w = 0.0;
        }
        if !cur.is_empty() {
            cur.push(' ');
            cur_w += space;
        }
        cur.push_str(&word);
        cur_w += word_w;
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
        ComplianceStatus::NonCompliant { .. } => RED,
        ComplianceStatus::NotApplicable { .. } => (102, 102, 102),
    }
}

const INK: (u8, u8, u8) = (34, 34, 34);
const RED: (u8, u8, u8) = (180, 35, 24);
const GREY: (u8, u8, u8) = (90, 90, 90);

fn layout(r: &ComplianceReport, shaper: &Shaper<'_>) -> Vec<Vec<Op>> {
    let mut l = Layout::new(shaper);
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
    if l.uncovered > 0 {
        let n = l.uncovered;
        tracing::warn!(
            characters = n,
            "PDF report: characters without a font are drawn as U+FFFD"
        );
        l.gap(12.0);
        l.text(
            MARGIN,
            BODY,
            true,
            RED,
            &format!(
                "Note: {n} character{} in this report had no font and {} shown as \u{FFFD}; \
                 the JSON export has the text intact. Add fonts with {} or PdfFonts.",
                if n == 1 { "" } else { "s" },
                if n == 1 { "is" } else { "are" },
                PdfFonts::ENV,
            ),
        );
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

fn face<'a>(data: &'a [u8], pdf_data: krilla::Data, index: u32, name: &str) -> Result<Face<'a>> {
    Font::new(pdf_data, index)
        .and_then(|pdf| Face::new(data, index, pdf))
        .ok_or_else(|| Error::corrupt("PDF font", format!("{name} could not be parsed")))
}

/// Draws one line: its runs in visual order, each advancing the pen by its width.
fn draw_line(
    surface: &mut Surface<'_>,
    shaper: &Shaper<'_>,
    (x, y): (f32, f32),
    size: f32,
    bold: bool,
    text: &str,
) {
    let mut x = x;
    for run in shaper.line(text, bold) {
        surface.draw_glyphs(
            Point::from_xy(x, y),
            run.glyphs.as_slice(),
            run.font,
            &run.text,
            size,
            false,
        );
        x += run.advance * size;
    }
}

pub(crate) fn render(r: &ComplianceReport, fonts: &PdfFonts) -> Result<Vec<u8>> {
    let (regular, bold) = (dejavu::sans::regular(), dejavu::sans::bold());
    let regular = face(regular, regular.into(), 0, "DejaVu Sans")?;
    let bold = face(bold, bold.into(), 0, "DejaVu Sans Bold")?;
    let fallbacks = fonts
        .files
        .iter()
        .map(|f| {
            let name = f.path.display().to_string();
            face(&f.data, f.data.clone().into(), f.index, &name)
        })
        .collect::<Result<Vec<_>>>()?;
    let shaper = Shaper::new(regular, bold, fallbacks);
    let pages = layout(r, &shaper);
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
    let settings = PageSettings::from_wh(W, H)
        .ok_or_else(|| Error::corrupt("PDF page", "invalid page size"))?;
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
                    draw_line(&mut surface, &shaper, (x, y), size, b, &text);
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
        draw_line(
            &mut surface,
            &shaper,
            (MARGIN, H - MARGIN + 10.0),
            8.0,
            false,
            &format!("{} — page {} of {count}", r.standard_name, i + 1),
        );
        surface.finish();
        page.finish();
    }
    doc.finish()
        .map_err(|e| Error::corrupt("PDF report", format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::wrap;

    fn chars(s: &str) -> f32 {
        s.chars().count() as f32
    }

    #[test]
    fn wrap_keeps_words_and_splits_long_ones() {
        assert_eq!(wrap("a bb ccc", 4.0, chars), vec!["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4.0, chars), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4.0, chars), vec![""]);
        // Wide characters (CJK) wrap by width, not by count.
        let wide = |s: &str| 2.0 * chars(s);
        assert_eq!(wrap("内核处理器", 4.0, wide), vec!["内核", "处理", "器"]);
    }
}
