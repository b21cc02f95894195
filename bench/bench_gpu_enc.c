/* bench_gpu_enc.c - the device encoders' benchmark (run by bench/gpu_enc.sh on the GPU machine, beside
 * HF transformers timed in the same run by bench/gpu_enc_ref.py).
 *
 *   bench_gpu_enc speed        CLIP ViT-L/14 on 8 (and 1) 224x224 frames, image features; HuBERT-L
 *                              (chinese-hubert-large shape) AffectGPT feature of 8 clips of 2 s; random
 *                              bf16 weights (models/random_models.c); inputs already on the device
 *                              (as HF is timed) and from host memory; median of many runs, wall clock
 *                              around the synchronous call, after warm-up
 *   bench_gpu_enc parity DIR   the HF folders DIR/clipL and DIR/hubertL written by gpu_enc_ref.py
 *                              export, on its inputs (px.npy, clips.npy), against HF's float32 outputs
 *                              (hf_clip.npy: image_embeds; hf_h5.npy: mean of hidden_states[-4:] over
 *                              time), for our bf16 and f32 device paths
 *
 * Every figure is printed as "RESULT <key> <value> <unit>". With no GPU (or a build without CUDA) it
 * prints a SKIP line and exits 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "io/hfconfig.h"
#include "io/npy.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_enc.h"
#include "models/clip_cuda.h"
#include "models/hubert_cuda.h"
#include "models/random_models.h"

#define BENCH_NAME "bench_gpu_enc"
#include "bench_gpu_common.h"
#include "../tests/max_rel_err.h"

#if MER_CUDA

static mer_err e;

static float *rand_host(size_t n, uint64_t seed, float a) {
    float *p = malloc(n * sizeof *p);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        p[i] = a * (float)((s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    }
    return p;
}

#define RUNS 50

static void bench_clip(mer_cuda *c) {
    mer_weights *w = NULL;
    mer_config *cfg = NULL;
    mer_clip *m = NULL;
    mer_clip_cuda *g = NULL;
    TRY(mer__random_clip_l14(0x9e3779b97f4a7c15ull, &w, &e));
    TRY(mer__config_parse(mer__clip_l14_config, strlen(mer__clip_l14_config), "clip-config", &cfg, &e));
    TRY(mer_clip_load(w, cfg, &m, &e));
    TRY(mer_clip_cuda_from_model(m, c, 8, MER_DTYPE_BF16, &g, &e));
    const int S = m->hp.image_size, P = m->hp.n_proj;
    const size_t img = (size_t)3 * S * S;
    float *px = rand_host(8 * img, 7, 1.5f), *emb = malloc((size_t)8 * P * sizeof *emb);
    void *dpx = NULL;
    TRY(mer_cuda_alloc(c, 8 * img * sizeof(float), &dpx, &e));
    TRY(mer_cuda_upload(c, dpx, px, 8 * img * sizeof(float), &e));
    mer_clip_out o[8];
    for (int i = 0; i < 8; i++) o[i] = (mer_clip_out){.image_embeds = emb + (size_t)i * P};
    const int ns[2] = {8, 1};
    for (int k = 0; k < 2; k++) {
        const int n = ns[k];
        double t[RUNS];
        for (int r = 0; r < 5; r++) TRY(mer_clip_cuda_encode_dev(g, dpx, n, o, &e));
        for (int r = 0; r < RUNS; r++) {
            double t0 = now_ms();
            TRY(mer_clip_cuda_encode_dev(g, dpx, n, o, &e));
            t[r] = now_ms() - t0;
        }
        printf("RESULT clip_l_%dframes_ms %.3f ms (bf16, pixels on the device, image features to the host)\n", n,
               median(t, RUNS));
        for (int r = 0; r < RUNS / 2; r++) {
            double t0 = now_ms();
            TRY(mer_clip_cuda_encode(g, px, n, o, &e));
            t[r] = now_ms() - t0;
        }
        printf("RESULT clip_l_%dframes_host_ms %.3f ms (bf16, pixels uploaded from pageable host memory)\n", n,
               median(t, RUNS / 2));
        mer_clip_cuda_set_graph(g, 0);
        for (int r = 0; r < RUNS / 2; r++) {
            double t0 = now_ms();
            TRY(mer_clip_cuda_encode_dev(g, dpx, n, o, &e));
            t[r] = now_ms() - t0;
        }
        printf("RESULT clip_l_%dframes_nograph_ms %.3f ms (bf16, pixels on the device, every launch eager)\n", n,
               median(t, RUNS / 2));
        mer_clip_cuda_set_graph(g, 1);
    }
    double s = 0;
    for (int i = 0; i < 8 * P; i++) s += fabs(emb[i]);
    printf("  (clip checksum %.6g)\n", s);
    mer_cuda_release(c, dpx);
    mer_clip_cuda_free(g);
    mer_clip_free(m);
    mer__config_free(cfg);
    mer_weights_close(w);
    free(px), free(emb);
}

static void bench_hubert(mer_cuda *c) {
    mer_weights *w = NULL;
    mer_config *cfg = NULL;
    mer_hubert *m = NULL;
    mer_hubert_cuda *g = NULL;
    const long L = 32000;
    TRY(mer__random_hubert_large(0x2545f4914f6cdd1dull, &w, &e));
    TRY(mer__config_parse(mer__hubert_large_config, strlen(mer__hubert_large_config), "hubert-config", &cfg, &e));
    TRY(mer_hubert_load(w, cfg, &m, &e));
    TRY(mer_hubert_cuda_from_model(m, c, 8, L, MER_DTYPE_BF16, &g, &e));
    const int D = m->hp.n_embd;
    float *x = rand_host((size_t)8 * L, 11, 1.f), *f = malloc((size_t)8 * D * sizeof *f);
    mer_hubert_normalize(x, 8, (size_t)L, 1);
    void *dx = NULL;
    TRY(mer_cuda_alloc(c, (size_t)8 * L * sizeof(float), &dx, &e));
    TRY(mer_cuda_upload(c, dx, x, (size_t)8 * L * sizeof(float), &e));
    double t[RUNS];
    for (int r = 0; r < 5; r++) TRY(mer_hubert_cuda_pool_dev(g, dx, 8, L, -1, 0, f, &e));
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_ms();
        TRY(mer_hubert_cuda_pool_dev(g, dx, 8, L, -1, 0, f, &e));
        t[r] = now_ms() - t0;
    }
    printf("RESULT hubert_l_8x2s_ms %.3f ms (bf16, samples on the device, AffectGPT feature to the host)\n",
           median(t, RUNS));
    for (int r = 0; r < RUNS / 2; r++) {
        double t0 = now_ms();
        TRY(mer_hubert_cuda_pool(g, x, 8, L, -1, 0, f, &e));
        t[r] = now_ms() - t0;
    }
    printf("RESULT hubert_l_8x2s_host_ms %.3f ms (bf16, samples uploaded from pageable host memory)\n",
           median(t, RUNS / 2));
    for (int r = 0; r < 5; r++) TRY(mer_hubert_cuda_pool_dev(g, dx, 8, L, 0, 0, f, &e));
    for (int r = 0; r < RUNS / 2; r++) {
        double t0 = now_ms();
        TRY(mer_hubert_cuda_pool_dev(g, dx, 8, L, 0, 0, f, &e));
        t[r] = now_ms() - t0;
    }
    printf("RESULT hubert_l_8x2s_front_ms %.3f ms (the conv stack, feature projection and positional conv alone)\n",
           median(t, RUNS / 2));
    mer_hubert_cuda_set_graph(g, 0);
    for (int r = 0; r < RUNS / 2; r++) {
        double t0 = now_ms();
        TRY(mer_hubert_cuda_pool_dev(g, dx, 8, L, -1, 0, f, &e));
        t[r] = now_ms() - t0;
    }
    printf("RESULT hubert_l_8x2s_nograph_ms %.3f ms (bf16, every launch eager)\n", median(t, RUNS / 2));
    mer_hubert_cuda_set_graph(g, 1);
    double s = 0;
    for (int i = 0; i < 8 * D; i++) s += fabs(f[i]);
    printf("  (hubert checksum %.6g)\n", s);
    mer_cuda_release(c, dx);
    mer_hubert_cuda_free(g);
    mer_hubert_free(m);
    mer__config_free(cfg);
    mer_weights_close(w);
    free(x), free(f);
}

/* One encoder block's kernels at n_seq sequences of T tokens (width 1024, MLP 4096, 16 heads), bf16, each
 * timed over 20 launches on the stream (device time, events). */
