/* sampling.c - AffectGPT's frame sampling rule (sampling.h). */
#include "core/sampling.h"
#include "core/core.h"

#include <math.h>

void mer__frame_indices(int64_t n_total, int n_want, int64_t *idx) {
    MER_ASSERT(n_total >= 1 && n_want >= 1);
    int64_t k = n_total < n_want ? n_total : n_want;
    double step = (double)n_total / (double)k;
    int64_t len = (int64_t)ceil((double)n_total / step); /* np.arange's length, at most n_want */
    if (len > n_want) len = n_want;
    if (len < 1) len = 1;
    for (int64_t i = 0; i < len; i++) {
        int64_t v = (int64_t)((double)i * step);
        idx[i] = v < n_total ? v : n_total - 1;
    }
    for (int64_t i = len; i < n_want; i++) idx[i] = idx[len - 1];
}
