/* bundle.c - opening a single-file AffectGPT bundle (layout in bundle.h): the version check, a check
 * that every part is present (so that a bundle missing one fails with a message naming it rather than
 * with a tensor-level error), the encoders' config.json texts parsed from metadata, and prefix views
 * that give the encoder loaders the clip.* / hubert.* tensors under their Hugging Face names. */
#include "models/bundle.h"

#include <string.h>

mer_status mer__weights_view(const mer_weights *w, const char *prefix, const char *name, mer_weights **out,
                             mer_err *err) {
    *out = NULL;
    mer_weights *v = NULL;
    size_t pl = strlen(prefix);
    mer_status st = mer__weights_new(w->format, name, &v, err);
    if (st) return st;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const mer_wtensor *t = &w->tensors[i];
        if (strncmp(t->name, prefix, pl) || !t->name[pl]) continue;
        st = mer__weights_add_tensor(v, t->name + pl, strlen(t->name + pl), t->dtype, t->n_dims, t->shape, t->data,
                                     t->n_bytes, err);
        if (st) goto fail;
    }
    if ((st = mer__weights_finish(v, err))) goto fail;
    *out = v;
    return MER_OK;
fail:
    mer_weights_close(v);
    return st;
}

void mer__bundle_close(mer__bundle *b) {
    if (!b) return;
    mer_weights_close(b->clip_w);
    mer_weights_close(b->hubert_w);
    mer__config_free(b->clip_cfg);
    mer__config_free(b->hubert_cfg);
    mer_weights_close(b->w);
    free(b->path);
    free(b);
}

static size_t count_prefix(const mer_weights *w, const char *prefix) {
    size_t n = 0, pl = strlen(prefix);
    for (size_t i = 0; i < w->n_tensors; i++) n += !strncmp(w->tensors[i].name, prefix, pl);
    return n;
}

/* One encoder part: its config (metadata key) and its tensors (prefix). */
static mer_status open_part(mer__bundle *b, const char *what, const char *key, const char *prefix, mer_config **cfg,
                            mer_weights **view, mer_err *err) {
    const mer_kv *kv = mer_weights_find_kv(b->w, key);
    size_t n = count_prefix(b->w, prefix);
    if (!kv && !n)
        return mer__errf(err, MER_E_NOTFOUND, "%s: the bundle has no %s part (no '%s' metadata, no '%s*' tensors)",
                         b->path, what, key, prefix);
    if (!kv || kv->type != MER_KV_STRING)
        return mer__errf(err, kv ? MER_E_FORMAT : MER_E_NOTFOUND, "%s: the bundle's %s part has %s '%s' (its config.json)",
                         b->path, what, kv ? "a non-string" : "no", key);
    if (!n)
        return mer__errf(err, MER_E_NOTFOUND, "%s: the bundle's %s part has no tensors ('%s*')", b->path, what, prefix);
    char name[512];
    snprintf(name, sizeof name, "%s %s", b->path, key);
    mer_status st = mer__config_parse(kv->v.s.p, (size_t)kv->v.s.len, name, cfg, err);
    if (st) return st;
    snprintf(name, sizeof name, "%s (%s*)", b->path, prefix);
    return mer__weights_view(b->w, prefix, name, view, err);
}

mer_status mer__bundle_open(const char *path, mer__bundle **out, mer_err *err) {
    *out = NULL;
    if (!path) return mer__errf(err, MER_E_ARG, "mer__bundle_open: path is NULL");
    mer__bundle *b = calloc(1, sizeof *b);
    if (!b || !(b->path = mer__strndup(path, strlen(path)))) {
        free(b);
        return mer__errf(err, MER_E_NOMEM, "out of memory");
    }
    mer_status st = mer_weights_open(path, &b->w, err);
    if (st) goto fail;
    const mer_kv *kv = mer_weights_find_kv(b->w, "mer.bundle.version");
    if (b->w->format != MER_WFORMAT_GGUF || !kv) {
        st = mer__errf(err, MER_E_FORMAT, "%s: not a mer bundle (no 'mer.bundle.version' metadata; `mer convert` makes one)",
                       path);
        goto fail;
    }
    if (kv->type != MER_KV_U32 || kv->v.u != MER_BUNDLE_VERSION) {
        st = mer__errf(err, MER_E_UNSUPPORTED, "%s: bundle version %llu is not supported (this mer reads version %d)", path,
                       kv->type == MER_KV_U32 ? (unsigned long long)kv->v.u : 0ULL, MER_BUNDLE_VERSION);
        goto fail;
    }
    /* the LLM and its tokenizer, as the Qwen2 and tokenizer loaders will look for them */
    const mer_kv *arch = mer_weights_find_kv(b->w, "general.architecture");
    if (!arch || arch->type != MER_KV_STRING || strcmp(arch->v.s.p, "qwen2") ||
        !mer_weights_find(b->w, "token_embd.weight")) {
        st = mer__errf(err, MER_E_NOTFOUND,
                       "%s: the bundle has no LLM part (general.architecture qwen2 and tensor 'token_embd.weight')", path);
        goto fail;
    }
    if (!mer_weights_find_kv(b->w, "tokenizer.ggml.tokens") || !mer_weights_find_kv(b->w, "tokenizer.ggml.merges")) {
        st = mer__errf(err, MER_E_NOTFOUND,
                       "%s: the bundle has no tokenizer (metadata 'tokenizer.ggml.tokens' / 'tokenizer.ggml.merges')", path);
        goto fail;
    }
    if ((st = open_part(b, "CLIP", "mer.clip.config", MER_BUNDLE_CLIP, &b->clip_cfg, &b->clip_w, err)) ||
        (st = open_part(b, "HuBERT", "mer.hubert.config", MER_BUNDLE_HUBERT, &b->hubert_cfg, &b->hubert_w, err)))
        goto fail;
    if (!count_prefix(b->w, MER_BUNDLE_FUSION)) {
        st = mer__errf(err, MER_E_NOTFOUND, "%s: the bundle has no AffectGPT fusion layers (no '%s*' tensors)", path,
                       MER_BUNDLE_FUSION);
        goto fail;
    }
    const mer_kv *lk = mer_weights_find_kv(b->w, "mer.affectgpt.lora");
    const mer_kv *ls = mer_weights_find_kv(b->w, "mer.affectgpt.lora_scale");
    if (!lk || lk->type != MER_KV_STRING || (strcmp(lk->v.s.p, "merged") && strcmp(lk->v.s.p, "kept"))) {
        st = mer__errf(err, lk ? MER_E_FORMAT : MER_E_NOTFOUND,
                       "%s: metadata 'mer.affectgpt.lora' must say \"merged\" or \"kept\"", path);
        goto fail;
    }
    b->lora_kept = !strcmp(lk->v.s.p, "kept");
    if (ls && ls->type == MER_KV_F32) b->lora_scale = (float)ls->v.f;
    if (b->lora_kept) {
        if (!(b->lora_scale > 0)) {
            st = mer__errf(err, MER_E_NOTFOUND, "%s: the bundle keeps its LoRA but has no positive 'mer.affectgpt.lora_scale'",
                           path);
            goto fail;
        }
        if (!count_prefix(b->w, MER_BUNDLE_LORA)) {
            st = mer__errf(err, MER_E_NOTFOUND, "%s: the bundle says its LoRA is kept but has no '%s*' tensors", path,
                           MER_BUNDLE_LORA);
            goto fail;
        }
    }
    *out = b;
    return MER_OK;
fail:
    mer__bundle_close(b);
    return st;
}
