/* video.c - the FFmpeg frame reader behind mer_video_* (see video.h): open + count by demuxing, frame
 * access by keyframe seek and forward decoding (or sequential decoding for streams without
 * timestamps), RGB24 conversion and resizing by swscale. */
#include "media/video.h"
#include "core/sampling.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <string.h>

#define MAX_SIDE 8192 /* largest frame width or height accepted */

struct mer_video {
    char *path;
    mer_video_info info;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    int stream;
    AVPacket *pkt;
    AVFrame *frame;
    struct SwsContext *sws;
    uint8_t *tmp;     /* conversion buffer with padded rows (swscale may write past a row's end) */
    size_t tmp_cap;
    int64_t *pts;     /* [n_frames] presentation timestamps, ascending (seek mode) */
    int64_t *key_pts; /* keyframe timestamps, ascending */
    size_t n_key;
    int seek_mode;    /* every packet had a distinct timestamp */
    /* decoder position */
    int64_t last_pts; /* timestamp of the last frame output (seek mode), INT64_MIN if none */
    int64_t next_idx; /* index of the next frame out (sequential mode) */
    int eof_sent;
};

static const char *averr(int e, char *buf, size_t cap) {
    if (av_strerror(e, buf, cap) < 0) snprintf(buf, cap, "error %d", e);
    return buf;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void close_decoder(mer_video *v) {
    avcodec_free_context(&v->dec);
    avformat_close_input(&v->fmt);
}

/* (Re)opens the demuxer and decoder at the start of the file. */
static mer_status open_decoder(mer_video *v, mer_err *err) {
    char eb[128];
    close_decoder(v);
    int r = avformat_open_input(&v->fmt, v->path, NULL, NULL);
    if (r < 0) {
        mer_status st = r == AVERROR(ENOENT) || r == AVERROR(EACCES) || r == AVERROR(EISDIR) ? MER_E_IO : MER_E_FORMAT;
        return mer__errf(err, st, "%s: %s", v->path,
                         st == MER_E_FORMAT ? "not a media file FFmpeg can read" : averr(r, eb, sizeof eb));
    }
    if ((r = avformat_find_stream_info(v->fmt, NULL)) < 0)
        return mer__errf(err, MER_E_FORMAT, "%s: cannot read stream info: %s", v->path, averr(r, eb, sizeof eb));
    const AVCodec *codec = NULL;
    r = av_find_best_stream(v->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (r < 0 || (v->fmt->streams[r]->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
        if (r == AVERROR_DECODER_NOT_FOUND)
            return mer__errf(err, MER_E_UNSUPPORTED, "%s: no decoder for its video stream", v->path);
        return mer__errf(err, MER_E_NOTFOUND, "%s: no video stream", v->path);
    }
    v->stream = r;
    AVStream *s = v->fmt->streams[r];
    if (!(v->dec = avcodec_alloc_context3(codec))) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", v->path);
    if ((r = avcodec_parameters_to_context(v->dec, s->codecpar)) < 0)
        return mer__errf(err, MER_E_FORMAT, "%s: bad codec parameters: %s", v->path, averr(r, eb, sizeof eb));
    v->dec->thread_count = 1;
    if ((r = avcodec_open2(v->dec, codec, NULL)) < 0)
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: cannot open the %s decoder: %s", v->path, codec->name,
                         averr(r, eb, sizeof eb));
    for (unsigned i = 0; i < v->fmt->nb_streams; i++)
        v->fmt->streams[i]->discard = (int)i == v->stream ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
    v->last_pts = INT64_MIN;
    v->next_idx = 0;
    v->eof_sent = 0;
    return MER_OK;
}

mer_status mer_video_open(const char *path, mer_video **out, mer_err *err) {
    *out = NULL;
    char eb[128];
    mer_status st = MER_OK;
    size_t cap = 0, ncap = 0, n = 0;
    int64_t *ts = NULL;
    mer_video *v = calloc(1, sizeof *v);
    if (!v || !(v->path = mer__strndup(path, strlen(path))) || !(v->pkt = av_packet_alloc()) ||
        !(v->frame = av_frame_alloc())) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    av_log_set_level(AV_LOG_QUIET);
    if ((st = open_decoder(v, err))) goto fail;
    AVStream *s = v->fmt->streams[v->stream];
    /* count the frames: demux every packet of the stream */
    int all_ts = 1, r;
    while ((r = av_read_frame(v->fmt, v->pkt)) >= 0) {
        if (v->pkt->stream_index == v->stream && v->pkt->size > 0 && !(v->pkt->flags & AV_PKT_FLAG_DISCARD)) {
            int64_t t = v->pkt->pts != AV_NOPTS_VALUE ? v->pkt->pts : AV_NOPTS_VALUE;
            if (t == AV_NOPTS_VALUE) all_ts = 0;
            if (n == cap) {
                size_t nc = cap ? 2 * cap : 1024;
                int64_t *q = realloc(ts, nc * sizeof *q);
                if (!q) { av_packet_unref(v->pkt); st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path); goto fail; }
                ts = q;
                cap = nc;
            }
            ts[n++] = t;
            if ((v->pkt->flags & AV_PKT_FLAG_KEY) && t != AV_NOPTS_VALUE) {
                if (v->n_key == ncap) {
                    size_t nc = ncap ? 2 * ncap : 64;
                    int64_t *q = realloc(v->key_pts, nc * sizeof *q);
                    if (!q) { av_packet_unref(v->pkt); st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path); goto fail; }
                    v->key_pts = q;
                    ncap = nc;
                }
                v->key_pts[v->n_key++] = t;
            }
        }
        av_packet_unref(v->pkt);
    }
    if (r != AVERROR_EOF) {
        st = mer__errf(err, MER_E_FORMAT, "%s: corrupt after %zu video packets: %s", path, n, averr(r, eb, sizeof eb));
        goto fail;
    }
    if (n == 0) {
        st = mer__errf(err, MER_E_FORMAT, "%s: the video stream has no frames", path);
        goto fail;
    }
    if (all_ts && v->n_key > 0) {
        qsort(ts, n, sizeof *ts, cmp_i64);
        qsort(v->key_pts, v->n_key, sizeof *v->key_pts, cmp_i64);
        v->seek_mode = 1;
        for (size_t i = 1; i < n; i++)
            if (ts[i] == ts[i - 1]) v->seek_mode = 0;
    }
    if (v->seek_mode) {
        v->pts = ts;
        ts = NULL;
    }
    mer_video_info *in = &v->info;
    in->width = v->dec->width;
    in->height = v->dec->height;
    in->n_frames = (int64_t)n;
    double dur = 0;
    if (s->duration != AV_NOPTS_VALUE && s->duration > 0) dur = (double)s->duration * av_q2d(s->time_base);
    else if (v->fmt->duration != AV_NOPTS_VALUE && v->fmt->duration > 0) dur = (double)v->fmt->duration / AV_TIME_BASE;
    double fps = s->avg_frame_rate.num > 0 && s->avg_frame_rate.den > 0 ? av_q2d(s->avg_frame_rate)
                 : s->r_frame_rate.num > 0 && s->r_frame_rate.den > 0 ? av_q2d(s->r_frame_rate)
                                                                       : 0;
    if (fps <= 0 && dur > 0) fps = (double)n / dur;
    if (dur <= 0 && fps > 0) dur = (double)n / fps;
    in->fps = fps;
    in->duration = dur;
    snprintf(in->codec, sizeof in->codec, "%s", v->dec->codec->name);
    snprintf(in->container, sizeof in->container, "%s", v->fmt->iformat->name);
    /* 8K is the largest real video; a header claiming more would make every reader allocate gigabytes */
    if (in->width <= 0 || in->height <= 0 || in->width > MAX_SIDE || in->height > MAX_SIDE) {
        st = mer__errf(err, MER_E_UNSUPPORTED, "%s: frame size %dx%d (at most %dx%d)", path, in->width, in->height,
                       MAX_SIDE, MAX_SIDE);
        goto fail;
    }
    if ((st = open_decoder(v, err))) goto fail; /* back to the start */
    free(ts);
    *out = v;
    return MER_OK;
fail:
    free(ts);
    mer_video_close(v);
    return st;
}

