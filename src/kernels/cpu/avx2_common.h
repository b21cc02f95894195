/* avx2_common.h - AVX2 + FMA + F16C building blocks shared by the AVX2 and AVX-512 variants (both
 * translation units are compiled with at least these features): vector helpers, exp / erfc, the 8x8
 * transposing packers for 6-row A and 16-row B panels, the f32 / f16 / bf16 / q8_0 / q4_0 dot products,
 * the q8_0 activation quantiser, and the row and element-wise kernels. Everything is static inline so
 * each variant gets its own copy compiled with its own flags. Tails use masked loads and stores so every
 * element goes through the same arithmetic wherever a thread's range starts or ends. */
#ifndef MER_AVX2_COMMON_H
#define MER_AVX2_COMMON_H

#include "kernels/cpu/kernels_impl.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define A2_MR 6
#define A2_NR 16

// --- small helpers -----------------------------------------------------------------------------------

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* lanes < n set (0 <= n <= 8) */
static inline __m256i tail_mask(int n) {
    static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(m + 8 - n));
}

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); } /* F16C: exact, like mer_fp16_to_fp32 */

static inline __m256 bf16x8_to_f32(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

// --- vector exp and erfc ---------------------------------------------------------------------------------

/* e^x with ~1 ulp error for x in [-87.3, 88.3]; 0 below, clamped above. */
static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f), hi = _mm256_set1_ps(88.3762626647949f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x); /* ln2 split: hi part exact */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    /* Taylor to degree 7 on |r| <= 0.347 */
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

static inline __m256 sigmoid8(__m256 t) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), t))));
}

/* erfc(z) with fractional error below ~2e-7 everywhere (Chebyshev-fitted exponent, Numerical Recipes'
 * erfcc), for any z: erfc(-z) = 2 - erfc(z). */
static inline __m256 erfc8(__m256 z) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 az = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), z);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.5f), az, one));
    __m256 p = _mm256_set1_ps(0.17087277f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
    p = _mm256_fnmadd_ps(az, az, p);
    __m256 r = _mm256_mul_ps(t, exp8(p));
    __m256 neg = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_blendv_ps(r, _mm256_sub_ps(_mm256_set1_ps(2.0f), r), neg);
}

// --- GEMM --------------------------------------------------------------------------------------------


/* 8x8 transpose of r0..r7 in place */
#define TRANSPOSE8(r0, r1, r2, r3, r4, r5, r6, r7)                                                        \
    do {                                                                                                  \
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);                          \
        __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);                          \
        __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);                          \
        __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);                          \
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);                \
        __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);                \
        __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);                \
        __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);                \
        r0 = _mm256_permute2f128_ps(u0, u4, 0x20);                                                        \
        r1 = _mm256_permute2f128_ps(u1, u5, 0x20);                                                        \
        r2 = _mm256_permute2f128_ps(u2, u6, 0x20);                                                        \
        r3 = _mm256_permute2f128_ps(u3, u7, 0x20);                                                        \
        r4 = _mm256_permute2f128_ps(u0, u4, 0x31);                                                        \
        r5 = _mm256_permute2f128_ps(u1, u5, 0x31);                                                        \
        r6 = _mm256_permute2f128_ps(u2, u6, 0x31);                                                        \
        r7 = _mm256_permute2f128_ps(u3, u7, 0x31);                                                        \
    } while (0)

/* Full panels of 6 rows: 8x8 register transposes (two zero rows), 6 lanes stored per k. */
static inline void a2_pack_a(float *dst, const float *x, size_t ldx, int mr, int kc) {
    if (mr != A2_MR) {
        mer__gemm_pack_a_any(dst, x, ldx, mr, kc, A2_MR);
        return;
    }
    const __m256i m6 = tail_mask(6);
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 r0 = _mm256_loadu_ps(x + k), r1 = _mm256_loadu_ps(x + ldx + k), r2 = _mm256_loadu_ps(x + 2 * ldx + k),
               r3 = _mm256_loadu_ps(x + 3 * ldx + k), r4 = _mm256_loadu_ps(x + 4 * ldx + k),
               r5 = _mm256_loadu_ps(x + 5 * ldx + k), r6 = _mm256_setzero_ps(), r7 = r6;
        TRANSPOSE8(r0, r1, r2, r3, r4, r5, r6, r7);
        float *d = dst + (size_t)k * A2_MR;
        _mm256_maskstore_ps(d, m6, r0);
        _mm256_maskstore_ps(d + 6, m6, r1);
        _mm256_maskstore_ps(d + 12, m6, r2);
        _mm256_maskstore_ps(d + 18, m6, r3);
        _mm256_maskstore_ps(d + 24, m6, r4);
        _mm256_maskstore_ps(d + 30, m6, r5);
        _mm256_maskstore_ps(d + 36, m6, r6);
        _mm256_maskstore_ps(d + 42, m6, r7);
    }
    for (; k < kc; k++)
        for (int i = 0; i < A2_MR; i++) dst[(size_t)k * A2_MR + i] = x[(size_t)i * ldx + k];
}

