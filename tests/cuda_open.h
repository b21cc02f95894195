/* cuda_open.h - how the GPU tests start: device 0, or a SKIP line and NULL when the machine has no CUDA
 * device (the test then passes). An init failure counts as a failed check. Include after test.h, in a
 * MER_CUDA build; free the result with mer_cuda_free. */
#ifndef MER_TESTS_CUDA_OPEN_H
#define MER_TESTS_CUDA_OPEN_H

#include <stdio.h>

#include "kernels/cuda/cuda_backend.h"

static mer_cuda *test_cuda_open(const char *test) {
    if (mer_cuda_device_count() == 0) {
        printf("SKIP %s: no CUDA device\n", test);
        return NULL;
    }
    mer_cuda *c = NULL;
    mer_err err = {0};
    const mer_status st = mer_cuda_init(0, &c, &err);
    CHECK_MSG(st == MER_OK && c, "mer_cuda_init(0): %s", err.msg);
    if (c) printf("  device: %s\n", mer_cuda_name(c));
    return c;
}

#endif
