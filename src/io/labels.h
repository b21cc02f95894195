/* labels.h - internal entry points for label tables stored in npz files (src/io/labels_npz.c). */
#ifndef MER_IO_LABELS_H
#define MER_IO_LABELS_H

#include "core/core.h"

/* Reads rows from an npz already mapped in m (path is for messages): either the 1-D unicode arrays
 * `filenames` + `fileitems`, or `name2reason` (a 0-d object array holding a pickled dict str -> str).
 * Each row's name and labels are malloc'd separately. */
mer_status mer__npz_read_labels(const char *path, const mer_map *m, mer_label_table *out, mer_err *err);

#endif
