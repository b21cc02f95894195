/* torch.c - PyTorch zip checkpoints (see torch.h): open the zip, unpickle <top>/data.pkl with the safe
 * pickle subset, pick the state dict, and turn every tensor found there into a mer_wtensor whose data
 * points into the mapped storage member (or into an owned contiguous copy for strided views). Every
 * size, offset and stride from the pickle is checked against the storage it points into. */
#include "io/torch.h"
#include "io/pickle.h"
#include "io/zip.h"

#include <string.h>

#define MAX_NEST 16
#define COPY_LIMIT ((size_t)64 << 20) /* bytes a strided view may expand to beyond its storage */

typedef struct torch_impl {
    mer_zip zip;
    void **bufs; /* owned buffers that tensor data points into */
    size_t n_bufs, cap_bufs;
} torch_impl;

/* a resolved storage member, cached per zip entry */
typedef struct stor {
    const uint8_t *p;
    size_t n;
    int done;
} stor;

typedef struct ctx {
    mer_weights *w;
    torch_impl *impl;
    const char *prefix; /* "<top>/" */
    size_t prefix_len;
    stor *cache;        /* one per zip entry */
    size_t visits_left; /* dict entries the walk may still visit: a tree needs fewer than the node count */
    mer_err *err;
} ctx;

static void close_impl(mer_weights *w) {
    torch_impl *t = w->impl;
    if (!t) return;
    for (size_t i = 0; i < t->n_bufs; i++) free(t->bufs[i]);
    free(t->bufs);
    mer__zip_close(&t->zip);
    free(t);
    w->impl = NULL;
}

static mer_status keep(ctx *c, void *p) {
    torch_impl *t = c->impl;
    if (t->n_bufs == t->cap_bufs) {
        size_t nc = t->cap_bufs ? t->cap_bufs * 2 : 16;
        void **nb = realloc(t->bufs, nc * sizeof *nb);
        if (!nb) {
            free(p);
            return mer__errf(c->err, MER_E_NOMEM, "%s: out of memory", c->w->path);
        }
        t->bufs = nb;
        t->cap_bufs = nc;
    }
    t->bufs[t->n_bufs++] = p;
    return MER_OK;
}

static size_t elem_size(mer_dtype t) {
    switch (t) {
    case MER_DTYPE_F64: case MER_DTYPE_I64: return 8;
    case MER_DTYPE_F32: case MER_DTYPE_I32: return 4;
    case MER_DTYPE_F16: case MER_DTYPE_BF16: case MER_DTYPE_I16: return 2;
    case MER_DTYPE_I8: case MER_DTYPE_U8: case MER_DTYPE_BOOL: return 1;
    default: return 0;
    }
}

/* The bytes of storage `key` (<top>/data/<key>), CRC-checked once; inflated into an owned buffer if the
 * member is compressed. */
static mer_status storage_bytes(ctx *c, const mer_py *s, const uint8_t **p, size_t *n) {
    const mer_zip *z = &c->impl->zip;
    size_t kl = s->len, nl = c->prefix_len + 5 + kl + 1;
    char *name = malloc(nl);
    if (!name) return mer__errf(c->err, MER_E_NOMEM, "%s: out of memory", c->w->path);
    snprintf(name, nl, "%.*sdata/%s", (int)c->prefix_len, c->prefix, s->s);
    const mer_zip_entry *e = strlen(s->s) == kl ? mer__zip_find(z, name) : NULL;
    if (!e) {
        mer_status st = mer__errf(c->err, MER_E_FORMAT, "%s: storage '%s' referenced by data.pkl is missing (no member %s)",
                                  c->w->path, s->s, name);
        free(name);
        return st;
    }
    free(name);
    stor *sc = &c->cache[e - z->entries];
    if (!sc->done) {
        mer_status st;
        if (e->method == 0) {
            st = mer__zip_view(z, e, 1, &sc->p, &sc->n, c->err);
        } else {
            uint8_t *buf;
            st = mer__zip_read(z, e, &buf, &sc->n, c->err);
            if (!st) st = keep(c, buf);
            if (!st) sc->p = buf;
        }
        if (st) return st;
        sc->done = 1;
    }
    *p = sc->p;
    *n = sc->n;
    return MER_OK;
}

