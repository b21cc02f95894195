/* cuda_enc.cu - the kernels of the device encoders (see cuda_enc.h): LayerNorm (+GELU, with a row
 * remapping so that one call can gather the valid rows of padded sequences), bias + activation, the
 * bias/residual-epilogue GEMM on cuBLASLt (plans cached per shape in a process-wide table under a
 * mutex, with a plain GEMM + bias pass where cuBLASLt has no epilogue algorithm), non-causal attention
 * (flash-attention-2 with mma.sync for bf16 and head size 64: a block takes 64 query rows of one head of
 * one sequence, K/V tiles of 64 keys in shared memory, P kept in registers as the A operand of P V and V
 * read with ldmatrix.trans; a warp-per-query f32 kernel for the rest), CLIP's patch im2col and embedding
 * assembly, HuBERT's first conv layer fused with LayerNorm and GELU (a warp per frame, the weights in
 * shared memory), the positional conv's diagonal reduction and time sums. */
#include "kernels/cuda/cuda_internal.cuh"
#include "kernels/cuda/cuda_flash.cuh"
#include "kernels/cuda/cuda_enc.h"

#include <math.h>
#include <mutex>

#define LOG2E 1.4426950408889634f

static inline unsigned grid_for(size_t n, unsigned block) {
    size_t g = (n + block - 1) / block;
    if (g > 65535u * 16u) g = 65535u * 16u;
    return (unsigned)(g ? g : 1);
}

static mer_status check_t(mer_dtype t, const char *what, mer_err *err) {
    if (t != MER_DTYPE_BF16 && t != MER_DTYPE_F32)
        return mer__errf(err, MER_E_UNSUPPORTED, "cuda %s: activation dtype %s (bf16 or f32)", what, mer_dtype_name(t));
    return MER_OK;
}

__device__ __forceinline__ float act_f(float x, int act) {
    if (act == MER_CUDA_ACT_GELU) return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
    if (act == MER_CUDA_ACT_QUICK_GELU) return x / (1.f + expf(-1.702f * x));
    return x;
}

// --- LayerNorm ---------------------------------------------------------------------------------------

#define LN_WARPS 8

template <typename T>
__global__ void __launch_bounds__(LN_WARPS * 32) ln_kernel(T *y, int ldy, const float *x, int ldx,
                                                           const float *__restrict__ w, const float *__restrict__ b,
                                                           int n_rows, int n, int per, int stride, float eps, int act) {
    mer__pdl_launch();
    mer__pdl_wait();
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
    if (r >= n_rows) return;
    const float *xr = x + ((size_t)(r / per) * stride + r % per) * ldx;
    T *yr = y + (size_t)r * ldy;
    float s = 0.f;
    for (int i = lane; i < n; i += 32) s += xr[i];
    const float mean = mer__warp_sum(s) / (float)n;
    float v = 0.f;
    for (int i = lane; i < n; i += 32) {
        const float d = xr[i] - mean;
        v += d * d;
    }
    const float rs = 1.f / sqrtf(mer__warp_sum(v) / (float)n + eps);
    for (int i = lane; i < n; i += 32) {
        float o = (xr[i] - mean) * rs;
        if (w) o *= w[i];
        if (b) o += b[i];
        mer__stf(yr + i, act_f(o, act));
    }
}

/* The same for rows of n = 128 * V elements (V float4 per lane) held in registers: one read of the row. */
template <typename T, int V>
__global__ void __launch_bounds__(LN_WARPS * 32) ln_reg_kernel(T *y, int ldy, const float *x, int ldx,
                                                               const float *__restrict__ w,
                                                               const float *__restrict__ b, int n_rows, int per,
                                                               int stride, float eps, int act) {
    mer__pdl_launch();
    mer__pdl_wait();
    constexpr int n = 128 * V;
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
    if (r >= n_rows) return;
    const float *xr = x + ((size_t)(r / per) * stride + r % per) * ldx;
    float4 v[V];
    float s = 0.f;
#pragma unroll
    for (int j = 0; j < V; j++) {
        v[j] = *(const float4 *)(xr + (j * 32 + lane) * 4);
        s += (v[j].x + v[j].y) + (v[j].z + v[j].w);
    }
    const float mean = mer__warp_sum(s) / (float)n;
    float q = 0.f;
#pragma unroll
    for (int j = 0; j < V; j++) {
        v[j].x -= mean, v[j].y -= mean, v[j].z -= mean, v[j].w -= mean;
        q += (v[j].x * v[j].x + v[j].y * v[j].y) + (v[j].z * v[j].z + v[j].w * v[j].w);
    }
    const float rs = 1.f / sqrtf(mer__warp_sum(q) / (float)n + eps);
    T *yr = y + (size_t)r * ldy;
#pragma unroll
    for (int j = 0; j < V; j++) {
        const int i = (j * 32 + lane) * 4;
        float4 o = make_float4(v[j].x * rs, v[j].y * rs, v[j].z * rs, v[j].w * rs);
        if (w) {
            const float4 ww = *(const float4 *)(w + i);
            o.x *= ww.x, o.y *= ww.y, o.z *= ww.z, o.w *= ww.w;
        }
        if (b) {
            const float4 bb = *(const float4 *)(b + i);
            o.x += bb.x, o.y += bb.y, o.z += bb.z, o.w += bb.w;
        }
        o.x = act_f(o.x, act), o.y = act_f(o.y, act), o.z = act_f(o.z, act), o.w = act_f(o.w, act);
        if constexpr (sizeof(T) == 2) {
            uint2 u;
            u.x = mer__pack_bf16(o.x, o.y);
            u.y = mer__pack_bf16(o.z, o.w);
            *(uint2 *)(yr + i) = u;
        } else {
            *(float4 *)(yr + i) = o;
        }
    }
}

