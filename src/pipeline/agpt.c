/* agpt.c - AffectGPT assembled from its parts, and one sample's features and answer (see agpt.h). */
#include "pipeline/agpt.h"
#include "kernels/cuda/cuda_backend.h"
#include "models/affectgpt_cuda.h"
#include "models/bundle.h"
#include "models/clip_cuda.h"
#include "models/clip_preprocess.h"
#include "models/hubert_cuda.h"
#include "models/tokenizer.h"

#include <string.h>

#define AGPT_N_CTX 2048 /* positions per sequence: the reference's 2000 */

static void drop_device_encoders(mer__agpt *a);

void mer__agpt_free(mer__agpt *a) {
    if (!a) return;
    drop_device_encoders(a); /* the encoders first: their buffers come from the context's allocator */
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

int mer__agpt_on_device(const mer__agpt *a) { return a->gpu != NULL; }

mer_status mer__agpt_llm_ctx(mer__agpt *a, mer_qwen2_ctx **out, mer_err *err) {
    if (!a->llm_ctx) {
        mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
        cp.n_threads = a->n_threads;
        cp.n_ctx = AGPT_N_CTX;
        mer_status st = mer_qwen2_ctx_init(a->llm, &cp, &a->llm_ctx, err);
        if (st) return st;
    }
    *out = a->llm_ctx;
    return MER_OK;
}

void mer__agpt_drop_llm_ctx(mer__agpt *a) {
    mer_qwen2_ctx_free(a->llm_ctx);
    a->llm_ctx = NULL;
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


/* The LLM's load parameters beyond its files: threads, and the device with room for the batch's
 * sequences (the single-sample context is dropped before a batch is made: mer__agpt_drop_llm_ctx). */
static mer_qwen2_params llm_params(const mer_infer_params *p) {
    mer_qwen2_params qp = mer_qwen2_default_params();
    qp.wtype = p->wtype;
    qp.n_threads = p->n_threads;
    qp.device = p->device;
    qp.n_seq = p->batch > 1 ? p->batch : 1;
    qp.n_ctx = AGPT_N_CTX;
    return qp;
}

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
    mer_qwen2_params qp = llm_params(p);
    qp.lora_path = b->lora_kept ? p->bundle : NULL; /* its lora.* tensors */
    qp.lora_scale = b->lora_scale;
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
    mer_qwen2_params qp = llm_params(p);
    qp.lora_path = p->affectgpt;
    qp.lora_scale = p->lora_scale > 0 ? p->lora_scale : 2.0;
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

mer_status mer__agpt_from_parts(const mer_infer_params *p, mer_clip *clip, mer_hubert *hub, mer_qwen2 *llm,
                                const mer_weights *fusion_w, const char *tok_path, mer__agpt **out, mer_err *err) {
    *out = NULL;
    mer__agpt *a = calloc(1, sizeof *a);
    if (!a) {
        mer_clip_free(clip);
        mer_hubert_free(hub);
        mer_qwen2_free(llm);
        return mer__errf(err, MER_E_NOMEM, "out of memory");
    }
    a->clip = clip;
    a->hub = hub;
    a->llm = llm;
    mer_status st;
    if ((st = mer_threadpool_init(p->n_threads, &a->pool, err)) ||
        (st = mer_cpu_ctx_init(a->pool, MER_ISA_AUTO, &a->cpu, err)) ||
        (st = mer_clip_ctx_init(a->clip, a->cpu, &a->clip_ctx, err)) ||
        (st = mer_hubert_ctx_init(a->hub, a->cpu, (long)MER_AGPT_SR * MER_AGPT_CLIP_S, &a->hub_ctx, err)) ||
        (st = mer_tokenizer_load(tok_path, NULL, &a->tok, err)) ||
        (st = mer_affectgpt_fusion_load(fusion_w, "", &a->fusion, err)) ||
        (st = finish_load(a, p, "clip", "hubert", "llm", "fusion", err))) {
        mer__agpt_free(a);
        return st;
    }
    *out = a;
    return MER_OK;
}

static void drop_device_encoders(mer__agpt *a) {
    mer_affectgpt_cuda_free(a->fusion_g);
    mer_clip_cuda_free(a->clip_g);
    mer_hubert_cuda_free(a->hub_g);
#if MER_CUDA
    mer_cuda_free(a->gpu);
#endif
    a->fusion_g = NULL;
    a->clip_g = NULL;
    a->hub_g = NULL;
    a->gpu = NULL;
}

/* CLIP, HuBERT and the fusion layers uploaded to a device context of their own (the LLM has its own). */
static mer_status encoders_to_device(mer__agpt *a, const mer_infer_params *p, mer_err *err) {
#if !MER_CUDA
    (void)a, (void)p;
    return mer__errf(err, MER_E_UNSUPPORTED, "the encoders on the GPU: built without CUDA");
#else
    mer_dtype wt = p->wtype && !strcmp(p->wtype, "f32") ? MER_DTYPE_F32 : MER_DTYPE_BF16;
    mer_status st;
    if ((st = mer_cuda_init(0, &a->gpu, err)) ||
        (st = mer_clip_cuda_from_model(a->clip, a->gpu, MER_AGPT_N_FRAMES, wt, &a->clip_g, err)) ||
        (st = mer_hubert_cuda_from_model(a->hub, a->gpu, MER_AGPT_N_CLIPS, (long)MER_AGPT_SR * MER_AGPT_CLIP_S, wt,
                                         &a->hub_g, err)) ||
        (st = mer_affectgpt_cuda_from_fusion(&a->fusion, a->gpu, MER_AGPT_N_FRAMES, MER_AGPT_N_CLIPS, wt, &a->fusion_g,
                                             err)))
        return st;
    return MER_OK;
#endif
}

/* The LLM context, the widths checked against each other, stop ids, buffers (names: for messages). */
static mer_status finish_load(mer__agpt *a, const mer_infer_params *p, const char *clip, const char *hubert,
                              const char *llm, const char *affectgpt, mer_err *err) {
    mer_status st;
    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_threads = p->n_threads;
    cp.n_ctx = AGPT_N_CTX;
    a->n_threads = p->n_threads;
    if ((st = mer_qwen2_ctx_init(a->llm, &cp, &a->llm_ctx, err))) return st;
    mer_qwen2_info info;
    mer_qwen2_get_info(a->llm, &info);
    /* the encoders go where the LLM went (mer_qwen2_load resolved the device and refused an explicit
     * CUDA it could not have); under auto, encoders the device does not take (MER_E_UNSUPPORTED: a shape
     * its kernels lack) stay on the CPU, as the LLM does */
    if (info.device == MER_DEVICE_CUDA && (st = encoders_to_device(a, p, err))) {
        if (st != MER_E_UNSUPPORTED || p->device != MER_DEVICE_AUTO) return st;
        drop_device_encoders(a);
        if (err) memset(err, 0, sizeof *err);
    }
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

mer_status mer__agpt_pixels(const mer__agpt *a, const uint8_t *const *imgs, int w, int h, int n, float *pixels,
                            mer_err *err) {
    int S = a->clip->hp.image_size;
    for (int i = 0; i < n; i++) {
        mer_status st = mer_clip_preprocess(imgs[i], w, h, S, S, pixels + (size_t)i * 3 * S * S, NULL, err);
        if (st) return st;
    }
    return MER_OK;
}

typedef struct images_task {
    const mer__agpt *a;
    const uint8_t *faces;
    const int64_t *idx;
    int H, W, rgb;
    uint8_t *imgs;
    float *pixels;
    mer_status *st;
    mer_err *err;
} images_task;

static void image_part(void *ud, int i, int n) {
    images_task *t = ud;
    (void)n;
    const size_t S = (size_t)t->a->clip->hp.image_size, isz = (size_t)224 * 224 * 3;
    uint8_t *im = t->imgs + (size_t)i * isz;
    mer_status st = MER_OK;
    if (t->faces) {
        st = mer_resize_cv_linear(t->faces + (size_t)t->idx[i] * (size_t)t->H * (size_t)t->W * 3, t->W, t->H, 3, im, 224,
                                  224, &t->err[i]);
        if (!st && t->rgb)
            for (size_t k = 0; k < (size_t)224 * 224; k++) {
                uint8_t c = im[3 * k];
                im[3 * k] = im[3 * k + 2];
                im[3 * k + 2] = c;
            }
    }
    const uint8_t *one = im;
    if (!st) st = mer__agpt_pixels(t->a, &one, 224, 224, 1, t->pixels + (size_t)i * 3 * S * S, &t->err[i]);
    t->st[i] = st;
}

mer_status mer__agpt_images(const mer__agpt *a, mer_threadpool *pool, const uint8_t *faces, const int64_t *idx, int H,
                            int W, int rgb, int n, uint8_t *imgs, float *pixels, mer_err *err) {
    mer_status st_[16], *st = st_;
    mer_err err_[16], *errs = err_;
    if (n < 1) return MER_OK;
    if (n > 16) {
        st = calloc((size_t)n, sizeof *st);
        errs = calloc((size_t)n, sizeof *errs);
        if (!st || !errs) {
            free(st != st_ ? st : NULL);
            free(errs != err_ ? errs : NULL);
            return mer__errf(err, MER_E_NOMEM, "out of memory");
        }
    }
    images_task t = {a, faces, idx, H, W, rgb, imgs, pixels, st, errs};
    if (n <= 16) memset(err_, 0, (size_t)n * sizeof *err_);
    mer_threadpool_run_parts(pool, n, image_part, &t);
    mer_status r = MER_OK;
    for (int i = 0; i < n && !r; i++)
        if ((r = st[i]) && err) *err = errs[i];
    if (st != st_) free(st);
    if (errs != err_) free(errs);
    return r;
}

mer_status mer__agpt_clip(mer__agpt *a, const float *pixels, int n, float *feats, mer_err *err) {
    size_t S = (size_t)a->clip->hp.image_size;
    if (a->clip_g) { /* the images as batches of up to 8 */
        mer_clip_out o[MER_AGPT_N_FRAMES];
        for (int i0 = 0; i0 < n; i0 += MER_AGPT_N_FRAMES) {
            int k = n - i0 < MER_AGPT_N_FRAMES ? n - i0 : MER_AGPT_N_FRAMES;
            memset(o, 0, sizeof o);
            for (int i = 0; i < k; i++) o[i].image_embeds = feats + (size_t)(i0 + i) * a->n_visual;
            mer_status st = mer_clip_cuda_encode(a->clip_g, pixels + (size_t)i0 * 3 * S * S, k, o, err);
            if (st) return st;
        }
        return MER_OK;
    }
    for (int i = 0; i < n; i++) {
        mer_clip_out o = {0};
        o.image_embeds = feats + (size_t)i * a->n_visual;
        mer_status st = mer_clip_encode(a->clip_ctx, pixels + (size_t)i * 3 * S * S, &o, err);
        if (st) return st;
    }
    return MER_OK;
}

mer_status mer__agpt_hubert(mer__agpt *a, const float *clips, int n, long clip_len, int hf5, float *feats,
                            mer_err *err) {
    if (a->hub_g) return mer_hubert_cuda_pool(a->hub_g, clips, n, clip_len, -1, hf5, feats, err);
    return mer_hubert_pool(a->hub_ctx, clips, n, clip_len, -1, hf5, feats, err);
}

mer_status mer__agpt_visual(mer__agpt *a, const uint8_t *const *imgs, int w, int h, int n, float *feats, mer_err *err) {
    for (int i = 0; i < n; i++) {
        mer_status st = mer__agpt_pixels(a, imgs + i, w, h, 1, a->pixels, err);
        if (!st) st = mer__agpt_clip(a, a->pixels, 1, feats + (size_t)i * a->n_visual, err);
        if (st) return st;
    }
    return MER_OK;
}

mer_status mer__agpt_audio(mer__agpt *a, float *clips, int n, long clip_len, int per_clip, int hf5, float *feats,
                           mer_err *err) {
    mer_hubert_normalize(clips, n, (size_t)clip_len, !per_clip);
    return mer__agpt_hubert(a, clips, n, clip_len, hf5, feats, err);
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

mer_status mer__agpt_fuse(mer__agpt *a, const float *visual, int n_frames, const float *audio, int n_clips,
                          float *fused, mer_err *err) {
    size_t D = (size_t)a->n_embd;
    /* the device model takes up to 8 frames and 8 clips (the pipeline's counts); other counts, and the
     * bad ones the CPU reports, run on the CPU */
    if (a->fusion_g && visual && audio && n_frames >= 1 && n_frames <= MER_AGPT_N_FRAMES && n_clips >= 1 &&
        n_clips <= MER_AGPT_N_CLIPS)
        return mer_affectgpt_cuda_fuse(a->fusion_g, visual, n_frames, audio, n_clips, fused, fused + D, fused + 2 * D, err);
    return mer_affectgpt_fuse(&a->fusion, a->cpu, visual, n_frames, audio, n_clips, fused, fused + D, fused + 2 * D, err);
}

mer_status mer__agpt_prompt(mer__agpt *a, mer_visual_input input, const char *subtitle, const char *question,
                            const float *visual, int n_frames, const float *audio, int n_clips, int max_new_tokens,
                            float **embd_out, size_t *n_tok, mer_err *err) {
    size_t D = (size_t)a->n_embd, n = 0;
    float *fused = malloc(3 * D * sizeof *fused), *embd = NULL;
    int32_t *ids = NULL;
    mer_status st;
    *embd_out = NULL;
    *n_tok = 0;
    if (!fused) return mer__errf(err, MER_E_NOMEM, "out of memory");
    if ((st = mer__agpt_fuse(a, visual, n_frames, audio, n_clips, fused, err)) ||
        (st = mer__agpt_prompt_embd(a, input, subtitle, question, fused, &embd, &ids, &n, err)))
        goto done;
    /* Chat.answer_sample: a prompt that does not leave room for max_new_tokens in 2000 keeps its last
     * 2000 - 1200 = 800 tokens */
    size_t skip = 0;
    if (n + (size_t)(max_new_tokens > 0 ? max_new_tokens : 0) > 2000 && n > 800) skip = n - 800;
    if (skip) memmove(embd, embd + skip * D, (n - skip) * D * sizeof *embd);
    *embd_out = embd;
    *n_tok = n - skip;
    embd = NULL;
done:
    free(fused);
    free(embd);
    free(ids);
    return st;
}

void mer__agpt_gen_params(const mer__agpt *a, mer_generate_params *g) {
    static const char *const stop_str[] = {"###"};
    g->stop_ids = a->stop_ids;
    g->n_stop_ids = a->n_stop;
    g->stop_strings = stop_str;
    g->n_stop_strings = 1;
    g->skip_special = 0;
    if (g->min_new_tokens < 1) g->min_new_tokens = 1; /* generate(min_length=1) with inputs_embeds */
}

mer_status mer__agpt_answer_ids(mer__agpt *a, const int32_t *ids_in, size_t n_ids, mer_buf *out, mer_err *err) {
    mer_tokenizer_stream *ts = NULL;
    mer_buf seen = {0}, clean = {0};
    char *text = NULL;
    int32_t *ids = malloc((n_ids ? n_ids : 1) * sizeof *ids);
    if (!ids) return mer__errf(err, MER_E_NOMEM, "out of memory");
    n_ids = mer__tok_ids_with_text(a->tok, ids_in, n_ids, ids); /* ids without a token decode to nothing */
    size_t tlen = 0, n = n_ids;
    mer_status st;
    /* the stop string as mer_qwen2_generate applies it: the decoded output so far contains "###" */
    if ((st = mer_tokenizer_stream_init(a->tok, 0, &ts, err))) goto done;
    for (size_t i = 0; i < n_ids; i++) {
        int stop_id = 0;
        for (size_t k = 0; k < a->n_stop; k++) stop_id |= ids[i] == a->stop_ids[k];
        if (stop_id) break;
        const char *t;
        size_t len;
        if ((st = mer_tokenizer_stream_push(ts, ids[i], &t, &len, err))) goto done;
        size_t from = seen.len > 2 ? seen.len - 2 : 0;
        if (len && mer__buf_append(&seen, t, len)) { st = mer__errf(err, MER_E_NOMEM, "out of memory"); goto done; }
        if (len && memmem(seen.data + from, seen.len - from, "###", 3)) {
            n = i + 1;
            break;
        }
    }
    /* the reference decodes every id with special tokens kept, then cleans up (spec §4.8) */
    if ((st = mer_tokenizer_decode(a->tok, ids, n, 0, &text, &tlen, err))) goto done;
    if ((st = mer__affectgpt_answer_clean(text, "<|im_start|>", "<|im_end|>", &clean))) {
        st = mer__errf(err, st, "out of memory");
        goto done;
    }
    if ((st = mer__buf_append(out, clean.data ? clean.data : "", clean.len))) st = mer__errf(err, st, "out of memory");
done:
    mer_tokenizer_stream_free(ts);
    mer__buf_free(&seen);
    mer__buf_free(&clean);
    free(text);
    free(ids);
    return st;
}

mer_status mer__agpt_answer(mer__agpt *a, mer_visual_input input, const char *subtitle, const char *question,
                            const float *visual, int n_frames, const float *audio, int n_clips,
                            const mer_generate_params *gp, mer_buf *out, mer_err *err) {
    size_t n = 0;
    float *embd = NULL;
    mer_generate_result res = {0};
    mer_status st;
    if ((st = mer__agpt_prompt(a, input, subtitle, question, visual, n_frames, audio, n_clips, gp->max_new_tokens,
                               &embd, &n, err)))
        goto done;
    mer_qwen2_ctx *c;
    if ((st = mer__agpt_llm_ctx(a, &c, err))) goto done;
    mer_qwen2_ctx_reset(c);
    if ((st = mer_qwen2_prefill_embd(c, embd, n, err))) goto done;
    mer_generate_params g = *gp;
    mer__agpt_gen_params(a, &g);
    if ((st = mer_qwen2_generate(c, a->tok, NULL, 0, &g, NULL, NULL, &res, err))) goto done;
    st = mer__agpt_answer_ids(a, res.ids, res.n_ids, out, err);
done:
    free(embd);
    free(res.ids);
    return st;
}
