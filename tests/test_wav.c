/* test_wav.c - the WAV reader, the resampler and AffectGPT's audio clip rule against the Python stack
 * (scripts/make_wav_fixtures.py: torchaudio.load, torchaudio.functional.resample, pytorchvideo's
 * Fraction arithmetic, numpy's normalisation): six files (u8 / s16 / s24 / s32 / f32 / f64, 1-3
 * channels, 8-48 kHz, plain and WAVE_FORMAT_EXTENSIBLE) must decode to torchaudio's samples and resample
 * to its 16 kHz mono waveform within 1e-6; clip starts must be identical; malformed files fail with a
 * message naming the file. */
#include "test.h"

#include "io/npy.h"
#include "io/wav.h"
#include "models/hubert.h"

#include <stdlib.h>
#include <string.h>

#define DIR FIXTURES "/wav"

static mer_npz Z;

static float *get_f32(const char *key, size_t *n, int64_t *rows) {
    mer_npy a;
    mer_err err = {0};
    memset(&a, 0, sizeof a);
    if (mer__npz_get(&Z, key, &a, &err) != MER_OK || a.dtype != MER_DTYPE_F32) {
        CHECK_MSG(0, "%s: %s", key, err.msg);
        mer__npy_free(&a);
        return NULL;
    }
    float *p = malloc(a.n_elems * sizeof(float) + 1);
    memcpy(p, a.data, a.n_elems * sizeof(float));
    *n = a.n_elems;
    if (rows) *rows = a.n_dims == 2 ? a.shape[0] : 1;
    mer__npy_free(&a);
    return p;
}

static double max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || d != d) m = d;
    }
    return m;
}

static void check_file(const char *key, const char *file, int rate, int ch, int bits) {
    char path[256];
    snprintf(path, sizeof path, DIR "/%s", file);
    mer_err err = {0};
    mer_wav w;
    CHECK_MSG(mer_wav_read(path, &w, &err) == MER_OK, "%s: %s", path, err.msg);
    CHECK_EQ_INT(w.rate, rate);
    CHECK_EQ_INT(w.channels, ch);
    CHECK_EQ_INT(w.bits, bits);
    char k[64];
    size_t n;
    int64_t rows;
    snprintf(k, sizeof k, "%s_raw", key);
    float *raw = get_f32(k, &n, &rows); /* [C][256] */
    if (raw && w.data && rows == ch) {
        size_t head = n / (size_t)ch;
        double m = 0;
        for (int c = 0; c < ch; c++)
            for (size_t i = 0; i < head && i < w.n_frames; i++) {
                double d = fabs((double)w.data[i * ch + c] - raw[c * head + i]);
                if (d > m) m = d;
            }
        /* sox hands torchaudio 32-bit integers: float files come back within 2^-24 */
        CHECK_MSG(m <= 6e-8, "%s: samples differ from torchaudio.load by %.3g", file, m);
    }
    free(raw);
    mer_wav_free(&w);
    snprintf(k, sizeof k, "%s_16k", key);
    float *ref = get_f32(k, &n, NULL), *y = NULL;
    size_t ny = 0;
    CHECK_MSG(mer_wav_load_16k_mono(path, &y, &ny, &err) == MER_OK, "%s: %s", path, err.msg);
    if (ref && y) {
        CHECK_MSG(ny == n, "%s: %zu samples at 16 kHz, torchaudio %zu", file, ny, n);
        double m = max_abs(y, ref, ny < n ? ny : n);
        printf("%s: %d Hz x %d -> 16 kHz mono, max abs diff from torchaudio %.2g\n", file, rate, ch, m);
        CHECK_MSG(m <= 1e-6, "%s: resampled waveform differs by %.3g", file, m);
    }
    free(ref);
    free(y);
}

static void check_clips(void) {
    static const long ns[] = {1000, 31999, 32000, 32001, 48000, 99999, 160000, 160017, 1234567};
    for (size_t k = 0; k < MER_ARRAY_LEN(ns); k++) {
        char key[64];
        snprintf(key, sizeof key, "clip_starts_%ld", ns[k]);
        mer_npy a;
        mer_err err = {0};
        memset(&a, 0, sizeof a);
        if (mer__npz_get(&Z, key, &a, &err) != MER_OK) {
            CHECK_MSG(0, "%s: %s", key, err.msg);
            continue;
        }
        int ok = a.n_elems == 8;
        for (int i = 0; i < 8 && ok; i++) {
            int64_t v;
            memcpy(&v, a.data + i * 8, 8);
            ok = (int64_t)mer_audio_clip_start((size_t)ns[k], 16000, 8, 2, i) == v;
            if (!ok) printf("FAIL clip %d of %ld samples: start %zu, reference %lld\n", i, ns[k],
                            mer_audio_clip_start((size_t)ns[k], 16000, 8, 2, i), (long long)v);
        }
        CHECK_MSG(ok, "clip starts for %ld samples", ns[k]);
        mer__npy_free(&a);
    }
    /* contents: a ramp of 40000 samples; clip 7 starts at 8000; a short wave is zero-padded */
    float *wav = malloc(40000 * sizeof(float)), *clips = malloc(8 * 32000 * sizeof(float));
    for (int i = 0; i < 40000; i++) wav[i] = (float)i;
    mer_audio_clips(wav, 40000, 16000, 8, 2, clips);
    CHECK(clips[7 * 32000] == 8000.0f && clips[7 * 32000 + 31999] == 39999.0f);
    CHECK(clips[0] == 0.0f && clips[32000 + 5] == (float)(mer_audio_clip_start(40000, 16000, 8, 2, 1) + 5));
    mer_audio_clips(wav, 1000, 16000, 8, 2, clips);
    CHECK(clips[999] == 999.0f && clips[1000] == 0.0f && clips[31999] == 0.0f && clips[7 * 32000 + 999] == 999.0f);
    free(wav);
    free(clips);
}

