/* test_threadpool.c - the fork-join pool: every part runs exactly once per run with the right (ith, nth),
 * part 0 on the calling thread, writes are visible after the run, run_n limits nth, a NULL pool runs
 * inline, and many back-to-back runs (the decode pattern) plus runs after the workers fell asleep work.
 * (Bit-identical kernel results across thread counts are checked in test_kernels.c.) */
#include "test.h"

#include "core/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

typedef struct counts {
    atomic_int calls[16];
    atomic_int bad_nth;
    int expect_nth;
    pthread_t caller;
    atomic_int part0_elsewhere;
    long data[16 * 1000];
} counts;

static void count_task(void *arg, int ith, int nth) {
    counts *c = arg;
    if (nth != c->expect_nth || ith < 0 || ith >= nth) atomic_fetch_add(&c->bad_nth, 1);
    else atomic_fetch_add(&c->calls[ith], 1);
    if (ith == 0 && !pthread_equal(pthread_self(), c->caller)) atomic_fetch_add(&c->part0_elsewhere, 1);
    long i0, i1;
    mer_split_range(16 * 1000, ith, nth, &i0, &i1);
    for (long i = i0; i < i1; i++) c->data[i] += i; /* plain writes: visibility comes from the run */
}

static void check_pool(mer_threadpool *p, int nth_run, int use_run_n, int runs) {
    static counts c;
    memset(&c, 0, sizeof c);
    c.caller = pthread_self();
    int size = mer_threadpool_n_threads(p);
    c.expect_nth = use_run_n ? (nth_run < size ? nth_run : size) : size;
    for (int r = 0; r < runs; r++) {
        if (use_run_n) mer_threadpool_run_n(p, nth_run, count_task, &c);
        else mer_threadpool_run(p, count_task, &c);
    }
    int bad = 0;
    for (int i = 0; i < 16; i++) {
        int want = i < c.expect_nth ? runs : 0;
        if (atomic_load(&c.calls[i]) != want) bad++;
    }
    CHECK_MSG(bad == 0, "pool %d threads, nth %d: wrong call counts", size, c.expect_nth);
    CHECK_EQ_INT(atomic_load(&c.bad_nth), 0);
    CHECK_EQ_INT(atomic_load(&c.part0_elsewhere), 0);
    long wrong = 0;
    for (long i = 0; i < 16 * 1000; i++) wrong += c.data[i] != i * runs;
    CHECK_EQ_INT(wrong, 0);
}

typedef struct parts {
    atomic_int calls[300];
    atomic_int bad;
    pthread_t caller;
} parts;

static void parts_task(void *arg, int part, int n) {
    parts *c = arg;
    if (part < 0 || part >= n || n > 300) atomic_fetch_add(&c->bad, 1);
    else atomic_fetch_add(&c->calls[part], 1);
    if (part == 0 && !pthread_equal(pthread_self(), c->caller)) atomic_fetch_add(&c->bad, 1);
}

/* run_parts: more parts than threads, each exactly once, part 0 on the caller */
static void check_parts(mer_threadpool *p, int n, int runs) {
    static parts c;
    memset(&c, 0, sizeof c);
    c.caller = pthread_self();
    for (int r = 0; r < runs; r++) mer_threadpool_run_parts(p, n, parts_task, &c);
    int bad = 0;
    for (int i = 0; i < 300; i++) bad += atomic_load(&c.calls[i]) != (i < n ? runs : 0);
    CHECK_MSG(bad == 0 && atomic_load(&c.bad) == 0, "run_parts(%d) on %d threads", n, mer_threadpool_n_threads(p));
}

static void run(void) {
    /* NULL pool: inline, nth 1 */
    check_pool(NULL, 1, 0, 3);
    check_parts(NULL, 5, 3);
    CHECK_EQ_INT(mer_threadpool_n_threads(NULL), 1);
    for (int n = 1; n <= 5; n++) {
        mer_threadpool *p = NULL;
        mer_err err = {0};
        CHECK_EQ_INT(mer_threadpool_init(n, &p, &err), MER_OK);
        if (!p) continue;
        CHECK_EQ_INT(mer_threadpool_n_threads(p), n);
        check_pool(p, n, 0, 20000); /* back-to-back, workers spinning (or descheduled: n > cores) */
        usleep(20000);              /* let the workers fall asleep on the futex */
        check_pool(p, n, 0, 3);
        check_pool(p, 2, 1, 1000);  /* run_n: fewer parts than threads */
        check_pool(p, 99, 1, 10);
        check_parts(p, 1, 10);
        check_parts(p, 7, 2000);
        check_parts(p, 300, 50);
        mer_threadpool_free(p);
    }
    mer_threadpool *p = NULL;
    CHECK_EQ_INT(mer_threadpool_init(0, &p, NULL), MER_OK); /* one per CPU */
    CHECK(p && mer_threadpool_n_threads(p) >= 1);
    mer_threadpool_free(p);
    mer_threadpool_free(NULL);
    /* split_range covers [0, n) exactly, in order */
    int bad = 0;
    for (int nth = 1; nth <= 7; nth++)
        for (long n = 0; n < 40; n++) {
            long prev = 0;
            for (int i = 0; i < nth; i++) {
                long a, b;
                mer_split_range(n, i, nth, &a, &b);
                if (a != prev || b < a) bad++;
                prev = b;
            }
            if (prev != n) bad++;
        }
    CHECK_EQ_INT(bad, 0);
}
