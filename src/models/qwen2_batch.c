/* qwen2_batch.c - batched decoding for the Qwen2 decoder: B slots, each a mer_qwen2_ctx with its own KV
 * cache, on one shared thread pool. A decode step stacks one token of each running slot into the rows
 * of one activation block, so every projection, the MLP and lm_head are one mer_cpu_matmul over n rows
 * (decode is memory-bound: the weights stream once for all of them); the new keys and values go to a
 * staging block, get RoPE at each row's own position, and are copied into each slot's cache; attention
 * runs per slot against its cache (on a device model the step is one mer_qwen2_cuda_decode over the
 * rows). Then mer_qwen2_generate_batch: continuous batching with per-request samplers, so that a
 * request's output is the one mer_qwen2_generate gives for it alone; the slots of a step are sampled in
 * parallel on the batch's pool (each draw is independent; on a GPU the CPU's sampling of 152k-entry
 * logits would otherwise cost more than the device step). */
#include "models/qwen2.h"

#include <math.h>
#include <string.h>

#define MAX_SLOTS 256

struct mer_qwen2_batch {
    const mer_qwen2 *m;
    int n_slots;
    mer_threadpool *pool;
    mer_cpu_ctx *cpu;
    mer_qwen2_ctx **slot;
    mer_arena arena; /* step buffers for n_slots rows */
    float *x, *xn, *q, *k, *v, *att, *ff_a, *ff_b, *lo_t, *lo_y, *logits;
    int32_t *pos;
    float *dev_logits; /* device model: [n_slots][V] pinned, the logits of a device step */
};

static size_t up64(size_t n) { return (n + MER_ALIGN - 1) / MER_ALIGN * MER_ALIGN; }

void mer_qwen2_batch_free(mer_qwen2_batch *b) {
    if (!b) return;
    if (b->slot)
        for (int i = 0; i < b->n_slots; i++) mer_qwen2_ctx_free(b->slot[i]);
    free(b->slot);
    mer_arena_free(&b->arena);
    mer__qwen2_dev_host_free(b->dev_logits);
    mer_cpu_ctx_free(b->cpu);
    mer_threadpool_free(b->pool);
    free(b);
}

