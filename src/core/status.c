/* status.c - status names, one-line error messages and the assertion handler. */
#include "core/core.h"

#include <string.h>

const char *mer_status_str(mer_status st) {
    switch (st) {
    case MER_OK: return "ok";
    case MER_E_NOMEM: return "out of memory";
    case MER_E_IO: return "i/o error";
    case MER_E_FORMAT: return "format error";
    case MER_E_SHAPE: return "shape mismatch";
    case MER_E_UNSUPPORTED: return "unsupported";
    case MER_E_ARG: return "bad argument";
    case MER_E_NOTFOUND: return "not found";
    case MER_E_RANGE: return "out of range";
    case MER_E_DEVICE: return "device error";
    case MER_E_INTERNAL: return "internal error";
    }
    return "unknown status";
}

static void one_line(char *s) {
    for (; *s; s++)
        if (*s == '\n' || *s == '\r') *s = ' ';
}

mer_status mer__verrf(mer_err *err, mer_status st, const char *fmt, va_list ap) {
    if (!err) return st;
    err->status = st;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    one_line(err->msg);
    return st;
}

mer_status mer__errf(mer_err *err, mer_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mer__verrf(err, st, fmt, ap);
    va_end(ap);
    return st;
}

mer_status mer__err_prefix(mer_err *err, mer_status st, const char *fmt, ...) {
    if (!err) return st;
    char old[MER_ERRMSG_MAX], pre[MER_ERRMSG_MAX];
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    if (err->status == MER_OK) err->status = st;
    size_t np = strlen(pre);
    if (np > sizeof err->msg - 3) np = sizeof err->msg - 3;
    memcpy(err->msg, pre, np);
    memcpy(err->msg + np, ": ", 2);
    size_t room = sizeof err->msg - np - 3, no = strlen(old);
    if (no > room) no = room;
    memcpy(err->msg + np + 2, old, no);
    err->msg[np + 2 + no] = 0;
    one_line(err->msg);
    return err->status;
}

_Noreturn void mer__assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "mer: internal assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
