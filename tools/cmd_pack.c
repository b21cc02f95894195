/* cmd_pack.c - `mer pack`: writes the Codalab Track2 submission NAME-openset.npz. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char *HELP =
    "usage: mer pack --names CANDIDATES.csv --pred PRED -o NAME-openset.npz [--column COL] [--allow-missing]\n"
    "\n"
    "Writes the submission the MER2025 Track2 Codalab scorer accepts: two 1-D numpy unicode arrays\n"
    "`filenames` and `fileitems`, zip-deflated like np.savez_compressed, in the order of CANDIDATES.csv.\n"
    "\n"
    "  --names FILE      CSV with a `name` column (e.g. track_all_candidates.csv)\n"
    "  --pred FILE       predictions: CSV name,<COL> (default COL: openset), or any npz mer eval reads\n"
    "  --column COL      the prediction column of a CSV (default openset)\n"
    "  -o FILE           output .npz (written atomically)\n"
    "  --allow-missing   write [] for candidates without a prediction (default: error)\n";

int mer_cmd_pack(int argc, char **argv) {
    const char *names_path = NULL, *pred_path = NULL, *out_path = NULL, *column = "openset";
    int allow_missing = 0;
    if (cli_wants_help(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--names", &names_path)) || (r = cli_opt(argc, argv, &i, "--pred", &pred_path)) ||
            (r = cli_opt(argc, argv, &i, "-o", &out_path)) || (r = cli_opt(argc, argv, &i, "--column", &column))) {
            if (r < 0) return cli_fail("pack", "%s needs a value", argv[i]);
        } else if (!strcmp(argv[i], "--allow-missing")) allow_missing = 1;
        else return cli_fail("pack", "unknown option '%s' (see mer pack --help)", argv[i]);
    }
    if (!names_path || !pred_path || !out_path)
        return cli_fail("pack", "--names, --pred and -o are required (see mer pack --help)");
    mer_err err = {0};
    mer_label_table names = {0}, pred = {0};
    mer_labeled *rows = NULL;
    int rc = 0;
    /* the candidates file needs only `name`; read it with `name` as the value column too */
    if (mer_label_table_read(names_path, "name", &names, &err) || mer_label_table_read(pred_path, column, &pred, &err)) {
        rc = cli_fail_err("pack", &err);
        goto done;
    }
    rows = calloc(names.n ? names.n : 1, sizeof *rows);
    if (!rows) {
        rc = cli_fail("pack", "out of memory");
        goto done;
    }
    size_t n_missing = 0;
    for (size_t i = 0; i < names.n; i++) rows[i].name = names.rows[i].name;
    if (mer_label_table_lookup(&pred, rows, names.n, &n_missing, &err)) {
        rc = cli_fail_err("pack", &err);
        goto done;
    }
    if (n_missing && !allow_missing) {
        for (size_t i = 0; i < names.n; i++)
            if (!rows[i].labels) {
                rc = cli_fail("pack", "%s: %zu of %zu candidates have no prediction in %s (first: %s); use --allow-missing to write []",
                              names_path, n_missing, names.n, pred_path, rows[i].name);
                goto done;
            }
    }
    for (size_t i = 0; i < names.n; i++)
        if (!rows[i].labels) rows[i].labels = "[]";
    if (mer_openset_npz_write(out_path, rows, names.n, &err)) {
        rc = cli_fail_err("pack", &err);
        goto done;
    }
    fprintf(stderr, "mer pack: wrote %zu rows to %s%s\n", names.n, out_path,
            n_missing ? " (candidates without a prediction written as [])" : "");
done:
    free(rows);
    mer_label_table_free(&names);
    mer_label_table_free(&pred);
    return rc;
}
