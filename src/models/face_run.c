/* face_run.c - faces over a video, the work of `mer run` and `mer faces`: sample frames, detect faces and
 * their expressions in each, follow the main face across frames (IoU tracks), and sum up what it shows
 * as a Track2 label set and a one-paragraph description; or write its crops as an OpenFace-style .npy.
 * The tracking and the summary work on plain data (tests feed them the reference's detections). */
#include "core/core.h"
#include "io/npy.h"

#include <math.h>
#include <string.h>

#define NEUTRAL 0
#define TRACK_IOU 0.3
#define LABEL_TOP_P 0.5f
#define LABEL_MEAN_P 0.3f

// --- tracking ----------------------------------------------------------------------------------------

static double box_iou(const mer_face_box *a, const mer_face_box *b) {
    double iw = fmax(0.0, fmin(a->x + a->w, b->x + b->w) - fmax(a->x, b->x));
    double ih = fmax(0.0, fmin(a->y + a->h, b->y + b->h) - fmax(a->y, b->y));
    double inter = iw * ih, uni = a->w * a->h + b->w * b->h - inter;
    return uni > 0 ? inter / uni : 0;
}

void mer_face_track_main(const mer_face_frame *frames, size_t n_frames, int *main_out) {
    size_t total = 0;
    for (size_t t = 0; t < n_frames; t++) total += frames[t].n_boxes;
    size_t *tid = malloc((total ? total : 1) * sizeof *tid);   /* track of each box, frames back to back */
    size_t *cnt = calloc(total ? total : 1, sizeof *cnt);       /* per track: frames, area sum, start */
    double *area = calloc(total ? total : 1, sizeof *area);
    size_t *start = calloc(total ? total : 1, sizeof *start);
    if (!tid || !cnt || !area || !start) { /* out of memory: fall back to the largest box per frame */
        free(tid); free(cnt); free(area); free(start);
        tid = NULL, cnt = NULL, area = NULL, start = NULL;
    }
    size_t n_tracks = 0, off = 0, prev_off = 0;
    for (size_t t = 0; tid && t < n_frames; t++) {
        const mer_face_frame *f = &frames[t];
        for (size_t i = 0; i < f->n_boxes; i++) tid[off + i] = SIZE_MAX;
        if (t > 0 && f->n_boxes && frames[t - 1].n_boxes) {
            const mer_face_frame *p = &frames[t - 1];
            unsigned char *used = calloc(p->n_boxes, 1);
            for (;;) { /* greedy: the best remaining pair */
                double best = TRACK_IOU;
                size_t bi = SIZE_MAX, bj = 0;
                for (size_t i = 0; i < f->n_boxes; i++) {
                    if (tid[off + i] != SIZE_MAX) continue;
                    for (size_t j = 0; j < p->n_boxes; j++) {
                        if (used && used[j]) continue;
                        double v = box_iou(&f->boxes[i], &p->boxes[j]);
                        if (v >= best && (bi == SIZE_MAX || v > best)) best = v, bi = i, bj = j;
                    }
                }
                if (bi == SIZE_MAX || !used) break;
                used[bj] = 1;
                tid[off + bi] = tid[prev_off + bj];
            }
            free(used);
        }
        for (size_t i = 0; i < f->n_boxes; i++) {
            if (tid[off + i] == SIZE_MAX) {
                tid[off + i] = n_tracks;
                start[n_tracks++] = t;
            }
            cnt[tid[off + i]]++;
            area[tid[off + i]] += f->boxes[i].w * f->boxes[i].h;
        }
        prev_off = off;
        off += f->n_boxes;
    }
    size_t best = SIZE_MAX;
    for (size_t k = 0; k < n_tracks; k++) {
        if (best == SIZE_MAX || cnt[k] > cnt[best]) { best = k; continue; }
        if (cnt[k] == cnt[best] && area[k] / cnt[k] > area[best] / cnt[best]) best = k;
    }
    off = 0;
    for (size_t t = 0; t < n_frames; t++) {
        const mer_face_frame *f = &frames[t];
        int m = -1;
        for (size_t i = 0; tid && i < f->n_boxes; i++)
            if (tid[off + i] == best) m = (int)i;
        if (m < 0)
            for (size_t i = 0; i < f->n_boxes; i++)
                if (m < 0 || f->boxes[i].w * f->boxes[i].h > f->boxes[m].w * f->boxes[m].h) m = (int)i;
        main_out[t] = m;
        off += f->n_boxes;
    }
    free(tid); free(cnt); free(area); free(start);
}

