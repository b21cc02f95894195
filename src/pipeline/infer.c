/* infer.c - `mer infer`: AffectGPT over a MER2025-layout dataset on the resumable job runner. Per
 * sample: the subtitle, 8 face crops (openface_face/<name>/<name>.npy) or 8 video frames
 * (video/<name>.mp4, decoded at 224x224), 8 audio clips of 2 s (audio/<name>.wav, else the video's
 * audio), then features, fusion and the answer (pipeline/agpt.c). Missing or corrupt media is a
 * per-sample error recorded in the store; the run goes on. With batch > 1 a loading thread reads the
 * media of the samples ahead, in list order, into a ring of prepared samples (when the encoders run on
 * the GPU, a second thread behind it computes the features, the fusion and the prompt embeddings); the
 * calling thread finishes each (on the CPU: encoders, fusion, prompt) and the LLM answers them by
 * continuous batching (mer_qwen2_generate_batch), each with its own seeded sampler; each answer is
 * committed as soon as it is done. */
#include "core/strmap.h"
#include "io/csv.h"
#include "io/npy.h"
#include "io/wav.h"
#include "pipeline/agpt.h"
#include "core/sampling.h"
#include "pipeline/job.h"
#include "models/clip_preprocess.h"
#if MER_MEDIA
#include "media/audio.h"
#endif

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

mer_infer_params mer_infer_default_params(void) {
    mer_infer_params p;
    memset(&p, 0, sizeof p);
    p.lora_scale = 2.0;
    p.task = MER_TASK_OV;
    p.temperature = 1.0;
    p.top_p = 0.9;
    p.top_k = 20;
    p.repeat_penalty = 1.0;
    p.max_new_tokens = 1200;
    p.progress = 1;
    p.batch = 8;
    return p;
}

typedef struct infer_ctx {
    const mer_infer_params *p;
    mer__agpt *a;
    mer_face *face; /* with detect_faces */
    mer_csv subs;
    int has_subs;
    long sub_col;
    mer_strmap sub_idx;
    const char *question;
    const char *const *names;
    int encode_ahead;     /* the loading thread also runs the encoders (on the device), fusion and prompt */
    mer_threadpool *prep; /* the 8 images of a sample preprocessed in parallel (used by the loading thread) */
} infer_ctx;

/* One sample on its way through the stages: media -> pixels and normalised clips -> features -> prompt
 * embeddings. The buffers are allocated once per ring slot and reused. */
typedef struct sample {
    size_t index;
    mer_status st; /* of the stages run so far */
    mer_err err;
    double t_start;
    const char *subtitle; /* a cell of the subtitles CSV, or "" */
    uint8_t *imgs;        /* [8][224][224][3] */
    float *pixels;        /* [8][3][S][S] */
    float *clips;         /* [8][32000], normalised */
    float *visual;        /* [8][n_visual] */
    float *audio;         /* [8][n_audio] */
    int encoded;
    float *embd;          /* prompt embeddings [n_tok][n_embd] (freed when the sample is released) */
    size_t n_tok;
} sample;

#define CLIP_LEN ((long)MER_AGPT_SR * MER_AGPT_CLIP_S)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sample_free(sample *s) {
    free(s->imgs);
    free(s->pixels);
    free(s->clips);
    free(s->visual);
    free(s->audio);
    free(s->embd);
    memset(s, 0, sizeof *s);
}

