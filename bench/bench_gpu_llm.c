/* bench_gpu_llm.c - what the public Qwen2 API costs on top of the device model it runs on: decode tokens/s
 * of the device step alone (mer_qwen2_cuda_decode with the argmax on the device, no logits downloaded),
 * the same with the logits downloaded, and through the API (mer_qwen2_generate at batch 1 and
 * mer_qwen2_generate_batch at batch 8: logits downloaded to the context, sampling on the CPU, slots
 * sampled in parallel), greedy and with the reference's sampling (T 1, top-k 20, top-p 0.9). Same model,
 * same card, same run; the ratio API / device step is the dispatch's overhead.
 *
 *   bench_gpu_llm [--shape real|tiny] [--gen N] [--prompt N]
 *
 * real (default): the Qwen2.5-7B shape in bf16 with random weights (models/random_models.c), uploaded as
 * mer_qwen2_load uploads a checkpoint; tiny: the qwen2_tiny fixture. Prints SKIP without a GPU. Every
 * figure is also printed as "RESULT <key> <value> <unit>". */
#include "models/qwen2.h"
#include "models/qwen2_cuda.h"
#include "models/random_models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_NAME "bench_gpu_llm"
#include "bench_gpu_common.h"

#define B_MAX 8

/* The device step alone: B sequences after a prompt of P tokens, gen greedy steps (argmax on the
 * device; logits downloaded too when `download`). Leaves the sequences empty. */
static double raw_decode(mer_qwen2_cuda *cm, int B, const int32_t *prompt, int P, int gen, int download, float *lg) {
    mer_err e = {0};
    int slots[B_MAX];
    int32_t ids[B_MAX], out[B_MAX];
    for (int s = 0; s < B; s++) {
        slots[s] = s;
        if (mer_qwen2_cuda_prefill(cm, s, prompt, P, NULL, 0, &ids[s], &e)) die("prefill", &e);
    }
    for (int w = 0; w < 3; w++) /* graph capture */
        if (mer_qwen2_cuda_decode(cm, B, slots, ids, NULL, out, &e)) die("decode", &e);
    double t0 = now_s();
    for (int t = 0; t < gen; t++) {
        if (mer_qwen2_cuda_decode(cm, B, slots, ids, download ? lg : NULL, out, &e)) die("decode", &e);
        memcpy(ids, out, sizeof ids);
    }
    double dt = now_s() - t0;
    for (int s = 0; s < B; s++)
        if (mer_qwen2_cuda_reset(cm, s, &e)) die("reset", &e);
    return (double)B * gen / dt;
}

typedef struct reqs {
    const int32_t *prompt;
    int P, gen, n, next;
    mer_sampler_params sp;
    size_t toks;
} reqs;

static int next_fn(void *ud, mer_batch_request *req) {
    reqs *r = ud;
    if (r->next >= r->n) return 0;
    req->index = (size_t)r->next;
    req->ids = r->prompt + r->next; /* a different prompt each */
    req->n_ids = (size_t)r->P;
    req->params.sampling = r->sp;
    req->params.sampling.seed = (uint64_t)r->next++;
    req->params.max_new_tokens = r->gen;
    return 1;
}

static mer_status done_fn(void *ud, size_t i, mer_status st, const mer_generate_result *res, const char *msg,
                          mer_err *err) {
    (void)i;
    (void)msg;
    if (st) return mer__errf(err, st, "request failed: %s", msg ? msg : "");
    ((reqs *)ud)->toks += res->n_ids;
    return MER_OK;
}

