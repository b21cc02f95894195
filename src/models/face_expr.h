/* face_expr.h - face-api's FaceExpressionNet (face_expression_model, ~330 KB): 7 expression
 * probabilities (neutral, happy, sad, angry, fearful, disgusted, surprised) for a face crop.
 *
 * Network (face-api's FaceFeatureExtractor + a fully connected classifier; tfjs names):
 *   input    the crop zero-padded to a square with the padding split evenly (round(d/2) after, the rest
 *            before), bilinear-resized to 112 x 112, (v - [122.782, 117.001, 104.298]) / 255
 *   denseK   (K = 0..3, channels 3->32->64->128->256, spatial 112->56->28->14->7), each:
 *              o1 = relu(conv0(x), stride 2)     dense0: 3x3 conv + bias; dense1..3: separable conv + bias
 *              o2 = sep(o1)  o3 = sep(relu(o1 + o2))  o4 = sep(relu(o1 + (o2 + o3)))
 *              out = relu(o1 + (o2 + (o3 + o4)))
 *            where sep = depthwise 3x3 + pointwise 1x1 + bias, stride 1, 'same' padding
 *            (denseK/convJ/filters | depthwise_filter, pointwise_filter, bias)
 *   pool     7x7 average -> 256
 *   fc       256 -> 7 (fc/weights [256, 7], fc/bias), softmax
 * Internal; the public entry points are in mer.h (mer_face_*). */
#ifndef MER_MODELS_FACE_EXPR_H
#define MER_MODELS_FACE_EXPR_H

#include "core/core.h"
#include "io/weights.h"
#include "kernels/kernels.h"

#define MER_FACEEXPR_N 7
#define MER_FACEEXPR_SIZE 112

typedef struct mer_faceexpr_sep {
    float *dw, *pw, *bias; /* [9][c_in], [c_out][c_in], [c_out] */
} mer_faceexpr_sep;

typedef struct mer_faceexpr_block {
    int c_in, c_out;
    float *conv0_w, *conv0_b;  /* dense0 only: [c_out][3][3][c_in], [c_out] */
    mer_faceexpr_sep conv[4];  /* conv[0] unused in dense0 */
} mer_faceexpr_block;

typedef struct mer_faceexpr {
    mer_faceexpr_block dense[4];
    float *fc_w, *fc_b; /* [7][256], [7] */
    float *mem;
    float *scratch;     /* activations of one forward pass (one thread at a time) */
} mer_faceexpr;

/* Builds the network from a tfjs weights view (face_expression_model-weights_manifest.json), checking
 * every tensor by name and shape. Caller frees with mer__faceexpr_free. */
mer_status mer__faceexpr_init(mer_faceexpr *e, const mer_weights *w, mer_err *err);
void mer__faceexpr_free(mer_faceexpr *e);

/* Expression probabilities of the crop (cx, cy, cw, ch) of an 8-bit RGB image (w x h, rows `stride`
 * bytes apart). The crop must lie inside the image with cw, ch >= 1 (MER_E_ARG otherwise). */
mer_status mer__faceexpr_run(mer_faceexpr *e, mer_cpu_ctx *c, const uint8_t *rgb, int w, int h, size_t stride,
                             int cx, int cy, int cw, int ch, float probs[MER_FACEEXPR_N], mer_err *err);

#endif