template <typename T>
static cudaError_t launch_ln(mer_cuda *c, dim3 grid, T *y, int ldy, const float *x, int ldx, const float *w,
                             const float *b, int n_rows, int n, int per, int stride, float eps, int act) {
    const dim3 block(LN_WARPS * 32);
    const int aligned = ((uintptr_t)x | (uintptr_t)y | (uintptr_t)w | (uintptr_t)b) % 16 == 0 && ldx % 4 == 0 &&
                        ldy % 4 == 0;
    if (aligned && n % 128 == 0) switch (n / 128) {
        case 1: return mer__launch(c, ln_reg_kernel<T, 1>, grid, block, 0, y, ldy, x, ldx, w, b, n_rows, per, stride, eps, act);
        case 2: return mer__launch(c, ln_reg_kernel<T, 2>, grid, block, 0, y, ldy, x, ldx, w, b, n_rows, per, stride, eps, act);
        case 4: return mer__launch(c, ln_reg_kernel<T, 4>, grid, block, 0, y, ldy, x, ldx, w, b, n_rows, per, stride, eps, act);
        case 6: return mer__launch(c, ln_reg_kernel<T, 6>, grid, block, 0, y, ldy, x, ldx, w, b, n_rows, per, stride, eps, act);
        case 8: return mer__launch(c, ln_reg_kernel<T, 8>, grid, block, 0, y, ldy, x, ldx, w, b, n_rows, per, stride, eps, act);
        case 10: return mer__launch(c, ln_reg_kernel<T, 10>, grid, block, 0, y, ldy, x, ldx, w, b, n_rows, per, stride, eps, act);
        case 12: return mer__launch(c, ln_reg_kernel<T, 12>, grid, block, 0, y, ldy, x, ldx, w, b, n_rows, per, stride, eps, act);
        case 16: return mer__launch(c, ln_reg_kernel<T, 16>, grid, block, 0, y, ldy, x, ldx, w, b, n_rows, per, stride, eps, act);
        default: break;
        }
    return mer__launch(c, ln_kernel<T>, grid, block, 0, y, ldy, x, ldx, w, b, n_rows, n, per, stride, eps, act);
}

mer_status mer_cuda_layernorm(mer_cuda *c, void *y, mer_dtype yt, int ldy, const float *x, int ldx, const float *w,
                              const float *b, int n_rows, int n, int per, int stride, float eps, mer_cuda_act act,
                              mer_err *err) {
    if (n_rows < 1 || n < 1 || ldx < n || ldy < n || per < 1 || stride < per)
        return mer__errf(err, MER_E_ARG, "cuda layernorm: %d rows of %d (ld %d/%d, %d of %d)", n_rows, n, ldx, ldy, per,
                         stride);
    mer_status st = check_t(yt, "layernorm", err);
    if (st) return st;
    dim3 grid((n_rows + LN_WARPS - 1) / LN_WARPS);
    if (yt == MER_DTYPE_BF16)
        MER_CU(launch_ln<uint16_t>(c, grid, (uint16_t *)y, ldy, x, ldx, w, b, n_rows, n, per, stride, eps, (int)act));
    else
        MER_CU(launch_ln<float>(c, grid, (float *)y, ldy, x, ldx, w, b, n_rows, n, per, stride, eps, (int)act));
    return MER_OK;
}

// --- bias + activation -------------------------------------------------------------------------------

/* x[r][i] (row stride ld) = act(x[r][i] + bias[i]); 8 elements per thread when n % 8 == 0 and ld % 8 == 0. */
template <typename T>
__global__ void bias_act_kernel(T *x, int ld, const float *__restrict__ bias, int n_rows, int n, int act, int vec) {
    mer__pdl_launch();
    mer__pdl_wait();
    if (vec) {
        const int n8 = n / 8;
        const size_t total = (size_t)n_rows * n8;
        for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
             idx += (size_t)gridDim.x * blockDim.x) {
            const size_t r = idx / n8;
            const int i = (int)(idx - r * n8) * 8;
            T *p = x + r * ld + i;
            float v[8];
            mer__ld8(p, v);
            if (bias) {
                float bv[8];
                mer__ld8(bias + i, bv);
#pragma unroll
                for (int j = 0; j < 8; j++) v[j] += bv[j];
            }
#pragma unroll
            for (int j = 0; j < 8; j++) v[j] = act_f(v[j], act);
            if constexpr (sizeof(T) == 2) {
                uint4 o;
                o.x = mer__pack_bf16(v[0], v[1]);
                o.y = mer__pack_bf16(v[2], v[3]);
                o.z = mer__pack_bf16(v[4], v[5]);
                o.w = mer__pack_bf16(v[6], v[7]);
                *(uint4 *)p = o;
            } else {
                *(float4 *)p = make_float4(v[0], v[1], v[2], v[3]);
                *(float4 *)(p + 4) = make_float4(v[4], v[5], v[6], v[7]);
            }
        }
        return;
    }
    const size_t total = (size_t)n_rows * n;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        const size_t r = idx / n;
        const int i = (int)(idx - r * n);
        T *p = x + r * ld + i;
        mer__stf(p, act_f(mer__ldf(p) + (bias ? bias[i] : 0.f), act));
    }
}

