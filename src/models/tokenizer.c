/* tokenizer.c - mer's byte-level BPE tokenizer: the token tables, encoding and decoding.
 *
 * Encoding follows Hugging Face tokenizers for Qwen2: added tokens are found first (leftmost, longest
 * at a position, on the raw text); each stretch between them is NFC-normalised when the tokenizer asks
 * for it, cut into pieces by the pre-tokenizer (pretok.c), and each piece's bytes are merged by BPE:
 * repeatedly the adjacent pair with the lowest merge rank, the leftmost among equals (a binary heap over
 * a linked list of symbols). Merge ranks live in an open-addressed hash keyed by the id pair; the
 * result of each piece goes to a bounded cache shared by callers under a mutex. Decoding concatenates
 * the tokens' bytes and turns invalid UTF-8 into U+FFFD (one per maximal invalid subpart, as Rust's
 * String::from_utf8_lossy and JavaScript's TextDecoder do); the streaming decoder holds back the bytes
 * of a character that the next token will complete. Loading is in tokenizer_load.c. */
#include "models/tokenizer.h"

#include <string.h>
#include <utf8proc.h>

#define CACHE_MAX_PIECE 128 /* longest piece (bytes) the cache keeps */
#define CACHE_MAX_ENTRIES 65536

// --- hashing -----------------------------------------------------------------------------------------

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    h ^= h >> 31;
    h *= 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    return h ? h : 1;
}

/* Pairs are keyed (left + 1) << 32 | (right + 1) so that 0 never is a key. */
static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1); }

static uint64_t hash_key(uint64_t k) {
    k *= 0x9E3779B97F4A7C15ull;
    return k ^ (k >> 29);
}

static size_t pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p *= 2;
    return p;
}

// --- building ----------------------------------------------------------------------------------------

mer_status mer__tok_new(size_t n_vocab, int nfc, mer_tokenizer **out, mer_err *err) {
    *out = NULL;
    if (n_vocab == 0 || n_vocab > INT32_MAX) return mer__errf(err, MER_E_RANGE, "vocabulary size %zu out of range", n_vocab);
    mer_tokenizer *t = calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->n_vocab = n_vocab;
    t->nfc = nfc;
    t->kind = calloc(n_vocab, 1);
    t->off = calloc(n_vocab, sizeof *t->off);
    t->len = calloc(n_vocab, sizeof *t->len);
    if (!t->kind || !t->off || !t->len) goto nomem;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    *out = t;
    return MER_OK;
nomem:
    mer_tokenizer_free(t);
    return mer__errf(err, MER_E_NOMEM, "out of memory for a vocabulary of %zu tokens", n_vocab);
}

mer_status mer__tok_set(mer_tokenizer *t, int64_t id, const char *text, size_t len, int kind, mer_err *err) {
    if (id < 0 || (uint64_t)id >= t->n_vocab)
        return mer__errf(err, MER_E_RANGE, "token id %lld outside [0, %zu)", (long long)id, t->n_vocab);
    if (mer__utf8_check((const uint8_t *)text, len) != len)
        return mer__errf(err, MER_E_FORMAT, "token %lld is not valid UTF-8", (long long)id);
    if (kind == MER__TOK_NORMAL && t->kind[id] != MER__TOK_NONE)
        return mer__errf(err, MER_E_FORMAT, "token id %lld given twice", (long long)id);
    size_t off = t->bytes.len;
    if (off > UINT32_MAX - len) return mer__errf(err, MER_E_RANGE, "token text over 4 GiB in all");
    if (kind == MER__TOK_NORMAL) {
        /* byte-level text: every character stands for one byte */
        if (mer__buf_reserve(&t->bytes, len)) return mer__errf(err, MER_E_NOMEM, "out of memory");
        size_t i = 0;
        while (i < len) {
            uint32_t cp;
            i += (size_t)mer__utf8_decode((const uint8_t *)text + i, len - i, &cp);
            int b = mer__bytelevel_byte(cp);
            if (b < 0) {
                t->bytes.len = off;
                return mer__errf(err, MER_E_FORMAT, "token %lld: U+%04X is not a byte-level BPE character",
                                 (long long)id, (unsigned)cp);
            }
            t->bytes.data[t->bytes.len++] = (char)b;
        }
        t->bytes.data[t->bytes.len] = 0;
    } else if (mer__buf_append(&t->bytes, text, len)) {
        return mer__errf(err, MER_E_NOMEM, "out of memory");
    }
    t->kind[id] = (uint8_t)kind;
    t->off[id] = (uint32_t)off;
    t->len[id] = (uint32_t)(t->bytes.len - off);
    return MER_OK;
}

