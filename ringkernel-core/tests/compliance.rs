//! Compliance reports read the live runtime; exports are real, escaped, deterministic.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[cfg(any(feature = "pdf", feature = "html"))]
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringkernel_core::runtime::{LaunchOptions, Runtime, RuntimeBuilder};
use ringkernel_core::security::audit::{AuditConfig, AuditLogConfig, AuditRecord};
#[cfg(feature = "pdf")]
use ringkernel_core::security::compliance::PdfFonts;
use ringkernel_core::security::compliance::{
    CheckResult, ComplianceCheck, ComplianceReport, ComplianceReporter, ComplianceStandard,
    ComplianceStatus, ExportFormat,
};
use ringkernel_core::security::encryption::{EncryptionConfig, MemoryEncryption};
use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};

/// A fresh scratch directory, removed when the guard drops.
fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("rk-compliance-{tag}-"))
        .tempdir()
        .unwrap()
}

/// A secured runtime and its audit directory; destructured as `let (dir, rt) = ...`,
/// the runtime drops before the directory.
fn secured(retention_days: u32) -> (tempfile::TempDir, Runtime) {
    let dir = scratch("audit");
    let rt = RuntimeBuilder::new()
        .production()
        .with_encryption(MemoryEncryption::new(EncryptionConfig::secure()).unwrap())
        .with_sandbox(KernelSandbox::with_policy(
            ResourceLimits::conservative(),
            SandboxPolicy::restrictive().k2k_allow_list(&["b"]),
        ))
        .with_audit_logging(AuditLogConfig {
            events: AuditConfig {
                retention_days,
                ..AuditConfig::default()
            },
            ..AuditLogConfig::in_directory(dir.path())
        })
        .build()
        .unwrap();
    (dir, rt)
}

fn check<'a>(r: &'a ComplianceReport, id: &str) -> &'a CheckResult {
    r.checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no {id} in {:?}", r.standard))
}

#[test]
fn an_unencrypted_runtime_is_non_compliant_with_recommendations() {
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let reporter = ComplianceReporter::new(&rt);
    for standard in ComplianceStandard::BUILT_IN {
        let r = reporter.generate(standard).unwrap();
        assert!(r.checks.len() >= 5, "{standard}: {} checks", r.checks.len());
        for c in &r.checks {
            assert!(!c.controls.is_empty(), "{} has no control reference", c.id);
        }
        let enc = check(&r, "ENC-01");
        assert!(
            matches!(enc.status, ComplianceStatus::NonCompliant { .. }),
            "{standard}"
        );
        assert!(
            enc.recommendation
                .as_ref()
                .unwrap()
                .contains("MemoryEncryption")
        );
        assert!(enc.evidence.is_none());
        assert!(matches!(
            check(&r, "CFG-01").status,
            ComplianceStatus::NonCompliant { .. }
        ));
    }
    let soc2 = reporter.generate(ComplianceStandard::Soc2).unwrap();
    assert_eq!(check(&soc2, "ENC-01").controls, vec!["CC6.1"]);
    let pci = reporter.generate(ComplianceStandard::PciDss).unwrap();
    assert_eq!(check(&pci, "ENC-01").controls, vec!["3.5", "3.5.1"]);
    let fed = reporter.generate(ComplianceStandard::FedRamp).unwrap();
    assert_eq!(check(&fed, "AUD-02").controls, vec!["AU-9", "AU-9(3)"]);
}

