/* mer.h - the public C API of mer, an engine for open-vocabulary multimodal emotion recognition.
 *
 * Conventions (see DESIGN.md): every fallible call returns a mer_status (MER_OK = 0, negative codes on
 * failure) and, when given a non-NULL `mer_err *`, leaves a one-line message there that names the file
 * and the line or byte offset at fault. Handles are opaque; `open`/`close` for readers, `init`/`free`
 * for objects; `*_default_params()` returns a struct by value. Nothing in this library calls exit() or
 * abort() on bad input, and there is no global mutable state. */
#ifndef MER_H
#define MER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MER_VERSION "0.1.0"

// --- status and errors -------------------------------------------------------------------------------

typedef enum mer_status {
    MER_OK = 0,
    MER_E_NOMEM = -1,       /* allocation failed */
    MER_E_IO = -2,          /* open/read/write/mmap failed */
    MER_E_FORMAT = -3,      /* the file is not what it claims: bad header, truncated, corrupt */
    MER_E_SHAPE = -4,       /* shapes disagree */
    MER_E_UNSUPPORTED = -5, /* valid input we do not handle (a dtype, an opcode, a codec) */
    MER_E_ARG = -6,         /* bad argument from the caller */
    MER_E_NOTFOUND = -7,    /* a named thing (tensor, key, column, sample) is missing */
    MER_E_RANGE = -8,       /* a value or size out of range */
    MER_E_DEVICE = -9,      /* accelerator failure */
    MER_E_INTERNAL = -10,   /* a bug in mer */
} mer_status;

#define MER_ERRMSG_MAX 512

/* Error record filled by fallible calls. `msg` is a NUL-terminated single line. */
typedef struct mer_err {
    mer_status status;
    char msg[MER_ERRMSG_MAX];
} mer_err;

/* Short constant name of a status code ("format error", ...). Never NULL. */
const char *mer_status_str(mer_status st);

// --- Track2 evaluation (the MER2025 emotion-wheel metric) --------------------------------------------

/* Loaded emotion wheels, synonym table and word-form table. Immutable after load; shareable
 * between threads. */
typedef struct mer_wheels mer_wheels;

#define MER_N_WHEELS 5
#define MER_N_LEVELS 2

/* Loads wheel1..5.csv, synonym.csv and format.csv from `dir` (the layout of mer's data/wheels/).
 * Returns MER_OK and sets *out (caller frees with mer_wheels_free), or an error and *out = NULL. */
mer_status mer_wheels_load(const char *dir, mer_wheels **out, mer_err *err);
void mer_wheels_free(mer_wheels *w);

/* Maps one label (any case, surrounding spaces ignored) to its cluster on (wheel 0..4, level 0..1)
 * exactly as the reference's func_backward_case3. Returns the cluster name, or "" when the label is
 * unknown or not on that wheel. The pointer is valid until mer_wheels_free. */
const char *mer_wheels_map(const mer_wheels *w, const char *label, int wheel, int level);

/* Number of distinct known spellings (keys of the word-form table). */
size_t mer_wheels_n_spellings(const mer_wheels *w);

/* One sample: a name and its label string (a Python-list string or a plain comma list). */
typedef struct mer_labeled {
    const char *name;
    const char *labels;
} mer_labeled;

typedef struct mer_eval_params {
    int allow_missing; /* score a GT name without prediction as empty instead of failing */
} mer_eval_params;

mer_eval_params mer_eval_default_params(void);

typedef struct mer_eval_result {
    double f[MER_N_WHEELS][MER_N_LEVELS]; /* F of averaged P and R, per wheel and level */
    double p[MER_N_WHEELS][MER_N_LEVELS];
    double r[MER_N_WHEELS][MER_N_LEVELS];
    double level_f[MER_N_LEVELS]; /* mean over wheels of f: the reference's level1/level2 score */
    double level_p[MER_N_LEVELS];
    double level_r[MER_N_LEVELS];
    double mean;          /* (level_f[0] + level_f[1]) / 2: the headline score */
    size_t n_gt;          /* ground-truth rows */
    size_t n_scored[MER_N_WHEELS][MER_N_LEVELS]; /* samples whose GT maps to something */
    size_t n_missing;     /* GT names with no prediction (only with allow_missing) */
} mer_eval_result;

/* Scores predictions against ground truth. Names are matched exactly; predictions for names not in
 * the ground truth are ignored. A GT name without prediction is MER_E_NOTFOUND (naming the first few
 * missing names in err) unless params->allow_missing. Thread-safe for distinct outputs. */
mer_status mer_eval_score(const mer_wheels *w, const mer_labeled *gt, size_t n_gt,
                          const mer_labeled *pred, size_t n_pred, const mer_eval_params *params,
                          mer_eval_result *out, mer_err *err);

/* Splits a label string exactly as the reference's string_to_list: drop one leading '[' and one
 * trailing ']', split on every ', " and ',', strip ASCII whitespace, drop empties. Calls cb for each
 * item (item is not NUL-terminated; len bytes). Returns the number of items. */
size_t mer_labels_split(const char *s, void (*cb)(const char *item, size_t len, void *ud), void *ud);

// --- label tables: (name, labels) rows read from CSV or npz, written as npz ------------------------

/* Rows of (name, text). Every string is owned by the table. */
typedef struct mer_label_table {
    mer_labeled *rows;
    size_t n;
} mer_label_table;

/* Reads a label table from `path`, detected by content:
 *  - CSV (RFC 4180, UTF-8, header row): columns `name` and `column` (e.g. "openset" or "reason");
 *  - a zip npz with 1-D unicode arrays `filenames` and `fileitems` (an *-openset.npz submission);
 *  - a zip npz whose `name2reason` is a 0-d object array holding a pickled dict {str: str}
 *    (read by a safe pickle subset that never executes anything).
 * Duplicate names are an error. Caller frees with mer_label_table_free. */
mer_status mer_label_table_read(const char *path, const char *column, mer_label_table *out, mer_err *err);
void mer_label_table_free(mer_label_table *t);

/* For each rows[i].name, sets rows[i].labels to the text of the row of `t` with that name (a pointer
 * into t, valid until t is freed), or NULL when t has none; *n_missing counts the NULLs. */
mer_status mer_label_table_lookup(const mer_label_table *t, mer_labeled *rows, size_t n, size_t *n_missing,
                                  mer_err *err);

/* Writes an *-openset.npz submission exactly as np.savez_compressed(path, filenames=..., fileitems=...)
 * would: two 1-D '<U{maxlen}' arrays, deflated. Atomic (temporary file + rename). */
mer_status mer_openset_npz_write(const char *path, const mer_labeled *rows, size_t n, mer_err *err);

/* Writes a raw result npz: key `name2reason`, a 0-d object array holding the dict {name: text} in row
 * order, byte-identical to np.savez_compressed(path, name2reason=dict) (numpy pickles it with protocol
 * 3; np.load(..., allow_pickle=True) reads it). Atomic. */
mer_status mer_result_npz_write(const char *path, const mer_labeled *rows, size_t n, mer_err *err);

// --- tokenizer: Qwen2's byte-level BPE, and the Qwen2.5 chat template -------------------------------

/* A byte-level BPE tokenizer (GPT-2 style, as Hugging Face `tokenizers` runs Qwen2's): added tokens are
 * matched first, the rest is NFC-normalised (when the tokenizer asks for it), split by Qwen2's
 * pre-tokenizer regex and merged by rank. Immutable after load except for an internal, mutex-guarded
 * word cache: one tokenizer may be shared by threads. */
