/* cuda_enc.h - kernels of the device speech and vision encoders (CLIP ViT, HuBERT), as plain C beside
 * cuda_backend.h (same conventions: asynchronous on the context's stream, one-line errors naming the
 * failing call, *_dev pointers in device memory, bf16 stored as uint16_t, activations of a mer_dtype
 * that is MER_DTYPE_BF16 or MER_DTYPE_F32): LayerNorm with an optional GELU and a row remapping, bias +
 * activation, a GEMM with a fused bias (and residual) epilogue on cuBLASLt, non-causal attention over
 * batches of short sequences (flash-attention-2 on the tensor cores for bf16 and head size 64, a
 * simple exact kernel otherwise), CLIP's patch im2col and embedding assembly, HuBERT's first conv layer
 * fused with its norm and GELU, the grouped positional conv's diagonal reduction, and time sums.
 *
 * This header includes no CUDA header; the functions exist only in builds with MER_CUDA=1. */
#ifndef MER_KERNELS_CUDA_ENC_H
#define MER_KERNELS_CUDA_ENC_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "kernels/cuda/cuda_backend.h"
#include "mer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mer_cuda_act {
    MER_CUDA_ACT_NONE = 0,
    MER_CUDA_ACT_GELU = 1,       /* x/2 (1 + erf(x / sqrt 2)) */
    MER_CUDA_ACT_QUICK_GELU = 2  /* x sigmoid(1.702 x) */
} mer_cuda_act;

/* y[r] = act(LayerNorm(x[src(r)]) * w + b) for r < n_rows, rows of n elements; src(r) = (r / per) *
 * stride + r % per (per = stride: the identity; this reads `per` rows out of every `stride`). x f32 with
 * row stride ldx; y of dtype yt with row stride ldy (y may equal x for an f32 in-place norm when ldy ==
 * ldx and the mapping is the identity). w, b may be NULL (1 and 0). Mean and variance two-pass in f32,
 * biased variance, as torch. */
mer_status mer_cuda_layernorm(mer_cuda *c, void *y_dev, mer_dtype yt, int ldy, const float *x_dev, int ldx,
                              const float *w_dev, const float *b_dev, int n_rows, int n, int per, int stride,
                              float eps, mer_cuda_act act, mer_err *err);

/* x[r][i] = act(x[r][i] + bias[i]) in place, x [n_rows][n] of dtype t (row stride n), bias f32 or NULL. */
mer_status mer_cuda_bias_act(mer_cuda *c, void *x_dev, mer_dtype t, const float *bias_dev, int n_rows, int n,
                             mer_cuda_act act, mer_err *err);

/* y = x @ W^T + bias (+ y when accumulate) on cuBLASLt: W [n_out][n_in] contiguous and x [n_tok] rows of
 * stride ldx, both of dtype wt (bf16, or f32 for a full-f32 product); y of dtype yt (f32, or bf16 with bf16
 * weights; accumulate needs f32 y) with row stride ldy; bias f32 [n_out] or NULL. The bias (and the
 * residual, as beta = 1) run in the GEMM's epilogue where cuBLASLt offers one, else in a second pass.
 * n_in a multiple of 8 (bf16) or 4 (f32), pointers and strides 16-byte aligned. Plans are cached per
 * shape process-wide; the first call of a shape big enough to matter times cuBLASLt's first 8
 * candidate algorithms on its operands (into a scratch output) and keeps the fastest, so it must not
 * be the first call of that shape inside a graph capture if tuning is wanted (it then takes the first
 * candidate untimed). */
mer_status mer_cuda_gemm_bias(mer_cuda *c, void *y_dev, mer_dtype yt, int ldy, const void *x_dev, int ldx,
                              const void *w_dev, mer_dtype wt, const float *bias_dev, int n_tok, int n_in, int n_out,
                              int accumulate, mer_err *err);

/* The same with f32 operands multiplied on the tensor cores in TF32 (inputs rounded to 10-bit mantissas,
 * f32 accumulation): y f32. For the parts of the fast path where bf16 inputs lose too much (HuBERT's conv
 * front end). */
