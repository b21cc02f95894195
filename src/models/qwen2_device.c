/* qwen2_device.c - a Qwen2 model whose forward runs on the CUDA device behind the unchanged public API.
 * mer_qwen2_load builds the CPU model as always (formats, dtype conversion, LoRA) and, for a device
 * model, uploads it with mer_qwen2_cuda_from_model (bf16 matrices; f32 when the caller asked for f32
 * weights; q8_0/q4_0 kept quantised). The device model holds n_seq sequences of n_ctx KV positions; each
 * mer_qwen2_ctx of the model claims one of them, and its prefill, reset and logits go there (the logits
 * rows the API promises are downloaded into the context's host buffer, so mer_qwen2_generate runs
 * unchanged); a decode step of a mer_qwen2_batch is one mer_qwen2_cuda_decode over every row (replayed
 * from a CUDA graph). The CPU copy stays: it serves mer_qwen2_embed. Calls into the device model are
 * serialised by a mutex, so contexts of one model may be used from different threads. */
#include "models/qwen2.h"
#include "models/qwen2_cuda.h"

#include <pthread.h>
#include <string.h>

#if MER_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

#define DEFAULT_N_SEQ 8
#define MAX_N_SEQ 64 /* the device model's limit (one decode graph per batch size) */

struct mer__qwen2_dev {
    mer_qwen2_cuda *cm;
    int ordinal, n_seq, n_ctx;
    mer_dtype wtype;
    unsigned char *used; /* [n_seq]: claimed by a context */
    int *rows;           /* [n_seq]: device sequences of a decode step */
    pthread_mutex_t mu;
};

mer_status mer__qwen2_dev_check(const mer_qwen2_params *p, mer_device *dev, mer_err *err) {
    mer_qwen2_params defp = mer_qwen2_default_params();
    if (!p) p = &defp;
    if (p->device != MER_DEVICE_AUTO && p->device != MER_DEVICE_CPU && p->device != MER_DEVICE_CUDA)
        return mer__errf(err, MER_E_ARG, "mer_qwen2_load: device %d is not auto, cpu or cuda", (int)p->device);
    if (p->n_seq < 0 || p->n_ctx < 0 || p->n_ctx > (1 << 24) || p->device_ordinal < 0)
        return mer__errf(err, MER_E_ARG, "mer_qwen2_load: n_seq %d, n_ctx %d or device ordinal %d out of range",
                         p->n_seq, p->n_ctx, p->device_ordinal);
    *dev = mer_device_resolve(p->device);
    if (*dev != MER_DEVICE_CUDA) return MER_OK;
    if (p->n_seq > MAX_N_SEQ)
        return mer__errf(err, MER_E_RANGE, "device cuda: %d sequences at once (n_seq, the batch size) exceed %d",
                         p->n_seq, MAX_N_SEQ);
#if MER_CUDA
    int n = mer_cuda_device_count();
    if (n == 0)
        return mer__errf(err, MER_E_DEVICE,
                         "device cuda: no CUDA device is usable on this machine (no GPU or no driver); use the cpu");
    if (p->device_ordinal >= n)
        return mer__errf(err, MER_E_DEVICE, "device cuda:%d: this machine has %d CUDA device%s", p->device_ordinal, n,
                         n == 1 ? "" : "s");
    return MER_OK;
#else
    return mer__errf(err, MER_E_UNSUPPORTED, "device cuda: mer was built without CUDA (rebuild with make CUDA=1)");
#endif
}

void mer__qwen2_dev_free(mer__qwen2_dev *d) {
    if (!d) return;
    mer_qwen2_cuda_free(d->cm);
    pthread_mutex_destroy(&d->mu);
    free(d->used);
    free(d->rows);
    free(d);
}

