/* test_cuda_quant.c - q8_0 / q4_0 weights on the CUDA device and the CPU-model upload
 * (mer_qwen2_cuda_from_model, mer_qwen2_cuda_prefill_embd). Runs only where a GPU is present in a
 * CUDA=1 build; elsewhere it checks the "built without CUDA" answers, prints a SKIP line and passes.
 *
 * Kernels: matrices quantised on the host by the reference quantiser (mer_quantize_row), uploaded as GGUF
 * blocks and repacked on the device; the reference is float64 arithmetic on the matrix decoded here from
 * the GGUF block definition (q8_0: d * q; q4_0: d * (nibble - 8), low nibbles elements 0..15) and on the
 * same bf16 activations. The GEMV (1..8 rows, every epilogue, row counts off the 16-row tiles, K off the
 * 64/128-element chunks, a split gate/up matrix; every tile/warp/unroll variant, split-K of the
 * residual-adding GEMV, and q4_0's folded-offset variant) must
 * match to 1e-5 (f32 accumulation only); the > 8 row
 * path (bf16 dequantisation + cuBLASLt, in pieces of rows) to 6e-3 (weights rounded to bf16: 2^-9);
 * the dequantisation bit for bit against bf16(d * q) (exact in f32, then rounded to nearest even).
 *
 * Model: the tiny fixtures loaded on the CPU (mer_qwen2_load, device CPU) in f32, bf16, q8_0 and q4_0 and
 * uploaded with mer_qwen2_cuda_from_model in the same dtype; logits of the prompt and of 16 teacher-forced
 * greedy steps against the CPU model's: f32 1e-4 relative, bf16 2e-2, q8_0/q4_0 4e-2 (measured 0.025-0.033:
 * the CPU quantises the activations to q8 blocks for its integer dot products, the device keeps them
 * bf16); the prompt in one forward (quantised: dequantised to bf16 + cuBLASLt) against the chunked GEMV
 * prompt: f32 1e-5, bf16 1e-2, q8_0/q4_0 3e-2; greedy tokens
 * equal on every step whose CPU top-2 margin exceeds twice the measured error. Also a GGUF q8_0 and q4_0
 * file (quants kept as they are), the qwen2_lora adapter unmerged on the CPU (merged by the upload; the
 * reference is the CPU model with the adapter merged at load, which rounds the same way), and
 * prefill_embd with the token embeddings equal to prefill; mer_qwen2_cuda_load of the checkpoint equal to
 * from_model of the CPU model (same quants: the same logits); batched decoding equal to decoding alone; a
 * random quantised model (init_random) giving finite logits. */
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/dtype.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_quant.h"
#include "mer.h"
#include "models/qwen2_cuda.h"

#define QDIR FIXTURES "/models/qwen2_tiny"
#define QTIED FIXTURES "/models/qwen2_tiny_tied"
#define QLORA FIXTURES "/models/qwen2_lora"
#define TMP MER_TEST_TMP "/cuda_quant"

#if MER_CUDA
#include "cuda_open.h"

