// ChaCha20-Poly1305 (RFC 8439) for RingKernel's CUDA kernels.
//
// Plain integer C: the same source is compiled by NVRTC as device code (where
// RK_DEVICE is __device__) and by a host C compiler in the test suite, which checks
// it against the RFC 8439 vectors, every Project Wycheproof ChaCha20-Poly1305 vector
// and RustCrypto on random inputs. No libc, no <stdint.h> (NVRTC has neither by
// default), no data-dependent branches or table lookups on secret data.
//
// Poly1305 uses 26-bit limbs with 32x32->64-bit products ("donna-32"), which every
// CUDA device has natively.
#ifndef RINGKERNEL_CHACHA20_POLY1305_CUH
#define RINGKERNEL_CHACHA20_POLY1305_CUH

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define RK_DEVICE __device__ __forceinline__
#else
#define RK_DEVICE static inline
#endif

typedef unsigned char rk_u8;
typedef unsigned int rk_u32;
typedef unsigned long long rk_u64;

RK_DEVICE rk_u32 rk_load32_le(const rk_u8 *p) {
    return (rk_u32)p[0] | ((rk_u32)p[1] << 8) | ((rk_u32)p[2] << 16) | ((rk_u32)p[3] << 24);
}

RK_DEVICE void rk_store32_le(rk_u8 *p, rk_u32 v) {
    p[0] = (rk_u8)v;
    p[1] = (rk_u8)(v >> 8);
    p[2] = (rk_u8)(v >> 16);
    p[3] = (rk_u8)(v >> 24);
}

RK_DEVICE rk_u32 rk_rotl32(rk_u32 v, int n) {
    return (v << n) | (v >> (32 - n));
}

#define RK_QR(a, b, c, d)                                   \
    do {                                                   \
        a += b; d ^= a; d = rk_rotl32(d, 16);              \
        c += d; b ^= c; b = rk_rotl32(b, 12);              \
        a += b; d ^= a; d = rk_rotl32(d, 8);               \
        c += d; b ^= c; b = rk_rotl32(b, 7);               \
    } while (0)

// One 64-byte ChaCha20 block for (key, counter, nonce), RFC 8439 §2.3.
RK_DEVICE void rk_chacha20_block(const rk_u8 key[32], rk_u32 counter, const rk_u8 nonce[12],
                                 rk_u8 out[64]) {
    rk_u32 s[16], x[16];
    s[0] = 0x61707865u;
    s[1] = 0x3320646eu;
    s[2] = 0x79622d32u;
    s[3] = 0x6b206574u;
    for (int i = 0; i < 8; i++) s[4 + i] = rk_load32_le(key + 4 * i);
    s[12] = counter;
    for (int i = 0; i < 3; i++) s[13 + i] = rk_load32_le(nonce + 4 * i);
    for (int i = 0; i < 16; i++) x[i] = s[i];
    for (int i = 0; i < 10; i++) {
        RK_QR(x[0], x[4], x[8], x[12]);
        RK_QR(x[1], x[5], x[9], x[13]);
        RK_QR(x[2], x[6], x[10], x[14]);
        RK_QR(x[3], x[7], x[11], x[15]);
        RK_QR(x[0], x[5], x[10], x[15]);
        RK_QR(x[1], x[6], x[11], x[12]);
        RK_QR(x[2], x[7], x[8], x[13]);
        RK_QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++) rk_store32_le(out + 4 * i, x[i] + s[i]);
}

// XORs `len` bytes of `buf` with the keystream starting at block `counter`.
RK_DEVICE void rk_chacha20_xor(const rk_u8 key[32], const rk_u8 nonce[12], rk_u32 counter,
                               rk_u8 *buf, rk_u64 len) {
    rk_u8 block[64];
    for (rk_u64 off = 0; off < len; off += 64, counter++) {
        rk_chacha20_block(key, counter, nonce, block);
        rk_u64 n = len - off < 64 ? len - off : 64;
        for (rk_u64 i = 0; i < n; i++) buf[off + i] ^= block[i];
    }
    for (int i = 0; i < 64; i++) block[i] = 0;
}

typedef struct {
    rk_u32 r[5];
    rk_u32 h[5];
    rk_u32 pad[4];
    rk_u8 buf[16];
    rk_u32 used;
} rk_poly1305;

RK_DEVICE void rk_poly1305_init(rk_poly1305 *st, const rk_u8 key[32]) {
    st->r[0] = rk_load32_le(key + 0) & 0x3ffffffu;
    st->r[1] = (rk_load32_le(key + 3) >> 2) & 0x3ffff03u;
    st->r[2] = (rk_load32_le(key + 6) >> 4) & 0x3ffc0ffu;
    st->r[3] = (rk_load32_le(key + 9) >> 6) & 0x3f03fffu;
    st->r[4] = (rk_load32_le(key + 12) >> 8) & 0x00fffffu;
    for (int i = 0; i < 5; i++) st->h[i] = 0;
    for (int i = 0; i < 4; i++) st->pad[i] = rk_load32_le(key + 16 + 4 * i);
    st->used = 0;
}

