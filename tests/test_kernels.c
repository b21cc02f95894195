/* test_kernels.c - the CPU kernels. Every operation of the generic variant is checked against a float64
 * reference written here, on random inputs of odd sizes; every SIMD variant this CPU runs is checked
 * against the generic one (variants the CPU lacks print a SKIP line); and for every variant, 1, 2 and 3
 * threads must give bit-identical results. Weight dtypes: f32, f16, bf16, q8_0, q4_0. */
#include "test.h"

#include "kernels/kernels.h"

#include <stdint.h>
#include <stdlib.h>

// --- helpers -------------------------------------------------------------------------------------------

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 4503599627370496.0 - 1.0);
}
static float *randv(size_t n, float scale) {
    float *v = malloc(n * sizeof(float) + 64);
    for (size_t i = 0; i < n; i++) v[i] = frand() * scale;
    return v;
}
static float *zeros(size_t n) { return calloc(n + 16, sizeof(float)); }

/* Compares got[i] with ref[i] within rtol * mag[i] + atol (mag NULL: |ref|). Returns failures and prints
 * the first. */
static int cmp(const char *what, const float *got, const double *ref, const double *mag, size_t n,
               double rtol, double atol) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double m = mag ? mag[i] : fabs(ref[i]);
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= rtol * m + atol)) {
            if (!bad) printf("  %s[%zu]: got %.9g want %.9g (err %.3g, tol %.3g)\n", what, i, got[i], ref[i], e,
                             rtol * m + atol);
            bad++;
        }
    }
    return bad;
}
/* contexts: [isa][threads-1] */
enum { N_ISA = 3, N_THR = 3 };
static mer_threadpool *pools[N_THR];
static mer_cpu_ctx *ctxs[N_ISA][N_THR];
static mer_cpu_ctx *gen1;

static const char *isa_label(int i) { return i == 0 ? "generic" : i == 1 ? "avx2" : "avx512"; }

/* Weight dtypes with the weight converted from f32; wq receives the stored bytes, wd the dequantised
 * values (what the kernel must multiply by). */
static void *make_weight(mer_dtype t, const float *w, int rows, int cols, float *wd) {
    size_t rb = mer_dtype_row_bytes(t, (size_t)cols);
    uint8_t *q = malloc(rb * (size_t)rows + 64);
    for (int r = 0; r < rows; r++) {
        mer_quantize_row(t, w + (size_t)r * cols, q + r * rb, (size_t)cols);
        mer_dequantize_row(t, q + r * rb, wd + (size_t)r * cols, (size_t)cols);
    }
    return q;
}

// --- matmul --------------------------------------------------------------------------------------------

