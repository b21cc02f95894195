/* test.h - the whole test harness: CHECK macros that count, and a closing line per executable.
 * A test file defines `static void run(void)` after including this and calls its checks there. */
#ifndef MER_TEST_H
#define MER_TEST_H
#include <math.h>
#include <stdio.h>
#include <string.h>

static int t_pass, t_fail;
#define CHECK(c) CHECK_MSG(c, "%s", #c)
#define CHECK_MSG(c, ...)                                                                          \
    do {                                                                                           \
        if (c) t_pass++;                                                                           \
        else { t_fail++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } \
    } while (0)
#define CHECK_EQ_INT(a, b) CHECK_MSG((long long)(a) == (long long)(b), "%s == %s (%lld vs %lld)", #a, #b, (long long)(a), (long long)(b))
#define CHECK_STR(a, b) CHECK_MSG(strcmp((a), (b)) == 0, "%s == %s (\"%s\" vs \"%s\")", #a, #b, (a), (b))
#define CHECK_NEAR(a, b, tol) CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%s ~ %s (%.9g vs %.9g, tol %g)", #a, #b, (double)(a), (double)(b), (double)(tol))
/* Scratch directory of this build's tests (the Makefile passes BUILD/test-tmp), so that test runs of
 * several builds do not collide. */
#ifndef MER_TEST_TMP
#define MER_TEST_TMP "build/test-tmp"
#endif
/* Directory of committed fixtures, relative to the repository root where tests run. */
#define FIXTURES "tests/fixtures"
#include "max_rel_err.h"
static void run(void);
int main(int argc, char **argv) {
    (void)argc;
    run();
    const char *name = strrchr(argv[0], '/');
    printf("%s: %d passed, %d failed\n", name ? name + 1 : argv[0], t_pass, t_fail);
    return t_fail != 0;
}
#endif
