/* labels.c - label tables (name -> text) read from CSV or npz, detected by content. */
#include "io/labels.h"
#include "core/strmap.h"
#include "io/csv.h"

#include <string.h>

void mer_label_table_free(mer_label_table *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) {
        free((char *)t->rows[i].name);
        free((char *)t->rows[i].labels);
    }
    free(t->rows);
    t->rows = NULL;
    t->n = 0;
}

static mer_status from_csv(const char *path, const mer_map *m, const char *column, mer_label_table *out, mer_err *err) {
    mer_csv c;
    mer_status st = mer__csv_parse(path, m->data, m->size, &c, err);
    if (st) return st;
    long jn = mer__csv_col(&c, "name"), jl = mer__csv_col(&c, column);
    if (jn < 0 || jl < 0) {
        st = mer__errf(err, MER_E_FORMAT, "%s:1: missing column '%s' (the header must have 'name' and '%s')", path,
                       jn < 0 ? "name" : column, column);
        goto fail;
    }
    out->rows = calloc(c.n_rows ? c.n_rows : 1, sizeof *out->rows);
    if (!out->rows) { st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path); goto fail; }
    for (size_t r = 0; r < c.n_rows; r++) {
        const char *nm = mer__csv_cell(&c, r, (size_t)jn);
        if (!nm[0]) {
            st = mer__errf(err, MER_E_FORMAT, "%s:%zu: empty name", path, c.lines[r + 1]);
            goto fail;
        }
        out->rows[r].name = strdup(nm);
        out->rows[r].labels = strdup(mer__csv_cell(&c, r, (size_t)jl));
        out->n = r + 1;
        if (!out->rows[r].name || !out->rows[r].labels) { st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path); goto fail; }
    }
    mer__csv_free(&c);
    return MER_OK;
fail:
    mer__csv_free(&c);
    mer_label_table_free(out);
    return st;
}

mer_status mer_label_table_read(const char *path, const char *column, mer_label_table *out, mer_err *err) {
    out->rows = NULL;
    out->n = 0;
    if (!column) column = "openset";
    mer_map m;
    mer_status st = mer__map_open(path, &m, err);
    if (st) return st;
    if (m.size >= 4 && memcmp(m.data, "PK\003\004", 4) == 0) st = mer__npz_read_labels(path, &m, out, err);
    else if (m.size >= 6 && memcmp(m.data, "\x93NUMPY", 6) == 0)
        st = mer__errf(err, MER_E_UNSUPPORTED, "%s: a bare .npy file; expected an .npz (zip) or a CSV", path);
    else st = from_csv(path, &m, column, out, err);
    mer__map_close(&m);
    if (st) return st;
    /* duplicate names are an error: a dict in the reference would silently keep the last one */
    mer_strmap seen = {0};
    for (size_t i = 0; i < out->n; i++) {
        int ins = 0;
        if (mer__strmap_put(&seen, out->rows[i].name, strlen(out->rows[i].name), (int64_t)i, NULL, &ins)) {
            st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
            break;
        }
        if (!ins) {
            st = mer__errf(err, MER_E_FORMAT, "%s: duplicate name '%s' (row %zu)", path, out->rows[i].name, i + 1);
            break;
        }
    }
    mer__strmap_free(&seen);
    if (st) mer_label_table_free(out);
    return st;
}

mer_status mer_label_table_lookup(const mer_label_table *t, mer_labeled *rows, size_t n, size_t *n_missing,
                                  mer_err *err) {
    mer_strmap idx = {0};
    *n_missing = 0;
    for (size_t i = 0; i < t->n; i++)
        if (mer__strmap_put(&idx, t->rows[i].name, strlen(t->rows[i].name), (int64_t)i, NULL, NULL)) {
            mer__strmap_free(&idx);
            return mer__errf(err, MER_E_NOMEM, "out of memory");
        }
    for (size_t i = 0; i < n; i++) {
        int64_t *j = mer__strmap_get(&idx, rows[i].name, strlen(rows[i].name));
        rows[i].labels = j ? t->rows[*j].labels : NULL;
        *n_missing += !j;
    }
    mer__strmap_free(&idx);
    return MER_OK;
}