static void matmul_case(mer_dtype t, int n_tok, int n_in, int n_out, int with_bias, int pad) {
    size_t ldx = (size_t)n_in + pad, ldy = (size_t)n_out + pad;
    float *x = randv((size_t)n_tok * ldx, 1.0f), *w = randv((size_t)n_out * n_in, 1.0f);
    float *bias = with_bias ? randv((size_t)n_out, 1.0f) : NULL;
    float *wd = zeros((size_t)n_out * n_in);
    void *wq = make_weight(t, w, n_out, n_in, wd);
    /* x as the kernel sees it: q8_0-rounded for the integer dots (few tokens), as it is for the GEMM */
    float *xe = zeros((size_t)n_tok * n_in);
    for (int i = 0; i < n_tok; i++) {
        if ((t == MER_DTYPE_Q8_0 || t == MER_DTYPE_Q4_0) && n_tok < MER_CPU_QGEMM_MIN_TOK) {
            mer_block_q8_0 *b = malloc((size_t)n_in / 32 * sizeof *b);
            mer_quantize_row(MER_DTYPE_Q8_0, x + i * ldx, b, (size_t)n_in);
            mer_dequantize_row(MER_DTYPE_Q8_0, b, xe + (size_t)i * n_in, (size_t)n_in);
            free(b);
        } else {
            memcpy(xe + (size_t)i * n_in, x + i * ldx, (size_t)n_in * sizeof(float));
        }
    }
    double *ref = malloc(sizeof(double) * n_tok * n_out), *mag = malloc(sizeof(double) * n_tok * n_out);
    for (int i = 0; i < n_tok; i++)
        for (int o = 0; o < n_out; o++) {
            double s = bias ? bias[o] : 0.0, m = bias ? fabs(bias[o]) : 0.0;
            for (int k = 0; k < n_in; k++) {
                double p = (double)xe[(size_t)i * n_in + k] * wd[(size_t)o * n_in + k];
                s += p;
                m += fabs(p);
            }
            ref[i * n_out + o] = s;
            mag[i * n_out + o] = m;
        }
    float *yg = zeros((size_t)n_tok * ldy), *y = zeros((size_t)n_tok * ldy);
    float *yc = malloc(sizeof(float) * n_tok * n_out);
    char what[160];
    /* generic vs float64 */
    mer_cpu_matmul(gen1, yg, ldy, x, ldx, wq, t, bias, n_tok, n_in, n_out);
    for (int i = 0; i < n_tok; i++) memcpy(yc + (size_t)i * n_out, yg + i * ldy, sizeof(float) * n_out);
    snprintf(what, sizeof what, "matmul generic %s %dx%dx%d", mer_dtype_name(t), n_tok, n_in, n_out);
    CHECK_MSG(cmp(what, yc, ref, mag, (size_t)n_tok * n_out, 2e-6, 1e-6) == 0, "%s", what);
    /* padding columns untouched */
    int touched = 0;
    for (int i = 0; i < n_tok; i++)
        for (int j = n_out; j < (int)ldy; j++) touched += yg[i * ldy + j] != 0.0f;
    CHECK_EQ_INT(touched, 0);
    for (int isa = 0; isa < N_ISA; isa++) {
        if (!ctxs[isa][0]) continue;
        const mer_kernels *k = mer_cpu_ctx_kernels(ctxs[isa][0]);
        double rtol = (t == MER_DTYPE_BF16 && k->has_bf16) ? 8e-3 : 4e-6;
        float *first = NULL;
        for (int th = 0; th < N_THR; th++) {
            memset(y, 0, sizeof(float) * n_tok * ldy);
            mer_cpu_matmul(ctxs[isa][th], y, ldy, x, ldx, wq, t, bias, n_tok, n_in, n_out);
            for (int i = 0; i < n_tok; i++) memcpy(yc + (size_t)i * n_out, y + i * ldy, sizeof(float) * n_out);
            if (th == 0) {
                snprintf(what, sizeof what, "matmul %s %s %dx%dx%d", isa_label(isa), mer_dtype_name(t), n_tok,
                         n_in, n_out);
                /* vs generic, with the generic's own error budget added */
                double *gm = malloc(sizeof(double) * n_tok * n_out);
                float *gc = malloc(sizeof(float) * n_tok * n_out);
                for (int i = 0; i < n_tok; i++) memcpy(gc + (size_t)i * n_out, yg + i * ldy, sizeof(float) * n_out);
                for (int i = 0; i < n_tok * n_out; i++) gm[i] = gc[i];
                CHECK_MSG(cmp(what, yc, gm, mag, (size_t)n_tok * n_out, rtol, 2e-6) == 0, "%s", what);
                free(gm);
                free(gc);
                first = malloc(sizeof(float) * n_tok * n_out);
                memcpy(first, yc, sizeof(float) * n_tok * n_out);
            } else {
                CHECK_MSG(memcmp(first, yc, sizeof(float) * n_tok * n_out) == 0,
                          "matmul %s %s %dx%dx%d: %d threads differ from 1", isa_label(isa), mer_dtype_name(t),
                          n_tok, n_in, n_out, th + 1);
            }
        }
        free(first);
    }
    free(x), free(w), free(bias), free(wd), free(wq), free(xe), free(ref), free(mag), free(yg), free(y), free(yc);
}

