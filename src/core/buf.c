/* buf.c - a growable, always NUL-terminated byte buffer, and small string helpers. */
#include "core/core.h"

#include <string.h>

mer_status mer__buf_reserve(mer_buf *b, size_t extra) {
    size_t need;
    if (mer__add_ovf(b->len, extra, &need) || mer__add_ovf(need, 1, &need)) return MER_E_NOMEM;
    if (need <= b->cap) return MER_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) { cap = need; break; }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) return MER_E_NOMEM;
    b->data = p;
    b->cap = cap;
    return MER_OK;
}

mer_status mer__buf_append(mer_buf *b, const void *p, size_t n) {
    mer_status st = mer__buf_reserve(b, n);
    if (st) return st;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return MER_OK;
}

mer_status mer__buf_putc(mer_buf *b, char c) { return mer__buf_append(b, &c, 1); }

mer_status mer__buf_printf(mer_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return MER_E_INTERNAL;
    mer_status st = mer__buf_reserve(b, (size_t)n);
    if (st) return st;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return MER_OK;
}

void mer__buf_free(mer_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *mer__strndup(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}
