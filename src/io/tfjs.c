/* tfjs.c - reader of TensorFlow.js weights manifests and their binary shards (see tfjs.h). The JSON is
 * parsed with cJSON; each group's shards are mapped (or handed over by the caller), every tensor's byte
 * range is checked against the group's total shard size, and the values are converted into one owned
 * buffer (f32 / i32 / bool) that the resulting mer_weights points into. */
#include "io/tfjs.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

typedef struct tfjs_impl {
    uint8_t *buf; /* every tensor's converted data */
} tfjs_impl;

static void tfjs_close(mer_weights *w) {
    tfjs_impl *im = w->impl;
    if (!im) return;
    free(im->buf);
    free(im);
}

/* How one manifest entry is stored and what it becomes. */
typedef struct tfjs_entry {
    const char *name;
    int n_dims;
    int64_t shape[MER_MAX_DIMS];
    size_t n_elems;
    mer_dtype out;     /* F32, I32 or BOOL */
    int q;             /* 0 raw, 1 uint8, 2 uint16, 3 float16 */
    double qmin, qscale;
    size_t in_bytes;   /* bytes in the shards */
    size_t out_bytes;  /* bytes in the converted buffer */
} tfjs_entry;

static size_t elem_in_bytes(const tfjs_entry *e) {
    switch (e->q) {
    case 1: return 1;
    case 2: case 3: return 2;
    default: return e->out == MER_DTYPE_BOOL ? 1 : 4;
    }
}

/* Parses one weights entry; `where` is "<manifest>: group G weight K". */
static mer_status parse_entry(const cJSON *j, const char *where, tfjs_entry *e, mer_err *err) {
    memset(e, 0, sizeof *e);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *quant = cJSON_GetObjectItemCaseSensitive(j, "quantization");
    if (!cJSON_IsObject(j)) return mer__errf(err, MER_E_FORMAT, "%s: not an object", where);
    if (!cJSON_IsString(name) || !name->valuestring[0])
        return mer__errf(err, MER_E_FORMAT, "%s: missing or empty \"name\"", where);
    e->name = name->valuestring;
    if (!cJSON_IsArray(shape))
        return mer__errf(err, MER_E_FORMAT, "%s ('%s'): \"shape\" is not an array", where, e->name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > MER_MAX_DIMS)
        return mer__errf(err, MER_E_UNSUPPORTED, "%s ('%s'): %d dimensions (at most %d)", where, e->name, nd,
                         MER_MAX_DIMS);
    e->n_dims = nd;
    e->n_elems = 1;
    for (int d = 0; d < nd; d++) {
        const cJSON *v = cJSON_GetArrayItem(shape, d);
        double x = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (!(x >= 0) || x > 4294967296.0 || x != floor(x))
            return mer__errf(err, MER_E_FORMAT, "%s ('%s'): shape[%d] is not a non-negative integer", where,
                             e->name, d);
        e->shape[d] = (int64_t)x;
        if (mer__mul_ovf(e->n_elems, (size_t)x, &e->n_elems))
            return mer__errf(err, MER_E_RANGE, "%s ('%s'): element count overflows", where, e->name);
    }
    if (!cJSON_IsString(dtype))
        return mer__errf(err, MER_E_FORMAT, "%s ('%s'): missing \"dtype\"", where, e->name);
    if (!strcmp(dtype->valuestring, "float32")) e->out = MER_DTYPE_F32;
    else if (!strcmp(dtype->valuestring, "int32")) e->out = MER_DTYPE_I32;
    else if (!strcmp(dtype->valuestring, "bool")) e->out = MER_DTYPE_BOOL;
    else
        return mer__errf(err, MER_E_UNSUPPORTED, "%s ('%s'): dtype \"%s\" is not supported (float32, int32, bool)",
                         where, e->name, dtype->valuestring);
    if (quant && !cJSON_IsNull(quant)) {
        const cJSON *qd = cJSON_GetObjectItemCaseSensitive(quant, "dtype");
        if (!cJSON_IsObject(quant) || !cJSON_IsString(qd))
            return mer__errf(err, MER_E_FORMAT, "%s ('%s'): \"quantization\" has no \"dtype\"", where, e->name);
        if (!strcmp(qd->valuestring, "uint8")) e->q = 1;
        else if (!strcmp(qd->valuestring, "uint16")) e->q = 2;
        else if (!strcmp(qd->valuestring, "float16")) e->q = 3;
        else
            return mer__errf(err, MER_E_UNSUPPORTED,
                             "%s ('%s'): quantization dtype \"%s\" is not supported (uint8, uint16, float16)", where,
                             e->name, qd->valuestring);
        if (e->out == MER_DTYPE_BOOL)
            return mer__errf(err, MER_E_UNSUPPORTED, "%s ('%s'): a quantised bool tensor", where, e->name);
        if (e->q == 3 && e->out != MER_DTYPE_F32)
            return mer__errf(err, MER_E_UNSUPPORTED, "%s ('%s'): float16 quantisation of a non-float tensor",
                             where, e->name);
        if (e->q != 3) {
            const cJSON *mn = cJSON_GetObjectItemCaseSensitive(quant, "min");
            const cJSON *sc = cJSON_GetObjectItemCaseSensitive(quant, "scale");
            if (!cJSON_IsNumber(mn) || !cJSON_IsNumber(sc) || !isfinite(mn->valuedouble) ||
                !isfinite(sc->valuedouble))
                return mer__errf(err, MER_E_FORMAT, "%s ('%s'): quantization needs finite \"min\" and \"scale\"",
                                 where, e->name);
            e->qmin = mn->valuedouble;
            e->qscale = sc->valuedouble;
        }
    }
    if (mer__mul_ovf(e->n_elems, elem_in_bytes(e), &e->in_bytes) ||
        mer__mul_ovf(e->n_elems, e->out == MER_DTYPE_BOOL ? 1 : 4, &e->out_bytes))
        return mer__errf(err, MER_E_RANGE, "%s ('%s'): size overflows", where, e->name);
    return MER_OK;
}

