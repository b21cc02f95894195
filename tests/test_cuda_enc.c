/* test_cuda_enc.c - the device encoders (kernels/cuda/cuda_enc.h, models/{clip,hubert,enc}_cuda.c) on
 * a CUDA device; without one (or in a build without CUDA) it prints a SKIP line and passes (and checks
 * that the API answers MER_E_UNSUPPORTED).
 *   - kernels against float64 host references: LayerNorm (+GELU, row remapping), the bias/residual GEMM
 *     (bf16 and f32), non-causal attention (the tensor-core kernel at head size 64 with sequences that
 *     are not multiples of its tiles, and the f32 kernel), HuBERT's fused first conv layer;
 *   - CLIP and HuBERT on the tiny fixtures (tests/fixtures/models/{clip,hubert}_tiny) against HF's
 *     outputs stored there and against the CPU encoders: f32 path 1e-4 relative, bf16 1e-2;
 *   - CLIP ViT-L/14 and chinese-hubert-large shapes with random weights (models/random_models.c): the
 *     bf16 device path against the CPU encoders in f32, within 3e-2 relative. */
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "io/hfconfig.h"
#include "io/weights.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_enc.h"
#include "models/clip_cuda.h"
#include "models/hubert_cuda.h"
#include "models/random_models.h"

#if MER_CUDA
#include "cuda_open.h"

static mer_err e;
#define DO(call) CHECK_MSG((call) == MER_OK, "%s: %s", #call, e.msg)

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* uniform [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}
static float *rand_vec(size_t n, float a) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = a * frand();
    return p;
}
static float bfr(float x) { return mer_bf16_to_fp32(mer_fp32_to_bf16(x)); }
static double gelu_d(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }

/* uploads n floats as dtype t */
static void *dev_vec(mer_cuda *c, const float *h, size_t n, mer_dtype t) {
    void *p = NULL;
    size_t es = t == MER_DTYPE_F32 ? 4 : 2;
    DO(mer_cuda_alloc(c, n * es + 16, &p, &e));
    if (t == MER_DTYPE_F32) {
        DO(mer_cuda_upload(c, p, h, n * 4, &e));
    } else {
        uint16_t *b = malloc(n * 2);
        for (size_t i = 0; i < n; i++) b[i] = mer_fp32_to_bf16(h[i]);
        DO(mer_cuda_upload(c, p, b, n * 2, &e));
        free(b);
    }
    return p;
}
static float *host_vec(mer_cuda *c, const void *d, size_t n, mer_dtype t) {
    float *h = malloc(n * sizeof *h);
    if (t == MER_DTYPE_F32) {
        DO(mer_cuda_download(c, h, d, n * 4, &e));
    } else {
        uint16_t *b = malloc(n * 2);
        DO(mer_cuda_download(c, b, d, n * 2, &e));
        for (size_t i = 0; i < n; i++) h[i] = mer_bf16_to_fp32(b[i]);
        free(b);
    }
    return h;
}

// --- kernels -----------------------------------------------------------------------------------------

static void test_layernorm(mer_cuda *c, mer_dtype yt, int n) { /* n % 128 == 0: the registers kernel */
    const int rows = 6, per = 3, stride = 5, src_rows = 10;
    float *x = rand_vec((size_t)src_rows * n, 2.f), *w = rand_vec(n, 1.f), *b = rand_vec(n, 0.5f);
    for (int i = 0; i < src_rows * n; i++) x[i] += 3.f; /* a mean far from 0 */
    float *dx = dev_vec(c, x, (size_t)src_rows * n, MER_DTYPE_F32), *dw = dev_vec(c, w, n, MER_DTYPE_F32),
          *db = dev_vec(c, b, n, MER_DTYPE_F32);
    void *dy = NULL;
    DO(mer_cuda_alloc(c, (size_t)rows * n * 4, &dy, &e));
    for (int act = 0; act < 2; act++) {
        DO(mer_cuda_layernorm(c, dy, yt, n, dx, n, dw, db, rows, n, per, stride, 1e-5f,
                              act ? MER_CUDA_ACT_GELU : MER_CUDA_ACT_NONE, &e));
        float *y = host_vec(c, dy, (size_t)rows * n, yt);
        double worst = 0;
        for (int r = 0; r < rows; r++) {
            const float *xr = x + (size_t)((r / per) * stride + r % per) * n;
            double s = 0, v = 0;
            for (int i = 0; i < n; i++) s += xr[i];
            s /= n;
            for (int i = 0; i < n; i++) v += (xr[i] - s) * (xr[i] - s);
            double rs = 1 / sqrt(v / n + 1e-5);
            for (int i = 0; i < n; i++) {
                double ref = (xr[i] - s) * rs * w[i] + b[i];
                if (act) ref = gelu_d(ref);
                double d = fabs(ref - y[(size_t)r * n + i]) / (fabs(ref) + 1);
                if (d > worst) worst = d;
            }
        }
        double tol = yt == MER_DTYPE_F32 ? 1e-5 : 8e-3;
        CHECK_MSG(worst <= tol, "layernorm (%s, n %d, act %d) err %.3g", mer_dtype_name(yt), n, act, worst);
        free(y);
    }
    mer_cuda_release(c, dx), mer_cuda_release(c, dw), mer_cuda_release(c, db), mer_cuda_release(c, dy);
    free(x), free(w), free(b);
}

