//! The small-record envelope path allocates nothing: sealing and opening a 128-byte
//! record with reused vectors, or in the caller's buffer, makes no heap allocation.
//! Counted with a counting global allocator (this test binary only), on this thread.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ringkernel_core::security::encryption::{
    Algorithm, ContextId, EncryptionConfig, MemoryEncryption, SequenceCheck,
};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread's locals may already be gone while it exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counting
// touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

#[test]
fn small_seal_and_open_allocate_nothing() {
    for alg in Algorithm::ALL {
        let e = MemoryEncryption::new(EncryptionConfig::new().algorithm(alg)).unwrap();
        let ctx = ContextId::new("kernel", "control");
        let record = [0x5Au8; 128];
        let aad = [7u8; 48];
        let (mut sealed, mut plain) = (Vec::new(), Vec::new());
        let mut buf = vec![0u8; e.sealed_len(record.len())];
        // Warm up: the vectors grow, the thread-locals are set up.
        e.seal_region_into(ctx, 0, &record, &aad, &mut sealed)
            .unwrap();
        e.open_region_into(&sealed, ctx, SequenceCheck::Exact(0), &aad, &mut plain)
            .unwrap();
        let n = allocations(|| {
            for seq in 1..=1000u64 {
                e.seal_region_into(ctx, seq, &record, &aad, &mut sealed)
                    .unwrap();
                e.open_region_into(&sealed, ctx, SequenceCheck::Exact(seq), &aad, &mut plain)
                    .unwrap();
                assert_eq!(plain, record);
                let at = e.plaintext_offset();
                buf[at..at + record.len()].copy_from_slice(&record);
                e.seal_in_place(ctx, seq, &mut buf, b"").unwrap();
                let p = e
                    .open_in_place(&mut buf, ctx, SequenceCheck::Exact(seq), b"")
                    .unwrap();
                assert_eq!(p, &record[..]);
            }
        });
        assert_eq!(
            n, 0,
            "{alg}: allocations in 1000 seal+open pairs of each form"
        );
        // The counter does count: a fresh output vector per seal is one allocation.
        let fresh = allocations(|| drop(e.seal_region(ctx, 0, &record, &aad).unwrap()));
        assert!(
            fresh >= 1,
            "{alg}: the counting allocator saw {fresh} allocations"
        );
    }
}