#[test]
fn a_secured_runtime_is_compliant_with_evidence_from_its_state() {
    let (_audit, rt) = secured(400);
    let a = rt.launch("a", LaunchOptions::new()).unwrap();
    rt.launch("b", LaunchOptions::new()).unwrap();
    a.send("b", "t", b"x").unwrap();
    let reporter = ComplianceReporter::new(&rt).organization("Example Corp");
    let r = reporter.generate(ComplianceStandard::Soc2).unwrap();
    let enc = check(&r, "ENC-01");
    assert!(
        matches!(enc.status, ComplianceStatus::Compliant { .. }),
        "{enc:?}"
    );
    let ev = enc.evidence.as_ref().unwrap();
    assert!(
        ev.contains("AES-256-GCM") && ev.contains("control blocks"),
        "{ev}"
    );
    for id in [
        "ACC-01", "AVL-01", "AUD-01", "AUD-02", "AUD-03", "CFG-01", "MEM-01", "KEY-01",
    ] {
        assert!(
            matches!(check(&r, id).status, ComplianceStatus::Compliant { .. }),
            "{id}: {:?}",
            check(&r, id)
        );
    }
    assert!(
        check(&r, "AUD-02")
            .evidence
            .as_ref()
            .unwrap()
            .contains("verify")
    );
    // A violation turns MON-01 from compliant to partially compliant, with a finding.
    assert!(matches!(
        check(&r, "MON-01").status,
        ComplianceStatus::Compliant { .. }
    ));
    assert!(a.send("a", "t", b"").is_err());
    let r2 = reporter.generate(ComplianceStandard::Soc2).unwrap();
    let mon = check(&r2, "MON-01");
    assert!(matches!(
        mon.status,
        ComplianceStatus::PartiallyCompliant { .. }
    ));
    assert!(
        mon.finding
            .as_ref()
            .unwrap()
            .contains("1 sandbox violation")
    );
    // FedRAMP is honest about FIPS validation.
    let fed = reporter.generate(ComplianceStandard::FedRamp).unwrap();
    assert!(
        check(&fed, "ENC-02")
            .finding
            .as_ref()
            .unwrap()
            .contains("FIPS")
    );
    rt.shutdown().unwrap();
}

#[test]
fn retention_is_judged_per_standard() {
    let (_audit, rt) = secured(90);
    let reporter = ComplianceReporter::new(&rt);
    let pci = reporter.generate(ComplianceStandard::PciDss).unwrap();
    let ret = check(&pci, "AUD-03");
    assert_eq!(ret.controls, vec!["10.5.1"]);
    assert!(matches!(ret.status, ComplianceStatus::NonCompliant { .. }));
    assert!(ret.finding.as_ref().unwrap().contains("twelve months"));
    assert!(ret.recommendation.as_ref().unwrap().contains("365"));
    let hipaa = reporter.generate(ComplianceStandard::Hipaa).unwrap();
    assert!(
        check(&hipaa, "AUD-03")
            .finding
            .as_ref()
            .unwrap()
            .contains("six years")
    );
    let gdpr = reporter.generate(ComplianceStandard::Gdpr).unwrap();
    assert!(matches!(
        check(&gdpr, "AUD-03").status,
        ComplianceStatus::Compliant { .. }
    ));
    rt.shutdown().unwrap();
}

#[test]
fn custom_checks_as_in_the_reference() {
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let reporter = ComplianceReporter::new(&rt);
    let custom_check = ComplianceCheck::new("GPU_MEM_ENCRYPT")
        .name("GPU Memory Encryption")
        .description("All GPU memory must be encrypted at rest")
        .standard(ComplianceStandard::Custom("INTERNAL_SEC_001"))
        .check(|ctx| {
            if ctx.memory_encryption.is_enabled() {
                ComplianceStatus::Compliant {
                    evidence: "AES-256-GCM encryption enabled".to_string(),
                }
            } else {
                ComplianceStatus::NonCompliant {
                    finding: "GPU memory encryption not enabled".to_string(),
                    recommendation: "Enable memory encryption with MemoryEncryption::new()"
                        .to_string(),
                }
            }
        });
    reporter.add_check(custom_check);
    let r = reporter
        .generate(ComplianceStandard::Custom("INTERNAL_SEC_001"))
        .unwrap();
    assert_eq!(r.checks.len(), 1);
    let c = &r.checks[0];
    assert_eq!(
        (c.id.as_str(), c.name.as_str()),
        ("GPU_MEM_ENCRYPT", "GPU Memory Encryption")
    );
    assert_eq!(
        c.finding.as_deref(),
        Some("GPU memory encryption not enabled")
    );
    // Not part of other standards' reports.
    let soc2 = reporter.generate(ComplianceStandard::Soc2).unwrap();
    assert!(soc2.checks.iter().all(|c| c.id != "GPU_MEM_ENCRYPT"));
}

#[cfg(feature = "html")]
fn hostile_report() -> (Runtime, ComplianceReporter, ComplianceReport) {
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let reporter = ComplianceReporter::new(&rt)
        .organization("<script>alert('org')</script> & Co")
        .with_fixed_time(UNIX_EPOCH + Duration::from_secs(1_795_000_000));
    reporter.add_check(
        ComplianceCheck::new("XSS-1")
            .name("<script>alert('name')</script>")
            .standard(ComplianceStandard::Soc2)
            .controls(&["<b>CC9.9</b>"])
            .check(|_| ComplianceStatus::Compliant {
                evidence: "<script>alert('evidence')</script> | pipe".into(),
            }),
    );
    let ctx = reporter.context().unwrap();
    let report = reporter.generate_from(&ctx, ComplianceStandard::Soc2);
    (rt, reporter, report)
}

