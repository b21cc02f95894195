/* gguf.c - GGUF (ggml's model file, versions 2 and 3, little-endian): reader and writer.
 * The reader maps the file and walks it with a bounds-checked cursor: header, kv pairs of every type
 * (strings, arrays, arrays of arrays up to a fixed depth), general.alignment, tensor infos (ne[] innermost
 * first: reversed into PyTorch order in mer_wtensor.shape), then checks that each tensor's offset is
 * aligned, its bytes (from its ggml type's block size) lie inside the data section, and no two tensors
 * overlap. Counts read from the file are bounded by the bytes left before anything is allocated.
 * The writer produces the layout of ggml docs/gguf.md (see gguf.h). */
#include "io/gguf.h"

#include <string.h>

// --- reading cursor ----------------------------------------------------------------------------------

typedef struct rd {
    const uint8_t *p;
    size_t size;
    size_t pos;
    const char *name;
    mer_err *err;
} rd;

static mer_status trunc_err(rd *r, size_t n, const char *what) {
    return mer__errf(r->err, MER_E_FORMAT, "%s: truncated: %s at offset %zu needs %zu bytes, %zu left", r->name,
                     what, r->pos, n, r->size - r->pos);
}

static mer_status need(rd *r, size_t n, const char *what) {
    return r->size - r->pos < n ? trunc_err(r, n, what) : MER_OK;
}

static uint64_t get_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static mer_status rd_u32(rd *r, uint32_t *v, const char *what) {
    mer_status st = need(r, 4, what);
    if (st) return st;
    *v = (uint32_t)get_le(r->p + r->pos, 4);
    r->pos += 4;
    return MER_OK;
}

static mer_status rd_u64(rd *r, uint64_t *v, const char *what) {
    mer_status st = need(r, 8, what);
    if (st) return st;
    *v = get_le(r->p + r->pos, 8);
    r->pos += 8;
    return MER_OK;
}

/* A gguf_string_t: u64 length + bytes (bounded by the file). */
static mer_status rd_str(rd *r, const char **s, size_t *len, const char *what) {
    size_t at = r->pos;
    uint64_t n;
    mer_status st = rd_u64(r, &n, what);
    if (st) return st;
    if (n > r->size - r->pos)
        return mer__errf(r->err, MER_E_FORMAT, "%s: %s at offset %zu has length %llu, past the end of the file "
                         "(%zu bytes)", r->name, what, at, (unsigned long long)n, r->size);
    *s = (const char *)r->p + r->pos;
    *len = (size_t)n;
    r->pos += (size_t)n;
    return MER_OK;
}

// --- metadata values ---------------------------------------------------------------------------------

#define MAX_ARRAY_DEPTH 8

/* Size of a fixed-size value type, 0 for string/array, -1 for an unknown type. */
static int kv_scalar_size(uint32_t t) {
    switch (t) {
    case MER_KV_U8: case MER_KV_I8: case MER_KV_BOOL: return 1;
    case MER_KV_U16: case MER_KV_I16: return 2;
    case MER_KV_U32: case MER_KV_I32: case MER_KV_F32: return 4;
    case MER_KV_U64: case MER_KV_I64: case MER_KV_F64: return 8;
    case MER_KV_STRING: case MER_KV_ARRAY: return 0;
    default: return -1;
    }
}

static const char *kv_type_name(uint32_t t) {
    static const char *const N[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
                                    "u64", "i64", "f64"};
    return t < MER_ARRAY_LEN(N) ? N[t] : "?";
}