int main(int argc, char **argv) {
    const char *shape = "real";
    int gen = 128, P = 150;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--shape")) shape = argv[i + 1];
        else if (!strcmp(argv[i], "--gen")) gen = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prompt")) P = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_gpu_llm [--shape real|tiny] [--gen N] [--prompt N]\n");
            return 2;
        }
    }
    if (gen < 8 || P < 1 || P > 512) {
        fprintf(stderr, "bench_gpu_llm: --gen >= 8 and --prompt 1..512\n");
        return 2;
    }
    if (mer_device_resolve(MER_DEVICE_AUTO) != MER_DEVICE_CUDA) {
        printf("SKIP bench_gpu_llm: no CUDA device (or built without CUDA)\n");
        return 0;
    }
    mer_err e = {0};
    mer_qwen2 *m = NULL;
    mer_qwen2_params qp = mer_qwen2_default_params();
    qp.device = MER_DEVICE_CUDA;
    qp.n_seq = B_MAX + 1;
    qp.n_ctx = 1024;
    double t0 = now_s();
    if (!strcmp(shape, "tiny")) {
        if (mer_qwen2_load("tests/fixtures/models/qwen2_tiny", &qp, &m, &e)) die("load", &e);
    } else {
        mer__qwen2_hp hp;
        mer__qwen25_7b_hp(&hp);
        if (mer__random_qwen2(&hp, MER_DTYPE_BF16, 7, &m, NULL, &e)) die("random model", &e);
        if (mer__qwen2_dev_attach(m, &qp, &e)) die("upload", &e);
    }
    mer_qwen2_info info;
    mer_qwen2_get_info(m, &info);
    printf("bench_gpu_llm: %s shape, %s on cuda:%d (%.2f GB per step), prompt %d, %d tokens; ready in %.1f s\n", shape,
           info.device_wtype, info.device_ordinal, (double)info.device_bytes / 1e9, P, gen, now_s() - t0);
    const int V = info.n_vocab;
    int32_t *prompt = malloc((size_t)(P + B_MAX) * sizeof *prompt);
    float *lg = malloc((size_t)B_MAX * (size_t)V * sizeof *lg);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < P + B_MAX; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        prompt[i] = (int32_t)(x % (uint64_t)V);
    }
    mer_qwen2_cuda *cm = mer__qwen2_dev_cuda(m);
    static const int Bs[2] = {1, B_MAX};
    double raw[2], raw_dl[2];
    for (int k = 0; k < 2; k++) {
        raw[k] = raw_decode(cm, Bs[k], prompt, P, gen, 0, lg);
        raw_dl[k] = raw_decode(cm, Bs[k], prompt, P, gen, 1, lg);
    }

    /* through the API */
    mer_sampler_params greedy = mer_sampler_default_params(), ref = greedy;
    ref.temperature = 1.0, ref.top_k = 20, ref.top_p = 0.9;
    double api1[2] = {0}, api8[2] = {0};
    for (int smp = 0; smp < 2; smp++) {
        mer_qwen2_ctx *c = NULL;
        if (mer_qwen2_ctx_init(m, NULL, &c, &e)) die("ctx", &e);
        mer_generate_params gp = mer_generate_default_params();
        gp.sampling = smp ? ref : greedy;
        gp.max_new_tokens = gen;
        mer_generate_result res = {0};
        for (int rep = 0; rep < 2; rep++) { /* the first run warms the graph up */
            mer_qwen2_ctx_reset(c);
            free(res.ids);
            if (mer_qwen2_generate(c, NULL, prompt, (size_t)P, &gp, NULL, NULL, &res, &e)) die("generate", &e);
        }
        api1[smp] = (double)(res.n_ids - 1) / res.gen_seconds; /* gen_seconds: n_ids draws, n_ids - 1 steps */
        free(res.ids);
        mer_qwen2_ctx_free(c);

        mer_qwen2_batch *b = NULL;
        if (mer_qwen2_batch_init(m, B_MAX, NULL, &b, &e)) die("batch", &e);
        double best = 0;
        for (int rep = 0; rep < 2; rep++) {
            reqs r = {prompt, P, gen, B_MAX, 0, smp ? ref : greedy, 0};
            double t1 = now_s();
            if (mer_qwen2_generate_batch(b, next_fn, done_fn, &r, &e)) die("generate_batch", &e);
            double v = (double)r.toks / (now_s() - t1);
            if (v > best) best = v;
        }
        api8[smp] = best;
        mer_qwen2_batch_free(b);
    }

    printf("\n| batch | device step (argmax on device) | + logits download | API greedy "
           "| API T1/top-k 20/top-p 0.9 |\n");
    printf("|---|---|---|---|---|\n");
    printf("| 1 | %.1f tok/s | %.1f | %.1f (%.2f) | %.1f (%.2f) |\n", raw[0], raw_dl[0], api1[0], api1[0] / raw[0],
           api1[1], api1[1] / raw[0]);
    printf("| %d | %.1f tok/s | %.1f | %.1f (%.2f) | %.1f (%.2f) |\n", B_MAX, raw[1], raw_dl[1], api8[0],
           api8[0] / raw[1], api8[1], api8[1] / raw[1]);
    printf("(API at batch %d: mer_qwen2_generate_batch wall time incl. %d prefills of %d tokens; ratios against "
           "the device step)\n",
           B_MAX, B_MAX, P);
    result("raw_b1", raw[0], "tok/s");
    result("raw_b1_logits", raw_dl[0], "tok/s");
    result("raw_b8", raw[1], "tok/s");
    result("raw_b8_logits", raw_dl[1], "tok/s");
    result("api_b1_greedy", api1[0], "tok/s");
    result("api_b1_sampled", api1[1], "tok/s");
    result("api_b8_greedy", api8[0], "tok/s");
    result("api_b8_sampled", api8[1], "tok/s");
    free(prompt);
    free(lg);
    mer_qwen2_free(m);
    return 0;
}
