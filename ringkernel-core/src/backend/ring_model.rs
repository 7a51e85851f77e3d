//! A Rust model of the device kernels' input-ring checks, for tests and fuzzing.
//!
//! The persistent kernels (shaders/wgsl/persistent_kernel.wgsl and
//! shaders/cuda/persistent_kernel.cu) check a round's entries in parallel, one per
//! invocation, at the positions the host hands them ([`layout::P_RING_ENTRIES`]);
//! before, one invocation walked the entries from the read position. This module is
//! both, in Rust, function for function (`rk_ring_next`, `rk_ring_link`,
//! `rk_ring_entry`): [`device_check`] and [`sequential_walk`]. The runtime does not
//! use it; the input ring's unit tests and the `device_ring` fuzz target compare the
//! two over honest and corrupted rings and forged position tables (they must accept
//! exactly the same rounds at the host's positions), and the wgpu and CUDA tests hold
//! the kernels to the same rules.
//!
//! [`layout::P_RING_ENTRIES`]: super::device::layout::P_RING_ENTRIES

use super::device::layout::{D_RING_END, D_RING_ENTRY, D_RING_WRAP};
use super::input_ring::{RING_HEADER_WORDS, RING_WRAP};

/// What the device makes of a round, as the kernels check it: `Err(detail)` (a
/// `D_RING_*` of the lowest entry that fails), `Err(0)` for a position past the
/// capacity (`ROUND_INVALID`), or each entry's (position, length).
pub type Checked = std::result::Result<Vec<(usize, u32)>, u32>;

/// Whether `buf` holds the ring header and `cap` entry words, and `read` and `end` lie
/// in it: what the kernels check of their parameters (`RK_ROUND_INVALID` otherwise).
fn fits(buf: &[u32], cap: usize, read: usize, end: usize) -> bool {
    cap >= 2 && buf.len() >= RING_HEADER_WORDS + cap && read < cap && end < cap
}

/// `rk_ring_next`: where the entries go on from `r` when more are to come.
fn next(buf: &[u32], r: usize, end: usize) -> std::result::Result<usize, u32> {
    if r == end {
        return Err(D_RING_END);
    }
    if buf[RING_HEADER_WORDS + r] != RING_WRAP {
        return Ok(r);
    }
    if r == 0 || end > r {
        return Err(D_RING_WRAP);
    }
    if end == 0 { Err(D_RING_END) } else { Ok(0) }
}

/// `rk_ring_link`: whether the entries reach the host's next position.
fn link(reach: usize, host: usize, read: usize, cap: usize) -> u32 {
    let dist = |x: usize| if x >= read { x - read } else { x + cap - read };
    match reach == host {
        true => 0,
        false if host < cap && dist(reach) > dist(host) => D_RING_ENTRY,
        false => D_RING_END,
    }
}

/// `rk_ring_entry`: entry `i` at the host's position `starts[i]`, checked on its own
/// (`Err(0)`: past the capacity).
fn entry(
    buf: &[u32],
    cap: usize,
    read: usize,
    end: usize,
    starts: &[usize],
    i: usize,
) -> std::result::Result<(usize, u32), u32> {
    let p = starts[i];
    if p >= cap {
        return Err(0);
    }
    if i == 0 {
        let d = next(buf, read, end).map_or_else(|d| d, |s| link(s, p, read, cap));
        if d != 0 {
            return Err(d);
        }
    }
    let len = buf[RING_HEADER_WORDS + p];
    if len == RING_WRAP {
        return Err(D_RING_WRAP);
    }
    let payload = (len as usize).div_ceil(4);
    let room = if end > p { end - p } else { cap - p };
    if payload >= room {
        return Err(D_RING_ENTRY);
    }
    let after = (p + 1 + payload) % cap;
    let d = if i + 1 == starts.len() {
        if after == end { 0 } else { D_RING_END }
    } else {
        next(buf, after, end).map_or_else(|d| d, |n| link(n, starts[i + 1], read, cap))
    };
    if d == 0 { Ok((p, len)) } else { Err(d) }
}

/// The kernels' check of a round (`buf`: the ring's words, header first; `starts`: the
/// host's position of each entry the round takes): every entry on its own (in
/// reverse order here: no check may depend on another), the lowest failure
/// reported, a position past the capacity before any.
pub fn device_check(buf: &[u32], cap: usize, read: usize, end: usize, starts: &[usize]) -> Checked {
    if !fits(buf, cap, read, end) {
        return Err(0);
    }
    if starts.is_empty() {
        return if end == read {
            Ok(Vec::new())
        } else {
            Err(D_RING_END)
        };
    }
    let checked: Vec<_> = (0..starts.len())
        .rev()
        .map(|i| entry(buf, cap, read, end, starts, i))
        .collect();
    if checked.contains(&Err(0)) {
        return Err(0);
    }
    let mut entries: Vec<(usize, u32)> = Vec::new();
    for c in checked.into_iter().rev() {
        entries.push(c?);
    }
    Ok(entries)
}

/// The walk the kernels made before they checked entries in parallel (`want`: the
/// entries the round takes): from the
/// read position, one entry after another, to the round's end.
pub fn sequential_walk(buf: &[u32], cap: usize, read: usize, end: usize, want: usize) -> Checked {
    if !fits(buf, cap, read, end) {
        return Err(0);
    }
    let (mut r, mut out) = (read, Vec::new());
    while out.len() < want && r != end {
        let len = buf[RING_HEADER_WORDS + r];
        if len == RING_WRAP {
            if r == 0 || end > r {
                return Err(D_RING_WRAP);
            }
            r = 0;
            continue;
        }
        let payload = (len as usize).div_ceil(4);
        let room = if end > r { end - r } else { cap - r };
        if payload >= room {
            return Err(D_RING_ENTRY);
        }
        out.push((r, len));
        r = (r + 1 + payload) % cap;
    }
    if out.len() != want || r != end {
        return Err(D_RING_END);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_that_do_not_fit_the_ring_are_refused_not_followed() {
        let buf = vec![0u32; RING_HEADER_WORDS + 8];
        // A capacity past the buffer, positions past the capacity, a ring of one word.
        for (cap, read, end) in [(9, 0, 1), (8, 8, 1), (8, 0, 8), (1, 0, 0)] {
            assert_eq!(device_check(&buf, cap, read, end, &[0]), Err(0));
            assert_eq!(sequential_walk(&buf, cap, read, end, 1), Err(0));
        }
        // An entry position past the capacity.
        assert_eq!(device_check(&buf, 8, 0, 2, &[9]), Err(0));
        // One empty entry at 0 (its length word, no payload), ending at 1: accepted.
        assert_eq!(device_check(&buf, 8, 0, 1, &[0]), Ok(vec![(0, 0)]));
        assert_eq!(sequential_walk(&buf, 8, 0, 1, 1), Ok(vec![(0, 0)]));
    }
}
