/* features.c - the public feature extractor of mer.h (mer_encoders_*): CLIP and HuBERT with AffectGPT's
 * preprocessing (images, in-memory frames, OpenFace face crops, 16 kHz waveforms, WAV files), and the
 * npz writer of `mer features`. On a CUDA device (params.device) the encoders run there (models/
 * clip_cuda.h, hubert_cuda.h, one device context): images in batches of up to 8, the 8 clips as one. */
#include "io/npy.h"
#include "io/wav.h"
#include "io/zip.h"
#include "kernels/cuda/cuda_backend.h"
#include "models/clip.h"
#include "models/clip_cuda.h"
#include "models/hubert_cuda.h"
#include "core/sampling.h"
#include "models/clip_preprocess.h"
#include "models/hubert.h"

#include <string.h>

#define N_FACES 8
#define FACE_SIZE 224
#define N_CLIPS 8
#define CLIP_SEC 2
#define SR 16000

struct mer_encoders {
    mer_encoders_params p;
    mer_threadpool *pool;
    mer_cpu_ctx *cpu;
    mer_clip *clip;
    mer_clip_ctx *clip_ctx;
    mer_hubert *hub;
    mer_hubert_ctx *hub_ctx;
    int batch;      /* images per CLIP call: 8 on the device, 1 on the CPU */
    int n_pending;  /* images preprocessed into pixels, not yet encoded */
    float *pixels;  /* [batch][3][S][S] */
    float *hidden;  /* [batch][n_tok][n_embd] for layer >= 0 */
    struct mer_cuda *gpu; /* the device context of the two encoders below, or NULL: the CPU */
    mer_clip_cuda *clip_g;
    mer_hubert_cuda *hub_g;
};

#define GPU_BATCH 8

mer_encoders_params mer_encoders_default_params(void) {
    mer_encoders_params p;
    memset(&p, 0, sizeof p);
    p.layer = -1;
    return p;
}

void mer_encoders_free(mer_encoders *e) {
    if (!e) return;
    mer_clip_cuda_free(e->clip_g);
    mer_hubert_cuda_free(e->hub_g);
#if MER_CUDA
    mer_cuda_free(e->gpu);
#endif
    mer_clip_ctx_free(e->clip_ctx);
    mer_clip_free(e->clip);
    mer_hubert_ctx_free(e->hub_ctx);
    mer_hubert_free(e->hub);
    mer_cpu_ctx_free(e->cpu);
    mer_threadpool_free(e->pool);
    free(e->pixels);
    free(e->hidden);
    free(e);
}

