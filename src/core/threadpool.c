/* threadpool.c - fork-join worker pool (see threadpool.h). A run publishes (fn, ctx, nth), bumps a
 * generation counter and executes part 0 itself; workers watch the counter, run their part and count
 * down `pending`. Waiting on either side spins with a pause instruction for a few tens of microseconds,
 * then yields, then sleeps on a Linux futex; a sleeper count (Dekker-style, sequentially consistent
 * atomics) tells the other side whether a wake-up system call is needed at all. */
#include "core/threadpool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SPIN_PAUSE_ITERS 4096 /* pause-spins before yielding (~20-80 us on current x86) */
#define SPIN_YIELD_ITERS 64   /* sched_yield rounds before sleeping */

typedef struct worker {
    mer_threadpool *pool;
    int ith;
} worker;

/* The claim word: generation (32 bits) | nth (16 bits) | next unclaimed part (16 bits). */
#define CLAIM(g, nth, next) (((uint64_t)(g) << 32) | ((uint64_t)(nth) << 16) | (uint64_t)(next))
#define CLAIM_GEN(s) ((unsigned)((s) >> 32))
#define CLAIM_NTH(s) ((int)(((s) >> 16) & 0xffff))
#define CLAIM_NEXT(s) ((int)((s)&0xffff))

struct mer_threadpool {
    int n_threads;
    pthread_t *threads; /* n_threads - 1 workers */
    worker *workers;
    int n_started;
    unsigned run_gen; /* caller-owned copy of the generation */
    /* the task being run; written by the caller before the claim word is published (release) */
    mer_task_fn fn;
    void *ctx;
    _Alignas(64) _Atomic uint64_t claim;
    _Alignas(64) atomic_uint gen; /* = generation of the claim word; futex word for idle workers */
    atomic_int n_sleeping;        /* workers sleeping (or about to) on gen */
    atomic_int stop;
    _Alignas(64) atomic_int done; /* parts finished in this run; futex word for the caller */
    atomic_int caller_sleeping;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void futex_wait(void *addr, int expected) {
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake(void *addr, int n) { syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0); }

/* Spins until *word != val or the spin budget runs out; returns 1 if it changed. */
static int spin_until_changed(atomic_uint *word, unsigned val) {
    for (int i = 0; i < SPIN_PAUSE_ITERS; i++) {
        if (atomic_load_explicit(word, memory_order_acquire) != val) return 1;
        cpu_relax();
    }
    for (int i = 0; i < SPIN_YIELD_ITERS; i++) {
        if (atomic_load_explicit(word, memory_order_acquire) != val) return 1;
        sched_yield();
    }
    return 0;
}

/* Claims and runs parts of generation g until none are left. Returns the number run. */
static int run_parts(mer_threadpool *p, unsigned g) {
    int ran = 0;
    uint64_t s = atomic_load_explicit(&p->claim, memory_order_acquire);
    while (CLAIM_GEN(s) == g && CLAIM_NEXT(s) < CLAIM_NTH(s)) {
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &s, s + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* s reloaded */
        int nth = CLAIM_NTH(s);
        p->fn(p->ctx, CLAIM_NEXT(s), nth);
        ran++;
        if (atomic_fetch_add(&p->done, 1) + 1 == nth && atomic_load(&p->caller_sleeping))
            futex_wake(&p->done, 1);
        s = atomic_load_explicit(&p->claim, memory_order_acquire);
    }
    return ran;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    mer_threadpool *p = w->pool;
    unsigned last = 0;
    for (;;) {
        unsigned g;
        if (!spin_until_changed(&p->gen, last)) {
            atomic_fetch_add(&p->n_sleeping, 1);
            while ((g = atomic_load(&p->gen)) == last) futex_wait(&p->gen, (int)last);
            atomic_fetch_sub(&p->n_sleeping, 1);
        }
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        last = g;
        if (atomic_load(&p->stop)) break;
        run_parts(p, g);
    }
    return NULL;
}

static int n_online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

static void stop_workers(mer_threadpool *p) {
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    futex_wake(&p->gen, INT_MAX);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->threads[i], NULL);
    p->n_started = 0;
}

