/* device.c - the public device choice (mer_device): parsing the --device text, resolving AUTO to the
 * CUDA backend when this build has it and a GPU is usable (else the CPU), and the names. Loading a model
 * onto the resolved device is each model's business (qwen2_device.c for the Qwen2 decoder). */
#include "core/core.h"

#include <string.h>

#if MER_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

mer_status mer_device_parse(const char *s, mer_device *out, mer_err *err) {
    if (!out) return mer__errf(err, MER_E_ARG, "mer_device_parse: out is NULL");
    if (!s) return mer__errf(err, MER_E_ARG, "mer_device_parse: no device given (auto, cpu or cuda)");
    if (!strcmp(s, "auto")) *out = MER_DEVICE_AUTO;
    else if (!strcmp(s, "cpu")) *out = MER_DEVICE_CPU;
    else if (!strcmp(s, "cuda")) *out = MER_DEVICE_CUDA;
    else return mer__errf(err, MER_E_ARG, "device '%.64s' is not one of auto, cpu, cuda", s);
    return MER_OK;
}

int mer_device_cuda_built(void) { return MER_CUDA != 0; }

mer_device mer_device_resolve(mer_device d) {
    if (d != MER_DEVICE_AUTO) return d;
#if MER_CUDA
    if (mer_cuda_device_count() > 0) return MER_DEVICE_CUDA;
#endif
    return MER_DEVICE_CPU;
}

const char *mer_device_name(mer_device d) {
    switch (d) {
    case MER_DEVICE_AUTO: return "auto";
    case MER_DEVICE_CPU: return "cpu";
    case MER_DEVICE_CUDA: return "cuda";
    }
    return "?";
}
