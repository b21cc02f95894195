#!/usr/bin/env bash
# bench/gpu.sh - the CUDA backend on the GPU machine, in one go: builds mer with CUDA=1 (media left out;
# the Debian -dev libraries carried in .gpu-deps, see scripts/gpu/prep_deps.sh), runs test_cuda (kernels
# and the tiny Qwen2 fixtures against HF), checks parity with HF transformers at the Qwen2.5-7B widths,
# benchmarks mer (ceilings, decode matmuls, the 7B-shape model, a 10,000-step leak check), benchmarks HF
# transformers on the same card in the same run, and prints a table.
#
#   bench/gpu.sh [OUTDIR]          (from anywhere; OUTDIR defaults to $OUT, else bench-gpu-out)
#
# Environment: MER_GPU_BIN=DIR uses binaries built elsewhere (DIR/tests/test_cuda, DIR/bench/bench_gpu)
# instead of building; MER_GPU_STEPS picks steps among "test parity ours hf" (default: all).
# Files written to OUTDIR: gpu.log (everything), test_cuda.log, parity.txt, ours.txt, hf.json, results.md.
set -u
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-bench-gpu-out}}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu.log
STEPS=${MER_GPU_STEPS:-test parity ours hf}
DEPS=$PWD/.gpu-deps/root/usr
LIBDIR=$DEPS/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH="$LIBDIR:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="/usr/local/cuda/bin:$PATH"
export PYTHONUNBUFFERED=1
say() { echo "== $*" | tee -a "$LOG"; }
has() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }

say "$(date -u +%FT%TZ) bench/gpu.sh on $(hostname)"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,driver_version \
    --format=csv >>"$LOG" 2>&1 || true

BIN=${MER_GPU_BIN:-}
if [ -z "$BIN" ]; then
    BIN=${MER_GPU_BUILD:-build-gpu}
    say "build ($BIN)"
    t0=$(date +%s)
    make -j"$(nproc)" CUDA=1 MEDIA=0 DEPS=0 BUILD="$BIN" EXTRA_CFLAGS="-I$DEPS/include -Wno-error" \
        EXTRA_LDLIBS="-L$LIBDIR" "$BIN/libmer.a" "$BIN/tests/test_cuda" >>"$LOG" 2>&1 || { say "build failed"; tail -20 "$LOG"; exit 1; }
    mkdir -p "$BIN/bench"
    cc -std=c11 -O2 -g -pthread -Iinclude -Isrc -D_GNU_SOURCE -DMER_MEDIA=0 -DMER_CUDA=1 -I"$DEPS/include" \
        bench/bench_gpu.c "$BIN/libmer.a" -o "$BIN/bench/bench_gpu" -L"$LIBDIR" -lz -lcjson -lutf8proc \
        -lsqlite3 -lm -lpthread -L/usr/local/cuda/lib64 -lcudart -lcublas -lcublasLt -lstdc++ >>"$LOG" 2>&1 ||
        { say "bench build failed"; tail -20 "$LOG"; exit 1; }
    say "build took $(( $(date +%s) - t0 )) s"
fi

if has test; then
    say "test_cuda"
    timeout 150 "$BIN/tests/test_cuda" >"$OUTDIR/test_cuda.log" 2>&1
    echo "exit $?" >>"$OUTDIR/test_cuda.log"
    grep -E "FAIL|SKIP|passed|rel err|device" "$OUTDIR/test_cuda.log" | head -40 | tee -a "$LOG"
fi

if has parity; then
    say "parity at the 7B widths (HF export, then mer)"
    MID=${TMPDIR:-/tmp}/mer_qwen2_mid
    timeout 150 python3 bench/gpu_ref.py export "$MID" >>"$LOG" 2>&1 &&
        timeout 60 "$BIN/bench/bench_gpu" parity "$MID" >"$OUTDIR/parity.txt" 2>>"$LOG"
    cat "$OUTDIR/parity.txt" 2>/dev/null | tee -a "$LOG"
    rm -rf "$MID"
fi

if has ours; then
    say "mer benchmarks"
    timeout 200 "$BIN/bench/bench_gpu" ceil gemv small model leak >"$OUTDIR/ours.txt" 2>>"$LOG"
    echo "exit $?" >>"$LOG"
    tee -a "$LOG" <"$OUTDIR/ours.txt"
fi

if has hf; then
    say "HF transformers reference"
    timeout 240 python3 bench/gpu_ref.py bench "$OUTDIR/hf.json" >>"$LOG" 2>&1
    echo "exit $?" >>"$LOG"
fi

say "table"
python3 bench/gpu_ref.py table "$OUTDIR/ours.txt" "$OUTDIR/hf.json" "$OUTDIR/parity.txt" "$OUTDIR/test_cuda.log" \
    | tee "$OUTDIR/results.md" | tee -a "$LOG"
