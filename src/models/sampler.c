/* sampler.c - next-token selection with Hugging Face generate() semantics: the logits processors in HF's
 * order (RepetitionPenaltyLogitsProcessor, then when sampling TemperatureLogitsWarper, TopKLogitsWarper,
 * TopPLogitsWarper, MinPLogitsWarper, each with min_tokens_to_keep = 1), then a draw from the softmax of
 * what is left. Scores are float32 as in HF; the top-p and min-p probabilities and the draw are computed
 * in float64. The PRNG is xoshiro256** (Blackman and Vigna) seeded through splitmix64, documented in
 * mer.h so that a run can be reproduced from its seed. All scratch is allocated at init. */
#include "core/core.h"

#include <math.h>
#include <string.h>

typedef struct sc_pair {
    float s;
    int32_t i;
} sc_pair;

struct mer_sampler {
    mer_sampler_params p;
    int n_vocab;
    float *scores;  /* [n_vocab] */
    sc_pair *pairs; /* [n_vocab] */
    float *heap;    /* [n_vocab] */
    double *w;      /* [n_vocab] exp(score - max) of the draw */
    int32_t *cand;  /* [n_vocab] ids of the tokens top-k keeps (the short path of mer_sampler_sample) */
    uint8_t *seen;  /* [n_vocab], all 0 between calls */
    uint64_t rng[4];
};

mer_sampler_params mer_sampler_default_params(void) {
    mer_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.0;
    p.top_p = 1.0;
    p.repeat_penalty = 1.0;
    return p;
}

// --- PRNG --------------------------------------------------------------------------------------------

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static double uniform01(uint64_t s[4]) { return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53; }

// --- init --------------------------------------------------------------------------------------------

mer_status mer_sampler_init(const mer_sampler_params *p, int n_vocab, mer_sampler **out, mer_err *err) {
    if (!out) return mer__errf(err, MER_E_ARG, "mer_sampler_init: out is NULL");
    *out = NULL;
    mer_sampler_params defp = mer_sampler_default_params();
    if (!p) p = &defp;
    if (n_vocab <= 0) return mer__errf(err, MER_E_ARG, "sampler: vocabulary size %d must be positive", n_vocab);
    if (!isfinite(p->temperature) || p->temperature < 0)
        return mer__errf(err, MER_E_ARG, "sampler: temperature %g must be >= 0", p->temperature);
    if (p->top_k < 0) return mer__errf(err, MER_E_ARG, "sampler: top_k %d must be >= 0", p->top_k);
    if (!(p->top_p > 0) || !isfinite(p->top_p))
        return mer__errf(err, MER_E_ARG, "sampler: top_p %g must be in (0, 1] (1 turns it off)", p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return mer__errf(err, MER_E_ARG, "sampler: min_p %g must be in [0, 1]", p->min_p);
    if (!(p->repeat_penalty > 0) || !isfinite(p->repeat_penalty))
        return mer__errf(err, MER_E_ARG, "sampler: repetition penalty %g must be > 0", p->repeat_penalty);
    mer_sampler *s = calloc(1, sizeof *s);
    if (!s) return mer__errf(err, MER_E_NOMEM, "out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->scores = malloc((size_t)n_vocab * sizeof *s->scores);
    s->pairs = malloc((size_t)n_vocab * sizeof *s->pairs);
    s->heap = malloc((size_t)n_vocab * sizeof *s->heap);
    s->w = malloc((size_t)n_vocab * sizeof *s->w);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->seen = calloc((size_t)n_vocab, 1);
    if (!s->scores || !s->pairs || !s->heap || !s->w || !s->cand || !s->seen) {
        mer_sampler_free(s);
        return mer__errf(err, MER_E_NOMEM, "out of memory for a sampler of %d tokens", n_vocab);
    }
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    *out = s;
    return MER_OK;
}

void mer_sampler_free(mer_sampler *s) {
    if (!s) return;
    free(s->scores);
    free(s->pairs);
    free(s->heap);
    free(s->w);
    free(s->cand);
    free(s->seen);
    free(s);
}

// --- processors --------------------------------------------------------------------------------------

static int cmp_asc(const void *a, const void *b) {
    const sc_pair *x = a, *y = b;
    if (x->s < y->s) return -1;
    if (x->s > y->s) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

static void repetition_penalty(mer_sampler *s, float *sc, const int32_t *hist, size_t n_hist) {
    float pen = (float)s->p.repeat_penalty;
    for (size_t i = 0; i < n_hist; i++) {
        int32_t id = hist[i];
        if (id < 0 || id >= s->n_vocab || s->seen[id]) continue;
        s->seen[id] = 1;
        sc[id] = sc[id] < 0 ? sc[id] * pen : sc[id] / pen;
    }
    for (size_t i = 0; i < n_hist; i++)
        if (hist[i] >= 0 && hist[i] < s->n_vocab) s->seen[hist[i]] = 0;
}

/* Sift-down in a min-heap of n floats. */
static void heap_down(float *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l] < h[m]) m = l;
        if (r < n && h[r] < h[m]) m = r;
        if (m == i) return;
        float t = h[i];
        h[i] = h[m], h[m] = t;
        i = m;
    }
}