static mer_status sample_alloc(const infer_ctx *x, sample *s, mer_err *err) {
    size_t S = (size_t)x->a->clip->hp.image_size;
    memset(s, 0, sizeof *s);
    s->imgs = malloc((size_t)MER_AGPT_N_FRAMES * 224 * 224 * 3);
    s->pixels = malloc((size_t)MER_AGPT_N_FRAMES * 3 * S * S * sizeof(float));
    s->clips = malloc((size_t)MER_AGPT_N_CLIPS * (size_t)CLIP_LEN * sizeof(float));
    s->visual = malloc((size_t)MER_AGPT_N_FRAMES * (size_t)x->a->n_visual * sizeof(float));
    s->audio = malloc((size_t)MER_AGPT_N_CLIPS * (size_t)x->a->n_audio * sizeof(float));
    if (s->imgs && s->pixels && s->clips && s->visual && s->audio) return MER_OK;
    sample_free(s);
    return mer__errf(err, MER_E_NOMEM, "out of memory");
}

static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

// --- media ------------------------------------------------------------------------------------------

/* The 8 crops AffectGPT takes from n face crops [n][H][W][3] (BGR): the frame rule over n, each resized
 * to 224 with cv2's INTER_LINEAR, optionally turned to RGB; then CLIP's pixels (an image per pool part). */
static mer_status faces_to_pixels(const infer_ctx *x, sample *s, const uint8_t *faces, int64_t n, int H, int W,
                                  mer_err *err) {
    int64_t idx[MER_AGPT_N_FRAMES];
    mer__frame_indices(n, MER_AGPT_N_FRAMES, idx);
    return mer__agpt_images(x->a, x->prep, faces, idx, H, W, x->p->rgb_faces, MER_AGPT_N_FRAMES, s->imgs, s->pixels, err);
}

/* 8 face crops from the OpenFace npy: uint8 [n, H, W, 3] BGR. */
static mer_status load_faces(const infer_ctx *x, sample *s, const char *name, mer_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/openface_face/%s/%s.npy", x->p->data_dir, name, name);
    mer_map m;
    mer_status st = mer__map_open(path, &m, err);
    if (st) return st;
    mer_npy a;
    if ((st = mer__npy_parse(path, m.data, m.size, &a, err))) goto done;
    if (a.kind != MER_NPY_NUMERIC || a.dtype != MER_DTYPE_U8 || a.n_dims != 4 || a.shape[3] != 3 || a.shape[0] < 1 ||
        a.shape[1] < 1 || a.shape[2] < 1 || a.fortran) {
        st = mer__errf(err, MER_E_SHAPE, "%s: expected uint8 faces [n, H, W, 3] in C order, got %s with %d dims", path,
                       a.descr, a.n_dims);
        goto done;
    }
    st = faces_to_pixels(x, s, a.data, a.shape[0], (int)a.shape[1], (int)a.shape[2], err);
done:
    mer__map_close(&m);
    return st;
}

#if MER_MEDIA
/* Face crops found in the video by the built-in detector, in place of OpenFace's npy. */
static mer_status detect_faces(const infer_ctx *x, sample *s, const char *video, mer_err *err) {
    uint8_t *crops = NULL;
    size_t n = 0;
    mer_status st = mer_face_video_crops(x->face, video, MER_AGPT_N_FRAMES, 112, &crops, &n, err);
    if (!st && n == 0) st = mer__errf(err, MER_E_NOTFOUND, "%s: no face found in the sampled frames", video);
    if (!st) st = faces_to_pixels(x, s, crops, (int64_t)n, 112, 112, err);
    free(crops);
    return st;
}

static mer_status load_frames(const infer_ctx *x, sample *s, const char *video, mer_err *err) {
    mer_video *v = NULL;
    mer_status st = mer_video_open(video, &v, err);
    if (st) return st;
    int64_t idx[MER_AGPT_N_FRAMES];
    const mer_video_info *vi = mer_video_get_info(v);
    if (vi->n_frames < 1) {
        st = mer__errf(err, MER_E_FORMAT, "%s: the video has no frames", video);
    } else {
        mer__frame_indices(vi->n_frames, MER_AGPT_N_FRAMES, idx);
        st = mer_video_read(v, idx, MER_AGPT_N_FRAMES, 224, 224, s->imgs, err);
    }
    mer_video_close(v);
    if (!st)
        st = mer__agpt_images(x->a, x->prep, NULL, NULL, 0, 0, 0, MER_AGPT_N_FRAMES, s->imgs, s->pixels, err);
    return st;
}

