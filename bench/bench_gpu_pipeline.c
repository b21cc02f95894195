/* bench_gpu_pipeline.c - AffectGPT end to end (mer infer's pipeline) on the GPU, or on the CPU for a smoke
 * run: (a) one clip, stage by stage: preprocessing (read the 8 face crops and the WAV; resize and CLIP
 * pixels an image a thread, as mer infer does; 8 clips of 2 s, normalisation), CLIP on the 8 images (one
 * batch), HuBERT on the 8 clips (one batch), the fusion, the prompt (tokenize, embed, splice), the LLM
 * prefill and a fixed number of generated tokens (min_new_tokens = max_new_tokens, so every clip decodes
 * exactly that many); (b) a dataset run of many clips through mer__infer_run_agpt (the job runner, the
 * SQLite store, media loaded ahead on the loading thread, features, continuous batching) in clips/s, for
 * each batch size asked.
 *
 * Models: at the real shapes (--shape real: CLIP ViT-L/14, chinese-hubert-large, the fusion, Qwen2.5-7B
 * in bf16, random weights from models/random_models.c uploaded to the device) or the tiny test fixtures
 * (--shape tiny, the CPU default: a smoke run in seconds). Inputs are synthetic: per clip 8 face crops
 * of 112x112 (an OpenFace-style .npy) and a WAV of --audio-s seconds, a one-line subtitle; the prompt is
 * AffectGPT's face-config Track2 prompt, tokenized by Qwen2.5's tokenizer when models/qwen2-tokenizer is
 * there (about 150 tokens), else the tiny fixture's (longer: said in the output). Sampling is the
 * reference's (T 1, top-p 0.9, top-k 20; seed + i).
 *
 *   bench_gpu_pipeline [--device cpu|cuda] [--shape real|tiny] [--clips N] [--batch B[,B2...]]
 *                      [--gen T] [--reps R] [--audio-s S] [--dir DIR] [--threads N]
 *
 * Defaults: the GPU when there is one (real shapes, 64 clips, batch 8 and 16, 30 tokens), else the CPU
 * (tiny shapes, 8 clips, batch 4). Every figure is also printed as "RESULT <key> <value> <unit>". */
#include "io/npy.h"
#include "io/wav.h"
#include "models/clip_preprocess.h"
#include "models/random_models.h"
#include "core/sampling.h"
#include "pipeline/agpt.h"
#include "pipeline/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench_gpu_pipeline"
#include "bench_gpu_common.h"

#define AG "tests/fixtures/models/affectgpt_tiny"
#define QWEN_TOK "models/qwen2-tokenizer/tokenizer.json"
#define SUBTITLE "Look, Ouyang is getting married too. How about you, when are you getting married?"

// --- the synthetic dataset --------------------------------------------------------------------------

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static void write_or_die(const char *path, const void *data, size_t n) {
    mer_err e = {0};
    if (mer__write_file_atomic(path, data, n, &e)) die("write", &e);
}

/* A 16-bit mono 16 kHz WAV of sec seconds: a wobbling tone with noise (speech-like energy). */
static void write_wav(const char *path, double sec, int seed) {
    size_t n = (size_t)(sec * 16000);
    size_t bytes = 44 + 2 * n;
    uint8_t *b = malloc(bytes);
    uint32_t v32;
    uint16_t v16;
    memcpy(b, "RIFF", 4), v32 = (uint32_t)(bytes - 8), memcpy(b + 4, &v32, 4), memcpy(b + 8, "WAVEfmt ", 8);
    v32 = 16, memcpy(b + 16, &v32, 4), v16 = 1, memcpy(b + 20, &v16, 2), memcpy(b + 22, &v16, 2);
    v32 = 16000, memcpy(b + 24, &v32, 4), v32 = 32000, memcpy(b + 28, &v32, 4), v16 = 2, memcpy(b + 32, &v16, 2);
    v16 = 16, memcpy(b + 34, &v16, 2), memcpy(b + 36, "data", 4), v32 = (uint32_t)(2 * n), memcpy(b + 40, &v32, 4);
    double f = 140 + 7 * (seed % 23), ph = 0;
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / 16000;
        ph += 2 * 3.141592653589793 * f * (1 + 0.05 * __builtin_sin(2 * 3.141592653589793 * 3 * t)) / 16000;
        double x = 0.3 * __builtin_sin(ph) + 0.02 * ((double)(rnd() & 0xffff) / 32768.0 - 1);
        int16_t s = (int16_t)(x * 32767);
        memcpy(b + 44 + 2 * i, &s, 2);
    }
    write_or_die(path, b, bytes);
    free(b);
}

