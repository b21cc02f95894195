/* clip.c - the CLIP ViT vision tower: hyper-parameters from config.json, tensor loading with shape
 * checks, and the forward pass on the CPU kernels (patch embedding, class token, position embeddings,
 * pre-LN transformer blocks with quick-GELU, post-LN on the class token, projection). Follows HF
 * transformers' CLIPVisionTransformer + CLIPVisionModelWithProjection. */
#include "models/clip.h"

#include <math.h>
#include <string.h>

// --- hyper-parameters --------------------------------------------------------------------------------

static mer_status cfg_int(const mer_config *cfg, const char *pre, const char *key, int64_t def, int lo, int hi,
                          int *out, mer_err *err) {
    char k[128];
    snprintf(k, sizeof k, "%s%s", pre, key);
    int64_t v;
    mer_status st = mer__config_get_int_or(cfg, k, def, &v, err);
    if (st) return st;
    if (v < lo || v > hi)
        return mer__errf(err, MER_E_RANGE, "%s: '%s' = %lld is out of range [%d, %d]", mer__config_name(cfg), k,
                         (long long)v, lo, hi);
    *out = (int)v;
    return MER_OK;
}

mer_status mer__clip_hparams(const mer_config *cfg, mer_clip_hparams *hp, mer_err *err) {
    memset(hp, 0, sizeof *hp);
    if (!cfg) return mer__errf(err, MER_E_ARG, "CLIP: no config.json");
    const char *pre = mer__config_has(cfg, "vision_config") ? "vision_config." : "";
    mer_status st;
    if ((st = cfg_int(cfg, pre, "hidden_size", 768, 1, 1 << 16, &hp->n_embd, err)) ||
        (st = cfg_int(cfg, pre, "intermediate_size", 3072, 1, 1 << 18, &hp->n_ff, err)) ||
        (st = cfg_int(cfg, pre, "num_hidden_layers", 12, 1, 1024, &hp->n_layer, err)) ||
        (st = cfg_int(cfg, pre, "num_attention_heads", 12, 1, 1024, &hp->n_head, err)) ||
        (st = cfg_int(cfg, pre, "image_size", 224, 1, 8192, &hp->image_size, err)) ||
        (st = cfg_int(cfg, pre, "patch_size", 32, 1, 8192, &hp->patch, err)) ||
        (st = cfg_int(cfg, pre, "num_channels", 3, 1, 16, &hp->n_channels, err)))
        return st;
    /* CLIPModel keeps projection_dim at top level; a CLIPVisionConfig has its own. */
    if (*pre && mer__config_has(cfg, "projection_dim"))
        st = cfg_int(cfg, "", "projection_dim", 512, 1, 1 << 16, &hp->n_proj, err);
    else
        st = cfg_int(cfg, pre, "projection_dim", 512, 1, 1 << 16, &hp->n_proj, err);
    if (st) return st;
    char k[128];
    snprintf(k, sizeof k, "%slayer_norm_eps", pre);
    double eps;
    if ((st = mer__config_get_float_or(cfg, k, 1e-5, &eps, err))) return st;
    hp->ln_eps = (float)eps;
    snprintf(k, sizeof k, "%shidden_act", pre);
    const char *act = "quick_gelu";
    if (mer__config_has(cfg, k) && (st = mer__config_get_str(cfg, k, &act, err))) return st;
    if (!strcmp(act, "quick_gelu")) hp->quick_gelu = 1;
    else if (!strcmp(act, "gelu")) hp->quick_gelu = 0;
    else return mer__errf(err, MER_E_UNSUPPORTED, "%s: '%s' = \"%s\" (quick_gelu or gelu expected)", mer__config_name(cfg), k, act);
    if (hp->n_embd % hp->n_head)
        return mer__errf(err, MER_E_FORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                         mer__config_name(cfg), hp->n_embd, hp->n_head);
    if (hp->n_embd / hp->n_head > 512)
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: head size %d exceeds 512", mer__config_name(cfg),
                         hp->n_embd / hp->n_head);
    if (hp->patch > hp->image_size)
        return mer__errf(err, MER_E_FORMAT, "%s: patch_size %d exceeds image_size %d", mer__config_name(cfg),
                         hp->patch, hp->image_size);
    int side = hp->image_size / hp->patch;
    hp->n_tok = side * side + 1;
    return MER_OK;
}

