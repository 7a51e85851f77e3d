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

// ----- Poly1305 split across the threads of a block --------------------------------------
//
// Over n blocks (each c_k = the 16-byte block + 2^128), Poly1305's accumulator before
// the final "+ s" is h = sum_k c_k r^(n-k) for k = 0..n-1. That sum splits any way the
// blocks are shared out: a thread that takes every T-th block k_0 < k_1 < ... < k_last
// computes G = sum_j c_(k_j) (r^T)^(last-j) by Horner in r^T, and contributes
// G * r^(n - k_last). The contributions are added, and the caller goes on with the
// usual Poly1305 from that h (the AEAD's length block, then the final reduction).

// A field element mod 2^130 - 5 in five 26-bit limbs (limb 1 may hold a few more bits,
// as rk_poly1305_block leaves it).
typedef struct {
    rk_u32 l[5];
} rk_fe;

RK_DEVICE rk_fe rk_fe_zero(void) {
    rk_fe z;
    for (int i = 0; i < 5; i++) z.l[i] = 0;
    return z;
}

RK_DEVICE rk_fe rk_fe_one(void) {
    rk_fe o = rk_fe_zero();
    o.l[0] = 1;
    return o;
}

// Carries every limb below 2^26 (limb 1 may keep one more bit); `a` may have limbs up
// to 2^31.
RK_DEVICE rk_fe rk_fe_carry(rk_fe a) {
    rk_u32 c;
    c = a.l[0] >> 26; a.l[0] &= 0x3ffffffu;
    a.l[1] += c; c = a.l[1] >> 26; a.l[1] &= 0x3ffffffu;
    a.l[2] += c; c = a.l[2] >> 26; a.l[2] &= 0x3ffffffu;
    a.l[3] += c; c = a.l[3] >> 26; a.l[3] &= 0x3ffffffu;
    a.l[4] += c; c = a.l[4] >> 26; a.l[4] &= 0x3ffffffu;
    a.l[0] += c * 5; c = a.l[0] >> 26; a.l[0] &= 0x3ffffffu;
    a.l[1] += c;
    return a;
}

RK_DEVICE rk_fe rk_fe_add(rk_fe a, rk_fe b) {
    for (int i = 0; i < 5; i++) a.l[i] += b.l[i];
    return rk_fe_carry(a);
}

// a * b mod 2^130 - 5 for operands with limbs below 2^27 (carried ones are). Products
// stay below 2^57 and their sums below 2^60; unlike rk_poly1305_block (whose r is
// clamped) the top carry can exceed 32 bits, so it is kept in 64.
RK_DEVICE rk_fe rk_fe_mul(rk_fe a, rk_fe b) {
    const rk_u64 a0 = a.l[0], a1 = a.l[1], a2 = a.l[2], a3 = a.l[3], a4 = a.l[4];
    const rk_u64 b0 = b.l[0], b1 = b.l[1], b2 = b.l[2], b3 = b.l[3], b4 = b.l[4];
    const rk_u64 s1 = b1 * 5, s2 = b2 * 5, s3 = b3 * 5, s4 = b4 * 5;
    rk_u64 d0 = a0 * b0 + a1 * s4 + a2 * s3 + a3 * s2 + a4 * s1;
    rk_u64 d1 = a0 * b1 + a1 * b0 + a2 * s4 + a3 * s3 + a4 * s2;
    rk_u64 d2 = a0 * b2 + a1 * b1 + a2 * b0 + a3 * s4 + a4 * s3;
    rk_u64 d3 = a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0 + a4 * s4;
    rk_u64 d4 = a0 * b4 + a1 * b3 + a2 * b2 + a3 * b1 + a4 * b0;
    rk_fe r;
    rk_u64 c;
    c = d0 >> 26; r.l[0] = (rk_u32)d0 & 0x3ffffffu;
    d1 += c; c = d1 >> 26; r.l[1] = (rk_u32)d1 & 0x3ffffffu;
    d2 += c; c = d2 >> 26; r.l[2] = (rk_u32)d2 & 0x3ffffffu;
    d3 += c; c = d3 >> 26; r.l[3] = (rk_u32)d3 & 0x3ffffffu;
    d4 += c; c = d4 >> 26; r.l[4] = (rk_u32)d4 & 0x3ffffffu;
    c = c * 5 + r.l[0];
    r.l[0] = (rk_u32)c & 0x3ffffffu;
    r.l[1] += (rk_u32)(c >> 26);
    return rk_fe_carry(r);
}

