/* qwen2.h - internals of the Qwen2 decoder shared by its files: the hyper-parameters, the model and
 * context structs, the LoRA adapter, and the helpers the benchmark uses to build a model in memory.
 *
 * Files: qwen2_load.c (configuration, tensor look-up and shape checks, dtype conversion, LoRA merge),
 * qwen2_forward.c (context, KV cache, batched forward), lora.c (PEFT adapters), sampler.c (HF logits
 * processors and the PRNG), generate.c (the generation loop with stop ids/strings and streaming),
 * qwen2_batch.c (several sequences per decode step, continuous-batching generation), qwen2_device.c
 * (a model whose forward runs on the CUDA device: contexts are its KV-cache sequences).
 * The public API is the "Qwen2 decoder" section of include/mer.h.
 *
 * Shapes (HF names; E = n_embd, H = n_head, KV = n_kv_head, d = head_dim, F = n_ff, V = n_vocab):
 *   model.embed_tokens.weight            [V, E]
 *   model.layers.{i}.input_layernorm     [E]
 *   model.layers.{i}.self_attn.q_proj    [H*d, E]  + bias [H*d]
 *   model.layers.{i}.self_attn.k_proj    [KV*d, E] + bias [KV*d]
 *   model.layers.{i}.self_attn.v_proj    [KV*d, E] + bias [KV*d]
 *   model.layers.{i}.self_attn.o_proj    [E, H*d]
 *   model.layers.{i}.post_attention_layernorm [E]
 *   model.layers.{i}.mlp.gate_proj / up_proj  [F, E]
 *   model.layers.{i}.mlp.down_proj       [E, F]
 *   model.norm.weight                    [E]
 *   lm_head.weight                       [V, E] (absent when tied)
 */
#ifndef MER_MODELS_QWEN2_H
#define MER_MODELS_QWEN2_H

#include "core/core.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "io/weights.h"
#include "kernels/kernels.h"

typedef struct mer__qwen2_hp {
    int n_vocab, n_embd, n_layer, n_head, n_kv_head, head_dim, n_ff, n_ctx_train;
    float rope_theta, rms_eps;
    int tied;
} mer__qwen2_hp;

/* The seven projections of a layer, in this order everywhere (LoRA targets too). */
enum { MER__Q, MER__K, MER__V, MER__O, MER__GATE, MER__UP, MER__DOWN, MER__N_PROJ };

/* HF module name of projection p ("self_attn.q_proj", ..., "mlp.down_proj"). */
const char *mer__qwen2_proj_name(int p);
/* Its [n_out, n_in] under hp. */
void mer__qwen2_proj_shape(const mer__qwen2_hp *hp, int p, int *n_out, int *n_in);

/* A weight matrix [n_out, n_in] of an engine dtype (f32 f16 bf16 q8_0 q4_0), rows contiguous. */
typedef struct mer__qmat {
    const void *data;
    mer_dtype dt;
    int n_out, n_in;
} mer__qmat;

/* One LoRA pair: A [r, n_in] and B [n_out, r] in f32 (a == NULL: none). */
typedef struct mer__lora_pair {
    const float *a, *b;
    int r;
} mer__lora_pair;

/* A PEFT adapter read into f32: pairs[layer * MER__N_PROJ + proj]. */
typedef struct mer__lora {
    int n_layer;
    mer__lora_pair *pairs;
    float scale;  /* alpha / r, or the scale given */
    int r_max;    /* largest rank */
    size_t n_pairs;
    float *mem;   /* every A and B */
} mer__lora;

/* Reads the adapter at path for a model of hp (shapes checked against it). scale > 0 is used as given;
 * otherwise it comes from adapter_config.json beside the adapter. Caller frees with mer__lora_free. */
mer_status mer__lora_load(const char *path, double scale, const mer__qwen2_hp *hp, mer__lora **out,
                          mer_err *err);
