/* agpt.c - AffectGPT assembled from its parts, and one sample's features and answer (see agpt.h). */
#include "pipeline/agpt.h"
#include "models/bundle.h"
#include "models/clip_preprocess.h"
#include "models/tokenizer.h"

#include <string.h>

void mer__agpt_free(mer__agpt *a) {
    if (!a) return;
    mer_qwen2_ctx_free(a->llm_ctx);
    mer_qwen2_free(a->llm);
    mer_tokenizer_free(a->tok);
    mer_clip_ctx_free(a->clip_ctx);
    mer_clip_free(a->clip);
    mer_hubert_ctx_free(a->hub_ctx);
    mer_hubert_free(a->hub);
    mer_affectgpt_fusion_free(&a->fusion);
    mer_weights_close(a->ckpt);
    mer__bundle_close(a->bundle); /* after the encoders, which borrow its tensors */
    mer_cpu_ctx_free(a->cpu);
    mer_threadpool_free(a->pool);
    free(a->pixels);
    free(a);
}

char *mer__llm_tokenizer_path(const char *llm) {
    if (mer__is_dir(llm)) return mer__path_join(llm, "tokenizer.json");
    size_t n = strlen(llm);
    if (n > 5 && !strcmp(llm + n - 5, ".gguf")) return strdup(llm);
    char *dir = mer__path_dir(llm); /* a .safetensors file: its folder's tokenizer.json */
    char *path = dir ? mer__path_join(dir, "tokenizer.json") : NULL;
    free(dir);
    return path;
}

static mer_status finish_load(mer__agpt *a, const mer_infer_params *p, const char *clip, const char *hubert,
                              const char *llm, const char *affectgpt, mer_err *err);

/* Every part from a `mer convert` bundle (models/bundle.h); the rest of mer__agpt_load checks them. */
static mer_status load_bundle(const mer_infer_params *p, mer__agpt *a, mer_err *err) {
    mer_status st;
    mer__bundle *b;
    if ((st = mer__bundle_open(p->bundle, &a->bundle, err))) return st;
    b = a->bundle;
    if ((st = mer_threadpool_init(p->n_threads, &a->pool, err)) ||
        (st = mer_cpu_ctx_init(a->pool, MER_ISA_AUTO, &a->cpu, err)) ||
        (st = mer_clip_load(b->clip_w, b->clip_cfg, &a->clip, err)) ||
        (st = mer_clip_ctx_init(a->clip, a->cpu, &a->clip_ctx, err)) ||
        (st = mer_hubert_load(b->hubert_w, b->hubert_cfg, &a->hub, err)) ||
        (st = mer_hubert_ctx_init(a->hub, a->cpu, (long)MER_AGPT_SR * MER_AGPT_CLIP_S, &a->hub_ctx, err)))
        return st;
    if (p->tokenizer) st = mer_tokenizer_load(p->tokenizer, NULL, &a->tok, err);
    else st = mer__tokenizer_from_weights(b->w, NULL, &a->tok, err);
    if (st) return st;
    mer_qwen2_params qp = mer_qwen2_default_params();
    qp.wtype = p->wtype;
    qp.lora_path = b->lora_kept ? p->bundle : NULL; /* its lora.* tensors */
    qp.lora_scale = b->lora_scale;
    qp.n_threads = p->n_threads;
    if ((st = mer_qwen2_load(p->bundle, &qp, &a->llm, err))) return st;
    return mer_affectgpt_fusion_load(b->w, MER_BUNDLE_FUSION, &a->fusion, err);
}

mer_status mer__agpt_load(const mer_infer_params *p, mer__agpt **out, mer_err *err) {
    *out = NULL;
    if (p->bundle) {
        mer__agpt *a = calloc(1, sizeof *a);
        if (!a) return mer__errf(err, MER_E_NOMEM, "out of memory");
        mer_status st = load_bundle(p, a, err);
        if (!st) st = finish_load(a, p, p->bundle, p->bundle, p->bundle, p->bundle, err);
        if (st) mer__agpt_free(a);
        else *out = a;
        return st;
    }
    if (!p->clip || !p->hubert || !p->llm || !p->affectgpt)
        return mer__errf(err, MER_E_ARG, "AffectGPT needs --clip, --hubert, --llm and --affectgpt");
    mer__agpt *a = calloc(1, sizeof *a);
    char *tok_path = p->tokenizer ? strdup(p->tokenizer) : mer__llm_tokenizer_path(p->llm);
    mer_status st;
    if (!a || !tok_path) {
        free(a);
        free(tok_path);
        return mer__errf(err, MER_E_NOMEM, "out of memory");
    }
    if ((st = mer_threadpool_init(p->n_threads, &a->pool, err)) ||
        (st = mer_cpu_ctx_init(a->pool, MER_ISA_AUTO, &a->cpu, err)) ||
        (st = mer_clip_open(p->clip, &a->clip, err)) || (st = mer_clip_ctx_init(a->clip, a->cpu, &a->clip_ctx, err)) ||
        (st = mer_hubert_open(p->hubert, &a->hub, err)) ||
        (st = mer_hubert_ctx_init(a->hub, a->cpu, (long)MER_AGPT_SR * MER_AGPT_CLIP_S, &a->hub_ctx, err)) ||
        (st = mer_tokenizer_load(tok_path, NULL, &a->tok, err)))
        goto fail;
    mer_qwen2_params qp = mer_qwen2_default_params();
    qp.wtype = p->wtype;
    qp.lora_path = p->affectgpt;
    qp.lora_scale = p->lora_scale > 0 ? p->lora_scale : 2.0;
    qp.n_threads = p->n_threads;
    if ((st = mer_qwen2_load(p->llm, &qp, &a->llm, err))) goto fail;
    if ((st = mer_weights_open(p->affectgpt, &a->ckpt, err)) ||
        (st = mer_affectgpt_fusion_load(a->ckpt, "", &a->fusion, err)) ||
        (st = finish_load(a, p, p->clip, p->hubert, p->llm, p->affectgpt, err)))
        goto fail;
    free(tok_path);
    *out = a;
    return MER_OK;
fail:
    free(tok_path);
    mer__agpt_free(a);
    return st;
}

