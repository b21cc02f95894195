/* test_npz.c - zip, .npy/.npz and the npz label tables against fixtures numpy wrote
 * (scripts/make_io_fixtures.py): every dtype's values, unicode text (Chinese, emoji), byte-identical
 * writers (our npz files equal numpy's, byte for byte), a round trip through numpy itself, and bad
 * input (truncated zip, corrupt CRC, bad headers, hostile pickles, empty file). */
#include "io/labels.h"
#include "io/npy.h"
#include "io/zip.h"
#include "test.h"
#include "io_fixtures.h"

#include <unistd.h>

static const char *TMP_DIR = "/tmp";

static char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/mer_test_npz_%ld_%s", TMP_DIR, (long)getpid(), name);
    return buf[k];
}

// --- arrays ------------------------------------------------------------------------------------------

static double elem(const mer_npy *a, size_t i) {
    const uint8_t *p = a->data + i * a->itemsize;
    switch (a->dtype) {
    case MER_DTYPE_F32: { float f; memcpy(&f, p, 4); return f; }
    case MER_DTYPE_F64: { double f; memcpy(&f, p, 8); return f; }
    case MER_DTYPE_F16: { uint16_t h; memcpy(&h, p, 2); return mer_fp16_to_fp32(h); }
    case MER_DTYPE_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case MER_DTYPE_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case MER_DTYPE_I8: return (int8_t)p[0];
    case MER_DTYPE_U8: return p[0];
    case MER_DTYPE_BOOL: return p[0] != 0;
    default: return NAN;
    }
}

/* array <file> <member> <descr> <fortran> <ndim> <dims...> <n> <values...> */
static void check_array_line(char *line) {
    char *f[4096];
    int nf = fields(line, f, 4096);
    char path[256];
    snprintf(path, sizeof path, IO_FIX "/%s", f[1]);
    mer_err err = {0};
    mer_npy a;
    memset(&a, 0, sizeof a);
    mer_npz z;
    memset(&z, 0, sizeof z);
    uint8_t *raw = NULL;
    mer_status st;
    if (strcmp(f[2], "-") == 0) {
        size_t n;
        raw = slurp(path, &n);
        st = raw ? mer__npy_parse(path, raw, n, &a, &err) : MER_E_IO;
    } else {
        st = mer__npz_open(path, &z, &err);
        if (!st) st = mer__npz_get(&z, f[2], &a, &err);
    }
    CHECK_MSG(st == MER_OK, "%s %s: %s", f[1], f[2], err.msg);
    if (st == MER_OK) {
        CHECK_STR(a.descr, f[3]);
        CHECK_EQ_INT(a.fortran, atoi(f[4]));
        int nd = atoi(f[5]);
        CHECK_EQ_INT(a.n_dims, nd);
        for (int d = 0; d < nd && d < a.n_dims; d++) CHECK_EQ_INT(a.shape[d], atoll(f[6 + d]));
        size_t n = (size_t)atoll(f[6 + nd]);
        CHECK_EQ_INT(a.n_elems, n);
        CHECK_EQ_INT(nf, 7 + nd + (int)n);
        int bad = 0;
        for (size_t i = 0; i < n && i < a.n_elems && 7 + nd + (int)i < nf; i++) {
            const char *want = f[7 + nd + i];
            if (a.kind == MER_NPY_UNICODE) {
                char *s = NULL, *w = unhex(want, NULL);
                mer_status s2 = mer__npy_str(path, &a, i, &s, NULL, &err);
                if (s2 || strcmp(s, w) != 0) bad++;
                free(s);
                free(w);
            } else if (a.dtype == MER_DTYPE_I64) {
                int64_t v;
                memcpy(&v, a.data + 8 * i, 8);
                if (v != strtoll(want, NULL, 10)) bad++;
            } else {
                if (elem(&a, i) != strtod(want, NULL)) bad++;
            }
        }
        CHECK_MSG(bad == 0, "%s %s: %d values differ from numpy's", f[1], f[2], bad);
    }
    mer__npy_free(&a);
    mer__npz_close(&z);
    free(raw);
}

// --- label tables ------------------------------------------------------------------------------------

