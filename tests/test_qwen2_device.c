/* test_qwen2_device.c - the CPU side of the Qwen2 device choice: mer_device parsing and resolution
 * (AUTO is the CPU in a build without CUDA or on a machine without a GPU), an explicit CUDA request on
 * such a build or machine failing with a clear error (never a silent fall-back), and batched generation
 * from input embeddings (mer_batch_request.embd): each request's output equals the one of
 * mer_qwen2_prefill_embd + mer_qwen2_generate (n_prompt 0) on a context of its own (which test_qwen2
 * checks against Hugging Face), greedy and seeded sampling with a repetition penalty (whose history is
 * then the output alone), mixed with token-id requests in the same batch, for 1, 3 and 8 slots, on the
 * tiny model and its q8_0 conversion; and the request errors (ids and embeddings both given, a prompt
 * longer than the context); `mer generate --device`: cpu gives the library's greedy ids, a bad name and
 * cuda where there is none are one-line errors with exit status 2. */
#include "test.h"

#include "mer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define QDIR FIXTURES "/models/qwen2_tiny"

#define RNG_SEED 0x9E3779B97F4A7C15ull
#include "rng.h"

// --- devices -----------------------------------------------------------------------------------------

static void check_devices(void) {
    mer_err err = {0};
    mer_device d = MER_DEVICE_CUDA;
    CHECK(mer_device_parse("auto", &d, &err) == MER_OK && d == MER_DEVICE_AUTO);
    CHECK(mer_device_parse("cpu", &d, &err) == MER_OK && d == MER_DEVICE_CPU);
    CHECK(mer_device_parse("cuda", &d, &err) == MER_OK && d == MER_DEVICE_CUDA);
    d = MER_DEVICE_CPU;
    CHECK(mer_device_parse("gpu", &d, &err) == MER_E_ARG && strstr(err.msg, "'gpu'") && d == MER_DEVICE_CPU);
    CHECK(mer_device_parse("", &d, &err) == MER_E_ARG);
    CHECK(mer_device_parse(NULL, &d, &err) == MER_E_ARG);
    CHECK_STR(mer_device_name(MER_DEVICE_AUTO), "auto");
    CHECK_STR(mer_device_name(MER_DEVICE_CPU), "cpu");
    CHECK_STR(mer_device_name(MER_DEVICE_CUDA), "cuda");
    CHECK_STR(mer_device_name((mer_device)7), "?");
    CHECK(mer_device_resolve(MER_DEVICE_CPU) == MER_DEVICE_CPU);
    CHECK(mer_device_resolve(MER_DEVICE_CUDA) == MER_DEVICE_CUDA);
    mer_device a = mer_device_resolve(MER_DEVICE_AUTO);
    CHECK(a == MER_DEVICE_CPU || a == MER_DEVICE_CUDA);
    if (!mer_device_cuda_built()) CHECK(a == MER_DEVICE_CPU);
    CHECK(mer_qwen2_default_params().device == MER_DEVICE_AUTO);

    /* explicit CPU: the CPU model */
    mer_qwen2_params qp = mer_qwen2_default_params();
    qp.device = MER_DEVICE_CPU;
    mer_qwen2 *m = NULL;
    CHECK_MSG(mer_qwen2_load(QDIR, &qp, &m, &err) == MER_OK, "%s", err.msg);
    if (m) {
        mer_qwen2_info info;
        mer_qwen2_get_info(m, &info);
        CHECK(info.device == MER_DEVICE_CPU);
        CHECK(info.device_wtype == NULL);
        mer_qwen2_free(m);
        m = NULL;
    }
    /* explicit CUDA where there is none: a clear error, no model */
    if (a == MER_DEVICE_CPU) {
        qp.device = MER_DEVICE_CUDA;
        mer_status st = mer_qwen2_load(QDIR, &qp, &m, &err);
        CHECK(m == NULL);
        if (!mer_device_cuda_built())
            CHECK_MSG(st == MER_E_UNSUPPORTED && strstr(err.msg, "built without CUDA"), "%d %s", st, err.msg);
        else
            CHECK_MSG(st == MER_E_DEVICE && strstr(err.msg, "no CUDA device"), "%d %s", st, err.msg);
        /* AUTO there: the CPU */
        qp.device = MER_DEVICE_AUTO;
        CHECK_MSG(mer_qwen2_load(QDIR, &qp, &m, &err) == MER_OK, "%s", err.msg);
        if (m) {
            mer_qwen2_info info;
            mer_qwen2_get_info(m, &info);
            CHECK(info.device == MER_DEVICE_CPU);
            mer_qwen2_free(m);
        }
    }
    /* bad device parameters */
    qp = mer_qwen2_default_params();
    qp.device = (mer_device)5;
    m = NULL;
    CHECK(mer_qwen2_load(QDIR, &qp, &m, &err) == MER_E_ARG && m == NULL);
    qp.device = MER_DEVICE_CPU;
    qp.n_seq = -1;
    CHECK(mer_qwen2_load(QDIR, &qp, &m, &err) == MER_E_ARG && m == NULL);
}

