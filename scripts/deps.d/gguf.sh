#!/usr/bin/env bash
# Installs the reference GGUF parser the GGUF tests check our writer against: the npm package
# @huggingface/gguf (pinned, with its one dependency @huggingface/tasks pinned too) under
# models/npm/gguf/ (git-ignored, its own npm prefix so no other module's node_modules is touched). Each
# package's npm integrity is checked against the pin below. Idempotent: returns at once when installed.
# Without npm it prints a line and returns 0: the GGUF tests then SKIP their reference checks.
set -euo pipefail
cd "$(dirname "$0")/../.."

PREFIX=models/npm/gguf
PKGS=(
  "@huggingface/gguf 0.4.6 sha512-+S4ysHzzNN77rU0gBcuuGN+x1TYNP4M7EgOEZ2rKaTz8dZ8o2N92qapQaeTjnPPNiWSc23iCV9E8u2A9VvK+rg=="
  "@huggingface/tasks 0.21.54 sha512-OVFpVlLV6SSjG67Vdo98+qLvs/5yki0Ni1EWzbLrlBfZ+N6t4kM6aAeJLkFhikYYOZQyVNcWUN8UtPTs3Km05g=="
)

installed_ok() {
  local lock="$PREFIX/node_modules/.package-lock.json" p
  [ -f "$lock" ] || return 1
  for p in "${PKGS[@]}"; do
    set -- $p
    grep -q "\"integrity\": \"$3\"" "$lock" || return 1
  done
}
installed_ok && exit 0

command -v npm >/dev/null || { echo "deps/gguf: npm not found; GGUF reference checks will be skipped" >&2; exit 0; }
mkdir -p "$PREFIX"
specs=()
for p in "${PKGS[@]}"; do set -- $p; specs+=("$1@$2"); done
echo "deps/gguf: npm install ${specs[*]} into $PREFIX"
npm install --prefix "$PREFIX" --no-save --no-package-lock --no-audit --no-fund --ignore-scripts \
  --loglevel=error "${specs[@]}" >/dev/null

lock="$PREFIX/node_modules/.package-lock.json"
for p in "${PKGS[@]}"; do
  set -- $p
  got=$(node -e 'const l=require(process.argv[1]);const e=l.packages["node_modules/"+process.argv[2]];
    process.stdout.write(e?e.version+" "+e.integrity:"missing")' "$PWD/$lock" "$1")
  if [ "$got" != "$2 $3" ]; then
    echo "deps/gguf: $1: expected $2 $3, npm installed $got" >&2
    exit 1
  fi
done
