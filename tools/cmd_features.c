/* cmd_features.c - `mer features`: AffectGPT's CLIP and HuBERT features of images, face crops or audio,
 * written as a numpy-readable .npz. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char *HELP =
    "usage: mer features [--clip DIR] [--hubert DIR] (--image FILE... | --faces FILE.npy) [--audio FILE.wav]\n"
    "                    -o OUT.npz [--layer N] [--threads N] [--device auto|cpu|cuda] [--rgb-faces]\n"
    "                    [--per-clip-norm] [--hf5-hidden]\n"
    "\n"
    "Runs AffectGPT's frozen encoders with the reference's preprocessing and writes float32 arrays\n"
    "`visual` [n, 768] and/or `audio` [8, 1024] (for CLIP ViT-L/14 and chinese-hubert-large) to OUT.npz.\n"
    "\n"
    "  --clip DIR        CLIP checkpoint: HF folder (config.json + model.safetensors or pytorch_model.bin),\n"
    "                    or a checkpoint file with config.json beside it (needed for --image / --faces)\n"
    "  --hubert DIR      HuBERT checkpoint, likewise (needed for --audio)\n"
    "  --image FILE...   image files (JPEG, PNG, BMP, ...): one feature row each, through HF's CLIP\n"
    "                    processor (shortest side to 224 with PIL bicubic, centre crop 224, CLIP mean/std)\n"
    "  --faces FILE.npy  OpenFace face crops, uint8 [n, H, W, 3] BGR: 8 rows, crops floor(i*n/8) resized to\n"
    "                    224 with cv2's bilinear resize, kept BGR as the reference does\n"
    "  --audio FILE.wav  a WAV file (PCM 8/16/24/32-bit or float, any rate and channels): each channel\n"
    "                    resampled to 16 kHz (torchaudio's windowed sinc), averaged; 8 clips of 2 s at\n"
    "                    i*max(D-2,0)/7 s (zero-padded), normalised jointly over the 8 clips: 8 rows\n"
    "  -o OUT.npz        output (written atomically)\n"
    "  --layer N         instead of the AffectGPT features: the mean over tokens (CLIP) / time (HuBERT) of\n"
    "                    hidden state N (0 = embeddings, L = last block), hidden_size wide\n"
    "  --threads N       CPU threads (default: all)\n"
    "  --device D        auto (default: the GPU when there is one), cpu or cuda: on cuda both encoders run\n"
    "                    on the GPU in bf16, images in batches of 8 and the 8 audio clips as one batch\n"
    "  --rgb-faces       convert the BGR face crops to RGB first (the reference does not)\n"
    "  --per-clip-norm   normalise each audio clip alone (the reference normalises the 8 jointly)\n"
    "  --hf5-hidden      HuBERT hidden states as transformers >= 5 lists them (the reference ran 4.x)\n"
    "\n"
    "Video input (--video: 8 frames and the audio track decoded with FFmpeg) belongs to the media\n"
    "pipeline and is not part of this command; `mer infer` reads MER2025's videos.\n";

int mer_cmd_features(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    mer_encoders_params p = mer_encoders_default_params();
    const char *faces = NULL, *audio = NULL, *out_path = NULL, *layer_s = NULL, *threads_s = NULL,
               *device = NULL;
    const char **images = calloc((size_t)argc, sizeof *images);
    int n_images = 0, rc = 0;
    if (!images) return cli_fail("features", "out of memory");
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--clip", &p.clip)) || (r = cli_opt(argc, argv, &i, "--hubert", &p.hubert)) ||
            (r = cli_opt(argc, argv, &i, "--faces", &faces)) || (r = cli_opt(argc, argv, &i, "--audio", &audio)) ||
            (r = cli_opt(argc, argv, &i, "-o", &out_path)) || (r = cli_opt(argc, argv, &i, "--layer", &layer_s)) ||
            (r = cli_opt(argc, argv, &i, "--threads", &threads_s)) || (r = cli_opt(argc, argv, &i, "--device", &device))) {
            if (r < 0) {
                rc = cli_fail("features", "%s needs a value", argv[i]);
                goto done;
            }
        } else if (!strcmp(argv[i], "--image")) {
            while (i + 1 < argc && argv[i + 1][0] != '-') images[n_images++] = argv[++i];
            if (!n_images) {
                rc = cli_fail("features", "--image needs at least one file");
                goto done;
            }
        } else if (!strcmp(argv[i], "--rgb-faces")) p.rgb_faces = 1;
        else if (!strcmp(argv[i], "--per-clip-norm")) p.per_clip_norm = 1;
        else if (!strcmp(argv[i], "--hf5-hidden")) p.hf5_hidden = 1;
        else if (!strcmp(argv[i], "--video")) {
            rc = cli_fail("features", "--video is not handled by this command (media pipeline); use --faces/--image and "
                                      "--audio, or `mer infer`");
            goto done;
        } else {
            rc = cli_fail("features", "unknown option '%s' (see mer features --help)", argv[i]);
            goto done;
        }
    }
    long v;
    if (layer_s) {
        if (cli_parse_long(layer_s, &v) || v < 0 || v > 4096) {
            rc = cli_fail("features", "--layer: '%s' is not a layer index", layer_s);
            goto done;
        }
        p.layer = (int)v;
    }
    if (threads_s) {
        if (cli_parse_long(threads_s, &v) || v < 0 || v > 4096) {
            rc = cli_fail("features", "--threads: '%s' is not a thread count", threads_s);
            goto done;
        }
        p.n_threads = (int)v;
    }
    if (device) {
        mer_err derr = {0};
        if (mer_device_parse(device, &p.device, &derr)) {
            rc = cli_fail_err("features", &derr);
            goto done;
        }
    }
    if (!out_path) {
        rc = cli_fail("features", "-o OUT.npz is required (see mer features --help)");
        goto done;
    }
    if (!n_images && !faces && !audio) {
        rc = cli_fail("features", "nothing to encode: give --image, --faces or --audio");
        goto done;
    }
    if (n_images && faces) {
        rc = cli_fail("features", "--image and --faces both give the visual features: choose one");
        goto done;
    }
    if ((n_images || faces) && !p.clip) {
        rc = cli_fail("features", "--clip DIR is required for --image / --faces");
        goto done;
    }
    if (audio && !p.hubert) {
        rc = cli_fail("features", "--hubert DIR is required for --audio");
        goto done;
    }
    if (!(n_images || faces)) p.clip = NULL; /* load only what is used */
    if (!audio) p.hubert = NULL;
    mer_err err = {0};
    mer_encoders *e = NULL;
    float *vis = NULL, *aud = NULL;
    int n_vis = 0, dv = 0, da = 0;
    if (mer_encoders_open(&p, &e, &err)) {
        rc = cli_fail_err("features", &err);
        goto done;
    }
    dv = mer_encoders_visual_dim(e);
    da = mer_encoders_audio_dim(e);
    if (n_images || faces) {
        n_vis = faces ? 8 : n_images;
        vis = malloc((size_t)n_vis * dv * sizeof(float));
        if (!vis || (faces ? mer_encoders_faces(e, faces, vis, &err) : mer_encoders_images(e, images, n_images, vis, &err))) {
            rc = vis ? cli_fail_err("features", &err) : cli_fail("features", "out of memory");
            goto done2;
        }
    }
    if (audio) {
        aud = malloc((size_t)8 * da * sizeof(float));
        if (!aud || mer_encoders_wav(e, audio, aud, &err)) {
            rc = aud ? cli_fail_err("features", &err) : cli_fail("features", "out of memory");
            goto done2;
        }
    }
    if (mer_features_npz_write(out_path, vis, n_vis, dv, aud, 8, da, &err)) {
        rc = cli_fail_err("features", &err);
        goto done2;
    }
    printf("%s:", out_path);
    if (vis) printf(" visual [%d, %d]", n_vis, dv);
    if (aud) printf(" audio [8, %d]", da);
    printf("\n");
done2:
    free(vis);
    free(aud);
    mer_encoders_free(e);
done:
    free(images);
    return rc;
}
