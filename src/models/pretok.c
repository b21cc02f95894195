/* pretok.c - Qwen2's pre-tokenizer regex, implemented by hand, and the GPT-2 byte-level alphabet.
 *
 * The pattern (MER_QWEN2_PRETOK_REGEX) is tried at the current position one alternative at a time, in
 * order, each with the greedy-then-backtrack result a regex engine gives; the first alternative that
 * matches ends the piece. Character classes come from utf8proc's Unicode tables (general categories L*
 * and N*) and the White_Space property, which is what Oniguruma's \s means and Hugging Face tokenizers
 * uses. (transformers.js runs the pattern through JavaScript's RegExp, whose \s differs on two code
 * points: it has U+FEFF and lacks U+0085; and its contraction group matches ASCII letters only.) */
#include "models/tokenizer.h"

#include <utf8proc.h>

// --- character classes -------------------------------------------------------------------------------

enum { C_L = 1, C_N = 2, C_S = 4, C_NL = 8 }; /* letter, number, white space, \r or \n */

static int is_white_space(uint32_t cp) {
    /* Unicode White_Space (PropList.txt) */
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

static unsigned class_of(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return C_L;
        if (cp >= '0' && cp <= '9') return C_N;
        if (cp == '\r' || cp == '\n') return C_S | C_NL;
        return is_white_space(cp) ? C_S : 0;
    }
    if (is_white_space(cp)) return C_S;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        return C_L;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return C_N;
    default:
        return 0;
    }
}

/* Class and byte length of the character at s[i] (i < n). */
static unsigned char_at(const uint8_t *s, size_t n, size_t i, size_t *len) {
    uint8_t c = s[i];
    if (c < 0x80) {
        *len = 1;
        return class_of(c);
    }
    uint32_t cp;
    *len = (size_t)mer__utf8_decode(s + i, n - i, &cp);
    return class_of(cp);
}

/* Code point at s[i] (i < n); its length in *len. */
static uint32_t cp_at(const uint8_t *s, size_t n, size_t i, size_t *len) {
    uint32_t cp;
    *len = (size_t)mer__utf8_decode(s + i, n - i, &cp);
    return cp;
}

/* Whether the code point folds to ASCII letter `lower` under Unicode simple case folding. */
static int folds_to(uint32_t cp, char lower) {
    if (cp < 0x80) return (char)(cp | 0x20) == lower && ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
    return lower == 's' && cp == 0x17F; /* LATIN SMALL LETTER LONG S; no other fold reaches t r e v m l d */
}

// --- the alternatives ----------------------------------------------------------------------------------

/* (?i:'s|'t|'re|'ve|'m|'ll|'d) at i, where s[i] == '\''; returns the end or 0. */
static size_t alt_contraction(const uint8_t *s, size_t n, size_t i) {
    size_t j = i + 1, l1, l2;
    if (j >= n) return 0;
    uint32_t c1 = cp_at(s, n, j, &l1);
    if (folds_to(c1, 's') || folds_to(c1, 't') || folds_to(c1, 'm') || folds_to(c1, 'd')) return j + l1;
    if (j + l1 >= n) return 0;
    uint32_t c2 = cp_at(s, n, j + l1, &l2);
    if ((folds_to(c1, 'r') || folds_to(c1, 'v')) && folds_to(c2, 'e')) return j + l1 + l2;
    if (folds_to(c1, 'l') && folds_to(c2, 'l')) return j + l1 + l2;
    return 0;
}

/* End of the run of characters whose class has any bit of `want`, starting at j. */
static size_t run_of(const uint8_t *s, size_t n, size_t j, unsigned want) {
    while (j < n) {
        size_t l;
        if (!(char_at(s, n, j, &l) & want)) break;
        j += l;
    }
    return j;
}

/* End of the run of "other" characters (not \s, \p{L}, \p{N}) starting at j. */
static size_t run_of_other(const uint8_t *s, size_t n, size_t j) {
    while (j < n) {
        size_t l;
        if (char_at(s, n, j, &l) & (C_L | C_N | C_S)) break;
        j += l;
    }
    return j;
}

size_t mer__pretok_qwen2_next(const uint8_t *s, size_t n) {
    MER_ASSERT(n > 0);
    size_t l0, l1 = 0;
    unsigned c0 = char_at(s, n, 0, &l0);
    unsigned c1 = l0 < n ? char_at(s, n, l0, &l1) : ~0u; /* ~0u: no next character */
    int has1 = l0 < n;

    /* 1. (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (s[0] == '\'') {
        size_t e = alt_contraction(s, n, 0);
        if (e) return e;
    }
    /* 2. [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c0 & C_L) return run_of(s, n, l0, C_L);
    if (!(c0 & (C_NL | C_N)) && has1 && (c1 & C_L)) return run_of(s, n, l0 + l1, C_L);
    /* 3. \p{N} */
    if (c0 & C_N) return l0;
    /* 4. ' '?[^\s\p{L}\p{N}]+[\r\n]* */
    if (s[0] == ' ' && has1 && !(c1 & (C_L | C_N | C_S))) {
        size_t e = run_of_other(s, n, l0);
        return run_of(s, n, e, C_NL);
    }
    if (!(c0 & (C_L | C_N | C_S))) {
        size_t e = run_of_other(s, n, 0);
        return run_of(s, n, e, C_NL);
    }
    /* c0 is white space from here on. */
    size_t j = 0, last_nl_end = 0, last_start = 0, n_chars = 0;
    while (j < n) {
        size_t l;
        unsigned c = char_at(s, n, j, &l);
        if (!(c & C_S)) break;
        if (c & C_NL) last_nl_end = j + l;
        last_start = j;
        n_chars++;
        j += l;
    }
    /* 5. \s*[\r\n]+ : the white-space run up to and including its last \r or \n */
    if (last_nl_end) return last_nl_end;
    /* 6. \s+(?!\S) : the whole run at the end of the text, else the run less its last character */
    if (j == n) return j;
    if (n_chars >= 2) return last_start;
    /* 7. \s+ */
    return j;
}

// --- byte-level alphabet -----------------------------------------------------------------------------

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes for
 * U+0100 + their rank among those bytes: 0x00-0x20 are ranks 0-32, 0x7F-0xA0 ranks 33-66, 0xAD rank 67. */
static int byte_is_printable(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

uint32_t mer__bytelevel_char(uint8_t b) {
    if (byte_is_printable(b)) return b;
    if (b <= 0x20) return 0x100u + b;
    if (b <= 0xA0) return 0x100u + 33 + (b - 0x7Fu);
    return 0x100u + 67; /* 0xAD */
}

int mer__bytelevel_byte(uint32_t cp) {
    if (cp < 0x100) return byte_is_printable(cp) ? (int)cp : -1;
    uint32_t k = cp - 0x100;
    if (k <= 32) return (int)k;
    if (k <= 66) return (int)(0x7F + k - 33);
    return k == 67 ? 0xAD : -1;
}
