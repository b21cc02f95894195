/* test_pickle.c - the safe pickle subset against pickles CPython wrote (protocols 0 to 5, written by
 * scripts/make_io_fixtures.py with the values it read back rendered in expected.txt), the writer against
 * pickle.dumps(d, protocol=2) byte for byte, and hostile or broken streams: os.system through
 * GLOBAL/REDUCE and INST must be refused (and not run), every truncation and unknown opcode is an
 * error naming the opcode and its byte offset. */
#include "io/pickle.h"
#include "test.h"
#include "io_fixtures.h"

#include <unistd.h>

/* the same canonical form as render() in make_io_fixtures.py */
static void render(mer_buf *b, const mer_py *v, int depth) {
    if (depth > MER_PY_MAX_DEPTH) { mer__buf_printf(b, "<deep>"); return; }
    switch (v->type) {
    case MER_PY_NONE: mer__buf_printf(b, "None"); return;
    case MER_PY_BOOL: mer__buf_printf(b, v->i ? "True" : "False"); return;
    case MER_PY_INT: mer__buf_printf(b, "i%lld", (long long)v->i); return;
    case MER_PY_FLOAT: mer__buf_printf(b, "f%.17g", v->f); return;
    case MER_PY_STR:
    case MER_PY_BYTES:
        mer__buf_putc(b, v->type == MER_PY_STR ? 'u' : 'b');
        if (!v->len) mer__buf_putc(b, '-');
        for (size_t i = 0; i < v->len; i++) mer__buf_printf(b, "%02x", (unsigned char)v->s[i]);
        return;
    case MER_PY_TUPLE:
    case MER_PY_LIST:
    case MER_PY_SET:
        mer__buf_printf(b, v->type == MER_PY_TUPLE ? "(" : v->type == MER_PY_LIST ? "[" : "S{");
        for (size_t i = 0; i < v->n; i++) {
            if (i) mer__buf_putc(b, ',');
            render(b, v->items[i], depth + 1);
        }
        mer__buf_printf(b, v->type == MER_PY_TUPLE ? ")" : v->type == MER_PY_LIST ? "]" : "}");
        return;
    case MER_PY_DICT:
        mer__buf_putc(b, '{');
        for (size_t i = 0; i < v->n; i++) {
            if (i) mer__buf_putc(b, ',');
            render(b, v->items[2 * i], depth + 1);
            mer__buf_putc(b, ':');
            render(b, v->items[2 * i + 1], depth + 1);
        }
        mer__buf_putc(b, '}');
        return;
    default: mer__buf_printf(b, "<%s>", mer__py_type_name(v)); return;
    }
}

static void check_fixture(char *line) {
    char *f[3];
    /* the rendering has no spaces */
    fields(line, f, 3);
    char path[256];
    snprintf(path, sizeof path, IO_FIX "/%s", f[1]);
    size_t n;
    uint8_t *d = slurp(path, &n);
    CHECK_MSG(d != NULL, "cannot read %s", path);
    if (!d) return;
    mer_pickle p;
    mer_err err = {0};
    mer_status st = mer__pickle_load(path, d, n, &p, &err);
    CHECK_MSG(st == MER_OK, "%s: %s", f[1], err.msg);
    if (st == MER_OK) {
        mer_buf b = {0};
        render(&b, p.root, 0);
        CHECK_MSG(strcmp(b.data, f[2]) == 0, "%s: rendering differs\n  ours: %s\n  want: %s", f[1], b.data, f[2]);
        mer__buf_free(&b);

        /* every truncation fails cleanly, naming the file and an offset */
        int bad = 0;
        for (size_t k = 0; k < n; k++) {
            mer_pickle q;
            mer_err e2 = {0};
            mer_status s2 = mer__pickle_load("t.pkl", d, k, &q, &e2);
            if (s2 == MER_OK) { mer__pickle_free(&q); bad++; continue; }
            if (!strstr(e2.msg, "t.pkl") || !strstr(e2.msg, "offset")) bad++;
        }
        CHECK_MSG(bad == 0, "%s: %d truncations accepted or badly reported", f[1], bad);
        /* single-byte corruptions never crash */
        for (size_t k = 0; k < n; k++) {
            uint8_t *c = malloc(n);
            memcpy(c, d, n);
            c[k] ^= 0x41;
            mer_pickle q;
            if (mer__pickle_load("c.pkl", c, n, &q, NULL) == MER_OK) mer__pickle_free(&q);
            free(c);
        }
    }
    mer__pickle_free(&p);
    free(d);
}

