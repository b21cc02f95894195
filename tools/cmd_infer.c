/* cmd_infer.c - `mer infer`: AffectGPT over a MER2025-layout dataset (Track2 labels / Track3 text). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char *HELP =
    "usage: mer infer --model BUNDLE.gguf --data DIR -o RESULT.npz [options]\n"
    "       mer infer --clip DIR --hubert DIR --llm DIR|GGUF --affectgpt CKPT.pth --data DIR -o RESULT.npz [options]\n"
    "\n"
    "Runs AffectGPT (MER2025 Track2/Track3 baseline) on every name: 8 face crops or video frames through\n"
    "CLIP, 8 two-second audio clips through HuBERT, attention fusion, the prompt with the subtitle and\n"
    "the three spliced embeddings, Qwen2.5 with the checkpoint's LoRA, and the reference's clean-up.\n"
    "Results are committed to RESULT.npz.db as they come: a killed run started again with the same\n"
    "command continues where it stopped. A sample with missing or corrupt media is recorded with its\n"
    "error and the run goes on. Writes RESULT.npz (name2reason, as the official evaluation reads it),\n"
    "RESULT.csv and RESULT.jsonl.\n"
    "\n"
    "models:\n"
    "  --model BUNDLE      every part from one file made by `mer convert` (its LoRA scale is used)\n"
    "  --clip DIR          clip-vit-large-patch14 (HF folder)\n"
    "  --hubert DIR        chinese-hubert-large (HF folder; pytorch_model.bin is read safely)\n"
    "  --llm PATH          Qwen2.5-7B-Instruct: HF folder, safetensors or GGUF\n"
    "  --tokenizer FILE    default: the LLM folder's tokenizer.json, or the GGUF\n"
    "  --affectgpt FILE    AffectGPT checkpoint_*.pth (LoRA + fusion + projectors)\n"
    "  --type T            convert LLM weights at load: f32 f16 bf16 q8_0 q4_0\n"
    "  --lora-scale S      lora_alpha / r (default 2 = 32/16, the released configs)\n"
    "data:\n"
    "  --data DIR          video/<name>.mp4, audio/<name>.wav, openface_face/<name>/<name>.npy\n"
    "  --names CSV         names to run (default DIR/track_all_candidates.csv)\n"
    "  --subtitles CSV     name,english (default DIR/subtitle_chieng.csv; absent: no subtitles)\n"
    "  --input face|frame  face crops (default) or raw frames\n"
    "  --detect-faces      face config without OpenFace: crops from video/<name>.mp4 by mer's built-in\n"
    "                      face detector (112x112 BGR, as `mer faces` writes) instead of the npy files\n"
    "  --face-models DIR   face-api's model files (default: as `mer run`)\n"
    "  --task ov|description   Track2 question (default) or Track3 question\n"
    "  --question TEXT     any other question\n"
    "generation (defaults = the reference: T 1, top-p 0.9, top-k 20, 1200 tokens; sample i uses seed+i):\n"
    "  --temp T --top-p P --top-k K --repeat-penalty R --max-new-tokens N --seed S   (--temp 0: greedy)\n"
    "quirks of the reference, reproduced by default:\n"
    "  --rgb-faces         convert the BGR face crops to RGB (the reference feeds BGR to CLIP)\n"
    "  --per-clip-norm     normalise each audio clip alone (the reference normalises the 8 jointly)\n"
    "  --hf5-hidden        transformers>=5 HuBERT hidden-state list (the reference ran transformers 4)\n"
    "running:\n"
    "  --batch N           samples answered together (default 8): media and features are prepared ahead\n"
    "                      on a second thread while the LLM decodes N answers per step (continuous\n"
    "                      batching); sample i is still drawn with seed + i, so answers do not depend on N\n"
    "  --device auto|cpu|cuda   where the models run (default auto: the GPU when there is one). On cuda:\n"
    "                      CLIP, HuBERT and the LLM on the GPU in bf16 (f32 with --type f32); the fusion\n"
    "                      layers (three small matrix products) stay on the CPU\n"
    "other:\n"
    "  --threads N  --retry-failed  --quiet\n";

static int parse_num(const char *opt, const char *v, double *d) {
    if (cli_parse_double(v, d)) return cli_fail("infer", "%s needs a number, not '%s'", opt, v);
    return 0;
}

int mer_cmd_infer(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    mer_infer_params p = mer_infer_default_params();
    const char *out = NULL, *v, *input = NULL, *task = NULL, *face_models = NULL, *bundle = NULL, *device = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        double d;
        if ((r = cli_opt(argc, argv, &i, "--clip", &p.clip)) || (r = cli_opt(argc, argv, &i, "--hubert", &p.hubert)) ||
            (r = cli_opt(argc, argv, &i, "--llm", &p.llm)) || (r = cli_opt(argc, argv, &i, "--tokenizer", &p.tokenizer)) ||
            (r = cli_opt(argc, argv, &i, "--affectgpt", &p.affectgpt)) || (r = cli_opt(argc, argv, &i, "--type", &p.wtype)) ||
            (r = cli_opt(argc, argv, &i, "--data", &p.data_dir)) || (r = cli_opt(argc, argv, &i, "--names", &p.names)) ||
            (r = cli_opt(argc, argv, &i, "--subtitles", &p.subtitles)) || (r = cli_opt(argc, argv, &i, "--input", &input)) ||
            (r = cli_opt(argc, argv, &i, "--task", &task)) || (r = cli_opt(argc, argv, &i, "--question", &p.question)) ||
            (r = cli_opt(argc, argv, &i, "-o", &out)) || (r = cli_opt(argc, argv, &i, "--face-models", &face_models)) || (r = cli_opt(argc, argv, &i, "--model", &bundle)) ||
            (r = cli_opt(argc, argv, &i, "--device", &device))) {
            if (r < 0) return cli_fail("infer", "%s needs a value", argv[i]);
        } else if ((r = cli_opt(argc, argv, &i, "--temp", &v))) {
            if (r < 0 || parse_num("--temp", v, &d)) return MER_EXIT_ERR;
            p.temperature = d;
        } else if ((r = cli_opt(argc, argv, &i, "--top-p", &v))) {
            if (r < 0 || parse_num("--top-p", v, &d)) return MER_EXIT_ERR;
            p.top_p = d;
        } else if ((r = cli_opt(argc, argv, &i, "--repeat-penalty", &v))) {
            if (r < 0 || parse_num("--repeat-penalty", v, &d)) return MER_EXIT_ERR;
            p.repeat_penalty = d;
        } else if ((r = cli_opt(argc, argv, &i, "--lora-scale", &v))) {
            if (r < 0 || parse_num("--lora-scale", v, &d)) return MER_EXIT_ERR;
            p.lora_scale = d;
        } else if ((r = cli_opt(argc, argv, &i, "--top-k", &v)) || (r = cli_opt(argc, argv, &i, "--max-new-tokens", &v)) ||
                   (r = cli_opt(argc, argv, &i, "--seed", &v)) || (r = cli_opt(argc, argv, &i, "--threads", &v)) ||
                   (r = cli_opt(argc, argv, &i, "--batch", &v))) {
            long l;
            if (r < 0 || cli_parse_long(v, &l) || l < 0) return cli_fail("infer", "%s needs an integer >= 0", argv[i - 1]);
            const char *o = argv[i - 1];
            if (!strcmp(o, "--top-k")) p.top_k = (int)l;
            else if (!strcmp(o, "--max-new-tokens")) p.max_new_tokens = (int)l;
            else if (!strcmp(o, "--seed")) p.seed = (uint64_t)l;
            else if (!strcmp(o, "--batch")) {
                if (l < 1 || l > 256) return cli_fail("infer", "--batch needs 1..256, not %ld", l);
                p.batch = (int)l;
            } else p.n_threads = (int)l;
        } else if (!strcmp(argv[i], "--rgb-faces")) p.rgb_faces = 1;
        else if (!strcmp(argv[i], "--detect-faces")) p.detect_faces = 1;
        else if (!strcmp(argv[i], "--per-clip-norm")) p.per_clip_norm = 1;
        else if (!strcmp(argv[i], "--hf5-hidden")) p.hf5_hidden = 1;
        else if (!strcmp(argv[i], "--retry-failed")) p.retry_failed = 1;
        else if (!strcmp(argv[i], "--quiet")) p.progress = 0;
        else return cli_fail("infer", "unknown option '%s' (see mer infer --help)", argv[i]);
    }
    if (bundle) {
        if (p.clip || p.hubert || p.llm || p.affectgpt)
            return cli_fail("infer", "--model %s holds every part: give it without --clip, --hubert, --llm, --affectgpt",
                            bundle);
        p.bundle = bundle;
    }
    if (device) {
        mer_err derr = {0};
        if (mer_device_parse(device, &p.device, &derr)) return cli_fail_err("infer", &derr);
    }
    if (input) {
        if (!strcmp(input, "face")) p.input_frame = 0;
        else if (!strcmp(input, "frame")) p.input_frame = 1;
        else return cli_fail("infer", "--input must be face or frame, not '%s'", input);
    }
    if (task) {
        if (!strcmp(task, "ov")) p.task = MER_TASK_OV;
        else if (!strcmp(task, "description")) p.task = MER_TASK_DESCRIPTION;
        else return cli_fail("infer", "--task must be ov or description, not '%s'", task);
    }
    if (!p.bundle && (!p.clip || !p.hubert || !p.llm || !p.affectgpt))
        return cli_fail("infer", "--model BUNDLE, or --clip, --hubert, --llm and --affectgpt, are required (see mer infer --help)");
    if (!p.data_dir || !out) return cli_fail("infer", "--data and -o are required (see mer infer --help)");
    char fdir[4096];
    if (p.detect_faces) {
        if (cli_face_models(face_models, fdir, sizeof fdir))
            return cli_fail("infer", "face models not found (looked for %s; run scripts/deps.sh or pass --face-models DIR)", fdir);
        p.face_models = fdir;
    }
    mer_job_summary s;
    mer_err err = {0};
    if (mer_infer_run(&p, out, &s, &err)) return cli_fail_err("infer", &err);
    fprintf(stderr, "mer infer: %zu samples: %zu succeeded, %zu failed (%zu done before this run); %.1f s; wrote %s\n",
            s.n_total, s.n_ok, s.n_failed, s.n_skipped, s.seconds, out);
    return 0;
}
