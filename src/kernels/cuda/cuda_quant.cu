/* cuda_quant.cu - q8_0 / q4_0 matrices on the device (see cuda_quant.h for the layout): allocation,
 * repacking from GGUF blocks, random fill, dequantisation to bf16, the fused dequantising GEMV for up to
 * 8 rows and the dequantise + cuBLASLt matmul above.
 *
 * The GEMV follows cuda_gemv.cu: a block owns MT tiles of 16 weight rows, its NW warps split the
 * reduction dimension by super-steps of U chunks, each thread streams 16 bytes of two rows (g and g + 8)
 * per chunk with an L1-bypassing load, the next super-step's weights (and scales) are loaded before the
 * current one is multiplied, and the <= 8 activation rows are the N dimension of mma.sync m16n8k16. The
 * quants are turned into exact bf16 integers in registers: q8_0 through the f32 magic number 2^23 (byte
 * permute into the mantissa, one subtraction, the high half is the exact bf16), q4_0 by placing each
 * nibble in the mantissa of bf16 128.0 (0x43nn = 128 + n) and one bf16x2 subtraction of 136. The two
 * mma of a block accumulate into a fresh fragment that is then scaled by the rows' d in f32 and added to
 * the running sums, so the only rounding besides f32 accumulation is that of the bf16 activations. */
#include "kernels/cuda/cuda_internal.cuh"
#include "kernels/cuda/cuda_quant.h"

#include <cuda_fp16.h>
#include <stdlib.h>
#include <string.h>

// --- shapes ------------------------------------------------------------------------------------------

static int q_is(mer_dtype dt) { return dt == MER_DTYPE_Q8_0 || dt == MER_DTYPE_Q4_0; }
static int q_nb(mer_dtype dt) { return dt == MER_DTYPE_Q4_0 ? 4 : 2; } /* blocks per 64-byte chunk */
static int r16(int n) { return (n + 15) / 16 * 16; }

static size_t qs_bytes(const mer_cuda_qmat *q) { return (size_t)q->n_phys * (size_t)q->n_ch * 64; }
static size_t sc_bytes(const mer_cuda_qmat *q) { return (size_t)q->n_phys * (size_t)q->n_ch * q_nb(q->dt) * 2; }

size_t mer_cuda_qmat_bytes(const mer_cuda_qmat *q) { return qs_bytes(q) + sc_bytes(q); }

mer_status mer_cuda_qmat_init(mer_cuda *c, mer_cuda_qmat *q, mer_dtype dt, int n_out, int n_in, int split,
                              mer_err *err) {
    memset(q, 0, sizeof *q);
    if (!q_is(dt) || n_out < 1 || n_in < 32 || n_in % 32 || split < 0 || (split && split >= n_out) ||
        n_out > (1 << 28) || n_in > (1 << 24))
        return mer__errf(err, MER_E_ARG, "cuda qmat: bad shape %d x %d (split %d) or dtype %s", n_out, n_in, split,
                         mer_dtype_name(dt));
    q->dt = dt;
    q->n_out = n_out;
    q->n_in = n_in;
    q->split = split;
    q->up_off = split ? r16(split) : 0;
    q->n_phys = split ? q->up_off + r16(n_out - split) : r16(n_out);
    const int per = dt == MER_DTYPE_Q4_0 ? 128 : 64;
    q->n_ch = (n_in + per - 1) / per;
    mer_status st = mer_cuda_alloc(c, qs_bytes(q), (void **)&q->qs, err);
    if (!st) st = mer_cuda_alloc(c, sc_bytes(q), (void **)&q->sc, err);
    if (!st) st = mer_cuda_memset(c, q->qs, 0, qs_bytes(q), err);
    if (!st) st = mer_cuda_memset(c, q->sc, 0, sc_bytes(q), err);
    if (st) mer_cuda_qmat_release(c, q);
    return st;
}

void mer_cuda_qmat_release(mer_cuda *c, mer_cuda_qmat *q) {
    mer_cuda_release(c, q->qs);
    mer_cuda_release(c, q->sc);
    q->qs = NULL;
    q->sc = NULL;
}

// --- element addressing (device) ---------------------------------------------------------------------

/* Stored row of logical row r. */
__device__ __forceinline__ int q_phys(int r, int split, int up_off) {
    return split && r >= split ? up_off + (r - split) : r;
}
/* Logical row of stored row p, or -1 for padding. */
__device__ __forceinline__ int q_logical(int p, int split, int up_off, int n_out) {
    if (split && p < up_off) return p < split ? p : -1;
    int r = split + (p - up_off);
    return r < n_out ? r : -1;
}

/* One thread per (logical row, block, eighth qq): moves elements 8 qq .. 8 qq + 7 of a GGUF block. */
template <int Q4>
__global__ void q_set_rows_kernel(uint8_t *__restrict__ qs, uint16_t *__restrict__ sc, const uint8_t *__restrict__ src,
                                  int r0, int n_rows, int n_in, int n_ch, int split, int up_off) {
    const int NB = Q4 ? 4 : 2, BS = Q4 ? 18 : 34;
    const int kb = n_in / 32;
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n_rows * kb * 4) return;
    const int qq = (int)(idx & 3);
    const int blk = (int)((idx >> 2) % (size_t)kb);
    const int ri = (int)((idx >> 2) / (size_t)kb);
    const uint8_t *s = src + ((size_t)ri * kb + blk) * BS;
    const int p = q_phys(r0 + ri, split, up_off);
    const int ch = blk / NB, b = blk % NB;
    uint8_t *dst = qs + ((size_t)p * n_ch + ch) * 64 + 16 * qq;
    if (qq == 0) sc[(((size_t)(p >> 4) * n_ch + ch) * 16 + (p & 15)) * NB + b] = (uint16_t)(s[0] | (s[1] << 8));
    if (Q4) {
        for (int r = 0; r < 4; r++) {
            const int e0 = 8 * qq + r, e1 = 8 * qq + 4 + r; /* low and high nibble of the stored byte */
            const int n0 = e0 < 16 ? (s[2 + e0] & 15) : (s[2 + e0 - 16] >> 4);
            const int n1 = e1 < 16 ? (s[2 + e1] & 15) : (s[2 + e1 - 16] >> 4);
            dst[4 * b + r] = (uint8_t)(n0 | (n1 << 4));
        }
    } else {
        for (int e = 0; e < 8; e++) dst[8 * b + e] = s[2 + 8 * qq + e];
    }
}

