/* test_qwen2.c - the Qwen2 decoder against Hugging Face transformers (fixtures made by
 * scripts/gpu/gen_fixtures.py: logits at every position and greedy generation of 32 tokens, for an
 * untied and a tied tiny model and for the untied one with a LoRA adapter), loaded from safetensors and
 * from GGUF files our converter writes; KV-cache decoding against the batched prefill; the sampler's
 * processors against a float64 re-statement of HF's formulas and its draws against the documented PRNG;
 * generation's stop ids and stop strings; and the errors (shape contradictions, a prompt longer than the
 * context, a missing tokenizer). */
#include "test.h"

#include "io/safetensors.h"
#include "io/weights.h"
#include "mer.h"
#include "models/tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define QDIR FIXTURES "/models/qwen2_tiny"
#define QTIED FIXTURES "/models/qwen2_tiny_tied"
#define QLORA FIXTURES "/models/qwen2_lora"
#define QQUANT FIXTURES "/models/qwen2_quant/expected.safetensors"

/* Quantised weights are checked against scripts/make_qwen2_quant_fixtures.py: a float64 forward with
 * ggml's reference quantisers (weights, and activations to q8_0 before each product); HF's f32 logits
 * are only a loose bound there (q4_0 on this tiny random model is far from f32: 0.62 rel). Our f32
 * activations differ from the float64 ones by rounding, which now and then moves an activation across
 * a q8_0 rounding boundary (one quantisation step, a discrete change): so most positions must agree to
 * float precision (QUANT_EXACT) and every position within QUANT_FLIP. */
#define QUANT_EXACT 1e-5
#define QUANT_FLIP 5e-2

typedef struct expected {
    mer_weights *w;
    const int32_t *ids;
    int n_ids;
    const float *logits; /* [n_ids][V] */
    int n_vocab;
    const int32_t *greedy;
    int n_greedy;
} expected;

static int load_expected(const char *path, expected *e) {
    memset(e, 0, sizeof *e);
    mer_err err = {0};
    if (mer_weights_open(path, &e->w, &err)) {
        printf("FAIL open %s: %s\n", path, err.msg);
        return -1;
    }
    const mer_wtensor *ids = mer_weights_find(e->w, "ids"), *lg = mer_weights_find(e->w, "logits"),
                      *gr = mer_weights_find(e->w, "greedy");
    if (!ids || !lg || !gr || ids->dtype != MER_DTYPE_I32 || lg->dtype != MER_DTYPE_F32 || gr->dtype != MER_DTYPE_I32)
        return -1;
    e->ids = ids->data, e->n_ids = (int)ids->shape[0];
    e->logits = lg->data, e->n_vocab = (int)lg->shape[1];
    e->greedy = gr->data, e->n_greedy = (int)gr->shape[0];
    return 0;
}

/* max |a - b| / max |b| over n values */
static double rel_err(const float *a, const float *b, size_t n) {
    double me = 0, mv = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > me || d != d) me = d;
        if (fabs(b[i]) > mv) mv = fabs(b[i]);
    }
    return mv > 0 ? me / mv : me;
}

static mer_qwen2 *load(const char *path, const char *wtype, const char *lora, int merge) {
    mer_qwen2_params p = mer_qwen2_default_params();
    p.wtype = wtype, p.lora_path = lora, p.lora_merge = merge;
    p.device = MER_DEVICE_CPU; /* the CPU reference path, also in a CUDA build (test_cuda_llm: the device) */
    mer_qwen2 *m = NULL;
    mer_err err = {0};
    mer_status st = mer_qwen2_load(path, &p, &m, &err);
    CHECK_MSG(st == MER_OK, "load %s (type %s, lora %s): %s", path, wtype ? wtype : "-", lora ? lora : "-", err.msg);
    return m;
}

static mer_qwen2_ctx *make_ctx(const mer_qwen2 *m, int n_ctx, int n_batch, int logits_all) {
    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_ctx = n_ctx, cp.n_batch = n_batch, cp.logits_all = logits_all, cp.n_threads = 2;
    mer_qwen2_ctx *c = NULL;
    mer_err err = {0};
    mer_status st = mer_qwen2_ctx_init(m, &cp, &c, &err);
    CHECK_MSG(st == MER_OK, "ctx init: %s", err.msg);
    return c;
}

/* Logits at every position against HF (rel <= tol_logits) and greedy tokens (identical when
 * exact_greedy; else the count of matching leading tokens is printed). */
static void parity(const char *label, mer_qwen2 *m, const expected *e, double tol, int exact_greedy) {
    if (!m) return;
    mer_qwen2_info info;
    mer_qwen2_get_info(m, &info);
    CHECK_EQ_INT(info.n_vocab, e->n_vocab);
    mer_qwen2_ctx *c = make_ctx(m, 64, 64, 1);
    if (!c) return;
    mer_err err = {0};
    CHECK_MSG(mer_qwen2_prefill(c, e->ids, (size_t)e->n_ids, &err) == MER_OK, "%s: prefill: %s", label, err.msg);
    int rows = 0;
    const float *lg = mer_qwen2_logits(c, &rows);
    CHECK_EQ_INT(rows, e->n_ids);
    if (lg && rows == e->n_ids) {
        double worst = 0;
        for (int t = 0; t < rows; t++) {
            double r = rel_err(lg + (size_t)t * (size_t)e->n_vocab, e->logits + (size_t)t * (size_t)e->n_vocab,
                               (size_t)e->n_vocab);
            if (r > worst) worst = r;
        }
        CHECK_MSG(worst <= tol, "%s: logits rel err %.3g > %.3g", label, worst, tol);
        printf("  %-34s logits rel err %.2e (tol %.0e)\n", label, worst, tol);
    }
    /* greedy generation of 32 tokens from a fresh cache */
    mer_qwen2_ctx_reset(c);
    mer_generate_params gp = mer_generate_default_params();
    gp.max_new_tokens = e->n_greedy;
    mer_generate_result res;
    mer_status st = mer_qwen2_generate(c, NULL, e->ids, (size_t)e->n_ids, &gp, NULL, NULL, &res, &err);
    CHECK_MSG(st == MER_OK, "%s: generate: %s", label, err.msg);
    CHECK_EQ_INT(res.n_ids, e->n_greedy);
    CHECK_EQ_INT(res.stop, MER_STOP_LENGTH);
    int same = 0;
    while (same < (int)res.n_ids && same < e->n_greedy && res.ids[same] == e->greedy[same]) same++;
    if (exact_greedy) CHECK_MSG(same == e->n_greedy, "%s: greedy tokens differ from HF at %d", label, same);
    printf("  %-34s greedy: %d/%d tokens identical to HF\n", label, same, e->n_greedy);
    free(res.ids);
    mer_qwen2_ctx_free(c);
}

