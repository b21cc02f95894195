/* extract.c - `mer extract`: descriptions -> open-vocabulary label lists with Qwen2.5, exactly as
 * T23/ovlabel_extraction.py does (spec §2): the expert prompt, Qwen2.5's chat template with its default
 * system prompt, sampling T=0.7 top_p=0.8 repetition 1.05 up to 512 tokens, and func_postprocess_qwen.
 * Runs on the resumable job runner; the final submission npz is written from the store. With batch > 1
 * the samples are decoded together (mer_qwen2_generate_batch: continuous batching, each sample with its
 * own seeded sampler, so the outputs are those of batch 1) and each is committed when it finishes. On a
 * CUDA device (params->device) the model holds one device sequence per slot and each step of the batch is
 * one device decode. */
#include "pipeline/agpt.h"
#include "pipeline/job.h"
#include "pipeline/prompt.h"
#include "models/tokenizer.h"

#include <string.h>
#include <time.h>

/* Context of each sample: the longest descriptions make prompts of ~700 tokens, well past the tiny
 * fixtures' trained context (512), which the CPU and HF ignore as well (RoPE has no limit). */
#define EXTRACT_N_CTX 4096

mer_extract_params mer_extract_default_params(void) {
    mer_extract_params p = {0};
    p.column = "reason";
    p.temperature = 0.7;
    p.top_p = 0.8;
    p.repeat_penalty = 1.05;
    p.top_k = 0;
    p.max_new_tokens = 512;
    p.progress = 1;
    p.batch = 8;
    return p;
}

typedef struct extract_ctx {
    const mer_extract_params *p;
    const mer_label_table *in;
    mer_qwen2_ctx *ctx;      /* batch <= 1 */
    mer_qwen2_batch *batch;  /* batch > 1 */
    const mer_tokenizer *tok;
    int32_t stop_ids[2];
    size_t n_stop;
} extract_ctx;

/* The chat-framed expert prompt of sample i as token ids (caller frees *ids). */
static mer_status prompt_ids(extract_ctx *x, size_t i, int32_t **ids, size_t *n_ids, mer_err *err) {
    mer_buf prompt = {0};
    char *chat = NULL;
    mer_status st;
    *ids = NULL;
    *n_ids = 0;
    if ((st = mer__ovlabel_prompt(&prompt, x->in->rows[i].labels))) goto done;
    mer_chat_msg msg = {"user", prompt.data};
    if ((st = mer_chat_render(&msg, 1, 1, &chat, NULL, err))) goto done;
    st = mer_tokenizer_encode(x->tok, chat, strlen(chat), ids, n_ids, err);
done:
    free(chat);
    mer__buf_free(&prompt);
    return st;
}

/* The reference's sampling for sample i (seed + i). */
static mer_generate_params gen_params(const extract_ctx *x, size_t i) {
    mer_generate_params gp = mer_generate_default_params();
    gp.sampling.temperature = x->p->temperature;
    gp.sampling.top_p = x->p->top_p;
    gp.sampling.top_k = x->p->top_k;
    gp.sampling.repeat_penalty = x->p->repeat_penalty;
    gp.sampling.seed = x->p->seed + i;
    gp.max_new_tokens = x->p->max_new_tokens;
    gp.stop_ids = x->stop_ids;
    gp.n_stop_ids = x->n_stop;
    return gp;
}

/* The generated ids -> the cleaned label text appended to out. */
static mer_status answer(extract_ctx *x, const mer_generate_result *res, mer_buf *out, mer_err *err) {
    mer_buf clean = {0};
    char *text = NULL;
    size_t tlen = 0, n_text = res->n_ids;
    mer_status st;
    if (n_text && res->stop == MER_STOP_TOKEN) n_text--; /* the stop token is not part of the text */
    int32_t *known = malloc((n_text ? n_text : 1) * sizeof *known);
    if (!known) return mer__errf(err, MER_E_NOMEM, "out of memory");
    n_text = mer__tok_ids_with_text(x->tok, res->ids, n_text, known);
    st = mer_tokenizer_decode(x->tok, known, n_text, 1, &text, &tlen, err);
    free(known);
    if (st) goto done;
    if ((st = mer__ovlabel_postprocess(text, &clean))) goto done;
    st = mer__buf_append(out, clean.data ? clean.data : "", clean.len);
done:
    free(text);
    mer__buf_free(&clean);
    return st;
}

