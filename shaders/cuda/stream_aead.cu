// Chunked STREAM sealing and opening of whole device buffers with ChaCha20-Poly1305,
// in the envelope layout of ringkernel-core (security/encryption/envelope.rs): the body
// is a sequence of slots `chunk ciphertext || 16-byte tag`, chunk i uses the nonce
// `prefix (7 bytes) || i (u32 big-endian) || last (1 byte)`, and every chunk
// authenticates the same associated data (the envelope header).
//
// One chunk per block (blocks stride over the chunks when the grid is smaller), sealed
// or opened by all the block's threads together (rk_split_phase in
// chacha20_poly1305.cuh): thread t runs the keystream over the chunk's 64-byte blocks
// t, t+n, ... and Poly1305 over the 16-byte blocks t, t+n, ... of the header and the
// ciphertext; a tree reduction in shared memory adds the threads' parts, and thread 0
// finishes the tag. Opening verifies a chunk's tag before any of its plaintext is
// written; a chunk that fails is left as it was (ciphertext).
#include "chacha20_poly1305.cuh"

// What the host passes: the key, the 7-byte nonce prefix, the associated data, and the
// body of `chunks` slots holding `total` plaintext bytes in chunks of `chunk_size`.
typedef struct {
    const rk_u8 *key;
    const rk_u8 *prefix;
    const rk_u8 *aad;
    rk_u64 aad_len;
    rk_u8 *body;
    rk_u64 total;
    rk_u32 chunk_size;
    rk_u32 chunks;
} rk_stream_args;

// Whether `chunks` is the host's chunk count for `total` bytes (at least one chunk, the
// last one empty only when the buffer is): then every slot, tag included, lies inside
// the body of total + 16 * chunks bytes.
RK_DEVICE int rk_stream_geometry_ok(const rk_stream_args *a) {
    if (a->chunk_size == 0u || a->chunks == 0u) return 0;
    rk_u64 need = a->total == 0u ? 1u : (a->total - 1u) / a->chunk_size + 1u;
    return need == (rk_u64)a->chunks;
}

// Chunk `i` (below `chunks`, with rk_stream_geometry_ok) as a message: its slot in the
// body (slots of chunk_size + 16 bytes: chunk, then tag), its length and its nonce
// (prefix || i big-endian || last flag).
RK_DEVICE rk_split_job rk_stream_chunk(const rk_stream_args *a, rk_u32 i) {
    rk_split_job j;
    j.key = a->key;
    for (int k = 0; k < 7; k++) j.nonce[k] = a->prefix[k];
    j.nonce[7] = (rk_u8)(i >> 24);
    j.nonce[8] = (rk_u8)(i >> 16);
    j.nonce[9] = (rk_u8)(i >> 8);
    j.nonce[10] = (rk_u8)i;
    j.nonce[11] = (rk_u8)(i + 1u == a->chunks ? 1 : 0);
    j.aad = a->aad;
    j.aad_len = a->aad_len;
    rk_u64 start = (rk_u64)i * a->chunk_size;
    j.len = a->total - start < a->chunk_size ? a->total - start : a->chunk_size;
    j.msg = a->body + (rk_u64)i * ((rk_u64)a->chunk_size + 16u);
    j.tag = j.msg + j.len;
    return j;
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
// Runs chunk after chunk through the phases, with a barrier after each. `failures`
// counts chunks whose tag did not verify (opening) and a geometry the kernel refuses
// (both); the host accepts the result only when it is zero.
__device__ void rk_stream_run(int sealing, const rk_stream_args *a, rk_u32 *failures) {
    __shared__ rk_split_shared sh;
    // The same answer for every thread of the grid: no thread skips a barrier alone.
    if (!rk_stream_geometry_ok(a)) {
        if (blockIdx.x == 0u && threadIdx.x == 0u) atomicAdd(failures, 1u);
        return;
    }
    const rk_u32 n = blockDim.x < RK_SPLIT_MAX_THREADS ? blockDim.x : RK_SPLIT_MAX_THREADS;
    const rk_u32 phases = rk_split_phases(sealing, n);
    for (rk_u32 ch = blockIdx.x; ch < a->chunks; ch += gridDim.x) {
        const rk_split_job j = rk_stream_chunk(a, ch);
        for (rk_u32 p = 0; p < phases; p++) {
            rk_split_phase(sealing, &j, p, threadIdx.x, n, &sh);
            __syncthreads();
        }
        // Thread 0 wrote `ok` in the tag phase and writes it next in the next chunk's.
        if (!sealing && threadIdx.x == 0u && sh.ok != 1u) atomicAdd(failures, 1u);
    }
}

extern "C" __global__ void rk_stream_seal(const rk_u8 *key, const rk_u8 *prefix, const rk_u8 *aad,
                                          rk_u64 aad_len, rk_u8 *body, rk_u64 total,
                                          rk_u32 chunk_size, rk_u32 chunks, rk_u32 *failures) {
    const rk_stream_args a = {key, prefix, aad, aad_len, body, total, chunk_size, chunks};
    rk_stream_run(1, &a, failures);
}

extern "C" __global__ void rk_stream_open(const rk_u8 *key, const rk_u8 *prefix, const rk_u8 *aad,
                                          rk_u64 aad_len, rk_u8 *body, rk_u64 total,
                                          rk_u32 chunk_size, rk_u32 chunks, rk_u32 *failures) {
    const rk_stream_args a = {key, prefix, aad, aad_len, body, total, chunk_size, chunks};
    rk_stream_run(0, &a, failures);
}
#endif
