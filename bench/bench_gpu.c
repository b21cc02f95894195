/* bench_gpu.c - the CUDA backend's benchmark (run by bench/gpu.sh on the GPU machine, beside HF
 * transformers measured in the same run by bench/gpu_ref.py).
 *
 *   bench_gpu ceil             device-to-device copy bandwidth, cuBLASLt bf16 GEMM rate (8192^3)
 *   bench_gpu gemv             the decode matmuls of Qwen2.5-7B at 1 and 8 rows: GEMV variants and
 *                              cuBLASLt, in GB/s of weights (weights rotated over > 4x the L2)
 *   bench_gpu small            the small kernels of a decode step, 200 launches in one graph: time each
 *   bench_gpu model            Qwen2.5-7B shape, random bf16 weights made on the device: prefill of
 *                              512 tokens, batch-1 and batch-8 decode (graph + PDL, graph only, no
 *                              graph), decode after a 512-token prompt
 *   bench_gpu leak             10,000 decode steps of a 2-layer model of 7B width: device memory
 *   bench_gpu parity DIR       the model in DIR (HF checkpoint + expected.safetensors written by
 *                              gpu_ref.py export) against HF's logits and greedy tokens
 *   bench_gpu qgemv            q8_0 / q4_0 decode matmuls of Qwen2.5-7B at 1 and 8 rows (tile, warp and
 *                              unroll variants of the dequantising GEMV, q4_0's folded offset, PDL,
 *                              split-K of o and down), GB/s of quants + scales
 *   bench_gpu quant            Qwen2.5-7B shape with random q8_0 and q4_0 weights made on the device:
 *                              bytes per token, batch-1/4/8 decode, prefill of 512 tokens, the fraction
 *                              of the copy bandwidth (measured here) that batch-1 decode reaches; q4_0
 *                              decode with the folded-offset GEMV too (*_fold), with 2-way split-K of
 *                              o and down (*_split2); the decode runs with programmatic dependent
 *                              launch unless MER_CUDA_PDL is set (=0: without); MER_BENCH_NORMFOLD=1
 *                              adds the decode with the RMSNorms folded into the GEMVs (*_normfold,
 *                              then *_b1_again without) and checks the fold's outputs bit for bit
 *
 * Every figure is printed as "RESULT <key> <value> <unit>" for gpu.sh to collect. With no GPU (or a
 * build without CUDA) it prints a SKIP line and exits 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "core/dtype.h"
#include "io/weights.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_quant.h"
#include "models/qwen2_cuda.h"

#if MER_CUDA

static mer_err e;

#define BENCH_NAME "bench_gpu"
#include "bench_gpu_common.h"

// --- ceilings ----------------------------------------------------------------------------------------

typedef struct copy_arg {
    mer_cuda *c;
    void *dst, *src;
    size_t n;
} copy_arg;
static mer_status do_copy(void *ud, mer_err *err) {
    copy_arg *a = ud;
    return mer_cuda_copy_d2d(a->c, a->dst, a->src, a->n, err);
}

typedef struct mm_arg {
    mer_cuda *c;
    void *y;
    const uint16_t *x, *w;
    int n_tok, k, n, epi, path, reps, n_w;
    size_t w_stride; /* elements between weight copies */
    const uint16_t *x_all;
} mm_arg;
static mer_status do_mm(void *ud, mer_err *err) {
    mm_arg *a = ud;
    for (int r = 0; r < a->reps; r++) {
        const uint16_t *w = a->w + (size_t)(r % a->n_w) * a->w_stride;
        int ny = a->epi == MER_CUDA_EPI_SILU ? a->n / 2 : a->n;
        mer_status st = a->path ? mer_cuda_matmul_cublas(a->c, a->y, ny, a->x, a->k, w, MER_DTYPE_BF16, a->n_tok, a->k,
                                                         a->n, a->epi, err)
                                : mer_cuda_matmul_gemv(a->c, a->y, ny, a->x, a->k, w, a->n_tok, a->k, a->n, a->epi, err);
        if (st) return st;
    }
    return MER_OK;
}

static void bench_ceil(mer_cuda *c) {
    copy_arg a = {c, NULL, NULL, (size_t)2 << 30};
    TRY(mer_cuda_alloc(c, a.n, &a.dst, &e));
    TRY(mer_cuda_alloc(c, a.n, &a.src, &e));
    TRY(mer_cuda_fill_uniform_bf16(c, a.src, a.n / 2, 7, 1.0f, &e));
    double t[20], ms;
    for (int i = 0; i < 3; i++) TRY(mer_cuda_time(c, do_copy, &a, &ms, &e));
    for (int i = 0; i < 20; i++) TRY(mer_cuda_time(c, do_copy, &a, &t[i], &e));
    ms = median(t, 20);
    result("copy_bw", 2.0 * a.n / (ms * 1e-3) / 1e9, "GB/s");
    mer_cuda_release(c, a.dst);
    mer_cuda_release(c, a.src);

    const int N = 8192;
    mm_arg g = {c, NULL, NULL, NULL, N, N, N, MER_CUDA_EPI_BF16, 1, 1, 1, 0, NULL};
    void *x, *w;
    TRY(mer_cuda_alloc(c, (size_t)N * N * 2, &x, &e));
    TRY(mer_cuda_alloc(c, (size_t)N * N * 2, &w, &e));
    TRY(mer_cuda_alloc(c, (size_t)N * N * 2, &g.y, &e));
    TRY(mer_cuda_fill_uniform_bf16(c, x, (size_t)N * N, 1, 1.0f, &e));
    TRY(mer_cuda_fill_uniform_bf16(c, w, (size_t)N * N, 2, 1.0f, &e));
    g.x = x;
    g.w = w;
    for (int i = 0; i < 3; i++) TRY(mer_cuda_time(c, do_mm, &g, &ms, &e));
    for (int i = 0; i < 10; i++) TRY(mer_cuda_time(c, do_mm, &g, &t[i], &e));
    ms = median(t, 10);
    result("gemm_bf16_8192", 2.0 * N * (double)N * N / (ms * 1e-3) / 1e12, "TFLOP/s");
    mer_cuda_release(c, x);
    mer_cuda_release(c, w);
    mer_cuda_release(c, g.y);
}

