/* face_ops.h - the small image and convolution layers face-api's two networks are made of, on NHWC f32
 * images ([h][w][c], channels innermost, as tfjs lays them out), with TensorFlow's semantics:
 * 'same' padding puts the odd extra row/column at the bottom/right, max-pool ignores padded cells,
 * bilinear resize is tf.image.resizeBilinear with align_corners = half_pixel_centers = false.
 * Convolutions with a real reduction run on the engine's GEMM (mer_cpu_matmul): 1x1 convs directly,
 * 3x3 convs through an im2col buffer; the depthwise 3x3 conv and the pools are loops here, split over
 * the context's thread pool by output rows (results do not depend on the thread count). Internal. */
#ifndef MER_MODELS_FACE_OPS_H
#define MER_MODELS_FACE_OPS_H

#include "core/core.h"
#include "kernels/kernels.h"

/* TensorFlow's 'same' padding along one axis: out = ceil(in / stride), *pad_before = floor(total / 2)
 * of total = max(0, (out - 1) * stride + k - in). Returns out. */
int mer__face_same_pad(int in, int k, int stride, int *pad_before);

/* y[ho][wo][c_out] = conv3x3(x[h][w][c_in]) + bias, zero padding (pad_top, pad_left; the bottom/right
 * padding follows from ho, wo), stride s. w is [c_out][3][3][c_in] (f32; transposed from tfjs's
 * [3][3][c_in][c_out] at load). col is an im2col scratch of ho*wo*9*c_in floats. */
void mer__face_conv3x3(mer_cpu_ctx *c, float *y, const float *x, int h, int w, int c_in, const float *wt,
                       const float *bias, int c_out, int s, int pad_top, int pad_left, int ho, int wo, float *col);

/* Depthwise 3x3: y[ho][wo][ch] = sum over (kh, kw) of x * w[kh][kw][ch] (tfjs's [3][3][ch][1] order),
 * zero padding, stride s, no bias. Accumulates in f32 in (kh, kw) order, as tfjs's CPU kernel does. */
void mer__face_dwconv3x3(mer_cpu_ctx *c, float *y, const float *x, int h, int w, int ch, const float *wt, int s,
                         int pad_top, int pad_left, int ho, int wo);

/* Max-pool k x k, stride s, 'same' padding (pad_top/left given; padded cells ignored). */
void mer__face_maxpool(mer_cpu_ctx *c, float *y, const float *x, int h, int w, int ch, int k, int s, int pad_top,
                       int pad_left, int ho, int wo);

/* tfjs's leaky ReLU as face-api writes it: m = 0.1x; y = max(x - m, 0) + m (f32 ops). y may equal x. */
void mer__face_leaky(float *y, const float *x, size_t n);
/* y = max(x, 0); y may equal x. */
void mer__face_relu(float *y, const float *x, size_t n);

/* Square input of a face-api network from 8-bit RGB pixels (rows `stride` bytes apart): the w x h image
 * padded with zeros to s = max(w, h) (center = 0: padding after, at the bottom/right; center = 1: the
 * padding split with round(d/2) after and the rest before, as face-api's padToSquare), resized to
 * size x size by tf.image.resizeBilinear (computed in double, rounded to f32; skipped when s == size),
 * then (v - mean[ch]) / 255 in f32. out is [size][size][3]. */
void mer__face_prep_input(mer_cpu_ctx *c, float *out, int size, const uint8_t *rgb, int w, int h, size_t stride,
                          int center, const float mean[3]);

#endif
