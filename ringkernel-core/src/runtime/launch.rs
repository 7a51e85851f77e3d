//! Launching a kernel: the gate registers it (refusing a live duplicate), lets the
//! sandbox admit it, writes its first control block (sealed when sealing is on) and
//! starts the backend's worker with the kernel's driver.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use super::LaunchOptions;
use super::context::GatePort;
use super::gate::Gate;
use super::registry::{ControlSlot, KernelEntry, SenderState};
use super::sealing::KernelContexts;
use crate::backend::{KernelDriver, KernelLaunch};
use crate::control::ControlBlock;
use crate::error::{Error, Result};
use crate::k2k::{HybridClock, KernelId, Mailbox};
use crate::security::audit::AuditEvent;

impl Gate {
    pub(super) fn launch(
        self: &Arc<Self>,
        id: &str,
        opts: LaunchOptions,
    ) -> Result<Arc<KernelEntry>> {
        self.ensure_open()?;
        let id = KernelId::new(id)?;
        let device = matches!(opts.program, crate::backend::KernelProgram::Device(_));
        let capacity = opts
            .queue_capacity
            .unwrap_or(self.config.default_queue_capacity);
        crate::k2k::validate_queue_capacity("queue_capacity", capacity)?;
        let cb = ControlBlock::new(u32::try_from(capacity).unwrap_or(u32::MAX));
        let mut kernels = self.kernels.write();
        if let Some(old) = kernels.get(&id)
            && !old.finalized.load(Ordering::Acquire)
        {
            return Err(Error::DuplicateKernel { id: id.to_string() });
        }
        let incarnation = self.incarnations.next(&id)?;
        // The sandbox picks the kernel's limits and policy and gives it its route slot.
        let sandbox = self.sandbox.as_ref().map(|s| s.register(&id)).transpose()?;
        let entry = Arc::new(KernelEntry {
            id: id.clone(),
            incarnation,
            integrity_failures: AtomicU64::new(0),
            sandbox,
            mailbox: Mailbox::new(id.clone(), cb.input_capacity as usize),
            contexts: KernelContexts::new(&self.instance, &id, incarnation),
            state: Mutex::new(None),
            control: Mutex::new(ControlSlot::Final(ControlBlock::default())),
            sender: Mutex::new(SenderState::default()),
            clock: HybridClock::new(),
            sent: AtomicU64::new(0),
            buffers: Mutex::new(HashMap::new()),
            memory: AtomicU64::new(0),
            worker: Mutex::new(None),
            stop_requested: AtomicBool::new(false),
            finalized: AtomicBool::new(false),
            undelivered: AtomicU64::new(0),
            launched_at: Instant::now(),
            device,
        });
        kernels.insert(id.clone(), entry.clone());
        drop(kernels);
        match self.start_kernel(&entry, cb, opts) {
            Ok(()) => {
                tracing::info!(kernel = %id, "kernel launched");
                self.audit(|| {
                    AuditEvent::new("kernel.launch")
                        .actor("host")
                        .target(&id)
                        .detail("incarnation", u64::from(incarnation))
                        .detail("queue_capacity", capacity as u64)
                        .detail("sealed_control_block", self.sealing.seals_control())
                });
                Ok(entry)
            }
            Err(e) => {
                self.audit(|| {
                    Self::failed(
                        AuditEvent::new("kernel.launch").actor("host").target(&id),
                        &e,
                    )
                });
                entry.stop_requested.store(true, Ordering::Release);
                entry.mailbox.close();
                self.finalize(&entry);
                self.kernels.write().remove(&id);
                Err(e)
            }
        }
    }

    fn start_kernel(
        self: &Arc<Self>,
        entry: &Arc<KernelEntry>,
        mut cb: ControlBlock,
        opts: LaunchOptions,
    ) -> Result<()> {
        let control_len = self.sealing.control_len(entry.device);
        let control = self.allocate(entry, control_len as u64)?;
        cb.is_active = 1;
        let ts = entry.clock.now();
        cb.hlc_physical = ts.physical;
        cb.hlc_logical = ts.logical;
        self.sealing.write_control(
            &*self.backend,
            control,
            entry.contexts.control,
            0,
            &cb,
            entry.device,
        )?;
        *entry.control.lock() = ControlSlot::Live {
            buf: control,
            seq: 0,
        };
        let worker = self.backend.launch(KernelLaunch {
            id: entry.id.clone(),
            control,
            program: opts.program,
            control_len,
            driver: KernelDriver::new(GatePort::new(self.clone(), entry.clone())),
        })?;
        *entry.worker.lock() = Some(worker);
        Ok(())
    }
}