static void check_norm(void) {
    size_t n, nj, nc;
    float *in = get_f32("norm_in", &n, NULL), *joint = get_f32("norm_joint", &nj, NULL), *clip = get_f32("norm_clip", &nc, NULL);
    if (in && joint && clip && n == 3000) {
        float *x = malloc(n * sizeof(float));
        memcpy(x, in, n * sizeof(float));
        mer_hubert_normalize(x, 3, 1000, 1);
        CHECK_MSG(max_abs(x, joint, n) <= 1e-5, "joint normalisation differs by %.3g", max_abs(x, joint, n));
        memcpy(x, in, n * sizeof(float));
        mer_hubert_normalize(x, 3, 1000, 0);
        CHECK_MSG(max_abs(x, clip, n) <= 1e-5, "per-clip normalisation differs by %.3g", max_abs(x, clip, n));
        free(x);
    }
    free(in);
    free(joint);
    free(clip);
}

static void check_odd_rate(void) {
    size_t n, nr;
    float *x = get_f32("odd_44101", &n, NULL), *ref = get_f32("odd_44101_16k", &nr, NULL), *y = NULL;
    mer_err err = {0};
    size_t ny = 0;
    if (x && ref) {
        CHECK(mer_resample(x, n, 44101, 16000, &y, &ny, &err) == MER_OK);
        CHECK_EQ_INT(ny, nr);
        double m = y && ny == nr ? max_abs(y, ref, ny) : 1;
        printf("44101 -> 16000 Hz (taps on the fly): max abs diff from torchaudio %.2g\n", m);
        CHECK_MSG(m <= 1e-6, "odd-rate resampling differs by %.3g", m);
    }
    free(x);
    free(ref);
    free(y);
}

static void check_errors(void) {
    mer_err err = {0};
    mer_wav w;
    static const uint8_t junk[] = "RIFF\x10\0\0\0WAVEjunk";
    CHECK(mer_wav_decode("junk.wav", junk, sizeof junk - 1, &w, &err) == MER_E_FORMAT);
    CHECK(strstr(err.msg, "junk.wav") != NULL);
    CHECK(mer_wav_decode("x.wav", (const uint8_t *)"hello", 5, &w, &err) == MER_E_FORMAT);
    /* fmt chunk claiming 1000 bytes in a 44-byte file */
    uint8_t hdr[44] = "RIFF\x24\0\0\0WAVEfmt \xe8\x03\0\0";
    CHECK(mer_wav_decode("trunc.wav", hdr, sizeof hdr, &w, &err) == MER_E_FORMAT);
    CHECK(strstr(err.msg, "offset 12") != NULL);
    /* a data chunk claiming more than the file holds is read to the end: 3 whole s16 mono frames */
    uint8_t f[50] = "RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data\xff\xff\xff\xff";
    f[44] = 0x00, f[45] = 0x40, f[46] = 0x00, f[47] = 0xc0, f[48] = 0x01, f[49] = 0x00;
    CHECK(mer_wav_decode("stream.wav", f, sizeof f, &w, &err) == MER_OK);
    CHECK(w.n_frames == 3 && w.data[0] == 0.5f && w.data[1] == -0.5f);
    mer_wav_free(&w);
    float x[4] = {0}, *y;
    size_t ny;
    CHECK(mer_resample(x, 4, 44101, 16000, &y, &ny, &err) == MER_OK && ny == 2); /* taps on the fly */
    free(y);
    CHECK(mer_resample(x, 4, 0, 16000, &y, &ny, &err) == MER_E_ARG);
}

static void run(void) {
    mer_err err = {0};
    memset(&Z, 0, sizeof Z);
    if (mer__npz_open(DIR "/expected.npz", &Z, &err) != MER_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    check_file("a", "a_s16_2ch_44100.wav", 44100, 2, 16);
    check_file("b", "b_s24_1ch_48000.wav", 48000, 1, 24);
    check_file("c", "c_f32_2ch_22050.wav", 22050, 2, 32);
    check_file("d", "d_u8_1ch_8000.wav", 8000, 1, 8);
    check_file("e", "e_s32_3ch_16000.wav", 16000, 3, 32);
    check_file("f", "f_f64_1ch_11025.wav", 11025, 1, 64);
    check_clips();
    check_norm();
    check_odd_rate();
    check_errors();
    mer__npz_close(&Z);
}
