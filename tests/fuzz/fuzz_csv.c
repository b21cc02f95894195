/* fuzz_csv.c - libFuzzer target: the CSV reader and the label splitter on arbitrary bytes. */
#include "io/csv.h"

#include <string.h>

static void cb(const char *item, size_t len, void *ud) {
    size_t *total = ud;
    *total += len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mer_csv c;
    mer_err err;
    if (mer__csv_parse("fuzz.csv", data, size, &c, &err) == MER_OK) {
        size_t total = 0;
        for (size_t r = 0; r < c.n_rows; r++)
            for (size_t j = 0; j < c.n_cols; j++) mer_labels_split(mer__csv_cell(&c, r, j), cb, &total);
        mer__csv_free(&c);
    } else {
        MER_ASSERT(err.msg[0] && strstr(err.msg, "fuzz.csv"));
    }
    return 0;
}