static void test_matmul(void) {
    const int toks[] = {1, 3, 7, 33};
    const int ins[] = {1, 7, 33, 95, 257};
    const int outs[] = {1, 7, 33, 95};
    const mer_dtype fts[] = {MER_DTYPE_F32, MER_DTYPE_F16, MER_DTYPE_BF16};
    for (size_t a = 0; a < MER_ARRAY_LEN(fts); a++)
        for (size_t i = 0; i < MER_ARRAY_LEN(toks); i++)
            for (size_t j = 0; j < MER_ARRAY_LEN(ins); j++)
                for (size_t o = 0; o < MER_ARRAY_LEN(outs); o++)
                    matmul_case(fts[a], toks[i], ins[j], outs[o], (int)(i + j + o) % 2, (int)(j % 2) * 3);
    const int qins[] = {32, 96, 288};
    const mer_dtype qts[] = {MER_DTYPE_Q8_0, MER_DTYPE_Q4_0};
    for (size_t a = 0; a < MER_ARRAY_LEN(qts); a++)
        for (size_t i = 0; i < MER_ARRAY_LEN(toks); i++)
            for (size_t j = 0; j < MER_ARRAY_LEN(qins); j++)
                for (size_t o = 0; o < MER_ARRAY_LEN(outs); o++)
                    matmul_case(qts[a], toks[i], qins[j], outs[o], (int)(i + o) % 2, (int)(o % 2) * 5);
    /* blocking edges: more rows than one L2 block (144), more columns than one B block (512), depth
     * over two k-blocks */
    matmul_case(MER_DTYPE_F32, 151, 37, 29, 1, 0);
    matmul_case(MER_DTYPE_F32, 9, 21, 531, 0, 1);
    matmul_case(MER_DTYPE_F32, 13, 600, 19, 1, 0);
    matmul_case(MER_DTYPE_BF16, 150, 520, 45, 1, 0);
    matmul_case(MER_DTYPE_Q4_0, 40, 544, 70, 1, 0);
}

// --- row ops -------------------------------------------------------------------------------------------

typedef void (*ew1_fn)(mer_cpu_ctx *, float *, const float *, size_t);

static double ref_act(int op, double x) {
    switch (op) {
    case 0: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case 1: return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case 2: return x / (1.0 + exp(-1.702 * x));
    default: return x / (1.0 + exp(-x));
    }
}

static void test_elementwise(void) {
    const size_t sizes[] = {1, 7, 33, 95, 257, 40001};
    ew1_fn fns[] = {mer_cpu_gelu, mer_cpu_gelu_tanh, mer_cpu_quick_gelu, mer_cpu_silu};
    const char *names[] = {"gelu", "gelu_tanh", "quick_gelu", "silu"};
    for (size_t si = 0; si < MER_ARRAY_LEN(sizes); si++) {
        size_t n = sizes[si];
        float *x = randv(n, 12.0f), *b = randv(n, 3.0f), *y = zeros(n), *yg = zeros(n);
        x[0] = -30.0f;
        if (n > 3) x[3] = 95.0f, x[1] = 1e-8f, x[2] = -1e-30f;
        double *ref = malloc(n * sizeof(double));
        char what[96];
        for (int op = 0; op < 4; op++) {
            for (size_t i = 0; i < n; i++) ref[i] = ref_act(op, x[i]);
            fns[op](gen1, yg, x, n);
            snprintf(what, sizeof what, "%s generic n=%zu", names[op], n);
            /* atol: float's 1 + erf(x) underflows for x < -5.5, as in torch */
            CHECK_MSG(cmp(what, yg, ref, NULL, n, 3e-6, 1e-7) == 0, "%s", what);
            for (int isa = 1; isa < N_ISA; isa++)
                for (int th = 0; th < N_THR; th++) {
                    if (!ctxs[isa][th]) continue;
                    fns[op](ctxs[isa][th], y, x, n);
                    snprintf(what, sizeof what, "%s %s/%d n=%zu", names[op], isa_label(isa), th + 1, n);
                    CHECK_MSG(cmp(what, y, ref, NULL, n, 5e-6, 1e-7) == 0, "%s", what);
                }
        }
        /* binary ops */
        for (int op = 0; op < 4; op++) {
            for (size_t i = 0; i < n; i++) {
                double a = x[i], c = b[i];
                ref[i] = op == 0 ? a / (1.0 + exp(-a)) * c : op == 1 ? a + c : op == 2 ? a * c : a * -0.37;
            }
            for (int isa = 0; isa < N_ISA; isa++)
                for (int th = 0; th < N_THR; th++) {
                    mer_cpu_ctx *c = isa == 0 && th == 0 ? gen1 : ctxs[isa][th];
                    if (!c) continue;
                    memcpy(y, x, n * sizeof(float)); /* also checks y == a aliasing */
                    if (op == 0) mer_cpu_silu_mul(c, y, y, b, n);
                    if (op == 1) mer_cpu_add(c, y, y, b, n);
                    if (op == 2) mer_cpu_mul(c, y, y, b, n);
                    if (op == 3) mer_cpu_scale(c, y, y, -0.37f, n);
                    snprintf(what, sizeof what, "binary op %d %s/%d n=%zu", op, isa_label(isa), th + 1, n);
                    CHECK_MSG(cmp(what, y, ref, NULL, n, op == 0 ? 5e-6 : 1e-7, 1e-30) == 0, "%s", what);
                }
        }
        free(x), free(b), free(y), free(yg), free(ref);
    }
}

