/* test_convert.c - `mer convert` bundles of the tiny AffectGPT (tests/fixtures/models: clip_tiny,
 * hubert_tiny, affectgpt_tiny/llm + checkpoint, made by HF transformers with
 * scripts/gpu/gen_affectgpt_fixture.py). Truth: the reference's expected_{face,frame}.safetensors (visual
 * and audio features, fused embeddings, prompt embeddings, last logits, 24 greedy tokens), as in
 * test_affectgpt.c; the f32 bundle (LoRA merged, or kept) must also give bit-for-bit what the separately
 * loaded parts give, and a q8_0 bundle the same LLM as the parts loaded with --type q8_0. The file layout is
 * read back by the @huggingface/gguf reader (node scripts/ref_gguf.mjs; SKIP without it); `mer inspect`
 * lists the bundle; bundles missing a part fail naming it; `mer infer --model` gives the same CSV as
 * `mer infer` with the four parts on a small dataset made here with numpy. */
#include "test.h"
#include "io/gguf.h"
#include "models/bundle.h"
#include "models/clip_preprocess.h"
#include "pipeline/agpt.h"
#include "core/sampling.h"
#include "io/wav.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define M FIXTURES "/models"
#define AG M "/affectgpt_tiny"
#define CKPT AG "/checkpoint_000035_loss_0.000.pth"
#define TMP MER_TEST_TMP "/convert"

static char mer[512];

// --- helpers -----------------------------------------------------------------------------------------

static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md) md = d;
        if (fabs((double)b[i]) > mx) mx = fabs((double)b[i]);
    }
    return mx > 0 ? md / mx : md;
}

static const float *T(const mer_weights *w, const char *name, size_t *n) {
    const mer_wtensor *t = mer_weights_find(w, name);
    if (!t) {
        printf("FAIL fixture tensor %s missing\n", name);
        return NULL;
    }
    if (n) *n = t->n_bytes / 4;
    return t->data;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long k = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)k + 1);
    size_t got = fread(b, 1, (size_t)k, f);
    b[got] = 0;
    fclose(f);
    if (n) *n = got;
    return b;
}

static char *run_cmd(const char *cmd, int *rc) {
    FILE *p = popen(cmd, "r");
    mer_buf out = {0};
    char chunk[4096];
    size_t k;
    while (p && (k = fread(chunk, 1, sizeof chunk, p)) > 0) mer__buf_append(&out, chunk, k);
    int st = p ? pclose(p) : -1;
    *rc = st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    mer__buf_putc(&out, 0);
    return out.data;
}

static mer_status convert(const char *type, int keep, const char *out, mer_err *err) {
    mer_bundle_params p = mer_bundle_default_params();
    p.clip = M "/clip_tiny";
    p.hubert = M "/hubert_tiny";
    p.llm = AG "/llm";
    p.affectgpt = CKPT;
    p.type = type;
    p.keep_lora = keep;
    p.n_threads = 1;
    return mer_bundle_convert(&p, out, NULL, err);
}

static mer__agpt *load(const char *bundle, const char *wtype) {
    mer_infer_params p = mer_infer_default_params();
    if (bundle) p.bundle = bundle;
    else {
        p.clip = M "/clip_tiny";
        p.hubert = M "/hubert_tiny";
        p.llm = AG "/llm";
        p.affectgpt = CKPT;
    }
    p.wtype = wtype;
    p.n_threads = 2;
    mer__agpt *a = NULL;
    mer_err err = {0};
    CHECK_MSG(mer__agpt_load(&p, &a, &err) == MER_OK, "load %s: %s", bundle ? bundle : "parts", err.msg);
    return a;
}

// --- one model on one config: everything the parity test looks at ------------------------------------

typedef struct outs {
    float vis[8 * 64], aud[8 * 64], fused[3 * 64];
    float *embd;
    int32_t *ids;
    size_t n_tok;
    float *logits;
    size_t n_logits;
    int32_t greedy[32];
    size_t n_greedy;
    int D;
} outs;

static void outs_free(outs *o) {
    free(o->embd);
    free(o->ids);
    free(o->logits);
    memset(o, 0, sizeof *o);
}

static uint8_t pix_frame(int t, int y, int x, int c) { return (uint8_t)((7 * x + 13 * y + 29 * t + 71 * c + (x * y) % 37) % 256); }
static uint8_t pix_face(int t, int y, int x, int c) { return (uint8_t)((11 * x + 3 * y + 41 * t + 97 * c + (x * y) % 23) % 256); }

