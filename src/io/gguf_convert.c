/* gguf_convert.c - `mer quantize`: any checkpoint mer_weights_open reads, written as a GGUF v3 file in
 * the layout and naming llama.cpp uses. Tensor names go through the architecture's table (gguf_names.c),
 * hyper-parameters come from config.json (or are copied from a GGUF input), and each tensor is converted
 * while the file is written (one tensor in memory at a time), rows split across threads: 2-D and larger
 * float tensors to the requested type, 1-D tensors and rows whose length is not a multiple of the block
 * size kept in f32 as llama.cpp does, integer tensors kept as they are. Quantisation is dtype.c's
 * mer_quantize_row (llama.cpp's reference rounding), so the output matches llama.cpp's converter.
 * A Qwen2 folder's tokenizer.json (byte-level BPE) goes in as llama.cpp's tokenizer.ggml.* keys, so the
 * GGUF is self-contained for mer and for llama.cpp. */
#include "io/gguf.h"
#include "io/gguf_names.h"
#include "io/hfconfig.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

mer_quantize_params mer_quantize_default_params(void) {
    mer_quantize_params p = {"q8_0", 0};
    return p;
}

uint32_t mer__gguf_file_type(mer_dtype t) {
    switch (t) {
    case MER_DTYPE_F32: return 0;
    case MER_DTYPE_F16: return 1;
    case MER_DTYPE_Q4_0: return 2;
    case MER_DTYPE_Q8_0: return 7;
    case MER_DTYPE_BF16: return 32;
    default: return 0;
    }
}

static int is_float(int t) {
    return t == MER_DTYPE_F32 || t == MER_DTYPE_F16 || t == MER_DTYPE_BF16 || t == MER_DTYPE_F64 ||
           t == MER_DTYPE_Q8_0 || t == MER_DTYPE_Q4_0;
}

static int is_int(int t) {
    return t == MER_DTYPE_I8 || t == MER_DTYPE_I16 || t == MER_DTYPE_I32 || t == MER_DTYPE_I64 ||
           t == MER_DTYPE_U8 || t == MER_DTYPE_BOOL;
}

// --- conversion of one tensor ------------------------------------------------------------------------

typedef struct conv {
    const mer_weights *w;
    size_t *src;   /* output tensor i <- w->tensors[src[i]] */
    int *otype;    /* output ggml type */
    int n_threads;
} conv;

typedef struct rows_job {
    const mer_wtensor *t;
    int otype;
    uint8_t *dst;
    size_t ne0, n_rows, row_in, row_out;
    size_t r0, r1;
    int failed;
} rows_job;

/* Converts rows [r0, r1) through an f32 scratch row. */
static void *convert_rows(void *arg) {
    rows_job *j = arg;
    float *f = malloc(j->ne0 * sizeof *f);
    void *in = malloc(j->row_in ? j->row_in : 1);
    if (!f || !in) {
        j->failed = 1;
        goto done;
    }
    for (size_t r = j->r0; r < j->r1; r++) {
        memcpy(in, (const uint8_t *)j->t->data + r * j->row_in, j->row_in); /* the mapping may be unaligned */
        if (j->t->dtype == MER_DTYPE_F64) {
            for (size_t k = 0; k < j->ne0; k++) f[k] = (float)((const double *)in)[k];
        } else {
            mer_dequantize_row(j->t->dtype, in, f, j->ne0);
        }
        if (mer_quantize_row((mer_dtype)j->otype, f, j->dst + r * j->row_out, j->ne0) != 0) {
            j->failed = 1;
            break;
        }
    }
done:
    free(f);
    free(in);
    return NULL;
}

