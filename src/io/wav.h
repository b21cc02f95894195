/* wav.h - a small WAV (RIFF/WAVE) reader and the audio front end of AffectGPT's HuBERT input:
 *  - mer_wav_decode / mer_wav_read: PCM 8 (unsigned) / 16 / 24 / 32-bit integer and IEEE float 32 / 64
 *    bit, plain or WAVE_FORMAT_EXTENSIBLE, any channel count and rate, to f32 scaled as torchaudio.load
 *    does (int16 / 32768, int24 / 2^23, int32 / 2^31, (u8 - 128) / 128);
 *  - mer_resample: torchaudio.functional.resample's default method, a windowed sinc (Hann window,
 *    lowpass_filter_width 6, rolloff 0.99) applied as a polyphase filter at the rate ratio reduced by
 *    the gcd; output length ceil(n * new / orig);
 *  - mer_wav_load_16k_mono: read, resample every channel to 16 kHz, then average the channels.
 * Every chunk size and offset is checked against the file size; a data chunk claiming more bytes than
 * the file holds (streamed WAVs) is read up to the end of the file. Pure functions, thread-safe. */
#ifndef MER_IO_WAV_H
#define MER_IO_WAV_H

#include "core/core.h"

typedef struct mer_wav {
    float *data;     /* [n_frames][channels], interleaved; caller frees with mer_wav_free */
    size_t n_frames;
    int channels;
    int rate;        /* samples per second */
    int bits;        /* bits per sample in the file */
    int is_float;    /* IEEE float samples */
} mer_wav;

/* Decodes a WAV image buf[0..n); name is used in messages ("<name>: ... at offset N"). */
mer_status mer_wav_decode(const char *name, const uint8_t *buf, size_t n, mer_wav *out, mer_err *err);
/* Reads a WAV file. */
mer_status mer_wav_read(const char *path, mer_wav *out, mer_err *err);
void mer_wav_free(mer_wav *w);

/* Resamples n samples of x from rate `from` to rate `to` (torchaudio's sinc_interp_hann, width 6,
 * rolloff 0.99) into a new array *y of *ny = ceil(n * to' / from') samples (rates reduced by their gcd);
 * from == to copies. Common rate pairs use a precomputed filter bank; pairs whose bank would exceed 2^22
 * taps (e.g. 44101 -> 16000) compute each output's taps on the fly (slow but the same). Caller frees *y. */
mer_status mer_resample(const float *x, size_t n, int from, int to, float **y, size_t *ny, mer_err *err);

/* The waveform AffectGPT gives HuBERT: the file's channels each resampled to 16 kHz, then averaged.
 * Caller frees *y. */
mer_status mer_wav_load_16k_mono(const char *path, float **y, size_t *n, mer_err *err);

/* AffectGPT's 8 clips of 2 s (pytorchvideo ConstantClipsPerVideoSampler(2, 8) over a 16 kHz waveform of
 * n samples, duration D = n / 16000): clip i starts at sample floor(16000 * i * max(D - 2, 0) / 7)
 * (exact rational arithmetic on the float D - 2, as Fraction does) and is 32000 samples long, zero past
 * the end of the waveform. clips is [n_clips][clip_len]; clip_len = 2 * rate, here 32000. Generalised:
 * n_clips clips of clip_sec seconds at `rate`. */
void mer_audio_clips(const float *wav, size_t n, int rate, int n_clips, int clip_sec, float *clips);
/* The start sample of clip i of that rule. */
size_t mer_audio_clip_start(size_t n, int rate, int n_clips, int clip_sec, int i);

#endif