static mer_status add_tensor(ctx *c, const char *name, size_t name_len, const mer_py *t) {
    const char *path = c->w->path;
    const mer_py *s = t->ref;
    size_t es = elem_size(s->dtype);
    if (!es) return mer__errf(c->err, MER_E_UNSUPPORTED, "%s: tensor '%.*s' has an unsupported storage type", path, (int)name_len, name);
    if (t->n_dims > MER_MAX_DIMS)
        return mer__errf(c->err, MER_E_UNSUPPORTED, "%s: tensor '%.*s' has %d dimensions (at most %d)", path, (int)name_len,
                         name, t->n_dims, MER_MAX_DIMS);
    const uint8_t *base = NULL;
    size_t nbytes = 0;
    mer_status st = storage_bytes(c, s, &base, &nbytes);
    if (st) return mer__err_prefix(c->err, st, "tensor '%.*s'", (int)name_len, name);
    size_t numel = (size_t)s->i, need;
    if ((uint64_t)s->i > SIZE_MAX || mer__mul_ovf(numel, es, &need) || need > nbytes)
        return mer__errf(c->err, MER_E_FORMAT, "%s: storage '%s' declares %lld elements but its member holds %zu bytes", path,
                         s->s, (long long)s->i, nbytes);
    /* element count and the furthest element the view touches */
    size_t n_el = 1, last = (size_t)t->i;
    int empty = 0;
    for (int d = 0; d < t->n_dims; d++) {
        if (t->shape[d] == 0) empty = 1;
        if ((uint64_t)t->shape[d] > SIZE_MAX || mer__mul_ovf(n_el, (size_t)t->shape[d], &n_el)) goto range;
    }
    if (!empty) {
        for (int d = 0; d < t->n_dims; d++) {
            size_t span;
            if ((uint64_t)t->stride[d] > SIZE_MAX || mer__mul_ovf((size_t)(t->shape[d] - 1), (size_t)t->stride[d], &span) ||
                mer__add_ovf(last, span, &last))
                goto range;
        }
        if (last >= numel) goto range;
    }
    size_t out_bytes;
    if (mer__mul_ovf(n_el, es, &out_bytes)) goto range;
    /* C-contiguous? (dimensions of size 1 may have any stride) */
    int contig = 1;
    uint64_t expect = 1; /* unsigned: may wrap only for an empty tensor, whose layout is moot */
    for (int d = t->n_dims - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && (uint64_t)t->stride[d] != expect) contig = 0;
        expect *= t->shape[d] ? (uint64_t)t->shape[d] : 1;
    }
    const uint8_t *src = base + (size_t)t->i * es;
    const void *data;
    if (empty) {
        data = base;
    } else if (contig && ((uintptr_t)src % es) == 0) {
        data = src;
    } else {
        if (n_el > numel && out_bytes > COPY_LIMIT)
            return mer__errf(c->err, MER_E_UNSUPPORTED, "%s: tensor '%.*s' is an expanded view of %zu elements over a storage of %zu",
                             path, (int)name_len, name, n_el, numel);
        uint8_t *buf = malloc(out_bytes ? out_bytes : 1);
        if (!buf) return mer__errf(c->err, MER_E_NOMEM, "%s: out of memory", path);
        size_t idx[MER_MAX_DIMS] = {0};
        size_t off = (size_t)t->i; /* element offset of the current index */
        for (size_t k = 0; k < n_el; k++) {
            memcpy(buf + k * es, base + off * es, es);
            for (int d = t->n_dims - 1; d >= 0; d--) {
                if (++idx[d] < (size_t)t->shape[d]) {
                    off += (size_t)t->stride[d];
                    break;
                }
                off -= (size_t)t->stride[d] * (idx[d] - 1);
                idx[d] = 0;
            }
        }
        if ((st = keep(c, buf))) return st;
        data = buf;
    }
    return mer__weights_add_tensor(c->w, name, name_len, s->dtype, t->n_dims, t->shape, data, out_bytes, c->err);
range:
    return mer__errf(c->err, MER_E_FORMAT, "%s: tensor '%.*s' (offset %lld) reaches past its storage '%s' of %zu elements", path,
                     (int)name_len, name, (long long)t->i, s->s, numel);
}

static mer_status walk(ctx *c, const mer_py *d, mer_buf *prefix, int depth) {
    if (depth > MAX_NEST) return MER_OK;
    for (size_t i = 0; i < d->n; i++) {
        const mer_py *k = d->items[2 * i], *v = d->items[2 * i + 1];
        if (!c->visits_left--)
            return mer__errf(c->err, MER_E_FORMAT, "%s: the state dict refers to the same dicts over and over (shared or "
                             "cyclic references)", c->w->path);
        if (k->type != MER_PY_STR || (v->type != MER_PY_TENSOR && v->type != MER_PY_DICT)) continue;
        size_t save = prefix->len;
        mer_status st = mer__buf_append(prefix, k->s, k->len);
        if (st) return mer__errf(c->err, st, "%s: out of memory", c->w->path);
        if (v->type == MER_PY_TENSOR) st = add_tensor(c, prefix->data, prefix->len, v);
        else if (!(st = mer__buf_putc(prefix, '.'))) st = walk(c, v, prefix, depth + 1);
        else st = mer__errf(c->err, st, "%s: out of memory", c->w->path);
        prefix->len = save;
        if (prefix->data) prefix->data[save] = 0;
        if (st) return st;
    }
    return MER_OK;
}

