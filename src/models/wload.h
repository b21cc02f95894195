/* wload.h - tensor fetching for the encoder models (CLIP, HuBERT): looks a checkpoint tensor up by a
 * printf-style name, checks its shape, and hands it out either as a matmul operand (a view into the
 * mapped file when its dtype is one the kernels take and it is aligned, else a converted f32 copy) or
 * as an owned f32 copy (norm weights, biases, embeddings, conv weights). Copies are recorded in the
 * loader and freed together by mer__wl_free. Errors name the checkpoint file and the tensor:
 * "<path>: tensor 'x.weight' is missing", "<path>: tensor 'x.weight' has shape [3, 4], expected [4, 4]". */
#ifndef MER_MODELS_WLOAD_H
#define MER_MODELS_WLOAD_H

#include "core/core.h"
#include "core/dtype.h"
#include "io/hfconfig.h"
#include "io/weights.h"

typedef struct mer_wload {
    const mer_weights *w; /* borrowed */
    const char *prefix;   /* prepended to every name ("" for none); borrowed */
    void **owned;         /* f32 copies made so far */
    size_t n_owned, cap_owned;
} mer_wload;

/* A matmul operand: data of dtype dt, [rows][cols] row-major. */
typedef struct mer_wmat {
    const void *data;
    mer_dtype dt;
} mer_wmat;

/* Starts a loader over w (borrowed; must outlive everything handed out that is a view). */
void mer__wl_init(mer_wload *L, const mer_weights *w, const char *prefix);
/* Frees every f32 copy the loader made (NULL-safe; leaves L empty). */
void mer__wl_free(mer_wload *L);
/* Moves ownership of the copies to the caller: returns the array (and count) and empties L. The caller
 * frees each pointer and the array. */
void **mer__wl_take(mer_wload *L, size_t *n);

/* Whether tensor prefix+name exists. */
int mer__wl_has(const mer_wload *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* An owned f32 copy of tensor prefix+name, which must have n_dims dims equal to shape[] (a shape entry
 * of -1 accepts any extent; the actual shape is then written back into shape[]). Any float dtype (f32,
 * f16, bf16, f64) is converted; others are MER_E_UNSUPPORTED. MER_E_NOTFOUND / MER_E_SHAPE name it. */
mer_status mer__wl_f32(mer_wload *L, float **out, int n_dims, int64_t *shape, mer_err *err, const char *fmt,
                       ...) __attribute__((format(printf, 6, 7)));

/* A matmul operand [rows][cols]: a view for aligned f32 / f16 / bf16 and for q8_0 / q4_0 (cols a
 * multiple of 32), else an owned f32 copy. */
mer_status mer__wl_mat(mer_wload *L, mer_wmat *out, int64_t rows, int64_t cols, mer_err *err, const char *fmt,
                       ...) __attribute__((format(printf, 6, 7)));

/* Opens the checkpoint at path (mer_weights_open) and, when it carries no config.json (a file rather
 * than an HF directory), loads config.json from the file's directory into *cfg (caller frees with
 * mer__config_free; NULL when the checkpoint has its own). Caller closes *w. */
mer_status mer__open_with_config(const char *path, mer_weights **w, struct mer_config **cfg, mer_err *err);

#endif