/* n_total clips named c0000.. under dir (MER2025 layout), and names files for the first k of them. */
static void make_dataset(const char *dir, int n_total, double audio_s) {
    char path[4096];
    mer_err e = {0};
    snprintf(path, sizeof path, "mkdir -p %s/audio %s/openface_face", dir, dir);
    if (system(path)) {
        fprintf(stderr, "bench_gpu_pipeline: cannot make %s\n", dir);
        exit(1);
    }
    mer_buf subs = {0};
    mer__buf_append(&subs, "name,chinese,english\n", 21);
    uint8_t *faces = malloc((size_t)8 * 112 * 112 * 3);
    for (int i = 0; i < n_total; i++) {
        char name[32];
        snprintf(name, sizeof name, "c%04d", i);
        snprintf(path, sizeof path, "%s/openface_face/%s", dir, name);
        mkdir(path, 0777);
        for (size_t k = 0; k < (size_t)8 * 112 * 112 * 3; k++) faces[k] = (uint8_t)(rnd() >> 24);
        int64_t shape[4] = {8, 112, 112, 3};
        mer_buf b = {0};
        if (mer__npy_write(&b, "|u1", 4, shape, faces, (size_t)8 * 112 * 112 * 3)) die("npy", &e);
        snprintf(path, sizeof path, "%s/openface_face/%s/%s.npy", dir, name, name);
        write_or_die(path, b.data, b.len);
        mer__buf_free(&b);
        snprintf(path, sizeof path, "%s/audio/%s.wav", dir, name);
        write_wav(path, audio_s, i);
        mer__buf_printf(&subs, "%s,,\"%s\"\n", name, SUBTITLE);
    }
    snprintf(path, sizeof path, "%s/subtitle_chieng.csv", dir);
    write_or_die(path, subs.data, subs.len);
    mer__buf_free(&subs);
    free(faces);
}

static void write_names(const char *path, int first, int n) {
    mer_buf b = {0};
    mer__buf_append(&b, "name\n", 5);
    for (int i = first; i < first + n; i++) mer__buf_printf(&b, "c%04d\n", i);
    write_or_die(path, b.data, b.len);
    mer__buf_free(&b);
}

// --- models -----------------------------------------------------------------------------------------

/* The random encoders' weights and configurations, which the loaded encoders borrow. */
typedef struct parts {
    mer_weights *cw, *hw;
    mer_config *cc, *hc;
} parts;