// --- decode matmuls ----------------------------------------------------------------------------------

static void bench_gemv(mer_cuda *c) {
    static const struct { const char *name; int n, k, epi; } sh[] = {
        {"qkv", 4608, 3584, MER_CUDA_EPI_F32},       {"o", 3584, 3584, MER_CUDA_EPI_F32_ADD},
        {"gate_up", 37888, 3584, MER_CUDA_EPI_SILU}, {"down", 3584, 18944, MER_CUDA_EPI_F32_ADD},
        {"lm_head", 152064, 3584, MER_CUDA_EPI_F32},
    };
    for (size_t s = 0; s < MER_ARRAY_LEN(sh); s++) {
        const size_t wn = (size_t)sh[s].n * sh[s].k;
        int n_w = (int)((size_t)400 * 1024 * 1024 / (wn * 2)) + 1; /* > 4x a 100 MB L2 in all */
        if (n_w > 16) n_w = 16;
        void *w, *x, *y;
        TRY(mer_cuda_alloc(c, wn * 2 * n_w, &w, &e));
        TRY(mer_cuda_alloc(c, (size_t)8 * 18944 * 2, &x, &e));
        TRY(mer_cuda_alloc(c, (size_t)8 * 152064 * 4, &y, &e));
        TRY(mer_cuda_fill_uniform_bf16(c, w, wn * n_w, 3 + s, 0.02f, &e));
        TRY(mer_cuda_fill_uniform_bf16(c, x, (size_t)8 * 18944, 9, 1.0f, &e));
        TRY(mer_cuda_memset(c, y, 0, (size_t)8 * 152064 * 4, &e));
        for (int bt = 1; bt <= 8; bt *= 8) {
            for (int var = 0; var < 6; var++) { /* auto, 4 / 8 / 16 warps, two tiles, cuBLASLt */
                if (sh[s].epi == MER_CUDA_EPI_SILU && var == 4) continue;
                mer_cuda_set_gemv_tile(c, var == 4 ? 2 : 0);
                mer_cuda_set_gemv_warps(c, var == 1 ? 4 : var == 2 ? 8 : var == 3 ? 16 : 0);
                mm_arg a = {c, y, x, w, bt, sh[s].k, sh[s].n, sh[s].epi, var == 5, 4 * n_w, n_w, wn, NULL};
                double t[7], ms;
                TRY(mer_cuda_time(c, do_mm, &a, &ms, &e));
                for (int i = 0; i < 7; i++) TRY(mer_cuda_time(c, do_mm, &a, &t[i], &e));
                ms = median(t, 7) / a.reps;
                char key[96];
                static const char *vn[] = {"auto", "nw4", "nw8", "nw16", "tile2", "cublas"};
                snprintf(key, sizeof key, "gemv_%s_b%d_%s", sh[s].name, bt, vn[var]);
                result(key, wn * 2.0 / (ms * 1e-3) / 1e9, "GB/s");
            }
        }
        mer_cuda_set_gemv_tile(c, 0);
        mer_cuda_set_gemv_warps(c, 0);
        mer_cuda_release(c, w);
        mer_cuda_release(c, x);
        mer_cuda_release(c, y);
    }
    TRY(mer_cuda_trim(c, &e));
}

// --- small kernels, as a decode step runs them (each launched 200 times in one graph) -----------------

typedef struct small_arg {
    mer_cuda *c;
    int which, n_tok;
    void *a, *b, *d, *kc, *vc, *ws;
    float *x, *w, *qkv, *inv;
    int32_t *io;
} small_arg;

static mer_status small_once(small_arg *s, mer_err *err) {
    const int E = 3584, H = 28, KV = 4, D = 128, NCTX = 1024;
    const int32_t *pos = s->io, *slot = s->io + 8;
    switch (s->which) {
    case 0: return mer_cuda_f32_to_bf16(s->c, s->a, s->x, 1, err); /* an (almost) empty kernel */
    case 1: return mer_cuda_rmsnorm(s->c, s->a, MER_DTYPE_BF16, s->x, s->w, s->n_tok, E, 1e-6f, err);
    case 2:
        return mer_cuda_qkv_rope(s->c, s->qkv, s->w, s->inv, s->a, s->kc, s->vc, MER_DTYPE_BF16, pos, slot, s->n_tok,
                                 H, KV, D, NCTX, err);
    case 3:
        return mer_cuda_attn_decode(s->c, s->d, s->a, s->kc, s->vc, MER_DTYPE_BF16, pos, slot, s->n_tok, H, KV, D, NCTX,
                                    16, 0.088f, s->ws, err);
    case 4: return mer_cuda_argmax(s->c, s->io + 16, s->qkv, s->n_tok, 152064, err);
    default: return mer_cuda_embed(s->c, s->x, s->a, MER_DTYPE_BF16, 8, E, s->io + 16, s->n_tok, err);
    }
}

