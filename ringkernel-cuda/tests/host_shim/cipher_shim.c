/* Host shim around shaders/cuda/, for the test suite only.
 *
 * Reads one request per line on stdin, hex fields ("-" for empty), decimal numbers:
 *   S <key> <nonce> <aad> <plaintext>          -> "<ciphertext> <tag>"
 *   O <key> <nonce> <aad> <ciphertext> <tag>   -> "OK <plaintext>" or "FAIL"
 *       one thread's rk_aead_seal / rk_aead_open (the batch kernel's job)
 *   s <threads> <key> <nonce> <aad> <plaintext>         -> as S
 *   o <threads> <key> <nonce> <aad> <ciphertext> <tag>  -> as O
 *       the same message sealed or opened by an emulated block of <threads> threads
 *       with rk_split_phase (the STREAM kernels' per-chunk code)
 *   E <threads> <key> <prefix7> <aad> <plaintext> <chunk-size>
 *       -> "<body>": rk_stream_seal, one emulated block of <threads> threads per chunk
 *   D <threads> <key> <prefix7> <aad> <body> <total> <chunk-size>
 *       -> "<failures> <body>": rk_stream_open, likewise; the body as the kernel
 *          leaves it (verified chunks decrypted, the others untouched)
 *   G <total> <chunk-size> <chunks>  -> "1" or "0": rk_stream_geometry_ok
 *   R <control> <keys> <params> <ring> <routes> [<output-words>]
 *       -> "<status> <control> <output> <ring>": one round of persistent_kernel.cu
 *          run on the host (thread 0's begin and end of the round, the per-message
 *          handler and the ring clearing are the kernel's own functions; only the
 *          thread loop is serial here). The ring, the route bitmap and the output
 *          (by default two words per message the parameters ask for) have exactly
 *          the sizes given, as the kernel's arguments say.
 * and answers one line per request on stdout: "ERR" for a malformed request, "REFUSED"
 * where the kernel refuses the chunk geometry, and for the block emulations "RACE" or
 * "LEAK" (below).
 *
 * An emulated block runs rk_split_phase for every thread, phase after phase: every
 * call of a phase returns before the next phase starts, which is what __syncthreads()
 * between the phases guarantees on the device (rk_stream_run in stream_aead.cu). Each
 * request runs twice, the threads of every phase called in forward and in reverse
 * order; a result that depends on the order means that two threads of one phase touch
 * the same data, a missing barrier ("RACE"). Shared memory starts as garbage, as on a
 * GPU, and once a message is done every secret in it must be zero ("LEAK"). Buffers
 * have their exact sizes, so that the tests' AddressSanitizer build catches any read or
 * write past a length.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chacha20_poly1305.cuh"
#include "stream_aead.cu"
#include "persistent_kernel.cu"

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes `hex` into a new buffer; "-" is empty. Returns NULL on bad input. */
static unsigned char *unhex(const char *hex, size_t *len) {
    if (strcmp(hex, "-") == 0) {
        *len = 0;
        return calloc(1, 1);
    }
    size_t n = strlen(hex);
    if (n % 2) return NULL;
    unsigned char *out = calloc(n / 2 + 1, 1);
    if (!out) return NULL;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    *len = n / 2;
    return out;
}

static void puthex(const unsigned char *b, size_t n) {
    if (n == 0) {
        fputs("-", stdout);
        return;
    }
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
}

/* Words from hex bytes (little-endian, as on the GPU), zero-padded to `min_words`
 * (at least one); exactly that many, so AddressSanitizer catches any access past them. */
static rk_u32 *words_of_hex(const char *hex, size_t min_words) {
    size_t n;
    unsigned char *b = unhex(hex, &n);
    if (!b) return NULL;
    size_t w = (n + 3) / 4;
    if (w < min_words) w = min_words;
    if (w == 0) w = 1;
    rk_u32 *out = calloc(w, sizeof(rk_u32));
    if (out) memcpy(out, b, n);
    free(b);
    return out;
}

