/* test_clips.c - frame indices and audio clip starts against the reference formulas evaluated in
 * Python (numpy arange, Fractions as pytorchvideo; scripts/make_clip_fixtures.py). */
#include "test.h"
#include "core/sampling.h"
#include "io/wav.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

static void run(void) {
    FILE *f = fopen(FIXTURES "/pipeline/clips.json", "rb");
    CHECK(f != NULL);
    if (!f) return;
    char *b = calloc(1, 1 << 16);
    size_t got = fread(b, 1, (1 << 16) - 1, f);
    b[got] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(b), *it, *v;
    CHECK(j != NULL);
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "frames")) {
        int64_t vlen = (int64_t)cJSON_GetObjectItem(it, "vlen")->valuedouble, idx[8];
        mer__frame_indices(vlen, 8, idx);
        int k = 0;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(it, "idx")) {
            CHECK_MSG(idx[k] == (int64_t)v->valuedouble, "vlen %lld frame %d: %lld vs %lld", (long long)vlen, k,
                      (long long)idx[k], (long long)v->valuedouble);
            k++;
        }
        CHECK_EQ_INT(k, 8);
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "clips")) {
        int64_t n = (int64_t)cJSON_GetObjectItem(it, "n")->valuedouble;
        int64_t ne = n < 32000 ? 32000 : n;
        int k = 0;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(it, "starts")) {
            int64_t s = (int64_t)mer_audio_clip_start((size_t)ne, 16000, 8, 2, k);
            CHECK_MSG(s == (int64_t)v->valuedouble, "n %lld clip %d: %lld vs %lld", (long long)n, k, (long long)s,
                      (long long)v->valuedouble);
            k++;
        }
    }
    /* clip contents: a ramp cut at the starts, zero-padded under 2 s */
    float wav[40000], *out = malloc(8 * 32000 * sizeof *out);
    for (int i = 0; i < 40000; i++) wav[i] = (float)i;
    mer_audio_clips(wav, 40000, 16000, 8, 2, out);
    for (int c = 0; c < 8; c++) CHECK_NEAR(out[c * 32000], (float)mer_audio_clip_start(40000, 16000, 8, 2, c), 0);
    CHECK_NEAR(out[7 * 32000 + 31999], 39999.0f, 0);
    mer_audio_clips(wav, 1000, 16000, 8, 2, out);
    CHECK_NEAR(out[999], 999.0f, 0);
    CHECK_NEAR(out[1000], 0.0f, 0);
    CHECK_NEAR(out[5 * 32000 + 10], 10.0f, 0);
    free(out);
    cJSON_Delete(j);
    free(b);
}
