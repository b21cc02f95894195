/* qwen2_load.c - loading a Qwen2 causal LM: the hyper-parameters from a Hugging Face config.json or from
 * GGUF qwen2.* metadata (GGUF keys found through io/gguf_names' table), every tensor looked up by its HF
 * name (or the GGUF name the same table maps it to) and its shape checked against the configuration,
 * and the matrices set up for the kernels: used in place from the mapped checkpoint when their dtype is
 * one the kernels take, the caller asked for no conversion and no LoRA is merged into them; otherwise
 * converted row by row (in parallel) to the requested dtype, with the adapter's scale * B @ A added in
 * f32 first. Norm weights and biases are f32 (converted when stored otherwise). */
#include "models/qwen2.h"

#include "io/gguf_names.h"
#include "io/hfconfig.h"

#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// --- names and shapes --------------------------------------------------------------------------------

static const char *const PROJ_NAMES[MER__N_PROJ] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

const char *mer__qwen2_proj_name(int p) {
    MER_ASSERT(p >= 0 && p < MER__N_PROJ);
    return PROJ_NAMES[p];
}

void mer__qwen2_proj_shape(const mer__qwen2_hp *hp, int p, int *n_out, int *n_in) {
    int E = hp->n_embd, Q = hp->n_head * hp->head_dim, KV = hp->n_kv_head * hp->head_dim, F = hp->n_ff;
    switch (p) {
    case MER__Q: *n_out = Q, *n_in = E; break;
    case MER__K:
    case MER__V: *n_out = KV, *n_in = E; break;
    case MER__O: *n_out = E, *n_in = Q; break;
    case MER__GATE:
    case MER__UP: *n_out = F, *n_in = E; break;
    case MER__DOWN: *n_out = E, *n_in = F; break;
    default: MER_ASSERT(0);
    }
}

void mer__qwen2_tensor_name(int gguf, int layer, int role, char *buf, size_t cap) {
    char hf[160];
    if (role == MER__T_EMBED) snprintf(hf, sizeof hf, "model.embed_tokens.weight");
    else if (role == MER__T_NORM) snprintf(hf, sizeof hf, "model.norm.weight");
    else if (role == MER__T_LM_HEAD) snprintf(hf, sizeof hf, "lm_head.weight");
    else if (role == MER__T_ATTN_NORM) snprintf(hf, sizeof hf, "model.layers.%d.input_layernorm.weight", layer);
    else if (role == MER__T_FFN_NORM)
        snprintf(hf, sizeof hf, "model.layers.%d.post_attention_layernorm.weight", layer);
    else if (role >= MER__T_PROJ_W && role < MER__T_PROJ_W + MER__N_PROJ)
        snprintf(hf, sizeof hf, "model.layers.%d.%s.weight", layer, PROJ_NAMES[role - MER__T_PROJ_W]);
    else if (role >= MER__T_PROJ_B && role < MER__T_PROJ_B + MER__N_PROJ)
        snprintf(hf, sizeof hf, "model.layers.%d.%s.bias", layer, PROJ_NAMES[role - MER__T_PROJ_B]);
    else MER_ASSERT(0);
    if (!gguf || mer__gguf_name_from_hf("qwen2", hf, buf, cap) < 0) snprintf(buf, cap, "%s", hf);
}

// --- hyper-parameters --------------------------------------------------------------------------------

/* Sanity bounds: anything larger cannot be a real checkpoint and would overflow int arithmetic. Shapes
 * are then checked against the tensors, whose sizes the readers checked against the file. */