#[cfg(feature = "html")]
#[test]
fn html_escapes_everything_and_json_keeps_it_intact() {
    let (_rt, reporter, report) = hostile_report();
    let html = String::from_utf8(reporter.render(&report, ExportFormat::Html).unwrap()).unwrap();
    assert!(!html.contains("<script"), "unescaped script tag in HTML");
    assert!(!html.contains("<b>CC9.9"));
    assert!(
        html.contains("&lt;script&gt;alert('name')&lt;/script&gt;")
            || html.contains("&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;")
            || html.contains("&lt;script&gt;")
    );
    assert!(html.contains("http-equiv=\"Content-Security-Policy\""));
    assert!(html.contains("default-src 'none'"));
    assert!(html.contains("<svg"), "summary graphic");
    let json: serde_json::Value =
        serde_json::from_slice(&reporter.render(&report, ExportFormat::Json).unwrap()).unwrap();
    assert_eq!(json["organization"], "<script>alert('org')</script> & Co");
    assert_eq!(json["schema"], "ringkernel.compliance-report/v1");
    let xss = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "XSS-1")
        .unwrap();
    assert_eq!(xss["name"], "<script>alert('name')</script>");
    assert_eq!(xss["evidence"], "<script>alert('evidence')</script> | pipe");
    assert_eq!(xss["status"]["status"], "compliant");
    let md = String::from_utf8(reporter.render(&report, ExportFormat::Markdown).unwrap()).unwrap();
    assert!(!md.contains("<script"));
    assert!(md.contains("\\| pipe"), "pipes escaped in tables");
}

/// Lines of a rendered Markdown report that open a block the renderer did not intend
/// (a heading, list, quote, code block, thematic break, setext underline or table row
/// made of report text), or break its own structure (a table row with an extra cell,
/// a heading whose end is eaten as a closing sequence).
fn stray_markdown_blocks(md: &str) -> Vec<String> {
    fn unescaped(line: &str, c: char) -> usize {
        let mut n = 0;
        let mut escaped = false;
        for ch in line.chars() {
            if ch == c && !escaped {
                n += 1;
            }
            escaped = ch == '\\' && !escaped;
        }
        n
    }
    fn eaten_closing_sequence(heading: &str) -> bool {
        let t = heading.trim_end();
        let body = t.trim_end_matches('#');
        body.len() != t.len() && !body.ends_with('\\')
    }
    fn block_start(line: &str) -> bool {
        let first = line.chars().next().unwrap_or(' ');
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        first.is_whitespace()
            || "#-+*=>|~`<_".contains(first)
            || (digits > 0 && matches!(line[digits..].chars().next(), Some('.' | ')')))
    }
    let mut stray = Vec::new();
    let mut table_pipes = None;
    for (i, line) in md.lines().enumerate() {
        let ok = if line.is_empty() {
            table_pipes = None;
            true
        } else if i == 0 {
            line.starts_with("# ") && !eaten_closing_sequence(line)
        } else if let Some(h) = line.strip_prefix("## ") {
            h == "Summary" || h == "Checks"
        } else if line.starts_with("### ") {
            !eaten_closing_sequence(line)
        } else if line.starts_with('|') {
            // Every row of a table has the cells of the table's header row.
            let pipes = unescaped(line, '|');
            *table_pipes.get_or_insert(pipes) == pipes
        } else if let Some(item) = line.strip_prefix("- **") {
            [
                "Status:**",
                "Controls:**",
                "Evidence:**",
                "Finding:**",
                "Recommendation:**",
            ]
            .iter()
            .any(|l| item.starts_with(l))
        } else {
            !block_start(line)
        };
        if !ok {
            stray.push(format!("line {}: {line}", i + 1));
        }
    }
    stray
}