static mer_err e;
#define DO(call) CHECK_MSG((call) == MER_OK, "%s -> %s", #call, e.msg)

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double urand(void) { /* [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / (double)(1ull << 52) - 1.0;
}

static double rel_err(const double *ref, const float *got, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (got[i] != got[i]) return 1e30;
        const double d = (double)got[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Element j of a GGUF row (the block definition, independent of the library's dequantiser). */
static double gguf_elem(mer_dtype dt, const uint8_t *row, int j) {
    const int bs = dt == MER_DTYPE_Q8_0 ? 34 : 18;
    const uint8_t *b = row + (size_t)(j / 32) * bs;
    const double d = mer_fp16_to_fp32((uint16_t)(b[0] | (b[1] << 8)));
    const int k = j % 32;
    if (dt == MER_DTYPE_Q8_0) return d * (double)(int8_t)b[2 + k];
    const int nib = k < 16 ? (b[2 + k] & 15) : (b[2 + k - 16] >> 4);
    return d * (double)(nib - 8);
}

static void *dev_upload(mer_cuda *c, const void *h, size_t n) {
    void *d = NULL;
    DO(mer_cuda_alloc(c, n, &d, &e));
    DO(mer_cuda_upload(c, d, h, n, &e));
    return d;
}

// --- kernels -----------------------------------------------------------------------------------------

/* W [N][K] quantised to dt; split: 0 or N/2 (gate/up). Checks dequant, the GEMV for 1..8 rows in every
 * epilogue and the > 8 row path. */
static void test_qmat(mer_cuda *c, mer_dtype dt, int N, int K, int split) {
    const size_t rb = mer_dtype_row_bytes(dt, (size_t)K);
    uint8_t *blocks = malloc(rb * (size_t)N);
    float *row = malloc((size_t)K * sizeof(float));
    double *w = malloc((size_t)N * K * sizeof(double));
    for (int r = 0; r < N; r++) {
        const double sc = 0.02 * (1 + r % 7);
        for (int j = 0; j < K; j++) row[j] = (float)(sc * urand());
        CHECK(mer_quantize_row(dt, row, blocks + (size_t)r * rb, (size_t)K) == 0);
        for (int j = 0; j < K; j++) w[(size_t)r * K + j] = gguf_elem(dt, blocks + (size_t)r * rb, j);
    }
    mer_cuda_qmat q;
    DO(mer_cuda_qmat_init(c, &q, dt, N, K, split, &e));
    void *bd = dev_upload(c, blocks, rb * (size_t)N);
    /* in two calls, to check the row offset */
    const int half = N / 3;
    DO(mer_cuda_qmat_set_rows(c, &q, 0, half, bd, &e));
    DO(mer_cuda_qmat_set_rows(c, &q, half, N - half, (uint8_t *)bd + rb * (size_t)half, &e));

    /* dequantisation, bit for bit */
    {
        uint16_t *yd = NULL, *yh = malloc((size_t)N * K * 2);
        DO(mer_cuda_alloc(c, (size_t)N * K * 2, (void **)&yd, &e));
        DO(mer_cuda_qmat_dequant(c, yd, &q, 0, N, &e));
        DO(mer_cuda_download(c, yh, yd, (size_t)N * K * 2, &e));
        size_t bad = 0;
        for (size_t i = 0; i < (size_t)N * K; i++) bad += yh[i] != mer_fp32_to_bf16((float)w[i]);
        CHECK_MSG(bad == 0, "%s %dx%d split %d: %zu dequantised elements differ", mer_dtype_name(dt), N, K, split, bad);
        mer_cuda_release(c, yd);
        free(yh);
    }

    const int ldx = K + 8, TMAX = 20;
    uint16_t *xh = malloc((size_t)TMAX * ldx * 2);
    double *xr = malloc((size_t)TMAX * ldx * sizeof(double));
    for (size_t i = 0; i < (size_t)TMAX * ldx; i++) {
        xh[i] = mer_fp32_to_bf16((float)urand());
        xr[i] = mer_bf16_to_fp32(xh[i]);
    }
    uint16_t *xd = dev_upload(c, xh, (size_t)TMAX * ldx * 2);
    double *ref = malloc((size_t)TMAX * N * sizeof(double));
    for (int t = 0; t < TMAX; t++)
        for (int r = 0; r < N; r++) {
            double s = 0;
            for (int j = 0; j < K; j++) s += w[(size_t)r * K + j] * xr[(size_t)t * ldx + j];
            ref[(size_t)t * N + r] = s;
        }
    const int ldy = N + 4;
    float *yh = malloc((size_t)TMAX * ldy * sizeof(float));
    float *yd = NULL;
    DO(mer_cuda_alloc(c, (size_t)TMAX * ldy * sizeof(float), (void **)&yd, &e));
    double *rr = malloc((size_t)TMAX * N * sizeof(double));
    float *got = malloc((size_t)TMAX * N * sizeof(float));
    uint16_t *scratch = NULL;
    const size_t scr = (size_t)32 * K; /* 32 rows: several pieces */
    DO(mer_cuda_alloc(c, scr * 2, (void **)&scratch, &e));
    const int nts[] = {1, 2, 3, 5, 8, 9, 20};
    for (size_t ti = 0; ti < sizeof nts / sizeof nts[0]; ti++) {
        const int T = nts[ti];
        for (int epi = 0; epi <= 3; epi++) {
            if (epi == MER_CUDA_EPI_SILU && (!split || T > 8)) continue;
            const int ny = epi == MER_CUDA_EPI_SILU ? N / 2 : N;
            /* reference */
            for (int t = 0; t < T; t++)
                for (int r = 0; r < ny; r++) {
                    double v = ref[(size_t)t * N + r];
                    if (epi == MER_CUDA_EPI_F32_ADD) v += 0.5 + 0.001 * r;
                    if (epi == MER_CUDA_EPI_SILU) {
                        const double g = ref[(size_t)t * N + r], u = ref[(size_t)t * N + N / 2 + r];
                        v = g / (1 + exp(-g)) * u;
                    }
                    rr[(size_t)t * ny + r] = v;
                }
            for (int t = 0; t < TMAX; t++)
                for (int r = 0; r < ldy; r++)
                    yh[(size_t)t * ldy + r] = epi == MER_CUDA_EPI_F32_ADD ? (float)(0.5 + 0.001 * r) : NAN;
            DO(mer_cuda_upload(c, yd, yh, (size_t)TMAX * ldy * sizeof(float), &e));
            const int bf = epi == MER_CUDA_EPI_BF16 || epi == MER_CUDA_EPI_SILU;
            DO(mer_cuda_qmatmul(c, yd, ldy, xd, ldx, &q, T, (mer_cuda_epi)epi, scratch, scr, &e));
            DO(mer_cuda_download(c, yh, yd, (size_t)TMAX * ldy * sizeof(float), &e));
            for (int t = 0; t < T; t++)
                for (int r = 0; r < ny; r++)
                    got[(size_t)t * ny + r] = bf ? mer_bf16_to_fp32(((uint16_t *)yh)[(size_t)t * ldy + r])
                                                 : yh[(size_t)t * ldy + r];
            const double err = rel_err(rr, got, (size_t)T * ny);
            const double tol = bf ? 8e-3 : T > 8 ? 6e-3 : 1e-5;
            CHECK_MSG(err < tol, "%s %dx%d split %d, %d rows, epi %d: rel err %.3g", mer_dtype_name(dt), N, K, split, T,
                      epi, err);
            /* nothing written outside the output (f32 outputs: poison or the added-to values stay) */
            if (!bf) {
                int past = 0;
                for (int t = 0; t < TMAX; t++)
                    for (int r = t < T ? ny : 0; r < ldy; r++) {
                        const float v = yh[(size_t)t * ldy + r];
                        past += epi == MER_CUDA_EPI_F32_ADD ? v != (float)(0.5 + 0.001 * r) : v == v;
                    }
                CHECK_MSG(past == 0, "%s %dx%d, %d rows, epi %d: %d elements written outside the output",
                          mer_dtype_name(dt), N, K, T, epi, past);
            }
        }
    }
    mer_cuda_release(c, yd);
    mer_cuda_release(c, xd);
    mer_cuda_release(c, bd);
    mer_cuda_release(c, scratch);
    mer_cuda_qmat_release(c, &q);
    free(blocks); free(row); free(w); free(xh); free(xr); free(ref); free(yh); free(rr); free(got);
}

/* mer_cuda_qgemv_norm (the RMSNorm folded into the GEMV, the decode default for the qkv projection) must
 * give the bits of mer_cuda_rmsnorm followed by mer_cuda_qgemv, for 1..4 rows, f32 and silu epilogues, rows
 * and K off the tiles and chunks. */
static void test_qgemv_norm(mer_cuda *c, mer_dtype dt, int N, int K, int silu) {
    const size_t rb = mer_dtype_row_bytes(dt, (size_t)K);
    uint8_t *blocks = malloc(rb * (size_t)N);
    float *row = malloc((size_t)K * sizeof(float)), *xh = malloc((size_t)4 * K * 4), *wh = malloc((size_t)K * 4);
    for (int r = 0; r < N; r++) {
        for (int j = 0; j < K; j++) row[j] = (float)(0.05 * urand());
        CHECK(mer_quantize_row(dt, row, blocks + (size_t)r * rb, (size_t)K) == 0);
    }
    for (int i = 0; i < 4 * K; i++) xh[i] = (float)(3.0 * urand() + (i % 7 == 0 ? 20.0 : 0.0));
    for (int j = 0; j < K; j++) wh[j] = (float)(1.0 + 0.5 * urand());
    mer_cuda_qmat q;
    DO(mer_cuda_qmat_init(c, &q, dt, N, K, silu ? N / 2 : 0, &e));
    void *bd = dev_upload(c, blocks, rb * (size_t)N);
    DO(mer_cuda_qmat_set_rows(c, &q, 0, N, bd, &e));
    float *xd = dev_upload(c, xh, (size_t)4 * K * 4), *wd = dev_upload(c, wh, (size_t)K * 4);
    const int ny = silu ? N / 2 : N;
    const size_t yb = (size_t)4 * ny * 4;
    void *xn = NULL, *y0 = NULL, *y1 = NULL;
    DO(mer_cuda_alloc(c, (size_t)4 * K * 2, &xn, &e));
    DO(mer_cuda_alloc(c, yb, &y0, &e));
    DO(mer_cuda_alloc(c, yb, &y1, &e));
    uint8_t *h0 = malloc(yb), *h1 = malloc(yb);
    const mer_cuda_epi epi = silu ? MER_CUDA_EPI_SILU : MER_CUDA_EPI_F32;
    for (int n = 1; n <= 4; n++) {
        DO(mer_cuda_memset(c, y0, 0, yb, &e));
        DO(mer_cuda_memset(c, y1, 0xff, yb, &e));
        DO(mer_cuda_rmsnorm(c, xn, MER_DTYPE_BF16, xd, wd, n, K, 1e-6f, &e));
        DO(mer_cuda_qgemv(c, y0, ny, xn, K, &q, n, epi, &e));
        DO(mer_cuda_qgemv_norm(c, y1, ny, xd, K, wd, 1e-6f, &q, n, epi, &e));
        DO(mer_cuda_download(c, h0, y0, (size_t)n * ny * (silu ? 2 : 4), &e));
        DO(mer_cuda_download(c, h1, y1, (size_t)n * ny * (silu ? 2 : 4), &e));
        CHECK_MSG(!memcmp(h0, h1, (size_t)n * ny * (silu ? 2 : 4)),
                  "qgemv_norm %s N %d K %d %s, %d rows: differs from rmsnorm + qgemv", mer_dtype_name(dt), N, K,
                  silu ? "silu" : "f32", n);
    }
    mer_err e2 = {0}; /* a bad epilogue and an unaligned norm weight are refused */
    CHECK_EQ_INT(mer_cuda_qgemv_norm(c, y1, ny, xd, K, wd, 1e-6f, &q, 1, MER_CUDA_EPI_F32_ADD, &e2), MER_E_ARG);
    CHECK_EQ_INT(mer_cuda_qgemv_norm(c, y1, ny, xd, K, wd + 1, 1e-6f, &q, 1, epi, &e2), MER_E_ARG);
    mer_cuda_qmat_release(c, &q);
    mer_cuda_release(c, bd); mer_cuda_release(c, xd); mer_cuda_release(c, wd);
    mer_cuda_release(c, xn); mer_cuda_release(c, y0); mer_cuda_release(c, y1);
    free(blocks); free(row); free(xh); free(wh); free(h0); free(h1);
}

/* mer_cuda_qgemv_add_norm (the o projection that also makes the MLP's RMSNorm) against mer_cuda_qgemv
 * (F32_ADD) followed by mer_cuda_rmsnorm, bit for bit in y and xn, 1..8 rows, twice each (the arrival
 * counter must be left at zero), and with the fused form off. */
static void test_qgemv_add_norm(mer_cuda *c, mer_dtype dt, int N, int K) {
    const size_t rb = mer_dtype_row_bytes(dt, (size_t)K);
    uint8_t *blocks = malloc(rb * (size_t)N);
    float *row = malloc((size_t)K * sizeof(float)), *yh = malloc((size_t)8 * N * 4), *wh = malloc((size_t)N * 4);
    uint16_t *xh = malloc((size_t)8 * K * 2);
    for (int r = 0; r < N; r++) {
        for (int j = 0; j < K; j++) row[j] = (float)(0.05 * urand());
        CHECK(mer_quantize_row(dt, row, blocks + (size_t)r * rb, (size_t)K) == 0);
    }
    for (int i = 0; i < 8 * K; i++) xh[i] = mer_fp32_to_bf16((float)urand());
    for (int i = 0; i < 8 * N; i++) yh[i] = (float)(2.0 * urand() + (i % 11 == 0 ? 15.0 : 0.0));
    for (int j = 0; j < N; j++) wh[j] = (float)(1.0 + 0.5 * urand());
    mer_cuda_qmat q;
    DO(mer_cuda_qmat_init(c, &q, dt, N, K, 0, &e));
    void *bd = dev_upload(c, blocks, rb * (size_t)N);
    DO(mer_cuda_qmat_set_rows(c, &q, 0, N, bd, &e));
    uint16_t *xd = dev_upload(c, xh, (size_t)8 * K * 2);
    float *wd = dev_upload(c, wh, (size_t)N * 4), *y0 = NULL, *y1 = NULL;
    int *cnt = NULL;
    void *n0 = NULL, *n1 = NULL;
    const size_t yb = (size_t)8 * N * 4, nb = (size_t)8 * N * 2;
    DO(mer_cuda_alloc(c, yb, (void **)&y0, &e));
    DO(mer_cuda_alloc(c, yb, (void **)&y1, &e));
    DO(mer_cuda_alloc(c, nb, &n0, &e));
    DO(mer_cuda_alloc(c, nb, &n1, &e));
    DO(mer_cuda_alloc(c, 16, (void **)&cnt, &e));
    DO(mer_cuda_memset(c, cnt, 0, 16, &e));
    uint8_t *a = malloc(yb), *b = malloc(yb);
    for (int off = 0; off < 2; off++) {
        mer_cuda_set_qgemv_add_norm(!off);
        for (int n = 1; n <= 8; n++)
            for (int rep = 0; rep < 2; rep++) {
                DO(mer_cuda_upload(c, y0, yh, yb, &e));
                DO(mer_cuda_upload(c, y1, yh, yb, &e));
                DO(mer_cuda_memset(c, n1, 0xff, nb, &e));
                DO(mer_cuda_qgemv(c, y0, N, xd, K, &q, n, MER_CUDA_EPI_F32_ADD, &e));
                DO(mer_cuda_rmsnorm(c, n0, MER_DTYPE_BF16, y0, wd, n, N, 1e-6f, &e));
                DO(mer_cuda_qgemv_add_norm(c, y1, N, xd, K, &q, n, wd, 1e-6f, n1, cnt, &e));
                DO(mer_cuda_download(c, a, y0, (size_t)n * N * 4, &e));
                DO(mer_cuda_download(c, b, y1, (size_t)n * N * 4, &e));
                CHECK_MSG(!memcmp(a, b, (size_t)n * N * 4), "qgemv_add_norm %s N %d K %d, %d rows%s: y differs",
                          mer_dtype_name(dt), N, K, n, off ? " (fused form off)" : "");
                DO(mer_cuda_download(c, a, n0, (size_t)n * N * 2, &e));
                DO(mer_cuda_download(c, b, n1, (size_t)n * N * 2, &e));
                CHECK_MSG(!memcmp(a, b, (size_t)n * N * 2), "qgemv_add_norm %s N %d K %d, %d rows%s: xn differs",
                          mer_dtype_name(dt), N, K, n, off ? " (fused form off)" : "");
            }
    }
    mer_cuda_set_qgemv_add_norm(getenv("MER_CUDA_ADDNORM") ? atoi(getenv("MER_CUDA_ADDNORM")) : 0);
    int left = -1;
    DO(mer_cuda_download(c, &left, cnt, sizeof left, &e));
    CHECK_EQ_INT(left, 0);
    mer_cuda_qmat_release(c, &q);
    mer_cuda_release(c, bd); mer_cuda_release(c, xd); mer_cuda_release(c, wd); mer_cuda_release(c, y0);
    mer_cuda_release(c, y1); mer_cuda_release(c, n0); mer_cuda_release(c, n1); mer_cuda_release(c, cnt);
    free(blocks); free(row); free(yh); free(wh); free(xh); free(a); free(b);
}

static void test_random_fill(mer_cuda *c, mer_dtype dt) {
    mer_cuda_qmat q;
    const int N = 40, K = 96;
    DO(mer_cuda_qmat_init(c, &q, dt, N, K, 0, &e));
    DO(mer_cuda_qmat_fill_random(c, &q, 7, 0.5f, &e));
    uint16_t *yd = NULL, *yh = malloc((size_t)N * K * 2);
    DO(mer_cuda_alloc(c, (size_t)N * K * 2, (void **)&yd, &e));
    DO(mer_cuda_qmat_dequant(c, yd, &q, 0, N, &e));
    DO(mer_cuda_download(c, yh, yd, (size_t)N * K * 2, &e));
    double mx = 0, ss = 0;
    for (int i = 0; i < N * K; i++) {
        const double v = mer_bf16_to_fp32(yh[i]);
        if (fabs(v) > mx) mx = fabs(v);
        ss += v * v;
    }
    const double rms = sqrt(ss / (N * K));
    CHECK_MSG(mx <= 0.5 * 1.26 && rms > 0.2 && rms < 0.4,
              "%s random fill: max %.3g rms %.3g (spread 0.5)", mer_dtype_name(dt), mx, rms);
    mer_cuda_release(c, yd);
    mer_cuda_qmat_release(c, &q);
    free(yh);
}

static void test_kernels(mer_cuda *c) {
    for (int k = 0; k < 2; k++) {
        const mer_dtype dt = k ? MER_DTYPE_Q4_0 : MER_DTYPE_Q8_0;
        test_qmat(c, dt, 37, 96, 0);     /* rows off the tiles, K off the chunks */
        test_qmat(c, dt, 64, 32, 0);
        test_qmat(c, dt, 80, 160, 40);   /* gate/up of 40 rows each: the up part padded apart */
        test_qmat(c, dt, 96, 3584, 48);
        test_qmat(c, dt, 300, 1024, 0);
        for (int nw = 4; nw <= 16; nw *= 2) /* every kernel variant */
            for (int u = 1; u <= 2; u++) {
                mer_cuda_set_gemv_warps(c, nw);
                mer_cuda_set_qgemv_unroll(u);
                mer_cuda_set_gemv_tile(c, 2);
                test_qmat(c, dt, 70, 4096, 35);
                mer_cuda_set_gemv_tile(c, 1);
                test_qmat(c, dt, 50, 1280, 0);
                test_qmat(c, dt, 37, 96, 0);
            }
        for (int ks = 2; ks <= 5; ks += 3) /* split-K of the residual-adding GEMV (epi F32_ADD) */
            for (int u = 1; u <= 2; u++) {
                mer_cuda_set_qgemv_split(ks);
                mer_cuda_set_qgemv_unroll(u);
                mer_cuda_set_gemv_warps(c, u == 1 ? 16 : 4);
                test_qmat(c, dt, 50, 1280, 0);
                test_qmat(c, dt, 37, 96, 0); /* fewer chunks than splits: empty ranges add nothing */
                test_qmat(c, dt, 96, 3584, 48);
            }
        /* back to the default (or MER_CUDA_QGEMV_SPLIT, for the model tests below) */
        mer_cuda_set_qgemv_split(getenv("MER_CUDA_QGEMV_SPLIT") ? atoi(getenv("MER_CUDA_QGEMV_SPLIT")) : 0);
        mer_cuda_set_gemv_warps(c, 0);
        mer_cuda_set_gemv_tile(c, 0);
        mer_cuda_set_qgemv_unroll(0);
        if (dt == MER_DTYPE_Q4_0) { /* the folded-offset variant (opt-in) */
            mer_cuda_set_qgemv_fold(1);
            for (int u = 1; u <= 2; u++) {
                mer_cuda_set_qgemv_unroll(u);
                mer_cuda_set_gemv_tile(c, 2);
                test_qmat(c, dt, 70, 4096, 35);
                mer_cuda_set_gemv_tile(c, 1);
                test_qmat(c, dt, 50, 1280, 0);
            }
            mer_cuda_set_gemv_tile(c, 0);
            mer_cuda_set_qgemv_unroll(0);
            test_qmat(c, dt, 37, 96, 0);
            test_qmat(c, dt, 96, 3584, 48);
            mer_cuda_set_qgemv_fold(0);
        }
        test_qgemv_norm(c, dt, 48, 256, 0);
        test_qgemv_norm(c, dt, 37, 96, 0);
        test_qgemv_norm(c, dt, 80, 160, 1);
        test_qgemv_norm(c, dt, 300, 3584, 0);
        test_qgemv_add_norm(c, dt, 48, 256);
        test_qgemv_add_norm(c, dt, 3584, 3584); /* the 7B o projection: 224 blocks */
        test_qgemv_add_norm(c, dt, 40, 96);
        test_qgemv_add_norm(c, dt, 37, 96); /* rows not a multiple of 8: the two launches */
        test_random_fill(c, dt);
    }
    { /* bad arguments */
        mer_cuda_qmat q;
        mer_err e2 = {0};
        CHECK_EQ_INT(mer_cuda_qmat_init(c, &q, MER_DTYPE_Q8_0, 16, 40, 0, &e2), MER_E_ARG);
        CHECK_EQ_INT(mer_cuda_qmat_init(c, &q, MER_DTYPE_BF16, 16, 64, 0, &e2), MER_E_ARG);
    }
    DO(mer_cuda_sync(c, &e));
    size_t held, in_use;
    mer_cuda_alloc_stats(c, &held, &in_use);
    CHECK_EQ_INT(in_use, 0);
    mer_cuda_free(c);
}

// --- the model from a CPU model ----------------------------------------------------------------------

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static double margin(const float *x, int n) {
    const int b = argmax(x, n);
    double s = -1e30;
    for (int i = 0; i < n; i++)
        if (i != b && x[i] > s) s = x[i];
    return x[b] - s;
}

/* Loads `path` on the CPU (wtype, LoRA unmerged when lora), uploads it as dev_wt and compares logits over
 * the fixture prompt and 16 teacher-forced greedy steps. */
/* With noise_wtype: the CPU model in that dtype (adapter merged) runs the same steps, and the tolerance
 * becomes at least three times its own distance from the reference (the precision floor of that dtype on this
 * model: the qwen2_lora adapter makes the tiny model so sensitive that the CPU's own q8_0 is 0.23 from
 * its f32 over these steps, 0.92 on one of them). */
static void test_from_model(const char *label, const char *path, const char *wtype, const char *lora,
                            mer_dtype dev_wt, double tol, const char *ref_wtype, const char *noise_wtype) {
    mer_qwen2_params lp = mer_qwen2_default_params();
    lp.device = MER_DEVICE_CPU;
    lp.wtype = wtype;
    lp.lora_path = lora;
    lp.lora_merge = 0;
    mer_qwen2 *cm = NULL, *cmerged = NULL, *cnoise = NULL;
    mer_qwen2_ctx *ctx = NULL, *nctx = NULL;
    mer_qwen2_cuda *m = NULL;
    mer_weights *ex = NULL;
    float *dl = NULL, *embd = NULL, *el = NULL;
    DO(mer_qwen2_load(path, &lp, &cm, &e));
    if (lora) { /* the reference: the CPU's own merge (W + scale B A in f32, then ref_wtype), as the upload does */
        lp.lora_merge = 1;
        lp.wtype = ref_wtype ? ref_wtype : wtype;
        DO(mer_qwen2_load(path, &lp, &cmerged, &e));
        if (noise_wtype) {
            lp.wtype = noise_wtype;
            DO(mer_qwen2_load(path, &lp, &cnoise, &e));
        }
    }
    const mer_qwen2 *cref = lora ? cmerged : cm;
    DO(mer_weights_open(QDIR "/expected.safetensors", &ex, &e));
    if (!cm || !cref || !ex) goto out;
    const mer_wtensor *tid = mer_weights_find(ex, "ids");
    CHECK(tid != NULL);
    if (!tid) goto out;
    int32_t ids[64];
    const int n = (int)tid->shape[0];
    memcpy(ids, tid->data, (size_t)n * 4);
    mer_qwen2_info info;
    mer_qwen2_get_info(cm, &info);
    if (lora) CHECK_EQ_INT(info.lora, 2);
    const int V = info.n_vocab, E = info.n_embd;

    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_ctx = 128;
    cp.n_threads = 2;
    DO(mer_qwen2_ctx_init(cref, &cp, &ctx, &e));
    if (cnoise) DO(mer_qwen2_ctx_init(cnoise, &cp, &nctx, &e));
    mer_qwen2_cuda_params p = mer_qwen2_cuda_default_params();
    p.n_ctx = 128;
    p.n_seq = 2;
    p.n_batch = 7; /* the prompt in chunks: GEMV path; and one forward below */
    p.wtype = dev_wt;
    DO(mer_qwen2_cuda_from_model(cm, &p, &m, &e));
    if (!ctx || !m) goto out;
    CHECK_EQ_INT(mer_qwen2_cuda_n_ctx(m), 128);
    CHECK_EQ_INT(mer_qwen2_cuda_n_seq(m), 2);

    enum { STEPS = 16 };
    dl = malloc((size_t)V * sizeof(float));
    double num = 0, den = 0, nnum = 0;
    int agree = 0, decided = 0, decided_agree = 0;
    int32_t tok = 0;
    DO(mer_qwen2_prefill(ctx, ids, (size_t)n, &e));
    if (nctx) DO(mer_qwen2_prefill(nctx, ids, (size_t)n, &e));
    DO(mer_qwen2_cuda_prefill(m, 0, ids, n, dl, 0, NULL, &e));
    float *cl_steps = malloc((size_t)(STEPS + 1) * V * sizeof(float)),
          *dl_steps = malloc((size_t)(STEPS + 1) * V * sizeof(float));
    for (int s = 0; s <= STEPS; s++) {
        int nr = 0;
        const float *cl = mer_qwen2_logits(ctx, &nr);
        if (!cl) break;
        memcpy(cl_steps + (size_t)s * V, cl, (size_t)V * sizeof(float));
        memcpy(dl_steps + (size_t)s * V, dl, (size_t)V * sizeof(float));
        if (nctx) {
            const float *nl = mer_qwen2_logits(nctx, &nr);
            for (int i = 0; nl && i < V; i++) nnum += ((double)nl[i] - cl[i]) * ((double)nl[i] - cl[i]);
        }
        tok = argmax(cl, V);
        if (s == STEPS) break;
        DO(mer_qwen2_prefill(ctx, &tok, 1, &e));
        if (nctx) DO(mer_qwen2_prefill(nctx, &tok, 1, &e));
        int s0 = 0;
        DO(mer_qwen2_cuda_decode(m, 1, &s0, &tok, dl, NULL, &e));
    }
    for (int s = 0; s <= STEPS; s++) {
        const float *cl = cl_steps + (size_t)s * V, *gl = dl_steps + (size_t)s * V;
        for (int i = 0; i < V; i++) {
            const double d = (double)gl[i] - cl[i];
            num += d * d;
            den += (double)cl[i] * cl[i];
        }
    }
    const double err = den > 0 ? sqrt(num / den) : 1e30;
    if (nctx) {
        const double floor_err = den > 0 ? sqrt(nnum / den) : 1e30;
        printf("  %s: the CPU's own %s is %.3g from the reference over these steps\n", label, noise_wtype, floor_err);
        if (3 * floor_err > tol) tol = 3 * floor_err;
    }
    const double scale = sqrt(den / ((double)(STEPS + 1) * V)); /* rms logit */
    for (int s = 0; s <= STEPS; s++) {
        const float *cl = cl_steps + (size_t)s * V, *gl = dl_steps + (size_t)s * V;
        const int same = argmax(cl, V) == argmax(gl, V);
        agree += same;
        const double noise = cnoise ? tol / 3 : err; /* with a noise model: its error */
        if (margin(cl, V) > 8 * noise * scale) { /* a margin well above the logit error */
            decided++;
            decided_agree += same;
        }
    }
    printf("  %s (cpu %s -> device %s): logits rel err %.3g over %d steps, greedy equal %d/%d (%d/%d with a clear "
           "margin)\n",
           label, info.wtype, mer_dtype_name(dev_wt), err, STEPS + 1, agree, STEPS + 1, decided_agree, decided);
    CHECK_MSG(err < tol, "%s: logits rel err %.3g (tolerance %.3g)", label, err, tol);
    CHECK_MSG(decided_agree == decided, "%s: greedy differs on a step with a clear margin", label);
    if (dev_wt == MER_DTYPE_F32) CHECK_MSG(agree == STEPS + 1, "%s: f32 greedy differs", label);
    { /* the prompt in one forward (quantised: dequantised to bf16 + cuBLASLt) */
        mer_qwen2_cuda *m2 = NULL;
        p.n_batch = 512;
        DO(mer_qwen2_cuda_from_model(cm, &p, &m2, &e));
        if (m2) {
            DO(mer_qwen2_cuda_prefill(m2, 0, ids, n, dl, 0, NULL, &e));
            double nn = 0, dd = 0, n2 = 0, d2 = 0;
            for (int i = 0; i < V; i++) {
                const double d = (double)dl[i] - cl_steps[i], g = (double)dl[i] - dl_steps[i];
                nn += d * d;
                dd += (double)cl_steps[i] * cl_steps[i];
                n2 += g * g;
                d2 += (double)dl_steps[i] * dl_steps[i];
            }
            const double e1 = sqrt(nn / dd), e2 = sqrt(n2 / d2);
            /* against the chunked (GEMV) prompt: quantised matrices lose 2^-9 to the bf16 dequantisation */
            const double tol2 = dev_wt == MER_DTYPE_F32 ? 1e-5 : dev_wt == MER_DTYPE_BF16 ? 1e-2 : 3e-2;
            printf("  %s: one-forward prompt logits rel err %.3g vs the CPU, %.3g vs the GEMV path\n", label, e1, e2);
            CHECK_MSG(e2 < tol2, "%s: one-forward prompt logits rel err %.3g vs the GEMV path", label, e2);
        }
        mer_qwen2_cuda_free(m2);
    }
    free(cl_steps);
    free(dl_steps);

    /* prefill_embd with the token embeddings (rounded as the device's table is) == prefill */
    embd = malloc((size_t)n * E * sizeof(float));
    el = malloc((size_t)n * V * sizeof(float));
    float *pl = malloc((size_t)n * V * sizeof(float));
    DO(mer_qwen2_embed(cm, ids, (size_t)n, embd, &e));
    if (dev_wt != MER_DTYPE_F32)
        for (size_t i = 0; i < (size_t)n * E; i++) embd[i] = mer_bf16_to_fp32(mer_fp32_to_bf16(embd[i]));
    int32_t g1 = -1, g2 = -2;
    DO(mer_qwen2_cuda_reset(m, 1, &e));
    DO(mer_qwen2_cuda_prefill_embd(m, 1, embd, n, el, 1, &g1, &e));
    DO(mer_qwen2_cuda_reset(m, 0, &e));
    DO(mer_qwen2_cuda_prefill(m, 0, ids, n, pl, 1, &g2, &e));
    size_t diff = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) diff += el[i] != pl[i];
    CHECK_MSG(diff == 0 && g1 == g2, "%s: prefill_embd differs from prefill in %zu logits (greedy %d vs %d)", label,
              diff, g1, g2);
    CHECK_EQ_INT(mer_qwen2_cuda_n_past(m, 1), n);
    free(pl);
out:
    free(dl);
    free(embd);
    free(el);
    mer_qwen2_cuda_free(m);
    mer_qwen2_ctx_free(ctx);
    mer_qwen2_ctx_free(nctx);
    mer_qwen2_free(cm);
    mer_qwen2_free(cmerged);
    mer_qwen2_free(cnoise);
    mer_weights_close(ex);
}

