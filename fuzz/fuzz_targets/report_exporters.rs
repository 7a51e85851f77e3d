//! Every report exporter fed hostile text: kernel ids, findings, evidence, custom check
//! ids, names, descriptions and control references, organization, backend and standard
//! names, all fuzzer-chosen. The fleet merge of the JSON export is fed too (and raw
//! bytes as JSON exports to merge).
//!
//! Each report is rendered twice: as the fuzzer wrote it, and with every non-empty
//! string replaced by a plain placeholder (the "tame" twin, same shape, same order). Properties:
//! - JSON and OSCAL parse (serde_json); the JSON gives every string back unchanged;
//! - HTML has exactly as many `<` and `"` as its tame twin: no text became a tag or
//!   left an attribute;
//! - Markdown (and the fleet Markdown) parses (pulldown-cmark, GFM tables) into the
//!   same blocks and inline elements as its tame twin, with no raw HTML: the text
//!   stays text;
//! - PDF starts with `%PDF-` and ends with `%%EOF` (rendered for one input in 32:
//!   it is slow). With `RINGKERNEL_FUZZ_PDF_DIR` set, every input's PDF is rendered
//!   and written there: `scripts/fuzz.sh` replays the corpus so and runs
//!   `qpdf --check` on each (qpdf is a separate process, too slow for the loop).
//!
//! Speed: one reporter serves every input, so the system fonts the PDF export looks up
//! are loaded once per process, not once per PDF; and the PDF is rendered when its
//! selector byte is 1 modulo 32, not 0, because `arbitrary` reads a byte past the end
//! of the input as 0 (most inputs ran out before the selector and rendered a PDF:
//! 4–28 executions/s).
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use pulldown_cmark::{Event, Options, Parser};
use ringkernel_core::security::compliance::{
    CheckResult, ComplianceReport, ComplianceReporter, ComplianceStandard, ComplianceStatus,
    ExportFormat, ReportSummary, fleet,
};

#[derive(Arbitrary, Debug)]
struct Check {
    id: String,
    name: String,
    description: String,
    controls: Vec<String>,
    status: u8,
    a: String,
    b: String,
    c: String,
}

#[derive(Arbitrary, Debug)]
struct Input {
    standard: u8,
    standard_name: String,
    organization: String,
    generated_at: String,
    mode: String,
    runtime_instance: String,
    backend: String,
    checks: Vec<Check>,
    pdf: u8,
}

const STANDARDS: [ComplianceStandard; 3] = [
    ComplianceStandard::Soc2,
    ComplianceStandard::FedRamp,
    ComplianceStandard::Custom("<b>\"CUSTOM\" & | * _ #</b>"),
];

/// Every string of the input, for the tame twin's placeholders.
fn strings(i: &Input) -> BTreeSet<String> {
    let mut all: BTreeSet<String> = [
        &i.standard_name,
        &i.organization,
        &i.generated_at,
        &i.mode,
        &i.runtime_instance,
        &i.backend,
    ]
    .into_iter()
    .cloned()
    .collect();
    for c in i.checks.iter().take(6) {
        all.extend(
            [&c.id, &c.name, &c.description, &c.a, &c.b, &c.c]
                .into_iter()
                .cloned(),
        );
        all.extend(c.controls.iter().take(4).cloned());
    }
    all
}

/// The input as written (`tame` false), or with every non-empty string replaced by a
/// plain placeholder: `x` and three letters, in the same order and with the same
/// equalities as the strings they replace (so sorting and grouping are unchanged).
fn report(i: &Input, tame: bool) -> ComplianceReport {
    let placeholders: BTreeMap<String, String> = strings(i)
        .into_iter()
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(n, s)| {
            let l = |k: usize| char::from(b'a' + (n / k % 26) as u8);
            (s, format!("x{}{}{}", l(676), l(26), l(1)))
        })
        .collect();
    let t = |s: &String| {
        if tame && !s.is_empty() {
            placeholders[s].clone()
        } else {
            s.clone()
        }
    };
    let standard = STANDARDS[usize::from(i.standard) % STANDARDS.len()];
    let mut summary = ReportSummary::default();
    let checks = i
        .checks
        .iter()
        .take(6)
        .map(|c| {
            let status = match c.status % 4 {
                0 => {
                    summary.compliant += 1;
                    ComplianceStatus::Compliant { evidence: t(&c.a) }
                }
                1 => {
                    summary.partially_compliant += 1;
                    ComplianceStatus::PartiallyCompliant {
                        evidence: t(&c.a),
                        finding: t(&c.b),
                        recommendation: t(&c.c),
                    }
                }
                2 => {
                    summary.non_compliant += 1;
                    ComplianceStatus::NonCompliant {
                        finding: t(&c.b),
                        recommendation: t(&c.c),
                    }
                }
                _ => {
                    summary.not_applicable += 1;
                    ComplianceStatus::NotApplicable { reason: t(&c.a) }
                }
            };
            let (evidence, finding, recommendation) = match &status {
                ComplianceStatus::Compliant { evidence } => (Some(evidence.clone()), None, None),
                ComplianceStatus::PartiallyCompliant {
                    evidence,
                    finding,
                    recommendation,
                } => (
                    Some(evidence.clone()),
                    Some(finding.clone()),
                    Some(recommendation.clone()),
                ),
                ComplianceStatus::NonCompliant {
                    finding,
                    recommendation,
                } => (None, Some(finding.clone()), Some(recommendation.clone())),
                ComplianceStatus::NotApplicable { reason } => (Some(reason.clone()), None, None),
            };
            CheckResult {
                id: t(&c.id),
                name: t(&c.name),
                description: t(&c.description),
                standard,
                controls: c.controls.iter().take(4).map(t).collect(),
                status,
                evidence,
                finding,
                recommendation,
            }
        })
        .collect();
    ComplianceReport {
        schema: ringkernel_core::security::compliance::REPORT_SCHEMA,
        standard,
        standard_name: t(&i.standard_name),
        organization: t(&i.organization),
        generated_at: t(&i.generated_at),
        mode: t(&i.mode),
        runtime_instance: t(&i.runtime_instance),
        backend: t(&i.backend),
        summary,
        checks,
    }
}