static int32_t vocab_find(const mer_tokenizer *t, const uint8_t *p, size_t n) {
    if (!t->vmap) return -1;
    for (size_t h = hash_bytes(p, n) & t->vmap_mask;; h = (h + 1) & t->vmap_mask) {
        int32_t id = t->vmap[h];
        if (id < 0) return -1;
        if (t->len[id] == n && !memcmp(t->bytes.data + t->off[id], p, n)) return id;
    }
}

mer_status mer__tok_index(mer_tokenizer *t, mer_err *err) {
    size_t n_normal = 0;
    for (size_t i = 0; i < t->n_vocab; i++) n_normal += t->kind[i] == MER__TOK_NORMAL;
    t->vmap_mask = pow2_at_least(2 * n_normal + 1) - 1;
    t->vmap = malloc((t->vmap_mask + 1) * sizeof *t->vmap);
    if (!t->vmap) return mer__errf(err, MER_E_NOMEM, "out of memory");
    memset(t->vmap, 0xff, (t->vmap_mask + 1) * sizeof *t->vmap);
    for (size_t i = 0; i < t->n_vocab; i++) {
        if (t->kind[i] != MER__TOK_NORMAL) continue;
        const uint8_t *p = (const uint8_t *)t->bytes.data + t->off[i];
        if (vocab_find(t, p, t->len[i]) >= 0) continue; /* the same bytes twice: the first id wins */
        size_t h = hash_bytes(p, t->len[i]) & t->vmap_mask;
        while (t->vmap[h] >= 0) h = (h + 1) & t->vmap_mask;
        t->vmap[h] = (int32_t)i;
    }
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        t->byte_id[b] = vocab_find(t, &c, 1);
    }
    return MER_OK;
}

static const mer__tok_merge *merge_find(const mer_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = pair_key(a, b);
    for (size_t h = hash_key(key) & t->merge_mask;; h = (h + 1) & t->merge_mask) {
        const mer__tok_merge *m = &t->merges[h];
        if (m->key == key) return m;
        if (m->key == 0) return NULL;
    }
}

static mer_status merges_grow(mer_tokenizer *t, size_t want) {
    size_t cap = t->merges ? (t->merge_mask + 1) * 2 : 1u << 10;
    while (cap < 2 * want) cap *= 2;
    mer__tok_merge *m = calloc(cap, sizeof *m);
    if (!m) return MER_E_NOMEM;
    for (size_t i = 0; t->merges && i <= t->merge_mask; i++) {
        if (!t->merges[i].key) continue;
        size_t h = hash_key(t->merges[i].key) & (cap - 1);
        while (m[h].key) h = (h + 1) & (cap - 1);
        m[h] = t->merges[i];
    }
    free(t->merges);
    t->merges = m;
    t->merge_mask = cap - 1;
    return MER_OK;
}

/* Byte-level text to raw bytes in out (room for len bytes); returns the byte count or -1. */
static long bytelevel_to_bytes(const char *s, size_t len, uint8_t *out) {
    if (mer__utf8_check((const uint8_t *)s, len) != len) return -1;
    size_t i = 0, n = 0;
    while (i < len) {
        uint32_t cp;
        i += (size_t)mer__utf8_decode((const uint8_t *)s + i, len - i, &cp);
        int b = mer__bytelevel_byte(cp);
        if (b < 0) return -1;
        out[n++] = (uint8_t)b;
    }
    return (long)n;
}

mer_status mer__tok_reserve_merges(mer_tokenizer *t, size_t n, mer_err *err) {
    if (n > SIZE_MAX / 4 / sizeof(mer__tok_merge)) return mer__errf(err, MER_E_RANGE, "%zu merges: too many", n);
    if (t->merges || !n) return MER_OK;
    return merges_grow(t, n) ? mer__errf(err, MER_E_NOMEM, "out of memory for %zu merges", n) : MER_OK;
}

