/* face_detect.h - face-api's TinyFaceDetector (tiny_face_detector_model, ~190 KB): a YOLOv2-style
 * single-class detector on a square RGB input (inputSize, a multiple of 32; face-api's default 416).
 *
 * Network (weights by their tfjs names, filters in tfjs order [kh][kw][c_in][c_out]):
 *   input      the image zero-padded at the bottom/right to a square, bilinear-resized to inputSize,
 *              (v - [117.001, 114.697, 97.404]) / 255
 *   conv0      3x3 conv 3->16 'valid' + bias, leaky ReLU(0.1)                         conv0/filters, bias
 *   pool       2x2 max, stride 2, 'same'
 *   conv1..5   pad 1, depthwise 3x3 + pointwise 1x1 (+ bias), leaky ReLU; channels 16->32->64->128->256->512
 *              (convK/depthwise_filter, pointwise_filter, bias); after conv1..4 a 2x2 stride-2 max-pool,
 *              after conv5 a 2x2 stride-1 max-pool ('same')
 *   conv8      1x1 conv 512->25 + bias: per cell, 5 anchors x (tx, ty, tw, th, score)
 * Decoding (face-api's TinyYolov2Base.extractBoxes, in double): score = sigmoid(s) kept when > threshold;
 * centre ((col + sigmoid(tx)) / n, (row + sigmoid(ty)) / n), size (exp(tw) * anchor_w / n, exp(th) *
 * anchor_h / n), both scaled by inputSize / (reshaped width or height) so that boxes are relative to the
 * unpadded image; then greedy non-maximum suppression at IoU 0.4 in score order, boxes in pixels.
 * Internal; the public entry points are in mer.h (mer_face_*). */
#ifndef MER_MODELS_FACE_DETECT_H
#define MER_MODELS_FACE_DETECT_H

#include "core/core.h"
#include "io/weights.h"
#include "kernels/kernels.h"

#define MER_FACEDET_N_ANCHORS 5

typedef struct mer_facedet_sep {
    int c_in, c_out;
    float *dw;   /* [9][c_in]  convK/depthwise_filter */
    float *pw;   /* [c_out][c_in]  convK/pointwise_filter (transposed) */
    float *bias; /* [c_out] */
} mer_facedet_sep;

typedef struct mer_facedet {
    float *conv0_w; /* [16][3][3][3] (transposed from conv0/filters) */
    float *conv0_b; /* [16] */
    mer_facedet_sep sep[5]; /* conv1..conv5 */
    float *conv8_w; /* [25][512] */
    float *conv8_b; /* [25] */
    float *mem;     /* owns every array above */
    /* scratch for one forward pass, grown to the largest input size seen (one thread at a time) */
    float *buf_a, *buf_b, *col;
    size_t cap_a, cap_b, cap_col;
} mer_facedet;

/* A detection: the box in pixels of the image passed in (x, y: top-left corner), its score, and the
 * integer crop face-api slices for the next networks (the box clipped to the image, then each of
 * x, y, w, h floored; w or h may be 0 for a box outside the image). */
typedef struct mer_facedet_box {
    double x, y, w, h;
    double score;
    int cx, cy, cw, ch;
} mer_facedet_box;

/* Builds the detector from a tfjs weights view (mer__tfjs_open of tiny_face_detector_model-weights_
 * manifest.json): every tensor checked by name and shape. MER_E_NOTFOUND / MER_E_SHAPE naming the tensor
 * otherwise. The model keeps no pointer into w. Caller frees with mer__facedet_free. */
mer_status mer__facedet_init(mer_facedet *d, const mer_weights *w, mer_err *err);
void mer__facedet_free(mer_facedet *d);

/* Runs the detector on an 8-bit RGB image (w x h, rows `stride` bytes apart) at input size `size` (a
 * multiple of 32 in [32, 2048]). Returns MER_OK with *boxes (caller frees with free(); NULL when *n == 0)
 * in descending score order; MER_E_ARG for a bad size, MER_E_NOMEM. The raw network output [n][n][25]
 * is left in *raw (valid until the next call) when raw is non-NULL, *n_cells = n. */
mer_status mer__facedet_run(mer_facedet *d, mer_cpu_ctx *c, const uint8_t *rgb, int w, int h, size_t stride,
                            int size, double score_threshold, double iou_threshold, mer_facedet_box **boxes,
                            size_t *n, const float **raw, int *n_cells, mer_err *err);

/* Intersection over union of two boxes (x, y, w, h), as face-api's iou(). */
double mer__facedet_iou(const mer_facedet_box *a, const mer_facedet_box *b);

/* Shared by both face networks: copies tensor `name` of w (f32, shape `shape` of n_dims dims, tfjs order)
 * into dst, transposing the last axis to the front when `transpose` (so [.., c_out] becomes [c_out][..]).
 * `what` names the model in messages. */
mer_status mer__face_load_tensor(const mer_weights *w, const char *what, const char *name, int n_dims,
                                 const int64_t *shape, int transpose, float *dst, mer_err *err);

#endif