static void top_k(mer_sampler *s, float *sc) {
    int V = s->n_vocab;
    size_t k = (size_t)(s->p.top_k < V ? s->p.top_k : V);
    if (k == (size_t)V) return;
    /* the k-th largest value (duplicates counted, as torch.topk): a min-heap of the k largest */
    float *h = s->heap;
    for (size_t i = 0; i < k; i++) h[i] = sc[i];
    for (size_t i = k / 2; i-- > 0;) heap_down(h, k, i);
    for (int i = (int)k; i < V; i++)
        if (sc[i] > h[0]) {
            h[0] = sc[i];
            heap_down(h, k, 0);
        }
    float kth = h[0];
    for (int i = 0; i < V; i++)
        if (sc[i] < kth) sc[i] = -INFINITY;
}

/* Finite scores into pairs; returns their count and the largest score. */
static size_t finite_pairs(mer_sampler *s, const float *sc, float *mx) {
    size_t n = 0;
    *mx = -INFINITY;
    for (int i = 0; i < s->n_vocab; i++)
        if (sc[i] > -INFINITY) {
            s->pairs[n].s = sc[i], s->pairs[n].i = i, n++;
            if (sc[i] > *mx) *mx = sc[i];
        }
    return n;
}

static int cmp_desc(const void *a, const void *b) { return cmp_asc(b, a); }

/* HF sorts ascending and drops the tokens whose cumulative probability is <= 1 - top_p. Equivalently,
 * walking down from the most probable, a token is kept while 1 - (mass before it) > 1 - top_p. Only the
 * head of the distribution can be kept, so only tokens above a probability threshold are sorted: the
 * threshold is lowered until the tokens above it hold at least top_p of the mass. */
static void top_p(mer_sampler *s, float *sc) {
    const int V = s->n_vocab;
    float mx = -INFINITY;
    size_t n_fin = 0;
    for (int i = 0; i < V; i++)
        if (sc[i] > -INFINITY) n_fin++, mx = sc[i] > mx ? sc[i] : mx;
    if (n_fin <= 1) return;
    double z = 0;
    for (int i = 0; i < V; i++)
        if (sc[i] > -INFINITY) z += exp((double)sc[i] - (double)mx);
    size_t n = 0;
    for (double t = 1.0 / 1024;; t /= 64) {
        /* p_i >= t  <=>  s_i >= max + log(t z) */
        double lim = t > 1e-300 ? (double)mx + log(t * z) : -INFINITY;
        double mass = 0;
        n = 0;
        for (int i = 0; i < V; i++)
            if (sc[i] > -INFINITY && (double)sc[i] >= lim) {
                s->pairs[n].s = sc[i], s->pairs[n].i = i, n++;
                mass += exp((double)sc[i] - (double)mx);
            }
        if (mass >= s->p.top_p * z || !(lim > -INFINITY)) break;
    }
    qsort(s->pairs, n, sizeof *s->pairs, cmp_desc);
    double before = 0, cut = 1.0 - s->p.top_p;
    size_t keep = 1; /* the most probable is always kept */
    before = exp((double)s->pairs[0].s - (double)mx);
    for (; keep < n; keep++) {
        if (1.0 - before / z <= cut) break;
        before += exp((double)s->pairs[keep].s - (double)mx);
    }
    for (size_t k = 0; k < keep; k++) s->seen[s->pairs[k].i] = 1;
    for (int i = 0; i < V; i++)
        if (!s->seen[i]) sc[i] = -INFINITY;
    for (size_t k = 0; k < keep; k++) s->seen[s->pairs[k].i] = 0;
}

