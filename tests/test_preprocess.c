/* test_preprocess.c - image preprocessing against the Python libraries AffectGPT uses, through the
 * fixtures of scripts/make_preprocess_fixtures.py (Debian's Pillow 9.4 and OpenCV 4.6):
 *  - Pillow's BICUBIC resize of a real-photo crop (PNG, so decoding is exact) to several sizes, up and
 *    down: must be identical;
 *  - cv2.resize INTER_LINEAR of real-photo crops (upscale, odd downscale, exact halving): identical;
 *  - HF CLIPImageProcessor (resize shortest side 224 + center crop) of the real JPEG photographs of the
 *    npm package @vladmandic/face-api (decoded by stb_image here, by libjpeg in Pillow): >= 99% of the
 *    uint8 values equal and none off by more than 1 (SKIP when the package is not installed);
 *  - the /255 + mean/std normalisation for every uint8 value, and AffectGPT's frame indices. */
#include "test.h"
#include "core/sampling.h"

#include "io/npy.h"
#include "models/clip_preprocess.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIR FIXTURES "/preprocess"
#define DEMO "models/npm/face-api/node_modules/@vladmandic/face-api/demo"

static uint8_t *load_png(const char *name, int *w, int *h) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", DIR, name);
    mer_err err = {0};
    uint8_t *p = NULL;
    CHECK_MSG(mer_image_load(path, &p, w, h, &err) == MER_OK, "load %s: %s", path, err.msg);
    return p;
}

/* Counts differing values and the largest difference. */
static void compare(const uint8_t *a, const uint8_t *b, size_t n, size_t *n_diff, int *max_diff) {
    *n_diff = 0;
    *max_diff = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d) (*n_diff)++;
        if (d > *max_diff) *max_diff = d;
    }
}

static void check_pil_exact(void) {
    int w, h;
    uint8_t *crop = load_png("crop.png", &w, &h);
    if (!crop) return;
    CHECK_EQ_INT(w, 160);
    CHECK_EQ_INT(h, 120);
    static const int sizes[][2] = {{224, 168}, {97, 61}, {13, 9}, {200, 75}, {37, 151}};
    for (size_t i = 0; i < MER_ARRAY_LEN(sizes); i++) {
        char name[64];
        int ew, eh;
        snprintf(name, sizeof name, "pil_%dx%d.png", sizes[i][0], sizes[i][1]);
        uint8_t *exp = load_png(name, &ew, &eh);
        if (!exp) continue;
        CHECK(ew == sizes[i][0] && eh == sizes[i][1]);
        uint8_t *out = malloc((size_t)ew * eh * 3);
        mer_err err = {0};
        CHECK(mer_resize_pil_bicubic(crop, w, h, 3, out, ew, eh, &err) == MER_OK);
        size_t nd;
        int md;
        compare(out, exp, (size_t)ew * eh * 3, &nd, &md);
        CHECK_MSG(nd == 0, "PIL bicubic 160x120 -> %s: %zu values differ (max %d)", name, nd, md);
        free(out);
        free(exp);
    }
    free(crop);
}

static void check_cv(const char *in_name, const uint8_t *in, int w, int h, const char *exp_name) {
    int ew, eh;
    uint8_t *exp = load_png(exp_name, &ew, &eh);
    if (!exp) return;
    uint8_t *out = malloc((size_t)ew * eh * 3);
    mer_err err = {0};
    CHECK(mer_resize_cv_linear(in, w, h, 3, out, ew, eh, &err) == MER_OK);
    size_t nd;
    int md;
    compare(out, exp, (size_t)ew * eh * 3, &nd, &md);
    CHECK_MSG(nd == 0, "cv2 INTER_LINEAR %s -> %s: %zu of %d values differ (max %d)", in_name, exp_name, nd, ew * eh * 3,
              md);
    free(out);
    free(exp);
}

static void check_cv_exact(void) {
    int w, h, fw, fh;
    uint8_t *crop = load_png("crop.png", &w, &h), *face = load_png("face112.png", &fw, &fh);
    if (crop && face) {
        check_cv("face112", face, fw, fh, "cv_face112_224.png");
        check_cv("crop", crop, w, h, "cv_crop_97x61.png");
        uint8_t *sub = malloc(120 * 90 * 3); /* crop[:90, :120] */
        for (int y = 0; y < 90; y++) memcpy(sub + (size_t)y * 120 * 3, crop + (size_t)y * w * 3, 120 * 3);
        check_cv("crop[:90,:120]", sub, 120, 90, "cv_half_60x45.png");
        free(sub);
    }
    free(crop);
    free(face);
}

