// ChaCha20-Poly1305 (RFC 8439) for RingKernel's wgpu kernels: the cipher library.
//
// 32-bit integer arithmetic only. ChaCha20 runs on four vec4<u32> rows (column and
// diagonal rounds as lane rotations); Poly1305 keeps its state in 26-bit limbs
// ("donna-32"). Its two multiplying functions, rk_poly_block and rk_fe_mul, are not
// here: poly1305_mul_int64.wgsl computes the products in `u64` (adapters with
// SHADER_INT64) and poly1305_mul_emulated.wgsl emulates them in 16-bit halves (every
// adapter). No data-dependent branches or table lookups on secrets.
//
// Words are little-endian byte quadruples, as in the host's byte buffers: word i of a
// buffer holds bytes 4i..4i+3. A module is the layout prelude, this library, one
// poly1305_mul_*.wgsl file and one kernel file with its bindings and entry points (the
// host concatenates them); this file has no bindings.

const RK_MASK26: u32 = 0x3ffffffu;

// A 256-bit key as eight little-endian words.
struct RkKey {
    lo: vec4<u32>,
    hi: vec4<u32>,
}

fn rk_rotl4(v: vec4<u32>, n: u32) -> vec4<u32> {
    return (v << vec4<u32>(n)) | (v >> vec4<u32>(32u - n));
}

// One 64-byte ChaCha20 block (RFC 8439 §2.3) as sixteen words: row r, lane l is word
// 4r + l.
fn rk_chacha20_block(key: RkKey, counter: u32, nonce: vec3<u32>) -> array<vec4<u32>, 4> {
    let a0 = vec4<u32>(0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u);
    let b0 = key.lo;
    let c0 = key.hi;
    let d0 = vec4<u32>(counter, nonce.x, nonce.y, nonce.z);
    var a = a0;
    var b = b0;
    var c = c0;
    var d = d0;
    for (var i = 0u; i < 10u; i++) {
        // Column round: the four quarter rounds of the columns, one per lane.
        a += b; d = rk_rotl4(d ^ a, 16u);
        c += d; b = rk_rotl4(b ^ c, 12u);
        a += b; d = rk_rotl4(d ^ a, 8u);
        c += d; b = rk_rotl4(b ^ c, 7u);
        // Diagonal round: rotate rows so that diagonals line up in lanes, and back.
        b = b.yzwx; c = c.zwxy; d = d.wxyz;
        a += b; d = rk_rotl4(d ^ a, 16u);
        c += d; b = rk_rotl4(b ^ c, 12u);
        a += b; d = rk_rotl4(d ^ a, 8u);
        c += d; b = rk_rotl4(b ^ c, 7u);
        b = b.wxyz; c = c.zwxy; d = d.yzwx;
    }
    return array<vec4<u32>, 4>(a + a0, b + b0, c + c0, d + d0);
}

// Word `w` (0..15) of a keystream block.
fn rk_block_word(blk: array<vec4<u32>, 4>, w: u32) -> u32 {
    var b = blk;
    return b[w >> 2u][w & 3u];
}

// All-ones over the first `n` bytes of a word (n clamped to 0..4).
fn rk_byte_mask(n: i32) -> u32 {
    if (n <= 0) {
        return 0u;
    }
    if (n >= 4) {
        return 0xffffffffu;
    }
    return 0xffffffffu >> (32u - 8u * u32(n));
}

struct RkPoly {
    r0: u32, r1: u32, r2: u32, r3: u32, r4: u32,
    h0: u32, h1: u32, h2: u32, h3: u32, h4: u32,
    pad: vec4<u32>,
}

// Poly1305 keyed with the first 32 bytes of ChaCha20 block 0 (RFC 8439 §2.6).
fn rk_poly_init(block0: array<vec4<u32>, 4>) -> RkPoly {
    let k = block0[0];
    var st: RkPoly;
    st.r0 = k.x & 0x3ffffffu;
    st.r1 = ((k.x >> 26u) | (k.y << 6u)) & 0x3ffff03u;
    st.r2 = ((k.y >> 20u) | (k.z << 12u)) & 0x3ffc0ffu;
    st.r3 = ((k.z >> 14u) | (k.w << 18u)) & 0x3f03fffu;
    st.r4 = (k.w >> 8u) & 0x00fffffu;
    st.h0 = 0u; st.h1 = 0u; st.h2 = 0u; st.h3 = 0u; st.h4 = 0u;
    st.pad = block0[1];
    return st;
}

// rk_poly_block(st, m), which absorbs one full 16-byte block, is in poly1305_mul_*.wgsl.

