/* qwen2_cuda.h - the Qwen2 decoder on a CUDA device: weights uploaded as bf16 (from any checkpoint
 * mer_weights reads, or from a CPU model: f32, f16, bf16, q8_0 and q4_0 tensors are converted), as
 * q8_0/q4_0 kept quantised on the device (kernels/cuda/cuda_quant.h: a dequantising GEMV for decode,
 * dequantise + cuBLASLt for prefill), or, for exact parity work, as f32 (then activations and the KV
 * cache are f32 too and every matmul is full-f32 cuBLASLt); a KV cache for n_seq sequences ("slots") on
 * the device, prefill in chunks of n_batch tokens (from token ids or embedding rows), and a decode step
 * for 1..n_seq sequences at once that is captured in a CUDA graph (one graph per batch size, replayed
 * every step).
 *
 * The forward is the HF Qwen2ForCausalLM one: embedding, then per layer RMSNorm -> fused q/k/v
 * projection (+ bias) -> RoPE NeoX -> causal attention with grouped KV heads -> o_proj + residual ->
 * RMSNorm -> silu(gate) * up -> down_proj + residual; final RMSNorm and lm_head. The residual stream is
 * f32, matmul inputs are bf16 (or f32) with f32 accumulation, logits are f32.
 *
 * This header needs no CUDA header. Without CUDA in the build (MER_CUDA=0) every function that can fail
 * returns MER_E_UNSUPPORTED ("built without CUDA"). A model is used by one thread at a time. */
#ifndef MER_MODELS_QWEN2_CUDA_H
#define MER_MODELS_QWEN2_CUDA_H

#include "core/core.h"
#include "core/dtype.h"
#include "io/weights.h"

typedef struct mer_qwen2_cuda_hp {
    int n_vocab, n_embd, n_layer, n_head, n_kv_head, head_dim, n_ff;
    float rope_theta, rms_eps;
    int tied; /* lm_head is the embedding */
} mer_qwen2_cuda_hp;

typedef struct mer_qwen2_cuda_params {
    int device;    /* CUDA device ordinal (0) */
    int n_ctx;     /* KV positions per sequence (4096) */
    int n_seq;     /* sequences held at once = largest decode batch (1) */
    int n_batch;   /* tokens per prefill forward (512) */
    int n_split;   /* key splits of the decode attention, 1..32 (16) */
    int use_graph; /* capture the decode step in a CUDA graph (1) */
    mer_dtype wtype; /* MER_DTYPE_BF16 (default), MER_DTYPE_F32 (weights, activations and KV cache all f32),
                      * MER_DTYPE_Q8_0 or MER_DTYPE_Q4_0 (the seven projections and lm_head stay quantised
                      * on the device, GGUF block values; embedding, activations and KV cache bf16) */
} mer_qwen2_cuda_params;

typedef struct mer_qwen2_cuda mer_qwen2_cuda;
struct mer_cuda;
struct mer_config;
struct mer_qwen2;

mer_qwen2_cuda_params mer_qwen2_cuda_default_params(void);

/* Reads the hyper-parameters from an HF config.json (rope theta at the top level or under
 * rope_parameters; head_dim defaults to hidden_size / num_attention_heads). */
mer_status mer_qwen2_cuda_hp_from_config(const struct mer_config *cfg, mer_qwen2_cuda_hp *hp, mer_err *err);

/* Uploads the model in w (an HF checkpoint with its config.json: HF tensor names) to the device.
 * w is only read during the call. Errors name the checkpoint and the tensor (missing, wrong shape,
 * unsupported dtype) or the CUDA failure. Caller frees with mer_qwen2_cuda_free. */
mer_status mer_qwen2_cuda_load(const mer_weights *w, const mer_qwen2_cuda_params *p, mer_qwen2_cuda **out,
                               mer_err *err);