/* Skips n elements of type t (validating them), for nested arrays and to measure arrays. */
static mer_status skip_values(rd *r, uint32_t t, uint64_t n, int depth, const char *key) {
    int sz = kv_scalar_size(t);
    if (sz < 0)
        return mer__errf(r->err, MER_E_FORMAT, "%s: key '%s': unknown value type %u at offset %zu", r->name, key, t,
                         r->pos);
    if (sz > 0) {
        if (n > (r->size - r->pos) / (size_t)sz)
            return mer__errf(r->err, MER_E_FORMAT, "%s: key '%s': array of %llu %s at offset %zu runs past the end "
                             "of the file", r->name, key, (unsigned long long)n, kv_type_name(t), r->pos);
        if (t == MER_KV_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (r->p[r->pos + i] > 1)
                    return mer__errf(r->err, MER_E_FORMAT, "%s: key '%s': bool value %u at offset %llu", r->name,
                                     key, r->p[r->pos + i], (unsigned long long)(r->pos + i));
        r->pos += (size_t)n * (size_t)sz;
        return MER_OK;
    }
    /* Strings take at least 8 bytes and arrays at least 12: bound n before looping. */
    if (n > (r->size - r->pos) / 8)
        return mer__errf(r->err, MER_E_FORMAT, "%s: key '%s': array of %llu %s at offset %zu runs past the end of "
                         "the file", r->name, key, (unsigned long long)n, kv_type_name(t), r->pos);
    for (uint64_t i = 0; i < n; i++) {
        mer_status st;
        if (t == MER_KV_STRING) {
            const char *s;
            size_t len;
            st = rd_str(r, &s, &len, "string value");
        } else {
            if (depth >= MAX_ARRAY_DEPTH)
                return mer__errf(r->err, MER_E_FORMAT, "%s: key '%s': arrays nested deeper than %d at offset %zu",
                                 r->name, key, MAX_ARRAY_DEPTH, r->pos);
            uint32_t et;
            uint64_t en;
            st = rd_u32(r, &et, "array type");
            if (!st) st = rd_u64(r, &en, "array length");
            if (!st) st = skip_values(r, et, en, depth + 1, key);
        }
        if (st) return st;
    }
    return MER_OK;
}

/* Key offsets are kept beside the kvs so a duplicate can be reported where it is. */
typedef struct key_at {
    const char *key;
    size_t at;
} key_at;

static int cmp_key_at(const void *a, const void *b) {
    const key_at *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->at < y->at ? -1 : x->at > y->at);
}

static mer_status read_kv(rd *r, mer_weights *w) {
    size_t at = r->pos;
    const char *k;
    size_t klen;
    mer_status st = rd_str(r, &k, &klen, "metadata key");
    if (st) return st;
    if (!klen || memchr(k, 0, klen))
        return mer__errf(r->err, MER_E_FORMAT, "%s: empty key or key with a NUL byte at offset %zu", r->name, at);
    uint32_t t;
    st = rd_u32(r, &t, "value type");
    if (st) return st;
    mer_kv *kv;
    st = mer__weights_add_kv(w, k, klen, &kv, r->err);
    if (st) return st;
    int sz = kv_scalar_size(t);
    if (sz < 0)
        return mer__errf(r->err, MER_E_FORMAT, "%s: key '%s': unknown value type %u at offset %zu", r->name, kv->key,
                         t, r->pos - 4);
    kv->type = (mer_kvtype)t;
    if (sz > 0) {
        st = need(r, (size_t)sz, "value");
        if (st) return st;
        uint64_t u = get_le(r->p + r->pos, sz);
        switch (t) {
        case MER_KV_U8: case MER_KV_U16: case MER_KV_U32: case MER_KV_U64: kv->v.u = u; break;
        case MER_KV_I8: kv->v.i = (int8_t)u; break;
        case MER_KV_I16: kv->v.i = (int16_t)u; break;
        case MER_KV_I32: kv->v.i = (int32_t)(uint32_t)u; break;
        case MER_KV_I64: kv->v.i = (int64_t)u; break;
        case MER_KV_F32: {
            uint32_t b = (uint32_t)u;
            float f;
            memcpy(&f, &b, 4);
            kv->v.f = f;
            break;
        }
        case MER_KV_F64: memcpy(&kv->v.f, &u, 8); break;
        case MER_KV_BOOL:
            if (u > 1)
                return mer__errf(r->err, MER_E_FORMAT, "%s: key '%s': bool value %u at offset %zu", r->name, kv->key,
                                 (unsigned)u, r->pos);
            kv->v.b = (int)u;
            break;
        }
        r->pos += (size_t)sz;
        return MER_OK;
    }
    if (t == MER_KV_STRING) {
        const char *s;
        size_t len;
        st = rd_str(r, &s, &len, "string value");
        if (st) return st;
        char *c = mer__strndup(s, len);
        if (!c) return mer__errf(r->err, MER_E_NOMEM, "%s: out of memory", r->name);
        kv->v.s.p = c;
        kv->v.s.len = len;
        return MER_OK;
    }
    /* Array. */
    uint32_t et;
    uint64_t n;
    st = rd_u32(r, &et, "array type");
    if (!st) st = rd_u64(r, &n, "array length");
    if (st) return st;
    if (kv_scalar_size(et) < 0)
        return mer__errf(r->err, MER_E_FORMAT, "%s: key '%s': unknown array element type %u at offset %zu", r->name,
                         kv->key, et, r->pos - 12);
    kv->arr_type = (mer_kvtype)et;
    kv->arr_n = n;
    size_t start = r->pos;
    st = skip_values(r, et, n, 1, kv->key);
    if (st) return st;
    kv->arr_data = r->p + start;
    kv->arr_bytes = r->pos - start;
    if (et == MER_KV_STRING) { /* n <= bytes / 8 was checked by skip_values */
        kv->arr_str = calloc(n ? (size_t)n : 1, sizeof *kv->arr_str);
        kv->arr_str_len = calloc(n ? (size_t)n : 1, sizeof *kv->arr_str_len);
        if (!kv->arr_str || !kv->arr_str_len) {
            free(kv->arr_str);
            kv->arr_str = NULL;
            return mer__errf(r->err, MER_E_NOMEM, "%s: out of memory", r->name);
        }
        rd s = {r->p, r->pos, start, r->name, r->err};
        for (uint64_t i = 0; i < n; i++) {
            const char *p;
            size_t len;
            st = rd_str(&s, &p, &len, "string value");
            if (st) return st;
            kv->arr_str[i] = mer__strndup(p, len);
            kv->arr_str_len[i] = len;
            if (!kv->arr_str[i]) return mer__errf(r->err, MER_E_NOMEM, "%s: out of memory", r->name);
        }
    }
    return MER_OK;
}

