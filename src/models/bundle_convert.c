/* bundle_convert.c - `mer convert`: the four parts of an AffectGPT model (CLIP vision, HuBERT, the Qwen2
 * LLM and the AffectGPT checkpoint with LoRA + fusion layers) and the tokenizer packed into one GGUF v3
 * bundle (layout in bundle.h). The LLM part is written as `mer quantize` writes a qwen2 GGUF (llama.cpp
 * names, qwen2.* keys, tokenizer.ggml.*, 2-D float tensors in the requested type, 1-D ones f32), with the
 * checkpoint's LoRA merged in f32 before the conversion exactly as the Qwen2 loader merges it at load
 * (W_row += scale * B[row, q] * A[q] for q in order, through the same axpy kernel), so that a bundle gives
 * bit-for-bit the weights the separate files give. Every part is loaded once by its own loader before
 * anything is written, so a wrong folder fails with that loader's message and no file is left behind.
 * Tensors stream through one at a time (rows converted on a thread pool). */
#include "mer.h"

#include "core/threadpool.h"
#include "io/gguf.h"
#include "io/gguf_names.h"
#include "models/affectgpt.h"
#include "models/bundle.h"
#include "models/clip.h"
#include "models/hubert.h"
#include "models/qwen2.h"

#include <math.h>
#include <string.h>

mer_bundle_params mer_bundle_default_params(void) {
    mer_bundle_params p;
    memset(&p, 0, sizeof p);
    p.type = "q8_0";
    p.lora_scale = 2.0;
    return p;
}

// --- tensor conversion -------------------------------------------------------------------------------

/* How output tensor i is produced from its source. */
typedef struct item {
    const mer_wtensor *t;         /* source (NULL: the writer has the data) */
    int otype;                    /* output ggml type */
    const mer__lora_pair *lora;   /* merged into the rows, or NULL */
} item;

typedef struct conv {
    item *items;
    size_t n, cap;
    mer_threadpool *pool;
    const mer_kernels *k;
    float lora_scale;
} conv;

typedef struct rows_job {
    const item *it;
    uint8_t *dst;
    size_t ne0, n_rows, row_in, row_out;
    const mer_kernels *k;
    float scale;
    int *bad; /* [nth]: 1 conversion failed, 2 f16 overflow, 3 out of memory */
} rows_job;

static void convert_rows(void *ctx, int ith, int nth) {
    const rows_job *j = ctx;
    const mer_wtensor *t = j->it->t;
    long r0, r1;
    mer_split_range((long)j->n_rows, ith, nth, &r0, &r1);
    if (r0 >= r1) return;
    float *f = malloc(j->ne0 * sizeof *f);
    uint8_t *raw = malloc(j->row_in ? j->row_in : 1);
    if (!f || !raw) {
        j->bad[ith] = 3;
        goto done;
    }
    for (long r = r0; r < r1; r++) {
        memcpy(raw, (const uint8_t *)t->data + (size_t)r * j->row_in, j->row_in); /* the mapping may be unaligned */
        if (t->dtype == MER_DTYPE_F64)
            for (size_t q = 0; q < j->ne0; q++) f[q] = (float)((const double *)(const void *)raw)[q];
        else mer_dequantize_row(t->dtype, raw, f, j->ne0);
        const mer__lora_pair *lp = j->it->lora;
        if (lp) /* as qwen2_load.c merges at load: same order, same kernel */
            for (int q = 0; q < lp->r; q++)
                j->k->axpy(f, j->scale * lp->b[(size_t)r * (size_t)lp->r + (size_t)q], lp->a + (size_t)q * j->ne0,
                           (int)j->ne0);
        if (j->it->otype == MER_DTYPE_F16)
            for (size_t q = 0; q < j->ne0; q++)
                if (!(fabsf(f[q]) <= 65504.0f)) {
                    j->bad[ith] = 2;
                    goto done;
                }
        if (mer_quantize_row((mer_dtype)j->it->otype, f, j->dst + (size_t)r * j->row_out, j->ne0) != 0) {
            j->bad[ith] = 1;
            goto done;
        }
    }
done:
    free(f);
    free(raw);
}

