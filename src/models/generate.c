/* generate.c - the generation loop over a Qwen2 context: prefill the prompt (or continue from the last
 * forward), then sample, stream and decode one token at a time until max_new_tokens, a stop id, a stop
 * string, the callback, or a full KV cache ends it. Streaming goes through the tokenizer's streaming
 * decoder (never half a UTF-8 character) and holds back any tail of the text that could be the start of
 * a stop string, so a stop string is never printed. The only allocations are made once per call. */
#include "models/qwen2.h"
#include "models/tokenizer.h"

#include <math.h>
#include <string.h>
#include <time.h>

mer_generate_params mer_generate_default_params(void) {
    mer_generate_params p;
    memset(&p, 0, sizeof p);
    p.sampling = mer_sampler_default_params();
    p.max_new_tokens = 256;
    p.skip_special = 1;
    return p;
}

typedef struct gen_text {
    const mer_generate_params *p;
    mer_generate_cb cb;
    void *ud;
    mer_buf pending; /* decoded, not yet emitted */
    int stop;        /* a stop string was found, or the callback said stop */
    int cb_stop;
} gen_text;

static int emit(gen_text *g, const char *s, size_t n) {
    if (!n || !g->cb) return 0;
    if (g->cb(s, n, g->ud)) g->cb_stop = 1;
    return g->cb_stop;
}

/* Appends text; emits what cannot be part of a stop string; sets g->stop at a stop string. */
static mer_status push_text(gen_text *g, const char *s, size_t n, mer_err *err) {
    if (!n) return MER_OK;
    mer_status st = mer__buf_append(&g->pending, s, n);
    if (st) return mer__errf(err, st, "out of memory");
    const char *t = g->pending.data;
    size_t len = g->pending.len;
    /* the earliest stop string in pending (everything emitted before cannot start one) */
    size_t cut = len;
    for (size_t i = 0; i < g->p->n_stop_strings; i++) {
        const char *ss = g->p->stop_strings[i];
        size_t sl = strlen(ss);
        if (!sl || sl > len) continue;
        for (size_t o = 0; o + sl <= len && o < cut; o++)
            if (!memcmp(t + o, ss, sl)) {
                cut = o;
                break;
            }
    }
    if (cut < len) {
        emit(g, t, cut);
        g->stop = 1;
        g->pending.len = 0;
        return MER_OK;
    }
    /* hold back the longest tail that is a proper prefix of a stop string */
    size_t hold = 0;
    for (size_t i = 0; i < g->p->n_stop_strings; i++) {
        const char *ss = g->p->stop_strings[i];
        size_t sl = strlen(ss);
        for (size_t k = (sl - 1 < len ? sl - 1 : len); k > hold; k--)
            if (!memcmp(t + len - k, ss, k)) {
                hold = k;
                break;
            }
    }
    emit(g, t, len - hold);
    memmove(g->pending.data, t + len - hold, hold);
    g->pending.len = hold;
    return MER_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int is_stop_id(const mer_generate_params *p, int32_t id) {
    for (size_t i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] == id) return 1;
    return 0;
}

