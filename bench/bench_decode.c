/* bench_decode.c - Qwen2 decode speed at the Qwen2.5-7B shape (hidden 3584, 28 layers, 28 heads, 4 KV
 * heads, head dim 128, intermediate 18944, vocab 152064, untied lm_head) with random weights built in
 * memory directly in q8_0 and q4_0 (no file is written), beside the memory-bandwidth bound measured in
 * the same run: bound = streaming-read bandwidth / bytes of weights a decode step reads. The bar is
 * decode >= 0.7 x bound. Also reports peak RSS (getrusage) against weights + KV cache + arena.
 *
 * Usage: bench_decode [N_LAYERS] (default 28; fewer when MemAvailable cannot hold the model, in which
 * case the per-token figures are also given scaled to 28 layers, and the output says so). Each figure is
 * the best of several runs: the machine is shared. */
#include "models/qwen2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double loadavg(void) {
    FILE *f = fopen("/proc/loadavg", "r");
    double l = -1;
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

static double peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}

static long mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

// --- random weights, directly quantised --------------------------------------------------------------

typedef struct buf_list {
    void **p;
    size_t n, cap;
    size_t bytes;
} buf_list;

typedef struct fill_job {
    uint8_t *dst;
    size_t n_rows, row_bytes;
    mer_dtype t;
    uint64_t seed;
} fill_job;

static uint64_t xs(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static void fill_task(void *arg, int ith, int nth) {
    fill_job *j = arg;
    long r0, r1;
    mer_split_range((long)j->n_rows, ith, nth, &r0, &r1);
    uint64_t s = j->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)r0 * 0x2545F4914F6CDD1DULL + 1;
    size_t bb = mer_dtype_block_bytes(j->t);
    for (long r = r0; r < r1; r++) {
        uint8_t *row = j->dst + (size_t)r * j->row_bytes;
        for (size_t o = 0; o < j->row_bytes; o += 8) { /* random bytes, then valid scales */
            uint64_t v = xs(&s);
            memcpy(row + o, &v, j->row_bytes - o < 8 ? j->row_bytes - o : 8);
        }
        for (size_t o = 0; o < j->row_bytes; o += bb) {
            uint16_t d = mer_fp32_to_fp16(0.002f + 0.001f * (float)(xs(&s) & 1023) / 1024.0f);
            memcpy(row + o, &d, 2);
            if (j->t == MER_DTYPE_Q8_0)
                for (int i = 0; i < MER_QK; i++)
                    if ((int8_t)row[o + 2 + (size_t)i] == -128) row[o + 2 + (size_t)i] = 0x81;
        }
    }
}

static void *add_mat(mer_weights *w, buf_list *bl, mer_threadpool *pool, const char *name, mer_dtype t, int n_out,
                     int n_in, uint64_t seed) {
    size_t rb = mer_dtype_row_bytes(t, (size_t)n_in), n = rb * (size_t)n_out;
    uint8_t *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) return NULL;
    fill_job j = {p, (size_t)n_out, rb, t, seed};
    mer_threadpool_run(pool, fill_task, &j);
    int64_t shape[2] = {n_out, n_in};
    if (mer__weights_add_tensor(w, name, strlen(name), t, 2, shape, p, n, NULL)) {
        free(p);
        return NULL;
    }
    bl->p[bl->n++] = p;
    bl->bytes += n;
    return p;
}

static void *add_vec(mer_weights *w, buf_list *bl, const char *name, int n, float base, uint64_t seed) {
    float *p = aligned_alloc(64, ((size_t)n * 4 + 63) / 64 * 64);
    if (!p) return NULL;
    uint64_t s = seed + 1;
    for (int i = 0; i < n; i++) p[i] = base + 0.01f * ((float)(xs(&s) & 1023) / 512.0f - 1.0f);
    int64_t shape[1] = {n};
    if (mer__weights_add_tensor(w, name, strlen(name), MER_DTYPE_F32, 1, shape, p, (size_t)n * 4, NULL)) {
        free(p);
        return NULL;
    }
    bl->p[bl->n++] = p;
    bl->bytes += (size_t)n * 4;
    return p;
}

static void close_bufs(mer_weights *w) {
    buf_list *bl = w->impl;
    for (size_t i = 0; i < bl->n; i++) free(bl->p[i]);
    free(bl->p);
    free(bl);
}

