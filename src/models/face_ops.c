/* face_ops.c - the layers of face-api's networks (see face_ops.h): TensorFlow-style padding, 3x3 conv by
 * im2col + GEMM, depthwise 3x3 conv, max-pool, leaky ReLU, and the pad-to-square + bilinear-resize +
 * mean-subtraction input step. Loops are split over the context's pool by output rows. */
#include "models/face_ops.h"

#include <math.h>
#include <string.h>

int mer__face_same_pad(int in, int k, int stride, int *pad_before) {
    int out = (in + stride - 1) / stride;
    int total = (out - 1) * stride + k - in;
    if (total < 0) total = 0;
    *pad_before = total / 2;
    return out;
}

// --- 3x3 convolution (im2col + GEMM) ------------------------------------------------------------------

typedef struct im2col_task {
    float *col;
    const float *x;
    int h, w, c_in, s, pad_top, pad_left, ho, wo;
} im2col_task;

static void im2col_rows(void *ud, int ith, int nth) {
    const im2col_task *t = ud;
    long r0, r1;
    mer_split_range(t->ho, ith, nth, &r0, &r1);
    size_t kc = (size_t)9 * t->c_in;
    for (long oy = r0; oy < r1; oy++)
        for (int ox = 0; ox < t->wo; ox++) {
            float *dst = t->col + ((size_t)oy * t->wo + ox) * kc;
            for (int ky = 0; ky < 3; ky++) {
                int iy = (int)oy * t->s - t->pad_top + ky;
                for (int kx = 0; kx < 3; kx++, dst += t->c_in) {
                    int ix = ox * t->s - t->pad_left + kx;
                    if (iy < 0 || iy >= t->h || ix < 0 || ix >= t->w)
                        memset(dst, 0, (size_t)t->c_in * sizeof *dst);
                    else
                        memcpy(dst, t->x + ((size_t)iy * t->w + ix) * t->c_in, (size_t)t->c_in * sizeof *dst);
                }
            }
        }
}

void mer__face_conv3x3(mer_cpu_ctx *c, float *y, const float *x, int h, int w, int c_in, const float *wt,
                       const float *bias, int c_out, int s, int pad_top, int pad_left, int ho, int wo, float *col) {
    im2col_task t = {col, x, h, w, c_in, s, pad_top, pad_left, ho, wo};
    mer_threadpool_run(mer_cpu_ctx_pool(c), im2col_rows, &t);
    mer_cpu_matmul(c, y, (size_t)c_out, col, (size_t)9 * c_in, wt, MER_DTYPE_F32, bias, ho * wo, 9 * c_in, c_out);
}

/* dst[i] += src[i] * k[i] (a product then a sum, each rounded to f32, as tfjs); blocks of 8 so that the
 * compiler's basic-block vectoriser turns them into SIMD at -O2. */
static void mac(float *restrict dst, const float *restrict src, const float *restrict k, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) dst[i + j] += src[i + j] * k[i + j];
    for (; i < n; i++) dst[i] += src[i] * k[i];
}

static void vmax(float *restrict dst, const float *restrict src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) dst[i + j] = src[i + j] > dst[i + j] ? src[i + j] : dst[i + j];
    for (; i < n; i++) dst[i] = src[i] > dst[i] ? src[i] : dst[i];
}

// --- depthwise 3x3 -----------------------------------------------------------------------------------

typedef struct dw_task {
    float *y;
    const float *x, *wt;
    int h, w, ch, s, pad_top, pad_left, ho, wo;
} dw_task;

static void dw_rows(void *ud, int ith, int nth) {
    const dw_task *t = ud;
    long r0, r1;
    mer_split_range(t->ho, ith, nth, &r0, &r1);
    const int ch = t->ch;
    for (long oy = r0; oy < r1; oy++)
        for (int ox = 0; ox < t->wo; ox++) {
            float *dst = t->y + ((size_t)oy * t->wo + ox) * ch;
            memset(dst, 0, (size_t)ch * sizeof *dst);
            for (int ky = 0; ky < 3; ky++) {
                int iy = (int)oy * t->s - t->pad_top + ky;
                if (iy < 0 || iy >= t->h) continue;
                for (int kx = 0; kx < 3; kx++) {
                    int ix = ox * t->s - t->pad_left + kx;
                    if (ix < 0 || ix >= t->w) continue;
                    mac(dst, t->x + ((size_t)iy * t->w + ix) * ch, t->wt + (size_t)(ky * 3 + kx) * ch, ch);
                }
            }
        }
}

void mer__face_dwconv3x3(mer_cpu_ctx *c, float *y, const float *x, int h, int w, int ch, const float *wt, int s,
                         int pad_top, int pad_left, int ho, int wo) {
    dw_task t = {y, x, wt, h, w, ch, s, pad_top, pad_left, ho, wo};
    mer_threadpool_run(mer_cpu_ctx_pool(c), dw_rows, &t);
}

// --- pools and activations ---------------------------------------------------------------------------

typedef struct pool_task {
    float *y;
    const float *x;
    int h, w, ch, k, s, pad_top, pad_left, ho, wo;
} pool_task;

