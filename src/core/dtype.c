/* dtype.c - element types: names and block sizes, scalar fp16/bf16 conversions with round-to-nearest-
 * even (bit-exact with numpy's float16 cast and torch's bfloat16 cast), and row conversion between f32
 * and every storage type, including the GGUF block formats q8_0 and q4_0 quantised with the rounding of
 * llama.cpp's reference quantisers (so a file we write matches one written by llama.cpp's tools). All
 * functions here are pure and thread-safe. */
#include "core/dtype.h"

#include <math.h>
#include <string.h>

// --- names and sizes ---------------------------------------------------------------------------------

static const struct {
    mer_dtype t;
    const char *name;
    size_t block_elems, block_bytes;
} k_types[] = {
    {MER_DTYPE_F32, "f32", 1, 4},
    {MER_DTYPE_F16, "f16", 1, 2},
    {MER_DTYPE_Q4_0, "q4_0", MER_QK, sizeof(mer_block_q4_0)},
    {MER_DTYPE_Q8_0, "q8_0", MER_QK, sizeof(mer_block_q8_0)},
    {MER_DTYPE_I8, "i8", 1, 1},
    {MER_DTYPE_I16, "i16", 1, 2},
    {MER_DTYPE_I32, "i32", 1, 4},
    {MER_DTYPE_I64, "i64", 1, 8},
    {MER_DTYPE_F64, "f64", 1, 8},
    {MER_DTYPE_BF16, "bf16", 1, 2},
    {MER_DTYPE_U8, "u8", 1, 1},
    {MER_DTYPE_BOOL, "bool", 1, 1},
};

_Static_assert(sizeof(mer_block_q8_0) == 34, "q8_0 block must be 34 bytes");
_Static_assert(sizeof(mer_block_q4_0) == 18, "q4_0 block must be 18 bytes");

static int type_index(mer_dtype t) {
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (k_types[i].t == t) return (int)i;
    return -1;
}

const char *mer_dtype_name(mer_dtype t) {
    int i = type_index(t);
    return i < 0 ? "invalid" : k_types[i].name;
}

mer_dtype mer_dtype_from_name(const char *name) {
    if (!name) return MER_DTYPE_INVALID;
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (strcmp(k_types[i].name, name) == 0) return k_types[i].t;
    return MER_DTYPE_INVALID;
}

size_t mer_dtype_block_elems(mer_dtype t) {
    int i = type_index(t);
    return i < 0 ? 0 : k_types[i].block_elems;
}

size_t mer_dtype_block_bytes(mer_dtype t) {
    int i = type_index(t);
    return i < 0 ? 0 : k_types[i].block_bytes;
}

size_t mer_dtype_row_bytes(mer_dtype t, size_t n) {
    int i = type_index(t);
    if (i < 0 || n % k_types[i].block_elems) return 0;
    return n / k_types[i].block_elems * k_types[i].block_bytes;
}

// --- scalar conversions ------------------------------------------------------------------------------

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float mer_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return u2f(sign | 0x7f800000u | (mant << 13)); /* inf / NaN (payload kept) */
    if (exp == 0) {
        if (mant == 0) return u2f(sign);
        /* subnormal: mant * 2^-24, exact in f32 */
        float v = (float)mant * 0x1p-24f;
        return u2f(sign | f2u(v));
    }
    return u2f(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Shifts m right by s (1..31) rounding to nearest, ties to even. */
static inline uint32_t shr_rne(uint32_t m, unsigned s) {
    uint32_t q = m >> s, rem = m & ((1u << s) - 1), half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return q;
}

uint16_t mer_fp32_to_fp16(float f) {
    uint32_t x = f2u(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff)); /* quiet NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* >= 65520 rounds to infinity */
    uint32_t e = ax >> 23, mant = (ax & 0x7fffff) | 0x800000;
    if (e < 113) { /* below 2^-14: half subnormal (or zero), unit 2^-24 */
        if (e < 102) return sign; /* < 2^-25: rounds to zero */
        return (uint16_t)(sign | shr_rne(mant, 126 - e)); /* may round up to the smallest normal */
    }
    /* normal: rounding may carry into the exponent, which is the right encoding */
    uint32_t r = shr_rne(((e - 112) << 23) | (ax & 0x7fffff), 13);
    return (uint16_t)(sign | r);
}