static void min_p(mer_sampler *s, float *sc) {
    float mx;
    size_t n = finite_pairs(s, sc, &mx);
    if (n <= 1) return;
    /* p_i < min_p * p_max  <=>  exp(s_i - max) < min_p (the normaliser cancels) */
    for (size_t i = 0; i < n; i++)
        if (exp((double)s->pairs[i].s - (double)mx) < s->p.min_p) sc[s->pairs[i].i] = -INFINITY;
}

void mer_sampler_process(mer_sampler *s, float *sc, const int32_t *hist, size_t n_hist) {
    if (s->p.repeat_penalty != 1.0) repetition_penalty(s, sc, hist, n_hist);
    if (s->p.temperature <= 0) return; /* greedy: HF applies no warper */
    if (s->p.temperature != 1.0) {
        float t = (float)s->p.temperature;
        for (int i = 0; i < s->n_vocab; i++) sc[i] /= t;
    }
    if (s->p.top_k > 0) top_k(s, sc);
    if (s->p.top_p < 1.0) top_p(s, sc);
    if (s->p.min_p > 0) min_p(s, sc);
}

static int32_t argmax(const float *sc, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (sc[i] > sc[best]) best = i;
    return best;
}

// --- the draw -----------------------------------------------------------------------------------------

/* The short path when top-k is on: after it only the tokens >= the k-th largest score are left, so the
 * later processors and the draw run over that list (ids ascending) instead of the whole vocabulary. Every
 * sum, comparison and sort is the one the full path makes over the same tokens in the same order (the
 * tokens top-k removes only add 0 to its sums), so the draws are the same, bit for bit. Returns 0 without
 * touching the PRNG when the k-th score is not finite or a score is NaN (the full path handles those). */
