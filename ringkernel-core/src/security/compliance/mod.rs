//! Compliance reports that read the live runtime.
//!
//! ```
//! use ringkernel_core::runtime::RuntimeBuilder;
//! use ringkernel_core::security::compliance::{
//!     ComplianceCheck, ComplianceReporter, ComplianceStandard, ComplianceStatus, ExportFormat,
//! };
//!
//! let runtime = RuntimeBuilder::new().development().build()?;
//! let reporter = ComplianceReporter::new(&runtime).organization("Example Corp");
//! reporter.add_check(
//!     ComplianceCheck::new("GPU_MEM_ENCRYPT")
//!         .name("GPU Memory Encryption")
//!         .description("All GPU memory must be encrypted at rest")
//!         .standard(ComplianceStandard::Custom("INTERNAL_SEC_001"))
//!         .check(|ctx| {
//!             if ctx.memory_encryption.is_enabled() {
//!                 ComplianceStatus::Compliant { evidence: "encryption enabled".to_string() }
//!             } else {
//!                 ComplianceStatus::NonCompliant {
//!                     finding: "GPU memory encryption not enabled".to_string(),
//!                     recommendation: "Enable memory encryption with MemoryEncryption::new()".to_string(),
//!                 }
//!             }
//!         }),
//! );
//! let report = reporter.generate(ComplianceStandard::Soc2)?;
//! // A development runtime without encryption is not SOC 2 compliant, and says why.
//! let enc = report.checks.iter().find(|c| c.id == "ENC-01").unwrap();
//! assert!(matches!(enc.status, ComplianceStatus::NonCompliant { .. }));
//! assert!(enc.recommendation.is_some());
//! let json = reporter.render(&report, ExportFormat::Json)?;
//! assert!(!json.is_empty());
//! # Ok::<(), ringkernel_core::Error>(())
//! ```
//!
//! The check catalogue with its control references: `docs/compliance.md`.

mod catalog;
mod context;
mod export;
pub mod fleet;

pub use context::{AuditFacts, EncryptionFacts, SNAPSHOT_FORMAT, SandboxFacts, SecuritySnapshot};
#[cfg(feature = "pdf")]
pub use export::PdfFonts;

/// The snapshot checks read, under its earlier name.
pub type ComplianceContext = SecuritySnapshot;

/// What a reporter reads: a source of [`SecuritySnapshot`]s and the audit log its
/// reports are recorded in. The runtime is the one implementation (the trait is
/// sealed); checks themselves are pure functions of a snapshot.
pub trait SnapshotSource: sealed::Sealed + Send + Sync {
    /// A snapshot of the security state, dated `at`.
    fn security_snapshot(&self, at: SystemTime) -> SecuritySnapshot;
    /// Records `event` in the source's audit log, when it keeps one.
    fn record_audit(&self, event: Event);
}

/// What [`ComplianceReporter::new`] reads from: a running
/// [`Runtime`](crate::runtime::Runtime). Sealed.
pub trait ReportSubject: sealed::Sealed {
    /// A weak reference to the source (a reporter does not keep a runtime alive).
    fn snapshot_source(&self) -> Weak<dyn SnapshotSource>;
}

pub(crate) mod sealed {
    /// Seals [`SnapshotSource`](super::SnapshotSource) and
    /// [`ReportSubject`](super::ReportSubject) to the runtime's types.
    pub trait Sealed {}
}

use crate::atomic_file::Access;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::security::audit::{Event, format_time};

/// The standards reports are generated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ComplianceStandard {
    /// AICPA SOC 2 (Trust Services Criteria).
    Soc2,
    /// EU General Data Protection Regulation.
    Gdpr,
    /// US HIPAA Security Rule (45 CFR Part 164).
    Hipaa,
    /// PCI DSS v4.0.
    PciDss,
    /// ISO/IEC 27001:2022 Annex A.
    Iso27001,
    /// FedRAMP (NIST SP 800-53 Rev. 5 controls).
    FedRamp,
    /// NIST Cybersecurity Framework 2.0.
    NistCsf,
    /// Your own control set, for custom checks.
    Custom(&'static str),
}