mer_status mer_qwen2_batch_init(const mer_qwen2 *m, int n_slots, const mer_qwen2_ctx_params *params,
                                mer_qwen2_batch **out, mer_err *err) {
    if (!out) return mer__errf(err, MER_E_ARG, "mer_qwen2_batch_init: out is NULL");
    *out = NULL;
    if (!m) return mer__errf(err, MER_E_ARG, "mer_qwen2_batch_init: model is NULL");
    if (n_slots < 1 || n_slots > MAX_SLOTS)
        return mer__errf(err, MER_E_ARG, "mer_qwen2_batch_init: %d slots (1..%d)", n_slots, MAX_SLOTS);
    mer_qwen2_ctx_params defp = mer_qwen2_ctx_default_params();
    if (!params) params = &defp;
    if (params->n_threads < 0) return mer__errf(err, MER_E_ARG, "mer_qwen2_batch_init: negative n_threads");
    mer_status st = MER_OK;
    mer_qwen2_batch *b = calloc(1, sizeof *b);
    if (!b) return mer__errf(err, MER_E_NOMEM, "out of memory");
    b->m = m;
    b->n_slots = n_slots;
    /* the pool runs the CPU forward and the per-slot sampling (on a device model: only the sampling) */
    if ((st = mer_threadpool_init(m->dev && params->n_threads == 0 ? (n_slots < 16 ? n_slots : 16) : params->n_threads,
                                  &b->pool, err)) ||
        (!m->dev && (st = mer_cpu_ctx_init(b->pool, MER_ISA_AUTO, &b->cpu, err))))
        goto fail;
    if (!(b->slot = calloc((size_t)n_slots, sizeof *b->slot))) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n_slots; i++) /* on a device model: a device sequence each */
        if ((st = m->dev ? mer_qwen2_ctx_init(m, params, &b->slot[i], err)
                         : mer__qwen2_ctx_init_on(m, params, b->cpu, &b->slot[i], err)))
            goto fail;
    const mer__qwen2_hp *hp = &m->hp;
    size_t B = (size_t)n_slots, E = (size_t)hp->n_embd, Q = (size_t)hp->n_head * (size_t)hp->head_dim;
    size_t KV = (size_t)hp->n_kv_head * (size_t)hp->head_dim, F = (size_t)hp->n_ff, V = (size_t)hp->n_vocab;
    size_t r = m->lora ? (size_t)m->lora->r_max : 0, EQ = E > Q ? E : Q, lo_out = m->lora ? (EQ > F ? EQ : F) : 0;
    if (m->dev) { /* the step runs on the device: only its logits come back (pinned, for the transfer) */
        if (!(b->dev_logits = mer__qwen2_dev_host_alloc(B * V))) {
            st = mer__errf(err, MER_E_NOMEM, "out of host memory for %zu rows of logits", B);
            goto fail;
        }
        *out = b;
        return MER_OK;
    }
    size_t sizes[] = {B * E, B * EQ, B * Q, B * KV, B * KV, B * Q, B * F, B * F, B * r, B * lo_out, B * V, B};
    float **bufs[] = {&b->x, &b->xn, &b->q, &b->k, &b->v, &b->att, &b->ff_a, &b->ff_b, &b->lo_t, &b->lo_y, &b->logits,
                      (float **)&b->pos};
    size_t total = 0;
    for (size_t i = 0; i < MER_ARRAY_LEN(sizes); i++) {
        if (!sizes[i]) sizes[i] = 1;
        total += up64(sizes[i] * 4);
    }
    if ((st = mer_arena_init(&b->arena, total, err))) goto fail;
    for (size_t i = 0; i < MER_ARRAY_LEN(bufs); i++)
        if (!(*bufs[i] = mer_arena_alloc(&b->arena, sizes[i] * 4, err))) {
            st = MER_E_NOMEM;
            goto fail;
        }
    *out = b;
    return MER_OK;
fail:
    mer_qwen2_batch_free(b);
    return st;
}

int mer_qwen2_batch_n_slots(const mer_qwen2_batch *b) { return b->n_slots; }

mer_qwen2_ctx *mer_qwen2_batch_slot(mer_qwen2_batch *b, int i) {
    return i >= 0 && i < b->n_slots ? b->slot[i] : NULL;
}

