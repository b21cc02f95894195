/* kernels.h - the CPU kernels: one interface over a generic C implementation and SIMD variants (AVX2+FMA,
 * AVX-512 with VNNI and BF16 where the CPU has them), chosen at run time with __builtin_cpu_supports.
 *
 * Two levels:
 *  - mer_kernels: a per-ISA table of single-threaded primitives (GEMM packing and micro-kernel, dot
 *    products against f32 / f16 / bf16 / q8_0 / q4_0 weights, row operations). Get one with
 *    mer_kernels_get(isa). Use these inside your own threadpool task when fusing work; each call works on
 *    the rows it is given, so a caller splits rows by (ith, nth).
 *  - mer_cpu_*: whole operations on plain f32 arrays, multi-threaded over the context's pool, with the
 *    scratch memory they need preallocated in the context (a forward pass never calls malloc).
 *
 * Conventions. Activations are f32, row-major; "ld" arguments are row strides in elements. Matmul is
 * y = x @ W^T with W stored [n_out, n_in] as PyTorch stores it. Shapes are written outermost first:
 * [n_tok, n_in]. Sizes may be any positive value (no multiple-of-8 requirement) except that q8_0/q4_0
 * rows are whole 32-element blocks. Outputs never alias inputs unless the contract says "in place" or
 * "y may equal x".
 *
 * Determinism. Work is split so that each output element is computed by exactly one thread, with an
 * operation order that does not depend on how many threads there are: for a given ISA, results are
 * bit-identical for 1, 2 or N threads. Different ISAs round differently (within float tolerance; on
 * CPUs with AVX512_BF16 the dot-product path for bf16 weights also rounds x to bf16, as llama.cpp does).
 * A row's result is NOT promised to be independent of how many rows one call carries: mer_cpu_matmul
 * switches from dot products to the GEMM (and, for q8_0/q4_0, from q8-quantised x to f32 x) at the
 * MER_CPU_*GEMM_MIN_TOK thresholds, and attention switches to tiles at MER_CPU_ATTN_TILED_MIN_TOK, so a
 * batched call and per-row calls agree to float rounding (about 1e-6 of sum |w x| for f32), or to the
 * q8_0 activation rounding (about 1e-2 relative) for q8_0/q4_0 weights, not bit for bit.
 *
 * Precondition violations (NULL pointers, impossible sizes, an unsupported weight dtype) are programmer
 * errors and trip MER_ASSERT; models validate shapes when they load. Everything here is thread-safe
 * except that a mer_cpu_ctx is used by one thread at a time. */
#ifndef MER_KERNELS_H
#define MER_KERNELS_H

#include "core/core.h"
#include "core/dtype.h"
#include "core/threadpool.h"

// --- ISA selection -----------------------------------------------------------------------------------

typedef enum mer_cpu_isa {
    MER_ISA_AUTO = -1,   /* the best the CPU supports */
    MER_ISA_GENERIC = 0, /* portable C, the reference */
    MER_ISA_AVX2 = 1,    /* AVX2 + FMA + F16C */
    MER_ISA_AVX512 = 2,  /* AVX-512 F/BW/VL/DQ + VNNI (+ BF16 dots when the CPU has AVX512_BF16) */
} mer_cpu_isa;

/* The best ISA this CPU runs that this build contains. */
mer_cpu_isa mer_cpu_detect(void);
/* Whether this CPU can run `isa` (GENERIC always; AUTO means the detected one). */
int mer_cpu_isa_supported(mer_cpu_isa isa);
/* A human-readable line: "avx512 (vnni, bf16)", "avx2", "generic". */
const char *mer_cpu_isa_name(mer_cpu_isa isa);

// --- per-ISA primitives ------------------------------------------------------------------------------

#define MER_GEMM_KC 256 /* depth of a packed GEMM block (the k extent of one micro-kernel call) */

