//! The control block: the 128-byte record through which the host and a persistent kernel
//! talk about the kernel's life.
//!
//! It lives in a device buffer owned by the kernel. Its layout is fixed (`#[repr(C)]`,
//! 128-byte aligned, little-endian on every supported device) because GPU kernels in
//! `shaders/` read and write it by byte offset; the offsets below are part of the
//! contract and are tested. 64-bit fields are read by WGSL as two `u32` words
//! (low word first).
//!
//! ```
//! use ringkernel_core::control::ControlBlock;
//!
//! let mut cb = ControlBlock::new(1024);
//! cb.is_active = 1;
//! let bytes: &[u8] = bytemuck::bytes_of(&cb);
//! assert_eq!(bytes.len(), 128);
//! let back: ControlBlock = ControlBlock::from_bytes(bytes).unwrap();
//! assert_eq!(back.input_capacity, 1024);
//! ```

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};

/// Size of a control block in bytes.
pub const CONTROL_BLOCK_SIZE: usize = 128;

/// The per-kernel control block shared between host and device.
///
/// | offset | field                | type      |
/// |-------:|----------------------|-----------|
/// |      0 | `is_active`          | u32       |
/// |      4 | `should_terminate`   | u32       |
/// |      8 | `has_terminated`     | u32       |
/// |     12 | `last_error`         | u32       |
/// |     16 | `messages_processed` | u64       |
/// |     24 | `messages_in_flight` | u64       |
/// |     32 | `input_head`         | u64       |
/// |     40 | `input_tail`         | u64       |
/// |     48 | `output_head`        | u64       |
/// |     56 | `output_tail`        | u64       |
/// |     64 | `input_capacity`     | u32       |
/// |     68 | `input_mask`         | u32       |
/// |     72 | `output_capacity`    | u32       |
/// |     76 | `output_mask`        | u32       |
/// |     80 | `hlc_physical`       | u64       |
/// |     88 | `hlc_logical`        | u32       |
/// |     92 | `error_count`        | u32       |
/// |     96 | `reserved`           | [u32; 8]  |
///
/// Flags are `0` (false) or `1` (true); any other value is treated as corrupt by
/// [`ControlBlock::validate`].
#[repr(C, align(128))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ControlBlock {
    /// 1 while the kernel runs and accepts messages.
    pub is_active: u32,
    /// Set to 1 by the host (terminate, watchdog) to ask the kernel to stop.
    pub should_terminate: u32,
    /// Set to 1 by the kernel when it has stopped.
    pub has_terminated: u32,
    /// Code of the last error the kernel met (0: none). See [`crate::Error::code`].
    pub last_error: u32,
    /// Messages the kernel's handler has completed (successfully or not).
    pub messages_processed: u64,
    /// Messages enqueued to the kernel and not yet processed.
    pub messages_in_flight: u64,
    /// Total messages taken from the input queue.
    pub input_head: u64,
    /// Total messages put into the input queue.
    pub input_tail: u64,
    /// Total messages taken from the output queue (messages this kernel sent, delivered).
    pub output_head: u64,
    /// Total messages this kernel has sent.
    pub output_tail: u64,
    /// Input queue capacity in messages (a power of two).
    pub input_capacity: u32,
    /// `input_capacity - 1`, for ring-buffer index masking on the device.
    pub input_mask: u32,
    /// Output queue capacity in messages (a power of two).
    pub output_capacity: u32,
    /// `output_capacity - 1`.
    pub output_mask: u32,
    /// Hybrid logical clock, physical part: microseconds since the Unix epoch.
    pub hlc_physical: u64,
    /// Hybrid logical clock, logical counter within one physical tick.
    pub hlc_logical: u32,
    /// Number of errors the kernel has met.
    pub error_count: u32,
    /// Reserved for future fields; always zero today.
    pub reserved: [u32; 8],
}

const _: () = assert!(std::mem::size_of::<ControlBlock>() == CONTROL_BLOCK_SIZE);
const _: () = assert!(std::mem::align_of::<ControlBlock>() == 128);

impl ControlBlock {
    /// A fresh control block for a kernel whose queues hold `queue_capacity` messages
    /// (rounded up to a power of two; at least 1).
    pub fn new(queue_capacity: u32) -> Self {
        let cap = queue_capacity
            .max(1)
            .checked_next_power_of_two()
            .unwrap_or(1 << 31);
        ControlBlock {
            input_capacity: cap,
            input_mask: cap - 1,
            output_capacity: cap,
            output_mask: cap - 1,
            ..Self::zeroed()
        }
    }