// --- reader ------------------------------------------------------------------------------------------

typedef struct gguf_impl {
    mer_map map;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
} gguf_impl;

static void gguf_close(mer_weights *w) {
    gguf_impl *im = w->impl;
    if (!im) return;
    mer__map_close(&im->map);
    free(im);
}

typedef struct span {
    uint64_t begin, end;
    size_t idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static mer_status parse_gguf(mer_weights *w, gguf_impl *im, const uint8_t *data, size_t size, const char *name,
                             mer_err *err) {
    rd r = {data, size, 0, name, err};
    uint64_t *offs = NULL;
    span *spans = NULL;
    mer_status st = need(&r, 4, "magic");
    if (st) return st;
    if (memcmp(data, "GGUF", 4))
        return mer__errf(err, MER_E_FORMAT, "%s: bad magic %02x %02x %02x %02x at offset 0 (expected \"GGUF\")", name,
                         data[0], data[1], data[2], data[3]);
    r.pos = 4;
    uint32_t version;
    st = rd_u32(&r, &version, "version");
    if (st) return st;
    if (version == 1)
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: GGUF version 1 (offset 4) is not supported; reconvert the "
                         "model with a current llama.cpp", name);
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && version >> 16)
            return mer__errf(err, MER_E_UNSUPPORTED, "%s: big-endian GGUF (version field 0x%08x at offset 4) is not "
                             "supported", name, version);
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: GGUF version %u at offset 4 is not supported (2 and 3 are)",
                         name, version);
    }
    im->version = version;
    uint64_t n_tensors, n_kv;
    st = rd_u64(&r, &n_tensors, "tensor count");
    if (!st) st = rd_u64(&r, &n_kv, "kv count");
    if (st) return st;
    /* Each kv takes at least 13 bytes, each tensor info at least 24. */
    if (n_kv > (size - r.pos) / 13)
        return mer__errf(err, MER_E_FORMAT, "%s: kv count %llu at offset 16 cannot fit in the file (%zu bytes)", name,
                         (unsigned long long)n_kv, size);
    if (n_tensors > (size - r.pos) / 24)
        return mer__errf(err, MER_E_FORMAT, "%s: tensor count %llu at offset 8 cannot fit in the file (%zu bytes)",
                         name, (unsigned long long)n_tensors, size);
    key_at *keys = malloc((n_kv ? (size_t)n_kv : 1) * sizeof *keys); /* n_kv <= size / 13 */
    if (!keys) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", name);
    for (uint64_t i = 0; i < n_kv; i++) {
        keys[i].at = r.pos;
        st = read_kv(&r, w);
        if (st) {
            free(keys);
            return st;
        }
        keys[i].key = w->kv[i].key;
    }
    /* Duplicate keys (sorted once rather than compared pairwise: files may hold many keys). */
    qsort(keys, (size_t)n_kv, sizeof *keys, cmp_key_at);
    for (uint64_t i = 1; i < n_kv; i++)
        if (!strcmp(keys[i].key, keys[i - 1].key)) {
            st = mer__errf(err, MER_E_FORMAT, "%s: duplicate key '%s' at offset %zu", name, keys[i].key, keys[i].at);
            free(keys);
            return st;
        }
    free(keys);
    im->alignment = MER_GGUF_DEFAULT_ALIGNMENT;
    const mer_kv *al = mer_weights_find_kv(w, "general.alignment");
    if (al) {
        if (al->type != MER_KV_U32 || al->v.u == 0 || (al->v.u & (al->v.u - 1)))
            return mer__errf(err, MER_E_FORMAT, "%s: general.alignment must be a u32 power of two", name);
        im->alignment = (uint32_t)al->v.u;
    }
    offs = malloc((n_tensors ? (size_t)n_tensors : 1) * sizeof *offs);
    if (!offs) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", name);
    for (uint64_t i = 0; i < n_tensors; i++) {
        size_t at = r.pos;
        const char *tn;
        size_t tlen;
        uint32_t nd, type;
        st = rd_str(&r, &tn, &tlen, "tensor name");
        if (!st) st = rd_u32(&r, &nd, "tensor n_dims");
        if (st) goto fail;
        if (nd > MER_MAX_DIMS) {
            st = mer__errf(err, MER_E_FORMAT, "%s: tensor %.*s (info at offset %zu) has %u dimensions", name,
                           (int)(tlen > 64 ? 64 : tlen), tn, at, nd);
            goto fail;
        }
        int64_t shape[MER_MAX_DIMS];
        uint64_t ne[MER_MAX_DIMS], nel = 1;
        int ovf = 0;
        for (uint32_t d = 0; d < nd; d++) {
            st = rd_u64(&r, &ne[d], "tensor dimension");
            if (st) goto fail;
            if (ne[d] > INT64_MAX || __builtin_mul_overflow(nel, ne[d], &nel)) ovf = 1;
        }
        for (uint32_t d = 0; d < nd; d++) shape[d] = (int64_t)ne[nd - 1 - d];
        st = rd_u32(&r, &type, "tensor type");
        if (!st) st = rd_u64(&r, &offs[i], "tensor offset");
        if (st) goto fail;
        char what[160];
        snprintf(what, sizeof what, "%s: tensor '%.*s' (info at offset %zu)", name, (int)(tlen > 64 ? 64 : tlen), tn,
                 at);
        if (type >= 200 || !mer__wtype_name((int)type)) {
            st = mer__errf(err, MER_E_UNSUPPORTED, "%s: unknown ggml type %u", what, type);
            goto fail;
        }
        if (ovf || nel > INT64_MAX) {
            st = mer__errf(err, MER_E_FORMAT, "%s: element count overflows", what);
            goto fail;
        }
        size_t nb;
        st = mer__wtype_nbytes((int)type, nd ? ne[0] : 1, nel, &nb, what, err);
        if (st) goto fail;
        if (offs[i] % im->alignment) {
            st = mer__errf(err, MER_E_FORMAT, "%s: data offset %llu is not a multiple of the alignment %u", what,
                           (unsigned long long)offs[i], im->alignment);
            goto fail;
        }
        /* data pointer is set once the data section is known */
        st = mer__weights_add_tensor(w, tn, tlen, (mer_dtype)type, (int)nd, shape, NULL, nb, err);
        if (st) goto fail;
    }
    uint64_t ds = r.pos + (im->alignment - r.pos % im->alignment) % im->alignment;
    im->data_offset = ds;
    if (n_tensors && ds > size) {
        st = mer__errf(err, MER_E_FORMAT, "%s: truncated: the data section would start at offset %llu, past the end "
                       "of the file (%zu bytes)", name, (unsigned long long)ds, size);
        goto fail;
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        mer_wtensor *t = &w->tensors[i];
        uint64_t avail = size - ds;
        if (offs[i] > avail || t->n_bytes > avail - offs[i]) {
            st = mer__errf(err, MER_E_FORMAT, "%s: tensor '%s': %zu bytes at file offset %llu run past the end of the "
                           "file (%zu bytes)", name, t->name, t->n_bytes, (unsigned long long)(ds + offs[i]), size);
            goto fail;
        }
        t->data = data + ds + offs[i];
    }
    if (w->n_tensors > 1) {
        spans = malloc(w->n_tensors * sizeof *spans);
        if (!spans) {
            st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", name);
            goto fail;
        }
        for (size_t i = 0; i < w->n_tensors; i++) spans[i] = (span){offs[i], offs[i] + w->tensors[i].n_bytes, i};
        qsort(spans, w->n_tensors, sizeof *spans, cmp_span);
        uint64_t reach = 0;
        size_t who = 0;
        for (size_t i = 0; i < w->n_tensors; i++) {
            if (spans[i].begin == spans[i].end) continue;
            if (spans[i].begin < reach) {
                st = mer__errf(err, MER_E_FORMAT, "%s: tensors '%s' and '%s' overlap at file offset %llu", name,
                               w->tensors[who].name, w->tensors[spans[i].idx].name,
                               (unsigned long long)(ds + spans[i].begin));
                goto fail;
            }
            reach = spans[i].end;
            who = spans[i].idx;
        }
    }