static mer_status fill_tensor(void *ud, size_t i, void *dst, size_t n_bytes, mer_err *err) {
    const conv *c = ud;
    const item *it = &c->items[i];
    const mer_wtensor *t = it->t;
    MER_ASSERT(t);
    if ((int)t->dtype == it->otype && !it->lora) {
        MER_ASSERT(n_bytes == t->n_bytes); /* checked when added */
        memcpy(dst, t->data, n_bytes);
        return MER_OK;
    }
    size_t ne0 = t->n_dims ? (size_t)t->shape[t->n_dims - 1] : 1, nel = 1;
    for (int d = 0; d < t->n_dims; d++) nel *= (size_t)t->shape[d];
    if (!nel) return MER_OK;
    rows_job j = {it, dst, ne0, nel / ne0, 0, 0, c->k, c->lora_scale, NULL};
    j.row_in = t->n_bytes / j.n_rows;
    j.row_out = n_bytes / j.n_rows;
    int nth = mer_threadpool_n_threads(c->pool);
    j.bad = calloc((size_t)nth, sizeof *j.bad);
    if (!j.bad) return mer__errf(err, MER_E_NOMEM, "out of memory converting '%s'", t->name);
    if (nel < 65536) mer_threadpool_run_n(c->pool, 1, convert_rows, &j);
    else mer_threadpool_run(c->pool, convert_rows, &j);
    int bad = 0;
    for (int k = 0; k < nth; k++)
        if (j.bad[k] > bad) bad = j.bad[k];
    free(j.bad);
    if (bad == 2)
        return mer__errf(err, MER_E_RANGE, "tensor '%s' has values beyond f16's range (give another encoder type: f32 or bf16)",
                         t->name);
    if (bad)
        return mer__errf(err, bad == 3 ? MER_E_NOMEM : MER_E_INTERNAL, "converting tensor '%s' to %s failed", t->name,
                         mer__wtype_name(it->otype));
    return MER_OK;
}

static int is_float(int t) {
    return t == MER_DTYPE_F32 || t == MER_DTYPE_F16 || t == MER_DTYPE_BF16 || t == MER_DTYPE_F64 ||
           t == MER_DTYPE_Q8_0 || t == MER_DTYPE_Q4_0;
}

/* Adds output tensor `name` from source t (data NULL: produced by fill_tensor) or from data. */
static mer_status add(mer_gguf_writer *g, conv *c, const char *name, const mer_wtensor *t, int otype,
                      const mer__lora_pair *lora, int n_dims, const int64_t *shape, const void *data, const char *src,
                      mer_err *err) {
    if (strlen(name) > MER_GGUF_MAX_NAME)
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor '%s' would be '%s', longer than GGUF's %d bytes", src,
                         t ? t->name : name, name, MER_GGUF_MAX_NAME);
    if (n_dims > 4)
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor '%s' has %d dimensions (GGUF holds at most 4)", src,
                         t ? t->name : name, n_dims);
    if (t) { /* the source's bytes must be what its shape and type say (the rows are read by that size) */
        uint64_t ne0 = t->n_dims ? (uint64_t)t->shape[t->n_dims - 1] : 1, nel = 1;
        for (int d = 0; d < t->n_dims; d++) nel *= (uint64_t)t->shape[d];
        size_t need;
        if (mer__wtype_nbytes(t->dtype, ne0, nel, &need, t->name, err)) return mer__err_prefix(err, MER_E_FORMAT, "%s", src);
        if (need != t->n_bytes)
            return mer__errf(err, MER_E_FORMAT, "%s: tensor '%s' holds %zu bytes, its shape and type need %zu", src, t->name,
                             t->n_bytes, need);
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 256;
        item *p = realloc(c->items, cap * sizeof *p);
        if (!p) return mer__errf(err, MER_E_NOMEM, "out of memory");
        c->items = p, c->cap = cap;
    }
    int64_t one = 1;
    mer_status st = mer__gguf_add_tensor(g, name, otype, n_dims ? n_dims : 1, n_dims ? shape : &one, data, err);
    if (st) return mer__err_prefix(err, st, "%s", src);
    item *it = &c->items[c->n++];
    it->t = data ? NULL : t;
    it->otype = otype;
    it->lora = lora;
    return MER_OK;
}

/* The output type of a float tensor under `want` (MER_DTYPE_INVALID: as stored), llama.cpp's rule: 1-D
 * tensors and rows that are not whole blocks stay f32. */
