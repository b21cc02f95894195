/* batch_reqs.h - the request table of the batched-generation tests (test_qwen2_batch, test_qwen2_device,
 * test_cuda_llm): N_REQ requests, each by token ids or by input embeddings, handed to
 * mer_qwen2_generate_batch by reqs_next and collected by reqs_done, for the test to compare with what
 * mer_qwen2_generate gives each request alone. The test fills the table (prompts, parameters, stop ids)
 * and frees embd[] and out[]. Define N_REQ (requests) and MAXP (longest prompt in ids) before including
 * it, after test.h. */
#ifndef MER_TESTS_BATCH_REQS_H
#define MER_TESTS_BATCH_REQS_H

#include "mer.h"

#include <stdlib.h>
#include <string.h>

typedef struct reqs {
    int by_embd[N_REQ];             /* 1: the prompt is embd[i] ([n[i]][n_embd]), 0: ids[i][0..n[i]) */
    int both[N_REQ];                /* 1: ids[i] is given beside the embeddings too (an error) */
    int32_t ids[N_REQ][MAXP];
    float *embd[N_REQ];
    size_t n[N_REQ];                /* prompt length (ids or embedding rows) */
    mer_generate_params gp[N_REQ];
    int32_t stop[N_REQ];            /* a stop id for gp[i].stop_ids to point at */
    size_t next;                    /* the next request reqs_next hands out */
    int32_t *out[N_REQ];            /* from reqs_done: the generated ids (malloc'd, never NULL once seen) */
    size_t n_out[N_REQ];
    int reason[N_REQ], seen[N_REQ]; /* the stop reason; how many times reqs_done saw the request */
    mer_status st[N_REQ];
} reqs;

/* mer_batch_next_fn over a reqs (ud): requests 0..N_REQ-1 in order. */
static inline int reqs_next(void *ud, mer_batch_request *req) {
    reqs *r = ud;
    if (r->next >= N_REQ) return 0;
    size_t i = r->next++;
    req->index = i;
    if (r->by_embd[i]) {
        req->embd = r->embd[i];
        req->n_embd_rows = r->n[i];
        if (r->both[i]) {
            req->ids = r->ids[i];
            req->n_ids = r->n[i];
        }
    } else {
        req->ids = r->ids[i];
        req->n_ids = r->n[i];
    }
    req->params = r->gp[i];
    return 1;
}

/* mer_batch_done_fn over a reqs (ud): records the status, stop reason and a copy of the ids (replacing
 * an earlier copy of the same request's). */
static inline mer_status reqs_done(void *ud, size_t index, mer_status st, const mer_generate_result *res,
                                   const char *msg, mer_err *err) {
    (void)msg;
    (void)err;
    reqs *r = ud;
    r->seen[index]++;
    r->st[index] = st;
    r->reason[index] = res->stop;
    free(r->out[index]);
    r->n_out[index] = res->n_ids;
    r->out[index] = malloc((res->n_ids ? res->n_ids : 1) * sizeof(int32_t));
    if (res->n_ids) memcpy(r->out[index], res->ids, res->n_ids * sizeof(int32_t));
    return MER_OK;
}

/* gp[i] as the CPU batch tests set it: max_new new tokens, greedy for even i, temperature 0.9 and top-p
 * 0.9 for odd i (top-k 40 where i % 4 == 1), repetition penalty rp, seed `seed`; stop[i] = stop, a stop
 * id where i % 3 == 0. */
static inline void reqs_params(reqs *r, int i, int max_new, double rp, uint64_t seed, int32_t stop) {
    mer_generate_params *g = &r->gp[i];
    *g = mer_generate_default_params();
    g->max_new_tokens = max_new;
    if (i % 2) {
        g->sampling.temperature = 0.9;
        g->sampling.top_p = 0.9;
        g->sampling.top_k = i % 4 == 1 ? 40 : 0;
    }
    g->sampling.repeat_penalty = rp;
    g->sampling.seed = seed;
    r->stop[i] = stop;
    if (i % 3 == 0) {
        g->stop_ids = &r->stop[i];
        g->n_stop_ids = 1;
    }
}

#endif
