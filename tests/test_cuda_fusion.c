/* test_cuda_fusion.c - AffectGPT's fusion layers on a CUDA device (models/affectgpt_cuda.c,
 * kernels/cuda/cuda_fusion.cu); without a device (or in a build without CUDA) it prints a SKIP line and
 * passes (and checks that the API answers MER_E_UNSUPPORTED). Errors are the largest absolute difference
 * over an output row divided by the row's largest reference value.
 *   - the tiny AffectGPT fixture (tests/fixtures/models/affectgpt_tiny): the f32 path against the HF
 *     outputs stored there (frame_llm, audio_llm, multi_llm from HF's features; 1e-4, as test_affectgpt
 *     holds the CPU to) and against the CPU fusion (models/affectgpt.c, itself tested against HF) at 1e-5;
 *   - random fusion layers at the real widths (CLIP-L 768, HuBERT-L 1024, Qwen2.5-7B 3584) and at odd
 *     widths (the device pads to multiples of 8), 8/8 and 5/3 frames/clips: f32 path against the CPU at
 *     1e-5; the bf16 path against a float64 model of bf16 arithmetic written here from the spec's formulas
 *     (§4.3) with the roundings affectgpt_cuda.h names (the weights of the products, each product's
 *     input), within one bf16 step (2^-8), and against the CPU's f32 within that model's
 *     own distance from the CPU plus one bf16 step: the bound is what bf16 rounding gives on these inputs;
 *   - graph replay (second and later calls) gives the eager call's bits; bad counts are MER_E_ARG. */
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "io/weights.h"
#include "kernels/cuda/cuda_backend.h"
#include "models/affectgpt.h"
#include "models/affectgpt_cuda.h"
#include "models/random_models.h"

#define AG FIXTURES "/models/affectgpt_tiny"

#if MER_CUDA
#include "cuda_open.h"

static mer_err e;
#define DO(call) CHECK_MSG((call) == MER_OK, "%s: %s", #call, e.msg)
#define BF16_STEP (1.0 / 256) /* 2^-8: one bf16 rounding step relative to the value */

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* uniform [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}
static float *rand_vec(size_t n, float a) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = a * frand();
    return p;
}
static double bfr(double x) { return mer_bf16_to_fp32(mer_fp32_to_bf16((float)x)); }

/* y = W x + b in float64, with W's elements (and x, by the caller) rounded to bf16. */
static void lin_bf16(const mer_linear *l, const double *x, double *y) {
    for (int o = 0; o < l->n_out; o++) {
        double s = l->b[o];
        for (int j = 0; j < l->n_in; j++) s += bfr(l->w[(size_t)o * l->n_in + j]) * x[j];
        y[o] = s;
    }
}

/* The spec's fusion (§4.3) in float64 with bf16 roundings where the device's bf16 path rounds: the
 * scores and sums over time exact (f32 weights), the products' weights and inputs rounded (hv, ha and
 * attention_mlp's output kept in f32 before that); out [3][D]. */
