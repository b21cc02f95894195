/* affectgpt_cuda.c - AffectGPT's fusion layers on a CUDA device (see affectgpt_cuda.h): weight upload
 * (input columns padded to multiples of 8 with zeros; attention_mlp's two halves each padded, to match
 * the padded [hv | ha] it reads) and the forward: one pool launch for both modalities, the two
 * projectors, the pre-fusion chain, the mix and multi_llama_proj, between one upload and one download
 * through pinned staging. */
#include "models/affectgpt_cuda.h"

#include <stdlib.h>
#include <string.h>

#if MER_CUDA

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_enc.h"
#include "kernels/cuda/cuda_fusion.h"
#include "models/enc_cuda.h"

#define MAX_ROWS 16384

static int pad8(int n) { return (n + 7) & ~7; }

typedef struct dlin {
    void *w;  /* [n_out][n_in_p] of the weight dtype */
    float *b; /* [n_out] */
} dlin;

struct mer_affectgpt_cuda {
    mer_cuda *c;
    mer_dtype wt;
    int dv, da, dm, dh, D;      /* widths */
    int dvp, dap, dmp, dhp, Dp; /* padded to multiples of 8 */
    int max_frames, max_clips;
    size_t a_off; /* floats from the start of the input block to A */
    mer__dmem mem;
    float *vatt_w, *aatt_w; /* [dv], [da] f32 */
    float vatt_b, aatt_b;
    dlin vproj, aproj, mvid, maud, att, fc, mproj;
    float *in;              /* [a_off + max_clips * da]: H, then A */
    void *pv, *mv, *pa, *ma; /* pooled and mean: [dvp], [dvp], [dap], [dap] of wt */
    float *hvha;            /* [2 dmp]: hv, then ha (f32) */
    void *hvha_a;           /* the same in wt (== hvha for f32) */
    float *hid;             /* [dhp] f32 */
    void *hid_a;            /* the same in wt (== hid for f32) */
    float *wts;             /* [8] (two used) */
    void *m;                /* [dmp] of wt */
    float *out;             /* [3][Dp] */
    float *pin;             /* pinned: the input block, then [3][Dp] */
    mer__graphs graphs; /* keyed by (n_frames, n_clips) */
    int nf, nc;         /* the call's counts, for forward_fn */
};

void mer_affectgpt_cuda_set_graph(mer_affectgpt_cuda *g, int on) {
    if (g) mer__graphs_set(&g->graphs, on);
}

void mer_affectgpt_cuda_free(mer_affectgpt_cuda *g) {
    if (!g) return;
    if (g->c) (void)mer_cuda_sync(g->c, NULL);
    mer__graphs_free(&g->graphs);
    mer_cuda_host_free(g->pin);
    mer__dmem_release(&g->mem);
    free(g);
}

/* Uploads l as [n_out][n_in_p]: input column j of segment s (segments of seg columns) goes to column
 * s * segp + j, the rest are zeros. */
static mer_status up_linear(mer_affectgpt_cuda *g, const mer_linear *l, int seg, int segp, int n_in_p, dlin *d,
                            mer_err *err) {
    float *h = calloc((size_t)l->n_out * n_in_p, sizeof *h);
    if (!h) return mer__errf(err, MER_E_NOMEM, "out of memory (fusion weights)");
    for (int o = 0; o < l->n_out; o++)
        for (int j = 0; j < l->n_in; j++)
            h[(size_t)o * n_in_p + (size_t)(j / seg) * segp + j % seg] = l->w[(size_t)o * l->n_in + j];
    mer_status st = mer__dmem_mat(&g->mem, h, (size_t)l->n_out, (size_t)n_in_p, g->wt, &d->w, err);
    free(h);
    if (!st) st = mer__dmem_f32(&g->mem, l->b, (size_t)l->n_out, &d->b, err);
    return st;
}