// The tag: full reduction mod 2^130 - 5, then + pad mod 2^128. Wipes the state.
fn rk_poly_finish(st: ptr<function, RkPoly>) -> vec4<u32> {
    var h0 = (*st).h0; var h1 = (*st).h1; var h2 = (*st).h2; var h3 = (*st).h3; var h4 = (*st).h4;
    var c = h1 >> 26u; h1 &= RK_MASK26;
    h2 += c; c = h2 >> 26u; h2 &= RK_MASK26;
    h3 += c; c = h3 >> 26u; h3 &= RK_MASK26;
    h4 += c; c = h4 >> 26u; h4 &= RK_MASK26;
    h0 += c * 5u; c = h0 >> 26u; h0 &= RK_MASK26;
    h1 += c;
    // g = h + 5 - 2^130: keep h when g is negative (h < p), else g.
    var g0 = h0 + 5u; c = g0 >> 26u; g0 &= RK_MASK26;
    var g1 = h1 + c; c = g1 >> 26u; g1 &= RK_MASK26;
    var g2 = h2 + c; c = g2 >> 26u; g2 &= RK_MASK26;
    var g3 = h3 + c; c = g3 >> 26u; g3 &= RK_MASK26;
    var g4 = h4 + c - (1u << 26u);
    var mask = (g4 >> 31u) - 1u;
    g0 &= mask; g1 &= mask; g2 &= mask; g3 &= mask; g4 &= mask;
    mask = ~mask;
    h0 = (h0 & mask) | g0;
    h1 = (h1 & mask) | g1;
    h2 = (h2 & mask) | g2;
    h3 = (h3 & mask) | g3;
    h4 = (h4 & mask) | g4;
    let t0 = h0 | (h1 << 26u);
    let t1 = (h1 >> 6u) | (h2 << 20u);
    let t2 = (h2 >> 12u) | (h3 << 14u);
    let t3 = (h3 >> 18u) | (h4 << 8u);
    let pad = (*st).pad;
    let f0 = t0 + pad.x;
    var carry = select(0u, 1u, f0 < t0);
    let s1 = t1 + pad.y;
    let f1 = s1 + carry;
    carry = select(0u, 1u, s1 < t1) + select(0u, 1u, f1 < s1);
    let s2 = t2 + pad.z;
    let f2 = s2 + carry;
    carry = select(0u, 1u, s2 < t2) + select(0u, 1u, f2 < s2);
    let f3 = t3 + pad.w + carry;
    (*st).r0 = 0u; (*st).r1 = 0u; (*st).r2 = 0u; (*st).r3 = 0u; (*st).r4 = 0u;
    (*st).h0 = 0u; (*st).h1 = 0u; (*st).h2 = 0u; (*st).h3 = 0u; (*st).h4 = 0u;
    (*st).pad = vec4<u32>(0u);
    return vec4<u32>(f0, f1, f2, f3);
}

// The last block of the AEAD tag: le64(aad_len) || le64(ct_len), lengths below 2^32.
fn rk_poly_lengths(st: ptr<function, RkPoly>, aad_len: u32, ct_len: u32) {
    rk_poly_block(st, vec4<u32>(aad_len, 0u, ct_len, 0u));
}

// The nonce of STREAM chunk `i`: prefix (7 bytes: p0 = bytes 0..3, p1 = bytes 4..6)
// || i (u32 big-endian) || last flag, as three little-endian words.
fn rk_stream_nonce(p0: u32, p1: u32, i: u32, last: bool) -> vec3<u32> {
    let n1 = (p1 & 0xffffffu) | ((i >> 24u) << 24u);
    let n2 = ((i >> 16u) & 0xffu) | (((i >> 8u) & 0xffu) << 8u) | ((i & 0xffu) << 16u) | (select(0u, 1u, last) << 24u);
    return vec3<u32>(p0, n1, n2);
}

// Constant-time tag comparison: 0 when equal.
fn rk_tag_diff(a: vec4<u32>, b: vec4<u32>) -> u32 {
    let d = a ^ b;
    return d.x | d.y | d.z | d.w;
}

// ----- Poly1305 split across a workgroup --------------------------------------------------
//
// The polynomial h = sum m_k r^(n-k+1) splits over contiguous segments: a segment's own
// Horner value H_t (from h = 0, with the same r) contributes H_t * r^(blocks after it).
// Invocations compute their segment's H_t in parallel with rk_poly_block; one
// invocation folds them with a general field multiplication (acc = acc * r^L_t + H_t).

// A field element mod 2^130 - 5 in five 26-bit limbs.
struct RkFe {
    l0: u32, l1: u32, l2: u32, l3: u32, l4: u32,
}

// Carries every limb below 2^26 (limb 1 may keep one extra bit).
fn rk_fe_carry(a: RkFe) -> RkFe {
    var r = a;
    var c = r.l0 >> 26u; r.l0 &= RK_MASK26;
    r.l1 += c; c = r.l1 >> 26u; r.l1 &= RK_MASK26;
    r.l2 += c; c = r.l2 >> 26u; r.l2 &= RK_MASK26;
    r.l3 += c; c = r.l3 >> 26u; r.l3 &= RK_MASK26;
    r.l4 += c; c = r.l4 >> 26u; r.l4 &= RK_MASK26;
    r.l0 += c * 5u; c = r.l0 >> 26u; r.l0 &= RK_MASK26;
    r.l1 += c;
    return r;
}

fn rk_fe_add(a: RkFe, b: RkFe) -> RkFe {
    return rk_fe_carry(RkFe(a.l0 + b.l0, a.l1 + b.l1, a.l2 + b.l2, a.l3 + b.l3, a.l4 + b.l4));
}

// rk_fe_mul(a, b), a * b mod 2^130 - 5, is in poly1305_mul_*.wgsl.

// r^e for e >= 1 (square and multiply).
fn rk_fe_pow(r: RkFe, e: u32) -> RkFe {
    var result = RkFe(1u, 0u, 0u, 0u, 0u);
    var base = r;
    var first = true;
    var k = e;
    loop {
        if (k == 0u) {
            break;
        }
        if ((k & 1u) == 1u) {
            if (first) {
                result = base;
                first = false;
            } else {
                result = rk_fe_mul(result, base);
            }
        }
        k = k >> 1u;
        if (k != 0u) {
            base = rk_fe_mul(base, base);
        }
    }
    return result;
}

fn rk_poly_r(st: RkPoly) -> RkFe {
    return RkFe(st.r0, st.r1, st.r2, st.r3, st.r4);
}

fn rk_poly_h(st: RkPoly) -> RkFe {
    return RkFe(st.h0, st.h1, st.h2, st.h3, st.h4);
}

fn rk_poly_set_h(st: ptr<function, RkPoly>, h: RkFe) {
    (*st).h0 = h.l0; (*st).h1 = h.l1; (*st).h2 = h.l2; (*st).h3 = h.l3; (*st).h4 = h.l4;
}