/* mer_qwen2_cuda_load of the HF folder and mer_qwen2_cuda_from_model of the CPU model loaded in f32 put
 * the same quants on the device (both quantise the f32 rows with mer_quantize_row): equal logits. */
static void test_load_equals_from_model(mer_dtype dt) {
    mer_weights *w = NULL;
    mer_qwen2 *cm = NULL;
    mer_qwen2_cuda *a = NULL, *b = NULL;
    mer_qwen2_params lp = mer_qwen2_default_params();
    lp.device = MER_DEVICE_CPU;
    lp.wtype = "f32";
    DO(mer_weights_open(QDIR, &w, &e));
    DO(mer_qwen2_load(QDIR, &lp, &cm, &e));
    mer_qwen2_cuda_params p = mer_qwen2_cuda_default_params();
    p.n_ctx = 64;
    p.wtype = dt;
    if (w) DO(mer_qwen2_cuda_load(w, &p, &a, &e));
    if (cm) DO(mer_qwen2_cuda_from_model(cm, &p, &b, &e));
    if (a && b) {
        const int V = mer_qwen2_cuda_hparams(a)->n_vocab;
        CHECK_EQ_INT(mer_qwen2_cuda_step_bytes(a), mer_qwen2_cuda_step_bytes(b));
        int32_t ids[12];
        for (int i = 0; i < 12; i++) ids[i] = (int32_t)((i * 37 + 11) % V);
        float *la = malloc((size_t)12 * V * sizeof(float)), *lb = malloc((size_t)12 * V * sizeof(float));
        DO(mer_qwen2_cuda_prefill(a, 0, ids, 12, la, 1, NULL, &e));
        DO(mer_qwen2_cuda_prefill(b, 0, ids, 12, lb, 1, NULL, &e));
        size_t diff = 0;
        for (size_t i = 0; i < (size_t)12 * V; i++) diff += la[i] != lb[i];
        CHECK_MSG(diff == 0, "%s: load and from_model differ in %zu of %d logits", mer_dtype_name(dt), diff, 12 * V);
        free(la);
        free(lb);
    }
    mer_qwen2_cuda_free(a);
    mer_qwen2_cuda_free(b);
    mer_qwen2_free(cm);
    mer_weights_close(w);
}

