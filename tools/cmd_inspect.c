/* cmd_inspect.c - `mer inspect`: what a model file holds: its format, metadata (GGUF key/values,
 * safetensors __metadata__, the config.json of a model folder) and every tensor with its dtype, shape and
 * size, then the parameter and byte totals. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char *HELP =
    "usage: mer inspect FILE|DIR [--summary] [--items N] [--width N]\n"
    "\n"
    "Describes a checkpoint: a .safetensors file, a sharded model.safetensors.index.json, a GGUF file,\n"
    "a PyTorch zip checkpoint, or a Hugging Face model folder (config.json + weights).\n"
    "\n"
    "  --summary   metadata and totals only, no per-tensor lines\n"
    "  --items N   array values shown per metadata array (default 8)\n"
    "  --width N   metadata values longer than N bytes are cut (default 200; 0: never)\n";

/* A metadata value on one line: control characters escaped, cut after width bytes (0: never). */
static void print_value(const char *v, long width) {
    size_t n = strlen(v);
    size_t show = width > 0 && n > (size_t)width ? (size_t)width : n;
    while (show < n && show > 0 && ((unsigned char)v[show] & 0xC0) == 0x80) show--; /* whole characters */
    for (size_t i = 0; i < show; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    if (show < n) printf("... (%zu bytes)", n);
    putchar('\n');
}

static void print_shape(const mer_tensor_desc *d) {
    char s[160];
    size_t n = 0;
    s[0] = 0;
    n += (size_t)snprintf(s, sizeof s, "[");
    for (int k = 0; k < d->n_dims && n < sizeof s; k++)
        n += (size_t)snprintf(s + n, sizeof s - n, k ? ", %lld" : "%lld", (long long)d->shape[k]);
    if (n < sizeof s) snprintf(s + n, sizeof s - n, "]");
    printf("%-24s", s);
}

int mer_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int summary = 0;
    long items = 8, width = 200;
    if (cli_wants_help(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (!strcmp(argv[i], "--summary")) summary = 1;
        else if ((r = cli_opt(argc, argv, &i, "--items", &v)) != 0) {
            if (r < 0 || cli_parse_long(v, &items) || items < 0) return cli_fail("inspect", "--items needs a count");
        } else if ((r = cli_opt(argc, argv, &i, "--width", &v)) != 0) {
            if (r < 0 || cli_parse_long(v, &width) || width < 0) return cli_fail("inspect", "--width needs a count");
        } else if (argv[i][0] == '-' && argv[i][1]) return cli_fail("inspect", "unknown option '%s'", argv[i]);
        else if (!path) path = argv[i];
        else return cli_fail("inspect", "one FILE or DIR, not '%s' too", argv[i]);
    }
    if (!path) return cli_fail("inspect", "no FILE or DIR given (see --help)");
    mer_err err = {0};
    mer_weights *w = NULL;
    if (mer_weights_open(path, &w, &err)) return cli_fail_err("inspect", &err);

    size_t nt = mer_weights_n_tensors(w), nm = mer_weights_n_meta(w), nc = mer_weights_n_config(w);
    printf("file: %s\nformat: %s\n", path, mer_weights_format_name(w));
    size_t cap = 1 << 16;
    char *buf = malloc(cap);
    if (!buf) {
        mer_weights_close(w);
        return cli_fail("inspect", "out of memory");
    }
    if (nm) {
        printf("\nmetadata (%zu):\n", nm);
        for (size_t i = 0; i < nm; i++) {
            const char *type = "";
            const char *key = mer_weights_meta(w, i, &type, buf, cap, (int)items);
            printf("  %-40s %-14s ", key, type);
            print_value(buf, width);
        }
    }
    if (nc) {
        printf("\nconfig.json (%zu):\n", nc);
        for (size_t i = 0; i < nc; i++) {
            const char *key = mer_weights_config_entry(w, i, buf, cap);
            printf("  %-40s ", key);
            print_value(buf, width);
        }
    }
    uint64_t params = 0, bytes = 0;
    if (!summary) printf("\ntensors (%zu):\n", nt);
    for (size_t i = 0; i < nt; i++) {
        mer_tensor_desc d = mer_weights_tensor_desc(w, i);
        params += d.n_elems;
        bytes += d.n_bytes;
        if (summary) continue;
        printf("  %-60s %-8s ", d.name, d.dtype);
        print_shape(&d);
        printf(" %zu\n", d.n_bytes);
    }
    printf("\ntotal: %zu tensors, %llu parameters, %llu bytes (%.2f MiB)\n", nt, (unsigned long long)params,
           (unsigned long long)bytes, (double)bytes / (1024.0 * 1024.0));
    free(buf);
    mer_weights_close(w);
    return 0;
}
