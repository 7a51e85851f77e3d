// The persistent kernel of the CUDA backend, one round per launch: the CUDA twin of
// shaders/wgsl/persistent_kernel.wgsl, with the same word layouts (ringkernel-core
// backend/device.rs, module `layout`).
//
// Each round checks the key slots against the check values the host wrote, opens the
// kernel's control block (sealed with ChaCha20-Poly1305 in the envelope's single-shot
// form when sealing is on), honours should_terminate, takes a batch from the kernel's
// input ring in device memory (ringkernel-core backend/input_ring.rs: word 0 the host's
// write position, word 1 this kernel's read position, entries from word 4), runs the
// built-in checksum handler over it, checks every device-side send against the route
// bitmap, clears the ring words it consumed, updates the counters and re-seals the block
// under the current key with the header and device-direction nonce the host reserved.
//
// Every index into a buffer is bounded by a length the host wrote: the parameters, and
// the buffer sizes the host passes as kernel arguments (`ring_words`, `output_words`,
// `route_words`). Words the device shares (the ring's header and entry lengths, the key
// slots, the control block) are checked against the host's values before they are used,
// and a mismatch is reported (status word 0, with the detail in word 7), never followed.
//
// The host also passes the position of every entry the round takes (params from
// RK_P_RING_ENTRIES), so the input ring's entries are checked in parallel, one per
// thread, not walked one after another by thread 0: each thread checks that its entry
// lies in the ring and fits the round, and that its length word leads exactly to the
// next entry's position (past a wrap word only where the round wraps) or, for the last,
// to the round's end; the first entry must stand where the round starts. These links,
// all holding, are the walk a single thread would make, so a position table that
// disagrees with the ring's length words is refused, never followed.
//
// One block per round. Thread 0 reads the termination flag once and shares it through
// shared memory before the block-wide barrier, so no thread can take another path
// through a barrier (no divergence into a deadlock); there is no grid-wide sync.
#include "chacha20_poly1305.cuh"

// The layout constants (RK_HEADER_WORDS, RK_P_*, RK_CB_*, result codes, ...) come from
// the prelude the host generates from ringkernel-core's layout::KERNEL_CONSTANTS
// (NVRTC: put in front of the program; the host tests: ringkernel_layout.h).

// FNV-1a (32-bit) of `len` bytes.
RK_DEVICE rk_u32 rk_fnv1a(const rk_u8 *p, rk_u32 len) {
    rk_u32 h = 0x811c9dc5u;
    for (rk_u32 i = 0; i < len; i++) h = (h ^ p[i]) * 0x01000193u;
    return h;
}

// Whether the route bitmap permits src -> dst. The bit `src * stride + dst` must lie
// inside the bitmap the host uploaded (params[28] words) and the buffer (`route_words`);
// the test below keeps `src * stride + dst` below that many bits without overflowing.
RK_DEVICE int rk_route_permitted(const rk_u32 *params, const rk_u32 *routes,
                                 rk_u32 route_words, rk_u32 src, rk_u32 dst) {
    if (params[8] == 0u) return 1;
    rk_u32 stride = params[7];
    rk_u32 words = params[RK_P_ROUTE_WORDS] < route_words ? params[RK_P_ROUTE_WORDS] : route_words;
    if (words > 0x07ffffffu) words = 0x07ffffffu;
    rk_u32 bits = words * 32u;
    if (stride == 0u || src >= stride || dst >= stride || src >= bits / stride) return 0;
    rk_u32 bit = src * stride + dst;
    return (int)((routes[bit / 32u] >> (bit % 32u)) & 1u);
}

// The nonce of the key check values: its first word is RK_KEY_CHECK_NONCE0 (byte 0 is
// 0x7f, a direction no envelope nonce has), the rest zero (ringkernel-core
// security/encryption/device.rs, KEY_CHECK_NONCE).
RK_DEVICE void rk_key_check_nonce(rk_u8 nonce[12]) {
    for (int i = 0; i < 12; i++) nonce[i] = 0;
    for (int i = 0; i < 4; i++) nonce[i] = (rk_u8)(RK_KEY_CHECK_NONCE0 >> (8 * i));
}

