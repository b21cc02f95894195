/* test_affectgpt.c - AffectGPT end to end against the tiny reference made by HF transformers
 * (scripts/gpu/gen_affectgpt_fixture.py): CLIP features of faces/frames, HuBERT features of the audio
 * clips, the fused embeddings, the prompt ids and embeddings with the splice, and 24 greedy tokens,
 * for the face and the frame configs. Inputs are procedural (the same formulas as the script). */
#include "test.h"
#include "pipeline/agpt.h"
#include "core/sampling.h"
#include "io/wav.h"
#include "models/clip_preprocess.h"

#include <stdlib.h>

#define AG FIXTURES "/models/affectgpt_tiny"

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
    if (!t) { printf("FAIL fixture tensor %s missing\n", name); return NULL; }
    if (n) *n = t->n_bytes / 4;
    return t->data;
}

static uint8_t *make_frames(void) { /* [8][224][224][3] */
    uint8_t *f = malloc((size_t)8 * 224 * 224 * 3);
    for (int t = 0; t < 8; t++)
        for (int y = 0; y < 224; y++)
            for (int x = 0; x < 224; x++)
                for (int c = 0; c < 3; c++)
                    f[(((size_t)t * 224 + y) * 224 + x) * 3 + c] = (uint8_t)((7 * x + 13 * y + 29 * t + 71 * c + (x * y) % 37) % 256);
    return f;
}

static uint8_t *make_faces(void) { /* [5][112][112][3] */
    uint8_t *f = malloc((size_t)5 * 112 * 112 * 3);
    for (int t = 0; t < 5; t++)
        for (int y = 0; y < 112; y++)
            for (int x = 0; x < 112; x++)
                for (int c = 0; c < 3; c++)
                    f[(((size_t)t * 112 + y) * 112 + x) * 3 + c] = (uint8_t)((11 * x + 3 * y + 41 * t + 97 * c + (x * y) % 23) % 256);
    return f;
}

static float *make_wav(int64_t n) {
    float *w = malloc((size_t)n * sizeof *w);
    for (int64_t i = 0; i < n; i++) {
        double v = 0.5 * sin(0.01 * (double)i * (1 + 0.1 * (double)(i % 7))) +
                   (double)((1103515245LL * i + 12345) % 65536) / 65536.0 * 0.1 - 0.05;
        w[i] = (float)v;
    }
    return w;
}