// --- summary -----------------------------------------------------------------------------------------

static int top_expr(const float *p) {
    int k = 0;
    for (int i = 1; i < MER_FACE_N_EXPR; i++)
        if (p[i] > p[k]) k = i;
    return k;
}

static void put_time(mer_buf *b, double t0, double t1) {
    if (t1 - t0 < 1e-9) mer__buf_printf(b, "at %.2f s", t0);
    else mer__buf_printf(b, "at %.2f-%.2f s", t0, t1);
}

mer_status mer_face_summarize(mer_face_report *r, mer_err *err) {
    mer_buf lab = {0}, desc = {0};
    int *mains = malloc((r->n_frames ? r->n_frames : 1) * sizeof *mains);
    if (!mains) return mer__errf(err, MER_E_NOMEM, "out of memory");
    mer_face_track_main(r->frames, r->n_frames, mains);
    r->n_with_face = 0;
    memset(r->mean, 0, sizeof r->mean);
    double sum[MER_FACE_N_EXPR] = {0};
    long first_top[MER_FACE_N_EXPR];
    int strong[MER_FACE_N_EXPR] = {0};
    for (int e = 0; e < MER_FACE_N_EXPR; e++) first_top[e] = -1;
    double t_first = 0, t_last = 0;
    for (size_t t = 0; t < r->n_frames; t++) {
        mer_face_frame *f = &r->frames[t];
        f->main = mains[t];
        if (f->main < 0) continue;
        const float *p = f->probs[f->main];
        if (!r->n_with_face) t_first = f->time;
        t_last = f->time;
        r->n_with_face++;
        for (int e = 0; e < MER_FACE_N_EXPR; e++) sum[e] += p[e];
        int k = top_expr(p);
        if (first_top[k] < 0) first_top[k] = (long)t;
        if (p[k] >= LABEL_TOP_P) strong[k] = 1;
    }
    free(mains);
    int order[MER_FACE_N_EXPR], n_lab = 0;
    if (r->n_with_face) {
        for (int e = 0; e < MER_FACE_N_EXPR; e++) r->mean[e] = (float)(sum[e] / (double)r->n_with_face);
        /* labels: shown ones by first frame, then mean-only ones by descending mean */
        for (size_t t = 0; t < r->n_frames; t++)
            for (int e = 1; e < MER_FACE_N_EXPR; e++)
                if (first_top[e] == (long)t && (strong[e] || r->mean[e] >= LABEL_MEAN_P)) order[n_lab++] = e;
        for (;;) {
            int best = -1;
            for (int e = 1; e < MER_FACE_N_EXPR; e++) {
                int have = 0;
                for (int i = 0; i < n_lab; i++) have |= order[i] == e;
                if (!have && r->mean[e] >= LABEL_MEAN_P && (best < 0 || r->mean[e] > r->mean[best])) best = e;
            }
            if (best < 0) break;
            order[n_lab++] = best;
        }
    }
    mer_status st = MER_OK;
    if (mer__buf_putc(&lab, '[')) goto nomem;
    for (int i = 0; i < n_lab; i++)
        if (mer__buf_printf(&lab, "%s%s", i ? ", " : "", mer_face_expr_name(order[i]))) goto nomem;
    if (mer__buf_putc(&lab, ']')) goto nomem;
    if (!r->n_with_face) {
        if (mer__buf_printf(&desc, "no face found")) goto nomem;
    } else {
        mer__buf_printf(&desc, "The main face is seen in %zu of %zu sampled frames (", r->n_with_face, r->n_frames);
        put_time(&desc, t_first, t_last);
        mer__buf_printf(&desc, "). It looks ");
        /* segments of consecutive face frames with the same top expression */
        size_t t = 0, n_seg = 0;
        while (t < r->n_frames) {
            if (r->frames[t].main < 0) { t++; continue; }
            int k = top_expr(r->frames[t].probs[r->frames[t].main]);
            double t0 = r->frames[t].time, t1 = t0, psum = 0;
            size_t n = 0, u = t;
            for (; u < r->n_frames; u++) {
                const mer_face_frame *f = &r->frames[u];
                if (f->main < 0) continue;
                if (top_expr(f->probs[f->main]) != k) break;
                t1 = f->time;
                psum += f->probs[f->main][k];
                n++;
            }
            mer__buf_printf(&desc, "%s%s ", n_seg++ ? ", " : "", mer_face_expr_name(k));
            put_time(&desc, t0, t1);
            mer__buf_printf(&desc, " (p=%.2f)", psum / (double)n);
            t = u;
        }
        mer__buf_printf(&desc, ". Mean probabilities:");
        int idx[MER_FACE_N_EXPR];
        for (int e = 0; e < MER_FACE_N_EXPR; e++) idx[e] = e;
        for (int a = 1; a < MER_FACE_N_EXPR; a++) /* by descending mean */
            for (int b = a; b > 0 && r->mean[idx[b]] > r->mean[idx[b - 1]]; b--) {
                int x = idx[b];
                idx[b] = idx[b - 1];
                idx[b - 1] = x;
            }
        int shown = 0;
        for (int e = 0; e < MER_FACE_N_EXPR; e++)
            if (r->mean[idx[e]] >= 0.01f || e == 0)
                mer__buf_printf(&desc, "%s %s %.2f", shown++ ? "," : "", mer_face_expr_name(idx[e]), r->mean[idx[e]]);
        if (n_lab) {
            mer__buf_printf(&desc, ". Clearly shown: ");
            for (int i = 0; i < n_lab; i++)
                mer__buf_printf(&desc, "%s%s", i ? ", " : "", mer_face_expr_name(order[i]));
            mer__buf_printf(&desc, ".");
        } else {
            mer__buf_printf(&desc, ". No emotion is clearly shown (neutral is not an emotion label).");
        }
        if (!desc.data) goto nomem;
    }
    free(r->labels);
    free(r->description);
    r->labels = lab.data;
    r->description = desc.data;
    return MER_OK;
nomem:
    st = mer__errf(err, MER_E_NOMEM, "out of memory");
    mer__buf_free(&lab);
    mer__buf_free(&desc);
    return st;
}

