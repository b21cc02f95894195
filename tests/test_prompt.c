/* test_prompt.c - the AffectGPT and OV-extraction prompts and the answer clean-ups against the
 * reference semantics evaluated in Python (scripts/make_prompt_fixtures.py). */
#include "test.h"
#include "pipeline/prompt.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

static cJSON *load(void) {
    FILE *f = fopen(FIXTURES "/pipeline/prompts.json", "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(b);
    free(b);
    return j;
}

static const char *S(cJSON *o, const char *k) { return cJSON_GetObjectItem(o, k)->valuestring; }

static void run(void) {
    cJSON *j = load(), *it;
    CHECK(j != NULL);
    if (!j) return;
    mer_buf b = {0};
    int n = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "affectgpt")) {
        b.len = 0;
        mer_visual_input in = strcmp(S(it, "input"), "face") ? MER_INPUT_FRAME : MER_INPUT_FACE;
        CHECK(mer__affectgpt_prompt(&b, in, S(it, "subtitle"), S(it, "question"), 1) == MER_OK);
        CHECK_STR(b.data, S(it, "prompt"));
        n++;
    }
    CHECK_EQ_INT(n, 8);
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "ov_prompt")) {
        b.len = 0;
        CHECK(mer__ovlabel_prompt(&b, S(it, "reason")) == MER_OK);
        CHECK_STR(b.data, S(it, "prompt"));
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "postprocess")) {
        CHECK(mer__ovlabel_postprocess(S(it, "in"), &b) == MER_OK);
        CHECK_STR(b.data, S(it, "out"));
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "answer_clean")) {
        CHECK(mer__affectgpt_answer_clean(S(it, "in"), "<|im_start|>", "<|im_end|>", &b) == MER_OK);
        CHECK_STR(b.data, S(it, "out"));
    }
    mer__buf_free(&b);
    cJSON_Delete(j);
}