// Every key slot the host filled must hold what it wrote: the epoch, the valid mark and
// a key whose check value (the AEAD tag of nothing under the reserved nonce) is the one
// in the parameters; slot 0 (the sealing key) must be filled. Returns 0 or 5.
RK_DEVICE rk_u32 rk_check_key_slots(const rk_u32 *keys, const rk_u32 *params) {
    if (params[RK_P_KEY_CHECK] != 1u) return RK_KEY_SLOT_CORRUPT;
    rk_u8 nonce[12];
    rk_key_check_nonce(nonce);
    for (rk_u32 s = 0; s < 2u; s++) {
        const rk_u32 *p = params + RK_P_KEY_CHECK + s * RK_KEY_CHECK_WORDS;
        if (p[0] != 1u) continue;
        const rk_u32 *slot = keys + s * 12u;
        if (slot[0] != p[1] || slot[1] != 1u) return RK_KEY_SLOT_CORRUPT;
        rk_u32 tag[4];
        // An empty message and no associated data (the pointers are not read).
        rk_aead_tag((const rk_u8 *)(slot + 4), nonce, nonce, 0, nonce, 0, (rk_u8 *)tag);
        rk_u32 diff = 0;
        for (int i = 0; i < 4; i++) diff |= tag[i] ^ p[2 + i];
        if (diff != 0u) return RK_KEY_SLOT_CORRUPT;
    }
    return RK_OK;
}

// The control block's header must be the one the host expects: magic, version,
// algorithm, kind, nonce length and length, then the context (runtime instance, kernel
// and region), the launch incarnation and the sequence. Returns 0, or 2 with the detail
// in status[7] and what was found in status[8..10].
RK_DEVICE rk_u32 rk_check_header(const rk_u32 *control, const rk_u32 *params, rk_u32 *status) {
    const rk_u32 *h = params + RK_P_HEADER;
    rk_u32 detail = 0u;
    if (control[0] != h[0] || control[1] != h[1] || control[9] != 128u) {
        detail = RK_D_HEADER_MALFORMED;
    } else if (control[3] != h[3] || control[4] != h[4] || control[5] != h[5]) {
        detail = RK_D_HEADER_CONTEXT;
    } else if (control[6] != h[6]) {
        detail = RK_D_HEADER_INCARNATION;
        status[8] = control[6];
    } else if (control[7] != params[2] || control[8] != params[3]) {
        detail = RK_D_HEADER_SEQUENCE;
        status[8] = control[7];
        status[9] = control[8];
    }
    status[7] = detail;
    return detail == 0u ? RK_OK : RK_HEADER_MISMATCH;
}

// Opens the sealed control block into `cb` (32 words); returns the result code
// (0 ok, 1 authentication failed, 2 header mismatch, 3 no key for the epoch). The key
// slot is chosen by the epochs the host wrote in the parameters.
RK_DEVICE rk_u32 rk_open_control(const rk_u32 *control, const rk_u32 *keys,
                                 const rk_u32 *params, rk_u32 *cb, rk_u32 *status) {
    rk_u32 r = rk_check_header(control, params, status);
    if (r != RK_OK) return r;
    rk_u32 slot = 2u;
    for (rk_u32 s = 0; s < 2u; s++) {
        const rk_u32 *p = params + RK_P_KEY_CHECK + s * RK_KEY_CHECK_WORDS;
        if (p[0] == 1u && p[1] == control[2]) slot = s;
    }
    if (slot == 2u) {
        status[8] = control[2];
        return RK_NO_KEY;
    }
    const rk_u8 *c = (const rk_u8 *)control;
    for (rk_u32 w = 0; w < RK_CB_WORDS; w++) cb[w] = control[RK_HEADER_WORDS + w];
    const rk_u8 *key = (const rk_u8 *)(keys + slot * 12u + 4u);
    // Verifies the tag before decrypting; on failure `cb` still holds ciphertext.
    return rk_aead_open(key, c + 40, c, 52, (rk_u8 *)cb, 128, c + 180) == 0 ? RK_OK
                                                                           : RK_OPEN_FAILED;
}

