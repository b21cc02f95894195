/* bench_batch.c - batched decoding speed (mer_qwen2_batch_decode) at the Qwen2.5-7B shape with random
 * q8_0 weights built in memory: tokens/s of a decode step over 1, 2, 4 and 8 sequences at once. Decode
 * is memory-bound: a step of B rows streams the weights once, so tokens/s should grow close to B-fold
 * until the arithmetic catches up. Each figure is the best step of several (the machine is shared; the
 * load average is printed).
 *
 * Usage: bench_batch [N_LAYERS] (default 28, fewer when MemAvailable cannot hold the model; figures are
 * then per the layers built, said in the output). */
#include "models/random_models.h"
#include "mer.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double loadavg(void) {
    FILE *f = fopen("/proc/loadavg", "r");
    double l = -1;
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

static long mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

int main(int argc, char **argv) {
    mer__qwen2_hp hp;
    mer__qwen25_7b_hp(&hp);
    const int full = hp.n_layer;
    if (argc > 1) hp.n_layer = atoi(argv[1]);
    double per_layer = 0, fixed = 2.0 * hp.n_vocab * (double)mer_dtype_row_bytes(MER_DTYPE_Q8_0, (size_t)hp.n_embd);
    for (int p = 0; p < MER__N_PROJ; p++) {
        int o, i;
        mer__qwen2_proj_shape(&hp, p, &o, &i);
        per_layer += (double)o * (double)mer_dtype_row_bytes(MER_DTYPE_Q8_0, (size_t)i);
    }
    long avail = mem_available();
    if (avail > 0 && argc <= 1) {
        double room = (double)avail - 2.0 * (1 << 30) - fixed;
        int fit = room > 0 ? (int)(room / per_layer) : 1;
        if (fit < hp.n_layer) hp.n_layer = fit < 1 ? 1 : fit;
    }
    if (hp.n_layer < 1 || hp.n_layer > full) {
        fprintf(stderr, "bench_batch: layers must be in [1, %d]\n", full);
        return 1;
    }
    mer_err err = {0};
    mer_qwen2 *m = NULL;
    size_t bytes = 0;
    double t0 = now();
    if (mer__random_qwen2(&hp, MER_DTYPE_Q8_0, 1, &m, &bytes, &err)) {
        fprintf(stderr, "bench_batch: %s\n", err.msg);
        return 1;
    }
    printf("bench_batch: Qwen2.5-7B shape, %d of %d layers, q8_0 random weights (%.2f GiB, built in %.1f s)\n",
           hp.n_layer, full, (double)bytes / (1 << 30), now() - t0);
    printf("load average at start: %.1f\n", loadavg());
    enum { B = 8, STEPS = 4 };
    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 8;
    mer_qwen2_batch *b = NULL;
    if (mer_qwen2_batch_init(m, B, &cp, &b, &err)) {
        fprintf(stderr, "bench_batch: %s\n", err.msg);
        mer_qwen2_free(m);
        return 1;
    }
    int slots[B];
    int32_t ids[B];
    for (int s = 0; s < B; s++) {
        slots[s] = s;
        ids[s] = 100 + s;
        if (mer_qwen2_prefill(mer_qwen2_batch_slot(b, s), &ids[s], 1, &err)) {
            fprintf(stderr, "bench_batch: %s\n", err.msg);
            return 1;
        }
    }
    static const int NS[] = {1, 2, 4, 8};
    double tok1 = 0, t1 = 0, t8 = 0;
    for (size_t k = 0; k < MER_ARRAY_LEN(NS); k++) {
        int n = NS[k];
        double best = 1e30;
        for (int step = 0; step < STEPS; step++) {
            double ts = now();
            if (mer_qwen2_batch_decode(b, slots, ids, n, &err)) {
                fprintf(stderr, "bench_batch: %s\n", err.msg);
                return 1;
            }
            double dt = now() - ts;
            if (dt < best) best = dt;
        }
        double tok_s = n / best;
        if (n == 1) tok1 = tok_s, t1 = best;
        if (n == 8) t8 = best;
        printf("  batch %d: %.1f ms/step, %.3f tokens/s (%.2fx batch 1)\n", n, best * 1e3, tok_s, tok_s / tok1);
    }
    /* t(B) ~ fixed + B * per_row: the fixed part is the weight stream, per_row the arithmetic of one row */
    double per_row = (t8 - t1) / 7, stream = t1 - per_row;
    printf("  step time ~ %.1f ms + %.1f ms per sequence (fit of batch 1 and 8): the per-sequence part is mostly the "
           "dot products' arithmetic, which bounds batching at %.1fx here\n",
           stream * 1e3, per_row * 1e3, per_row > 0 ? t1 / per_row : 0.0);
    printf("load average at end: %.1f\n", loadavg());
    mer_qwen2_batch_free(b);
    mer_qwen2_free(m);
    return 0;
}
