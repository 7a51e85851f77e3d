//! The gate's audit records: the one way every job records an event, and the records
//! of memory access and of sealed regions that failed to open.

use std::sync::atomic::Ordering;

use super::gate::Gate;
use super::registry::KernelEntry;
use crate::backend::BufferId;
use crate::error::Error;
use crate::error::Result;
use crate::security::audit::{AuditFailurePolicy, Event, Failure, MemoryOp};

impl Gate {
    /// Records an event when an audit log is configured; `make` runs only then.
    pub(super) fn audit(&self, make: impl FnOnce() -> Event) {
        if let Some(log) = &self.audit
            && let Err(e) = log.append(make())
        {
            tracing::error!(error = %e, "audit record could not be queued");
        }
    }

    /// Whether an audited operation may go ahead: refused with the log's stopped error
    /// once the audit log has stopped at a failed write and its policy is
    /// [`AuditFailurePolicy::FailClosed`] (the default), so that nothing happens
    /// unrecorded. Stopping kernels and shutting down never ask.
    pub(super) fn ensure_audited(&self) -> Result<()> {
        match &self.audit {
            Some(log) if log.config().on_failure == AuditFailurePolicy::FailClosed => {
                match log.stopped() {
                    None => Ok(()),
                    Some(cause) => Err(Error::Io(std::io::Error::other(format!(
                        "refused: the audit log stopped at a failed write ({cause}) and the \
                         runtime fails closed (AuditFailurePolicy::FailClosed); fix the cause \
                         and restart the runtime"
                    )))),
                }
            }
            _ => Ok(()),
        }
    }

    /// Whether an audit log is configured and its configuration `pick`s this kind of event.
    pub(super) fn audits(
        &self,
        pick: impl Fn(&crate::security::audit::AuditConfig) -> bool,
    ) -> bool {
        self.audit
            .as_ref()
            .is_some_and(|l| pick(&l.config().events))
    }

    /// Records a buffer operation (`memory.<op>`) when memory access is audited.
    pub(super) fn audit_memory(
        &self,
        entry: &KernelEntry,
        op: MemoryOp,
        buf: BufferId,
        bytes: u64,
        err: Option<&Error>,
    ) {
        if self.audits(|c| c.log_memory_access) {
            self.audit(|| Event::Memory {
                op,
                kernel: entry.id.clone(),
                buffer: buf.0,
                bytes,
                failure: err.map(Failure::of),
            });
        }
    }

    /// Audits a sealed region of `entry` that failed to open, naming what happened
    /// (tampered, stale, replayed, wrong context or key...): the first failure of a
    /// launch, then at every power of two, so a poller cannot flood the log.
    pub(super) fn audit_integrity(&self, entry: &KernelEntry, region: &str, e: &Error) {
        let Some(kind) = e.integrity_kind() else {
            return;
        };
        let n = entry.integrity_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n.is_power_of_two() {
            tracing::error!(kernel = %entry.id, region, kind, error = %e, "sealed region refused");
            self.audit(|| Event::SealRefused {
                kernel: entry.id.clone(),
                region: region.to_owned(),
                kind,
                error: e.to_string(),
                failures: n,
            });
        }
    }
}
