#!/usr/bin/env bash
# Runs mer's CPU test suite on the GPU machine's CPU (an AVX-512 Xeon there: the AVX-512 kernels are
# checked against the generic ones, which this project's development machines cannot run).
# Usage (repo root, on the GPU machine, with .gpu-deps carried): scripts/gpu/cpu_tests.sh [tests...]
set -u
C=$PWD/.gpu-deps/root/usr
export LD_LIBRARY_PATH=$C/lib/x86_64-linux-gnu
grep -o -w 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
make -k -j"$(nproc)" MEDIA=0 DEPS=0 BUILD=build-gpucpu EXTRA_CFLAGS="-I$C/include -I$C/include/x86_64-linux-gnu" \
    EXTRA_LDLIBS="-L$C/lib/x86_64-linux-gnu" build-gpucpu/mer ${*:-$(ls tests/test_*.c | sed 's|tests/\(.*\)\.c|build-gpucpu/tests/\1|')} \
    >build-gpucpu.log 2>&1
grep -E "error:" build-gpucpu.log | head -5
MER_BUILD=build-gpucpu scripts/run_tests.sh build-gpucpu
