// The persistent kernel of the CUDA backend, one round per launch: the CUDA twin of
// shaders/wgsl/persistent_kernel.wgsl, with the same word layouts (ringkernel-core
// backend/device.rs, module `layout`).
//
// Each round opens the kernel's control block (sealed with ChaCha20-Poly1305 in the
// envelope's single-shot form when sealing is on), honours should_terminate, takes a
// batch from the kernel's input ring in device memory (ringkernel-core
// backend/input_ring.rs: word 0 the host's write position, word 1 this kernel's read
// position, entries from word 4), runs the built-in checksum handler over it, checks
// every device-side send against the route bitmap, clears the ring words it consumed,
// updates the counters and re-seals the block under the current key with the header
// and device-direction nonce the host reserved.
//
// One block per round. Thread 0 reads the termination flag once and shares it through
// shared memory before the block-wide barrier, so no thread can take another path
// through a barrier (no divergence into a deadlock); there is no grid-wide sync.
#include "chacha20_poly1305.cuh"

#define RK_HEADER_WORDS 13u
#define RK_CB_WORDS 32u
#define RK_P_HEADER 9u
#define RK_P_RING_CAP 24u
#define RK_RING_HEADER 4u
#define RK_RING_WRAP 0xffffffffu
#define RK_MAX_BATCH 256u

// FNV-1a (32-bit) of `len` bytes.
RK_DEVICE rk_u32 rk_fnv1a(const rk_u8 *p, rk_u32 len) {
    rk_u32 h = 0x811c9dc5u;
    for (rk_u32 i = 0; i < len; i++) h = (h ^ p[i]) * 0x01000193u;
    return h;
}

RK_DEVICE int rk_route_permitted(const rk_u32 *params, const rk_u32 *routes, rk_u32 src,
                                 rk_u32 dst) {
    if (params[8] == 0u) return 1;
    rk_u32 stride = params[7];
    if (src >= stride || dst >= stride) return 0;
    rk_u32 bit = src * stride + dst;
    return (int)((routes[bit / 32u] >> (bit % 32u)) & 1u);
}

// Opens the sealed control block into `cb` (32 words); returns the result code
// (0 ok, 1 authentication failed, 2 header mismatch, 3 no key for the epoch).
RK_DEVICE rk_u32 rk_open_control(const rk_u32 *control, const rk_u32 *keys,
                                 const rk_u32 *params, rk_u32 *cb) {
    int same = control[0] == params[RK_P_HEADER] && control[1] == params[RK_P_HEADER + 1u] &&
               control[3] == params[RK_P_HEADER + 3u] && control[4] == params[RK_P_HEADER + 4u] &&
               control[5] == params[RK_P_HEADER + 5u] && control[6] == params[RK_P_HEADER + 6u] &&
               control[7] == params[2] && control[8] == params[3] && control[9] == 128u;
    if (!same) return 2u;
    rk_u32 slot = 2u;
    for (rk_u32 s = 0; s < 2u; s++) {
        if (keys[s * 12u + 1u] == 1u && keys[s * 12u] == control[2]) slot = s;
    }
    if (slot == 2u) return 3u;
    const rk_u8 *c = (const rk_u8 *)control;
    for (rk_u32 w = 0; w < RK_CB_WORDS; w++) cb[w] = control[RK_HEADER_WORDS + w];
    const rk_u8 *key = (const rk_u8 *)(keys + slot * 12u + 4u);
    // Verifies the tag before decrypting; on failure `cb` still holds ciphertext.
    return rk_aead_open(key, c + 40, c, 52, (rk_u8 *)cb, 128, c + 180) == 0 ? 0u : 1u;
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
        cb[0] = 0u;
        cb[2] = 1u;
    }
    rk_add_u64(cb, 4u, processed);
    rk_add_u64(cb, 8u, processed);
    rk_add_u64(cb, 14u, forwarded);
    rk_u32 tail_lo = params[22], tail_hi = params[23];
    if (tail_hi < cb[9] || (tail_hi == cb[9] && tail_lo < cb[8])) {
        tail_lo = cb[8];
        tail_hi = cb[9];
    }
    cb[10] = tail_lo;
    cb[11] = tail_hi;
    cb[6] = tail_lo - cb[8];
    cb[7] = tail_hi - cb[9] - (tail_lo < cb[8] ? 1u : 0u);
}

