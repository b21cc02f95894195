/* clip_cuda.c - the CLIP vision tower on a CUDA device (see clip_cuda.h): weight upload (the patch
 * kernel flattened and zero-padded to a multiple of 8 columns, blocks through enc_cuda), and the batched
 * forward: im2col of the patches + one GEMM, class token and positions, pre_layrnorm, the encoder
 * blocks, post_layernorm of the class rows and the projection; outputs are downloaded through a pinned
 * staging area and handed over after one synchronisation. */
#include "models/clip_cuda.h"

#include <stdlib.h>
#include <string.h>

#if MER_CUDA

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_enc.h"
#include "models/enc_cuda.h"

struct mer_clip_cuda {
    mer_clip_hparams hp;
    mer_cuda *c;
    mer_dtype at;
    int max_images, kp, np, ld_emb;
    mer__dmem mem;
    mer__enc enc;
    mer__stash stash;
    void *patch_w;  /* [D][kp] */
    float *cls, *pos, *pre_w, *pre_b, *post_w, *post_b;
    void *proj;     /* [n_proj][D] or NULL */
    float *img;     /* [max][C][S][S] */
    void *cols;     /* [max * np][kp] */
    float *patch;   /* [max * np][D] */
    float *h;       /* [max * T][D] */
    float *pooled;  /* [max][D] */
    void *pooled_a; /* [max][D] in the activation dtype (== pooled for f32) */
    float *emb;     /* [max][ld_emb] */
    mer__graphs graphs; /* key (n, emb) */
};

void mer_clip_cuda_set_graph(mer_clip_cuda *g, int on) {
    if (g) mer__graphs_set(&g->graphs, on);
}

void mer_clip_cuda_free(mer_clip_cuda *g) {
    if (!g) return;
    if (g->c) (void)mer_cuda_sync(g->c, NULL);
    mer__graphs_free(&g->graphs);
    mer__stash_free(&g->stash);
    mer__enc_free(&g->enc);
    mer__dmem_release(&g->mem);
    free(g);
}

const mer_clip_hparams *mer_clip_cuda_hparams(const mer_clip_cuda *g) { return g ? &g->hp : NULL; }

