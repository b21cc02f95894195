#!/usr/bin/env bash
# bench/gpu.sh - the CUDA backend on the GPU machine, in one go: builds mer with CUDA=1 (media left out;
# scripts/gpu/env.sh), checks parity (every GPU test, and the 7B widths against HF transformers),
# benchmarks mer (ceilings, decode matmuls, the Qwen2.5-7B shape in bf16, q8_0 and q4_0, the device
# encoders, AffectGPT end to end) and HF transformers on the same card in the same run, and prints one
# table: ours beside HF's and beside the ceilings measured in the same run.
#
#   bench/gpu.sh [OUTDIR]          (from anywhere; OUTDIR defaults to $OUT, else bench-gpu-out)
#
# Carry .gpu-deps and models/qwen2-tokenizer with the run. Environment: MER_GPU_BIN=DIR uses binaries
# built elsewhere; MER_GPU_TESTS narrows the test step to the tests named; MER_GPU_STEPS picks steps among "test parity ours quant enc hf pipeline table"
# (default: all; about 9 minutes on an H100, so a 10-minute call may split it, e.g. "test parity ours
# quant hf table" then "enc pipeline table"; the table reads whatever result files OUTDIR holds and can
# also be made elsewhere: python3 bench/gpu_ref.py summary OUTDIR).
# Files written to OUTDIR: gpu.log (everything), test_*.log, parity.txt, ours.txt, quant.txt, hf.json,
# enc_*.txt/json (bench/gpu_enc.sh), pipeline.txt, hf_pipeline.json (bench/gpu_pipeline.sh), results.md.
set -u
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-bench-gpu-out}}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu.log
STEPS=${MER_GPU_STEPS:-test parity ours quant enc hf pipeline table}
. scripts/gpu/env.sh
say() { echo "== $*" | tee -a "$LOG"; }
has() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }

say "$(date -u +%FT%TZ) bench/gpu.sh on $(hostname): $(mer_gpu_card); steps: $STEPS"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,driver_version \
    --format=csv >>"$LOG" 2>&1 || true

TESTS=${MER_GPU_TESTS:-test_cuda test_cuda_enc test_cuda_fusion test_cuda_quant test_cuda_llm test_qwen2_device test_qwen2_batch test_infer_batch}
BIN=${MER_GPU_BIN:-}
if [ -z "$BIN" ]; then
    BIN=${MER_GPU_BUILD:-build-gpu}
    say "build ($BIN)"
    t0=$(date +%s)
    targets="$BIN/libmer.a $BIN/mer"
    for t in $TESTS; do targets="$targets $BIN/tests/$t"; done
    for b in bench_gpu bench_gpu_enc bench_gpu_llm bench_gpu_pipeline; do targets="$targets $BIN/bench/$b"; done
    # shellcheck disable=SC2086
    mer_gpu_make "$BIN" $targets >>"$LOG" 2>&1 || { say "build failed"; grep -E "error" "$LOG" | tail -20; exit 1; }
    say "build took $(( $(date +%s) - t0 )) s"
fi
export MER_BUILD=$BIN # test_infer_batch runs $MER_BUILD/mer
rc=0

if has test; then
    for t in $TESTS; do
        timeout 300 "$BIN/tests/$t" >"$OUTDIR/$t.log" 2>&1
        r=$?
        echo "exit $r" >>"$OUTDIR/$t.log"
        [ $r -eq 0 ] || rc=1
        say "$t: $(grep -E "^$t: " "$OUTDIR/$t.log" | tail -1) (exit $r)"
        grep -E "FAIL|SKIP" "$OUTDIR/$t.log" | head -10 | tee -a "$LOG"
    done
fi

if has parity; then
    say "parity at the 7B widths (HF export, then mer)"
    MID=${TMPDIR:-/tmp}/mer_qwen2_mid
    timeout 150 python3 bench/gpu_ref.py export "$MID" >>"$LOG" 2>&1 &&
        timeout 60 "$BIN/bench/bench_gpu" parity "$MID" >"$OUTDIR/parity.txt" 2>>"$LOG"
    tee -a "$LOG" <"$OUTDIR/parity.txt" 2>/dev/null
    rm -rf "$MID"
fi

if has ours; then
    say "mer: ceilings, decode matmuls, small kernels, the 7B shape in bf16, 10,000-step leak check"
    timeout 200 "$BIN/bench/bench_gpu" ceil gemv small model leak >"$OUTDIR/ours.txt" 2>>"$LOG"
    echo "exit $?" >>"$LOG"
    grep -v "^RESULT" "$OUTDIR/ours.txt" | tee -a "$LOG"
fi

if has quant; then
    say "mer: the 7B shape in q8_0 and q4_0"
    timeout 120 "$BIN/bench/bench_gpu" quant >"$OUTDIR/quant.txt" 2>>"$LOG"
    echo "exit $?" >>"$LOG"
    grep -v "^RESULT" "$OUTDIR/quant.txt" | tee -a "$LOG"
fi

if has enc; then
    say "device encoders (bench/gpu_enc.sh: mer, HF, real-shape parity)"
    MER_GPU_BIN=$BIN MER_GPU_ENC_STEPS="ours hf parity" bench/gpu_enc.sh "$OUTDIR" >/dev/null 2>&1
    grep -E "RESULT (clip_l_8frames_ms|hubert_l_8x2s_ms|parity)" "$OUTDIR"/enc_*.txt 2>/dev/null | tee -a "$LOG"
fi

if has hf; then
    say "HF transformers reference (Qwen2.5-7B shape)"
    timeout 240 python3 bench/gpu_ref.py bench "$OUTDIR/hf.json" >>"$LOG" 2>&1
    echo "exit $?" >>"$LOG"
fi

if has pipeline; then
    say "AffectGPT end to end (bench/gpu_pipeline.sh: mer, then HF on the same clips)"
    MER_GPU_BIN=$BIN MER_PIPE_STEPS="smoke real hf" bench/gpu_pipeline.sh "$OUTDIR" >/dev/null 2>&1 || rc=1
    grep -E "one clip, total|clips/s|answered|failures" "$OUTDIR/pipeline.txt" 2>/dev/null | tee -a "$LOG"
fi

if has table; then
    say "table"
    python3 bench/gpu_ref.py summary "$OUTDIR" | tee "$OUTDIR/results.md" | tee -a "$LOG"
fi
exit $rc
