//! The periodic tick the runtime's ticker thread drives: timed key work, the
//! execution-time watchdog, and finalizing kernels that stopped on their own.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::gate::Gate;
use crate::security::audit::{Event, WatchdogAction};
use crate::security::sandbox::WatchdogStep;

impl Gate {
    /// Periodic work, driven by the runtime's ticker thread: finalize kernels whose
    /// execution ended on its own (handler panic, backend failure).
    pub(super) fn tick(&self) {
        let Some(_only_one) = self.tick_lock.try_lock() else {
            return;
        };
        self.tick_encryption();
        self.tick_watchdog();
        let entries = self.kernels.entries();
        for entry in entries {
            if entry.finalized.load(Ordering::Acquire) {
                continue;
            }
            let finished = entry
                .worker
                .lock()
                .as_ref()
                .is_some_and(|w| w.is_finished());
            if finished {
                entry.stop_requested.store(true, Ordering::Release);
                self.finalize(&entry);
            }
        }
    }

    /// Execution-time limits: raise should_terminate, then stop by force after the
    /// sandbox's grace period.
    fn tick_watchdog(&self) {
        let Some(sb) = &self.sandbox else {
            return;
        };
        for step in sb.watchdog(Instant::now()) {
            let (WatchdogStep::Raise(id) | WatchdogStep::Force(id)) = &step;
            let Ok(entry) = self.kernels.get(id.as_str()) else {
                continue;
            };
            if entry.finalized.load(Ordering::Acquire) {
                continue;
            }
            self.audit(|| Event::SandboxWatchdog {
                kernel: entry.id.clone(),
                step: match step {
                    WatchdogStep::Raise(_) => WatchdogAction::RaiseShouldTerminate,
                    WatchdogStep::Force(_) => WatchdogAction::CutOffAfterGrace,
                },
            });
            match step {
                WatchdogStep::Raise(_) => {
                    if let Err(e) = self.request_stop(&entry) {
                        tracing::error!(kernel = %entry.id, error = %e, "watchdog cannot raise should_terminate");
                    }
                }
                WatchdogStep::Force(_) => {
                    let finished = entry.worker.lock().as_ref().is_none_or(|w| w.is_finished());
                    self.finalize_with(&entry, finished);
                }
            }
        }
    }
}