fail:
    free(spans);
    free(offs);
    return st;
}

static mer_status open_common(const uint8_t *data, size_t size, const char *name, gguf_impl *im,
                              mer_weights **out, mer_err *err) {
    mer_weights *w;
    mer_status st = mer__weights_new(MER_WFORMAT_GGUF, name, &w, err);
    if (st) {
        free(im);
        return st;
    }
    w->impl = im;
    w->close_impl = gguf_close;
    st = parse_gguf(w, im, data, size, name, err);
    if (!st) st = mer__weights_finish(w, err);
    if (st) {
        mer_weights_close(w);
        return st;
    }
    *out = w;
    return MER_OK;
}

mer_status mer__gguf_open(const char *path, mer_weights **out, mer_err *err) {
    *out = NULL;
    gguf_impl *im = calloc(1, sizeof *im);
    if (!im) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
    mer_status st = mer__map_open(path, &im->map, err);
    if (st) {
        free(im);
        return st;
    }
    return open_common(im->map.data, im->map.size, path, im, out, err);
}

mer_status mer__gguf_open_mem(const void *data, size_t size, const char *name, mer_weights **out, mer_err *err) {
    *out = NULL;
    gguf_impl *im = calloc(1, sizeof *im);
    if (!im) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", name);
    return open_common(data, size, name, im, out, err);
}

