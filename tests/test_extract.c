/* test_extract.c - `mer extract` against the HF reference (scripts/gpu/gen_extract_fixture.py): the
 * OV-extraction prompt in Qwen2.5's chat template, greedy decoding with repetition penalty 1.05 on the
 * tiny Qwen2 (the reference samples; greedy makes the two comparable token for token), the decoded
 * answer after func_postprocess_qwen; resuming a finished run does nothing; the submission npz holds
 * the rows in input order; --batch 3 and 8 (continuous batching, more samples than slots, different
 * prompt lengths) give the rows --batch 1 gives, greedy and sampled at a fixed seed. */
#include "test.h"
#include "mer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#define T MER_TEST_TMP "/extract"

/* Runs extract over in_csv with batch size `batch` and returns the openset rows. */
static mer_label_table run_batch(mer_extract_params p, const char *in_csv, const char *out, int batch) {
    mer_label_table t = {0};
    mer_job_summary s;
    mer_err err = {0};
    p.batch = batch;
    CHECK_MSG(mer_extract_run(&p, in_csv, out, &s, &err) == MER_OK, "batch %d: %s", batch, err.msg);
    CHECK_MSG(s.n_ok == s.n_total && s.n_total == 11, "batch %d: %zu of %zu ok", batch, s.n_ok, s.n_total);
    CHECK(mer_label_table_read(out, "openset", &t, &err) == MER_OK);
    return t;
}

static void check_batches(cJSON *j) {
    /* 11 samples: the fixture's descriptions, then each cut and joined with another (other lengths) */
    FILE *csv = fopen(T "/many.csv", "w");
    fprintf(csv, "name,reason\n");
    cJSON *it;
    int k = 0;
    const char *r[3];
    cJSON_ArrayForEach(it, j) if (k < 3) r[k++] = cJSON_GetObjectItem(it, "reason")->valuestring;
    CHECK(k == 3);
    if (k != 3) return;
    for (int i = 0; i < 11; i++) {
        const char *a = r[i % 3], *b = r[(i + 1) % 3];
        int la = (int)strlen(a) * (1 + i % 4) / 4;
        while (la > 0 && ((unsigned char)a[la] & 0xC0) == 0x80) la--; /* whole UTF-8 characters */
        fprintf(csv, "s%02d,\"%.*s%s%s\"\n", i, la, a, i >= 3 ? " " : "", i >= 3 ? b : "");
    }
    fclose(csv);
    mer_extract_params p = mer_extract_default_params();
    p.llm = FIXTURES "/models/affectgpt_tiny/llm";
    p.device = MER_DEVICE_CPU; /* the CPU path, also in a CUDA build (test_cuda_llm: the device) */
    p.progress = 0;
    p.n_threads = 2;
    for (int sampled = 0; sampled < 2; sampled++) {
        p.temperature = sampled ? 0.7 : 0; /* the reference's sampling, or greedy */
        p.max_new_tokens = sampled ? 40 : 24;
        p.seed = 1234;
        char o1[256], o3[256], o8[256];
        snprintf(o1, sizeof o1, T "/b1_%d-openset.npz", sampled);
        snprintf(o3, sizeof o3, T "/b3_%d-openset.npz", sampled);
        snprintf(o8, sizeof o8, T "/b8_%d-openset.npz", sampled);
        mer_label_table t1 = run_batch(p, T "/many.csv", o1, 1), t3 = run_batch(p, T "/many.csv", o3, 3),
                        t8 = run_batch(p, T "/many.csv", o8, 8);
        CHECK(t1.n == 11 && t3.n == 11 && t8.n == 11);
        int distinct = 0;
        for (size_t i = 0; i < t1.n && i < t3.n && i < t8.n; i++) {
            CHECK_STR(t3.rows[i].name, t1.rows[i].name);
            CHECK_MSG(!strcmp(t3.rows[i].labels, t1.rows[i].labels) && !strcmp(t8.rows[i].labels, t1.rows[i].labels),
                      "%s %s: batch 1 '%s', batch 3 '%s', batch 8 '%s'", sampled ? "sampled" : "greedy",
                      t1.rows[i].name, t1.rows[i].labels, t3.rows[i].labels, t8.rows[i].labels);
            if (i && strcmp(t1.rows[i].labels, t1.rows[i - 1].labels)) distinct++;
        }
        CHECK(distinct > 0); /* the samples do differ */
        mer_label_table_free(&t1);
        mer_label_table_free(&t3);
        mer_label_table_free(&t8);
    }
}

static void run(void) {
    FILE *f = fopen(FIXTURES "/pipeline/extract_expected.json", "rb");
    CHECK(f != NULL);
    if (!f) return;
    char *buf = calloc(1, 1 << 20);
    buf[fread(buf, 1, (1 << 20) - 1, f)] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(buf), *it;
    free(buf);
    CHECK(j != NULL);
    if (!j) return;
    CHECK(system("rm -rf " T " && mkdir -p " T) == 0);
    FILE *csv = fopen(T "/in.csv", "w");
    fprintf(csv, "name,reason\n");
    cJSON_ArrayForEach(it, j) fprintf(csv, "%s,\"%s\"\n", cJSON_GetObjectItem(it, "name")->valuestring,
                                      cJSON_GetObjectItem(it, "reason")->valuestring);
    fclose(csv);
    mer_extract_params p = mer_extract_default_params();
    p.llm = FIXTURES "/models/affectgpt_tiny/llm";
    p.device = MER_DEVICE_CPU; /* the CPU path, also in a CUDA build (test_cuda_llm: the device) */
    p.temperature = 0; /* greedy */
    p.max_new_tokens = 20;
    p.progress = 0;
    p.n_threads = 2;
    mer_job_summary s;
    mer_err err = {0};
    CHECK_MSG(mer_extract_run(&p, T "/in.csv", T "/x-openset.npz", &s, &err) == MER_OK, "%s", err.msg);
    CHECK_EQ_INT(s.n_ok, 3);
    mer_label_table out = {0};
    CHECK(mer_label_table_read(T "/x-openset.npz", "openset", &out, &err) == MER_OK);
    CHECK_EQ_INT(out.n, 3);
    size_t i = 0;
    cJSON_ArrayForEach(it, j) {
        if (i < out.n) {
            CHECK_STR(out.rows[i].name, cJSON_GetObjectItem(it, "name")->valuestring);
            CHECK_MSG(!strcmp(out.rows[i].labels, cJSON_GetObjectItem(it, "openset")->valuestring),
                      "%s: '%s' vs reference '%s'", out.rows[i].name, out.rows[i].labels,
                      cJSON_GetObjectItem(it, "openset")->valuestring);
        }
        i++;
    }
    mer_label_table_free(&out);
    /* a second run finds everything done */
    CHECK(mer_extract_run(&p, T "/in.csv", T "/x-openset.npz", &s, &err) == MER_OK);
    CHECK_EQ_INT(s.n_skipped, 3);
    /* other options on the same store are refused */
    p.max_new_tokens = 21;
    CHECK(mer_extract_run(&p, T "/in.csv", T "/x-openset.npz", &s, &err) == MER_E_ARG);
    /* a missing column names it */
    p.column = "description";
    CHECK(mer_extract_run(&p, T "/in.csv", T "/y-openset.npz", &s, &err) == MER_E_FORMAT && strstr(err.msg, "description"));
    check_batches(j);
    cJSON_Delete(j);
}