static mer_status fill_tensor(void *ud, size_t i, void *dst, size_t n_bytes, mer_err *err) {
    const conv *c = ud;
    const mer_wtensor *t = &c->w->tensors[c->src[i]];
    int ot = c->otype[i];
    if ((int)t->dtype == ot) {
        memcpy(dst, t->data, n_bytes);
        return MER_OK;
    }
    if (is_int(t->dtype)) { /* u8 / bool widened to i32 (GGUF has no unsigned tensor type) */
        size_t n = t->n_bytes;
        for (size_t k = 0; k < n; k++) {
            int32_t v = ((const uint8_t *)t->data)[k];
            memcpy((uint8_t *)dst + 4 * k, &v, 4);
        }
        return MER_OK;
    }
    size_t ne0 = t->n_dims ? (size_t)t->shape[t->n_dims - 1] : 1;
    size_t nel = 1;
    for (int d = 0; d < t->n_dims; d++) nel *= (size_t)t->shape[d];
    if (!nel) return MER_OK;
    rows_job base = {0};
    base.t = t;
    base.otype = ot;
    base.dst = dst;
    base.ne0 = ne0;
    base.n_rows = nel / ne0;
    base.row_in = t->n_bytes / base.n_rows;
    base.row_out = n_bytes / base.n_rows;
    int nt = c->n_threads;
    if ((size_t)nt > base.n_rows) nt = (int)base.n_rows;
    if (nel < 65536) nt = 1;
    rows_job jobs[64];
    pthread_t th[64];
    int running[64] = {0};
    for (int k = 0; k < nt; k++) {
        jobs[k] = base;
        jobs[k].r0 = base.n_rows * (size_t)k / (size_t)nt;
        jobs[k].r1 = base.n_rows * (size_t)(k + 1) / (size_t)nt;
        if (k > 0) running[k] = pthread_create(&th[k], NULL, convert_rows, &jobs[k]) == 0;
    }
    convert_rows(&jobs[0]);
    for (int k = 1; k < nt; k++) {
        if (running[k]) pthread_join(th[k], NULL);
        else convert_rows(&jobs[k]); /* the thread could not start: do its rows here */
    }
    for (int k = 0; k < nt; k++)
        if (jobs[k].failed)
            return mer__errf(err, MER_E_NOMEM, "%s: converting tensor '%s' to %s failed", c->w->path, t->name,
                             mer__wtype_name(ot));
    return MER_OK;
}

// --- metadata ----------------------------------------------------------------------------------------

mer_status mer__gguf_add_hparams(mer_gguf_writer *g, const char *arch, const mer_config *cfg, mer_err *err) {
    size_t n;
    const mer_gguf_hparam *hp = mer__gguf_hparams(arch, &n);
    for (size_t i = 0; i < n; i++) {
        const char *key = hp[i].config_key;
        if (!mer__config_has(cfg, key) && hp[i].alt_key && mer__config_has(cfg, hp[i].alt_key)) key = hp[i].alt_key;
        if (!mer__config_has(cfg, key)) continue; /* llama.cpp has defaults for the optional ones */
        char gk[128];
        snprintf(gk, sizeof gk, "%s.%s", arch, hp[i].gguf_key);
        mer_status st;
        if (hp[i].type == MER_KV_U32) {
            int64_t v;
            st = mer__config_get_int(cfg, key, &v, err);
            if (st) return st;
            if (v < 0 || v > UINT32_MAX)
                return mer__errf(err, MER_E_RANGE, "%s: key '%s' = %lld does not fit %s (u32)", mer__config_name(cfg),
                                 key, (long long)v, gk);
            st = mer__gguf_add_u32(g, gk, (uint32_t)v, err);
        } else {
            double v;
            st = mer__config_get_float(cfg, key, &v, err);
            if (st) return st;
            st = mer__gguf_add_f32(g, gk, (float)v, err);
        }
        if (st) return st;
    }
    return MER_OK;
}

// --- tokenizer (HF tokenizer.json -> tokenizer.ggml.*) ----------------------------------------------

enum { TOK_NORMAL = 1, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5 };

/* llama.cpp's convert_hf_to_gguf.py treats <|...|> (and <｜...｜>) added tokens as control tokens even when
 * tokenizer.json does not mark them special. */
