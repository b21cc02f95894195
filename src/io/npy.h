/* npy.h - numpy's .npy arrays (format versions 1, 2 and 3) and .npz archives (a zip of .npy files).
 * Internal to mer.
 *
 * Reading: the header (a Python dict literal with 'descr', 'fortran_order' and 'shape') is parsed by a
 * small literal parser, never evaluated. dtypes: <f4 <f8 <f2 <i2 <i4 <i8 |u1 |i1 |b1 (little-endian
 * only), <U{n} (UTF-32LE strings, read back as UTF-8 with trailing NULs stripped) and |O object arrays
 * (whose payload is a pickle of the whole array: hand it to pickle.h).
 * Writing: the header numpy 1.24 writes, byte for byte (sorted keys, repr of the shape, 21 - len(repr
 * of the growth axis) spare spaces, padding to a multiple of 64 bytes ending in '\n', version 1 when
 * the header fits in 65535 bytes, else 2). */
#ifndef MER_IO_NPY_H
#define MER_IO_NPY_H

#include "core/core.h"
#include "core/dtype.h"
#include "io/zip.h"

#define MER_NPY_MAX_DIMS 32

typedef enum mer_npy_kind {
    MER_NPY_NUMERIC = 0, /* dtype says which */
    MER_NPY_UNICODE = 1, /* <U{n}: n UTF-32LE code units per element */
    MER_NPY_OBJECT = 2,  /* |O: the payload is a pickle */
} mer_npy_kind;

typedef struct mer_npy {
    mer_npy_kind kind;
    mer_dtype dtype;          /* numeric kinds; MER_DTYPE_INVALID otherwise */
    char descr[24];           /* as written in the header, e.g. "<f4", "<U12", "|O" */
    size_t itemsize;          /* bytes per element (4n for <U{n}, 0 for |O) */
    size_t str_len;           /* n of <U{n} */
    int fortran;              /* fortran_order */
    int n_dims;
    int64_t shape[MER_NPY_MAX_DIMS];
    size_t n_elems;
    int version;              /* format major version 1..3 */
    const uint8_t *data;      /* payload: n_elems * itemsize bytes, or the pickle for |O */
    size_t data_len;
    size_t data_off;          /* offset of the payload in the parsed buffer */
    uint8_t *owned;           /* buffer freed by mer__npy_free (set by mer__npz_get) */
} mer_npy;

/* Parses an .npy image buf[0..n). `name` is used in messages ("<name>: ... at offset N"). On success
 * out->data points into buf (not owned). Checks the payload holds n_elems * itemsize bytes (extra
 * trailing bytes are ignored, as numpy does). */
mer_status mer__npy_parse(const char *name, const uint8_t *buf, size_t n, mer_npy *out, mer_err *err);
/* Frees out->owned (if any) and zeroes the struct. */
void mer__npy_free(mer_npy *a);

/* Element i (flat, C order of the stored bytes) of a <U{n} array as NUL-terminated UTF-8 with trailing
 * NULs stripped. Caller frees *out. A code point that is a surrogate or above U+10FFFF is a
 * MER_E_FORMAT error naming `name`, the element and the byte offset. *len may be NULL. */
mer_status mer__npy_str(const char *name, const mer_npy *a, size_t i, char **out, size_t *len, mer_err *err);

/* Appends an .npy header exactly as numpy 1.24 writes it. descr e.g. "<f4"; n_dims 0..32. */
mer_status mer__npy_write_header(mer_buf *b, const char *descr, int fortran, int n_dims, const int64_t *shape);
/* Appends a whole .npy: the header and n_bytes of payload (C order). */
mer_status mer__npy_write(mer_buf *b, const char *descr, int n_dims, const int64_t *shape, const void *data,
                          size_t n_bytes);
/* Appends a 1-D '<U{maxlen}' .npy of n UTF-8 strings, as np.save(np.array(list_of_str)) does: maxlen is
 * the longest string in code points (at least 1). With n == 0 it writes what numpy writes for an empty
 * list: '<f8' with shape (0,). Invalid UTF-8 is MER_E_ARG naming the element. */
mer_status mer__npy_write_unicode(mer_buf *b, const char *const *strs, size_t n, mer_err *err);

// --- npz ---------------------------------------------------------------------------------------------

typedef struct mer_npz {
    mer_zip zip;
} mer_npz;

mer_status mer__npz_open(const char *path, mer_npz *z, mer_err *err);
/* Over a caller's buffer that must outlive z. */
mer_status mer__npz_open_mem(const char *name, const uint8_t *data, size_t size, mer_npz *z, mer_err *err);
void mer__npz_close(mer_npz *z);
/* Number of members and the i-th member's name (with its ".npy" suffix, as in the archive). */
size_t mer__npz_count(const mer_npz *z);
const char *mer__npz_name(const mer_npz *z, size_t i);
/* Reads array `key` (member "<key>.npy", or exactly "<key>"). MER_E_NOTFOUND when absent. On success the
 * caller frees *arr with mer__npy_free. */
mer_status mer__npz_get(const mer_npz *z, const char *key, mer_npy *arr, mer_err *err);

#endif
