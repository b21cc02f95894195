/* test_cli.c - the `mer` binary end to end: eval and pack on the shipped data, round trips through
 * numpy (the reference reader and writer of npz files), and one-line errors with exit status 2. */
#include "test.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define PY "/usr/bin/python3"
#define TMP MER_TEST_TMP "/cli"

static char mer[512];

/* Runs cmd through sh; captures stdout+stderr (up to cap) and returns the exit status. */
static int sh(const char *cmd, char *out, size_t cap) {
    char full[4096];
    snprintf(full, sizeof full, "( %s ) 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static const char *last_line(char *s) {
    size_t n = strlen(s);
    while (n && s[n - 1] == '\n') s[--n] = 0;
    char *l = strrchr(s, '\n');
    return l ? l + 1 : s;
}

static int have_numpy(void) { return access(PY, X_OK) == 0 && system(PY " -c 'import numpy' 2>/dev/null") == 0; }

static void test_eval_cli(void) {
    char out[65536], cmd[2048];
    snprintf(cmd, sizeof cmd, "%s eval --gt data/sample/check-openset.csv --pred data/sample/predict-openset.csv --per-wheel", mer);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
    CHECK_STR(last_line(out), "55.37& 42.45& 48.91");
    snprintf(cmd, sizeof cmd, "%s eval --json --gt data/sample/check-openset.csv --pred data/sample/predict-openset.csv", mer);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
    CHECK(strstr(out, "\"level1\":{\"f\":0.5537") != NULL);
    CHECK(strstr(out, "\"n_gt\":332") != NULL);
    snprintf(cmd, sizeof cmd, "%s eval --help", mer);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
    CHECK(strstr(out, "usage: mer eval") != NULL);
}

/* each bad input: exit 2, one line on stderr naming the file */
static void test_errors(void) {
    char out[8192], cmd[2048];
    struct { const char *file, *content, *want; } cases[] = {
        {TMP "/nocol.csv", "name,labels\\na,x\\n", "missing column"},
        {TMP "/quote.csv", "name,openset\\na,\"[x\\n", "unbalanced quote"},
        {TMP "/utf8.csv", "name,openset\\na,\\377\\n", "invalid UTF-8"},
        {TMP "/empty.csv", "", "empty file"},
        {TMP "/trunc.npz", "PK\\003\\004\\024\\000", ""},
        {TMP "/bad.npz", "PK\\003\\004 this is not a zip archive at all, just bytes .........", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(cmd, sizeof cmd, "printf '%s' > %s", cases[i].content, cases[i].file);
        CHECK(system(cmd) == 0);
        snprintf(cmd, sizeof cmd, "%s eval --gt data/sample/check-openset.csv --pred %s", mer, cases[i].file);
        int rc = sh(cmd, out, sizeof out);
        CHECK_MSG(rc == 2, "%s: exit %d", cases[i].file, rc);
        size_t nl = 0;
        for (char *c = out; *c; c++) nl += *c == '\n';
        CHECK_MSG(nl == 1 && strstr(out, cases[i].file) && strstr(out, cases[i].want), "%s: '%s'", cases[i].file, out);
    }
    snprintf(cmd, sizeof cmd, "%s eval --gt data/sample/check-openset.csv", mer);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s eval --gt %s/nonexistent.csv --pred data/sample/predict-openset.csv", mer, TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 2);
    CHECK(strstr(out, "nonexistent.csv: No such file") != NULL);
    snprintf(cmd, sizeof cmd, "%s frobnicate", mer);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 2);
    /* a missing prediction: error listing it; --allow-missing scores it */
    snprintf(cmd, sizeof cmd, "head -n 300 data/sample/predict-openset.csv > %s/short.csv && %s eval --gt data/sample/check-openset.csv --pred %s/short.csv", TMP, mer, TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 2);
    CHECK(strstr(out, "33 of 332 ground-truth names have no prediction") != NULL);
    snprintf(cmd, sizeof cmd, "%s eval --allow-missing --gt data/sample/check-openset.csv --pred %s/short.csv", mer, TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
}

static void test_pack_roundtrip(void) {
    char out[65536], cmd[4096];
    if (!have_numpy()) {
        printf("SKIP pack/numpy round trip: %s with numpy not found\n", PY);
        return;
    }
    /* pack -> numpy reads it back equal to the CSV (read by Python's csv module) */
    snprintf(cmd, sizeof cmd, "%s pack --names data/sample/check-openset.csv --pred data/sample/predict-openset.csv -o %s/sub-openset.npz", mer, TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd,
             PY " -c \"import numpy as np, csv; z=np.load('%s/sub-openset.npz'); "
             "rows=list(csv.DictReader(open('data/sample/predict-openset.csv', encoding='utf-8'))); "
             "assert z['filenames'].dtype.kind=='U' and z['fileitems'].dtype.kind=='U'; "
             "assert z['filenames'].shape==(332,); "
             "assert list(z['filenames'])==[r['name'] for r in rows]; "
             "assert list(z['fileitems'])==[r['openset'] for r in rows]; print('ok')\"", TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
    CHECK_STR(last_line(out), "ok");
    snprintf(cmd, sizeof cmd, "%s eval --gt data/sample/check-openset.csv --pred %s/sub-openset.npz", mer, TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
    CHECK_STR(last_line(out), "55.37& 42.45& 48.91");

    /* non-ASCII labels survive pack -> numpy */
    snprintf(cmd, sizeof cmd, "printf 'name,openset\\ns1,\"[开心, 😀 happy, naïve]\"\\ns2,[]\\n' > %s/u.csv && %s pack --names %s/u.csv --pred %s/u.csv -o %s/u-openset.npz && "
             PY " -c \"import numpy as np; z=np.load('%s/u-openset.npz'); assert list(z['fileitems'])==['[开心, 😀 happy, naïve]','[]'], z['fileitems']; print('ok')\"",
             TMP, mer, TMP, TMP, TMP, TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
    CHECK_STR(last_line(out), "ok");

    /* numpy-written submission and raw name2reason result (pickled dict) score like the CSV */
    snprintf(cmd, sizeof cmd,
             PY " -c \"import numpy as np, csv; rows=list(csv.DictReader(open('data/sample/predict-openset.csv', encoding='utf-8'))); "
             "np.savez_compressed('%s/np-openset.npz', filenames=[r['name'] for r in rows], fileitems=[r['openset'] for r in rows]); "
             "np.savez_compressed('%s/raw.npz', name2reason={r['name']: r['openset'] for r in rows})\"", TMP, TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s eval --gt data/sample/check-openset.csv --pred %s/np-openset.npz", mer, TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
    CHECK_STR(last_line(out), "55.37& 42.45& 48.91");
    snprintf(cmd, sizeof cmd, "%s eval --gt data/sample/check-openset.csv --pred %s/raw.npz", mer, TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
    CHECK_STR(last_line(out), "55.37& 42.45& 48.91");

    /* a pickle that would run code is refused, never executed */
    snprintf(cmd, sizeof cmd,
             PY " -c \"import numpy as np, os\nclass E:\n  def __reduce__(self): return (os.system, ('touch %s/pwned',))\n"
             "np.savez('%s/evil.npz', name2reason=np.array(E(), dtype=object))\"", TMP, TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s eval --gt data/sample/check-openset.csv --pred %s/evil.npz", mer, TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 2);
    CHECK(strstr(out, "evil.npz") != NULL);
    snprintf(cmd, sizeof cmd, "%s/pwned", TMP);
    CHECK(access(cmd, F_OK) != 0);

    /* pack: a candidate without prediction is an error unless --allow-missing (then []) */
    snprintf(cmd, sizeof cmd, "%s pack --names data/sample/check-openset.csv --pred %s/short.csv -o %s/m-openset.npz", mer, TMP, TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s pack --allow-missing --names data/sample/check-openset.csv --pred %s/short.csv -o %s/m-openset.npz && "
             PY " -c \"import numpy as np; z=np.load('%s/m-openset.npz'); assert z['fileitems'][-1]=='[]' and len(z['fileitems'])==332; print('ok')\"",
             mer, TMP, TMP, TMP);
    CHECK_EQ_INT(sh(cmd, out, sizeof out), 0);
}

static void run(void) {
    const char *b = getenv("MER_BUILD");
    snprintf(mer, sizeof mer, "%s/mer", b ? b : "build");
    CHECK(system("mkdir -p " TMP) == 0);
    if (access(mer, X_OK) != 0) {
        printf("FAIL %s not built\n", mer);
        CHECK(0);
        return;
    }
    test_eval_cli();
    test_errors();
    test_pack_roundtrip();
}
