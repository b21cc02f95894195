#!/usr/bin/env bash
# Installs the real photographs of the CLIP preprocessing parity test: the npm package
# @vladmandic/face-api (pinned, integrity-checked; only its demo/ JPEGs are used) under
# models/npm/face-api/ (git-ignored, its own npm prefix). Idempotent: returns at once when installed.
# Without npm it prints a line and returns 0: test_preprocess then SKIPs its real-photo check.
set -euo pipefail
cd "$(dirname "$0")/../.."

PREFIX=models/npm/face-api
PKG="@vladmandic/face-api"
VER=1.7.15
INTEGRITY="sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw=="

lock="$PREFIX/node_modules/.package-lock.json"
[ -f "$lock" ] && grep -q "\"integrity\": \"$INTEGRITY\"" "$lock" && exit 0

command -v npm >/dev/null || { echo "deps/encoders: npm not found; the real-photo preprocessing check will be skipped" >&2; exit 0; }
mkdir -p "$PREFIX"
echo "deps/encoders: npm install $PKG@$VER into $PREFIX"
npm install --prefix "$PREFIX" --no-save --no-package-lock --no-audit --no-fund --ignore-scripts \
  --loglevel=error "$PKG@$VER" >/dev/null
got=$(node -e 'const l=require(process.argv[1]);const e=l.packages["node_modules/"+process.argv[2]];
  process.stdout.write(e?e.version+" "+e.integrity:"missing")' "$PWD/$lock" "$PKG")
if [ "$got" != "$VER $INTEGRITY" ]; then
  echo "deps/encoders: $PKG: expected $VER $INTEGRITY, npm installed $got" >&2
  exit 1
fi
