/* random_models.h - AffectGPT's networks at their real shapes with random weights, built in memory (no
 * file), for the benchmarks: CLIP ViT-L/14's vision tower, chinese-hubert-large, the fusion layers, and
 * a Qwen2 decoder of any shape in any engine dtype. The weights are uniform noise of a small scale
 * (norm weights 1), so activations stay finite; nothing here is meant to give meaningful outputs. */
#ifndef MER_MODELS_RANDOM_MODELS_H
#define MER_MODELS_RANDOM_MODELS_H

#include "io/hfconfig.h"
#include "io/weights.h"
#include "models/qwen2.h"

/* config.json texts of the real models' shapes (hyper-parameters from openai/clip-vit-large-patch14's
 * vision config and TencentGameMate/chinese-hubert-large's config.json). */
extern const char *const mer__clip_l14_config;
extern const char *const mer__hubert_large_config;

/* Random weights under the HF names of CLIPVisionModelWithProjection (ViT-L/14) / HubertModel (large),
 * f32; the buffers belong to *out (freed by mer_weights_close). */
mer_status mer__random_clip_l14(uint64_t seed, mer_weights **out, mer_err *err);
mer_status mer__random_hubert_large(uint64_t seed, mer_weights **out, mer_err *err);

/* Random AffectGPT fusion layers (the names of models/affectgpt.h) for visual width dv, audio width da
 * and LLM width d (multi width = da, hidden = da, as the released configs). */
mer_status mer__random_fusion(uint64_t seed, int dv, int da, int d, mer_weights **out, mer_err *err);

/* The Qwen2.5-7B-Instruct shape. */
void mer__qwen25_7b_hp(mer__qwen2_hp *hp);

/* A Qwen2 model of shape hp with random matrices stored directly in dtype t (f32 f16 bf16 q8_0 q4_0;
 * block types get random scales and quants), norms 1 and biases small. *bytes (may be NULL) receives
 * the bytes of weights built. Caller frees with mer_qwen2_free. */
mer_status mer__random_qwen2(const mer__qwen2_hp *hp, mer_dtype t, uint64_t seed, mer_qwen2 **out, size_t *bytes,
                             mer_err *err);

#endif
