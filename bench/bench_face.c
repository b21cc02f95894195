/* bench_face.c - milliseconds per frame for face detection + expressions (every face found) with mer's
 * built-in face models, beside face-api's own runtime (node, tfjs 4.22 pure-JavaScript CPU backend,
 * scripts/ref_face.js bench) measured in the same run on the same demo photographs (1920 px wide).
 * Decoding is not timed on either side; the reference's figure includes making its input tensor from
 * the pixels. mer: mean of 3 passes over the photographs after a warm-up pass, all threads of the
 * machine and with 1 thread. Wall time and the process's CPU time are both printed: on a shared, loaded
 * machine the CPU time is the steadier figure. */
#include "mer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MODELS "models/face-api"
#define N_IMG 2

#if MER_MEDIA
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Wall ms per frame; *cpu_ms gets the process's CPU ms per frame. */
static double time_mer(uint8_t **rgb, const int *w, const int *h, int n_img, int n_threads, size_t *n_faces,
                       double *cpu_ms) {
    mer_err err = {0};
    mer_face_params p = mer_face_default_params();
    p.n_threads = n_threads;
    mer_face *f = NULL;
    if (mer_face_load(MODELS, &p, &f, &err)) {
        fprintf(stderr, "bench_face: %s\n", err.msg);
        exit(1);
    }
    double t0 = 0, c0 = 0;
    *n_faces = 0;
    for (int pass = 0; pass < 4; pass++) {
        if (pass == 1) t0 = now(), c0 = cpu_now();
        for (int i = 0; i < n_img; i++) {
            mer_face_box *b = NULL;
            size_t n = 0;
            if (mer_face_detect(f, rgb[i], w[i], h[i], (size_t)w[i] * 3, &b, &n, &err)) {
                fprintf(stderr, "bench_face: %s\n", err.msg);
                exit(1);
            }
            for (size_t k = 0; k < n; k++) {
                float probs[MER_FACE_N_EXPR];
                mer_face_expressions(f, rgb[i], w[i], h[i], (size_t)w[i] * 3, &b[k], probs, &err);
            }
            if (pass == 0) *n_faces += n;
            free(b);
        }
    }
    double ms = (now() - t0) * 1e3 / (3.0 * n_img);
    *cpu_ms = (cpu_now() - c0) * 1e3 / (3.0 * n_img);
    mer_face_free(f);
    return ms;
}
#endif

int main(void) {
#if !MER_MEDIA
    printf("bench_face: skipped (built without FFmpeg, which decodes the photographs)\n");
    return 0;
#else
    const char *files[N_IMG] = {MODELS "/demo/sample1.jpg", MODELS "/demo/sample2.jpg"};
    uint8_t *rgb[N_IMG];
    int w[N_IMG], h[N_IMG];
    mer_err err = {0};
    for (int i = 0; i < N_IMG; i++) {
        mer_video *v = NULL;
        if (mer_video_open(files[i], &v, &err)) {
            fprintf(stderr, "bench_face: %s (run scripts/deps.sh)\n", err.msg);
            return 1;
        }
        w[i] = mer_video_get_info(v)->width;
        h[i] = mer_video_get_info(v)->height;
        rgb[i] = malloc((size_t)w[i] * h[i] * 3);
        int64_t i0 = 0;
        if (mer_video_read(v, &i0, 1, 0, 0, rgb[i], &err)) {
            fprintf(stderr, "bench_face: %s\n", err.msg);
            return 1;
        }
        mer_video_close(v);
    }
    size_t n_faces = 0, n1 = 0;
    double cpu = 0, cpu1 = 0;
    double ms = time_mer(rgb, w, h, N_IMG, 0, &n_faces, &cpu);
    double ms1 = time_mer(rgb, w, h, N_IMG, 1, &n1, &cpu1);
    /* the reference, now, on the same photographs */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "node scripts/ref_face.js bench 1 %s %s 2>/dev/null", files[0], files[1]);
    FILE *p = popen(cmd, "r");
    double ref = -1, ref_cpu = -1;
    char line[256];
    while (p && fgets(line, sizeof line, p)) {
        if (!strncmp(line, "ref_face_ms_per_frame ", 22)) ref = atof(line + 22);
        if (!strncmp(line, "ref_face_cpu_ms_per_frame ", 26)) ref_cpu = atof(line + 26);
    }
    if (p) pclose(p);
    printf("face detection + expressions, %d photographs 1920 px wide, %zu faces (detector input 416):\n", N_IMG, n_faces);
    printf("                             wall ms/frame   CPU ms/frame\n");
    printf("  mer (all threads)          %10.1f   %12.1f\n", ms, cpu);
    printf("  mer (1 thread)             %10.1f   %12.1f\n", ms1, cpu1);
    if (ref > 0) {
        printf("  face-api on tfjs-cpu (JS)  %10.1f   %12.1f\n", ref, ref_cpu);
        printf("  speed-up (wall): %.1fx all threads, %.1fx 1 thread; CPU time ratio (1 thread): %.1fx\n", ref / ms,
               ref / ms1, ref_cpu / cpu1);
    } else {
        printf("  face-api reference: not available (node or models/npm/face missing: run scripts/deps.sh)\n");
    }
    for (int i = 0; i < N_IMG; i++) free(rgb[i]);
    return 0;
#endif
}