mer_status mer_qwen2_batch_decode(mer_qwen2_batch *b, const int *slots, const int32_t *ids, int n, mer_err *err) {
    const mer_qwen2 *m = b->m;
    const mer__qwen2_hp *hp = &m->hp;
    if (n < 1 || n > b->n_slots) return mer__errf(err, MER_E_ARG, "batch decode of %d rows (1..%d)", n, b->n_slots);
    for (int r = 0; r < n; r++) {
        if (slots[r] < 0 || slots[r] >= b->n_slots)
            return mer__errf(err, MER_E_ARG, "batch decode: row %d names slot %d of %d", r, slots[r], b->n_slots);
        for (int s = 0; s < r; s++)
            if (slots[s] == slots[r])
                return mer__errf(err, MER_E_ARG, "batch decode: slot %d in rows %d and %d", slots[r], s, r);
        if (ids[r] < 0 || ids[r] >= hp->n_vocab)
            return mer__errf(err, MER_E_RANGE, "batch decode: token id %d at row %d is outside [0, %d)", ids[r], r,
                             hp->n_vocab);
        const mer_qwen2_ctx *c = b->slot[slots[r]];
        if (c->n_past >= c->n_ctx)
            return mer__errf(err, MER_E_RANGE, "batch decode: slot %d is full (%d tokens)", slots[r], c->n_ctx);
    }
    if (m->dev) { /* one device step over every row */
        mer_qwen2_ctx *rc[MAX_SLOTS];
        for (int r = 0; r < n; r++) rc[r] = b->slot[slots[r]];
        return mer__qwen2_dev_decode(rc, ids, n, b->dev_logits, err);
    }
    const int E = hp->n_embd, d = hp->head_dim, H = hp->n_head, KVH = hp->n_kv_head;
    const size_t kvd = (size_t)KVH * (size_t)d, Qd = (size_t)H * (size_t)d;
    const float scale = 1.0f / sqrtf((float)d);
    mer_cpu_ctx *cpu = b->cpu;
    for (int r = 0; r < n; r++) b->pos[r] = b->slot[slots[r]]->n_past;
    mer_cpu_embed(cpu, b->x, m->tok_embd.data, m->tok_embd.dt, hp->n_vocab, E, ids, n);
    for (int l = 0; l < hp->n_layer; l++) {
        const mer__qwen2_layer *ly = &m->layers[l];
        mer_cpu_rmsnorm(cpu, b->xn, b->x, n, E, ly->attn_norm, hp->rms_eps);
        mer__qwen2_proj(cpu, m, ly, MER__Q, b->q, Qd, b->xn, ly->bq, n, b->lo_t, b->lo_y);
        mer__qwen2_proj(cpu, m, ly, MER__K, b->k, kvd, b->xn, ly->bk, n, b->lo_t, b->lo_y);
        mer__qwen2_proj(cpu, m, ly, MER__V, b->v, kvd, b->xn, ly->bv, n, b->lo_t, b->lo_y);
        mer_cpu_rope_neox(cpu, b->q, n, H, d, Qd, b->pos, hp->rope_theta, d);
        mer_cpu_rope_neox(cpu, b->k, n, KVH, d, kvd, b->pos, hp->rope_theta, d);
        for (int r = 0; r < n; r++) {
            mer_qwen2_ctx *c = b->slot[slots[r]];
            float *kc = c->kv + (size_t)l * 2 * (size_t)c->n_ctx * kvd, *vc = kc + (size_t)c->n_ctx * kvd;
            memcpy(kc + (size_t)b->pos[r] * kvd, b->k + (size_t)r * kvd, kvd * sizeof(float));
            memcpy(vc + (size_t)b->pos[r] * kvd, b->v + (size_t)r * kvd, kvd * sizeof(float));
            mer_cpu_attention(cpu, b->att + (size_t)r * Qd, b->q + (size_t)r * Qd, kc, vc, 1, H, KVH, d, b->pos[r] + 1,
                              b->pos[r], 1, scale);
        }
        mer__qwen2_proj(cpu, m, ly, MER__O, b->xn, (size_t)E, b->att, NULL, n, b->lo_t, b->lo_y);
        mer_cpu_add(cpu, b->x, b->x, b->xn, (size_t)n * (size_t)E);
        mer_cpu_rmsnorm(cpu, b->xn, b->x, n, E, ly->ffn_norm, hp->rms_eps);
        mer__qwen2_proj(cpu, m, ly, MER__GATE, b->ff_a, (size_t)hp->n_ff, b->xn, NULL, n, b->lo_t, b->lo_y);
        mer__qwen2_proj(cpu, m, ly, MER__UP, b->ff_b, (size_t)hp->n_ff, b->xn, NULL, n, b->lo_t, b->lo_y);
        mer_cpu_silu_mul(cpu, b->ff_a, b->ff_a, b->ff_b, (size_t)n * (size_t)hp->n_ff);
        mer__qwen2_proj(cpu, m, ly, MER__DOWN, b->xn, (size_t)E, b->ff_a, NULL, n, b->lo_t, b->lo_y);
        mer_cpu_add(cpu, b->x, b->x, b->xn, (size_t)n * (size_t)E);
    }
    mer_cpu_rmsnorm(cpu, b->xn, b->x, n, E, m->out_norm, hp->rms_eps);
    mer_cpu_matmul(cpu, b->logits, (size_t)hp->n_vocab, b->xn, (size_t)E, m->lm_head.data, m->lm_head.dt, NULL, n, E,
                   hp->n_vocab);
    for (int r = 0; r < n; r++) {
        mer_qwen2_ctx *c = b->slot[slots[r]];
        memcpy(c->logits, b->logits + (size_t)r * (size_t)hp->n_vocab, (size_t)hp->n_vocab * sizeof(float));
        c->n_logits = 1;
        c->n_past++;
    }
    return MER_OK;
}

