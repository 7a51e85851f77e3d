/* Host shim around shaders/cuda/chacha20_poly1305.cuh, for the test suite only.
 *
 * Reads one request per line on stdin, hex fields ("-" for empty):
 *   S <key> <nonce> <aad> <plaintext>          -> "<ciphertext> <tag>"
 *   O <key> <nonce> <aad> <ciphertext> <tag>   -> "OK <plaintext>" or "FAIL"
 *   C <key> <prefix7> <aad> <plaintext> <chunk-size-hex4>
 *       -> "<body>": the STREAM body of stream_aead.cu, every chunk sealed as one
 *          GPU thread would, then opened again (prints "FAIL" if any chunk fails)
 * and answers one line per request on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chacha20_poly1305.cuh"
#include "stream_aead.cu"

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

int main(void) {
    static char line[1 << 20];
    while (fgets(line, sizeof line, stdin)) {
        char *fields[6] = {0};
        int nf = 0;
        for (char *tok = strtok(line, " \n"); tok && nf < 6; tok = strtok(NULL, " \n")) fields[nf++] = tok;
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