mer_status mer__gguf_info(const mer_weights *w, uint32_t *version, uint32_t *alignment, uint64_t *data_offset,
                          mer_err *err) {
    if (!w || w->format != MER_WFORMAT_GGUF || !w->impl)
        return mer__errf(err, MER_E_ARG, "%s: not a GGUF file", w ? w->path : "(null)");
    const gguf_impl *im = w->impl;
    if (version) *version = im->version;
    if (alignment) *alignment = im->alignment;
    if (data_offset) *data_offset = im->data_offset;
    return MER_OK;
}

// --- writer ------------------------------------------------------------------------------------------

typedef struct wtensor {
    char *name;
    int type;
    int n_dims;
    uint64_t ne[4];
    const void *data;
    size_t n_bytes;
} wtensor;

struct mer_gguf_writer {
    mer_buf kv;       /* serialised kv pairs */
    uint64_t n_kv;
    char **keys;
    size_t cap_keys;
    uint32_t alignment;
    wtensor *t;
    size_t n_t, cap_t;
};

mer_status mer__gguf_writer_new(mer_gguf_writer **out, mer_err *err) {
    *out = calloc(1, sizeof **out);
    if (!*out) return mer__errf(err, MER_E_NOMEM, "gguf writer: out of memory");
    (*out)->alignment = MER_GGUF_DEFAULT_ALIGNMENT;
    return MER_OK;
}

void mer__gguf_writer_free(mer_gguf_writer *g) {
    if (!g) return;
    mer__buf_free(&g->kv);
    for (uint64_t i = 0; i < g->n_kv; i++) free(g->keys[i]);
    free(g->keys);
    for (size_t i = 0; i < g->n_t; i++) free(g->t[i].name);
    free(g->t);
    free(g);
}

static mer_status put_le(mer_buf *b, uint64_t v, int n) {
    uint8_t x[8];
    for (int i = 0; i < n; i++) x[i] = (uint8_t)(v >> (8 * i));
    return mer__buf_append(b, x, (size_t)n);
}

static mer_status put_str(mer_buf *b, const char *s, size_t n) {
    mer_status st = put_le(b, n, 8);
    return st ? st : mer__buf_append(b, s, n);
}

/* Registers the key (checked) and writes key + type; the caller writes the value. On failure after the
 * key was written the buffer is rolled back by the caller via *mark. */
static mer_status begin_kv(mer_gguf_writer *g, const char *key, uint32_t type, size_t *mark, mer_err *err) {
    size_t kl = key ? strlen(key) : 0;
    if (!kl) return mer__errf(err, MER_E_ARG, "gguf writer: empty key");
    for (size_t i = 0; i < kl; i++)
        if ((unsigned char)key[i] >= 0x80)
            return mer__errf(err, MER_E_ARG, "gguf writer: key '%s' is not ASCII", key);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!strcmp(g->keys[i], key)) return mer__errf(err, MER_E_ARG, "gguf writer: key '%s' added twice", key);
    if (g->n_kv == g->cap_keys) {
        size_t nc = g->cap_keys ? g->cap_keys * 2 : 32;
        char **k = realloc(g->keys, nc * sizeof *k);
        if (!k) return mer__errf(err, MER_E_NOMEM, "gguf writer: out of memory");
        g->keys = k;
        g->cap_keys = nc;
    }
    *mark = g->kv.len;
    mer_status st = put_str(&g->kv, key, kl);
    if (!st) st = put_le(&g->kv, type, 4);
    if (st) {
        g->kv.len = *mark;
        return mer__errf(err, MER_E_NOMEM, "gguf writer: out of memory");
    }
    return MER_OK;
}

