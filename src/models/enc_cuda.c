/* enc_cuda.c - the device encoders' shared parts (see enc_cuda.h): device block lists, weight upload,
 * output staging, the CUDA-graph cache, and the pre-LN transformer encoder block on the backend's
 * kernels (LayerNorm -> fused q/k/v GEMM with bias -> non-causal attention -> out_proj GEMM with bias and
 * the residual in the epilogue -> LayerNorm -> fc1 GEMM with bias -> activation -> fc2 GEMM with bias and
 * residual). */
#include "models/enc_cuda.h"

#if MER_CUDA

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_enc.h"

// --- device blocks -----------------------------------------------------------------------------------

mer_status mer__dmem_alloc(mer__dmem *m, size_t n, void **out, mer_err *err) {
    *out = NULL;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        void **p = realloc(m->p, cap * sizeof *p);
        if (!p) return mer__errf(err, MER_E_NOMEM, "out of memory");
        m->p = p;
        m->cap = cap;
    }
    mer_status st = mer_cuda_alloc(m->c, n ? n : 16, out, err);
    if (st) return st;
    m->p[m->n++] = *out;
    return MER_OK;
}

void mer__dmem_release(mer__dmem *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) mer_cuda_release(m->c, m->p[i]);
    free(m->p);
    m->p = NULL;
    m->n = m->cap = 0;
}

mer_status mer__dmem_f32(mer__dmem *m, const float *src, size_t n, float **out, mer_err *err) {
    *out = NULL;
    if (!src) return MER_OK;
    void *p;
    mer_status st = mer__dmem_alloc(m, n * sizeof(float), &p, err);
    if (st) return st;
    *out = p;
    return mer_cuda_upload(m->c, p, src, n * sizeof(float), err);
}

mer_status mer__dmem_mat(mer__dmem *m, const float *src, size_t rows, size_t cols, mer_dtype t, void **out,
                         mer_err *err) {
    *out = NULL;
    const size_t n = rows * cols;
    if (t == MER_DTYPE_F32) return mer__dmem_f32(m, src, n, (float **)out, err);
    if (t != MER_DTYPE_BF16) return mer__errf(err, MER_E_UNSUPPORTED, "device encoder: weights as %s", mer_dtype_name(t));
    uint16_t *h = malloc(n * sizeof *h);
    if (!h) return mer__errf(err, MER_E_NOMEM, "out of memory (%zu weights)", n);
    for (size_t i = 0; i < n; i++) h[i] = mer_fp32_to_bf16(src[i]);
    void *p;
    mer_status st = mer__dmem_alloc(m, n * sizeof *h, &p, err);
    if (!st) st = mer_cuda_upload(m->c, p, h, n * sizeof *h, err);
    free(h);
    if (!st) *out = p;
    return st;
}

float mer__wmat_get(const mer_wmat *w, size_t i) {
    switch (w->dt) {
    case MER_DTYPE_F16: return mer_fp16_to_fp32(((const uint16_t *)w->data)[i]);
    case MER_DTYPE_BF16: return mer_bf16_to_fp32(((const uint16_t *)w->data)[i]);
    default: return ((const float *)w->data)[i];
    }
}

// --- output staging ----------------------------------------------------------------------------------

mer_status mer__stash_begin(mer__stash *s, size_t bytes, mer_err *err) {
    s->used = 0;
    s->n_items = 0;
    if (bytes <= s->cap) return MER_OK;
    mer_cuda_host_free(s->pinned);
    s->pinned = NULL;
    s->cap = 0;
    void *p;
    mer_status st = mer_cuda_host_alloc(bytes, &p, err);
    if (st) return st;
    s->pinned = p;
    s->cap = bytes;
    return MER_OK;
}

mer_status mer__stash_add(mer__stash *s, struct mer_cuda *c, void *dst, const void *src_dev, size_t n, mer_err *err) {
    if (!n) return MER_OK;
    if (n > s->cap - s->used) return mer__errf(err, MER_E_ARG, "device encoder: staging area overflow (internal)");
    if (s->n_items == s->cap_items) {
        size_t cap = s->cap_items ? s->cap_items * 2 : 64;
        mer__stash_item *it = realloc(s->items, cap * sizeof *it);
        if (!it) return mer__errf(err, MER_E_NOMEM, "out of memory");
        s->items = it;
        s->cap_items = cap;
    }
    mer_status st = mer_cuda_download_async(c, s->pinned + s->used, src_dev, n, err);
    if (st) return st;
    s->items[s->n_items++] = (mer__stash_item){.dst = dst, .off = s->used, .n = n};
    s->used += (n + 255) & ~(size_t)255;
    if (s->used > s->cap) s->used = s->cap;
    return MER_OK;
}

