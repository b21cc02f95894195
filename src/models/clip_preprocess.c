/* clip_preprocess.c - Pillow's bicubic resize, OpenCV's bilinear resize and
 * the CLIP processor's crop + normalisation (see clip_preprocess.h). The two resizers re-implement the
 * arithmetic of Pillow's libImaging/Resample.c and OpenCV's imgproc/resize.cpp (fixed-point formats,
 * rounding, border handling) so that their uint8 output is the same. */
#include "models/clip_preprocess.h"

#include <limits.h>
#include <math.h>
#include <string.h>

// --- Pillow: BICUBIC ---------------------------------------------------------------------------------

#define PIL_PREC 22 /* PRECISION_BITS = 32 - 8 - 2 */

static double cubic(double x) { /* a = -0.5 */
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Per output position: first input index, tap count and ksize fixed-point taps (Pillow's
 * precompute_coeffs + normalize_coeffs_8bpc, with in0 = 0, in1 = in_size). */
static mer_status pil_coeffs(int in_size, int out_size, int *ksize_out, int **bounds_out, int32_t **kk_out,
                             mer_err *err) {
    double scale = (double)(float)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    *bounds_out = NULL;
    *kk_out = NULL;
    if (ksize > (1 << 20) || (size_t)out_size > SIZE_MAX / ((size_t)ksize * sizeof(double)))
        return mer__errf(err, MER_E_RANGE, "resize: %d -> %d is too large a reduction", in_size, out_size);
    double *pre = malloc((size_t)ksize * sizeof(double));
    int *bounds = malloc((size_t)out_size * 2 * sizeof(int));
    int32_t *kk = malloc((size_t)out_size * ksize * sizeof(int32_t));
    if (!pre || !bounds || !kk) {
        free(pre);
        free(bounds);
        free(kk);
        return mer__errf(err, MER_E_NOMEM, "resize: out of memory");
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax;
        if (xmin < 0) xmin = 0;
        xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        int x;
        for (x = 0; x < xmax; x++) {
            double w = cubic((x + xmin - center + 0.5) * ss);
            pre[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) pre[x] /= ww;
        for (; x < ksize; x++) pre[x] = 0;
        for (x = 0; x < ksize; x++)
            kk[(size_t)xx * ksize + x] = pre[x] < 0 ? (int32_t)(-0.5 + pre[x] * (1 << PIL_PREC))
                                                    : (int32_t)(0.5 + pre[x] * (1 << PIL_PREC));
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    free(pre);
    *ksize_out = ksize;
    *bounds_out = bounds;
    *kk_out = kk;
    return MER_OK;
}

static inline uint8_t pil_clip8(int32_t v) {
    v >>= PIL_PREC; /* arithmetic shift: floor */
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

mer_status mer_resize_pil_bicubic(const uint8_t *src, int sw, int sh, int ch, uint8_t *dst, int dw, int dh,
                                  mer_err *err) {
    if (!src || !dst || sw < 1 || sh < 1 || dw < 1 || dh < 1 || ch < 1 || ch > 4)
        return mer__errf(err, MER_E_ARG, "resize: bad arguments (%d x %d x %d -> %d x %d)", sw, sh, ch, dw, dh);
    if (sw == dw && sh == dh) { /* Image.resize returns a copy */
        memcpy(dst, src, (size_t)sw * sh * ch);
        return MER_OK;
    }
    int kx = 0, ky = 0, *bx = NULL, *by = NULL;
    int32_t *cx = NULL, *cy = NULL;
    uint8_t *tmp = NULL;
    mer_status st;
    if ((st = pil_coeffs(sw, dw, &kx, &bx, &cx, err)) || (st = pil_coeffs(sh, dh, &ky, &by, &cy, err))) goto done;
    /* rows of the source the vertical pass reads */
    int y_first = by[0], y_last = by[(dh - 1) * 2] + by[(dh - 1) * 2 + 1];
    const uint8_t *vin = src; /* input of the vertical pass: [rows][dw or sw][ch] */
    int vw = sw, row0 = 0;
    if (dw != sw) { /* horizontal pass over rows y_first..y_last-1 */
        int rows = y_last - y_first;
        tmp = malloc((size_t)rows * dw * ch);
        if (!tmp) {
            st = mer__errf(err, MER_E_NOMEM, "resize: out of memory");
            goto done;
        }
        for (int y = 0; y < rows; y++) {
            const uint8_t *s = src + (size_t)(y + y_first) * sw * ch;
            uint8_t *d = tmp + (size_t)y * dw * ch;
            for (int xx = 0; xx < dw; xx++) {
                int xmin = bx[xx * 2], xmax = bx[xx * 2 + 1];
                const int32_t *k = cx + (size_t)xx * kx;
                for (int c = 0; c < ch; c++) {
                    int32_t ss = 1 << (PIL_PREC - 1);
                    for (int x = 0; x < xmax; x++) ss += s[(size_t)(x + xmin) * ch + c] * k[x];
                    d[(size_t)xx * ch + c] = pil_clip8(ss);
                }
            }
        }
        vin = tmp;
        vw = dw;
        row0 = y_first; /* tmp row r is source row r + y_first */
    }
    if (dh != sh) {
        for (int yy = 0; yy < dh; yy++) {
            int ymin = by[yy * 2] - row0, ymax = by[yy * 2 + 1];
            const int32_t *k = cy + (size_t)yy * ky;
            uint8_t *d = dst + (size_t)yy * vw * ch;
            for (int i = 0; i < vw * ch; i++) {
                int32_t ss = 1 << (PIL_PREC - 1);
                for (int y = 0; y < ymax; y++) ss += vin[(size_t)(y + ymin) * vw * ch + i] * k[y];
                d[i] = pil_clip8(ss);
            }
        }
    } else { /* only the horizontal pass ran (over every row) */
        memcpy(dst, vin, (size_t)dh * dw * ch);
    }
    st = MER_OK;
done:
    free(bx);
    free(by);
    free(cx);
    free(cy);
    free(tmp);
    return st;
}

// --- OpenCV: INTER_LINEAR ----------------------------------------------------------------------------

#define CV_COEF_BITS 11
#define CV_COEF_SCALE (1 << CV_COEF_BITS)

static inline int cv_floor(double x) {
    int i = (int)x;
    return i - (i > x);
}

/* saturate_cast<short>(float): round to nearest even (cvRound), clamp. */
static inline int16_t cv_sat_s16(float v) {
    long r = lrintf(v);
    return (int16_t)(r < -32768 ? -32768 : r > 32767 ? 32767 : r);
}

static inline uint8_t sat_u8(int v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v; }

/* cv::resize's 2x2 "area fast" path for an exact halving (INTER_LINEAR is redirected to it). */
static void cv_area_half(const uint8_t *src, int sw, int ch, uint8_t *dst, int dw, int dh) {
    for (int y = 0; y < dh; y++) {
        const uint8_t *s0 = src + (size_t)(2 * y) * sw * ch, *s1 = s0 + (size_t)sw * ch;
        uint8_t *d = dst + (size_t)y * dw * ch;
        for (int x = 0; x < dw; x++)
            for (int c = 0; c < ch; c++) {
                int i = 2 * x * ch + c;
                d[x * ch + c] = (uint8_t)((s0[i] + s0[i + ch] + s1[i] + s1[i + ch] + 2) >> 2);
            }
    }
}

mer_status mer_resize_cv_linear(const uint8_t *src, int sw, int sh, int ch, uint8_t *dst, int dw, int dh,
                                mer_err *err) {
    if (!src || !dst || sw < 1 || sh < 1 || dw < 1 || dh < 1 || ch < 1 || ch > 4)
        return mer__errf(err, MER_E_ARG, "resize: bad arguments (%d x %d x %d -> %d x %d)", sw, sh, ch, dw, dh);
    if (sw == dw && sh == dh) {
        memcpy(dst, src, (size_t)sw * sh * ch);
        return MER_OK;
    }
    double scale_x = 1. / ((double)dw / sw), scale_y = 1. / ((double)dh / sh);
    int isx = (int)lrint(scale_x), isy = (int)lrint(scale_y);
    if (fabs(scale_x - isx) < 2.220446049250313e-16 && fabs(scale_y - isy) < 2.220446049250313e-16 && isx == 2 &&
        isy == 2 && dw * 2 <= sw && dh * 2 <= sh) {
        cv_area_half(src, sw, ch, dst, dw, dh);
        return MER_OK;
    }
    const int W = dw * ch; /* elements per output row */
    int *xofs = malloc((size_t)W * sizeof(int)), *yofs = malloc((size_t)dh * sizeof(int));
    int16_t *alpha = malloc((size_t)W * 2 * sizeof(int16_t)), *beta = malloc((size_t)dh * 2 * sizeof(int16_t));
    int32_t *rows = malloc((size_t)2 * W * sizeof(int32_t));
    mer_status st = MER_OK;
    if (!xofs || !yofs || !alpha || !beta || !rows) {
        st = mer__errf(err, MER_E_NOMEM, "resize: out of memory");
        goto done;
    }
    int xmax = dw; /* first dx whose right tap falls outside: single tap from there on */
    for (int dx = 0; dx < dw; dx++) {
        float fx = (float)((dx + 0.5) * scale_x - 0.5);
        int sx = cv_floor(fx);
        fx -= sx;
        if (sx < 0) fx = 0, sx = 0;
        if (sx + 1 >= sw) {
            if (dx < xmax) xmax = dx;
            fx = 0, sx = sw - 1;
        }
        for (int c = 0; c < ch; c++) {
            xofs[dx * ch + c] = sx * ch + c;
            alpha[(dx * ch + c) * 2] = cv_sat_s16((1.f - fx) * CV_COEF_SCALE);
            alpha[(dx * ch + c) * 2 + 1] = cv_sat_s16(fx * CV_COEF_SCALE);
        }
    }
    for (int dy = 0; dy < dh; dy++) {
        float fy = (float)((dy + 0.5) * scale_y - 0.5);
        int sy = cv_floor(fy);
        fy -= sy;
        yofs[dy] = sy;
        beta[dy * 2] = cv_sat_s16((1.f - fy) * CV_COEF_SCALE);
        beta[dy * 2 + 1] = cv_sat_s16(fy * CV_COEF_SCALE);
    }
    for (int dy = 0; dy < dh; dy++) {
        /* horizontal pass of the two source rows (clamped to the image) */
        for (int k = 0; k < 2; k++) {
            int sy = yofs[dy] + k;
            sy = sy < 0 ? 0 : sy >= sh ? sh - 1 : sy;
            const uint8_t *s = src + (size_t)sy * sw * ch;
            int32_t *d = rows + (size_t)k * W;
            for (int i = 0; i < W; i++) {
                int sx = xofs[i];
                if (i < xmax * ch) d[i] = s[sx] * alpha[i * 2] + s[sx + ch] * alpha[i * 2 + 1];
                else d[i] = s[sx] * CV_COEF_SCALE;
            }
        }
        /* vertical pass: OpenCV's uchar specialisation of VResizeLinear (its SIMD kernel and its scalar
         * tail compute the same): ((b0 * (S0 >> 4)) >> 16) + ((b1 * (S1 >> 4)) >> 16), rounded by 2 bits */
        const int32_t *s0 = rows, *s1 = rows + W;
        const int b0 = beta[dy * 2], b1 = beta[dy * 2 + 1];
        uint8_t *d = dst + (size_t)dy * W;
        for (int x = 0; x < W; x++) d[x] = sat_u8((((b0 * (s0[x] >> 4)) >> 16) + ((b1 * (s1[x] >> 4)) >> 16) + 2) >> 2);
    }
done:
    free(xofs);
    free(yofs);
    free(alpha);
    free(beta);
    free(rows);
    return st;
}

// --- CLIPImageProcessor ------------------------------------------------------------------------------

void mer_clip_resize_dims(int w, int h, int size, int *ow, int *oh) {
    int shorter = w <= h ? w : h, longer = w <= h ? h : w;
    int nl = (int)((double)((long)size * longer) / shorter);
    if (w <= h) *ow = size, *oh = nl;
    else *ow = nl, *oh = size;
}

void mer_clip_normalize(const uint8_t *rgb, int crop, float *out) {
    static const float mean[3] = {MER_CLIP_MEAN_R, MER_CLIP_MEAN_G, MER_CLIP_MEAN_B};
    static const float stdv[3] = {MER_CLIP_STD_R, MER_CLIP_STD_G, MER_CLIP_STD_B};
    const size_t plane = (size_t)crop * crop;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            float v = (float)((double)rgb[i * 3 + c] * (1.0 / 255.0)); /* rescale in f64, stored as f32 */
            out[c * plane + i] = (v - mean[c]) / stdv[c];
        }
}

mer_status mer_clip_preprocess(const uint8_t *rgb, int w, int h, int size, int crop, float *out, uint8_t *resized_u8,
                               mer_err *err) {
    if (!rgb || !out || w < 1 || h < 1 || size < 1 || crop < 1)
        return mer__errf(err, MER_E_ARG, "CLIP preprocess: bad arguments");
    int ow, oh;
    mer_clip_resize_dims(w, h, size, &ow, &oh);
    if (ow < crop || oh < crop)
        return mer__errf(err, MER_E_ARG, "CLIP preprocess: resized image %d x %d is smaller than the %d crop", ow, oh,
                         crop);
    uint8_t *r = malloc((size_t)ow * oh * 3), *c = malloc((size_t)crop * crop * 3);
    mer_status st;
    if (!r || !c) {
        st = mer__errf(err, MER_E_NOMEM, "CLIP preprocess: out of memory");
        goto done;
    }
    if ((st = mer_resize_pil_bicubic(rgb, w, h, 3, r, ow, oh, err))) goto done;
    int top = (oh - crop) / 2, left = (ow - crop) / 2;
    for (int y = 0; y < crop; y++) memcpy(c + (size_t)y * crop * 3, r + ((size_t)(y + top) * ow + left) * 3, (size_t)crop * 3);
    if (resized_u8) memcpy(resized_u8, c, (size_t)crop * crop * 3);
    mer_clip_normalize(c, crop, out);
done:
    free(r);
    free(c);
    return st;
}
