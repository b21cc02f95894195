/* weights.c - the common checkpoint view: building and freeing a mer_weights, the sorted name index,
 * tensor and metadata look-up, the element-type table shared by every format (all ggml type codes, so a
 * GGUF written by llama.cpp with k-quants can at least be listed), and mer_weights_open, which picks the
 * reader by content (GGUF magic, zip magic, safetensors header, JSON index) or, for a directory, by the
 * files of a Hugging Face model folder. It also answers the public description calls the CLI uses. */
#include "io/weights.h"

#include "io/hfconfig.h"
#include "io/torch.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

// --- element types -----------------------------------------------------------------------------------

typedef struct wtype_info {
    int code;
    const char *name;
    uint16_t blck; /* elements per block */
    uint16_t size; /* bytes per block */
} wtype_info;

/* ggml's type codes, block sizes and byte sizes (ggml docs/gguf.md and ggml-common.h layouts), plus the
 * two non-GGUF element types safetensors/torch files may hold. */
static const wtype_info WTYPES[] = {
    {0, "f32", 1, 4},        {1, "f16", 1, 2},          {2, "q4_0", 32, 18},     {3, "q4_1", 32, 20},
    {6, "q5_0", 32, 22},     {7, "q5_1", 32, 24},       {8, "q8_0", 32, 34},     {9, "q8_1", 32, 36},
    {10, "q2_K", 256, 84},   {11, "q3_K", 256, 110},    {12, "q4_K", 256, 144},  {13, "q5_K", 256, 176},
    {14, "q6_K", 256, 210},  {15, "q8_K", 256, 292},    {16, "iq2_xxs", 256, 66}, {17, "iq2_xs", 256, 74},
    {18, "iq3_xxs", 256, 98}, {19, "iq1_s", 256, 50},   {20, "iq4_nl", 32, 18},  {21, "iq3_s", 256, 110},
    {22, "iq2_s", 256, 82},  {23, "iq4_xs", 256, 136},  {24, "i8", 1, 1},        {25, "i16", 1, 2},
    {26, "i32", 1, 4},       {27, "i64", 1, 8},         {28, "f64", 1, 8},       {29, "iq1_m", 256, 56},
    {30, "bf16", 1, 2},      {34, "tq1_0", 256, 54},    {35, "tq2_0", 256, 66},  {39, "mxfp4", 32, 17},
    {MER_DTYPE_U8, "u8", 1, 1}, {MER_DTYPE_BOOL, "bool", 1, 1},
};

static const wtype_info *wtype(int code) {
    for (size_t i = 0; i < MER_ARRAY_LEN(WTYPES); i++)
        if (WTYPES[i].code == code) return &WTYPES[i];
    return NULL;
}

const char *mer__wtype_name(int type) {
    const wtype_info *t = wtype(type);
    return t ? t->name : NULL;
}

size_t mer__wtype_block_elems(int type) {
    const wtype_info *t = wtype(type);
    return t ? t->blck : 0;
}

size_t mer__wtype_block_bytes(int type) {
    const wtype_info *t = wtype(type);
    return t ? t->size : 0;
}

mer_status mer__wtype_nbytes(int type, uint64_t ne0, uint64_t n_elems, size_t *out, const char *what,
                             mer_err *err) {
    const wtype_info *t = wtype(type);
    if (!t) return mer__errf(err, MER_E_UNSUPPORTED, "%s: unknown element type %d", what, type);
    if (ne0 % t->blck)
        return mer__errf(err, MER_E_FORMAT, "%s: row of %llu elements is not a multiple of the %s block size %u",
                         what, (unsigned long long)ne0, t->name, (unsigned)t->blck);
    uint64_t nb;
    if (__builtin_mul_overflow(n_elems / t->blck, (uint64_t)t->size, &nb) || nb > SIZE_MAX)
        return mer__errf(err, MER_E_RANGE, "%s: tensor size overflows", what);
    *out = (size_t)nb;
    return MER_OK;
}

// --- building and freeing ----------------------------------------------------------------------------

