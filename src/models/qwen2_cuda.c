/* qwen2_cuda.c - the Qwen2 decoder on a CUDA device (see qwen2_cuda.h): weight upload and conversion
 * (to bf16, f32, or q8_0/q4_0 kept quantised in the layout of kernels/cuda/cuda_quant.h) with fused
 * q/k/v and gate/up matrices, from an HF checkpoint or from a CPU model (LoRA merged on the way),
 * random initialisation for benchmarks, the device buffers and KV cache, the forward pass over the
 * backend's kernels, prefill in chunks (from token ids or from embedding rows), and the batched decode
 * step replayed from a CUDA graph (one per batch size, captured on first use; token ids, positions and
 * slots live in a small device array that is uploaded before each replay). */
#include "models/qwen2_cuda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/hfconfig.h"
#include "models/qwen2.h"

mer_qwen2_cuda_params mer_qwen2_cuda_default_params(void) {
    mer_qwen2_cuda_params p;
    p.device = 0;
    p.n_ctx = 4096;
    p.n_seq = 1;
    p.n_batch = 512;
    p.n_split = 16;
    p.use_graph = 1;
    p.wtype = MER_DTYPE_BF16;
    return p;
}

mer_status mer_qwen2_cuda_hp_from_config(const struct mer_config *cfg, mer_qwen2_cuda_hp *hp, mer_err *err) {
    int64_t v[6], hd, tied = 0;
    double theta, eps;
    static const char *keys[6] = {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                  "num_key_value_heads", "intermediate_size"};
    mer_status st;
    memset(hp, 0, sizeof *hp);
    for (int i = 0; i < 6; i++) {
        if ((st = mer__config_get_int(cfg, keys[i], &v[i], err))) return st;
        if (v[i] < 1 || v[i] > (1 << 24))
            return mer__errf(err, MER_E_FORMAT, "%s: %s = %lld is out of range", mer__config_name(cfg), keys[i],
                             (long long)v[i]);
    }
    if ((st = mer__config_get_int_or(cfg, "head_dim", v[1] / v[3], &hd, err))) return st;
    if (mer__config_has(cfg, "rope_theta")) {
        if ((st = mer__config_get_float(cfg, "rope_theta", &theta, err))) return st;
    } else if ((st = mer__config_get_float_or(cfg, "rope_parameters.rope_theta", 10000.0, &theta, err))) {
        return st;
    }
    if ((st = mer__config_get_float_or(cfg, "rms_norm_eps", 1e-6, &eps, err))) return st;
    if (mer__config_has(cfg, "tie_word_embeddings")) {
        int b = 0;
        if ((st = mer__config_get_bool(cfg, "tie_word_embeddings", &b, err))) return st;
        tied = b;
    }
    if (v[3] % v[4] || hd < 2 || hd % 2 || hd > 4096 || !(theta > 0) || !(eps > 0))
        return mer__errf(err, MER_E_FORMAT, "%s: inconsistent attention shape (%lld heads, %lld KV heads, head_dim %lld)",
                         mer__config_name(cfg), (long long)v[3], (long long)v[4], (long long)hd);
    hp->n_vocab = (int)v[0];
    hp->n_embd = (int)v[1];
    hp->n_layer = (int)v[2];
    hp->n_head = (int)v[3];
    hp->n_kv_head = (int)v[4];
    hp->n_ff = (int)v[5];
    hp->head_dim = (int)hd;
    hp->rope_theta = (float)theta;
    hp->rms_eps = (float)eps;
    hp->tied = (int)tied;
    return MER_OK;
}

#if MER_CUDA

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_quant.h"

#define MAX_GRAPHS 64
#define QGEMV_MAX_TOK 8 /* rows mer_cuda_qmatmul runs as a GEMV */

/* Embedding, activations and cache are of the model's dtype `at` (bf16 or f32); matrices too, unless
 * the model is quantised: then the q* matrices hold them (and the dense pointers are NULL). */
typedef struct qlayer {
    float *attn_norm, *ffn_norm; /* [E] */
    void *wqkv;                  /* [(H + 2 KV) d][E]: q_proj, k_proj, v_proj rows */
    float *bqkv;                 /* [(H + 2 KV) d] or NULL */
    void *wo;                    /* [E][H d] */
    void *wgu;                   /* [2 F][E]: gate_proj rows, then up_proj rows */
    void *wdown;                 /* [E][F] */
    mer_cuda_qmat qqkv, qo, qgu, qdown;
} qlayer;

struct mer_qwen2_cuda {
    mer_qwen2_cuda_hp hp;
    mer_qwen2_cuda_params p;
    mer_cuda *c;
    mer_dtype at;      /* element type of activations and cache (and of the matrices when not quantised) */
    size_t es;         /* its size */
    int quant;         /* matrices are q8_0/q4_0 (p.wtype) */
    int qpdl;          /* quantised decode steps are captured with programmatic dependent launch */
    mer_cuda_qmat qlm; /* lm_head when quantised */
    uint16_t *deq;     /* bf16 scratch for dequantised matrices (prefill of > 8 rows) */
    size_t deq_elems;
    void *embed;       /* [V][E] */
    void *lm_head;     /* [V][E] (== embed when tied) */
    float *out_norm;   /* [E] */
    float *inv_freq;   /* [d/2] */
    qlayer *layers;
    void *kv;          /* [n_layer][2][n_seq][KV][n_ctx][d] */
    size_t kv_layer;   /* elements of one K (or V) array */
    int t_max;         /* rows of the activation buffers */
    float *x, *qkv, *logits;
    void *xn, *q, *att, *h;
    void *gu;          /* [t_max][2 F]: gate/up outputs when the matmul runs on cuBLASLt */
    int32_t *io;       /* device [3][t_max]: ids, pos, slot */
    int32_t *out_ids;  /* device [t_max] */
    void *attn_ws;
    int *norm_cnt; /* arrival counter of the o projection that also makes the MLP's RMSNorm (zero between calls) */
    int32_t *io_h, *out_h; /* pinned mirrors */
    int *n_past;       /* [n_seq] */
    mer_cuda_graph *graphs[MAX_GRAPHS + 1];
    size_t step_bytes;
};

// --- allocation helpers ------------------------------------------------------------------------------

static mer_status dalloc(mer_qwen2_cuda *m, void **p, size_t n, mer_err *err) {
    return mer_cuda_alloc(m->c, n, p, err);
}

static void drop_graphs(mer_qwen2_cuda *m) {
    for (int i = 0; i <= MAX_GRAPHS; i++) {
        mer_cuda_graph_free(m->graphs[i]);
        m->graphs[i] = NULL;
    }
}

void mer_qwen2_cuda_free(mer_qwen2_cuda *m) {
    if (!m) return;
    drop_graphs(m);
    mer_cuda_host_free(m->io_h);
    mer_cuda_host_free(m->out_h);
    free(m->layers);
    free(m->n_past);
    mer_cuda_free(m->c); /* releases every device block */
    free(m);
}

