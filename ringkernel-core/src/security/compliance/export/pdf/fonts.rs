//! The fonts a PDF report may embed beyond DejaVu Sans: read once, validated, kept in
//! the order they are tried.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Well-known places of the Noto fonts that cover what DejaVu Sans lacks (CJK first,
/// then Arabic and Hebrew): Debian and Ubuntu (`fonts-noto-cjk`, `fonts-noto-core`),
/// Fedora and Arch. Missing files are skipped. Face 0 of the CJK collection is
/// "Noto Sans CJK JP", which has every ideograph (with Japanese glyph forms).
const SYSTEM_FONTS: &[&str] = &[
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf",
    "/usr/share/fonts/google-noto/NotoSansArabic-Regular.ttf",
    "/usr/share/fonts/noto/NotoSansArabic-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansHebrew-Regular.ttf",
    "/usr/share/fonts/google-noto/NotoSansHebrew-Regular.ttf",
    "/usr/share/fonts/noto/NotoSansHebrew-Regular.ttf",
];

/// The files and face indices of a [`PdfFonts::ENV`] value: `path[#N]` entries
/// separated by `:` (a `#` not followed by a number belongs to the path).
fn env_entries(list: &str) -> Vec<(&str, u32)> {
    list.split(':')
        .filter(|e| !e.trim().is_empty())
        .map(|entry| {
            entry
                .rsplit_once('#')
                .and_then(|(p, i)| Some((p, i.parse::<u32>().ok()?)))
                .unwrap_or((entry, 0))
        })
        .collect()
}

/// One face of a font file, read into memory.
#[derive(Clone)]
pub(super) struct FontFile {
    pub(super) path: PathBuf,
    pub(super) index: u32,
    pub(super) data: Arc<Vec<u8>>,
}

/// Fallback fonts for the PDF export, tried in order for every character DejaVu Sans
/// (always embedded) does not have.
///
/// Only the glyphs a report uses are embedded (subset fonts), so a large font file
/// costs memory while rendering, not PDF size. A character no font has is drawn as
/// U+FFFD (�), counted, and the report ends with a note saying how many there were:
/// text is never dropped silently. The JSON export always has every string intact.
///
/// ```no_run
/// use ringkernel_core::security::compliance::{ComplianceReporter, PdfFonts};
///
/// # fn main() -> ringkernel_core::Result<()> {
/// let fonts = PdfFonts::none()
///     .with_file("/opt/fonts/NotoSansCJK-Regular.ttc")?
///     .with_file("/opt/fonts/NotoSansArabic-Regular.ttf")?;
/// let reporter = ComplianceReporter::unattached().pdf_fonts(fonts);
/// # let _ = reporter;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct PdfFonts {
    pub(super) files: Vec<FontFile>,
}

impl fmt::Debug for PdfFonts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.files.iter().map(|x| (&x.path, x.index)))
            .finish()
    }
}

impl PdfFonts {
    /// The environment variable naming fallback font files for [`PdfFonts::system`]:
    /// paths separated by `:`, each optionally followed by `#N` to pick face `N` of a
    /// collection (`.ttc`), e.g.
    /// `/opt/fonts/NotoSansCJK-Regular.ttc#2:/opt/fonts/NotoSansArabic-Regular.ttf`.
    pub const ENV: &'static str = "RINGKERNEL_PDF_FONTS";

    /// No fallback fonts: DejaVu Sans only.
    pub fn none() -> Self {
        PdfFonts::default()
    }

    /// The fonts named in [`PdfFonts::ENV`], in its order, then the Noto fonts found in
    /// their usual system places (CJK, Arabic, Hebrew). What a reporter uses unless
    /// given [`ComplianceReporter::pdf_fonts`](crate::security::compliance::ComplianceReporter::pdf_fonts).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when a file named in the variable cannot be read or is
    /// not a font: a font path set for production must not be ignored quietly. The
    /// well-known system paths are only used when present.
    pub fn system() -> Result<Self> {
        let mut fonts = PdfFonts::none();
        if let Some(list) = std::env::var_os(Self::ENV) {
            let list = list.to_string_lossy().into_owned();
            for (path, index) in env_entries(&list) {
                fonts = fonts.with_collection_face(path, index)?;
            }
        }
        for path in SYSTEM_FONTS {
            let present = Path::new(path).is_file();
            let already = fonts.files.iter().any(|f| f.path == Path::new(path));
            if present && !already {
                fonts = fonts.with_file(path)?;
            }
        }
        Ok(fonts)
    }

    /// Adds a font file (TrueType or OpenType; face 0 of a collection) after those
    /// already added.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the file cannot be read or is not a font.
    pub fn with_file(self, path: impl AsRef<Path>) -> Result<Self> {
        self.with_collection_face(path, 0)
    }

    /// Adds face `index` of a font collection (`.ttc`/`.otc`) after the fonts already
    /// added; Noto Sans CJK's faces are 0 JP, 1 KR, 2 SC, 3 TC, 4 HK.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the file cannot be read, is not a font, or has no
    /// face `index`.
    pub fn with_collection_face(mut self, path: impl AsRef<Path>, index: u32) -> Result<Self> {
        let path = path.as_ref();
        let data = Arc::new(std::fs::read(path).map_err(|e| {
            Error::InvalidConfig(format!("PDF font {}: cannot read: {e}", path.display()))
        })?);
        if rustybuzz::Face::from_slice(&data, index).is_none()
            || krilla::text::Font::new(data.clone().into(), index).is_none()
        {
            return Err(Error::InvalidConfig(format!(
                "PDF font {}: not a font file, or it has no face {index}",
                path.display()
            )));
        }
        self.files.push(FontFile {
            path: path.to_owned(),
            index,
            data,
        });
        Ok(self)
    }

    /// The fallback fonts, in the order they are tried: each file and face index.
    pub fn files(&self) -> Vec<(PathBuf, u32)> {
        self.files
            .iter()
            .map(|f| (f.path.clone(), f.index))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{PdfFonts, env_entries};

    #[test]
    fn env_entries_name_files_and_faces() {
        assert_eq!(
            env_entries("/a/cjk.ttc#2:/b/arabic.ttf::/c/odd#name.ttf"),
            [
                ("/a/cjk.ttc", 2),
                ("/b/arabic.ttf", 0),
                ("/c/odd#name.ttf", 0)
            ]
        );
        assert!(env_entries("").is_empty());
    }

    #[test]
    fn a_file_that_is_not_a_font_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join("bogus.ttf");
        std::fs::write(&bogus, b"not a font").unwrap();
        for path in [bogus, dir.path().join("missing.ttf")] {
            let e = PdfFonts::none().with_file(&path).unwrap_err();
            assert!(matches!(e, crate::Error::InvalidConfig(_)), "{e}");
            assert!(e.to_string().contains("PDF font"), "{e}");
        }
    }
}