mer_status mer_cuda_gemm_bias_tf32(mer_cuda *c, void *y_dev, int ldy, const float *x_dev, int ldx, const float *w_dev,
                                   const float *bias_dev, int n_tok, int n_in, int n_out, int accumulate, mer_err *err);

/* Non-causal multi-head attention over n_seq sequences of T tokens each (rows b*T .. b*T+T-1): in
 * [n_seq*T] rows of stride ld_in holding q (head h at column h*d), k (at k_off + h*d) and v (at v_off +
 * h*d); out [n_seq*T] rows of stride ld_out, head h at column h*d; dtype t for both. Softmax of
 * scale q.k in f32. bf16 with d = 64 runs a flash-attention-2 kernel on the tensor cores; other cases a
 * warp-per-query kernel in f32 (any d that is a multiple of 8, up to 256). */
mer_status mer_cuda_attn_full(mer_cuda *c, void *out_dev, int ld_out, const void *in_dev, int ld_in, int k_off,
                              int v_off, mer_dtype t, int n_seq, int T, int n_head, int d, float scale, mer_err *err);

/* CLIP patches: cols[b * np + p][j] (dtype t, row stride kp) = img[b][ch][py*P + ky][px*P + kx] with
 * j = (ch*P + ky)*P + kx < C*P*P, and 0 for C*P*P <= j < kp; patches p = py * (S/P) + px; img f32
 * [n_img][C][S][S]. */
mer_status mer_cuda_im2col_patch(mer_cuda *c, void *cols_dev, mer_dtype t, int kp, const float *img_dev, int n_img,
                                 int C, int S, int P, mer_err *err);

/* CLIP embeddings: h[b*T] = cls + pos[0], h[b*T + 1 + p] = patch[b*(T-1) + p] + pos[1 + p]; f32 rows of n. */
mer_status mer_cuda_clip_embed(mer_cuda *c, float *h_dev, const float *patch_dev, const float *cls_dev,
                               const float *pos_dev, int n_img, int T, int n, mer_err *err);

/* HuBERT's first conv layer (one input channel), its LayerNorm over the C channels and GELU, fused:
 * y[b*S + t][:] (dtype yt) = GELU(LN(conv(x_b)[t])) for t < S, conv(x_b)[t][c] = bias[c] + sum_k w[c][k]
 * x[b*len + stride*t + k] (samples at or past len read as 0); w f32 [C][K], bias may be NULL. C*(K+8)
 * floats must fit 48 KiB of shared memory. */
mer_status mer_cuda_conv0_ln_gelu(mer_cuda *c, void *y_dev, mer_dtype yt, const float *x_dev, long len, int n_clips,
                                  int S, const float *w_dev, const float *bias_dev, int C, int K, int stride,
                                  const float *ln_w_dev, const float *ln_b_dev, float eps, mer_err *err);

/* The grouped positional conv's second half: z [n_seq*T][K*cg] f32 holds, for group g, z[r][k*cg + o] =
 * sum_i x[r][g*cg + i] w[g*cg + o][i][k]; this adds h[b*T + t][g*cg + o] += GELU(bias[g*cg + o] +
 * sum_k z[b*T + t + k - pad][k*cg + o]) over the taps that stay inside the sequence, for t < T and
 * o < cg (h f32 rows of ldh). */
mer_status mer_cuda_posconv_reduce(mer_cuda *c, float *h_dev, int ldh, const float *z_dev, const float *bias_dev,
                                   int n_seq, int T, int K, int cg, int g, int pad, mer_err *err);

/* acc[b][i] += scale * sum_{t < T} x[(b*T + t)][i] for b < n_seq, i < n (x f32 rows of n). */
mer_status mer_cuda_time_sum(mer_cuda *c, float *acc_dev, const float *x_dev, int n_seq, int T, int n, float scale,
                             mer_err *err);

#ifdef __cplusplus
}
#endif

#endif