static mer_status check_hp(const mer_qwen2_cuda_hp *hp, const mer_qwen2_cuda_params *p, mer_err *err) {
    if (hp->n_vocab < 1 || hp->n_embd < 1 || hp->n_layer < 1 || hp->n_head < 1 || hp->n_kv_head < 1 ||
        hp->n_head % hp->n_kv_head || hp->head_dim < 1 || hp->n_ff < 1)
        return mer__errf(err, MER_E_ARG,
                         "qwen2 cuda: bad shape (vocab %d, hidden %d, %d layers, %d/%d heads, head_dim %d, ff %d)",
                         hp->n_vocab, hp->n_embd, hp->n_layer, hp->n_head, hp->n_kv_head, hp->head_dim, hp->n_ff);
    /* a well-formed model the kernels do not take: MER_E_UNSUPPORTED (on --device auto it stays on the CPU) */
    if (hp->n_embd % 8 || hp->n_ff % 8 || (hp->n_head * hp->head_dim) % 8 || hp->head_dim % 8 || hp->head_dim > 256)
        return mer__errf(err, MER_E_UNSUPPORTED,
                         "qwen2 cuda: sizes must be multiples of 8 and head_dim <= 256 (hidden %d, ff %d, head_dim %d)",
                         hp->n_embd, hp->n_ff, hp->head_dim);
    const int quant = p->wtype == MER_DTYPE_Q8_0 || p->wtype == MER_DTYPE_Q4_0;
    if (p->wtype != MER_DTYPE_BF16 && p->wtype != MER_DTYPE_F32 && !quant)
        return mer__errf(err, MER_E_UNSUPPORTED, "qwen2 cuda: weight dtype %s (bf16, f32, q8_0 or q4_0)",
                         mer_dtype_name(p->wtype));
    if (quant && (hp->n_embd % 32 || hp->n_ff % 32 || (hp->n_head * hp->head_dim) % 32))
        return mer__errf(err, MER_E_UNSUPPORTED,
                         "qwen2 cuda: %s needs rows of multiples of 32 (hidden %d, ff %d, heads x head_dim %d)",
                         mer_dtype_name(p->wtype), hp->n_embd, hp->n_ff, hp->n_head * hp->head_dim);
    if (p->n_ctx < 1 || p->n_seq < 1 || p->n_seq > MAX_GRAPHS || p->n_batch < 1 || p->n_split < 1 || p->n_split > 32)
        return mer__errf(err, MER_E_ARG, "qwen2 cuda: bad params (n_ctx %d, n_seq %d, n_batch %d, n_split %d)", p->n_ctx,
                         p->n_seq, p->n_batch, p->n_split);
    return MER_OK;
}

/* The model struct, context, activation buffers and KV cache (weights are the caller's). */
static mer_status alloc_model(const mer_qwen2_cuda_hp *hp, const mer_qwen2_cuda_params *p, mer_qwen2_cuda **out,
                              mer_err *err) {
    *out = NULL;
    mer_status st = check_hp(hp, p, err);
    if (st) return st;
    mer_qwen2_cuda *m = calloc(1, sizeof *m);
    if (!m) return mer__errf(err, MER_E_NOMEM, "qwen2 cuda: out of memory");
    m->hp = *hp;
    m->p = *p;
    m->quant = p->wtype == MER_DTYPE_Q8_0 || p->wtype == MER_DTYPE_Q4_0;
    /* The quantised GEMV issues its first weight loads before it waits for the previous kernel: with
     * PDL the decode step ran 1.6% (q8_0) and 3.8% (q4_0) faster at batch 1 on the H100 (bench_gpu
     * quant). Only the decode step (prefill as before); MER_CUDA_PDL, when set, decides instead. */
    m->qpdl = m->quant && !getenv("MER_CUDA_PDL");
    m->at = m->quant ? MER_DTYPE_BF16 : p->wtype;
    m->es = m->at == MER_DTYPE_F32 ? 4 : 2;
    const size_t es = m->es;
    const int E = hp->n_embd, H = hp->n_head, KV = hp->n_kv_head, d = hp->head_dim, F = hp->n_ff;
    const size_t V = (size_t)hp->n_vocab;
    const size_t nqkv = (size_t)(H + 2 * KV) * d;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    m->n_past = calloc((size_t)p->n_seq, sizeof *m->n_past);
    if (!m->layers || !m->n_past) {
        st = mer__errf(err, MER_E_NOMEM, "qwen2 cuda: out of memory");
        goto fail;
    }
    if ((st = mer_cuda_init(p->device, &m->c, err))) goto fail;
    m->t_max = p->n_batch > p->n_seq ? p->n_batch : p->n_seq;
    const size_t T = (size_t)m->t_max;
    m->kv_layer = (size_t)p->n_seq * KV * (size_t)p->n_ctx * d;
    if ((st = dalloc(m, &m->kv, m->kv_layer * 2 * hp->n_layer * es, err))) goto fail;
    if ((st = dalloc(m, (void **)&m->x, T * E * sizeof(float), err))) goto fail;
    if ((st = dalloc(m, &m->xn, T * E * es, err))) goto fail;
    if ((st = dalloc(m, (void **)&m->qkv, T * nqkv * sizeof(float), err))) goto fail;
    if ((st = dalloc(m, &m->q, T * H * d * es, err))) goto fail;
    if ((st = dalloc(m, &m->att, T * H * d * es, err))) goto fail;
    if ((st = dalloc(m, &m->h, T * F * es, err))) goto fail;
    if ((st = dalloc(m, &m->gu, T * 2 * F * es, err))) goto fail;
    if ((st = dalloc(m, (void **)&m->logits, (size_t)p->n_seq * V * sizeof(float), err))) goto fail;
    if ((st = dalloc(m, (void **)&m->io, 3 * T * sizeof(int32_t), err))) goto fail;
    if ((st = dalloc(m, (void **)&m->out_ids, T * sizeof(int32_t), err))) goto fail;
    if ((st = dalloc(m, &m->attn_ws, mer_cuda_attn_decode_ws(p->n_seq, H, d, p->n_split), err))) goto fail;
    if ((st = mer_cuda_memset(m->c, m->attn_ws, 0, mer_cuda_attn_decode_ws(p->n_seq, H, d, p->n_split), err))) goto fail;
    if ((st = dalloc(m, (void **)&m->norm_cnt, 16, err))) goto fail;
    if ((st = mer_cuda_memset(m->c, m->norm_cnt, 0, 16, err))) goto fail;
    if ((st = mer_cuda_host_alloc(3 * T * sizeof(int32_t), (void **)&m->io_h, err))) goto fail;
    if ((st = mer_cuda_host_alloc(T * sizeof(int32_t), (void **)&m->out_h, err))) goto fail;
    /* Unwritten cache positions are never read, but the prefill kernel stages whole tiles: keep them
     * finite. */
    if ((st = mer_cuda_memset(m->c, m->kv, 0, m->kv_layer * 2 * hp->n_layer * es, err))) goto fail;
    {
        float *inv = malloc((size_t)d / 2 * sizeof(float));
        if (!inv) {
            st = mer__errf(err, MER_E_NOMEM, "qwen2 cuda: out of memory");
            goto fail;
        }
        for (int i = 0; i < d / 2; i++) /* as HF: 1 / theta^(2i/d) in f32 */
            inv[i] = 1.0f / powf(hp->rope_theta, (float)(2 * i) / (float)d);
        st = dalloc(m, (void **)&m->inv_freq, (size_t)d / 2 * sizeof(float), err);
        if (!st) st = mer_cuda_upload(m->c, m->inv_freq, inv, (size_t)d / 2 * sizeof(float), err);
        free(inv);
        if (st) goto fail;
    }
    *out = m;
    return MER_OK;
fail:
    mer_qwen2_cuda_free(m);
    return st;
}

static size_t matrix_bytes(const mer_qwen2_cuda_hp *hp, size_t es) {
    const size_t E = hp->n_embd, Hd = (size_t)hp->n_head * hp->head_dim, KVd = (size_t)hp->n_kv_head * hp->head_dim,
                 F = hp->n_ff;
    size_t layer = ((Hd + 2 * KVd) * E + E * Hd + 2 * F * E + E * F) * es + (2 * E + Hd + 2 * KVd) * 4;
    return layer * hp->n_layer + (size_t)hp->n_vocab * E * es + E * 4;
}