typedef struct mer_tokenizer mer_tokenizer;

/* The last added token of Qwen2.5 (<|file_sep|>). The Qwen3 tokenizer data mer installs has four more
 * (<tool_response>, </tool_response>, <think>, </think>) that a Qwen2.5 run must not match. */
#define MER_QWEN25_MAX_SPECIAL_ID 151664

typedef struct mer_tokenizer_params {
    /* Added (special) tokens with an id above this are not loaded: not matched in text, and their ids
     * are out of range for decoding. Default MER_QWEN25_MAX_SPECIAL_ID (the Qwen2.5 profile); a negative
     * value keeps every added token. Ordinary vocabulary tokens are never dropped. */
    int64_t max_special_id;
} mer_tokenizer_params;

mer_tokenizer_params mer_tokenizer_default_params(void);

/* Loads a tokenizer, detected by content: a Hugging Face tokenizer.json whose model is byte-level BPE
 * with Qwen2's pre-tokenizer (merges as "a b" strings or [a, b] arrays; normalizer null or NFC), or a
 * GGUF file's tokenizer.ggml.* metadata (model "gpt2", pre "qwen2"; read as mer_tokenizer_from_arrays
 * with NFC on, as Hugging Face does). params may be NULL (defaults). Returns MER_OK and *out (free with
 * mer_tokenizer_free); MER_E_IO/MER_E_FORMAT/MER_E_UNSUPPORTED/MER_E_NOTFOUND naming the file and the
 * JSON field or GGUF key at fault otherwise, with *out = NULL. */
mer_status mer_tokenizer_load(const char *path, const mer_tokenizer_params *params, mer_tokenizer **out,
                              mer_err *err);

/* A tokenizer given as plain arrays, as GGUF stores it (tokenizer.ggml.tokens, .merges, .token_type). */
typedef struct mer_tokenizer_arrays {
    const char *const *tokens; /* [n_tokens], token i has id i; byte-level text for normal tokens */
    const size_t *token_lens;  /* [n_tokens] byte lengths, or NULL for NUL-terminated tokens */
    size_t n_tokens;
    const char *const *merges; /* [n_merges] "a b" (byte-level text), rank = index */
    const size_t *merge_lens;  /* or NULL for NUL-terminated merges */
    size_t n_merges;
    /* [n_tokens] GGUF token types or NULL (all normal): 1 normal, 2 unknown and 6 byte are vocabulary
     * tokens; 3 control is a special added token, 4 user-defined a non-special added token (both
     * matched in text before BPE, raw UTF-8 text); 5 unused and 0 undefined are never produced. */
    const int32_t *token_types;
    int nfc; /* normalise text to NFC before splitting (Qwen2's tokenizer.json does) */
} mer_tokenizer_arrays;

/* Builds a tokenizer from arrays (copied: the caller keeps ownership of a). Same contract as
 * mer_tokenizer_load; messages name the array index at fault. */
mer_status mer_tokenizer_from_arrays(const mer_tokenizer_arrays *a, const mer_tokenizer_params *params,
                                     mer_tokenizer **out, mer_err *err);

void mer_tokenizer_free(mer_tokenizer *t);

/* One more than the largest id that decodes to something (vocabulary and loaded added tokens). */
size_t mer_tokenizer_n_vocab(const mer_tokenizer *t);

/* The id of a token given by its text: an added token's content ("<|im_end|>") or a vocabulary token's
 * decoded bytes (" the"). Returns -1 when there is none. */
int32_t mer_tokenizer_token_id(const mer_tokenizer *t, const char *text, size_t len);

/* Whether id is a special added token (<|im_start|>, <|endoftext|>, ...). */
int mer_tokenizer_is_special(const mer_tokenizer *t, int32_t id);

/* Encodes len bytes of UTF-8 text (special tokens in the text are matched, as Hugging Face does by
 * default). Returns MER_OK with *ids (caller frees with free(); non-NULL even when *n_ids is 0) and
 * *n_ids; MER_E_ARG naming the byte offset when text is not valid UTF-8. Thread-safe. */
mer_status mer_tokenizer_encode(const mer_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                size_t *n_ids, mer_err *err);

/* Decodes ids into UTF-8 text, invalid byte sequences replaced by U+FFFD as Hugging Face does. With
 * skip_special, special added tokens produce nothing. Returns MER_OK with *text (NUL-terminated, caller
 * frees with free()) and *len (may be NULL); MER_E_RANGE naming the index of an id outside
 * [0, n_vocab). Ids inside the range without a token decode to nothing, as in Hugging Face. */
mer_status mer_tokenizer_decode(const mer_tokenizer *t, const int32_t *ids, size_t n_ids, int skip_special,
                                char **text, size_t *len, mer_err *err);

/* Streaming decoder: feed ids one at a time as they are generated; only complete UTF-8 characters come
 * out, a character split across tokens comes out with the token that completes it. */
typedef struct mer_tokenizer_stream mer_tokenizer_stream;

/* t must outlive the stream. Caller frees with mer_tokenizer_stream_free. */
mer_status mer_tokenizer_stream_init(const mer_tokenizer *t, int skip_special, mer_tokenizer_stream **out,
                                     mer_err *err);
/* Feeds one id; *text and *len receive the text completed by it (possibly empty), valid until the next call
 * on this stream. MER_E_RANGE for an id outside [0, n_vocab). */
mer_status mer_tokenizer_stream_push(mer_tokenizer_stream *s, int32_t id, const char **text, size_t *len,
                                     mer_err *err);
/* Ends the stream: bytes still waiting for the rest of a character come out as U+FFFD. The stream can
 * then be reused from scratch. */
void mer_tokenizer_stream_flush(mer_tokenizer_stream *s, const char **text, size_t *len);
void mer_tokenizer_stream_free(mer_tokenizer_stream *s);

/* One chat message. role: "system", "user", "assistant" or "tool"; content: UTF-8 text. */
typedef struct mer_chat_msg {
    const char *role;
    const char *content;
} mer_chat_msg;

/* The default system prompt Qwen2.5's template inserts when the conversation has none. */
#define MER_QWEN25_DEFAULT_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

/* Renders messages exactly as Hugging Face apply_chat_template(messages, tokenize=False,
 * add_generation_prompt=...) renders them with Qwen2.5-Instruct's template (no tools, no tool calls):
 * a first "system" message or the default system prompt, then "<|im_start|>ROLE\nCONTENT<|im_end|>\n"
 * per message (consecutive "tool" messages grouped in one user turn), messages with other roles
 * dropped as the template drops them, and "<|im_start|>assistant\n" when add_generation_prompt.
 * Returns MER_OK with *text (NUL-terminated, caller frees with free()) and *len (may be NULL);
 * MER_E_ARG for no messages or a NULL role/content. */
mer_status mer_chat_render(const mer_chat_msg *msgs, size_t n_msgs, int add_generation_prompt, char **text,
                           size_t *len, mer_err *err);

// --- model files: open, describe, convert to GGUF -----------------------------------------------------

/* A checkpoint opened read-only (mmapped): safetensors (single or sharded), GGUF, PyTorch zip, or a
 * Hugging Face model folder. Immutable; shareable between threads. */
typedef struct mer_weights mer_weights;