mer_status mer__qwen2_dev_attach(mer_qwen2 *m, const mer_qwen2_params *params, mer_err *err) {
    mer_qwen2_params defp = mer_qwen2_default_params();
    if (!params) params = &defp;
    const mer__qwen2_hp *hp = &m->hp;
    mer__qwen2_dev *d = calloc(1, sizeof *d);
    if (!d) return mer__errf(err, MER_E_NOMEM, "out of memory");
    if (pthread_mutex_init(&d->mu, NULL)) {
        free(d);
        return mer__errf(err, MER_E_INTERNAL, "mer_qwen2_load: pthread_mutex_init failed");
    }
    mer_status st = MER_OK;
    d->ordinal = params->device_ordinal;
    d->n_seq = params->n_seq ? params->n_seq : DEFAULT_N_SEQ;
    d->n_ctx = params->n_ctx ? params->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    /* the device dtype: f32 when asked for (the exact path), quantised matrices kept, else bf16 */
    mer_dtype cpu_dt = mer_dtype_from_name(m->wtype);
    if (params->wtype && !strcmp(params->wtype, "f32")) d->wtype = MER_DTYPE_F32;
    else if (cpu_dt == MER_DTYPE_Q8_0 || cpu_dt == MER_DTYPE_Q4_0) d->wtype = cpu_dt;
    else d->wtype = MER_DTYPE_BF16;
    d->used = calloc((size_t)d->n_seq, 1);
    d->rows = calloc((size_t)d->n_seq, sizeof *d->rows);
    if (!d->used || !d->rows) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    mer_qwen2_cuda_params cp = mer_qwen2_cuda_default_params();
    cp.device = d->ordinal;
    cp.n_ctx = d->n_ctx;
    cp.n_seq = d->n_seq;
    cp.wtype = d->wtype;
    if ((st = mer_qwen2_cuda_from_model(m, &cp, &d->cm, err))) goto fail;
    m->dev = d;
    return MER_OK;
fail:
    mer__qwen2_dev_free(d);
    return st;
}

void mer__qwen2_dev_info(const mer_qwen2 *m, mer_qwen2_info *info) {
    const mer__qwen2_dev *d = m->dev;
    info->device = MER_DEVICE_CUDA;
    info->device_ordinal = d->ordinal;
    info->device_wtype = mer_dtype_name(d->wtype);
    info->device_bytes = mer_qwen2_cuda_step_bytes(d->cm);
    info->n_seq = d->n_seq;
    info->n_ctx = d->n_ctx;
}

struct mer_qwen2_cuda *mer__qwen2_dev_cuda(const mer_qwen2 *m) { return m->dev ? m->dev->cm : NULL; }

float *mer__qwen2_dev_host_alloc(size_t n) {
    if (n > SIZE_MAX / sizeof(float)) return NULL;
#if MER_CUDA
    void *p = NULL;
    if (mer_cuda_host_alloc(n * sizeof(float), &p, NULL) == MER_OK) return p;
    return NULL;
#else
    return malloc(n * sizeof(float));
#endif
}

void mer__qwen2_dev_host_free(float *p) {
    if (!p) return;
#if MER_CUDA
    mer_cuda_host_free(p);
#else
    free(p);
#endif
}

// --- contexts: one device sequence each ----------------------------------------------------------------

mer_status mer__qwen2_dev_ctx_init(const mer_qwen2 *m, const mer_qwen2_ctx_params *params, mer_qwen2_ctx **out,
                                   mer_err *err) {
    mer__qwen2_dev *d = m->dev;
    mer_qwen2_ctx_params defp = mer_qwen2_ctx_default_params();
    if (!params) params = &defp;
    if (params->n_ctx < 0 || params->n_batch < 0 || params->n_threads < 0)
        return mer__errf(err, MER_E_ARG, "mer_qwen2_ctx_init: negative n_ctx, n_batch or n_threads");
    if (params->n_batch > (1 << 16))
        return mer__errf(err, MER_E_RANGE, "mer_qwen2_ctx_init: n_batch %d too large", params->n_batch);
    mer_status st = MER_OK;
    mer_qwen2_ctx *c = calloc(1, sizeof *c);
    if (!c) return mer__errf(err, MER_E_NOMEM, "out of memory");
    c->m = m;
    c->dev_slot = -1;
    c->n_ctx = params->n_ctx && params->n_ctx < d->n_ctx ? params->n_ctx : d->n_ctx;
    c->n_batch = params->n_batch ? params->n_batch : 256;
    if (c->n_batch > c->n_ctx) c->n_batch = c->n_ctx;
    c->logits_all = params->logits_all != 0;
    size_t rows = c->logits_all ? (size_t)c->n_batch : 1;
    if (!(c->logits = mer__qwen2_dev_host_alloc(rows * (size_t)m->hp.n_vocab))) { /* pinned: downloads */
        st = mer__errf(err, MER_E_NOMEM, "out of host memory for %zu rows of logits", rows);
        goto fail;
    }
    pthread_mutex_lock(&d->mu);
    for (int s = 0; s < d->n_seq; s++)
        if (!d->used[s]) {
            c->dev_slot = s;
            break;
        }
    if (c->dev_slot >= 0 && !(st = mer_qwen2_cuda_reset(d->cm, c->dev_slot, err))) d->used[c->dev_slot] = 1;
    pthread_mutex_unlock(&d->mu);
    if (st) {
        c->dev_slot = -1;
        goto fail;
    }
    if (c->dev_slot < 0) {
        st = mer__errf(err, MER_E_RANGE,
                       "mer_qwen2_ctx_init: the device model's %d sequences are all in use (mer_qwen2_params.n_seq)",
                       d->n_seq);
        goto fail;
    }
    *out = c;
    return MER_OK;
fail:
    mer_qwen2_ctx_free(c);
    return st;
}

