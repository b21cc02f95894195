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

/* Writes a raw result npz: key `name2reason`, a 0-d object array holding a pickled (protocol 2) dict
 * {name: text} in row order, as np.savez_compressed(path, name2reason=dict) writes it. Atomic. */
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
} mer_quantize_stats;

/* Converts any checkpoint mer_weights_open reads into a GGUF v3 file at out_path (atomically): names
 * mapped to llama.cpp's names where the architecture has a table (Qwen2), its hyper-parameters from
 * config.json (or the metadata of a GGUF input) written as <arch>.* keys, 2-D+ float tensors converted
 * to params->type (1-D ones and rows not a multiple of 32 stay f32, integer tensors keep their type).
 * Tensors stream through one at a time. stats may be NULL. */
mer_status mer_quantize_file(const char *in_path, const char *out_path, const mer_quantize_params *params,
                             mer_quantize_stats *stats, mer_err *err);

#ifdef __cplusplus
}
#endif
#endif /* MER_H */
