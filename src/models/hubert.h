/* hubert.h - HuBERT / wav2vec 2.0 "stable layer norm" speech encoder (HF HubertModel with
 * feat_extract_norm="layer", do_stable_layer_norm=true, e.g. TencentGameMate/chinese-hubert-large):
 *   n_conv conv layers (Conv1d with bias, layer norm over channels, GELU) -> extract_features [T][C],
 *   feature projection (layer norm + linear) -> [T][n_embd],
 *   + positional conv embedding (grouped Conv1d, kernel K, padding K/2, weight-normed over dim 2, last
 *     frame dropped when K is even, GELU) -> hidden state 0,
 *   n_layer pre-LN blocks (self-attention with biases, GELU MLP): block i's output -> hidden state i+1,
 *   encoder.layer_norm of the last block's output -> last_hidden_state.
 * Input: one clip of raw 16 kHz samples, normalised as Wav2Vec2FeatureExtractor does (see
 * mer_hubert_normalize). Also the AffectGPT audio feature (mean of the last 4 hidden states, then mean
 * over time).
 *
 * A mer_hubert is immutable after load and may be shared by threads; a mer_hubert_ctx holds the
 * activations for clips of up to max_samples samples (allocated at init) and is used by one thread at
 * a time. */
#ifndef MER_MODELS_HUBERT_H
#define MER_MODELS_HUBERT_H

#include "core/core.h"
#include "io/hfconfig.h"
#include "io/weights.h"
#include "kernels/kernels.h"
#include "models/wload.h"

#define MER_HUBERT_MAX_CONV 16

typedef struct mer_hubert_hparams {
    int n_conv;                              /* num_feat_extract_layers (7) */
    int conv_dim[MER_HUBERT_MAX_CONV];       /* conv_dim (512 x 7) */
    int conv_kernel[MER_HUBERT_MAX_CONV];    /* conv_kernel (10,3,3,3,3,2,2) */
    int conv_stride[MER_HUBERT_MAX_CONV];    /* conv_stride (5,2,2,2,2,2,2) */
    int conv_bias;                           /* conv_bias */
    int feat_proj_ln;                        /* feat_proj_layer_norm (true) */
    int n_embd, n_ff, n_layer, n_head;       /* 1024, 4096, 24, 16 for the large model */
    int pos_k, pos_groups;                   /* num_conv_pos_embeddings (128), ..._groups (16) */
    float ln_eps;                            /* layer_norm_eps (1e-5); the conv layers' norms use 1e-5 */
} mer_hubert_hparams;

typedef struct mer_hubert_layer {
    float *ln_w, *ln_b;                      /* encoder.layers.{i}.layer_norm */
    mer_wmat q, k, v, o;                     /* .attention.{q,k,v,out}_proj.weight [n_embd][n_embd] */
    float *q_b, *k_b, *v_b, *o_b;
    float *fln_w, *fln_b;                    /* .final_layer_norm */
    mer_wmat ff1, ff2;                       /* .feed_forward.intermediate_dense / output_dense */
    float *ff1_b, *ff2_b;
} mer_hubert_layer;

typedef struct mer_hubert {
    mer_hubert_hparams hp;
    float *conv_w[MER_HUBERT_MAX_CONV];      /* feature_extractor.conv_layers.{i}.conv.weight [C][Cin][k] */
    float *conv_b[MER_HUBERT_MAX_CONV];      /* .conv.bias or NULL */
    float *conv_ln_w[MER_HUBERT_MAX_CONV], *conv_ln_b[MER_HUBERT_MAX_CONV]; /* .layer_norm */
    float *fp_ln_w, *fp_ln_b;                /* feature_projection.layer_norm (NULL without) */
    mer_wmat fp;                             /* feature_projection.projection.weight [n_embd][C] */
    float *fp_b;
    float *pos_w;                            /* g * v / ||v|| of encoder.pos_conv_embed.conv [D][D/G][K] */
    float *pos_b;
    float *enc_ln_w, *enc_ln_b;              /* encoder.layer_norm */
    mer_hubert_layer *layers;
    mer_weights *owned_w;                    /* the checkpoint when opened by mer_hubert_open */
    void **owned;
    size_t n_owned;
} mer_hubert;

