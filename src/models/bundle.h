/* bundle.h - the single-file AffectGPT model ("bundle") that `mer convert` writes and `mer infer --model`
 * reads: one GGUF v3 file whose LLM part is laid out as a llama.cpp qwen2 GGUF (general.architecture qwen2,
 * qwen2.* hyper-parameters, blk.N.* tensors, tokenizer.ggml.*), so that mer's Qwen2 and tokenizer readers
 * (mer_qwen2_load, mer_tokenizer_load, `mer generate`) take the bundle itself as an LLM, plus the other parts
 * under their own names, which those readers ignore (llama.cpp itself refuses a file with tensors its
 * architecture does not use: give it `mer quantize`'s output instead):
 *
 *   clip.<HF name>       CLIP vision tower (vision_model.*, visual_projection.weight)   mer.clip.config
 *   hubert.<HF name>     HuBERT encoder (feature_extractor.*, encoder.*, ...)           mer.hubert.config
 *   affectgpt.<name>     the fusion layers and projectors (f32)
 *   lora.layers.N.<proj>.lora_{A,B}.weight   the AffectGPT LoRA when kept unmerged (f32)
 *
 * Metadata: mer.bundle.version (u32, MER_BUNDLE_VERSION), mer.clip.config / mer.hubert.config (the
 * config.json texts), mer.affectgpt.lora ("merged" or "kept"), mer.affectgpt.lora_scale (f32), and
 * provenance strings mer.source.{clip,hubert,llm,affectgpt,tokenizer}.
 *
 * A HuBERT weight-normed positional conv is stored as weight_g / weight_v (PyTorch's parametrizations
 * spelling, original0 / original1, is renamed: GGUF names hold at most 63 bytes). A "hubert." or
 * "wav2vec2." model prefix in the source checkpoint is dropped. */
#ifndef MER_MODELS_BUNDLE_H
#define MER_MODELS_BUNDLE_H

#include "io/hfconfig.h"
#include "io/weights.h"

#define MER_BUNDLE_VERSION 1
#define MER_BUNDLE_CLIP "clip."
#define MER_BUNDLE_HUBERT "hubert."
#define MER_BUNDLE_FUSION "affectgpt."
#define MER_BUNDLE_LORA "lora."

/* An opened bundle: the file, and views of its encoder parts that the encoder loaders take as they take
 * an HF checkpoint (mer_clip_load(b->clip_w, b->clip_cfg, ...)). Views borrow the file's mapping. */
typedef struct mer__bundle {
    char *path;
    mer_weights *w;                   /* the whole file */
    mer_weights *clip_w, *hubert_w;   /* clip.* / hubert.* with the prefix removed */
    mer_config *clip_cfg, *hubert_cfg;
    float lora_scale;                 /* mer.affectgpt.lora_scale */
    int lora_kept;                    /* 1: lora.* tensors to apply at load (scale lora_scale) */
} mer__bundle;

/* Opens a bundle and checks that every part is there: MER_E_FORMAT "<path>: not a mer bundle ..." when
 * mer.bundle.version is absent, MER_E_UNSUPPORTED for another version, MER_E_NOTFOUND naming the part
 * that is missing (the LLM, the tokenizer, CLIP, HuBERT, the AffectGPT fusion layers, the kept LoRA).
 * The parts themselves are checked by their loaders. Caller frees with mer__bundle_close. */
mer_status mer__bundle_open(const char *path, mer__bundle **out, mer_err *err);
void mer__bundle_close(mer__bundle *b);

/* A view of the tensors of w whose names start with prefix, under the rest of their name. Tensor data
 * points into w (which must outlive the view); `name` becomes the view's path (used in messages).
 * Caller frees with mer_weights_close. */
mer_status mer__weights_view(const mer_weights *w, const char *prefix, const char *name, mer_weights **out,
                             mer_err *err);

#endif
