/* kernels_avx512.c - the AVX-512 variant (F/BW/VL/DQ + VNNI, and a second table adding BF16): an 8x32
 * f32 GEMM micro-kernel with 8x8-transposing packers for 8-row A and 32-row B panels, 512-bit f32 / f16
 * / bf16 dot products, q8_0 / q4_0 dots on VNNI (vpdpbusd), and bf16 dots on vdpbf16ps against x rounded
 * to bf16 (as llama.cpp does). The q8_0 quantiser and the row and element-wise kernels are the AVX2 ones
 * (avx2_common.h, compiled here with AVX-512 enabled): they are memory- or latency-bound, and sharing them
 * keeps one tested implementation. Compiled with the AVX-512 flags; only called when the CPU reports
 * avx512f/bw/vl/dq/vnni (and avx512bf16 for the BF16 table). */
#include "kernels/cpu/avx2_common.h"

#define MR 8
#define NR 32

// --- GEMM --------------------------------------------------------------------------------------------

/* Full panels of 8 rows: one 8x8 transpose per 8 columns. */
static void a5_pack_a(float *dst, const float *x, size_t ldx, int mr, int kc) {
    if (mr != MR) {
        mer__gemm_pack_a_any(dst, x, ldx, mr, kc, MR);
        return;
    }
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 r0 = _mm256_loadu_ps(x + k), r1 = _mm256_loadu_ps(x + ldx + k), r2 = _mm256_loadu_ps(x + 2 * ldx + k),
               r3 = _mm256_loadu_ps(x + 3 * ldx + k), r4 = _mm256_loadu_ps(x + 4 * ldx + k),
               r5 = _mm256_loadu_ps(x + 5 * ldx + k), r6 = _mm256_loadu_ps(x + 6 * ldx + k),
               r7 = _mm256_loadu_ps(x + 7 * ldx + k);
        TRANSPOSE8(r0, r1, r2, r3, r4, r5, r6, r7);
        float *d = dst + (size_t)k * MR;
        _mm256_storeu_ps(d, r0);
        _mm256_storeu_ps(d + 8, r1);
        _mm256_storeu_ps(d + 16, r2);
        _mm256_storeu_ps(d + 24, r3);
        _mm256_storeu_ps(d + 32, r4);
        _mm256_storeu_ps(d + 40, r5);
        _mm256_storeu_ps(d + 48, r6);
        _mm256_storeu_ps(d + 56, r7);
    }
    for (; k < kc; k++)
        for (int i = 0; i < MR; i++) dst[(size_t)k * MR + i] = x[(size_t)i * ldx + k];
}

static void a5_pack_b(float *dst, const void *w, mer_dtype wt, size_t ldw, int nr, int k0, int kc);

/* q8_0 / q4_0 panels: dequantise the 32 row segments into a buffer, then pack that as f32. */
static void a5_pack_b_blocks(float *dst, const void *w, mer_dtype wt, size_t ldw, int k0, int kc) {
    _Alignas(64) float tmp[NR * MER_GEMM_KC];
    const size_t bb = wt == MER_DTYPE_Q8_0 ? sizeof(mer_block_q8_0) : sizeof(mer_block_q4_0);
    for (int j = 0; j < NR; j++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)j * ldw + (size_t)(k0 / MER_QK) * bb;
        for (int b = 0; b < kc / MER_QK; b++) deq_block(row + (size_t)b * bb, wt, tmp + j * kc + b * MER_QK);
    }
    a5_pack_b(dst, tmp, MER_DTYPE_F32, (size_t)kc * sizeof(float), NR, 0, kc);
}

