/* data_dir.c - finds the data/ folder that ships with mer: $MER_DATA, then <exe>/../data,
 * <exe>/../share/mer, then ./data. */
#include "cli.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int cli_data_path(const char *sub, char *out, size_t cap) {
    const char *env = getenv("MER_DATA");
    if (env && *env) {
        snprintf(out, cap, "%s/%s", env, sub);
        if (is_dir(out)) return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        const char *rel[] = {"../data", "../share/mer", "data"};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            snprintf(out, cap, "%s/%s/%s", exe, rel[i], sub);
            if (is_dir(out)) return 0;
        }
    }
    snprintf(out, cap, "data/%s", sub);
    return is_dir(out) ? 0 : -1;
}
