#!/usr/bin/env bash
# scripts/gpu/profile.sh - where a quantised batch-1 decode step's time goes, on the GPU machine: builds
# bench_gpu (CUDA=1, media left out; scripts/gpu/env.sh), times the Qwen2.5-7B-shape q8_0 and q4_0
# decode under each setting named in MER_PROF_VARIANTS (env assignments, ";"-separated), then, where the
# card's tools are installed, a Nsight Systems trace of the decode (per-kernel time summary, graph nodes
# traced) and Nsight Compute metrics of the first decode GEMVs and attention (stall reasons, occupancy),
# and the SASS of the decode GEMV kernels. Everything goes to $OUT/prof (tarred to $OUT/prof.tgz).
#   run: bash scripts/gpu/profile.sh      (carry .gpu-deps)
#   MER_PROF_STEPS: any of "time nsys ncu sass" (default all)
set -u
cd "$(dirname "$0")/../.."
O=${OUT:-/tmp/out}/prof
mkdir -p "$O"
. scripts/gpu/env.sh
B=${MER_GPU_BUILD:-build-gpu}
STEPS=${MER_PROF_STEPS:-time nsys ncu sass}
has() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }
t0=$(date +%s)
mer_gpu_make "$B" "$B/libmer.a" "$B/bench/bench_gpu" >"$O/build.log" 2>&1 || {
    echo "BUILD FAILED"; grep -E "error" "$O/build.log" | tail -20; exit 1; }
echo "build $(( $(date +%s) - t0 )) s; $(mer_gpu_card)"
tool() { command -v "$1" 2>/dev/null || ls /usr/local/cuda/bin/"$1" /opt/nvidia/*/bin/"$1" /opt/nvidia/*/"$1" \
    /usr/local/cuda/nsight*/"$1" /usr/local/cuda/nsight*/bin/"$1" 2>/dev/null | head -1; }
NSYS=$(tool nsys); NCU=$(tool ncu); OBJ=$(tool cuobjdump)
echo "nsys: ${NSYS:-none}; ncu: ${NCU:-none}; cuobjdump: ${OBJ:-none}"
BG=$B/bench/bench_gpu

if has time; then
    IFS=';' read -r -a VARS <<<"${MER_PROF_VARIANTS:-MER_NONE=0}"
    for v in "${VARS[@]}"; do
        # shellcheck disable=SC2086
        env $v MER_BENCH_B1_ONLY=1 timeout 120 "$BG" quant >"$O/time_${v//[^A-Za-z0-9_]/_}.txt" 2>&1
        echo "[$v] rc $? $(grep -E '_decode_b1 ' "$O/time_${v//[^A-Za-z0-9_]/_}.txt" | awk '{print $2, $3}' | paste -s -d' ')"
    done
fi

if has nsys && [ -n "$NSYS" ]; then
    for q in q8_0 q4_0; do
        MER_BENCH_QTYPES=$q MER_BENCH_B1_ONLY=1 timeout 150 "$NSYS" profile -t cuda --cuda-graph-trace=node \
            -o "$O/nsys_$q" -f true "$BG" quant >"$O/nsys_$q.log" 2>&1
        echo "nsys $q rc $?"
        timeout 120 "$NSYS" stats -r cuda_gpu_kern_sum -f csv -o "$O/kern_$q" "$O/nsys_$q.nsys-rep" >>"$O/nsys_$q.log" 2>&1
        rm -f "$O/nsys_$q.sqlite"
        ls "$O"/kern_"$q"* 2>/dev/null | head -3
    done
fi

if has ncu && [ -n "$NCU" ]; then
    for q in q8_0 q4_0; do
        MER_BENCH_QTYPES=$q MER_BENCH_B1_ONLY=1 timeout 200 "$NCU" --set full -k regex:'qgemv_kernel|attn_split' \
            --launch-count 6 "$BG" quant >"$O/ncu_$q.txt" 2>&1
        echo "ncu $q rc $? ($(grep -c 'qgemv_kernel\|attn_split' "$O/ncu_$q.txt") lines naming kernels)"
    done
fi

if has sass && [ -n "$OBJ" ]; then
    "$OBJ" -sass "$BG" >"$O/all.sass" 2>&1
    echo "sass rc $? $(wc -l <"$O/all.sass") lines"
    gzip -f "$O/all.sass"
fi
tar -C "$O/.." --exclude="*.nsys-rep" -czf "${OUT:-/tmp/out}/prof.tgz" prof
echo "total $(( $(date +%s) - t0 )) s"