static void test_gemm(mer_cuda *c, mer_dtype wt, int n_tok, int n_in, int n_out) {
    float *x = rand_vec((size_t)n_tok * n_in, 1.f), *w = rand_vec((size_t)n_out * n_in, 0.1f), *b = rand_vec(n_out, 1.f);
    float *y0 = rand_vec((size_t)n_tok * n_out, 1.f);
    void *dx = dev_vec(c, x, (size_t)n_tok * n_in, wt), *dw = dev_vec(c, w, (size_t)n_out * n_in, wt);
    float *db = dev_vec(c, b, n_out, MER_DTYPE_F32), *dy = dev_vec(c, y0, (size_t)n_tok * n_out, MER_DTYPE_F32);
    DO(mer_cuda_gemm_bias(c, dy, MER_DTYPE_F32, n_out, dx, n_in, dw, wt, db, n_tok, n_in, n_out, 1, &e));
    float *y = host_vec(c, dy, (size_t)n_tok * n_out, MER_DTYPE_F32);
    double worst = 0;
    for (int t = 0; t < n_tok; t++)
        for (int o = 0; o < n_out; o++) {
            double s = y0[(size_t)t * n_out + o] + b[o];
            for (int i = 0; i < n_in; i++) {
                float xv = x[(size_t)t * n_in + i], wv = w[(size_t)o * n_in + i];
                if (wt == MER_DTYPE_BF16) xv = bfr(xv), wv = bfr(wv);
                s += (double)xv * wv;
            }
            double d = fabs(s - y[(size_t)t * n_out + o]) / (fabs(s) + 1);
            if (d > worst) worst = d;
        }
    CHECK_MSG(worst <= 1e-4, "gemm_bias %s %dx%dx%d accumulate: err %.3g", mer_dtype_name(wt), n_tok, n_in, n_out, worst);
    free(y);
    /* bf16 output, no residual */
    if (wt == MER_DTYPE_BF16) {
        void *dyb = NULL;
        DO(mer_cuda_alloc(c, (size_t)n_tok * n_out * 2, &dyb, &e));
        DO(mer_cuda_gemm_bias(c, dyb, MER_DTYPE_BF16, n_out, dx, n_in, dw, wt, db, n_tok, n_in, n_out, 0, &e));
        y = host_vec(c, dyb, (size_t)n_tok * n_out, MER_DTYPE_BF16);
        worst = 0;
        for (int t = 0; t < n_tok; t++)
            for (int o = 0; o < n_out; o++) {
                double s = b[o];
                for (int i = 0; i < n_in; i++) s += (double)bfr(x[(size_t)t * n_in + i]) * bfr(w[(size_t)o * n_in + i]);
                double d = fabs(s - y[(size_t)t * n_out + o]) / (fabs(s) + 1);
                if (d > worst) worst = d;
            }
        CHECK_MSG(worst <= 8e-3, "gemm_bias bf16 out %dx%dx%d: err %.3g", n_tok, n_in, n_out, worst);
        free(y);
        mer_cuda_release(c, dyb);
    }
    mer_cuda_release(c, dx), mer_cuda_release(c, dw), mer_cuda_release(c, db), mer_cuda_release(c, dy);
    free(x), free(w), free(b), free(y0);
}

