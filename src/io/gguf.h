/* gguf.h - GGUF v3 (the reader is declared in weights.h and reached through mer_weights_open) and the
 * GGUF writer. The writer lays a file out as ggml docs/gguf.md specifies and as llama.cpp writes it:
 * header (magic "GGUF", version 3, u64 tensor and kv counts), the kv pairs in the order added, the tensor
 * infos (name, n_dims, ne[] innermost first, ggml type, offset relative to the data section), zero
 * padding to ALIGNMENT (general.alignment when set, else 32), then each tensor's data padded to
 * ALIGNMENT. Tensor data is copied from a pointer or produced by a callback while writing, so a model
 * larger than memory streams through. */
#ifndef MER_IO_GGUF_H
#define MER_IO_GGUF_H

#include "io/weights.h"

#define MER_GGUF_DEFAULT_ALIGNMENT 32
#define MER_GGUF_MAX_NAME 63 /* llama.cpp's GGML_MAX_NAME - 1 */

/* Facts about an open GGUF (format GGUF only): version, alignment, file offset of the data section. */
mer_status mer__gguf_info(const mer_weights *w, uint32_t *version, uint32_t *alignment, uint64_t *data_offset,
                          mer_err *err);

typedef struct mer_gguf_writer mer_gguf_writer;

mer_status mer__gguf_writer_new(mer_gguf_writer **out, mer_err *err);
void mer__gguf_writer_free(mer_gguf_writer *g);

/* Metadata, written in the order added. A key may be added once (MER_E_ARG otherwise). Keys must be
 * non-empty ASCII without NUL. "general.alignment" (u32, a power of two) sets the alignment. */
mer_status mer__gguf_add_u32(mer_gguf_writer *g, const char *key, uint32_t v, mer_err *err);
mer_status mer__gguf_add_i32(mer_gguf_writer *g, const char *key, int32_t v, mer_err *err);
mer_status mer__gguf_add_u64(mer_gguf_writer *g, const char *key, uint64_t v, mer_err *err);
mer_status mer__gguf_add_f32(mer_gguf_writer *g, const char *key, float v, mer_err *err);
mer_status mer__gguf_add_f64(mer_gguf_writer *g, const char *key, double v, mer_err *err);
mer_status mer__gguf_add_bool(mer_gguf_writer *g, const char *key, int v, mer_err *err);
mer_status mer__gguf_add_str(mer_gguf_writer *g, const char *key, const char *s, mer_err *err);
/* Any scalar type (MER_KV_U8 ... MER_KV_F64 except STRING/ARRAY) from a pointer to the C value. */
mer_status mer__gguf_add_scalar(mer_gguf_writer *g, const char *key, mer_kvtype type, const void *v, mer_err *err);
/* Array of a fixed-size scalar type: n elements in native (little-endian) layout. */
mer_status mer__gguf_add_array(mer_gguf_writer *g, const char *key, mer_kvtype elem, const void *elems,
                               uint64_t n, mer_err *err);
mer_status mer__gguf_add_str_array(mer_gguf_writer *g, const char *key, const char *const *s, uint64_t n,
                                   mer_err *err);
/* Copies a kv read by the GGUF (or safetensors) reader, nested arrays included. */
mer_status mer__gguf_add_kv(mer_gguf_writer *g, const mer_kv *kv, mer_err *err);

/* Adds a tensor: ggml type code, shape in PyTorch order (1..4 dims; reversed into ne[] on disk), data of
 * exactly the type's size (or NULL: the fill callback of write produces it). Name at most 63 bytes. */
mer_status mer__gguf_add_tensor(mer_gguf_writer *g, const char *name, int type, int n_dims,
                                const int64_t *shape, const void *data, mer_err *err);
/* Bytes of tensor i as added. */
size_t mer__gguf_tensor_nbytes(const mer_gguf_writer *g, size_t i);

/* Produces tensor i's n_bytes into dst (a buffer owned by the writer). */
typedef mer_status (*mer_gguf_fill_fn)(void *ud, size_t i, void *dst, size_t n_bytes, mer_err *err);

/* Writes the file atomically (temporary + rename). fill may be NULL when every tensor has data. */
mer_status mer__gguf_write(mer_gguf_writer *g, const char *path, mer_gguf_fill_fn fill, void *ud, mer_err *err);
/* The same bytes appended to out. */
mer_status mer__gguf_serialize(mer_gguf_writer *g, mer_buf *out, mer_gguf_fill_fn fill, void *ud, mer_err *err);

// --- converter helpers (gguf_convert.c), shared with the bundle writer (models/bundle_convert.c) ------

struct mer_config;
/* llama.cpp's general.file_type (llama_ftype) for a tensor type: 0 f32, 1 f16, 2 q4_0, 7 q8_0, 32 bf16. */
uint32_t mer__gguf_file_type(mer_dtype t);
/* The <arch>.* hyper-parameters llama.cpp reads (gguf_names.c's table), from a config.json. */
mer_status mer__gguf_add_hparams(mer_gguf_writer *g, const char *arch, const struct mer_config *cfg, mer_err *err);
/* A byte-level BPE tokenizer.json at `path` (and tokenizer_config.json at tc_path, which may be NULL or
 * absent) as llama.cpp's tokenizer.ggml.* keys (model "gpt2", pre "qwen2", tokens, token_type, merges, special
 * ids). cfg (may be NULL) is the model's config.json: vocab_size pads the token list, *_token_id are the
 * fallback special ids. *added = 0 and MER_OK when `path` does not exist. */
mer_status mer__gguf_add_tokenizer(mer_gguf_writer *g, const char *path, const char *tc_path,
                                   const struct mer_config *cfg, int *added, mer_err *err);

#endif
