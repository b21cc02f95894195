/* sampling.h - AffectGPT's frame sampling rule, shared by the media layer, the encoders' feature
 * command and the pipeline (spec §4.2): for a video (or face array) of n_total frames, k = min(n_want,
 * n_total) indices np.arange(0, n_total, n_total / k).astype(int) (numpy's float step and length), padded
 * to n_want by repeating the last. The audio clip rule is mer_audio_clips in io/wav.h. */
#ifndef MER_CORE_SAMPLING_H
#define MER_CORE_SAMPLING_H

#include <stdint.h>

/* Fills idx[0..n_want) (n_total >= 1, n_want >= 1). */
void mer__frame_indices(int64_t n_total, int n_want, int64_t *idx);

#endif