/* A Qwen2 model of shape hp with random weights of type t, built in memory. */
static mer_qwen2 *build(const mer__qwen2_hp *hp, mer_dtype t, mer_threadpool *pool, size_t *total_bytes) {
    mer_weights *w = NULL;
    mer_err err = {0};
    if (mer__weights_new(MER_WFORMAT_SAFETENSORS, "bench (random weights)", &w, &err)) return NULL;
    buf_list *bl = calloc(1, sizeof *bl);
    bl->cap = (size_t)hp->n_layer * 16 + 8;
    bl->p = calloc(bl->cap, sizeof *bl->p);
    w->impl = bl, w->close_impl = close_bufs;
    char name[160];
    int ok = add_mat(w, bl, pool, "model.embed_tokens.weight", t, hp->n_vocab, hp->n_embd, 1) &&
             add_mat(w, bl, pool, "lm_head.weight", t, hp->n_vocab, hp->n_embd, 2) &&
             add_vec(w, bl, "model.norm.weight", hp->n_embd, 1.0f, 3);
    for (int i = 0; ok && i < hp->n_layer; i++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", i);
        ok = ok && add_vec(w, bl, name, hp->n_embd, 1.0f, 10 + (uint64_t)i);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", i);
        ok = ok && add_vec(w, bl, name, hp->n_embd, 1.0f, 20 + (uint64_t)i);
        for (int p = 0; ok && p < MER__N_PROJ; p++) {
            int n_out, n_in;
            mer__qwen2_proj_shape(hp, p, &n_out, &n_in);
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", i, mer__qwen2_proj_name(p));
            ok = add_mat(w, bl, pool, name, t, n_out, n_in, 1000 + (uint64_t)i * 16 + (uint64_t)p) != NULL;
            if (ok && p <= MER__V) {
                snprintf(name, sizeof name, "model.layers.%d.%s.bias", i, mer__qwen2_proj_name(p));
                ok = add_vec(w, bl, name, n_out, 0.0f, 5000 + (uint64_t)i * 16 + (uint64_t)p) != NULL;
            }
        }
    }
    *total_bytes = bl->bytes;
    if (!ok || mer__weights_finish(w, &err)) {
        fprintf(stderr, "bench_decode: out of memory building the model\n");
        mer_weights_close(w);
        return NULL;
    }
    mer_qwen2 *m = NULL;
    if (mer__qwen2_from_weights(w, hp, "the 7B shape", NULL, &m, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
        return NULL;
    }
    return m;
}

// --- streaming-read bandwidth ------------------------------------------------------------------------

typedef struct read_job {
    void **p;
    size_t *n;
    size_t count;
    double sink[64];
} read_job;

#if defined(__x86_64__)
__attribute__((target("avx2"))) static double sum_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        a0 = _mm256_xor_si256(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_xor_si256(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_xor_si256(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    uint64_t r[4];
    _mm256_storeu_si256((__m256i *)r, a0);
    return (double)(r[0] ^ r[1] ^ r[2] ^ r[3]);
}
#endif

static double sum_scalar(const uint8_t *p, size_t n) {
    uint64_t a = 0, b = 0;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        uint64_t x, y;
        memcpy(&x, p + i, 8), memcpy(&y, p + i + 8, 8);
        a ^= x, b ^= y;
    }
    return (double)(a ^ b);
}

static void read_task(void *arg, int ith, int nth) {
    read_job *j = arg;
    double acc = 0;
    for (size_t b = 0; b < j->count; b++) {
        long i0, i1;
        mer_split_range((long)(j->n[b] / 4096), ith, nth, &i0, &i1); /* whole pages per thread */
        const uint8_t *p = (const uint8_t *)j->p[b] + (size_t)i0 * 4096;
        size_t n = (size_t)(i1 - i0) * 4096;
#if defined(__x86_64__)
        if (__builtin_cpu_supports("avx2")) acc += sum_avx2(p, n);
        else acc += sum_scalar(p, n);
#else
        acc += sum_scalar(p, n);
#endif
    }
    j->sink[ith & 63] += acc;
}

/* Reads every weight buffer of the model once per pass on all threads; best pass in bytes/s. */
static double bandwidth(mer_threadpool *pool, mer_weights *w, int passes) {
    read_job j = {0};
    buf_list *bl = w->impl;
    j.p = bl->p, j.count = bl->n;
    j.n = malloc(bl->n * sizeof *j.n);
    size_t total = 0;
    for (size_t i = 0; i < bl->n; i++) {
        /* the tensor's size, from the weights view (same order as the buffers) */
        j.n[i] = 0;
    }
    for (size_t t = 0; t < w->n_tensors; t++)
        for (size_t i = 0; i < bl->n; i++)
            if (w->tensors[t].data == bl->p[i]) j.n[i] = w->tensors[t].n_bytes / 4096 * 4096;
    for (size_t i = 0; i < bl->n; i++) { /* at most 2 GiB per pass: enough to leave every cache behind */
        if (total + j.n[i] > ((size_t)2 << 30)) j.n[i] = 0;
        total += j.n[i];
    }
    double best = 0;
    for (int r = 0; r < passes; r++) {
        double t0 = now();
        mer_threadpool_run(pool, read_task, &j);
        double bw = (double)total / (now() - t0);
        if (bw > best) best = bw;
    }
    free(j.n);
    return best;
}

// --- decode ------------------------------------------------------------------------------------------

typedef struct result {
    double tok_s, bound_tok_s, bw, weight_bytes, total_bytes, kv_bytes, rss, busy;
} result;

static int run_one(const mer__qwen2_hp *hp, mer_dtype t, int n_threads, result *out) {
    mer_threadpool *pool = NULL;
    if (mer_threadpool_init(n_threads, &pool, NULL)) return -1;
    double t0 = now();
    size_t total = 0;
    mer_qwen2 *m = build(hp, t, pool, &total);
    if (!m) {
        mer_threadpool_free(pool);
        return -1;
    }
    double t_build = now() - t0;
    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_ctx = 256, cp.n_batch = 16, cp.n_threads = n_threads;
    mer_qwen2_ctx *c = NULL;
    mer_err err = {0};
    if (mer_qwen2_ctx_init(m, &cp, &c, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
        mer_qwen2_free(m);
        mer_threadpool_free(pool);
        return -1;
    }
    double bw = bandwidth(pool, m->w, 2);
    int32_t prompt[1] = {151644};
    double best = 1e30, best_cpu = 0;
    const int rounds = 2, steps = 4;
    for (int r = 0; r < rounds; r++) {
        mer_qwen2_ctx_reset(c);
        if (mer_qwen2_prefill(c, prompt, 1, &err)) break;
        int32_t id = 42;
        for (int s = 0; s < steps; s++) {
            double ts = now(), cs = cpu_now();
            if (mer_qwen2_prefill(c, &id, 1, &err)) break;
            double dt = now() - ts, dc = cpu_now() - cs;
            if (dt < best) best = dt, best_cpu = dc;
            id = (id * 7919 + 13) % hp->n_vocab;
        }
    }
    /* bandwidth again after decoding (the machine is shared: keep the better of the two) */
    double bw2 = bandwidth(pool, m->w, 1);
    if (bw2 > bw) bw = bw2;
    mer_qwen2_info info;
    mer_qwen2_get_info(m, &info);
    out->tok_s = 1.0 / best;
    out->busy = best_cpu / (best * n_threads);
    out->bw = bw;
    out->weight_bytes = (double)info.weight_bytes;
    out->bound_tok_s = bw / (double)info.weight_bytes;
    out->total_bytes = (double)total;
    out->kv_bytes = 2.0 * hp->n_layer * (double)cp.n_ctx * hp->n_kv_head * hp->head_dim * 4;
    out->rss = peak_rss_bytes();
    printf("  %-5s built in %.1f s (%.2f GiB of weights in memory, %.2f GiB read per token)\n", mer_dtype_name(t),
           t_build, (double)total / (1 << 30), out->weight_bytes / (1 << 30));
    mer_qwen2_ctx_free(c);
    mer_qwen2_free(m);
    mer_threadpool_free(pool);
    return 0;
}

int main(int argc, char **argv) {
    mer__qwen2_hp hp = {.n_vocab = 152064, .n_embd = 3584, .n_layer = 28, .n_head = 28, .n_kv_head = 4,
                        .head_dim = 128, .n_ff = 18944, .n_ctx_train = 32768, .rope_theta = 1e6f,
                        .rms_eps = 1e-6f, .tied = 0};
    const int full_layers = hp.n_layer;
    if (argc > 1) hp.n_layer = atoi(argv[1]);
    /* q8_0 is the larger: fit it in what the machine has free now, with 1.5 GiB to spare */
    double per_layer = 0, fixed = 2.0 * hp.n_vocab * (double)mer_dtype_row_bytes(MER_DTYPE_Q8_0, (size_t)hp.n_embd);
    for (int p = 0; p < MER__N_PROJ; p++) {
        int o, i;
        mer__qwen2_proj_shape(&hp, p, &o, &i);
        per_layer += (double)o * (double)mer_dtype_row_bytes(MER_DTYPE_Q8_0, (size_t)i);
    }
    long avail = mem_available();
    if (avail > 0 && argc <= 1) {
        double room = (double)avail - 1.5 * (1 << 30) - fixed;
        int fit = room > 0 ? (int)(room / per_layer) : 1;
        if (fit < hp.n_layer) hp.n_layer = fit < 1 ? 1 : fit;
    }
    if (hp.n_layer < 1 || hp.n_layer > full_layers) {
        fprintf(stderr, "bench_decode: layers must be in [1, %d]\n", full_layers);
        return 1;
    }
    const mer_kernels *k = mer_kernels_get(MER_ISA_AUTO);
    int n_threads = 0;
    mer_threadpool *tmp = NULL;
    mer_threadpool_init(0, &tmp, NULL);
    n_threads = mer_threadpool_n_threads(tmp);
    mer_threadpool_free(tmp);
    printf("load average at start: %.1f on %ld CPUs\n", loadavg(), sysconf(_SC_NPROCESSORS_ONLN));
    printf("bench_decode: Qwen2.5-7B shape (hidden 3584, %d of 28 layers, 28/4 heads, ff 18944, vocab 152064), "
           "random weights, %d threads, kernels %s\n", hp.n_layer, n_threads, k ? k->name : "?");
    if (hp.n_layer < full_layers)
        printf("  NOTE: %d layers only (%s); per-token figures are also given scaled to 28 layers\n", hp.n_layer,
               argc > 1 ? "as asked on the command line" : "what fits in the memory free now");
    static const mer_dtype TYPES[] = {MER_DTYPE_Q4_0, MER_DTYPE_Q8_0}; /* smaller first: peak RSS per type */
    int fail = 0;
    for (size_t ti = 0; ti < 2; ti++) {
        result r;
        if (run_one(&hp, TYPES[ti], n_threads, &r)) {
            printf("  %s: could not build the model\n", mer_dtype_name(TYPES[ti]));
            fail = 1;
            continue;
        }
        double ratio = r.tok_s / r.bound_tok_s;
        printf("  %-5s decode %.3f tok/s (%.1f ms/token) | bandwidth %.2f GB/s -> bound %.3f tok/s | ratio %.2f "
               "(bar 0.70)%s\n",
               mer_dtype_name(TYPES[ti]), r.tok_s, 1e3 / r.tok_s, r.bw / 1e9, r.bound_tok_s, ratio,
               ratio >= 0.7 ? "" : "  BELOW BAR");
        printf("  %-5s our threads ran %.0f%% of that step's wall time x %d threads (load average now %.1f)%s\n",
               mer_dtype_name(TYPES[ti]), 100 * r.busy, n_threads, loadavg(),
               r.busy < 0.8 ? ": the machine is shared, the figures above are depressed by other processes" : "");
        if (hp.n_layer < full_layers) {
            /* per-token time scales with the bytes read: (lm_head + L layers) -> (lm_head + 28 layers) */
            double lm = (double)hp.n_vocab * (double)mer_dtype_row_bytes(TYPES[ti], (size_t)hp.n_embd);
            double scale = (r.weight_bytes - lm) / hp.n_layer * full_layers + lm;
            printf("  %-5s scaled to 28 layers: %.3f tok/s (bound %.3f tok/s)\n", mer_dtype_name(TYPES[ti]),
                   r.tok_s * r.weight_bytes / scale, r.bw / scale);
        }
        printf("  %-5s peak RSS %.2f GiB vs weights %.2f GiB + KV cache %.3f GiB = %.2f GiB (ratio %.3f)\n",
               mer_dtype_name(TYPES[ti]), r.rss / (1 << 30), r.total_bytes / (1 << 30), r.kv_bytes / (1 << 30),
               (r.total_bytes + r.kv_bytes) / (1 << 30), r.rss / (r.total_bytes + r.kv_bytes));
    }
    return fail;
}