static mer_status one(void *ud, size_t i, const char *name, mer_buf *out, mer_err *err) {
    extract_ctx *x = ud;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    mer_generate_result res = {0};
    mer_status st;
    if ((st = prompt_ids(x, i, &ids, &n_ids, err))) goto done;
    mer_generate_params gp = gen_params(x, i);
    mer_qwen2_ctx_reset(x->ctx);
    if ((st = mer_qwen2_generate(x->ctx, x->tok, ids, n_ids, &gp, NULL, NULL, &res, err))) goto done;
    st = answer(x, &res, out, err);
done:
    if (st && !err->msg[0]) mer__errf(err, st, "%s: %s", name, mer_status_str(st));
    free(res.ids);
    free(ids);
    return st;
}

// --- batched ---------------------------------------------------------------------------------------

typedef struct batch_run {
    extract_ctx *x;
    const size_t *todo;
    size_t n_todo, k;
    mer_job_commit_fn commit;
    void *cctx;
    int32_t *ids;    /* the prompt handed out last (the generator copies it) */
    double *t_start; /* per sample */
    mer_status fatal;
    mer_err fatal_err;
} batch_run;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int next_prompt(void *ud, mer_batch_request *req) {
    batch_run *b = ud;
    free(b->ids);
    b->ids = NULL;
    while (b->k < b->n_todo && !b->fatal) {
        size_t i = b->todo[b->k++], n_ids = 0;
        mer_err e = {0};
        b->t_start[i] = now_s();
        mer_status st = prompt_ids(b->x, i, &b->ids, &n_ids, &e);
        if (!st) {
            req->index = i;
            req->ids = b->ids;
            req->n_ids = n_ids;
            req->params = gen_params(b->x, i);
            return 1;
        }
        if (!e.msg[0]) mer__errf(&e, st, "%s: %s", b->x->in->rows[i].name, mer_status_str(st));
        b->fatal = b->commit(b->cctx, i, st, NULL, e.msg, now_s() - b->t_start[i], &b->fatal_err);
    }
    return 0;
}

static mer_status sample_done(void *ud, size_t i, mer_status st, const mer_generate_result *res, const char *msg,
                              mer_err *err) {
    batch_run *b = ud;
    mer_buf out = {0};
    mer_err e = {0};
    if (st) snprintf(e.msg, sizeof e.msg, "%s: %s", b->x->in->rows[i].name, msg && msg[0] ? msg : mer_status_str(st));
    else if ((st = answer(b->x, res, &out, &e)) && !e.msg[0])
        mer__errf(&e, st, "%s: %s", b->x->in->rows[i].name, mer_status_str(st));
    const char *text = st ? NULL : (out.data ? out.data : "");
    mer_status r = b->commit(b->cctx, i, st, text, e.msg, now_s() - b->t_start[i], err);
    mer__buf_free(&out);
    return r;
}

static mer_status run_batched(void *ud, const size_t *todo, size_t n_todo, mer_job_commit_fn commit, void *cctx,
                              mer_err *err) {
    extract_ctx *x = ud;
    batch_run b = {x, todo, n_todo, 0, commit, cctx, NULL, NULL, MER_OK, {0}};
    if (!(b.t_start = calloc(x->in->n ? x->in->n : 1, sizeof *b.t_start)))
        return mer__errf(err, MER_E_NOMEM, "out of memory");
    mer_status st = mer_qwen2_generate_batch(x->batch, next_prompt, sample_done, &b, err);
    if (!st && b.fatal) {
        st = b.fatal;
        if (err) *err = b.fatal_err;
    }
    free(b.ids);
    free(b.t_start);
    return st;
}

