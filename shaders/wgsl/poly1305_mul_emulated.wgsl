// Poly1305's field products for RingKernel's wgpu kernels, in 32-bit arithmetic only:
// the fallback for adapters without SHADER_INT64 (the backend uses
// poly1305_mul_int64.wgsl when the adapter has it). Same functions, same results: the
// state stays in five 26-bit limbs ("donna-32"); only the 32x32->64-bit products and
// their sums are emulated here, in 16-bit halves. No data-dependent branches.
//
// A module is the layout prelude, chacha20_poly1305.wgsl, exactly one of the two
// poly1305_mul_*.wgsl files and one kernel file.

// 32x32 -> 64-bit product as (low, high) words.
fn rk_mul_wide(a: u32, b: u32) -> vec2<u32> {
    let al = a & 0xffffu;
    let ah = a >> 16u;
    let bl = b & 0xffffu;
    let bh = b >> 16u;
    let ll = al * bl;
    let lh = al * bh;
    let hl = ah * bl;
    let hh = ah * bh;
    let mid = lh + hl;
    let mid_carry = select(0u, 0x10000u, mid < lh);
    let lo = ll + (mid << 16u);
    let lo_carry = select(0u, 1u, lo < ll);
    return vec2<u32>(lo, hh + (mid >> 16u) + mid_carry + lo_carry);
}

fn rk_add64(x: vec2<u32>, y: vec2<u32>) -> vec2<u32> {
    let lo = x.x + y.x;
    return vec2<u32>(lo, x.y + y.y + select(0u, 1u, lo < x.x));
}

// (x >> 26) of a 64-bit value below 2^58.
fn rk_shr26(x: vec2<u32>) -> u32 {
    return (x.x >> 26u) | (x.y << 6u);
}

// Absorbs one full 16-byte block `m` (the AEAD construction pads every input to
// whole blocks, so the high bit is always set).
fn rk_poly_block(st: ptr<function, RkPoly>, m: vec4<u32>) {
    let r0 = (*st).r0; let r1 = (*st).r1; let r2 = (*st).r2; let r3 = (*st).r3; let r4 = (*st).r4;
    let s1 = r1 * 5u; let s2 = r2 * 5u; let s3 = r3 * 5u; let s4 = r4 * 5u;
    var h0 = (*st).h0 + (m.x & RK_MASK26);
    var h1 = (*st).h1 + (((m.x >> 26u) | (m.y << 6u)) & RK_MASK26);
    var h2 = (*st).h2 + (((m.y >> 20u) | (m.z << 12u)) & RK_MASK26);
    var h3 = (*st).h3 + (((m.z >> 14u) | (m.w << 18u)) & RK_MASK26);
    var h4 = (*st).h4 + ((m.w >> 8u) | (1u << 24u));
    var d0 = rk_add64(rk_add64(rk_add64(rk_add64(rk_mul_wide(h0, r0), rk_mul_wide(h1, s4)), rk_mul_wide(h2, s3)), rk_mul_wide(h3, s2)), rk_mul_wide(h4, s1));
    var d1 = rk_add64(rk_add64(rk_add64(rk_add64(rk_mul_wide(h0, r1), rk_mul_wide(h1, r0)), rk_mul_wide(h2, s4)), rk_mul_wide(h3, s3)), rk_mul_wide(h4, s2));
    var d2 = rk_add64(rk_add64(rk_add64(rk_add64(rk_mul_wide(h0, r2), rk_mul_wide(h1, r1)), rk_mul_wide(h2, r0)), rk_mul_wide(h3, s4)), rk_mul_wide(h4, s3));
    var d3 = rk_add64(rk_add64(rk_add64(rk_add64(rk_mul_wide(h0, r3), rk_mul_wide(h1, r2)), rk_mul_wide(h2, r1)), rk_mul_wide(h3, r0)), rk_mul_wide(h4, s4));
    var d4 = rk_add64(rk_add64(rk_add64(rk_add64(rk_mul_wide(h0, r4), rk_mul_wide(h1, r3)), rk_mul_wide(h2, r2)), rk_mul_wide(h3, r1)), rk_mul_wide(h4, r0));
    var c = rk_shr26(d0); h0 = d0.x & RK_MASK26;
    d1 = rk_add64(d1, vec2<u32>(c, 0u)); c = rk_shr26(d1); h1 = d1.x & RK_MASK26;
    d2 = rk_add64(d2, vec2<u32>(c, 0u)); c = rk_shr26(d2); h2 = d2.x & RK_MASK26;
    d3 = rk_add64(d3, vec2<u32>(c, 0u)); c = rk_shr26(d3); h3 = d3.x & RK_MASK26;
    d4 = rk_add64(d4, vec2<u32>(c, 0u)); c = rk_shr26(d4); h4 = d4.x & RK_MASK26;
    h0 += c * 5u; c = h0 >> 26u; h0 &= RK_MASK26;
    h1 += c;
    (*st).h0 = h0; (*st).h1 = h1; (*st).h2 = h2; (*st).h3 = h3; (*st).h4 = h4;
}

