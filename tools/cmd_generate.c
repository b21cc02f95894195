/* cmd_generate.c - `mer generate`: text generation with a Qwen2 model (HF directory, safetensors or
 * GGUF), optionally with a LoRA adapter, from a plain prompt, a chat message rendered with Qwen2.5's
 * template, or raw token ids. Text streams to standard output as it is generated (whole UTF-8
 * characters only); --stats prints speeds on standard error. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *HELP =
    "usage: mer generate --model PATH [--tokenizer FILE] [--lora FILE]\n"
    "                    (--prompt TEXT | --chat TEXT [--system TEXT] | --ids \"ID ...\")\n"
    "                    [--temp T] [--top-p P] [--top-k K] [--min-p P] [--repeat-penalty R] [--seed S]\n"
    "                    [-n N] [--stop STR]... [--threads N] [--ctx N] [--type T] [--device D] [--stats]\n"
    "\n"
    "Generates text with a Qwen2-architecture model and streams it to standard output.\n"
    "\n"
    "  --model PATH        Hugging Face model directory, .safetensors file (config.json beside it) or\n"
    "                      llama.cpp GGUF file (architecture qwen2)\n"
    "  --tokenizer FILE    tokenizer.json or GGUF (default: tokenizer.json beside the model, else the\n"
    "                      GGUF model's own tokenizer metadata)\n"
    "  --lora FILE         PEFT LoRA adapter (adapter_model.safetensors, a .pth state dict, or a directory)\n"
    "  --lora-scale S      LoRA scale (default lora_alpha / r from adapter_config.json)\n"
    "  --lora-unmerged     apply the adapter at run time instead of merging it into the weights\n"
    "  --type T            convert the matrices at load: f32, f16, bf16, q8_0, q4_0\n"
    "  --prompt TEXT       plain text prompt\n"
    "  --chat TEXT         one user message, rendered with Qwen2.5's chat template\n"
    "  --system TEXT       with --chat: the system message (default: Qwen2.5's default one)\n"
    "  --ids \"ID ...\"      token ids as the prompt; the generated ids are printed instead of text\n"
    "  --temp T            temperature (default 0: greedy)\n"
    "  --top-p P           nucleus sampling (default 1: off)\n"
    "  --top-k K           top-k sampling (default 0: off)\n"
    "  --min-p P           min-p sampling (default 0: off)\n"
    "  --repeat-penalty R  HF repetition penalty (default 1: off)\n"
    "  --seed S            sampling seed (default 0)\n"
    "  -n N                most new tokens (default 256)\n"
    "  --min-new N         end-of-sequence tokens are not sampled before N tokens (default 0)\n"
    "  --stop STR          stop when the output contains STR (repeatable; STR is not printed)\n"
    "  --eos ID            an end-of-sequence id (repeatable; default <|im_end|> and <|endoftext|>)\n"
    "  --ignore-eos        no end-of-sequence ids\n"
    "  --threads N         threads (default: one per CPU)\n"
    "  --ctx N             context length (KV cache) in tokens (default min(trained, 4096))\n"
    "  --device D          auto (default: cuda when mer was built with CUDA and a GPU is present), cpu or\n"
    "                      cuda: the whole forward on the GPU, bf16 matrices (f32 with --type f32, q8_0/q4_0\n"
    "                      kept), the KV cache there, decode steps replayed from a CUDA graph\n"
    "  --stats             print prompt/generation speeds on standard error\n";

#define MAX_LIST 16

static int is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}

static int file_exists(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISREG(s.st_mode);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Finds and loads the tokenizer for the model; 0 or a reported failure. */
static int load_tokenizer(const char *given, const char *model, mer_tokenizer **tok) {
    mer_err err = {0};
    if (given) {
        if (mer_tokenizer_load(given, NULL, tok, &err)) return cli_fail_err("generate", &err);
        return 0;
    }
    char path[4096];
    if (is_dir(model)) snprintf(path, sizeof path, "%s/tokenizer.json", model);
    else {
        const char *sl = strrchr(model, '/');
        if (sl) snprintf(path, sizeof path, "%.*s/tokenizer.json", (int)(sl - model), model);
        else snprintf(path, sizeof path, "tokenizer.json");
    }
    if (file_exists(path)) {
        if (mer_tokenizer_load(path, NULL, tok, &err)) return cli_fail_err("generate", &err);
        return 0;
    }
    if (!is_dir(model) && mer_tokenizer_load(model, NULL, tok, &err) == MER_OK) return 0; /* GGUF metadata */
    return cli_fail("generate",
                    "no tokenizer: none given (--tokenizer FILE), no %s, and %s has no tokenizer metadata", path, model);
}

