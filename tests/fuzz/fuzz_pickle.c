/* fuzz_pickle.c - libFuzzer target: the safe pickle subset on arbitrary bytes; a successful load is
 * walked (depth-bounded, as every consumer must) touching every node. Errors must name the input. */
#include "io/pickle.h"

#include <string.h>

/* depth- and work-bounded, as consumers must be (the graph may have exponentially many paths) */
static size_t walk(const mer_py *v, int depth, size_t *budget) {
    if (depth > MER_PY_MAX_DEPTH || !*budget) return 0;
    --*budget;
    size_t n = 1 + v->len;
    for (size_t k = 0; k < v->len && v->s; k++) n += (unsigned char)v->s[k] == 0xFF;
    size_t items = v->type == MER_PY_DICT ? 2 * v->n : v->n;
    for (size_t i = 0; i < items && v->items; i++) n += walk(v->items[i], depth + 1, budget);
    if (v->ref) n += walk(v->ref, depth + 1, budget);
    if (v->type == MER_PY_DICT) (void)mer__py_dict_get(v, "model");
    (void)mer__py_type_name(v);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mer_pickle p;
    mer_err err;
    if (mer__pickle_load("fuzz.pkl", data, size, &p, &err) == MER_OK) {
        size_t budget = 4 * p.n_nodes + 16;
        volatile size_t n = walk(p.root, 0, &budget);
        (void)n;
        mer__pickle_free(&p);
    } else {
        MER_ASSERT(strstr(err.msg, "fuzz.pkl"));
    }
    return 0;
}