static mer_status end_kv(mer_gguf_writer *g, const char *key, size_t mark, mer_status st, mer_err *err) {
    if (st) {
        g->kv.len = mark;
        return mer__errf(err, MER_E_NOMEM, "gguf writer: out of memory");
    }
    g->keys[g->n_kv] = mer__strndup(key, strlen(key));
    if (!g->keys[g->n_kv]) {
        g->kv.len = mark;
        return mer__errf(err, MER_E_NOMEM, "gguf writer: out of memory");
    }
    g->n_kv++;
    return MER_OK;
}

mer_status mer__gguf_add_scalar(mer_gguf_writer *g, const char *key, mer_kvtype type, const void *v, mer_err *err) {
    int sz = kv_scalar_size((uint32_t)type);
    if (sz <= 0) return mer__errf(err, MER_E_ARG, "gguf writer: key '%s': %d is not a scalar type", key, (int)type);
    uint64_t u = 0;
    switch (type) {
    case MER_KV_U8: u = *(const uint8_t *)v; break;
    case MER_KV_I8: u = (uint8_t) * (const int8_t *)v; break;
    case MER_KV_U16: u = *(const uint16_t *)v; break;
    case MER_KV_I16: u = (uint16_t) * (const int16_t *)v; break;
    case MER_KV_U32: u = *(const uint32_t *)v; break;
    case MER_KV_I32: u = (uint32_t) * (const int32_t *)v; break;
    case MER_KV_F32: { uint32_t b; memcpy(&b, v, 4); u = b; break; }
    case MER_KV_BOOL: u = *(const int *)v ? 1 : 0; break;
    case MER_KV_U64: u = *(const uint64_t *)v; break;
    case MER_KV_I64: u = (uint64_t) * (const int64_t *)v; break;
    case MER_KV_F64: memcpy(&u, v, 8); break;
    default: break;
    }
    if (!strcmp(key, "general.alignment")) {
        if (type != MER_KV_U32 || u == 0 || (u & (u - 1)))
            return mer__errf(err, MER_E_ARG, "gguf writer: general.alignment must be a u32 power of two");
    }
    size_t mark;
    mer_status st = begin_kv(g, key, (uint32_t)type, &mark, err);
    if (st) return st;
    st = end_kv(g, key, mark, put_le(&g->kv, u, sz), err);
    if (!st && !strcmp(key, "general.alignment")) g->alignment = (uint32_t)u;
    return st;
}

mer_status mer__gguf_add_u32(mer_gguf_writer *g, const char *key, uint32_t v, mer_err *err) {
    return mer__gguf_add_scalar(g, key, MER_KV_U32, &v, err);
}
mer_status mer__gguf_add_i32(mer_gguf_writer *g, const char *key, int32_t v, mer_err *err) {
    return mer__gguf_add_scalar(g, key, MER_KV_I32, &v, err);
}
mer_status mer__gguf_add_u64(mer_gguf_writer *g, const char *key, uint64_t v, mer_err *err) {
    return mer__gguf_add_scalar(g, key, MER_KV_U64, &v, err);
}
mer_status mer__gguf_add_f32(mer_gguf_writer *g, const char *key, float v, mer_err *err) {
    return mer__gguf_add_scalar(g, key, MER_KV_F32, &v, err);
}
mer_status mer__gguf_add_f64(mer_gguf_writer *g, const char *key, double v, mer_err *err) {
    return mer__gguf_add_scalar(g, key, MER_KV_F64, &v, err);
}
mer_status mer__gguf_add_bool(mer_gguf_writer *g, const char *key, int v, mer_err *err) {
    return mer__gguf_add_scalar(g, key, MER_KV_BOOL, &v, err);
}

mer_status mer__gguf_add_str(mer_gguf_writer *g, const char *key, const char *s, mer_err *err) {
    size_t mark;
    mer_status st = begin_kv(g, key, MER_KV_STRING, &mark, err);
    if (st) return st;
    return end_kv(g, key, mark, put_str(&g->kv, s, strlen(s)), err);
}

mer_status mer__gguf_add_array(mer_gguf_writer *g, const char *key, mer_kvtype elem, const void *elems, uint64_t n,
                               mer_err *err) {
    int sz = kv_scalar_size((uint32_t)elem);
    uint64_t nb;
    if (sz <= 0) return mer__errf(err, MER_E_ARG, "gguf writer: key '%s': arrays of type %d need their own call", key,
                                  (int)elem);
    if (__builtin_mul_overflow(n, (uint64_t)sz, &nb) || nb > SIZE_MAX)
        return mer__errf(err, MER_E_ARG, "gguf writer: key '%s': array too large", key);
    size_t mark;
    mer_status st = begin_kv(g, key, MER_KV_ARRAY, &mark, err);
    if (st) return st;
    st = put_le(&g->kv, (uint32_t)elem, 4);
    if (!st) st = put_le(&g->kv, n, 8);
    if (!st) st = mer__buf_append(&g->kv, elems, (size_t)nb); /* little-endian host */
    return end_kv(g, key, mark, st, err);
}