float mer_bf16_to_fp32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t mer_fp32_to_bf16(float f) {
    uint32_t x = f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* torch's canonical NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

// --- rows ----------------------------------------------------------------------------------------------

void mer_dequantize_row(mer_dtype t, const void *src, float *dst, size_t n) {
    switch (t) {
    case MER_DTYPE_F32: memcpy(dst, src, n * sizeof(float)); return;
    case MER_DTYPE_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = mer_fp16_to_fp32(s[i]);
        return;
    }
    case MER_DTYPE_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = mer_bf16_to_fp32(s[i]);
        return;
    }
    case MER_DTYPE_Q8_0: {
        const mer_block_q8_0 *b = src;
        for (size_t ib = 0; ib < n / MER_QK; ib++) {
            float d = mer_fp16_to_fp32(b[ib].d);
            for (int j = 0; j < MER_QK; j++) dst[ib * MER_QK + j] = (float)b[ib].qs[j] * d;
        }
        return;
    }
    case MER_DTYPE_Q4_0: {
        const mer_block_q4_0 *b = src;
        for (size_t ib = 0; ib < n / MER_QK; ib++) {
            float d = mer_fp16_to_fp32(b[ib].d);
            for (int j = 0; j < MER_QK / 2; j++) {
                dst[ib * MER_QK + j] = (float)((b[ib].qs[j] & 0x0f) - 8) * d;
                dst[ib * MER_QK + j + MER_QK / 2] = (float)((b[ib].qs[j] >> 4) - 8) * d;
            }
        }
        return;
    }
    case MER_DTYPE_F64: {
        const double *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return;
    }
    case MER_DTYPE_I8: {
        const int8_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return;
    }
    case MER_DTYPE_U8:
    case MER_DTYPE_BOOL: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return;
    }
    case MER_DTYPE_I16: {
        const int16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return;
    }
    case MER_DTYPE_I32: {
        const int32_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return;
    }
    case MER_DTYPE_I64: {
        const int64_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return;
    }
    case MER_DTYPE_INVALID: break;
    }
    /* unknown type: programmer error; leave a recognisable value rather than garbage */
    for (size_t i = 0; i < n; i++) dst[i] = NAN;
}

/* llama.cpp's reference q8_0: d = amax / 127, q = roundf(x / d) (half away from zero). */
static void quantize_q8_0(const float *x, mer_block_q8_0 *y, size_t n) {
    for (size_t ib = 0; ib < n / MER_QK; ib++, x += MER_QK) {
        float amax = 0.0f;
        for (int j = 0; j < MER_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[ib].d = mer_fp32_to_fp16(d);
        for (int j = 0; j < MER_QK; j++) y[ib].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* llama.cpp's reference q4_0: the element of largest magnitude (first one on ties) gives d = max / -8,
 * q = min(15, (int8)(x / d + 8.5)) (truncation toward zero of a value >= 0.5). */
static void quantize_q4_0(const float *x, mer_block_q4_0 *y, size_t n) {
    for (size_t ib = 0; ib < n / MER_QK; ib++, x += MER_QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < MER_QK; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[ib].d = mer_fp32_to_fp16(d);
        for (int j = 0; j < MER_QK / 2; j++) {
            int q0 = (int8_t)(x[j] * id + 8.5f), q1 = (int8_t)(x[j + MER_QK / 2] * id + 8.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[ib].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

int mer_quantize_row(mer_dtype t, const float *src, void *dst, size_t n) {
    switch (t) {
    case MER_DTYPE_F32: memcpy(dst, src, n * sizeof(float)); return 0;
    case MER_DTYPE_F16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = mer_fp32_to_fp16(src[i]);
        return 0;
    }
    case MER_DTYPE_BF16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = mer_fp32_to_bf16(src[i]);
        return 0;
    }
    case MER_DTYPE_Q8_0:
        if (n % MER_QK) return -1;
        quantize_q8_0(src, dst, n);
        return 0;
    case MER_DTYPE_Q4_0:
        if (n % MER_QK) return -1;
        quantize_q4_0(src, dst, n);
        return 0;
    default: return -1;
    }
}