static int looks_special(const char *s) {
    size_t n = strlen(s);
    if (n >= 4 && !strncmp(s, "<|", 2) && !strcmp(s + n - 2, "|>")) return 1;
    if (n >= 8 && !strncmp(s, "<\xef\xbd\x9c", 4) && !strcmp(s + n - 4, "\xef\xbd\x9c>")) return 1;
    return !strcmp(s, "<pad>") || !strcmp(s, "<mask>");
}

static cJSON *load_json(const char *path, mer_status *st, mer_err *err) {
    mer_map m;
    *st = mer__map_open(path, &m, err);
    if (*st) return NULL;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts((const char *)m.data, m.size, &end, 0);
    if (!j)
        *st = mer__errf(err, MER_E_FORMAT, "%s: malformed JSON near byte offset %zu", path,
                        end ? (size_t)(end - (const char *)m.data) : (size_t)0);
    mer__map_close(&m);
    return j;
}

/* tokenizer_config.json's bos/eos/... entry: a string or {"content": ...}; its id via the token table. */
static int special_id(const cJSON *tc, const char *key, char *const *tokens, size_t n, uint32_t *id) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(tc, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v)) return 0;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] && !strcmp(tokens[i], v->valuestring)) {
            *id = (uint32_t)i;
            return 1;
        }
    return 0;
}