static inline __m256i q4_unpack(const uint8_t *qs);

static inline __m256 load8_as_f32(const void *row, mer_dtype wt, int k) {
    if (wt == MER_DTYPE_F32) return _mm256_loadu_ps((const float *)row + k);
    if (wt == MER_DTYPE_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k)));
    return bf16x8_to_f32((const uint16_t *)row + k);
}

/* 32 elements of a q8_0 / q4_0 block to f32 (exactly as mer_dequantize_row: q * d, (q - 8) * d). */
static inline void deq_block(const void *blk, mer_dtype wt, float *out) {
    __m256i q;
    float d;
    if (wt == MER_DTYPE_Q8_0) {
        const mer_block_q8_0 *b = blk;
        q = _mm256_loadu_si256((const __m256i *)b->qs);
        d = h2f(b->d);
    } else {
        const mer_block_q4_0 *b = blk;
        q = q4_unpack(b->qs);
        d = h2f(b->d);
    }
    const __m256 vd = _mm256_set1_ps(d);
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), vd));
    _mm256_storeu_ps(out + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), vd));
    _mm256_storeu_ps(out + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), vd));
    _mm256_storeu_ps(out + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), vd));
}

static inline void a2_pack_b(float *dst, const void *w, mer_dtype wt, size_t ldw, int nr, int k0, int kc);

/* q8_0 / q4_0 panels: dequantise the 16 row segments into a small buffer, then pack that as f32. */
static inline void a2_pack_b_blocks(float *dst, const void *w, mer_dtype wt, size_t ldw, int k0, int kc) {
    _Alignas(32) float tmp[A2_NR * MER_GEMM_KC];
    const size_t bb = wt == MER_DTYPE_Q8_0 ? sizeof(mer_block_q8_0) : sizeof(mer_block_q4_0);
    for (int j = 0; j < A2_NR; j++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)j * ldw + (size_t)(k0 / MER_QK) * bb;
        for (int b = 0; b < kc / MER_QK; b++) deq_block(row + (size_t)b * bb, wt, tmp + j * kc + b * MER_QK);
    }
    a2_pack_b(dst, tmp, MER_DTYPE_F32, (size_t)kc * sizeof(float), A2_NR, 0, kc);
}

/* Full panels of 16 rows: 8x8 register transposes (q8_0/q4_0 dequantised first); edges generic. */
static inline void a2_pack_b(float *dst, const void *w, mer_dtype wt, size_t ldw, int nr, int k0, int kc) {
    if (nr == A2_NR && (wt == MER_DTYPE_Q8_0 || wt == MER_DTYPE_Q4_0) && k0 % MER_QK == 0 && kc % MER_QK == 0 &&
        kc <= MER_GEMM_KC) {
        a2_pack_b_blocks(dst, w, wt, ldw, k0, kc);
        return;
    }
    if (nr != A2_NR || (wt != MER_DTYPE_F32 && wt != MER_DTYPE_F16 && wt != MER_DTYPE_BF16)) {
        mer__gemm_pack_b_any(dst, w, wt, ldw, nr, k0, kc, A2_NR);
        return;
    }
    const uint8_t *base = w;
    const size_t esz = wt == MER_DTYPE_F32 ? 4 : 2;
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        if ((k * esz) % 64 == 0) /* one line ahead per row: these are 16 strided streams */
            for (int j = 0; j < A2_NR; j++)
                _mm_prefetch((const char *)(base + (size_t)j * ldw + (size_t)(k0 + k) * esz + 256), _MM_HINT_T0);
        for (int h = 0; h < 2; h++) {
            const uint8_t *r = base + (size_t)h * 8 * ldw;
            __m256 r0 = load8_as_f32(r, wt, k0 + k), r1 = load8_as_f32(r + ldw, wt, k0 + k),
                   r2 = load8_as_f32(r + 2 * ldw, wt, k0 + k), r3 = load8_as_f32(r + 3 * ldw, wt, k0 + k),
                   r4 = load8_as_f32(r + 4 * ldw, wt, k0 + k), r5 = load8_as_f32(r + 5 * ldw, wt, k0 + k),
                   r6 = load8_as_f32(r + 6 * ldw, wt, k0 + k), r7 = load8_as_f32(r + 7 * ldw, wt, k0 + k);
            TRANSPOSE8(r0, r1, r2, r3, r4, r5, r6, r7);
            float *d = dst + (size_t)k * A2_NR + h * 8;
            _mm256_storeu_ps(d + 0 * A2_NR, r0);
            _mm256_storeu_ps(d + 1 * A2_NR, r1);
            _mm256_storeu_ps(d + 2 * A2_NR, r2);
            _mm256_storeu_ps(d + 3 * A2_NR, r3);
            _mm256_storeu_ps(d + 4 * A2_NR, r4);
            _mm256_storeu_ps(d + 5 * A2_NR, r5);
            _mm256_storeu_ps(d + 6 * A2_NR, r6);
            _mm256_storeu_ps(d + 7 * A2_NR, r7);
        }
    }
    for (; k < kc; k++)
        for (int j = 0; j < A2_NR; j++) {
            const void *row = base + (size_t)j * ldw;
            float v;
            if (wt == MER_DTYPE_F32) v = ((const float *)row)[k0 + k];
            else if (wt == MER_DTYPE_F16) v = mer_fp16_to_fp32(((const uint16_t *)row)[k0 + k]);
            else v = mer_bf16_to_fp32(((const uint16_t *)row)[k0 + k]);
            dst[(size_t)k * A2_NR + j] = v;
        }
}

