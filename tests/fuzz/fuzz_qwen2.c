/* fuzz_qwen2.c - libFuzzer target: a GGUF on arbitrary bytes read as a Qwen2 model (hyper-parameters
 * from qwen2.* metadata, every tensor's shape and type checked against them) and, when it loads, a
 * two-token prefill and one decode step run on it. Loading must fail cleanly with a message or give a
 * model whose forward stays inside its buffers (the sanitizers watch). Seed: the tiny fixture in q4_0. */
#include "io/gguf.h"
#include "models/qwen2.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mer_err err;
    mer_weights *w = NULL;
    if (mer__gguf_open_mem(data, size, "fuzz.gguf", &w, &err) != MER_OK) return 0;
    if (mer__weights_finish(w, &err) != MER_OK) {
        mer_weights_close(w);
        return 0;
    }
    mer__qwen2_hp hp;
    if (mer__qwen2_hp_from_gguf(w, &hp, &err) != MER_OK) {
        MER_ASSERT(err.msg[0]);
        mer_weights_close(w);
        return 0;
    }
    mer_qwen2 *m = NULL;
    mer_qwen2_params p = mer_qwen2_default_params();
    p.n_threads = 1;
    if (mer__qwen2_from_weights(w, &hp, "GGUF metadata", &p, &m, &err) != MER_OK) { /* w is closed */
        MER_ASSERT(m == NULL && err.msg[0]);
        return 0;
    }
    mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
    cp.n_ctx = 4, cp.n_batch = 2, cp.n_threads = 1;
    mer_qwen2_ctx *c = NULL;
    if (mer_qwen2_ctx_init(m, &cp, &c, &err) == MER_OK) {
        int32_t ids[3] = {0, hp.n_vocab - 1, hp.n_vocab / 2};
        MER_ASSERT(mer_qwen2_prefill(c, ids, 2, &err) == MER_OK);
        MER_ASSERT(mer_qwen2_prefill(c, ids + 2, 1, &err) == MER_OK);
        int rows = 0;
        MER_ASSERT(mer_qwen2_logits(c, &rows) != NULL && rows == 1);
        mer_qwen2_ctx_free(c);
    }
    mer_qwen2_free(m);
    return 0;
}
