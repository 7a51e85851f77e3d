// The persistent kernel of the CUDA backend, one round per launch: the CUDA twin of
// shaders/wgsl/persistent_kernel.wgsl, with the same word layouts (ringkernel-core
// backend/device.rs, module `layout`).
//
// Each round opens the kernel's control block (sealed with ChaCha20-Poly1305 in the
// envelope's single-shot form when sealing is on), honours should_terminate, runs the
// built-in checksum handler over the batch, checks every device-side send against the
// route bitmap, updates the counters and re-seals the block under the current key with
// the header and device-direction nonce the host reserved.
//
// One block per round. Thread 0 reads the termination flag once and shares it through
// shared memory before the block-wide barrier, so no thread can take another path
// through a barrier (no divergence into a deadlock); there is no grid-wide sync.
#include "chacha20_poly1305.cuh"

#define RK_HEADER_WORDS 13u
#define RK_CB_WORDS 32u
#define RK_P_HEADER 9u

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

// Runs the handler on message `m` of the batch: its checksum, and the route check of
// its forward. Returns the output status (1 processed, 2 forwarded, 3 refused).
RK_DEVICE rk_u32 rk_process_message(const rk_u32 *params, const rk_u32 *input, rk_u32 *output,
                                    const rk_u32 *routes, rk_u32 m) {
    const rk_u8 *payload = (const rk_u8 *)(input + input[2u * m]);
    output[2u * m] = rk_fnv1a(payload, input[2u * m + 1u]);
    rk_u32 out = 1u;
    if (params[4] == 1u) out = rk_route_permitted(params, routes, params[5], params[6]) ? 2u : 3u;
    output[2u * m + 1u] = out;
    return out;
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
extern "C" __global__ void rk_persistent_round(rk_u32 *control, const rk_u32 *keys,
                                               const rk_u32 *params, const rk_u32 *input,
                                               rk_u32 *output, const rk_u32 *routes,
                                               rk_u32 *status) {
    __shared__ rk_u32 cb[RK_CB_WORDS];
    __shared__ rk_u32 state;
    __shared__ rk_u32 processed, forwarded, refused;
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
        status[0] = result;
        state = result != 0u ? 1u : (cb[1] == 1u ? 2u : 0u);
    }
    __syncthreads();
    const rk_u32 st = state;  // read once, after the barrier, the same for every thread
    if (st == 0u) {
        rk_u32 n = params[1];
        for (rk_u32 m = tid; m < n; m += blockDim.x) {
            rk_u32 out = rk_process_message(params, input, output, routes, m);
            if (out == 2u) atomicAdd(&forwarded, 1u);
            if (out == 3u) atomicAdd(&refused, 1u);
            atomicAdd(&processed, 1u);
        }
    }
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
        // Leave no plaintext control block in shared memory.
        for (rk_u32 w = 0; w < RK_CB_WORDS; w++) cb[w] = 0u;
        // The block and status are visible to the host once the launch completes.
        __threadfence_system();
    }
}
#endif