static void test_norms(void) {
    const int rows[] = {1, 3, 40};
    const int ns[] = {1, 7, 33, 95, 257, 1031};
    for (size_t ri = 0; ri < MER_ARRAY_LEN(rows); ri++)
        for (size_t ni = 0; ni < MER_ARRAY_LEN(ns); ni++) {
            int R = rows[ri], n = ns[ni];
            float *x = randv((size_t)R * n, 4.0f), *w = randv((size_t)n, 2.0f), *b = randv((size_t)n, 1.0f);
            for (int i = 0; i < R * n; i++) x[i] += 3.0f; /* non-zero mean */
            float *y = zeros((size_t)R * n), *first = zeros((size_t)R * n);
            double *ref = malloc(sizeof(double) * R * n);
            char what[96];
            for (int op = 0; op < 4; op++) { /* layernorm w+b, layernorm bare, rmsnorm w, rmsnorm bare */
                for (int r = 0; r < R; r++) {
                    const float *xr = x + (size_t)r * n;
                    double mean = 0, var = 0, ss = 0;
                    for (int i = 0; i < n; i++) mean += xr[i], ss += (double)xr[i] * xr[i];
                    mean /= n;
                    for (int i = 0; i < n; i++) var += (xr[i] - mean) * (xr[i] - mean);
                    var /= n;
                    for (int i = 0; i < n; i++) {
                        double v;
                        if (op < 2) v = (xr[i] - mean) / sqrt(var + 1e-5);
                        else v = xr[i] / sqrt(ss / n + 1e-6);
                        if (op == 0) v = v * w[i] + b[i];
                        if (op == 2) v *= w[i];
                        ref[(size_t)r * n + i] = v;
                    }
                }
                for (int isa = 0; isa < N_ISA; isa++)
                    for (int th = 0; th < N_THR; th++) {
                        mer_cpu_ctx *c = isa == 0 && th == 0 ? gen1 : ctxs[isa][th];
                        if (!c) continue;
                        if (op == 0) mer_cpu_layernorm(c, y, x, R, n, w, b, 1e-5f);
                        if (op == 1) mer_cpu_layernorm(c, y, x, R, n, NULL, NULL, 1e-5f);
                        if (op == 2) mer_cpu_rmsnorm(c, y, x, R, n, w, 1e-6f);
                        if (op == 3) mer_cpu_rmsnorm(c, y, x, R, n, NULL, 1e-6f);
                        snprintf(what, sizeof what, "norm %d %s/%d %dx%d", op, isa_label(isa), th + 1, R, n);
                        CHECK_MSG(cmp(what, y, ref, NULL, (size_t)R * n, 2e-5, 2e-5) == 0, "%s", what);
                        if (th == 0) memcpy(first, y, sizeof(float) * R * n);
                        else CHECK_MSG(memcmp(first, y, sizeof(float) * R * n) == 0, "%s: threads differ", what);
                    }
            }
            /* add_row */
            for (int r = 0; r < R; r++)
                for (int i = 0; i < n; i++) ref[(size_t)r * n + i] = (double)x[(size_t)r * n + i] + b[i];
            mer_cpu_add_row(gen1, y, x, b, R, n);
            CHECK_MSG(cmp("add_row", y, ref, NULL, (size_t)R * n, 1e-7, 0) == 0, "add_row %dx%d", R, n);
            free(x), free(w), free(b), free(y), free(first), free(ref);
        }
}