static mer__agpt *build(const mer_infer_params *p, int real, const char **tok_desc, parts *pt) {
    mer_err e = {0};
    mer_clip *clip = NULL;
    mer_hubert *hub = NULL;
    mer_qwen2 *llm = NULL;
    mer_weights *fw = NULL, *cw = NULL, *hw = NULL;
    mer_config *cc = NULL, *hc = NULL;
    const char *tok = access(QWEN_TOK, R_OK) == 0 && real ? QWEN_TOK : AG "/llm/tokenizer.json";
    *tok_desc = tok == (const char *)QWEN_TOK ? "Qwen2.5's tokenizer" : "the tiny fixture's tokenizer (no " QWEN_TOK ")";
    double t0 = now_s();
    if (real) {
        if (mer__random_clip_l14(1, &cw, &e) ||
            mer__config_parse(mer__clip_l14_config, strlen(mer__clip_l14_config), "clip config", &cc, &e) ||
            mer_clip_load(cw, cc, &clip, &e))
            die("clip", &e);
        if (mer__random_hubert_large(2, &hw, &e) ||
            mer__config_parse(mer__hubert_large_config, strlen(mer__hubert_large_config), "hubert config", &hc, &e) ||
            mer_hubert_load(hw, hc, &hub, &e))
            die("hubert", &e);
        mer__qwen2_hp hp;
        mer__qwen25_7b_hp(&hp);
        mer_dtype t = p->device == MER_DEVICE_CUDA ? MER_DTYPE_BF16 : MER_DTYPE_Q8_0;
        if (mer__random_qwen2(&hp, t, 7, &llm, NULL, &e)) die("qwen2", &e);
        if (p->device == MER_DEVICE_CUDA) {
            mer_qwen2_params qp = mer_qwen2_default_params();
            qp.device = MER_DEVICE_CUDA;
            qp.n_seq = p->batch > 1 ? p->batch : 1;
            qp.n_ctx = 2048;
            if (mer__qwen2_dev_attach(llm, &qp, &e)) die("qwen2 upload", &e);
        }
        if (mer__random_fusion(3, 768, 1024, hp.n_embd, &fw, &e)) die("fusion", &e);
    } else {
        if (mer_clip_open("tests/fixtures/models/clip_tiny", &clip, &e) ||
            mer_hubert_open("tests/fixtures/models/hubert_tiny", &hub, &e))
            die("tiny encoders", &e);
        mer_qwen2_params qp = mer_qwen2_default_params();
        qp.device = p->device;
        qp.n_seq = p->batch > 1 ? p->batch : 1;
        qp.n_ctx = 2048;
        if (mer_qwen2_load(AG "/llm", &qp, &llm, &e)) die("tiny llm", &e);
        if (mer_weights_open(AG "/checkpoint_000035_loss_0.000.pth", &fw, &e)) die("tiny fusion", &e);
    }
    mer__agpt *a = NULL;
    if (mer__agpt_from_parts(p, clip, hub, llm, fw, tok, &a, &e)) die("assemble", &e);
    mer_weights_close(fw);
    pt->cw = cw, pt->hw = hw, pt->cc = cc, pt->hc = hc; /* closed after a */
    printf("models built and loaded in %.1f s\n", now_s() - t0);
    return a;
}

// --- (a) one clip, stage by stage --------------------------------------------------------------------

enum { ST_PRE, ST_CLIP, ST_HUB, ST_FUSE, ST_PROMPT, ST_PREFILL, ST_DECODE, ST_N };
static const char *const stage_names[ST_N] = {"preprocess (read, resize, pixels, clips)", "CLIP, 8 images (one batch)",
                                              "HuBERT, 8 clips of 2 s (one batch)", "fusion (CPU)",
                                              "prompt (tokenize, embed, splice)", "LLM prefill", "LLM decode"};
static const char *const stage_keys[ST_N] = {"preprocess", "clip", "hubert", "fusion", "prompt", "prefill", "decode"};