mer_status mer_encoders_open(const mer_encoders_params *p, mer_encoders **out, mer_err *err) {
    *out = NULL;
    if (!p || (!p->clip && !p->hubert)) return mer__errf(err, MER_E_ARG, "encoders: neither a CLIP nor a HuBERT checkpoint");
    mer_encoders *e = calloc(1, sizeof *e);
    if (!e) return mer__errf(err, MER_E_NOMEM, "out of memory");
    e->p = *p;
    e->batch = 1;
    mer_status st;
    mer_device dev = mer_device_resolve(p->device);
    if (dev == MER_DEVICE_CUDA) {
#if MER_CUDA
        if ((st = mer_cuda_init(0, &e->gpu, err))) goto fail;
        e->batch = GPU_BATCH;
#else
        st = mer__errf(err, MER_E_UNSUPPORTED, "encoders on cuda: built without CUDA (make CUDA=1)");
        goto fail;
#endif
    }
    if ((st = mer_threadpool_init(p->n_threads, &e->pool, err)) ||
        (st = mer_cpu_ctx_init(e->pool, MER_ISA_AUTO, &e->cpu, err)))
        goto fail;
    if (p->clip) {
        if ((st = mer_clip_open(p->clip, &e->clip, err)) || (st = mer_clip_ctx_init(e->clip, e->cpu, &e->clip_ctx, err)))
            goto fail;
        const mer_clip_hparams *hp = &e->clip->hp;
        if (p->layer > hp->n_layer) {
            st = mer__errf(err, MER_E_ARG, "%s: hidden state %d asked of a %d-layer CLIP", p->clip, p->layer, hp->n_layer);
            goto fail;
        }
        if (p->layer < 0 && !hp->n_proj) {
            st = mer__errf(err, MER_E_NOTFOUND, "%s: no visual_projection for image features (use --layer)", p->clip);
            goto fail;
        }
        e->pixels = malloc((size_t)e->batch * hp->n_channels * hp->image_size * hp->image_size * sizeof(float));
        e->hidden = malloc((size_t)e->batch * hp->n_tok * hp->n_embd * sizeof(float));
        if (!e->pixels || !e->hidden) {
            st = mer__errf(err, MER_E_NOMEM, "out of memory");
            goto fail;
        }
        if (hp->n_channels != 3) {
            st = mer__errf(err, MER_E_UNSUPPORTED, "%s: %d input channels (3 expected)", p->clip, hp->n_channels);
            goto fail;
        }
        if (e->gpu && (st = mer_clip_cuda_from_model(e->clip, e->gpu, e->batch, MER_DTYPE_BF16, &e->clip_g, err)))
            goto fail;
    }
    if (p->hubert) {
        if ((st = mer_hubert_open(p->hubert, &e->hub, err)) ||
            (st = mer_hubert_ctx_init(e->hub, e->cpu, (long)CLIP_SEC * SR, &e->hub_ctx, err)))
            goto fail;
        if (p->layer > e->hub->hp.n_layer) {
            st = mer__errf(err, MER_E_ARG, "%s: hidden state %d asked of a %d-layer HuBERT", p->hubert, p->layer,
                           e->hub->hp.n_layer);
            goto fail;
        }
        if (e->gpu && (st = mer_hubert_cuda_from_model(e->hub, e->gpu, N_CLIPS, (long)CLIP_SEC * SR, MER_DTYPE_BF16,
                                                       &e->hub_g, err)))
            goto fail;
    }
    *out = e;
    return MER_OK;
fail:
    mer_encoders_free(e);
    return st;
}

int mer_encoders_visual_dim(const mer_encoders *e) {
    if (!e || !e->clip) return 0;
    return e->p.layer >= 0 ? e->clip->hp.n_embd : e->clip->hp.n_proj;
}

int mer_encoders_audio_dim(const mer_encoders *e) { return e && e->hub ? e->hub->hp.n_embd : 0; }

// --- visual ------------------------------------------------------------------------------------------

/* Encodes the n_pending preprocessed images into out[0..n_pending) (rows of visual_dim). */
static mer_status flush(mer_encoders *e, float *out, mer_err *err) {
    const mer_clip_hparams *hp = &e->clip->hp;
    const int n = e->n_pending, T = hp->n_tok, D = hp->n_embd, dim = mer_encoders_visual_dim(e);
    const size_t px = (size_t)3 * hp->image_size * hp->image_size;
    float *ptrs[GPU_BATCH][1025];
    mer_clip_out o[GPU_BATCH];
    mer_status st = MER_OK;
    e->n_pending = 0;
    memset(o, 0, sizeof o);
    for (int i = 0; i < n; i++) {
        if (e->p.layer < 0) {
            o[i].image_embeds = out + (size_t)i * dim;
        } else {
            memset(ptrs[i], 0, sizeof ptrs[i]);
            ptrs[i][e->p.layer] = e->hidden + (size_t)i * T * D;
            o[i].hidden = ptrs[i];
        }
    }
    if (e->clip_g) st = mer_clip_cuda_encode(e->clip_g, e->pixels, n, o, err);
    else
        for (int i = 0; i < n && !st; i++) st = mer_clip_encode(e->clip_ctx, e->pixels + (size_t)i * px, &o[i], err);
    if (st || e->p.layer < 0) return st;
    for (int i = 0; i < n; i++) { /* the mean over tokens of the hidden state */
        const float *h = e->hidden + (size_t)i * T * D;
        for (int d = 0; d < D; d++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += h[(size_t)t * D + d];
            out[(size_t)i * dim + d] = (float)(s / T);
        }
    }
    return MER_OK;
}

