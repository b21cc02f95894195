/* test_safetensors.c - the safetensors reader and writer, and the mer_weights dispatcher / config.json
 * helper. References: fixtures written with numpy by scripts/gen_fixtures_formats.py (expected bytes
 * listed by numpy in expected.txt), and the byte vectors of the reference `safetensors` library's own
 * serialisation tests (tensor.rs: test_serialization, test_empty). */
#include "test.h"

#include "io/hfconfig.h"
#include "io/safetensors.h"

#include <stdlib.h>

#define DIR FIXTURES "/safetensors"

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes hex (or "-" for empty) into a malloc'd buffer. */
static unsigned char *unhex(const char *h, size_t *n) {
    size_t len = strcmp(h, "-") ? strlen(h) / 2 : 0;
    unsigned char *p = malloc(len + 1);
    for (size_t i = 0; i < len; i++) p[i] = (unsigned char)(hexval(h[2 * i]) << 4 | hexval(h[2 * i + 1]));
    p[len] = 0;
    *n = len;
    return p;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)sz + 1);
    *n = fread(p, 1, (size_t)sz, f);
    p[*n] = 0;
    fclose(f);
    return p;
}

/* Checks every line of an expected.txt against w; returns the number of tensors listed. */
static int check_expected(const mer_weights *w, const char *path) {
    size_t n;
    char *txt = slurp(path, &n);
    CHECK(txt != NULL);
    if (!txt) return 0;
    int count = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char *f[4];
        int k = 0;
        for (char *p = line; k < 4; k++) {
            f[k] = p;
            p = strchr(p, '\t');
            if (!p) { k++; break; }
            *p++ = 0;
        }
        CHECK_EQ_INT(k, 4);
        if (k != 4) continue;
        size_t nl, nb;
        unsigned char *name = unhex(f[0], &nl);
        unsigned char *bytes = unhex(f[3], &nb);
        const mer_wtensor *t = mer_weights_find(w, (const char *)name);
        CHECK_MSG(t != NULL, "tensor %s found", name);
        if (t) {
            CHECK_STR(mer__safetensors_dtype_name(t->dtype), f[1]);
            char shape[128] = "";
            for (int d = 0; d < t->n_dims; d++)
                snprintf(shape + strlen(shape), sizeof shape - strlen(shape), d ? ",%lld" : "%lld",
                         (long long)t->shape[d]);
            if (!t->n_dims) strcpy(shape, "-");
            CHECK_STR(shape, f[2]);
            CHECK_EQ_INT(t->n_bytes, nb);
            CHECK_MSG(t->n_bytes == nb && (nb == 0 || !memcmp(t->data, bytes, nb)), "bytes of %s", name);
        }
        free(name);
        free(bytes);
        count++;
    }
    free(txt);
    return count;
}

