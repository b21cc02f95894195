/* wheel.c - loads the emotion wheels, the synonym table and the word-form table, and precomputes for
 * every known spelling its cluster on each of the 10 (wheel, level) metrics, exactly as the
 * reference's read_wheel_to_map / read_candidate_synonym_merge / read_format2raws /
 * func_backward_case3 chain does (spec §1.3-1.5). */
#include "mer.h"
#include "eval/eval.h"
#include "io/csv.h"

#include <string.h>

// --- small string containers ---------------------------------------------------------------------

typedef struct strvec {
    char **v;
    size_t n, cap;
} strvec;

static int sv_push(strvec *sv, const char *s, size_t len) {
    if (sv->n == sv->cap) {
        size_t cap = sv->cap ? sv->cap * 2 : 8;
        char **p = realloc(sv->v, cap * sizeof *p);
        if (!p) return -1;
        sv->v = p;
        sv->cap = cap;
    }
    if (!(sv->v[sv->n] = mer__strndup(s, len))) return -1;
    sv->n++;
    return 0;
}

static void sv_free(strvec *sv) {
    for (size_t i = 0; i < sv->n; i++) free(sv->v[i]);
    free(sv->v);
    memset(sv, 0, sizeof *sv);
}

/* A dict str -> list[str]: keys in a strmap giving an index into lists. */
typedef struct multimap {
    mer_strmap idx;
    strvec *lists;
    strvec keys; /* insertion order */
} multimap;

static int mm_add(multimap *m, const char *k, size_t klen, const char *v, size_t vlen) {
    int64_t *slot;
    int ins;
    if (mer__strmap_put(&m->idx, k, klen, (int64_t)m->keys.n, &slot, &ins)) return -1;
    if (ins) {
        if (sv_push(&m->keys, k, klen)) return -1;
        strvec *p = realloc(m->lists, m->keys.n * sizeof *p);
        if (!p) return -1;
        m->lists = p;
        memset(&m->lists[m->keys.n - 1], 0, sizeof *p);
    }
    return sv_push(&m->lists[*slot], v, vlen);
}

static const strvec *mm_get(const multimap *m, const char *k) {
    int64_t *i = mer__strmap_get(&m->idx, k, strlen(k));
    return i ? &m->lists[*i] : NULL;
}

static void mm_free(multimap *m) {
    for (size_t i = 0; i < m->keys.n; i++) sv_free(&m->lists[i]);
    free(m->lists);
    sv_free(&m->keys);
    mer__strmap_free(&m->idx);
}

/* A dict str -> str with overwrite, for the wheel maps. */
typedef struct strdict {
    mer_strmap idx;
    strvec vals;
} strdict;

static int sd_set(strdict *d, const char *k, const char *v) {
    int64_t *slot;
    int ins;
    if (mer__strmap_put(&d->idx, k, strlen(k), (int64_t)d->vals.n, &slot, &ins)) return -1;
    if (ins) return sv_push(&d->vals, v, strlen(v));
    char *c = strdup(v);
    if (!c) return -1;
    free(d->vals.v[*slot]);
    d->vals.v[*slot] = c;
    return 0;
}

static const char *sd_get(const strdict *d, const char *k) {
    int64_t *i = mer__strmap_get(&d->idx, k, strlen(k));
    return i ? d->vals.v[*i] : NULL;
}