impl ComplianceStandard {
    /// The seven built-in standards.
    pub const BUILT_IN: [ComplianceStandard; 7] = [
        ComplianceStandard::Soc2,
        ComplianceStandard::Gdpr,
        ComplianceStandard::Hipaa,
        ComplianceStandard::PciDss,
        ComplianceStandard::Iso27001,
        ComplianceStandard::FedRamp,
        ComplianceStandard::NistCsf,
    ];

    /// Display name.
    pub fn name(&self) -> &'static str {
        match self {
            ComplianceStandard::Soc2 => "SOC 2",
            ComplianceStandard::Gdpr => "GDPR",
            ComplianceStandard::Hipaa => "HIPAA",
            ComplianceStandard::PciDss => "PCI DSS",
            ComplianceStandard::Iso27001 => "ISO/IEC 27001:2022",
            ComplianceStandard::FedRamp => "FedRAMP (NIST SP 800-53)",
            ComplianceStandard::NistCsf => "NIST CSF 2.0",
            ComplianceStandard::Custom(name) => name,
        }
    }

    /// A short file-name-safe slug (`soc2`, `pci-dss`, ...).
    pub fn slug(&self) -> String {
        match self {
            ComplianceStandard::Soc2 => "soc2".into(),
            ComplianceStandard::Gdpr => "gdpr".into(),
            ComplianceStandard::Hipaa => "hipaa".into(),
            ComplianceStandard::PciDss => "pci-dss".into(),
            ComplianceStandard::Iso27001 => "iso27001".into(),
            ComplianceStandard::FedRamp => "fedramp".into(),
            ComplianceStandard::NistCsf => "nist-csf".into(),
            ComplianceStandard::Custom(n) => n
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect(),
        }
    }
}

impl fmt::Display for ComplianceStandard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ComplianceStatus {
    /// The control is met; `evidence` says how, from the runtime's state.
    Compliant {
        /// What shows it.
        evidence: String,
    },
    /// Partly met.
    PartiallyCompliant {
        /// What is in place.
        evidence: String,
        /// What is missing.
        finding: String,
        /// How to fix it.
        recommendation: String,
    },
    /// Not met.
    NonCompliant {
        /// What is wrong.
        finding: String,
        /// How to fix it.
        recommendation: String,
    },
    /// Does not apply to this runtime.
    NotApplicable {
        /// Why.
        reason: String,
    },
}

impl ComplianceStatus {
    /// `compliant`, `partially_compliant`, `non_compliant`, `not_applicable`.
    pub fn label(&self) -> &'static str {
        match self {
            ComplianceStatus::Compliant { .. } => "compliant",
            ComplianceStatus::PartiallyCompliant { .. } => "partially_compliant",
            ComplianceStatus::NonCompliant { .. } => "non_compliant",
            ComplianceStatus::NotApplicable { .. } => "not_applicable",
        }
    }

    /// Human label: `Compliant`, `Partially compliant`, ...
    pub fn title(&self) -> &'static str {
        match self {
            ComplianceStatus::Compliant { .. } => "Compliant",
            ComplianceStatus::PartiallyCompliant { .. } => "Partially compliant",
            ComplianceStatus::NonCompliant { .. } => "Non-compliant",
            ComplianceStatus::NotApplicable { .. } => "Not applicable",
        }
    }

    fn evidence(&self) -> Option<String> {
        match self {
            ComplianceStatus::Compliant { evidence }
            | ComplianceStatus::PartiallyCompliant { evidence, .. } => Some(evidence.clone()),
            ComplianceStatus::NotApplicable { reason } => Some(reason.clone()),
            ComplianceStatus::NonCompliant { .. } => None,
        }
    }

    fn finding(&self) -> Option<String> {
        match self {
            ComplianceStatus::PartiallyCompliant { finding, .. }
            | ComplianceStatus::NonCompliant { finding, .. } => Some(finding.clone()),
            _ => None,
        }
    }

    fn recommendation(&self) -> Option<String> {
        match self {
            ComplianceStatus::PartiallyCompliant { recommendation, .. }
            | ComplianceStatus::NonCompliant { recommendation, .. } => Some(recommendation.clone()),
            _ => None,
        }
    }
}