/* Opens `path` by content: a .safetensors file, a model.safetensors.index.json, a GGUF file, a PyTorch
 * zip checkpoint, or a folder with config.json + model.safetensors[.index.json] / pytorch_model.bin.
 * Every size and offset is checked against the file. Caller frees with mer_weights_close. */
mer_status mer_weights_open(const char *path, mer_weights **out, mer_err *err);
void mer_weights_close(mer_weights *w);

/* "safetensors", "gguf" or "pytorch". */
const char *mer_weights_format_name(const mer_weights *w);

typedef struct mer_tensor_desc {
    const char *name;  /* valid until mer_weights_close */
    const char *dtype; /* "f32", "bf16", "q8_0", "q4_K", "i64", "bool", ... */
    int n_dims;
    int64_t shape[8];  /* PyTorch order: outermost first */
    uint64_t n_elems;
    size_t n_bytes;
} mer_tensor_desc;

/* Tensors in file order. */
size_t mer_weights_n_tensors(const mer_weights *w);
mer_tensor_desc mer_weights_tensor_desc(const mer_weights *w, size_t i);

/* Metadata entries (GGUF key/values; safetensors __metadata__ strings), in file order: the key, its type
 * ("u32", "f32", "string", "array[string]", ...) and its value as text in buf (strings as they are,
 * arrays as "[n items: a, b, ...]" with at most max_items items; cut to cap-1 bytes). Returns the key. */
size_t mer_weights_n_meta(const mer_weights *w);
const char *mer_weights_meta(const mer_weights *w, size_t i, const char **type, char *buf, size_t cap,
                             int max_items);

/* The config.json of a model folder (or beside a sharded index): top-level entries in file order, the
 * value as compact text in buf. Zero entries when there is none. Returns the key. */
size_t mer_weights_n_config(const mer_weights *w);
const char *mer_weights_config_entry(const mer_weights *w, size_t i, char *buf, size_t cap);

typedef struct mer_quantize_params {
    const char *type; /* "q8_0", "q4_0", "f16", "bf16" or "f32": the type of 2-D+ float tensors */
    int n_threads;    /* <= 0: one per online CPU (at most 64) */
} mer_quantize_params;

mer_quantize_params mer_quantize_default_params(void); /* q8_0, all CPUs */

typedef struct mer_quantize_stats {
    size_t n_tensors;
    size_t n_converted; /* written in the requested type */
    size_t n_kept_f32;  /* 1-D tensors and rows not a multiple of the block size, kept in f32 */
    size_t n_renamed;   /* names mapped to llama.cpp's GGUF names */
    uint64_t bytes_in, bytes_out; /* tensor data only */
    const char *arch;   /* general.architecture written, or NULL (static string) */
    int has_tokenizer;  /* tokenizer.ggml.* written from the folder's tokenizer.json */
} mer_quantize_stats;

/* Converts any checkpoint mer_weights_open reads into a GGUF v3 file at out_path (atomically): names
 * mapped to llama.cpp's names where the architecture has a table (Qwen2), its hyper-parameters from
 * config.json (or the metadata of a GGUF input) written as <arch>.* keys, 2-D+ float tensors converted
 * to params->type (1-D ones and rows not a multiple of 32 stay f32, integer tensors keep their type).
 * A Qwen2 folder's tokenizer.json (+ tokenizer_config.json) becomes llama.cpp's tokenizer.ggml.* keys.
 * Tensors stream through one at a time. stats may be NULL. */
mer_status mer_quantize_file(const char *in_path, const char *out_path, const mer_quantize_params *params,
                             mer_quantize_stats *stats, mer_err *err);

// --- devices: where a model runs ---------------------------------------------------------------------

typedef enum mer_device {
    MER_DEVICE_AUTO = 0, /* CUDA when the build has it (make CUDA=1) and a GPU is present, else the CPU */
    MER_DEVICE_CPU = 1,
    MER_DEVICE_CUDA = 2,
} mer_device;

/* Parses "auto", "cpu" or "cuda" (as --device takes it). MER_E_ARG naming the text otherwise. */
mer_status mer_device_parse(const char *s, mer_device *out, mer_err *err);
/* AUTO -> MER_DEVICE_CUDA when this build has CUDA and at least one device is usable, else
 * MER_DEVICE_CPU; CPU and CUDA are returned as they are (an explicit CUDA request that cannot be met is
 * an error where a model is loaded, never a silent fall-back). */
mer_device mer_device_resolve(mer_device d);
/* "auto", "cpu", "cuda" ("?" for anything else). */
const char *mer_device_name(mer_device d);
/* 1 when this build has the CUDA backend (make CUDA=1). */
int mer_device_cuda_built(void);

// --- Qwen2 decoder (Qwen2.5 and any Qwen2-architecture checkpoint), sampling, generation -----------

/* A loaded Qwen2 causal LM: hyper-parameters, weights (mmapped where they are used as stored, converted
 * copies otherwise) and an optional LoRA adapter. Immutable after load: one model may serve several
 * contexts on several threads. */
typedef struct mer_qwen2 mer_qwen2;
/* Per-sequence state: KV cache (preallocated for n_ctx tokens), activation arena, thread pool, logits.
 * Used by one thread at a time. */
typedef struct mer_qwen2_ctx mer_qwen2_ctx;

typedef struct mer_qwen2_params {
    /* NULL: matrices keep their checkpoint dtype. "f32", "f16", "bf16", "q8_0" or "q4_0": every 2-D
     * matrix (embedding, projections, lm_head) is converted to it at load (q8_0/q4_0 quantised as
     * llama.cpp's reference quantisers do). Norm weights and biases are always f32. */
    const char *wtype;
    /* NULL: no adapter. A PEFT LoRA adapter: adapter_model.safetensors, a .pth/.bin state dict with
     * PEFT key names (...layers.{i}.self_attn.q_proj.lora_A[.default].weight; other keys are ignored),
     * or a directory holding adapter_model.safetensors. */
    const char *lora_path;
    /* > 0: the LoRA scale. 0: lora_alpha / r (lora_alpha / sqrt(r) with use_rslora) from the
     * adapter_config.json beside the adapter; its absence is then an error. */
    double lora_scale;
    /* 1 (default): W += scale * B @ A at load, in f32, before any conversion to wtype; the merged
     * matrix is stored in wtype, or in the checkpoint dtype (re-quantised for q8_0/q4_0). 0: the adapter
     * runs beside the weights: y += scale * (x @ A^T) @ B^T. */
    int lora_merge;
    /* Threads used for conversion and merging at load (0: one per CPU). */
    int n_threads;
    /* Where the forward runs (default MER_DEVICE_AUTO, see mer_device_resolve). On CUDA the model is
     * loaded as for the CPU (that copy serves mer_qwen2_embed) and uploaded: matrices as bf16 (as f32
     * when wtype is "f32": the exact path; q8_0/q4_0 matrices stay quantised), an unmerged LoRA merged
     * into them. Contexts and batch slots of a device model are sequences of the device's KV cache; the
     * mer_qwen2_ctx, generate and batch functions work unchanged on them. An explicit MER_DEVICE_CUDA on
     * a build without CUDA is MER_E_UNSUPPORTED, on a machine without a usable GPU MER_E_DEVICE, for a
     * model the device does not take (a shape or dtype) MER_E_UNSUPPORTED; AUTO keeps such a model on the
     * CPU (mer_qwen2_get_info says where it runs). */
    mer_device device;
    int device_ordinal; /* CUDA device ordinal (default 0) */
    /* Device only: sequences held at once = the most contexts and batch slots alive together, each with
     * a KV cache of n_ctx positions (0: 8). */
    int n_seq;
    /* Device only: KV positions per sequence (0: min(trained context, 4096)); a context asking for more
     * gets this many (mer_qwen2_ctx_n_ctx says what it got). */
    int n_ctx;
} mer_qwen2_params;