static void writer_matches_python(void) {
    size_t n;
    uint8_t *d = slurp(IO_FIX "/strdict.pkl", &n);
    CHECK(d != NULL);
    if (!d) return;
    mer_pickle p;
    mer_err err = {0};
    CHECK(mer__pickle_load("strdict.pkl", d, n, &p, &err) == MER_OK);
    const mer_py *r = p.root;
    CHECK(r && r->type == MER_PY_DICT);
    if (r && r->type == MER_PY_DICT) {
        const char **k = malloc(r->n * sizeof *k), **v = malloc(r->n * sizeof *v);
        for (size_t i = 0; i < r->n; i++) k[i] = r->items[2 * i]->s, v[i] = r->items[2 * i + 1]->s;
        mer_buf b = {0};
        CHECK(mer__pickle_write_str_dict(&b, k, v, r->n, &err) == MER_OK);
        CHECK_MSG(b.len == n && memcmp(b.data, d, n) == 0, "writer output differs from pickle.dumps(protocol=2) (%zu vs %zu bytes)",
                  b.len, n);
        CHECK(mer__py_dict_get(r, "dup1") && strcmp(mer__py_dict_get(r, "dup1")->s, "same text") == 0);
        CHECK(mer__py_dict_get(r, "missing") == NULL);
        mer__buf_free(&b);
        free(k);
        free(v);
    }
    mer__pickle_free(&p);
    free(d);
}

static void expect_refused(const char *file, mer_status want, const char *sub1, const char *sub2) {
    char path[256];
    snprintf(path, sizeof path, IO_FIX "/%s", file);
    size_t n;
    uint8_t *d = slurp(path, &n);
    CHECK(d != NULL);
    if (!d) return;
    mer_pickle p;
    mer_err err = {0};
    mer_status st = mer__pickle_load(path, d, n, &p, &err);
    CHECK_MSG(st == want, "%s: status %d: %s", file, st, err.msg);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, sub1) && (!sub2 || strstr(err.msg, sub2)), "%s: %s", file, err.msg);
    if (st == MER_OK) mer__pickle_free(&p);
    free(d);
}

static void bytes_case(const char *bytes, size_t n, mer_status want, const char *sub) {
    mer_pickle p;
    mer_err err = {0};
    mer_status st = mer__pickle_load("x.pkl", (const uint8_t *)bytes, n, &p, &err);
    CHECK_MSG(st == want, "status %d (%s), want %d", st, err.msg, want);
    if (st == MER_OK) mer__pickle_free(&p);
    else CHECK_MSG(strstr(err.msg, sub) != NULL, "message lacks '%s': %s", sub, err.msg);
}

