/* face_detect.c - face-api's TinyFaceDetector: weight loading from a tfjs manifest view, the forward
 * pass on face_ops.c layers and the engine's GEMM, the YOLO box decoding and non-maximum suppression
 * (see face_detect.h for the architecture). */
#include "models/face_detect.h"

#include "models/face_ops.h"

#include <math.h>
#include <string.h>

static const double ANCHORS[MER_FACEDET_N_ANCHORS][2] = {
    {1.603231, 2.094468}, {6.041143, 7.080126}, {2.882459, 3.518061}, {4.266906, 5.178857}, {9.041765, 10.66308},
};
static const float MEAN_RGB[3] = {117.001f, 114.697f, 97.404f};
static const int CHANNELS[7] = {3, 16, 32, 64, 128, 256, 512};
#define N_OUT (MER_FACEDET_N_ANCHORS * 5)

// --- loading -----------------------------------------------------------------------------------------

mer_status mer__face_load_tensor(const mer_weights *w, const char *what, const char *name, int n_dims,
                                 const int64_t *shape, int transpose, float *dst, mer_err *err) {
    const mer_wtensor *t = mer_weights_find(w, name);
    if (!t) return mer__errf(err, MER_E_NOTFOUND, "%s: %s: tensor '%s' is missing", w->path, what, name);
    int ok = t->dtype == MER_DTYPE_F32 && t->n_dims == n_dims;
    for (int d = 0; ok && d < n_dims; d++) ok = t->shape[d] == shape[d];
    if (!ok) {
        char want[96] = "", got[96] = "";
        for (int d = 0; d < n_dims; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "", (long long)shape[d]);
        for (int d = 0; d < t->n_dims; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)t->shape[d]);
        return mer__errf(err, MER_E_SHAPE, "%s: %s: tensor '%s' has shape [%s] (%s), expected [%s] (f32)", w->path,
                         what, name, got, mer_dtype_name(t->dtype), want);
    }
    size_t n = 1;
    for (int d = 0; d < n_dims; d++) n *= (size_t)shape[d];
    const float *src = t->data;
    if (!transpose) {
        memcpy(dst, src, n * sizeof *dst);
    } else {
        size_t c_out = (size_t)shape[n_dims - 1], inner = n / c_out;
        for (size_t i = 0; i < inner; i++)
            for (size_t o = 0; o < c_out; o++) dst[o * inner + i] = src[i * c_out + o];
    }
    return MER_OK;
}

mer_status mer__facedet_init(mer_facedet *d, const mer_weights *w, mer_err *err) {
    memset(d, 0, sizeof *d);
    const char *what = "tiny_face_detector";
    size_t total = 16 * 27 + 16 + N_OUT * 512 + N_OUT;
    for (int k = 0; k < 5; k++) total += 9 * (size_t)CHANNELS[k + 1] + (size_t)CHANNELS[k + 1] * CHANNELS[k + 2] + CHANNELS[k + 2];
    d->mem = malloc(total * sizeof *d->mem);
    if (!d->mem) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", w->path);
    float *p = d->mem;
    mer_status st;
    d->conv0_w = p; p += 16 * 27;
    d->conv0_b = p; p += 16;
    if ((st = mer__face_load_tensor(w, what, "conv0/filters", 4, (int64_t[]){3, 3, 3, 16}, 1, d->conv0_w, err)) ||
        (st = mer__face_load_tensor(w, what, "conv0/bias", 1, (int64_t[]){16}, 0, d->conv0_b, err)))
        goto fail;
    for (int k = 0; k < 5; k++) {
        mer_facedet_sep *s = &d->sep[k];
        s->c_in = CHANNELS[k + 1];
        s->c_out = CHANNELS[k + 2];
        s->dw = p; p += 9 * (size_t)s->c_in;
        s->pw = p; p += (size_t)s->c_in * s->c_out;
        s->bias = p; p += s->c_out;
        char nd[64], np[64], nb[64];
        snprintf(nd, sizeof nd, "conv%d/depthwise_filter", k + 1);
        snprintf(np, sizeof np, "conv%d/pointwise_filter", k + 1);
        snprintf(nb, sizeof nb, "conv%d/bias", k + 1);
        if ((st = mer__face_load_tensor(w, what, nd, 4, (int64_t[]){3, 3, s->c_in, 1}, 0, s->dw, err)) ||
            (st = mer__face_load_tensor(w, what, np, 4, (int64_t[]){1, 1, s->c_in, s->c_out}, 1, s->pw, err)) ||
            (st = mer__face_load_tensor(w, what, nb, 1, (int64_t[]){s->c_out}, 0, s->bias, err)))
            goto fail;
    }
    d->conv8_w = p; p += N_OUT * 512;
    d->conv8_b = p; p += N_OUT;
    if ((st = mer__face_load_tensor(w, what, "conv8/filters", 4, (int64_t[]){1, 1, 512, N_OUT}, 1, d->conv8_w, err)) ||
        (st = mer__face_load_tensor(w, what, "conv8/bias", 1, (int64_t[]){N_OUT}, 0, d->conv8_b, err)))
        goto fail;
    MER_ASSERT((size_t)(p - d->mem) == total);
    return MER_OK;
fail:
    mer__facedet_free(d);
    return st;
}

