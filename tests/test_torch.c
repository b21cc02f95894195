/* test_torch.c - the PyTorch zip checkpoint reader against checkpoints torch.save wrote (PyTorch 1.13,
 * scripts/make_io_fixtures.py): an AffectGPT-style {'model': state_dict, 'optimizer', 'config', 'epoch'}
 * with f32/f16/bf16/f64/i64/i32/u8/bool tensors, a transposed (non-contiguous) tensor, two views sharing
 * one storage at offsets, a Parameter and a real nn.Linear state_dict (OrderedDict with _metadata);
 * a plain nested dict; a {'state_dict': ...}. Values are compared with what torch.load gave. Bad input:
 * the legacy format, truncations, a corrupt storage CRC, a view past its storage, a hostile pickle. */
#include "io/torch.h"
#include "io/zip.h"
#include "test.h"
#include "io_fixtures.h"

#include <unistd.h>

static const char *dtname(mer_dtype t) {
    switch (t) {
    case MER_DTYPE_F32: return "f32";
    case MER_DTYPE_F16: return "f16";
    case MER_DTYPE_BF16: return "bf16";
    case MER_DTYPE_F64: return "f64";
    case MER_DTYPE_I64: return "i64";
    case MER_DTYPE_I32: return "i32";
    case MER_DTYPE_U8: return "u8";
    case MER_DTYPE_BOOL: return "bool";
    default: return "?";
    }
}

static double val(const mer_wtensor *t, size_t i) {
    const uint8_t *p = (const uint8_t *)t->data;
    switch (t->dtype) {
    case MER_DTYPE_F32: { float f; memcpy(&f, p + 4 * i, 4); return f; }
    case MER_DTYPE_F64: { double f; memcpy(&f, p + 8 * i, 8); return f; }
    case MER_DTYPE_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return mer_fp16_to_fp32(h); }
    case MER_DTYPE_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return mer_bf16_to_fp32(h); }
    case MER_DTYPE_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    case MER_DTYPE_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case MER_DTYPE_U8: return p[i];
    case MER_DTYPE_BOOL: return p[i] != 0;
    default: return NAN;
    }
}

static mer_weights *open_fix(const char *file) {
    char path[256];
    snprintf(path, sizeof path, IO_FIX "/%s", file);
    mer_weights *w = NULL;
    mer_err err = {0};
    mer_status st = mer__torch_open(path, &w, &err);
    CHECK_MSG(st == MER_OK, "%s: %s", file, err.msg);
    if (st == MER_OK) CHECK_MSG(mer__weights_finish(w, &err) == MER_OK, "%s: %s", file, err.msg);
    return w;
}

/* tensor <file> <name> <dtype> <ndim> <dims...> <n> <values...> */
static void check_tensor(const mer_weights *w, char *line) {
    char *f[512];
    int nf = fields(line, f, 512);
    const mer_wtensor *t = mer_weights_find(w, f[2]);
    CHECK_MSG(t != NULL, "%s: no tensor '%s'", f[1], f[2]);
    if (!t) return;
    CHECK_STR(dtname(t->dtype), f[3]);
    int nd = atoi(f[4]);
    CHECK_EQ_INT(t->n_dims, nd);
    size_t n = 1;
    for (int d = 0; d < nd && d < t->n_dims; d++) {
        CHECK_EQ_INT(t->shape[d], atoll(f[5 + d]));
        n *= (size_t)atoll(f[5 + d]);
    }
    CHECK_EQ_INT(n, atoll(f[5 + nd]));
    CHECK_EQ_INT(nf, 6 + nd + (int)n);
    size_t es = t->dtype == MER_DTYPE_F64 || t->dtype == MER_DTYPE_I64 ? 8 : t->dtype == MER_DTYPE_F32 || t->dtype == MER_DTYPE_I32 ? 4
              : t->dtype == MER_DTYPE_F16 || t->dtype == MER_DTYPE_BF16 ? 2 : 1;
    CHECK_EQ_INT(t->n_bytes, n * es);
    int bad = 0;
    for (size_t i = 0; i < n && 6 + nd + (int)i < nf; i++)
        if (val(t, i) != strtod(f[6 + nd + i], NULL)) bad++;
    CHECK_MSG(bad == 0, "%s %s: %d values differ from torch's", f[1], f[2], bad);
}