// --- continuous batching -----------------------------------------------------------------------------

typedef struct gen_slot {
    int busy;
    size_t index;
    mer_generate_params p;
    mer_sampler *smp;
    int32_t *hist; /* prompt + output */
    size_t n_prompt, n_hist;
    int n_gen;
} gen_slot;

static void slot_clear(gen_slot *g) {
    mer_sampler_free(g->smp);
    free(g->hist);
    memset(g, 0, sizeof *g);
}

static int is_stop_id(const mer_generate_params *p, int32_t id) {
    for (size_t j = 0; j < p->n_stop_ids; j++)
        if (p->stop_ids[j] == id) return 1;
    return 0;
}

/* Starts request req in slot s (prefill). A request error is reported to done (the slot stays free);
 * the return is fatal only. */
static mer_status start(mer_qwen2_batch *b, int s, gen_slot *g, const mer_batch_request *req, mer_batch_done_fn done,
                        void *ud, mer_err *err) {
    mer_qwen2_ctx *c = b->slot[s];
    mer_err e = {0};
    mer_status st = MER_OK;
    mer_generate_result res = {0};
    mer_qwen2_ctx_reset(c);
    g->index = req->index;
    g->p = req->params;
    /* the prompt: token ids, or input embeddings (then the history is the output alone) */
    const int by_embd = req->embd != NULL;
    const size_t n_in = by_embd ? req->n_embd_rows : req->n_ids, n_hist0 = by_embd ? 0 : req->n_ids;
    if (g->p.n_stop_strings)
        st = mer__errf(&e, MER_E_UNSUPPORTED, "batched generation: stop strings are not supported");
    else if (by_embd && (req->ids || req->n_ids))
        st = mer__errf(&e, MER_E_ARG, "batched generation: a request gives both token ids and embeddings");
    else if (n_in == 0) st = mer__errf(&e, MER_E_ARG, "batched generation: empty prompt");
    else if (g->p.max_new_tokens < 0) st = mer__errf(&e, MER_E_ARG, "batched generation: negative max_new_tokens");
    else if (n_in > (size_t)c->n_ctx)
        st = mer__errf(&e, MER_E_RANGE, "the prompt of %zu tokens does not fit the context of %d tokens (0 used)",
                       n_in, c->n_ctx);
    if (!st) {
        size_t cap = n_hist0 + (size_t)g->p.max_new_tokens;
        if (!(g->hist = malloc((cap ? cap : 1) * sizeof *g->hist))) return mer__errf(err, MER_E_NOMEM, "out of memory");
        if (n_hist0) memcpy(g->hist, req->ids, n_hist0 * sizeof *g->hist);
        g->n_prompt = g->n_hist = n_hist0;
        if (!(st = mer_sampler_init(&g->p.sampling, b->m->hp.n_vocab, &g->smp, &e)))
            st = by_embd ? mer_qwen2_prefill_embd(c, req->embd, n_in, &e) : mer_qwen2_prefill(c, req->ids, n_in, &e);
    }
    if (st == MER_E_NOMEM) {
        if (err) *err = e;
        slot_clear(g);
        return st;
    }
    if (st || g->p.max_new_tokens == 0) {
        size_t idx = g->index;
        slot_clear(g);
        if (!st) res.stop = MER_STOP_LENGTH;
        return done(ud, idx, st, &res, st ? e.msg : NULL, err);
    }
    g->busy = 1;
    return MER_OK;
}

/* Reports slot g as finished with reason stop and frees it. */
static mer_status finish(gen_slot *g, mer_stop_reason stop, mer_batch_done_fn done, void *ud, mer_err *err) {
    mer_generate_result res = {0};
    res.ids = g->hist + g->n_prompt;
    res.n_ids = g->n_hist - g->n_prompt;
    res.stop = stop;
    size_t idx = g->index;
    mer_status st = done(ud, idx, MER_OK, &res, NULL, err);
    slot_clear(g);
    return st;
}

