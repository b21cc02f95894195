/* csv.h - an RFC 4180 CSV reader (UTF-8, header row, quoted fields with "" escapes and embedded
 * newlines, CRLF or LF, optional UTF-8 BOM, blank lines skipped as pandas does) and a CSV writer. */
#ifndef MER_IO_CSV_H
#define MER_IO_CSV_H

#include "core/core.h"

typedef struct mer_csv {
    size_t n_cols;   /* from the header row */
    size_t n_rows;   /* data rows (header excluded) */
    char **cells;    /* [n_rows + 1][n_cols], row 0 is the header; each NUL-terminated, owned */
    size_t *lines;   /* [n_rows + 1] 1-based line where each row starts */
} mer_csv;

/* Parses data[0..n) (the contents of `path`, used only in messages). A row with more fields than
 * the header is an error; a row with fewer gets empty fields (as pandas gives NaN). Errors name the
 * file and line: unbalanced quote, invalid UTF-8, stray quote, no header. Caller frees with
 * mer__csv_free. */
mer_status mer__csv_parse(const char *path, const uint8_t *data, size_t n, mer_csv *out, mer_err *err);
/* The same, but invalid UTF-8 does not fail the whole file (cells keep their bytes; the caller checks
 * the cells it uses with mer__utf8_check). For files where one bad row must not stop a dataset run. */
mer_status mer__csv_parse_lenient(const char *path, const uint8_t *data, size_t n, mer_csv *out, mer_err *err);
/* Reads and parses a file. */
mer_status mer__csv_read(const char *path, mer_csv *out, mer_err *err);
void mer__csv_free(mer_csv *c);

/* Index of the header column `name`, or -1. */
long mer__csv_col(const mer_csv *c, const char *name);
static inline const char *mer__csv_cell(const mer_csv *c, size_t row, size_t col) {
    return c->cells[(row + 1) * c->n_cols + col];
}

/* Appends one field, quoted when it holds a comma, quote, CR or LF (quotes doubled). */
mer_status mer__csv_put_field(mer_buf *b, const char *s);

#endif