void mer__lora_free(mer__lora *l);

typedef struct mer__qwen2_layer {
    const float *attn_norm;          /* model.layers.{i}.input_layernorm.weight [E] */
    mer__qmat w[MER__N_PROJ];        /* q k v o gate up down */
    const float *bq, *bk, *bv;       /* self_attn.{q,k,v}_proj.bias */
    const float *ffn_norm;           /* model.layers.{i}.post_attention_layernorm.weight [E] */
    mer__lora_pair lora[MER__N_PROJ]; /* unmerged adapter (a == NULL: none) */
} mer__qwen2_layer;

struct mer_qwen2 {
    mer__qwen2_hp hp;
    mer__qmat tok_embd;       /* model.embed_tokens.weight [V, E] */
    const float *out_norm;    /* model.norm.weight [E] */
    mer__qmat lm_head;        /* lm_head.weight [V, E], or the embedding when tied */
    mer__qwen2_layer *layers; /* [n_layer] */
    mer_weights *w;           /* the checkpoint (tensors point into it unless converted); owned */
    void **owned;             /* buffers allocated for converted tensors */
    size_t n_owned, cap_owned;
    mer__lora *lora;          /* unmerged adapter (owned), or NULL */
    int lora_mode;            /* 0 none, 1 merged, 2 unmerged */
    float lora_scale;
    size_t weight_bytes;      /* read per decode step */
    char wtype[16];           /* dtype of the projections, or "mixed" */
    struct mer__qwen2_dev *dev; /* the device copy the forward runs on (owned), or NULL: the CPU */
};

/* Builds a model from an opened checkpoint and its hyper-parameters (the benchmark passes a
 * mer_weights it made in memory). Takes ownership of w in every case (closed on failure). cfg_name is
 * used in shape messages ("config.json", "GGUF metadata"). */
mer_status mer__qwen2_from_weights(mer_weights *w, const mer__qwen2_hp *hp, const char *cfg_name,
                                   const mer_qwen2_params *params, mer_qwen2 **out, mer_err *err);
/* Reads the hyper-parameters from an HF config.json (accepting rope theta at the top level or under
 * rope_parameters) or from GGUF qwen2.* metadata. */
mer_status mer__qwen2_hp_from_config(const struct mer_config *cfg, mer__qwen2_hp *hp, mer_err *err);
mer_status mer__qwen2_hp_from_gguf(const mer_weights *w, mer__qwen2_hp *hp, mer_err *err);

/* HF checkpoint name of a tensor (layer < 0 for the global ones) and its llama.cpp GGUF name.
 * kind: "embed", "norm", "lm_head", or for a layer "attn_norm", "ffn_norm", "<proj>.weight",
 * "<proj>.bias" with <proj> as mer__qwen2_proj_name. Writes into buf (cap bytes). */
void mer__qwen2_tensor_name(int gguf, int layer, int role, char *buf, size_t cap);
enum {
    MER__T_EMBED = 0, MER__T_NORM, MER__T_LM_HEAD, MER__T_ATTN_NORM, MER__T_FFN_NORM,
    MER__T_PROJ_W = 16, /* + proj: the matrix */
    MER__T_PROJ_B = 32, /* + proj: the bias (q, k, v only) */
};

struct mer_qwen2_ctx {
    const mer_qwen2 *m;
    mer_threadpool *pool;
    mer_cpu_ctx *cpu;
    int own_cpu;         /* pool and cpu are this context's (0: borrowed, see mer__qwen2_ctx_init_on) */
    int n_ctx, n_batch, logits_all;
    int n_past;
    int n_logits;        /* rows in logits from the last forward (0: none yet) */
    float *kv;           /* [n_layer][2][n_ctx][KV*d] */
    mer_arena arena;
    float *x, *xn, *q, *att, *ff_a, *ff_b, *lo_t, *lo_y, *logits;
    int32_t *pos;
    int dev_slot;        /* on a device model (m->dev): its sequence there (-1: none claimed); only logits
                            and the counters above are used, kept equal to the device's */
};