static void one_config(mer__agpt *a, int face) {
    mer_err err = {0};
    mer_weights *ex = NULL;
    const char *path = face ? AG "/expected_face.safetensors" : AG "/expected_frame.safetensors";
    CHECK_MSG(mer_weights_open(path, &ex, &err) == MER_OK, "%s", err.msg);
    if (!ex) return;
    /* visual features */
    uint8_t *src = face ? make_faces() : make_frames();
    uint8_t *big = face ? malloc((size_t)8 * 224 * 224 * 3) : NULL;
    const uint8_t *imgs[8];
    int64_t idx[8];
    mer__frame_indices(face ? 5 : 8, 8, idx);
    for (int i = 0; i < 8; i++) {
        if (face) { /* cv2.resize(face, (224, 224)), BGR kept */
            CHECK(mer_resize_cv_linear(src + (size_t)idx[i] * 112 * 112 * 3, 112, 112, 3, big + (size_t)i * 224 * 224 * 3, 224, 224, &err) == MER_OK);
            imgs[i] = big + (size_t)i * 224 * 224 * 3;
        } else {
            imgs[i] = src + (size_t)idx[i] * 224 * 224 * 3;
        }
    }
    size_t n;
    float vis[8 * 64], aud[8 * 64];
    CHECK(mer__agpt_visual(a, imgs, 224, 224, 8, vis, &err) == MER_OK);
    const float *rv = T(ex, "visual_feats", &n);
    if (rv) {
        double e = rel_err(vis, rv, n);
        CHECK_MSG(e < 1e-4, "%s visual features rel err %g", face ? "face" : "frame", e);
    }
    /* audio features: clips of the procedural 3.3 s waveform, joint normalisation, transformers-5 list */
    float *wav = make_wav(52800), *clips = malloc((size_t)8 * 32000 * sizeof(float));
    mer_audio_clips(wav, 52800, 16000, 8, 2, clips);
    CHECK(mer__agpt_audio(a, clips, 8, 32000, 0, 1, aud, &err) == MER_OK);
    const float *ra = T(ex, "audio_feats", &n);
    if (ra) {
        double e = rel_err(aud, ra, n);
        CHECK_MSG(e < 1e-4, "audio features rel err %g", e);
    }
    /* fusion from the reference features */
    int D = a->n_embd;
    float fused[3 * 64];
    if (rv && ra) {
        CHECK(mer_affectgpt_fuse(&a->fusion, a->cpu, rv, 8, ra, 8, fused, fused + D, fused + 2 * D, &err) == MER_OK);
        const char *names[3] = {"frame_llm", "audio_llm", "multi_llm"};
        for (int k = 0; k < 3; k++) {
            const float *r = T(ex, names[k], &n);
            if (r) {
                double e = rel_err(fused + k * D, r, n);
                CHECK_MSG(e < 1e-4, "%s rel err %g", names[k], e);
            }
        }
    }
    /* prompt ids and embeddings with the splice */
    float *embd = NULL;
    int32_t *ids = NULL;
    size_t n_tok = 0;
    CHECK(mer__agpt_prompt_embd(a, face ? MER_INPUT_FACE : MER_INPUT_FRAME, "Look, Ouyang is getting married too. I'm so happy for him!",
                                MER_QUESTION_OV, fused, &embd, &ids, &n_tok, &err) == MER_OK);
    const mer_wtensor *pid = mer_weights_find(ex, "prompt_ids");
    if (pid && ids) {
        const int32_t *r = pid->data;
        size_t nr = pid->n_bytes / 4, bad = 0;
        CHECK_EQ_INT(n_tok, nr);
        int32_t ph[3] = {mer_tokenizer_token_id(a->tok, face ? "<FaceHere>" : "<FrameHere>", face ? 10 : 11),
                         mer_tokenizer_token_id(a->tok, "<AudioHere>", 11), mer_tokenizer_token_id(a->tok, "<MultiHere>", 11)};
        for (size_t i = 0; i < n_tok && i < nr; i++) {
            int32_t mine = ids[i] >= 0 ? ids[i] : ph[-ids[i] - 1];
            bad += mine != r[i];
        }
        CHECK_MSG(bad == 0, "%zu prompt ids differ", bad);
        const float *re = T(ex, "embeds", &n);
        if (re && n == n_tok * (size_t)D) {
            double e = rel_err(embd, re, n);
            CHECK_MSG(e < 1e-4, "prompt embeddings rel err %g", e);
        }
        /* greedy: 24 tokens from the reference embeddings, no stop */
        if (re) {
            mer_qwen2_ctx_reset(a->llm_ctx);
            CHECK(mer_qwen2_prefill_embd(a->llm_ctx, re, n_tok, &err) == MER_OK);
            int nr_l;
            const float *lg = mer_qwen2_logits(a->llm_ctx, &nr_l);
            const float *rl = T(ex, "last_logits", &n);
            if (lg && rl) {
                double e = rel_err(lg, rl, n);
                CHECK_MSG(e < 1e-4, "last logits rel err %g", e);
            }
            mer_generate_params g = mer_generate_default_params();
            g.max_new_tokens = 24;
            mer_generate_result res = {0};
            CHECK(mer_qwen2_generate(a->llm_ctx, NULL, NULL, 0, &g, NULL, NULL, &res, &err) == MER_OK);
            const mer_wtensor *gt = mer_weights_find(ex, "greedy");
            if (gt) {
                const int32_t *g_ref = gt->data;
                CHECK_EQ_INT(res.n_ids, gt->n_bytes / 4);
                size_t diff = 0;
                for (size_t i = 0; i < res.n_ids && i < gt->n_bytes / 4; i++) diff += res.ids[i] != g_ref[i];
                CHECK_MSG(diff == 0, "%s: %zu of 24 greedy tokens differ", face ? "face" : "frame", diff);
            }
            free(res.ids);
        }
    }
    free(embd);
    free(ids);
    free(src);
    free(big);
    free(wav);
    free(clips);
    mer_weights_close(ex);
}

static void run(void) {
    mer_infer_params p = mer_infer_default_params();
    p.clip = FIXTURES "/models/clip_tiny";
    p.hubert = FIXTURES "/models/hubert_tiny";
    p.llm = AG "/llm";
    p.affectgpt = AG "/checkpoint_000035_loss_0.000.pth";
    p.lora_scale = 2.0;
    p.n_threads = 2;
    mer__agpt *a = NULL;
    mer_err err = {0};
    CHECK_MSG(mer__agpt_load(&p, &a, &err) == MER_OK, "load: %s", err.msg);
    if (!a) return;
    one_config(a, 1);
    one_config(a, 0);
    mer__agpt_free(a);

    /* a wrong part: the HuBERT checkpoint given as the CLIP one is an error naming a missing tensor */
    p.clip = FIXTURES "/models/hubert_tiny";
    CHECK(mer__agpt_load(&p, &a, &err) == MER_E_NOTFOUND && a == NULL);
    CHECK_MSG(strstr(err.msg, "hubert_tiny") && strstr(err.msg, "vision_model"), "message: %s", err.msg);
    /* a checkpoint without the fusion layers (a plain LoRA adapter) names the missing tensor */
    p.clip = FIXTURES "/models/clip_tiny";
    p.affectgpt = FIXTURES "/models/qwen2_lora/adapter.pth";
    p.llm = FIXTURES "/models/qwen2_tiny";
    p.tokenizer = AG "/llm/tokenizer.json";
    CHECK(mer__agpt_load(&p, &a, &err) == MER_E_NOTFOUND && a == NULL);
    CHECK_MSG(strstr(err.msg, "affectgpt_proj.weight") != NULL, "message: %s", err.msg);
}