static mer_status check_hp(const mer__qwen2_hp *hp, const char *name, mer_err *err) {
    struct { const char *what; long v, lo, hi; } chk[] = {
        {"vocab size", hp->n_vocab, 1, 1L << 24},     {"hidden size", hp->n_embd, 1, 1 << 16},
        {"layer count", hp->n_layer, 1, 4096},        {"attention heads", hp->n_head, 1, 4096},
        {"key/value heads", hp->n_kv_head, 1, 4096},  {"head dim", hp->head_dim, 2, 512},
        {"intermediate size", hp->n_ff, 1, 1 << 20},  {"context length", hp->n_ctx_train, 1, 1L << 24},
    };
    for (size_t i = 0; i < MER_ARRAY_LEN(chk); i++)
        if (chk[i].v < chk[i].lo || chk[i].v > chk[i].hi)
            return mer__errf(err, MER_E_RANGE, "%s: %s %ld is outside [%ld, %ld]", name, chk[i].what, chk[i].v,
                             chk[i].lo, chk[i].hi);
    if (hp->n_head % hp->n_kv_head)
        return mer__errf(err, MER_E_SHAPE, "%s: %d attention heads are not a multiple of %d key/value heads", name,
                         hp->n_head, hp->n_kv_head);
    if (hp->head_dim % 2)
        return mer__errf(err, MER_E_SHAPE, "%s: head dim %d is odd (RoPE needs pairs)", name, hp->head_dim);
    if ((long)hp->n_head * hp->head_dim > (1L << 18))
        return mer__errf(err, MER_E_RANGE, "%s: %d heads x %d is too wide", name, hp->n_head, hp->head_dim);
    if (!(hp->rope_theta > 0) || !isfinite(hp->rope_theta))
        return mer__errf(err, MER_E_RANGE, "%s: rope theta %g is not a positive number", name, hp->rope_theta);
    if (!(hp->rms_eps >= 0) || !isfinite(hp->rms_eps))
        return mer__errf(err, MER_E_RANGE, "%s: rms_norm_eps %g is not a non-negative number", name, hp->rms_eps);
    return MER_OK;
}

static mer_status cfg_int(const mer_config *c, const char *key, int64_t def, int have_def, int *out, mer_err *err) {
    int64_t v = def;
    mer_status st = have_def ? mer__config_get_int_or(c, key, def, &v, err) : mer__config_get_int(c, key, &v, err);
    if (st) return st;
    if (v < INT32_MIN || v > INT32_MAX)
        return mer__errf(err, MER_E_RANGE, "%s: %s = %lld is out of range", mer__config_name(c), key, (long long)v);
    *out = (int)v;
    return MER_OK;
}

mer_status mer__qwen2_hp_from_config(const mer_config *c, mer__qwen2_hp *hp, mer_err *err) {
    const char *name = mer__config_name(c);
    memset(hp, 0, sizeof *hp);
    mer_status st;
    const char *s = NULL;
    if (mer__config_has(c, "model_type")) {
        if ((st = mer__config_get_str(c, "model_type", &s, err))) return st;
        if (strcmp(s, "qwen2"))
            return mer__errf(err, MER_E_UNSUPPORTED, "%s: model_type '%s' is not qwen2", name, s);
    }
    if (mer__config_has(c, "hidden_act")) {
        if ((st = mer__config_get_str(c, "hidden_act", &s, err))) return st;
        if (strcmp(s, "silu"))
            return mer__errf(err, MER_E_UNSUPPORTED, "%s: hidden_act '%s' is not supported (only silu)", name, s);
    }
    if ((st = cfg_int(c, "hidden_size", 0, 0, &hp->n_embd, err)) ||
        (st = cfg_int(c, "intermediate_size", 0, 0, &hp->n_ff, err)) ||
        (st = cfg_int(c, "num_hidden_layers", 0, 0, &hp->n_layer, err)) ||
        (st = cfg_int(c, "num_attention_heads", 0, 0, &hp->n_head, err)) ||
        (st = cfg_int(c, "vocab_size", 0, 0, &hp->n_vocab, err)) ||
        (st = cfg_int(c, "num_key_value_heads", hp->n_head, 1, &hp->n_kv_head, err)) ||
        (st = cfg_int(c, "max_position_embeddings", 32768, 1, &hp->n_ctx_train, err)))
        return st;
    if (hp->n_head <= 0) return mer__errf(err, MER_E_RANGE, "%s: num_attention_heads must be positive", name);
    if (mer__config_has(c, "head_dim")) {
        if ((st = cfg_int(c, "head_dim", 0, 0, &hp->head_dim, err))) return st;
    } else {
        if (hp->n_embd % hp->n_head)
            return mer__errf(err, MER_E_SHAPE, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                             name, hp->n_embd, hp->n_head);
        hp->head_dim = hp->n_embd / hp->n_head;
    }
    double theta = 10000.0, eps = 1e-6;
    if (mer__config_has(c, "rope_theta")) st = mer__config_get_float(c, "rope_theta", &theta, err);
    else st = mer__config_get_float_or(c, "rope_parameters.rope_theta", 10000.0, &theta, err);
    if (st || (st = mer__config_get_float_or(c, "rms_norm_eps", 1e-6, &eps, err))) return st;
    hp->rope_theta = (float)theta;
    hp->rms_eps = (float)eps;
    int tied = 0;
    if (mer__config_has(c, "tie_word_embeddings") && (st = mer__config_get_bool(c, "tie_word_embeddings", &tied, err)))
        return st;
    hp->tied = tied;
    /* features this decoder does not implement: refuse rather than compute something else */
    int sw = 0;
    if (mer__config_has(c, "use_sliding_window") && (st = mer__config_get_bool(c, "use_sliding_window", &sw, err)))
        return st;
    if (sw) return mer__errf(err, MER_E_UNSUPPORTED, "%s: use_sliding_window=true is not supported", name);
    static const char *const ROPE_TYPE_KEYS[] = {"rope_scaling.type", "rope_scaling.rope_type",
                                                 "rope_parameters.rope_type"};
    for (size_t i = 0; i < MER_ARRAY_LEN(ROPE_TYPE_KEYS); i++) {
        if (!mer__config_has(c, ROPE_TYPE_KEYS[i])) continue;
        if ((st = mer__config_get_str(c, ROPE_TYPE_KEYS[i], &s, err))) return st;
        if (strcmp(s, "default"))
            return mer__errf(err, MER_E_UNSUPPORTED, "%s: %s '%s' is not supported (only default RoPE)", name,
                             ROPE_TYPE_KEYS[i], s);
    }
    return check_hp(hp, name, err);
}

