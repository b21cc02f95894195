/* hubert_cuda.h - the HuBERT stable-layer-norm encoder (models/hubert.h) on a CUDA device, a batch of
 * equal-length clips at once: the conv feature extractor in a channels-last layout (each conv layer one
 * GEMM, the first over an im2col of the waveform), its layer norms and GELU, the feature projection,
 * the grouped positional conv, the pre-LN blocks (models/enc_cuda.h) and the AffectGPT pooling. Weights
 * are uploaded from a loaded mer_hubert as bf16 (fast path: matmul inputs bf16, f32 accumulation,
 * residual stream f32) or f32 (exact path).
 *
 * The device context is borrowed (may be shared) and must outlive the model; mer_hubert_cuda_free
 * releases the model's device buffers. Used by one thread at a time. This header needs no CUDA header;
 * without CUDA in the build (MER_CUDA=0) every function that can fail returns MER_E_UNSUPPORTED
 * ("built without CUDA"). */
#ifndef MER_MODELS_HUBERT_CUDA_H
#define MER_MODELS_HUBERT_CUDA_H

#include "core/core.h"
#include "core/dtype.h"
#include "models/hubert.h"

struct mer_cuda;
typedef struct mer_hubert_cuda mer_hubert_cuda;

/* Uploads the weights of m (which may be freed afterwards) for batches of up to max_clips clips
 * (1..4096) of up to max_samples samples each, matrices in wtype (MER_DTYPE_BF16 or MER_DTYPE_F32);
 * activation buffers are allocated now. c: the device context (borrowed). Shapes the kernels cannot
 * take are MER_E_UNSUPPORTED. Caller frees with mer_hubert_cuda_free. */
mer_status mer_hubert_cuda_from_model(const mer_hubert *m, struct mer_cuda *c, int max_clips, long max_samples,
                                      mer_dtype wtype, mer_hubert_cuda **out, mer_err *err);
void mer_hubert_cuda_free(mer_hubert_cuda *g);

const mer_hubert_hparams *mer_hubert_cuda_hparams(const mer_hubert_cuda *g);

/* Runs the encoder on n_clips normalised clips (1..max_clips) of clip_len samples each (host,
 * [n_clips][clip_len]) as one batch; out: n_clips entries, entry i receiving clip i's outputs exactly
 * as mer_hubert_encode would write them (host pointers, any may be NULL); *n_frames (may be NULL)
 * receives T. Synchronous. MER_E_ARG for bad counts or a clip too short or longer than max_samples. */
mer_status mer_hubert_cuda_encode(mer_hubert_cuda *g, const float *clips, int n_clips, long clip_len,
                                  const mer_hubert_out *out, int *n_frames, mer_err *err);

/* mer_hubert_pool on the device: the same semantics and output (feats host [n_clips][n_embd]); the
 * clips run as batches of up to max_clips (so n_clips may exceed it), the time means on the device. */
mer_status mer_hubert_cuda_pool(mer_hubert_cuda *g, const float *clips, int n_clips, long clip_len, int layer,
                                int hf5, float *feats, mer_err *err);
/* The pooling's device work runs as a CUDA graph, captured on the second call of each (batch size, clip
 * length, layer, hf5) and replayed after (MER_CUDA_ENC_GRAPH=0 in the environment, or this with on = 0,
 * runs every launch eagerly). */
void mer_hubert_cuda_set_graph(mer_hubert_cuda *g, int on);

/* The same with the clips already in device memory (f32 [n_clips][clip_len], n_clips <= max_clips; for
 * benchmarks that time the network alone, or audio decoded on the device). */
mer_status mer_hubert_cuda_pool_dev(mer_hubert_cuda *g, const float *clips_dev, int n_clips, long clip_len, int layer,
                                    int hf5, float *feats, mer_err *err);

#endif
