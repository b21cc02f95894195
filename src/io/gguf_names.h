/* gguf_names.h - how Hugging Face checkpoints map onto llama.cpp's GGUF conventions, per architecture:
 * tensor names ("model.layers.3.self_attn.q_proj.weight" <-> "blk.3.attn_q.weight") and hyper-parameter
 * keys (config.json "hidden_size" <-> "qwen2.embedding_length"). One table per architecture in
 * gguf_names.c, used forwards by `mer quantize` and backwards by model loaders reading a GGUF. */
#ifndef MER_IO_GGUF_NAMES_H
#define MER_IO_GGUF_NAMES_H

#include "io/weights.h"

/* The GGUF architecture name for a config.json (model_type, else architectures[0]), e.g. "qwen2" for
 * Qwen2ForCausalLM; NULL when the architecture has no table here. */
const char *mer__gguf_arch_from_config(const struct mer_config *cfg);
/* The table's own (static) spelling of `arch` when it has a name table, else NULL (also for NULL). */
const char *mer__gguf_arch_known(const char *arch);

/* Maps a checkpoint name to its GGUF name (or back). Returns 1 and writes the mapped name to out when a
 * rule matches; 0 and copies the name unchanged when none does (other names are kept as they are);
 * -1 when out (cap bytes) is too small. */
int mer__gguf_name_from_hf(const char *arch, const char *hf_name, char *out, size_t cap);
int mer__gguf_name_to_hf(const char *arch, const char *gguf_name, char *out, size_t cap);

/* A hyper-parameter: config.json key (dotted for nested objects; `alt` is a second place to look, or
 * NULL), the GGUF key without the "<arch>." prefix, and its GGUF type (MER_KV_U32 or MER_KV_F32). */
typedef struct mer_gguf_hparam {
    const char *config_key;
    const char *alt_key;
    const char *gguf_key;
    mer_kvtype type;
} mer_gguf_hparam;

/* The hyper-parameters llama.cpp reads for `arch` (*n entries); NULL (and *n = 0) when unknown. */
const mer_gguf_hparam *mer__gguf_hparams(const char *arch, size_t *n);

#endif
