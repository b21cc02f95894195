/* test_hubert.c - the HuBERT encoder against HF transformers: the tiny stable-layer-norm HubertModel of
 * tests/fixtures/models/hubert_tiny (scripts/gpu/gen_fixtures.py) on two 0.5 s clips. The joint
 * input normalisation, extract_features, every hidden state, last_hidden_state and the AffectGPT
 * feature must match to 1e-4 relative (max-abs-err / max-abs-ref), loading model.safetensors (weight
 * norm as parametrizations.weight.original0/1) and pytorch_model.bin (weight_g / weight_v). A checkpoint
 * with a missing or mis-shaped tensor fails naming it. */
#include "test.h"

#include "io/safetensors.h"
#include "models/hubert.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIR FIXTURES "/models/hubert_tiny"

static const float *get(const mer_weights *w, const char *name, size_t n) {
    const mer_wtensor *t = mer_weights_find(w, name);
    CHECK_MSG(t && t->dtype == MER_DTYPE_F32 && t->n_bytes == n * 4, "expected tensor %s of %zu floats", name, n);
    return t && t->n_bytes == n * 4 ? (const float *)t->data : NULL;
}

static double check_model(const mer_hubert *m, const mer_weights *ex, int n_threads, const char *what) {
    mer_err err = {0};
    mer_threadpool *pool = NULL;
    mer_cpu_ctx *c = NULL;
    mer_hubert_ctx *x = NULL;
    double worst = 0;
    const mer_hubert_hparams *hp = &m->hp;
    const int N = 2, S = 8000, L = hp->n_layer, D = hp->n_embd, C = hp->conv_dim[hp->n_conv - 1];
    const int T = mer_hubert_n_frames(hp, S);
    CHECK_EQ_INT(T, 24);
    const float *raw = get(ex, "raw", (size_t)N * S), *iv = get(ex, "input_values", (size_t)N * S);
    const float *ef = get(ex, "extract_features", (size_t)N * T * C);
    const float *lh = get(ex, "last_hidden_state", (size_t)N * T * D);
    const float *ag = get(ex, "affectgpt_feature", (size_t)N * D);
    if (!raw || !iv || !ef || !lh || !ag) return 1;
    CHECK(mer_threadpool_init(n_threads, &pool, &err) == MER_OK);
    CHECK(mer_cpu_ctx_init(pool, MER_ISA_AUTO, &c, &err) == MER_OK);
    CHECK(mer_hubert_ctx_init(m, c, S, &x, &err) == MER_OK);
    if (!x) goto done;

    /* AffectGPT's joint normalisation of the raw clips */
    float *in = malloc((size_t)N * S * sizeof(float));
    memcpy(in, raw, (size_t)N * S * sizeof(float));
    mer_hubert_normalize(in, N, S, 1);
    double en = max_rel_err(in, iv, (size_t)N * S);
    CHECK_MSG(en <= 1e-5, "%s: joint normalisation rel err %.3g", what, en);

    size_t TD = (size_t)T * D;
    float *hs = malloc((size_t)(L + 1) * TD * sizeof(float)), *ptrs[64], *last = malloc(TD * sizeof(float));
    float *feat = malloc((size_t)T * C * sizeof(float));
    for (int i = 0; i <= L; i++) ptrs[i] = hs + (size_t)i * TD;
    for (int b = 0; b < N; b++) {
        mer_hubert_out o = {.extract_features = feat, .hidden = ptrs, .last_hidden = last};
        int nf = 0;
        CHECK(mer_hubert_encode(x, iv + (size_t)b * S, S, &o, &nf, &err) == MER_OK);
        CHECK_EQ_INT(nf, T);
        double e = max_rel_err(feat, ef + (size_t)b * T * C, (size_t)T * C);
        CHECK_MSG(e <= 1e-4, "%s: clip %d extract_features rel err %.3g", what, b, e);
        if (e > worst) worst = e;
        for (int i = 0; i <= L; i++) {
            char name[64];
            snprintf(name, sizeof name, "hidden_states.%d", i);
            const float *ref = get(ex, name, (size_t)N * TD);
            if (!ref) continue;
            e = max_rel_err(ptrs[i], ref + (size_t)b * TD, TD);
            CHECK_MSG(e <= 1e-4, "%s: clip %d %s rel err %.3g", what, b, name, e);
            if (e > worst) worst = e;
        }
        e = max_rel_err(last, lh + (size_t)b * TD, TD);
        CHECK_MSG(e <= 1e-4, "%s: clip %d last_hidden_state rel err %.3g", what, b, e);
        if (e > worst) worst = e;
    }
    /* the AffectGPT feature from the normalised clips */
    float *af = malloc((size_t)N * D * sizeof(float));
    CHECK(mer_hubert_pool(x, in, N, S, -1, 1, af, &err) == MER_OK); /* transformers 5 hidden states */
    double e = max_rel_err(af, ag, (size_t)N * D);
    CHECK_MSG(e <= 1e-4, "%s: affectgpt_feature (transformers 5) rel err %.3g", what, e);
    if (e > worst) worst = e;
    /* transformers 4 (AffectGPT): hidden_states[-4:] ends with last_hidden_state; here all of
       [hidden_states.0, hidden_states.1, last_hidden_state], averaged, then over time */
    CHECK(mer_hubert_pool(x, in, N, S, -1, 0, af, &err) == MER_OK);
    {
        const float *h0 = get(ex, "hidden_states.0", (size_t)N * TD), *h1 = get(ex, "hidden_states.1", (size_t)N * TD);
        float ref[2 * 64];
        for (int b = 0; b < N && h0 && h1; b++)
            for (int d = 0; d < D; d++) {
                double s = 0;
                for (int t = 0; t < T; t++) {
                    size_t i = (size_t)b * TD + (size_t)t * D + d;
                    s += ((double)h0[i] + h1[i] + lh[i]) / 3;
                }
                ref[b * D + d] = (float)(s / T);
            }
        e = max_rel_err(af, ref, (size_t)N * D);
        CHECK_MSG(e <= 1e-4, "%s: AffectGPT feature (transformers 4) rel err %.3g", what, e);
        if (e > worst) worst = e;
    }
    /* --layer 1: mean over time of hidden state 1 */
    CHECK(mer_hubert_pool(x, iv, N, S, 1, 0, af, &err) == MER_OK);
    const float *h1 = get(ex, "hidden_states.1", (size_t)N * TD);
    if (h1) {
        float ref[64];
        for (int d = 0; d < D; d++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += h1[(size_t)1 * TD + (size_t)t * D + d];
            ref[d] = (float)(s / T);
        }
        e = max_rel_err(af + D, ref, (size_t)D);
        CHECK_MSG(e <= 1e-4, "%s: time mean of hidden_states.1 rel err %.3g", what, e);
    }
    CHECK(mer_hubert_pool(x, iv, N, S, L + 1, 0, af, &err) == MER_E_ARG);
    CHECK(mer_hubert_encode(x, iv, 300, &(mer_hubert_out){0}, NULL, &err) == MER_E_ARG); /* too short */
    CHECK(mer_hubert_encode(x, iv, S + 1, &(mer_hubert_out){0}, NULL, &err) == MER_E_ARG); /* over max */
    free(af);
    free(in);
    free(hs);
    free(last);
    free(feat);
done:
    mer_hubert_ctx_free(x);
    mer_cpu_ctx_free(c);
    mer_threadpool_free(pool);
    return worst;
}

