/* mer.c - the `mer` command-line tool: one binary, one subcommand per job, `--help` on each. */
#include "cli.h"

#include <string.h>

static const mer_cmd COMMANDS[] = {
    {"eval", "score Track2 open-vocabulary predictions with the emotion-wheel metric", mer_cmd_eval},
    {"extract", "turn emotion descriptions into open-vocabulary label lists with Qwen2.5 (Track2)", mer_cmd_extract},
    {"infer", "run AffectGPT over a MER2025 dataset (resumable): Track2 labels or Track3 descriptions", mer_cmd_infer},
    {"pack", "write a Codalab submission NAME-openset.npz from a CSV of predictions", mer_cmd_pack},
    {"generate", "generate text with a Qwen2 model (HF folder, safetensors or GGUF; LoRA; sampling)", mer_cmd_generate},
    {"inspect", "list a model file's format, metadata and tensors (safetensors, GGUF, .pth, HF folder)", mer_cmd_inspect},
    {"quantize", "convert a checkpoint to GGUF (q8_0, q4_0, f16, bf16, f32) with llama.cpp's names", mer_cmd_quantize},
    {"convert", "pack CLIP, HuBERT, Qwen2 + LoRA and the AffectGPT fusion into one GGUF bundle (infer --model)", mer_cmd_convert},
    {"tokenize", "text to Qwen2 token ids and back (tokenizer.json or GGUF), Qwen2.5 chat template", mer_cmd_tokenize},
    {"run", "recognise facial expressions in a video with the built-in face models (labels + description)", mer_cmd_run},
    {"faces", "write OpenFace-style face crops of a video as NAME.npy (BGR) for AffectGPT's face inputs", mer_cmd_faces},
    {"features", "CLIP / HuBERT features (AffectGPT's encoders) of images, face crops or a WAV file as .npz", mer_cmd_features},
};

static void usage(FILE *f) {
    fprintf(f, "mer %s - open-vocabulary multimodal emotion recognition\n\nusage: mer <command> [options]\n\n",
            MER_VERSION);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\n`mer <command> --help` describes each command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? MER_EXIT_ERR : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("mer %s\n", MER_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mer: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return MER_EXIT_ERR;
}