static void test_gemm_tf32(mer_cuda *c, int n_tok, int n_in, int n_out) {
    float *x = rand_vec((size_t)n_tok * n_in, 1.f), *w = rand_vec((size_t)n_out * n_in, 0.1f), *b = rand_vec(n_out, 1.f);
    float *dx = dev_vec(c, x, (size_t)n_tok * n_in, MER_DTYPE_F32), *dw = dev_vec(c, w, (size_t)n_out * n_in, MER_DTYPE_F32);
    float *db = dev_vec(c, b, n_out, MER_DTYPE_F32), *dy = NULL;
    DO(mer_cuda_alloc(c, (size_t)n_tok * n_out * 4, (void **)&dy, &e));
    DO(mer_cuda_gemm_bias_tf32(c, dy, n_out, dx, n_in, dw, db, n_tok, n_in, n_out, 0, &e));
    float *y = host_vec(c, dy, (size_t)n_tok * n_out, MER_DTYPE_F32);
    double worst = 0, worst_bf = 0;
    for (int t = 0; t < n_tok; t++)
        for (int o = 0; o < n_out; o++) {
            double s = b[o], sa = fabs(b[o]);
            for (int i = 0; i < n_in; i++) {
                s += (double)x[(size_t)t * n_in + i] * w[(size_t)o * n_in + i];
                sa += fabs((double)x[(size_t)t * n_in + i] * w[(size_t)o * n_in + i]);
            }
            double d = fabs(s - y[(size_t)t * n_out + o]) / sa; /* relative to the sum of |terms| */
            if (d > worst) worst = d;
        }
    (void)worst_bf;
    CHECK_MSG(worst <= 1e-3, "gemm_bias_tf32 %dx%dx%d: err %.3g (of the sum of |terms|)", n_tok, n_in, n_out, worst);
    free(y), free(x), free(w), free(b);
    mer_cuda_release(c, dx), mer_cuda_release(c, dw), mer_cuda_release(c, db), mer_cuda_release(c, dy);
}

static void test_attention(mer_cuda *c, mer_dtype t, int n_seq, int T, int H, int d) {
    const int ld_in = 3 * H * d + 8, ld_out = H * d + 8; /* strides wider than the data */
    const size_t N = (size_t)n_seq * T;
    float *in = rand_vec(N * ld_in, 1.f);
    if (t == MER_DTYPE_BF16)
        for (size_t i = 0; i < N * ld_in; i++) in[i] = bfr(in[i]);
    void *din = dev_vec(c, in, N * ld_in, t), *dout = NULL;
    DO(mer_cuda_alloc(c, N * ld_out * 4, &dout, &e));
    DO(mer_cuda_memset(c, dout, 0, N * ld_out * 4, &e));
    const float scale = 1.f / sqrtf((float)d);
    DO(mer_cuda_attn_full(c, dout, ld_out, din, ld_in, H * d, 2 * H * d, t, n_seq, T, H, d, scale, &e));
    float *out = host_vec(c, dout, N * ld_out, t);
    double worst = 0, *p = malloc((size_t)T * sizeof *p);
    for (int b = 0; b < n_seq; b++)
        for (int h = 0; h < H; h++)
            for (int q = 0; q < T; q++) {
                const float *qr = in + ((size_t)b * T + q) * ld_in + h * d;
                double mx = -1e300, sum = 0;
                for (int k = 0; k < T; k++) {
                    const float *kr = in + ((size_t)b * T + k) * ld_in + H * d + h * d;
                    double s = 0;
                    for (int i = 0; i < d; i++) s += (double)qr[i] * kr[i];
                    p[k] = s * scale;
                    if (p[k] > mx) mx = p[k];
                }
                for (int k = 0; k < T; k++) sum += p[k] = exp(p[k] - mx);
                for (int i = 0; i < d; i++) {
                    double o = 0;
                    for (int k = 0; k < T; k++) o += p[k] * in[((size_t)b * T + k) * ld_in + 2 * H * d + h * d + i];
                    o /= sum;
                    double dd = fabs(o - out[((size_t)b * T + q) * ld_out + h * d + i]);
                    if (dd > worst) worst = dd;
                }
            }
    double tol = t == MER_DTYPE_F32 ? 2e-5 : 2e-2;
    CHECK_MSG(worst <= tol, "attention %s %d x %d, %d heads of %d: err %.3g", mer_dtype_name(t), n_seq, T, H, d, worst);
    free(p), free(out), free(in);
    mer_cuda_release(c, din), mer_cuda_release(c, dout);
}

