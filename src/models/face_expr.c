/* face_expr.c - face-api's FaceExpressionNet: loading from a tfjs manifest view and the forward pass
 * (four dense blocks of separable convolutions, average pool, fully connected layer, softmax); see
 * face_expr.h. */
#include "models/face_expr.h"

#include "models/face_detect.h"
#include "models/face_ops.h"

#include <math.h>
#include <string.h>

static const float MEAN_RGB[3] = {122.782f, 117.001f, 104.298f};
static const int CH[5] = {3, 32, 64, 128, 256};
#define ACT_MAX ((size_t)56 * 56 * 32) /* the largest activation: dense0's output */
#define N_ACT 6                        /* o1 o2 o3 o4 sum tmp */

mer_status mer__faceexpr_init(mer_faceexpr *e, const mer_weights *w, mer_err *err) {
    memset(e, 0, sizeof *e);
    const char *what = "face_expression";
    size_t total = 7 * 256 + 7;
    for (int k = 0; k < 4; k++) {
        size_t ci = (size_t)CH[k], co = (size_t)CH[k + 1];
        total += k == 0 ? co * 9 * ci + co : 9 * ci + ci * co + co;
        total += 3 * (9 * co + co * co + co);
    }
    size_t scratch = (size_t)MER_FACEEXPR_SIZE * MER_FACEEXPR_SIZE * 3 + (size_t)56 * 56 * 27 + N_ACT * ACT_MAX;
    e->mem = malloc(total * sizeof *e->mem);
    e->scratch = malloc(scratch * sizeof *e->scratch);
    if (!e->mem || !e->scratch) {
        mer__faceexpr_free(e);
        return mer__errf(err, MER_E_NOMEM, "%s: out of memory", w->path);
    }
    float *p = e->mem;
    mer_status st;
    char n1[64], n2[64], n3[64];
    for (int k = 0; k < 4; k++) {
        mer_faceexpr_block *b = &e->dense[k];
        b->c_in = CH[k];
        b->c_out = CH[k + 1];
        for (int j = 0; j < 4; j++) {
            int ci = j == 0 ? b->c_in : b->c_out;
            snprintf(n3, sizeof n3, "dense%d/conv%d/bias", k, j);
            if (k == 0 && j == 0) {
                b->conv0_w = p; p += (size_t)b->c_out * 9 * ci;
                b->conv0_b = p; p += b->c_out;
                snprintf(n1, sizeof n1, "dense%d/conv%d/filters", k, j);
                if ((st = mer__face_load_tensor(w, what, n1, 4, (int64_t[]){3, 3, ci, b->c_out}, 1, b->conv0_w, err)) ||
                    (st = mer__face_load_tensor(w, what, n3, 1, (int64_t[]){b->c_out}, 0, b->conv0_b, err)))
                    goto fail;
                continue;
            }
            mer_faceexpr_sep *s = &b->conv[j];
            s->dw = p; p += 9 * (size_t)ci;
            s->pw = p; p += (size_t)ci * b->c_out;
            s->bias = p; p += b->c_out;
            snprintf(n1, sizeof n1, "dense%d/conv%d/depthwise_filter", k, j);
            snprintf(n2, sizeof n2, "dense%d/conv%d/pointwise_filter", k, j);
            if ((st = mer__face_load_tensor(w, what, n1, 4, (int64_t[]){3, 3, ci, 1}, 0, s->dw, err)) ||
                (st = mer__face_load_tensor(w, what, n2, 4, (int64_t[]){1, 1, ci, b->c_out}, 1, s->pw, err)) ||
                (st = mer__face_load_tensor(w, what, n3, 1, (int64_t[]){b->c_out}, 0, s->bias, err)))
                goto fail;
        }
    }
    e->fc_w = p; p += 7 * 256;
    e->fc_b = p; p += 7;
    if ((st = mer__face_load_tensor(w, what, "fc/weights", 2, (int64_t[]){256, 7}, 1, e->fc_w, err)) ||
        (st = mer__face_load_tensor(w, what, "fc/bias", 1, (int64_t[]){7}, 0, e->fc_b, err)))
        goto fail;
    MER_ASSERT((size_t)(p - e->mem) == total);
    return MER_OK;
fail:
    mer__faceexpr_free(e);
    return st;
}

void mer__faceexpr_free(mer_faceexpr *e) {
    if (!e) return;
    free(e->mem);
    free(e->scratch);
    memset(e, 0, sizeof *e);
}