#[test]
fn markdown_block_injection_through_report_text_stays_text() {
    // Each string opens a block when it starts a line, or breaks a table.
    const HOSTILE: &[&str] = &[
        "# Forged heading",
        "## Forged section ##",
        "- forged list item",
        "+ forged list item",
        "* forged list item",
        "> forged quote",
        "1. forged ordered item",
        "2) forged ordered item",
        "---",
        "***",
        "===",
        "```",
        "~~~",
        "    forged code block",
        "| forged | table |",
        "<div>html</div>",
    ];
    let joined = HOSTILE.join("\n");
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let reporter = ComplianceReporter::new(&rt)
        .organization(&format!("{joined}\n| Generated | forged |"))
        .with_fixed_time(UNIX_EPOCH + Duration::from_secs(1_795_000_000));
    for (n, h) in HOSTILE.iter().enumerate() {
        let evidence = format!("{h}\n{joined}");
        reporter.add_check(
            ComplianceCheck::new(&format!("{h} #"))
                .name(&format!("{h} ##"))
                .description(h)
                .standard(ComplianceStandard::Custom("# INTERNAL | SEC"))
                .controls(&[h, "| CC1 |"])
                .check(move |_| {
                    if n % 2 == 0 {
                        ComplianceStatus::Compliant {
                            evidence: evidence.clone(),
                        }
                    } else {
                        ComplianceStatus::NonCompliant {
                            finding: format!("kernel ids: {}", evidence.clone()),
                            recommendation: evidence.clone(),
                        }
                    }
                }),
        );
    }
    let report = reporter
        .generate(ComplianceStandard::Custom("# INTERNAL | SEC"))
        .unwrap();
    assert_eq!(report.checks.len(), HOSTILE.len());
    let md = String::from_utf8(reporter.render(&report, ExportFormat::Markdown).unwrap()).unwrap();
    let stray = stray_markdown_blocks(&md);
    assert!(
        stray.is_empty(),
        "report text opened blocks:\n{}\n\n{md}",
        stray.join("\n")
    );
    // Nothing is lost: each description is a paragraph line that reads back as the
    // text given, once its escapes are undone as a Markdown renderer does.
    let unescape = |line: &str| {
        let line = line
            .replace("&#32;", " ")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        let mut out = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            out.push(if c == '\\' { chars.next().unwrap() } else { c });
        }
        out
    };
    let lines: Vec<&str> = md.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("### ") {
            let description = unescape(lines[i + 2]);
            assert!(
                HOSTILE.contains(&description.as_str()),
                "{:?}",
                lines[i + 2]
            );
        }
    }
    assert!(md.contains("\\# Forged heading"), "{md}");
    assert!(md.contains("1\\. forged ordered item"), "{md}");
    // The checker itself catches what it must.
    for bad in [
        "x\n# h",
        "x\n    code",
        "x\n1. item",
        "| a | b |\n| a | b | c |",
        "### t #",
    ] {
        assert!(!stray_markdown_blocks(bad).is_empty(), "{bad:?} not caught");
    }
}

/// Found by the `report_exporters` fuzz target: ASCII control characters in report text
/// reached the Markdown raw. Renderers disagree on them: CommonMark counts only spaces
/// and tabs as whitespace, but pulldown-cmark (and others) also count vertical tab and
/// form feed, so a description of vertical tabs vanished as a blank line, and one that
/// starts with a vertical tab before `#` (or `-`, `>`, four spaces) opened a heading
/// (list, quote, code block) there. Control characters are now character references,
/// which no renderer reads as structure; the text is kept (the JSON has it exactly).
#[test]
fn markdown_injection_with_control_characters_stays_text() {
    const HOSTILE: &[&str] = &[
        "\x0b# forged heading",
        "\x0c- forged list item",
        "\x0b> forged quote",
        "\x0b\x0b\x0b\x0b    forged code block",
        "\x0b\x0b\x0b",
        "\x0c",
        "\0# forged heading",
        "\x1b[31m terminal colours \x7f \u{85}",
    ];
    let joined = HOSTILE.join("\n");
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let reporter = ComplianceReporter::new(&rt)
        .organization(&joined)
        .with_fixed_time(UNIX_EPOCH + Duration::from_secs(1_795_000_000));
    for &h in HOSTILE {
        reporter.add_check(
            ComplianceCheck::new(h)
                .name(h)
                .description(h)
                .standard(ComplianceStandard::Custom("\x0b# INTERNAL"))
                .controls(&[h])
                .check(move |_| ComplianceStatus::NonCompliant {
                    finding: h.to_string(),
                    recommendation: h.to_string(),
                }),
        );
    }
    let report = reporter
        .generate(ComplianceStandard::Custom("\x0b# INTERNAL"))
        .unwrap();
    assert_eq!(report.checks.len(), HOSTILE.len());
    let md = String::from_utf8(reporter.render(&report, ExportFormat::Markdown).unwrap()).unwrap();
    let stray = stray_markdown_blocks(&md);
    assert!(
        stray.is_empty(),
        "report text opened blocks:\n{}\n\n{md:?}",
        stray.join("\n")
    );
    // No control character but the line ends reaches the Markdown, in the single
    // report or the fleet report merged from its JSON.
    let json = reporter.render(&report, ExportFormat::Json).unwrap();
    let fleet = ringkernel_core::security::compliance::fleet::merge_json(&[json]).unwrap();
    for text in [md.clone(), fleet[0].to_markdown()] {
        let raw: Vec<char> = text
            .chars()
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        assert!(
            raw.is_empty(),
            "raw control characters {raw:?} in\n{text:?}"
        );
    }
    // Every description is a paragraph of its own whose text is kept.
    assert!(md.contains("\n&#11;# forged heading\n"), "{md}");
    assert_eq!(md.matches("\n&#11;&#11;&#11;\n").count(), 1, "{md}");
    rt.shutdown().unwrap();
}