mer_status mer_extract_run(const mer_extract_params *p, const char *in_path, const char *out_npz,
                           mer_job_summary *summary, mer_err *err) {
    memset(summary, 0, sizeof *summary);
    mer_label_table in = {0};
    mer_qwen2 *m = NULL;
    mer_qwen2_ctx *ctx = NULL;
    mer_qwen2_batch *batch = NULL;
    mer_tokenizer *tok = NULL;
    char *tok_path = NULL, *db = NULL, *config = NULL;
    const char **names = NULL;
    mer_status st;
    if (!p->llm) return mer__errf(err, MER_E_ARG, "mer extract: no model given");
    if ((st = mer_label_table_read(in_path, p->column ? p->column : "reason", &in, err))) return st;
    tok_path = p->tokenizer ? strdup(p->tokenizer) : mer__llm_tokenizer_path(p->llm);
    size_t dl = strlen(out_npz) + 4;
    db = malloc(dl);
    names = calloc(in.n ? in.n : 1, sizeof *names);
    if (!tok_path || !db || !names) { st = mer__errf(err, MER_E_NOMEM, "out of memory"); goto done; }
    snprintf(db, dl, "%s.db", out_npz);
    for (size_t i = 0; i < in.n; i++) names[i] = in.rows[i].name;
    if ((st = mer_tokenizer_load(tok_path, NULL, &tok, err))) goto done;
    int n_slots = p->batch < (int)in.n ? p->batch : (int)in.n;
    mer_qwen2_params qp = mer_qwen2_default_params();
    qp.wtype = p->wtype;
    qp.n_threads = p->n_threads;
    qp.device = p->device;
    qp.n_seq = n_slots > 1 ? n_slots : 1; /* on a device: one sequence per slot */
    qp.n_ctx = EXTRACT_N_CTX;              /* on a device the model holds the contexts */
    if ((st = mer_qwen2_load(p->llm, &qp, &m, err))) goto done;
    mer_qwen2_info info;
    mer_qwen2_get_info(m, &info);
    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_threads = p->n_threads;
    cp.n_ctx = EXTRACT_N_CTX;
    if (n_slots > 1) {
        if ((st = mer_qwen2_batch_init(m, n_slots, &cp, &batch, err))) goto done;
    } else if ((st = mer_qwen2_ctx_init(m, &cp, &ctx, err))) {
        goto done;
    }
    extract_ctx x = {p, &in, ctx, batch, tok, {0, 0}, 0};
    const char *stops[] = {"<|im_end|>", "<|endoftext|>"};
    for (size_t k = 0; k < 2; k++) {
        int32_t id = mer_tokenizer_token_id(tok, stops[k], strlen(stops[k]));
        if (id >= 0) x.stop_ids[x.n_stop++] = id;
    }
    /* everything that changes the output is part of the run's identity */
    size_t cl = strlen(p->llm) + strlen(tok_path) + 576;
    const int gpu = info.device == MER_DEVICE_CUDA; /* the device and its dtype change the output */
    if (!(config = malloc(cl))) { st = mer__errf(err, MER_E_NOMEM, "out of memory"); goto done; }
    snprintf(config, cl,
             "{\"job\":\"extract\",\"llm\":\"%s\",\"tokenizer\":\"%s\",\"wtype\":\"%s\",\"temperature\":%.17g,"
             "\"top_p\":%.17g,\"top_k\":%d,\"repeat_penalty\":%.17g,\"max_new_tokens\":%d,\"seed\":%llu%s%s%s}",
             p->llm, tok_path, p->wtype ? p->wtype : "", p->temperature, p->top_p, p->top_k, p->repeat_penalty,
             p->max_new_tokens, (unsigned long long)p->seed, gpu ? ",\"device\":\"cuda/" : "",
             gpu ? info.device_wtype : "", gpu ? "\"" : "");
    mer_job_params jp = {db, config, "extract", p->progress, p->retry_failed};
    mer_job_stats js;
    st = batch ? mer__job_run_batched(&jp, names, in.n, run_batched, &x, &js, err)
               : mer__job_run(&jp, names, in.n, one, &x, &js, err);
    summary->n_total = js.n_total;
    summary->n_skipped = js.n_skipped;
    summary->n_ok = js.n_ok;
    summary->n_failed = js.n_failed;
    summary->seconds = js.seconds;
    if (st) goto done;
    /* the submission: successful rows as filenames/fileitems, plus CSV/JSONL of every row */
    st = mer__job_write_outputs(db, config, out_npz, 1, names, in.n, err);
done:
    free(config);
    free(names);
    free(db);
    free(tok_path);
    mer_qwen2_ctx_free(ctx);
    mer_qwen2_batch_free(batch);
    mer_qwen2_free(m);
    mer_tokenizer_free(tok);
    mer_label_table_free(&in);
    return st;
}