type CheckFn = Arc<dyn Fn(&SecuritySnapshot) -> ComplianceStatus + Send + Sync>;

/// A custom check, built like the reference API.
#[derive(Clone)]
pub struct ComplianceCheck {
    id: String,
    name: String,
    description: String,
    standard: ComplianceStandard,
    controls: Vec<String>,
    check: Option<CheckFn>,
}

impl fmt::Debug for ComplianceCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComplianceCheck")
            .field("id", &self.id)
            .field("standard", &self.standard)
            .finish_non_exhaustive()
    }
}

impl ComplianceCheck {
    /// A check with this id.
    pub fn new(id: &str) -> Self {
        ComplianceCheck {
            id: id.to_owned(),
            name: id.to_owned(),
            description: String::new(),
            standard: ComplianceStandard::Custom("CUSTOM"),
            controls: Vec::new(),
            check: None,
        }
    }

    /// Display name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// What it checks.
    pub fn description(mut self, d: &str) -> Self {
        self.description = d.to_owned();
        self
    }

    /// The standard whose reports include it (a built-in one or `Custom(..)`).
    pub fn standard(mut self, s: ComplianceStandard) -> Self {
        self.standard = s;
        self
    }

    /// Control references it evidences.
    pub fn controls(mut self, controls: &[&str]) -> Self {
        self.controls = controls.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// The evaluation, reading the runtime snapshot.
    pub fn check<F>(mut self, f: F) -> Self
    where
        F: Fn(&SecuritySnapshot) -> ComplianceStatus + Send + Sync + 'static,
    {
        self.check = Some(Arc::new(f));
        self
    }
}

/// One check's result in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Stable id (`ENC-01`, or a custom check's id).
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it checks.
    pub description: String,
    /// The report's standard.
    pub standard: ComplianceStandard,
    /// Control references of that standard it evidences.
    pub controls: Vec<String>,
    /// The outcome.
    pub status: ComplianceStatus,
    /// Evidence, when the status has some.
    pub evidence: Option<String>,
    /// What is wrong, when something is.
    pub finding: Option<String>,
    /// How to fix it, when something is wrong.
    pub recommendation: Option<String>,
}

/// Counts by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReportSummary {
    /// Compliant checks.
    pub compliant: usize,
    /// Partially compliant checks.
    pub partially_compliant: usize,
    /// Non-compliant checks.
    pub non_compliant: usize,
    /// Not applicable.
    pub not_applicable: usize,
}

/// A generated report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ComplianceReport {
    /// Schema id of the JSON form.
    pub schema: &'static str,
    /// The standard.
    pub standard: ComplianceStandard,
    /// Its display name.
    pub standard_name: String,
    /// Whose runtime.
    pub organization: String,
    /// When (RFC 3339 UTC).
    pub generated_at: String,
    /// Production or development.
    pub mode: String,
    /// The runtime instance the report was read from (32 hex digits).
    pub runtime_instance: String,
    /// Backend and device.
    pub backend: String,
    /// Counts.
    pub summary: ReportSummary,
    /// The checks, ordered by id.
    pub checks: Vec<CheckResult>,
}

/// The JSON schema id of reports.
pub const REPORT_SCHEMA: &str = "ringkernel.compliance-report/v1";

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// JSON (serde; schema in docs/compliance.md).
    Json,
    /// One self-contained HTML file with a restrictive CSP.
    Html,
    /// Markdown tables.
    Markdown,
    /// PDF with embedded subset fonts.
    Pdf,
    /// OSCAL 1.1 assessment results (JSON): each check an observation, each control it
    /// evidences a finding, the runtime instance the subject; NIST SP 800-53 rev5 ids
    /// for FedRAMP and NIST CSF reports.
    Oscal,
}

