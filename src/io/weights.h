/* weights.h - one view over every checkpoint format: a list of named tensors, each with a dtype, a
 * shape (PyTorch order: outermost first) and a pointer into a read-only mapping of the file. Readers
 * for safetensors (single and sharded), GGUF and PyTorch zip checkpoints all produce this.
 * A mer_weights is immutable after open and may be shared between threads. */
#ifndef MER_IO_WEIGHTS_H
#define MER_IO_WEIGHTS_H

#include "core/core.h"
#include "core/dtype.h"

#define MER_MAX_DIMS 8

typedef struct mer_wtensor {
    char *name;                   /* checkpoint name, e.g. "model.layers.0.self_attn.q_proj.weight" */
    mer_dtype dtype;
    int n_dims;
    int64_t shape[MER_MAX_DIMS];  /* PyTorch order (GGUF's ne[] reversed) */
    const void *data;             /* contiguous, row-major; valid until mer_weights_close */
    size_t n_bytes;
} mer_wtensor;

typedef enum mer_wformat {
    MER_WFORMAT_SAFETENSORS = 1,
    MER_WFORMAT_GGUF = 2,
    MER_WFORMAT_TORCH = 3,
} mer_wformat;

/* GGUF metadata value (also used to carry safetensors __metadata__ strings and config.json values). */
typedef enum mer_kvtype {
    MER_KV_U8 = 0, MER_KV_I8 = 1, MER_KV_U16 = 2, MER_KV_I16 = 3, MER_KV_U32 = 4, MER_KV_I32 = 5,
    MER_KV_F32 = 6, MER_KV_BOOL = 7, MER_KV_STRING = 8, MER_KV_ARRAY = 9, MER_KV_U64 = 10,
    MER_KV_I64 = 11, MER_KV_F64 = 12,
} mer_kvtype;

typedef struct mer_kv {
    char *key;
    mer_kvtype type;
    mer_kvtype arr_type;  /* element type when type == MER_KV_ARRAY */
    uint64_t arr_n;       /* element count when type == MER_KV_ARRAY */
    union {
        uint64_t u; int64_t i; double f; int b;
        struct { const char *p; uint64_t len; } s; /* points into the file mapping or owned copy */
    } v;
    const void *arr_data; /* raw element data for numeric arrays (in the mapping) */
    char **arr_str;       /* decoded strings for string arrays (owned), NUL-terminated */
    uint64_t *arr_str_len;
} mer_kv;

typedef struct mer_weights {
    mer_wformat format;
    char *path;
    mer_wtensor *tensors;
    size_t n_tensors;
    mer_kv *kv;           /* metadata (GGUF kv pairs; safetensors __metadata__ as strings) */
    size_t n_kv;
    void *impl;           /* format-specific state (mappings, owned buffers) */
    void (*close_impl)(struct mer_weights *);
} mer_weights;

/* Opens a checkpoint by content (not by extension): a safetensors file, a sharded
 * model.safetensors.index.json, a GGUF file, a PyTorch zip checkpoint, or an HF model directory
 * (config.json + model.safetensors[.index.json] or pytorch_model.bin). Caller frees with
 * mer_weights_close. Every offset and size is checked against the file. */
mer_status mer_weights_open(const char *path, mer_weights **out, mer_err *err);
void mer_weights_close(mer_weights *w);

/* Finds a tensor by exact name; NULL if absent. O(log n) after open (tensors are kept sorted by name
 * in a side index; the tensors[] array keeps file order). */
const mer_wtensor *mer_weights_find(const mer_weights *w, const char *name);
/* Finds a metadata value by key; NULL if absent. */
const mer_kv *mer_weights_find_kv(const mer_weights *w, const char *key);

#endif