/* The conv feature extractor on a clip long enough for the kernels to work in several tiles (the conv
 * reads its input tile by tile) against a direct float64 evaluation of the same layers. */
static void check_long_clip(const mer_hubert *m) {
    const mer_hubert_hparams *hp = &m->hp;
    const long S = 600000;
    const int T = mer_hubert_n_frames(hp, S), C = hp->conv_dim[hp->n_conv - 1];
    mer_err err = {0};
    mer_threadpool *pool = NULL;
    mer_cpu_ctx *c = NULL;
    mer_hubert_ctx *x = NULL;
    float *in = malloc((size_t)S * sizeof(float)), *feat = malloc((size_t)T * C * sizeof(float));
    uint64_t r = 88172645463325252ull;
    for (long i = 0; i < S; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        in[i] = (float)((double)(r >> 11) / 9007199254740992.0 * 2 - 1);
    }
    CHECK(mer_threadpool_init(2, &pool, &err) == MER_OK);
    CHECK(mer_cpu_ctx_init(pool, MER_ISA_AUTO, &c, &err) == MER_OK);
    CHECK(mer_hubert_ctx_init(m, c, S, &x, &err) == MER_OK);
    mer_hubert_out o = {.extract_features = feat};
    CHECK(x && mer_hubert_encode(x, in, S, &o, NULL, &err) == MER_OK);
    /* float64 reference: [C][L] layout, conv + bias, layer norm over channels (eps 1e-5), exact GELU */
    double *cur = malloc((size_t)S * sizeof(double)), *nxt = NULL;
    for (long i = 0; i < S; i++) cur[i] = in[i];
    long l = S;
    int cin = 1;
    for (int li = 0; li < hp->n_conv; li++) {
        const int Co = hp->conv_dim[li], k = hp->conv_kernel[li], st = hp->conv_stride[li];
        const long lo = (l - k) / st + 1;
        nxt = malloc((size_t)Co * lo * sizeof(double));
        for (int co = 0; co < Co; co++)
            for (long p = 0; p < lo; p++) {
                double a = m->conv_b[li] ? m->conv_b[li][co] : 0;
                for (int ci = 0; ci < cin; ci++)
                    for (int kk = 0; kk < k; kk++)
                        a += (double)m->conv_w[li][((size_t)co * cin + ci) * k + kk] * cur[(size_t)ci * l + p * st + kk];
                nxt[(size_t)co * lo + p] = a;
            }
        for (long p = 0; p < lo; p++) {
            double mu = 0, var = 0;
            for (int co = 0; co < Co; co++) mu += nxt[(size_t)co * lo + p];
            mu /= Co;
            for (int co = 0; co < Co; co++) var += (nxt[(size_t)co * lo + p] - mu) * (nxt[(size_t)co * lo + p] - mu);
            var /= Co;
            for (int co = 0; co < Co; co++) {
                double v = (nxt[(size_t)co * lo + p] - mu) / sqrt(var + 1e-5) * m->conv_ln_w[li][co] + m->conv_ln_b[li][co];
                nxt[(size_t)co * lo + p] = 0.5 * v * (1 + erf(v / sqrt(2.0)));
            }
        }
        free(cur);
        cur = nxt;
        l = lo;
        cin = Co;
    }
    double me = 0, mr = 0;
    for (long t = 0; t < T && l == T; t++)
        for (int co = 0; co < C; co++) {
            double ref = cur[(size_t)co * T + t], d = fabs(feat[(size_t)t * C + co] - ref);
            if (d > me || d != d) me = d;
            if (fabs(ref) > mr) mr = fabs(ref);
        }
    CHECK_EQ_INT(l, T);
    printf("hubert_tiny conv stack on %ld samples (%d frames): rel err %.3g vs float64\n", S, T, me / mr);
    CHECK_MSG(me / mr <= 1e-4, "long clip extract_features rel err %.3g", me / mr);
    free(cur);
    free(in);
    free(feat);
    mer_hubert_ctx_free(x);
    mer_cpu_ctx_free(c);
    mer_threadpool_free(pool);
}