// --- dots --------------------------------------------------------------------------------------------

static inline float a2_dot_f32(const float *w, const float *x, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), s0);
    if (i < n) {
        __m256i m = tail_mask(n - i);
        s1 = _mm256_fmadd_ps(_mm256_maskload_ps(w + i, m), _mm256_maskload_ps(x + i, m), s1);
    }
    return hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

static inline float a2_dot_f16(const uint16_t *w, const float *x, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i h01 = _mm256_loadu_si256((const __m256i *)(w + i)), h23 = _mm256_loadu_si256((const __m256i *)(w + i + 16));
        s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h01)), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h01, 1)), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h23)), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h23, 1)), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(x + i), s0);
    float tail = 0.0f;
    for (; i < n; i++) tail += mer_fp16_to_fp32(w[i]) * x[i];
    return hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))) + tail;
}

static inline float a2_dot_bf16(const uint16_t *w, const void *xv, int n) {
    const float *x = xv;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i h01 = _mm256_loadu_si256((const __m256i *)(w + i)), h23 = _mm256_loadu_si256((const __m256i *)(w + i + 16));
        __m256i z = _mm256_setzero_si256();
        /* unpack interleaves within 128-bit lanes: pair the x loads the same way */
        __m256 w0 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, h01)); /* elements 0-3, 8-11 */
        __m256 w1 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, h01)); /* 4-7, 12-15 */
        __m256 w2 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, h23));
        __m256 w3 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, h23));
        __m256 x0 = _mm256_loadu2_m128(x + i + 8, x + i), x1 = _mm256_loadu2_m128(x + i + 12, x + i + 4);
        __m256 x2 = _mm256_loadu2_m128(x + i + 24, x + i + 16), x3 = _mm256_loadu2_m128(x + i + 28, x + i + 20);
        s0 = _mm256_fmadd_ps(w0, x0, s0);
        s1 = _mm256_fmadd_ps(w1, x1, s1);
        s2 = _mm256_fmadd_ps(w2, x2, s2);
        s3 = _mm256_fmadd_ps(w3, x3, s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(bf16x8_to_f32(w + i), _mm256_loadu_ps(x + i), s0);
    float tail = 0.0f;
    for (; i < n; i++) tail += mer_bf16_to_fp32(w[i]) * x[i];
    return hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))) + tail;
}

static inline void a2_cvt_bf16(const float *x, uint16_t *y, int n) {
    int i = 0;
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff), absm = _mm256_set1_epi32(0x7fffffff),
                  inf = _mm256_set1_epi32(0x7f800000), qnan = _mm256_set1_epi32(0x7fc0);
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        for (int h = 0; h < 2; h++) {
            __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i + 8 * h));
            __m256i rb = _mm256_add_epi32(_mm256_and_si256(_mm256_srli_epi32(u, 16), one), bias);
            __m256i v = _mm256_srli_epi32(_mm256_add_epi32(u, rb), 16);
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
            r[h] = _mm256_blendv_epi8(v, qnan, nan);
        }
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xD8);
        _mm256_storeu_si256((__m256i *)(y + i), p);
    }
    for (; i < n; i++) y[i] = mer_fp32_to_bf16(x[i]);
}

