/* tensor.h - the tensor descriptor every layer passes around, views over it, and the activation arena.
 *
 * A mer_tensor is a small value type: dtype, backend, shape and byte strides, and a data pointer it does
 * NOT own. Shapes are in PyTorch order, outermost first (shape[n_dims-1] is the contiguous, fastest
 * dimension), the same order mer_wtensor uses; strides are in bytes. For the block types q8_0/q4_0 the
 * innermost dimension must be contiguous and a multiple of 32, and stride[n_dims-1] is 0 (meaningless);
 * the outer strides are in bytes of whole rows. Views (reshape, slice, permute/transpose) only rewrite
 * the descriptor.
 *
 * Backends: a tensor says where its bytes live (MER_BACKEND_CPU: host memory; MER_BACKEND_CUDA: device
 * memory). Layer code dispatches on it; the CPU kernels are in kernels/kernels.h, and every backend
 * provides the same set of operations through a mer_backend_ops table (kernels/ops.h).
 *
 * The arena (mer_arena) is a bump allocator for activations: sized once when a model context is made,
 * so a forward pass never calls malloc. Mark/reset give scoped scratch inside a layer. An arena can own
 * host memory or wrap a buffer the caller allocated on any backend (e.g. with cudaMalloc).
 *
 * Thread-safety: descriptors are plain values; an arena is used by one thread at a time. */
#ifndef MER_TENSOR_H
#define MER_TENSOR_H

#include "core/core.h"
#include "core/dtype.h"

#define MER_MAX_DIMS 8 /* same value (and meaning) as in io/weights.h */
#define MER_ALIGN 64   /* alignment of arena allocations, in bytes */

typedef enum mer_backend {
    MER_BACKEND_CPU = 0,
    MER_BACKEND_CUDA = 1,
    MER_BACKEND_COUNT
} mer_backend;

typedef struct mer_tensor {
    mer_dtype dtype;
    mer_backend backend;
    int n_dims;                    /* 0 (a scalar) .. MER_MAX_DIMS */
    int64_t shape[MER_MAX_DIMS];   /* outermost first; unused entries are 1 */
    int64_t stride[MER_MAX_DIMS];  /* bytes; see above for block types */
    void *data;                    /* not owned; address of element [0, 0, ...] */
    const char *name;              /* optional, for messages (not owned) */
} mer_tensor;

/* Name of a backend ("cpu", "cuda"). */
const char *mer_backend_name(mer_backend b);

// --- descriptors -------------------------------------------------------------------------------------

/* A contiguous row-major tensor over `data` (not copied, not owned). n_dims in [0, MER_MAX_DIMS],
 * every shape entry >= 0, and for block types shape[n_dims-1] a multiple of the block size; these are
 * programmer errors (MER_ASSERT). */
mer_tensor mer_tensor_make(mer_dtype t, mer_backend b, int n_dims, const int64_t *shape, void *data);
/* Shorthands for host tensors of 1, 2, 3 and 4 dimensions (outermost first). */
mer_tensor mer_tensor_1d(mer_dtype t, int64_t n0, void *data);
mer_tensor mer_tensor_2d(mer_dtype t, int64_t n0, int64_t n1, void *data);
mer_tensor mer_tensor_3d(mer_dtype t, int64_t n0, int64_t n1, int64_t n2, void *data);
mer_tensor mer_tensor_4d(mer_dtype t, int64_t n0, int64_t n1, int64_t n2, int64_t n3, void *data);

/* Number of elements (product of the shape; 1 for a scalar). */
int64_t mer_tensor_nelem(const mer_tensor *t);
/* Bytes spanned by a contiguous tensor of this dtype and shape. */
size_t mer_tensor_nbytes(const mer_tensor *t);
/* 1 if the strides are those of mer_tensor_make for this shape (dimensions of size 1 are ignored). */
int mer_tensor_is_contiguous(const mer_tensor *t);
/* 1 if shapes are equal (dtype, backend and strides ignored). */
int mer_tensor_same_shape(const mer_tensor *a, const mer_tensor *b);
/* Rows of the innermost dimension: nelem / shape[n_dims-1] (1 for a scalar). */
int64_t mer_tensor_nrows(const mer_tensor *t);
/* Address of element idx[0..n_dims) (no bounds check beyond MER_ASSERT in debug use). For block types
 * the innermost index must be a multiple of the block size. */
void *mer_tensor_ptr(const mer_tensor *t, const int64_t *idx);

// --- views (descriptor only; the data is shared) -----------------------------------------------------

/* Same data, new shape with the same element count; t must be contiguous. MER_E_SHAPE otherwise. */
mer_status mer_tensor_reshape(const mer_tensor *t, int n_dims, const int64_t *shape, mer_tensor *out,
                              mer_err *err);
/* Elements [start, start + len) of dimension dim. MER_E_RANGE when out of bounds; for block types the
 * innermost dimension may only be sliced at block boundaries. */
mer_status mer_tensor_slice(const mer_tensor *t, int dim, int64_t start, int64_t len, mer_tensor *out,
                            mer_err *err);
/* out.shape[i] = t.shape[perm[i]] (a permutation of 0..n_dims-1). Block types must keep their innermost
 * dimension in place. The result is usually not contiguous. */
mer_status mer_tensor_permute(const mer_tensor *t, const int *perm, mer_tensor *out, mer_err *err);
/* Swaps dimensions d0 and d1 (a permute). */
mer_status mer_tensor_transpose(const mer_tensor *t, int d0, int d1, mer_tensor *out, mer_err *err);

// --- arena -------------------------------------------------------------------------------------------

typedef struct mer_arena {
    uint8_t *base;     /* MER_ALIGN-aligned */
    size_t cap;        /* bytes */
    size_t used;       /* bytes handed out (high-water mark is `peak`) */
    size_t peak;
    mer_backend backend;
    int owned;         /* base was allocated by mer_arena_init */
} mer_arena;

/* Allocates `cap` bytes of host memory for the arena. MER_E_NOMEM on failure (the arena is then
 * zeroed and needs no free). */
mer_status mer_arena_init(mer_arena *a, size_t cap, mer_err *err);
/* Wraps caller memory (any backend; `mem` aligned to MER_ALIGN; not freed by mer_arena_free). */
void mer_arena_init_buffer(mer_arena *a, mer_backend b, void *mem, size_t cap);
/* Frees owned memory; zeroes the arena. A zeroed arena is a no-op. */
void mer_arena_free(mer_arena *a);

/* Returns `bytes` (rounded up to MER_ALIGN) of arena memory, or NULL with MER_E_NOMEM in err when the
 * arena is full (the message says how much was asked and how much is left). Not zeroed. */
void *mer_arena_alloc(mer_arena *a, size_t bytes, mer_err *err);
/* A contiguous tensor of the given dtype/shape in arena memory (backend = the arena's). */
mer_status mer_arena_tensor(mer_arena *a, mer_dtype t, int n_dims, const int64_t *shape, mer_tensor *out,
                            mer_err *err);
/* Scoped use: m = mer_arena_mark(a); ... allocations ...; mer_arena_reset(a, m) frees them all. */
static inline size_t mer_arena_mark(const mer_arena *a) { return a->used; }
static inline void mer_arena_reset(mer_arena *a, size_t mark) { if (mark <= a->used) a->used = mark; }

#endif
