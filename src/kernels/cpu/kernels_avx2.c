/* kernels_avx2.c - the AVX2 + FMA + F16C variant of the CPU primitives: the 6x16 f32 GEMM micro-kernel
 * (inline assembly) and the table; the packers, dot products (q8_0/q4_0 with 8-bit integer multiply-adds
 * as llama.cpp does), the bit-exact q8_0 activation quantiser and the vectorised row / element-wise
 * kernels live in avx2_common.h. Compiled with -mavx2 -mfma -mf16c; only called when the CPU reports
 * those features. */
#include "kernels/cpu/avx2_common.h"

#define MR A2_MR
#define NR A2_NR

/* One k step of the 6x16 kernel: B row in ymm0/ymm1, A values broadcast through ymm2/ymm3, C in
 * ymm4..ymm15 (row i in ymm(4+2i), ymm(5+2i)). Offsets are the step's byte offsets into the panels. */
#define UK_ASM_STEP(ao, bo)                                                                               \
    "vmovaps " #bo "(%[b]), %%ymm0\n\t"                                                                   \
    "vmovaps " #bo "+32(%[b]), %%ymm1\n\t"                                                                \
    "vbroadcastss " #ao "(%[a]), %%ymm2\n\t"                                                              \
    "vbroadcastss " #ao "+4(%[a]), %%ymm3\n\t"                                                            \
    "vfmadd231ps %%ymm0, %%ymm2, %%ymm4\n\t"                                                              \
    "vfmadd231ps %%ymm1, %%ymm2, %%ymm5\n\t"                                                              \
    "vfmadd231ps %%ymm0, %%ymm3, %%ymm6\n\t"                                                              \
    "vfmadd231ps %%ymm1, %%ymm3, %%ymm7\n\t"                                                              \
    "vbroadcastss " #ao "+8(%[a]), %%ymm2\n\t"                                                            \
    "vbroadcastss " #ao "+12(%[a]), %%ymm3\n\t"                                                           \
    "vfmadd231ps %%ymm0, %%ymm2, %%ymm8\n\t"                                                              \
    "vfmadd231ps %%ymm1, %%ymm2, %%ymm9\n\t"                                                              \
    "vfmadd231ps %%ymm0, %%ymm3, %%ymm10\n\t"                                                             \
    "vfmadd231ps %%ymm1, %%ymm3, %%ymm11\n\t"                                                             \
    "vbroadcastss " #ao "+16(%[a]), %%ymm2\n\t"                                                           \
    "vbroadcastss " #ao "+20(%[a]), %%ymm3\n\t"                                                           \
    "vfmadd231ps %%ymm0, %%ymm2, %%ymm12\n\t"                                                             \
    "vfmadd231ps %%ymm1, %%ymm2, %%ymm13\n\t"                                                             \
    "vfmadd231ps %%ymm0, %%ymm3, %%ymm14\n\t"                                                             \
    "vfmadd231ps %%ymm1, %%ymm3, %%ymm15\n\t"

/* b is 32-byte aligned (packed panels start at multiples of 16 floats from an aligned buffer). The k loop
 * is inline assembly so that the twelve accumulators, two B vectors and two broadcasts stay in the
 * sixteen ymm registers (compilers spill here). Summation over k is in ascending order per element. */