/* Logits against the quantised reference: half the positions or more to QUANT_EXACT, all to QUANT_FLIP. */
static void quant_parity(const char *label, mer_qwen2 *m, const expected *e) {
    if (!m) return;
    mer_qwen2_ctx *c = make_ctx(m, 64, 64, 1);
    mer_err err = {0};
    if (!c) return;
    CHECK_MSG(mer_qwen2_prefill(c, e->ids, (size_t)e->n_ids, &err) == MER_OK, "%s: %s", label, err.msg);
    const float *lg = mer_qwen2_logits(c, NULL);
    int exact = 0;
    double worst = 0;
    for (int t = 0; lg && t < e->n_ids; t++) {
        double r = rel_err(lg + (size_t)t * (size_t)e->n_vocab, e->logits + (size_t)t * (size_t)e->n_vocab,
                           (size_t)e->n_vocab);
        exact += r <= QUANT_EXACT;
        if (r > worst) worst = r;
    }
    CHECK_MSG(2 * exact >= e->n_ids, "%s: only %d of %d positions agree to %g", label, exact, e->n_ids, QUANT_EXACT);
    CHECK_MSG(worst <= QUANT_FLIP, "%s: rel err %.3g > %g", label, worst, QUANT_FLIP);
    printf("  %-34s %d/%d positions to %.0e, worst %.2e\n", label, exact, e->n_ids, QUANT_EXACT, worst);
    mer_qwen2_ctx_free(c);
}

/* Decoding one token at a time gives the logits the batched prefill gives. Chunked prefill too. */
static void kv_cache_steps(mer_qwen2 *m, const expected *e) {
    mer_qwen2_ctx *full = make_ctx(m, 64, 64, 1), *step = make_ctx(m, 64, 64, 0), *chunk = make_ctx(m, 64, 5, 1);
    mer_err err = {0};
    if (!full || !step || !chunk) goto done;
    CHECK(mer_qwen2_prefill(full, e->ids, (size_t)e->n_ids, &err) == MER_OK);
    const float *all = mer_qwen2_logits(full, NULL);
    double worst = 0;
    for (int t = 0; t < e->n_ids; t++) {
        CHECK(mer_qwen2_prefill(step, e->ids + t, 1, &err) == MER_OK);
        int rows;
        const float *lg = mer_qwen2_logits(step, &rows);
        CHECK_EQ_INT(rows, 1);
        double r = rel_err(lg, all + (size_t)t * (size_t)e->n_vocab, (size_t)e->n_vocab);
        if (r > worst) worst = r;
    }
    CHECK_EQ_INT(mer_qwen2_ctx_n_past(step), e->n_ids);
    CHECK_MSG(worst <= 1e-5, "step-by-step decode vs prefill rel err %.3g", worst);
    printf("  KV-cache step decode vs prefill: rel err %.2e\n", worst);
    /* chunks of 5: the last chunk's rows are the last rows of the full prefill */
    CHECK(mer_qwen2_prefill(chunk, e->ids, (size_t)e->n_ids, &err) == MER_OK);
    int rows;
    const float *lg = mer_qwen2_logits(chunk, &rows);
    CHECK_EQ_INT(rows, e->n_ids % 5 ? e->n_ids % 5 : 5);
    double rc = rel_err(lg, all + (size_t)(e->n_ids - rows) * (size_t)e->n_vocab, (size_t)rows * (size_t)e->n_vocab);
    CHECK_MSG(rc <= 1e-5, "chunked prefill rel err %.3g", rc);
done:
    mer_qwen2_ctx_free(full);
    mer_qwen2_ctx_free(step);
    mer_qwen2_ctx_free(chunk);
}

/* Prefill from embeddings (the AffectGPT path) equals prefill from ids; generation continues from it. */
static void embd_path(mer_qwen2 *m, const expected *e) {
    mer_qwen2_info info;
    mer_qwen2_get_info(m, &info);
    float *emb = malloc((size_t)e->n_ids * (size_t)info.n_embd * sizeof *emb);
    mer_qwen2_ctx *a = make_ctx(m, 64, 64, 1), *b = make_ctx(m, 64, 64, 1);
    mer_err err = {0};
    if (!emb || !a || !b) goto done;
    CHECK(mer_qwen2_embed(m, e->ids, (size_t)e->n_ids, emb, &err) == MER_OK);
    int32_t bad = info.n_vocab;
    CHECK(mer_qwen2_embed(m, &bad, 1, emb, &err) == MER_E_RANGE);
    CHECK(mer_qwen2_prefill(a, e->ids, (size_t)e->n_ids, &err) == MER_OK);
    CHECK(mer_qwen2_prefill_embd(b, emb, (size_t)e->n_ids, &err) == MER_OK);
    const float *la = mer_qwen2_logits(a, NULL), *lb = mer_qwen2_logits(b, NULL);
    CHECK(la && lb && !memcmp(la, lb, (size_t)e->n_ids * (size_t)e->n_vocab * sizeof(float)));
    mer_generate_params gp = mer_generate_default_params();
    gp.max_new_tokens = e->n_greedy;
    mer_generate_result res;
    CHECK(mer_qwen2_generate(b, NULL, NULL, 0, &gp, NULL, NULL, &res, &err) == MER_OK);
    CHECK_EQ_INT(res.n_ids, e->n_greedy);
    CHECK_MSG(res.n_ids == (size_t)e->n_greedy && !memcmp(res.ids, e->greedy, res.n_ids * 4),
              "generation after prefill_embd differs from HF greedy");
    free(res.ids);
done:
    free(emb);
    mer_qwen2_ctx_free(a);
    mer_qwen2_ctx_free(b);
}

