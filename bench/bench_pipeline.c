/* bench_pipeline.c - per-clip CPU time of each stage of AffectGPT inference at the real shapes with
 * random weights (src/models/random_models.c), on this machine: media decoding (8 frames at 224x224 from
 * an H.264 mp4 and 16 kHz audio from its AAC track, 8 clips of 2 s), CLIP ViT-L/14 on the 8 frames,
 * chinese-hubert-large on the 8 clips, the fusion, the LLM prefill of the prompt (its real length with
 * Qwen2.5's tokenizer when installed) and per-token decoding, for q4_0 and q8_0 Qwen2.5-7B weights.
 * The PyTorch / HF comparisons of the encoders and of decoding are bench_encoders and bench_decode (and
 * bench/gpu.sh on a GPU); this one shows where a clip's time goes. Usage: bench_pipeline [N_DECODE]. */
#include "media/audio.h"
#include "models/affectgpt.h"
#include "models/clip.h"
#include "models/clip_preprocess.h"
#include "models/hubert.h"
#include "models/random_models.h"
#include "core/sampling.h"
#include "io/wav.h"
#include "pipeline/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, const mer_err *e) {
    fprintf(stderr, "bench_pipeline: %s: %s\n", what, e->msg);
    exit(1);
}

#define T_DIR "build-bench-tmp"

