/* test_infer.c - `mer infer` on a small MER2025-layout dataset made here with the ffmpeg CLI, espeak-ng
 * and numpy: 50 samples with real media (mp4 video with AAC audio, espeak WAV speech, OpenFace-style
 * face arrays), five of them broken (missing video, zero-length audio, corrupt mp4, a face array of
 * the wrong shape, a subtitle with invalid UTF-8). The run records those five as errors and finishes;
 * a run killed with SIGKILL at random points several times and then completed holds every name exactly
 * once with the same results as an uninterrupted run (greedy decoding). Models: the tiny AffectGPT. */
#include "test.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define D MER_TEST_TMP "/infer"
#define AG FIXTURES "/models/affectgpt_tiny"

static char mer[512];

static int have_tools(void) {
    return access("/usr/bin/python3", X_OK) == 0 && system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") == 0 &&
           system("ffmpeg -version >/dev/null 2>&1") == 0 && system("espeak-ng --version >/dev/null 2>&1") == 0;
}

static void infer_argv(char **argv, const char *out, const char *input) {
    int k = 0;
    argv[k++] = mer; argv[k++] = "infer";
    argv[k++] = "--clip"; argv[k++] = FIXTURES "/models/clip_tiny";
    argv[k++] = "--hubert"; argv[k++] = FIXTURES "/models/hubert_tiny";
    argv[k++] = "--llm"; argv[k++] = AG "/llm";
    argv[k++] = "--affectgpt"; argv[k++] = AG "/checkpoint_000035_loss_0.000.pth";
    argv[k++] = "--data"; argv[k++] = D "/data";
    argv[k++] = "--input"; argv[k++] = (char *)input;
    argv[k++] = "--temp"; argv[k++] = "0";
    argv[k++] = "--max-new-tokens"; argv[k++] = "6";
    argv[k++] = "--threads"; argv[k++] = "1";
    argv[k++] = "--quiet";
    argv[k++] = "-o"; argv[k++] = (char *)out;
    argv[k] = NULL;
}

static pid_t spawn_argv(char **argv) {
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(126);
        execv(mer, argv);
        _exit(127);
    }
    return pid;
}

static pid_t spawn(const char *out, const char *input) {
    char *argv[40];
    infer_argv(argv, out, input);
    return spawn_argv(argv);
}

static int wait_rc(pid_t pid) {
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    b[fread(b, 1, (size_t)n, f)] = 0;
    fclose(f);
    return b;
}

