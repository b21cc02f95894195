/* safetensors.c - Hugging Face safetensors: reader (single file and sharded index) and writer.
 * A file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON ({name: {"dtype", "shape",
 * "data_offsets": [begin, end]}, "__metadata__": {str: str}}), then the data area that the offsets are
 * relative to. The reader maps the file once and checks every entry: dtype known, shape integral and
 * non-negative, offsets inside the data area, size = prod(shape) * element size, no two tensors
 * overlapping. A sharded checkpoint is a model.safetensors.index.json whose weight_map names the shard of
 * every tensor; each shard is mapped once. The writer reproduces the reference library's layout. */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

// --- dtypes ------------------------------------------------------------------------------------------

typedef struct st_dtype {
    const char *name;
    mer_dtype dt; /* MER_DTYPE_INVALID: valid safetensors dtype that mer does not handle */
    int size;
} st_dtype;

/* In the reference library's Dtype order (its writer sorts by this order, descending). */
static const st_dtype ST_DTYPES[] = {
    {"BOOL", MER_DTYPE_BOOL, 1}, {"U8", MER_DTYPE_U8, 1},         {"I8", MER_DTYPE_I8, 1},
    {"F8_E5M2", MER_DTYPE_INVALID, 1}, {"F8_E4M3", MER_DTYPE_INVALID, 1}, {"I16", MER_DTYPE_I16, 2},
    {"U16", MER_DTYPE_INVALID, 2}, {"F16", MER_DTYPE_F16, 2},     {"BF16", MER_DTYPE_BF16, 2},
    {"I32", MER_DTYPE_I32, 4},     {"U32", MER_DTYPE_INVALID, 4}, {"F32", MER_DTYPE_F32, 4},
    {"F64", MER_DTYPE_F64, 8},     {"I64", MER_DTYPE_I64, 8},     {"U64", MER_DTYPE_INVALID, 8},
};

static int st_rank(mer_dtype t) {
    for (size_t i = 0; i < MER_ARRAY_LEN(ST_DTYPES); i++)
        if (ST_DTYPES[i].dt == t) return (int)i;
    return -1;
}

const char *mer__safetensors_dtype_name(mer_dtype t) {
    int r = st_rank(t);
    return r < 0 || t == MER_DTYPE_INVALID ? NULL : ST_DTYPES[r].name;
}

// --- reader ------------------------------------------------------------------------------------------

typedef struct st_impl {
    size_t n_maps;
    mer_map maps[]; /* one per file */
} st_impl;

static void st_close(mer_weights *w) {
    st_impl *im = w->impl;
    if (!im) return;
    for (size_t i = 0; i < im->n_maps; i++) mer__map_close(&im->maps[i]);
    free(im);
}