#[cfg(all(feature = "html", feature = "pdf"))]
#[test]
fn same_context_same_bytes_in_every_format() {
    let (_rt, reporter, report) = hostile_report();
    for format in [
        ExportFormat::Json,
        ExportFormat::Html,
        ExportFormat::Markdown,
        ExportFormat::Pdf,
    ] {
        let a = reporter.render(&report, format).unwrap();
        let b = reporter.render(&report, format).unwrap();
        assert_eq!(a, b, "{format:?} is not deterministic");
    }
    let ctx = reporter.context().unwrap();
    assert_eq!(
        reporter.generate_from(&ctx, ComplianceStandard::Soc2),
        reporter.generate_from(&ctx, ComplianceStandard::Soc2)
    );
    assert_eq!(report.generated_at, "2026-11-18T11:06:40.000000Z");
}

#[cfg(feature = "pdf")]
fn tool(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok()
}

#[cfg(feature = "pdf")]
#[test]
fn pdf_is_a_real_pdf_that_qpdf_accepts_and_pdftotext_reads() {
    assert!(
        tool("qpdf") && tool("pdftotext"),
        "qpdf and poppler-utils are needed (scripts/test.sh installs them)"
    );
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let reporter = ComplianceReporter::new(&rt).organization("Example Corp");
    // Many checks, so that the report needs several pages.
    for i in 0..40 {
        reporter.add_check(
            ComplianceCheck::new(&format!("ZZ-{i:02}"))
                .name(&format!("Custom control number {i}"))
                .description("A long description that wraps over more than one line in the PDF report, to exercise wrapping and page breaks.")
                .standard(ComplianceStandard::Soc2)
                .controls(&["CC1.1"])
                .check(|_| ComplianceStatus::NotApplicable { reason: "example".into() }),
        );
    }
    let report = reporter.generate(ComplianceStandard::Soc2).unwrap();
    let dir = scratch("pdf");
    let path = dir.path().join("soc2.pdf");
    reporter.export(&report, ExportFormat::Pdf, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    assert!(
        bytes.len() < 200_000,
        "subset fonts keep it small: {} bytes",
        bytes.len()
    );
    let check = Command::new("qpdf")
        .arg("--check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "qpdf --check failed: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let pages = Command::new("qpdf")
        .arg("--show-npages")
        .arg(&path)
        .output()
        .unwrap();
    let pages: u32 = String::from_utf8_lossy(&pages.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(pages >= 3, "{pages} pages");
    let text = Command::new("pdftotext")
        .args(["-layout"])
        .arg(&path)
        .arg("-")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for c in &report.checks {
        assert!(text.contains(&c.name), "pdftotext lost {:?}", c.name);
    }
    if tool("pdffonts") {
        let fonts = Command::new("pdffonts").arg(&path).output().unwrap();
        let fonts = String::from_utf8_lossy(&fonts.stdout);
        assert!(fonts.contains("DejaVuSans"), "{fonts}");
        for line in fonts.lines().skip(2) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // columns: name type encoding emb sub uni object ID
            let n = cols.len();
            assert!(
                n >= 7 && cols[n - 5] == "yes" && cols[n - 4] == "yes",
                "font not embedded as subset: {line}"
            );
        }
    }
}

#[test]
fn continuous_monitoring_audits_status_changes() {
    let (dir, rt) = secured(400);
    let a = rt.launch("a", LaunchOptions::new()).unwrap();
    let reporter =
        ComplianceReporter::new(&rt).enable_continuous_monitoring(Duration::from_millis(40));
    let t0 = std::time::Instant::now();
    while reporter.last_reports().len() < 7 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    // A violation changes MON-01 in every standard that maps it.
    assert!(a.send("a", "t", b"").is_err());
    let changed = reporter.monitor_once().unwrap();
    assert!(changed >= 1, "{changed}");
    rt.shutdown().unwrap();
    drop(reporter);
    let mut found = false;
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            for l in std::fs::read_to_string(&p).unwrap().lines() {
                let r: AuditRecord = serde_json::from_str(l).unwrap();
                if r.event == "compliance.status_change" && r.target.ends_with("MON-01") {
                    assert_eq!(r.details["from"], "compliant");
                    assert_eq!(r.details["to"], "partially_compliant");
                    found = true;
                }
            }
        }
    }
    assert!(found, "no compliance.status_change audit record");
}