// Seals `cb` into `control` with the host's header (slot 0 holds the current key).
RK_DEVICE void rk_seal_control(rk_u32 *control, const rk_u32 *keys, const rk_u32 *params,
                               const rk_u32 *cb) {
    for (rk_u32 w = 0; w < RK_HEADER_WORDS; w++) control[w] = params[RK_P_HEADER + w];
    for (rk_u32 w = 0; w < RK_CB_WORDS; w++) control[RK_HEADER_WORDS + w] = cb[w];
    rk_u8 *c = (rk_u8 *)control;
    rk_aead_seal((const rk_u8 *)(keys + 4), c + 40, c, 52, c + 52, 128, c + 180);
}

RK_DEVICE void rk_add_u64(rk_u32 *cb, rk_u32 lo, rk_u32 n) {
    rk_u32 v = cb[lo] + n;
    cb[lo + 1u] += v < cb[lo] ? 1u : 0u;
    cb[lo] = v;
}

// The counters at the end of a round: processed, input head/tail, in flight, sent;
// on termination also is_active = 0, has_terminated = 1.
RK_DEVICE void rk_update_counters(rk_u32 *cb, const rk_u32 *params, rk_u32 processed,
                                  rk_u32 forwarded, int terminating) {
    if (terminating) {
        cb[RK_CB_IS_ACTIVE] = 0u;
        cb[RK_CB_HAS_TERMINATED] = 1u;
    }
    rk_add_u64(cb, RK_CB_MESSAGES_PROCESSED, processed);
    rk_add_u64(cb, RK_CB_INPUT_HEAD, processed);
    rk_add_u64(cb, RK_CB_OUTPUT_TAIL, forwarded);
    rk_u32 tail_lo = params[22], tail_hi = params[23];
    if (tail_hi < cb[RK_CB_INPUT_HEAD + 1u] || (tail_hi == cb[RK_CB_INPUT_HEAD + 1u] && tail_lo < cb[RK_CB_INPUT_HEAD])) {
        tail_lo = cb[RK_CB_INPUT_HEAD];
        tail_hi = cb[RK_CB_INPUT_HEAD + 1u];
    }
    cb[RK_CB_INPUT_TAIL] = tail_lo;
    cb[RK_CB_INPUT_TAIL + 1u] = tail_hi;
    cb[RK_CB_MESSAGES_IN_FLIGHT] = tail_lo - cb[RK_CB_INPUT_HEAD];
    cb[RK_CB_MESSAGES_IN_FLIGHT + 1u] = tail_hi - cb[RK_CB_INPUT_HEAD + 1u] - (tail_lo < cb[RK_CB_INPUT_HEAD] ? 1u : 0u);
}

// The round's ring before its entries are checked: the parameters must fit the
// buffers (`ring_words`, `output_words`: their sizes) and the ring's header must hold
// the host's positions; a round that takes nothing must end where it starts. Returns
// 0, 6 when the parameters do not fit the buffers, or 4 with the detail in status[7].
RK_DEVICE rk_u32 rk_ring_check(const rk_u32 *params, const rk_u32 *ring, rk_u32 ring_words,
                               rk_u32 output_words, rk_u32 *status) {
    rk_u32 cap = params[RK_P_RING_CAP], read = params[RK_P_RING_READ];
    rk_u32 write = params[RK_P_RING_WRITE], end = params[RK_P_RING_END], want = params[1];
    if (cap < 2u || ring_words < RK_RING_HEADER || cap > ring_words - RK_RING_HEADER ||
        read >= cap || write >= cap || end >= cap || want > RK_MAX_BATCH ||
        want > output_words / 2u)
        return RK_ROUND_INVALID;
    if (ring[0] != write || ring[1] != read) {
        status[7] = RK_D_RING_POSITIONS;
        return RK_RING_CORRUPT;
    }
    if (want == 0u && end != read) {
        status[7] = RK_D_RING_END;
        return RK_RING_CORRUPT;
    }
    return RK_OK;
}

// Where the round's entries go on from position `r` (below the capacity) when more are
// to come: returns 0 with `*pos` = r, or 0 past a wrap word the round takes; or a
// detail where the round's end stands at `r` (RK_D_RING_END) or a wrap word stands
// where the round does not wrap or at 0 (RK_D_RING_WRAP).
RK_DEVICE rk_u32 rk_ring_next(const rk_u32 *ring, rk_u32 r, rk_u32 end, rk_u32 *pos) {
    *pos = 0u;
    if (r == end) return RK_D_RING_END;
    if (ring[RK_RING_HEADER + r] != RK_RING_WRAP) {
        *pos = r;
        return 0u;
    }
    if (r == 0u || end > r) return RK_D_RING_WRAP;
    // Past the wrap word the round goes on at 0, where it must not end.
    return end == 0u ? RK_D_RING_END : 0u;
}

