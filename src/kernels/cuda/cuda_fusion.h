/* cuda_fusion.h - the two kernels of AffectGPT's fusion layers (models/affectgpt_cuda.c) that the backend
 * does not already have; the matrix products run on mer_cuda_gemm_bias (cuda_enc.h). Same conventions as
 * cuda_backend.h: asynchronous on the context's stream, one-line errors naming the failing call, *_dev
 * pointers in device memory, bf16 stored as uint16_t, outputs of a mer_dtype that is MER_DTYPE_BF16
 * (rounded to nearest even) or MER_DTYPE_F32.
 *   - the attention pooling WITHOUT softmax (the reference's quirk) and the time mean of up to two
 *     feature matrices in one launch;
 *   - the pre-fusion mix m = w0·hv + w1·ha with the two weights read on the device.
 * This header includes no CUDA header; the functions exist only in builds with MER_CUDA=1. */
#ifndef MER_KERNELS_CUDA_FUSION_H
#define MER_KERNELS_CUDA_FUSION_H

#include "core/dtype.h"
#include "kernels/cuda/cuda_backend.h"
#include "mer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One matrix X [n][d] (f32, row stride ldx) and its score vector w [d] (f32) with bias b:
 *   a_t     = b + sum_j w[j] X[t][j]           (f32)
 *   att[j]  = sum_t a_t X[t][j]                 j < d
 *   mean[j] = (sum_t X[t][j]) / n               j < d
 * and att[j] = mean[j] = 0 for d <= j < ld (the zero padding the products' inputs need). */
typedef struct mer_cuda_pool_job {
    const float *x_dev;
    int n, d, ldx;
    const float *w_dev;
    float b;
    void *att_dev, *mean_dev; /* [ld] each, of the call's dtype */
    int ld;
} mer_cuda_pool_job;

/* Runs n_jobs (1 or 2) pool jobs in one launch, one block each; outputs of dtype t. n (rows) 1..16384. */
mer_status mer_cuda_fusion_pool(mer_cuda *c, const mer_cuda_pool_job *jobs, int n_jobs, mer_dtype t, mer_err *err);

/* m[j] = w[0]·hv[j] + w[1]·ha[j] for j < d and 0 for d <= j < ld; w f32 [2], hv and ha f32 [d] (device);
 * m of dtype t. */
mer_status mer_cuda_fusion_mix(mer_cuda *c, void *m_dev, mer_dtype t, int ld, const float *w_dev, const float *hv_dev,
                               const float *ha_dev, int d, mer_err *err);

#ifdef __cplusplus
}
#endif

#endif
