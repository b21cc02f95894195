/* test_cuda.c - the CUDA backend and the Qwen2 forward on the device. Runs only where a GPU is present
 * in a CUDA=1 build; elsewhere it prints a SKIP line and passes.
 *
 * Kernels are checked against float64 references computed here from the same (bf16-rounded) inputs,
 * on fresh random data, with outputs poisoned first so that unwritten elements show: the GEMV (tails in
 * rows and K, 1..8 rows, every epilogue) and cuBLASLt matmuls, RMSNorm, bias + RoPE + cache store,
 * split-K decode attention and tensor-core prefill attention with grouped KV heads (d = 8, 64, 128),
 * argmax, embedding. The model is checked against HF transformers' logits and greedy tokens stored in
 * tests/fixtures/models/qwen2_tiny{,_tied}/expected.safetensors (bf16 weights, so 1e-2 relative), in
 * single and batched decoding, with and without the CUDA graph, and for device memory that stays flat
 * over 10,000 decode steps. */
#include "test.h"

#include <stdlib.h>

#include "core/dtype.h"
#include "io/weights.h"
#include "kernels/cuda/cuda_backend.h"
#include "models/qwen2_cuda.h"

#if MER_CUDA

// --- helpers -----------------------------------------------------------------------------------------

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / (double)(1ull << 52) - 1.0;
}

static uint16_t *rand_bf16(size_t n, double a, double *ref) { /* ref gets the rounded values */
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        h[i] = mer_fp32_to_bf16((float)(a * urand()));
        if (ref) ref[i] = mer_bf16_to_fp32(h[i]);
    }
    return h;
}