// Absorbs one 16-byte block; `hibit` is 1<<24 for full blocks, 0 for the final
// padded partial block.
RK_DEVICE void rk_poly1305_block(rk_poly1305 *st, const rk_u8 m[16], rk_u32 hibit) {
    const rk_u32 r0 = st->r[0], r1 = st->r[1], r2 = st->r[2], r3 = st->r[3], r4 = st->r[4];
    const rk_u32 s1 = r1 * 5, s2 = r2 * 5, s3 = r3 * 5, s4 = r4 * 5;
    rk_u32 h0 = st->h[0], h1 = st->h[1], h2 = st->h[2], h3 = st->h[3], h4 = st->h[4];
    h0 += rk_load32_le(m + 0) & 0x3ffffffu;
    h1 += (rk_load32_le(m + 3) >> 2) & 0x3ffffffu;
    h2 += (rk_load32_le(m + 6) >> 4) & 0x3ffffffu;
    h3 += (rk_load32_le(m + 9) >> 6) & 0x3ffffffu;
    h4 += (rk_load32_le(m + 12) >> 8) | hibit;
    rk_u64 d0 = (rk_u64)h0 * r0 + (rk_u64)h1 * s4 + (rk_u64)h2 * s3 + (rk_u64)h3 * s2 + (rk_u64)h4 * s1;
    rk_u64 d1 = (rk_u64)h0 * r1 + (rk_u64)h1 * r0 + (rk_u64)h2 * s4 + (rk_u64)h3 * s3 + (rk_u64)h4 * s2;
    rk_u64 d2 = (rk_u64)h0 * r2 + (rk_u64)h1 * r1 + (rk_u64)h2 * r0 + (rk_u64)h3 * s4 + (rk_u64)h4 * s3;
    rk_u64 d3 = (rk_u64)h0 * r3 + (rk_u64)h1 * r2 + (rk_u64)h2 * r1 + (rk_u64)h3 * r0 + (rk_u64)h4 * s4;
    rk_u64 d4 = (rk_u64)h0 * r4 + (rk_u64)h1 * r3 + (rk_u64)h2 * r2 + (rk_u64)h3 * r1 + (rk_u64)h4 * r0;
    rk_u32 c;
    c = (rk_u32)(d0 >> 26); h0 = (rk_u32)d0 & 0x3ffffffu;
    d1 += c; c = (rk_u32)(d1 >> 26); h1 = (rk_u32)d1 & 0x3ffffffu;
    d2 += c; c = (rk_u32)(d2 >> 26); h2 = (rk_u32)d2 & 0x3ffffffu;
    d3 += c; c = (rk_u32)(d3 >> 26); h3 = (rk_u32)d3 & 0x3ffffffu;
    d4 += c; c = (rk_u32)(d4 >> 26); h4 = (rk_u32)d4 & 0x3ffffffu;
    h0 += c * 5; c = h0 >> 26; h0 &= 0x3ffffffu;
    h1 += c;
    st->h[0] = h0; st->h[1] = h1; st->h[2] = h2; st->h[3] = h3; st->h[4] = h4;
}

RK_DEVICE void rk_poly1305_update(rk_poly1305 *st, const rk_u8 *m, rk_u64 len) {
    for (rk_u64 i = 0; i < len; i++) {
        st->buf[st->used++] = m[i];
        if (st->used == 16) {
            rk_poly1305_block(st, st->buf, 1u << 24);
            st->used = 0;
        }
    }
}

