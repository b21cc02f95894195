/* cuda_attn.cu - attention over the device KV cache, with grouped KV heads.
 *
 * Decode (attn_split_kernel): one block per (key split, KV head, query token); its warps take the query heads
 * of that KV group. The block stages 32 keys at a time (K and V, coalesced 16-byte loads, all issued before
 * any is used) in shared memory, shared by the heads of the group; then each warp scores one key per lane (no
 * shuffles), keeps an online softmax in the exp2 domain, and accumulates p.V with each lane owning d/32 output
 * elements. The fused form (mer_cuda_attn_decode_rope) also does the layer's bias + RoPE on the fly: q
 * straight from the f32 projection (never rounded), and the block whose keys include the new position stores
 * its K and V in the cache before staging; there the first tile (cached rows from earlier, synchronised steps)
 * and cos/sin are staged before griddepcontrol.wait, so under programmatic dependent launch they overlap the
 * QKV projection, and the new row is patched into the staged tile. The number of keys (pos + 1) is read on the
 * device, so a captured graph serves every position: each split takes ceil(len / n_split) keys rounded up to
 * 32 and splits past the end write an empty partial. The last block of a (token, KV group) to finish (an
 * atomic arrival counter) merges the partial (max, sum, output) triples, so decode attention is one launch.
 * Activations and cache are bf16 or f32 (the f32 path of the model).
 *
 * Prefill (attn_prefill_kernel, d = 64 or 128): flash-attention-2 on the tensor cores. A block takes 64
 * query rows of one KV group, where a row is a (token, head-of-the-group) pair, so all the heads that
 * share K/V share every K/V tile staged in shared memory (64 keys, rows padded by 16 bytes: conflict-free
 * for the fragment loads). Each warp owns 16 rows: S = Q K^T with mma.sync m16n8k16 (Q fragments held in
 * registers for the whole pass), the causal mask and online softmax on the accumulator fragments, P
 * reused in registers as the A operand of P V, V fragments read with ldmatrix.trans. */
#include "kernels/cuda/cuda_internal.cuh"
#include "kernels/cuda/cuda_flash.cuh"

#include <math.h>
#include <stdlib.h>

#define LOG2E 1.4426950408889634f

// --- decode: split-K -------------------------------------------------------------------------------

/* Layout of the decode workspace: a region per token row t at a fixed offset t * ws_tok(H, S, d) floats,
 * whatever the number of rows of the call (calls of different row counts share one workspace, and a
 * counter must never sit where another call writes partials): partial outputs [H][S][d] f32, (max, sum)
 * pairs [H][S][2], then arrival counters [KV <= H] (int; zero between calls: the last block of a (token,
 * group) resets its counter). At most 32 splits (a lane per split in the merge). */
__host__ __device__ static inline size_t ws_tok(int H, int S, int d) { return (size_t)H * S * (d + 2) + H; }
#define DT 32     /* keys per shared-memory tile */
#define MAXC 8    /* 16-byte chunks a thread loads per round of a tile */

/* Shared memory of a decode block: q [nw][d] f32, merge weights [rep][2] f32, cos/sin [d] f32, then the K
 * tile [DT][d + pad] and the V tile [DT][d] (rows padded by 16 bytes: conflict-free row-per-lane reads). */
static size_t split_smem(int nw, int rep, int d, size_t es) {
    size_t f = ((size_t)nw * d + 2 * (size_t)rep + d) * sizeof(float);
    f = (f + 15) & ~(size_t)15;
    return f + (size_t)DT * (d * es + 16) + (size_t)DT * d * es;
}

