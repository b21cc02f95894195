/* cuda_gemv.cu - y = x @ W^T for up to 8 activation rows (the decode step), bf16 weights streamed once
 * from device memory at close to full bandwidth, on the tensor cores.
 *
 * Each block owns 16 * MT weight rows and its NW warps (4, 8 or 16) split the reduction dimension K (interleaved by
 * "super-steps" of U chunks of 32 elements, so that together they read long runs of every row). A thread
 * loads 16 bytes (8 weights) of two rows per chunk straight into registers (no shared memory) and the
 * warp multiplies with mma.sync m16n8k16: W rows are the M dimension, the <= 8 activation rows the N
 * dimension. The 8 weights a thread holds do not sit where the mma fragment expects consecutive k; since
 * a dot product may sum in any order, the activation fragment is loaded with the same permutation (thread
 * quad q holds physical elements 8q..8q+7 of each 32-element chunk; the first mma takes 8q..8q+3, the
 * second 8q+4..8q+7), which makes every load a contiguous 16-byte one and needs no shuffles. Weight
 * loads of the first super-step are issued before griddepcontrol.wait, so with programmatic dependent
 * launch they overlap the previous kernel's tail. The warps' partial sums are added through shared
 * memory and warp 0 applies the epilogue (store f32, add into f32, store bf16, or silu(gate) * up with
 * the gate rows in tile 0 and the matching up rows in tile 1). */
#include "kernels/cuda/cuda_internal.cuh"

template <int MT, int U, int NW, int EPI>
__global__ void __launch_bounds__(NW * 32) gemv_kernel(const uint16_t *__restrict__ w, const uint16_t *__restrict__ x,
                                                            void *__restrict__ yv, int K, int N, int n_tok, int ldx,
                                                            int ldy, int n_ff) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, q = lane & 3;
    mer__pdl_launch();

    // Rows of this thread: tile m, half hf (row g or g + 8).
    const uint16_t *rp[MT][2];
    int row0[MT];
#pragma unroll
    for (int m = 0; m < MT; m++) {
        int base, lim;
        if (EPI == MER_CUDA_EPI_SILU) {
            base = blockIdx.x * 16 + m * n_ff;
            lim = m * n_ff + n_ff;
        } else {
            base = (blockIdx.x * MT + m) * 16;
            lim = N;
        }
        row0[m] = base;
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            int r = base + g + hf * 8;
            if (r >= lim) r = lim - 1;
            rp[m][hf] = w + (size_t)r * K;
        }
    }

    const int step = 32 * U;                 // elements per super-step
    const int nss = (K + step - 1) / step;   // super-steps in K
    const int xoff = 8 * q;

    float acc[MT][2][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int j = 0; j < 2; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[m][j][i] = 0.f;

    uint4 wa[U][MT][2];
    int ss = warp;
#pragma unroll
    for (int u = 0; u < U; u++) {
        int k = ss * step + 32 * u + xoff;
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++)
                wa[u][m][hf] = (ss < nss && k < K) ? mer__ld_stream(rp[m][hf] + k) : make_uint4(0, 0, 0, 0);
    }
    mer__pdl_wait();
    const uint16_t *xr = x + (size_t)(g < n_tok ? g : 0) * ldx;
    const bool xon = g < n_tok;

    for (; ss < nss; ss += NW) {
        uint4 xb[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            int k = ss * step + 32 * u + xoff;
            xb[u] = (xon && k < K) ? __ldg((const uint4 *)(xr + k)) : make_uint4(0, 0, 0, 0);
        }
        uint4 wb[U][MT][2];
        const int sn = ss + NW;
#pragma unroll
        for (int u = 0; u < U; u++) {
            int k = sn * step + 32 * u + xoff;
#pragma unroll
            for (int m = 0; m < MT; m++)
#pragma unroll
                for (int hf = 0; hf < 2; hf++)
                    wb[u][m][hf] = (sn < nss && k < K) ? mer__ld_stream(rp[m][hf] + k) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
#pragma unroll
            for (int m = 0; m < MT; m++) {
                mer__mma_bf16(acc[m][0], wa[u][m][0].x, wa[u][m][1].x, wa[u][m][0].y, wa[u][m][1].y, xb[u].x, xb[u].y);
                mer__mma_bf16(acc[m][1], wa[u][m][0].z, wa[u][m][1].z, wa[u][m][0].w, wa[u][m][1].w, xb[u].z, xb[u].w);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int m = 0; m < MT; m++)
#pragma unroll
                for (int hf = 0; hf < 2; hf++) wa[u][m][hf] = wb[u][m][hf];
    }

    // Cross-warp reduction: red[w][m][i][lane].
    __shared__ float red[NW][MT][4][32];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int i = 0; i < 4; i++) red[warp][m][i][lane] = acc[m][0][i] + acc[m][1][i];
    __syncthreads();
    if (warp != 0) return;
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
    // c0, c1: row g, cols 2q, 2q+1; c2, c3: row g + 8.
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int n = 2 * q + (i & 1);
        const int roff = g + (i >> 1) * 8;
        if (n >= n_tok) continue;
        if (EPI == MER_CUDA_EPI_SILU) {
            int r = row0[0] + roff;
            if (r >= n_ff) continue;
            float gt = v[0][i], up = v[MT - 1][i];
            float s = gt / (1.f + __expf(-gt)) * up;
            ((uint16_t *)yv)[(size_t)n * ldy + r] = mer__to_bf16(s);
        } else {
#pragma unroll
            for (int m = 0; m < MT; m++) {
                int r = row0[m] + roff;
                if (r >= N) continue;
                size_t o = (size_t)n * ldy + r;
                if (EPI == MER_CUDA_EPI_F32)
                    ((float *)yv)[o] = v[m][i];
                else if (EPI == MER_CUDA_EPI_F32_ADD)
                    ((float *)yv)[o] += v[m][i];
                else
                    ((uint16_t *)yv)[o] = mer__to_bf16(v[m][i]);
            }
        }
    }
}