/* Converts one entry's n_elems values from src (in_bytes, little-endian) into dst. */
static void convert(const tfjs_entry *e, const uint8_t *src, uint8_t *dst) {
    for (size_t i = 0; i < e->n_elems; i++) {
        if (e->out == MER_DTYPE_BOOL) {
            dst[i] = src[i]; /* the byte as stored, as tfjs keeps it */
            continue;
        }
        double v;
        if (e->q == 1 || e->q == 2) {
            unsigned q = e->q == 1 ? src[i] : (unsigned)(src[2 * i] | src[2 * i + 1] << 8);
            v = (double)q * e->qscale + e->qmin;
            if (e->out == MER_DTYPE_I32) {
                v = floor(v + 0.5); /* Math.round */
                int32_t iv = v > 2147483647.0 ? INT32_MAX : v < -2147483648.0 ? INT32_MIN : (int32_t)v;
                memcpy(dst + 4 * i, &iv, 4);
                continue;
            }
            float f = (float)v;
            memcpy(dst + 4 * i, &f, 4);
        } else if (e->q == 3) {
            float f = mer_fp16_to_fp32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
            memcpy(dst + 4 * i, &f, 4);
        } else {
            memcpy(dst + 4 * i, src + 4 * i, 4); /* little-endian host assumed, as everywhere in mer */
        }
    }
}

/* A shard path must be relative and must not leave the manifest's folder. */
static int bad_path(const char *p) {
    if (!p[0] || p[0] == '/') return 1;
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.') return 1;
        if (!e) break;
        s = e + 1;
    }
    return 0;
}