typedef struct part {
    mer_cuda *c;
    int which, N, n_seq, T;
    void *x, *y, *w, *f;
    float *h, *b;
} part;

static mer_status part_run(void *ud, mer_err *err) {
    part *p = ud;
    const int D = 1024, F = 4096, N = p->N;
    mer_status st = MER_OK;
    for (int r = 0; r < 20 && !st; r++) switch (p->which) {
        case 0: st = mer_cuda_layernorm(p->c, p->x, MER_DTYPE_BF16, D, p->h, D, p->b, p->b, N, D, 1, 1, 1e-5f, MER_CUDA_ACT_NONE, err); break;
        case 1: st = mer_cuda_gemm_bias(p->c, p->y, MER_DTYPE_BF16, 3 * D, p->x, D, p->w, MER_DTYPE_BF16, p->b, N, D, 3 * D, 0, err); break;
        case 2: st = mer_cuda_attn_full(p->c, p->x, D, p->y, 3 * D, D, 2 * D, MER_DTYPE_BF16, p->n_seq, p->T, 16, 64, 0.125f, err); break;
        case 3: st = mer_cuda_gemm_bias(p->c, p->h, MER_DTYPE_F32, D, p->x, D, p->w, MER_DTYPE_BF16, p->b, N, D, D, 1, err); break;
        case 4: st = mer_cuda_gemm_bias(p->c, p->f, MER_DTYPE_BF16, F, p->x, D, p->w, MER_DTYPE_BF16, p->b, N, D, F, 0, err); break;
        case 5: st = mer_cuda_bias_act(p->c, p->f, MER_DTYPE_BF16, NULL, N, F, MER_CUDA_ACT_QUICK_GELU, err); break;
        case 6: st = mer_cuda_gemm_bias(p->c, p->h, MER_DTYPE_F32, D, p->f, F, p->w, MER_DTYPE_BF16, p->b, N, F, D, 1, err); break;
        }
    return st;
}

