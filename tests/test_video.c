/* test_video.c - the FFmpeg frame reader (mer_video_*) against the ffmpeg command-line tool as the
 * reference: clips are made with ffmpeg's lavfi test sources (H.264 with B-frames in MP4, MPEG-4 part 2
 * in AVI, MJPEG in MKV, a JPEG photograph), and every frame mer decodes, at its own size and resized, must
 * equal byte for byte the frame the ffmpeg CLI writes with the same swscale flags (also VP9 in WebM and
 * MPEG-2 in MPEG-TS). Frame counts, fps and
 * duration come from ffprobe. The sampling rule is checked against numpy's arange. Errors: a missing
 * file, an audio-only file, a text file, a truncated MP4. Skips (with a SKIP line) when the build has no
 * FFmpeg (MER_MEDIA=0) or the ffmpeg CLI is absent. */
#include "test.h"
#include "mer.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MER_ARRAY_LEN_T(a) (sizeof(a) / sizeof((a)[0]))

#if MER_MEDIA

static char TMP[512];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    if (fread(b, 1, (size_t)len, f) != (size_t)len) len = 0;
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* ffprobe's count of frames (decoded) and the stream's avg_frame_rate. */
static long probe_frames(const char *path, double *fps) {
    char cmd[1024], out[256] = "";
    snprintf(cmd, sizeof cmd,
             "ffprobe -v error -select_streams v:0 -count_frames -show_entries stream=nb_read_frames,avg_frame_rate "
             "-of csv=p=0 '%s'", path);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    if (!fgets(out, sizeof out, p)) out[0] = 0;
    pclose(p);
    long num = 0, den = 1, n = -1;
    if (sscanf(out, "%ld/%ld,%ld", &num, &den, &n) != 3) return -1;
    *fps = den ? (double)num / den : 0;
    return n;
}

/* Checks frames `idx` of `path` (mer, at out_w x out_h or native) against the CLI's frames. */
static void check_clip(const char *path, const char *scale_vf, int out_w, int out_h, const int64_t *idx, size_t n) {
    char ref[600];
    snprintf(ref, sizeof ref, "%s/ref.rgb", TMP);
    if (sh("ffmpeg -v error -y -i '%s' %s -sws_flags bilinear -f rawvideo -pix_fmt rgb24 '%s'", path, scale_vf, ref)) {
        CHECK_MSG(0, "ffmpeg failed on %s", path);
        return;
    }
    size_t rn = 0;
    uint8_t *r = slurp(ref, &rn);
    mer_err err = {0};
    mer_video *v = NULL;
    CHECK_MSG(mer_video_open(path, &v, &err) == MER_OK, "%s", err.msg);
    if (!v) { free(r); return; }
    const mer_video_info *in = mer_video_get_info(v);
    int w = out_w ? out_w : in->width, h = out_h ? out_h : in->height;
    size_t fsz = (size_t)w * h * 3;
    CHECK_MSG(rn % fsz == 0 && rn / fsz == (size_t)in->n_frames, "%s: CLI gave %zu bytes = %zu frames of %dx%d, mer counts %lld",
              path, rn, rn / fsz, w, h, (long long)in->n_frames);
    uint8_t *got = malloc(n * fsz);
    CHECK_MSG(mer_video_read(v, idx, n, out_w, out_h, got, &err) == MER_OK, "%s", err.msg);
    for (size_t k = 0; k < n; k++) {
        size_t diff = 0;
        if ((size_t)(idx[k] + 1) * fsz <= rn)
            for (size_t b = 0; b < fsz; b++) diff += got[k * fsz + b] != r[(size_t)idx[k] * fsz + b];
        else diff = fsz;
        CHECK_MSG(diff == 0, "%s: frame %lld (%dx%d): %zu bytes differ from ffmpeg's", path, (long long)idx[k], w, h, diff);
    }
    free(got);
    free(r);
    mer_video_close(v);
}

