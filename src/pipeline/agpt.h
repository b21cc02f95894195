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
    mer_qwen2_ctx *llm_ctx; /* the single-sample context (made at load; see mer__agpt_llm_ctx) */
    int n_threads;
    mer_tokenizer *tok;
    mer_weights *ckpt;
    struct mer__bundle *bundle; /* the bundle the parts were loaded from (mer infer --model), or NULL */
    mer_affectgpt_fusion fusion;
    int n_embd, n_visual, n_audio;
    int32_t stop_ids[2];
    size_t n_stop;
    float *pixels; /* [3][S][S] */
    /* mer_infer_params.device resolved to CUDA: CLIP, HuBERT and the fusion layers on one device context
     * (a batch of 8 frames, a batch of 8 clips, their fusion: models/affectgpt_cuda.h, in the encoders'
     * dtype); the LLM runs on its own device context (mer_qwen2_params.device). NULL on the CPU. */
    struct mer_cuda *gpu;
    struct mer_clip_cuda *clip_g;
    struct mer_hubert_cuda *hub_g;
    struct mer_affectgpt_cuda *fusion_g;
} mer__agpt;

/* The single-sample LLM context (2048 positions), made again when it was dropped. */
mer_status mer__agpt_llm_ctx(mer__agpt *a, mer_qwen2_ctx **out, mer_err *err);
/* Frees the single-sample context: its KV cache (and, on the device, its sequence, so that a batch of
 * p->batch slots fits the n_seq the model was loaded with). */
void mer__agpt_drop_llm_ctx(mer__agpt *a);

/* 1 when the encoders run on a CUDA device (mer_infer_params.device), 0 on the CPU. */
int mer__agpt_on_device(const mer__agpt *a);

/* mer_infer_run with the models already loaded (a is borrowed: benchmarks build it in memory); p's model
 * paths only name the run in the store's identity. */
mer_status mer__infer_run_agpt(const mer_infer_params *p, mer__agpt *a, const char *out_npz,
                               mer_job_summary *summary, mer_err *err);

/* The tokenizer that goes with an LLM path: <folder>/tokenizer.json for an HF folder, the file itself
 * for a GGUF, the tokenizer.json beside a .safetensors file. Caller frees; NULL when out of memory. */
char *mer__llm_tokenizer_path(const char *llm);

/* Loads every part named in p (clip, hubert, llm, tokenizer, affectgpt; or all of them from p->bundle)
 * and checks that they fit together (the fusion's widths against the encoders and the LLM). On a CUDA
 * device (p->device) the encoders and the LLM are uploaded (bf16; f32 when p->wtype is "f32"), the LLM
 * with room for p->batch sequences of 2048 positions; the encoders follow the LLM, and under
 * MER_DEVICE_AUTO a model the device does not take stays on the CPU. Caller frees with mer__agpt_free. */
mer_status mer__agpt_load(const mer_infer_params *p, mer__agpt **out, mer_err *err);

/* An AffectGPT from parts already in memory (benchmarks: models/random_models.h). Takes ownership of
 * clip, hub and llm (freed by mer__agpt_free, also on failure) and borrows fusion_w (read during the call)
 * and tok_path's file; p gives the threads, device, wtype and batch as for mer__agpt_load. */
mer_status mer__agpt_from_parts(const mer_infer_params *p, mer_clip *clip, mer_hubert *hub, mer_qwen2 *llm,
                                const mer_weights *fusion_w, const char *tok_path, mer__agpt **out, mer_err *err);
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

// --- the stages of one sample, as the batched pipeline runs them (pipeline/infer.c) -------------------

/* The HF CLIP processor on n uint8 images [h][w][3] (shortest side to the model's size with PIL bicubic,
 * centre crop, CLIP mean/std): pixels [n][3][S][S]. Reads only a's hyper-parameters: safe on another
 * thread than the one running a's models. */
mer_status mer__agpt_pixels(const mer__agpt *a, const uint8_t *const *imgs, int w, int h, int n, float *pixels,
                            mer_err *err);
/* The images of a sample to CLIP pixels, one image per part on pool (may be NULL: in order on the
 * caller), so the results do not depend on it. With faces (n_faces crops [H][W][3], uint8): crop idx[i]
 * resized to 224 x 224 with cv2's INTER_LINEAR (BGR turned to RGB when rgb) into imgs[i]; without, imgs
 * [n][224][224][3] are taken as they are. Then mer__agpt_pixels: pixels [n][3][S][S]. The first failing
 * image's error is returned. Safe on another thread than the one running a's models. */
mer_status mer__agpt_images(const mer__agpt *a, mer_threadpool *pool, const uint8_t *faces, const int64_t *idx, int H,
                            int W, int rgb, int n, uint8_t *imgs, float *pixels, mer_err *err);
/* CLIP image features of n preprocessed images [n][3][S][S]: feats [n][n_visual]. */
mer_status mer__agpt_clip(mer__agpt *a, const float *pixels, int n, float *feats, mer_err *err);
/* HuBERT features of n clips [n][clip_len] already normalised (mer_hubert_normalize): the mean of the
 * last 4 hidden states and over time, feats [n][n_audio]. */
mer_status mer__agpt_hubert(mer__agpt *a, const float *clips, int n, long clip_len, int hf5, float *feats,
                            mer_err *err);
/* The fusion of one sample's features (visual [n_frames][n_visual], audio [n_clips][n_audio]): fused
 * [3][n_embd] (visual, audio, multi), on the device when a->fusion_g is there (up to 8 frames and 8
 * clips; more run on the CPU), else on the CPU. */
mer_status mer__agpt_fuse(mer__agpt *a, const float *visual, int n_frames, const float *audio, int n_clips,
                          float *fused, mer_err *err);
/* The fusion and the prompt embeddings of one sample, cut as Chat.answer_sample cuts a prompt that leaves
 * no room for max_new_tokens in 2000 positions (its last 800 tokens kept): *embd [*n_tok][n_embd]
 * (caller frees). */
mer_status mer__agpt_prompt(mer__agpt *a, mer_visual_input input, const char *subtitle, const char *question,
                            const float *visual, int n_frames, const float *audio, int n_clips, int max_new_tokens,
                            float **embd, size_t *n_tok, mer_err *err);
/* The reference's generation settings on top of g's sampling and lengths: the stop ids (<|im_end|>,
 * <|endoftext|>), the stop string "###", special tokens kept, at least one new token. */
void mer__agpt_gen_params(const mer__agpt *a, mer_generate_params *g);
/* The answer from generated ids: cut after the token that completes the first "###" (what
 * mer_qwen2_generate's stop string does, for generators without stop strings), a stop id ends it too;
 * decoded with special tokens kept and cleaned as the reference does (spec §4.8). Appends to out. */
mer_status mer__agpt_answer_ids(mer__agpt *a, const int32_t *ids, size_t n_ids, mer_buf *out, mer_err *err);

/* The pieces of mer__agpt_answer, exposed for parity tests: the fused embeddings [3][n_embd] (visual,
 * audio, multi) and the prompt embeddings [*n_tok][n_embd] (caller frees *embd and *ids). */
mer_status mer__agpt_prompt_embd(mer__agpt *a, mer_visual_input input, const char *subtitle, const char *question,
                                 const float *fused, float **embd, int32_t **ids, size_t *n_tok, mer_err *err);

#endif
