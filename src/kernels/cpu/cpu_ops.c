/* cpu_ops.c - the multi-threaded CPU operations of kernels.h: ISA detection and table selection, the
 * execution context with its preallocated scratch, the matmul drivers (packed GEMM; dot-product
 * matrix-vector; integer q8_0/q4_0 dots), and the row, attention, RoPE, convolution and embedding
 * drivers. Every driver splits outputs by (ith, nth) so that each output element is computed by one
 * thread in an order that does not depend on the thread count. */
#include "kernels/cpu/kernels_impl.h"
#include "core/threadpool.h"

#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#define WS_A_BYTES ((size_t)16 << 20) /* packed x chunk / q8 or bf16 x rows */
#define WS_OP_BYTES ((size_t)8 << 20) /* im2col / patch rows */
#define GEMM_NC 512                   /* columns of W per packed B block (multiple of every NR) */
#define GEMM_MC 144                   /* rows of x per L2 block (multiple of every MR: 4, 6, 8) */
#define ELEMWISE_MIN_SPLIT 32768      /* element-wise ops smaller than this run on one thread */
#define ATTN_TILE 64                  /* keys per online-softmax tile */
#define ATTN_MAX_D 512

struct mer_cpu_ctx {
    mer_threadpool *pool;
    const mer_kernels *k;
    int nth;
    uint8_t *ws_a;  /* WS_A_BYTES, shared */
    uint8_t *ws_op; /* WS_OP_BYTES, shared */
    float *ws_b;    /* nth * MER_GEMM_KC * GEMM_NC floats, one block per thread */
};

// --- ISA ---------------------------------------------------------------------------------------------

static int cpu_has_avx2(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    /* F16C through CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports has no "f16c" */
    unsigned a, b, c, d;
    int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
#else
    return 0;
#endif
}