/* q8_0 of 32 floats, bit-identical to the reference: same amax, d, 1/d, product, and roundf. */
static inline void a2_quantize_q8_0(const float *x, mer_block_q8_0 *y, int n) {
    const __m256 signm = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (int b = 0; b < n / MER_QK; b++, x += MER_QK) {
        __m256 v[4];
        __m256 mx = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(x + 8 * j);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(signm, v[j]));
        }
        const float amax = hmax8(mx);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = mer_fp32_to_fp16(d);
        __m256i q[4];
        for (int j = 0; j < 4; j++) {
            __m256 t = _mm256_mul_ps(v[j], _mm256_set1_ps(id));
            __m256 tr = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 fr = _mm256_andnot_ps(signm, _mm256_sub_ps(t, tr));
            __m256 up = _mm256_and_ps(_mm256_cmp_ps(fr, half, _CMP_GE_OQ), _mm256_or_ps(one, _mm256_and_ps(signm, t)));
            q[j] = _mm256_cvttps_epi32(_mm256_add_ps(tr, up));
        }
        __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
        __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        /* packs work per 128-bit lane: dwords come out as 0,2,4,6,1,3,5,7 groups of 4 */
        p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[b].qs, p8);
    }
}

/* 8 int32 lane sums of w*x over 32 int8 pairs (|w| <= 127 or w = -128 with |x| <= 127). */
static inline __m256i i8dot32(__m256i w, __m256i x) {
    __m256i aw = _mm256_sign_epi8(w, w), sx = _mm256_sign_epi8(x, w);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1));
}

static inline __m256i q4_unpack(const uint8_t *qs) { /* 32 signed values q - 8, element order */
    __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1);
    return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8));
}

/* The scales of 4 blocks: d_w * d_x as 4 floats, converted together (F16C). */
#define SCALES4(W, X, b)                                                                                  \
    _mm_mul_ps(_mm_cvtph_ps(_mm_setr_epi16((short)(W)[b].d, (short)(W)[(b) + 1].d, (short)(W)[(b) + 2].d,   \
                                           (short)(W)[(b) + 3].d, 0, 0, 0, 0)),                           \
               _mm_cvtph_ps(_mm_setr_epi16((short)(X)[b].d, (short)(X)[(b) + 1].d, (short)(X)[(b) + 2].d,   \
                                           (short)(X)[(b) + 3].d, 0, 0, 0, 0)))

/* Blocks are summed into four lane accumulators (block b into accumulator b % 4), reduced at the end. */
#define QDOT_BODY(WLOAD)                                                                                  \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;                             \
    int b = 0;                                                                                            \
    for (; b + 4 <= nb; b += 4) {                                                                         \
        __m128 d4 = SCALES4(w, x, b);                                                                     \
        __m256 d44 = _mm256_set_m128(d4, d4);                                                             \
        __m256i p0 = i8dot32(WLOAD(b), _mm256_loadu_si256((const __m256i *)x[b].qs));                     \
        __m256i p1 = i8dot32(WLOAD(b + 1), _mm256_loadu_si256((const __m256i *)x[b + 1].qs));             \
        __m256i p2 = i8dot32(WLOAD(b + 2), _mm256_loadu_si256((const __m256i *)x[b + 2].qs));             \
        __m256i p3 = i8dot32(WLOAD(b + 3), _mm256_loadu_si256((const __m256i *)x[b + 3].qs));             \
        acc0 = _mm256_fmadd_ps(_mm256_permute_ps(d44, 0x00), _mm256_cvtepi32_ps(p0), acc0);               \
        acc1 = _mm256_fmadd_ps(_mm256_permute_ps(d44, 0x55), _mm256_cvtepi32_ps(p1), acc1);               \
        acc2 = _mm256_fmadd_ps(_mm256_permute_ps(d44, 0xAA), _mm256_cvtepi32_ps(p2), acc2);               \
        acc3 = _mm256_fmadd_ps(_mm256_permute_ps(d44, 0xFF), _mm256_cvtepi32_ps(p3), acc3);               \
    }                                                                                                     \
    for (; b < nb; b++) {                                                                                 \
        __m256i p0 = i8dot32(WLOAD(b), _mm256_loadu_si256((const __m256i *)x[b].qs));                     \
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[b].d) * h2f(x[b].d)), _mm256_cvtepi32_ps(p0), acc0);   \
    }                                                                                                     \
    return hsum8(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));