static void a2_ukernel(int kc, const float *a, const float *b, float *c, size_t ldc, int mr, int nr,
                       int accumulate) {
    _Alignas(32) float acc[MR * NR];
    long n4 = kc / 4, n1 = kc % 4;
    if (accumulate) /* the C tile is read at the end: start fetching it now */
        for (int i = 0; i < mr; i++) {
            _mm_prefetch((const char *)(c + (size_t)i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + (size_t)i * ldc + NR - 1), _MM_HINT_T0);
        }
    __asm__ volatile("vxorps %%ymm4, %%ymm4, %%ymm4\n\t"
                     "vxorps %%ymm5, %%ymm5, %%ymm5\n\t"
                     "vxorps %%ymm6, %%ymm6, %%ymm6\n\t"
                     "vxorps %%ymm7, %%ymm7, %%ymm7\n\t"
                     "vxorps %%ymm8, %%ymm8, %%ymm8\n\t"
                     "vxorps %%ymm9, %%ymm9, %%ymm9\n\t"
                     "vxorps %%ymm10, %%ymm10, %%ymm10\n\t"
                     "vxorps %%ymm11, %%ymm11, %%ymm11\n\t"
                     "vxorps %%ymm12, %%ymm12, %%ymm12\n\t"
                     "vxorps %%ymm13, %%ymm13, %%ymm13\n\t"
                     "vxorps %%ymm14, %%ymm14, %%ymm14\n\t"
                     "vxorps %%ymm15, %%ymm15, %%ymm15\n\t"
                     "test %[n4], %[n4]\n\t"
                     "jz 2f\n\t"
                     ".p2align 5\n"
                     "1:\n\t"
                     "prefetcht0 384(%[a])\n\t" UK_ASM_STEP(0, 0) UK_ASM_STEP(24, 64) UK_ASM_STEP(48, 128)
                         UK_ASM_STEP(72, 192) "add $96, %[a]\n\t"
                     "add $256, %[b]\n\t"
                     "dec %[n4]\n\t"
                     "jnz 1b\n"
                     "2:\n\t"
                     "test %[n1], %[n1]\n\t"
                     "jz 4f\n"
                     "3:\n\t" UK_ASM_STEP(0, 0) "add $24, %[a]\n\t"
                     "add $64, %[b]\n\t"
                     "dec %[n1]\n\t"
                     "jnz 3b\n"
                     "4:\n\t"
                     "vmovaps %%ymm4, 0(%[acc])\n\t"
                     "vmovaps %%ymm5, 32(%[acc])\n\t"
                     "vmovaps %%ymm6, 64(%[acc])\n\t"
                     "vmovaps %%ymm7, 96(%[acc])\n\t"
                     "vmovaps %%ymm8, 128(%[acc])\n\t"
                     "vmovaps %%ymm9, 160(%[acc])\n\t"
                     "vmovaps %%ymm10, 192(%[acc])\n\t"
                     "vmovaps %%ymm11, 224(%[acc])\n\t"
                     "vmovaps %%ymm12, 256(%[acc])\n\t"
                     "vmovaps %%ymm13, 288(%[acc])\n\t"
                     "vmovaps %%ymm14, 320(%[acc])\n\t"
                     "vmovaps %%ymm15, 352(%[acc])\n\t"
                     "vzeroupper\n\t"
                     : [a] "+r"(a), [b] "+r"(b), [n4] "+r"(n4), [n1] "+r"(n1)
                     : [acc] "r"(acc)
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
                       "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc");
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; i++) {
            float *ci = c + (size_t)i * ldc;
            __m256 v0 = _mm256_load_ps(acc + i * NR), v1 = _mm256_load_ps(acc + i * NR + 8);
            if (accumulate) {
                v0 = _mm256_add_ps(_mm256_loadu_ps(ci), v0);
                v1 = _mm256_add_ps(_mm256_loadu_ps(ci + 8), v1);
            }
            _mm256_storeu_ps(ci, v0);
            _mm256_storeu_ps(ci + 8, v1);
        }
        return;
    }
    for (int i = 0; i < mr; i++) {
        float *ci = c + (size_t)i * ldc;
        for (int j = 0; j < nr; j++) ci[j] = accumulate ? ci[j] + acc[i * NR + j] : acc[i * NR + j];
    }
}

const mer_kernels mer__kernels_avx2 = {
    .name = "avx2",
    .isa = MER_ISA_AVX2,
    .gemm_mr = MR,
    .gemm_nr = NR,
    .gemm_pack_a = a2_pack_a,
    .gemm_pack_b = a2_pack_b,
    .gemm_ukernel = a2_ukernel,
    .dot_f32 = a2_dot_f32,
    .dot_f16 = a2_dot_f16,
    .dot_bf16 = a2_dot_bf16,
    .cvt_bf16 = a2_cvt_bf16,
    .quantize_q8_0 = a2_quantize_q8_0,
    .dot_q8_0 = a2_dot_q8_0,
    .prep_q4_0 = a2_prep_q4_0,
    .dot_q4_0 = a2_dot_q4_0,
    .dot_q4_0_r4 = a2_dot_q4_0_r4,
    .dot_q8_0_r4 = a2_dot_q8_0_r4,
    .axpy = a2_axpy,
    .exp_sum = a2_exp_sum,
    .softmax = a2_softmax,
    .layernorm = a2_layernorm,
    .rmsnorm = a2_rmsnorm,
    .gelu = a2_gelu,
    .gelu_tanh = a2_gelu_tanh,
    .quick_gelu = a2_quick_gelu,
    .silu = a2_silu,
    .silu_mul = a2_silu_mul,
    .add = a2_add,
    .mul = a2_mul,
    .scale = a2_scale,
};
