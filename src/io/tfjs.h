/* tfjs.h - TensorFlow.js weights manifests (the `*-weights_manifest.json` + `.bin` shards that tfjs's
 * converter writes and face-api ships). Internal to mer.
 *
 * A manifest is a JSON array of groups {"paths": [shard, ...], "weights": [entry, ...]}. The shards of a
 * group, concatenated in order, hold the group's tensors back to back in entry order. An entry is
 * {"name", "shape": [int...], "dtype": "float32" | "int32" | "bool", "quantization"?: {"dtype": "uint8" |
 * "uint16" | "float16", "min", "scale"}}; a quantised value q stands for min + scale * q (computed in
 * double and rounded to f32, as tfjs does; int32 tensors round as Math.round does), a float16 one for
 * the half-precision number q. The reader produces the common checkpoint view (mer_weights): float
 * tensors dequantised to f32, int32 as I32, bool as BOOL (the stored bytes, as tfjs keeps them), shapes
 * as written in the manifest (tfjs order: conv filters are [kh, kw, c_in, c_out], depthwise filters
 * [kh, kw, c, 1]).
 *
 * Checks: shard paths are relative and stay in the manifest's folder; every tensor's bytes lie inside
 * its group's shards (overflow-checked); shapes are non-negative integers; names are unique. Messages
 * name the manifest (and the shard and byte offset where one is at fault). */
#ifndef MER_IO_TFJS_H
#define MER_IO_TFJS_H

#include "core/core.h"
#include "io/weights.h"

/* The format tag of a mer_weights made from a tfjs manifest (not yet in weights.h's enum). */

/* Opens `manifest_path` and its shards (paths relative to the manifest's folder). Returns MER_OK and
 * *out (caller frees with mer_weights_close; tensor data is owned by it, no file stays open), or
 * MER_E_IO / MER_E_FORMAT / MER_E_UNSUPPORTED / MER_E_NOMEM with a message naming the file at fault
 * and *out = NULL. Thread-safe (no shared state). */
mer_status mer__tfjs_open(const char *manifest_path, mer_weights **out, mer_err *err);

/* The same over memory: the manifest text json[0..n) named `name` in messages, and the bytes of
 * every shard given by `get_shard` (which returns 0 and sets *data / *size, valid until this call
 * returns, or non-zero when the shard is missing). For fuzzing and tests. */
typedef int (*mer_tfjs_shard_fn)(void *ud, const char *path, const uint8_t **data, size_t *size);
mer_status mer__tfjs_open_mem(const char *name, const char *json, size_t n, mer_tfjs_shard_fn get_shard,
                              void *ud, mer_weights **out, mer_err *err);

#endif