static mer_status bias_act_ld(mer_cuda *c, void *x, mer_dtype t, int ld, const float *bias, int n_rows, int n,
                              mer_cuda_act act, mer_err *err) {
    if (n_rows < 1 || n < 1 || ld < n) return mer__errf(err, MER_E_ARG, "cuda bias_act: %d rows of %d", n_rows, n);
    mer_status st = check_t(t, "bias_act", err);
    if (st) return st;
    const int vec = n % 8 == 0 && ld % 8 == 0 && ((uintptr_t)x & 31) == 0 && ((uintptr_t)bias & 31) == 0;
    const unsigned g = grid_for((size_t)n_rows * (vec ? n / 8 : n), 256);
    if (t == MER_DTYPE_BF16)
        MER_CU(mer__launch(c, bias_act_kernel<uint16_t>, dim3(g), dim3(256), 0, (uint16_t *)x, ld, bias, n_rows, n, (int)act,
                           vec));
    else
        MER_CU(mer__launch(c, bias_act_kernel<float>, dim3(g), dim3(256), 0, (float *)x, ld, bias, n_rows, n, (int)act, vec));
    return MER_OK;
}

mer_status mer_cuda_bias_act(mer_cuda *c, void *x, mer_dtype t, const float *bias, int n_rows, int n, mer_cuda_act act,
                             mer_err *err) {
    return bias_act_ld(c, x, t, n, bias, n_rows, n, act, err);
}

// --- GEMM with a bias / residual epilogue ------------------------------------------------------------

#define ENC_PLANS 256
#define TUNE_ALGOS 8
#define TUNE_MIN_MACS (1LL << 26) /* smaller products take cuBLASLt's first choice untimed */

struct enc_plan {
    int dev, m, n, k, ldb, ldc, y_bf16, f32in, bias, align, tf32; /* align: bytes the pointers are aligned to */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    int epi; /* the bias runs in the epilogue */
};

static std::mutex g_plan_mu;
static enc_plan g_plans[ENC_PLANS];
static int g_n_plans;

static void plan_destroy(enc_plan *p) {
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    p->op = NULL;
    p->la = p->lb = p->lc = NULL;
}

/* Times candidate algorithms (1 warm-up, 3 timed runs each, on the stream, into a scratch output) and
 * returns the index of the fastest that ran, or -1 when none could be timed. */
static int tune(mer_cuda *c, enc_plan *p, const cublasLtMatmulHeuristicResult_t *res, int n_res, const void *x,
                const void *w, const float *bias) {
    void *scratch = NULL;
    const size_t es = p->y_bf16 ? 2 : 4;
    mer_err e2;
    memset(&e2, 0, sizeof e2);
    if (mer_cuda_alloc(c, (size_t)p->ldc * p->n * es, &scratch, &e2) != MER_OK) return -1;
    if (bias && cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias) !=
                    CUBLAS_STATUS_SUCCESS) {
        mer_cuda_release(c, scratch);
        return -1;
    }
    const float alpha = 1.f, beta = 0.f;
    int best = -1;
    float best_ms = 1e30f;
    for (int i = 0; i < n_res; i++) {
        if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
        int ok = 1;
        for (int r = 0; r < 4 && ok; r++) {
            if (r == 1 && cudaEventRecord(c->ev0, c->stream) != cudaSuccess) ok = 0;
            if (ok && cublasLtMatmul(c->lt, p->op, &alpha, w, p->la, x, p->lb, &beta, scratch, p->lc, scratch, p->lc,
                                     &res[i].algo, c->lt_ws, c->lt_ws_size, c->stream) != CUBLAS_STATUS_SUCCESS)
                ok = 0;
        }
        float ms = 0.f;
        if (!ok || cudaEventRecord(c->ev1, c->stream) != cudaSuccess || cudaEventSynchronize(c->ev1) != cudaSuccess ||
            cudaEventElapsedTime(&ms, c->ev0, c->ev1) != cudaSuccess) {
            (void)cudaGetLastError();
            continue;
        }
        if (ms < best_ms) best_ms = ms, best = i;
    }
    (void)cudaStreamSynchronize(c->stream);
    mer_cuda_release(c, scratch);
    return best;
}

/* Builds the descriptors and picks an algorithm (the fastest of cuBLASLt's first candidates, timed on
 * these operands, for products big enough to matter); with want_epi, the bias epilogue (f32 bias).
 * Returns 1 when an algorithm was found, 0 when cuBLASLt has none for the epilogue form, -1 on a
 * failure (*st and err set). */
