/* affectgpt.c - AffectGPT's attention fusion and projectors (see affectgpt.h). */
#include "models/affectgpt.h"

#include <string.h>

// --- loading -----------------------------------------------------------------------------------------

static mer_status load_tensor_f32(const mer_weights *w, const char *name, int n_dims, const int64_t *shape,
                                  float **out, mer_err *err) {
    const mer_wtensor *t = mer_weights_find(w, name);
    if (!t) return mer__errf(err, MER_E_NOTFOUND, "%s: missing tensor '%s'", w->path, name);
    int ok = t->n_dims == n_dims;
    size_t n = 1;
    for (int i = 0; ok && i < n_dims; i++) {
        ok = shape[i] < 0 || t->shape[i] == shape[i];
        n *= (size_t)t->shape[i];
    }
    if (!ok) {
        char want[96] = "", got[96] = "";
        for (int i = 0; i < n_dims; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "", (long long)shape[i]);
        for (int i = 0; i < t->n_dims; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)t->shape[i]);
        return mer__errf(err, MER_E_SHAPE, "%s: tensor '%s' has shape [%s], expected [%s]", w->path, name, got, want);
    }
    if (t->dtype != MER_DTYPE_F32 && t->dtype != MER_DTYPE_F16 && t->dtype != MER_DTYPE_BF16)
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor '%s' has dtype %s (expected f32, f16 or bf16)", w->path, name,
                         mer_dtype_name(t->dtype));
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) return mer__errf(err, MER_E_NOMEM, "%s: out of memory for '%s'", w->path, name);
    mer_dequantize_row(t->dtype, t->data, p, n);
    *out = p;
    return MER_OK;
}

/* Loads <prefix><name>.weight [n_out, n_in] and .bias [n_out]; n_out/n_in < 0 take the file's. */
static mer_status load_linear(const mer_weights *w, const char *prefix, const char *name, int n_out, int n_in,
                              mer_linear *l, mer_err *err) {
    char key[512];
    snprintf(key, sizeof key, "%s%s.weight", prefix, name);
    const mer_wtensor *t = mer_weights_find(w, key);
    if (!t) return mer__errf(err, MER_E_NOTFOUND, "%s: missing tensor '%s' (is this an AffectGPT checkpoint?)", w->path, key);
    if (t->n_dims != 2) return mer__errf(err, MER_E_SHAPE, "%s: tensor '%s' is %d-D, expected 2-D", w->path, key, t->n_dims);
    int64_t shape[2] = {n_out, n_in};
    mer_status st = load_tensor_f32(w, key, 2, shape, &l->w, err);
    if (st) return st;
    l->n_out = (int)t->shape[0];
    l->n_in = (int)t->shape[1];
    snprintf(key, sizeof key, "%s%s.bias", prefix, name);
    int64_t bshape[1] = {l->n_out};
    return load_tensor_f32(w, key, 1, bshape, &l->b, err);
}

static void free_linear(mer_linear *l) {
    free(l->w);
    free(l->b);
    memset(l, 0, sizeof *l);
}

void mer_affectgpt_fusion_free(mer_affectgpt_fusion *f) {
    mer_linear *all[] = {&f->video_att, &f->video_proj, &f->audio_att, &f->audio_proj, &f->multi_video,
                         &f->multi_audio, &f->att_mlp, &f->fc_att, &f->multi_proj};
    for (size_t i = 0; i < MER_ARRAY_LEN(all); i++) free_linear(all[i]);
}

mer_status mer_affectgpt_fusion_load(const mer_weights *w, const char *prefix, mer_affectgpt_fusion *f, mer_err *err) {
    memset(f, 0, sizeof *f);
    if (!prefix) prefix = "";
    mer_status st;
    /* the projector fixes Dv and D; the rest are checked against them */
    if ((st = load_linear(w, prefix, "affectgpt_proj", -1, -1, &f->video_proj, err))) goto fail;
    f->d_visual = f->video_proj.n_in;
    f->d_llm = f->video_proj.n_out;
    if ((st = load_linear(w, prefix, "video_attention_mlp", 1, f->d_visual, &f->video_att, err)) ||
        (st = load_linear(w, prefix, "audio_llama_proj", f->d_llm, -1, &f->audio_proj, err)))
        goto fail;
    f->d_audio = f->audio_proj.n_in;
    if ((st = load_linear(w, prefix, "audio_attention_mlp", 1, f->d_audio, &f->audio_att, err)) ||
        (st = load_linear(w, prefix, "multi_video_embs", -1, f->d_visual, &f->multi_video, err)))
        goto fail;
    f->d_multi = f->multi_video.n_out;
    if ((st = load_linear(w, prefix, "multi_audio_embs", f->d_multi, f->d_audio, &f->multi_audio, err)) ||
        (st = load_linear(w, prefix, "attention_mlp", -1, 2 * f->d_multi, &f->att_mlp, err)))
        goto fail;
    f->d_hidden = f->att_mlp.n_out;
    if ((st = load_linear(w, prefix, "fc_att", 2, f->d_hidden, &f->fc_att, err)) ||
        (st = load_linear(w, prefix, "multi_llama_proj", f->d_llm, f->d_multi, &f->multi_proj, err)))
        goto fail;
    return MER_OK;
fail:
    mer_affectgpt_fusion_free(f);
    return st;
}

