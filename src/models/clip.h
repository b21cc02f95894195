/* clip.h - the CLIP ViT vision tower (HF CLIPVisionModelWithProjection / the vision half of CLIPModel,
 * e.g. openai/clip-vit-large-patch14): patch embedding (conv2d, kernel = stride = patch, no bias), class
 * token, learned position embeddings, `pre_layrnorm`, n_layer pre-LN blocks (self-attention with biases,
 * MLP with quick-GELU), `post_layernorm` on the class token and `visual_projection` (no bias): the
 * image features of get_image_features. Every hidden state can be read out.
 *
 * Shapes: pixels [3][image_size][image_size] (already normalised, see clip_preprocess.h);
 * n_tok = (image_size / patch)^2 + 1; hidden states [n_tok][n_embd], hidden state 0 being the output of
 * pre_layrnorm and hidden state i the output of block i (HF's output_hidden_states); image features
 * [n_proj].
 *
 * A mer_clip is immutable after load and may be shared by threads; a mer_clip_ctx holds the activations
 * of one forward pass (allocated at init, so a forward pass does not allocate) and is used by one thread
 * at a time. */
#ifndef MER_MODELS_CLIP_H
#define MER_MODELS_CLIP_H

#include "core/core.h"
#include "io/hfconfig.h"
#include "io/weights.h"
#include "kernels/kernels.h"
#include "models/wload.h"

typedef struct mer_clip_hparams {
    int n_embd;      /* hidden_size (1024 for ViT-L/14) */
    int n_ff;        /* intermediate_size (4096) */
    int n_layer;     /* num_hidden_layers (24) */
    int n_head;      /* num_attention_heads (16) */
    int image_size;  /* 224 */
    int patch;       /* patch_size (14) */
    int n_channels;  /* 3 */
    int n_proj;      /* projection_dim (768); 0 when the checkpoint has no visual_projection */
    int n_tok;       /* (image_size / patch)^2 + 1 */
    float ln_eps;    /* layer_norm_eps (1e-5) */
    int quick_gelu;  /* hidden_act: 1 quick_gelu, 0 gelu (erf) */
} mer_clip_hparams;

typedef struct mer_clip_layer {
    float *ln1_w, *ln1_b;             /* vision_model.encoder.layers.{i}.layer_norm1 */
    mer_wmat q, k, v, o;              /* .self_attn.{q,k,v,out}_proj.weight [n_embd][n_embd] */
    float *q_b, *k_b, *v_b, *o_b;     /* .self_attn.{q,k,v,out}_proj.bias */
    float *ln2_w, *ln2_b;             /* .layer_norm2 */
    mer_wmat fc1, fc2;                /* .mlp.fc1.weight [n_ff][n_embd], .mlp.fc2.weight [n_embd][n_ff] */
    float *fc1_b, *fc2_b;
} mer_clip_layer;

typedef struct mer_clip {
    mer_clip_hparams hp;
    mer_wmat patch_w;                 /* vision_model.embeddings.patch_embedding.weight [n_embd][3*p*p] */
    float *class_emb;                 /* vision_model.embeddings.class_embedding [n_embd] */
    float *pos_emb;                   /* vision_model.embeddings.position_embedding.weight [n_tok][n_embd] */
    float *pre_ln_w, *pre_ln_b;       /* vision_model.pre_layrnorm */
    float *post_ln_w, *post_ln_b;     /* vision_model.post_layernorm */
    mer_wmat proj;                    /* visual_projection.weight [n_proj][n_embd] (no bias) */
    mer_clip_layer *layers;           /* [n_layer] */
    mer_weights *owned_w;             /* the checkpoint when opened by mer_clip_open, else NULL */
    void **owned;                     /* f32 copies */
    size_t n_owned;
} mer_clip;

/* Reads the hyper-parameters from an HF config.json: the keys of a CLIPVisionConfig at top level, or
 * under "vision_config" for a CLIPModel config (with the top-level projection_dim), with CLIPVisionConfig's
 * defaults for absent keys. */
mer_status mer__clip_hparams(const mer_config *cfg, mer_clip_hparams *hp, mer_err *err);

/* Builds the model over the tensors of w (borrowed: w must outlive the model; tensors of dtype f32, f16
 * or bf16 are used in place, others converted). cfg may be NULL to use w->config. Every tensor's shape
 * is checked against the config: a missing or mis-shaped tensor is MER_E_NOTFOUND / MER_E_SHAPE naming
 * it. Caller frees with mer_clip_free. */
mer_status mer_clip_load(const mer_weights *w, const mer_config *cfg, mer_clip **out, mer_err *err);
/* Opens a checkpoint (an HF directory, or a file with config.json beside it) and loads it; the model
 * owns the checkpoint. */
mer_status mer_clip_open(const char *path, mer_clip **out, mer_err *err);
void mer_clip_free(mer_clip *m);

/* Forward-pass state for images of the model's size. c (borrowed) runs the kernels and must outlive
 * the context. Caller frees with mer_clip_ctx_free. */
typedef struct mer_clip_ctx mer_clip_ctx;
mer_status mer_clip_ctx_init(const mer_clip *m, mer_cpu_ctx *c, mer_clip_ctx **out, mer_err *err);
void mer_clip_ctx_free(mer_clip_ctx *x);

/* What to write out of one forward pass; every pointer may be NULL. */
typedef struct mer_clip_out {
    float *image_embeds;  /* [n_proj]: visual_projection(post_layernorm(CLS of the last block)) */
    float *pooled;        /* [n_embd]: post_layernorm(CLS of the last block) */
    float *const *hidden; /* n_layer + 1 pointers (entries may be NULL): hidden state i [n_tok][n_embd] */
    float *last_hidden;   /* [n_tok][n_embd]: the last block's output (= hidden state n_layer) */
} mer_clip_out;

/* Runs the tower on one image, pixels [n_channels][image_size][image_size]. Blocks after the deepest
 * requested output are skipped. MER_E_ARG if image_embeds is asked of a checkpoint without projection. */
mer_status mer_clip_encode(mer_clip_ctx *x, const float *pixels, const mer_clip_out *out, mer_err *err);

#endif
