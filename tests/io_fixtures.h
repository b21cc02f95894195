/* io_fixtures.h - helpers shared by test_npz.c, test_pickle.c and test_torch.c: reading whole files,
 * iterating the lines of tests/fixtures/io/expected.txt (written by scripts/make_io_fixtures.py from
 * numpy / pickle / torch) as space-separated fields, and hex-decoding the strings stored there. */
#ifndef MER_TEST_IO_FIXTURES_H
#define MER_TEST_IO_FIXTURES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IO_FIX FIXTURES "/io"

/* Whole file into a malloc'd buffer (+ NUL); NULL if unreadable. */
static inline uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[sz] = 0;
    if (n) *n = (size_t)sz;
    return b;
}

static inline int spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

/* Splits a line (modified in place) into at most max fields; returns the count. */
static inline int fields(char *line, char **f, int max) {
    int n = 0;
    for (char *p = strtok(line, " \n"); p && n < max; p = strtok(NULL, " \n")) f[n++] = p;
    return n;
}

/* Hex (or "-" for empty) to a malloc'd NUL-terminated string. */
static inline char *unhex(const char *h, size_t *len) {
    if (strcmp(h, "-") == 0) h = "";
    size_t n = strlen(h) / 2;
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        s[i] = (char)v;
    }
    s[n] = 0;
    if (len) *len = n;
    return s;
}

/* The expected.txt lines, as an array of malloc'd strings (one allocation each). */
typedef struct exp_lines {
    char **line;
    size_t n;
} exp_lines;

static inline exp_lines load_expected(void) {
    exp_lines e = {0};
    size_t n;
    char *all = (char *)slurp(IO_FIX "/expected.txt", &n);
    if (!all) return e;
    size_t cap = 0;
    for (char *p = all; *p;) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (e.n == cap) {
            cap = cap ? cap * 2 : 64;
            e.line = realloc(e.line, cap * sizeof *e.line);
        }
        e.line[e.n] = malloc(l + 1);
        memcpy(e.line[e.n], p, l);
        e.line[e.n][l] = 0;
        e.n++;
        p += l + (nl ? 1 : 0);
    }
    free(all);
    return e;
}

static inline void free_expected(exp_lines *e) {
    for (size_t i = 0; i < e->n; i++) free(e->line[i]);
    free(e->line);
}

/* 1 when /usr/bin/python3 with numpy can run (for round trips through the reference). */
static inline int have_numpy(void) { return system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0; }

#endif