// --- batched generation from embeddings ----------------------------------------------------------------

#define N_REQ 12
#define MAXP 100

#include "batch_reqs.h"

static void check_embd_batch(mer_qwen2 *m, int B, const char *what) {
    mer_qwen2_info info;
    mer_qwen2_get_info(m, &info);
    const int V = info.n_vocab, E = info.n_embd;
    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_threads = 2;
    cp.n_ctx = 96;
    reqs *r = calloc(1, sizeof *r);
    mer_err err = {0};
    mer_qwen2_ctx *c = NULL;
    CHECK(mer_qwen2_ctx_init(m, &cp, &c, &err) == MER_OK);
    if (!r || !c) goto out;
    /* the scale of the embedding table, for the spliced rows */
    float amax = 0;
    {
        float *row = malloc((size_t)E * sizeof *row);
        for (int32_t t = 0; t < V; t += 17) {
            CHECK(mer_qwen2_embed(m, &t, 1, row, &err) == MER_OK);
            for (int k = 0; k < E; k++) amax = fmaxf(amax, fabsf(row[k]));
        }
        free(row);
    }
    for (int i = 0; i < N_REQ; i++) {
        r->by_embd[i] = i % 3 != 1; /* two of three by embeddings */
        r->both[i] = i == 8;        /* and ids too: an error */
        r->n[i] = (size_t)(3 + (i * 7) % 23);
        if (i == 10) r->n[i] = 97; /* does not fit the context of 96 */
        for (size_t k = 0; k < r->n[i]; k++) r->ids[i][k] = rnd(V);
        if (r->by_embd[i]) {
            r->embd[i] = malloc(r->n[i] * (size_t)E * sizeof(float));
            CHECK(mer_qwen2_embed(m, r->ids[i], r->n[i], r->embd[i], &err) == MER_OK);
            /* rows 1 and n-2 become "features": random vectors at the table's scale */
            for (int k = 0; k < E; k++) {
                r->embd[i][(size_t)E + (size_t)k] = rndf(amax);
                r->embd[i][(r->n[i] - 2) * (size_t)E + (size_t)k] = rndf(amax);
            }
        }
        reqs_params(r, i, 5 + (i * 5) % 13, i % 4 < 2 ? 1.3 : 1.0, 77 + (uint64_t)i, rnd(V));
    }
    /* request 0 (greedy, by embeddings) stops at its own 3rd token */
    {
        mer_generate_result res = {0};
        mer_qwen2_ctx_reset(c);
        r->gp[0].n_stop_ids = 0;
        CHECK(mer_qwen2_prefill_embd(c, r->embd[0], r->n[0], &err) == MER_OK);
        CHECK(mer_qwen2_generate(c, NULL, NULL, 0, &r->gp[0], NULL, NULL, &res, &err) == MER_OK);
        if (res.n_ids >= 3) r->stop[0] = res.ids[2];
        r->gp[0].n_stop_ids = 1;
        free(res.ids);
    }
    mer_qwen2_batch *b = NULL;
    CHECK_MSG(mer_qwen2_batch_init(m, B, &cp, &b, &err) == MER_OK, "%s", err.msg);
    if (!b) goto out;
    CHECK_MSG(mer_qwen2_generate_batch(b, reqs_next, reqs_done, r, &err) == MER_OK, "%s", err.msg);
    int n_embd_ok = 0, n_stop_token = 0;
    for (int i = 0; i < N_REQ; i++) {
        CHECK_EQ_INT(r->seen[i], 1);
        if (i == 8) {
            CHECK_MSG(r->st[i] == MER_E_ARG, "%s B=%d: ids and embeddings: status %d", what, B, r->st[i]);
            free(r->out[i]);
            continue;
        }
        if (i == 10) {
            CHECK_MSG(r->st[i] == MER_E_RANGE, "%s B=%d: too long: status %d", what, B, r->st[i]);
            free(r->out[i]);
            continue;
        }
        mer_generate_result res = {0};
        mer_err e1 = {0};
        mer_qwen2_ctx_reset(c);
        mer_status st;
        if (r->by_embd[i]) {
            st = mer_qwen2_prefill_embd(c, r->embd[i], r->n[i], &e1);
            if (!st) st = mer_qwen2_generate(c, NULL, NULL, 0, &r->gp[i], NULL, NULL, &res, &e1);
        } else {
            st = mer_qwen2_generate(c, NULL, r->ids[i], r->n[i], &r->gp[i], NULL, NULL, &res, &e1);
        }
        CHECK_MSG(st == MER_OK && r->st[i] == MER_OK, "%s B=%d request %d: %d %d %s", what, B, i, st, r->st[i], e1.msg);
        if (!st) {
            CHECK_MSG(res.n_ids == r->n_out[i] && !memcmp(res.ids, r->out[i], res.n_ids * sizeof(int32_t)),
                      "%s B=%d request %d: %zu ids differ from the single run's %zu", what, B, i, r->n_out[i],
                      res.n_ids);
            CHECK_EQ_INT(r->reason[i], res.stop);
            n_embd_ok += r->by_embd[i];
            n_stop_token += res.stop == MER_STOP_TOKEN;
        }
        free(res.ids);
        free(r->out[i]);
    }
    CHECK(n_embd_ok >= 6);
    CHECK(n_stop_token >= 1);
    mer_qwen2_batch_free(b);
out:
    if (r)
        for (int i = 0; i < N_REQ; i++) free(r->embd[i]);
    mer_qwen2_ctx_free(c);
    free(r);
}