mer_qwen2_params mer_qwen2_default_params(void);

/* Loads a Qwen2 model from `path`: a Hugging Face model directory (config.json + model.safetensors or
 * a sharded index), a .safetensors file with config.json beside it, or a llama.cpp GGUF with
 * general.architecture "qwen2" (tensor names token_embd, blk.N.attn_q ..., metadata qwen2.*). Both
 * give the same model. Every tensor's shape is checked against the configuration (MER_E_SHAPE naming
 * the tensor); unsupported element types or configuration features (sliding window, rope scaling,
 * another activation) are MER_E_UNSUPPORTED. params may be NULL (defaults). Caller frees with
 * mer_qwen2_free. */
mer_status mer_qwen2_load(const char *path, const mer_qwen2_params *params, mer_qwen2 **out, mer_err *err);
void mer_qwen2_free(mer_qwen2 *m);

typedef struct mer_qwen2_info {
    int n_vocab, n_embd, n_layer, n_head, n_kv_head, head_dim, n_ff, n_ctx_train;
    double rope_theta, rms_eps;
    int tied;               /* lm_head is the token embedding */
    int lora;               /* 0 none, 1 merged, 2 unmerged */
    size_t weight_bytes;    /* bytes of every weight a decode step reads (matrices, norms, biases,
                               lm_head; the embedding table only when tied) */
    const char *wtype;      /* dtype of the projection matrices ("mixed" when they differ) */
    mer_device device;      /* where the forward runs: MER_DEVICE_CPU or MER_DEVICE_CUDA (resolved) */
    int device_ordinal;     /* CUDA only: the device */
    const char *device_wtype; /* CUDA only: dtype of the matrices on the device (else NULL) */
    size_t device_bytes;    /* CUDA only: bytes of weights one device decode step reads */
    int n_seq, n_ctx;       /* CUDA only: sequences held at once, KV positions per sequence */
} mer_qwen2_info;

void mer_qwen2_get_info(const mer_qwen2 *m, mer_qwen2_info *info);

/* Looks up token embeddings: out[i][:] = row ids[i] of model.embed_tokens as f32 (out is
 * [n][n_embd]). MER_E_RANGE naming the index of an id outside [0, n_vocab). For splicing other
 * embeddings into a prompt (see mer_qwen2_prefill_embd). */
mer_status mer_qwen2_embed(const mer_qwen2 *m, const int32_t *ids, size_t n, float *out, mer_err *err);

typedef struct mer_qwen2_ctx_params {
    int n_ctx;      /* KV cache length in tokens; 0: min(trained context, 4096) */
    int n_batch;    /* most tokens per forward chunk (longer inputs run in chunks); 0: 256 */
    int n_threads;  /* 0: one per CPU */
    int logits_all; /* keep the logits of every position of a forward (else only the last) */
} mer_qwen2_ctx_params;

mer_qwen2_ctx_params mer_qwen2_ctx_default_params(void);

/* Makes a context for m (which must outlive it): allocates the KV cache and sizes the arena once. On a
 * device model it claims one of the model's n_seq device sequences instead (MER_E_RANGE when all are in
 * use) until freed, and n_ctx is at most the model's. Caller frees with mer_qwen2_ctx_free. */
mer_status mer_qwen2_ctx_init(const mer_qwen2 *m, const mer_qwen2_ctx_params *params, mer_qwen2_ctx **out,
                              mer_err *err);
void mer_qwen2_ctx_free(mer_qwen2_ctx *c);
/* Empties the KV cache (position 0 again). */
void mer_qwen2_ctx_reset(mer_qwen2_ctx *c);
/* Tokens in the KV cache, and its capacity. */
int mer_qwen2_ctx_n_past(const mer_qwen2_ctx *c);
int mer_qwen2_ctx_n_ctx(const mer_qwen2_ctx *c);

/* Runs n tokens at positions n_past .. n_past+n-1 through the model (batched: all at once through the
 * GEMM path, in chunks of n_batch) and appends them to the KV cache. n = 1 is a decode step.
 * MER_E_RANGE when n_past + n exceeds n_ctx (nothing is run) or an id is outside [0, n_vocab). */
mer_status mer_qwen2_prefill(mer_qwen2_ctx *c, const int32_t *ids, size_t n, mer_err *err);
/* The same with input embeddings given directly: embd is [n][n_embd] (e.g. token embeddings from
 * mer_qwen2_embed with some rows replaced by projected audio/video features). */
mer_status mer_qwen2_prefill_embd(mer_qwen2_ctx *c, const float *embd, size_t n, mer_err *err);
/* Logits of the last forward: [*n_rows][n_vocab], the last chunk's rows when logits_all, else the last
 * position only (*n_rows = 1). NULL before any forward. Valid until the next forward or reset. */
const float *mer_qwen2_logits(const mer_qwen2_ctx *c, int *n_rows);

/* Sampling with Hugging Face generate() semantics. Processors run in HF's order: repetition penalty
 * (on every distinct id of the history: logit < 0 ? logit * p : logit / p), then, when sampling,
 * temperature, top-k (keeps every token >= the k-th largest score), top-p (drops the smallest tokens
 * whose cumulative probability is <= 1 - top_p, keeping at least one), min-p (drops tokens with
 * probability < min_p * the largest). temperature <= 0 is greedy: the first index of the largest score
 * after the repetition penalty. Sampling draws u from the sampler's PRNG (xoshiro256** seeded through
 * splitmix64 from `seed`; u = (next >> 11) * 2^-53) and returns the first id, in id order, whose
 * cumulative probability (float64) exceeds u: a seed reproduces the same choices. */
typedef struct mer_sampler_params {
    double temperature;    /* default 0 (greedy) */
    int top_k;             /* 0: off (default) */
    double top_p;          /* >= 1: off (default 1) */
    double min_p;          /* <= 0: off (default 0) */
    double repeat_penalty; /* 1: off (default 1); must be > 0 */
    uint64_t seed;         /* default 0 */
} mer_sampler_params;

mer_sampler_params mer_sampler_default_params(void);

typedef struct mer_sampler mer_sampler;

/* A sampler for n_vocab scores with its scratch preallocated (sampling does not call malloc).
 * MER_E_ARG for invalid parameters. Caller frees with mer_sampler_free. */
mer_status mer_sampler_init(const mer_sampler_params *p, int n_vocab, mer_sampler **out, mer_err *err);
void mer_sampler_free(mer_sampler *s);
/* Applies the processors to scores[n_vocab] in place (removed tokens become -INFINITY). hist holds the
 * ids seen so far (prompt and output; ids outside the vocabulary are ignored). */
void mer_sampler_process(mer_sampler *s, float *scores, const int32_t *hist, size_t n_hist);
/* Processes a copy of logits[n_vocab] and picks the next id. */
int32_t mer_sampler_sample(mer_sampler *s, const float *logits, const int32_t *hist, size_t n_hist);