static void bench_small(mer_cuda *c) {
    small_arg s = {c, 0, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    const size_t cache = (size_t)8 * 4 * 1024 * 128;
    TRY(mer_cuda_alloc(c, 8 * 152064 * 4, (void **)&s.qkv, &e));
    TRY(mer_cuda_alloc(c, 8 * 3584 * 4, (void **)&s.x, &e));
    TRY(mer_cuda_alloc(c, 8 * 4608 * 4, (void **)&s.w, &e));
    TRY(mer_cuda_alloc(c, 64 * 4, (void **)&s.inv, &e));
    TRY(mer_cuda_alloc(c, 8 * 3584 * 2, &s.a, &e));
    TRY(mer_cuda_alloc(c, 8 * 3584 * 2, &s.d, &e));
    TRY(mer_cuda_alloc(c, cache * 2, &s.kc, &e));
    TRY(mer_cuda_alloc(c, cache * 2, &s.vc, &e));
    size_t wsb = mer_cuda_attn_decode_ws(8, 28, 128, 16);
    TRY(mer_cuda_alloc(c, wsb, &s.ws, &e));
    TRY(mer_cuda_alloc(c, 64 * 4, (void **)&s.io, &e));
    TRY(mer_cuda_memset(c, s.ws, 0, wsb, &e));
    TRY(mer_cuda_fill_uniform_f32(c, s.qkv, 8 * 152064, 1, 0.f, 1.f, &e));
    TRY(mer_cuda_fill_uniform_f32(c, s.x, 8 * 3584, 2, 0.f, 1.f, &e));
    TRY(mer_cuda_fill_uniform_f32(c, s.w, 8 * 4608, 3, 1.f, 0.1f, &e));
    TRY(mer_cuda_fill_uniform_f32(c, s.inv, 64, 4, 0.5f, 0.4f, &e));
    TRY(mer_cuda_fill_uniform_bf16(c, s.kc, cache, 5, 1.f, &e));
    TRY(mer_cuda_fill_uniform_bf16(c, s.vc, cache, 6, 1.f, &e));
    TRY(mer_cuda_fill_uniform_bf16(c, s.a, 8 * 3584, 7, 1.f, &e));
    int32_t io[64] = {0};
    for (int i = 0; i < 8; i++) io[i] = 160 + 9 * i, io[8 + i] = i, io[16 + i] = 3 * i;
    TRY(mer_cuda_upload(c, s.io, io, sizeof io, &e));
    static const char *names[] = {"empty", "rmsnorm", "qkv_rope", "attn_decode_ctx160", "argmax_152064", "embed"};
    for (int pdl = 0; pdl <= 1; pdl++) {
        mer_cuda_set_pdl(c, pdl);
        for (int bt = 1; bt <= 8; bt *= 8)
            for (int k = 0; k < 6; k++) {
                s.which = k;
                s.n_tok = bt;
                mer_cuda_graph *g = NULL;
                TRY(mer_cuda_begin_capture(c, &e));
                mer_status st = MER_OK;
                for (int i = 0; i < 200 && !st; i++) st = small_once(&s, &e);
                mer_err e2;
                TRY(mer_cuda_end_capture(c, st != MER_OK, &g, &e2));
                if (st || !g) {
                    fprintf(stderr, "bench_gpu: small %s: %s\n", names[k], e.msg);
                    continue;
                }
                double t[5];
                for (int r = 0; r < 6; r++) {
                    double a0 = now_ms();
                    TRY(mer_cuda_graph_launch(c, g, &e));
                    TRY(mer_cuda_sync(c, &e));
                    if (r) t[r - 1] = (now_ms() - a0) * 1e3 / 200;
                }
                mer_cuda_graph_free(g);
                char key[96];
                snprintf(key, sizeof key, "small_%s_b%d%s", names[k], bt, pdl ? "_pdl" : "");
                result(key, median(t, 5), "us");
            }
    }
    mer_cuda_set_pdl(c, 0);
    void *bufs[] = {s.qkv, s.x, s.w, s.inv, s.a, s.d, s.kc, s.vc, s.ws, s.io};
    for (size_t i = 0; i < MER_ARRAY_LEN(bufs); i++) mer_cuda_release(c, bufs[i]);
    TRY(mer_cuda_trim(c, &e));
}

// --- the model ---------------------------------------------------------------------------------------

static mer_qwen2_cuda_hp hp_7b(void) {
    mer_qwen2_cuda_hp hp = {152064, 3584, 28, 28, 4, 128, 18944, 1e6f, 1e-6f, 0};
    return hp;
}

/* Decodes n_steps tokens in n_seq sequences after a prompt of n_prompt tokens each; returns tokens/s. */
static double run_decode(mer_qwen2_cuda *m, int n_seq, int n_prompt, int n_steps) {
    const int V = mer_qwen2_cuda_hparams(m)->n_vocab;
    int32_t *prompt = malloc((size_t)n_prompt * sizeof(int32_t)), cur[64];
    int slots[64];
    for (int s = 0; s < n_seq; s++) {
        for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)((i * 7919 + s * 104729 + 13) % V);
        TRY(mer_qwen2_cuda_reset(m, s, &e));
        TRY(mer_qwen2_cuda_prefill(m, s, prompt, n_prompt, NULL, 0, &cur[s], &e));
        slots[s] = s;
    }
    /* two warm-up steps (graph capture) */
    for (int i = 0; i < 2; i++) TRY(mer_qwen2_cuda_decode(m, n_seq, slots, cur, NULL, cur, &e));
    double t0 = now_ms();
    for (int i = 0; i < n_steps; i++) TRY(mer_qwen2_cuda_decode(m, n_seq, slots, cur, NULL, cur, &e));
    double t1 = now_ms();
    free(prompt);
    return (double)n_seq * n_steps / ((t1 - t0) * 1e-3);
}

