/* cuda_common.cuh - what the backend's .cu files share: the context struct, the error-checking macros
 * that turn a CUDA or cuBLAS failure into a mer_status with a one-line message, the launch helper
 * (programmatic dependent launch when enabled), and small device helpers (bf16 conversion, warp
 * reductions, the griddepcontrol instructions). Internal to src/kernels/cuda. */
#ifndef MER_KERNELS_CUDA_COMMON_CUH
#define MER_KERNELS_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#define _Noreturn [[noreturn]]
extern "C" {
#include "core/core.h"
#include "core/dtype.h"
}
#undef _Noreturn
#include "kernels/cuda/cuda_backend.h"

// --- the context -------------------------------------------------------------------------------------

struct mer__cu_block {
    void *p;
    size_t size;
    int in_use;
};

#define MER__LT_PLANS 128

struct mer__lt_plan {
    int m, n, k, lda, ldb, ldc, dtype_d, beta1, f32in;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    int ok;
};

struct mer_cuda {
    int device;
    int n_sm;
    size_t smem_optin;
    char name[256];
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_ws;
    size_t lt_ws_size;
    int use_pdl;
    int gemm_mode;
    int gemv_tile; /* 0 auto, 1 or 2 tiles of 16 rows per GEMV block */
    int gemv_nw;   /* 0 auto, else warps per GEMV block (4, 8, 16) */
    /* caching allocator */
    mer__cu_block *blocks;
    size_t n_blocks, cap_blocks;
    size_t held, in_use;
    /* cuBLASLt plans by shape */
    mer__lt_plan plans[MER__LT_PLANS];
    int n_plans;
    cudaEvent_t ev0, ev1;
};

struct mer_cuda_graph {
    cudaGraphExec_t exec;
};

// --- errors ------------------------------------------------------------------------------------------

mer_status mer__cu_fail(mer_err *err, cudaError_t e, const char *what, const char *file, int line);
mer_status mer__cublas_fail(mer_err *err, cublasStatus_t s, const char *what, const char *file, int line);

#define MER_CU(call)                                                                               \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) return mer__cu_fail(err, e_, #call, __FILE__, __LINE__);            \
    } while (0)
#define MER_CUBLAS(call)                                                                           \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) return mer__cublas_fail(err, s_, #call, __FILE__, __LINE__); \
    } while (0)
/* After a kernel launch. */
#define MER_CU_LAUNCHED(name) MER_CU(cudaGetLastError())

// --- launching ---------------------------------------------------------------------------------------

/* Launches kernel<<<grid, block, smem, c->stream>>>(args...) with programmatic stream serialisation when
 * c->use_pdl: the kernel may start while the previous one drains, and must execute
 * mer__pdl_wait() before it reads anything the previous kernels wrote. Returns the launch error. */
template <typename... KArgs, typename... Args>
static inline cudaError_t mer__launch(const mer_cuda *c, void (*kernel)(KArgs...), dim3 grid, dim3 block,
                                      size_t smem, Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = c->stream;
    cudaLaunchAttribute attr[1];
    if (c->use_pdl) {
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
    }
    return cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...);
}

// --- device helpers ----------------------------------------------------------------------------------

/* Waits until the grids this one depends on have completed and their writes are visible (a no-op
 * when the kernel was launched without programmatic serialisation). Every kernel of the backend runs
 * it before touching data an earlier kernel wrote, in every thread, so that completion stays
 * transitive along the stream. */
__device__ __forceinline__ void mer__pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
/* Lets the next kernel in the stream be scheduled (its blocks then wait in mer__pdl_wait). */
__device__ __forceinline__ void mer__pdl_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}

__device__ __forceinline__ float mer__bf16_lo(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float mer__bf16_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }
__device__ __forceinline__ float mer__bf16(uint16_t v) { return __uint_as_float((uint32_t)v << 16); }
/* Round to nearest even (NaN kept NaN), as torch. */
__device__ __forceinline__ uint16_t mer__to_bf16(float f) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}
/* Loads and stores of activations stored as bf16 (uint16_t) or f32, in f32. */
__device__ __forceinline__ float mer__ldf(const uint16_t *p) { return mer__bf16(*p); }
__device__ __forceinline__ float mer__ldf(const float *p) { return *p; }
__device__ __forceinline__ void mer__stf(uint16_t *p, float v) { *p = mer__to_bf16(v); }
__device__ __forceinline__ void mer__stf(float *p, float v) { *p = v; }
/* 8 consecutive elements (16-byte aligned for bf16, 32-byte for f32) as f32. */
__device__ __forceinline__ void mer__ld8(const uint16_t *p, float *o) {
    uint4 v = *(const uint4 *)p;
    o[0] = mer__bf16_lo(v.x); o[1] = mer__bf16_hi(v.x); o[2] = mer__bf16_lo(v.y); o[3] = mer__bf16_hi(v.y);
    o[4] = mer__bf16_lo(v.z); o[5] = mer__bf16_hi(v.z); o[6] = mer__bf16_lo(v.w); o[7] = mer__bf16_hi(v.w);
}
__device__ __forceinline__ void mer__ld8(const float *p, float *o) {
    float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w; o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
}

__device__ __forceinline__ uint32_t mer__pack_bf16(float lo, float hi) {
    return (uint32_t)mer__to_bf16(lo) | ((uint32_t)mer__to_bf16(hi) << 16);
}

__device__ __forceinline__ float mer__warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float mer__warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* d = a(16x16 bf16, row) * b(16x8 bf16, col) + d, f32 accumulators (mma.sync m16n8k16). */
__device__ __forceinline__ void mer__mma_bf16(float *d, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                              uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* 16-byte load that bypasses L1 allocation (weights are streamed once), with the L2 fetching the 256-byte
 * segment around it (the neighbouring warps of a GEMV block read the rest of it). The size hint measured
 * on the H100 (scripts/gpu/ab.sh, same run): bf16 batch-1 decode 174.9 -> 184.9 tok/s, q8_0 288.1 ->
 * 294.1. Build with -DMER_LD_L2_HINT=0 (or 128) for the plain (128-byte) load. */
#ifndef MER_LD_L2_HINT
#define MER_LD_L2_HINT 256
#endif
__device__ __forceinline__ uint4 mer__ld_stream(const void *p) {
    uint4 v;
#if MER_LD_L2_HINT == 256
    asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
#elif MER_LD_L2_HINT == 128
    asm("ld.global.nc.L1::no_allocate.L2::128B.v4.u32 {%0,%1,%2,%3}, [%4];"
#else
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
#endif
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

#endif