mer_status mer__tfjs_open_mem(const char *name, const char *json, size_t n, mer_tfjs_shard_fn get_shard,
                              void *ud, mer_weights **out, mer_err *err) {
    *out = NULL;
    mer_status st = MER_OK;
    mer_weights *w = NULL;
    tfjs_impl *im = NULL;
    tfjs_entry *ents = NULL;
    uint8_t *gbuf = NULL; /* one group's shards, concatenated */
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, n, &end, 0);
    if (!root) {
        size_t off = end && end >= json && end <= json + n ? (size_t)(end - json) : 0;
        st = mer__errf(err, MER_E_FORMAT, "%s: not valid JSON (near byte %zu)", name, off);
        goto fail;
    }
    if (!cJSON_IsArray(root)) {
        st = mer__errf(err, MER_E_FORMAT, "%s: a weights manifest is a JSON array of groups", name);
        goto fail;
    }
    /* pass 1: parse entries, total output size */
    int n_groups = cJSON_GetArraySize(root);
    size_t n_ent = 0, total_out = 0;
    for (int g = 0; g < n_groups; g++) {
        const cJSON *grp = cJSON_GetArrayItem(root, g);
        const cJSON *ws = cJSON_GetObjectItemCaseSensitive(grp, "weights");
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(grp, "paths");
        if (!cJSON_IsObject(grp) || !cJSON_IsArray(ws) || !cJSON_IsArray(ps)) {
            st = mer__errf(err, MER_E_FORMAT, "%s: group %d needs \"paths\" and \"weights\" arrays", name, g);
            goto fail;
        }
        n_ent += (size_t)cJSON_GetArraySize(ws);
    }
    ents = calloc(n_ent ? n_ent : 1, sizeof *ents);
    if (!ents) { st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", name); goto fail; }
    size_t k = 0;
    for (int g = 0; g < n_groups; g++) {
        const cJSON *ws = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(root, g), "weights");
        int nw = cJSON_GetArraySize(ws);
        for (int i = 0; i < nw; i++, k++) {
            char where[256];
            snprintf(where, sizeof where, "%s: group %d weight %d", name, g, i);
            if ((st = parse_entry(cJSON_GetArrayItem(ws, i), where, &ents[k], err))) goto fail;
            total_out = (total_out + 63) / 64 * 64; /* each tensor 64-byte aligned (total_out < SIZE_MAX / 2) */
            if (mer__add_ovf(total_out, ents[k].out_bytes, &total_out) || total_out > SIZE_MAX / 2) {
                st = mer__errf(err, MER_E_RANGE, "%s: total size overflows", name);
                goto fail;
            }
        }
    }
    /* The output is bounded by 4x the shard bytes plus 64 per tensor (alignment), and is allocated only
     * after each group's shards are known to hold its entries (checked below). */
    size_t total_in = 0;
    k = 0;
    for (int g = 0; g < n_groups; g++) {
        const cJSON *grp = cJSON_GetArrayItem(root, g);
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(grp, "paths");
        int np = cJSON_GetArraySize(ps), nw = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(grp, "weights"));
        size_t gsize = 0, need = 0;
        for (int i = 0; i < np; i++) {
            const cJSON *p = cJSON_GetArrayItem(ps, i);
            const uint8_t *d;
            size_t sz;
            if (!cJSON_IsString(p) || bad_path(p->valuestring)) {
                st = mer__errf(err, MER_E_FORMAT, "%s: group %d path %d must be a relative path inside the manifest's folder",
                               name, g, i);
                goto fail;
            }
            if (get_shard(ud, p->valuestring, &d, &sz)) {
                st = mer__errf(err, MER_E_IO, "%s: shard '%s' cannot be read", name, p->valuestring);
                goto fail;
            }
            if (mer__add_ovf(gsize, sz, &gsize)) {
                st = mer__errf(err, MER_E_RANGE, "%s: group %d shards too large", name, g);
                goto fail;
            }
        }
        for (int i = 0; i < nw; i++)
            if (mer__add_ovf(need, ents[k + (size_t)i].in_bytes, &need)) {
                st = mer__errf(err, MER_E_RANGE, "%s: group %d size overflows", name, g);
                goto fail;
            }
        if (need > gsize) {
            /* name the first entry that does not fit */
            size_t off = 0;
            int i = 0;
            for (; i < nw && off + ents[k + (size_t)i].in_bytes <= gsize; i++) off += ents[k + (size_t)i].in_bytes;
            const cJSON *p0 = cJSON_GetArrayItem(ps, np - 1);
            st = mer__errf(err, MER_E_FORMAT,
                           "%s: weight '%s' needs bytes [%zu, %zu) of group %d but its shards (last '%s') hold %zu bytes",
                           name, ents[k + (size_t)i].name, off, off + ents[k + (size_t)i].in_bytes, g,
                           p0 && cJSON_IsString(p0) ? p0->valuestring : "(none)", gsize);
            goto fail;
        }
        if (mer__add_ovf(total_in, need, &total_in)) { st = mer__errf(err, MER_E_RANGE, "%s: too large", name); goto fail; }
        k += (size_t)nw;
    }
    MER_ASSERT(total_out <= 4 * total_in + 64 * n_ent);
    if ((st = mer__weights_new(MER_WFORMAT_TFJS, name, &w, err))) goto fail;
    im = calloc(1, sizeof *im);
    if (!im || !(im->buf = malloc(total_out ? total_out : 1))) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory (%zu bytes)", name, total_out);
        goto fail;
    }
    w->impl = im;
    w->close_impl = tfjs_close;
    im = NULL;
    /* pass 2: copy each group's shards together, convert its entries */
    size_t out_off = 0;
    k = 0;
    for (int g = 0; g < n_groups; g++) {
        const cJSON *grp = cJSON_GetArrayItem(root, g);
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(grp, "paths");
        int np = cJSON_GetArraySize(ps), nw = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(grp, "weights"));
        size_t need = 0, pos = 0;
        for (int i = 0; i < nw; i++) need += ents[k + (size_t)i].in_bytes;
        free(gbuf);
        gbuf = malloc(need ? need : 1);
        if (!gbuf) { st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", name); goto fail; }
        for (int i = 0; i < np && pos < need; i++) {
            const uint8_t *d;
            size_t sz;
            if (get_shard(ud, cJSON_GetArrayItem(ps, i)->valuestring, &d, &sz)) {
                st = mer__errf(err, MER_E_IO, "%s: shard '%s' cannot be read", name,
                               cJSON_GetArrayItem(ps, i)->valuestring);
                goto fail;
            }
            size_t take = sz < need - pos ? sz : need - pos;
            if (take) memcpy(gbuf + pos, d, take);
            pos += take;
        }
        if (pos < need) { /* a shard shrank between the passes */
            st = mer__errf(err, MER_E_IO, "%s: group %d shards changed while reading", name, g);
            goto fail;
        }
        size_t in_off = 0;
        for (int i = 0; i < nw; i++, k++) {
            tfjs_entry *e = &ents[k];
            out_off = (out_off + 63) / 64 * 64;
            uint8_t *dst = ((tfjs_impl *)w->impl)->buf + out_off;
            convert(e, gbuf + in_off, dst);
            if ((st = mer__weights_add_tensor(w, e->name, strlen(e->name), e->out, e->n_dims, e->shape, dst,
                                              e->out_bytes, err)))
                goto fail;
            in_off += e->in_bytes;
            out_off += e->out_bytes;
        }
    }
    if ((st = mer__weights_finish(w, err))) goto fail;
    free(gbuf);
    free(ents);
    cJSON_Delete(root);
    *out = w;
    return MER_OK;
