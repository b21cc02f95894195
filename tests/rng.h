/* rng.h - the xorshift64 stream test_qwen2_device and test_cuda_llm draw token ids and vectors from.
 * Define RNG_SEED (each test its own) before including; `rng` is the state (a test may save and restore
 * it to draw the same values again). rnd(n): 0..n-1; rndf(a): uniform in [-a, a). */
#ifndef MER_TESTS_RNG_H
#define MER_TESTS_RNG_H

#include <stdint.h>

static uint64_t rng = RNG_SEED;
static inline uint32_t rnd32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static inline int32_t rnd(int n) { return (int32_t)(rnd32() % (uint32_t)n); }
static inline float rndf(float a) { return a * (2.0f * (float)(rnd32() & 0xFFFFFF) / (float)0x1000000 - 1.0f); }

#endif
