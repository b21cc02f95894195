/* cuda_ops.cu - the small kernels of the CUDA backend: RMSNorm (f32 in, bf16 out), embedding gather,
 * dtype conversion, adds, SiLU*mul, the fused bias + RoPE NeoX + KV-cache store of an attention layer's
 * input, argmax (a cluster of 8 blocks per long row), and counter-based random fills for benchmark
 * weights. All are memory-bound one-pass kernels; each starts with the programmatic-dependent-launch
 * wait (see cuda_common.cuh). */
#include "kernels/cuda/cuda_internal.cuh"

#include <cooperative_groups.h>
#include <math.h>
#include <stdlib.h>

namespace cg = cooperative_groups;

static inline unsigned grid_for(size_t n, unsigned block) {
    size_t g = (n + block - 1) / block;
    if (g > 65535u * 16u) g = 65535u * 16u;
    return (unsigned)(g ? g : 1);
}

template <int NT>
__device__ __forceinline__ float block_sum(float v, float *sh) {
    v = mer__warp_sum(v);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < NT / 32 ? sh[lane] : 0.f;
        v = mer__warp_sum(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    float r = sh[0];
    __syncthreads();
    return r;
}

// --- RMSNorm -----------------------------------------------------------------------------------------

#define NORM_NT 256

template <typename T>
__global__ void __launch_bounds__(NORM_NT) rmsnorm_kernel(T *__restrict__ y, const float *__restrict__ x,
                                                          const float *__restrict__ w, int n, float eps) {
    __shared__ float sh[32];
    /* the sum of squares' roundings are explicit: mer_cuda_qgemv_norm (cuda_quant.cu) repeats them */
    mer__pdl_launch();
    mer__pdl_wait();
    const float *xr = x + (size_t)blockIdx.x * n;
    T *yr = y + (size_t)blockIdx.x * n;
    float s = 0.f;
    if ((n & 3) == 0) {
        for (int i = threadIdx.x * 4; i < n; i += NORM_NT * 4) {
            float4 v = *(const float4 *)(xr + i);
            s += __fmaf_rn(v.w, v.w, __fmaf_rn(v.z, v.z, __fmaf_rn(v.y, v.y, __fmul_rn(v.x, v.x))));
        }
    } else {
        for (int i = threadIdx.x; i < n; i += NORM_NT) s += xr[i] * xr[i];
    }
    s = block_sum<NORM_NT>(s, sh);
    const float rs = rsqrtf(s / (float)n + eps);
    if ((n & 3) == 0) {
        for (int i = threadIdx.x * 4; i < n; i += NORM_NT * 4) {
            float4 v = *(const float4 *)(xr + i);
            float4 ww = *(const float4 *)(w + i);
            if constexpr (sizeof(T) == 2) {
                uint2 o;
                o.x = mer__pack_bf16(v.x * rs * ww.x, v.y * rs * ww.y);
                o.y = mer__pack_bf16(v.z * rs * ww.z, v.w * rs * ww.w);
                *(uint2 *)(yr + i) = o;
            } else {
                *(float4 *)(yr + i) = make_float4(v.x * rs * ww.x, v.y * rs * ww.y, v.z * rs * ww.z, v.w * rs * ww.w);
            }
        }
    } else {
        for (int i = threadIdx.x; i < n; i += NORM_NT) mer__stf(yr + i, xr[i] * rs * w[i]);
    }
}

static mer_status check_t(mer_dtype t, const char *what, mer_err *err) {
    if (t != MER_DTYPE_BF16 && t != MER_DTYPE_F32)
        return mer__errf(err, MER_E_UNSUPPORTED, "cuda %s: activation dtype %s (bf16 or f32)", what, mer_dtype_name(t));
    return MER_OK;
}

mer_status mer_cuda_rmsnorm(mer_cuda *c, void *y, mer_dtype yt, const float *x, const float *w, int n_rows, int n,
                            float eps, mer_err *err) {
    if (n_rows < 1 || n < 1) return mer__errf(err, MER_E_ARG, "cuda rmsnorm: %d rows of %d", n_rows, n);
    mer_status st = check_t(yt, "rmsnorm", err);
    if (st) return st;
    if (yt == MER_DTYPE_BF16)
        MER_CU(mer__launch(c, rmsnorm_kernel<uint16_t>, dim3(n_rows), dim3(NORM_NT), 0, (uint16_t *)y, x, w, n, eps));
    else
        MER_CU(mer__launch(c, rmsnorm_kernel<float>, dim3(n_rows), dim3(NORM_NT), 0, (float *)y, x, w, n, eps));
    return MER_OK;
}

// --- embedding, conversions, adds --------------------------------------------------------------------

template <typename T>
__global__ void embed_kernel(float *__restrict__ y, const T *__restrict__ table, int64_t n_vocab, int n_cols,
                             const int32_t *__restrict__ ids) {
    mer__pdl_launch();
    mer__pdl_wait();
    int64_t id = ids[blockIdx.x];
    if (id < 0) id = 0;
    if (id >= n_vocab) id = n_vocab - 1;
    const T *src = table + id * n_cols;
    float *dst = y + (size_t)blockIdx.x * n_cols;
    for (int i = threadIdx.x; i < n_cols; i += blockDim.x) dst[i] = mer__ldf(src + i);
}

mer_status mer_cuda_embed(mer_cuda *c, float *y, const void *table, mer_dtype tt, int64_t n_vocab, int n_cols,
                          const int32_t *ids, int n, mer_err *err) {
    if (n < 1 || n_cols < 1 || n_vocab < 1) return mer__errf(err, MER_E_ARG, "cuda embed: %d ids", n);
    mer_status st = check_t(tt, "embed", err);
    if (st) return st;
    if (tt == MER_DTYPE_BF16)
        MER_CU(mer__launch(c, embed_kernel<uint16_t>, dim3(n), dim3(256), 0, y, (const uint16_t *)table, n_vocab, n_cols, ids));
    else
        MER_CU(mer__launch(c, embed_kernel<float>, dim3(n), dim3(256), 0, y, (const float *)table, n_vocab, n_cols, ids));
    return MER_OK;
}

__global__ void f32_to_bf16_kernel(uint16_t *__restrict__ y, const float *__restrict__ x, size_t n) {
    mer__pdl_launch();
    mer__pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = mer__to_bf16(x[i]);
}

mer_status mer_cuda_f32_to_bf16(mer_cuda *c, uint16_t *y, const float *x, size_t n, mer_err *err) {
    if (!n) return MER_OK;
    MER_CU(mer__launch(c, f32_to_bf16_kernel, dim3(grid_for(n, 256)), dim3(256), 0, y, x, n));
    return MER_OK;
}

__global__ void add_kernel(float *y, const float *a, const float *b, size_t n) {
    mer__pdl_launch();
    mer__pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = a[i] + b[i];
}

mer_status mer_cuda_add(mer_cuda *c, float *y, const float *a, const float *b, size_t n, mer_err *err) {
    if (!n) return MER_OK;
    MER_CU(mer__launch(c, add_kernel, dim3(grid_for(n, 256)), dim3(256), 0, y, a, b, n));
    return MER_OK;
}

__global__ void add_bias_kernel(float *y, const float *__restrict__ b, int n) {
    mer__pdl_launch();
    mer__pdl_wait();
    float *yr = y + (size_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] += b[i];
}

mer_status mer_cuda_add_bias(mer_cuda *c, float *y, const float *b, int n_rows, int n, mer_err *err) {
    if (n_rows < 1 || n < 1) return mer__errf(err, MER_E_ARG, "cuda add_bias: %d rows of %d", n_rows, n);
    MER_CU(mer__launch(c, add_bias_kernel, dim3(n_rows), dim3(256), 0, y, b, n));
    return MER_OK;
}

// --- SiLU * mul --------------------------------------------------------------------------------------

template <typename T>
__global__ void silu_mul_kernel(T *__restrict__ h, int ldh, const T *__restrict__ gu, int n_ff) {
    mer__pdl_launch();
    mer__pdl_wait();
    const T *gr = gu + (size_t)blockIdx.y * 2 * n_ff;
    T *hr = h + (size_t)blockIdx.y * ldh;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n_ff; i += gridDim.x * blockDim.x) {
        float g = mer__ldf(gr + i), u = mer__ldf(gr + n_ff + i);
        mer__stf(hr + i, g / (1.f + expf(-g)) * u);
    }
}