static int plan_try(mer_cuda *c, enc_plan *p, int want_epi, const void *x, const void *w, const float *bias,
                    mer_status *st, mer_err *err) {
    const cudaDataType_t at = p->f32in ? CUDA_R_32F : CUDA_R_16BF;
    const cudaDataType_t dt = p->y_bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t ct = p->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res[TUNE_ALGOS];
    int n_res = 0, pick = 0;
    cublasStatus_t s;
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
#define LT(call)                                                                                   \
    do {                                                                                           \
        s = (call);                                                                                \
        if (s != CUBLAS_STATUS_SUCCESS) goto fail;                                                 \
    } while (0)
    LT(cublasLtMatmulDescCreate(&p->op, ct, CUDA_R_32F));
    LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (want_epi) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bt = CUDA_R_32F;
        LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    LT(cublasLtMatrixLayoutCreate(&p->la, at, p->k, p->m, p->k));
    LT(cublasLtMatrixLayoutCreate(&p->lb, at, p->k, p->n, p->ldb));
    LT(cublasLtMatrixLayoutCreate(&p->lc, dt, p->m, p->n, p->ldc));
    LT(cublasLtMatmulPreferenceCreate(&pref));
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->lt_ws_size,
                                            sizeof c->lt_ws_size));
    {
        const uint32_t al = (uint32_t)p->align;
        LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al));
        LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al));
        LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al));
        LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al));
    }
    s = cublasLtMatmulAlgoGetHeuristic(c->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, TUNE_ALGOS, res, &n_res);
    cublasLtMatmulPreferenceDestroy(pref);
    pref = NULL;
    if (s != CUBLAS_STATUS_SUCCESS || n_res < 1) {
        plan_destroy(p);
        if (want_epi) return 0;
        if (s == CUBLAS_STATUS_SUCCESS)
            *st = mer__errf(err, MER_E_UNSUPPORTED, "cuda_enc.cu: cuBLASLt has no algorithm for %dx%dx%d", p->m, p->n,
                            p->k);
        else
            *st = mer__cublas_fail(err, s, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
        return -1;
    }
    static const int no_tune = getenv("MER_CUDA_ENC_TUNE") && !strcmp(getenv("MER_CUDA_ENC_TUNE"), "0");
    if (n_res > 1 && !no_tune && (long long)p->m * p->n * p->k >= TUNE_MIN_MACS &&
        cudaStreamIsCapturing(c->stream, &cap) == cudaSuccess && cap == cudaStreamCaptureStatusNone) {
        const int t = tune(c, p, res, n_res, x, w, want_epi ? bias : NULL);
        if (t >= 0) pick = t;
    }
    p->algo = res[pick].algo;
    p->epi = want_epi;
    return 1;
#undef LT
fail:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    plan_destroy(p);
    if (want_epi) return 0;
    *st = mer__cublas_fail(err, s, "cublasLt plan", __FILE__, __LINE__);
    return -1;
}

static mer_status gemm_impl(mer_cuda *c, void *y, mer_dtype yt, int ldy, const void *x, int ldx, const void *w,
                            mer_dtype wt, const float *bias, int n_tok, int n_in, int n_out, int accumulate, int tf32,
                            mer_err *err) {
    const int f32in = wt == MER_DTYPE_F32;
    const int vec = f32in ? 4 : 8;
    if (wt != MER_DTYPE_BF16 && wt != MER_DTYPE_F32)
        return mer__errf(err, MER_E_UNSUPPORTED, "cuda gemm: weights of dtype %s (bf16 or f32)", mer_dtype_name(wt));
    if ((yt != MER_DTYPE_F32 && yt != MER_DTYPE_BF16) || (f32in && yt != MER_DTYPE_F32) ||
        (accumulate && yt != MER_DTYPE_F32))
        return mer__errf(err, MER_E_ARG, "cuda gemm: output dtype %s with %s weights%s", mer_dtype_name(yt),
                         mer_dtype_name(wt), accumulate ? " (accumulating)" : "");
    if (n_tok < 1 || n_in < vec || n_out < 1 || n_in % vec || ldx < n_in || ldy < n_out || ldx % vec ||
        ldy % (yt == MER_DTYPE_F32 ? 4 : 8))
        return mer__errf(err, MER_E_ARG, "cuda gemm: bad sizes (n_tok %d, n_in %d, n_out %d, ldx %d, ldy %d)", n_tok,
                         n_in, n_out, ldx, ldy);
    if (((uintptr_t)x | (uintptr_t)w | (uintptr_t)y) & 15)
        return mer__errf(err, MER_E_ARG, "cuda gemm: operands must be 16-byte aligned");
    enc_plan key;
    memset(&key, 0, sizeof key);
    key.dev = c->device;
    key.m = n_out, key.n = n_tok, key.k = n_in, key.ldb = ldx, key.ldc = ldy;
    key.y_bf16 = yt == MER_DTYPE_BF16, key.f32in = f32in, key.bias = bias != NULL, key.tf32 = f32in && tf32;
    {
        const uintptr_t a = (uintptr_t)x | (uintptr_t)w | (uintptr_t)y | 256;
        key.align = (int)(a & (~a + 1)); /* the lowest set bit: 16 .. 256 */
    }
    float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    int run_bias = 0;
    {
        std::lock_guard<std::mutex> lock(g_plan_mu);
        enc_plan *p = NULL, tmp;
        for (int i = 0; i < g_n_plans; i++) {
            enc_plan *q = &g_plans[i];
            if (q->dev == key.dev && q->m == key.m && q->n == key.n && q->k == key.k && q->ldb == key.ldb &&
                q->ldc == key.ldc && q->y_bf16 == key.y_bf16 && q->f32in == key.f32in && q->bias == key.bias &&
                q->align == key.align && q->tf32 == key.tf32) {
                p = q;
                break;
            }
        }
        if (!p) {
            p = g_n_plans < ENC_PLANS ? &g_plans[g_n_plans] : &tmp;
            *p = key;
            mer_status st = MER_OK;
            int r = key.bias ? plan_try(c, p, 1, x, w, bias, &st, err) : 0;
            if (r == 0) r = plan_try(c, p, 0, x, w, NULL, &st, err);
            if (r < 0) return st;
            if (p != &tmp) g_n_plans++;
        }
        if (key.bias && p->epi) {
            cublasStatus_t s = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
            if (s != CUBLAS_STATUS_SUCCESS) {
                if (p == &tmp) plan_destroy(p);
                return mer__cublas_fail(err, s, "cublasLtMatmulDescSetAttribute(BIAS_POINTER)", __FILE__, __LINE__);
            }
        }
        run_bias = key.bias && !p->epi;
        cublasStatus_t s = cublasLtMatmul(c->lt, p->op, &alpha, w, p->la, x, p->lb, &beta, y, p->lc, y, p->lc, &p->algo,
                                          c->lt_ws, c->lt_ws_size, c->stream);
        if (s != CUBLAS_STATUS_SUCCESS && p->epi) { /* the epilogue refused at run time: plain GEMM + bias pass */
            plan_destroy(p);
            *p = key;
            mer_status st = MER_OK;
            if (plan_try(c, p, 0, x, w, NULL, &st, err) < 0) {
                if (p != &tmp) *p = g_plans[--g_n_plans]; /* drop the entry (the last one takes its place) */
                return st;
            }
            run_bias = 1;
            s = cublasLtMatmul(c->lt, p->op, &alpha, w, p->la, x, p->lb, &beta, y, p->lc, y, p->lc, &p->algo, c->lt_ws,
                               c->lt_ws_size, c->stream);
        }
        if (p == &tmp) plan_destroy(p);
        if (s != CUBLAS_STATUS_SUCCESS) return mer__cublas_fail(err, s, "cublasLtMatmul", __FILE__, __LINE__);
    }
    if (run_bias) return bias_act_ld(c, y, yt, ldy, bias, n_tok, n_out, MER_CUDA_ACT_NONE, err);
    return MER_OK;
}