// Words from the read position to `x` (below the capacity) in ring order.
RK_DEVICE rk_u32 rk_ring_distance(rk_u32 x, rk_u32 read, rk_u32 cap) {
    return x >= read ? x - read : x + (cap - read);
}

// Whether the entries reach (`reach`, below the capacity) the position the host gave
// the next entry (`next`): 0, or RK_D_RING_ENTRY where they reach past it (an entry
// runs into the next), RK_D_RING_END where they stop short of it.
RK_DEVICE rk_u32 rk_ring_link(rk_u32 reach, rk_u32 next, rk_u32 read, rk_u32 cap) {
    if (reach == next) return 0u;
    if (next < cap && rk_ring_distance(reach, read, cap) > rk_ring_distance(next, read, cap))
        return RK_D_RING_ENTRY;
    return RK_D_RING_END;
}

// Checks entry `i` of the round (below params[1], which rk_ring_check bounded) at the
// position the host gave it, and fills offs[i] (payload word index into the ring) and
// lens[i]: the position lies inside the ring; for entry 0 it is where the round starts
// (the read position, or 0 past a wrap word there); its length word is no wrap word
// and its payload fits the room (up to the round's end, or to the ring's end when the
// round wraps there); and it leads exactly to the next entry's position (past a wrap
// word only where the round wraps), or, for the last, to the round's end. The host's
// positions are a claim checked here against the ring's words, never followed
// unchecked. Returns 0, 6 for a position past the capacity, or 4 with the detail in
// `*detail`.
RK_DEVICE rk_u32 rk_ring_entry(const rk_u32 *params, const rk_u32 *ring, rk_u32 i,
                               rk_u32 *offs, rk_u32 *lens, rk_u32 *detail) {
    rk_u32 cap = params[RK_P_RING_CAP], read = params[RK_P_RING_READ];
    rk_u32 end = params[RK_P_RING_END];
    rk_u32 p = params[RK_P_RING_ENTRIES + i];
    *detail = 0u;
    if (p >= cap) return RK_ROUND_INVALID;
    if (i == 0u) {
        rk_u32 start;
        rk_u32 d = rk_ring_next(ring, read, end, &start);
        if (d == 0u) d = rk_ring_link(start, p, read, cap);
        if (d != 0u) {
            *detail = d;
            return RK_RING_CORRUPT;
        }
    }
    rk_u32 len = ring[RK_RING_HEADER + p];
    if (len == RK_RING_WRAP) {
        *detail = RK_D_RING_WRAP;
        return RK_RING_CORRUPT;
    }
    rk_u32 payload_words = len / 4u + (len % 4u != 0u ? 1u : 0u);
    // Room: up to the round's end, or to the ring's end when the round wraps.
    rk_u32 room = end > p ? end - p : cap - p;
    if (payload_words >= room) {
        *detail = RK_D_RING_ENTRY;
        return RK_RING_CORRUPT;
    }
    offs[i] = RK_RING_HEADER + p + 1u;
    lens[i] = len;
    rk_u32 after = p + 1u + payload_words;
    if (after == cap) after = 0u;
    rk_u32 d;
    if (i + 1u == params[1]) {
        d = after == end ? 0u : RK_D_RING_END;
    } else {
        rk_u32 next;
        d = rk_ring_next(ring, after, end, &next);
        if (d == 0u) d = rk_ring_link(next, params[RK_P_RING_ENTRIES + i + 1u], read, cap);
    }
    *detail = d;
    return d == 0u ? RK_OK : RK_RING_CORRUPT;
}

// The key of an entry check that found the ring corrupt (rk_ring_entry's result and
// detail for entry `i`): entry * 8 + detail, 0xffffffff for any other result. The block
// reports the lowest key, the failure a walk from the read position would meet first.
RK_DEVICE rk_u32 rk_ring_fail_key(rk_u32 result, rk_u32 detail, rk_u32 i) {
    return result == RK_RING_CORRUPT ? i * 8u + detail : 0xffffffffu;
}