static void test_reference_file(void) {
    mer_err err = {0};
    mer_weights *w = NULL;
    mer_status st = mer_weights_open(DIR "/ref.safetensors", &w, &err);
    CHECK_MSG(st == MER_OK, "open: %s", err.msg);
    if (st) return;
    CHECK_EQ_INT(w->format, MER_WFORMAT_SAFETENSORS);
    int n = check_expected(w, DIR "/expected.txt");
    CHECK_EQ_INT(n, 12);
    CHECK_EQ_INT(w->n_tensors, 12);
    /* __metadata__ kept as strings */
    const mer_kv *kv = mer_weights_find_kv(w, "format");
    CHECK(kv && kv->type == MER_KV_STRING && !strcmp(kv->v.s.p, "pt"));
    kv = mer_weights_find_kv(w, "note");
    CHECK(kv && !strcmp(kv->v.s.p, "line\nbreak \xc3\xa9"));
    /* the f32 values numpy printed */
    size_t tn;
    char *txt = slurp(DIR "/expected.txt", &tn);
    char *vals = strstr(txt, "#values\t");
    const mer_wtensor *t = mer_weights_find(w, "model.embed.weight");
    CHECK(vals && t);
    if (vals && t) {
        char *p = vals + 8;
        for (int i = 0; i < 15; i++) {
            double ref = strtod(p, &p);
            float got;
            memcpy(&got, (const char *)t->data + 4 * i, 4);
            CHECK_MSG(got == (float)ref, "value %d: %.9g vs %.9g", i, got, ref);
        }
    }
    free(txt);
    CHECK(mer_weights_find(w, "nope") == NULL);

    /* Our writer, given the same tensors and metadata, writes the reference bytes exactly. */
    mer_st_tensor *ts = calloc(w->n_tensors, sizeof *ts);
    for (size_t i = 0; i < w->n_tensors; i++) {
        const mer_wtensor *x = &w->tensors[i];
        ts[i] = (mer_st_tensor){x->name, x->dtype, x->n_dims, x->shape, x->data, x->n_bytes};
    }
    const char *meta[2][2] = {{"format", "pt"}, {"note", "line\nbreak \xc3\xa9"}};
    mer_buf out = {0};
    st = mer__safetensors_serialize(ts, w->n_tensors, (const char *const(*)[2])meta, 2, &out, &err);
    CHECK_MSG(st == MER_OK, "serialize: %s", err.msg);
    size_t rn;
    char *ref = slurp(DIR "/ref.safetensors", &rn);
    CHECK_EQ_INT(out.len, rn);
    CHECK_MSG(out.len == rn && !memcmp(out.data, ref, rn), "writer output is byte-identical to the reference");

    /* Written to a file, read back: identical bytes and tensors. */
    const char *tmp = "build-tmp-test-safetensors.safetensors";
    st = mer__safetensors_write(tmp, ts, w->n_tensors, (const char *const(*)[2])meta, 2, &err);
    CHECK_MSG(st == MER_OK, "write: %s", err.msg);
    size_t fn;
    char *back = slurp(tmp, &fn);
    CHECK_MSG(back && fn == rn && !memcmp(back, ref, rn), "file written is identical");
    mer_weights *w2 = NULL;
    st = mer_weights_open(tmp, &w2, &err);
    CHECK_MSG(st == MER_OK, "reopen: %s", err.msg);
    if (!st) CHECK_EQ_INT(check_expected(w2, DIR "/expected.txt"), 12);
    mer_weights_close(w2);
    remove(tmp);
    free(back);
    free(ref);
    mer__buf_free(&out);
    free(ts);
    mer_weights_close(w);
}