static void add(float *y, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

/* Separable conv, stride s, 'same' padding: y[ho][ho][c_out] = pw(dw(x)) + bias; tmp holds dw's output. */
static void sep_conv(mer_cpu_ctx *c, float *y, const float *x, int hw, int c_in, int c_out, const mer_faceexpr_sep *s,
                     int stride, float *tmp) {
    int pad, ho = mer__face_same_pad(hw, 3, stride, &pad);
    mer__face_dwconv3x3(c, tmp, x, hw, hw, c_in, s->dw, stride, pad, pad, ho, ho);
    mer_cpu_matmul(c, y, (size_t)c_out, tmp, (size_t)c_in, s->pw, MER_DTYPE_F32, s->bias, ho * ho, c_in, c_out);
}

mer_status mer__faceexpr_run(mer_faceexpr *e, mer_cpu_ctx *c, const uint8_t *rgb, int w, int h, size_t stride,
                             int cx, int cy, int cw, int ch, float probs[MER_FACEEXPR_N], mer_err *err) {
    if (cw < 1 || ch < 1 || cx < 0 || cy < 0 || cx > w - cw || cy > h - ch || stride < (size_t)w * 3)
        return mer__errf(err, MER_E_ARG, "face expression: crop (%d, %d, %d, %d) is not inside the %dx%d image", cx, cy,
                         cw, ch, w, h);
    float *in = e->scratch;
    float *col = in + (size_t)MER_FACEEXPR_SIZE * MER_FACEEXPR_SIZE * 3;
    float *act = col + (size_t)56 * 56 * 27;
    float *o1 = act, *o2 = o1 + ACT_MAX, *o3 = o2 + ACT_MAX, *o4 = o3 + ACT_MAX, *sum = o4 + ACT_MAX,
          *tmp = sum + ACT_MAX;
    mer__face_prep_input(c, in, MER_FACEEXPR_SIZE, rgb + (size_t)cy * stride + (size_t)cx * 3, cw, ch, stride, 1,
                         MEAN_RGB);
    const float *x = in;
    int hw = MER_FACEEXPR_SIZE;
    for (int k = 0; k < 4; k++) {
        const mer_faceexpr_block *b = &e->dense[k];
        int pad, ho = mer__face_same_pad(hw, 3, 2, &pad);
        size_t n = (size_t)ho * ho * b->c_out;
        if (k == 0)
            mer__face_conv3x3(c, o1, x, hw, hw, b->c_in, b->conv0_w, b->conv0_b, b->c_out, 2, pad, pad, ho, ho, col);
        else
            sep_conv(c, o1, x, hw, b->c_in, b->c_out, &b->conv[0], 2, tmp);
        mer__face_relu(o1, o1, n);
        sep_conv(c, o2, o1, ho, b->c_out, b->c_out, &b->conv[1], 1, tmp);
        add(sum, o1, o2, n);
        mer__face_relu(sum, sum, n);
        sep_conv(c, o3, sum, ho, b->c_out, b->c_out, &b->conv[2], 1, tmp);
        add(sum, o2, o3, n);
        add(sum, o1, sum, n);
        mer__face_relu(sum, sum, n);
        sep_conv(c, o4, sum, ho, b->c_out, b->c_out, &b->conv[3], 1, tmp);
        add(sum, o3, o4, n);
        add(sum, o2, sum, n);
        add(sum, o1, sum, n);
        mer__face_relu(sum, sum, n);
        x = sum;
        hw = ho;
    }
    /* 7x7 average pool (valid, one window), summed in double in row-major order as tfjs does */
    MER_ASSERT(hw == 7);
    float feat[256];
    for (int i = 0; i < 256; i++) {
        double s = 0;
        for (int p = 0; p < 49; p++) s += x[(size_t)p * 256 + i];
        feat[i] = (float)(s / 49.0);
    }
    float logits[MER_FACEEXPR_N];
    for (int o = 0; o < MER_FACEEXPR_N; o++) {
        double s = 0;
        for (int i = 0; i < 256; i++) s += (double)feat[i] * e->fc_w[o * 256 + i];
        logits[o] = (float)((float)s + e->fc_b[o]);
    }
    float mx = logits[0];
    for (int o = 1; o < MER_FACEEXPR_N; o++) mx = logits[o] > mx ? logits[o] : mx;
    float z = 0;
    for (int o = 0; o < MER_FACEEXPR_N; o++) z += (probs[o] = expf(logits[o] - mx));
    for (int o = 0; o < MER_FACEEXPR_N; o++) probs[o] /= z;
    return MER_OK;
}