static void test_conv0(mer_cuda *c) {
    const int n = 2, C = 64, K = 10, s = 5;
    const long len = 1003;
    const int lo = (int)((len - K) / s + 1), S = lo + 5;
    float *x = rand_vec((size_t)n * len, 1.f), *w = rand_vec((size_t)C * K, 0.3f), *bias = rand_vec(C, 0.1f);
    float *lw = rand_vec(C, 1.f), *lb = rand_vec(C, 0.2f);
    float *dx = dev_vec(c, x, (size_t)n * len, MER_DTYPE_F32), *dw = dev_vec(c, w, (size_t)C * K, MER_DTYPE_F32);
    float *dbias = dev_vec(c, bias, C, MER_DTYPE_F32), *dlw = dev_vec(c, lw, C, MER_DTYPE_F32),
          *dlb = dev_vec(c, lb, C, MER_DTYPE_F32);
    float *dy = NULL;
    DO(mer_cuda_alloc(c, (size_t)n * S * C * 4, (void **)&dy, &e));
    DO(mer_cuda_conv0_ln_gelu(c, dy, MER_DTYPE_F32, dx, len, n, S, dw, dbias, C, K, s, dlw, dlb, 1e-5f, &e));
    float *y = host_vec(c, dy, (size_t)n * S * C, MER_DTYPE_F32);
    double worst = 0, v[64];
    for (int b = 0; b < n; b++)
        for (int t = 0; t < lo; t++) {
            double mean = 0, var = 0;
            for (int o = 0; o < C; o++) {
                double a = bias[o];
                for (int k = 0; k < K; k++) a += (double)w[o * K + k] * x[(size_t)b * len + (size_t)s * t + k];
                v[o] = a;
                mean += a;
            }
            mean /= C;
            for (int o = 0; o < C; o++) var += (v[o] - mean) * (v[o] - mean);
            double rs = 1 / sqrt(var / C + 1e-5);
            for (int o = 0; o < C; o++) {
                double ref = gelu_d((v[o] - mean) * rs * lw[o] + lb[o]);
                double d = fabs(ref - y[((size_t)b * S + t) * C + o]);
                if (d > worst) worst = d;
            }
        }
    CHECK_MSG(worst <= 1e-5, "conv0+LN+GELU err %.3g", worst);
    free(x), free(w), free(bias), free(lw), free(lb), free(y);
    mer_cuda_release(c, dx), mer_cuda_release(c, dw), mer_cuda_release(c, dbias), mer_cuda_release(c, dlw),
        mer_cuda_release(c, dlb), mer_cuda_release(c, dy);
}

// --- models on the fixtures --------------------------------------------------------------------------

static float *tensor_copy(const mer_weights *w, const char *name, size_t n) {
    const mer_wtensor *t = mer_weights_find(w, name);
    CHECK_MSG(t && t->dtype == MER_DTYPE_F32 && t->n_bytes == n * 4, "expected tensor %s of %zu floats", name, n);
    if (!t || t->n_bytes != n * 4) return NULL;
    float *p = malloc(n * 4);
    memcpy(p, t->data, n * 4);
    return p;
}

static void test_clip_tiny(mer_cuda *c, mer_dtype wt) {
    const char *dir = FIXTURES "/models/clip_tiny";
    mer_clip *m = NULL;
    mer_weights *ex = NULL;
    mer_clip_cuda *g = NULL;
    float *px = NULL, *emb = NULL, *last = NULL;
    DO(mer_clip_open(dir, &m, &e));
    DO(mer_weights_open(FIXTURES "/models/clip_tiny/expected.safetensors", &ex, &e));
    if (!m || !ex) goto done;
    const mer_clip_hparams *hp = &m->hp;
    const int T = hp->n_tok, D = hp->n_embd, L = hp->n_layer, P = hp->n_proj, n = 2;
    const size_t TD = (size_t)T * D, img = (size_t)hp->n_channels * hp->image_size * hp->image_size;
    px = tensor_copy(ex, "pixel_values", n * img);
    emb = tensor_copy(ex, "image_embeds", (size_t)n * P);
    last = tensor_copy(ex, "last_hidden_state", n * TD);
    if (!px || !emb || !last) goto done;
    DO(mer_clip_cuda_from_model(m, c, 4, wt, &g, &e));
    if (!g) goto done;
    float *hs = malloc((size_t)n * (L + 1) * TD * 4), *lh = malloc(n * TD * 4), *ie = malloc((size_t)n * P * 4);
    float *pooled = malloc((size_t)n * D * 4);
    float *ptrs[2][64];
    mer_clip_out o[2];
    for (int b = 0; b < n; b++) {
        for (int i = 0; i <= L; i++) ptrs[b][i] = hs + ((size_t)b * (L + 1) + i) * TD;
        o[b] = (mer_clip_out){.image_embeds = ie + (size_t)b * P, .pooled = pooled + (size_t)b * D, .hidden = ptrs[b],
                              .last_hidden = lh + b * TD};
    }
    DO(mer_clip_cuda_encode(g, px, n, o, &e));
    const double tol = wt == MER_DTYPE_F32 ? 1e-4 : 1e-2;
    double worst = 0;
    /* against HF */
    for (int i = 0; i <= L; i++) {
        char name[64];
        snprintf(name, sizeof name, "hidden_states.%d", i);
        float *ref = tensor_copy(ex, name, n * TD);
        for (int b = 0; b < n && ref; b++) {
            double er = max_rel_err(ptrs[b][i], ref + b * TD, TD);
            CHECK_MSG(er <= tol, "clip tiny %s: image %d %s vs HF rel err %.3g", mer_dtype_name(wt), b, name, er);
            if (er > worst) worst = er;
        }
        free(ref);
    }
    for (int b = 0; b < n; b++) {
        double e1 = max_rel_err(lh + b * TD, last + b * TD, TD), e2 = max_rel_err(ie + (size_t)b * P, emb + (size_t)b * P, P);
        CHECK_MSG(e1 <= tol && e2 <= tol, "clip tiny %s: image %d last_hidden %.3g image_embeds %.3g vs HF",
                  mer_dtype_name(wt), b, e1, e2);
        if (e1 > worst) worst = e1;
        if (e2 > worst) worst = e2;
    }
    /* against the CPU encoder */
    {
        mer_threadpool *pool = NULL;
        mer_cpu_ctx *cpu = NULL;
        mer_clip_ctx *x = NULL;
        DO(mer_threadpool_init(2, &pool, &e));
        DO(mer_cpu_ctx_init(pool, MER_ISA_AUTO, &cpu, &e));
        DO(mer_clip_ctx_init(m, cpu, &x, &e));
        float *cie = malloc((size_t)P * 4), *cpo = malloc((size_t)D * 4);
        for (int b = 0; b < n && x; b++) {
            mer_clip_out co = {.image_embeds = cie, .pooled = cpo};
            DO(mer_clip_encode(x, px + b * img, &co, &e));
            double e1 = max_rel_err(ie + (size_t)b * P, cie, P), e2 = max_rel_err(pooled + (size_t)b * D, cpo, D);
            CHECK_MSG(e1 <= tol && e2 <= tol, "clip tiny %s: image %d vs CPU image_embeds %.3g pooled %.3g",
                      mer_dtype_name(wt), b, e1, e2);
        }
        free(cie), free(cpo);
        mer_clip_ctx_free(x);
        mer_cpu_ctx_free(cpu);
        mer_threadpool_free(pool);
    }
    /* image_embeds alone of one image (the blocks are skipped or run as needed) and bad counts */
    {
        float one[64];
        mer_clip_out o1 = {.image_embeds = one};
        DO(mer_clip_cuda_encode(g, px + img, 1, &o1, &e));
        double er = max_rel_err(one, emb + P, P);
        CHECK_MSG(er <= tol, "clip tiny %s: one image alone rel err %.3g", mer_dtype_name(wt), er);
        for (int r = 0; r < 3; r++) { /* eager, then captured as a CUDA graph, then replayed: the same bits */
            float again[64];
            mer_clip_out o2 = {.image_embeds = again};
            DO(mer_clip_cuda_encode(g, px + img, 1, &o2, &e));
            CHECK_MSG(!memcmp(again, one, (size_t)P * 4), "clip tiny %s: graph replay %d differs", mer_dtype_name(wt), r);
        }
        CHECK_EQ_INT(mer_clip_cuda_encode(g, px, 5, o, &e), MER_E_ARG);
        CHECK_EQ_INT(mer_clip_cuda_encode(g, px, 0, o, &e), MER_E_ARG);
    }
    printf("  clip tiny %s: worst rel err vs HF %.3g\n", mer_dtype_name(wt), worst);
    free(hs), free(lh), free(ie), free(pooled);
done:
    free(px), free(emb), free(last);
    mer_clip_cuda_free(g);
    mer_weights_close(ex);
    mer_clip_free(m);
}

