//! Text on a PDF page: which font draws each character (DejaVu Sans first, then the
//! fallbacks in order), the visual order of right-to-left runs (a reduced Unicode bidi
//! algorithm for left-to-right paragraphs without explicit embeddings), and shaping of
//! each run with rustybuzz, so that Arabic joins, marks attach and CJK is drawn.

use krilla::text::{Font, GlyphId, KrillaGlyph};
use rustybuzz::{Direction, UnicodeBuffer};
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// Drawn (and extracted) in place of a character no font has.
pub(super) const REPLACEMENT: char = '\u{FFFD}';

/// One face: its shaping view and the krilla font that embeds it.
pub(super) struct Face<'a> {
    rb: rustybuzz::Face<'a>,
    pdf: Font,
    upem: f32,
}

impl<'a> Face<'a> {
    pub(super) fn new(data: &'a [u8], index: u32, pdf: Font) -> Option<Self> {
        let rb = rustybuzz::Face::from_slice(data, index)?;
        let upem = rb.units_per_em() as f32;
        (upem > 0.0).then_some(Face { rb, pdf, upem })
    }

    fn has(&self, c: char) -> bool {
        self.rb.glyph_index(c).is_some()
    }

    /// The unshaped advance of `c`, in em.
    fn advance(&self, c: char) -> f32 {
        self.rb
            .glyph_index(c)
            .and_then(|g| self.rb.glyph_hor_advance(g))
            .map_or(0.0, |a| f32::from(a) / self.upem)
    }
}

/// A run of glyphs drawn with one font, in visual order; `text` is what it stands for.
pub(super) struct Run {
    pub(super) font: Font,
    pub(super) text: String,
    pub(super) glyphs: Vec<KrillaGlyph>,
    /// The run's width, in em.
    pub(super) advance: f32,
}

/// The faces of a report: DejaVu Sans regular and bold, then the fallbacks in order.
pub(super) struct Shaper<'a> {
    faces: Vec<Face<'a>>,
}

impl<'a> Shaper<'a> {
    pub(super) fn new(regular: Face<'a>, bold: Face<'a>, fallbacks: Vec<Face<'a>>) -> Self {
        let mut faces = vec![regular, bold];
        faces.extend(fallbacks);
        Shaper { faces }
    }

    fn base(bold: bool) -> usize {
        usize::from(bold)
    }

    /// The face that draws `c`, or `None` when no face has it. Marks, spaces and
    /// punctuation stay with the face of what precedes them when it has them, so a word
    /// and its clusters are shaped by one font.
    fn face_for(&self, c: char, bold: bool, current: Option<usize>) -> Option<usize> {
        if c.is_control() {
            return None;
        }
        if let Some(cur) = current {
            let follows = !matches!(
                c.general_category_group(),
                GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number
            );
            if follows && self.faces[cur].has(c) {
                return Some(cur);
            }
        }
        std::iter::once(Self::base(bold))
            .chain(2..self.faces.len())
            .find(|&i| self.faces[i].has(c))
    }

    /// The approximate width of `text` in em (unshaped advances; shaping rarely widens
    /// text, and the layout keeps a margin).
    pub(super) fn width(&self, text: &str, bold: bool) -> f32 {
        let mut current = None;
        let mut w = 0.0;
        for c in text.chars() {
            current = self.face_for(c, bold, current);
            w += match current {
                Some(i) => self.faces[i].advance(c),
                None => self.faces[Self::base(bold)].advance(REPLACEMENT),
            };
        }
        w
    }

    /// How many characters of `text` no face has.
    pub(super) fn uncovered(&self, text: &str, bold: bool) -> usize {
        text.chars()
            .filter(|&c| self.face_for(c, bold, None).is_none())
            .count()
    }