static void bench_model(void) {
    mer_qwen2_cuda_hp hp = hp_7b();
    mer_qwen2_cuda_params p = mer_qwen2_cuda_default_params();
    p.n_ctx = 1024;
    p.n_seq = 8;
    if (getenv("MER_BENCH_NSPLIT")) p.n_split = atoi(getenv("MER_BENCH_NSPLIT")); /* decode attention splits */
    p.n_batch = 512;
    mer_qwen2_cuda *m = NULL;
    double t0 = now_ms();
    TRY(mer_qwen2_cuda_init_random(&hp, 42, &p, &m, &e));
    mer_cuda *c = mer_qwen2_cuda_backend(m);
    result("model_init", now_ms() - t0, "ms");
    const double step_gb = mer_qwen2_cuda_step_bytes(m) / 1e9;
    result("decode_step_bytes", step_gb, "GB");

    /* prefill of 512 tokens (logits of the last one), median of 10 */
    {
        int32_t ids[512];
        for (int i = 0; i < 512; i++) ids[i] = (int32_t)((i * 7919 + 5) % hp.n_vocab);
        double t[10];
        int32_t g;
        for (int i = 0; i < 13; i++) {
            TRY(mer_qwen2_cuda_reset(m, 0, &e));
            double a = now_ms();
            TRY(mer_qwen2_cuda_prefill(m, 0, ids, 512, NULL, 0, &g, &e));
            if (i >= 3) t[i - 3] = now_ms() - a;
        }
        result("prefill512", median(t, 10), "ms");
        result("prefill512_tok_s", 512.0 / (median(t, 10) * 1e-3), "tok/s");
    }
    /* decode */
    double b1 = 0, b8 = 0;
    for (int r = 0; r < 3; r++) {
        double v = run_decode(m, 1, 32, 128);
        if (v > b1) b1 = v;
    }
    result("decode_b1", b1, "tok/s");
    result("decode_b1_eff_bw", b1 * step_gb, "GB/s");
    for (int r = 0; r < 3; r++) {
        double v = run_decode(m, 8, 32, 128);
        if (v > b8) b8 = v;
    }
    result("decode_b8", b8, "tok/s");
    result("decode_b1_ctx512", run_decode(m, 1, 512, 128), "tok/s");
    result("decode_b4", run_decode(m, 4, 32, 128), "tok/s");
    /* ablations */
    mer_cuda_set_pdl(c, 0);
    mer_qwen2_cuda_set_graph(m, 1);
    result("decode_b1_nopdl", run_decode(m, 1, 32, 128), "tok/s");
    result("decode_b8_nopdl", run_decode(m, 8, 32, 128), "tok/s");
    mer_qwen2_cuda_set_graph(m, 0);
    result("decode_b1_nograph", run_decode(m, 1, 32, 64), "tok/s");
    mer_cuda_set_pdl(c, 1);
    result("decode_b1_nograph_pdl", run_decode(m, 1, 32, 64), "tok/s");
    mer_qwen2_cuda_set_graph(m, 1);
    {
        size_t held, used, fr, tot;
        mer_cuda_alloc_stats(c, &held, &used);
        TRY(mer_cuda_mem_info(c, &fr, &tot, &e));
        result("model_device_bytes", held / 1e9, "GB");
    }
    mer_qwen2_cuda_free(m);
}

// --- quantised weights (q8_0, q4_0) ------------------------------------------------------------------

typedef struct qmm_arg {
    mer_cuda *c;
    void *y;
    const uint16_t *x;
    const mer_cuda_qmat *w; /* n_w copies */
    int n_tok, epi, reps, n_w;
} qmm_arg;
static mer_status do_qmm(void *ud, mer_err *err) {
    qmm_arg *a = ud;
    for (int r = 0; r < a->reps; r++) {
        const mer_cuda_qmat *w = &a->w[r % a->n_w];
        const int ny = a->epi == MER_CUDA_EPI_SILU ? w->n_out / 2 : w->n_out;
        mer_status st = mer_cuda_qgemv(a->c, a->y, ny, a->x, w->n_in, w, a->n_tok, (mer_cuda_epi)a->epi, err);
        if (st) return st;
    }
    return MER_OK;
}

/* GB/s of one GEMV of a's matrices (wb bytes each): a warm-up, then the median of 7 timed runs of a->reps. */
static double qmm_gbs(qmm_arg *a, size_t wb) {
    double t[7], ms;
    TRY(mer_cuda_time(a->c, do_qmm, a, &ms, &e));
    for (int i = 0; i < 7; i++) TRY(mer_cuda_time(a->c, do_qmm, a, &t[i], &e));
    ms = median(t, 7) / a->reps;
    return wb / (ms * 1e-3) / 1e9;
}