static mer_status alloc_weights(mer_qwen2_cuda *m, int with_bias, mer_err *err) {
    const mer_qwen2_cuda_hp *hp = &m->hp;
    const size_t E = hp->n_embd, Hd = (size_t)hp->n_head * hp->head_dim, F = hp->n_ff, V = hp->n_vocab;
    const size_t nqkv = (size_t)(hp->n_head + 2 * hp->n_kv_head) * hp->head_dim;
    const size_t es = m->es;
    const mer_dtype qt = m->p.wtype;
    mer_status st;
    if ((st = dalloc(m, &m->embed, V * E * es, err))) return st;
    if (m->quant) {
        if ((st = mer_cuda_qmat_init(m->c, &m->qlm, qt, (int)V, (int)E, 0, err))) return st;
    } else if (hp->tied) {
        m->lm_head = m->embed;
    } else if ((st = dalloc(m, &m->lm_head, V * E * es, err))) {
        return st;
    }
    if ((st = dalloc(m, (void **)&m->out_norm, E * 4, err))) return st;
    size_t qbytes = m->quant ? mer_cuda_qmat_bytes(&m->qlm) : 0;
    for (int l = 0; l < hp->n_layer; l++) {
        qlayer *L = &m->layers[l];
        if ((st = dalloc(m, (void **)&L->attn_norm, E * 4, err))) return st;
        if ((st = dalloc(m, (void **)&L->ffn_norm, E * 4, err))) return st;
        if (with_bias && (st = dalloc(m, (void **)&L->bqkv, nqkv * 4, err))) return st;
        if (m->quant) {
            if ((st = mer_cuda_qmat_init(m->c, &L->qqkv, qt, (int)nqkv, (int)E, 0, err))) return st;
            if ((st = mer_cuda_qmat_init(m->c, &L->qo, qt, (int)E, (int)Hd, 0, err))) return st;
            if ((st = mer_cuda_qmat_init(m->c, &L->qgu, qt, (int)(2 * F), (int)E, (int)F, err))) return st;
            if ((st = mer_cuda_qmat_init(m->c, &L->qdown, qt, (int)E, (int)F, 0, err))) return st;
            qbytes += mer_cuda_qmat_bytes(&L->qqkv) + mer_cuda_qmat_bytes(&L->qo) + mer_cuda_qmat_bytes(&L->qgu) +
                      mer_cuda_qmat_bytes(&L->qdown);
            continue;
        }
        if ((st = dalloc(m, &L->wqkv, nqkv * E * es, err))) return st;
        if ((st = dalloc(m, &L->wo, E * Hd * es, err))) return st;
        if ((st = dalloc(m, &L->wgu, 2 * F * E * es, err))) return st;
        if ((st = dalloc(m, &L->wdown, E * F * es, err))) return st;
    }
    if (m->quant) {
        /* Dequantisation scratch for the prefill matmuls: the largest layer matrix (lm_head, and any
         * matrix, goes in pieces of rows that fit). */
        size_t big = nqkv * E;
        if (2 * F * E > big) big = 2 * F * E;
        if (E * Hd > big) big = E * Hd;
        if (m->p.n_batch > QGEMV_MAX_TOK) {
            m->deq_elems = big;
            if ((st = dalloc(m, (void **)&m->deq, big * 2, err))) return st;
        }
        m->step_bytes = qbytes + (2 * E + nqkv) * 4 * hp->n_layer + E * 4; /* + norms and q/k/v biases */
    } else {
        m->step_bytes = matrix_bytes(hp, es);
    }
    return MER_OK;
}

// --- random weights ----------------------------------------------------------------------------------

static mer_status fill(mer_qwen2_cuda *m, void *p, size_t n, uint64_t seed, float a, mer_err *err) {
    if (m->at == MER_DTYPE_F32) return mer_cuda_fill_uniform_f32(m->c, p, n, seed, 0.0f, a, err);
    return mer_cuda_fill_uniform_bf16(m->c, p, n, seed, a, err);
}

mer_status mer_qwen2_cuda_init_random(const mer_qwen2_cuda_hp *hp, uint64_t seed, const mer_qwen2_cuda_params *p,
                                      mer_qwen2_cuda **out, mer_err *err) {
    mer_qwen2_cuda *m = NULL;
    mer_status st = alloc_model(hp, p, &m, err);
    if (st) return st;
    if ((st = alloc_weights(m, 1, err))) goto fail;
    const size_t E = hp->n_embd, Hd = (size_t)hp->n_head * hp->head_dim, F = hp->n_ff, V = hp->n_vocab;
    const size_t nqkv = (size_t)(hp->n_head + 2 * hp->n_kv_head) * hp->head_dim;
    uint64_t s = seed * 1000003u;
#define U16(ptr, n, fan_in) fill(m, ptr, n, ++s, sqrtf(3.0f / (float)(fan_in)), err)
#define QF(q, fan_in) mer_cuda_qmat_fill_random(m->c, &(q), ++s, sqrtf(3.0f / (float)(fan_in)), err)
    if ((st = fill(m, m->embed, V * E, ++s, 1.0f, err))) goto fail;
    if (m->quant) {
        if ((st = QF(m->qlm, E))) goto fail;
    } else if (!hp->tied && (st = U16(m->lm_head, V * E, E))) {
        goto fail;
    }
    if ((st = mer_cuda_fill_uniform_f32(m->c, m->out_norm, E, ++s, 1.0f, 0.1f, err))) goto fail;
    for (int l = 0; l < hp->n_layer; l++) {
        qlayer *L = &m->layers[l];
        if ((st = mer_cuda_fill_uniform_f32(m->c, L->attn_norm, E, ++s, 1.0f, 0.1f, err))) goto fail;
        if ((st = mer_cuda_fill_uniform_f32(m->c, L->ffn_norm, E, ++s, 1.0f, 0.1f, err))) goto fail;
        if ((st = mer_cuda_fill_uniform_f32(m->c, L->bqkv, nqkv, ++s, 0.0f, 0.1f, err))) goto fail;
        if (m->quant) {
            if ((st = QF(L->qqkv, E)) || (st = QF(L->qo, Hd)) || (st = QF(L->qgu, E)) || (st = QF(L->qdown, F)))
                goto fail;
            continue;
        }
        if ((st = U16(L->wqkv, nqkv * E, E))) goto fail;
        if ((st = U16(L->wo, E * Hd, Hd))) goto fail;
        if ((st = U16(L->wgu, 2 * F * E, E))) goto fail;
        if ((st = U16(L->wdown, E * F, F))) goto fail;
    }
#undef U16
#undef QF
    if ((st = mer_cuda_sync(m->c, err))) goto fail;
    *out = m;
    return MER_OK;
fail:
    mer_qwen2_cuda_free(m);
    return st;
}

// --- uploading matrices ------------------------------------------------------------------------------

/* A matrix to upload: n_out rows of n_in elements of dtype dt (GGUF blocks for q8_0/q4_0; rows
 * contiguous, any alignment), and an optional LoRA pair merged on the way (W + scale * B A, in f32). */
typedef struct msrc {
    const void *data;
    mer_dtype dt;
    int n_out, n_in;
    const float *la, *lb; /* A [lr][n_in], B [n_out][lr]; la NULL: none */
    int lr;
    float lscale;
} msrc;

/* Host and device staging for uploads. */
typedef struct stager {
    uint8_t *host; /* rows in the device format */
    uint8_t *raw;  /* one source row */
    float *tmp;    /* one row in f32 */
    void *dev;     /* device copy of quantised rows (for the repack) */
    size_t cap;    /* bytes of host and dev */
} stager;

