// Chunked STREAM sealing and opening of whole device buffers with ChaCha20-Poly1305,
// in the envelope layout of ringkernel-core (security/encryption/envelope.rs), one
// chunk per workgroup. Appended to chacha20_poly1305.wgsl by the host.
//
// The sealed body is a sequence of slots `chunk ciphertext || 16-byte tag` of
// chunk_size + 16 bytes (chunk_size is a multiple of 64, so every slot starts on a word
// boundary; only the last slot, which ends the body, may end inside a word). Chunk i
// uses the nonce prefix || i (u32 big-endian) || last flag and authenticates `aad`
// (the envelope header). In a workgroup all 64 invocations run the keystream over the
// chunk's blocks, and each computes the Poly1305 polynomial of one contiguous segment of
// the ciphertext; invocation 0 folds the segments (acc = acc * r^L + H) between the
// header's blocks and the length block. Opening verifies a chunk's tag before any of
// its plaintext is written.

struct RkStreamParams {
    key_lo: vec4<u32>,
    key_hi: vec4<u32>,
    // prefix bytes 0..3, prefix bytes 4..6, total plaintext bytes, chunk size (bytes)
    p0: u32,
    p1: u32,
    total: u32,
    chunk_size: u32,
    chunks: u32,
    aad_len: u32,
    _pad0: u32,
    _pad1: u32,
}

// A read-only storage buffer, not a uniform: lavapipe inlines uniform values into the
// shader and recompiles it (about 10 ms of LLVM) whenever they change, and the key and
// nonce here change on every call.
@group(0) @binding(0) var<storage, read> params: RkStreamParams;
@group(0) @binding(1) var<storage, read> aad: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<u32>;
@group(0) @binding(4) var<storage, read_write> failures: atomic<u32>;

var<workgroup> rk_chunk_ok: u32;
// Per invocation: its segment's polynomial value (5 limbs) and block count.
var<workgroup> rk_seg_h: array<array<u32, 5>, 64>;
var<workgroup> rk_seg_len: array<u32, 64>;

fn rk_stream_key() -> RkKey {
    return RkKey(params.key_lo, params.key_hi);
}

fn rk_absorb_aad(st: ptr<function, RkPoly>) {
    let words = (params.aad_len + 3u) / 4u;
    for (var w = 0u; w < words; w += 4u) {
        var m = vec4<u32>(0u);
        for (var k = 0u; k < 4u; k++) {
            if (w + k < words) {
                m[k] = aad[w + k] & rk_byte_mask(i32(params.aad_len) - i32(4u * (w + k)));
            }
        }
        rk_poly_block(st, m);
    }
}

// Where chunk `ch` lives: its plaintext length (in full words and leftover bytes), the
// first word of its plaintext and of its slot, and its nonce.
struct RkChunk {
    len: u32,
    full: u32,
    rem: u32,
    plain: u32,
    slot: u32,
    nonce: vec3<u32>,
}

fn rk_chunk(ch: u32) -> RkChunk {
    let len = min(params.chunk_size, params.total - ch * params.chunk_size);
    return RkChunk(
        len,
        len / 4u,
        len % 4u,
        ch * (params.chunk_size / 4u),
        ch * ((params.chunk_size + 16u) / 4u),
        rk_stream_nonce(params.p0, params.p1, ch, ch + 1u == params.chunks),
    );
}

// The ciphertext word `i` of a chunk as Poly1305 reads it: from `dst` (sealing, full
// words), `part` for the partial last word, or from `src` masked (opening).
fn rk_ct_word(sealing: bool, base: u32, i: u32, full: u32, len: u32, part: u32) -> u32 {
    if (sealing) {
        if (i < full) {
            return dst[base + i];
        }
        if (i == full) {
            return part;
        }
        return 0u;
    }
    if (4u * i >= len) {
        return 0u;
    }
    return src[base + i] & rk_byte_mask(i32(len) - i32(4u * i));
}

// Invocation `lid`'s segment of the chunk's 16-byte ciphertext blocks: its polynomial
// from h = 0 under the chunk's r, into workgroup memory.
fn rk_segment(key: RkKey, nonce: vec3<u32>, sealing: bool, base: u32, full: u32, len: u32,
              part: u32, lid: u32) {
    let blocks = (len + 15u) / 16u;
    let seg = (blocks + 63u) / 64u;
    let first = min(lid * seg, blocks);
    let last = min(first + seg, blocks);
    var st = rk_poly_init(rk_chacha20_block(key, 0u, nonce));
    for (var b = first; b < last; b++) {
        var m = vec4<u32>(0u);
        for (var k = 0u; k < 4u; k++) {
            m[k] = rk_ct_word(sealing, base, 4u * b + k, full, len, part);
        }
        rk_poly_block(&st, m);
    }
    rk_seg_h[lid] = array<u32, 5>(st.h0, st.h1, st.h2, st.h3, st.h4);
    rk_seg_len[lid] = last - first;
}