mer_status mer__tok_add_merge(mer_tokenizer *t, uint32_t rank, const char *a, size_t alen, const char *b,
                              size_t blen, mer_err *err) {
    mer_status st = MER_OK;
    size_t cat;
    if (mer__add_ovf(alen, blen, &cat)) return mer__errf(err, MER_E_RANGE, "merge %u too long", rank);
    uint8_t stackbuf[256], *buf = cat <= sizeof stackbuf ? stackbuf : malloc(cat);
    if (!buf) return mer__errf(err, MER_E_NOMEM, "out of memory");
    long na = bytelevel_to_bytes(a, alen, buf), nb = na < 0 ? -1 : bytelevel_to_bytes(b, blen, buf + na);
    if (na <= 0 || nb <= 0) {
        st = mer__errf(err, MER_E_FORMAT, "merge %u (\"%.*s %.*s\") is not two byte-level BPE tokens", rank,
                       (int)(alen > 64 ? 64 : alen), a, (int)(blen > 64 ? 64 : blen), b);
        goto done;
    }
    int32_t ia = vocab_find(t, buf, (size_t)na), ib = vocab_find(t, buf + na, (size_t)nb);
    int32_t ic = vocab_find(t, buf, (size_t)(na + nb));
    if (ia < 0 || ib < 0 || ic < 0) {
        const char *what = ia < 0 ? a : ib < 0 ? b : "the merged token";
        size_t wl = ia < 0 ? alen : ib < 0 ? blen : strlen(what);
        st = mer__errf(err, MER_E_FORMAT, "merge %u: \"%.*s\" is not in the vocabulary", rank,
                       (int)(wl > 64 ? 64 : wl), what);
        goto done;
    }
    if ((t->n_merges + 1) * 2 > (t->merges ? t->merge_mask + 1 : 0) && merges_grow(t, t->n_merges + 1)) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto done;
    }
    uint64_t key = pair_key(ia, ib);
    size_t h = hash_key(key) & t->merge_mask;
    while (t->merges[h].key && t->merges[h].key != key) h = (h + 1) & t->merge_mask;
    if (!t->merges[h].key) t->n_merges++;
    /* a pair listed twice keeps its later rank, as Hugging Face's hash map (and transformers.js) do */
    t->merges[h] = (mer__tok_merge){key, rank, ic};
done:
    if (buf != stackbuf) free(buf);
    return st;
}

static int added_cmp(const void *pa, const void *pb, void *ud) {
    const mer__tok_added *a = pa, *b = pb;
    const uint8_t *bytes = ud;
    uint8_t fa = bytes[a->off], fb = bytes[b->off];
    if (fa != fb) return fa < fb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

mer_status mer__tok_finish(mer_tokenizer *t, mer_err *err) {
    size_t n = 0;
    for (size_t i = 0; i < t->n_vocab; i++) n += (t->kind[i] == MER__TOK_ADDED || t->kind[i] == MER__TOK_SPECIAL) && t->len[i];
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return mer__errf(err, MER_E_NOMEM, "out of memory");
    for (size_t i = 0; i < t->n_vocab; i++)
        if ((t->kind[i] == MER__TOK_ADDED || t->kind[i] == MER__TOK_SPECIAL) && t->len[i])
            t->added[t->n_added++] = (mer__tok_added){t->off[i], t->len[i], (int32_t)i};
    qsort_r(t->added, t->n_added, sizeof *t->added, added_cmp, t->bytes.data);
    for (size_t i = t->n_added; i-- > 0;) t->added_first[(uint8_t)t->bytes.data[t->added[i].off]] = (uint32_t)i + 1;
    if (!t->merges && merges_grow(t, 0)) return mer__errf(err, MER_E_NOMEM, "out of memory");

    mer__tok_cache *c = &t->cache;
    c->mask = pow2_at_least(2 * CACHE_MAX_ENTRIES) - 1;
    c->max_n = CACHE_MAX_ENTRIES;
    c->hash = calloc(c->mask + 1, sizeof *c->hash);
    c->off = calloc(c->mask + 1, sizeof *c->off);
    if (!c->hash || !c->off) return mer__errf(err, MER_E_NOMEM, "out of memory");
    if (pthread_mutex_init(&c->mu, NULL)) return mer__errf(err, MER_E_INTERNAL, "pthread_mutex_init failed");
    c->mu_ok = 1;
    return MER_OK;
}

// --- public handle basics ----------------------------------------------------------------------------

mer_tokenizer_params mer_tokenizer_default_params(void) {
    mer_tokenizer_params p = {.max_special_id = MER_QWEN25_MAX_SPECIAL_ID};
    return p;
}

void mer_tokenizer_free(mer_tokenizer *t) {
    if (!t) return;
    mer__tok_cache *c = &t->cache;
    if (c->mu_ok) pthread_mutex_destroy(&c->mu);
    free(c->hash);
    free(c->off);
    mer__buf_free(&c->data);
    free(t->kind);
    free(t->off);
    free(t->len);
    mer__buf_free(&t->bytes);
    free(t->vmap);
    free(t->merges);
    free(t->added);
    free(t);
}

size_t mer_tokenizer_n_vocab(const mer_tokenizer *t) { return t ? t->n_vocab : 0; }

size_t mer__tok_ids_with_text(const mer_tokenizer *t, const int32_t *ids, size_t n, int32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && (size_t)ids[i] < t->n_vocab) out[k++] = ids[i];
    return k;
}

