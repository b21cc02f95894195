/* bench_gemm.c - f32 GEMM throughput, y = x @ W^T (x [M, K], W [N, K]), of mer's packed GEMM against
 * OpenBLAS's cblas_sgemm (RowMajor, NoTrans x Trans) measured in the same run, at 1024^3 and at
 * M=64 (activations) x N=4096 x K=4096. Runs alternate between the two libraries and each keeps its best
 * of N (the machine may be shared and noisy). Both use all online CPUs. Prints GFLOP/s and the ratio.
 * Usage: bench_gemm [reps] */
#include "kernels/kernels.h"

#include <cblas.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

char *openblas_get_config(void);
int openblas_get_num_threads(void);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float *rnd(size_t n, unsigned *s) {
    float *v = NULL;
    if (posix_memalign((void **)&v, 64, n * sizeof(float))) return NULL;
    for (size_t i = 0; i < n; i++) {
        *s = *s * 1664525u + 1013904223u;
        v[i] = (float)((*s >> 8) / 16777216.0 - 0.5);
    }
    return v;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("OpenBLAS: %s (threads %d, OPENBLAS_CORETYPE=%s)\n", openblas_get_config(), openblas_get_num_threads(),
           ct ? ct : "(unset)");
    mer_threadpool *pool = NULL;
    mer_cpu_ctx *c = NULL;
    mer_err err = {0};
    if (mer_threadpool_init(0, &pool, &err) || mer_cpu_ctx_init(pool, MER_ISA_AUTO, &c, &err)) {
        fprintf(stderr, "bench_gemm: %s\n", err.msg);
        return 1;
    }
    printf("mer: %s kernels, %d threads; best of %d runs each\n", mer_cpu_isa_name(MER_ISA_AUTO),
           mer_threadpool_n_threads(pool), reps);
    const int cases[][3] = {{1024, 1024, 1024}, {64, 4096, 4096}};
    int rc = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int M = cases[ci][0], N = cases[ci][1], K = cases[ci][2];
        unsigned s = 7;
        float *x = rnd((size_t)M * K, &s), *w = rnd((size_t)N * K, &s), *y = rnd((size_t)M * N, &s),
              *yb = rnd((size_t)M * N, &s);
        double best_m = 1e30, best_b = 1e30;
        for (int r = 0; r < reps; r++) {
            double t = now();
            mer_cpu_matmul(c, y, (size_t)N, x, (size_t)K, w, MER_DTYPE_F32, NULL, M, K, N);
            t = now() - t;
            if (t < best_m) best_m = t;
            t = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, 0.0f, yb, N);
            t = now() - t;
            if (t < best_b) best_b = t;
        }
        double maxd = 0, maxv = 0;
        for (size_t i = 0; i < (size_t)M * N; i++) {
            double d = fabs((double)y[i] - yb[i]);
            if (d > maxd) maxd = d;
            if (fabs(yb[i]) > maxv) maxv = fabs(yb[i]);
        }
        double fl = 2.0 * M * N * K;
        printf("sgemm M=%d N=%d K=%d: mer %.1f GFLOP/s, OpenBLAS %.1f GFLOP/s, ratio %.2f  (max |diff| %.2g of %.2g)\n",
               M, N, K, fl / best_m * 1e-9, fl / best_b * 1e-9, best_b / best_m, maxd, maxv);
        if (maxd > 1e-3 * maxv) rc = 1;
        free(x), free(w), free(y), free(yb);
    }
    mer_cpu_ctx_free(c);
    mer_threadpool_free(pool);
    return rc;
}