static void fuse_bf16_model(const mer_affectgpt_fusion *f, const float *H, int nf, const float *A, int nc,
                            float *out) {
    const int dv = f->d_visual, da = f->d_audio, dm = f->d_multi, dh = f->d_hidden, D = f->d_llm;
    const int dmax = dv > da ? dv : da;
    double *pool = calloc((size_t)dmax, sizeof(double)), *mean = calloc((size_t)dmax, sizeof(double));
    double *y = calloc((size_t)D, sizeof(double)), *hvha = calloc((size_t)2 * dm, sizeof(double));
    double *hid = calloc((size_t)dh, sizeof(double)), w[2], *m = calloc((size_t)dm, sizeof(double));
    for (int s = 0; s < 2; s++) {
        const float *X = s ? A : H;
        const int n = s ? nc : nf, d = s ? da : dv;
        const mer_linear *att = s ? &f->audio_att : &f->video_att, *proj = s ? &f->audio_proj : &f->video_proj;
        const mer_linear *multi = s ? &f->multi_audio : &f->multi_video;
        for (int j = 0; j < d; j++) pool[j] = mean[j] = 0;
        for (int t = 0; t < n; t++) {
            double a = att->b[0];
            for (int j = 0; j < d; j++) a += (double)att->w[j] * X[(size_t)t * d + j];
            for (int j = 0; j < d; j++) {
                pool[j] += a * X[(size_t)t * d + j];
                mean[j] += X[(size_t)t * d + j];
            }
        }
        for (int j = 0; j < d; j++) pool[j] = bfr(pool[j]), mean[j] = bfr(mean[j] / n);
        lin_bf16(proj, pool, y);
        for (int o = 0; o < D; o++) out[(size_t)s * D + o] = (float)y[o];
        lin_bf16(multi, mean, hvha + (size_t)s * dm);
        for (int j = 0; j < dm; j++) hvha[(size_t)s * dm + j] = (float)hvha[(size_t)s * dm + j]; /* kept f32 */
    }
    double *hvha_b = calloc((size_t)2 * dm, sizeof(double));
    for (int j = 0; j < 2 * dm; j++) hvha_b[j] = bfr(hvha[j]);
    lin_bf16(&f->att_mlp, hvha_b, hid);
    for (int j = 0; j < dh; j++) hid[j] = bfr((float)hid[j]);
    lin_bf16(&f->fc_att, hid, w);
    for (int j = 0; j < dm; j++) m[j] = bfr((float)w[0] * hvha[j] + (float)w[1] * hvha[dm + j]);
    lin_bf16(&f->multi_proj, m, y);
    for (int o = 0; o < D; o++) out[(size_t)2 * D + o] = (float)y[o];
    free(pool), free(mean), free(y), free(hvha), free(hvha_b), free(hid), free(m);
}

static const char *const row_name[3] = {"visual", "audio", "multi"};

/* The device fusion (f32 and bf16) against the CPU on H [nf][dv], A [nc][da]. */
static void check_inputs(mer_cuda *c, const mer_affectgpt_fusion *f, const char *what, const float *H, int nf,
                         const float *A, int nc) {
    const int D = f->d_llm;
    float *cpu = malloc((size_t)3 * D * sizeof *cpu), *dev = malloc((size_t)3 * D * sizeof *dev);
    float *model = malloc((size_t)3 * D * sizeof *model), *again = malloc((size_t)3 * D * sizeof *again);
    mer_threadpool *pool = NULL;
    mer_cpu_ctx *ctx = NULL;
    DO(mer_threadpool_init(2, &pool, &e));
    DO(mer_cpu_ctx_init(pool, MER_ISA_AUTO, &ctx, &e));
    DO(mer_affectgpt_fuse(f, ctx, H, nf, A, nc, cpu, cpu + D, cpu + 2 * D, &e));
    fuse_bf16_model(f, H, nf, A, nc, model);
    for (int k = 0; k < 2; k++) {
        const mer_dtype wt = k ? MER_DTYPE_BF16 : MER_DTYPE_F32;
        mer_affectgpt_cuda *g = NULL;
        DO(mer_affectgpt_cuda_from_fusion(f, c, nf, nc, wt, &g, &e));
        if (!g) continue;
        DO(mer_affectgpt_cuda_fuse(g, H, nf, A, nc, dev, dev + D, dev + 2 * D, &e));
        for (int r = 0; r < 3; r++) {
            const float *d = dev + (size_t)r * D, *ref = cpu + (size_t)r * D, *mo = model + (size_t)r * D;
            double ec = max_rel_err(d, ref, (size_t)D);
            if (!k) {
                CHECK_MSG(ec <= 1e-5, "%s f32 %s: rel err %.3g against the CPU", what, row_name[r], ec);
                printf("%s f32 %s: %.2g against the CPU\n", what, row_name[r], ec);
            } else {
                double em = max_rel_err(d, mo, (size_t)D), drift = max_rel_err(mo, ref, (size_t)D);
                CHECK_MSG(em <= BF16_STEP, "%s bf16 %s: rel err %.3g against the bf16 model", what, row_name[r], em);
                CHECK_MSG(ec <= drift + BF16_STEP, "%s bf16 %s: rel err %.3g against the CPU (the bf16 model's: %.3g)",
                          what, row_name[r], ec, drift);
                printf("%s bf16 %s: %.2g against the bf16 model, %.2g against the CPU (model's own %.2g)\n", what,
                       row_name[r], em, ec, drift);
            }
        }
        /* the next calls replay a captured graph: the same bits (the pinned staging refilled each time) */
        for (int rep = 0; rep < 3; rep++) {
            memset(again, 0, (size_t)3 * D * sizeof *again);
            DO(mer_affectgpt_cuda_fuse(g, H, nf, A, nc, again, again + D, again + 2 * D, &e));
            CHECK_MSG(!memcmp(again, dev, (size_t)3 * D * sizeof *dev), "%s %s: call %d differs from the first", what,
                      k ? "bf16" : "f32", rep + 2);
        }
        /* NULL outputs are not written */
        memset(again, 0, (size_t)3 * D * sizeof *again);
        DO(mer_affectgpt_cuda_fuse(g, H, nf, A, nc, NULL, again + D, NULL, &e));
        CHECK(again[0] == 0 && again[2 * D] == 0 && !memcmp(again + D, dev + D, (size_t)D * sizeof *dev));
        mer_affectgpt_cuda_free(g);
    }
    mer_cpu_ctx_free(ctx);
    mer_threadpool_free(pool);
    free(cpu), free(dev), free(model), free(again);
}