/* Batched decoding of a quantised model: each row of the GEMV is its own mma column, so sequences
 * decoded together get the logits they get alone (compared to 1e-5; greedy tokens equal); and a random
 * quantised model (init_random, the benchmark's path) gives finite logits. */
static void test_batch_and_random(mer_dtype dt) {
    mer_qwen2 *cm = NULL;
    mer_qwen2_cuda *m = NULL, *r = NULL;
    mer_qwen2_params lp = mer_qwen2_default_params();
    lp.device = MER_DEVICE_CPU;
    lp.wtype = mer_dtype_name(dt);
    DO(mer_qwen2_load(QDIR, &lp, &cm, &e));
    mer_qwen2_cuda_params p = mer_qwen2_cuda_default_params();
    p.n_ctx = 64;
    p.n_seq = 3;
    p.wtype = dt;
    if (cm) DO(mer_qwen2_cuda_from_model(cm, &p, &m, &e));
    if (m) {
        const int V = mer_qwen2_cuda_hparams(m)->n_vocab;
        int32_t prompt[3][5], cur[3], g[3];
        float *single = malloc((size_t)3 * 8 * V * sizeof(float)), *batch = malloc((size_t)3 * V * sizeof(float));
        for (int s2 = 0; s2 < 3; s2++) {
            for (int i = 0; i < 5; i++) prompt[s2][i] = (int32_t)((i * 31 + s2 * 7 + 3) % V);
            /* alone: 8 greedy steps in slot s2 */
            DO(mer_qwen2_cuda_reset(m, s2, &e));
            DO(mer_qwen2_cuda_prefill(m, s2, prompt[s2], 5, NULL, 0, &cur[s2], &e));
            for (int k = 0; k < 8; k++)
                DO(mer_qwen2_cuda_decode(m, 1, &s2, &cur[s2], single + ((size_t)s2 * 8 + k) * V, &cur[s2], &e));
        }
        double worst = 0;
        int same = 1;
        int slots[3] = {2, 0, 1};
        for (int s2 = 0; s2 < 3; s2++) {
            DO(mer_qwen2_cuda_reset(m, s2, &e));
            DO(mer_qwen2_cuda_prefill(m, s2, prompt[s2], 5, NULL, 0, &cur[s2], &e));
        }
        int32_t ids[3] = {cur[2], cur[0], cur[1]};
        for (int k = 0; k < 8; k++) {
            DO(mer_qwen2_cuda_decode(m, 3, slots, ids, batch, g, &e));
            for (int i = 0; i < 3; i++) {
                const float *a = single + ((size_t)slots[i] * 8 + k) * V, *b = batch + (size_t)i * V;
                double num = 0, den = 0;
                for (int j = 0; j < V; j++) {
                    num += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
                    den += (double)a[j] * a[j];
                }
                if (sqrt(num / den) > worst) worst = sqrt(num / den);
                same &= argmax(a, V) == g[i];
                ids[i] = g[i];
            }
        }
        printf("  %s: batched decode (3 slots) vs alone: logits rel err %.3g, greedy %s\n", mer_dtype_name(dt), worst,
               same ? "equal" : "different");
        CHECK_MSG(worst < 1e-5 && same, "%s: batched decode differs from decoding alone (%.3g)", mer_dtype_name(dt),
                  worst);
        free(single);
        free(batch);
    }
    mer_qwen2_cuda_hp hp = {300, 64, 2, 4, 2, 16, 128, 1e4f, 1e-6f, 1};
    p.n_batch = 16;
    DO(mer_qwen2_cuda_init_random(&hp, 5, &p, &r, &e));
    if (r) {
        int32_t ids[20], gr = -1;
        for (int i = 0; i < 20; i++) ids[i] = (int32_t)((i * 13 + 1) % hp.n_vocab);
        float *lg = malloc((size_t)hp.n_vocab * sizeof(float));
        DO(mer_qwen2_cuda_prefill(r, 0, ids, 20, lg, 0, &gr, &e)); /* 16 + 4 rows: both matmul paths */
        int s0 = 0, finite = 1;
        DO(mer_qwen2_cuda_decode(r, 1, &s0, &gr, lg, &gr, &e));
        for (int i = 0; i < hp.n_vocab; i++) finite &= isfinite(lg[i]) != 0;
        CHECK_MSG(finite && gr >= 0 && gr < hp.n_vocab, "%s random model: non-finite logits", mer_dtype_name(dt));
        CHECK(mer_qwen2_cuda_step_bytes(r) > 0);
        free(lg);
    }
    mer_qwen2_cuda_free(r);
    mer_qwen2_cuda_free(m);
    mer_qwen2_free(cm);
}