mer_status mer__silu_mul_ld(mer_cuda *c, void *h, int ldh, const void *gu, mer_dtype t, int n_tok, int n_ff,
                            mer_err *err) {
    if (n_tok < 1 || n_ff < 1 || n_tok > 65535) return mer__errf(err, MER_E_ARG, "cuda silu_mul: %d x %d", n_tok, n_ff);
    mer_status st = check_t(t, "silu_mul", err);
    if (st) return st;
    dim3 grid((n_ff + 255) / 256 < 64 ? (n_ff + 255) / 256 : 64, n_tok);
    if (t == MER_DTYPE_BF16)
        MER_CU(mer__launch(c, silu_mul_kernel<uint16_t>, grid, dim3(256), 0, (uint16_t *)h, ldh, (const uint16_t *)gu, n_ff));
    else
        MER_CU(mer__launch(c, silu_mul_kernel<float>, grid, dim3(256), 0, (float *)h, ldh, (const float *)gu, n_ff));
    return MER_OK;
}

mer_status mer_cuda_silu_mul(mer_cuda *c, void *h, const void *gu, mer_dtype t, int n_tok, int n_ff, mer_err *err) {
    return mer__silu_mul_ld(c, h, n_ff, gu, t, n_tok, n_ff, err);
}

// --- bias + RoPE NeoX + KV-cache store ---------------------------------------------------------------

