/* wav.c - RIFF/WAVE parsing, sample conversion, torchaudio-compatible sinc resampling and AffectGPT's
 * 2-second clip sampling (see wav.h). */
#include "io/wav.h"

#include <math.h>
#include <string.h>

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

void mer_wav_free(mer_wav *w) {
    if (!w) return;
    free(w->data);
    memset(w, 0, sizeof *w);
}

mer_status mer_wav_decode(const char *name, const uint8_t *buf, size_t n, mer_wav *out, mer_err *err) {
    memset(out, 0, sizeof *out);
    if (n < 12 || memcmp(buf, "RIFF", 4) || memcmp(buf + 8, "WAVE", 4))
        return mer__errf(err, MER_E_FORMAT, "%s: not a RIFF/WAVE file (offset 0)", name);
    int have_fmt = 0, fmt_tag = 0, ch = 0, bits = 0, block = 0;
    uint32_t rate = 0;
    size_t data_off = 0, data_len = 0;
    int have_data = 0;
    size_t off = 12;
    while (off + 8 <= n) {
        uint32_t sz = rd32(buf + off + 4);
        size_t body = off + 8, avail = n - body;
        if (!memcmp(buf + off, "fmt ", 4)) {
            if (sz < 16 || sz > avail)
                return mer__errf(err, MER_E_FORMAT, "%s: fmt chunk of %u bytes at offset %zu is truncated or too short",
                                 name, sz, off);
            const uint8_t *f = buf + body;
            fmt_tag = rd16(f);
            ch = rd16(f + 2);
            rate = rd32(f + 4);
            block = rd16(f + 12);
            bits = rd16(f + 14);
            if (fmt_tag == 0xFFFE) { /* WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the tag */
                if (sz < 40)
                    return mer__errf(err, MER_E_FORMAT, "%s: extensible fmt chunk of %u bytes at offset %zu is too short",
                                     name, sz, off);
                fmt_tag = rd16(f + 24);
            }
            have_fmt = 1;
        } else if (!memcmp(buf + off, "data", 4)) {
            data_off = body;
            data_len = sz <= avail ? sz : avail; /* streamed files may claim more than they hold */
            have_data = 1;
            break;
        }
        size_t step;
        if (mer__add_ovf(body, (size_t)sz + (sz & 1), &step) || step > n) break;
        off = step;
    }
    if (!have_fmt) return mer__errf(err, MER_E_FORMAT, "%s: no fmt chunk before the data", name);
    if (!have_data) return mer__errf(err, MER_E_FORMAT, "%s: no data chunk", name);
    int is_float = fmt_tag == 3;
    if (fmt_tag != 1 && fmt_tag != 3)
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: WAV format tag %d (PCM 1 and IEEE float 3 are supported)", name,
                         fmt_tag);
    if (ch < 1 || ch > 64) return mer__errf(err, MER_E_FORMAT, "%s: %d channels", name, ch);
    if (rate < 1 || rate > 1000000) return mer__errf(err, MER_E_FORMAT, "%s: sample rate %u", name, rate);
    if ((is_float && bits != 32 && bits != 64) || (!is_float && bits != 8 && bits != 16 && bits != 24 && bits != 32))
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: %d-bit %s samples", name, bits, is_float ? "float" : "PCM");
    const int bps = bits / 8;
    if (block != ch * bps)
        return mer__errf(err, MER_E_FORMAT, "%s: block align %d does not match %d channels of %d bits", name, block, ch,
                         bits);
    size_t frames = data_len / (size_t)block, ns = frames * (size_t)ch;
    float *d = malloc(ns ? ns * sizeof(float) : 1);
    if (!d) return mer__errf(err, MER_E_NOMEM, "%s: out of memory for %zu samples", name, ns);
    const uint8_t *p = buf + data_off;
    for (size_t i = 0; i < ns; i++, p += bps) {
        switch (bits) {
        case 8: d[i] = ((int)p[0] - 128) / 128.0f; break;
        case 16: d[i] = (int16_t)rd16(p) / 32768.0f; break;
        case 24: d[i] = (float)((int32_t)((uint32_t)p[0] << 8 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 24) / 2147483648.0); break;
        case 32:
            if (is_float) {
                uint32_t u = rd32(p);
                memcpy(&d[i], &u, 4);
            } else {
                d[i] = (float)((int32_t)rd32(p) / 2147483648.0);
            }
            break;
        case 64: {
            uint64_t u = (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
            double v;
            memcpy(&v, &u, 8);
            d[i] = (float)v;
            break;
        }
        }
    }
    out->data = d;
    out->n_frames = frames;
    out->channels = ch;
    out->rate = (int)rate;
    out->bits = bits;
    out->is_float = is_float;
    return MER_OK;
}

mer_status mer_wav_read(const char *path, mer_wav *out, mer_err *err) {
    mer_map m;
    memset(out, 0, sizeof *out);
    mer_status st = mer__map_open(path, &m, err);
    if (st) return st;
    st = mer_wav_decode(path, m.data, m.size, out, err);
    mer__map_close(&m);
    return st;
}

// --- resampling --------------------------------------------------------------------------------------

