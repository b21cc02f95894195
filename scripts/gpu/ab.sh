#!/usr/bin/env bash
# scripts/gpu/ab.sh - an A/B comparison on the GPU machine: builds bench_gpu (and the listed tests) twice in
# parallel, "a" with the -D switches $MER_AB_A and "b" with $MER_AB_B (C and CUDA; a third, "c", with
# $MER_AB_C when that is set), then runs
# each bench_gpu command line of MER_AB_RUNS (";"-separated, e.g. "quant;qgemv") on a, b, a, b so that
# drift shows, with the output in $OUT/ab/<a|b><round>_<n>.txt and the lines matching MER_AB_GREP printed.
#   run: MER_AB_B="-DMER_QGEMV_MINB16=1" MER_AB_RUNS="quant" bash scripts/gpu/ab.sh   (carry .gpu-deps)
set -u
cd "$(dirname "$0")/../.."
O=${OUT:-/tmp/out}/ab
mkdir -p "$O"
. scripts/gpu/env.sh
t0=$(date +%s)
VS="a b"; [ -n "${MER_AB_C:-}" ] && VS="a b c"
for v in $VS; do
    flags=${MER_AB_A:-}; [ $v = b ] && flags=${MER_AB_B:-}; [ $v = c ] && flags=${MER_AB_C:-}
    # a build left by an earlier call with other switches starts afresh (make does not track flags)
    [ "$(cat build-ab-$v/.flags 2>/dev/null)" = "$flags" ] || { rm -rf build-ab-$v; mkdir -p build-ab-$v; echo "$flags" >build-ab-$v/.flags; }
    targets="build-ab-$v/libmer.a build-ab-$v/bench/bench_gpu"
    for t in ${MER_AB_TESTS:-}; do targets="$targets build-ab-$v/tests/$t"; done
    # shellcheck disable=SC2086
    MER_GPU_DEFS="$flags" mer_gpu_make build-ab-$v $targets >"$O/build_$v.log" 2>&1 &
done
wait
for v in $VS; do
    [ -x build-ab-$v/bench/bench_gpu ] || { echo "BUILD $v FAILED"; grep -E "error" "$O/build_$v.log" | tail; exit 1; }
done
echo "builds $(( $(date +%s) - t0 )) s; $(mer_gpu_card)"
for t in ${MER_AB_TESTS:-}; do
    for v in $VS; do echo "$t [$v]: $(timeout 200 build-ab-$v/tests/$t 2>&1 | grep -E "FAIL|passed" | head -5)"; done
done
IFS=';' read -r -a RUNS <<<"${MER_AB_RUNS:-quant}"
for r in 1 2; do
    for n in "${!RUNS[@]}"; do
        for v in $VS; do
            f="$O/$v${r}_$n.txt"
            # shellcheck disable=SC2086
            timeout 200 build-ab-$v/bench/bench_gpu ${RUNS[$n]} >"$f" 2>&1
            echo "[$v$r ${RUNS[$n]}] rc $? $(grep -E "${MER_AB_GREP:-decode_b1 }" "$f" | awk '{print $2, $3}' | paste -s -d' ')"
        done
    done
done
tar -C "$O/.." -czf "${OUT:-/tmp/out}/ab.tgz" ab
echo "total $(( $(date +%s) - t0 )) s"