/* A zeroed device block of n bytes. */
static mer_status zalloc(mer_affectgpt_cuda *g, size_t n, void **out, mer_err *err) {
    mer_status st = mer__dmem_alloc(&g->mem, n, out, err);
    if (!st) st = mer_cuda_memset(g->c, *out, 0, n, err);
    return st;
}

mer_status mer_affectgpt_cuda_from_fusion(const mer_affectgpt_fusion *f, struct mer_cuda *c, int max_frames,
                                          int max_clips, mer_dtype wtype, mer_affectgpt_cuda **out, mer_err *err) {
    *out = NULL;
    if (!f || !c || max_frames < 1 || max_frames > MAX_ROWS || max_clips < 1 || max_clips > MAX_ROWS)
        return mer__errf(err, MER_E_ARG, "affectgpt cuda: NULL fusion or context, or %d frames / %d clips (1..%d)",
                         max_frames, max_clips, MAX_ROWS);
    if (wtype != MER_DTYPE_BF16 && wtype != MER_DTYPE_F32)
        return mer__errf(err, MER_E_UNSUPPORTED, "affectgpt cuda: weights as %s (bf16 or f32)", mer_dtype_name(wtype));
    mer_affectgpt_cuda *g = calloc(1, sizeof *g);
    if (!g) return mer__errf(err, MER_E_NOMEM, "out of memory");
    g->c = c;
    g->wt = wtype;
    g->mem.c = c;
    mer__graphs_init(&g->graphs, c);
    g->dv = f->d_visual, g->da = f->d_audio, g->dm = f->d_multi, g->dh = f->d_hidden, g->D = f->d_llm;
    g->dvp = pad8(g->dv), g->dap = pad8(g->da), g->dmp = pad8(g->dm), g->dhp = pad8(g->dh), g->Dp = pad8(g->D);
    g->max_frames = max_frames, g->max_clips = max_clips;
    g->a_off = ((size_t)max_frames * g->dv + 63) & ~(size_t)63;
    const size_t es = wtype == MER_DTYPE_F32 ? 4 : 2, n_in = g->a_off + (size_t)max_clips * g->da;
    mer_status st;
    void *p;
    if ((st = mer__dmem_f32(&g->mem, f->video_att.w, (size_t)g->dv, &g->vatt_w, err)) ||
        (st = mer__dmem_f32(&g->mem, f->audio_att.w, (size_t)g->da, &g->aatt_w, err)) ||
        (st = up_linear(g, &f->video_proj, g->dv, g->dvp, g->dvp, &g->vproj, err)) ||
        (st = up_linear(g, &f->audio_proj, g->da, g->dap, g->dap, &g->aproj, err)) ||
        (st = up_linear(g, &f->multi_video, g->dv, g->dvp, g->dvp, &g->mvid, err)) ||
        (st = up_linear(g, &f->multi_audio, g->da, g->dap, g->dap, &g->maud, err)) ||
        (st = up_linear(g, &f->att_mlp, g->dm, g->dmp, 2 * g->dmp, &g->att, err)) ||
        (st = up_linear(g, &f->fc_att, g->dh, g->dhp, g->dhp, &g->fc, err)) ||
        (st = up_linear(g, &f->multi_proj, g->dm, g->dmp, g->dmp, &g->mproj, err)))
        goto fail;
    g->vatt_b = f->video_att.b[0];
    g->aatt_b = f->audio_att.b[0];
    if ((st = zalloc(g, n_in * 4, &p, err))) goto fail;
    g->in = p;
    if ((st = zalloc(g, (size_t)g->dvp * es, &g->pv, err)) || (st = zalloc(g, (size_t)g->dvp * es, &g->mv, err)) ||
        (st = zalloc(g, (size_t)g->dap * es, &g->pa, err)) || (st = zalloc(g, (size_t)g->dap * es, &g->ma, err)) ||
        (st = zalloc(g, (size_t)2 * g->dmp * 4, &p, err)))
        goto fail;
    g->hvha = p;
    if (wtype == MER_DTYPE_F32) g->hvha_a = g->hvha;
    else if ((st = zalloc(g, (size_t)2 * g->dmp * es, &g->hvha_a, err))) goto fail;
    if ((st = zalloc(g, (size_t)g->dhp * 4, &p, err))) goto fail;
    g->hid = p;
    if (wtype == MER_DTYPE_F32) g->hid_a = g->hid;
    else if ((st = zalloc(g, (size_t)g->dhp * es, &g->hid_a, err))) goto fail;
    if ((st = zalloc(g, 8 * 4, &p, err))) goto fail;
    g->wts = p;
    if ((st = zalloc(g, (size_t)g->dmp * es, &g->m, err)) || (st = zalloc(g, (size_t)3 * g->Dp * 4, &p, err))) goto fail;
    g->out = p;
    if ((st = mer_cuda_host_alloc((n_in + (size_t)3 * g->Dp) * 4, &p, err))) goto fail;
    g->pin = p;
    if ((st = mer_cuda_sync(c, err))) goto fail;
    *out = g;
    return MER_OK;
fail:
    mer_affectgpt_cuda_free(g);
    return st;
}