static void bench_qgemv(mer_cuda *c) {
    static const struct { const char *name; int n, k, epi; } sh[] = {
        {"qkv", 4608, 3584, MER_CUDA_EPI_F32},       {"o", 3584, 3584, MER_CUDA_EPI_F32_ADD},
        {"gate_up", 37888, 3584, MER_CUDA_EPI_SILU}, {"down", 3584, 18944, MER_CUDA_EPI_F32_ADD},
        {"lm_head", 152064, 3584, MER_CUDA_EPI_F32},
    };
    for (int qt = 0; qt < 2; qt++) {
        const mer_dtype dt = qt ? MER_DTYPE_Q4_0 : MER_DTYPE_Q8_0;
        for (size_t s = 0; s < MER_ARRAY_LEN(sh); s++) {
            mer_cuda_qmat w[16];
            size_t wb = 0;
            int n_w = 0;
            do { /* copies until > 400 MB (4x a 100 MB L2) */
                TRY(mer_cuda_qmat_init(c, &w[n_w], dt, sh[s].n, sh[s].k,
                                       sh[s].epi == MER_CUDA_EPI_SILU ? sh[s].n / 2 : 0, &e));
                TRY(mer_cuda_qmat_fill_random(c, &w[n_w], 11 + n_w, 0.03f, &e));
                wb = mer_cuda_qmat_bytes(&w[n_w]);
                n_w++;
            } while (n_w < 16 && wb * n_w < (size_t)400 * 1024 * 1024);
            void *x, *y;
            TRY(mer_cuda_alloc(c, (size_t)8 * 18944 * 2, &x, &e));
            TRY(mer_cuda_alloc(c, (size_t)8 * 152064 * 4, &y, &e));
            TRY(mer_cuda_fill_uniform_bf16(c, x, (size_t)8 * 18944, 9, 1.0f, &e));
            TRY(mer_cuda_memset(c, y, 0, (size_t)8 * 152064 * 4, &e));
            static const char *vn[] = {"auto",   "nw4",    "nw8",    "nw16",        "tile1",      "tile2",
                                       "u1",     "u2",     "fold",   "pdl",         "split1",     "split2",
                                       "split3", "split4", "split6", "split2_nw16", "split4_nw16"};
            /* MER_BENCH_QUICK=1: batch 1 only, without the warp / tile / unroll / fold variants */
            const int quick = getenv("MER_BENCH_QUICK") && atoi(getenv("MER_BENCH_QUICK"));
            /* MER_BENCH_GRID=1: instead, batch 1 with PDL (as the decode runs), every warps x unroll pair
             * and the default pick, tiles as the default picks them */
            const int grid = getenv("MER_BENCH_GRID") && atoi(getenv("MER_BENCH_GRID"));
            for (int gv = 0; grid && gv < 7; gv++) {
                mer_cuda_set_pdl(c, 1);
                mer_cuda_set_gemv_warps(c, gv < 6 ? 4 << (gv / 2) : 0);
                mer_cuda_set_qgemv_unroll(gv < 6 ? 1 + gv % 2 : 0);
                qmm_arg a = {c, y, x, w, 1, sh[s].epi, 4 * n_w, n_w};
                char key[96];
                if (gv < 6)
                    snprintf(key, sizeof key, "qgrid_%s_%s_nw%d_u%d", mer_dtype_name(dt), sh[s].name, 4 << (gv / 2),
                             1 + gv % 2);
                else
                    snprintf(key, sizeof key, "qgrid_%s_%s_auto", mer_dtype_name(dt), sh[s].name);
                result(key, qmm_gbs(&a, wb), "GB/s");
            }
            for (int bt = 1; bt <= (quick ? 1 : 8) && !grid; bt *= 8) {
                for (int var = 0; var < 17; var++) {
                    if (sh[s].epi == MER_CUDA_EPI_SILU && (var == 4 || var == 5)) continue;
                    if (var == 8 && dt != MER_DTYPE_Q4_0) continue;
                    if (var >= 10 && sh[s].epi != MER_CUDA_EPI_F32_ADD) continue; /* split-K: o and down */
                    if (quick && var >= 1 && var <= 8) continue;
                    mer_cuda_set_qgemv_fold(var == 8);
                    /* back-to-back GEMVs with programmatic dependent launch */
                    mer_cuda_set_pdl(c, var == 9);
                    mer_cuda_set_qgemv_split(var == 10  ? 1
                                             : var == 11 || var == 15 ? 2
                                             : var == 12 ? 3
                                             : var == 13 || var == 16 ? 4
                                             : var == 14 ? 6
                                                         : 0);
                    mer_cuda_set_gemv_tile(c, var == 4 ? 1 : var == 5 ? 2 : 0);
                    mer_cuda_set_gemv_warps(c, var == 1 ? 4 : var == 2 ? 8 : var == 3 || var >= 15 ? 16 : 0);
                    mer_cuda_set_qgemv_unroll(var == 6 ? 1 : var == 7 ? 2 : 0);
                    qmm_arg a = {c, y, x, w, bt, sh[s].epi, 4 * n_w, n_w};
                    char key[96];
                    snprintf(key, sizeof key, "qgemv_%s_%s_b%d_%s", mer_dtype_name(dt), sh[s].name, bt, vn[var]);
                    result(key, qmm_gbs(&a, wb), "GB/s");
                }
            }
            mer_cuda_set_gemv_tile(c, 0);
            mer_cuda_set_gemv_warps(c, 0);
            mer_cuda_set_qgemv_unroll(0);
            mer_cuda_set_qgemv_fold(0);
            mer_cuda_set_qgemv_split(0);
            mer_cuda_set_pdl(c, 0);
            for (int i = 0; i < n_w; i++) mer_cuda_qmat_release(c, &w[i]);
            mer_cuda_release(c, x);
            mer_cuda_release(c, y);
        }
    }
    TRY(mer_cuda_trim(c, &e));
}

/* mer_cuda_qgemv_norm against mer_cuda_rmsnorm + mer_cuda_qgemv at the 7B qkv and gate/up shapes, 1..4
 * rows: the outputs must be identical (prints the count of differing values). */
