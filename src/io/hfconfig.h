/* hfconfig.h - a Hugging Face config.json read into key/values the models can query by (dotted) key:
 * mer__config_get_int(cfg, "hidden_size", &v), mer__config_get_int(cfg, "vision_config.hidden_size", &v),
 * mer__config_get_str(cfg, "architectures.0", &s) (a number indexes an array).
 * Errors name the file and the key (or the line and column of a JSON syntax error). */
#ifndef MER_IO_HFCONFIG_H
#define MER_IO_HFCONFIG_H

#include "core/core.h"

typedef struct mer_config mer_config;

/* Reads and parses `path` (a JSON object). Caller frees with mer__config_free. */
mer_status mer__config_load(const char *path, mer_config **out, mer_err *err);
/* Parses len bytes of JSON text; `name` is used in messages. */
mer_status mer__config_parse(const char *json, size_t len, const char *name, mer_config **out, mer_err *err);
void mer__config_free(mer_config *c);

/* Path of the file (or the name given to parse). */
const char *mer__config_name(const mer_config *c);

/* 1 if the key exists (and is not JSON null). */
int mer__config_has(const mer_config *c, const char *key);
/* Typed look-ups. MER_E_NOTFOUND "<file>: missing key 'k'" when absent (or null); MER_E_FORMAT when the
 * value has another type (an int must be an integral number within int64; a float may be any number;
 * a bool true/false). */
mer_status mer__config_get_int(const mer_config *c, const char *key, int64_t *v, mer_err *err);
mer_status mer__config_get_float(const mer_config *c, const char *key, double *v, mer_err *err);
mer_status mer__config_get_bool(const mer_config *c, const char *key, int *v, mer_err *err);
/* The string is owned by the config (valid until free). */
mer_status mer__config_get_str(const mer_config *c, const char *key, const char **v, mer_err *err);
/* Same, with a default when the key is absent (a present value of the wrong type is still an error). */
mer_status mer__config_get_int_or(const mer_config *c, const char *key, int64_t def, int64_t *v, mer_err *err);
mer_status mer__config_get_float_or(const mer_config *c, const char *key, double def, double *v, mer_err *err);

/* Top-level entries, in file order: count, key i, and value i as compact text (strings unquoted,
 * objects/arrays as compact JSON, cut to cap-1 bytes). */
size_t mer__config_count(const mer_config *c);
const char *mer__config_key(const mer_config *c, size_t i);
void mer__config_value_text(const mer_config *c, size_t i, char *buf, size_t cap);

#endif
