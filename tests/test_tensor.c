/* test_tensor.c - tensor descriptors (contiguous strides, element addresses), views (reshape, slice,
 * permute, transpose) including the q8_0/q4_0 block rules, and the arena (alignment, mark/reset,
 * exhaustion reported as MER_E_NOMEM without allocating). Expected strides and offsets are worked out by
 * hand from the row-major layout. */
#include "test.h"

#include "core/tensor.h"

#include <stdint.h>

static void test_make(void) {
    float buf[2 * 3 * 4];
    for (int i = 0; i < 24; i++) buf[i] = (float)i;
    mer_tensor t = mer_tensor_3d(MER_DTYPE_F32, 2, 3, 4, buf);
    CHECK_EQ_INT(t.n_dims, 3);
    CHECK_EQ_INT(t.stride[2], 4);
    CHECK_EQ_INT(t.stride[1], 16);
    CHECK_EQ_INT(t.stride[0], 48);
    CHECK_EQ_INT(mer_tensor_nelem(&t), 24);
    CHECK_EQ_INT(mer_tensor_nbytes(&t), 96);
    CHECK_EQ_INT(mer_tensor_nrows(&t), 6);
    CHECK(mer_tensor_is_contiguous(&t));
    int64_t idx[3] = {1, 2, 3};
    CHECK(*(float *)mer_tensor_ptr(&t, idx) == 23.0f); /* 1*12 + 2*4 + 3 */
    CHECK_STR(mer_backend_name(t.backend), "cpu");
    CHECK_STR(mer_backend_name(MER_BACKEND_CUDA), "cuda");

    /* q8_0: rows of 64 elements = 2 blocks of 34 bytes; inner stride 0 */
    uint8_t qb[3 * 68];
    mer_tensor q = mer_tensor_2d(MER_DTYPE_Q8_0, 3, 64, qb);
    CHECK_EQ_INT(q.stride[1], 0);
    CHECK_EQ_INT(q.stride[0], 68);
    CHECK_EQ_INT(mer_tensor_nbytes(&q), 204);
    int64_t qi[2] = {2, 32};
    CHECK((uint8_t *)mer_tensor_ptr(&q, qi) == qb + 2 * 68 + 34);
    mer_tensor s = mer_tensor_make(MER_DTYPE_BF16, MER_BACKEND_CPU, 0, NULL, qb);
    CHECK_EQ_INT(mer_tensor_nelem(&s), 1);
    CHECK_EQ_INT(mer_tensor_nrows(&s), 1);
}

static void test_views(void) {
    float buf[24];
    for (int i = 0; i < 24; i++) buf[i] = (float)i;
    mer_tensor t = mer_tensor_3d(MER_DTYPE_F32, 2, 3, 4, buf), v;
    mer_err err = {0};
    /* reshape */
    int64_t sh[2] = {6, 4};
    CHECK_EQ_INT(mer_tensor_reshape(&t, 2, sh, &v, &err), MER_OK);
    CHECK(v.stride[0] == 16 && v.stride[1] == 4 && v.data == buf);
    int64_t bad[2] = {5, 5};
    CHECK_EQ_INT(mer_tensor_reshape(&t, 2, bad, &v, &err), MER_E_SHAPE);
    CHECK(strstr(err.msg, "24 elements into 25") != NULL);
    /* slice dim 1 rows [1, 3) */
    CHECK_EQ_INT(mer_tensor_slice(&t, 1, 1, 2, &v, &err), MER_OK);
    CHECK(v.shape[1] == 2 && v.data == buf + 4);
    int64_t i0[3] = {1, 1, 2};
    CHECK(*(float *)mer_tensor_ptr(&v, i0) == 22.0f); /* 12 + (1+1)*4 + 2 */
    CHECK(!mer_tensor_is_contiguous(&v));
    CHECK_EQ_INT(mer_tensor_reshape(&v, 2, sh, &v, &err), MER_E_SHAPE); /* not contiguous */
    CHECK_EQ_INT(mer_tensor_slice(&t, 2, 3, 2, &v, &err), MER_E_RANGE);
    CHECK_EQ_INT(mer_tensor_slice(&t, 3, 0, 1, &v, &err), MER_E_RANGE);
    /* an outer slice of a contiguous tensor stays contiguous */
    CHECK_EQ_INT(mer_tensor_slice(&t, 0, 1, 1, &v, &err), MER_OK);
    CHECK(mer_tensor_is_contiguous(&v) && v.data == buf + 12);
    /* transpose [2,3,4] -> [4,3,2]: element (a,b,c) of the view is (c,b,a) of t */
    CHECK_EQ_INT(mer_tensor_transpose(&t, 0, 2, &v, &err), MER_OK);
    CHECK(v.shape[0] == 4 && v.shape[2] == 2 && v.stride[0] == 4 && v.stride[2] == 48);
    int64_t i1[3] = {3, 2, 1};
    CHECK(*(float *)mer_tensor_ptr(&v, i1) == 23.0f);
    int perm_bad[3] = {0, 0, 1};
    CHECK_EQ_INT(mer_tensor_permute(&t, perm_bad, &v, &err), MER_E_ARG);
    /* permute [2,3,4] by (1,0,2) -> [3,2,4] */
    int perm[3] = {1, 0, 2};
    CHECK_EQ_INT(mer_tensor_permute(&t, perm, &v, &err), MER_OK);
    int64_t i2[3] = {2, 1, 0};
    CHECK(*(float *)mer_tensor_ptr(&v, i2) == 20.0f); /* t(1,2,0) = 12 + 8 */

    /* block types: slicing rows is fine, slicing inside a block is not, the blocks stay innermost */
    uint8_t qb[4 * 36];
    mer_tensor q = mer_tensor_2d(MER_DTYPE_Q4_0, 4, 64, qb);
    CHECK_EQ_INT(mer_tensor_slice(&q, 0, 1, 2, &v, &err), MER_OK);
    CHECK(v.data == qb + 36);
    CHECK_EQ_INT(mer_tensor_slice(&q, 1, 32, 32, &v, &err), MER_OK);
    CHECK(v.data == qb + 18);
    CHECK_EQ_INT(mer_tensor_slice(&q, 1, 16, 32, &v, &err), MER_E_RANGE);
    CHECK_EQ_INT(mer_tensor_transpose(&q, 0, 1, &v, &err), MER_E_UNSUPPORTED);
    int64_t qs[2] = {8, 32};
    CHECK_EQ_INT(mer_tensor_reshape(&q, 2, qs, &v, &err), MER_OK);
    CHECK_EQ_INT(v.stride[0], 18);
    int64_t qbad[2] = {16, 16};
    CHECK_EQ_INT(mer_tensor_reshape(&q, 2, qbad, &v, &err), MER_E_SHAPE);
}

