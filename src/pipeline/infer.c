/* infer.c - `mer infer`: AffectGPT over a MER2025-layout dataset on the resumable job runner. Per
 * sample: the subtitle, 8 face crops (openface_face/<name>/<name>.npy) or 8 video frames
 * (video/<name>.mp4, decoded at 224x224), 8 audio clips of 2 s (audio/<name>.wav, else the video's
 * audio), then features, fusion and the answer (pipeline/agpt.c). Missing or corrupt media is a
 * per-sample error recorded in the store; the run goes on. */
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

#include <string.h>
#include <sys/stat.h>

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
    uint8_t *imgs;   /* [8][224][224][3] */
    float *clips;    /* [8][32000] */
    float *visual;   /* [8][n_visual] */
    float *audio;    /* [8][n_audio] */
} infer_ctx;

static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The 8 crops AffectGPT takes from n face crops [n][H][W][3] (BGR): the frame rule over n, each resized
 * to 224 with cv2's INTER_LINEAR, optionally turned to RGB. */
static mer_status faces_to_imgs(infer_ctx *x, const uint8_t *faces, int64_t n, int H, int W, mer_err *err) {
    int64_t idx[MER_AGPT_N_FRAMES];
    mer__frame_indices(n, MER_AGPT_N_FRAMES, idx);
    size_t fsz = (size_t)H * W * 3;
    for (int i = 0; i < MER_AGPT_N_FRAMES; i++) {
        uint8_t *dst = x->imgs + (size_t)i * 224 * 224 * 3;
        mer_status st = mer_resize_cv_linear(faces + (size_t)idx[i] * fsz, W, H, 3, dst, 224, 224, err);
        if (st) return st;
        if (x->p->rgb_faces)
            for (size_t k = 0; k < (size_t)224 * 224; k++) {
                uint8_t t = dst[3 * k];
                dst[3 * k] = dst[3 * k + 2];
                dst[3 * k + 2] = t;
            }
    }
    return MER_OK;
}

/* 8 face crops from the OpenFace npy: uint8 [n, H, W, 3] BGR. */
static mer_status load_faces(infer_ctx *x, const char *name, mer_err *err) {
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
    st = faces_to_imgs(x, a.data, a.shape[0], (int)a.shape[1], (int)a.shape[2], err);
done:
    mer__map_close(&m);
    return st;
}

#if MER_MEDIA
/* Face crops found in the video by the built-in detector, in place of OpenFace's npy. */
static mer_status detect_faces(infer_ctx *x, const char *video, mer_err *err) {
    uint8_t *crops = NULL;
    size_t n = 0;
    mer_status st = mer_face_video_crops(x->face, video, MER_AGPT_N_FRAMES, 112, &crops, &n, err);
    if (!st && n == 0) st = mer__errf(err, MER_E_NOTFOUND, "%s: no face found in the sampled frames", video);
    if (!st) st = faces_to_imgs(x, crops, (int64_t)n, 112, 112, err);
    free(crops);
    return st;
}

static mer_status load_frames(infer_ctx *x, const char *video, mer_err *err) {
    mer_video *v = NULL;
    mer_status st = mer_video_open(video, &v, err);
    if (st) return st;
    int64_t idx[MER_AGPT_N_FRAMES];
    const mer_video_info *vi = mer_video_get_info(v);
    if (vi->n_frames < 1) {
        st = mer__errf(err, MER_E_FORMAT, "%s: the video has no frames", video);
    } else {
        mer__frame_indices(vi->n_frames, MER_AGPT_N_FRAMES, idx);
        st = mer_video_read(v, idx, MER_AGPT_N_FRAMES, 224, 224, x->imgs, err);
    }
    mer_video_close(v);
    return st;
}

#endif

/* 16 kHz mono: a .wav through mer's WAV reader (torchaudio's scaling and sinc resampling, as the
 * reference), anything else (the video's audio stream) through FFmpeg. */
