/* test_features.c - the public feature extractor (mer_encoders_*, what `mer features` runs) end to end on
 * the tiny CLIP and HuBERT fixtures against the Python stack (scripts/make_features_fixtures.py: cv2 /
 * PIL / torchaudio preprocessing and plain torch.nn encoders checked against HF transformers): face crops
 * from an OpenFace-style BGR npy, image files, WAV files, --layer; 1e-4 relative. Also the npz writer
 * (read back here, and by numpy when /usr/bin/python3 has it) and the CLI's error paths. */
#include "test.h"

#include "io/npy.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define M FIXTURES "/models"
#define DIR FIXTURES "/features"

static mer_npz Z;

static void expect(const char *key, const float *got, size_t n) {
    mer_npy a;
    mer_err err = {0};
    memset(&a, 0, sizeof a);
    if (mer__npz_get(&Z, key, &a, &err) != MER_OK) {
        CHECK_MSG(0, "%s: %s", key, err.msg);
        return;
    }
    CHECK_MSG(a.dtype == MER_DTYPE_F32 && a.n_elems == n, "%s: %zu elements, expected %zu", key, a.n_elems, n);
    if (a.n_elems == n) {
        float *ref = malloc(n * sizeof(float));
        memcpy(ref, a.data, n * sizeof(float));
        double e = max_rel_err(got, ref, n);
        printf("%s: rel err %.3g\n", key, e);
        CHECK_MSG(e <= 1e-4, "%s: rel err %.3g", key, e);
        free(ref);
    }
    mer__npy_free(&a);
}

static void run(void) {
    mer_err err = {0};
    memset(&Z, 0, sizeof Z);
    if (mer__npz_open(DIR "/expected.npz", &Z, &err) != MER_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    mer_encoders_params p = mer_encoders_default_params();
    p.clip = M "/clip_tiny";
    p.hubert = M "/hubert_tiny";
    p.n_threads = 2;
    mer_encoders *e = NULL;
    CHECK_MSG(mer_encoders_open(&p, &e, &err) == MER_OK, "%s", err.msg);
    if (!e) return;
    CHECK_EQ_INT(mer_encoders_visual_dim(e), 16);
    CHECK_EQ_INT(mer_encoders_audio_dim(e), 32);
    float vis[8 * 16], aud[8 * 32], img[2 * 16];
    CHECK_MSG(mer_encoders_faces(e, DIR "/faces.npy", vis, &err) == MER_OK, "%s", err.msg);
    expect("faces_visual", vis, 8 * 16);
    const char *paths[2] = {FIXTURES "/preprocess/crop.png", FIXTURES "/preprocess/face112.png"};
    CHECK_MSG(mer_encoders_images(e, paths, 2, img, &err) == MER_OK, "%s", err.msg);
    expect("images_visual", img, 2 * 16);
    CHECK_MSG(mer_encoders_wav(e, FIXTURES "/wav/a_s16_2ch_44100.wav", aud, &err) == MER_OK, "%s", err.msg);
    expect("audio_a", aud, 8 * 32);
    float aud2[8 * 32];
    CHECK_MSG(mer_encoders_wav(e, FIXTURES "/wav/d_u8_1ch_8000.wav", aud2, &err) == MER_OK, "%s", err.msg);
    expect("audio_d", aud2, 8 * 32);

    /* the npz of `mer features`, read back */
    char tmp[] = "/tmp/mer_test_features_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    char out[600];
    snprintf(out, sizeof out, "%s/f.npz", tmp);
    CHECK(mer_features_npz_write(out, vis, 8, 16, aud, 8, 32, &err) == MER_OK);
    mer_npz z;
    memset(&z, 0, sizeof z);
    if (mer__npz_open(out, &z, &err) == MER_OK) {
        mer_npy a;
        memset(&a, 0, sizeof a);
        CHECK(mer__npz_get(&z, "visual", &a, &err) == MER_OK && a.n_dims == 2 && a.shape[0] == 8 && a.shape[1] == 16 &&
              !memcmp(a.data, vis, sizeof vis));
        mer__npy_free(&a);
        CHECK(mer__npz_get(&z, "audio", &a, &err) == MER_OK && a.n_dims == 2 && a.shape[0] == 8 && a.shape[1] == 32 &&
              !memcmp(a.data, aud, sizeof aud));
        mer__npy_free(&a);
        mer__npz_close(&z);
    } else {
        CHECK_MSG(0, "%s", err.msg);
    }
    if (access("/usr/bin/python3", X_OK) == 0) { /* numpy reads it */
        char cmd[900];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import numpy as np, sys; z = np.load('%s'); "
                 "sys.exit(0 if z['visual'].shape == (8, 16) and z['audio'].dtype == np.float32 else 1)\" 2>/dev/null", out);
        int rc = system(cmd);
        if (rc == 0) CHECK(1);
        else printf("SKIP numpy check of the npz (python3-numpy missing?)\n");
    }
    snprintf(out, sizeof out, "rm -rf %s", tmp);
    CHECK(system(out) == 0);
    mer_encoders_free(e);

    /* --layer 1: means of hidden state 1 */
    p.layer = 1;
    e = NULL;
    CHECK_MSG(mer_encoders_open(&p, &e, &err) == MER_OK, "%s", err.msg);
    if (e) {
        float v1[8 * 32], a1[8 * 32];
        CHECK_EQ_INT(mer_encoders_visual_dim(e), 32);
        CHECK(mer_encoders_faces(e, DIR "/faces.npy", v1, &err) == MER_OK);
        expect("faces_layer1", v1, 8 * 32);
        CHECK(mer_encoders_wav(e, FIXTURES "/wav/a_s16_2ch_44100.wav", a1, &err) == MER_OK);
        expect("audio_layer1", a1, 8 * 32);
        mer_encoders_free(e);
    }
    /* errors name what is wrong */
    p.layer = 3;
    CHECK(mer_encoders_open(&p, &e, &err) == MER_E_ARG);
    p = mer_encoders_default_params();
    p.clip = M "/clip_tiny";
    CHECK(mer_encoders_open(&p, &e, &err) == MER_OK);
    if (e) {
        CHECK(mer_encoders_wav(e, FIXTURES "/wav/a_s16_2ch_44100.wav", aud, &err) == MER_E_ARG);
        CHECK(mer_encoders_faces(e, FIXTURES "/wav/expected.npz", vis, &err) != MER_OK);
        CHECK(mer_encoders_faces(e, M "/clip_tiny/config.json", vis, &err) != MER_OK);
        CHECK(strstr(err.msg, "config.json") != NULL);
        mer_encoders_free(e);
    }
    mer__npz_close(&Z);
}
