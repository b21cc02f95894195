/* audio.c - FFmpeg audio decoding to a mono float waveform (see audio.h). Channels are kept through
 * resampling (float planar) and averaged at the end, so that the result is the mean of the
 * per-channel signals, as the reference computes it after torchaudio.load. */
#include "media/audio.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <string.h>

typedef struct fbuf {
    float *p;
    size_t n, cap;
} fbuf;

static int fbuf_push(fbuf *b, float v) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1 << 16;
        float *q = realloc(b->p, cap * sizeof *q);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    b->p[b->n++] = v;
    return 0;
}

static const char *averr(int e, char *buf, size_t cap) {
    av_strerror(e, buf, cap);
    return buf;
}

/* Appends the mean over channels of ns samples of planar float data. */
static int push_planes(fbuf *b, uint8_t **planes, int n_ch, int ns) {
    for (int i = 0; i < ns; i++) {
        double s = 0;
        for (int c = 0; c < n_ch; c++) s += ((const float *)planes[c])[i];
        if (fbuf_push(b, (float)(s / n_ch))) return -1;
    }
    return 0;
}

mer_status mer__audio_decode(const char *path, int rate, float **out, size_t *n, mer_err *err) {
    *out = NULL;
    *n = 0;
    AVFormatContext *fmt = NULL;
    AVCodecContext *dec = NULL;
    SwrContext *swr = NULL;
    AVPacket *pkt = NULL;
    AVFrame *frm = NULL;
    uint8_t **conv = NULL;
    int conv_cap = 0, n_ch = 0;
    fbuf b = {0};
    mer_status st = MER_OK;
    char eb[128];
    int e;
    av_log_set_level(AV_LOG_QUIET);
    if ((e = avformat_open_input(&fmt, path, NULL, NULL)) < 0) {
        st = mer__errf(err, e == AVERROR(ENOENT) ? MER_E_IO : MER_E_FORMAT, "%s: cannot open: %s", path, averr(e, eb, sizeof eb));
        goto done;
    }
    if ((e = avformat_find_stream_info(fmt, NULL)) < 0) {
        st = mer__errf(err, MER_E_FORMAT, "%s: cannot read stream info: %s", path, averr(e, eb, sizeof eb));
        goto done;
    }
    const AVCodec *codec = NULL;
    int si = av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (si < 0 || !codec) {
        st = mer__errf(err, MER_E_FORMAT, "%s: no audio stream", path);
        goto done;
    }
    if (!(dec = avcodec_alloc_context3(codec)) || avcodec_parameters_to_context(dec, fmt->streams[si]->codecpar) < 0 ||
        (e = avcodec_open2(dec, codec, NULL)) < 0) {
        st = mer__errf(err, MER_E_FORMAT, "%s: cannot open the audio decoder", path);
        goto done;
    }
    n_ch = dec->ch_layout.nb_channels;
    if (n_ch < 1 || dec->sample_rate < 1) {
        st = mer__errf(err, MER_E_FORMAT, "%s: audio stream with %d channels at %d Hz", path, n_ch, dec->sample_rate);
        goto done;
    }
    if (swr_alloc_set_opts2(&swr, &dec->ch_layout, AV_SAMPLE_FMT_FLTP, rate, &dec->ch_layout, dec->sample_fmt,
                            dec->sample_rate, 0, NULL) < 0 || swr_init(swr) < 0) {
        st = mer__errf(err, MER_E_FORMAT, "%s: cannot set up resampling from %d Hz", path, dec->sample_rate);
        goto done;
    }
    conv = calloc((size_t)n_ch, sizeof *conv);
    pkt = av_packet_alloc();
    frm = av_frame_alloc();
    if (!conv || !pkt || !frm) goto nomem;
    int flushing = 0;
    for (;;) {
        if (!flushing) {
            e = av_read_frame(fmt, pkt);
            if (e < 0) {
                flushing = 1;
                avcodec_send_packet(dec, NULL);
            } else {
                if (pkt->stream_index == si && (e = avcodec_send_packet(dec, pkt)) < 0 && e != AVERROR(EAGAIN)) {
                    av_packet_unref(pkt);
                    st = mer__errf(err, MER_E_FORMAT, "%s: corrupt audio data: %s", path, averr(e, eb, sizeof eb));
                    goto done;
                }
                av_packet_unref(pkt);
            }
        }
        for (;;) {
            e = avcodec_receive_frame(dec, frm);
            if (e == AVERROR(EAGAIN) || e == AVERROR_EOF) break;
            if (e < 0) {
                st = mer__errf(err, MER_E_FORMAT, "%s: cannot decode audio: %s", path, averr(e, eb, sizeof eb));
                goto done;
            }
            int need = swr_get_out_samples(swr, frm->nb_samples);
            if (need > conv_cap) {
                for (int c = 0; c < n_ch; c++) {
                    free(conv[c]);
                    if (!(conv[c] = malloc((size_t)need * sizeof(float)))) goto nomem;
                }
                conv_cap = need;
            }
            int got = swr_convert(swr, conv, conv_cap, (const uint8_t **)frm->extended_data, frm->nb_samples);
            av_frame_unref(frm);
            if (got < 0) {
                st = mer__errf(err, MER_E_FORMAT, "%s: resampling failed", path);
                goto done;
            }
            if (push_planes(&b, conv, n_ch, got)) goto nomem;
        }
        if (flushing && e == AVERROR_EOF) break;
        if (flushing && e == AVERROR(EAGAIN)) break;
    }
    /* drain the resampler */
    for (;;) {
        if (conv_cap < 4096) {
            for (int c = 0; c < n_ch; c++) {
                free(conv[c]);
                if (!(conv[c] = malloc(4096 * sizeof(float)))) goto nomem;
            }
            conv_cap = 4096;
        }
        int got = swr_convert(swr, conv, conv_cap, NULL, 0);
        if (got <= 0) break;
        if (push_planes(&b, conv, n_ch, got)) goto nomem;
    }
    *out = b.p;
    *n = b.n;
    b.p = NULL;
    goto done;
nomem:
    st = mer__errf(err, MER_E_NOMEM, "%s: out of memory while decoding audio", path);
done:
    if (conv)
        for (int c = 0; c < n_ch; c++) free(conv[c]);
    free(conv);
    free(b.p);
    av_frame_free(&frm);
    av_packet_free(&pkt);
    swr_free(&swr);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    return st;
}