static double rel_err(const double *ref, const float *got, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        if (got[i] != got[i]) return 1e30; /* NaN: unwritten or broken */
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double rel_err_bf16(const double *ref, const uint16_t *got, size_t n) {
    float *f = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = mer_bf16_to_fp32(got[i]);
    double e = rel_err(ref, f, n);
    free(f);
    return e;
}

/* Calls taking `&e` report through it. */
static mer_err e;
#define DO(call) CHECK_MSG((call) == MER_OK, "%s -> %s", #call, e.msg)

static void *dev_upload(mer_cuda *c, const void *h, size_t n) {
    void *d = NULL;
    DO(mer_cuda_alloc(c, n, &d, &e));
    DO(mer_cuda_upload(c, d, h, n, &e));
    return d;
}

static void *dev_poison(mer_cuda *c, size_t n) {
    void *d = NULL;
    DO(mer_cuda_alloc(c, n, &d, &e));
    DO(mer_cuda_memset(c, d, 0xff, n, &e)); /* NaN in f32 and bf16 */
    return d;
}

// --- matmul ------------------------------------------------------------------------------------------

static void test_matmul_case(mer_cuda *c, int n_tok, int K, int N, mer_cuda_epi epi, int path) {
    const int n_y = epi == MER_CUDA_EPI_SILU_BF16 ? N / 2 : N;
    double *wr = malloc((size_t)N * K * sizeof(double)), *xr = malloc((size_t)n_tok * K * sizeof(double));
    uint16_t *wh = rand_bf16((size_t)N * K, 1.0 / sqrt(K), wr), *xh = rand_bf16((size_t)n_tok * K, 1.0, xr);
    double *ref = calloc((size_t)n_tok * n_y, sizeof(double));
    float *y0 = malloc((size_t)n_tok * n_y * sizeof(float));
    for (size_t i = 0; i < (size_t)n_tok * n_y; i++) y0[i] = (float)urand();
    for (int t = 0; t < n_tok; t++)
        for (int r = 0; r < n_y; r++) {
            double a = 0, b = 0;
            for (int k = 0; k < K; k++) a += xr[(size_t)t * K + k] * wr[(size_t)r * K + k];
            if (epi == MER_CUDA_EPI_SILU_BF16) {
                for (int k = 0; k < K; k++) b += xr[(size_t)t * K + k] * wr[(size_t)(r + n_y) * K + k];
                a = a / (1 + exp(-a)) * b;
            }
            if (epi == MER_CUDA_EPI_F32_ADD) a += y0[(size_t)t * n_y + r];
            ref[(size_t)t * n_y + r] = a;
        }
    void *wd = dev_upload(c, wh, (size_t)N * K * 2), *xd = dev_upload(c, xh, (size_t)n_tok * K * 2);
    const int f32 = epi == MER_CUDA_EPI_F32 || epi == MER_CUDA_EPI_F32_ADD;
    const size_t yb = (size_t)n_tok * n_y * (f32 ? 4 : 2);
    void *yd = epi == MER_CUDA_EPI_F32_ADD ? dev_upload(c, y0, yb) : dev_poison(c, yb);
    mer_status st = path ? mer_cuda_matmul_cublas(c, yd, n_y, xd, K, wd, n_tok, K, N, epi, &e)
                         : mer_cuda_matmul_gemv(c, yd, n_y, xd, K, wd, n_tok, K, N, epi, &e);
    CHECK_MSG(st == MER_OK, "matmul: %s", e.msg);
    void *yh = malloc(yb);
    DO(mer_cuda_download(c, yh, yd, yb, &e));
    double err = f32 ? rel_err(ref, yh, (size_t)n_tok * n_y) : rel_err_bf16(ref, yh, (size_t)n_tok * n_y);
    double tol = f32 ? 2e-5 : 4e-3;
    CHECK_MSG(err < tol, "%s matmul n_tok %d K %d N %d epi %d: rel err %.3g", path ? "cublas" : "gemv", n_tok, K, N,
              (int)epi, err);
    mer_cuda_release(c, wd);
    mer_cuda_release(c, xd);
    mer_cuda_release(c, yd);
    free(yh); free(wr); free(xr); free(wh); free(xh); free(ref); free(y0);
}

static void test_matmul(mer_cuda *c) {
    static const int toks[] = {1, 2, 5, 8};
    for (int i = 0; i < 4; i++)
        for (int epi = 0; epi < 4; epi++) test_matmul_case(c, toks[i], 264, 100, (mer_cuda_epi)epi, 0);
    test_matmul_case(c, 3, 1024, 4200, MER_CUDA_EPI_F32, 0); /* many blocks, two-tile variant */
    mer_cuda_set_gemv_tile(c, 2);
    test_matmul_case(c, 4, 520, 72, MER_CUDA_EPI_F32_ADD, 0);
    mer_cuda_set_gemv_tile(c, 1);
    test_matmul_case(c, 4, 520, 72, MER_CUDA_EPI_F32, 0);
    mer_cuda_set_gemv_tile(c, 0);
    for (int epi = 0; epi < 4; epi++) test_matmul_case(c, 37, 264, 100, (mer_cuda_epi)epi, 1);
    test_matmul_case(c, 1, 64, 32, MER_CUDA_EPI_F32, 1);
}

// --- small kernels -----------------------------------------------------------------------------------

static void test_rmsnorm(mer_cuda *c, int rows, int n) {
    float *x = malloc((size_t)rows * n * 4), *w = malloc((size_t)n * 4);
    double *ref = malloc((size_t)rows * n * sizeof(double));
    for (int i = 0; i < rows * n; i++) x[i] = (float)(3 * urand());
    for (int i = 0; i < n; i++) w[i] = (float)(1 + 0.5 * urand());
    const double eps = 1e-6;
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += (double)x[r * n + i] * x[r * n + i];
        double rs = 1 / sqrt(s / n + eps);
        for (int i = 0; i < n; i++) ref[r * n + i] = x[r * n + i] * rs * w[i];
    }
    float *xd = dev_upload(c, x, (size_t)rows * n * 4), *wd = dev_upload(c, w, (size_t)n * 4);
    uint16_t *yd = dev_poison(c, (size_t)rows * n * 2), *yh = malloc((size_t)rows * n * 2);
    DO(mer_cuda_rmsnorm(c, yd, xd, wd, rows, n, (float)eps, &e));
    DO(mer_cuda_download(c, yh, yd, (size_t)rows * n * 2, &e));
    double err = rel_err_bf16(ref, yh, (size_t)rows * n);
    CHECK_MSG(err < 3e-3, "rmsnorm %dx%d: rel err %.3g", rows, n, err);
    mer_cuda_release(c, xd); mer_cuda_release(c, wd); mer_cuda_release(c, yd);
    free(x); free(w); free(ref); free(yh);
}