mer_status mer__stash_finish(mer__stash *s, struct mer_cuda *c, mer_err *err) {
    mer_status st = mer_cuda_sync(c, err);
    if (st) return st;
    for (size_t i = 0; i < s->n_items; i++) memcpy(s->items[i].dst, s->pinned + s->items[i].off, s->items[i].n);
    s->n_items = 0;
    s->used = 0;
    return MER_OK;
}

void mer__stash_free(mer__stash *s) {
    if (!s) return;
    mer_cuda_host_free(s->pinned);
    free(s->items);
    memset(s, 0, sizeof *s);
}

// --- CUDA-graph cache --------------------------------------------------------------------------------

void mer__graphs_init(mer__graphs *gs, struct mer_cuda *c) {
    memset(gs, 0, sizeof *gs);
    gs->c = c;
    const char *v = getenv("MER_CUDA_ENC_GRAPH");
    gs->on = !(v && !strcmp(v, "0"));
}

void mer__graphs_free(mer__graphs *gs) {
    for (int i = 0; i < gs->n; i++) mer_cuda_graph_free(gs->e[i].graph);
    gs->n = 0;
}

void mer__graphs_set(mer__graphs *gs, int on) {
    if (!on) mer__graphs_free(gs);
    gs->on = on;
}

static int key_eq(const mer__graph_key *a, const mer__graph_key *b) {
    for (int j = 0; j < 4; j++)
        if (a->v[j] != b->v[j]) return 0;
    return 1;
}

mer_status mer__graphs_run(mer__graphs *gs, mer__graph_key key, mer__graph_fn fn, void *ctx, mer_err *err) {
    int i;
    for (i = 0; i < gs->n; i++)
        if (key_eq(&gs->e[i].key, &key)) break;
    if (!gs->on || i == gs->n) {
        if (gs->on && gs->n < MER__MAX_GRAPHS) {
            gs->e[gs->n].key = key;
            gs->e[gs->n++].graph = NULL;
        }
        return fn(ctx, err);
    }
    mer_status st;
    if (!gs->e[i].graph) {
        if ((st = mer_cuda_begin_capture(gs->c, err))) return st;
        mer_status fst = fn(ctx, err);
        mer_cuda_graph *gr = NULL;
        st = mer_cuda_end_capture(gs->c, fst != MER_OK, &gr, err);
        if (fst || st || !gr) { /* capture refused: run eagerly from now on */
            mer_cuda_graph_free(gr);
            mer__graphs_set(gs, 0);
            return fn(ctx, err);
        }
        gs->e[i].graph = gr;
    }
    return mer_cuda_graph_launch(gs->c, gs->e[i].graph, err);
}

// --- the encoder block -------------------------------------------------------------------------------

mer_status mer__enc_init(mer__enc *e, mer__dmem *m, mer_dtype at, int D, int F, int H, int n_layer, float eps, int act,
                         int max_rows, mer_err *err) {
    memset(e, 0, sizeof *e);
    if (at != MER_DTYPE_BF16 && at != MER_DTYPE_F32)
        return mer__errf(err, MER_E_UNSUPPORTED, "device encoder: weights as %s (bf16 or f32)", mer_dtype_name(at));
    if (D < 8 || F < 8 || H < 1 || D % H || n_layer < 1 || max_rows < 1)
        return mer__errf(err, MER_E_ARG, "device encoder: width %d, MLP %d, %d heads, %d layers", D, F, H, n_layer);
    const int d = D / H;
    if (D % 8 || F % 8 || d % 8 || d > 256)
        return mer__errf(err, MER_E_UNSUPPORTED,
                         "device encoder: widths must be multiples of 8 and the head size at most 256 (width %d, MLP %d, "
                         "head %d)",
                         D, F, d);
    e->c = m->c;
    e->at = at;
    e->D = D, e->F = F, e->H = H, e->n_layer = n_layer, e->act = act, e->eps = eps, e->max_rows = max_rows;
    e->layers = calloc((size_t)n_layer, sizeof *e->layers);
    if (!e->layers) return mer__errf(err, MER_E_NOMEM, "out of memory");
    const size_t es = at == MER_DTYPE_F32 ? 4 : 2, R = (size_t)max_rows;
    mer_status st;
    if ((st = mer__dmem_alloc(m, R * D * es, &e->xn, err)) || (st = mer__dmem_alloc(m, R * 3 * D * es, &e->qkv, err)) ||
        (st = mer__dmem_alloc(m, R * D * es, &e->att, err)) || (st = mer__dmem_alloc(m, R * F * es, &e->f, err)))
        return st;
    return MER_OK;
}

void mer__enc_free(mer__enc *e) {
    if (!e) return;
    free(e->layers);
    e->layers = NULL;
}

