//! Launching a kernel: the gate registers it (refusing a live duplicate), lets the
//! sandbox admit it, writes its first control block (sealed when sealing is on) and
//! starts the backend's worker with the kernel's driver.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::LaunchOptions;
use super::gate::Gate;
use super::port::GatePort;
use super::registry::{ControlSlot, KernelEntry};
use super::sealing::KernelContexts;
use crate::backend::{KernelDriver, KernelLaunch};
use crate::control::ControlBlock;
use crate::error::Result;
use crate::k2k::KernelId;
use crate::security::audit::{Event, Failure, Launched};

impl Gate {
    /// Launches kernel `id` (see the module docs); on failure everything it had is
    /// released again and the id is free.
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
        let entry = self.kernels.register(&id, || {
            let incarnation = self.incarnations.next(&id)?;
            // The sandbox picks the kernel's limits and policy and gives it its route slot.
            let sandbox = self.sandbox.as_ref().map(|s| s.register(&id)).transpose()?;
            Ok(KernelEntry::new(
                id.clone(),
                incarnation,
                KernelContexts::new(&self.instance, &id, incarnation),
                sandbox,
                cb.input_capacity as usize,
                device,
            ))
        })?;
        match self.start_kernel(&entry, cb, opts) {
            Ok(()) => {
                tracing::info!(kernel = %id, "kernel launched");
                self.audit(|| Event::KernelLaunch {
                    kernel: id.clone(),
                    outcome: Ok(Launched {
                        incarnation: entry.incarnation,
                        queue_capacity: capacity as u64,
                        sealed_control_block: self.sealing.seals_control(),
                    }),
                });
                Ok(entry)
            }
            Err(e) => {
                self.audit(|| Event::KernelLaunch {
                    kernel: id.clone(),
                    outcome: Err(Failure::of(&e)),
                });
                entry.stop_requested.store(true, Ordering::Release);
                entry.mailbox.close();
                self.finalize(&entry);
                self.kernels.remove(&id);
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