static void run(void) {
    const char *b = getenv("MER_BUILD");
    snprintf(mer, sizeof mer, "%s/mer", b ? b : "build");
    if (!have_tools()) {
        printf("SKIP test_infer: needs /usr/bin/python3 with numpy, ffmpeg and espeak-ng\n");
        return;
    }
    int rc = system(
        "set -e; rm -rf " D "; mkdir -p " D "/data/video " D "/data/audio " D "/data/openface_face; cd " D "/data;"
        "ffmpeg -loglevel error -f lavfi -i testsrc=size=160x120:rate=10 -f lavfi -i sine=frequency=330:sample_rate=22050"
        " -t 2.6 -c:v mpeg4 -c:a aac -shortest video/base.mp4;"
        "espeak-ng -w audio/base.wav 'I cannot believe you did that, I am so happy for you.';"
        "/usr/bin/python3 - <<'EOF'\n"
        "import numpy as np, os, shutil\n"
        "rng = np.random.default_rng(3)\n"
        "faces = rng.integers(0, 256, (6, 112, 112, 3), dtype=np.uint8)\n"
        "names = ['s%03d' % i for i in range(50)]\n"
        "open('track_all_candidates.csv', 'w').write('name\\n' + ''.join(n + '\\n' for n in names))\n"
        "rows = []\n"
        "for i, n in enumerate(names):\n"
        "    os.makedirs('openface_face/' + n, exist_ok=True)\n"
        "    np.save('openface_face/%s/%s.npy' % (n, n), np.roll(faces, i, axis=0))\n"
        "    if n != 's010': shutil.copy('video/base.mp4', 'video/%s.mp4' % n)\n"
        "    shutil.copy('audio/base.wav', 'audio/%s.wav' % n)\n"
        "    rows.append(n.encode() + b',,\"Subtitle number ' + str(i).encode() + b', okay.\"\\n')\n"
        "rows[45] = b's045,,\"bad \\xff\\xfe bytes\"\\n'\n"
        "open('subtitle_chieng.csv', 'wb').write(b'name,chinese,english\\n' + b''.join(rows))\n"
        "np.save('openface_face/s040/s040.npy', np.zeros((4, 112, 112), np.uint8))\n"
        "shutil.rmtree('openface_face/s010')\n"
        "open('audio/s020.wav', 'wb').write(open('audio/base.wav', 'rb').read()[:44])\n"
        "d = open('video/base.mp4', 'rb').read(); open('video/s030.mp4', 'wb').write(d[:200] + bytes(500))\n"
        "os.remove('audio/s030.wav')\n"
        "os.remove('video/base.mp4'); os.remove('audio/base.wav')\n"
        "EOF");
    CHECK_MSG(rc == 0, "dataset set-up failed (%d)", rc);
    if (rc) return;

    /* uninterrupted run */
    CHECK_EQ_INT(wait_rc(spawn(D "/ref.npz", "face")), 0);
    char *ref = slurp(D "/ref.csv");
    CHECK(ref != NULL);
    if (!ref) return;
    size_t lines = 0, fails = 0;
    for (char *c = ref; *c; c++) lines += *c == '\n';
    CHECK_EQ_INT(lines, 51);
    const char *bad[] = {"s010,0,", "s020,0,", "s030,0,", "s040,0,", "s045,0,"};
    for (size_t k = 0; k < 5; k++) {
        CHECK_MSG(strstr(ref, bad[k]) != NULL, "%s should be a recorded failure", bad[k]);
        fails += strstr(ref, bad[k]) != NULL;
    }
    CHECK(strstr(ref, "s011,1,") && strstr(ref, "s049,1,"));
    CHECK(strstr(ref, "zero-length audio") && strstr(ref, "invalid UTF-8") && strstr(ref, "s040.npy"));

    /* killed several times at random points, then completed */
    srand((unsigned)time(NULL));
    int kills = 0;
    for (int round = 0; round < 4; round++) {
        pid_t pid = spawn(D "/k.npz", "face");
        usleep(150000 + rand() % 250000);
        if (kill(pid, SIGKILL) == 0) kills++;
        wait_rc(pid);
    }
    CHECK(kills >= 3);
    CHECK_EQ_INT(wait_rc(spawn(D "/k.npz", "face")), 0);
    char *k = slurp(D "/k.csv");
    CHECK_MSG(k && !strcmp(k, ref), "the resumed run's results differ from the uninterrupted run's");
    free(k);
    /* numpy reads the result npz: 45 answers */
    rc = system("/usr/bin/python3 -c \"import numpy as np; d=np.load('" D "/k.npz', allow_pickle=True)['name2reason'].item(); "
                "assert len(d)==45 and 's010' not in d and all(isinstance(v, str) for v in d.values())\"");
    CHECK(rc == 0);

    /* the frame config on the same data: the video's audio stream is used where there is no wav */
    CHECK_EQ_INT(wait_rc(spawn(D "/frame.npz", "frame")), 0);
    char *f = slurp(D "/frame.csv");
    CHECK(f && strstr(f, "s030,0,") && strstr(f, "s010,0,") && strstr(f, "s011,1,"));
    free(f);
    free(ref);

    /* --detect-faces: crops by the built-in detector equal the same crops given as OpenFace-style npy
     * files written by `mer faces` */
    if (access("models/face-api/tiny_face_detector_model-weights_manifest.json", R_OK) ||
        access("models/face-api/demo/sample1.jpg", R_OK)) {
        printf("SKIP --detect-faces: face models or demo photos not installed (scripts/deps.sh)\n");
        return;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "set -e; d=" D "/faces; rm -rf $d; mkdir -p $d/video $d/audio $d/openface_face/f1; cd $d;"
             "ffmpeg -loglevel error -loop 1 -i ../../../../models/face-api/demo/sample1.jpg -f lavfi -i sine=frequency=200:sample_rate=16000"
             " -t 2 -vf scale=480:-2 -c:v libx264 -pix_fmt yuv420p -c:a aac -shortest video/f1.mp4;"
             "cp video/f1.mp4 video/nf.mp4 2>/dev/null; ffmpeg -loglevel error -y -f lavfi -i color=c=gray:size=160x120:rate=10"
             " -f lavfi -i sine=frequency=200:sample_rate=16000 -t 2 -c:v libx264 -pix_fmt yuv420p -c:a aac -shortest video/nf.mp4;"
             "printf 'name\\nf1\\nnf\\n' > track_all_candidates.csv; cd - >/dev/null;"
             "%s faces " D "/faces/video/f1.mp4 -o " D "/faces/openface_face/f1/f1.npy --frames 8 >/dev/null 2>&1", mer);
    CHECK_MSG(system(cmd) == 0, "set-up of the face clip failed");
    char *argv[48];
    infer_argv(argv, D "/det.npz", "face");
    int na = 0;
    while (argv[na]) na++;
    argv[11] = D "/faces"; /* the value of --data */
    argv[na++] = "--detect-faces";
    argv[na] = NULL;
    pid_t pid = spawn_argv(argv);
    CHECK_EQ_INT(wait_rc(pid), 0);
    infer_argv(argv, D "/npyfaces.npz", "face");
    argv[11] = D "/faces";
    pid = spawn_argv(argv);
    CHECK_EQ_INT(wait_rc(pid), 0);
    char *det = slurp(D "/det.csv"), *npy = slurp(D "/npyfaces.csv");
    CHECK_MSG(det && strstr(det, "f1,1,") && strstr(det, "nf,0,") && strstr(det, "no face found"), "detect-faces results: %s", det ? det : "(none)");
    /* the f1 rows agree (nf has no npy file: its error differs) */
    char *ra = det ? strstr(det, "f1,") : NULL, *rb = npy ? strstr(npy, "f1,") : NULL;
    CHECK(ra && rb && strcspn(ra, "\n") == strcspn(rb, "\n") && !strncmp(ra, rb, strcspn(ra, "\n")));
    free(det);
    free(npy);
}