static void test_softmax(void) {
    const int shapes[][2] = {{1, 1}, {1, 7}, {5, 33}, {7, 95}, {33, 257}, {3, 1000}};
    for (size_t s = 0; s < MER_ARRAY_LEN(shapes); s++) {
        int R = shapes[s][0], C = shapes[s][1];
        size_t ld = (size_t)C + 3;
        float *x0 = randv((size_t)R * ld, 8.0f), *x = zeros((size_t)R * ld), *first = zeros((size_t)R * ld);
        double *ref = malloc(sizeof(double) * R * ld);
        for (int mode = 0; mode < 3; mode++) { /* no mask; causal from 0; causal from start 2 */
            int cs = mode == 0 ? -1 : mode == 1 ? 0 : 2;
            float scale = mode == 2 ? 0.125f : 1.0f;
            for (int r = 0; r < R; r++) {
                int nv = cs < 0 ? C : (r + cs + 1 < C ? r + cs + 1 : C);
                double m = -INFINITY, sum = 0;
                for (int j = 0; j < nv; j++) m = fmax(m, scale * (double)x0[r * ld + j]);
                for (int j = 0; j < nv; j++) sum += exp(scale * (double)x0[r * ld + j] - m);
                for (int j = 0; j < (int)ld; j++)
                    ref[r * ld + j] = j < nv ? exp(scale * (double)x0[r * ld + j] - m) / sum
                                      : j < C ? 0.0 : (double)x0[r * ld + j];
            }
            char what[96];
            for (int isa = 0; isa < N_ISA; isa++)
                for (int th = 0; th < N_THR; th++) {
                    mer_cpu_ctx *c = isa == 0 && th == 0 ? gen1 : ctxs[isa][th];
                    if (!c) continue;
                    memcpy(x, x0, sizeof(float) * R * ld);
                    mer_cpu_softmax(c, x, R, C, ld, scale, cs);
                    snprintf(what, sizeof what, "softmax %s/%d %dx%d mode %d", isa_label(isa), th + 1, R, C, mode);
                    CHECK_MSG(cmp(what, x, ref, NULL, (size_t)R * ld, 4e-6, 1e-12) == 0, "%s", what);
                    if (th == 0) memcpy(first, x, sizeof(float) * R * ld);
                    else CHECK_MSG(memcmp(first, x, sizeof(float) * R * ld) == 0, "%s: threads differ", what);
                }
        }
        free(x0), free(x), free(first), free(ref);
    }
}

// --- RoPE, attention -----------------------------------------------------------------------------------

static void test_rope(void) {
    const int cfg[][4] = {{1, 1, 2, 2}, {3, 2, 8, 8}, {7, 3, 64, 64}, {5, 4, 34, 16}}; /* n_tok n_head d n_rot */
    for (size_t ci = 0; ci < MER_ARRAY_LEN(cfg); ci++) {
        int T = cfg[ci][0], H = cfg[ci][1], D = cfg[ci][2], R = cfg[ci][3];
        size_t ld = (size_t)H * D + 1, n = (size_t)T * ld;
        float *x0 = randv(n, 2.0f), *x = zeros(n);
        int32_t pos[16];
        for (int t = 0; t < T; t++) pos[t] = 3 * t + (int)ci * 5;
        double *ref = malloc(sizeof(double) * n);
        for (size_t i = 0; i < n; i++) ref[i] = x0[i];
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < R / 2; i++) {
                    double a = pos[t] * pow(1e6, -2.0 * i / R);
                    size_t o = t * ld + (size_t)h * D;
                    double v0 = x0[o + i], v1 = x0[o + i + R / 2];
                    ref[o + i] = v0 * cos(a) - v1 * sin(a);
                    ref[o + i + R / 2] = v1 * cos(a) + v0 * sin(a);
                }
        for (int isa = 0; isa < N_ISA; isa++)
            for (int th = 0; th < N_THR; th++) {
                mer_cpu_ctx *c = isa == 0 && th == 0 ? gen1 : ctxs[isa][th];
                if (!c) continue;
                memcpy(x, x0, sizeof(float) * n);
                mer_cpu_rope_neox(c, x, T, H, D, ld, pos, 1e6f, R);
                CHECK_MSG(cmp("rope", x, ref, NULL, n, 1e-5, 1e-5) == 0, "rope cfg %zu %s/%d", ci, isa_label(isa),
                          th + 1);
            }
        free(x0), free(x), free(ref);
    }
}

