/* pickle.c - the safe pickle virtual machine and the dict writer declared in pickle.h. The machine reads
 * one opcode at a time, keeps Python's stack / mark / memo model, and builds mer_py nodes; callables are
 * never called: the few whitelisted ones are interpreted by apply() below. Every length read from the
 * stream is checked against the bytes left, every pop against the stack (and the current mark), every
 * memo index against a bound derived from the input length. */
#include "io/pickle.h"

#include <stdarg.h>
#include <string.h>

// --- opcodes -----------------------------------------------------------------------------------------

enum {
    OP_MARK = '(', OP_STOP = '.', OP_POP = '0', OP_POP_MARK = '1', OP_DUP = '2', OP_FLOAT = 'F', OP_INT = 'I',
    OP_BININT = 'J', OP_BININT1 = 'K', OP_LONG = 'L', OP_BININT2 = 'M', OP_NONE = 'N', OP_PERSID = 'P',
    OP_BINPERSID = 'Q', OP_REDUCE = 'R', OP_STRING = 'S', OP_BINSTRING = 'T', OP_SHORT_BINSTRING = 'U',
    OP_UNICODE = 'V', OP_BINUNICODE = 'X', OP_APPEND = 'a', OP_BUILD = 'b', OP_GLOBAL = 'c', OP_DICT = 'd',
    OP_EMPTY_DICT = '}', OP_APPENDS = 'e', OP_GET = 'g', OP_BINGET = 'h', OP_INST = 'i', OP_LONG_BINGET = 'j',
    OP_LIST = 'l', OP_EMPTY_LIST = ']', OP_OBJ = 'o', OP_PUT = 'p', OP_BINPUT = 'q', OP_LONG_BINPUT = 'r',
    OP_SETITEM = 's', OP_TUPLE = 't', OP_EMPTY_TUPLE = ')', OP_SETITEMS = 'u', OP_BINFLOAT = 'G',
    OP_PROTO = 0x80, OP_NEWOBJ = 0x81, OP_EXT1 = 0x82, OP_EXT2 = 0x83, OP_EXT4 = 0x84, OP_TUPLE1 = 0x85,
    OP_TUPLE2 = 0x86, OP_TUPLE3 = 0x87, OP_NEWTRUE = 0x88, OP_NEWFALSE = 0x89, OP_LONG1 = 0x8a, OP_LONG4 = 0x8b,
    OP_BINBYTES = 'B', OP_SHORT_BINBYTES = 'C', OP_SHORT_BINUNICODE = 0x8c, OP_BINUNICODE8 = 0x8d,
    OP_BINBYTES8 = 0x8e, OP_EMPTY_SET = 0x8f, OP_ADDITEMS = 0x90, OP_FROZENSET = 0x91, OP_NEWOBJ_EX = 0x92,
    OP_STACK_GLOBAL = 0x93, OP_MEMOIZE = 0x94, OP_FRAME = 0x95, OP_BYTEARRAY8 = 0x96, OP_NEXT_BUFFER = 0x97,
    OP_READONLY_BUFFER = 0x98,
};

static const char *opname(int op) {
    switch (op) {
    case OP_MARK: return "MARK"; case OP_STOP: return "STOP"; case OP_POP: return "POP";
    case OP_POP_MARK: return "POP_MARK"; case OP_DUP: return "DUP"; case OP_FLOAT: return "FLOAT";
    case OP_INT: return "INT"; case OP_BININT: return "BININT"; case OP_BININT1: return "BININT1";
    case OP_LONG: return "LONG"; case OP_BININT2: return "BININT2"; case OP_NONE: return "NONE";
    case OP_PERSID: return "PERSID"; case OP_BINPERSID: return "BINPERSID"; case OP_REDUCE: return "REDUCE";
    case OP_STRING: return "STRING"; case OP_BINSTRING: return "BINSTRING";
    case OP_SHORT_BINSTRING: return "SHORT_BINSTRING"; case OP_UNICODE: return "UNICODE";
    case OP_BINUNICODE: return "BINUNICODE"; case OP_APPEND: return "APPEND"; case OP_BUILD: return "BUILD";
    case OP_GLOBAL: return "GLOBAL"; case OP_DICT: return "DICT"; case OP_EMPTY_DICT: return "EMPTY_DICT";
    case OP_APPENDS: return "APPENDS"; case OP_GET: return "GET"; case OP_BINGET: return "BINGET";
    case OP_INST: return "INST"; case OP_LONG_BINGET: return "LONG_BINGET"; case OP_LIST: return "LIST";
    case OP_EMPTY_LIST: return "EMPTY_LIST"; case OP_OBJ: return "OBJ"; case OP_PUT: return "PUT";
    case OP_BINPUT: return "BINPUT"; case OP_LONG_BINPUT: return "LONG_BINPUT"; case OP_SETITEM: return "SETITEM";
    case OP_TUPLE: return "TUPLE"; case OP_EMPTY_TUPLE: return "EMPTY_TUPLE"; case OP_SETITEMS: return "SETITEMS";
    case OP_BINFLOAT: return "BINFLOAT"; case OP_PROTO: return "PROTO"; case OP_NEWOBJ: return "NEWOBJ";
    case OP_EXT1: return "EXT1"; case OP_EXT2: return "EXT2"; case OP_EXT4: return "EXT4";
    case OP_TUPLE1: return "TUPLE1"; case OP_TUPLE2: return "TUPLE2"; case OP_TUPLE3: return "TUPLE3";
    case OP_NEWTRUE: return "NEWTRUE"; case OP_NEWFALSE: return "NEWFALSE"; case OP_LONG1: return "LONG1";
    case OP_LONG4: return "LONG4"; case OP_BINBYTES: return "BINBYTES"; case OP_SHORT_BINBYTES: return "SHORT_BINBYTES";
    case OP_SHORT_BINUNICODE: return "SHORT_BINUNICODE"; case OP_BINUNICODE8: return "BINUNICODE8";
    case OP_BINBYTES8: return "BINBYTES8"; case OP_EMPTY_SET: return "EMPTY_SET"; case OP_ADDITEMS: return "ADDITEMS";
    case OP_FROZENSET: return "FROZENSET"; case OP_NEWOBJ_EX: return "NEWOBJ_EX";
    case OP_STACK_GLOBAL: return "STACK_GLOBAL"; case OP_MEMOIZE: return "MEMOIZE"; case OP_FRAME: return "FRAME";
    case OP_BYTEARRAY8: return "BYTEARRAY8"; case OP_NEXT_BUFFER: return "NEXT_BUFFER";
    case OP_READONLY_BUFFER: return "READONLY_BUFFER";
    }
    return NULL;
}

// --- the whitelist -----------------------------------------------------------------------------------

enum {
    G_ORDEREDDICT = 1, G_SET, G_FROZENSET, G_TORCH_SIZE, G_CODECS_ENCODE, G_NP_RECONSTRUCT, G_NP_NDARRAY,
    G_NP_DTYPE, G_NP_SCALAR, G_REBUILD_TENSOR_V2, G_REBUILD_TENSOR, G_REBUILD_PARAMETER,
    G_REBUILD_PARAMETER_STATE, G_REBUILD_FROM_TYPE_V2, G_TORCH_TENSOR, G_TORCH_PARAMETER, G_STORAGE,
};

