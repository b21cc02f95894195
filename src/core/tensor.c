/* tensor.c - tensor descriptors, views and the activation arena (see tensor.h). Nothing here touches
 * tensor data except the arena, which only hands out addresses. */
#include "core/tensor.h"

#include <string.h>

const char *mer_backend_name(mer_backend b) {
    switch (b) {
    case MER_BACKEND_CPU: return "cpu";
    case MER_BACKEND_CUDA: return "cuda";
    case MER_BACKEND_COUNT: break;
    }
    return "invalid";
}

// --- descriptors -------------------------------------------------------------------------------------

/* Fills contiguous strides for t->shape. */
static void set_contiguous_strides(mer_tensor *t) {
    size_t be = mer_dtype_block_elems(t->dtype), bb = mer_dtype_block_bytes(t->dtype);
    MER_ASSERT(be > 0);
    int64_t s;
    if (t->n_dims == 0) return;
    int last = t->n_dims - 1;
    if (be > 1) {
        MER_ASSERT(t->shape[last] % (int64_t)be == 0);
        t->stride[last] = 0;
        s = t->shape[last] / (int64_t)be * (int64_t)bb;
    } else {
        t->stride[last] = (int64_t)bb;
        s = t->shape[last] * (int64_t)bb;
    }
    for (int i = last - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
}

mer_tensor mer_tensor_make(mer_dtype dt, mer_backend b, int n_dims, const int64_t *shape, void *data) {
    MER_ASSERT(n_dims >= 0 && n_dims <= MER_MAX_DIMS);
    mer_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.backend = b;
    t.n_dims = n_dims;
    for (int i = 0; i < MER_MAX_DIMS; i++) t.shape[i] = 1;
    for (int i = 0; i < n_dims; i++) {
        MER_ASSERT(shape[i] >= 0);
        t.shape[i] = shape[i];
    }
    set_contiguous_strides(&t);
    t.data = data;
    return t;
}

mer_tensor mer_tensor_1d(mer_dtype t, int64_t n0, void *data) {
    int64_t s[1] = {n0};
    return mer_tensor_make(t, MER_BACKEND_CPU, 1, s, data);
}
mer_tensor mer_tensor_2d(mer_dtype t, int64_t n0, int64_t n1, void *data) {
    int64_t s[2] = {n0, n1};
    return mer_tensor_make(t, MER_BACKEND_CPU, 2, s, data);
}
mer_tensor mer_tensor_3d(mer_dtype t, int64_t n0, int64_t n1, int64_t n2, void *data) {
    int64_t s[3] = {n0, n1, n2};
    return mer_tensor_make(t, MER_BACKEND_CPU, 3, s, data);
}
mer_tensor mer_tensor_4d(mer_dtype t, int64_t n0, int64_t n1, int64_t n2, int64_t n3, void *data) {
    int64_t s[4] = {n0, n1, n2, n3};
    return mer_tensor_make(t, MER_BACKEND_CPU, 4, s, data);
}

int64_t mer_tensor_nelem(const mer_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

size_t mer_tensor_nbytes(const mer_tensor *t) {
    size_t be = mer_dtype_block_elems(t->dtype), bb = mer_dtype_block_bytes(t->dtype);
    if (!be) return 0;
    return (size_t)mer_tensor_nelem(t) / be * bb;
}

int mer_tensor_is_contiguous(const mer_tensor *t) {
    mer_tensor c = *t;
    set_contiguous_strides(&c);
    for (int i = 0; i < t->n_dims; i++)
        if (t->shape[i] != 1 && c.stride[i] != t->stride[i]) return 0;
    return 1;
}

int mer_tensor_same_shape(const mer_tensor *a, const mer_tensor *b) {
    if (a->n_dims != b->n_dims) return 0;
    for (int i = 0; i < a->n_dims; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

int64_t mer_tensor_nrows(const mer_tensor *t) {
    if (t->n_dims == 0 || t->shape[t->n_dims - 1] == 0) return t->n_dims == 0 ? 1 : 0;
    return mer_tensor_nelem(t) / t->shape[t->n_dims - 1];
}

void *mer_tensor_ptr(const mer_tensor *t, const int64_t *idx) {
    uint8_t *p = t->data;
    size_t be = mer_dtype_block_elems(t->dtype), bb = mer_dtype_block_bytes(t->dtype);
    for (int i = 0; i < t->n_dims; i++) {
        MER_ASSERT(idx[i] >= 0 && idx[i] < t->shape[i]);
        if (i == t->n_dims - 1 && be > 1) {
            MER_ASSERT(idx[i] % (int64_t)be == 0);
            p += idx[i] / (int64_t)be * (int64_t)bb;
        } else {
            p += idx[i] * t->stride[i];
        }
    }
    return p;
}

// --- views -------------------------------------------------------------------------------------------

mer_status mer_tensor_reshape(const mer_tensor *t, int n_dims, const int64_t *shape, mer_tensor *out,
                              mer_err *err) {
    if (n_dims < 0 || n_dims > MER_MAX_DIMS)
        return mer__errf(err, MER_E_SHAPE, "reshape %s: %d dimensions", t->name ? t->name : "tensor", n_dims);
    if (!mer_tensor_is_contiguous(t))
        return mer__errf(err, MER_E_SHAPE, "reshape %s: tensor is not contiguous", t->name ? t->name : "tensor");
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0) return mer__errf(err, MER_E_SHAPE, "reshape: negative dimension");
        n *= shape[i];
    }
    if (n != mer_tensor_nelem(t))
        return mer__errf(err, MER_E_SHAPE, "reshape %s: %lld elements into %lld", t->name ? t->name : "tensor",
                         (long long)mer_tensor_nelem(t), (long long)n);
    size_t be = mer_dtype_block_elems(t->dtype);
    if (be > 1 && n_dims > 0 && shape[n_dims - 1] % (int64_t)be)
        return mer__errf(err, MER_E_SHAPE, "reshape %s: innermost dimension %lld is not a multiple of %zu",
                         t->name ? t->name : "tensor", (long long)shape[n_dims - 1], be);
    mer_tensor r = mer_tensor_make(t->dtype, t->backend, n_dims, shape, t->data);
    r.name = t->name;
    *out = r;
    return MER_OK;
}

mer_status mer_tensor_slice(const mer_tensor *t, int dim, int64_t start, int64_t len, mer_tensor *out,
                            mer_err *err) {
    const char *nm = t->name ? t->name : "tensor";
    if (dim < 0 || dim >= t->n_dims) return mer__errf(err, MER_E_RANGE, "slice %s: no dimension %d", nm, dim);
    if (start < 0 || len < 0 || start > t->shape[dim] || len > t->shape[dim] - start)
        return mer__errf(err, MER_E_RANGE, "slice %s: [%lld, %lld) outside dimension %d of size %lld", nm,
                         (long long)start, (long long)(start + len), dim, (long long)t->shape[dim]);
    mer_tensor r = *t;
    size_t be = mer_dtype_block_elems(t->dtype), bb = mer_dtype_block_bytes(t->dtype);
    if (dim == t->n_dims - 1 && be > 1) {
        if (start % (int64_t)be || len % (int64_t)be)
            return mer__errf(err, MER_E_RANGE, "slice %s: [%lld, %lld) splits a %s block", nm, (long long)start,
                             (long long)(start + len), mer_dtype_name(t->dtype));
        r.data = (uint8_t *)t->data + start / (int64_t)be * (int64_t)bb;
    } else {
        r.data = (uint8_t *)t->data + start * t->stride[dim];
    }
    r.shape[dim] = len;
    *out = r;
    return MER_OK;
}

mer_status mer_tensor_permute(const mer_tensor *t, const int *perm, mer_tensor *out, mer_err *err) {
    const char *nm = t->name ? t->name : "tensor";
    int seen[MER_MAX_DIMS] = {0};
    for (int i = 0; i < t->n_dims; i++) {
        if (perm[i] < 0 || perm[i] >= t->n_dims || seen[perm[i]])
            return mer__errf(err, MER_E_ARG, "permute %s: not a permutation of %d dimensions", nm, t->n_dims);
        seen[perm[i]] = 1;
    }
    if (mer_dtype_block_elems(t->dtype) > 1 && t->n_dims > 0 && perm[t->n_dims - 1] != t->n_dims - 1)
        return mer__errf(err, MER_E_UNSUPPORTED, "permute %s: %s blocks must stay innermost", nm,
                         mer_dtype_name(t->dtype));
    mer_tensor r = *t;
    for (int i = 0; i < t->n_dims; i++) {
        r.shape[i] = t->shape[perm[i]];
        r.stride[i] = t->stride[perm[i]];
    }
    *out = r;
    return MER_OK;
}

mer_status mer_tensor_transpose(const mer_tensor *t, int d0, int d1, mer_tensor *out, mer_err *err) {
    if (d0 < 0 || d1 < 0 || d0 >= t->n_dims || d1 >= t->n_dims)
        return mer__errf(err, MER_E_ARG, "transpose %s: dimensions %d, %d of %d", t->name ? t->name : "tensor",
                         d0, d1, t->n_dims);
    int perm[MER_MAX_DIMS];
    for (int i = 0; i < t->n_dims; i++) perm[i] = i;
    perm[d0] = d1;
    perm[d1] = d0;
    return mer_tensor_permute(t, perm, out, err);
}

// --- arena -------------------------------------------------------------------------------------------

mer_status mer_arena_init(mer_arena *a, size_t cap, mer_err *err) {
    memset(a, 0, sizeof *a);
    size_t c = (cap + MER_ALIGN - 1) / MER_ALIGN * MER_ALIGN;
    if (c < cap) return mer__errf(err, MER_E_NOMEM, "arena: %zu bytes is too large", cap);
    void *p = NULL;
    if (c && posix_memalign(&p, MER_ALIGN, c) != 0)
        return mer__errf(err, MER_E_NOMEM, "arena: cannot allocate %zu bytes", c);
    a->base = p;
    a->cap = c;
    a->backend = MER_BACKEND_CPU;
    a->owned = 1;
    return MER_OK;
}

void mer_arena_init_buffer(mer_arena *a, mer_backend b, void *mem, size_t cap) {
    memset(a, 0, sizeof *a);
    MER_ASSERT(((uintptr_t)mem % MER_ALIGN) == 0);
    a->base = mem;
    a->cap = cap;
    a->backend = b;
}

void mer_arena_free(mer_arena *a) {
    if (a->owned) free(a->base);
    memset(a, 0, sizeof *a);
}

void *mer_arena_alloc(mer_arena *a, size_t bytes, mer_err *err) {
    size_t n = (bytes + MER_ALIGN - 1) / MER_ALIGN * MER_ALIGN;
    if (n < bytes || n > a->cap - a->used) {
        mer__errf(err, MER_E_NOMEM, "arena: %zu bytes requested, %zu of %zu left", bytes, a->cap - a->used,
                  a->cap);
        return NULL;
    }
    void *p = a->base + a->used;
    a->used += n;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

mer_status mer_arena_tensor(mer_arena *a, mer_dtype t, int n_dims, const int64_t *shape, mer_tensor *out,
                            mer_err *err) {
    size_t be = mer_dtype_block_elems(t), bb = mer_dtype_block_bytes(t);
    if (!be || n_dims < 0 || n_dims > MER_MAX_DIMS)
        return mer__errf(err, MER_E_ARG, "arena tensor: bad dtype or %d dimensions", n_dims);
    size_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0 || mer__mul_ovf(n, (size_t)shape[i], &n))
            return mer__errf(err, MER_E_RANGE, "arena tensor: shape overflows");
    }
    if (n_dims > 0 && shape[n_dims - 1] % (int64_t)be)
        return mer__errf(err, MER_E_SHAPE, "arena tensor: innermost dimension %lld is not a multiple of %zu",
                         (long long)shape[n_dims - 1], be);
    size_t bytes;
    if (mer__mul_ovf(n / be, bb, &bytes)) return mer__errf(err, MER_E_RANGE, "arena tensor: size overflows");
    void *p = mer_arena_alloc(a, bytes, err);
    if (!p) return MER_E_NOMEM;
    *out = mer_tensor_make(t, a->backend, n_dims, shape, p);
    return MER_OK;
}
