/* cmd_convert.c - `mer convert`: packs CLIP, HuBERT, the Qwen2 LLM (with the AffectGPT LoRA merged or
 * kept), the tokenizer and the AffectGPT fusion layers into one GGUF bundle for `mer infer --model`. */
#include "cli.h"

#include <string.h>
#include <time.h>

static const char *HELP =
    "usage: mer convert --clip DIR --hubert DIR --llm DIR|GGUF --affectgpt CKPT.pth -o BUNDLE.gguf [options]\n"
    "\n"
    "Writes one self-contained AffectGPT model file for `mer infer --model`. The file is a qwen2 GGUF as\n"
    "`mer quantize` writes it (llama.cpp names, qwen2.* keys, tokenizer.ggml.*; `mer generate` reads it as\n"
    "an LLM), with the checkpoint's LoRA merged into the weights in f32 before conversion, plus\n"
    "the CLIP vision tower (clip.*), HuBERT (hubert.*), their config.json texts (mer.clip.config,\n"
    "mer.hubert.config) and the fusion layers (affectgpt.*, f32). Every part is loaded and checked first.\n"
    "\n"
    "  --clip DIR          clip-vit-large-patch14 (HF folder, or a file with config.json beside it)\n"
    "  --hubert DIR        chinese-hubert-large (likewise)\n"
    "  --llm PATH          Qwen2.5-7B-Instruct: HF folder, safetensors or a qwen2 GGUF\n"
    "  --affectgpt FILE    AffectGPT checkpoint_*.pth (LoRA + fusion + projectors)\n"
    "  --tokenizer FILE    tokenizer.json or GGUF (default: the LLM folder's tokenizer.json, or the GGUF's)\n"
    "  --type T            LLM matrices: q8_0 (default), q4_0, bf16, f16 or f32 (1-D tensors stay f32)\n"
    "  --encoder-type T    CLIP/HuBERT tensors: f32, f16, bf16 or keep (as stored); default f32 with\n"
    "                      --type f32, bf16 with bf16, else f16\n"
    "  --lora-scale S      lora_alpha / r (default 2 = 32/16, the released configs)\n"
    "  --keep-lora         store the LoRA A/B (f32) unmerged; it is applied at load\n"
    "  --threads N         conversion threads (default: all CPUs)\n"
    "  -o FILE             the bundle (written atomically)\n";

int mer_cmd_convert(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    mer_bundle_params p = mer_bundle_default_params();
    const char *out = NULL, *v;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--clip", &p.clip)) || (r = cli_opt(argc, argv, &i, "--hubert", &p.hubert)) ||
            (r = cli_opt(argc, argv, &i, "--llm", &p.llm)) || (r = cli_opt(argc, argv, &i, "--affectgpt", &p.affectgpt)) ||
            (r = cli_opt(argc, argv, &i, "--tokenizer", &p.tokenizer)) || (r = cli_opt(argc, argv, &i, "--type", &p.type)) ||
            (r = cli_opt(argc, argv, &i, "--encoder-type", &p.encoder_type)) || (r = cli_opt(argc, argv, &i, "-o", &out))) {
            if (r < 0) return cli_fail("convert", "%s needs a value", argv[i]);
        } else if ((r = cli_opt(argc, argv, &i, "--lora-scale", &v))) {
            double d;
            if (r < 0 || cli_parse_double(v, &d) || !(d > 0))
                return cli_fail("convert", "--lora-scale needs a positive number");
            p.lora_scale = d;
        } else if ((r = cli_opt(argc, argv, &i, "--threads", &v))) {
            long n;
            if (r < 0 || cli_parse_long(v, &n) || n < 1 || n > 256)
                return cli_fail("convert", "--threads needs a count from 1 to 256");
            p.n_threads = (int)n;
        } else if (!strcmp(argv[i], "--keep-lora")) p.keep_lora = 1;
        else return cli_fail("convert", "unknown option '%s' (see mer convert --help)", argv[i]);
    }
    if (!p.clip || !p.hubert || !p.llm || !p.affectgpt || !out)
        return cli_fail("convert", "--clip, --hubert, --llm, --affectgpt and -o are required (see mer convert --help)");
    mer_err err = {0};
    mer_bundle_stats s;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (mer_bundle_convert(&p, out, &s, &err)) return cli_fail_err("convert", &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("%s: %zu tensors (LLM %zu in %s, LoRA %s on %zu projections, CLIP %zu, HuBERT %zu, fusion %zu), %.2f MiB "
           "in %.2f s\n",
           out, s.n_tensors, s.n_llm, p.type ? p.type : "q8_0", p.keep_lora ? "kept" : "merged", s.n_lora, s.n_clip,
           s.n_hubert, s.n_fusion, (double)s.bytes_out / 1048576.0, sec);
    return 0;
}
