/* fuzz_gguf.c - libFuzzer target: the GGUF reader on arbitrary bytes, and, when a file parses, every kv
 * and tensor written back by the GGUF writer and parsed again (same keys, same tensors, same bytes). */
#include "io/gguf.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mer_err err;
    mer_weights *w = NULL;
    if (mer__gguf_open_mem(data, size, "fuzz.gguf", &w, &err) != MER_OK) {
        MER_ASSERT(w == NULL && err.msg[0] && strstr(err.msg, "fuzz.gguf"));
        return 0;
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        const mer_wtensor *t = &w->tensors[i];
        MER_ASSERT((const uint8_t *)t->data >= data && t->n_bytes <= size &&
                   (size_t)((const uint8_t *)t->data - data) <= size - t->n_bytes);
        MER_ASSERT(mer_weights_find(w, t->name) == t);
    }
    mer_gguf_writer *g = NULL;
    MER_ASSERT(mer__gguf_writer_new(&g, &err) == MER_OK);
    int ok = 1;
    for (size_t i = 0; ok && i < w->n_kv; i++) ok = mer__gguf_add_kv(g, &w->kv[i], &err) == MER_OK;
    /* The writer is stricter than the reader (llama.cpp's limits: names < 64 bytes, 1..4 dims): it may
     * refuse, but what it accepts must read back the same. */
    for (size_t i = 0; ok && i < w->n_tensors; i++) {
        const mer_wtensor *t = &w->tensors[i];
        ok = mer__gguf_add_tensor(g, t->name, t->dtype, t->n_dims, t->shape, t->data, &err) == MER_OK;
    }
    mer_buf out = {0};
    if (ok && mer__gguf_serialize(g, &out, NULL, NULL, &err) == MER_OK) {
        mer_weights *w2 = NULL;
        MER_ASSERT(mer__gguf_open_mem(out.data, out.len, "again", &w2, &err) == MER_OK);
        MER_ASSERT(w2->n_tensors == w->n_tensors && w2->n_kv == w->n_kv);
        for (size_t i = 0; i < w->n_kv; i++) {
            const mer_kv *a = &w->kv[i], *b = &w2->kv[i];
            MER_ASSERT(!strcmp(a->key, b->key) && a->type == b->type && a->arr_n == b->arr_n &&
                       a->arr_bytes == b->arr_bytes);
            MER_ASSERT(!a->arr_bytes || !memcmp(a->arr_data, b->arr_data, a->arr_bytes));
        }
        for (size_t i = 0; i < w->n_tensors; i++) {
            const mer_wtensor *a = &w->tensors[i], *b = &w2->tensors[i];
            MER_ASSERT(!strcmp(a->name, b->name) && a->dtype == b->dtype && a->n_bytes == b->n_bytes);
            MER_ASSERT(!a->n_bytes || !memcmp(a->data, b->data, a->n_bytes));
        }
        mer_weights_close(w2);
    }
    mer__buf_free(&out);
    mer__gguf_writer_free(g);
    mer_weights_close(w);
    return 0;
}
