//! A kernel's device buffers: allocate (within its memory limit, at the backend's real
//! reserved size), write, read and free, each checked for ownership, kept away from the
//! control block and saved state, and audited.

use std::sync::atomic::Ordering;

use super::gate::Gate;
use super::registry::{ControlSlot, KernelEntry};
use crate::backend::BufferId;
use crate::error::{Error, Result};
use crate::security::audit::MemoryOp;

impl Gate {
    /// Allocates a buffer of at least `len` bytes owned by the kernel (within its
    /// sandbox memory limit, counted at the backend's reserved size); audited.
    pub(super) fn allocate(&self, entry: &KernelEntry, len: u64) -> Result<BufferId> {
        let r = self.allocate_inner(entry, len);
        let buf = *r.as_ref().unwrap_or(&BufferId(0));
        self.audit_memory(entry, MemoryOp::Allocate, buf, len, r.as_ref().err());
        r
    }

    fn allocate_inner(&self, entry: &KernelEntry, len: u64) -> Result<BufferId> {
        self.ensure_open()?;
        if entry.finalized.load(Ordering::Acquire) {
            return Err(Error::KernelTerminated {
                id: entry.id.to_string(),
            });
        }
        // Held across the allocation so that concurrent allocations of one kernel are
        // accounted (and, with a sandbox, limited) one at a time.
        let mut buffers = entry.buffers.lock();
        if let (Some(sb), Some(slot)) = (&self.sandbox, &entry.sandbox) {
            // Limits use the backend's real reserved size, never the caller's number.
            let reserved = self.backend.allocation_size(len)?;
            let used = entry.memory.load(Ordering::Acquire);
            self.enforce(entry, sb.check_allocation(slot, used, reserved))?;
        }
        let alloc = self.backend.allocate(len)?;
        buffers.insert(alloc.id, alloc.reserved);
        entry.memory.fetch_add(alloc.reserved, Ordering::AcqRel);
        Ok(alloc.id)
    }

    /// Buffer access is refused like any audited operation once the audit log has
    /// stopped under `AuditFailurePolicy::FailClosed`, when memory access is audited.
    fn ensure_memory_audited(&self) -> Result<()> {
        if self.audits(|c| c.log_memory_access) {
            self.ensure_audited()
        } else {
            Ok(())
        }
    }

    fn owned(&self, entry: &KernelEntry, buf: BufferId) -> Result<()> {
        if entry.buffers.lock().contains_key(&buf) {
            Ok(())
        } else {
            Err(Error::UnknownBuffer(buf.0))
        }
    }

    /// Writes into a kernel's buffer. `by_kernel` marks writes through the kernel's
    /// own context, which a read-only memory policy refuses.
    pub(super) fn write(
        &self,
        entry: &KernelEntry,
        buf: BufferId,
        offset: u64,
        data: &[u8],
        by_kernel: bool,
    ) -> Result<()> {
        let r = (|| {
            self.ensure_memory_audited()?;
            self.owned(entry, buf)?;
            self.guard_control_buffer(entry, buf)?;
            if by_kernel {
                self.check_kernel_write(entry, buf.0)?;
            }
            self.backend.write(buf, offset, data)
        })();
        self.audit_memory(
            entry,
            MemoryOp::Write,
            buf,
            data.len() as u64,
            r.as_ref().err(),
        );
        r
    }

    /// The sandbox's read-only policy on a write through the kernel's own context
    /// (`buffer` 0: its saved state).
    pub(super) fn check_kernel_write(&self, entry: &KernelEntry, buffer: u64) -> Result<()> {
        match (&self.sandbox, &entry.sandbox) {
            (Some(sb), Some(slot)) => self.enforce(entry, sb.check_write(slot, buffer)),
            _ => Ok(()),
        }
    }

    /// Reads `len` bytes at `offset` from one of the kernel's buffers; audited.
    pub(super) fn read(
        &self,
        entry: &KernelEntry,
        buf: BufferId,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        let r = (|| {
            self.ensure_memory_audited()?;
            self.owned(entry, buf)?;
            self.guard_control_buffer(entry, buf)?;
            let mut out = vec![0u8; len];
            self.backend.read(buf, offset, &mut out)?;
            Ok(out)
        })();
        self.audit_memory(entry, MemoryOp::Read, buf, len as u64, r.as_ref().err());
        r
    }

    /// The control block and the saved state are reached only through their own
    /// gate paths (which seal and open them), never through the buffer API.
    fn guard_control_buffer(&self, entry: &KernelEntry, buf: BufferId) -> Result<()> {
        if matches!(&*entry.control.lock(), ControlSlot::Live { buf: b, .. } if *b == buf) {
            return Err(Error::UnknownBuffer(buf.0));
        }
        if matches!(&*entry.state.lock(), Some(s) if s.buf == buf) {
            return Err(Error::UnknownBuffer(buf.0));
        }
        Ok(())
    }

    /// Frees a kernel's buffer. `by_kernel` marks frees through the kernel's own
    /// context, which a read-only memory policy refuses like a write.
    pub(super) fn free(&self, entry: &KernelEntry, buf: BufferId, by_kernel: bool) -> Result<()> {
        self.ensure_memory_audited()?;
        self.guard_control_buffer(entry, buf)?;
        if by_kernel && let (Some(sb), Some(slot)) = (&self.sandbox, &entry.sandbox) {
            let checked = self
                .owned(entry, buf)
                .and_then(|()| self.enforce(entry, sb.check_free(slot, buf.0)));
            if let Err(e) = checked {
                self.audit_memory(entry, MemoryOp::Free, buf, 0, Some(&e));
                return Err(e);
            }
        }
        self.release(entry, buf)
    }

    /// Frees (the backend zeroes) a buffer of the kernel and takes its reserved size
    /// off the kernel's memory. No policy check: that is the callers' (see `free`); audited.
    pub(super) fn release(&self, entry: &KernelEntry, buf: BufferId) -> Result<()> {
        let r = (|| {
            let mut buffers = entry.buffers.lock();
            let reserved = buffers.remove(&buf).ok_or(Error::UnknownBuffer(buf.0))?;
            self.backend.free(buf)?;
            entry.memory.fetch_sub(reserved, Ordering::AcqRel);
            Ok(reserved)
        })();
        self.audit_memory(
            entry,
            MemoryOp::Free,
            buf,
            *r.as_ref().unwrap_or(&0),
            r.as_ref().err(),
        );
        r.map(|_| ())
    }
}
