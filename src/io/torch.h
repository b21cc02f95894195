/* torch.h - the PyTorch zip checkpoint reader (torch.save's format since 1.6: a zip holding
 * <top>/data.pkl, <top>/data/<key> storages, <top>/version and, since 2.x, <top>/byteorder; <top> may be
 * any folder name). Internal to mer; mer_weights_open (weights.c) dispatches here.
 *
 * Which tensors come out (the naming rule):
 *  - the unpickled object must be a dict. If it has a key "model" whose value is a dict, that dict is the
 *    root (AffectGPT/LAVIS checkpoints: {'model': state_dict, 'optimizer': ..., 'epoch': ...}); else if it
 *    has a dict under "state_dict", that is the root; else the object itself is the root;
 *  - every tensor value of the root is named by its key ("llama_proj.weight"); a dict value is walked
 *    recursively with its key and a '.' prefixed ({"a": {"b": t}} gives "a.b"), up to 16 levels;
 *  - everything else (optimizer state, config, epoch, lists, tensors outside the root) is ignored.
 * Storages: f32 f16 bf16 f64 i64 i32 i16 i8 u8 bool. A tensor's (offset, size, stride) view is checked
 * against its storage's numel and bytes; contiguous views point into the mapping (zero copy, when
 * aligned to the element size); non-contiguous or misaligned views are copied into an owned contiguous
 * buffer. Every storage's CRC-32 is verified once at open. The legacy (pre-zip) format is
 * MER_E_UNSUPPORTED. */
#ifndef MER_IO_TORCH_H
#define MER_IO_TORCH_H

#include "io/weights.h"

/* Opens a PyTorch zip checkpoint. On success *out is a MER_WFORMAT_TORCH mer_weights (caller frees with
 * mer_weights_close; the tensor names are not yet indexed: mer_weights_open calls mer__weights_finish).
 * On failure *out is NULL and err names the file and the offset (or zip member) at fault. */
mer_status mer__torch_open(const char *path, mer_weights **out, mer_err *err);
/* The same over memory that must outlive the result (fuzzing, tests). `name` is used in messages. */
mer_status mer__torch_open_mem(const void *data, size_t size, const char *name, mer_weights **out, mer_err *err);

#endif
