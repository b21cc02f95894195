/* hubert.c - the HuBERT stable-layer-norm speech encoder: hyper-parameters from config.json, tensor
 * loading (with the weight norm of the positional conv folded in at load), the forward pass on the CPU
 * kernels, input normalisation and the AffectGPT pooling. Follows HF transformers' HubertModel
 * (HubertLayerNormConvLayer, HubertFeatureProjection, HubertPositionalConvEmbedding,
 * HubertEncoderStableLayerNorm). */
#include "models/hubert.h"

#include <math.h>
#include <string.h>

// --- hyper-parameters --------------------------------------------------------------------------------

static mer_status get_int(const mer_config *cfg, const char *key, int64_t def, int lo, int hi, int *out,
                          mer_err *err) {
    int64_t v;
    mer_status st = mer__config_get_int_or(cfg, key, def, &v, err);
    if (st) return st;
    if (v < lo || v > hi)
        return mer__errf(err, MER_E_RANGE, "%s: '%s' = %lld is out of range [%d, %d]", mer__config_name(cfg), key,
                         (long long)v, lo, hi);
    *out = (int)v;
    return MER_OK;
}

static mer_status get_bool(const mer_config *cfg, const char *key, int def, int *out, mer_err *err) {
    *out = def;
    if (!mer__config_has(cfg, key)) return MER_OK;
    return mer__config_get_bool(cfg, key, out, err);
}

static mer_status get_str(const mer_config *cfg, const char *key, const char *def, const char **out,
                          mer_err *err) {
    *out = def;
    if (!mer__config_has(cfg, key)) return MER_OK;
    return mer__config_get_str(cfg, key, out, err);
}