mer_status mer__gguf_add_tokenizer(mer_gguf_writer *g, const char *path, const char *tc_path, const mer_config *cfg,
                                   int *added, mer_err *err) {
    *added = 0;
    mer_status st = MER_OK;
    cJSON *tj = NULL, *tc = NULL;
    char **tokens = NULL, **pads = NULL, **merges = NULL;
    int32_t *types = NULL;
    size_t n_vocab = 0, n_merges = 0;
    FILE *f = fopen(path, "rb");
    if (!f) goto fail; /* no tokenizer.json: nothing to add */
    fclose(f);
    tj = load_json(path, &st, err);
    if (!tj) goto fail;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(tj, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *addt = cJSON_GetObjectItemCaseSensitive(tj, "added_tokens");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") || !cJSON_IsObject(vocab) || !cJSON_IsArray(jm)) {
        st = mer__errf(err, MER_E_UNSUPPORTED, "%s: not a byte-level BPE tokenizer (model.type, vocab, merges)", path);
        goto fail;
    }
    /* ids: the vocabulary, the added tokens, and config.json's vocab_size (the embedding rows). */
    const int64_t MAX_ID = 1 << 24;
    int64_t top = -1, cfg_n = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= (double)MAX_ID ||
            e->valuedouble != floor(e->valuedouble)) {
            st = mer__errf(err, MER_E_FORMAT, "%s: vocab entry '%s' has no valid id", path, e->string ? e->string : "");
            goto fail;
        }
        if ((int64_t)e->valuedouble > top) top = (int64_t)e->valuedouble;
    }
    for (const cJSON *e = cJSON_IsArray(addt) ? addt->child : NULL; e; e = e->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id"), *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(c) || id->valuedouble < 0 || id->valuedouble >= (double)MAX_ID ||
            id->valuedouble != floor(id->valuedouble)) {
            st = mer__errf(err, MER_E_FORMAT, "%s: an added_tokens entry has no valid id/content", path);
            goto fail;
        }
        if ((int64_t)id->valuedouble > top) top = (int64_t)id->valuedouble;
    }
    if (cfg && mer__config_get_int_or(cfg, "vocab_size", 0, &cfg_n, err)) {
        st = MER_E_FORMAT;
        goto fail;
    }
    n_vocab = (size_t)(top + 1);
    if (cfg_n > top + 1 && cfg_n < MAX_ID) n_vocab = (size_t)cfg_n;
    tokens = calloc(n_vocab ? n_vocab : 1, sizeof *tokens);
    pads = calloc(n_vocab ? n_vocab : 1, sizeof *pads);
    types = calloc(n_vocab ? n_vocab : 1, sizeof *types);
    n_merges = (size_t)cJSON_GetArraySize(jm);
    merges = calloc(n_merges ? n_merges : 1, sizeof *merges);
    if (!tokens || !pads || !types || !merges) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (const cJSON *e = vocab->child; e; e = e->next) {
        size_t id = (size_t)e->valuedouble;
        if (tokens[id] && strcmp(tokens[id], e->string)) {
            st = mer__errf(err, MER_E_FORMAT, "%s: id %zu is given to '%s' and '%s'", path, id, tokens[id], e->string);
            goto fail;
        }
        tokens[id] = e->string;
        types[id] = TOK_NORMAL;
    }
    for (const cJSON *e = cJSON_IsArray(addt) ? addt->child : NULL; e; e = e->next) {
        size_t id = (size_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        const char *c = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        tokens[id] = (char *)c;
        types[id] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special")) || looks_special(c) ? TOK_CONTROL
                                                                                                     : TOK_USER_DEFINED;
    }
    for (size_t i = 0; i < n_vocab; i++) /* holes, as llama.cpp's converter fills them */
        if (!tokens[i]) {
            char b[32];
            snprintf(b, sizeof b, "[PAD%zu]", i);
            if (!(pads[i] = mer__strndup(b, strlen(b)))) {
                st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
                goto fail;
            }
            tokens[i] = pads[i];
            types[i] = TOK_UNUSED;
        }
    size_t k = 0;
    for (const cJSON *e = jm->child; e; e = e->next, k++) {
        if (cJSON_IsString(e)) {
            merges[k] = mer__strndup(e->valuestring, strlen(e->valuestring));
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            size_t a = strlen(e->child->valuestring), b = strlen(e->child->next->valuestring);
            if ((merges[k] = malloc(a + b + 2))) {
                memcpy(merges[k], e->child->valuestring, a);
                merges[k][a] = ' ';
                memcpy(merges[k] + a + 1, e->child->next->valuestring, b + 1);
            }
        } else {
            st = mer__errf(err, MER_E_FORMAT, "%s: merge %zu is neither \"a b\" nor [a, b]", path, k);
            goto fail;
        }
        if (!merges[k]) {
            st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
            goto fail;
        }
    }
    st = mer__gguf_add_str(g, "tokenizer.ggml.model", "gpt2", err);
    if (!st) st = mer__gguf_add_str(g, "tokenizer.ggml.pre", "qwen2", err);
    if (!st) st = mer__gguf_add_str_array(g, "tokenizer.ggml.tokens", (const char *const *)tokens, n_vocab, err);
    if (!st) st = mer__gguf_add_array(g, "tokenizer.ggml.token_type", MER_KV_I32, types, n_vocab, err);
    if (!st) st = mer__gguf_add_str_array(g, "tokenizer.ggml.merges", (const char *const *)merges, n_merges, err);
    if (st) goto fail;
    /* special ids: tokenizer_config.json, else config.json's *_token_id */
    f = tc_path ? fopen(tc_path, "rb") : NULL;
    if (f) {
        fclose(f);
        tc = load_json(tc_path, &st, err);
        if (!tc) goto fail;
    }
    static const char *const SPECIAL[][3] = {{"bos_token", "bos_token_id", "tokenizer.ggml.bos_token_id"},
                                             {"eos_token", "eos_token_id", "tokenizer.ggml.eos_token_id"},
                                             {"unk_token", "unk_token_id", "tokenizer.ggml.unknown_token_id"},
                                             {"pad_token", "pad_token_id", "tokenizer.ggml.padding_token_id"}};
    for (size_t i = 0; i < MER_ARRAY_LEN(SPECIAL) && !st; i++) {
        uint32_t id;
        int64_t v;
        if (tc && special_id(tc, SPECIAL[i][0], tokens, n_vocab, &id)) st = mer__gguf_add_u32(g, SPECIAL[i][2], id, err);
        else if (cfg && mer__config_get_int(cfg, SPECIAL[i][1], &v, NULL) == MER_OK && v >= 0 && (uint64_t)v < n_vocab)
            st = mer__gguf_add_u32(g, SPECIAL[i][2], (uint32_t)v, err);
    }
    const cJSON *ab = tc ? cJSON_GetObjectItemCaseSensitive(tc, "add_bos_token") : NULL;
    if (!st && cJSON_IsBool(ab)) st = mer__gguf_add_bool(g, "tokenizer.ggml.add_bos_token", cJSON_IsTrue(ab), err);
    const cJSON *ct = tc ? cJSON_GetObjectItemCaseSensitive(tc, "chat_template") : NULL;
    if (!st && cJSON_IsString(ct)) st = mer__gguf_add_str(g, "tokenizer.chat_template", ct->valuestring, err);
    if (!st) *added = 1;
fail:
    for (size_t i = 0; merges && i < n_merges; i++) free(merges[i]);
    for (size_t i = 0; pads && i < n_vocab; i++) free(pads[i]);
    free(merges);
    free(pads);
    free(tokens);
    free(types);
    cJSON_Delete(tc);
    cJSON_Delete(tj);
    return st;
}