void mer_face_report_free(mer_face_report *r) {
    if (!r) return;
    for (size_t t = 0; t < r->n_frames; t++) {
        free(r->frames[t].boxes);
        free(r->frames[t].probs);
    }
    free(r->frames);
    free(r->labels);
    free(r->description);
    free(r);
}

// --- over a video ------------------------------------------------------------------------------------

#if MER_MEDIA

/* Samples n frames, detects faces and expressions in each, summarises. With crop_size > 0 it also keeps
 * the main face's BGR crop of every frame that has one in *crops (n_frames * crop_size^2 * 3 bytes,
 * caller frees; frames without the main face are left out) and their count in *n_crops. */
static mer_status analyze(mer_face *f, const char *path, int n, int crop_size, mer_face_report **out, uint8_t **crops,
                          size_t *n_crops, mer_err *err) {
    *out = NULL;
    if (n < 1 || n > 100000) return mer__errf(err, MER_E_ARG, "%s: frame count %d out of range", path, n);
    mer_video *v = NULL;
    uint8_t *rgb = NULL;
    int64_t *idx = NULL;
    mer_status st;
    mer_face_report *r = calloc(1, sizeof *r);
    if (!r) return mer__errf(err, MER_E_NOMEM, "out of memory");
    if ((st = mer_video_open(path, &v, err))) goto fail;
    const mer_video_info *in = mer_video_get_info(v);
    size_t fsz = (size_t)in->width * in->height * 3;
    rgb = malloc(fsz);
    idx = malloc((size_t)n * sizeof *idx);
    r->frames = calloc((size_t)n, sizeof *r->frames);
    if (!rgb || !idx || !r->frames) goto nomem;
    r->n_frames = (size_t)n;
    mer_video_sample_indices(in->n_frames, n, idx);
    for (int t = 0; t < n; t++) {
        mer_face_frame *fr = &r->frames[t];
        fr->index = idx[t];
        fr->time = in->fps > 0 ? (double)idx[t] / in->fps : 0;
        fr->main = -1;
        if (t > 0 && idx[t] == idx[t - 1]) { /* a repeated index (short video): same result */
            const mer_face_frame *pf = &r->frames[t - 1];
            if (pf->n_boxes) {
                if (!(fr->boxes = malloc(pf->n_boxes * sizeof *fr->boxes)) ||
                    !(fr->probs = malloc(pf->n_boxes * sizeof *fr->probs)))
                    goto nomem;
                memcpy(fr->boxes, pf->boxes, pf->n_boxes * sizeof *fr->boxes);
                memcpy(fr->probs, pf->probs, pf->n_boxes * sizeof *fr->probs);
                fr->n_boxes = pf->n_boxes;
            }
            continue;
        }
        if ((st = mer_video_read(v, &idx[t], 1, 0, 0, rgb, err))) goto fail;
        mer_face_box *b = NULL;
        size_t nb = 0;
        if ((st = mer_face_detect(f, rgb, in->width, in->height, (size_t)in->width * 3, &b, &nb, err))) goto fail;
        size_t k = 0;
        for (size_t i = 0; i < nb; i++) /* faces with an empty crop (outside the picture) are dropped */
            if (b[i].crop_w > 0 && b[i].crop_h > 0) b[k++] = b[i];
        fr->boxes = b;
        fr->n_boxes = k;
        if (k && !(fr->probs = malloc(k * sizeof *fr->probs))) goto nomem;
        for (size_t i = 0; i < k; i++)
            if ((st = mer_face_expressions(f, rgb, in->width, in->height, (size_t)in->width * 3, &b[i], fr->probs[i], err)))
                goto fail;
    }
    if ((st = mer_face_summarize(r, err))) goto fail;
    if (crop_size > 0) {
        size_t csz = (size_t)crop_size * crop_size * 3;
        *n_crops = 0;
        if (!(*crops = malloc(csz * (size_t)n))) goto nomem;
        for (int t = 0; t < n; t++) {
            const mer_face_frame *fr = &r->frames[t];
            if (fr->main < 0) continue;
            if ((st = mer_video_read(v, &idx[t], 1, 0, 0, rgb, err)) ||
                (st = mer_face_crop_bgr(rgb, in->width, in->height, (size_t)in->width * 3, &fr->boxes[fr->main],
                                        crop_size, *crops + *n_crops * csz, err))) {
                free(*crops);
                *crops = NULL;
                goto fail;
            }
            (*n_crops)++;
        }
    }
    free(idx);
    free(rgb);
    mer_video_close(v);
    *out = r;
    return MER_OK;
nomem:
    st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
fail:
    free(idx);
    free(rgb);
    mer_video_close(v);
    mer_face_report_free(r);
    return st;
}

