/* labels_npz.c - label tables in npz files, as the MER2025 baselines write them:
 *  - submissions (*-openset.npz): np.savez_compressed(path, filenames=names, fileitems=items), two 1-D
 *    '<U{maxlen}' arrays;
 *  - raw results: np.savez_compressed(path, name2reason=dict), a 0-d object array whose payload is a
 *    pickle of the ndarray holding a dict {str: str}.
 * The writers reproduce numpy 1.24's bytes exactly (same .npy headers, same pickle, same zip layout
 * with the 1980-01-01 timestamps zipfile uses, same zlib level); the reader goes through zip.c, npy.c and
 * the safe pickle subset in pickle.c. */
#include "io/labels.h"
#include "io/npy.h"
#include "io/pickle.h"
#include "io/zip.h"

#include <string.h>

// --- reading -----------------------------------------------------------------------------------------

/* Appends one row, taking ownership of name and labels (freed here on failure). */
static mer_status add_row(const char *path, mer_label_table *out, size_t *cap, char *name, char *labels, mer_err *err) {
    if (out->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        mer_labeled *nr = realloc(out->rows, nc * sizeof *nr);
        if (!nr) {
            free(name);
            free(labels);
            return mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
        }
        out->rows = nr;
        *cap = nc;
    }
    out->rows[out->n].name = name;
    out->rows[out->n].labels = labels;
    out->n++;
    return MER_OK;
}

/* A string from a pickled value, refusing embedded NULs (the table holds C strings). */
static mer_status py_str(const char *path, const mer_py *v, const char *what, const char *key, char **out, mer_err *err) {
    *out = NULL;
    if (v->type != MER_PY_STR)
        return mer__errf(err, MER_E_FORMAT, "%s: name2reason: %s%s%s is a %s, not a str", path, what, key ? " of key " : "",
                         key ? key : "", mer__py_type_name(v));
    if (strlen(v->s) != v->len)
        return mer__errf(err, MER_E_FORMAT, "%s: name2reason: %s contains a NUL character", path, what);
    *out = mer__strndup(v->s, v->len);
    return *out ? MER_OK : mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
}

static mer_status read_name2reason(const char *path, const mer_npz *z, mer_label_table *out, mer_err *err) {
    mer_npy a;
    mer_pickle pk = {0};
    size_t cap = 0;
    mer_status st = mer__npz_get(z, "name2reason", &a, err);
    if (st) return st;
    if (a.kind != MER_NPY_OBJECT || a.n_elems != 1) {
        st = mer__errf(err, MER_E_FORMAT, "%s: name2reason is a '%s' array of %zu elements; expected a 0-d object array "
                       "holding a dict", path, a.descr, a.n_elems);
        goto fail;
    }
    size_t nl = strlen(path) + 32;
    char *pname = malloc(nl);
    if (!pname) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    /* pickle offsets are reported relative to the pickle, which starts after the .npy header */
    snprintf(pname, nl, "%s[name2reason.npy]+%zu", path, a.data_off);
    st = mer__pickle_load(pname, a.data, a.data_len, &pk, err);
    free(pname);
    if (st) goto fail;
    const mer_py *r = pk.root;
    if (r->type != MER_PY_NDARRAY || !r->ref || r->ref->s[0] != 'O' || r->n != 1 || r->items[0]->type != MER_PY_DICT) {
        st = mer__errf(err, MER_E_FORMAT, "%s: name2reason does not unpickle to an object array holding a dict (got %s)",
                       path, r->type == MER_PY_NDARRAY && r->n == 1 ? mer__py_type_name(r->items[0]) : mer__py_type_name(r));
        goto fail;
    }
    const mer_py *d = r->items[0];
    for (size_t i = 0; i < d->n; i++) {
        char *name, *text;
        if ((st = py_str(path, d->items[2 * i], "a key", NULL, &name, err))) goto fail;
        if ((st = py_str(path, d->items[2 * i + 1], "the value", name, &text, err))) {
            free(name);
            goto fail;
        }
        if ((st = add_row(path, out, &cap, name, text, err))) goto fail;
    }
fail:
    mer__pickle_free(&pk);
    mer__npy_free(&a);
    return st;
}