    /// One line of text as glyph runs in visual order, left to right.
    pub(super) fn line(&self, text: &str, bold: bool) -> Vec<Run> {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut current = None;
        let faces: Vec<Option<usize>> = chars
            .iter()
            .map(|&(_, c)| {
                current = self.face_for(c, bold, current);
                current
            })
            .collect();
        let levels = levels(&chars.iter().map(|&(_, c)| c).collect::<Vec<_>>());
        // Logical runs: one face, one level.
        let mut runs: Vec<(usize, usize, u8, Option<usize>)> = Vec::new();
        for (i, &(start, c)) in chars.iter().enumerate() {
            let end = start + c.len_utf8();
            match runs.last_mut() {
                Some(r) if r.2 == levels[i] && r.3 == faces[i] => r.1 = end,
                _ => runs.push((start, end, levels[i], faces[i])),
            }
        }
        // Rule L2: from the highest level down to 1, reverse every maximal sequence of
        // runs at that level or higher.
        let max = runs.iter().map(|r| r.2).max().unwrap_or(0);
        for level in (1..=max).rev() {
            let mut i = 0;
            while i < runs.len() {
                if runs[i].2 >= level {
                    let mut j = i;
                    while j < runs.len() && runs[j].2 >= level {
                        j += 1;
                    }
                    runs[i..j].reverse();
                    i = j;
                } else {
                    i += 1;
                }
            }
        }
        runs.into_iter()
            .map(|(start, end, level, face)| match face {
                Some(f) => self.shape(f, &text[start..end], level % 2 == 1),
                None => self.replacement(text[start..end].chars().count(), bold),
            })
            .collect()
    }

    fn shape(&self, face: usize, text: &str, rtl: bool) -> Run {
        let face = &self.faces[face];
        let mut buffer = UnicodeBuffer::new();
        buffer.push_str(text);
        buffer.set_direction(if rtl {
            Direction::RightToLeft
        } else {
            Direction::LeftToRight
        });
        buffer.guess_segment_properties();
        let out = rustybuzz::shape(&face.rb, &[], buffer);
        let mut starts: Vec<usize> = out
            .glyph_infos()
            .iter()
            .map(|i| i.cluster as usize)
            .collect();
        starts.sort_unstable();
        starts.dedup();
        let mut advance = 0.0;
        let glyphs = out
            .glyph_infos()
            .iter()
            .zip(out.glyph_positions())
            .map(|(info, pos)| {
                let start = (info.cluster as usize).min(text.len());
                let end = starts
                    .iter()
                    .copied()
                    .find(|&s| s > start)
                    .unwrap_or(text.len());
                let x_advance = pos.x_advance as f32 / face.upem;
                advance += x_advance;
                KrillaGlyph::new(
                    GlyphId::new(info.glyph_id),
                    x_advance,
                    pos.x_offset as f32 / face.upem,
                    pos.y_offset as f32 / face.upem,
                    pos.y_advance as f32 / face.upem,
                    start..end,
                    None,
                )
            })
            .collect();
        Run {
            font: face.pdf.clone(),
            text: text.to_owned(),
            glyphs,
            advance,
        }
    }

    /// `n` replacement characters, drawn and extracted as U+FFFD.
    fn replacement(&self, n: usize, bold: bool) -> Run {
        let face = &self.faces[Self::base(bold)];
        let glyph = face.rb.glyph_index(REPLACEMENT).map_or(0, |g| g.0);
        let a = face.advance(REPLACEMENT);
        let len = REPLACEMENT.len_utf8();
        Run {
            font: face.pdf.clone(),
            text: std::iter::repeat_n(REPLACEMENT, n).collect(),
            glyphs: (0..n)
                .map(|i| {
                    KrillaGlyph::new(
                        GlyphId::new(u32::from(glyph)),
                        a,
                        0.0,
                        0.0,
                        0.0,
                        i * len..(i + 1) * len,
                        None,
                    )
                })
                .collect(),
            advance: a * n as f32,
        }
    }
}

/// Bidi classes, reduced to what a left-to-right paragraph without explicit
/// embeddings needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    /// Strong left-to-right.
    L,
    /// Strong right-to-left (Hebrew, Arabic and the other RTL scripts).
    R,
    /// A number (European digits after right-to-left text, Arabic-Indic digits).
    Num,
    /// European digits (resolved to `L` or `Num` by what precedes them).
    En,
    /// A nonspacing mark: takes the class of its base.
    Nsm,
    /// Neutral: spaces, punctuation, symbols.
    N,
}

fn right_to_left(c: char) -> bool {
    matches!(u32::from(c),
        0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFE | 0x10800..=0x10FFF | 0x1E800..=0x1EFFF)
}

fn class(c: char) -> Class {
    match c.general_category() {
        GeneralCategory::DecimalNumber => {
            if matches!(u32::from(c), 0x0660..=0x0669 | 0x06F0..=0x06F9) {
                Class::Num
            } else {
                Class::En
            }
        }
        GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark => Class::Nsm,
        _ => match c.general_category_group() {
            GeneralCategoryGroup::Letter | GeneralCategoryGroup::Mark if right_to_left(c) => {
                Class::R
            }
            GeneralCategoryGroup::Letter | GeneralCategoryGroup::Mark => Class::L,
            _ => Class::N,
        },
    }
}