#endif

/* 16 kHz mono: a .wav through mer's WAV reader (torchaudio's scaling and sinc resampling, as the
 * reference), anything else (the video's audio stream) through FFmpeg. */
static mer_status load_audio(const infer_ctx *x, sample *s, const char *name, const char *video, mer_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/audio/%s.wav", x->p->data_dir, name);
    float *wav = NULL;
    size_t n = 0;
    mer_status st;
    const char *src = path;
    if (exists(path)) {
        st = mer_wav_load_16k_mono(path, &wav, &n, err);
    } else if (exists(video)) {
        src = video;
#if MER_MEDIA
        st = mer__audio_decode(video, MER_AGPT_SR, &wav, &n, err);
#else
        st = mer__errf(err, MER_E_UNSUPPORTED, "%s: reading audio from a video needs FFmpeg (this mer was built with MEDIA=0)", video);
#endif
    } else {
        return mer__errf(err, MER_E_NOTFOUND, "%s: missing (and no %s)", path, video);
    }
    if (st) return st;
    if (n == 0) {
        free(wav);
        return mer__errf(err, MER_E_FORMAT, "%s: zero-length audio", src);
    }
    mer_audio_clips(wav, n, MER_AGPT_SR, MER_AGPT_N_CLIPS, MER_AGPT_CLIP_S, s->clips);
    free(wav);
    return MER_OK;
}

// --- the stages of a sample -------------------------------------------------------------------------

/* Subtitle and media of sample i, up to CLIP's pixels and HuBERT's normalised clips (CPU only: runs on
 * the loading thread, the images over x->prep). */
static mer_status load(const infer_ctx *x, sample *s, size_t i, mer_err *err) {
    const char *name = x->names[i];
    s->subtitle = "";
    if (x->has_subs) {
        int64_t *r = mer__strmap_get(&x->sub_idx, name, strlen(name));
        if (r) {
            const char *sub = mer__csv_cell(&x->subs, (size_t)*r, (size_t)x->sub_col);
            size_t len = strlen(sub), bad = mer__utf8_check((const uint8_t *)sub, len);
            if (bad < len)
                return mer__errf(err, MER_E_FORMAT, "%s:%zu: the subtitle of %s has invalid UTF-8 at byte %zu of the field",
                                 x->p->subtitles, x->subs.lines[*r + 1], name, bad);
            s->subtitle = sub;
        }
    }
    char video[4096];
    snprintf(video, sizeof video, "%s/video/%s.mp4", x->p->data_dir, name);
    mer_status st;
    if (x->p->input_frame) {
        if (!exists(video)) return mer__errf(err, MER_E_NOTFOUND, "%s: missing", video);
#if MER_MEDIA
        st = load_frames(x, s, video, err);
#else
        st = mer__errf(err, MER_E_UNSUPPORTED, "%s: decoding video needs FFmpeg (this mer was built with MEDIA=0)", video);
#endif
    } else if (x->p->detect_faces) {
        if (!exists(video)) return mer__errf(err, MER_E_NOTFOUND, "%s: missing", video);
#if MER_MEDIA
        st = detect_faces(x, s, video, err);
#else
        st = mer__errf(err, MER_E_UNSUPPORTED, "%s: --detect-faces decodes video and needs FFmpeg (MEDIA=0 build)", video);
#endif
    } else {
        st = load_faces(x, s, name, err);
    }
    if (st || (st = load_audio(x, s, name, video, err))) return st;
    mer_hubert_normalize(s->clips, MER_AGPT_N_CLIPS, (size_t)CLIP_LEN, !x->p->per_clip_norm);
    return MER_OK;
}

