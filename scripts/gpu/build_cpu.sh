#!/usr/bin/env bash
# Builds mer's CPU library on the GPU machine (no FFmpeg, no -dev packages: .gpu-deps carries them),
# tolerating unrelated files that do not compile, then links the given bench/tool sources against it.
# Usage: scripts/gpu/build_cpu.sh BUILD bench/x.c [...]
set -u
B=${1:-build-gpu}; shift
C=$PWD/.gpu-deps/root/usr
make -k -j"$(nproc)" MEDIA=0 DEPS=0 BUILD="$B" EXTRA_CFLAGS="-I$C/include -I$C/include/x86_64-linux-gnu" EXTRA_LDLIBS="-L$C/lib/x86_64-linux-gnu" \
    $(find src -name '*.c' ! -path 'src/media/*' | sed "s|^\(.*\)\.c$|$B/obj/\1.o|") >"$B.log" 2>&1 || true
grep -E "error:" "$B.log" | head -n 5
rm -f "$B/libmer-partial.a"; ar rcs "$B/libmer-partial.a" $(find "$B/obj/src" -name '*.o')
mkdir -p "$B/bench"
for s in "$@"; do
    o="$B/bench/$(basename "$s" .c)"
    gcc -std=c11 -O2 -g -pthread -Iinclude -Isrc -D_GNU_SOURCE -DMER_MEDIA=0 -DMER_CUDA=0 -I"$C/include" "$s" \
        "$B/libmer-partial.a" -o "$o" -L"$C/lib/x86_64-linux-gnu" -lz -lcjson -lutf8proc -lsqlite3 -lm -ldl || echo "link failed: $s"
done