static void bench_parts(mer_cuda *c, int n_seq, int T, const char *tag) {
    static const char *names[7] = {"layernorm", "qkv_gemm", "attention", "o_gemm+res", "fc1_gemm", "act", "fc2_gemm+res"};
    const int D = 1024, F = 4096, N = n_seq * T;
    const double flops[7] = {0, 2.0 * N * D * 3 * D, 4.0 * n_seq * T * T * D, 2.0 * N * D * D, 2.0 * N * D * F, 0,
                             2.0 * N * D * F};
    part p = {.c = c, .N = N, .n_seq = n_seq, .T = T};
    TRY(mer_cuda_alloc(c, (size_t)N * D * 2, &p.x, &e));
    TRY(mer_cuda_alloc(c, (size_t)N * 3 * D * 2, &p.y, &e));
    TRY(mer_cuda_alloc(c, (size_t)F * D * 2, &p.w, &e));
    TRY(mer_cuda_alloc(c, (size_t)N * F * 2, &p.f, &e));
    TRY(mer_cuda_alloc(c, (size_t)N * D * 4, (void **)&p.h, &e));
    TRY(mer_cuda_alloc(c, (size_t)F * 4, (void **)&p.b, &e));
    TRY(mer_cuda_fill_uniform_bf16(c, p.x, (size_t)N * D, 1, 1.f, &e));
    TRY(mer_cuda_fill_uniform_bf16(c, p.y, (size_t)N * 3 * D, 2, 1.f, &e));
    TRY(mer_cuda_fill_uniform_bf16(c, p.w, (size_t)F * D, 3, 0.03f, &e));
    TRY(mer_cuda_fill_uniform_bf16(c, p.f, (size_t)N * F, 4, 1.f, &e));
    TRY(mer_cuda_fill_uniform_f32(c, p.h, (size_t)N * D, 5, 0.f, 1.f, &e));
    TRY(mer_cuda_fill_uniform_f32(c, p.b, (size_t)F, 6, 0.f, 0.1f, &e));
    double total = 0;
    for (int i = 0; i < 7; i++) {
        double ms = 0;
        p.which = i;
        TRY(part_run(&p, &e));
        TRY(mer_cuda_time(c, part_run, &p, &ms, &e));
        const double us = ms * 1e3 / 20;
        total += us;
        printf("  part %s %-13s %8.1f us", tag, names[i], us);
        if (flops[i] > 0) printf("  %6.1f TFLOP/s", flops[i] / (us * 1e-6) / 1e12);
        printf("\n");
    }
    printf("RESULT %s_block_us %.1f us (one encoder block's kernels, summed; x 24 layers = %.2f ms)\n", tag, total,
           total * 24 / 1e3);
    mer_cuda_release(c, p.x), mer_cuda_release(c, p.y), mer_cuda_release(c, p.w), mer_cuda_release(c, p.f);
    mer_cuda_release(c, p.h), mer_cuda_release(c, p.b);
}

