#!/usr/bin/env bash
# Unpacks the Debian -dev packages mer builds against into .gpu-deps/root (git-ignored), to be carried
# to the GPU machine (Ubuntu, no network, no such -dev packages). Run here, on the Debian machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu-deps && mkdir -p .gpu-deps/debs && cd .gpu-deps/debs
apt-get download libcjson-dev libcjson1 libutf8proc-dev libutf8proc2 libsqlite3-dev libsqlite3-0 zlib1g-dev libstb-dev libstb0 libjpeg62-turbo-dev libjpeg62-turbo
cd .. && for f in debs/*.deb; do dpkg -x "$f" root; done && rm -rf debs
rm -f root/usr/lib/x86_64-linux-gnu/libz.so   # absolute link to Debian's zlib: use the machine's or libz.a
