/* cuda_internal.cuh - functions shared between the backend's .cu files (not part of the C API). */
#ifndef MER_KERNELS_CUDA_INTERNAL_CUH
#define MER_KERNELS_CUDA_INTERNAL_CUH

#include "kernels/cuda/cuda_common.cuh"

/* Rows the GEMV takes at most (the n extent of one mma tile). */
#define MER__GEMV_MAX_TOK 8

/* The tensor-core GEMV (cuda_gemv.cu); arguments checked by the caller. */
mer_status mer__gemv(mer_cuda *c, void *y, int ldy, const uint16_t *x, int ldx, const uint16_t *w, int n_tok,
                     int n_in, int n_out, mer_cuda_epi epi, mer_err *err);

/* h[t][i] (row stride ldh) = silu(gu[t][i]) * gu[t][n_ff + i], bf16 or f32 (cuda_ops.cu). */
mer_status mer__silu_mul_ld(mer_cuda *c, void *h, int ldh, const void *gu, mer_dtype t, int n_tok, int n_ff,
                            mer_err *err);

#endif
