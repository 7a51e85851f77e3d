//! Kernels that run on a GPU: the [`DeviceProgram`] a launch names, and the round
//! protocol through which a device backend's host driver runs it under the runtime's
//! security gate.
//!
//! A device backend cannot let its kernel spin forever (WebGPU promises no forward
//! progress to a spinning kernel), so a host driver thread dispatches the kernel in
//! rounds. Each round goes through [`KernelContext::device_round`]: the gate locks the
//! kernel's control block, reserves a device-direction nonce and the next sequence
//! number, hands over the key slots and the route table, and records the re-sealing
//! the device did. Between rounds the driver takes input batches with
//! [`KernelContext::next_batch`], delivers the device's sends with
//! [`KernelContext::send`] (checked once more by the host gate) and reports sends the
//! device refused with [`KernelContext::report_device_refusals`].

use std::sync::Arc;

use crate::backend::BufferId;
use crate::error::Result;
use crate::k2k::KernelId;
use crate::runtime::KernelContext;
use crate::security::encryption::{DeviceKey, DeviceSeal};
use crate::security::sandbox::RouteTable;

/// The device program of a GPU kernel: the runtime's persistent kernel with its
/// built-in handler.
///
/// The handler computes the FNV-1a (32-bit) checksum of every message payload on the
/// device. With [`DeviceProgram::forward_to`] it also sends each checksum (4 bytes,
/// little-endian, topic `"checksum"`) to a peer kernel; the device checks each such
/// send against the uploaded route bitmap first, so a peer the sandbox denies cannot
/// even be addressed.
#[derive(Clone, Debug, Default)]
pub struct DeviceProgram {
    forward_to: Option<KernelId>,
    max_batch: Option<usize>,
}

impl DeviceProgram {
    /// The checksum kernel.
    pub fn checksum() -> Self {
        DeviceProgram::default()
    }

    /// Sends every checksum to kernel `peer` (validated as a kernel id).
    pub fn forward_to(mut self, peer: &str) -> Result<Self> {
        self.forward_to = Some(KernelId::new(peer)?);
        Ok(self)
    }

    /// At most `n` messages per round (at least 1; backends cap it further).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = Some(n.max(1));
        self
    }

    /// The peer checksums are sent to, if any.
    pub fn peer(&self) -> Option<&KernelId> {
        self.forward_to.as_ref()
    }

    /// The configured batch bound, if any.
    pub fn batch_limit(&self) -> Option<usize> {
        self.max_batch
    }
}

/// What the gate hands a device driver for one round.
#[derive(Debug)]
pub struct DeviceRound {
    /// The kernel's control-block buffer.
    pub control: BufferId,
    /// The sealing number of the control block now in the buffer (the device refuses
    /// any other: a replayed older block does not open).
    pub sequence: u64,
    /// Messages ever enqueued to the kernel (the control block's `input_tail`).
    pub queued_total: u64,
    /// Present when control blocks are sealed.
    pub sealing: Option<DeviceRoundSealing>,
    /// The sandbox's route table and this kernel's slot in it; `None` without a
    /// sandbox (every route is open).
    pub routes: Option<(Arc<RouteTable>, usize)>,
}

/// Key slots and the reserved sealing of one round.
#[derive(Debug)]
pub struct DeviceRoundSealing {
    /// Key slots: the current epoch first, then the newest older live epoch.
    pub keys: Vec<DeviceKey>,
    /// Header (with the reserved device-direction nonce and the next sequence number)
    /// and key for re-sealing the block at the end of the round.
    pub seal: DeviceSeal,
}

/// What a device driver reports after a round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceRoundOutcome {
    /// The device re-sealed (or, unsealed, rewrote) the control block: the gate moves
    /// the block's sequence number on.
    pub resealed: bool,
}

/// The control block's sealing number after a round that did or did not re-seal.
pub(crate) fn next_sequence(sequence: u64, outcome: DeviceRoundOutcome) -> u64 {
    if outcome.resealed {
        sequence + 1
    } else {
        sequence
    }
}

impl KernelContext {
    /// Runs one device round: `f` receives the round's inputs while the gate holds the
    /// control block's lock (so no host update interleaves) and returns what the device
    /// did along with its own result.
    pub fn device_round<R>(
        &self,
        f: impl FnOnce(DeviceRound) -> Result<(DeviceRoundOutcome, R)>,
    ) -> Result<R> {
        self.gate().device_round(self.entry(), f)
    }

    /// Reports `count` device-side sends to `peer` that the device refused because the
    /// route table does not permit them; each becomes an `UnauthorizedK2K` violation.
    pub fn report_device_refusals(&self, peer: &KernelId, count: u64) {
        self.gate().device_refusals(self.entry(), peer, count);
    }

    /// Stops the kernel because its device failed (for example, its control block did
    /// not authenticate): records `error` in the control block's final copy.
    pub fn stop_with_error(&self, error: &crate::Error) {
        self.gate().stop_with_error(self.entry(), error);
    }
}