typedef struct mer_kernels {
    const char *name;
    mer_cpu_isa isa;
    int has_vnni;  /* AVX-512 VNNI used for the q8_0/q4_0 dots */
    int has_bf16;  /* AVX-512 BF16 used for bf16 dots (x is then rounded to bf16) */

    /* --- f32 GEMM: C[mr][nr] = A-panel x B-panel over kc. MR rows come from x, NR columns from W. */
    int gemm_mr, gemm_nr;
    /* Packs x rows [0, mr) (mr <= MR, row stride ldx) over columns [0, kc) into dst[kc][MR], rows >= mr
     * zero. */
    void (*gemm_pack_a)(float *dst, const float *x, size_t ldx, int mr, int kc);
    /* Packs W rows [0, nr) (nr <= NR; row stride ldw bytes; dtype wt, any of f32 f16 bf16 q8_0 q4_0)
     * over elements [k0, k0 + kc) into dst[kc][NR], rows >= nr zero. For q8_0/q4_0, k0 and kc are
     * multiples of 32 except a final kc. */
    void (*gemm_pack_b)(float *dst, const void *w, mer_dtype wt, size_t ldw, int nr, int k0, int kc);
    /* c[i*ldc + j] (+)= sum_k a[k*MR + i] * b[k*NR + j] for i < mr, j < nr; `accumulate` 0 stores. The
     * summation order over k is fixed (k ascending) whatever mr, nr. */
    void (*gemm_ukernel)(int kc, const float *a, const float *b, float *c, size_t ldc, int mr, int nr,
                         int accumulate);

    /* --- dot products for matrix-vector work (n elements; block types: n / 32 blocks) */
    float (*dot_f32)(const float *w, const float *x, int n);
    float (*dot_f16)(const uint16_t *w, const float *x, int n);
    /* bf16 weights: x is f32, or bf16 (uint16) when has_bf16 (convert with cvt_bf16 first). */
    float (*dot_bf16)(const uint16_t *w, const void *x, int n);
    void (*cvt_bf16)(const float *x, uint16_t *y, int n); /* RNE, as mer_fp32_to_bf16 */
    /* Activation quantiser for the integer dots: llama.cpp's reference q8_0 (d = amax/127, round half
     * away from zero); bit-identical to mer_quantize_row(MER_DTYPE_Q8_0) on every ISA. */
    void (*quantize_q8_0)(const float *x, mer_block_q8_0 *y, int n);
    float (*dot_q8_0)(const mer_block_q8_0 *w, const mer_block_q8_0 *x, int nb);
    /* Optional (may be NULL, and then so is dot_q4_0_r4): per-token x-side data for dot_q4_0_r4,
     * computed once and reused for every weight row: aux[0 .. 4nb) holds each block's scale d_x four
     * times, aux[4nb .. 8nb) holds 8 sum(x.qs) four times (8 nb floats in all). */
    void (*prep_q4_0)(const mer_block_q8_0 *x, int nb, float *aux);
    /* aux: from prep_q4_0, or NULL (may be ignored). */
    float (*dot_q4_0)(const mer_block_q4_0 *w, const mer_block_q8_0 *x, const float *aux, int nb);
    /* Optional (set with prep_q4_0): four rows at once, row r at byte offset r * ldw from w, against x
     * with its prep_q4_0 data; out[r] = the row's dot. Within float rounding of dot_q4_0. */
    void (*dot_q4_0_r4)(const mer_block_q4_0 *w, size_t ldw, const mer_block_q8_0 *x, const float *aux, int nb,
                        float *out);
    /* Optional (may be NULL): four q8_0 rows at once, as dot_q4_0_r4. Within float rounding of dot_q8_0. */
    void (*dot_q8_0_r4)(const mer_block_q8_0 *w, size_t ldw, const mer_block_q8_0 *x, int nb, float *out);

    /* --- vector helpers */
    void (*axpy)(float *y, float a, const float *x, int n);        /* y += a * x */
    float (*exp_sum)(float *x, int n, float scale, float shift);   /* x = exp(scale*x - shift); returns sum */

    /* --- row operations (one row of n; y may equal x) */
    /* softmax of scale*x[0..n_valid); x[n_valid..n) set to 0 (n_valid >= 1). In place. */
    void (*softmax)(float *x, int n, int n_valid, float scale);
    /* (x - mean) / sqrt(var + eps) * w + b; w, b may be NULL (1 and 0). Biased variance, like torch. */
    void (*layernorm)(float *y, const float *x, int n, const float *w, const float *b, float eps);
    /* x / sqrt(mean(x^2) + eps) * w; w may be NULL. */
    void (*rmsnorm)(float *y, const float *x, int n, const float *w, float eps);

    /* --- element-wise (y may equal any input) */
    void (*gelu)(float *y, const float *x, int n);       /* x/2 (1 + erf(x/sqrt 2)) */
    void (*gelu_tanh)(float *y, const float *x, int n);  /* x/2 (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))) */
    void (*quick_gelu)(float *y, const float *x, int n); /* x sigmoid(1.702 x) */
    void (*silu)(float *y, const float *x, int n);       /* x sigmoid(x) */
    void (*silu_mul)(float *y, const float *a, const float *b, int n); /* silu(a) * b */
    void (*add)(float *y, const float *a, const float *b, int n);
    void (*mul)(float *y, const float *a, const float *b, int n);
    void (*scale)(float *y, const float *x, float s, int n);
} mer_kernels;