int32_t mer_tokenizer_token_id(const mer_tokenizer *t, const char *text, size_t len) {
    if (!t || !text) return -1;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && !memcmp(t->bytes.data + t->added[i].off, text, len)) return t->added[i].id;
    return vocab_find(t, (const uint8_t *)text, len);
}

int mer_tokenizer_is_special(const mer_tokenizer *t, int32_t id) {
    return t && id >= 0 && (size_t)id < t->n_vocab && t->kind[id] == MER__TOK_SPECIAL;
}

// --- encoding ----------------------------------------------------------------------------------------

typedef struct ids_vec {
    int32_t *v;
    size_t n, cap;
} ids_vec;

static mer_status ids_push(ids_vec *o, const int32_t *p, size_t n) {
    if (o->cap - o->n < n || !o->v) {
        size_t cap = o->cap ? o->cap : 64;
        while (cap - o->n < n) {
            if (cap > SIZE_MAX / 2 / sizeof *o->v) return MER_E_NOMEM;
            cap *= 2;
        }
        int32_t *v = realloc(o->v, cap * sizeof *v);
        if (!v) return MER_E_NOMEM;
        o->v = v;
        o->cap = cap;
    }
    if (n) memcpy(o->v + o->n, p, n * sizeof *p);
    o->n += n;
    return MER_OK;
}

typedef struct heap_ent {
    uint32_t rank, pos;
} heap_ent;

/* Scratch memory of one encode call, grown to the longest piece. */
typedef struct scratch {
    int32_t *id, *prv, *nxt;
    heap_ent *heap;
    size_t cap; /* symbols */
} scratch;

static void scratch_free(scratch *s) {
    free(s->id);
    free(s->prv);
    free(s->nxt);
    free(s->heap);
}

static mer_status scratch_reserve(scratch *s, size_t n) {
    if (n <= s->cap) return MER_OK;
    size_t cap = pow2_at_least(n);
    if (cap > SIZE_MAX / (3 * sizeof(heap_ent))) return MER_E_NOMEM;
    int32_t *id = realloc(s->id, cap * sizeof *id);
    if (id) s->id = id;
    int32_t *prv = realloc(s->prv, cap * sizeof *prv);
    if (prv) s->prv = prv;
    int32_t *nxt = realloc(s->nxt, cap * sizeof *nxt);
    if (nxt) s->nxt = nxt;
    heap_ent *heap = realloc(s->heap, 3 * cap * sizeof *heap);
    if (heap) s->heap = heap;
    if (!id || !prv || !nxt || !heap) return MER_E_NOMEM;
    s->cap = cap;
    return MER_OK;
}