#define Q8_LOAD(i) _mm256_loadu_si256((const __m256i *)w[i].qs)
#define Q4_LOAD(i) q4_unpack(w[i].qs)

static inline float a2_dot_q8_0(const mer_block_q8_0 *w, const mer_block_q8_0 *x, int nb) { QDOT_BODY(Q8_LOAD) }

/* Two q4_0 blocks per register, [block b | block b+1]: low nibbles pair with x elements 0..15, high
 * nibbles with 16..31; with unsigned nibbles q, sum (q - 8) x = maddubs(q, x) - maddubs(8, x). Lanes 0-3
 * of the result belong to block b, 4-7 to block b+1. */
static inline __m256 q4_pair(const mer_block_q4_0 *w, const mer_block_q8_0 *x, __m256 d) {
    const __m256i m = _mm256_set1_epi8(15), e = _mm256_set1_epi8(8);
    __m256i raw = _mm256_loadu2_m128i((const __m128i *)w[1].qs, (const __m128i *)w[0].qs);
    __m256i lo = _mm256_and_si256(raw, m), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m);
    __m256i xl = _mm256_loadu2_m128i((const __m128i *)x[1].qs, (const __m128i *)x[0].qs);
    __m256i xh = _mm256_loadu2_m128i((const __m128i *)(x[1].qs + 16), (const __m128i *)(x[0].qs + 16));
    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh));
    __m256i sx = _mm256_add_epi16(_mm256_maddubs_epi16(e, xl), _mm256_maddubs_epi16(e, xh));
    __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_sub_epi16(p, sx), _mm256_set1_epi16(1)));
    return _mm256_mul_ps(d, f);
}

/* x-side data for a2_dot_q4_0_r4 (see mer_kernels.prep_q4_0): each block's d_x four times, then
 * 8 sum(x.qs) (an integer, exact in float) four times. */
static inline void a2_prep_q4_0(const mer_block_q8_0 *x, int nb, float *aux) {
    for (int b = 0; b < nb; b++) {
        int sum = 0;
        for (int j = 0; j < MER_QK; j++) sum += x[b].qs[j];
        const float dx = h2f(x[b].d), s8 = 8.0f * (float)sum;
        for (int l = 0; l < 4; l++) aux[4 * b + l] = dx, aux[4 * nb + 4 * b + l] = s8;
    }
}

static inline float a2_dot_q4_0(const mer_block_q4_0 *w, const mer_block_q8_0 *x, const float *aux, int nb) {
    (void)aux;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int b = 0;
    for (; b + 4 <= nb; b += 4) {
        __m128 d4 = SCALES4(w, x, b); /* d0 d1 d2 d3 */
        __m256 d01 = _mm256_set_m128(_mm_permute_ps(d4, 0x55), _mm_permute_ps(d4, 0x00));
        __m256 d23 = _mm256_set_m128(_mm_permute_ps(d4, 0xFF), _mm_permute_ps(d4, 0xAA));
        acc0 = _mm256_add_ps(acc0, q4_pair(w + b, x + b, d01));
        acc1 = _mm256_add_ps(acc1, q4_pair(w + b + 2, x + b + 2, d23));
    }
    for (; b < nb; b++) {
        __m256i p0 = i8dot32(Q4_LOAD(b), _mm256_loadu_si256((const __m256i *)x[b].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[b].d) * h2f(x[b].d)), _mm256_cvtepi32_ps(p0), acc0);
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

/* sum over 32-bit lane pairs of maddubs(unsigned nibbles, x) for blocks [b | b+1] of one row, as 16
 * int16 (each the sum of 4 products, |.| <= 7620). */
static inline __m256i q4_pair_i16(const mer_block_q4_0 *w, __m256i xl, __m256i xh) {
    const __m256i m = _mm256_set1_epi8(15);
    __m256i raw = _mm256_loadu2_m128i((const __m128i *)w[1].qs, (const __m128i *)w[0].qs);
    __m256i lo = _mm256_and_si256(raw, m), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m);
    return _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh));
}

/* Four weight rows (w, w + ldw bytes, ...) against one x with prep_q4_0 data: out[r] = dot of row r.
 * Per pair of blocks the four rows' unsigned-nibble sums S are reduced together (two 16-bit horizontal
 * adds stay below 4 * 7620, then one to 32 bits) into [rows 0-3 of block b | rows 0-3 of block b+1];
 * S - 8 sum(x) is exact in float and is scaled by d_w d_x (as the generic kernel). Blocks alternate
 * between the two 128-bit halves of one accumulator, added at the end. The next four rows are prefetched
 * alongside (four interleaved streams defeat the hardware prefetcher on short rows). */