/* The table for `isa` (AUTO: the detected one), or NULL when this build lacks it or the CPU cannot run
 * it. Tables are immutable static data. */
const mer_kernels *mer_kernels_get(mer_cpu_isa isa);

// --- execution context -------------------------------------------------------------------------------

/* A pool (borrowed, may be NULL for single-threaded) + an ISA table + preallocated scratch (about
 * 24 MiB plus 0.6 MiB per thread). Used by one thread at a time. */
typedef struct mer_cpu_ctx mer_cpu_ctx;

/* Makes a context running `isa` (MER_ISA_AUTO for the best) on `pool` (not owned; must outlive the
 * context). MER_E_UNSUPPORTED if the CPU cannot run isa, MER_E_NOMEM. Caller frees with
 * mer_cpu_ctx_free. */
mer_status mer_cpu_ctx_init(mer_threadpool *pool, mer_cpu_isa isa, mer_cpu_ctx **out, mer_err *err);
void mer_cpu_ctx_free(mer_cpu_ctx *c);
const mer_kernels *mer_cpu_ctx_kernels(const mer_cpu_ctx *c);
mer_threadpool *mer_cpu_ctx_pool(const mer_cpu_ctx *c);
/* Largest n_in the matmul accepts (the scratch holds at least one packed row panel). */
#define MER_CPU_MAX_K (1 << 18)

// --- operations (multi-threaded over the context's pool) ---------------------------------------------

/* Token counts from which mer_cpu_matmul uses the packed f32 GEMM (weights converted to f32 while
 * packing) instead of dot products that stream W once per call. */
#define MER_CPU_GEMM_MIN_TOK 4   /* f32, f16, bf16 weights */
#define MER_CPU_QGEMM_MIN_TOK 32 /* q8_0, q4_0 weights (like llama.cpp's BLAS path for large batches) */

/* y[n_tok, n_out] (row stride ldy) = x[n_tok, n_in] (row stride ldx) @ W^T (+ bias[n_out] if non-NULL).
 * W is [n_out, n_in] contiguous of dtype wt: f32, f16, bf16, q8_0 or q4_0 (n_in a multiple of 32 for
 * the last two). q8_0/q4_0 with n_tok < MER_CPU_QGEMM_MIN_TOK: x is quantised to q8_0 blocks on the fly
 * and the dots are integer, as in llama.cpp; from MER_CPU_QGEMM_MIN_TOK tokens the weights are
 * dequantised into the GEMM's packed panels and x is used as it is. f32/f16/bf16 run the GEMM from
 * MER_CPU_GEMM_MIN_TOK tokens, dot products below. y must not overlap x or W. */
void mer_cpu_matmul(mer_cpu_ctx *c, float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                    mer_dtype wt, const float *bias, int n_tok, int n_in, int n_out);

/* Row-wise softmax of scale * x over x[n_rows][n_cols] (row stride ld), in place. causal_start < 0: no
 * mask. causal_start >= 0: row r keeps columns j <= r + causal_start (the rest become 0), which is the
 * causal mask of queries at positions causal_start + r over keys 0..n_cols-1. */
void mer_cpu_softmax(mer_cpu_ctx *c, float *x, int n_rows, int n_cols, size_t ld, float scale,
                     int causal_start);
/* Layer norm over the last dimension of x[n_rows][n] (contiguous rows) into y (y may equal x); w and b
 * ([n]) may be NULL. */
void mer_cpu_layernorm(mer_cpu_ctx *c, float *y, const float *x, int n_rows, int n, const float *w,
                       const float *b, float eps);
/* RMS norm (Qwen2/LLaMA): y = x / sqrt(mean(x^2) + eps) * w; w may be NULL; y may equal x. */
void mer_cpu_rmsnorm(mer_cpu_ctx *c, float *y, const float *x, int n_rows, int n, const float *w, float eps);