// --- loading -----------------------------------------------------------------------------------------

void mer_clip_free(mer_clip *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    mer_weights_close(m->owned_w);
    free(m);
}

mer_status mer_clip_load(const mer_weights *w, const mer_config *cfg, mer_clip **out, mer_err *err) {
    mer_status st;
    mer_wload L;
    mer_clip *m = NULL;
    *out = NULL;
    if (!w) return mer__errf(err, MER_E_ARG, "mer_clip_load: no weights");
    if (!cfg) cfg = w->config;
    if (!cfg) return mer__errf(err, MER_E_NOTFOUND, "%s: no config.json for this CLIP checkpoint", w->path);
    mer__wl_init(&L, w, "");
    m = calloc(1, sizeof *m);
    if (!m) return mer__errf(err, MER_E_NOMEM, "out of memory");
    if ((st = mer__clip_hparams(cfg, &m->hp, err))) goto fail;
    const mer_clip_hparams *hp = &m->hp;
    const int D = hp->n_embd, F = hp->n_ff, P = hp->patch, C = hp->n_channels;
    /* the vision tower sits under "vision_model." in both CLIPModel and CLIPVisionModel(WithProjection) */
    if (!mer__wl_has(&L, "vision_model.embeddings.class_embedding") && mer__wl_has(&L, "embeddings.class_embedding"))
        L.prefix = "";
    else
        L.prefix = "vision_model.";
    int64_t s1[1] = {D}, s2[2], s4[4];
    if ((st = mer__wl_f32(&L, &m->class_emb, 1, s1, err, "embeddings.class_embedding"))) goto fail;
    s4[0] = D, s4[1] = C, s4[2] = P, s4[3] = P;
    {
        float *pw;
        if ((st = mer__wl_f32(&L, &pw, 4, s4, err, "embeddings.patch_embedding.weight"))) goto fail;
        m->patch_w.data = pw;
        m->patch_w.dt = MER_DTYPE_F32;
    }
    s2[0] = hp->n_tok, s2[1] = D;
    if ((st = mer__wl_f32(&L, &m->pos_emb, 2, s2, err, "embeddings.position_embedding.weight"))) goto fail;
#define VEC(field, n, ...)                                                                                    \
    do {                                                                                                    \
        int64_t sv_[1] = {(n)};                                                                             \
        if ((st = mer__wl_f32(&L, &(field), 1, sv_, err, __VA_ARGS__))) goto fail;                          \
    } while (0)
    VEC(m->pre_ln_w, D, "pre_layrnorm.weight");
    VEC(m->pre_ln_b, D, "pre_layrnorm.bias");
    VEC(m->post_ln_w, D, "post_layernorm.weight");
    VEC(m->post_ln_b, D, "post_layernorm.bias");
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < hp->n_layer; i++) {
        mer_clip_layer *l = &m->layers[i];
        const char *p = "encoder.layers";
        VEC(l->ln1_w, D, "%s.%d.layer_norm1.weight", p, i);
        VEC(l->ln1_b, D, "%s.%d.layer_norm1.bias", p, i);
        VEC(l->ln2_w, D, "%s.%d.layer_norm2.weight", p, i);
        VEC(l->ln2_b, D, "%s.%d.layer_norm2.bias", p, i);
        if ((st = mer__wl_mat(&L, &l->q, D, D, err, "%s.%d.self_attn.q_proj.weight", p, i)) ||
            (st = mer__wl_mat(&L, &l->k, D, D, err, "%s.%d.self_attn.k_proj.weight", p, i)) ||
            (st = mer__wl_mat(&L, &l->v, D, D, err, "%s.%d.self_attn.v_proj.weight", p, i)) ||
            (st = mer__wl_mat(&L, &l->o, D, D, err, "%s.%d.self_attn.out_proj.weight", p, i)) ||
            (st = mer__wl_mat(&L, &l->fc1, F, D, err, "%s.%d.mlp.fc1.weight", p, i)) ||
            (st = mer__wl_mat(&L, &l->fc2, D, F, err, "%s.%d.mlp.fc2.weight", p, i)))
            goto fail;
        VEC(l->q_b, D, "%s.%d.self_attn.q_proj.bias", p, i);
        VEC(l->k_b, D, "%s.%d.self_attn.k_proj.bias", p, i);
        VEC(l->v_b, D, "%s.%d.self_attn.v_proj.bias", p, i);
        VEC(l->o_b, D, "%s.%d.self_attn.out_proj.bias", p, i);
        VEC(l->fc1_b, F, "%s.%d.mlp.fc1.bias", p, i);
        VEC(l->fc2_b, D, "%s.%d.mlp.fc2.bias", p, i);
    }