mer_status mer__gguf_add_str_array(mer_gguf_writer *g, const char *key, const char *const *s, uint64_t n,
                                   mer_err *err) {
    size_t mark;
    mer_status st = begin_kv(g, key, MER_KV_ARRAY, &mark, err);
    if (st) return st;
    st = put_le(&g->kv, MER_KV_STRING, 4);
    if (!st) st = put_le(&g->kv, n, 8);
    for (uint64_t i = 0; i < n && !st; i++) st = put_str(&g->kv, s[i], strlen(s[i]));
    return end_kv(g, key, mark, st, err);
}

mer_status mer__gguf_add_kv(mer_gguf_writer *g, const mer_kv *kv, mer_err *err) {
    if (kv->type == MER_KV_STRING) {
        size_t mark;
        mer_status st = begin_kv(g, kv->key, MER_KV_STRING, &mark, err);
        if (st) return st;
        return end_kv(g, kv->key, mark, put_str(&g->kv, kv->v.s.p, (size_t)kv->v.s.len), err);
    }
    if (kv->type == MER_KV_ARRAY) {
        size_t mark;
        mer_status st = begin_kv(g, kv->key, MER_KV_ARRAY, &mark, err);
        if (st) return st;
        st = put_le(&g->kv, (uint32_t)kv->arr_type, 4);
        if (!st) st = put_le(&g->kv, kv->arr_n, 8);
        if (!st) st = mer__buf_append(&g->kv, kv->arr_data, kv->arr_bytes);
        return end_kv(g, kv->key, mark, st, err);
    }
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32; int b;
            uint64_t u64; int64_t i64; double f64; } v;
    switch (kv->type) {
    case MER_KV_U8: v.u8 = (uint8_t)kv->v.u; break;
    case MER_KV_I8: v.i8 = (int8_t)kv->v.i; break;
    case MER_KV_U16: v.u16 = (uint16_t)kv->v.u; break;
    case MER_KV_I16: v.i16 = (int16_t)kv->v.i; break;
    case MER_KV_U32: v.u32 = (uint32_t)kv->v.u; break;
    case MER_KV_I32: v.i32 = (int32_t)kv->v.i; break;
    case MER_KV_F32: v.f32 = (float)kv->v.f; break;
    case MER_KV_BOOL: v.b = kv->v.b; break;
    case MER_KV_U64: v.u64 = kv->v.u; break;
    case MER_KV_I64: v.i64 = kv->v.i; break;
    case MER_KV_F64: v.f64 = kv->v.f; break;
    default: return mer__errf(err, MER_E_ARG, "gguf writer: key '%s': bad type %d", kv->key, (int)kv->type);
    }
    return mer__gguf_add_scalar(g, kv->key, kv->type, &v, err);
}

mer_status mer__gguf_add_tensor(mer_gguf_writer *g, const char *name, int type, int n_dims, const int64_t *shape,
                                const void *data, mer_err *err) {
    size_t nl = strlen(name);
    if (!nl || nl > MER_GGUF_MAX_NAME)
        return mer__errf(err, MER_E_ARG, "gguf writer: tensor name '%s' must be 1..%d bytes", name, MER_GGUF_MAX_NAME);
    if (n_dims < 1 || n_dims > 4)
        return mer__errf(err, MER_E_ARG, "gguf writer: tensor '%s': %d dimensions (GGUF tensors have 1..4)", name,
                         n_dims);
    if (type >= 200 || !mer__wtype_name(type))
        return mer__errf(err, MER_E_ARG, "gguf writer: tensor '%s': type %d is not a ggml type", name, type);
    for (size_t i = 0; i < g->n_t; i++)
        if (!strcmp(g->t[i].name, name)) return mer__errf(err, MER_E_ARG, "gguf writer: tensor '%s' added twice", name);
    wtensor t = {0};
    t.type = type;
    t.n_dims = n_dims;
    uint64_t nel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] < 0) return mer__errf(err, MER_E_ARG, "gguf writer: tensor '%s': negative dimension", name);
        t.ne[d] = (uint64_t)shape[n_dims - 1 - d];
        if (__builtin_mul_overflow(nel, t.ne[d], &nel))
            return mer__errf(err, MER_E_ARG, "gguf writer: tensor '%s': size overflows", name);
    }
    char what[96];
    snprintf(what, sizeof what, "gguf writer: tensor '%s'", name);
    mer_status st = mer__wtype_nbytes(type, t.ne[0], nel, &t.n_bytes, what, err);
    if (st) return st;
    if (g->n_t == g->cap_t) {
        size_t nc = g->cap_t ? g->cap_t * 2 : 64;
        wtensor *p = realloc(g->t, nc * sizeof *p);
        if (!p) return mer__errf(err, MER_E_NOMEM, "gguf writer: out of memory");
        g->t = p;
        g->cap_t = nc;
    }
    t.name = mer__strndup(name, nl);
    if (!t.name) return mer__errf(err, MER_E_NOMEM, "gguf writer: out of memory");
    t.data = data;
    g->t[g->n_t++] = t;
    return MER_OK;
}

