/* eval.h - internals of the Track2 metric shared by wheel.c (tables) and metric.c (scoring). */
#ifndef MER_EVAL_H
#define MER_EVAL_H

#include "core/strmap.h"

#define MER_N_METRICS (MER_N_WHEELS * MER_N_LEVELS)
#define MER_MAX_CLUSTERS 128 /* clusters per (wheel, level) are held in a 128-bit set */

struct mer_wheels {
    mer_strmap spell;             /* lower-cased spelling -> index */
    int16_t (*cluster)[MER_N_METRICS]; /* [n_spell][metric] cluster id, -1 = dropped */
    size_t n_spell;
    char **cluster_names[MER_N_METRICS]; /* [metric][id] */
    size_t n_clusters[MER_N_METRICS];
};

/* Python's `s.lower().strip()` of a UTF-8 byte string (valid UTF-8 assumed; invalid bytes are
 * kept as they are). Appends to b (cleared first). */
mer_status mer__py_lower_strip(const char *s, size_t len, mer_buf *b);
/* Python's str.strip() bounds: sets *start and *end (byte offsets) of the stripped part. */
void mer__py_strip_bounds(const char *s, size_t len, size_t *start, size_t *end);

#endif