/* The folder's tokenizer.json and tokenizer_config.json, when there is a tokenizer.json. */
static mer_status add_tokenizer(mer_gguf_writer *g, const char *dir, const mer_config *cfg, int *added,
                                mer_err *err) {
    *added = 0;
    char *path = mer__path_join(dir, "tokenizer.json"), *tc_path = mer__path_join(dir, "tokenizer_config.json");
    mer_status st = path && tc_path ? mer__gguf_add_tokenizer(g, path, tc_path, cfg, added, err)
                                    : mer__errf(err, MER_E_NOMEM, "%s: out of memory", dir);
    free(tc_path);
    free(path);
    return st;
}

static const char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *s = path + n;
    while (s > path && s[-1] != '/') s--;
    return s;
}

// --- the conversion ----------------------------------------------------------------------------------

mer_status mer_quantize_file(const char *in_path, const char *out_path, const mer_quantize_params *params,
                             mer_quantize_stats *stats, mer_err *err) {
    mer_quantize_params p = params ? *params : mer_quantize_default_params();
    mer_quantize_stats s;
    memset(&s, 0, sizeof s);
    /* (s.has_tokenizer is filled by add_tokenizer) */
    mer_weights *w = NULL;
    mer_gguf_writer *g = NULL;
    conv c = {0};
    mer_status st;
    mer_dtype target = p.type ? mer_dtype_from_name(p.type) : MER_DTYPE_INVALID;
    if (target != MER_DTYPE_Q8_0 && target != MER_DTYPE_Q4_0 && target != MER_DTYPE_F16 && target != MER_DTYPE_BF16 &&
        target != MER_DTYPE_F32)
        return mer__errf(err, MER_E_ARG, "unknown quantisation type '%s' (q8_0, q4_0, f16, bf16 or f32)",
                         p.type ? p.type : "(null)");
    if (!in_path || !out_path) return mer__errf(err, MER_E_ARG, "mer_quantize_file: path is NULL");
    if (p.n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = n > 0 ? (int)n : 1;
    }
    if (p.n_threads > 64) p.n_threads = 64;
    c.n_threads = p.n_threads;

    st = mer_weights_open(in_path, &w, err);
    if (st) return st;
    c.w = w;
    st = mer__gguf_writer_new(&g, err);
    if (st) goto fail;

    /* Architecture: from the GGUF itself, or from config.json. */
    const char *arch = NULL;
    const mer_kv *ak = mer_weights_find_kv(w, "general.architecture");
    if (w->format == MER_WFORMAT_GGUF && ak && ak->type == MER_KV_STRING) {
        arch = ak->v.s.p;
    } else if (w->config) {
        arch = mer__gguf_arch_from_config(w->config);
        if (!arch) mer__config_get_str(w->config, "model_type", &arch, NULL);
    }
    if (w->format == MER_WFORMAT_GGUF) {
        for (size_t i = 0; i < w->n_kv; i++) {
            const char *k = w->kv[i].key;
            if (!strcmp(k, "general.file_type") || !strcmp(k, "general.quantization_version")) continue;
            st = mer__gguf_add_kv(g, &w->kv[i], err);
            if (st) goto fail;
        }
    } else {
        if (arch) {
            st = mer__gguf_add_str(g, "general.architecture", arch, err);
            if (!st) st = mer__gguf_add_str(g, "general.name", base_name(in_path), err);
            if (!st && w->config) st = mer__gguf_add_hparams(g, arch, w->config, err);
            if (st) goto fail;
            if (!strcmp(arch, "qwen2") && w->config) { /* the folder's tokenizer.json, when there is one */
                char *dir = mer__is_dir(in_path) ? mer__strndup(in_path, strlen(in_path)) : mer__path_dir(in_path);
                if (!dir) {
                    st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", in_path);
                    goto fail;
                }
                st = add_tokenizer(g, dir, w->config, &s.has_tokenizer, err);
                free(dir);
                if (st) goto fail;
            }
        } else {
            st = mer__gguf_add_str(g, "general.name", base_name(in_path), err);
            if (st) goto fail;
        }
    }
    s.arch = mer__gguf_arch_known(arch); /* the table's static string, or NULL */
    st = mer__gguf_add_u32(g, "general.file_type", mer__gguf_file_type(target), err);
    if (st) goto fail;

    c.src = malloc((w->n_tensors ? w->n_tensors : 1) * sizeof *c.src);
    c.otype = malloc((w->n_tensors ? w->n_tensors : 1) * sizeof *c.otype);
    if (!c.src || !c.otype) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", in_path);
        goto fail;
    }
    int any_quant = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const mer_wtensor *t = &w->tensors[i];
        int ot;
        if (t->n_dims > 4) {
            st = mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor '%s' has %d dimensions (GGUF holds at most 4)", in_path,
                           t->name, t->n_dims);
            goto fail;
        }
        size_t ne0 = t->n_dims ? (size_t)t->shape[t->n_dims - 1] : 1;
        if (is_int(t->dtype)) {
            ot = t->dtype == MER_DTYPE_U8 || t->dtype == MER_DTYPE_BOOL ? MER_DTYPE_I32 : (int)t->dtype;
        } else if (!is_float(t->dtype)) {
            st = mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor '%s' is %s, which mer cannot convert", in_path, t->name,
                           mer__wtype_name(t->dtype) ? mer__wtype_name(t->dtype) : "?");
            goto fail;
        } else if (t->n_dims <= 1 || ne0 % mer__wtype_block_elems(target)) {
            ot = MER_DTYPE_F32;
            if (target != MER_DTYPE_F32) s.n_kept_f32++;
            else s.n_converted++;
        } else {
            ot = target;
            s.n_converted++;
        }
        if (ot == MER_DTYPE_Q8_0 || ot == MER_DTYPE_Q4_0) any_quant = 1;
        char name[256];
        int r = arch ? mer__gguf_name_from_hf(arch, t->name, name, sizeof name) : 0;
        if (!arch) snprintf(name, sizeof name, "%s", t->name);
        if (r < 0 || strlen(t->name) >= sizeof name) {
            st = mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor name '%s' is too long for GGUF", in_path, t->name);
            goto fail;
        }
        if (r == 1) s.n_renamed++;
        int64_t one = 1;
        st = mer__gguf_add_tensor(g, name, ot, t->n_dims ? t->n_dims : 1, t->n_dims ? t->shape : &one, NULL, err);
        if (st) {
            mer__err_prefix(err, st, "%s", in_path);
            goto fail;
        }
        c.src[i] = i;
        c.otype[i] = ot;
        s.bytes_in += t->n_bytes;
        s.bytes_out += mer__gguf_tensor_nbytes(g, i);
    }
    if (any_quant) {
        st = mer__gguf_add_u32(g, "general.quantization_version", 2, err);
        if (st) goto fail;
    }
    s.n_tensors = w->n_tensors;
    st = mer__gguf_write(g, out_path, fill_tensor, &c, err);
    if (st) goto fail;
    if (stats) *stats = s;
fail:
    free(c.src);
    free(c.otype);
    mer__gguf_writer_free(g);
    mer_weights_close(w);
    return st;
}