static void normfold_check(mer_cuda *c, mer_dtype dt) {
    const int E = 3584, F = 18944, nq = 4608;
    float *x, *w, *y0, *y1;
    uint16_t *xn;
    mer_cuda_qmat qa, qg;
    TRY(mer_cuda_alloc(c, (size_t)8 * E * 4, (void **)&x, &e));
    TRY(mer_cuda_alloc(c, (size_t)E * 4, (void **)&w, &e));
    TRY(mer_cuda_alloc(c, (size_t)8 * E * 2, (void **)&xn, &e));
    TRY(mer_cuda_alloc(c, (size_t)8 * F * 4, (void **)&y0, &e));
    TRY(mer_cuda_alloc(c, (size_t)8 * F * 4, (void **)&y1, &e));
    TRY(mer_cuda_fill_uniform_f32(c, x, (size_t)8 * E, 11, 0.1f, 3.0f, &e));
    TRY(mer_cuda_fill_uniform_f32(c, w, E, 12, 1.0f, 0.5f, &e));
    TRY(mer_cuda_qmat_init(c, &qa, dt, nq, E, 0, &e));
    TRY(mer_cuda_qmat_init(c, &qg, dt, 2 * F, E, F, &e));
    TRY(mer_cuda_qmat_fill_random(c, &qa, 5, 0.05f, &e));
    TRY(mer_cuda_qmat_fill_random(c, &qg, 6, 0.05f, &e));
    size_t bad = 0, tot = 0;
    float *h0 = malloc((size_t)8 * F * 4), *h1 = malloc((size_t)8 * F * 4);
    for (int n = 1; n <= 4; n++) /* the fold's rows (4 at most at this width) */
        for (int k = 0; k < 2; k++) {
            const mer_cuda_qmat *q = k ? &qg : &qa;
            const mer_cuda_epi epi = k ? MER_CUDA_EPI_SILU : MER_CUDA_EPI_F32;
            const int ny = k ? F : nq;
            const size_t bytes = (size_t)n * ny * (k ? 2 : 4);
            TRY(mer_cuda_rmsnorm(c, xn, MER_DTYPE_BF16, x, w, n, E, 1e-6f, &e));
            TRY(mer_cuda_qgemv(c, y0, ny, xn, E, q, n, epi, &e));
            TRY(mer_cuda_qgemv_norm(c, y1, ny, x, E, w, 1e-6f, q, n, epi, &e));
            TRY(mer_cuda_download(c, h0, y0, bytes, &e));
            TRY(mer_cuda_download(c, h1, y1, bytes, &e));
            for (size_t i = 0; i < bytes / 2; i++) bad += ((uint16_t *)h0)[i] != ((uint16_t *)h1)[i];
            tot += bytes / 2;
        }
    printf("normfold_check %s: %zu of %zu half-words differ\n", mer_dtype_name(dt), bad, tot);
    free(h0);
    free(h1);
    mer_cuda_qmat_release(c, &qa);
    mer_cuda_qmat_release(c, &qg);
    mer_cuda_release(c, x);
    mer_cuda_release(c, w);
    mer_cuda_release(c, xn);
    mer_cuda_release(c, y0);
    mer_cuda_release(c, y1);
}