static void test_clips(void) {
    char path[600];
    /* H.264, B-frames, GOP 12, 50 frames at 25 fps */
    snprintf(path, sizeof path, "%s/h264.mp4", TMP);
    if (sh("ffmpeg -v error -y -f lavfi -i testsrc2=size=176x144:rate=25 -frames:v 50 -c:v libx264 -g 12 -bf 2 "
           "-pix_fmt yuv420p '%s'", path) == 0) {
        double fps = 0;
        long nf = probe_frames(path, &fps);
        mer_err err = {0};
        mer_video *v = NULL;
        CHECK_MSG(mer_video_open(path, &v, &err) == MER_OK, "%s", err.msg);
        if (v) {
            const mer_video_info *in = mer_video_get_info(v);
            CHECK_EQ_INT(in->n_frames, nf);
            CHECK_EQ_INT(in->width, 176);
            CHECK_EQ_INT(in->height, 144);
            CHECK_NEAR(in->fps, fps, 1e-9);
            CHECK_NEAR(in->duration, 2.0, 0.05);
            CHECK_STR(in->codec, "h264");
            int64_t bad = 50;
            uint8_t px[176 * 144 * 3];
            CHECK(mer_video_read(v, &bad, 1, 0, 0, px, &err) == MER_E_RANGE);
            mer_video_close(v);
        }
        int64_t idx[] = {49, 0, 25, 25, 7, 13, 12, 48, 1};
        check_clip(path, "", 0, 0, idx, MER_ARRAY_LEN_T(idx));
        check_clip(path, "-vf scale=64:48", 64, 48, idx, MER_ARRAY_LEN_T(idx));
        int64_t all[50];
        for (int i = 0; i < 50; i++) all[i] = 49 - i;
        check_clip(path, "", 0, 0, all, 50);
    } else {
        printf("SKIP test_video: ffmpeg cannot encode H.264\n");
    }
    /* MPEG-4 part 2 in AVI, odd size, 30 frames at 10 fps */
    snprintf(path, sizeof path, "%s/mpeg4.avi", TMP);
    if (sh("ffmpeg -v error -y -f lavfi -i testsrc=size=97x61:rate=10 -frames:v 30 -c:v mpeg4 -g 7 '%s'", path) == 0) {
        int64_t idx[] = {29, 3, 3, 17, 0};
        check_clip(path, "", 0, 0, idx, MER_ARRAY_LEN_T(idx));
        check_clip(path, "-vf scale=200:120", 200, 120, idx, MER_ARRAY_LEN_T(idx));
    }
    /* MJPEG (full-range yuvj) in Matroska */
    snprintf(path, sizeof path, "%s/mjpeg.mkv", TMP);
    if (sh("ffmpeg -v error -y -f lavfi -i smptebars=size=120x90:rate=5 -frames:v 12 -c:v mjpeg '%s'", path) == 0) {
        int64_t idx[] = {0, 11, 6};
        check_clip(path, "", 0, 0, idx, MER_ARRAY_LEN_T(idx));
    }
    /* VP9 in WebM (alt-ref frames: packets without a frame of their own are common) */
    snprintf(path, sizeof path, "%s/vp9.webm", TMP);
    if (sh("ffmpeg -v error -y -f lavfi -i testsrc2=size=128x96:rate=20 -frames:v 40 -c:v libvpx-vp9 -deadline realtime "
           "-g 9 '%s'", path) == 0) {
        int64_t idx[] = {39, 20, 0, 9, 10, 38};
        check_clip(path, "", 0, 0, idx, MER_ARRAY_LEN_T(idx));
    }
    /* MPEG-2 in an MPEG transport stream (timestamps start at an offset, B-frames) */
    snprintf(path, sizeof path, "%s/mpeg2.ts", TMP);
    if (sh("ffmpeg -v error -y -f lavfi -i testsrc=size=160x120:rate=25 -frames:v 45 -c:v mpeg2video -g 15 -bf 2 "
           "'%s'", path) == 0) {
        int64_t idx[] = {44, 0, 16, 15, 30, 31, 2};
        check_clip(path, "", 0, 0, idx, MER_ARRAY_LEN_T(idx));
    }
    /* a real photograph (the face tests' input): one frame */
    const char *photo = "models/face-api/demo/sample2.jpg";
    struct stat sb;
    if (stat(photo, &sb) == 0) {
        int64_t idx[] = {0};
        check_clip(photo, "", 0, 0, idx, 1);
        check_clip(photo, "-vf scale=416:296", 416, 296, idx, 1);
    } else {
        printf("SKIP test_video: %s missing (run scripts/deps.sh)\n", photo);
    }
}

