/* Host shim around shaders/cuda/chacha20_poly1305.cuh, for the test suite only.
 *
 * Reads one request per line on stdin, hex fields ("-" for empty):
 *   S <key> <nonce> <aad> <plaintext>          -> "<ciphertext> <tag>"
 *   O <key> <nonce> <aad> <ciphertext> <tag>   -> "OK <plaintext>" or "FAIL"
 *   C <key> <prefix7> <aad> <plaintext> <chunk-size-hex4>
 *       -> "<body>": the STREAM body of stream_aead.cu, every chunk sealed as one
 *          GPU thread would, then opened again (prints "FAIL" if any chunk fails)
 *   R <control> <keys> <params> <ring> <routes>
 *       -> "<status> <control> <output> <ring>": one round of persistent_kernel.cu
 *          run on the host (thread 0's open, ring walk, update and re-seal, the
 *          per-message handler and the ring clearing are the kernel's own functions;
 *          only the thread loop is serial here)
 * and answers one line per request on stdout.
 */
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

/* Words from hex bytes (little-endian, as on the GPU), zero-padded to `min_words`. */
static rk_u32 *words_of_hex(const char *hex, size_t min_words) {
    size_t n;
    unsigned char *b = unhex(hex, &n);
    if (!b) return NULL;
    size_t w = (n + 3) / 4;
    if (w < min_words) w = min_words;
    rk_u32 *out = calloc(w + 1, sizeof(rk_u32));
    if (out) memcpy(out, b, n);
    free(b);
    return out;
}

/* One round of rk_persistent_round on the host: the kernel's own helpers, with the
 * per-thread message loop run serially. */
static void handle_round(char **f, int nf) {
    if (nf < 6) {
        puts("ERR");
        return;
    }
    size_t ring_bytes = strcmp(f[4], "-") == 0 ? 0 : strlen(f[4]) / 2;
    rk_u32 ring_words = (rk_u32)(ring_bytes / 4);
    rk_u32 *control = words_of_hex(f[1], 49), *keys = words_of_hex(f[2], 24);
    rk_u32 *params = words_of_hex(f[3], 28), *ring = words_of_hex(f[4], 1);
    rk_u32 *routes = words_of_hex(f[5], 1);
    rk_u32 *output = params ? calloc(2 * (size_t)params[1] + 2, sizeof(rk_u32)) : NULL;
    if (!control || !keys || !params || !ring || !routes || !output) {
        puts("ERR");
    } else {
        rk_u32 status[8] = {0}, cb[32], processed = 0, forwarded = 0, refused = 0;
        rk_u32 offs[RK_MAX_BATCH], lens[RK_MAX_BATCH], count = 0, read_old = 0, read_new = 0;
        rk_u32 result = 0;
        if (params[0] == 1u) {
            result = rk_open_control(control, keys, params, cb);
        } else {
            memcpy(cb, control, sizeof cb);
        }
        if (ring_words >= 2) read_old = read_new = ring[1];
        if (result == 0u && cb[1] != 1u)
            result = rk_ring_walk(params, ring, ring_words, offs, lens, &count, &read_new);
        status[0] = result;
        rk_u32 state = result != 0u ? 1u : (cb[1] == 1u ? 2u : 0u);
        if (state == 0u) {
            for (rk_u32 m = 0; m < count; m++) {
                rk_u32 out =
                    rk_process_message(params, ring, output, routes, m, offs[m], lens[m]);
                forwarded += out == 2u;
                refused += out == 3u;
                processed++;
            }
            rk_ring_clear(params, ring, read_old, read_new, 0u, 1u);
        }
        if (state != 1u) {
            rk_update_counters(cb, params, processed, forwarded, state == 2u);
            if (params[0] == 1u) {
                rk_seal_control(control, keys, params, cb);
            } else {
                memcpy(control, cb, sizeof cb);
            }
            status[1] = processed;
            status[2] = forwarded;
            status[3] = refused;
            status[4] = state == 2u;
            status[5] = 1u;
            ring[1] = read_new;
            status[6] = read_new;
        }
        puthex((const unsigned char *)status, sizeof status);
        putchar(' ');
        puthex((const unsigned char *)control, params[0] == 1u ? 196 : 128);
        putchar(' ');
        puthex((const unsigned char *)output, 8 * (size_t)params[1]);
        putchar(' ');
        puthex((const unsigned char *)ring, ring_bytes);
        putchar('\n');
    }
    fflush(stdout);
    free(control);
    free(keys);
    free(params);
    free(ring);
    free(routes);
    free(output);
}