/* Uploads a CPU model (src/models/qwen2.h: from an HF folder, safetensors or GGUF, any dtype) to the
 * device with weights in p->wtype. q8_0/q4_0 CPU matrices uploaded in their own dtype keep their exact
 * quants; other pairs convert: float -> f32/bf16, float -> q8_0/q4_0 by the reference quantiser
 * (mer_quantize_row), q8_0/q4_0 -> f32/bf16 dequantised, q8_0 <-> q4_0 through f32. An unmerged LoRA
 * adapter of the CPU model (lora_mode 2) is merged into the uploaded matrices: W + scale * B A computed
 * in f32 from the CPU matrix W, then converted to p->wtype (for a float W this is what the CPU's merge at
 * load does; for a q8_0/q4_0 W it quantises W_q + scale * B A again, one rounding more than a merge done
 * before the first quantisation). The embedding goes up as bf16 (f32 when p->wtype is f32); a tied
 * lm_head of a quantised upload is a quantised copy of the embedding. m is only read during the call.
 * Caller frees with mer_qwen2_cuda_free. */
mer_status mer_qwen2_cuda_from_model(const struct mer_qwen2 *m, const mer_qwen2_cuda_params *p, mer_qwen2_cuda **out,
                                     mer_err *err);
/* A model of shape hp with random weights generated on the device (uniform, std 1/sqrt(fan_in); norm
 * weights near 1; seeded): for benchmarks at real shapes without a checkpoint. */
mer_status mer_qwen2_cuda_init_random(const mer_qwen2_cuda_hp *hp, uint64_t seed, const mer_qwen2_cuda_params *p,
                                      mer_qwen2_cuda **out, mer_err *err);
void mer_qwen2_cuda_free(mer_qwen2_cuda *m);

const mer_qwen2_cuda_hp *mer_qwen2_cuda_hparams(const mer_qwen2_cuda *m);
const mer_qwen2_cuda_params *mer_qwen2_cuda_params_of(const mer_qwen2_cuda *m);
/* The device context (stream, allocator, options) the model runs on; owned by the model. */
struct mer_cuda *mer_qwen2_cuda_backend(mer_qwen2_cuda *m);
/* Bytes of weights one decode step reads (every layer's matrices, norms and lm_head). */
size_t mer_qwen2_cuda_step_bytes(const mer_qwen2_cuda *m);
/* Turns graph capture of the decode step on or off (drops captured graphs). */
void mer_qwen2_cuda_set_graph(mer_qwen2_cuda *m, int on);

/* KV positions per sequence (params n_ctx). */
int mer_qwen2_cuda_n_ctx(const mer_qwen2_cuda *m);
/* Sequences held at once (params n_seq): slots are 0 .. n_seq-1. */
int mer_qwen2_cuda_n_seq(const mer_qwen2_cuda *m);
/* Positions held by sequence `slot` (0 after load or reset). */
int mer_qwen2_cuda_n_past(const mer_qwen2_cuda *m, int slot);
/* Empties sequence `slot`. */
mer_status mer_qwen2_cuda_reset(mer_qwen2_cuda *m, int slot, mer_err *err);

/* Appends n tokens to sequence `slot` (in forwards of up to n_batch tokens). logits (may be NULL):
 * [n][n_vocab] when all_logits, else [n_vocab] for the last token. greedy (may be NULL): the argmax of
 * the last token's logits. MER_E_ARG for an id outside the vocabulary or a bad slot, MER_E_RANGE when
 * the sequence would pass n_ctx; nothing is appended on error. */
mer_status mer_qwen2_cuda_prefill(mer_qwen2_cuda *m, int slot, const int32_t *ids, int n, float *logits,
                                  int all_logits, int32_t *greedy, mer_err *err);

/* Like mer_qwen2_cuda_prefill, but the inputs are n host rows of f32 embeddings embd [n][n_embd] (in
 * place of the token-embedding look-up: AffectGPT splices projected audio/video features into the
 * prompt). Rows equal to the token embeddings give the same result as prefill of those tokens. */
mer_status mer_qwen2_cuda_prefill_embd(mer_qwen2_cuda *m, int slot, const float *embd, int n, float *logits,
                                       int all_logits, int32_t *greedy, mer_err *err);

/* One decode step of n sequences (1 <= n <= n_seq): token ids[i] is appended to sequence slots[i]
 * (distinct slots). logits (may be NULL): [n][n_vocab]; greedy (may be NULL): [n] argmax ids. */
mer_status mer_qwen2_cuda_decode(mer_qwen2_cuda *m, int n, const int *slots, const int32_t *ids, float *logits,
                                 int32_t *greedy, mer_err *err);

#endif