mer_status mer_cuda_qmat_set_rows(mer_cuda *c, mer_cuda_qmat *q, int r0, int n_rows, const void *blocks_dev,
                                  mer_err *err) {
    if (r0 < 0 || n_rows < 0 || n_rows > q->n_out - r0)
        return mer__errf(err, MER_E_ARG, "cuda qmat: rows %d + %d of %d", r0, n_rows, q->n_out);
    if (n_rows == 0) return MER_OK;
    const size_t n = (size_t)n_rows * (q->n_in / 32) * 4;
    const unsigned grid = (unsigned)((n + 255) / 256);
    if (q->dt == MER_DTYPE_Q4_0)
        q_set_rows_kernel<1><<<grid, 256, 0, c->stream>>>(q->qs, q->sc, (const uint8_t *)blocks_dev, r0, n_rows,
                                                          q->n_in, q->n_ch, q->split, q->up_off);
    else
        q_set_rows_kernel<0><<<grid, 256, 0, c->stream>>>(q->qs, q->sc, (const uint8_t *)blocks_dev, r0, n_rows,
                                                          q->n_in, q->n_ch, q->split, q->up_off);
    MER_CU_LAUNCHED("q_set_rows_kernel");
    return MER_OK;
}

__device__ __forceinline__ uint32_t q_hash(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (uint32_t)x;
}

template <int Q4>
__global__ void q_fill_kernel(uint8_t *__restrict__ qs, uint16_t *__restrict__ sc, int n_out, int n_in, int n_ch,
                              int split, int up_off, uint64_t seed, float a) {
    const int NB = Q4 ? 4 : 2;
    const int kb = n_in / 32;
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n_out * kb * 4) return;
    const int qq = (int)(idx & 3);
    const int blk = (int)((idx >> 2) % (size_t)kb);
    const int r = (int)((idx >> 2) / (size_t)kb);
    const int p = q_phys(r, split, up_off);
    const int ch = blk / NB, b = blk % NB;
    uint8_t *dst = qs + ((size_t)p * n_ch + ch) * 64 + 16 * qq;
    const uint64_t key = (seed * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)r * kb + blk) * 4;
    if (qq == 0) {
        const float u = (float)(q_hash(key ^ 0x5bd1e995ull) >> 8) * (1.0f / 16777216.0f);
        const float d = a / (Q4 ? 8.0f : 127.0f) * (0.75f + 0.5f * u);
        sc[(((size_t)(p >> 4) * n_ch + ch) * 16 + (p & 15)) * NB + b] = __half_as_ushort(__float2half_rn(d));
    }
    const uint32_t h0 = q_hash(key + qq + 1), h1 = q_hash(key + qq + 1 + (1ull << 40));
    if (Q4) {
        *(uint32_t *)(dst + 4 * b) = h0;
    } else { /* bytes in [-127, 127]: map 0x80 (-128) to 0 */
        uint32_t v[2] = {h0, h1};
        for (int i = 0; i < 8; i++) {
            uint8_t by = (uint8_t)(v[i >> 2] >> (8 * (i & 3)));
            dst[8 * b + i] = by == 0x80 ? 0 : by;
        }
    }
}

mer_status mer_cuda_qmat_fill_random(mer_cuda *c, mer_cuda_qmat *q, uint64_t seed, float a, mer_err *err) {
    const size_t n = (size_t)q->n_out * (q->n_in / 32) * 4;
    const unsigned grid = (unsigned)((n + 255) / 256);
    if (q->dt == MER_DTYPE_Q4_0)
        q_fill_kernel<1><<<grid, 256, 0, c->stream>>>(q->qs, q->sc, q->n_out, q->n_in, q->n_ch, q->split, q->up_off,
                                                      seed, a);
    else
        q_fill_kernel<0><<<grid, 256, 0, c->stream>>>(q->qs, q->sc, q->n_out, q->n_in, q->n_ch, q->split, q->up_off,
                                                      seed, a);
    MER_CU_LAUNCHED("q_fill_kernel");
    return MER_OK;
}

/* One thread per (row, block, eighth): 8 bf16 outputs. */
template <int Q4>
__global__ void q_dequant_kernel(uint16_t *__restrict__ y, const uint8_t *__restrict__ qs,
                                 const uint16_t *__restrict__ sc, int r0, int n_rows, int n_in, int n_ch, int split,
                                 int up_off) {
    const int NB = Q4 ? 4 : 2;
    const int kb = n_in / 32;
    mer__pdl_wait();
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n_rows * kb * 4) return;
    const int qq = (int)(idx & 3);
    const int blk = (int)((idx >> 2) % (size_t)kb);
    const int ri = (int)((idx >> 2) / (size_t)kb);
    const int p = q_phys(r0 + ri, split, up_off);
    const int ch = blk / NB, b = blk % NB;
    const uint8_t *src = qs + ((size_t)p * n_ch + ch) * 64 + 16 * qq;
    const float d = __half2float(__ushort_as_half(sc[(((size_t)(p >> 4) * n_ch + ch) * 16 + (p & 15)) * NB + b]));
    float v[8];
    if (Q4) {
        const uint32_t w = *(const uint32_t *)(src + 4 * b);
        for (int r = 0; r < 4; r++) {
            v[r] = (float)((int)((w >> (8 * r)) & 15) - 8);
            v[4 + r] = (float)((int)((w >> (8 * r + 4)) & 15) - 8);
        }
    } else {
        const uint2 w = *(const uint2 *)(src + 8 * b);
        for (int e = 0; e < 8; e++) v[e] = (float)(int8_t)((e < 4 ? w.x : w.y) >> (8 * (e & 3)));
    }
    uint4 o;
    o.x = mer__pack_bf16(d * v[0], d * v[1]);
    o.y = mer__pack_bf16(d * v[2], d * v[3]);
    o.z = mer__pack_bf16(d * v[4], d * v[5]);
    o.w = mer__pack_bf16(d * v[6], d * v[7]);
    *(uint4 *)(y + (size_t)ri * n_in + 32 * blk + 8 * qq) = o;
}

mer_status mer_cuda_qmat_dequant(mer_cuda *c, uint16_t *y_dev, const mer_cuda_qmat *q, int r0, int n_rows,
                                 mer_err *err) {
    if (r0 < 0 || n_rows < 1 || n_rows > q->n_out - r0 || ((uintptr_t)y_dev & 15))
        return mer__errf(err, MER_E_ARG, "cuda qmat dequant: rows %d + %d of %d", r0, n_rows, q->n_out);
    const size_t n = (size_t)n_rows * (q->n_in / 32) * 4;
    const unsigned grid = (unsigned)((n + 255) / 256);
    cudaError_t e;
    if (q->dt == MER_DTYPE_Q4_0)
        e = mer__launch(c, q_dequant_kernel<1>, dim3(grid), dim3(256), 0, y_dev, q->qs, q->sc, r0, n_rows, q->n_in,
                        q->n_ch, q->split, q->up_off);
    else
        e = mer__launch(c, q_dequant_kernel<0>, dim3(grid), dim3(256), 0, y_dev, q->qs, q->sc, r0, n_rows, q->n_in,
                        q->n_ch, q->split, q->up_off);
    if (e != cudaSuccess) return mer__cu_fail(err, e, "q_dequant_kernel launch", __FILE__, __LINE__);
    return MER_OK;
}

