/* cuda_flash.cuh - the warp-level steps of flash-attention-2 on the tensor cores (bf16, mma.sync
 * m16n8k16), shared by the encoders' non-causal attention (attn_full_mma_kernel, cuda_enc.cu) and the
 * causal prefill (attn_prefill_kernel, cuda_attn.cu). A warp owns 16 query rows; in the fragment layout
 * a lane (gi = lane >> 2, qd = lane & 3) holds, for each 8-column block nb, elements [0], [1] of row gi
 * and [2], [3] of row gi + 8 (columns 2 qd, 2 qd + 1). A K or V tile of KEYS keys sits in shared memory,
 * rows of LD elements. What differs between the kernels stays with them: where Q, K and V come from,
 * the tile loads, and the mask (a functor the caller passes to mer__fa_softmax: scale to the log2
 * domain, or -INFINITY). All of it is __forceinline__, written so that each kernel compiles to the same
 * machine code as when the steps were written out in it (checked on the cubins' .text sections). */
#ifndef MER_KERNELS_CUDA_FLASH_CUH
#define MER_KERNELS_CUDA_FLASH_CUH

#include "kernels/cuda/cuda_common.cuh"

/* ldmatrix .x4 .trans: four 8x8 b16 matrices from shared memory, transposed (the B fragments of P V). */
__device__ __forceinline__ void mer__ldsm_x4_trans(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3,
                                                   const void *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(a));
}

/* The A fragments of the warp's 16 query rows (head size D): q0 and q1 point at element 2 qd of rows gi
 * and gi + 8. */
template <int D>
__device__ __forceinline__ void mer__fa_load_q(uint32_t (&qf)[D / 16][4], const uint16_t *q0, const uint16_t *q1) {
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        qf[kk][0] = *(const uint32_t *)(q0 + kk * 16);
        qf[kk][1] = *(const uint32_t *)(q1 + kk * 16);
        qf[kk][2] = *(const uint32_t *)(q0 + kk * 16 + 8);
        qf[kk][3] = *(const uint32_t *)(q1 + kk * 16 + 8);
    }
}

/* s = Q K^T over the tile (unscaled). Column blocks at or past nk (the keys left in the tile) are 0 and
 * their mma is skipped; a caller whose tile is always full passes KEYS (the test then folds away). */
template <int KEYS, int D, int LD>
__device__ __forceinline__ void mer__fa_scores(float (&s)[KEYS / 8][4], const uint32_t (&qf)[D / 16][4],
                                               const uint16_t *Ks, int gi, int qd, int nk) {
#pragma unroll
    for (int nb = 0; nb < KEYS / 8; nb++) {
        s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
        if (nb * 8 >= nk) continue;
        const uint16_t *kr = Ks + (nb * 8 + gi) * LD + qd * 2;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t b0 = *(const uint32_t *)(kr + kk * 16), b1 = *(const uint32_t *)(kr + kk * 16 + 8);
            mer__mma_bf16(s[nb], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b0, b1);
        }
    }
}

/* The running softmax state of the warp's rows gi (m0, l0) and gi + 8 (m1, l1): m the running maximum of
 * the scores (exp2 domain), l the running sum of this lane's p (mer__fa_inv sums the quad at the end).
 * Starts as {-1e30f, -1e30f, 0.f, 0.f}: a finite m, so a fully masked row gives p = 0, never NaN. */
struct mer__fa_ml {
    float m0, m1, l0, l1;
};

/* The online-softmax update of one tile, in the exp2 domain; returns the new state. The caller's
 * mask(nb, e, v) turns the raw score v = s[nb][e] into v * scale * log2(e), or -INFINITY where the key is
 * masked for that row; it is applied in the same pass as the row maxima. Row maxima over the quad of
 * lanes sharing a row (shuffles 1 and 2), then s becomes p = exp2(s - m_new), l = l exp2(m - m_new) +
 * sum p, o is rescaled by exp2(m - m_new). The state goes in and out by value: through references the
 * kernels compile to other code than with the update written out in them. */