static mer_status up_wmat(mer__enc *e, mer__dmem *m, const mer_wmat *w, size_t rows, size_t cols, void **out,
                          mer_err *err) {
    float *h = malloc(rows * cols * sizeof *h);
    if (!h) return mer__errf(err, MER_E_NOMEM, "out of memory");
    for (size_t i = 0; i < rows * cols; i++) h[i] = mer__wmat_get(w, i);
    mer_status st = mer__dmem_mat(m, h, rows, cols, e->at, out, err);
    free(h);
    return st;
}

mer_status mer__enc_set_layer(mer__enc *e, mer__dmem *m, int i, const mer__enc_layer_src *s, mer_err *err) {
    const size_t D = (size_t)e->D, F = (size_t)e->F;
    mer__enc_layer *L = &e->layers[i];
    mer_status st;
    float *h = malloc(3 * D * D * sizeof *h), *b = calloc(3 * D, sizeof *b);
    if (!h || !b) {
        free(h);
        free(b);
        return mer__errf(err, MER_E_NOMEM, "out of memory");
    }
    const mer_wmat *qkv[3] = {s->q, s->k, s->v};
    const float *qkv_b[3] = {s->q_b, s->k_b, s->v_b};
    for (int j = 0; j < 3; j++) {
        for (size_t x = 0; x < D * D; x++) h[j * D * D + x] = mer__wmat_get(qkv[j], x);
        if (qkv_b[j]) memcpy(b + j * D, qkv_b[j], D * sizeof *b);
    }
    st = mer__dmem_mat(m, h, 3 * D, D, e->at, &L->wqkv, err);
    if (!st) st = mer__dmem_f32(m, b, 3 * D, &L->bqkv, err);
    free(h);
    free(b);
    if (st) return st;
    if ((st = up_wmat(e, m, s->o, D, D, &L->wo, err)) || (st = up_wmat(e, m, s->fc1, F, D, &L->w1, err)) ||
        (st = up_wmat(e, m, s->fc2, D, F, &L->w2, err)) || (st = mer__dmem_f32(m, s->o_b, D, &L->bo, err)) ||
        (st = mer__dmem_f32(m, s->fc1_b, F, &L->b1, err)) || (st = mer__dmem_f32(m, s->fc2_b, D, &L->b2, err)) ||
        (st = mer__dmem_f32(m, s->ln1_w, D, &L->ln1_w, err)) || (st = mer__dmem_f32(m, s->ln1_b, D, &L->ln1_b, err)) ||
        (st = mer__dmem_f32(m, s->ln2_w, D, &L->ln2_w, err)) || (st = mer__dmem_f32(m, s->ln2_b, D, &L->ln2_b, err)))
        return st;
    return MER_OK;
}

mer_status mer__enc_block(mer__enc *e, int i, float *h, int n_seq, int T, mer_err *err) {
    mer_cuda *c = e->c;
    const mer__enc_layer *L = &e->layers[i];
    const int D = e->D, F = e->F, H = e->H, N = n_seq * T, d = D / H;
    const mer_dtype at = e->at;
    if (n_seq < 1 || T < 1 || N > e->max_rows)
        return mer__errf(err, MER_E_ARG, "device encoder: %d x %d rows (at most %d)", n_seq, T, e->max_rows);
    mer_status st;
    if ((st = mer_cuda_layernorm(c, e->xn, at, D, h, D, L->ln1_w, L->ln1_b, N, D, 1, 1, e->eps, MER_CUDA_ACT_NONE, err)) ||
        (st = mer_cuda_gemm_bias(c, e->qkv, at, 3 * D, e->xn, D, L->wqkv, at, L->bqkv, N, D, 3 * D, 0, err)) ||
        (st = mer_cuda_attn_full(c, e->att, D, e->qkv, 3 * D, D, 2 * D, at, n_seq, T, H, d, 1.0f / sqrtf((float)d), err)) ||
        (st = mer_cuda_gemm_bias(c, h, MER_DTYPE_F32, D, e->att, D, L->wo, at, L->bo, N, D, D, 1, err)) ||
        (st = mer_cuda_layernorm(c, e->xn, at, D, h, D, L->ln2_w, L->ln2_b, N, D, 1, 1, e->eps, MER_CUDA_ACT_NONE, err)) ||
        (st = mer_cuda_gemm_bias(c, e->f, at, F, e->xn, D, L->w1, at, L->b1, N, D, F, 0, err)) ||
        (st = mer_cuda_bias_act(c, e->f, at, NULL, N, F, (mer_cuda_act)e->act, err)) ||
        (st = mer_cuda_gemm_bias(c, h, MER_DTYPE_F32, D, e->f, F, L->w2, at, L->b2, N, F, D, 1, err)))
        return st;
    return MER_OK;
}

#else

typedef int mer__enc_cuda_unused; /* this file is empty without CUDA */

#endif
