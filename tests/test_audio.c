/* test_audio.c - FFmpeg audio decoding against references: numpy's view of the same PCM (exact), and
 * the ffmpeg CLI's resampling (per channel, then averaged in numpy). Needs MEDIA=1. */
#include "test.h"

#if MER_MEDIA
#include "media/audio.h"

#include <stdlib.h>
#include <unistd.h>

#define PY "/usr/bin/python3"
#define T MER_TEST_TMP "/audio"

static float *read_f32(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *p = malloc((size_t)sz + 4);
    *n = fread(p, 4, (size_t)sz / 4, f);
    fclose(f);
    return p;
}

static void compare(const char *wav, int rate, const char *ref, double tol) {
    float *got = NULL, *want;
    size_t n = 0, nw = 0;
    mer_err err = {0};
    CHECK_MSG(mer__audio_decode(wav, rate, &got, &n, &err) == MER_OK, "%s: %s", wav, err.msg);
    want = read_f32(ref, &nw);
    CHECK_MSG(want != NULL, "reference %s missing", ref);
    if (!want || !got) { free(got); free(want); return; }
    CHECK_MSG(n == nw, "%s: %zu samples vs reference %zu", wav, n, nw);
    double maxd = 0;
    for (size_t i = 0; i < n && i < nw; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > maxd) maxd = d;
    }
    CHECK_MSG(maxd <= tol, "%s: max abs diff %g > %g", wav, maxd, tol);
    free(got);
    free(want);
}

static void run(void) {
    if (access(PY, X_OK) || system(PY " -c 'import numpy' 2>/dev/null") || system("ffmpeg -version >/dev/null 2>&1")) {
        printf("SKIP test_audio: needs %s with numpy and the ffmpeg CLI\n", PY);
        return;
    }
    int rc = system("mkdir -p " T " && " PY " - <<'EOF'\n"
                    "import numpy as np, wave\n"
                    "rng = np.random.default_rng(5)\n"
                    "def w(path, data, rate):\n"
                    "    f = wave.open(path, 'wb'); f.setnchannels(data.shape[1]); f.setsampwidth(2); f.setframerate(rate)\n"
                    "    f.writeframes(data.astype('<i2').tobytes()); f.close()\n"
                    "m = (rng.standard_normal((37013, 1)) * 4000).clip(-32768, 32767).astype(np.int16)\n"
                    "w('" T "/mono16k.wav', m, 16000)\n"
                    "(m[:, 0].astype(np.float32) / 32768).astype('<f4').tofile('" T "/mono16k.ref')\n"
                    "s = (rng.standard_normal((20011, 2)) * 4000).clip(-32768, 32767).astype(np.int16)\n"
                    "w('" T "/stereo16k.wav', s, 16000)\n"
                    "((s[:, 0].astype(np.float32) / 32768 + s[:, 1].astype(np.float32) / 32768) / 2).astype('<f4').tofile('" T "/stereo16k.ref')\n"
                    "t = np.arange(44100 * 3) / 44100.0\n"
                    "x = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 1000 * t)], 1) * 12000\n"
                    "w('" T "/stereo44k.wav', x.astype(np.int16), 44100)\n"
                    "EOF");
    CHECK(rc == 0);
    /* reference resampling: the ffmpeg CLI, channels kept, then averaged by numpy */
    rc = system("ffmpeg -loglevel error -y -i " T "/stereo44k.wav -ar 16000 -f f32le " T "/stereo44k.raw && "
                PY " -c \"import numpy as np; a=np.fromfile('" T "/stereo44k.raw','<f4').reshape(-1,2); "
                "a.mean(1).astype('<f4').tofile('" T "/stereo44k.ref')\" && "
                "ffmpeg -loglevel error -y -f lavfi -i testsrc=size=64x64:rate=10 -i " T "/stereo16k.wav -t 1.2 -c:v mpeg4 -c:a aac " T "/clip.mp4 && "
                "ffmpeg -loglevel error -y -i " T "/clip.mp4 -vn -f f32le " T "/clip.raw && "
                PY " -c \"import numpy as np; a=np.fromfile('" T "/clip.raw','<f4').reshape(-1,2); a.mean(1).astype('<f4').tofile('" T "/clip.ref')\"");
    CHECK(rc == 0);
    compare(T "/mono16k.wav", 16000, T "/mono16k.ref", 0);
    compare(T "/stereo16k.wav", 16000, T "/stereo16k.ref", 1e-7);
    compare(T "/stereo44k.wav", 16000, T "/stereo44k.ref", 1e-5);
    compare(T "/clip.mp4", 16000, T "/clip.ref", 1e-6); /* AAC in an mp4 (the video's audio stream) */

    float *p = NULL;
    size_t n = 0;
    mer_err err = {0};
    CHECK(mer__audio_decode(T "/missing.wav", 16000, &p, &n, &err) != MER_OK && strstr(err.msg, "missing.wav"));
    rc = system("ffmpeg -loglevel error -y -f lavfi -i testsrc=size=32x32:rate=5 -t 1 -c:v mpeg4 " T "/noaudio.mp4");
    CHECK(mer__audio_decode(T "/noaudio.mp4", 16000, &p, &n, &err) == MER_E_FORMAT && strstr(err.msg, "no audio stream"));
    rc |= system("head -c 3000 " T "/clip.mp4 > " T "/trunc.mp4; printf 'RIFF\\x10\\x00\\x00\\x00WAVEjunk' > " T "/bad.wav");
    CHECK(mer__audio_decode(T "/trunc.mp4", 16000, &p, &n, &err) != MER_OK || n == 0 || p != NULL);
    free(p);
    p = NULL;
    CHECK(mer__audio_decode(T "/bad.wav", 16000, &p, &n, &err) != MER_OK && strstr(err.msg, "bad.wav"));
}
#else
static void run(void) { printf("SKIP test_audio: built without FFmpeg (MEDIA=0)\n"); }
#endif