/* DPL consecutive elements of a staged row to float (8- or 16-byte shared loads where they fit). */
template <int DPL, typename T>
__device__ __forceinline__ void ld_row(const T *p, float *f) {
    if constexpr (sizeof(T) == 2 && DPL == 4) {
        const uint2 u = *(const uint2 *)p;
        f[0] = mer__bf16_lo(u.x), f[1] = mer__bf16_hi(u.x), f[2] = mer__bf16_lo(u.y), f[3] = mer__bf16_hi(u.y);
    } else if constexpr (DPL == 8) {
        mer__ld8(p, f);
    } else if constexpr (sizeof(T) == 4 && DPL == 4) {
        const float4 u = *(const float4 *)p;
        f[0] = u.x, f[1] = u.y, f[2] = u.z, f[3] = u.w;
    } else {
#pragma unroll
        for (int i = 0; i < DPL; i++) f[i] = mer__ldf(p + i);
    }
}

/* Stages keys/values k0 .. k0 + nk - 1 (nk <= DT) of one (slot, group) in Ks/Vs, rows past nk zeroed:
 * every 16-byte load of a round issued before any is stored. */
template <typename T>
__device__ __forceinline__ void stage_tile(T *Ks, T *Vs, const T *kb, const T *vb, int k0, int nk, int d, int ldk) {
    const int nt = blockDim.x;
    const int vchunks = d * (int)sizeof(T) / 16; /* 16-byte chunks per row */
    const int total = 2 * DT * vchunks;
    for (int base = 0; base < total; base += MAXC * nt) {
        uint4 buf[MAXC];
#pragma unroll
        for (int u = 0; u < MAXC; u++) {
            const int c = base + u * nt + threadIdx.x;
            buf[u] = make_uint4(0, 0, 0, 0);
            if (c < total) {
                const int isv = c >= DT * vchunks, cc = isv ? c - DT * vchunks : c;
                const int r = cc / vchunks, cx = cc - r * vchunks;
                if (r < nk) buf[u] = *((const uint4 *)((isv ? vb : kb) + (size_t)(k0 + r) * d) + cx);
            }
        }
#pragma unroll
        for (int u = 0; u < MAXC; u++) {
            const int c = base + u * nt + threadIdx.x;
            if (c < total) {
                const int isv = c >= DT * vchunks, cc = isv ? c - DT * vchunks : c;
                const int r = cc / vchunks, cx = cc - r * vchunks;
                *((uint4 *)(isv ? Vs + (size_t)r * d : Ks + (size_t)r * ldk) + cx) = buf[u];
            }
        }
    }
}

/* FAST: the tile's scores with four independent sums and p.V unrolled over the whole tile (two sums per
 * output; keys past the tile's end have p = 0 and zeroed values), instead of one dependent chain each.
 * pre (fused form only, all heads of the group in one pass): the block reads pos/slot, makes cos/sin and
 * stages its first tile before griddepcontrol.wait - with programmatic dependent launch that overlaps the
 * previous kernel (the QKV projection). Safe because the cached rows below the new position were written
 * by earlier steps, which the host has synchronised; the new row is patched into the staged tile. */
