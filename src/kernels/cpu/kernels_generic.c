/* kernels_generic.c - the portable C variant of every CPU primitive (the reference the SIMD variants are
 * tested against, and the fallback on CPUs without them), plus generic packing helpers the SIMD variants
 * reuse. Straightforward loops with sequential sums; libm for exp/erf/tanh. */
#include "kernels/cpu/kernels_impl.h"

#include <math.h>
#include <string.h>

// --- GEMM packing (any MR / NR) ----------------------------------------------------------------------

void mer__gemm_pack_a_any(float *dst, const float *x, size_t ldx, int mr, int kc, int MR) {
    for (int k = 0; k < kc; k++) {
        for (int i = 0; i < mr; i++) dst[k * MR + i] = x[(size_t)i * ldx + k];
        for (int i = mr; i < MR; i++) dst[k * MR + i] = 0.0f;
    }
}

void mer__row_to_f32(const void *row, mer_dtype wt, int k0, int kc, float *out) {
    switch (wt) {
    case MER_DTYPE_F32: memcpy(out, (const float *)row + k0, (size_t)kc * sizeof(float)); return;
    case MER_DTYPE_F16: {
        const uint16_t *r = (const uint16_t *)row + k0;
        for (int k = 0; k < kc; k++) out[k] = mer_fp16_to_fp32(r[k]);
        return;
    }
    case MER_DTYPE_BF16: {
        const uint16_t *r = (const uint16_t *)row + k0;
        for (int k = 0; k < kc; k++) out[k] = mer_bf16_to_fp32(r[k]);
        return;
    }
    case MER_DTYPE_Q8_0:
    case MER_DTYPE_Q4_0: {
        MER_ASSERT(k0 % MER_QK == 0);
        size_t bb = mer_dtype_block_bytes(wt);
        const uint8_t *r = (const uint8_t *)row + (size_t)(k0 / MER_QK) * bb;
        int full = kc / MER_QK * MER_QK;
        if (full) mer_dequantize_row(wt, r, out, (size_t)full);
        if (kc > full) { /* a final partial block can only come from a caller slicing inside a block */
            float tmp[MER_QK];
            mer_dequantize_row(wt, r + (size_t)(full / MER_QK) * bb, tmp, MER_QK);
            memcpy(out + full, tmp, (size_t)(kc - full) * sizeof(float));
        }
        return;
    }
    default: MER_ASSERT(!"unsupported weight dtype");
    }
}

void mer__gemm_pack_b_any(float *dst, const void *w, mer_dtype wt, size_t ldw, int nr, int k0, int kc,
                          int NR) {
    float row[MER_GEMM_KC];
    MER_ASSERT(kc <= MER_GEMM_KC);
    for (int j = 0; j < nr; j++) {
        mer__row_to_f32((const uint8_t *)w + (size_t)j * ldw, wt, k0, kc, row);
        for (int k = 0; k < kc; k++) dst[k * NR + j] = row[k];
    }
    for (int j = nr; j < NR; j++)
        for (int k = 0; k < kc; k++) dst[k * NR + j] = 0.0f;
}

// --- GEMM (MR = 4, NR = 8) ---------------------------------------------------------------------------

#define G_MR 4
#define G_NR 8

static void g_pack_a(float *dst, const float *x, size_t ldx, int mr, int kc) {
    mer__gemm_pack_a_any(dst, x, ldx, mr, kc, G_MR);
}

static void g_pack_b(float *dst, const void *w, mer_dtype wt, size_t ldw, int nr, int k0, int kc) {
    mer__gemm_pack_b_any(dst, w, wt, ldw, nr, k0, kc, G_NR);
}