void mer_video_close(mer_video *v) {
    if (!v) return;
    close_decoder(v);
    av_packet_free(&v->pkt);
    av_frame_free(&v->frame);
    sws_freeContext(v->sws);
    av_free(v->tmp);
    free(v->pts);
    free(v->key_pts);
    free(v->path);
    free(v);
}

const mer_video_info *mer_video_get_info(const mer_video *v) { return &v->info; }

/* Decodes the next frame into v->frame. Returns 0, 1 at the end of the stream, or a negative AVERROR. */
static int next_frame(mer_video *v) {
    for (;;) {
        int r = avcodec_receive_frame(v->dec, v->frame);
        if (r == 0) return 0;
        if (r == AVERROR_EOF) return 1;
        if (r != AVERROR(EAGAIN)) return r;
        if (v->eof_sent) return 1;
        for (;;) {
            r = av_read_frame(v->fmt, v->pkt);
            if (r == AVERROR_EOF) {
                v->eof_sent = 1;
                avcodec_send_packet(v->dec, NULL);
                break;
            }
            if (r < 0) return r;
            if (v->pkt->stream_index != v->stream) {
                av_packet_unref(v->pkt);
                continue;
            }
            r = avcodec_send_packet(v->dec, v->pkt);
            av_packet_unref(v->pkt);
            if (r < 0 && r != AVERROR(EAGAIN) && r != AVERROR_INVALIDDATA) return r;
            break;
        }
    }
}