void mer__facedet_free(mer_facedet *d) {
    if (!d) return;
    free(d->mem);
    free(d->buf_a);
    free(d->buf_b);
    free(d->col);
    memset(d, 0, sizeof *d);
}

// --- forward -----------------------------------------------------------------------------------------

static int grow(float **p, size_t *cap, size_t n) {
    if (n <= *cap) return 0;
    float *q = realloc(*p, n * sizeof *q);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* Largest activation (elements) and im2col size for input size s. */
static void plan(int s, size_t *act, size_t *col) {
    size_t m = (size_t)s * s * 3;
    int h = s - 2;
    *col = (size_t)h * h * 27;
    if ((size_t)h * h * 16 > m) m = (size_t)h * h * 16;
    for (int k = 0; k < 5; k++) {
        int pad;
        h = mer__face_same_pad(h, 2, 2, &pad); /* pool before convK+1 */
        size_t a = (size_t)h * h * CHANNELS[k + 2];
        if (a > m) m = a;
    }
    *act = m;
}

/* floor(v) clamped to [0, hi]; NaN gives 0 (a degenerate box from an overflowing exp). */
static int floor_in(double v, int hi) {
    if (!(v > 0)) return 0;
    if (v >= hi) return hi;
    return (int)floor(v);
}

double mer__facedet_iou(const mer_facedet_box *a, const mer_facedet_box *b) {
    double ar = a->x + a->w, ab = a->y + a->h, br = b->x + b->w, bb = b->y + b->h;
    double iw = fmax(0.0, fmin(ar, br) - fmax(a->x, b->x));
    double ih = fmax(0.0, fmin(ab, bb) - fmax(a->y, b->y));
    double inter = iw * ih;
    return inter / (a->w * a->h + b->w * b->h - inter);
}

typedef struct cand {
    mer_facedet_box rel; /* relative box */
    double score;
    size_t idx;
} cand;

/* face-api sorts ascending by score (stable) and pops the last: highest score first, ties by later
 * index first. */
static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->score != b->score) return a->score < b->score ? 1 : -1;
    return a->idx < b->idx ? 1 : -1;
}

