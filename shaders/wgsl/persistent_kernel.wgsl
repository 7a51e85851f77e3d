// The persistent kernel of the wgpu backend, one round per dispatch. Appended to
// chacha20_poly1305.wgsl by the host.
//
// WebGPU promises no forward progress to a kernel that spins, so the host driver
// dispatches this entry point in rounds: each round opens the kernel's control block
// (sealed with ChaCha20-Poly1305 in the envelope's single-shot form when sealing is on),
// honours should_terminate, runs the built-in checksum handler over the batch in the
// input ring, checks every device-side send against the route bitmap, updates the
// counters and re-seals the block under the current key with the nonce and header the
// host reserved (device direction, next sequence number).
//
// Control block words (ringkernel-core control.rs): 0 is_active, 1 should_terminate,
// 2 has_terminated, 3 last_error, 4/5 messages_processed, 6/7 messages_in_flight,
// 8/9 input_head, 10/11 input_tail, 14/15 output_tail. Sealed layout: header words 0..13 (52 bytes, the last three are
// the nonce), ciphertext words 13..45, tag words 45..49.

@group(0) @binding(0) var<storage, read_write> control: array<u32>;
// Two key slots of 12 words: epoch, valid (1), 2 unused, 8 key words.
@group(0) @binding(1) var<storage, read> keys: array<u32>;
// 0 sealed, 1 messages, 2/3 expected sequence, 4 has_peer, 5 own slot, 6 peer slot,
// 7 route stride, 8 enforce routes, 9..22 the header to seal with (13 words),
// 22/23 messages ever enqueued (input_tail).
@group(0) @binding(2) var<storage, read> params: array<u32>;
// Per message two words (offset in words, length in bytes), then the payloads.
@group(0) @binding(3) var<storage, read> input: array<u32>;
// Per message two words: checksum, status (1 processed, 2 forwarded, 3 refused).
@group(0) @binding(4) var<storage, read_write> output: array<u32>;
// Route permission bitmap: bit src * stride + dst.
@group(0) @binding(5) var<storage, read> routes: array<u32>;
// 0 result (0 ok, 1 authentication failed, 2 header mismatch, 3 no key for epoch),
// 1 processed, 2 forwarded, 3 refused, 4 should_terminate seen, 5 re-sealed.
@group(0) @binding(6) var<storage, read_write> status: array<u32>;

const RK_HEADER_WORDS: u32 = 13u;
const RK_CB_WORDS: u32 = 32u;
const RK_P_HEADER: u32 = 9u;

var<workgroup> rk_cb: array<u32, 32>;
var<workgroup> rk_state: u32;
var<workgroup> rk_processed: atomic<u32>;
var<workgroup> rk_forwarded: atomic<u32>;
var<workgroup> rk_refused: atomic<u32>;

fn rk_slot_key(slot: u32) -> RkKey {
    let o = slot * 12u + 4u;
    return RkKey(vec4<u32>(keys[o], keys[o + 1u], keys[o + 2u], keys[o + 3u]),
                 vec4<u32>(keys[o + 4u], keys[o + 5u], keys[o + 6u], keys[o + 7u]));
}

// The control block's tag over header (aad, 52 bytes) and ciphertext (128 bytes) as
// they are in `control` now.
fn rk_control_tag(key: RkKey, nonce: vec3<u32>) -> vec4<u32> {
    var st = rk_poly_init(rk_chacha20_block(key, 0u, nonce));
    // 52 bytes of header: three full blocks and one word padded with zeros.
    for (var w = 0u; w < 16u; w += 4u) {
        var m = vec4<u32>(0u);
        for (var k = 0u; k < 4u; k++) {
            if (w + k < RK_HEADER_WORDS) {
                m[k] = control[w + k];
            }
        }
        rk_poly_block(&st, m);
    }
    for (var w = 0u; w < RK_CB_WORDS; w += 4u) {
        let o = RK_HEADER_WORDS + w;
        rk_poly_block(&st, vec4<u32>(control[o], control[o + 1u], control[o + 2u], control[o + 3u]));
    }
    rk_poly_lengths(&st, RK_HEADER_WORDS * 4u, RK_CB_WORDS * 4u);
    return rk_poly_finish(&st);
}

// XORs 128 bytes with the keystream (blocks 1 and 2) from `rk_cb` into `control`, or
// from `control` into `rk_cb`.
fn rk_control_crypt(key: RkKey, nonce: vec3<u32>, to_control: bool) {
    for (var b = 0u; b < 2u; b++) {
        let ks = rk_chacha20_block(key, 1u + b, nonce);
        for (var k = 0u; k < 16u; k++) {
            let w = b * 16u + k;
            if (to_control) {
                control[RK_HEADER_WORDS + w] = rk_cb[w] ^ rk_block_word(ks, k);
            } else {
                rk_cb[w] = control[RK_HEADER_WORDS + w] ^ rk_block_word(ks, k);
            }
        }
    }
}

