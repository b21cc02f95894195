#!/usr/bin/env bash
# bench/gpu_pipeline.sh - AffectGPT end to end on the GPU machine (bench/bench_gpu_pipeline.c): builds mer
# with CUDA=1 MEDIA=0 (the Debian -dev libraries carried in .gpu-deps, as bench/gpu.sh does), runs
# test_infer_batch (mer infer on the GPU: f32 device answers equal the CPU's, batched equal one at a time),
# a smoke pass of the bench on the tiny fixtures on the GPU, then the real shapes (CLIP-L/14, HuBERT-L,
# Qwen2.5-7B bf16, random weights): (a) one clip stage by stage, (b) dataset runs of many clips with
# batching; then the same two measurements of HF transformers on the same data in the same run
# (bench/gpu_pipeline_ref.py) and a side-by-side table.
#
#   bench/gpu_pipeline.sh [OUTDIR] [bench options...]   (OUTDIR defaults to $OUT, else bench-gpu-out)
#
# Carry .gpu-deps and models/qwen2-tokenizer (Qwen2.5's tokenizer.json, for the real ~150-token prompt;
# without it the tiny fixture's tokenizer makes a longer prompt, as the output says). Environment:
# MER_GPU_BIN=DIR uses binaries built elsewhere (DIR/mer, DIR/tests/test_infer_batch,
# DIR/bench/bench_gpu_pipeline); MER_PIPE_STEPS picks among "test smoke real hf" (default all; hf needs
# real's data, and compares against its default sizes). Files written to OUTDIR: pipeline.log (everything),
# test_infer_batch.log, pipeline_smoke.txt, pipeline.txt (the real-shape figures, RESULT lines included),
# hf_pipeline.json, results_pipeline.md.
set -u
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-bench-gpu-out}}
[ $# -gt 0 ] && shift
mkdir -p "$OUTDIR"
LOG=$OUTDIR/pipeline.log
STEPS=${MER_PIPE_STEPS:-test smoke real hf}
. scripts/gpu/env.sh
say() { echo "== $*" | tee -a "$LOG"; }
has() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }

say "$(date -u +%FT%TZ) bench/gpu_pipeline.sh on $(hostname)"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit,driver_version --format=csv >>"$LOG" 2>&1 || true
[ -r models/qwen2-tokenizer/tokenizer.json ] || say "note: models/qwen2-tokenizer not carried: the prompt is tokenized by the tiny fixture's tokenizer"

BIN=${MER_GPU_BIN:-}
if [ -z "$BIN" ]; then
    BIN=${MER_GPU_BUILD:-build-gpu}
    say "build ($BIN)"
    t0=$(date +%s)
    mer_gpu_make "$BIN" "$BIN/libmer.a" "$BIN/mer" "$BIN/tests/test_infer_batch" "$BIN/bench/bench_gpu_pipeline" \
        >>"$LOG" 2>&1 || { say "build failed"; tail -20 "$LOG"; exit 1; }
    say "build took $(( $(date +%s) - t0 )) s"
fi
TMPD=${TMPDIR:-/tmp}/mer_gpu_pipeline
rc=0

if has test; then
    say "test_infer_batch (CPU and GPU)"
    MER_BUILD=$BIN timeout 300 "$BIN/tests/test_infer_batch" >"$OUTDIR/test_infer_batch.log" 2>&1
    r=$?; echo "exit $r" >>"$OUTDIR/test_infer_batch.log"; [ $r -eq 0 ] || rc=$r
    grep -E "FAIL|SKIP|passed" "$OUTDIR/test_infer_batch.log" | head -20 | tee -a "$LOG"
fi

if has smoke; then
    say "smoke: tiny fixtures on the GPU"
    timeout 120 "$BIN/bench/bench_gpu_pipeline" --device cuda --shape tiny --clips 16 --batch 1,4 --dir "$TMPD/tiny" \
        >"$OUTDIR/pipeline_smoke.txt" 2>&1
    r=$?; echo "exit $r" >>"$OUTDIR/pipeline_smoke.txt"; [ $r -eq 0 ] || rc=$r
    grep -v '^RESULT' "$OUTDIR/pipeline_smoke.txt" | tee -a "$LOG"
fi

if has real; then
    say "real shapes: CLIP-L/14 + HuBERT-L + Qwen2.5-7B bf16 (random weights)"
    timeout 540 "$BIN/bench/bench_gpu_pipeline" --device cuda --shape real --dir "$TMPD/real" "$@" \
        >"$OUTDIR/pipeline.txt" 2>&1
    r=$?; echo "exit $r" >>"$OUTDIR/pipeline.txt"; [ $r -eq 0 ] || rc=$r
    grep -v '^RESULT' "$OUTDIR/pipeline.txt" | tee -a "$LOG"
fi
if has hf; then
    say "HF transformers on the same clips (bench/gpu_pipeline_ref.py)"
    NP=$(awk '$1 == "RESULT" && $2 == "e2e_prompt_tokens" {print int($3)}' "$OUTDIR/pipeline.txt" 2>/dev/null)
    timeout 400 python3 bench/gpu_pipeline_ref.py bench "$TMPD/real" 64 8,16 "${NP:-150}" 30 5 "$OUTDIR/hf_pipeline.json" \
        >>"$LOG" 2>&1
    r=$?; echo "exit $r" >>"$LOG"; [ $r -eq 0 ] || say "HF reference failed (exit $r): see pipeline.log"
    python3 bench/gpu_pipeline_ref.py table "$OUTDIR/pipeline.txt" "$OUTDIR/hf_pipeline.json" \
        | tee "$OUTDIR/results_pipeline.md" | tee -a "$LOG"
fi
rm -rf "$TMPD"
exit $rc