static mer_status load_audio(infer_ctx *x, const char *name, const char *video, mer_err *err) {
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
    mer_audio_clips(wav, n, MER_AGPT_SR, MER_AGPT_N_CLIPS, MER_AGPT_CLIP_S, x->clips);
    free(wav);
    return MER_OK;
}

static mer_status one(void *ud, size_t i, const char *name, mer_buf *out, mer_err *err) {
    infer_ctx *x = ud;
    const char *subtitle = "";
    if (x->has_subs) {
        int64_t *r = mer__strmap_get(&x->sub_idx, name, strlen(name));
        if (r) {
            subtitle = mer__csv_cell(&x->subs, (size_t)*r, (size_t)x->sub_col);
            size_t len = strlen(subtitle), bad = mer__utf8_check((const uint8_t *)subtitle, len);
            if (bad < len)
                return mer__errf(err, MER_E_FORMAT, "%s:%zu: the subtitle of %s has invalid UTF-8 at byte %zu of the field",
                                 x->p->subtitles, x->subs.lines[*r + 1], name, bad);
        }
    }
    char video[4096];
    snprintf(video, sizeof video, "%s/video/%s.mp4", x->p->data_dir, name);
    mer_status st;
    if (x->p->input_frame) {
        if (!exists(video)) return mer__errf(err, MER_E_NOTFOUND, "%s: missing", video);
#if MER_MEDIA
        st = load_frames(x, video, err);
#else
        st = mer__errf(err, MER_E_UNSUPPORTED, "%s: decoding video needs FFmpeg (this mer was built with MEDIA=0)", video);
#endif
    } else if (x->p->detect_faces) {
        if (!exists(video)) return mer__errf(err, MER_E_NOTFOUND, "%s: missing", video);
#if MER_MEDIA
        st = detect_faces(x, video, err);
#else
        st = mer__errf(err, MER_E_UNSUPPORTED, "%s: --detect-faces decodes video and needs FFmpeg (MEDIA=0 build)", video);
#endif
    } else {
        st = load_faces(x, name, err);
    }
    if (st || (st = load_audio(x, name, video, err))) return st;
    const uint8_t *imgs[MER_AGPT_N_FRAMES];
    for (int k = 0; k < MER_AGPT_N_FRAMES; k++) imgs[k] = x->imgs + (size_t)k * 224 * 224 * 3;
    if ((st = mer__agpt_visual(x->a, imgs, 224, 224, MER_AGPT_N_FRAMES, x->visual, err)) ||
        (st = mer__agpt_audio(x->a, x->clips, MER_AGPT_N_CLIPS, (long)MER_AGPT_SR * MER_AGPT_CLIP_S, x->p->per_clip_norm,
                              x->p->hf5_hidden, x->audio, err)))
        return st;
    mer_generate_params g = mer_generate_default_params();
    g.sampling.temperature = x->p->temperature;
    g.sampling.top_p = x->p->top_p;
    g.sampling.top_k = x->p->top_k;
    g.sampling.repeat_penalty = x->p->repeat_penalty;
    g.sampling.seed = x->p->seed + i;
    g.max_new_tokens = x->p->max_new_tokens;
    return mer__agpt_answer(x->a, x->p->input_frame ? MER_INPUT_FRAME : MER_INPUT_FACE, subtitle, x->question, x->visual,
                            MER_AGPT_N_FRAMES, x->audio, MER_AGPT_N_CLIPS, &g, out, err);
}