mer_status mer_threadpool_init(int n_threads, mer_threadpool **out, mer_err *err) {
    mer_status st = MER_OK;
    *out = NULL;
    if (n_threads <= 0) n_threads = n_online_cpus();
    if (n_threads > 1024) return mer__errf(err, MER_E_ARG, "threadpool: %d threads is too many", n_threads);
    mer_threadpool *p = calloc(1, sizeof *p);
    if (!p) return mer__errf(err, MER_E_NOMEM, "threadpool: out of memory");
    p->n_threads = n_threads;
    atomic_init(&p->claim, 0);
    atomic_init(&p->gen, 0);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->caller_sleeping, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->threads || !p->workers) {
            st = mer__errf(err, MER_E_NOMEM, "threadpool: out of memory");
            goto fail;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            p->workers[i].pool = p;
            p->workers[i].ith = i + 1;
            int rc = pthread_create(&p->threads[i], NULL, worker_main, &p->workers[i]);
            if (rc) {
                st = mer__errf(err, MER_E_INTERNAL, "threadpool: cannot start thread %d of %d (error %d)",
                               i + 1, n_threads, rc);
                goto fail;
            }
            p->n_started++;
        }
    }
    *out = p;
    return MER_OK;
fail:
    stop_workers(p);
    free(p->threads);
    free(p->workers);
    free(p);
    return st;
}

void mer_threadpool_free(mer_threadpool *pool) {
    if (!pool) return;
    stop_workers(pool);
    free(pool->threads);
    free(pool->workers);
    free(pool);
}

int mer_threadpool_n_threads(const mer_threadpool *pool) { return pool ? pool->n_threads : 1; }

/* Publishes nth parts (claimed by any thread), runs part 0 and then unclaimed parts, waits for all. */
static void run_claimed(mer_threadpool *p, int nth, mer_task_fn fn, void *ctx) {
    unsigned g = ++p->run_gen;
    if (g == 0) g = p->run_gen = 1; /* 0 is the workers' initial "seen" value */
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->claim, CLAIM(g, nth, 1), memory_order_release); /* part 0 is ours */
    atomic_store(&p->gen, g); /* seq_cst: pairs with n_sleeping */
    if (atomic_load(&p->n_sleeping) > 0) futex_wake(&p->gen, nth - 1 < p->n_threads - 1 ? nth - 1 : p->n_threads - 1);
    fn(ctx, 0, nth);
    atomic_fetch_add(&p->done, 1);
    run_parts(p, g); /* parts no worker has picked up yet */
    for (int i = 0; i < SPIN_PAUSE_ITERS; i++) {
        if (atomic_load_explicit(&p->done, memory_order_acquire) == nth) return;
        cpu_relax();
    }
    for (int i = 0; i < SPIN_YIELD_ITERS; i++) {
        if (atomic_load_explicit(&p->done, memory_order_acquire) == nth) return;
        sched_yield();
    }
    atomic_store(&p->caller_sleeping, 1);
    int d;
    while ((d = atomic_load(&p->done)) != nth) futex_wait(&p->done, d);
    atomic_store(&p->caller_sleeping, 0);
}

void mer_threadpool_run_n(mer_threadpool *p, int n, mer_task_fn fn, void *ctx) {
    MER_ASSERT(fn && n >= 1);
    if (!p || p->n_threads == 1 || n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    run_claimed(p, n < p->n_threads ? n : p->n_threads, fn, ctx);
}

void mer_threadpool_run_parts(mer_threadpool *p, int n_parts, mer_task_fn fn, void *ctx) {
    MER_ASSERT(fn && n_parts >= 1 && n_parts <= 0xffff);
    if (!p || p->n_threads == 1 || n_parts == 1) {
        for (int i = 0; i < n_parts; i++) fn(ctx, i, n_parts);
        return;
    }
    run_claimed(p, n_parts, fn, ctx);
}

void mer_threadpool_run(mer_threadpool *pool, mer_task_fn fn, void *ctx) {
    mer_threadpool_run_n(pool, pool ? pool->n_threads : 1, fn, ctx);
}
