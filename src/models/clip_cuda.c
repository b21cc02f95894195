/* clip_cuda.c - the CLIP vision tower on a CUDA device (see clip_cuda.h). The device path is being
 * written; until it lands every build answers MER_E_UNSUPPORTED. */
#include "models/clip_cuda.h"

static mer_status no_cuda(mer_err *err) {
    return mer__errf(err, MER_E_UNSUPPORTED, "clip cuda: mer was built without CUDA (make CUDA=1)");
}

mer_status mer_clip_cuda_from_model(const mer_clip *m, struct mer_cuda *c, int max_images, mer_dtype wtype,
                                    mer_clip_cuda **out, mer_err *err) {
    (void)m, (void)c, (void)max_images, (void)wtype;
    if (out) *out = NULL;
    return no_cuda(err);
}
void mer_clip_cuda_free(mer_clip_cuda *g) { (void)g; }
const mer_clip_hparams *mer_clip_cuda_hparams(const mer_clip_cuda *g) {
    (void)g;
    return NULL;
}
mer_status mer_clip_cuda_encode(mer_clip_cuda *g, const float *pixels, int n, const mer_clip_out *out,
                                mer_err *err) {
    (void)g, (void)pixels, (void)n, (void)out;
    return no_cuda(err);
}