mer_status mer_cuda_gemm_bias(mer_cuda *c, void *y, mer_dtype yt, int ldy, const void *x, int ldx, const void *w,
                              mer_dtype wt, const float *bias, int n_tok, int n_in, int n_out, int accumulate,
                              mer_err *err) {
    return gemm_impl(c, y, yt, ldy, x, ldx, w, wt, bias, n_tok, n_in, n_out, accumulate, 0, err);
}

mer_status mer_cuda_gemm_bias_tf32(mer_cuda *c, void *y, int ldy, const float *x, int ldx, const float *w,
                                   const float *bias, int n_tok, int n_in, int n_out, int accumulate, mer_err *err) {
    return gemm_impl(c, y, MER_DTYPE_F32, ldy, x, ldx, w, MER_DTYPE_F32, bias, n_tok, n_in, n_out, accumulate, 1, err);
}

// --- attention ---------------------------------------------------------------------------------------

#define FA_ROWS 64
#define FA_KEYS 64
#define FA_D 64

/* grid (ceil(T / 64), heads, sequences), 4 warps of 16 query rows. */
__global__ void __launch_bounds__(128) attn_full_mma_kernel(const uint16_t *__restrict__ in, int ld_in, int k_off,
                                                            int v_off, uint16_t *__restrict__ out, int ld_out, int T,
                                                            float sl2) {
    constexpr int D = FA_D, LD = D + 8;
    __shared__ __align__(16) uint16_t Ks[FA_KEYS * LD];
    __shared__ __align__(16) uint16_t Vs[FA_KEYS * LD];
    mer__pdl_launch();
    mer__pdl_wait();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int gi = lane >> 2, qd = lane & 3;
    const int h = blockIdx.y, b = blockIdx.z;
    const uint16_t *base = in + (size_t)b * T * ld_in;
    const int r0 = blockIdx.x * FA_ROWS + warp * 16 + gi, r1 = r0 + 8;
    const int t0 = r0 < T ? r0 : T - 1, t1 = r1 < T ? r1 : T - 1;

    uint32_t qf[D / 16][4];
    {
        const uint16_t *q0 = base + (size_t)t0 * ld_in + h * D + qd * 2;
        const uint16_t *q1 = base + (size_t)t1 * ld_in + h * D + qd * 2;
        mer__fa_load_q<D>(qf, q0, q1);
    }
    const uint16_t *kb = base + k_off + h * D;
    const uint16_t *vb = base + v_off + h * D;

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    mer__fa_ml ml = {-1e30f, -1e30f, 0.f, 0.f};

    /* The next K/V tile is loaded into registers while the current one is used (the loads are in flight
     * during the mma work); each thread moves NLD 16-byte chunks of K and of V per tile. */
    constexpr int VEC = D / 8, NLD = FA_KEYS * VEC / 128;
    uint4 kreg[NLD], vreg[NLD];
#pragma unroll
    for (int u = 0; u < NLD; u++) {
        const int idx = u * 128 + threadIdx.x, row = idx / VEC, c8 = idx % VEC;
        kreg[u] = vreg[u] = make_uint4(0, 0, 0, 0);
        if (row < T) {
            kreg[u] = *(const uint4 *)(kb + (size_t)row * ld_in + c8 * 8);
            vreg[u] = *(const uint4 *)(vb + (size_t)row * ld_in + c8 * 8);
        }
    }
    const bool active = (int)blockIdx.x * FA_ROWS + warp * 16 < T; /* a warp whose 16 rows are all past T idles */
    for (int kt = 0; kt < T; kt += FA_KEYS) {
        __syncthreads();
#pragma unroll
        for (int u = 0; u < NLD; u++) {
            const int idx = u * 128 + threadIdx.x, row = idx / VEC, c8 = idx % VEC;
            *(uint4 *)(Ks + row * LD + c8 * 8) = kreg[u];
            *(uint4 *)(Vs + row * LD + c8 * 8) = vreg[u];
        }
        __syncthreads();
        if (kt + FA_KEYS < T) {
#pragma unroll
            for (int u = 0; u < NLD; u++) {
                const int idx = u * 128 + threadIdx.x, row = kt + FA_KEYS + idx / VEC, c8 = idx % VEC;
                kreg[u] = vreg[u] = make_uint4(0, 0, 0, 0);
                if (row < T) {
                    kreg[u] = *(const uint4 *)(kb + (size_t)row * ld_in + c8 * 8);
                    vreg[u] = *(const uint4 *)(vb + (size_t)row * ld_in + c8 * 8);
                }
            }
        }
        if (!active) continue;
        const int nk = T - kt; /* keys in this tile (may exceed 64) */

        float s[FA_KEYS / 8][4];
        mer__fa_scores<FA_KEYS, D, LD>(s, qf, Ks, gi, qd, nk);
        ml = mer__fa_softmax<FA_KEYS, D>(s, o, ml, [&](int nb, int e, float v) {
            const int key = kt + nb * 8 + qd * 2 + (e & 1);
            return key < T ? v * sl2 : -INFINITY;
        });
        mer__fa_pv<FA_KEYS, D, LD>(o, s, Vs, lane, nk);
    }
    float inv0, inv1;
    mer__fa_inv(ml, inv0, inv1);
    if (r0 < T) mer__fa_store_row<D>(out + ((size_t)b * T + r0) * ld_out + h * D + qd * 2, o, 0, inv0);
    if (r1 < T) mer__fa_store_row<D>(out + ((size_t)b * T + r1) * ld_out + h * D + qd * 2, o, 2, inv1);
}