/* Full panels of 32 rows: four groups of 8 rows, each an 8x8 transpose per 8 columns; edges generic. */
static void a5_pack_b(float *dst, const void *w, mer_dtype wt, size_t ldw, int nr, int k0, int kc) {
    if (nr == NR && (wt == MER_DTYPE_Q8_0 || wt == MER_DTYPE_Q4_0) && k0 % MER_QK == 0 && kc % MER_QK == 0 &&
        kc <= MER_GEMM_KC) {
        a5_pack_b_blocks(dst, w, wt, ldw, k0, kc);
        return;
    }
    if (nr != NR || (wt != MER_DTYPE_F32 && wt != MER_DTYPE_F16 && wt != MER_DTYPE_BF16)) {
        mer__gemm_pack_b_any(dst, w, wt, ldw, nr, k0, kc, NR);
        return;
    }
    const uint8_t *base = w;
    const size_t esz = wt == MER_DTYPE_F32 ? 4 : 2;
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        if ((k * esz) % 64 == 0)
            for (int j = 0; j < NR; j++)
                _mm_prefetch((const char *)(base + (size_t)j * ldw + (size_t)(k0 + k) * esz + 256), _MM_HINT_T0);
        for (int h = 0; h < NR / 8; h++) {
            const uint8_t *r = base + (size_t)h * 8 * ldw;
            __m256 r0 = load8_as_f32(r, wt, k0 + k), r1 = load8_as_f32(r + ldw, wt, k0 + k),
                   r2 = load8_as_f32(r + 2 * ldw, wt, k0 + k), r3 = load8_as_f32(r + 3 * ldw, wt, k0 + k),
                   r4 = load8_as_f32(r + 4 * ldw, wt, k0 + k), r5 = load8_as_f32(r + 5 * ldw, wt, k0 + k),
                   r6 = load8_as_f32(r + 6 * ldw, wt, k0 + k), r7 = load8_as_f32(r + 7 * ldw, wt, k0 + k);
            TRANSPOSE8(r0, r1, r2, r3, r4, r5, r6, r7);
            float *d = dst + (size_t)k * NR + h * 8;
            _mm256_storeu_ps(d + 0 * NR, r0);
            _mm256_storeu_ps(d + 1 * NR, r1);
            _mm256_storeu_ps(d + 2 * NR, r2);
            _mm256_storeu_ps(d + 3 * NR, r3);
            _mm256_storeu_ps(d + 4 * NR, r4);
            _mm256_storeu_ps(d + 5 * NR, r5);
            _mm256_storeu_ps(d + 6 * NR, r6);
            _mm256_storeu_ps(d + 7 * NR, r7);
        }
    }
    for (; k < kc; k++)
        for (int j = 0; j < NR; j++) {
            const void *row = base + (size_t)j * ldw;
            float v;
            if (wt == MER_DTYPE_F32) v = ((const float *)row)[k0 + k];
            else if (wt == MER_DTYPE_F16) v = mer_fp16_to_fp32(((const uint16_t *)row)[k0 + k]);
            else v = mer_bf16_to_fp32(((const uint16_t *)row)[k0 + k]);
            dst[(size_t)k * NR + j] = v;
        }
}

#define A5_ROW(i)                                                                                         \
    do {                                                                                                  \
        __m512 ai = _mm512_set1_ps(a[i]);                                                                 \
        c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);                                                       \
        c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);                                                       \
    } while (0)