template <typename T>
__global__ void qkv_rope_kernel(const float *__restrict__ qkv, const float *__restrict__ bias,
                                const float *__restrict__ inv_freq, T *__restrict__ q, T *__restrict__ kc,
                                T *__restrict__ vc, const int32_t *__restrict__ pos,
                                const int32_t *__restrict__ slot, int H, int KV, int d, int n_ctx) {
    extern __shared__ float cs[];  // cos [d/2], sin [d/2]
    mer__pdl_launch();
    mer__pdl_wait();
    const int t = blockIdx.x, half = d / 2;
    const int p = pos[t], sl = slot[t];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float a = (float)p * inv_freq[i];
        float s, co;
        sincosf(a, &s, &co);
        cs[i] = co;
        cs[half + i] = s;
    }
    __syncthreads();
    const int ld = (H + 2 * KV) * d;
    const float *row = qkv + (size_t)t * ld;
    for (int idx = threadIdx.x; idx < (H + KV) * half; idx += blockDim.x) {
        const int hh = idx / half, i = idx - hh * half;
        const int o1 = hh * d + i, o2 = o1 + half;
        float x1 = row[o1], x2 = row[o2];
        if (bias) {
            x1 += bias[o1];
            x2 += bias[o2];
        }
        const float co = cs[i], s = cs[half + i];
        const float y1 = x1 * co - x2 * s, y2 = x2 * co + x1 * s;
        T *dst;
        if (hh < H)
            dst = q + ((size_t)t * H + hh) * d;
        else
            dst = kc + (((size_t)sl * KV + (hh - H)) * n_ctx + p) * d;
        mer__stf(dst + i, y1);
        mer__stf(dst + i + half, y2);
    }
    for (int idx = threadIdx.x; idx < KV * d; idx += blockDim.x) {
        const int kv = idx / d, i = idx - kv * d;
        const int o = (H + KV) * d + idx;
        float v = row[o] + (bias ? bias[o] : 0.f);
        mer__stf(vc + (((size_t)sl * KV + kv) * n_ctx + p) * d + i, v);
    }
}

