/* bench_encoders.c - CPU time of AffectGPT's encoders at their real shapes with random weights built in
 * memory (no file; src/models/random_models.c): CLIP ViT-L/14's vision tower on one 224x224 image (get_image_features) and
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
#include "models/random_models.h"

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

// --- inputs ----------------------------------------------------------------------------------------

static float rnd(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

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
        mer_weights *w = NULL;
        mer_config *cfg;
        MER_ASSERT(mer__random_clip_l14(0x9e3779b97f4a7c15ull, &w, &err) == MER_OK);
        MER_ASSERT(mer__config_parse(mer__clip_l14_config, strlen(mer__clip_l14_config), "clip-config", &cfg, &err) == MER_OK);
        mer_clip *m;
        mer_clip_ctx *x;
        if (mer_clip_load(w, cfg, &m, &err) || mer_clip_ctx_init(m, cpu, &x, &err)) {
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
        mer_weights_close(w);
    }
    /* chinese-hubert-large: n_clips clips of 2 s, the AffectGPT feature */
    timing hub_t = {0, 0};
    {
        mer_weights *w = NULL;
        mer_config *cfg;
        MER_ASSERT(mer__random_hubert_large(0x2545f4914f6cdd1dull, &w, &err) == MER_OK);
        MER_ASSERT(mer__config_parse(mer__hubert_large_config, strlen(mer__hubert_large_config), "hubert-config", &cfg, &err) == MER_OK);
        mer_hubert *m;
        mer_hubert_ctx *x;
        if (mer_hubert_load(w, cfg, &m, &err) || mer_hubert_ctx_init(m, cpu, 32000, &x, &err)) {
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
        mer_weights_close(w);
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
