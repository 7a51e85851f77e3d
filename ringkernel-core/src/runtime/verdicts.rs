//! Carrying out the sandbox's verdicts. The sandbox decides; the gate only acts on its
//! decision: record the violation, refuse the operation, and stop the kernel when the
//! policy says so.

use super::gate::Gate;
use super::registry::KernelEntry;
use crate::error::{Error, Result};
use crate::security::audit::{Event, ViolationAction};
use crate::security::sandbox::{self, Outcome, Verdict};

impl Gate {
    /// Carries out a sandbox verdict for `entry`'s operation.
    /// Every violation the verdict recorded is audited on its own, in order.
    pub(super) fn enforce(&self, entry: &KernelEntry, verdict: Verdict) -> Result<()> {
        if verdict.is_allow() {
            return Ok(());
        }
        for (e, action) in verdict.violations() {
            self.audit_violation(entry, e, action);
        }
        match verdict.into_outcome() {
            Outcome::Proceed => Ok(()),
            Outcome::Refuse(e) => Err(e),
            Outcome::RefuseAndTerminate(e) => {
                if let Err(stop) = self.request_stop(entry) {
                    tracing::error!(kernel = %entry.id, error = %stop, "cannot stop violating kernel");
                }
                Err(e)
            }
        }
    }

    fn audit_violation(&self, entry: &KernelEntry, e: &Error, action: sandbox::ViolationAction) {
        if !self.audits(|c| c.log_violations) {
            return;
        }
        let (kind, reason) = match e {
            Error::Denied {
                violation, reason, ..
            } => (violation.to_string(), reason.clone()),
            other => ("other".to_owned(), other.to_string()),
        };
        let action = match action {
            sandbox::ViolationAction::Deny => ViolationAction::Deny,
            sandbox::ViolationAction::LogOnly => ViolationAction::LogOnly,
            sandbox::ViolationAction::Terminate => ViolationAction::Terminate,
        };
        self.audit(|| Event::SandboxViolation {
            kernel: entry.id.clone(),
            kind,
            reason,
            action,
        });
    }
}