// a * b mod 2^130 - 5 for carried operands (limbs below 2^26 + 2^6).
fn rk_fe_mul(a: RkFe, b: RkFe) -> RkFe {
    let s1 = b.l1 * 5u; let s2 = b.l2 * 5u; let s3 = b.l3 * 5u; let s4 = b.l4 * 5u;
    let d0 = rk_add64(rk_add64(rk_add64(rk_add64(rk_mul_wide(a.l0, b.l0), rk_mul_wide(a.l1, s4)), rk_mul_wide(a.l2, s3)), rk_mul_wide(a.l3, s2)), rk_mul_wide(a.l4, s1));
    var d1 = rk_add64(rk_add64(rk_add64(rk_add64(rk_mul_wide(a.l0, b.l1), rk_mul_wide(a.l1, b.l0)), rk_mul_wide(a.l2, s4)), rk_mul_wide(a.l3, s3)), rk_mul_wide(a.l4, s2));
    var d2 = rk_add64(rk_add64(rk_add64(rk_add64(rk_mul_wide(a.l0, b.l2), rk_mul_wide(a.l1, b.l1)), rk_mul_wide(a.l2, b.l0)), rk_mul_wide(a.l3, s4)), rk_mul_wide(a.l4, s3));
    var d3 = rk_add64(rk_add64(rk_add64(rk_add64(rk_mul_wide(a.l0, b.l3), rk_mul_wide(a.l1, b.l2)), rk_mul_wide(a.l2, b.l1)), rk_mul_wide(a.l3, b.l0)), rk_mul_wide(a.l4, s4));
    var d4 = rk_add64(rk_add64(rk_add64(rk_add64(rk_mul_wide(a.l0, b.l4), rk_mul_wide(a.l1, b.l3)), rk_mul_wide(a.l2, b.l2)), rk_mul_wide(a.l3, b.l1)), rk_mul_wide(a.l4, b.l0));
    var r: RkFe;
    var c = rk_shr26(d0); r.l0 = d0.x & RK_MASK26;
    d1 = rk_add64(d1, vec2<u32>(c, 0u)); c = rk_shr26(d1); r.l1 = d1.x & RK_MASK26;
    d2 = rk_add64(d2, vec2<u32>(c, 0u)); c = rk_shr26(d2); r.l2 = d2.x & RK_MASK26;
    d3 = rk_add64(d3, vec2<u32>(c, 0u)); c = rk_shr26(d3); r.l3 = d3.x & RK_MASK26;
    d4 = rk_add64(d4, vec2<u32>(c, 0u)); c = rk_shr26(d4); r.l4 = d4.x & RK_MASK26;
    // c may exceed 2^29 here: c * 5 + l0 in 64 bits.
    let t = rk_add64(rk_mul_wide(c, 5u), vec2<u32>(r.l0, 0u));
    r.l0 = t.x & RK_MASK26;
    r.l1 += rk_shr26(t);
    return rk_fe_carry(r);
}
