/* test_infer_batch.c - batched `mer infer` (--batch N: media loaded ahead on a second thread, answers by
 * continuous batching) against the one-sample-at-a-time path on a small MER2025-layout dataset made
 * here with numpy (OpenFace-style face arrays, WAV speech-like noise, subtitles of different lengths so
 * the prompts differ), with two broken samples in the middle (a missing audio file, a face array of the
 * wrong shape): --batch 3 and 4 give the rows --batch 1 gives, greedy and sampled at a fixed seed, the
 * broken samples recorded with the same errors. And the "###" stop string applied to finished ids
 * (mer__agpt_answer_ids, for generators without stop strings) against a reference computed by decoding
 * every prefix of the ids. Models: the tiny AffectGPT. */
#include "test.h"

#include "pipeline/agpt.h"
#include "pipeline/prompt.h"

#include <stdlib.h>
#include <unistd.h>

#define D MER_TEST_TMP "/infer_batch"
#define AG FIXTURES "/models/affectgpt_tiny"

static char mer[512];

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    b[fread(b, 1, (size_t)n, f)] = 0;
    fclose(f);
    return b;
}

/* Runs mer infer into D/<tag>.npz with the given extra options; returns the CSV (caller frees). */
static char *run_infer(const char *tag, const char *opts) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s infer --clip " FIXTURES "/models/clip_tiny --hubert " FIXTURES "/models/hubert_tiny --llm " AG "/llm"
             " --affectgpt " AG "/checkpoint_000035_loss_0.000.pth --data " D "/data --threads 1 --quiet%s"
             " -o " D "/%s.npz %s 2>" D "/%s.err",
             mer, strstr(opts, "--device") ? "" : " --device cpu", tag, opts, tag);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "%s: mer infer failed (%d): see %s/%s.err", tag, rc, D, tag);
    char path[1024];
    snprintf(path, sizeof path, D "/%s.csv", tag);
    return slurp(path);
}

static void same(const char *what, const char *a, const char *b) {
    CHECK_MSG(a && b && !strcmp(a, b), "%s: the batched rows differ from --batch 1's:\n%s\n---\n%s", what,
              a ? a : "(none)", b ? b : "(none)");
}