static void test_qkv_rope(mer_cuda *c) {
    enum { T = 5, H = 4, KV = 2, D = 16, NCTX = 2100, NSLOT = 3 };
    const int pos[T] = {0, 3, 100, 7, 2047}, slot[T] = {0, 2, 1, 1, 2};
    const int ld = (H + 2 * KV) * D;
    float *qkv = malloc((size_t)T * ld * 4), *bias = malloc((size_t)ld * 4), inv[D / 2];
    for (int i = 0; i < T * ld; i++) qkv[i] = (float)urand();
    for (int i = 0; i < ld; i++) bias[i] = (float)(0.1 * urand());
    const double theta = 1e6;
    for (int i = 0; i < D / 2; i++) inv[i] = (float)(1.0 / pow(theta, 2.0 * i / D));
    int32_t io[2 * T];
    for (int t = 0; t < T; t++) io[t] = pos[t], io[T + t] = slot[t];
    const size_t cache = (size_t)NSLOT * KV * NCTX * D;
    float *qkvd = dev_upload(c, qkv, (size_t)T * ld * 4), *bd = dev_upload(c, bias, (size_t)ld * 4);
    float *invd = dev_upload(c, inv, sizeof inv);
    int32_t *iod = dev_upload(c, io, sizeof io);
    uint16_t *qd = dev_poison(c, (size_t)T * H * D * 2), *kd = dev_poison(c, cache * 2), *vd = dev_poison(c, cache * 2);
    DO(mer_cuda_qkv_rope(c, qkvd, bd, invd, qd, kd, vd, iod, iod + T, T, H, KV, D, NCTX, &e));
    uint16_t *qh = malloc((size_t)T * H * D * 2), *kh = malloc(cache * 2), *vh = malloc(cache * 2);
    DO(mer_cuda_download(c, qh, qd, (size_t)T * H * D * 2, &e));
    DO(mer_cuda_download(c, kh, kd, cache * 2, &e));
    DO(mer_cuda_download(c, vh, vd, cache * 2, &e));
    double maxerr = 0;
    for (int t = 0; t < T; t++)
        for (int hh = 0; hh < H + 2 * KV; hh++)
            for (int i = 0; i < D; i++) {
                const float *row = qkv + (size_t)t * ld;
                double x = row[hh * D + i] + bias[hh * D + i], y = x;
                if (hh < H + KV) { /* HF: x * cos + rotate_half(x) * sin, angle in f32 */
                    int j = i % (D / 2);
                    double ang = (double)((float)pos[t] * inv[j]);
                    double other = row[hh * D + (i + D / 2) % D] + bias[hh * D + (i + D / 2) % D];
                    y = x * cos(ang) + (i < D / 2 ? -other : other) * sin(ang);
                }
                uint16_t got;
                if (hh < H) got = qh[((size_t)t * H + hh) * D + i];
                else if (hh < H + KV) got = kh[(((size_t)slot[t] * KV + hh - H) * NCTX + pos[t]) * D + i];
                else got = vh[(((size_t)slot[t] * KV + hh - H - KV) * NCTX + pos[t]) * D + i];
                double d = fabs(mer_bf16_to_fp32(got) - y) / (fabs(y) + 1e-2);
                if (!(d <= maxerr)) maxerr = d;
            }
    CHECK_MSG(maxerr < 8e-3, "qkv_rope: max rel err %.3g", maxerr);
    mer_cuda_release(c, qkvd); mer_cuda_release(c, bd); mer_cuda_release(c, invd); mer_cuda_release(c, iod);
    mer_cuda_release(c, qd); mer_cuda_release(c, kd); mer_cuda_release(c, vd);
    free(qkv); free(bias); free(qh); free(kh); free(vh);
}