static void test_hubert_tiny(mer_cuda *c, mer_dtype wt) {
    mer_hubert *m = NULL;
    mer_weights *ex = NULL;
    mer_hubert_cuda *g = NULL;
    float *iv = NULL, *lhr = NULL, *efr = NULL, *ag = NULL;
    DO(mer_hubert_open(FIXTURES "/models/hubert_tiny", &m, &e));
    DO(mer_weights_open(FIXTURES "/models/hubert_tiny/expected.safetensors", &ex, &e));
    if (!m || !ex) goto done;
    const mer_hubert_hparams *hp = &m->hp;
    const int n = 2, S = 8000, L = hp->n_layer, D = hp->n_embd, C = hp->conv_dim[hp->n_conv - 1];
    const int T = mer_hubert_n_frames(hp, S);
    const size_t TD = (size_t)T * D;
    iv = tensor_copy(ex, "input_values", (size_t)n * S);
    lhr = tensor_copy(ex, "last_hidden_state", n * TD);
    efr = tensor_copy(ex, "extract_features", (size_t)n * T * C);
    ag = tensor_copy(ex, "affectgpt_feature", (size_t)n * D);
    if (!iv || !lhr || !efr || !ag) goto done;
    DO(mer_hubert_cuda_from_model(m, c, 2, S, wt, &g, &e));
    if (!g) goto done;
    const double tol = wt == MER_DTYPE_F32 ? 1e-4 : 1e-2;
    float *hs = malloc((size_t)n * (L + 1) * TD * 4), *lh = malloc(n * TD * 4), *ef = malloc((size_t)n * T * C * 4);
    float *ptrs[2][64];
    mer_hubert_out o[2];
    for (int b = 0; b < n; b++) {
        for (int i = 0; i <= L; i++) ptrs[b][i] = hs + ((size_t)b * (L + 1) + i) * TD;
        o[b] = (mer_hubert_out){.extract_features = ef + (size_t)b * T * C, .hidden = ptrs[b], .last_hidden = lh + b * TD};
    }
    int nf = 0;
    DO(mer_hubert_cuda_encode(g, iv, n, S, o, &nf, &e));
    CHECK_EQ_INT(nf, T);
    double worst = 0, er;
    for (int b = 0; b < n; b++) {
        er = max_rel_err(ef + (size_t)b * T * C, efr + (size_t)b * T * C, (size_t)T * C);
        CHECK_MSG(er <= tol, "hubert tiny %s: clip %d extract_features rel err %.3g", mer_dtype_name(wt), b, er);
        if (er > worst) worst = er;
        er = max_rel_err(lh + b * TD, lhr + b * TD, TD);
        CHECK_MSG(er <= tol, "hubert tiny %s: clip %d last_hidden_state rel err %.3g", mer_dtype_name(wt), b, er);
        if (er > worst) worst = er;
    }
    for (int i = 0; i <= L; i++) {
        char name[64];
        snprintf(name, sizeof name, "hidden_states.%d", i);
        float *ref = tensor_copy(ex, name, n * TD);
        for (int b = 0; b < n && ref; b++) {
            er = max_rel_err(ptrs[b][i], ref + b * TD, TD);
            CHECK_MSG(er <= tol, "hubert tiny %s: clip %d %s rel err %.3g", mer_dtype_name(wt), b, name, er);
            if (er > worst) worst = er;
        }
        free(ref);
    }
    /* pooling: transformers 5 (the fixture's affectgpt_feature), and 4 / a single layer against the CPU */
    float af[2 * 64], cf[2 * 64];
    DO(mer_hubert_cuda_pool(g, iv, n, S, -1, 1, af, &e));
    er = max_rel_err(af, ag, (size_t)n * D);
    CHECK_MSG(er <= tol, "hubert tiny %s: affectgpt_feature rel err %.3g", mer_dtype_name(wt), er);
    if (er > worst) worst = er;
    for (int r = 0; r < 3; r++) { /* the second call is captured as a CUDA graph, the third replays it */
        float again[2 * 64];
        DO(mer_hubert_cuda_pool(g, iv, n, S, -1, 1, again, &e));
        CHECK_MSG(!memcmp(again, af, (size_t)n * D * 4), "hubert tiny %s: graph replay %d differs", mer_dtype_name(wt), r);
    }
    {
        mer_threadpool *pool = NULL;
        mer_cpu_ctx *cpu = NULL;
        mer_hubert_ctx *x = NULL;
        DO(mer_threadpool_init(2, &pool, &e));
        DO(mer_cpu_ctx_init(pool, MER_ISA_AUTO, &cpu, &e));
        DO(mer_hubert_ctx_init(m, cpu, S, &x, &e));
        const int layers[3] = {-1, 1, 0}, hf5s[3] = {0, 0, 1};
        for (int k = 0; k < 3 && x; k++) {
            DO(mer_hubert_pool(x, iv, n, S, layers[k], hf5s[k], cf, &e));
            /* three clips through a model of two: two batches */
            float af3[3 * 64], iv3[3 * 8000];
            memcpy(iv3, iv, sizeof(float) * 2 * S);
            memcpy(iv3 + 2 * S, iv, sizeof(float) * S);
            DO(mer_hubert_cuda_pool(g, iv3, 3, S, layers[k], hf5s[k], af3, &e));
            er = max_rel_err(af3, cf, (size_t)n * D);
            double e3 = max_rel_err(af3 + 2 * D, cf, (size_t)D);
            CHECK_MSG(er <= tol && e3 <= tol, "hubert tiny %s: pool(layer %d, hf5 %d) vs CPU rel err %.3g / %.3g",
                      mer_dtype_name(wt), layers[k], hf5s[k], er, e3);
        }
        mer_hubert_ctx_free(x);
        mer_cpu_ctx_free(cpu);
        mer_threadpool_free(pool);
    }
    CHECK_EQ_INT(mer_hubert_cuda_pool(g, iv, n, S, L + 1, 0, af, &e), MER_E_ARG);
    CHECK_EQ_INT(mer_hubert_cuda_encode(g, iv, 1, 300, o, NULL, &e), MER_E_ARG);
    CHECK_EQ_INT(mer_hubert_cuda_encode(g, iv, 1, S + 1, o, NULL, &e), MER_E_ARG);
    CHECK_EQ_INT(mer_hubert_cuda_encode(g, iv, 3, S, o, NULL, &e), MER_E_ARG);
    printf("  hubert tiny %s: worst rel err vs HF %.3g\n", mer_dtype_name(wt), worst);
    free(hs), free(lh), free(ef);
done:
    free(iv), free(lhr), free(efr), free(ag);
    mer_hubert_cuda_free(g);
    mer_weights_close(ex);
    mer_hubert_free(m);
}