/* The sampling of one step: every running slot draws its next token from its own logits with its own
 * sampler (independent, so the slots are drawn in parallel; each result is the one drawn alone). */
typedef struct sample_task {
    mer_qwen2_batch *b;
    gen_slot *g;
    const int *act; /* running slots */
    int32_t *next;  /* [slot] the drawn id */
} sample_task;

static void sample_part(void *ctx, int part, int n_parts) {
    (void)n_parts;
    sample_task *t = ctx;
    const int s = t->act[part], V = t->b->m->hp.n_vocab;
    gen_slot *q = &t->g[s];
    mer_qwen2_ctx *c = t->b->slot[s];
    float *lg = c->logits + (size_t)(c->n_logits - 1) * (size_t)V;
    if (q->n_gen < q->p.min_new_tokens && q->p.n_stop_ids) /* in place: the slot's logits are spent here */
        for (size_t j = 0; j < q->p.n_stop_ids; j++)
            if (q->p.stop_ids[j] >= 0 && q->p.stop_ids[j] < V) lg[q->p.stop_ids[j]] = -INFINITY;
    t->next[s] = mer_sampler_sample(q->smp, lg, q->hist, q->n_hist);
}

mer_status mer_qwen2_generate_batch(mer_qwen2_batch *b, mer_batch_next_fn next, mer_batch_done_fn done, void *ud,
                                    mer_err *err) {
    const int B = b->n_slots;
    mer_status st = MER_OK;
    gen_slot *g = calloc((size_t)B, sizeof *g);
    int *rows = malloc((size_t)B * sizeof *rows), *act = malloc((size_t)B * sizeof *act);
    int32_t *ids = malloc((size_t)B * sizeof *ids), *drawn = malloc((size_t)B * sizeof *drawn);
    if (!g || !rows || !act || !ids || !drawn) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto done_;
    }
    int more = 1;
    for (;;) {
        /* refill free slots */
        for (int s = 0; s < B && more; s++) {
            while (!g[s].busy && more) {
                mer_batch_request req;
                memset(&req, 0, sizeof req);
                req.params = mer_generate_default_params();
                if (!(more = next(ud, &req) == 1)) break;
                if ((st = start(b, s, &g[s], &req, done, ud, err))) goto done_;
            }
        }
        /* sample the next token of every running slot from its logits (in parallel), then in slot order
         * record it and finish the slots that end */
        int n = 0, n_act = 0;
        for (int s = 0; s < B; s++)
            if (g[s].busy) act[n_act++] = s;
        if (n_act) {
            sample_task t = {b, g, act, drawn};
            mer_threadpool_run_parts(n_act > 1 ? b->pool : NULL, n_act, sample_part, &t);
        }
        for (int k = 0; k < n_act; k++) {
            const int s = act[k];
            gen_slot *q = &g[s];
            mer_qwen2_ctx *c = b->slot[s];
            int32_t id = drawn[s];
            q->hist[q->n_hist++] = id;
            q->n_gen++;
            mer_stop_reason why = MER_STOP_LENGTH;
            int end = 1;
            if (is_stop_id(&q->p, id)) why = MER_STOP_TOKEN;
            else if (q->n_gen >= q->p.max_new_tokens) why = MER_STOP_LENGTH;
            else if (c->n_past >= c->n_ctx) why = MER_STOP_CONTEXT;
            else end = 0;
            if (end) {
                if ((st = finish(q, why, done, ud, err))) goto done_;
                continue;
            }
            rows[n] = s;
            ids[n++] = id;
        }
        if (n == 0) {
            if (!more) break;
            continue;
        }
        if ((st = mer_qwen2_batch_decode(b, rows, ids, n, err))) goto done_;
    }
done_:
    if (g)
        for (int s = 0; s < B; s++) slot_clear(&g[s]);
    free(g);
    free(rows);
    free(act);
    free(ids);
    free(drawn);
    return st;
}
