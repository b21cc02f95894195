/* hubert_cuda.c - the HuBERT encoder on a CUDA device (see hubert_cuda.h).
 *
 * The conv stack runs channels-last ([frame][channel] rows, clip after clip). Each clip's frames are
 * padded to S_i per layer, where S_0 (after the first conv) is the valid frame count rounded up to the
 * product of the later strides and S_i = S_{i-1} / stride_i: then output frame t of every clip reads
 * rows s*t .. s*t+k-1 of its input at a uniform stride of s rows, so a conv layer over all clips at once
 * is ceil(k/s) GEMMs with ldx = s*C (rows that overlap by k - s frames are a second GEMM that reads
 * from frame s on and accumulates). Padding rows compute garbage that no valid row reads (valid row t
 * reads frames up to s*t + k - 1 < valid input frames). The first layer (one input channel) is a fused
 * conv + LayerNorm + GELU kernel; the others a GEMM into f32 then LayerNorm + GELU. The positional conv
 * (grouped, kernel K, K/2 padding) is per group a GEMM z = x_g W_g^T with W_g [(k, o)][i] followed by a
 * diagonal reduction over the taps, fused with bias, GELU and the residual add. The whole front end
 * (conv stack, feature projection, positional conv) keeps f32 activations and weights: on the bf16 path
 * its GEMMs run in TF32 (bf16 inputs there cost about 1% of hidden state 0, measured on the tiny
 * fixture; TF32's are 8 times finer), on the f32 path in full f32. Then the shared encoder blocks
 * (enc_cuda.c, bf16 or f32), and the AffectGPT pooling as time sums on the device. */
#include "models/hubert_cuda.h"

#include <stdlib.h>
#include <string.h>

#if MER_CUDA

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_enc.h"
#include "models/enc_cuda.h"

#define MAX_CHUNK 8

struct mer_hubert_cuda {
    mer_hubert_hparams hp;
    mer_cuda *c;
    mer_dtype at;
    int max_clips, max_t;
    long max_samples;
    mer__dmem mem;
    mer__enc enc;
    mer__stash stash;
    float *c0_w, *c0_b;                        /* first conv [C][K], bias or NULL */
    float *cw[MER_HUBERT_MAX_CONV][MAX_CHUNK]; /* layer i >= 1, chunk j: [C][kj * C_in] */
    float *cb[MER_HUBERT_MAX_CONV];
    float *cln_w[MER_HUBERT_MAX_CONV], *cln_b[MER_HUBERT_MAX_CONV];
    float *fp_ln_w, *fp_ln_b, *fp_b;
    float *fp_w;                               /* [D][C] */
    float *pos_w;                              /* [G][K * cg][cg] */
    float *pos_b, *enc_ln_w, *enc_ln_b;
    float *wave;                               /* [max_clips][max_samples] */
    float *act[2];                             /* conv activations */
    float *cf;                                 /* conv GEMM output f32 */
    float *feat;                               /* last conv layer's output f32 [max_clips * S_last][C] */
    float *fpin;                               /* [max_clips * T][C] */
    float *h;                                  /* [max_clips * T][D] */
    float *z;                                  /* [max_clips * T][K * cg] */
    float *tmp;                                /* [max_clips * T][D] */
    float *acc;                                /* [max_clips][D] */
    float *acc_h;                              /* host [max_clips][D] */
    mer__graphs graphs;                        /* key (n, len, layer, hf5) */
};

void mer_hubert_cuda_set_graph(mer_hubert_cuda *g, int on) {
    if (g) mer__graphs_set(&g->graphs, on);
}

/* Padded frame counts per clip for clips of len samples: S[i] after layer i; 0 when too short. */
static int plan_frames(const mer_hubert_hparams *hp, long len, long S[MER_HUBERT_MAX_CONV]) {
    if (len < hp->conv_kernel[0]) return 0;
    long lo0 = (len - hp->conv_kernel[0]) / hp->conv_stride[0] + 1, prod = 1;
    for (int i = 1; i < hp->n_conv; i++) {
        prod *= hp->conv_stride[i];
        if (prod > (1L << 20)) return 0;
    }
    S[0] = (lo0 + prod - 1) / prod * prod;
    for (int i = 1; i < hp->n_conv; i++) S[i] = S[i - 1] / hp->conv_stride[i];
    return 1;
}