/* Converts v->frame to RGB24 ow x oh into dst. */
static mer_status convert(mer_video *v, int ow, int oh, uint8_t *dst, mer_err *err) {
    AVFrame *f = v->frame;
    v->sws = sws_getCachedContext(v->sws, f->width, f->height, (enum AVPixelFormat)f->format, ow, oh, AV_PIX_FMT_RGB24,
                                  SWS_BILINEAR, NULL, NULL, NULL);
    if (!v->sws) return mer__errf(err, MER_E_UNSUPPORTED, "%s: cannot convert %s frames to RGB", v->path,
                                  av_get_pix_fmt_name((enum AVPixelFormat)f->format));
    /* the frame's colour matrix and range, as the ffmpeg command line's scale filter takes them */
    int *inv, src_range, *tbl, dst_range, bri, con, sat;
    if (sws_getColorspaceDetails(v->sws, &inv, &src_range, &tbl, &dst_range, &bri, &con, &sat) >= 0) {
        const int *coef = sws_getCoefficients(f->colorspace);
        int full = f->color_range == AVCOL_RANGE_JPEG ? 1 : src_range;
        sws_setColorspaceDetails(v->sws, coef, full, tbl, dst_range, bri, con, sat);
    }
    size_t line = ((size_t)3 * ow + 63) / 64 * 64 + 64, need = line * ((size_t)oh + 2);
    if (need > v->tmp_cap) {
        av_free(v->tmp);
        v->tmp_cap = 0;
        if (!(v->tmp = av_malloc(need))) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", v->path);
        v->tmp_cap = need;
    }
    uint8_t *planes[4] = {v->tmp, NULL, NULL, NULL};
    int lines[4] = {(int)line, 0, 0, 0};
    int r = sws_scale(v->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, planes, lines);
    if (r != oh) return mer__errf(err, MER_E_FORMAT, "%s: frame conversion failed", v->path);
    for (int y = 0; y < oh; y++) memcpy(dst + (size_t)y * 3 * ow, v->tmp + (size_t)y * line, (size_t)3 * ow);
    return MER_OK;
}