// --- forward -----------------------------------------------------------------------------------------

static void linear(mer_cpu_ctx *ctx, const mer_linear *l, const float *x, int n_rows, float *y) {
    mer_cpu_matmul(ctx, y, (size_t)l->n_out, x, (size_t)l->n_in, l->w, MER_DTYPE_F32, l->b, n_rows, l->n_in, l->n_out);
}

/* sum_t a_t * X_t over rows of X [n, d], with a_t = att(X_t) (a Linear d -> 1). */
static void att_pool(mer_cpu_ctx *ctx, const mer_linear *att, const float *X, int n, int d, float *a, float *out) {
    linear(ctx, att, X, n, a);
    for (int j = 0; j < d; j++) {
        double s = 0;
        for (int t = 0; t < n; t++) s += (double)a[t] * X[(size_t)t * d + j];
        out[j] = (float)s;
    }
}

static void mean_rows(const float *X, int n, int d, float *out) {
    for (int j = 0; j < d; j++) {
        double s = 0;
        for (int t = 0; t < n; t++) s += X[(size_t)t * d + j];
        out[j] = (float)(s / n);
    }
}

mer_status mer_affectgpt_fuse(const mer_affectgpt_fusion *f, mer_cpu_ctx *ctx, const float *H, int n_frames,
                              const float *A, int n_clips, float *out_visual, float *out_audio, float *out_multi,
                              mer_err *err) {
    if (n_frames < 1 || n_clips < 1 || !H || !A)
        return mer__errf(err, MER_E_ARG, "affectgpt fusion: need at least one frame and one audio clip");
    int dv = f->d_visual, da = f->d_audio, dm = f->d_multi, dh = f->d_hidden;
    int nmax = n_frames > n_clips ? n_frames : n_clips;
    size_t n_tmp = (size_t)nmax + (size_t)dv + (size_t)da + 2 * (size_t)dm + (size_t)dh + 2;
    float *tmp = malloc(n_tmp * sizeof *tmp);
    if (!tmp) return mer__errf(err, MER_E_NOMEM, "affectgpt fusion: out of memory");
    float *a = tmp, *pv = a + nmax, *pa = pv + dv, *hvha = pa + da, *hid = hvha + 2 * dm, *wts = hid + dh;
    if (out_visual) {
        att_pool(ctx, &f->video_att, H, n_frames, dv, a, pv);
        linear(ctx, &f->video_proj, pv, 1, out_visual);
    }
    if (out_audio) {
        att_pool(ctx, &f->audio_att, A, n_clips, da, a, pa);
        linear(ctx, &f->audio_proj, pa, 1, out_audio);
    }
    if (out_multi) {
        mean_rows(H, n_frames, dv, pv);
        mean_rows(A, n_clips, da, pa);
        linear(ctx, &f->multi_video, pv, 1, hvha);
        linear(ctx, &f->multi_audio, pa, 1, hvha + dm);
        linear(ctx, &f->att_mlp, hvha, 1, hid);
        linear(ctx, &f->fc_att, hid, 1, wts);
        float *m = pv; /* the visual slot when it is large enough (dv >= dm), else a fresh buffer */
        if (dv < dm) m = malloc((size_t)dm * sizeof *m);
        if (!m) { free(tmp); return mer__errf(err, MER_E_NOMEM, "affectgpt fusion: out of memory"); }
        for (int j = 0; j < dm; j++) m[j] = wts[0] * hvha[j] + wts[1] * hvha[dm + j];
        linear(ctx, &f->multi_proj, m, 1, out_multi);
        if (m != pv) free(m);
    }
    free(tmp);
    return MER_OK;
}