static void check_batches(void) {
    int rc = system(
        "set -e; rm -rf " D "; mkdir -p " D "/data/audio " D "/data/openface_face; cd " D "/data;"
        "python3 - <<'EOF'\n"
        "import numpy as np, os, wave\n"
        "rng = np.random.default_rng(7)\n"
        "names = ['s%03d' % i for i in range(11)]\n"
        "open('track_all_candidates.csv', 'w').write('name\\n' + ''.join(n + '\\n' for n in names))\n"
        "rows = []\n"
        "for i, n in enumerate(names):\n"
        "    os.makedirs('openface_face/' + n, exist_ok=True)\n"
        "    k = 3 + i % 7\n"
        "    np.save('openface_face/%s/%s.npy' % (n, n), rng.integers(0, 256, (k, 112, 112, 3), dtype=np.uint8))\n"
        "    t = np.arange(int(16000 * (1.5 + i * 0.7))) / 16000.0\n"
        "    x = 0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(t.size)\n"
        "    w = wave.open('audio/%s.wav' % n, 'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)\n"
        "    w.writeframes((np.clip(x, -1, 1) * 32767).astype('<i2').tobytes()); w.close()\n"
        "    rows.append('%s,,\"%s\"\\n' % (n, ' '.join(['word%d' % (j * i % 13) for j in range(2 + 3 * i)])))\n"
        "open('subtitle_chieng.csv', 'w').write('name,chinese,english\\n' + ''.join(rows))\n"
        "os.remove('audio/s004.wav')\n"
        "np.save('openface_face/s007/s007.npy', np.zeros((4, 112, 112), np.uint8))\n"
        "EOF");
    CHECK_MSG(rc == 0, "dataset set-up failed (%d)", rc);
    if (rc) return;
    /* greedy */
    char *g1 = run_infer("g1", "--temp 0 --max-new-tokens 20 --batch 1"),
         *g4 = run_infer("g4", "--temp 0 --max-new-tokens 20 --batch 4 --threads 3");
    same("greedy, --batch 4", g1, g4);
    CHECK(g1 && strstr(g1, "s004,0,") && strstr(g1, "s007,0,") && strstr(g1, "s010,1,") && strstr(g1, "s000,1,"));
    CHECK(g1 && strstr(g1, "s004.wav: missing") && strstr(g1, "s007.npy"));
    /* sampled as the reference samples (T 1, top-p 0.9, top-k 20), seed + i per sample */
    char *r1 = run_infer("r1", "--seed 11 --max-new-tokens 24 --batch 1"),
         *r3 = run_infer("r3", "--seed 11 --max-new-tokens 24 --batch 3"),
         *r4 = run_infer("r4", "--seed 11 --max-new-tokens 24 --batch 4 --repeat-penalty 1 --threads 2"),
         *rp1 = run_infer("rp1", "--seed 3 --max-new-tokens 16 --batch 1 --repeat-penalty 1.3"),
         *rp4 = run_infer("rp4", "--seed 3 --max-new-tokens 16 --batch 4 --repeat-penalty 1.3");
    same("sampled, --batch 3", r1, r3);
    same("sampled, --batch 4", r1, r4);
    same("sampled with a repetition penalty (history: the output alone), --batch 4", rp1, rp4);
    /* the device's thread layout on the CPU: the loading thread runs encoders, fusion and prompt while the
     * LLM decodes */
    setenv("MER_INFER_ENCODE_AHEAD", "1", 1);
    char *ra = run_infer("ra", "--seed 11 --max-new-tokens 24 --batch 3 --threads 2");
    unsetenv("MER_INFER_ENCODE_AHEAD");
    same("sampled, --batch 3, encoders on the loading thread", r1, ra);
    free(ra);
    CHECK_MSG(r1 && g1 && strcmp(r1, g1), "sampling gave the greedy answers");
    /* on a GPU: the device pipeline (encoders and LLM on CUDA) in the exact f32 path gives the CPU's greedy
     * answers, batched; in bf16 its batched answers equal its own one-at-a-time ones */
    if (mer_device_resolve(MER_DEVICE_AUTO) == MER_DEVICE_CUDA) {
        char *c4 = run_infer("c4", "--temp 0 --max-new-tokens 20 --batch 4 --device cuda --type f32"),
             *b1 = run_infer("b1", "--temp 0 --max-new-tokens 20 --batch 1 --device cuda"),
             *b4 = run_infer("b4", "--temp 0 --max-new-tokens 20 --batch 4 --device cuda");
        same("cuda f32 --batch 4 against the CPU's --batch 1", g1, c4);
        same("cuda bf16 --batch 4 against cuda bf16 --batch 1", b1, b4);
        free(c4), free(b1), free(b4);
    } else {
        printf("SKIP the device runs of test_infer_batch: no CUDA device (or built without CUDA)\n");
    }
    /* numpy reads the batched result npz: 9 answers */
    rc = system("python3 -c \"import numpy as np; d=np.load('" D "/r4.npz', allow_pickle=True)['name2reason'].item(); "
                "assert len(d)==9 and 's004' not in d and 's007' not in d, d.keys()\"");
    CHECK(rc == 0);
    free(g1), free(g4), free(r1), free(r3), free(r4), free(rp1), free(rp4);
}

/* "###" cut from finished ids: the first prefix of the ids whose decoded text holds "###" (special
 * tokens kept) is what mer_qwen2_generate's stop string keeps; a stop id ends the ids first. */
static void check_stop_string(void) {
    mer_infer_params p = mer_infer_default_params();
    p.clip = FIXTURES "/models/clip_tiny";
    p.hubert = FIXTURES "/models/hubert_tiny";
    p.llm = AG "/llm";
    p.affectgpt = AG "/checkpoint_000035_loss_0.000.pth";
    p.n_threads = 1;
    p.device = MER_DEVICE_CPU;
    mer__agpt *a = NULL;
    mer_err err = {0};
    CHECK_MSG(mer__agpt_load(&p, &a, &err) == MER_OK, "load: %s", err.msg);
    if (!a) return;
    const char *texts[] = {"calm and ### then more ### x", "no stop here at all", "#", "ends with ##", "a#b##c###",
                           "happy<|im_end|> after ### it"};
    for (size_t t = 0; t < sizeof texts / sizeof *texts; t++) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(mer_tokenizer_encode(a->tok, texts[t], strlen(texts[t]), &ids, &n, &err) == MER_OK);
        /* reference: decode every prefix */
        size_t keep = n;
        for (size_t k = 1; k <= n; k++) {
            int stop = 0;
            for (size_t s = 0; s < a->n_stop; s++) stop |= ids[k - 1] == a->stop_ids[s];
            if (stop) { keep = k; break; }
            char *txt = NULL;
            size_t len = 0;
            CHECK(mer_tokenizer_decode(a->tok, ids, k, 0, &txt, &len, &err) == MER_OK);
            int hit = txt && strstr(txt, "###");
            free(txt);
            if (hit) { keep = k; break; }
        }
        char *txt = NULL;
        size_t len = 0;
        mer_buf want = {0}, got = {0};
        CHECK(mer_tokenizer_decode(a->tok, ids, keep, 0, &txt, &len, &err) == MER_OK);
        CHECK(mer__affectgpt_answer_clean(txt, "<|im_start|>", "<|im_end|>", &want) == MER_OK);
        CHECK_MSG(mer__agpt_answer_ids(a, ids, n, &got, &err) == MER_OK, "%s", err.msg);
        CHECK_MSG(want.len == got.len && (!want.len || !memcmp(want.data, got.data, want.len)),
                  "'%s': want '%.*s', got '%.*s'", texts[t], (int)want.len, want.data ? want.data : "", (int)got.len,
                  got.data ? got.data : "");
        free(txt);
        free(ids);
        mer__buf_free(&want);
        mer__buf_free(&got);
    }
    mer__agpt_free(a);
}