static mer_status stager_init(mer_qwen2_cuda *m, stager *sg, mer_err *err) {
    const mer_qwen2_cuda_hp *hp = &m->hp;
    size_t widest = (size_t)hp->n_embd;
    if ((size_t)hp->n_ff > widest) widest = (size_t)hp->n_ff;
    if ((size_t)hp->n_head * hp->head_dim > widest) widest = (size_t)hp->n_head * hp->head_dim;
    memset(sg, 0, sizeof *sg);
    sg->cap = (size_t)32 << 20;
    if (sg->cap < widest * 4) sg->cap = widest * 4;
    sg->host = malloc(sg->cap);
    sg->raw = malloc(widest * 4);
    sg->tmp = malloc(widest * sizeof(float));
    if (!sg->host || !sg->raw || !sg->tmp)
        return mer__errf(err, MER_E_NOMEM, "qwen2 cuda: out of host memory for %zu bytes of staging", sg->cap);
    if (m->quant) return mer_cuda_alloc(m->c, sg->cap, &sg->dev, err);
    return MER_OK;
}

static void stager_free(mer_qwen2_cuda *m, stager *sg) {
    free(sg->host);
    free(sg->raw);
    free(sg->tmp);
    if (m && m->c) mer_cuda_release(m->c, sg->dev);
    memset(sg, 0, sizeof *sg);
}

/* Converts s into rows r0.. of the device matrix: dense dst (the model's dtype `at`, row stride n_in) or
 * the quantised qdst. A q8_0/q4_0 source going to its own dtype without LoRA is copied block for block;
 * everything else goes through f32 (mer_dequantize_row, the LoRA delta, mer_quantize_row: the reference
 * rounding for bf16 and the quantisers). */
static mer_status upload_mat(mer_qwen2_cuda *m, stager *sg, const msrc *s, void *dst, mer_cuda_qmat *qdst, int r0,
                             mer_err *err) {
    const mer_dtype to = qdst ? qdst->dt : m->at;
    const size_t n_in = (size_t)s->n_in;
    const size_t in_row = mer_dtype_row_bytes(s->dt, n_in), out_row = mer_dtype_row_bytes(to, n_in);
    if (!in_row || !out_row || out_row > sg->cap)
        return mer__errf(err, MER_E_UNSUPPORTED, "qwen2 cuda: rows of %zu %s elements cannot become %s", n_in,
                         mer_dtype_name(s->dt), mer_dtype_name(to));
    const int raw = s->dt == to && !s->la;
    const int per = (int)(sg->cap / out_row);
    mer_status st;
    for (int i0 = 0; i0 < s->n_out; i0 += per) {
        const int nr = s->n_out - i0 < per ? s->n_out - i0 : per;
        for (int i = 0; i < nr; i++) {
            const size_t r = (size_t)(i0 + i);
            const uint8_t *src = (const uint8_t *)s->data + r * in_row;
            uint8_t *o = sg->host + (size_t)i * out_row;
            if (raw) {
                memcpy(o, src, in_row);
                continue;
            }
            memcpy(sg->raw, src, in_row); /* the source may be unaligned */
            mer_dequantize_row(s->dt, sg->raw, sg->tmp, n_in);
            for (int k = 0; k < (s->la ? s->lr : 0); k++) {
                const float f = s->lscale * s->lb[r * (size_t)s->lr + (size_t)k];
                const float *a = s->la + (size_t)k * n_in;
                for (size_t j = 0; j < n_in; j++) sg->tmp[j] += f * a[j];
            }
            if (mer_quantize_row(to, sg->tmp, o, n_in))
                return mer__errf(err, MER_E_UNSUPPORTED, "qwen2 cuda: cannot convert to %s", mer_dtype_name(to));
        }
        if (qdst) {
            if ((st = mer_cuda_upload(m->c, sg->dev, sg->host, (size_t)nr * out_row, err))) return st;
            if ((st = mer_cuda_qmat_set_rows(m->c, qdst, r0 + i0, nr, sg->dev, err))) return st;
        } else if ((st = mer_cuda_upload(m->c, (uint8_t *)dst + (size_t)(r0 + i0) * out_row, sg->host,
                                         (size_t)nr * out_row, err))) {
            return st;
        }
    }
    return MER_OK;
}

// --- loading a checkpoint ----------------------------------------------------------------------------

static int dtype_ok(mer_dtype dt) {
    return dt == MER_DTYPE_F32 || dt == MER_DTYPE_F16 || dt == MER_DTYPE_BF16 || dt == MER_DTYPE_Q8_0 ||
           dt == MER_DTYPE_Q4_0;
}

/* Finds `name` with shape [rows][cols] (cols == 0: a vector of rows), checks its dtype and byte size. */
static mer_status find_tensor(const mer_weights *w, const char *name, int64_t rows, int64_t cols,
                              const mer_wtensor **out, mer_err *err) {
    const mer_wtensor *t = mer_weights_find(w, name);
    if (!t) return mer__errf(err, MER_E_NOTFOUND, "%s: tensor '%s' is missing", w->path, name);
    int ok = cols ? (t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols)
                  : (t->n_dims == 1 && t->shape[0] == rows);
    if (!ok) {
        char sh[96] = "";
        size_t o = 0;
        for (int i = 0; i < t->n_dims && o < sizeof sh - 24; i++)
            o += (size_t)snprintf(sh + o, sizeof sh - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (cols)
            return mer__errf(err, MER_E_SHAPE, "%s: tensor '%s' has shape [%s], expected [%lld, %lld]", w->path, name, sh,
                             (long long)rows, (long long)cols);
        return mer__errf(err, MER_E_SHAPE, "%s: tensor '%s' has shape [%s], expected [%lld]", w->path, name, sh,
                         (long long)rows);
    }
    const size_t n_row = cols ? (size_t)cols : (size_t)rows, n_rows = cols ? (size_t)rows : 1;
    const size_t blk = mer_dtype_block_elems(t->dtype);
    if (!dtype_ok(t->dtype) || !blk || n_row % blk)
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor '%s' has dtype %s, which the CUDA model does not take",
                         w->path, name, mer_dtype_name(t->dtype));
    const size_t row_bytes = mer_dtype_row_bytes(t->dtype, n_row);
    if (row_bytes == 0 || t->n_bytes / row_bytes < n_rows)
        return mer__errf(err, MER_E_FORMAT, "%s: tensor '%s' is shorter than its shape", w->path, name);
    *out = t;
    return MER_OK;
}

/* Uploads the vector `name` [n] as f32 to dev. */
static mer_status upload_vec(mer_qwen2_cuda *m, stager *sg, const mer_weights *w, const char *name, int64_t n,
                             float *dev, mer_err *err) {
    const mer_wtensor *t;
    mer_status st = find_tensor(w, name, n, 0, &t, err);
    if (st) return st;
    memcpy(sg->raw, t->data, mer_dtype_row_bytes(t->dtype, (size_t)n));
    mer_dequantize_row(t->dtype, sg->raw, sg->tmp, (size_t)n);
    return mer_cuda_upload(m->c, dev, sg->tmp, (size_t)n * sizeof(float), err);
}

/* Uploads matrix `name` [rows][cols] into rows r0.. of dst / qdst. */
static mer_status upload_named(mer_qwen2_cuda *m, stager *sg, const mer_weights *w, const char *name, int64_t rows,
                               int64_t cols, void *dst, mer_cuda_qmat *qdst, int r0, mer_err *err) {
    const mer_wtensor *t;
    mer_status st = find_tensor(w, name, rows, cols, &t, err);
    if (st) return st;
    msrc s = {t->data, t->dtype, (int)rows, (int)cols, NULL, NULL, 0, 0.0f};
    return upload_mat(m, sg, &s, dst, qdst, r0, err);
}