mer_status mer_clip_cuda_from_model(const mer_clip *m, struct mer_cuda *c, int max_images, mer_dtype wtype,
                                    mer_clip_cuda **out, mer_err *err) {
    mer_status st;
    float *hw = NULL;
    *out = NULL;
    if (!m || !c || max_images < 1 || max_images > 4096)
        return mer__errf(err, MER_E_ARG, "clip cuda: NULL model or context, or max_images %d (1..4096)", max_images);
    mer_clip_cuda *g = calloc(1, sizeof *g);
    if (!g) return mer__errf(err, MER_E_NOMEM, "out of memory");
    g->hp = m->hp;
    g->c = c;
    g->at = wtype;
    g->max_images = max_images;
    g->mem.c = c;
    mer__graphs_init(&g->graphs, c);
    const mer_clip_hparams *hp = &g->hp;
    const int D = hp->n_embd, T = hp->n_tok, C = hp->n_channels, P = hp->patch, S = hp->image_size;
    const int K = C * P * P, side = S / P;
    g->kp = (K + 7) & ~7;
    g->np = side * side;
    g->ld_emb = (hp->n_proj + 3) & ~3;
    const size_t B = (size_t)max_images, es = wtype == MER_DTYPE_F32 ? 4 : 2;
    if ((st = mer__enc_init(&g->enc, &g->mem, wtype, D, hp->n_ff, hp->n_head, hp->n_layer, hp->ln_eps,
                            hp->quick_gelu ? MER_CUDA_ACT_QUICK_GELU : MER_CUDA_ACT_GELU, max_images * T, err)))
        goto fail;
    for (int i = 0; i < hp->n_layer; i++) {
        const mer_clip_layer *l = &m->layers[i];
        mer__enc_layer_src s = {.ln1_w = l->ln1_w, .ln1_b = l->ln1_b, .ln2_w = l->ln2_w, .ln2_b = l->ln2_b,
                                .q = &l->q, .k = &l->k, .v = &l->v, .o = &l->o, .fc1 = &l->fc1, .fc2 = &l->fc2,
                                .q_b = l->q_b, .k_b = l->k_b, .v_b = l->v_b, .o_b = l->o_b, .fc1_b = l->fc1_b,
                                .fc2_b = l->fc2_b};
        if ((st = mer__enc_set_layer(&g->enc, &g->mem, i, &s, err))) goto fail;
    }
    hw = calloc((size_t)D * g->kp, sizeof *hw);
    if (!hw) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int o = 0; o < D; o++)
        for (int j = 0; j < K; j++) hw[(size_t)o * g->kp + j] = mer__wmat_get(&m->patch_w, (size_t)o * K + j);
    if ((st = mer__dmem_mat(&g->mem, hw, (size_t)D, (size_t)g->kp, wtype, &g->patch_w, err))) goto fail;
    free(hw);
    hw = NULL;
    if (hp->n_proj) {
        hw = malloc((size_t)hp->n_proj * D * sizeof *hw);
        if (!hw) {
            st = mer__errf(err, MER_E_NOMEM, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < (size_t)hp->n_proj * D; i++) hw[i] = mer__wmat_get(&m->proj, i);
        if ((st = mer__dmem_mat(&g->mem, hw, (size_t)hp->n_proj, (size_t)D, wtype, &g->proj, err))) goto fail;
        free(hw);
        hw = NULL;
    }
    if ((st = mer__dmem_f32(&g->mem, m->class_emb, D, &g->cls, err)) ||
        (st = mer__dmem_f32(&g->mem, m->pos_emb, (size_t)T * D, &g->pos, err)) ||
        (st = mer__dmem_f32(&g->mem, m->pre_ln_w, D, &g->pre_w, err)) ||
        (st = mer__dmem_f32(&g->mem, m->pre_ln_b, D, &g->pre_b, err)) ||
        (st = mer__dmem_f32(&g->mem, m->post_ln_w, D, &g->post_w, err)) ||
        (st = mer__dmem_f32(&g->mem, m->post_ln_b, D, &g->post_b, err)))
        goto fail;
    void *p;
    if ((st = mer__dmem_alloc(&g->mem, B * C * S * S * 4, &p, err))) goto fail;
    g->img = p;
    if ((st = mer__dmem_alloc(&g->mem, B * g->np * g->kp * es, &g->cols, err))) goto fail;
    if ((st = mer__dmem_alloc(&g->mem, B * g->np * D * 4, &p, err))) goto fail;
    g->patch = p;
    if ((st = mer__dmem_alloc(&g->mem, B * T * D * 4, &p, err))) goto fail;
    g->h = p;
    if ((st = mer__dmem_alloc(&g->mem, B * D * 4, &p, err))) goto fail;
    g->pooled = p;
    if (wtype == MER_DTYPE_F32) g->pooled_a = g->pooled;
    else if ((st = mer__dmem_alloc(&g->mem, B * D * es, &g->pooled_a, err))) goto fail;
    if ((st = mer__dmem_alloc(&g->mem, B * g->ld_emb * 4, &p, err))) goto fail;
    g->emb = p;
    *out = g;
    return MER_OK;
fail:
    free(hw);
    mer_clip_cuda_free(g);
    return st;
}

/* The whole tower on g->img for n images, to post_layernorm of the class rows (g->pooled, and the
 * activation-dtype copy) and, with emb, the projection (g->emb): no host work, so it can be captured. */
static mer_status forward_pooled(mer_clip_cuda *g, int n, int emb, mer_err *err) {
    const mer_clip_hparams *hp = &g->hp;
    mer_cuda *c = g->c;
    const int T = hp->n_tok, D = hp->n_embd;
    mer_status st;
    if ((st = mer_cuda_im2col_patch(c, g->cols, g->at, g->kp, g->img, n, hp->n_channels, hp->image_size, hp->patch,
                                    err)) ||
        (st = mer_cuda_gemm_bias(c, g->patch, MER_DTYPE_F32, D, g->cols, g->kp, g->patch_w, g->at, NULL, n * g->np, g->kp,
                                 D, 0, err)) ||
        (st = mer_cuda_clip_embed(c, g->h, g->patch, g->cls, g->pos, n, T, D, err)) ||
        (st = mer_cuda_layernorm(c, g->h, MER_DTYPE_F32, D, g->h, D, g->pre_w, g->pre_b, n * T, D, 1, 1, hp->ln_eps,
                                 MER_CUDA_ACT_NONE, err)))
        return st;
    for (int li = 0; li < hp->n_layer; li++)
        if ((st = mer__enc_block(&g->enc, li, g->h, n, T, err))) return st;
    if ((st = mer_cuda_layernorm(c, g->pooled, MER_DTYPE_F32, D, g->h, D, g->post_w, g->post_b, n, D, 1, T, hp->ln_eps,
                                 MER_CUDA_ACT_NONE, err)))
        return st;
    if (!emb) return MER_OK;
    if (g->pooled_a != g->pooled &&
        (st = mer_cuda_layernorm(c, g->pooled_a, g->at, D, g->h, D, g->post_w, g->post_b, n, D, 1, T, hp->ln_eps,
                                 MER_CUDA_ACT_NONE, err)))
        return st;
    return mer_cuda_gemm_bias(c, g->emb, MER_DTYPE_F32, g->ld_emb, g->pooled_a, D, g->proj, g->at, NULL, n, D, hp->n_proj,
                              0, err);
}