fail:
    free(gbuf);
    free(ents);
    if (im) { free(im->buf); free(im); }
    mer_weights_close(w);
    cJSON_Delete(root);
    return st;
}

// --- files -------------------------------------------------------------------------------------------

typedef struct file_shards {
    char *dir;
    const char *manifest;
    size_t n, cap;
    char **paths;
    mer_map *maps;
    mer_err map_err; /* first failure to map a shard */
} file_shards;

static int file_shard(void *ud, const char *path, const uint8_t **data, size_t *size) {
    file_shards *fs = ud;
    for (size_t i = 0; i < fs->n; i++)
        if (!strcmp(fs->paths[i], path)) {
            *data = fs->maps[i].data;
            *size = fs->maps[i].size;
            return 0;
        }
    if (fs->n == fs->cap) {
        size_t nc = fs->cap ? 2 * fs->cap : 8;
        char **np = realloc(fs->paths, nc * sizeof *np);
        if (!np) return -1;
        fs->paths = np;
        mer_map *nm = realloc(fs->maps, nc * sizeof *nm);
        if (!nm) return -1;
        fs->maps = nm;
        fs->cap = nc;
    }
    char *full = mer__path_join(fs->dir, path);
    if (!full) return -1;
    mer_map m = {0};
    mer_err e1;
    mer_status st = mer__map_open(full, &m, &e1);
    free(full);
    if (st) {
        if (!fs->map_err.status) fs->map_err = e1;
        return -1;
    }
    fs->paths[fs->n] = mer__strndup(path, strlen(path));
    if (!fs->paths[fs->n]) {
        mer__map_close(&m);
        return -1;
    }
    fs->maps[fs->n++] = m;
    *data = m.data;
    *size = m.size;
    return 0;
}

mer_status mer__tfjs_open(const char *manifest_path, mer_weights **out, mer_err *err) {
    *out = NULL;
    mer_map m = {0};
    mer_status st = mer__map_open(manifest_path, &m, err);
    if (st) return st;
    file_shards fs = {.dir = mer__path_dir(manifest_path), .manifest = manifest_path};
    if (!fs.dir) {
        mer__map_close(&m);
        return mer__errf(err, MER_E_NOMEM, "%s: out of memory", manifest_path);
    }
    st = mer__tfjs_open_mem(manifest_path, (const char *)m.data, m.size, file_shard, &fs, out, err);
    if (st && fs.map_err.status) /* the map error (naming the shard file) says more than "cannot be read" */
        st = mer__errf(err, fs.map_err.status, "%s: %s", manifest_path, fs.map_err.msg);
    for (size_t i = 0; i < fs.n; i++) {
        mer__map_close(&fs.maps[i]);
        free(fs.paths[i]);
    }
    free(fs.paths);
    free(fs.maps);
    free(fs.dir);
    mer__map_close(&m);
    return st;
}