mer_status mer_infer_run(const mer_infer_params *p0, const char *out_npz, mer_job_summary *summary, mer_err *err) {
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
    x.question = p.question ? p.question : p.task == MER_TASK_DESCRIPTION ? MER_QUESTION_DESCRIPTION : MER_QUESTION_OV;
    mer_label_table names = {0};
    const char **list = NULL;
    char *db = NULL, *config = NULL;
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
    list = calloc(names.n ? names.n : 1, sizeof *list);
    size_t dl = strlen(out_npz) + 4;
    db = malloc(dl);
    if (!list || !db) { st = mer__errf(err, MER_E_NOMEM, "out of memory"); goto done; }
    snprintf(db, dl, "%s.db", out_npz);
    for (size_t i = 0; i < names.n; i++) list[i] = names.rows[i].name;
    if ((st = mer__agpt_load(&p, &x.a, err))) goto done;
    if (p.detect_faces && !p.input_frame) {
        if (!p.face_models) { st = mer__errf(err, MER_E_ARG, "mer infer: --detect-faces needs the face models folder"); goto done; }
        mer_face_params fp = mer_face_default_params();
        fp.n_threads = p.n_threads;
        if ((st = mer_face_load(p.face_models, &fp, &x.face, err))) goto done;
    }
    x.imgs = malloc((size_t)MER_AGPT_N_FRAMES * 224 * 224 * 3);
    x.clips = malloc((size_t)MER_AGPT_N_CLIPS * MER_AGPT_SR * MER_AGPT_CLIP_S * sizeof(float));
    x.visual = malloc((size_t)MER_AGPT_N_FRAMES * x.a->n_visual * sizeof(float));
    x.audio = malloc((size_t)MER_AGPT_N_CLIPS * x.a->n_audio * sizeof(float));
    /* the models in the run's identity: the four parts, or the bundle (mer convert) */
    size_t cl = (p.bundle ? strlen(p.bundle) : strlen(p.clip) + strlen(p.hubert) + strlen(p.llm) + strlen(p.affectgpt)) +
                strlen(x.question) + 1024;
    char *models = malloc(cl);
    config = malloc(cl);
    if (!x.imgs || !x.clips || !x.visual || !x.audio || !config || !models) {
        free(models);
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto done;
    }
    if (p.bundle) snprintf(models, cl, "\"model\":\"%s\"", p.bundle);
    else
        snprintf(models, cl, "\"clip\":\"%s\",\"hubert\":\"%s\",\"llm\":\"%s\",\"affectgpt\":\"%s\"", p.clip, p.hubert,
                 p.llm, p.affectgpt);
    snprintf(config, cl,
             "{\"job\":\"infer\",%s,\"wtype\":\"%s\","
             "\"lora_scale\":%.17g,\"input\":\"%s\",\"question\":\"%s\",\"temperature\":%.17g,\"top_p\":%.17g,\"top_k\":%d,"
             "\"repeat_penalty\":%.17g,\"max_new_tokens\":%d,\"seed\":%llu,\"rgb_faces\":%d,\"per_clip_norm\":%d,\"hf5\":%d%s}",
             models, p.wtype ? p.wtype : "", p.lora_scale, p.input_frame ? "frame" : "face",
             x.question, p.temperature, p.top_p, p.top_k, p.repeat_penalty, p.max_new_tokens, (unsigned long long)p.seed,
             p.rgb_faces, p.per_clip_norm, p.hf5_hidden, p.detect_faces && !p.input_frame ? ",\"faces\":\"detected\"" : "");
    free(models);
    mer_job_params jp = {db, config, "infer", p.progress, p.retry_failed};
    mer_job_stats js;
    st = mer__job_run(&jp, list, names.n, one, &x, &js, err);
    summary->n_total = js.n_total;
    summary->n_skipped = js.n_skipped;
    summary->n_ok = js.n_ok;
    summary->n_failed = js.n_failed;
    summary->seconds = js.seconds;
    if (!st) st = mer__job_write_outputs(db, config, out_npz, 0, list, names.n, err);
done:
    mer__agpt_free(x.a);
    mer_face_free(x.face);
    free(x.imgs);
    free(x.clips);
    free(x.visual);
    free(x.audio);
    if (x.has_subs || x.subs.cells) mer__csv_free(&x.subs);
    mer__strmap_free(&x.sub_idx);
    free(list);
    free(db);
    free(config);
    mer_label_table_free(&names);
    return st;
}