// --- the GEMV ----------------------------------------------------------------------------------------

/* v.x^2 + v.y^2 + v.z^2 + v.w^2 with explicit roundings: rmsnorm_kernel (cuda_ops.cu) uses the same. */
__device__ __forceinline__ float q_sumsq4(float4 v) {
    return __fmaf_rn(v.w, v.w, __fmaf_rn(v.z, v.z, __fmaf_rn(v.y, v.y, __fmul_rn(v.x, v.x))));
}

/* 4 int8 (one word) as two bf16x2 (elements 0,1 and 2,3), exact. */
__device__ __forceinline__ void q8_bf16(uint32_t w, uint32_t &p01, uint32_t &p23) {
    const uint32_t u = w ^ 0x80808080u; /* q + 128 */
    const float f0 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7540)) - 8388736.0f;
    const float f1 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7541)) - 8388736.0f;
    const float f2 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7542)) - 8388736.0f;
    const float f3 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7543)) - 8388736.0f;
    p01 = __byte_perm(__float_as_uint(f0), __float_as_uint(f1), 0x7632);
    p23 = __byte_perm(__float_as_uint(f2), __float_as_uint(f3), 0x7632);
}

__device__ __forceinline__ uint32_t bf16x2_sub(uint32_t a, uint32_t b) {
    __nv_bfloat162 x = *reinterpret_cast<__nv_bfloat162 *>(&a), y = *reinterpret_cast<__nv_bfloat162 *>(&b);
    __nv_bfloat162 r = __hsub2(x, y);
    return *reinterpret_cast<uint32_t *>(&r);
}

/* 4 nibble bytes (values 0..15) as two bf16x2 of value - 8, exact. */
__device__ __forceinline__ void q4_bf16(uint32_t nb, uint32_t &p01, uint32_t &p23) {
    p01 = bf16x2_sub(__byte_perm(nb, 0x43434343u, 0x4140), 0x43084308u);
    p23 = bf16x2_sub(__byte_perm(nb, 0x43434343u, 0x4342), 0x43084308u);
}

/* A thread's block scales of a chunk (8 or 4 bytes), read once: with the L2 fetching the 256-byte segment
 * around them, as the weights (MER_QSC_HINT=0 at build time: a plain __ldg). */
