/* clip_cuda.h - the CLIP ViT vision tower (models/clip.h) on a CUDA device, a batch of images at once:
 * patch embedding (im2col + GEMM), class token and positions, pre_layrnorm, the pre-LN blocks
 * (models/enc_cuda.h: fused q/k/v projection, non-causal attention, quick-GELU or GELU MLP), post-LN
 * on the class token and the projection. Weights are uploaded from a loaded mer_clip as bf16 (the fast
 * path: matmul inputs bf16, f32 accumulation, residual stream f32) or f32 (the exact path: everything
 * f32, full-f32 cuBLASLt matmuls, for parity work).
 *
 * The device context is borrowed (it may be shared with other device models, e.g. the Qwen2 decoder)
 * and must outlive the model; the model's device buffers come from its allocator and are released by
 * mer_clip_cuda_free. A mer_clip_cuda is used by one thread at a time. This header needs no CUDA
 * header; without CUDA in the build (MER_CUDA=0) every function that can fail returns
 * MER_E_UNSUPPORTED ("built without CUDA"). */
#ifndef MER_MODELS_CLIP_CUDA_H
#define MER_MODELS_CLIP_CUDA_H

#include "core/core.h"
#include "core/dtype.h"
#include "models/clip.h"

struct mer_cuda;
typedef struct mer_clip_cuda mer_clip_cuda;

/* Uploads the weights of m (which may be freed afterwards) for batches of up to max_images images
 * (1..4096), with matrices in wtype (MER_DTYPE_BF16 or MER_DTYPE_F32) and the activation buffers for
 * max_images images allocated now. c: the device context (borrowed). Shapes the kernels cannot take
 * (n_embd or n_ff not a multiple of 8, head size not a multiple of 8 or above 128) are
 * MER_E_UNSUPPORTED. Caller frees with mer_clip_cuda_free. */
mer_status mer_clip_cuda_from_model(const mer_clip *m, struct mer_cuda *c, int max_images, mer_dtype wtype,
                                    mer_clip_cuda **out, mer_err *err);
void mer_clip_cuda_free(mer_clip_cuda *g);

/* The model's hyper-parameters (those of the mer_clip it came from). */
const mer_clip_hparams *mer_clip_cuda_hparams(const mer_clip_cuda *g);

/* Runs the tower on n images (1..max_images) as one batch: pixels host [n][n_channels][S][S] (already
 * normalised, as mer_clip_encode takes one); out: n entries, entry i receiving image i's outputs
 * exactly as mer_clip_encode would write them (host pointers, any may be NULL; blocks after the deepest
 * requested output of any entry are skipped). Synchronous: returns when the outputs are on the host.
 * MER_E_ARG for a bad n or image_embeds asked of a checkpoint without projection; MER_E_DEVICE for a
 * CUDA failure. */
mer_status mer_clip_cuda_encode(mer_clip_cuda *g, const float *pixels, int n, const mer_clip_out *out,
                                mer_err *err);
/* The same with the pixels already in device memory (f32 [n][n_channels][S][S]; e.g. decoded and
 * normalised on the device, or for benchmarks that time the network alone). */
/* Features-only calls (pooled / image_embeds, no hidden states) run the device work as a CUDA graph,
 * captured on the second call of each batch size and replayed after (MER_CUDA_ENC_GRAPH=0 in the
 * environment, or this with on = 0, runs every launch eagerly). */
void mer_clip_cuda_set_graph(mer_clip_cuda *g, int on);

mer_status mer_clip_cuda_encode_dev(mer_clip_cuda *g, const float *pixels_dev, int n, const mer_clip_out *out,
                                    mer_err *err);

#endif
