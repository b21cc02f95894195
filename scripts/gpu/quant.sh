#!/usr/bin/env bash
# scripts/gpu/quant.sh - q8_0/q4_0 on the GPU machine in one go: builds mer with CUDA=1 (media left out,
# the .gpu-deps libraries), runs tests/test_cuda_quant, then bench_gpu quant (7B-shape decode/prefill in
# q8_0 and q4_0) and bench_gpu qgemv (the dequantising GEMV's variants per 7B matrix). Logs go to $OUT.
#   run: bash scripts/gpu/quant.sh     (carry .gpu-deps; MER_BENCH_QUICK=1: qgemv at batch 1 without the
#        warp/tile/unroll/fold variants; MER_BENCH_MODEL=1: also bench_gpu model, the bf16 decode)
set -u
O=${OUT:-/tmp/out}; mkdir -p "$O"
DEPS=$PWD/.gpu-deps/root/usr; LIBDIR=$DEPS/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH="$LIBDIR:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="/usr/local/cuda/bin:$PATH"
B=${MER_GPU_BUILD:-build-gpu-hq}
t0=$(date +%s)
make -j16 CUDA=1 MEDIA=0 DEPS=0 BUILD=$B EXTRA_CFLAGS="-I$DEPS/include -Wno-error" EXTRA_LDLIBS="-L$LIBDIR" \
  $B/libmer.a $B/tests/test_cuda_quant >"$O/build.log" 2>&1 || { echo BUILD FAILED; tail -30 "$O/build.log"; exit 1; }
mkdir -p $B/bench
cc -std=c11 -O2 -g -pthread -Iinclude -Isrc -D_GNU_SOURCE -DMER_MEDIA=0 -DMER_CUDA=1 -I"$DEPS/include" \
  bench/bench_gpu.c $B/libmer.a -o $B/bench/bench_gpu -L"$LIBDIR" -lz -lcjson -lutf8proc \
  -lsqlite3 -lm -lpthread -L/usr/local/cuda/lib64 -lcudart -lcublas -lcublasLt -lstdc++ >>"$O/build.log" 2>&1 || { echo BENCH BUILD FAILED; tail -30 "$O/build.log"; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
timeout 90 $B/tests/test_cuda_quant >"$O/test_quant.log" 2>&1; echo "test_cuda_quant exit $?"
grep -E "FAIL|passed|device" "$O/test_quant.log" | head -20
MER_CUDA_PDL=1 MER_CUDA_QGEMV_SPLIT=3 timeout 90 $B/tests/test_cuda_quant >"$O/test_quant_pdl.log" 2>&1
echo "test_cuda_quant (MER_CUDA_PDL=1 MER_CUDA_QGEMV_SPLIT=3) exit $?"; grep -E "FAIL|passed|batched" "$O/test_quant_pdl.log" | head -20
timeout 200 $B/bench/bench_gpu quant >"$O/quant.txt" 2>&1; echo "quant exit $?"
grep -v "^device" "$O/quant.txt" | awk '{print $2, $3}' | paste - - - -
MER_CUDA_PDL=0 MER_BENCH_DECODE_ONLY=1 timeout 100 $B/bench/bench_gpu quant >"$O/quant_nopdl.txt" 2>&1
echo "quant (MER_CUDA_PDL=0) exit $?"; grep -E "decode_b[18] " "$O/quant_nopdl.txt" | awk '{print $2, $3}' | paste -s -d' '
timeout 40 $B/bench/bench_gpu small >"$O/small.txt" 2>&1; echo "small exit $?"; grep -E "_b1( |_)" "$O/small.txt" | awk '{print $2, $3}' | paste -s -d' '
MER_BENCH_QUICK=${MER_BENCH_QUICK:-0} timeout 200 $B/bench/bench_gpu qgemv >"$O/qgemv.txt" 2>&1; echo "qgemv exit $?"
grep -E "_b[18]_" "$O/qgemv.txt" | awk '{sub("qgemv_","",$2); print $2, $3}' | paste - - - - - - | head -90
if [ -n "${MER_BENCH_MODEL:-}" ]; then  # the bf16 model decode, to check that it is unchanged
  timeout 150 $B/bench/bench_gpu model >"$O/model.txt" 2>&1; echo "model exit $?"; grep -E "decode|prefill" "$O/model.txt" | awk '{print $2, $3}' | paste -s -d' '
fi