#ifndef MER_QSC_HINT
#define MER_QSC_HINT 1
#endif
__device__ __forceinline__ uint2 q_ld_sc2(const uint16_t *p) {
#if MER_QSC_HINT
    uint2 v;
    asm("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
#else
    return __ldg((const uint2 *)p);
#endif
}
__device__ __forceinline__ uint32_t q_ld_sc1(const uint16_t *p) {
#if MER_QSC_HINT
    uint32_t v;
    asm("ld.global.nc.L1::no_allocate.L2::256B.u32 %0, [%1];" : "=r"(v) : "l"(p));
    return v;
#else
    return __ldg((const uint32_t *)p);
#endif
}

/* bf16 rows out[r][0..n) (row stride ldo, 16-byte aligned) = RMSNorm(x[r]) * w for r < n_tok (x f32, row
 * stride ldx, n a multiple of 8), by all NW warps of the block, bit for bit as rmsnorm_kernel (cuda_ops.cu):
 * the sums of squares in its order (256 virtual threads, butterfly warp sums, then the 8 warp sums), then
 * bf16(x * rs * w). x is read through L2 (it may have been written by other blocks of this grid). Ends
 * with a barrier. */
template <int NW>
__device__ __forceinline__ void q_norm_rows(const float *x, int ldx, const float *__restrict__ w, float eps, int n,
                                            int n_tok, uint16_t *out, int ldo) {
    __shared__ float nred[MER__GEMV_MAX_TOK][8];
    __shared__ float nrs[MER__GEMV_MAX_TOK];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n8 = n >> 3;
    for (int u = threadIdx.x; u < n_tok * 256; u += NW * 32) { /* warp-uniform */
        const int r = u >> 8, vt = u & 255;
        const float *xr0 = x + (size_t)r * ldx;
        float s = 0.f;
        for (int i = vt * 4; i < n; i += 1024) s += q_sumsq4(__ldcg((const float4 *)(xr0 + i)));
        s = mer__warp_sum(s);
        if (lane == 0) nred[r][vt >> 5] = s;
    }
    __syncthreads();
    for (int r = warp; r < n_tok; r += NW) {
        float v = lane < 8 ? nred[r][lane] : 0.f;
        v = mer__warp_sum(v);
        if (lane == 0) nrs[r] = rsqrtf(v / (float)n + eps);
    }
    __syncthreads();
    for (int u = threadIdx.x; u < n_tok * n8; u += NW * 32) { /* as rmsnorm_kernel: bf16(x * rs * w) */
        const int r = u / n8, cc = (u - r * n8) * 8;
        const float rs = nrs[r];
        const float *xp = x + (size_t)r * ldx + cc;
        const float4 v0 = __ldcg((const float4 *)xp), v1 = __ldcg((const float4 *)(xp + 4));
        const float4 w0 = __ldg((const float4 *)(w + cc)), w1 = __ldg((const float4 *)(w + cc + 4));
        uint4 o;
        o.x = mer__pack_bf16(v0.x * rs * w0.x, v0.y * rs * w0.y);
        o.y = mer__pack_bf16(v0.z * rs * w0.z, v0.w * rs * w0.w);
        o.z = mer__pack_bf16(v1.x * rs * w1.x, v1.y * rs * w1.y);
        o.w = mer__pack_bf16(v1.z * rs * w1.z, v1.w * rs * w1.w);
        *(uint4 *)(out + (size_t)r * ldo + cc) = o;
    }
    __syncthreads();
}

/* A chunk of one 16-row tile for a thread: 16 bytes of rows g and g + 8, and their NB scales. */
struct qw {
    uint4 w[2];
    uint2 s[2];
};

template <int Q4, int MT, int U, int NW, int EPI, bool SPL, bool NORM, bool ANORM = false>
__device__ __forceinline__ void
    qgemv_body(const uint8_t *__restrict__ qs, const uint16_t *__restrict__ sc, const uint16_t *__restrict__ x,
               void *__restrict__ yv, int K, int n_ch, int n_out, int n_tiles, int split, int up_off, int n_tok,
               int ldx, int ldy, int ksplit, const float *__restrict__ xf, const float *__restrict__ nw, float eps,
               uint16_t *__restrict__ xn_out, int *cnt) {
    /* ANORM (F32_ADD, one tile): after y += x W^T, the last block to finish (an arrival counter, reset by it)
     * writes xn_out = bf16 RMSNorm(y) * nw over the n_tok rows of n_out, as mer_cuda_rmsnorm would (see
     * mer_cuda_qgemv_add_norm), so that the next RMSNorm needs no launch of its own. */
    /* NORM: the activations are RMSNorm(xf) * nw made here (f32 rows xf of stride ldx, see
     * mer_cuda_qgemv_norm), bit for bit as mer_cuda_rmsnorm's bf16 output: each block first reduces the
     * rows' sums of squares in rmsnorm_kernel's order (256 virtual threads, butterfly warp sums, then the
     * 8 warp sums), then writes the bf16 rows to dynamic shared memory (row stride K + 8 elements, against
     * bank conflicts), from which the k-steps read them. */
    /* Q4: 0 q8_0, 1 q4_0, 2 q4_0 with the nibble offset folded into the tensor cores: the weights enter as
     * 128 + n and two extra mma of -136 times the activations per block (shared by the tiles) correct
     * the sum, which saves the bf16x2 subtraction of every weight pair. */
    constexpr bool IS4 = Q4 != 0, FOLD = Q4 == 2;
    constexpr int NB = IS4 ? 4 : 2;
    constexpr int CH = IS4 ? 128 : 64;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, q = lane & 3;
    mer__pdl_launch();

    /* Split-K (SPL: one-tile F32_ADD only): the ks blocks of a tile take equal ranges of super-steps,
     * each treated as a row of its own (pointers, K and the loop start at chunk c0), and add their
     * partial sums to y atomically. */
    const int ks = SPL ? ksplit : 1;
    const int bx = ks > 1 ? (int)blockIdx.x / ks : (int)blockIdx.x, kz = ks > 1 ? (int)blockIdx.x % ks : 0;
    int c0 = 0, nch = n_ch;
    if (ks > 1) {
        const int all = (n_ch + U - 1) / U; /* n_ch < 2^18 */
        c0 = kz * all / ks * U;
        nch = min((kz + 1) * all / ks * U, n_ch) - c0;
    }
    const uint8_t *rp[MT][2];
    const uint16_t *sp[MT][2];
    int prow0[MT]; /* first stored row of each tile */
#pragma unroll
    for (int m = 0; m < MT; m++) {
        int tile;
        if (EPI == MER_CUDA_EPI_SILU)
            tile = m == 0 ? bx : (up_off >> 4) + bx;
        else
            tile = bx * MT + m;
        if (tile >= n_tiles) tile = n_tiles - 1; /* loads stay inside; outputs are masked */
        prow0[m] = (EPI == MER_CUDA_EPI_SILU || bx * MT + m < n_tiles) ? tile * 16 : -1000000;
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int p = tile * 16 + g + 8 * hf;
            rp[m][hf] = qs + ((size_t)p * n_ch + c0) * 64 + 16 * q;
            sp[m][hf] = sc + ((size_t)tile * n_ch + c0) * 16 * NB + (g + 8 * hf) * NB;
        }
    }
    const int nss = (nch + U - 1) / U;

    float acc[MT][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[m][i] = 0.f;

    qw wa[U][MT];
    int ss = warp;
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int ch = ss * U + u;
        const bool on = ss < nss && ch < nch;
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                wa[u][m].w[hf] = on ? mer__ld_stream(rp[m][hf] + (size_t)ch * 64) : make_uint4(0, 0, 0, 0);
                if (NB == 4)
                    wa[u][m].s[hf] = on ? q_ld_sc2(sp[m][hf] + (size_t)ch * 16 * NB) : make_uint2(0, 0);
                else
                    wa[u][m].s[hf].x = on ? q_ld_sc1(sp[m][hf] + (size_t)ch * 16 * NB) : 0u;
            }
    }
    mer__pdl_wait();
    const bool xon = g < n_tok;
    const uint16_t *xr = NORM ? nullptr : x + (size_t)(xon ? g : 0) * ldx + 8 * q + (size_t)c0 * CH;
    const uint16_t *xsr = nullptr;
    if constexpr (NORM) {
        extern __shared__ uint4 q_xs_dyn[];
        uint16_t *xs = (uint16_t *)q_xs_dyn;
        const int kst = K + 8;
        q_norm_rows<NW>(xf, ldx, nw, eps, K, n_tok, xs, kst);
        xsr = xs + (size_t)(xon ? g : 0) * kst + 8 * q + (size_t)c0 * CH;
    }
    const int Kl = K - c0 * CH;

    for (; ss < nss; ss += NW) {
        qw wb[U][MT];
        const int sn = ss + NW;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int ch = sn * U + u;
            const bool on = sn < nss && ch < nch;
#pragma unroll
            for (int m = 0; m < MT; m++)
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    wb[u][m].w[hf] = on ? mer__ld_stream(rp[m][hf] + (size_t)ch * 64) : make_uint4(0, 0, 0, 0);
                    if (NB == 4)
                        wb[u][m].s[hf] =
                            on ? q_ld_sc2(sp[m][hf] + (size_t)ch * 16 * NB) : make_uint2(0, 0);
                    else
                        wb[u][m].s[hf].x = on ? q_ld_sc1(sp[m][hf] + (size_t)ch * 16 * NB) : 0u;
                }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int ch = ss * U + u;
