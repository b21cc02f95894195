/* zip.c - the zip reader and writer declared in zip.h. The reader trusts nothing in the archive: every
 * count, size and offset is checked against the buffer with overflow-checked arithmetic before use, and
 * decompression output is bounded by the size the directory declares (and verified against it and
 * the CRC-32). The writer produces the byte layout of CPython's zipfile module. */
#include "io/zip.h"

#include <limits.h>
#include <string.h>
#include <zlib.h>

// --- little-endian helpers ---------------------------------------------------------------------------

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* True when [off, off+len) lies inside [0, size). */
static int in_range(uint64_t off, uint64_t len, size_t size) {
    return off <= size && len <= (uint64_t)size - off;
}

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u

// --- reader ------------------------------------------------------------------------------------------

static mer_status ferr(const mer_zip *z, mer_err *err, mer_status st, uint64_t off, const char *what) {
    return mer__errf(err, st, "%s: %s at offset %llu", z->path, what, (unsigned long long)off);
}

/* Finds the end-of-central-directory record: the last "PK\5\6" whose comment fits in the file. */
static mer_status find_eocd(const mer_zip *z, size_t *pos, mer_err *err) {
    if (z->size < 22) return ferr(z, err, MER_E_FORMAT, z->size, "not a zip archive (too short for an end record)");
    size_t lo = z->size > 22 + 65535 ? z->size - 22 - 65535 : 0;
    for (size_t i = z->size - 22 + 1; i-- > lo;) {
        if (rd32(z->data + i) != SIG_EOCD) continue;
        uint16_t clen = rd16(z->data + i + 20);
        if ((uint64_t)i + 22 + clen <= z->size) {
            *pos = i;
            return MER_OK;
        }
    }
    return ferr(z, err, MER_E_FORMAT, z->size, "no end-of-central-directory record (truncated or not a zip)");
}

static int cmp_name(const void *a, const void *b, void *ud) {
    const mer_zip *z = ud;
    return strcmp(z->entries[*(const size_t *)a].name, z->entries[*(const size_t *)b].name);
}