template <int DPL, typename T, bool ROPE, bool FAST>
__global__ void attn_split_kernel(const T *__restrict__ q, const float *__restrict__ qkv, const float *__restrict__ bias,
                                  const float *__restrict__ inv_freq, T *kc, T *vc, const int32_t *__restrict__ pos,
                                  const int32_t *__restrict__ slot, int H, int KV, int d, int n_ctx, int S, float sl2,
                                  float *__restrict__ ws, T *__restrict__ out, int pre_flag) {
    extern __shared__ __align__(16) float sm[];
    __shared__ int is_last;
    mer__pdl_launch();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5, nt = blockDim.x;
    const int s = blockIdx.x, g = blockIdx.y, t = blockIdx.z;
    const int rep = H / KV, half = d / 2;
    const bool pre = ROPE && pre_flag && rep <= nw;
    if (!pre) mer__pdl_wait();
    const int p = pos[t], len = p + 1, sl = slot[t];
    int chunk = (len + S - 1) / S;
    chunk = (chunk + 31) & ~31;
    const int beg = s * chunk;
    const int end = min(len, beg + chunk);
    float *qs = sm, *wgt = sm + nw * d, *cs = wgt + 2 * rep;
    const size_t foff = (((size_t)nw * d + 2 * rep + d) * sizeof(float) + 15) & ~(size_t)15;
    const int ldk = d + 16 / (int)sizeof(T); /* padded K row, elements */
    T *Ks = (T *)((char *)sm + foff);
    T *Vs = Ks + (size_t)DT * ldk;
    T *kb = kc + ((size_t)sl * KV + g) * n_ctx * d;
    T *vb = vc + ((size_t)sl * KV + g) * n_ctx * d;
    const float *row = ROPE ? qkv + (size_t)t * (H + 2 * KV) * d : NULL;
    float *po = ws ? ws + (size_t)t * ws_tok(H, S, d) : NULL; /* this row's partials */
    float *pml = po ? po + (size_t)H * S * d : NULL;
    int *cnt = pml ? (int *)(pml + (size_t)H * S * 2) : NULL;

    if (pre && beg < end) stage_tile(Ks, Vs, kb, vb, beg, min(DT, end - beg), d, ldk);
    if (ROPE) {
        for (int i = threadIdx.x; i < half; i += nt) {
            float sn, co;
            sincosf((float)p * inv_freq[i], &sn, &co);
            cs[i] = co;
            cs[half + i] = sn;
        }
        if (pre) mer__pdl_wait();
        __syncthreads();
        if (beg <= p && p < end) { /* this block holds position p: store the new key and value */
            const int kq = (H + g) * d, vq = (H + KV + g) * d;
            const bool inst = pre && p < beg + DT; /* also into the tile staged before the wait */
            T *ks = Ks + (size_t)(p - beg) * ldk, *vs = Vs + (size_t)(p - beg) * d;
            for (int i = threadIdx.x; i < half; i += nt) {
                float x1 = row[kq + i], x2 = row[kq + i + half];
                if (bias) x1 += bias[kq + i], x2 += bias[kq + i + half];
                const float y1 = x1 * cs[i] - x2 * cs[half + i], y2 = x2 * cs[i] + x1 * cs[half + i];
                mer__stf(kb + (size_t)p * d + i, y1);
                mer__stf(kb + (size_t)p * d + i + half, y2);
                if (inst) mer__stf(ks + i, y1), mer__stf(ks + i + half, y2);
            }
            for (int i = threadIdx.x; i < d; i += nt) {
                const float v = row[vq + i] + (bias ? bias[vq + i] : 0.f);
                mer__stf(vb + (size_t)p * d + i, v);
                if (inst) mer__stf(vs + i, v);
            }
        }
    }
    const bool von = lane * DPL < d;
    for (int j0 = 0; j0 < rep; j0 += nw) {
        const int j = j0 + warp;
        const bool hon = j < rep;
        const int h = g * rep + j;
        float *qw = qs + warp * d;
        if (hon) {
            if (ROPE) {
                const int qq = h * d;
                for (int i = lane; i < half; i += 32) {
                    float x1 = row[qq + i], x2 = row[qq + i + half];
                    if (bias) x1 += bias[qq + i], x2 += bias[qq + i + half];
                    qw[i] = (x1 * cs[i] - x2 * cs[half + i]) * sl2;
                    qw[i + half] = (x2 * cs[i] + x1 * cs[half + i]) * sl2;
                }
            } else {
                const T *qr = q + ((size_t)t * H + h) * d;
                for (int i = lane; i < d; i += 32) qw[i] = mer__ldf(qr + i) * sl2;
            }
        }
        float m = -1e30f, l = 0.f, o[DPL];
#pragma unroll
        for (int i = 0; i < DPL; i++) o[i] = 0.f;
        for (int k0 = beg; k0 < end; k0 += DT) {
            const int nk = min(DT, end - k0);
            __syncthreads(); /* the previous tile is consumed; q and new K/V are written */
            if (!(pre && k0 == beg)) {
                stage_tile(Ks, Vs, kb, vb, k0, nk, d, ldk);
                __syncthreads();
            }
            if (!hon) continue;
            float sc = -INFINITY;
            if (FAST) {
                const T *kr = Ks + (size_t)lane * ldk;
                float a[4] = {0.f, 0.f, 0.f, 0.f};
                for (int i0 = 0; i0 < d; i0 += 32) {
#pragma unroll
                    for (int u = 0; u < 4; u++) {
                        const int i = i0 + 8 * u;
                        if (i < d) {
                            float kf[8];
                            mer__ld8(kr + i, kf);
                            float4 q0 = *(const float4 *)(qw + i), q1 = *(const float4 *)(qw + i + 4);
                            a[u] += q0.x * kf[0] + q0.y * kf[1] + q0.z * kf[2] + q0.w * kf[3] + q1.x * kf[4] +
                                    q1.y * kf[5] + q1.z * kf[6] + q1.w * kf[7];
                        }
                    }
                }
                if (lane < nk) sc = (a[0] + a[1]) + (a[2] + a[3]);
            } else if (lane < nk) {
                const T *kr = Ks + (size_t)lane * ldk;
                float a = 0.f;
#pragma unroll 4
                for (int i = 0; i < d; i += 8) {
                    float kf[8];
                    mer__ld8(kr + i, kf);
                    float4 q0 = *(const float4 *)(qw + i), q1 = *(const float4 *)(qw + i + 4);
                    a += q0.x * kf[0] + q0.y * kf[1] + q0.z * kf[2] + q0.w * kf[3] + q1.x * kf[4] + q1.y * kf[5] +
                         q1.z * kf[6] + q1.w * kf[7];
                }
                sc = a;
            }
            const float mn = fmaxf(m, mer__warp_max(sc));
            const float corr = exp2f(m - mn);
            const float pr = exp2f(sc - mn);
            l = l * corr + pr;
#pragma unroll
            for (int i = 0; i < DPL; i++) o[i] *= corr;
            if (FAST) {
                float o2[DPL];
#pragma unroll
                for (int i = 0; i < DPL; i++) o2[i] = 0.f;
                const T *vr = Vs + lane * DPL;
#pragma unroll
                for (int jj = 0; jj < DT; jj += 2) {
                    const float p0 = __shfl_sync(0xffffffffu, pr, jj), p1 = __shfl_sync(0xffffffffu, pr, jj + 1);
                    if (von) {
                        float v0[DPL], v1[DPL];
                        ld_row<DPL>(vr + (size_t)jj * d, v0);
                        ld_row<DPL>(vr + (size_t)(jj + 1) * d, v1);
#pragma unroll
                        for (int i = 0; i < DPL; i++) o[i] += p0 * v0[i], o2[i] += p1 * v1[i];
                    }
                }
#pragma unroll
                for (int i = 0; i < DPL; i++) o[i] += o2[i];
            } else {
                for (int jj = 0; jj < nk; jj++) {
                    const float pj = __shfl_sync(0xffffffffu, pr, jj);
                    if (von) {
                        const T *vr = Vs + (size_t)jj * d + lane * DPL;
#pragma unroll
                        for (int i = 0; i < DPL; i++) o[i] += pj * mer__ldf(vr + i);
                    }
                }
            }
            m = mn;
        }
        if (!hon) continue;
        l = mer__warp_sum(l);
        if (von) {
            if (S == 1) {
                const float inv = l > 0.f ? 1.f / l : 0.f;
                T *orow = out + ((size_t)t * H + h) * d + lane * DPL;
#pragma unroll
                for (int i = 0; i < DPL; i++) mer__stf(orow + i, o[i] * inv);
            } else {
                float *prow = po + ((size_t)h * S + s) * d + lane * DPL;
#pragma unroll
                for (int i = 0; i < DPL; i++) prow[i] = o[i];
            }
        }
        if (S > 1 && lane == 0) {
            pml[((size_t)h * S + s) * 2] = m;
            pml[((size_t)h * S + s) * 2 + 1] = l;
        }
    }
    if (S == 1) return;
    // The last of the S blocks of this (token, group) to finish merges the partials.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) is_last = atomicAdd(&cnt[g], 1) == S - 1;
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    // A warp per head, a lane per split (S <= 32): weights by warp reductions, then every lane adds
    // its d/32 elements over the splits that hold keys (loads of successive splits in flight together).
    for (int jj = warp; jj < rep; jj += nw) {
        const size_t hb = (size_t)g * rep + jj; /* head within the row */
        const float ms = lane < S ? __ldcg(pml + (hb * S + lane) * 2) : -1e30f;
        const float ls = lane < S ? __ldcg(pml + (hb * S + lane) * 2 + 1) : 0.f;
        const float M = mer__warp_max(ms);
        const float w = ls > 0.f ? exp2f(ms - M) : 0.f;
        const float L = mer__warp_sum(w * ls);
        const float inv = L > 0.f ? 1.f / L : 0.f;
        float a[DPL];
#pragma unroll
        for (int i = 0; i < DPL; i++) a[i] = 0.f;
#pragma unroll 4
        for (int k = 0; k < S; k++) {
            const float wk = __shfl_sync(0xffffffffu, w, k);
            if (wk > 0.f && von) {
                const float *pr = po + (hb * S + k) * d + lane * DPL;
#pragma unroll
                for (int i = 0; i < DPL; i++) a[i] += wk * __ldcg(pr + i);
            }
        }
        if (von) {
#pragma unroll
            for (int i = 0; i < DPL; i++) mer__stf(out + ((size_t)t * H + hb) * d + lane * DPL + i, a[i] * inv);
        }
    }
    if (threadIdx.x == 0) cnt[g] = 0;
}