static int parse_num(const char *s, unsigned long long max, unsigned long long *out);

/* One round of rk_persistent_round on the host: the kernel's own helpers, with the
 * per-thread message loop run serially. */
static void handle_round(char **f, int nf) {
    if (nf < 6) {
        puts("ERR");
        return;
    }
    size_t ring_bytes = strcmp(f[4], "-") == 0 ? 0 : strlen(f[4]) / 2;
    size_t route_bytes = strcmp(f[5], "-") == 0 ? 0 : strlen(f[5]) / 2;
    rk_u32 ring_words = (rk_u32)(ring_bytes / 4), route_words = (rk_u32)(route_bytes / 4);
    rk_u32 *control = words_of_hex(f[1], 49), *keys = words_of_hex(f[2], 24);
    rk_u32 *params = words_of_hex(f[3], 44), *ring = words_of_hex(f[4], 0);
    rk_u32 *routes = words_of_hex(f[5], 0);
    unsigned long long output_words = 0;
    if (params) {
        rk_u32 want = params[1] < RK_MAX_BATCH ? params[1] : RK_MAX_BATCH;
        output_words = 2 * (unsigned long long)want;
    }
    if (nf > 6 && parse_num(f[6], 2 * RK_MAX_BATCH, &output_words) != 0) output_words = ~0ull;
    rk_u32 *output = output_words <= 2 * RK_MAX_BATCH
                         ? calloc(output_words ? output_words : 1, sizeof(rk_u32))
                         : NULL;
    if (!control || !keys || !params || !ring || !routes || !output) {
        puts("ERR");
    } else {
        rk_u32 status[RK_STATUS_WORDS], cb[32], processed = 0, forwarded = 0, refused = 0;
        rk_u32 offs[RK_MAX_BATCH], lens[RK_MAX_BATCH], count = 0, read_old = 0, read_new = 0;
        /* Shared memory and the status buffer start as garbage, as on a GPU. */
        memset(status, 0xa5, sizeof status);
        memset(cb, 0xa5, sizeof cb);
        rk_u32 state = rk_round_begin(control, keys, params, ring, ring_words,
                                      (rk_u32)output_words, status, cb, offs, lens, &count,
                                      &read_old, &read_new);
        if (state == 0u) {
            for (rk_u32 m = 0; m < count; m++) {
                rk_u32 out = rk_process_message(params, ring, output, routes, route_words, m,
                                                offs[m], lens[m]);
                forwarded += out == 2u;
                refused += out == 3u;
                processed++;
            }
            rk_ring_clear(params, ring, read_old, read_new, 0u, 1u);
        }
        if (state != 1u)
            rk_round_end(control, keys, params, ring, ring_words, status, cb, state, processed,
                         forwarded, refused, read_new);
        int cleared = 1;
        for (int w = 0; w < 32; w++) cleared &= cb[w] == 0u;
        if (!cleared) {
            puts("LEAK");
        } else {
            puthex((const unsigned char *)status, sizeof status);
            putchar(' ');
            puthex((const unsigned char *)control, params[0] == 1u ? 196 : 128);
            putchar(' ');
            puthex((const unsigned char *)output, 4 * (size_t)output_words);
            putchar(' ');
            puthex((const unsigned char *)ring, ring_bytes);
            putchar('\n');
        }
    }
    fflush(stdout);
    free(control);
    free(keys);
    free(params);
    free(ring);
    free(routes);
    free(output);
}