// The Poly1305 value of one full 16-byte block: its little-endian number + 2^128.
RK_DEVICE rk_fe rk_fe_block(const rk_u8 m[16]) {
    rk_fe f;
    f.l[0] = rk_load32_le(m + 0) & 0x3ffffffu;
    f.l[1] = (rk_load32_le(m + 3) >> 2) & 0x3ffffffu;
    f.l[2] = (rk_load32_le(m + 6) >> 4) & 0x3ffffffu;
    f.l[3] = (rk_load32_le(m + 9) >> 6) & 0x3ffffffu;
    f.l[4] = (rk_load32_le(m + 12) >> 8) | (1u << 24);
    return f;
}

// r^e from pow[k] = r^(2^k), k < bits, for 0 <= e < 2^bits (r^0 = 1).
RK_DEVICE rk_fe rk_fe_pow_from(const rk_fe *pow, rk_u32 bits, rk_u64 e) {
    rk_fe acc = rk_fe_one();
    int first = 1;
    for (rk_u32 k = 0; k < bits; k++) {
        if ((e >> k) & 1u) {
            acc = first ? pow[k] : rk_fe_mul(acc, pow[k]);
            first = 0;
        }
    }
    return acc;
}

// ----- one message sealed or opened by a block of threads --------------------------------
//
// The work between two barriers is one call of rk_split_phase, the same call for every
// thread of the block; a kernel loops over the phases with __syncthreads() after each
// (stream_aead.cu). The host test shim runs the same calls for every thread of an
// emulated block, phase after phase.

// Threads of a block that take part (a block may have more; they only wait at barriers).
#define RK_SPLIT_MAX_THREADS 256u
// Entries of the r^(2^k) table: 2^9 > RK_SPLIT_MAX_THREADS.
#define RK_SPLIT_POW_BITS 9u

// One message: `len` bytes at `msg` (sealed or opened in place) under `key` and
// `nonce`, authenticating `aad_len` bytes at `aad`; the tag is written to (sealing) or
// read from (opening) the 16 bytes at `tag`.
typedef struct {
    const rk_u8 *key;
    rk_u8 nonce[12];
    const rk_u8 *aad;
    rk_u64 aad_len;
    rk_u8 *msg;
    rk_u64 len;
    rk_u8 *tag;
} rk_split_job;

// A block's shared memory for the message it works on. Thread 0 clears every secret in
// it (r, s, the powers of r, the sum) once the tag is computed.
typedef struct {
    rk_u32 r[5];
    rk_u32 pad[4];
    rk_fe pow[RK_SPLIT_POW_BITS];  // r^(2^k), k < rk_split_bits(n)
    rk_fe step;                    // r^n
    rk_fe part[RK_SPLIT_MAX_THREADS];
    rk_u32 ok;                     // opening: 1 when the tag verified
} rk_split_shared;

// Bits of the r^(2^k) table for a block of n threads: 2^bits > n.
RK_DEVICE rk_u32 rk_split_bits(rk_u32 n) {
    rk_u32 bits = 0;
    while (bits < RK_SPLIT_POW_BITS && (n >> bits) != 0u) bits++;
    return bits;
}

// Barrier-separated steps of the tree reduction over n contributions.
RK_DEVICE rk_u32 rk_split_reduce_steps(rk_u32 n) {
    rk_u32 steps = 0;
    while (steps < 31u && (1u << steps) < n) steps++;
    return steps;
}

