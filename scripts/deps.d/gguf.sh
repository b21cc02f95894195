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

TAG=deps/gguf
. scripts/lib/npm_pinned.sh
npm_pins_ok && exit 0

command -v npm >/dev/null || { echo "deps/gguf: npm not found; GGUF reference checks will be skipped" >&2; exit 0; }
npm_pins_install