static inline void a2_dot_q4_0_r4(const mer_block_q4_0 *w, size_t ldw, const mer_block_q8_0 *x, const float *aux,
                                  int nb, float *out) {
    const mer_block_q4_0 *w0 = w, *w1 = (const mer_block_q4_0 *)((const uint8_t *)w + ldw),
                         *w2 = (const mer_block_q4_0 *)((const uint8_t *)w + 2 * ldw),
                         *w3 = (const mer_block_q4_0 *)((const uint8_t *)w + 3 * ldw);
    const float *dx = aux, *s8 = aux + 4 * (size_t)nb;
    const __m256i ones = _mm256_set1_epi16(1);
    const size_t pfd = 4 * ldw; /* the same bytes of the next group of four rows (no fault if past the end) */
    __m256 acc = _mm256_setzero_ps();
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256i xl = _mm256_loadu2_m128i((const __m128i *)x[b + 1].qs, (const __m128i *)x[b].qs);
        __m256i xh = _mm256_loadu2_m128i((const __m128i *)(x[b + 1].qs + 16), (const __m128i *)(x[b].qs + 16));
        _mm_prefetch((const char *)(w0 + b) + pfd, _MM_HINT_T0);
        _mm_prefetch((const char *)(w1 + b) + pfd, _MM_HINT_T0);
        _mm_prefetch((const char *)(w2 + b) + pfd, _MM_HINT_T0);
        _mm_prefetch((const char *)(w3 + b) + pfd, _MM_HINT_T0);
        __m256i p0 = q4_pair_i16(w0 + b, xl, xh), p1 = q4_pair_i16(w1 + b, xl, xh);
        __m256i p2 = q4_pair_i16(w2 + b, xl, xh), p3 = q4_pair_i16(w3 + b, xl, xh);
        __m256i s = _mm256_madd_epi16(_mm256_hadd_epi16(_mm256_hadd_epi16(p0, p1), _mm256_hadd_epi16(p2, p3)), ones);
        __m256 dw = _mm256_cvtph_ps(_mm_setr_epi16((short)w0[b].d, (short)w1[b].d, (short)w2[b].d, (short)w3[b].d,
                                                   (short)w0[b + 1].d, (short)w1[b + 1].d, (short)w2[b + 1].d,
                                                   (short)w3[b + 1].d));
        __m256 f = _mm256_sub_ps(_mm256_cvtepi32_ps(s), _mm256_loadu_ps(s8 + 4 * b));
        acc = _mm256_fmadd_ps(f, _mm256_mul_ps(dw, _mm256_loadu_ps(dx + 4 * b)), acc);
    }
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    _mm_storeu_ps(out, r);
    if (b < nb) {
        out[0] += mer__gen_dot_q4_0(w0 + b, x + b, NULL, 1);
        out[1] += mer__gen_dot_q4_0(w1 + b, x + b, NULL, 1);
        out[2] += mer__gen_dot_q4_0(w2 + b, x + b, NULL, 1);
        out[3] += mer__gen_dot_q4_0(w3 + b, x + b, NULL, 1);
    }
}

/* Four q8_0 weight rows (w, w + ldw bytes, ...) against one q8_0 x: out[r] = dot of row r. Per block
 * the four rows' 8-lane int32 sums are reduced together (two horizontal adds and one cross-half add give
 * [row 0..3] for block b), two blocks at a time as [block b | block b+1], scaled by d_w d_x in float.
 * The x block is loaded once for the four rows; the next group of four rows is prefetched alongside (as
 * the q4_0 kernel). Within float rounding of a2_dot_q8_0 (the integer block sums are exact). */