void mer__qwen2_dev_ctx_release(mer_qwen2_ctx *c) {
    mer__qwen2_dev *d = c->m->dev;
    mer__qwen2_dev_host_free(c->logits);
    c->logits = NULL;
    if (c->dev_slot < 0) return;
    pthread_mutex_lock(&d->mu);
    d->used[c->dev_slot] = 0;
    pthread_mutex_unlock(&d->mu);
    c->dev_slot = -1;
}

void mer__qwen2_dev_reset(mer_qwen2_ctx *c) {
    mer__qwen2_dev *d = c->m->dev;
    pthread_mutex_lock(&d->mu);
    mer_qwen2_cuda_reset(d->cm, c->dev_slot, NULL); /* fails only for a bad slot, which a context never has */
    pthread_mutex_unlock(&d->mu);
}

mer_status mer__qwen2_dev_prefill(mer_qwen2_ctx *c, const int32_t *ids, const float *embd, size_t n, mer_err *err) {
    mer__qwen2_dev *d = c->m->dev;
    const size_t E = (size_t)c->m->hp.n_embd;
    const int s = c->dev_slot;
    mer_status st = MER_OK;
    int rows = 1;
    c->n_logits = 0;
    pthread_mutex_lock(&d->mu);
    if (!c->logits_all) {
        /* one call (the device chunks it); the last position's logits. A single token is a decode step:
         * the graph-captured path. */
        if (ids && n == 1) st = mer_qwen2_cuda_decode(d->cm, 1, &s, ids, c->logits, NULL, err);
        else if (ids) st = mer_qwen2_cuda_prefill(d->cm, s, ids, (int)n, c->logits, 0, NULL, err);
        else st = mer_qwen2_cuda_prefill_embd(d->cm, s, embd, (int)n, c->logits, 0, NULL, err);
    } else {
        /* chunks of n_batch, as on the CPU: the last chunk's rows */
        for (size_t off = 0; off < n && !st;) {
            int k = (int)(n - off < (size_t)c->n_batch ? n - off : (size_t)c->n_batch);
            st = ids ? mer_qwen2_cuda_prefill(d->cm, s, ids + off, k, c->logits, 1, NULL, err)
                     : mer_qwen2_cuda_prefill_embd(d->cm, s, embd + off * E, k, c->logits, 1, NULL, err);
            rows = k;
            off += (size_t)k;
        }
    }
    c->n_past = mer_qwen2_cuda_n_past(d->cm, s);
    pthread_mutex_unlock(&d->mu);
    if (!st) c->n_logits = rows;
    return st;
}

mer_status mer__qwen2_dev_decode(mer_qwen2_ctx *const *ctx, const int32_t *ids, int n, float *scratch, mer_err *err) {
    const mer_qwen2 *m = ctx[0]->m;
    mer__qwen2_dev *d = m->dev;
    const size_t V = (size_t)m->hp.n_vocab;
    if (n > d->n_seq) return mer__errf(err, MER_E_INTERNAL, "device decode of %d rows over %d sequences", n, d->n_seq);
    pthread_mutex_lock(&d->mu);
    for (int r = 0; r < n; r++) {
        ctx[r]->n_logits = 0;
        d->rows[r] = ctx[r]->dev_slot;
    }
    mer_status st = mer_qwen2_cuda_decode(d->cm, n, d->rows, ids, scratch, NULL, err);
    for (int r = 0; r < n; r++) {
        mer_qwen2_ctx *c = ctx[r];
        c->n_past = mer_qwen2_cuda_n_past(d->cm, c->dev_slot);
        if (st) continue;
        memcpy(c->logits, scratch + (size_t)r * V, V * sizeof(float));
        c->n_logits = 1;
    }
    pthread_mutex_unlock(&d->mu);
    return st;
}