typedef struct mer_generate_params {
    mer_sampler_params sampling;
    int max_new_tokens;        /* default 256 */
    int min_new_tokens;        /* stop ids get -inf until this many tokens are out (default 0) */
    const int32_t *stop_ids;   /* end-of-sequence ids (several allowed): the token ends generation;
                                  it is in the output ids but not in the text */
    size_t n_stop_ids;
    const char *const *stop_strings; /* generation ends when the decoded output contains one (checked
                                  across token boundaries); the text is cut before it, the ids keep
                                  the token that completed it (as HF). Needs a tokenizer. */
    size_t n_stop_strings;
    int skip_special;          /* special tokens produce no text (default 1) */
} mer_generate_params;

mer_generate_params mer_generate_default_params(void);

typedef enum mer_stop_reason {
    MER_STOP_LENGTH = 0,   /* max_new_tokens reached */
    MER_STOP_TOKEN = 1,    /* a stop id */
    MER_STOP_STRING = 2,   /* a stop string */
    MER_STOP_CALLBACK = 3, /* the callback asked to stop */
    MER_STOP_CONTEXT = 4,  /* the KV cache is full */
} mer_stop_reason;

/* Receives streamed text: only whole UTF-8 characters, never text that may begin a stop string.
 * Return non-zero to stop. */
typedef int (*mer_generate_cb)(const char *text, size_t len, void *ud);

typedef struct mer_generate_result {
    int32_t *ids;          /* generated ids (caller frees with free()) */
    size_t n_ids;
    mer_stop_reason stop;
    double prefill_seconds; /* wall time of the prompt's forward (0 without a prompt) */
    double gen_seconds;     /* wall time of sampling and decoding the output */
} mer_generate_result;

/* Generates from c. With n_prompt > 0 the prompt ids are run first (MER_E_RANGE when they do not fit
 * the context) and are the start of the repetition-penalty history. With n_prompt == 0 generation
 * continues from the logits of the last forward (e.g. mer_qwen2_prefill_embd), and the history is the
 * output alone (as HF generate(inputs_embeds=...)). tok may be NULL when there are no stop strings and
 * no callback. cb may be NULL. res receives the ids (also on error, what was generated so far). */
mer_status mer_qwen2_generate(mer_qwen2_ctx *c, const mer_tokenizer *tok, const int32_t *prompt, size_t n_prompt,
                              const mer_generate_params *p, mer_generate_cb cb, void *ud,
                              mer_generate_result *res, mer_err *err);

// --- faces: face-api's detector and expression recogniser (tfjs weights) -----------------------------

/* Built-in face models: face-api's TinyFaceDetector and FaceExpressionNet (npm @vladmandic/face-api
 * 1.7.15, MIT), read from their tfjs weights manifests and run on mer's CPU kernels. A mer_face holds
 * both networks, a thread pool and scratch memory: use it from one thread at a time. */
typedef struct mer_face mer_face;

#define MER_FACE_N_EXPR 7

/* Expression i's name, in the models' order: neutral, happy, sad, angry, fearful, disgusted,
 * surprised. NULL outside [0, 7). */
const char *mer_face_expr_name(int i);

typedef struct mer_face_params {
    int n_threads;         /* threads of the pool (0: one per CPU) */
    int input_size;        /* detector input, a multiple of 32 in [32, 2048] (face-api's default 416) */
    float score_threshold; /* keep detections scoring above this (0.5) */
    float iou_threshold;   /* non-maximum suppression IoU (0.4) */
} mer_face_params;

mer_face_params mer_face_default_params(void);

/* Loads tiny_face_detector_model-weights_manifest.json and face_expression_model-weights_manifest.json
 * (and their shards) from `dir` (scripts/deps.d/face.sh installs them under models/face-api/). params
 * may be NULL (defaults). Returns MER_OK and *out (free with mer_face_free), or an error naming the
 * file at fault and *out = NULL. */
mer_status mer_face_load(const char *dir, const mer_face_params *params, mer_face **out, mer_err *err);
void mer_face_free(mer_face *f);

/* A detected face: the box in pixels (top-left x, y, width, height; it may extend past the image), its
 * score, and the integer crop that the expression net reads (the box clipped to the image, each value
 * floored, as face-api's extractFaceTensors; crop_w or crop_h is 0 for a box outside the image). */
typedef struct mer_face_box {
    double x, y, w, h;
    double score;
    int crop_x, crop_y, crop_w, crop_h;
} mer_face_box;

/* Detects faces in an 8-bit RGB image (w x h pixels, rows `stride` bytes apart, stride >= 3w). Returns
 * MER_OK with *boxes (caller frees with free(); NULL when *n == 0) in descending score order. */
mer_status mer_face_detect(mer_face *f, const uint8_t *rgb, int w, int h, size_t stride, mer_face_box **boxes,
                           size_t *n, mer_err *err);

/* The 7 expression probabilities (summing to 1) of the face at box->crop_* in the same image.
 * MER_E_ARG when the crop is empty or outside the image. */
mer_status mer_face_expressions(mer_face *f, const uint8_t *rgb, int w, int h, size_t stride,
                                const mer_face_box *box, float probs[MER_FACE_N_EXPR], mer_err *err);

/* An OpenFace-style face crop for AffectGPT's face inputs: the square of side 1.2 * max(box w, h) centred
 * on the box (parts outside the image black), resized bilinearly to size x size and written as BGR (as
 * OpenFace's aligned faces read with cv2.imread). out is [size][size][3]. */
mer_status mer_face_crop_bgr(const uint8_t *rgb, int w, int h, size_t stride, const mer_face_box *box, int size,
                             uint8_t *out, mer_err *err);

// --- video frames (FFmpeg; only in builds with MER_MEDIA=1) -------------------------------------------

/* A video file opened for frame access: any container and codec the FFmpeg libraries read. Frame i is the
 * i-th frame in presentation order. Used by one thread at a time. */
typedef struct mer_video mer_video;

typedef struct mer_video_info {
    int width, height;  /* decoded frame size */
    int64_t n_frames;   /* frames in the video stream (counted by demuxing the whole file) */
    double fps;         /* average frame rate (n_frames / duration when the container has none) */
    double duration;    /* seconds */
    char codec[32];     /* decoder name, e.g. "h264" */
    char container[32]; /* demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" (cut to fit) */
} mer_video_info;

/* Opens `path` and counts its frames. MER_E_IO (unreadable), MER_E_FORMAT (not a media file, or a corrupt
 * one), MER_E_NOTFOUND (no video stream), MER_E_UNSUPPORTED (no decoder, or frames over 8192 pixels a
 * side), each naming the file. Caller closes with mer_video_close. */
mer_status mer_video_open(const char *path, mer_video **out, mer_err *err);
void mer_video_close(mer_video *v);
const mer_video_info *mer_video_get_info(const mer_video *v);

/* Decodes frames idx[0..n) (any order, repeats allowed; each in [0, n_frames)) into rgb, frame k at
 * rgb + k * out_w * out_h * 3, packed RGB24. out_w, out_h: the output size (0, 0: the frame's own size;
 * at most 8192 a side);
 * a different size is a bilinear resize by swscale (aspect not kept). MER_E_RANGE for an index outside
 * the video, MER_E_FORMAT when decoding fails or a frame cannot be reached. */
mer_status mer_video_read(mer_video *v, const int64_t *idx, size_t n, int out_w, int out_h, uint8_t *rgb,
                          mer_err *err);

/* AffectGPT's frame sampling: k = min(n, n_frames) indices np.arange(0, n_frames, n_frames / k) cast to
 * int (i.e. floor(i * n_frames / k)), padded to n by repeating the last. n_frames >= 1, n >= 1. */