/* The LLM context, the widths checked against each other, stop ids, buffers (names: for messages). */
static mer_status finish_load(mer__agpt *a, const mer_infer_params *p, const char *clip, const char *hubert,
                              const char *llm, const char *affectgpt, mer_err *err) {
    mer_status st;
    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_threads = p->n_threads;
    cp.n_ctx = 2048;
    if ((st = mer_qwen2_ctx_init(a->llm, &cp, &a->llm_ctx, err))) return st;
    mer_qwen2_info info;
    mer_qwen2_get_info(a->llm, &info);
    a->n_embd = info.n_embd;
    a->n_visual = a->clip->hp.n_proj;
    a->n_audio = a->hub->hp.n_embd;
    if (a->fusion.d_visual != a->n_visual || a->fusion.d_audio != a->n_audio || a->fusion.d_llm != a->n_embd)
        return mer__errf(err, MER_E_SHAPE, "%s: the fusion layers take visual %d, audio %d and give %d, but the models give "
                         "visual %d (%s), audio %d (%s) and the LLM is %d wide (%s)", affectgpt, a->fusion.d_visual,
                         a->fusion.d_audio, a->fusion.d_llm, a->n_visual, clip, a->n_audio, hubert, a->n_embd, llm);
    const char *stops[] = {"<|im_end|>", "<|endoftext|>"};
    for (size_t k = 0; k < 2; k++) {
        int32_t id = mer_tokenizer_token_id(a->tok, stops[k], strlen(stops[k]));
        if (id >= 0) a->stop_ids[a->n_stop++] = id;
    }
    int S = a->clip->hp.image_size;
    if (!(a->pixels = malloc((size_t)3 * S * S * sizeof(float)))) return mer__errf(err, MER_E_NOMEM, "out of memory");
    return MER_OK;
}

mer_status mer__agpt_visual(mer__agpt *a, const uint8_t *const *imgs, int w, int h, int n, float *feats, mer_err *err) {
    int S = a->clip->hp.image_size;
    for (int i = 0; i < n; i++) {
        mer_status st = mer_clip_preprocess(imgs[i], w, h, S, S, a->pixels, NULL, err);
        if (st) return st;
        mer_clip_out o = {0};
        o.image_embeds = feats + (size_t)i * a->n_visual;
        if ((st = mer_clip_encode(a->clip_ctx, a->pixels, &o, err))) return st;
    }
    return MER_OK;
}

mer_status mer__agpt_audio(mer__agpt *a, float *clips, int n, long clip_len, int per_clip, int hf5, float *feats,
                           mer_err *err) {
    mer_hubert_normalize(clips, n, (size_t)clip_len, !per_clip);
    return mer_hubert_pool(a->hub_ctx, clips, n, clip_len, -1, hf5, feats, err);
}

/* Appends the ids of text[0..len) to (*ids, *n, *cap). */
static mer_status push_text(mer__agpt *a, const char *text, size_t len, int32_t **ids, size_t *n, size_t *cap,
                            mer_err *err) {
    int32_t *t = NULL;
    size_t nt = 0;
    mer_status st = mer_tokenizer_encode(a->tok, text, len, &t, &nt, err);
    if (st) return st;
    if (*n + nt > *cap) {
        size_t c = (*n + nt) * 2 + 16;
        int32_t *q = realloc(*ids, c * sizeof *q);
        if (!q) { free(t); return mer__errf(err, MER_E_NOMEM, "out of memory"); }
        *ids = q;
        *cap = c;
    }
    memcpy(*ids + *n, t, nt * sizeof *t);
    *n += nt;
    free(t);
    return MER_OK;
}

/* Placeholder markers in the id list before embedding (negative: never a token id). */
enum { PH_VISUAL = -1, PH_AUDIO = -2, PH_MULTI = -3 };