/* One forward from the pinned inputs to the pinned outputs: no host work, so it can be captured. */
static mer_status forward(mer_affectgpt_cuda *g, int nf, int nc, mer_err *err) {
    mer_cuda *c = g->c;
    const mer_dtype wt = g->wt;
    const size_t n_in = g->a_off + (size_t)nc * g->da;
    float *pin_out = g->pin + g->a_off + (size_t)g->max_clips * g->da;
    mer_cuda_pool_job jobs[2] = {
        {g->in, nf, g->dv, g->dv, g->vatt_w, g->vatt_b, g->pv, g->mv, g->dvp},
        {g->in + g->a_off, nc, g->da, g->da, g->aatt_w, g->aatt_b, g->pa, g->ma, g->dap},
    };
    float *hv = g->hvha, *ha = g->hvha + g->dmp;
    mer_status st;
    if ((st = mer_cuda_upload_async(c, g->in, g->pin, n_in * 4, err)) ||
        (st = mer_cuda_fusion_pool(c, jobs, 2, wt, err)) ||
        (st = mer_cuda_gemm_bias(c, g->out, MER_DTYPE_F32, g->Dp, g->pv, g->dvp, g->vproj.w, wt, g->vproj.b, 1, g->dvp,
                                 g->D, 0, err)) ||
        (st = mer_cuda_gemm_bias(c, g->out + g->Dp, MER_DTYPE_F32, g->Dp, g->pa, g->dap, g->aproj.w, wt, g->aproj.b, 1,
                                 g->dap, g->D, 0, err)) ||
        (st = mer_cuda_gemm_bias(c, hv, MER_DTYPE_F32, g->dmp, g->mv, g->dvp, g->mvid.w, wt, g->mvid.b, 1, g->dvp, g->dm,
                                 0, err)) ||
        (st = mer_cuda_gemm_bias(c, ha, MER_DTYPE_F32, g->dmp, g->ma, g->dap, g->maud.w, wt, g->maud.b, 1, g->dap, g->dm,
                                 0, err)))
        return st;
    if (g->hvha_a != g->hvha && (st = mer_cuda_f32_to_bf16(c, g->hvha_a, g->hvha, (size_t)2 * g->dmp, err))) return st;
    /* attention_mlp's output in f32, then rounded once for fc_att (a bf16-output product rounds twice when
     * cuBLASLt adds the bias in a second pass) */
    if ((st = mer_cuda_gemm_bias(c, g->hid, MER_DTYPE_F32, g->dhp, g->hvha_a, 2 * g->dmp, g->att.w, wt, g->att.b, 1,
                                 2 * g->dmp, g->dh, 0, err)))
        return st;
    if (g->hid_a != g->hid && (st = mer_cuda_f32_to_bf16(c, g->hid_a, g->hid, (size_t)g->dhp, err))) return st;
    if ((st = mer_cuda_gemm_bias(c, g->wts, MER_DTYPE_F32, 8, g->hid_a, g->dhp, g->fc.w, wt, g->fc.b, 1, g->dhp, 2, 0,
                                 err)) ||
        (st = mer_cuda_fusion_mix(c, g->m, wt, g->dmp, g->wts, hv, ha, g->dm, err)) ||
        (st = mer_cuda_gemm_bias(c, g->out + 2 * (size_t)g->Dp, MER_DTYPE_F32, g->Dp, g->m, g->dmp, g->mproj.w, wt,
                                 g->mproj.b, 1, g->dmp, g->D, 0, err)))
        return st;
    return mer_cuda_download_async(c, pin_out, g->out, (size_t)3 * g->Dp * 4, err);
}

