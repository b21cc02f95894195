#!/usr/bin/env bash
# Installs mer's built-in face models and their reference runtime from npm, pinned:
#  - @vladmandic/face-api 1.7.15 (MIT): its tiny_face_detector_model and face_expression_model (tfjs
#    weights manifests + .bin shards) are copied to models/face-api/, and its six demo photographs
#    (demo/sample1..6.jpg, in the npm tarball) to models/face-api/demo/, each checked by sha256;
#  - @tensorflow/tfjs 4.22.0 and @tensorflow/tfjs-backend-wasm 4.22.0 (the second only because face-api's
#    node build requires it; the reference runs tfjs's pure-JavaScript CPU backend): the reference that
#    scripts/ref_face.js and bench/bench_face.c run. No native binary is downloaded (--ignore-scripts).
# Packages go to models/npm/face/ (git-ignored, its own npm prefix); each pinned package's npm integrity
# is checked against the pins below. mer itself never touches the network: it reads models/face-api/.
# Idempotent: when everything is in place it checks the checksums and returns.
set -euo pipefail
cd "$(dirname "$0")/../.."

PREFIX=models/npm/face
OUT=models/face-api
PKGS=(
  "@vladmandic/face-api 1.7.15 sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw=="
  "@tensorflow/tfjs 4.22.0 sha512-0TrIrXs6/b7FLhLVNmfh8Sah6JgjBPH4mZ8JGb7NU6WW+cx00qK5BcAZxw7NCzxj6N8MRAIfHq+oNbPUNG5VAg=="
  "@tensorflow/tfjs-backend-wasm 4.22.0 sha512-/IYhReRIp4jg/wYW0OwbbJZG8ON87mbz0PgkiP3CdcACRSvUN0h8rvC0O3YcDtkTQtFWF/tcXq/KlVDyV49wmA=="
)
# file in the package -> sha256 (copied to $OUT under the same base name; demo photos under $OUT/demo)
FILES=(
  "model/tiny_face_detector_model-weights_manifest.json 5d1af4849ac48d5b985f4a9b16010c512353ddd6fcc63d50fd0bc9e9e64296e5"
  "model/tiny_face_detector_model.bin b7503ce7df31039b1c43316a9b865cab6a70dd748cc602d3fa28b551503c3871"
  "model/face_expression_model-weights_manifest.json 5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8"
  "model/face_expression_model.bin 9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d"
  "demo/sample1.jpg 8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51"
  "demo/sample2.jpg 7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691"
  "demo/sample3.jpg 8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936"
  "demo/sample4.jpg 729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc"
  "demo/sample5.jpg 6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938"
  "demo/sample6.jpg 9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87"
)

TAG=deps/face
. scripts/lib/npm_pinned.sh
dest_of() { case "$1" in model/*) echo "$OUT/${1#model/}" ;; *) echo "$OUT/$1" ;; esac; }

installed_ok() {
  local f
  for f in "${FILES[@]}"; do
    set -- $f
    [ "$(sha_of "$(dest_of "$1")")" = "$2" ] || return 1
  done
  npm_pins_ok
}
installed_ok && exit 0

command -v npm >/dev/null || { echo "deps/face: npm is required (apt-get install npm)" >&2; exit 1; }
mkdir -p "$OUT/demo"
npm_pins_install

pkg="$PREFIX/node_modules/@vladmandic/face-api"
for f in "${FILES[@]}"; do
  set -- $f
  if [ "$(sha_of "$pkg/$1")" != "$2" ]; then
    echo "deps/face: $pkg/$1: sha256 $(sha_of "$pkg/$1"), expected $2" >&2
    exit 1
  fi
  dst=$(dest_of "$1")
  cp "$pkg/$1" "$dst.tmp.$$" && mv "$dst.tmp.$$" "$dst"
done
echo "deps/face: face models and demo photographs ready in $OUT"