static void sd_free(strdict *d) {
    sv_free(&d->vals);
    mer__strmap_free(&d->idx);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// --- building the tables ---------------------------------------------------------------------------

typedef struct split_ctx {
    strvec *out;
    int fail;
} split_ctx;

static void split_cb(const char *item, size_t len, void *ud) {
    split_ctx *c = ud;
    if (sv_push(c->out, item, len)) c->fail = 1;
}

/* The wheel maps of one wheel file for both levels (spec §1.4). */
static mer_status load_wheel(const char *dir, int w, strdict maps[MER_N_LEVELS], mer_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/wheel%d.csv", dir, w + 1);
    mer_csv c;
    mer_status st = mer__csv_read(path, &c, err);
    if (st) return st;
    long col[3] = {mer__csv_col(&c, "level1"), mer__csv_col(&c, "level2"), mer__csv_col(&c, "level3")};
    mer_buf b = {0};
    /* the nested map level1 -> level2 -> [level3] in insertion order, as flat parallel rows */
    strvec l1s = {0}, l2s = {0}, l3s = {0};
    char *cur[3] = {NULL, NULL, NULL};
    if (col[0] < 0 || col[1] < 0 || col[2] < 0) {
        st = mer__errf(err, MER_E_FORMAT, "%s:1: the header must have columns level1, level2, level3", path);
        goto fail;
    }
    for (size_t r = 0; r < c.n_rows; r++) {
        for (int k = 0; k < 3; k++) {
            const char *cell = mer__csv_cell(&c, r, (size_t)col[k]);
            if (!cell[0]) continue; /* merged cell: keep the value above */
            if ((st = mer__py_lower_strip(cell, strlen(cell), &b))) goto nomem;
            free(cur[k]);
            if (!(cur[k] = strdup(b.data))) goto nomem;
        }
        if (!cur[0] || !cur[1] || !cur[2]) {
            st = mer__errf(err, MER_E_FORMAT, "%s:%zu: a row before any level1/level2/level3 value", path, c.lines[r + 1]);
            goto fail;
        }
        if (sv_push(&l1s, cur[0], strlen(cur[0])) || sv_push(&l2s, cur[1], strlen(cur[1])) ||
            sv_push(&l3s, cur[2], strlen(cur[2])))
            goto nomem;
    }
    if (!l1s.n) {
        st = mer__errf(err, MER_E_FORMAT, "%s: no rows", path);
        goto fail;
    }
    /* Walk the nested dict in insertion order: each level1 group (first appearance), each level2 in
     * it (first appearance), each level3 under it. */
    for (size_t i = 0; i < l1s.n; i++) {
        size_t k;
        for (k = 0; k < i && strcmp(l1s.v[k], l1s.v[i]); k++) {}
        if (k < i) continue; /* level1 already walked */
        const char *a = l1s.v[i];
        const char *first_l2 = NULL;
        for (size_t j = 0; j < l1s.n; j++)
            if (!strcmp(l1s.v[j], a) && (!first_l2 || strcmp(l2s.v[j], first_l2) < 0)) first_l2 = l2s.v[j];
        if (sd_set(&maps[0], a, a) || sd_set(&maps[1], a, first_l2)) goto nomem;
        for (size_t j = 0; j < l1s.n; j++) {
            if (strcmp(l1s.v[j], a)) continue;
            size_t q;
            for (q = 0; q < j && (strcmp(l1s.v[q], a) || strcmp(l2s.v[q], l2s.v[j])); q++) {}
            if (q < j) continue; /* level2 already walked */
            const char *b2 = l2s.v[j];
            if (sd_set(&maps[0], b2, a) || sd_set(&maps[1], b2, b2)) goto nomem;
            for (size_t t = 0; t < l1s.n; t++)
                if (!strcmp(l1s.v[t], a) && !strcmp(l2s.v[t], b2))
                    if (sd_set(&maps[0], l3s.v[t], a) || sd_set(&maps[1], l3s.v[t], b2)) goto nomem;
        }
    }
    goto done;
nomem:
    st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
fail:
done:
    for (int k = 0; k < 3; k++) free(cur[k]);
    sv_free(&l1s); sv_free(&l2s); sv_free(&l3s);
    mer__buf_free(&b);
    mer__csv_free(&c);
    return st;
}

/* raw_mapping: synonym (lower) -> wheel words, merged over the 8 runs (spec §1.4). */
static mer_status load_synonyms(const char *dir, multimap *raw, mer_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/synonym.csv", dir);
    mer_csv c;
    mer_status st = mer__csv_read(path, &c, err);
    if (st) return st;
    mer_buf b = {0}, b2 = {0};
    strvec items = {0};
    for (int run = 1; run <= 8; run++) {
        char wn[32], sn[32];
        snprintf(wn, sizeof wn, "word_run%d", run);
        snprintf(sn, sizeof sn, "synonym_run%d", run);
        long jw = mer__csv_col(&c, wn), js = mer__csv_col(&c, sn);
        if (jw < 0 || js < 0) {
            st = mer__errf(err, MER_E_FORMAT, "%s:1: missing column '%s'", path, jw < 0 ? wn : sn);
            goto fail;
        }
        for (size_t r = 0; r < c.n_rows; r++) {
            const char *w = mer__csv_cell(&c, r, (size_t)jw);
            if (!w[0]) continue;
            if ((st = mer__py_lower_strip(w, strlen(w), &b))) goto nomem;
            if (mm_add(raw, b.data, b.len, b.data, b.len)) goto nomem;
            sv_free(&items);
            split_ctx sc = {&items, 0};
            mer_labels_split(mer__csv_cell(&c, r, (size_t)js), split_cb, &sc);
            if (sc.fail) goto nomem;
            for (size_t k = 0; k < items.n; k++) {
                if ((st = mer__py_lower_strip(items.v[k], strlen(items.v[k]), &b2))) goto nomem;
                if (mm_add(raw, b2.data, b2.len, b.data, b.len)) goto nomem;
            }
        }
    }
    goto done;
nomem:
    st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
fail:
done:
    sv_free(&items);
    mer__buf_free(&b);
    mer__buf_free(&b2);
    mer__csv_free(&c);
    return st;
}

/* format_mapping: word form -> base words (spec §1.4). Keys are used as written. */
static mer_status load_formats(const char *dir, multimap *fm, mer_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/format.csv", dir);
    mer_csv c;
    mer_status st = mer__csv_read(path, &c, err);
    if (st) return st;
    strvec items = {0};
    long jn = mer__csv_col(&c, "name"), jf = mer__csv_col(&c, "format");
    if (jn < 0 || jf < 0) {
        st = mer__errf(err, MER_E_FORMAT, "%s:1: the header must have columns name, format", path);
        goto fail;
    }
    for (size_t r = 0; r < c.n_rows; r++) {
        const char *raw = mer__csv_cell(&c, r, (size_t)jn);
        sv_free(&items);
        split_ctx sc = {&items, 0};
        mer_labels_split(mer__csv_cell(&c, r, (size_t)jf), split_cb, &sc);
        if (sc.fail) goto nomem;
        for (size_t k = 0; k < items.n; k++)
            if (mm_add(fm, items.v[k], strlen(items.v[k]), raw, strlen(raw))) goto nomem;
        if (mm_add(fm, raw, strlen(raw), raw, strlen(raw))) goto nomem;
    }
    goto done;
nomem:
    st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
fail:
done:
    sv_free(&items);
    mer__csv_free(&c);
    return st;
}

static int intern_cluster(mer_wheels *w, int m, const char *name) {
    for (size_t i = 0; i < w->n_clusters[m]; i++)
        if (!strcmp(w->cluster_names[m][i], name)) return (int)i;
    if (w->n_clusters[m] >= MER_MAX_CLUSTERS) return -2;
    char **p = realloc(w->cluster_names[m], (w->n_clusters[m] + 1) * sizeof *p);
    if (!p) return -3;
    w->cluster_names[m] = p;
    if (!(p[w->n_clusters[m]] = strdup(name))) return -3;
    return (int)w->n_clusters[m]++;
}

void mer_wheels_free(mer_wheels *w) {
    if (!w) return;
    mer__strmap_free(&w->spell);
    free(w->cluster);
    for (int m = 0; m < MER_N_METRICS; m++) {
        for (size_t i = 0; i < w->n_clusters[m]; i++) free(w->cluster_names[m][i]);
        free(w->cluster_names[m]);
    }
    free(w);
}

mer_status mer_wheels_load(const char *dir, mer_wheels **out, mer_err *err) {
    *out = NULL;
    strdict maps[MER_N_METRICS];
    multimap raw = {0}, fm = {0};
    strvec cands = {0};
    memset(maps, 0, sizeof maps);
    mer_status st = MER_OK;
    mer_wheels *w = calloc(1, sizeof *w);
    if (!w) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", dir);
    if (!mer__is_dir(dir)) {
        st = mer__errf(err, MER_E_IO, "%s: not a directory (expected wheel1..5.csv, synonym.csv, format.csv)", dir);
        goto fail;
    }
    for (int k = 0; k < MER_N_WHEELS; k++)
        if ((st = load_wheel(dir, k, &maps[k * MER_N_LEVELS], err))) goto fail;
    if ((st = load_synonyms(dir, &raw, err)) || (st = load_formats(dir, &fm, err))) goto fail;

    w->n_spell = fm.keys.n;
    w->cluster = malloc((w->n_spell ? w->n_spell : 1) * sizeof *w->cluster);
    if (!w->cluster) goto nomem;
    for (size_t s = 0; s < fm.keys.n; s++) {
        const char *spelling = fm.keys.v[s];
        /* cands = [raw for f in format_mapping[label] for raw in raw_mapping[f]], sorted */
        sv_free(&cands);
        const strvec *bases = &fm.lists[s];
        for (size_t i = 0; i < bases->n; i++) {
            const strvec *r = mm_get(&raw, bases->v[i]);
            for (size_t k = 0; r && k < r->n; k++)
                if (sv_push(&cands, r->v[k], strlen(r->v[k]))) goto nomem;
        }
        if (cands.n) qsort(cands.v, cands.n, sizeof *cands.v, cmp_str);
        for (int m = 0; m < MER_N_METRICS; m++) {
            w->cluster[s][m] = -1;
            for (size_t i = 0; i < cands.n; i++) {
                const char *cl = sd_get(&maps[m], cands.v[i]);
                if (!cl) continue;
                int id = intern_cluster(w, m, cl);
                if (id == -3) goto nomem;
                if (id == -2) {
                    st = mer__errf(err, MER_E_RANGE, "%s: wheel%d has more than %d clusters at level%d", dir,
                                   m / MER_N_LEVELS + 1, MER_MAX_CLUSTERS, m % MER_N_LEVELS + 1);
                    goto fail;
                }
                w->cluster[s][m] = (int16_t)id;
                break;
            }
        }
        /* the lookup key is the spelling as the reference compares it: lower().strip() of a label
         * must equal the key, so keys that are not themselves lower-case can never match */
        if (mer__strmap_put(&w->spell, spelling, strlen(spelling), (int64_t)s, NULL, NULL)) goto nomem;
    }
    goto done;
nomem:
    st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", dir);
fail:
    mer_wheels_free(w);
    w = NULL;
done:
    for (int m = 0; m < MER_N_METRICS; m++) sd_free(&maps[m]);
    mm_free(&raw);
    mm_free(&fm);
    sv_free(&cands);
    *out = w;
    return st;
}

size_t mer_wheels_n_spellings(const mer_wheels *w) { return w->n_spell; }

const char *mer_wheels_map(const mer_wheels *w, const char *label, int wheel, int level) {
    if (wheel < 0 || wheel >= MER_N_WHEELS || level < 0 || level >= MER_N_LEVELS) return "";
    mer_buf b = {0};
    const char *res = "";
    if (mer__py_lower_strip(label, strlen(label), &b) == MER_OK) {
        int64_t *i = mer__strmap_get(&w->spell, b.data, b.len);
        int m = wheel * MER_N_LEVELS + level;
        if (i && w->cluster[*i][m] >= 0) res = w->cluster_names[m][w->cluster[*i][m]];
    }
    mer__buf_free(&b);
    return res;
}
