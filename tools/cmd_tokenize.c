/* cmd_tokenize.c - `mer tokenize`: text to Qwen2 token ids (or ids back to text) with a tokenizer.json
 * or GGUF, optionally wrapping the text in the Qwen2.5 chat template first. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_TOKENIZER "models/qwen2-tokenizer/tokenizer.json"

static const char *HELP =
    "usage: mer tokenize [--tokenizer FILE] [--file TEXT] [--decode] [--chat [--system TEXT] [--no-gen]]\n"
    "                    [--all-added] [--skip-special]\n"
    "\n"
    "Encodes the whole text of FILE (standard input without --file) with Qwen2's byte-level BPE and\n"
    "prints the ids on one line, separated by spaces. With --decode, reads ids (any white space between\n"
    "them) and prints the text they decode to.\n"
    "\n"
    "  --tokenizer FILE  a Hugging Face tokenizer.json or a GGUF file with tokenizer metadata\n"
    "                    (default " DEFAULT_TOKENIZER ", installed by scripts/deps.d/tokenizer.sh)\n"
    "  --file FILE       read the input from FILE instead of standard input\n"
    "  --decode          ids in, text out\n"
    "  --chat            render the text as one user message with Qwen2.5's chat template (default\n"
    "                    system prompt, generation prompt) and encode that\n"
    "  --system TEXT     with --chat: the system message instead of the default one\n"
    "  --no-gen          with --chat: no trailing \"<|im_start|>assistant\\n\"\n"
    "  --print-chat      with --chat: print the rendered text instead of its ids\n"
    "  --all-added       keep every added token of the file (default: Qwen2.5's, ids <= 151664)\n"
    "  --skip-special    with --decode: special tokens produce no text\n";

static char *read_all(FILE *f, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) return NULL;
    for (;;) {
        if (len == cap) {
            char *p = cap > SIZE_MAX / 4 ? NULL : realloc(buf, cap * 2 + 1);
            if (!p) {
                free(buf);
                return NULL;
            }
            buf = p;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    buf[len] = 0;
    *n = len;
    return buf;
}

/* Parses white-space separated decimal ids; returns 0 or fails with a message naming the offset. */
static int parse_ids(const char *s, size_t n, int32_t **out, size_t *n_out) {
    size_t cap = 64, k = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return cli_fail("tokenize", "out of memory");
    size_t i = 0;
    while (i < n) {
        if (strchr(" \t\r\n\f\v", s[i])) {
            i++;
            continue;
        }
        size_t j = i;
        long long v = 0;
        while (j < n && s[j] >= '0' && s[j] <= '9' && v <= INT32_MAX) v = v * 10 + (s[j++] - '0');
        if (j == i || v > INT32_MAX || (j < n && !strchr(" \t\r\n\f\v", s[j]))) {
            free(ids);
            return cli_fail("tokenize", "input byte offset %zu: not a token id", j == i ? i : j);
        }
        if (k == cap) {
            int32_t *p = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!p) {
                free(ids);
                return cli_fail("tokenize", "out of memory");
            }
            ids = p;
        }
        ids[k++] = (int32_t)v;
        i = j;
    }
    *out = ids;
    *n_out = k;
    return 0;
}

int mer_cmd_tokenize(int argc, char **argv) {
    const char *tok_path = DEFAULT_TOKENIZER, *in_path = NULL, *system = NULL;
    int decode = 0, chat = 0, gen = 1, print_chat = 0, all_added = 0, skip_special = 0;
    if (cli_wants_help(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--tokenizer", &tok_path)) || (r = cli_opt(argc, argv, &i, "--file", &in_path)) ||
            (r = cli_opt(argc, argv, &i, "--system", &system))) {
            if (r < 0) return cli_fail("tokenize", "%s needs a value", argv[i]);
        } else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--chat")) chat = 1;
        else if (!strcmp(argv[i], "--no-gen")) gen = 0;
        else if (!strcmp(argv[i], "--print-chat")) print_chat = 1;
        else if (!strcmp(argv[i], "--all-added")) all_added = 1;
        else if (!strcmp(argv[i], "--skip-special")) skip_special = 1;
        else return cli_fail("tokenize", "unknown option '%s' (see mer tokenize --help)", argv[i]);
    }
    if (decode && chat) return cli_fail("tokenize", "--decode and --chat do not go together");
    if ((system || !gen || print_chat) && !chat) return cli_fail("tokenize", "--system, --no-gen and --print-chat need --chat");

    int rc = 0;
    mer_err err = {0};
    mer_tokenizer *tok = NULL;
    char *input = NULL, *chat_text = NULL, *text = NULL;
    int32_t *ids = NULL;
    size_t n_in = 0, n_ids = 0;

    FILE *f = in_path ? fopen(in_path, "rb") : stdin;
    if (!f) return cli_fail("tokenize", "%s: cannot open", in_path);
    input = read_all(f, &n_in);
    if (in_path) fclose(f);
    if (!input) return cli_fail("tokenize", "%s: read error", in_path ? in_path : "standard input");

    if (!print_chat) {
        mer_tokenizer_params p = mer_tokenizer_default_params();
        if (all_added) p.max_special_id = -1;
        if (mer_tokenizer_load(tok_path, &p, &tok, &err)) {
            rc = cli_fail_err("tokenize", &err);
            goto done;
        }
    }
    if (decode) {
        if ((rc = parse_ids(input, n_in, &ids, &n_ids))) goto done;
        size_t len = 0;
        if (mer_tokenizer_decode(tok, ids, n_ids, skip_special, &text, &len, &err)) {
            rc = cli_fail_err("tokenize", &err);
            goto done;
        }
        fwrite(text, 1, len, stdout);
        goto done;
    }
    const char *src = input;
    size_t src_len = n_in;
    if (chat) {
        if (strlen(input) != n_in) {
            rc = cli_fail("tokenize", "--chat: the input holds a NUL byte");
            goto done;
        }
        mer_chat_msg msgs[2] = {{"system", system}, {"user", input}};
        if (mer_chat_render(system ? msgs : msgs + 1, system ? 2 : 1, gen, &chat_text, &src_len, &err)) {
            rc = cli_fail_err("tokenize", &err);
            goto done;
        }
        src = chat_text;
        if (print_chat) {
            fwrite(chat_text, 1, src_len, stdout);
            goto done;
        }
    }
    if (mer_tokenizer_encode(tok, src, src_len, &ids, &n_ids, &err)) {
        rc = cli_fail_err("tokenize", &err);
        goto done;
    }
    for (size_t i = 0; i < n_ids; i++) printf(i ? " %d" : "%d", (int)ids[i]);
    putchar('\n');
done:
    if (fflush(stdout) && !rc) rc = cli_fail("tokenize", "write error on standard output");
    free(input);
    free(chat_text);
    free(text);
    free(ids);
    mer_tokenizer_free(tok);
    return rc;
}
