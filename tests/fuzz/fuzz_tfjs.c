/* fuzz_tfjs.c - libFuzzer target: the tfjs weights-manifest reader on arbitrary bytes. The input is the
 * manifest text up to the first NUL byte; the bytes after it are the contents of every shard it names. */
#include "io/tfjs.h"

#include <string.h>

typedef struct shard {
    const uint8_t *p;
    size_t n;
} shard;

static int get_shard(void *ud, const char *path, const uint8_t **data, size_t *size) {
    const shard *s = ud;
    if (!strcmp(path, "missing.bin")) return -1;
    *data = s->p;
    *size = s->n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t jn = nul ? (size_t)(nul - data) : size;
    shard s = {nul ? nul + 1 : data + size, nul ? size - jn - 1 : 0};
    mer_weights *w = NULL;
    mer_err err;
    if (mer__tfjs_open_mem("fuzz.json", (const char *)data, jn, get_shard, &s, &w, &err) == MER_OK) {
        for (size_t i = 0; i < w->n_tensors; i++) {
            const mer_wtensor *t = &w->tensors[i];
            MER_ASSERT(mer_weights_find(w, t->name) == t);
            volatile uint8_t x = 0;
            for (size_t b = 0; b < t->n_bytes; b++) x ^= ((const uint8_t *)t->data)[b];
            (void)x;
        }
        mer_weights_close(w);
    } else {
        MER_ASSERT(w == NULL && err.msg[0] && strstr(err.msg, "fuzz.json"));
    }
    return 0;
}