template <int KEYS, int D, typename Mask>
__device__ __forceinline__ mer__fa_ml mer__fa_softmax(float (&s)[KEYS / 8][4], float (&o)[D / 8][4], mer__fa_ml ml,
                                                      Mask mask) {
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < KEYS / 8; nb++) {
#pragma unroll
        for (int e = 0; e < 4; e++) s[nb][e] = mask(nb, e, s[nb][e]);
        mx0 = fmaxf(mx0, fmaxf(s[nb][0], s[nb][1]));
        mx1 = fmaxf(mx1, fmaxf(s[nb][2], s[nb][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(ml.m0, mx0), mn1 = fmaxf(ml.m1, mx1);
    const float c0 = exp2f(ml.m0 - mn0), c1 = exp2f(ml.m1 - mn1);
    float ps0 = 0.f, ps1 = 0.f;
#pragma unroll
    for (int nb = 0; nb < KEYS / 8; nb++) {
        s[nb][0] = exp2f(s[nb][0] - mn0);
        s[nb][1] = exp2f(s[nb][1] - mn0);
        s[nb][2] = exp2f(s[nb][2] - mn1);
        s[nb][3] = exp2f(s[nb][3] - mn1);
        ps0 += s[nb][0] + s[nb][1];
        ps1 += s[nb][2] + s[nb][3];
    }
#pragma unroll
    for (int i = 0; i < D / 8; i++) {
        o[i][0] *= c0;
        o[i][1] *= c0;
        o[i][2] *= c1;
        o[i][3] *= c1;
    }
    return {mn0, mn1, ml.l0 * c0 + ps0, ml.l1 * c1 + ps1};
}

/* o += P V over the tile: P (from mer__fa_softmax) reused in registers as the A operand, V fragments
 * read with ldmatrix.trans. 16-key steps at or past nk are skipped (every p there is 0); a caller whose
 * tile is always full passes KEYS. */
template <int KEYS, int D, int LD>
__device__ __forceinline__ void mer__fa_pv(float (&o)[D / 8][4], const float (&s)[KEYS / 8][4], const uint16_t *Vs,
                                           int lane, int nk) {
#pragma unroll
    for (int kk2 = 0; kk2 < KEYS / 16; kk2++) {
        if (kk2 * 16 >= nk) continue;
        const uint32_t a0 = mer__pack_bf16(s[2 * kk2][0], s[2 * kk2][1]);
        const uint32_t a1 = mer__pack_bf16(s[2 * kk2][2], s[2 * kk2][3]);
        const uint32_t a2 = mer__pack_bf16(s[2 * kk2 + 1][0], s[2 * kk2 + 1][1]);
        const uint32_t a3 = mer__pack_bf16(s[2 * kk2 + 1][2], s[2 * kk2 + 1][3]);
        const uint16_t *vr = Vs + (kk2 * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD + (lane >> 4) * 8;
#pragma unroll
        for (int dp = 0; dp < D / 16; dp++) {
            uint32_t b0, b1, b2, b3;
            mer__ldsm_x4_trans(b0, b1, b2, b3, vr + dp * 16);
            mer__mma_bf16(o[2 * dp], a0, a1, a2, a3, b0, b1);
            mer__mma_bf16(o[2 * dp + 1], a0, a1, a2, a3, b2, b3);
        }
    }
}

/* After the last tile: the row sums over the quad, and their inverses (0 for an empty row). */
__device__ __forceinline__ void mer__fa_inv(const mer__fa_ml &ml, float &inv0, float &inv1) {
    float l0 = ml.l0, l1 = ml.l1;
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    inv0 = l0 > 0.f ? 1.f / l0 : 0.f;
    inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
}

/* Stores this lane's columns of one output row, o[nb][j] and o[nb][j + 1] times inv, as bf16 (j = 0 for
 * row gi, 2 for row gi + 8); orow points at element 2 qd of the row. */
template <int D>
__device__ __forceinline__ void mer__fa_store_row(uint16_t *orow, const float (&o)[D / 8][4], int j, float inv) {
#pragma unroll
    for (int nb = 0; nb < D / 8; nb++) *(uint32_t *)(orow + nb * 8) = mer__pack_bf16(o[nb][j] * inv, o[nb][j + 1] * inv);
}

#endif