/* grid (T, heads, sequences), one warp: a lane scores one key of each 32, online softmax in the exp2
 * domain, lane owns output elements lane + 32 j. */
template <typename T, int DPL>
__global__ void __launch_bounds__(32) attn_full_simple_kernel(const T *__restrict__ in, int ld_in, int k_off, int v_off,
                                                              T *__restrict__ out, int ld_out, int Tn, int d, float sl2) {
    __shared__ float qs[256];
    mer__pdl_launch();
    mer__pdl_wait();
    const int lane = threadIdx.x;
    const int t = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const T *base = in + (size_t)b * Tn * ld_in;
    for (int i = lane; i < d; i += 32) qs[i] = mer__ldf(base + (size_t)t * ld_in + h * d + i) * sl2;
    __syncwarp();
    float m = -1e30f, l = 0.f, o[DPL];
#pragma unroll
    for (int j = 0; j < DPL; j++) o[j] = 0.f;
    for (int k0 = 0; k0 < Tn; k0 += 32) {
        const int key = k0 + lane;
        float sc = -INFINITY;
        if (key < Tn) {
            const T *kr = base + (size_t)key * ld_in + k_off + h * d;
            float a = 0.f;
            for (int i = 0; i < d; i++) a += qs[i] * mer__ldf(kr + i);
            sc = a;
        }
        const float mn = fmaxf(m, mer__warp_max(sc));
        const float corr = exp2f(m - mn);
        const float p = exp2f(sc - mn);
        l = l * corr + p;
#pragma unroll
        for (int j = 0; j < DPL; j++) o[j] *= corr;
        const int nk = min(32, Tn - k0);
        for (int jj = 0; jj < nk; jj++) {
            const float pj = __shfl_sync(0xffffffffu, p, jj);
            const T *vr = base + (size_t)(k0 + jj) * ld_in + v_off + h * d;
#pragma unroll
            for (int j = 0; j < DPL; j++) {
                const int i = lane + 32 * j;
                if (i < d) o[j] += pj * mer__ldf(vr + i);
            }
        }
        m = mn;
    }
    l = mer__warp_sum(l);
    const float inv = l > 0.f ? 1.f / l : 0.f;
    T *orow = out + ((size_t)b * Tn + t) * ld_out + h * d;
#pragma unroll
    for (int j = 0; j < DPL; j++) {
        const int i = lane + 32 * j;
        if (i < d) mer__stf(orow + i, o[j] * inv);
    }
}

template <typename T>
static cudaError_t launch_simple(mer_cuda *c, dim3 grid, const T *in, int ld_in, int k_off, int v_off, T *out,
                                 int ld_out, int Tn, int d, float sl2) {
    if (d <= 32)
        return mer__launch(c, attn_full_simple_kernel<T, 1>, grid, dim3(32), 0, in, ld_in, k_off, v_off, out, ld_out, Tn, d,
                           sl2);
    if (d <= 64)
        return mer__launch(c, attn_full_simple_kernel<T, 2>, grid, dim3(32), 0, in, ld_in, k_off, v_off, out, ld_out, Tn, d,
                           sl2);
    if (d <= 128)
        return mer__launch(c, attn_full_simple_kernel<T, 4>, grid, dim3(32), 0, in, ld_in, k_off, v_off, out, ld_out, Tn, d,
                           sl2);
    return mer__launch(c, attn_full_simple_kernel<T, 8>, grid, dim3(32), 0, in, ld_in, k_off, v_off, out, ld_out, Tn, d, sl2);
}

