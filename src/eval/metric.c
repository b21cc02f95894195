/* metric.c - the MER2025 Track2 score (spec §1.6): per (wheel, level), per sample the precision and
 * recall of the predicted cluster set against the ground-truth cluster set, averaged over samples
 * whose ground truth maps to something; F of the averaged P and R; mean over wheels; mean of levels.
 * Cluster sets are 128-bit sets, so scoring 20,000 samples takes a few milliseconds. */
#include "mer.h"
#include "eval/eval.h"

#include <math.h>
#include <string.h>

typedef struct cset {
    uint64_t b[MER_N_METRICS][2];
} cset;

typedef struct map_ctx {
    const mer_wheels *w;
    cset *set;
    mer_buf tmp;
    int fail;
} map_ctx;

static void map_cb(const char *item, size_t len, void *ud) {
    map_ctx *c = ud;
    char low[128];
    const char *key = low;
    size_t klen = len, k;
    /* fast path: short ASCII items (items come stripped from the splitter) */
    for (k = 0; k < len && len <= sizeof low && (unsigned char)item[k] < 0x80; k++)
        low[k] = (char)(item[k] >= 'A' && item[k] <= 'Z' ? item[k] + 32 : item[k]);
    if (k < len || len > sizeof low) {
        if (mer__py_lower_strip(item, len, &c->tmp)) { c->fail = 1; return; }
        key = c->tmp.data;
        klen = c->tmp.len;
    }
    int64_t *i = mer__strmap_get(&c->w->spell, key, klen);
    if (!i) return; /* unknown word: dropped */
    for (int m = 0; m < MER_N_METRICS; m++) {
        int id = c->w->cluster[*i][m];
        if (id >= 0) c->set->b[m][id >> 6] |= 1ull << (id & 63);
    }
}

static int to_set(const mer_wheels *w, const char *labels, cset *out, mer_buf *tmp) {
    memset(out, 0, sizeof *out);
    map_ctx c = {w, out, *tmp, 0};
    mer_labels_split(labels ? labels : "", map_cb, &c);
    *tmp = c.tmp;
    return c.fail ? -1 : 0;
}

static int popc(const uint64_t b[2]) { /* sets hold a handful of bits: clear them one by one */
    int n = 0;
    for (uint64_t x = b[0]; x; x &= x - 1) n++;
    for (uint64_t x = b[1]; x; x &= x - 1) n++;
    return n;
}

mer_eval_params mer_eval_default_params(void) {
    mer_eval_params p = {0};
    return p;
}

mer_status mer_eval_score(const mer_wheels *w, const mer_labeled *gt, size_t n_gt, const mer_labeled *pred,
                          size_t n_pred, const mer_eval_params *params, mer_eval_result *out, mer_err *err) {
    mer_eval_params def = mer_eval_default_params();
    if (!params) params = &def;
    memset(out, 0, sizeof *out);
    out->n_gt = n_gt;
    mer_status st = MER_OK;
    mer_strmap idx = {0};
    mer_buf tmp = {0}, missing = {0};
    size_t n_missing = 0;
    int64_t *pred_of = NULL;
    double sp[MER_N_METRICS] = {0}, sr[MER_N_METRICS] = {0};
    size_t cnt[MER_N_METRICS] = {0};

    for (size_t i = 0; i < n_pred; i++) {
        int ins;
        if (mer__strmap_put(&idx, pred[i].name, strlen(pred[i].name), (int64_t)i, NULL, &ins)) goto nomem;
    }
    pred_of = malloc((n_gt ? n_gt : 1) * sizeof *pred_of);
    if (!pred_of) goto nomem;
    for (size_t i = 0; i < n_gt; i++) {
        int64_t *pi = mer__strmap_get(&idx, gt[i].name, strlen(gt[i].name));
        pred_of[i] = pi ? *pi : -1;
        if (!pi) {
            if (n_missing < 5 && mer__buf_printf(&missing, "%s%s", n_missing ? ", " : "", gt[i].name)) goto nomem;
            n_missing++;
        }
    }
    if (n_missing && !params->allow_missing) {
        st = mer__errf(err, MER_E_NOTFOUND, "%zu of %zu ground-truth names have no prediction (first: %s%s); "
                       "use --allow-missing to score them as empty", n_missing, n_gt, missing.data,
                       n_missing > 5 ? ", ..." : "");
        goto fail;
    }
    out->n_missing = n_missing;
    for (size_t i = 0; i < n_gt; i++) {
        cset g, p;
        if (to_set(w, gt[i].labels, &g, &tmp)) goto nomem;
        if (to_set(w, pred_of[i] >= 0 ? pred[pred_of[i]].labels : "", &p, &tmp)) goto nomem;
        for (int m = 0; m < MER_N_METRICS; m++) {
            int ng = popc(g.b[m]);
            if (!ng) continue; /* ground truth maps to nothing: sample skipped */
            cnt[m]++;
            int np = popc(p.b[m]);
            if (!np) continue; /* empty prediction: precision = recall = 0 */
            uint64_t both[2] = {g.b[m][0] & p.b[m][0], g.b[m][1] & p.b[m][1]};
            int ni = popc(both);
            sp[m] += (double)ni / np;
            sr[m] += (double)ni / ng;
        }
    }
    for (int m = 0; m < MER_N_METRICS; m++) {
        int wh = m / MER_N_LEVELS, lv = m % MER_N_LEVELS;
        double P = cnt[m] ? sp[m] / (double)cnt[m] : NAN, R = cnt[m] ? sr[m] / (double)cnt[m] : NAN;
        out->p[wh][lv] = P;
        out->r[wh][lv] = R;
        out->f[wh][lv] = 2 * P * R / (P + R); /* nan when both are 0, as numpy gives */
        out->n_scored[wh][lv] = cnt[m];
    }
    for (int lv = 0; lv < MER_N_LEVELS; lv++) {
        double f = 0, p = 0, r = 0;
        for (int wh = 0; wh < MER_N_WHEELS; wh++) {
            f += out->f[wh][lv];
            p += out->p[wh][lv];
            r += out->r[wh][lv];
        }
        out->level_f[lv] = f / MER_N_WHEELS;
        out->level_p[lv] = p / MER_N_WHEELS;
        out->level_r[lv] = r / MER_N_WHEELS;
    }
    out->mean = (out->level_f[0] + out->level_f[1]) / 2;
    goto done;
nomem:
    st = mer__errf(err, MER_E_NOMEM, "out of memory while scoring");
fail:
done:
    mer__strmap_free(&idx);
    free(pred_of);
    mer__buf_free(&tmp);
    mer__buf_free(&missing);
    return st;
}