static void one_clip(mer__agpt *a, const char *dir, int n_gen, int reps) {
    mer_err e = {0};
    const int S = a->clip->hp.image_size;
    double (*t)[ST_N] = calloc((size_t)reps + 1, sizeof *t), tot[64];
    uint8_t *imgs = malloc((size_t)8 * 224 * 224 * 3);
    float *px = malloc((size_t)8 * 3 * S * S * sizeof(float)), *clips = malloc((size_t)8 * 32000 * sizeof(float));
    float *vis = malloc((size_t)8 * a->n_visual * sizeof(float)), *aud = malloc((size_t)8 * a->n_audio * sizeof(float));
    float *fused = malloc((size_t)3 * a->n_embd * sizeof(float));
    size_t n_tok = 0;
    /* the images over a pool as infer's loading thread does it: one thread per image, at most the CPUs */
    long n_prep = sysconf(_SC_NPROCESSORS_ONLN);
    mer_threadpool *prep = NULL;
    if (mer_threadpool_init(n_prep < 1 ? 1 : n_prep > 8 ? 8 : (int)n_prep, &prep, &e)) die("pool", &e);
    for (int r = 0; r <= reps; r++) { /* r = 0 is the warm-up */
        char path[4096], name[32];
        snprintf(name, sizeof name, "c%04d", r);
        double t0 = now_s();
        /* preprocessing as infer.c's loader does it */
        snprintf(path, sizeof path, "%s/openface_face/%s/%s.npy", dir, name, name);
        mer_map m;
        mer_npy arr;
        if (mer__map_open(path, &m, &e) || mer__npy_parse(path, m.data, m.size, &arr, &e)) die("npy", &e);
        int64_t idx[8];
        mer__frame_indices(arr.shape[0], 8, idx);
        if (mer__agpt_images(a, prep, arr.data, idx, 112, 112, 0, 8, imgs, px, &e)) die("images", &e);
        mer__map_close(&m);
        float *wav = NULL;
        size_t n_wav = 0;
        snprintf(path, sizeof path, "%s/audio/%s.wav", dir, name);
        if (mer_wav_load_16k_mono(path, &wav, &n_wav, &e)) die("wav", &e);
        mer_audio_clips(wav, n_wav, 16000, 8, 2, clips);
        free(wav);
        mer_hubert_normalize(clips, 8, 32000, 1);
        double t1 = now_s();
        if (mer__agpt_clip(a, px, 8, vis, &e)) die("clip", &e);
        double t2 = now_s();
        if (mer__agpt_hubert(a, clips, 8, 32000, 0, aud, &e)) die("hubert", &e);
        double t3 = now_s();
        if (mer__agpt_fuse(a, vis, 8, aud, 8, fused, &e)) die("fuse", &e); /* where the pipeline runs it */
        double t4 = now_s();
        float *embd = NULL;
        if (mer__agpt_prompt(a, MER_INPUT_FACE, SUBTITLE, MER_QUESTION_OV, vis, 8, aud, 8, n_gen, &embd, &n_tok, &e))
            die("prompt", &e);
        double t5 = now_s();
        mer_qwen2_ctx *c = NULL;
        if (mer__agpt_llm_ctx(a, &c, &e)) die("llm ctx", &e);
        mer_qwen2_ctx_reset(c);
        if (mer_qwen2_prefill_embd(c, embd, n_tok, &e)) die("prefill", &e);
        double t6 = now_s();
        mer_generate_params g = mer_generate_default_params();
        g.sampling.temperature = 1.0;
        g.sampling.top_p = 0.9;
        g.sampling.top_k = 20;
        g.sampling.seed = (uint64_t)r;
        g.max_new_tokens = g.min_new_tokens = n_gen;
        mer__agpt_gen_params(a, &g);
        g.n_stop_strings = 0; /* exactly n_gen tokens; "###" is cut from the ids below as the batched run does */
        g.stop_strings = NULL;
        mer_generate_result res = {0};
        if (mer_qwen2_generate(c, a->tok, NULL, 0, &g, NULL, NULL, &res, &e)) die("generate", &e);
        mer_buf ans = {0};
        if (mer__agpt_answer_ids(a, res.ids, res.n_ids, &ans, &e)) die("answer", &e);
        double t7 = now_s();
        if ((int)res.n_ids != n_gen) {
            fprintf(stderr, "bench_gpu_pipeline: %zu tokens generated, %d asked\n", res.n_ids, n_gen);
            exit(1);
        }
        free(res.ids);
        mer__buf_free(&ans);
        free(embd);
        double st[ST_N] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3, (t5 - t4) - (t4 - t3), t6 - t5, t7 - t6};
        for (int k = 0; k < ST_N; k++) t[r][k] = st[k] * 1e3;
        tot[r] = (t1 - t0) + (t3 - t1) + (t7 - t4);
    }
    printf("\n(a) one clip end to end, median of %d (after a warm-up), prompt %zu tokens, %d generated:\n", reps, n_tok,
           n_gen);
    double col[64], sum = 0;
    for (int k = 0; k < ST_N; k++) {
        for (int r = 0; r < reps; r++) col[r] = t[r + 1][k];
        double m = median(col, reps);
        sum += m;
        char extra[96] = "";
        if (k == ST_DECODE) snprintf(extra, sizeof extra, "  (%.2f ms/token, %.1f tokens/s)", m / n_gen, n_gen * 1e3 / m);
        if (k == ST_PREFILL) snprintf(extra, sizeof extra, "  (%.0f tokens/s)", n_tok * 1e3 / m);
        printf("  %-44s %9.2f ms%s\n", k == ST_FUSE && a->fusion_g ? "fusion (GPU)" : stage_names[k], m, extra);
        char key[64];
        snprintf(key, sizeof key, "e2e_%s_ms", stage_keys[k]);
        result(key, m, "ms");
    }
    for (int r = 0; r < reps; r++) col[r] = tot[r + 1] * 1e3;
    double m = median(col, reps);
    printf("  %-44s %9.2f ms  (sum of the stage medians %.2f ms; target <= 250 ms on the H100)\n", "one clip, total", m,
           sum);
    result("e2e_total_ms", m, "ms");
    result("e2e_prompt_tokens", (double)n_tok, "tokens");
    mer_threadpool_free(prep);
    free(t), free(imgs), free(px), free(clips), free(vis), free(aud), free(fused);
}

