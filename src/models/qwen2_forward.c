/* qwen2_forward.c - the Qwen2 forward pass on the CPU kernels: a context holds the KV cache (f32,
 * preallocated for n_ctx positions) and an arena with every activation buffer sized for n_batch tokens,
 * so a forward never allocates. A forward runs n tokens at once (the batched prefill: every matrix
 * product is one GEMM over the n rows); a decode step is the same with n = 1 (matrix-vector products
 * streaming each weight once). Per layer, as HF Qwen2DecoderLayer:
 *   h  = rmsnorm(x) ; q,k,v = h Wq^T + bq, h Wk^T + bk, h Wv^T + bv ; RoPE (NeoX) on q and k ;
 *   k, v appended to the cache ; a = causal GQA attention(q, cache) ; x += a Wo^T ;
 *   h  = rmsnorm(x) ; x += (silu(h Wg^T) * h Wu^T) Wd^T
 * then logits = rmsnorm(x) W_lm^T. An unmerged LoRA adds scale * (h A^T) B^T to each projection. */
#include "models/qwen2.h"

#include <math.h>
#include <string.h>

mer_qwen2_ctx_params mer_qwen2_ctx_default_params(void) {
    mer_qwen2_ctx_params p;
    memset(&p, 0, sizeof p);
    return p;
}

void mer_qwen2_ctx_free(mer_qwen2_ctx *c) {
    if (!c) return;
    if (c->m && c->m->dev) mer__qwen2_dev_ctx_release(c);
    if (c->own_cpu) {
        mer_cpu_ctx_free(c->cpu);
        mer_threadpool_free(c->pool);
    }
    mer_arena_free(&c->arena);
    free(c->kv);
    free(c);
}

static size_t up64(size_t n) { return (n + MER_ALIGN - 1) / MER_ALIGN * MER_ALIGN; }

static mer_status ctx_init(const mer_qwen2 *m, const mer_qwen2_ctx_params *params, mer_cpu_ctx *cpu,
                           mer_qwen2_ctx **out, mer_err *err) {
    if (!out) return mer__errf(err, MER_E_ARG, "mer_qwen2_ctx_init: out is NULL");
    *out = NULL;
    if (!m) return mer__errf(err, MER_E_ARG, "mer_qwen2_ctx_init: model is NULL");
    mer_qwen2_ctx_params defp = mer_qwen2_ctx_default_params();
    if (!params) params = &defp;
    const mer__qwen2_hp *hp = &m->hp;
    if (params->n_ctx < 0 || params->n_batch < 0 || params->n_threads < 0)
        return mer__errf(err, MER_E_ARG, "mer_qwen2_ctx_init: negative n_ctx, n_batch or n_threads");
    if (params->n_ctx > (1 << 24) || params->n_batch > (1 << 16))
        return mer__errf(err, MER_E_RANGE, "mer_qwen2_ctx_init: n_ctx %d / n_batch %d too large", params->n_ctx,
                         params->n_batch);
    mer_status st = MER_OK;
    mer_qwen2_ctx *c = calloc(1, sizeof *c);
    if (!c) return mer__errf(err, MER_E_NOMEM, "out of memory");
    c->m = m;
    c->n_ctx = params->n_ctx ? params->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    c->n_batch = params->n_batch ? params->n_batch : 256;
    if (c->n_batch > c->n_ctx) c->n_batch = c->n_ctx;
    c->logits_all = params->logits_all != 0;
    size_t kvd = (size_t)hp->n_kv_head * (size_t)hp->head_dim, kv_n;
    if (mer__mul_ovf(kvd, (size_t)c->n_ctx * 2 * (size_t)hp->n_layer, &kv_n) || kv_n > SIZE_MAX / 4) {
        st = mer__errf(err, MER_E_RANGE, "KV cache for %d positions overflows", c->n_ctx);
        goto fail;
    }
    c->kv = malloc(kv_n * sizeof(float));
    if (!c->kv) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory for a KV cache of %zu bytes (n_ctx %d)", kv_n * 4, c->n_ctx);
        goto fail;
    }
    size_t B = (size_t)c->n_batch, E = (size_t)hp->n_embd, Q = (size_t)hp->n_head * (size_t)hp->head_dim;
    size_t F = (size_t)hp->n_ff, V = (size_t)hp->n_vocab, EQ = E > Q ? E : Q;
    size_t r = m->lora ? (size_t)m->lora->r_max : 0, lo_out = 0;
    if (m->lora) {
        lo_out = EQ > F ? EQ : F;
    }
    size_t n_logit_rows = c->logits_all ? B : 1;
    size_t sizes[] = {B * E, B * EQ, B * Q, B * Q, B * F, B * F, B * r, B * lo_out, n_logit_rows * V, B};
    size_t total = 0;
    for (size_t i = 0; i < MER_ARRAY_LEN(sizes); i++) {
        if (!sizes[i]) sizes[i] = 1;
        total += up64(sizes[i] * 4);
    }
    if ((st = mer_arena_init(&c->arena, total, err))) goto fail;
    float **bufs[] = {&c->x, &c->xn, &c->q, &c->att, &c->ff_a, &c->ff_b, &c->lo_t, &c->lo_y, &c->logits};
    for (size_t i = 0; i < MER_ARRAY_LEN(bufs); i++) {
        *bufs[i] = mer_arena_alloc(&c->arena, sizes[i] * 4, err);
        if (!*bufs[i]) {
            st = MER_E_NOMEM;
            goto fail;
        }
    }
    c->pos = mer_arena_alloc(&c->arena, B * 4, err);
    if (!c->pos) {
        st = MER_E_NOMEM;
        goto fail;
    }
    if (cpu) {
        c->cpu = cpu;
        c->pool = mer_cpu_ctx_pool(cpu);
    } else {
        c->own_cpu = 1;
        if ((st = mer_threadpool_init(params->n_threads, &c->pool, err)) ||
            (st = mer_cpu_ctx_init(c->pool, MER_ISA_AUTO, &c->cpu, err)))
            goto fail;
    }
    *out = c;
    return MER_OK;