/* A JSON number that must be a non-negative integer below 2^53 (exactly representable). */
static int json_u53(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return -1;
    *v = (uint64_t)d;
    return 0;
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

/* Parses one safetensors image and appends its tensors (and, when with_meta, its __metadata__) to w. */
static mer_status parse_st(mer_weights *w, const uint8_t *data, size_t size, const char *name, int with_meta,
                           mer_err *err) {
    mer_status st = MER_OK;
    cJSON *root = NULL;
    span *spans = NULL;
    size_t first = w->n_tensors;
    if (size < 8)
        return mer__errf(err, MER_E_FORMAT, "%s: truncated: %zu bytes, the 8-byte header length at offset 0 is "
                         "incomplete", name, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    if (hlen > size - 8)
        return mer__errf(err, MER_E_FORMAT, "%s: header length %llu at offset 0 runs past the end of the file "
                         "(%zu bytes)", name, (unsigned long long)hlen, size);
    if (hlen < 2) return mer__errf(err, MER_E_FORMAT, "%s: header length %llu at offset 0 is too short", name,
                                   (unsigned long long)hlen);
    const char *hdr = (const char *)data + 8;
    if (hdr[0] != '{')
        return mer__errf(err, MER_E_FORMAT, "%s: header at offset 8 does not start with '{'", name);
    size_t bad = mer__utf8_check((const uint8_t *)hdr, hlen);
    if (bad != hlen)
        return mer__errf(err, MER_E_FORMAT, "%s: header has invalid UTF-8 at offset %zu", name, 8 + bad);
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(hdr, hlen, &end, 0);
    if (!root) {
        size_t off = end && end >= hdr && end <= hdr + hlen ? (size_t)(end - hdr) : 0;
        return mer__errf(err, MER_E_FORMAT, "%s: header JSON is malformed near offset %zu", name, 8 + off);
    }
    size_t used = end && end >= hdr && end <= hdr + hlen ? (size_t)(end - hdr) : hlen;
    while (used < hlen && (hdr[used] == ' ' || hdr[used] == '\n' || hdr[used] == '\r' || hdr[used] == '\t')) used++;
    if (used != hlen) {
        st = mer__errf(err, MER_E_FORMAT, "%s: unexpected bytes after the header JSON at offset %zu", name,
                       8 + used);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        st = mer__errf(err, MER_E_FORMAT, "%s: header at offset 8 is not a JSON object", name);
        goto fail;
    }
    const uint64_t base = 8 + hlen, area = size - base;
    for (const cJSON *e = root->child; e; e = e->next) {
        const char *tn = e->string ? e->string : "";
        if (!strcmp(tn, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                st = mer__errf(err, MER_E_FORMAT, "%s: __metadata__ in the header is not an object", name);
                goto fail;
            }
            for (const cJSON *m = e->child; m; m = m->next) {
                if (!cJSON_IsString(m)) {
                    st = mer__errf(err, MER_E_FORMAT, "%s: __metadata__ value '%s' is not a string", name,
                                   m->string ? m->string : "");
                    goto fail;
                }
                if (!with_meta) continue;
                st = mer__weights_add_kv_str(w, m->string, strlen(m->string), m->valuestring,
                                             strlen(m->valuestring), err);
                if (st) goto fail;
            }
            continue;
        }
        const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsObject(e) || !cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo)) {
            st = mer__errf(err, MER_E_FORMAT, "%s: tensor '%s' in the header needs \"dtype\", \"shape\" and "
                           "\"data_offsets\"", name, tn);
            goto fail;
        }
        const st_dtype *dt = NULL;
        for (size_t i = 0; i < MER_ARRAY_LEN(ST_DTYPES); i++)
            if (!strcmp(ST_DTYPES[i].name, jd->valuestring)) dt = &ST_DTYPES[i];
        if (!dt) {
            st = mer__errf(err, MER_E_FORMAT, "%s: tensor '%s': unknown dtype \"%.32s\"", name, tn, jd->valuestring);
            goto fail;
        }
        if (dt->dt == MER_DTYPE_INVALID) {
            st = mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported", name, tn, dt->name);
            goto fail;
        }
        int nd = cJSON_GetArraySize(js);
        if (nd > MER_MAX_DIMS) {
            st = mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor '%s' has %d dimensions (at most %d)", name, tn, nd,
                           MER_MAX_DIMS);
            goto fail;
        }
        int64_t shape[MER_MAX_DIMS];
        uint64_t nel = 1;
        int d = 0, ovf = 0;
        for (const cJSON *x = js->child; x; x = x->next, d++) {
            uint64_t v;
            if (json_u53(x, &v)) {
                st = mer__errf(err, MER_E_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", name,
                               tn, d);
                goto fail;
            }
            shape[d] = (int64_t)v;
            if (__builtin_mul_overflow(nel, v, &nel)) ovf = 1;
        }
        uint64_t b0, b1, nb = 0;
        if (cJSON_GetArraySize(jo) != 2 || json_u53(jo->child, &b0) || json_u53(jo->child->next, &b1)) {
            st = mer__errf(err, MER_E_FORMAT, "%s: tensor '%s': data_offsets is not two non-negative integers",
                           name, tn);
            goto fail;
        }
        if (b1 < b0 || b1 > area) {
            st = mer__errf(err, MER_E_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] (file offsets %llu..%llu) "
                           "outside the data area of %llu bytes at offset %llu", name, tn, (unsigned long long)b0,
                           (unsigned long long)b1, (unsigned long long)(base + b0), (unsigned long long)(base + b1),
                           (unsigned long long)area, (unsigned long long)base);
            goto fail;
        }
        if (ovf || __builtin_mul_overflow(nel, (uint64_t)dt->size, &nb) || nb != b1 - b0) {
            st = mer__errf(err, MER_E_FORMAT, "%s: tensor '%s' at file offset %llu: %llu bytes but shape and dtype "
                           "%s need %s%llu", name, tn, (unsigned long long)(base + b0),
                           (unsigned long long)(b1 - b0), dt->name, ovf ? "more than " : "",
                           (unsigned long long)(ovf ? UINT64_MAX : nb));
            goto fail;
        }
        st = mer__weights_add_tensor(w, tn, strlen(tn), dt->dt, nd, shape, data + base + b0, (size_t)nb, err);
        if (st) goto fail;
    }
    /* Overlaps: sort this file's extents by start. */
    size_t n = w->n_tensors - first;
    if (n > 1) {
        spans = malloc(n * sizeof *spans);
        if (!spans) {
            st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", name);
            goto fail;
        }
        for (size_t i = 0; i < n; i++) {
            const mer_wtensor *t = &w->tensors[first + i];
            uint64_t b = (uint64_t)((const uint8_t *)t->data - data) - base;
            spans[i] = (span){b, b + t->n_bytes, first + i};
        }
        qsort(spans, n, sizeof *spans, cmp_span);
        uint64_t reach = 0;
        size_t who = 0;
        for (size_t i = 0; i < n; i++) {
            if (spans[i].begin == spans[i].end) continue;
            if (spans[i].begin < reach) {
                st = mer__errf(err, MER_E_FORMAT, "%s: tensors '%s' and '%s' overlap at file offset %llu", name,
                               w->tensors[who].name, w->tensors[spans[i].idx].name,
                               (unsigned long long)(base + spans[i].begin));
                goto fail;
            }
            reach = spans[i].end;
            who = spans[i].idx;
        }
    }
