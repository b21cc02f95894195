/* test_cuda.c - the CUDA backend and the Qwen2 forward on the device. Runs only where a GPU is present
 * in a CUDA=1 build; elsewhere it prints a SKIP line and passes.
 *
 * Kernels are checked against float64 references computed here from the same (bf16-rounded) inputs,
 * on fresh random data, with outputs poisoned first so that unwritten elements show: the GEMV (tails in
 * rows and K, 1..8 rows, every epilogue) and cuBLASLt matmuls, RMSNorm, bias + RoPE + cache store,
 * split-K decode attention and tensor-core prefill attention with grouped KV heads (d = 8, 64, 128),
 * argmax, embedding; bf16 and f32 activations. The model is checked against HF transformers' logits and
 * greedy tokens stored in tests/fixtures/models/qwen2_tiny{,_tied}/expected.safetensors: the f32 path to
 * 1e-4 with identical greedy tokens, the bf16 path to 2e-2; single and batched decoding, with and
 * without the CUDA graph; device memory that stays flat over 10,000 decode steps. */
#include "test.h"

#include <stdlib.h>

#include "core/dtype.h"
#include "io/weights.h"
#include "kernels/cuda/cuda_backend.h"
#include "models/qwen2_cuda.h"

#if MER_CUDA
#include "cuda_open.h"

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
    const int n_y = epi == MER_CUDA_EPI_SILU ? N / 2 : N;
    double *wr = malloc((size_t)N * K * sizeof(double)), *xr = malloc((size_t)n_tok * K * sizeof(double));
    uint16_t *wh = rand_bf16((size_t)N * K, 1.0 / sqrt(K), wr), *xh = rand_bf16((size_t)n_tok * K, 1.0, xr);
    double *ref = calloc((size_t)n_tok * n_y, sizeof(double));
    float *y0 = malloc((size_t)n_tok * n_y * sizeof(float));
    for (size_t i = 0; i < (size_t)n_tok * n_y; i++) y0[i] = (float)urand();
    for (int t = 0; t < n_tok; t++)
        for (int r = 0; r < n_y; r++) {
            double a = 0, b = 0;
            for (int k = 0; k < K; k++) a += xr[(size_t)t * K + k] * wr[(size_t)r * K + k];
            if (epi == MER_CUDA_EPI_SILU) {
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
    mer_status st = path ? mer_cuda_matmul_cublas(c, yd, n_y, xd, K, wd, MER_DTYPE_BF16, n_tok, K, N, epi, &e)
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

/* The f32 path: cuBLASLt in full f32 (no TF32: 1e-6 relative, where TF32 would give about 1e-3). */
static void test_matmul_f32(mer_cuda *c, int n_tok, int K, int N, mer_cuda_epi epi) {
    const int n_y = epi == MER_CUDA_EPI_SILU ? N / 2 : N;
    float *w = malloc((size_t)N * K * 4), *x = malloc((size_t)n_tok * K * 4), *y0 = malloc((size_t)n_tok * n_y * 4);
    double *ref = malloc((size_t)n_tok * n_y * sizeof(double));
    for (size_t i = 0; i < (size_t)N * K; i++) w[i] = (float)(urand() / sqrt(K));
    for (size_t i = 0; i < (size_t)n_tok * K; i++) x[i] = (float)urand();
    for (size_t i = 0; i < (size_t)n_tok * n_y; i++) y0[i] = (float)urand();
    for (int t = 0; t < n_tok; t++)
        for (int r = 0; r < n_y; r++) {
            double a = 0, b = 0;
            for (int k = 0; k < K; k++) a += (double)x[(size_t)t * K + k] * w[(size_t)r * K + k];
            if (epi == MER_CUDA_EPI_SILU) {
                for (int k = 0; k < K; k++) b += (double)x[(size_t)t * K + k] * w[(size_t)(r + n_y) * K + k];
                a = a / (1 + exp(-a)) * b;
            }
            if (epi == MER_CUDA_EPI_F32_ADD) a += y0[(size_t)t * n_y + r];
            ref[(size_t)t * n_y + r] = a;
        }
    void *wd = dev_upload(c, w, (size_t)N * K * 4), *xd = dev_upload(c, x, (size_t)n_tok * K * 4);
    void *yd = epi == MER_CUDA_EPI_F32_ADD ? dev_upload(c, y0, (size_t)n_tok * n_y * 4) : dev_poison(c, (size_t)n_tok * n_y * 4);
    DO(mer_cuda_matmul(c, yd, n_y, xd, K, wd, MER_DTYPE_F32, n_tok, K, N, epi, &e));
    float *yh = malloc((size_t)n_tok * n_y * 4);
    DO(mer_cuda_download(c, yh, yd, (size_t)n_tok * n_y * 4, &e));
    double err = rel_err(ref, yh, (size_t)n_tok * n_y);
    CHECK_MSG(err < 2e-6, "f32 matmul n_tok %d K %d N %d epi %d: rel err %.3g", n_tok, K, N, (int)epi, err);
    mer_cuda_release(c, wd); mer_cuda_release(c, xd); mer_cuda_release(c, yd);
    free(w); free(x); free(y0); free(ref); free(yh);
}

static void test_matmul(mer_cuda *c) {
    test_matmul_f32(c, 1, 1028, 96, MER_CUDA_EPI_F32);
    test_matmul_f32(c, 12, 32, 64, MER_CUDA_EPI_F32_ADD);
    test_matmul_f32(c, 5, 64, 128, MER_CUDA_EPI_SILU);
    static const int toks[] = {1, 2, 5, 8};
    for (int i = 0; i < 4; i++)
        for (int epi = 0; epi < 4; epi++) test_matmul_case(c, toks[i], 264, 100, (mer_cuda_epi)epi, 0);
    test_matmul_case(c, 3, 1024, 4200, MER_CUDA_EPI_F32, 0); /* many blocks, two-tile variant */
    for (int nw = 4; nw <= 16; nw *= 2) { /* every warp count */
        mer_cuda_set_gemv_warps(c, nw);
        test_matmul_case(c, 7, 2056, 40, MER_CUDA_EPI_F32_ADD, 0);
        test_matmul_case(c, 8, 264, 64, MER_CUDA_EPI_SILU, 0);
    }
    mer_cuda_set_gemv_warps(c, 0);
    mer_cuda_set_gemv_tile(c, 2);
    test_matmul_case(c, 4, 520, 72, MER_CUDA_EPI_F32_ADD, 0);
    mer_cuda_set_gemv_tile(c, 1);
    test_matmul_case(c, 4, 520, 72, MER_CUDA_EPI_F32, 0);
    mer_cuda_set_gemv_tile(c, 0);
    for (int epi = 0; epi < 4; epi++) test_matmul_case(c, 37, 264, 100, (mer_cuda_epi)epi, 1);
    test_matmul_case(c, 1, 64, 32, MER_CUDA_EPI_F32, 1);
}

// --- small kernels -----------------------------------------------------------------------------------

static void test_rmsnorm(mer_cuda *c, int rows, int n, mer_dtype t) {
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
    const size_t es = t == MER_DTYPE_F32 ? 4 : 2;
    void *yd = dev_poison(c, (size_t)rows * n * es), *yh = malloc((size_t)rows * n * es);
    DO(mer_cuda_rmsnorm(c, yd, t, xd, wd, rows, n, (float)eps, &e));
    DO(mer_cuda_download(c, yh, yd, (size_t)rows * n * es, &e));
    double err = es == 4 ? rel_err(ref, yh, (size_t)rows * n) : rel_err_bf16(ref, yh, (size_t)rows * n);
    CHECK_MSG(err < (es == 4 ? 1e-6 : 3e-3), "rmsnorm %dx%d %s: rel err %.3g", rows, n, mer_dtype_name(t), err);
    mer_cuda_release(c, xd); mer_cuda_release(c, wd); mer_cuda_release(c, yd);
    free(x); free(w); free(ref); free(yh);
}

static float get_act(const void *p, size_t i, mer_dtype t) {
    return t == MER_DTYPE_F32 ? ((const float *)p)[i] : mer_bf16_to_fp32(((const uint16_t *)p)[i]);
}

static void test_qkv_rope(mer_cuda *c, mer_dtype t) {
    enum { T = 5, H = 4, KV = 2, D = 16, NCTX = 2100, NSLOT = 3 };
    const int pos[T] = {0, 3, 100, 7, 2047}, slot[T] = {0, 2, 1, 1, 2};
    const int ld = (H + 2 * KV) * D;
    float *qkv = malloc((size_t)T * ld * 4), *bias = malloc((size_t)ld * 4), inv[D / 2];
    for (int i = 0; i < T * ld; i++) qkv[i] = (float)urand();
    for (int i = 0; i < ld; i++) bias[i] = (float)(0.1 * urand());
    const double theta = 1e6;
    for (int i = 0; i < D / 2; i++) inv[i] = (float)(1.0 / pow(theta, 2.0 * i / D));
    int32_t io[2 * T];
    for (int i = 0; i < T; i++) io[i] = pos[i], io[T + i] = slot[i];
    const size_t cache = (size_t)NSLOT * KV * NCTX * D;
    float *qkvd = dev_upload(c, qkv, (size_t)T * ld * 4), *bd = dev_upload(c, bias, (size_t)ld * 4);
    float *invd = dev_upload(c, inv, sizeof inv);
    int32_t *iod = dev_upload(c, io, sizeof io);
    const size_t es = t == MER_DTYPE_F32 ? 4 : 2;
    void *qd = dev_poison(c, (size_t)T * H * D * es), *kd = dev_poison(c, cache * es), *vd = dev_poison(c, cache * es);
    DO(mer_cuda_qkv_rope(c, qkvd, bd, invd, qd, kd, vd, t, iod, iod + T, T, H, KV, D, NCTX, &e));
    void *qh = malloc((size_t)T * H * D * es), *kh = malloc(cache * es), *vh = malloc(cache * es);
    DO(mer_cuda_download(c, qh, qd, (size_t)T * H * D * es, &e));
    DO(mer_cuda_download(c, kh, kd, cache * es, &e));
    DO(mer_cuda_download(c, vh, vd, cache * es, &e));
    double maxerr = 0;
    for (int tk = 0; tk < T; tk++)
        for (int hh = 0; hh < H + 2 * KV; hh++)
            for (int i = 0; i < D; i++) {
                const float *row = qkv + (size_t)tk * ld;
                double x = row[hh * D + i] + bias[hh * D + i], y = x;
                if (hh < H + KV) { /* HF: x * cos + rotate_half(x) * sin, angle in f32 */
                    int j = i % (D / 2);
                    double ang = (double)((float)pos[tk] * inv[j]);
                    double other = row[hh * D + (i + D / 2) % D] + bias[hh * D + (i + D / 2) % D];
                    y = x * cos(ang) + (i < D / 2 ? -other : other) * sin(ang);
                }
                float got;
                if (hh < H) got = get_act(qh, ((size_t)tk * H + hh) * D + i, t);
                else if (hh < H + KV) got = get_act(kh, (((size_t)slot[tk] * KV + hh - H) * NCTX + pos[tk]) * D + i, t);
                else got = get_act(vh, (((size_t)slot[tk] * KV + hh - H - KV) * NCTX + pos[tk]) * D + i, t);
                double d = fabs(got - y) / (fabs(y) + 1e-2);
                if (!(d <= maxerr)) maxerr = d;
            }
    CHECK_MSG(maxerr < (es == 4 ? 2e-5 : 8e-3), "qkv_rope %s: max rel err %.3g", mer_dtype_name(t), maxerr);
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
    DO(mer_cuda_embed(c, yd, td, MER_DTYPE_BF16, V, C, idd, 4, &e));
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

/* n random values of dtype t (bf16 or f32) in [-a, a); ref gets them as doubles. */
static void *rand_act(size_t n, double a, double *ref, mer_dtype t) {
    if (t == MER_DTYPE_BF16) return rand_bf16(n, a, ref);
    float *f = malloc(n * 4);
    for (size_t i = 0; i < n; i++) ref[i] = f[i] = (float)(a * urand());
    return f;
}

static void test_attention_case(mer_cuda *c, mer_dtype t, int T, int H, int KV, int d, int n_ctx, int n_slot,
                                const int *ps, const int *sl, int prefill, int n_split) {
    const size_t cache = (size_t)n_slot * KV * n_ctx * d, es = t == MER_DTYPE_F32 ? 4 : 2;
    const size_t nq = (size_t)T * H * d;
    double *qr = malloc(nq * sizeof(double)), *kr = malloc(cache * sizeof(double)), *vr = malloc(cache * sizeof(double)),
           *ref = malloc(nq * sizeof(double));
    void *qh = rand_act(nq, 1.0, qr, t), *kh = rand_act(cache, 1.5, kr, t), *vh = rand_act(cache, 1.0, vr, t);
    const double scale = 1.0 / sqrt(d);
    attn_ref(ref, qr, kr, vr, ps, sl, T, H, KV, d, n_ctx, scale);
    int32_t *io = malloc(2 * (size_t)T * sizeof(int32_t));
    for (int i = 0; i < T; i++) io[i] = ps[i], io[T + i] = sl[i];
    void *qd = dev_upload(c, qh, nq * es), *kd = dev_upload(c, kh, cache * es), *vd = dev_upload(c, vh, cache * es),
         *od = dev_poison(c, nq * es);
    int32_t *iod = dev_upload(c, io, 2 * (size_t)T * sizeof(int32_t));
    void *ws = NULL;
    const size_t wsb = mer_cuda_attn_decode_ws(T, H, d, n_split);
    DO(mer_cuda_alloc(c, wsb, &ws, &e));
    DO(mer_cuda_memset(c, ws, 0, wsb, &e));
    for (int rep = 0; rep < 2; rep++) { /* twice: the split merge must leave its counters reset */
        mer_status st = prefill ? mer_cuda_attn_prefill(c, od, qd, kd, vd, t, sl[0], ps[0], T, H, KV, d, n_ctx,
                                                        (float)scale, iod, iod + T, &e)
                                : mer_cuda_attn_decode(c, od, qd, kd, vd, t, iod, iod + T, T, H, KV, d, n_ctx, n_split,
                                                       (float)scale, ws, &e);
        CHECK_MSG(st == MER_OK, "attention: %s", e.msg);
        void *oh = malloc(nq * es);
        DO(mer_cuda_download(c, oh, od, nq * es, &e));
        double err = es == 4 ? rel_err(ref, oh, nq) : rel_err_bf16(ref, oh, nq);
        CHECK_MSG(err < (es == 4 ? 1e-5 : 8e-3), "%s attention %s T %d H %d KV %d d %d splits %d: rel err %.3g",
                  prefill ? "prefill" : "decode", mer_dtype_name(t), T, H, KV, d, n_split, err);
        free(oh);
        DO(mer_cuda_memset(c, od, 0xff, nq * es, &e));
    }
    mer_cuda_release(c, qd); mer_cuda_release(c, kd); mer_cuda_release(c, vd); mer_cuda_release(c, od);
    mer_cuda_release(c, iod); mer_cuda_release(c, ws);
    free(qr); free(kr); free(vr); free(ref); free(qh); free(kh); free(vh); free(io);
}

/* Decode attention fused with bias + RoPE + the cache store of the new position. */
static void test_attention_rope(mer_cuda *c, mer_dtype t, int H, int KV, int d, int n_split) {
    enum { T = 3, NCTX = 300, NSLOT = 3 };
    const int ps[T] = {299, 0, 77}, sl[T] = {2, 0, 1};
    const int ld = (H + 2 * KV) * d, half = d / 2;
    const size_t cache = (size_t)NSLOT * KV * NCTX * d, es = t == MER_DTYPE_F32 ? 4 : 2, nq = (size_t)T * H * d;
    double *kr = malloc(cache * sizeof(double)), *vr = malloc(cache * sizeof(double)), *qr = malloc(nq * sizeof(double)),
           *ref = malloc(nq * sizeof(double));
    void *kh = rand_act(cache, 1.5, kr, t), *vh = rand_act(cache, 1.0, vr, t);
    float *qkv = malloc((size_t)T * ld * 4), *bias = malloc((size_t)ld * 4), *inv = malloc((size_t)half * 4);
    for (int i = 0; i < T * ld; i++) qkv[i] = (float)urand();
    for (int i = 0; i < ld; i++) bias[i] = (float)(0.2 * urand());
    for (int i = 0; i < half; i++) inv[i] = (float)(1.0 / pow(1e6, 2.0 * i / d));
    /* reference: rotate q and the new k in double; the cache holds k and v rounded to its dtype */
    for (int tk = 0; tk < T; tk++) {
        const float *row = qkv + (size_t)tk * ld;
        for (int hh = 0; hh < H + 2 * KV; hh++)
            for (int i = 0; i < d; i++) {
                double x = (double)row[hh * d + i] + bias[hh * d + i], y = x;
                if (hh < H + KV) {
                    const int j = i % half, o = hh * d + (i + half) % d;
                    const double ang = (double)((float)ps[tk] * inv[j]);
                    const double other = (double)row[o] + bias[o];
                    y = x * cos(ang) + (i < half ? -other : other) * sin(ang);
                }
                if (hh < H) {
                    qr[((size_t)tk * H + hh) * d + i] = y;
                } else {
                    const int kv = hh < H + KV ? hh - H : hh - H - KV;
                    const size_t at = (((size_t)sl[tk] * KV + kv) * NCTX + ps[tk]) * d + i;
                    const double yr = es == 4 ? (double)(float)y : mer_bf16_to_fp32(mer_fp32_to_bf16((float)y));
                    (hh < H + KV ? kr : vr)[at] = yr;
                }
            }
    }
    attn_ref(ref, qr, kr, vr, ps, sl, T, H, KV, d, NCTX, 1.0 / sqrt(d));
    int32_t io[2 * T];
    for (int i = 0; i < T; i++) io[i] = ps[i], io[T + i] = sl[i];
    void *kd = dev_upload(c, kh, cache * es), *vd = dev_upload(c, vh, cache * es), *od = dev_poison(c, nq * es);
    float *qkvd = dev_upload(c, qkv, (size_t)T * ld * 4), *bd = dev_upload(c, bias, (size_t)ld * 4),
          *invd = dev_upload(c, inv, (size_t)half * 4);
    int32_t *iod = dev_upload(c, io, sizeof io);
    const size_t wsb = mer_cuda_attn_decode_ws(T, H, d, n_split);
    void *ws = NULL;
    DO(mer_cuda_alloc(c, wsb, &ws, &e));
    DO(mer_cuda_memset(c, ws, 0, wsb, &e));
    DO(mer_cuda_attn_decode_rope(c, od, qkvd, bd, invd, kd, vd, t, iod, iod + T, T, H, KV, d, NCTX, n_split,
                                 (float)(1.0 / sqrt(d)), ws, &e));
    void *oh = malloc(nq * es), *kh2 = malloc(cache * es), *vh2 = malloc(cache * es);
    DO(mer_cuda_download(c, oh, od, nq * es, &e));
    DO(mer_cuda_download(c, kh2, kd, cache * es, &e));
    DO(mer_cuda_download(c, vh2, vd, cache * es, &e));
    double err = es == 4 ? rel_err(ref, oh, nq) : rel_err_bf16(ref, oh, nq);
    CHECK_MSG(err < (es == 4 ? 1e-5 : 8e-3), "decode attention + rope %s H %d KV %d d %d splits %d: rel err %.3g",
              mer_dtype_name(t), H, KV, d, n_split, err);
    double maxd = 0;
    for (size_t i = 0; i < cache; i++) { /* new entries as rotated, the rest untouched */
        double dk = fabs(get_act(kh2, i, t) - kr[i]) / (fabs(kr[i]) + 0.05),
               dv = fabs(get_act(vh2, i, t) - vr[i]) / (fabs(vr[i]) + 0.05);
        if (!(dk <= maxd)) maxd = dk;
        if (!(dv <= maxd)) maxd = dv;
    }
    CHECK_MSG(maxd < (es == 4 ? 1e-5 : 8e-3), "decode attention + rope %s: cache entries off by %.3g", mer_dtype_name(t),
              maxd);
    mer_cuda_release(c, kd); mer_cuda_release(c, vd); mer_cuda_release(c, od); mer_cuda_release(c, qkvd);
    mer_cuda_release(c, bd); mer_cuda_release(c, invd); mer_cuda_release(c, iod); mer_cuda_release(c, ws);
    free(kr); free(vr); free(qr); free(ref); free(kh); free(vh); free(qkv); free(bias); free(inv); free(oh);
    free(kh2); free(vh2);
}

static void test_attention(mer_cuda *c, mer_dtype t) {
    test_attention_rope(c, t, 28, 4, 128, 16);
    test_attention_rope(c, t, 28, 4, 128, 1);
    test_attention_rope(c, t, 4, 2, 8, 3);
    test_attention_rope(c, t, 32, 2, 64, 5);
    { /* decode: 3 sequences of different lengths */
        const int ps[3] = {299, 0, 77}, sl[3] = {2, 0, 1};
        test_attention_case(c, t, 3, 28, 4, 128, 300, 3, ps, sl, 0, 16);
        test_attention_case(c, t, 3, 28, 4, 128, 300, 3, ps, sl, 0, 1);
        test_attention_case(c, t, 3, 8, 8, 64, 300, 3, ps, sl, 0, 7);
        test_attention_case(c, t, 3, 4, 2, 8, 300, 3, ps, sl, 0, 3);
        test_attention_case(c, t, 3, 16, 1, 256, 300, 3, ps, sl, 0, 32);
    }
    { /* prefill: 100 tokens after 37 cached positions, in slot 1 */
        enum { T = 100 };
        int ps[T], sl[T];
        for (int i = 0; i < T; i++) ps[i] = 37 + i, sl[i] = 1;
        test_attention_case(c, t, T, 14, 2, 128, 160, 2, ps, sl, 1, 1);
        test_attention_case(c, t, T, 4, 4, 64, 160, 2, ps, sl, 1, 1);
        test_attention_case(c, t, T, 4, 2, 8, 160, 2, ps, sl, 1, 1); /* the SIMT kernel */
        for (int i = 0; i < 9; i++) ps[i] = i, sl[i] = 0;
        test_attention_case(c, t, 9, 7, 1, 128, 16, 1, ps, sl, 1, 1);
    }
}

// --- the model against HF ----------------------------------------------------------------------------

static int prefix_match(const int32_t *a, const int32_t *b, int n) {
    int i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* The model in dir against HF's f32 logits and greedy tokens. f32 path: 1e-4 and identical tokens.
 * bf16 path: bf16 weights and activations, 2e-2 (these fixtures' weights, drawn with std 0.2, lose
 * 2^-9 of their value to bf16 rounding; measured 0.009-0.014), and batched decoding must give the same
 * tokens as single decoding. */
static void test_model(const char *dir, mer_dtype wt, int leak) {
    char path[512];
    mer_weights *w = NULL, *ex = NULL;
    mer_qwen2_cuda *m = NULL;
    float *lg = NULL;
    double *ref = NULL;
    const int f32 = wt == MER_DTYPE_F32;
    const double tol = f32 ? 1e-4 : 2e-2;
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
    p.wtype = wt;
    const size_t nl = (size_t)n * tlog->shape[1];
    lg = malloc(nl * sizeof(float));
    ref = malloc(nl * sizeof(double));
    for (size_t i = 0; i < nl; i++) ref[i] = ((const float *)tlog->data)[i];
    int32_t g0 = -1;
    for (int nb = 512; nb >= 5; nb = nb == 512 ? 5 : 0) { /* one forward (cuBLASLt), chunks of 5 (GEMV) */
        p.n_batch = nb;
        mer_qwen2_cuda_free(m);
        m = NULL;
        DO(mer_qwen2_cuda_load(w, &p, &m, &e));
        if (!m) goto out;
        CHECK_EQ_INT(mer_qwen2_cuda_hparams(m)->n_vocab, tlog->shape[1]);
        DO(mer_qwen2_cuda_prefill(m, 0, ids, n, lg, 1, &g0, &e));
        double err = rel_err(ref, lg, nl);
        printf("  %s %s: logits rel err %.3g (prefill chunks of %d)\n", dir, mer_dtype_name(wt), err, nb);
        CHECK_MSG(err < tol, "%s %s: logits rel err %.3g", dir, mer_dtype_name(wt), err);
    }

    /* greedy decode in slot 0 (graph), then slots 2 and 1 in lockstep, with and without graph */
    int32_t gen[64], cur = g0;
    gen[0] = g0;
    for (int i = 1; i < n_gen; i++) {
        int s0 = 0;
        DO(mer_qwen2_cuda_decode(m, 1, &s0, &cur, NULL, &cur, &e));
        gen[i] = cur;
    }
    const int match = prefix_match(gen, ref_gen, n_gen);
    printf("  %s %s: greedy tokens match HF for %d of %d\n", dir, mer_dtype_name(wt), match, n_gen);
    if (f32) CHECK_MSG(match == n_gen, "%s: greedy tokens differ from HF at %d", dir, match);
    CHECK_EQ_INT(mer_qwen2_cuda_n_past(m, 0), n + n_gen - 1);
    const int32_t *want = f32 ? ref_gen : gen;
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
        int ok = g[0] == want[0] && g[1] == want[0];
        for (int i = 1; i < n_gen; i++) {
            DO(mer_qwen2_cuda_decode(m, 2, slots, cur2, NULL, cur2, &e));
            ok &= cur2[0] == want[i] && cur2[1] == want[i];
        }
        CHECK_MSG(ok, "%s %s: batched greedy (graph %d) differs", dir, mer_dtype_name(wt), use_graph);
    }
    mer_qwen2_cuda_set_graph(m, 1);

    /* errors */
    {
        int s0 = 0;
        int32_t bad = (int32_t)tlog->shape[1];
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
    if (leak) {
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
out:
    free(lg);
    free(ref);
    mer_qwen2_cuda_free(m);
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
    mer_cuda *c = test_cuda_open("test_cuda");
    if (!c) return;
    for (int pdl = 0; pdl <= 1; pdl++) {
        mer_cuda_set_pdl(c, pdl);
        test_matmul(c);
        for (int k = 0; k < 2; k++) {
            const mer_dtype t = k ? MER_DTYPE_F32 : MER_DTYPE_BF16;
            test_rmsnorm(c, 3, 3584, t);
            test_rmsnorm(c, 2, 37, t);
            test_qkv_rope(c, t);
            test_attention(c, t);
        }
        test_argmax_embed(c);
    }
    DO(mer_cuda_sync(c, &e));
    size_t held, in_use;
    mer_cuda_alloc_stats(c, &held, &in_use);
    CHECK_EQ_INT(in_use, 0);
    mer_cuda_free(c);
    test_errors();
    test_model(FIXTURES "/models/qwen2_tiny", MER_DTYPE_F32, 0);
    test_model(FIXTURES "/models/qwen2_tiny_tied", MER_DTYPE_F32, 0);
    test_model(FIXTURES "/models/qwen2_tiny", MER_DTYPE_BF16, 1);
    test_model(FIXTURES "/models/qwen2_tiny_tied", MER_DTYPE_BF16, 1);
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