mer_status mer__weights_new(mer_wformat fmt, const char *path, mer_weights **out, mer_err *err) {
    *out = NULL;
    mer_weights *w = calloc(1, sizeof *w);
    if (!w) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
    w->format = fmt;
    w->path = mer__strndup(path, strlen(path));
    if (!w->path) {
        free(w);
        return mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
    }
    *out = w;
    return MER_OK;
}

static int grow(void **arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    if (nc > SIZE_MAX / elem) return -1;
    void *p = realloc(*arr, nc * elem);
    if (!p) return -1;
    memset((char *)p + *cap * elem, 0, (nc - *cap) * elem);
    *arr = p;
    *cap = nc;
    return 0;
}

mer_status mer__weights_add_tensor(mer_weights *w, const char *name, size_t name_len, mer_dtype dtype,
                                   int n_dims, const int64_t *shape, const void *data, size_t n_bytes,
                                   mer_err *err) {
    MER_ASSERT(n_dims >= 0 && n_dims <= MER_MAX_DIMS);
    if (memchr(name, 0, name_len))
        return mer__errf(err, MER_E_FORMAT, "%s: tensor name contains a NUL byte", w->path);
    if (grow((void **)&w->tensors, &w->cap_tensors, w->n_tensors, sizeof *w->tensors))
        return mer__errf(err, MER_E_NOMEM, "%s: out of memory", w->path);
    mer_wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = mer__strndup(name, name_len);
    if (!t->name) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", w->path);
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++) t->shape[d] = shape[d];
    t->data = data;
    t->n_bytes = n_bytes;
    w->n_tensors++;
    return MER_OK;
}

mer_status mer__weights_add_kv(mer_weights *w, const char *key, size_t key_len, mer_kv **out, mer_err *err) {
    if (memchr(key, 0, key_len))
        return mer__errf(err, MER_E_FORMAT, "%s: metadata key contains a NUL byte", w->path);
    if (grow((void **)&w->kv, &w->cap_kv, w->n_kv, sizeof *w->kv))
        return mer__errf(err, MER_E_NOMEM, "%s: out of memory", w->path);
    mer_kv *kv = &w->kv[w->n_kv];
    memset(kv, 0, sizeof *kv);
    kv->key = mer__strndup(key, key_len);
    if (!kv->key) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", w->path);
    w->n_kv++;
    *out = kv;
    return MER_OK;
}

mer_status mer__weights_add_kv_str(mer_weights *w, const char *key, size_t key_len, const char *val,
                                   size_t val_len, mer_err *err) {
    mer_kv *kv;
    mer_status st = mer__weights_add_kv(w, key, key_len, &kv, err);
    if (st) return st;
    kv->type = MER_KV_STRING;
    char *s = mer__strndup(val, val_len);
    if (!s) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", w->path);
    kv->v.s.p = s;
    kv->v.s.len = val_len;
    return MER_OK;
}

/* qsort has no context argument in C11: sort (name pointer, index) pairs instead. */
typedef struct name_idx {
    const char *name;
    size_t idx;
} name_idx;

static int cmp_name_idx(const void *a, const void *b) {
    const name_idx *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

mer_status mer__weights_finish(mer_weights *w, mer_err *err) {
    free(w->sorted);
    w->sorted = NULL;
    if (!w->n_tensors) return MER_OK;
    name_idx *tmp = malloc(w->n_tensors * sizeof *tmp);
    w->sorted = malloc(w->n_tensors * sizeof *w->sorted);
    mer_status st = MER_OK;
    if (!tmp || !w->sorted) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", w->path);
        goto fail;
    }
    for (size_t i = 0; i < w->n_tensors; i++) tmp[i] = (name_idx){w->tensors[i].name, i};
    qsort(tmp, w->n_tensors, sizeof *tmp, cmp_name_idx);
    for (size_t i = 0; i < w->n_tensors; i++) {
        if (i && !strcmp(tmp[i].name, tmp[i - 1].name)) {
            st = mer__errf(err, MER_E_FORMAT, "%s: tensor '%s' appears twice (entries %zu and %zu)", w->path,
                           tmp[i].name, tmp[i - 1].idx, tmp[i].idx);
            goto fail;
        }
        w->sorted[i] = tmp[i].idx;
    }
    free(tmp);
    return MER_OK;
fail:
    free(tmp);
    free(w->sorted);
    w->sorted = NULL;
    return st;
}