#define A5_STORE(i)                                                                                       \
    do {                                                                                                  \
        float *ci = c + (size_t)(i)*ldc;                                                                  \
        if (accumulate) {                                                                                 \
            c##i##0 = _mm512_add_ps(_mm512_loadu_ps(ci), c##i##0);                                        \
            c##i##1 = _mm512_add_ps(_mm512_loadu_ps(ci + 16), c##i##1);                                   \
        }                                                                                                 \
        _mm512_storeu_ps(ci, c##i##0);                                                                    \
        _mm512_storeu_ps(ci + 16, c##i##1);                                                               \
    } while (0)

#define A5_SPILL(i)                                                                                       \
    do {                                                                                                  \
        _mm512_store_ps(acc + (i)*NR, c##i##0);                                                           \
        _mm512_store_ps(acc + (i)*NR + 16, c##i##1);                                                      \
    } while (0)

/* 16 zmm accumulators; b panels are 64-byte aligned (offsets are multiples of 32 floats from an aligned
 * buffer). Summation over k is in ascending order per element. */
static void a5_ukernel(int kc, const float *a, const float *b, float *c, size_t ldc, int mr, int nr,
                       int accumulate) {
    if (accumulate)
        for (int i = 0; i < mr; i++) {
            _mm_prefetch((const char *)(c + (size_t)i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + (size_t)i * ldc + NR - 1), _MM_HINT_T0);
        }
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        A5_ROW(0);
        A5_ROW(1);
        A5_ROW(2);
        A5_ROW(3);
        A5_ROW(4);
        A5_ROW(5);
        A5_ROW(6);
        A5_ROW(7);
        a += MR;
        b += NR;
    }
    if (mr == MR && nr == NR) {
        A5_STORE(0);
        A5_STORE(1);
        A5_STORE(2);
        A5_STORE(3);
        A5_STORE(4);
        A5_STORE(5);
        A5_STORE(6);
        A5_STORE(7);
        return;
    }
    _Alignas(64) float acc[MR * NR];
    A5_SPILL(0);
    A5_SPILL(1);
    A5_SPILL(2);
    A5_SPILL(3);
    A5_SPILL(4);
    A5_SPILL(5);
    A5_SPILL(6);
    A5_SPILL(7);
    for (int i = 0; i < mr; i++) {
        float *ci = c + (size_t)i * ldc;
        for (int j = 0; j < nr; j++) ci[j] = accumulate ? ci[j] + acc[i * NR + j] : acc[i * NR + j];
    }
}

// --- dots --------------------------------------------------------------------------------------------

static inline __mmask16 mask16(int n) { return (__mmask16)((1u << n) - 1u); } /* 0 <= n < 16 */
static inline __mmask32 mask32(int n) { return (__mmask32)((1ull << n) - 1u); } /* 0 <= n < 32 */

static float a5_dot_f32(const float *w, const float *x, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(x + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(x + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), s0);
    if (i < n) {
        __mmask16 m = mask16(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + i), _mm512_maskz_loadu_ps(m, x + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static float a5_dot_f16(const uint16_t *w, const float *x, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i))), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i + 16))),
                             _mm512_loadu_ps(x + i + 16), s1);
    }
    for (; i < n; i += 16) {
        int r = n - i < 16 ? n - i : 16;
        __mmask16 m = r == 16 ? (__mmask16)0xffff : mask16(r);
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + i)), _mm512_maskz_loadu_ps(m, x + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static inline __m512 bf16x16_to_f32(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* bf16 weights, f32 x (the table without AVX-512 BF16) */
static float a5_dot_bf16_f32(const uint16_t *w, const void *xv, int n) {
    const float *x = xv;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(bf16x16_to_f32(_mm256_loadu_si256((const __m256i *)(w + i))), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(bf16x16_to_f32(_mm256_loadu_si256((const __m256i *)(w + i + 16))),
                             _mm512_loadu_ps(x + i + 16), s1);
    }
    for (; i < n; i += 16) {
        int r = n - i < 16 ? n - i : 16;
        __mmask16 m = r == 16 ? (__mmask16)0xffff : mask16(r);
        s0 = _mm512_fmadd_ps(bf16x16_to_f32(_mm256_maskz_loadu_epi16(m, w + i)), _mm512_maskz_loadu_ps(m, x + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* bf16 weights, bf16 x (converted with a5_cvt_bf16): vdpbf16ps, 32 pairs per instruction. */
static float a5_dot_bf16_bf16(const uint16_t *w, const void *xv, int n) {
    const uint16_t *x = xv;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_dpbf16_ps(s0, (__m512bh)_mm512_loadu_si512(w + i), (__m512bh)_mm512_loadu_si512(x + i));
        s1 = _mm512_dpbf16_ps(s1, (__m512bh)_mm512_loadu_si512(w + i + 32), (__m512bh)_mm512_loadu_si512(x + i + 32));
    }
    for (; i < n; i += 32) {
        int r = n - i < 32 ? n - i : 32;
        __mmask32 m = r == 32 ? (__mmask32)0xffffffffu : mask32(r);
        s0 = _mm512_dpbf16_ps(s0, (__m512bh)_mm512_maskz_loadu_epi16(m, w + i), (__m512bh)_mm512_maskz_loadu_epi16(m, x + i));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* Bit-identical to mer_fp32_to_bf16 (integer round-to-nearest-even, NaN -> 0x7fc0). */
static void a5_cvt_bf16(const float *x, uint16_t *y, int n) {
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff), absm = _mm512_set1_epi32(0x7fffffff),
                  inf = _mm512_set1_epi32(0x7f800000), qnan = _mm512_set1_epi32(0x7fc0);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_castps_si512(_mm512_loadu_ps(x + i));
        __m512i rb = _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(u, 16), one), bias);
        __m512i v = _mm512_srli_epi32(_mm512_add_epi32(u, rb), 16);
        __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, absm), inf);
        v = _mm512_mask_mov_epi32(v, nan, qnan);
        _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtepi32_epi16(v));
    }
    for (; i < n; i++) y[i] = mer_fp32_to_bf16(x[i]);
}