impl ExportFormat {
    /// The usual file extension.
    pub fn extension(&self) -> &'static str {
        match self {
            ExportFormat::Json => "json",
            ExportFormat::Html => "html",
            ExportFormat::Markdown => "md",
            ExportFormat::Pdf => "pdf",
            ExportFormat::Oscal => "oscal.json",
        }
    }
}

struct Monitor {
    stop: crossbeam_channel::Sender<()>,
    thread: JoinHandle<()>,
}

struct ReporterInner {
    runtime: RwLock<Option<Weak<dyn SnapshotSource>>>,
    custom: RwLock<Vec<ComplianceCheck>>,
    organization: RwLock<String>,
    fixed_time: RwLock<Option<SystemTime>>,
    last: RwLock<BTreeMap<ComplianceStandard, ComplianceReport>>,
    monitor_every: RwLock<Option<Duration>>,
    monitor: Mutex<Option<Monitor>>,
    /// Fallback fonts of the PDF export; [`PdfFonts::system`] on first use when unset.
    #[cfg(feature = "pdf")]
    pdf_fonts: RwLock<Option<Arc<PdfFonts>>>,
}

impl Drop for ReporterInner {
    fn drop(&mut self) {
        if let Some(m) = self.monitor.get_mut().take() {
            let _ = m.stop.send(());
            // The monitor thread may itself drop the last handle; it must not join itself.
            if m.thread.thread().id() != std::thread::current().id() {
                let _ = m.thread.join();
            }
        }
    }
}

/// Generates compliance reports from the live runtime. Cheap to clone.
#[derive(Clone)]
pub struct ComplianceReporter {
    inner: Arc<ReporterInner>,
}

impl fmt::Debug for ComplianceReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComplianceReporter")
            .field("organization", &*self.inner.organization.read())
            .field("custom_checks", &self.inner.custom.read().len())
            .finish_non_exhaustive()
    }
}

impl ComplianceReporter {
    /// A reporter reading `runtime` (a [`Runtime`](crate::runtime::Runtime)).
    pub fn new(runtime: &impl ReportSubject) -> Self {
        let r = Self::unattached();
        r.attach(runtime.snapshot_source());
        r
    }

    /// A reporter not yet attached to a runtime (give it to
    /// `RuntimeBuilder::with_compliance`).
    pub fn unattached() -> Self {
        ComplianceReporter {
            inner: Arc::new(ReporterInner {
                runtime: RwLock::new(None),
                custom: RwLock::new(Vec::new()),
                organization: RwLock::new(String::from("(organization not set)")),
                fixed_time: RwLock::new(None),
                last: RwLock::new(BTreeMap::new()),
                monitor_every: RwLock::new(None),
                monitor: Mutex::new(None),
                #[cfg(feature = "pdf")]
                pdf_fonts: RwLock::new(None),
            }),
        }
    }

    pub(crate) fn attach(&self, source: Weak<dyn SnapshotSource>) {
        *self.inner.runtime.write() = Some(source);
        if let Some(every) = *self.inner.monitor_every.read() {
            self.start_monitor(every);
        }
    }

    /// The organization named in reports.
    pub fn organization(self, name: &str) -> Self {
        *self.inner.organization.write() = name.to_owned();
        self
    }

    /// Reports use this time instead of the clock (reproducible reports, tests).
    pub fn with_fixed_time(self, at: SystemTime) -> Self {
        *self.inner.fixed_time.write() = Some(at);
        self
    }

    /// The fonts the PDF export uses for characters DejaVu Sans lacks (CJK, and any
    /// script you add). Without this call the reporter uses [`PdfFonts::system`] (the
    /// `RINGKERNEL_PDF_FONTS` files, then Noto in its usual system places), read on the
    /// first PDF export.
    #[cfg(feature = "pdf")]
    pub fn pdf_fonts(self, fonts: PdfFonts) -> Self {
        *self.inner.pdf_fonts.write() = Some(Arc::new(fonts));
        self
    }