static void run(void) {
    exp_lines e = load_expected();
    CHECK_MSG(e.n > 0, "cannot read %s/expected.txt", IO_FIX);
    int seen = 0;
    for (size_t i = 0; i < e.n; i++)
        if (strncmp(e.line[i], "pickle ", 7) == 0) {
            char *l = strdup(e.line[i]);
            check_fixture(l);
            free(l);
            seen++;
        }
    CHECK_EQ_INT(seen, 8);
    free_expected(&e);
    writer_matches_python();

    unlink("/tmp/mer_pwned");
    expect_refused("evil-system.pkl", MER_E_UNSUPPORTED, "posix.system", "GLOBAL at offset 2");
    expect_refused("evil-p0.pkl", MER_E_UNSUPPORTED, "os.system", "GLOBAL at offset 0");
    expect_refused("evil-inst.pkl", MER_E_UNSUPPORTED, "INST at offset 15", NULL);
    CHECK(access("/tmp/mer_pwned", F_OK) != 0);

    bytes_case("\x80\x02\xff.", 4, MER_E_UNSUPPORTED, "opcode 0xff at offset 2");
    bytes_case("\x80\x02\x82\x01.", 5, MER_E_UNSUPPORTED, "EXT1 at offset 2");
    bytes_case("\x80\x02\x97.", 4, MER_E_UNSUPPORTED, "NEXT_BUFFER at offset 2");
    bytes_case("\x80\x02h\x05.", 5, MER_E_FORMAT, "BINGET at offset 2");
    bytes_case("\x80\x02r\xff\xff\xff\x7f.", 8, MER_E_FORMAT, "LONG_BINPUT at offset 2");
    bytes_case("\x80\x02u.", 4, MER_E_FORMAT, "SETITEMS at offset 2");
    bytes_case("\x80\x02X\xff\xff\xff\xff.", 8, MER_E_FORMAT, "BINUNICODE at offset 2");
    bytes_case("\x80\x02X\x02\x00\x00\x00\xc3(.", 9, MER_E_FORMAT, "UTF-8");
    bytes_case("\x80\x09N.", 4, MER_E_UNSUPPORTED, "PROTO at offset 0");
    bytes_case("", 0, MER_E_FORMAT, "offset 0");
    bytes_case("N", 1, MER_E_FORMAT, "no STOP");
    bytes_case("\x80\x02(.", 4, MER_E_FORMAT, "STOP at offset 3");
    bytes_case("\x80\x02" "ctorch\nFloatStorage\n)R.", 25, MER_E_UNSUPPORTED, "REDUCE at offset 23");
    bytes_case("\x80\x02}b.", 5, MER_E_FORMAT, "stack underflow");
    bytes_case("\x80\x02]}b.", 5, MER_E_UNSUPPORTED, "BUILD on a list");
    /* a list that contains itself: loads (it is a graph), and walkers bound their depth */
    bytes_case("\x80\x02]q\x00h\x00" "a.", 9, MER_OK, "");
    bytes_case("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", 14, MER_OK, "");
    {
        /* one big list turned into a set again and again through memo references: the item budget
           stops it (a quadratic blow-up in time and memory otherwise) */
        mer_buf b = {0};
        static const char head[] = "\x80\x02" "cbuiltins\nset\nq\x00]q\x01(";
        mer__buf_append(&b, head, sizeof head - 1);
        for (int i = 0; i < 20000; i++) mer__buf_putc(&b, 'N');
        mer__buf_putc(&b, 'e');
        for (int i = 0; i < 10000; i++) mer__buf_append(&b, "h\x00h\x01\x85R0", 7);
        mer__buf_printf(&b, "N.");
        mer_pickle p;
        mer_err err = {0};
        CHECK_EQ_INT(mer__pickle_load("blowup.pkl", (const uint8_t *)b.data, b.len, &p, &err), MER_E_RANGE);
        CHECK_MSG(strstr(err.msg, "blowup.pkl") && strstr(err.msg, "REDUCE at offset"), "%s", err.msg);
        mer__buf_free(&b);
    }
    {
        mer_pickle p;
        CHECK(mer__pickle_load("l.pkl", (const uint8_t *)"\x80\x02\x8a\x02\xff\x7f\x8a\x01\xff\x86.", 11, &p, NULL) == MER_OK);
        CHECK(p.root && p.root->n == 2 && p.root->items[0]->i == 32767 && p.root->items[1]->i == -1);
        mer__pickle_free(&p);
    }
}
