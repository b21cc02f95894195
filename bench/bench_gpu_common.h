/* bench_gpu_common.h - what the device benchmarks share (bench_gpu_enc.c, bench_gpu_llm.c,
 * bench_gpu_pipeline.c): monotonic wall clocks, the median of a set of timings, the RESULT line gpu.sh
 * collects, and the failure exit (die, TRY). Define BENCH_NAME (the program's name, which opens every
 * error line) before including; TRY(call) reports through the including file's `mer_err e`.
 * Header-only (static inline): each benchmark is a single file. */
#ifndef MER_BENCH_GPU_COMMON_H
#define MER_BENCH_GPU_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/core.h"

#ifndef BENCH_NAME
#error "define BENCH_NAME before including bench_gpu_common.h"
#endif

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n), n >= 1 (sorts v in place). */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* "RESULT <key> <value> <unit>" on stdout, flushed. */
static inline void result(const char *key, double v, const char *unit) {
    printf("RESULT %s %.6g %s\n", key, v, unit);
    fflush(stdout);
}

/* "BENCH_NAME: what: message" on stderr, then exit(1). */
static inline void die(const char *what, const mer_err *err) {
    fprintf(stderr, "%s: %s: %s\n", BENCH_NAME, what, err->msg);
    exit(1);
}

/* A call that must succeed: on failure, die with the call's text and the file's `mer_err e`. */
#define TRY(call)                                                                                  \
    do {                                                                                           \
        if ((call) != MER_OK) die(#call, &e);                                                      \
    } while (0)

#endif