/* Preprocesses one image (already of the model's size, [S][S][3] uint8, or not: any size) into the next
 * pixel slot; encodes the slots into out_base (the row of the first pending image) when they are full or
 * `last`. */
static mer_status push_image(mer_encoders *e, const uint8_t *rgb, int w, int h, int last, float **out_base,
                             mer_err *err) {
    const mer_clip_hparams *hp = &e->clip->hp;
    const size_t px = (size_t)3 * hp->image_size * hp->image_size;
    mer_status st = mer_clip_preprocess(rgb, w, h, hp->image_size, hp->image_size, e->pixels + (size_t)e->n_pending * px,
                                        NULL, err);
    if (st) {
        e->n_pending = 0;
        return st;
    }
    e->n_pending++;
    if (e->n_pending < e->batch && !last) return MER_OK;
    int n = e->n_pending;
    if ((st = flush(e, *out_base, err))) return st;
    *out_base += (size_t)n * mer_encoders_visual_dim(e);
    return MER_OK;
}

static mer_status need_clip(const mer_encoders *e, mer_err *err) {
    return e && e->clip ? MER_OK : mer__errf(err, MER_E_ARG, "encoders: no CLIP checkpoint loaded");
}

mer_status mer_encoders_frames(mer_encoders *e, const uint8_t *const *imgs, int w, int h, int n, float *out,
                               mer_err *err) {
    mer_status st = need_clip(e, err);
    if (st) return st;
    e->n_pending = 0;
    for (int i = 0; i < n; i++)
        if ((st = push_image(e, imgs[i], w, h, i + 1 == n, &out, err))) return st;
    return MER_OK;
}

mer_status mer_encoders_images(mer_encoders *e, const char *const *paths, int n, float *out, mer_err *err) {
    mer_status st = need_clip(e, err);
    if (st) return st;
    e->n_pending = 0;
    for (int i = 0; i < n; i++) {
        uint8_t *rgb;
        int w, h;
        if ((st = mer_image_load(paths[i], &rgb, &w, &h, err))) {
            e->n_pending = 0;
            return st;
        }
        st = push_image(e, rgb, w, h, i + 1 == n, &out, err);
        free(rgb);
        if (st) return mer__err_prefix(err, st, "%s", paths[i]);
    }
    return MER_OK;
}

mer_status mer_encoders_faces(mer_encoders *e, const char *npy_path, float *out, mer_err *err) {
    mer_status st = need_clip(e, err);
    if (st) return st;
    mer_map m;
    mer_npy a;
    memset(&a, 0, sizeof a);
    if ((st = mer__map_open(npy_path, &m, err))) return st;
    uint8_t *face = NULL;
    if ((st = mer__npy_parse(npy_path, m.data, m.size, &a, err))) goto done;
    if (a.kind != MER_NPY_NUMERIC || a.dtype != MER_DTYPE_U8 || a.n_dims != 4 || a.shape[3] != 3 || a.fortran ||
        a.shape[0] < 1 || a.shape[1] < 1 || a.shape[2] < 1 || a.shape[1] > 65536 || a.shape[2] > 65536) {
        st = mer__errf(err, MER_E_SHAPE, "%s: expected uint8 faces [n, H, W, 3] in C order, got %s with %d dims", npy_path,
                       a.descr, a.n_dims);
        goto done;
    }
    /* cv2.resize(face, (224, 224)) as AffectGPT does, then the CLIP processor (a no-op resize for a
     * 224-pixel model) */
    const int H = (int)a.shape[1], W = (int)a.shape[2], S = FACE_SIZE;
    const size_t fsz = (size_t)H * W * 3;
    int64_t idx[N_FACES];
    mer__frame_indices(a.shape[0], N_FACES, idx);
    face = malloc((size_t)S * S * 3);
    if (!face) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto done;
    }
    e->n_pending = 0;
    for (int i = 0; i < N_FACES; i++) {
        if ((st = mer_resize_cv_linear(a.data + (size_t)idx[i] * fsz, W, H, 3, face, S, S, err))) goto done;
        if (e->p.rgb_faces)
            for (size_t p = 0; p < (size_t)S * S; p++) {
                uint8_t t = face[p * 3];
                face[p * 3] = face[p * 3 + 2];
                face[p * 3 + 2] = t;
            }
        if ((st = push_image(e, face, S, S, i + 1 == N_FACES, &out, err))) goto done;
    }
