/* fuzz_tokenizer.c - libFuzzer target for the tokenizer. The first input byte picks the mode:
 *  odd:  the rest is a tokenizer.json (or GGUF) for mer__tokenizer_load_mem; a success must encode and
 *        decode a fixed text, a failure must name the file;
 *  even: the rest is text for a small byte-level BPE tokenizer built from arrays (every byte, a few
 *        merges, added tokens), without NFC: valid UTF-8 must round-trip exactly through encode and
 *        decode (whole and streamed), invalid UTF-8 must fail with MER_E_ARG; the bytes read as ids
 *        must decode (or fail with MER_E_RANGE) without harm. */
#include "models/tokenizer.h"

#include <string.h>

static mer_tokenizer *small_tokenizer(void) {
    static char bytes[256][8];
    const char *toks[256 + 8];
    int32_t types[256 + 8];
    size_t n = 0;
    for (int b = 0; b < 256; b++) {
        int l = mer__utf8_encode(mer__bytelevel_char((uint8_t)b), bytes[b]);
        bytes[b][l] = 0;
        toks[n] = bytes[b];
        types[n++] = 1;
    }
    /* merged tokens (byte-level text: 'Ġ' is the space) */
    static const char *const extra[] = {"ab", "abc", "Ġa", "Ġab", "ĠĠ", "ä¸", "ä¸Ń"};
    for (size_t i = 0; i < MER_ARRAY_LEN(extra); i++) toks[n] = extra[i], types[n++] = 1;
    toks[n] = "<|x|>", types[n++] = 3;
    static const char *const merges[] = {"a b", "ab c", "Ġ a", "Ġa b", "Ġ Ġ", "ä ¸", "ä¸ Ń"};
    mer_tokenizer_arrays a = {.tokens = toks, .n_tokens = n, .merges = merges, .n_merges = MER_ARRAY_LEN(merges),
                              .token_types = types, .nfc = 0};
    mer_tokenizer *t = NULL;
    mer_err err;
    MER_ASSERT(mer_tokenizer_from_arrays(&a, NULL, &t, &err) == MER_OK);
    return t;
}

static void roundtrip(const mer_tokenizer *t, const uint8_t *data, size_t size) {
    int32_t *ids = NULL;
    size_t n = 0;
    mer_err err;
    int valid = mer__utf8_check(data, size) == size;
    mer_status st = mer_tokenizer_encode(t, (const char *)data, size, &ids, &n, &err);
    MER_ASSERT(valid ? st == MER_OK : st == MER_E_ARG);
    if (st) return;
    char *text = NULL;
    size_t len = 0;
    MER_ASSERT(mer_tokenizer_decode(t, ids, n, 0, &text, &len, &err) == MER_OK);
    MER_ASSERT(len == size && !memcmp(text, data, size));
    free(text);
    mer_tokenizer_stream *s = NULL;
    MER_ASSERT(mer_tokenizer_stream_init(t, 0, &s, &err) == MER_OK);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t pl;
        MER_ASSERT(mer_tokenizer_stream_push(s, ids[i], &p, &pl, &err) == MER_OK);
        MER_ASSERT(off + pl <= size && !memcmp(p, data + off, pl));
        off += pl;
    }
    const char *p;
    size_t pl;
    mer_tokenizer_stream_flush(s, &p, &pl);
    MER_ASSERT(pl == 0 && off == size);
    mer_tokenizer_stream_free(s);
    free(ids);
}

static void decode_bytes_as_ids(const mer_tokenizer *t, const uint8_t *data, size_t size) {
    size_t n = size / 2;
    int32_t *ids = malloc(n * sizeof *ids + 1);
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(data[2 * i] | (data[2 * i + 1] << 8)) % 300 - 10;
    char *text = NULL;
    mer_err err;
    mer_status st = mer_tokenizer_decode(t, ids, n, data[0] & 1, &text, NULL, &err);
    MER_ASSERT(st == MER_OK || st == MER_E_RANGE);
    if (!st) MER_ASSERT(mer__utf8_check((const uint8_t *)text, strlen(text)) == strlen(text));
    free(text);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static mer_tokenizer *small;
    if (!small) small = small_tokenizer();
    if (size == 0) return 0;
    if (data[0] & 1) {
        mer_tokenizer *t = NULL;
        mer_err err;
        if (mer__tokenizer_load_mem(data + 1, size - 1, "fuzz.json", NULL, &t, &err) == MER_OK) {
            static const char text[] = "Hello, world! It's 2024: caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 <|im_end|>\n\n  x";
            int32_t *ids = NULL;
            size_t n = 0;
            mer_status st = mer_tokenizer_encode(t, text, sizeof text - 1, &ids, &n, &err);
            MER_ASSERT(st == MER_OK || st == MER_E_UNSUPPORTED); /* a vocabulary may lack a byte */
            char *out = NULL;
            if (!st) MER_ASSERT(mer_tokenizer_decode(t, ids, n, 0, &out, NULL, &err) == MER_OK);
            free(out);
            free(ids);
            mer_tokenizer_free(t);
        } else {
            MER_ASSERT(err.msg[0] && strstr(err.msg, "fuzz.json"));
        }
        return 0;
    }
    roundtrip(small, data + 1, size - 1);
    decode_bytes_as_ids(small, data, size);
    return 0;
}