/* The history of an embeddings request is its output alone: with a strong repetition penalty the
 * output differs from that of the same rows given as token ids (whose ids are in the history) */
static void check_embd_history(mer_qwen2 *m) {
    mer_qwen2_info info;
    mer_qwen2_get_info(m, &info);
    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_threads = 1;
    cp.n_ctx = 64;
    mer_err err = {0};
    mer_qwen2_ctx *c = NULL;
    CHECK(mer_qwen2_ctx_init(m, &cp, &c, &err) == MER_OK);
    if (!c) return;
    int32_t ids[24];
    float *embd = malloc(24 * (size_t)info.n_embd * sizeof *embd);
    mer_generate_params gp = mer_generate_default_params();
    gp.max_new_tokens = 12;
    gp.sampling.repeat_penalty = 50.0;
    int differs = 0;
    for (int trial = 0; trial < 8 && !differs; trial++) {
        for (int k = 0; k < 24; k++) ids[k] = rnd(info.n_vocab);
        CHECK(mer_qwen2_embed(m, ids, 24, embd, &err) == MER_OK);
        mer_generate_result a = {0}, b = {0};
        mer_qwen2_ctx_reset(c);
        CHECK(mer_qwen2_generate(c, NULL, ids, 24, &gp, NULL, NULL, &a, &err) == MER_OK);
        mer_qwen2_ctx_reset(c);
        CHECK(mer_qwen2_prefill_embd(c, embd, 24, &err) == MER_OK);
        CHECK(mer_qwen2_generate(c, NULL, NULL, 0, &gp, NULL, NULL, &b, &err) == MER_OK);
        differs = a.n_ids != b.n_ids || memcmp(a.ids, b.ids, a.n_ids * sizeof(int32_t));
        free(a.ids);
        free(b.ids);
    }
    CHECK_MSG(differs, "a repetition penalty over the prompt ids never changed the output");
    free(embd);
    mer_qwen2_ctx_free(c);
}

