/* cmd_quantize.c - `mer quantize`: converts a checkpoint (safetensors, GGUF, PyTorch .pth/.bin, or a
 * Hugging Face model folder) into a GGUF file with llama.cpp's tensor names and metadata, its 2-D float
 * tensors in q8_0, q4_0, f16, bf16 or f32. */
#include "cli.h"

#include <string.h>
#include <time.h>

static const char *HELP =
    "usage: mer quantize IN OUT.gguf [--type q8_0|q4_0|f16|bf16|f32] [--threads N]\n"
    "\n"
    "Writes IN (a .safetensors file, a model.safetensors.index.json, a GGUF, a PyTorch zip checkpoint or\n"
    "a Hugging Face model folder) as a GGUF v3 file that llama.cpp can read: Qwen2 tensor names mapped to\n"
    "llama.cpp's (model.layers.N.self_attn.q_proj.weight -> blk.N.attn_q.weight, ...), config.json\n"
    "hyper-parameters as qwen2.* keys. 2-D and larger float tensors get --type (default q8_0); 1-D tensors\n"
    "(norms, biases) and rows whose length is not a multiple of 32 stay f32, as llama.cpp does.\n"
    "\n"
    "  --type T      q8_0 (default), q4_0, f16, bf16 or f32\n"
    "  --threads N   conversion threads (default: all CPUs)\n";

int mer_cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    mer_quantize_params p = mer_quantize_default_params();
    if (cli_wants_help(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if ((r = cli_opt(argc, argv, &i, "--type", &v)) != 0) {
            if (r < 0) return cli_fail("quantize", "--type needs a value");
            p.type = v;
        } else if ((r = cli_opt(argc, argv, &i, "--threads", &v)) != 0) {
            long n;
            if (r < 0 || cli_parse_long(v, &n) || n < 1 || n > 64)
                return cli_fail("quantize", "--threads needs a count from 1 to 64");
            p.n_threads = (int)n;
        } else if (argv[i][0] == '-' && argv[i][1]) return cli_fail("quantize", "unknown option '%s'", argv[i]);
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else return cli_fail("quantize", "unexpected argument '%s'", argv[i]);
    }
    if (!in || !out) return cli_fail("quantize", "needs IN and OUT (see --help)");
    mer_err err = {0};
    mer_quantize_stats s;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (mer_quantize_file(in, out, &p, &s, &err)) return cli_fail_err("quantize", &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("%s: %zu tensors (%zu %s, %zu kept f32, %zu renamed), arch %s, %.2f MiB -> %.2f MiB in %.2f s\n", out,
           s.n_tensors, s.n_converted, p.type, s.n_kept_f32, s.n_renamed, s.arch ? s.arch : "(none)",
           (double)s.bytes_in / 1048576.0, (double)s.bytes_out / 1048576.0, sec);
    return 0;
}