/* e with its logits replaced by tensor `name` of the quantised reference. */
static int quant_expected(const expected *e, const char *name, expected *out, mer_weights **qw) {
    mer_err err = {0};
    *out = *e;
    if (!*qw && mer_weights_open(QQUANT, qw, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return -1;
    }
    const mer_wtensor *t = mer_weights_find(*qw, name);
    if (!t || t->dtype != MER_DTYPE_F32 || t->shape[0] != e->n_ids || t->shape[1] != e->n_vocab) {
        CHECK_MSG(0, "%s: no %s", QQUANT, name);
        return -1;
    }
    out->logits = t->data;
    return 0;
}

static const char *tmpdir(void) {
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/mer_test_qwen2_XXXXXX");
        if (!mkdtemp(dir)) dir[0] = 0;
    }
    return dir;
}

static void gguf_paths(const expected *e, const expected *et) {
    const char *dir = tmpdir();
    char f32[128], q8[128], tied[128];
    snprintf(f32, sizeof f32, "%s/tiny-f32.gguf", dir);
    snprintf(q8, sizeof q8, "%s/tiny-q8_0.gguf", dir);
    snprintf(tied, sizeof tied, "%s/tied-f32.gguf", dir);
    mer_quantize_params qp = mer_quantize_default_params();
    mer_err err = {0};
    qp.type = "f32";
    CHECK_MSG(mer_quantize_file(QDIR, f32, &qp, NULL, &err) == MER_OK, "gguf f32: %s", err.msg);
    CHECK_MSG(mer_quantize_file(QTIED, tied, &qp, NULL, &err) == MER_OK, "gguf tied: %s", err.msg);
    qp.type = "q8_0";
    CHECK_MSG(mer_quantize_file(QDIR, q8, &qp, NULL, &err) == MER_OK, "gguf q8_0: %s", err.msg);
    mer_qwen2 *m = load(f32, NULL, NULL, 1);
    parity("gguf f32", m, e, 1e-4, 1);
    if (m) {
        mer_qwen2_info info;
        mer_qwen2_get_info(m, &info);
        CHECK_EQ_INT(info.tied, 0);
        CHECK_NEAR(info.rope_theta, 10000.0, 0);
        CHECK_EQ_INT(info.n_kv_head, 2);
    }
    mer_qwen2_free(m);
    m = load(tied, NULL, NULL, 1);
    parity("gguf tied f32", m, et, 1e-4, 1);
    if (m) {
        mer_qwen2_info info;
        mer_qwen2_get_info(m, &info);
        CHECK_EQ_INT(info.tied, 1);
    }
    mer_qwen2_free(m);
    m = load(q8, NULL, NULL, 1);
    parity("gguf q8_0 vs HF f32", m, e, 5e-2, 0);
    mer_weights *qw = NULL;
    expected eq;
    if (!quant_expected(e, "logits_q8_0", &eq, &qw)) quant_parity("gguf q8_0 vs ggml reference", m, &eq);
    mer_weights_close(qw);
    mer_qwen2_free(m);
    /* LoRA over a GGUF base, merged into f32 */
    expected el;
    if (!load_expected(QLORA "/expected.safetensors", &el)) {
        m = load(f32, NULL, QLORA "/adapter_model.safetensors", 1);
        parity("gguf f32 + lora merged", m, &el, 1e-4, 1);
        mer_qwen2_free(m);
        mer_weights_close(el.w);
    }
    unlink(f32), unlink(q8), unlink(tied);
}

static void conversions(const expected *e) {
    static const struct { const char *t; double tol; const char *ref; } T[] = {
        {"f32", 1e-4, NULL}, {"f16", 5e-3, NULL}, {"bf16", 3e-2, NULL}, {"q8_0", 5e-2, "logits_q8_0"},
        {"q4_0", 1.0, "logits_q4_0"},
    };
    mer_weights *qw = NULL;
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        mer_qwen2 *m = load(QDIR, T[i].t, NULL, 1);
        char label[64];
        snprintf(label, sizeof label, "safetensors --type %s vs HF f32", T[i].t);
        parity(label, m, e, T[i].tol, !strcmp(T[i].t, "f32"));
        expected eq;
        if (T[i].ref && !quant_expected(e, T[i].ref, &eq, &qw)) {
            snprintf(label, sizeof label, "--type %s vs ggml reference", T[i].t);
            quant_parity(label, m, &eq);
        }
        if (m) {
            mer_qwen2_info info;
            mer_qwen2_get_info(m, &info);
            CHECK_STR(info.wtype, T[i].t);
        }
        mer_qwen2_free(m);
    }
    mer_weights_close(qw);
}

static void lora_paths(void) {
    expected el;
    if (load_expected(QLORA "/expected.safetensors", &el)) {
        CHECK(0);
        return;
    }
    static const struct { const char *file; int merge; const char *label; } L[] = {
        {QLORA "/adapter_model.safetensors", 1, "lora safetensors merged"},
        {QLORA "/adapter_model.safetensors", 0, "lora safetensors unmerged"},
        {QLORA, 1, "lora directory merged"},
        {QLORA "/adapter.pth", 1, "lora .pth merged"},
        {QLORA "/adapter.pth", 0, "lora .pth unmerged"},
    };
    for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
        mer_qwen2 *m = load(QDIR, NULL, L[i].file, L[i].merge);
        if (m) {
            mer_qwen2_info info;
            mer_qwen2_get_info(m, &info);
            CHECK_EQ_INT(info.lora, L[i].merge ? 1 : 2);
        }
        parity(L[i].label, m, &el, 1e-4, 1);
        mer_qwen2_free(m);
    }
    /* merged then quantised: close to the reference */
    mer_qwen2 *m = load(QDIR, "q8_0", QLORA "/adapter_model.safetensors", 1);
    mer_weights *qw = NULL;
    expected eq;
    if (!quant_expected(&el, "logits_lora_q8_0", &eq, &qw)) quant_parity("lora merged, q8_0 vs ggml reference", m, &eq);
    mer_weights_close(qw);
    mer_qwen2_free(m);
    /* an explicit scale overrides adapter_config.json: scale 0 adapter == base model */
    mer_qwen2_params p = mer_qwen2_default_params();
    p.lora_path = QLORA "/adapter.pth";
    p.lora_scale = 1e-30;
    p.device = MER_DEVICE_CPU;
    expected eb;
    if (!load_expected(QDIR "/expected.safetensors", &eb)) {
        mer_err err = {0};
        m = NULL;
        CHECK_MSG(mer_qwen2_load(QDIR, &p, &m, &err) == MER_OK, "%s", err.msg);
        parity("lora with scale ~0 == base", m, &eb, 1e-4, 1);
        mer_qwen2_free(m);
        mer_weights_close(eb.w);
    }
    mer_weights_close(el.w);
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

