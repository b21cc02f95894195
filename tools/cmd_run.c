/* cmd_run.c - `mer run VIDEO`: the built-in face expression recogniser over a video (face-api's models,
 * installed by scripts/deps.d/face.sh): a Track2 label set and a one-paragraph description, or with
 * --json every sampled frame's faces and probabilities. Also the models-folder lookup `mer faces` uses. */
#include "cli.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *HELP =
    "usage: mer run VIDEO [--frames N] [--json] [--models DIR] [--threads N] [--input-size S]\n"
    "\n"
    "Recognises the facial expressions in a video with mer's built-in models (face-api's TinyFaceDetector\n"
    "and FaceExpressionNet): samples N frames (default 8) as AffectGPT does (frame floor(i * n / N)),\n"
    "detects the faces in each, follows the main face (the one seen in the most frames, then the largest)\n"
    "and classifies its expression (neutral, happy, sad, angry, fearful, disgusted, surprised).\n"
    "\n"
    "Prints the open-vocabulary label set in the Track2 format, e.g. [happy, surprised]: every expression\n"
    "the main face shows as its most probable one with probability >= 0.5 in some frame, or with a mean\n"
    "probability >= 0.3, in order of appearance. Neutral is never a label (it is not on the emotion\n"
    "wheels), so a neutral face gives []. A second line describes which expressions were seen, when, and\n"
    "how confidently. A video without a face prints [] and 'no face found' (exit status 0).\n"
    "\n"
    "  --frames N       frames to sample (default 8)\n"
    "  --json           print one JSON object: per frame the faces (box x, y, w, h in pixels, score,\n"
    "                   the integer crop the expression net read, the 7 probabilities) and which one is\n"
    "                   the main face; the labels; the description\n"
    "  --models DIR     folder with the face-api model files (default: $MER_MODELS/face-api, then\n"
    "                   models/face-api beside the binary's parent folder, then ./models/face-api)\n"
    "  --threads N      threads (default: one per CPU)\n"
    "  --input-size S   detector input size, a multiple of 32 (default 416)\n";

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

int cli_face_models(const char *opt, char *out, size_t cap) {
    const char *probe = "tiny_face_detector_model-weights_manifest.json";
    char f[PATH_MAX + 64];
    if (opt) {
        snprintf(out, cap, "%s", opt);
        return 0;
    }
    const char *env = getenv("MER_MODELS");
    if (env && *env) {
        snprintf(out, cap, "%s/face-api", env);
        snprintf(f, sizeof f, "%s/%s", out, probe);
        if (is_file(f)) return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(out, cap, "%s/../models/face-api", exe);
        snprintf(f, sizeof f, "%s/%s", out, probe);
        if (is_file(f)) return 0;
    }
    snprintf(out, cap, "models/face-api");
    snprintf(f, sizeof f, "%s/%s", out, probe);
    return is_file(f) ? 0 : -1;
}

#if MER_MEDIA
static void json_str(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

static void print_json(const char *video, const mer_face_report *r) {
    printf("{\"video\": ");
    json_str(video);
    printf(", \"frames\": [");
    for (size_t t = 0; t < r->n_frames; t++) {
        const mer_face_frame *f = &r->frames[t];
        printf("%s\n  {\"index\": %lld, \"time\": %.4f, \"main\": %d, \"faces\": [", t ? "," : "", (long long)f->index,
               f->time, f->main);
        for (size_t i = 0; i < f->n_boxes; i++) {
            const mer_face_box *b = &f->boxes[i];
            printf("%s{\"box\": [%.4f, %.4f, %.4f, %.4f], \"score\": %.6f, \"crop\": [%d, %d, %d, %d], \"expressions\": {",
                   i ? ", " : "", b->x, b->y, b->w, b->h, b->score, b->crop_x, b->crop_y, b->crop_w, b->crop_h);
            for (int e = 0; e < MER_FACE_N_EXPR; e++)
                printf("%s\"%s\": %.6g", e ? ", " : "", mer_face_expr_name(e), f->probs[i][e]);
            printf("}}");
        }
        printf("]}");
    }
    printf("\n], \"frames_with_face\": %zu, \"mean\": {", r->n_with_face);
    for (int e = 0; e < MER_FACE_N_EXPR; e++) printf("%s\"%s\": %.6g", e ? ", " : "", mer_face_expr_name(e), r->mean[e]);
    printf("}, \"labels\": ");
    json_str(r->labels);
    printf(", \"description\": ");
    json_str(r->description);
    printf("}\n");
}
#endif

int mer_cmd_run(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    const char *video = NULL, *frames_s = NULL, *models = NULL, *threads_s = NULL, *size_s = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--frames", &frames_s)) || (r = cli_opt(argc, argv, &i, "--models", &models)) ||
            (r = cli_opt(argc, argv, &i, "--threads", &threads_s)) ||
            (r = cli_opt(argc, argv, &i, "--input-size", &size_s))) {
            if (r < 0) return cli_fail("run", "%s needs a value", argv[i]);
        } else if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_fail("run", "unknown option '%s' (see mer run --help)", argv[i]);
        else if (!video) video = argv[i];
        else return cli_fail("run", "one video at a time ('%s' is extra)", argv[i]);
    }
    if (!video) return cli_fail("run", "no video given (see mer run --help)");
    long n = 8, th = 0, sz = 416;
    if (frames_s && (cli_parse_long(frames_s, &n) || n < 1 || n > 100000))
        return cli_fail("run", "--frames must be an integer in [1, 100000]");
    if (threads_s && (cli_parse_long(threads_s, &th) || th < 0 || th > 1024))
        return cli_fail("run", "--threads must be an integer in [0, 1024]");
    if (size_s && (cli_parse_long(size_s, &sz) || sz < 32 || sz > 2048 || sz % 32))
        return cli_fail("run", "--input-size must be a multiple of 32 in [32, 2048]");
#if !MER_MEDIA
    (void)json;
    return cli_fail("run", "this mer was built without FFmpeg (libavformat-dev etc. missing), so it cannot read videos");
#else
    char dir[PATH_MAX];
    if (cli_face_models(models, dir, sizeof dir))
        return cli_fail("run", "face models not found (looked for %s; run scripts/deps.sh or pass --models DIR)", dir);
    mer_face_params p = mer_face_default_params();
    p.n_threads = (int)th;
    p.input_size = (int)sz;
    mer_err err = {0};
    mer_face *f = NULL;
    mer_face_report *r = NULL;
    if (mer_face_load(dir, &p, &f, &err)) return cli_fail_err("run", &err);
    if (mer_face_run_video(f, video, (int)n, &r, &err)) {
        mer_face_free(f);
        return cli_fail_err("run", &err);
    }
    if (json) print_json(video, r);
    else printf("%s\n%s\n", r->labels, r->description);
    mer_face_report_free(r);
    mer_face_free(f);
    return 0;
#endif
}
