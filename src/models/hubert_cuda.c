/* hubert_cuda.c - the HuBERT encoder on a CUDA device (see hubert_cuda.h). The device path is being
 * written; until it lands every build answers MER_E_UNSUPPORTED. */
#include "models/hubert_cuda.h"

static mer_status no_cuda(mer_err *err) {
    return mer__errf(err, MER_E_UNSUPPORTED, "hubert cuda: mer was built without CUDA (make CUDA=1)");
}

mer_status mer_hubert_cuda_from_model(const mer_hubert *m, struct mer_cuda *c, int max_clips, long max_samples,
                                      mer_dtype wtype, mer_hubert_cuda **out, mer_err *err) {
    (void)m, (void)c, (void)max_clips, (void)max_samples, (void)wtype;
    if (out) *out = NULL;
    return no_cuda(err);
}
void mer_hubert_cuda_free(mer_hubert_cuda *g) { (void)g; }
const mer_hubert_hparams *mer_hubert_cuda_hparams(const mer_hubert_cuda *g) {
    (void)g;
    return NULL;
}
mer_status mer_hubert_cuda_encode(mer_hubert_cuda *g, const float *clips, int n_clips, long clip_len,
                                  const mer_hubert_out *out, int *n_frames, mer_err *err) {
    (void)g, (void)clips, (void)n_clips, (void)clip_len, (void)out;
    if (n_frames) *n_frames = 0;
    return no_cuda(err);
}
mer_status mer_hubert_cuda_pool(mer_hubert_cuda *g, const float *clips, int n_clips, long clip_len, int layer,
                                int hf5, float *feats, mer_err *err) {
    (void)g, (void)clips, (void)n_clips, (void)clip_len, (void)layer, (void)hf5, (void)feats;
    return no_cuda(err);
}