void mer_video_sample_indices(int64_t n_frames, int n, int64_t *idx);

// --- faces over a video: `mer run` and `mer faces` ------------------------------------------------------

/* One sampled frame: every face found, the expression probabilities of each, and which one is the
 * followed (main) face. */
typedef struct mer_face_frame {
    int64_t index;  /* frame number in the video */
    double time;    /* seconds (index / fps) */
    mer_face_box *boxes;                 /* [n_boxes], descending score */
    float (*probs)[MER_FACE_N_EXPR];     /* [n_boxes] expression probabilities of each face */
    size_t n_boxes;
    int main;       /* the followed face in boxes[], or -1 (set by mer_face_summarize) */
} mer_face_frame;

/* What `mer run` reports. All memory is owned by the report (mer_face_report_free). */
typedef struct mer_face_report {
    mer_face_frame *frames;
    size_t n_frames;
    size_t n_with_face;              /* frames where the main face is seen */
    float mean[MER_FACE_N_EXPR];     /* mean probabilities of the main face over those frames */
    char *labels;       /* Track2 open-vocabulary label set, e.g. "[happy, surprised]"; "[]" for none */
    char *description;  /* one paragraph: which expressions, when, how confident ("no face found") */
} mer_face_report;

/* Follows the main face: detections of consecutive sampled frames are linked into tracks (each box to
 * the unclaimed box of the previous frame with the highest IoU, if >= 0.3); the main track is the one seen
 * in the most frames (ties: larger mean box area, then earlier start). Per frame, main_out[i] is that
 * track's box, or when the track is absent the frame's largest box, or -1 for a frame without faces. */
void mer_face_track_main(const mer_face_frame *frames, size_t n_frames, int *main_out);

/* Fills r->frames[*].main (mer_face_track_main), r->n_with_face, r->mean, r->labels, r->description
 * from the frames' boxes and probabilities. Label rule: an expression other than neutral is reported
 * when the main face shows it as its most probable expression with probability >= 0.5 in at least one
 * frame, or when its mean probability over the frames with the face is >= 0.3; labels appear in the order
 * of the first frame that shows them. Neutral is never a label (it is not in the emotion wheels: the
 * Track2 metric would score it as nothing), so a neutral-only video gives "[]". */
mer_status mer_face_summarize(mer_face_report *r, mer_err *err);
void mer_face_report_free(mer_face_report *r);

/* Samples n frames of the video at `path` (mer_video_sample_indices), detects the faces and their
 * expressions in each, and summarises (mer_face_summarize). Returns MER_OK and *out (free with
 * mer_face_report_free); a video without faces is a valid report with n_with_face == 0. Needs MER_MEDIA. */
mer_status mer_face_run_video(mer_face *f, const char *path, int n, mer_face_report **out, mer_err *err);

/* Writes the main face of every sampled frame that has one as OpenFace-style crops (mer_face_crop_bgr,
 * size x size, BGR) to a numpy file out_npy: uint8 [n_faces, size, size, 3]. *n_written gets n_faces
 * (0 writes an empty [0, size, size, 3] array). Needs MER_MEDIA. */
mer_status mer_face_write_crops(mer_face *f, const char *path, int n, int size, const char *out_npy,
                                size_t *n_written, mer_err *err);

/* The same crops in memory, for a pipeline that feeds them on (AffectGPT's face input): *crops (caller
 * frees with free()) holds *n_crops BGR crops of size x size x 3 bytes, in frame order. Needs MER_MEDIA. */
mer_status mer_face_video_crops(mer_face *f, const char *path, int n, int size, uint8_t **crops, size_t *n_crops,
                                mer_err *err);

// --- dataset jobs: OV-label extraction (mer extract) -------------------------------------------------

/* Counts of a resumable dataset job (infer, extract). */
typedef struct mer_job_summary {
    size_t n_total, n_skipped, n_ok, n_failed;
    double seconds;
} mer_job_summary;

typedef struct mer_extract_params {
    const char *llm;        /* Qwen2.5-Instruct: HF folder, safetensors or GGUF */
    const char *tokenizer;  /* NULL: <llm folder>/tokenizer.json, or the GGUF itself */
    const char *wtype;      /* NULL: as stored; or f32 f16 bf16 q8_0 q4_0 */
    const char *column;     /* CSV input column holding the descriptions (default "reason") */
    /* the reference's vLLM SamplingParams (spec §2): temperature 0.7, top_p 0.8, repetition 1.05,
     * max_tokens 512, top_k off; sample i is drawn with seed + i, so a resumed run is reproducible */
    double temperature, top_p, repeat_penalty;
    int top_k, max_new_tokens;
    uint64_t seed;
    int n_threads;          /* 0: one per CPU */
    int progress;           /* progress on stderr */
    int retry_failed;       /* re-run samples whose earlier attempt failed */
    int batch;              /* sequences decoded together (default 8, as the reference); <= 1: one at a
                               time. Outputs do not depend on it. */
    /* where the LLM runs (default MER_DEVICE_AUTO: the GPU when there is one). On CUDA the batch decodes
     * on the device (one step for every running sample), bf16 weights (f32 with wtype "f32", q8_0/q4_0
     * kept); the device and its dtype are part of the run's identity, so a run is resumed on the same. */
    mer_device device;
} mer_extract_params;

mer_extract_params mer_extract_default_params(void);

/* Turns descriptions into OV label lists with the exact prompt, chat framing, sampling and answer
 * clean-up of the reference (spec §2). Input: a result .npz (name2reason) or a CSV (name + column).
 * Writes out_npz as an *-openset.npz submission (filenames, fileitems; successful rows, input order)
 * and <out>.csv/.jsonl beside it; progress is kept in <out_npz>.db so that a killed run continues
 * where it stopped. */
mer_status mer_extract_run(const mer_extract_params *p, const char *in_path, const char *out_npz,
                           mer_job_summary *summary, mer_err *err);

// --- AffectGPT inference over a dataset (mer infer) --------------------------------------------------

typedef enum mer_task {
    MER_TASK_OV = 0,          /* Track2: "Please recognize all possible emotional states of the character." */
    MER_TASK_DESCRIPTION = 1, /* Track3: "Please infer the person's emotional state and provide your reasoning process." */
} mer_task;

