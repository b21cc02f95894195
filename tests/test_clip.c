/* test_clip.c - the CLIP vision tower against HF transformers: the tiny CLIPVisionModelWithProjection of
 * tests/fixtures/models/clip_tiny (made by scripts/gpu/gen_fixtures.py) run on its two random images;
 * every hidden state, last_hidden_state and image_embeds must match to 1e-4 relative (max-abs-err /
 * max-abs-ref), loading from model.safetensors and from pytorch_model.bin (and within f16 rounding from
 * our GGUF). Also: thread-count
 * independence, and that a checkpoint with a missing or mis-shaped tensor fails naming the tensor. */
#include "test.h"

#include "io/safetensors.h"
#include "models/clip.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR FIXTURES "/models/clip_tiny"

static const mer_wtensor *need(const mer_weights *w, const char *name) {
    const mer_wtensor *t = mer_weights_find(w, name);
    CHECK_MSG(t && t->dtype == MER_DTYPE_F32, "expected tensor %s", name);
    return t;
}

/* Runs the model on the fixture's images and compares every output; returns the worst relative error. */
static double check_model(const mer_clip *m, const mer_weights *ex, int n_threads, const char *what) {
    mer_err err = {0};
    mer_threadpool *pool = NULL;
    mer_cpu_ctx *c = NULL;
    mer_clip_ctx *x = NULL;
    double worst = 0;
    CHECK(mer_threadpool_init(n_threads, &pool, &err) == MER_OK);
    CHECK(mer_cpu_ctx_init(pool, MER_ISA_AUTO, &c, &err) == MER_OK);
    CHECK(mer_clip_ctx_init(m, c, &x, &err) == MER_OK);
    if (!x) goto done;
    const mer_clip_hparams *hp = &m->hp;
    const int T = hp->n_tok, D = hp->n_embd, L = hp->n_layer;
    const mer_wtensor *px = need(ex, "pixel_values");
    const mer_wtensor *emb = need(ex, "image_embeds");
    const mer_wtensor *last = need(ex, "last_hidden_state");
    if (!px || !emb || !last) goto done;
    CHECK_EQ_INT(px->shape[2], hp->image_size);
    CHECK_EQ_INT(emb->shape[1], hp->n_proj);
    int n_img = (int)px->shape[0];
    size_t TD = (size_t)T * D, img = (size_t)hp->n_channels * hp->image_size * hp->image_size;
    float *hs = malloc((size_t)(L + 1) * TD * sizeof(float)), *lh = malloc(TD * sizeof(float));
    float *ie = malloc((size_t)hp->n_proj * sizeof(float));
    float *ptrs[64];
    for (int i = 0; i <= L; i++) ptrs[i] = hs + (size_t)i * TD;
    for (int b = 0; b < n_img; b++) {
        mer_clip_out o = {.image_embeds = ie, .hidden = ptrs, .last_hidden = lh};
        CHECK(mer_clip_encode(x, (const float *)px->data + b * img, &o, &err) == MER_OK);
        for (int i = 0; i <= L; i++) {
            char name[64];
            snprintf(name, sizeof name, "hidden_states.%d", i);
            const mer_wtensor *h = need(ex, name);
            if (!h) continue;
            double e = max_rel_err(ptrs[i], (const float *)h->data + b * TD, TD);
            CHECK_MSG(e <= 1e-4, "%s: image %d %s rel err %.3g", what, b, name, e);
            if (e > worst) worst = e;
        }
        double e1 = max_rel_err(lh, (const float *)last->data + b * TD, TD);
        double e2 = max_rel_err(ie, (const float *)emb->data + b * hp->n_proj, (size_t)hp->n_proj);
        CHECK_MSG(e1 <= 1e-4, "%s: image %d last_hidden_state rel err %.3g", what, b, e1);
        CHECK_MSG(e2 <= 1e-4, "%s: image %d image_embeds rel err %.3g", what, b, e2);
        if (e1 > worst) worst = e1;
        if (e2 > worst) worst = e2;
    }
    /* image features alone (blocks run to the end, nothing else asked) */
    {
        mer_clip_out o = {.image_embeds = ie};
        CHECK(mer_clip_encode(x, (const float *)px->data, &o, &err) == MER_OK);
        double e = max_rel_err(ie, (const float *)emb->data, (size_t)hp->n_proj);
        CHECK_MSG(e <= 1e-4, "%s: image_embeds alone rel err %.3g", what, e);
    }
    free(hs);
    free(lh);
    free(ie);
done:
    mer_clip_ctx_free(x);
    mer_cpu_ctx_free(c);
    mer_threadpool_free(pool);
    return worst;
}

/* Writes DIR's tensors minus `drop` (or with `reshape` given a wrong shape) to tmp/model.safetensors. */
static int write_broken(const mer_weights *w, const char *tmp, const char *drop, const char *reshape) {
    mer_st_tensor *t = calloc(w->n_tensors, sizeof *t);
    int64_t bad[2];
    size_t n = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const mer_wtensor *s = &w->tensors[i];
        if (drop && !strcmp(s->name, drop)) continue;
        t[n] = (mer_st_tensor){s->name, s->dtype, s->n_dims, s->shape, s->data, s->n_bytes};
        if (reshape && !strcmp(s->name, reshape)) { /* same bytes, transposed-looking shape */
            bad[0] = s->shape[1];
            bad[1] = s->shape[0] * 2;
            t[n].shape = bad;
            t[n].n_bytes = s->n_bytes * 2;
            t[n].data = calloc(1, t[n].n_bytes);
        }
        n++;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    mer_err err = {0};
    int ok = mer__safetensors_write(path, t, n, NULL, 0, &err) == MER_OK;
    for (size_t i = 0; i < n; i++)
        if (reshape && !strcmp(t[i].name, reshape)) free((void *)t[i].data);
    free(t);
    return ok;
}