static void test_attention(void) {
    /* n_tok n_head n_kv_head d n_kv start causal */
    const int cfg[][7] = {{1, 1, 1, 1, 1, 0, 1},    {1, 4, 2, 7, 33, 32, 1},  {7, 4, 1, 33, 7, 0, 1},
                          {5, 6, 3, 16, 95, 90, 1}, {9, 2, 2, 64, 130, 0, 0}, {3, 8, 2, 128, 257, 200, 1},
                          {33, 2, 1, 40, 33, 0, 1},   {40, 4, 2, 72, 150, 110, 1}, {6, 2, 1, 300, 70, 64, 1},
                          {20, 3, 3, 64, 200, 0, 0},  {4, 8, 1, 128, 129, 125, 1}};
    for (size_t ci = 0; ci < MER_ARRAY_LEN(cfg); ci++) {
        int T = cfg[ci][0], H = cfg[ci][1], G = cfg[ci][2], D = cfg[ci][3], NK = cfg[ci][4], S = cfg[ci][5],
            causal = cfg[ci][6];
        float *q = randv((size_t)T * H * D, 1.0f), *k = randv((size_t)NK * G * D, 1.0f),
              *v = randv((size_t)NK * G * D, 1.0f);
        float *o = zeros((size_t)T * H * D), *first = zeros((size_t)T * H * D);
        double *ref = malloc(sizeof(double) * T * H * D);
        double *p = malloc(sizeof(double) * NK);
        float scale = 1.0f / sqrtf((float)D);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                int g = h / (H / G), nk = causal ? (S + t + 1 < NK ? S + t + 1 : NK) : NK;
                double m = -INFINITY, sum = 0;
                for (int j = 0; j < nk; j++) {
                    double s = 0;
                    for (int e = 0; e < D; e++) s += (double)q[((size_t)t * H + h) * D + e] * k[((size_t)j * G + g) * D + e];
                    p[j] = s * scale;
                    m = fmax(m, p[j]);
                }
                for (int j = 0; j < nk; j++) sum += (p[j] = exp(p[j] - m));
                for (int e = 0; e < D; e++) {
                    double a = 0;
                    for (int j = 0; j < nk; j++) a += p[j] * v[((size_t)j * G + g) * D + e];
                    ref[((size_t)t * H + h) * D + e] = a / sum;
                }
            }
        char what[96];
        for (int isa = 0; isa < N_ISA; isa++)
            for (int th = 0; th < N_THR; th++) {
                mer_cpu_ctx *c = isa == 0 && th == 0 ? gen1 : ctxs[isa][th];
                if (!c) continue;
                mer_cpu_attention(c, o, q, k, v, T, H, G, D, NK, S, causal, scale);
                snprintf(what, sizeof what, "attention cfg %zu %s/%d", ci, isa_label(isa), th + 1);
                CHECK_MSG(cmp(what, o, ref, NULL, (size_t)T * H * D, 1e-5, 1e-6) == 0, "%s", what);
                if (th == 0) memcpy(first, o, sizeof(float) * T * H * D);
                else CHECK_MSG(memcmp(first, o, sizeof(float) * T * H * D) == 0, "%s: threads differ", what);
            }
        free(q), free(k), free(v), free(o), free(first), free(ref), free(p);
    }
}

// --- convolutions, embedding ---------------------------------------------------------------------------

static void test_conv1d(void) {
    /* c_in l_in c_out k stride pad groups: HuBERT-like first layer, a strided layer, the grouped
     * positional conv (scaled down), odd sizes */
    const int cfg[][7] = {{1, 97, 5, 10, 5, 0, 1}, {6, 33, 4, 3, 2, 0, 1}, {8, 33, 6, 8, 1, 4, 2},
                          {16, 21, 16, 16, 1, 8, 4}, {3, 7, 7, 7, 1, 3, 1}, {5, 40, 10, 2, 2, 1, 5}};
    for (size_t ci = 0; ci < MER_ARRAY_LEN(cfg); ci++) {
        int cin = cfg[ci][0], lin = cfg[ci][1], cout = cfg[ci][2], K = cfg[ci][3], st = cfg[ci][4],
            pad = cfg[ci][5], gr = cfg[ci][6];
        int lout = mer_conv1d_out_len(lin, K, st, pad);
        CHECK_EQ_INT(lout, (lin + 2 * pad - K) / st + 1);
        int cig = cin / gr, cog = cout / gr;
        float *x = randv((size_t)cin * lin, 1.0f), *w = randv((size_t)cout * cig * K, 1.0f), *b = randv(cout, 1.0f);
        float *y = zeros((size_t)cout * lout), *first = zeros((size_t)cout * lout);
        double *ref = malloc(sizeof(double) * cout * lout), *mag = malloc(sizeof(double) * cout * lout);
        for (int co = 0; co < cout; co++)
            for (int p = 0; p < lout; p++) {
                int g = co / cog;
                double s = b[co], m = fabs(b[co]);
                for (int c = 0; c < cig; c++)
                    for (int kk = 0; kk < K; kk++) {
                        int xi = p * st - pad + kk;
                        if (xi < 0 || xi >= lin) continue;
                        double pr = (double)w[((size_t)co * cig + c) * K + kk] * x[(size_t)(g * cig + c) * lin + xi];
                        s += pr;
                        m += fabs(pr);
                    }
                ref[co * lout + p] = s;
                mag[co * lout + p] = m;
            }
        char what[96];
        for (int isa = 0; isa < N_ISA; isa++)
            for (int th = 0; th < N_THR; th++) {
                mer_cpu_ctx *c = isa == 0 && th == 0 ? gen1 : ctxs[isa][th];
                if (!c) continue;
                mer_cpu_conv1d(c, y, x, w, b, cin, lin, cout, K, st, pad, gr);
                snprintf(what, sizeof what, "conv1d cfg %zu %s/%d", ci, isa_label(isa), th + 1);
                CHECK_MSG(cmp(what, y, ref, mag, (size_t)cout * lout, 4e-6, 1e-6) == 0, "%s", what);
                if (th == 0) memcpy(first, y, sizeof(float) * cout * lout);
                else CHECK_MSG(memcmp(first, y, sizeof(float) * cout * lout) == 0, "%s: threads differ", what);
            }
        free(x), free(w), free(b), free(y), free(first), free(ref), free(mag);
    }
    CHECK_EQ_INT(mer_conv1d_out_len(5, 10, 1, 0), 0);
}

