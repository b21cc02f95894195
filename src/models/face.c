/* face.c - the public face API (mer_face_* in mer.h): loads face-api's two tfjs models from a folder,
 * owns the thread pool and CPU context they run on, and wraps the detector (face_detect.c) and the
 * expression net (face_expr.c); plus the OpenFace-style BGR crop used by `mer faces`. */
#include "io/tfjs.h"
#include "models/face_detect.h"
#include "models/face_expr.h"

#include <math.h>
#include <string.h>

struct mer_face {
    mer_face_params p;
    mer_threadpool *pool;
    mer_cpu_ctx *ctx;
    mer_facedet det;
    mer_faceexpr expr;
};

static const char *EXPR_NAMES[MER_FACE_N_EXPR] = {"neutral", "happy", "sad", "angry", "fearful", "disgusted",
                                                  "surprised"};

const char *mer_face_expr_name(int i) { return i >= 0 && i < MER_FACE_N_EXPR ? EXPR_NAMES[i] : NULL; }

mer_face_params mer_face_default_params(void) {
    return (mer_face_params){.n_threads = 0, .input_size = 416, .score_threshold = 0.5f, .iou_threshold = 0.4f};
}

mer_status mer_face_load(const char *dir, const mer_face_params *params, mer_face **out, mer_err *err) {
    *out = NULL;
    mer_status st;
    mer_weights *w = NULL;
    char *path = NULL;
    mer_face *f = calloc(1, sizeof *f);
    if (!f) return mer__errf(err, MER_E_NOMEM, "out of memory");
    f->p = params ? *params : mer_face_default_params();
    if (f->p.input_size < 32 || f->p.input_size > 2048 || f->p.input_size % 32) {
        st = mer__errf(err, MER_E_ARG, "face models: input size %d is not a multiple of 32 in [32, 2048]",
                       f->p.input_size);
        goto fail;
    }
    if (!(f->p.score_threshold > 0 && f->p.score_threshold < 1) || !(f->p.iou_threshold >= 0 && f->p.iou_threshold <= 1)) {
        st = mer__errf(err, MER_E_ARG, "face models: thresholds must lie in (0, 1)");
        goto fail;
    }
    if ((st = mer_threadpool_init(f->p.n_threads, &f->pool, err)) ||
        (st = mer_cpu_ctx_init(f->pool, MER_ISA_AUTO, &f->ctx, err)))
        goto fail;
    if (!(path = mer__path_join(dir, "tiny_face_detector_model-weights_manifest.json"))) goto nomem;
    if ((st = mer__tfjs_open(path, &w, err)) || (st = mer__facedet_init(&f->det, w, err))) goto fail;
    mer_weights_close(w);
    w = NULL;
    free(path);
    if (!(path = mer__path_join(dir, "face_expression_model-weights_manifest.json"))) goto nomem;
    if ((st = mer__tfjs_open(path, &w, err)) || (st = mer__faceexpr_init(&f->expr, w, err))) goto fail;
    mer_weights_close(w);
    free(path);
    *out = f;
    return MER_OK;
nomem:
    st = mer__errf(err, MER_E_NOMEM, "out of memory");
fail:
    mer_weights_close(w);
    free(path);
    mer_face_free(f);
    return st;
}

void mer_face_free(mer_face *f) {
    if (!f) return;
    mer__facedet_free(&f->det);
    mer__faceexpr_free(&f->expr);
    mer_cpu_ctx_free(f->ctx);
    mer_threadpool_free(f->pool);
    free(f);
}

mer_status mer_face_detect(mer_face *f, const uint8_t *rgb, int w, int h, size_t stride, mer_face_box **boxes,
                           size_t *n, mer_err *err) {
    mer_facedet_box *b = NULL;
    *boxes = NULL;
    *n = 0;
    mer_status st = mer__facedet_run(&f->det, f->ctx, rgb, w, h, stride, f->p.input_size, f->p.score_threshold,
                                     f->p.iou_threshold, &b, n, NULL, NULL, err);
    if (st || !*n) return st;
    mer_face_box *o = malloc(*n * sizeof *o);
    if (!o) {
        free(b);
        *n = 0;
        return mer__errf(err, MER_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < *n; i++)
        o[i] = (mer_face_box){b[i].x, b[i].y, b[i].w, b[i].h, b[i].score, b[i].cx, b[i].cy, b[i].cw, b[i].ch};
    free(b);
    *boxes = o;
    return MER_OK;
}

mer_status mer_face_expressions(mer_face *f, const uint8_t *rgb, int w, int h, size_t stride,
                                const mer_face_box *box, float probs[MER_FACE_N_EXPR], mer_err *err) {
    return mer__faceexpr_run(&f->expr, f->ctx, rgb, w, h, stride, box->crop_x, box->crop_y, box->crop_w,
                             box->crop_h, probs, err);
}

mer_status mer_face_crop_bgr(const uint8_t *rgb, int w, int h, size_t stride, const mer_face_box *box, int size,
                             uint8_t *out, mer_err *err) {
    if (size < 1 || size > 4096 || w < 1 || h < 1 || stride < (size_t)w * 3)
        return mer__errf(err, MER_E_ARG, "face crop: bad size %d or image %dx%d", size, w, h);
    double side = 1.2 * fmax(box->w, box->h);
    if (!(side > 0) || !isfinite(side) || !isfinite(box->x) || !isfinite(box->y))
        return mer__errf(err, MER_E_ARG, "face crop: degenerate box");
    double x0 = box->x + box->w / 2 - side / 2, y0 = box->y + box->h / 2 - side / 2, sc = side / size;
    for (int r = 0; r < size; r++)
        for (int c = 0; c < size; c++) {
            /* bilinear sample at the pixel centre, as cv2.resize(INTER_LINEAR) does */
            double sy = y0 + (r + 0.5) * sc - 0.5, sx = x0 + (c + 0.5) * sc - 0.5;
            double fy = floor(sy), fx = floor(sx), ay = sy - fy, ax = sx - fx;
            double acc[3] = {0, 0, 0};
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++) {
                    double yy = fy + dy, xx = fx + dx, wgt = (dy ? ay : 1 - ay) * (dx ? ax : 1 - ax);
                    if (yy < 0 || yy >= h || xx < 0 || xx >= w || wgt == 0) continue;
                    const uint8_t *p = rgb + (size_t)yy * stride + (size_t)xx * 3;
                    for (int k = 0; k < 3; k++) acc[k] += wgt * p[k];
                }
            uint8_t *o = out + ((size_t)r * size + c) * 3;
            for (int k = 0; k < 3; k++) {
                double v = floor(acc[2 - k] + 0.5);
                o[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    return MER_OK;
}
