/* tokenizer_gguf.c - the tokenizer stored in a GGUF file's metadata, as llama.cpp's converter writes it
 * for Qwen2: tokenizer.ggml.model "gpt2", tokenizer.ggml.pre "qwen2", tokenizer.ggml.tokens (strings,
 * id = index), tokenizer.ggml.token_type (i32) and tokenizer.ggml.merges ("a b" strings). The arrays go
 * to mer_tokenizer_from_arrays with NFC on, as Hugging Face's tokenizer.json for Qwen2 asks (llama.cpp
 * itself does not normalise; mer follows the reference the model was trained with). */
#include "models/tokenizer.h"

#include "io/weights.h"

#include <string.h>

static const mer_kv *find_kv(const mer_weights *w, const char *key, mer_kvtype type, mer_kvtype arr_type, mer_err *err,
                             mer_status *st) {
    const mer_kv *kv = mer_weights_find_kv(w, key);
    *st = MER_OK;
    if (!kv) {
        *st = mer__errf(err, MER_E_NOTFOUND, "%s: no %s (not a GGUF with a tokenizer)", w->path, key);
        return NULL;
    }
    if (kv->type != type || (type == MER_KV_ARRAY && kv->arr_type != arr_type)) {
        *st = mer__errf(err, MER_E_FORMAT, "%s: %s has the wrong type", w->path, key);
        return NULL;
    }
    return kv;
}

mer_status mer__tokenizer_from_weights(const mer_weights *w, const mer_tokenizer_params *params, mer_tokenizer **out,
                                       mer_err *err) {
    *out = NULL;
    mer_status st;
    const mer_kv *model = find_kv(w, "tokenizer.ggml.model", MER_KV_STRING, 0, err, &st);
    if (!model) return st;
    if (strcmp(model->v.s.p, "gpt2"))
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: tokenizer.ggml.model \"%s\" (only \"gpt2\", byte-level BPE, is supported)",
                         w->path, model->v.s.p);
    const mer_kv *pre = find_kv(w, "tokenizer.ggml.pre", MER_KV_STRING, 0, err, &st);
    if (!pre) return st;
    if (strcmp(pre->v.s.p, "qwen2"))
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: tokenizer.ggml.pre \"%s\" (only \"qwen2\" is supported)", w->path,
                         pre->v.s.p);
    const mer_kv *tokens = find_kv(w, "tokenizer.ggml.tokens", MER_KV_ARRAY, MER_KV_STRING, err, &st);
    if (!tokens) return st;
    const mer_kv *merges = find_kv(w, "tokenizer.ggml.merges", MER_KV_ARRAY, MER_KV_STRING, err, &st);
    if (!merges) return st;
    const mer_kv *types = mer_weights_find_kv(w, "tokenizer.ggml.token_type");
    if (types && (types->type != MER_KV_ARRAY || types->arr_type != MER_KV_I32 || types->arr_n != tokens->arr_n ||
                  types->arr_bytes < types->arr_n * 4))
        return mer__errf(err, MER_E_FORMAT, "%s: tokenizer.ggml.token_type is not %llu i32 values", w->path,
                         (unsigned long long)tokens->arr_n);
    if (tokens->arr_n > SIZE_MAX / sizeof(size_t) || merges->arr_n > SIZE_MAX / sizeof(size_t) || !tokens->arr_str ||
        !merges->arr_str)
        return mer__errf(err, MER_E_FORMAT, "%s: tokenizer arrays unreadable", w->path);

    int32_t *ty = NULL;
    size_t *tok_lens = NULL, *merge_lens = NULL;
    if (types) {
        ty = malloc((size_t)types->arr_n * sizeof *ty + 1);
        if (!ty) return mer__errf(err, MER_E_NOMEM, "out of memory");
        memcpy(ty, types->arr_data, (size_t)types->arr_n * sizeof *ty); /* little-endian, maybe unaligned */
    }
    tok_lens = malloc((size_t)tokens->arr_n * sizeof *tok_lens + 1);
    merge_lens = malloc((size_t)merges->arr_n * sizeof *merge_lens + 1);
    if (!tok_lens || !merge_lens) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto done;
    }
    for (uint64_t i = 0; i < tokens->arr_n; i++) tok_lens[i] = (size_t)tokens->arr_str_len[i];
    for (uint64_t i = 0; i < merges->arr_n; i++) merge_lens[i] = (size_t)merges->arr_str_len[i];
    mer_tokenizer_arrays a = {
        .tokens = (const char *const *)tokens->arr_str, .token_lens = tok_lens, .n_tokens = (size_t)tokens->arr_n,
        .merges = (const char *const *)merges->arr_str, .merge_lens = merge_lens, .n_merges = (size_t)merges->arr_n,
        .token_types = ty, .nfc = 1,
    };
    st = mer_tokenizer_from_arrays(&a, params, out, err);
    if (st) mer__err_prefix(err, st, "%s", w->path);
done:
    free(ty);
    free(tok_lens);
    free(merge_lens);
    return st;
}

mer_status mer__tokenizer_load_gguf(const char *path, const mer_tokenizer_params *params, mer_tokenizer **out,
                                    mer_err *err) {
    mer_weights *w = NULL;
    *out = NULL;
    mer_status st = mer__gguf_open(path, &w, err);
    if (st) return st;
    st = mer__tokenizer_from_weights(w, params, out, err);
    mer_weights_close(w);
    return st;
}
