/* test_dtype.c - dtype names and sizes; fp16/bf16 conversions against numpy's float16 cast and a float64
 * derivation of bfloat16 rounding (fixture made by scripts/make_dtype_fixtures.py); every f16 value
 * decoded against its float64 formula; q8_0 / q4_0 byte layouts against blocks derived from the GGUF
 * formulas in float64 here, and one block derived by hand. */
#include "test.h"

#include "core/dtype.h"

#include <stdint.h>
#include <stdlib.h>

static float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t f_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void test_names(void) {
    CHECK_STR(mer_dtype_name(MER_DTYPE_F32), "f32");
    CHECK_STR(mer_dtype_name(MER_DTYPE_BF16), "bf16");
    CHECK_STR(mer_dtype_name(MER_DTYPE_Q8_0), "q8_0");
    CHECK_STR(mer_dtype_name(MER_DTYPE_Q4_0), "q4_0");
    CHECK_STR(mer_dtype_name((mer_dtype)77), "invalid");
    CHECK_EQ_INT(mer_dtype_from_name("q4_0"), MER_DTYPE_Q4_0);
    CHECK_EQ_INT(mer_dtype_from_name("f16"), MER_DTYPE_F16);
    CHECK_EQ_INT(mer_dtype_from_name("nope"), MER_DTYPE_INVALID);
    /* GGUF: q8_0 blocks are 2 + 32 bytes, q4_0 blocks 2 + 16 bytes, 32 elements each */
    CHECK_EQ_INT(mer_dtype_block_elems(MER_DTYPE_Q8_0), 32);
    CHECK_EQ_INT(mer_dtype_block_bytes(MER_DTYPE_Q8_0), 34);
    CHECK_EQ_INT(mer_dtype_block_bytes(MER_DTYPE_Q4_0), 18);
    CHECK_EQ_INT(mer_dtype_block_bytes(MER_DTYPE_BF16), 2);
    CHECK_EQ_INT(mer_dtype_row_bytes(MER_DTYPE_Q4_0, 4096), 4096 / 32 * 18);
    CHECK_EQ_INT(mer_dtype_row_bytes(MER_DTYPE_Q8_0, 33), 0);
    CHECK_EQ_INT(mer_dtype_row_bytes(MER_DTYPE_F32, 7), 28);
}

static void test_fixture(void) {
    FILE *f = fopen(FIXTURES "/dtype/f32_f16_bf16.txt", "r");
    CHECK_MSG(f != NULL, "fixture missing");
    if (!f) return;
    char line[128];
    int n = 0, bad16 = 0, bad_bf = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        unsigned u, h, b;
        if (sscanf(line, "%x %x %x", &u, &h, &b) != 3) continue;
        n++;
        uint16_t got16 = mer_fp32_to_fp16(bits_f(u)), gotbf = mer_fp32_to_bf16(bits_f(u));
        if (got16 != h && bad16++ < 5) printf("f16 of %08x: got %04x numpy %04x\n", u, got16, h);
        if (gotbf != b && bad_bf++ < 5) printf("bf16 of %08x: got %04x ref %04x\n", u, gotbf, b);
    }
    fclose(f);
    CHECK_MSG(n > 1000, "fixture has %d values", n);
    CHECK_EQ_INT(bad16, 0);
    CHECK_EQ_INT(bad_bf, 0);
}

static void test_f16_all(void) {
    int bad = 0, badrt = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int e = (h >> 10) & 31, m = h & 1023;
        float got = mer_fp16_to_fp32((uint16_t)h);
        if (e == 31) {
            if (m == 0 ? !isinf(got) : !isnan(got)) bad++;
            if (m == 0 && mer_fp32_to_fp16(got) != h) badrt++;
            continue;
        }
        double ref = e == 0 ? ldexp((double)m, -24) : ldexp(1.0 + m / 1024.0, e - 15);
        if (h & 0x8000) ref = -ref;
        if ((double)got != ref || !!signbit(got) != ((h & 0x8000) != 0)) bad++;
        if (mer_fp32_to_fp16(got) != h) badrt++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(badrt, 0);
    /* NaN stays NaN; bf16 NaN is torch's canonical 0x7fc0 */
    uint16_t hn = mer_fp32_to_fp16(bits_f(0x7fc00001u));
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    CHECK(isnan(mer_fp16_to_fp32(mer_fp32_to_fp16(bits_f(0xff800001u)))));
    CHECK_EQ_INT(mer_fp32_to_bf16(bits_f(0xffc12345u)), 0x7fc0);
    CHECK_EQ_INT(f_bits(mer_bf16_to_fp32(0x3f80)), 0x3f800000);
    CHECK_EQ_INT(f_bits(mer_bf16_to_fp32(0xc049)), 0xc0490000);
}

static uint32_t rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) / 8388608.0 - 1.0);
}

static double f16d(uint16_t h) { return (double)mer_fp16_to_fp32(h); }

/* |t - round| close to a half: float32 and float64 may legitimately disagree there */
static int near_tie(double t) { return fabs(fabs(t - trunc(t)) - 0.5) < 1e-4; }