mer_status mer__hubert_hparams(const mer_config *cfg, mer_hubert_hparams *hp, mer_err *err) {
    static const int DEF_K[7] = {10, 3, 3, 3, 3, 2, 2}, DEF_S[7] = {5, 2, 2, 2, 2, 2, 2};
    memset(hp, 0, sizeof *hp);
    if (!cfg) return mer__errf(err, MER_E_ARG, "HuBERT: no config.json");
    const char *name = mer__config_name(cfg);
    mer_status st;
    int stable = 0;
    const char *norm, *act, *fact;
    if ((st = get_str(cfg, "feat_extract_norm", "group", &norm, err)) ||
        (st = get_bool(cfg, "do_stable_layer_norm", 0, &stable, err)) ||
        (st = get_str(cfg, "hidden_act", "gelu", &act, err)) ||
        (st = get_str(cfg, "feat_extract_activation", "gelu", &fact, err)))
        return st;
    if (strcmp(norm, "layer") || !stable)
        return mer__errf(err, MER_E_UNSUPPORTED,
                         "%s: feat_extract_norm=\"%s\", do_stable_layer_norm=%s: only the stable-layer-norm "
                         "variant (\"layer\", true; e.g. chinese-hubert-large) is supported",
                         name, norm, stable ? "true" : "false");
    if (strcmp(act, "gelu") || strcmp(fact, "gelu"))
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: hidden_act \"%s\" / feat_extract_activation \"%s\" (gelu expected)",
                         name, act, fact);
    int64_t n_conv = 7;
    if (mer__config_has(cfg, "conv_dim")) { /* count the array's entries */
        n_conv = 0;
        char k[64];
        for (;;) {
            snprintf(k, sizeof k, "conv_dim.%lld", (long long)n_conv);
            if (!mer__config_has(cfg, k) || n_conv > MER_HUBERT_MAX_CONV) break;
            n_conv++;
        }
    }
    if (n_conv < 1 || n_conv > MER_HUBERT_MAX_CONV)
        return mer__errf(err, MER_E_RANGE, "%s: %lld conv layers (1..%d supported)", name, (long long)n_conv,
                         MER_HUBERT_MAX_CONV);
    hp->n_conv = (int)n_conv;
    for (int i = 0; i < hp->n_conv; i++) {
        char k[64];
        snprintf(k, sizeof k, "conv_dim.%d", i);
        if ((st = get_int(cfg, k, 512, 1, 1 << 16, &hp->conv_dim[i], err))) return st;
        snprintf(k, sizeof k, "conv_kernel.%d", i);
        if ((st = get_int(cfg, k, i < 7 ? DEF_K[i] : 2, 1, 4096, &hp->conv_kernel[i], err))) return st;
        snprintf(k, sizeof k, "conv_stride.%d", i);
        if ((st = get_int(cfg, k, i < 7 ? DEF_S[i] : 2, 1, 4096, &hp->conv_stride[i], err))) return st;
    }
    if ((st = get_bool(cfg, "conv_bias", 0, &hp->conv_bias, err)) ||
        (st = get_bool(cfg, "feat_proj_layer_norm", 1, &hp->feat_proj_ln, err)) ||
        (st = get_int(cfg, "hidden_size", 768, 1, 1 << 16, &hp->n_embd, err)) ||
        (st = get_int(cfg, "intermediate_size", 3072, 1, 1 << 18, &hp->n_ff, err)) ||
        (st = get_int(cfg, "num_hidden_layers", 12, 1, 1024, &hp->n_layer, err)) ||
        (st = get_int(cfg, "num_attention_heads", 12, 1, 1024, &hp->n_head, err)) ||
        (st = get_int(cfg, "num_conv_pos_embeddings", 128, 1, 4096, &hp->pos_k, err)) ||
        (st = get_int(cfg, "num_conv_pos_embedding_groups", 16, 1, 4096, &hp->pos_groups, err)))
        return st;
    int bn = 0;
    if ((st = get_bool(cfg, "conv_pos_batch_norm", 0, &bn, err))) return st;
    if (bn) return mer__errf(err, MER_E_UNSUPPORTED, "%s: conv_pos_batch_norm=true is not supported", name);
    double eps;
    if ((st = mer__config_get_float_or(cfg, "layer_norm_eps", 1e-5, &eps, err))) return st;
    hp->ln_eps = (float)eps;
    if (hp->n_embd % hp->n_head || hp->n_embd / hp->n_head > 512)
        return mer__errf(err, MER_E_FORMAT, "%s: hidden_size %d does not split into %d heads of at most 512", name,
                         hp->n_embd, hp->n_head);
    if (hp->n_embd % hp->pos_groups)
        return mer__errf(err, MER_E_FORMAT, "%s: hidden_size %d is not a multiple of num_conv_pos_embedding_groups %d",
                         name, hp->n_embd, hp->pos_groups);
    return MER_OK;
}

int mer_hubert_n_frames(const mer_hubert_hparams *hp, long n_samples) {
    long l = n_samples;
    for (int i = 0; i < hp->n_conv; i++) {
        if (l < hp->conv_kernel[i]) return 0;
        l = (l - hp->conv_kernel[i]) / hp->conv_stride[i] + 1;
    }
    return l > 0x7fffffff ? 0 : (int)l;
}

// --- loading -----------------------------------------------------------------------------------------

void mer_hubert_free(mer_hubert *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->pos_w);
    free(m->layers);
    mer_weights_close(m->owned_w);
    free(m);
}

/* The positional conv's weight: w[o][i][k] = g[k] * v[o][i][k] / ||v[:, :, k]|| (torch weight_norm with
 * dim=2: the norm runs over every dim but 2). Either spelling of the two tensors. */
