// Chunked STREAM sealing and opening of whole device buffers with ChaCha20-Poly1305,
// in the envelope layout of ringkernel-core (security/encryption/envelope.rs): the body
// is a sequence of slots `chunk ciphertext || 16-byte tag`, chunk i uses the nonce
// `prefix (7 bytes) || i (u32 big-endian) || last (1 byte)`, and every chunk
// authenticates the same associated data (the envelope header). One thread per chunk.
#include "chacha20_poly1305.cuh"

// Where chunk `i` lives and how it is sealed: fills `nonce` (prefix || i big-endian ||
// last flag), returns its slot in `body` (slots of chunk_size + 16 bytes: chunk, then
// tag) and sets `len` to its plaintext length.
RK_DEVICE rk_u8 *rk_stream_chunk(const rk_u8 prefix[7], rk_u8 *body, rk_u64 total,
                                 rk_u32 chunk_size, rk_u32 chunks, rk_u32 i, rk_u8 nonce[12],
                                 rk_u64 *len) {
    for (int k = 0; k < 7; k++) nonce[k] = prefix[k];
    nonce[7] = (rk_u8)(i >> 24);
    nonce[8] = (rk_u8)(i >> 16);
    nonce[9] = (rk_u8)(i >> 8);
    nonce[10] = (rk_u8)i;
    nonce[11] = (rk_u8)(i + 1 == chunks ? 1 : 0);
    rk_u64 start = (rk_u64)i * chunk_size;
    *len = total - start < chunk_size ? total - start : chunk_size;
    return body + (rk_u64)i * (chunk_size + 16);
}

// Seals chunk `i` of a `total`-byte plaintext laid out in `body`: the plaintext of its
// slot is sealed in place and the tag written after it.
RK_DEVICE void rk_stream_seal_chunk(const rk_u8 key[32], const rk_u8 prefix[7], const rk_u8 *aad,
                                    rk_u64 aad_len, rk_u8 *body, rk_u64 total,
                                    rk_u32 chunk_size, rk_u32 chunks, rk_u32 i) {
    rk_u8 nonce[12];
    rk_u64 len;
    rk_u8 *slot = rk_stream_chunk(prefix, body, total, chunk_size, chunks, i, nonce, &len);
    rk_aead_seal(key, nonce, aad, aad_len, slot, len, slot + len);
}

// Opens chunk `i` in place; returns 0, or -1 when its tag does not verify.
RK_DEVICE int rk_stream_open_chunk(const rk_u8 key[32], const rk_u8 prefix[7], const rk_u8 *aad,
                                   rk_u64 aad_len, rk_u8 *body, rk_u64 total,
                                   rk_u32 chunk_size, rk_u32 chunks, rk_u32 i) {
    rk_u8 nonce[12];
    rk_u64 len;
    rk_u8 *slot = rk_stream_chunk(prefix, body, total, chunk_size, chunks, i, nonce, &len);
    return rk_aead_open(key, nonce, aad, aad_len, slot, len, slot + len);
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
extern "C" __global__ void rk_stream_seal(const rk_u8 *key, const rk_u8 *prefix, const rk_u8 *aad,
                                          rk_u64 aad_len, rk_u8 *body, rk_u64 total,
                                          rk_u32 chunk_size, rk_u32 chunks) {
    rk_u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < chunks) rk_stream_seal_chunk(key, prefix, aad, aad_len, body, total, chunk_size, chunks, i);
}

// `failures` counts chunks whose tag did not verify (the host refuses the buffer when
// it is not zero).
extern "C" __global__ void rk_stream_open(const rk_u8 *key, const rk_u8 *prefix, const rk_u8 *aad,
                                          rk_u64 aad_len, rk_u8 *body, rk_u64 total,
                                          rk_u32 chunk_size, rk_u32 chunks, rk_u32 *failures) {
    rk_u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < chunks && rk_stream_open_chunk(key, prefix, aad, aad_len, body, total, chunk_size, chunks, i) != 0) {
        atomicAdd(failures, 1u);
    }
}
#endif