static void check_photos(void) {
    if (access(DEMO "/sample1.jpg", R_OK) != 0) {
        printf("SKIP real-photo CLIP preprocessing: %s not installed (scripts/deps.sh)\n", DEMO);
        return;
    }
    size_t total = 0, total_diff = 0;
    int worst = 0;
    for (int n = 1; n <= 3; n++) {
        char path[512], name[64];
        snprintf(path, sizeof path, DEMO "/sample%d.jpg", n);
        snprintf(name, sizeof name, "sample%d_clip224.png", n);
        mer_err err = {0};
        uint8_t *rgb = NULL;
        int w, h, ew, eh;
        CHECK_MSG(mer_image_load(path, &rgb, &w, &h, &err) == MER_OK, "%s", err.msg);
        uint8_t *exp = load_png(name, &ew, &eh);
        if (!rgb || !exp) {
            free(rgb);
            free(exp);
            continue;
        }
        CHECK(ew == 224 && eh == 224);
        float *px = malloc(3 * 224 * 224 * sizeof(float));
        uint8_t *u8 = malloc(224 * 224 * 3);
        CHECK(mer_clip_preprocess(rgb, w, h, 224, 224, px, u8, &err) == MER_OK);
        size_t nd;
        int md;
        compare(u8, exp, 224 * 224 * 3, &nd, &md);
        double frac = 1.0 - (double)nd / (224 * 224 * 3);
        printf("sample%d.jpg (%dx%d): %.4f%% of uint8 values equal to PIL's, max diff %d\n", n, w, h, 100 * frac, md);
        CHECK_MSG(frac >= 0.99 && md <= 1, "sample%d: %.4f equal, max diff %d", n, frac, md);
        total += 224 * 224 * 3;
        total_diff += nd;
        if (md > worst) worst = md;
        free(px);
        free(u8);
        free(rgb);
        free(exp);
    }
    if (total) printf("real photos: %zu of %zu values differ from PIL (max %d)\n", total_diff, total, worst);
}

static void check_npz(void) {
    mer_err err = {0};
    mer_npz z;
    memset(&z, 0, sizeof z);
    CHECK_MSG(mer__npz_open(DIR "/expected.npz", &z, &err) == MER_OK, "%s", err.msg);
    mer_npy a;
    memset(&a, 0, sizeof a);
    /* normalisation of every uint8 value, per channel */
    if (mer__npz_get(&z, "norm_lut", &a, &err) == MER_OK) {
        CHECK(a.dtype == MER_DTYPE_F32 && a.n_elems == 768);
        uint8_t img[256 * 3];
        float out[3 * 256];
        for (int i = 0; i < 256; i++) img[i * 3] = img[i * 3 + 1] = img[i * 3 + 2] = (uint8_t)i;
        mer_clip_normalize(img, 16, out); /* a 16x16 "image" holds the 256 values */
        size_t bad = 0;
        for (size_t i = 0; i < 768 && a.n_elems == 768; i++) {
            float ref;
            memcpy(&ref, a.data + i * 4, 4);
            if (out[i] != ref) bad++;
        }
        CHECK_MSG(bad == 0, "normalisation: %zu of 768 values differ from numpy", bad);
        mer__npy_free(&a);
    } else {
        CHECK_MSG(0, "norm_lut: %s", err.msg);
    }
    static const long ns[] = {1, 3, 7, 8, 9, 10, 13, 25, 31, 100, 333, 1001};
    for (size_t k = 0; k < MER_ARRAY_LEN(ns); k++) {
        char key[32];
        snprintf(key, sizeof key, "frame_idx_%ld", ns[k]);
        if (mer__npz_get(&z, key, &a, &err) != MER_OK) {
            CHECK_MSG(0, "%s: %s", key, err.msg);
            continue;
        }
        int64_t idx[8];
        mer__frame_indices(ns[k], 8, idx);
        int ok = a.n_elems == 8;
        for (int i = 0; i < 8 && ok; i++) {
            int64_t v;
            memcpy(&v, a.data + i * 8, 8);
            ok = v == idx[i];
        }
        CHECK_MSG(ok, "frame indices for %ld frames", ns[k]);
        mer__npy_free(&a);
    }
    mer__npz_close(&z);
}

static void check_errors(void) {
    mer_err err = {0};
    uint8_t *p = NULL;
    int w, h;
    static const uint8_t junk[] = "not an image at all";
    CHECK(mer_image_decode("junk", junk, sizeof junk, &p, &w, &h, &err) == MER_E_FORMAT);
    CHECK(strstr(err.msg, "junk") != NULL);
    CHECK(p == NULL);
    CHECK(mer_image_load(DIR "/missing.png", &p, &w, &h, &err) == MER_E_IO);
    /* a PNG header announcing 100000 x 100000 pixels */
    static const uint8_t big[] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                  0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 8, 2, 0, 0, 0, 0, 0, 0, 0};
    CHECK(mer_image_decode("big.png", big, sizeof big, &p, &w, &h, &err) != MER_OK);
    CHECK(p == NULL);
    uint8_t px[12] = {0}, out[12];
    float f[3 * 4];
    CHECK(mer_resize_pil_bicubic(px, 0, 2, 3, out, 2, 2, &err) == MER_E_ARG);
    CHECK(mer_resize_cv_linear(px, 2, 2, 3, out, 2, 0, &err) == MER_E_ARG);
    CHECK(mer_clip_preprocess(px, 2, 2, 2, 3, f, NULL, &err) == MER_E_ARG); /* crop larger than the image */
    int ow, oh;
    mer_clip_resize_dims(1920, 1280, 224, &ow, &oh);
    CHECK(ow == 336 && oh == 224);
    mer_clip_resize_dims(1367, 1920, 224, &ow, &oh);
    CHECK(ow == 224 && oh == 314);
}

static void run(void) {
    check_pil_exact();
    check_cv_exact();
    check_photos();
    check_npz();
    check_errors();
}