/* The i-th string of a 1-D unicode array, or of a 1-D object array of str. `where` names the member in
 * messages ("<path>[filenames.npy]"). */
static mer_status elem_str(const char *path, const char *where, const char *key, const mer_npy *a, const mer_pickle *pk,
                           size_t i, char **out, mer_err *err) {
    *out = NULL;
    size_t len;
    if (a->kind == MER_NPY_UNICODE) {
        mer_status st = mer__npy_str(where, a, i, out, &len, err);
        if (st) return st;
    } else {
        const mer_py *v = pk->root->items[i];
        if (v->type != MER_PY_STR)
            return mer__errf(err, MER_E_FORMAT, "%s: %s[%zu] is a %s, not a str", path, key, i, mer__py_type_name(v));
        *out = mer__strndup(v->s, v->len);
        if (!*out) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
        len = v->len;
    }
    if (strlen(*out) != len) {
        free(*out);
        *out = NULL;
        return mer__errf(err, MER_E_FORMAT, "%s: %s[%zu] contains a NUL character", path, key, i);
    }
    return MER_OK;
}

/* Checks a column is a 1-D array of strings; unpickles an object column into *pk. */
static mer_status check_column(const char *path, const char *key, const mer_npy *a, mer_pickle *pk, mer_err *err) {
    if (a->n_dims != 1)
        return mer__errf(err, MER_E_FORMAT, "%s: %s has %d dimensions; expected a 1-D array of strings", path, key, a->n_dims);
    if (a->kind == MER_NPY_UNICODE) return MER_OK;
    if (a->kind == MER_NPY_NUMERIC && a->n_elems == 0) return MER_OK; /* np.array([]) of an empty list */
    if (a->kind != MER_NPY_OBJECT)
        return mer__errf(err, MER_E_FORMAT, "%s: %s is a '%s' array; expected strings", path, key, a->descr);
    char pname[128];
    snprintf(pname, sizeof pname, "%.80s[%.20s.npy]+%zu", path, key, a->data_off);
    mer_status st = mer__pickle_load(pname, a->data, a->data_len, pk, err);
    if (st) return st;
    const mer_py *r = pk->root;
    if (r->type != MER_PY_NDARRAY || !r->ref || r->ref->s[0] != 'O' || r->n != a->n_elems)
        return mer__errf(err, MER_E_FORMAT, "%s: %s does not unpickle to an object array of %zu elements", path, key, a->n_elems);
    return MER_OK;
}

static mer_status read_columns(const char *path, const mer_npz *z, mer_label_table *out, mer_err *err) {
    mer_npy fn, fi;
    mer_pickle pn = {0}, pi = {0};
    char *wn = NULL, *wi = NULL;
    size_t cap = 0;
    memset(&fi, 0, sizeof fi);
    mer_status st = mer__npz_get(z, "filenames", &fn, err);
    if (st) return st;
    if ((st = mer__npz_get(z, "fileitems", &fi, err))) goto fail;
    if ((st = check_column(path, "filenames", &fn, &pn, err)) || (st = check_column(path, "fileitems", &fi, &pi, err)))
        goto fail;
    if (fn.n_elems != fi.n_elems) {
        st = mer__errf(err, MER_E_SHAPE, "%s: filenames has %zu entries but fileitems has %zu", path, fn.n_elems, fi.n_elems);
        goto fail;
    }
    if (fn.kind == MER_NPY_NUMERIC) goto fail; /* both empty */
    size_t wl = strlen(path) + 24;
    if (!(wn = malloc(wl)) || !(wi = malloc(wl))) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    snprintf(wn, wl, "%s[filenames.npy]", path);
    snprintf(wi, wl, "%s[fileitems.npy]", path);
    for (size_t i = 0; i < fn.n_elems; i++) {
        char *name, *labels;
        if ((st = elem_str(path, wn, "filenames", &fn, &pn, i, &name, err))) goto fail;
        if ((st = elem_str(path, wi, "fileitems", &fi, &pi, i, &labels, err))) {
            free(name);
            goto fail;
        }
        if ((st = add_row(path, out, &cap, name, labels, err))) goto fail;
    }
fail:
    free(wn);
    free(wi);
    mer__pickle_free(&pn);
    mer__pickle_free(&pi);
    mer__npy_free(&fn);
    mer__npy_free(&fi);
    return st;
}

