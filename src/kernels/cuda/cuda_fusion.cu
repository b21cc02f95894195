/* cuda_fusion.cu - the fusion layers' own kernels (see cuda_fusion.h): the attention pooling without
 * softmax and the time mean (one block per feature matrix: a warp per row computes the scores into
 * shared memory, then each thread sums its columns over the rows), and the pre-fusion mix. Both are tiny
 * (8 rows of at most a few thousand columns); what they save is a host round trip, not arithmetic. */
#include "kernels/cuda/cuda_internal.cuh"
#include "kernels/cuda/cuda_fusion.h"

#define POOL_THREADS 512
#define POOL_MAX_ROWS 16384

struct pool_jobs {
    mer_cuda_pool_job j[2];
};

template <typename T>
__global__ void __launch_bounds__(POOL_THREADS) pool_kernel(pool_jobs jobs) {
    extern __shared__ float a[]; /* [n] scores */
    mer__pdl_launch();
    mer__pdl_wait();
    const mer_cuda_pool_job J = jobs.j[blockIdx.x];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int t = warp; t < J.n; t += n_warps) {
        const float *xr = J.x_dev + (size_t)t * J.ldx;
        float s = 0.f;
        for (int i = lane; i < J.d; i += 32) s += J.w_dev[i] * xr[i];
        s = mer__warp_sum(s);
        if (lane == 0) a[t] = s + J.b;
    }
    __syncthreads();
    T *att = (T *)J.att_dev, *mean = (T *)J.mean_dev;
    const float n = (float)J.n;
    for (int j = threadIdx.x; j < J.ld; j += blockDim.x) {
        float sa = 0.f, sm = 0.f;
        if (j < J.d)
            for (int t = 0; t < J.n; t++) {
                const float v = J.x_dev[(size_t)t * J.ldx + j];
                sa += a[t] * v;
                sm += v;
            }
        mer__stf(att + j, sa);
        mer__stf(mean + j, sm / n);
    }
}

mer_status mer_cuda_fusion_pool(mer_cuda *c, const mer_cuda_pool_job *jobs, int n_jobs, mer_dtype t, mer_err *err) {
    if (t != MER_DTYPE_BF16 && t != MER_DTYPE_F32)
        return mer__errf(err, MER_E_UNSUPPORTED, "cuda fusion_pool: output dtype %s (bf16 or f32)", mer_dtype_name(t));
    if (!jobs || n_jobs < 1 || n_jobs > 2)
        return mer__errf(err, MER_E_ARG, "cuda fusion_pool: %d jobs (1 or 2)", n_jobs);
    pool_jobs pj;
    int n_max = 1;
    for (int i = 0; i < n_jobs; i++) {
        const mer_cuda_pool_job *q = &jobs[i];
        if (!q->x_dev || !q->w_dev || !q->att_dev || !q->mean_dev || q->n < 1 || q->n > POOL_MAX_ROWS || q->d < 1 ||
            q->ldx < q->d || q->ld < q->d)
            return mer__errf(err, MER_E_ARG, "cuda fusion_pool: job %d: %d rows of %d (ldx %d, ld %d)", i, q->n, q->d,
                             q->ldx, q->ld);
        pj.j[i] = *q;
        if (q->n > n_max) n_max = q->n;
    }
    if (n_jobs == 1) pj.j[1] = pj.j[0];
    const size_t smem = (size_t)n_max * sizeof(float);
    if (t == MER_DTYPE_BF16) {
        if (smem > 48 * 1024) MER_CU(cudaFuncSetAttribute(pool_kernel<uint16_t>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        MER_CU(mer__launch(c, pool_kernel<uint16_t>, dim3(n_jobs), dim3(POOL_THREADS), smem, pj));
    } else {
        if (smem > 48 * 1024) MER_CU(cudaFuncSetAttribute(pool_kernel<float>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        MER_CU(mer__launch(c, pool_kernel<float>, dim3(n_jobs), dim3(POOL_THREADS), smem, pj));
    }
    return MER_OK;
}

template <typename T>
__global__ void mix_kernel(T *m, int ld, const float *__restrict__ w, const float *__restrict__ hv,
                           const float *__restrict__ ha, int d) {
    mer__pdl_launch();
    mer__pdl_wait();
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= ld) return;
    mer__stf(m + j, j < d ? w[0] * hv[j] + w[1] * ha[j] : 0.f);
}

mer_status mer_cuda_fusion_mix(mer_cuda *c, void *m, mer_dtype t, int ld, const float *w, const float *hv,
                               const float *ha, int d, mer_err *err) {
    if (t != MER_DTYPE_BF16 && t != MER_DTYPE_F32)
        return mer__errf(err, MER_E_UNSUPPORTED, "cuda fusion_mix: output dtype %s (bf16 or f32)", mer_dtype_name(t));
    if (!m || !w || !hv || !ha || d < 1 || ld < d)
        return mer__errf(err, MER_E_ARG, "cuda fusion_mix: %d of %d (or a NULL pointer)", d, ld);
    const dim3 grid((unsigned)((ld + 255) / 256)), block(256);
    if (t == MER_DTYPE_BF16) MER_CU(mer__launch(c, mix_kernel<uint16_t>, grid, block, 0, (uint16_t *)m, ld, w, hv, ha, d));
    else MER_CU(mer__launch(c, mix_kernel<float>, grid, block, 0, (float *)m, ld, w, hv, ha, d));
    return MER_OK;
}