/// The shape of a Markdown document: every event but text, with raw HTML refused.
fn markdown_shape(md: &str) -> Vec<String> {
    let opts = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    Parser::new_ext(md, opts)
        .filter_map(|e| match e {
            Event::Text(_) => None,
            // Code spans are the exporters' own (runtime ids in the fleet Markdown):
            // their place is structure, their text is not.
            Event::Code(_) => Some("code".to_owned()),
            Event::Html(h) | Event::InlineHtml(h) => panic!("raw HTML in the Markdown: {h:?}"),
            Event::Start(tag) => Some(format!("start {tag:?}")),
            Event::End(tag) => Some(format!("end {tag:?}")),
            other => Some(format!("{other:?}")),
        })
        .collect()
}

fn count(s: &str, c: char) -> usize {
    s.chars().filter(|&x| x == c).count()
}

/// The reporter of every input (it caches the PDF fonts once loaded).
fn reporter() -> &'static ComplianceReporter {
    static R: OnceLock<ComplianceReporter> = OnceLock::new();
    R.get_or_init(ComplianceReporter::unattached)
}

fn check(i: &Input) {
    let rep = reporter();
    let (hostile, tame) = (report(i, false), report(i, true));
    let render = |r: &ComplianceReport, f| rep.render(r, f).expect("render");
    // JSON: parses, and gives every string back.
    let json = render(&hostile, ExportFormat::Json);
    let v: serde_json::Value = serde_json::from_slice(&json).expect("JSON export parses");
    assert_eq!(
        v["organization"].as_str(),
        Some(hostile.organization.as_str())
    );
    for (k, c) in hostile.checks.iter().enumerate() {
        assert_eq!(v["checks"][k]["id"].as_str(), Some(c.id.as_str()));
        assert_eq!(v["checks"][k]["name"].as_str(), Some(c.name.as_str()));
        assert_eq!(v["checks"][k]["finding"].as_str(), c.finding.as_deref());
    }
    let oscal = render(&hostile, ExportFormat::Oscal);
    serde_json::from_slice::<serde_json::Value>(&oscal).expect("OSCAL export parses");
    // HTML: no text became markup.
    let html = String::from_utf8(render(&hostile, ExportFormat::Html)).expect("UTF-8");
    let tame_html = String::from_utf8(render(&tame, ExportFormat::Html)).expect("UTF-8");
    assert_eq!(
        count(&html, '<'),
        count(&tame_html, '<'),
        "text became a tag in the HTML"
    );
    assert_eq!(
        count(&html, '"'),
        count(&tame_html, '"'),
        "text left an attribute in the HTML"
    );
    // Markdown: same structure as the tame twin.
    let md = String::from_utf8(render(&hostile, ExportFormat::Markdown)).expect("UTF-8");
    let tame_md = String::from_utf8(render(&tame, ExportFormat::Markdown)).expect("UTF-8");
    assert_eq!(
        markdown_shape(&md),
        markdown_shape(&tame_md),
        "text changed the Markdown's structure:\n{md}"
    );
    // The fleet merge of the JSON export, and its exports.
    let tame_json = render(&tame, ExportFormat::Json);
    if let (Ok(f), Ok(tf)) = (
        fleet::merge_json(std::slice::from_ref(&json)),
        fleet::merge_json(&[tame_json]),
    ) {
        assert_eq!(f.len(), tf.len());
        for (a, b) in f.iter().zip(&tf) {
            serde_json::from_slice::<serde_json::Value>(&a.to_json().expect("fleet JSON"))
                .expect("fleet JSON parses");
            assert_eq!(
                markdown_shape(&a.to_markdown()),
                markdown_shape(&b.to_markdown()),
                "text changed the fleet Markdown's structure:\n{}",
                a.to_markdown()
            );
        }
    }
    let keep = pdf_dir();
    if i.pdf % 32 == 1 || keep.is_some() {
        let pdf = render(&hostile, ExportFormat::Pdf);
        assert!(pdf.starts_with(b"%PDF-"), "PDF header");
        assert!(pdf.trim_ascii_end().ends_with(b"%%EOF"), "PDF trailer");
        if let Some(dir) = keep {
            // Named by its content, so a replay writes each distinct PDF once.
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&pdf, &mut h);
            let name = format!("{:016x}.pdf", std::hash::Hasher::finish(&h));
            std::fs::write(dir.join(name), &pdf).expect("write the PDF for qpdf");
        }
    }
}

/// `RINGKERNEL_FUZZ_PDF_DIR`: where every input's PDF is written (for `qpdf --check`
/// by `scripts/fuzz.sh`); unset while fuzzing.
fn pdf_dir() -> Option<&'static std::path::Path> {
    static DIR: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| std::env::var_os("RINGKERNEL_FUZZ_PDF_DIR").map(Into::into))
        .as_deref()
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        // Raw bytes as JSON exports to merge: never panics.
        Some((0, rest)) => {
            let _ = fleet::merge_json(&[rest.to_vec()]);
        }
        _ => {
            if let Ok(i) = Input::arbitrary(&mut Unstructured::new(data)) {
                check(&i);
            }
        }
    }
});