static int heap_less(heap_ent a, heap_ent b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(e, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n) {
    heap_ent top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(h[c + 1], h[c])) c++;
        if (!heap_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static void push_pair(const mer_tokenizer *t, scratch *s, size_t *nh, int32_t i) {
    int32_t j = s->nxt[i];
    if (j < 0) return;
    const mer__tok_merge *m = merge_find(t, s->id[i], s->id[j]);
    if (m) heap_push(s->heap, nh, (heap_ent){m->rank, (uint32_t)i});
}

/* BPE of one piece's bytes; appends the ids to out. */
static mer_status bpe(const mer_tokenizer *t, const uint8_t *p, size_t n, scratch *s, ids_vec *out, mer_err *err) {
    if (scratch_reserve(s, n)) return mer__errf(err, MER_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        s->id[i] = t->byte_id[p[i]];
        if (s->id[i] < 0)
            return mer__errf(err, MER_E_UNSUPPORTED, "byte 0x%02x has no token in this vocabulary", p[i]);
        s->prv[i] = (int32_t)i - 1;
        s->nxt[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    size_t nh = 0;
    for (size_t i = 0; i + 1 < n; i++) push_pair(t, s, &nh, (int32_t)i);
    while (nh) {
        heap_ent e = heap_pop(s->heap, &nh);
        int32_t i = (int32_t)e.pos, j;
        if (s->id[i] < 0 || (j = s->nxt[i]) < 0) continue;
        const mer__tok_merge *m = merge_find(t, s->id[i], s->id[j]);
        if (!m || m->rank != e.rank) continue; /* stale: a neighbour changed since the push */
        s->id[i] = m->id;
        s->id[j] = -1;
        s->nxt[i] = s->nxt[j];
        if (s->nxt[j] >= 0) s->prv[s->nxt[j]] = i;
        if (s->prv[i] >= 0) push_pair(t, s, &nh, s->prv[i]);
        push_pair(t, s, &nh, i);
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = s->nxt[i]) s->prv[k++] = s->id[i]; /* prv reused as output */
    if (ids_push(out, s->prv, k)) return mer__errf(err, MER_E_NOMEM, "out of memory");
    return MER_OK;
}

/* Cache lookup: appends the cached ids of piece p to out and returns 1, or returns 0. */
static int cache_get(const mer_tokenizer *t, const uint8_t *p, size_t n, uint64_t h, ids_vec *out, mer_status *st) {
    mer__tok_cache *c = (mer__tok_cache *)&t->cache; /* the cache is the one mutable part, under its mutex */
    int found = 0;
    pthread_mutex_lock(&c->mu);
    for (size_t k = h & c->mask; c->hash[k]; k = (k + 1) & c->mask) {
        if (c->hash[k] != h) continue;
        const uint8_t *rec = (const uint8_t *)c->data.data + c->off[k];
        uint32_t len, nid;
        memcpy(&len, rec, 4);
        if (len != n || memcmp(rec + 4, p, n)) continue;
        size_t io = 4 + ((n + 3) & ~(size_t)3);
        memcpy(&nid, rec + io, 4);
        int32_t tmp[CACHE_MAX_PIECE];
        memcpy(tmp, rec + io + 4, nid * sizeof(int32_t));
        *st = ids_push(out, tmp, nid);
        found = 1;
        break;
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}

static void cache_put(const mer_tokenizer *t, const uint8_t *p, size_t n, uint64_t h, const int32_t *ids, size_t nid) {
    mer__tok_cache *c = (mer__tok_cache *)&t->cache;
    pthread_mutex_lock(&c->mu);
    if (c->n < c->max_n) {
        size_t k = h & c->mask;
        int dup = 0;
        for (; c->hash[k]; k = (k + 1) & c->mask) {
            if (c->hash[k] != h) continue;
            uint32_t len;
            memcpy(&len, c->data.data + c->off[k], 4);
            if (len == n && !memcmp(c->data.data + c->off[k] + 4, p, n)) { dup = 1; break; }
        }
        size_t off = c->data.len;
        static const uint8_t zero[4] = {0};
        uint32_t len32 = (uint32_t)n, nid32 = (uint32_t)nid;
        if (!dup && off <= UINT32_MAX - 1024 && !mer__buf_append(&c->data, &len32, 4) &&
            !mer__buf_append(&c->data, p, n) && !mer__buf_append(&c->data, zero, ((n + 3) & ~(size_t)3) - n) &&
            !mer__buf_append(&c->data, &nid32, 4) && !mer__buf_append(&c->data, ids, nid * sizeof *ids)) {
            c->hash[k] = h;
            c->off[k] = (uint32_t)off;
            c->n++;
        } else if (!dup) {
            c->data.len = off; /* out of memory: leave the cache as it was */
        }
    }
    pthread_mutex_unlock(&c->mu);
}

static mer_status encode_piece(const mer_tokenizer *t, const uint8_t *p, size_t n, scratch *s, ids_vec *out,
                               mer_err *err) {
    if (n == 1) {
        if (t->byte_id[p[0]] < 0)
            return mer__errf(err, MER_E_UNSUPPORTED, "byte 0x%02x has no token in this vocabulary", p[0]);
        return ids_push(out, &t->byte_id[p[0]], 1) ? mer__errf(err, MER_E_NOMEM, "out of memory") : MER_OK;
    }
    if (n > CACHE_MAX_PIECE) return bpe(t, p, n, s, out, err);
    uint64_t h = hash_bytes(p, n);
    mer_status st = MER_OK;
    if (cache_get(t, p, n, h, out, &st)) return st ? mer__errf(err, st, "out of memory") : MER_OK;
    size_t before = out->n;
    st = bpe(t, p, n, s, out, err);
    if (!st) cache_put(t, p, n, h, out->v + before, out->n - before);
    return st;
}

/* Normalises (when asked) and splits one stretch of text without added tokens, encoding each piece. */
static mer_status encode_plain(const mer_tokenizer *t, const uint8_t *p, size_t n, scratch *s, ids_vec *out,
                               mer_err *err) {
    uint8_t *norm = NULL;
    if (t->nfc) {
        size_t i = 0;
        while (i < n && p[i] < 0x80) i++;
        if (i < n) {
            utf8proc_ssize_t r = utf8proc_map(p, (utf8proc_ssize_t)n, &norm, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (r < 0) return mer__errf(err, r == UTF8PROC_ERROR_NOMEM ? MER_E_NOMEM : MER_E_ARG,
                                        "NFC normalisation failed: %s", utf8proc_errmsg(r));
            p = norm;
            n = (size_t)r;
        }
    }
    mer_status st = MER_OK;
    size_t i = 0;
    while (i < n && !st) {
        size_t l = mer__pretok_qwen2_next(p + i, n - i);
        st = encode_piece(t, p + i, l, s, out, err);
        i += l;
    }
    free(norm);
    return st;
}

mer_status mer_tokenizer_encode(const mer_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                size_t *n_ids, mer_err *err) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!t || (!text && len) || !ids || !n_ids) return mer__errf(err, MER_E_ARG, "mer_tokenizer_encode: NULL argument");
    const uint8_t *s = (const uint8_t *)text;
    size_t bad = mer__utf8_check(s, len);
    if (bad != len) return mer__errf(err, MER_E_ARG, "text is not valid UTF-8 at byte offset %zu", bad);
    ids_vec out = {0};
    scratch sc = {0};
    mer_status st = ids_push(&out, NULL, 0);
    if (st) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    size_t start = 0;
    for (size_t i = 0; i < len;) {
        uint32_t k = t->added_first[s[i]];
        const mer__tok_added *hit = NULL;
        for (; k && k <= t->n_added; k++) {
            const mer__tok_added *a = &t->added[k - 1];
            if ((uint8_t)t->bytes.data[a->off] != s[i]) break;
            if (a->len <= len - i && !memcmp(t->bytes.data + a->off, s + i, a->len)) { hit = a; break; }
        }
        if (!hit) {
            i++;
            continue;
        }
        if (i > start && (st = encode_plain(t, s + start, i - start, &sc, &out, err))) goto fail;
        if ((st = ids_push(&out, &hit->id, 1))) {
            st = mer__errf(err, MER_E_NOMEM, "out of memory");
            goto fail;
        }
        i += hit->len;
        start = i;
    }
    if (len > start && (st = encode_plain(t, s + start, len - start, &sc, &out, err))) goto fail;
    scratch_free(&sc);
    *ids = out.v;
    *n_ids = out.n;
    return MER_OK;
fail:
    scratch_free(&sc);
    free(out.v);
    return st;
}

// --- decoding ----------------------------------------------------------------------------------------

/* Appends s[0..n) to out as UTF-8, each maximal invalid subpart replaced by U+FFFD. Unless final, an
 * incomplete but so far valid character at the very end is left out; returns the bytes consumed. */
static size_t append_lossy(mer_buf *out, const uint8_t *s, size_t n, int final, mer_status *st) {
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    size_t i = 0, run = 0; /* run: start of pending valid bytes */
    *st = MER_OK;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else need = 0;
        size_t k = 1;
        int bad = need == 0;
        while (!bad && k <= need) {
            if (i + k >= n) {
                if (!final) { /* wait for the rest of this character */
                    if ((*st = mer__buf_append(out, s + run, i - run))) return 0;
                    return i;
                }
                bad = 1;
                break;
            }
            uint8_t b = s[i + k];
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) { bad = 1; break; }
            k++;
        }
        if (!bad) {
            i += need + 1;
            continue;
        }
        if ((*st = mer__buf_append(out, s + run, i - run)) || (*st = mer__buf_append(out, fffd, 3))) return 0;
        i += k; /* the lead byte and the continuation bytes that were valid so far */
        if (i > n) i = n;
        run = i;
    }
    if ((*st = mer__buf_append(out, s + run, n - run))) return 0;
    return n;
}

static mer_status check_id(const mer_tokenizer *t, int32_t id, size_t index, mer_err *err) {
    if (id < 0 || (size_t)id >= t->n_vocab)
        return mer__errf(err, MER_E_RANGE, "token id %d at index %zu is outside the vocabulary [0, %zu)", (int)id,
                         index, t->n_vocab);
    return MER_OK;
}

mer_status mer_tokenizer_decode(const mer_tokenizer *t, const int32_t *ids, size_t n_ids, int skip_special,
                                char **text, size_t *len, mer_err *err) {
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!t || (!ids && n_ids) || !text) return mer__errf(err, MER_E_ARG, "mer_tokenizer_decode: NULL argument");
    mer_buf raw = {0}, out = {0};
    mer_status st;
    if ((st = mer__buf_reserve(&raw, 0)) || (st = mer__buf_reserve(&out, 0))) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n_ids; i++) {
        if ((st = check_id(t, ids[i], i, err))) goto fail;
        if (skip_special && t->kind[ids[i]] == MER__TOK_SPECIAL) continue;
        if ((st = mer__buf_append(&raw, t->bytes.data + t->off[ids[i]], t->len[ids[i]]))) {
            st = mer__errf(err, MER_E_NOMEM, "out of memory");
            goto fail;
        }
    }
    append_lossy(&out, (const uint8_t *)raw.data, raw.len, 1, &st);
    if (st) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    mer__buf_free(&raw);
    *text = out.data;
    if (len) *len = out.len;
    return MER_OK;
fail:
    mer__buf_free(&raw);
    mer__buf_free(&out);
    return st;
}