/* A front-end GEMM: f32 operands, TF32 on the bf16 path, full f32 on the f32 path. */
static mer_status fgemm(const mer_hubert_cuda *g, float *y, int ldy, const float *x, int ldx, const float *w,
                        const float *bias, int n_tok, int n_in, int n_out, int acc, mer_err *err) {
    if (g->at == MER_DTYPE_BF16) return mer_cuda_gemm_bias_tf32(g->c, y, ldy, x, ldx, w, bias, n_tok, n_in, n_out, acc, err);
    return mer_cuda_gemm_bias(g->c, y, MER_DTYPE_F32, ldy, x, ldx, w, MER_DTYPE_F32, bias, n_tok, n_in, n_out, acc, err);
}

void mer_hubert_cuda_free(mer_hubert_cuda *g) {
    if (!g) return;
    if (g->c) (void)mer_cuda_sync(g->c, NULL);
    mer__graphs_free(&g->graphs);
    mer__stash_free(&g->stash);
    mer__enc_free(&g->enc);
    mer__dmem_release(&g->mem);
    free(g->acc_h);
    free(g);
}

const mer_hubert_hparams *mer_hubert_cuda_hparams(const mer_hubert_cuda *g) { return g ? &g->hp : NULL; }

mer_status mer_hubert_cuda_from_model(const mer_hubert *m, struct mer_cuda *c, int max_clips, long max_samples,
                                      mer_dtype wtype, mer_hubert_cuda **out, mer_err *err) {
    mer_status st;
    float *hw = NULL;
    void *p;
    *out = NULL;
    if (!m || !c || max_clips < 1 || max_clips > 4096 || max_samples < 1 || max_samples > (1L << 30))
        return mer__errf(err, MER_E_ARG, "hubert cuda: NULL model or context, or %d clips of %ld samples", max_clips,
                         max_samples);
    const mer_hubert_hparams *mh = &m->hp;
    const int T = mer_hubert_n_frames(mh, max_samples);
    long S[MER_HUBERT_MAX_CONV];
    if (T < 1 || !plan_frames(mh, max_samples, S))
        return mer__errf(err, MER_E_ARG, "hubert cuda: clips of %ld samples are too short", max_samples);
    for (int i = 0; i < mh->n_conv; i++)
        if (mh->conv_dim[i] % 8 || (i && mh->conv_kernel[i] > MAX_CHUNK * mh->conv_stride[i]) ||
            (i == 0 && mh->conv_kernel[0] > 32))
            return mer__errf(err, MER_E_UNSUPPORTED, "hubert cuda: conv layer %d (%d channels, kernel %d, stride %d)", i,
                             mh->conv_dim[i], mh->conv_kernel[i], mh->conv_stride[i]);
    const int G = mh->pos_groups, D = mh->n_embd, cg = D / G, K = mh->pos_k;
    if (cg % 8) return mer__errf(err, MER_E_UNSUPPORTED, "hubert cuda: positional conv groups of %d channels", cg);
    if (!mh->feat_proj_ln) return mer__errf(err, MER_E_UNSUPPORTED, "hubert cuda: feat_proj_layer_norm=false");
    mer_hubert_cuda *g = calloc(1, sizeof *g);
    if (!g) return mer__errf(err, MER_E_NOMEM, "out of memory");
    g->hp = *mh;
    g->c = c;
    g->at = wtype;
    g->max_clips = max_clips;
    g->max_samples = max_samples;
    g->max_t = T;
    mer__graphs_init(&g->graphs, c);
    g->mem.c = c;
    const mer_hubert_hparams *hp = &g->hp;
    const size_t B = (size_t)max_clips, Cl = (size_t)hp->conv_dim[hp->n_conv - 1];
    if ((st = mer__enc_init(&g->enc, &g->mem, wtype, D, hp->n_ff, hp->n_head, hp->n_layer, hp->ln_eps, MER_CUDA_ACT_GELU,
                            max_clips * T, err)))
        goto fail;
    for (int i = 0; i < hp->n_layer; i++) {
        const mer_hubert_layer *l = &m->layers[i];
        mer__enc_layer_src s = {.ln1_w = l->ln_w, .ln1_b = l->ln_b, .ln2_w = l->fln_w, .ln2_b = l->fln_b,
                                .q = &l->q, .k = &l->k, .v = &l->v, .o = &l->o, .fc1 = &l->ff1, .fc2 = &l->ff2,
                                .q_b = l->q_b, .k_b = l->k_b, .v_b = l->v_b, .o_b = l->o_b, .fc1_b = l->ff1_b,
                                .fc2_b = l->ff2_b};
        if ((st = mer__enc_set_layer(&g->enc, &g->mem, i, &s, err))) goto fail;
    }
    /* conv stack */
    size_t act_max = 0, cf_max = 0;
    {
        const int C0 = hp->conv_dim[0];
        if ((st = mer__dmem_f32(&g->mem, m->conv_w[0], (size_t)C0 * hp->conv_kernel[0], &g->c0_w, err)) ||
            (st = mer__dmem_f32(&g->mem, m->conv_b[0], (size_t)C0, &g->c0_b, err)))
            goto fail;
    }
    for (int i = 0; i < hp->n_conv; i++) {
        const int C = hp->conv_dim[i], Ci = i ? hp->conv_dim[i - 1] : 1, k = hp->conv_kernel[i], s = hp->conv_stride[i];
        if ((st = mer__dmem_f32(&g->mem, m->conv_ln_w[i], (size_t)C, &g->cln_w[i], err)) ||
            (st = mer__dmem_f32(&g->mem, m->conv_ln_b[i], (size_t)C, &g->cln_b[i], err)))
            goto fail;
        const size_t rows = B * (size_t)S[i] + 64; /* slack: the last padding rows read past the end */
        if (rows * C > act_max) act_max = rows * C;
        if (i == 0) continue;
        if (B * (size_t)S[i] * C > cf_max) cf_max = B * (size_t)S[i] * C;
        if ((st = mer__dmem_f32(&g->mem, m->conv_b[i], (size_t)C, &g->cb[i], err))) goto fail;
        const int nch = (k + s - 1) / s;
        for (int j = 0; j < nch; j++) {
            const int f0 = j * s, kj = (k < f0 + s ? k : f0 + s) - f0;
            hw = malloc((size_t)C * kj * Ci * sizeof *hw);
            if (!hw) {
                st = mer__errf(err, MER_E_NOMEM, "out of memory");
                goto fail;
            }
            for (int o = 0; o < C; o++)
                for (int f = 0; f < kj; f++)
                    for (int ci = 0; ci < Ci; ci++)
                        hw[((size_t)o * kj + f) * Ci + ci] = m->conv_w[i][((size_t)o * Ci + ci) * k + f0 + f];
            if ((st = mer__dmem_f32(&g->mem, hw, (size_t)C * kj * Ci, &g->cw[i][j], err))) goto fail;
            free(hw);
            hw = NULL;
        }
    }
    for (int j = 0; j < 2; j++) {
        if ((st = mer__dmem_alloc(&g->mem, act_max * 4, &p, err))) goto fail;
        g->act[j] = p;
        if ((st = mer_cuda_memset(c, g->act[j], 0, act_max * 4, err))) goto fail;
    }
    if (cf_max < B * (size_t)S[hp->n_conv - 1] * Cl) cf_max = B * (size_t)S[hp->n_conv - 1] * Cl;
    if ((st = mer__dmem_alloc(&g->mem, cf_max * 4, &p, err))) goto fail;
    g->cf = p;
    if ((st = mer__dmem_alloc(&g->mem, B * (size_t)S[hp->n_conv - 1] * Cl * 4, &p, err))) goto fail;
    g->feat = p;
    /* feature projection, positional conv, encoder norm */
    if ((st = mer__dmem_f32(&g->mem, m->fp_ln_w, Cl, &g->fp_ln_w, err)) ||
        (st = mer__dmem_f32(&g->mem, m->fp_ln_b, Cl, &g->fp_ln_b, err)) ||
        (st = mer__dmem_f32(&g->mem, m->fp_b, (size_t)D, &g->fp_b, err)) ||
        (st = mer__dmem_f32(&g->mem, m->pos_b, (size_t)D, &g->pos_b, err)) ||
        (st = mer__dmem_f32(&g->mem, m->enc_ln_w, (size_t)D, &g->enc_ln_w, err)) ||
        (st = mer__dmem_f32(&g->mem, m->enc_ln_b, (size_t)D, &g->enc_ln_b, err)))
        goto fail;
    hw = malloc((size_t)D * Cl * sizeof *hw);
    if (!hw) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < (size_t)D * Cl; i++) hw[i] = mer__wmat_get(&m->fp, i);
    if ((st = mer__dmem_f32(&g->mem, hw, (size_t)D * Cl, &g->fp_w, err))) goto fail;
    free(hw);
    hw = malloc((size_t)D * cg * K * sizeof *hw);
    if (!hw) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int gr = 0; gr < G; gr++) /* W_g[k*cg + o][i] = w[g*cg + o][i][k] */
        for (int k = 0; k < K; k++)
            for (int o = 0; o < cg; o++)
                for (int i = 0; i < cg; i++)
                    hw[(((size_t)gr * K + k) * cg + o) * cg + i] = m->pos_w[(((size_t)gr * cg + o) * cg + i) * K + k];
    if ((st = mer__dmem_f32(&g->mem, hw, (size_t)G * K * cg * cg, &g->pos_w, err))) goto fail;
    free(hw);
    hw = NULL;
    const size_t N = B * (size_t)T;
    if ((st = mer__dmem_alloc(&g->mem, N * Cl * 4, &p, err))) goto fail;
    g->fpin = p;
    if ((st = mer__dmem_alloc(&g->mem, N * D * 4, &p, err))) goto fail;
    g->h = p;
    if ((st = mer__dmem_alloc(&g->mem, N * K * cg * 4, &p, err))) goto fail;
    g->z = p;
    if ((st = mer__dmem_alloc(&g->mem, N * D * 4, &p, err))) goto fail;
    g->tmp = p;
    if ((st = mer__dmem_alloc(&g->mem, B * D * 4, &p, err))) goto fail;
    g->acc = p;
    if ((st = mer__dmem_alloc(&g->mem, B * (size_t)max_samples * 4, &p, err))) goto fail;
    g->wave = p;
    g->acc_h = malloc(B * D * sizeof *g->acc_h);
    if (!g->acc_h) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = mer_cuda_sync(c, err))) goto fail;
    *out = g;
    return MER_OK;