mer_status mer_cuda_attn_full(mer_cuda *c, void *out, int ld_out, const void *in, int ld_in, int k_off, int v_off,
                              mer_dtype t, int n_seq, int T, int n_head, int d, float scale, mer_err *err) {
    if (n_seq < 1 || n_seq > 65535 || T < 1 || n_head < 1 || n_head > 65535 || d < 8 || d % 8 || d > 256 ||
        ld_in < n_head * d || ld_out < n_head * d || k_off < 0 || v_off < 0 || k_off + n_head * d > ld_in ||
        v_off + n_head * d > ld_in)
        return mer__errf(err, MER_E_ARG, "cuda attention: %d sequences of %d, %d heads of %d (ld %d/%d)", n_seq, T, n_head,
                         d, ld_in, ld_out);
    mer_status st = check_t(t, "attention", err);
    if (st) return st;
    const float sl2 = scale * LOG2E;
    if (t == MER_DTYPE_BF16 && d == FA_D && ld_in % 8 == 0 && k_off % 8 == 0 && v_off % 8 == 0 && ld_out % 2 == 0 &&
        !((uintptr_t)in & 15)) {
        dim3 grid((T + FA_ROWS - 1) / FA_ROWS, n_head, n_seq);
        MER_CU(mer__launch(c, attn_full_mma_kernel, grid, dim3(128), 0, (const uint16_t *)in, ld_in, k_off, v_off,
                           (uint16_t *)out, ld_out, T, sl2));
        return MER_OK;
    }
    if (T > 65535) return mer__errf(err, MER_E_ARG, "cuda attention: %d tokens per sequence", T);
    dim3 grid(T, n_head, n_seq);
    cudaError_t e;
    if (t == MER_DTYPE_BF16)
        e = launch_simple<uint16_t>(c, grid, (const uint16_t *)in, ld_in, k_off, v_off, (uint16_t *)out, ld_out, T, d, sl2);
    else
        e = launch_simple<float>(c, grid, (const float *)in, ld_in, k_off, v_off, (float *)out, ld_out, T, d, sl2);
    if (e != cudaSuccess) return mer__cu_fail(err, e, "attn_full_simple_kernel launch", __FILE__, __LINE__);
    return MER_OK;
}

// --- CLIP: patches and embeddings --------------------------------------------------------------------

template <typename T>
__global__ void im2col_patch_kernel(T *cols, int kp, const float *__restrict__ img, int n_img, int C, int S, int P) {
    mer__pdl_launch();
    mer__pdl_wait();
    const int side = S / P, np = side * side, K = C * P * P;
    const size_t total = (size_t)n_img * np * kp;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        const size_t row = idx / kp;
        const int j = (int)(idx - row * kp);
        float v = 0.f;
        if (j < K) {
            const int b = (int)(row / np), p = (int)(row % np);
            const int py = p / side, px = p % side;
            const int ch = j / (P * P), rem = j % (P * P), ky = rem / P, kx = rem % P;
            v = img[(((size_t)b * C + ch) * S + (size_t)py * P + ky) * S + (size_t)px * P + kx];
        }
        mer__stf(cols + idx, v);
    }
}

mer_status mer_cuda_im2col_patch(mer_cuda *c, void *cols, mer_dtype t, int kp, const float *img, int n_img, int C, int S,
                                 int P, mer_err *err) {
    if (n_img < 1 || C < 1 || P < 1 || S < P || kp < C * P * P)
        return mer__errf(err, MER_E_ARG, "cuda im2col: %d images %dx%dx%d, patch %d, row %d", n_img, C, S, S, P, kp);
    mer_status st = check_t(t, "im2col", err);
    if (st) return st;
    const int side = S / P;
    const unsigned g = grid_for((size_t)n_img * side * side * kp, 256);
    if (t == MER_DTYPE_BF16)
        MER_CU(mer__launch(c, im2col_patch_kernel<uint16_t>, dim3(g), dim3(256), 0, (uint16_t *)cols, kp, img, n_img, C, S, P));
    else
        MER_CU(mer__launch(c, im2col_patch_kernel<float>, dim3(g), dim3(256), 0, (float *)cols, kp, img, n_img, C, S, P));
    return MER_OK;
}

__global__ void clip_embed_kernel(float *h, const float *__restrict__ patch, const float *__restrict__ cls,
                                  const float *__restrict__ pos, int n_img, int T, int n) {
    mer__pdl_launch();
    mer__pdl_wait();
    const size_t total = (size_t)n_img * T * n;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        const size_t r = idx / n;
        const int i = (int)(idx - r * n);
        const int b = (int)(r / T), t = (int)(r % T);
        const float v = t == 0 ? cls[i] : patch[((size_t)b * (T - 1) + t - 1) * n + i];
        h[idx] = v + pos[(size_t)t * n + i];
    }
}

mer_status mer_cuda_clip_embed(mer_cuda *c, float *h, const float *patch, const float *cls, const float *pos, int n_img,
                               int T, int n, mer_err *err) {
    if (n_img < 1 || T < 2 || n < 1) return mer__errf(err, MER_E_ARG, "cuda clip_embed: %d images of %d x %d", n_img, T, n);
    MER_CU(mer__launch(c, clip_embed_kernel, dim3(grid_for((size_t)n_img * T * n, 256)), dim3(256), 0, h, patch, cls, pos,
                       n_img, T, n));
    return MER_OK;
}

// --- HuBERT: first conv layer, positional conv, time sums --------------------------------------------

#define CV_WARPS 8