/* A GGUF metadata number as int64 / double; MER_E_NOTFOUND when absent (unless def_ok). */
static mer_status kv_num(const mer_weights *w, const char *key, int is_float, double *v, int def_ok,
                         mer_err *err) {
    const mer_kv *kv = mer_weights_find_kv(w, key);
    if (!kv) {
        if (def_ok) return MER_OK;
        return mer__errf(err, MER_E_NOTFOUND, "%s: GGUF metadata key '%s' is missing", w->path, key);
    }
    switch (kv->type) {
    case MER_KV_U8: case MER_KV_U16: case MER_KV_U32: case MER_KV_U64: *v = (double)kv->v.u; break;
    case MER_KV_I8: case MER_KV_I16: case MER_KV_I32: case MER_KV_I64: *v = (double)kv->v.i; break;
    case MER_KV_F32: case MER_KV_F64:
        if (!is_float)
            return mer__errf(err, MER_E_FORMAT, "%s: GGUF metadata '%s' is a float, an integer was expected",
                             w->path, key);
        *v = kv->v.f;
        break;
    default:
        return mer__errf(err, MER_E_FORMAT, "%s: GGUF metadata '%s' is not a number", w->path, key);
    }
    if (!is_float && (*v < 0 || *v > INT32_MAX))
        return mer__errf(err, MER_E_RANGE, "%s: GGUF metadata '%s' = %g is out of range", w->path, key, *v);
    return MER_OK;
}

/* The GGUF key holding config.json key `cfg_key` for qwen2 ("qwen2.embedding_length"). */
static void gguf_key(const char *cfg_key, char *buf, size_t cap) {
    size_t n = 0;
    const mer_gguf_hparam *t = mer__gguf_hparams("qwen2", &n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].config_key, cfg_key)) {
            snprintf(buf, cap, "qwen2.%s", t[i].gguf_key);
            return;
        }
    MER_ASSERT(0 && "qwen2 hyper-parameter without a GGUF key");
}