fail:
    free(hw);
    mer_hubert_cuda_free(g);
    return st;
}

/* The conv stack, feature projection and positional conv on n clips of len samples at `wave` (device):
 * leaves hidden state 0 in g->h [n*T][D] and the conv output in g->feat (clip stride S_last rows). */
static mer_status front(mer_hubert_cuda *g, const float *wave, int n, long len, int T, mer_err *err) {
    const mer_hubert_hparams *hp = &g->hp;
    mer_cuda *c = g->c;
    long S[MER_HUBERT_MAX_CONV];
    plan_frames(hp, len, S);
    mer_status st;
    const int last = hp->n_conv - 1;
    float *cur = last == 0 ? g->feat : g->act[0];
    if ((st = mer_cuda_conv0_ln_gelu(c, cur, MER_DTYPE_F32, wave, len, n, (int)S[0], g->c0_w, g->c0_b, hp->conv_dim[0],
                                     hp->conv_kernel[0], hp->conv_stride[0], g->cln_w[0], g->cln_b[0], 1e-5f, err)))
        return st;
    for (int i = 1; i <= last; i++) {
        const int C = hp->conv_dim[i], Ci = hp->conv_dim[i - 1], k = hp->conv_kernel[i], s = hp->conv_stride[i];
        const int rows = n * (int)S[i];
        const int nch = (k + s - 1) / s;
        for (int j = 0; j < nch; j++) {
            const int f0 = j * s, kj = (k < f0 + s ? k : f0 + s) - f0;
            if ((st = fgemm(g, g->cf, C, cur + (size_t)f0 * Ci, s * Ci, g->cw[i][j], j ? NULL : g->cb[i], rows, kj * Ci, C,
                            j > 0, err)))
                return st;
        }
        float *nxt = i == last ? g->feat : g->act[i & 1];
        if ((st = mer_cuda_layernorm(c, nxt, MER_DTYPE_F32, C, g->cf, C, g->cln_w[i], g->cln_b[i], rows, C, 1, 1, 1e-5f,
                                     MER_CUDA_ACT_GELU, err)))
            return st;
        cur = nxt;
    }
    /* feature projection: the valid rows of every clip, normed, then the GEMM */
    const int Cl = hp->conv_dim[last], D = hp->n_embd, N = n * T;
    if ((st = mer_cuda_layernorm(c, g->fpin, MER_DTYPE_F32, Cl, g->feat, Cl, g->fp_ln_w, g->fp_ln_b, N, Cl, T,
                                 (int)S[last], hp->ln_eps, MER_CUDA_ACT_NONE, err)) ||
        (st = fgemm(g, g->h, D, g->fpin, Cl, g->fp_w, g->fp_b, N, Cl, D, 0, err)))
        return st;
    /* positional conv: per group a GEMM over the group's channels of h (columns that the reductions of
     * earlier groups did not touch), then the diagonal reduction into those columns */
    const int G = hp->pos_groups, cg = D / G, K = hp->pos_k;
    for (int gr = 0; gr < G; gr++)
        if ((st = fgemm(g, g->z, K * cg, g->h + (size_t)gr * cg, D, g->pos_w + (size_t)gr * K * cg * cg, NULL, N, cg,
                        K * cg, 0, err)) ||
            (st = mer_cuda_posconv_reduce(c, g->h, D, g->z, g->pos_b, n, T, K, cg, gr, K / 2, err)))
            return st;
    return MER_OK;
}