    #[cfg(feature = "pdf")]
    fn pdf_fonts_in_use(&self) -> Result<Arc<PdfFonts>> {
        if let Some(fonts) = self.inner.pdf_fonts.read().clone() {
            return Ok(fonts);
        }
        let fonts = Arc::new(PdfFonts::system()?);
        Ok(self.inner.pdf_fonts.write().get_or_insert(fonts).clone())
    }

    /// Adds a custom check to the reports of its standard.
    pub fn add_check(&self, check: ComplianceCheck) {
        let mut custom = self.inner.custom.write();
        custom.retain(|c| !(c.id == check.id && c.standard == check.standard));
        custom.push(check);
    }

    fn source(&self) -> Result<Arc<dyn SnapshotSource>> {
        self.inner
            .runtime
            .read()
            .as_ref()
            .and_then(Weak::upgrade)
            .ok_or_else(|| {
                Error::InvalidConfig(
                    "the compliance reporter is not attached to a running runtime".into(),
                )
            })
    }

    /// A snapshot of the runtime now.
    pub fn context(&self) -> Result<SecuritySnapshot> {
        let source = self.source()?;
        let at = self.inner.fixed_time.read().unwrap_or_else(SystemTime::now);
        Ok(source.security_snapshot(at))
    }

    /// Runs the built-in and custom checks of `standard` against a fresh snapshot and
    /// records the run in the audit log.
    pub fn generate(&self, standard: ComplianceStandard) -> Result<ComplianceReport> {
        let ctx = self.context()?;
        let report = self.generate_from(&ctx, standard);
        if let Ok(source) = self.source() {
            let s = report.summary;
            source.record_audit(Event::ComplianceReport {
                standard: standard.name().to_owned(),
                compliant: s.compliant as u64,
                partially_compliant: s.partially_compliant as u64,
                non_compliant: s.non_compliant as u64,
            });
        }
        Ok(report)
    }

    /// Runs the checks of `standard` against `ctx`. The same context gives the same
    /// report.
    pub fn generate_from(
        &self,
        ctx: &SecuritySnapshot,
        standard: ComplianceStandard,
    ) -> ComplianceReport {
        let mut checks = Vec::new();
        for b in catalog::CATALOG {
            let Some((_, controls)) = b.controls.iter().find(|(s, _)| *s == standard) else {
                continue;
            };
            let status = (b.eval)(ctx, &standard);
            checks.push(result(
                b.id,
                b.name,
                b.description,
                standard,
                controls.iter().map(|c| (*c).to_owned()).collect(),
                status,
            ));
        }
        for c in self
            .inner
            .custom
            .read()
            .iter()
            .filter(|c| c.standard == standard)
        {
            let status = match &c.check {
                Some(f) => f(ctx),
                None => ComplianceStatus::NotApplicable {
                    reason: "the check has no evaluation".into(),
                },
            };
            checks.push(result(
                &c.id,
                &c.name,
                &c.description,
                standard,
                c.controls.clone(),
                status,
            ));
        }
        checks.sort_by(|a, b| a.id.cmp(&b.id));
        let mut summary = ReportSummary::default();
        for c in &checks {
            match c.status {
                ComplianceStatus::Compliant { .. } => summary.compliant += 1,
                ComplianceStatus::PartiallyCompliant { .. } => summary.partially_compliant += 1,
                ComplianceStatus::NonCompliant { .. } => summary.non_compliant += 1,
                ComplianceStatus::NotApplicable { .. } => summary.not_applicable += 1,
            }
        }
        ComplianceReport {
            schema: REPORT_SCHEMA,
            standard,
            standard_name: standard.name().to_owned(),
            organization: self.inner.organization.read().clone(),
            generated_at: format_time(ctx.generated_at),
            mode: format!("{:?}", ctx.mode),
            runtime_instance: ctx.runtime_instance.clone(),
            backend: format!("{} ({})", ctx.backend.name, ctx.backend.device),
            summary,
            checks,
        }
    }