static void fixtures(void) {
    exp_lines e = load_expected();
    mer_weights *w = NULL;
    char cur[128] = "";
    int files = 0;
    for (size_t i = 0; i < e.n; i++) {
        char *l = strdup(e.line[i]);
        char *f[3];
        if (strncmp(l, "ntensors ", 9) == 0) {
            fields(l, f, 3);
            mer_weights_close(w);
            w = open_fix(f[1]);
            snprintf(cur, sizeof cur, "%s", f[1]);
            files++;
            if (w) CHECK_MSG(w->n_tensors == (size_t)atoll(f[2]), "%s: %zu tensors, torch has %s", f[1], w->n_tensors, f[2]);
            if (w) CHECK_EQ_INT(w->format, MER_WFORMAT_TORCH);
        } else if (strncmp(l, "tensor ", 7) == 0 && w) {
            check_tensor(w, l);
        }
        free(l);
    }
    mer_weights_close(w);
    free_expected(&e);
    if (files == 0) printf("SKIP torch fixtures: expected.txt has none (torch was missing when it was written)\n");
    CHECK(files == 0 || files == 3);
    (void)cur;

    /* the two views of one storage point into the same mapped member, 8 floats apart
       (flat[2:8] and flat[10:14] in make_io_fixtures.py) */
    w = open_fix("affectgpt.pth");
    if (w) {
        const mer_wtensor *a = mer_weights_find(w, "shared_a"), *b = mer_weights_find(w, "shared_b");
        CHECK(a && b && (const char *)b->data - (const char *)a->data == 8 * 4);
        CHECK(mer_weights_find(w, "epoch") == NULL);
        CHECK(mer_weights_find(w, "model.llama_proj.weight") == NULL);
        CHECK(mer_weights_find(w, "llama_proj.weight") != NULL);
    }
    mer_weights_close(w);
}

/* a checkpoint built here: data.pkl holding {'w': tensor(FloatStorage numel, offset 0, size (5,))} */
static uint8_t *make_ckpt(const char *pkl, size_t pkl_n, size_t stor_bytes, size_t *n) {
    mer_zip_writer zw;
    mer__zipw_init(&zw);
    float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(mer__zipw_add(&zw, "archive/data.pkl", pkl, pkl_n, 0, 0, NULL) == MER_OK);
    CHECK(mer__zipw_add(&zw, "archive/data/0", data, stor_bytes, 0, 0, NULL) == MER_OK);
    CHECK(mer__zipw_finish(&zw, NULL) == MER_OK);
    uint8_t *out = malloc(zw.out.len);
    memcpy(out, zw.out.data, zw.out.len);
    *n = zw.out.len;
    mer__zipw_free(&zw);
    return out;
}

static void expect_err(const uint8_t *d, size_t n, mer_status want, const char *sub, const char *what) {
    mer_weights *w = NULL;
    mer_err err = {0};
    mer_status st = mer__torch_open_mem(d, n, "ck.pth", &w, &err);
    CHECK_MSG(st == want, "%s: status %d (%s)", what, st, err.msg);
    CHECK_MSG(strstr(err.msg, "ck.pth") && strstr(err.msg, sub), "%s: %s", what, err.msg);
    CHECK(w == NULL);
    mer_weights_close(w);
}

#define PKL_HEAD "\x80\x02}q\x00X\x01\x00\x00\x00" "w" "ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00" \
                 "storage" "ctorch\nFloatStorage\nX\x01\x00\x00\x00" "0" "X\x03\x00\x00\x00" "cpu"