int main(void) {
    static char line[1 << 20];
    while (fgets(line, sizeof line, stdin)) {
        char *fields[6] = {0};
        int nf = 0;
        for (char *tok = strtok(line, " \n"); tok && nf < 6; tok = strtok(NULL, " \n")) fields[nf++] = tok;
        if (nf >= 1 && fields[0][0] == 'R') {
            handle_round(fields, nf);
            continue;
        }
        if (nf < 5) {
            puts("ERR");
            continue;
        }
        size_t klen, nlen, alen, dlen, tlen = 0;
        unsigned char *key = unhex(fields[1], &klen), *nonce = unhex(fields[2], &nlen);
        unsigned char *aad = unhex(fields[3], &alen), *data = unhex(fields[4], &dlen);
        unsigned char *tag = nf > 5 ? unhex(fields[5], &tlen) : NULL;
        if (!key || !nonce || !aad || !data || klen != 32 || (nlen != 12 && !(fields[0][0] == 'C' && nlen == 7))) {
            puts("ERR");
        } else if (fields[0][0] == 'S') {
            unsigned char t[16];
            rk_aead_seal(key, nonce, aad, alen, data, dlen, t);
            puthex(data, dlen);
            putchar(' ');
            puthex(t, 16);
            putchar('\n');
        } else if (fields[0][0] == 'C' && tag && tlen == 4 && nlen == 7) {
            rk_u32 chunk = (rk_u32)tag[0] << 24 | (rk_u32)tag[1] << 16 | (rk_u32)tag[2] << 8 | tag[3];
            rk_u32 chunks = chunk ? (rk_u32)((dlen + chunk - 1) / chunk) : 0;
            if (chunks == 0) chunks = 1;
            size_t body_len = dlen + 16 * (size_t)chunks;
            unsigned char *body = calloc(body_len + 1, 1);
            for (rk_u32 i = 0; i < chunks; i++) {
                size_t start = (size_t)i * chunk, n = dlen - start < chunk ? dlen - start : chunk;
                memcpy(body + (size_t)i * (chunk + 16), data + start, n);
            }
            for (rk_u32 i = 0; i < chunks; i++)
                rk_stream_seal_chunk(key, nonce, aad, alen, body, dlen, chunk, chunks, i);
            unsigned char *copy = malloc(body_len + 1);
            memcpy(copy, body, body_len);
            int bad = 0;
            for (rk_u32 i = 0; i < chunks; i++)
                bad |= rk_stream_open_chunk(key, nonce, aad, alen, copy, dlen, chunk, chunks, i);
            if (bad) {
                puts("FAIL");
            } else {
                puthex(body, body_len);
                putchar('\n');
            }
            free(body);
            free(copy);
        } else if (fields[0][0] == 'O' && tag && tlen == 16) {
            if (rk_aead_open(key, nonce, aad, alen, data, dlen, tag) == 0) {
                fputs("OK ", stdout);
                puthex(data, dlen);
                putchar('\n');
            } else {
                puts("FAIL");
            }
        } else if (fields[0][0] == 'O') {
            puts("FAIL"); /* a tag that is not 16 bytes never verifies */
        } else {
            puts("ERR");
        }
        fflush(stdout);
        free(key);
        free(nonce);
        free(aad);
        free(data);
        free(tag);
    }
    return 0;
}