void mer_weights_close(mer_weights *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    for (size_t i = 0; i < w->n_kv; i++) {
        mer_kv *kv = &w->kv[i];
        free(kv->key);
        if (kv->type == MER_KV_STRING) free((void *)kv->v.s.p);
        if (kv->arr_str)
            for (uint64_t j = 0; j < kv->arr_n; j++) free(kv->arr_str[j]);
        free(kv->arr_str);
        free(kv->arr_str_len);
    }
    free(w->kv);
    free(w->sorted);
    mer__config_free(w->config);
    if (w->close_impl) w->close_impl(w);
    free(w->path);
    free(w);
}

// --- look-up -----------------------------------------------------------------------------------------

const mer_wtensor *mer_weights_find(const mer_weights *w, const char *name) {
    if (!w || !name) return NULL;
    if (!w->sorted) { /* not finished (a reader's own use): linear */
        for (size_t i = 0; i < w->n_tensors; i++)
            if (!strcmp(w->tensors[i].name, name)) return &w->tensors[i];
        return NULL;
    }
    size_t lo = 0, hi = w->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const mer_wtensor *t = &w->tensors[w->sorted[mid]];
        int c = strcmp(t->name, name);
        if (!c) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const mer_kv *mer_weights_find_kv(const mer_weights *w, const char *key) {
    if (!w || !key) return NULL;
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return &w->kv[i];
    return NULL;
}

// --- open by content ---------------------------------------------------------------------------------

char *mer__path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (!a || dir[a - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fclose(f);
    return 1;
}

char *mer__path_dir(const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return mer__strndup(".", 1);
    if (s == path) return mer__strndup("/", 1);
    return mer__strndup(path, (size_t)(s - path));
}

static mer_status open_file(const char *path, mer_weights **out, mer_err *err) {
    *out = NULL;
    uint8_t head[16] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return mer__errf(err, MER_E_IO, "%s: %s", path, strerror(errno));
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (n >= 4 && !memcmp(head, "GGUF", 4)) return mer__gguf_open(path, out, err);
    if (n >= 4 && !memcmp(head, "PK\x03\x04", 4)) return mer__torch_open(path, out, err);
    /* safetensors first: its 8-byte length may itself start with '{' (0x7b); a JSON text read as a
     * little-endian length is far beyond any file size */
    if (n >= 9 && head[8] == '{') {
        uint64_t hlen = 0;
        for (int k = 7; k >= 0; k--) hlen = hlen << 8 | head[k];
        if (hlen < ((uint64_t)1 << 48)) return mer__safetensors_open(path, out, err);
    }
    size_t i = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r')) i++;
    if (i < n && head[i] == '{') return mer__safetensors_open_index(path, out, err);
    if (n >= 2 && head[0] == 0x80 && head[1] <= 5)
        return mer__errf(err, MER_E_UNSUPPORTED,
                         "%s: a legacy (pre-zip) PyTorch pickle checkpoint; re-save it with torch.save in the zip "
                         "format", path);
    if (n < 9)
        return mer__errf(err, MER_E_FORMAT, "%s: file of %zu bytes is too short to be a checkpoint", path, n);
    return mer__errf(err, MER_E_FORMAT,
                     "%s: not a GGUF, safetensors or PyTorch zip checkpoint (first bytes %02x %02x %02x %02x at "
                     "offset 0)", path, head[0], head[1], head[2], head[3]);
}

static mer_status open_dir(const char *dir, mer_weights **out, mer_err *err) {
    static const char *const CANDIDATES[] = {"model.safetensors.index.json", "model.safetensors",
                                             "pytorch_model.bin"};
    *out = NULL;
    mer_status st = MER_OK;
    mer_config *cfg = NULL;
    char *file = NULL;
    char *cfg_path = mer__path_join(dir, "config.json");
    if (!cfg_path) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", dir);
    if (file_exists(cfg_path)) {
        st = mer__config_load(cfg_path, &cfg, err);
        if (st) goto fail;
    }
    for (size_t i = 0; i < MER_ARRAY_LEN(CANDIDATES) && !file; i++) {
        file = mer__path_join(dir, CANDIDATES[i]);
        if (!file) {
            st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", dir);
            goto fail;
        }
        if (!file_exists(file)) {
            free(file);
            file = NULL;
        }
    }
    if (!file) {
        char *idx = mer__path_join(dir, "pytorch_model.bin.index.json");
        int sharded_torch = idx && file_exists(idx);
        free(idx);
        st = mer__errf(err, sharded_torch ? MER_E_UNSUPPORTED : MER_E_NOTFOUND,
                       sharded_torch ? "%s: sharded PyTorch checkpoints (pytorch_model.bin.index.json) are not "
                                       "supported; convert to safetensors"
                                     : "%s: no model.safetensors, model.safetensors.index.json or pytorch_model.bin "
                                       "in this directory",
                       dir);
        goto fail;
    }
    st = open_file(file, out, err);
    if (st) goto fail;
    (*out)->config = cfg;
    cfg = NULL;
fail:
    mer__config_free(cfg);
    free(cfg_path);
    free(file);
    return st;
}

mer_status mer_weights_open(const char *path, mer_weights **out, mer_err *err) {
    if (!out) return mer__errf(err, MER_E_ARG, "mer_weights_open: out is NULL");
    *out = NULL;
    if (!path) return mer__errf(err, MER_E_ARG, "mer_weights_open: path is NULL");
    mer_weights *w = NULL;
    mer_status st = mer__is_dir(path) ? open_dir(path, &w, err) : open_file(path, &w, err);
    if (st) return st;
    /* A sharded index found directly: attach the config.json beside it. */
    if (!w->config && w->format == MER_WFORMAT_SAFETENSORS && !mer__is_dir(path)) {
        size_t n = strlen(path);
        static const char SUFFIX[] = ".index.json";
        if (n >= sizeof SUFFIX - 1 && !strcmp(path + n - (sizeof SUFFIX - 1), SUFFIX)) {
            char *dir = mer__path_dir(path);
            char *cfg = dir ? mer__path_join(dir, "config.json") : NULL;
            free(dir);
            if (!cfg) {
                st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
                goto fail;
            }
            if (file_exists(cfg)) st = mer__config_load(cfg, &w->config, err);
            free(cfg);
            if (st) goto fail;
        }
    }
    if (!w->sorted) {
        st = mer__weights_finish(w, err);
        if (st) goto fail;
    }
    *out = w;
    return MER_OK;
fail:
    mer_weights_close(w);
    return st;
}

// --- atomic streaming output -------------------------------------------------------------------------

mer_status mer__ofile_open(mer_ofile *o, const char *path, mer_err *err) {
    memset(o, 0, sizeof *o);
    size_t n = strlen(path);
    o->path = mer__strndup(path, n);
    o->tmp = malloc(n + 32);
    if (!o->path || !o->tmp) {
        mer__ofile_abort(o);
        return mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
    }
    snprintf(o->tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
    o->f = fopen(o->tmp, "wb");
    if (!o->f) {
        mer_status st = mer__errf(err, MER_E_IO, "%s: %s", path, strerror(errno));
        mer__ofile_abort(o);
        return st;
    }
    return MER_OK;
}

mer_status mer__ofile_write(mer_ofile *o, const void *p, size_t n, mer_err *err) {
    if (n && fwrite(p, 1, n, o->f) != n)
        return mer__errf(err, MER_E_IO, "%s: write at offset %llu: %s", o->path, (unsigned long long)o->pos,
                         strerror(errno));
    o->pos += n;
    return MER_OK;
}

mer_status mer__ofile_fill(mer_ofile *o, uint8_t byte, size_t n, mer_err *err) {
    uint8_t blk[256];
    memset(blk, byte, sizeof blk);
    while (n) {
        size_t k = n < sizeof blk ? n : sizeof blk;
        mer_status st = mer__ofile_write(o, blk, k, err);
        if (st) return st;
        n -= k;
    }
    return MER_OK;
}

mer_status mer__ofile_commit(mer_ofile *o, mer_err *err) {
    mer_status st = MER_OK;
    if (fflush(o->f) != 0 || fsync(fileno(o->f)) != 0) {
        st = mer__errf(err, MER_E_IO, "%s: %s", o->path, strerror(errno));
        goto fail;
    }
    int rc = fclose(o->f);
    o->f = NULL;
    if (rc != 0) {
        st = mer__errf(err, MER_E_IO, "%s: %s", o->path, strerror(errno));
        goto fail;
    }
    if (rename(o->tmp, o->path) != 0) {
        st = mer__errf(err, MER_E_IO, "%s: rename: %s", o->path, strerror(errno));
        goto fail;
    }
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    return MER_OK;
fail:
    mer__ofile_abort(o);
    return st;
}

void mer__ofile_abort(mer_ofile *o) {
    if (o->f) fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
}

// --- description (the public calls behind `mer inspect`) ---------------------------------------------

const char *mer_weights_format_name(const mer_weights *w) {
    switch (w->format) {
    case MER_WFORMAT_SAFETENSORS: return "safetensors";
    case MER_WFORMAT_GGUF: return "gguf";
    case MER_WFORMAT_TORCH: return "pytorch";
    case MER_WFORMAT_TFJS: return "tfjs";
    }
    return "?";
}

size_t mer_weights_n_tensors(const mer_weights *w) { return w->n_tensors; }

mer_tensor_desc mer_weights_tensor_desc(const mer_weights *w, size_t i) {
    mer_tensor_desc d;
    memset(&d, 0, sizeof d);
    if (i >= w->n_tensors) return d;
    const mer_wtensor *t = &w->tensors[i];
    d.name = t->name;
    d.dtype = mer__wtype_name(t->dtype);
    if (!d.dtype) d.dtype = "?";
    d.n_dims = t->n_dims;
    d.n_elems = 1;
    for (int k = 0; k < t->n_dims && k < 8; k++) {
        d.shape[k] = t->shape[k];
        d.n_elems *= (uint64_t)t->shape[k];
    }
    d.n_bytes = t->n_bytes;
    return d;
}

size_t mer_weights_n_meta(const mer_weights *w) { return w->n_kv; }

static const char *kvtype_name(mer_kvtype t) {
    static const char *const N[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
                                    "u64", "i64", "f64"};
    return (unsigned)t < MER_ARRAY_LEN(N) ? N[t] : "?";
}

/* Appends to buf (NUL-terminated, cap bytes) without overflowing. */
static void cat(char *buf, size_t cap, size_t *n, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void cat(char *buf, size_t cap, size_t *n, const char *fmt, ...) {
    if (*n + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (k > 0) *n = *n + (size_t)k < cap ? *n + (size_t)k : cap - 1;
}

static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* One scalar element of a numeric array as text. */
static void cat_elem(char *buf, size_t cap, size_t *n, mer_kvtype t, const uint8_t *p) {
    switch (t) {
    case MER_KV_U8: cat(buf, cap, n, "%u", p[0]); break;
    case MER_KV_I8: cat(buf, cap, n, "%d", (int8_t)p[0]); break;
    case MER_KV_U16: cat(buf, cap, n, "%u", (unsigned)rd_le(p, 2)); break;
    case MER_KV_I16: cat(buf, cap, n, "%d", (int16_t)rd_le(p, 2)); break;
    case MER_KV_U32: cat(buf, cap, n, "%u", (unsigned)rd_le(p, 4)); break;
    case MER_KV_I32: cat(buf, cap, n, "%d", (int32_t)(uint32_t)rd_le(p, 4)); break;
    case MER_KV_F32: {
        uint32_t b = (uint32_t)rd_le(p, 4);
        float f;
        memcpy(&f, &b, 4);
        cat(buf, cap, n, "%.9g", f);
        break;
    }
    case MER_KV_BOOL: cat(buf, cap, n, "%s", p[0] ? "true" : "false"); break;
    case MER_KV_U64: cat(buf, cap, n, "%llu", (unsigned long long)rd_le(p, 8)); break;
    case MER_KV_I64: cat(buf, cap, n, "%lld", (long long)rd_le(p, 8)); break;
    case MER_KV_F64: {
        uint64_t b = rd_le(p, 8);
        double f;
        memcpy(&f, &b, 8);
        cat(buf, cap, n, "%.17g", f);
        break;
    }
    default: cat(buf, cap, n, "?"); break;
    }
}

const char *mer_weights_meta(const mer_weights *w, size_t i, const char **type, char *buf, size_t cap,
                             int max_items) {
    static const char *const ARR[] = {"array[u8]", "array[i8]", "array[u16]", "array[i16]", "array[u32]",
                                      "array[i32]", "array[f32]", "array[bool]", "array[string]", "array[array]",
                                      "array[u64]", "array[i64]", "array[f64]"};
    if (cap) buf[0] = 0;
    if (i >= w->n_kv) return NULL;
    const mer_kv *kv = &w->kv[i];
    size_t n = 0;
    if (type) *type = kv->type == MER_KV_ARRAY && (unsigned)kv->arr_type < MER_ARRAY_LEN(ARR) ? ARR[kv->arr_type]
                                                                                         : kvtype_name(kv->type);
    switch (kv->type) {
    case MER_KV_STRING: cat(buf, cap, &n, "%s", kv->v.s.p ? kv->v.s.p : ""); break;
    case MER_KV_U8: case MER_KV_U16: case MER_KV_U32: case MER_KV_U64:
        cat(buf, cap, &n, "%llu", (unsigned long long)kv->v.u);
        break;
    case MER_KV_I8: case MER_KV_I16: case MER_KV_I32: case MER_KV_I64: cat(buf, cap, &n, "%lld", (long long)kv->v.i); break;
    case MER_KV_F32: cat(buf, cap, &n, "%.9g", kv->v.f); break;
    case MER_KV_F64: cat(buf, cap, &n, "%.17g", kv->v.f); break;
    case MER_KV_BOOL: cat(buf, cap, &n, "%s", kv->v.b ? "true" : "false"); break;
    case MER_KV_ARRAY: {
        cat(buf, cap, &n, "[%llu items", (unsigned long long)kv->arr_n);
        uint64_t show = kv->arr_n < (uint64_t)(max_items > 0 ? max_items : 0) ? kv->arr_n : (uint64_t)(max_items > 0 ? max_items : 0);
        if (kv->arr_type == MER_KV_STRING && kv->arr_str) {
            for (uint64_t k = 0; k < show; k++) cat(buf, cap, &n, "%s\"%s\"", k ? ", " : ": ", kv->arr_str[k]);
        } else if (kv->arr_type != MER_KV_ARRAY && kv->arr_type != MER_KV_STRING) {
            static const int SZ[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
            int sz = (unsigned)kv->arr_type < MER_ARRAY_LEN(SZ) ? SZ[kv->arr_type] : 0;
            for (uint64_t k = 0; sz && k < show; k++) {
                cat(buf, cap, &n, "%s", k ? ", " : ": ");
                cat_elem(buf, cap, &n, kv->arr_type, (const uint8_t *)kv->arr_data + k * (uint64_t)sz);
            }
        } else show = 0;
        cat(buf, cap, &n, "%s]", show < kv->arr_n ? (show ? ", ..." : "") : "");
        break;
    }
    }
    return kv->key;
}

size_t mer_weights_n_config(const mer_weights *w) { return w->config ? mer__config_count(w->config) : 0; }

const char *mer_weights_config_entry(const mer_weights *w, size_t i, char *buf, size_t cap) {
    if (cap) buf[0] = 0;
    if (!w->config || i >= mer__config_count(w->config)) return NULL;
    mer__config_value_text(w->config, i, buf, cap);
    return mer__config_key(w->config, i);
}
