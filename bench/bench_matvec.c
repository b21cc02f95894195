/* bench_matvec.c - matrix-vector throughput (one token: y = x @ W^T) for q8_0, q4_0, bf16 and f16
 * weights, in GB/s of weight bytes read, beside this machine's memory read bandwidth measured in the
 * same run (a streaming sum over a 1 GiB buffer on the same thread pool, in 64 load-balanced parts). W is
 * [14336, 8192], far bigger than the caches. The machine may be shared and noisy, so the four matrices
 * are resident together and each repetition measures the bandwidth and then every dtype (round robin:
 * all figures sample the same conditions); each figure is the best of its runs, and every ratio divides
 * by the best bandwidth seen (the conservative choice). Usage: bench_matvec [reps] */
#include "kernels/kernels.h"

#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct sum_job {
    const uint64_t *p;
    size_t n;
    uint64_t part[64];
} sum_job;

static void sum_task(void *arg, int ith, int nth) {
    sum_job *j = arg;
    long i0, i1;
    mer_split_range((long)(j->n / 8), ith, nth, &i0, &i1);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (long i = i0; i < i1; i++) {
        const uint64_t *q = j->p + i * 8;
        s0 += q[0], s1 += q[1], s2 += q[2], s3 += q[3], s4 += q[4], s5 += q[5], s6 += q[6], s7 += q[7];
    }
    j->part[ith] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    mer_threadpool *pool = NULL;
    mer_cpu_ctx *c = NULL;
    mer_err err = {0};
    if (mer_threadpool_init(0, &pool, &err) || mer_cpu_ctx_init(pool, MER_ISA_AUTO, &c, &err)) {
        fprintf(stderr, "bench_matvec: %s\n", err.msg);
        return 1;
    }
    printf("mer: %s kernels, %d threads; best of %d runs\n", mer_cpu_isa_name(MER_ISA_AUTO),
           mer_threadpool_n_threads(pool), reps);

    /* memory read bandwidth: measured here and again before every matvec run */
    const size_t nbuf = (size_t)1 << 27; /* 1 GiB of uint64 */
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, 64, nbuf * 8)) return 1;
    for (size_t i = 0; i < nbuf; i++) buf[i] = i;
    sum_job sj = {.p = buf, .n = nbuf};
    double best_bw = 1e30;
    uint64_t check = 0;
#define BW_PASS()                                                                                         \
    do {                                                                                                  \
        double tb = now();                                                                                \
        mer_threadpool_run_parts(pool, 64, sum_task, &sj);                                                \
        tb = now() - tb;                                                                                  \
        if (tb < best_bw) best_bw = tb;                                                                   \
        for (int ii = 0; ii < 64; ii++) check += sj.part[ii];                                             \
    } while (0)
    for (int r = 0; r < 3; r++) BW_PASS();
    const int n_out = 14336, n_in = 8192;
    float *x = malloc(sizeof(float) * n_in), *y = malloc(sizeof(float) * n_out), *row = malloc(sizeof(float) * n_in);
    unsigned s = 1;
    for (int i = 0; i < n_in; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((s >> 8) / 16777216.0 - 0.5);
    }
    enum { NT = 4 };
    const mer_dtype types[NT] = {MER_DTYPE_Q8_0, MER_DTYPE_Q4_0, MER_DTYPE_BF16, MER_DTYPE_F16};
    uint8_t *wts[NT];
    size_t nbytes[NT];
    for (int ti = 0; ti < NT; ti++) {
        size_t rb = mer_dtype_row_bytes(types[ti], (size_t)n_in);
        nbytes[ti] = rb * (size_t)n_out;
        if (posix_memalign((void **)&wts[ti], 64, nbytes[ti])) return 1;
        for (int r = 0; r < n_out; r++) {
            for (int i = 0; i < n_in; i++) {
                s = s * 1664525u + 1013904223u;
                row[i] = (float)((s >> 8) / 16777216.0 - 0.5) * 0.1f;
            }
            mer_quantize_row(types[ti], row, wts[ti] + (size_t)r * rb, (size_t)n_in);
        }
    }
    /* round robin: every repetition measures the bandwidth and each dtype, so all see the same load */
    double best[NT] = {1e30, 1e30, 1e30, 1e30};
    for (int r = 0; r < reps; r++) {
        BW_PASS();
        for (int ti = 0; ti < NT; ti++) {
            double t0 = now();
            mer_cpu_matmul(c, y, (size_t)n_out, x, (size_t)n_in, wts[ti], types[ti], NULL, 1, n_in, n_out);
            t0 = now() - t0;
            if (t0 < best[ti]) best[ti] = t0;
        }
    }
    free(buf);
    const double bw = (double)nbuf * 8 / best_bw * 1e-9;
    printf("memory read bandwidth (streaming sum over 1 GiB, best of %d passes): %.1f GB/s   [checksum %llu]\n",
           3 + reps, bw, (unsigned long long)(check & 0xffff));
    for (int ti = 0; ti < NT; ti++) {
        double gbs = (double)nbytes[ti] / best[ti] * 1e-9;
        printf("matvec %-5s [%d x %d] %6.1f MB: %.1f GB/s of weights, ratio %.2f of memory bandwidth (%.2f ms)\n",
               mer_dtype_name(types[ti]), n_out, n_in, nbytes[ti] / 1e6, gbs, gbs / bw, best[ti] * 1e3);
        free(wts[ti]);
    }
    free(x), free(y), free(row);
    mer_cpu_ctx_free(c);
    mer_threadpool_free(pool);
    return 0;
}