mer_status mer__agpt_prompt_embd(mer__agpt *a, mer_visual_input input, const char *subtitle, const char *question,
                                 const float *fused, float **embd, int32_t **ids_out, size_t *n_tok, mer_err *err) {
    mer_buf text = {0};
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    float *e = NULL;
    mer_status st = mer__affectgpt_prompt(&text, input, subtitle, question, 1);
    if (st) { st = mer__errf(err, st, "out of memory"); goto fail; }
    /* added special tokens split the text first (as HF does); the pieces are encoded alone */
    const char *vis = input == MER_INPUT_FACE ? MER_TOKEN_FACE : MER_TOKEN_FRAME;
    const char *s = text.data;
    for (;;) {
        const char *best = NULL;
        int which = 0;
        const char *cands[3] = {vis, MER_TOKEN_AUDIO, MER_TOKEN_MULTI};
        for (int k = 0; k < 3; k++) {
            const char *f = strstr(s, cands[k]);
            if (f && (!best || f < best)) { best = f; which = k; }
        }
        size_t seg = best ? (size_t)(best - s) : strlen(s);
        if (seg && (st = push_text(a, s, seg, &ids, &n, &cap, err))) goto fail;
        if (!best) break;
        if (n + 1 > cap) {
            cap = cap * 2 + 16;
            int32_t *q = realloc(ids, cap * sizeof *q);
            if (!q) { st = mer__errf(err, MER_E_NOMEM, "out of memory"); goto fail; }
            ids = q;
        }
        ids[n++] = which == 0 ? PH_VISUAL : which == 1 ? PH_AUDIO : PH_MULTI;
        s = best + strlen(cands[which]);
    }
    /* embed: placeholders read id 0, then their rows are overwritten by the fused features */
    int32_t *eid = malloc((n ? n : 1) * sizeof *eid);
    e = malloc((n ? n : 1) * (size_t)a->n_embd * sizeof *e);
    if (!eid || !e) { free(eid); st = mer__errf(err, MER_E_NOMEM, "out of memory"); goto fail; }
    for (size_t i = 0; i < n; i++) eid[i] = ids[i] < 0 ? 0 : ids[i];
    st = mer_qwen2_embed(a->llm, eid, n, e, err);
    free(eid);
    if (st) goto fail;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= 0) continue;
        int slot = ids[i] == PH_VISUAL ? 0 : ids[i] == PH_AUDIO ? 1 : 2;
        memcpy(e + i * (size_t)a->n_embd, fused + (size_t)slot * a->n_embd, (size_t)a->n_embd * sizeof *e);
    }
    mer__buf_free(&text);
    *embd = e;
    *ids_out = ids;
    *n_tok = n;
    return MER_OK;
fail:
    mer__buf_free(&text);
    free(ids);
    free(e);
    return st;
}

mer_status mer__agpt_answer(mer__agpt *a, mer_visual_input input, const char *subtitle, const char *question,
                            const float *visual, int n_frames, const float *audio, int n_clips,
                            const mer_generate_params *gp, mer_buf *out, mer_err *err) {
    size_t D = (size_t)a->n_embd, n = 0;
    float *fused = malloc(3 * D * sizeof *fused), *embd = NULL;
    int32_t *ids = NULL;
    char *text = NULL;
    size_t tlen = 0;
    mer_generate_result res = {0};
    mer_buf clean = {0};
    mer_status st;
    if (!fused) return mer__errf(err, MER_E_NOMEM, "out of memory");
    if ((st = mer_affectgpt_fuse(&a->fusion, a->cpu, visual, n_frames, audio, n_clips, fused, fused + D, fused + 2 * D, err)) ||
        (st = mer__agpt_prompt_embd(a, input, subtitle, question, fused, &embd, &ids, &n, err)))
        goto done;
    /* Chat.answer_sample: a prompt that does not leave room for max_new_tokens in 2000 keeps its last
     * 2000 - 1200 = 800 tokens */
    size_t skip = 0;
    if (n + (size_t)gp->max_new_tokens > 2000 && n > 800) skip = n - 800;
    mer_qwen2_ctx_reset(a->llm_ctx);
    if ((st = mer_qwen2_prefill_embd(a->llm_ctx, embd + skip * D, n - skip, err))) goto done;
    mer_generate_params g = *gp;
    g.stop_ids = a->stop_ids;
    g.n_stop_ids = a->n_stop;
    static const char *const stop_str[] = {"###"};
    g.stop_strings = stop_str;
    g.n_stop_strings = 1;
    g.skip_special = 0;
    if (g.min_new_tokens < 1) g.min_new_tokens = 1; /* generate(min_length=1) with inputs_embeds */
    if ((st = mer_qwen2_generate(a->llm_ctx, a->tok, NULL, 0, &g, NULL, NULL, &res, err))) goto done;
    /* the reference decodes every id with special tokens kept, then cleans up (spec §4.8) */
    if ((st = mer_tokenizer_decode(a->tok, res.ids, res.n_ids, 0, &text, &tlen, err))) goto done;
    if ((st = mer__affectgpt_answer_clean(text, "<|im_start|>", "<|im_end|>", &clean))) goto done;
    st = mer__buf_append(out, clean.data ? clean.data : "", clean.len);
done:
    free(fused);
    free(embd);
    free(ids);
    free(text);
    free(res.ids);
    mer__buf_free(&clean);
    return st;
}
