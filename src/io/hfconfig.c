/* hfconfig.c - Hugging Face config.json as queryable key/values. The JSON is parsed once with cJSON and
 * kept; look-ups walk dotted keys through nested objects ("text_config.hidden_size"). Every failure says
 * which file and which key, or the line and column where the JSON is malformed. */
#include "io/hfconfig.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

struct mer_config {
    char *name;
    cJSON *root;
};

mer_status mer__config_parse(const char *json, size_t len, const char *name, mer_config **out, mer_err *err) {
    *out = NULL;
    mer_status st = MER_OK;
    mer_config *c = calloc(1, sizeof *c);
    if (!c || !(c->name = mer__strndup(name, strlen(name)))) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory", name);
        goto fail;
    }
    size_t bad = mer__utf8_check((const uint8_t *)json, len);
    if (bad != len) {
        st = mer__errf(err, MER_E_FORMAT, "%s: invalid UTF-8 at byte offset %zu", name, bad);
        goto fail;
    }
    const char *end = NULL;
    c->root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!c->root) {
        size_t off = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        size_t line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (json[i] == '\n') { line++; col = 1; }
            else col++;
        }
        st = mer__errf(err, MER_E_FORMAT, "%s:%zu:%zu: invalid JSON (byte offset %zu)", name, line, col, off);
        goto fail;
    }
    size_t used = end && end >= json && end <= json + len ? (size_t)(end - json) : len;
    while (used < len && (json[used] == ' ' || json[used] == '\t' || json[used] == '\n' || json[used] == '\r')) used++;
    if (used != len) {
        st = mer__errf(err, MER_E_FORMAT, "%s: trailing bytes after the JSON object at byte offset %zu", name, used);
        goto fail;
    }
    if (!cJSON_IsObject(c->root)) {
        st = mer__errf(err, MER_E_FORMAT, "%s: the top level is not a JSON object", name);
        goto fail;
    }
    *out = c;
    return MER_OK;
fail:
    mer__config_free(c);
    return st;
}

mer_status mer__config_load(const char *path, mer_config **out, mer_err *err) {
    *out = NULL;
    mer_map m;
    mer_status st = mer__map_open(path, &m, err);
    if (st) return st;
    st = mer__config_parse((const char *)m.data, m.size, path, out, err);
    mer__map_close(&m);
    return st;
}

void mer__config_free(mer_config *c) {
    if (!c) return;
    cJSON_Delete(c->root);
    free(c->name);
    free(c);
}

const char *mer__config_name(const mer_config *c) { return c->name; }

/* Walks a dotted key through objects (and arrays, by decimal index: "architectures.0"); NULL when any
 * part is missing. A key that itself contains a dot is found when the whole remainder matches first. */
static const cJSON *lookup(const cJSON *obj, const char *key) {
    if (cJSON_IsArray(obj)) {
        char *end;
        long i = strtol(key, &end, 10);
        if (end == key || i < 0 || (*end && *end != '.')) return NULL;
        const cJSON *it = cJSON_GetArrayItem(obj, (int)i);
        return !it ? NULL : *end ? lookup(it, end + 1) : it;
    }
    if (!cJSON_IsObject(obj)) return NULL;
    for (const cJSON *it = obj->child; it; it = it->next)
        if (it->string && !strcmp(it->string, key)) return it;
    const char *dot = strchr(key, '.');
    while (dot) {
        size_t n = (size_t)(dot - key);
        for (const cJSON *it = obj->child; it; it = it->next)
            if (it->string && strlen(it->string) == n && !memcmp(it->string, key, n)) {
                const cJSON *r = lookup(it, dot + 1);
                if (r) return r;
            }
        dot = strchr(dot + 1, '.');
    }
    return NULL;
}

static const cJSON *need(const mer_config *c, const char *key, mer_err *err) {
    const cJSON *v = lookup(c->root, key);
    if (!v || cJSON_IsNull(v)) {
        mer__errf(err, MER_E_NOTFOUND, "%s: missing key '%s'", c->name, key);
        return NULL;
    }
    return v;
}

int mer__config_has(const mer_config *c, const char *key) {
    const cJSON *v = c ? lookup(c->root, key) : NULL;
    return v && !cJSON_IsNull(v);
}

mer_status mer__config_get_int(const mer_config *c, const char *key, int64_t *v, mer_err *err) {
    const cJSON *j = need(c, key, err);
    if (!j) return MER_E_NOTFOUND;
    double d = j->valuedouble;
    if (!cJSON_IsNumber(j) || d != floor(d) || d < -9007199254740992.0 || d > 9007199254740992.0)
        return mer__errf(err, MER_E_FORMAT, "%s: key '%s' is not an integer", c->name, key);
    *v = (int64_t)d;
    return MER_OK;
}

mer_status mer__config_get_float(const mer_config *c, const char *key, double *v, mer_err *err) {
    const cJSON *j = need(c, key, err);
    if (!j) return MER_E_NOTFOUND;
    if (!cJSON_IsNumber(j)) return mer__errf(err, MER_E_FORMAT, "%s: key '%s' is not a number", c->name, key);
    *v = j->valuedouble;
    return MER_OK;
}

mer_status mer__config_get_bool(const mer_config *c, const char *key, int *v, mer_err *err) {
    const cJSON *j = need(c, key, err);
    if (!j) return MER_E_NOTFOUND;
    if (!cJSON_IsBool(j)) return mer__errf(err, MER_E_FORMAT, "%s: key '%s' is not true/false", c->name, key);
    *v = cJSON_IsTrue(j);
    return MER_OK;
}

mer_status mer__config_get_str(const mer_config *c, const char *key, const char **v, mer_err *err) {
    const cJSON *j = need(c, key, err);
    if (!j) return MER_E_NOTFOUND;
    if (!cJSON_IsString(j)) return mer__errf(err, MER_E_FORMAT, "%s: key '%s' is not a string", c->name, key);
    *v = j->valuestring;
    return MER_OK;
}

mer_status mer__config_get_int_or(const mer_config *c, const char *key, int64_t def, int64_t *v, mer_err *err) {
    if (!mer__config_has(c, key)) {
        *v = def;
        return MER_OK;
    }
    return mer__config_get_int(c, key, v, err);
}

mer_status mer__config_get_float_or(const mer_config *c, const char *key, double def, double *v, mer_err *err) {
    if (!mer__config_has(c, key)) {
        *v = def;
        return MER_OK;
    }
    return mer__config_get_float(c, key, v, err);
}

size_t mer__config_count(const mer_config *c) {
    size_t n = 0;
    for (const cJSON *it = c ? c->root->child : NULL; it; it = it->next) n++;
    return n;
}

static const cJSON *nth(const mer_config *c, size_t i) {
    const cJSON *it = c->root->child;
    while (it && i--) it = it->next;
    return it;
}

const char *mer__config_key(const mer_config *c, size_t i) {
    const cJSON *it = nth(c, i);
    return it && it->string ? it->string : "";
}

void mer__config_value_text(const mer_config *c, size_t i, char *buf, size_t cap) {
    if (!cap) return;
    buf[0] = 0;
    const cJSON *it = nth(c, i);
    if (!it) return;
    if (cJSON_IsString(it)) {
        snprintf(buf, cap, "%s", it->valuestring);
        return;
    }
    char *s = cJSON_PrintUnformatted(it);
    if (!s) return;
    snprintf(buf, cap, "%s", s);
    cJSON_free(s);
}