/* Positions the decoder so that frame `i` comes out and decodes it into v->frame. */
static mer_status decode_index(mer_video *v, int64_t i, mer_err *err) {
    char eb[128];
    mer_status st;
    if (v->seek_mode) {
        int64_t target = v->pts[i];
        /* the last keyframe at or before the target */
        size_t lo = 0, hi = v->n_key;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (v->key_pts[mid] <= target) lo = mid + 1;
            else hi = mid;
        }
        int64_t key = lo ? v->key_pts[lo - 1] : v->key_pts[0];
        int need_seek = !(v->last_pts != INT64_MIN && v->last_pts < target && key <= v->last_pts);
        for (int attempt = 0; attempt < 2; attempt++) {
            if (need_seek) {
                if (attempt == 0 && av_seek_frame(v->fmt, v->stream, key, AVSEEK_FLAG_BACKWARD) >= 0) {
                    avcodec_flush_buffers(v->dec);
                    v->eof_sent = 0;
                } else if ((st = open_decoder(v, err))) {
                    return st;
                }
                v->last_pts = INT64_MIN;
            }
            for (;;) {
                int r = next_frame(v);
                if (r < 0)
                    return mer__errf(err, MER_E_FORMAT, "%s: decoding failed before frame %lld: %s", v->path,
                                     (long long)i, averr(r, eb, sizeof eb));
                if (r == 1) break;
                int64_t t = v->frame->best_effort_timestamp;
                if (t == AV_NOPTS_VALUE) t = v->frame->pts;
                if (t == AV_NOPTS_VALUE) break;
                v->last_pts = t;
                if (t == target) return MER_OK;
                if (t > target && attempt == 0 && v->last_pts != INT64_MIN) {
                    /* overshot after the seek (the keyframe index lied): retry from the file start */
                    break;
                }
            }
            need_seek = 1;
        }
        /* timestamps did not lead to the frame: count frames from the start instead */
        v->seek_mode = 0;
        if ((st = open_decoder(v, err))) return st;
    }
    if (i < v->next_idx)
        if ((st = open_decoder(v, err))) return st;
    for (;;) {
        int r = next_frame(v);
        if (r < 0)
            return mer__errf(err, MER_E_FORMAT, "%s: decoding failed before frame %lld: %s", v->path, (long long)i,
                             averr(r, eb, sizeof eb));
        if (r == 1)
            return mer__errf(err, MER_E_FORMAT, "%s: the decoder gave %lld of %lld frames", v->path,
                             (long long)v->next_idx, (long long)v->info.n_frames);
        if (v->next_idx++ == i) return MER_OK;
    }
}

mer_status mer_video_read(mer_video *v, const int64_t *idx, size_t n, int out_w, int out_h, uint8_t *rgb,
                          mer_err *err) {
    if (out_w == 0 && out_h == 0) {
        out_w = v->info.width;
        out_h = v->info.height;
    }
    if (out_w < 1 || out_h < 1 || out_w > MAX_SIDE || out_h > MAX_SIDE)
        return mer__errf(err, MER_E_ARG, "%s: bad output size %dx%d", v->path, out_w, out_h);
    size_t fsz = (size_t)out_w * out_h * 3;
    /* visit the indices in ascending order so the decoder only moves forward */
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", v->path);
    for (size_t k = 0; k < n; k++) {
        order[k] = k;
        if (idx[k] < 0 || idx[k] >= v->info.n_frames) {
            free(order);
            return mer__errf(err, MER_E_RANGE, "%s: frame %lld is outside the video's %lld frames", v->path,
                             (long long)idx[k], (long long)v->info.n_frames);
        }
    }
    for (size_t a = 1; a < n; a++) /* insertion sort by index: n is small (frames to sample) */
        for (size_t b = a; b > 0 && idx[order[b]] < idx[order[b - 1]]; b--) {
            size_t t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    mer_status st = MER_OK;
    for (size_t k = 0; k < n; k++) {
        size_t j = order[k];
        if (k > 0 && idx[order[k - 1]] == idx[j]) {
            memcpy(rgb + j * fsz, rgb + order[k - 1] * fsz, fsz);
            continue;
        }
        if ((st = decode_index(v, idx[j], err)) || (st = convert(v, out_w, out_h, rgb + j * fsz, err))) break;
    }
    free(order);
    return st;
}

void mer_video_sample_indices(int64_t n_frames, int n, int64_t *idx) { mer__frame_indices(n_frames, n, idx); }
