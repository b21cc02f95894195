/* cmd_eval.c - `mer eval`: the MER2025 Track2 emotion-wheel score of a prediction file. */
#include "cli.h"

#include <math.h>
#include <string.h>

static const char *HELP =
    "usage: mer eval --gt GT.csv --pred PRED [--json] [--per-wheel] [--wheels DIR] [--allow-missing]\n"
    "\n"
    "Scores open-vocabulary emotion labels with the MER2025 Track2 metric (emotion wheels 1-5,\n"
    "levels 1 and 2), exactly as the official evaluation.py does.\n"
    "\n"
    "  --gt FILE         ground truth CSV with columns name,openset (openset like \"['happy', 'sad']\")\n"
    "  --pred FILE       predictions: a CSV name,openset; an *-openset.npz (filenames, fileitems);\n"
    "                    or a raw result .npz whose name2reason holds a pickled dict\n"
    "  --per-wheel       print P/R/F of every wheel and level\n"
    "  --json            print one JSON object with every figure at full precision\n"
    "  --wheels DIR      wheel1..5.csv, synonym.csv and format.csv (default: mer's data/wheels)\n"
    "  --allow-missing   score ground-truth names without a prediction as empty (default: error)\n"
    "\n"
    "The last line of the output is the official print: level1& level2& mean (x100, 2 decimals).\n";

static void json_num(double v) {
    if (isnan(v) || isinf(v)) printf("null");
    else printf("%.17g", v);
}

static void print_json(const mer_eval_result *r, size_t n_pred) {
    printf("{\"n_gt\":%zu,\"n_pred\":%zu,\"n_missing\":%zu,", r->n_gt, n_pred, r->n_missing);
    for (int lv = 0; lv < MER_N_LEVELS; lv++) {
        printf("\"level%d\":{\"f\":", lv + 1);
        json_num(r->level_f[lv]);
        printf(",\"p\":");
        json_num(r->level_p[lv]);
        printf(",\"r\":");
        json_num(r->level_r[lv]);
        printf(",\"wheels\":[");
        for (int w = 0; w < MER_N_WHEELS; w++) {
            printf("%s{\"wheel\":%d,\"f\":", w ? "," : "", w + 1);
            json_num(r->f[w][lv]);
            printf(",\"p\":");
            json_num(r->p[w][lv]);
            printf(",\"r\":");
            json_num(r->r[w][lv]);
            printf(",\"n_scored\":%zu}", r->n_scored[w][lv]);
        }
        printf("]},");
    }
    printf("\"mean\":");
    json_num(r->mean);
    printf("}\n");
}

int mer_cmd_eval(int argc, char **argv) {
    const char *gt_path = NULL, *pred_path = NULL, *wheels_dir = NULL;
    int json = 0, per_wheel = 0;
    mer_eval_params params = mer_eval_default_params();
    if (cli_wants_help(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--gt", &gt_path)) || (r = cli_opt(argc, argv, &i, "--pred", &pred_path)) ||
            (r = cli_opt(argc, argv, &i, "--wheels", &wheels_dir))) {
            if (r < 0) return cli_fail("eval", "%s needs a value", argv[i]);
        } else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--per-wheel")) per_wheel = 1;
        else if (!strcmp(argv[i], "--allow-missing")) params.allow_missing = 1;
        else return cli_fail("eval", "unknown option '%s' (see mer eval --help)", argv[i]);
    }
    if (!gt_path || !pred_path) return cli_fail("eval", "--gt and --pred are required (see mer eval --help)");
    char wdir[4096];
    if (!wheels_dir) {
        if (cli_data_path("wheels", wdir, sizeof wdir))
            return cli_fail("eval", "cannot find mer's data/wheels (set MER_DATA or pass --wheels DIR)");
        wheels_dir = wdir;
    }
    mer_err err = {0};
    mer_wheels *w = NULL;
    mer_label_table gt = {0}, pred = {0};
    mer_eval_result res;
    int rc = 0;
    if (mer_wheels_load(wheels_dir, &w, &err) || mer_label_table_read(gt_path, "openset", &gt, &err) ||
        mer_label_table_read(pred_path, "openset", &pred, &err) ||
        mer_eval_score(w, gt.rows, gt.n, pred.rows, pred.n, &params, &res, &err)) {
        rc = cli_fail_err("eval", &err);
        goto done;
    }
    if (json) {
        print_json(&res, pred.n);
        goto done;
    }
    printf("ground truth: %zu samples (%s); predictions: %zu (%s)%s\n", gt.n, gt_path, pred.n, pred_path,
           res.n_missing ? "" : "");
    if (res.n_missing) printf("missing predictions scored as empty: %zu\n", res.n_missing);
    if (per_wheel) {
        printf("%-8s %9s %9s %9s   %9s %9s %9s   %s\n", "", "L1 P", "L1 R", "L1 F", "L2 P", "L2 R", "L2 F", "scored");
        for (int k = 0; k < MER_N_WHEELS; k++)
            printf("wheel%-3d %9.6f %9.6f %9.6f   %9.6f %9.6f %9.6f   %zu/%zu\n", k + 1, res.p[k][0], res.r[k][0],
                   res.f[k][0], res.p[k][1], res.r[k][1], res.f[k][1], res.n_scored[k][0], res.n_scored[k][1]);
        printf("%-8s %9.6f %9.6f %9.6f   %9.6f %9.6f %9.6f\n", "mean", res.level_p[0], res.level_r[0],
               res.level_f[0], res.level_p[1], res.level_r[1], res.level_f[1]);
    } else {
        printf("level1 F %.6f (P %.6f R %.6f)\n", res.level_f[0], res.level_p[0], res.level_r[0]);
        printf("level2 F %.6f (P %.6f R %.6f)\n", res.level_f[1], res.level_p[1], res.level_r[1]);
    }
    printf("mean   F %.6f\n", res.mean);
    printf("%.2f& %.2f& %.2f\n", res.level_f[0] * 100, res.level_f[1] * 100, res.mean * 100);
done:
    mer_label_table_free(&gt);
    mer_label_table_free(&pred);
    mer_wheels_free(w);
    return rc;
}