static mer_status load_pos_conv(mer_wload *L, mer_hubert *m, mer_err *err) {
    const mer_hubert_hparams *hp = &m->hp;
    const int D = hp->n_embd, Cg = D / hp->pos_groups, K = hp->pos_k;
    const char *g_name = "encoder.pos_conv_embed.conv.weight_g", *v_name = "encoder.pos_conv_embed.conv.weight_v";
    if (!mer__wl_has(L, "%s", g_name) && !mer__wl_has(L, "%s", v_name)) {
        g_name = "encoder.pos_conv_embed.conv.parametrizations.weight.original0";
        v_name = "encoder.pos_conv_embed.conv.parametrizations.weight.original1";
    }
    float *g, *v;
    int64_t sg[3] = {1, 1, K}, sv[3] = {D, Cg, K};
    mer_status st;
    if ((st = mer__wl_f32(L, &g, 3, sg, err, "%s", g_name)) || (st = mer__wl_f32(L, &v, 3, sv, err, "%s", v_name)))
        return st;
    m->pos_w = malloc((size_t)D * Cg * K * sizeof(float));
    double *inv = malloc((size_t)K * sizeof(double));
    if (!m->pos_w || !inv) {
        free(inv);
        return mer__errf(err, MER_E_NOMEM, "out of memory");
    }
    for (int k = 0; k < K; k++) inv[k] = 0;
    for (size_t r = 0; r < (size_t)D * Cg; r++)
        for (int k = 0; k < K; k++) inv[k] += (double)v[r * K + k] * v[r * K + k];
    for (int k = 0; k < K; k++) inv[k] = inv[k] > 0 ? g[k] / sqrt(inv[k]) : 0.0;
    for (size_t r = 0; r < (size_t)D * Cg; r++)
        for (int k = 0; k < K; k++) m->pos_w[r * K + k] = (float)(v[r * K + k] * inv[k]);
    free(inv);
    int64_t sb[1] = {D};
    return mer__wl_f32(L, &m->pos_b, 1, sb, err, "encoder.pos_conv_embed.conv.bias");
}

mer_status mer_hubert_load(const mer_weights *w, const mer_config *cfg, mer_hubert **out, mer_err *err) {
    mer_status st;
    mer_wload L;
    mer_hubert *m = NULL;
    *out = NULL;
    if (!w) return mer__errf(err, MER_E_ARG, "mer_hubert_load: no weights");
    if (!cfg) cfg = w->config;
    if (!cfg) return mer__errf(err, MER_E_NOTFOUND, "%s: no config.json for this HuBERT checkpoint", w->path);
    mer__wl_init(&L, w, "");
    m = calloc(1, sizeof *m);
    if (!m) return mer__errf(err, MER_E_NOMEM, "out of memory");
    if ((st = mer__hubert_hparams(cfg, &m->hp, err))) goto fail;
    const mer_hubert_hparams *hp = &m->hp;
    const int D = hp->n_embd, F = hp->n_ff;
    static const char *const PREFIXES[] = {"", "hubert.", "wav2vec2."};
    for (size_t i = 0; i < MER_ARRAY_LEN(PREFIXES); i++) {
        L.prefix = PREFIXES[i];
        if (mer__wl_has(&L, "feature_extractor.conv_layers.0.conv.weight")) break;
        L.prefix = "";
    }
#define VEC(field, n, ...)                                                                                    \
    do {                                                                                                    \
        int64_t sv_[1] = {(n)};                                                                             \
        if ((st = mer__wl_f32(&L, &(field), 1, sv_, err, __VA_ARGS__))) goto fail;                          \
    } while (0)
    int c_in = 1;
    for (int i = 0; i < hp->n_conv; i++) {
        const int C = hp->conv_dim[i];
        int64_t s3[3] = {C, c_in, hp->conv_kernel[i]};
        if ((st = mer__wl_f32(&L, &m->conv_w[i], 3, s3, err, "feature_extractor.conv_layers.%d.conv.weight", i)))
            goto fail;
        if (hp->conv_bias) VEC(m->conv_b[i], C, "feature_extractor.conv_layers.%d.conv.bias", i);
        VEC(m->conv_ln_w[i], C, "feature_extractor.conv_layers.%d.layer_norm.weight", i);
        VEC(m->conv_ln_b[i], C, "feature_extractor.conv_layers.%d.layer_norm.bias", i);
        c_in = C;
    }
    if (hp->feat_proj_ln) {
        VEC(m->fp_ln_w, c_in, "feature_projection.layer_norm.weight");
        VEC(m->fp_ln_b, c_in, "feature_projection.layer_norm.bias");
    }
    if ((st = mer__wl_mat(&L, &m->fp, D, c_in, err, "feature_projection.projection.weight"))) goto fail;
    VEC(m->fp_b, D, "feature_projection.projection.bias");
    if ((st = load_pos_conv(&L, m, err))) goto fail;
    VEC(m->enc_ln_w, D, "encoder.layer_norm.weight");
    VEC(m->enc_ln_b, D, "encoder.layer_norm.bias");
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < hp->n_layer; i++) {
        mer_hubert_layer *l = &m->layers[i];
        const char *p = "encoder.layers";
        VEC(l->ln_w, D, "%s.%d.layer_norm.weight", p, i);
        VEC(l->ln_b, D, "%s.%d.layer_norm.bias", p, i);
        VEC(l->fln_w, D, "%s.%d.final_layer_norm.weight", p, i);
        VEC(l->fln_b, D, "%s.%d.final_layer_norm.bias", p, i);
        if ((st = mer__wl_mat(&L, &l->q, D, D, err, "%s.%d.attention.q_proj.weight", p, i)) ||
            (st = mer__wl_mat(&L, &l->k, D, D, err, "%s.%d.attention.k_proj.weight", p, i)) ||
            (st = mer__wl_mat(&L, &l->v, D, D, err, "%s.%d.attention.v_proj.weight", p, i)) ||
            (st = mer__wl_mat(&L, &l->o, D, D, err, "%s.%d.attention.out_proj.weight", p, i)) ||
            (st = mer__wl_mat(&L, &l->ff1, F, D, err, "%s.%d.feed_forward.intermediate_dense.weight", p, i)) ||
            (st = mer__wl_mat(&L, &l->ff2, D, F, err, "%s.%d.feed_forward.output_dense.weight", p, i)))
            goto fail;
        VEC(l->q_b, D, "%s.%d.attention.q_proj.bias", p, i);
        VEC(l->k_b, D, "%s.%d.attention.k_proj.bias", p, i);
        VEC(l->v_b, D, "%s.%d.attention.v_proj.bias", p, i);
        VEC(l->o_b, D, "%s.%d.attention.out_proj.bias", p, i);
        VEC(l->ff1_b, F, "%s.%d.feed_forward.intermediate_dense.bias", p, i);
        VEC(l->ff2_b, D, "%s.%d.feed_forward.output_dense.bias", p, i);
    }
