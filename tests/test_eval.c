/* test_eval.c - the Track2 metric against the reference: the 7386x10 label->cluster oracle, the scores
 * the reference evaluation printed (expected_metric.txt), string_to_list outputs from the reference
 * semantics run in Python, and error handling. */
#include "test.h"
#include "mer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#define AFF FIXTURES "/affectgpt"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    b[n] = 0;
    fclose(f);
    return b;
}

static void test_oracle(const mer_wheels *w) {
    FILE *f = fopen(AFF "/label_to_wheel_cluster.tsv", "r");
    CHECK(f != NULL);
    if (!f) return;
    char line[4096];
    if (!fgets(line, sizeof line, f)) return;
    size_t n = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *fields[11];
        int k = 0;
        char *p = line;
        fields[k++] = p;
        while (k < 11 && (p = strchr(p, '\t'))) { *p++ = 0; fields[k++] = p; }
        if (k != 11) { bad++; continue; }
        for (int m = 0; m < 10; m++) {
            const char *got = mer_wheels_map(w, fields[0], m / 2, m % 2);
            if (strcmp(got, fields[1 + m])) {
                if (bad < 5) printf("FAIL oracle: '%s' metric %d: got '%s' want '%s'\n", fields[0], m, got, fields[1 + m]);
                bad++;
            }
        }
        n++;
    }
    fclose(f);
    CHECK_EQ_INT(n, 7386);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(mer_wheels_n_spellings(w), 7386);
    /* case-insensitive, whitespace-insensitive; Chinese is simply unknown */
    CHECK_STR(mer_wheels_map(w, "  HAPPY ", 0, 0), mer_wheels_map(w, "happy", 0, 0));
    CHECK_STR(mer_wheels_map(w, "开心", 0, 0), "");
    CHECK_STR(mer_wheels_map(w, "neutral", 0, 0), "");
}

/* Parses "wheelK F,P,R = f p r" lines of section A or B of expected_metric.txt. */
static int read_expected(const char *section, double f[5][2], double p[5][2], double r[5][2], double lf[2]) {
    char *t = slurp(AFF "/expected_metric.txt");
    if (!t) return -1;
    char *s = strstr(t, section);
    int got = 0;
    if (s && !strcmp(section, "# A)")) {
        int lv = -1;
        for (char *l = strtok(s, "\n"); l; l = strtok(NULL, "\n")) {
            double a, b, c;
            int wk;
            if (sscanf(l, "level%d: avg[F,P,R] = %lf %lf %lf", &wk, &a, &b, &c) == 4) { lv = wk - 1; lf[lv] = a; }
            else if (lv >= 0 && sscanf(l, " wheel%d F,P,R = %lf %lf %lf", &wk, &a, &b, &c) == 4) {
                f[wk - 1][lv] = a; p[wk - 1][lv] = b; r[wk - 1][lv] = c; got++;
            } else if (!strncmp(l, "# B)", 4)) break;
        }
    }
    free(t);
    return got;
}

static void test_real(const mer_wheels *w) {
    mer_err err = {0};
    mer_label_table gt = {0}, pred = {0};
    CHECK(mer_label_table_read(AFF "/../../../data/sample/check-openset.csv", "openset", &gt, &err) == MER_OK);
    CHECK(mer_label_table_read(AFF "/../../../data/sample/predict-openset.csv", "openset", &pred, &err) == MER_OK);
    CHECK_EQ_INT(gt.n, 332);
    mer_eval_result r;
    CHECK(mer_eval_score(w, gt.rows, gt.n, pred.rows, pred.n, NULL, &r, &err) == MER_OK);
    double f[5][2], p[5][2], rr[5][2], lf[2];
    CHECK_EQ_INT(read_expected("# A)", f, p, rr, lf), 10);
    for (int k = 0; k < 5; k++)
        for (int lv = 0; lv < 2; lv++) {
            CHECK_NEAR(r.f[k][lv], f[k][lv], 1e-6);
            CHECK_NEAR(r.p[k][lv], p[k][lv], 1e-6);
            CHECK_NEAR(r.r[k][lv], rr[k][lv], 1e-6);
        }
    CHECK_NEAR(r.level_f[0], lf[0], 1e-6);
    CHECK_NEAR(r.level_f[1], lf[1], 1e-6);
    char line[64];
    snprintf(line, sizeof line, "%.2f& %.2f& %.2f", r.level_f[0] * 100, r.level_f[1] * 100, r.mean * 100);
    CHECK_STR(line, "55.37& 42.45& 48.91");

    /* a missing prediction is an error naming it, unless allowed */
    mer_label_table short_pred = pred;
    short_pred.n = pred.n - 1;
    CHECK(mer_eval_score(w, gt.rows, gt.n, short_pred.rows, short_pred.n, NULL, &r, &err) == MER_E_NOTFOUND);
    CHECK(strstr(err.msg, pred.rows[pred.n - 1].name) != NULL);
    mer_eval_params prm = mer_eval_default_params();
    prm.allow_missing = 1;
    CHECK(mer_eval_score(w, gt.rows, gt.n, short_pred.rows, short_pred.n, &prm, &r, &err) == MER_OK);
    CHECK_EQ_INT(r.n_missing, 1);
    mer_label_table_free(&gt);
    mer_label_table_free(&pred);
}