#[test]
fn with_compliance_attaches_the_reporter_to_the_built_runtime() {
    let reporter = ComplianceReporter::unattached().organization("Builder Corp");
    assert!(
        reporter.generate(ComplianceStandard::Soc2).is_err(),
        "not attached yet"
    );
    let rt = RuntimeBuilder::new()
        .development()
        .with_compliance(reporter.clone())
        .build()
        .unwrap();
    let r = rt
        .compliance()
        .unwrap()
        .generate(ComplianceStandard::Gdpr)
        .unwrap();
    assert_eq!(r.organization, "Builder Corp");
    assert_eq!(
        reporter
            .generate(ComplianceStandard::Gdpr)
            .unwrap()
            .standard,
        ComplianceStandard::Gdpr
    );
    let _ = SystemTime::now();
}

/// The HTML report as an auditor's browser shows it: headless Chromium loads it, runs
/// nothing injected, and reports no Content-Security-Policy violation (so the report's
/// own stylesheet, allowed by its hash, applies). Needs Chromium: `scripts/test.sh`
/// installs it and sets RINGKERNEL_REQUIRE_CHROMIUM=1; elsewhere the test says why it
/// skips.
#[cfg(feature = "html")]
#[test]
fn html_report_renders_in_headless_chromium_without_csp_violations() {
    let Some(browser) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| tool(b))
    else {
        assert!(
            std::env::var_os("RINGKERNEL_REQUIRE_CHROMIUM").is_none(),
            "RINGKERNEL_REQUIRE_CHROMIUM is set but no chromium binary is on PATH"
        );
        eprintln!("SKIPPED: chromium not installed (apt-get install chromium)");
        return;
    };
    let (_rt, reporter, report) = hostile_report();
    let dir = scratch("chromium");
    let page = dir.path().join("report.html");
    reporter.export(&report, ExportFormat::Html, &page).unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed:\n{log}");
    // Rendered: the checks are there, the hostile strings are text, not elements.
    assert!(
        dom.contains("XSS-1"),
        "report content missing from the DOM:\n{dom}"
    );
    assert!(
        dom.contains("&lt;script&gt;"),
        "hostile text not shown as text"
    );
    assert!(!dom.contains("<script"), "a script element reached the DOM");
    assert!(
        !dom.contains("<b>CC9.9"),
        "markup from a control id reached the DOM"
    );
    // The CSP blocked nothing of ours (the stylesheet hash matches) and had nothing
    // injected to block.
    let violations: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Content Security Policy"))
        .collect();
    assert!(violations.is_empty(), "CSP violations: {violations:#?}");
    dir.close().unwrap();
}

/// The Noto fonts `scripts/test.sh` installs (Debian's fonts-noto-cjk and
/// fonts-noto-core): CJK, Arabic, Hebrew.
#[cfg(feature = "pdf")]
const NOTO: [&str; 3] = [
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansHebrew-Regular.ttf",
];

/// The Noto fonts as PDF fallback fonts, or `None` (and why) when they are not
/// installed; with RINGKERNEL_REQUIRE_NOTO=1 (set by scripts/test.sh) missing fonts
/// fail the test.
#[cfg(feature = "pdf")]
fn noto() -> Option<PdfFonts> {
    let missing: Vec<&str> = NOTO
        .into_iter()
        .filter(|p| !std::path::Path::new(p).is_file())
        .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("RINGKERNEL_REQUIRE_NOTO").is_none(),
            "RINGKERNEL_REQUIRE_NOTO is set but these fonts are missing: {missing:?}"
        );
        eprintln!(
            "SKIPPED: Noto fonts missing: {missing:?} (apt-get install fonts-noto-cjk fonts-noto-core)"
        );
        return None;
    }
    let mut fonts = PdfFonts::none();
    for path in NOTO {
        fonts = fonts.with_file(path).unwrap();
    }
    Some(fonts)
}