fail:
    mer_qwen2_ctx_free(c);
    return st;
}

mer_status mer_qwen2_ctx_init(const mer_qwen2 *m, const mer_qwen2_ctx_params *params, mer_qwen2_ctx **out,
                              mer_err *err) {
    if (out && m && m->dev) {
        *out = NULL;
        return mer__qwen2_dev_ctx_init(m, params, out, err);
    }
    return ctx_init(m, params, NULL, out, err);
}

mer_status mer__qwen2_ctx_init_on(const mer_qwen2 *m, const mer_qwen2_ctx_params *params, mer_cpu_ctx *cpu,
                                  mer_qwen2_ctx **out, mer_err *err) {
    if (!cpu) {
        if (out) *out = NULL;
        return mer__errf(err, MER_E_ARG, "mer__qwen2_ctx_init_on: cpu is NULL");
    }
    return ctx_init(m, params, cpu, out, err);
}

void mer_qwen2_ctx_reset(mer_qwen2_ctx *c) {
    if (c->m->dev) mer__qwen2_dev_reset(c);
    c->n_past = 0;
    c->n_logits = 0;
}

int mer_qwen2_ctx_n_past(const mer_qwen2_ctx *c) { return c->n_past; }
int mer_qwen2_ctx_n_ctx(const mer_qwen2_ctx *c) { return c->n_ctx; }

const float *mer_qwen2_logits(const mer_qwen2_ctx *c, int *n_rows) {
    if (n_rows) *n_rows = c->n_logits;
    return c->n_logits ? c->logits : NULL;
}

// --- one chunk ---------------------------------------------------------------------------------------

void mer__qwen2_proj(mer_cpu_ctx *cpu, const mer_qwen2 *m, const mer__qwen2_layer *ly, int p, float *y, size_t ldy,
                     const float *x, const float *bias, int n, float *lo_t, float *lo_y) {
    const mer__qmat *w = &ly->w[p];
    mer_cpu_matmul(cpu, y, ldy, x, (size_t)w->n_in, w->data, w->dt, bias, n, w->n_in, w->n_out);
    const mer__lora_pair *lp = &ly->lora[p];
    if (!lp->a) return;
    mer_cpu_matmul(cpu, lo_t, (size_t)lp->r, x, (size_t)w->n_in, lp->a, MER_DTYPE_F32, NULL, n, w->n_in, lp->r);
    mer_cpu_scale(cpu, lo_t, lo_t, m->lora_scale, (size_t)n * (size_t)lp->r);
    mer_cpu_matmul(cpu, lo_y, (size_t)w->n_out, lo_t, (size_t)lp->r, lp->b, MER_DTYPE_F32, NULL, n, lp->r, w->n_out);
    if (ldy == (size_t)w->n_out) {
        mer_cpu_add(cpu, y, y, lo_y, (size_t)n * ldy);
        return;
    }
    for (int t = 0; t < n; t++)
        mer_cpu_add(cpu, y + (size_t)t * ldy, y + (size_t)t * ldy, lo_y + (size_t)t * (size_t)w->n_out,
                    (size_t)w->n_out);
}

/* y[n][n_out] = x[n][n_in] W^T (+ bias) (+ scale * (x A^T) B^T). */
static void proj(mer_qwen2_ctx *c, const mer__qwen2_layer *ly, int p, float *y, size_t ldy, const float *x,
                 const float *bias, int n) {
    mer__qwen2_proj(c->cpu, c->m, ly, p, y, ldy, x, bias, n, c->lo_t, c->lo_y);
}