static void test_argmax_embed(mer_cuda *c) {
    enum { R = 3, N = 70001 };
    float *x = malloc((size_t)R * N * 4);
    for (int i = 0; i < R * N; i++) x[i] = (float)urand();
    x[0 * N + 5] = 7; x[0 * N + 9000] = 7;   /* tie: the first wins */
    x[1 * N + N - 1] = 9;
    x[2 * N + 0] = 3;
    float *xd = dev_upload(c, x, (size_t)R * N * 4);
    int32_t *od = dev_poison(c, R * 4), oh[R];
    DO(mer_cuda_argmax(c, od, xd, R, N, &e));
    DO(mer_cuda_download(c, oh, od, sizeof oh, &e));
    CHECK_EQ_INT(oh[0], 5);
    CHECK_EQ_INT(oh[1], N - 1);
    CHECK_EQ_INT(oh[2], 0);
    /* embedding */
    enum { V = 50, C = 24 };
    double tab_ref[V * C];
    uint16_t *tab = rand_bf16(V * C, 2.0, tab_ref);
    int32_t ids[4] = {3, 0, 49, 3};
    uint16_t *td = dev_upload(c, tab, sizeof(uint16_t) * V * C);
    int32_t *idd = dev_upload(c, ids, sizeof ids);
    float *yd = dev_poison(c, 4 * C * 4), yh[4 * C];
    DO(mer_cuda_embed(c, yd, td, V, C, idd, 4, &e));
    DO(mer_cuda_download(c, yh, yd, sizeof yh, &e));
    int same = 1;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < C; j++) same &= yh[i * C + j] == (float)tab_ref[ids[i] * C + j];
    CHECK_MSG(same, "embedding rows differ");
    mer_cuda_release(c, xd); mer_cuda_release(c, od); mer_cuda_release(c, td); mer_cuda_release(c, idd);
    mer_cuda_release(c, yd);
    free(x); free(tab);
}

// --- attention ---------------------------------------------------------------------------------------

/* Reference: token t (slot sl[t], position ps[t]) attends to keys 0..ps[t]. */
static void attn_ref(double *out, const double *q, const double *k, const double *v, const int *ps, const int *sl,
                     int T, int H, int KV, int d, int n_ctx, double scale) {
    const int rep = H / KV;
    double *s = malloc((size_t)n_ctx * sizeof(double));
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            const int g = h / rep, len = ps[t] + 1;
            const double *qr = q + ((size_t)t * H + h) * d;
            const size_t base = ((size_t)sl[t] * KV + g) * n_ctx * d;
            double mx = -1e300, sum = 0;
            for (int j = 0; j < len; j++) {
                double a = 0;
                for (int i = 0; i < d; i++) a += qr[i] * k[base + (size_t)j * d + i];
                s[j] = a * scale;
                if (s[j] > mx) mx = s[j];
            }
            for (int j = 0; j < len; j++) sum += (s[j] = exp(s[j] - mx));
            for (int i = 0; i < d; i++) {
                double a = 0;
                for (int j = 0; j < len; j++) a += s[j] * v[base + (size_t)j * d + i];
                out[((size_t)t * H + h) * d + i] = a / sum;
            }
        }
    free(s);
}