#pragma unroll
            for (int b = 0; b < NB; b++) {
                const int k0 = ch * CH + 32 * b;
                uint4 xb = make_uint4(0, 0, 0, 0);
                if (NORM) {
                    if (xon && k0 < Kl) xb = *(const uint4 *)(xsr + k0);
                } else if (xon && k0 < Kl) {
                    xb = __ldg((const uint4 *)(xr + k0));
                }
                float tc[4] = {0.f, 0.f, 0.f, 0.f}; /* FOLD: -136 * (sum of the block's activations) */
                if (FOLD) {
                    const uint32_t cm = 0xC308C308u; /* bf16x2 of -136 */
                    mer__mma_bf16(tc, cm, cm, cm, cm, xb.x, xb.y);
                    mer__mma_bf16(tc, cm, cm, cm, cm, xb.z, xb.w);
                }
#pragma unroll
                for (int m = 0; m < MT; m++) {
                    uint32_t a[2][2][2]; /* [h][row half][pair] */
#pragma unroll
                    for (int hf = 0; hf < 2; hf++) {
                        const uint4 wv = wa[u][m].w[hf];
                        if (FOLD) { /* 128 + n: the nibble in the mantissa of bf16 128.0 */
                            const uint32_t word = b == 0 ? wv.x : b == 1 ? wv.y : b == 2 ? wv.z : wv.w;
                            const uint32_t lo = word & 0x0F0F0F0Fu, hi = (word >> 4) & 0x0F0F0F0Fu;
                            a[0][hf][0] = __byte_perm(lo, 0x43434343u, 0x4140);
                            a[0][hf][1] = __byte_perm(lo, 0x43434343u, 0x4342);
                            a[1][hf][0] = __byte_perm(hi, 0x43434343u, 0x4140);
                            a[1][hf][1] = __byte_perm(hi, 0x43434343u, 0x4342);
                        } else if (IS4) {
                            const uint32_t word = b == 0 ? wv.x : b == 1 ? wv.y : b == 2 ? wv.z : wv.w;
                            q4_bf16(word & 0x0F0F0F0Fu, a[0][hf][0], a[0][hf][1]);
                            q4_bf16((word >> 4) & 0x0F0F0F0Fu, a[1][hf][0], a[1][hf][1]);
                        } else {
                            const uint32_t w0 = b == 0 ? wv.x : wv.z, w1 = b == 0 ? wv.y : wv.w;
                            q8_bf16(w0, a[0][hf][0], a[0][hf][1]);
                            q8_bf16(w1, a[1][hf][0], a[1][hf][1]);
                        }
                    }
                    float t[4] = {tc[0], tc[1], tc[2], tc[3]};
                    mer__mma_bf16(t, a[0][0][0], a[0][1][0], a[0][0][1], a[0][1][1], xb.x, xb.y);
                    mer__mma_bf16(t, a[1][0][0], a[1][1][0], a[1][0][1], a[1][1][1], xb.z, xb.w);
                    const uint2 s0 = wa[u][m].s[0], s1 = wa[u][m].s[1];
                    const uint32_t h0 = NB == 4 ? (b < 2 ? s0.x : s0.y) : s0.x;
                    const uint32_t h1 = NB == 4 ? (b < 2 ? s1.x : s1.y) : s1.x;
                    const float d0 = __half2float(__ushort_as_half((uint16_t)((b & 1) ? h0 >> 16 : h0 & 0xffff)));
                    const float d1 = __half2float(__ushort_as_half((uint16_t)((b & 1) ? h1 >> 16 : h1 & 0xffff)));
                    acc[m][0] = fmaf(d0, t[0], acc[m][0]);
                    acc[m][1] = fmaf(d0, t[1], acc[m][1]);
                    acc[m][2] = fmaf(d1, t[2], acc[m][2]);
                    acc[m][3] = fmaf(d1, t[3], acc[m][3]);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int m = 0; m < MT; m++) wa[u][m] = wb[u][m];
    }

    __shared__ float red[NW][MT][4][32];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int i = 0; i < 4; i++) red[warp][m][i][lane] = acc[m][i];
    __syncthreads();
    if constexpr (!ANORM) {
        if (warp != 0) return;
    }
    if (!ANORM || warp == 0) {
    float v[MT][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float s = 0.f;
#pragma unroll
            for (int ww = 0; ww < NW; ww++) s += red[ww][m][i][lane];
            v[m][i] = s;
        }
    // c0, c1: row g, tokens 2q, 2q+1; c2, c3: row g + 8.
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int n = 2 * q + (i & 1);
        const int roff = g + (i >> 1) * 8;
        if (n >= n_tok) continue;
        if (EPI == MER_CUDA_EPI_SILU) {
            const int r = prow0[0] + roff; /* gate row = output column */
            if (r >= split) continue;
            const float gt = v[0][i], up = v[MT - 1][i];
            ((uint16_t *)yv)[(size_t)n * ldy + r] = mer__to_bf16(gt / (1.f + __expf(-gt)) * up);
        } else {
#pragma unroll
            for (int m = 0; m < MT; m++) {
                if (prow0[m] < 0) continue;
                const int r = q_logical(prow0[m] + roff, split, up_off, n_out);
                if (r < 0) continue;
                const size_t o = (size_t)n * ldy + r;
                if (EPI == MER_CUDA_EPI_F32)
                    ((float *)yv)[o] = v[m][i];
                else if (EPI == MER_CUDA_EPI_F32_ADD && ks > 1)
                    atomicAdd((float *)yv + o, v[m][i]);
                else if (EPI == MER_CUDA_EPI_F32_ADD)
                    ((float *)yv)[o] += v[m][i];
                else
                    ((uint16_t *)yv)[o] = mer__to_bf16(v[m][i]);
            }
        }
    }
    }
    if constexpr (ANORM) {
        __shared__ int q_last;
        __threadfence(); /* this block's y, visible before it is counted */
        __syncthreads();
        if (threadIdx.x == 0) q_last = atomicAdd(cnt, 1) == (int)gridDim.x - 1;
        __syncthreads();
        if (!q_last) return;
        __threadfence();
        q_norm_rows<NW>((const float *)yv, ldy, nw, eps, n_out, n_tok, xn_out, n_out);
        if (threadIdx.x == 0) *cnt = 0;
    }
}

/* Blocks per SM the register allocation must allow (__launch_bounds__) for one-tile blocks: without a
 * bound ptxas gave the 16-warp kernels of the 7B matrices 78-126 registers, one block per SM, so that
 * q/k/v (288 blocks), o and down (224) ran in two waves on the H100's 132 SMs. 16 warps: 2 blocks (64
 * registers), 8: 3 (80), 4: 6 (80), except where that would spill (ptxas -v, CUDA 13.0: q4_0 with two
 * chunks at 16 warps, or folded). Two-tile blocks (gate/up, lm_head: many waves anyway) stay unbounded:
 * bounded to 80 registers they ran 3-12% slower. MER_QGEMV_MINB16/8/4 override at build time. */
#ifndef MER_QGEMV_MINB16
#define MER_QGEMV_MINB16 2
#endif
#ifndef MER_QGEMV_MINB8
#define MER_QGEMV_MINB8 3
#endif
#ifndef MER_QGEMV_MINB4
#define MER_QGEMV_MINB4 6
#endif
template <int Q4, int MT, int U, int NW>
constexpr int qgemv_minb() {
    return MT >= 2 || (Q4 == 2 && U >= 2) ? 1
           : NW >= 16                     ? (Q4 && U >= 2 ? 1 : MER_QGEMV_MINB16)
           : NW >= 8                      ? MER_QGEMV_MINB8
                                          : MER_QGEMV_MINB4;
}

