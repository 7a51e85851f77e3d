//! Little-endian words as the devices hold them, built without leaving copies of
//! secrets behind: the leaf helpers of the device round (`device`) and the input ring
//! (`input_ring`), which both stand on this file.

/// Appends `bytes` to `out` as little-endian words (zero-padded to a whole word)
/// without a temporary copy, growing `out` like [`zeroizing_extend`].
pub fn extend_words(out: &mut zeroize::Zeroizing<Vec<u32>>, bytes: &[u8]) {
    reserve_zeroizing(out, bytes.len().div_ceil(4));
    for c in bytes.chunks(4) {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        out.push(u32::from_le_bytes(w));
        zeroize::Zeroize::zeroize(&mut w);
    }
}

/// Appends `more` to `out`. When `out` must grow, its words move into a new allocation
/// and the old one is zeroed before it is freed (a plain `Vec` growth would free the old
/// copy as it is, secrets included).
pub fn zeroizing_extend<T: zeroize::Zeroize + Copy>(
    out: &mut zeroize::Zeroizing<Vec<T>>,
    more: &[T],
) {
    reserve_zeroizing(out, more.len());
    out.extend_from_slice(more);
}

/// Makes room for `extra` more elements in `out`, moving its contents to a larger
/// allocation (the old one zeroed on drop) when needed.
fn reserve_zeroizing<T: zeroize::Zeroize + Copy>(
    out: &mut zeroize::Zeroizing<Vec<T>>,
    extra: usize,
) {
    let needed = out.len() + extra;
    if needed > out.capacity() {
        let mut bigger = Vec::with_capacity(needed.max(2 * out.capacity()));
        bigger.extend_from_slice(out);
        // The old allocation is zeroed here, when the old `Zeroizing` drops.
        *out = zeroize::Zeroizing::new(bigger);
    }
}

/// Little-endian words read back from a device.
pub fn words_from_le(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