static void test_q8_0(void) {
    enum { NB = 6 };
    float x[NB * 32];
    for (int i = 0; i < NB * 32; i++) x[i] = frand() * (float)(1 + i / 32) * 3.0f;
    for (int j = 0; j < 32; j++) x[2 * 32 + j] = 0.0f; /* an all-zero block */
    uint8_t raw[NB * 34];
    CHECK_EQ_INT(mer_quantize_row(MER_DTYPE_Q8_0, x, raw, NB * 32), 0);
    float back[NB * 32];
    mer_dequantize_row(MER_DTYPE_Q8_0, raw, back, NB * 32);
    int bad = 0;
    for (int b = 0; b < NB; b++) {
        const uint8_t *blk = raw + b * 34;
        uint16_t dh = (uint16_t)(blk[0] | blk[1] << 8); /* little-endian f16 scale first */
        double amax = 0;
        for (int j = 0; j < 32; j++) amax = fmax(amax, fabs((double)x[b * 32 + j]));
        double d = amax / 127.0;
        if (fabs(f16d(dh) - d) > d * 1e-3 + 1e-12) bad++;
        for (int j = 0; j < 32; j++) {
            double t = d > 0 ? x[b * 32 + j] / d : 0.0;
            int ref = (int)round(t), got = (int8_t)blk[2 + j];
            if (got != ref && !(near_tie(t) && abs(got - ref) == 1)) bad++;
            if ((double)back[b * 32 + j] != (double)got * f16d(dh)) bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    /* hand-derived: x_j = j - 16 -> amax 16, d = 16/127, q_j = round((j - 16) * 127 / 16) */
    float h[32];
    for (int j = 0; j < 32; j++) h[j] = (float)(j - 16);
    mer_block_q8_0 q;
    mer_quantize_row(MER_DTYPE_Q8_0, h, &q, 32);
    CHECK_EQ_INT(q.qs[0], -127);
    CHECK_EQ_INT(q.qs[1], -119); /* -15 * 7.9375 = -119.06 */
    CHECK_EQ_INT(q.qs[9], -56);  /* -7 * 7.9375 = -55.56 */
    CHECK_EQ_INT(q.qs[16], 0);
    CHECK_EQ_INT(q.qs[31], 119);
    CHECK_EQ_INT(q.d, 0x3008); /* f16 nearest to 16/127 = 0.125984: 2^-3 (1 + 8/1024) = 0.1259765625 */
}

static void test_q4_0(void) {
    enum { NB = 6 };
    float x[NB * 32];
    for (int i = 0; i < NB * 32; i++) x[i] = frand() * (float)(1 + i / 32);
    for (int j = 0; j < 32; j++) x[2 * 32 + j] = 0.0f;
    x[3 * 32 + 5] = 9.0f; /* positive extreme: d negative */
    x[4 * 32 + 7] = -9.0f;
    uint8_t raw[NB * 18];
    CHECK_EQ_INT(mer_quantize_row(MER_DTYPE_Q4_0, x, raw, NB * 32), 0);
    float back[NB * 32];
    mer_dequantize_row(MER_DTYPE_Q4_0, raw, back, NB * 32);
    int bad = 0;
    for (int b = 0; b < NB; b++) {
        const uint8_t *blk = raw + b * 18;
        uint16_t dh = (uint16_t)(blk[0] | blk[1] << 8);
        double amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabs((double)x[b * 32 + j]) > amax) {
                amax = fabs((double)x[b * 32 + j]);
                max = x[b * 32 + j];
            }
        double d = max / -8.0;
        if (fabs(f16d(dh) - d) > fabs(d) * 1e-3 + 1e-12) bad++;
        for (int j = 0; j < 32; j++) {
            double t = d != 0 ? x[b * 32 + j] / d + 8.5 : 8.5;
            int ref = (int)floor(t);
            if (ref > 15) ref = 15;
            int got = j < 16 ? (blk[2 + j] & 15) : (blk[2 + j - 16] >> 4);
            double frac = t - floor(t);
            if (got != ref && !((frac < 1e-4 || frac > 1 - 1e-4) && abs(got - ref) == 1)) bad++;
            if ((double)back[b * 32 + j] != (double)(got - 8) * f16d(dh)) bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    /* hand-derived: x_j = j - 16: max = -16 (j = 0), d = 2, q_j = min(15, trunc(j/2 + 0.5)) */
    float h[32];
    for (int j = 0; j < 32; j++) h[j] = (float)(j - 16);
    mer_block_q4_0 q;
    mer_quantize_row(MER_DTYPE_Q4_0, h, &q, 32);
    CHECK_EQ_INT(q.d, 0x4000);
    CHECK_EQ_INT(q.qs[0], 0x80);  /* q0 = 0, q16 = 8 */
    CHECK_EQ_INT(q.qs[1], 0x91);  /* q1 = trunc(1.0) = 1, q17 = trunc(9.0) = 9 */
    CHECK_EQ_INT(q.qs[15], 0xf8); /* q15 = trunc(8.0) = 8, q31 = min(15, 16) = 15 */
}

static void test_rows(void) {
    float x[64], y[64];
    uint16_t h[64];
    for (int i = 0; i < 64; i++) x[i] = frand() * 100.0f;
    CHECK_EQ_INT(mer_quantize_row(MER_DTYPE_F16, x, h, 64), 0);
    mer_dequantize_row(MER_DTYPE_F16, h, y, 64);
    int bad = 0;
    for (int i = 0; i < 64; i++) bad += fabsf(y[i] - x[i]) > fabsf(x[i]) * 0x1p-11f;
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(mer_quantize_row(MER_DTYPE_I32, x, h, 64), -1);
    int32_t iv[3] = {-5, 0, 70000};
    mer_dequantize_row(MER_DTYPE_I32, iv, y, 3);
    CHECK(y[0] == -5.0f && y[1] == 0.0f && y[2] == 70000.0f);
}

static void run(void) {
    test_names();
    test_fixture();
    test_f16_all();
    test_q8_0();
    test_q4_0();
    test_rows();
}