template <int Q4, int MT, int U, int NW, int EPI, bool NORM, bool ANORM = false>
__global__ void __launch_bounds__(NW * 32, qgemv_minb<Q4, MT, U, NW>())
    qgemv_kernel(const uint8_t *__restrict__ qs, const uint16_t *__restrict__ sc, const uint16_t *__restrict__ x,
                 void *__restrict__ yv, int K, int n_ch, int n_out, int n_tiles, int split, int up_off, int n_tok,
                 int ldx, int ldy, int ksplit, const float *__restrict__ xf, const float *__restrict__ nw, float eps,
                 uint16_t *__restrict__ xn_out, int *cnt) {
    qgemv_body<Q4, MT, U, NW, EPI, false, NORM, ANORM>(qs, sc, x, yv, K, n_ch, n_out, n_tiles, split, up_off, n_tok, ldx,
                                                       ldy, 1, xf, nw, eps, xn_out, cnt);
}

/* Split-K blocks: as many per SM as 1024 threads allow (the split exists to fill the SMs evenly). */
template <int Q4, int U, int NW>
__global__ void __launch_bounds__(NW * 32, 1024 / (NW * 32))
    qgemv_split_kernel(const uint8_t *__restrict__ qs, const uint16_t *__restrict__ sc, const uint16_t *__restrict__ x,
                       void *__restrict__ yv, int K, int n_ch, int n_out, int n_tiles, int split, int up_off,
                       int n_tok, int ldx, int ldy, int ksplit) {
    qgemv_body<Q4, 1, U, NW, MER_CUDA_EPI_F32_ADD, true, false>(qs, sc, x, yv, K, n_ch, n_out, n_tiles, split, up_off,
                                                                 n_tok, ldx, ldy, ksplit, nullptr, nullptr, 0.f, nullptr,
                                                                 nullptr);
}

#define QGEMV_SPLIT_AUTO 1 /* off by default: 2-6 way split-K measured slower for o and down on the H100 */
static int g_qgemv_u = -1, g_qgemv_fold = -1, g_qgemv_split = -1;

void mer_cuda_set_qgemv_unroll(int u) { g_qgemv_u = u == 1 || u == 2 ? u : 0; }
void mer_cuda_set_qgemv_fold(int on) { g_qgemv_fold = on != 0; }
void mer_cuda_set_qgemv_split(int k) { g_qgemv_split = k > 0 && k <= 16 ? k : 0; }

/* nq: the RMSNorm fold's operands (NULL: none; F32 and SILU epilogues only, see mer_cuda_qgemv_norm). */
typedef struct qnorm {
    const float *x, *w;
    float eps;
} qnorm;

template <int Q4, int MT, int U, int NW, int EPI>
static cudaError_t launch_q(mer_cuda *c, void *y, int ldy, const uint16_t *x, int ldx, const mer_cuda_qmat *w,
                            int n_tok, int ks, const qnorm *nq) {
    const int n_tiles = w->n_phys / 16;
    const int blocks = (EPI == MER_CUDA_EPI_SILU ? w->up_off / 16 : (n_tiles + MT - 1) / MT) * ks;
    if (EPI == MER_CUDA_EPI_F32_ADD && MT == 1 && ks > 1)
        return mer__launch(c, qgemv_split_kernel<Q4, U, NW>, dim3(blocks), dim3(NW * 32), 0, (const uint8_t *)w->qs,
                           (const uint16_t *)w->sc, x, y, w->n_in, w->n_ch, w->n_out, n_tiles, w->split, w->up_off,
                           n_tok, ldx, ldy, ks);
    if constexpr (EPI == MER_CUDA_EPI_F32 || EPI == MER_CUDA_EPI_SILU) {
        if (nq)
            return mer__launch(c, qgemv_kernel<Q4, MT, U, NW, EPI, true>, dim3(blocks), dim3(NW * 32),
                               (size_t)n_tok * (w->n_in + 8) * 2,
                               (const uint8_t *)w->qs, (const uint16_t *)w->sc, (const uint16_t *)nullptr, y, w->n_in,
                               w->n_ch, w->n_out, n_tiles, w->split, w->up_off, n_tok, ldx, ldy, 1, nq->x, nq->w,
                               nq->eps, (uint16_t *)nullptr, (int *)nullptr);
    }
    return mer__launch(c, qgemv_kernel<Q4, MT, U, NW, EPI, false>, dim3(blocks), dim3(NW * 32), 0,
                       (const uint8_t *)w->qs, (const uint16_t *)w->sc, x, y, w->n_in, w->n_ch, w->n_out, n_tiles,
                       w->split, w->up_off, n_tok, ldx, ldy, ks, (const float *)nullptr, (const float *)nullptr, 0.f,
                       (uint16_t *)nullptr, (int *)nullptr);
}

template <int Q4, int MT, int U, int EPI>
static cudaError_t launch_q_nw(mer_cuda *c, int nw, void *y, int ldy, const uint16_t *x, int ldx,
                               const mer_cuda_qmat *w, int n_tok, int ks, const qnorm *nq) {
    if (nw >= 16) return launch_q<Q4, MT, U, 16, EPI>(c, y, ldy, x, ldx, w, n_tok, ks, nq);
    if (nw >= 8) return launch_q<Q4, MT, U, 8, EPI>(c, y, ldy, x, ldx, w, n_tok, ks, nq);
    return launch_q<Q4, MT, U, 4, EPI>(c, y, ldy, x, ldx, w, n_tok, ks, nq);
}

template <int Q4, int MT, int EPI>
static cudaError_t launch_q_u(mer_cuda *c, int u, int nw, void *y, int ldy, const uint16_t *x, int ldx,
                              const mer_cuda_qmat *w, int n_tok, int ks, const qnorm *nq) {
    if (u >= 2) return launch_q_nw<Q4, MT, 2, EPI>(c, nw, y, ldy, x, ldx, w, n_tok, ks, nq);
    return launch_q_nw<Q4, MT, 1, EPI>(c, nw, y, ldy, x, ldx, w, n_tok, ks, nq);
}