fail:
    free(spans);
    cJSON_Delete(root);
    return st;
}

mer_status mer__safetensors_open_mem(const void *data, size_t size, const char *name, mer_weights **out,
                                     mer_err *err) {
    *out = NULL;
    mer_weights *w;
    mer_status st = mer__weights_new(MER_WFORMAT_SAFETENSORS, name, &w, err);
    if (st) return st;
    st = parse_st(w, data, size, name, 1, err);
    if (!st) st = mer__weights_finish(w, err);
    if (st) {
        mer_weights_close(w);
        return st;
    }
    *out = w;
    return MER_OK;
}

mer_status mer__safetensors_open(const char *path, mer_weights **out, mer_err *err) {
    *out = NULL;
    mer_weights *w;
    mer_status st = mer__weights_new(MER_WFORMAT_SAFETENSORS, path, &w, err);
    if (st) return st;
    st_impl *im = calloc(1, sizeof *im + sizeof(mer_map));
    if (!im) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    w->impl = im;
    w->close_impl = st_close;
    st = mer__map_open(path, &im->maps[0], err);
    if (st) goto fail;
    im->n_maps = 1;
    st = parse_st(w, im->maps[0].data, im->maps[0].size, path, 1, err);
    if (st) goto fail;
    *out = w;
    return MER_OK;
fail:
    mer_weights_close(w);
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static int shard_name_ok(const char *s) {
    return s[0] && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

mer_status mer__safetensors_open_index(const char *index_path, mer_weights **out, mer_err *err) {
    *out = NULL;
    mer_status st = MER_OK;
    mer_weights *w = NULL;
    mer_map m = {0};
    cJSON *root = NULL;
    const char **shards = NULL;
    size_t *first = NULL, n_shards = 0;
    char *dir = NULL, *spath = NULL;

    st = mer__map_open(index_path, &m, err);
    if (st) goto fail;
    size_t bad = mer__utf8_check(m.data, m.size);
    if (bad != m.size) {
        st = mer__errf(err, MER_E_FORMAT, "%s: invalid UTF-8 at byte offset %zu", index_path, bad);
        goto fail;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts((const char *)m.data, m.size, &end, 0);
    if (!root) {
        size_t off = end ? (size_t)(end - (const char *)m.data) : 0;
        st = mer__errf(err, MER_E_FORMAT, "%s: malformed JSON near byte offset %zu", index_path, off);
        goto fail;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        st = mer__errf(err, MER_E_FORMAT, "%s: a JSON file without a \"weight_map\" object is not a safetensors "
                       "index", index_path);
        goto fail;
    }
    size_t n_map = (size_t)cJSON_GetArraySize(wm);
    shards = malloc((n_map ? n_map : 1) * sizeof *shards);
    if (!shards) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", index_path);
        goto fail;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
            st = mer__errf(err, MER_E_FORMAT, "%s: weight_map entry '%s' does not name a shard file in this folder",
                           index_path, e->string ? e->string : "");
            goto fail;
        }
        shards[n_shards++] = e->valuestring;
    }
    qsort(shards, n_shards, sizeof *shards, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < n_shards; i++)
        if (!u || strcmp(shards[u - 1], shards[i])) shards[u++] = shards[i];
    n_shards = u;

    st = mer__weights_new(MER_WFORMAT_SAFETENSORS, index_path, &w, err);
    if (st) goto fail;
    st_impl *im = calloc(1, sizeof *im + n_shards * sizeof(mer_map));
    first = malloc((n_shards + 1) * sizeof *first);
    dir = mer__path_dir(index_path);
    if (!im || !first || !dir) {
        free(im);
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", index_path);
        goto fail;
    }
    w->impl = im;
    w->close_impl = st_close;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    for (const cJSON *e = cJSON_IsObject(meta) ? meta->child : NULL; e; e = e->next) {
        char val[64];
        if (cJSON_IsString(e)) snprintf(val, sizeof val, "%s", e->valuestring);
        else if (cJSON_IsNumber(e)) snprintf(val, sizeof val, "%.17g", e->valuedouble);
        else continue;
        char key[128];
        snprintf(key, sizeof key, "index.%s", e->string ? e->string : "");
        st = mer__weights_add_kv_str(w, key, strlen(key), val, strlen(val), err);
        if (st) goto fail;
    }
    for (size_t k = 0; k < n_shards; k++) {
        spath = mer__path_join(dir, shards[k]);
        if (!spath) {
            st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", index_path);
            goto fail;
        }
        st = mer__map_open(spath, &im->maps[k], err);
        if (st) {
            mer__err_prefix(err, st, "%s: shard", index_path);
            goto fail;
        }
        im->n_maps = k + 1;
        first[k] = w->n_tensors;
        st = parse_st(w, im->maps[k].data, im->maps[k].size, spath, k == 0, err);
        if (st) goto fail;
        free(spath);
        spath = NULL;
    }
    first[n_shards] = w->n_tensors;
    st = mer__weights_finish(w, err);
    if (st) goto fail;
    /* Every tensor of the weight map must be in the shard it names. */
    for (const cJSON *e = wm->child; e; e = e->next) {
        const mer_wtensor *t = mer_weights_find(w, e->string);
        const char **sp = bsearch(&e->valuestring, shards, n_shards, sizeof *shards, cmp_str);
        size_t k = (size_t)(sp - shards), ti = t ? (size_t)(t - w->tensors) : 0;
        if (!t || ti < first[k] || ti >= first[k + 1]) {
            st = mer__errf(err, MER_E_NOTFOUND, "%s: tensor '%s' is mapped to %s but %s", index_path, e->string,
                           e->valuestring, t ? "found in another shard" : "that shard does not contain it");
            goto fail;
        }
    }
    *out = w;
    w = NULL;
fail:
    mer_weights_close(w);
    free(spath);
    free(dir);
    free(first);
    free(shards);
    cJSON_Delete(root);
    mer__map_close(&m);
    return st;
}

// --- writer ------------------------------------------------------------------------------------------

/* JSON string as serde_json writes it: ", \ and control characters escaped, the rest raw UTF-8. */
static mer_status put_jstr(mer_buf *b, const char *s) {
    static const char HEX[] = "0123456789abcdef";
    mer_status st = mer__buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; !st && *p; p++) {
        unsigned char c = *p;
        if (c == '"') st = mer__buf_append(b, "\\\"", 2);
        else if (c == '\\') st = mer__buf_append(b, "\\\\", 2);
        else if (c == '\n') st = mer__buf_append(b, "\\n", 2);
        else if (c == '\r') st = mer__buf_append(b, "\\r", 2);
        else if (c == '\t') st = mer__buf_append(b, "\\t", 2);
        else if (c == '\b') st = mer__buf_append(b, "\\b", 2);
        else if (c == '\f') st = mer__buf_append(b, "\\f", 2);
        else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', HEX[c >> 4], HEX[c & 15]};
            st = mer__buf_append(b, e, 6);
        } else st = mer__buf_putc(b, (char)c);
    }
    if (!st) st = mer__buf_putc(b, '"');
    return st;
}

