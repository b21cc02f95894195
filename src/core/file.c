/* file.c - read-only whole-file mapping and atomic whole-file writes. */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

mer_status mer__map_open(const char *path, mer_map *m, mer_err *err) {
    m->data = NULL;
    m->size = 0;
    m->mapped = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mer__errf(err, MER_E_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return mer__errf(err, MER_E_IO, "%s: %s", path, strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return mer__errf(err, MER_E_IO, "%s: is a directory", path);
    }
    if (sb.st_size > 0) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return mer__errf(err, MER_E_IO, "%s: mmap: %s", path, strerror(e));
        }
        m->data = p;
        m->size = (size_t)sb.st_size;
        m->mapped = 1;
    }
    close(fd);
    return MER_OK;
}

void mer__map_close(mer_map *m) {
    if (m->mapped) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
    m->mapped = 0;
}

mer_status mer__write_file_atomic(const char *path, const void *data, size_t n, mer_err *err) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp) return mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    mer_status st = MER_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = mer__errf(err, MER_E_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    const char *p = data;
    size_t left = n;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            st = mer__errf(err, MER_E_IO, "%s: write: %s", path, strerror(errno));
            close(fd);
            unlink(tmp);
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        st = mer__errf(err, MER_E_IO, "%s: %s", path, strerror(errno));
        unlink(tmp);
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        st = mer__errf(err, MER_E_IO, "%s: rename: %s", path, strerror(errno));
        unlink(tmp);
        goto fail;
    }
fail:
    free(tmp);
    return st;
}

int mer__is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}