template <int Q4>
static cudaError_t launch_q_all(mer_cuda *c, int mt2, int u, int nw, void *y, int ldy, const uint16_t *x, int ldx,
                                const mer_cuda_qmat *w, int n_tok, mer_cuda_epi epi, int ks, const qnorm *nq) {
    switch (epi) {
    case MER_CUDA_EPI_F32:
        return mt2 ? launch_q_u<Q4, 2, MER_CUDA_EPI_F32>(c, u, nw, y, ldy, x, ldx, w, n_tok, ks, nq)
                   : launch_q_u<Q4, 1, MER_CUDA_EPI_F32>(c, u, nw, y, ldy, x, ldx, w, n_tok, ks, nq);
    case MER_CUDA_EPI_F32_ADD:
        return mt2 ? launch_q_u<Q4, 2, MER_CUDA_EPI_F32_ADD>(c, u, nw, y, ldy, x, ldx, w, n_tok, ks, nq)
                   : launch_q_u<Q4, 1, MER_CUDA_EPI_F32_ADD>(c, u, nw, y, ldy, x, ldx, w, n_tok, ks, nq);
    case MER_CUDA_EPI_BF16:
        return launch_q_u<Q4, 1, MER_CUDA_EPI_BF16>(c, u, nw, y, ldy, x, ldx, w, n_tok, ks, nq);
    default:
        return launch_q_u<Q4, 2, MER_CUDA_EPI_SILU>(c, u, nw, y, ldy, x, ldx, w, n_tok, ks, nq);
    }
}

/* The process-wide GEMV knobs from the environment, at first use. */
static void q_knobs(void) {
    if (g_qgemv_u < 0) {
        const char *s = getenv("MER_CUDA_QGEMV_U");
        mer_cuda_set_qgemv_unroll(s ? atoi(s) : 0);
    }
    if (g_qgemv_split < 0) {
        const char *s = getenv("MER_CUDA_QGEMV_SPLIT");
        mer_cuda_set_qgemv_split(s ? atoi(s) : 0);
    }
    if (g_qgemv_fold < 0) {
        const char *s = getenv("MER_CUDA_QGEMV_FOLD");
        mer_cuda_set_qgemv_fold(s ? atoi(s) : 0);
    }
}

/* The launch shape of the GEMV of w at an epilogue (the knobs read first): two tiles a block (gate/up
 * always) or one, split-K blocks per tile, warps a block, chunks a warp's step. Defaults measured at the
 * Qwen2.5-7B shapes (bench_gpu qgemv with MER_BENCH_GRID=1, every warps x unroll pair, PDL on): one tile a
 * block, all blocks resident in one wave - 16 warps (2 blocks per SM) up to 2 blocks per SM, else 8 (3 per
 * SM) - and one chunk a step (o, down: 16 warps; q/k/v: 8); two tiles a block (gate/up, lm_head), 4 warps. */
typedef struct qpick {
    int mt2, ks, nw, u;
} qpick;
static qpick q_pick(const mer_cuda *c, const mer_cuda_qmat *w, mer_cuda_epi epi) {
    q_knobs();
    qpick p;
    const int silu = epi == MER_CUDA_EPI_SILU;
    const int n_tiles = w->n_phys / 16;
    p.mt2 = silu || c->gemv_tile == 2 || (c->gemv_tile == 0 && n_tiles >= 16 * c->n_sm);
    p.ks = 1; /* split-K: only the one-tile residual-adding GEMVs (o, down) */
    if (epi == MER_CUDA_EPI_F32_ADD && !p.mt2) p.ks = g_qgemv_split > 0 ? g_qgemv_split : QGEMV_SPLIT_AUTO;
    const int blocks = (silu ? w->up_off / 16 : (n_tiles + (p.mt2 ? 1 : 0)) / (p.mt2 ? 2 : 1)) * p.ks;
    p.nw = c->gemv_nw ? c->gemv_nw : p.mt2 ? 4 : blocks <= 2 * c->n_sm ? 16 : 8;
    p.u = g_qgemv_u ? g_qgemv_u : 1;
    return p;
}

static mer_status check_q(const void *y, int ldy, const uint16_t *x, int ldx, const mer_cuda_qmat *w, int n_tok,
                          mer_cuda_epi epi, mer_err *err) {
    if (!q_is(w->dt) || !w->qs || !w->sc)
        return mer__errf(err, MER_E_ARG, "cuda qmatmul: not a q8_0/q4_0 matrix");
    const int n_y = epi == MER_CUDA_EPI_SILU ? w->n_out / 2 : w->n_out;
    if (n_tok < 1 || ldx < w->n_in || ldx % 8 || ldy < n_y || (int)epi < 0 || (int)epi > 3 ||
        (epi == MER_CUDA_EPI_SILU && (w->n_out % 2 || w->split != w->n_out / 2)))
        return mer__errf(err, MER_E_ARG,
                         "cuda qmatmul: bad sizes (n_tok %d, n_in %d, n_out %d, ldx %d, ldy %d, epi %d)", n_tok,
                         w->n_in, w->n_out, ldx, ldy, (int)epi);
    if (((uintptr_t)x | (uintptr_t)y) & 15)
        return mer__errf(err, MER_E_ARG, "cuda qmatmul: operands must be 16-byte aligned");
    return MER_OK;
}

#define QNORM_SMEM 49152   /* the bf16 rows of mer_cuda_qgemv_norm, in dynamic shared memory */
#define QNORM_MAX_TOK 4    /* rows folded at most (4 x 3592 x 2 bytes at the 7B width) */

static mer_status qgemv(mer_cuda *c, void *y, int ldy, const uint16_t *x, int ldx, const mer_cuda_qmat *w, int n_tok,
                        mer_cuda_epi epi, const qnorm *nq, mer_err *err) {
    mer_status st = check_q(y, ldy, nq ? (const uint16_t *)nq->x : x, ldx, w, n_tok, epi, err);
    if (st) return st;
    if (n_tok > MER__GEMV_MAX_TOK)
        return mer__errf(err, MER_E_ARG, "cuda qgemv: %d rows (at most %d)", n_tok, MER__GEMV_MAX_TOK);
    const qpick p = q_pick(c, w, epi);
    const int q4 = w->dt == MER_DTYPE_Q4_0;
    /* the RMSNorm fold has no folded-offset q4_0 variant (fewer kernels): it uses the plain one */
    const cudaError_t e =
        !q4                   ? launch_q_all<0>(c, p.mt2, p.u, p.nw, y, ldy, x, ldx, w, n_tok, epi, p.ks, nq)
        : g_qgemv_fold && !nq ? launch_q_all<2>(c, p.mt2, p.u, p.nw, y, ldy, x, ldx, w, n_tok, epi, p.ks, nq)
                              : launch_q_all<1>(c, p.mt2, p.u, p.nw, y, ldy, x, ldx, w, n_tok, epi, p.ks, nq);
    if (e != cudaSuccess) return mer__cu_fail(err, e, "qgemv_kernel launch", __FILE__, __LINE__);
    return MER_OK;
}