// --- (b) a dataset run -------------------------------------------------------------------------------

static double dataset_run(mer__agpt *a, const mer_infer_params *p0, const char *dir, int first, int n, int batch,
                          const char *tag, mer_job_summary *s) {
    char names[4096], out[4096], cmd[8300];
    snprintf(names, sizeof names, "%s/names_%s.csv", dir, tag);
    snprintf(out, sizeof out, "%s/out_%s.npz", dir, tag);
    write_names(names, first, n);
    snprintf(cmd, sizeof cmd, "rm -f '%s' '%s.db'", out, out);
    if (system(cmd)) exit(1);
    mer_infer_params p = *p0;
    p.data_dir = dir;
    p.names = names;
    p.batch = batch;
    p.progress = 0;
    mer_err e = {0};
    double t0 = now_s();
    if (mer__infer_run_agpt(&p, a, out, s, &e)) die("infer run", &e);
    double secs = now_s() - t0;
    if (s->n_ok != (size_t)n) {
        fprintf(stderr, "bench_gpu_pipeline: %zu of %d clips answered; the first failures:\n", s->n_ok, n);
        char csv[4200], line[2048];
        snprintf(csv, sizeof csv, "%s", out);
        char *dot = strrchr(csv, '.');
        if (dot && !strcmp(dot, ".npz")) strcpy(dot, ".csv");
        FILE *f = fopen(csv, "r");
        for (int k = 0; f && k < 5 && fgets(line, sizeof line, f);)
            if (strstr(line, ",0,")) fprintf(stderr, "  %s", line), k++;
        if (f) fclose(f);
        else fprintf(stderr, "  (no %s to show them)\n", csv);
        exit(1);
    }
    return secs;
}