static void test_attention_case(mer_cuda *c, int T, int H, int KV, int d, int n_ctx, int n_slot, const int *ps,
                                const int *sl, int prefill, int n_split) {
    const size_t cache = (size_t)n_slot * KV * n_ctx * d;
    double *qr = malloc((size_t)T * H * d * sizeof(double)), *kr = malloc(cache * sizeof(double)),
           *vr = malloc(cache * sizeof(double)), *ref = malloc((size_t)T * H * d * sizeof(double));
    uint16_t *qh = rand_bf16((size_t)T * H * d, 1.0, qr), *kh = rand_bf16(cache, 1.5, kr), *vh = rand_bf16(cache, 1.0, vr);
    const double scale = 1.0 / sqrt(d);
    attn_ref(ref, qr, kr, vr, ps, sl, T, H, KV, d, n_ctx, scale);
    int32_t *io = malloc(2 * (size_t)T * sizeof(int32_t));
    for (int t = 0; t < T; t++) io[t] = ps[t], io[T + t] = sl[t];
    uint16_t *qd = dev_upload(c, qh, (size_t)T * H * d * 2), *kd = dev_upload(c, kh, cache * 2),
             *vd = dev_upload(c, vh, cache * 2), *od = dev_poison(c, (size_t)T * H * d * 2);
    int32_t *iod = dev_upload(c, io, 2 * (size_t)T * sizeof(int32_t));
    void *ws = NULL;
    DO(mer_cuda_alloc(c, mer_cuda_attn_decode_ws(T, H, d, n_split), &ws, &e));
    mer_status st = prefill ? mer_cuda_attn_prefill(c, od, qd, kd, vd, sl[0], ps[0], T, H, KV, d, n_ctx, (float)scale,
                                                    iod, iod + T, &e)
                            : mer_cuda_attn_decode(c, od, qd, kd, vd, iod, iod + T, T, H, KV, d, n_ctx, n_split,
                                                   (float)scale, ws, &e);
    CHECK_MSG(st == MER_OK, "attention: %s", e.msg);
    uint16_t *oh = malloc((size_t)T * H * d * 2);
    DO(mer_cuda_download(c, oh, od, (size_t)T * H * d * 2, &e));
    double err = rel_err_bf16(ref, oh, (size_t)T * H * d);
    CHECK_MSG(err < 8e-3, "%s attention T %d H %d KV %d d %d splits %d: rel err %.3g", prefill ? "prefill" : "decode", T,
              H, KV, d, n_split, err);
    mer_cuda_release(c, qd); mer_cuda_release(c, kd); mer_cuda_release(c, vd); mer_cuda_release(c, od);
    mer_cuda_release(c, iod); mer_cuda_release(c, ws);
    free(qr); free(kr); free(vr); free(ref); free(qh); free(kh); free(vh); free(io); free(oh);
}

static void test_attention(mer_cuda *c) {
    { /* decode: 3 sequences of different lengths */
        const int ps[3] = {299, 0, 77}, sl[3] = {2, 0, 1};
        test_attention_case(c, 3, 28, 4, 128, 300, 3, ps, sl, 0, 16);
        test_attention_case(c, 3, 28, 4, 128, 300, 3, ps, sl, 0, 1);
        test_attention_case(c, 3, 8, 8, 64, 300, 3, ps, sl, 0, 7);
        test_attention_case(c, 3, 4, 2, 8, 300, 3, ps, sl, 0, 3);
    }
    { /* prefill: 100 tokens after 37 cached positions, in slot 1 */
        enum { T = 100 };
        int ps[T], sl[T];
        for (int t = 0; t < T; t++) ps[t] = 37 + t, sl[t] = 1;
        test_attention_case(c, T, 14, 2, 128, 160, 2, ps, sl, 1, 1);
        test_attention_case(c, T, 4, 4, 64, 160, 2, ps, sl, 1, 1);
        test_attention_case(c, T, 4, 2, 8, 160, 2, ps, sl, 1, 1); /* falls back to the SIMT kernel */
        for (int t = 0; t < 9; t++) ps[t] = t, sl[t] = 0;
        test_attention_case(c, 9, 7, 1, 128, 16, 1, ps, sl, 1, 1);
    }
}

// --- the model against HF ----------------------------------------------------------------------------

