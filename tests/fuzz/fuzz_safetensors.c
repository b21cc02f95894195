/* fuzz_safetensors.c - libFuzzer target: the safetensors reader on arbitrary bytes, and, when a file
 * parses, its tensors written back by the safetensors writer and parsed again (same tensors, same bytes). */
#include "io/safetensors.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mer_err err;
    mer_weights *w = NULL;
    if (mer__safetensors_open_mem(data, size, "fuzz.safetensors", &w, &err) != MER_OK) {
        MER_ASSERT(w == NULL && err.msg[0] && strstr(err.msg, "fuzz.safetensors"));
        return 0;
    }
    size_t total = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const mer_wtensor *t = &w->tensors[i];
        MER_ASSERT((const uint8_t *)t->data >= data && t->n_bytes <= size &&
                   (size_t)((const uint8_t *)t->data - data) <= size - t->n_bytes);
        MER_ASSERT(mer_weights_find(w, t->name) == t);
        total += t->n_bytes;
    }
    MER_ASSERT(total <= size);
    mer_st_tensor *ts = malloc((w->n_tensors ? w->n_tensors : 1) * sizeof *ts);
    const char *(*meta)[2] = malloc((w->n_kv ? w->n_kv : 1) * sizeof *meta);
    MER_ASSERT(ts && meta);
    for (size_t i = 0; i < w->n_tensors; i++) {
        const mer_wtensor *t = &w->tensors[i];
        ts[i] = (mer_st_tensor){t->name, t->dtype, t->n_dims, t->shape, t->data, t->n_bytes};
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        meta[i][0] = w->kv[i].key;
        meta[i][1] = w->kv[i].v.s.p;
    }
    mer_buf out = {0};
    /* Names or keys with NUL bytes cut short by JSON decoding may collide: the writer may refuse. */
    if (mer__safetensors_serialize(ts, w->n_tensors, (const char *const(*)[2])meta, w->n_kv, &out, &err) == MER_OK) {
        mer_weights *w2 = NULL;
        MER_ASSERT(mer__safetensors_open_mem(out.data, out.len, "again", &w2, &err) == MER_OK);
        MER_ASSERT(w2->n_tensors == w->n_tensors);
        for (size_t i = 0; i < w->n_tensors; i++) {
            const mer_wtensor *a = &w->tensors[i], *b = mer_weights_find(w2, a->name);
            MER_ASSERT(b && b->dtype == a->dtype && b->n_dims == a->n_dims && b->n_bytes == a->n_bytes);
            MER_ASSERT(!a->n_bytes || !memcmp(a->data, b->data, a->n_bytes));
        }
        mer_weights_close(w2);
    }
    mer__buf_free(&out);
    free(meta);
    free(ts);
    mer_weights_close(w);
    return 0;
}