// Clears the ring words from `from` to `to` (consumed entries and wrap words); this
// thread's share: every `stride`-th word from `first`. Both positions lie below the
// capacity (checked by rk_ring_check).
RK_DEVICE void rk_ring_clear(const rk_u32 *params, rk_u32 *ring, rk_u32 from, rk_u32 to,
                             rk_u32 first, rk_u32 stride) {
    rk_u32 cap = params[RK_P_RING_CAP];
    rk_u32 used = (to + cap - from) % cap;
    for (rk_u32 i = first; i < used; i += stride) ring[RK_RING_HEADER + (from + i) % cap] = 0u;
}

// Runs the handler on message `m` of the batch (payload at word `off` of the ring,
// `len` bytes): its checksum, and the route check of its forward. Returns the output
// status (1 processed, 2 forwarded, 3 refused).
RK_DEVICE rk_u32 rk_process_message(const rk_u32 *params, const rk_u32 *ring, rk_u32 *output,
                                    const rk_u32 *routes, rk_u32 route_words, rk_u32 m,
                                    rk_u32 off, rk_u32 len) {
    output[2u * m] = rk_fnv1a((const rk_u8 *)(ring + off), len);
    rk_u32 out = 1u;
    if (params[4] == 1u)
        out = rk_route_permitted(params, routes, route_words, params[5], params[6]) ? 2u : 3u;
    output[2u * m + 1u] = out;
    return out;
}

// Thread 0's part before the first barrier: key slots, control block, the ring's
// parameters and header. Sets `*walk` to the entries the threads then check (0 when
// the round takes none or stops). Returns the round's state: 0 run the batch, 1 refused
// (status[0] says why), 2 terminate.
RK_DEVICE rk_u32 rk_round_begin(const rk_u32 *control, const rk_u32 *keys,
                                const rk_u32 *params, const rk_u32 *ring, rk_u32 ring_words,
                                rk_u32 output_words, rk_u32 *status, rk_u32 *cb,
                                rk_u32 *walk, rk_u32 *count, rk_u32 *read_old,
                                rk_u32 *read_new) {
    for (rk_u32 w = 0; w < RK_STATUS_WORDS; w++) status[w] = 0u;
    rk_u32 result = RK_OK;
    if (params[0] == 1u) {
        result = rk_check_key_slots(keys, params);
        if (result == RK_OK) result = rk_open_control(control, keys, params, cb, status);
    } else {
        for (rk_u32 w = 0; w < RK_CB_WORDS; w++) cb[w] = control[w];
    }
    *count = 0u;
    *walk = 0u;
    // The host's read position: where the ring stands when the round takes nothing.
    *read_old = params[RK_P_RING_READ];
    *read_new = *read_old;
    if (result == RK_OK && cb[RK_CB_SHOULD_TERMINATE] != 1u) {
        result = rk_ring_check(params, ring, ring_words, output_words, status);
        if (result == RK_OK) *walk = params[1];
    }
    status[0] = result;
    if (result != RK_OK) {
        // A refused round ends here: leave no opened control block in shared memory.
        for (rk_u32 w = 0; w < RK_CB_WORDS; w++) cb[w] = 0u;
        return 1u;
    }
    return cb[RK_CB_SHOULD_TERMINATE] == 1u ? 2u : 0u;
}

// Thread 0's part after the entry checks (rk_ring_entry, `walk` of them): what they
// found (`fail`, the lowest rk_ring_fail_key; `invalid`, a position past the capacity)
// refuses the round, or the batch is the round's entries and the read position moves
// to the round's end. Returns the round's state, `state` unless refused (1).
RK_DEVICE rk_u32 rk_round_checked(const rk_u32 *params, rk_u32 *status, rk_u32 *cb,
                                  rk_u32 state, rk_u32 walk, rk_u32 fail, rk_u32 invalid,
                                  rk_u32 *count, rk_u32 *read_new) {
    if (walk == 0u) return state;
    if (invalid == 0u && fail == 0xffffffffu) {
        *count = walk;
        *read_new = params[RK_P_RING_END];
        return state;
    }
    if (invalid != 0u) {
        status[0] = RK_ROUND_INVALID;
    } else {
        status[0] = RK_RING_CORRUPT;
        status[7] = fail % 8u;
    }
    // A refused round ends here: leave no opened control block in shared memory.
    for (rk_u32 w = 0; w < RK_CB_WORDS; w++) cb[w] = 0u;
    return 1u;
}

