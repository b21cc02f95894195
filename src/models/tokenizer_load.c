/* tokenizer_load.c - builds a mer_tokenizer from a Hugging Face tokenizer.json or from plain arrays (the
 * GGUF tokenizer metadata). tokenizer.json is accepted when it describes what tokenizer.c implements:
 * a BPE model without byte fallback, dropout, prefixes or suffixes; normalizer null or NFC; the
 * pre-tokenizer Sequence[Split(Qwen2's regex, Isolated), ByteLevel(use_regex false)]; a ByteLevel (or
 * no) decoder and post-processor. Anything else is MER_E_UNSUPPORTED naming the field, so a tokenizer
 * that would encode differently is refused instead of silently mis-encoded. Added tokens with ids
 * above params->max_special_id are left out (Qwen2.5 profile: the Qwen3 data's extra four). A file that
 * starts with the GGUF magic goes to tokenizer_gguf.c instead. */
#include "models/tokenizer.h"

#include "io/weights.h"

#include <cjson/cJSON.h>
#include <string.h>

// --- helpers -----------------------------------------------------------------------------------------

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Whether key is absent, null, false, or the empty string: "this feature is off". */
static int joff(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return !v || cJSON_IsNull(v) || cJSON_IsFalse(v) || (cJSON_IsString(v) && !v->valuestring[0]);
}

/* A JSON number that is an integer in [0, INT32_MAX]; -1 otherwise. */
static int64_t jid(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= INT32_MAX) || (double)(int64_t)d != d) return -1;
    return (int64_t)d;
}

static int is_type(const cJSON *o, const char *type) {
    const char *s = jstr(o, "type");
    return cJSON_IsObject(o) && s && !strcmp(s, type);
}

// --- tokenizer.json ----------------------------------------------------------------------------------

static mer_status check_pipeline(const cJSON *root, const char *path, int *nfc, mer_err *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return mer__errf(err, MER_E_FORMAT, "%s: no \"model\" object", path);
    const char *type = jstr(model, "type");
    if (type && strcmp(type, "BPE"))
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: model.type \"%s\" (only BPE is supported)", path, type);
    static const char *const off[] = {"dropout", "byte_fallback", "continuing_subword_prefix", "end_of_word_suffix",
                                      "ignore_merges", "unk_token"};
    for (size_t i = 0; i < MER_ARRAY_LEN(off); i++)
        if (!joff(model, off[i]))
            return mer__errf(err, MER_E_UNSUPPORTED, "%s: model.%s is set (unsupported)", path, off[i]);

    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    *nfc = 0;
    if (norm && !cJSON_IsNull(norm)) {
        const cJSON *list = is_type(norm, "Sequence") ? cJSON_GetObjectItemCaseSensitive(norm, "normalizers") : NULL;
        const cJSON *one;
        if (is_type(norm, "NFC")) *nfc = 1;
        else if (cJSON_IsArray(list)) {
            cJSON_ArrayForEach(one, list) {
                if (!is_type(one, "NFC"))
                    return mer__errf(err, MER_E_UNSUPPORTED, "%s: normalizer: only NFC is supported", path);
                *nfc = 1;
            }
        } else {
            return mer__errf(err, MER_E_UNSUPPORTED, "%s: normalizer \"%s\" (only NFC or none is supported)", path,
                             jstr(norm, "type") ? jstr(norm, "type") : "?");
        }
    }

    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *list = is_type(pre, "Sequence") ? cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers") : NULL;
    int n_split = 0, n_bl = 0, n_other = 0;
    const cJSON *one;
    if (cJSON_IsArray(list)) {
        cJSON_ArrayForEach(one, list) {
            if (is_type(one, "Split")) {
                const cJSON *pat = cJSON_GetObjectItemCaseSensitive(one, "pattern");
                const char *re = jstr(pat, "Regex"), *beh = jstr(one, "behavior");
                if (!re || strcmp(re, MER_QWEN2_PRETOK_REGEX))
                    return mer__errf(err, MER_E_UNSUPPORTED,
                                     "%s: pre_tokenizer Split pattern is not Qwen2's regex (the only one supported)", path);
                if (!beh || strcmp(beh, "Isolated") || !joff(one, "invert"))
                    return mer__errf(err, MER_E_UNSUPPORTED, "%s: pre_tokenizer Split must be Isolated, not inverted", path);
                n_split++;
            } else if (is_type(one, "ByteLevel")) {
                if (!joff(one, "add_prefix_space") || !joff(one, "use_regex"))
                    return mer__errf(err, MER_E_UNSUPPORTED,
                                     "%s: pre_tokenizer ByteLevel with add_prefix_space or use_regex (unsupported)", path);
                n_bl++;
            } else {
                n_other++;
            }
        }
    }
    if (n_split != 1 || n_bl != 1 || n_other)
        return mer__errf(err, MER_E_UNSUPPORTED,
                         "%s: pre_tokenizer must be Sequence[Split(Qwen2 regex), ByteLevel] (the only one supported)", path);

    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (dec && !cJSON_IsNull(dec) && !is_type(dec, "ByteLevel"))
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: decoder must be ByteLevel", path);
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (post && !cJSON_IsNull(post) && !is_type(post, "ByteLevel"))
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: post_processor \"%s\" (only ByteLevel or none is supported)",
                         path, jstr(post, "type") ? jstr(post, "type") : "?");
    return MER_OK;
}