/// `pdftotext`'s reading of the PDF at `path` (poppler-utils).
#[cfg(feature = "pdf")]
fn pdftotext(path: &std::path::Path, layout: bool) -> String {
    let mut cmd = Command::new("pdftotext");
    if layout {
        cmd.arg("-layout");
    }
    let out = cmd.arg(path).arg("-").output().unwrap();
    assert!(out.status.success(), "pdftotext failed");
    String::from_utf8(out.stdout).unwrap()
}

/// `qpdf --check` accepts the PDF at `path`.
#[cfg(feature = "pdf")]
fn assert_qpdf_accepts(path: &std::path::Path) {
    let check = Command::new("qpdf")
        .arg("--check")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "qpdf --check failed: {}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// Kernel ids, check names, findings and evidence in Chinese, Japanese, Arabic and
/// Hebrew, alone and mixed with Latin text and numbers, come back intact from the PDF:
/// CJK through the fallback font, Arabic joined and Hebrew in right-to-left runs.
#[cfg(feature = "pdf")]
#[test]
fn pdf_keeps_chinese_japanese_arabic_and_hebrew_text_intact() {
    assert!(
        tool("qpdf") && tool("pdftotext"),
        "qpdf and poppler-utils are needed (scripts/test.sh installs them)"
    );
    let Some(fonts) = noto() else { return };
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let reporter = ComplianceReporter::new(&rt)
        .organization("内核处理器 Example Corp")
        .with_fixed_time(UNIX_EPOCH + Duration::from_secs(1_795_000_000))
        .pdf_fonts(fonts);
    reporter.add_check(
        ComplianceCheck::new("内核处理器-01")
            .name("カーネル暗号化の検査")
            .standard(ComplianceStandard::Soc2)
            .controls(&["CC6.1"])
            .check(|_| ComplianceStatus::NonCompliant {
                finding: "نواة غير مشفرة".into(),
                recommendation: "הצפינו את זיכרון הגרעין".into(),
            }),
    );
    reporter.add_check(
        ComplianceCheck::new("MIX-02")
            .name("Kernel نواة and גרעין check")
            .standard(ComplianceStandard::Soc2)
            .controls(&["CC6.1"])
            .check(|_| ComplianceStatus::Compliant {
                evidence: "GPU カーネル 内核 ok".into(),
            }),
    );
    let ctx = reporter.context().unwrap();
    let report = reporter.generate_from(&ctx, ComplianceStandard::Soc2);
    let dir = scratch("pdf-scripts");
    let path = dir.path().join("scripts.pdf");
    reporter.export(&report, ExportFormat::Pdf, &path).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        reporter.render(&report, ExportFormat::Pdf).unwrap(),
        "same report, same fonts: same bytes"
    );
    assert!(
        std::fs::metadata(&path).unwrap().len() < 300_000,
        "subset fonts"
    );
    assert_qpdf_accepts(&path);
    // poppler gives right-to-left runs back in logical order, wrapped in U+202B
    // (right-to-left embedding) and U+202C (pop): those marks are removed. Where an
    // RTL run sits inside a Latin line, poppler also moves the space after the run to
    // its front; such lines are compared without whitespace.
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    for layout in [false, true] {
        let text: String = pdftotext(&path, layout)
            .chars()
            .filter(|c| !('\u{202a}'..='\u{202e}').contains(c))
            .collect();
        let how = if layout {
            "pdftotext -layout"
        } else {
            "pdftotext"
        };
        for s in [
            "内核处理器 Example Corp",
            "内核处理器-01",
            "カーネル暗号化の検査",
            "Finding: نواة غير مشفرة",
            "Recommendation: הצפינו את זיכרון הגרעין",
            "Evidence: GPU カーネル 内核 ok",
        ] {
            assert!(text.contains(s), "{how} lost {s:?}:\n{text}");
        }
        let mixed = "Kernel نواة and גרעין check";
        assert!(
            squash(&text).contains(&squash(mixed)),
            "{how} lost {mixed:?}:\n{text}"
        );
        assert!(
            !text.contains('\u{FFFD}'),
            "a character had no font:\n{text}"
        );
    }
    if tool("pdffonts") {
        let fonts = Command::new("pdffonts").arg(&path).output().unwrap();
        let fonts = String::from_utf8_lossy(&fonts.stdout);
        assert!(fonts.contains("DejaVuSans"), "{fonts}");
        assert!(
            fonts.contains("NotoSansCJK"),
            "CJK fallback not embedded:\n{fonts}"
        );
        for line in fonts.lines().skip(2) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let n = cols.len();
            assert!(
                n >= 7 && cols[n - 5] == "yes" && cols[n - 4] == "yes",
                "font not embedded as subset: {line}"
            );
        }
    }
    dir.close().unwrap();
    rt.shutdown().unwrap();
}

