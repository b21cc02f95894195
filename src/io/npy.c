/* npy.c - .npy parsing and writing and .npz access (see npy.h). The header dict is read by a tiny
 * parser for exactly the Python literals numpy writes (strings, True/False, tuples of ints, with the
 * old Python 2 'L' suffix tolerated); nothing in a header is ever evaluated. Every size derived from
 * the header is checked against the bytes actually present. */
#include "io/npy.h"

#include <string.h>

// --- header parsing ----------------------------------------------------------------------------------

typedef struct hparse {
    const char *name;
    const uint8_t *s; /* the header text */
    size_t n, i;
    size_t base;      /* offset of s in the file, for messages */
    mer_err *err;
} hparse;

static mer_status herr(hparse *h, const char *what) {
    return mer__errf(h->err, MER_E_FORMAT, "%s: bad .npy header: %s at offset %zu", h->name, what, h->base + h->i);
}

static void ws(hparse *h) {
    while (h->i < h->n && (h->s[h->i] == ' ' || h->s[h->i] == '\t' || h->s[h->i] == '\n' || h->s[h->i] == '\r'))
        h->i++;
}

static int eat(hparse *h, char c) {
    ws(h);
    if (h->i < h->n && h->s[h->i] == (uint8_t)c) {
        h->i++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes (numpy's descr and keys never need them). */
static mer_status pstring(hparse *h, char *out, size_t cap) {
    ws(h);
    if (h->i >= h->n || (h->s[h->i] != '\'' && h->s[h->i] != '"')) return herr(h, "expected a quoted string");
    uint8_t q = h->s[h->i++];
    size_t k = 0;
    while (h->i < h->n && h->s[h->i] != q) {
        if (h->s[h->i] == '\\') return herr(h, "escape sequences are not supported in header strings");
        if (k + 1 >= cap) return herr(h, "string too long");
        out[k++] = (char)h->s[h->i++];
    }
    if (h->i >= h->n) return herr(h, "unterminated string");
    h->i++;
    out[k] = 0;
    return MER_OK;
}

static mer_status pbool(hparse *h, int *v) {
    ws(h);
    if (h->n - h->i >= 4 && memcmp(h->s + h->i, "True", 4) == 0) {
        h->i += 4;
        *v = 1;
        return MER_OK;
    }
    if (h->n - h->i >= 5 && memcmp(h->s + h->i, "False", 5) == 0) {
        h->i += 5;
        *v = 0;
        return MER_OK;
    }
    return herr(h, "expected True or False");
}

static mer_status pshape(hparse *h, mer_npy *a) {
    if (!eat(h, '(')) {
        if (eat(h, '[')) return herr(h, "a list shape is not what numpy writes");
        return herr(h, "expected a shape tuple");
    }
    a->n_dims = 0;
    for (;;) {
        if (eat(h, ')')) break;
        ws(h);
        if (h->i >= h->n || h->s[h->i] < '0' || h->s[h->i] > '9') return herr(h, "expected a dimension");
        uint64_t v = 0;
        while (h->i < h->n && h->s[h->i] >= '0' && h->s[h->i] <= '9') {
            if (v > (uint64_t)INT64_MAX / 10) return herr(h, "dimension too large");
            v = v * 10 + (uint64_t)(h->s[h->i++] - '0');
            if (v > (uint64_t)INT64_MAX) return herr(h, "dimension too large");
        }
        if (h->i < h->n && (h->s[h->i] == 'L' || h->s[h->i] == 'l')) h->i++;
        if (a->n_dims >= MER_NPY_MAX_DIMS) return herr(h, "more than 32 dimensions");
        a->shape[a->n_dims++] = (int64_t)v;
        if (eat(h, ',')) continue;
        if (eat(h, ')')) break;
        return herr(h, "expected ',' or ')' in the shape");
    }
    return MER_OK;
}

static mer_status pdescr(hparse *h, size_t at, mer_npy *a) {
    const char *d = a->descr;
    static const struct {
        const char *s;
        mer_dtype t;
        size_t size;
    } num[] = {
        {"<f4", MER_DTYPE_F32, 4}, {"<f8", MER_DTYPE_F64, 8}, {"<f2", MER_DTYPE_F16, 2},
        {"<i2", MER_DTYPE_I16, 2}, {"<i4", MER_DTYPE_I32, 4}, {"<i8", MER_DTYPE_I64, 8},
        {"|u1", MER_DTYPE_U8, 1},  {"|i1", MER_DTYPE_I8, 1},  {"|b1", MER_DTYPE_BOOL, 1},
        {"<u1", MER_DTYPE_U8, 1},  {"<i1", MER_DTYPE_I8, 1},  {"<b1", MER_DTYPE_BOOL, 1},
    };
    for (size_t k = 0; k < MER_ARRAY_LEN(num); k++)
        if (strcmp(d, num[k].s) == 0) {
            a->kind = MER_NPY_NUMERIC;
            a->dtype = num[k].t;
            a->itemsize = num[k].size;
            return MER_OK;
        }
    if (strcmp(d, "|O") == 0 || strcmp(d, "<O") == 0) {
        a->kind = MER_NPY_OBJECT;
        a->itemsize = 0;
        return MER_OK;
    }
    if (d[0] == '<' && d[1] == 'U' && d[2]) {
        size_t v = 0;
        for (const char *p = d + 2; *p; p++) {
            if (*p < '0' || *p > '9' || v > ((size_t)1 << 40)) goto bad;
            v = v * 10 + (size_t)(*p - '0');
        }
        a->kind = MER_NPY_UNICODE;
        a->str_len = v;
        a->itemsize = v * 4;
        return MER_OK;
    }
bad:
    h->i = at;
    return mer__errf(h->err, MER_E_UNSUPPORTED, "%s: unsupported .npy dtype '%s' at offset %zu", h->name, d,
                     h->base + at);
}

mer_status mer__npy_parse(const char *name, const uint8_t *buf, size_t n, mer_npy *out, mer_err *err) {
    memset(out, 0, sizeof *out);
    out->dtype = MER_DTYPE_INVALID;
    if (n < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return mer__errf(err, MER_E_FORMAT, "%s: not an .npy file (bad magic) at offset 0", name);
    int major = buf[6];
    size_t hlen, hoff;
    if (major == 1) {
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8);
        hoff = 10;
    } else if (major == 2 || major == 3) {
        if (n < 12) return mer__errf(err, MER_E_FORMAT, "%s: truncated .npy header at offset %zu", name, n);
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8) | ((size_t)buf[10] << 16) | ((size_t)buf[11] << 24);
        hoff = 12;
    } else {
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: .npy format version %d.%d at offset 6", name, major, buf[7]);
    }
    if (hlen > n - hoff)
        return mer__errf(err, MER_E_FORMAT, "%s: .npy header length %zu runs past the end (%zu bytes) at offset 8",
                         name, hlen, n);
    out->version = major;
    hparse h = {name, buf + hoff, hlen, 0, hoff, err};
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    mer_status st;
    if (!eat(&h, '{')) return herr(&h, "expected '{'");
    for (;;) {
        if (eat(&h, '}')) break;
        char key[32];
        size_t kat = h.i;
        if ((st = pstring(&h, key, sizeof key))) return st;
        if (!eat(&h, ':')) return herr(&h, "expected ':'");
        if (strcmp(key, "descr") == 0 && !have_descr) {
            ws(&h);
            size_t at = h.i;
            if (h.i < h.n && (h.s[h.i] == '[' || h.s[h.i] == '('))
                return mer__errf(err, MER_E_UNSUPPORTED, "%s: structured .npy dtype at offset %zu", name, hoff + at);
            if ((st = pstring(&h, out->descr, sizeof out->descr))) return st;
            if ((st = pdescr(&h, at, out))) return st;
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            if ((st = pbool(&h, &out->fortran))) return st;
            have_fortran = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if ((st = pshape(&h, out))) return st;
            have_shape = 1;
        } else {
            h.i = kat;
            return herr(&h, "unexpected or repeated key");
        }
        if (eat(&h, ',')) continue;
        if (eat(&h, '}')) break;
        return herr(&h, "expected ',' or '}'");
    }
    ws(&h);
    if (h.i != h.n) return herr(&h, "trailing bytes after the header dict");
    if (!have_descr || !have_fortran || !have_shape) return herr(&h, "missing 'descr', 'fortran_order' or 'shape'");
    size_t ne = 1;
    for (int d = 0; d < out->n_dims; d++)
        if ((uint64_t)out->shape[d] > SIZE_MAX || mer__mul_ovf(ne, (size_t)out->shape[d], &ne))
            return mer__errf(err, MER_E_FORMAT, "%s: .npy shape overflows at offset %zu", name, hoff);
    out->n_elems = ne;
    out->data_off = hoff + hlen;
    out->data = buf + out->data_off;
    size_t avail = n - out->data_off;
    if (out->kind == MER_NPY_OBJECT) {
        out->data_len = avail;
        return MER_OK;
    }
    size_t need;
    if (mer__mul_ovf(ne, out->itemsize, &need) || need > avail)
        return mer__errf(err, MER_E_FORMAT, "%s: .npy payload truncated: %zu bytes present at offset %zu, shape needs more",
                         name, avail, out->data_off);
    out->data_len = need;
    return MER_OK;
}

void mer__npy_free(mer_npy *a) {
    if (!a) return;
    free(a->owned);
    memset(a, 0, sizeof *a);
    a->dtype = MER_DTYPE_INVALID;
}

mer_status mer__npy_str(const char *name, const mer_npy *a, size_t i, char **out, size_t *len, mer_err *err) {
    *out = NULL;
    MER_ASSERT(a->kind == MER_NPY_UNICODE && i < a->n_elems);
    const uint8_t *p = a->data + i * a->itemsize;
    size_t n = a->str_len;
    while (n > 0 && !(p[4 * (n - 1)] | p[4 * (n - 1) + 1] | p[4 * (n - 1) + 2] | p[4 * (n - 1) + 3])) n--;
    size_t cap;
    if (mer__mul_ovf(n, 4, &cap) || mer__add_ovf(cap, 1, &cap))
        return mer__errf(err, MER_E_NOMEM, "%s: string too long", name);
    char *s = malloc(cap);
    if (!s) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", name);
    size_t k = 0;
    for (size_t j = 0; j < n; j++) {
        const uint8_t *q = p + 4 * j;
        uint32_t cp = (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) | ((uint32_t)q[3] << 24);
        if (cp < 0x80) {
            s[k++] = (char)cp;
            continue;
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            free(s);
            return mer__errf(err, MER_E_FORMAT, "%s: invalid code point U+%X in element %zu at offset %zu", name, cp, i,
                             a->data_off + i * a->itemsize + 4 * j);
        }
        k += (size_t)mer__utf8_encode(cp, s + k);
    }
    s[k] = 0;
    *out = s;
    if (len) *len = k;
    return MER_OK;
}

// --- writing -----------------------------------------------------------------------------------------

mer_status mer__npy_write_header(mer_buf *b, const char *descr, int fortran, int n_dims, const int64_t *shape) {
    MER_ASSERT(n_dims >= 0 && n_dims <= MER_NPY_MAX_DIMS);
    mer_buf h = {0};
    mer_status st = mer__buf_printf(&h, "{'descr': '%s', 'fortran_order': %s, 'shape': (", descr,
                                    fortran ? "True" : "False");
    for (int d = 0; d < n_dims && !st; d++)
        st = mer__buf_printf(&h, d + 1 < n_dims ? "%lld, " : (n_dims == 1 ? "%lld," : "%lld"), (long long)shape[d]);
    if (!st) st = mer__buf_printf(&h, "), }");
    if (!st && n_dims > 0) {
        char tmp[32];
        int gl = snprintf(tmp, sizeof tmp, "%lld", (long long)shape[fortran ? n_dims - 1 : 0]);
        for (int k = gl; k < 21 && !st; k++) st = mer__buf_putc(&h, ' ');
    }
    if (st) goto fail;
    {
        /* version 1 unless the padded length overflows its 16-bit field (numpy's _wrap_header_guess_version) */
        size_t hl = h.len + 1, pre = 10;
        size_t pad = 64 - ((pre + hl) % 64);
        if (hl + pad > 65535) {
            pre = 12;
            pad = 64 - ((pre + hl) % 64);
        }
        size_t total = hl + pad;
        uint8_t mg[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', pre == 10 ? 1 : 2, 0};
        mg[8] = (uint8_t)total;
        mg[9] = (uint8_t)(total >> 8);
        mg[10] = (uint8_t)(total >> 16);
        mg[11] = (uint8_t)(total >> 24);
        st = mer__buf_append(b, mg, pre);
        if (!st) st = mer__buf_append(b, h.data, h.len);
        for (size_t k = 0; k < pad && !st; k++) st = mer__buf_putc(b, ' ');
        if (!st) st = mer__buf_putc(b, '\n');
    }
fail:
    mer__buf_free(&h);
    return st;
}

mer_status mer__npy_write(mer_buf *b, const char *descr, int n_dims, const int64_t *shape, const void *data,
                          size_t n_bytes) {
    mer_status st = mer__npy_write_header(b, descr, 0, n_dims, shape);
    return st ? st : mer__buf_append(b, data, n_bytes);
}

mer_status mer__npy_write_unicode(mer_buf *b, const char *const *strs, size_t n, mer_err *err) {
    if (n == 0) {
        int64_t shape[1] = {0};
        mer_status st = mer__npy_write(b, "<f8", 1, shape, NULL, 0);
        return st ? mer__errf(err, st, "out of memory") : MER_OK;
    }
    size_t maxlen = 1;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = (const uint8_t *)strs[i];
        size_t len = strlen(strs[i]);
        size_t bad = mer__utf8_check(s, len);
        if (bad != len) return mer__errf(err, MER_E_ARG, "string %zu: invalid UTF-8 at byte %zu", i, bad);
        size_t cps = 0;
        for (size_t k = 0; k < len; k++) cps += (s[k] & 0xC0) != 0x80;
        if (cps > maxlen) maxlen = cps;
    }
    size_t item, total;
    if (mer__mul_ovf(maxlen, 4, &item) || mer__mul_ovf(item, n, &total))
        return mer__errf(err, MER_E_RANGE, "unicode array too large");
    char descr[32];
    snprintf(descr, sizeof descr, "<U%zu", maxlen);
    int64_t shape[1] = {(int64_t)n};
    mer_status st = mer__npy_write_header(b, descr, 0, 1, shape);
    if (!st) st = mer__buf_reserve(b, total);
    if (st) return mer__errf(err, st, "out of memory");
    uint8_t *o = (uint8_t *)b->data + b->len;
    memset(o, 0, total);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = (const uint8_t *)strs[i];
        size_t len = strlen(strs[i]), k = 0, j = 0;
        while (k < len) {
            uint32_t cp;
            k += (size_t)mer__utf8_decode(s + k, len - k, &cp);
            uint8_t *q = o + i * item + 4 * j++;
            q[0] = (uint8_t)cp;
            q[1] = (uint8_t)(cp >> 8);
            q[2] = (uint8_t)(cp >> 16);
            q[3] = (uint8_t)(cp >> 24);
        }
    }
    b->len += total;
    b->data[b->len] = 0;
    return MER_OK;
}

// --- npz ---------------------------------------------------------------------------------------------

mer_status mer__npz_open(const char *path, mer_npz *z, mer_err *err) { return mer__zip_open(path, &z->zip, err); }

mer_status mer__npz_open_mem(const char *name, const uint8_t *data, size_t size, mer_npz *z, mer_err *err) {
    return mer__zip_open_mem(name, data, size, &z->zip, err);
}

void mer__npz_close(mer_npz *z) {
    if (z) mer__zip_close(&z->zip);
}

size_t mer__npz_count(const mer_npz *z) { return z->zip.n; }

const char *mer__npz_name(const mer_npz *z, size_t i) { return i < z->zip.n ? z->zip.entries[i].name : NULL; }

mer_status mer__npz_get(const mer_npz *z, const char *key, mer_npy *arr, mer_err *err) {
    memset(arr, 0, sizeof *arr);
    arr->dtype = MER_DTYPE_INVALID;
    size_t kl = strlen(key);
    char *full = malloc(kl + 5);
    if (!full) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", z->zip.path);
    memcpy(full, key, kl);
    memcpy(full + kl, ".npy", 5);
    const mer_zip_entry *e = mer__zip_find(&z->zip, full);
    if (!e) e = mer__zip_find(&z->zip, key);
    free(full);
    if (!e) return mer__errf(err, MER_E_NOTFOUND, "%s: no array '%s' in the npz", z->zip.path, key);
    uint8_t *buf;
    size_t n;
    mer_status st = mer__zip_read(&z->zip, e, &buf, &n, err);
    if (st) return st;
    size_t nl = strlen(z->zip.path) + strlen(e->name) + 4;
    char *nm = malloc(nl);
    if (!nm) {
        free(buf);
        return mer__errf(err, MER_E_NOMEM, "%s: out of memory", z->zip.path);
    }
    snprintf(nm, nl, "%s[%s]", z->zip.path, e->name);
    st = mer__npy_parse(nm, buf, n, arr, err);
    free(nm);
    if (st) {
        free(buf);
        return st;
    }
    arr->owned = buf;
    return MER_OK;
}