mer_status mer__qwen2_hp_from_gguf(const mer_weights *w, mer__qwen2_hp *hp, mer_err *err) {
    memset(hp, 0, sizeof *hp);
    const mer_kv *arch = mer_weights_find_kv(w, "general.architecture");
    if (!arch || arch->type != MER_KV_STRING)
        return mer__errf(err, MER_E_FORMAT, "%s: GGUF metadata 'general.architecture' is missing", w->path);
    if (strcmp(arch->v.s.p, "qwen2"))
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: GGUF architecture '%s' is not qwen2", w->path, arch->v.s.p);
    static const struct { const char *cfg; int off; int is_float; int opt; } KEYS[] = {
        {"hidden_size", offsetof(mer__qwen2_hp, n_embd), 0, 0},
        {"intermediate_size", offsetof(mer__qwen2_hp, n_ff), 0, 0},
        {"num_hidden_layers", offsetof(mer__qwen2_hp, n_layer), 0, 0},
        {"num_attention_heads", offsetof(mer__qwen2_hp, n_head), 0, 0},
        {"num_key_value_heads", offsetof(mer__qwen2_hp, n_kv_head), 0, 1},
        {"max_position_embeddings", offsetof(mer__qwen2_hp, n_ctx_train), 0, 1},
        {"rope_theta", offsetof(mer__qwen2_hp, rope_theta), 1, 1},
        {"rms_norm_eps", offsetof(mer__qwen2_hp, rms_eps), 1, 1},
    };
    double defaults[MER_ARRAY_LEN(KEYS)] = {0, 0, 0, 0, -1, 32768, 10000.0, 1e-6};
    for (size_t i = 0; i < MER_ARRAY_LEN(KEYS); i++) {
        char key[96];
        gguf_key(KEYS[i].cfg, key, sizeof key);
        double v = defaults[i];
        mer_status st = kv_num(w, key, KEYS[i].is_float, &v, KEYS[i].opt, err);
        if (st) return st;
        if (KEYS[i].is_float) *(float *)((char *)hp + KEYS[i].off) = (float)v;
        else *(int *)((char *)hp + KEYS[i].off) = (int)v;
    }
    if (hp->n_kv_head < 0) hp->n_kv_head = hp->n_head;
    if (hp->n_head <= 0) return mer__errf(err, MER_E_RANGE, "%s: qwen2.attention.head_count must be positive", w->path);
    double hd = -1;
    mer_status st = kv_num(w, "qwen2.attention.key_length", 0, &hd, 1, err);
    if (st) return st;
    if (hd >= 0) hp->head_dim = (int)hd;
    else if (hp->n_embd % hp->n_head)
        return mer__errf(err, MER_E_SHAPE, "%s: embedding_length %d is not a multiple of head_count %d", w->path,
                         hp->n_embd, hp->n_head);
    else hp->head_dim = hp->n_embd / hp->n_head;
    /* the vocabulary size is the embedding's row count (llama.cpp writes no key for it) */
    const mer_wtensor *te = mer_weights_find(w, "token_embd.weight");
    if (!te) return mer__errf(err, MER_E_NOTFOUND, "%s: tensor 'token_embd.weight' is missing", w->path);
    if (te->n_dims != 2 || te->shape[0] <= 0 || te->shape[0] > INT32_MAX)
        return mer__errf(err, MER_E_SHAPE, "%s: tensor 'token_embd.weight' is not a [vocab, hidden] matrix", w->path);
    hp->n_vocab = (int)te->shape[0];
    hp->tied = mer_weights_find(w, "output.weight") == NULL;
    return check_hp(hp, w->path, err);
}

// --- the loader --------------------------------------------------------------------------------------

typedef struct loader {
    mer_qwen2 *m;
    const mer_weights *w;
    const char *cfg_name;
    int gguf;
    mer_dtype want;       /* MER_DTYPE_INVALID: keep */
    const mer__lora *merge; /* adapter to merge, or NULL */
    mer_threadpool *pool; /* for conversions; created on first need */
    int n_threads;
    const mer_kernels *k;
} loader;

static int engine_dtype(mer_dtype t) {
    return t == MER_DTYPE_F32 || t == MER_DTYPE_F16 || t == MER_DTYPE_BF16 || t == MER_DTYPE_Q8_0 ||
           t == MER_DTYPE_Q4_0;
}

static size_t dtype_align(mer_dtype t) { return t == MER_DTYPE_F32 ? 4 : 2; }

static mer_status own(mer_qwen2 *m, void *p, mer_err *err) {
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **o = realloc(m->owned, cap * sizeof *o);
        if (!o) {
            free(p);
            return mer__errf(err, MER_E_NOMEM, "out of memory");
        }
        m->owned = o, m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return MER_OK;
}