static mer_status check_call(mer_hubert_cuda *g, int n, long len, int *T, mer_err *err) {
    if (n < 1 || n > g->max_clips)
        return mer__errf(err, MER_E_ARG, "hubert cuda: %d clips in a batch (1..%d for this model)", n, g->max_clips);
    if (len > g->max_samples)
        return mer__errf(err, MER_E_ARG, "HuBERT: a clip of %ld samples exceeds the model's %ld", len, g->max_samples);
    *T = mer_hubert_n_frames(&g->hp, len);
    if (*T < 1) return mer__errf(err, MER_E_ARG, "HuBERT: a clip of %ld samples is too short", len);
    return MER_OK;
}

mer_status mer_hubert_cuda_encode(mer_hubert_cuda *g, const float *clips, int n, long len, const mer_hubert_out *out,
                                  int *n_frames, mer_err *err) {
    if (n_frames) *n_frames = 0;
    if (!g || !clips || !out) return mer__errf(err, MER_E_ARG, "mer_hubert_cuda_encode: NULL argument");
    int T;
    mer_status st = check_call(g, n, len, &T, err);
    if (st) return st;
    if (n_frames) *n_frames = T;
    const mer_hubert_hparams *hp = &g->hp;
    mer_cuda *c = g->c;
    const int L = hp->n_layer, D = hp->n_embd, Cl = hp->conv_dim[hp->n_conv - 1];
    const size_t TD = (size_t)T * D;
    long S[MER_HUBERT_MAX_CONV];
    plan_frames(hp, len, S);
    int last = 0;
    size_t bytes = 0;
    for (int b = 0; b < n; b++) {
        if (out[b].last_hidden) last = L, bytes += TD * 4 + 256;
        if (out[b].extract_features) bytes += (size_t)T * Cl * 4 + 256;
        if (out[b].hidden)
            for (int i = 0; i <= L; i++)
                if (out[b].hidden[i]) {
                    if (i > last) last = i;
                    bytes += TD * 4 + 256;
                }
    }
    if ((st = mer__stash_begin(&g->stash, bytes, err)) ||
        (st = mer_cuda_upload(c, g->wave, clips, (size_t)n * len * sizeof(float), err)) ||
        (st = front(g, g->wave, n, len, T, err)))
        return st;
    for (int b = 0; b < n; b++)
        if (out[b].extract_features &&
            (st = mer__stash_add(&g->stash, c, out[b].extract_features, g->feat + (size_t)b * S[hp->n_conv - 1] * Cl,
                                 (size_t)T * Cl * 4, err)))
            return st;
    for (int li = 0; li <= last; li++) {
        if (li && (st = mer__enc_block(&g->enc, li - 1, g->h, n, T, err))) return st;
        for (int b = 0; b < n; b++)
            if (out[b].hidden && out[b].hidden[li] &&
                (st = mer__stash_add(&g->stash, c, out[b].hidden[li], g->h + (size_t)b * TD, TD * 4, err)))
                return st;
    }
    int want_last = 0;
    for (int b = 0; b < n; b++) want_last |= out[b].last_hidden != NULL;
    if (want_last) {
        if ((st = mer_cuda_layernorm(c, g->tmp, MER_DTYPE_F32, D, g->h, D, g->enc_ln_w, g->enc_ln_b, n * T, D, 1, 1,
                                     hp->ln_eps, MER_CUDA_ACT_NONE, err)))
            return st;
        for (int b = 0; b < n; b++)
            if (out[b].last_hidden &&
                (st = mer__stash_add(&g->stash, c, out[b].last_hidden, g->tmp + (size_t)b * TD, TD * 4, err)))
                return st;
    }
    return mer__stash_finish(&g->stash, c, err);
}

