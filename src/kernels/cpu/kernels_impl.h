/* kernels_impl.h - internals shared by the CPU kernel variants: the per-ISA tables, and generic helpers
 * that SIMD variants reuse for their cold paths (edges, packing of rarely-hot layouts). Not for models. */
#ifndef MER_KERNELS_IMPL_H
#define MER_KERNELS_IMPL_H

#include "kernels/kernels.h"

extern const mer_kernels mer__kernels_generic;
/* 1 when this build has the x86 SIMD variants (kernels_avx2.c; kernels_avx512.c). */
#if defined(__x86_64__)
#define MER_KERNELS_X86 1
#define MER_KERNELS_AVX512 1
#else
#define MER_KERNELS_X86 0
#define MER_KERNELS_AVX512 0
#endif
#if defined(__x86_64__)
extern const mer_kernels mer__kernels_avx2;
extern const mer_kernels mer__kernels_avx512;     /* AVX-512 F/BW/VL/DQ + VNNI */
extern const mer_kernels mer__kernels_avx512bf16; /* the same + BF16 dots */
#endif

/* Generic packing for any MR / NR (see mer_kernels.gemm_pack_a / gemm_pack_b). */
void mer__gemm_pack_a_any(float *dst, const float *x, size_t ldx, int mr, int kc, int MR);
void mer__gemm_pack_b_any(float *dst, const void *w, mer_dtype wt, size_t ldw, int nr, int k0, int kc,
                          int NR);
/* Converts elements [k0, k0 + kc) of one weight row of type wt to f32 (block types: k0 % 32 == 0). */
void mer__row_to_f32(const void *row, mer_dtype wt, int k0, int kc, float *out);

/* Scalar helpers shared by the variants' tails. */
float mer__gen_dot_q8_0(const mer_block_q8_0 *w, const mer_block_q8_0 *x, int nb);
float mer__gen_dot_q4_0(const mer_block_q4_0 *w, const mer_block_q8_0 *x, const float *aux, int nb);
void mer__gen_quantize_q8_0(const float *x, mer_block_q8_0 *y, int n);
void mer__gen_cvt_bf16(const float *x, uint16_t *y, int n);

#endif