static float *tensor_copy(const mer_weights *w, const char *name, size_t want) {
    const mer_wtensor *t = mer_weights_find(w, name);
    CHECK_MSG(t && t->dtype == MER_DTYPE_F32 && t->n_bytes == want * 4, "fixture tensor %s (%zu floats)", name, want);
    if (!t || t->n_bytes != want * 4) return NULL;
    float *p = malloc(want * 4);
    memcpy(p, t->data, want * 4);
    return p;
}

/* The tiny fixture: HF's features in, HF's fused embeddings out. */
static void check_fixture(mer_cuda *c) {
    mer_weights *ck = NULL;
    mer_affectgpt_fusion f;
    DO(mer_weights_open(AG "/checkpoint_000035_loss_0.000.pth", &ck, &e));
    if (!ck) return;
    DO(mer_affectgpt_fusion_load(ck, "", &f, &e));
    const int D = f.d_llm;
    const char *files[2] = {AG "/expected_face.safetensors", AG "/expected_frame.safetensors"};
    for (int fi = 0; fi < 2; fi++) {
        mer_weights *ex = NULL;
        DO(mer_weights_open(files[fi], &ex, &e));
        if (!ex) continue;
        float *H = tensor_copy(ex, "visual_feats", (size_t)8 * f.d_visual);
        float *A = tensor_copy(ex, "audio_feats", (size_t)8 * f.d_audio);
        const char *names[3] = {"frame_llm", "audio_llm", "multi_llm"};
        float *ref[3];
        for (int r = 0; r < 3; r++) ref[r] = tensor_copy(ex, names[r], (size_t)D);
        if (H && A && ref[0] && ref[1] && ref[2]) {
            const char *what = fi ? "fixture frame" : "fixture face";
            mer_affectgpt_cuda *g = NULL;
            float *dev = malloc((size_t)3 * D * sizeof *dev);
            DO(mer_affectgpt_cuda_from_fusion(&f, c, 8, 8, MER_DTYPE_F32, &g, &e));
            if (g) {
                DO(mer_affectgpt_cuda_fuse(g, H, 8, A, 8, dev, dev + D, dev + 2 * D, &e));
                for (int r = 0; r < 3; r++) {
                    double eh = max_rel_err(dev + (size_t)r * D, ref[r], (size_t)D);
                    CHECK_MSG(eh <= 1e-4, "%s f32 %s: rel err %.3g against HF", what, names[r], eh);
                    printf("%s f32 %s: %.2g against HF\n", what, names[r], eh);
                }
            }
            mer_affectgpt_cuda_free(g);
            free(dev);
            check_inputs(c, &f, what, H, 8, A, 8);
        }
        free(H), free(A);
        for (int r = 0; r < 3; r++) free(ref[r]);
        mer_weights_close(ex);
    }
    mer_affectgpt_fusion_free(&f);
    mer_weights_close(ck);
}

/* Random fusion layers of widths dv, da -> D with random features (uniform in [-1, 1), as CLIP's image
 * embeddings and HuBERT's pooled states are of order 1). */
