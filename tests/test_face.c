/* test_face.c - the built-in face models against their own runtime, face-api 1.7.15 on tfjs 4.22's CPU
 * backend (scripts/ref_face.js wrote every expected value in tests/fixtures/face/):
 *  - the tfjs manifest reader: a small two-shard manifest with every dtype and quantisation decoded as
 *    tf.io.decodeWeights decodes it; face-api's two real models (count, sum, sample values per tensor);
 *    bad manifests, shards and paths give one-line errors naming the file;
 *  - detection + expressions on the six demo photographs: same number of faces, every box within IoU
 *    0.99 of the reference's, the same integer crops, probabilities within 1e-3 (input sizes 416, 320, 608);
 *  - `mer run` on a lossless clip made of the photographs (ffmpeg, the fixture's padding filter): every
 *    sampled frame's faces and probabilities match the reference's for that photograph, and the label set
 *    and the main face's expressions, in order, are those the reference's detections give;
 *  - `mer run` on a video without faces, a file without a video stream and a corrupt file; `mer faces`.
 * Parts that need the installed models (scripts/deps.sh), FFmpeg or the ffmpeg CLI print a SKIP line. */
#include "test.h"
#include "mer.h"

#include "io/tfjs.h"
#include "models/face_detect.h"
#include "models/face_expr.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define FX FIXTURES "/face"
#define MODELS "models/face-api"

static char TMP[512];

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    if (fread(b, 1, (size_t)len, f) != (size_t)len) len = 0;
    b[len] = 0;
    fclose(f);
    if (n) *n = (size_t)len;
    return b;
}

