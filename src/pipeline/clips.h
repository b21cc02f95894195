/* clips.h - AffectGPT's input sampling rules, free of any decoder (spec §4.2):
 *  - frame indices: n = min(N, vlen) indices floor(i·vlen/n) (numpy arange(0, vlen, vlen/n) cast to
 *    int), padded to N by repeating the last one;
 *  - audio clips: pytorchvideo ConstantClipsPerVideoSampler(2 s, 8 clips) on a 16 kHz waveform
 *    zero-padded to at least 2 s: clip i starts at int(start_i·sr) with start_i = i·max(D−2,0)/7 where
 *    D = n/sr is a Python float and the arithmetic is exact (Fractions), then 2 s of samples. */
#ifndef MER_PIPELINE_CLIPS_H
#define MER_PIPELINE_CLIPS_H

#include <stddef.h>
#include <stdint.h>

/* Fills idx[0..n_out) with the frame indices for a video of vlen frames (vlen >= 1). */
void mer__frame_indices(int64_t vlen, int n_out, int64_t *idx);

/* Start sample of clip i (0 <= i < n_clips) for a waveform of n samples at rate sr (n >= clip
 * length), clip length clip_s seconds (an integer number of seconds). */
int64_t mer__clip_start(int64_t n, int sr, int clip_s, int i, int n_clips);

/* Cuts n_clips clips of clip_s seconds from wav[0..n) into out[n_clips][clip_s·sr] (zero-padding the
 * waveform to one clip length when it is shorter, and any clip that would run past the end). */
void mer__audio_clips(const float *wav, int64_t n, int sr, int clip_s, int n_clips, float *out);

#endif