static void shape_str(const int64_t *shape, int n, char *buf, size_t cap) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < n && o < cap; i++) o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Finds a tensor by role and checks its shape (n_dims 1 or 2: [d0] or [d0, d1]). */
static mer_status find(loader *L, int layer, int role, int n_dims, int64_t d0, int64_t d1, const mer_wtensor **out,
                       mer_err *err) {
    char name[192];
    mer__qwen2_tensor_name(L->gguf, layer, role, name, sizeof name);
    const mer_wtensor *t = mer_weights_find(L->w, name);
    *out = NULL;
    if (!t) return mer__errf(err, MER_E_NOTFOUND, "%s: tensor '%s' is missing", L->w->path, name);
    int64_t want[2] = {d0, d1};
    int ok = t->n_dims == n_dims;
    for (int i = 0; ok && i < n_dims; i++) ok = t->shape[i] == want[i];
    if (!ok) {
        char have_s[128], want_s[64];
        shape_str(t->shape, t->n_dims, have_s, sizeof have_s);
        shape_str(want, n_dims, want_s, sizeof want_s);
        return mer__errf(err, MER_E_SHAPE, "%s: tensor '%s' has shape %s but %s implies %s", L->w->path, name, have_s,
                         L->cfg_name, want_s);
    }
    if (!engine_dtype(t->dtype)) {
        const char *tn = mer__wtype_name((int)t->dtype);
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor '%s' has element type %s (supported: f32, f16, bf16, q8_0, q4_0)",
                         L->w->path, name, tn ? tn : "unknown");
    }
    if ((t->dtype == MER_DTYPE_Q8_0 || t->dtype == MER_DTYPE_Q4_0) && n_dims == 1)
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor '%s' is a quantised vector", L->w->path, name);
    *out = t;
    return MER_OK;
}

/* A [n] f32 vector (norm weight or bias). */
static mer_status load_vec(loader *L, int layer, int role, int64_t n, const float **out, mer_err *err) {
    const mer_wtensor *t;
    mer_status st = find(L, layer, role, 1, n, 0, &t, err);
    if (st) return st;
    L->m->weight_bytes += (size_t)n * 4;
    if (t->dtype == MER_DTYPE_F32 && (uintptr_t)t->data % 4 == 0) {
        *out = t->data;
        return MER_OK;
    }
    float *p = malloc((size_t)n * sizeof *p);
    if (!p) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", L->w->path);
    size_t eb = mer_dtype_row_bytes(t->dtype, 1);
    void *tmp = malloc((size_t)n * eb); /* an aligned copy (safetensors data may be unaligned) */
    if (!tmp) {
        free(p);
        return mer__errf(err, MER_E_NOMEM, "%s: out of memory", L->w->path);
    }
    memcpy(tmp, t->data, (size_t)n * eb);
    mer_dequantize_row(t->dtype, tmp, p, (size_t)n);
    free(tmp);
    if ((st = own(L->m, p, err))) return st;
    *out = p;
    return MER_OK;
}

typedef struct conv_job {
    const uint8_t *src;
    mer_dtype st, dt;
    uint8_t *dst;
    int n_out, n_in;
    size_t src_row, dst_row;
    const mer__lora_pair *lora;
    float scale;
    float *tmp;     /* [nth][n_in] */
    uint8_t *raw;   /* [nth][src_row] aligned copies of source rows */
    const mer_kernels *k;
} conv_job;

static void conv_rows(void *ctx, int ith, int nth) {
    const conv_job *j = ctx;
    long r0, r1;
    mer_split_range(j->n_out, ith, nth, &r0, &r1);
    float *t = j->tmp + (size_t)ith * (size_t)j->n_in;
    uint8_t *raw = j->raw + (size_t)ith * j->src_row;
    for (long r = r0; r < r1; r++) {
        memcpy(raw, j->src + (size_t)r * j->src_row, j->src_row);
        mer_dequantize_row(j->st, raw, t, (size_t)j->n_in);
        if (j->lora)
            for (int q = 0; q < j->lora->r; q++)
                j->k->axpy(t, j->scale * j->lora->b[(size_t)r * (size_t)j->lora->r + (size_t)q],
                           j->lora->a + (size_t)q * (size_t)j->n_in, j->n_in);
        int rc = mer_quantize_row(j->dt, t, j->dst + (size_t)r * j->dst_row, (size_t)j->n_in);
        MER_ASSERT(rc == 0);
    }
}

/* The source of a converted tensor is not read again: ask the kernel to reclaim its pages (clean pages of
 * a file mapping leave memory; anonymous memory without swap is left as it is, never lost), so that
 * converting a large checkpoint at load does not hold the file and the converted copy at once. */
static void release_pages(const void *p, size_t n) {
#ifdef MADV_PAGEOUT
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg;
    uintptr_t e = ((uintptr_t)p + n) / (uintptr_t)pg * (uintptr_t)pg;
    if (e > a) (void)madvise((void *)a, e - a, MADV_PAGEOUT);
#else
    (void)p, (void)n;
#endif
}