typedef struct pooled_args {
    mer_clip_cuda *g;
    int n, emb;
} pooled_args;

static mer_status pooled_fn(void *ctx, mer_err *err) {
    const pooled_args *a = ctx;
    return forward_pooled(a->g, a->n, a->emb, err);
}

/* forward_pooled, replayed from a CUDA graph per (n, emb) from its second call on. */
static mer_status run_pooled(mer_clip_cuda *g, int n, int emb, mer_err *err) {
    pooled_args a = {g, n, emb};
    return mer__graphs_run(&g->graphs, (mer__graph_key){{n, emb}}, pooled_fn, &a, err);
}

mer_status mer_clip_cuda_encode_dev(mer_clip_cuda *g, const float *pixels_dev, int n, const mer_clip_out *out,
                                    mer_err *err) {
    if (!g || !pixels_dev || !out) return mer__errf(err, MER_E_ARG, "mer_clip_cuda_encode: NULL argument");
    if (n < 1 || n > g->max_images)
        return mer__errf(err, MER_E_ARG, "clip cuda: %d images (1..%d for this model)", n, g->max_images);
    const mer_clip_hparams *hp = &g->hp;
    mer_cuda *c = g->c;
    const int T = hp->n_tok, D = hp->n_embd, L = hp->n_layer;
    const size_t TD = (size_t)T * D;
    int last = 0, pool = 0, any_hidden = 0;
    size_t bytes = 0;
    for (int b = 0; b < n; b++) {
        const mer_clip_out *o = &out[b];
        if (o->image_embeds && !hp->n_proj)
            return mer__errf(err, MER_E_ARG, "CLIP: image features asked of a checkpoint without visual_projection");
        if (o->image_embeds || o->pooled || o->last_hidden) last = L;
        if (o->image_embeds || o->pooled) pool = 1;
        if (o->hidden)
            for (int i = 0; i <= L; i++)
                if (o->hidden[i]) {
                    any_hidden = 1;
                    if (i > last) last = i;
                    bytes += TD * 4 + 256;
                }
        if (o->last_hidden) bytes += TD * 4 + 256, any_hidden = 1;
        if (o->pooled) bytes += (size_t)D * 4 + 256;
        if (o->image_embeds) bytes += (size_t)hp->n_proj * 4 + 256;
    }
    mer_status st;
    if ((st = mer__stash_begin(&g->stash, bytes, err))) return st;
    if (pool && last == L && !any_hidden) { /* features only: the graph path */
        if (pixels_dev != g->img &&
            (st = mer_cuda_copy_d2d(c, g->img, pixels_dev, (size_t)n * hp->n_channels * hp->image_size * hp->image_size *
                                                               sizeof(float),
                                    err)))
            return st;
        int emb = 0;
        for (int b = 0; b < n; b++) emb |= out[b].image_embeds != NULL;
        if ((st = run_pooled(g, n, emb, err))) return st;
        for (int b = 0; b < n; b++) {
            if (out[b].pooled &&
                (st = mer__stash_add(&g->stash, c, out[b].pooled, g->pooled + (size_t)b * D, (size_t)D * 4, err)))
                return st;
            if (out[b].image_embeds && (st = mer__stash_add(&g->stash, c, out[b].image_embeds,
                                                            g->emb + (size_t)b * g->ld_emb, (size_t)hp->n_proj * 4, err)))
                return st;
        }
        return mer__stash_finish(&g->stash, c, err);
    }
#define STASH_HIDDEN(idx)                                                                                     \
    for (int b = 0; b < n; b++)                                                                               \
        if (out[b].hidden && out[b].hidden[idx] &&                                                            \
            (st = mer__stash_add(&g->stash, c, out[b].hidden[idx], g->h + (size_t)b * TD, TD * 4, err)))     \
            return st;
    if ((st = mer_cuda_im2col_patch(c, g->cols, g->at, g->kp, pixels_dev, n, hp->n_channels, hp->image_size, hp->patch,
                                    err)) ||
        (st = mer_cuda_gemm_bias(c, g->patch, MER_DTYPE_F32, D, g->cols, g->kp, g->patch_w, g->at, NULL, n * g->np, g->kp,
                                 D, 0, err)) ||
        (st = mer_cuda_clip_embed(c, g->h, g->patch, g->cls, g->pos, n, T, D, err)) ||
        (st = mer_cuda_layernorm(c, g->h, MER_DTYPE_F32, D, g->h, D, g->pre_w, g->pre_b, n * T, D, 1, 1, hp->ln_eps,
                                 MER_CUDA_ACT_NONE, err)))
        return st;
    STASH_HIDDEN(0)
    for (int li = 0; li < last; li++) {
        if ((st = mer__enc_block(&g->enc, li, g->h, n, T, err))) return st;
        STASH_HIDDEN(li + 1)
    }
#undef STASH_HIDDEN
    for (int b = 0; b < n; b++)
        if (out[b].last_hidden &&
            (st = mer__stash_add(&g->stash, c, out[b].last_hidden, g->h + (size_t)b * TD, TD * 4, err)))
            return st;
    if (pool) {
        if ((st = mer_cuda_layernorm(c, g->pooled, MER_DTYPE_F32, D, g->h, D, g->post_w, g->post_b, n, D, 1, T, hp->ln_eps,
                                     MER_CUDA_ACT_NONE, err)))
            return st;
        int want_emb = 0;
        for (int b = 0; b < n; b++) want_emb |= out[b].image_embeds != NULL;
        if (want_emb) {
            if (g->pooled_a != g->pooled &&
                (st = mer_cuda_layernorm(c, g->pooled_a, g->at, D, g->h, D, g->post_w, g->post_b, n, D, 1, T, hp->ln_eps,
                                         MER_CUDA_ACT_NONE, err)))
                return st;
            if ((st = mer_cuda_gemm_bias(c, g->emb, MER_DTYPE_F32, g->ld_emb, g->pooled_a, D, g->proj, g->at, NULL, n, D,
                                         hp->n_proj, 0, err)))
                return st;
        }
        for (int b = 0; b < n; b++) {
            if (out[b].pooled &&
                (st = mer__stash_add(&g->stash, c, out[b].pooled, g->pooled + (size_t)b * D, (size_t)D * 4, err)))
                return st;
            if (out[b].image_embeds && (st = mer__stash_add(&g->stash, c, out[b].image_embeds,
                                                            g->emb + (size_t)b * g->ld_emb, (size_t)hp->n_proj * 4, err)))
                return st;
        }
    }
    return mer__stash_finish(&g->stash, c, err);
}