/* Parses a decimal number up to `max`; returns -1 on anything else. */
static int parse_num(const char *s, unsigned long long max, unsigned long long *out) {
    unsigned long long v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* ----- blocks of threads, emulated ---------------------------------------------------- */

/* At most as many threads as a CUDA block can have. */
#define SHIM_MAX_THREADS 1024ull
#define SHARED_GARBAGE 0xA5

/* A copy of `n` bytes in a buffer of exactly that size. */
static unsigned char *exact_copy(const unsigned char *src, size_t n) {
    unsigned char *p = malloc(n);
    if (!p && n == 0) p = malloc(1);
    if (p && n) memcpy(p, src, n);
    return p;
}

static int fe_is_zero(rk_fe f) {
    rk_u32 x = 0;
    for (int i = 0; i < 5; i++) x |= f.l[i];
    return x == 0;
}

/* Whether r, s, the powers of r and every part are zero again. */
static int secrets_cleared(const rk_split_shared *sh, rk_u32 n) {
    rk_u32 x = 0;
    for (int i = 0; i < 5; i++) x |= sh->r[i];
    for (int i = 0; i < 4; i++) x |= sh->pad[i];
    if (x != 0) return 0;
    for (rk_u32 k = 0; k < rk_split_bits(n); k++)
        if (!fe_is_zero(sh->pow[k])) return 0;
    if (!fe_is_zero(sh->step)) return 0;
    for (rk_u32 t = 0; t < n; t++)
        if (!fe_is_zero(sh->part[t])) return 0;
    return 1;
}

/* One message through every phase for `threads` threads (the kernel's loop in
 * rk_stream_run with a barrier after each phase), in forward or reverse thread order
 * within a phase. Returns 0, or -1 when a secret was left in shared memory. */
static int split_block(int sealing, const rk_split_job *j, rk_u32 threads, int reverse,
                       rk_split_shared *sh) {
    rk_u32 n = threads < RK_SPLIT_MAX_THREADS ? threads : RK_SPLIT_MAX_THREADS;
    rk_u32 phases = rk_split_phases(sealing, n);
    for (rk_u32 p = 0; p < phases; p++)
        for (rk_u32 i = 0; i < threads; i++)
            rk_split_phase(sealing, j, p, reverse ? threads - 1 - i : i, n, sh);
    return secrets_cleared(sh, n) ? 0 : -1;
}

/* The fields of a block emulation, decoded; exact-size copies are made per run. */
typedef struct {
    rk_u32 threads;
    unsigned char *key, *nonce, *aad, *data, *tag;
    size_t klen, nlen, alen, dlen, tlen;
} shim_req;

static void free_req(shim_req *r) {
    free(r->key);
    free(r->nonce);
    free(r->aad);
    free(r->data);
    free(r->tag);
}

/* Decodes threads, key, nonce or prefix (`nonce_len` bytes), aad and data from
 * f[1..5]; returns -1 when any is malformed. */
static int decode_req(char **f, size_t nonce_len, shim_req *r) {
    unsigned long long threads;
    memset(r, 0, sizeof *r);
    if (parse_num(f[1], SHIM_MAX_THREADS, &threads) != 0 || threads == 0) return -1;
    r->threads = (rk_u32)threads;
    r->key = unhex(f[2], &r->klen);
    r->nonce = unhex(f[3], &r->nlen);
    r->aad = unhex(f[4], &r->alen);
    r->data = unhex(f[5], &r->dlen);
    if (!r->key || !r->nonce || !r->aad || !r->data || r->klen != 32 || r->nlen != nonce_len)
        return -1;
    return 0;
}

/* s / o: one message sealed or opened by an emulated block. */
static void handle_split(int sealing, char **f, int nf) {
    shim_req q = {0};
    if (nf < (sealing ? 6 : 7) || decode_req(f, 12, &q) != 0) {
        puts("ERR");
        free_req(&q);
        return;
    }
    if (!sealing) q.tag = unhex(f[6], &q.tlen);
    if (!sealing && (!q.tag || q.tlen != 16)) {
        puts(q.tag ? "FAIL" : "ERR"); /* a tag that is not 16 bytes never verifies */
        free_req(&q);
        return;
    }
    unsigned char *msg[2] = {0}, *tag[2] = {0}, *key = NULL, *aad = NULL;
    rk_u32 ok[2] = {0, 0};
    int leak = 0, oom = 0;
    rk_split_shared *sh = malloc(sizeof *sh);
    key = exact_copy(q.key, 32);
    aad = exact_copy(q.aad, q.alen);
    oom = !sh || !key || !aad;
    for (int run = 0; run < 2 && !oom; run++) {
        msg[run] = exact_copy(q.data, q.dlen);
        tag[run] = sealing ? malloc(16) : exact_copy(q.tag, 16);
        if (!msg[run] || !tag[run]) {
            oom = 1;
            break;
        }
        rk_split_job j;
        j.key = key;
        memcpy(j.nonce, q.nonce, 12);
        j.aad = aad;
        j.aad_len = q.alen;
        j.msg = msg[run];
        j.len = q.dlen;
        j.tag = tag[run];
        memset(sh, SHARED_GARBAGE, sizeof *sh);
        leak |= split_block(sealing, &j, q.threads, run, sh) != 0;
        ok[run] = sealing ? 1u : sh->ok;
    }
    if (oom) {
        puts("ERR");
    } else if (memcmp(msg[0], msg[1], q.dlen) != 0 || memcmp(tag[0], tag[1], 16) != 0 ||
               ok[0] != ok[1]) {
        puts("RACE");
    } else if (leak) {
        puts("LEAK");
    } else if (sealing) {
        puthex(msg[0], q.dlen);
        putchar(' ');
        puthex(tag[0], 16);
        putchar('\n');
    } else if (ok[0] == 1u) {
        fputs("OK ", stdout);
        puthex(msg[0], q.dlen);
        putchar('\n');
    } else {
        puts("FAIL");
    }
    for (int run = 0; run < 2; run++) {
        free(msg[run]);
        free(tag[run]);
    }
    free(key);
    free(aad);
    free(sh);
    free_req(&q);
}

/* E / D: rk_stream_seal or rk_stream_open, one emulated block per chunk (as the host
 * launches them: a grid of one block per chunk). */
static void handle_stream(int sealing, char **f, int nf) {
    shim_req q = {0};
    unsigned long long total = 0, chunk = 0;
    if (nf < (sealing ? 7 : 8) || decode_req(f, 7, &q) != 0 ||
        (!sealing && parse_num(f[6], ~0ull, &total) != 0) ||
        parse_num(f[sealing ? 6 : 7], 0xffffffffull, &chunk) != 0) {
        puts("ERR");
        free_req(&q);
        return;
    }
    if (sealing) total = q.dlen;
    /* The host's chunk count (ringkernel-core backend::device::stream_chunks). */
    unsigned long long chunks = chunk == 0 ? 0 : (total + chunk - 1) / chunk;
    if (chunk != 0 && chunks == 0) chunks = 1;
    unsigned long long body_len = total + 16 * chunks;
    if (chunks > 0xffffffffull || (!sealing && q.dlen != body_len)) {
        puts("ERR");
        free_req(&q);
        return;
    }
    rk_stream_args a;
    a.aad_len = q.alen;
    a.total = total;
    a.chunk_size = (rk_u32)chunk;
    a.chunks = (rk_u32)chunks;
    if (!rk_stream_geometry_ok(&a)) {
        puts("REFUSED");
        free_req(&q);
        return;
    }
    unsigned char *body[2] = {0}, *key = exact_copy(q.key, 32), *prefix = exact_copy(q.nonce, 7);
    unsigned char *aad = exact_copy(q.aad, q.alen);
    rk_split_shared *sh = malloc(sizeof *sh);
    rk_u32 failures[2] = {0, 0};
    int leak = 0, oom = !key || !prefix || !aad || !sh;
    for (int run = 0; run < 2 && !oom; run++) {
        if (sealing) {
            /* Each chunk's plaintext in its slot, as the host's device-to-device copies
             * leave it; the tag bytes start as zeros (alloc_zeros). */
            body[run] = calloc(body_len, 1);
            if (body[run])
                for (rk_u32 i = 0; i < chunks; i++) {
                    size_t start = (size_t)i * chunk;
                    size_t n = total - start < chunk ? total - start : chunk;
                    memcpy(body[run] + (size_t)i * (chunk + 16), q.data + start, n);
                }
        } else {
            body[run] = exact_copy(q.data, body_len);
        }
        if (!body[run]) {
            oom = 1;
            break;
        }
        a.key = key;
        a.prefix = prefix;
        a.aad = aad;
        a.body = body[run];
        for (rk_u32 ch = 0; ch < a.chunks; ch++) {
            rk_split_job j = rk_stream_chunk(&a, ch);
            memset(sh, SHARED_GARBAGE, sizeof *sh);
            leak |= split_block(sealing, &j, q.threads, run, sh) != 0;
            if (!sealing && sh->ok != 1u) failures[run]++;
        }
    }
    if (oom) {
        puts("ERR");
    } else if (memcmp(body[0], body[1], body_len) != 0 || failures[0] != failures[1]) {
        puts("RACE");
    } else if (leak) {
        puts("LEAK");
    } else {
        if (!sealing) printf("%u ", failures[0]);
        puthex(body[0], body_len);
        putchar('\n');
    }
    free(body[0]);
    free(body[1]);
    free(key);
    free(prefix);
    free(aad);
    free(sh);
    free_req(&q);
}

/* G: the kernel's check of the chunk geometry. */
static void handle_geometry(char **f, int nf) {
    unsigned long long total, chunk, chunks;
    if (nf < 4 || parse_num(f[1], ~0ull, &total) != 0 ||
        parse_num(f[2], 0xffffffffull, &chunk) != 0 ||
        parse_num(f[3], 0xffffffffull, &chunks) != 0) {
        puts("ERR");
        return;
    }
    rk_stream_args a;
    memset(&a, 0, sizeof a);
    a.total = total;
    a.chunk_size = (rk_u32)chunk;
    a.chunks = (rk_u32)chunks;
    puts(rk_stream_geometry_ok(&a) ? "1" : "0");
}

/* S / O: one thread's rk_aead_seal / rk_aead_open. */
static void handle_single(char **f, int nf) {
    if (nf < 5) {
        puts("ERR");
        return;
    }
    size_t klen, nlen, alen, dlen, tlen = 0;
    unsigned char *key = unhex(f[1], &klen), *nonce = unhex(f[2], &nlen);
    unsigned char *aad = unhex(f[3], &alen), *data = unhex(f[4], &dlen);
    unsigned char *tag = nf > 5 ? unhex(f[5], &tlen) : NULL;
    if (!key || !nonce || !aad || !data || klen != 32 || nlen != 12) {
        puts("ERR");
    } else if (f[0][0] == 'S') {
        unsigned char t[16];
        rk_aead_seal(key, nonce, aad, alen, data, dlen, t);
        puthex(data, dlen);
        putchar(' ');
        puthex(t, 16);
        putchar('\n');
    } else if (tag && tlen == 16) {
        if (rk_aead_open(key, nonce, aad, alen, data, dlen, tag) == 0) {
            fputs("OK ", stdout);
            puthex(data, dlen);
            putchar('\n');
        } else {
            puts("FAIL");
        }
    } else {
        puts("FAIL"); /* a tag that is not 16 bytes never verifies */
    }
    free(key);
    free(nonce);
    free(aad);
    free(data);
    free(tag);
}

int main(void) {
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        char *f[9] = {0};
        int nf = 0;
        for (char *tok = strtok(line, " \n"); tok && nf < 9; tok = strtok(NULL, " \n")) f[nf++] = tok;
        char op = nf >= 1 ? f[0][0] : '\0';
        if (nf >= 1 && f[0][1] != '\0') op = '\0';
        switch (op) {
        case 'S':
        case 'O':
            handle_single(f, nf);
            break;
        case 's':
        case 'o':
            handle_split(op == 's', f, nf);
            break;
        case 'E':
        case 'D':
            handle_stream(op == 'E', f, nf);
            break;
        case 'G':
            handle_geometry(f, nf);
            break;
        case 'R':
            handle_round(f, nf);
            break;
        default:
            puts("ERR");
        }
        fflush(stdout);
    }
    free(line);
    return 0;
}