mer_status mer_qwen2_generate(mer_qwen2_ctx *c, const mer_tokenizer *tok, const int32_t *prompt, size_t n_prompt,
                              const mer_generate_params *p, mer_generate_cb cb, void *ud,
                              mer_generate_result *res, mer_err *err) {
    mer_generate_params defp = mer_generate_default_params();
    if (!p) p = &defp;
    if (!res) return mer__errf(err, MER_E_ARG, "mer_qwen2_generate: res is NULL");
    memset(res, 0, sizeof *res);
    if (p->max_new_tokens < 0 || p->min_new_tokens < 0)
        return mer__errf(err, MER_E_ARG, "generate: negative max_new_tokens or min_new_tokens");
    if ((p->n_stop_strings || cb) && !tok)
        return mer__errf(err, MER_E_ARG, "generate: stop strings and streaming need a tokenizer");
    for (size_t i = 0; i < p->n_stop_strings; i++)
        if (!p->stop_strings[i] || !*p->stop_strings[i])
            return mer__errf(err, MER_E_ARG, "generate: stop string %zu is empty", i);
    const mer__qwen2_hp *hp = &c->m->hp;
    mer_status st = MER_OK;
    mer_sampler *smp = NULL;
    mer_tokenizer_stream *stream = NULL;
    gen_text g = {p, cb, ud, {0}, 0, 0};
    int32_t *hist = NULL;
    float *masked = NULL;
    if (n_prompt == 0 && !c->n_logits)
        return mer__errf(err, MER_E_ARG, "generate: no prompt and no logits from a previous forward to continue from");
    size_t cap = n_prompt + (size_t)p->max_new_tokens;
    hist = malloc((cap ? cap : 1) * sizeof *hist);
    masked = malloc((size_t)hp->n_vocab * sizeof *masked);
    if (!hist || !masked) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto done;
    }
    if (n_prompt) memcpy(hist, prompt, n_prompt * sizeof *hist);
    if ((st = mer_sampler_init(&p->sampling, hp->n_vocab, &smp, err))) goto done;
    if (tok && (st = mer_tokenizer_stream_init(tok, p->skip_special, &stream, err))) goto done;
    if (n_prompt) {
        if (n_prompt > (size_t)(c->n_ctx - c->n_past)) {
            st = mer__errf(err, MER_E_RANGE, "the prompt of %zu tokens does not fit the context of %d tokens (%d used)",
                           n_prompt, c->n_ctx, c->n_past);
            goto done;
        }
        double t0 = now_s();
        if ((st = mer_qwen2_prefill(c, prompt, n_prompt, err))) goto done;
        res->prefill_seconds = now_s() - t0;
    }
    double t_gen = now_s();
    size_t n_hist = n_prompt;
    res->ids = hist + n_prompt; /* moved to its own allocation at the end */
    res->stop = MER_STOP_LENGTH;
    for (int i = 0; i < p->max_new_tokens; i++) {
        int rows;
        const float *lg = mer_qwen2_logits(c, &rows);
        lg += (size_t)(rows - 1) * (size_t)hp->n_vocab;
        if (i < p->min_new_tokens && p->n_stop_ids) {
            memcpy(masked, lg, (size_t)hp->n_vocab * sizeof *masked);
            for (size_t j = 0; j < p->n_stop_ids; j++)
                if (p->stop_ids[j] >= 0 && p->stop_ids[j] < hp->n_vocab) masked[p->stop_ids[j]] = -INFINITY;
            lg = masked;
        }
        int32_t id = mer_sampler_sample(smp, lg, hist, n_hist);
        hist[n_hist++] = id;
        res->n_ids++;
        if (is_stop_id(p, id)) {
            res->stop = MER_STOP_TOKEN;
            break;
        }
        int32_t known;
        if (stream && mer__tok_ids_with_text(tok, &id, 1, &known)) { /* an id without a token adds no text */
            const char *txt;
            size_t len;
            if ((st = mer_tokenizer_stream_push(stream, id, &txt, &len, err))) goto done;
            if ((st = push_text(&g, txt, len, err))) goto done;
            if (g.stop) {
                res->stop = MER_STOP_STRING;
                break;
            }
            if (g.cb_stop) {
                res->stop = MER_STOP_CALLBACK;
                break;
            }
        }
        if (i + 1 == p->max_new_tokens) break;
        if (c->n_past >= c->n_ctx) {
            res->stop = MER_STOP_CONTEXT;
            break;
        }
        if ((st = mer_qwen2_prefill(c, &id, 1, err))) goto done;
    }
    if (stream && !g.stop && !g.cb_stop) { /* the rest: an unfinished character and held-back text */
        const char *txt;
        size_t len;
        mer_tokenizer_stream_flush(stream, &txt, &len);
        if ((st = mer__buf_append(&g.pending, txt, len))) {
            st = mer__errf(err, st, "out of memory");
            goto done;
        }
        emit(&g, g.pending.data, g.pending.len);
    }
    res->gen_seconds = now_s() - t_gen;
done:;
    /* hand the generated ids out in their own buffer */
    int32_t *ids = NULL;
    if (res->n_ids) {
        ids = malloc(res->n_ids * sizeof *ids);
        if (ids) memcpy(ids, hist + n_prompt, res->n_ids * sizeof *ids);
        else if (!st) st = mer__errf(err, MER_E_NOMEM, "out of memory");
    }
    res->ids = ids;
    if (!ids) res->n_ids = 0;
    mer__buf_free(&g.pending);
    mer_tokenizer_stream_free(stream);
    mer_sampler_free(smp);
    free(hist);
    free(masked);
    return st;
}
