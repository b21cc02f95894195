/* core.h - internal utilities shared by every module: error reporting, checked arithmetic, growable
 * buffers, whole-file mapping and atomic file writes, UTF-8 checks. Not part of the public API. */
#ifndef MER_CORE_H
#define MER_CORE_H

#include "mer.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// --- assertions (programmer errors only; stay on in release builds) ----------------------------------

#define MER_ASSERT(c)                                                                              \
    do {                                                                                           \
        if (!(c)) mer__assert_fail(#c, __FILE__, __LINE__);                                        \
    } while (0)
_Noreturn void mer__assert_fail(const char *expr, const char *file, int line);

#define MER_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

// --- errors ------------------------------------------------------------------------------------------

/* Formats a one-line message into err (if non-NULL) and returns st. Newlines become spaces. */
mer_status mer__errf(mer_err *err, mer_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
mer_status mer__verrf(mer_err *err, mer_status st, const char *fmt, va_list ap);
/* Prefixes an existing message: "<prefix>: <old message>". Returns err->status (or st if err NULL). */
mer_status mer__err_prefix(mer_err *err, mer_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// --- checked arithmetic ------------------------------------------------------------------------------

static inline bool mer__add_ovf(size_t a, size_t b, size_t *r) { return __builtin_add_overflow(a, b, r); }
static inline bool mer__mul_ovf(size_t a, size_t b, size_t *r) { return __builtin_mul_overflow(a, b, r); }

// --- growable byte buffer ----------------------------------------------------------------------------

typedef struct mer_buf {
    char *data; /* always NUL-terminated when non-NULL (the NUL is not counted in len) */
    size_t len;
    size_t cap;
} mer_buf;

mer_status mer__buf_reserve(mer_buf *b, size_t extra);
mer_status mer__buf_append(mer_buf *b, const void *p, size_t n);
mer_status mer__buf_putc(mer_buf *b, char c);
mer_status mer__buf_printf(mer_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mer__buf_free(mer_buf *b);

// --- files -------------------------------------------------------------------------------------------

/* A read-only view of a whole file: mmapped when possible (size > 0), else empty. */
typedef struct mer_map {
    const uint8_t *data;
    size_t size;
    int mapped; /* internal */
} mer_map;

/* Maps `path` read-only. On failure returns MER_E_IO with "<path>: <strerror>" in err. */
mer_status mer__map_open(const char *path, mer_map *m, mer_err *err);
void mer__map_close(mer_map *m);

/* Writes `n` bytes to `path` atomically: to "<path>.tmp.<pid>", fsync, rename. */
mer_status mer__write_file_atomic(const char *path, const void *data, size_t n, mer_err *err);

/* Returns 1 if `path` exists and is a directory. */
int mer__is_dir(const char *path);

// --- text --------------------------------------------------------------------------------------------

/* Returns the byte offset of the first invalid UTF-8 sequence in s[0..n), or n when all is valid
 * (overlongs, surrogates and code points above U+10FFFF are invalid). */
size_t mer__utf8_check(const uint8_t *s, size_t n);

/* Decodes one code point at s (valid UTF-8 assumed, n > 0); returns its length in bytes. */
int mer__utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Encodes cp into out (4 bytes room); returns the length. */
int mer__utf8_encode(uint32_t cp, char *out);

/* Python's str.isspace() for one code point. */
bool mer__py_isspace(uint32_t cp);

/* strdup that reports MER_E_NOMEM through err. */
char *mer__strndup(const char *s, size_t n);

#endif /* MER_CORE_H */