static inline void a2_dot_q8_0_r4(const mer_block_q8_0 *w, size_t ldw, const mer_block_q8_0 *x, int nb,
                                  float *out) {
    const mer_block_q8_0 *w0 = w, *w1 = (const mer_block_q8_0 *)((const uint8_t *)w + ldw),
                         *w2 = (const mer_block_q8_0 *)((const uint8_t *)w + 2 * ldw),
                         *w3 = (const mer_block_q8_0 *)((const uint8_t *)w + 3 * ldw);
    const size_t pfd = 4 * ldw;
    __m256 acc = _mm256_setzero_ps();
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
        _mm_prefetch((const char *)(w0 + b) + pfd, _MM_HINT_T0);
        _mm_prefetch((const char *)(w1 + b) + pfd, _MM_HINT_T0);
        _mm_prefetch((const char *)(w2 + b) + pfd, _MM_HINT_T0);
        _mm_prefetch((const char *)(w3 + b) + pfd, _MM_HINT_T0);
        __m256i s[2];
        for (int k = 0; k < 2; k++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)x[b + k].qs);
            __m256i p0 = i8dot32(_mm256_loadu_si256((const __m256i *)w0[b + k].qs), xv);
            __m256i p1 = i8dot32(_mm256_loadu_si256((const __m256i *)w1[b + k].qs), xv);
            __m256i p2 = i8dot32(_mm256_loadu_si256((const __m256i *)w2[b + k].qs), xv);
            __m256i p3 = i8dot32(_mm256_loadu_si256((const __m256i *)w3[b + k].qs), xv);
            s[k] = _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
        }
        /* s[k] = [rows 0-3 partial (low half) | rows 0-3 partial (high half)]: fold the halves */
        __m256i lo = _mm256_permute2x128_si256(s[0], s[1], 0x20), hi = _mm256_permute2x128_si256(s[0], s[1], 0x31);
        __m256 f = _mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi));
        __m256 dw = _mm256_cvtph_ps(_mm_setr_epi16((short)w0[b].d, (short)w1[b].d, (short)w2[b].d, (short)w3[b].d,
                                                   (short)w0[b + 1].d, (short)w1[b + 1].d, (short)w2[b + 1].d,
                                                   (short)w3[b + 1].d));
        __m128 dx2 = _mm_cvtph_ps(_mm_setr_epi16((short)x[b].d, (short)x[b + 1].d, 0, 0, 0, 0, 0, 0));
        __m256 dx = _mm256_set_m128(_mm_permute_ps(dx2, 0x55), _mm_permute_ps(dx2, 0x00));
        acc = _mm256_fmadd_ps(f, _mm256_mul_ps(dw, dx), acc);
    }
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    _mm_storeu_ps(out, r);
    if (b < nb) {
        out[0] += mer__gen_dot_q8_0(w0 + b, x + b, 1);
        out[1] += mer__gen_dot_q8_0(w1 + b, x + b, 1);
        out[2] += mer__gen_dot_q8_0(w2 + b, x + b, 1);
        out[3] += mer__gen_dot_q8_0(w3 + b, x + b, 1);
    }
}

// --- vector helpers and element-wise (masked tails: one arithmetic for every element) ----------------

/* Runs `body` over [0, cnt) in steps of 8 with `i` the offset and `m` the lane mask (all set except in
 * the final partial step). LD/ST are the masked load and store. */
#define EW_LOOP(cnt, body)                                                                                \
    do {                                                                                                  \
        const int n_ = (cnt);                                                                             \
        int i = 0;                                                                                        \
        for (; i + 8 <= n_; i += 8) {                                                                     \
            const __m256i m = _mm256_set1_epi32(-1);                                                      \
            body                                                                                          \
        }                                                                                                 \
        if (i < n_) {                                                                                     \
            const __m256i m = tail_mask(n_ - i);                                                          \
            body                                                                                          \
        }                                                                                                 \
    } while (0)

#define LD(p) _mm256_maskload_ps((p) + i, m)
#define ST(p, v) _mm256_maskstore_ps((p) + i, m, (v))

static inline void a2_axpy(float *y, float a, const float *x, int n) {
    const __m256 va = _mm256_set1_ps(a);
    EW_LOOP(n, ST(y, _mm256_fmadd_ps(va, LD(x), LD(y))););
}

static inline float a2_exp_sum(float *x, int n, float scale, float shift) {
    const __m256 vs = _mm256_set1_ps(scale), vsh = _mm256_set1_ps(shift);
    __m256 acc = _mm256_setzero_ps();
    EW_LOOP(n, {
        __m256 e = _mm256_and_ps(exp8(_mm256_fmsub_ps(vs, LD(x), vsh)), _mm256_castsi256_ps(m));
        ST(x, e);
        acc = _mm256_add_ps(acc, e);
    });
    return hsum8(acc);
}

