/* agpt.h - an AffectGPT model assembled from its parts (CLIP vision, HuBERT, Qwen2 + LoRA, fusion,
 * tokenizer) and the three steps of one sample: visual features, audio features, the answer. Used by
 * `mer infer`; one instance per thread. */
#ifndef MER_PIPELINE_AGPT_H
#define MER_PIPELINE_AGPT_H

#include "models/affectgpt.h"
#include "models/clip.h"
#include "models/hubert.h"
#include "pipeline/prompt.h"

#define MER_AGPT_N_FRAMES 8
#define MER_AGPT_N_CLIPS 8
#define MER_AGPT_SR 16000
#define MER_AGPT_CLIP_S 2

typedef struct mer__agpt {
    mer_threadpool *pool;
    mer_cpu_ctx *cpu;
    mer_clip *clip;
    mer_clip_ctx *clip_ctx;
    mer_hubert *hub;
    mer_hubert_ctx *hub_ctx;
    mer_qwen2 *llm;
    mer_qwen2_ctx *llm_ctx;
    mer_tokenizer *tok;
    mer_weights *ckpt;
    struct mer__bundle *bundle; /* the bundle the parts were loaded from (mer infer --model), or NULL */
    mer_affectgpt_fusion fusion;
    int n_embd, n_visual, n_audio;
    int32_t stop_ids[2];
    size_t n_stop;
    float *pixels; /* [3][S][S] */
} mer__agpt;

/* The tokenizer that goes with an LLM path: <folder>/tokenizer.json for an HF folder, the file itself
 * for a GGUF, the tokenizer.json beside a .safetensors file. Caller frees; NULL when out of memory. */
char *mer__llm_tokenizer_path(const char *llm);

/* Loads every part named in p (clip, hubert, llm, tokenizer, affectgpt; or all of them from p->bundle)
 * and checks that they fit together (the fusion's widths against the encoders and the LLM). Caller frees
 * with mer__agpt_free. */
mer_status mer__agpt_load(const mer_infer_params *p, mer__agpt **out, mer_err *err);
void mer__agpt_free(mer__agpt *a);

/* CLIP image features of n uint8 images [h][w][3] (channel order as given: the reference feeds BGR
 * faces as they are), each through the HF CLIP processor (shortest side to the model's size with PIL
 * bicubic, centre crop): feats [n][n_visual]. */
mer_status mer__agpt_visual(mer__agpt *a, const uint8_t *const *imgs, int w, int h, int n, float *feats, mer_err *err);

/* HuBERT features of n clips [n][clip_len] (normalised in place, jointly unless per_clip): the mean of
 * the last 4 hidden states and over time, feats [n][n_audio]. */
mer_status mer__agpt_audio(mer__agpt *a, float *clips, int n, long clip_len, int per_clip, int hf5, float *feats,
                           mer_err *err);

/* The prompt with the spliced fused embeddings, generation and the answer clean-up (spec §4.5, §4.8).
 * Also returns the prompt's token count and the generated ids count when the pointers are non-NULL. */
mer_status mer__agpt_answer(mer__agpt *a, mer_visual_input input, const char *subtitle, const char *question,
                            const float *visual, int n_frames, const float *audio, int n_clips,
                            const mer_generate_params *gp, mer_buf *out, mer_err *err);

/* The pieces of mer__agpt_answer, exposed for parity tests: the fused embeddings [3][n_embd] (visual,
 * audio, multi) and the prompt embeddings [*n_tok][n_embd] (caller frees *embd and *ids). */
mer_status mer__agpt_prompt_embd(mer__agpt *a, mer_visual_input input, const char *subtitle, const char *question,
                                 const float *fused, float **embd, int32_t **ids, size_t *n_tok, mer_err *err);

#endif
