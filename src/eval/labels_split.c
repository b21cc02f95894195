/* labels_split.c - the reference's `string_to_list` and Python's lower()/strip() on UTF-8 text. */
#include "mer.h"
#include "eval/eval.h"

#include <string.h>
#include <utf8proc.h>

void mer__py_strip_bounds(const char *s, size_t len, size_t *start, size_t *end) {
    const uint8_t *u = (const uint8_t *)s;
    size_t a = 0, b = len;
    /* fast path: ASCII non-space at both ends */
    if (len && u[0] < 0x80 && u[len - 1] < 0x80 && u[0] > ' ' && u[len - 1] > ' ' && u[0] != 0x7f) {
        *start = 0;
        *end = len;
        return;
    }
    while (a < b) {
        uint32_t cp;
        int k = mer__utf8_decode(u + a, b - a, &cp);
        if (!mer__py_isspace(cp)) break;
        a += (size_t)k;
    }
    while (b > a) {
        size_t p = b - 1;
        while (p > a && (u[p] & 0xC0) == 0x80) p--; /* start of the last code point */
        uint32_t cp;
        mer__utf8_decode(u + p, b - p, &cp);
        if (!mer__py_isspace(cp)) break;
        b = p;
    }
    *start = a;
    *end = b;
}

mer_status mer__py_lower_strip(const char *s, size_t len, mer_buf *b) {
    b->len = 0;
    size_t a, e;
    mer__py_strip_bounds(s, len, &a, &e);
    const uint8_t *u = (const uint8_t *)s;
    mer_status st = mer__buf_reserve(b, e - a + 8);
    if (st) return st;
    for (size_t i = a; i < e;) {
        if (u[i] < 0x80) { /* ASCII run: lower in place */
            size_t j = i;
            while (j < e && u[j] < 0x80) j++;
            if ((st = mer__buf_reserve(b, j - i))) return st;
            char *d = b->data + b->len;
            for (size_t k = i; k < j; k++) d[k - i] = (char)(u[k] >= 'A' && u[k] <= 'Z' ? u[k] + 32 : u[k]);
            b->len += j - i;
            b->data[b->len] = 0;
            i = j;
            continue;
        }
        uint32_t cp;
        int k = mer__utf8_decode(u + i, e - i, &cp);
        i += (size_t)k;
        char enc[8];
        int n;
        if (cp == 0x130) { /* SpecialCasing: LATIN CAPITAL LETTER I WITH DOT ABOVE -> i + U+0307 */
            n = mer__utf8_encode('i', enc);
            n += mer__utf8_encode(0x307, enc + n);
        } else {
            n = mer__utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), enc);
        }
        if ((st = mer__buf_append(b, enc, (size_t)n))) return st;
    }
    if (!b->data) return mer__buf_append(b, "", 0);
    return MER_OK;
}

size_t mer_labels_split(const char *s, void (*cb)(const char *item, size_t len, void *ud), void *ud) {
    size_t len = strlen(s), n = 0;
    if (len && s[0] == '[') { s++; len--; }
    if (len && s[len - 1] == ']') len--;
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && s[j] != '\'' && s[j] != '"' && s[j] != ',') j++;
        size_t a, e;
        mer__py_strip_bounds(s + i, j - i, &a, &e);
        if (e > a) { /* strip() not in ['', ','] — a stripped piece can never be ',' after the split */
            if (cb) cb(s + i + a, e - a, ud);
            n++;
        }
        i = j + 1;
    }
    return n;
}
