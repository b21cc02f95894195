/* test_store.c - the resumable result store: rows survive reopening (and a killed writer), order is
 * kept, a second run with other options is refused. */
#include "test.h"
#include "pipeline/store.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define DB MER_TEST_TMP "/store.db"

static int collect(void *ud, const char *name, int ok, const char *text, const char *error, double s) {
    char *buf = ud;
    char line[256];
    snprintf(line, sizeof line, "%s:%d:%s:%s;", name, ok, text ? text : "-", error ? error : "-");
    strcat(buf, line);
    return 0;
}

static void run(void) {
    (void)!system("mkdir -p " MER_TEST_TMP " && rm -f " DB " " DB "-wal " DB "-shm");
    mer_store *s = NULL;
    mer_err err = {0};
    CHECK(mer__store_open(DB, "{\"task\":\"ov\"}", &s, &err) == MER_OK);
    CHECK(mer__store_put(s, "b", 1, "[happy]", NULL, 0.5, &err) == MER_OK);
    CHECK(mer__store_put(s, "a", 0, NULL, "missing video", 0.0, &err) == MER_OK);
    CHECK(mer__store_has(s, "a") && mer__store_has(s, "b") && !mer__store_has(s, "c"));
    mer__store_close(s);

    /* a child writes rows and is killed with SIGKILL mid-run: every committed row survives */
    pid_t pid = fork();
    if (pid == 0) {
        mer_store *c = NULL;
        if (mer__store_open(DB, "{\"task\":\"ov\"}", &c, NULL)) _exit(3);
        for (int i = 0;; i++) {
            char name[32];
            snprintf(name, sizeof name, "k%06d", i);
            mer__store_put(c, name, 1, "x", NULL, 0, NULL);
        }
    }
    usleep(300000);
    kill(pid, SIGKILL);
    int wst;
    waitpid(pid, &wst, 0);
    CHECK(WIFSIGNALED(wst));

    CHECK(mer__store_open(DB, "{\"task\":\"ov\"}", &s, &err) == MER_OK);
    if (!s) return;
    size_t ok = 0, bad = 0;
    mer__store_counts(s, &ok, &bad);
    CHECK(ok > 10);
    CHECK_EQ_INT(bad, 1);
    /* the rows written by the killed child are consecutive from k000000 */
    char name[32];
    snprintf(name, sizeof name, "k%06zu", ok - 2);
    CHECK(mer__store_has(s, name));
    mer__store_close(s);

    /* order of first writes is kept; a rewrite replaces in place */
    (void)!system("rm -f " DB " " DB "-wal " DB "-shm");
    CHECK(mer__store_open(DB, "cfg", &s, &err) == MER_OK);
    if (!s) return;
    mer__store_put(s, "b", 1, "[happy]", NULL, 0.5, &err);
    mer__store_put(s, "a", 0, NULL, "missing video", 0.0, &err);
    mer__store_put(s, "b", 1, "[sad]", NULL, 0.5, &err);
    char buf[1024] = "";
    CHECK(mer__store_each(s, collect, buf, &err) == MER_OK);
    CHECK_STR(buf, "b:1:[sad]:-;a:0:-:missing video;");
    mer__store_close(s);

    /* another configuration is refused, naming the file */
    CHECK(mer__store_open(DB, "other", &s, &err) == MER_E_ARG);
    CHECK(s == NULL && strstr(err.msg, DB) != NULL);
    /* a file that is not a database */
    FILE *f = fopen(MER_TEST_TMP "/notdb.db", "wb");
    fputs("this is not sqlite, just text that is long enough to look like a header.......", f);
    fclose(f);
    CHECK(mer__store_open(MER_TEST_TMP "/notdb.db", "cfg", &s, &err) != MER_OK);
    CHECK(strstr(err.msg, "notdb.db") != NULL);
}