/* Hyper-parameters from an HF HubertConfig / Wav2Vec2Config (defaults of HubertConfig for absent keys).
 * Only feat_extract_norm="layer" with do_stable_layer_norm=true is supported (MER_E_UNSUPPORTED
 * otherwise). */
mer_status mer__hubert_hparams(const mer_config *cfg, mer_hubert_hparams *hp, mer_err *err);

/* Builds the model over w (borrowed: must outlive the model); cfg NULL means w->config. Tensors may be
 * under "" or "hubert." / "wav2vec2."; the positional conv accepts both weight-norm spellings
 * (weight_g/weight_v and parametrizations.weight.original0/1). A missing or mis-shaped tensor is
 * MER_E_NOTFOUND / MER_E_SHAPE naming it. Caller frees with mer_hubert_free. */
mer_status mer_hubert_load(const mer_weights *w, const mer_config *cfg, mer_hubert **out, mer_err *err);
/* Opens an HF directory (or a checkpoint file with config.json beside it); the model owns it. */
mer_status mer_hubert_open(const char *path, mer_hubert **out, mer_err *err);
void mer_hubert_free(mer_hubert *m);

/* Frames produced from n_samples samples (0 when the clip is too short for the conv stack). */
int mer_hubert_n_frames(const mer_hubert_hparams *hp, long n_samples);

/* Wav2Vec2FeatureExtractor's do_normalize, in place on n_clips clips of clip_len samples (contiguous):
 * x = (x - mean) / sqrt(var + 1e-7) with the biased variance, computed in double, either per clip
 * (joint = 0) or over all the clips together (joint = 1: AffectGPT passes its 8 clips as one item). */
void mer_hubert_normalize(float *x, int n_clips, size_t clip_len, int joint);

typedef struct mer_hubert_ctx mer_hubert_ctx;
/* Activations for clips of up to max_samples samples. c (borrowed) must outlive the context. */
mer_status mer_hubert_ctx_init(const mer_hubert *m, mer_cpu_ctx *c, long max_samples, mer_hubert_ctx **out,
                               mer_err *err);
void mer_hubert_ctx_free(mer_hubert_ctx *x);

/* What to write out of one forward pass; every pointer may be NULL. T = mer_hubert_n_frames.
 * Hidden states follow transformers >= 5: hidden state i < n_layer is the input of block i (0: after the
 * positional conv), hidden state n_layer the last block's raw output; last_hidden is that output after
 * encoder.layer_norm. (transformers 4, which AffectGPT ran, put the layer-normed output at index
 * n_layer instead: last_hidden.) */
typedef struct mer_hubert_out {
    float *extract_features; /* [T][conv_dim[n_conv-1]]: the conv stack's output */
    float *const *hidden;    /* n_layer + 1 pointers (entries may be NULL): hidden state i [T][n_embd] */
    float *last_hidden;      /* [T][n_embd]: encoder.layer_norm(hidden state n_layer) */
} mer_hubert_out;

/* Runs the encoder on one normalised clip x[n_samples]; *n_frames (may be NULL) receives T. Layers past
 * the deepest requested output are skipped. MER_E_ARG when n_samples exceeds the context's max or is
 * too short. */
mer_status mer_hubert_encode(mer_hubert_ctx *x, const float *in, long n_samples, const mer_hubert_out *out,
                             int *n_frames, mer_err *err);

/* Utterance-level features of n_clips normalised clips [n_clips][clip_len] into out[n_clips][n_embd]:
 * layer < 0: the AffectGPT feature, the mean of hidden_states[-4:] (all of them when there are fewer)
 * and then over time; layer >= 0: the mean over time of hidden_states[layer] (0..n_layer). With hf5 = 0
 * hidden_states is the list transformers 4 returns (its last entry layer-normed: what AffectGPT
 * computed); with hf5 = 1 the list of transformers >= 5 (the last block's raw output). */
mer_status mer_hubert_pool(mer_hubert_ctx *x, const float *clips, int n_clips, long clip_len, int layer, int hf5,
                           float *out, mer_err *err);

#endif