static int out_type(const mer_wtensor *t, mer_dtype want) {
    if (want == MER_DTYPE_INVALID) return t->dtype == MER_DTYPE_F64 ? MER_DTYPE_F32 : (int)t->dtype;
    size_t ne0 = t->n_dims ? (size_t)t->shape[t->n_dims - 1] : 1;
    if (t->n_dims <= 1 || ne0 % mer__wtype_block_elems(want)) return MER_DTYPE_F32;
    return want;
}

// --- parts -------------------------------------------------------------------------------------------

static const char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *s = path + n;
    while (s > path && s[-1] != '/') s--;
    return s;
}

/* The text of the config.json that belongs to a checkpoint path (a folder's, or the one beside a file). */
static mer_status config_text(const char *path, char **out, mer_err *err) {
    *out = NULL;
    char *dir = mer__is_dir(path) ? mer__strndup(path, strlen(path)) : mer__path_dir(path);
    char *cp = dir ? mer__path_join(dir, "config.json") : NULL;
    free(dir);
    if (!cp) return mer__errf(err, MER_E_NOMEM, "out of memory");
    mer_map m;
    mer_status st = mer__map_open(cp, &m, err);
    if (!st) {
        if (memchr(m.data, 0, m.size) || mer__utf8_check(m.data, m.size) != m.size)
            st = mer__errf(err, MER_E_FORMAT, "%s: not UTF-8 text", cp);
        else if (!(*out = mer__strndup((const char *)m.data, m.size)))
            st = mer__errf(err, MER_E_NOMEM, "out of memory");
        mer__map_close(&m);
    }
    free(cp);
    return st;
}

/* "model.layers.N.<proj>.weight" -> N and the projection; 0 when the name is not a projection matrix. */
static int proj_of(const char *hf, int *layer, int *proj) {
    int n = 0, l;
    if (sscanf(hf, "model.layers.%d.%n", &l, &n) != 1 || n == 0 || l < 0) return 0;
    for (int p = 0; p < MER__N_PROJ; p++) {
        const char *pn = mer__qwen2_proj_name(p);
        size_t k = strlen(pn);
        if (!strncmp(hf + n, pn, k) && !strcmp(hf + n + k, ".weight")) {
            *layer = l, *proj = p;
            return 1;
        }
    }
    return 0;
}

typedef struct parts {
    mer_weights *llm, *ckpt, *clip, *hubert, *tok_gguf;
    mer_config *llm_cfg, *clip_cfg, *hubert_cfg; /* owned when the checkpoint has none of its own */
    char *clip_json, *hubert_json;
    mer__lora *lora;
    mer__qwen2_hp hp;
} parts;

static void parts_free(parts *P) {
    mer_weights_close(P->llm);
    mer_weights_close(P->ckpt);
    mer_weights_close(P->clip);
    mer_weights_close(P->hubert);
    mer_weights_close(P->tok_gguf);
    mer__config_free(P->llm_cfg);
    mer__config_free(P->clip_cfg);
    mer__config_free(P->hubert_cfg);
    free(P->clip_json);
    free(P->hubert_json);
    mer__lora_free(P->lora);
}

