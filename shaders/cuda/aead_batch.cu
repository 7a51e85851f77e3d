// Single-shot ChaCha20-Poly1305 seal/open of many independent records, one record per
// thread: the same job layout as shaders/wgsl/aead_batch.wgsl.
//
// `jobs` holds 12 words per record: 0 op (1 seal, 2 open), 1 key offset (words into
// `data`), 2..4 nonce (12 bytes), 5 aad offset (words), 6 aad length (bytes),
// 7 message offset (words), 8 message length (bytes), 9 tag offset (words). The message
// is sealed or opened in place; open verifies the tag first and leaves the ciphertext
// untouched when it does not verify. `results[i]`: 0 success, 1 tag mismatch, 2 bad op.
#include "chacha20_poly1305.cuh"

RK_DEVICE rk_u32 rk_aead_job(const rk_u32 *job, rk_u32 *data) {
    rk_u8 *d = (rk_u8 *)data;
    const rk_u8 *key = d + 4ull * job[1];
    const rk_u8 *nonce = (const rk_u8 *)(job + 2);
    const rk_u8 *aad = d + 4ull * job[5];
    rk_u8 *msg = d + 4ull * job[7];
    rk_u8 *tag = d + 4ull * job[9];
    if (job[0] == 1u) {
        rk_aead_seal(key, nonce, aad, job[6], msg, job[8], tag);
        return 0u;
    }
    if (job[0] == 2u) {
        return rk_aead_open(key, nonce, aad, job[6], msg, job[8], tag) == 0 ? 0u : 1u;
    }
    return 2u;
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
extern "C" __global__ void rk_aead_batch(const rk_u32 *jobs, rk_u32 *data, rk_u32 *results,
                                         rk_u32 count) {
    rk_u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) results[i] = rk_aead_job(jobs + 12u * i, data);
}
#endif
