# scripts/lib/npm_pinned.sh - sourced by scripts/deps.d/*.sh: installs npm packages pinned by version and
# npm integrity into a private prefix and checks them. The caller sets, before calling:
#   TAG     name used in messages ("deps/face")
#   PREFIX  the npm prefix (git-ignored, one per module so no other module's node_modules is touched)
#   PKGS    array of "NAME VERSION INTEGRITY" lines
# and calls npm_pins_ok (0 when every package is installed at its pin) and npm_pins_install (npm install,
# then every package's installed version and integrity checked against its pin; exit 1 on a mismatch).

sha_of() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }

npm_pins_ok() {
  local lock="$PREFIX/node_modules/.package-lock.json" p
  [ -f "$lock" ] || return 1
  for p in "${PKGS[@]}"; do
    set -- $p
    grep -q "\"integrity\": \"$3\"" "$lock" || return 1
  done
}

npm_pins_install() {
  local specs=() p got lock="$PREFIX/node_modules/.package-lock.json"
  mkdir -p "$PREFIX"
  for p in "${PKGS[@]}"; do set -- $p; specs+=("$1@$2"); done
  echo "$TAG: npm install ${specs[*]} into $PREFIX"
  npm install --prefix "$PREFIX" --no-save --no-package-lock --no-audit --no-fund --ignore-scripts \
    --loglevel=error "${specs[@]}" >/dev/null
  # npm checked each tarball against the registry's integrity; check that against our pins.
  for p in "${PKGS[@]}"; do
    set -- $p
    got=$(node -e 'const l=require(process.argv[1]);const e=l.packages["node_modules/"+process.argv[2]];
      process.stdout.write(e?e.version+" "+e.integrity:"missing")' "$PWD/$lock" "$1")
    if [ "$got" != "$2 $3" ]; then
      echo "$TAG: $1: expected $2 $3, npm installed $got" >&2
      exit 1
    fi
  done
}