// Phases of a message for a block of n threads (1 <= n <= RK_SPLIT_MAX_THREADS):
//   0           thread 0: r, s and the powers of r; sealing: every thread also runs
//               the keystream over its 64-byte blocks (t, t+n, ...);
//   1           every thread: its Poly1305 contribution (16-byte blocks t, t+n, ...);
//   2 .. 1+R    the tree reduction, R = rk_split_reduce_steps(n);
//   2+R         thread 0: the tag (sealing: written; opening: compared, into `ok`);
//   3+R         opening only: if `ok`, every thread decrypts its 64-byte blocks.
RK_DEVICE rk_u32 rk_split_phases(int sealing, rk_u32 n) {
    return (sealing ? 3u : 4u) + rk_split_reduce_steps(n);
}

// XORs the message's 64-byte blocks tid, tid+n, ... with the keystream (counter
// 1 + block).
RK_DEVICE void rk_split_keystream(const rk_split_job *j, rk_u32 tid, rk_u32 n) {
    rk_u8 ks[64];
    for (rk_u64 b = tid; 64u * b < j->len; b += n) {
        rk_chacha20_block(j->key, (rk_u32)(1u + b), j->nonce, ks);
        rk_u64 off = 64u * b;
        rk_u64 m = j->len - off < 64u ? j->len - off : 64u;
        for (rk_u64 i = 0; i < m; i++) j->msg[off + i] ^= ks[i];
    }
    for (int i = 0; i < 64; i++) ks[i] = 0;
}

// Thread 0, phase 0: the one-time Poly1305 key (r clamped, s) and the powers r^(2^k)
// and r^n the other phases use.
RK_DEVICE void rk_split_setup(const rk_split_job *j, rk_u32 n, rk_split_shared *sh) {
    rk_u8 block0[64];
    rk_poly1305 st;
    rk_chacha20_block(j->key, 0u, j->nonce, block0);
    rk_poly1305_init(&st, block0);
    for (int i = 0; i < 64; i++) block0[i] = 0;
    rk_fe r;
    for (int i = 0; i < 5; i++) {
        sh->r[i] = st.r[i];
        r.l[i] = st.r[i];
        st.r[i] = 0;
    }
    for (int i = 0; i < 4; i++) {
        sh->pad[i] = st.pad[i];
        st.pad[i] = 0;
    }
    rk_u32 bits = rk_split_bits(n);
    for (rk_u32 k = 0; k < bits; k++) {
        sh->pow[k] = r;
        if (k + 1u < bits) r = rk_fe_mul(r, r);
    }
    r = rk_fe_zero();
    sh->step = rk_fe_pow_from(sh->pow, bits, n);
}

// Block `k` of aad || pad16 || message || pad16 (`blocks_aad` blocks of AAD first),
// zero-padded: never reads past either length.
RK_DEVICE void rk_split_poly_input(const rk_split_job *j, rk_u64 blocks_aad, rk_u64 k,
                                   rk_u8 m[16]) {
    const rk_u8 *src;
    rk_u64 avail;
    if (k < blocks_aad) {
        src = j->aad + 16u * k;
        avail = j->aad_len - 16u * k;
    } else {
        src = j->msg + 16u * (k - blocks_aad);
        avail = j->len - 16u * (k - blocks_aad);
    }
    for (rk_u64 i = 0; i < 16u; i++) m[i] = i < avail ? src[i] : 0;
}

// Phase 1: thread `tid`'s contribution G * r^(blocks - k_last) over the blocks tid,
// tid + n, ... of the Poly1305 input (the message as ciphertext), into part[tid]
// (zero when it has no block).
RK_DEVICE void rk_split_contribution(const rk_split_job *j, rk_u32 tid, rk_u32 n,
                                     rk_split_shared *sh) {
    const rk_u64 blocks_aad = (j->aad_len + 15u) / 16u;
    const rk_u64 blocks = blocks_aad + (j->len + 15u) / 16u;
    rk_fe g = rk_fe_zero();
    if ((rk_u64)tid < blocks) {
        const rk_fe step = sh->step;
        rk_u8 m[16];
        rk_u64 k = tid;
        for (;;) {
            rk_split_poly_input(j, blocks_aad, k, m);
            g = rk_fe_add(rk_fe_mul(g, step), rk_fe_block(m));
            if (blocks - k <= n) break;
            k += n;
        }
        // 1 <= blocks - k <= n < 2^bits.
        g = rk_fe_mul(g, rk_fe_pow_from(sh->pow, rk_split_bits(n), blocks - k));
    }
    sh->part[tid] = g;
}