static int parse_ids(const char *s, int32_t **out, size_t *n_out) {
    size_t n = strlen(s), cap = n / 2 + 1, k = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return cli_fail("generate", "out of memory");
    for (size_t i = 0; i < n;) {
        if (strchr(" \t\r\n,", s[i])) {
            i++;
            continue;
        }
        long long v = 0;
        size_t j = i;
        while (j < n && s[j] >= '0' && s[j] <= '9' && v <= INT32_MAX) v = v * 10 + (s[j++] - '0');
        if (j == i || v > INT32_MAX || (j < n && !strchr(" \t\r\n,", s[j]))) {
            free(ids);
            return cli_fail("generate", "--ids: byte offset %zu is not a token id", j == i ? i : j);
        }
        ids[k++] = (int32_t)v;
        i = j;
    }
    if (!k) {
        free(ids);
        return cli_fail("generate", "--ids: no ids");
    }
    *out = ids, *n_out = k;
    return 0;
}

static int write_cb(const char *text, size_t len, void *ud) {
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int mer_cmd_generate(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    const char *model = NULL, *tok_path = NULL, *lora = NULL, *prompt = NULL, *chat = NULL, *ids_s = NULL;
    const char *system = NULL, *wtype = NULL, *device_s = NULL, *v;
    const char *stops[MAX_LIST];
    int32_t eos[MAX_LIST];
    size_t n_stops = 0, n_eos = 0;
    int ignore_eos = 0, stats = 0, unmerged = 0;
    long threads = 0, n_ctx = 0, n_new = 256, top_k = 0, min_new = 0, seed = 0;
    double temp = 0, top_p = 1, min_p = 0, rep = 1, lora_scale = 0;
    for (int i = 1; i < argc; i++) {
        int r;
#define STR_OPT(name, var) if ((r = cli_opt(argc, argv, &i, name, &var))) { if (r < 0) goto missing; continue; }
#define NUM_OPT(name, var, parse)                                                                   \
    if ((r = cli_opt(argc, argv, &i, name, &v))) {                                                  \
        if (r < 0) goto missing;                                                                    \
        if (parse(v, &var)) return cli_fail("generate", "%s: '%s' is not a number", name, v);       \
        continue;                                                                                   \
    }
        STR_OPT("--model", model)
        STR_OPT("--tokenizer", tok_path)
        STR_OPT("--lora", lora)
        STR_OPT("--prompt", prompt)
        STR_OPT("--chat", chat)
        STR_OPT("--ids", ids_s)
        STR_OPT("--system", system)
        STR_OPT("--type", wtype)
        STR_OPT("--device", device_s)
        NUM_OPT("--temp", temp, cli_parse_double)
        NUM_OPT("--top-p", top_p, cli_parse_double)
        NUM_OPT("--min-p", min_p, cli_parse_double)
        NUM_OPT("--repeat-penalty", rep, cli_parse_double)
        NUM_OPT("--lora-scale", lora_scale, cli_parse_double)
        NUM_OPT("--top-k", top_k, cli_parse_long)
        NUM_OPT("--seed", seed, cli_parse_long)
        NUM_OPT("-n", n_new, cli_parse_long)
        NUM_OPT("--min-new", min_new, cli_parse_long)
        NUM_OPT("--threads", threads, cli_parse_long)
        NUM_OPT("--ctx", n_ctx, cli_parse_long)
        if ((r = cli_opt(argc, argv, &i, "--stop", &v))) {
            if (r < 0) goto missing;
            if (n_stops == MAX_LIST) return cli_fail("generate", "at most %d --stop strings", MAX_LIST);
            stops[n_stops++] = v;
            continue;
        }
        if ((r = cli_opt(argc, argv, &i, "--eos", &v))) {
            long id;
            if (r < 0) goto missing;
            if (cli_parse_long(v, &id) || id < 0 || id > INT32_MAX) return cli_fail("generate", "--eos: bad id '%s'", v);
            if (n_eos == MAX_LIST) return cli_fail("generate", "at most %d --eos ids", MAX_LIST);
            eos[n_eos++] = (int32_t)id;
            continue;
        }
        if (!strcmp(argv[i], "--ignore-eos")) { ignore_eos = 1; continue; }
        if (!strcmp(argv[i], "--stats")) { stats = 1; continue; }
        if (!strcmp(argv[i], "--lora-unmerged")) { unmerged = 1; continue; }
        return cli_fail("generate", "unknown option '%s' (see --help)", argv[i]);
    missing:
        return cli_fail("generate", "%s needs a value", argv[i]);
#undef STR_OPT
#undef NUM_OPT
    }
    if (!model) return cli_fail("generate", "--model PATH is required (see --help)");
    mer_device device = MER_DEVICE_AUTO;
    if (device_s) {
        mer_err derr = {0};
        if (mer_device_parse(device_s, &device, &derr)) return cli_fail_err("generate", &derr);
    }
    if (!!prompt + !!chat + !!ids_s != 1) return cli_fail("generate", "give exactly one of --prompt, --chat, --ids");
    if (n_new < 0 || n_new > (1L << 24) || min_new < 0 || threads < 0 || threads > 1024 || n_ctx < 0 ||
        n_ctx > (1L << 24) || top_k < 0 || top_k > INT32_MAX)
        return cli_fail("generate", "a count option is out of range");

    int rc = MER_EXIT_ERR;
    mer_err err = {0};
    mer_tokenizer *tok = NULL;
    mer_qwen2 *m = NULL;
    mer_qwen2_ctx *c = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    char *text = NULL;
    mer_generate_result res = {0};

    if (!ids_s && load_tokenizer(tok_path, model, &tok)) goto done;
    mer_qwen2_params mp = mer_qwen2_default_params();
    mp.wtype = wtype, mp.lora_path = lora, mp.lora_scale = lora_scale, mp.lora_merge = !unmerged;
    mp.n_threads = (int)threads;
    mp.device = device, mp.n_seq = 1, mp.n_ctx = (int)n_ctx; /* on a GPU: one sequence */
    double t0 = now_s();
    if (mer_qwen2_load(model, &mp, &m, &err)) {
        rc = cli_fail_err("generate", &err);
        goto done;
    }
    double t_load = now_s() - t0;
    mer_qwen2_info info;
    mer_qwen2_get_info(m, &info);
    if (tok && mer_tokenizer_n_vocab(tok) > (size_t)info.n_vocab) {
        rc = cli_fail("generate", "the tokenizer has %zu tokens but the model's vocabulary is %d",
                      mer_tokenizer_n_vocab(tok), info.n_vocab);
        goto done;
    }
    if (ids_s) {
        if (parse_ids(ids_s, &ids, &n_ids)) goto done;
    } else {
        const char *src = prompt;
        size_t len = strlen(prompt ? prompt : "");
        if (chat) {
            mer_chat_msg msgs[2];
            size_t nm = 0;
            if (system) msgs[nm++] = (mer_chat_msg){"system", system};
            msgs[nm++] = (mer_chat_msg){"user", chat};
            if (mer_chat_render(msgs, nm, 1, &text, &len, &err)) {
                rc = cli_fail_err("generate", &err);
                goto done;
            }
            src = text;
        }
        if (mer_tokenizer_encode(tok, src, len, &ids, &n_ids, &err)) {
            rc = cli_fail_err("generate", &err);
            goto done;
        }
        if (!n_ids) {
            rc = cli_fail("generate", "the prompt is empty");
            goto done;
        }
    }
    if (!ignore_eos && !n_eos && tok) {
        static const char *const EOS[] = {"<|im_end|>", "<|endoftext|>"};
        for (size_t i = 0; i < 2; i++) {
            int32_t id = mer_tokenizer_token_id(tok, EOS[i], strlen(EOS[i]));
            if (id >= 0) eos[n_eos++] = id;
        }
    }
    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_ctx = (int)n_ctx, cp.n_threads = (int)threads;
    if (mer_qwen2_ctx_init(m, &cp, &c, &err)) {
        rc = cli_fail_err("generate", &err);
        goto done;
    }
    if (n_ids > (size_t)mer_qwen2_ctx_n_ctx(c)) {
        rc = cli_fail("generate", "the prompt has %zu tokens, more than the context of %d (--ctx N)", n_ids,
                      mer_qwen2_ctx_n_ctx(c));
        goto done;
    }
    mer_generate_params gp = mer_generate_default_params();
    gp.sampling.temperature = temp, gp.sampling.top_p = top_p, gp.sampling.top_k = (int)top_k;
    gp.sampling.min_p = min_p, gp.sampling.repeat_penalty = rep, gp.sampling.seed = (uint64_t)seed;
    gp.max_new_tokens = (int)n_new, gp.min_new_tokens = (int)min_new;
    gp.stop_ids = ignore_eos ? NULL : eos, gp.n_stop_ids = ignore_eos ? 0 : n_eos;
    gp.stop_strings = stops, gp.n_stop_strings = n_stops;
    mer_status st = mer_qwen2_generate(c, ids_s ? NULL : tok, ids, n_ids, &gp, ids_s ? NULL : write_cb, NULL, &res, &err);
    if (st) {
        rc = cli_fail_err("generate", &err);
        goto done;
    }
    if (ids_s) {
        for (size_t i = 0; i < res.n_ids; i++) printf("%s%d", i ? " " : "", res.ids[i]);
    }
    printf("\n");
    fflush(stdout);
    if (stats) {
        static const char *const WHY[] = {"length", "stop token", "stop string", "callback", "context full"};
        int gpu = info.device == MER_DEVICE_CUDA;
        fprintf(stderr,
                "mer generate: %s, %s weights %.1f MiB, load %.2f s; prompt %zu tokens %.1f tok/s; generated %zu "
                "tokens %.2f tok/s (%s)\n",
                mer_device_name(info.device), gpu ? info.device_wtype : info.wtype,
                (double)(gpu ? info.device_bytes : info.weight_bytes) / (1 << 20), t_load, n_ids,
                (double)n_ids / res.prefill_seconds, res.n_ids,
                res.gen_seconds > 0 ? (double)res.n_ids / res.gen_seconds : 0.0, WHY[res.stop]);
    }
    rc = 0;
done:
    free(res.ids);
    free(ids);
    free(text);
    mer_qwen2_ctx_free(c);
    mer_qwen2_free(m);
    mer_tokenizer_free(tok);
    return rc;
}
