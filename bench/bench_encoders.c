/* bench_encoders.c - CPU time of AffectGPT's encoders at their real shapes with random weights built in
 * memory (no file): CLIP ViT-L/14's vision tower on one 224x224 image (get_image_features) and
 * chinese-hubert-large on 2 s clips (the AffectGPT feature: hidden states, mean of the last 4, over
 * time), beside PyTorch's own CPU time for the same networks measured in the same run by
 * bench/ref_encoders.py (Debian's python3-torch, plain torch.nn, same thread count). Prints ours, theirs
 * and ours / theirs for both wall time and process CPU time (all threads); the bar is ours <= theirs.
 * Each figure is the best of REPEATS runs after a warm-up run: the machine may be shared, and CPU time
 * is the steadier measure there.
 *
 * Usage: bench_encoders [REPEATS (1)] [N_CLIPS (2)] [--no-ref]. 2 threads. */
#include "io/hfconfig.h"
#include "io/wav.h"
#include "models/clip.h"
#include "models/hubert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_THREADS 2

static double now(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// --- random weights in memory ------------------------------------------------------------------------

typedef struct wb {
    mer_weights *w;
    float **bufs;
    size_t n, cap;
    uint64_t seed;
} wb;

static float rnd(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* A tensor of uniform(-scale, scale) values (scale 0: ones, for norm weights). */
static void add(wb *b, const char *name, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3, float scale) {
    int64_t shape[4] = {d0, d1, d2, d3};
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)shape[i];
    float *p = malloc(n * sizeof(float));
    MER_ASSERT(p);
    for (size_t i = 0; i < n; i++) p[i] = scale == 0 ? 1.0f : scale * rnd(&b->seed);
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->bufs = realloc(b->bufs, b->cap * sizeof *b->bufs);
        MER_ASSERT(b->bufs);
    }
    b->bufs[b->n++] = p;
    mer_err err = {0};
    MER_ASSERT(mer__weights_add_tensor(b->w, name, strlen(name), MER_DTYPE_F32, nd, shape, p, n * sizeof(float), &err) == MER_OK);
}

static void wb_free(wb *b) {
    mer_weights_close(b->w);
    for (size_t i = 0; i < b->n; i++) free(b->bufs[i]);
    free(b->bufs);
}

static void build_clip(wb *b) {
    const int D = 1024, F = 4096, L = 24;
    char n[160];
    add(b, "vision_model.embeddings.class_embedding", 1, D, 0, 0, 0, 0.02f);
    add(b, "vision_model.embeddings.patch_embedding.weight", 4, D, 3, 14, 14, 0.02f);
    add(b, "vision_model.embeddings.position_embedding.weight", 2, 257, D, 0, 0, 0.02f);
    add(b, "vision_model.pre_layrnorm.weight", 1, D, 0, 0, 0, 0);
    add(b, "vision_model.pre_layrnorm.bias", 1, D, 0, 0, 0, 0.01f);
    add(b, "vision_model.post_layernorm.weight", 1, D, 0, 0, 0, 0);
    add(b, "vision_model.post_layernorm.bias", 1, D, 0, 0, 0, 0.01f);
    add(b, "visual_projection.weight", 2, 768, D, 0, 0, 0.02f);
    static const char *const lin[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int i = 0; i < L; i++) {
        for (int k = 0; k < 4; k++) {
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.self_attn.%s.weight", i, lin[k]);
            add(b, n, 2, D, D, 0, 0, 0.02f);
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.self_attn.%s.bias", i, lin[k]);
            add(b, n, 1, D, 0, 0, 0, 0.01f);
        }
        for (int k = 1; k <= 2; k++) {
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.layer_norm%d.weight", i, k);
            add(b, n, 1, D, 0, 0, 0, 0);
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.layer_norm%d.bias", i, k);
            add(b, n, 1, D, 0, 0, 0, 0.01f);
        }
        snprintf(n, sizeof n, "vision_model.encoder.layers.%d.mlp.fc1.weight", i);
        add(b, n, 2, F, D, 0, 0, 0.02f);
        snprintf(n, sizeof n, "vision_model.encoder.layers.%d.mlp.fc1.bias", i);
        add(b, n, 1, F, 0, 0, 0, 0.01f);
        snprintf(n, sizeof n, "vision_model.encoder.layers.%d.mlp.fc2.weight", i);
        add(b, n, 2, D, F, 0, 0, 0.02f);
        snprintf(n, sizeof n, "vision_model.encoder.layers.%d.mlp.fc2.bias", i);
        add(b, n, 1, D, 0, 0, 0, 0.01f);
    }
}

