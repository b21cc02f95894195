/* fuzz_npz.c - libFuzzer target: .npy parsing and string decoding, and npz archives through the zip
 * reader, every member's .npy parse, and the npz label-table reader (unicode columns or a pickled
 * name2reason dict). Every failure must come with a message naming the input. */
#include "io/labels.h"
#include "io/npy.h"

#include <string.h>

static void touch_npy(const char *name, const mer_npy *a) {
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < a->data_len; i++) sink ^= a->data[i];
    if (a->kind == MER_NPY_UNICODE)
        for (size_t i = 0; i < a->n_elems && i < 4096; i++) {
            char *s = NULL;
            mer_err err;
            if (mer__npy_str(name, a, i, &s, NULL, &err) == MER_OK) free(s);
            else MER_ASSERT(strstr(err.msg, name));
        }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mer_err err;
    if (size >= 6 && memcmp(data, "\x93NUMPY", 6) == 0) {
        mer_npy a;
        if (mer__npy_parse("fuzz.npy", data, size, &a, &err) == MER_OK) touch_npy("fuzz.npy", &a);
        else MER_ASSERT(strstr(err.msg, "fuzz.npy"));
        return 0;
    }
    mer_npz z;
    if (mer__npz_open_mem("fuzz.npz", data, size, &z, &err) == MER_OK) {
        for (size_t i = 0; i < mer__npz_count(&z); i++) {
            const mer_zip_entry *e = &z.zip.entries[i];
            if (e->name_len < 4 || strcmp(e->name + e->name_len - 4, ".npy") != 0) continue;
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(e->name_len - 4), e->name);
            mer_npy a;
            if (mer__npz_get(&z, key, &a, &err) == MER_OK) {
                touch_npy("fuzz.npz", &a);
                mer__npy_free(&a);
            }
        }
        mer__npz_close(&z);
    } else {
        MER_ASSERT(strstr(err.msg, "fuzz.npz"));
    }
    mer_map m = {data, size, 0};
    mer_label_table t = {0};
    if (mer__npz_read_labels("fuzz.npz", &m, &t, &err) == MER_OK) mer_label_table_free(&t);
    else MER_ASSERT(strstr(err.msg, "fuzz.npz") && t.n == 0 && t.rows == NULL);
    return 0;
}
