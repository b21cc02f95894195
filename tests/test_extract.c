/* test_extract.c - `mer extract` against the HF reference (scripts/gpu/gen_extract_fixture.py): the
 * OV-extraction prompt in Qwen2.5's chat template, greedy decoding with repetition penalty 1.05 on the
 * tiny Qwen2 (the reference samples; greedy makes the two comparable token for token), the decoded
 * answer after func_postprocess_qwen; resuming a finished run does nothing; the submission npz holds
 * the rows in input order. */
#include "test.h"
#include "mer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#define T MER_TEST_TMP "/extract"

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
    cJSON_Delete(j);
}