/* The pooling's device work on n clips at g->wave into g->acc (sums over time, not yet divided by T):
 * no host work, so it can be captured. */
static mer_status pool_forward(mer_hubert_cuda *g, int n, long len, int T, int layer, int hf5, mer_err *err) {
    const mer_hubert_hparams *hp = &g->hp;
    mer_cuda *c = g->c;
    const int L = hp->n_layer, D = hp->n_embd;
    mer_status st;
    int first, n_avg;
    if (layer < 0) { /* hidden_states[-4:] */
        n_avg = L + 1 < 4 ? L + 1 : 4;
        first = L + 1 - n_avg;
    } else {
        first = layer;
        n_avg = 1;
    }
    const float wgt = 1.0f / (float)n_avg;
    if ((st = mer_cuda_memset(c, g->acc, 0, (size_t)n * D * sizeof(float), err)) ||
        (st = front(g, g->wave, n, len, T, err)))
        return st;
    for (int j = 0; j < first + n_avg; j++) {
        if (j && (st = mer__enc_block(&g->enc, j - 1, g->h, n, T, err))) return st;
        if (j < first) continue;
        const float *src = g->h;
        if (j == L && !hf5) { /* transformers 4: the last entry is the layer-normed output */
            if ((st = mer_cuda_layernorm(c, g->tmp, MER_DTYPE_F32, D, g->h, D, g->enc_ln_w, g->enc_ln_b, n * T, D, 1, 1,
                                         hp->ln_eps, MER_CUDA_ACT_NONE, err)))
                return st;
            src = g->tmp;
        }
        if ((st = mer_cuda_time_sum(c, g->acc, src, n, T, D, wgt, err))) return st;
    }
    return MER_OK;
}