mer_status mer_qwen2_cuda_load(const mer_weights *w, const mer_qwen2_cuda_params *p, mer_qwen2_cuda **out,
                               mer_err *err) {
    *out = NULL;
    if (!w->config)
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: the CUDA Qwen2 needs an HF checkpoint with config.json", w->path);
    mer_qwen2_cuda_hp hp;
    mer_status st = mer_qwen2_cuda_hp_from_config(w->config, &hp, err);
    if (st) return st;
    if (!hp.tied && !mer_weights_find(w, "lm_head.weight")) hp.tied = 1; /* tied checkpoints omit it */
    mer_qwen2_cuda *m = NULL;
    stager sg;
    memset(&sg, 0, sizeof sg);
    char nm[160];
    if ((st = alloc_model(&hp, p, &m, err))) return st;
    const int64_t E = hp.n_embd, Hd = (int64_t)hp.n_head * hp.head_dim, KVd = (int64_t)hp.n_kv_head * hp.head_dim,
                  F = hp.n_ff, V = hp.n_vocab;
    const int with_bias = mer_weights_find(w, "model.layers.0.self_attn.q_proj.bias") != NULL;
    if ((st = alloc_weights(m, with_bias, err))) goto fail;
    if ((st = stager_init(m, &sg, err))) goto fail;
    if ((st = upload_named(m, &sg, w, "model.embed_tokens.weight", V, E, m->embed, NULL, 0, err))) goto fail;
    if (m->quant || !hp.tied) {
        const char *lm = hp.tied ? "model.embed_tokens.weight" : "lm_head.weight";
        if ((st = upload_named(m, &sg, w, lm, V, E, m->lm_head, m->quant ? &m->qlm : NULL, 0, err))) goto fail;
    }
    if ((st = upload_vec(m, &sg, w, "model.norm.weight", E, m->out_norm, err))) goto fail;
    for (int l = 0; l < hp.n_layer; l++) {
        qlayer *L = &m->layers[l];
        const int q = m->quant;
#define NM(fmt) (snprintf(nm, sizeof nm, "model.layers.%d." fmt, l), nm)
        if ((st = upload_vec(m, &sg, w, NM("input_layernorm.weight"), E, L->attn_norm, err))) goto fail;
        if ((st = upload_vec(m, &sg, w, NM("post_attention_layernorm.weight"), E, L->ffn_norm, err))) goto fail;
        if ((st = upload_named(m, &sg, w, NM("self_attn.q_proj.weight"), Hd, E, L->wqkv, q ? &L->qqkv : NULL, 0,
                               err)) ||
            (st = upload_named(m, &sg, w, NM("self_attn.k_proj.weight"), KVd, E, L->wqkv, q ? &L->qqkv : NULL, (int)Hd,
                               err)) ||
            (st = upload_named(m, &sg, w, NM("self_attn.v_proj.weight"), KVd, E, L->wqkv, q ? &L->qqkv : NULL,
                               (int)(Hd + KVd), err)))
            goto fail;
        if (with_bias &&
            ((st = upload_vec(m, &sg, w, NM("self_attn.q_proj.bias"), Hd, L->bqkv, err)) ||
             (st = upload_vec(m, &sg, w, NM("self_attn.k_proj.bias"), KVd, L->bqkv + Hd, err)) ||
             (st = upload_vec(m, &sg, w, NM("self_attn.v_proj.bias"), KVd, L->bqkv + Hd + KVd, err))))
            goto fail;
        if ((st = upload_named(m, &sg, w, NM("self_attn.o_proj.weight"), E, Hd, L->wo, q ? &L->qo : NULL, 0, err)) ||
            (st = upload_named(m, &sg, w, NM("mlp.gate_proj.weight"), F, E, L->wgu, q ? &L->qgu : NULL, 0, err)) ||
            (st = upload_named(m, &sg, w, NM("mlp.up_proj.weight"), F, E, L->wgu, q ? &L->qgu : NULL, (int)F, err)) ||
            (st = upload_named(m, &sg, w, NM("mlp.down_proj.weight"), E, F, L->wdown, q ? &L->qdown : NULL, 0, err)))
            goto fail;
#undef NM
    }
    if ((st = mer_cuda_sync(m->c, err))) goto fail;
    stager_free(m, &sg);
    *out = m;
    return MER_OK;
fail:
    stager_free(m, &sg);
    mer_qwen2_cuda_free(m);
    return st;
}

// --- from a CPU model --------------------------------------------------------------------------------

/* The CPU model's matrix with the unmerged LoRA pair of (layer, proj) when there is one. */
static msrc cpu_src(const struct mer_qwen2 *cm, const mer__qmat *q, const mer__lora_pair *lp) {
    msrc s = {q->data, q->dt, q->n_out, q->n_in, NULL, NULL, 0, 0.0f};
    if (lp && lp->a && cm->lora_mode == 2) {
        s.la = lp->a;
        s.lb = lp->b;
        s.lr = lp->r;
        s.lscale = cm->lora_scale;
    }
    return s;
}

mer_status mer_qwen2_cuda_from_model(const struct mer_qwen2 *cm, const mer_qwen2_cuda_params *p, mer_qwen2_cuda **out,
                                     mer_err *err) {
    *out = NULL;
    const mer__qwen2_hp *ch = &cm->hp;
    mer_qwen2_cuda_hp hp;
    memset(&hp, 0, sizeof hp);
    hp.n_vocab = ch->n_vocab;
    hp.n_embd = ch->n_embd;
    hp.n_layer = ch->n_layer;
    hp.n_head = ch->n_head;
    hp.n_kv_head = ch->n_kv_head;
    hp.head_dim = ch->head_dim;
    hp.n_ff = ch->n_ff;
    hp.rope_theta = ch->rope_theta;
    hp.rms_eps = ch->rms_eps;
    hp.tied = ch->tied;
    mer_qwen2_cuda *m = NULL;
    stager sg;
    memset(&sg, 0, sizeof sg);
    mer_status st = alloc_model(&hp, p, &m, err);
    if (st) return st;
    const int E = hp.n_embd, Hd = hp.n_head * hp.head_dim, KVd = hp.n_kv_head * hp.head_dim, F = hp.n_ff;
    const int with_bias = cm->layers[0].bq != NULL;
    const size_t nqkv = (size_t)Hd + 2 * (size_t)KVd;
    if ((st = alloc_weights(m, with_bias, err))) goto fail;
    if ((st = stager_init(m, &sg, err))) goto fail;
    {
        msrc s = cpu_src(cm, &cm->tok_embd, NULL);
        if ((st = upload_mat(m, &sg, &s, m->embed, NULL, 0, err))) goto fail;
        if (m->quant || !hp.tied) {
            s = cpu_src(cm, hp.tied ? &cm->tok_embd : &cm->lm_head, NULL);
            if ((st = upload_mat(m, &sg, &s, m->lm_head, m->quant ? &m->qlm : NULL, 0, err))) goto fail;
        }
        if ((st = mer_cuda_upload(m->c, m->out_norm, cm->out_norm, (size_t)E * 4, err))) goto fail;
    }
    for (int l = 0; l < hp.n_layer; l++) {
        qlayer *L = &m->layers[l];
        const mer__qwen2_layer *ly = &cm->layers[l];
        const int q = m->quant;
        if ((st = mer_cuda_upload(m->c, L->attn_norm, ly->attn_norm, (size_t)E * 4, err))) goto fail;
        if ((st = mer_cuda_upload(m->c, L->ffn_norm, ly->ffn_norm, (size_t)E * 4, err))) goto fail;
        if (with_bias) {
            const float *b[3] = {ly->bq, ly->bk, ly->bv};
            const size_t off[3] = {0, (size_t)Hd, (size_t)Hd + KVd}, n[3] = {(size_t)Hd, (size_t)KVd, (size_t)KVd};
            if ((st = mer_cuda_memset(m->c, L->bqkv, 0, nqkv * 4, err))) goto fail;
            for (int i = 0; i < 3; i++)
                if (b[i] && (st = mer_cuda_upload(m->c, L->bqkv + off[i], b[i], n[i] * 4, err))) goto fail;
        }
        /* destination and first row of each projection (q k v o gate up down) */
        void *dst[MER__N_PROJ] = {L->wqkv, L->wqkv, L->wqkv, L->wo, L->wgu, L->wgu, L->wdown};
        mer_cuda_qmat *qd[MER__N_PROJ] = {&L->qqkv, &L->qqkv, &L->qqkv, &L->qo, &L->qgu, &L->qgu, &L->qdown};
        const int row0[MER__N_PROJ] = {0, Hd, Hd + KVd, 0, 0, F, 0};
        for (int pj = 0; pj < MER__N_PROJ; pj++) {
            int n_out, n_in;
            mer__qwen2_proj_shape(ch, pj, &n_out, &n_in);
            if (ly->w[pj].n_out != n_out || ly->w[pj].n_in != n_in) {
                st = mer__errf(err, MER_E_SHAPE, "qwen2 cuda: layer %d %s is [%d, %d], expected [%d, %d]", l,
                               mer__qwen2_proj_name(pj), ly->w[pj].n_out, ly->w[pj].n_in, n_out, n_in);
                goto fail;
            }
            msrc s = cpu_src(cm, &ly->w[pj], &ly->lora[pj]);
            if ((st = upload_mat(m, &sg, &s, dst[pj], q ? qd[pj] : NULL, row0[pj], err))) goto fail;
        }
    }
    if ((st = mer_cuda_sync(m->c, err))) goto fail;
    stager_free(m, &sg);
    *out = m;
    return MER_OK;
fail:
    stager_free(m, &sg);
    mer_qwen2_cuda_free(m);
    return st;
}

