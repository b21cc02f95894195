#!/usr/bin/env bash
# The Qwen2 API on the GPU (mer_qwen2_params.device = cuda), on the GPU machine: builds mer with CUDA=1
# (media left out; the Debian -dev libraries carried in .gpu-deps, see scripts/gpu/prep_deps.sh), runs
# test_cuda_llm (the device path against the CPU on every tiny fixture, batched against one at a time,
# extract against HF), test_qwen2_device and test_qwen2_batch (the CPU side, also in a CUDA build), the
# CLI on the device (mer generate --device cuda --type f32 gives the CPU's greedy ids; mer extract
# --device cuda), then bench_gpu_llm (the API against the device step at the 7B shape).
#
#   scripts/gpu/llm_device.sh [OUTDIR]     (repo root; OUTDIR defaults to $OUT, else llm-device-out)
#
# MER_LLM_BENCH=0 skips the benchmark. Logs: OUTDIR/llm_device.log (everything), test_cuda_llm.log,
# bench_gpu_llm.log.
set -u
cd "$(dirname "$0")/../.."
OUTDIR=${1:-${OUT:-llm-device-out}}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/llm_device.log
. scripts/gpu/env.sh
B=${MER_GPU_BUILD:-build-gpu}
say() { echo "== $*" | tee -a "$LOG"; }
rc=0

say "$(date -u +%FT%TZ) llm_device.sh on $(hostname): $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
mer_gpu_make "$B" "$B/mer" "$B/tests/test_cuda_llm" "$B/tests/test_qwen2_device" "$B/tests/test_qwen2_batch" \
    "$B/bench/bench_gpu_llm" >>"$LOG" 2>&1 || { say "build failed"; grep -E "error" "$LOG" | head -20; exit 1; }

say "test_cuda_llm"
timeout 300 "$B/tests/test_cuda_llm" >"$OUTDIR/test_cuda_llm.log" 2>&1 || rc=1
grep -vE "^  " "$OUTDIR/test_cuda_llm.log" | head -40 | tee -a "$LOG"
grep -E "^  " "$OUTDIR/test_cuda_llm.log" | head -60 >>"$LOG"
for t in test_qwen2_device test_qwen2_batch; do
    say "$t"
    timeout 300 "$B/tests/$t" 2>&1 | tail -5 | tee -a "$LOG"
    [ "${PIPESTATUS[0]}" = 0 ] || rc=1
done

say "mer generate: --device cuda --type f32 against --device cpu (greedy ids)"
Q=tests/fixtures/models/qwen2_tiny
a=$("$B/mer" generate --model $Q --ids "5 17 99 3 250 41" -n 32 --device cuda --type f32 --stats 2>>"$LOG")
b=$("$B/mer" generate --model $Q --ids "5 17 99 3 250 41" -n 32 --device cpu 2>>"$LOG")
echo "cuda f32: $a" | tee -a "$LOG"
echo "cpu:      $b" | tee -a "$LOG"
[ -n "$a" ] && [ "$a" = "$b" ] && say "identical" || { say "DIFFER"; rc=1; }
"$B/mer" generate --model $Q --ids "5 17 99 3 250 41" -n 32 --device cuda --stats >>"$LOG" 2>&1 || rc=1

say "mer extract --device cuda (3 descriptions, batch 3)"
X=$(mktemp -d)
python3 -c "
import json,csv,sys
j=json.load(open('tests/fixtures/pipeline/extract_expected.json'))
w=csv.writer(open('$X/in.csv','w',newline='')); w.writerow(['name','reason'])
for r in j: w.writerow([r['name'],r['reason']])" &&
    "$B/mer" extract --model tests/fixtures/models/affectgpt_tiny/llm --in "$X/in.csv" -o "$X/x-openset.npz" \
        --device cuda --batch 3 --temp 0 --max-new-tokens 20 --quiet >>"$LOG" 2>&1 && head -5 "$X/x-openset.csv" | tee -a "$LOG" ||
    { say "extract failed"; rc=1; }
rm -rf "$X"

if [ "${MER_LLM_BENCH:-1}" != 0 ] && [ -x "$B/bench/bench_gpu_llm" ]; then
    say "bench_gpu_llm (Qwen2.5-7B shape, bf16, random weights)"
    timeout 400 "$B/bench/bench_gpu_llm" >"$OUTDIR/bench_gpu_llm.log" 2>&1 || rc=1
    grep -v RESULT "$OUTDIR/bench_gpu_llm.log" | tee -a "$LOG"
fi
say "done (exit $rc)"
exit $rc