/* Byte vectors from the reference library's tests (safetensors/src/tensor.rs). */
static void test_reference_vectors(void) {
    static const unsigned char SER[] = {
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34,
        58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97,
        116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0,
        128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
    static const unsigned char EMPTY[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
    static const unsigned char EMPTY_META[] = {
        40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95, 95, 34, 58, 123, 34, 102,
        114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112, 116, 34, 125, 125, 32, 32, 32, 32, 32};
    static const unsigned char ALIGN[] = {
        72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58, 34,
        70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97,
        116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32,
        32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
    const float v[6] = {0, 1, 2, 3, 4, 5};
    mer_err err = {0};
    const int64_t s3[3] = {1, 2, 3}, s4[4] = {1, 1, 2, 3};
    mer_st_tensor t = {"attn.0", MER_DTYPE_F32, 3, s3, v, sizeof v};
    mer_buf b = {0};
    CHECK(mer__safetensors_serialize(&t, 1, NULL, 0, &b, &err) == MER_OK);
    CHECK(b.len == sizeof SER && !memcmp(b.data, SER, sizeof SER));
    b.len = 0;
    CHECK(mer__safetensors_serialize(NULL, 0, NULL, 0, &b, &err) == MER_OK);
    CHECK(b.len == sizeof EMPTY && !memcmp(b.data, EMPTY, sizeof EMPTY));
    b.len = 0;
    const char *meta[1][2] = {{"framework", "pt"}};
    CHECK(mer__safetensors_serialize(NULL, 0, (const char *const(*)[2])meta, 1, &b, &err) == MER_OK);
    CHECK(b.len == sizeof EMPTY_META && !memcmp(b.data, EMPTY_META, sizeof EMPTY_META));
    b.len = 0;
    mer_st_tensor t4 = {"attn0", MER_DTYPE_F32, 4, s4, v, sizeof v};
    CHECK(mer__safetensors_serialize(&t4, 1, NULL, 0, &b, &err) == MER_OK);
    CHECK(b.len == sizeof ALIGN && !memcmp(b.data, ALIGN, sizeof ALIGN));
    /* and the reader takes the reference's bytes */
    mer_weights *w = NULL;
    CHECK(mer__safetensors_open_mem(SER, sizeof SER, "ser", &w, &err) == MER_OK);
    const mer_wtensor *x = w ? mer_weights_find(w, "attn.0") : NULL;
    CHECK(x && x->n_dims == 3 && x->shape[2] == 3 && x->n_bytes == 24 && !memcmp(x->data, v, 24));
    mer_weights_close(w);
    CHECK(mer__safetensors_open_mem(EMPTY_META, sizeof EMPTY_META, "em", &w, &err) == MER_OK);
    CHECK(w && w->n_tensors == 0 && mer_weights_find_kv(w, "framework"));
    mer_weights_close(w);
    /* writer errors */
    mer_st_tensor bad = {"x", MER_DTYPE_F32, 3, s3, v, 20};
    CHECK_EQ_INT(mer__safetensors_serialize(&bad, 1, NULL, 0, &b, &err), MER_E_SHAPE);
    mer_st_tensor dup[2] = {t, t};
    CHECK_EQ_INT(mer__safetensors_serialize(dup, 2, NULL, 0, &b, &err), MER_E_ARG);
    mer__buf_free(&b);
}

static void test_sharded(void) {
    mer_err err = {0};
    mer_weights *w = NULL;
    /* the directory: index + config.json */
    mer_status st = mer_weights_open(DIR "/sharded", &w, &err);
    CHECK_MSG(st == MER_OK, "open dir: %s", err.msg);
    if (!st) {
        CHECK_EQ_INT(check_expected(w, DIR "/sharded/expected.txt"), 3);
        CHECK_EQ_INT(w->n_tensors, 3);
        CHECK(w->config != NULL);
        int64_t v = 0;
        double eps = 0;
        const char *s = NULL;
        int b = 1;
        CHECK(mer__config_get_int(w->config, "hidden_size", &v, &err) == MER_OK && v == 3);
        CHECK(mer__config_get_int(w->config, "vision_config.hidden_size", &v, &err) == MER_OK && v == 8);
        CHECK(mer__config_get_float(w->config, "rms_norm_eps", &eps, &err) == MER_OK && eps == 1e-6);
        CHECK(mer__config_get_str(w->config, "model_type", &s, &err) == MER_OK && !strcmp(s, "toy"));
        CHECK(mer__config_get_bool(w->config, "tie_word_embeddings", &b, &err) == MER_OK && b == 0);
        CHECK_EQ_INT(mer__config_get_int(w->config, "num_layers", &v, &err), MER_E_NOTFOUND);
        CHECK(strstr(err.msg, "config.json") && strstr(err.msg, "num_layers"));
        CHECK_EQ_INT(mer__config_get_int(w->config, "rms_norm_eps", &v, &err), MER_E_FORMAT);
        CHECK_EQ_INT(mer__config_get_int(w->config, "model_type", &v, &err), MER_E_FORMAT);
        CHECK(mer__config_get_int_or(w->config, "num_layers", 7, &v, &err) == MER_OK && v == 7);
        const mer_kv *kv = mer_weights_find_kv(w, "index.total_size");
        CHECK(kv && !strcmp(kv->v.s.p, "68"));
    }
    mer_weights_close(w);
    /* the index itself */
    st = mer_weights_open(DIR "/sharded/model.safetensors.index.json", &w, &err);
    CHECK_MSG(st == MER_OK, "open index: %s", err.msg);
    if (!st) CHECK_EQ_INT(check_expected(w, DIR "/sharded/expected.txt"), 3);
    mer_weights_close(w);
    /* one shard alone */
    st = mer_weights_open(DIR "/sharded/model-00002-of-00002.safetensors", &w, &err);
    CHECK(st == MER_OK && w->n_tensors == 1 && w->config == NULL);
    mer_weights_close(w);
}

/* Writes text to a file in a scratch folder (created). */
static void put(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

static void test_bad_index(void) {
    mer_err err = {0};
    mer_weights *w = NULL;
    const char *d = "build-tmp-test-st-index";
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp " DIR "/sharded/*.safetensors %s/", d, d, d);
    CHECK(system(cmd) == 0);
    struct {
        const char *json;
        mer_status st;
        const char *needle;
    } cases[] = {
        {"{\"weight_map\":{\"layers.0.w\":\"missing.safetensors\"}}", MER_E_IO, "missing.safetensors"},
        {"{\"weight_map\":{\"nope\":\"model-00001-of-00002.safetensors\"}}", MER_E_NOTFOUND, "nope"},
        {"{\"weight_map\":{\"layers.1.w\":\"model-00001-of-00002.safetensors\",\"layers.0.w\":"
         "\"model-00002-of-00002.safetensors\"}}", MER_E_NOTFOUND, "another shard"},
        {"{\"weight_map\":{\"x\":\"../etc/passwd\"}}", MER_E_FORMAT, "shard file"},
        {"{\"weight_map\":{\"x\":3}}", MER_E_FORMAT, "shard file"},
        {"{\"metadata\":{}}", MER_E_FORMAT, "weight_map"},
        {"{\"weight_map\":{\"x\":", MER_E_FORMAT, "offset"},
    };
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", d);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        put(path, cases[i].json, strlen(cases[i].json));
        err.msg[0] = 0;
        mer_status st = mer_weights_open(path, &w, &err);
        CHECK_MSG(st == cases[i].st, "index case %zu: status %d (%s)", i, st, err.msg);
        CHECK_MSG(w == NULL, "index case %zu: no result", i);
        CHECK_MSG(strstr(err.msg, cases[i].needle) && strstr(err.msg, "model.safetensors.index.json"),
                  "index case %zu message: %s", i, err.msg);
    }
    /* a directory with nothing to open */
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", d, d);
    CHECK(system(cmd) == 0);
    CHECK_EQ_INT(mer_weights_open(d, &w, &err), MER_E_NOTFOUND);
    CHECK(strstr(err.msg, d) != NULL);
    /* a directory whose config.json is malformed: line and column */
    snprintf(path, sizeof path, "%s/config.json", d);
    put(path, "{\n  \"a\": 1,\n  \"b\": ]\n}\n", 22);
    snprintf(cmd, sizeof cmd, "cp " DIR "/ref.safetensors %s/model.safetensors", d);
    CHECK(system(cmd) == 0);
    CHECK_EQ_INT(mer_weights_open(d, &w, &err), MER_E_FORMAT);
    CHECK_MSG(strstr(err.msg, "config.json:3:") != NULL, "config error message: %s", err.msg);
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    CHECK(system(cmd) == 0);
}

/* A valid one-tensor file built here, then broken in one way per case. */
static size_t build(unsigned char *buf, const char *hdr, size_t data_len, int64_t hlen_override) {
    size_t h = strlen(hdr);
    uint64_t n = hlen_override >= 0 ? (uint64_t)hlen_override : h;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, hdr, h);
    for (size_t i = 0; i < data_len; i++) buf[8 + h + i] = (unsigned char)i;
    return 8 + h + data_len;
}

static void test_bad_inputs(void) {
    struct {
        const char *hdr;
        size_t data;
        int64_t hlen;
        mer_status st;
        const char *needle;
    } cases[] = {
        /* truncated: the 8 bytes of length are missing */
        {"", 0, -2, MER_E_FORMAT, "truncated"},
        /* header length past the end */
        {"{}", 0, 1000, MER_E_FORMAT, "past the end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, -1, MER_E_FORMAT, "outside the data area"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 16, -1, MER_E_FORMAT, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, -1, MER_E_FORMAT, "need 12"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, -1, MER_E_FORMAT, "overlap"},
        {"{\"a\":{\"dtype\":\"F99\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, -1, MER_E_FORMAT, "unknown dtype"},
        {"{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, -1, MER_E_UNSUPPORTED, "F8_E4M3"},
        /* huge counts: shape product overflows */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, -1,
         MER_E_FORMAT, "need more than"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8, -1, MER_E_FORMAT, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,8]}}", 8, -1, MER_E_FORMAT, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e30]}}", 8, -1, MER_E_FORMAT, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, -1, MER_E_UNSUPPORTED,
         "dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, -1, MER_E_FORMAT, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},", 8, -1, MER_E_FORMAT, "malformed"},
        {"[1,2]", 0, -1, MER_E_FORMAT, "'{'"},
        {"{\"a\":1} x", 0, -1, MER_E_FORMAT, "after the header"},
        {"{\"__metadata__\":{\"k\":1}}", 0, -1, MER_E_FORMAT, "__metadata__"},
        {"{\"\xff\":1}", 0, -1, MER_E_FORMAT, "UTF-8"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, -1, MER_E_FORMAT, "twice"},
    };
    unsigned char buf[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = build(buf, cases[i].hdr, cases[i].data, cases[i].hlen == -2 ? 0 : cases[i].hlen);
        if (cases[i].hlen == -2) n = 5;
        mer_err err = {0};
        mer_weights *w = (mer_weights *)1;
        mer_status st = mer__safetensors_open_mem(buf, n, "bad.safetensors", &w, &err);
        CHECK_MSG(st == cases[i].st, "case %zu: status %d, want %d (%s)", i, st, cases[i].st, err.msg);
        CHECK_MSG(w == NULL, "case %zu: nothing returned", i);
        CHECK_MSG(strstr(err.msg, "bad.safetensors") && strstr(err.msg, cases[i].needle),
                  "case %zu: message '%s' names the file and '%s'", i, err.msg, cases[i].needle);
        if (!strstr(cases[i].needle, "dtype") && !strstr(cases[i].needle, "F8") && !strstr(cases[i].needle, "shape") &&
            !strstr(cases[i].needle, "data_offsets") && !strstr(cases[i].needle, "dimensions") &&
            !strstr(cases[i].needle, "metadata") && !strstr(cases[i].needle, "twice"))
            CHECK_MSG(strstr(err.msg, "offset") != NULL, "case %zu: message '%s' gives an offset", i, err.msg);
    }
    /* A header of 123 bytes: the file starts with 0x7b, '{', and is still a safetensors file. */
    {
        char hdr[124];
        const char *j = "{\"t\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}";
        memset(hdr, ' ', sizeof hdr);
        memcpy(hdr, j, strlen(j));
        unsigned char file[8 + 123 + 2] = {123};
        memcpy(file + 8, hdr, 123);
        file[131] = 7;
        file[132] = 9;
        put("build-tmp-test-st-7b.safetensors", file, sizeof file);
        mer_weights *w7 = NULL;
        mer_err e7 = {0};
        mer_status st7 = mer_weights_open("build-tmp-test-st-7b.safetensors", &w7, &e7);
        CHECK_MSG(st7 == MER_OK, "header length 123: %s", e7.msg);
        const mer_wtensor *t7 = w7 ? mer_weights_find(w7, "t") : NULL;
        CHECK(t7 && t7->n_bytes == 2 && ((const unsigned char *)t7->data)[1] == 9);
        mer_weights_close(w7);
        remove("build-tmp-test-st-7b.safetensors");
    }
    mer_err err = {0};
    mer_weights *w = NULL;
    CHECK_EQ_INT(mer_weights_open(DIR "/missing.safetensors", &w, &err), MER_E_IO);
    CHECK(strstr(err.msg, "missing.safetensors") != NULL);
    /* Not a checkpoint at all. */
    CHECK_EQ_INT(mer_weights_open(DIR "/expected.txt", &w, &err), MER_E_FORMAT);
    CHECK(strstr(err.msg, "offset 0") != NULL);
}

/* The dispatcher on a PyTorch zip checkpoint: HF wrote the same model as pytorch_model.bin (torch.save)
 * and model.safetensors (the safetensors library); every tensor must agree in dtype, shape and bytes. */
static void test_torch_dispatch(void) {
    static const char *const DIRS[] = {FIXTURES "/models/clip_tiny", FIXTURES "/models/hubert_tiny"};
    for (size_t d = 0; d < sizeof DIRS / sizeof DIRS[0]; d++) {
        char a[256], b[256];
        snprintf(a, sizeof a, "%s/pytorch_model.bin", DIRS[d]);
        snprintf(b, sizeof b, "%s/model.safetensors", DIRS[d]);
        mer_err err = {0};
        mer_weights *wt = NULL, *ws = NULL;
        mer_status st = mer_weights_open(a, &wt, &err);
        CHECK_MSG(st == MER_OK, "open %s: %s", a, err.msg);
        CHECK(mer_weights_open(b, &ws, &err) == MER_OK);
        if (wt && ws) {
            CHECK_EQ_INT(wt->format, MER_WFORMAT_TORCH);
            CHECK_EQ_INT(wt->n_tensors, ws->n_tensors);
            int same = 1;
            for (size_t i = 0; i < ws->n_tensors; i++) {
                const mer_wtensor *x = &ws->tensors[i], *y = mer_weights_find(wt, x->name);
                /* HF saves weight-norm convs under the legacy names in .bin: weight_g / weight_v */
                char alias[256];
                const char *p = strstr(x->name, "parametrizations.weight.original");
                if (!y && p) {
                    snprintf(alias, sizeof alias, "%.*sweight_%c", (int)(p - x->name), x->name,
                             p[strlen("parametrizations.weight.original")] == '0' ? 'g' : 'v');
                    y = mer_weights_find(wt, alias);
                }
                if (!y || y->dtype != x->dtype || y->n_dims != x->n_dims || y->n_bytes != x->n_bytes ||
                    memcmp(y->shape, x->shape, sizeof x->shape[0] * (size_t)x->n_dims) ||
                    memcmp(y->data, x->data, x->n_bytes)) {
                    CHECK_MSG(0, "%s: tensor %s differs between .bin and .safetensors", DIRS[d], x->name);
                    same = 0;
                }
            }
            CHECK(same);
        }
        mer_weights_close(wt);
        mer_weights_close(ws);
    }
}

static void run(void) {
    test_reference_file();
    test_reference_vectors();
    test_sharded();
    test_bad_index();
    test_bad_inputs();
    test_torch_dispatch();
}