mer_status mer__facedet_run(mer_facedet *d, mer_cpu_ctx *c, const uint8_t *rgb, int w, int h, size_t stride,
                            int size, double score_threshold, double iou_threshold, mer_facedet_box **boxes,
                            size_t *n, const float **raw, int *n_cells, mer_err *err) {
    *boxes = NULL;
    *n = 0;
    if (size < 32 || size > 2048 || size % 32)
        return mer__errf(err, MER_E_ARG, "face detector: input size %d is not a multiple of 32 in [32, 2048]", size);
    if (w <= 0 || h <= 0 || stride < (size_t)w * 3)
        return mer__errf(err, MER_E_ARG, "face detector: bad image %dx%d (stride %zu)", w, h, stride);
    size_t act, colsz;
    plan(size, &act, &colsz);
    if (grow(&d->buf_a, &d->cap_a, act) || grow(&d->buf_b, &d->cap_b, act) || grow(&d->col, &d->cap_col, colsz))
        return mer__errf(err, MER_E_NOMEM, "face detector: out of memory for input size %d", size);
    float *cur = d->buf_a, *oth = d->buf_b, *tmp;
#define SWAP() (tmp = cur, cur = oth, oth = tmp)
    mer__face_prep_input(c, cur, size, rgb, w, h, stride, 0, MEAN_RGB);
    int hh = size - 2, pad;
    mer__face_conv3x3(c, oth, cur, size, size, 3, d->conv0_w, d->conv0_b, 16, 1, 0, 0, hh, hh, d->col);
    mer__face_leaky(oth, oth, (size_t)hh * hh * 16);
    SWAP();
    for (int k = 0; k < 5; k++) {
        const mer_facedet_sep *s = &d->sep[k];
        int ho = mer__face_same_pad(hh, 2, 2, &pad);
        mer__face_maxpool(c, oth, cur, hh, hh, s->c_in, 2, 2, pad, pad, ho, ho);
        SWAP();
        hh = ho;
        mer__face_dwconv3x3(c, oth, cur, hh, hh, s->c_in, s->dw, 1, 1, 1, hh, hh);
        SWAP();
        mer_cpu_matmul(c, oth, (size_t)s->c_out, cur, (size_t)s->c_in, s->pw, MER_DTYPE_F32, s->bias, hh * hh, s->c_in,
                       s->c_out);
        mer__face_leaky(oth, oth, (size_t)hh * hh * s->c_out);
        SWAP();
    }
    mer__face_same_pad(hh, 2, 1, &pad);
    mer__face_maxpool(c, oth, cur, hh, hh, 512, 2, 1, pad, pad, hh, hh);
    SWAP();
    mer_cpu_matmul(c, oth, N_OUT, cur, 512, d->conv8_w, MER_DTYPE_F32, d->conv8_b, hh * hh, 512, N_OUT);
    SWAP();
#undef SWAP
    const float *out = cur; /* [hh][hh][5 anchors][5] */
    if (raw) *raw = out;
    if (n_cells) *n_cells = hh;

    /* decode: boxes relative to the unpadded, resized image */
    double scale = (double)size / (w > h ? w : h);
    double rw = round(w * scale), rh = round(h * scale);
    double in_size = rw > rh ? rw : rh;
    double cfx = in_size / rw, cfy = in_size / rh;
    size_t n_cand = 0, cap = 0;
    cand *cs = NULL;
    mer_status st = MER_OK;
    for (int row = 0; row < hh; row++)
        for (int col = 0; col < hh; col++)
            for (int a = 0; a < MER_FACEDET_N_ANCHORS; a++) {
                const float *v = out + ((size_t)(row * hh + col) * MER_FACEDET_N_ANCHORS + a) * 5;
                double score = 1.0 / (1.0 + exp(-(double)v[4]));
                if (!(score > score_threshold)) continue;
                double ctx = ((col + 1.0 / (1.0 + exp(-(double)v[0]))) / hh) * cfx;
                double cty = ((row + 1.0 / (1.0 + exp(-(double)v[1]))) / hh) * cfy;
                double bw = ((exp((double)v[2]) * ANCHORS[a][0]) / hh) * cfx;
                double bh = ((exp((double)v[3]) * ANCHORS[a][1]) / hh) * cfy;
                double x = ctx - bw / 2, y = cty - bh / 2;
                if (n_cand == cap) {
                    size_t nc = cap ? 2 * cap : 16;
                    cand *q = realloc(cs, nc * sizeof *q);
                    if (!q) { st = mer__errf(err, MER_E_NOMEM, "face detector: out of memory"); goto done; }
                    cs = q;
                    cap = nc;
                }
                cand *cd = &cs[n_cand];
                cd->rel.x = x;
                cd->rel.y = y;
                cd->rel.w = (x + bw) - x; /* BoundingBox(left, top, right, bottom) */
                cd->rel.h = (y + bh) - y;
                cd->score = score;
                cd->idx = n_cand++;
            }
    if (!n_cand) goto done;
    qsort(cs, n_cand, sizeof *cs, cand_cmp);
    /* greedy NMS on the boxes scaled by the input size (as face-api does) */
    unsigned char *gone = calloc(n_cand, 1);
    mer_facedet_box *res = malloc(n_cand * sizeof *res);
    mer_facedet_box *sc = malloc(n_cand * sizeof *sc);
    if (!gone || !res || !sc) {
        free(gone); free(res); free(sc);
        st = mer__errf(err, MER_E_NOMEM, "face detector: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_cand; i++) {
        sc[i].x = cs[i].rel.x * size;
        sc[i].y = cs[i].rel.y * size;
        sc[i].w = cs[i].rel.w * size;
        sc[i].h = cs[i].rel.h * size;
    }
    size_t n_out = 0;
    for (size_t i = 0; i < n_cand; i++) {
        if (gone[i]) continue;
        for (size_t j = i + 1; j < n_cand; j++)
            if (!gone[j] && mer__facedet_iou(&sc[i], &sc[j]) > iou_threshold) gone[j] = 1;
        /* the detection in pixels of the input image, then forSize(w, h) + clipAtImageBorders + floor
         * for the crop, with face-api's exact sequence of double operations */
        mer_facedet_box *b = &res[n_out++];
        b->x = cs[i].rel.x * w;
        b->y = cs[i].rel.y * h;
        b->w = cs[i].rel.w * w;
        b->h = cs[i].rel.h * h;
        b->score = cs[i].score;
        double iw = 1.0 / w, ih = 1.0 / h;
        double x2 = (b->x * iw) * w, y2 = (b->y * ih) * h, w2 = (b->w * iw) * w, h2 = (b->h * ih) * h;
        double right = x2 + w2, bottom = y2 + h2;
        double clx = fmax(x2, 0), cly = fmax(y2, 0);
        double cw = fmin(right - clx, w - clx), ch = fmin(bottom - cly, h - cly);
        b->cx = floor_in(clx, w);
        b->cy = floor_in(cly, h);
        b->cw = floor_in(cw, w);
        b->ch = floor_in(ch, h);
    }
    free(gone);
    free(sc);
    *boxes = res;
    *n = n_out;
done:
    free(cs);
    return st;
}