static void build_hubert(wb *b) {
    const int D = 1024, F = 4096, L = 24, C = 512;
    static const int K[7] = {10, 3, 3, 3, 3, 2, 2};
    char n[160];
    for (int i = 0; i < 7; i++) {
        snprintf(n, sizeof n, "feature_extractor.conv_layers.%d.conv.weight", i);
        add(b, n, 3, C, i ? C : 1, K[i], 0, 0.05f);
        snprintf(n, sizeof n, "feature_extractor.conv_layers.%d.conv.bias", i);
        add(b, n, 1, C, 0, 0, 0, 0.01f);
        snprintf(n, sizeof n, "feature_extractor.conv_layers.%d.layer_norm.weight", i);
        add(b, n, 1, C, 0, 0, 0, 0);
        snprintf(n, sizeof n, "feature_extractor.conv_layers.%d.layer_norm.bias", i);
        add(b, n, 1, C, 0, 0, 0, 0.01f);
    }
    add(b, "feature_projection.layer_norm.weight", 1, C, 0, 0, 0, 0);
    add(b, "feature_projection.layer_norm.bias", 1, C, 0, 0, 0, 0.01f);
    add(b, "feature_projection.projection.weight", 2, D, C, 0, 0, 0.03f);
    add(b, "feature_projection.projection.bias", 1, D, 0, 0, 0, 0.01f);
    add(b, "encoder.pos_conv_embed.conv.weight_g", 3, 1, 1, 128, 0, 0.5f);
    add(b, "encoder.pos_conv_embed.conv.weight_v", 3, D, 64, 128, 0, 0.02f);
    add(b, "encoder.pos_conv_embed.conv.bias", 1, D, 0, 0, 0, 0.01f);
    add(b, "encoder.layer_norm.weight", 1, D, 0, 0, 0, 0);
    add(b, "encoder.layer_norm.bias", 1, D, 0, 0, 0, 0.01f);
    static const char *const lin[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int i = 0; i < L; i++) {
        for (int k = 0; k < 4; k++) {
            snprintf(n, sizeof n, "encoder.layers.%d.attention.%s.weight", i, lin[k]);
            add(b, n, 2, D, D, 0, 0, 0.02f);
            snprintf(n, sizeof n, "encoder.layers.%d.attention.%s.bias", i, lin[k]);
            add(b, n, 1, D, 0, 0, 0, 0.01f);
        }
        static const char *const ln[2] = {"layer_norm", "final_layer_norm"};
        for (int k = 0; k < 2; k++) {
            snprintf(n, sizeof n, "encoder.layers.%d.%s.weight", i, ln[k]);
            add(b, n, 1, D, 0, 0, 0, 0);
            snprintf(n, sizeof n, "encoder.layers.%d.%s.bias", i, ln[k]);
            add(b, n, 1, D, 0, 0, 0, 0.01f);
        }
        snprintf(n, sizeof n, "encoder.layers.%d.feed_forward.intermediate_dense.weight", i);
        add(b, n, 2, F, D, 0, 0, 0.02f);
        snprintf(n, sizeof n, "encoder.layers.%d.feed_forward.intermediate_dense.bias", i);
        add(b, n, 1, F, 0, 0, 0, 0.01f);
        snprintf(n, sizeof n, "encoder.layers.%d.feed_forward.output_dense.weight", i);
        add(b, n, 2, D, F, 0, 0, 0.02f);
        snprintf(n, sizeof n, "encoder.layers.%d.feed_forward.output_dense.bias", i);
        add(b, n, 1, D, 0, 0, 0, 0.01f);
    }
}