template <typename T>
__global__ void __launch_bounds__(CV_WARPS * 32) conv0_kernel(T *y, const float *__restrict__ x, long len, int n_clips,
                                                              int S, const float *__restrict__ w,
                                                              const float *__restrict__ bias, int C, int K, int stride,
                                                              const float *__restrict__ lw, const float *__restrict__ lb,
                                                              float eps) {
    extern __shared__ float sm[];
    mer__pdl_launch();
    mer__pdl_wait();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *ws = sm;                               /* [K][C] */
    float *buf = sm + (size_t)K * C + (size_t)warp * (C + 32); /* [C] conv outputs, then [32] samples */
    float *xs = buf + C;
    for (int i = threadIdx.x; i < K * C; i += blockDim.x) {
        const int ch = i / K, k = i % K;
        ws[k * C + ch] = w[i];
    }
    __syncthreads();
    const int r = blockIdx.x * CV_WARPS + warp;
    if (r >= n_clips * S) return;
    const int b = r / S, t = r % S;
    const float *xb = x + (size_t)b * len;
    const long s0 = (long)stride * t;
    xs[lane] = lane < K && s0 + lane < len ? xb[s0 + lane] : 0.f;
    __syncwarp();
    float sum = 0.f;
    for (int ch = lane; ch < C; ch += 32) {
        float a = 0.f;
        for (int k = 0; k < K; k++) a += ws[k * C + ch] * xs[k];
        if (bias) a += bias[ch];
        buf[ch] = a;
        sum += a;
    }
    const float mean = mer__warp_sum(sum) / (float)C;
    float v = 0.f;
    for (int ch = lane; ch < C; ch += 32) {
        const float d = buf[ch] - mean;
        v += d * d;
    }
    const float rs = 1.f / sqrtf(mer__warp_sum(v) / (float)C + eps);
    T *yr = y + (size_t)r * C;
    for (int ch = lane; ch < C; ch += 32) {
        float o = (buf[ch] - mean) * rs;
        if (lw) o *= lw[ch];
        if (lb) o += lb[ch];
        mer__stf(yr + ch, act_f(o, MER_CUDA_ACT_GELU));
    }
}

mer_status mer_cuda_conv0_ln_gelu(mer_cuda *c, void *y, mer_dtype yt, const float *x, long len, int n_clips, int S,
                                  const float *w, const float *bias, int C, int K, int stride, const float *lw,
                                  const float *lb, float eps, mer_err *err) {
    const size_t smem = ((size_t)K * C + (size_t)CV_WARPS * (C + 32)) * sizeof(float);
    if (n_clips < 1 || S < 1 || C < 1 || K < 1 || K > 32 || stride < 1 || len < 1 || (long long)n_clips * S > 0x7fffffff)
        return mer__errf(err, MER_E_ARG, "cuda conv0: %d clips, %d frames, %d channels, kernel %d", n_clips, S, C, K);
    if (smem > 48 * 1024)
        return mer__errf(err, MER_E_UNSUPPORTED, "cuda conv0: %d channels x kernel %d exceed shared memory", C, K);
    mer_status st = check_t(yt, "conv0", err);
    if (st) return st;
    const unsigned g = (unsigned)(((size_t)n_clips * S + CV_WARPS - 1) / CV_WARPS);
    if (yt == MER_DTYPE_BF16)
        MER_CU(mer__launch(c, conv0_kernel<uint16_t>, dim3(g), dim3(CV_WARPS * 32), smem, (uint16_t *)y, x, len, n_clips,
                           S, w, bias, C, K, stride, lw, lb, eps));
    else
        MER_CU(mer__launch(c, conv0_kernel<float>, dim3(g), dim3(CV_WARPS * 32), smem, (float *)y, x, len, n_clips, S, w,
                           bias, C, K, stride, lw, lb, eps));
    return MER_OK;
}

__global__ void posconv_reduce_kernel(float *h, int ldh, const float *__restrict__ z, const float *__restrict__ bias,
                                      int n_seq, int T, int K, int cg, int g, int pad) {
    mer__pdl_launch();
    mer__pdl_wait();
    const size_t total = (size_t)n_seq * T * cg;
    const size_t ldz = (size_t)K * cg;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        const size_t r = idx / cg;
        const int o = (int)(idx - r * cg);
        const int b = (int)(r / T), t = (int)(r % T);
        const int k0 = max(0, pad - t), k1 = min(K, T + pad - t);
        float s = bias ? bias[g * cg + o] : 0.f;
        const float *zb = z + ((size_t)b * T) * ldz + o;
        for (int k = k0; k < k1; k++) s += zb[(size_t)(t + k - pad) * ldz + (size_t)k * cg];
        h[r * ldh + (size_t)g * cg + o] += act_f(s, MER_CUDA_ACT_GELU);
    }
}

mer_status mer_cuda_posconv_reduce(mer_cuda *c, float *h, int ldh, const float *z, const float *bias, int n_seq, int T,
                                   int K, int cg, int g, int pad, mer_err *err) {
    if (n_seq < 1 || T < 1 || K < 1 || cg < 1 || g < 0 || pad < 0 || ldh < (g + 1) * cg)
        return mer__errf(err, MER_E_ARG, "cuda posconv: %d sequences of %d, kernel %d, group %d of %d", n_seq, T, K, g, cg);
    MER_CU(mer__launch(c, posconv_reduce_kernel, dim3(grid_for((size_t)n_seq * T * cg, 256)), dim3(256), 0, h, ldh, z,
                       bias, n_seq, T, K, cg, g, pad));
    return MER_OK;
}

__global__ void time_sum_kernel(float *acc, const float *__restrict__ x, int T, int n, float scale) {
    mer__pdl_launch();
    mer__pdl_wait();
    const int i = blockIdx.x * blockDim.x + threadIdx.x, b = blockIdx.y;
    if (i >= n) return;
    const float *xb = x + (size_t)b * T * n + i;
    float s = 0.f;
    for (int t = 0; t < T; t++) s += xb[(size_t)t * n];
    acc[(size_t)b * n + i] += scale * s;
}

mer_status mer_cuda_time_sum(mer_cuda *c, float *acc, const float *x, int n_seq, int T, int n, float scale,
                             mer_err *err) {
    if (n_seq < 1 || n_seq > 65535 || T < 1 || n < 1)
        return mer__errf(err, MER_E_ARG, "cuda time_sum: %d sequences of %d x %d", n_seq, T, n);
    MER_CU(mer__launch(c, time_sum_kernel, dim3((n + 255) / 256, n_seq), dim3(256), 0, acc, x, T, n, scale));
    return MER_OK;
}
