/* wload.c - tensor look-up, shape checks and f32 conversion for the encoder models (see wload.h). */
#include "models/wload.h"

#include <stdarg.h>
#include <string.h>

void mer__wl_init(mer_wload *L, const mer_weights *w, const char *prefix) {
    memset(L, 0, sizeof *L);
    L->w = w;
    L->prefix = prefix ? prefix : "";
}

void mer__wl_free(mer_wload *L) {
    if (!L) return;
    for (size_t i = 0; i < L->n_owned; i++) free(L->owned[i]);
    free(L->owned);
    L->owned = NULL;
    L->n_owned = L->cap_owned = 0;
}

void **mer__wl_take(mer_wload *L, size_t *n) {
    void **p = L->owned;
    *n = L->n_owned;
    L->owned = NULL;
    L->n_owned = L->cap_owned = 0;
    return p;
}

static mer_status keep(mer_wload *L, void *p, mer_err *err) {
    if (L->n_owned == L->cap_owned) {
        size_t cap = L->cap_owned ? L->cap_owned * 2 : 64;
        void **q = realloc(L->owned, cap * sizeof *q);
        if (!q) {
            free(p);
            return mer__errf(err, MER_E_NOMEM, "out of memory");
        }
        L->owned = q;
        L->cap_owned = cap;
    }
    L->owned[L->n_owned++] = p;
    return MER_OK;
}

static void vname(const mer_wload *L, char *buf, size_t cap, const char *fmt, va_list ap) {
    size_t n = (size_t)snprintf(buf, cap, "%s", L->prefix);
    if (n >= cap) n = cap - 1;
    vsnprintf(buf + n, cap - n, fmt, ap);
}

int mer__wl_has(const mer_wload *L, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vname(L, name, sizeof name, fmt, ap);
    va_end(ap);
    return mer_weights_find(L->w, name) != NULL;
}

static void shape_str(char *buf, size_t cap, int n, const int64_t *s) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && o < cap; i++) o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Finds the tensor and checks its shape (shape entries of -1 are filled in). */
static mer_status find_checked(const mer_wload *L, const char *name, int n_dims, int64_t *shape,
                               const mer_wtensor **out, mer_err *err) {
    const mer_wtensor *t = mer_weights_find(L->w, name);
    *out = NULL;
    if (!t) return mer__errf(err, MER_E_NOTFOUND, "%s: tensor '%s' is missing", L->w->path, name);
    int ok = t->n_dims == n_dims;
    for (int i = 0; ok && i < n_dims; i++) ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (!ok) {
        char got[160], want[160];
        shape_str(got, sizeof got, t->n_dims, t->shape);
        shape_str(want, sizeof want, n_dims, shape);
        return mer__errf(err, MER_E_SHAPE, "%s: tensor '%s' has shape %s, expected %s (-1: any)", L->w->path, name,
                         got, want);
    }
    for (int i = 0; i < n_dims; i++) shape[i] = t->shape[i];
    *out = t;
    return MER_OK;
}

static size_t elem_size(mer_dtype t) {
    switch (t) {
    case MER_DTYPE_F32: return 4;
    case MER_DTYPE_F16:
    case MER_DTYPE_BF16: return 2;
    case MER_DTYPE_F64: return 8;
    default: return 0;
    }
}

