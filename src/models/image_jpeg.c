/* image_jpeg.c - JPEG decoding with the system's libjpeg-turbo (libjpeg.so.62), the library Pillow decodes
 * JPEGs with, so that a JPEG read here has the very pixels PIL.Image.open(...).convert("RGB") gives the
 * CLIP processor in Python (stb_image's own IDCT and chroma upsampling differ from libjpeg's by up to 2
 * levels on 5-10% of the values of real photographs). The library is opened at run time (dlopen) so
 * the build needs only its header; without it mer_image_decode falls back to stb_image. Default
 * libjpeg settings, as Pillow uses them: islow IDCT, fancy upsampling, RGB output (grey replicated).
 * Thread-safe: the library is looked up once (pthread_once), each decode has its own state. */
#include "models/clip_preprocess.h"

#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

typedef struct jpeg_error_mgr *(*fn_std_error)(struct jpeg_error_mgr *);
typedef void (*fn_create)(j_decompress_ptr, int, size_t);
typedef void (*fn_mem_src)(j_decompress_ptr, const unsigned char *, unsigned long);
typedef int (*fn_read_header)(j_decompress_ptr, boolean);
typedef boolean (*fn_start)(j_decompress_ptr);
typedef JDIMENSION (*fn_read_scanlines)(j_decompress_ptr, JSAMPARRAY, JDIMENSION);
typedef boolean (*fn_finish)(j_decompress_ptr);
typedef void (*fn_destroy)(j_decompress_ptr);

static struct {
    void *lib;
    fn_std_error std_error;
    fn_create create;
    fn_mem_src mem_src;
    fn_read_header read_header;
    fn_start start;
    fn_read_scanlines read_scanlines;
    fn_finish finish;
    fn_destroy destroy;
} J;
static pthread_once_t j_once = PTHREAD_ONCE_INIT;

static void *sym(const char *name) { return dlsym(J.lib, name); }

static void j_init(void) {
    void *lib = dlopen("libjpeg.so.62", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return;
    J.lib = lib;
    /* function pointers from dlsym: the POSIX-sanctioned conversion, done through memcpy */
    void *p[8] = {sym("jpeg_std_error"), sym("jpeg_CreateDecompress"), sym("jpeg_mem_src"), sym("jpeg_read_header"),
                  sym("jpeg_start_decompress"), sym("jpeg_read_scanlines"), sym("jpeg_finish_decompress"),
                  sym("jpeg_destroy_decompress")};
    for (int i = 0; i < 8; i++)
        if (!p[i]) {
            dlclose(lib);
            J.lib = NULL;
            return;
        }
    memcpy(&J.std_error, &p[0], sizeof p[0]);
    memcpy(&J.create, &p[1], sizeof p[1]);
    memcpy(&J.mem_src, &p[2], sizeof p[2]);
    memcpy(&J.read_header, &p[3], sizeof p[3]);
    memcpy(&J.start, &p[4], sizeof p[4]);
    memcpy(&J.read_scanlines, &p[5], sizeof p[5]);
    memcpy(&J.finish, &p[6], sizeof p[6]);
    memcpy(&J.destroy, &p[7], sizeof p[7]);
}

typedef struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jerr;

static void on_error(j_common_ptr c) {
    jerr *e = (jerr *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jb, 1);
}

static void on_message(j_common_ptr c) { (void)c; } /* warnings (corrupt data recovered) stay silent */

int mer__jpeg_decode(const char *name, const uint8_t *data, size_t n, uint8_t **rgb, int *w, int *h, mer_err *err) {
    pthread_once(&j_once, j_init);
    if (!J.lib || n < 2 || data[0] != 0xFF || data[1] != 0xD8 || n > 0xFFFFFFFFu) return 0;
    struct jpeg_decompress_struct ci;
    jerr je;
    uint8_t *volatile out = NULL;
    uint8_t *volatile row = NULL;
    volatile int created = 0;
    memset(&ci, 0, sizeof ci);
    ci.err = J.std_error(&je.pub);
    je.pub.error_exit = on_error;
    je.pub.output_message = on_message;
    je.msg[0] = 0;
    if (setjmp(je.jb)) {
        if (created) J.destroy(&ci);
        free(out);
        free(row);
        mer__errf(err, MER_E_FORMAT, "%s: JPEG decoding failed: %s", name, je.msg);
        return -1;
    }
    J.create(&ci, JPEG_LIB_VERSION, sizeof ci);
    created = 1;
    J.mem_src(&ci, data, (unsigned long)n);
    J.read_header(&ci, TRUE);
    int grey = ci.jpeg_color_space == JCS_GRAYSCALE;
    if (!grey && ci.jpeg_color_space != JCS_YCbCr && ci.jpeg_color_space != JCS_RGB) {
        J.destroy(&ci);
        return 0; /* CMYK / YCCK */
    }
    ci.out_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
    long iw = (long)ci.image_width, ih = (long)ci.image_height;
    if (iw < 1 || ih < 1 || iw * ih > MER_IMAGE_MAX_PIXELS) {
        J.destroy(&ci);
        mer__errf(err, MER_E_UNSUPPORTED, "%s: image of %ld x %ld pixels exceeds the %ld-pixel limit", name, iw, ih,
                  MER_IMAGE_MAX_PIXELS);
        return -1;
    }
    J.start(&ci);
    const int nc = ci.output_components;
    out = calloc((size_t)iw * ih, 3); /* rows a truncated file lacks stay black */
    row = malloc((size_t)iw * (size_t)nc);
    if (!out || !row) {
        J.destroy(&ci);
        free(out);
        free(row);
        mer__errf(err, MER_E_NOMEM, "%s: out of memory for %ld x %ld pixels", name, iw, ih);
        return -1;
    }
    while (ci.output_scanline < ci.output_height) {
        long y = (long)ci.output_scanline;
        JSAMPROW rp = row;
        if (J.read_scanlines(&ci, &rp, 1) != 1) break;
        uint8_t *d = out + (size_t)y * iw * 3;
        if (nc == 3) memcpy(d, row, (size_t)iw * 3);
        else
            for (long x = 0; x < iw; x++) d[x * 3] = d[x * 3 + 1] = d[x * 3 + 2] = row[x * nc];
    }
    J.finish(&ci);
    J.destroy(&ci);
    free(row);
    *rgb = out;
    *w = (int)iw;
    *h = (int)ih;
    return 1;
}