size_t mer_cuda_attn_decode_ws(int n_tok, int n_head, int d, int n_split) {
    if (n_split <= 1) return 0;
    return (size_t)n_tok * ws_tok(n_head, n_split, d) * sizeof(float);
}

/* MER_CUDA_ATTN_V (default 3): bit 0 the FAST tile arithmetic, bit 1 staging before the wait (fused form).
 * H100, 7B shape, both on vs both off (bench_gpu quant/model, same run): q8_0 b1 280.4 -> 286.3 tok/s,
 * q4_0 399.7 -> 410.8, bf16 b1 174.4 -> 174.9 (no PDL there); FAST alone is within noise in the model
 * (q8_0 280.8), the pre-wait staging is the gain under PDL. */
static int attn_variant(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("MER_CUDA_ATTN_V");
        v = e ? atoi(e) & 3 : 3;
    }
    return v;
}

template <bool ROPE, int DPL, typename T, bool FAST>
static cudaError_t launch_split4(mer_cuda *c, dim3 grid, dim3 block, size_t smem, const T *q, const float *qkv,
                                 const float *bias, const float *inv, T *kc, T *vc, const int32_t *pos,
                                 const int32_t *slot, int H, int KV, int d, int n_ctx, int S, float sl2, float *ws,
                                 T *out, int pre) {
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(attn_split_kernel<DPL, T, ROPE, FAST>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    return mer__launch(c, attn_split_kernel<DPL, T, ROPE, FAST>, grid, block, smem, q, qkv, bias, inv, kc, vc, pos, slot,
                       H, KV, d, n_ctx, S, sl2, ws, out, pre);
}

template <bool ROPE, int DPL, typename T>
static cudaError_t launch_split3(mer_cuda *c, dim3 grid, dim3 block, size_t smem, const T *q, const float *qkv,
                                 const float *bias, const float *inv, T *kc, T *vc, const int32_t *pos,
                                 const int32_t *slot, int H, int KV, int d, int n_ctx, int S, float sl2, float *ws,
                                 T *out) {
    const int v = attn_variant(), pre = (v >> 1) & 1;
    if (v & 1)
        return launch_split4<ROPE, DPL, T, true>(c, grid, block, smem, q, qkv, bias, inv, kc, vc, pos, slot, H, KV, d,
                                                 n_ctx, S, sl2, ws, out, pre);
    return launch_split4<ROPE, DPL, T, false>(c, grid, block, smem, q, qkv, bias, inv, kc, vc, pos, slot, H, KV, d,
                                              n_ctx, S, sl2, ws, out, pre);
}

template <bool ROPE, typename T>
static cudaError_t launch_split(mer_cuda *c, dim3 grid, dim3 block, size_t smem, const T *q, const float *qkv,
                                const float *bias, const float *inv, T *kc, T *vc, const int32_t *pos,
                                const int32_t *slot, int H, int KV, int d, int n_ctx, int S, float sl2, float *ws,
                                T *out) {
    if (d <= 32)
        return launch_split3<ROPE, 1, T>(c, grid, block, smem, q, qkv, bias, inv, kc, vc, pos, slot, H, KV, d, n_ctx, S,
                                         sl2, ws, out);
    if (d <= 64)
        return launch_split3<ROPE, 2, T>(c, grid, block, smem, q, qkv, bias, inv, kc, vc, pos, slot, H, KV, d, n_ctx, S,
                                         sl2, ws, out);
    if (d <= 128)
        return launch_split3<ROPE, 4, T>(c, grid, block, smem, q, qkv, bias, inv, kc, vc, pos, slot, H, KV, d, n_ctx, S,
                                         sl2, ws, out);
    return launch_split3<ROPE, 8, T>(c, grid, block, smem, q, qkv, bias, inv, kc, vc, pos, slot, H, KV, d, n_ctx, S, sl2,
                                     ws, out);
}

static mer_status decode_common(mer_cuda *c, void *out, const void *q, const float *qkv, const float *bias,
                                const float *inv, void *kc, void *vc, mer_dtype t, const int32_t *pos,
                                const int32_t *slot, int n_tok, int H, int KV, int d, int n_ctx, int S, float scale,
                                void *ws, mer_err *err) {
    if (n_tok < 1 || n_tok > 65535 || KV < 1 || H % KV || d < 8 || d % 8 || d > 256 || S < 1 || S > 32 ||
        (S > 1 && !ws) || (t != MER_DTYPE_BF16 && t != MER_DTYPE_F32))
        return mer__errf(err, MER_E_ARG, "cuda attention: n_tok %d, heads %d/%d, d %d, splits %d, dtype %s", n_tok, H, KV,
                         d, S, mer_dtype_name(t));
    const int rep = H / KV;
    const int nw = rep < 16 ? rep : 16;
    float *wsf = S > 1 ? (float *)ws : NULL;
    dim3 grid(S, KV, n_tok), block(nw * 32);
    const size_t smem = split_smem(nw, rep, d, t == MER_DTYPE_F32 ? 4 : 2);
    const float sl2 = scale * LOG2E;
    cudaError_t e;
    if (t == MER_DTYPE_BF16) {
        if (qkv)
            e = launch_split<true, uint16_t>(c, grid, block, smem, NULL, qkv, bias, inv, (uint16_t *)kc, (uint16_t *)vc,
                                             pos, slot, H, KV, d, n_ctx, S, sl2, wsf, (uint16_t *)out);
        else
            e = launch_split<false, uint16_t>(c, grid, block, smem, (const uint16_t *)q, NULL, NULL, NULL, (uint16_t *)kc,
                                              (uint16_t *)vc, pos, slot, H, KV, d, n_ctx, S, sl2, wsf,
                                              (uint16_t *)out);
    } else {
        if (qkv)
            e = launch_split<true, float>(c, grid, block, smem, NULL, qkv, bias, inv, (float *)kc, (float *)vc, pos, slot,
                                          H, KV, d, n_ctx, S, sl2, wsf, (float *)out);
        else
            e = launch_split<false, float>(c, grid, block, smem, (const float *)q, NULL, NULL, NULL, (float *)kc,
                                           (float *)vc, pos, slot, H, KV, d, n_ctx, S, sl2, wsf, (float *)out);
    }
    if (e != cudaSuccess) return mer__cu_fail(err, e, "attn_split_kernel launch", __FILE__, __LINE__);
    return MER_OK;
}

mer_status mer_cuda_attn_decode(mer_cuda *c, void *out, const void *q, const void *kc, const void *vc, mer_dtype t,
                                const int32_t *pos, const int32_t *slot, int n_tok, int H, int KV, int d, int n_ctx,
                                int S, float scale, void *ws, mer_err *err) {
    if (!q) return mer__errf(err, MER_E_ARG, "cuda attention: no queries");
    return decode_common(c, out, q, NULL, NULL, NULL, (void *)kc, (void *)vc, t, pos, slot, n_tok, H, KV, d, n_ctx, S,
                         scale, ws, err);
}

mer_status mer_cuda_attn_decode_rope(mer_cuda *c, void *out, const float *qkv, const float *bias, const float *inv_freq,
                                     void *kc, void *vc, mer_dtype t, const int32_t *pos, const int32_t *slot, int n_tok,
                                     int H, int KV, int d, int n_ctx, int S, float scale, void *ws, mer_err *err) {
    if (!qkv || !inv_freq || d % 2) return mer__errf(err, MER_E_ARG, "cuda attention: no qkv / inv_freq, or odd d");
    return decode_common(c, out, NULL, qkv, bias, inv_freq, kc, vc, t, pos, slot, n_tok, H, KV, d, n_ctx, S, scale, ws,
                         err);
}

// --- prefill: flash-attention-2 on the tensor cores ---------------------------------------------------

#define PF_ROWS 64 /* query rows per block (4 warps x 16) */
#define PF_KEYS 64 /* keys per tile */

template <int D>
__global__ void __launch_bounds__(128) attn_prefill_kernel(const uint16_t *__restrict__ q, const uint16_t *__restrict__ kc,
                                                           const uint16_t *__restrict__ vc, uint16_t *__restrict__ out,
                                                           int sl, int pos0, int T, int H, int KV, int n_ctx, float sl2) {
    constexpr int LD = D + 8;  // padded row (elements)
    __shared__ __align__(16) uint16_t Ks[PF_KEYS * LD];
    __shared__ __align__(16) uint16_t Vs[PF_KEYS * LD];
    mer__pdl_launch();
    mer__pdl_wait();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int gi = lane >> 2, qd = lane & 3;
    const int g = blockIdx.y, rep = H / KV;
    const int nrows = T * rep;
    const int r0 = blockIdx.x * PF_ROWS + warp * 16 + gi, r1 = r0 + 8;
    const int t0 = (r0 < nrows ? r0 : nrows - 1) / rep, t1 = (r1 < nrows ? r1 : nrows - 1) / rep;
    const int h0 = g * rep + (r0 < nrows ? r0 : nrows - 1) % rep, h1 = g * rep + (r1 < nrows ? r1 : nrows - 1) % rep;
    const int lim0 = r0 < nrows ? pos0 + t0 : -1, lim1 = r1 < nrows ? pos0 + t1 : -1;

    uint32_t qf[D / 16][4];
    {
        const uint16_t *q0 = q + ((size_t)t0 * H + h0) * D + qd * 2;
        const uint16_t *q1 = q + ((size_t)t1 * H + h1) * D + qd * 2;
        mer__fa_load_q<D>(qf, q0, q1);
    }
    const int last_row = min(nrows - 1, (int)blockIdx.x * PF_ROWS + PF_ROWS - 1);
    const int n_keys = pos0 + last_row / rep + 1;
    const uint16_t *kb = kc + ((size_t)sl * KV + g) * n_ctx * D;
    const uint16_t *vb = vc + ((size_t)sl * KV + g) * n_ctx * D;

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    mer__fa_ml ml = {-1e30f, -1e30f, 0.f, 0.f};

    for (int kt = 0; kt < n_keys; kt += PF_KEYS) {
        __syncthreads();
        constexpr int VEC = D / 8;  // uint4 per row
        for (int idx = threadIdx.x; idx < PF_KEYS * VEC; idx += 128) {
            const int row = idx / VEC, c8 = idx % VEC;
            uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
            if (kt + row < n_keys) {
                kv = *(const uint4 *)(kb + (size_t)(kt + row) * D + c8 * 8);
                vv = *(const uint4 *)(vb + (size_t)(kt + row) * D + c8 * 8);
            }
            *(uint4 *)(Ks + row * LD + c8 * 8) = kv;
            *(uint4 *)(Vs + row * LD + c8 * 8) = vv;
        }
        __syncthreads();

        float s[PF_KEYS / 8][4];
        mer__fa_scores<PF_KEYS, D, LD>(s, qf, Ks, gi, qd, PF_KEYS);
        ml = mer__fa_softmax<PF_KEYS, D>(s, o, ml, [&](int nb, int e, float v) {
            const int key = kt + nb * 8 + qd * 2 + (e & 1);
            const int lim = e < 2 ? lim0 : lim1;
            return key <= lim ? v * sl2 : -INFINITY;
        });
        mer__fa_pv<PF_KEYS, D, LD>(o, s, Vs, lane, PF_KEYS);
    }
    float inv0, inv1;
    mer__fa_inv(ml, inv0, inv1);
    if (r0 < nrows) mer__fa_store_row<D>(out + ((size_t)t0 * H + h0) * D + qd * 2, o, 0, inv0);
    if (r1 < nrows) mer__fa_store_row<D>(out + ((size_t)t1 * H + h1) * D + qd * 2, o, 2, inv1);
}

mer_status mer_cuda_attn_prefill(mer_cuda *c, void *out, const void *q, const void *kc, const void *vc, mer_dtype t,
                                 int sl, int pos0, int n_tok, int H, int KV, int d, int n_ctx, float scale,
                                 const int32_t *pos_dev, const int32_t *slot_dev, mer_err *err) {
    if (n_tok < 1 || KV < 1 || H % KV || pos0 < 0 || sl < 0 || pos0 + n_tok > n_ctx)
        return mer__errf(err, MER_E_ARG, "cuda prefill attention: n_tok %d at %d, heads %d/%d, n_ctx %d", n_tok, pos0, H,
                         KV, n_ctx);
    if ((d != 64 && d != 128) || t != MER_DTYPE_BF16)
        return mer_cuda_attn_decode(c, out, q, kc, vc, t, pos_dev, slot_dev, n_tok, H, KV, d, n_ctx, 1, scale, NULL, err);
    const int rep = H / KV;
    dim3 grid((n_tok * rep + PF_ROWS - 1) / PF_ROWS, KV);
    const float sl2 = scale * LOG2E;
    const uint16_t *qq = (const uint16_t *)q, *kk = (const uint16_t *)kc, *vv = (const uint16_t *)vc;
    uint16_t *oo = (uint16_t *)out;
    cudaError_t e = d == 128 ? mer__launch(c, attn_prefill_kernel<128>, grid, dim3(128), 0, qq, kk, vv, oo, sl, pos0,
                                           n_tok, H, KV, n_ctx, sl2)
                             : mer__launch(c, attn_prefill_kernel<64>, grid, dim3(128), 0, qq, kk, vv, oo, sl, pos0,
                                           n_tok, H, KV, n_ctx, sl2);
    if (e != cudaSuccess) return mer__cu_fail(err, e, "attn_prefill_kernel launch", __FILE__, __LINE__);
    return MER_OK;
}
