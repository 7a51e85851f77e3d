//! The route table: a permission bitmap over the live kernels, rebuilt incrementally
//! when kernels launch or stop. The send path answers "may i send to j?" with one bit
//! test, whatever the number of rules; GPU backends upload the same bitmap so that a
//! kernel cannot even address a denied peer.

use crate::k2k::KernelId;

/// Permission bitmap: bit `src * stride + dst` is set when `src` may send to `dst`.
/// Indices are the kernels' slots, reused after a kernel stops.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    ids: Vec<Option<KernelId>>,
    stride: usize,
    bits: Vec<u64>,
}

impl RouteTable {
    /// Number of slots (live kernels plus free slots).
    pub fn slots(&self) -> usize {
        self.ids.len()
    }

    /// The kernel in `slot`, if live.
    pub fn kernel(&self, slot: usize) -> Option<&KernelId> {
        self.ids.get(slot).and_then(Option::as_ref)
    }

    /// The slot of live kernel `id`, if any.
    pub fn slot_of(&self, id: &KernelId) -> Option<usize> {
        self.ids.iter().position(|s| s.as_ref() == Some(id))
    }

    /// Whether `src` may send to `dst` (false for free or unknown slots).
    pub fn permits(&self, src: usize, dst: usize) -> bool {
        if src >= self.stride || dst >= self.stride {
            return false;
        }
        let bit = src * self.stride + dst;
        self.bits[bit / 64] >> (bit % 64) & 1 == 1
    }

    /// Row-major bitmap words (`slots()` × `slots()` bits, rows padded to the same
    /// stride), the form GPU backends upload.
    pub fn bitmap(&self) -> (&[u64], usize) {
        (&self.bits, self.stride)
    }

    /// Number of permitted (src, dst) pairs among live kernels.
    pub fn permitted_routes(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    fn set(&mut self, src: usize, dst: usize, on: bool) {
        let bit = src * self.stride + dst;
        if on {
            self.bits[bit / 64] |= 1 << (bit % 64);
        } else {
            self.bits[bit / 64] &= !(1 << (bit % 64));
        }
    }

    fn grow(&mut self, slots: usize) {
        if slots <= self.stride {
            return;
        }
        let new_stride = slots.next_power_of_two().max(8);
        let mut bits = vec![0u64; (new_stride * new_stride).div_ceil(64)];
        for s in 0..self.stride {
            for d in 0..self.stride {
                if self.permits(s, d) {
                    let bit = s * new_stride + d;
                    bits[bit / 64] |= 1 << (bit % 64);
                }
            }
        }
        self.bits = bits;
        self.stride = new_stride;
    }

    /// Puts `id` in `slot` and fills its row and column with `decide(src, dst)`.
    pub(crate) fn insert(
        &mut self,
        slot: usize,
        id: KernelId,
        decide: impl Fn(&KernelId, &KernelId) -> bool,
    ) {
        if self.ids.len() <= slot {
            self.ids.resize(slot + 1, None);
        }
        self.grow(self.ids.len());
        self.ids[slot] = Some(id.clone());
        for other in 0..self.ids.len() {
            let Some(other_id) = self.ids[other].clone() else {
                continue;
            };
            self.set(slot, other, other != slot && decide(&id, &other_id));
            self.set(other, slot, other != slot && decide(&other_id, &id));
        }
    }

    /// Frees `slot`: its row and column are cleared.
    pub(crate) fn remove(&mut self, slot: usize) {
        if slot >= self.ids.len() {
            return;
        }
        self.ids[slot] = None;
        for other in 0..self.ids.len() {
            self.set(slot, other, false);
            self.set(other, slot, false);
        }
    }
}