size_t mer__gguf_tensor_nbytes(const mer_gguf_writer *g, size_t i) { return i < g->n_t ? g->t[i].n_bytes : 0; }

static uint64_t pad_to(uint64_t x, uint64_t a) { return (a - x % a) % a; }

/* The sink is either a growing buffer or an output file. */
typedef struct sink {
    mer_buf *buf;
    mer_ofile *f;
} sink;

static mer_status sink_write(sink *s, const void *p, size_t n, mer_err *err) {
    if (s->f) return mer__ofile_write(s->f, p, n, err);
    if (mer__buf_append(s->buf, p, n)) return mer__errf(err, MER_E_NOMEM, "gguf writer: out of memory");
    return MER_OK;
}

static mer_status sink_zeros(sink *s, size_t n, mer_err *err) {
    static const uint8_t Z[64];
    while (n) {
        size_t k = n < sizeof Z ? n : sizeof Z;
        mer_status st = sink_write(s, Z, k, err);
        if (st) return st;
        n -= k;
    }
    return MER_OK;
}

static mer_status emit(mer_gguf_writer *g, sink *s, mer_gguf_fill_fn fill, void *ud, mer_err *err) {
    mer_buf h = {0};
    void *tmp = NULL;
    size_t tmp_cap = 0;
    mer_status st = mer__buf_append(&h, "GGUF", 4);
    if (!st) st = put_le(&h, 3, 4);
    if (!st) st = put_le(&h, g->n_t, 8);
    if (!st) st = put_le(&h, g->n_kv, 8);
    if (!st && g->kv.len) st = mer__buf_append(&h, g->kv.data, g->kv.len);
    uint64_t off = 0;
    for (size_t i = 0; i < g->n_t && !st; i++) {
        const wtensor *t = &g->t[i];
        st = put_str(&h, t->name, strlen(t->name));
        if (!st) st = put_le(&h, (uint64_t)t->n_dims, 4);
        for (int d = 0; d < t->n_dims && !st; d++) st = put_le(&h, t->ne[d], 8);
        if (!st) st = put_le(&h, (uint64_t)t->type, 4);
        if (!st) st = put_le(&h, off, 8);
        off += t->n_bytes + pad_to(t->n_bytes, g->alignment);
    }
    if (st) {
        st = mer__errf(err, MER_E_NOMEM, "gguf writer: out of memory");
        goto fail;
    }
    st = sink_write(s, h.data, h.len, err);
    if (!st) st = sink_zeros(s, (size_t)pad_to(h.len, g->alignment), err);
    for (size_t i = 0; i < g->n_t && !st; i++) {
        const wtensor *t = &g->t[i];
        const void *p = t->data;
        if (!p) {
            if (!fill) {
                st = mer__errf(err, MER_E_ARG, "gguf writer: tensor '%s' has no data and no fill callback", t->name);
                break;
            }
            if (t->n_bytes > tmp_cap) {
                free(tmp);
                tmp_cap = t->n_bytes;
                tmp = malloc(tmp_cap);
                if (!tmp) {
                    st = mer__errf(err, MER_E_NOMEM, "gguf writer: out of memory for tensor '%s' (%zu bytes)",
                                   t->name, t->n_bytes);
                    break;
                }
            }
            st = fill(ud, i, tmp, t->n_bytes, err);
            if (st) break;
            p = tmp;
        }
        st = sink_write(s, p, t->n_bytes, err);
        if (!st) st = sink_zeros(s, (size_t)pad_to(t->n_bytes, g->alignment), err);
    }
fail:
    free(tmp);
    mer__buf_free(&h);
    return st;
}

mer_status mer__gguf_serialize(mer_gguf_writer *g, mer_buf *out, mer_gguf_fill_fn fill, void *ud, mer_err *err) {
    sink s = {out, NULL};
    return emit(g, &s, fill, ud, err);
}

mer_status mer__gguf_write(mer_gguf_writer *g, const char *path, mer_gguf_fill_fn fill, void *ud, mer_err *err) {
    mer_ofile f;
    mer_status st = mer__ofile_open(&f, path, err);
    if (st) return st;
    sink s = {NULL, &f};
    st = emit(g, &s, fill, ud, err);
    if (st) {
        mer__err_prefix(err, st, "%s", path);
        mer__ofile_abort(&f);
        return st;
    }
    return mer__ofile_commit(&f, err);
}
