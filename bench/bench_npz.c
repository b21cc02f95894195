/* bench_npz.c - reading and writing the MER2025 label npz files at the size of the real test set
 * (20,000 samples): mer's reader/writers against numpy (np.load / np.savez_compressed, through
 * /usr/bin/python3), both measured in this run on the same files. Prints milliseconds per call and the
 * ratio numpy / mer. Skips the numpy side (printing SKIP) when python3 with numpy is missing. */
#include "io/labels.h"
#include "io/npy.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { N = 20000, REPS = 10 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* numpy's time in ms for one python statement run REPS times (after one warm-up), or -1 */
static double numpy_ms(const char *setup, const char *stmt) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"\nimport numpy as np, time, json\n%s\n%s\nt=time.perf_counter()\n"
             "for _ in range(%d):\n    %s\nprint((time.perf_counter()-t)/%d*1e3)\"",
             setup, stmt, REPS, stmt, REPS);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    double ms = -1;
    if (fscanf(p, "%lf", &ms) != 1) ms = -1;
    pclose(p);
    return ms;
}

static void report(const char *what, double ours, double ref) {
    if (ref < 0) printf("%-28s mer %8.2f ms   numpy SKIP\n", what, ours);
    else printf("%-28s mer %8.2f ms   numpy %8.2f ms   numpy/mer %.1fx\n", what, ours, ref, ref / ours);
}

int main(void) {
    static char names[N][32], items[N][64], reasons[N][200];
    mer_labeled rows[N], rrows[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "sample_%08d", i);
        snprintf(items[i], sizeof items[i], "[happy, excited, 开心 %d]", i);
        snprintf(reasons[i], sizeof reasons[i], "The person smiles and speaks cheerfully; 他看起来很开心。 sample %d", i);
        rows[i] = (mer_labeled){names[i], items[i]};
        rrows[i] = (mer_labeled){names[i], reasons[i]};
    }
    char p1[128], p2[128];
    snprintf(p1, sizeof p1, "/tmp/mer_bench_npz_%ld_openset.npz", (long)getpid());
    snprintf(p2, sizeof p2, "/tmp/mer_bench_npz_%ld_result.npz", (long)getpid());
    mer_err err;
    double t = now();
    for (int r = 0; r < REPS; r++)
        if (mer_openset_npz_write(p1, rows, N, &err)) { printf("error: %s\n", err.msg); return 1; }
    double w1 = (now() - t) / REPS * 1e3;
    t = now();
    for (int r = 0; r < REPS; r++)
        if (mer_result_npz_write(p2, rrows, N, &err)) { printf("error: %s\n", err.msg); return 1; }
    double w2 = (now() - t) / REPS * 1e3;
    double rd[2];
    const char *paths[2] = {p1, p2};
    for (int k = 0; k < 2; k++) {
        t = now();
        for (int r = 0; r < REPS; r++) {
            mer_label_table tab;
            if (mer_label_table_read(paths[k], NULL, &tab, &err)) { printf("error: %s\n", err.msg); return 1; }
            mer_label_table_free(&tab);
        }
        rd[k] = (now() - t) / REPS * 1e3;
    }
    int py = system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
    char setup[1024];
    snprintf(setup, sizeof setup,
             "names=['sample_%%08d'%%i for i in range(%d)]\n"
             "items=['[happy, excited, \\u5f00\\u5fc3 %%d]'%%i for i in range(%d)]\n"
             "d=np.load('%s', allow_pickle=True)['name2reason'].tolist()",
             N, N, p2);
    char s1[256], s2[256], s3[256], s4[256];
    snprintf(s1, sizeof s1, "np.savez_compressed('%s.np.npz', filenames=names, fileitems=items)", p1);
    snprintf(s2, sizeof s2, "np.savez_compressed('%s.np.npz', name2reason=d)", p2);
    snprintf(s3, sizeof s3, "z=np.load('%s'); a=z['filenames'].tolist(); b=z['fileitems'].tolist()", p1);
    snprintf(s4, sizeof s4, "r=np.load('%s', allow_pickle=True)['name2reason'].tolist()", p2);
    printf("label npz files of %d samples (%d calls each)\n", N, REPS);
    report("write *-openset.npz", w1, py ? numpy_ms(setup, s1) : -1);
    report("write name2reason npz", w2, py ? numpy_ms(setup, s2) : -1);
    report("read *-openset.npz", rd[0], py ? numpy_ms(setup, s3) : -1);
    report("read name2reason npz", rd[1], py ? numpy_ms(setup, s4) : -1);
    if (!py) printf("SKIP numpy reference: /usr/bin/python3 with numpy not available\n");
    char tmp[300];
    unlink(p1);
    unlink(p2);
    snprintf(tmp, sizeof tmp, "%s.np.npz", p1);
    unlink(tmp);
    snprintf(tmp, sizeof tmp, "%s.np.npz", p2);
    unlink(tmp);
    return 0;
}