static void check_broken(void) {
    mer_err err = {0};
    mer_weights *w = NULL;
    CHECK(mer_weights_open(DIR "/model.safetensors", &w, &err) == MER_OK);
    if (!w) return;
    char tmp[] = "/tmp/mer_test_hubert_XXXXXX", cmd[1024], path[600];
    CHECK(mkdtemp(tmp) != NULL);
    snprintf(cmd, sizeof cmd, "cp " DIR "/config.json %s/", tmp);
    CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    const char *drop = "encoder.pos_conv_embed.conv.parametrizations.weight.original1";
    const char *bad = "feature_extractor.conv_layers.3.conv.weight";
    for (int pass = 0; pass < 2; pass++) {
        mer_st_tensor *t = calloc(w->n_tensors, sizeof *t);
        int64_t shape[3] = {16, 16, 4};
        float *zeros = calloc(16 * 16 * 4, sizeof(float));
        size_t n = 0;
        for (size_t i = 0; i < w->n_tensors; i++) {
            const mer_wtensor *s = &w->tensors[i];
            if (pass == 0 && !strcmp(s->name, drop)) continue;
            t[n] = (mer_st_tensor){s->name, s->dtype, s->n_dims, s->shape, s->data, s->n_bytes};
            if (pass == 1 && !strcmp(s->name, bad)) t[n] = (mer_st_tensor){s->name, s->dtype, 3, shape, zeros, 16 * 16 * 4 * 4};
            n++;
        }
        CHECK(mer__safetensors_write(path, t, n, NULL, 0, &err) == MER_OK);
        free(t);
        free(zeros);
        mer_hubert *m = NULL;
        mer_status st = mer_hubert_open(tmp, &m, &err);
        CHECK_EQ_INT(st, pass == 0 ? MER_E_NOTFOUND : MER_E_SHAPE);
        CHECK_MSG(strstr(err.msg, pass == 0 ? drop : bad) != NULL, "message names the tensor: %s", err.msg);
        CHECK(m == NULL);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
    mer_weights_close(w);
}

static void run(void) {
    mer_err err = {0};
    mer_weights *ex = NULL;
    CHECK(mer_weights_open(DIR "/expected.safetensors", &ex, &err) == MER_OK);
    if (!ex) {
        printf("FAIL cannot open expected outputs: %s\n", err.msg);
        return;
    }
    mer_hubert *m = NULL;
    CHECK(mer_hubert_open(DIR, &m, &err) == MER_OK);
    if (m) {
        CHECK_EQ_INT(m->hp.n_conv, 7);
        CHECK_EQ_INT(m->hp.conv_kernel[0], 10);
        CHECK_EQ_INT(m->hp.conv_stride[6], 2);
        CHECK_EQ_INT(m->hp.pos_k, 16);
        CHECK_EQ_INT(m->hp.pos_groups, 4);
        CHECK_EQ_INT(m->hp.conv_bias, 1);
        double e1 = check_model(m, ex, 1, "safetensors 1 thread");
        double e2 = check_model(m, ex, 2, "safetensors 2 threads");
        printf("hubert_tiny safetensors: worst rel err %.3g (1 thread), %.3g (2 threads)\n", e1, e2);
        CHECK(e1 == e2);
        check_long_clip(m);
        mer_hubert_free(m);
    } else {
        printf("FAIL %s\n", err.msg);
    }
    m = NULL;
    mer_status st = mer_hubert_open(DIR "/pytorch_model.bin", &m, &err);
    if (st == MER_E_UNSUPPORTED && strstr(err.msg, "not built")) {
        printf("SKIP hubert pytorch_model.bin: %s\n", err.msg);
    } else {
        CHECK_MSG(st == MER_OK, "open pytorch_model.bin: %s", err.msg);
        if (m) {
            CHECK(mer_weights_find(m->owned_w, "encoder.pos_conv_embed.conv.weight_g") != NULL);
            double e = check_model(m, ex, 2, "pytorch_model.bin");
            printf("hubert_tiny pytorch_model.bin: worst rel err %.3g\n", e);
        }
        mer_hubert_free(m);
    }
    check_broken();
    mer_weights_close(ex);
}