struct mer_tokenizer_stream {
    const mer_tokenizer *t;
    int skip_special;
    uint8_t pend[4];
    size_t n_pend;
    mer_buf in, out;
};

mer_status mer_tokenizer_stream_init(const mer_tokenizer *t, int skip_special, mer_tokenizer_stream **out,
                                     mer_err *err) {
    if (out) *out = NULL;
    if (!t || !out) return mer__errf(err, MER_E_ARG, "mer_tokenizer_stream_init: NULL argument");
    mer_tokenizer_stream *s = calloc(1, sizeof *s);
    if (!s || mer__buf_reserve(&s->out, 16) || mer__buf_reserve(&s->in, 16)) {
        mer_tokenizer_stream_free(s);
        return mer__errf(err, MER_E_NOMEM, "out of memory");
    }
    s->t = t;
    s->skip_special = skip_special;
    *out = s;
    return MER_OK;
}

mer_status mer_tokenizer_stream_push(mer_tokenizer_stream *s, int32_t id, const char **text, size_t *len,
                                     mer_err *err) {
    *text = "";
    *len = 0;
    mer_status st = check_id(s->t, id, 0, err);
    if (st) return st;
    s->out.len = 0;
    s->out.data[0] = 0;
    if (s->skip_special && s->t->kind[id] == MER__TOK_SPECIAL) {
        *text = s->out.data;
        return MER_OK;
    }
    s->in.len = 0;
    if (mer__buf_append(&s->in, s->pend, s->n_pend) ||
        mer__buf_append(&s->in, s->t->bytes.data + s->t->off[id], s->t->len[id]))
        return mer__errf(err, MER_E_NOMEM, "out of memory");
    size_t used = append_lossy(&s->out, (const uint8_t *)s->in.data, s->in.len, 0, &st);
    if (st) return mer__errf(err, MER_E_NOMEM, "out of memory");
    s->n_pend = s->in.len - used; /* at most 3: the start of one character */
    memcpy(s->pend, s->in.data + used, s->n_pend);
    *text = s->out.data;
    *len = s->out.len;
    return MER_OK;
}

void mer_tokenizer_stream_flush(mer_tokenizer_stream *s, const char **text, size_t *len) {
    mer_status st;
    s->out.len = 0;
    s->out.data[0] = 0;
    append_lossy(&s->out, s->pend, s->n_pend, 1, &st); /* at most 3 bytes out: room was reserved at init */
    s->n_pend = 0;
    *text = s->out.data;
    *len = s->out.len;
}

void mer_tokenizer_stream_free(mer_tokenizer_stream *s) {
    if (!s) return;
    mer__buf_free(&s->in);
    mer__buf_free(&s->out);
    free(s);
}