static void bench_quant(mer_cuda *c) {
    double copy_bw;
    { /* the copy ceiling, measured in this run */
        copy_arg a = {c, NULL, NULL, (size_t)1 << 30};
        TRY(mer_cuda_alloc(c, a.n, &a.dst, &e));
        TRY(mer_cuda_alloc(c, a.n, &a.src, &e));
        TRY(mer_cuda_fill_uniform_bf16(c, a.src, a.n / 2, 7, 1.0f, &e));
        double t[10], ms;
        for (int i = 0; i < 3; i++) TRY(mer_cuda_time(c, do_copy, &a, &ms, &e));
        for (int i = 0; i < 10; i++) TRY(mer_cuda_time(c, do_copy, &a, &t[i], &e));
        copy_bw = 2.0 * a.n / (median(t, 10) * 1e-3) / 1e9;
        result("quant_copy_bw", copy_bw, "GB/s");
        mer_cuda_release(c, a.dst);
        mer_cuda_release(c, a.src);
        TRY(mer_cuda_trim(c, &e));
    }
    for (int qt = 0; qt < 2; qt++) {
        const mer_dtype dt = qt ? MER_DTYPE_Q4_0 : MER_DTYPE_Q8_0;
        const char *nm = mer_dtype_name(dt);
        /* MER_BENCH_QTYPES=q4_0 (or q8_0): that dtype only; MER_BENCH_B1_ONLY=1: batch-1 decode only */
        const char *only = getenv("MER_BENCH_QTYPES");
        if (only && !strstr(only, nm)) continue;
        const int b1_only = getenv("MER_BENCH_B1_ONLY") && atoi(getenv("MER_BENCH_B1_ONLY"));
        char key[96];
        mer_qwen2_cuda_hp hp = hp_7b();
        mer_qwen2_cuda_params p = mer_qwen2_cuda_default_params();
        p.n_ctx = 1024;
        p.n_seq = 8;
        if (getenv("MER_BENCH_NSPLIT")) p.n_split = atoi(getenv("MER_BENCH_NSPLIT"));
        p.n_batch = 512;
        p.wtype = dt;
        mer_qwen2_cuda *m = NULL;
        TRY(mer_qwen2_cuda_init_random(&hp, 42, &p, &m, &e));
        const double step_gb = mer_qwen2_cuda_step_bytes(m) / 1e9;
#define R(fmt, v, unit) (snprintf(key, sizeof key, fmt, nm), result(key, v, unit))
        R("%s_decode_step_bytes", step_gb, "GB");
        if (!b1_only) {
            int32_t ids[512];
            for (int i = 0; i < 512; i++) ids[i] = (int32_t)((i * 7919 + 5) % hp.n_vocab);
            double t[10];
            int32_t g;
            for (int i = 0; i < 13; i++) {
                TRY(mer_qwen2_cuda_reset(m, 0, &e));
                double a = now_ms();
                TRY(mer_qwen2_cuda_prefill(m, 0, ids, 512, NULL, 0, &g, &e));
                if (i >= 3) t[i - 3] = now_ms() - a;
            }
            R("%s_prefill512", median(t, 10), "ms");
        }
        double b1 = 0, b8 = 0;
        for (int r = 0; r < 3; r++) {
            double v = run_decode(m, 1, 32, 128);
            if (v > b1) b1 = v;
        }
        R("%s_decode_b1", b1, "tok/s");
        R("%s_decode_b1_eff_bw", b1 * step_gb, "GB/s");
        R("%s_decode_b1_of_copy_ceiling", b1 * step_gb / copy_bw, "fraction");
        R("%s_decode_b1_ceiling", copy_bw / step_gb, "tok/s");
        if (b1_only) {
            mer_qwen2_cuda_free(m);
            continue;
        }
        for (int r = 0; r < 3; r++) {
            double v = run_decode(m, 8, 32, 128);
            if (v > b8) b8 = v;
        }
        R("%s_decode_b8", b8, "tok/s");
        /* MER_BENCH_NORMFOLD=1: the decode with the layers' RMSNorms folded into the GEMVs (MER_CUDA_NORM_FOLD),
         * then the plain step again (drift check), all in this process. */
        if (getenv("MER_BENCH_NORMFOLD") && atoi(getenv("MER_BENCH_NORMFOLD"))) {
            normfold_check(mer_qwen2_cuda_backend(m), dt);
            double f1 = 0, f4 = 0, a1 = 0, a4 = 0;
            for (int r = 0; r < 3; r++) {
                double v = run_decode(m, 4, 32, 128);
                if (v > a4) a4 = v;
            }
            mer_cuda_set_qnorm_fold(8, 3);
            mer_qwen2_cuda_set_graph(m, 1);
            for (int r = 0; r < 3; r++) {
                double v = run_decode(m, 1, 32, 128);
                if (v > f1) f1 = v;
            }
            for (int r = 0; r < 3; r++) {
                double v = run_decode(m, 4, 32, 128);
                if (v > f4) f4 = v;
            }
            double q1 = 0;
            mer_cuda_set_qnorm_fold(8, 1); /* the qkv GEMV's only */
            mer_qwen2_cuda_set_graph(m, 1);
            for (int r = 0; r < 3; r++) {
                double v = run_decode(m, 1, 32, 128);
                if (v > q1) q1 = v;
            }
            R("%s_decode_b1_normfold_qkv", q1, "tok/s");
            mer_cuda_set_qnorm_fold(0, 3);
            mer_qwen2_cuda_set_graph(m, 1);
            for (int r = 0; r < 3; r++) {
                double v = run_decode(m, 1, 32, 128);
                if (v > a1) a1 = v;
            }
            R("%s_decode_b1_normfold", f1, "tok/s");
            R("%s_decode_b4", a4, "tok/s");
            R("%s_decode_b4_normfold", f4, "tok/s");
            R("%s_decode_b1_again", a1, "tok/s");
        }
        /* MER_BENCH_DECODE_ONLY=1: only batch 1 and 8 above (for a second run under MER_CUDA_PDL=0) */
        if (getenv("MER_BENCH_DECODE_ONLY") && atoi(getenv("MER_BENCH_DECODE_ONLY"))) {
            mer_qwen2_cuda_free(m);
            continue;
        }
        { /* opt-in variants: split-K of o and down (k blocks per tile), q4_0's folded offset; b1 = best of
           * 3 runs of 128 steps. (The quantised decode runs with PDL unless MER_CUDA_PDL is set: run
           * with MER_CUDA_PDL=0 for the step without it.) */
            static const struct { const char *key; int pdl, split, fold; } vs[] = {
                {"split2", 0, 2, 0},
                {"fold", 0, 0, 1},
            };
            mer_cuda *mc = mer_qwen2_cuda_backend(m);
            const int pdl0 = mer_cuda_get_pdl(mc);
            for (size_t v = 0; v < MER_ARRAY_LEN(vs); v++) {
                if (vs[v].fold && dt != MER_DTYPE_Q4_0) continue;
                if (vs[v].pdl) mer_cuda_set_pdl(mc, 1);
                mer_cuda_set_qgemv_split(vs[v].split);
                mer_cuda_set_qgemv_fold(vs[v].fold);
                mer_qwen2_cuda_set_graph(m, 1); /* recapture */
                double p1 = 0;
                for (int r = 0; r < 3; r++) {
                    double x = run_decode(m, 1, 32, 128);
                    if (x > p1) p1 = x;
                }
                snprintf(key, sizeof key, "%s_decode_b1_%s", nm, vs[v].key);
                result(key, p1, "tok/s");
                const double p8 = run_decode(m, 8, 32, 64);
                snprintf(key, sizeof key, "%s_decode_b8_%s", nm, vs[v].key);
                result(key, p8, "tok/s");
                /* a failed capture with PDL falls back to plain launches: say so */
                if (vs[v].pdl && !mer_cuda_get_pdl(mc)) printf("note: %s: PDL was turned off by the capture\n", vs[v].key);
            }
            mer_cuda_set_pdl(mc, pdl0);
            mer_cuda_set_qgemv_split(0);
            mer_cuda_set_qgemv_fold(0);
            mer_qwen2_cuda_set_graph(m, 1);
        }
        R("%s_decode_b4", run_decode(m, 4, 32, 128), "tok/s");
        R("%s_decode_b1_ctx512", run_decode(m, 1, 512, 128), "tok/s");
        {
            size_t held, used;
            mer_cuda_alloc_stats(mer_qwen2_cuda_backend(m), &held, &used);
            R("%s_model_device_bytes", held / 1e9, "GB");
        }
#undef R
        mer_qwen2_cuda_free(m);
    }
}