/* Opens every part and checks it with its own loader, and that the widths fit together. */
static mer_status open_parts(const mer_bundle_params *p, parts *P, mer_err *err) {
    mer_status st;
    /* the LLM: a qwen2 HF folder / safetensors (config.json beside), or a qwen2 GGUF */
    if ((st = mer_weights_open(p->llm, &P->llm, err))) return st;
    if (P->llm->format == MER_WFORMAT_GGUF) {
        if (mer_weights_find_kv(P->llm, "mer.bundle.version"))
            return mer__errf(err, MER_E_ARG, "%s: is a mer bundle already; give the plain LLM as --llm", p->llm);
        if ((st = mer__qwen2_hp_from_gguf(P->llm, &P->hp, err))) return st;
    } else {
        const mer_config *cfg = P->llm->config;
        if (!cfg) {
            char *dir = mer__path_dir(p->llm), *cp = dir ? mer__path_join(dir, "config.json") : NULL;
            free(dir);
            if (!cp) return mer__errf(err, MER_E_NOMEM, "out of memory");
            st = mer__config_load(cp, &P->llm_cfg, err);
            free(cp);
            if (st) return st;
            cfg = P->llm_cfg;
        }
        if ((st = mer__qwen2_hp_from_config(cfg, &P->hp, err))) return st;
    }
    /* the AffectGPT checkpoint: LoRA for this LLM, and the fusion layers */
    if ((st = mer__lora_load(p->affectgpt, p->lora_scale, &P->hp, &P->lora, err))) return st;
    if ((st = mer_weights_open(p->affectgpt, &P->ckpt, err))) return st;
    mer_affectgpt_fusion fu;
    if ((st = mer_affectgpt_fusion_load(P->ckpt, "", &fu, err))) return st;
    int dv = fu.d_visual, da = fu.d_audio, dl = fu.d_llm;
    mer_affectgpt_fusion_free(&fu);
    /* the encoders, loaded once to check them */
    if ((st = mer__open_with_config(p->clip, &P->clip, &P->clip_cfg, err)) ||
        (st = config_text(p->clip, &P->clip_json, err)))
        return st;
    mer_clip *cm = NULL;
    if ((st = mer_clip_load(P->clip, P->clip_cfg, &cm, err))) return st;
    int nv = cm->hp.n_proj;
    mer_clip_free(cm);
    if ((st = mer__open_with_config(p->hubert, &P->hubert, &P->hubert_cfg, err)) ||
        (st = config_text(p->hubert, &P->hubert_json, err)))
        return st;
    mer_hubert *hm = NULL;
    if ((st = mer_hubert_load(P->hubert, P->hubert_cfg, &hm, err))) return st;
    int na = hm->hp.n_embd;
    mer_hubert_free(hm);
    if (dv != nv || da != na || dl != P->hp.n_embd)
        return mer__errf(err, MER_E_SHAPE,
                         "%s: the fusion layers take visual %d, audio %d and give %d, but the models give visual %d (%s), "
                         "audio %d (%s) and the LLM is %d wide (%s)",
                         p->affectgpt, dv, da, dl, nv, p->clip, na, p->hubert, P->hp.n_embd, p->llm);
    return MER_OK;
}

/* general.*, qwen2.* and tokenizer.* metadata. */
static mer_status add_llm_meta(mer_gguf_writer *g, const mer_bundle_params *p, parts *P, mer_dtype target,
                               const char **tok_src, mer_err *err) {
    mer_status st = MER_OK;
    int have_tok = 0;
    if (P->llm->format == MER_WFORMAT_GGUF) {
        for (size_t i = 0; i < P->llm->n_kv; i++) {
            const char *k = P->llm->kv[i].key;
            if (!strcmp(k, "general.file_type") || !strcmp(k, "general.quantization_version")) continue;
            if (p->tokenizer && !strncmp(k, "tokenizer.", 10)) continue;
            if ((st = mer__gguf_add_kv(g, &P->llm->kv[i], err))) return st;
        }
        if (!p->tokenizer) {
            have_tok = mer_weights_find_kv(P->llm, "tokenizer.ggml.tokens") != NULL;
            *tok_src = p->llm;
        }
    } else {
        const mer_config *cfg = P->llm->config ? P->llm->config : P->llm_cfg;
        if ((st = mer__gguf_add_str(g, "general.architecture", "qwen2", err)) ||
            (st = mer__gguf_add_str(g, "general.name", base_name(p->llm), err)) ||
            (st = mer__gguf_add_hparams(g, "qwen2", cfg, err)))
            return st;
        if (!p->tokenizer) { /* the folder's tokenizer.json */
            char *dir = mer__is_dir(p->llm) ? mer__strndup(p->llm, strlen(p->llm)) : mer__path_dir(p->llm);
            char *tj = dir ? mer__path_join(dir, "tokenizer.json") : NULL;
            char *tc = dir ? mer__path_join(dir, "tokenizer_config.json") : NULL;
            st = tj && tc ? mer__gguf_add_tokenizer(g, tj, tc, cfg, &have_tok, err) : mer__errf(err, MER_E_NOMEM, "out of memory");
            free(dir), free(tj), free(tc);
            if (st) return st;
            *tok_src = p->llm;
        }
    }
    if (p->tokenizer) {
        *tok_src = p->tokenizer;
        mer_weights *tw = NULL;
        mer_err e2 = {0};
        if (mer_weights_open(p->tokenizer, &tw, &e2) == MER_OK && tw->format == MER_WFORMAT_GGUF) {
            P->tok_gguf = tw; /* a GGUF's tokenizer.* keys */
            for (size_t i = 0; i < tw->n_kv && !st; i++)
                if (!strncmp(tw->kv[i].key, "tokenizer.", 10)) st = mer__gguf_add_kv(g, &tw->kv[i], err);
            if (st) return st;
            have_tok = mer_weights_find_kv(tw, "tokenizer.ggml.tokens") != NULL;
        } else { /* a tokenizer.json, with tokenizer_config.json beside it */
            mer_weights_close(tw);
            FILE *f = fopen(p->tokenizer, "rb");
            if (!f) return mer__errf(err, MER_E_IO, "%s: cannot open the tokenizer", p->tokenizer);
            fclose(f);
            char *dir = mer__path_dir(p->tokenizer), *tc = dir ? mer__path_join(dir, "tokenizer_config.json") : NULL;
            free(dir);
            if (!tc) return mer__errf(err, MER_E_NOMEM, "out of memory");
            st = mer__gguf_add_tokenizer(g, p->tokenizer, tc, P->llm->config ? P->llm->config : P->llm_cfg, &have_tok,
                                         err);
            free(tc);
            if (st) return st;
        }
    }
    if (!have_tok)
        return mer__errf(err, MER_E_NOTFOUND, "%s: no tokenizer (a folder's tokenizer.json or a GGUF's tokenizer.ggml.*); "
                                              "give one with --tokenizer", *tok_src);
    return mer__gguf_add_u32(g, "general.file_type", mer__gguf_file_type(target), err);
}