/* Sets *out to a matrix [n_out, n_in] from tensor t, converting to L->want and merging `lora`. */
static mer_status load_mat(loader *L, const mer_wtensor *t, const char *name, int n_out, int n_in,
                           const mer__lora_pair *lora, mer__qmat *out, mer_err *err) {
    mer_dtype dt = L->want != MER_DTYPE_INVALID ? L->want : t->dtype;
    out->n_out = n_out, out->n_in = n_in;
    if ((dt == MER_DTYPE_Q8_0 || dt == MER_DTYPE_Q4_0) && n_in % MER_QK)
        return mer__errf(err, MER_E_SHAPE, "%s: tensor '%s': rows of %d elements cannot be %s (a multiple of 32 is needed)",
                         L->w->path, name, n_in, mer_dtype_name(dt));
    if (dt == t->dtype && !lora && (uintptr_t)t->data % dtype_align(dt) == 0) {
        out->data = t->data, out->dt = dt;
        return MER_OK;
    }
    size_t src_row = mer_dtype_row_bytes(t->dtype, (size_t)n_in), dst_row = mer_dtype_row_bytes(dt, (size_t)n_in);
    size_t bytes;
    if (mer__mul_ovf(dst_row, (size_t)n_out, &bytes))
        return mer__errf(err, MER_E_RANGE, "%s: tensor '%s' is too large", L->w->path, name);
    mer_status st;
    if (!L->pool && (st = mer_threadpool_init(L->n_threads, &L->pool, err))) return st;
    int nth = mer_threadpool_n_threads(L->pool);
    uint8_t *dst = aligned_alloc(MER_ALIGN, (bytes + MER_ALIGN - 1) / MER_ALIGN * MER_ALIGN);
    float *tmp = malloc((size_t)nth * (size_t)n_in * sizeof *tmp);
    uint8_t *raw = malloc((size_t)nth * src_row);
    if (!dst || !tmp || !raw) {
        free(dst), free(tmp), free(raw);
        return mer__errf(err, MER_E_NOMEM, "%s: out of memory converting '%s' (%zu bytes)", L->w->path, name, bytes);
    }
    conv_job j = {t->data, t->dtype, dt, dst, n_out, n_in, src_row, dst_row, lora, L->m->lora_scale, tmp, raw, L->k};
    mer_threadpool_run(L->pool, conv_rows, &j);
    free(tmp), free(raw);
    release_pages(t->data, t->n_bytes);
    if ((st = own(L->m, dst, err))) return st;
    out->data = dst, out->dt = dt;
    return MER_OK;
}

static mer_status load_layer(loader *L, int i, mer_err *err) {
    const mer__qwen2_hp *hp = &L->m->hp;
    mer__qwen2_layer *ly = &L->m->layers[i];
    mer_status st;
    if ((st = load_vec(L, i, MER__T_ATTN_NORM, hp->n_embd, &ly->attn_norm, err)) ||
        (st = load_vec(L, i, MER__T_FFN_NORM, hp->n_embd, &ly->ffn_norm, err)))
        return st;
    for (int p = 0; p < MER__N_PROJ; p++) {
        int n_out, n_in;
        mer__qwen2_proj_shape(hp, p, &n_out, &n_in);
        const mer_wtensor *t;
        if ((st = find(L, i, MER__T_PROJ_W + p, 2, n_out, n_in, &t, err))) return st;
        const mer__lora_pair *lp = NULL;
        if (L->merge) {
            lp = &L->merge->pairs[(size_t)i * MER__N_PROJ + (size_t)p];
            if (!lp->a) lp = NULL;
        }
        if ((st = load_mat(L, t, t->name, n_out, n_in, lp, &ly->w[p], err))) return st;
        L->m->weight_bytes += mer_dtype_row_bytes(ly->w[p].dt, (size_t)n_in) * (size_t)n_out;
        if (p <= MER__V) {
            const float **b = p == MER__Q ? &ly->bq : p == MER__K ? &ly->bk : &ly->bv;
            if ((st = load_vec(L, i, MER__T_PROJ_B + p, n_out, b, err))) return st;
        }
    }
    return MER_OK;
}

mer_qwen2_params mer_qwen2_default_params(void) {
    mer_qwen2_params p;
    memset(&p, 0, sizeof p);
    p.lora_merge = 1;
    p.device = MER_DEVICE_AUTO;
    p.n_seq = 8;
    return p;
}

