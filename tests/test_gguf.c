/* test_gguf.c - the GGUF reader and writer. References: (1) a GGUF whose header and metadata were
 * serialised by the npm package @huggingface/gguf (tests/fixtures/gguf/ref_js.gguf, made by
 * scripts/ref_gguf.mjs write from the values checked below); (2) the same package's reader run on files
 * our writer produced (node scripts/ref_gguf.mjs read; SKIP when node or the package is missing);
 * (3) byte layouts assembled here by hand from ggml docs/gguf.md; (4) malformed files built byte by byte. */
#include "test.h"

#include "io/gguf.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#define REF_JS FIXTURES "/gguf/ref_js.gguf"

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

// --- a tiny byte builder for hand-made files ---------------------------------------------------------

typedef struct bb {
    unsigned char b[4096];
    size_t n;
} bb;

static void b_u(bb *x, uint64_t v, int n) {
    for (int i = 0; i < n; i++) x->b[x->n++] = (unsigned char)(v >> (8 * i));
}
static void b_raw(bb *x, const void *p, size_t n) {
    memcpy(x->b + x->n, p, n);
    x->n += n;
}
static void b_str(bb *x, const char *s) {
    b_u(x, strlen(s), 8);
    b_raw(x, s, strlen(s));
}
static void b_zero(bb *x, size_t n) {
    memset(x->b + x->n, 0, n);
    x->n += n;
}
static void b_head(bb *x, uint32_t version, uint64_t n_t, uint64_t n_kv) {
    x->n = 0;
    b_raw(x, "GGUF", 4);
    b_u(x, version, 4);
    b_u(x, n_t, 8);
    b_u(x, n_kv, 8);
}
static void b_info(bb *x, const char *name, int nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    b_str(x, name);
    b_u(x, (uint64_t)nd, 4);
    for (int d = 0; d < nd; d++) b_u(x, ne[d], 8);
    b_u(x, type, 4);
    b_u(x, off, 8);
}
static void b_align(bb *x, size_t a) { b_zero(x, (a - x->n % a) % a); }

// --- (1) the reference-serialised file ---------------------------------------------------------------