/* merge sort of entry indices by name (qsort has no user pointer in C11) */
static void sort_idx(const mer_zip *z, size_t *a, size_t *tmp, size_t n) {
    if (n < 2) return;
    size_t h = n / 2;
    sort_idx(z, a, tmp, h);
    sort_idx(z, a + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = cmp_name(&a[j], &a[i], (void *)z) < 0 ? a[j++] : a[i++];
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

/* Reads the zip64 extra field (id 1) of a central entry: fields appear only for the 32-bit values
 * that are saturated, in the order usize, csize, local offset. */
static mer_status central_zip64(const mer_zip *z, const uint8_t *x, size_t xlen, uint64_t xoff, mer_zip_entry *e,
                                 int need_u, int need_c, int need_o, mer_err *err) {
    size_t i = 0;
    while (i + 4 <= xlen) {
        uint16_t id = rd16(x + i), len = rd16(x + i + 2);
        if (len > xlen - i - 4) return ferr(z, err, MER_E_FORMAT, xoff + i, "extra field overruns its entry");
        if (id == 1) {
            const uint8_t *p = x + i + 4;
            size_t left = len;
            if (need_u) {
                if (left < 8) return ferr(z, err, MER_E_FORMAT, xoff + i, "zip64 extra field too short");
                e->usize = rd64(p), p += 8, left -= 8;
            }
            if (need_c) {
                if (left < 8) return ferr(z, err, MER_E_FORMAT, xoff + i, "zip64 extra field too short");
                e->csize = rd64(p), p += 8, left -= 8;
            }
            if (need_o) {
                if (left < 8) return ferr(z, err, MER_E_FORMAT, xoff + i, "zip64 extra field too short");
                e->local_off = rd64(p);
            }
            return MER_OK;
        }
        i += 4 + (size_t)len;
    }
    if (need_u || need_c || need_o)
        return ferr(z, err, MER_E_FORMAT, xoff, "saturated size or offset without a zip64 extra field");
    return MER_OK;
}

static mer_status open_common(mer_zip *z, mer_err *err) {
    mer_status st;
    size_t eocd = 0;
    if ((st = find_eocd(z, &eocd, err))) return st;
    const uint8_t *r = z->data + eocd;
    uint64_t n_ent = rd16(r + 10), cd_size = rd32(r + 12), cd_off = rd32(r + 16);
    if (rd16(r + 4) != 0 || rd16(r + 6) != 0) return ferr(z, err, MER_E_UNSUPPORTED, eocd, "multi-disk archive");
    uint64_t dir_end = eocd; /* where the central directory should end */
    if (eocd >= 20 && rd32(z->data + eocd - 20) == SIG_LOC64) {
        uint64_t loc = eocd - 20, r64 = rd64(z->data + loc + 8);
        if (!in_range(r64, 56, z->size) || rd32(z->data + r64) != SIG_EOCD64)
            return ferr(z, err, MER_E_FORMAT, loc, "zip64 locator points outside the archive or to a bad record");
        const uint8_t *q = z->data + r64;
        n_ent = rd64(q + 32);
        cd_size = rd64(q + 40);
        cd_off = rd64(q + 48);
        dir_end = r64;
    }
    /* bytes prepended to the archive (as Python's zipfile tolerates): shift every offset */
    if (cd_size > dir_end || cd_off > dir_end - cd_size)
        return ferr(z, err, MER_E_FORMAT, eocd, "central directory lies outside the archive (truncated?)");
    uint64_t concat = dir_end - cd_size - cd_off;
    cd_off += concat;
    if (n_ent > cd_size / 46) return ferr(z, err, MER_E_FORMAT, eocd, "entry count does not fit the central directory");
    z->entries = calloc(n_ent ? (size_t)n_ent : 1, sizeof *z->entries);
    z->sorted = malloc((n_ent ? (size_t)n_ent : 1) * 2 * sizeof *z->sorted);
    if (!z->entries || !z->sorted) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", z->path);
    uint64_t p = cd_off, end = cd_off + cd_size;
    for (size_t k = 0; k < n_ent; k++) {
        if (!in_range(p, 46, (size_t)end) || rd32(z->data + p) != SIG_CENTRAL)
            return ferr(z, err, MER_E_FORMAT, p, "bad central directory entry signature");
        const uint8_t *c = z->data + p;
        mer_zip_entry *e = &z->entries[k];
        uint16_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
        if (!in_range(p + 46, (uint64_t)nlen + xlen + clen, (size_t)end))
            return ferr(z, err, MER_E_FORMAT, p, "central directory entry overruns the directory");
        e->flags = rd16(c + 8);
        e->method = rd16(c + 10);
        e->crc = rd32(c + 16);
        e->csize = rd32(c + 20);
        e->usize = rd32(c + 24);
        e->local_off = rd32(c + 42);
        if (memchr(c + 46, 0, nlen)) return ferr(z, err, MER_E_FORMAT, p + 46, "entry name contains a NUL byte");
        e->name = mer__strndup((const char *)c + 46, nlen);
        if (!e->name) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", z->path);
        e->name_len = nlen;
        z->n = k + 1;
        if ((st = central_zip64(z, c + 46 + nlen, xlen, p + 46 + nlen, e, e->usize == 0xFFFFFFFFu,
                                e->csize == 0xFFFFFFFFu, e->local_off == 0xFFFFFFFFu, err)))
            return st;
        if (e->local_off > UINT64_MAX - concat) return ferr(z, err, MER_E_FORMAT, p, "local header offset overflows");
        e->local_off += concat;
        /* resolve the local header now so that every later access is inside the buffer */
        uint64_t lo = e->local_off;
        if (!in_range(lo, 30, z->size) || rd32(z->data + lo) != SIG_LOCAL)
            return ferr(z, err, MER_E_FORMAT, lo, "bad local header signature (truncated or corrupt)");
        const uint8_t *l = z->data + lo;
        uint16_t lnlen = rd16(l + 26), lxlen = rd16(l + 28);
        if (!in_range(lo + 30, (uint64_t)lnlen + lxlen, z->size))
            return ferr(z, err, MER_E_FORMAT, lo, "local header overruns the archive");
        if (lnlen != nlen || memcmp(l + 30, e->name, nlen) != 0)
            return ferr(z, err, MER_E_FORMAT, lo, "local header name differs from the central directory");
        e->data_off = lo + 30 + lnlen + lxlen;
        if (!in_range(e->data_off, e->csize, z->size))
            return ferr(z, err, MER_E_FORMAT, e->data_off, "entry data runs past the end of the archive (truncated?)");
        p += 46 + (uint64_t)nlen + xlen + clen;
    }
    for (size_t k = 0; k < z->n; k++) z->sorted[k] = k;
    sort_idx(z, z->sorted, z->sorted + z->n, z->n);
    for (size_t k = 1; k < z->n; k++)
        if (strcmp(z->entries[z->sorted[k]].name, z->entries[z->sorted[k - 1]].name) == 0)
            return mer__errf(err, MER_E_FORMAT, "%s: duplicate entry '%s' in the central directory", z->path,
                             z->entries[z->sorted[k]].name);
    return MER_OK;
}

mer_status mer__zip_open_mem(const char *name, const uint8_t *data, size_t size, mer_zip *z, mer_err *err) {
    memset(z, 0, sizeof *z);
    z->path = strdup(name ? name : "<memory>");
    if (!z->path) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", name ? name : "<memory>");
    z->data = data;
    z->size = size;
    mer_status st = open_common(z, err);
    if (st) mer__zip_close(z);
    return st;
}

mer_status mer__zip_open(const char *path, mer_zip *z, mer_err *err) {
    memset(z, 0, sizeof *z);
    mer_map m;
    mer_status st = mer__map_open(path, &m, err);
    if (st) return st;
    st = mer__zip_open_mem(path, m.data, m.size, z, err);
    if (st) {
        mer__map_close(&m);
        return st;
    }
    z->map = m;
    return MER_OK;
}

void mer__zip_close(mer_zip *z) {
    if (!z) return;
    for (size_t k = 0; k < z->n; k++) free(z->entries[k].name);
    free(z->entries);
    free(z->sorted);
    free(z->path);
    mer__map_close(&z->map);
    memset(z, 0, sizeof *z);
}

const mer_zip_entry *mer__zip_find(const mer_zip *z, const char *name) {
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(z->entries[z->sorted[mid]].name, name);
        if (c == 0) return &z->entries[z->sorted[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* zlib's crc32 takes uInt lengths: feed it in chunks */
static uint32_t crc_of(const uint8_t *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

static mer_status check_entry(const mer_zip *z, const mer_zip_entry *e, mer_err *err) {
    if (e->flags & 1) return ferr(z, err, MER_E_UNSUPPORTED, e->local_off, "encrypted entry");
    if (e->method != 0 && e->method != 8) {
        char what[160];
        snprintf(what, sizeof what, "entry '%.40s' uses compression method %u (only stored and deflate)", e->name,
                 e->method);
        return ferr(z, err, MER_E_UNSUPPORTED, e->local_off, what);
    }
    if (e->method == 0 && e->csize != e->usize)
        return ferr(z, err, MER_E_FORMAT, e->local_off, "stored entry with different compressed and plain sizes");
    if (e->usize > SIZE_MAX - 1) return ferr(z, err, MER_E_RANGE, e->local_off, "entry too large for this machine");
    return MER_OK;
}

static mer_status crc_fail(const mer_zip *z, const mer_zip_entry *e, uint32_t got, mer_err *err) {
    return mer__errf(err, MER_E_FORMAT, "%s: CRC-32 mismatch in entry '%s' (data at offset %llu: %08x, expected %08x)",
                     z->path, e->name, (unsigned long long)e->data_off, got, e->crc);
}

mer_status mer__zip_view(const mer_zip *z, const mer_zip_entry *e, int verify_crc, const uint8_t **p, size_t *n,
                         mer_err *err) {
    mer_status st = check_entry(z, e, err);
    if (st) return st;
    if (e->method != 0) return ferr(z, err, MER_E_UNSUPPORTED, e->local_off, "entry is compressed (no zero-copy view)");
    const uint8_t *d = z->data + e->data_off;
    if (verify_crc) {
        uint32_t c = crc_of(d, (size_t)e->usize);
        if (c != e->crc) return crc_fail(z, e, c, err);
    }
    *p = d;
    *n = (size_t)e->usize;
    return MER_OK;
}

mer_status mer__zip_read(const mer_zip *z, const mer_zip_entry *e, uint8_t **out, size_t *n, mer_err *err) {
    *out = NULL;
    *n = 0;
    mer_status st = check_entry(z, e, err);
    if (st) return st;
    const uint8_t *src = z->data + e->data_off;
    size_t usize = (size_t)e->usize;
    uint8_t *buf = NULL;
    if (e->method == 0) {
        buf = malloc(usize + 1);
        if (!buf) return mer__errf(err, MER_E_NOMEM, "%s: out of memory reading '%s'", z->path, e->name);
        if (usize) memcpy(buf, src, usize);
    } else {
        /* grow with the data actually produced, never beyond usize (+1 byte to detect overlong data) */
        size_t cap = usize < (size_t)e->csize * 4 + 65536 ? usize : (size_t)e->csize * 4 + 65536;
        buf = malloc(cap + 1);
        if (!buf) return mer__errf(err, MER_E_NOMEM, "%s: out of memory reading '%s'", z->path, e->name);
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, -15) != Z_OK) {
            free(buf);
            return mer__errf(err, MER_E_NOMEM, "%s: zlib init failed", z->path);
        }
        size_t in_left = (size_t)e->csize, got = 0;
        const uint8_t *in = src;
        int zr = Z_OK;
        for (;;) {
            if (got == cap && cap < usize) {
                size_t ncap = cap > usize / 2 ? usize : cap * 2;
                uint8_t *nb = realloc(buf, ncap + 1);
                if (!nb) {
                    inflateEnd(&zs);
                    free(buf);
                    return mer__errf(err, MER_E_NOMEM, "%s: out of memory reading '%s'", z->path, e->name);
                }
                buf = nb;
                cap = ncap;
            }
            /* one spare byte past usize catches streams that inflate to more than declared */
            size_t room = cap - got + (cap == usize ? 1 : 0);
            uInt ro = room > (1u << 30) ? (1u << 30) : (uInt)room;
            uInt ri = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            zs.next_in = (Bytef *)in;
            zs.avail_in = ri;
            zs.next_out = buf + got;
            zs.avail_out = ro;
            zr = inflate(&zs, Z_NO_FLUSH);
            size_t used_in = ri - zs.avail_in, made = ro - zs.avail_out;
            in += used_in;
            in_left -= used_in;
            got += made;
            if (zr == Z_STREAM_END) break;
            if (got > usize) break;
            if (zr == Z_OK && (made || used_in)) continue;
            if (zr == Z_BUF_ERROR && got == cap && cap < usize) continue;
            break;
        }
        inflateEnd(&zs);
        if (zr != Z_STREAM_END || got != usize) {
            uint64_t at = e->data_off + (e->csize - in_left);
            free(buf);
            char what[160];
            if (zr == Z_STREAM_END || got > usize)
                snprintf(what, sizeof what, "entry '%.60s' inflates to a size other than the declared %llu", e->name,
                         (unsigned long long)usize);
            else
                snprintf(what, sizeof what, "corrupt or truncated deflate data in entry '%.60s'%s%s", e->name,
                         zs.msg ? ": " : "", zs.msg ? zs.msg : "");
            return ferr(z, err, MER_E_FORMAT, at, what);
        }
    }
    buf[usize] = 0;
    uint32_t c = crc_of(buf, usize);
    if (c != e->crc) {
        free(buf);
        return crc_fail(z, e, c, err);
    }
    *out = buf;
    *n = usize;
    return MER_OK;
}

// --- writer ------------------------------------------------------------------------------------------

static mer_status put16(mer_buf *b, uint16_t v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    return mer__buf_append(b, x, 2);
}
static mer_status put32(mer_buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return mer__buf_append(b, x, 4);
}
static mer_status put64(mer_buf *b, uint64_t v) {
    mer_status st = put32(b, (uint32_t)v);
    return st ? st : put32(b, (uint32_t)(v >> 32));
}

#define ZIP64_LIMIT 0x7FFFFFFFull /* (1 << 31) - 1, as CPython's zipfile */

void mer__zipw_init(mer_zip_writer *w) {
    memset(w, 0, sizeof *w);
    w->dos_time = 0;
    w->dos_date = (0 << 9) | (1 << 5) | 1;
}

void mer__zipw_free(mer_zip_writer *w) {
    if (!w) return;
    for (size_t k = 0; k < w->n; k++) free(w->entries[k].name);
    free(w->entries);
    mer__buf_free(&w->out);
    memset(w, 0, sizeof *w);
}

static mer_status deflate_raw(const void *data, size_t n, uint8_t **out, size_t *on) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) return MER_E_NOMEM;
    size_t cap = (size_t)deflateBound(&zs, (uLong)(n > ULONG_MAX ? ULONG_MAX : n)) + 64;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        deflateEnd(&zs);
        return MER_E_NOMEM;
    }
    const uint8_t *in = data;
    size_t left = n, got = 0;
    int zr;
    do {
        uInt ri = left > (1u << 30) ? (1u << 30) : (uInt)left;
        if (got == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                deflateEnd(&zs);
                return MER_E_NOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        size_t room = cap - got;
        uInt ro = room > (1u << 30) ? (1u << 30) : (uInt)room;
        zs.next_in = (Bytef *)in;
        zs.avail_in = ri;
        zs.next_out = buf + got;
        zs.avail_out = ro;
        zr = deflate(&zs, left == ri ? Z_FINISH : Z_NO_FLUSH);
        in += ri - zs.avail_in;
        left -= ri - zs.avail_in;
        got += ro - zs.avail_out;
    } while (zr != Z_STREAM_END && (zr == Z_OK || zr == Z_BUF_ERROR));
    deflateEnd(&zs);
    if (zr != Z_STREAM_END) {
        free(buf);
        return MER_E_INTERNAL;
    }
    *out = buf;
    *on = got;
    return MER_OK;
}

static int is_ascii(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 0;
    return 1;
}

mer_status mer__zipw_add(mer_zip_writer *w, const char *name, const void *data, size_t n, int method, int zip64_local,
                         mer_err *err) {
    MER_ASSERT(!w->finished && (method == 0 || method == 8));
    mer_status st = MER_OK;
    uint8_t *cdata = NULL;
    size_t cn = n;
    size_t nlen = strlen(name);
    if (nlen > 0xFFFF) return mer__errf(err, MER_E_ARG, "zip entry name too long (%zu bytes)", nlen);
    if (method == 8) {
        st = deflate_raw(data, n, &cdata, &cn);
        if (st) return mer__errf(err, st, "deflate of '%s' failed", name);
    }
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 8;
        mer_zipw_entry *ne = realloc(w->entries, nc * sizeof *ne);
        if (!ne) {
            st = mer__errf(err, MER_E_NOMEM, "out of memory");
            goto fail;
        }
        w->entries = ne;
        w->cap = nc;
    }
    mer_zipw_entry *e = &w->entries[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    e->method = (uint16_t)method;
    e->flags = is_ascii(name) ? 0 : 0x800;
    e->crc = crc_of(data, n);
    e->csize = cn;
    e->usize = n;
    e->local_off = w->out.len;
    int big = e->usize > ZIP64_LIMIT || e->csize > ZIP64_LIMIT;
    int z64 = zip64_local || big;
    mer_buf *b = &w->out;
    st = put32(b, SIG_LOCAL);
    if (!st) st = put16(b, big ? 45 : 20);
    if (!st) st = put16(b, e->flags);
    if (!st) st = put16(b, e->method);
    if (!st) st = put16(b, w->dos_time);
    if (!st) st = put16(b, w->dos_date);
    if (!st) st = put32(b, e->crc);
    if (!st) st = put32(b, big ? 0xFFFFFFFFu : (uint32_t)e->csize);
    if (!st) st = put32(b, big ? 0xFFFFFFFFu : (uint32_t)e->usize);
    if (!st) st = put16(b, (uint16_t)nlen);
    if (!st) st = put16(b, z64 ? 20 : 0);
    if (!st) st = mer__buf_append(b, name, nlen);
    if (!st && z64) {
        st = put16(b, 1);
        if (!st) st = put16(b, 16);
        if (!st) st = put64(b, e->usize);
        if (!st) st = put64(b, e->csize);
    }
    if (!st) st = mer__buf_append(b, method == 8 ? (const void *)cdata : data, cn);
    if (st) {
        free(e->name);
        st = mer__errf(err, MER_E_NOMEM, "out of memory writing zip entry '%s'", name);
        goto fail;
    }
    w->n++;
fail:
    free(cdata);
    return st;
}

mer_status mer__zipw_finish(mer_zip_writer *w, mer_err *err) {
    MER_ASSERT(!w->finished);
    mer_buf *b = &w->out;
    uint64_t cd_off = b->len;
    mer_status st = MER_OK;
    for (size_t k = 0; k < w->n && !st; k++) {
        const mer_zipw_entry *e = &w->entries[k];
        uint64_t x[3];
        int nx = 0;
        int bigsz = e->usize > ZIP64_LIMIT || e->csize > ZIP64_LIMIT;
        if (bigsz) x[nx++] = e->usize, x[nx++] = e->csize;
        int bigoff = e->local_off > ZIP64_LIMIT;
        if (bigoff) x[nx++] = e->local_off;
        uint16_t ver = nx ? 45 : 20;
        size_t nlen = strlen(e->name);
        st = put32(b, SIG_CENTRAL);
        if (!st) st = put16(b, (uint16_t)(ver | (3 << 8))); /* made by: unix */
        if (!st) st = put16(b, ver);
        if (!st) st = put16(b, e->flags);
        if (!st) st = put16(b, e->method);
        if (!st) st = put16(b, w->dos_time);
        if (!st) st = put16(b, w->dos_date);
        if (!st) st = put32(b, e->crc);
        if (!st) st = put32(b, bigsz ? 0xFFFFFFFFu : (uint32_t)e->csize);
        if (!st) st = put32(b, bigsz ? 0xFFFFFFFFu : (uint32_t)e->usize);
        if (!st) st = put16(b, (uint16_t)nlen);
        if (!st) st = put16(b, (uint16_t)(nx ? 4 + 8 * nx : 0));
        if (!st) st = put16(b, 0); /* comment */
        if (!st) st = put16(b, 0); /* disk */
        if (!st) st = put16(b, 0); /* internal attributes */
        if (!st) st = put32(b, 0600u << 16);
        if (!st) st = put32(b, bigoff ? 0xFFFFFFFFu : (uint32_t)e->local_off);
        if (!st) st = mer__buf_append(b, e->name, nlen);
        if (!st && nx) {
            st = put16(b, 1);
            if (!st) st = put16(b, (uint16_t)(8 * nx));
            for (int i = 0; i < nx && !st; i++) st = put64(b, x[i]);
        }
    }
    uint64_t cd_size = b->len - cd_off;
    uint64_t pos2 = b->len;
    if (!st && (w->n > 0xFFFF || cd_off > ZIP64_LIMIT || cd_size > ZIP64_LIMIT)) {
        st = put32(b, SIG_EOCD64);
        if (!st) st = put64(b, 44);
        if (!st) st = put16(b, 45);
        if (!st) st = put16(b, 45);
        if (!st) st = put32(b, 0);
        if (!st) st = put32(b, 0);
        if (!st) st = put64(b, w->n);
        if (!st) st = put64(b, w->n);
        if (!st) st = put64(b, cd_size);
        if (!st) st = put64(b, cd_off);
        if (!st) st = put32(b, SIG_LOC64);
        if (!st) st = put32(b, 0);
        if (!st) st = put64(b, pos2);
        if (!st) st = put32(b, 1);
    }
    if (!st) st = put32(b, SIG_EOCD);
    if (!st) st = put16(b, 0);
    if (!st) st = put16(b, 0);
    if (!st) st = put16(b, (uint16_t)(w->n > 0xFFFF ? 0xFFFF : w->n));
    if (!st) st = put16(b, (uint16_t)(w->n > 0xFFFF ? 0xFFFF : w->n));
    if (!st) st = put32(b, (uint32_t)(cd_size > 0xFFFFFFFFu ? 0xFFFFFFFFu : cd_size));
    if (!st) st = put32(b, (uint32_t)(cd_off > 0xFFFFFFFFu ? 0xFFFFFFFFu : cd_off));
    if (!st) st = put16(b, 0);
    if (st) return mer__errf(err, MER_E_NOMEM, "out of memory finishing a zip archive");
    w->finished = 1;
    return MER_OK;
}
