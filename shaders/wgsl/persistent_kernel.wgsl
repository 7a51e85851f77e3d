// The persistent kernel of the wgpu backend, one round per dispatch. Appended to
// chacha20_poly1305.wgsl by the host.
//
// WebGPU promises no forward progress to a kernel that spins, so the host driver
// dispatches this entry point in rounds: each round checks the key slots against the
// check values the host wrote, opens the kernel's control block (sealed with
// ChaCha20-Poly1305 in the envelope's single-shot form when sealing is on), honours
// should_terminate, takes a batch from the kernel's input ring in device memory, runs
// the built-in checksum handler over it, checks every device-side send against the
// route bitmap, clears the ring words it consumed, updates the counters and re-seals
// the block under the current key with the nonce and header the host reserved (device
// direction, next sequence number).
//
// Input ring (ringkernel-core backend/input_ring.rs): word 0 the host's write position,
// word 1 this kernel's read position, entries from word 4: a length in bytes, then the
// payload padded to a word; 0xffffffff sends the reader back to position 0. The host
// also passes the position of every entry the round takes (params from
// RK_P_RING_ENTRIES), so the entries are checked in parallel, one per invocation, not
// walked one after another by invocation 0: each invocation checks that its entry lies
// in the ring and fits the round, and that its length word leads exactly to the next
// entry's position (past a wrap word only where the round wraps) or, for the last, to
// the round's end; the first entry must stand where the round starts. These links,
// all holding, are the walk a single invocation would make, so a position table that
// disagrees with the ring's length words is refused, never followed.
//
// Every index into a buffer is bounded by a length the host wrote: the parameters and
// the sizes of the bound buffers (arrayLength). Words the device shares (the ring's
// header and entry lengths, the key slots, the control block) are checked against the
// host's values before they are used, and a mismatch is reported (status word 0, with
// the detail in word 7), never followed.
//
// Control block words (ringkernel-core control.rs): 0 is_active, 1 should_terminate,
// 2 has_terminated, 3 last_error, 4/5 messages_processed, 6/7 messages_in_flight,
// 8/9 input_head, 10/11 input_tail, 14/15 output_tail. Sealed layout: header words 0..13
// (52 bytes: 0 magic, 1 version/algorithm/kind/nonce length, 2 epoch, 3..7 context with
// the incarnation in 6, 7/8 sequence, 9 length, 10..13 nonce), ciphertext words 13..45,
// tag words 45..49.

@group(0) @binding(0) var<storage, read_write> control: array<u32>;
// Two key slots of 12 words: epoch, valid (1), 2 unused, 8 key words.
@group(0) @binding(1) var<storage, read> keys: array<u32>;
// 0 sealed, 1 messages, 2/3 expected sequence, 4 has_peer, 5 own slot, 6 peer slot,
// 7 route stride, 8 enforce routes, 9..22 the header to seal with (13 words),
// 22/23 messages ever enqueued (input_tail), 24 the input ring's entry words, 25/26 its
// read and write positions, 27 where the round's entries end, 28 the route bitmap's
// words, 29..41 per key slot: filled (1), epoch, the key's check value (4 words),
// from 44 (RK_P_RING_ENTRIES) each entry's position, params[1] of RK_MAX_BATCH words.
@group(0) @binding(2) var<storage, read> params: array<u32>;
// The input ring.
@group(0) @binding(3) var<storage, read_write> ring: array<u32>;
// Per message two words: checksum, status (1 processed, 2 forwarded, 3 refused).
@group(0) @binding(4) var<storage, read_write> output: array<u32>;
// Route permission bitmap: bit src * stride + dst.
@group(0) @binding(5) var<storage, read> routes: array<u32>;
// 0 result (0 ok, 1 authentication failed, 2 header mismatch, 3 no key for epoch,
// 4 input ring corrupt, 5 key slot corrupt, 6 parameters do not fit the buffers),
// 1 processed, 2 forwarded, 3 refused, 4 should_terminate seen, 5 re-sealed, 6 the
// ring's read position after the round, 7 the detail of a refusal, 8/9 what it found.
@group(0) @binding(6) var<storage, read_write> status: array<u32>;