static long gcd(long a, long b) {
    while (b) {
        long t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Phase p of torchaudio's windowed-sinc kernel (sinc_interp_hann, lowpass_filter_width 6): for
 * k < K, t = ((k - width) / orig - p / new) * base clamped to +-6, kern = sinc(t) * cos(t pi / 12)^2 *
 * base / orig, computed in f32 step by step as torchaudio does for an f32 waveform. */
static void sinc_phase(float *kern, long p, long K, long width, long orig, long nw, double base) {
    const float basef = (float)base, pif = (float)M_PI, scalef = (float)(base / orig);
    for (long k = 0; k < K; k++) {
        float t = (float)(k - width) / (float)orig + (float)(-p) / (float)nw;
        t *= basef;
        if (t < -6.0f) t = -6.0f;
        if (t > 6.0f) t = 6.0f;
        float c = cosf(t * pif / 6.0f / 2.0f), win = c * c;
        t *= pif;
        float v = t == 0.0f ? 1.0f : sinf(t) / t;
        kern[k] = v * (win * scalef);
    }
}

mer_status mer_resample(const float *x, size_t n, int from, int to, float **y, size_t *ny, mer_err *err) {
    *y = NULL;
    *ny = 0;
    if (from < 1 || to < 1) return mer__errf(err, MER_E_ARG, "resample: rates %d -> %d", from, to);
    if (from == to) {
        float *c = malloc(n ? n * sizeof(float) : 1);
        if (!c) return mer__errf(err, MER_E_NOMEM, "resample: out of memory");
        if (n) memcpy(c, x, n * sizeof(float));
        *y = c;
        *ny = n;
        return MER_OK;
    }
    const long g = gcd(from, to), orig = from / g, nw = to / g;
    const double base = (orig < nw ? orig : nw) * 0.99;
    const long width = (long)ceil(6.0 * orig / base), K = 2 * width + orig;
    /* the whole filter bank when it is small (every common rate pair), else one phase at a time */
    const int bank = (double)K * nw <= (double)(1L << 22);
    if (n > ((size_t)1 << 40) / (size_t)nw)
        return mer__errf(err, MER_E_RANGE, "resample: %zu samples is too long", n);
    size_t n_out = (size_t)(((unsigned long long)n * (unsigned long long)nw + (unsigned long long)orig - 1) / (unsigned long long)orig);
    float *kern = malloc((size_t)(bank ? nw : 1) * K * sizeof(float)), *o = malloc(n_out ? n_out * sizeof(float) : 1);
    if (!kern || !o) {
        free(kern);
        free(o);
        return mer__errf(err, MER_E_NOMEM, "resample: out of memory");
    }
    if (bank)
        for (long p = 0; p < nw; p++) sinc_phase(kern + p * K, p, K, width, orig, nw, base);
    /* y[j*new + p] = sum_k kern[p][k] * x[j*orig + k - width] (zero outside) */
    for (size_t i = 0; i < n_out; i++) {
        long j = (long)(i / (size_t)nw), p = (long)(i % (size_t)nw);
        long s0 = j * orig - width;
        const float *kp = kern;
        if (bank) kp += p * K;
        else sinc_phase(kern, p, K, width, orig, nw, base);
        long k0 = s0 < 0 ? -s0 : 0, k1 = K;
        if (s0 + k1 > (long)n) k1 = (long)n - s0;
        double acc = 0;
        for (long k = k0; k < k1; k++) acc += (double)kp[k] * x[s0 + k];
        o[i] = (float)acc;
    }
    free(kern);
    *y = o;
    *ny = n_out;
    return MER_OK;
}

mer_status mer_wav_load_16k_mono(const char *path, float **y, size_t *n, mer_err *err) {
    mer_wav w;
    *y = NULL;
    *n = 0;
    mer_status st = mer_wav_read(path, &w, err);
    if (st) return st;
    float *chan = malloc(w.n_frames ? w.n_frames * sizeof(float) : 1), *acc = NULL;
    size_t na = 0;
    if (!chan) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int c = 0; c < w.channels; c++) {
        for (size_t i = 0; i < w.n_frames; i++) chan[i] = w.data[i * (size_t)w.channels + c];
        float *r;
        size_t nr;
        if ((st = mer_resample(chan, w.n_frames, w.rate, 16000, &r, &nr, err))) goto done;
        if (!acc) {
            acc = r;
            na = nr;
        } else {
            for (size_t i = 0; i < na; i++) acc[i] += r[i];
            free(r);
        }
    }
    if (w.channels > 1)
        for (size_t i = 0; i < na; i++) acc[i] /= (float)w.channels;
    *y = acc;
    *n = na;
    acc = NULL;
done:
    free(acc);
    free(chan);
    mer_wav_free(&w);
    return st;
}

// --- AffectGPT's clips -------------------------------------------------------------------------------

size_t mer_audio_clip_start(size_t n, int rate, int n_clips, int clip_sec, int i) {
    double dur = (double)n / rate, span = dur - clip_sec;
    if (!(span > 0) || n_clips < 2 || i <= 0) return 0;
    /* floor(i * rate * span / (n_clips - 1)) with span's exact binary value: span = m * 2^e */
    int e;
    double fr = frexp(span, &e); /* span = fr * 2^e, fr in [0.5, 1) */
    __extension__ typedef unsigned __int128 u128;
    uint64_t m = (uint64_t)ldexp(fr, 53);
    e -= 53;
    u128 num = (u128)m * (u128)(unsigned)i * (u128)(unsigned)rate, den = (u128)(unsigned)(n_clips - 1);
    if (e >= 0) {
        if (e > 40) return n; /* absurdly long: clamp */
        num <<= e;
    } else {
        if (-e > 100) return 0;
        den <<= -e;
    }
    u128 q = num / den;
    return q > (u128)n ? n : (size_t)q;
}

void mer_audio_clips(const float *wav, size_t n, int rate, int n_clips, int clip_sec, float *clips) {
    const size_t len = (size_t)clip_sec * (size_t)rate;
    for (int i = 0; i < n_clips; i++) {
        size_t s = mer_audio_clip_start(n, rate, n_clips, clip_sec, i);
        float *c = clips + (size_t)i * len;
        size_t have = s < n ? n - s : 0;
        if (have > len) have = len;
        if (have) memcpy(c, wav + s, have * sizeof(float));
        memset(c + have, 0, (len - have) * sizeof(float));
    }
}