    /// Reads a control block from exactly [`CONTROL_BLOCK_SIZE`] bytes (no alignment
    /// needed) and validates it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != CONTROL_BLOCK_SIZE {
            return Err(Error::corrupt(
                "control block",
                format!("expected {CONTROL_BLOCK_SIZE} bytes, got {}", bytes.len()),
            ));
        }
        let cb: ControlBlock = bytemuck::pod_read_unaligned(bytes);
        cb.validate()?;
        Ok(cb)
    }

    /// Checks the invariants a well-formed control block keeps.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::corrupt("control block", reason));
        for (name, v) in [
            ("is_active", self.is_active),
            ("should_terminate", self.should_terminate),
            ("has_terminated", self.has_terminated),
        ] {
            if v > 1 {
                return bad(format!("flag {name} is {v}, expected 0 or 1"));
            }
        }
        if self.input_head > self.input_tail {
            return bad(format!(
                "input head {} is past tail {}",
                self.input_head, self.input_tail
            ));
        }
        if self.input_capacity != 0
            && (!self.input_capacity.is_power_of_two()
                || self.input_mask != self.input_capacity - 1)
        {
            return bad(format!(
                "input capacity {} / mask {} inconsistent",
                self.input_capacity, self.input_mask
            ));
        }
        Ok(())
    }

    /// The control block's bytes, as written to the device.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn size_and_alignment() {
        assert_eq!(std::mem::size_of::<ControlBlock>(), 128);
        assert_eq!(std::mem::align_of::<ControlBlock>(), 128);
    }

    #[test]
    fn field_offsets_are_the_device_contract() {
        let expected = [
            (offset_of!(ControlBlock, is_active), 0),
            (offset_of!(ControlBlock, should_terminate), 4),
            (offset_of!(ControlBlock, has_terminated), 8),
            (offset_of!(ControlBlock, last_error), 12),
            (offset_of!(ControlBlock, messages_processed), 16),
            (offset_of!(ControlBlock, messages_in_flight), 24),
            (offset_of!(ControlBlock, input_head), 32),
            (offset_of!(ControlBlock, input_tail), 40),
            (offset_of!(ControlBlock, output_head), 48),
            (offset_of!(ControlBlock, output_tail), 56),
            (offset_of!(ControlBlock, input_capacity), 64),
            (offset_of!(ControlBlock, input_mask), 68),
            (offset_of!(ControlBlock, output_capacity), 72),
            (offset_of!(ControlBlock, output_mask), 76),
            (offset_of!(ControlBlock, hlc_physical), 80),
            (offset_of!(ControlBlock, hlc_logical), 88),
            (offset_of!(ControlBlock, error_count), 92),
            (offset_of!(ControlBlock, reserved), 96),
        ];
        for (i, (got, want)) in expected.iter().enumerate() {
            assert_eq!(got, want, "field #{i}");
        }
    }

    #[test]
    fn little_endian_byte_image() {
        let mut cb = ControlBlock::new(8);
        cb.messages_processed = 0x0102_0304_0506_0708;
        let b = cb.as_bytes();
        assert_eq!(&b[16..24], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[64..68], &8u32.to_le_bytes());
        assert_eq!(&b[68..72], &7u32.to_le_bytes());
    }

    #[test]
    fn capacity_rounds_to_power_of_two() {
        assert_eq!(ControlBlock::new(0).input_capacity, 1);
        assert_eq!(ControlBlock::new(1000).input_capacity, 1024);
        assert_eq!(ControlBlock::new(1000).input_mask, 1023);
        assert_eq!(ControlBlock::new(u32::MAX).input_capacity, 1 << 31);
    }

    #[test]
    fn from_bytes_rejects_wrong_length_and_bad_flags() {
        assert!(matches!(
            ControlBlock::from_bytes(&[0u8; 127]),
            Err(Error::Corrupt { .. })
        ));
        let mut cb = ControlBlock::new(4);
        cb.is_active = 7;
        assert!(ControlBlock::from_bytes(cb.as_bytes()).is_err());
        let mut cb = ControlBlock::new(4);
        cb.input_head = 5;
        assert!(ControlBlock::from_bytes(cb.as_bytes()).is_err());
        let ok = ControlBlock::new(4);
        assert_eq!(ControlBlock::from_bytes(ok.as_bytes()).unwrap(), ok);
    }
}