/* 8 int32 lane sums of w*x over 32 int8 pairs on VNNI (sign moved onto x, |w| as unsigned). */
static inline __m256i vnni_dot32(__m256i w, __m256i x) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

#define A5_QDOT_BODY(WLOAD)                                                                               \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;                             \
    int b = 0;                                                                                            \
    for (; b + 4 <= nb; b += 4) {                                                                         \
        __m128 d4 = SCALES4(w, x, b);                                                                     \
        __m256 d44 = _mm256_set_m128(d4, d4);                                                             \
        __m256i p0 = vnni_dot32(WLOAD(b), _mm256_loadu_si256((const __m256i *)x[b].qs));                  \
        __m256i p1 = vnni_dot32(WLOAD(b + 1), _mm256_loadu_si256((const __m256i *)x[b + 1].qs));          \
        __m256i p2 = vnni_dot32(WLOAD(b + 2), _mm256_loadu_si256((const __m256i *)x[b + 2].qs));          \
        __m256i p3 = vnni_dot32(WLOAD(b + 3), _mm256_loadu_si256((const __m256i *)x[b + 3].qs));          \
        acc0 = _mm256_fmadd_ps(_mm256_permute_ps(d44, 0x00), _mm256_cvtepi32_ps(p0), acc0);               \
        acc1 = _mm256_fmadd_ps(_mm256_permute_ps(d44, 0x55), _mm256_cvtepi32_ps(p1), acc1);               \
        acc2 = _mm256_fmadd_ps(_mm256_permute_ps(d44, 0xAA), _mm256_cvtepi32_ps(p2), acc2);               \
        acc3 = _mm256_fmadd_ps(_mm256_permute_ps(d44, 0xFF), _mm256_cvtepi32_ps(p3), acc3);               \
    }                                                                                                     \
    for (; b < nb; b++) {                                                                                 \
        __m256i p0 = vnni_dot32(WLOAD(b), _mm256_loadu_si256((const __m256i *)x[b].qs));                  \
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[b].d) * h2f(x[b].d)), _mm256_cvtepi32_ps(p0), acc0);   \
    }                                                                                                     \
    return hsum8(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));

static float a5_dot_q8_0(const mer_block_q8_0 *w, const mer_block_q8_0 *x, int nb) { A5_QDOT_BODY(Q8_LOAD) }

static float a5_dot_q4_0(const mer_block_q4_0 *w, const mer_block_q8_0 *x, const float *aux, int nb) {
    (void)aux; /* prep_q4_0 is NULL in these tables */
    A5_QDOT_BODY(Q4_LOAD)
}

// --- tables ------------------------------------------------------------------------------------------

#define A5_COMMON                                                                                         \
    .isa = MER_ISA_AVX512, .has_vnni = 1, .gemm_mr = MR, .gemm_nr = NR, .gemm_pack_a = a5_pack_a,         \
    .gemm_pack_b = a5_pack_b, .gemm_ukernel = a5_ukernel, .dot_f32 = a5_dot_f32, .dot_f16 = a5_dot_f16,   \
    .cvt_bf16 = a5_cvt_bf16, .quantize_q8_0 = a2_quantize_q8_0, .dot_q8_0 = a5_dot_q8_0,                   \
    .dot_q4_0 = a5_dot_q4_0, .axpy = a2_axpy, .exp_sum = a2_exp_sum, .softmax = a2_softmax,               \
    .layernorm = a2_layernorm, .rmsnorm = a2_rmsnorm, .gelu = a2_gelu, .gelu_tanh = a2_gelu_tanh,         \
    .quick_gelu = a2_quick_gelu, .silu = a2_silu, .silu_mul = a2_silu_mul, .add = a2_add, .mul = a2_mul,  \
    .scale = a2_scale

const mer_kernels mer__kernels_avx512 = {
    .name = "avx512",
    .has_bf16 = 0,
    .dot_bf16 = a5_dot_bf16_f32,
    A5_COMMON,
};

const mer_kernels mer__kernels_avx512bf16 = {
    .name = "avx512bf16",
    .has_bf16 = 1,
    .dot_bf16 = a5_dot_bf16_bf16,
    A5_COMMON,
};