done:
    free(face);
    mer__npy_free(&a);
    mer__map_close(&m);
    return st;
}

// --- audio -------------------------------------------------------------------------------------------

mer_status mer_encoders_audio(mer_encoders *e, const float *pcm16k, size_t n, float *out, mer_err *err) {
    if (!e || !e->hub) return mer__errf(err, MER_E_ARG, "encoders: no HuBERT checkpoint loaded");
    const size_t len = (size_t)CLIP_SEC * SR;
    float *clips = malloc(N_CLIPS * len * sizeof(float));
    if (!clips) return mer__errf(err, MER_E_NOMEM, "out of memory");
    mer_audio_clips(pcm16k, n, SR, N_CLIPS, CLIP_SEC, clips);
    mer_hubert_normalize(clips, N_CLIPS, len, !e->p.per_clip_norm);
    mer_status st = e->hub_g ? mer_hubert_cuda_pool(e->hub_g, clips, N_CLIPS, (long)len, e->p.layer, e->p.hf5_hidden, out, err)
                             : mer_hubert_pool(e->hub_ctx, clips, N_CLIPS, (long)len, e->p.layer, e->p.hf5_hidden, out, err);
    free(clips);
    return st;
}

mer_status mer_encoders_wav(mer_encoders *e, const char *wav_path, float *out, mer_err *err) {
    if (!e || !e->hub) return mer__errf(err, MER_E_ARG, "encoders: no HuBERT checkpoint loaded");
    float *pcm;
    size_t n;
    mer_status st = mer_wav_load_16k_mono(wav_path, &pcm, &n, err);
    if (st) return st;
    st = mer_encoders_audio(e, pcm, n, out, err);
    free(pcm);
    return st;
}

// --- npz ---------------------------------------------------------------------------------------------

static mer_status add_array(mer_zip_writer *zw, const char *name, const float *x, int rows, int cols, mer_err *err) {
    mer_buf b = {0};
    int64_t shape[2] = {rows, cols};
    mer_status st = mer__npy_write(&b, "<f4", 2, shape, x, (size_t)rows * cols * sizeof(float));
    if (st) {
        mer__buf_free(&b);
        return mer__errf(err, st, "npz: out of memory");
    }
    st = mer__zipw_add(zw, name, b.data, b.len, 0, 1, err);
    mer__buf_free(&b);
    return st;
}

mer_status mer_features_npz_write(const char *path, const float *visual, int n_visual, int dim_visual,
                                  const float *audio, int n_audio, int dim_audio, mer_err *err) {
    if (!path || (!visual && !audio) || (visual && (n_visual < 0 || dim_visual < 0)) ||
        (audio && (n_audio < 0 || dim_audio < 0)))
        return mer__errf(err, MER_E_ARG, "npz: nothing to write or bad sizes");
    mer_zip_writer zw;
    mer__zipw_init(&zw);
    mer_status st = MER_OK;
    if (visual) st = add_array(&zw, "visual.npy", visual, n_visual, dim_visual, err);
    if (!st && audio) st = add_array(&zw, "audio.npy", audio, n_audio, dim_audio, err);
    if (!st) st = mer__zipw_finish(&zw, err);
    if (!st) st = mer__write_file_atomic(path, zw.out.data, zw.out.len, err);
    mer__zipw_free(&zw);
    return st;
}