typedef struct pool_args {
    mer_hubert_cuda *g;
    int n;
    long len;
    int T, layer, hf5;
} pool_args;

static mer_status pool_fn(void *ctx, mer_err *err) {
    const pool_args *a = ctx;
    return pool_forward(a->g, a->n, a->len, a->T, a->layer, a->hf5, err);
}

/* One batch of the pooling: clips on the device at `wave` (copied to g->wave); features into g->acc_h.
 * The device work is replayed from a CUDA graph per (n, len, layer, hf5) from its second call on. */
static mer_status pool_batch(mer_hubert_cuda *g, const float *wave, int n, long len, int layer, int hf5, mer_err *err) {
    mer_cuda *c = g->c;
    const int D = g->hp.n_embd;
    int T;
    mer_status st = check_call(g, n, len, &T, err);
    if (st) return st;
    if (wave != g->wave && (st = mer_cuda_copy_d2d(c, g->wave, wave, (size_t)n * len * sizeof(float), err))) return st;
    pool_args a = {g, n, len, T, layer, hf5};
    if ((st = mer__graphs_run(&g->graphs, (mer__graph_key){{n, len, layer, hf5}}, pool_fn, &a, err))) return st;
    if ((st = mer_cuda_download(c, g->acc_h, g->acc, (size_t)n * D * sizeof(float), err))) return st;
    for (size_t j = 0; j < (size_t)n * D; j++) g->acc_h[j] /= (float)T;
    return MER_OK;
}