// The layout constants (RK_HEADER_WORDS, RK_P_*, RK_CB_*, result codes, ...) come from
// the prelude the host generates from ringkernel-core's layout::KERNEL_CONSTANTS.

var<workgroup> rk_cb: array<u32, RK_CB_WORDS>;
var<workgroup> rk_state: u32;
// The batch taken from the ring: each entry's payload (word index into `ring`) and
// length, how many, and the read position before and after.
var<workgroup> rk_offs: array<u32, 256>;
var<workgroup> rk_lens: array<u32, 256>;
var<workgroup> rk_count: u32;
var<workgroup> rk_read_old: u32;
var<workgroup> rk_read_new: u32;
// The entries the invocations check (0 when the round takes none or stops before),
// and what the checks found: the lowest failed entry * 8 + its detail
// (0xffffffff: none), and whether a position lay past the ring's capacity.
var<workgroup> rk_walk: u32;
var<workgroup> rk_fail: atomic<u32>;
var<workgroup> rk_invalid: atomic<u32>;
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

// Every key slot the host filled must hold what it wrote: the epoch, the valid mark
// and a key whose check value (the AEAD tag of nothing under the reserved nonce) is the
// one in the parameters; slot 0 (the sealing key) must be filled. Returns 0 or 5.
fn rk_check_key_slots() -> u32 {
    if (params[RK_P_KEY_CHECK] != 1u) {
        return RK_KEY_SLOT_CORRUPT;
    }
    for (var s = 0u; s < 2u; s++) {
        let p = RK_P_KEY_CHECK + s * RK_KEY_CHECK_WORDS;
        if (params[p] != 1u) {
            continue;
        }
        if (keys[s * 12u] != params[p + 1u] || keys[s * 12u + 1u] != 1u) {
            return RK_KEY_SLOT_CORRUPT;
        }
        var st = rk_poly_init(rk_chacha20_block(rk_slot_key(s), 0u,
                                                vec3<u32>(RK_KEY_CHECK_NONCE0, 0u, 0u)));
        rk_poly_lengths(&st, 0u, 0u);
        let want = vec4<u32>(params[p + 2u], params[p + 3u], params[p + 4u], params[p + 5u]);
        if (rk_tag_diff(rk_poly_finish(&st), want) != 0u) {
            return RK_KEY_SLOT_CORRUPT;
        }
    }
    return RK_OK;
}

// The control block's header must be the one the host expects: magic, version,
// algorithm, kind, nonce length and length, then the context (runtime instance, kernel
// and region), the launch incarnation and the sequence. Returns 0, or 2 with the detail
// in status[7] and what was found in status[8..10].
fn rk_check_header() -> u32 {
    let h = RK_P_HEADER;
    var detail = 0u;
    if (control[0] != params[h] || control[1] != params[h + 1u] || control[9] != 128u) {
        detail = RK_D_HEADER_MALFORMED;
    } else if (control[3] != params[h + 3u] || control[4] != params[h + 4u]
               || control[5] != params[h + 5u]) {
        detail = RK_D_HEADER_CONTEXT;
    } else if (control[6] != params[h + 6u]) {
        detail = RK_D_HEADER_INCARNATION;
        status[8] = control[6];
    } else if (control[7] != params[2] || control[8] != params[3]) {
        detail = RK_D_HEADER_SEQUENCE;
        status[8] = control[7];
        status[9] = control[8];
    }
    status[7] = detail;
    return select(RK_HEADER_MISMATCH, RK_OK, detail == 0u);
}

