/* bench_eval.c - time to score 20,000 Track2 samples (the MER2025 test set size) with the wheel
 * metric: label tables read from CSV and scored, best of several runs (the bar is 50 ms), beside the
 * reference's algorithm in Python (bench/ref_eval.py: the dict/set code of wheel.py) timed in the same
 * run on the same files, which must print the same score. */
#include "mer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(void) {
    const int N = 20000;
    /* label vocabulary: the real ground-truth rows of the sample, recombined */
    mer_err err = {0};
    mer_label_table src = {0};
    mer_wheels *w = NULL;
    if (mer_wheels_load("data/wheels", &w, &err) || mer_label_table_read("data/sample/check-openset.csv", "openset", &src, &err)) {
        fprintf(stderr, "bench_eval: %s\n", err.msg);
        return 1;
    }
    system("mkdir -p build-bench-tmp");
    FILE *g = fopen("build-bench-tmp/gt.csv", "w"), *p = fopen("build-bench-tmp/pred.csv", "w");
    fprintf(g, "name,openset\n");
    fprintf(p, "name,openset\n");
    srand(42);
    for (int i = 0; i < N; i++) {
        fprintf(g, "sample_%08d,\"%s\"\n", i, src.rows[rand() % src.n].labels);
        fprintf(p, "sample_%08d,\"%s\"\n", i, src.rows[rand() % src.n].labels);
    }
    fclose(g);
    fclose(p);
    double best_all = 1e9, best_score = 1e9, t0, t1, t2;
    mer_eval_result r;
    for (int rep = 0; rep < 7; rep++) {
        mer_label_table gt = {0}, pred = {0};
        t0 = now();
        if (mer_label_table_read("build-bench-tmp/gt.csv", "openset", &gt, &err) ||
            mer_label_table_read("build-bench-tmp/pred.csv", "openset", &pred, &err)) {
            fprintf(stderr, "bench_eval: %s\n", err.msg);
            return 1;
        }
        t1 = now();
        if (mer_eval_score(w, gt.rows, gt.n, pred.rows, pred.n, NULL, &r, &err)) {
            fprintf(stderr, "bench_eval: %s\n", err.msg);
            return 1;
        }
        t2 = now();
        if (t2 - t0 < best_all) best_all = t2 - t0;
        if (t2 - t1 < best_score) best_score = t2 - t1;
        mer_label_table_free(&gt);
        mer_label_table_free(&pred);
    }
    double t3 = now();
    mer_wheels *w2 = NULL;
    mer_wheels_load("data/wheels", &w2, &err);
    double t_load = now() - t3;
    mer_wheels_free(w2);
    printf("eval: %d samples: read 2 CSVs + score %.2f ms, score alone %.2f ms (bar: 50 ms); "
           "wheel tables load %.2f ms; score %.2f& %.2f& %.2f\n",
           N, best_all * 1e3, best_score * 1e3, t_load * 1e3, r.level_f[0] * 100, r.level_f[1] * 100, r.mean * 100);
    char line[256], score[64] = "";
    double ref_s = -1;
    snprintf(line, sizeof line, "%.2f& %.2f& %.2f", r.level_f[0] * 100, r.level_f[1] * 100, r.mean * 100);
    FILE *py = popen("/usr/bin/python3 bench/ref_eval.py data/wheels build-bench-tmp/gt.csv build-bench-tmp/pred.csv 2>&1", "r");
    char buf[256];
    while (py && fgets(buf, sizeof buf, py)) {
        if (sscanf(buf, "seconds %lf", &ref_s) == 1) continue;
        if (!score[0]) snprintf(score, sizeof score, "%.*s", (int)strcspn(buf, "\n"), buf);
    }
    if (py) pclose(py);
    if (ref_s > 0)
        printf("eval: reference algorithm in Python (bench/ref_eval.py) %.1f ms, score %s (%s); mer is %.0fx faster\n",
               ref_s * 1e3, score, strcmp(score, line) ? "DIFFERENT" : "same", ref_s / best_score);
    else
        printf("eval: reference timing skipped (/usr/bin/python3 bench/ref_eval.py did not run)\n");
    mer_label_table_free(&src);
    mer_wheels_free(w);
    return 0;
}
