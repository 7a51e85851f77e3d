//! A report export when the disk refuses the write (a full disk, a file-size limit):
//! a clear error, and the report already at that path is left whole, not truncated
//! into a partial file.
//!
//! The write error is real: the child process runs under a file-size limit
//! (`ulimit -f`, with SIGXFSZ ignored so the kernel answers EFBIG).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::process::Command;

use ringkernel_core::runtime::RuntimeBuilder;
use ringkernel_core::security::compliance::{ComplianceReporter, ComplianceStandard, ExportFormat};

/// The environment variable that turns `export_under_a_limit_child` into the child.
const CHILD_PATH: &str = "RINGKERNEL_TEST_EXPORT_IO_CHILD_PATH";

/// A Markdown report padded with custom checks until it is larger than `min` bytes.
fn big_report(
    min: usize,
) -> (
    ComplianceReporter,
    ringkernel_core::security::compliance::ComplianceReport,
) {
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let reporter = ComplianceReporter::new(&rt).organization("Disk Full Corp");
    let mut n = 0;
    loop {
        let report = reporter.generate(ComplianceStandard::Soc2).unwrap();
        if reporter
            .render(&report, ExportFormat::Markdown)
            .unwrap()
            .len()
            > min
        {
            rt.shutdown().unwrap();
            return (reporter, report);
        }
        for _ in 0..50 {
            n += 1;
            reporter.add_check(
                ringkernel_core::security::compliance::ComplianceCheck::new(&format!("PAD-{n}"))
                    .name(&format!("padding check {n} {}", "x".repeat(100)))
                    .standard(ComplianceStandard::Soc2)
                    .check(|_| {
                        ringkernel_core::security::compliance::ComplianceStatus::Compliant {
                            evidence: "y".repeat(200),
                        }
                    }),
            );
        }
    }
}

/// The child: exports a report larger than its 64 KiB file-size limit over the
/// existing one. Exits 0 only if the export failed with an error.
#[test]
fn export_under_a_limit_child() {
    let Ok(path) = std::env::var(CHILD_PATH) else {
        return;
    };
    let (reporter, report) = big_report(200 * 1024);
    let r = reporter.export(&report, ExportFormat::Markdown, Path::new(&path));
    let e = r.expect_err("a write past the file-size limit is an error");
    println!("refused: {e}");
}

#[test]
fn export_on_a_full_disk_fails_and_leaves_the_earlier_report_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("soc2.md");
    let earlier = b"# the earlier report, whole\n".repeat(100);
    std::fs::write(&path, &earlier).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 128; exec \"$0\" --exact export_under_a_limit_child --nocapture --test-threads=1",
        ])
        .arg(&exe)
        .env(CHILD_PATH, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("refused:"),
        "the export did not fail with an error:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = std::fs::read(&path).unwrap();
    assert!(
        now == earlier,
        "the earlier report was damaged by the failed export: {} bytes now, {} before",
        now.len(),
        earlier.len()
    );
    // Nothing half-written is left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["soc2.md"], "{names:?}");
}