    /// The report in `format`, as bytes.
    ///
    /// # Errors
    ///
    /// A PDF fails with [`Error::InvalidConfig`] when a font named in
    /// `RINGKERNEL_PDF_FONTS` cannot be used (see `PdfFonts::system`).
    pub fn render(&self, report: &ComplianceReport, format: ExportFormat) -> Result<Vec<u8>> {
        export::render(
            report,
            format,
            #[cfg(feature = "pdf")]
            || self.pdf_fonts_in_use(),
        )
    }

    /// Writes the report in `format` to `path` (parent directories are created),
    /// atomically: a failed write leaves what was at `path` as it was.
    pub fn export(
        &self,
        report: &ComplianceReport,
        format: ExportFormat,
        path: impl AsRef<Path>,
    ) -> Result<()> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        // Atomically: a failed write (a full disk) leaves an earlier report at `path`
        // whole instead of a truncated one.
        crate::atomic_file::write(path, &self.render(report, format)?, Access::Default)
    }

    /// Regenerates every built-in (and custom) standard's report on this interval,
    /// keeps the latest ones ([`ComplianceReporter::last_reports`]) and writes every
    /// status change to the audit log. Starts when the reporter is attached.
    pub fn enable_continuous_monitoring(self, every: Duration) -> Self {
        *self.inner.monitor_every.write() = Some(every);
        if self.inner.runtime.read().is_some() {
            self.start_monitor(every);
        }
        self
    }

    /// The latest report of each standard from continuous monitoring.
    pub fn last_reports(&self) -> Vec<ComplianceReport> {
        self.inner.last.read().values().cloned().collect()
    }

    /// Generates every standard once, updates the latest reports and audits changes.
    /// Returns how many check statuses changed since the previous run.
    pub fn monitor_once(&self) -> Result<usize> {
        let ctx = self.context()?;
        let mut standards: Vec<ComplianceStandard> = ComplianceStandard::BUILT_IN.to_vec();
        for c in self.inner.custom.read().iter() {
            if !standards.contains(&c.standard) {
                standards.push(c.standard);
            }
        }
        let source = self.source()?;
        let mut changes = 0;
        for s in standards {
            let report = self.generate_from(&ctx, s);
            let previous = self.inner.last.read().get(&s).cloned();
            if let Some(prev) = previous {
                for c in &report.checks {
                    let before = prev
                        .checks
                        .iter()
                        .find(|p| p.id == c.id)
                        .map(|p| p.status.label());
                    if before.is_some_and(|b| b != c.status.label()) {
                        changes += 1;
                        source.record_audit(Event::ComplianceStatusChange {
                            standard: s.name().to_owned(),
                            check: c.id.to_string(),
                            from: before.unwrap_or("none").to_owned(),
                            to: c.status.label().to_owned(),
                        });
                    }
                }
            }
            self.inner.last.write().insert(s, report);
        }
        Ok(changes)
    }

    fn start_monitor(&self, every: Duration) {
        let mut slot = self.inner.monitor.lock();
        if slot.is_some() {
            return;
        }
        let (stop, rx) = crossbeam_channel::bounded::<()>(1);
        let weak = Arc::downgrade(&self.inner);
        let thread = std::thread::Builder::new()
            .name("rk-compliance".into())
            .spawn(move || {
                loop {
                    let Some(inner) = weak.upgrade() else { break };
                    let reporter = ComplianceReporter { inner };
                    if let Err(e) = reporter.monitor_once() {
                        tracing::debug!(error = %e, "compliance monitoring run skipped");
                    }
                    drop(reporter);
                    match rx.recv_timeout(every) {
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                }
            });
        match thread {
            Ok(thread) => *slot = Some(Monitor { stop, thread }),
            Err(e) => tracing::error!(error = %e, "cannot start compliance monitoring"),
        }
    }
}

fn result(
    id: &str,
    name: &str,
    description: &str,
    standard: ComplianceStandard,
    controls: Vec<String>,
    status: ComplianceStatus,
) -> CheckResult {
    CheckResult {
        id: id.to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        standard,
        controls,
        evidence: status.evidence(),
        finding: status.finding(),
        recommendation: status.recommendation(),
        status,
    }
}
