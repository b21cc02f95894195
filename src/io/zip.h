/* zip.h - zip archives: a reader over a byte range (a file mapping or a caller's buffer) and an
 * in-memory writer. Internal to mer (npz files and PyTorch checkpoints are zips).
 *
 * Reader: finds the end-of-central-directory record (and the zip64 one when present), reads the central
 * directory, and resolves every entry's local header at open, so that after a successful open every
 * entry's data range [data_off, data_off + csize) lies inside the buffer. Stored (0) and deflate (8)
 * entries can be read; CRC-32 and the uncompressed size are verified on every read. Zip64 extra
 * fields (central and local) are handled; encrypted entries are refused.
 *
 * Writer: appends entries (stored or deflated with zlib level 6, raw deflate, as Python's zipfile
 * writes ZIP_DEFLATED) to a growable buffer and finishes with the central directory; the layout
 * follows CPython 3.11's zipfile byte for byte when `zip64_local` is set (what numpy's savez writes).
 * Neither side keeps global state; a reader is immutable after open and may be shared by threads. */
#ifndef MER_IO_ZIP_H
#define MER_IO_ZIP_H

#include "core/core.h"

typedef struct mer_zip_entry {
    char *name;        /* NUL-terminated; names with an embedded NUL are refused */
    size_t name_len;
    uint16_t method;   /* 0 stored, 8 deflate, anything else refused at read time */
    uint16_t flags;
    uint32_t crc;
    uint64_t csize;    /* compressed size (zip64 resolved) */
    uint64_t usize;    /* uncompressed size (zip64 resolved) */
    uint64_t local_off;/* offset of the local header in the buffer */
    uint64_t data_off; /* offset of the entry's data in the buffer */
} mer_zip_entry;

typedef struct mer_zip {
    char *path;               /* name used in messages (owned copy) */
    const uint8_t *data;      /* the whole archive */
    size_t size;
    mer_zip_entry *entries;   /* central-directory order */
    size_t n;
    size_t *sorted;           /* entry indices sorted by name, for mer__zip_find */
    mer_map map;              /* set when opened from a path */
} mer_zip;

/* Opens the zip at `path` (mapped read-only). On failure *z is left empty (nothing to close) and
 * err names the file and the byte offset at fault. */
mer_status mer__zip_open(const char *path, mer_zip *z, mer_err *err);
/* Same over a caller's buffer, which must outlive z. `name` is used in messages. */
mer_status mer__zip_open_mem(const char *name, const uint8_t *data, size_t size, mer_zip *z, mer_err *err);
/* Frees everything open allocated (and unmaps). Safe on a zeroed or closed struct. */
void mer__zip_close(mer_zip *z);

/* Exact-name lookup, O(log n). NULL when absent. */
const mer_zip_entry *mer__zip_find(const mer_zip *z, const char *name);

/* Decompresses (or copies) entry e into a new malloc'd buffer of e->usize bytes plus a NUL byte (not
 * counted in *n), checking size and CRC-32. Caller frees *out. The buffer grows with the data actually
 * produced, so a lying usize cannot make it allocate more than the data needs. */
mer_status mer__zip_read(const mer_zip *z, const mer_zip_entry *e, uint8_t **out, size_t *n, mer_err *err);

/* Zero-copy view of a stored (method 0) entry: *p points into the archive, valid until close.
 * With verify_crc, checks the CRC-32 first. MER_E_UNSUPPORTED for a compressed entry. */
mer_status mer__zip_view(const mer_zip *z, const mer_zip_entry *e, int verify_crc, const uint8_t **p,
                         size_t *n, mer_err *err);

// --- writer ------------------------------------------------------------------------------------------

typedef struct mer_zipw_entry {
    char *name;
    uint16_t method, flags;
    uint32_t crc;
    uint64_t csize, usize, local_off;
} mer_zipw_entry;

typedef struct mer_zip_writer {
    mer_buf out;              /* the archive so far */
    mer_zipw_entry *entries;
    size_t n, cap;
    uint16_t dos_time, dos_date; /* stamped on every entry; 0 and 0x21 (1980-01-01 00:00:00) by default */
    int finished;
} mer_zip_writer;

/* Initialises an empty writer (timestamp 1980-01-01 00:00:00, as zipfile.ZipFile.open(name, 'w')). */
void mer__zipw_init(mer_zip_writer *w);
/* Appends one entry. method 0 (stored) or 8 (deflate, zlib level 6, raw, memLevel 8). zip64_local adds
 * the zip64 extra field to the local header as numpy's savez (force_zip64=True) does. */
mer_status mer__zipw_add(mer_zip_writer *w, const char *name, const void *data, size_t n, int method,
                         int zip64_local, mer_err *err);
/* Writes the central directory and end records; w->out then holds the complete archive. */
mer_status mer__zipw_finish(mer_zip_writer *w, mer_err *err);
void mer__zipw_free(mer_zip_writer *w);

#endif