// Walks the ring from its read position: at most params[1] entries (and RK_MAX_BATCH),
// never past the write position. `ring_words` is the ring buffer's size. Fills `offs`
// (payload word index into the ring) and `lens`, `*count` and `*read_new`; returns 0,
// or 4 when a position or length is out of range.
RK_DEVICE rk_u32 rk_ring_walk(const rk_u32 *params, const rk_u32 *ring, rk_u32 ring_words,
                              rk_u32 *offs, rk_u32 *lens, rk_u32 *count, rk_u32 *read_new) {
    rk_u32 cap = params[RK_P_RING_CAP], write = ring[0], r = ring[1], n = 0u;
    *count = 0u;
    *read_new = r;
    if (cap == 0u || r >= cap || write >= cap || ring_words < RK_RING_HEADER ||
        cap > ring_words - RK_RING_HEADER)
        return 4u;
    rk_u32 limit = params[1] < RK_MAX_BATCH ? params[1] : RK_MAX_BATCH;
    // Each entry is visited once and a wrap at most once per entry: the guard only
    // bounds the loop for a ring the host did not write.
    for (rk_u32 guard = 0u; guard < 2u * RK_MAX_BATCH + 2u && n < limit && r != write; guard++) {
        rk_u32 len = ring[RK_RING_HEADER + r];
        if (len == RK_RING_WRAP) {
            if (r == 0u) return 4u;
            r = 0u;
            continue;
        }
        rk_u32 payload_words = len / 4u + (len % 4u != 0u ? 1u : 0u);
        if (payload_words >= cap - r) return 4u;
        offs[n] = RK_RING_HEADER + r + 1u;
        lens[n] = len;
        n++;
        r += 1u + payload_words;
        if (r == cap) r = 0u;
    }
    *count = n;
    *read_new = r;
    return 0u;
}

// Clears the ring words from `from` to `to` (consumed entries and wrap words); this
// thread's share: every `stride`-th word from `first`.
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
                                    const rk_u32 *routes, rk_u32 m, rk_u32 off, rk_u32 len) {
    output[2u * m] = rk_fnv1a((const rk_u8 *)(ring + off), len);
    rk_u32 out = 1u;
    if (params[4] == 1u) out = rk_route_permitted(params, routes, params[5], params[6]) ? 2u : 3u;
    output[2u * m + 1u] = out;
    return out;
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
extern "C" __global__ void rk_persistent_round(rk_u32 *control, const rk_u32 *keys,
                                               const rk_u32 *params, rk_u32 *ring,
                                               rk_u32 ring_words, rk_u32 *output,
                                               const rk_u32 *routes, rk_u32 *status) {
    __shared__ rk_u32 cb[RK_CB_WORDS];
    __shared__ rk_u32 state;
    __shared__ rk_u32 processed, forwarded, refused;
    __shared__ rk_u32 offs[RK_MAX_BATCH], lens[RK_MAX_BATCH];
    __shared__ rk_u32 count, read_old, read_new;
    rk_u32 tid = threadIdx.x;
    if (tid == 0) {
        processed = 0u;
        forwarded = 0u;
        refused = 0u;
        rk_u32 result = 0u;
        if (params[0] == 1u) {
            result = rk_open_control(control, keys, params, cb);
        } else {
            for (rk_u32 w = 0; w < RK_CB_WORDS; w++) cb[w] = control[w];
        }
        count = 0u;
        read_old = ring[1];
        read_new = read_old;
        if (result == 0u && cb[1] != 1u)
            result = rk_ring_walk(params, ring, ring_words, offs, lens, &count, &read_new);
        status[0] = result;
        state = result != 0u ? 1u : (cb[1] == 1u ? 2u : 0u);
    }
    __syncthreads();
    const rk_u32 st = state;  // read once, after the barrier, the same for every thread
    if (st == 0u) {
        for (rk_u32 m = tid; m < count; m += blockDim.x) {
            rk_u32 out = rk_process_message(params, ring, output, routes, m, offs[m], lens[m]);
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
        rk_update_counters(cb, params, processed, forwarded, st == 2u);
        if (params[0] == 1u) {
            rk_seal_control(control, keys, params, cb);
        } else {
            for (rk_u32 w = 0; w < RK_CB_WORDS; w++) control[w] = cb[w];
        }
        status[1] = processed;
        status[2] = forwarded;
        status[3] = refused;
        status[4] = st == 2u ? 1u : 0u;
        status[5] = 1u;
        ring[1] = read_new;
        status[6] = read_new;
        // Leave no plaintext control block in shared memory.
        for (rk_u32 w = 0; w < RK_CB_WORDS; w++) cb[w] = 0u;
        // The block and status are visible to the host once the launch completes.
        __threadfence_system();
    }
}
#endif