mer_status mer_face_run_video(mer_face *f, const char *path, int n, mer_face_report **out, mer_err *err) {
    return analyze(f, path, n, 0, out, NULL, NULL, err);
}

mer_status mer_face_video_crops(mer_face *f, const char *path, int n, int size, uint8_t **crops, size_t *n_crops,
                                mer_err *err) {
    *crops = NULL;
    *n_crops = 0;
    if (size < 1 || size > 4096) return mer__errf(err, MER_E_ARG, "crop size %d out of range", size);
    mer_face_report *r = NULL;
    mer_status st = analyze(f, path, n, size, &r, crops, n_crops, err);
    mer_face_report_free(r);
    return st;
}

mer_status mer_face_write_crops(mer_face *f, const char *path, int n, int size, const char *out_npy,
                                size_t *n_written, mer_err *err) {
    *n_written = 0;
    if (size < 1 || size > 4096) return mer__errf(err, MER_E_ARG, "crop size %d out of range", size);
    uint8_t *crops = NULL;
    size_t nc = 0;
    mer_status st = mer_face_video_crops(f, path, n, size, &crops, &nc, err);
    if (st) return st;
    mer_buf b = {0};
    int64_t shape[4] = {(int64_t)nc, size, size, 3};
    if (mer__npy_write(&b, "|u1", 4, shape, crops, nc * (size_t)size * size * 3))
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", out_npy);
    else
        st = mer__write_file_atomic(out_npy, b.data, b.len, err);
    if (!st) *n_written = nc;
    mer__buf_free(&b);
    free(crops);
    return st;
}

#endif