typedef struct mer_infer_params {
    /* models: HF folders (or files with config.json beside them) */
    const char *clip;       /* clip-vit-large-patch14 */
    const char *hubert;     /* chinese-hubert-large */
    const char *llm;        /* Qwen2.5-7B-Instruct (folder, safetensors or GGUF) */
    const char *tokenizer;  /* NULL: <llm folder>/tokenizer.json, or the GGUF */
    const char *affectgpt;  /* the AffectGPT checkpoint .pth (LoRA A/B + fusion + projectors under `model`) */
    const char *bundle;     /* a `mer convert` bundle: when set, every part comes from it (clip, hubert, llm and
                               affectgpt are ignored; tokenizer, if set, overrides the bundle's; the bundle's
                               own LoRA scale is used) */
    const char *wtype;      /* LLM weights converted at load: NULL (as stored), f32 f16 bf16 q8_0 q4_0 */
    double lora_scale;      /* lora_alpha / r: 32/16 = 2 for the released checkpoints */
    /* data: MER2025's layout under data_dir: video/<name>.mp4, audio/<name>.wav,
     * openface_face/<name>/<name>.npy, subtitle_chieng.csv */
    const char *data_dir;
    const char *names;      /* CSV with a `name` column (default <data_dir>/track_all_candidates.csv) */
    const char *subtitles;  /* default <data_dir>/subtitle_chieng.csv; a missing file means no subtitles */
    int input_frame;        /* 0: face config (openface crops); 1: frame config (raw video frames) */
    mer_task task;
    const char *question;   /* overrides the task's question */
    /* the reference's generate() (spec §4.8): sampling T=1, top_p 0.9, top_k 20 (Qwen2.5's
     * generation_config), no repetition penalty, at most 1200 new tokens, stop on eos or "###";
     * sample i uses seed + i. temperature 0: greedy. */
    double temperature, top_p, repeat_penalty;
    int top_k, max_new_tokens;
    uint64_t seed;
    /* quirks of the reference, on by default (spec §4.1-4.2) */
    int rgb_faces;          /* 1: convert the BGR face crops to RGB before CLIP (the reference does not) */
    /* face config without OpenFace: crops from video/<name>.mp4 by the built-in face detector
     * (mer_face_video_crops, 112x112 BGR like OpenFace's) instead of openface_face/<name>/<name>.npy */
    int detect_faces;
    const char *face_models; /* folder of face-api's model files (needed with detect_faces) */
    int per_clip_norm;      /* 1: normalise each audio clip alone (the reference normalises the 8 jointly) */
    int hf5_hidden;         /* 1: transformers >= 5's hidden-state list for HuBERT (the reference ran 4.x) */
    int n_threads, progress, retry_failed;
    /* samples answered together (default 8): their media and features are prepared ahead on a worker
     * thread while the LLM decodes them by continuous batching (mer_qwen2_generate_batch), each with its own
     * seeded sampler, so the answers do not depend on it; <= 1: one sample at a time */
    int batch;
    int min_new_tokens;     /* stop ids are masked until this many tokens are out (default 0: at least 1, as
                               the reference's generate(min_length=1)); for benchmarks of a fixed length */
    /* where the models run (default MER_DEVICE_AUTO: the GPU when there is one). On CUDA: CLIP (the 8
     * images as one batch) and HuBERT (the 8 clips as one batch) on one device context, the LLM on the
     * device (mer_qwen2_params.device) with batch sequences; bf16 weights (f32 with wtype "f32");
     * the fusion layers stay on the CPU */
    mer_device device;
} mer_infer_params;

mer_infer_params mer_infer_default_params(void);

/* Runs AffectGPT over every name: features (CLIP on 8 frames or faces, HuBERT on 8 audio clips),
 * fusion, the prompt with the three spliced embeddings, generation, the answer clean-up. Each result
 * is committed to <out_npz>.db as soon as it is produced (a killed run continues where it stopped); a
 * sample whose media is missing or corrupt is recorded with its error and the run goes on. Writes
 * out_npz (name2reason, as the reference's evaluation reads it) and <out>.csv/.jsonl beside it. */
mer_status mer_infer_run(const mer_infer_params *p, const char *out_npz, mer_job_summary *summary, mer_err *err);

// --- encoders: CLIP vision and HuBERT features (mer features) ----------------------------------------

/* AffectGPT's two frozen encoders as a feature extractor: CLIP ViT (e.g. clip-vit-large-patch14) image
 * features and HuBERT (e.g. chinese-hubert-large) audio features, with the reference's preprocessing
 * (PIL bicubic / cv2 bilinear resizing, CLIP normalisation, 16 kHz resampling, 8 clips of 2 s,
 * Wav2Vec2 normalisation). One instance is used by one thread at a time. */
typedef struct mer_encoders mer_encoders;

typedef struct mer_encoders_params {
    const char *clip;   /* CLIP checkpoint: HF folder, or a file with config.json beside it; NULL: none */
    const char *hubert; /* HuBERT checkpoint, likewise; NULL: none */
    int n_threads;      /* 0: one per CPU */
    /* -1 (default): the AffectGPT features: CLIP get_image_features (768-d for ViT-L/14); HuBERT the mean
     * of hidden_states[-4:], then over time (1024-d). >= 0: the mean over tokens (CLIP) / time (HuBERT)
     * of hidden state `layer` (0 = embeddings, n_layer = last block), n_embd wide. */
    int layer;
    /* quirks of the reference, on by default (spec §4.1-4.2) */
    int rgb_faces;      /* 1: convert BGR face crops to RGB before CLIP (the reference does not) */
    int per_clip_norm;  /* 1: normalise each audio clip alone (the reference normalises the 8 jointly) */
    int hf5_hidden;     /* 1: transformers >= 5's HuBERT hidden-state list (the reference ran 4.x, whose last
                           entry is the layer-normed output) */
    /* where the encoders run (default MER_DEVICE_AUTO: the GPU when there is one); on CUDA both run on one
     * device context in bf16, images in batches of 8 and the 8 audio clips as one batch */
    mer_device device;
} mer_encoders_params;

mer_encoders_params mer_encoders_default_params(void);

/* Loads the checkpoints named in p (at least one). Caller frees with mer_encoders_free. */
mer_status mer_encoders_open(const mer_encoders_params *p, mer_encoders **out, mer_err *err);
void mer_encoders_free(mer_encoders *e);
/* Width of one visual / audio feature row (0 when that encoder was not loaded). */
int mer_encoders_visual_dim(const mer_encoders *e);
int mer_encoders_audio_dim(const mer_encoders *e);

/* Visual features of n image files (JPEG, PNG, BMP, ...), each through HF's CLIP processor (shortest side
 * to the model's size with PIL bicubic, centre crop): out [n][visual_dim]. */
mer_status mer_encoders_images(mer_encoders *e, const char *const *paths, int n, float *out, mer_err *err);
/* Visual features of n uint8 images [h][w][3] given in memory (video frames: RGB), as above. */
mer_status mer_encoders_frames(mer_encoders *e, const uint8_t *const *imgs, int w, int h, int n, float *out,
                               mer_err *err);
/* AffectGPT's face input: an OpenFace .npy of uint8 [n, H, W, 3] BGR crops; 8 of them at
 * floor(i * n / 8) (repeating the last when n < 8), each cv2.resize'd to 224 x 224 (bilinear) as
 * AffectGPT does, then through the CLIP processor; BGR kept unless rgb_faces: out [8][visual_dim]. */
mer_status mer_encoders_faces(mer_encoders *e, const char *npy_path, float *out, mer_err *err);
/* Audio features of a 16 kHz mono waveform: 8 clips of 2 s (start_i = i * max(D - 2, 0) / 7 s,
 * zero-padded), normalised, through HuBERT: out [8][audio_dim]. */
mer_status mer_encoders_audio(mer_encoders *e, const float *pcm16k, size_t n, float *out, mer_err *err);
/* The same from a WAV file (any PCM / float format, rate and channel count: each channel resampled to
 * 16 kHz as torchaudio does, then averaged). */
mer_status mer_encoders_wav(mer_encoders *e, const char *wav_path, float *out, mer_err *err);

/* Writes a numpy-readable .npz (as np.savez: stored, float32, C order) with the arrays given: `visual`
 * [n_visual][dim_visual] when visual is non-NULL and `audio` [n_audio][dim_audio] when audio is non-NULL.
 * Atomic (temporary file + rename). */
mer_status mer_features_npz_write(const char *path, const float *visual, int n_visual, int dim_visual,
                                  const float *audio, int n_audio, int dim_audio, mer_err *err);