// --- accessors ---------------------------------------------------------------------------------------

const mer_qwen2_cuda_hp *mer_qwen2_cuda_hparams(const mer_qwen2_cuda *m) { return &m->hp; }
const mer_qwen2_cuda_params *mer_qwen2_cuda_params_of(const mer_qwen2_cuda *m) { return &m->p; }
struct mer_cuda *mer_qwen2_cuda_backend(mer_qwen2_cuda *m) { return m->c; }
size_t mer_qwen2_cuda_step_bytes(const mer_qwen2_cuda *m) { return m->step_bytes; }

void mer_qwen2_cuda_set_graph(mer_qwen2_cuda *m, int on) {
    drop_graphs(m);
    m->p.use_graph = on != 0;
}

int mer_qwen2_cuda_n_ctx(const mer_qwen2_cuda *m) { return m->p.n_ctx; }
int mer_qwen2_cuda_n_seq(const mer_qwen2_cuda *m) { return m->p.n_seq; }

int mer_qwen2_cuda_n_past(const mer_qwen2_cuda *m, int slot) {
    return slot >= 0 && slot < m->p.n_seq ? m->n_past[slot] : 0;
}

mer_status mer_qwen2_cuda_reset(mer_qwen2_cuda *m, int slot, mer_err *err) {
    if (slot < 0 || slot >= m->p.n_seq)
        return mer__errf(err, MER_E_ARG, "qwen2 cuda: slot %d (the model holds %d sequences)", slot, m->p.n_seq);
    m->n_past[slot] = 0;
    return MER_OK;
}

// --- the forward pass --------------------------------------------------------------------------------

/* T tokens whose ids, positions and slots are in m->io. prefill: one sequence (slot, positions
 * pos0..pos0+T-1), else decode tokens of distinct slots. Logits for rows [lrow0, lrow0 + n_l) go to
 * logits_dev; argmax of those rows to m->out_ids when do_argmax. */
/* y = x W^T for the dense matrix w or the quantised qw (as the model is). */
static mer_status mm(mer_qwen2_cuda *m, void *y, int ldy, const void *x, int ldx, const void *w,
                     const mer_cuda_qmat *qw, int T, int n_in, int n_out, mer_cuda_epi epi, mer_err *err) {
    if (m->quant) return mer_cuda_qmatmul(m->c, y, ldy, x, ldx, qw, T, epi, m->deq, m->deq_elems, err);
    return mer_cuda_matmul(m->c, y, ldy, x, ldx, w, m->at, T, n_in, n_out, epi, err);
}

static int mm_gemv(const mer_qwen2_cuda *m, int T) {
    return m->quant ? T <= QGEMV_MAX_TOK : mer_cuda_matmul_uses_gemv(m->c, m->at, T);
}

/* have_x: the input embeddings are already in m->x (prefill_embd), else they are gathered from ids. */
#ifdef MER_BENCH_ABLATE
/* Timing ablation (builds with -DMER_BENCH_ABLATE only; the outputs are then meaningless): MER_ABLATE is a
 * bit mask of the decode step's kernels left out - 1 attention, 2 the RMSNorms, 4 q/k/v, 8 o, 16 gate/up,
 * 32 down, 64 lm_head, 128 argmax - so that a decode benchmark shows each one's marginal cost. */
static int ablate(int prefill, int bit) {
    static int mask = -1;
    if (mask < 0) mask = getenv("MER_ABLATE") ? atoi(getenv("MER_ABLATE")) : 0;
    return !prefill && (mask & bit);
}
#define ABL(bit) ablate(prefill, bit)
#else
#define ABL(bit) 0
#endif