static int keep_added(const mer_tokenizer_params *p, int64_t id) { return p->max_special_id < 0 || id <= p->max_special_id; }

static mer_status load_json(const cJSON *root, const char *path, const mer_tokenizer_params *p, mer_tokenizer **out,
                            mer_err *err) {
    mer_tokenizer *t = NULL;
    mer_status st;
    int nfc = 0;
    if ((st = check_pipeline(root, path, &nfc, err))) return st;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) return mer__errf(err, MER_E_FORMAT, "%s: model.vocab is not an object", path);
    if (!cJSON_IsArray(merges)) return mer__errf(err, MER_E_FORMAT, "%s: model.merges is not an array", path);
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return mer__errf(err, MER_E_FORMAT, "%s: added_tokens is not an array", path);

    /* sizes first: ids must be dense enough that the tables stay proportional to the file */
    int64_t max_id = -1;
    size_t n_entries = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int64_t id = jid(e);
        if (id < 0) return mer__errf(err, MER_E_FORMAT, "%s: model.vocab[\"%.64s\"] is not a token id", path, e->string);
        if (id > max_id) max_id = id;
        n_entries++;
    }
    size_t k = 0;
    cJSON_ArrayForEach(e, added) {
        int64_t id = jid(cJSON_GetObjectItemCaseSensitive(e, "id"));
        const char *content = jstr(e, "content");
        if (id < 0 || !content) return mer__errf(err, MER_E_FORMAT, "%s: added_tokens[%zu] has no id or content", path, k);
        static const char *const flags[] = {"single_word", "lstrip", "rstrip"};
        for (size_t f = 0; f < MER_ARRAY_LEN(flags); f++)
            if (!joff(e, flags[f]))
                return mer__errf(err, MER_E_UNSUPPORTED, "%s: added_tokens[%zu] (\"%.64s\") sets %s (unsupported)", path,
                                 k, content, flags[f]);
        if (keep_added(p, id) && id > max_id) max_id = id;
        n_entries++;
        k++;
    }
    if (max_id < 0) return mer__errf(err, MER_E_FORMAT, "%s: empty vocabulary", path);
    if ((uint64_t)max_id >= 2 * (uint64_t)n_entries + 256)
        return mer__errf(err, MER_E_FORMAT, "%s: token id %lld is far above the %zu tokens listed", path,
                         (long long)max_id, n_entries);
    if ((st = mer__tok_new((size_t)max_id + 1, nfc, &t, err))) return st;

    cJSON_ArrayForEach(e, vocab) {
        if ((st = mer__tok_set(t, jid(e), e->string, strlen(e->string), MER__TOK_NORMAL, err))) {
            mer__err_prefix(err, st, "%s: model.vocab", path);
            goto fail;
        }
    }
    k = 0;
    cJSON_ArrayForEach(e, added) {
        int64_t id = jid(cJSON_GetObjectItemCaseSensitive(e, "id"));
        const char *content = jstr(e, "content");
        const cJSON *special = cJSON_GetObjectItemCaseSensitive(e, "special");
        if (keep_added(p, id) &&
            (st = mer__tok_set(t, id, content, strlen(content), cJSON_IsTrue(special) ? MER__TOK_SPECIAL : MER__TOK_ADDED, err))) {
            mer__err_prefix(err, st, "%s: added_tokens[%zu]", path, k);
            goto fail;
        }
        k++;
    }
    if ((st = mer__tok_index(t, err)) || (st = mer__tok_reserve_merges(t, (size_t)cJSON_GetArraySize(merges), err)))
        goto fail;
    k = 0;
    cJSON_ArrayForEach(e, merges) {
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        if (k > UINT32_MAX) {
            st = mer__errf(err, MER_E_RANGE, "%s: too many merges", path);
            goto fail;
        }
        if (cJSON_IsString(e)) { /* "a b" */
            const char *sp = strchr(e->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                a = e->valuestring;
                alen = (size_t)(sp - a);
                b = sp + 1;
                blen = strlen(b);
            }
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) { /* ["a", "b"] */
            a = e->child->valuestring;
            alen = strlen(a);
            b = e->child->next->valuestring;
            blen = strlen(b);
        }
        if (!a) {
            st = mer__errf(err, MER_E_FORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", path, k);
            goto fail;
        }
        if ((st = mer__tok_add_merge(t, (uint32_t)k, a, alen, b, blen, err))) {
            mer__err_prefix(err, st, "%s: model.merges[%zu]", path, k);
            goto fail;
        }
        k++;
    }
    if ((st = mer__tok_finish(t, err))) goto fail;
    *out = t;
    return MER_OK;
fail:
    mer_tokenizer_free(t);
    return st;
}