static void test_conv2d_patch(void) {
    const int cfg[][5] = {{3, 29, 31, 5, 7}, {1, 8, 8, 3, 4}, {3, 28, 14, 33, 14}}; /* c_in h w c_out p */
    const mer_dtype dts[] = {MER_DTYPE_F32, MER_DTYPE_F16, MER_DTYPE_BF16};
    for (size_t ci = 0; ci < MER_ARRAY_LEN(cfg); ci++)
        for (size_t di = 0; di < MER_ARRAY_LEN(dts); di++) {
            int cin = cfg[ci][0], H = cfg[ci][1], W = cfg[ci][2], cout = cfg[ci][3], P = cfg[ci][4];
            int ph = H / P, pw = W / P, np = ph * pw, K = cin * P * P;
            float *img = randv((size_t)cin * H * W, 1.0f), *w = randv((size_t)cout * K, 1.0f), *b = randv(cout, 1.0f);
            float *wd = zeros((size_t)cout * K);
            void *wq = make_weight(dts[di], w, cout, K, wd);
            float *y = zeros((size_t)np * cout);
            double *ref = malloc(sizeof(double) * np * cout), *mag = malloc(sizeof(double) * np * cout);
            for (int py = 0; py < ph; py++)
                for (int px = 0; px < pw; px++)
                    for (int co = 0; co < cout; co++) {
                        double s = b[co], m = fabs(b[co]);
                        for (int c = 0; c < cin; c++)
                            for (int ky = 0; ky < P; ky++)
                                for (int kx = 0; kx < P; kx++) {
                                    double pr = (double)wd[(((size_t)co * cin + c) * P + ky) * P + kx] *
                                                img[((size_t)c * H + py * P + ky) * W + px * P + kx];
                                    s += pr;
                                    m += fabs(pr);
                                }
                        ref[(py * pw + px) * cout + co] = s;
                        mag[(py * pw + px) * cout + co] = m;
                    }
            for (int isa = 0; isa < N_ISA; isa++)
                for (int th = 0; th < N_THR; th++) {
                    mer_cpu_ctx *c = isa == 0 && th == 0 ? gen1 : ctxs[isa][th];
                    if (!c) continue;
                    const mer_kernels *k = mer_cpu_ctx_kernels(c);
                    mer_cpu_conv2d_patch(c, y, img, wq, dts[di], b, cin, H, W, cout, P);
                    CHECK_MSG(cmp("patch", y, ref, mag, (size_t)np * cout,
                                  dts[di] == MER_DTYPE_BF16 && k->has_bf16 ? 8e-3 : 4e-6, 1e-6) == 0,
                              "conv2d_patch cfg %zu %s %s/%d", ci, mer_dtype_name(dts[di]), isa_label(isa), th + 1);
                }
            free(img), free(w), free(b), free(wd), free(wq), free(y), free(ref), free(mag);
        }
}