static mer_status forward(mer_qwen2_cuda *m, int T, int prefill, int slot, int pos0, int lrow0, int n_l,
                          float *logits_dev, int do_argmax, int have_x, mer_err *err) {
    const mer_qwen2_cuda_hp *hp = &m->hp;
    mer_cuda *c = m->c;
    const mer_dtype at = m->at;
    const int E = hp->n_embd, H = hp->n_head, KV = hp->n_kv_head, d = hp->head_dim, F = hp->n_ff;
    const int nqkv = (H + 2 * KV) * d;
    const int tm = m->t_max;
    const int32_t *ids = m->io, *pos = m->io + tm, *slots = m->io + 2 * tm;
    const float scale = 1.0f / sqrtf((float)d);
    /* MER_CUDA_NORM_FOLD: RMSNorms folded into the q8_0/q4_0 GEMVs (the qkv one at one row by default) */
    const int nfold = m->quant && at == MER_DTYPE_BF16 && T <= QGEMV_MAX_TOK ? mer_cuda_qnorm_fold(T) : 0;
    mer_status st;
    if (!have_x && (st = mer_cuda_embed(c, m->x, m->embed, at, hp->n_vocab, E, ids, T, err))) return st;
    for (int l = 0; l < hp->n_layer; l++) {
        const qlayer *L = &m->layers[l];
        void *kc = (char *)m->kv + (size_t)l * 2 * m->kv_layer * m->es, *vc = (char *)kc + m->kv_layer * m->es;
        if (nfold & 1) { /* the RMSNorm inside the GEMV (same bits, one launch less) */
            if ((st = mer_cuda_qgemv_norm(c, m->qkv, nqkv, m->x, E, L->attn_norm, hp->rms_eps, &L->qqkv, T,
                                          MER_CUDA_EPI_F32, err)))
                return st;
        } else {
            if (!ABL(2) && (st = mer_cuda_rmsnorm(c, m->xn, at, m->x, L->attn_norm, T, E, hp->rms_eps, err))) return st;
            if (!ABL(4) && (st = mm(m, m->qkv, nqkv, m->xn, E, L->wqkv, &L->qqkv, T, E, nqkv, MER_CUDA_EPI_F32, err)))
                return st;
        }
        if (prefill) {
            if ((st = mer_cuda_qkv_rope(c, m->qkv, L->bqkv, m->inv_freq, m->q, kc, vc, at, pos, slots, T, H, KV, d,
                                        m->p.n_ctx, err)))
                return st;
            st = mer_cuda_attn_prefill(c, m->att, m->q, kc, vc, at, slot, pos0, T, H, KV, d, m->p.n_ctx, scale, pos,
                                       slots, err);
        } else if (!ABL(1)) { /* bias + RoPE + cache store fused into the attention */
            st = mer_cuda_attn_decode_rope(c, m->att, m->qkv, L->bqkv, m->inv_freq, kc, vc, at, pos, slots, T, H, KV, d,
                                           m->p.n_ctx, m->p.n_split, scale, m->attn_ws, err);
        }
        if (st) return st;
        /* quantised, <= 8 rows: the o projection and the MLP's RMSNorm through mer_cuda_qgemv_add_norm (two
         * launches unless MER_CUDA_ADDNORM=1; same bits either way) */
        const int addnorm = m->quant && at == MER_DTYPE_BF16 && T <= QGEMV_MAX_TOK && !(nfold & 2);
        if (addnorm) {
            if (!ABL(8) && (st = mer_cuda_qgemv_add_norm(c, m->x, E, m->att, H * d, &L->qo, T, L->ffn_norm, hp->rms_eps,
                                                         m->xn, m->norm_cnt, err)))
                return st;
        } else if (!ABL(8) &&
                   (st = mm(m, m->x, E, m->att, H * d, L->wo, &L->qo, T, H * d, E, MER_CUDA_EPI_F32_ADD, err))) {
            return st;
        }
        if (addnorm) {
            if (!ABL(16) && (st = mm(m, m->h, F, m->xn, E, L->wgu, &L->qgu, T, E, 2 * F, MER_CUDA_EPI_SILU, err)))
                return st;
        } else if (nfold & 2) {
            if ((st = mer_cuda_qgemv_norm(c, m->h, F, m->x, E, L->ffn_norm, hp->rms_eps, &L->qgu, T,
                                          MER_CUDA_EPI_SILU, err)))
                return st;
        } else if (!ABL(2) && (st = mer_cuda_rmsnorm(c, m->xn, at, m->x, L->ffn_norm, T, E, hp->rms_eps, err))) {
            return st;
        } else if (mm_gemv(m, T)) {
            if (!ABL(16) && (st = mm(m, m->h, F, m->xn, E, L->wgu, &L->qgu, T, E, 2 * F, MER_CUDA_EPI_SILU, err))) return st;
        } else { /* no scratch allocation (graph capture): gate/up into m->gu, then silu * up */
            if ((st = mm(m, m->gu, 2 * F, m->xn, E, L->wgu, &L->qgu, T, E, 2 * F,
                                      at == MER_DTYPE_F32 ? MER_CUDA_EPI_F32 : MER_CUDA_EPI_BF16, err)))
                return st;
            if ((st = mer_cuda_silu_mul(c, m->h, m->gu, at, T, F, err))) return st;
        }
        if (!ABL(32) && (st = mm(m, m->x, E, m->h, F, L->wdown, &L->qdown, T, F, E, MER_CUDA_EPI_F32_ADD, err)))
            return st;
    }
    if ((st = mer_cuda_rmsnorm(c, m->xn, at, m->x + (size_t)lrow0 * E, m->out_norm, n_l, E, hp->rms_eps, err)))
        return st;
    if (!ABL(64) && (st = mm(m, logits_dev, hp->n_vocab, m->xn, E, m->lm_head, &m->qlm, n_l, E, hp->n_vocab,
                             MER_CUDA_EPI_F32, err)))
        return st;
    if (do_argmax && !ABL(128) && (st = mer_cuda_argmax(c, m->out_ids, logits_dev, n_l, hp->n_vocab, err))) return st;
    return MER_OK;
}

static mer_status check_ids(const mer_qwen2_cuda *m, const int32_t *ids, int n, mer_err *err) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->hp.n_vocab)
            return mer__errf(err, MER_E_ARG, "qwen2 cuda: token %d is id %d, outside the vocabulary of %d", i,
                             (int)ids[i], m->hp.n_vocab);
    return MER_OK;
}

/* Prefill from token ids, or (ids NULL) from embedding rows embd [n][n_embd]. */
static mer_status prefill(mer_qwen2_cuda *m, int slot, const int32_t *ids, const float *embd, int n, float *logits,
                          int all_logits, int32_t *greedy, mer_err *err) {
    if (slot < 0 || slot >= m->p.n_seq)
        return mer__errf(err, MER_E_ARG, "qwen2 cuda: slot %d (the model holds %d sequences)", slot, m->p.n_seq);
    if (n < 1) return mer__errf(err, MER_E_ARG, "qwen2 cuda: prefill of %d tokens", n);
    if (!ids && !embd) return mer__errf(err, MER_E_ARG, "qwen2 cuda: prefill without tokens or embeddings");
    mer_status st = ids ? check_ids(m, ids, n, err) : MER_OK;
    if (st) return st;
    if (n > m->p.n_ctx - m->n_past[slot])
        return mer__errf(err, MER_E_RANGE, "qwen2 cuda: %d + %d tokens exceed the context of %d", m->n_past[slot], n,
                         m->p.n_ctx);
    const size_t V = (size_t)m->hp.n_vocab, E = (size_t)m->hp.n_embd;
    const int tm = m->t_max;
    float *all_dev = NULL;
    if (logits && all_logits && (st = mer_cuda_alloc(m->c, (size_t)m->p.n_batch * V * sizeof(float), (void **)&all_dev, err)))
        return st;
    const int p0 = m->n_past[slot];
    for (int c0 = 0; c0 < n; c0 += m->p.n_batch) {
        const int T = n - c0 < m->p.n_batch ? n - c0 : m->p.n_batch;
        const int last = c0 + T == n;
        for (int i = 0; i < T; i++) {
            m->io_h[i] = ids ? ids[c0 + i] : 0;
            m->io_h[tm + i] = p0 + c0 + i;
            m->io_h[2 * tm + i] = slot;
        }
        if ((st = mer_cuda_upload_async(m->c, m->io, m->io_h, 3 * (size_t)tm * sizeof(int32_t), err))) goto done;
        if (embd && (st = mer_cuda_upload(m->c, m->x, embd + (size_t)c0 * E, (size_t)T * E * sizeof(float), err)))
            goto done;
        if (logits && all_logits) {
            if ((st = forward(m, T, 1, slot, p0 + c0, 0, T, all_dev, last && greedy, !ids, err))) goto done;
            if ((st = mer_cuda_download(m->c, logits + (size_t)c0 * V, all_dev, (size_t)T * V * sizeof(float), err)))
                goto done;
            if (last && greedy && (st = mer_cuda_download(m->c, greedy, m->out_ids + (T - 1), sizeof(int32_t), err)))
                goto done;
        } else {
            /* Only the last chunk needs logits; earlier ones still run the head on one row (cheap) to keep
             * one code path. */
            if ((st = forward(m, T, 1, slot, p0 + c0, T - 1, 1, m->logits, last && greedy, !ids, err))) goto done;
            if (last && logits && (st = mer_cuda_download(m->c, logits, m->logits, V * sizeof(float), err))) goto done;
            if (last && greedy && (st = mer_cuda_download(m->c, greedy, m->out_ids, sizeof(int32_t), err))) goto done;
        }
        /* The io array (and m->x) are rewritten by the next chunk: wait for this one. */
        if ((st = mer_cuda_sync(m->c, err))) goto done;
    }
    m->n_past[slot] += n;
done:
    mer_cuda_release(m->c, all_dev);
    return st;
}