mer_status mer__tokenizer_load_mem(const void *data, size_t size, const char *name, const mer_tokenizer_params *params,
                                   mer_tokenizer **out, mer_err *err) {
    *out = NULL;
    mer_tokenizer_params p = params ? *params : mer_tokenizer_default_params();
    if (size >= 4 && !memcmp(data, "GGUF", 4)) {
        struct mer_weights *w = NULL;
        mer_status st = mer__gguf_open_mem(data, size, name, &w, err);
        if (!st) st = mer__tokenizer_from_weights(w, &p, out, err);
        mer_weights_close(w);
        return st;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)data, size, &end, 0);
    if (!root) {
        size_t off = end ? (size_t)(end - (const char *)data) : 0;
        return mer__errf(err, MER_E_FORMAT, "%s: neither JSON nor GGUF (JSON syntax error at byte offset %zu)", name, off);
    }
    mer_status st;
    if (!cJSON_IsObject(root)) st = mer__errf(err, MER_E_FORMAT, "%s: not a tokenizer.json (top level is not an object)", name);
    else st = load_json(root, name, &p, out, err);
    cJSON_Delete(root);
    return st;
}

mer_status mer_tokenizer_load(const char *path, const mer_tokenizer_params *params, mer_tokenizer **out,
                              mer_err *err) {
    if (out) *out = NULL;
    if (!path || !out) return mer__errf(err, MER_E_ARG, "mer_tokenizer_load: NULL argument");
    mer_map m = {0};
    mer_status st = mer__map_open(path, &m, err);
    if (st) return st;
    if (m.size >= 4 && !memcmp(m.data, "GGUF", 4)) {
        mer__map_close(&m);
        return mer__tokenizer_load_gguf(path, params, out, err); /* the reader maps the file itself */
    }
    st = mer__tokenizer_load_mem(m.data, m.size, path, params, out, err);
    mer__map_close(&m);
    return st;
}