/* On a GPU: mer_encoders (mer features) on the device against the CPU on the same faces and WAV (bf16
 * matrices: within 3e-2 of the largest value of each output). */
static void check_encoders_device(void) {
    if (mer_device_resolve(MER_DEVICE_AUTO) != MER_DEVICE_CUDA) {
        printf("SKIP the device encoders of test_infer_batch: no CUDA device (or built without CUDA)\n");
        return;
    }
    mer_encoders_params p = mer_encoders_default_params();
    p.clip = FIXTURES "/models/clip_tiny";
    p.hubert = FIXTURES "/models/hubert_tiny";
    p.n_threads = 1;
    mer_encoders *ec = NULL, *eg = NULL;
    mer_err err = {0};
    p.device = MER_DEVICE_CPU;
    CHECK_MSG(mer_encoders_open(&p, &ec, &err) == MER_OK, "cpu encoders: %s", err.msg);
    p.device = MER_DEVICE_CUDA;
    CHECK_MSG(mer_encoders_open(&p, &eg, &err) == MER_OK, "cuda encoders: %s", err.msg);
    if (!ec || !eg) goto done;
    int dv = mer_encoders_visual_dim(ec), da = mer_encoders_audio_dim(ec);
    float vc[8 * 64], vg[8 * 64], ac[8 * 1024], ag[8 * 1024];
    if (dv > 64 || da > 1024) goto done;
    CHECK_MSG(mer_encoders_faces(ec, D "/data/openface_face/s003/s003.npy", vc, &err) == MER_OK, "%s", err.msg);
    CHECK_MSG(mer_encoders_faces(eg, D "/data/openface_face/s003/s003.npy", vg, &err) == MER_OK, "%s", err.msg);
    CHECK_MSG(mer_encoders_wav(ec, D "/data/audio/s003.wav", ac, &err) == MER_OK, "%s", err.msg);
    CHECK_MSG(mer_encoders_wav(eg, D "/data/audio/s003.wav", ag, &err) == MER_OK, "%s", err.msg);
    double mv = 0, ma = 0, dvm = 0, dam = 0;
    for (int i = 0; i < 8 * dv; i++) mv = fmax(mv, fabs(vc[i])), dvm = fmax(dvm, fabs((double)vc[i] - vg[i]));
    for (int i = 0; i < 8 * da; i++) ma = fmax(ma, fabs(ac[i])), dam = fmax(dam, fabs((double)ac[i] - ag[i]));
    CHECK_MSG(dvm <= 3e-2 * mv, "CLIP on cuda: max abs diff %g (largest value %g)", dvm, mv);
    CHECK_MSG(dam <= 3e-2 * ma, "HuBERT on cuda: max abs diff %g (largest value %g)", dam, ma);
    printf("device encoders: CLIP max diff %.3g of %.3g, HuBERT %.3g of %.3g\n", dvm, mv, dam, ma);
done:
    mer_encoders_free(ec);
    mer_encoders_free(eg);
}

static void run(void) {
    const char *b = getenv("MER_BUILD");
    snprintf(mer, sizeof mer, "%s/mer", b ? b : "build");
    check_stop_string();
    if (system("python3 -c 'import numpy' 2>/dev/null")) {
        printf("SKIP test_infer_batch: needs python3 with numpy\n");
        return;
    }
    check_batches();
    check_encoders_device();
}