// --- single-file AffectGPT bundles (mer convert) -----------------------------------------------------

/* What goes into a bundle. The four checkpoints are required. */
typedef struct mer_bundle_params {
    const char *clip;         /* CLIP (clip-vit-large-patch14): HF folder, or a file with config.json beside it */
    const char *hubert;       /* HuBERT (chinese-hubert-large), likewise */
    const char *llm;          /* Qwen2 (Qwen2.5-7B-Instruct): HF folder, safetensors or a qwen2 GGUF */
    const char *affectgpt;    /* AffectGPT checkpoint_*.pth (LoRA A/B + fusion layers + projectors) */
    const char *tokenizer;    /* NULL: the LLM folder's tokenizer.json (or the GGUF's own); a tokenizer.json or
                                 a GGUF otherwise */
    const char *type;         /* LLM matrices: "q8_0" (default), "q4_0", "f16", "bf16" or "f32"; 1-D tensors f32 */
    const char *encoder_type; /* CLIP/HuBERT tensors of 2+ dims: NULL = f32 when type is f32, bf16 when it is
                                 bf16, f16 otherwise (the encoders take no block formats); "f32", "f16", "bf16",
                                 or "keep" (as stored). 1-D tensors are f32 */
    double lora_scale;        /* LoRA scale lora_alpha / r (default 2 = 32/16, the released configs) */
    int keep_lora;            /* 0: merge W += scale * B @ A (in f32, before conversion); 1: keep the A/B
                                 tensors (f32) beside unmerged weights, applied at load */
    int n_threads;            /* conversion threads; <= 0: one per CPU */
} mer_bundle_params;

mer_bundle_params mer_bundle_default_params(void); /* q8_0, LoRA merged with scale 2 */

typedef struct mer_bundle_stats {
    size_t n_tensors;             /* in the file */
    size_t n_llm, n_clip, n_hubert, n_fusion;
    size_t n_lora;                /* projections whose LoRA was merged, or A/B pairs kept */
    uint64_t bytes_out;           /* tensor data */
} mer_bundle_stats;

/* Packs the parts of an AffectGPT model into one GGUF v3 file at out_path (atomically): a qwen2 GGUF as
 * mer_quantize_file writes it (llama.cpp names and qwen2.* keys, tokenizer.ggml.*), with the checkpoint's
 * LoRA merged (or kept as lora.* tensors), plus clip.* and hubert.* tensors with their config.json texts as
 * mer.clip.config / mer.hubert.config, the fusion layers as affectgpt.* (f32), mer.bundle.version = 1,
 * mer.affectgpt.lora / lora_scale and the source paths (mer.source.*). Every part is loaded and checked
 * (and the widths matched) before anything is written. stats may be NULL. The file is read back by
 * mer_infer_run (params.bundle), and as a qwen2 GGUF by mer_qwen2_load and mer_tokenizer_load (not by
 * llama.cpp, which refuses files holding tensors its architecture does not use). */
mer_status mer_bundle_convert(const mer_bundle_params *params, const char *out_path, mer_bundle_stats *stats,
                              mer_err *err);

// --- Qwen2 batched decoding: several sequences per step (continuous batching) -----------------------

/* B slots over one model, each a mer_qwen2_ctx of its own (KV cache, position, logits) on one shared
 * thread pool. A slot is prefilled alone (mer_qwen2_prefill on mer_qwen2_batch_slot); a decode step runs
 * one token for each of several slots at once: the projections, MLP and lm_head as one matrix product
 * over the rows (the weights are read once for all of them), attention per slot against its own cache.
 * A slot's logits after a step are what mer_qwen2_prefill of that one token would have given (the same
 * kernels; bit-identical for q8_0/q4_0 weights below 32 rows, where their products are per-row integer
 * dots; within float rounding for f32/f16/bf16 from 4 rows and for q8_0/q4_0 from 32, where the matrix
 * product is a GEMM: see MER_CPU_GEMM_MIN_TOK in kernels.h). Used by one thread at a time. */
typedef struct mer_qwen2_batch mer_qwen2_batch;

/* Makes n_slots (1..256) contexts with params (n_threads: the shared pool). Caller frees with
 * mer_qwen2_batch_free; m must outlive it. */
mer_status mer_qwen2_batch_init(const mer_qwen2 *m, int n_slots, const mer_qwen2_ctx_params *params,
                                mer_qwen2_batch **out, mer_err *err);
void mer_qwen2_batch_free(mer_qwen2_batch *b);
int mer_qwen2_batch_n_slots(const mer_qwen2_batch *b);
/* Slot i's context (owned by the batch): reset, prefill and read its logits with the mer_qwen2_ctx
 * functions. */
mer_qwen2_ctx *mer_qwen2_batch_slot(mer_qwen2_batch *b, int i);

/* One decode step: token ids[r] at the next position of slot slots[r], for r < n (distinct slots).
 * Afterwards each of those slots has one more token in its cache and its logits (mer_qwen2_logits,
 * one row) are those of ids[r]. MER_E_ARG for a repeated or unknown slot, MER_E_RANGE for an id outside
 * the vocabulary or a slot whose cache is full (nothing is run). */
mer_status mer_qwen2_batch_decode(mer_qwen2_batch *b, const int *slots, const int32_t *ids, int n, mer_err *err);

/* One request of batched generation: the prompt (copied when taken) and its generation parameters
 * (stop strings are not supported here: MER_E_UNSUPPORTED for that request). index is passed back.
 * The prompt is either token ids (ids, n_ids; the repetition-penalty history starts with them, as
 * mer_qwen2_generate with a prompt) or input embeddings (embd [n_embd_rows][n_embd], read while the
 * request is taken, as mer_qwen2_prefill_embd; the history is then the output alone, as
 * mer_qwen2_generate with n_prompt == 0); giving both is MER_E_ARG for that request. */
typedef struct mer_batch_request {
    size_t index;
    const int32_t *ids;
    size_t n_ids;
    mer_generate_params params;
    const float *embd;
    size_t n_embd_rows;
} mer_batch_request;

/* Fills *req with the next prompt; returns 1, or 0 when there are no more. */
typedef int (*mer_batch_next_fn)(void *ud, mer_batch_request *req);
/* A request finished: st is MER_OK and res its output (res->ids valid during the call only; the stop
 * reason as mer_qwen2_generate gives it), or the request's error (st, msg) and res empty. Returning
 * non-zero (with err filled) stops the whole generation with that status. */
typedef mer_status (*mer_batch_done_fn)(void *ud, size_t index, mer_status st, const mer_generate_result *res,
                                        const char *msg, mer_err *err);

/* Continuous batching: takes requests from next into free slots (prefill, one at a time), then decodes
 * every running slot together one token per step (on a device model: one device step), sampling the
 * slots in parallel on the batch's threads, each with its own sampler (seeded from its
 * request's params: the output of a request is the one mer_qwen2_generate gives for it alone, whatever
 * else runs beside it); a slot that finishes (stop id, max_new_tokens, full context) is reported to
 * done and refilled. Returns MER_OK when every request was reported, else the first fatal error
 * (out of memory, or done's). */
mer_status mer_qwen2_generate_batch(mer_qwen2_batch *b, mer_batch_next_fn next, mer_batch_done_fn done, void *ud,
                                    mer_err *err);

#ifdef __cplusplus
}
#endif
#endif /* MER_H */