static void test_models(void) {
    test_batch_and_random(MER_DTYPE_Q8_0);
    test_batch_and_random(MER_DTYPE_Q4_0);
    test_load_equals_from_model(MER_DTYPE_Q8_0);
    test_load_equals_from_model(MER_DTYPE_Q4_0);
    test_load_equals_from_model(MER_DTYPE_BF16);
    mkdir(MER_TEST_TMP, 0755);
    mkdir(TMP, 0755);
    test_from_model("tiny f32", QDIR, "f32", NULL, MER_DTYPE_F32, 1e-4, NULL, NULL);
    test_from_model("tied f32", QTIED, "f32", NULL, MER_DTYPE_F32, 1e-4, NULL, NULL);
    test_from_model("tiny bf16", QDIR, NULL, NULL, MER_DTYPE_BF16, 2e-2, NULL, NULL);
    test_from_model("tiny q8_0", QDIR, "q8_0", NULL, MER_DTYPE_Q8_0, 4e-2, NULL, NULL);
    test_from_model("tiny q4_0", QDIR, "q4_0", NULL, MER_DTYPE_Q4_0, 4e-2, NULL, NULL);
    test_from_model("tied q4_0", QTIED, "q4_0", NULL, MER_DTYPE_Q4_0, 4e-2, NULL, NULL);
    test_from_model("tiny f32 -> q8_0 on upload", QDIR, "f32", NULL, MER_DTYPE_Q8_0, 5e-2, NULL, NULL);
    test_from_model("lora unmerged f32", QDIR, "f32", QLORA, MER_DTYPE_F32, 1e-4, NULL, NULL);
    /* quantised with the adapter: against the CPU's f32 (adapter merged), bounded by three times the CPU's
     * own q8_0 error there; from a q8_0 base the upload re-quantises W_q8 + scale B A */
    test_from_model("lora unmerged f32 -> q8_0", QDIR, "f32", QLORA, MER_DTYPE_Q8_0, 4e-2, "f32", "q8_0");
    test_from_model("lora unmerged q8_0 (re-quantised)", QDIR, "q8_0", QLORA, MER_DTYPE_Q8_0, 4e-2, "f32", "q8_0");
    mer_quantize_params qp = mer_quantize_default_params();
    const char *types[2] = {"q8_0", "q4_0"};
    for (int i = 0; i < 2; i++) {
        char g[256];
        snprintf(g, sizeof g, "%s/tiny-%s.gguf", TMP, types[i]);
        qp.type = types[i];
        DO(mer_quantize_file(QDIR, g, &qp, NULL, &e));
        char label[64];
        snprintf(label, sizeof label, "gguf %s", types[i]);
        test_from_model(label, g, NULL, NULL, mer_dtype_from_name(types[i]), 4e-2, NULL, NULL);
    }
}

static void run(void) {
    mer_cuda *c = test_cuda_open("test_cuda_quant");
    if (!c) return;
    test_kernels(c); /* frees c */
    test_models();
}

#else

static void run(void) {
    mer_err e = {0};
    mer_qwen2_cuda *m = NULL;
    mer_qwen2_cuda_params p = mer_qwen2_cuda_default_params();
    p.wtype = MER_DTYPE_Q8_0;
    CHECK_EQ_INT(mer_qwen2_cuda_from_model(NULL, &p, &m, &e), MER_E_UNSUPPORTED);
    CHECK(m == NULL && strstr(e.msg, "without CUDA") != NULL);
    CHECK_EQ_INT(mer_qwen2_cuda_prefill_embd(NULL, 0, NULL, 1, NULL, 0, NULL, &e), MER_E_UNSUPPORTED);
    printf("SKIP test_cuda_quant: built without CUDA (make CUDA=1)\n");
}

#endif