template <int MT, int U, int NW, int EPI>
static cudaError_t launch_gemv(mer_cuda *c, void *y, int ldy, const uint16_t *x, int ldx, const uint16_t *w, int n_tok,
                               int K, int N, int n_ff) {
    int rows = EPI == MER_CUDA_EPI_SILU ? n_ff : N;
    int per = EPI == MER_CUDA_EPI_SILU ? 16 : 16 * MT;
    dim3 grid((rows + per - 1) / per);
    return mer__launch(c, gemv_kernel<MT, U, NW, EPI>, grid, dim3(NW * 32), 0, w, x, y, K, N, n_tok, ldx, ldy, n_ff);
}

template <int MT, int U, int EPI>
static cudaError_t launch_nw(mer_cuda *c, int nw, void *y, int ldy, const uint16_t *x, int ldx, const uint16_t *w,
                             int n_tok, int K, int N, int n_ff) {
    if (nw >= 16) return launch_gemv<MT, U, 16, EPI>(c, y, ldy, x, ldx, w, n_tok, K, N, n_ff);
    if (nw >= 8) return launch_gemv<MT, U, 8, EPI>(c, y, ldy, x, ldx, w, n_tok, K, N, n_ff);
    return launch_gemv<MT, U, 4, EPI>(c, y, ldy, x, ldx, w, n_tok, K, N, n_ff);
}

mer_status mer__gemv(mer_cuda *c, void *y, int ldy, const uint16_t *x, int ldx, const uint16_t *w, int n_tok, int n_in,
                     int n_out, mer_cuda_epi epi, mer_err *err) {
    cudaError_t e;
    // Two tiles per block halve the activation loads; one tile gives twice the blocks for short
    // matrices. Then enough warps per block (splitting K) to keep bytes in flight: a warp holds 4-8 KB
    // of weights, and short matrices (o_proj, down_proj of a 7B model: 224 tiles) are otherwise
    // latency-bound (H100, 7B shapes: 16 warps for < 2 tiles per SM, else 8, measured best).
    const int silu = epi == MER_CUDA_EPI_SILU;
    const int mt2 = silu || c->gemv_tile == 2 || (c->gemv_tile == 0 && n_out / 32 >= 8 * c->n_sm);
    const int tiles = silu ? (n_out / 2 + 15) / 16 : (n_out + (mt2 ? 31 : 15)) / (mt2 ? 32 : 16);
    int nw = c->gemv_nw;
    if (nw == 0) nw = tiles < 2 * c->n_sm ? 16 : 8; /* best of 4/8/16 on the H100 for every 7B shape */
    switch (epi) {
    case MER_CUDA_EPI_F32:
        e = mt2 ? launch_nw<2, 2, MER_CUDA_EPI_F32>(c, nw, y, ldy, x, ldx, w, n_tok, n_in, n_out, 0)
                : launch_nw<1, 4, MER_CUDA_EPI_F32>(c, nw, y, ldy, x, ldx, w, n_tok, n_in, n_out, 0);
        break;
    case MER_CUDA_EPI_F32_ADD:
        e = mt2 ? launch_nw<2, 2, MER_CUDA_EPI_F32_ADD>(c, nw, y, ldy, x, ldx, w, n_tok, n_in, n_out, 0)
                : launch_nw<1, 4, MER_CUDA_EPI_F32_ADD>(c, nw, y, ldy, x, ldx, w, n_tok, n_in, n_out, 0);
        break;
    case MER_CUDA_EPI_BF16:
        e = launch_nw<1, 4, MER_CUDA_EPI_BF16>(c, nw, y, ldy, x, ldx, w, n_tok, n_in, n_out, 0);
        break;
    case MER_CUDA_EPI_SILU:
        e = launch_nw<2, 2, MER_CUDA_EPI_SILU>(c, nw, y, ldy, x, ldx, w, n_tok, n_in, n_out, n_out / 2);
        break;
    default:
        return mer__errf(err, MER_E_ARG, "cuda gemv: bad epilogue %d", (int)epi);
    }
    if (e != cudaSuccess) return mer__cu_fail(err, e, "gemv_kernel launch", __FILE__, __LINE__);
    return MER_OK;
}
