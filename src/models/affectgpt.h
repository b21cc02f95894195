/* affectgpt.h - AffectGPT's fusion ("bestfusion", spec §4.3): attention-weighted pooling of the 8 frame
 * features and of the 8 audio-clip features WITHOUT softmax (a quirk of the reference), the projectors
 * to the LLM width, and the multimodal pre-fusion (2·Dm → Dh → 2 weights, no activation). Produces the
 * three embeddings spliced into the prompt at <FaceHere>/<FrameHere>, <AudioHere> and <MultiHere>.
 *
 * Weights come from the trainable-parameter state dict of an AffectGPT checkpoint (the `model` dict of
 * checkpoint_*.pth), under these names (PyTorch Linear, W [out, in]):
 *   video_attention_mlp [1, Dv]      affectgpt_proj [D, Dv]
 *   audio_attention_mlp [1, Da]      audio_llama_proj [D, Da]
 *   multi_video_embs [Dm, Dv]        multi_audio_embs [Dm, Da]
 *   attention_mlp [Dh, 2·Dm]         fc_att [2, Dh]          multi_llama_proj [D, Dm]
 * each with a .weight and a .bias. All are held in f32. Immutable after load; shareable. */
#ifndef MER_MODELS_AFFECTGPT_H
#define MER_MODELS_AFFECTGPT_H

#include "io/weights.h"
#include "kernels/kernels.h"

typedef struct mer_linear {
    float *w; /* [n_out, n_in] */
    float *b; /* [n_out] */
    int n_in, n_out;
} mer_linear;

typedef struct mer_affectgpt_fusion {
    int d_visual, d_audio, d_multi, d_hidden, d_llm;
    mer_linear video_att, video_proj, audio_att, audio_proj, multi_video, multi_audio, att_mlp, fc_att, multi_proj;
} mer_affectgpt_fusion;

/* Loads the fusion weights from w, under `prefix` (e.g. "" or "model."). Shapes are checked against
 * each other; a missing or mis-shaped tensor is an error naming it. Caller frees with
 * mer_affectgpt_fusion_free. */
mer_status mer_affectgpt_fusion_load(const mer_weights *w, const char *prefix, mer_affectgpt_fusion *f,
                                     mer_err *err);
void mer_affectgpt_fusion_free(mer_affectgpt_fusion *f);

/* Runs the fusion on visual features H [n_frames, Dv] and audio features A [n_clips, Da]:
 *   out_visual = affectgpt_proj(sum_t video_attention_mlp(H)_t * H_t)       [D]
 *   out_audio  = audio_llama_proj(sum_t audio_attention_mlp(A)_t * A_t)     [D]
 *   out_multi  = multi_llama_proj(w0*hv + w1*ha), hv = multi_video_embs(mean_t H),
 *                ha = multi_audio_embs(mean_t A), [w0 w1] = fc_att(attention_mlp([hv, ha]))   [D]
 * Any output may be NULL (not computed). Accumulation is in f64 for the sums over time, then f32. */
mer_status mer_affectgpt_fuse(const mer_affectgpt_fusion *f, mer_cpu_ctx *ctx, const float *H, int n_frames,
                              const float *A, int n_clips, float *out_visual, float *out_audio, float *out_multi,
                              mer_err *err);

#endif