/* The inputs of gen_affectgpt_fixture.py (the same formulas as test_affectgpt.c), through model a. */
static void compute(mer__agpt *a, int face, const mer_weights *ex, outs *o) {
    mer_err err = {0};
    memset(o, 0, sizeof *o);
    int n_src = face ? 5 : 8, S = face ? 112 : 224;
    uint8_t *src = malloc((size_t)n_src * S * S * 3), *big = malloc((size_t)8 * 224 * 224 * 3);
    for (int t = 0; t < n_src; t++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                for (int c = 0; c < 3; c++)
                    src[(((size_t)t * S + y) * S + x) * 3 + c] = face ? pix_face(t, y, x, c) : pix_frame(t, y, x, c);
    const uint8_t *imgs[8];
    int64_t idx[8];
    mer__frame_indices(n_src, 8, idx);
    for (int i = 0; i < 8; i++) {
        if (face) {
            CHECK(mer_resize_cv_linear(src + (size_t)idx[i] * S * S * 3, S, S, 3, big + (size_t)i * 224 * 224 * 3, 224, 224,
                                       &err) == MER_OK);
            imgs[i] = big + (size_t)i * 224 * 224 * 3;
        } else {
            imgs[i] = src + (size_t)idx[i] * 224 * 224 * 3;
        }
    }
    CHECK_MSG(mer__agpt_visual(a, imgs, 224, 224, 8, o->vis, &err) == MER_OK, "%s", err.msg);
    int64_t n_wav = 52800;
    float *wav = malloc((size_t)n_wav * sizeof *wav), *clips = malloc((size_t)8 * 32000 * sizeof(float));
    for (int64_t i = 0; i < n_wav; i++)
        wav[i] = (float)(0.5 * sin(0.01 * (double)i * (1 + 0.1 * (double)(i % 7))) +
                         (double)((1103515245LL * i + 12345) % 65536) / 65536.0 * 0.1 - 0.05);
    mer_audio_clips(wav, n_wav, 16000, 8, 2, clips);
    CHECK_MSG(mer__agpt_audio(a, clips, 8, 32000, 0, 1, o->aud, &err) == MER_OK, "%s", err.msg);
    /* the fusion and the rest from the reference's features and embeddings */
    size_t n;
    const float *rv = T(ex, "visual_feats", &n), *ra = T(ex, "audio_feats", &n), *re = T(ex, "embeds", &n);
    int D = o->D = a->n_embd;
    if (rv && ra)
        CHECK(mer_affectgpt_fuse(&a->fusion, a->cpu, rv, 8, ra, 8, o->fused, o->fused + D, o->fused + 2 * D, &err) ==
              MER_OK);
    CHECK(mer__agpt_prompt_embd(a, face ? MER_INPUT_FACE : MER_INPUT_FRAME,
                                "Look, Ouyang is getting married too. I'm so happy for him!", MER_QUESTION_OV, o->fused,
                                &o->embd, &o->ids, &o->n_tok, &err) == MER_OK);
    if (re && n == o->n_tok * (size_t)D) {
        mer_qwen2_ctx_reset(a->llm_ctx);
        CHECK(mer_qwen2_prefill_embd(a->llm_ctx, re, o->n_tok, &err) == MER_OK);
        int nr;
        const float *lg = mer_qwen2_logits(a->llm_ctx, &nr);
        mer_qwen2_info info;
        mer_qwen2_get_info(a->llm, &info);
        o->n_logits = (size_t)info.n_vocab;
        o->logits = malloc(o->n_logits * sizeof *o->logits);
        if (lg) memcpy(o->logits, lg, o->n_logits * sizeof *o->logits);
        mer_generate_params g = mer_generate_default_params();
        g.max_new_tokens = 24;
        mer_generate_result res = {0};
        CHECK(mer_qwen2_generate(a->llm_ctx, NULL, NULL, 0, &g, NULL, NULL, &res, &err) == MER_OK);
        o->n_greedy = res.n_ids < 32 ? res.n_ids : 32;
        memcpy(o->greedy, res.ids, o->n_greedy * sizeof *o->greedy);
        free(res.ids);
    }
    free(src);
    free(big);
    free(wav);
    free(clips);
}

/* o against the reference, with the relative errors allowed on the encoder features, the prompt embeddings
 * and the logits. */
static void check_ref(const char *what, const outs *o, const mer_weights *ex, double tol_enc, double tol_embd,
                      double tol_logits, int greedy_exact) {
    size_t n;
    const float *r;
    if ((r = T(ex, "visual_feats", &n))) CHECK_MSG(rel_err(o->vis, r, n) < tol_enc, "%s: visual rel err %g", what, rel_err(o->vis, r, n));
    if ((r = T(ex, "audio_feats", &n))) CHECK_MSG(rel_err(o->aud, r, n) < tol_enc, "%s: audio rel err %g", what, rel_err(o->aud, r, n));
    const char *names[3] = {"frame_llm", "audio_llm", "multi_llm"};
    for (int k = 0; k < 3; k++)
        if ((r = T(ex, names[k], &n)))
            CHECK_MSG(rel_err(o->fused + (size_t)k * n, r, n) < 1e-4, "%s: %s rel err %g", what, names[k],
                      rel_err(o->fused + (size_t)k * n, r, n));
    if ((r = T(ex, "embeds", &n)) && o->embd) {
        CHECK_EQ_INT(n, o->n_tok * (size_t)o->D);
        if (n == o->n_tok * (size_t)o->D)
            CHECK_MSG(rel_err(o->embd, r, n) < tol_embd, "%s: prompt embeddings rel err %g", what, rel_err(o->embd, r, n));
    }
    const mer_wtensor *pid = mer_weights_find(ex, "prompt_ids");
    if (pid) CHECK_EQ_INT(o->n_tok, pid->n_bytes / 4);
    if ((r = T(ex, "last_logits", &n)) && o->logits) {
        CHECK_EQ_INT(n, o->n_logits);
        CHECK_MSG(rel_err(o->logits, r, n) < tol_logits, "%s: last logits rel err %g", what, rel_err(o->logits, r, n));
    }
    const mer_wtensor *gt = mer_weights_find(ex, "greedy");
    if (gt && greedy_exact) {
        const int32_t *g = gt->data;
        CHECK_EQ_INT(o->n_greedy, gt->n_bytes / 4);
        size_t diff = 0;
        for (size_t i = 0; i < o->n_greedy && i < gt->n_bytes / 4; i++) diff += o->greedy[i] != g[i];
        CHECK_MSG(diff == 0, "%s: %zu of 24 greedy tokens differ from the reference", what, diff);
    }
}

/* a and b bit for bit (enc: the encoder features too). */
static void check_same(const char *what, const outs *a, const outs *b, int enc) {
    if (enc) {
        CHECK_MSG(!memcmp(a->vis, b->vis, sizeof a->vis), "%s: visual features differ", what);
        CHECK_MSG(!memcmp(a->aud, b->aud, sizeof a->aud), "%s: audio features differ", what);
    }
    CHECK_MSG(!memcmp(a->fused, b->fused, sizeof a->fused), "%s: fused embeddings differ", what);
    CHECK_EQ_INT(a->n_tok, b->n_tok);
    if (a->n_tok == b->n_tok && a->embd && b->embd && a->D == b->D) {
        CHECK_MSG(!memcmp(a->ids, b->ids, a->n_tok * sizeof *a->ids), "%s: prompt ids differ", what);
        if (enc) /* the embedding table is the same only when the LLM's dtype is */
            CHECK_MSG(!memcmp(a->embd, b->embd, a->n_tok * (size_t)a->D * sizeof(float)), "%s: prompt embeddings differ",
                      what);
    }
    CHECK_EQ_INT(a->n_logits, b->n_logits);
    if (a->logits && b->logits && a->n_logits == b->n_logits)
        CHECK_MSG(!memcmp(a->logits, b->logits, a->n_logits * sizeof(float)), "%s: logits differ", what);
    CHECK_MSG(a->n_greedy == b->n_greedy && !memcmp(a->greedy, b->greedy, a->n_greedy * sizeof(int32_t)),
              "%s: greedy tokens differ", what);
}

// --- parity ------------------------------------------------------------------------------------------

static void test_parity(const char *b32, const char *bkeep, const char *b8) {
    mer_err err = {0};
    mer_weights *ex[2] = {NULL, NULL};
    CHECK(mer_weights_open(AG "/expected_face.safetensors", &ex[1], &err) == MER_OK);
    CHECK(mer_weights_open(AG "/expected_frame.safetensors", &ex[0], &err) == MER_OK);
    if (!ex[0] || !ex[1]) return;
    mer__agpt *parts = load(NULL, NULL), *bun = load(b32, NULL), *keep = load(bkeep, NULL);
    mer__agpt *parts8 = load(NULL, "q8_0"), *bun8 = load(b8, NULL);
    if (bun) {
        CHECK(bun->bundle && !bun->bundle->lora_kept && bun->bundle->lora_scale == 2.0f);
        mer_qwen2_info info;
        mer_qwen2_get_info(bun->llm, &info);
        CHECK_EQ_INT(info.lora, 0); /* merged in the file: the loader applies nothing */
        CHECK_STR(info.wtype, "f32");
    }
    if (keep) {
        mer_qwen2_info info;
        mer_qwen2_get_info(keep->llm, &info);
        CHECK_EQ_INT(info.lora, 1); /* the kept adapter, merged at load */
    }
    if (bun8) {
        mer_qwen2_info info;
        mer_qwen2_get_info(bun8->llm, &info);
        CHECK_STR(info.wtype, "q8_0");
        CHECK_EQ_INT(bun8->clip->layers[0].q.dt, MER_DTYPE_F16); /* encoders f16 with a q8_0 LLM */
        CHECK_EQ_INT(bun8->hub->layers[0].ff1.dt, MER_DTYPE_F16);
    }
    if (!parts || !bun || !keep || !parts8 || !bun8) goto done;
    for (int face = 0; face < 2; face++) {
        const char *cfg = face ? "face" : "frame";
        outs op, ob, ok, o8p, o8b;
        compute(parts, face, ex[face], &op);
        compute(bun, face, ex[face], &ob);
        compute(keep, face, ex[face], &ok);
        compute(parts8, face, ex[face], &o8p);
        compute(bun8, face, ex[face], &o8b);
        char what[64];
        snprintf(what, sizeof what, "%s: separate parts", cfg);
        check_ref(what, &op, ex[face], 1e-4, 1e-4, 1e-4, 1);
        snprintf(what, sizeof what, "%s: f32 bundle", cfg);
        check_ref(what, &ob, ex[face], 1e-4, 1e-4, 1e-4, 1);
        check_same(what, &ob, &op, 1);
        snprintf(what, sizeof what, "%s: f32 bundle, LoRA kept", cfg);
        check_ref(what, &ok, ex[face], 1e-4, 1e-4, 1e-4, 1);
        check_same(what, &ok, &op, 1);
        /* q8_0: the LLM is the parts' LLM quantised at load, bit for bit (the exact check); the encoders in f16
         * stay within 2e-3 of the reference (4e-4 seen) and the logits of this tiny random q8_0 model within 10%
         * (2-5% seen; greedy tokens are not compared) */
        snprintf(what, sizeof what, "%s: q8_0 bundle", cfg);
        check_ref(what, &o8b, ex[face], 2e-3, 2e-3, 1e-1, 0);
        check_same(what, &o8b, &o8p, 0);
        outs *all[5] = {&op, &ob, &ok, &o8p, &o8b};
        for (int i = 0; i < 5; i++) outs_free(all[i]);
    }
done:
    mer__agpt_free(parts);
    mer__agpt_free(bun);
    mer__agpt_free(keep);
    mer__agpt_free(parts8);
    mer__agpt_free(bun8);
    mer_weights_close(ex[0]);
    mer_weights_close(ex[1]);
}

/* The bundle is a plain qwen2 GGUF to the public tokenizer: the same ids as the folder's tokenizer.json. */
static void test_tokenizer(const char *b32) {
    mer_err err = {0};
    mer_tokenizer *tb = NULL, *tj = NULL;
    CHECK_MSG(mer_tokenizer_load(b32, NULL, &tb, &err) == MER_OK, "%s", err.msg);
    CHECK_MSG(mer_tokenizer_load(AG "/llm/tokenizer.json", NULL, &tj, &err) == MER_OK, "%s", err.msg);
    if (tb && tj) {
        const char *s = "<|im_start|>user\nLook, Ouyang is getting married too. I'm so happy for him!<|im_end|> caf\xc3\xa9";
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        CHECK(mer_tokenizer_encode(tb, s, strlen(s), &a, &na, &err) == MER_OK);
        CHECK(mer_tokenizer_encode(tj, s, strlen(s), &b, &nb, &err) == MER_OK);
        CHECK_MSG(na == nb && na > 0 && !memcmp(a, b, na * sizeof *a), "bundle tokenizer ids differ (%zu vs %zu)", na, nb);
        CHECK_EQ_INT(mer_tokenizer_n_vocab(tb), mer_tokenizer_n_vocab(tj));
        free(a);
        free(b);
    }
    mer_tokenizer_free(tb);
    mer_tokenizer_free(tj);
}

/* Other sources: the LLM as a qwen2 GGUF (mer quantize, f32; its tokenizer comes along) and the tokenizer given
 * apart (a tokenizer.json, or a GGUF's tokenizer.ggml.*): the same model as the parts. */
static void test_sources(void) {
    mer_err err = {0};
    mer_quantize_params qp = mer_quantize_default_params();
    qp.type = "f32";
    CHECK_MSG(mer_quantize_file(AG "/llm", TMP "/llm32.gguf", &qp, NULL, &err) == MER_OK, "%s", err.msg);
    mer_weights *ex = NULL;
    CHECK(mer_weights_open(AG "/expected_face.safetensors", &ex, &err) == MER_OK);
    mer__agpt *parts = load(NULL, NULL);
    outs op;
    memset(&op, 0, sizeof op);
    if (parts && ex) compute(parts, 1, ex, &op);
    struct { const char *llm, *tok, *what; } C[] = {
        {TMP "/llm32.gguf", NULL, "LLM from a GGUF"},
        {AG "/llm", AG "/llm/tokenizer.json", "--tokenizer tokenizer.json"},
        {AG "/llm", TMP "/llm32.gguf", "--tokenizer GGUF"},
        {TMP "/llm32.gguf", TMP "/llm32.gguf", "LLM and tokenizer from a GGUF"},
    };
    for (size_t i = 0; i < MER_ARRAY_LEN(C) && parts && ex; i++) {
        mer_bundle_params p = mer_bundle_default_params();
        p.clip = M "/clip_tiny";
        p.hubert = M "/hubert_tiny";
        p.llm = C[i].llm;
        p.tokenizer = C[i].tok;
        p.affectgpt = CKPT;
        p.type = "f32";
        mer_bundle_stats st;
        CHECK_MSG(mer_bundle_convert(&p, TMP "/src.gguf", &st, &err) == MER_OK, "%s: %s", C[i].what, err.msg);
        CHECK_EQ_INT(st.n_lora, 14);
        mer__agpt *a = load(TMP "/src.gguf", NULL);
        if (!a) continue;
        outs o;
        compute(a, 1, ex, &o);
        check_same(C[i].what, &o, &op, 1);
        outs_free(&o);
        mer__agpt_free(a);
    }
    outs_free(&op);
    mer__agpt_free(parts);
    mer_weights_close(ex);
}

// --- layout ------------------------------------------------------------------------------------------

static int node_ready(void) {
    if (system("node --version >/dev/null 2>&1") != 0) return 0;
    return access("models/npm/gguf/node_modules/@huggingface/gguf/package.json", R_OK) == 0;
}

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* The @huggingface/gguf reader on the f32 bundle: kv types and values, tensor names, shapes, types, and data
 * at the offsets it computes equal to the sources' values. */
static void test_layout(const char *b32) {
    if (!node_ready()) {
        printf("SKIP test_convert layout: node or @huggingface/gguf missing (scripts/deps.d/gguf.sh installs it)\n");
        return;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "node scripts/ref_gguf.mjs read %s", b32);
    int rc;
    char *js = run_cmd(cmd, &rc);
    CHECK_MSG(rc == 0, "reference reader ran (rc %d)", rc);
    cJSON *r = js ? cJSON_Parse(js) : NULL;
    free(js);
    CHECK(r != NULL);
    if (!r) return;
    CHECK_EQ_INT(jget(r, "version")->valueint, 3);
    const cJSON *kv = jget(r, "kv");
    struct { const char *key; int type; const char *s; double num; } want[] = {
        {"general.architecture", 8, "qwen2", 0}, {"tokenizer.ggml.model", 8, "gpt2", 0},
        {"tokenizer.ggml.pre", 8, "qwen2", 0},   {"mer.bundle.version", 4, NULL, 1},
        {"mer.affectgpt.lora", 8, "merged", 0},  {"mer.affectgpt.lora_scale", 6, NULL, 2},
        {"qwen2.block_count", 4, NULL, 2},       {"qwen2.embedding_length", 4, NULL, 32},
        {"general.file_type", 4, NULL, 0},
    };
    for (size_t i = 0; i < MER_ARRAY_LEN(want); i++) {
        const cJSON *e = jget(kv, want[i].key);
        CHECK_MSG(e != NULL, "the reference reader sees %s", want[i].key);
        if (!e) continue;
        CHECK_EQ_INT(jget(e, "type")->valueint, want[i].type);
        const cJSON *v = jget(e, "value");
        if (want[i].s) CHECK_MSG(cJSON_IsString(v) && !strcmp(v->valuestring, want[i].s), "%s", want[i].key);
        else CHECK_MSG(cJSON_IsNumber(v) && v->valuedouble == want[i].num, "%s", want[i].key);
    }
    /* the config texts are the files' bytes */
    char *cc = slurp(M "/clip_tiny/config.json", NULL), *hc = slurp(M "/hubert_tiny/config.json", NULL);
    const cJSON *v = jget(jget(kv, "mer.clip.config"), "value");
    CHECK_MSG(cc && cJSON_IsString(v) && !strcmp(v->valuestring, cc), "mer.clip.config is clip_tiny/config.json");
    v = jget(jget(kv, "mer.hubert.config"), "value");
    CHECK_MSG(hc && cJSON_IsString(v) && !strcmp(v->valuestring, hc), "mer.hubert.config is hubert_tiny/config.json");
    free(cc);
    free(hc);
    const cJSON *toks = jget(jget(kv, "tokenizer.ggml.tokens"), "value");
    CHECK(cJSON_IsArray(toks) && cJSON_GetArraySize(toks) >= 300);
    /* tensors: each one found at its offset with the source's values (ggml ne[] order reversed) */
    mer_err err = {0};
    mer_weights *llm = NULL, *clip = NULL, *hub = NULL, *ck = NULL;
    CHECK(mer_weights_open(AG "/llm", &llm, &err) == MER_OK);
    CHECK(mer_weights_open(M "/clip_tiny", &clip, &err) == MER_OK);
    CHECK(mer_weights_open(M "/hubert_tiny", &hub, &err) == MER_OK);
    CHECK(mer_weights_open(CKPT, &ck, &err) == MER_OK);
    struct { const char *name; const mer_weights *src; const char *src_name; } TS[] = {
        {"token_embd.weight", llm, "model.embed_tokens.weight"},
        {"blk.1.ffn_norm.weight", llm, "model.layers.1.post_attention_layernorm.weight"},
        {"blk.0.attn_k.bias", llm, "model.layers.0.self_attn.k_proj.bias"},
        {"clip.vision_model.embeddings.patch_embedding.weight", clip, "vision_model.embeddings.patch_embedding.weight"},
        {"clip.visual_projection.weight", clip, "visual_projection.weight"},
        {"hubert.encoder.pos_conv_embed.conv.weight_g", hub, "encoder.pos_conv_embed.conv.parametrizations.weight.original0"},
        {"hubert.encoder.pos_conv_embed.conv.weight_v", hub, "encoder.pos_conv_embed.conv.parametrizations.weight.original1"},
        {"hubert.feature_extractor.conv_layers.0.conv.weight", hub, "feature_extractor.conv_layers.0.conv.weight"},
        {"affectgpt.attention_mlp.weight", ck, "attention_mlp.weight"},
        {"affectgpt.fc_att.bias", ck, "fc_att.bias"},
    };
    size_t fn;
    char *file = slurp(b32, &fn);
    const cJSON *ts = jget(r, "tensors");
    int n_blk_q = 0;
    for (const cJSON *t = ts ? ts->child : NULL; t; t = t->next) n_blk_q += !strncmp(jget(t, "name")->valuestring, "blk.", 4);
    CHECK_EQ_INT(n_blk_q, 24); /* 2 layers x (2 norms, 7 matrices, 3 biases) */
    for (size_t i = 0; i < MER_ARRAY_LEN(TS) && llm && clip && hub && ck && file; i++) {
        const cJSON *t = NULL;
        for (const cJSON *e = ts ? ts->child : NULL; e && !t; e = e->next)
            if (!strcmp(jget(e, "name")->valuestring, TS[i].name)) t = e;
        CHECK_MSG(t != NULL, "the reference reader sees tensor %s", TS[i].name);
        const mer_wtensor *s = mer_weights_find(TS[i].src, TS[i].src_name);
        CHECK_MSG(s != NULL, "source %s", TS[i].src_name);
        if (!t || !s) continue;
        CHECK_EQ_INT(jget(t, "dtype")->valueint, 0);
        const cJSON *sh = jget(t, "shape");
        CHECK_EQ_INT(cJSON_GetArraySize(sh), s->n_dims);
        for (int d = 0; d < s->n_dims && d < cJSON_GetArraySize(sh); d++)
            CHECK_EQ_INT(strtoull(cJSON_GetArrayItem(sh, d)->valuestring, NULL, 10), s->shape[s->n_dims - 1 - d]);
        uint64_t abs = strtoull(jget(t, "abs")->valuestring, NULL, 10);
        CHECK_MSG(abs % 32 == 0 && abs + s->n_bytes <= fn && !memcmp(file + abs, s->data, s->n_bytes),
                  "tensor %s holds the source's bytes at the reference's offset", TS[i].name);
    }
    free(file);
    mer_weights_close(llm);
    mer_weights_close(clip);
    mer_weights_close(hub);
    mer_weights_close(ck);
    cJSON_Delete(r);
}

// --- broken bundles ----------------------------------------------------------------------------------

/* A copy of src without the tensors and keys that start with any of the prefixes, plus a string key (skey,
 * NULL for none) or a u32 key (ukey) put first. */
static int strip_copy(const char *src, const char *dst, const char *const *drop, size_t n_drop, const char *skey,
                      const char *sval, const char *ukey, uint32_t uval) {
    mer_err err = {0};
    mer_weights *w = NULL;
    mer_gguf_writer *g = NULL;
    int ok = mer_weights_open(src, &w, &err) == MER_OK && mer__gguf_writer_new(&g, &err) == MER_OK;
    if (ok && skey) ok = mer__gguf_add_str(g, skey, sval, &err) == MER_OK;
    if (ok && ukey) ok = mer__gguf_add_u32(g, ukey, uval, &err) == MER_OK;
    for (size_t i = 0; ok && i < w->n_kv; i++) {
        int skip = 0;
        for (size_t k = 0; k < n_drop; k++) skip |= !strncmp(w->kv[i].key, drop[k], strlen(drop[k]));
        if (!skip) ok = mer__gguf_add_kv(g, &w->kv[i], &err) == MER_OK;
    }
    for (size_t i = 0; ok && i < w->n_tensors; i++) {
        const mer_wtensor *t = &w->tensors[i];
        int skip = 0;
        for (size_t k = 0; k < n_drop; k++) skip |= !strncmp(t->name, drop[k], strlen(drop[k]));
        if (!skip) ok = mer__gguf_add_tensor(g, t->name, t->dtype, t->n_dims, t->shape, t->data, &err) == MER_OK;
    }
    if (ok) ok = mer__gguf_write(g, dst, NULL, NULL, &err) == MER_OK;
    if (!ok) printf("FAIL strip_copy %s: %s\n", dst, err.msg);
    mer__gguf_writer_free(g);
    mer_weights_close(w);
    return ok;
}

static void test_missing(const char *b32) {
    struct { const char *drop[4]; const char *want[2]; mer_status st; } C[] = {
        {{"hubert.", "mer.hubert."}, {"HuBERT part", "mer.hubert.config"}, MER_E_NOTFOUND},
        {{"clip."}, {"CLIP part", "clip.*"}, MER_E_NOTFOUND},
        {{"mer.clip.config"}, {"CLIP part", "mer.clip.config"}, MER_E_NOTFOUND},
        {{"affectgpt."}, {"fusion", "affectgpt.*"}, MER_E_NOTFOUND},
        {{"tokenizer."}, {"no tokenizer", "tokenizer.ggml.tokens"}, MER_E_NOTFOUND},
        {{"blk.", "token_embd.", "output"}, {"no LLM part", "token_embd.weight"}, MER_E_NOTFOUND},
        {{"mer.bundle."}, {"not a mer bundle", "mer convert"}, MER_E_FORMAT},
        /* a part with a tensor missing: its loader names the tensor and the part */
        {{"clip.vision_model.encoder.layers.1.mlp.fc2.weight"}, {"(clip.*)", "vision_model.encoder.layers.1.mlp.fc2.weight"},
         MER_E_NOTFOUND},
        {{"hubert.encoder.pos_conv_embed.conv.weight_v"}, {"(hubert.*)", "pos_conv_embed"}, MER_E_NOTFOUND},
        {{"affectgpt.fc_att."}, {"affectgpt.fc_att.weight", "b32.gguf"}, MER_E_NOTFOUND},
    };
    for (size_t i = 0; i < MER_ARRAY_LEN(C); i++) {
        size_t nd = 0;
        while (nd < 4 && C[i].drop[nd]) nd++;
        const char *bad = TMP "/bad.gguf";
        if (!strip_copy(b32, bad, C[i].drop, nd, NULL, NULL, NULL, 0)) continue;
        mer_infer_params p = mer_infer_default_params();
        p.bundle = bad;
        p.n_threads = 1;
        mer__agpt *a = NULL;
        mer_err err = {0};
        mer_status st = mer__agpt_load(&p, &a, &err);
        CHECK_MSG(st == C[i].st && a == NULL, "dropping %s: status %d (%s)", C[i].drop[0], st, err.msg);
        const char *want1 = !strcmp(C[i].want[1], "b32.gguf") ? "bad.gguf" : C[i].want[1];
        CHECK_MSG(strstr(err.msg, C[i].want[0]) && strstr(err.msg, want1) && strstr(err.msg, "bad.gguf"),
                  "dropping %s: message '%s'", C[i].drop[0], err.msg);
        mer__agpt_free(a);
    }
    /* bad values: another version, a config that is not JSON, a number where the config text goes */
    struct { const char *drop, *skey, *sval, *ukey, *want; mer_status st; } V[] = {
        {"mer.bundle.version", NULL, NULL, "mer.bundle.version", "version 2 is not supported", MER_E_UNSUPPORTED},
        {"mer.hubert.config", "mer.hubert.config", "{\"hidden_size\": 32,", NULL, "mer.hubert.config", MER_E_FORMAT},
        {"mer.clip.config", NULL, NULL, "mer.clip.config", "non-string 'mer.clip.config'", MER_E_FORMAT},
        {"mer.affectgpt.lora", "mer.affectgpt.lora", "half", NULL, "\"merged\" or \"kept\"", MER_E_FORMAT},
    };
    for (size_t i = 0; i < MER_ARRAY_LEN(V); i++) {
        const char *drop[1] = {V[i].drop};
        if (!strip_copy(b32, TMP "/bad.gguf", drop, 1, V[i].skey, V[i].sval, V[i].ukey, 2)) continue;
        mer__bundle *b = NULL;
        mer_err e = {0};
        mer_status st = mer__bundle_open(TMP "/bad.gguf", &b, &e);
        CHECK_MSG(st == V[i].st && !b && strstr(e.msg, V[i].want) && strstr(e.msg, "bad.gguf"), "%s: %d '%s'", V[i].drop, st,
                  e.msg);
    }
    /* not a bundle at all: a plain qwen2 GGUF */
    mer_quantize_params qp = mer_quantize_default_params();
    qp.type = "f32";
    mer_err err = {0};
    CHECK(mer_quantize_file(AG "/llm", TMP "/plain.gguf", &qp, NULL, &err) == MER_OK);
    mer__bundle *b = NULL;
    CHECK(mer__bundle_open(TMP "/plain.gguf", &b, &err) == MER_E_FORMAT && !b);
    CHECK_MSG(strstr(err.msg, "plain.gguf: not a mer bundle") != NULL, "%s", err.msg);
    /* conversions that must fail before writing anything */
    mer_bundle_params bp = mer_bundle_default_params();
    bp.clip = M "/hubert_tiny"; /* the wrong folder: CLIP's loader names a missing tensor */
    bp.hubert = M "/hubert_tiny";
    bp.llm = AG "/llm";
    bp.affectgpt = CKPT;
    CHECK(mer_bundle_convert(&bp, TMP "/never.gguf", NULL, &err) == MER_E_NOTFOUND);
    CHECK_MSG(strstr(err.msg, "hubert_tiny") && strstr(err.msg, "vision_model"), "%s", err.msg);
    CHECK(access(TMP "/never.gguf", F_OK) != 0);
    bp.clip = M "/clip_tiny";
    bp.affectgpt = M "/qwen2_lora/adapter.pth"; /* a LoRA for another model */
    CHECK(mer_bundle_convert(&bp, TMP "/never.gguf", NULL, &err) != MER_OK);
    bp.affectgpt = CKPT;
    bp.hubert = NULL;
    CHECK(mer_bundle_convert(&bp, TMP "/never.gguf", NULL, &err) == MER_E_ARG);
    CHECK_MSG(strstr(err.msg, "--hubert") != NULL, "%s", err.msg);
    bp.hubert = M "/hubert_tiny";
    bp.type = "q5_k";
    CHECK(mer_bundle_convert(&bp, TMP "/never.gguf", NULL, &err) == MER_E_ARG);
    bp.type = "f32";
    bp.llm = TMP "/b32.gguf"; /* a bundle as the LLM */
    CHECK(mer_bundle_convert(&bp, TMP "/never.gguf", NULL, &err) == MER_E_ARG);
    CHECK_MSG(strstr(err.msg, "bundle already") != NULL, "%s", err.msg);
    CHECK(access(TMP "/never.gguf", F_OK) != 0);
}

// --- the CLI -----------------------------------------------------------------------------------------

static void test_cli(const char *b32) {
    char cmd[2048];
    int rc;
    /* mer convert with 3 threads writes the same bytes as the library with 1 */
    snprintf(cmd, sizeof cmd,
             "%s convert --clip " M "/clip_tiny --hubert " M "/hubert_tiny --llm " AG "/llm --affectgpt " CKPT
             " --type f32 --threads 3 -o " TMP "/cli.gguf 2>&1",
             mer);
    char *out = run_cmd(cmd, &rc);
    CHECK_MSG(rc == 0 && strstr(out, "157 tensors"), "mer convert: rc %d: %s", rc, out);
    free(out);
    size_t n1, n2;
    char *f1 = slurp(b32, &n1), *f2 = slurp(TMP "/cli.gguf", &n2);
    CHECK_MSG(f1 && f2 && n1 == n2 && !memcmp(f1, f2, n1), "the CLI's bundle differs from the library's");
    free(f1);
    free(f2);
    snprintf(cmd, sizeof cmd, "%s convert --clip " M "/clip_tiny --llm " AG "/llm -o " TMP "/x.gguf 2>&1", mer);
    out = run_cmd(cmd, &rc);
    CHECK_MSG(rc == 2 && strstr(out, "mer convert:") && strstr(out, "--hubert"), "rc %d: %s", rc, out);
    free(out);
    /* mer inspect lists the bundle */
    snprintf(cmd, sizeof cmd, "%s inspect %s 2>&1", mer, b32);
    out = run_cmd(cmd, &rc);
    CHECK_MSG(rc == 0 && strstr(out, "format: gguf") && strstr(out, "mer.bundle.version") && strstr(out, "mer.clip.config") &&
                  strstr(out, "clip.visual_projection.weight") && strstr(out, "hubert.encoder.layer_norm.weight") &&
                  strstr(out, "affectgpt.multi_llama_proj.weight") && strstr(out, "blk.0.attn_q.weight") &&
                  strstr(out, "157 tensors"),
              "mer inspect (rc %d)", rc);
    free(out);
    /* mer infer --model with another part too is refused */
    snprintf(cmd, sizeof cmd, "%s infer --model %s --clip " M "/clip_tiny --data . -o " TMP "/r.npz 2>&1", mer, b32);
    out = run_cmd(cmd, &rc);
    CHECK_MSG(rc == 2 && strstr(out, "--model"), "rc %d: %s", rc, out);
    free(out);
}

/* `mer infer --model` and `mer infer` with the four parts on a 3-sample dataset give the same CSV. */
static void test_infer(const char *b32) {
    if (access("/usr/bin/python3", X_OK) || system("/usr/bin/python3 -c 'import numpy' 2>/dev/null")) {
        printf("SKIP test_convert infer: needs /usr/bin/python3 with numpy\n");
        return;
    }
    int rc = system("set -e; rm -rf " TMP "/data " TMP "/parts.* " TMP "/bundle.*; mkdir -p " TMP "/data/audio " TMP "/data/openface_face; cd " TMP "/data;"
                    "/usr/bin/python3 - <<'EOF'\n"
                    "import numpy as np, os, wave\n"
                    "rng = np.random.default_rng(5)\n"
                    "names = ['a%d' % i for i in range(3)]\n"
                    "open('track_all_candidates.csv', 'w').write('name\\n' + ''.join(n + '\\n' for n in names))\n"
                    "open('subtitle_chieng.csv', 'w').write('name,chinese,english\\n' + ''.join('%s,,Hello number %d.\\n' % (n, i) for i, n in enumerate(names)))\n"
                    "for i, n in enumerate(names):\n"
                    "    os.makedirs('openface_face/' + n)\n"
                    "    np.save('openface_face/%s/%s.npy' % (n, n), rng.integers(0, 256, (5 + i, 112, 112, 3), dtype=np.uint8))\n"
                    "    t = np.arange(16000 * (2 + i)) / 16000.0\n"
                    "    x = (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) * 32767).astype('<i2')\n"
                    "    w = wave.open('audio/%s.wav' % n, 'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)\n"
                    "    w.writeframes(x.tobytes()); w.close()\n"
                    "EOF");
    CHECK_MSG(rc == 0, "dataset set-up failed (%d)", rc);
    if (rc) return;
    const char *common = "--data " TMP "/data --temp 0 --max-new-tokens 6 --threads 1 --quiet";
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s infer --clip " M "/clip_tiny --hubert " M "/hubert_tiny --llm " AG "/llm --affectgpt " CKPT
             " %s -o " TMP "/parts.npz 2>&1",
             mer, common);
    char *out = run_cmd(cmd, &rc);
    CHECK_MSG(rc == 0, "mer infer (parts): rc %d: %s", rc, out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s infer --model %s %s -o " TMP "/bundle.npz 2>&1", mer, b32, common);
    out = run_cmd(cmd, &rc);
    CHECK_MSG(rc == 0 && strstr(out, "3 succeeded"), "mer infer --model: rc %d: %s", rc, out);
    free(out);
    char *a = slurp(TMP "/parts.csv", NULL), *b = slurp(TMP "/bundle.csv", NULL);
    size_t lines = 0;
    for (const char *c = a ? a : ""; *c; c++) lines += *c == '\n';
    CHECK_EQ_INT(lines, 4);
    CHECK_MSG(a && b && !strcmp(a, b), "mer infer --model gives other answers than the parts:\n%s\n---\n%s", a ? a : "",
              b ? b : "");
    free(a);
    free(b);
}

static void run(void) {
    const char *bd = getenv("MER_BUILD");
    snprintf(mer, sizeof mer, "%s/mer", bd ? bd : "build");
    mkdir(MER_TEST_TMP, 0755);
    mkdir(TMP, 0755);
    const char *b32 = TMP "/b32.gguf", *bkeep = TMP "/bkeep.gguf", *b8 = TMP "/b8.gguf";
    mer_err err = {0};
    CHECK_MSG(convert("f32", 0, b32, &err) == MER_OK, "%s", err.msg);
    CHECK_MSG(convert("f32", 1, bkeep, &err) == MER_OK, "%s", err.msg);
    CHECK_MSG(convert("q8_0", 0, b8, &err) == MER_OK, "%s", err.msg);
    test_parity(b32, bkeep, b8);
    test_tokenizer(b32);
    test_sources();
    test_layout(b32);
    test_missing(b32);
    test_cli(b32);
    test_infer(b32);
}