/* Runs n (<= n_batch) tokens whose input embeddings are in c->x, at positions n_past.. */
static void forward_chunk(mer_qwen2_ctx *c, int n, int want_all) {
    const mer_qwen2 *m = c->m;
    const mer__qwen2_hp *hp = &m->hp;
    const int E = hp->n_embd, d = hp->head_dim, H = hp->n_head, KV = hp->n_kv_head;
    const size_t kvd = (size_t)KV * (size_t)d, Qd = (size_t)H * (size_t)d;
    const int p0 = c->n_past;
    for (int t = 0; t < n; t++) c->pos[t] = p0 + t;
    const float scale = 1.0f / sqrtf((float)d);
    for (int l = 0; l < hp->n_layer; l++) {
        const mer__qwen2_layer *ly = &m->layers[l];
        float *kc = c->kv + (size_t)l * 2 * (size_t)c->n_ctx * kvd, *vc = kc + (size_t)c->n_ctx * kvd;
        float *kn = kc + (size_t)p0 * kvd, *vn = vc + (size_t)p0 * kvd;
        mer_cpu_rmsnorm(c->cpu, c->xn, c->x, n, E, ly->attn_norm, hp->rms_eps);
        proj(c, ly, MER__Q, c->q, Qd, c->xn, ly->bq, n);
        proj(c, ly, MER__K, kn, kvd, c->xn, ly->bk, n);
        proj(c, ly, MER__V, vn, kvd, c->xn, ly->bv, n);
        mer_cpu_rope_neox(c->cpu, c->q, n, H, d, Qd, c->pos, hp->rope_theta, d);
        mer_cpu_rope_neox(c->cpu, kn, n, KV, d, kvd, c->pos, hp->rope_theta, d);
        mer_cpu_attention(c->cpu, c->att, c->q, kc, vc, n, H, KV, d, p0 + n, p0, 1, scale);
        proj(c, ly, MER__O, c->xn, (size_t)E, c->att, NULL, n);
        mer_cpu_add(c->cpu, c->x, c->x, c->xn, (size_t)n * (size_t)E);
        mer_cpu_rmsnorm(c->cpu, c->xn, c->x, n, E, ly->ffn_norm, hp->rms_eps);
        proj(c, ly, MER__GATE, c->ff_a, (size_t)hp->n_ff, c->xn, NULL, n);
        proj(c, ly, MER__UP, c->ff_b, (size_t)hp->n_ff, c->xn, NULL, n);
        mer_cpu_silu_mul(c->cpu, c->ff_a, c->ff_a, c->ff_b, (size_t)n * (size_t)hp->n_ff);
        proj(c, ly, MER__DOWN, c->xn, (size_t)E, c->ff_a, NULL, n);
        mer_cpu_add(c->cpu, c->x, c->x, c->xn, (size_t)n * (size_t)E);
    }
    c->n_past += n;
    /* logits: every row, or the last one */
    int rows = want_all ? n : 1;
    const float *xs = c->x + (size_t)(n - rows) * (size_t)E;
    mer_cpu_rmsnorm(c->cpu, c->xn, xs, rows, E, m->out_norm, hp->rms_eps);
    mer_cpu_matmul(c->cpu, c->logits, (size_t)hp->n_vocab, c->xn, (size_t)E, m->lm_head.data, m->lm_head.dt, NULL,
                   rows, E, hp->n_vocab);
    c->n_logits = rows;
}

static mer_status check_room(const mer_qwen2_ctx *c, size_t n, mer_err *err) {
    if (n == 0) return mer__errf(err, MER_E_ARG, "forward of 0 tokens");
    if (n > (size_t)(c->n_ctx - c->n_past))
        return mer__errf(err, MER_E_RANGE,
                         "%zu tokens at position %d do not fit the context of %d tokens (%d free)", n, c->n_past,
                         c->n_ctx, c->n_ctx - c->n_past);
    return MER_OK;
}

mer_status mer_qwen2_prefill(mer_qwen2_ctx *c, const int32_t *ids, size_t n, mer_err *err) {
    mer_status st = check_room(c, n, err);
    if (st) return st;
    const mer_qwen2 *m = c->m;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->hp.n_vocab)
            return mer__errf(err, MER_E_RANGE, "token id %d at index %zu is outside [0, %d)", ids[i], i, m->hp.n_vocab);
    if (m->dev) return mer__qwen2_dev_prefill(c, ids, NULL, n, err);
    for (size_t off = 0; off < n;) {
        int k = (int)(n - off < (size_t)c->n_batch ? n - off : (size_t)c->n_batch);
        mer_cpu_embed(c->cpu, c->x, m->tok_embd.data, m->tok_embd.dt, m->hp.n_vocab, m->hp.n_embd, ids + off, k);
        forward_chunk(c, k, c->logits_all);
        off += (size_t)k;
    }
    return MER_OK;
}

mer_status mer_qwen2_prefill_embd(mer_qwen2_ctx *c, const float *embd, size_t n, mer_err *err) {
    mer_status st = check_room(c, n, err);
    if (st) return st;
    if (c->m->dev) return mer__qwen2_dev_prefill(c, NULL, embd, n, err);
    size_t E = (size_t)c->m->hp.n_embd;
    for (size_t off = 0; off < n;) {
        int k = (int)(n - off < (size_t)c->n_batch ? n - off : (size_t)c->n_batch);
        memcpy(c->x, embd + off * E, (size_t)k * E * sizeof(float));
        forward_chunk(c, k, c->logits_all);
        off += (size_t)k;
    }
    return MER_OK;
}