typedef struct ord {
    const mer_st_tensor *t;
    int rank;
} ord;

static int cmp_ord(const void *a, const void *b) {
    const ord *x = a, *y = b;
    if (x->rank != y->rank) return y->rank - x->rank; /* widest dtype first */
    return strcmp(x->t->name, y->t->name);
}

/* Checks the tensors, orders them and builds the padded header. */
static mer_status st_prepare(const mer_st_tensor *t, size_t n, const char *const (*meta)[2], size_t n_meta,
                             ord **out_ord, mer_buf *hdr, mer_err *err) {
    mer_status st = MER_OK;
    ord *o = malloc((n ? n : 1) * sizeof *o);
    if (!o) return mer__errf(err, MER_E_NOMEM, "safetensors writer: out of memory");
    for (size_t i = 0; i < n; i++) {
        int r = st_rank(t[i].dtype);
        if (r < 0 || t[i].dtype == MER_DTYPE_INVALID) {
            st = mer__errf(err, MER_E_UNSUPPORTED, "safetensors writer: tensor '%s': dtype %d has no safetensors "
                           "name", t[i].name, (int)t[i].dtype);
            goto fail;
        }
        if (t[i].n_dims < 0 || t[i].n_dims > MER_MAX_DIMS) {
            st = mer__errf(err, MER_E_ARG, "safetensors writer: tensor '%s': %d dimensions", t[i].name, t[i].n_dims);
            goto fail;
        }
        uint64_t nel = 1;
        int ovf = 0;
        for (int d = 0; d < t[i].n_dims; d++) {
            if (t[i].shape[d] < 0) ovf = 1;
            else ovf |= __builtin_mul_overflow(nel, (uint64_t)t[i].shape[d], &nel);
        }
        ovf |= __builtin_mul_overflow(nel, (uint64_t)ST_DTYPES[r].size, &nel);
        if (ovf || nel != t[i].n_bytes) {
            st = mer__errf(err, MER_E_SHAPE, "safetensors writer: tensor '%s': %zu bytes do not match its shape",
                           t[i].name, t[i].n_bytes);
            goto fail;
        }
        o[i] = (ord){&t[i], r};
    }
    qsort(o, n, sizeof *o, cmp_ord);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(o[i].t->name, o[i - 1].t->name)) {
            st = mer__errf(err, MER_E_ARG, "safetensors writer: tensor '%s' given twice", o[i].t->name);
            goto fail;
        }
    st = mer__buf_putc(hdr, '{');
    if (n_meta) {
        st = st ? st : put_jstr(hdr, "__metadata__");
        st = st ? st : mer__buf_append(hdr, ":{", 2);
        for (size_t i = 0; i < n_meta && !st; i++) {
            if (i) st = mer__buf_putc(hdr, ',');
            st = st ? st : put_jstr(hdr, meta[i][0]);
            st = st ? st : mer__buf_putc(hdr, ':');
            st = st ? st : put_jstr(hdr, meta[i][1]);
        }
        st = st ? st : mer__buf_putc(hdr, '}');
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n && !st; i++) {
        const mer_st_tensor *x = o[i].t;
        if (i || n_meta) st = mer__buf_putc(hdr, ',');
        st = st ? st : put_jstr(hdr, x->name);
        st = st ? st : mer__buf_printf(hdr, ":{\"dtype\":\"%s\",\"shape\":[", ST_DTYPES[o[i].rank].name);
        for (int d = 0; d < x->n_dims && !st; d++)
            st = mer__buf_printf(hdr, d ? ",%lld" : "%lld", (long long)x->shape[d]);
        st = st ? st : mer__buf_printf(hdr, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                       (unsigned long long)(off + x->n_bytes));
        off += x->n_bytes;
    }
    st = st ? st : mer__buf_putc(hdr, '}');
    while (!st && hdr->len % 8) st = mer__buf_putc(hdr, ' ');
    if (st) {
        st = mer__errf(err, MER_E_NOMEM, "safetensors writer: out of memory");
        goto fail;
    }
    *out_ord = o;
    return MER_OK;