static mer_status check_pool(mer_hubert_cuda *g, const float *clips, int n_clips, int layer, const float *feats,
                             mer_err *err) {
    if (!g || !clips || !feats || n_clips < 0) return mer__errf(err, MER_E_ARG, "mer_hubert_cuda_pool: bad argument");
    if (layer > g->hp.n_layer)
        return mer__errf(err, MER_E_ARG, "HuBERT: hidden state %d asked of a %d-layer model", layer, g->hp.n_layer);
    return MER_OK;
}

mer_status mer_hubert_cuda_pool(mer_hubert_cuda *g, const float *clips, int n_clips, long clip_len, int layer, int hf5,
                                float *feats, mer_err *err) {
    mer_status st = check_pool(g, clips, n_clips, layer, feats, err);
    if (st) return st;
    const int D = g->hp.n_embd;
    for (int b0 = 0; b0 < n_clips; b0 += g->max_clips) {
        const int nb = n_clips - b0 < g->max_clips ? n_clips - b0 : g->max_clips;
        if (clip_len > g->max_samples)
            return mer__errf(err, MER_E_ARG, "HuBERT: a clip of %ld samples exceeds the model's %ld", clip_len,
                             g->max_samples);
        if ((st = mer_cuda_upload(g->c, g->wave, clips + (size_t)b0 * clip_len, (size_t)nb * clip_len * sizeof(float),
                                  err)) ||
            (st = pool_batch(g, g->wave, nb, clip_len, layer, hf5, err)))
            return st;
        memcpy(feats + (size_t)b0 * D, g->acc_h, (size_t)nb * D * sizeof(float));
    }
    return MER_OK;
}

mer_status mer_hubert_cuda_pool_dev(mer_hubert_cuda *g, const float *clips_dev, int n_clips, long clip_len, int layer,
                                    int hf5, float *feats, mer_err *err) {
    mer_status st = check_pool(g, clips_dev, n_clips, layer, feats, err);
    if (st) return st;
    if ((st = pool_batch(g, clips_dev, n_clips, clip_len, layer, hf5, err))) return st;
    memcpy(feats, g->acc_h, (size_t)n_clips * g->hp.n_embd * sizeof(float));
    return MER_OK;
}

#else /* !MER_CUDA */

static mer_status no_cuda(mer_err *err) {
    return mer__errf(err, MER_E_UNSUPPORTED, "hubert cuda: mer was built without CUDA (make CUDA=1)");
}

mer_status mer_hubert_cuda_from_model(const mer_hubert *m, struct mer_cuda *c, int max_clips, long max_samples,
                                      mer_dtype wtype, mer_hubert_cuda **out, mer_err *err) {
    (void)m, (void)c, (void)max_clips, (void)max_samples, (void)wtype;
    if (out) *out = NULL;
    return no_cuda(err);
}
void mer_hubert_cuda_free(mer_hubert_cuda *g) { (void)g; }
const mer_hubert_hparams *mer_hubert_cuda_hparams(const mer_hubert_cuda *g) {
    (void)g;
    return NULL;
}
mer_status mer_hubert_cuda_encode(mer_hubert_cuda *g, const float *clips, int n_clips, long clip_len,
                                  const mer_hubert_out *out, int *n_frames, mer_err *err) {
    (void)g, (void)clips, (void)n_clips, (void)clip_len, (void)out;
    if (n_frames) *n_frames = 0;
    return no_cuda(err);
}
mer_status mer_hubert_cuda_pool(mer_hubert_cuda *g, const float *clips, int n_clips, long clip_len, int layer,
                                int hf5, float *feats, mer_err *err) {
    (void)g, (void)clips, (void)n_clips, (void)clip_len, (void)layer, (void)hf5, (void)feats;
    return no_cuda(err);
}
mer_status mer_hubert_cuda_pool_dev(mer_hubert_cuda *g, const float *clips_dev, int n_clips, long clip_len, int layer,
                                    int hf5, float *feats, mer_err *err) {
    (void)g, (void)clips_dev, (void)n_clips, (void)clip_len, (void)layer, (void)hf5, (void)feats;
    return no_cuda(err);
}
void mer_hubert_cuda_set_graph(mer_hubert_cuda *g, int on) { (void)g, (void)on; }

#endif