// Invocation 0: the tag from the header's blocks, the folded segments and the lengths.
fn rk_fold_tag(key: RkKey, nonce: vec3<u32>, len: u32) -> vec4<u32> {
    var st = rk_poly_init(rk_chacha20_block(key, 0u, nonce));
    rk_absorb_aad(&st);
    let r = rk_poly_r(st);
    let blocks = (len + 15u) / 16u;
    let seg = (blocks + 63u) / 64u;
    var acc = rk_fe_carry(rk_poly_h(st));
    if (blocks > 0u) {
        let r_seg = rk_fe_pow(r, seg);
        for (var t = 0u; t < 64u; t++) {
            let n = rk_seg_len[t];
            if (n == 0u) {
                continue;
            }
            var rn = r_seg;
            if (n != seg) {
                rn = rk_fe_pow(r, n);
            }
            let h = rk_seg_h[t];
            acc = rk_fe_add(rk_fe_mul(acc, rn), RkFe(h[0], h[1], h[2], h[3], h[4]));
        }
    }
    rk_poly_set_h(&st, acc);
    rk_poly_lengths(&st, params.aad_len, len);
    return rk_poly_finish(&st);
}

// The partial last ciphertext word of a chunk being sealed (0 when there is none).
fn rk_seal_part(key: RkKey, nonce: vec3<u32>, sbase: u32, full: u32, rem: u32) -> u32 {
    if (rem == 0u) {
        return 0u;
    }
    let ks = rk_chacha20_block(key, 1u + full / 16u, nonce);
    return (src[sbase + full] ^ rk_block_word(ks, full % 16u)) & rk_byte_mask(i32(rem));
}

@compute @workgroup_size(64)
fn stream_seal(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let key = rk_stream_key();
    for (var ch = wg.x; ch < params.chunks; ch += nwg.x) {
        let c = rk_chunk(ch);
        let len = c.len;
        let full = c.full;
        let rem = c.rem;
        let sbase = c.plain;
        let dbase = c.slot;
        let nonce = c.nonce;
        let blocks = (len + 63u) / 64u;
        for (var b = lid; b < blocks; b += 64u) {
            let ks = rk_chacha20_block(key, 1u + b, nonce);
            for (var k = 0u; k < 16u; k++) {
                let w = b * 16u + k;
                if (w < full) {
                    dst[dbase + w] = src[sbase + w] ^ rk_block_word(ks, k);
                }
            }
        }
        storageBarrier();
        workgroupBarrier();
        let part = rk_seal_part(key, nonce, sbase, full, rem);
        rk_segment(key, nonce, true, dbase, full, len, part, lid);
        workgroupBarrier();
        if (lid == 0u) {
            let tag = rk_fold_tag(key, nonce, len);
            // Tail: the partial ciphertext bytes, then the tag, from word `full` on.
            if (rem == 0u) {
                dst[dbase + full] = tag.x;
                dst[dbase + full + 1u] = tag.y;
                dst[dbase + full + 2u] = tag.z;
                dst[dbase + full + 3u] = tag.w;
            } else {
                let sh = 8u * rem;
                dst[dbase + full] = part | (tag.x << sh);
                dst[dbase + full + 1u] = (tag.x >> (32u - sh)) | (tag.y << sh);
                dst[dbase + full + 2u] = (tag.y >> (32u - sh)) | (tag.z << sh);
                dst[dbase + full + 3u] = (tag.z >> (32u - sh)) | (tag.w << sh);
                dst[dbase + full + 4u] = tag.w >> (32u - sh);
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(64)
fn stream_open(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let key = rk_stream_key();
    for (var ch = wg.x; ch < params.chunks; ch += nwg.x) {
        let c = rk_chunk(ch);
        let len = c.len;
        let full = c.full;
        let rem = c.rem;
        let sbase = c.slot;
        let dbase = c.plain;
        let nonce = c.nonce;
        rk_segment(key, nonce, false, sbase, full, len, 0u, lid);
        workgroupBarrier();
        if (lid == 0u) {
            let expected = rk_fold_tag(key, nonce, len);
            // The stored tag starts at byte `len` of the slot.
            var stored: vec4<u32>;
            if (rem == 0u) {
                stored = vec4<u32>(src[sbase + full], src[sbase + full + 1u], src[sbase + full + 2u], src[sbase + full + 3u]);
            } else {
                let sh = 8u * rem;
                for (var k = 0u; k < 4u; k++) {
                    stored[k] = (src[sbase + full + k] >> sh) | (src[sbase + full + k + 1u] << (32u - sh));
                }
            }
            let ok = rk_tag_diff(expected, stored) == 0u;
            rk_chunk_ok = select(0u, 1u, ok);
            if (!ok) {
                atomicAdd(&failures, 1u);
            }
        }
        let ok = workgroupUniformLoad(&rk_chunk_ok) == 1u;
        if (ok) {
            let words = (len + 3u) / 4u;
            let blocks = (len + 63u) / 64u;
            for (var b = lid; b < blocks; b += 64u) {
                let ks = rk_chacha20_block(key, 1u + b, nonce);
                for (var k = 0u; k < 16u; k++) {
                    let w = b * 16u + k;
                    if (w < words) {
                        let mask = rk_byte_mask(i32(len) - i32(4u * w));
                        dst[dbase + w] = (src[sbase + w] ^ rk_block_word(ks, k)) & mask;
                    }
                }
            }
        }
        workgroupBarrier();
    }
}