static mer_status forward_fn(void *ctx, mer_err *err) {
    mer_affectgpt_cuda *g = ctx;
    return forward(g, g->nf, g->nc, err);
}

mer_status mer_affectgpt_cuda_fuse(mer_affectgpt_cuda *g, const float *H, int n_frames, const float *A, int n_clips,
                                   float *out_visual, float *out_audio, float *out_multi, mer_err *err) {
    if (!g || !H || !A) return mer__errf(err, MER_E_ARG, "affectgpt cuda fusion: NULL argument");
    if (n_frames < 1 || n_frames > g->max_frames || n_clips < 1 || n_clips > g->max_clips)
        return mer__errf(err, MER_E_ARG, "affectgpt cuda fusion: %d frames and %d clips (1..%d and 1..%d for this model)",
                         n_frames, n_clips, g->max_frames, g->max_clips);
    memcpy(g->pin, H, (size_t)n_frames * g->dv * sizeof *H);
    memcpy(g->pin + g->a_off, A, (size_t)n_clips * g->da * sizeof *A);
    g->nf = n_frames, g->nc = n_clips;
    mer__graph_key key = {{n_frames, n_clips, 0, 0}};
    mer_status st = mer__graphs_run(&g->graphs, key, forward_fn, g, err);
    if (!st) st = mer_cuda_sync(g->c, err);
    if (st) return st;
    const float *o = g->pin + g->a_off + (size_t)g->max_clips * g->da;
    float *dst[3] = {out_visual, out_audio, out_multi};
    for (int k = 0; k < 3; k++)
        if (dst[k]) memcpy(dst[k], o + (size_t)k * g->Dp, (size_t)g->D * sizeof(float));
    return MER_OK;
}

#else /* !MER_CUDA */

static mer_status no_cuda(mer_err *err) {
    return mer__errf(err, MER_E_UNSUPPORTED, "affectgpt cuda: mer was built without CUDA (make CUDA=1)");
}

mer_status mer_affectgpt_cuda_from_fusion(const mer_affectgpt_fusion *f, struct mer_cuda *c, int max_frames,
                                          int max_clips, mer_dtype wtype, mer_affectgpt_cuda **out, mer_err *err) {
    (void)f, (void)c, (void)max_frames, (void)max_clips, (void)wtype;
    if (out) *out = NULL;
    return no_cuda(err);
}
void mer_affectgpt_cuda_free(mer_affectgpt_cuda *g) { (void)g; }
mer_status mer_affectgpt_cuda_fuse(mer_affectgpt_cuda *g, const float *H, int n_frames, const float *A, int n_clips,
                                   float *out_visual, float *out_audio, float *out_multi, mer_err *err) {
    (void)g, (void)H, (void)n_frames, (void)A, (void)n_clips, (void)out_visual, (void)out_audio, (void)out_multi;
    return no_cuda(err);
}
void mer_affectgpt_cuda_set_graph(mer_affectgpt_cuda *g, int on) { (void)g, (void)on; }

#endif