// Opens the sealed control block into `rk_cb`; returns the result code. The key slot is
// chosen by the epochs the host wrote in the parameters.
fn rk_open_control() -> u32 {
    let checked = rk_check_header();
    if (checked != RK_OK) {
        return checked;
    }
    let epoch = control[2];
    var slot = 2u;
    for (var s = 0u; s < 2u; s++) {
        let p = RK_P_KEY_CHECK + s * RK_KEY_CHECK_WORDS;
        if (params[p] == 1u && params[p + 1u] == epoch) {
            slot = s;
        }
    }
    if (slot == 2u) {
        status[8] = epoch;
        return RK_NO_KEY;
    }
    let key = rk_slot_key(slot);
    let nonce = vec3<u32>(control[10], control[11], control[12]);
    let stored = vec4<u32>(control[45], control[46], control[47], control[48]);
    if (rk_tag_diff(rk_control_tag(key, nonce), stored) != 0u) {
        return RK_OPEN_FAILED;
    }
    rk_control_crypt(key, nonce, false);
    return RK_OK;
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

// The round's ring before its entries are checked: the parameters must fit the
// buffers (capacity, positions, batch) and the ring's header must hold the host's
// positions; a round that takes nothing must end where it starts. Returns 0, 6 when the
// parameters do not fit the buffers, or 4 with the detail in status[7].
fn rk_ring_check() -> u32 {
    let cap = params[RK_P_RING_CAP];
    let read = params[RK_P_RING_READ];
    let write = params[RK_P_RING_WRITE];
    let end = params[RK_P_RING_END];
    let want = params[1];
    let ring_words = arrayLength(&ring);
    if (cap < 2u || ring_words < RK_RING_HEADER || cap > ring_words - RK_RING_HEADER
        || read >= cap || write >= cap || end >= cap || want > RK_MAX_BATCH
        || want > arrayLength(&output) / 2u) {
        return RK_ROUND_INVALID;
    }
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

// Where the round's entries go on from position `r` (below the capacity) when more
// are to come: (r, 0), or (0, 0) past a wrap word the round takes; (0, detail) where
// the round's end stands at `r` (RK_D_RING_END) or a wrap word stands where the
// round does not wrap or at 0 (RK_D_RING_WRAP).
fn rk_ring_next(r: u32, end: u32) -> vec2<u32> {
    if (r == end) {
        return vec2<u32>(0u, RK_D_RING_END);
    }
    if (ring[RK_RING_HEADER + r] != RK_RING_WRAP) {
        return vec2<u32>(r, 0u);
    }
    if (r == 0u || end > r) {
        return vec2<u32>(0u, RK_D_RING_WRAP);
    }
    // Past the wrap word the round goes on at 0, where it must not end.
    return vec2<u32>(0u, select(0u, RK_D_RING_END, end == 0u));
}

// Words from the read position to `x` (below the capacity) in ring order.
fn rk_ring_distance(x: u32, read: u32, cap: u32) -> u32 {
    return select(x + (cap - read), x - read, x >= read);
}

// Whether the entries reach (`reach`, below the capacity) the position the host gave
// the next entry (`next`): 0, or RK_D_RING_ENTRY where they reach past it (an entry
// runs into the next), RK_D_RING_END where they stop short of it.
fn rk_ring_link(reach: u32, next: u32, read: u32, cap: u32) -> u32 {
    if (reach == next) {
        return 0u;
    }
    if (next < cap && rk_ring_distance(reach, read, cap) > rk_ring_distance(next, read, cap)) {
        return RK_D_RING_ENTRY;
    }
    return RK_D_RING_END;
}

// Checks entry `i` of the round (below params[1], which rk_ring_check bounded) at the
// position the host gave it, and fills rk_offs[i] and rk_lens[i]: the position lies
// inside the ring; for entry 0 it is where the round starts (the read position, or 0
// past a wrap word there); its length word is no wrap word and its payload fits the
// room (up to the round's end, or to the ring's end when the round wraps there); and
// it leads exactly to the next entry's position (past a wrap word only where the
// round wraps), or, for the last, to the round's end. The host's positions are a claim
// checked here against the ring's words, never followed unchecked. Returns (result,
// detail): (0, 0), (6, 0) for a position past the capacity, or (4, RK_D_RING_*).
fn rk_ring_entry(i: u32) -> vec2<u32> {
    let cap = params[RK_P_RING_CAP];
    let read = params[RK_P_RING_READ];
    let end = params[RK_P_RING_END];
    let p = params[RK_P_RING_ENTRIES + i];
    if (p >= cap) {
        return vec2<u32>(RK_ROUND_INVALID, 0u);
    }
    if (i == 0u) {
        let start = rk_ring_next(read, end);
        var detail = start.y;
        if (detail == 0u) {
            detail = rk_ring_link(start.x, p, read, cap);
        }
        if (detail != 0u) {
            return vec2<u32>(RK_RING_CORRUPT, detail);
        }
    }
    let len = ring[RK_RING_HEADER + p];
    if (len == RK_RING_WRAP) {
        return vec2<u32>(RK_RING_CORRUPT, RK_D_RING_WRAP);
    }
    let payload_words = len / 4u + select(0u, 1u, len % 4u != 0u);
    // Room: up to the round's end, or to the ring's end when the round wraps.
    let room = select(cap - p, end - p, end > p);
    if (payload_words >= room) {
        return vec2<u32>(RK_RING_CORRUPT, RK_D_RING_ENTRY);
    }
    rk_offs[i] = RK_RING_HEADER + p + 1u;
    rk_lens[i] = len;
    var after = p + 1u + payload_words;
    if (after == cap) {
        after = 0u;
    }
    if (i + 1u == params[1]) {
        return select(vec2<u32>(RK_RING_CORRUPT, RK_D_RING_END), vec2<u32>(RK_OK, 0u),
                      after == end);
    }
    let next = rk_ring_next(after, end);
    var detail = next.y;
    if (detail == 0u) {
        detail = rk_ring_link(next.x, params[RK_P_RING_ENTRIES + i + 1u], read, cap);
    }
    return select(vec2<u32>(RK_RING_CORRUPT, detail), vec2<u32>(RK_OK, 0u), detail == 0u);
}

// FNV-1a (32-bit) of a payload in the ring.
fn rk_checksum(off: u32, len: u32) -> u32 {
    var h = 0x811c9dc5u;
    // A word at a time (one load per four bytes), in blocks of 4096 words, then the
    // bytes of a partial word.
    let full = len / 4u;
    for (var b = 0u; b < full; b += 4096u) {
        let end = min(full, b + 4096u);
        for (var w = b; w < end; w++) {
            let v = ring[off + w];
            for (var k = 0u; k < 4u; k++) {
                h = (h ^ ((v >> (8u * k)) & 0xffu)) * 0x01000193u;
            }
        }
    }
    if (len % 4u != 0u) {
        let v = ring[off + full];
        for (var k = 0u; k < len % 4u; k++) {
            h = (h ^ ((v >> (8u * k)) & 0xffu)) * 0x01000193u;
        }
    }
    return h;
}

// Whether the route bitmap permits src -> dst. The bit `src * stride + dst` must lie
// inside the bitmap the host uploaded (params[28] words) and the bound buffer; the test
// below keeps `src * stride + dst` below that many bits without overflowing.
fn rk_route_permitted(src: u32, dst: u32) -> bool {
    if (params[8] == 0u) {
        return true;
    }
    let stride = params[7];
    let words = min(min(params[RK_P_ROUTE_WORDS], arrayLength(&routes)), 0x07ffffffu);
    let bits = words * 32u;
    if (stride == 0u || src >= stride || dst >= stride || src >= bits / stride) {
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
        for (var w = 0u; w < RK_STATUS_WORDS; w++) {
            status[w] = 0u;
        }
        var result = RK_OK;
        if (params[0] == 1u) {
            result = rk_check_key_slots();
            if (result == RK_OK) {
                result = rk_open_control();
            }
        } else {
            for (var w = 0u; w < RK_CB_WORDS; w++) {
                rk_cb[w] = control[w];
            }
        }
        rk_count = 0u;
        // The host's read position: where the ring stands when the round takes nothing.
        rk_read_old = params[RK_P_RING_READ];
        rk_read_new = rk_read_old;
        atomicStore(&rk_fail, 0xffffffffu);
        atomicStore(&rk_invalid, 0u);
        rk_walk = 0u;
        // The termination flag is read once, here, and shared with every invocation
        // before the barrier: no invocation can take another path through a barrier.
        if (result == RK_OK && rk_cb[RK_CB_SHOULD_TERMINATE] != 1u) {
            result = rk_ring_check();
            if (result == RK_OK) {
                rk_walk = params[1];
            }
        }
        status[0] = result;
        if (result != RK_OK) {
            rk_state = 1u;
        } else if (rk_cb[RK_CB_SHOULD_TERMINATE] == 1u) {
            rk_state = 2u;
        } else {
            rk_state = 0u;
        }
    }
    // The round's entries, one per invocation: each checks its own against the ring
    // and the host's positions (rk_ring_entry); the lowest failed entry is reported,
    // as a walk from the read position would have met it first.
    let walk = workgroupUniformLoad(&rk_walk);
    for (var i = lid; i < walk; i += 64u) {
        let checked = rk_ring_entry(i);
        if (checked.x == RK_ROUND_INVALID) {
            atomicStore(&rk_invalid, 1u);
        } else if (checked.x != RK_OK) {
            atomicMin(&rk_fail, i * 8u + checked.y);
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        if (walk > 0u) {
            let fail = atomicLoad(&rk_fail);
            if (atomicLoad(&rk_invalid) != 0u) {
                status[0] = RK_ROUND_INVALID;
                rk_state = 1u;
            } else if (fail != 0xffffffffu) {
                status[0] = RK_RING_CORRUPT;
                status[7] = fail % 8u;
                rk_state = 1u;
            } else {
                rk_count = walk;
                rk_read_new = params[RK_P_RING_END];
            }
        }
        if (rk_state == 1u) {
            // A refused round ends here: leave no opened control block in workgroup
            // memory.
            for (var w = 0u; w < RK_CB_WORDS; w++) {
                rk_cb[w] = 0u;
            }
        }
    }
    let state = workgroupUniformLoad(&rk_state);
    let n = workgroupUniformLoad(&rk_count);
    if (state == 0u) {
        for (var m = lid; m < n; m += 64u) {
            let off = rk_offs[m];
            let len = rk_lens[m];
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
    // Every payload has been read: clear the words consumed (entries and wrap words),
    // so no plaintext payload stays in the ring once processed.
    storageBarrier();
    workgroupBarrier();
    if (state == 0u) {
        let cap = params[RK_P_RING_CAP];
        let old = rk_read_old;
        let used = (rk_read_new + cap - old) % cap;
        for (var i = lid; i < used; i += 64u) {
            ring[RK_RING_HEADER + (old + i) % cap] = 0u;
        }
    }
    workgroupBarrier();
    if (lid == 0u && state != 1u) {
        let processed = atomicLoad(&rk_processed);
        let forwarded = atomicLoad(&rk_forwarded);
        if (state == 2u) {
            rk_cb[RK_CB_IS_ACTIVE] = 0u;
            rk_cb[RK_CB_HAS_TERMINATED] = 1u;
        }
        rk_add_u64(RK_CB_MESSAGES_PROCESSED, processed);
        rk_add_u64(RK_CB_INPUT_HEAD, processed);
        rk_add_u64(RK_CB_OUTPUT_TAIL, forwarded);
        // input_tail = max(messages ever enqueued, input_head); in flight = tail - head.
        var tail_lo = params[22];
        var tail_hi = params[23];
        if (tail_hi < rk_cb[RK_CB_INPUT_HEAD + 1u] || (tail_hi == rk_cb[RK_CB_INPUT_HEAD + 1u] && tail_lo < rk_cb[RK_CB_INPUT_HEAD])) {
            tail_lo = rk_cb[RK_CB_INPUT_HEAD];
            tail_hi = rk_cb[RK_CB_INPUT_HEAD + 1u];
        }
        rk_cb[RK_CB_INPUT_TAIL] = tail_lo;
        rk_cb[RK_CB_INPUT_TAIL + 1u] = tail_hi;
        rk_cb[RK_CB_MESSAGES_IN_FLIGHT] = tail_lo - rk_cb[RK_CB_INPUT_HEAD];
        rk_cb[RK_CB_MESSAGES_IN_FLIGHT + 1u] = tail_hi - rk_cb[RK_CB_INPUT_HEAD + 1u] - select(0u, 1u, tail_lo < rk_cb[RK_CB_INPUT_HEAD]);
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
        if (arrayLength(&ring) >= RK_RING_HEADER) {
            ring[1] = rk_read_new;
        }
        status[6] = rk_read_new;
        // Leave no plaintext control block in workgroup memory.
        for (var w = 0u; w < RK_CB_WORDS; w++) {
            rk_cb[w] = 0u;
        }
    }
}