static inline void a2_softmax(float *x, int n, int n_valid, float scale) {
    __m256 mx = _mm256_set1_ps(-INFINITY);
    const __m256 vs = _mm256_set1_ps(scale);
    int j = 0;
    for (; j + 8 <= n_valid; j += 8) mx = _mm256_max_ps(mx, _mm256_mul_ps(vs, _mm256_loadu_ps(x + j)));
    for (; j < n_valid; j++) mx = _mm256_max_ps(mx, _mm256_set1_ps(scale * x[j]));
    const float s = a2_exp_sum(x, n_valid, scale, hmax8(mx));
    const __m256 inv = _mm256_set1_ps(1.0f / s);
    EW_LOOP(n_valid, ST(x, _mm256_mul_ps(LD(x), inv)););
    for (int j2 = n_valid; j2 < n; j2++) x[j2] = 0.0f;
}

static inline void a2_layernorm(float *y, const float *x, int n, const float *w, const float *b, float eps) {
    __m256 acc = _mm256_setzero_ps();
    EW_LOOP(n, acc = _mm256_add_ps(acc, LD(x)););
    const float mean = hsum8(acc) / (float)n;
    const __m256 vm = _mm256_set1_ps(mean);
    acc = _mm256_setzero_ps();
    EW_LOOP(n, {
        __m256 d = _mm256_and_ps(_mm256_sub_ps(LD(x), vm), _mm256_castsi256_ps(m));
        acc = _mm256_fmadd_ps(d, d, acc);
    });
    const float r = 1.0f / sqrtf(hsum8(acc) / (float)n + eps);
    const __m256 vr = _mm256_set1_ps(r);
    EW_LOOP(n, {
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(LD(x), vm), vr);
        if (w) v = _mm256_mul_ps(v, LD(w));
        if (b) v = _mm256_add_ps(v, LD(b));
        ST(y, v);
    });
}

static inline void a2_rmsnorm(float *y, const float *x, int n, const float *w, float eps) {
    __m256 acc = _mm256_setzero_ps();
    EW_LOOP(n, {
        __m256 v = LD(x);
        acc = _mm256_fmadd_ps(v, v, acc);
    });
    const __m256 vr = _mm256_set1_ps(1.0f / sqrtf(hsum8(acc) / (float)n + eps));
    EW_LOOP(n, {
        __m256 v = _mm256_mul_ps(LD(x), vr);
        if (w) v = _mm256_mul_ps(v, LD(w));
        ST(y, v);
    });
}

static inline void a2_gelu(float *y, const float *x, int n) {
    const __m256 c = _mm256_set1_ps(-0.70710678118654752f), h = _mm256_set1_ps(0.5f);
    EW_LOOP(n, {
        __m256 v = LD(x);
        ST(y, _mm256_mul_ps(_mm256_mul_ps(h, v), erfc8(_mm256_mul_ps(v, c))));
    });
}

static inline void a2_gelu_tanh(float *y, const float *x, int n) {
    /* 0.5 (1 + tanh u) = sigmoid(2u) */
    const __m256 k2 = _mm256_set1_ps(2.0f * 0.79788456080286536f), c = _mm256_set1_ps(0.044715f);
    EW_LOOP(n, {
        __m256 v = LD(x);
        __m256 u = _mm256_mul_ps(k2, _mm256_fmadd_ps(_mm256_mul_ps(c, v), _mm256_mul_ps(v, v), v));
        ST(y, _mm256_mul_ps(v, sigmoid8(u)));
    });
}

static inline void a2_quick_gelu(float *y, const float *x, int n) {
    const __m256 k = _mm256_set1_ps(1.702f);
    EW_LOOP(n, {
        __m256 v = LD(x);
        ST(y, _mm256_mul_ps(v, sigmoid8(_mm256_mul_ps(k, v))));
    });
}

static inline void a2_silu(float *y, const float *x, int n) {
    EW_LOOP(n, {
        __m256 v = LD(x);
        ST(y, _mm256_mul_ps(v, sigmoid8(v)));
    });
}

static inline void a2_silu_mul(float *y, const float *a, const float *b, int n) {
    EW_LOOP(n, {
        __m256 v = LD(a);
        ST(y, _mm256_mul_ps(_mm256_mul_ps(v, sigmoid8(v)), LD(b)));
    });
}

static inline void a2_add(float *y, const float *a, const float *b, int n) { EW_LOOP(n, ST(y, _mm256_add_ps(LD(a), LD(b)));); }
static inline void a2_mul(float *y, const float *a, const float *b, int n) { EW_LOOP(n, ST(y, _mm256_mul_ps(LD(a), LD(b)));); }
static inline void a2_scale(float *y, const float *x, float s, int n) {
    const __m256 vs = _mm256_set1_ps(s);
    EW_LOOP(n, ST(y, _mm256_mul_ps(LD(x), vs)););
}


#endif