static void check_broken(void) {
    mer_err err = {0};
    mer_weights *w = NULL;
    CHECK(mer_weights_open(DIR "/model.safetensors", &w, &err) == MER_OK);
    if (!w) return;
    char tmp[] = "/tmp/mer_test_clip_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp " DIR "/config.json %s/", tmp);
    CHECK(system(cmd) == 0);
    const char *drop = "vision_model.encoder.layers.1.mlp.fc2.weight";
    CHECK(write_broken(w, tmp, drop, NULL));
    mer_clip *m = NULL;
    mer_status st = mer_clip_open(tmp, &m, &err);
    CHECK_EQ_INT(st, MER_E_NOTFOUND);
    CHECK_MSG(strstr(err.msg, drop) != NULL, "message names the tensor: %s", err.msg);
    CHECK(m == NULL);
    const char *bad = "vision_model.encoder.layers.0.self_attn.k_proj.weight";
    CHECK(write_broken(w, tmp, NULL, bad));
    st = mer_clip_open(tmp, &m, &err);
    CHECK_EQ_INT(st, MER_E_SHAPE);
    CHECK_MSG(strstr(err.msg, bad) != NULL && strstr(err.msg, "[32, 64]"), "message names the tensor: %s", err.msg);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
    mer_weights_close(w);
}

/* Our GGUF (mer_quantize_file keeps CLIP's HF tensor names) with config.json beside it: f16 weights. */
static void check_gguf(const mer_weights *ex) {
    char tmp[] = "/tmp/mer_test_clip_gguf_XXXXXX", cmd[600], path[600];
    CHECK(mkdtemp(tmp) != NULL);
    snprintf(path, sizeof path, "%s/clip.gguf", tmp);
    snprintf(cmd, sizeof cmd, "cp " DIR "/config.json %s/", tmp);
    CHECK(system(cmd) == 0);
    mer_quantize_params qp = mer_quantize_default_params();
    qp.type = "f16";
    mer_err err = {0};
    CHECK_MSG(mer_quantize_file(DIR, path, &qp, NULL, &err) == MER_OK, "%s", err.msg);
    mer_clip *m = NULL;
    CHECK_MSG(mer_clip_open(path, &m, &err) == MER_OK, "%s", err.msg);
    const mer_wtensor *px = mer_weights_find(ex, "pixel_values"), *emb = mer_weights_find(ex, "image_embeds");
    if (m && px && emb) {
        CHECK(m->layers[0].q.dt == MER_DTYPE_F16); /* used in place, converted by the kernels */
        mer_threadpool *pool = NULL;
        mer_cpu_ctx *c = NULL;
        mer_clip_ctx *x = NULL;
        float ie[16];
        CHECK(mer_threadpool_init(2, &pool, &err) == MER_OK && mer_cpu_ctx_init(pool, MER_ISA_AUTO, &c, &err) == MER_OK &&
              mer_clip_ctx_init(m, c, &x, &err) == MER_OK);
        mer_clip_out o = {.image_embeds = ie};
        CHECK(x && mer_clip_encode(x, (const float *)px->data, &o, &err) == MER_OK);
        double e = max_rel_err(ie, (const float *)emb->data, 16);
        printf("clip_tiny GGUF f16: image_embeds rel err %.3g\n", e);
        CHECK_MSG(e <= 5e-3, "GGUF f16 image_embeds rel err %.3g", e);
        mer_clip_ctx_free(x);
        mer_cpu_ctx_free(c);
        mer_threadpool_free(pool);
    }
    mer_clip_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
}

static void run(void) {
    mer_err err = {0};
    mer_weights *ex = NULL;
    CHECK(mer_weights_open(DIR "/expected.safetensors", &ex, &err) == MER_OK);
    if (!ex) {
        printf("FAIL cannot open expected outputs: %s\n", err.msg);
        return;
    }
    /* model.safetensors through the HF directory */
    mer_clip *m = NULL;
    CHECK(mer_clip_open(DIR, &m, &err) == MER_OK);
    if (m) {
        CHECK_EQ_INT(m->hp.n_embd, 32);
        CHECK_EQ_INT(m->hp.n_layer, 2);
        CHECK_EQ_INT(m->hp.n_head, 4);
        CHECK_EQ_INT(m->hp.n_tok, 17);
        CHECK_EQ_INT(m->hp.n_proj, 16);
        CHECK_EQ_INT(m->hp.quick_gelu, 1);
        double e1 = check_model(m, ex, 1, "safetensors 1 thread");
        double e2 = check_model(m, ex, 2, "safetensors 2 threads");
        printf("clip_tiny safetensors: worst rel err %.3g (1 thread), %.3g (2 threads)\n", e1, e2);
        CHECK(e1 == e2); /* results do not depend on the thread count */
        mer_clip_free(m);
    } else {
        printf("FAIL %s\n", err.msg);
    }
    /* pytorch_model.bin (the .pth reader) with config.json beside it */
    m = NULL;
    mer_status st = mer_clip_open(DIR "/pytorch_model.bin", &m, &err);
    if (st == MER_E_UNSUPPORTED && strstr(err.msg, "not built")) {
        printf("SKIP clip pytorch_model.bin: %s\n", err.msg);
    } else {
        CHECK_MSG(st == MER_OK, "open pytorch_model.bin: %s", err.msg);
        if (m) {
            double e = check_model(m, ex, 2, "pytorch_model.bin");
            printf("clip_tiny pytorch_model.bin: worst rel err %.3g\n", e);
        }
        mer_clip_free(m);
    }
    check_broken();
    check_gguf(ex);
    mer_weights_close(ex);
}
