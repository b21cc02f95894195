/* cmd_faces.c - `mer faces VIDEO -o NAME.npy`: OpenFace-style face crops for AffectGPT's face inputs,
 * made with the built-in face detector instead of OpenFace. */
#include "cli.h"

#include <limits.h>
#include <string.h>

static const char *HELP =
    "usage: mer faces VIDEO -o NAME.npy [--frames N] [--size S] [--models DIR] [--threads N]\n"
    "\n"
    "Samples N frames of VIDEO (default 8, AffectGPT's rule floor(i * n / N)), finds the main face in each\n"
    "(as mer run does) and writes one crop per frame that has it: a square 1.2 times the detected box,\n"
    "resized bilinearly to S x S (default 112, OpenFace's aligned-face size), in BGR order like the\n"
    "openface_face/<name>/<name>.npy files AffectGPT reads (uint8 [n_faces, S, S, 3]). The crops follow the\n"
    "detector's box; they are not landmark-aligned as OpenFace's are.\n"
    "\n"
    "  -o FILE        output .npy (written atomically)\n"
    "  --frames N     frames to sample (default 8)\n"
    "  --size S       crop side in pixels (default 112)\n"
    "  --models DIR   folder with the face-api model files (see mer run --help)\n"
    "  --threads N    threads (default: one per CPU)\n";

int mer_cmd_faces(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    const char *video = NULL, *out = NULL, *frames_s = NULL, *size_s = NULL, *models = NULL, *threads_s = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "-o", &out)) || (r = cli_opt(argc, argv, &i, "--frames", &frames_s)) ||
            (r = cli_opt(argc, argv, &i, "--size", &size_s)) || (r = cli_opt(argc, argv, &i, "--models", &models)) ||
            (r = cli_opt(argc, argv, &i, "--threads", &threads_s))) {
            if (r < 0) return cli_fail("faces", "%s needs a value", argv[i]);
        } else if (argv[i][0] == '-' && argv[i][1]) return cli_fail("faces", "unknown option '%s' (see mer faces --help)", argv[i]);
        else if (!video) video = argv[i];
        else return cli_fail("faces", "one video at a time ('%s' is extra)", argv[i]);
    }
    if (!video || !out) return cli_fail("faces", "VIDEO and -o NAME.npy are required (see mer faces --help)");
    long n = 8, size = 112, th = 0;
    if (frames_s && (cli_parse_long(frames_s, &n) || n < 1 || n > 100000))
        return cli_fail("faces", "--frames must be an integer in [1, 100000]");
    if (size_s && (cli_parse_long(size_s, &size) || size < 1 || size > 4096))
        return cli_fail("faces", "--size must be an integer in [1, 4096]");
    if (threads_s && (cli_parse_long(threads_s, &th) || th < 0 || th > 1024))
        return cli_fail("faces", "--threads must be an integer in [0, 1024]");
#if !MER_MEDIA
    return cli_fail("faces", "this mer was built without FFmpeg (libavformat-dev etc. missing), so it cannot read videos");
#else
    char dir[PATH_MAX];
    if (cli_face_models(models, dir, sizeof dir))
        return cli_fail("faces", "face models not found (looked for %s; run scripts/deps.sh or pass --models DIR)", dir);
    mer_face_params p = mer_face_default_params();
    p.n_threads = (int)th;
    mer_err err = {0};
    mer_face *f = NULL;
    if (mer_face_load(dir, &p, &f, &err)) return cli_fail_err("faces", &err);
    size_t nw = 0;
    mer_status st = mer_face_write_crops(f, video, (int)n, (int)size, out, &nw, &err);
    mer_face_free(f);
    if (st) return cli_fail_err("faces", &err);
    printf("%s: %zu face crops of %ldx%ld (BGR) from %ld sampled frames\n", out, nw, size, size, n);
    return 0;
#endif
}