static const struct {
    const char *module, *name;
    int g;
    mer_dtype dtype;
} whitelist[] = {
    {"collections", "OrderedDict", G_ORDEREDDICT, MER_DTYPE_INVALID},
    {"builtins", "set", G_SET, MER_DTYPE_INVALID},
    {"__builtin__", "set", G_SET, MER_DTYPE_INVALID},
    {"builtins", "frozenset", G_FROZENSET, MER_DTYPE_INVALID},
    {"__builtin__", "frozenset", G_FROZENSET, MER_DTYPE_INVALID},
    {"torch", "Size", G_TORCH_SIZE, MER_DTYPE_INVALID},
    {"_codecs", "encode", G_CODECS_ENCODE, MER_DTYPE_INVALID},
    {"numpy.core.multiarray", "_reconstruct", G_NP_RECONSTRUCT, MER_DTYPE_INVALID},
    {"numpy._core.multiarray", "_reconstruct", G_NP_RECONSTRUCT, MER_DTYPE_INVALID},
    {"numpy", "ndarray", G_NP_NDARRAY, MER_DTYPE_INVALID},
    {"numpy", "dtype", G_NP_DTYPE, MER_DTYPE_INVALID},
    {"numpy.core.multiarray", "scalar", G_NP_SCALAR, MER_DTYPE_INVALID},
    {"numpy._core.multiarray", "scalar", G_NP_SCALAR, MER_DTYPE_INVALID},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR_V2, MER_DTYPE_INVALID},
    {"torch._utils", "_rebuild_tensor", G_REBUILD_TENSOR, MER_DTYPE_INVALID},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER, MER_DTYPE_INVALID},
    {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAMETER_STATE, MER_DTYPE_INVALID},
    {"torch._tensor", "_rebuild_from_type_v2", G_REBUILD_FROM_TYPE_V2, MER_DTYPE_INVALID},
    {"torch", "Tensor", G_TORCH_TENSOR, MER_DTYPE_INVALID},
    {"torch.nn.parameter", "Parameter", G_TORCH_PARAMETER, MER_DTYPE_INVALID},
    {"torch", "FloatStorage", G_STORAGE, MER_DTYPE_F32},
    {"torch", "HalfStorage", G_STORAGE, MER_DTYPE_F16},
    {"torch", "BFloat16Storage", G_STORAGE, MER_DTYPE_BF16},
    {"torch", "DoubleStorage", G_STORAGE, MER_DTYPE_F64},
    {"torch", "LongStorage", G_STORAGE, MER_DTYPE_I64},
    {"torch", "IntStorage", G_STORAGE, MER_DTYPE_I32},
    {"torch", "ShortStorage", G_STORAGE, MER_DTYPE_I16},
    {"torch", "CharStorage", G_STORAGE, MER_DTYPE_I8},
    {"torch", "ByteStorage", G_STORAGE, MER_DTYPE_U8},
    {"torch", "BoolStorage", G_STORAGE, MER_DTYPE_BOOL},
};

static const char *gname(int g) {
    for (size_t k = 0; k < MER_ARRAY_LEN(whitelist); k++)
        if (whitelist[k].g == g) return whitelist[k].name;
    return "?";
}

// --- machine state -----------------------------------------------------------------------------------

typedef struct vm {
    const char *name;
    const uint8_t *d;
    size_t n, pos;
    size_t op_off; /* offset of the current opcode */
    int op;
    mer_pickle *out;
    mer_py **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nm, mcap;
    mer_py **memo;
    size_t memo_cap;
    size_t memo_next; /* MEMOIZE index */
    size_t item_budget; /* container slots still allowed: bounds the work of REDUCE/BUILD copies */
    int over_budget;    /* set when add_item/dict_set failed for the budget, not for memory */
    mer_err *err;
} vm;

static mer_status verr(vm *v, mer_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static mer_status verr(vm *v, mer_status st, const char *fmt, ...) {
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *on = opname(v->op);
    if (on)
        return mer__errf(v->err, st, "%s: pickle: %s (opcode %s at offset %zu)", v->name, msg, on, v->op_off);
    return mer__errf(v->err, st, "%s: pickle: %s (opcode 0x%02x at offset %zu)", v->name, msg, v->op, v->op_off);
}

static mer_status nomem(vm *v) {
    if (v->over_budget)
        return verr(v, MER_E_RANGE, "the pickle builds more container items than its size allows (shared references)");
    return verr(v, MER_E_NOMEM, "out of memory");
}

// --- arena: nodes and strings are carved from 64 KiB slabs, freed together ---------------------------

typedef struct slab {
    struct slab *next;
    size_t used, cap;
    max_align_t data[];
} slab;

static void *arena_alloc(mer_pickle *p, size_t n) {
    n = (n + 15) & ~(size_t)15;
    slab *s = p->arena;
    if (!s || s->cap - s->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        slab *ns = malloc(sizeof *ns + cap);
        if (!ns) return NULL;
        ns->next = s;
        ns->used = 0;
        ns->cap = cap;
        p->arena = s = ns;
    }
    void *r = (char *)s->data + s->used;
    s->used += n;
    return r;
}

static mer_py *mk(vm *v, mer_py_type t) {
    mer_pickle *p = v->out;
    if (p->n_nodes == p->cap_nodes) {
        size_t nc = p->cap_nodes ? p->cap_nodes * 2 : 64;
        mer_py **nn = realloc(p->nodes, nc * sizeof *nn);
        if (!nn) return NULL;
        p->nodes = nn;
        p->cap_nodes = nc;
    }
    mer_py *x = arena_alloc(p, sizeof *x);
    if (!x) return NULL;
    memset(x, 0, sizeof *x);
    x->type = t;
    x->dtype = MER_DTYPE_INVALID;
    p->nodes[p->n_nodes++] = x;
    return x;
}

/* shape (and stride) arrays for tensors and arrays */
static int mk_dims(vm *v, mer_py *x, int with_stride) {
    x->shape = arena_alloc(v->out, (with_stride ? 2 : 1) * MER_PY_MAX_DIMS * sizeof(int64_t));
    if (!x->shape) return -1;
    if (with_stride) x->stride = x->shape + MER_PY_MAX_DIMS;
    return 0;
}

/* Both return -1 when out of memory or out of the item budget (see mer__pickle_load). */
static int add_item(vm *v, mer_py *c, mer_py *x) {
    if (!v->item_budget) return v->over_budget = 1, -1;
    v->item_budget--;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 4;
        mer_py **ni = realloc(c->items, nc * sizeof *ni);
        if (!ni) return -1;
        c->items = ni;
        c->cap = nc;
    }
    c->items[c->n++] = x;
    return 0;
}

/* dict pairs are stored flat; n counts pairs */
static int dict_set(vm *v, mer_py *d, mer_py *k, mer_py *val) {
    if (v->item_budget < 2) return v->over_budget = 1, -1;
    v->item_budget -= 2;
    size_t items = d->n * 2;
    if (items + 2 > d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 8;
        mer_py **ni = realloc(d->items, nc * sizeof *ni);
        if (!ni) return -1;
        d->items = ni;
        d->cap = nc;
    }
    d->items[items] = k;
    d->items[items + 1] = val;
    d->n++;
    return 0;
}

static mer_status push(vm *v, mer_py *x) {
    if (!x) return nomem(v);
    if (v->sp == v->scap) {
        size_t nc = v->scap ? v->scap * 2 : 64;
        if (nc > v->n + 64) nc = v->n + 64; /* every push consumes at least one input byte */
        if (nc <= v->sp) return verr(v, MER_E_FORMAT, "stack too deep");
        mer_py **ns = realloc(v->stack, nc * sizeof *ns);
        if (!ns) return nomem(v);
        v->stack = ns;
        v->scap = nc;
    }
    v->stack[v->sp++] = x;
    return MER_OK;
}

static size_t base(const vm *v) { return v->nm ? v->marks[v->nm - 1] : 0; }

static mer_status pop(vm *v, mer_py **x) {
    if (v->sp <= base(v)) return verr(v, MER_E_FORMAT, "stack underflow");
    *x = v->stack[--v->sp];
    return MER_OK;
}

static mer_status top(vm *v, mer_py **x) {
    if (v->sp <= base(v)) return verr(v, MER_E_FORMAT, "stack underflow");
    *x = v->stack[v->sp - 1];
    return MER_OK;
}