static const char *CLIP_CFG =
    "{\"model_type\": \"clip_vision_model\", \"hidden_size\": 1024, \"intermediate_size\": 4096, "
    "\"num_hidden_layers\": 24, \"num_attention_heads\": 16, \"image_size\": 224, \"patch_size\": 14, "
    "\"projection_dim\": 768, \"hidden_act\": \"quick_gelu\", \"layer_norm_eps\": 1e-5}";
static const char *HUBERT_CFG =
    "{\"model_type\": \"hubert\", \"hidden_size\": 1024, \"intermediate_size\": 4096, \"num_hidden_layers\": 24, "
    "\"num_attention_heads\": 16, \"conv_dim\": [512, 512, 512, 512, 512, 512, 512], "
    "\"conv_kernel\": [10, 3, 3, 3, 3, 2, 2], \"conv_stride\": [5, 2, 2, 2, 2, 2, 2], \"conv_bias\": true, "
    "\"feat_extract_norm\": \"layer\", \"do_stable_layer_norm\": true, \"num_conv_pos_embeddings\": 128, "
    "\"num_conv_pos_embedding_groups\": 16, \"layer_norm_eps\": 1e-5, \"hidden_act\": \"gelu\"}";

typedef struct timing {
    double wall, cpu; /* best, seconds */
} timing;

static void keep_best(timing *t, double w, double c) {
    if (t->wall == 0 || w < t->wall) t->wall = w;
    if (t->cpu == 0 || c < t->cpu) t->cpu = c;
}