/* Finds "<top>/data.pkl" (exactly one folder level, any name) or a bare "data.pkl". */
static const mer_zip_entry *find_pkl(const mer_zip *z, size_t *plen) {
    const mer_zip_entry *best = NULL;
    for (size_t i = 0; i < z->n; i++) {
        const mer_zip_entry *e = &z->entries[i];
        size_t n = e->name_len;
        if (n < 8 || strcmp(e->name + n - 8, "data.pkl") != 0) continue;
        const char *slash = memchr(e->name, '/', n - 8);
        if (n == 8 || (slash && slash == e->name + n - 9)) {
            if (!best || e->name_len < best->name_len) best = e;
        }
    }
    if (best) *plen = best->name_len - 8;
    return best;
}

static mer_status open_zip(mer_weights *w, torch_impl *impl, mer_err *err) {
    mer_zip *z = &impl->zip;
    mer_status st = MER_OK;
    uint8_t *pkl = NULL;
    size_t pkl_n = 0, plen = 0;
    mer_pickle pk = {0};
    mer_buf prefix = {0};
    ctx c = {w, impl, NULL, 0, NULL, 0, err};
    const mer_zip_entry *e = find_pkl(z, &plen);
    if (!e) {
        st = mer__errf(err, MER_E_FORMAT, "%s: a zip without <folder>/data.pkl: not a PyTorch checkpoint", w->path);
        goto fail;
    }
    c.prefix = e->name;
    c.prefix_len = plen;
    /* byteorder (torch >= 2.0); absent means little-endian */
    {
        char bo[512];
        snprintf(bo, sizeof bo, "%.*sbyteorder", (int)(plen < 400 ? plen : 400), e->name);
        const mer_zip_entry *b = mer__zip_find(z, bo);
        if (b) {
            uint8_t *d;
            size_t n;
            if ((st = mer__zip_read(z, b, &d, &n, err))) goto fail;
            int little = n == 6 && memcmp(d, "little", 6) == 0;
            free(d);
            if (!little) {
                st = mer__errf(err, MER_E_UNSUPPORTED, "%s: big-endian checkpoint (%s)", w->path, bo);
                goto fail;
            }
        }
    }
    if ((st = mer__zip_read(z, e, &pkl, &pkl_n, err))) goto fail;
    {
        size_t nl = strlen(w->path) + e->name_len + 4;
        char *pname = malloc(nl);
        if (!pname) {
            st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", w->path);
            goto fail;
        }
        snprintf(pname, nl, "%s[%s]", w->path, e->name);
        st = mer__pickle_load(pname, pkl, pkl_n, &pk, err);
        free(pname);
        if (st) goto fail;
    }
    const mer_py *root = pk.root;
    if (root->type != MER_PY_DICT) {
        st = mer__errf(err, MER_E_UNSUPPORTED, "%s: the checkpoint holds a %s, not a dict of tensors", w->path,
                       mer__py_type_name(root));
        goto fail;
    }
    const mer_py *m = mer__py_dict_get(root, "model");
    if (!m || m->type != MER_PY_DICT) m = mer__py_dict_get(root, "state_dict");
    if (m && m->type == MER_PY_DICT) root = m;
    c.cache = calloc(z->n ? z->n : 1, sizeof *c.cache);
    if (!c.cache) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", w->path);
        goto fail;
    }
    c.visits_left = pk.n_nodes + 16;
    st = walk(&c, root, &prefix, 0);
fail:
    free(c.cache);
    mer__buf_free(&prefix);
    mer__pickle_free(&pk);
    free(pkl);
    return st;
}

static mer_status open_common(const char *name, const uint8_t *data, size_t size, int from_path, mer_weights **out,
                              mer_err *err) {
    *out = NULL;
    mer_weights *w = NULL;
    mer_status st = MER_OK;
    if (size >= 2 && data[0] == 0x80 && data[1] <= 5 && !(size >= 4 && memcmp(data, "PK\003\004", 4) == 0))
        return mer__errf(err, MER_E_UNSUPPORTED,
                         "%s: a legacy (pre-1.6, non-zip) PyTorch checkpoint; re-save it with torch.save in the zip format",
                         name);
    if ((st = mer__weights_new(MER_WFORMAT_TORCH, name, &w, err))) return st;
    torch_impl *impl = calloc(1, sizeof *impl);
    if (!impl) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", name);
        goto fail;
    }
    w->impl = impl;
    w->close_impl = close_impl;
    if (from_path) st = mer__zip_open(name, &impl->zip, err);
    else st = mer__zip_open_mem(name, data, size, &impl->zip, err);
    if (st) goto fail;
    if ((st = open_zip(w, impl, err))) goto fail;
    *out = w;
    return MER_OK;
fail:
    mer_weights_close(w);
    return st;
}

mer_status mer__torch_open(const char *path, mer_weights **out, mer_err *err) {
    *out = NULL;
    /* peek at the first bytes to tell the legacy format apart before mapping as a zip */
    uint8_t head[4] = {0};
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        n = fread(head, 1, sizeof head, f);
        fclose(f);
    }
    return open_common(path, head, n, 1, out, err);
}

mer_status mer__torch_open_mem(const void *data, size_t size, const char *name, mer_weights **out, mer_err *err) {
    return open_common(name ? name : "<memory>", data, size, 0, out, err);
}