static cJSON *load_json(const char *path) {
    char *s = slurp(path, NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    CHECK_MSG(j != NULL, "cannot read %s", path);
    return j;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

// --- tfjs reader -------------------------------------------------------------------------------------

static void test_tfjs_small(void) {
    cJSON *exp = load_json(FX "/tfjs/expected.json");
    if (!exp) return;
    mer_err err = {0};
    mer_weights *w = NULL;
    CHECK_MSG(mer__tfjs_open(FX "/tfjs/model-weights_manifest.json", &w, &err) == MER_OK, "%s", err.msg);
    if (w) {
        const cJSON *small = cJSON_GetObjectItem(exp, "small"), *it;
        CHECK_EQ_INT(w->n_tensors, cJSON_GetArraySize(small));
        cJSON_ArrayForEach(it, small) {
            const mer_wtensor *t = mer_weights_find(w, it->string);
            CHECK_MSG(t != NULL, "tensor %s", it->string);
            if (!t) continue;
            const cJSON *shape = cJSON_GetObjectItem(it, "shape"), *vals = cJSON_GetObjectItem(it, "values");
            const char *dt = cJSON_GetObjectItem(it, "dtype")->valuestring;
            CHECK_EQ_INT(t->n_dims, cJSON_GetArraySize(shape));
            for (int d = 0; d < t->n_dims && d < cJSON_GetArraySize(shape); d++)
                CHECK_EQ_INT(t->shape[d], cJSON_GetArrayItem(shape, d)->valueint);
            int n = cJSON_GetArraySize(vals), bad = 0;
            mer_dtype want = !strcmp(dt, "float32") ? MER_DTYPE_F32 : !strcmp(dt, "int32") ? MER_DTYPE_I32 : MER_DTYPE_BOOL;
            CHECK_MSG(t->dtype == want, "%s dtype", it->string);
            size_t es = want == MER_DTYPE_BOOL ? 1 : 4;
            CHECK_EQ_INT(t->n_bytes, (size_t)n * es);
            for (int i = 0; i < n && t->n_bytes == (size_t)n * es; i++) {
                double v = cJSON_GetArrayItem(vals, i)->valuedouble;
                if (want == MER_DTYPE_F32) bad += ((const float *)t->data)[i] != (float)v;
                else if (want == MER_DTYPE_I32) bad += ((const int32_t *)t->data)[i] != (int32_t)v;
                else bad += ((const uint8_t *)t->data)[i] != (uint8_t)v;
            }
            CHECK_MSG(bad == 0, "%s: %d of %d values differ from tfjs's decodeWeights", it->string, bad, n);
        }
        mer_weights_close(w);
    }
    /* face-api's real models */
    const cJSON *models = cJSON_GetObjectItem(exp, "models"), *m;
    cJSON_ArrayForEach(m, models) {
        char path[256];
        snprintf(path, sizeof path, MODELS "/%s-weights_manifest.json", m->string);
        if (!exists(path)) { printf("SKIP test_face: %s missing (run scripts/deps.sh)\n", path); continue; }
        CHECK_MSG(mer__tfjs_open(path, &w, &err) == MER_OK, "%s", err.msg);
        if (!w) continue;
        const cJSON *t;
        int bad = 0;
        CHECK_EQ_INT(w->n_tensors, cJSON_GetArraySize(m));
        cJSON_ArrayForEach(t, m) {
            const mer_wtensor *wt = mer_weights_find(w, t->string);
            if (!wt) { bad++; continue; }
            size_t n = (size_t)cJSON_GetObjectItem(t, "n")->valuedouble;
            const float *x = wt->data;
            double s = 0;
            for (size_t i = 0; i < wt->n_bytes / 4; i++) s += x[i];
            const cJSON *at = cJSON_GetObjectItem(t, "at");
            bad += wt->n_bytes != n * 4 || fabs(s - cJSON_GetObjectItem(t, "sum")->valuedouble) > 1e-9 * (1 + fabs(s)) ||
                   x[0] != (float)cJSON_GetArrayItem(at, 0)->valuedouble ||
                   x[n / 2] != (float)cJSON_GetArrayItem(at, 1)->valuedouble ||
                   x[n - 1] != (float)cJSON_GetArrayItem(at, 2)->valuedouble;
        }
        CHECK_MSG(bad == 0, "%s: %d tensors differ from tfjs", m->string, bad);
        mer_weights_close(w);
    }
    cJSON_Delete(exp);
}

/* open_mem over one in-memory shard "s.bin" (and "t.bin") */
typedef struct mem_shards {
    const uint8_t *s;
    size_t ns;
} mem_shards;

static int mem_shard(void *ud, const char *path, const uint8_t **data, size_t *size) {
    const mem_shards *m = ud;
    if (strcmp(path, "s.bin") && strcmp(path, "t.bin")) return -1;
    *data = m->s;
    *size = m->ns;
    return 0;
}

static void bad_manifest(const char *json, size_t shard_bytes, mer_status want, const char *needle) {
    static uint8_t buf[64];
    mem_shards m = {buf, shard_bytes};
    mer_err err = {0};
    mer_weights *w = (mer_weights *)1;
    mer_status st = mer__tfjs_open_mem("bad.json", json, strlen(json), mem_shard, &m, &w, &err);
    CHECK_MSG(st == want && w == NULL, "%s: status %d (%s), want %d", json, st, err.msg, want);
    CHECK_MSG(strstr(err.msg, "bad.json") && (!needle || strstr(err.msg, needle)), "%s: message '%s' lacks '%s'", json,
              err.msg, needle ? needle : "bad.json");
    CHECK_MSG(!strchr(err.msg, '\n'), "one line: %s", err.msg);
}

static void test_tfjs_bad(void) {
    bad_manifest("{", 0, MER_E_FORMAT, "JSON");
    bad_manifest("{\"weights\": []}", 0, MER_E_FORMAT, "array");
    bad_manifest("[{\"weights\": []}]", 0, MER_E_FORMAT, "paths");
    bad_manifest("[{\"paths\": [\"s.bin\"], \"weights\": [{\"name\": \"a\", \"shape\": [4], \"dtype\": \"float32\"}]}]", 15,
                 MER_E_FORMAT, "'a'");
    bad_manifest("[{\"paths\": [\"s.bin\"], \"weights\": [{\"name\": \"a\", \"shape\": [2], \"dtype\": \"float32\"},"
                 "{\"name\": \"b\", \"shape\": [3], \"dtype\": \"float32\"}]}]",
                 16, MER_E_FORMAT, "needs bytes [8, 20)");
    bad_manifest("[{\"paths\": [\"s.bin\"], \"weights\": [{\"name\": \"a\", \"shape\": [1], \"dtype\": \"string\"}]}]", 8,
                 MER_E_UNSUPPORTED, "string");
    bad_manifest("[{\"paths\": [\"s.bin\"], \"weights\": [{\"name\": \"a\", \"shape\": [1], \"dtype\": \"float32\","
                 "\"quantization\": {\"dtype\": \"int8\", \"min\": 0, \"scale\": 1}}]}]",
                 8, MER_E_UNSUPPORTED, "int8");
    bad_manifest("[{\"paths\": [\"s.bin\"], \"weights\": [{\"name\": \"a\", \"shape\": [1], \"dtype\": \"float32\","
                 "\"quantization\": {\"dtype\": \"uint8\", \"scale\": 1}}]}]",
                 8, MER_E_FORMAT, "min");
    bad_manifest("[{\"paths\": [\"s.bin\"], \"weights\": [{\"name\": \"a\", \"shape\": [1], \"dtype\": \"int32\","
                 "\"quantization\": {\"dtype\": \"float16\"}}]}]",
                 8, MER_E_UNSUPPORTED, "float16");
    bad_manifest("[{\"paths\": [\"s.bin\"], \"weights\": [{\"name\": \"a\", \"shape\": [-1], \"dtype\": \"float32\"}]}]", 8,
                 MER_E_FORMAT, "shape[0]");
    bad_manifest("[{\"paths\": [\"s.bin\"], \"weights\": [{\"name\": \"a\", \"shape\": [1.5], \"dtype\": \"float32\"}]}]", 8,
                 MER_E_FORMAT, "shape[0]");
    bad_manifest("[{\"paths\": [\"s.bin\"], \"weights\": [{\"name\": \"a\", \"shape\": [1,1,1,1,1,1,1,1,1], \"dtype\": "
                 "\"float32\"}]}]",
                 8, MER_E_UNSUPPORTED, "dimensions");
    bad_manifest("[{\"paths\": [\"s.bin\"], \"weights\": [{\"name\": \"a\", \"shape\": [4294967296, 4294967296, 4294967296], "
                 "\"dtype\": \"float32\"}]}]",
                 8, MER_E_RANGE, "overflows");
    bad_manifest("[{\"paths\": [\"../s.bin\"], \"weights\": []}]", 8, MER_E_FORMAT, "relative");
    bad_manifest("[{\"paths\": [\"/etc/passwd\"], \"weights\": []}]", 8, MER_E_FORMAT, "relative");
    bad_manifest("[{\"paths\": [\"u.bin\"], \"weights\": []}]", 8, MER_E_IO, "u.bin");
    bad_manifest("[{\"paths\": [\"s.bin\"], \"weights\": [{\"name\": \"a\", \"shape\": [1], \"dtype\": \"float32\"},"
                 "{\"name\": \"a\", \"shape\": [1], \"dtype\": \"float32\"}]}]",
                 8, MER_E_FORMAT, "a");
    bad_manifest("[{\"paths\": [\"s.bin\"], \"weights\": [{\"shape\": [1], \"dtype\": \"float32\"}]}]", 8, MER_E_FORMAT,
                 "name");
    /* valid edge cases: no groups; a tensor across two shards */
    mer_err err = {0};
    mer_weights *w = NULL;
    mem_shards m = {(const uint8_t *)"\0\0\x80\x3f\0\0\0\x40", 8};
    CHECK(mer__tfjs_open_mem("ok.json", "[]", 2, mem_shard, &m, &w, &err) == MER_OK && w && w->n_tensors == 0);
    mer_weights_close(w);
    const char *two = "[{\"paths\": [\"s.bin\", \"t.bin\"], \"weights\": [{\"name\": \"x\", \"shape\": [3], \"dtype\": "
                      "\"float32\"}]}]";
    CHECK_MSG(mer__tfjs_open_mem("ok.json", two, strlen(two), mem_shard, &m, &w, &err) == MER_OK, "%s", err.msg);
    if (w) {
        const float *x = mer_weights_find(w, "x")->data;
        CHECK(x[0] == 1.0f && x[1] == 2.0f && x[2] == 1.0f);
        mer_weights_close(w);
    }
    /* files: a missing shard file is named */
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/tfjs-bad", TMP);
    sh("mkdir -p '%s'", dir);
    snprintf(path, sizeof path, "%s/m.json", dir);
    FILE *f = fopen(path, "w");
    fputs("[{\"paths\": [\"gone.bin\"], \"weights\": [{\"name\": \"a\", \"shape\": [1], \"dtype\": \"float32\"}]}]", f);
    fclose(f);
    CHECK(mer__tfjs_open(path, &w, &err) == MER_E_IO && w == NULL);
    CHECK_MSG(strstr(err.msg, "m.json") && strstr(err.msg, "gone.bin"), "%s", err.msg);
    snprintf(path, sizeof path, "%s/none.json", dir);
    CHECK(mer__tfjs_open(path, &w, &err) == MER_E_IO && strstr(err.msg, "none.json"));
}

/* The networks refuse a model whose tensors are missing or misshapen. */
static void test_model_checks(void) {
    const char *bin = MODELS "/tiny_face_detector_model.bin";
    size_t nb = 0;
    char *b = slurp(bin, &nb);
    char *man = slurp(MODELS "/tiny_face_detector_model-weights_manifest.json", NULL);
    if (!b || !man) {
        free(b);
        free(man);
        printf("SKIP test_face: face models missing (run scripts/deps.sh)\n");
        return;
    }
    mem_shards m = {(const uint8_t *)b, nb};
    /* the manifest names its shard tiny_face_detector_model.bin: rename it to s.bin for mem_shard */
    char *p = strstr(man, "tiny_face_detector_model.bin");
    CHECK(p != NULL);
    if (!p) { free(b); free(man); return; }
    memmove(p + 5, p + 28, strlen(p + 28) + 1);
    memcpy(p, "s.bin", 5);
    mer_err err = {0};
    mer_weights *w = NULL;
    mer_facedet d;
    CHECK_MSG(mer__tfjs_open_mem("det.json", man, strlen(man), mem_shard, &m, &w, &err) == MER_OK, "%s", err.msg);
    if (w) {
        CHECK_MSG(mer__facedet_init(&d, w, &err) == MER_OK, "%s", err.msg);
        mer__facedet_free(&d);
        mer_faceexpr e;
        CHECK(mer__faceexpr_init(&e, w, &err) == MER_E_NOTFOUND && strstr(err.msg, "dense0/conv0/filters"));
        mer_weights_close(w);
    }
    char *q = strstr(man, "conv3/bias");
    if (q) {
        q[4] = '9'; /* conv9/bias: conv3/bias is then missing */
        CHECK(mer__tfjs_open_mem("det.json", man, strlen(man), mem_shard, &m, &w, &err) == MER_OK);
        if (w) {
            CHECK(mer__facedet_init(&d, w, &err) == MER_E_NOTFOUND && strstr(err.msg, "conv3/bias"));
            mer_weights_close(w);
        }
        q[4] = '3';
    }
    q = strstr(man, "\"shape\":[16]");
    if (q) {
        q[10] = '7'; /* conv0/bias [17]: the shard is then one byte short, so drop it from the end */
        m.ns = nb;
        mer_status st = mer__tfjs_open_mem("det.json", man, strlen(man), mem_shard, &m, &w, &err);
        CHECK_MSG(st == MER_E_FORMAT && strstr(err.msg, "conv8/bias"), "%d %s", st, err.msg);
        char *big = malloc(nb + 1);
        memcpy(big, b, nb);
        big[nb] = 0;
        mem_shards m2 = {(const uint8_t *)big, nb + 1};
        if (mer__tfjs_open_mem("det.json", man, strlen(man), mem_shard, &m2, &w, &err) == MER_OK) {
            CHECK(mer__facedet_init(&d, w, &err) == MER_E_SHAPE && strstr(err.msg, "conv0/bias") && strstr(err.msg, "[17]"));
            mer_weights_close(w);
        } else {
            CHECK_MSG(0, "%s", err.msg);
        }
        free(big);
    }
    free(b);
    free(man);
    mer_face *f = NULL;
    CHECK(mer_face_load(TMP, NULL, &f, &err) == MER_E_IO && f == NULL && strstr(err.msg, "tiny_face_detector"));
}

// --- parity on the photographs -----------------------------------------------------------------------

#if MER_MEDIA
static double iou4(const double *a, const double *b) {
    mer_facedet_box x = {a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0}, y = {b[0], b[1], b[2], b[3], 0, 0, 0, 0, 0};
    return mer__facedet_iou(&x, &y);
}

static void jbox(const cJSON *face, double *b) {
    const cJSON *bx = cJSON_GetObjectItem(face, "box");
    for (int k = 0; k < 4; k++) b[k] = cJSON_GetArrayItem(bx, k)->valuedouble;
}

/* Compares detections with a reference face list: count, then each reference face against the
 * detection of best IoU (>= 0.99), its crop and (when probs) its expression probabilities. */
static void compare_faces(const char *what, const mer_face_box *b, size_t n, float (*probs)[MER_FACE_N_EXPR],
                          const cJSON *ref) {
    CHECK_MSG((int)n == cJSON_GetArraySize(ref), "%s: %zu faces, reference %d", what, n, cJSON_GetArraySize(ref));
    const cJSON *rf;
    int k = 0;
    cJSON_ArrayForEach(rf, ref) {
        double rb[4], best = 0;
        jbox(rf, rb);
        size_t bi = 0;
        for (size_t i = 0; i < n; i++) {
            double v = iou4(rb, (double[]){b[i].x, b[i].y, b[i].w, b[i].h});
            if (v > best) best = v, bi = i;
        }
        CHECK_MSG(best >= 0.99, "%s face %d: best IoU %.5f", what, k, best);
        const cJSON *sc = cJSON_GetObjectItem(rf, "score");
        if (sc && n) CHECK_MSG(fabs(b[bi].score - sc->valuedouble) < 1e-3, "%s face %d: score %.6f vs %.6f", what, k,
                              b[bi].score, sc->valuedouble);
        const cJSON *crop = cJSON_GetObjectItem(rf, "crop");
        if (crop && n)
            CHECK_MSG(b[bi].crop_x == cJSON_GetArrayItem(crop, 0)->valueint && b[bi].crop_y == cJSON_GetArrayItem(crop, 1)->valueint &&
                          b[bi].crop_w == cJSON_GetArrayItem(crop, 2)->valueint && b[bi].crop_h == cJSON_GetArrayItem(crop, 3)->valueint,
                      "%s face %d: crop %d %d %d %d", what, k, b[bi].crop_x, b[bi].crop_y, b[bi].crop_w, b[bi].crop_h);
        const cJSON *ex = cJSON_GetObjectItem(rf, "expressions");
        if (ex && probs && n) {
            double md = 0;
            for (int e = 0; e < MER_FACE_N_EXPR; e++) md = fmax(md, fabs(probs[bi][e] - cJSON_GetArrayItem(ex, e)->valuedouble));
            CHECK_MSG(md <= 1e-3, "%s face %d: expression probabilities differ by %.2g", what, k, md);
        }
        k++;
    }
}

static uint8_t *read_image(const char *path, int *w, int *h) {
    mer_err err = {0};
    mer_video *v = NULL;
    if (mer_video_open(path, &v, &err)) { CHECK_MSG(0, "%s", err.msg); return NULL; }
    const mer_video_info *in = mer_video_get_info(v);
    *w = in->width;
    *h = in->height;
    uint8_t *rgb = malloc((size_t)in->width * in->height * 3);
    int64_t i0 = 0;
    if (mer_video_read(v, &i0, 1, 0, 0, rgb, &err)) { CHECK_MSG(0, "%s", err.msg); free(rgb); rgb = NULL; }
    mer_video_close(v);
    return rgb;
}
#endif

static void test_photos(void) {
#if !MER_MEDIA
    printf("SKIP test_face: photo parity needs FFmpeg (MER_MEDIA=0)\n");
#else
    cJSON *ref = load_json(FX "/ref_faces.json");
    if (!ref) return;
    mer_err err = {0};
    mer_face *f[3] = {NULL, NULL, NULL};
    const int sizes[3] = {416, 320, 608};
    const char *keys[3] = {"faces", "detect320", "detect608"};
    for (int s = 0; s < 3; s++) {
        mer_face_params p = mer_face_default_params();
        p.input_size = sizes[s];
        if (mer_face_load(MODELS, &p, &f[s], &err)) {
            printf("SKIP test_face: %s (run scripts/deps.sh)\n", err.msg);
            cJSON_Delete(ref);
            return;
        }
    }
    const cJSON *im;
    int n_img = 0;
    cJSON_ArrayForEach(im, cJSON_GetObjectItem(ref, "images")) {
        char path[512], what[600];
        snprintf(path, sizeof path, MODELS "/demo/%s", cJSON_GetObjectItem(im, "file")->valuestring);
        int w = 0, h = 0;
        uint8_t *rgb = read_image(path, &w, &h);
        if (!rgb) continue;
        CHECK_EQ_INT(w, cJSON_GetObjectItem(im, "width")->valueint);
        CHECK_EQ_INT(h, cJSON_GetObjectItem(im, "height")->valueint);
        for (int s = 0; s < 3; s++) {
            mer_face_box *b = NULL;
            size_t n = 0;
            CHECK_MSG(mer_face_detect(f[s], rgb, w, h, (size_t)w * 3, &b, &n, &err) == MER_OK, "%s", err.msg);
            float (*probs)[MER_FACE_N_EXPR] = s == 0 && n ? malloc(n * sizeof *probs) : NULL;
            for (size_t i = 0; probs && i < n; i++)
                CHECK_MSG(mer_face_expressions(f[0], rgb, w, h, (size_t)w * 3, &b[i], probs[i], &err) == MER_OK, "%s", err.msg);
            snprintf(what, sizeof what, "%s @%d", path, sizes[s]);
            compare_faces(what, b, n, probs, cJSON_GetObjectItem(im, keys[s]));
            free(probs);
            free(b);
        }
        free(rgb);
        n_img++;
    }
    CHECK_EQ_INT(n_img, 6);
    for (int s = 0; s < 3; s++) mer_face_free(f[s]);
    cJSON_Delete(ref);
#endif
}

// --- mer run / mer faces -----------------------------------------------------------------------------

#if MER_MEDIA
/* Runs a shell command, returns its stdout (caller frees) and exit status. */
static char *run_cmd(const char *cmd, int *status) {
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    size_t k;
    while ((k = fread(out + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (n + 1 == cap) out = realloc(out, cap *= 2);
    }
    out[n] = 0;
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

#endif

static void test_run(void) {
#if !MER_MEDIA
    printf("SKIP test_face: mer run needs FFmpeg (MER_MEDIA=0)\n");
#else
    const char *build = getenv("MER_BUILD");
    char mer[512];
    snprintf(mer, sizeof mer, "%s/mer", build && *build ? build : "build");
    if (!exists(mer) || system("command -v ffmpeg >/dev/null 2>&1") || !exists(MODELS "/demo/sample6.jpg")) {
        printf("SKIP test_face: mer run tests need %s, the ffmpeg CLI and the models (scripts/deps.sh)\n", mer);
        return;
    }
    cJSON *ref = load_json(FX "/ref_clip.json");
    if (!ref) return;
    double box0[4] = {0, 0, 0, 0};
    long idx0 = 0;
    int have_box0 = 0;
    const char *filter = cJSON_GetObjectItem(ref, "filter")->valuestring;
    const cJSON *rframes = cJSON_GetObjectItem(ref, "frames");
    int n_photo = cJSON_GetArraySize(rframes);
    /* a lossless RGB clip: 5 frames (1 s) per photograph, each padded as the reference padded it */
    char clip[600], cmd[8192];
    snprintf(clip, sizeof clip, "%s/photos.mkv", TMP);
    int off = snprintf(cmd, sizeof cmd, "ffmpeg -v error -y -sws_flags bilinear");
    for (int i = 0; i < n_photo; i++)
        off += snprintf(cmd + off, sizeof cmd - off, " -loop 1 -framerate 5 -t 1 -i " MODELS "/demo/%s",
                        cJSON_GetObjectItem(cJSON_GetArrayItem(rframes, i), "file")->valuestring);
    off += snprintf(cmd + off, sizeof cmd - off, " -filter_complex '");
    for (int i = 0; i < n_photo; i++) off += snprintf(cmd + off, sizeof cmd - off, "[%d:v]%s[v%d];", i, filter, i);
    for (int i = 0; i < n_photo; i++) off += snprintf(cmd + off, sizeof cmd - off, "[v%d]", i);
    snprintf(cmd + off, sizeof cmd - off, "concat=n=%d:v=1:a=0[v]' -map '[v]' -c:v libx264rgb -qp 0 -preset ultrafast '%s'",
             n_photo, clip);
    if (sh("%s", cmd)) {
        CHECK_MSG(0, "cannot make the clip: %s", cmd);
        cJSON_Delete(ref);
        return;
    }
    int status = 0;
    snprintf(cmd, sizeof cmd, "'%s' run '%s' --frames 12 --json", mer, clip);
    char *out = run_cmd(cmd, &status);
    CHECK_EQ_INT(status, 0);
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    CHECK_MSG(j != NULL, "mer run --json output is not JSON: %.300s", out ? out : "");
    if (j) {
        /* every sampled frame against the reference of its photograph; rebuild the run from the
         * reference's detections to get the expected main faces and labels */
        const cJSON *frames = cJSON_GetObjectItem(j, "frames"), *fr;
        int nf = cJSON_GetArraySize(frames), t = 0;
        CHECK_EQ_INT(nf, 12);
        mer_face_report *rr = calloc(1, sizeof *rr);
        rr->frames = calloc((size_t)nf, sizeof *rr->frames);
        rr->n_frames = (size_t)nf;
        int got_main_top[64], photo_of[64];
        have_box0 = 0;
        cJSON_ArrayForEach(fr, frames) {
            long idx = (long)cJSON_GetObjectItem(fr, "index")->valuedouble;
            int photo = (int)(idx / 5);
            photo_of[t] = photo;
            const cJSON *rf = cJSON_GetObjectItem(cJSON_GetArrayItem(rframes, photo), "faces");
            const cJSON *faces = cJSON_GetObjectItem(fr, "faces"), *fc;
            size_t n = (size_t)cJSON_GetArraySize(faces), i = 0;
            mer_face_box *b = calloc(n + 1, sizeof *b);
            float (*pr)[MER_FACE_N_EXPR] = calloc(n + 1, sizeof *pr);
            cJSON_ArrayForEach(fc, faces) {
                double bx[4];
                jbox(fc, bx);
                const cJSON *cr = cJSON_GetObjectItem(fc, "crop");
                if (cJSON_GetArraySize(cr) != 4) { CHECK_MSG(0, "mer run --json: a face without a crop"); break; }
                b[i] = (mer_face_box){bx[0], bx[1], bx[2], bx[3], cJSON_GetObjectItem(fc, "score")->valuedouble,
                                      cJSON_GetArrayItem(cr, 0)->valueint, cJSON_GetArrayItem(cr, 1)->valueint,
                                      cJSON_GetArrayItem(cr, 2)->valueint, cJSON_GetArrayItem(cr, 3)->valueint};
                for (int e = 0; e < MER_FACE_N_EXPR; e++)
                    pr[i][e] = (float)cJSON_GetObjectItem(cJSON_GetObjectItem(fc, "expressions"), mer_face_expr_name(e))->valuedouble;
                i++;
            }
            char what[64];
            snprintf(what, sizeof what, "mer run frame %ld", idx);
            compare_faces(what, b, n, pr, rf);
            int m = cJSON_GetObjectItem(fr, "main")->valueint;
            if (t == 0 && m >= 0 && (size_t)m < n) {
                box0[0] = b[m].x, box0[1] = b[m].y, box0[2] = b[m].w, box0[3] = b[m].h;
                idx0 = idx;
                have_box0 = 1;
            }
            got_main_top[t] = -1;
            if (m >= 0 && (size_t)m < n) {
                int k = 0;
                for (int e = 1; e < MER_FACE_N_EXPR; e++) k = pr[m][e] > pr[m][k] ? e : k;
                got_main_top[t] = k;
            }
            free(b);
            free(pr);
            /* the reference's detections for this frame */
            mer_face_frame *q = &rr->frames[t];
            q->index = idx;
            q->time = idx / 5.0;
            q->n_boxes = (size_t)cJSON_GetArraySize(rf);
            q->boxes = calloc(q->n_boxes + 1, sizeof *q->boxes);
            q->probs = calloc(q->n_boxes + 1, sizeof *q->probs);
            i = 0;
            cJSON_ArrayForEach(fc, rf) {
                double bx[4];
                jbox(fc, bx);
                q->boxes[i] = (mer_face_box){bx[0], bx[1], bx[2], bx[3], cJSON_GetObjectItem(fc, "score")->valuedouble, 0, 0, 0, 0};
                for (int e = 0; e < MER_FACE_N_EXPR; e++)
                    q->probs[i][e] = (float)cJSON_GetArrayItem(cJSON_GetObjectItem(fc, "expressions"), e)->valuedouble;
                i++;
            }
            t++;
        }
        mer_err err = {0};
        CHECK(mer_face_summarize(rr, &err) == MER_OK);
        CHECK_STR(cJSON_GetObjectItem(j, "labels")->valuestring, rr->labels);
        int order_ok = 1;
        for (int k = 0; k < t; k++) {
            const mer_face_frame *q = &rr->frames[k];
            int want = -1;
            if (q->main >= 0) {
                want = 0;
                for (int e = 1; e < MER_FACE_N_EXPR; e++) want = q->probs[q->main][e] > q->probs[q->main][want] ? e : want;
            }
            if (want != got_main_top[k]) {
                order_ok = 0;
                printf("FAIL frame %d (photo %d): main face looks %s, the reference's %s\n", k, photo_of[k],
                       got_main_top[k] >= 0 ? mer_face_expr_name(got_main_top[k]) : "-", want >= 0 ? mer_face_expr_name(want) : "-");
            }
        }
        CHECK_MSG(order_ok, "main face expressions in order");
        /* the plain output: the label line and the description */
        free(out);
        snprintf(cmd, sizeof cmd, "'%s' run '%s' --frames 12", mer, clip);
        out = run_cmd(cmd, &status);
        CHECK_EQ_INT(status, 0);
        size_t ll = strlen(rr->labels);
        CHECK_MSG(out && !strncmp(out, rr->labels, ll) && out[ll] == '\n' && strstr(out, "The main face is seen in 12 of 12"),
                  "mer run printed: %.400s", out ? out : "");
        printf("  mer run on the photographs: %s\n", rr->labels);
        mer_face_report_free(rr);
        cJSON_Delete(j);
    }
    free(out);

    /* mer faces on the clip */
    char npy[600];
    snprintf(npy, sizeof npy, "%s/faces.npy", TMP);
    snprintf(cmd, sizeof cmd, "'%s' faces '%s' -o '%s' --frames 12 >/dev/null && /usr/bin/python3 -c \"import numpy as np; "
             "a = np.load('%s'); print(a.dtype, *a.shape)\"", mer, clip, npy, npy);
    out = run_cmd(cmd, &status);
    CHECK_MSG(status == 0 && out && !strcmp(out, "uint8 12 112 112 3\n"), "mer faces: %s", out ? out : "");
    free(out);
    /* its first crop against the documented crop computed in float64 by numpy on the CLI-decoded frame */
    if (have_box0) {
        char py[700];
        snprintf(py, sizeof py, "%s/crop_ref.py", TMP);
        FILE *pf = fopen(py, "w");
        fprintf(pf, "import subprocess, sys, numpy as np\n"
                    "clip, npy, idx, x, y, w, h = sys.argv[1], sys.argv[2], int(sys.argv[3]), *map(float, sys.argv[4:8])\n"
                    "W, H, S = %d, %d, 112\n"
                    "raw = subprocess.run(['ffmpeg', '-v', 'error', '-i', clip, '-vf', 'select=eq(n\\\\,%%d)' %% idx, '-frames:v', '1',\n"
                    "    '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], capture_output=True, check=True).stdout\n"
                    "img = np.frombuffer(raw, np.uint8).reshape(H, W, 3).astype(np.float64)\n"
                    "side = 1.2 * max(w, h); x0 = x + w / 2 - side / 2; y0 = y + h / 2 - side / 2; sc = side / S\n"
                    "out = np.zeros((S, S, 3))\n"
                    "for r in range(S):\n"
                    "  for c in range(S):\n"
                    "    sy = y0 + (r + 0.5) * sc - 0.5; sx = x0 + (c + 0.5) * sc - 0.5\n"
                    "    fy, fx = np.floor(sy), np.floor(sx); ay, ax = sy - fy, sx - fx\n"
                    "    for dy, wy in ((0, 1 - ay), (1, ay)):\n"
                    "      for dx, wx in ((0, 1 - ax), (1, ax)):\n"
                    "        yy, xx = int(fy) + dy, int(fx) + dx\n"
                    "        if 0 <= yy < H and 0 <= xx < W: out[r, c] += wy * wx * img[yy, xx]\n"
                    "ref = np.clip(np.floor(out + 0.5), 0, 255)[:, :, ::-1]\n"
                    "got = np.load(npy)[0].astype(np.float64)\n"
                    "print(int(np.abs(got - ref).max()))\n",
                cJSON_GetObjectItem(ref, "width")->valueint, cJSON_GetObjectItem(ref, "height")->valueint);
        fclose(pf);
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' '%s' %ld %.17g %.17g %.17g %.17g", py, clip, npy, idx0, box0[0],
                 box0[1], box0[2], box0[3]);
        out = run_cmd(cmd, &status);
        CHECK_MSG(status == 0 && out && atoi(out) <= 1, "mer faces crop vs numpy: max difference %s", out ? out : "?");
        free(out);
    }

    /* no face: a test pattern; no video stream; a corrupt file */
    char path[600];
    snprintf(path, sizeof path, "%s/noface.mp4", TMP);
    if (sh("ffmpeg -v error -y -f lavfi -i color=c=0x6080a0:size=320x240:rate=10 -t 2 -c:v libx264 -pix_fmt yuv420p '%s'", path) == 0) {
        snprintf(cmd, sizeof cmd, "'%s' run '%s'", mer, path);
        out = run_cmd(cmd, &status);
        CHECK_EQ_INT(status, 0);
        CHECK_MSG(out && !strcmp(out, "[]\nno face found\n"), "no-face video: %s", out ? out : "");
        free(out);
    }
    snprintf(path, sizeof path, "%s/speech.wav", TMP);
    if (sh("ffmpeg -v error -y -f lavfi -i sine=frequency=300:duration=1 '%s'", path) == 0) {
        snprintf(cmd, sizeof cmd, "'%s' run '%s' 2>&1", mer, path);
        out = run_cmd(cmd, &status);
        CHECK_EQ_INT(status, 2);
        CHECK_MSG(out && strstr(out, "no video stream") && strchr(out, '\n') == out + strlen(out) - 1, "wav: %s", out ? out : "");
        free(out);
    }
    snprintf(path, sizeof path, "%s/corrupt.mp4", TMP);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 5000; i++) fputc((i * 7919) & 255, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' run '%s' 2>&1", mer, path);
    out = run_cmd(cmd, &status);
    CHECK_EQ_INT(status, 2);
    CHECK_MSG(out && strstr(out, "corrupt.mp4") && strchr(out, '\n') == out + strlen(out) - 1, "corrupt: %s", out ? out : "");
    free(out);
    cJSON_Delete(ref);
#endif
}

/* The documented label rule and tracking on hand-made frames (expected values from the rule's text). */
static void set_frame(mer_face_frame *f, int64_t idx, size_t n, const double (*boxes)[4], const float (*probs)[7]) {
    memset(f, 0, sizeof *f);
    f->index = idx;
    f->time = idx / 10.0;
    f->n_boxes = n;
    f->boxes = calloc(n + 1, sizeof *f->boxes);
    f->probs = calloc(n + 1, sizeof *f->probs);
    for (size_t i = 0; i < n; i++) {
        f->boxes[i] = (mer_face_box){boxes[i][0], boxes[i][1], boxes[i][2], boxes[i][3], 0.9, 0, 0, 0, 0};
        memcpy(f->probs[i], probs[i], sizeof f->probs[i]);
    }
}

static void test_summary_rules(void) {
    mer_err err = {0};
    /* neutral only -> [] ; surprised (0.6, top) then happy (0.9) -> [surprised, happy]; angry only by its mean */
    const float neutral[7] = {0.9f, 0.02f, 0.02f, 0.02f, 0.02f, 0.01f, 0.01f};
    const float surpr[7] = {0.3f, 0.05f, 0.0f, 0.0f, 0.05f, 0.0f, 0.6f};
    const float happy[7] = {0.05f, 0.9f, 0.0f, 0.0f, 0.0f, 0.0f, 0.05f};
    const float angry_weak[7] = {0.45f, 0.0f, 0.0f, 0.45f, 0.0f, 0.0f, 0.1f};
    const float sad_weak[7] = {0.55f, 0.0f, 0.4f, 0.0f, 0.0f, 0.0f, 0.05f};
    const double b1[1][4] = {{10, 10, 50, 60}};
    mer_face_report r = {0};
    mer_face_frame fr[4];
    r.frames = fr;
    r.n_frames = 3;
    for (int i = 0; i < 3; i++) set_frame(&fr[i], i, 1, b1, (const float(*)[7]) & neutral);
    CHECK(mer_face_summarize(&r, &err) == MER_OK);
    CHECK_STR(r.labels, "[]");
    CHECK(r.n_with_face == 3 && strstr(r.description, "neutral"));
    for (int i = 0; i < 3; i++) { free(fr[i].boxes); free(fr[i].probs); }
    set_frame(&fr[0], 0, 1, b1, (const float(*)[7]) & neutral);
    set_frame(&fr[1], 5, 1, b1, (const float(*)[7]) & surpr);
    set_frame(&fr[2], 10, 1, b1, (const float(*)[7]) & happy);
    set_frame(&fr[3], 15, 1, b1, (const float(*)[7]) & sad_weak); /* top neutral; sad mean 0.1: not shown */
    r.n_frames = 4;
    free(r.labels); free(r.description); r.labels = r.description = NULL;
    CHECK(mer_face_summarize(&r, &err) == MER_OK);
    CHECK_STR(r.labels, "[surprised, happy]");
    for (int i = 0; i < 4; i++) { free(fr[i].boxes); free(fr[i].probs); }
    /* angry is the top expression nowhere above 0.5 (ties go to the first, neutral) but its mean is 0.45 */
    for (int i = 0; i < 2; i++) set_frame(&fr[i], i, 1, b1, (const float(*)[7]) & angry_weak);
    r.n_frames = 2;
    free(r.labels); free(r.description); r.labels = r.description = NULL;
    CHECK(mer_face_summarize(&r, &err) == MER_OK);
    CHECK_STR(r.labels, "[angry]");
    for (int i = 0; i < 2; i++) { free(fr[i].boxes); free(fr[i].probs); }
    /* tracking: a small face linked through frames 0-2 (3 frames) beats a large one that is missing from
     * frame 1 (two 1-frame tracks); frame 3 has no face */
    const double two[2][4] = {{100, 100, 200, 200}, {10, 10, 40, 40}};
    const double small[1][4] = {{12, 11, 40, 40}};
    const float pp[2][7] = {{1, 0, 0, 0, 0, 0, 0}, {0, 1, 0, 0, 0, 0, 0}};
    set_frame(&fr[0], 0, 2, two, pp);
    set_frame(&fr[1], 1, 1, small, pp + 1);
    set_frame(&fr[2], 2, 2, two, pp);
    set_frame(&fr[3], 3, 0, NULL, NULL);
    int mains[4];
    mer_face_track_main(fr, 4, mains);
    CHECK(mains[0] == 1 && mains[1] == 0 && mains[2] == 1 && mains[3] == -1);
    for (int i = 0; i < 4; i++) { free(fr[i].boxes); free(fr[i].probs); }
    free(r.labels);
    free(r.description);
}

static void run(void) {
    snprintf(TMP, sizeof TMP, "%s", MER_TEST_TMP "/face");
    sh("mkdir -p '%s'", TMP);
    test_tfjs_small();
    test_tfjs_bad();
    test_summary_rules();
    test_model_checks();
    test_photos();
    test_run();
}
