#!/usr/bin/env bash
# Runs every test executable in BUILD/tests, prints each one's result and one closing line
# "N passed, N failed" over all of them. Exit status is non-zero when any check failed or a test crashed.
set -u
build=${1:-build}
export MER_BUILD="$build"
pass=0; fail=0
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    out=$("$t" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | tail -n 1)
    printf '%s\n' "$out" | grep -E '^(FAIL|SKIP)' | head -n 40
    p=$(printf '%s' "$line" | sed -nE 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\1/p')
    f=$(printf '%s' "$line" | sed -nE 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\2/p')
    if [ -z "$p" ]; then
        echo "CRASH $t (exit $rc): $(printf '%s\n' "$out" | tail -n 3 | tr '\n' ' ')"
        fail=$((fail + 1)); continue
    fi
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && { echo "CRASH $t exited $rc"; f=1; }
    echo "  $(basename "$t"): $p passed, $f failed"
    pass=$((pass + p)); fail=$((fail + f))
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
