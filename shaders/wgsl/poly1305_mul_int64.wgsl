// Poly1305's field products for RingKernel's wgpu kernels, on 64-bit integers: used
// when the adapter has SHADER_INT64 (WGSL `u64`, no `enable` directive in naga), with
// poly1305_mul_emulated.wgsl as the fallback. Same functions, same results: the state
// stays in five 26-bit limbs, and each 32x32->64-bit product and its sum is one native
// u64 operation instead of 16-bit halves. WGSL has no 128-bit product, so 44-bit limbs
// ("donna-64") would need emulation again; 26-bit limbs are what fits.
// No data-dependent branches.
//
// A module is the layout prelude, chacha20_poly1305.wgsl, exactly one of the two
// poly1305_mul_*.wgsl files and one kernel file.

const RK_MASK26_64: u64 = 0x3fffffflu;

// Absorbs one full 16-byte block `m` (the AEAD construction pads every input to
// whole blocks, so the high bit is always set).
fn rk_poly_block(st: ptr<function, RkPoly>, m: vec4<u32>) {
    let r0 = u64((*st).r0); let r1 = u64((*st).r1); let r2 = u64((*st).r2);
    let r3 = u64((*st).r3); let r4 = u64((*st).r4);
    let s1 = r1 * 5lu; let s2 = r2 * 5lu; let s3 = r3 * 5lu; let s4 = r4 * 5lu;
    let h0 = u64((*st).h0 + (m.x & RK_MASK26));
    let h1 = u64((*st).h1 + (((m.x >> 26u) | (m.y << 6u)) & RK_MASK26));
    let h2 = u64((*st).h2 + (((m.y >> 20u) | (m.z << 12u)) & RK_MASK26));
    let h3 = u64((*st).h3 + (((m.z >> 14u) | (m.w << 18u)) & RK_MASK26));
    let h4 = u64((*st).h4 + ((m.w >> 8u) | (1u << 24u)));
    // Limbs below 2^27 times r (below 2^26) or 5r (below 2^29): each sum below 2^59.
    let d0 = h0 * r0 + h1 * s4 + h2 * s3 + h3 * s2 + h4 * s1;
    var d1 = h0 * r1 + h1 * r0 + h2 * s4 + h3 * s3 + h4 * s2;
    var d2 = h0 * r2 + h1 * r1 + h2 * r0 + h3 * s4 + h4 * s3;
    var d3 = h0 * r3 + h1 * r2 + h2 * r1 + h3 * r0 + h4 * s4;
    var d4 = h0 * r4 + h1 * r3 + h2 * r2 + h3 * r1 + h4 * r0;
    var c = d0 >> 26u; (*st).h0 = u32(d0 & RK_MASK26_64);
    d1 += c; c = d1 >> 26u; (*st).h1 = u32(d1 & RK_MASK26_64);
    d2 += c; c = d2 >> 26u; (*st).h2 = u32(d2 & RK_MASK26_64);
    d3 += c; c = d3 >> 26u; (*st).h3 = u32(d3 & RK_MASK26_64);
    d4 += c; c = d4 >> 26u; (*st).h4 = u32(d4 & RK_MASK26_64);
    let t = u64((*st).h0) + c * 5lu;
    (*st).h0 = u32(t & RK_MASK26_64);
    (*st).h1 += u32(t >> 26u);
}

// a * b mod 2^130 - 5 for carried operands (limbs below 2^26 + 2^6).
fn rk_fe_mul(a: RkFe, b: RkFe) -> RkFe {
    let a0 = u64(a.l0); let a1 = u64(a.l1); let a2 = u64(a.l2); let a3 = u64(a.l3); let a4 = u64(a.l4);
    let b0 = u64(b.l0); let b1 = u64(b.l1); let b2 = u64(b.l2); let b3 = u64(b.l3); let b4 = u64(b.l4);
    let s1 = b1 * 5lu; let s2 = b2 * 5lu; let s3 = b3 * 5lu; let s4 = b4 * 5lu;
    let d0 = a0 * b0 + a1 * s4 + a2 * s3 + a3 * s2 + a4 * s1;
    var d1 = a0 * b1 + a1 * b0 + a2 * s4 + a3 * s3 + a4 * s2;
    var d2 = a0 * b2 + a1 * b1 + a2 * b0 + a3 * s4 + a4 * s3;
    var d3 = a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0 + a4 * s4;
    var d4 = a0 * b4 + a1 * b3 + a2 * b2 + a3 * b1 + a4 * b0;
    var r: RkFe;
    var c = d0 >> 26u; r.l0 = u32(d0 & RK_MASK26_64);
    d1 += c; c = d1 >> 26u; r.l1 = u32(d1 & RK_MASK26_64);
    d2 += c; c = d2 >> 26u; r.l2 = u32(d2 & RK_MASK26_64);
    d3 += c; c = d3 >> 26u; r.l3 = u32(d3 & RK_MASK26_64);
    d4 += c; c = d4 >> 26u; r.l4 = u32(d4 & RK_MASK26_64);
    // c may exceed 2^32 here: c * 5 + l0 stays in 64 bits.
    let t = u64(r.l0) + c * 5lu;
    r.l0 = u32(t & RK_MASK26_64);
    r.l1 += u32(t >> 26u);
    return rk_fe_carry(r);
}