#undef VEC
    if (mer__wl_has(&L, "encoder.layers.%d.layer_norm.weight", hp->n_layer)) {
        st = mer__errf(err, MER_E_FORMAT, "%s: the checkpoint has more layers than num_hidden_layers = %d", w->path,
                       hp->n_layer);
        goto fail;
    }
    m->owned = mer__wl_take(&L, &m->n_owned);
    *out = m;
    return MER_OK;
fail:
    mer__wl_free(&L);
    mer_hubert_free(m);
    return st;
}

mer_status mer_hubert_open(const char *path, mer_hubert **out, mer_err *err) {
    mer_weights *w;
    mer_config *cfg;
    *out = NULL;
    mer_status st = mer__open_with_config(path, &w, &cfg, err);
    if (st) return st;
    st = mer_hubert_load(w, cfg, out, err);
    mer__config_free(cfg);
    if (st) {
        mer_weights_close(w);
        return st;
    }
    (*out)->owned_w = w;
    return MER_OK;
}

// --- normalisation -----------------------------------------------------------------------------------

static void norm_span(float *x, size_t n) {
    if (!n) return;
    double s = 0, ss = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    double mean = s / (double)n;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] - mean;
        ss += d * d;
    }
    double inv = 1.0 / sqrt(ss / (double)n + 1e-7);
    for (size_t i = 0; i < n; i++) x[i] = (float)((x[i] - mean) * inv);
}

void mer_hubert_normalize(float *x, int n_clips, size_t clip_len, int joint) {
    if (joint) norm_span(x, (size_t)n_clips * clip_len);
    else
        for (int i = 0; i < n_clips; i++) norm_span(x + (size_t)i * clip_len, clip_len);
}

