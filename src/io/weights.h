/* weights.h - one view over every checkpoint format: a list of named tensors, each with a dtype, a
 * shape (PyTorch order: outermost first) and a pointer into a read-only mapping of the file. Readers
 * for safetensors (single and sharded), GGUF and PyTorch zip checkpoints all produce this.
 * A mer_weights is immutable after open and may be shared between threads.
 *
 * Ownership (for the readers): build the object with mer__weights_new / mer__weights_add_tensor /
 * mer__weights_add_kv; mer_weights_close frees path, every tensor name, tensors[], every kv (key, string
 * value, arr_str[] and arr_str_len), kv[], the sorted index and the config, then calls close_impl (which
 * frees only `impl`: mappings and buffers that tensor data and arr_data point into), then the object. */
#ifndef MER_IO_WEIGHTS_H
#define MER_IO_WEIGHTS_H

#include "core/core.h"
#include "core/dtype.h"

#define MER_MAX_DIMS 8

typedef struct mer_wtensor {
    char *name;                   /* checkpoint name, e.g. "model.layers.0.self_attn.q_proj.weight" */
    mer_dtype dtype;              /* a mer_dtype, or any other ggml type code read from a GGUF file */
    int n_dims;
    int64_t shape[MER_MAX_DIMS];  /* PyTorch order (GGUF's ne[] reversed) */
    const void *data;             /* contiguous, row-major; valid until mer_weights_close. Not
                                     necessarily aligned to the element size (old safetensors files) */
    size_t n_bytes;
} mer_wtensor;

typedef enum mer_wformat {
    MER_WFORMAT_SAFETENSORS = 1,
    MER_WFORMAT_GGUF = 2,
    MER_WFORMAT_TORCH = 3,
    MER_WFORMAT_TFJS = 4, /* tfjs weights manifest (face-api's models; io/tfjs.c) */
} mer_wformat;

/* GGUF metadata value (also used to carry safetensors __metadata__ strings). */
typedef enum mer_kvtype {
    MER_KV_U8 = 0, MER_KV_I8 = 1, MER_KV_U16 = 2, MER_KV_I16 = 3, MER_KV_U32 = 4, MER_KV_I32 = 5,
    MER_KV_F32 = 6, MER_KV_BOOL = 7, MER_KV_STRING = 8, MER_KV_ARRAY = 9, MER_KV_U64 = 10,
    MER_KV_I64 = 11, MER_KV_F64 = 12,
} mer_kvtype;

typedef struct mer_kv {
    char *key;            /* owned, NUL-terminated */
    mer_kvtype type;
    mer_kvtype arr_type;  /* element type when type == MER_KV_ARRAY */
    uint64_t arr_n;       /* element count when type == MER_KV_ARRAY */
    union {
        uint64_t u; int64_t i; double f; int b;        /* unsigned / signed / float / bool scalars */
        struct { const char *p; uint64_t len; } s;     /* owned copy, NUL-terminated (len excludes it) */
    } v;
    const void *arr_data; /* arrays: the elements exactly as GGUF serialises them (numbers little-endian,
                             strings as u64 length + bytes, nested arrays as type + count + elements);
                             points into the mapping (or impl-owned memory), not freed by close */
    size_t arr_bytes;     /* byte length of arr_data */
    char **arr_str;       /* string arrays: decoded strings (owned), NUL-terminated; NULL otherwise */
    uint64_t *arr_str_len;
} mer_kv;

struct mer_config;

typedef struct mer_weights {
    mer_wformat format;
    char *path;
    mer_wtensor *tensors;
    size_t n_tensors;
    mer_kv *kv;           /* metadata (GGUF kv pairs; safetensors __metadata__ as strings) */
    size_t n_kv;
    struct mer_config *config; /* the HF config.json of a model directory / sharded index, or NULL */
    size_t *sorted;       /* internal: tensor indices sorted by name (built by mer_weights_open) */
    size_t cap_tensors, cap_kv; /* internal: growth of tensors[] and kv[] */
    void *impl;           /* format-specific state (mappings, owned buffers) */
    void (*close_impl)(struct mer_weights *);
} mer_weights;

/* Opens a checkpoint by content (not by extension): a safetensors file, a sharded
 * model.safetensors.index.json, a GGUF file, a PyTorch zip checkpoint, or an HF model directory
 * (config.json + model.safetensors[.index.json] or pytorch_model.bin). Caller frees with
 * mer_weights_close. Every offset and size is checked against the file. Tensor names are unique.
 * (Declared in mer.h too, for the CLI.) */
mer_status mer_weights_open(const char *path, mer_weights **out, mer_err *err);
void mer_weights_close(mer_weights *w);

