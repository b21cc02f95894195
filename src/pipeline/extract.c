/* extract.c - `mer extract`: descriptions -> open-vocabulary label lists with Qwen2.5, exactly as
 * T23/ovlabel_extraction.py does (spec §2): the expert prompt, Qwen2.5's chat template with its default
 * system prompt, sampling T=0.7 top_p=0.8 repetition 1.05 up to 512 tokens, and func_postprocess_qwen.
 * Runs on the resumable job runner; the final submission npz is written from the store. */
#include "pipeline/job.h"
#include "pipeline/prompt.h"

#include <string.h>

mer_extract_params mer_extract_default_params(void) {
    mer_extract_params p = {0};
    p.column = "reason";
    p.temperature = 0.7;
    p.top_p = 0.8;
    p.repeat_penalty = 1.05;
    p.top_k = 0;
    p.max_new_tokens = 512;
    p.progress = 1;
    return p;
}

typedef struct extract_ctx {
    const mer_extract_params *p;
    const mer_label_table *in;
    mer_qwen2_ctx *ctx;
    const mer_tokenizer *tok;
    int32_t stop_ids[2];
    size_t n_stop;
} extract_ctx;

static mer_status one(void *ud, size_t i, const char *name, mer_buf *out, mer_err *err) {
    extract_ctx *x = ud;
    mer_buf prompt = {0}, clean = {0};
    char *chat = NULL, *text = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0, tlen = 0;
    mer_generate_result res = {0};
    mer_status st;
    if ((st = mer__ovlabel_prompt(&prompt, x->in->rows[i].labels))) goto done;
    mer_chat_msg msg = {"user", prompt.data};
    if ((st = mer_chat_render(&msg, 1, 1, &chat, NULL, err)) ||
        (st = mer_tokenizer_encode(x->tok, chat, strlen(chat), &ids, &n_ids, err)))
        goto done;
    mer_generate_params gp = mer_generate_default_params();
    gp.sampling.temperature = x->p->temperature;
    gp.sampling.top_p = x->p->top_p;
    gp.sampling.top_k = x->p->top_k;
    gp.sampling.repeat_penalty = x->p->repeat_penalty;
    gp.sampling.seed = x->p->seed + i;
    gp.max_new_tokens = x->p->max_new_tokens;
    gp.stop_ids = x->stop_ids;
    gp.n_stop_ids = x->n_stop;
    mer_qwen2_ctx_reset(x->ctx);
    if ((st = mer_qwen2_generate(x->ctx, x->tok, ids, n_ids, &gp, NULL, NULL, &res, err))) goto done;
    size_t n_text = res.n_ids;
    if (n_text && res.stop == MER_STOP_TOKEN) n_text--; /* the stop token is not part of the text */
    if ((st = mer_tokenizer_decode(x->tok, res.ids, n_text, 1, &text, &tlen, err))) goto done;
    if ((st = mer__ovlabel_postprocess(text, &clean))) goto done;
    st = mer__buf_append(out, clean.data ? clean.data : "", clean.len);
done:
    if (st && !err->msg[0]) mer__errf(err, st, "%s: %s", name, mer_status_str(st));
    free(res.ids);
    free(text);
    free(ids);
    free(chat);
    mer__buf_free(&prompt);
    mer__buf_free(&clean);
    return st;
}

static char *tokenizer_path(const char *llm) {
    if (mer__is_dir(llm)) {
        size_t n = strlen(llm) + 32;
        char *p = malloc(n);
        if (p) snprintf(p, n, "%s/tokenizer.json", llm);
        return p;
    }
    size_t n = strlen(llm);
    if (n > 5 && !strcmp(llm + n - 5, ".gguf")) return strdup(llm);
    /* a .safetensors file: its folder's tokenizer.json */
    const char *slash = strrchr(llm, '/');
    size_t d = slash ? (size_t)(slash - llm) : 1;
    char *p = malloc(d + 32);
    if (p) snprintf(p, d + 32, "%.*s/tokenizer.json", (int)d, slash ? llm : ".");
    return p;
}

mer_status mer_extract_run(const mer_extract_params *p, const char *in_path, const char *out_npz,
                           mer_job_summary *summary, mer_err *err) {
    memset(summary, 0, sizeof *summary);
    mer_label_table in = {0};
    mer_qwen2 *m = NULL;
    mer_qwen2_ctx *ctx = NULL;
    mer_tokenizer *tok = NULL;
    char *tok_path = NULL, *db = NULL, *config = NULL;
    const char **names = NULL;
    mer_status st;
    if (!p->llm) return mer__errf(err, MER_E_ARG, "mer extract: no model given");
    if ((st = mer_label_table_read(in_path, p->column ? p->column : "reason", &in, err))) return st;
    tok_path = p->tokenizer ? strdup(p->tokenizer) : tokenizer_path(p->llm);
    size_t dl = strlen(out_npz) + 4;
    db = malloc(dl);
    names = calloc(in.n ? in.n : 1, sizeof *names);
    if (!tok_path || !db || !names) { st = mer__errf(err, MER_E_NOMEM, "out of memory"); goto done; }
    snprintf(db, dl, "%s.db", out_npz);
    for (size_t i = 0; i < in.n; i++) names[i] = in.rows[i].name;
    if ((st = mer_tokenizer_load(tok_path, NULL, &tok, err))) goto done;
    mer_qwen2_params qp = mer_qwen2_default_params();
    qp.wtype = p->wtype;
    qp.n_threads = p->n_threads;
    if ((st = mer_qwen2_load(p->llm, &qp, &m, err))) goto done;
    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_threads = p->n_threads;
    cp.n_ctx = 4096;
    if ((st = mer_qwen2_ctx_init(m, &cp, &ctx, err))) goto done;
    extract_ctx x = {p, &in, ctx, tok, {0, 0}, 0};
    const char *stops[] = {"<|im_end|>", "<|endoftext|>"};
    for (size_t k = 0; k < 2; k++) {
        int32_t id = mer_tokenizer_token_id(tok, stops[k], strlen(stops[k]));
        if (id >= 0) x.stop_ids[x.n_stop++] = id;
    }
    /* everything that changes the output is part of the run's identity */
    size_t cl = strlen(p->llm) + strlen(tok_path) + 512;
    if (!(config = malloc(cl))) { st = mer__errf(err, MER_E_NOMEM, "out of memory"); goto done; }
    snprintf(config, cl,
             "{\"job\":\"extract\",\"llm\":\"%s\",\"tokenizer\":\"%s\",\"wtype\":\"%s\",\"temperature\":%.17g,"
             "\"top_p\":%.17g,\"top_k\":%d,\"repeat_penalty\":%.17g,\"max_new_tokens\":%d,\"seed\":%llu}",
             p->llm, tok_path, p->wtype ? p->wtype : "", p->temperature, p->top_p, p->top_k, p->repeat_penalty,
             p->max_new_tokens, (unsigned long long)p->seed);
    mer_job_params jp = {db, config, "extract", p->progress, p->retry_failed};
    mer_job_stats js;
    st = mer__job_run(&jp, names, in.n, one, &x, &js, err);
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
    mer_qwen2_free(m);
    mer_tokenizer_free(tok);
    mer_label_table_free(&in);
    return st;
}