/* The mer.* metadata. */
static mer_status add_mer_meta(mer_gguf_writer *g, const mer_bundle_params *p, const parts *P, const char *tok_src,
                               mer_err *err) {
    mer_status st;
    if ((st = mer__gguf_add_u32(g, "mer.bundle.version", MER_BUNDLE_VERSION, err)) ||
        (st = mer__gguf_add_str(g, "mer.affectgpt.lora", p->keep_lora ? "kept" : "merged", err)) ||
        (st = mer__gguf_add_f32(g, "mer.affectgpt.lora_scale", P->lora->scale, err)) ||
        (st = mer__gguf_add_str(g, "mer.clip.config", P->clip_json, err)) ||
        (st = mer__gguf_add_str(g, "mer.hubert.config", P->hubert_json, err)) ||
        (st = mer__gguf_add_str(g, "mer.source.clip", p->clip, err)) ||
        (st = mer__gguf_add_str(g, "mer.source.hubert", p->hubert, err)) ||
        (st = mer__gguf_add_str(g, "mer.source.llm", p->llm, err)) ||
        (st = mer__gguf_add_str(g, "mer.source.affectgpt", p->affectgpt, err)) ||
        (st = mer__gguf_add_str(g, "mer.source.tokenizer", tok_src, err)))
        return st;
    return MER_OK;
}

static mer_status add_llm_tensors(mer_gguf_writer *g, conv *c, const mer_bundle_params *p, const parts *P,
                                  mer_dtype target, mer_bundle_stats *s, mer_err *err) {
    const mer_weights *w = P->llm;
    int gguf = w->format == MER_WFORMAT_GGUF;
    mer_status st;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const mer_wtensor *t = &w->tensors[i];
        if (!is_float(t->dtype))
            return mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor '%s' has element type %s (a float type expected)", p->llm,
                             t->name, mer__wtype_name(t->dtype) ? mer__wtype_name(t->dtype) : "?");
        char name[256], hf[256];
        if (gguf) {
            snprintf(name, sizeof name, "%s", t->name);
            mer__gguf_name_to_hf("qwen2", t->name, hf, sizeof hf);
        } else {
            snprintf(hf, sizeof hf, "%s", t->name);
            if (mer__gguf_name_from_hf("qwen2", t->name, name, sizeof name) < 0) snprintf(name, sizeof name, "%s", t->name);
        }
        const mer__lora_pair *lp = NULL;
        int layer, proj;
        if (!p->keep_lora && proj_of(hf, &layer, &proj) && layer < P->hp.n_layer) {
            lp = &P->lora->pairs[(size_t)layer * MER__N_PROJ + (size_t)proj];
            if (!lp->a) lp = NULL;
            else s->n_lora++;
        }
        if ((st = add(g, c, name, t, out_type(t, target), lp, t->n_dims, t->shape, NULL, p->llm, err))) return st;
        s->n_llm++;
    }
    if (!p->keep_lora) return MER_OK;
    for (int l = 0; l < P->hp.n_layer; l++)
        for (int q = 0; q < MER__N_PROJ; q++) {
            const mer__lora_pair *lp = &P->lora->pairs[(size_t)l * MER__N_PROJ + (size_t)q];
            if (!lp->a) continue;
            int n_out, n_in;
            mer__qwen2_proj_shape(&P->hp, q, &n_out, &n_in);
            char name[128];
            int64_t sa[2] = {lp->r, n_in}, sb[2] = {n_out, lp->r};
            snprintf(name, sizeof name, MER_BUNDLE_LORA "layers.%d.%s.lora_A.weight", l, mer__qwen2_proj_name(q));
            if ((st = add(g, c, name, NULL, MER_DTYPE_F32, NULL, 2, sa, lp->a, p->affectgpt, err))) return st;
            snprintf(name, sizeof name, MER_BUNDLE_LORA "layers.%d.%s.lora_B.weight", l, mer__qwen2_proj_name(q));
            if ((st = add(g, c, name, NULL, MER_DTYPE_F32, NULL, 2, sb, lp->b, p->affectgpt, err))) return st;
            s->n_lora++;
        }
    return MER_OK;
}