/* Rewrites the fixture adapter's names (prefix and PEFT adapter name) into a new safetensors file;
 * `extra` adds one more tensor (a copy of the first A) under that name. Returns 0 on success. */
static int renamed_adapter(const char *out, const char *prefix, const char *adapter, const char *extra) {
    mer_weights *w = NULL;
    mer_err err = {0};
    if (mer_weights_open(QLORA "/adapter_model.safetensors", &w, &err)) return -1;
    size_t n = w->n_tensors + 1;
    mer_st_tensor *t = calloc(n, sizeof *t);
    char (*names)[192] = calloc(n, sizeof *names);
    size_t k = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const mer_wtensor *x = &w->tensors[i];
        const char *rest = strstr(x->name, "model.layers.");
        const char *ab = strstr(x->name, ".lora_");
        if (!rest || !ab) continue;
        snprintf(names[k], sizeof names[k], "%s%.*s.lora_%c%s%s.weight", prefix, (int)(ab - rest), rest, ab[6],
                 adapter ? "." : "", adapter ? adapter : "");
        t[k] = (mer_st_tensor){names[k], x->dtype, x->n_dims, x->shape, x->data, x->n_bytes};
        k++;
    }
    if (extra && k) {
        snprintf(names[k], sizeof names[k], "%s", extra);
        t[k] = t[0];
        t[k].name = names[k];
        k++;
    }
    int rc = mer__safetensors_write(out, t, k, NULL, 0, &err) ? -1 : 0;
    free(t);
    free(names);
    mer_weights_close(w);
    return rc;
}

static void lora_names(void) {
    expected el;
    if (load_expected(QLORA "/expected.safetensors", &el)) return;
    char dir[160], f[200], cfg[200];
    snprintf(dir, sizeof dir, "%s/adapter", tmpdir());
    mkdir(dir, 0700);
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", dir);
    CHECK(write_file(cfg, "{\"r\": 4, \"lora_alpha\": 8}") == 0);
    /* AffectGPT's prefix with PEFT's in-memory adapter name */
    snprintf(f, sizeof f, "%s/a.safetensors", dir);
    if (!renamed_adapter(f, "llama_model.base_model.model.", "default", NULL)) {
        mer_qwen2 *m = load(QDIR, NULL, f, 0);
        parity("lora llama_model.* .default names", m, &el, 1e-4, 1);
        mer_qwen2_free(m);
    } else CHECK(0);
    /* a LoRA on a module the decoder has none for */
    mer_qwen2_params p = mer_qwen2_default_params();
    mer_qwen2 *m = NULL;
    mer_err err = {0};
    p.lora_path = f;
    if (!renamed_adapter(f, "base_model.model.", NULL, "base_model.model.lm_head.lora_A.weight")) {
        CHECK_EQ_INT(mer_qwen2_load(QDIR, &p, &m, &err), MER_E_UNSUPPORTED);
        CHECK_MSG(strstr(err.msg, "lm_head.lora_A.weight") != NULL, "message: %s", err.msg);
    } else CHECK(0);
    /* the same matrix twice (two adapter names) */
    if (!renamed_adapter(f, "base_model.model.", "default",
                         "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")) {
        CHECK_EQ_INT(mer_qwen2_load(QDIR, &p, &m, &err), MER_E_FORMAT);
    } else CHECK(0);
    /* a layer the model does not have */
    if (!renamed_adapter(f, "base_model.model.", NULL, "base_model.model.model.layers.7.mlp.up_proj.lora_A.weight")) {
        CHECK_EQ_INT(mer_qwen2_load(QDIR, &p, &m, &err), MER_E_SHAPE);
    } else CHECK(0);
    /* the scale: adapter_config.json without lora_alpha, none at all, or given */
    if (!renamed_adapter(f, "base_model.model.", NULL, NULL)) {
        CHECK(write_file(cfg, "{\"r\": 4}") == 0);
        CHECK_EQ_INT(mer_qwen2_load(QDIR, &p, &m, &err), MER_E_NOTFOUND);
        unlink(cfg);
        CHECK_EQ_INT(mer_qwen2_load(QDIR, &p, &m, &err), MER_E_NOTFOUND);
        CHECK_MSG(strstr(err.msg, "adapter_config.json") != NULL, "message: %s", err.msg);
        p.lora_scale = 2.0; /* given: no config needed */
        CHECK_EQ_INT(mer_qwen2_load(QDIR, &p, &m, &err), MER_OK);
        mer_qwen2_free(m);
    } else CHECK(0);
    mer_weights_close(el.w);
}

// --- errors ------------------------------------------------------------------------------------------

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* Copies the tiny model's weights beside a config.json with `from` replaced by `to`. */
static int contradicting_dir(const char *name, const char *from, const char *to, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", tmpdir(), name);
    if (mkdir(out, 0700) && errno != EEXIST) return -1;
    char *cfg = read_text(QDIR "/config.json");
    if (!cfg) return -1;
    char *hit = strstr(cfg, from);
    if (!hit) return -1;
    char text[1 << 16];
    snprintf(text, sizeof text, "%.*s%s%s", (int)(hit - cfg), cfg, to, hit + strlen(from));
    char p[256], src[512], cwd[256];
    snprintf(p, sizeof p, "%s/config.json", out);
    if (write_file(p, text)) return -1;
    snprintf(p, sizeof p, "%s/model.safetensors", out);
    if (!getcwd(cwd, sizeof cwd)) return -1;
    snprintf(src, sizeof src, "%s/" QDIR "/model.safetensors", cwd);
    unlink(p);
    return symlink(src, p);
}