int main(int argc, char **argv) {
    int n_decode = argc > 1 ? atoi(argv[1]) : 8;
    if (n_decode < 1) n_decode = 1;
    mer_err err = {0};
#if !MER_MEDIA
    printf("pipeline: skipped (built without FFmpeg)\n");
    return 0;
#else
    if (system("mkdir -p " T_DIR " && ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi "
               "-i sine=frequency=300:sample_rate=44100 -t 10 -c:v libx264 -pix_fmt yuv420p -c:a aac -ac 2 " T_DIR
               "/clip.mp4")) {
        printf("pipeline: skipped (needs the ffmpeg command to make the test clip)\n");
        return 0;
    }
    mer_threadpool *pool = NULL;
    mer_cpu_ctx *cpu = NULL;
    if (mer_threadpool_init(0, &pool, &err) || mer_cpu_ctx_init(pool, MER_ISA_AUTO, &cpu, &err)) die("init", &err);
    int nth = mer_threadpool_n_threads(pool);
    printf("pipeline: per-clip stage times, real shapes, random weights, %d threads, %s\n", nth,
           mer_cpu_isa_name(mer_cpu_detect()));

    /* 1. media: 8 frames at 224x224 and the audio track at 16 kHz, clips */
    uint8_t *frames = malloc((size_t)8 * 224 * 224 * 3);
    float *clips = malloc((size_t)8 * 32000 * sizeof(float));
    double t0 = now();
    mer_video *v = NULL;
    int64_t idx[8];
    if (mer_video_open(T_DIR "/clip.mp4", &v, &err)) die("video", &err);
    mer__frame_indices(mer_video_get_info(v)->n_frames, 8, idx);
    if (mer_video_read(v, idx, 8, 224, 224, frames, &err)) die("frames", &err);
    mer_video_close(v);
    float *wav = NULL;
    size_t n_wav = 0;
    if (mer__audio_decode(T_DIR "/clip.mp4", 16000, &wav, &n_wav, &err)) die("audio", &err);
    mer_audio_clips(wav, n_wav, 16000, 8, 2, clips);
    free(wav);
    double t_media = now() - t0;

    /* 2. CLIP ViT-L/14 on the 8 frames */
    mer_weights *wc = NULL, *wh = NULL, *wf = NULL;
    mer_config *cc = NULL, *hc = NULL;
    mer_clip *clip = NULL;
    mer_clip_ctx *cx = NULL;
    if (mer__random_clip_l14(1, &wc, &err) ||
        mer__config_parse(mer__clip_l14_config, strlen(mer__clip_l14_config), "clip config", &cc, &err) ||
        mer_clip_load(wc, cc, &clip, &err) || mer_clip_ctx_init(clip, cpu, &cx, &err))
        die("clip", &err);
    float *px = malloc((size_t)3 * 224 * 224 * sizeof(float)), vis[8 * 768], aud[8 * 1024];
    t0 = now();
    for (int i = 0; i < 8; i++) {
        mer_clip_out o = {0};
        o.image_embeds = vis + i * 768;
        if (mer_clip_preprocess(frames + (size_t)i * 224 * 224 * 3, 224, 224, 224, 224, px, NULL, &err) ||
            mer_clip_encode(cx, px, &o, &err))
            die("clip encode", &err);
    }
    double t_clip = now() - t0;
    mer_clip_ctx_free(cx);
    mer_clip_free(clip);
    mer_weights_close(wc);
    mer__config_free(cc);

    /* 3. HuBERT-large on the 8 clips */
    mer_hubert *hub = NULL;
    mer_hubert_ctx *hx = NULL;
    if (mer__random_hubert_large(2, &wh, &err) ||
        mer__config_parse(mer__hubert_large_config, strlen(mer__hubert_large_config), "hubert config", &hc, &err) ||
        mer_hubert_load(wh, hc, &hub, &err) || mer_hubert_ctx_init(hub, cpu, 32000, &hx, &err))
        die("hubert", &err);
    t0 = now();
    mer_hubert_normalize(clips, 8, 32000, 1);
    if (mer_hubert_pool(hx, clips, 8, 32000, -1, 0, aud, &err)) die("hubert pool", &err);
    double t_hub = now() - t0;
    mer_hubert_ctx_free(hx);
    mer_hubert_free(hub);
    mer_weights_close(wh);
    mer__config_free(hc);

    /* 4. fusion to the 3584-wide LLM */
    mer_affectgpt_fusion fu;
    float fused[3 * 3584];
    if (mer__random_fusion(3, 768, 1024, 3584, &wf, &err) || mer_affectgpt_fusion_load(wf, "", &fu, &err)) die("fusion", &err);
    t0 = now();
    if (mer_affectgpt_fuse(&fu, cpu, vis, 8, aud, 8, fused, fused + 3584, fused + 2 * 3584, &err)) die("fuse", &err);
    double t_fuse = now() - t0;
    mer_affectgpt_fusion_free(&fu);
    mer_weights_close(wf);

    /* prompt length: the face-config Track2 prompt with a typical subtitle, by Qwen2.5's tokenizer */
    int n_prompt = 0;
    mer_buf pr = {0};
    mer__affectgpt_prompt(&pr, MER_INPUT_FACE, "Look, Ouyang is getting married too. How about you, when are you getting married?",
                          MER_QUESTION_OV, 1);
    mer_tokenizer *tok = NULL;
    if (access("models/qwen2-tokenizer/tokenizer.json", R_OK) == 0 &&
        mer_tokenizer_load("models/qwen2-tokenizer/tokenizer.json", NULL, &tok, &err) == MER_OK) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (mer_tokenizer_encode(tok, pr.data, pr.len, &ids, &n, &err) == MER_OK) n_prompt = (int)n;
        free(ids);
        mer_tokenizer_free(tok);
    }
    const char *len_src = n_prompt ? "Qwen2.5 tokenizer" : "estimate (tokenizer not installed)";
    if (!n_prompt) n_prompt = 180;
    mer__buf_free(&pr);

    printf("  %-34s %9.1f ms\n", "decode media (8 frames + audio)", t_media * 1e3);
    printf("  %-34s %9.1f ms  (%.1f ms per frame)\n", "CLIP ViT-L/14, 8 frames", t_clip * 1e3, t_clip * 1e3 / 8);
    printf("  %-34s %9.1f ms  (%.1f ms per 2 s clip)\n", "HuBERT-large, 8 clips", t_hub * 1e3, t_hub * 1e3 / 8);
    printf("  %-34s %9.3f ms\n", "fusion", t_fuse * 1e3);

    /* 5-6. Qwen2.5-7B: prefill of the prompt embeddings, then decoding */
    mer_dtype types[2] = {MER_DTYPE_Q4_0, MER_DTYPE_Q8_0};
    mer__qwen2_hp hp;
    mer__qwen25_7b_hp(&hp);
    for (int k = 0; k < 2; k++) {
        mer_qwen2 *m = NULL;
        mer_qwen2_ctx *c = NULL;
        size_t bytes = 0;
        if (mer__random_qwen2(&hp, types[k], 7, &m, &bytes, &err)) die("qwen2", &err);
        mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
        cp.n_ctx = 1024;
        cp.n_batch = 512;
        if (mer_qwen2_ctx_init(m, &cp, &c, &err)) die("qwen2 ctx", &err);
        float *embd = malloc((size_t)n_prompt * 3584 * sizeof(float));
        int32_t zero = 0;
        for (int i = 0; i < n_prompt; i++) mer_qwen2_embed(m, &zero, 1, embd + (size_t)i * 3584, &err);
        memcpy(embd, fused, 3 * 3584 * sizeof(float));
        t0 = now();
        if (mer_qwen2_prefill_embd(c, embd, (size_t)n_prompt, &err)) die("prefill", &err);
        double t_pre = now() - t0;
        int32_t id = 1;
        t0 = now();
        for (int i = 0; i < n_decode; i++)
            if (mer_qwen2_prefill(c, &id, 1, &err)) die("decode", &err);
        double t_dec = (now() - t0) / n_decode;
        printf("  %-34s %9.1f ms  (%d tokens, length from the %s; %.1f tokens/s)\n",
               types[k] == MER_DTYPE_Q4_0 ? "LLM prefill, q4_0" : "LLM prefill, q8_0", t_pre * 1e3, n_prompt, len_src,
               n_prompt / t_pre);
        printf("  %-34s %9.1f ms  per token (%.2f tokens/s; %.2f GiB of weights)\n",
               types[k] == MER_DTYPE_Q4_0 ? "LLM decode, q4_0" : "LLM decode, q8_0", t_dec * 1e3, 1.0 / t_dec,
               bytes / 1073741824.0);
        printf("  %-34s %9.1f ms  (30 generated tokens)\n", types[k] == MER_DTYPE_Q4_0 ? "one clip end to end, q4_0" : "one clip end to end, q8_0",
               (t_media + t_clip + t_hub + t_fuse + t_pre + 30 * t_dec) * 1e3);
        free(embd);
        mer_qwen2_ctx_free(c);
        mer_qwen2_free(m);
    }
    free(px);
    free(frames);
    free(clips);
    mer_cpu_ctx_free(cpu);
    mer_threadpool_free(pool);
    return 0;
#endif
}