void mer_qwen2_free(mer_qwen2 *m) {
    if (!m) return;
    mer__qwen2_dev_free(m->dev);
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    mer__lora_free(m->lora);
    mer_weights_close(m->w);
    free(m);
}

mer_status mer__qwen2_from_weights(mer_weights *w, const mer__qwen2_hp *hp, const char *cfg_name,
                                   const mer_qwen2_params *params, mer_qwen2 **out, mer_err *err) {
    *out = NULL;
    mer_qwen2_params defp = mer_qwen2_default_params();
    if (!params) params = &defp;
    mer_status st = MER_OK;
    mer__lora *lora = NULL;
    loader L = {0};
    mer_qwen2 *m = calloc(1, sizeof *m);
    if (!m) {
        mer_weights_close(w);
        return mer__errf(err, MER_E_NOMEM, "out of memory");
    }
    m->w = w;
    m->hp = *hp;
    L.m = m, L.w = w, L.cfg_name = cfg_name, L.gguf = w->format == MER_WFORMAT_GGUF;
    L.n_threads = params->n_threads, L.want = MER_DTYPE_INVALID;
    L.k = mer_kernels_get(MER_ISA_AUTO);
    if ((st = check_hp(hp, cfg_name, err))) goto fail;
    if (params->wtype && *params->wtype) {
        L.want = mer_dtype_from_name(params->wtype);
        if (!engine_dtype(L.want)) {
            st = mer__errf(err, MER_E_ARG, "weight type '%s' is not one of f32, f16, bf16, q8_0, q4_0", params->wtype);
            goto fail;
        }
    }
    if (params->lora_scale < 0 || !isfinite(params->lora_scale)) {
        st = mer__errf(err, MER_E_ARG, "LoRA scale %g must be a positive number (or 0 for the adapter's)",
                       params->lora_scale);
        goto fail;
    }
    if (params->lora_path && *params->lora_path) {
        if ((st = mer__lora_load(params->lora_path, params->lora_scale, hp, &lora, err))) goto fail;
        m->lora_scale = lora->scale;
        m->lora_mode = params->lora_merge ? 1 : 2;
        if (params->lora_merge) L.merge = lora;
    }
    /* a checkpoint with more layers than the configuration says contradicts it */
    char name[192];
    mer__qwen2_tensor_name(L.gguf, hp->n_layer, MER__T_ATTN_NORM, name, sizeof name);
    if (mer_weights_find(w, name)) {
        st = mer__errf(err, MER_E_SHAPE, "%s: tensor '%s' exists but %s says %d layers", w->path, name, cfg_name,
                       hp->n_layer);
        goto fail;
    }
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    const mer_wtensor *t;
    if ((st = find(&L, -1, MER__T_EMBED, 2, hp->n_vocab, hp->n_embd, &t, err)) ||
        (st = load_mat(&L, t, t->name, hp->n_vocab, hp->n_embd, NULL, &m->tok_embd, err)))
        goto fail;
    if ((st = load_vec(&L, -1, MER__T_NORM, hp->n_embd, &m->out_norm, err))) goto fail;
    for (int i = 0; i < hp->n_layer; i++)
        if ((st = load_layer(&L, i, err))) goto fail;
    if (hp->tied) {
        m->lm_head = m->tok_embd;
    } else {
        if ((st = find(&L, -1, MER__T_LM_HEAD, 2, hp->n_vocab, hp->n_embd, &t, err)) ||
            (st = load_mat(&L, t, t->name, hp->n_vocab, hp->n_embd, NULL, &m->lm_head, err)))
            goto fail;
    }
    m->weight_bytes += mer_dtype_row_bytes(m->lm_head.dt, (size_t)hp->n_embd) * (size_t)hp->n_vocab;
    /* the projections' dtype, for reports */
    mer_dtype d0 = m->layers[0].w[0].dt;
    int mixed = 0;
    for (int i = 0; i < hp->n_layer; i++)
        for (int p = 0; p < MER__N_PROJ; p++) mixed |= m->layers[i].w[p].dt != d0;
    snprintf(m->wtype, sizeof m->wtype, "%s", mixed ? "mixed" : mer_dtype_name(d0));
    if (lora && !params->lora_merge) {
        for (int i = 0; i < hp->n_layer; i++)
            for (int p = 0; p < MER__N_PROJ; p++) m->layers[i].lora[p] = lora->pairs[(size_t)i * MER__N_PROJ + (size_t)p];
        m->lora = lora;
        lora = NULL;
    }
    mer__lora_free(lora);
    mer_threadpool_free(L.pool);
    *out = m;
    return MER_OK;
fail:
    mer__lora_free(lora);
    mer_threadpool_free(L.pool);
    mer_qwen2_free(m);
    return st;
}