static void errors(void) {
    mer_err err = {0};
    mer_qwen2 *m = NULL;
    char dir[256];
    /* a config whose key/value heads contradict k_proj's shape */
    if (!contradicting_dir("kvheads", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4", dir, sizeof dir)) {
        CHECK_EQ_INT(mer_qwen2_load(dir, NULL, &m, &err), MER_E_SHAPE);
        CHECK_MSG(strstr(err.msg, "model.layers.0.self_attn.k_proj.weight") && strstr(err.msg, "config.json"),
                  "message: %s", err.msg);
        CHECK(m == NULL);
    } else CHECK(0);
    /* fewer layers in the config than in the checkpoint */
    if (!contradicting_dir("layers", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1", dir, sizeof dir)) {
        CHECK_EQ_INT(mer_qwen2_load(dir, NULL, &m, &err), MER_E_SHAPE);
        CHECK_MSG(strstr(err.msg, "model.layers.1.") != NULL, "message: %s", err.msg);
    } else CHECK(0);
    /* a bigger vocabulary than the embedding has */
    if (!contradicting_dir("vocab", "\"vocab_size\": 256", "\"vocab_size\": 300", dir, sizeof dir)) {
        CHECK_EQ_INT(mer_qwen2_load(dir, NULL, &m, &err), MER_E_SHAPE);
        CHECK_MSG(strstr(err.msg, "model.embed_tokens.weight") != NULL, "message: %s", err.msg);
    } else CHECK(0);
    /* tied in the config: fine (lm_head.weight is then ignored, as HF ties it) */
    /* unsupported features */
    if (!contradicting_dir("act", "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", dir, sizeof dir)) {
        CHECK_EQ_INT(mer_qwen2_load(dir, NULL, &m, &err), MER_E_UNSUPPORTED);
    } else CHECK(0);
    if (!contradicting_dir("sw", "\"use_sliding_window\": false", "\"use_sliding_window\": true", dir, sizeof dir)) {
        CHECK_EQ_INT(mer_qwen2_load(dir, NULL, &m, &err), MER_E_UNSUPPORTED);
    } else CHECK(0);
    /* transformers 4 style: rope_theta at the top level */
    if (!contradicting_dir("theta", "\"rope_parameters\": {", "\"rope_theta\": 10000.0, \"rope_scaling\": null, \"rope_parameters\": {", dir,
                           sizeof dir)) {
        expected e;
        if (!load_expected(QDIR "/expected.safetensors", &e)) {
            m = NULL;
            mer_qwen2_params cpu = mer_qwen2_default_params();
            cpu.device = MER_DEVICE_CPU;
            CHECK_MSG(mer_qwen2_load(dir, &cpu, &m, &err) == MER_OK, "%s", err.msg);
            parity("top-level rope_theta", m, &e, 1e-4, 1);
            mer_qwen2_free(m);
            mer_weights_close(e.w);
        }
    } else CHECK(0);
    /* not a model */
    CHECK(mer_qwen2_load(FIXTURES "/models/qwen2_tiny/nothing", NULL, &m, &err) != MER_OK);
    CHECK(mer_qwen2_load(FIXTURES "/models/clip_tiny", NULL, &m, &err) == MER_E_UNSUPPORTED);
    /* bad parameters */
    mer_qwen2_params p = mer_qwen2_default_params();
    p.wtype = "q5_K";
    CHECK_EQ_INT(mer_qwen2_load(QDIR, &p, &m, &err), MER_E_ARG);
    p = mer_qwen2_default_params();
    p.lora_path = QLORA "/missing.safetensors";
    CHECK(mer_qwen2_load(QDIR, &p, &m, &err) != MER_OK);
    p.lora_path = QDIR "/model.safetensors"; /* a state dict without LoRA tensors */
    CHECK_EQ_INT(mer_qwen2_load(QDIR, &p, &m, &err), MER_E_NOTFOUND);
    p.lora_path = QLORA "/adapter_model.safetensors";
    CHECK_EQ_INT(mer_qwen2_load(QTIED, &p, &m, &err), MER_OK); /* same shapes: loads */
    mer_qwen2_free(m);
    m = NULL;
    /* a prompt longer than the context */
    m = load(QDIR, NULL, NULL, 1);
    if (!m) return;
    mer_qwen2_ctx *c = make_ctx(m, 8, 4, 0);
    int32_t ids[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    if (c) {
        CHECK_EQ_INT(mer_qwen2_prefill(c, ids, 12, &err), MER_E_RANGE);
        CHECK_MSG(strstr(err.msg, "context of 8") != NULL, "message: %s", err.msg);
        CHECK_EQ_INT(mer_qwen2_ctx_n_past(c), 0);
        mer_generate_params gp = mer_generate_default_params();
        mer_generate_result res;
        CHECK_EQ_INT(mer_qwen2_generate(c, NULL, ids, 12, &gp, NULL, NULL, &res, &err), MER_E_RANGE);
        CHECK(res.ids == NULL && res.n_ids == 0);
        /* generation that fills the cache stops with MER_STOP_CONTEXT */
        gp.max_new_tokens = 100;
        CHECK_EQ_INT(mer_qwen2_generate(c, NULL, ids, 5, &gp, NULL, NULL, &res, &err), MER_OK);
        CHECK_EQ_INT(res.stop, MER_STOP_CONTEXT);
        CHECK_EQ_INT(res.n_ids, 4); /* positions 5, 6, 7 decoded, the 4th token sampled from position 7 */
        free(res.ids);
        /* a bad id */
        mer_qwen2_ctx_reset(c);
        int32_t bad[2] = {1, 256};
        CHECK_EQ_INT(mer_qwen2_prefill(c, bad, 2, &err), MER_E_RANGE);
        /* stop strings without a tokenizer */
        const char *ss[] = {"x"};
        gp.stop_strings = ss, gp.n_stop_strings = 1;
        CHECK_EQ_INT(mer_qwen2_generate(c, NULL, ids, 2, &gp, NULL, NULL, &res, &err), MER_E_ARG);
        /* continuing without a previous forward */
        gp.n_stop_strings = 0;
        mer_qwen2_ctx_reset(c);
        CHECK_EQ_INT(mer_qwen2_generate(c, NULL, NULL, 0, &gp, NULL, NULL, &res, &err), MER_E_ARG);
    }
    mer_qwen2_ctx_free(c);
    mer_qwen2_free(m);
    /* a missing tokenizer is a clear error */
    mer_tokenizer *tok = NULL;
    CHECK(mer_tokenizer_load(QDIR "/tokenizer.json", NULL, &tok, &err) != MER_OK);
    CHECK(strstr(err.msg, "tokenizer.json") != NULL);
}

// --- generation with a byte tokenizer ----------------------------------------------------------------

/* A 256-token tokenizer whose id i is byte i (no merges): the tiny models' vocabulary as bytes. */
static mer_tokenizer *byte_tokenizer(void) {
    static char text[256][8];
    const char *toks[256];
    for (int i = 0; i < 256; i++) {
        uint32_t cp = mer__bytelevel_char((uint8_t)i);
        int n = mer__utf8_encode(cp, text[i]);
        text[i][n] = 0;
        toks[i] = text[i];
    }
    mer_tokenizer_arrays a = {0};
    a.tokens = toks, a.n_tokens = 256;
    mer_tokenizer *t = NULL;
    mer_err err = {0};
    CHECK_MSG(mer_tokenizer_from_arrays(&a, NULL, &t, &err) == MER_OK, "%s", err.msg);
    return t;
}

typedef struct sink {
    char buf[4096];
    size_t n;
    int calls;
    int stop_after; /* stop after this many calls (0: never) */
} sink;

static int sink_cb(const char *text, size_t len, void *ud) {
    sink *s = ud;
    if (s->n + len < sizeof s->buf) memcpy(s->buf + s->n, text, len), s->n += len;
    s->buf[s->n] = 0;
    s->calls++;
    return s->stop_after && s->calls >= s->stop_after;
}

static void stops(mer_qwen2 *m, const expected *e) {
    mer_tokenizer *tok = byte_tokenizer();
    mer_qwen2_ctx *c = make_ctx(m, 64, 64, 0);
    mer_err err = {0};
    if (!tok || !c) goto done;
    /* reference text: the HF greedy ids decoded */
    char *ref = NULL;
    size_t ref_len = 0;
    CHECK(mer_tokenizer_decode(tok, e->greedy, (size_t)e->n_greedy, 1, &ref, &ref_len, &err) == MER_OK);
    mer_generate_params gp = mer_generate_default_params();
    gp.max_new_tokens = e->n_greedy;
    mer_generate_result res;
    sink s = {0};
    /* streaming everything gives the decoded text */
    CHECK(mer_qwen2_generate(c, tok, e->ids, (size_t)e->n_ids, &gp, sink_cb, &s, &res, &err) == MER_OK);
    CHECK_MSG(ref && s.n == ref_len && !memcmp(s.buf, ref, ref_len), "streamed text differs from the decoded ids");
    free(res.ids);
    /* a stop id: the first position where HF's greedy output has greedy[10] */
    int32_t sid = e->greedy[10];
    int first = 0;
    while (e->greedy[first] != sid) first++;
    gp.stop_ids = &sid, gp.n_stop_ids = 1;
    mer_qwen2_ctx_reset(c);
    CHECK(mer_qwen2_generate(c, tok, e->ids, (size_t)e->n_ids, &gp, NULL, NULL, &res, &err) == MER_OK);
    CHECK_EQ_INT(res.stop, MER_STOP_TOKEN);
    CHECK_EQ_INT(res.n_ids, first + 1);
    free(res.ids);
    /* min_new_tokens masks the stop id before that */
    gp.min_new_tokens = first + 1;
    mer_qwen2_ctx_reset(c);
    CHECK(mer_qwen2_generate(c, tok, e->ids, (size_t)e->n_ids, &gp, NULL, NULL, &res, &err) == MER_OK);
    CHECK(res.n_ids > (size_t)first + 1 || res.stop == MER_STOP_LENGTH);
    CHECK(res.n_ids > (size_t)first && res.ids[first] != sid);
    free(res.ids);
    gp.min_new_tokens = 0, gp.n_stop_ids = 0;
    /* a stop string across a token boundary: two consecutive printable ASCII tokens not seen before */
    int j = -1;
    for (int i = 2; i + 1 < e->n_greedy && j < 0; i++) {
        int a = e->greedy[i], b = e->greedy[i + 1];
        if (a < 0x21 || a > 0x7e || b < 0x21 || b > 0x7e) continue;
        int seen = 0;
        for (int k = 0; k + 1 < i + 1 && !seen; k++) seen = e->greedy[k] == a && e->greedy[k + 1] == b;
        if (!seen) j = i;
    }
    if (j >= 0) {
        char stop[3] = {(char)e->greedy[j], (char)e->greedy[j + 1], 0};
        const char *ss[] = {"\x01never", stop};
        gp.stop_strings = ss, gp.n_stop_strings = 2;
        memset(&s, 0, sizeof s);
        mer_qwen2_ctx_reset(c);
        CHECK(mer_qwen2_generate(c, tok, e->ids, (size_t)e->n_ids, &gp, sink_cb, &s, &res, &err) == MER_OK);
        CHECK_EQ_INT(res.stop, MER_STOP_STRING);
        CHECK_EQ_INT(res.n_ids, j + 2);
        char *want = NULL;
        size_t wl = 0;
        CHECK(mer_tokenizer_decode(tok, e->greedy, (size_t)j, 1, &want, &wl, &err) == MER_OK);
        CHECK_MSG(want && s.n == wl && !memcmp(s.buf, want, wl), "text before the stop string: got %zu bytes, want %zu",
                  s.n, wl);
        free(want);
        free(res.ids);
        gp.n_stop_strings = 0;
    } else printf("  (no ASCII pair in the greedy output: stop-string check skipped)\n");
    /* the callback stops generation */
    memset(&s, 0, sizeof s);
    s.stop_after = 1;
    mer_qwen2_ctx_reset(c);
    CHECK(mer_qwen2_generate(c, tok, e->ids, (size_t)e->n_ids, &gp, sink_cb, &s, &res, &err) == MER_OK);
    CHECK_EQ_INT(res.stop, MER_STOP_CALLBACK);
    CHECK(res.n_ids < (size_t)e->n_greedy);
    free(res.ids);
    free(ref);
done:
    mer_qwen2_ctx_free(c);
    mer_tokenizer_free(tok);
}

// --- sampler against a float64 re-statement of HF's processors ---------------------------------------

static uint64_t lcg = 88172645463325252ULL;
static double rnd(void) { /* xorshift64, for test data only */
    lcg ^= lcg << 13, lcg ^= lcg >> 7, lcg ^= lcg << 17;
    return (double)(lcg >> 11) * 0x1.0p-53;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct sidx {
    double s;
    int i;
} sidx;

static int cmp_sidx(const void *a, const void *b) {
    const sidx *x = a, *y = b;
    return (x->s > y->s) - (x->s < y->s);
}

/* HF's processors, float64: RepetitionPenalty, Temperature, TopK, TopP, MinP (min_tokens_to_keep 1). */
static void ref_process(double *s, int V, const int32_t *hist, int nh, double rep, double temp, int topk, double topp,
                        double minp) {
    if (rep != 1.0) {
        char *done = calloc((size_t)V, 1);
        for (int i = 0; i < nh; i++)
            if (!done[hist[i]]) {
                done[hist[i]] = 1;
                s[hist[i]] = s[hist[i]] < 0 ? s[hist[i]] * rep : s[hist[i]] / rep;
            }
        free(done);
    }
    if (temp <= 0) return;
    for (int i = 0; i < V; i++) s[i] /= temp;
    if (topk > 0 && topk < V) {
        double *c = malloc((size_t)V * sizeof *c);
        memcpy(c, s, (size_t)V * sizeof *c);
        qsort(c, (size_t)V, sizeof *c, cmp_d);
        double kth = c[V - topk];
        for (int i = 0; i < V; i++)
            if (s[i] < kth) s[i] = -INFINITY;
        free(c);
    }
    if (topp < 1.0) { /* sort ascending, softmax, cumsum; drop cum <= 1 - top_p; keep the last */
        sidx *a = malloc((size_t)V * sizeof *a);
        double mx = -INFINITY, z = 0;
        for (int i = 0; i < V; i++) a[i].s = s[i], a[i].i = i, mx = s[i] > mx ? s[i] : mx;
        for (int i = 0; i < V; i++) z += exp(s[i] - mx);
        qsort(a, (size_t)V, sizeof *a, cmp_sidx);
        double cum = 0;
        for (int r = 0; r < V - 1; r++) {
            cum += exp(a[r].s - mx) / z;
            if (cum <= 1 - topp) s[a[r].i] = -INFINITY;
        }
        free(a);
    }
    if (minp > 0) {
        double mx = -INFINITY, z = 0;
        for (int i = 0; i < V; i++) mx = s[i] > mx ? s[i] : mx;
        for (int i = 0; i < V; i++) z += exp(s[i] - mx);
        double top = 1.0 / z;
        for (int i = 0; i < V; i++)
            if (exp(s[i] - mx) / z < minp * top) s[i] = -INFINITY;
    }
}

/* The documented PRNG: splitmix64 seeding, xoshiro256**, u = (next >> 11) * 2^-53. */
typedef struct ref_rng {
    uint64_t s[4];
} ref_rng;

static uint64_t ref_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void ref_seed(ref_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) {
        seed += 0x9e3779b97f4a7c15ULL;
        uint64_t z = seed;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        r->s[i] = z ^ (z >> 31);
    }
}

static double ref_u(ref_rng *r) {
    uint64_t *s = r->s, res = ref_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = ref_rotl(s[3], 45);
    return (double)(res >> 11) * 0x1.0p-53;
}

static void sampler_tests(void) {
    enum { V = 1000 };
    static float logits[V];
    static double ref[V];
    static float got[V];
    for (int i = 0; i < V; i++) logits[i] = (float)(rnd() * 12.0 - 6.0);
    /* ties at the top: top-k keeps every token equal to the k-th largest (torch.topk threshold) */
    logits[10] = logits[20] = logits[30] = 7.0f;
    logits[40] = 7.5f;
    int32_t hist[40];
    for (int i = 0; i < 40; i++) hist[i] = (int32_t)(rnd() * V);
    hist[39] = hist[0]; /* a repeat: penalised once */
    static const struct { double rep, temp; int k; double p, minp; } C[] = {
        {1.0, 0, 0, 1, 0},      {1.3, 0, 0, 1, 0},     {1.0, 0.7, 0, 1, 0},   {1.0, 1.0, 20, 1, 0},
        {1.0, 1.0, 0, 0.9, 0},  {1.05, 0.7, 20, 0.8, 0}, {1.2, 0.5, 0, 0.95, 0.05}, {1.0, 2.0, 1, 1, 0},
        {1.0, 1.0, 0, 1, 0.2},  {0.8, 1.3, 500, 0.5, 0}, {1.0, 1.0, V + 5, 0.999, 0}, {1.0, 1.0, 2, 1, 0},
        {1.0, 1.0, 3, 1, 0},
    };
    for (size_t c = 0; c < sizeof C / sizeof C[0]; c++) {
        mer_sampler_params sp = mer_sampler_default_params();
        sp.repeat_penalty = C[c].rep, sp.temperature = C[c].temp, sp.top_k = C[c].k, sp.top_p = C[c].p;
        sp.min_p = C[c].minp, sp.seed = 1234 + c;
        mer_sampler *s = NULL;
        mer_err err = {0};
        if (mer_sampler_init(&sp, V, &s, &err)) {
            CHECK_MSG(0, "sampler init: %s", err.msg);
            continue;
        }
        for (int i = 0; i < V; i++) ref[i] = logits[i], got[i] = logits[i];
        ref_process(ref, V, hist, 40, C[c].rep, C[c].temp, C[c].k, C[c].p, C[c].minp);
        mer_sampler_process(s, got, hist, 40);
        int same_set = 1, n_keep = 0;
        double worst = 0;
        for (int i = 0; i < V; i++) {
            int a = isinf(ref[i]) && ref[i] < 0, b = isinf(got[i]) && got[i] < 0;
            if (a != b) same_set = 0;
            if (!a && !b) {
                n_keep++;
                double d = fabs(ref[i] - got[i]) / (fabs(ref[i]) + 1e-30);
                if (d > worst) worst = d;
            }
        }
        CHECK_MSG(same_set, "case %zu: kept set differs from HF's", c);
        CHECK_MSG(worst < 1e-6, "case %zu: processed scores rel err %.3g", c, worst);
        CHECK(n_keep >= 1);
        /* draws follow the documented rule over the reference probabilities */
        ref_rng r;
        ref_seed(&r, sp.seed);
        int agree = 1;
        for (int d = 0; d < 200; d++) {
            int32_t id = mer_sampler_sample(s, logits, hist, 40);
            int32_t want = 0;
            if (C[c].temp <= 0) {
                for (int i = 1; i < V; i++)
                    if (ref[i] > ref[want]) want = i;
            } else {
                double mx = -INFINITY, z = 0, cum = 0;
                for (int i = 0; i < V; i++) mx = ref[i] > mx ? ref[i] : mx;
                for (int i = 0; i < V; i++) z += exp(ref[i] - mx);
                double t = ref_u(&r) * z;
                want = -1;
                for (int i = 0; i < V && want < 0; i++) {
                    if (isinf(ref[i])) continue;
                    cum += exp(ref[i] - mx);
                    if (cum > t) want = i;
                }
            }
            if (id != want) agree = 0;
        }
        CHECK_MSG(agree, "case %zu: draws differ from the documented PRNG rule", c);
        mer_sampler_free(s);
    }
    /* reproducible from the seed, different across seeds */
    mer_sampler_params sp = mer_sampler_default_params();
    sp.temperature = 1.0;
    mer_sampler *a = NULL, *b = NULL, *d = NULL;
    mer_err err = {0};
    CHECK(mer_sampler_init(&sp, V, &a, &err) == MER_OK && mer_sampler_init(&sp, V, &b, &err) == MER_OK);
    sp.seed = 99;
    CHECK(mer_sampler_init(&sp, V, &d, &err) == MER_OK);
    int same_ab = 1, same_ad = 1;
    for (int i = 0; i < 50 && a && b && d; i++) {
        int32_t x = mer_sampler_sample(a, logits, NULL, 0), y = mer_sampler_sample(b, logits, NULL, 0),
                z = mer_sampler_sample(d, logits, NULL, 0);
        same_ab &= x == y, same_ad &= x == z;
    }
    CHECK(same_ab);
    CHECK(!same_ad);
    mer_sampler_free(a), mer_sampler_free(b), mer_sampler_free(d);
    /* bad parameters */
    mer_sampler *s = NULL;
    sp = mer_sampler_default_params();
    sp.top_p = 0;
    CHECK_EQ_INT(mer_sampler_init(&sp, V, &s, &err), MER_E_ARG);
    sp = mer_sampler_default_params();
    sp.repeat_penalty = 0;
    CHECK_EQ_INT(mer_sampler_init(&sp, V, &s, &err), MER_E_ARG);
    sp = mer_sampler_default_params();
    sp.temperature = -1;
    CHECK_EQ_INT(mer_sampler_init(&sp, V, &s, &err), MER_E_ARG);
    CHECK_EQ_INT(mer_sampler_init(NULL, 0, &s, &err), MER_E_ARG);
}

// --- the CLI -----------------------------------------------------------------------------------------

static void cli(void) {
    char exe[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = 0;
    char *sl = strrchr(exe, '/');
    if (!sl) return;
    *sl = 0;
    sl = strrchr(exe, '/');
    if (!sl) return;
    *sl = 0; /* the build dir */
    char cmd[2048], out[256];
    snprintf(out, sizeof out, "%s/cli_out.txt", tmpdir());
    expected e;
    if (load_expected(QDIR "/expected.safetensors", &e)) return;
    char ids[256] = "";
    for (int i = 0; i < e.n_ids; i++) snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d", i ? " " : "", e.ids[i]);
    snprintf(cmd, sizeof cmd, "%s/mer generate --model " QDIR " --ids '%s' -n 32 --threads 2 > %s 2>&1", exe, ids, out);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "%s -> %d", cmd, rc);
    char *txt = read_text(out);
    char want[512] = "";
    for (int i = 0; i < e.n_greedy; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? " " : "", e.greedy[i]);
    CHECK_MSG(txt && strstr(txt, want), "mer generate --ids printed: %s", txt ? txt : "(nothing)");
    /* a missing tokenizer: one clear line, exit 2 */
    snprintf(cmd, sizeof cmd, "%s/mer generate --model " QDIR " --prompt hello > %s 2>&1", exe, out);
    rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    txt = read_text(out);
    CHECK_MSG(txt && strstr(txt, "tokenizer"), "missing tokenizer message: %s", txt ? txt : "");
    mer_weights_close(e.w);
}

static void run(void) {
    expected e, et;
    if (load_expected(QDIR "/expected.safetensors", &e) || load_expected(QTIED "/expected.safetensors", &et)) {
        CHECK_MSG(0, "fixtures missing");
        return;
    }
    mer_qwen2 *m = load(QDIR, NULL, NULL, 1);
    parity("safetensors f32 (untied)", m, &e, 1e-4, 1);
    if (m) {
        kv_cache_steps(m, &e);
        embd_path(m, &e);
        stops(m, &e);
    }
    mer_qwen2_free(m);
    m = load(QTIED, NULL, NULL, 1);
    parity("safetensors f32 (tied)", m, &et, 1e-4, 1);
    mer_qwen2_free(m);
    m = load(QDIR "/model.safetensors", NULL, NULL, 1); /* a file, config.json beside it */
    parity("safetensors file", m, &e, 1e-4, 1);
    mer_qwen2_free(m);
    conversions(&e);
    lora_paths();
    lora_names();
    gguf_paths(&e, &et);
    sampler_tests();
    errors();
    cli();
    mer_weights_close(e.w);
    mer_weights_close(et.w);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir());
    if (system(cmd)) printf("could not remove %s\n", tmpdir());
}