static int cpu_has_avx512(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

static int cpu_has_avx512bf16(void) {
#if defined(__x86_64__)
    return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

mer_cpu_isa mer_cpu_detect(void) {
    if (!MER_KERNELS_X86) return MER_ISA_GENERIC;
    if (MER_KERNELS_AVX512 && cpu_has_avx512()) return MER_ISA_AVX512;
    if (cpu_has_avx2()) return MER_ISA_AVX2;
    return MER_ISA_GENERIC;
}

int mer_cpu_isa_supported(mer_cpu_isa isa) {
    switch (isa) {
    case MER_ISA_AUTO:
    case MER_ISA_GENERIC: return 1;
    case MER_ISA_AVX2: return MER_KERNELS_X86 && cpu_has_avx2();
    case MER_ISA_AVX512: return MER_KERNELS_AVX512 && cpu_has_avx512();
    }
    return 0;
}

const char *mer_cpu_isa_name(mer_cpu_isa isa) {
    if (isa == MER_ISA_AUTO) isa = mer_cpu_detect();
    switch (isa) {
    case MER_ISA_GENERIC: return "generic";
    case MER_ISA_AVX2: return "avx2";
    case MER_ISA_AVX512: return cpu_has_avx512bf16() ? "avx512 (vnni, bf16)" : "avx512 (vnni)";
    case MER_ISA_AUTO: break;
    }
    return "invalid";
}

const mer_kernels *mer_kernels_get(mer_cpu_isa isa) {
    if (isa == MER_ISA_AUTO) isa = mer_cpu_detect();
    if (!mer_cpu_isa_supported(isa)) return NULL;
    switch (isa) {
    case MER_ISA_GENERIC: return &mer__kernels_generic;
#if defined(__x86_64__) && MER_KERNELS_X86
    case MER_ISA_AVX2: return &mer__kernels_avx2;
#if MER_KERNELS_AVX512
    case MER_ISA_AVX512: return cpu_has_avx512bf16() ? &mer__kernels_avx512bf16 : &mer__kernels_avx512;
#endif
#endif
    default: return NULL;
    }
}

// --- context -----------------------------------------------------------------------------------------

mer_status mer_cpu_ctx_init(mer_threadpool *pool, mer_cpu_isa isa, mer_cpu_ctx **out, mer_err *err) {
    mer_status st = MER_OK;
    *out = NULL;
    const mer_kernels *k = mer_kernels_get(isa);
    if (!k) return mer__errf(err, MER_E_UNSUPPORTED, "cpu: this CPU or build cannot run the %s kernels",
                             mer_cpu_isa_name(isa));
    mer_cpu_ctx *c = calloc(1, sizeof *c);
    if (!c) return mer__errf(err, MER_E_NOMEM, "cpu: out of memory");
    c->pool = pool;
    c->k = k;
    c->nth = mer_threadpool_n_threads(pool);
    void *a = NULL, *o = NULL, *b = NULL;
    size_t bbytes = (size_t)c->nth * MER_GEMM_KC * GEMM_NC * sizeof(float);
    if (posix_memalign(&a, 64, WS_A_BYTES) || posix_memalign(&o, 64, WS_OP_BYTES) ||
        posix_memalign(&b, 64, bbytes)) {
        st = mer__errf(err, MER_E_NOMEM, "cpu: cannot allocate %zu bytes of scratch",
                       WS_A_BYTES + WS_OP_BYTES + bbytes);
        goto fail;
    }
    c->ws_a = a;
    c->ws_op = o;
    c->ws_b = b;
    *out = c;
    return MER_OK;
fail:
    free(a);
    free(o);
    free(b);
    free(c);
    return st;
}

void mer_cpu_ctx_free(mer_cpu_ctx *c) {
    if (!c) return;
    free(c->ws_a);
    free(c->ws_op);
    free(c->ws_b);
    free(c);
}

const mer_kernels *mer_cpu_ctx_kernels(const mer_cpu_ctx *c) { return c->k; }
mer_threadpool *mer_cpu_ctx_pool(const mer_cpu_ctx *c) { return c->pool; }

static inline int imin(int a, int b) { return a < b ? a : b; }

/* Parts for a load-balanced run over `units` independent outputs: about 8 per thread, at least
 * `min_units` units each. Any partition gives the same results (each output is computed whole). */
static int n_parts(const mer_cpu_ctx *c, long units, long min_units) {
    long p = units / (min_units > 0 ? min_units : 1);
    long cap = 8L * c->nth;
    if (p > cap) p = cap;
    if (p > 0xffff) p = 0xffff;
    return p < 1 ? 1 : (int)p;
}

// --- GEMM driver -------------------------------------------------------------------------------------

typedef struct gemm_job {
    const mer_kernels *k;
    float *y;
    size_t ldy;
    const float *x;
    size_t ldx;
    const void *w;
    mer_dtype wt;
    size_t ldw; /* bytes */
    const float *bias;
    int m, n, kd; /* rows of this chunk, n_out, n_in */
    int mpad;     /* m rounded up to MR */
    float *apack;
    float *bpack; /* nth blocks of KC * NC */
} gemm_job;

/* Packed A: for the k-block starting at k0, panel i (rows i*MR..) starts at mpad*k0 + i*MR*kc. */
static void gemm_pack_a_task(void *arg, int ith, int nth) {
    gemm_job *j = arg;
    const int MR = j->k->gemm_mr;
    int n_panels = j->mpad / MR, n_kb = (j->kd + MER_GEMM_KC - 1) / MER_GEMM_KC;
    long u0, u1;
    mer_split_range((long)n_panels * n_kb, ith, nth, &u0, &u1);
    for (long u = u0; u < u1; u++) {
        int kb = (int)(u / n_panels), p = (int)(u % n_panels);
        int k0 = kb * MER_GEMM_KC, kc = imin(MER_GEMM_KC, j->kd - k0);
        j->k->gemm_pack_a(j->apack + (size_t)j->mpad * k0 + (size_t)p * MR * kc,
                          j->x + (size_t)p * MR * j->ldx + k0, j->ldx, imin(MR, j->m - p * MR), kc);
    }
}

static void gemm_compute_task(void *arg, int ith, int nth) {
    gemm_job *j = arg;
    const mer_kernels *k = j->k;
    const int MR = k->gemm_mr, NR = k->gemm_nr;
    int n_cu = (j->n + NR - 1) / NR, n_panels = j->mpad / MR;
    int m0, m1, n0, n1;
    long u0, u1;
    if (n_cu >= 2 * nth || n_cu >= n_panels) { /* split columns of W */
        mer_split_range(n_cu, ith, nth, &u0, &u1);
        n0 = (int)u0 * NR;
        n1 = imin(j->n, (int)u1 * NR);
        m0 = 0;
        m1 = j->m;
    } else { /* few columns, many rows: split row panels of x */
        mer_split_range(n_panels, ith, nth, &u0, &u1);
        m0 = (int)u0 * MR;
        m1 = imin(j->m, (int)u1 * MR);
        n0 = 0;
        n1 = j->n;
    }
    if (m0 >= m1 || n0 >= n1) return;
    float *bp = j->bpack + (size_t)ith * MER_GEMM_KC * GEMM_NC;
    for (int jc = n0; jc < n1; jc += GEMM_NC) {
        int nc = imin(GEMM_NC, n1 - jc);
        for (int k0 = 0; k0 < j->kd; k0 += MER_GEMM_KC) {
            int kc = imin(MER_GEMM_KC, j->kd - k0);
            for (int jr = 0; jr < nc; jr += NR)
                k->gemm_pack_b(bp + (size_t)(jr / NR) * kc * NR,
                               (const uint8_t *)j->w + (size_t)(jc + jr) * j->ldw, j->wt, j->ldw,
                               imin(NR, nc - jr), k0, kc);
            const float *ablk = j->apack + (size_t)j->mpad * k0;
            for (int ic = m0; ic < m1; ic += GEMM_MC) {
                int mc = imin(GEMM_MC, m1 - ic);
                for (int jr = 0; jr < nc; jr += NR) {
                    const float *bpan = bp + (size_t)(jr / NR) * kc * NR;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int row = ic + ir;
                        k->gemm_ukernel(kc, ablk + (size_t)(row / MR) * MR * kc, bpan,
                                        j->y + (size_t)row * j->ldy + jc + jr, j->ldy, imin(MR, j->m - row),
                                        imin(NR, nc - jr), k0 > 0);
                    }
                }
            }
        }
    }
    if (j->bias)
        for (int r = m0; r < m1; r++) {
            float *yr = j->y + (size_t)r * j->ldy;
            for (int n = n0; n < n1; n++) yr[n] += j->bias[n];
        }
}

static void matmul_gemm(mer_cpu_ctx *c, float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                        mer_dtype wt, size_t ldw, const float *bias, int m, int kd, int n) {
    const int MR = c->k->gemm_mr;
    size_t row_bytes = (size_t)kd * sizeof(float);
    int chunk = (int)(WS_A_BYTES / row_bytes / (size_t)MR) * MR;
    MER_ASSERT(chunk >= MR);
    gemm_job j = {.k = c->k, .ldy = ldy, .ldx = ldx, .w = w, .wt = wt, .ldw = ldw, .bias = bias,
                  .n = n, .kd = kd, .apack = (float *)c->ws_a, .bpack = c->ws_b};
    for (int r0 = 0; r0 < m; r0 += chunk) {
        j.m = imin(chunk, m - r0);
        j.mpad = (j.m + MR - 1) / MR * MR;
        j.x = x + (size_t)r0 * ldx;
        j.y = y + (size_t)r0 * ldy;
        int n_units = j.mpad / MR * ((kd + MER_GEMM_KC - 1) / MER_GEMM_KC);
        mer_threadpool_run_n(c->pool, n_units >= 8 ? c->nth : 1, gemm_pack_a_task, &j);
        mer_threadpool_run(c->pool, gemm_compute_task, &j);
    }
}

// --- dot-product matmul (few tokens; q8_0 / q4_0 always) ---------------------------------------------

typedef struct dot_job {
    const mer_kernels *k;
    size_t aux_off; /* q4_0 with prep_q4_0: byte offset of the x-side floats in each converted row, else 0 */
    float *y;
    size_t ldy;
    const float *x; /* f32 rows (ldx) */
    size_t ldx;
    const void *xq; /* converted rows: q8_0 blocks or bf16, row stride xq_stride bytes */
    size_t xq_stride;
    const void *w;
    mer_dtype wt;
    size_t ldw;
    const float *bias;
    int n_tok, kd, n;
} dot_job;

static void dot_prep_task(void *arg, int ith, int nth) {
    dot_job *j = arg;
    long t0, t1;
    mer_split_range(j->n_tok, ith, nth, &t0, &t1);
    for (long t = t0; t < t1; t++) {
        uint8_t *dst = (uint8_t *)j->xq + (size_t)t * j->xq_stride;
        if (j->wt == MER_DTYPE_BF16) j->k->cvt_bf16(j->x + (size_t)t * j->ldx, (uint16_t *)dst, j->kd);
        else j->k->quantize_q8_0(j->x + (size_t)t * j->ldx, (mer_block_q8_0 *)dst, j->kd);
        if (j->aux_off) j->k->prep_q4_0((const mer_block_q8_0 *)dst, j->kd / MER_QK, (float *)(dst + j->aux_off));
    }
}

static void dot_task(void *arg, int ith, int nth) {
    dot_job *j = arg;
    const mer_kernels *k = j->k;
    long r0, r1;
    const int nb = j->kd / MER_QK;
    const int r4_q4 = j->wt == MER_DTYPE_Q4_0 && j->aux_off && k->dot_q4_0_r4;
    const int r4_q8 = j->wt == MER_DTYPE_Q8_0 && k->dot_q8_0_r4;
    if (r4_q4 || r4_q8) {
        /* groups of 4 rows at absolute multiples of 4 (the last group may be short: single-row dots),
         * so that each row's arithmetic does not depend on the thread split */
        long g0, g1;
        mer_split_range((j->n + 3) / 4, ith, nth, &g0, &g1);
        r0 = g0 * 4;
        r1 = g1 * 4 < j->n ? g1 * 4 : j->n;
        for (; r0 + 4 <= r1; r0 += 4) {
            const void *wr = (const uint8_t *)j->w + (size_t)r0 * j->ldw;
            for (int t = 0; t < j->n_tok; t++) {
                const uint8_t *xqt = (const uint8_t *)j->xq + (size_t)t * j->xq_stride;
                float o[4];
                if (r4_q4)
                    k->dot_q4_0_r4(wr, j->ldw, (const mer_block_q8_0 *)xqt, (const float *)(xqt + j->aux_off), nb, o);
                else
                    k->dot_q8_0_r4(wr, j->ldw, (const mer_block_q8_0 *)xqt, nb, o);
                float *yt = j->y + (size_t)t * j->ldy + r0;
                for (int i = 0; i < 4; i++) yt[i] = o[i] + (j->bias ? j->bias[r0 + i] : 0.0f);
            }
        }
    } else {
        mer_split_range(j->n, ith, nth, &r0, &r1);
    }
    for (long r = r0; r < r1; r++) {
        const void *wr = (const uint8_t *)j->w + (size_t)r * j->ldw;
        const float b = j->bias ? j->bias[r] : 0.0f;
        for (int t = 0; t < j->n_tok; t++) {
            const float *xt = j->x + (size_t)t * j->ldx;
            const void *xqt = (const uint8_t *)j->xq + (size_t)t * j->xq_stride;
            float s;
            switch (j->wt) {
            case MER_DTYPE_F32: s = k->dot_f32(wr, xt, j->kd); break;
            case MER_DTYPE_F16: s = k->dot_f16(wr, xt, j->kd); break;
            case MER_DTYPE_BF16: s = k->dot_bf16(wr, j->xq ? xqt : (const void *)xt, j->kd); break;
            case MER_DTYPE_Q8_0: s = k->dot_q8_0(wr, xqt, nb); break;
            case MER_DTYPE_Q4_0:
                s = k->dot_q4_0(wr, xqt, j->aux_off ? (const float *)((const uint8_t *)xqt + j->aux_off) : NULL, nb);
                break;
            default: MER_ASSERT(!"unsupported weight dtype"); s = 0;
            }
            j->y[(size_t)t * j->ldy + r] = s + b;
        }
    }
}

static void matmul_dot(mer_cpu_ctx *c, float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                       mer_dtype wt, size_t ldw, const float *bias, int n_tok, int kd, int n) {
    dot_job j = {.k = c->k, .ldy = ldy, .ldx = ldx, .w = w, .wt = wt, .ldw = ldw, .bias = bias, .kd = kd, .n = n};
    int convert = wt == MER_DTYPE_Q8_0 || wt == MER_DTYPE_Q4_0 || (wt == MER_DTYPE_BF16 && c->k->has_bf16);
    int chunk = n_tok;
    if (convert) {
        j.xq_stride = wt == MER_DTYPE_BF16 ? ((size_t)kd * 2 + 63) / 64 * 64 : (size_t)(kd / MER_QK) * 34;
        if (wt == MER_DTYPE_Q4_0 && c->k->prep_q4_0) {
            j.aux_off = (j.xq_stride + 63) / 64 * 64;
            j.xq_stride = j.aux_off + (size_t)(kd / MER_QK) * 8 * sizeof(float);
        }
        chunk = (int)(WS_A_BYTES / j.xq_stride);
        MER_ASSERT(chunk >= 1);
        j.xq = c->ws_a;
    }
    for (int t0 = 0; t0 < n_tok; t0 += chunk) {
        j.n_tok = imin(chunk, n_tok - t0);
        j.x = x + (size_t)t0 * ldx;
        j.y = y + (size_t)t0 * ldy;
        if (convert) mer_threadpool_run_n(c->pool, j.n_tok >= 4 ? c->nth : 1, dot_prep_task, &j);
        mer_threadpool_run_parts(c->pool, n_parts(c, (long)n * j.n_tok * (kd / 256 + 1), 64), dot_task, &j);
    }
}

void mer_cpu_matmul(mer_cpu_ctx *c, float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                    mer_dtype wt, const float *bias, int n_tok, int n_in, int n_out) {
    MER_ASSERT(c && y && x && w && n_tok >= 0 && n_in > 0 && n_out >= 0 && n_in <= MER_CPU_MAX_K);
    MER_ASSERT(ldx >= (size_t)n_in && ldy >= (size_t)n_out);
    if (n_tok == 0 || n_out == 0) return;
    size_t ldw = mer_dtype_row_bytes(wt, (size_t)n_in);
    MER_ASSERT(ldw > 0);
    switch (wt) {
    case MER_DTYPE_F32:
    case MER_DTYPE_F16:
    case MER_DTYPE_BF16:
        if (n_tok >= MER_CPU_GEMM_MIN_TOK) matmul_gemm(c, y, ldy, x, ldx, w, wt, ldw, bias, n_tok, n_in, n_out);
        else matmul_dot(c, y, ldy, x, ldx, w, wt, ldw, bias, n_tok, n_in, n_out);
        return;
    case MER_DTYPE_Q8_0:
    case MER_DTYPE_Q4_0:
        if (n_tok >= MER_CPU_QGEMM_MIN_TOK) matmul_gemm(c, y, ldy, x, ldx, w, wt, ldw, bias, n_tok, n_in, n_out);
        else matmul_dot(c, y, ldy, x, ldx, w, wt, ldw, bias, n_tok, n_in, n_out);
        return;
    default: MER_ASSERT(!"mer_cpu_matmul: unsupported weight dtype");
    }
}

// --- rows --------------------------------------------------------------------------------------------

typedef struct row_job {
    const mer_kernels *k;
    float *y;
    const float *x;
    const float *w, *b;
    int n_rows, n;
    size_t ld;
    float eps, scale;
    int causal_start;
    int op; /* 0 softmax, 1 layernorm, 2 rmsnorm, 3 add_row */
} row_job;

static void row_task(void *arg, int ith, int nth) {
    row_job *j = arg;
    long r0, r1;
    mer_split_range(j->n_rows, ith, nth, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        switch (j->op) {
        case 0: {
            int nv = j->n;
            if (j->causal_start >= 0) {
                long lim = r + j->causal_start + 1;
                nv = lim < j->n ? (int)lim : j->n;
            }
            j->k->softmax(j->y + (size_t)r * j->ld, j->n, nv, j->scale);
            break;
        }
        case 1: j->k->layernorm(j->y + (size_t)r * j->n, j->x + (size_t)r * j->n, j->n, j->w, j->b, j->eps); break;
        case 2: j->k->rmsnorm(j->y + (size_t)r * j->n, j->x + (size_t)r * j->n, j->n, j->w, j->eps); break;
        case 3: j->k->add(j->y + (size_t)r * j->n, j->x + (size_t)r * j->n, j->b, j->n); break;
        }
    }
}

static void run_rows(mer_cpu_ctx *c, row_job *j) {
    size_t work = (size_t)j->n_rows * (size_t)j->n;
    mer_threadpool_run_parts(c->pool, work >= ELEMWISE_MIN_SPLIT / 4 ? n_parts(c, j->n_rows, 1) : 1, row_task, j);
}

void mer_cpu_softmax(mer_cpu_ctx *c, float *x, int n_rows, int n_cols, size_t ld, float scale,
                     int causal_start) {
    MER_ASSERT(c && x && n_rows >= 0 && n_cols > 0 && ld >= (size_t)n_cols);
    row_job j = {.k = c->k, .y = x, .n_rows = n_rows, .n = n_cols, .ld = ld, .scale = scale,
                 .causal_start = causal_start, .op = 0};
    run_rows(c, &j);
}

void mer_cpu_layernorm(mer_cpu_ctx *c, float *y, const float *x, int n_rows, int n, const float *w,
                       const float *b, float eps) {
    MER_ASSERT(c && y && x && n_rows >= 0 && n > 0);
    row_job j = {.k = c->k, .y = y, .x = x, .w = w, .b = b, .n_rows = n_rows, .n = n, .eps = eps, .op = 1};
    run_rows(c, &j);
}

void mer_cpu_rmsnorm(mer_cpu_ctx *c, float *y, const float *x, int n_rows, int n, const float *w, float eps) {
    MER_ASSERT(c && y && x && n_rows >= 0 && n > 0);
    row_job j = {.k = c->k, .y = y, .x = x, .w = w, .n_rows = n_rows, .n = n, .eps = eps, .op = 2};
    run_rows(c, &j);
}

void mer_cpu_add_row(mer_cpu_ctx *c, float *y, const float *x, const float *b, int n_rows, int n) {
    MER_ASSERT(c && y && x && b && n_rows >= 0 && n > 0);
    row_job j = {.k = c->k, .y = y, .x = x, .b = b, .n_rows = n_rows, .n = n, .op = 3};
    run_rows(c, &j);
}

// --- element-wise ------------------------------------------------------------------------------------

typedef struct ew_job {
    const mer_kernels *k;
    float *y;
    const float *a, *b;
    float s;
    size_t n;
    int op;
} ew_job;

enum { EW_GELU, EW_GELU_TANH, EW_QUICK_GELU, EW_SILU, EW_SILU_MUL, EW_ADD, EW_MUL, EW_SCALE };

static void ew_task(void *arg, int ith, int nth) {
    ew_job *j = arg;
    /* split in units of 64 elements so every thread's range starts on a cache line of y */
    long units = (long)((j->n + 63) / 64), u0, u1;
    mer_split_range(units, ith, nth, &u0, &u1);
    size_t i0 = (size_t)u0 * 64, i1 = (size_t)u1 * 64;
    if (i1 > j->n) i1 = j->n;
    while (i0 < i1) { /* kernels take int counts */
        int m = (int)(i1 - i0 > (1u << 30) ? (1u << 30) : i1 - i0);
        float *y = j->y + i0;
        const float *a = j->a + i0, *b = j->b ? j->b + i0 : NULL;
        switch (j->op) {
        case EW_GELU: j->k->gelu(y, a, m); break;
        case EW_GELU_TANH: j->k->gelu_tanh(y, a, m); break;
        case EW_QUICK_GELU: j->k->quick_gelu(y, a, m); break;
        case EW_SILU: j->k->silu(y, a, m); break;
        case EW_SILU_MUL: j->k->silu_mul(y, a, b, m); break;
        case EW_ADD: j->k->add(y, a, b, m); break;
        case EW_MUL: j->k->mul(y, a, b, m); break;
        case EW_SCALE: j->k->scale(y, a, j->s, m); break;
        }
        i0 += (size_t)m;
    }
}

static void run_ew(mer_cpu_ctx *c, int op, float *y, const float *a, const float *b, float s, size_t n) {
    MER_ASSERT(c && y && a);
    ew_job j = {.k = c->k, .y = y, .a = a, .b = b, .s = s, .n = n, .op = op};
    mer_threadpool_run_parts(c->pool, n >= ELEMWISE_MIN_SPLIT ? n_parts(c, (long)(n / 64), 128) : 1, ew_task, &j);
}

void mer_cpu_gelu(mer_cpu_ctx *c, float *y, const float *x, size_t n) { run_ew(c, EW_GELU, y, x, NULL, 0, n); }
void mer_cpu_gelu_tanh(mer_cpu_ctx *c, float *y, const float *x, size_t n) {
    run_ew(c, EW_GELU_TANH, y, x, NULL, 0, n);
}
void mer_cpu_quick_gelu(mer_cpu_ctx *c, float *y, const float *x, size_t n) {
    run_ew(c, EW_QUICK_GELU, y, x, NULL, 0, n);
}
void mer_cpu_silu(mer_cpu_ctx *c, float *y, const float *x, size_t n) { run_ew(c, EW_SILU, y, x, NULL, 0, n); }
void mer_cpu_silu_mul(mer_cpu_ctx *c, float *y, const float *a, const float *b, size_t n) {
    MER_ASSERT(b);
    run_ew(c, EW_SILU_MUL, y, a, b, 0, n);
}
void mer_cpu_add(mer_cpu_ctx *c, float *y, const float *a, const float *b, size_t n) {
    MER_ASSERT(b);
    run_ew(c, EW_ADD, y, a, b, 0, n);
}
void mer_cpu_mul(mer_cpu_ctx *c, float *y, const float *a, const float *b, size_t n) {
    MER_ASSERT(b);
    run_ew(c, EW_MUL, y, a, b, 0, n);
}
void mer_cpu_scale(mer_cpu_ctx *c, float *y, const float *x, float s, size_t n) {
    run_ew(c, EW_SCALE, y, x, NULL, s, n);
}

// --- RoPE --------------------------------------------------------------------------------------------

typedef struct rope_job {
    float *x;
    int n_tok, n_head, d, n_rot;
    size_t ld_tok;
    const int32_t *pos;
    float theta;
} rope_job;

#define ROPE_MAX_ROT 1024

static void rope_task(void *arg, int ith, int nth) {
    rope_job *j = arg;
    const int half = j->n_rot / 2;
    float inv_freq[ROPE_MAX_ROT / 2], cs[ROPE_MAX_ROT / 2], sn[ROPE_MAX_ROT / 2];
    /* HF: inv_freq = 1 / theta ** (arange(0, n_rot, 2).float() / n_rot), in f32 */
    for (int i = 0; i < half; i++) inv_freq[i] = 1.0f / powf(j->theta, (float)(2 * i) / (float)j->n_rot);
    long t0, t1;
    mer_split_range(j->n_tok, ith, nth, &t0, &t1);
    for (long t = t0; t < t1; t++) {
        const float p = (float)j->pos[t];
        for (int i = 0; i < half; i++) {
            float a = p * inv_freq[i];
            cs[i] = cosf(a);
            sn[i] = sinf(a);
        }
        for (int h = 0; h < j->n_head; h++) {
            float *v = j->x + (size_t)t * j->ld_tok + (size_t)h * j->d;
            for (int i = 0; i < half; i++) {
                float x0 = v[i], x1 = v[i + half];
                v[i] = x0 * cs[i] - x1 * sn[i];
                v[i + half] = x1 * cs[i] + x0 * sn[i];
            }
        }
    }
}

void mer_cpu_rope_neox(mer_cpu_ctx *c, float *x, int n_tok, int n_head, int d, size_t ld_tok,
                       const int32_t *pos, float theta, int n_rot) {
    MER_ASSERT(c && x && pos && n_tok >= 0 && n_head > 0 && d > 0 && n_rot >= 0 && n_rot <= d);
    MER_ASSERT(n_rot % 2 == 0 && n_rot <= ROPE_MAX_ROT && ld_tok >= (size_t)n_head * d);
    if (n_rot == 0 || n_tok == 0) return;
    rope_job j = {.x = x, .n_tok = n_tok, .n_head = n_head, .d = d, .n_rot = n_rot, .ld_tok = ld_tok,
                  .pos = pos, .theta = theta};
    mer_threadpool_run_n(c->pool, n_tok > 1 ? c->nth : 1, rope_task, &j);
}

// --- attention ---------------------------------------------------------------------------------------

typedef struct attn_job {
    const mer_kernels *k;
    float *out;
    const float *q, *kk, *v;
    int n_tok, n_head, n_kv_head, d, n_kv, start_pos, causal;
    float scale;
} attn_job;

static void attn_task(void *arg, int ith, int nth) {
    attn_job *j = arg;
    const mer_kernels *k = j->k;
    const int d = j->d, group = j->n_head / j->n_kv_head;
    const size_t kv_row = (size_t)j->n_kv_head * d;
    float acc[ATTN_MAX_D], s[ATTN_TILE];
    long u0, u1;
    mer_split_range((long)j->n_tok * j->n_head, ith, nth, &u0, &u1);
    for (long u = u0; u < u1; u++) {
        int t = (int)(u / j->n_head), h = (int)(u % j->n_head), g = h / group;
        const float *qv = j->q + (size_t)u * d;
        float *o = j->out + (size_t)u * d;
        long nk = j->n_kv;
        if (j->causal && (long)j->start_pos + t + 1 < nk) nk = (long)j->start_pos + t + 1;
        memset(acc, 0, (size_t)d * sizeof(float));
        float m = -INFINITY, l = 0.0f;
        for (long j0 = 0; j0 < nk; j0 += ATTN_TILE) {
            int nt = (int)(nk - j0 < ATTN_TILE ? nk - j0 : ATTN_TILE);
            float tmax = -INFINITY;
            for (int i = 0; i < nt; i++) {
                s[i] = k->dot_f32(qv, j->kk + (size_t)(j0 + i) * kv_row + (size_t)g * d, d);
                tmax = fmaxf(tmax, j->scale * s[i]);
            }
            float mn = fmaxf(m, tmax);
            if (m != -INFINITY && mn != m) { /* rescale what was accumulated under the old max */
                float corr = expf(m - mn);
                l *= corr;
                k->scale(acc, acc, corr, d);
            }
            m = mn;
            l += k->exp_sum(s, nt, j->scale, m);
            for (int i = 0; i < nt; i++) k->axpy(acc, s[i], j->v + (size_t)(j0 + i) * kv_row + (size_t)g * d, d);
        }
        if (l > 0.0f) k->scale(o, acc, 1.0f / l, d);
        else memset(o, 0, (size_t)d * sizeof(float));
    }
}

/* Tiled attention for several queries: per (head, tile of TQ queries), S = Q K^T and O += P V run on
 * the GEMM micro-kernel in tiles of ATTN_KT keys, with the online softmax in between. Scratch comes from
 * the thread's GEMM B block (not in use during attention). */
#define ATTN_KT 64 /* keys per tile: a multiple of every NR */

typedef struct attn_tiled_job {
    attn_job a;
    float *ws; /* nth blocks of MER_GEMM_KC * GEMM_NC floats */
} attn_tiled_job;

static void attn_tiled_task(void *arg, int ith, int nth) {
    attn_tiled_job *tj = arg;
    const attn_job *j = &tj->a;
    const mer_kernels *k = j->k;
    const int MR = k->gemm_mr, NR = k->gemm_nr, TQ = 4 * MR, KT = ATTN_KT, d = j->d;
    const int group = j->n_head / j->n_kv_head, n_qt = (j->n_tok + TQ - 1) / TQ;
    const size_t q_row = (size_t)j->n_head * d, kv_row = (size_t)j->n_kv_head * d;
    float *ws = tj->ws + (size_t)ith * MER_GEMM_KC * GEMM_NC;
    float *apack = ws;                         /* TQ x d, GEMM A layout per k-block */
    float *bpan = apack + (size_t)TQ * d;      /* NR x KC: one packed K or V panel */
    float *S = bpan + (size_t)NR * MER_GEMM_KC; /* TQ x KT scores, then probabilities */
    float *ppack = S + (size_t)TQ * KT;        /* TQ x KT, A layout */
    float *O = ppack + (size_t)TQ * KT;        /* TQ x d */
    float *mrow = O + (size_t)TQ * d, *lrow = mrow + TQ;
    long u0, u1;
    mer_split_range((long)j->n_head * n_qt, ith, nth, &u0, &u1);
    for (long u = u0; u < u1; u++) {
        const int h = (int)(u / n_qt), t0 = (int)(u % n_qt) * TQ, tq = imin(TQ, j->n_tok - t0), g = h / group;
        const float *kbase = j->kk + (size_t)g * d, *vbase = j->v + (size_t)g * d;
        for (int k0 = 0; k0 < d; k0 += MER_GEMM_KC) { /* Q tile as GEMM A panels */
            int kc = imin(MER_GEMM_KC, d - k0);
            for (int p = 0; p * MR < tq; p++)
                k->gemm_pack_a(apack + (size_t)TQ * k0 + (size_t)p * MR * kc,
                               j->q + (size_t)(t0 + p * MR) * q_row + (size_t)h * d + k0, q_row,
                               imin(MR, tq - p * MR), kc);
        }
        int kmax = j->n_kv;
        if (j->causal && j->start_pos + t0 + tq < kmax) kmax = j->start_pos + t0 + tq;
        memset(O, 0, sizeof(float) * (size_t)tq * d);
        for (int i = 0; i < tq; i++) mrow[i] = -INFINITY, lrow[i] = 0.0f;
        for (int j0 = 0; j0 < kmax; j0 += KT) {
            const int kt = imin(KT, kmax - j0);
            /* S[tq][kt] = Q K^T */
            for (int jr = 0; jr < kt; jr += NR)
                for (int k0 = 0; k0 < d; k0 += MER_GEMM_KC) {
                    int kc = imin(MER_GEMM_KC, d - k0);
                    k->gemm_pack_b(bpan, kbase + (size_t)(j0 + jr) * kv_row, MER_DTYPE_F32, kv_row * sizeof(float),
                                   imin(NR, kt - jr), k0, kc);
                    for (int p = 0; p * MR < tq; p++)
                        k->gemm_ukernel(kc, apack + (size_t)TQ * k0 + (size_t)p * MR * kc, bpan,
                                        S + (size_t)p * MR * KT + jr, KT, imin(MR, tq - p * MR), imin(NR, kt - jr),
                                        k0 > 0);
                }
            /* online softmax, row by row; causal rows see a prefix of the tile */
            for (int i = 0; i < tq; i++) {
                float *si = S + (size_t)i * KT;
                int nv = kt;
                if (j->causal) {
                    long lim = (long)j->start_pos + t0 + i + 1 - j0;
                    nv = lim < 0 ? 0 : lim < kt ? (int)lim : kt;
                }
                if (nv > 0) {
                    float tmax = -INFINITY;
                    for (int jj = 0; jj < nv; jj++) tmax = fmaxf(tmax, j->scale * si[jj]);
                    float mn = fmaxf(mrow[i], tmax);
                    if (mrow[i] != -INFINITY && mn != mrow[i]) {
                        float corr = expf(mrow[i] - mn);
                        lrow[i] *= corr;
                        k->scale(O + (size_t)i * d, O + (size_t)i * d, corr, d);
                    }
                    mrow[i] = mn;
                    lrow[i] += k->exp_sum(si, nv, j->scale, mn);
                }
                for (int jj = nv; jj < kt; jj++) si[jj] = 0.0f;
            }
            /* O[tq][d] += P[tq][kt] V[kt][d] */
            for (int p = 0; p * MR < tq; p++)
                k->gemm_pack_a(ppack + (size_t)p * MR * kt, S + (size_t)p * MR * KT, KT, imin(MR, tq - p * MR), kt);
            for (int n0 = 0; n0 < d; n0 += NR) {
                const int nr = imin(NR, d - n0);
                for (int kk = 0; kk < kt; kk++) {
                    float *dst = bpan + (size_t)kk * NR;
                    memcpy(dst, vbase + (size_t)(j0 + kk) * kv_row + n0, sizeof(float) * (size_t)nr);
                    for (int jj = nr; jj < NR; jj++) dst[jj] = 0.0f;
                }
                for (int p = 0; p * MR < tq; p++)
                    k->gemm_ukernel(kt, ppack + (size_t)p * MR * kt, bpan, O + (size_t)p * MR * d + n0, (size_t)d,
                                    imin(MR, tq - p * MR), nr, 1);
            }
        }
        for (int i = 0; i < tq; i++) {
            float *o = j->out + (size_t)(t0 + i) * q_row + (size_t)h * d;
            if (lrow[i] > 0.0f) k->scale(o, O + (size_t)i * d, 1.0f / lrow[i], d);
            else memset(o, 0, sizeof(float) * (size_t)d);
        }
    }
}

void mer_cpu_attention(mer_cpu_ctx *c, float *out, const float *q, const float *k, const float *v,
                       int n_tok, int n_head, int n_kv_head, int d, int n_kv, int start_pos, int causal,
                       float scale) {
    MER_ASSERT(c && out && q && k && v && n_tok >= 0 && n_head > 0 && n_kv_head > 0);
    MER_ASSERT(n_head % n_kv_head == 0 && d > 0 && d <= ATTN_MAX_D && n_kv >= 0 && start_pos >= 0);
    attn_job j = {.k = c->k, .out = out, .q = q, .kk = k, .v = v, .n_tok = n_tok, .n_head = n_head,
                  .n_kv_head = n_kv_head, .d = d, .n_kv = n_kv, .start_pos = start_pos, .causal = causal,
                  .scale = scale};
    if (n_tok >= MER_CPU_ATTN_TILED_MIN_TOK) {
        attn_tiled_job tj = {.a = j, .ws = c->ws_b};
        mer_threadpool_run(c->pool, attn_tiled_task, &tj);
    } else {
        mer_threadpool_run_parts(c->pool, n_parts(c, (long)n_tok * n_head, 1), attn_task, &j);
    }
}

// --- convolutions ------------------------------------------------------------------------------------

int mer_conv1d_out_len(int l_in, int k, int stride, int pad) {
    if (l_in < 0 || k < 1 || stride < 1 || pad < 0) return 0;
    long span = (long)l_in + 2L * pad - k;
    if (span < 0) return 0;
    long n = span / stride + 1;
    return n > 0x7fffffff ? 0 : (int)n;
}

typedef struct im2col_job {
    float *col;          /* [n_pos][K] */
    const float *x;      /* first channel of the group, [cin_g][l_in] */
    int cin_g, l_in, k, stride, pad, p0, n_pos;
} im2col_job;

static void im2col_task(void *arg, int ith, int nth) {
    im2col_job *j = arg;
    const int K = j->cin_g * j->k;
    long r0, r1;
    mer_split_range(j->n_pos, ith, nth, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        float *dst = j->col + (size_t)r * K;
        long start = (long)(j->p0 + r) * j->stride - j->pad;
        for (int ci = 0; ci < j->cin_g; ci++) {
            const float *xs = j->x + (size_t)ci * j->l_in;
            for (int kk = 0; kk < j->k; kk++) {
                long p = start + kk;
                dst[ci * j->k + kk] = p >= 0 && p < j->l_in ? xs[p] : 0.0f;
            }
        }
    }
}

void mer_cpu_conv1d(mer_cpu_ctx *c, float *y, const float *x, const float *w, const float *bias, int c_in,
                    int l_in, int c_out, int k, int stride, int pad, int groups) {
    MER_ASSERT(c && y && x && w && groups >= 1 && c_in % groups == 0 && c_out % groups == 0);
    const int l_out = mer_conv1d_out_len(l_in, k, stride, pad);
    MER_ASSERT(l_out >= 1);
    const int cin_g = c_in / groups, cout_g = c_out / groups, K = cin_g * k;
    MER_ASSERT(K <= MER_CPU_MAX_K && (size_t)K * sizeof(float) <= WS_OP_BYTES);
    const int tile = (int)(WS_OP_BYTES / ((size_t)K * sizeof(float)));
    float *col = (float *)c->ws_op;
    for (int g = 0; g < groups; g++) {
        for (int p0 = 0; p0 < l_out; p0 += tile) {
            int np = imin(tile, l_out - p0);
            im2col_job ij = {.col = col, .x = x + (size_t)g * cin_g * l_in, .cin_g = cin_g, .l_in = l_in,
                             .k = k, .stride = stride, .pad = pad, .p0 = p0, .n_pos = np};
            mer_threadpool_run_n(c->pool, (size_t)np * K >= ELEMWISE_MIN_SPLIT ? c->nth : 1, im2col_task, &ij);
            /* y_g[cout_g][np] = w_g[cout_g][K] @ col[np][K]^T */
            mer_cpu_matmul(c, y + (size_t)g * cout_g * l_out + p0, (size_t)l_out, w + (size_t)g * cout_g * K,
                           (size_t)K, col, MER_DTYPE_F32, NULL, cout_g, K, np);
        }
    }
    if (bias)
        for (int co = 0; co < c_out; co++) {
            float *yr = y + (size_t)co * l_out;
            for (int p = 0; p < l_out; p++) yr[p] += bias[co];
        }
}

typedef struct patch_job {
    float *rows; /* [n][c_in*p*p] */
    const float *img;
    int c_in, h, wd, p, pw, first, n;
} patch_job;

static void patch_task(void *arg, int ith, int nth) {
    patch_job *j = arg;
    const int K = j->c_in * j->p * j->p;
    long r0, r1;
    mer_split_range(j->n, ith, nth, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        int pi = j->first + (int)r, py = pi / j->pw, px = pi % j->pw;
        float *dst = j->rows + (size_t)r * K;
        for (int ci = 0; ci < j->c_in; ci++)
            for (int ky = 0; ky < j->p; ky++)
                memcpy(dst + ((size_t)ci * j->p + ky) * j->p,
                       j->img + ((size_t)ci * j->h + (size_t)py * j->p + ky) * j->wd + (size_t)px * j->p,
                       (size_t)j->p * sizeof(float));
    }
}

void mer_cpu_conv2d_patch(mer_cpu_ctx *c, float *y, const float *img, const void *w, mer_dtype wt,
                          const float *bias, int c_in, int h, int wd, int c_out, int p) {
    MER_ASSERT(c && y && img && w && c_in > 0 && p > 0 && h >= p && wd >= p && c_out > 0);
    const int ph = h / p, pw = wd / p, n_patch = ph * pw, K = c_in * p * p;
    MER_ASSERT(K <= MER_CPU_MAX_K && (size_t)K * sizeof(float) <= WS_OP_BYTES);
    const int tile = (int)(WS_OP_BYTES / ((size_t)K * sizeof(float)));
    float *rows = (float *)c->ws_op;
    for (int p0 = 0; p0 < n_patch; p0 += tile) {
        int np = imin(tile, n_patch - p0);
        patch_job pj = {.rows = rows, .img = img, .c_in = c_in, .h = h, .wd = wd, .p = p, .pw = pw,
                        .first = p0, .n = np};
        mer_threadpool_run_n(c->pool, (size_t)np * K >= ELEMWISE_MIN_SPLIT ? c->nth : 1, patch_task, &pj);
        mer_cpu_matmul(c, y + (size_t)p0 * c_out, (size_t)c_out, rows, (size_t)K, w, wt, bias, np, K, c_out);
    }
}

// --- embedding ---------------------------------------------------------------------------------------

typedef struct embed_job {
    float *y;
    const void *table;
    mer_dtype t;
    size_t row_bytes;
    int n_cols;
    const int32_t *ids;
    int n;
} embed_job;

static void embed_task(void *arg, int ith, int nth) {
    embed_job *j = arg;
    long i0, i1;
    mer_split_range(j->n, ith, nth, &i0, &i1);
    for (long i = i0; i < i1; i++)
        mer_dequantize_row(j->t, (const uint8_t *)j->table + (size_t)j->ids[i] * j->row_bytes,
                           j->y + (size_t)i * j->n_cols, (size_t)j->n_cols);
}

void mer_cpu_embed(mer_cpu_ctx *c, float *y, const void *table, mer_dtype t, int64_t n_rows, int n_cols,
                   const int32_t *ids, int n) {
    MER_ASSERT(c && y && table && ids && n >= 0 && n_cols > 0);
    size_t rb = mer_dtype_row_bytes(t, (size_t)n_cols);
    MER_ASSERT(rb > 0);
    for (int i = 0; i < n; i++) MER_ASSERT(ids[i] >= 0 && ids[i] < n_rows);
    embed_job j = {.y = y, .table = table, .t = t, .row_bytes = rb, .n_cols = n_cols, .ids = ids, .n = n};
    mer_threadpool_run_n(c->pool, (size_t)n * n_cols >= ELEMWISE_MIN_SPLIT ? c->nth : 1, embed_task, &j);
}