static float *load_npy(const char *path, int64_t *d0, int64_t *d1) {
    mer_map mp;
    mer_npy a;
    TRY(mer__map_open(path, &mp, &e));
    TRY(mer__npy_parse(path, mp.data, mp.size, &a, &e));
    if (a.dtype != MER_DTYPE_F32 || a.n_dims < 2) {
        fprintf(stderr, "%s: expected f32\n", path);
        exit(1);
    }
    *d0 = a.shape[0];
    *d1 = (int64_t)(a.n_elems / (size_t)a.shape[0]);
    float *p = malloc(a.n_elems * sizeof *p);
    memcpy(p, a.data, a.n_elems * sizeof *p);
    mer__map_close(&mp);
    return p;
}

static void parity(mer_cuda *c, const char *dir) {
    char p[4096];
    int64_t n, k, rn, rk;
    snprintf(p, sizeof p, "%s/px.npy", dir);
    float *px = load_npy(p, &n, &k);
    snprintf(p, sizeof p, "%s/hf_clip.npy", dir);
    float *ref = load_npy(p, &rn, &rk);
    snprintf(p, sizeof p, "%s/clipL", dir);
    mer_clip *m = NULL;
    TRY(mer_clip_open(p, &m, &e));
    const int P = m->hp.n_proj;
    float *emb = malloc((size_t)n * P * sizeof *emb);
    for (int f32 = 0; f32 < 2; f32++) {
        mer_clip_cuda *g = NULL;
        TRY(mer_clip_cuda_from_model(m, c, (int)n, f32 ? MER_DTYPE_F32 : MER_DTYPE_BF16, &g, &e));
        mer_clip_out o[64];
        for (int i = 0; i < n && i < 64; i++) o[i] = (mer_clip_out){.image_embeds = emb + (size_t)i * P};
        TRY(mer_clip_cuda_encode(g, px, (int)n, o, &e));
        printf("RESULT parity_clip_l_%s %.3e rel (image_embeds of %d images vs HF f32, max-abs-err / max-abs-ref)\n",
               f32 ? "f32" : "bf16", max_rel_err(emb, ref, (size_t)n * P), (int)n);
        mer_clip_cuda_free(g);
    }
    mer_clip_free(m);
    free(px), free(ref), free(emb);

    snprintf(p, sizeof p, "%s/clips.npy", dir);
    float *x = load_npy(p, &n, &k);
    snprintf(p, sizeof p, "%s/hf_h5.npy", dir);
    ref = load_npy(p, &rn, &rk);
    snprintf(p, sizeof p, "%s/hubertL", dir);
    mer_hubert *h = NULL;
    TRY(mer_hubert_open(p, &h, &e));
    const int D = h->hp.n_embd;
    float *f = malloc((size_t)n * D * sizeof *f);
    for (int f32 = 0; f32 < 2; f32++) {
        mer_hubert_cuda *g = NULL;
        TRY(mer_hubert_cuda_from_model(h, c, (int)n, (long)k, f32 ? MER_DTYPE_F32 : MER_DTYPE_BF16, &g, &e));
        TRY(mer_hubert_cuda_pool(g, x, (int)n, (long)k, -1, 1, f, &e));
        printf("RESULT parity_hubert_l_%s %.3e rel (mean of hidden_states[-4:] of %d clips of %lld samples vs HF f32)\n",
               f32 ? "f32" : "bf16", max_rel_err(f, ref, (size_t)n * D), (int)n, (long long)k);
        mer_hubert_cuda_free(g);
    }
    mer_hubert_free(h);
    free(x), free(ref), free(f);
}

int main(int argc, char **argv) {
    if (mer_cuda_device_count() == 0) {
        printf("SKIP bench_gpu_enc: no CUDA device\n");
        return 0;
    }
    mer_cuda *c = NULL;
    TRY(mer_cuda_init(0, &c, &e));
    printf("device: %s\n", mer_cuda_name(c));
    const char *mode = argc > 1 ? argv[1] : "speed";
    if (!strcmp(mode, "speed")) {
        bench_clip(c);
        bench_hubert(c);
        bench_parts(c, 8, 257, "clip");
        bench_parts(c, 8, 99, "hubert");
    } else if (!strcmp(mode, "parity") && argc > 2) {
        parity(c, argv[2]);
    } else {
        fprintf(stderr, "usage: bench_gpu_enc speed | parity DIR\n");
        return 2;
    }
    size_t held, in_use;
    mer_cuda_alloc_stats(c, &held, &in_use);
    printf("  (device memory held %.1f MiB, in use %.1f MiB)\n", held / 1048576.0, in_use / 1048576.0);
    mer_cuda_free(c);
    return 0;
}

#else

int main(void) {
    printf("SKIP bench_gpu_enc: built without CUDA (make CUDA=1)\n");
    return 0;
}

#endif
