/* threadpool.h - a caller-owned pool of worker threads for data-parallel kernels. The pool runs one
 * task at a time as fork-join: mer_threadpool_run(pool, fn, ctx) calls fn(ctx, ith, nth) once for every
 * ith in [0, nth) - ith 0 on the calling thread; the other parts are claimed by whichever thread is free
 * first (a worker, or the caller once its part is done, so a descheduled worker never stalls a run on a
 * busy machine) - and returns when all calls have returned. Dispatch is low-latency: idle workers spin
 * for a short while (tens of microseconds) before sleeping on a futex, so back-to-back runs (a decode
 * step runs hundreds) cost well under a microsecond each.
 *
 * Determinism: the pool does no reductions itself. Kernels split work by (ith, nth) so that every output
 * element is computed by one call with a fixed operation order; results do not depend on nth.
 *
 * Thread-safety: one pool serves one caller thread at a time (a context is used by one thread at a
 * time); tasks must not call mer_threadpool_run on the pool they run on. There is no global state:
 * any number of pools may coexist. */
#ifndef MER_THREADPOOL_H
#define MER_THREADPOOL_H

#include "core/core.h"

typedef struct mer_threadpool mer_threadpool;

/* A task body: work item ith of nth (0 <= ith < nth). */
typedef void (*mer_task_fn)(void *ctx, int ith, int nth);

/* Starts a pool of n_threads threads in all, the caller's included (so n_threads - 1 workers).
 * n_threads <= 0 means one per online CPU. Returns MER_OK and *out (caller frees with
 * mer_threadpool_free), or MER_E_NOMEM / MER_E_INTERNAL (thread creation failed) and *out = NULL. */
mer_status mer_threadpool_init(int n_threads, mer_threadpool **out, mer_err *err);

/* Stops and joins the workers and frees the pool. NULL is a no-op. Must not race a run. */
void mer_threadpool_free(mer_threadpool *pool);

/* Threads in the pool, the caller's included. A NULL pool has 1. */
int mer_threadpool_n_threads(const mer_threadpool *pool);

/* Runs fn(ctx, ith, nth) for ith in [0, nth) with nth = mer_threadpool_n_threads(pool), ith 0 on the
 * calling thread, each part exactly once and on one thread; returns when all have finished (a full memory barrier: writes made by any call are
 * visible to the caller afterwards). A NULL pool runs fn(ctx, 0, 1) inline. */
void mer_threadpool_run(mer_threadpool *pool, mer_task_fn fn, void *ctx);

/* As mer_threadpool_run but with nth = min(n, pool size) (n >= 1): for small tasks where waking every
 * worker costs more than it saves. Workers beyond nth stay idle. */
void mer_threadpool_run_n(mer_threadpool *pool, int n, mer_task_fn fn, void *ctx);

/* Runs fn(ctx, part, n_parts) for every part in [0, n_parts) (1 <= n_parts <= 65535), part 0 on the
 * calling thread and the rest claimed one at a time by whichever pool thread is free, so a busy or
 * descheduled thread takes fewer parts (load balancing on a shared machine). The second argument is a
 * part index, not a thread index: use it only for work whose per-part scratch is on the stack. Returns
 * when every part has finished. A NULL pool runs the parts in order on the caller. */
void mer_threadpool_run_parts(mer_threadpool *pool, int n_parts, mer_task_fn fn, void *ctx);

/* Splits [0, n) into nth contiguous parts, the first n % nth one longer; sets [*i0, *i1) to part ith.
 * The split depends only on (n, ith, nth). */
static inline void mer_split_range(long n, int ith, int nth, long *i0, long *i1) {
    long q = n / nth, r = n % nth;
    *i0 = ith * q + (ith < r ? ith : r);
    *i1 = *i0 + q + (ith < r ? 1 : 0);
}

#endif
