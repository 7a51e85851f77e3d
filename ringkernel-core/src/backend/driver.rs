//! How a backend drives a kernel: [`KernelDriver`], the runtime-owned host interface.
//!
//! The runtime creates one driver per launch and hands it to the backend in
//! [`KernelLaunch`](super::KernelLaunch). The backend's loop takes batches from the
//! kernel's mailbox, records what each batch did, runs device rounds under the control
//! block's lock, reports sends the device refused and marks the kernel's end, all
//! through this type. Kernel code never gets one: a handler sees only the
//! [`KernelContext`] (user operations), and no method of the context leads here. So a
//! handler cannot forge its counters, take messages meant for the loop or record
//! violations for other kernels.
//!
//! Both types are fronts over a [`KernelPort`](super::port::KernelPort), which the
//! runtime implements; the trait is crate-private, so neither kernels nor backends can
//! implement or call it.

use std::sync::Arc;

use super::context::KernelContext;
use super::device::{DeviceRound, DeviceRoundOutcome};
use super::port::{BatchOutcome, KernelPort};
use crate::error::{Error, Result};
use crate::k2k::{KernelId, Message};

/// The host interface through which a backend runs one kernel. Created by the runtime
/// for each launch and handed to the backend only; see the module docs.
#[derive(Clone)]
pub struct KernelDriver {
    port: Arc<dyn KernelPort>,
    context: KernelContext,
}

impl std::fmt::Debug for KernelDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelDriver")
            .field("kernel", self.port.id())
            .finish()
    }
}

impl KernelDriver {
    pub(crate) fn new(port: Arc<dyn KernelPort>) -> Self {
        let context = KernelContext::new(port.clone());
        KernelDriver { port, context }
    }

    /// The kernel's id.
    pub fn id(&self) -> &KernelId {
        self.port.id()
    }

    /// The context to hand the kernel's handler with every message.
    pub fn context(&self) -> &KernelContext {
        &self.context
    }

    /// The next batch of at most `max` messages (possibly empty after the poll
    /// interval), or `None` once the kernel must stop.
    pub fn next_batch(&self, max: usize) -> Option<Vec<Message>> {
        self.port.next_batch(max)
    }

    /// Records a finished batch in the control block.
    pub fn complete_batch(&self, outcome: BatchOutcome) {
        self.port.complete_batch(outcome);
    }

    /// The kernel's last act on a normal stop.
    pub fn mark_terminated(&self) {
        self.port.mark_terminated();
    }

    /// The handler panicked with `message`: the kernel stops and records why.
    pub fn stop_after_panic(&self, message: &str) {
        self.port.stop_after_panic(message);
    }

    /// Runs one device round: `f` receives the round's inputs while the runtime holds
    /// the control block's lock (so no host update interleaves) and returns what the
    /// device did along with its own result.
    pub fn device_round<R>(
        &self,
        f: impl FnOnce(DeviceRound) -> Result<(DeviceRoundOutcome, R)>,
    ) -> Result<R> {
        let mut f = Some(f);
        let mut out = None;
        self.port.device_round(&mut |round| {
            let f = f
                .take()
                .ok_or_else(|| Error::backend("device round callback ran more than once"))?;
            let (outcome, r) = f(round)?;
            out = Some(r);
            Ok(outcome)
        })?;
        out.ok_or_else(|| Error::backend("device round callback did not run"))
    }

    /// Reports `count` device-side sends to `peer` that the device refused because the
    /// route table does not permit them; each becomes an `UnauthorizedK2K` violation.
    pub fn report_device_refusals(&self, peer: &KernelId, count: u64) {
        self.port.device_refusals(peer, count);
    }

    /// Stops the kernel because its device failed (for example, its control block did
    /// not authenticate): records `error` in the control block's final copy.
    pub fn stop_with_error(&self, error: &Error) {
        self.port.stop_with_error(error);
    }
}