// --- forward -----------------------------------------------------------------------------------------

struct mer_hubert_ctx {
    const mer_hubert *m;
    mer_cpu_ctx *c;
    long max_samples;
    int max_t;
    float *ca, *cb;            /* conv stack ping-pong [C][L] / [L][C], max_c * max_l each */
    float *h, *t, *q, *k, *v, *a, *f; /* [T][D] x 6, [T][F] */
    float *pin, *pout;         /* positional conv input [D][T], output [D][T+1] */
    float *pool[4];            /* hidden states kept for mer_hubert_pool */
    float *mem;
};

void mer_hubert_ctx_free(mer_hubert_ctx *x) {
    if (!x) return;
    free(x->mem);
    free(x);
}

mer_status mer_hubert_ctx_init(const mer_hubert *m, mer_cpu_ctx *c, long max_samples, mer_hubert_ctx **out,
                               mer_err *err) {
    *out = NULL;
    if (!m || !c) return mer__errf(err, MER_E_ARG, "mer_hubert_ctx_init: NULL model or context");
    const mer_hubert_hparams *hp = &m->hp;
    int T = mer_hubert_n_frames(hp, max_samples);
    if (T < 1 || max_samples > (1L << 30))
        return mer__errf(err, MER_E_ARG, "HuBERT: clips of %ld samples are too short or too long", max_samples);
    size_t conv = 0;
    long l = max_samples;
    for (int i = 0; i < hp->n_conv; i++) {
        l = (l - hp->conv_kernel[i]) / hp->conv_stride[i] + 1;
        size_t s = (size_t)l * (size_t)hp->conv_dim[i];
        if (s > conv) conv = s;
    }
    size_t D = (size_t)hp->n_embd, F = (size_t)hp->n_ff, Tz = (size_t)T;
    size_t n = 2 * conv + 6 * Tz * D + Tz * F + Tz * D + (Tz + 1) * D + 4 * Tz * D;
    mer_hubert_ctx *x = calloc(1, sizeof *x);
    if (!x) return mer__errf(err, MER_E_NOMEM, "out of memory");
    x->mem = malloc(n * sizeof(float));
    if (!x->mem) {
        free(x);
        return mer__errf(err, MER_E_NOMEM, "out of memory for HuBERT activations (%zu floats)", n);
    }
    x->m = m;
    x->c = c;
    x->max_samples = max_samples;
    x->max_t = T;
    float *p = x->mem;
    x->ca = p, p += conv;
    x->cb = p, p += conv;
    x->h = p, p += Tz * D;
    x->t = p, p += Tz * D;
    x->q = p, p += Tz * D;
    x->k = p, p += Tz * D;
    x->v = p, p += Tz * D;
    x->a = p, p += Tz * D;
    x->f = p, p += Tz * F;
    x->pin = p, p += Tz * D;
    x->pout = p, p += (Tz + 1) * D;
    for (int i = 0; i < 4; i++) x->pool[i] = p, p += Tz * D;
    *out = x;
    return MER_OK;
}

/* dst[c][r] = src[r][c] for src [rows][cols] (ld_dst: row stride of dst). */
static void transpose(float *dst, size_t ld_dst, const float *src, int rows, int cols) {
    for (int r0 = 0; r0 < rows; r0 += 32)
        for (int c0 = 0; c0 < cols; c0 += 32) {
            int r1 = r0 + 32 < rows ? r0 + 32 : rows, c1 = c0 + 32 < cols ? c0 + 32 : cols;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++) dst[(size_t)c * ld_dst + r] = src[(size_t)r * cols + c];
        }
}

static void linear(mer_cpu_ctx *c, float *y, const float *x, const mer_wmat *w, const float *b, int n_tok, int n_in,
                   int n_out) {
    mer_cpu_matmul(c, y, (size_t)n_out, x, (size_t)n_in, w->data, w->dt, b, n_tok, n_in, n_out);
}

