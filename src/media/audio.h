/* audio.h - decodes the audio of any file FFmpeg reads (a .wav, or the audio stream of a video) to a
 * mono float waveform at a chosen rate: each channel converted to float ([-1, 1), int16 / 32768 like
 * torchaudio), resampled with libswresample if the rate differs, then channels averaged (torch mean). */
#ifndef MER_MEDIA_AUDIO_H
#define MER_MEDIA_AUDIO_H

#include "core/core.h"

/* Decodes `path` to mono float at `rate` Hz. *out (caller frees with free()) holds *n samples; a
 * stream with no samples gives *n = 0 and *out = NULL with MER_OK. Errors: no such file, no audio
 * stream, undecodable data - one line naming the file. */
mer_status mer__audio_decode(const char *path, int rate, float **out, size_t *n, mer_err *err);

#endif