#undef VEC
    if (mer__wl_has(&L, "encoder.layers.%d.layer_norm1.weight", hp->n_layer)) {
        st = mer__errf(err, MER_E_FORMAT, "%s: the checkpoint has more layers than num_hidden_layers = %d", w->path,
                       hp->n_layer);
        goto fail;
    }
    L.prefix = "";
    if (mer__wl_has(&L, "visual_projection.weight")) {
        if ((st = mer__wl_mat(&L, &m->proj, hp->n_proj, D, err, "visual_projection.weight"))) goto fail;
    } else {
        m->hp.n_proj = 0; /* a CLIPVisionModel without projection: hidden states and pooled output only */
    }
    m->owned = mer__wl_take(&L, &m->n_owned);
    *out = m;
    return MER_OK;
fail:
    mer__wl_free(&L);
    mer_clip_free(m);
    return st;
}

mer_status mer_clip_open(const char *path, mer_clip **out, mer_err *err) {
    mer_weights *w;
    mer_config *cfg;
    *out = NULL;
    mer_status st = mer__open_with_config(path, &w, &cfg, err);
    if (st) return st;
    st = mer_clip_load(w, cfg, out, err);
    mer__config_free(cfg);
    if (st) {
        mer_weights_close(w);
        return st;
    }
    (*out)->owned_w = w;
    return MER_OK;
}

// --- forward -----------------------------------------------------------------------------------------

struct mer_clip_ctx {
    const mer_clip *m;
    mer_cpu_ctx *c;
    float *h, *t, *q, *k, *v, *a, *f; /* [n_tok][n_embd] x 6, [n_tok][n_ff] */
    float *mem;
};

void mer_clip_ctx_free(mer_clip_ctx *x) {
    if (!x) return;
    free(x->mem);
    free(x);
}

mer_status mer_clip_ctx_init(const mer_clip *m, mer_cpu_ctx *c, mer_clip_ctx **out, mer_err *err) {
    *out = NULL;
    if (!m || !c) return mer__errf(err, MER_E_ARG, "mer_clip_ctx_init: NULL model or context");
    mer_clip_ctx *x = calloc(1, sizeof *x);
    if (!x) return mer__errf(err, MER_E_NOMEM, "out of memory");
    size_t T = (size_t)m->hp.n_tok, D = (size_t)m->hp.n_embd, F = (size_t)m->hp.n_ff;
    size_t n = T * D * 6 + T * F;
    x->mem = malloc(n * sizeof(float));
    if (!x->mem) {
        free(x);
        return mer__errf(err, MER_E_NOMEM, "out of memory for CLIP activations (%zu floats)", n);
    }
    x->m = m;
    x->c = c;
    x->h = x->mem;
    x->t = x->h + T * D;
    x->q = x->t + T * D;
    x->k = x->q + T * D;
    x->v = x->k + T * D;
    x->a = x->v + T * D;
    x->f = x->a + T * D;
    *out = x;
    return MER_OK;
}

static void linear(mer_cpu_ctx *c, float *y, const float *x, const mer_wmat *w, const float *b, int n_tok, int n_in,
                   int n_out) {
    mer_cpu_matmul(c, y, (size_t)n_out, x, (size_t)n_in, w->data, w->dt, b, n_tok, n_in, n_out);
}