static void test_ref_js(void) {
    mer_err err = {0};
    mer_weights *w = NULL;
    mer_status st = mer_weights_open(REF_JS, &w, &err);
    CHECK_MSG(st == MER_OK, "open: %s", err.msg);
    if (st) return;
    CHECK_EQ_INT(w->format, MER_WFORMAT_GGUF);
    uint32_t ver = 0, al = 0;
    uint64_t ds = 0;
    CHECK(mer__gguf_info(w, &ver, &al, &ds, &err) == MER_OK);
    CHECK_EQ_INT(ver, 3);
    CHECK_EQ_INT(al, 32);
    CHECK_EQ_INT(ds, 800); /* the package's reader says tensorDataOffset 800 */
    CHECK_EQ_INT(w->n_kv, 17);
    const mer_kv *kv;
    kv = mer_weights_find_kv(w, "general.architecture");
    CHECK(kv && kv->type == MER_KV_STRING && !strcmp(kv->v.s.p, "qwen2"));
    kv = mer_weights_find_kv(w, "general.name");
    CHECK(kv && kv->v.s.len == 9 && !strcmp(kv->v.s.p, "caf\xc3\xa9 \xe4\xb8\xad"));
    kv = mer_weights_find_kv(w, "qwen2.block_count");
    CHECK(kv && kv->type == MER_KV_U32 && kv->v.u == 2);
    kv = mer_weights_find_kv(w, "qwen2.rope.freq_base");
    CHECK(kv && kv->type == MER_KV_F32 && kv->v.f == 1000000.0);
    kv = mer_weights_find_kv(w, "test.u8");
    CHECK(kv && kv->type == MER_KV_U8 && kv->v.u == 250);
    kv = mer_weights_find_kv(w, "test.i8");
    CHECK(kv && kv->type == MER_KV_I8 && kv->v.i == -5);
    kv = mer_weights_find_kv(w, "test.u16");
    CHECK(kv && kv->type == MER_KV_U16 && kv->v.u == 65000);
    kv = mer_weights_find_kv(w, "test.i16");
    CHECK(kv && kv->type == MER_KV_I16 && kv->v.i == -32000);
    kv = mer_weights_find_kv(w, "test.i32");
    CHECK(kv && kv->type == MER_KV_I32 && kv->v.i == -2000000000);
    kv = mer_weights_find_kv(w, "test.bool");
    CHECK(kv && kv->type == MER_KV_BOOL && kv->v.b == 1);
    kv = mer_weights_find_kv(w, "test.u64");
    CHECK(kv && kv->type == MER_KV_U64 && kv->v.u == UINT64_MAX);
    kv = mer_weights_find_kv(w, "test.i64");
    CHECK(kv && kv->type == MER_KV_I64 && kv->v.i == -9007199254740993LL);
    kv = mer_weights_find_kv(w, "test.f64");
    CHECK(kv && kv->type == MER_KV_F64 && kv->v.f == 0.1);
    kv = mer_weights_find_kv(w, "tokenizer.ggml.tokens");
    CHECK(kv && kv->type == MER_KV_ARRAY && kv->arr_type == MER_KV_STRING && kv->arr_n == 4 && kv->arr_str);
    if (kv && kv->arr_str) {
        CHECK_STR(kv->arr_str[0], "a");
        CHECK_STR(kv->arr_str[1], "");
        CHECK_STR(kv->arr_str[2], "\xc3\xa9\xc3\xa9");
        CHECK_STR(kv->arr_str[3], "<|endoftext|>");
        CHECK_EQ_INT(kv->arr_str_len[2], 4);
    }
    kv = mer_weights_find_kv(w, "tokenizer.ggml.token_type");
    CHECK(kv && kv->arr_type == MER_KV_I32 && kv->arr_n == 4 && kv->arr_bytes == 16);
    if (kv) {
        int32_t tt[4];
        memcpy(tt, kv->arr_data, 16);
        CHECK(tt[0] == 1 && tt[1] == 1 && tt[2] == 3 && tt[3] == 3);
    }
    kv = mer_weights_find_kv(w, "test.f32s");
    CHECK(kv && kv->arr_type == MER_KV_F32 && kv->arr_n == 2);
    if (kv) {
        float f[2];
        memcpy(f, kv->arr_data, 8);
        CHECK(f[0] == 1.5f && f[1] == -0.25f);
    }
    kv = mer_weights_find_kv(w, "test.empty");
    CHECK(kv && kv->type == MER_KV_ARRAY && kv->arr_type == MER_KV_I16 && kv->arr_n == 0 && kv->arr_bytes == 0);

    CHECK_EQ_INT(w->n_tensors, 3);
    const mer_wtensor *t = mer_weights_find(w, "blk.0.attn_q.weight");
    CHECK(t && t->dtype == MER_DTYPE_F32 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->n_bytes == 24);
    if (t)
        for (int i = 0; i < 6; i++) {
            float v;
            memcpy(&v, (const char *)t->data + 4 * i, 4);
            CHECK(v == i * 0.5f - 1);
        }
    t = mer_weights_find(w, "counts");
    CHECK(t && t->dtype == MER_DTYPE_I32 && t->n_dims == 1 && t->shape[0] == 3);
    if (t) {
        int32_t c[3];
        memcpy(c, t->data, 12);
        CHECK(c[0] == 7 && c[1] == -7 && c[2] == 123456);
    }
    t = mer_weights_find(w, "token_embd.weight");
    CHECK(t && t->dtype == MER_DTYPE_Q8_0 && t->shape[0] == 2 && t->shape[1] == 32 && t->n_bytes == 68);
    if (t) {
        int ok = 1;
        for (int i = 0; i < 68; i++) ok &= ((const unsigned char *)t->data)[i] == ((i * 37) & 0xff);
        CHECK(ok);
    }

    /* The public description calls (mer inspect). */
    CHECK_STR(mer_weights_format_name(w), "gguf");
    char txt[256];
    const char *type = NULL;
    for (size_t i = 0; i < mer_weights_n_meta(w); i++) {
        const char *key = mer_weights_meta(w, i, &type, txt, sizeof txt, 8);
        if (!strcmp(key, "tokenizer.ggml.tokens")) {
            CHECK_STR(type, "array[string]");
            CHECK_STR(txt, "[4 items: \"a\", \"\", \"\xc3\xa9\xc3\xa9\", \"<|endoftext|>\"]");
        } else if (!strcmp(key, "test.f32s")) {
            CHECK_STR(txt, "[2 items: 1.5, -0.25]");
            mer_weights_meta(w, i, &type, txt, sizeof txt, 1);
            CHECK_STR(txt, "[2 items: 1.5, ...]");
        } else if (!strcmp(key, "test.u64")) {
            CHECK_STR(type, "u64");
            CHECK_STR(txt, "18446744073709551615");
        } else if (!strcmp(key, "test.bool")) {
            CHECK_STR(txt, "true");
        }
    }
    mer_tensor_desc td = mer_weights_tensor_desc(w, 2);
    CHECK(!strcmp(td.name, "token_embd.weight") && !strcmp(td.dtype, "q8_0") && td.n_dims == 2 && td.shape[0] == 2 &&
          td.shape[1] == 32 && td.n_elems == 64 && td.n_bytes == 68);
    CHECK_EQ_INT(mer_weights_n_config(w), 0);

    /* Copying every kv and tensor through our writer gives back the same bytes. */
    mer_gguf_writer *g = NULL;
    CHECK(mer__gguf_writer_new(&g, &err) == MER_OK);
    for (size_t i = 0; i < w->n_kv; i++) CHECK_MSG(mer__gguf_add_kv(g, &w->kv[i], &err) == MER_OK, "%s", err.msg);
    for (size_t i = 0; i < w->n_tensors; i++) {
        const mer_wtensor *x = &w->tensors[i];
        CHECK_MSG(mer__gguf_add_tensor(g, x->name, x->dtype, x->n_dims, x->shape, x->data, &err) == MER_OK, "%s",
                  err.msg);
    }
    mer_buf out = {0};
    CHECK(mer__gguf_serialize(g, &out, NULL, NULL, &err) == MER_OK);
    size_t rn;
    char *ref = slurp(REF_JS, &rn);
    CHECK_EQ_INT(out.len, rn);
    CHECK_MSG(out.len == rn && !memcmp(out.data, ref, rn), "rewritten file is byte-identical to the reference's");
    free(ref);
    mer__buf_free(&out);
    mer__gguf_writer_free(g);
    mer_weights_close(w);
}

// --- (3) byte layouts by hand ------------------------------------------------------------------------

