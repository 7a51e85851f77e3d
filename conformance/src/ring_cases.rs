//! The hostile input-ring cases that both device backends' kernel tests run, on the
//! same round: three 8-byte messages on a fresh 64-word ring, entries of three words at
//! positions 0, 3 and 6, the round ending at 9 (the host's position table starts
//! `[0, 3, 6]`). Each case names what it does, changes the ring's words or the
//! position table, and gives the detail (`layout::D_RING_*`) the kernel must refuse the
//! round with (`RING_CORRUPT`), with nothing processed, cleared or re-sealed.

use ringkernel_core::backend::device::layout;
use ringkernel_core::backend::input_ring::{RING_HEADER_WORDS, RING_WRAP};

const H: usize = RING_HEADER_WORDS;

/// A change to the round's ring words (header included).
pub type RingCorruption = fn(&mut [u32]);

/// A change to the round's table of entry positions (from `layout::P_RING_ENTRIES`).
pub type TableForgery = fn(&mut [u32]);

/// Corrupted ring words, each refused with its detail.
pub static RING_CORRUPTIONS: [(&str, RingCorruption, u32); 10] = [
    (
        "an entry longer than the ring",
        |r| r[H] = 0xffff_ff00,
        layout::D_RING_ENTRY,
    ),
    (
        "a wrap word at position 0",
        |r| r[H] = RING_WRAP,
        layout::D_RING_WRAP,
    ),
    (
        "a read position past the ring's end",
        |r| r[1] = 256,
        layout::D_RING_POSITIONS,
    ),
    (
        "a read position moved back",
        |r| r[1] = 60,
        layout::D_RING_POSITIONS,
    ),
    (
        "a write position wrapped to 0",
        |r| r[0] = 0,
        layout::D_RING_POSITIONS,
    ),
    (
        "a write position past the end",
        |r| r[0] = u32::MAX,
        layout::D_RING_POSITIONS,
    ),
    // The first entry grown by a word: it overlaps the second, whose payload is then
    // read as a length.
    ("overlapping entries", |r| r[H] = 12, layout::D_RING_ENTRY),
    // The last entry grown past the round's end (into free ring words).
    (
        "an entry past the round's end",
        |r| r[H + 6] = 12,
        layout::D_RING_ENTRY,
    ),
    // Two entries shrunk: the entries end before the host's end.
    (
        "entries that end early",
        |r| {
            r[H] = 0;
            r[H + 1] = 4;
            r[H + 3] = 0;
            r[H + 4] = 4;
            r[H + 6] = 0;
            r[H + 7] = 0;
        },
        layout::D_RING_END,
    ),
    (
        "a wrap word mid-round",
        |r| r[H + 3] = RING_WRAP,
        layout::D_RING_WRAP,
    ),
];

/// Forged position tables over the honest ring, each refused with its detail.
pub static TABLE_FORGERIES: [(&str, TableForgery, u32); 8] = [
    // Entry 1 a word on: entry 0 ends short of it.
    (
        "an entry shifted a word on",
        |t| t[1] = 4,
        layout::D_RING_END,
    ),
    // Entry 1 a word back: entry 0 runs into it.
    (
        "an entry shifted a word back",
        |t| t[1] = 2,
        layout::D_RING_ENTRY,
    ),
    (
        "the first entry shifted off the read position",
        |t| t[0] = 1,
        layout::D_RING_END,
    ),
    ("two entries swapped", |t| t.swap(1, 2), layout::D_RING_END),
    // The round starts at the read position, short of the claimed first entry.
    (
        "the first two entries swapped",
        |t| t.swap(0, 1),
        layout::D_RING_END,
    ),
    // The last entry at the round's end, and past it in free ring words.
    (
        "an entry at the round's end",
        |t| t[2] = 9,
        layout::D_RING_END,
    ),
    (
        "an entry past the round's end",
        |t| t[2] = 20,
        layout::D_RING_END,
    ),
    // Entry 2 claimed behind a wrap word (at 0) where the round does not wrap.
    (
        "a wrap claimed where there is none",
        |t| t[2] = 0,
        layout::D_RING_ENTRY,
    ),
];