static void bad_inputs(void) {
    mer_err err = {0};
    mer_weights *w = NULL;
    CHECK_EQ_INT(mer__torch_open(IO_FIX "/legacy.pth", &w, &err), MER_E_UNSUPPORTED);
    CHECK(strstr(err.msg, "legacy.pth") && strstr(err.msg, "legacy"));

    /* views within and past their storage */
    static const char ok[] = PKL_HEAD "K\x08tQK\x00K\x05\x85K\x01\x85\x89)tRs.";
    static const char past[] = PKL_HEAD "K\x04tQK\x00K\x05\x85K\x01\x85\x89)tRs.";
    static const char off[] = PKL_HEAD "K\x08tQK\x04K\x05\x85K\x01\x85\x89)tRs.";
    size_t n;
    uint8_t *d = make_ckpt(ok, sizeof ok - 1, 32, &n);
    CHECK(mer__torch_open_mem(d, n, "ck.pth", &w, &err) == MER_OK);
    if (w) {
        CHECK_EQ_INT(w->n_tensors, 1);
        CHECK(w->n_tensors == 1 && w->tensors[0].shape[0] == 5 && ((const float *)w->tensors[0].data)[4] == 5.0f);
    }
    mer_weights_close(w);
    w = NULL;
    /* every truncation of a valid checkpoint fails cleanly */
    int bad = 0;
    for (size_t k = 0; k < n; k++) {
        mer_err e2 = {0};
        if (mer__torch_open_mem(d, k, "ck.pth", &w, &e2) == MER_OK) { mer_weights_close(w); bad++; }
        else if (!strstr(e2.msg, "ck.pth")) bad++;
        w = NULL;
    }
    CHECK_MSG(bad == 0, "%d truncations accepted or unnamed", bad);
    free(d);
    d = make_ckpt(past, sizeof past - 1, 32, &n);
    expect_err(d, n, MER_E_FORMAT, "past its storage", "size beyond numel");
    free(d);
    d = make_ckpt(off, sizeof off - 1, 32, &n);
    expect_err(d, n, MER_E_FORMAT, "past its storage", "offset + size beyond numel");
    free(d);
    d = make_ckpt(ok, sizeof ok - 1, 16, &n);
    expect_err(d, n, MER_E_FORMAT, "holds 16 bytes", "storage member shorter than numel");
    free(d);

    /* a dict that holds itself twice: 2^16 paths at the nesting limit; the visit budget stops it */
    static const char cyc[] = "\x80\x02}q\x00(X\x01\x00\x00\x00" "a" "h\x00X\x01\x00\x00\x00" "b" "h\x00u.";
    d = make_ckpt(cyc, sizeof cyc - 1, 4, &n);
    expect_err(d, n, MER_E_FORMAT, "over and over", "self-referencing state dict");
    free(d);

    /* corrupt storage data: CRC mismatch */
    size_t fn;
    uint8_t *f = slurp(IO_FIX "/affectgpt.pth", &fn);
    CHECK(f != NULL);
    if (f) {
        mer_zip z;
        CHECK(mer__zip_open_mem("x", f, fn, &z, &err) == MER_OK);
        const mer_zip_entry *e = NULL;
        for (size_t i = 0; i < z.n; i++)
            if (strstr(z.entries[i].name, "/data/0")) e = &z.entries[i];
        CHECK(e != NULL);
        if (e) f[e->data_off] ^= 0x10;
        mer__zip_close(&z);
        expect_err(f, fn, MER_E_FORMAT, "CRC", "corrupt storage");
        free(f);
    }

    /* a hostile data.pkl is refused, never run */
    uint8_t *evil = slurp(IO_FIX "/evil-system.pkl", &fn);
    CHECK(evil != NULL);
    if (evil) {
        unlink("/tmp/mer_pwned");
        d = make_ckpt((const char *)evil, fn, 4, &n);
        expect_err(d, n, MER_E_UNSUPPORTED, "GLOBAL at offset 2", "os.system in data.pkl");
        CHECK(access("/tmp/mer_pwned", F_OK) != 0);
        free(d);
        free(evil);
    }
    /* empty file and a zip that is not a checkpoint */
    expect_err((const uint8_t *)"", 0, MER_E_FORMAT, "offset 0", "empty");
    uint8_t *npz = slurp(IO_FIX "/openset.npz", &fn);
    if (npz) expect_err(npz, fn, MER_E_FORMAT, "data.pkl", "an npz");
    free(npz);
}

static void run(void) {
    fixtures();
    bad_inputs();
}