static void test_arena(void) {
    mer_arena a;
    mer_err err = {0};
    CHECK_EQ_INT(mer_arena_init(&a, 1000, &err), MER_OK);
    CHECK_EQ_INT(a.cap, 1024); /* rounded up to MER_ALIGN */
    void *p1 = mer_arena_alloc(&a, 1, &err);
    void *p2 = mer_arena_alloc(&a, 100, &err);
    CHECK(p1 && p2 && ((uintptr_t)p1 % MER_ALIGN) == 0 && ((uintptr_t)p2 % MER_ALIGN) == 0);
    CHECK_EQ_INT((uint8_t *)p2 - (uint8_t *)p1, 64);
    size_t m = mer_arena_mark(&a);
    mer_tensor t;
    int64_t sh[2] = {3, 5};
    CHECK_EQ_INT(mer_arena_tensor(&a, MER_DTYPE_F32, 2, sh, &t, &err), MER_OK);
    CHECK(t.data == (uint8_t *)p2 + 128 && t.stride[0] == 20);
    CHECK_EQ_INT(a.used, 64 + 128 + 64);
    mer_arena_reset(&a, m);
    CHECK_EQ_INT(a.used, 192);
    CHECK_EQ_INT(a.peak, 256);
    CHECK(mer_arena_alloc(&a, 5000, &err) == NULL);
    CHECK_EQ_INT(err.status, MER_E_NOMEM);
    CHECK(strstr(err.msg, "5000 bytes requested") != NULL);
    CHECK(mer_arena_alloc(&a, SIZE_MAX, &err) == NULL); /* no overflow on rounding */
    int64_t qsh[1] = {33};
    CHECK_EQ_INT(mer_arena_tensor(&a, MER_DTYPE_Q8_0, 1, qsh, &t, &err), MER_E_SHAPE);
    int64_t huge[2] = {INT64_MAX / 2, 4};
    CHECK_EQ_INT(mer_arena_tensor(&a, MER_DTYPE_F32, 2, huge, &t, &err), MER_E_RANGE);
    mer_arena_free(&a);
    CHECK(a.base == NULL && a.cap == 0);
    mer_arena_free(&a); /* zeroed: no-op */
    /* wrapping caller memory */
    _Alignas(64) static uint8_t mem[256];
    mer_arena_init_buffer(&a, MER_BACKEND_CUDA, mem, sizeof mem);
    CHECK_EQ_INT(mer_arena_tensor(&a, MER_DTYPE_BF16, 1, qsh, &t, &err), MER_OK);
    CHECK(t.backend == MER_BACKEND_CUDA && t.data == mem);
    mer_arena_free(&a); /* not owned: nothing freed */
}

static void run(void) {
    test_make();
    test_views();
    test_arena();
}
