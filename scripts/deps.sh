#!/usr/bin/env bash
# Installs every build and test dependency of mer from Debian's packages (and pinned npm packages),
# idempotently: when everything is present it only checks and returns in well under a second.
# Set MER_NO_DEPS=1 to skip (e.g. on a machine without package access, where the build has what it needs).
set -euo pipefail
[ "${MER_NO_DEPS:-0}" = 1 ] && exit 0
cd "$(dirname "$0")/.."

APT_PKGS=(
  gcc make pkg-config clang libclang-rt-14-dev         # build, sanitizers, libFuzzer
  zlib1g-dev libcjson-dev libutf8proc-dev               # zip/deflate, JSON, Unicode tables
  python3-numpy                                         # reference reader/writer in tests only
  libsqlite3-dev                                        # resumable result store
)
# Extra package lists from scripts/deps.d/*.apt (one package per line), added by later modules, and
# with MER_DEPS_BENCH=1 (make bench) the benchmarks' references from scripts/deps.d/*.bench-apt.
lists=(scripts/deps.d/*.apt)
[ "${MER_DEPS_BENCH:-0}" = 1 ] && lists+=(scripts/deps.d/*.bench-apt)
for f in "${lists[@]}"; do
  [ -f "$f" ] || continue
  while read -r p _; do [ -n "$p" ] && [ "${p:0:1}" != "#" ] && APT_PKGS+=("$p"); done <"$f"
done

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages, pinned by version and integrity, each a script in scripts/deps.d/*.sh.
for f in scripts/deps.d/*.sh; do
  [ -f "$f" ] && bash "$f"
done
exit 0
