/* image_stb.c - image file decoding for mer_image_load / mer_image_decode (clip_preprocess.h): JPEGs go
 * to libjpeg-turbo first (image_jpeg.c), everything else to stb_image (Debian's libstb-dev), whose
 * implementation is compiled into this file alone, with static linkage, reading from memory only; the
 * warnings of that third-party code are silenced for this file. */
#include "models/clip_preprocess.h"

#include <limits.h>
#include <string.h>

/* stb_image, compiled here once (static: no symbols leak), decoding from memory only. */
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_NO_HDR
#define STBI_NO_LINEAR
#define STBI_MAX_DIMENSIONS (1 << 16)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wshadow"
#endif
#include <stb/stb_image.h>

// --- decoding ----------------------------------------------------------------------------------------

mer_status mer_image_decode(const char *name, const uint8_t *data, size_t n, uint8_t **rgb, int *w, int *h,
                            mer_err *err) {
    *rgb = NULL;
    *w = *h = 0;
    if (n > INT_MAX) return mer__errf(err, MER_E_UNSUPPORTED, "%s: image file of %zu bytes is too large", name, n);
    int jr = mer__jpeg_decode(name, data, n, rgb, w, h, err);
    if (jr) return jr > 0 ? MER_OK : (err ? err->status : MER_E_FORMAT);
    int iw, ih, comp;
    if (!stbi_info_from_memory(data, (int)n, &iw, &ih, &comp))
        return mer__errf(err, MER_E_FORMAT, "%s: not a decodable image (%s) at offset 0", name, stbi_failure_reason());
    if (iw < 1 || ih < 1 || (long)iw * ih > MER_IMAGE_MAX_PIXELS)
        return mer__errf(err, MER_E_UNSUPPORTED, "%s: image of %d x %d pixels exceeds the %ld-pixel limit", name, iw,
                         ih, MER_IMAGE_MAX_PIXELS);
    uint8_t *p = stbi_load_from_memory(data, (int)n, &iw, &ih, &comp, 3);
    if (!p) return mer__errf(err, MER_E_FORMAT, "%s: image decoding failed (%s)", name, stbi_failure_reason());
    /* hand out memory the caller frees with free() (stb's allocator is malloc, but keep it explicit) */
    size_t bytes = (size_t)iw * ih * 3;
    uint8_t *q = malloc(bytes);
    if (!q) {
        stbi_image_free(p);
        return mer__errf(err, MER_E_NOMEM, "%s: out of memory for %d x %d pixels", name, iw, ih);
    }
    memcpy(q, p, bytes);
    stbi_image_free(p);
    *rgb = q;
    *w = iw;
    *h = ih;
    return MER_OK;
}

mer_status mer_image_load(const char *path, uint8_t **rgb, int *w, int *h, mer_err *err) {
    mer_map m;
    *rgb = NULL;
    mer_status st = mer__map_open(path, &m, err);
    if (st) return st;
    st = mer_image_decode(path, m.data, m.size, rgb, w, h, err);
    mer__map_close(&m);
    return st;
}