/* n elements of t->data (float dtype) into a new f32 array. */
static mer_status to_f32(const mer_wload *L, const mer_wtensor *t, size_t n, float **out, mer_err *err) {
    size_t es = elem_size(t->dtype), nb;
    *out = NULL;
    if (!es)
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor '%s' has dtype %s; expected f32, f16, bf16 or f64",
                         L->w->path, t->name, mer__wtype_name(t->dtype) ? mer__wtype_name(t->dtype) : "?");
    if (mer__mul_ovf(n, es, &nb) || nb > t->n_bytes)
        return mer__errf(err, MER_E_FORMAT, "%s: tensor '%s' holds %zu bytes, fewer than its shape needs",
                         L->w->path, t->name, t->n_bytes);
    float *y = malloc(n ? n * sizeof(float) : 1);
    if (!y) return mer__errf(err, MER_E_NOMEM, "%s: out of memory for tensor '%s'", L->w->path, t->name);
    if ((uintptr_t)t->data % es == 0) {
        mer_dequantize_row(t->dtype, t->data, y, n);
    } else { /* unaligned (old safetensors files): go through an aligned copy */
        void *tmp = malloc(nb ? nb : 1);
        if (!tmp) {
            free(y);
            return mer__errf(err, MER_E_NOMEM, "%s: out of memory for tensor '%s'", L->w->path, t->name);
        }
        memcpy(tmp, t->data, nb);
        mer_dequantize_row(t->dtype, tmp, y, n);
        free(tmp);
    }
    *out = y;
    return MER_OK;
}

mer_status mer__wl_f32(mer_wload *L, float **out, int n_dims, int64_t *shape, mer_err *err, const char *fmt,
                       ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vname(L, name, sizeof name, fmt, ap);
    va_end(ap);
    *out = NULL;
    const mer_wtensor *t;
    mer_status st = find_checked(L, name, n_dims, shape, &t, err);
    if (st) return st;
    size_t n = 1;
    for (int i = 0; i < n_dims; i++)
        if (mer__mul_ovf(n, (size_t)shape[i], &n))
            return mer__errf(err, MER_E_FORMAT, "%s: tensor '%s' is too large", L->w->path, name);
    float *y;
    if ((st = to_f32(L, t, n, &y, err))) return st;
    if ((st = keep(L, y, err))) return st;
    *out = y;
    return MER_OK;
}

mer_status mer__wl_mat(mer_wload *L, mer_wmat *out, int64_t rows, int64_t cols, mer_err *err, const char *fmt,
                       ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vname(L, name, sizeof name, fmt, ap);
    va_end(ap);
    out->data = NULL;
    out->dt = MER_DTYPE_F32;
    int64_t shape[2] = {rows, cols};
    const mer_wtensor *t;
    mer_status st = find_checked(L, name, 2, shape, &t, err);
    if (st) return st;
    size_t need;
    if (mer__wtype_nbytes(t->dtype, (uint64_t)cols, (uint64_t)rows * (uint64_t)cols, &need, name, NULL) == MER_OK &&
        need <= t->n_bytes) {
        size_t es = elem_size(t->dtype);
        int view = 0;
        if (t->dtype == MER_DTYPE_F32 || t->dtype == MER_DTYPE_F16 || t->dtype == MER_DTYPE_BF16)
            view = (uintptr_t)t->data % es == 0;
        else if (t->dtype == MER_DTYPE_Q8_0 || t->dtype == MER_DTYPE_Q4_0)
            view = cols % MER_QK == 0 && (uintptr_t)t->data % 2 == 0;
        if (view) {
            out->data = t->data;
            out->dt = t->dtype;
            return MER_OK;
        }
    }
    float *y;
    if ((st = to_f32(L, t, (size_t)rows * (size_t)cols, &y, err))) return st;
    if ((st = keep(L, y, err))) return st;
    out->data = y;
    out->dt = MER_DTYPE_F32;
    return MER_OK;
}

mer_status mer__open_with_config(const char *path, mer_weights **w, mer_config **cfg, mer_err *err) {
    *w = NULL;
    *cfg = NULL;
    mer_status st = mer_weights_open(path, w, err);
    if (st) return st;
    if ((*w)->config) return MER_OK;
    char *dir = mer__path_dir(path), *cp = dir ? mer__path_join(dir, "config.json") : NULL;
    free(dir);
    if (!cp) {
        mer_weights_close(*w);
        *w = NULL;
        return mer__errf(err, MER_E_NOMEM, "out of memory");
    }
    st = mer__config_load(cp, cfg, err);
    free(cp);
    if (st) {
        mer_weights_close(*w);
        *w = NULL;
    }
    return st;
}

