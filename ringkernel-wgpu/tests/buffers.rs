//! Device buffers on a real adapter: accounting in reserved bytes, typed errors on bad
//! arguments, unaligned reads and writes, and zeroes after free and reallocation.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use ringkernel_core::Error;
use ringkernel_core::backend::{BufferId, ComputeBackend};

#[test]
fn accounting_uses_reserved_sizes_and_bad_arguments_are_typed_errors() {
    let Some(gpu) = common::backend() else { return };
    let info = gpu.info();
    assert_eq!(info.name, "wgpu");
    assert!(info.zeroes_on_allocate && info.zeroes_on_free);
    let a = gpu.allocate(1).unwrap();
    assert_eq!((a.len, a.reserved), (1, 256));
    let b = gpu.allocate(300).unwrap();
    assert_eq!(b.reserved, 512);
    assert_eq!(gpu.allocated_bytes(), 768);
    assert!(matches!(gpu.allocate(0), Err(Error::InvalidAllocation(0))));
    assert!(matches!(
        gpu.allocate(u64::MAX),
        Err(Error::InvalidAllocation(_))
    ));
    assert!(matches!(
        gpu.write(a.id, 1, &[1]),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        gpu.read(b.id, u64::MAX, &mut [0; 2]),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        gpu.read(BufferId(999), 0, &mut [0; 2]),
        Err(Error::UnknownBuffer(999))
    ));
    gpu.free(a.id).unwrap();
    assert!(matches!(gpu.free(a.id), Err(Error::UnknownBuffer(_))));
    gpu.free(b.id).unwrap();
    assert_eq!(gpu.allocated_bytes(), 0);
}

#[test]
fn unaligned_writes_and_reads_touch_only_their_bytes() {
    let Some(gpu) = common::backend() else { return };
    let b = gpu.allocate(37).unwrap().id;
    gpu.write(b, 0, &[0xaa; 37]).unwrap();
    gpu.write(b, 3, &[1, 2, 3, 4, 5]).unwrap();
    let mut out = [0u8; 37];
    gpu.read(b, 0, &mut out).unwrap();
    let mut want = [0xaa; 37];
    want[3..8].copy_from_slice(&[1, 2, 3, 4, 5]);
    assert_eq!(out, want);
    let mut mid = [0u8; 3];
    gpu.read(b, 5, &mut mid).unwrap();
    assert_eq!(mid, [3, 4, 5]);
    gpu.zero(b).unwrap();
    gpu.read(b, 0, &mut out).unwrap();
    assert_eq!(out, [0; 37]);
    gpu.free(b).unwrap();
}

#[test]
fn a_freed_buffer_reads_back_as_zeros_after_reallocation() {
    let Some(gpu) = common::backend() else { return };
    let mut ids = Vec::new();
    for _ in 0..8 {
        let id = gpu.allocate(4096).unwrap().id;
        gpu.write(id, 0, &[0x5a; 4096]).unwrap();
        ids.push(id);
    }
    for id in ids {
        gpu.free(id).unwrap();
    }
    for _ in 0..8 {
        let id = gpu.allocate(4096).unwrap().id;
        let mut out = vec![1u8; 4096];
        gpu.read(id, 0, &mut out).unwrap();
        assert!(
            out.iter().all(|b| *b == 0),
            "stale bytes after reallocation"
        );
        gpu.free(id).unwrap();
    }
}
