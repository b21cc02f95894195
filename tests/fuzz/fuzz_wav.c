/* fuzz_wav.c - libFuzzer target: the WAV reader on arbitrary bytes, then resampling of what it decoded
 * to 16 kHz (rates the resampler accepts) and AffectGPT's clip rule. */
#include "io/wav.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mer_wav w;
    mer_err err;
    if (mer_wav_decode("fuzz.wav", data, size, &w, &err) == MER_OK) {
        MER_ASSERT(w.channels >= 1 && w.rate >= 1 && w.n_frames * (size_t)w.channels * (size_t)(w.bits / 8) <= size);
        size_t n = w.n_frames < 4000 ? w.n_frames : 4000; /* keep each run short: at most ~64k outputs */
        size_t cap = (size_t)w.rate * 4;
        if (n > cap) n = cap;
        float *y = NULL;
        size_t ny = 0;
        if (mer_resample(w.data, n, w.rate, 16000, &y, &ny, &err) == MER_OK) {
            float clips[2 * 1000];
            mer_audio_clips(y, ny, 1000, 2, 1, clips);
            free(y);
        }
        mer_wav_free(&w);
    } else {
        MER_ASSERT(err.msg[0] && strstr(err.msg, "fuzz.wav"));
    }
    return 0;
}
