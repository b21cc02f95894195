/* cuda_quant.h - q8_0 and q4_0 weight matrices on the CUDA device: a repacked layout that a GEMV can
 * stream with 16-byte loads, the fused dequantising GEMV for up to 8 activation rows (the decode step;
 * bf16 activations, tensor cores, exact integer quants with the block scales applied in f32), and the
 * dequantise-to-bf16 + cuBLASLt path for more rows (prefill).
 *
 * Values are GGUF's: q8_0 element = d * q (d f16, q int8), q4_0 element = d * (nibble - 8) with the low
 * nibbles of a block's 16 bytes holding elements 0..15 and the high nibbles 16..31.
 *
 * Device layout (a "qmat"): rows padded to multiples of 16 ("tiles"; with `split`, the two stacked parts
 * [0, split) and [split, n_out) are padded separately, so that gate and up rows of a fused gate/up matrix
 * start on tile boundaries), each row cut into chunks of 64 bytes (64 q8_0 elements = 2 blocks, or 128
 * q4_0 elements = 4 blocks; the last chunk zero-padded). In a chunk, the 16 bytes at 16 qq hold, for each
 * block b of the chunk, elements 8 qq .. 8 qq + 7 of the block: q8_0 bytes 8 b + e, q4_0 byte 4 b + r
 * with the low nibble element 8 qq + r and the high nibble element 8 qq + 4 + r. Scales: f16
 * [tile][chunk][16 rows][blocks per chunk]. This puts, for every mma.sync k16 step, 16 elements of one
 * block in one warp (so a block's scale multiplies one partial sum) and lets each thread load 16 bytes
 * of weights and 16 bytes of activations per block with no shuffles.
 *
 * Like cuda_backend.h this header needs no CUDA header; the functions exist in CUDA=1 builds only. */
#ifndef MER_KERNELS_CUDA_QUANT_H
#define MER_KERNELS_CUDA_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mer_cuda_qmat {
    mer_dtype dt;  /* MER_DTYPE_Q8_0 or MER_DTYPE_Q4_0 */
    int n_out;     /* logical rows */
    int n_in;      /* logical columns (a multiple of 32) */
    int split;     /* 0, or the rows of the first of two separately padded parts */
    int up_off;    /* stored row of logical row `split` (0 without a split) */
    int n_phys;    /* rows stored (a multiple of 16) */
    int n_ch;      /* 64-byte chunks per stored row */
    uint8_t *qs;   /* [n_phys][n_ch][64] */
    uint16_t *sc;  /* [n_phys / 16][n_ch][16][blocks per chunk], f16 */
} mer_cuda_qmat;

/* Allocates a zeroed matrix of n_out x n_in (n_in a multiple of 32; split as above, 0 or 0 < split <
 * n_out) from c's allocator. MER_E_ARG for bad shapes or dtypes. Free with mer_cuda_qmat_release. */
mer_status mer_cuda_qmat_init(mer_cuda *c, mer_cuda_qmat *q, mer_dtype dt, int n_out, int n_in, int split,
                              mer_err *err);
void mer_cuda_qmat_release(mer_cuda *c, mer_cuda_qmat *q);
/* Device bytes of the quants and scales (what one GEMV streams). */
size_t mer_cuda_qmat_bytes(const mer_cuda_qmat *q);

/* Stores logical rows r0 .. r0 + n_rows - 1 from GGUF blocks in device memory (blocks_dev: n_rows rows of
 * n_in / 32 blocks of 34 (q8_0) or 18 (q4_0) bytes, no alignment needed). */
mer_status mer_cuda_qmat_set_rows(mer_cuda *c, mer_cuda_qmat *q, int r0, int n_rows, const void *blocks_dev,
                                  mer_err *err);
/* Random quants and scales (a hash of seed and position): elements spread over about [-a, a] (q8_0: q
 * uniform in [-127, 127], d = a/127 * [0.75, 1.25); q4_0: nibbles uniform, d = a/8 * [0.75, 1.25)). */
mer_status mer_cuda_qmat_fill_random(mer_cuda *c, mer_cuda_qmat *q, uint64_t seed, float a, mer_err *err);
/* y[i][:] = bf16(d * q) of logical row r0 + i, i < n_rows (y: [n_rows][n_in], 16-byte aligned). */
mer_status mer_cuda_qmat_dequant(mer_cuda *c, uint16_t *y_dev, const mer_cuda_qmat *q, int r0, int n_rows,
                                 mer_err *err);

/* y = x @ W^T for n_tok <= 8 bf16 rows x (row stride ldx, a multiple of 8; 16-byte aligned), epilogue as
 * mer_cuda_matmul (MER_CUDA_EPI_SILU needs w->split == w->n_out / 2: gate rows, then up rows; its output
 * is bf16 [n_tok][n_out / 2]). The quants enter the tensor cores exactly (as bf16 integers), each block's
 * partial sum is scaled by its d in f32, accumulation f32. No allocation: fine inside graph capture. */
mer_status mer_cuda_qgemv(mer_cuda *c, void *y_dev, int ldy, const uint16_t *x_dev, int ldx, const mer_cuda_qmat *w,
                          int n_tok, mer_cuda_epi epi, mer_err *err);
