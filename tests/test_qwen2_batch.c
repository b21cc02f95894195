/* test_qwen2_batch.c - batched decoding against the single-sequence path (which test_qwen2 checks
 * against Hugging Face): for B = 1, 3 and 8 slots with prompts of different lengths that finish at
 * different steps, each slot's logits after a batched decode step equal those of mer_qwen2_prefill of
 * the same token on a context of its own (bit-identical for q8_0 weights, whose products are per-row
 * integer dots; within float rounding for f32 weights, where 4+ rows take the GEMM), on the tiny model,
 * its q8_0 conversion and the unmerged LoRA; continuous batching (more requests than slots, greedy and
 * seeded sampling, stop ids, max_new_tokens, a full context) gives each request exactly the ids and the
 * stop reason mer_qwen2_generate gives it alone; and the argument errors. */
#include "test.h"

#include "mer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QDIR FIXTURES "/models/qwen2_tiny"
#define QLORA FIXTURES "/models/qwen2_lora"

static uint64_t rng = 88172645463325252ull;
static int32_t rnd(int n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (int32_t)(rng % (uint64_t)n);
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Step-by-step: B slots, slot s has a prompt of 3 + 5 s tokens and decodes 2 + 3 s greedy tokens. */
static void check_steps(mer_qwen2 *m, int B, double tol, const char *what) {
    mer_qwen2_info info;
    mer_qwen2_get_info(m, &info);
    const int V = info.n_vocab;
    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_threads = 2;
    cp.n_ctx = 128;
    mer_qwen2_batch *b = NULL;
    mer_err err = {0};
    CHECK_MSG(mer_qwen2_batch_init(m, B, &cp, &b, &err) == MER_OK, "%s", err.msg);
    if (!b) return;
    CHECK_EQ_INT(mer_qwen2_batch_n_slots(b), B);
    mer_qwen2_ctx *ref[8] = {0};
    int32_t prompt[64], next[8];
    int n_steps[8];
    for (int s = 0; s < B; s++) {
        CHECK(mer_qwen2_ctx_init(m, &cp, &ref[s], &err) == MER_OK);
        int n = 3 + 5 * s;
        for (int i = 0; i < n; i++) prompt[i] = rnd(V);
        CHECK(mer_qwen2_prefill(mer_qwen2_batch_slot(b, s), prompt, (size_t)n, &err) == MER_OK);
        CHECK(mer_qwen2_prefill(ref[s], prompt, (size_t)n, &err) == MER_OK);
        next[s] = argmax(mer_qwen2_logits(ref[s], NULL), V);
        n_steps[s] = 2 + 3 * s;
    }
    double worst = 0;
    int mismatched = 0;
    for (int step = 0;; step++) {
        int slots[8], n = 0;
        int32_t ids[8];
        /* the rows in a varying order: odd steps backwards */
        for (int k = 0; k < B; k++) {
            int s = step % 2 ? B - 1 - k : k;
            if (step < n_steps[s]) {
                slots[n] = s;
                ids[n++] = next[s];
            }
        }
        if (!n) break;
        CHECK_MSG(mer_qwen2_batch_decode(b, slots, ids, n, &err) == MER_OK, "%s", err.msg);
        for (int r = 0; r < n; r++) {
            int s = slots[r];
            CHECK(mer_qwen2_prefill(ref[s], &ids[r], 1, &err) == MER_OK);
            int rows = 0;
            const float *a = mer_qwen2_logits(mer_qwen2_batch_slot(b, s), &rows), *e = mer_qwen2_logits(ref[s], NULL);
            CHECK_EQ_INT(rows, 1);
            CHECK_EQ_INT(mer_qwen2_ctx_n_past(mer_qwen2_batch_slot(b, s)), mer_qwen2_ctx_n_past(ref[s]));
            for (int i = 0; i < V; i++) {
                double dd = fabs((double)a[i] - e[i]) / (1.0 + fabs(e[i]));
                if (dd > worst) worst = dd;
            }
            int ga = argmax(a, V), ge = argmax(e, V);
            if (ga != ge) mismatched++;
            next[s] = ge;
        }
    }
    CHECK_MSG(worst <= tol, "%s B=%d: worst logit difference %g > %g", what, B, worst, tol);
    CHECK_MSG(mismatched == 0, "%s B=%d: %d greedy tokens differ", what, B, mismatched);
    for (int s = 0; s < B; s++) mer_qwen2_ctx_free(ref[s]);
    mer_qwen2_batch_free(b);
}

// --- continuous batching against mer_qwen2_generate ------------------------------------------------

#define N_REQ 11

#define MAXP 256
#include "batch_reqs.h"

static void check_generate(mer_qwen2 *m, int B, const char *what) {
    mer_qwen2_info info;
    mer_qwen2_get_info(m, &info);
    const int V = info.n_vocab;
    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_threads = 2;
    cp.n_ctx = 96;
    reqs *r = calloc(1, sizeof *r);
    mer_err err = {0};
    mer_qwen2_ctx *c = NULL;
    CHECK(mer_qwen2_ctx_init(m, &cp, &c, &err) == MER_OK);
    for (int i = 0; i < N_REQ; i++) {
        r->n[i] = (size_t)(2 + (i * 7) % 19);
        if (i == 9) r->n[i] = 90;  /* runs into the end of the context */
        if (i == 10) r->n[i] = 97; /* does not fit */
        for (size_t k = 0; k < r->n[i]; k++) r->ids[i][k] = rnd(V);
        reqs_params(r, i, 4 + (i * 5) % 17, i % 3 ? 1.1 : 1.0, 1000 + (uint64_t)i, rnd(V));
    }
    /* a stop id the greedy request 0 does produce: its 3rd token */
    {
        mer_generate_result res = {0};
        mer_qwen2_ctx_reset(c);
        r->gp[0].n_stop_ids = 0;
        CHECK(mer_qwen2_generate(c, NULL, r->ids[0], r->n[0], &r->gp[0], NULL, NULL, &res, &err) == MER_OK);
        if (res.n_ids >= 3) r->stop[0] = res.ids[2];
        r->gp[0].n_stop_ids = 1;
        r->gp[0].min_new_tokens = 1;
        free(res.ids);
    }
    mer_qwen2_batch *b = NULL;
    CHECK_MSG(mer_qwen2_batch_init(m, B, &cp, &b, &err) == MER_OK, "%s", err.msg);
    CHECK_MSG(mer_qwen2_generate_batch(b, reqs_next, reqs_done, r, &err) == MER_OK, "%s", err.msg);
    int n_stop_token = 0, n_ctx_stop = 0;
    for (int i = 0; i < N_REQ; i++) {
        CHECK_EQ_INT(r->seen[i], 1);
        mer_generate_result res = {0};
        mer_err e1 = {0};
        mer_qwen2_ctx_reset(c);
        mer_status st = mer_qwen2_generate(c, NULL, r->ids[i], r->n[i], &r->gp[i], NULL, NULL, &res, &e1);
        CHECK_MSG(st == r->st[i], "%s B=%d request %d: status %d vs %d", what, B, i, r->st[i], st);
        if (!st) {
            CHECK_MSG(res.n_ids == r->n_out[i] && !memcmp(res.ids, r->out[i], res.n_ids * sizeof(int32_t)),
                      "%s B=%d request %d: %zu ids differ from the single run's %zu", what, B, i, r->n_out[i],
                      res.n_ids);
            CHECK_EQ_INT(r->reason[i], res.stop);
            n_stop_token += res.stop == MER_STOP_TOKEN;
            n_ctx_stop += res.stop == MER_STOP_CONTEXT;
        }
        free(res.ids);
        free(r->out[i]);
    }
    CHECK(r->st[10] == MER_E_RANGE);
    CHECK(n_stop_token >= 1);
    CHECK(n_ctx_stop == 1);
    mer_qwen2_batch_free(b);
    mer_qwen2_ctx_free(c);
    free(r);
}

static void run(void) {
    mer_err err = {0};
    mer_qwen2 *m = NULL, *mq = NULL, *ml = NULL;
    mer_qwen2_params qp = mer_qwen2_default_params();
    qp.device = MER_DEVICE_CPU; /* the CPU path, also in a CUDA build (test_cuda_llm: the device) */
    CHECK_MSG(mer_qwen2_load(QDIR, &qp, &m, &err) == MER_OK, "%s", err.msg);
    qp.wtype = "q8_0";
    CHECK_MSG(mer_qwen2_load(QDIR, &qp, &mq, &err) == MER_OK, "%s", err.msg);
    qp = mer_qwen2_default_params();
    qp.device = MER_DEVICE_CPU;
    qp.lora_path = QLORA;
    qp.lora_merge = 0;
    CHECK_MSG(mer_qwen2_load(QDIR, &qp, &ml, &err) == MER_OK, "%s", err.msg);
    if (!m || !mq || !ml) goto out;
    static const int Bs[] = {1, 3, 8};
    for (int k = 0; k < 3; k++) {
        check_steps(m, Bs[k], 1e-5, "f32");
        check_steps(mq, Bs[k], 0, "q8_0");
        check_steps(ml, Bs[k], 1e-4, "lora"); /* plus the adapter's own f32 products */
        check_generate(m, Bs[k], "f32");
        check_generate(mq, Bs[k], "q8_0");
    }
    /* errors */
    {
        mer_qwen2_batch *b = NULL;
        CHECK(mer_qwen2_batch_init(m, 0, NULL, &b, &err) == MER_E_ARG && b == NULL);
        mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
        cp.n_threads = 1;
        cp.n_ctx = 4;
        CHECK(mer_qwen2_batch_init(m, 2, &cp, &b, &err) == MER_OK);
        int slots[2] = {0, 0};
        int32_t ids[2] = {1, 2};
        CHECK(mer_qwen2_batch_decode(b, slots, ids, 2, &err) == MER_E_ARG && strstr(err.msg, "slot 0"));
        slots[1] = 2;
        CHECK(mer_qwen2_batch_decode(b, slots, ids, 2, &err) == MER_E_ARG);
        slots[1] = 1;
        ids[1] = 256;
        CHECK(mer_qwen2_batch_decode(b, slots, ids, 2, &err) == MER_E_RANGE && strstr(err.msg, "256"));
        ids[1] = 3;
        int32_t p4[4] = {1, 2, 3, 4};
        CHECK(mer_qwen2_prefill(mer_qwen2_batch_slot(b, 1), p4, 4, &err) == MER_OK);
        CHECK(mer_qwen2_batch_decode(b, slots, ids, 2, &err) == MER_E_RANGE && strstr(err.msg, "full"));
        CHECK(mer_qwen2_ctx_n_past(mer_qwen2_batch_slot(b, 0)) == 0); /* nothing ran */
        CHECK(mer_qwen2_batch_slot(b, 2) == NULL);
        mer_qwen2_batch_free(b);
    }
out:
    mer_qwen2_free(m);
    mer_qwen2_free(mq);
    mer_qwen2_free(ml);
}
