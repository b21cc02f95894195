/* csv.c - RFC 4180 CSV reading and field writing (see csv.h). The reader keeps the line on which
 * each row starts so that every error names `file:line`. */
#include "io/csv.h"

#include <string.h>

typedef struct cellvec {
    char **v;
    size_t n, cap;
} cellvec;

static mer_status push_cell(cellvec *cv, const char *s, size_t len) {
    if (cv->n == cv->cap) {
        size_t cap = cv->cap ? cv->cap * 2 : 256;
        char **p = realloc(cv->v, cap * sizeof *p);
        if (!p) return MER_E_NOMEM;
        cv->v = p;
        cv->cap = cap;
    }
    char *c = mer__strndup(s, len);
    if (!c) return MER_E_NOMEM;
    cv->v[cv->n++] = c;
    return MER_OK;
}

void mer__csv_free(mer_csv *c) {
    if (c->cells) {
        size_t total = (c->n_rows + 1) * c->n_cols;
        for (size_t i = 0; i < total; i++) free(c->cells[i]);
    }
    free(c->cells);
    free(c->lines);
    memset(c, 0, sizeof *c);
}

static mer_status parse(const char *path, const uint8_t *data, size_t n, int lenient, mer_csv *out, mer_err *err);

mer_status mer__csv_parse(const char *path, const uint8_t *data, size_t n, mer_csv *out, mer_err *err) {
    return parse(path, data, n, 0, out, err);
}

mer_status mer__csv_parse_lenient(const char *path, const uint8_t *data, size_t n, mer_csv *out, mer_err *err) {
    return parse(path, data, n, 1, out, err);
}

static mer_status parse(const char *path, const uint8_t *data, size_t n, int lenient, mer_csv *out, mer_err *err) {
    memset(out, 0, sizeof *out);
    cellvec cv = {0};
    size_t *lines = NULL, n_lines_cap = 0, n_rec = 0;
    mer_buf field = {0};
    mer_status st = MER_OK;
    size_t i = 0, line = 1;

    size_t bad = lenient ? n : mer__utf8_check(data, n);
    if (bad < n) {
        size_t l = 1;
        for (size_t k = 0; k < bad; k++) l += data[k] == '\n';
        st = mer__errf(err, MER_E_FORMAT, "%s:%zu: invalid UTF-8 at byte offset %zu", path, l, bad);
        goto fail;
    }
    if (n >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF) i = 3;

    size_t n_cols = 0;
    while (i < n) {
        /* skip blank lines between records */
        if (data[i] == '\n') { line++; i++; continue; }
        if (data[i] == '\r' && (i + 1 == n || data[i + 1] == '\n')) { i++; continue; }
        size_t rec_line = line, n_fields = 0;
        for (;;) { /* one field */
            field.len = 0;
            if (field.data) field.data[0] = 0;
            if (i < n && data[i] == '"') {
                size_t qline = line;
                i++;
                for (;;) {
                    if (i >= n) {
                        st = mer__errf(err, MER_E_FORMAT, "%s:%zu: unbalanced quote (field opened here never closes)", path, qline);
                        goto fail;
                    }
                    if (data[i] == '"') {
                        if (i + 1 < n && data[i + 1] == '"') { st = mer__buf_putc(&field, '"'); i += 2; }
                        else { i++; break; }
                    } else { /* copy the run up to the next quote in one piece */
                        const uint8_t *q = memchr(data + i, '"', n - i);
                        size_t j = q ? (size_t)(q - data) : n;
                        for (size_t k = i; k < j; k++) line += data[k] == '\n';
                        st = mer__buf_append(&field, data + i, j - i);
                        i = j;
                    }
                    if (st) goto nomem;
                }
                if (i < n && data[i] != ',' && data[i] != '\n' && data[i] != '\r') {
                    st = mer__errf(err, MER_E_FORMAT, "%s:%zu: unexpected character after closing quote at byte offset %zu", path, line, i);
                    goto fail;
                }
            } else {
                size_t s = i;
                while (i < n && data[i] != ',' && data[i] != '\n' && !(data[i] == '\r' && (i + 1 == n || data[i + 1] == '\n'))) {
                    if (data[i] == '"') {
                        st = mer__errf(err, MER_E_FORMAT, "%s:%zu: stray quote inside an unquoted field at byte offset %zu", path, line, i);
                        goto fail;
                    }
                    i++;
                }
                if ((st = mer__buf_append(&field, data + s, i - s))) goto nomem;
            }
            if ((st = push_cell(&cv, field.data ? field.data : "", field.len))) goto nomem;
            n_fields++;
            if (i < n && data[i] == ',') { i++; continue; }
            if (i < n && data[i] == '\r') i++;
            if (i < n && data[i] == '\n') { i++; line++; }
            break;
        }
        if (n_rec == 0) {
            n_cols = n_fields;
        } else if (n_fields > n_cols) {
            st = mer__errf(err, MER_E_FORMAT, "%s:%zu: %zu fields, but the header has %zu columns", path, rec_line, n_fields, n_cols);
            goto fail;
        } else {
            for (; n_fields < n_cols; n_fields++)
                if ((st = push_cell(&cv, "", 0))) goto nomem;
        }
        if (n_rec == n_lines_cap) {
            n_lines_cap = n_lines_cap ? n_lines_cap * 2 : 256;
            size_t *p = realloc(lines, n_lines_cap * sizeof *p);
            if (!p) { st = MER_E_NOMEM; goto nomem; }
            lines = p;
        }
        lines[n_rec++] = rec_line;
    }
    if (n_rec == 0) {
        st = mer__errf(err, MER_E_FORMAT, "%s:1: empty file (no header row)", path);
        goto fail;
    }
    mer__buf_free(&field);
    out->n_cols = n_cols;
    out->n_rows = n_rec - 1;
    out->cells = cv.v;
    out->lines = lines;
    return MER_OK;
nomem:
    st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
fail:
    for (size_t k = 0; k < cv.n; k++) free(cv.v[k]);
    free(cv.v);
    free(lines);
    mer__buf_free(&field);
    return st;
}

mer_status mer__csv_read(const char *path, mer_csv *out, mer_err *err) {
    mer_map m;
    mer_status st = mer__map_open(path, &m, err);
    if (st) return st;
    st = mer__csv_parse(path, m.data, m.size, out, err);
    mer__map_close(&m);
    return st;
}

long mer__csv_col(const mer_csv *c, const char *name) {
    for (size_t j = 0; j < c->n_cols; j++)
        if (strcmp(c->cells[j], name) == 0) return (long)j;
    return -1;
}

mer_status mer__csv_put_field(mer_buf *b, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) return mer__buf_append(b, s, strlen(s));
    mer_status st = mer__buf_putc(b, '"');
    for (; !st && *s; s++) st = *s == '"' ? mer__buf_append(b, "\"\"", 2) : mer__buf_putc(b, *s);
    return st ? st : mer__buf_putc(b, '"');
}
