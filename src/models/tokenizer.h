/* tokenizer.h - internals of mer's byte-level BPE tokenizer shared by its files: the pre-tokenizer
 * (pretok.c), the GPT-2 byte <-> character mapping, and the tokenizer object (tokenizer.c, its loaders
 * in tokenizer_load.c). The public API is the "tokenizer" section of include/mer.h. */
#ifndef MER_MODELS_TOKENIZER_H
#define MER_MODELS_TOKENIZER_H

#include "core/core.h"

#include <pthread.h>

// --- pre-tokenizer -----------------------------------------------------------------------------------

/* The split pattern of Qwen2's tokenizer.json (pre_tokenizer Split, behavior Isolated), which
 * mer__pretok_qwen2 implements by hand. */
#define MER_QWEN2_PRETOK_REGEX                                                                         \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"   \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Returns the byte length of the first piece of s[0..n) (n > 0, valid UTF-8) under the regex above,
 * with Oniguruma's semantics (the regex engine of Hugging Face tokenizers): \p{L} and \p{N} are the
 * Unicode general categories L* and N*, \s is the White_Space property, (?i) folds with Unicode simple
 * case folding (so 'ſ matches 's). Always at least one character: the alternatives cover every code
 * point. Pure function. */
size_t mer__pretok_qwen2_next(const uint8_t *s, size_t n);

// --- GPT-2 byte-level alphabet -----------------------------------------------------------------------

/* The code point that stands for byte b in byte-level BPE token text. */
uint32_t mer__bytelevel_char(uint8_t b);
/* The byte a code point stands for, or -1 if cp is not in the byte-level alphabet. */
int mer__bytelevel_byte(uint32_t cp);

// --- the tokenizer object ----------------------------------------------------------------------------

enum {
    MER__TOK_NONE = 0,    /* no token has this id */
    MER__TOK_NORMAL = 1,  /* vocabulary token produced by BPE */
    MER__TOK_ADDED = 2,   /* added token, matched in text before BPE */
    MER__TOK_SPECIAL = 3, /* added token flagged special */
};

typedef struct mer__tok_added {
    uint32_t off, len; /* content in bytes[] */
    int32_t id;
} mer__tok_added;

typedef struct mer__tok_merge {
    uint64_t key; /* (left id << 32) | right id; 0 marks an empty slot (never a valid pair: see below) */
    uint32_t rank;
    int32_t id; /* the merged token */
} mer__tok_merge;

typedef struct mer__tok_cache {
    pthread_mutex_t mu;
    uint64_t *hash; /* [mask + 1], 0 = empty */
    uint32_t *off;  /* [mask + 1] record offsets in data */
    size_t mask, n, max_n;
    int mu_ok; /* the mutex was initialised */
    mer_buf data; /* records: u32 len, bytes, pad to 4, u32 n_ids, ids */
} mer__tok_cache;

struct mer_tokenizer {
    size_t n_vocab;   /* one more than the largest id */
    uint8_t *kind;    /* [n_vocab] MER__TOK_* */
    uint32_t *off;    /* [n_vocab] offset of the token's bytes in bytes.data */
    uint32_t *len;    /* [n_vocab] its length */
    mer_buf bytes;    /* raw bytes of every token (byte-level text decoded) */
    int32_t *vmap;    /* [vmap_mask + 1] open-addressed ids of NORMAL tokens keyed by bytes, -1 = empty */
    size_t vmap_mask;
    mer__tok_merge *merges; /* [merge_mask + 1] open-addressed */
    size_t merge_mask, n_merges;
    int32_t byte_id[256]; /* id of each single-byte token, -1 if absent */
    mer__tok_added *added; /* sorted by first byte, then longer first */
    size_t n_added;
    uint32_t added_first[256]; /* index+1 of the first added token starting with this byte, 0 = none */
    int nfc;
    mer__tok_cache cache;
};

/* Builder used by the loaders. mer__tok_new allocates a tokenizer for ids [0, n_vocab) with no token. */
mer_status mer__tok_new(size_t n_vocab, int nfc, mer_tokenizer **out, mer_err *err);
/* Sets token id from its byte-level text (NORMAL) or its raw content (ADDED/SPECIAL). Returns MER_E_FORMAT
 * (message without a file name: the caller prefixes it) for a character outside the byte-level
 * alphabet, MER_E_RANGE for an id out of range. */
mer_status mer__tok_set(mer_tokenizer *t, int64_t id, const char *text, size_t len, int kind, mer_err *err);
/* Call after every token is set and before merges: builds the vocabulary hash. */
mer_status mer__tok_index(mer_tokenizer *t, mer_err *err);
/* Sizes the merge table for n merges up front (optional; n is a count the caller has seen, not a claim
 * from a header). */
mer_status mer__tok_reserve_merges(mer_tokenizer *t, size_t n, mer_err *err);
/* Adds merge number `rank` of byte-level texts a and b; MER_E_FORMAT if a, b or a+b is not a token. */
mer_status mer__tok_add_merge(mer_tokenizer *t, uint32_t rank, const char *a, size_t alen, const char *b,
                              size_t blen, mer_err *err);
/* Completes the tokenizer (added-token matcher, cache). */
mer_status mer__tok_finish(mer_tokenizer *t, mer_err *err);

// --- GGUF (tokenizer_gguf.c) ------------------------------------------------------------------------

struct mer_weights;
/* The tokenizer in the metadata of an open GGUF (tokenizer.ggml.* keys, pre-tokenizer "qwen2"), for a
 * model loader that has the file open already. Same contract as mer_tokenizer_load. */
mer_status mer__tokenizer_from_weights(const struct mer_weights *w, const mer_tokenizer_params *params,
                                       mer_tokenizer **out, mer_err *err);
/* mer_tokenizer_load over memory (tokenizer.json text or GGUF bytes; data must outlive the call only).
 * `name` stands for the file in messages. For fuzzing and tests. */
mer_status mer__tokenizer_load_mem(const void *data, size_t size, const char *name, const mer_tokenizer_params *params,
                                   mer_tokenizer **out, mer_err *err);
/* Opens the GGUF at path and reads its tokenizer. */
mer_status mer__tokenizer_load_gguf(const char *path, const mer_tokenizer_params *params, mer_tokenizer **out,
                                    mer_err *err);

#endif /* MER_MODELS_TOKENIZER_H */

// --- generated ids ---------------------------------------------------------------------------------

/* A model's output vocabulary can be larger than its tokenizer's (Qwen2.5-7B: 152,064 logits, 151,665
 * ids with a token). Hugging Face decodes an id without a token to nothing; the generation paths do the
 * same through this: copies the ids of ids[n] that lie inside [0, n_vocab of t) to out (may be ids) and
 * returns how many. */
size_t mer__tok_ids_with_text(const mer_tokenizer *t, const int32_t *ids, size_t n, int32_t *out);