mer_status mer_cuda_qgemv(mer_cuda *c, void *y, int ldy, const uint16_t *x, int ldx, const mer_cuda_qmat *w, int n_tok,
                          mer_cuda_epi epi, mer_err *err) {
    return qgemv(c, y, ldy, x, ldx, w, n_tok, epi, NULL, err);
}

static int g_qaddnorm = -1;
void mer_cuda_set_qgemv_add_norm(int on) { g_qaddnorm = on != 0; }

mer_status mer_cuda_qgemv_add_norm(mer_cuda *c, float *y, int ldy, const uint16_t *x, int ldx, const mer_cuda_qmat *w,
                                   int n_tok, const float *norm_w, float eps, uint16_t *xn, int *cnt, mer_err *err) {
    mer_status st = check_q(y, ldy, x, ldx, w, n_tok, MER_CUDA_EPI_F32_ADD, err);
    if (st) return st;
    if (g_qaddnorm < 0) {
        const char *s = getenv("MER_CUDA_ADDNORM"); /* off by default: measured slower (cuda_quant.h) */
        mer_cuda_set_qgemv_add_norm(s ? atoi(s) : 0);
    }
    /* the fused form only where the GEMV's own pick is one tile, 16 warps, one chunk a step, no split-K */
    const qpick p = q_pick(c, w, MER_CUDA_EPI_F32_ADD);
    const int n_tiles = w->n_phys / 16;
    const int q4 = w->dt == MER_DTYPE_Q4_0;
    if (!g_qaddnorm || p.mt2 || p.ks != 1 || p.nw != 16 || p.u != 1 || (q4 && g_qgemv_fold) ||
        n_tok > MER__GEMV_MAX_TOK || w->n_out % 8 || ldy != w->n_out || !cnt || !norm_w ||
        (((uintptr_t)xn | (uintptr_t)norm_w) & 15)) {
        if ((st = qgemv(c, y, ldy, x, ldx, w, n_tok, MER_CUDA_EPI_F32_ADD, NULL, err))) return st;
        return mer_cuda_rmsnorm(c, xn, MER_DTYPE_BF16, y, norm_w, n_tok, w->n_out, eps, err);
    }
#define QAN(Q)                                                                                                      \
    mer__launch(c, qgemv_kernel<Q, 1, 1, 16, MER_CUDA_EPI_F32_ADD, false, true>, dim3(n_tiles), dim3(16 * 32), 0,    \
                (const uint8_t *)w->qs, (const uint16_t *)w->sc, x, (void *)y, w->n_in, w->n_ch, w->n_out, n_tiles,  \
                w->split, w->up_off, n_tok, ldx, ldy, 1, (const float *)nullptr, norm_w, eps, xn, cnt)
    const cudaError_t e = q4 ? QAN(1) : QAN(0);
#undef QAN
    if (e != cudaSuccess) return mer__cu_fail(err, e, "qgemv_kernel (add + norm) launch", __FILE__, __LINE__);
    return MER_OK;
}

mer_status mer_cuda_qgemv_norm(mer_cuda *c, void *y, int ldy, const float *x, int ldx, const float *norm_w, float eps,
                               const mer_cuda_qmat *w, int n_tok, mer_cuda_epi epi, mer_err *err) {
    if (epi != MER_CUDA_EPI_F32 && epi != MER_CUDA_EPI_SILU)
        return mer__errf(err, MER_E_ARG, "cuda qgemv_norm: epilogue %d (f32 or silu)", (int)epi);
    if (!norm_w || ((uintptr_t)norm_w & 15))
        return mer__errf(err, MER_E_ARG, "cuda qgemv_norm: the norm weight must be 16-byte aligned");
    if ((size_t)n_tok * (w->n_in + 8) * 2 > QNORM_SMEM)
        return mer__errf(err, MER_E_ARG, "cuda qgemv_norm: %d rows of %d exceed %d bytes of shared memory", n_tok,
                         w->n_in, QNORM_SMEM);
    const qnorm nq = {x, norm_w, eps};
    return qgemv(c, y, ldy, NULL, ldx, w, n_tok, epi, &nq, err);
}

static int g_qnorm_fold = -1, g_qnorm_parts = 1;

void mer_cuda_set_qnorm_fold(int max_tok, int parts) {
    g_qnorm_fold = max_tok < 0 ? 0 : max_tok;
    g_qnorm_parts = parts & 3;
}

int mer_cuda_qnorm_fold(int n_tok) {
    if (g_qnorm_fold < 0) {
        const char *s = getenv("MER_CUDA_NORM_FOLD"), *p = getenv("MER_CUDA_NORM_FOLD_PARTS");
        mer_cuda_set_qnorm_fold(s ? atoi(s) : 1, p ? atoi(p) : 1);
    }
    return n_tok >= 1 && n_tok <= QNORM_MAX_TOK && n_tok <= g_qnorm_fold ? g_qnorm_parts : 0;
}

mer_status mer_cuda_qmatmul(mer_cuda *c, void *y, int ldy, const uint16_t *x, int ldx, const mer_cuda_qmat *w,
                            int n_tok, mer_cuda_epi epi, uint16_t *scratch, size_t scratch_elems, mer_err *err) {
    if (n_tok <= MER__GEMV_MAX_TOK) return mer_cuda_qgemv(c, y, ldy, x, ldx, w, n_tok, epi, err);
    mer_status st = check_q(y, ldy, x, ldx, w, n_tok, epi, err);
    if (st) return st;
    if (epi == MER_CUDA_EPI_SILU)
        return mer__errf(err, MER_E_ARG, "cuda qmatmul: the silu epilogue takes at most %d rows", MER__GEMV_MAX_TOK);
    const size_t per = scratch_elems / (size_t)w->n_in / 16 * 16;
    if (!scratch || per < 16 || ((uintptr_t)scratch & 15))
        return mer__errf(err, MER_E_ARG, "cuda qmatmul: scratch of %zu elements holds fewer than 16 rows of %d",
                         scratch_elems, w->n_in);
    const size_t ys = epi == MER_CUDA_EPI_BF16 ? 2 : 4;
    for (int r0 = 0; r0 < w->n_out; r0 += (int)per) {
        const int nr = w->n_out - r0 < (int)per ? w->n_out - r0 : (int)per;
        if ((st = mer_cuda_qmat_dequant(c, scratch, w, r0, nr, err))) return st;
        if ((st = mer_cuda_matmul_cublas(c, (char *)y + (size_t)r0 * ys, ldy, x, ldx, scratch, MER_DTYPE_BF16, n_tok,
                                         w->n_in, nr, epi, err)))
            return st;
    }
    return MER_OK;
}