static void check_random(mer_cuda *c, const char *what, int dv, int da, int D, int nf, int nc, uint64_t seed) {
    mer_weights *w = NULL;
    mer_affectgpt_fusion f;
    DO(mer__random_fusion(seed, dv, da, D, &w, &e));
    if (!w) return;
    DO(mer_affectgpt_fusion_load(w, "", &f, &e));
    float *H = rand_vec((size_t)nf * dv, 1.f), *A = rand_vec((size_t)nc * da, 1.f);
    check_inputs(c, &f, what, H, nf, A, nc);
    free(H), free(A);
    mer_affectgpt_fusion_free(&f);
    mer_weights_close(w);
}

static void check_args(mer_cuda *c) {
    mer_weights *w = NULL;
    mer_affectgpt_fusion f;
    DO(mer__random_fusion(3, 16, 24, 32, &w, &e));
    if (!w) return;
    DO(mer_affectgpt_fusion_load(w, "", &f, &e));
    mer_affectgpt_cuda *g = NULL;
    CHECK(mer_affectgpt_cuda_from_fusion(&f, c, 8, 8, MER_DTYPE_F16, &g, &e) == MER_E_UNSUPPORTED && !g);
    CHECK(mer_affectgpt_cuda_from_fusion(&f, c, 0, 8, MER_DTYPE_F32, &g, &e) == MER_E_ARG && !g);
    DO(mer_affectgpt_cuda_from_fusion(&f, c, 8, 8, MER_DTYPE_BF16, &g, &e));
    float H[9 * 16] = {0}, A[9 * 24] = {0}, out[32];
    CHECK(mer_affectgpt_cuda_fuse(g, H, 0, A, 8, out, out, out, &e) == MER_E_ARG);
    CHECK(mer_affectgpt_cuda_fuse(g, H, 9, A, 8, out, out, out, &e) == MER_E_ARG);
    CHECK(mer_affectgpt_cuda_fuse(g, H, 8, A, 9, out, out, out, &e) == MER_E_ARG);
    CHECK(mer_affectgpt_cuda_fuse(g, NULL, 8, A, 8, out, out, out, &e) == MER_E_ARG);
    CHECK_MSG(strstr(e.msg, "NULL") != NULL, "message: %s", e.msg);
    /* graphs off: the same numbers eagerly */
    float o1[3 * 32], o2[3 * 32];
    for (int i = 0; i < 8 * 16; i++) H[i] = frand();
    for (int i = 0; i < 8 * 24; i++) A[i] = frand();
    DO(mer_affectgpt_cuda_fuse(g, H, 8, A, 8, o1, o1 + 32, o1 + 64, &e));
    DO(mer_affectgpt_cuda_fuse(g, H, 8, A, 8, o1, o1 + 32, o1 + 64, &e)); /* captured */
    mer_affectgpt_cuda_set_graph(g, 0);
    DO(mer_affectgpt_cuda_fuse(g, H, 8, A, 8, o2, o2 + 32, o2 + 64, &e));
    CHECK(!memcmp(o1, o2, sizeof o1));
    mer_affectgpt_cuda_free(g);
    mer_affectgpt_fusion_free(&f);
    mer_weights_close(w);
}

static void run(void) {
    mer_cuda *c = test_cuda_open("test_cuda_fusion");
    if (!c) return;
    check_fixture(c);
    check_random(c, "real widths 8/8", 768, 1024, 3584, 8, 8, 11);
    check_random(c, "real widths 5/3", 768, 1024, 3584, 5, 3, 12);
    check_random(c, "odd widths 7/8", 13, 20, 27, 7, 8, 13);
    check_args(c);
    mer_cuda_free(c);
}

#else /* !MER_CUDA */

static void run(void) {
    mer_err e = {0};
    mer_affectgpt_fusion f;
    memset(&f, 0, sizeof f);
    mer_affectgpt_cuda *g = NULL;
    CHECK(mer_affectgpt_cuda_from_fusion(&f, NULL, 8, 8, MER_DTYPE_BF16, &g, &e) == MER_E_UNSUPPORTED && g == NULL);
    float x = 0;
    CHECK(mer_affectgpt_cuda_fuse(NULL, &x, 1, &x, 1, NULL, NULL, NULL, &e) == MER_E_UNSUPPORTED);
    CHECK(max_rel_err(&x, &x, 1) == 0);
    printf("SKIP test_cuda_fusion: built without CUDA (make CUDA=1)\n");
}

#endif