static void test_embed(void) {
    const mer_dtype dts[] = {MER_DTYPE_F32, MER_DTYPE_F16, MER_DTYPE_BF16, MER_DTYPE_Q8_0, MER_DTYPE_Q4_0};
    const int rows = 37, cols = 64;
    int32_t ids[9] = {0, 36, 5, 5, 17, 1, 30, 2, 36};
    for (size_t di = 0; di < MER_ARRAY_LEN(dts); di++) {
        float *t = randv((size_t)rows * cols, 3.0f), *td = zeros((size_t)rows * cols);
        void *tq = make_weight(dts[di], t, rows, cols, td);
        float *y = zeros(9 * cols);
        mer_cpu_embed(gen1, y, tq, dts[di], rows, cols, ids, 9);
        int bad = 0;
        for (int i = 0; i < 9; i++) bad += memcmp(y + i * cols, td + (size_t)ids[i] * cols, sizeof(float) * cols) != 0;
        CHECK_MSG(bad == 0, "embed %s", mer_dtype_name(dts[di]));
        if (dts[di] == MER_DTYPE_F32) CHECK(memcmp(y + 2 * cols, t + 5 * cols, sizeof(float) * cols) == 0);
        free(t), free(td), free(tq), free(y);
    }
}

// --- primitives not reached through the ops ------------------------------------------------------------

static void test_primitives(void) {
    const mer_kernels *g = mer_kernels_get(MER_ISA_GENERIC);
    CHECK(g != NULL);
    for (int isa = 1; isa < N_ISA; isa++) {
        const mer_kernels *k = mer_kernels_get((mer_cpu_isa)isa);
        if (!k) continue;
        /* the activation quantiser is bit-identical to the reference on every ISA */
        const int n = 32 * 37;
        float *x = randv(n, 5.0f);
        for (int i = 0; i < 32; i++) x[i] = (float)(i - 16) * 0.5f; /* exact .5 ties: away from zero */
        for (int i = 32; i < 64; i++) x[i] = 0.0f;
        mer_block_q8_0 *a = malloc(sizeof *a * 37), *b = malloc(sizeof *b * 37);
        mer_quantize_row(MER_DTYPE_Q8_0, x, a, n);
        k->quantize_q8_0(x, b, n);
        CHECK_MSG(memcmp(a, b, sizeof *a * 37) == 0, "%s quantize_q8_0 differs from the reference", k->name);
        uint16_t *h1 = malloc(2 * n), *h2 = malloc(2 * n);
        x[5] = NAN;
        for (int i = 0; i < n; i++) h1[i] = mer_fp32_to_bf16(x[i]);
        k->cvt_bf16(x, h2, n);
        CHECK_MSG(memcmp(h1, h2, 2 * n) == 0, "%s cvt_bf16 differs", k->name);
        free(x), free(a), free(b), free(h1), free(h2);
    }
}

static void run(void) {
    for (int th = 0; th < N_THR; th++) mer_threadpool_init(th + 1, &pools[th], NULL);
    CHECK_EQ_INT(mer_cpu_ctx_init(NULL, MER_ISA_GENERIC, &gen1, NULL), MER_OK);
    for (int isa = 0; isa < N_ISA; isa++) {
        if (!mer_cpu_isa_supported((mer_cpu_isa)isa)) {
            printf("SKIP %s kernels: this CPU cannot run them\n", isa_label(isa));
            /* asking for them anyway is a clean error, not a crash */
            mer_cpu_ctx *none = NULL;
            mer_err e = {0};
            CHECK_EQ_INT(mer_cpu_ctx_init(pools[0], (mer_cpu_isa)isa, &none, &e), MER_E_UNSUPPORTED);
            CHECK(none == NULL && strstr(e.msg, "cannot run") != NULL);
            CHECK(mer_kernels_get((mer_cpu_isa)isa) == NULL);
            continue;
        }
        for (int th = 0; th < N_THR; th++)
            CHECK_EQ_INT(mer_cpu_ctx_init(pools[th], (mer_cpu_isa)isa, &ctxs[isa][th], NULL), MER_OK);
    }
    printf("detected ISA: %s\n", mer_cpu_isa_name(MER_ISA_AUTO));
    CHECK(mer_kernels_get(MER_ISA_AUTO) == mer_kernels_get(mer_cpu_detect()));
    CHECK_STR(mer_cpu_isa_name(MER_ISA_GENERIC), "generic");
    test_primitives();
    test_matmul();
    test_elementwise();
    test_norms();
    test_softmax();
    test_rope();
    test_attention();
    test_conv1d();
    test_conv2d_patch();
    test_embed();
    for (int isa = 0; isa < N_ISA; isa++)
        for (int th = 0; th < N_THR; th++) mer_cpu_ctx_free(ctxs[isa][th]);
    mer_cpu_ctx_free(gen1);
    for (int th = 0; th < N_THR; th++) mer_threadpool_free(pools[th]);
}
