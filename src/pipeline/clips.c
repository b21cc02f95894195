/* clips.c - frame indices and audio clip boundaries exactly as AffectGPT computes them (clips.h). */
#include "pipeline/clips.h"

#include <math.h>
#include <string.h>

__extension__ typedef __int128 i128; /* exact products of up to ~2^70 */

void mer__frame_indices(int64_t vlen, int n_out, int64_t *idx) {
    int64_t n = vlen < n_out ? vlen : n_out;
    if (n < 1) n = 1;
    /* np.arange(0, vlen, vlen/n): values k·(vlen/n) in float64, cast to int */
    double step = (double)vlen / (double)n;
    for (int64_t k = 0; k < n; k++) idx[k] = (int64_t)((double)k * step);
    for (int64_t k = n; k < n_out; k++) idx[k] = idx[n - 1];
}

int64_t mer__clip_start(int64_t n, int sr, int clip_s, int i, int n_clips) {
    if (n_clips < 2 || i == 0) return 0;
    /* D = n / sr as a double, taken exactly as M / 2^k (Python's Fraction(float)) */
    double d = (double)n / (double)sr;
    int e;
    double mant = frexp(d, &e); /* d = mant * 2^e, mant in [0.5, 1) */
    i128 M = (i128)ldexp(mant, 53);
    int k = 53 - e; /* d = M / 2^k; k >= 0 because d < 2^53 */
    if (k < 0) return 0;
    i128 two_k = (i128)1 << k;
    i128 max_start_num = M - (i128)clip_s * two_k; /* (D - clip_s) * 2^k */
    if (max_start_num <= 0) return 0;
    /* int(i * max_start / (n_clips-1) * sr): floor of a non-negative rational */
    i128 num = (i128)i * max_start_num * sr;
    i128 den = (i128)(n_clips - 1) * two_k;
    return (int64_t)(num / den);
}

void mer__audio_clips(const float *wav, int64_t n, int sr, int clip_s, int n_clips, float *out) {
    int64_t len = (int64_t)clip_s * sr;
    int64_t n_eff = n < len ? len : n; /* zero-padded to one clip */
    for (int i = 0; i < n_clips; i++) {
        int64_t s = mer__clip_start(n_eff, sr, clip_s, i, n_clips);
        float *o = out + (size_t)i * (size_t)len;
        for (int64_t j = 0; j < len; j++) o[j] = s + j < n ? wav[s + j] : 0.0f;
    }
}