// Thread 0's part after the last barrier of a round that was not refused: counters,
// re-sealing, status and the ring's read position (`ring_words`: the ring's size).
RK_DEVICE void rk_round_end(rk_u32 *control, const rk_u32 *keys, const rk_u32 *params,
                            rk_u32 *ring, rk_u32 ring_words, rk_u32 *status, rk_u32 *cb,
                            rk_u32 state, rk_u32 processed, rk_u32 forwarded,
                            rk_u32 refused, rk_u32 read_new) {
    rk_update_counters(cb, params, processed, forwarded, state == 2u);
    if (params[0] == 1u) {
        rk_seal_control(control, keys, params, cb);
    } else {
        for (rk_u32 w = 0; w < RK_CB_WORDS; w++) control[w] = cb[w];
    }
    status[1] = processed;
    status[2] = forwarded;
    status[3] = refused;
    status[4] = state == 2u ? 1u : 0u;
    status[5] = 1u;
    if (ring_words >= RK_RING_HEADER) ring[1] = read_new;
    status[6] = read_new;
    // Leave no plaintext control block in shared memory.
    for (rk_u32 w = 0; w < RK_CB_WORDS; w++) cb[w] = 0u;
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
extern "C" __global__ void rk_persistent_round(rk_u32 *control, const rk_u32 *keys,
                                               const rk_u32 *params, rk_u32 *ring,
                                               rk_u32 ring_words, rk_u32 *output,
                                               rk_u32 output_words, const rk_u32 *routes,
                                               rk_u32 route_words, rk_u32 *status) {
    __shared__ rk_u32 cb[RK_CB_WORDS];
    __shared__ rk_u32 state;
    __shared__ rk_u32 processed, forwarded, refused;
    __shared__ rk_u32 offs[RK_MAX_BATCH], lens[RK_MAX_BATCH];
    __shared__ rk_u32 count, read_old, read_new;
    __shared__ rk_u32 walk, fail, invalid;
    rk_u32 tid = threadIdx.x;
    if (tid == 0) {
        processed = 0u;
        forwarded = 0u;
        refused = 0u;
        fail = 0xffffffffu;
        invalid = 0u;
        state = rk_round_begin(control, keys, params, ring, ring_words, output_words, status,
                               cb, &walk, &count, &read_old, &read_new);
    }
    __syncthreads();
    // The round's entries, one per thread: each checks its own against the ring and
    // the host's positions; the lowest failed entry is reported.
    for (rk_u32 i = tid; i < walk; i += blockDim.x) {
        rk_u32 detail;
        rk_u32 r = rk_ring_entry(params, ring, i, offs, lens, &detail);
        if (r == RK_ROUND_INVALID) atomicOr(&invalid, 1u);
        if (r == RK_RING_CORRUPT) atomicMin(&fail, rk_ring_fail_key(r, detail, i));
    }
    __syncthreads();
    if (tid == 0)
        state = rk_round_checked(params, status, cb, state, walk, fail, invalid, &count,
                                 &read_new);
    __syncthreads();
    const rk_u32 st = state;  // read once, after the barrier, the same for every thread
    if (st == 0u) {
        for (rk_u32 m = tid; m < count; m += blockDim.x) {
            rk_u32 out = rk_process_message(params, ring, output, routes, route_words, m,
                                            offs[m], lens[m]);
            if (out == 2u) atomicAdd(&forwarded, 1u);
            if (out == 3u) atomicAdd(&refused, 1u);
            atomicAdd(&processed, 1u);
        }
    }
    // Every payload has been read: clear the words consumed, so no plaintext payload
    // stays in the ring once processed.
    __syncthreads();
    if (st == 0u) rk_ring_clear(params, ring, read_old, read_new, tid, blockDim.x);
    __syncthreads();
    if (tid == 0 && st != 1u) {
        rk_round_end(control, keys, params, ring, ring_words, status, cb, st, processed,
                     forwarded, refused, read_new);
        // The block and status are visible to the host once the launch completes.
        __threadfence_system();
    }
}
#endif