RK_DEVICE void rk_poly1305_finish(rk_poly1305 *st, rk_u8 tag[16]) {
    if (st->used) {
        st->buf[st->used] = 1;
        for (rk_u32 i = st->used + 1; i < 16; i++) st->buf[i] = 0;
        rk_poly1305_block(st, st->buf, 0);
    }
    rk_u32 h0 = st->h[0], h1 = st->h[1], h2 = st->h[2], h3 = st->h[3], h4 = st->h[4], c;
    c = h1 >> 26; h1 &= 0x3ffffffu;
    h2 += c; c = h2 >> 26; h2 &= 0x3ffffffu;
    h3 += c; c = h3 >> 26; h3 &= 0x3ffffffu;
    h4 += c; c = h4 >> 26; h4 &= 0x3ffffffu;
    h0 += c * 5; c = h0 >> 26; h0 &= 0x3ffffffu;
    h1 += c;
    // g = h + 5 - 2^130; keep h if g is negative (h < p), else g.
    rk_u32 g0 = h0 + 5; c = g0 >> 26; g0 &= 0x3ffffffu;
    rk_u32 g1 = h1 + c; c = g1 >> 26; g1 &= 0x3ffffffu;
    rk_u32 g2 = h2 + c; c = g2 >> 26; g2 &= 0x3ffffffu;
    rk_u32 g3 = h3 + c; c = g3 >> 26; g3 &= 0x3ffffffu;
    rk_u32 g4 = h4 + c - (1u << 26);
    rk_u32 mask = (g4 >> 31) - 1; // all ones when g4 did not go negative
    g0 &= mask; g1 &= mask; g2 &= mask; g3 &= mask; g4 &= mask;
    mask = ~mask;
    h0 = (h0 & mask) | g0;
    h1 = (h1 & mask) | g1;
    h2 = (h2 & mask) | g2;
    h3 = (h3 & mask) | g3;
    h4 = (h4 & mask) | g4;
    // h mod 2^128, then + pad mod 2^128.
    rk_u32 t0 = h0 | (h1 << 26);
    rk_u32 t1 = (h1 >> 6) | (h2 << 20);
    rk_u32 t2 = (h2 >> 12) | (h3 << 14);
    rk_u32 t3 = (h3 >> 18) | (h4 << 8);
    rk_u64 f = (rk_u64)t0 + st->pad[0];
    rk_store32_le(tag + 0, (rk_u32)f);
    f = (rk_u64)t1 + st->pad[1] + (f >> 32);
    rk_store32_le(tag + 4, (rk_u32)f);
    f = (rk_u64)t2 + st->pad[2] + (f >> 32);
    rk_store32_le(tag + 8, (rk_u32)f);
    f = (rk_u64)t3 + st->pad[3] + (f >> 32);
    rk_store32_le(tag + 12, (rk_u32)f);
    for (int i = 0; i < 5; i++) { st->r[i] = 0; st->h[i] = 0; }
    for (int i = 0; i < 4; i++) st->pad[i] = 0;
}

// The AEAD tag over aad || pad16 || ciphertext || pad16 || le64(aad_len) || le64(ct_len).
RK_DEVICE void rk_aead_tag(const rk_u8 key[32], const rk_u8 nonce[12], const rk_u8 *aad,
                           rk_u64 aad_len, const rk_u8 *ct, rk_u64 ct_len, rk_u8 tag[16]) {
    rk_u8 block0[64];
    rk_chacha20_block(key, 0, nonce, block0);
    rk_poly1305 st;
    rk_poly1305_init(&st, block0);
    for (int i = 0; i < 64; i++) block0[i] = 0;
    const rk_u8 zeros[16] = {0};
    rk_poly1305_update(&st, aad, aad_len);
    rk_poly1305_update(&st, zeros, (16 - aad_len % 16) % 16);
    rk_poly1305_update(&st, ct, ct_len);
    rk_poly1305_update(&st, zeros, (16 - ct_len % 16) % 16);
    rk_u8 lens[16];
    for (int i = 0; i < 8; i++) {
        lens[i] = (rk_u8)(aad_len >> (8 * i));
        lens[8 + i] = (rk_u8)(ct_len >> (8 * i));
    }
    rk_poly1305_update(&st, lens, 16);
    rk_poly1305_finish(&st, tag);
}

// Encrypts `buf` in place and writes the tag.
RK_DEVICE void rk_aead_seal(const rk_u8 key[32], const rk_u8 nonce[12], const rk_u8 *aad,
                            rk_u64 aad_len, rk_u8 *buf, rk_u64 len, rk_u8 tag[16]) {
    rk_chacha20_xor(key, nonce, 1, buf, len);
    rk_aead_tag(key, nonce, aad, aad_len, buf, len, tag);
}

// Verifies the tag (in constant time), then decrypts `buf` in place. Returns 0 on
// success; -1 on a bad tag, leaving `buf` untouched (still ciphertext).
RK_DEVICE int rk_aead_open(const rk_u8 key[32], const rk_u8 nonce[12], const rk_u8 *aad,
                           rk_u64 aad_len, rk_u8 *buf, rk_u64 len, const rk_u8 tag[16]) {
    rk_u8 expected[16];
    rk_aead_tag(key, nonce, aad, aad_len, buf, len, expected);
    rk_u32 diff = 0;
    for (int i = 0; i < 16; i++) diff |= (rk_u32)(expected[i] ^ tag[i]);
    if (diff != 0) return -1;
    rk_chacha20_xor(key, nonce, 1, buf, len);
    return 0;
}

#endif // RINGKERNEL_CHACHA20_POLY1305_CUH
