#!/usr/bin/env bash
# bench/gpu_enc.sh - the device encoders (CLIP ViT-L/14, chinese-hubert-large) on the GPU machine: builds
# with CUDA=1 (media left out; Debian -dev libraries carried in .gpu-deps, as bench/gpu.sh), runs
# test_cuda_enc (kernels, tiny fixtures vs HF and the CPU encoders, real shapes vs the CPU), the speed
# benchmark (bench_gpu_enc speed), HF transformers' timings on the same card (gpu_enc_ref.py bench), and
# the real-shape parity with HF (gpu_enc_ref.py export, then bench_gpu_enc parity).
#
#   bench/gpu_enc.sh [OUTDIR]     (OUTDIR defaults to $OUT, else bench-gpu-out)
#
# Environment: MER_GPU_BIN=DIR uses binaries built elsewhere (DIR/tests/test_cuda_enc,
# DIR/bench/bench_gpu_enc); MER_GPU_ENC_STEPS picks among "test ours hf parity" (default: all).
# Files written to OUTDIR: gpu_enc.log (everything), test_cuda_enc.log, enc_ours.txt, enc_hf.json,
# enc_parity.txt.
set -u
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-bench-gpu-out}}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu_enc.log
STEPS=${MER_GPU_ENC_STEPS:-test ours hf parity}
. scripts/gpu/env.sh
say() { echo "== $*" | tee -a "$LOG"; }
has() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }

say "$(date -u +%FT%TZ) bench/gpu_enc.sh on $(hostname)"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,driver_version --format=csv >>"$LOG" 2>&1 || true

BIN=${MER_GPU_BIN:-}
if [ -z "$BIN" ]; then
    BIN=${MER_GPU_BUILD:-build-gpu}
    say "build ($BIN)"
    t0=$(date +%s)
    mer_gpu_make "$BIN" "$BIN/libmer.a" "$BIN/tests/test_cuda_enc" "$BIN/bench/bench_gpu_enc" >>"$LOG" 2>&1 ||
        { say "build failed"; grep -E "error|Error" "$LOG" | tail -20; exit 1; }
    say "build took $(( $(date +%s) - t0 )) s"
fi

if has test; then
    say "test_cuda_enc"
    timeout ${MER_GPU_ENC_TEST_TIMEOUT:-100} "$BIN/tests/test_cuda_enc" >"$OUTDIR/test_cuda_enc.log" 2>&1
    echo "exit $?" >>"$OUTDIR/test_cuda_enc.log"
    grep -E "FAIL|SKIP|passed|rel err|device|exit" "$OUTDIR/test_cuda_enc.log" | head -60 | tee -a "$LOG"
fi

if has ours; then
    say "mer: bench_gpu_enc speed"
    timeout 60 "$BIN/bench/bench_gpu_enc" speed >"$OUTDIR/enc_ours.txt" 2>>"$LOG"
    echo "exit $?" >>"$OUTDIR/enc_ours.txt"
    tee -a "$LOG" <"$OUTDIR/enc_ours.txt"
    say "mer: the same with cuBLASLt's first algorithm (MER_CUDA_ENC_TUNE=0)"
    MER_CUDA_ENC_TUNE=0 timeout 60 "$BIN/bench/bench_gpu_enc" speed 2>>"$LOG" | grep -E "RESULT|part" | tee -a "$LOG"
fi

if has hf; then
    say "HF transformers: gpu_enc_ref.py bench"
    timeout 70 python3 bench/gpu_enc_ref.py bench "$OUTDIR/enc_hf.json" >>"$LOG" 2>&1
    echo "exit $?" | tee -a "$LOG"
    cat "$OUTDIR/enc_hf.json" 2>/dev/null | tee -a "$LOG"
fi

if has parity; then
    say "real-shape parity with HF (export, then mer)"
    MID=${TMPDIR:-/tmp}/mer_enc_parity
    timeout 70 python3 bench/gpu_enc_ref.py export "$MID" >>"$LOG" 2>&1 &&
        timeout 45 "$BIN/bench/bench_gpu_enc" parity "$MID" >"$OUTDIR/enc_parity.txt" 2>>"$LOG"
    echo "exit $?" >>"$OUTDIR/enc_parity.txt"
    tee -a "$LOG" <"$OUTDIR/enc_parity.txt"
    rm -rf "$MID"
fi
say "done"
