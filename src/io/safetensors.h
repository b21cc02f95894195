/* safetensors.h - the safetensors writer (the readers are declared in weights.h and reached through
 * mer_weights_open). The output is what the reference `safetensors` library writes for the same
 * tensors: tensors ordered by dtype (widest first, in the reference's dtype order) then by name, a
 * compact JSON header with "__metadata__" first, padded with spaces to a multiple of 8 bytes. */
#ifndef MER_IO_SAFETENSORS_H
#define MER_IO_SAFETENSORS_H

#include "io/weights.h"

typedef struct mer_st_tensor {
    const char *name;
    mer_dtype dtype;      /* F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL */
    int n_dims;           /* 0..MER_MAX_DIMS */
    const int64_t *shape; /* PyTorch order */
    const void *data;     /* n_bytes = prod(shape) * element size, little-endian */
    size_t n_bytes;
} mer_st_tensor;

/* Writes a safetensors file atomically. meta is n_meta (key, value) string pairs for __metadata__
 * (none: meta may be NULL), written in the given order. Names must be unique. */
mer_status mer__safetensors_write(const char *path, const mer_st_tensor *t, size_t n,
                                  const char *const (*meta)[2], size_t n_meta, mer_err *err);
/* The same bytes into a buffer (appended to out). */
mer_status mer__safetensors_serialize(const mer_st_tensor *t, size_t n, const char *const (*meta)[2],
                                      size_t n_meta, mer_buf *out, mer_err *err);

/* The safetensors dtype string for a mer_dtype ("F32"...), or NULL. */
const char *mer__safetensors_dtype_name(mer_dtype t);

#endif