// Reduction step `s` (0-based): thread t < stride adds part[t + stride] (stride =
// 2^(R-1-s)) and clears the entry it consumed.
RK_DEVICE void rk_split_reduce(rk_u32 s, rk_u32 tid, rk_u32 n, rk_split_shared *sh) {
    rk_u32 stride = 1u << (rk_split_reduce_steps(n) - 1u - s);
    if (tid < stride && tid + stride < n) {
        sh->part[tid] = rk_fe_add(sh->part[tid], sh->part[tid + stride]);
        sh->part[tid + stride] = rk_fe_zero();
    }
}

// Thread 0: the tag from the reduced sum, the AEAD's length block and s; then clears
// every secret of the message in shared memory.
RK_DEVICE void rk_split_tag(const rk_split_job *j, rk_u32 n, rk_split_shared *sh,
                            rk_u8 tag[16]) {
    rk_poly1305 st;
    for (int i = 0; i < 5; i++) {
        st.r[i] = sh->r[i];
        st.h[i] = sh->part[0].l[i];
    }
    for (int i = 0; i < 4; i++) st.pad[i] = sh->pad[i];
    st.used = 0;
    rk_u8 lens[16];
    for (int i = 0; i < 8; i++) {
        lens[i] = (rk_u8)(j->aad_len >> (8 * i));
        lens[8 + i] = (rk_u8)(j->len >> (8 * i));
    }
    rk_poly1305_block(&st, lens, 1u << 24);
    rk_poly1305_finish(&st, tag);
    for (int i = 0; i < 5; i++) sh->r[i] = 0;
    for (int i = 0; i < 4; i++) sh->pad[i] = 0;
    for (rk_u32 k = 0; k < rk_split_bits(n); k++) sh->pow[k] = rk_fe_zero();
    sh->step = rk_fe_zero();
    sh->part[0] = rk_fe_zero();
}

// Thread `tid`'s share of phase `phase` (below rk_split_phases(sealing, n)) for a
// block of n threads, 1 <= n <= RK_SPLIT_MAX_THREADS; threads from n on do nothing.
// Sealing encrypts the message in place and writes the tag; opening leaves the message
// as it was unless the tag verifies (sh->ok == 1 after phase 2+R), then decrypts it.
RK_DEVICE void rk_split_phase(int sealing, const rk_split_job *j, rk_u32 phase, rk_u32 tid,
                              rk_u32 n, rk_split_shared *sh) {
    if (tid >= n) return;
    const rk_u32 steps = rk_split_reduce_steps(n);
    if (phase == 0u) {
        if (tid == 0u) rk_split_setup(j, n, sh);
        if (sealing) rk_split_keystream(j, tid, n);
    } else if (phase == 1u) {
        rk_split_contribution(j, tid, n, sh);
    } else if (phase < 2u + steps) {
        rk_split_reduce(phase - 2u, tid, n, sh);
    } else if (phase == 2u + steps) {
        if (tid != 0u) return;
        if (sealing) {
            rk_split_tag(j, n, sh, j->tag);
        } else {
            rk_u8 expected[16];
            rk_split_tag(j, n, sh, expected);
            rk_u32 diff = 0;
            for (int i = 0; i < 16; i++) diff |= (rk_u32)(expected[i] ^ j->tag[i]);
            sh->ok = diff == 0u ? 1u : 0u;
        }
    } else if (!sealing && phase == 3u + steps) {
        if (sh->ok == 1u) rk_split_keystream(j, tid, n);
    }
}

#endif // RINGKERNEL_CHACHA20_POLY1305_CUH