// --- real shapes, random weights ---------------------------------------------------------------------

static void test_real_clip(mer_cuda *c, mer_cpu_ctx *cpu) {
    mer_weights *w = NULL;
    mer_config *cfg = NULL;
    mer_clip *m = NULL;
    mer_clip_ctx *x = NULL;
    mer_clip_cuda *g = NULL;
    DO(mer__random_clip_l14(0x9e3779b97f4a7c15ull, &w, &e));
    DO(mer__config_parse(mer__clip_l14_config, strlen(mer__clip_l14_config), "clip-config", &cfg, &e));
    if (w && cfg) DO(mer_clip_load(w, cfg, &m, &e));
    if (!m) goto done;
    DO(mer_clip_ctx_init(m, cpu, &x, &e));
    DO(mer_clip_cuda_from_model(m, c, 8, MER_DTYPE_BF16, &g, &e));
    if (!x || !g) goto done;
    const mer_clip_hparams *hp = &m->hp;
    const int n = 3, D = hp->n_embd, P = hp->n_proj, T = hp->n_tok;
    const size_t img = (size_t)3 * hp->image_size * hp->image_size, TD = (size_t)T * D;
    float *px = rand_vec(n * img, 1.5f), *ie = malloc((size_t)n * P * 4), *lh = malloc(n * TD * 4);
    float *cie = malloc((size_t)P * 4), *clh = malloc(TD * 4), *h12 = malloc(n * TD * 4), *ch12 = malloc(TD * 4);
    float *hp_[3][32] = {{0}};
    mer_clip_out o[3];
    for (int b = 0; b < n; b++) {
        hp_[b][12] = h12 + b * TD;
        o[b] = (mer_clip_out){.image_embeds = ie + (size_t)b * P, .last_hidden = lh + b * TD, .hidden = hp_[b]};
    }
    DO(mer_clip_cuda_encode(g, px, n, o, &e));
    for (int b = 0; b < n; b += 2) { /* images 0 and 2 on the CPU (seconds each) */
        float *cp[32] = {0};
        cp[12] = ch12;
        mer_clip_out co = {.image_embeds = cie, .last_hidden = clh, .hidden = cp};
        DO(mer_clip_encode(x, px + b * img, &co, &e));
        double e1 = max_rel_err(ie + (size_t)b * P, cie, P), e2 = max_rel_err(lh + b * TD, clh, TD),
               e3 = max_rel_err(h12 + b * TD, ch12, TD);
        CHECK_MSG(e1 <= 3e-2 && e2 <= 3e-2 && e3 <= 3e-2,
                  "CLIP-L random, image %d: bf16 device vs CPU f32: image_embeds %.3g, last_hidden %.3g, hidden 12 %.3g",
                  b, e1, e2, e3);
        printf("  CLIP-L random image %d: bf16 device vs CPU f32 rel err image_embeds %.3g last_hidden %.3g\n", b, e1,
               e2);
    }
    free(px), free(ie), free(lh), free(cie), free(clh), free(h12), free(ch12);
done:
    mer_clip_cuda_free(g);
    mer_clip_ctx_free(x);
    mer_clip_free(m);
    mer__config_free(cfg);
    mer_weights_close(w);
}

