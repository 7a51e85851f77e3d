//! Carrying out the sandbox's verdicts. The sandbox decides; the gate only acts on its
//! decision: record the violation, refuse the operation, and stop the kernel when the
//! policy says so.

use super::gate::Gate;
use super::registry::KernelEntry;
use crate::error::{Error, Result};
use crate::security::audit::{Event, ViolationAction};
use crate::security::sandbox::Verdict;

impl Gate {
    /// Carries out a sandbox verdict for `entry`'s operation.
    pub(super) fn enforce(&self, entry: &KernelEntry, verdict: Verdict) -> Result<()> {
        match &verdict {
            Verdict::Allow => {}
            Verdict::AllowLogged(e) | Verdict::Deny(e) | Verdict::DenyAndTerminate(e) => {
                self.audit_violation(entry, e, &verdict);
            }
        }
        match verdict {
            Verdict::Allow | Verdict::AllowLogged(_) => Ok(()),
            Verdict::Deny(e) => Err(e),
            Verdict::DenyAndTerminate(e) => {
                if let Err(stop) = self.request_stop(entry) {
                    tracing::error!(kernel = %entry.id, error = %stop, "cannot stop violating kernel");
                }
                Err(e)
            }
        }
    }

    fn audit_violation(&self, entry: &KernelEntry, e: &Error, verdict: &Verdict) {
        if !self.audits(|c| c.log_violations) {
            return;
        }
        let (kind, reason) = match e {
            Error::Denied {
                violation, reason, ..
            } => (violation.to_string(), reason.clone()),
            other => ("other".to_owned(), other.to_string()),
        };
        let action = match verdict {
            Verdict::AllowLogged(_) => ViolationAction::LogOnly,
            Verdict::DenyAndTerminate(_) => ViolationAction::Terminate,
            _ => ViolationAction::Deny,
        };
        self.audit(|| Event::SandboxViolation {
            kernel: entry.id.clone(),
            kind,
            reason,
            action,
        });
    }
}