// --- plain arrays (GGUF) -----------------------------------------------------------------------------

mer_status mer_tokenizer_from_arrays(const mer_tokenizer_arrays *a, const mer_tokenizer_params *params,
                                     mer_tokenizer **out, mer_err *err) {
    if (out) *out = NULL;
    if (!a || !out || (!a->tokens && a->n_tokens) || (!a->merges && a->n_merges))
        return mer__errf(err, MER_E_ARG, "mer_tokenizer_from_arrays: NULL argument");
    if (a->n_tokens > INT32_MAX || a->n_merges > UINT32_MAX)
        return mer__errf(err, MER_E_RANGE, "tokenizer arrays: %zu tokens, %zu merges: too many", a->n_tokens, a->n_merges);
    mer_tokenizer_params p = params ? *params : mer_tokenizer_default_params();
    mer_tokenizer *t = NULL;
    mer_status st;
    /* the last id that will hold a token */
    size_t n_vocab = 0;
    for (size_t i = 0; i < a->n_tokens; i++) {
        int32_t ty = a->token_types ? a->token_types[i] : 1;
        if (ty < 0 || ty > 6) return mer__errf(err, MER_E_FORMAT, "tokenizer token_type[%zu] = %d is not a GGUF token type", i, (int)ty);
        if (ty == 1 || ty == 2 || ty == 6 || ((ty == 3 || ty == 4) && keep_added(&p, (int64_t)i))) n_vocab = i + 1;
    }
    if (!n_vocab) return mer__errf(err, MER_E_FORMAT, "tokenizer arrays: empty vocabulary");
    if ((st = mer__tok_new(n_vocab, a->nfc, &t, err))) return st;
    for (size_t i = 0; i < n_vocab; i++) {
        int32_t ty = a->token_types ? a->token_types[i] : 1;
        int kind = ty == 3 ? MER__TOK_SPECIAL : ty == 4 ? MER__TOK_ADDED : (ty == 1 || ty == 2 || ty == 6) ? MER__TOK_NORMAL : 0;
        if (!kind || (kind != MER__TOK_NORMAL && !keep_added(&p, (int64_t)i))) continue;
        if (!a->tokens[i]) {
            st = mer__errf(err, MER_E_FORMAT, "tokenizer tokens[%zu] is NULL", i);
            goto fail;
        }
        size_t len = a->token_lens ? a->token_lens[i] : strlen(a->tokens[i]);
        if ((st = mer__tok_set(t, (int64_t)i, a->tokens[i], len, kind, err))) {
            mer__err_prefix(err, st, "tokenizer tokens[%zu]", i);
            goto fail;
        }
    }
    if ((st = mer__tok_index(t, err)) || (st = mer__tok_reserve_merges(t, a->n_merges, err))) goto fail;
    for (size_t i = 0; i < a->n_merges; i++) {
        if (!a->merges[i]) {
            st = mer__errf(err, MER_E_FORMAT, "tokenizer merges[%zu] is NULL", i);
            goto fail;
        }
        const char *s = a->merges[i];
        size_t len = a->merge_lens ? a->merge_lens[i] : strlen(s);
        const char *sp = memchr(s, ' ', len);
        if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp - s) - 1)) {
            st = mer__errf(err, MER_E_FORMAT, "tokenizer merges[%zu] is not \"a b\"", i);
            goto fail;
        }
        if ((st = mer__tok_add_merge(t, (uint32_t)i, s, (size_t)(sp - s), sp + 1, len - (size_t)(sp - s) - 1, err))) {
            mer__err_prefix(err, st, "tokenizer merges[%zu]", i);
            goto fail;
        }
    }
    if ((st = mer__tok_finish(t, err))) goto fail;
    *out = t;
    return MER_OK;
fail:
    mer_tokenizer_free(t);
    return st;
}