// --- main --------------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    const char *device = NULL, *shape = NULL, *batches = NULL, *dir = "build-bench-tmp/gpu_pipeline";
    int n_clips = 0, n_gen = 30, reps = 5, n_threads = 0;
    double audio_s = 6;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "usage: see the comment at the top of bench/bench_gpu_pipeline.c\n");
            return 2;
        }
        i++;
        if (!strcmp(o, "--device")) device = v;
        else if (!strcmp(o, "--shape")) shape = v;
        else if (!strcmp(o, "--clips")) n_clips = atoi(v);
        else if (!strcmp(o, "--batch")) batches = v;
        else if (!strcmp(o, "--gen")) n_gen = atoi(v);
        else if (!strcmp(o, "--reps")) reps = atoi(v);
        else if (!strcmp(o, "--audio-s")) audio_s = atof(v);
        else if (!strcmp(o, "--dir")) dir = v;
        else if (!strcmp(o, "--threads")) n_threads = atoi(v);
        else {
            fprintf(stderr, "bench_gpu_pipeline: unknown option %s\n", o);
            return 2;
        }
    }
    mer_err e = {0};
    mer_device dev = MER_DEVICE_AUTO;
    if (device && mer_device_parse(device, &dev, &e)) die("--device", &e);
    dev = mer_device_resolve(dev);
    int real = shape ? !strcmp(shape, "real") : dev == MER_DEVICE_CUDA;
    if (!n_clips) n_clips = dev == MER_DEVICE_CUDA ? 64 : 8;
    if (!batches) batches = dev == MER_DEVICE_CUDA ? "8,16" : "4";
    if (reps < 1) reps = 1;
    if (reps > 60) reps = 60;
    if (n_gen < 1) n_gen = 1;
    int bl[16], nb = 0, bmax = 1;
    for (const char *s = batches; *s && nb < 16;) {
        bl[nb] = atoi(s);
        if (bl[nb] < 1) bl[nb] = 1;
        if (bl[nb] > bmax) bmax = bl[nb];
        nb++;
        const char *c = strchr(s, ',');
        if (!c) break;
        s = c + 1;
    }
    printf("bench_gpu_pipeline: AffectGPT end to end on %s, %s shapes, %d clips, batch %s, %d generated tokens, "
           "audio %.1f s per clip\n",
           mer_device_name(dev), real ? "real (CLIP-L/14, HuBERT-L, Qwen2.5-7B bf16, random weights)" : "tiny fixture",
           n_clips, batches, n_gen, audio_s);
    mer_infer_params p = mer_infer_default_params();
    p.device = dev;
    p.batch = bmax;
    p.n_threads = n_threads;
    p.max_new_tokens = p.min_new_tokens = n_gen;
    p.clip = "random-clip";
    p.hubert = "random-hubert";
    p.llm = "random-qwen2";
    p.affectgpt = "random-fusion";
    const char *tok_desc;
    parts pt = {0};
    mer__agpt *a = build(&p, real, &tok_desc, &pt);
    mer_qwen2_info info;
    mer_qwen2_get_info(a->llm, &info);
    printf("LLM: %d layers, %d wide, %s weights on %s%s%s; encoders on %s; prompt by %s\n", info.n_layer, info.n_embd,
           info.wtype, mer_device_name(info.device), info.device_wtype ? " as " : "",
           info.device_wtype ? info.device_wtype : "", a->gpu ? "cuda" : "cpu", tok_desc);
    int n_data = n_clips + 2 * bmax > reps + 1 ? n_clips + 2 * bmax : reps + 1;
    double t0 = now_s();
    make_dataset(dir, n_data, audio_s);
    printf("synthetic dataset of %d clips written to %s in %.1f s\n", n_data, dir, now_s() - t0);

    one_clip(a, dir, n_gen, reps);

    printf("\n(b) dataset runs (mer infer's pipeline: store, loading thread, continuous batching), %d clips each:\n",
           n_clips);
    for (int k = 0; k < nb; k++) {
        mer_job_summary s;
        char tag[32];
        snprintf(tag, sizeof tag, "warm%d", bl[k]);
        dataset_run(a, &p, dir, n_clips, 2 * bl[k], bl[k], tag, &s); /* warm-up: graphs of every batch size */
        snprintf(tag, sizeof tag, "b%d", bl[k]);
        double secs = dataset_run(a, &p, dir, 0, n_clips, bl[k], tag, &s);
        printf("  batch %-3d %8.2f s  %8.2f clips/s  (%.1f ms per clip; %.0f generated tokens/s; target >= 20 clips/s)\n",
               bl[k], secs, n_clips / secs, secs * 1e3 / n_clips, (double)n_clips * n_gen / secs);
        char key[64];
        snprintf(key, sizeof key, "dataset_b%d_clips_per_s", bl[k]);
        result(key, n_clips / secs, "clips/s");
    }
    mer__agpt_free(a);
    mer_weights_close(pt.cw);
    mer_weights_close(pt.hw);
    mer__config_free(pt.cc);
    mer__config_free(pt.hc);
    return 0;
}