/* Finds a tensor by exact name; NULL if absent. O(log n) after open (tensors are kept sorted by name
 * in a side index; the tensors[] array keeps file order). */
const mer_wtensor *mer_weights_find(const mer_weights *w, const char *name);
/* Finds a metadata value by key; NULL if absent (linear scan: metadata is small). */
const mer_kv *mer_weights_find_kv(const mer_weights *w, const char *key);

/* Name of a tensor element type as llama.cpp spells it ("f32", "bf16", "q8_0", "q4_K", "u8", "bool"),
 * or NULL for an unknown code. Works for every ggml type code, not only the mer_dtype ones. */
const char *mer__wtype_name(int type);
/* Elements per block and bytes per block of a type (any ggml code, plus U8 and BOOL); 0 if unknown. */
size_t mer__wtype_block_elems(int type);
size_t mer__wtype_block_bytes(int type);
/* Bytes of a tensor of `n_elems` elements whose innermost dimension is `ne0` elements: fails
 * (returns MER_E_FORMAT / MER_E_RANGE with a message naming `what`) when ne0 is not a multiple of the
 * block size or the size overflows. */
mer_status mer__wtype_nbytes(int type, uint64_t ne0, uint64_t n_elems, size_t *out, const char *what,
                             mer_err *err);

// --- for readers -------------------------------------------------------------------------------------

/* Allocates an empty mer_weights for `path` (copied). */
mer_status mer__weights_new(mer_wformat fmt, const char *path, mer_weights **out, mer_err *err);
/* Appends a tensor (name copied: name_len bytes, no NUL inside). shape in PyTorch order. */
mer_status mer__weights_add_tensor(mer_weights *w, const char *name, size_t name_len, mer_dtype dtype,
                                   int n_dims, const int64_t *shape, const void *data, size_t n_bytes,
                                   mer_err *err);
/* Appends a zeroed kv with key copied (key_len bytes); returns it in *out for the caller to fill.
 * The pointer is valid until the next add. */
mer_status mer__weights_add_kv(mer_weights *w, const char *key, size_t key_len, mer_kv **out, mer_err *err);
/* Appends a string kv (both copied). */
mer_status mer__weights_add_kv_str(mer_weights *w, const char *key, size_t key_len, const char *val,
                                   size_t val_len, mer_err *err);
/* Builds the sorted name index; MER_E_FORMAT if two tensors share a name. Called by mer_weights_open
 * after the reader returns (readers need not call it). */
mer_status mer__weights_finish(mer_weights *w, mer_err *err);

/* "dir/name" (no doubled slash); caller frees; NULL when out of memory. */
char *mer__path_join(const char *dir, const char *name);
/* Directory part of a path ("." when none); caller frees. */
char *mer__path_dir(const char *path);

// --- atomic streaming output (for the writers) -------------------------------------------------------

/* A file written to "<path>.tmp.<pid>" and renamed onto path by commit (after fsync); abort removes it. */
typedef struct mer_ofile {
    FILE *f;
    char *path;
    char *tmp;
    uint64_t pos; /* bytes written so far */
} mer_ofile;

mer_status mer__ofile_open(mer_ofile *o, const char *path, mer_err *err);
mer_status mer__ofile_write(mer_ofile *o, const void *p, size_t n, mer_err *err);
/* Writes n copies of byte. */
mer_status mer__ofile_fill(mer_ofile *o, uint8_t byte, size_t n, mer_err *err);
mer_status mer__ofile_commit(mer_ofile *o, mer_err *err); /* always releases o */
void mer__ofile_abort(mer_ofile *o);                      /* no-op on a released/zeroed o */

// --- format readers (in safetensors.c, gguf.c) -------------------------------------------------------

/* A single .safetensors file. */
mer_status mer__safetensors_open(const char *path, mer_weights **out, mer_err *err);
/* A sharded checkpoint: `index_path` is a model.safetensors.index.json ({"weight_map": {name: shard}});
 * every shard named there is mapped once, and every tensor of the weight map must be in its shard. */
mer_status mer__safetensors_open_index(const char *index_path, mer_weights **out, mer_err *err);
/* A GGUF v2/v3 file (little-endian). */
mer_status mer__gguf_open(const char *path, mer_weights **out, mer_err *err);
/* The same parsers over memory (for fuzzing and tests): data must outlive the result. `name` is used
 * in messages. */
mer_status mer__safetensors_open_mem(const void *data, size_t size, const char *name, mer_weights **out,
                                     mer_err *err);
mer_status mer__gguf_open_mem(const void *data, size_t size, const char *name, mer_weights **out,
                              mer_err *err);

#endif