/* Like mer_qwen2_ctx_init, but running on `cpu` (borrowed: it must outlive the context; params->n_threads
 * is ignored). The batch's slots share one pool this way. */
mer_status mer__qwen2_ctx_init_on(const mer_qwen2 *m, const mer_qwen2_ctx_params *params, mer_cpu_ctx *cpu,
                                  mer_qwen2_ctx **out, mer_err *err);

/* Projection p of layer ly: y[n][n_out] (row stride ldy) = x[n][n_in] W^T (+ bias) (+ the unmerged
 * LoRA's scale * (x A^T) B^T, with lo_t [n][r_max] and lo_y [n][max n_out] as scratch). Rows are
 * independent: a row's result does not depend on the others (for a given n on the GEMM side of
 * MER_CPU_*GEMM_MIN_TOK). */
void mer__qwen2_proj(mer_cpu_ctx *cpu, const mer_qwen2 *m, const mer__qwen2_layer *ly, int p, float *y, size_t ldy,
                     const float *x, const float *bias, int n, float *lo_t, float *lo_y);

// --- the device copy (qwen2_device.c) ---------------------------------------------------------------

typedef struct mer__qwen2_dev mer__qwen2_dev;

/* Checks the device fields of params (NULL: defaults) and resolves the device, before anything loads:
 * MER_E_ARG for bad values, MER_E_UNSUPPORTED for CUDA on a build without it, MER_E_DEVICE when no CUDA
 * device (or not the ordinal asked for) is usable. */
mer_status mer__qwen2_dev_check(const mer_qwen2_params *params, mer_device *dev, mer_err *err);
/* Uploads the loaded CPU model m to the CUDA device params name and sets m->dev. */
mer_status mer__qwen2_dev_attach(mer_qwen2 *m, const mer_qwen2_params *params, mer_err *err);
void mer__qwen2_dev_free(mer__qwen2_dev *d);
void mer__qwen2_dev_info(const mer_qwen2 *m, mer_qwen2_info *info);
/* Host memory for n floats of logits downloaded from the device: pinned (faster transfers) in a CUDA
 * build, plain otherwise. NULL when out of memory. Free with mer__qwen2_dev_host_free (NULL: no-op). */
float *mer__qwen2_dev_host_alloc(size_t n);
void mer__qwen2_dev_host_free(float *p);
/* The device model behind m (NULL on the CPU): for benchmarks that time the device step alone. */
struct mer_qwen2_cuda *mer__qwen2_dev_cuda(const mer_qwen2 *m);
/* mer_qwen2_ctx_init on a device model: claims a free sequence (MER_E_RANGE when all n_seq are taken). */
mer_status mer__qwen2_dev_ctx_init(const mer_qwen2 *m, const mer_qwen2_ctx_params *params, mer_qwen2_ctx **out,
                                   mer_err *err);
/* Gives c's sequence back (mer_qwen2_ctx_free calls it). */
void mer__qwen2_dev_ctx_release(mer_qwen2_ctx *c);
void mer__qwen2_dev_reset(mer_qwen2_ctx *c);
/* The forward of n tokens (ids) or n embedding rows (embd [n][n_embd]) on c's sequence; the caller
 * checked room and ids. The logits rows of the CPU path land in c->logits. */
mer_status mer__qwen2_dev_prefill(mer_qwen2_ctx *c, const int32_t *ids, const float *embd, size_t n, mer_err *err);
/* One device decode step over n contexts of the same device model (distinct, checked by the caller):
 * ids[r] appended to ctx[r]; scratch holds [n][n_vocab] floats. */
mer_status mer__qwen2_dev_decode(mer_qwen2_ctx *const *ctx, const int32_t *ids, int n, float *scratch, mer_err *err);

#endif