mer_status mer_cuda_qkv_rope(mer_cuda *c, const float *qkv, const float *bias, const float *inv_freq, void *q, void *kc,
                             void *vc, mer_dtype t, const int32_t *pos, const int32_t *slot, int n_tok, int H, int KV,
                             int d, int n_ctx, mer_err *err) {
    if (n_tok < 1 || H < 1 || KV < 1 || d < 2 || d % 2 || n_ctx < 1)
        return mer__errf(err, MER_E_ARG, "cuda qkv_rope: n_tok %d, heads %d/%d, d %d", n_tok, H, KV, d);
    mer_status st = check_t(t, "qkv_rope", err);
    if (st) return st;
    const size_t smem = (size_t)d * sizeof(float);
    if (t == MER_DTYPE_BF16)
        MER_CU(mer__launch(c, qkv_rope_kernel<uint16_t>, dim3(n_tok), dim3(256), smem, qkv, bias, inv_freq, (uint16_t *)q,
                           (uint16_t *)kc, (uint16_t *)vc, pos, slot, H, KV, d, n_ctx));
    else
        MER_CU(mer__launch(c, qkv_rope_kernel<float>, dim3(n_tok), dim3(256), smem, qkv, bias, inv_freq, (float *)q,
                           (float *)kc, (float *)vc, pos, slot, H, KV, d, n_ctx));
    return MER_OK;
}

// --- argmax ------------------------------------------------------------------------------------------

#define ARGMAX_NT 1024

/* Candidate i with value v for (best, bi): the first, a larger one, or a NaN (torch treats NaN as max);
 * bi == n means "none yet". */
__device__ __forceinline__ void am_take(float v, int i, float &best, int &bi, int n) {
    if (v > best || (bi == n && !(v <= best))) {
        best = v;
        bi = i;
    }
}

__device__ __forceinline__ void am_warp(float &best, int &bi) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float v = __shfl_xor_sync(0xffffffffu, best, o);
        int j = __shfl_xor_sync(0xffffffffu, bi, o);
        if (v > best || (v == best && j < bi)) {
            best = v;
            bi = j;
        }
    }
}

/* The block's (best, bi) from every thread's: a warp reduction, one slot per warp in sv/si, then warp 0
 * reduces the slots. The result is valid in warp 0 only. Ties: the lowest index. */
__device__ __forceinline__ void am_block(float &best, int &bi, float *sv, int *si) {
    am_warp(best, bi);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sv[warp] = best;
        si[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        best = sv[lane];
        bi = si[lane];
        am_warp(best, bi);
    }
}

__global__ void __launch_bounds__(ARGMAX_NT) argmax_kernel(int32_t *out, const float *__restrict__ x, int n) {
    __shared__ float sv[32];
    __shared__ int si[32];
    mer__pdl_launch();
    mer__pdl_wait();
    const float *xr = x + (size_t)blockIdx.x * n;
    float best = -INFINITY;
    int bi = n;
    for (int i = threadIdx.x; i < n; i += ARGMAX_NT) am_take(xr[i], i, best, bi, n);
    am_block(best, bi, sv, si);
    if (threadIdx.x == 0) out[blockIdx.x] = bi < n ? bi : 0;
}

/* The same over AM_CL blocks of a thread-block cluster per row (a row of 152064 is too long for one SM's
 * bandwidth): each block reduces its slice, then block 0 reads the blocks' results from their shared
 * memory (distributed shared memory), so no workspace and one launch. Ties: the lowest index. */
#define AM_CL 8