/* An encoder's float tensors under `prefix`: CLIP without its text half, HuBERT without its model prefix and
 * with the weight-norm parametrization renamed to weight_g / weight_v. */
static mer_status add_encoder(mer_gguf_writer *g, conv *c, const mer_weights *w, const char *src, int hubert,
                              mer_dtype want, size_t *count, mer_err *err) {
    const char *strip = "";
    if (hubert) {
        static const char *const PRE[] = {"hubert.", "wav2vec2."};
        for (size_t k = 0; k < MER_ARRAY_LEN(PRE); k++) {
            char probe[96];
            snprintf(probe, sizeof probe, "%sfeature_extractor.conv_layers.0.conv.weight", PRE[k]);
            if (mer_weights_find(w, probe)) strip = PRE[k];
        }
    }
    size_t sl = strlen(strip);
    for (size_t i = 0; i < w->n_tensors; i++) {
        const mer_wtensor *t = &w->tensors[i];
        const char *n = t->name;
        if (!is_float(t->dtype)) continue; /* integer buffers (position_ids) */
        if (strncmp(n, strip, sl)) continue;
        n += sl;
        if (!hubert && (!strncmp(n, "text_model.", 11) || !strncmp(n, "text_projection.", 16) || !strcmp(n, "logit_scale")))
            continue;
        char name[256];
        const char *pn = "parametrizations.weight.original";
        const char *hit = hubert ? strstr(n, pn) : NULL;
        if (hit && (hit[strlen(pn)] == '0' || hit[strlen(pn)] == '1') && !hit[strlen(pn) + 1])
            snprintf(name, sizeof name, "%s%.*sweight_%c", hubert ? MER_BUNDLE_HUBERT : MER_BUNDLE_CLIP, (int)(hit - n), n,
                     hit[strlen(pn)] == '0' ? 'g' : 'v');
        else snprintf(name, sizeof name, "%s%s", hubert ? MER_BUNDLE_HUBERT : MER_BUNDLE_CLIP, n);
        int ot = want == MER_DTYPE_INVALID ? out_type(t, want) : t->n_dims <= 1 ? MER_DTYPE_F32 : (int)want;
        mer_status st = add(g, c, name, t, ot, NULL, t->n_dims, t->shape, NULL, src, err);
        if (st) return st;
        (*count)++;
    }
    return MER_OK;
}

/* The checkpoint's tensors other than the LoRA and the LLM's: the fusion layers and projectors, f32. */
static mer_status add_fusion(mer_gguf_writer *g, conv *c, const mer_weights *w, const char *src, size_t *count,
                             mer_err *err) {
    for (size_t i = 0; i < w->n_tensors; i++) {
        const mer_wtensor *t = &w->tensors[i];
        if (strstr(t->name, "lora_") || !strncmp(t->name, "llama_model.", 12) || !is_float(t->dtype)) continue;
        char name[256];
        snprintf(name, sizeof name, MER_BUNDLE_FUSION "%s", t->name);
        mer_status st = add(g, c, name, t, MER_DTYPE_F32, NULL, t->n_dims, t->shape, NULL, src, err);
        if (st) return st;
        (*count)++;
    }
    return MER_OK;
}