mer_status mer_clip_cuda_encode(mer_clip_cuda *g, const float *pixels, int n, const mer_clip_out *out, mer_err *err) {
    if (!g || !pixels || !out) return mer__errf(err, MER_E_ARG, "mer_clip_cuda_encode: NULL argument");
    if (n < 1 || n > g->max_images)
        return mer__errf(err, MER_E_ARG, "clip cuda: %d images (1..%d for this model)", n, g->max_images);
    const mer_clip_hparams *hp = &g->hp;
    const size_t bytes = (size_t)n * hp->n_channels * hp->image_size * hp->image_size * sizeof(float);
    mer_status st = mer_cuda_upload(g->c, g->img, pixels, bytes, err);
    if (st) return st;
    return mer_clip_cuda_encode_dev(g, g->img, n, out, err);
}

#else /* !MER_CUDA */

static mer_status no_cuda(mer_err *err) {
    return mer__errf(err, MER_E_UNSUPPORTED, "clip cuda: mer was built without CUDA (make CUDA=1)");
}

mer_status mer_clip_cuda_from_model(const mer_clip *m, struct mer_cuda *c, int max_images, mer_dtype wtype,
                                    mer_clip_cuda **out, mer_err *err) {
    (void)m, (void)c, (void)max_images, (void)wtype;
    if (out) *out = NULL;
    return no_cuda(err);
}
void mer_clip_cuda_free(mer_clip_cuda *g) { (void)g; }
const mer_clip_hparams *mer_clip_cuda_hparams(const mer_clip_cuda *g) {
    (void)g;
    return NULL;
}
mer_status mer_clip_cuda_encode(mer_clip_cuda *g, const float *pixels, int n, const mer_clip_out *out,
                                mer_err *err) {
    (void)g, (void)pixels, (void)n, (void)out;
    return no_cuda(err);
}
mer_status mer_clip_cuda_encode_dev(mer_clip_cuda *g, const float *pixels_dev, int n, const mer_clip_out *out,
                                    mer_err *err) {
    (void)g, (void)pixels_dev, (void)n, (void)out;
    return no_cuda(err);
}
void mer_clip_cuda_set_graph(mer_clip_cuda *g, int on) { (void)g, (void)on; }

#endif