static int sample_top_k(mer_sampler *s, const float *logits, const int32_t *hist, size_t n_hist, int32_t *out) {
    const int V = s->n_vocab;
    const float *src = logits;
    if (s->p.repeat_penalty != 1.0) {
        memcpy(s->scores, logits, (size_t)V * sizeof *s->scores);
        repetition_penalty(s, s->scores, hist, n_hist);
        src = s->scores;
    }
    const int div = s->p.temperature != 1.0;
    const float t = (float)s->p.temperature;
#define SCORE(i) (div ? src[i] / t : src[i])
    /* one pass: the k-th largest score (duplicates counted, as top_k's heap finds it) and, ids ascending,
     * every token not below the heap's minimum when it was read (that minimum only rises, so the list
     * holds every token >= the final k-th; it is filtered below). Scores go to s->scores (in place when
     * src is s->scores: position n <= i is written after i is read). */
    const size_t k = (size_t)s->p.top_k;
    float *h = s->heap, *cs = s->scores;
    int32_t *ci = s->cand;
    size_t n = 0;
    for (size_t i = 0; i < k; i++) {
        float v = SCORE(i);
        if (v != v) return 0; /* NaN: the full path's rules */
        h[i] = v;
        cs[n] = v, ci[n] = (int32_t)i, n++;
    }
    for (size_t i = k / 2; i-- > 0;) heap_down(h, k, i);
    float h0 = h[0];
    for (int i = (int)k; i < V; i++) {
        float v = SCORE(i);
        if (v < h0) continue;
        if (v != v) return 0;
        cs[n] = v, ci[n] = i, n++;
        if (v > h0) {
            h[0] = v;
            heap_down(h, k, 0);
            h0 = h[0];
        }
    }
    const float kth = h0;
    if (!(kth > -INFINITY)) return 0;
    size_t nk = 0;
    for (size_t j = 0; j < n; j++)
        if (cs[j] >= kth) cs[nk] = cs[j], ci[nk] = ci[j], nk++;
    n = nk;
#undef SCORE
    if (s->p.top_p < 1.0 && n > 1) { /* top_p over the list */
        float mx = -INFINITY;
        for (size_t j = 0; j < n; j++) mx = cs[j] > mx ? cs[j] : mx;
        double z = 0;
        for (size_t j = 0; j < n; j++) z += exp((double)cs[j] - (double)mx);
        size_t m = 0;
        for (double th = 1.0 / 1024;; th /= 64) {
            double lim = th > 1e-300 ? (double)mx + log(th * z) : -INFINITY, mass = 0;
            m = 0;
            for (size_t j = 0; j < n; j++)
                if ((double)cs[j] >= lim) {
                    s->pairs[m].s = cs[j], s->pairs[m].i = ci[j], m++;
                    mass += exp((double)cs[j] - (double)mx);
                }
            if (mass >= s->p.top_p * z || !(lim > -INFINITY)) break;
        }
        qsort(s->pairs, m, sizeof *s->pairs, cmp_desc);
        double before = exp((double)s->pairs[0].s - (double)mx), cut = 1.0 - s->p.top_p;
        size_t keep = 1;
        for (; keep < m; keep++) {
            if (1.0 - before / z <= cut) break;
            before += exp((double)s->pairs[keep].s - (double)mx);
        }
        for (size_t q = 0; q < keep; q++) s->seen[s->pairs[q].i] = 1;
        size_t w = 0;
        for (size_t j = 0; j < n; j++)
            if (s->seen[ci[j]]) cs[w] = cs[j], ci[w] = ci[j], w++;
        for (size_t q = 0; q < keep; q++) s->seen[s->pairs[q].i] = 0;
        n = w;
    }
    if (s->p.min_p > 0 && n > 1) { /* min_p over the list */
        float mx = -INFINITY;
        for (size_t j = 0; j < n; j++) mx = cs[j] > mx ? cs[j] : mx;
        size_t w = 0;
        for (size_t j = 0; j < n; j++)
            if (!(exp((double)cs[j] - (double)mx) < s->p.min_p)) cs[w] = cs[j], ci[w] = ci[j], w++;
        n = w;
    }
    /* argmax (the first of the largest) and the draw, as below */
    size_t best = 0;
    for (size_t j = 1; j < n; j++)
        if (cs[j] > cs[best]) best = j;
    double mx = cs[best], z = 0, *w = s->w;
    for (size_t j = 0; j < n; j++) {
        w[j] = exp((double)cs[j] - mx);
        z += w[j];
    }
    double u = uniform01(s->rng);
    *out = ci[best];
    if (!(z > 0) || !isfinite(z)) return 1;
    double target = u * z, cum = 0;
    for (size_t j = 0; j < n; j++) {
        if (w[j] == 0.0) continue;
        cum += w[j];
        *out = ci[j];
        if (cum > target) return 1;
    }
    return 1; /* rounding left target at the very top: the last */
}

int32_t mer_sampler_sample(mer_sampler *s, const float *logits, const int32_t *hist, size_t n_hist) {
    if (s->p.temperature <= 0 && s->p.repeat_penalty == 1.0) return argmax(logits, s->n_vocab);
    int32_t id;
    if (s->p.temperature > 0 && s->p.top_k > 0 && s->p.top_k < s->n_vocab && sample_top_k(s, logits, hist, n_hist, &id))
        return id;
    float *sc = s->scores;
    memcpy(sc, logits, (size_t)s->n_vocab * sizeof *sc);
    mer_sampler_process(s, sc, hist, n_hist);
    int32_t best = argmax(sc, s->n_vocab);
    if (s->p.temperature <= 0) return best;
    double mx = sc[best], z = 0, *w = s->w;
    for (int i = 0; i < s->n_vocab; i++) {
        w[i] = sc[i] > -INFINITY ? exp((double)sc[i] - mx) : 0.0;
        z += w[i];
    }
    double u = uniform01(s->rng);
    if (!(z > 0) || !isfinite(z)) return best;
    double target = u * z, cum = 0;
    int32_t last = best;
    for (int i = 0; i < s->n_vocab; i++) {
        if (w[i] == 0.0) continue;
        cum += w[i];
        last = i;
        if (cum > target) return i;
    }
    return last; /* rounding left target at the very top */
}

