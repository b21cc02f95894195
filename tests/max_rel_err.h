/* max_rel_err.h - max |a - ref| / max |ref| over n values (NaN in a counts as infinitely far): the measure
 * the encoders' and fusion tests (through test.h) and bench_gpu_enc's parity report share, as the reference
 * scripts print it. */
#ifndef MER_TESTS_MAX_REL_ERR_H
#define MER_TESTS_MAX_REL_ERR_H

#include <math.h>
#include <stddef.h>

static inline double max_rel_err(const float *a, const float *ref, size_t n) {
    double m = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (d > m || d != d) m = d;
        if (fabs(ref[i]) > r) r = fabs(ref[i]);
    }
    return r > 0 ? m / r : m;
}

#endif