mer_status mer_qwen2_cuda_prefill(mer_qwen2_cuda *m, int slot, const int32_t *ids, int n, float *logits,
                                  int all_logits, int32_t *greedy, mer_err *err) {
    if (!ids) return mer__errf(err, MER_E_ARG, "qwen2 cuda: prefill without token ids");
    return prefill(m, slot, ids, NULL, n, logits, all_logits, greedy, err);
}

mer_status mer_qwen2_cuda_prefill_embd(mer_qwen2_cuda *m, int slot, const float *embd, int n, float *logits,
                                       int all_logits, int32_t *greedy, mer_err *err) {
    if (!embd) return mer__errf(err, MER_E_ARG, "qwen2 cuda: prefill without embeddings");
    return prefill(m, slot, NULL, embd, n, logits, all_logits, greedy, err);
}

mer_status mer_qwen2_cuda_decode(mer_qwen2_cuda *m, int n, const int *slots, const int32_t *ids, float *logits,
                                 int32_t *greedy, mer_err *err) {
    if (n < 1 || n > m->p.n_seq)
        return mer__errf(err, MER_E_ARG, "qwen2 cuda: decode of %d sequences (the model holds %d)", n, m->p.n_seq);
    mer_status st = check_ids(m, ids, n, err);
    if (st) return st;
    const int tm = m->t_max;
    for (int i = 0; i < n; i++) {
        const int s = slots[i];
        if (s < 0 || s >= m->p.n_seq)
            return mer__errf(err, MER_E_ARG, "qwen2 cuda: slot %d (the model holds %d sequences)", s, m->p.n_seq);
        for (int j = 0; j < i; j++)
            if (slots[j] == s) return mer__errf(err, MER_E_ARG, "qwen2 cuda: slot %d given twice in one step", s);
        if (m->n_past[s] >= m->p.n_ctx)
            return mer__errf(err, MER_E_RANGE, "qwen2 cuda: sequence %d is full (%d positions)", s, m->p.n_ctx);
        m->io_h[i] = ids[i];
        m->io_h[tm + i] = m->n_past[s];
        m->io_h[2 * tm + i] = s;
    }
    if ((st = mer_cuda_upload_async(m->c, m->io, m->io_h, 3 * (size_t)tm * sizeof(int32_t), err))) return st;
    int pdl0 = mer_cuda_get_pdl(m->c);
    if (m->qpdl) mer_cuda_set_pdl(m->c, 1);
    if (m->p.use_graph) {
        if (!m->graphs[n]) {
            for (int attempt = 0; attempt < 2 && !m->graphs[n]; attempt++) {
                if ((st = mer_cuda_begin_capture(m->c, err))) break;
                mer_status fs = forward(m, n, 0, 0, 0, 0, n, m->logits, 1, 0, err);
                mer_err e2;
                st = mer_cuda_end_capture(m->c, fs != MER_OK, &m->graphs[n], &e2);
                if (fs == MER_OK && st == MER_OK) break;
                /* Capture with programmatic launches failed: try once more without them. */
                if (attempt == 0 && mer_cuda_get_pdl(m->c)) {
                    mer_cuda_set_pdl(m->c, 0);
                    pdl0 = 0;
                    m->qpdl = 0;
                    continue;
                }
                if (fs != MER_OK) st = fs;
                else if (err) *err = e2;
                break;
            }
        }
        if (!st) st = mer_cuda_graph_launch(m->c, m->graphs[n], err);
    } else {
        st = forward(m, n, 0, 0, 0, 0, n, m->logits, 1, 0, err);
    }
    mer_cuda_set_pdl(m->c, pdl0);
    if (st) return st;
    if (greedy && (st = mer_cuda_download_async(m->c, m->out_h, m->out_ids, (size_t)n * sizeof(int32_t), err))) return st;
    if (logits &&
        (st = mer_cuda_download(m->c, logits, m->logits, (size_t)n * m->hp.n_vocab * sizeof(float), err)))
        return st;
    if ((st = mer_cuda_sync(m->c, err))) return st;
    if (greedy) memcpy(greedy, m->out_h, (size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) m->n_past[slots[i]]++;
    return MER_OK;
}

#else /* !MER_CUDA */

static mer_status no_cuda(mer_err *err) {
    return mer__errf(err, MER_E_UNSUPPORTED, "qwen2 cuda: mer was built without CUDA (make CUDA=1)");
}

mer_status mer_qwen2_cuda_load(const mer_weights *w, const mer_qwen2_cuda_params *p, mer_qwen2_cuda **out,
                               mer_err *err) {
    (void)w;
    (void)p;
    *out = NULL;
    return no_cuda(err);
}
mer_status mer_qwen2_cuda_from_model(const struct mer_qwen2 *m, const mer_qwen2_cuda_params *p, mer_qwen2_cuda **out,
                                     mer_err *err) {
    (void)m;
    (void)p;
    *out = NULL;
    return no_cuda(err);
}
mer_status mer_qwen2_cuda_init_random(const mer_qwen2_cuda_hp *hp, uint64_t seed, const mer_qwen2_cuda_params *p,
                                      mer_qwen2_cuda **out, mer_err *err) {
    (void)hp;
    (void)seed;
    (void)p;
    *out = NULL;
    return no_cuda(err);
}
void mer_qwen2_cuda_free(mer_qwen2_cuda *m) { (void)m; }
const mer_qwen2_cuda_hp *mer_qwen2_cuda_hparams(const mer_qwen2_cuda *m) {
    (void)m;
    return NULL;
}
const mer_qwen2_cuda_params *mer_qwen2_cuda_params_of(const mer_qwen2_cuda *m) {
    (void)m;
    return NULL;
}
struct mer_cuda *mer_qwen2_cuda_backend(mer_qwen2_cuda *m) {
    (void)m;
    return NULL;
}
size_t mer_qwen2_cuda_step_bytes(const mer_qwen2_cuda *m) {
    (void)m;
    return 0;
}
void mer_qwen2_cuda_set_graph(mer_qwen2_cuda *m, int on) {
    (void)m;
    (void)on;
}
int mer_qwen2_cuda_n_past(const mer_qwen2_cuda *m, int slot) {
    (void)m;
    (void)slot;
    return 0;
}
int mer_qwen2_cuda_n_ctx(const mer_qwen2_cuda *m) {
    (void)m;
    return 0;
}
int mer_qwen2_cuda_n_seq(const mer_qwen2_cuda *m) {
    (void)m;
    return 0;
}
mer_status mer_qwen2_cuda_prefill_embd(mer_qwen2_cuda *m, int slot, const float *embd, int n, float *logits,
                                       int all_logits, int32_t *greedy, mer_err *err) {
    (void)m; (void)slot; (void)embd; (void)n; (void)logits; (void)all_logits; (void)greedy;
    return no_cuda(err);
}
mer_status mer_qwen2_cuda_reset(mer_qwen2_cuda *m, int slot, mer_err *err) {
    (void)m;
    (void)slot;
    return no_cuda(err);
}
mer_status mer_qwen2_cuda_prefill(mer_qwen2_cuda *m, int slot, const int32_t *ids, int n, float *logits,
                                  int all_logits, int32_t *greedy, mer_err *err) {
    (void)m; (void)slot; (void)ids; (void)n; (void)logits; (void)all_logits; (void)greedy;
    return no_cuda(err);
}
mer_status mer_qwen2_cuda_decode(mer_qwen2_cuda *m, int n, const int *slots, const int32_t *ids, float *logits,
                                 int32_t *greedy, mer_err *err) {
    (void)m; (void)n; (void)slots; (void)ids; (void)logits; (void)greedy;
    return no_cuda(err);
}

#endif