static void maxpool_rows(void *ud, int ith, int nth) {
    const pool_task *t = ud;
    long r0, r1;
    mer_split_range(t->ho, ith, nth, &r0, &r1);
    for (long oy = r0; oy < r1; oy++)
        for (int ox = 0; ox < t->wo; ox++) {
            float *dst = t->y + ((size_t)oy * t->wo + ox) * t->ch;
            for (int i = 0; i < t->ch; i++) dst[i] = -INFINITY;
            for (int ky = 0; ky < t->k; ky++) {
                int iy = (int)oy * t->s - t->pad_top + ky;
                if (iy < 0 || iy >= t->h) continue;
                for (int kx = 0; kx < t->k; kx++) {
                    int ix = ox * t->s - t->pad_left + kx;
                    if (ix < 0 || ix >= t->w) continue;
                    vmax(dst, t->x + ((size_t)iy * t->w + ix) * t->ch, t->ch);
                }
            }
        }
}

void mer__face_maxpool(mer_cpu_ctx *c, float *y, const float *x, int h, int w, int ch, int k, int s, int pad_top,
                       int pad_left, int ho, int wo) {
    pool_task t = {y, x, h, w, ch, k, s, pad_top, pad_left, ho, wo};
    mer_threadpool_run(mer_cpu_ctx_pool(c), maxpool_rows, &t);
}

static inline float leaky1(float x) {
    const float alpha = 0.1f; /* tf.scalar(0.10000000149011612), i.e. 0.1 in f32 */
    float m = x * alpha;
    float r = x - m;
    return (r > 0.0f ? r : 0.0f) + m;
}

void mer__face_leaky(float *y, const float *x, size_t n) {
    size_t i = 0;
    float v[8];
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; j++) v[j] = leaky1(x[i + j]);
        for (int j = 0; j < 8; j++) y[i + j] = v[j];
    }
    for (; i < n; i++) y[i] = leaky1(x[i]);
}

void mer__face_relu(float *y, const float *x, size_t n) {
    size_t i = 0;
    float v[8];
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; j++) v[j] = x[i + j] > 0.0f ? x[i + j] : 0.0f;
        for (int j = 0; j < 8; j++) y[i + j] = v[j];
    }
    for (; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// --- input: pad to square, bilinear resize, normalise -------------------------------------------------

typedef struct prep_task {
    float *out;
    int size;
    const uint8_t *rgb;
    int w, h;
    size_t stride;
    int s, off_x, off_y; /* the padded square and where the image sits in it */
    double ratio;
    float mean[3];
} prep_task;

/* Pixel (py, px) of the padded square image, channel ch (0 outside the picture). */
static inline double padded_px(const prep_task *t, int py, int px, int ch) {
    int y = py - t->off_y, x = px - t->off_x;
    if (y < 0 || y >= t->h || x < 0 || x >= t->w) return 0.0;
    return t->rgb[(size_t)y * t->stride + (size_t)x * 3 + ch];
}

static void prep_rows(void *ud, int ith, int nth) {
    const prep_task *t = ud;
    long r0, r1;
    mer_split_range(t->size, ith, nth, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        double fr = t->ratio * (double)r;
        int rf = (int)floor(fr);
        if (rf < 0) rf = 0;
        double rfrac = fr - rf;
        int rc = (int)ceil(fr);
        if (rc > t->s - 1) rc = t->s - 1;
        for (int col = 0; col < t->size; col++) {
            double fc = t->ratio * (double)col;
            int cf = (int)floor(fc);
            if (cf < 0) cf = 0;
            double cfrac = fc - cf;
            int cc = (int)ceil(fc);
            if (cc > t->s - 1) cc = t->s - 1;
            float *dst = t->out + ((size_t)r * t->size + col) * 3;
            for (int ch = 0; ch < 3; ch++) {
                double tl = padded_px(t, rf, cf, ch), tr = padded_px(t, rf, cc, ch);
                double bl = padded_px(t, rc, cf, ch), br = padded_px(t, rc, cc, ch);
                double top = tl + (tr - tl) * cfrac;
                double bot = bl + (br - bl) * cfrac;
                float v = (float)(top + (bot - top) * rfrac);
                float d = v - t->mean[ch];
                dst[ch] = d / 255.0f;
            }
        }
    }
}

void mer__face_prep_input(mer_cpu_ctx *c, float *out, int size, const uint8_t *rgb, int w, int h, size_t stride,
                          int center, const float mean[3]) {
    MER_ASSERT(w > 0 && h > 0 && size > 0);
    prep_task t = {.out = out, .size = size, .rgb = rgb, .w = w, .h = h, .stride = stride};
    t.s = w > h ? w : h;
    int diff = t.s - (w < h ? w : h);
    /* padToSquare: round(diff * 0.5) after (Math.round: halves up), the rest before; 0 before if !center */
    int before = center ? diff - (int)floor(diff * 0.5 + 0.5) : 0;
    if (w < h) t.off_x = before;
    else t.off_y = before;
    t.ratio = (double)t.s / (double)size;
    memcpy(t.mean, mean, sizeof t.mean);
    mer_threadpool_run(mer_cpu_ctx_pool(c), prep_rows, &t);
}