mer_status mer__npz_read_labels(const char *path, const mer_map *m, mer_label_table *out, mer_err *err) {
    out->rows = NULL;
    out->n = 0;
    mer_npz z;
    mer_status st = mer__npz_open_mem(path, m->data, m->size, &z, err);
    if (st) return st;
    if (mer__zip_find(&z.zip, "filenames.npy") && mer__zip_find(&z.zip, "fileitems.npy"))
        st = read_columns(path, &z, out, err);
    else if (mer__zip_find(&z.zip, "name2reason.npy"))
        st = read_name2reason(path, &z, out, err);
    else
        st = mer__errf(err, MER_E_NOTFOUND, "%s: the npz has neither 'filenames' + 'fileitems' nor 'name2reason'", path);
    mer__npz_close(&z);
    if (st) {
        for (size_t i = 0; i < out->n; i++) {
            free((char *)out->rows[i].name);
            free((char *)out->rows[i].labels);
        }
        free(out->rows);
        out->rows = NULL;
        out->n = 0;
    }
    return st;
}

// --- writing -----------------------------------------------------------------------------------------

/* Splits rows into two string arrays (borrowed pointers). */
static mer_status columns(const char *path, const mer_labeled *rows, size_t n, const char ***names,
                          const char ***labels, mer_err *err) {
    *names = malloc((n ? n : 1) * sizeof **names);
    *labels = malloc((n ? n : 1) * sizeof **labels);
    if (!*names || !*labels) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        if (!rows[i].name || !rows[i].labels) return mer__errf(err, MER_E_ARG, "%s: row %zu has a NULL string", path, i);
        (*names)[i] = rows[i].name;
        (*labels)[i] = rows[i].labels;
    }
    return MER_OK;
}

mer_status mer_openset_npz_write(const char *path, const mer_labeled *rows, size_t n, mer_err *err) {
    const char **names = NULL, **labels = NULL;
    mer_buf a = {0}, b = {0};
    mer_zip_writer w;
    mer__zipw_init(&w);
    mer_status st = columns(path, rows, n, &names, &labels, err);
    if (st) goto fail;
    if ((st = mer__npy_write_unicode(&a, names, n, err))) {
        mer__err_prefix(err, st, "%s: filenames", path);
        goto fail;
    }
    if ((st = mer__npy_write_unicode(&b, labels, n, err))) {
        mer__err_prefix(err, st, "%s: fileitems", path);
        goto fail;
    }
    if ((st = mer__zipw_add(&w, "filenames.npy", a.data, a.len, 8, 1, err)) ||
        (st = mer__zipw_add(&w, "fileitems.npy", b.data, b.len, 8, 1, err)) || (st = mer__zipw_finish(&w, err))) {
        mer__err_prefix(err, st, "%s", path);
        goto fail;
    }
    st = mer__write_file_atomic(path, w.out.data, w.out.len, err);
fail:
    free(names);
    free(labels);
    mer__buf_free(&a);
    mer__buf_free(&b);
    mer__zipw_free(&w);
    return st;
}

mer_status mer_result_npz_write(const char *path, const mer_labeled *rows, size_t n, mer_err *err) {
    const char **names = NULL, **labels = NULL;
    mer_buf a = {0};
    mer_zip_writer w;
    mer__zipw_init(&w);
    mer_status st = columns(path, rows, n, &names, &labels, err);
    if (st) goto fail;
    if ((st = mer__npy_write_header(&a, "|O", 0, 0, NULL))) {
        st = mer__errf(err, st, "%s: out of memory", path);
        goto fail;
    }
    if ((st = mer__pickle_write_npy_object_dict(&a, names, labels, n, err))) {
        mer__err_prefix(err, st, "%s: name2reason", path);
        goto fail;
    }
    if ((st = mer__zipw_add(&w, "name2reason.npy", a.data, a.len, 8, 1, err)) || (st = mer__zipw_finish(&w, err))) {
        mer__err_prefix(err, st, "%s", path);
        goto fail;
    }
    st = mer__write_file_atomic(path, w.out.data, w.out.len, err);
fail:
    free(names);
    free(labels);
    mer__buf_free(&a);
    mer__zipw_free(&w);
    return st;
}