static void test_real_hubert(mer_cuda *c, mer_cpu_ctx *cpu) {
    mer_weights *w = NULL;
    mer_config *cfg = NULL;
    mer_hubert *m = NULL;
    mer_hubert_ctx *x = NULL;
    mer_hubert_cuda *g = NULL;
    const long S = 32000;
    DO(mer__random_hubert_large(0x2545f4914f6cdd1dull, &w, &e));
    DO(mer__config_parse(mer__hubert_large_config, strlen(mer__hubert_large_config), "hubert-config", &cfg, &e));
    if (w && cfg) DO(mer_hubert_load(w, cfg, &m, &e));
    if (!m) goto done;
    DO(mer_hubert_ctx_init(m, cpu, S, &x, &e));
    DO(mer_hubert_cuda_from_model(m, c, 8, S, MER_DTYPE_BF16, &g, &e));
    if (!x || !g) goto done;
    const mer_hubert_hparams *hp = &m->hp;
    const int n = 2, D = hp->n_embd, T = mer_hubert_n_frames(hp, S), C = hp->conv_dim[hp->n_conv - 1];
    const size_t TD = (size_t)T * D;
    float *wav = rand_vec((size_t)n * S, 1.f);
    mer_hubert_normalize(wav, n, S, 1);
    float *ef = malloc((size_t)n * T * C * 4), *lh = malloc(n * TD * 4), *cef = malloc((size_t)T * C * 4),
          *clh = malloc(TD * 4), *af = malloc((size_t)n * D * 4), *caf = malloc((size_t)n * D * 4);
    mer_hubert_out o[2];
    for (int b = 0; b < n; b++) o[b] = (mer_hubert_out){.extract_features = ef + (size_t)b * T * C, .last_hidden = lh + b * TD};
    DO(mer_hubert_cuda_encode(g, wav, n, S, o, NULL, &e));
    for (int b = 0; b < n; b++) {
        mer_hubert_out co = {.extract_features = cef, .last_hidden = clh};
        DO(mer_hubert_encode(x, wav + b * S, S, &co, NULL, &e));
        double e1 = max_rel_err(ef + (size_t)b * T * C, cef, (size_t)T * C), e2 = max_rel_err(lh + b * TD, clh, TD);
        CHECK_MSG(e1 <= 3e-2 && e2 <= 3e-2, "HuBERT-L random, clip %d: bf16 device vs CPU f32: extract_features %.3g, last_hidden %.3g",
                  b, e1, e2);
        printf("  HuBERT-L random clip %d: bf16 device vs CPU f32 rel err extract_features %.3g last_hidden %.3g\n", b, e1,
               e2);
    }
    DO(mer_hubert_cuda_pool(g, wav, n, S, -1, 0, af, &e));
    DO(mer_hubert_pool(x, wav, n, S, -1, 0, caf, &e));
    double e3 = max_rel_err(af, caf, (size_t)n * D);
    CHECK_MSG(e3 <= 3e-2, "HuBERT-L random: AffectGPT feature bf16 device vs CPU f32 rel err %.3g", e3);
    printf("  HuBERT-L random: AffectGPT feature rel err %.3g\n", e3);
    free(wav), free(ef), free(lh), free(cef), free(clh), free(af), free(caf);
done:
    mer_hubert_cuda_free(g);
    mer_hubert_ctx_free(x);
    mer_hubert_free(m);
    mer__config_free(cfg);
    mer_weights_close(w);
}