/// Embedding levels of a left-to-right paragraph (UAX #9 rules W1, W2/W7, N1/N2, I1):
/// 0 for left-to-right text, 1 for right-to-left text, 2 for numbers inside it.
fn levels(chars: &[char]) -> Vec<u8> {
    let mut cls: Vec<Class> = chars.iter().map(|&c| class(c)).collect();
    let mut prev = Class::L;
    for c in cls.iter_mut() {
        if *c == Class::Nsm {
            *c = prev;
        }
        prev = *c;
    }
    let mut strong = Class::L;
    for c in cls.iter_mut() {
        match *c {
            Class::L | Class::R => strong = *c,
            Class::En => {
                *c = if strong == Class::R {
                    Class::Num
                } else {
                    Class::L
                }
            }
            _ => {}
        }
    }
    // Neutrals between two right-to-left sides (numbers count as such) are
    // right-to-left; all others take the paragraph's direction.
    let side = |c: Class| match c {
        Class::R | Class::Num => Some(Class::R),
        Class::L => Some(Class::L),
        _ => None,
    };
    let mut i = 0;
    while i < cls.len() {
        if side(cls[i]).is_some() {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < cls.len() && side(cls[j]).is_none() {
            j += 1;
        }
        let before = if i == 0 {
            Class::L
        } else {
            side(cls[i - 1]).unwrap_or(Class::L)
        };
        let after = cls.get(j).and_then(|&c| side(c)).unwrap_or(Class::L);
        let resolved = if before == Class::R && after == Class::R {
            Class::R
        } else {
            Class::L
        };
        cls[i..j].fill(resolved);
        i = j;
    }
    cls.into_iter()
        .map(|c| match c {
            Class::R => 1,
            Class::Num => 2,
            _ => 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use krilla::text::{Font, Glyph};
    use proptest::prelude::*;

    use super::{Face, Shaper, levels};

    fn dejavu() -> Shaper<'static> {
        let face = |data: &'static [u8]| {
            let pdf = Font::new(data.into(), 0).unwrap();
            Face::new(data, 0, pdf).unwrap()
        };
        Shaper::new(
            face(dejavu::sans::regular()),
            face(dejavu::sans::bold()),
            Vec::new(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any text lays out without a panic, and every glyph names a range of its run's
        /// text on character boundaries (krilla slices the text with it).
        #[test]
        fn any_text_gives_glyphs_within_their_runs_text(
            text in "(\\PC|[\\x00-\\x1f\u{300}-\u{36f}\u{590}-\u{6ff}\u{202a}-\u{202e}\u{4e00}-\u{4e20} 0-9])*",
            bold in any::<bool>(),
        ) {
            let shaper = dejavu();
            let width = shaper.width(&text, bold);
            prop_assert!(width.is_finite() && width >= 0.0);
            let runs = shaper.line(&text, bold);
            for run in &runs {
                for g in &run.glyphs {
                    let r = g.text_range();
                    prop_assert!(r.start <= r.end && r.end <= run.text.len());
                    prop_assert!(run.text.is_char_boundary(r.start) && run.text.is_char_boundary(r.end));
                }
            }
            let chars: usize = runs.iter().map(|r| r.text.chars().count()).sum();
            prop_assert_eq!(chars, text.chars().count(), "every character is drawn or replaced");
        }
    }

    fn lv(s: &str) -> Vec<u8> {
        levels(&s.chars().collect::<Vec<_>>())
    }

    #[test]
    fn levels_of_a_left_to_right_paragraph() {
        assert_eq!(lv("ab c"), [0, 0, 0, 0]);
        // Arabic, a number inside it, and the space between: one right-to-left run.
        assert_eq!(lv("a بت 12 ث."), [0, 0, 1, 1, 1, 2, 2, 1, 1, 0]);
        // Digits after Latin stay left-to-right; the space between scripts is LTR.
        assert_eq!(lv("x1 א"), [0, 0, 0, 1]);
        // A lone combining mark and control characters do not upset anything.
        assert_eq!(lv("\u{301}\u{1}"), [0, 0]);
        assert!(lv("").is_empty());
    }
}