__global__ void __cluster_dims__(AM_CL, 1, 1) __launch_bounds__(ARGMAX_NT)
    argmax_cl_kernel(int32_t *out, const float *__restrict__ x, int n) {
    __shared__ float sv[32];
    __shared__ int si[32];
    mer__pdl_launch();
    mer__pdl_wait();
    cg::cluster_group cl = cg::this_cluster();
    const int rank = (int)cl.block_rank();
    const float *xr = x + (size_t)blockIdx.y * n;
    const int chunk = ((n + AM_CL - 1) / AM_CL + 3) & ~3;
    const int beg = min(n, rank * chunk), end = min(n, beg + chunk);
    float best = -INFINITY;
    int bi = n;
    if ((n & 3) == 0) { /* beg, end and the row are 16-byte aligned */
        for (int i = beg + threadIdx.x * 4; i < end; i += ARGMAX_NT * 4) {
            const float4 v = *(const float4 *)(xr + i);
            am_take(v.x, i, best, bi, n);
            am_take(v.y, i + 1, best, bi, n);
            am_take(v.z, i + 2, best, bi, n);
            am_take(v.w, i + 3, best, bi, n);
        }
    } else {
        for (int i = beg + threadIdx.x; i < end; i += ARGMAX_NT) am_take(xr[i], i, best, bi, n);
    }
    am_block(best, bi, sv, si);
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (threadIdx.x == 0) {
        sv[0] = best;
        si[0] = bi;
    }
    cl.sync();
    if (rank == 0 && warp == 0) {
        best = -INFINITY;
        bi = n;
        if (lane < AM_CL) {
            best = *cl.map_shared_rank(&sv[0], lane);
            bi = *cl.map_shared_rank(&si[0], lane);
        }
        am_warp(best, bi);
        if (lane == 0) out[blockIdx.y] = bi < n ? bi : 0;
    }
    cl.sync(); /* the blocks' shared memory stays until block 0 has read it */
}

mer_status mer_cuda_argmax(mer_cuda *c, int32_t *out, const float *x, int n_rows, int n, mer_err *err) {
    if (n_rows < 1 || n < 1) return mer__errf(err, MER_E_ARG, "cuda argmax: %d rows of %d", n_rows, n);
    static int cl = -1;
    if (cl < 0) {
        const char *e = getenv("MER_CUDA_ARGMAX_CL");
        cl = e ? atoi(e) != 0 : 1; /* MER_CUDA_ARGMAX_CL=0: one block per row (H100, 152064: 7.6 -> 4.3 us) */
    }
    if (cl && n >= 8 * ARGMAX_NT && n_rows <= 65535)
        MER_CU(mer__launch(c, argmax_cl_kernel, dim3(AM_CL, n_rows), dim3(ARGMAX_NT), 0, out, x, n));
    else
        MER_CU(mer__launch(c, argmax_kernel, dim3(n_rows), dim3(ARGMAX_NT), 0, out, x, n));
    return MER_OK;
}

// --- random fills ------------------------------------------------------------------------------------

__device__ __forceinline__ float hash_uniform(uint64_t seed, uint64_t i) {  // [-1, 1)
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

__global__ void fill_bf16_kernel(uint16_t *p, size_t n, uint64_t seed, float a) {
    mer__pdl_launch();
    mer__pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = mer__to_bf16(a * hash_uniform(seed, i));
}

__global__ void fill_f32_kernel(float *p, size_t n, uint64_t seed, float mean, float a) {
    mer__pdl_launch();
    mer__pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = mean + a * hash_uniform(seed, i);
}

mer_status mer_cuda_fill_uniform_bf16(mer_cuda *c, uint16_t *p, size_t n, uint64_t seed, float a, mer_err *err) {
    if (!n) return MER_OK;
    MER_CU(mer__launch(c, fill_bf16_kernel, dim3(grid_for(n, 256)), dim3(256), 0, p, n, seed, a));
    return MER_OK;
}

mer_status mer_cuda_fill_uniform_f32(mer_cuda *c, float *p, size_t n, uint64_t seed, float mean, float a,
                                     mer_err *err) {
    if (!n) return MER_OK;
    MER_CU(mer__launch(c, fill_f32_kernel, dim3(grid_for(n, 256)), dim3(256), 0, p, n, seed, mean, a));
    return MER_OK;
}
