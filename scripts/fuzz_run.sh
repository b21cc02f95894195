#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD/fuzz for SECONDS each, on a scratch copy of its seed corpus
# (tests/fuzz/corpus/<target>/). Exit status non-zero if any target finds a crash.
set -u
build=${1:-build-fuzz}; secs=${2:-20}; only=${3:-}
status=0
for f in "$build"/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    name=$(basename "$f"); name=${name#fuzz_}
    [ -n "$only" ] && [ "$only" != "$name" ] && continue
    work=$(mktemp -d); mkdir -p "$work/corpus" "$work/art"
    [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$work/corpus/"
    echo "fuzz $name: ${secs}s"
    if ! "$f" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -artifact_prefix="$work/art/" \
            -print_final_stats=1 "$work/corpus" >"$work/log" 2>&1; then
        echo "fuzz $name: FOUND A PROBLEM"; tail -n 40 "$work/log"; ls "$work/art"; status=1
    else
        grep -E "stat::number_of_executed_units|cov:" "$work/log" | tail -n 2
    fi
    rm -rf "$work"
done
exit $status
