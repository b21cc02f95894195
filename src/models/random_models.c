/* random_models.c - real-shape networks with random weights, built in memory (random_models.h). */
#include "models/random_models.h"

#include <pthread.h>
#include <string.h>

const char *const mer__clip_l14_config =
    "{\"hidden_size\":1024,\"intermediate_size\":4096,\"num_hidden_layers\":24,\"num_attention_heads\":16,"
    "\"image_size\":224,\"patch_size\":14,\"projection_dim\":768,\"hidden_act\":\"quick_gelu\",\"layer_norm_eps\":1e-5}";
const char *const mer__hubert_large_config =
    "{\"hidden_size\":1024,\"num_hidden_layers\":24,\"num_attention_heads\":16,\"intermediate_size\":4096,"
    "\"conv_dim\":[512,512,512,512,512,512,512],\"conv_kernel\":[10,3,3,3,3,2,2],\"conv_stride\":[5,2,2,2,2,2,2],"
    "\"feat_extract_norm\":\"layer\",\"do_stable_layer_norm\":true,\"conv_bias\":true,\"num_conv_pos_embeddings\":128,"
    "\"num_conv_pos_embedding_groups\":16,\"hidden_act\":\"gelu\",\"feat_extract_activation\":\"gelu\",\"layer_norm_eps\":1e-5}";

// --- a mer_weights whose buffers it owns -------------------------------------------------------------

typedef struct owned {
    void **p;
    size_t n, cap;
    size_t bytes;
} owned;

static void close_owned(mer_weights *w) {
    owned *o = w->impl;
    if (!o) return;
    for (size_t i = 0; i < o->n; i++) free(o->p[i]);
    free(o->p);
    free(o);
}

static mer_status start(const char *what, mer_weights **out, mer_err *err) {
    mer_status st = mer__weights_new(MER_WFORMAT_SAFETENSORS, what, out, err);
    if (st) return st;
    owned *o = calloc(1, sizeof *o);
    if (!o) {
        mer_weights_close(*out);
        *out = NULL;
        return mer__errf(err, MER_E_NOMEM, "%s: out of memory", what);
    }
    (*out)->impl = o;
    (*out)->close_impl = close_owned;
    return MER_OK;
}