mer_status mer_clip_encode(mer_clip_ctx *x, const float *pixels, const mer_clip_out *out, mer_err *err) {
    if (!x || !pixels || !out) return mer__errf(err, MER_E_ARG, "mer_clip_encode: NULL argument");
    const mer_clip *m = x->m;
    const mer_clip_hparams *hp = &m->hp;
    mer_cpu_ctx *c = x->c;
    const int T = hp->n_tok, D = hp->n_embd, F = hp->n_ff, H = hp->n_head, hd = D / H;
    const size_t TD = (size_t)T * D;
    if (out->image_embeds && !hp->n_proj)
        return mer__errf(err, MER_E_ARG, "CLIP: image features asked of a checkpoint without visual_projection");
    /* the deepest block whose output is needed */
    int last = (out->image_embeds || out->pooled || out->last_hidden) ? hp->n_layer : 0;
    if (out->hidden)
        for (int i = 0; i <= hp->n_layer; i++)
            if (out->hidden[i] && i > last) last = i;

    /* embeddings: [CLS; patches] + positions, then pre_layrnorm */
    memcpy(x->h, m->class_emb, (size_t)D * sizeof(float));
    mer_cpu_conv2d_patch(c, x->h + D, pixels, m->patch_w.data, m->patch_w.dt, NULL, hp->n_channels, hp->image_size,
                         hp->image_size, D, hp->patch);
    mer_cpu_add(c, x->h, x->h, m->pos_emb, TD);
    mer_cpu_layernorm(c, x->h, x->h, T, D, m->pre_ln_w, m->pre_ln_b, hp->ln_eps);
    if (out->hidden && out->hidden[0]) memcpy(out->hidden[0], x->h, TD * sizeof(float));

    const float scale = 1.0f / sqrtf((float)hd);
    for (int li = 0; li < last; li++) {
        const mer_clip_layer *l = &m->layers[li];
        /* self-attention block */
        mer_cpu_layernorm(c, x->t, x->h, T, D, l->ln1_w, l->ln1_b, hp->ln_eps);
        linear(c, x->q, x->t, &l->q, l->q_b, T, D, D);
        linear(c, x->k, x->t, &l->k, l->k_b, T, D, D);
        linear(c, x->v, x->t, &l->v, l->v_b, T, D, D);
        mer_cpu_attention(c, x->a, x->q, x->k, x->v, T, H, H, hd, T, 0, 0, scale);
        linear(c, x->t, x->a, &l->o, l->o_b, T, D, D);
        mer_cpu_add(c, x->h, x->h, x->t, TD);
        /* MLP block */
        mer_cpu_layernorm(c, x->t, x->h, T, D, l->ln2_w, l->ln2_b, hp->ln_eps);
        linear(c, x->f, x->t, &l->fc1, l->fc1_b, T, D, F);
        if (hp->quick_gelu) mer_cpu_quick_gelu(c, x->f, x->f, (size_t)T * F);
        else mer_cpu_gelu(c, x->f, x->f, (size_t)T * F);
        linear(c, x->t, x->f, &l->fc2, l->fc2_b, T, F, D);
        mer_cpu_add(c, x->h, x->h, x->t, TD);
        if (out->hidden && out->hidden[li + 1]) memcpy(out->hidden[li + 1], x->h, TD * sizeof(float));
    }
    if (out->last_hidden) memcpy(out->last_hidden, x->h, TD * sizeof(float));
    if (out->pooled || out->image_embeds) {
        float *pooled = x->t; /* post_layernorm of the class token */
        mer_cpu_layernorm(c, pooled, x->h, 1, D, m->post_ln_w, m->post_ln_b, hp->ln_eps);
        if (out->pooled) memcpy(out->pooled, pooled, (size_t)D * sizeof(float));
        if (out->image_embeds) linear(c, out->image_embeds, pooled, &m->proj, NULL, 1, D, hp->n_proj);
    }
    return MER_OK;
}