mer_status mer_qwen2_load(const char *path, const mer_qwen2_params *params, mer_qwen2 **out, mer_err *err) {
    if (!out) return mer__errf(err, MER_E_ARG, "mer_qwen2_load: out is NULL");
    *out = NULL;
    if (!path) return mer__errf(err, MER_E_ARG, "mer_qwen2_load: path is NULL");
    mer_qwen2_params defp = mer_qwen2_default_params();
    if (!params) params = &defp;
    mer_device dev;
    mer_status st = mer__qwen2_dev_check(params, &dev, err);
    if (st) return st;
    mer_weights *w = NULL;
    mer_config *own_cfg = NULL;
    if ((st = mer_weights_open(path, &w, err))) return st;
    mer__qwen2_hp hp;
    const char *cfg_name = "GGUF metadata";
    if (w->format == MER_WFORMAT_GGUF) {
        st = mer__qwen2_hp_from_gguf(w, &hp, err);
    } else {
        const mer_config *cfg = w->config;
        if (!cfg) { /* a single .safetensors file: config.json beside it */
            char *dir = mer__path_dir(path);
            char *cp = dir ? mer__path_join(dir, "config.json") : NULL;
            free(dir);
            if (!cp) st = mer__errf(err, MER_E_NOMEM, "out of memory");
            else {
                st = mer__config_load(cp, &own_cfg, err);
                if (st) mer__errf(err, MER_E_NOTFOUND, "%s: no config.json beside the checkpoint (%s)", path, cp);
                free(cp);
            }
            cfg = own_cfg;
        }
        if (!st) {
            st = mer__qwen2_hp_from_config(cfg, &hp, err);
            cfg_name = "config.json";
        }
    }
    mer__config_free(own_cfg);
    if (st) {
        mer_weights_close(w);
        return st;
    }
    if ((st = mer__qwen2_from_weights(w, &hp, cfg_name, params, out, err)) || dev != MER_DEVICE_CUDA) return st;
    mer_err e2 = {0};
    if ((st = mer__qwen2_dev_attach(*out, params, &e2))) { /* the CPU model went up to the device */
        /* auto: a model the device does not take (its shape or dtype) stays on the CPU */
        if (st == MER_E_UNSUPPORTED && params->device == MER_DEVICE_AUTO) return MER_OK;
        if (err) *err = e2;
        mer_qwen2_free(*out);
        *out = NULL;
    }
    return st;
}

void mer_qwen2_get_info(const mer_qwen2 *m, mer_qwen2_info *info) {
    memset(info, 0, sizeof *info);
    const mer__qwen2_hp *hp = &m->hp;
    info->n_vocab = hp->n_vocab, info->n_embd = hp->n_embd, info->n_layer = hp->n_layer;
    info->n_head = hp->n_head, info->n_kv_head = hp->n_kv_head, info->head_dim = hp->head_dim;
    info->n_ff = hp->n_ff, info->n_ctx_train = hp->n_ctx_train;
    info->rope_theta = hp->rope_theta, info->rms_eps = hp->rms_eps, info->tied = hp->tied;
    info->lora = m->lora_mode;
    info->weight_bytes = m->weight_bytes;
    info->wtype = m->wtype;
    info->device = MER_DEVICE_CPU;
    if (m->dev) mer__qwen2_dev_info(m, info);
}

mer_status mer_qwen2_embed(const mer_qwen2 *m, const int32_t *ids, size_t n, float *out, mer_err *err) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->hp.n_vocab)
            return mer__errf(err, MER_E_RANGE, "token id %d at index %zu is outside [0, %d)", ids[i], i, m->hp.n_vocab);
    size_t row = mer_dtype_row_bytes(m->tok_embd.dt, (size_t)m->hp.n_embd);
    for (size_t i = 0; i < n; i++)
        mer_dequantize_row(m->tok_embd.dt, (const uint8_t *)m->tok_embd.data + (size_t)ids[i] * row,
                           out + i * (size_t)m->hp.n_embd, (size_t)m->hp.n_embd);
    return MER_OK;
}