static void run(void) {
    mer_cuda *c = test_cuda_open("test_cuda_enc");
    if (!c) return;
    for (int k = 0; k < 2; k++) {
        const mer_dtype t = k ? MER_DTYPE_F32 : MER_DTYPE_BF16;
        test_layernorm(c, t, 1000);
        test_layernorm(c, t, 1024);
        test_layernorm(c, t, 512);
        test_gemm(c, t, 37, 64, 48);
        test_gemm(c, t, 300, 1024, 520);
        test_attention(c, t, 2, 100, 3, 64);
        test_attention(c, t, 3, 17, 4, 8);
    }
    test_gemm_tf32(c, 100, 1024, 520);
    test_attention(c, MER_DTYPE_BF16, 2, 257, 2, 64);
    test_attention(c, MER_DTYPE_BF16, 1, 5, 2, 128);
    test_conv0(c);
    for (int k = 0; k < 2; k++) {
        test_clip_tiny(c, k ? MER_DTYPE_BF16 : MER_DTYPE_F32);
        test_hubert_tiny(c, k ? MER_DTYPE_BF16 : MER_DTYPE_F32);
    }
    DO(mer_cuda_sync(c, &e));
    size_t held, in_use;
    mer_cuda_alloc_stats(c, &held, &in_use);
    CHECK_EQ_INT(in_use, 0); /* every model released its blocks to the shared context */
    mer_threadpool *pool = NULL;
    mer_cpu_ctx *cpu = NULL;
    DO(mer_threadpool_init(0, &pool, &e));
    DO(mer_cpu_ctx_init(pool, MER_ISA_AUTO, &cpu, &e));
    if (cpu && !getenv("MER_TEST_FAST")) {
        test_real_clip(c, cpu);
        test_real_hubert(c, cpu);
    }
    mer_cpu_ctx_free(cpu);
    mer_threadpool_free(pool);
    mer_cuda_free(c);
}

#else

static void run(void) {
    mer_err e = {0};
    mer_clip_cuda *g = NULL;
    mer_hubert_cuda *h = NULL;
    CHECK_EQ_INT(mer_clip_cuda_from_model(NULL, NULL, 1, MER_DTYPE_BF16, &g, &e), MER_E_UNSUPPORTED);
    CHECK(g == NULL && strstr(e.msg, "built without CUDA") != NULL);
    CHECK_EQ_INT(mer_hubert_cuda_from_model(NULL, NULL, 1, 16000, MER_DTYPE_BF16, &h, &e), MER_E_UNSUPPORTED);
    CHECK(h == NULL && strstr(e.msg, "built without CUDA") != NULL);
    CHECK_EQ_INT(mer_hubert_cuda_pool(NULL, NULL, 0, 0, -1, 0, NULL, &e), MER_E_UNSUPPORTED);
    printf("SKIP test_cuda_enc: built without CUDA (make CUDA=1)\n");
}

#endif