/* Pops back to the last mark; the items are v->stack[*from .. *from + *cnt) (still valid memory). */
static mer_status pop_mark(vm *v, size_t *from, size_t *cnt) {
    if (!v->nm) return verr(v, MER_E_FORMAT, "no MARK on the stack");
    size_t m = v->marks[--v->nm];
    *from = m;
    *cnt = v->sp - m;
    v->sp = m;
    return MER_OK;
}

static mer_status need(vm *v, size_t k) {
    if (v->n - v->pos < k)
        return verr(v, MER_E_FORMAT, "truncated: %zu bytes needed, %zu left", k, v->n - v->pos);
    return MER_OK;
}

static uint64_t rdle(const uint8_t *p, int k) {
    uint64_t x = 0;
    for (int i = k - 1; i >= 0; i--) x = (x << 8) | p[i];
    return x;
}

static mer_status readline(vm *v, const char **s, size_t *len) {
    const uint8_t *nl = memchr(v->d + v->pos, '\n', v->n - v->pos);
    if (!nl) return verr(v, MER_E_FORMAT, "truncated: unterminated line");
    *s = (const char *)v->d + v->pos;
    *len = (size_t)(nl - (v->d + v->pos));
    v->pos += *len + 1;
    return MER_OK;
}

/* length-prefixed payload of k bytes (k-byte little-endian length) */
static mer_status readlen(vm *v, int k, const uint8_t **p, size_t *len) {
    mer_status st = need(v, (size_t)k);
    if (st) return st;
    uint64_t L = rdle(v->d + v->pos, k);
    v->pos += (size_t)k;
    if (L > v->n - v->pos) return verr(v, MER_E_FORMAT, "truncated: length %llu exceeds the %zu bytes left",
                                       (unsigned long long)L, v->n - v->pos);
    *p = v->d + v->pos;
    *len = (size_t)L;
    v->pos += (size_t)L;
    return MER_OK;
}

static mer_py *mk_str(vm *v, mer_py_type t, const char *s, size_t len) {
    mer_py *x = mk(v, t);
    if (!x) return NULL;
    x->s = arena_alloc(v->out, len + 1);
    if (!x->s) return NULL;
    if (len) memcpy(x->s, s, len);
    x->s[len] = 0;
    x->len = len;
    return x;
}

/* bytes interpreted as latin-1 -> a UTF-8 str node */
static mer_py *mk_latin1(vm *v, const uint8_t *s, size_t len) {
    mer_py *x = mk(v, MER_PY_STR);
    if (!x) return NULL;
    x->s = arena_alloc(v->out, 2 * len + 1);
    if (!x->s) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) k += (size_t)mer__utf8_encode(s[i], x->s + k);
    x->s[k] = 0;
    x->len = k;
    return x;
}

static mer_status push_utf8(vm *v, const uint8_t *s, size_t len) {
    size_t bad = mer__utf8_check(s, len);
    if (bad != len) return verr(v, MER_E_FORMAT, "invalid UTF-8 in a string at byte %zu of it", bad);
    return push(v, mk_str(v, MER_PY_STR, (const char *)s, len));
}

static mer_py *mk_int(vm *v, int64_t i) {
    mer_py *x = mk(v, MER_PY_INT);
    if (x) x->i = i;
    return x;
}

static mer_py *mk_bool(vm *v, int b) {
    mer_py *x = mk(v, MER_PY_BOOL);
    if (x) x->i = b != 0;
    return x;
}

