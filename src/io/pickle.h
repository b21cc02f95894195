/* pickle.h - a safe subset of Python's pickle (protocols 0 to 5) for the pickles mer meets: numpy object
 * arrays (np.save of a dict) and PyTorch checkpoints (torch.save). Internal to mer.
 *
 * The loader is a virtual machine that builds a tree of plain values (None, bool, int, float, str,
 * bytes, tuple, list, dict, set) and never executes anything. GLOBAL/STACK_GLOBAL are accepted only
 * for a fixed whitelist (below); REDUCE, NEWOBJ and BUILD are accepted only on whitelisted callables,
 * which are interpreted here, in C:
 *   collections.OrderedDict              -> a dict (BUILD state, i.e. attributes such as _metadata, ignored)
 *   builtins.set / frozenset             -> a set;   torch.Size -> a tuple
 *   _codecs.encode(str, 'latin1')        -> bytes (how protocol 2 pickles bytes)
 *   numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype (+ BUILD states)  -> MER_PY_NDARRAY
 *   numpy.core.multiarray.scalar(dtype, bytes)  -> an int, float or bool
 *   torch._utils._rebuild_tensor_v2 / _rebuild_tensor / _rebuild_parameter[_with_state],
 *   torch._tensor._rebuild_from_type_v2 (with torch.Tensor / torch.nn.parameter.Parameter)  -> MER_PY_TENSOR
 *   torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage in a persistent id
 *   ('storage', type, key, location, numel)  -> MER_PY_STORAGE
 * Any other global, an unsupported opcode (INST, OBJ, EXT*, NEXT_BUFFER, text PERSID, ...) or a
 * malformed stream is an error that names the opcode and its byte offset. Stack, mark and memo sizes
 * are bounded by the input length, so no input makes the loader allocate more than a small multiple of
 * its size (and the total of container items built is bounded by 8 x the input length + 4096, so that
 * memo references cannot make REDUCE/BUILD copy one big list again and again). The value graph may share
 * nodes (memo) and, for crafted input, contain cycles or exponentially many paths: walkers must bound
 * both their depth (MER_PY_MAX_DEPTH) and their total work (e.g. visit at most n_nodes entries).
 *
 * The writer emits exactly what CPython's pickle.dumps(d, protocol=2) emits for a dict {str: str}, and
 * exactly what np.save writes for a 0-d object array holding such a dict (a protocol 3 pickle). */
#ifndef MER_IO_PICKLE_H
#define MER_IO_PICKLE_H

#include "core/core.h"
#include "core/dtype.h"

#define MER_PY_MAX_DEPTH 64
#define MER_PY_MAX_DIMS 16

typedef enum mer_py_type {
    MER_PY_NONE = 0,
    MER_PY_BOOL,
    MER_PY_INT,     /* fits int64: i */
    MER_PY_BIGINT,  /* does not fit int64: s/len hold the little-endian two's complement bytes (may be empty
                       for a text int) */
    MER_PY_FLOAT,   /* f */
    MER_PY_STR,     /* s: valid UTF-8, NUL-terminated; len bytes (may contain NUL) */
    MER_PY_BYTES,   /* s/len */
    MER_PY_TUPLE,   /* items[n] */
    MER_PY_LIST,    /* items[n] */
    MER_PY_DICT,    /* items[2n]: key, value, key, value... in insertion order (a later equal key is kept
                       as a second pair: see mer__py_dict_get) */
    MER_PY_SET,     /* items[n] */
    MER_PY_GLOBAL,  /* a whitelisted callable or type, not applied (g says which) */
    MER_PY_NDARRAY, /* numpy array: dtype (a MER_PY_DTYPE node), shape; object arrays: items[n] elements;
                       other dtypes: raw bytes in s/len */
    MER_PY_DTYPE,   /* numpy dtype: s = its name as numpy.dtype() got it ("O8", "f4", "U5"...), endian char */
    MER_PY_STORAGE, /* torch storage: s = key, dtype, numel */
    MER_PY_TENSOR,  /* torch tensor: storage node, offset, n_dims, shape, stride */
} mer_py_type;

typedef struct mer_py mer_py;
struct mer_py {
    mer_py_type type;
    int g;                /* MER_PY_GLOBAL: internal whitelist id */
    int64_t i;            /* BOOL, INT; STORAGE: numel; TENSOR: storage offset (elements) */
    double f;             /* FLOAT */
    char *s;              /* STR, BYTES, BIGINT, DTYPE, STORAGE key; NDARRAY raw data */
    size_t len;
    mer_py **items;       /* TUPLE LIST SET DICT NDARRAY(object) */
    size_t n, cap;        /* DICT: n pairs (2n items) */
    mer_dtype dtype;      /* STORAGE, GLOBAL storage type, TENSOR (copied from its storage) */
    char endian;          /* DTYPE: '<', '>', '|' or '=' */
    mer_py *ref;          /* TENSOR: its STORAGE; NDARRAY: its DTYPE */
    int n_dims;           /* TENSOR, NDARRAY */
    int fortran;          /* NDARRAY */
    int64_t *shape;       /* TENSOR, NDARRAY: MER_PY_MAX_DIMS entries, n_dims used; NULL otherwise */
    int64_t *stride;      /* TENSOR: in elements */
};

/* The result of a load: the root value and every node (freed together: nodes and their strings live in
 * an arena, container item arrays are malloc'd). */
typedef struct mer_pickle {
    mer_py *root;
    mer_py **nodes;
    size_t n_nodes, cap_nodes;
    void *arena; /* internal: chain of slabs */
} mer_pickle;

/* Unpickles data[0..n). `name` is used in messages ("<name>: pickle: <what> (opcode X at offset N)").
 * On failure nothing is left to free. Thread-safe (no global state). */
mer_status mer__pickle_load(const char *name, const uint8_t *data, size_t n, mer_pickle *out, mer_err *err);
void mer__pickle_free(mer_pickle *p);

/* The value for str key `key` in a dict (the last pair with that key, as Python keeps it); NULL when
 * absent or d is not a dict. */
const mer_py *mer__py_dict_get(const mer_py *d, const char *key);
/* A short name of the value's Python type ("str", "dict", "torch.Tensor"...). */
const char *mer__py_type_name(const mer_py *v);

/* Appends pickle.dumps(d, protocol=2) for the dict {keys[i]: vals[i]} (insertion order), byte for byte
 * as CPython 3.11 writes it for freshly made strings. Strings must be valid UTF-8 (MER_E_ARG). */
mer_status mer__pickle_write_str_dict(mer_buf *b, const char *const *keys, const char *const *vals, size_t n,
                                      mer_err *err);
/* Appends the payload np.save writes after the .npy header for a 0-d object array holding that dict
 * (a protocol 3 pickle of the ndarray). */
mer_status mer__pickle_write_npy_object_dict(mer_buf *b, const char *const *keys, const char *const *vals, size_t n,
                                             mer_err *err);

#endif