// --- the conversion ----------------------------------------------------------------------------------

mer_status mer_bundle_convert(const mer_bundle_params *params, const char *out_path, mer_bundle_stats *stats,
                              mer_err *err) {
    mer_bundle_params p = params ? *params : mer_bundle_default_params();
    mer_bundle_stats s;
    memset(&s, 0, sizeof s);
    static const char *const WHAT[4] = {"the CLIP checkpoint (--clip)", "the HuBERT checkpoint (--hubert)",
                                        "the LLM (--llm)", "the AffectGPT checkpoint (--affectgpt)"};
    const char *given[4] = {p.clip, p.hubert, p.llm, p.affectgpt};
    for (int i = 0; i < 4; i++)
        if (!given[i] || !*given[i]) return mer__errf(err, MER_E_ARG, "mer convert: %s is not given", WHAT[i]);
    if (!out_path) return mer__errf(err, MER_E_ARG, "mer convert: no output path");
    mer_dtype target = p.type ? mer_dtype_from_name(p.type) : MER_DTYPE_Q8_0;
    if (target != MER_DTYPE_Q8_0 && target != MER_DTYPE_Q4_0 && target != MER_DTYPE_F16 && target != MER_DTYPE_BF16 &&
        target != MER_DTYPE_F32)
        return mer__errf(err, MER_E_ARG, "unknown type '%s' (q8_0, q4_0, f16, bf16 or f32)", p.type);
    mer_dtype enc;
    if (!p.encoder_type) enc = target == MER_DTYPE_F32 ? MER_DTYPE_F32 : target == MER_DTYPE_BF16 ? MER_DTYPE_BF16 : MER_DTYPE_F16;
    else if (!strcmp(p.encoder_type, "keep")) enc = MER_DTYPE_INVALID;
    else {
        enc = mer_dtype_from_name(p.encoder_type);
        if (enc != MER_DTYPE_F32 && enc != MER_DTYPE_F16 && enc != MER_DTYPE_BF16)
            return mer__errf(err, MER_E_ARG, "unknown encoder type '%s' (f32, f16, bf16 or keep)", p.encoder_type);
    }
    if (!(p.lora_scale > 0) || !isfinite(p.lora_scale))
        return mer__errf(err, MER_E_ARG, "LoRA scale %g must be a positive number", p.lora_scale);

    parts P;
    memset(&P, 0, sizeof P);
    mer_gguf_writer *g = NULL;
    conv c = {0};
    const char *tok_src = NULL;
    mer_status st;
    if ((st = open_parts(&p, &P, err))) goto fail;
    if ((st = mer_threadpool_init(p.n_threads, &c.pool, err)) || (st = mer__gguf_writer_new(&g, err))) goto fail;
    c.k = mer_kernels_get(MER_ISA_AUTO);
    c.lora_scale = P.lora->scale;
    if ((st = add_llm_meta(g, &p, &P, target, &tok_src, err)) || (st = add_mer_meta(g, &p, &P, tok_src, err)) ||
        (st = add_llm_tensors(g, &c, &p, &P, target, &s, err)) ||
        (st = add_encoder(g, &c, P.clip, p.clip, 0, enc, &s.n_clip, err)) ||
        (st = add_encoder(g, &c, P.hubert, p.hubert, 1, enc, &s.n_hubert, err)) ||
        (st = add_fusion(g, &c, P.ckpt, p.affectgpt, &s.n_fusion, err)))
        goto fail;
    int any_quant = 0;
    for (size_t i = 0; i < c.n; i++) {
        any_quant |= c.items[i].otype == MER_DTYPE_Q8_0 || c.items[i].otype == MER_DTYPE_Q4_0;
        s.bytes_out += mer__gguf_tensor_nbytes(g, i);
    }
    if (any_quant && (st = mer__gguf_add_u32(g, "general.quantization_version", 2, err))) goto fail;
    s.n_tensors = c.n;
    if ((st = mer__gguf_write(g, out_path, fill_tensor, &c, err))) goto fail;
    if (stats) *stats = s;
fail:
    free(c.items);
    mer_threadpool_free(c.pool);
    mer__gguf_writer_free(g);
    parts_free(&P);
    return st;
}