static void test_model(const char *dir) {
    char path[512];
    mer_weights *w = NULL, *ex = NULL;
    DO(mer_weights_open(dir, &w, &e));
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    DO(mer_weights_open(path, &ex, &e));
    if (!w || !ex) goto out;
    const mer_wtensor *tid = mer_weights_find(ex, "ids"), *tlog = mer_weights_find(ex, "logits"),
                      *tgr = mer_weights_find(ex, "greedy");
    CHECK(tid && tlog && tgr);
    if (!tid || !tlog || !tgr) goto out;
    const int n = (int)tid->shape[0], n_gen = (int)tgr->shape[0];
    int32_t ids[64], ref_gen[64];
    memcpy(ids, tid->data, (size_t)n * 4);
    memcpy(ref_gen, tgr->data, (size_t)n_gen * 4);

    mer_qwen2_cuda_params p = mer_qwen2_cuda_default_params();
    p.n_ctx = 256;
    p.n_seq = 3;
    mer_qwen2_cuda *m = NULL;
    { /* one prefill forward of all tokens (cuBLASLt matmuls, prefill attention kernel) */
        p.n_batch = 512;
        DO(mer_qwen2_cuda_load(w, &p, &m, &e));
        if (!m) goto out;
        const int V = mer_qwen2_cuda_hparams(m)->n_vocab;
        float *lg = malloc((size_t)n * V * sizeof(float));
        double *ref = malloc((size_t)n * V * sizeof(double));
        const float *rl = tlog->data;
        for (size_t i = 0; i < (size_t)n * V; i++) ref[i] = rl[i];
        DO(mer_qwen2_cuda_prefill(m, 0, ids, n, lg, 1, NULL, &e));
        double err = rel_err(ref, lg, (size_t)n * V);
        printf("  %s: logits rel err %.3g in one forward (bf16 weights)\n", dir, err);
        CHECK_MSG(err < 1e-2, "%s: logits rel err %.3g", dir, err);
        free(lg);
        free(ref);
        mer_qwen2_cuda_free(m);
        m = NULL;
    }
    p.n_batch = 5; /* several prefill chunks, each on the GEMV */
    DO(mer_qwen2_cuda_load(w, &p, &m, &e));
    if (!m) goto out;
    const int V = mer_qwen2_cuda_hparams(m)->n_vocab;
    CHECK_EQ_INT(V, tlog->shape[1]);
    float *lg = malloc((size_t)n * V * sizeof(float));
    double *ref = malloc((size_t)n * V * sizeof(double));
    const float *rl = tlog->data;
    for (size_t i = 0; i < (size_t)n * V; i++) ref[i] = rl[i];
    int32_t g0 = -1;
    DO(mer_qwen2_cuda_prefill(m, 0, ids, n, lg, 1, &g0, &e));
    double err = rel_err(ref, lg, (size_t)n * V);
    printf("  %s: logits rel err %.3g in chunks of 5 (bf16 weights)\n", dir, err);
    CHECK_MSG(err < 1e-2, "%s: logits rel err %.3g", dir, err);
    CHECK_EQ_INT(g0, ref_gen[0]);

    /* greedy decode in slot 0 (graph), then slots 1 and 2 in lockstep, with and without graph */
    int32_t gen[64], cur = g0;
    gen[0] = g0;
    for (int i = 1; i < n_gen; i++) {
        int s0 = 0;
        DO(mer_qwen2_cuda_decode(m, 1, &s0, &cur, NULL, &cur, &e));
        gen[i] = cur;
    }
    int same = 1;
    for (int i = 0; i < n_gen; i++) same &= gen[i] == ref_gen[i];
    CHECK_MSG(same, "%s: greedy tokens differ from HF", dir);
    CHECK_EQ_INT(mer_qwen2_cuda_n_past(m, 0), n + n_gen - 1);

    for (int use_graph = 1; use_graph >= 0; use_graph--) {
        mer_qwen2_cuda_set_graph(m, use_graph);
        int slots[2] = {2, 1};
        int32_t cur2[2], g[2];
        DO(mer_qwen2_cuda_reset(m, 1, &e));
        DO(mer_qwen2_cuda_reset(m, 2, &e));
        DO(mer_qwen2_cuda_prefill(m, 1, ids, n, NULL, 0, &g[1], &e));
        DO(mer_qwen2_cuda_prefill(m, 2, ids, n, NULL, 0, &g[0], &e));
        cur2[0] = g[0];
        cur2[1] = g[1];
        int ok = g[0] == ref_gen[0] && g[1] == ref_gen[0];
        for (int i = 1; i < n_gen; i++) {
            DO(mer_qwen2_cuda_decode(m, 2, slots, cur2, NULL, cur2, &e));
            ok &= cur2[0] == ref_gen[i] && cur2[1] == ref_gen[i];
        }
        CHECK_MSG(ok, "%s: batched greedy (graph %d) differs from HF", dir, use_graph);
    }
    mer_qwen2_cuda_set_graph(m, 1);

    /* errors */
    {
        int s0 = 0;
        int32_t bad = V;
        mer_err e2 = {0};
        CHECK_EQ_INT(mer_qwen2_cuda_decode(m, 1, &s0, &bad, NULL, NULL, &e2), MER_E_ARG);
        CHECK(strstr(e2.msg, "vocabulary") != NULL);
        CHECK_EQ_INT(mer_qwen2_cuda_prefill(m, 3, ids, 1, NULL, 0, NULL, &e2), MER_E_ARG);
        int32_t *many = calloc(300, sizeof(int32_t));
        CHECK_EQ_INT(mer_qwen2_cuda_prefill(m, 1, many, 300, NULL, 0, NULL, &e2), MER_E_RANGE);
        free(many);
        int twice[2] = {1, 1};
        int32_t two[2] = {1, 2};
        CHECK_EQ_INT(mer_qwen2_cuda_decode(m, 2, twice, two, NULL, NULL, &e2), MER_E_ARG);
    }

    /* no leak over 10,000 decode steps (sequence 0 restarted every 200 positions) */
    {
        mer_cuda *c = mer_qwen2_cuda_backend(m);
        size_t f0 = 0, f1 = 0, tot = 0, held0, held1, use0, use1;
        int s0 = 0;
        int32_t tok = 1;
        DO(mer_qwen2_cuda_reset(m, 0, &e));
        DO(mer_qwen2_cuda_decode(m, 1, &s0, &tok, NULL, &tok, &e));
        DO(mer_cuda_mem_info(c, &f0, &tot, &e));
        mer_cuda_alloc_stats(c, &held0, &use0);
        mer_status st = MER_OK;
        for (int i = 0; i < 10000 && st == MER_OK; i++) {
            if (mer_qwen2_cuda_n_past(m, 0) >= 200) st = mer_qwen2_cuda_reset(m, 0, &e);
            if (!st) st = mer_qwen2_cuda_decode(m, 1, &s0, &tok, NULL, &tok, &e);
        }
        CHECK_MSG(st == MER_OK, "10,000 steps: %s", e.msg);
        DO(mer_cuda_mem_info(c, &f1, &tot, &e));
        mer_cuda_alloc_stats(c, &held1, &use1);
        printf("  %s: device free %zu -> %zu bytes over 10,000 decode steps\n", dir, f0, f1);
        CHECK_EQ_INT(f1, f0);
        CHECK_EQ_INT(held1, held0);
        CHECK_EQ_INT(use1, use0);
    }
    free(lg);
    free(ref);
    mer_qwen2_cuda_free(m);
out:
    mer_weights_close(w);
    mer_weights_close(ex);
}

