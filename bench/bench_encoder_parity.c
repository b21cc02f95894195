/* bench_encoder_parity.c - runs mer's CLIP vision tower or HuBERT on inputs given as .npy files and
 * writes the features as .npy, for the real-shape parity check against HF transformers that
 * scripts/gpu/encoders_real.sh runs on the GPU machine (random ViT-L/14 and HuBERT-large weights made
 * there). `make bench` runs it without arguments, which only prints how to use it.
 *   bench_encoder_parity clip DIR pixels.npy out.npy         pixels [n,3,S,S] f32 -> image_embeds [n,P]
 *   bench_encoder_parity hubert DIR clips.npy out.npy HF5     normalised clips [n,L] f32 -> [n,H] */
#include "io/npy.h"
#include "models/clip.h"
#include "models/hubert.h"

#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int fail(const mer_err *e) {
    fprintf(stderr, "bench_encoder_parity: %s\n", e->msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        printf("encoder parity: skipped (run by scripts/gpu/encoders_real.sh with model folders and inputs)\n");
        return 0;
    }
    mer_err err = {0};
    mer_map m;
    mer_npy in;
    if (mer__map_open(argv[3], &m, &err) || mer__npy_parse(argv[3], m.data, m.size, &in, &err)) return fail(&err);
    if (in.dtype != MER_DTYPE_F32 || in.n_dims < 2) {
        fprintf(stderr, "%s: expected f32\n", argv[3]);
        return 1;
    }
    mer_threadpool *pool = NULL;
    mer_cpu_ctx *cpu = NULL;
    if (mer_threadpool_init(0, &pool, &err) || mer_cpu_ctx_init(pool, MER_ISA_AUTO, &cpu, &err)) return fail(&err);
    int n = (int)in.shape[0];
    float *out = NULL;
    int64_t shape[2] = {n, 0};
    double t0 = now();
    if (!strcmp(argv[1], "clip")) {
        mer_clip *c = NULL;
        mer_clip_ctx *x = NULL;
        if (mer_clip_open(argv[2], &c, &err) || mer_clip_ctx_init(c, cpu, &x, &err)) return fail(&err);
        int S = c->hp.image_size, P = c->hp.n_proj;
        shape[1] = P;
        out = malloc((size_t)n * P * sizeof *out);
        t0 = now();
        for (int i = 0; i < n; i++) {
            mer_clip_out o = {0};
            o.image_embeds = out + (size_t)i * P;
            if (mer_clip_encode(x, (const float *)in.data + (size_t)i * 3 * S * S, &o, &err)) return fail(&err);
        }
        mer_clip_ctx_free(x);
        mer_clip_free(c);
    } else {
        mer_hubert *h = NULL;
        mer_hubert_ctx *x = NULL;
        long L = (long)in.shape[1];
        if (mer_hubert_open(argv[2], &h, &err) || mer_hubert_ctx_init(h, cpu, L, &x, &err)) return fail(&err);
        int H = h->hp.n_embd;
        shape[1] = H;
        out = malloc((size_t)n * H * sizeof *out);
        t0 = now();
        if (mer_hubert_pool(x, (const float *)in.data, n, L, -1, argc > 5 && !strcmp(argv[5], "1"), out, &err)) return fail(&err);
        mer_hubert_ctx_free(x);
        mer_hubert_free(h);
    }
    double dt = now() - t0;
    printf("%s: %d inputs in %.3f s (%.1f ms each, %d threads)\n", argv[1], n, dt, dt * 1e3 / n,
           mer_threadpool_n_threads(pool));
    mer_buf b = {0};
    if (mer__npy_write(&b, "<f4", 2, shape, out, (size_t)shape[0] * shape[1] * sizeof(float)) ||
        mer__write_file_atomic(argv[4], b.data, b.len, &err))
        return fail(&err);
    mer__buf_free(&b);
    free(out);
    mer_cpu_ctx_free(cpu);
    mer_threadpool_free(pool);
    mer__map_close(&m);
    return 0;
}