/* Runs cmd, captures up to cap-1 bytes of its output; returns the exit status (-1: could not run). */
static int sh(const char *cmd, char *out, size_t cap) {
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void check_cli(void) {
    /* this build's mer: MER_BUILD, else the directory MER_TEST_TMP is in (BUILD/test-tmp) */
    const char *b = getenv("MER_BUILD");
    char mer[512], cmd[1024], out[4096];
    if (b) snprintf(mer, sizeof mer, "%s/mer", b);
    else snprintf(mer, sizeof mer, "%.*s/mer", (int)(strlen(MER_TEST_TMP) - strlen("/test-tmp")), MER_TEST_TMP);
    if (access(mer, X_OK) != 0) {
        printf("  (no %s: the CLI part is not run; MER_BUILD names the build)\n", mer);
        return;
    }
    /* --device cpu: the library's greedy ids */
    mer_qwen2_params qp = mer_qwen2_default_params();
    qp.device = MER_DEVICE_CPU;
    mer_qwen2 *m = NULL;
    mer_qwen2_ctx *c = NULL;
    mer_err err = {0};
    mer_generate_result res = {0};
    int32_t prompt[5] = {5, 17, 99, 3, 250};
    mer_generate_params gp = mer_generate_default_params();
    gp.max_new_tokens = 12;
    CHECK(mer_qwen2_load(QDIR, &qp, &m, &err) == MER_OK && mer_qwen2_ctx_init(m, NULL, &c, &err) == MER_OK &&
          mer_qwen2_generate(c, NULL, prompt, 5, &gp, NULL, NULL, &res, &err) == MER_OK);
    char want[512] = "";
    for (size_t i = 0, o = 0; i < res.n_ids && o < sizeof want - 16; i++)
        o += (size_t)snprintf(want + o, sizeof want - o, "%s%d", i ? " " : "", res.ids[i]);
    free(res.ids);
    mer_qwen2_ctx_free(c);
    mer_qwen2_free(m);
    snprintf(cmd, sizeof cmd, "%s generate --model " QDIR " --ids \"5 17 99 3 250\" -n 12 --device cpu 2>&1", mer);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
    out[strcspn(out, "\n")] = 0;
    CHECK_STR(out, want);
    snprintf(cmd, sizeof cmd, "%s generate --model " QDIR " --ids \"1 2\" -n 2 --device gpu 2>&1", mer);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 2);
    CHECK_MSG(strstr(out, "'gpu' is not one of auto, cpu, cuda") != NULL, "%s", out);
    if (mer_device_resolve(MER_DEVICE_AUTO) == MER_DEVICE_CPU) { /* no GPU here: cuda is a clear error */
        snprintf(cmd, sizeof cmd, "%s generate --model " QDIR " --ids \"1 2\" -n 2 --device cuda 2>&1", mer);
        CHECK_EQ_INT(sh(cmd, out, sizeof out), 2);
        CHECK_MSG(strstr(out, mer_device_cuda_built() ? "no CUDA device is usable" : "built without CUDA") != NULL &&
                      strchr(out, '\n') == out + strlen(out) - 1,
                  "%s", out);
        snprintf(cmd, sizeof cmd, "%s extract --model " QDIR " --in x.csv -o %s/x-openset.npz --device cuda 2>&1", mer,
                 MER_TEST_TMP);
        CHECK_EQ_INT(sh(cmd, out, sizeof out), 2);
    }
}

static void run(void) {
    check_devices();
    check_cli();
    mer_err err = {0};
    mer_qwen2 *m = NULL, *mq = NULL;
    mer_qwen2_params qp = mer_qwen2_default_params();
    qp.device = MER_DEVICE_CPU;
    CHECK_MSG(mer_qwen2_load(QDIR, &qp, &m, &err) == MER_OK, "%s", err.msg);
    qp.wtype = "q8_0";
    CHECK_MSG(mer_qwen2_load(QDIR, &qp, &mq, &err) == MER_OK, "%s", err.msg);
    if (m && mq) {
        static const int Bs[] = {1, 3, 8};
        for (int k = 0; k < 3; k++) {
            check_embd_batch(m, Bs[k], "f32");
            check_embd_batch(mq, Bs[k], "q8_0");
        }
        check_embd_history(m);
    }
    mer_qwen2_free(m);
    mer_qwen2_free(mq);
}