mer_status mer_hubert_encode(mer_hubert_ctx *x, const float *in, long n_samples, const mer_hubert_out *out,
                             int *n_frames, mer_err *err) {
    if (!x || !in || !out) return mer__errf(err, MER_E_ARG, "mer_hubert_encode: NULL argument");
    const mer_hubert *m = x->m;
    const mer_hubert_hparams *hp = &m->hp;
    mer_cpu_ctx *c = x->c;
    if (n_samples > x->max_samples)
        return mer__errf(err, MER_E_ARG, "HuBERT: a clip of %ld samples exceeds the context's %ld", n_samples,
                         x->max_samples);
    const int T = mer_hubert_n_frames(hp, n_samples);
    if (T < 1) return mer__errf(err, MER_E_ARG, "HuBERT: a clip of %ld samples is too short", n_samples);
    if (n_frames) *n_frames = T;
    const int D = hp->n_embd, F = hp->n_ff, H = hp->n_head, hd = D / H;
    const size_t TD = (size_t)T * D;

    /* conv feature extractor: conv -> layer norm over channels -> GELU. Two buffers swap roles each
     * layer: the conv reads `cur` ([c_in][l]) and writes `ob` ([C][lo]), which is transposed into `tb`
     * ([lo][C]) for the norm and GELU and back into `ob` as the next input; a conv never writes over its
     * own input (it reads it tile by tile). */
    const float *cur = in;
    float *ob = x->ca, *tb = x->cb;
    int c_in = 1, l = (int)n_samples;
    for (int i = 0; i < hp->n_conv; i++) {
        const int C = hp->conv_dim[i], lo = mer_conv1d_out_len(l, hp->conv_kernel[i], hp->conv_stride[i], 0);
        mer_cpu_conv1d(c, ob, cur, m->conv_w[i], m->conv_b[i], c_in, l, C, hp->conv_kernel[i], hp->conv_stride[i], 0, 1);
        transpose(tb, (size_t)C, ob, C, lo);
        mer_cpu_layernorm(c, tb, tb, lo, C, m->conv_ln_w[i], m->conv_ln_b[i], 1e-5f);
        mer_cpu_gelu(c, tb, tb, (size_t)lo * C);
        c_in = C;
        l = lo;
        if (i + 1 < hp->n_conv) {
            transpose(ob, (size_t)lo, tb, lo, C);
            cur = ob;
            float *sw = ob;
            ob = tb;
            tb = sw;
        }
    }
    MER_ASSERT(l == T);
    float *feat = tb; /* [T][C] */
    if (out->extract_features) memcpy(out->extract_features, feat, (size_t)T * c_in * sizeof(float));

    /* feature projection */
    if (hp->feat_proj_ln) mer_cpu_layernorm(c, feat, feat, T, c_in, m->fp_ln_w, m->fp_ln_b, hp->ln_eps);
    linear(c, x->h, feat, &m->fp, m->fp_b, T, c_in, D);

    /* positional conv embedding: h += GELU(conv(h^T))[:, :T]^T */
    transpose(x->pin, (size_t)T, x->h, T, D); /* [D][T] */
    const int pad = hp->pos_k / 2, lp = mer_conv1d_out_len(T, hp->pos_k, 1, pad);
    mer_cpu_conv1d(c, x->pout, x->pin, m->pos_w, m->pos_b, D, T, D, hp->pos_k, 1, pad, hp->pos_groups);
    MER_ASSERT(lp == T + 1 - hp->pos_k % 2); /* an even kernel gives one extra frame: dropped */
    mer_cpu_gelu(c, x->pout, x->pout, (size_t)D * lp);
    for (int t0 = 0; t0 < T; t0 += 32) /* h[t][d] += pout[d][t] */
        for (int d0 = 0; d0 < D; d0 += 32) {
            int t1 = t0 + 32 < T ? t0 + 32 : T, d1 = d0 + 32 < D ? d0 + 32 : D;
            for (int t = t0; t < t1; t++)
                for (int d = d0; d < d1; d++) x->h[(size_t)t * D + d] += x->pout[(size_t)d * lp + t];
        }

    int last = out->last_hidden ? hp->n_layer : 0;
    if (out->hidden)
        for (int i = 0; i <= hp->n_layer; i++)
            if (out->hidden[i] && i > last) last = i;
    if (out->hidden && out->hidden[0]) memcpy(out->hidden[0], x->h, TD * sizeof(float));

    const float scale = 1.0f / sqrtf((float)hd);
    for (int li = 0; li < last; li++) {
        const mer_hubert_layer *ly = &m->layers[li];
        mer_cpu_layernorm(c, x->t, x->h, T, D, ly->ln_w, ly->ln_b, hp->ln_eps);
        linear(c, x->q, x->t, &ly->q, ly->q_b, T, D, D);
        linear(c, x->k, x->t, &ly->k, ly->k_b, T, D, D);
        linear(c, x->v, x->t, &ly->v, ly->v_b, T, D, D);
        mer_cpu_attention(c, x->a, x->q, x->k, x->v, T, H, H, hd, T, 0, 0, scale);
        linear(c, x->t, x->a, &ly->o, ly->o_b, T, D, D);
        mer_cpu_add(c, x->h, x->h, x->t, TD);
        mer_cpu_layernorm(c, x->t, x->h, T, D, ly->fln_w, ly->fln_b, hp->ln_eps);
        linear(c, x->f, x->t, &ly->ff1, ly->ff1_b, T, D, F);
        mer_cpu_gelu(c, x->f, x->f, (size_t)T * F);
        linear(c, x->t, x->f, &ly->ff2, ly->ff2_b, T, F, D);
        mer_cpu_add(c, x->h, x->h, x->t, TD);
        if (out->hidden && out->hidden[li + 1]) memcpy(out->hidden[li + 1], x->h, TD * sizeof(float));
    }
    if (out->last_hidden) mer_cpu_layernorm(c, out->last_hidden, x->h, T, D, m->enc_ln_w, m->enc_ln_b, hp->ln_eps);
    return MER_OK;
}