static void g_ukernel(int kc, const float *a, const float *b, float *c, size_t ldc, int mr, int nr,
                      int accumulate) {
    float acc[G_MR][G_NR] = {{0}};
    for (int k = 0; k < kc; k++)
        for (int i = 0; i < G_MR; i++)
            for (int j = 0; j < G_NR; j++) acc[i][j] += a[k * G_MR + i] * b[k * G_NR + j];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

// --- dots ----------------------------------------------------------------------------------------------

static float g_dot_f32(const float *w, const float *x, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += w[i] * x[i];
    return s;
}

static float g_dot_f16(const uint16_t *w, const float *x, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += mer_fp16_to_fp32(w[i]) * x[i];
    return s;
}

static float g_dot_bf16(const uint16_t *w, const void *xv, int n) {
    const float *x = xv;
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += mer_bf16_to_fp32(w[i]) * x[i];
    return s;
}

void mer__gen_cvt_bf16(const float *x, uint16_t *y, int n) {
    for (int i = 0; i < n; i++) y[i] = mer_fp32_to_bf16(x[i]);
}

void mer__gen_quantize_q8_0(const float *x, mer_block_q8_0 *y, int n) {
    mer_quantize_row(MER_DTYPE_Q8_0, x, y, (size_t)n);
}

float mer__gen_dot_q8_0(const mer_block_q8_0 *w, const mer_block_q8_0 *x, int nb) {
    float s = 0.0f;
    for (int b = 0; b < nb; b++) {
        int sumi = 0;
        for (int j = 0; j < MER_QK; j++) sumi += w[b].qs[j] * x[b].qs[j];
        s += (float)sumi * (mer_fp16_to_fp32(w[b].d) * mer_fp16_to_fp32(x[b].d));
    }
    return s;
}

float mer__gen_dot_q4_0(const mer_block_q4_0 *w, const mer_block_q8_0 *x, const float *aux, int nb) {
    (void)aux;
    float s = 0.0f;
    for (int b = 0; b < nb; b++) {
        int sumi = 0;
        for (int j = 0; j < MER_QK / 2; j++) {
            sumi += ((w[b].qs[j] & 0x0f) - 8) * x[b].qs[j];
            sumi += ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + MER_QK / 2];
        }
        s += (float)sumi * (mer_fp16_to_fp32(w[b].d) * mer_fp16_to_fp32(x[b].d));
    }
    return s;
}

// --- vector helpers ------------------------------------------------------------------------------------

static void g_axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static float g_exp_sum(float *x, int n, float scale, float shift) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(scale * x[i] - shift);
        s += x[i];
    }
    return s;
}

// --- rows ----------------------------------------------------------------------------------------------

static void g_softmax(float *x, int n, int n_valid, float scale) {
    float m = -INFINITY;
    for (int i = 0; i < n_valid; i++) m = fmaxf(m, scale * x[i]);
    float s = g_exp_sum(x, n_valid, scale, m);
    float inv = 1.0f / s;
    for (int i = 0; i < n_valid; i++) x[i] *= inv;
    for (int i = n_valid; i < n; i++) x[i] = 0.0f;
}

static void g_layernorm(float *y, const float *x, int n, const float *w, const float *b, float eps) {
    float mean = 0.0f, var = 0.0f;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= (float)n;
    for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (float)n;
    const float r = 1.0f / sqrtf(var + eps);
    for (int i = 0; i < n; i++) {
        float v = (x[i] - mean) * r;
        if (w) v *= w[i];
        if (b) v += b[i];
        y[i] = v;
    }
}

static void g_rmsnorm(float *y, const float *x, int n, const float *w, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) y[i] = w ? x[i] * r * w[i] : x[i] * r;
}

// --- element-wise --------------------------------------------------------------------------------------

static void g_gelu(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

static void g_gelu_tanh(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    }
}

static void g_quick_gelu(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

static void g_silu(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

static void g_silu_mul(float *y, const float *a, const float *b, int n) {
    for (int i = 0; i < n; i++) y[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

static void g_add(float *y, const float *a, const float *b, int n) {
    for (int i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static void g_mul(float *y, const float *a, const float *b, int n) {
    for (int i = 0; i < n; i++) y[i] = a[i] * b[i];
}

static void g_scale(float *y, const float *x, float s, int n) {
    for (int i = 0; i < n; i++) y[i] = x[i] * s;
}

const mer_kernels mer__kernels_generic = {
    .name = "generic",
    .isa = MER_ISA_GENERIC,
    .gemm_mr = G_MR,
    .gemm_nr = G_NR,
    .gemm_pack_a = g_pack_a,
    .gemm_pack_b = g_pack_b,
    .gemm_ukernel = g_ukernel,
    .dot_f32 = g_dot_f32,
    .dot_f16 = g_dot_f16,
    .dot_bf16 = g_dot_bf16,
    .cvt_bf16 = mer__gen_cvt_bf16,
    .quantize_q8_0 = mer__gen_quantize_q8_0,
    .dot_q8_0 = mer__gen_dot_q8_0,
    .dot_q4_0 = mer__gen_dot_q4_0,
    .axpy = g_axpy,
    .exp_sum = g_exp_sum,
    .softmax = g_softmax,
    .layernorm = g_layernorm,
    .rmsnorm = g_rmsnorm,
    .gelu = g_gelu,
    .gelu_tanh = g_gelu_tanh,
    .quick_gelu = g_quick_gelu,
    .silu = g_silu,
    .silu_mul = g_silu_mul,
    .add = g_add,
    .mul = g_mul,
    .scale = g_scale,
};