/* CLIP on the 8 images and HuBERT on the 8 clips. */
static mer_status encode(const infer_ctx *x, sample *s, mer_err *err) {
    mer_status st = mer__agpt_clip(x->a, s->pixels, MER_AGPT_N_FRAMES, s->visual, err);
    if (!st) st = mer__agpt_hubert(x->a, s->clips, MER_AGPT_N_CLIPS, CLIP_LEN, x->p->hf5_hidden, s->audio, err);
    if (!st) s->encoded = 1;
    return st;
}

/* The fusion and the prompt embeddings (s->embd; mer_qwen2_embed reads the host copy of the table: safe
 * beside a running LLM). */
static mer_status prompt(const infer_ctx *x, sample *s, mer_err *err) {
    return mer__agpt_prompt(x->a, x->p->input_frame ? MER_INPUT_FRAME : MER_INPUT_FACE, s->subtitle, x->question,
                            s->visual, MER_AGPT_N_FRAMES, s->audio, MER_AGPT_N_CLIPS, x->p->max_new_tokens, &s->embd,
                            &s->n_tok, err);
}

/* The reference's sampling for sample i (seed + i) and its length limits. */
static mer_generate_params gen_params(const infer_ctx *x, size_t i) {
    mer_generate_params g = mer_generate_default_params();
    g.sampling.temperature = x->p->temperature;
    g.sampling.top_p = x->p->top_p;
    g.sampling.top_k = x->p->top_k;
    g.sampling.repeat_penalty = x->p->repeat_penalty;
    g.sampling.seed = x->p->seed + i;
    g.max_new_tokens = x->p->max_new_tokens;
    g.min_new_tokens = x->p->min_new_tokens;
    mer__agpt_gen_params(x->a, &g);
    return g;
}

static mer_visual_input input_of(const infer_ctx *x) { return x->p->input_frame ? MER_INPUT_FRAME : MER_INPUT_FACE; }

// --- one sample at a time (batch <= 1) ----------------------------------------------------------------

typedef struct single {
    infer_ctx *x;
    sample s;
} single;

static mer_status one(void *ud, size_t i, const char *name, mer_buf *out, mer_err *err) {
    single *o = ud;
    infer_ctx *x = o->x;
    sample *s = &o->s;
    (void)name;
    mer_status st;
    if ((st = load(x, s, i, err)) || (st = encode(x, s, err))) return st;
    mer_generate_params g = gen_params(x, i);
    return mer__agpt_answer(x->a, input_of(x), s->subtitle, x->question, s->visual, MER_AGPT_N_FRAMES, s->audio,
                            MER_AGPT_N_CLIPS, &g, out, err);
}

// --- batched: a loading thread ahead, continuous batching behind ------------------------------------

typedef struct ahead {
    infer_ctx *x;
    const size_t *todo;
    size_t n_todo;
    sample *ring;
    size_t cap;
    /* samples whose media the loader finished / that the encoding thread finished (encode_ahead) / that
     * the generator side released: consumed <= encoded <= produced <= consumed + cap */
    size_t produced, encoded, consumed;
    int stop, loader_done, encoder_done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* the generator side (the calling thread) */
    mer__agpt *a;
    mer_job_commit_fn commit;
    void *cctx;
    int lent;        /* ring[consumed % cap] was handed to the generator */
    double *t_start; /* per list index */
    mer_status fatal;
    mer_err fatal_err;
} ahead;