mer_status mer_hubert_pool(mer_hubert_ctx *x, const float *clips, int n_clips, long clip_len, int layer, int hf5,
                           float *out, mer_err *err) {
    if (!x || !clips || !out || n_clips < 0) return mer__errf(err, MER_E_ARG, "mer_hubert_pool: bad argument");
    const mer_hubert_hparams *hp = &x->m->hp;
    const int L = hp->n_layer, D = hp->n_embd;
    if (layer > L) return mer__errf(err, MER_E_ARG, "HuBERT: hidden state %d asked of a %d-layer model", layer, L);
    float *ptrs[1025] = {0};
    int first, n_avg;
    if (layer < 0) { /* hidden_states[-4:] */
        n_avg = L + 1 < 4 ? L + 1 : 4;
        first = L + 1 - n_avg;
    } else {
        first = layer;
        n_avg = 1;
    }
    for (int i = 0; i < n_avg; i++) ptrs[first + i] = x->pool[i];
    mer_hubert_out o = {.hidden = ptrs};
    if (first + n_avg == L + 1 && !hf5) { /* transformers 4: the last entry is the layer-normed output */
        ptrs[L] = NULL;
        o.last_hidden = x->pool[n_avg - 1];
    }
    for (int ci = 0; ci < n_clips; ci++) {
        int T;
        mer_status st = mer_hubert_encode(x, clips + (size_t)ci * clip_len, clip_len, &o, &T, err);
        if (st) return st;
        float *y = out + (size_t)ci * D;
        for (int d = 0; d < D; d++) { /* torch.stack(hs).mean(0) then .mean(time), in f32 as torch does */
            double s = 0;
            for (int t = 0; t < T; t++) {
                float hs = 0;
                for (int i = 0; i < n_avg; i++) hs += x->pool[i][(size_t)t * D + d];
                s += hs / (float)n_avg;
            }
            y[d] = (float)(s / T);
        }
    }
    return MER_OK;
}