static void test_layout_by_hand(void) {
    mer_err err = {0};
    const float v2[2] = {1.0f, 2.0f};
    const int64_t s1[1] = {2};
    mer_gguf_writer *g = NULL;
    CHECK(mer__gguf_writer_new(&g, &err) == MER_OK);
    CHECK(mer__gguf_add_str(g, "general.architecture", "ab", &err) == MER_OK);
    CHECK(mer__gguf_add_tensor(g, "t", MER_DTYPE_F32, 1, s1, v2, &err) == MER_OK);
    mer_buf out = {0};
    CHECK(mer__gguf_serialize(g, &out, NULL, NULL, &err) == MER_OK);
    mer__gguf_writer_free(g);
    /* Expected, field by field (ggml docs/gguf.md, GGUF v3, default ALIGNMENT 32). */
    bb e;
    b_head(&e, 3, 1, 1);                 /* magic, version, tensor_count, metadata_kv_count: 24 bytes */
    b_str(&e, "general.architecture");   /* key: u64 len + bytes */
    b_u(&e, 8, 4);                       /* value type STRING */
    b_str(&e, "ab");                     /* value */
    CHECK_EQ_INT(e.n, 66);
    b_info(&e, "t", 1, (const uint64_t[]){2}, 0, 0); /* name, n_dims, ne[0], type F32, offset 0 */
    CHECK_EQ_INT(e.n, 99);
    b_align(&e, 32);                     /* padding to the data section */
    CHECK_EQ_INT(e.n, 128);
    b_raw(&e, v2, 8);
    b_align(&e, 32);                     /* each tensor's data padded to ALIGNMENT */
    CHECK_EQ_INT(out.len, 160);
    CHECK_MSG(out.len == e.n && !memcmp(out.data, e.b, e.n), "layout of the tiny file");

    /* general.alignment = 64, two tensors of 40 and 8 bytes: offsets 0 and 64. */
    const float v10[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    const int64_t s25[2] = {2, 5};
    CHECK(mer__gguf_writer_new(&g, &err) == MER_OK);
    CHECK(mer__gguf_add_u32(g, "general.alignment", 64, &err) == MER_OK);
    CHECK(mer__gguf_add_tensor(g, "a", MER_DTYPE_F32, 2, s25, v10, &err) == MER_OK);
    CHECK(mer__gguf_add_tensor(g, "b", MER_DTYPE_F32, 1, s1, v2, &err) == MER_OK);
    out.len = 0;
    CHECK(mer__gguf_serialize(g, &out, NULL, NULL, &err) == MER_OK);
    mer__gguf_writer_free(g);
    b_head(&e, 3, 2, 1);
    b_str(&e, "general.alignment");
    b_u(&e, 4, 4); /* UINT32 */
    b_u(&e, 64, 4);
    b_info(&e, "a", 2, (const uint64_t[]){5, 2}, 0, 0); /* ne innermost first: [5, 2] for shape [2, 5] */
    b_info(&e, "b", 1, (const uint64_t[]){2}, 0, 64);
    b_align(&e, 64);
    CHECK_EQ_INT(e.n, 192);
    b_raw(&e, v10, 40);
    b_align(&e, 64);
    b_raw(&e, v2, 8);
    b_align(&e, 64);
    CHECK_EQ_INT(e.n, 320);
    CHECK_MSG(out.len == e.n && !memcmp(out.data, e.b, e.n), "layout with general.alignment 64");
    /* and it reads back */
    mer_weights *w = NULL;
    CHECK(mer__gguf_open_mem(out.data, out.len, "a64.gguf", &w, &err) == MER_OK);
    const mer_wtensor *t = w ? mer_weights_find(w, "b") : NULL;
    CHECK(t && (const char *)t->data - out.data == 256 && !memcmp(t->data, v2, 8));
    t = w ? mer_weights_find(w, "a") : NULL;
    CHECK(t && t->shape[0] == 2 && t->shape[1] == 5 && !memcmp(t->data, v10, 40));
    mer_weights_close(w);
    mer__buf_free(&out);

    /* writer refusals */
    CHECK(mer__gguf_writer_new(&g, &err) == MER_OK);
    CHECK_EQ_INT(mer__gguf_add_u32(g, "general.alignment", 48, &err), MER_E_ARG);
    CHECK(mer__gguf_add_u32(g, "k", 1, &err) == MER_OK);
    CHECK_EQ_INT(mer__gguf_add_u32(g, "k", 2, &err), MER_E_ARG);
    CHECK_EQ_INT(mer__gguf_add_str(g, "", "x", &err), MER_E_ARG);
    const int64_t s31[2] = {1, 31};
    CHECK_EQ_INT(mer__gguf_add_tensor(g, "q", MER_DTYPE_Q8_0, 2, s31, NULL, &err), MER_E_FORMAT);
    CHECK_EQ_INT(mer__gguf_add_tensor(g, "0123456789012345678901234567890123456789012345678901234567890123", 0, 1,
                                      s1, v2, &err), MER_E_ARG);
    const int64_t s5[5] = {1, 1, 1, 1, 2};
    CHECK_EQ_INT(mer__gguf_add_tensor(g, "five", 0, 5, s5, v2, &err), MER_E_ARG);
    CHECK(mer__gguf_add_tensor(g, "x", 0, 1, s1, NULL, &err) == MER_OK);
    CHECK_EQ_INT(mer__gguf_add_tensor(g, "x", 0, 1, s1, v2, &err), MER_E_ARG);
    CHECK_EQ_INT(mer__gguf_serialize(g, &out, NULL, NULL, &err), MER_E_ARG); /* no data, no callback */
    mer__buf_free(&out);
    mer__gguf_writer_free(g);
}

// --- (2) the reference reader on our writer's output -------------------------------------------------

static mer_status fill_pattern(void *ud, size_t i, void *dst, size_t n, mer_err *err) {
    for (size_t k = 0; k < n; k++) ((unsigned char *)dst)[k] = (unsigned char)(k * 13 + i * 7 + 1);
    return MER_OK;
}

typedef struct tspec {
    const char *name;
    int type;
    int nd;
    int64_t shape[4];
} tspec;

static const tspec TS[] = {
    {"token_embd.weight", MER_DTYPE_Q8_0, 2, {3, 64}},
    {"blk.0.attn_q.weight", MER_DTYPE_Q4_0, 2, {2, 32}},
    {"blk.0.attn_norm.weight", MER_DTYPE_F32, 1, {5}},
    {"f16", MER_DTYPE_F16, 3, {2, 1, 3}},
    {"bf16", MER_DTYPE_BF16, 4, {1, 2, 1, 2}},
    {"i8", MER_DTYPE_I8, 1, {3}},
    {"i16", MER_DTYPE_I16, 1, {3}},
    {"i32", MER_DTYPE_I32, 1, {3}},
    {"i64", MER_DTYPE_I64, 1, {2}},
    {"f64", MER_DTYPE_F64, 2, {1, 1}},
};

static int node_ready(void) {
    if (system("node --version >/dev/null 2>&1") != 0) return 0;
    FILE *f = fopen("models/npm/gguf/node_modules/@huggingface/gguf/package.json", "r");
    if (!f) return 0;
    fclose(f);
    return 1;
}

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static void test_reference_reader(void) {
    if (!node_ready()) {
        printf("SKIP test_gguf: node or @huggingface/gguf missing (scripts/deps.d/gguf.sh installs it)\n");
        return;
    }
    mer_err err = {0};
    mer_gguf_writer *g = NULL;
    CHECK(mer__gguf_writer_new(&g, &err) == MER_OK);
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int64_t i64 = -1234567890123LL;
    CHECK(mer__gguf_add_str(g, "general.architecture", "qwen2", &err) == MER_OK);
    CHECK(mer__gguf_add_u32(g, "general.alignment", 64, &err) == MER_OK);
    CHECK(mer__gguf_add_scalar(g, "t.u8", MER_KV_U8, &u8, &err) == MER_OK);
    CHECK(mer__gguf_add_scalar(g, "t.i8", MER_KV_I8, &i8, &err) == MER_OK);
    CHECK(mer__gguf_add_scalar(g, "t.u16", MER_KV_U16, &u16, &err) == MER_OK);
    CHECK(mer__gguf_add_scalar(g, "t.i16", MER_KV_I16, &i16, &err) == MER_OK);
    CHECK(mer__gguf_add_i32(g, "t.i32", -7, &err) == MER_OK);
    CHECK(mer__gguf_add_f32(g, "t.f32", 0.1f, &err) == MER_OK);
    CHECK(mer__gguf_add_bool(g, "t.bool", 0, &err) == MER_OK);
    CHECK(mer__gguf_add_u64(g, "t.u64", 1ULL << 60, &err) == MER_OK);
    CHECK(mer__gguf_add_scalar(g, "t.i64", MER_KV_I64, &i64, &err) == MER_OK);
    CHECK(mer__gguf_add_f64(g, "t.f64", -2.5e-300, &err) == MER_OK);
    const char *toks[3] = {"hello", "", "w\xc3\xb6rld"};
    CHECK(mer__gguf_add_str_array(g, "t.strs", toks, 3, &err) == MER_OK);
    const uint16_t arr16[3] = {1, 2, 65535};
    CHECK(mer__gguf_add_array(g, "t.u16s", MER_KV_U16, arr16, 3, &err) == MER_OK);
    for (size_t i = 0; i < MER_ARRAY_LEN(TS); i++)
        CHECK_MSG(mer__gguf_add_tensor(g, TS[i].name, TS[i].type, TS[i].nd, TS[i].shape, NULL, &err) == MER_OK,
                  "%s", err.msg);
    const char *path = "build-tmp-test-gguf-ours.gguf";
    CHECK_MSG(mer__gguf_write(g, path, fill_pattern, NULL, &err) == MER_OK, "%s", err.msg);
    mer__gguf_writer_free(g);

    FILE *p = popen("node scripts/ref_gguf.mjs read build-tmp-test-gguf-ours.gguf", "r");
    mer_buf js = {0};
    char chunk[4096];
    size_t k;
    while (p && (k = fread(chunk, 1, sizeof chunk, p)) > 0) mer__buf_append(&js, chunk, k);
    int rc = p ? pclose(p) : -1;
    CHECK_MSG(rc == 0 && js.len > 0, "reference reader ran (rc %d)", rc);
    cJSON *r = js.data ? cJSON_Parse(js.data) : NULL;
    CHECK(r != NULL);
    if (r) {
        CHECK_EQ_INT(jget(r, "version")->valueint, 3);
        CHECK_STR(jget(r, "tensor_count")->valuestring, "10");
        CHECK_STR(jget(r, "kv_count")->valuestring, "14");
        const cJSON *kv = jget(r, "kv");
        struct { const char *key; int type; double num; const char *s; } want[] = {
            {"general.architecture", 8, 0, "qwen2"}, {"general.alignment", 4, 64, NULL}, {"t.u8", 0, 200, NULL},
            {"t.i8", 1, -100, NULL}, {"t.u16", 2, 60000, NULL}, {"t.i16", 3, -30000, NULL}, {"t.i32", 5, -7, NULL},
            {"t.f32", 6, (double)0.1f, NULL}, {"t.u64", 10, 0, "1152921504606846976"},
            {"t.i64", 11, 0, "-1234567890123"}, {"t.f64", 12, -2.5e-300, NULL},
        };
        for (size_t i = 0; i < MER_ARRAY_LEN(want); i++) {
            const cJSON *e = jget(kv, want[i].key);
            CHECK_MSG(e != NULL, "reference sees %s", want[i].key);
            if (!e) continue;
            CHECK_EQ_INT(jget(e, "type")->valueint, want[i].type);
            const cJSON *v = jget(e, "value");
            if (want[i].s) CHECK_MSG(cJSON_IsString(v) && !strcmp(v->valuestring, want[i].s), "%s", want[i].key);
            else CHECK_MSG(cJSON_IsNumber(v) && v->valuedouble == want[i].num, "%s = %.17g", want[i].key, v->valuedouble);
        }
        const cJSON *b = jget(jget(kv, "t.bool"), "value");
        CHECK(cJSON_IsFalse(b));
        const cJSON *sa = jget(kv, "t.strs");
        CHECK(sa && jget(sa, "subType")->valueint == 8 && cJSON_GetArraySize(jget(sa, "value")) == 3);
        if (sa) CHECK_STR(cJSON_GetArrayItem(jget(sa, "value"), 2)->valuestring, "w\xc3\xb6rld");
        const cJSON *ua = jget(kv, "t.u16s");
        CHECK(ua && jget(ua, "subType")->valueint == 2 && cJSON_GetArrayItem(jget(ua, "value"), 2)->valueint == 65535);
        /* tensor infos: names, ggml-order shapes, types, absolute offsets holding our bytes */
        size_t fn;
        char *file = slurp(path, &fn);
        const cJSON *ts = jget(r, "tensors");
        CHECK_EQ_INT(cJSON_GetArraySize(ts), (int)MER_ARRAY_LEN(TS));
        CHECK_EQ_INT(strtoull(jget(r, "tensorDataOffset")->valuestring, NULL, 10) % 64, 0);
        size_t i = 0;
        for (const cJSON *t = ts ? ts->child : NULL; t && i < MER_ARRAY_LEN(TS); t = t->next, i++) {
            CHECK_STR(jget(t, "name")->valuestring, TS[i].name);
            CHECK_EQ_INT(jget(t, "dtype")->valueint, TS[i].type);
            const cJSON *sh = jget(t, "shape");
            CHECK_EQ_INT(cJSON_GetArraySize(sh), TS[i].nd);
            uint64_t nel = 1;
            for (int d = 0; d < TS[i].nd; d++) {
                uint64_t ne = strtoull(cJSON_GetArrayItem(sh, d)->valuestring, NULL, 10);
                CHECK_EQ_INT(ne, TS[i].shape[TS[i].nd - 1 - d]);
                nel *= ne;
            }
            uint64_t abs = strtoull(jget(t, "abs")->valuestring, NULL, 10);
            CHECK_EQ_INT(abs % 64, 0);
            size_t nb = nel / mer__wtype_block_elems(TS[i].type) * mer__wtype_block_bytes(TS[i].type);
            int ok = file && abs + nb <= fn;
            for (size_t q = 0; ok && q < nb; q++)
                ok = (unsigned char)file[abs + q] == (unsigned char)(q * 13 + i * 7 + 1);
            CHECK_MSG(ok, "tensor %s data at the offset the reference computes", TS[i].name);
        }
        free(file);
        cJSON_Delete(r);
    }
    mer__buf_free(&js);

    /* And our reader agrees with what we wrote. */
    mer_weights *w = NULL;
    CHECK(mer_weights_open(path, &w, &err) == MER_OK);
    for (size_t i = 0; w && i < MER_ARRAY_LEN(TS); i++) {
        const mer_wtensor *t = mer_weights_find(w, TS[i].name);
        CHECK(t && (int)t->dtype == TS[i].type && t->n_dims == TS[i].nd);
        for (int d = 0; t && d < TS[i].nd; d++) CHECK_EQ_INT(t->shape[d], TS[i].shape[d]);
    }
    mer_weights_close(w);
    remove(path);
}

// --- (4) malformed files -----------------------------------------------------------------------------

static void expect_bad(const bb *x, mer_status want, const char *needle, int line) {
    mer_err err = {0};
    mer_weights *w = (mer_weights *)1;
    mer_status st = mer__gguf_open_mem(x->b, x->n, "bad.gguf", &w, &err);
    CHECK_MSG(st == want, "line %d: status %d, want %d (%s)", line, st, want, err.msg);
    CHECK_MSG(w == NULL, "line %d: nothing returned", line);
    CHECK_MSG(strstr(err.msg, "bad.gguf") && strstr(err.msg, needle), "line %d: message '%s' should name '%s'", line,
              err.msg, needle);
}
#define BAD(x, st, needle) expect_bad(x, st, needle, __LINE__)

static void test_bad_inputs(void) {
    /* Every truncation of the reference file fails cleanly, up to the end of the last tensor's data. */
    size_t rn;
    char *ref = slurp(REF_JS, &rn);
    CHECK(ref && rn == 960);
    int all = 1;
    for (size_t n = 0; ref && n < 864 + 68; n++) {
        mer_err err = {0};
        mer_weights *w = NULL;
        mer_status st = mer__gguf_open_mem(ref, n, "cut.gguf", &w, &err);
        if (st != MER_E_FORMAT || w || !strstr(err.msg, "cut.gguf") || !strstr(err.msg, "offset")) {
            CHECK_MSG(0, "truncated at %zu: status %d (%s)", n, st, err.msg);
            all = 0;
            break;
        }
    }
    CHECK(all);
    free(ref);

    bb x;
    uint64_t ne2[1] = {2};
    b_head(&x, 3, 0, 0);
    x.b[0] = 'X';
    BAD(&x, MER_E_FORMAT, "magic");
    b_head(&x, 1, 0, 0);
    BAD(&x, MER_E_UNSUPPORTED, "version 1");
    b_head(&x, 0x03000000u, 0, 0);
    BAD(&x, MER_E_UNSUPPORTED, "big-endian");
    b_head(&x, 3, 0, 1ULL << 62);
    BAD(&x, MER_E_FORMAT, "kv count");
    b_head(&x, 3, UINT64_MAX, 0);
    BAD(&x, MER_E_FORMAT, "tensor count");
    b_head(&x, 3, 0, 1);
    b_u(&x, 1ULL << 40, 8); /* key length */
    b_zero(&x, 16);
    BAD(&x, MER_E_FORMAT, "past the end");
    b_head(&x, 3, 0, 1);
    b_str(&x, "k");
    b_u(&x, 13, 4);
    b_zero(&x, 8);
    BAD(&x, MER_E_FORMAT, "unknown value type 13");
    b_head(&x, 3, 0, 1);
    b_str(&x, "k");
    b_u(&x, 9, 4);
    b_u(&x, 4, 4);
    b_u(&x, 1ULL << 60, 8); /* 2^60 u32 */
    b_zero(&x, 16);
    BAD(&x, MER_E_FORMAT, "runs past the end");
    b_head(&x, 3, 0, 1);
    b_str(&x, "k");
    b_u(&x, 9, 4);
    b_u(&x, 8, 4);
    b_u(&x, 1ULL << 61, 8); /* 2^61 strings */
    b_zero(&x, 64);
    BAD(&x, MER_E_FORMAT, "runs past the end");
    b_head(&x, 3, 0, 1); /* arrays of arrays, 10 deep */
    b_str(&x, "k");
    b_u(&x, 9, 4);
    for (int d = 0; d < 10; d++) {
        b_u(&x, 9, 4);
        b_u(&x, 1, 8);
    }
    b_u(&x, 4, 4);
    b_u(&x, 1, 8);
    b_u(&x, 0, 4);
    BAD(&x, MER_E_FORMAT, "nested deeper");
    b_head(&x, 3, 0, 1);
    b_str(&x, "k");
    b_u(&x, 7, 4);
    b_u(&x, 2, 1);
    BAD(&x, MER_E_FORMAT, "bool value 2");
    b_head(&x, 3, 0, 2);
    b_str(&x, "k");
    b_u(&x, 4, 4);
    b_u(&x, 1, 4);
    b_str(&x, "k");
    b_u(&x, 4, 4);
    b_u(&x, 1, 4);
    BAD(&x, MER_E_FORMAT, "duplicate key 'k'");
    b_head(&x, 3, 0, 1);
    b_str(&x, "general.alignment");
    b_u(&x, 4, 4);
    b_u(&x, 48, 4);
    BAD(&x, MER_E_FORMAT, "general.alignment");
    b_head(&x, 3, 0, 1);
    b_str(&x, "general.alignment");
    b_u(&x, 10, 4);
    b_u(&x, 32, 8);
    BAD(&x, MER_E_FORMAT, "general.alignment");
    /* tensor infos */
    b_head(&x, 3, 1, 0);
    b_info(&x, "t", 1, ne2, 5, 0);
    b_align(&x, 32);
    b_zero(&x, 32);
    BAD(&x, MER_E_UNSUPPORTED, "unknown ggml type 5");
    b_head(&x, 3, 1, 0);
    b_info(&x, "t", 9, (const uint64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, 0, 0);
    b_align(&x, 32);
    b_zero(&x, 32);
    BAD(&x, MER_E_FORMAT, "9 dimensions");
    b_head(&x, 3, 1, 0);
    b_info(&x, "t", 2, (const uint64_t[]){31, 1}, 8, 0);
    b_align(&x, 32);
    b_zero(&x, 64);
    BAD(&x, MER_E_FORMAT, "not a multiple of the q8_0 block size");
    b_head(&x, 3, 1, 0);
    b_info(&x, "t", 1, ne2, 0, 4);
    b_align(&x, 32);
    b_zero(&x, 64);
    BAD(&x, MER_E_FORMAT, "not a multiple of the alignment");
    b_head(&x, 3, 1, 0);
    b_info(&x, "t", 1, ne2, 0, 32);
    b_align(&x, 32);
    b_zero(&x, 32);
    BAD(&x, MER_E_FORMAT, "run past the end");
    b_head(&x, 3, 1, 0);
    b_info(&x, "t", 2, (const uint64_t[]){1ULL << 40, 1ULL << 40}, 0, 0);
    b_align(&x, 32);
    b_zero(&x, 32);
    BAD(&x, MER_E_FORMAT, "overflow");
    b_head(&x, 3, 2, 0);
    b_info(&x, "a", 1, (const uint64_t[]){16}, 0, 0);
    b_info(&x, "b", 1, (const uint64_t[]){16}, 0, 32);
    b_align(&x, 32);
    b_zero(&x, 128);
    BAD(&x, MER_E_FORMAT, "overlap");
    b_head(&x, 3, 2, 0);
    b_info(&x, "a", 1, ne2, 0, 0);
    b_info(&x, "a", 1, ne2, 0, 32);
    b_align(&x, 32);
    b_zero(&x, 64);
    BAD(&x, MER_E_FORMAT, "twice");
    b_head(&x, 3, 1, 0);
    b_info(&x, "t", 1, ne2, 0, 0);
    BAD(&x, MER_E_FORMAT, "truncated");
    /* a valid empty file: header only */
    b_head(&x, 3, 0, 0);
    mer_err err = {0};
    mer_weights *w = NULL;
    CHECK(mer__gguf_open_mem(x.b, x.n, "empty.gguf", &w, &err) == MER_OK && w->n_tensors == 0);
    mer_weights_close(w);
    /* a nested array that is valid: [[1,2],[3]] of u8 */
    b_head(&x, 3, 0, 1);
    b_str(&x, "n");
    b_u(&x, 9, 4);
    b_u(&x, 9, 4);
    b_u(&x, 2, 8);
    b_u(&x, 0, 4);
    b_u(&x, 2, 8);
    b_u(&x, 1, 1);
    b_u(&x, 2, 1);
    b_u(&x, 0, 4);
    b_u(&x, 1, 8);
    b_u(&x, 3, 1);
    CHECK(mer__gguf_open_mem(x.b, x.n, "nested.gguf", &w, &err) == MER_OK);
    const mer_kv *kv = w ? mer_weights_find_kv(w, "n") : NULL;
    CHECK(kv && kv->arr_type == MER_KV_ARRAY && kv->arr_n == 2 && kv->arr_bytes == 2 * 12 + 3);
    mer_weights_close(w);
}

// --- (5) mer quantize against numpy's ggml reference quantisers -------------------------------------

static int hexval(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

static void check_quantized(const char *type, int quant) {
    char exp_path[256], out_path[128];
    snprintf(exp_path, sizeof exp_path, FIXTURES "/gguf/hf_tiny/expected_%s.txt", type);
    snprintf(out_path, sizeof out_path, "build-tmp-test-gguf-q-%s.gguf", type);
    mer_err err = {0};
    mer_quantize_params p = mer_quantize_default_params();
    p.type = type;
    p.n_threads = 3;
    mer_quantize_stats s;
    mer_status st = mer_quantize_file(FIXTURES "/gguf/hf_tiny", out_path, &p, &s, &err);
    CHECK_MSG(st == MER_OK, "quantize %s: %s", type, err.msg);
    if (st) return;
    CHECK_EQ_INT(s.n_tensors, 17);
    CHECK_EQ_INT(s.n_renamed, 15);
    CHECK(s.arch && !strcmp(s.arch, "qwen2"));
    mer_weights *w = NULL;
    st = mer_weights_open(out_path, &w, &err);
    CHECK_MSG(st == MER_OK, "reopen %s: %s", type, err.msg);
    if (st) return;
    size_t n;
    char *txt = slurp(exp_path, &n);
    int lines = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        char *name = line, *ty = strchr(name, '\t');
        *ty++ = 0;
        char *ne = strchr(ty, '\t');
        *ne++ = 0;
        char *hex = strchr(ne, '\t');
        *hex++ = 0;
        const mer_wtensor *t = mer_weights_find(w, name);
        CHECK_MSG(t != NULL, "%s: tensor %s present", type, name);
        if (!t) continue;
        CHECK_MSG((int)t->dtype == atoi(ty), "%s: %s type %d, want %s", type, name, (int)t->dtype, ty);
        char got_ne[64] = "";
        for (int d = t->n_dims - 1; d >= 0; d--)
            snprintf(got_ne + strlen(got_ne), sizeof got_ne - strlen(got_ne), "%s%lld", d == t->n_dims - 1 ? "" : ",",
                     (long long)t->shape[d]);
        CHECK_MSG(!strcmp(got_ne, ne), "%s: %s ne %s, want %s", type, name, got_ne, ne);
        size_t nb = strlen(hex) / 2;
        CHECK_MSG(t->n_bytes == nb, "%s: %s has %zu bytes, want %zu", type, name, t->n_bytes, nb);
        size_t bad = nb;
        for (size_t k = 0; k < nb && k < t->n_bytes; k++)
            if (((const unsigned char *)t->data)[k] != (hexval(hex[2 * k]) << 4 | hexval(hex[2 * k + 1]))) {
                bad = k;
                break;
            }
        CHECK_MSG(bad == nb, "%s: %s differs from the reference at byte %zu", type, name, bad);
    }
    CHECK_EQ_INT(lines, 17);
    CHECK_EQ_INT(w->n_tensors, 17);
    free(txt);
    /* metadata llama.cpp reads */
    struct { const char *key; uint64_t u; double f; } want[] = {
        {"qwen2.context_length", 128, 0}, {"qwen2.embedding_length", 32, 0}, {"qwen2.block_count", 1, 0},
        {"qwen2.feed_forward_length", 64, 0}, {"qwen2.attention.head_count", 2, 0},
        {"qwen2.attention.head_count_kv", 2, 0}, {"qwen2.rope.freq_base", 0, 1000000.0},
        {"qwen2.attention.layer_norm_rms_epsilon", 0, (double)1e-6f},
    };
    for (size_t i = 0; i < MER_ARRAY_LEN(want); i++) {
        const mer_kv *kv = mer_weights_find_kv(w, want[i].key);
        CHECK_MSG(kv != NULL, "%s present", want[i].key);
        if (!kv) continue;
        if (want[i].u) CHECK_MSG(kv->type == MER_KV_U32 && kv->v.u == want[i].u, "%s", want[i].key);
        else CHECK_MSG(kv->type == MER_KV_F32 && kv->v.f == want[i].f, "%s", want[i].key);
    }
    const mer_kv *kv = mer_weights_find_kv(w, "general.architecture");
    CHECK(kv && kv->type == MER_KV_STRING && !strcmp(kv->v.s.p, "qwen2"));
    kv = mer_weights_find_kv(w, "general.file_type");
    CHECK(kv && kv->type == MER_KV_U32 && kv->v.u == (uint64_t)(quant == 8 ? 7 : quant == 4 ? 2 : 1));
    kv = mer_weights_find_kv(w, "general.quantization_version");
    CHECK(quant ? kv && kv->v.u == 2 : kv == NULL);
    /* GGUF -> GGUF: the same type again copies every tensor and key. */
    char again[140];
    snprintf(again, sizeof again, "%s.again.gguf", out_path);
    CHECK(mer_quantize_file(out_path, again, &p, NULL, &err) == MER_OK);
    size_t an, bn;
    char *a = slurp(out_path, &an), *b = slurp(again, &bn);
    CHECK_MSG(a && b && an == bn && !memcmp(a, b, an), "%s: requantising a GGUF to its own type is the identity", type);
    free(a);
    free(b);
    remove(again);
    mer_weights_close(w);
    remove(out_path);
}

static void test_quantize(void) {
    check_quantized("q8_0", 8);
    check_quantized("q4_0", 4);
    check_quantized("f16", 0);
    mer_err err = {0};
    mer_quantize_params p = mer_quantize_default_params();
    p.type = "q5_1";
    CHECK_EQ_INT(mer_quantize_file(FIXTURES "/gguf/hf_tiny", "build-tmp-x.gguf", &p, NULL, &err), MER_E_ARG);
    CHECK(strstr(err.msg, "q5_1") != NULL);
    p.type = "q8_0";
    CHECK_EQ_INT(mer_quantize_file(FIXTURES "/gguf/nope", "build-tmp-x.gguf", &p, NULL, &err), MER_E_IO);
    /* a PyTorch zip checkpoint in, f32 out: every tensor keeps its name (no table for CLIP) and its bytes,
     * which must equal HF's model.safetensors of the same model */
    p.type = "f32";
    CHECK_MSG(mer_quantize_file(FIXTURES "/models/clip_tiny/pytorch_model.bin", "build-tmp-x.gguf", &p, NULL, &err) ==
                  MER_OK, "quantize .pth: %s", err.msg);
    mer_weights *ws = NULL, *wg = NULL;
    CHECK(mer_weights_open(FIXTURES "/models/clip_tiny/model.safetensors", &ws, &err) == MER_OK);
    CHECK(mer_weights_open("build-tmp-x.gguf", &wg, &err) == MER_OK);
    if (ws && wg) {
        CHECK_EQ_INT(wg->n_tensors, ws->n_tensors);
        int same = 1;
        for (size_t i = 0; i < ws->n_tensors; i++) {
            const mer_wtensor *a = &ws->tensors[i], *b = mer_weights_find(wg, a->name);
            if (!b || b->dtype != MER_DTYPE_F32 || b->n_bytes != a->n_bytes || memcmp(a->data, b->data, a->n_bytes) ||
                b->n_dims != a->n_dims || memcmp(a->shape, b->shape, sizeof a->shape[0] * (size_t)a->n_dims)) {
                CHECK_MSG(0, ".pth -> gguf: tensor %s differs", a->name);
                same = 0;
            }
        }
        CHECK(same);
    }
    mer_weights_close(ws);
    mer_weights_close(wg);
    p.type = "q8_0";
    /* an HF model written by transformers (rope_theta under rope_parameters) */
    CHECK(mer_quantize_file(FIXTURES "/models/qwen2_tiny", "build-tmp-x.gguf", &p, NULL, &err) == MER_OK);
    mer_weights *w = NULL;
    CHECK(mer_weights_open("build-tmp-x.gguf", &w, &err) == MER_OK);
    const mer_kv *kv = w ? mer_weights_find_kv(w, "qwen2.rope.freq_base") : NULL;
    CHECK(kv && kv->v.f == 10000.0);
    CHECK(w && mer_weights_find(w, "blk.1.ffn_down.weight") && mer_weights_find(w, "output.weight"));
    mer_weights_close(w);
    remove("build-tmp-x.gguf");
}

/* A Qwen2 folder with tokenizer.json: the GGUF carries the tokenizer, and mer's tokenizer (tested against
 * the reference JS tokenizer on tokenizer.json) encodes the same ids from either file. */
static void test_quantize_tokenizer(void) {
    const char *tj = "models/qwen2-tokenizer/tokenizer.json";
    FILE *f = fopen(tj, "rb");
    if (!f) {
        printf("SKIP test_gguf tokenizer: %s missing (scripts/deps.d/tokenizer.sh installs it)\n", tj);
        return;
    }
    fclose(f);
    const char *d = "build-tmp-test-gguf-tok";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp " FIXTURES "/gguf/hf_tiny/config.json " FIXTURES
             "/gguf/hf_tiny/model.safetensors %s %s/", d, d, tj, d);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s/tokenizer_config.json", d);
    f = fopen(cmd, "w");
    fputs("{\"add_bos_token\": false, \"bos_token\": null, \"eos_token\": \"<|im_end|>\",\n"
          " \"pad_token\": {\"content\": \"<|endoftext|>\"}, \"chat_template\": \"{{ messages }}\"}\n", f);
    fclose(f);
    char out[256];
    snprintf(out, sizeof out, "%s/m.gguf", d);
    mer_err err = {0};
    mer_quantize_stats qs;
    CHECK_MSG(mer_quantize_file(d, out, NULL, &qs, &err) == MER_OK, "quantize with tokenizer: %s", err.msg);
    CHECK(qs.has_tokenizer == 1);
    mer_tokenizer *a = NULL, *b = NULL;
    CHECK_MSG(mer_tokenizer_load(tj, NULL, &a, &err) == MER_OK, "%s", err.msg);
    CHECK_MSG(mer_tokenizer_load(out, NULL, &b, &err) == MER_OK, "tokenizer from our GGUF: %s", err.msg);
    mer_weights *w = NULL;
    CHECK(mer_weights_open(out, &w, &err) == MER_OK);
    if (a && b && w) {
        static const char *const TEXT[] = {
            "Hello world! 123 4567",
            "<|im_start|>system\nYou are Qwen.<|im_end|>\n<|im_start|>user\n\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c"
            "\xe4\xb8\x96\xe7\x95\x8c<|im_end|>\n",
            "  leading spaces, tabs\tand \xf0\x9f\x98\x80 emoji; caf\xc3\xa9 <tool_call>x</tool_call>",
        };
        for (size_t i = 0; i < MER_ARRAY_LEN(TEXT); i++) {
            int32_t *ia = NULL, *ib = NULL;
            size_t na = 0, nb = 0;
            CHECK(mer_tokenizer_encode(a, TEXT[i], strlen(TEXT[i]), &ia, &na, &err) == MER_OK);
            CHECK(mer_tokenizer_encode(b, TEXT[i], strlen(TEXT[i]), &ib, &nb, &err) == MER_OK);
            CHECK_MSG(na == nb && na && !memcmp(ia, ib, na * sizeof *ia), "text %zu encodes the same from both", i);
            free(ia);
            free(ib);
        }
        int32_t eos = mer_tokenizer_token_id(a, "<|im_end|>", 10), pad = mer_tokenizer_token_id(a, "<|endoftext|>", 13);
        const mer_kv *kv = mer_weights_find_kv(w, "tokenizer.ggml.eos_token_id");
        CHECK(kv && kv->type == MER_KV_U32 && (int64_t)kv->v.u == eos);
        kv = mer_weights_find_kv(w, "tokenizer.ggml.padding_token_id");
        CHECK(kv && (int64_t)kv->v.u == pad);
        CHECK(mer_weights_find_kv(w, "tokenizer.ggml.bos_token_id") == NULL);
        kv = mer_weights_find_kv(w, "tokenizer.ggml.add_bos_token");
        CHECK(kv && kv->type == MER_KV_BOOL && kv->v.b == 0);
        kv = mer_weights_find_kv(w, "tokenizer.chat_template");
        CHECK(kv && !strcmp(kv->v.s.p, "{{ messages }}"));
        kv = mer_weights_find_kv(w, "tokenizer.ggml.token_type");
        CHECK(kv && kv->arr_n >= (uint64_t)eos + 1);
        if (kv && kv->arr_n > (uint64_t)eos) {
            int32_t t;
            memcpy(&t, (const char *)kv->arr_data + 4 * (size_t)eos, 4);
            CHECK_EQ_INT(t, 3); /* control */
        }
    }
    mer_weights_close(w);
    mer_tokenizer_free(a);
    mer_tokenizer_free(b);
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    CHECK(system(cmd) == 0);
}

static void run(void) {
    test_ref_js();
    test_layout_by_hand();
    test_reference_reader();
    test_bad_inputs();
    test_quantize();
    test_quantize_tokenizer();
}