/* labels <file> <n> followed by n "row <hex name> <hex labels>" lines, starting at e->line[*i] */
static void check_labels(exp_lines *e, size_t *i) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", e->line[*i]);
    char *f[3];
    fields(buf, f, 3);
    char path[256];
    snprintf(path, sizeof path, IO_FIX "/%s", f[1]);
    size_t n = (size_t)atoll(f[2]);
    mer_label_table t = {0};
    mer_err err = {0};
    mer_status st = mer_label_table_read(path, "openset", &t, &err);
    CHECK_MSG(st == MER_OK, "%s: %s", f[1], err.msg);
    CHECK_EQ_INT(t.n, n);
    for (size_t r = 0; r < n; r++) {
        char *g[3];
        char *row = strdup(e->line[*i + 1 + r]);
        fields(row, g, 3);
        char *name = unhex(g[1], NULL), *lab = unhex(g[2], NULL);
        if (st == MER_OK && r < t.n) {
            CHECK_STR(t.rows[r].name, name);
            CHECK_STR(t.rows[r].labels, lab);
        }
        free(name);
        free(lab);
        free(row);
    }
    *i += n;

    /* our writer must give numpy's bytes exactly */
    if (st == MER_OK) {
        const char *out = tmp_path(f[1]);
        if (strstr(f[1], "openset")) st = mer_openset_npz_write(out, t.rows, t.n, &err);
        else st = mer_result_npz_write(out, t.rows, t.n, &err);
        CHECK_MSG(st == MER_OK, "write %s: %s", f[1], err.msg);
        size_t na, nb;
        uint8_t *a = slurp(out, &na), *b = slurp(path, &nb);
        CHECK_MSG(a && b && na == nb && memcmp(a, b, na) == 0, "%s: our writer's bytes differ from numpy's (%zu vs %zu bytes)",
                  f[1], a ? na : 0, b ? nb : 0);
        free(a);
        free(b);
        unlink(out);
    }
    mer_label_table_free(&t);
}

// --- writers vs numpy --------------------------------------------------------------------------------

/* the member bytes numpy wrote for an array must equal what mer__npy_write gives for its payload */
static void check_npy_writer(const char *member) {
    mer_npz z;
    mer_err err = {0};
    mer_status st = mer__npz_open(IO_FIX "/arrays.npz", &z, &err);
    CHECK_MSG(st == MER_OK, "%s", err.msg);
    if (st) return;
    char nm[64];
    snprintf(nm, sizeof nm, "%s.npy", member);
    const mer_zip_entry *e = mer__zip_find(&z.zip, nm);
    CHECK(e != NULL);
    uint8_t *raw = NULL;
    size_t n = 0;
    if (e && mer__zip_read(&z.zip, e, &raw, &n, &err) == MER_OK) {
        mer_npy a;
        if (mer__npy_parse(nm, raw, n, &a, &err) == MER_OK) {
            mer_buf b = {0};
            CHECK(mer__npy_write(&b, a.descr, a.n_dims, a.shape, a.data, a.data_len) == MER_OK);
            CHECK_MSG(b.len == n && memcmp(b.data, raw, n) == 0, "npy writer differs from numpy for %s", member);
            mer__buf_free(&b);
        } else {
            CHECK_MSG(0, "%s", err.msg);
        }
    }
    free(raw);
    mer__npz_close(&z);
}