// Opens the sealed control block into `rk_cb`; returns the result code.
fn rk_open_control() -> u32 {
    // Magic, version/algorithm/kind/nonce length, context, sequence and length must be
    // what the host expects; the tag covers them too.
    let same = control[0] == params[RK_P_HEADER] && control[1] == params[RK_P_HEADER + 1u]
        && control[3] == params[RK_P_HEADER + 3u] && control[4] == params[RK_P_HEADER + 4u]
        && control[5] == params[RK_P_HEADER + 5u] && control[6] == params[RK_P_HEADER + 6u]
        && control[7] == params[2] && control[8] == params[3] && control[9] == 128u;
    if (!same) {
        return 2u;
    }
    let epoch = control[2];
    var slot = 2u;
    for (var s = 0u; s < 2u; s++) {
        if (keys[s * 12u + 1u] == 1u && keys[s * 12u] == epoch) {
            slot = s;
        }
    }
    if (slot == 2u) {
        return 3u;
    }
    let key = rk_slot_key(slot);
    let nonce = vec3<u32>(control[10], control[11], control[12]);
    let stored = vec4<u32>(control[45], control[46], control[47], control[48]);
    if (rk_tag_diff(rk_control_tag(key, nonce), stored) != 0u) {
        return 1u;
    }
    rk_control_crypt(key, nonce, false);
    return 0u;
}

// Seals `rk_cb` into `control` with the host's header (slot 0 holds the current key).
fn rk_seal_control() {
    for (var w = 0u; w < RK_HEADER_WORDS; w++) {
        control[w] = params[RK_P_HEADER + w];
    }
    let key = rk_slot_key(0u);
    let nonce = vec3<u32>(control[10], control[11], control[12]);
    rk_control_crypt(key, nonce, true);
    let tag = rk_control_tag(key, nonce);
    control[45] = tag.x;
    control[46] = tag.y;
    control[47] = tag.z;
    control[48] = tag.w;
}

fn rk_add_u64(lo: u32, n: u32) {
    let v = rk_cb[lo] + n;
    rk_cb[lo + 1u] += select(0u, 1u, v < rk_cb[lo]);
    rk_cb[lo] = v;
}

// FNV-1a (32-bit) of a payload.
fn rk_checksum(off: u32, len: u32) -> u32 {
    var h = 0x811c9dc5u;
    for (var i = 0u; i < len; i++) {
        let byte = (input[off + i / 4u] >> (8u * (i % 4u))) & 0xffu;
        h = (h ^ byte) * 0x01000193u;
    }
    return h;
}

fn rk_route_permitted(src: u32, dst: u32) -> bool {
    if (params[8] == 0u) {
        return true;
    }
    let stride = params[7];
    if (src >= stride || dst >= stride) {
        return false;
    }
    let bit = src * stride + dst;
    return ((routes[bit / 32u] >> (bit % 32u)) & 1u) == 1u;
}

@compute @workgroup_size(64)
fn persistent_round(@builtin(local_invocation_index) lid: u32) {
    if (lid == 0u) {
        atomicStore(&rk_processed, 0u);
        atomicStore(&rk_forwarded, 0u);
        atomicStore(&rk_refused, 0u);
        var result = 0u;
        if (params[0] == 1u) {
            result = rk_open_control();
        } else {
            for (var w = 0u; w < RK_CB_WORDS; w++) {
                rk_cb[w] = control[w];
            }
        }
        status[0] = result;
        // The termination flag is read once, here, and shared with every invocation
        // before the barrier: no invocation can take another path through a barrier.
        if (result != 0u) {
            rk_state = 1u;
        } else if (rk_cb[1] == 1u) {
            rk_state = 2u;
        } else {
            rk_state = 0u;
        }
    }
    let state = workgroupUniformLoad(&rk_state);
    if (state == 0u) {
        let n = params[1];
        for (var m = lid; m < n; m += 64u) {
            let off = input[2u * m];
            let len = input[2u * m + 1u];
            output[2u * m] = rk_checksum(off, len);
            var st = 1u;
            if (params[4] == 1u) {
                if (rk_route_permitted(params[5], params[6])) {
                    st = 2u;
                    atomicAdd(&rk_forwarded, 1u);
                } else {
                    st = 3u;
                    atomicAdd(&rk_refused, 1u);
                }
            }
            output[2u * m + 1u] = st;
            atomicAdd(&rk_processed, 1u);
        }
    }
    workgroupBarrier();
    if (lid == 0u && state != 1u) {
        let processed = atomicLoad(&rk_processed);
        let forwarded = atomicLoad(&rk_forwarded);
        if (state == 2u) {
            rk_cb[0] = 0u;
            rk_cb[2] = 1u;
        }
        rk_add_u64(4u, processed);
        rk_add_u64(8u, processed);
        rk_add_u64(14u, forwarded);
        // input_tail = max(messages ever enqueued, input_head); in flight = tail - head.
        var tail_lo = params[22];
        var tail_hi = params[23];
        if (tail_hi < rk_cb[9] || (tail_hi == rk_cb[9] && tail_lo < rk_cb[8])) {
            tail_lo = rk_cb[8];
            tail_hi = rk_cb[9];
        }
        rk_cb[10] = tail_lo;
        rk_cb[11] = tail_hi;
        rk_cb[6] = tail_lo - rk_cb[8];
        rk_cb[7] = tail_hi - rk_cb[9] - select(0u, 1u, tail_lo < rk_cb[8]);
        if (params[0] == 1u) {
            rk_seal_control();
        } else {
            for (var w = 0u; w < RK_CB_WORDS; w++) {
                control[w] = rk_cb[w];
            }
        }
        status[1] = processed;
        status[2] = forwarded;
        status[3] = atomicLoad(&rk_refused);
        status[4] = select(0u, 1u, state == 2u);
        status[5] = 1u;
        // Leave no plaintext control block in workgroup memory.
        for (var w = 0u; w < RK_CB_WORDS; w++) {
            rk_cb[w] = 0u;
        }
    }
}