int main(int argc, char **argv) {
    int repeats = 1, n_clips = 2, ref = 1;
    for (int i = 1, pos = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--no-ref")) ref = 0;
        else if (pos++ == 0) repeats = atoi(argv[i]);
        else n_clips = atoi(argv[i]);
    }
    if (repeats < 1) repeats = 1;
    if (n_clips < 1) n_clips = 1;
    mer_err err = {0};
    mer_threadpool *pool;
    mer_cpu_ctx *cpu;
    MER_ASSERT(mer_threadpool_init(N_THREADS, &pool, &err) == MER_OK);
    MER_ASSERT(mer_cpu_ctx_init(pool, MER_ISA_AUTO, &cpu, &err) == MER_OK);
    printf("bench_encoders: %d threads, kernels %s, best of %d after a warm-up\n", N_THREADS,
           mer_cpu_isa_name(MER_ISA_AUTO), repeats);

    /* CLIP ViT-L/14 vision tower, one image */
    timing clip_t = {0, 0};
    {
        wb b = {.seed = 0x9e3779b97f4a7c15ull};
        mer_config *cfg;
        MER_ASSERT(mer__weights_new(MER_WFORMAT_SAFETENSORS, "random-clip-vit-large-patch14", &b.w, &err) == MER_OK);
        build_clip(&b);
        MER_ASSERT(mer__weights_finish(b.w, &err) == MER_OK);
        MER_ASSERT(mer__config_parse(CLIP_CFG, strlen(CLIP_CFG), "clip-config", &cfg, &err) == MER_OK);
        mer_clip *m;
        mer_clip_ctx *x;
        if (mer_clip_load(b.w, cfg, &m, &err) || mer_clip_ctx_init(m, cpu, &x, &err)) {
            fprintf(stderr, "bench_encoders: %s\n", err.msg);
            return 1;
        }
        float *px = malloc(3 * 224 * 224 * sizeof(float)), emb[768];
        uint64_t s = 7;
        for (int i = 0; i < 3 * 224 * 224; i++) px[i] = 2 * rnd(&s);
        mer_clip_out o = {.image_embeds = emb};
        for (int r = 0; r <= repeats; r++) {
            double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
            MER_ASSERT(mer_clip_encode(x, px, &o, &err) == MER_OK);
            if (r) keep_best(&clip_t, now(CLOCK_MONOTONIC) - w0, now(CLOCK_PROCESS_CPUTIME_ID) - c0);
        }
        free(px);
        mer_clip_ctx_free(x);
        mer_clip_free(m);
        mer__config_free(cfg);
        wb_free(&b);
    }
    /* chinese-hubert-large: n_clips clips of 2 s, the AffectGPT feature */
    timing hub_t = {0, 0};
    {
        wb b = {.seed = 0x2545f4914f6cdd1dull};
        mer_config *cfg;
        MER_ASSERT(mer__weights_new(MER_WFORMAT_SAFETENSORS, "random-chinese-hubert-large", &b.w, &err) == MER_OK);
        build_hubert(&b);
        MER_ASSERT(mer__weights_finish(b.w, &err) == MER_OK);
        MER_ASSERT(mer__config_parse(HUBERT_CFG, strlen(HUBERT_CFG), "hubert-config", &cfg, &err) == MER_OK);
        mer_hubert *m;
        mer_hubert_ctx *x;
        if (mer_hubert_load(b.w, cfg, &m, &err) || mer_hubert_ctx_init(m, cpu, 32000, &x, &err)) {
            fprintf(stderr, "bench_encoders: %s\n", err.msg);
            return 1;
        }
        float *clips = malloc((size_t)n_clips * 32000 * sizeof(float)), *feat = malloc((size_t)n_clips * 1024 * sizeof(float));
        uint64_t s = 11;
        for (int i = 0; i < n_clips * 32000; i++) clips[i] = rnd(&s);
        mer_hubert_normalize(clips, n_clips, 32000, 1);
        for (int r = 0; r <= repeats; r++) {
            double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
            MER_ASSERT(mer_hubert_pool(x, clips, n_clips, 32000, -1, 0, feat, &err) == MER_OK);
            if (r) keep_best(&hub_t, (now(CLOCK_MONOTONIC) - w0) / n_clips, (now(CLOCK_PROCESS_CPUTIME_ID) - c0) / n_clips);
        }
        free(clips);
        free(feat);
        mer_hubert_ctx_free(x);
        mer_hubert_free(m);
        mer__config_free(cfg);
        wb_free(&b);
    }
    mer_cpu_ctx_free(cpu);
    mer_threadpool_free(pool);

    double r_cw = 0, r_cc = 0, r_hw = 0, r_hc = 0;
    if (ref) {
        char cmd[256], line[512] = "";
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 bench/ref_encoders.py %d %d %d 2>&1", N_THREADS, repeats, n_clips);
        FILE *f = popen(cmd, "r");
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "REF clip_wall_ms=%lf clip_cpu_ms=%lf hubert_wall_ms=%lf hubert_cpu_ms=%lf", &r_cw, &r_cc,
                       &r_hw, &r_hc) == 4)
                break;
        if (f) pclose(f);
        if (r_cc <= 0) printf("reference: bench/ref_encoders.py gave no result (is python3-torch installed?): %s", line);
    }
    printf("%-34s %12s %12s %8s\n", "per item, ms", "mer", "torch", "ratio");
    struct {
        const char *name;
        double ours, theirs;
    } rows[4] = {{"CLIP ViT-L/14 224x224, CPU time", clip_t.cpu * 1e3, r_cc},
                 {"CLIP ViT-L/14 224x224, wall", clip_t.wall * 1e3, r_cw},
                 {"HuBERT-large 2 s clip, CPU time", hub_t.cpu * 1e3, r_hc},
                 {"HuBERT-large 2 s clip, wall", hub_t.wall * 1e3, r_hw}};
    for (int i = 0; i < 4; i++) {
        if (rows[i].theirs > 0)
            printf("%-34s %12.1f %12.1f %8.2f\n", rows[i].name, rows[i].ours, rows[i].theirs, rows[i].ours / rows[i].theirs);
        else
            printf("%-34s %12.1f %12s %8s\n", rows[i].name, rows[i].ours, "-", "-");
    }
    if (r_cc > 0)
        printf("bar (CPU time, ours <= torch): CLIP %s, HuBERT %s\n", clip_t.cpu * 1e3 <= r_cc ? "met" : "NOT met",
               hub_t.cpu * 1e3 <= r_hc ? "met" : "NOT met");
    return 0;
}