static void test_toy(const mer_wheels *w) {
    /* spec §1.7 / expected_metric.txt section B, computed by the reference code */
    mer_labeled gt[] = {{"s1", "happy, excited"}, {"s2", "angry, frustrated, disappointed"}, {"s3", "neutral"}};
    mer_labeled pred[] = {{"s3", "[calm]"}, {"s2", "[anger]"}, {"s1", "[joyful, nervous]"}, {"extra", "[happy]"}};
    mer_eval_result r;
    mer_err err = {0};
    CHECK(mer_eval_score(w, gt, 3, pred, 4, NULL, &r, &err) == MER_OK);
    const double l1[5] = {0.6, 0.75, 0.75, 0.6, 0.6}, l2[5] = {1.0 / 3, 1.0 / 3, 0.6, 0.6, 0.6};
    for (int k = 0; k < 5; k++) {
        CHECK_NEAR(r.f[k][0], l1[k], 1e-6);
        CHECK_NEAR(r.f[k][1], l2[k], 1e-6);
    }
    CHECK_NEAR(r.level_f[0], 0.66, 1e-6);
    CHECK_NEAR(r.level_p[0], 0.75, 1e-6);
    CHECK_NEAR(r.level_r[0], 0.60, 1e-6);
    CHECK_NEAR(r.level_f[1], 0.493333, 1e-6);
    CHECK_NEAR(r.level_p[1], 0.65, 1e-6);
    CHECK_NEAR(r.level_r[1], 0.40, 1e-6);
    char line[64];
    snprintf(line, sizeof line, "%.2f& %.2f& %.2f", r.level_f[0] * 100, r.level_f[1] * 100, r.mean * 100);
    CHECK_STR(line, "66.00& 49.33& 57.67");
    CHECK_EQ_INT(r.n_scored[0][0], 2); /* s3 skipped */
}

typedef struct collect {
    char items[32][128];
    int n;
} collect;
static void collect_cb(const char *item, size_t len, void *ud) {
    collect *c = ud;
    if (c->n < 32 && len < 128) { memcpy(c->items[c->n], item, len); c->items[c->n][len] = 0; }
    c->n++;
}

static void test_split(const mer_wheels *w) {
    char *t = slurp(AFF "/string_to_list.jsonl");
    CHECK(t != NULL);
    if (!t) return;
    int cases = 0;
    for (char *l = strtok(t, "\n"); l; l = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(l);
        if (!j) { CHECK(0); continue; }
        const char *in = cJSON_GetObjectItem(j, "in")->valuestring;
        cJSON *items = cJSON_GetObjectItem(j, "items");
        collect c = {.n = 0};
        size_t n = mer_labels_split(in, collect_cb, &c);
        CHECK_EQ_INT(n, cJSON_GetArraySize(items));
        int k = 0;
        cJSON *it;
        cJSON_ArrayForEach(it, items) {
            if (k < c.n) CHECK_MSG(!strcmp(c.items[k], it->valuestring), "split '%s' item %d: '%s' vs '%s'", in, k, c.items[k], it->valuestring);
            k++;
        }
        /* lower().strip() is what the wheel lookup applies: a lowered item maps like the original */
        cJSON *low = cJSON_GetObjectItem(j, "lower");
        k = 0;
        cJSON_ArrayForEach(it, low) {
            if (k < c.n) CHECK_STR(mer_wheels_map(w, c.items[k], 0, 0), mer_wheels_map(w, it->valuestring, 0, 0));
            k++;
        }
        cases++;
        cJSON_Delete(j);
    }
    CHECK(cases >= 20);
    free(t);
}

static void test_bad_files(void) {
    const char *dir = MER_TEST_TMP;
    (void)!system("mkdir -p " MER_TEST_TMP);
    struct { const char *name, *content, *want; mer_status st; } cases[] = {
        {"nocol.csv", "name,labels\na,[happy]\n", "missing column 'openset'", MER_E_FORMAT},
        {"quote.csv", "name,openset\na,\"[happy]\nb,[sad]\n", ":2: unbalanced quote", MER_E_FORMAT},
        {"utf8.csv", "name,openset\na,[h\xff]\n", ":2: invalid UTF-8 at byte offset 17", MER_E_FORMAT},
        {"empty.csv", "", "empty file", MER_E_FORMAT},
        {"extra.csv", "name,openset\na,b,c\n", ":2: 3 fields", MER_E_FORMAT},
        {"dup.csv", "name,openset\na,x\na,y\n", "duplicate name 'a'", MER_E_FORMAT},
        {"stray.csv", "name,openset\na,b\"c\n", ":2: stray quote", MER_E_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].name);
        FILE *f = fopen(path, "wb");
        fputs(cases[i].content, f);
        fclose(f);
        mer_label_table t = {0};
        mer_err err = {0};
        mer_status st = mer_label_table_read(path, "openset", &t, &err);
        CHECK_MSG(st == cases[i].st, "%s: status %d", cases[i].name, st);
        CHECK_MSG(strstr(err.msg, cases[i].want) && strstr(err.msg, path), "%s: message '%s'", cases[i].name, err.msg);
        CHECK(t.rows == NULL && t.n == 0);
    }
    mer_label_table t = {0};
    mer_err err = {0};
    CHECK(mer_label_table_read(MER_TEST_TMP "/does-not-exist.csv", "openset", &t, &err) == MER_E_IO);
    mer_wheels *w = NULL;
    CHECK(mer_wheels_load(MER_TEST_TMP, &w, &err) == MER_E_IO && w == NULL);
    CHECK(strstr(err.msg, "wheel1.csv") != NULL);
}

static void run(void) {
    mer_wheels *w = NULL;
    mer_err err = {0};
    CHECK(mer_wheels_load("data/wheels", &w, &err) == MER_OK);
    if (!w) { printf("FAIL load: %s\n", err.msg); return; }
    test_oracle(w);
    test_toy(w);
    test_real(w);
    test_split(w);
    test_bad_files();
    mer_wheels_free(w);
}
