/* strmap.c - open-addressing hash map from byte strings to int64 (see strmap.h). */
#include "core/strmap.h"

#include <string.h>

uint64_t mer__hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

static size_t find_slot_h(const mer_strmap *m, const char *key, size_t len, uint64_t h) {
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    while (m->keys[i] && !(m->hashes[i] == h && m->key_lens[i] == len && memcmp(m->keys[i], key, len) == 0))
        i = (i + 1) & mask;
    return i;
}

static size_t find_slot(const mer_strmap *m, const char *key, size_t len) {
    return find_slot_h(m, key, len, mer__hash_bytes(key, len));
}

int64_t *mer__strmap_get(const mer_strmap *m, const char *key, size_t len) {
    if (!m->cap) return NULL;
    size_t i = find_slot(m, key, len);
    return m->keys[i] ? &m->vals[i] : NULL;
}

static mer_status grow(mer_strmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    mer_strmap g = {calloc(cap, sizeof(char *)), calloc(cap, sizeof(size_t)), calloc(cap, sizeof(uint64_t)),
                    calloc(cap, sizeof(int64_t)), cap, m->n};
    if (!g.keys || !g.key_lens || !g.hashes || !g.vals) {
        free(g.keys); free(g.key_lens); free(g.hashes); free(g.vals);
        return MER_E_NOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = find_slot_h(&g, m->keys[i], m->key_lens[i], m->hashes[i]);
        g.keys[j] = m->keys[i];
        g.key_lens[j] = m->key_lens[i];
        g.hashes[j] = m->hashes[i];
        g.vals[j] = m->vals[i];
    }
    free(m->keys); free(m->key_lens); free(m->hashes); free(m->vals);
    *m = g;
    return MER_OK;
}

mer_status mer__strmap_put(mer_strmap *m, const char *key, size_t len, int64_t v, int64_t **slot, int *inserted) {
    if ((m->n + 1) * 2 >= m->cap) {
        mer_status st = grow(m);
        if (st) return st;
    }
    uint64_t h = mer__hash_bytes(key, len);
    size_t i = find_slot_h(m, key, len, h);
    if (inserted) *inserted = m->keys[i] == NULL;
    if (!m->keys[i]) {
        char *k = mer__strndup(key, len);
        if (!k) return MER_E_NOMEM;
        m->keys[i] = k;
        m->key_lens[i] = len;
        m->hashes[i] = h;
        m->vals[i] = v;
        m->n++;
    }
    if (slot) *slot = &m->vals[i];
    return MER_OK;
}

void mer__strmap_free(mer_strmap *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys); free(m->key_lens); free(m->hashes); free(m->vals);
    memset(m, 0, sizeof *m);
}
