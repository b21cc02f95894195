/* cmd_extract.c - `mer extract`: emotion descriptions -> open-vocabulary label lists (Track2). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char *HELP =
    "usage: mer extract --model LLM --in RESULT.npz|.csv -o NAME-openset.npz [options]\n"
    "\n"
    "Turns each description into a list of emotion labels with Qwen2.5-Instruct, exactly as the MER2025\n"
    "reference (ovlabel_extraction.py): the same prompt, chat template (default system prompt) and\n"
    "answer clean-up; sampling T=0.7, top_p=0.8, repetition penalty 1.05, at most 512 tokens.\n"
    "Progress is kept in NAME-openset.npz.db: a killed run started again continues where it stopped.\n"
    "\n"
    "  --model PATH        Qwen2.5-Instruct: HF folder, .safetensors (config.json beside) or GGUF\n"
    "  --tokenizer FILE    tokenizer.json or GGUF (default: the model folder's tokenizer.json / the GGUF)\n"
    "  --in FILE           a result .npz (name2reason) or a CSV with columns name and --column\n"
    "  --column COL        CSV column with the descriptions (default reason)\n"
    "  -o FILE             the submission npz (filenames, fileitems); .csv and .jsonl are written beside\n"
    "  --type T            convert weights at load: f32 f16 bf16 q8_0 q4_0\n"
    "  --temp T --top-p P --top-k K --repeat-penalty R --max-new-tokens N --seed S\n"
    "  --threads N         (default: one per CPU)\n"
    "  --batch N           sequences decoded together (default 8, as the reference; 1: one at a time;\n"
    "                      the outputs are the same)\n"
    "  --device D          auto (default: cuda when mer was built with CUDA and a GPU is present), cpu or\n"
    "                      cuda: the LLM on the GPU (bf16 matrices; f32 with --type f32, q8_0/q4_0 kept),\n"
    "                      each step of the batch one device decode\n"
    "  --retry-failed      run again the samples whose earlier attempt failed\n"
    "  --quiet             no progress output\n";

int mer_cmd_extract(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    mer_extract_params p = mer_extract_default_params();
    const char *in = NULL, *out = NULL, *v;
    for (int i = 1; i < argc; i++) {
        int r = 0;
        long l;
        double d;
        if ((r = cli_opt(argc, argv, &i, "--model", &p.llm)) || (r = cli_opt(argc, argv, &i, "--tokenizer", &p.tokenizer)) ||
            (r = cli_opt(argc, argv, &i, "--in", &in)) || (r = cli_opt(argc, argv, &i, "-o", &out)) ||
            (r = cli_opt(argc, argv, &i, "--column", &p.column)) || (r = cli_opt(argc, argv, &i, "--type", &p.wtype))) {
            if (r < 0) return cli_fail("extract", "%s needs a value", argv[i]);
        } else if ((r = cli_opt(argc, argv, &i, "--temp", &v))) {
            if (r < 0 || cli_parse_double(v, &d)) return cli_fail("extract", "--temp needs a number");
            p.temperature = d;
        } else if ((r = cli_opt(argc, argv, &i, "--top-p", &v))) {
            if (r < 0 || cli_parse_double(v, &d)) return cli_fail("extract", "--top-p needs a number");
            p.top_p = d;
        } else if ((r = cli_opt(argc, argv, &i, "--repeat-penalty", &v))) {
            if (r < 0 || cli_parse_double(v, &d)) return cli_fail("extract", "--repeat-penalty needs a number");
            p.repeat_penalty = d;
        } else if ((r = cli_opt(argc, argv, &i, "--top-k", &v))) {
            if (r < 0 || cli_parse_long(v, &l) || l < 0) return cli_fail("extract", "--top-k needs an integer >= 0");
            p.top_k = (int)l;
        } else if ((r = cli_opt(argc, argv, &i, "--max-new-tokens", &v))) {
            if (r < 0 || cli_parse_long(v, &l) || l < 1) return cli_fail("extract", "--max-new-tokens needs an integer >= 1");
            p.max_new_tokens = (int)l;
        } else if ((r = cli_opt(argc, argv, &i, "--seed", &v))) {
            if (r < 0 || cli_parse_long(v, &l) || l < 0) return cli_fail("extract", "--seed needs an integer >= 0");
            p.seed = (uint64_t)l;
        } else if ((r = cli_opt(argc, argv, &i, "--threads", &v))) {
            if (r < 0 || cli_parse_long(v, &l) || l < 0) return cli_fail("extract", "--threads needs an integer >= 0");
            p.n_threads = (int)l;
        } else if ((r = cli_opt(argc, argv, &i, "--batch", &v))) {
            if (r < 0 || cli_parse_long(v, &l) || l < 1 || l > 256)
                return cli_fail("extract", "--batch needs an integer in 1..256");
            p.batch = (int)l;
        } else if ((r = cli_opt(argc, argv, &i, "--device", &v))) {
            mer_err derr = {0};
            if (r < 0) return cli_fail("extract", "--device needs a value");
            if (mer_device_parse(v, &p.device, &derr)) return cli_fail_err("extract", &derr);
        } else if (!strcmp(argv[i], "--retry-failed")) p.retry_failed = 1;
        else if (!strcmp(argv[i], "--quiet")) p.progress = 0;
        else return cli_fail("extract", "unknown option '%s' (see mer extract --help)", argv[i]);
    }
    if (!p.llm || !in || !out) return cli_fail("extract", "--model, --in and -o are required (see mer extract --help)");
    mer_job_summary s;
    mer_err err = {0};
    if (mer_extract_run(&p, in, out, &s, &err)) return cli_fail_err("extract", &err);
    fprintf(stderr, "mer extract: %zu samples: %zu succeeded, %zu failed (%zu done before this run); %.1f s; wrote %s\n",
            s.n_total, s.n_ok, s.n_failed, s.n_skipped, s.seconds, out);
    return s.n_failed ? MER_EXIT_ERR : 0;
}
