/* affectgpt_cuda.h - AffectGPT's fusion layers (models/affectgpt.h, spec §4.3) on a CUDA device: the
 * attention pooling without softmax and the time means of the visual and audio features (one kernel,
 * kernels/cuda/cuda_fusion.h), the projectors to the LLM width, and the pre-fusion (multi_video_embs,
 * multi_audio_embs, attention_mlp, fc_att, the mix, multi_llama_proj), as single-row products on
 * cuBLASLt (mer_cuda_gemm_bias). Weights are uploaded from a loaded mer_affectgpt_fusion as bf16 (the
 * fast path: each product's input rounded to bf16 once, f32 accumulation, f32 outputs) or f32 (the
 * exact path: every product in full f32). The two score vectors (video_attention_mlp,
 * audio_attention_mlp: [1, D] each) stay f32 in both, as do the scores, the pooled sums and means
 * before their rounding, hv, ha, attention_mlp's output before its rounding, the mix weights and the
 * three outputs. Widths that are not multiples of 8 are padded with zero columns on the device, so
 * every shape runs.
 *
 * A call copies the features to a pinned staging area, uploads them in one copy, runs the layers
 * (from the second call of a given (n_frames, n_clips) on, as a CUDA graph with both copies inside;
 * MER_CUDA_ENC_GRAPH=0 in the environment, or mer_affectgpt_cuda_set_graph(g, 0), runs them eagerly)
 * and downloads the three rows in one copy. The device context is borrowed (it may be the encoders'
 * context) and must outlive the model; its device buffers come from the context's allocator and are
 * released by mer_affectgpt_cuda_free. A mer_affectgpt_cuda is used by one thread at a time. This
 * header needs no CUDA header; without CUDA in the build every function that can fail returns
 * MER_E_UNSUPPORTED ("built without CUDA"). */
#ifndef MER_MODELS_AFFECTGPT_CUDA_H
#define MER_MODELS_AFFECTGPT_CUDA_H

#include "core/core.h"
#include "core/dtype.h"
#include "models/affectgpt.h"

struct mer_cuda;
typedef struct mer_affectgpt_cuda mer_affectgpt_cuda;

/* Uploads f's weights (f may be freed afterwards) for up to max_frames visual rows and max_clips audio
 * rows a call (1..16384 each), matrices in wtype (MER_DTYPE_BF16 or MER_DTYPE_F32). c: the device
 * context (borrowed). MER_E_ARG for a bad argument, MER_E_UNSUPPORTED for another wtype, MER_E_DEVICE
 * for a CUDA failure. Caller frees with mer_affectgpt_cuda_free. */
mer_status mer_affectgpt_cuda_from_fusion(const mer_affectgpt_fusion *f, struct mer_cuda *c, int max_frames,
                                          int max_clips, mer_dtype wtype, mer_affectgpt_cuda **out, mer_err *err);
void mer_affectgpt_cuda_free(mer_affectgpt_cuda *g);

/* mer_affectgpt_fuse on the device: H [n_frames][d_visual] and A [n_clips][d_audio] (host f32) give
 * out_visual, out_audio and out_multi [d_llm] each (host; any may be NULL: all three are computed, the
 * NULL ones are not copied). Synchronous: returns when the outputs are on the host. MER_E_ARG for a bad
 * count or a NULL input, MER_E_DEVICE for a CUDA failure. */
mer_status mer_affectgpt_cuda_fuse(mer_affectgpt_cuda *g, const float *H, int n_frames, const float *A, int n_clips,
                                   float *out_visual, float *out_audio, float *out_multi, mer_err *err);

/* Graphs on (the default unless MER_CUDA_ENC_GRAPH=0) or off (drops the captured ones). */
void mer_affectgpt_cuda_set_graph(mer_affectgpt_cuda *g, int on);

#endif