/* little-endian two's complement of k bytes */
static mer_status push_long(vm *v, const uint8_t *p, size_t k) {
    if (k == 0) return push(v, mk_int(v, 0));
    /* drop redundant sign-extension bytes */
    size_t m = k;
    while (m > 1 && ((p[m - 1] == 0x00 && !(p[m - 2] & 0x80)) || (p[m - 1] == 0xFF && (p[m - 2] & 0x80)))) m--;
    if (m <= 8) {
        uint64_t u = rdle(p, (int)m);
        if (m < 8 && (p[m - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * m);
        return push(v, mk_int(v, (int64_t)u));
    }
    return push(v, mk_str(v, MER_PY_BIGINT, (const char *)p, k));
}

/* decimal text int (optional sign, optional trailing L); big values become an opaque BIGINT */
static mer_status push_text_int(vm *v, const char *s, size_t len, int is_long) {
    if (is_long && len && s[len - 1] == 'L') len--;
    if (!is_long && len == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1')) return push(v, mk_bool(v, s[1] == '1'));
    size_t i = 0;
    int neg = 0;
    if (i < len && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    if (i == len) return verr(v, MER_E_FORMAT, "bad integer literal");
    uint64_t u = 0;
    int big = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return verr(v, MER_E_FORMAT, "bad integer literal");
        if (u > (UINT64_MAX - 9) / 10) big = 1;
        else u = u * 10 + (uint64_t)(s[i] - '0');
    }
    if (big || u > (uint64_t)INT64_MAX + (uint64_t)neg) return push(v, mk_str(v, MER_PY_BIGINT, "", 0));
    return push(v, mk_int(v, neg ? (int64_t)(0 - u) : (int64_t)u));
}

// --- interpreting whitelisted callables --------------------------------------------------------------

static int is_int(const mer_py *x) { return x && (x->type == MER_PY_INT || x->type == MER_PY_BOOL); }

static mer_status int_tuple(vm *v, const mer_py *t, int64_t *out, int *n, const char *what) {
    if (!t || (t->type != MER_PY_TUPLE && t->type != MER_PY_LIST)) return verr(v, MER_E_FORMAT, "%s is not a tuple", what);
    if (t->n > MER_PY_MAX_DIMS) return verr(v, MER_E_UNSUPPORTED, "%s has %zu dimensions (at most %d)", what, t->n, MER_PY_MAX_DIMS);
    for (size_t k = 0; k < t->n; k++) {
        if (!is_int(t->items[k]) || t->items[k]->i < 0) return verr(v, MER_E_FORMAT, "%s holds a non-integer or negative value", what);
        out[k] = t->items[k]->i;
    }
    *n = (int)t->n;
    return MER_OK;
}

static mer_status make_tensor(vm *v, mer_py *args, size_t min_args, mer_py **res) {
    if (args->n < min_args) return verr(v, MER_E_FORMAT, "tensor rebuild with %zu arguments", args->n);
    mer_py *stg = args->items[0], *off = args->items[1];
    if (stg->type != MER_PY_STORAGE) return verr(v, MER_E_FORMAT, "tensor rebuild from a %s, not a storage", mer__py_type_name(stg));
    if (!is_int(off) || off->i < 0) return verr(v, MER_E_FORMAT, "tensor rebuild with a bad storage offset");
    mer_py *t = mk(v, MER_PY_TENSOR);
    if (!t || mk_dims(v, t, 1)) return nomem(v);
    int nd1, nd2;
    mer_status st = int_tuple(v, args->items[2], t->shape, &nd1, "tensor size");
    if (!st) st = int_tuple(v, args->items[3], t->stride, &nd2, "tensor stride");
    if (st) return st;
    if (nd1 != nd2) return verr(v, MER_E_FORMAT, "tensor size and stride differ in length (%d vs %d)", nd1, nd2);
    t->n_dims = nd1;
    t->ref = stg;
    t->dtype = stg->dtype;
    t->i = off->i;
    *res = t;
    return MER_OK;
}

static mer_status apply(vm *v, mer_py *fn, mer_py *args, mer_py **res, int nested);

static mer_status np_scalar(vm *v, mer_py *args, mer_py **res) {
    if (args->n != 2 || args->items[0]->type != MER_PY_DTYPE || args->items[1]->type != MER_PY_BYTES)
        return verr(v, MER_E_FORMAT, "numpy scalar with unexpected arguments");
    const char *d = args->items[0]->s;
    char e = args->items[0]->endian;
    const mer_py *b = args->items[1];
    if (e == '>') return verr(v, MER_E_UNSUPPORTED, "big-endian numpy scalar");
    const uint8_t *p = (const uint8_t *)b->s;
    char kind = d[0];
    size_t sz = (size_t)atoi(d + 1);
    if (sz != b->len || (sz != 1 && sz != 2 && sz != 4 && sz != 8))
        return verr(v, MER_E_UNSUPPORTED, "numpy scalar of dtype '%s' with %zu bytes", d, b->len);
    uint64_t u = rdle(p, (int)sz);
    mer_py *x = NULL;
    if (kind == 'f' && sz == 8) {
        double f;
        memcpy(&f, &u, 8);
        if ((x = mk(v, MER_PY_FLOAT))) x->f = f;
    } else if (kind == 'f' && sz == 4) {
        uint32_t w = (uint32_t)u;
        float f;
        memcpy(&f, &w, 4);
        if ((x = mk(v, MER_PY_FLOAT))) x->f = f;
    } else if (kind == 'f' && sz == 2) {
        if ((x = mk(v, MER_PY_FLOAT))) x->f = mer_fp16_to_fp32((uint16_t)u);
    } else if (kind == 'i') {
        if (sz < 8 && (u >> (8 * sz - 1)) & 1) u |= ~(uint64_t)0 << (8 * sz);
        x = mk_int(v, (int64_t)u);
    } else if (kind == 'u') {
        if (u > (uint64_t)INT64_MAX) x = mk_str(v, MER_PY_BIGINT, (const char *)p, sz);
        else x = mk_int(v, (int64_t)u);
    } else if (kind == 'b' && sz == 1) {
        x = mk_bool(v, u != 0);
    } else {
        return verr(v, MER_E_UNSUPPORTED, "numpy scalar of dtype '%s'", d);
    }
    if (!x) return nomem(v);
    *res = x;
    return MER_OK;
}

static mer_status apply(vm *v, mer_py *fn, mer_py *args, mer_py **res, int nested) {
    if (fn->type != MER_PY_GLOBAL) return verr(v, MER_E_UNSUPPORTED, "calling a %s is not allowed", mer__py_type_name(fn));
    if (args->type != MER_PY_TUPLE) return verr(v, MER_E_FORMAT, "call arguments are a %s, not a tuple", mer__py_type_name(args));
    mer_py *x = NULL;
    switch (fn->g) {
    case G_ORDEREDDICT:
        if (!(x = mk(v, MER_PY_DICT))) return nomem(v);
        if (args->n == 1 && (args->items[0]->type == MER_PY_LIST || args->items[0]->type == MER_PY_TUPLE)) {
            const mer_py *l = args->items[0];
            for (size_t k = 0; k < l->n; k++) {
                const mer_py *pr = l->items[k];
                if ((pr->type != MER_PY_TUPLE && pr->type != MER_PY_LIST) || pr->n != 2)
                    return verr(v, MER_E_FORMAT, "OrderedDict item is not a pair");
                if (dict_set(v, x, pr->items[0], pr->items[1])) return nomem(v);
            }
        } else if (args->n != 0) {
            return verr(v, MER_E_UNSUPPORTED, "OrderedDict with %zu arguments", args->n);
        }
        break;
    case G_SET:
    case G_FROZENSET:
        if (!(x = mk(v, MER_PY_SET))) return nomem(v);
        if (args->n == 1 && (args->items[0]->type == MER_PY_LIST || args->items[0]->type == MER_PY_TUPLE ||
                             args->items[0]->type == MER_PY_SET)) {
            for (size_t k = 0; k < args->items[0]->n; k++)
                if (add_item(v, x, args->items[0]->items[k])) return nomem(v);
        } else if (args->n != 0) {
            return verr(v, MER_E_UNSUPPORTED, "set() with unexpected arguments");
        }
        break;
    case G_TORCH_SIZE:
        if (args->n != 1 || args->items[0]->type != MER_PY_TUPLE) return verr(v, MER_E_FORMAT, "torch.Size() without a tuple");
        x = args->items[0];
        break;
    case G_CODECS_ENCODE: {
        if (args->n != 2 || args->items[0]->type != MER_PY_STR || args->items[1]->type != MER_PY_STR ||
            (strcmp(args->items[1]->s, "latin1") != 0 && strcmp(args->items[1]->s, "latin-1") != 0))
            return verr(v, MER_E_UNSUPPORTED, "_codecs.encode other than (str, 'latin1')");
        const mer_py *s = args->items[0];
        if (!(x = mk(v, MER_PY_BYTES)) || !(x->s = arena_alloc(v->out, s->len + 1))) return nomem(v);
        size_t k = 0, i = 0;
        while (i < s->len) {
            uint32_t cp;
            i += (size_t)mer__utf8_decode((const uint8_t *)s->s + i, s->len - i, &cp);
            if (cp > 255) return verr(v, MER_E_FORMAT, "latin1 encoding of a code point above U+00FF");
            x->s[k++] = (char)cp;
        }
        x->s[k] = 0;
        x->len = k;
        break;
    }
    case G_NP_RECONSTRUCT:
        if (args->n != 3 || args->items[0]->type != MER_PY_GLOBAL || args->items[0]->g != G_NP_NDARRAY)
            return verr(v, MER_E_UNSUPPORTED, "numpy _reconstruct of something other than numpy.ndarray");
        if (!(x = mk(v, MER_PY_NDARRAY)) || mk_dims(v, x, 0)) return nomem(v);
        break;
    case G_NP_DTYPE:
        if (args->n < 1 || args->items[0]->type != MER_PY_STR || args->items[0]->len > 32)
            return verr(v, MER_E_FORMAT, "numpy.dtype() without a type string");
        if (!(x = mk_str(v, MER_PY_DTYPE, args->items[0]->s, args->items[0]->len))) return nomem(v);
        x->endian = '=';
        break;
    case G_NP_SCALAR: {
        mer_status st = np_scalar(v, args, &x);
        if (st) return st;
        break;
    }
    case G_REBUILD_TENSOR_V2: {
        mer_status st = make_tensor(v, args, 4, &x);
        if (st) return st;
        break;
    }
    case G_REBUILD_TENSOR: {
        mer_status st = make_tensor(v, args, 4, &x);
        if (st) return st;
        break;
    }
    case G_REBUILD_PARAMETER:
    case G_REBUILD_PARAMETER_STATE:
        if (args->n < 1 || args->items[0]->type != MER_PY_TENSOR) return verr(v, MER_E_FORMAT, "parameter rebuild without a tensor");
        x = args->items[0];
        break;
    case G_REBUILD_FROM_TYPE_V2: {
        if (nested || args->n < 3 || args->items[0]->type != MER_PY_GLOBAL || args->items[1]->type != MER_PY_GLOBAL ||
            (args->items[1]->g != G_TORCH_TENSOR && args->items[1]->g != G_TORCH_PARAMETER))
            return verr(v, MER_E_UNSUPPORTED, "_rebuild_from_type_v2 with an unexpected function or type");
        mer_status st = apply(v, args->items[0], args->items[2], &x, 1);
        if (st) return st;
        break;
    }
    default:
        return verr(v, MER_E_UNSUPPORTED, "calling %s is not allowed", gname(fn->g));
    }
    *res = x;
    return MER_OK;
}

static mer_status build(vm *v, mer_py *obj, mer_py *state) {
    if (obj->type == MER_PY_DICT) {
        /* OrderedDict attributes (e.g. a state_dict's _metadata): not part of the mapping */
        if (state->type == MER_PY_DICT || state->type == MER_PY_NONE) return MER_OK;
        if (state->type == MER_PY_TUPLE && state->n == 2) return MER_OK; /* (dict state, slot state) */
        return verr(v, MER_E_UNSUPPORTED, "BUILD of a dict with a %s state", mer__py_type_name(state));
    }
    if (obj->type == MER_PY_DTYPE) {
        if (state->type != MER_PY_TUPLE || state->n < 2 || state->items[1]->type != MER_PY_STR || state->items[1]->len != 1)
            return verr(v, MER_E_FORMAT, "numpy dtype state is not (version, endian, ...)");
        obj->endian = state->items[1]->s[0];
        return MER_OK;
    }
    if (obj->type == MER_PY_NDARRAY) {
        if (obj->ref) return verr(v, MER_E_FORMAT, "numpy array state set twice");
        if (state->type != MER_PY_TUPLE || (state->n != 5 && state->n != 4))
            return verr(v, MER_E_FORMAT, "numpy array state is not (version, shape, dtype, fortran, data)");
        mer_py **s = state->items + (state->n == 5);
        int nd;
        mer_status st = int_tuple(v, s[0], obj->shape, &nd, "array shape");
        if (st) return st;
        if (s[1]->type != MER_PY_DTYPE) return verr(v, MER_E_FORMAT, "numpy array state without a dtype");
        if (!is_int(s[2])) return verr(v, MER_E_FORMAT, "numpy array state with a non-bool fortran flag");
        obj->n_dims = nd;
        obj->ref = s[1];
        obj->fortran = s[2]->i != 0;
        size_t ne = 1;
        for (int d = 0; d < nd; d++)
            if (mer__mul_ovf(ne, (size_t)obj->shape[d], &ne)) return verr(v, MER_E_FORMAT, "array shape overflows");
        mer_py *data = s[3];
        if (s[1]->s[0] == 'O') {
            if (data->type != MER_PY_LIST || data->n != ne)
                return verr(v, MER_E_FORMAT, "object array data is not a list of %zu elements", ne);
            if (data->n > v->item_budget) return verr(v, MER_E_RANGE, "object array larger than the pickle allows");
            v->item_budget -= data->n;
            if (data->n && !(obj->items = malloc(data->n * sizeof *obj->items))) return nomem(v);
            if (data->n) memcpy(obj->items, data->items, data->n * sizeof *obj->items);
            obj->n = obj->cap = data->n;
        } else {
            if (data->type != MER_PY_BYTES && data->type != MER_PY_STR)
                return verr(v, MER_E_FORMAT, "array data is a %s, not bytes", mer__py_type_name(data));
            obj->s = data->s; /* shared, owned by the data node */
            obj->len = data->len;
        }
        return MER_OK;
    }
    return verr(v, MER_E_UNSUPPORTED, "BUILD on a %s is not allowed", mer__py_type_name(obj));
}

static mer_status persistent(vm *v, mer_py *pid, mer_py **res) {
    if (pid->type != MER_PY_TUPLE || pid->n != 5 || pid->items[0]->type != MER_PY_STR ||
        strcmp(pid->items[0]->s, "storage") != 0)
        return verr(v, MER_E_UNSUPPORTED, "persistent id other than ('storage', type, key, location, numel)");
    mer_py *ty = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
    if (ty->type != MER_PY_GLOBAL || ty->g != G_STORAGE) return verr(v, MER_E_UNSUPPORTED, "persistent storage of an unknown type");
    if (key->type != MER_PY_STR || !is_int(numel) || numel->i < 0) return verr(v, MER_E_FORMAT, "malformed storage persistent id");
    mer_py *x = mk_str(v, MER_PY_STORAGE, key->s, key->len);
    if (!x) return nomem(v);
    x->dtype = ty->dtype;
    x->i = numel->i;
    *res = x;
    return MER_OK;
}

static mer_status global(vm *v, const char *mod, size_t ml, const char *nm, size_t nl) {
    for (size_t k = 0; k < MER_ARRAY_LEN(whitelist); k++)
        if (strlen(whitelist[k].module) == ml && memcmp(whitelist[k].module, mod, ml) == 0 &&
            strlen(whitelist[k].name) == nl && memcmp(whitelist[k].name, nm, nl) == 0) {
            mer_py *g = mk(v, MER_PY_GLOBAL);
            if (!g) return nomem(v);
            g->g = whitelist[k].g;
            g->dtype = whitelist[k].dtype;
            return push(v, g);
        }
    char m[80], n2[80];
    size_t a = ml < 79 ? ml : 79, b = nl < 79 ? nl : 79;
    for (size_t i = 0; i < a; i++) m[i] = (mod[i] >= 0x20 && mod[i] < 0x7f) ? mod[i] : '?';
    for (size_t i = 0; i < b; i++) n2[i] = (nm[i] >= 0x20 && nm[i] < 0x7f) ? nm[i] : '?';
    m[a] = n2[b] = 0;
    return verr(v, MER_E_UNSUPPORTED, "global '%s.%s' is not in the whitelist (refused, nothing executed)", m, n2);
}

// --- memo --------------------------------------------------------------------------------------------

static mer_status memo_put(vm *v, uint64_t idx) {
    mer_py *x;
    mer_status st = top(v, &x);
    if (st) return st;
    if (idx > v->n || idx >= ((uint64_t)1 << 28)) return verr(v, MER_E_FORMAT, "memo index %llu out of range", (unsigned long long)idx);
    if (idx >= v->memo_cap) {
        size_t nc = v->memo_cap ? v->memo_cap : 64;
        while (nc <= idx) nc *= 2;
        mer_py **nm = realloc(v->memo, nc * sizeof *nm);
        if (!nm) return nomem(v);
        memset(nm + v->memo_cap, 0, (nc - v->memo_cap) * sizeof *nm);
        v->memo = nm;
        v->memo_cap = nc;
    }
    v->memo[idx] = x;
    return MER_OK;
}

static mer_status memo_get(vm *v, uint64_t idx) {
    if (idx >= v->memo_cap || !v->memo[idx]) return verr(v, MER_E_FORMAT, "memo index %llu was never stored", (unsigned long long)idx);
    return push(v, v->memo[idx]);
}

static mer_status text_index(vm *v, uint64_t *idx) {
    const char *s;
    size_t len;
    mer_status st = readline(v, &s, &len);
    if (st) return st;
    if (!len || len > 12) return verr(v, MER_E_FORMAT, "bad memo index");
    uint64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return verr(v, MER_E_FORMAT, "bad memo index");
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    *idx = x;
    return MER_OK;
}

// --- protocol 0 string literals ----------------------------------------------------------------------

static int hexv(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* STRING: a quoted Python 2 str repr -> bytes (escape_decode) -> latin-1 str */
static mer_status op_string(vm *v) {
    const char *s;
    size_t len;
    mer_status st = readline(v, &s, &len);
    if (st) return st;
    if (len < 2 || (s[0] != '\'' && s[0] != '"') || s[len - 1] != s[0])
        return verr(v, MER_E_FORMAT, "the STRING opcode argument must be quoted");
    s++;
    len -= 2;
    uint8_t *b = malloc(len + 1);
    if (!b) return nomem(v);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\\') { b[k++] = (uint8_t)s[i]; continue; }
        if (++i >= len) { free(b); return verr(v, MER_E_FORMAT, "trailing backslash in a STRING"); }
        char c = s[i];
        switch (c) {
        case '\n': break;
        case '\\': b[k++] = '\\'; break;
        case '\'': b[k++] = '\''; break;
        case '"': b[k++] = '"'; break;
        case 'a': b[k++] = 7; break;
        case 'b': b[k++] = 8; break;
        case 'f': b[k++] = 12; break;
        case 'n': b[k++] = 10; break;
        case 'r': b[k++] = 13; break;
        case 't': b[k++] = 9; break;
        case 'v': b[k++] = 11; break;
        case 'x':
            if (i + 2 >= len || hexv(s[i + 1]) < 0 || hexv(s[i + 2]) < 0) {
                free(b);
                return verr(v, MER_E_FORMAT, "bad \\x escape in a STRING");
            }
            b[k++] = (uint8_t)(hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
            i += 2;
            break;
        default:
            if (c >= '0' && c <= '7') {
                int o = c - '0';
                for (int j = 0; j < 2 && i + 1 < len && s[i + 1] >= '0' && s[i + 1] <= '7'; j++) o = o * 8 + (s[++i] - '0');
                b[k++] = (uint8_t)o;
            } else {
                b[k++] = '\\';
                b[k++] = (uint8_t)c;
            }
        }
    }
    st = push(v, mk_latin1(v, b, k));
    free(b);
    return st;
}

/* UNICODE: raw-unicode-escape text (\uXXXX, \UXXXXXXXX; other bytes are latin-1) */
static mer_status op_unicode(vm *v) {
    const char *s;
    size_t len;
    mer_status st = readline(v, &s, &len);
    if (st) return st;
    size_t cap;
    if (mer__mul_ovf(len, 4, &cap)) return nomem(v);
    char *o = malloc(cap + 1);
    if (!o) return nomem(v);
    size_t k = 0, i = 0, bs = 0; /* bs: length of the current run of backslashes */
    while (i < len) {
        uint8_t c = (uint8_t)s[i];
        if (c == '\\' && (bs % 2 == 0) && i + 1 < len && (s[i + 1] == 'u' || s[i + 1] == 'U')) {
            int nd = s[i + 1] == 'u' ? 4 : 8;
            if (i + 2 + (size_t)nd > len) { free(o); return verr(v, MER_E_FORMAT, "truncated \\u escape in UNICODE"); }
            uint32_t cp = 0;
            for (int j = 0; j < nd; j++) {
                int h = hexv(s[i + 2 + (size_t)j]);
                if (h < 0) { free(o); return verr(v, MER_E_FORMAT, "bad \\u escape in UNICODE"); }
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) { free(o); return verr(v, MER_E_FORMAT, "invalid code point in UNICODE"); }
            k += (size_t)mer__utf8_encode(cp, o + k);
            i += 2 + (size_t)nd;
            bs = 0;
            continue;
        }
        bs = c == '\\' ? bs + 1 : 0;
        k += (size_t)mer__utf8_encode(c, o + k);
        i++;
    }
    st = push(v, mk_str(v, MER_PY_STR, o, k));
    free(o);
    return st;
}

// --- the main loop -----------------------------------------------------------------------------------

static mer_status step(vm *v, int *stop) {
    mer_status st;
    const uint8_t *p;
    size_t len = 0, from = 0, cnt = 0;
    mer_py *a = NULL, *b = NULL, *c = NULL, *x = NULL;
    v->op_off = v->pos;
    v->op = v->d[v->pos++];
    switch (v->op) {
    case OP_PROTO:
        if ((st = need(v, 1))) return st;
        if (v->d[v->pos] > 5) return verr(v, MER_E_UNSUPPORTED, "protocol %d", v->d[v->pos]);
        v->pos++;
        return MER_OK;
    case OP_FRAME:
        if ((st = need(v, 8))) return st;
        if (rdle(v->d + v->pos, 8) > v->n - v->pos - 8) return verr(v, MER_E_FORMAT, "frame runs past the end");
        v->pos += 8;
        return MER_OK;
    case OP_STOP:
        if ((st = pop(v, &x))) return st;
        v->out->root = x;
        *stop = 1;
        return MER_OK;
    case OP_MARK:
        if (v->nm == v->mcap) {
            size_t nc = v->mcap ? v->mcap * 2 : 16;
            size_t *nmk = realloc(v->marks, nc * sizeof *nmk);
            if (!nmk) return nomem(v);
            v->marks = nmk;
            v->mcap = nc;
        }
        v->marks[v->nm++] = v->sp;
        return MER_OK;
    case OP_POP:
        if (v->sp > base(v)) { v->sp--; return MER_OK; }
        return pop_mark(v, &from, &cnt);
    case OP_POP_MARK: return pop_mark(v, &from, &cnt);
    case OP_DUP:
        if ((st = top(v, &x))) return st;
        return push(v, x);
    case OP_NONE: return push(v, mk(v, MER_PY_NONE));
    case OP_NEWTRUE: return push(v, mk_bool(v, 1));
    case OP_NEWFALSE: return push(v, mk_bool(v, 0));
    case OP_BININT:
        if ((st = need(v, 4))) return st;
        x = mk_int(v, (int32_t)(uint32_t)rdle(v->d + v->pos, 4));
        v->pos += 4;
        return push(v, x);
    case OP_BININT1:
        if ((st = need(v, 1))) return st;
        return push(v, mk_int(v, v->d[v->pos++]));
    case OP_BININT2:
        if ((st = need(v, 2))) return st;
        x = mk_int(v, (int64_t)rdle(v->d + v->pos, 2));
        v->pos += 2;
        return push(v, x);
    case OP_LONG1:
        if ((st = readlen(v, 1, &p, &len))) return st;
        return push_long(v, p, len);
    case OP_LONG4:
        if ((st = need(v, 4))) return st;
        if (v->d[v->pos + 3] & 0x80) return verr(v, MER_E_FORMAT, "negative LONG4 length");
        if ((st = readlen(v, 4, &p, &len))) return st;
        return push_long(v, p, len);
    case OP_INT:
    case OP_LONG: {
        const char *s;
        if ((st = readline(v, &s, &len))) return st;
        return push_text_int(v, s, len, v->op == OP_LONG);
    }
    case OP_FLOAT: {
        const char *s;
        if ((st = readline(v, &s, &len))) return st;
        char tmp[64];
        if (len == 0 || len >= sizeof tmp) return verr(v, MER_E_FORMAT, "bad float literal");
        memcpy(tmp, s, len);
        tmp[len] = 0;
        char *end;
        double f = strtod(tmp, &end);
        if (*end) return verr(v, MER_E_FORMAT, "bad float literal");
        if (!(x = mk(v, MER_PY_FLOAT))) return nomem(v);
        x->f = f;
        return push(v, x);
    }
    case OP_BINFLOAT: {
        if ((st = need(v, 8))) return st;
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = (u << 8) | v->d[v->pos + (size_t)i]; /* big-endian */
        v->pos += 8;
        if (!(x = mk(v, MER_PY_FLOAT))) return nomem(v);
        memcpy(&x->f, &u, 8);
        return push(v, x);
    }
    case OP_STRING: return op_string(v);
    case OP_BINSTRING:
        if ((st = need(v, 4))) return st;
        if (v->d[v->pos + 3] & 0x80) return verr(v, MER_E_FORMAT, "negative BINSTRING length");
        if ((st = readlen(v, 4, &p, &len))) return st;
        return push(v, mk_latin1(v, p, len));
    case OP_SHORT_BINSTRING:
        if ((st = readlen(v, 1, &p, &len))) return st;
        return push(v, mk_latin1(v, p, len));
    case OP_UNICODE: return op_unicode(v);
    case OP_BINUNICODE:
        if ((st = readlen(v, 4, &p, &len))) return st;
        return push_utf8(v, p, len);
    case OP_SHORT_BINUNICODE:
        if ((st = readlen(v, 1, &p, &len))) return st;
        return push_utf8(v, p, len);
    case OP_BINUNICODE8:
        if ((st = readlen(v, 8, &p, &len))) return st;
        return push_utf8(v, p, len);
    case OP_BINBYTES:
        if ((st = readlen(v, 4, &p, &len))) return st;
        return push(v, mk_str(v, MER_PY_BYTES, (const char *)p, len));
    case OP_SHORT_BINBYTES:
        if ((st = readlen(v, 1, &p, &len))) return st;
        return push(v, mk_str(v, MER_PY_BYTES, (const char *)p, len));
    case OP_BINBYTES8:
    case OP_BYTEARRAY8:
        if ((st = readlen(v, 8, &p, &len))) return st;
        return push(v, mk_str(v, MER_PY_BYTES, (const char *)p, len));
    case OP_EMPTY_TUPLE: return push(v, mk(v, MER_PY_TUPLE));
    case OP_EMPTY_LIST: return push(v, mk(v, MER_PY_LIST));
    case OP_EMPTY_DICT: return push(v, mk(v, MER_PY_DICT));
    case OP_EMPTY_SET: return push(v, mk(v, MER_PY_SET));
    case OP_TUPLE1:
    case OP_TUPLE2:
    case OP_TUPLE3: {
        size_t k = (size_t)(v->op - OP_TUPLE1 + 1);
        if (v->sp < base(v) + k) return verr(v, MER_E_FORMAT, "stack underflow");
        if (!(x = mk(v, MER_PY_TUPLE))) return nomem(v);
        for (size_t i = 0; i < k; i++)
            if (add_item(v, x, v->stack[v->sp - k + i])) return nomem(v);
        v->sp -= k;
        return push(v, x);
    }
    case OP_TUPLE:
    case OP_LIST:
    case OP_FROZENSET:
        if ((st = pop_mark(v, &from, &cnt))) return st;
        if (!(x = mk(v, v->op == OP_TUPLE ? MER_PY_TUPLE : v->op == OP_LIST ? MER_PY_LIST : MER_PY_SET))) return nomem(v);
        for (size_t i = 0; i < cnt; i++)
            if (add_item(v, x, v->stack[from + i])) return nomem(v);
        return push(v, x);
    case OP_DICT:
        if ((st = pop_mark(v, &from, &cnt))) return st;
        if (cnt % 2) return verr(v, MER_E_FORMAT, "odd number of items for a dict");
        if (!(x = mk(v, MER_PY_DICT))) return nomem(v);
        for (size_t i = 0; i < cnt; i += 2)
            if (dict_set(v, x, v->stack[from + i], v->stack[from + i + 1])) return nomem(v);
        return push(v, x);
    case OP_APPEND:
        if ((st = pop(v, &a)) || (st = top(v, &x))) return st;
        if (x->type != MER_PY_LIST) return verr(v, MER_E_UNSUPPORTED, "APPEND to a %s", mer__py_type_name(x));
        return add_item(v, x, a) ? nomem(v) : MER_OK;
    case OP_APPENDS:
    case OP_ADDITEMS:
        if ((st = pop_mark(v, &from, &cnt)) || (st = top(v, &x))) return st;
        if (x->type != (v->op == OP_APPENDS ? MER_PY_LIST : MER_PY_SET))
            return verr(v, MER_E_UNSUPPORTED, "%s to a %s", opname(v->op), mer__py_type_name(x));
        for (size_t i = 0; i < cnt; i++)
            if (add_item(v, x, v->stack[from + i])) return nomem(v);
        return MER_OK;
    case OP_SETITEM:
        if ((st = pop(v, &b)) || (st = pop(v, &a)) || (st = top(v, &x))) return st;
        if (x->type != MER_PY_DICT) return verr(v, MER_E_UNSUPPORTED, "SETITEM on a %s", mer__py_type_name(x));
        return dict_set(v, x, a, b) ? nomem(v) : MER_OK;
    case OP_SETITEMS:
        if ((st = pop_mark(v, &from, &cnt)) || (st = top(v, &x))) return st;
        if (x->type != MER_PY_DICT) return verr(v, MER_E_UNSUPPORTED, "SETITEMS on a %s", mer__py_type_name(x));
        if (cnt % 2) return verr(v, MER_E_FORMAT, "odd number of items for SETITEMS");
        for (size_t i = 0; i < cnt; i += 2)
            if (dict_set(v, x, v->stack[from + i], v->stack[from + i + 1])) return nomem(v);
        return MER_OK;
    case OP_GLOBAL: {
        const char *m, *nm;
        size_t ml, nl;
        if ((st = readline(v, &m, &ml)) || (st = readline(v, &nm, &nl))) return st;
        return global(v, m, ml, nm, nl);
    }
    case OP_STACK_GLOBAL:
        if ((st = pop(v, &b)) || (st = pop(v, &a))) return st;
        if (a->type != MER_PY_STR || b->type != MER_PY_STR) return verr(v, MER_E_FORMAT, "STACK_GLOBAL needs two strings");
        return global(v, a->s, a->len, b->s, b->len);
    case OP_REDUCE:
        if ((st = pop(v, &a)) || (st = pop(v, &c))) return st;
        if ((st = apply(v, c, a, &x, 0))) return st;
        return push(v, x);
    case OP_NEWOBJ:
    case OP_NEWOBJ_EX:
        if (v->op == OP_NEWOBJ_EX) {
            if ((st = pop(v, &b))) return st;
            if (b->type != MER_PY_DICT || b->n != 0) return verr(v, MER_E_UNSUPPORTED, "NEWOBJ_EX with keyword arguments");
        }
        if ((st = pop(v, &a)) || (st = pop(v, &c))) return st;
        if (c->type != MER_PY_GLOBAL || (c->g != G_ORDEREDDICT && c->g != G_SET && c->g != G_FROZENSET))
            return verr(v, MER_E_UNSUPPORTED, "creating a %s object is not allowed",
                        c->type == MER_PY_GLOBAL ? gname(c->g) : mer__py_type_name(c));
        if ((st = apply(v, c, a, &x, 0))) return st;
        return push(v, x);
    case OP_BUILD:
        if ((st = pop(v, &a)) || (st = top(v, &x))) return st;
        return build(v, x, a);
    case OP_BINPERSID:
        if ((st = pop(v, &a))) return st;
        if ((st = persistent(v, a, &x))) return st;
        return push(v, x);
    case OP_PUT: {
        uint64_t idx;
        if ((st = text_index(v, &idx))) return st;
        return memo_put(v, idx);
    }
    case OP_BINPUT:
        if ((st = need(v, 1))) return st;
        return memo_put(v, v->d[v->pos++]);
    case OP_LONG_BINPUT:
        if ((st = need(v, 4))) return st;
        v->pos += 4;
        return memo_put(v, rdle(v->d + v->pos - 4, 4));
    case OP_MEMOIZE:
        if ((st = memo_put(v, v->memo_next))) return st;
        v->memo_next++;
        return MER_OK;
    case OP_GET: {
        uint64_t idx;
        if ((st = text_index(v, &idx))) return st;
        return memo_get(v, idx);
    }
    case OP_BINGET:
        if ((st = need(v, 1))) return st;
        return memo_get(v, v->d[v->pos++]);
    case OP_LONG_BINGET:
        if ((st = need(v, 4))) return st;
        v->pos += 4;
        return memo_get(v, rdle(v->d + v->pos - 4, 4));
    case OP_READONLY_BUFFER:
        return top(v, &x);
    default:
        /* INST, OBJ, EXT1/2/4, PERSID, NEXT_BUFFER and every unknown byte */
        return verr(v, MER_E_UNSUPPORTED, "unsupported opcode");
    }
}

mer_status mer__pickle_load(const char *name, const uint8_t *data, size_t n, mer_pickle *out, mer_err *err) {
    memset(out, 0, sizeof *out);
    vm v;
    memset(&v, 0, sizeof v);
    v.name = name ? name : "<pickle>";
    v.d = data;
    v.n = n;
    v.out = out;
    v.err = err;
    v.op = -1;
    /* Python's own data never needs more container slots than a few per input byte; crafted memo
     * references could otherwise make REDUCE/BUILD copy the same big list again and again */
    v.item_budget = n < SIZE_MAX / 8 - 4096 ? 8 * n + 4096 : SIZE_MAX;
    mer_status st = MER_OK;
    int stop = 0;
    while (!stop) {
        if (v.pos >= v.n) {
            v.op_off = v.pos;
            st = mer__errf(err, MER_E_FORMAT, "%s: pickle: truncated: no STOP opcode at offset %zu", v.name, v.pos);
            break;
        }
        if ((st = step(&v, &stop))) break;
    }
    free(v.stack);
    free(v.marks);
    free(v.memo);
    if (st) mer__pickle_free(out);
    return st;
}

void mer__pickle_free(mer_pickle *p) {
    if (!p) return;
    for (size_t k = 0; k < p->n_nodes; k++) free(p->nodes[k]->items);
    free(p->nodes);
    for (slab *s = p->arena, *nx; s; s = nx) {
        nx = s->next;
        free(s);
    }
    memset(p, 0, sizeof *p);
}

const mer_py *mer__py_dict_get(const mer_py *d, const char *key) {
    if (!d || d->type != MER_PY_DICT) return NULL;
    size_t kl = strlen(key);
    for (size_t k = d->n; k-- > 0;) {
        const mer_py *kk = d->items[2 * k];
        if (kk->type == MER_PY_STR && kk->len == kl && memcmp(kk->s, key, kl) == 0) return d->items[2 * k + 1];
    }
    return NULL;
}

const char *mer__py_type_name(const mer_py *v) {
    switch (v->type) {
    case MER_PY_NONE: return "NoneType";
    case MER_PY_BOOL: return "bool";
    case MER_PY_INT:
    case MER_PY_BIGINT: return "int";
    case MER_PY_FLOAT: return "float";
    case MER_PY_STR: return "str";
    case MER_PY_BYTES: return "bytes";
    case MER_PY_TUPLE: return "tuple";
    case MER_PY_LIST: return "list";
    case MER_PY_DICT: return "dict";
    case MER_PY_SET: return "set";
    case MER_PY_GLOBAL: return gname(v->g);
    case MER_PY_NDARRAY: return "numpy.ndarray";
    case MER_PY_DTYPE: return "numpy.dtype";
    case MER_PY_STORAGE: return "torch.Storage";
    case MER_PY_TENSOR: return "torch.Tensor";
    }
    return "?";
}

// --- writer ------------------------------------------------------------------------------------------

typedef struct pickler {
    mer_buf *b;
    uint32_t memo_next;
    int32_t single[257]; /* memo index of CPython's shared one-character (< U+0100) strings and of '' */
} pickler;

static mer_status w_put(pickler *pk) {
    uint32_t idx = pk->memo_next++;
    if (idx < 256) {
        uint8_t x[2] = {OP_BINPUT, (uint8_t)idx};
        return mer__buf_append(pk->b, x, 2);
    }
    uint8_t x[5] = {OP_LONG_BINPUT, (uint8_t)idx, (uint8_t)(idx >> 8), (uint8_t)(idx >> 16), (uint8_t)(idx >> 24)};
    return mer__buf_append(pk->b, x, 5);
}

static mer_status w_get(pickler *pk, uint32_t idx) {
    if (idx < 256) {
        uint8_t x[2] = {OP_BINGET, (uint8_t)idx};
        return mer__buf_append(pk->b, x, 2);
    }
    uint8_t x[5] = {OP_LONG_BINGET, (uint8_t)idx, (uint8_t)(idx >> 8), (uint8_t)(idx >> 16), (uint8_t)(idx >> 24)};
    return mer__buf_append(pk->b, x, 5);
}

/* BINUNICODE + memo; strings CPython shares ('' and one code point below 256) are memoized by value,
 * because the pickler memoizes by object identity */
static mer_status w_str(pickler *pk, const char *s) {
    size_t len = strlen(s);
    int slot = -1;
    if (len == 0) slot = 256;
    else {
        uint32_t cp;
        int l = mer__utf8_decode((const uint8_t *)s, len, &cp);
        if ((size_t)l == len && cp < 256) slot = (int)cp;
    }
    if (slot >= 0 && pk->single[slot] >= 0) return w_get(pk, (uint32_t)pk->single[slot]);
    if (len > 0xFFFFFFFFu) return MER_E_RANGE;
    uint8_t h[5] = {OP_BINUNICODE, (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24)};
    mer_status st = mer__buf_append(pk->b, h, 5);
    if (!st) st = mer__buf_append(pk->b, s, len);
    if (!st && slot >= 0) pk->single[slot] = (int32_t)pk->memo_next;
    if (!st) st = w_put(pk);
    return st;
}

static mer_status w_dict(pickler *pk, const char *const *keys, const char *const *vals, size_t n) {
    mer_status st = mer__buf_putc(pk->b, OP_EMPTY_DICT);
    if (!st) st = w_put(pk);
    /* CPython's _batch_setitems: batches of 1000; a batch of one is written with SETITEM */
    for (size_t i = 0; i < n && !st; i += 1000) {
        size_t m = n - i < 1000 ? n - i : 1000;
        if (m > 1) st = mer__buf_putc(pk->b, OP_MARK);
        for (size_t k = i; k < i + m && !st; k++) {
            st = w_str(pk, keys[k]);
            if (!st) st = w_str(pk, vals[k]);
        }
        if (!st) st = mer__buf_putc(pk->b, m > 1 ? OP_SETITEMS : OP_SETITEM);
    }
    return st;
}

static mer_status check_utf8(const char *const *keys, const char *const *vals, size_t n, mer_err *err) {
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(keys[i]), vl = strlen(vals[i]);
        if (mer__utf8_check((const uint8_t *)keys[i], kl) != kl)
            return mer__errf(err, MER_E_ARG, "pickle: key %zu is not valid UTF-8", i);
        if (mer__utf8_check((const uint8_t *)vals[i], vl) != vl)
            return mer__errf(err, MER_E_ARG, "pickle: value %zu ('%.60s') is not valid UTF-8", i, keys[i]);
    }
    return MER_OK;
}

static void pk_init(pickler *pk, mer_buf *b) {
    pk->b = b;
    pk->memo_next = 0;
    for (int i = 0; i < 257; i++) pk->single[i] = -1;
}

mer_status mer__pickle_write_str_dict(mer_buf *b, const char *const *keys, const char *const *vals, size_t n,
                                      mer_err *err) {
    mer_status st = check_utf8(keys, vals, n, err);
    if (st) return st;
    pickler pk;
    pk_init(&pk, b);
    st = mer__buf_append(b, "\x80\x02", 2);
    if (!st) st = w_dict(&pk, keys, vals, n);
    if (!st) st = mer__buf_putc(b, OP_STOP);
    return st ? mer__errf(err, st, "pickle: out of memory") : MER_OK;
}

mer_status mer__pickle_write_npy_object_dict(mer_buf *b, const char *const *keys, const char *const *vals, size_t n,
                                             mer_err *err) {
    mer_status st = check_utf8(keys, vals, n, err);
    if (st) return st;
    /* numpy's ndarray.__reduce__ at protocol 3, memo indices 0..12 as CPython assigns them */
    static const char head[] =
        "\x80\x03"
        "cnumpy.core.multiarray\n_reconstruct\nq\x00"
        "cnumpy\nndarray\nq\x01"
        "K\x00\x85q\x02"
        "C\x01" "bq\x03"
        "\x87q\x04Rq\x05"
        "(K\x01)cnumpy\ndtype\nq\x06"
        "X\x02\x00\x00\x00O8q\x07\x89\x88\x87q\x08Rq\x09"
        "(K\x03X\x01\x00\x00\x00|q\x0aNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x3ftq\x0b"
        "b\x89]q\x0c";
    pickler pk;
    pk_init(&pk, b);
    pk.memo_next = 13;
    pk.single['|'] = 10; /* the dtype state's '|' is CPython's shared one-character string */
    st = mer__buf_append(b, head, sizeof head - 1);
    if (!st) st = w_dict(&pk, keys, vals, n);
    if (!st) st = mer__buf_putc(b, OP_APPEND);
    if (!st) st = mer__buf_putc(b, OP_TUPLE);
    if (!st) st = w_put(&pk);
    if (!st) st = mer__buf_putc(b, OP_BUILD);
    if (!st) st = mer__buf_putc(b, OP_STOP);
    return st ? mer__errf(err, st, "pickle: out of memory") : MER_OK;
}