static uint64_t xs(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static float uni(uint64_t *s) { return (float)((double)(xs(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

/* Random contents of elements (or q8_0/q4_0 blocks) [i0, i1) of a tensor of dtype t, from the PRNG state
 * *s (scale 0: ones). */
static void fill(void *p, mer_dtype t, size_t i0, size_t i1, float scale, uint64_t *s) {
    if (t == MER_DTYPE_F32) {
        float *f = p;
        for (size_t i = i0; i < i1; i++) f[i] = scale == 0 ? 1.0f : scale * uni(s);
    } else if (t == MER_DTYPE_F16 || t == MER_DTYPE_BF16) {
        uint16_t *h = p;
        for (size_t i = i0; i < i1; i++) {
            float v = scale == 0 ? 1.0f : scale * uni(s);
            h[i] = t == MER_DTYPE_F16 ? mer_fp32_to_fp16(v) : mer_fp32_to_bf16(v);
        }
    } else { /* q8_0 / q4_0: random quants, scales giving values of about `scale` */
        uint8_t *b = p;
        size_t bb = mer_dtype_block_bytes(t);
        uint16_t d = mer_fp32_to_fp16(scale / (t == MER_DTYPE_Q8_0 ? 127.0f : 8.0f));
        for (size_t i = i0; i < i1; i++) {
            memcpy(b + i * bb, &d, 2);
            for (size_t k = 2; k < bb; k += 8) {
                uint64_t r = xs(s);
                memcpy(b + i * bb + k, &r, bb - k < 8 ? bb - k : 8);
            }
        }
    }
}

typedef struct fill_part {
    void *p;
    mer_dtype t;
    size_t i0, i1;
    float scale;
    uint64_t state;
} fill_part;

static void *fill_thread(void *ud) {
    fill_part *f = ud;
    fill(f->p, f->t, f->i0, f->i1, f->scale, &f->state);
    return NULL;
}

#define FILL_PARALLEL_MIN ((size_t)1 << 24) /* units from which a tensor is filled by threads (CLIP-L and HuBERT-L
                                              * have none: their values are those of the serial fill) */
#define FILL_THREADS 16

/* Fills n units: small tensors from *seed in order; large ones in FILL_THREADS parts at once, part c from its
 * own state (splitmix64 of one draw of *seed and c), so the contents depend only on the seed. */
static void fill_all(void *p, mer_dtype t, size_t n, float scale, uint64_t *seed) {
    if (n < FILL_PARALLEL_MIN) {
        fill(p, t, 0, n, scale, seed);
        return;
    }
    fill_part part[FILL_THREADS];
    pthread_t th[FILL_THREADS];
    int started[FILL_THREADS] = {0};
    uint64_t base = xs(seed);
    for (int c = 0; c < FILL_THREADS; c++) {
        uint64_t z = base + 0x9e3779b97f4a7c15ULL * (uint64_t)(c + 1);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        part[c] = (fill_part){p, t, n * (size_t)c / FILL_THREADS, n * (size_t)(c + 1) / FILL_THREADS, scale,
                              (z ^ (z >> 31)) | 1};
        started[c] = pthread_create(&th[c], NULL, fill_thread, &part[c]) == 0;
        if (!started[c]) fill_thread(&part[c]); /* no thread: in this one */
    }
    for (int c = 0; c < FILL_THREADS; c++)
        if (started[c]) pthread_join(th[c], NULL);
}

/* Adds tensor `name` [shape] of dtype t with random contents (scale 0: ones). */
static mer_status add(mer_weights *w, uint64_t *seed, const char *name, mer_dtype t, int nd, const int64_t *shape,
                      float scale, mer_err *err) {
    owned *o = w->impl;
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)shape[i];
    size_t row = (size_t)shape[nd - 1], nbytes = mer_dtype_row_bytes(t, row) * (n / row);
    void *p = aligned_alloc(64, (nbytes + 63) / 64 * 64);
    if (!p) return mer__errf(err, MER_E_NOMEM, "%s: out of memory for %s", w->path, name);
    int blocks = t != MER_DTYPE_F32 && t != MER_DTYPE_F16 && t != MER_DTYPE_BF16;
    fill_all(p, t, blocks ? nbytes / mer_dtype_block_bytes(t) : n, scale, seed);
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        void **q = realloc(o->p, cap * sizeof *q);
        if (!q) { free(p); return mer__errf(err, MER_E_NOMEM, "%s: out of memory", w->path); }
        o->p = q;
        o->cap = cap;
    }
    o->p[o->n++] = p;
    o->bytes += nbytes;
    return mer__weights_add_tensor(w, name, strlen(name), t, nd, shape, p, nbytes, err);
}

#define ADD1(nm, a, sc) do { int64_t s_[1] = {a}; if ((st = add(w, &seed, nm, MER_DTYPE_F32, 1, s_, sc, err))) goto fail; } while (0)
#define ADD2(nm, a, b, sc) do { int64_t s_[2] = {a, b}; if ((st = add(w, &seed, nm, MER_DTYPE_F32, 2, s_, sc, err))) goto fail; } while (0)
#define ADD3(nm, a, b, c, sc) do { int64_t s_[3] = {a, b, c}; if ((st = add(w, &seed, nm, MER_DTYPE_F32, 3, s_, sc, err))) goto fail; } while (0)

// --- CLIP ViT-L/14 and HuBERT-large ------------------------------------------------------------------

mer_status mer__random_clip_l14(uint64_t seed, mer_weights **out, mer_err *err) {
    mer_weights *w = NULL;
    mer_status st = start("random CLIP ViT-L/14", &w, err);
    if (st) return st;
    const int D = 1024, F = 4096, L = 24;
    char n[160];
    static const char *const lin[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    ADD1("vision_model.embeddings.class_embedding", D, 0.02f);
    {
        int64_t s4[4] = {D, 3, 14, 14};
        if ((st = add(w, &seed, "vision_model.embeddings.patch_embedding.weight", MER_DTYPE_F32, 4, s4, 0.02f, err))) goto fail;
    }
    ADD2("vision_model.embeddings.position_embedding.weight", 257, D, 0.02f);
    ADD1("vision_model.pre_layrnorm.weight", D, 0);
    ADD1("vision_model.pre_layrnorm.bias", D, 0.01f);
    ADD1("vision_model.post_layernorm.weight", D, 0);
    ADD1("vision_model.post_layernorm.bias", D, 0.01f);
    ADD2("visual_projection.weight", 768, D, 0.02f);
    for (int i = 0; i < L; i++) {
        for (int k = 0; k < 4; k++) {
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.self_attn.%s.weight", i, lin[k]);
            ADD2(n, D, D, 0.02f);
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.self_attn.%s.bias", i, lin[k]);
            ADD1(n, D, 0.01f);
        }
        for (int k = 1; k <= 2; k++) {
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.layer_norm%d.weight", i, k);
            ADD1(n, D, 0);
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.layer_norm%d.bias", i, k);
            ADD1(n, D, 0.01f);
        }
        snprintf(n, sizeof n, "vision_model.encoder.layers.%d.mlp.fc1.weight", i);
        ADD2(n, F, D, 0.02f);
        snprintf(n, sizeof n, "vision_model.encoder.layers.%d.mlp.fc1.bias", i);
        ADD1(n, F, 0.01f);
        snprintf(n, sizeof n, "vision_model.encoder.layers.%d.mlp.fc2.weight", i);
        ADD2(n, D, F, 0.02f);
        snprintf(n, sizeof n, "vision_model.encoder.layers.%d.mlp.fc2.bias", i);
        ADD1(n, D, 0.01f);
    }
    if ((st = mer__weights_finish(w, err))) goto fail;
    *out = w;
    return MER_OK;
fail:
    mer_weights_close(w);
    return st;
}

mer_status mer__random_hubert_large(uint64_t seed, mer_weights **out, mer_err *err) {
    mer_weights *w = NULL;
    mer_status st = start("random chinese-hubert-large", &w, err);
    if (st) return st;
    const int D = 1024, F = 4096, L = 24, C = 512;
    static const int K[7] = {10, 3, 3, 3, 3, 2, 2};
    static const char *const lin[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    static const char *const ln[2] = {"layer_norm", "final_layer_norm"};
    char n[160];
    for (int i = 0; i < 7; i++) {
        snprintf(n, sizeof n, "feature_extractor.conv_layers.%d.conv.weight", i);
        ADD3(n, C, i ? C : 1, K[i], 0.05f);
        snprintf(n, sizeof n, "feature_extractor.conv_layers.%d.conv.bias", i);
        ADD1(n, C, 0.01f);
        snprintf(n, sizeof n, "feature_extractor.conv_layers.%d.layer_norm.weight", i);
        ADD1(n, C, 0);
        snprintf(n, sizeof n, "feature_extractor.conv_layers.%d.layer_norm.bias", i);
        ADD1(n, C, 0.01f);
    }
    ADD1("feature_projection.layer_norm.weight", C, 0);
    ADD1("feature_projection.layer_norm.bias", C, 0.01f);
    ADD2("feature_projection.projection.weight", D, C, 0.03f);
    ADD1("feature_projection.projection.bias", D, 0.01f);
    ADD3("encoder.pos_conv_embed.conv.weight_g", 1, 1, 128, 0.5f);
    ADD3("encoder.pos_conv_embed.conv.weight_v", D, 64, 128, 0.02f);
    ADD1("encoder.pos_conv_embed.conv.bias", D, 0.01f);
    ADD1("encoder.layer_norm.weight", D, 0);
    ADD1("encoder.layer_norm.bias", D, 0.01f);
    for (int i = 0; i < L; i++) {
        for (int k = 0; k < 4; k++) {
            snprintf(n, sizeof n, "encoder.layers.%d.attention.%s.weight", i, lin[k]);
            ADD2(n, D, D, 0.02f);
            snprintf(n, sizeof n, "encoder.layers.%d.attention.%s.bias", i, lin[k]);
            ADD1(n, D, 0.01f);
        }
        for (int k = 0; k < 2; k++) {
            snprintf(n, sizeof n, "encoder.layers.%d.%s.weight", i, ln[k]);
            ADD1(n, D, 0);
            snprintf(n, sizeof n, "encoder.layers.%d.%s.bias", i, ln[k]);
            ADD1(n, D, 0.01f);
        }
        snprintf(n, sizeof n, "encoder.layers.%d.feed_forward.intermediate_dense.weight", i);
        ADD2(n, F, D, 0.02f);
        snprintf(n, sizeof n, "encoder.layers.%d.feed_forward.intermediate_dense.bias", i);
        ADD1(n, F, 0.01f);
        snprintf(n, sizeof n, "encoder.layers.%d.feed_forward.output_dense.weight", i);
        ADD2(n, D, F, 0.02f);
        snprintf(n, sizeof n, "encoder.layers.%d.feed_forward.output_dense.bias", i);
        ADD1(n, D, 0.01f);
    }
    if ((st = mer__weights_finish(w, err))) goto fail;
    *out = w;
    return MER_OK;
fail:
    mer_weights_close(w);
    return st;
}

mer_status mer__random_fusion(uint64_t seed, int dv, int da, int d, mer_weights **out, mer_err *err) {
    mer_weights *w = NULL;
    mer_status st = start("random AffectGPT fusion", &w, err);
    if (st) return st;
    struct { const char *name; int o, i; } L[] = {
        {"affectgpt_proj", d, dv}, {"video_attention_mlp", 1, dv}, {"audio_llama_proj", d, da},
        {"audio_attention_mlp", 1, da}, {"multi_video_embs", da, dv}, {"multi_audio_embs", da, da},
        {"attention_mlp", da, 2 * da}, {"fc_att", 2, da}, {"multi_llama_proj", d, da},
    };
    char n[128];
    for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) {
        snprintf(n, sizeof n, "%s.weight", L[k].name);
        ADD2(n, L[k].o, L[k].i, 0.02f);
        snprintf(n, sizeof n, "%s.bias", L[k].name);
        ADD1(n, L[k].o, 0.01f);
    }
    if ((st = mer__weights_finish(w, err))) goto fail;
    *out = w;
    return MER_OK;
fail:
    mer_weights_close(w);
    return st;
}

// --- Qwen2 -------------------------------------------------------------------------------------------

void mer__qwen25_7b_hp(mer__qwen2_hp *hp) {
    memset(hp, 0, sizeof *hp);
    hp->n_vocab = 152064;
    hp->n_embd = 3584;
    hp->n_layer = 28;
    hp->n_head = 28;
    hp->n_kv_head = 4;
    hp->head_dim = 128;
    hp->n_ff = 18944;
    hp->n_ctx_train = 32768;
    hp->rope_theta = 1000000.0f;
    hp->rms_eps = 1e-6f;
    hp->tied = 0;
}

mer_status mer__random_qwen2(const mer__qwen2_hp *hp, mer_dtype t, uint64_t seed, mer_qwen2 **out, size_t *bytes,
                             mer_err *err) {
    *out = NULL;
    mer_weights *w = NULL;
    mer_status st = start("random Qwen2", &w, err);
    if (st) return st;
    char n[160];
    int64_t sv[2] = {hp->n_vocab, hp->n_embd};
    if ((st = add(w, &seed, "model.embed_tokens.weight", t, 2, sv, 0.02f, err))) goto fail;
    if (!hp->tied && (st = add(w, &seed, "lm_head.weight", t, 2, sv, 0.02f, err))) goto fail;
    ADD1("model.norm.weight", hp->n_embd, 0);
    for (int i = 0; i < hp->n_layer; i++) {
        snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", i);
        ADD1(n, hp->n_embd, 0);
        snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", i);
        ADD1(n, hp->n_embd, 0);
        for (int p = 0; p < MER__N_PROJ; p++) {
            int n_out, n_in;
            mer__qwen2_proj_shape(hp, p, &n_out, &n_in);
            int64_t s2[2] = {n_out, n_in};
            snprintf(n, sizeof n, "model.layers.%d.%s.weight", i, mer__qwen2_proj_name(p));
            if ((st = add(w, &seed, n, t, 2, s2, 0.02f, err))) goto fail;
            if (p <= MER__V) {
                snprintf(n, sizeof n, "model.layers.%d.%s.bias", i, mer__qwen2_proj_name(p));
                ADD1(n, n_out, 0.01f);
            }
        }
    }
    if (bytes) *bytes = ((owned *)w->impl)->bytes;
    if ((st = mer__weights_finish(w, err))) goto fail;
    return mer__qwen2_from_weights(w, hp, "the random model's shape", NULL, out, err); /* takes w */
fail:
    mer_weights_close(w);
    return st;
}