static void test_errors(void) {
    char path[600];
    mer_err err = {0};
    mer_video *v = NULL;
    snprintf(path, sizeof path, "%s/missing.mp4", TMP);
    CHECK(mer_video_open(path, &v, &err) == MER_E_IO && v == NULL);
    CHECK(strstr(err.msg, "missing.mp4") != NULL);
    /* audio only */
    snprintf(path, sizeof path, "%s/tone.wav", TMP);
    if (sh("ffmpeg -v error -y -f lavfi -i sine=frequency=440:duration=1 '%s'", path) == 0) {
        CHECK(mer_video_open(path, &v, &err) == MER_E_NOTFOUND && v == NULL);
        CHECK_MSG(strstr(err.msg, "no video stream") && strstr(err.msg, "tone.wav"), "%s", err.msg);
    }
    /* frames over 8192 pixels a side are refused */
    snprintf(path, sizeof path, "%s/wide.png", TMP);
    if (sh("ffmpeg -v error -y -f lavfi -i color=c=red:size=8200x16 -frames:v 1 '%s'", path) == 0) {
        mer_status st = mer_video_open(path, &v, &err);
        CHECK_MSG(st == MER_E_UNSUPPORTED && v == NULL && strstr(err.msg, "8200x16"), "%d %s", st, err.msg);
    }
    /* not media */
    snprintf(path, sizeof path, "%s/text.mp4", TMP);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("this is not a video, just some text\n", f);
        fclose(f);
    }
    CHECK(mer_video_open(path, &v, &err) == MER_E_FORMAT && v == NULL);
    CHECK_MSG(strstr(err.msg, "text.mp4") != NULL, "%s", err.msg);
    /* truncated MP4 (moov at the end, cut off) */
    char src[600];
    snprintf(src, sizeof src, "%s/h264.mp4", TMP);
    snprintf(path, sizeof path, "%s/cut.mp4", TMP);
    size_t n = 0;
    uint8_t *b = slurp(src, &n);
    if (b && n > 1000) {
        f = fopen(path, "wb");
        fwrite(b, 1, n / 2, f);
        fclose(f);
        mer_status st = mer_video_open(path, &v, &err);
        CHECK_MSG(st == MER_E_FORMAT && v == NULL, "cut.mp4: status %d (%s)", st, err.msg);
        /* the first half of the file with the header kept (faststart): frames are counted until the cut */
    }
    free(b);
}

/* np.arange(0, n_frames, n_frames / min(8, n_frames)).astype(int), padded with the last to 8. */
static void test_sampling(void) {
    FILE *p = popen("/usr/bin/python3 -c \"import numpy as np\n"
                    "for v in list(range(1, 40)) + [97, 250, 1000, 1001, 12345]:\n"
                    "  n = min(8, v); i = list(np.arange(0, v, v / n).astype(int)); i += [i[-1]] * (8 - len(i))\n"
                    "  print(v, *i)\"",
                    "r");
    if (!p) { CHECK_MSG(0, "python3 numpy"); return; }
    char line[512];
    int rows = 0;
    while (fgets(line, sizeof line, p)) {
        long long v, want[8];
        if (sscanf(line, "%lld %lld %lld %lld %lld %lld %lld %lld %lld", &v, &want[0], &want[1], &want[2], &want[3],
                   &want[4], &want[5], &want[6], &want[7]) != 9)
            continue;
        int64_t got[8];
        mer_video_sample_indices(v, 8, got);
        int ok = 1;
        for (int i = 0; i < 8; i++) ok &= got[i] == want[i];
        CHECK_MSG(ok, "sample_indices(%lld, 8)", v);
        rows++;
    }
    pclose(p);
    CHECK_EQ_INT(rows, 44);
}

static void run(void) {
    snprintf(TMP, sizeof TMP, "%s", MER_TEST_TMP "/video");
    if (system("command -v ffmpeg >/dev/null 2>&1") != 0) {
        printf("SKIP test_video: no ffmpeg command-line tool\n");
        return;
    }
    sh("mkdir -p '%s'", TMP);
    test_sampling();
    test_clips();
    test_errors();
}

#else
static void run(void) { printf("SKIP test_video: built without FFmpeg (MER_MEDIA=0)\n"); }
#endif