static void *loader(void *ud) {
    ahead *q = ud;
    for (size_t k = 0; k < q->n_todo; k++) {
        pthread_mutex_lock(&q->mu);
        while (!q->stop && q->produced - q->consumed >= q->cap) pthread_cond_wait(&q->cv, &q->mu);
        int stop = q->stop;
        sample *s = &q->ring[q->produced % q->cap];
        pthread_mutex_unlock(&q->mu);
        if (stop) break;
        s->index = q->todo[k];
        s->encoded = 0;
        memset(&s->err, 0, sizeof s->err);
        s->t_start = now_s();
        s->st = load(q->x, s, s->index, &s->err);
        pthread_mutex_lock(&q->mu);
        q->produced++;
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
    }
    pthread_mutex_lock(&q->mu);
    q->loader_done = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* With the encoders on the device, the second stage on a thread of its own (the encoders' device context
 * is used by this thread only): encoders, fusion and prompt embeddings of each loaded sample, in order,
 * while the loader reads the next samples' media. */
static void *encoder(void *ud) {
    ahead *q = ud;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (!q->stop && q->encoded == q->produced && !q->loader_done) pthread_cond_wait(&q->cv, &q->mu);
        int quit = q->stop || q->encoded == q->produced; /* stopped, or the loader is done and so are we */
        sample *s = &q->ring[q->encoded % q->cap];
        pthread_mutex_unlock(&q->mu);
        if (quit) break;
        if (!s->st && !(s->st = encode(q->x, s, &s->err))) s->st = prompt(q->x, s, &s->err);
        pthread_mutex_lock(&q->mu);
        q->encoded++;
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
    }
    pthread_mutex_lock(&q->mu);
    q->encoder_done = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* Gives the oldest prepared sample back to the loader. */
static void release(ahead *q) {
    sample *s = &q->ring[q->consumed % q->cap];
    free(s->embd);
    s->embd = NULL;
    s->n_tok = 0;
    pthread_mutex_lock(&q->mu);
    q->consumed++;
    q->lent = 0;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* The generator asks for the next prompt: the next prepared sample in list order, encoded and turned into
 * its prompt embeddings (unless the loader did it: encoders on the device). Samples that failed are
 * committed here. */
static int next_prompt(void *ud, mer_batch_request *req) {
    ahead *q = ud;
    if (q->lent) release(q); /* the generator has prefilled the last one */
    while (!q->fatal) {
        pthread_mutex_lock(&q->mu);
        const int two = q->x->encode_ahead;
        while (q->consumed == (two ? q->encoded : q->produced) && !(two ? q->encoder_done : q->loader_done))
            pthread_cond_wait(&q->cv, &q->mu);
        int empty = q->consumed == (two ? q->encoded : q->produced);
        pthread_mutex_unlock(&q->mu);
        if (empty) return 0;
        sample *s = &q->ring[q->consumed % q->cap];
        q->t_start[s->index] = s->t_start;
        if (!s->st && !s->encoded) s->st = encode(q->x, s, &s->err);
        if (!s->st && !s->embd) s->st = prompt(q->x, s, &s->err);
        if (!s->st) {
            req->index = s->index;
            req->ids = NULL;
            req->n_ids = 0;
            req->embd = s->embd;
            req->n_embd_rows = s->n_tok;
            req->params = gen_params(q->x, s->index);
            req->params.n_stop_strings = 0; /* "###" is applied to the ids afterwards (mer__agpt_answer_ids) */
            req->params.stop_strings = NULL;
            q->lent = 1;
            return 1;
        }
        q->fatal = q->commit(q->cctx, s->index, s->st, NULL, s->err.msg, now_s() - s->t_start, &q->fatal_err);
        release(q);
    }
    return 0;
}

static mer_status sample_done(void *ud, size_t i, mer_status st, const mer_generate_result *res, const char *msg,
                              mer_err *err) {
    ahead *q = ud;
    mer_buf out = {0};
    mer_err e = {0};
    if (st) snprintf(e.msg, sizeof e.msg, "%s", msg && msg[0] ? msg : mer_status_str(st));
    else st = mer__agpt_answer_ids(q->a, res->ids, res->n_ids, &out, &e);
    const char *text = st ? NULL : (out.data ? out.data : "");
    mer_status r = q->commit(q->cctx, i, st, text, e.msg, now_s() - q->t_start[i], err);
    mer__buf_free(&out);
    return r;
}

typedef struct batched {
    infer_ctx *x;
    mer_qwen2_batch *llm;
} batched;

static mer_status run_batched(void *ud, const size_t *todo, size_t n_todo, mer_job_commit_fn commit, void *cctx,
                              mer_err *err) {
    batched *bt = ud;
    infer_ctx *x = bt->x;
    ahead q;
    memset(&q, 0, sizeof q);
    q.x = x;
    q.a = x->a;
    q.todo = todo;
    q.n_todo = n_todo;
    q.commit = commit;
    q.cctx = cctx;
    /* ahead: a slot's worth of samples for every sequence, plus the one being prefilled and one loading */
    q.cap = (size_t)mer_qwen2_batch_n_slots(bt->llm) + 2;
    mer_status st = MER_OK;
    int sync_ok = 0;
    size_t n_names = 0;
    while (x->names[n_names]) n_names++;
    q.ring = calloc(q.cap, sizeof *q.ring);
    q.t_start = calloc(n_names ? n_names : 1, sizeof *q.t_start);
    if (!q.ring || !q.t_start) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < q.cap; k++)
        if ((st = sample_alloc(x, &q.ring[k], err))) goto done;
    if (pthread_mutex_init(&q.mu, NULL)) {
        st = mer__errf(err, MER_E_INTERNAL, "infer: pthread_mutex_init failed");
        goto done;
    }
    if (pthread_cond_init(&q.cv, NULL)) {
        pthread_mutex_destroy(&q.mu);
        st = mer__errf(err, MER_E_INTERNAL, "infer: pthread_cond_init failed");
        goto done;
    }
    sync_ok = 1;
    pthread_t th, th2;
    if (pthread_create(&th, NULL, loader, &q)) {
        st = mer__errf(err, MER_E_INTERNAL, "infer: cannot start the loading thread");
        goto done;
    }
    int two = x->encode_ahead && !pthread_create(&th2, NULL, encoder, &q);
    if (x->encode_ahead && !two) {
        st = mer__errf(err, MER_E_INTERNAL, "infer: cannot start the encoding thread");
    } else {
        st = mer_qwen2_generate_batch(bt->llm, next_prompt, sample_done, &q, err);
        if (!st && q.fatal) {
            st = q.fatal;
            if (err) *err = q.fatal_err;
        }
    }
    pthread_mutex_lock(&q.mu);
    q.stop = 1;
    pthread_cond_broadcast(&q.cv);
    pthread_mutex_unlock(&q.mu);
    pthread_join(th, NULL);
    if (two) pthread_join(th2, NULL);
done:
    if (sync_ok) {
        pthread_cond_destroy(&q.cv);
        pthread_mutex_destroy(&q.mu);
    }
    if (q.ring)
        for (size_t k = 0; k < q.cap; k++) sample_free(&q.ring[k]);
    free(q.ring);
    free(q.t_start);
    return st;
}

// --- the run -------------------------------------------------------------------------------------------

static const char *nz(const char *s) { return s ? s : ""; }

mer_status mer__infer_run_agpt(const mer_infer_params *p0, mer__agpt *a, const char *out_npz, mer_job_summary *summary,
                               mer_err *err) {
    memset(summary, 0, sizeof *summary);
    mer_infer_params p = *p0;
    char names_path[4096], subs_path[4096];
    if (!p.data_dir) return mer__errf(err, MER_E_ARG, "mer infer: --data DIR is required");
    if (!p.names) {
        snprintf(names_path, sizeof names_path, "%s/track_all_candidates.csv", p.data_dir);
        p.names = names_path;
    }
    if (!p.subtitles) {
        snprintf(subs_path, sizeof subs_path, "%s/subtitle_chieng.csv", p.data_dir);
        p.subtitles = subs_path;
    }
    infer_ctx x;
    memset(&x, 0, sizeof x);
    x.p = &p;
    x.a = a;
    x.question = p.question ? p.question : p.task == MER_TASK_DESCRIPTION ? MER_QUESTION_DESCRIPTION : MER_QUESTION_OV;
    /* on the device the loading thread runs the encoders too; MER_INFER_ENCODE_AHEAD=1 does the same on the
     * CPU (the tests run that thread layout without a GPU) */
    const char *ahead_env = getenv("MER_INFER_ENCODE_AHEAD");
    x.encode_ahead = mer__agpt_on_device(a) || (ahead_env && !strcmp(ahead_env, "1"));
    mer_label_table names = {0};
    const char **list = NULL;
    char *db = NULL, *config = NULL, *models = NULL;
    single o = {&x, {0}};
    mer_qwen2_batch *llm = NULL;
    mer_status st;
    if ((st = mer_label_table_read(p.names, "name", &names, err))) return st;
    if (exists(p.subtitles)) {
        mer_map m;
        if ((st = mer__map_open(p.subtitles, &m, err))) goto done;
        st = mer__csv_parse_lenient(p.subtitles, m.data, m.size, &x.subs, err);
        mer__map_close(&m);
        if (st) goto done;
        long jn = mer__csv_col(&x.subs, "name");
        x.sub_col = mer__csv_col(&x.subs, "english");
        if (jn < 0 || x.sub_col < 0) {
            st = mer__errf(err, MER_E_FORMAT, "%s:1: the subtitles need columns name and english", p.subtitles);
            goto done;
        }
        for (size_t r = 0; r < x.subs.n_rows; r++) {
            const char *nm = mer__csv_cell(&x.subs, r, (size_t)jn);
            if (mer__strmap_put(&x.sub_idx, nm, strlen(nm), (int64_t)r, NULL, NULL)) {
                st = mer__errf(err, MER_E_NOMEM, "out of memory");
                goto done;
            }
        }
        x.has_subs = 1;
    }
    list = calloc(names.n + 1, sizeof *list);
    size_t dl = strlen(out_npz) + 4;
    db = malloc(dl);
    if (!list || !db) { st = mer__errf(err, MER_E_NOMEM, "out of memory"); goto done; }
    snprintf(db, dl, "%s.db", out_npz);
    for (size_t i = 0; i < names.n; i++) list[i] = names.rows[i].name;
    x.names = list;
    /* up to one thread per image for the preprocessing */
    long n_prep = p.n_threads > 0 ? p.n_threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (n_prep < 1) n_prep = 1;
    if (n_prep > MER_AGPT_N_FRAMES) n_prep = MER_AGPT_N_FRAMES;
    if ((st = mer_threadpool_init((int)n_prep, &x.prep, err))) goto done;
    if (p.detect_faces && !p.input_frame) {
        if (!p.face_models) { st = mer__errf(err, MER_E_ARG, "mer infer: --detect-faces needs the face models folder"); goto done; }
        mer_face_params fp = mer_face_default_params();
        fp.n_threads = p.n_threads;
        if ((st = mer_face_load(p.face_models, &fp, &x.face, err))) goto done;
    }
    /* the models in the run's identity: the four parts, or the bundle (mer convert) */
    size_t cl = (p.bundle ? strlen(p.bundle) : strlen(nz(p.clip)) + strlen(nz(p.hubert)) + strlen(nz(p.llm)) +
                                                   strlen(nz(p.affectgpt))) +
                strlen(x.question) + 1024;
    models = malloc(cl);
    config = malloc(cl);
    if (!config || !models) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto done;
    }
    if (p.bundle) snprintf(models, cl, "\"model\":\"%s\"", p.bundle);
    else
        snprintf(models, cl, "\"clip\":\"%s\",\"hubert\":\"%s\",\"llm\":\"%s\",\"affectgpt\":\"%s\"", nz(p.clip),
                 nz(p.hubert), nz(p.llm), nz(p.affectgpt));
    /* batch is not part of it (the answers do not depend on it); a device run's answers are its own */
    char extra[128] = "";
    if (p.min_new_tokens > 1) snprintf(extra, sizeof extra, ",\"min_new_tokens\":%d", p.min_new_tokens);
    if (mer__agpt_on_device(a)) snprintf(extra + strlen(extra), sizeof extra - strlen(extra), ",\"device\":\"cuda\"");
    snprintf(config, cl,
             "{\"job\":\"infer\",%s,\"wtype\":\"%s\","
             "\"lora_scale\":%.17g,\"input\":\"%s\",\"question\":\"%s\",\"temperature\":%.17g,\"top_p\":%.17g,\"top_k\":%d,"
             "\"repeat_penalty\":%.17g,\"max_new_tokens\":%d,\"seed\":%llu,\"rgb_faces\":%d,\"per_clip_norm\":%d,\"hf5\":%d%s%s}",
             models, nz(p.wtype), p.lora_scale, p.input_frame ? "frame" : "face",
             x.question, p.temperature, p.top_p, p.top_k, p.repeat_penalty, p.max_new_tokens, (unsigned long long)p.seed,
             p.rgb_faces, p.per_clip_norm, p.hf5_hidden, p.detect_faces && !p.input_frame ? ",\"faces\":\"detected\"" : "",
             extra);
    mer_job_params jp = {db, config, "infer", p.progress, p.retry_failed};
    mer_job_stats js;
    int n_slots = p.batch < (int)names.n ? p.batch : (int)names.n;
    if (n_slots > 1) {
        mer_qwen2_ctx_params cp = mer_qwen2_ctx_default_params();
        cp.n_threads = p.n_threads;
        cp.n_ctx = 2048;
        mer__agpt_drop_llm_ctx(a); /* its KV cache (its device sequence) goes to the batch */
        if ((st = mer_qwen2_batch_init(a->llm, n_slots, &cp, &llm, err))) goto done;
        batched bt = {&x, llm};
        st = mer__job_run_batched(&jp, list, names.n, run_batched, &bt, &js, err);
    } else {
        if ((st = sample_alloc(&x, &o.s, err))) goto done;
        st = mer__job_run(&jp, list, names.n, one, &o, &js, err);
    }
    summary->n_total = js.n_total;
    summary->n_skipped = js.n_skipped;
    summary->n_ok = js.n_ok;
    summary->n_failed = js.n_failed;
    summary->seconds = js.seconds;
    if (!st) st = mer__job_write_outputs(db, config, out_npz, 0, list, names.n, err);
done:
    mer_qwen2_batch_free(llm);
    sample_free(&o.s);
    mer_face_free(x.face);
    mer_threadpool_free(x.prep);
    if (x.has_subs || x.subs.cells) mer__csv_free(&x.subs);
    mer__strmap_free(&x.sub_idx);
    free(list);
    free(db);
    free(config);
    free(models);
    mer_label_table_free(&names);
    return st;
}

mer_status mer_infer_run(const mer_infer_params *p, const char *out_npz, mer_job_summary *summary, mer_err *err) {
    memset(summary, 0, sizeof *summary);
    if (!p->data_dir) return mer__errf(err, MER_E_ARG, "mer infer: --data DIR is required");
    /* the names list is checked before the models load (a wrong path fails at once) */
    char names_path[4096];
    if (!p->names) snprintf(names_path, sizeof names_path, "%s/track_all_candidates.csv", p->data_dir);
    mer_label_table names = {0};
    mer_status st = mer_label_table_read(p->names ? p->names : names_path, "name", &names, err);
    mer_label_table_free(&names);
    if (st) return st;
    mer__agpt *a = NULL;
    st = mer__agpt_load(p, &a, err);
    if (!st) st = mer__infer_run_agpt(p, a, out_npz, summary, err);
    mer__agpt_free(a);
    return st;
}
