// Single-shot ChaCha20-Poly1305 seal/open of many independent records, one record per
// invocation. Appended to chacha20_poly1305.wgsl by the host.
//
// `jobs` holds 12 words per record:
//   0 op (1 seal, 2 open)     1 key offset (words into `data`)
//   2..4 nonce (3 LE words)   5 aad offset (words)     6 aad length (bytes)
//   7 message offset (words)  8 message length (bytes) 9 tag offset (words)
// Regions start on word boundaries and are zero-padded to a whole word. The message is
// sealed or opened in place; seal writes the tag at the tag offset, open verifies the
// tag stored there first and leaves the ciphertext untouched when it does not verify.
// `results[i]` is 0 on success, 1 for a tag mismatch, 2 for an unknown op.

@group(0) @binding(0) var<storage, read> jobs: array<u32>;
@group(0) @binding(1) var<storage, read_write> data: array<u32>;
@group(0) @binding(2) var<storage, read_write> results: array<u32>;

struct RkJobCount {
    count: u32,
}
// Storage, not uniform: see stream_aead.wgsl's params.
@group(0) @binding(3) var<storage, read> job_count: RkJobCount;

fn rk_job_key(off: u32) -> RkKey {
    return RkKey(
        vec4<u32>(data[off], data[off + 1u], data[off + 2u], data[off + 3u]),
        vec4<u32>(data[off + 4u], data[off + 5u], data[off + 6u], data[off + 7u]),
    );
}

// Poly1305 over a zero-padded region of `len` bytes at word `off`.
fn rk_job_absorb(st: ptr<function, RkPoly>, off: u32, len: u32) {
    let words = (len + 3u) / 4u;
    for (var w = 0u; w < words; w += 4u) {
        var m = vec4<u32>(0u);
        for (var k = 0u; k < 4u; k++) {
            if (w + k < words) {
                m[k] = data[off + w + k] & rk_byte_mask(i32(len) - i32(4u * (w + k)));
            }
        }
        rk_poly_block(st, m);
    }
}

fn rk_job_tag(key: RkKey, nonce: vec3<u32>, aad_off: u32, aad_len: u32, msg_off: u32, msg_len: u32) -> vec4<u32> {
    var st = rk_poly_init(rk_chacha20_block(key, 0u, nonce));
    rk_job_absorb(&st, aad_off, aad_len);
    rk_job_absorb(&st, msg_off, msg_len);
    rk_poly_lengths(&st, aad_len, msg_len);
    return rk_poly_finish(&st);
}

// XORs the message with the keystream from block 1, keeping the padding zero.
fn rk_job_xor(key: RkKey, nonce: vec3<u32>, off: u32, len: u32) {
    let words = (len + 3u) / 4u;
    for (var w = 0u; w < words; w += 16u) {
        let blk = rk_chacha20_block(key, 1u + w / 16u, nonce);
        for (var k = 0u; k < 16u && w + k < words; k++) {
            let mask = rk_byte_mask(i32(len) - i32(4u * (w + k)));
            data[off + w + k] = (data[off + w + k] ^ rk_block_word(blk, k)) & mask;
        }
    }
}

@compute @workgroup_size(64)
fn aead_batch(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= job_count.count) {
        return;
    }
    let j = i * 12u;
    let op = jobs[j];
    let key = rk_job_key(jobs[j + 1u]);
    let nonce = vec3<u32>(jobs[j + 2u], jobs[j + 3u], jobs[j + 4u]);
    let aad_off = jobs[j + 5u];
    let aad_len = jobs[j + 6u];
    let msg_off = jobs[j + 7u];
    let msg_len = jobs[j + 8u];
    let tag_off = jobs[j + 9u];
    if (op == 1u) {
        rk_job_xor(key, nonce, msg_off, msg_len);
        let tag = rk_job_tag(key, nonce, aad_off, aad_len, msg_off, msg_len);
        data[tag_off] = tag.x;
        data[tag_off + 1u] = tag.y;
        data[tag_off + 2u] = tag.z;
        data[tag_off + 3u] = tag.w;
        results[i] = 0u;
    } else if (op == 2u) {
        let expected = rk_job_tag(key, nonce, aad_off, aad_len, msg_off, msg_len);
        let stored = vec4<u32>(data[tag_off], data[tag_off + 1u], data[tag_off + 2u], data[tag_off + 3u]);
        if (rk_tag_diff(expected, stored) == 0u) {
            rk_job_xor(key, nonce, msg_off, msg_len);
            results[i] = 0u;
        } else {
            results[i] = 1u;
        }
    } else {
        results[i] = 2u;
    }
}
