/* enc_cuda.h - what the device encoders (clip_cuda.c, hubert_cuda.c) share: a list of device blocks
 * released together, weight upload helpers (host f32 or any mer_wmat dtype -> bf16 or f32 on the
 * device), a pinned staging area that collects asynchronous downloads of outputs and hands them to host
 * pointers after one synchronisation, a cache of CUDA graphs of the forward keyed by the call's shape,
 * and THE pre-LN transformer encoder block both models are made of:
 *   h += out_proj(attention(qkv_proj(LN1(h))))   (fused q/k/v projection with bias, non-causal)
 *   h += fc2(act(fc1(LN2(h))))                   (act: GELU or quick-GELU)
 * over a batch of n_seq sequences of T tokens (rows b*T + t of the f32 residual stream h). Internal to
 * src/models; only in builds with MER_CUDA=1 (the declarations are harmless otherwise). */
#ifndef MER_MODELS_ENC_CUDA_H
#define MER_MODELS_ENC_CUDA_H

#include "core/core.h"
#include "core/dtype.h"
#include "models/wload.h"

struct mer_cuda;

// --- device blocks -----------------------------------------------------------------------------------

typedef struct mer__dmem {
    struct mer_cuda *c;
    void **p;
    size_t n, cap;
} mer__dmem;

/* n bytes from c's allocator, remembered in m (m->c set by the caller). */
mer_status mer__dmem_alloc(mer__dmem *m, size_t n, void **out, mer_err *err);
/* Releases every block of m to the allocator and empties it. */
void mer__dmem_release(mer__dmem *m);
/* Uploads n floats (NULL src gives *out = NULL). */
mer_status mer__dmem_f32(mer__dmem *m, const float *src, size_t n, float **out, mer_err *err);
/* Uploads a host f32 matrix [rows][cols] as dtype t (bf16 rounded to nearest even, or f32). */
mer_status mer__dmem_mat(mer__dmem *m, const float *src, size_t rows, size_t cols, mer_dtype t, void **out,
                         mer_err *err);
/* Element i of a weight matrix view (f32, f16 or bf16) as a float. */
float mer__wmat_get(const mer_wmat *w, size_t i);

// --- output staging ----------------------------------------------------------------------------------

typedef struct mer__stash_item {
    void *dst;
    size_t off, n;
} mer__stash_item;

typedef struct mer__stash {
    unsigned char *pinned; /* mer_cuda_host_alloc */
    size_t cap, used;
    mer__stash_item *items;
    size_t n_items, cap_items;
} mer__stash;

/* Makes room for `bytes` of downloads in this round (call before queueing any; drops earlier items). */
mer_status mer__stash_begin(mer__stash *s, size_t bytes, mer_err *err);
/* Queues a download of n bytes at src_dev (stream order) to host dst, delivered by mer__stash_finish. */
mer_status mer__stash_add(mer__stash *s, struct mer_cuda *c, void *dst, const void *src_dev, size_t n, mer_err *err);
/* Synchronises the stream and copies every queued download to its destination. */
mer_status mer__stash_finish(mer__stash *s, struct mer_cuda *c, mer_err *err);
void mer__stash_free(mer__stash *s);

// --- CUDA-graph cache --------------------------------------------------------------------------------

#define MER__MAX_GRAPHS 8

/* What a captured forward depends on besides the model's own buffers: the call's shape arguments
 * (CLIP: n, emb; HuBERT: n, len, layer, hf5), unused ones 0. */
typedef struct mer__graph_key {
    long v[4];
} mer__graph_key;

/* A model's captured forwards, one per key, at most MER__MAX_GRAPHS (further keys run eagerly). */
typedef struct mer__graphs {
    struct mer_cuda *c;
    int on; /* replay from graphs (MER_CUDA_ENC_GRAPH=0 in the environment turns it off at init) */
    int n;
    struct {
        mer__graph_key key;
        struct mer_cuda_graph *graph; /* NULL after the first (eager) call: captured on the second */
    } e[MER__MAX_GRAPHS];
} mer__graphs;

/* The forward a graph holds: device work only on c's stream, the same for the same key. */
typedef mer_status (*mer__graph_fn)(void *ctx, mer_err *err);

/* An empty cache for c, on unless MER_CUDA_ENC_GRAPH=0. */
void mer__graphs_init(mer__graphs *gs, struct mer_cuda *c);
/* Turns replay on or off; off frees every graph. */
void mer__graphs_set(mer__graphs *gs, int on);
/* Runs fn(ctx): eagerly on a key's first call (the plans and allocations it makes are then in place),
 * captured into a graph and launched on its second, replayed from the graph after that. A capture the
 * backend refuses turns the cache off and runs fn eagerly. */
mer_status mer__graphs_run(mer__graphs *gs, mer__graph_key key, mer__graph_fn fn, void *ctx, mer_err *err);
/* Frees every graph (call with the stream idle). */
void mer__graphs_free(mer__graphs *gs);

// --- the encoder block -------------------------------------------------------------------------------

typedef struct mer__enc_layer {
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    void *wqkv; /* [3D][D]: q, k, v rows */
    float *bqkv;
    void *wo;   /* [D][D] */
    float *bo;
    void *w1;   /* [F][D] */
    float *b1;
    void *w2;   /* [D][F] */
    float *b2;
} mer__enc_layer;

typedef struct mer__enc {
    struct mer_cuda *c;
    mer_dtype at;  /* weights and activations: bf16 or f32 */
    int D, F, H, n_layer, act; /* act: a mer_cuda_act */
    float eps;
    int max_rows;
    mer__enc_layer *layers;
    void *xn, *qkv, *att, *f; /* [max_rows][D], [max_rows][3D], [max_rows][D], [max_rows][F] of at */
} mer__enc;

/* The host side of one layer: norms and biases f32 (biases may be NULL), matrices as loaded. */
typedef struct mer__enc_layer_src {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    const mer_wmat *q, *k, *v, *o, *fc1, *fc2;
    const float *q_b, *k_b, *v_b, *o_b, *fc1_b, *fc2_b;
} mer__enc_layer_src;

/* Sets up e for n_layer layers of width D, MLP width F, H heads, activation act (mer_cuda_act), with
 * activation buffers for max_rows rows; device memory from m. MER_E_UNSUPPORTED for shapes the kernels
 * cannot take. */
mer_status mer__enc_init(mer__enc *e, mer__dmem *m, mer_dtype at, int D, int F, int H, int n_layer, float eps, int act,
                         int max_rows, mer_err *err);
/* Uploads layer i from src. */
mer_status mer__enc_set_layer(mer__enc *e, mer__dmem *m, int i, const mer__enc_layer_src *src, mer_err *err);
/* Runs layer i on h (device f32 [n_seq*T][D], updated in place); n_seq*T <= max_rows. */
mer_status mer__enc_block(mer__enc *e, int i, float *h_dev, int n_seq, int T, mer_err *err);
/* Frees the host side (device memory belongs to the mer__dmem). */
void mer__enc_free(mer__enc *e);

#endif