/* Element-wise over n elements (y may equal an input). */
void mer_cpu_gelu(mer_cpu_ctx *c, float *y, const float *x, size_t n);
void mer_cpu_gelu_tanh(mer_cpu_ctx *c, float *y, const float *x, size_t n);
void mer_cpu_quick_gelu(mer_cpu_ctx *c, float *y, const float *x, size_t n);
void mer_cpu_silu(mer_cpu_ctx *c, float *y, const float *x, size_t n);
void mer_cpu_silu_mul(mer_cpu_ctx *c, float *y, const float *a, const float *b, size_t n);
void mer_cpu_add(mer_cpu_ctx *c, float *y, const float *a, const float *b, size_t n);
void mer_cpu_mul(mer_cpu_ctx *c, float *y, const float *a, const float *b, size_t n);
void mer_cpu_scale(mer_cpu_ctx *c, float *y, const float *x, float s, size_t n);
/* y[r][:] = x[r][:] + b[:] for r < n_rows, rows of n (a bias broadcast); y may equal x. */
void mer_cpu_add_row(mer_cpu_ctx *c, float *y, const float *x, const float *b, int n_rows, int n);

/* RoPE, NeoX / HF-Qwen2 style ("rotate_half"), in place on x[n_tok][n_head][d] (token row stride
 * ld_tok elements, head stride d). For token t at position pos[t], and i < n_rot/2 with
 * inv_freq_i = 1 / theta^(2i / n_rot) and angle = pos[t] * inv_freq_i (computed in f32 as HF does):
 *   x'[i] = x[i] cos - x[i + n_rot/2] sin,  x'[i + n_rot/2] = x[i + n_rot/2] cos + x[i] sin.
 * Elements n_rot..d-1 are left as they are. n_rot even, <= d. */
void mer_cpu_rope_neox(mer_cpu_ctx *c, float *x, int n_tok, int n_head, int d, size_t ld_tok,
                       const int32_t *pos, float theta, int n_rot);

/* Scaled-dot-product attention, multi-head with grouped KV heads (n_head a multiple of n_kv_head;
 * query head h reads KV head h / (n_head / n_kv_head), as HF repeat_kv). Layouts, contiguous:
 *   q [n_tok][n_head][d], k and v [n_kv][n_kv_head][d] (a KV cache: rows 0..n_kv-1 are positions),
 *   out [n_tok][n_head][d].
 * Query t is at position start_pos + t. causal: it attends to keys j <= start_pos + t (and j < n_kv);
 * otherwise to all n_kv keys. out = softmax(scale * q k^T) v, computed with a streaming (online)
 * softmax in fixed tiles of keys: from MER_CPU_ATTN_TILED_MIN_TOK queries on, tiles of queries x keys
 * run on the GEMM micro-kernel; fewer queries (decode) stream the keys with dot products. d <= 512. */
#define MER_CPU_ATTN_TILED_MIN_TOK 4
void mer_cpu_attention(mer_cpu_ctx *c, float *out, const float *q, const float *k, const float *v,
                       int n_tok, int n_head, int n_kv_head, int d, int n_kv, int start_pos, int causal,
                       float scale);

/* 1-D convolution, PyTorch Conv1d semantics (zero padding, groups): x [c_in][l_in], w [c_out][c_in /
 * groups][k], bias [c_out] or NULL, y [c_out][l_out] with l_out = (l_in + 2 pad - k) / stride + 1
 * (>= 1). Runs as im2col + the packed GEMM, in tiles of output positions. */
void mer_cpu_conv1d(mer_cpu_ctx *c, float *y, const float *x, const float *w, const float *bias, int c_in,
                    int l_in, int c_out, int k, int stride, int pad, int groups);
/* Returns l_out for the arguments above, or 0 if they are invalid. */
int mer_conv1d_out_len(int l_in, int k, int stride, int pad);

/* Patch embedding = Conv2d with kernel = stride = p, no padding: img [c_in][h][w] (h, w multiples of p
 * are not required: the trailing partial patches are dropped, like PyTorch), weight [c_out][c_in][p][p]
 * of dtype wt (f32 f16 bf16; viewed as [c_out][c_in*p*p]), bias [c_out] or NULL. Output is token-major,
 * as ViTs use it: y [n_patch][c_out] with patches in row-major (py, px) order, n_patch = (h/p)*(w/p). */
void mer_cpu_conv2d_patch(mer_cpu_ctx *c, float *y, const float *img, const void *w, mer_dtype wt,
                          const float *bias, int c_in, int h, int wd, int c_out, int p);

/* Embedding lookup: y[i][:] = table row ids[i] converted to f32. table is [n_rows][n_cols] contiguous of
 * dtype t (any dtype mer_dequantize_row takes). Ids must be in [0, n_rows) (checked: MER_ASSERT). */
void mer_cpu_embed(mer_cpu_ctx *c, float *y, const void *table, mer_dtype t, int64_t n_rows, int n_cols,
                   const int32_t *ids, int n);

#endif