/* The RMSNorm folded into the GEMV (decode): as mer_cuda_rmsnorm(xn <- x, norm_w, eps) (bf16 out) followed
 * by mer_cuda_qgemv(xn), bit for bit, without xn: x is f32 [n_tok][ldx] (16-byte aligned, ldx a multiple
 * of 8; n_tok * (n_in + 8) * 2 bytes at most 48 KiB), each block reduces the rows' sums of squares
 * itself (reading x after the PDL wait) and stages the bf16 rows in shared memory. Epilogues
 * MER_CUDA_EPI_F32 and MER_CUDA_EPI_SILU. */
mer_status mer_cuda_qgemv_norm(mer_cuda *c, void *y_dev, int ldy, const float *x_dev, int ldx, const float *norm_w_dev,
                               float eps, const mer_cuda_qmat *w, int n_tok, mer_cuda_epi epi, mer_err *err);
/* y += x @ W^T (as mer_cuda_qgemv with MER_CUDA_EPI_F32_ADD; y f32 [n_tok][n_out], ldy == n_out), then
 * xn = mer_cuda_rmsnorm(bf16 out, y, norm_w, eps) over the n_tok rows, bit for bit: the decode step's o
 * projection and the MLP's RMSNorm. With MER_CUDA_ADDNORM=1 at first use (process-wide;
 * mer_cuda_set_qgemv_add_norm) in one launch where the GEMV's pick allows (one-tile blocks of 16 warps; the
 * last block to finish normalises; xn and norm_w 16-byte aligned), else, and by default, the two launches.
 * Off by default: measured slower on the H100 (q8_0 batch-1 decode 301.1 -> 298.5 tok/s, q4_0 461.6 ->
 * 454.8, batch 8 2156 -> 2069 and 3126 -> 2934): every block's fence and arrival, and the last block's
 * serial normalisation, cost more than the launch they save. cnt: a device int, zero, that the call leaves
 * zero (one per stream of calls). */
mer_status mer_cuda_qgemv_add_norm(mer_cuda *c, float *y_dev, int ldy, const uint16_t *x_dev, int ldx,
                                   const mer_cuda_qmat *w, int n_tok, const float *norm_w_dev, float eps,
                                   uint16_t *xn_dev, int *cnt_dev, mer_err *err);
void mer_cuda_set_qgemv_add_norm(int on);
/* Which of the decode step's RMSNorms are folded into the q8_0/q4_0 GEMVs at n_tok rows: a mask, 1 the
 * attention's (qkv), 2 the MLP's (gate/up), 0 none. Process-wide; MER_CUDA_NORM_FOLD=k at first use
 * folds for n_tok <= min(k, 4) (default 1), MER_CUDA_NORM_FOLD_PARTS the mask (default 1: qkv only).
 * Same bits as the unfolded step. Measured on the H100 (bench_gpu quant, batch-1 decode): with the
 * GEMVs' launch bounds (session 4), the qkv fold gains (q8_0 289.8 -> 292.6 tok/s, q4_0 437.7 -> 447.1);
 * folding gate/up too loses that again (289.5 / 437.8: each of its ~1200 blocks pays the row reduction
 * before its first mma). Before the bounds both folds lost (q8_0 287.7 -> 274.8, qkv only 285.0); at 4
 * rows they lost too (q8_0 1096 -> 979 tok/s), hence one row by default. */
int mer_cuda_qnorm_fold(int n_tok);
void mer_cuda_set_qnorm_fold(int max_tok, int parts);
/* Any n_tok: the GEMV up to 8 rows, else the matrix is dequantised to bf16 into `scratch` (scratch_elems
 * elements, at least 16 rows of n_in) in pieces of rows and each piece multiplied by cuBLASLt (bf16
 * weights: the rounding of d * q to bf16 is the only difference from the GEMV). MER_CUDA_EPI_SILU only
 * on the GEMV path. */
mer_status mer_cuda_qmatmul(mer_cuda *c, void *y_dev, int ldy, const uint16_t *x_dev, int ldx, const mer_cuda_qmat *w,
                            int n_tok, mer_cuda_epi epi, uint16_t *scratch_dev, size_t scratch_elems, mer_err *err);

/* GEMV tuning knob (process-wide; MER_CUDA_QGEMV_U at first use): 0 chooses, else 1 or 2 chunks per warp
 * step. The tile and warp counts follow mer_cuda_set_gemv_tile / mer_cuda_set_gemv_warps. */
void mer_cuda_set_qgemv_unroll(int u);
/* q4_0 GEMV variant (process-wide; MER_CUDA_QGEMV_FOLD=1 at first use; off by default: measured slower on
 * the H100, batch-1 decode 373 vs 399 tok/s, the extra mma cost more than the subtractions they save):
 * the nibbles enter the tensor cores as 128 + n and the -8 offset is folded into two extra mma per block
 * (-136 times the activations), instead of one bf16x2 subtraction per weight pair. Same values up to f32
 * rounding of the cancellation (about 17 x 2^-24 of the block's activation sum). */
void mer_cuda_set_qgemv_fold(int on);
/* Split-K of the one-tile GEMVs with the F32_ADD epilogue (o and down at the 7B shape; process-wide;
 * MER_CUDA_QGEMV_SPLIT=k at first use, 0 the default, which is 1 = off: 2-6 way splits measured slower
 * on the H100, e.g. q8_0 down 2256 -> 1899 GB/s at k = 2): the k blocks of a 16-row tile take equal
 * ranges of the reduction and add their partial sums to y atomically, so that the order of those k
 * additions, and the last bits of y, may vary from run to run. */
void mer_cuda_set_qgemv_split(int k);

#ifdef __cplusplus
}
#endif

#endif