static void round_trip_numpy(void) {
    if (!have_numpy()) {
        printf("SKIP round trip through numpy: /usr/bin/python3 with numpy not available\n");
        return;
    }
    /* rows with Chinese, emoji, quotes, backslashes and 1000+ entries (two SETITEMS batches) */
    enum { N = 1203 };
    mer_labeled rows[N];
    char *bufs[N][2];
    for (int i = 0; i < N; i++) {
        char a[64], b[128];
        snprintf(a, sizeof a, "s_%05d_中文", i);
        snprintf(b, sizeof b, i % 7 == 0 ? "" : i % 5 == 0 ? "x" : "[happy, 😀 'q' \"dq\" \\ %d]", i);
        bufs[i][0] = strdup(a);
        bufs[i][1] = strdup(b);
        rows[i].name = bufs[i][0];
        rows[i].labels = bufs[i][1];
    }
    mer_err err = {0};
    const char *p1 = tmp_path("rt-openset.npz"), *p2 = tmp_path("rt-result.npz");
    CHECK(mer_openset_npz_write(p1, rows, N, &err) == MER_OK);
    CHECK(mer_result_npz_write(p2, rows, N, &err) == MER_OK);
    char cmd[2048];
    /* numpy reads ours; numpy's own savez_compressed of the same data gives the same bytes */
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"\n"
             "import numpy as np, io, sys\n"
             "n=%d\n"
             "names=['s_%%05d_\\u4e2d\\u6587'%%i for i in range(n)]\n"
             "labs=['' if i%%7==0 else 'x' if i%%5==0 else '[happy, \\U0001F600 \\'q\\' \\\"dq\\\" \\\\\\\\ %%d]'%%i for i in range(n)]\n"
             "a=np.load('%s'); r=np.load('%s', allow_pickle=True)['name2reason'].tolist()\n"
             "ok = a['filenames'].tolist()==names and a['fileitems'].tolist()==labs and list(r.items())==list(zip(names,labs))\n"
             "import json; d=json.loads(json.dumps(dict(zip(names,labs))))\n"
             "b1=io.BytesIO(); np.savez_compressed(b1, filenames=names, fileitems=labs)\n"
             "b2=io.BytesIO(); np.savez_compressed(b2, name2reason=d)\n"
             "ok = ok and b1.getvalue()==open('%s','rb').read() and b2.getvalue()==open('%s','rb').read()\n"
             "sys.exit(0 if ok else 1)\"",
             N, p1, p2, p1, p2);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "numpy round trip failed (rc %d)", rc);
    /* and our reader reads ours back */
    mer_label_table t = {0};
    CHECK(mer_label_table_read(p2, NULL, &t, &err) == MER_OK);
    CHECK_EQ_INT(t.n, N);
    if (t.n == N) CHECK_STR(t.rows[N - 1].labels, rows[N - 1].labels);
    mer_label_table_free(&t);
    for (int i = 0; i < N; i++) free(bufs[i][0]), free(bufs[i][1]);
    unlink(p1);
    unlink(p2);
}

// --- bad input ---------------------------------------------------------------------------------------

