/* strmap.h - a string-keyed hash map (open addressing, FNV-1a) from byte strings to int64 values.
 * Keys are copied into the map. Not thread-safe for writers; concurrent readers are fine. */
#ifndef MER_STRMAP_H
#define MER_STRMAP_H

#include "core/core.h"

typedef struct mer_strmap {
    char **keys;      /* slot -> key (NULL = empty) */
    size_t *key_lens;
    uint64_t *hashes;
    int64_t *vals;
    size_t cap;       /* power of two */
    size_t n;
} mer_strmap;

/* Returns a pointer to the value of key, or NULL when absent. Valid until the next insert. */
int64_t *mer__strmap_get(const mer_strmap *m, const char *key, size_t len);
/* Inserts key with value v if absent (and returns MER_OK with *slot pointing to the stored value,
 * which is the old one when the key was present; *inserted tells which). */
mer_status mer__strmap_put(mer_strmap *m, const char *key, size_t len, int64_t v, int64_t **slot,
                           int *inserted);
void mer__strmap_free(mer_strmap *m);
uint64_t mer__hash_bytes(const void *p, size_t n);

#endif