static void test_errors(void) {
    mer_cuda *c = NULL;
    mer_err e2 = {0};
    CHECK_EQ_INT(mer_cuda_init(999, &c, &e2), MER_E_DEVICE);
    CHECK(c == NULL && strstr(e2.msg, "999") != NULL);
}

static void run(void) {
    if (mer_cuda_device_count() == 0) {
        printf("SKIP test_cuda: no CUDA device\n");
        return;
    }
    mer_cuda *c = NULL;
    DO(mer_cuda_init(0, &c, &e));
    if (!c) return;
    printf("  device: %s\n", mer_cuda_name(c));
    for (int pdl = 1; pdl >= 0; pdl--) {
        mer_cuda_set_pdl(c, pdl);
        test_matmul(c);
        test_rmsnorm(c, 3, 3584);
        test_rmsnorm(c, 2, 37);
        test_qkv_rope(c);
        test_argmax_embed(c);
        test_attention(c);
    }
    DO(mer_cuda_sync(c, &e));
    size_t held, in_use;
    mer_cuda_alloc_stats(c, &held, &in_use);
    CHECK_EQ_INT(in_use, 0);
    mer_cuda_free(c);
    test_errors();
    test_model(FIXTURES "/models/qwen2_tiny");
    test_model(FIXTURES "/models/qwen2_tiny_tied");
}

#else

static void run(void) {
    mer_qwen2_cuda *m = NULL;
    mer_err e = {0};
    mer_qwen2_cuda_params p = mer_qwen2_cuda_default_params();
    mer_qwen2_cuda_hp hp = {256, 32, 2, 4, 2, 8, 64, 1e4f, 1e-6f, 0};
    CHECK_EQ_INT(mer_qwen2_cuda_init_random(&hp, 1, &p, &m, &e), MER_E_UNSUPPORTED);
    CHECK(m == NULL && strstr(e.msg, "CUDA") != NULL);
    printf("SKIP test_cuda: built without CUDA (make CUDA=1)\n");
}

#endif