fail:
    free(o);
    return st;
}

static void le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

mer_status mer__safetensors_serialize(const mer_st_tensor *t, size_t n, const char *const (*meta)[2],
                                      size_t n_meta, mer_buf *out, mer_err *err) {
    mer_buf hdr = {0};
    ord *o = NULL;
    mer_status st = st_prepare(t, n, meta, n_meta, &o, &hdr, err);
    if (st) goto fail;
    uint8_t len[8];
    le64(len, hdr.len);
    st = mer__buf_append(out, len, 8);
    st = st ? st : mer__buf_append(out, hdr.data, hdr.len);
    for (size_t i = 0; i < n && !st; i++) st = mer__buf_append(out, o[i].t->data, o[i].t->n_bytes);
    if (st) st = mer__errf(err, MER_E_NOMEM, "safetensors writer: out of memory");
fail:
    free(o);
    mer__buf_free(&hdr);
    return st;
}

mer_status mer__safetensors_write(const char *path, const mer_st_tensor *t, size_t n,
                                  const char *const (*meta)[2], size_t n_meta, mer_err *err) {
    mer_buf hdr = {0};
    ord *o = NULL;
    mer_ofile f = {0};
    mer_status st = st_prepare(t, n, meta, n_meta, &o, &hdr, err);
    if (st) {
        mer__err_prefix(err, st, "%s", path);
        goto fail;
    }
    st = mer__ofile_open(&f, path, err);
    if (st) goto fail;
    uint8_t len[8];
    le64(len, hdr.len);
    st = mer__ofile_write(&f, len, 8, err);
    st = st ? st : mer__ofile_write(&f, hdr.data, hdr.len, err);
    for (size_t i = 0; i < n && !st; i++) st = mer__ofile_write(&f, o[i].t->data, o[i].t->n_bytes, err);
    st = st ? st : mer__ofile_commit(&f, err);
fail:
    mer__ofile_abort(&f);
    free(o);
    mer__buf_free(&hdr);
    return st;
}