static void expect_fail(const char *path, mer_status want, const char *sub, const char *what) {
    mer_label_table t = {0};
    mer_err err = {0};
    mer_status st = mer_label_table_read(path, NULL, &t, &err);
    CHECK_MSG(st == want, "%s: status %d (%s), want %d", what, st, err.msg, want);
    CHECK_MSG(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s", what, err.msg);
    if (sub) CHECK_MSG(strstr(err.msg, sub) != NULL, "%s: message lacks '%s': %s", what, sub, err.msg);
    mer_label_table_free(&t);
}

static void bad_inputs(void) {
    size_t n;
    uint8_t *z = slurp(IO_FIX "/openset.npz", &n);
    CHECK(z != NULL);
    if (!z) return;
    const char *p = tmp_path("bad.npz");

    /* truncated zip: every prefix fails cleanly with a format error naming file and offset */
    int bad = 0;
    for (size_t k = 0; k < n; k++) {
        mer_map m = {z, k, 0};
        mer_label_table t = {0};
        mer_err err = {0};
        mer_status st = mer__npz_read_labels("trunc.npz", &m, &t, &err);
        if (st != MER_E_FORMAT || !strstr(err.msg, "trunc.npz") || !strstr(err.msg, "offset")) {
            if (bad++ < 3) printf("FAIL truncated at %zu: %d %s\n", k, st, err.msg);
        }
        mer_label_table_free(&t);
    }
    CHECK_MSG(bad == 0, "%d truncations not reported as format errors", bad);
    spit(p, z, n / 2);
    expect_fail(p, MER_E_FORMAT, "offset", "truncated zip");

    /* every single-byte corruption: never a crash; an error or (rarely, in unchecked bytes) a table */
    for (size_t k = 0; k < n; k++) {
        uint8_t *c = malloc(n);
        memcpy(c, z, n);
        c[k] ^= 0x5A;
        mer_map m = {c, n, 0};
        mer_label_table t = {0};
        mer_err err = {0};
        if (mer__npz_read_labels("flip.npz", &m, &t, &err) == MER_OK) mer_label_table_free(&t);
        free(c);
    }
    free(z);

    /* corrupt CRC: flip one byte of a stored member's data */
    z = slurp(IO_FIX "/arrays.npz", &n);
    mer_zip zz;
    mer_err err = {0};
    CHECK(mer__zip_open_mem("arrays.npz", z, n, &zz, &err) == MER_OK);
    const mer_zip_entry *e = mer__zip_find(&zz, "f4.npy");
    CHECK(e && e->method == 0);
    if (e) {
        z[e->data_off + e->usize - 1] ^= 1;
        uint8_t *out;
        size_t on;
        mer_status st = mer__zip_read(&zz, e, &out, &on, &err);
        CHECK_EQ_INT(st, MER_E_FORMAT);
        CHECK_MSG(strstr(err.msg, "CRC") && strstr(err.msg, "arrays.npz") && strstr(err.msg, "offset"), "%s", err.msg);
    }
    mer__zip_close(&zz);
    free(z);

    /* corrupt CRC in a deflated label file (flip the CRC field of the central directory) */
    z = slurp(IO_FIX "/result.npz", &n);
    for (size_t k = n - 22; k-- > 0;)
        if (memcmp(z + k, "PK\001\002", 4) == 0) { z[k + 16] ^= 0xFF; break; }
    spit(p, z, n);
    expect_fail(p, MER_E_FORMAT, "CRC", "corrupt CRC");
    free(z);

    /* empty file */
    spit(p, "", 0);
    mer_npz nz;
    CHECK_EQ_INT(mer__npz_open(p, &nz, &err), MER_E_FORMAT);
    CHECK_MSG(strstr(err.msg, p) && strstr(err.msg, "offset 0"), "%s", err.msg);

    /* wrong .npy headers */
    static const struct { const char *hdr; mer_status st; const char *sub; } H[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1, }", MER_E_FORMAT, "unexpected"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", MER_E_UNSUPPORTED, "dtype"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99,), }", MER_E_FORMAT, "truncated"},
        {"{'descr': '<f4', 'fortran_order': maybe, 'shape': (2,), }", MER_E_FORMAT, "True or False"},
        {"{'descr': '<f4', 'shape': (2,), }", MER_E_FORMAT, "missing"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", MER_E_UNSUPPORTED, "structured"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 99999999999), }", MER_E_FORMAT, "overflow"},
    };
    for (size_t k = 0; k < MER_ARRAY_LEN(H); k++) {
        uint8_t buf[256] = "\x93NUMPY\x01\x00";
        size_t hl = strlen(H[k].hdr);
        buf[8] = (uint8_t)hl;
        buf[9] = 0;
        memcpy(buf + 10, H[k].hdr, hl);
        memset(buf + 10 + hl, 0, 8);
        mer_npy a;
        mer_status st = mer__npy_parse("hdr.npy", buf, 10 + hl + 8, &a, &err);
        CHECK_MSG(st == H[k].st, "header %zu: %d %s", k, st, err.msg);
        CHECK_MSG(strstr(err.msg, "hdr.npy") && strstr(err.msg, "offset") && strstr(err.msg, H[k].sub), "header %zu: %s", k,
                  err.msg);
    }
    mer_npy a;
    CHECK_EQ_INT(mer__npy_parse("m.npy", (const uint8_t *)"\x93NUMPX\x01\x00\x00\x00", 10, &a, &err), MER_E_FORMAT);
    CHECK(strstr(err.msg, "m.npy") && strstr(err.msg, "offset 0"));

    /* hostile pickle inside an npz: refused, nothing run */
    unlink("/tmp/mer_pwned");
    expect_fail(IO_FIX "/evil.npz", MER_E_UNSUPPORTED, "GLOBAL at offset", "os.system in name2reason");
    CHECK(access("/tmp/mer_pwned", F_OK) != 0);
    /* a dict value that is not a str names its key */
    expect_fail(IO_FIX "/badvalue.npz", MER_E_FORMAT, "sample_2", "non-str value");
    unlink(p);
}

static void run(void) {
    exp_lines e = load_expected();
    CHECK_MSG(e.n > 0, "cannot read %s/expected.txt", IO_FIX);
    for (size_t i = 0; i < e.n; i++) {
        if (strncmp(e.line[i], "array ", 6) == 0) {
            char *l = strdup(e.line[i]);
            check_array_line(l);
            free(l);
        } else if (strncmp(e.line[i], "labels ", 7) == 0) {
            check_labels(&e, &i);
        }
    }
    free_expected(&e);
    check_npy_writer("f4");
    check_npy_writer("i8");
    check_npy_writer("u1");
    check_npy_writer("scalar");
    check_npy_writer("empty");
    round_trip_numpy();
    bad_inputs();
}
