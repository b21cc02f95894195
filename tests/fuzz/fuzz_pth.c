/* fuzz_pth.c - libFuzzer target: the PyTorch zip checkpoint reader from memory; every tensor of a
 * successful open is read end to end (catching any view that escapes its storage). */
#include "io/torch.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mer_weights *w = NULL;
    mer_err err;
    if (mer__torch_open_mem(data, size, "fuzz.pth", &w, &err) == MER_OK) {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < w->n_tensors; i++) {
            const uint8_t *p = w->tensors[i].data;
            for (size_t k = 0; k < w->tensors[i].n_bytes; k++) sink ^= p[k];
        }
        (void)sink;
        if (mer__weights_finish(w, &err) != MER_OK) MER_ASSERT(strstr(err.msg, "fuzz.pth"));
        mer_weights_close(w);
    } else {
        MER_ASSERT(w == NULL && strstr(err.msg, "fuzz.pth"));
    }
    return 0;
}