static void bench_leak(void) {
    mer_qwen2_cuda_hp hp = hp_7b();
    hp.n_layer = 2;
    mer_qwen2_cuda_params p = mer_qwen2_cuda_default_params();
    p.n_ctx = 1024;
    mer_qwen2_cuda *m = NULL;
    TRY(mer_qwen2_cuda_init_random(&hp, 5, &p, &m, &e));
    mer_cuda *c = mer_qwen2_cuda_backend(m);
    int s0 = 0;
    int32_t tok = 11;
    TRY(mer_qwen2_cuda_decode(m, 1, &s0, &tok, NULL, &tok, &e));
    size_t f0, f1, tot;
    TRY(mer_cuda_mem_info(c, &f0, &tot, &e));
    double t0 = now_ms();
    for (int i = 0; i < 10000; i++) {
        if (mer_qwen2_cuda_n_past(m, 0) >= 1000) TRY(mer_qwen2_cuda_reset(m, 0, &e));
        TRY(mer_qwen2_cuda_decode(m, 1, &s0, &tok, NULL, &tok, &e));
    }
    double t1 = now_ms();
    TRY(mer_cuda_mem_info(c, &f1, &tot, &e));
    result("leak_steps", 10000, "steps");
    result("leak_free_before", (double)f0, "B");
    result("leak_free_after", (double)f1, "B");
    result("leak_delta", (double)f0 - (double)f1, "B");
    result("leak_step_time", (t1 - t0) / 10000, "ms");
    mer_qwen2_cuda_free(m);
}

// --- parity with HF at the real widths ---------------------------------------------------------------

static double rel_err(const float *ref, const float *got, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return num != num ? 1e30 : sqrt(num / den);
}

static int prefix_match(const int32_t *a, const int32_t *b, int n) {
    int i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

static void bench_parity(const char *dir) {
    char path[1024];
    mer_weights *w = NULL, *ex = NULL;
    TRY(mer_weights_open(dir, &w, &e));
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    TRY(mer_weights_open(path, &ex, &e));
    const mer_wtensor *tid = mer_weights_find(ex, "ids"), *l32 = mer_weights_find(ex, "logits_f32"),
                      *l16 = mer_weights_find(ex, "logits_bf16"), *g32 = mer_weights_find(ex, "greedy_f32"),
                      *g16 = mer_weights_find(ex, "greedy_bf16");
    if (!tid || !l32 || !l16 || !g32 || !g16) {
        fprintf(stderr, "bench_gpu: %s lacks ids/logits_f32/logits_bf16/greedy_f32/greedy_bf16\n", path);
        exit(1);
    }
    const int n = (int)tid->shape[0], V = (int)l32->shape[1], n_gen = (int)g32->shape[0];
    mer_qwen2_cuda_params p = mer_qwen2_cuda_default_params();
    p.n_ctx = n + n_gen + 8;
    mer_qwen2_cuda *m = NULL;
    TRY(mer_qwen2_cuda_load(w, &p, &m, &e));
    float *lg = malloc((size_t)n * V * sizeof(float));
    int32_t *gen = malloc((size_t)n_gen * sizeof(int32_t)), cur;
    TRY(mer_qwen2_cuda_prefill(m, 0, tid->data, n, lg, 1, &cur, &e));
    gen[0] = cur;
    int s0 = 0;
    for (int i = 1; i < n_gen; i++) {
        TRY(mer_qwen2_cuda_decode(m, 1, &s0, &cur, NULL, &cur, &e));
        gen[i] = cur;
    }
    result("parity_logits_vs_hf_f32", rel_err(l32->data, lg, (size_t)n * V), "rel");
    result("parity_logits_vs_hf_bf16", rel_err(l16->data, lg, (size_t)n * V), "rel");
    result("parity_hf_bf16_vs_hf_f32", rel_err(l32->data, l16->data, (size_t)n * V), "rel");
    result("parity_greedy_match_f32", prefix_match(gen, g32->data, n_gen), "tokens");
    result("parity_greedy_match_bf16", prefix_match(gen, g16->data, n_gen), "tokens");
    result("parity_greedy_len", n_gen, "tokens");
    free(lg);
    free(gen);
    mer_qwen2_cuda_free(m);
    mer_weights_close(w);
    mer_weights_close(ex);
}

int main(int argc, char **argv) {
    if (mer_cuda_device_count() == 0) {
        printf("SKIP bench_gpu: no CUDA device\n");
        return 0;
    }
    mer_cuda *c = NULL;
    TRY(mer_cuda_init(0, &c, &e));
    printf("device: %s\n", mer_cuda_name(c));
    int all = argc < 2;
    for (int i = 1; i < argc || all; i++) {
        const char *what = all ? "all" : argv[i];
        if (!strcmp(what, "ceil") || all) bench_ceil(c);
        if (!strcmp(what, "gemv") || all) bench_gemv(c);
        if (!strcmp(what, "small") || all) bench_small(c);
        if (!strcmp(what, "model") || all) bench_model();
        if (!strcmp(what, "leak") || all) bench_leak();
        if (!strcmp(what, "parity") && i + 1 < argc) bench_parity(argv[++i]);
        if (!strcmp(what, "qgemv")) bench_qgemv(c);
        if (!strcmp(what, "quant")) bench_quant(c);
        if (all) break;
    }
    mer_cuda_free(c);
    return 0;
}

#else

int main(void) {
    printf("SKIP bench_gpu: built without CUDA (make CUDA=1)\n");
    return 0;
}

#endif