/// Without a font for them, characters are drawn as U+FFFD, never dropped, and the
/// report ends with a note counting them.
#[cfg(feature = "pdf")]
#[test]
fn pdf_shows_characters_without_a_font_as_replacements_and_counts_them() {
    assert!(
        tool("qpdf") && tool("pdftotext"),
        "qpdf and poppler-utils are needed (scripts/test.sh installs them)"
    );
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let reporter = ComplianceReporter::new(&rt).pdf_fonts(PdfFonts::none());
    reporter.add_check(
        ComplianceCheck::new("CJK-1")
            .name("Check 内核 done")
            .standard(ComplianceStandard::Soc2)
            .check(|_| ComplianceStatus::Compliant {
                evidence: "bell\u{7} here".into(),
            }),
    );
    let report = reporter.generate(ComplianceStandard::Soc2).unwrap();
    let dir = scratch("pdf-uncovered");
    let path = dir.path().join("uncovered.pdf");
    reporter.export(&report, ExportFormat::Pdf, &path).unwrap();
    assert_qpdf_accepts(&path);
    let text = pdftotext(&path, false);
    assert!(text.contains("Check \u{FFFD}\u{FFFD} done"), "{text}");
    assert!(text.contains("bell\u{FFFD} here"), "{text}");
    assert!(
        text.contains("Note: 3 characters in this report had no font"),
        "{text}"
    );
    dir.close().unwrap();
    rt.shutdown().unwrap();
}

/// Hostile text (control characters, lone combining marks, bidi overrides, unmatched
/// scripts, a very long word) renders without a panic into a PDF qpdf accepts.
#[cfg(feature = "pdf")]
#[test]
fn pdf_renders_hostile_text_without_panicking() {
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let huge = "نواة内核x\u{301}".repeat(1_500);
    let hostile = [
        "\u{0}\u{1}\u{1b}[31m\r\n\t\u{7f}\u{85}",
        "\u{301}\u{302}\u{5b0}\u{64b} lone marks",
        "\u{202e}evil\u{202c} \u{2066}isolate\u{2069} \u{200d}\u{200b}\u{feff}",
        "(نواة [42] \u{660}\u{661}) א)ב( 1.5%",
        "\u{10ffff}\u{e000}\u{1f600} emoji and private use",
        huge.as_str(),
    ];
    for fonts in [Some(PdfFonts::none()), noto()].into_iter().flatten() {
        let reporter = ComplianceReporter::new(&rt)
            .organization(hostile[0])
            .pdf_fonts(fonts);
        for (i, s) in hostile.iter().enumerate() {
            let finding = format!("{s} {}", hostile[3]);
            reporter.add_check(
                ComplianceCheck::new(&format!("H-{i}{s}"))
                    .name(s)
                    .description(s)
                    .standard(ComplianceStandard::Soc2)
                    .controls(&[s])
                    .check(move |_| ComplianceStatus::NonCompliant {
                        finding: finding.clone(),
                        recommendation: "\u{5d0}\u{301}\u{661} 内".into(),
                    }),
            );
        }
        let report = reporter.generate(ComplianceStandard::Soc2).unwrap();
        let pdf = reporter.render(&report, ExportFormat::Pdf).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        if tool("qpdf") {
            let dir = scratch("pdf-hostile");
            let path = dir.path().join("hostile.pdf");
            std::fs::write(&path, &pdf).unwrap();
            assert_qpdf_accepts(&path);
            dir.close().unwrap();
        }
    }
    rt.shutdown().unwrap();
}

#[cfg(not(all(feature = "html", feature = "pdf")))]
#[test]
fn an_export_whose_feature_is_off_is_refused_naming_the_feature() {
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let reporter = ComplianceReporter::new(&rt);
    let report = reporter.generate(ComplianceStandard::Soc2).unwrap();
    for format in [ExportFormat::Html, ExportFormat::Pdf] {
        if let Err(e) = reporter.render(&report, format) {
            assert!(
                matches!(e, ringkernel_core::Error::Unsupported { .. }),
                "{e}"
            );
            assert!(e.to_string().contains("feature"), "{e}");
        }
    }
    rt.shutdown().unwrap();
}
