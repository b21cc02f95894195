#!/usr/bin/env bash
# The main job on data shipped in the repository: score the MER2024 OV store predictions against
# their ground truth with the MER2025 Track2 metric, then pack them as a Codalab submission and score
# the packed file again.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
echo "== mer eval --gt data/sample/check-openset.csv --pred data/sample/predict-openset.csv --per-wheel"
"$build/mer" eval --gt data/sample/check-openset.csv --pred data/sample/predict-openset.csv --per-wheel
mkdir -p "$build/demo"
echo "== mer pack (submission npz) and mer eval on it"
"$build/mer" pack --names data/sample/check-openset.csv --pred data/sample/predict-openset.csv \
    -o "$build/demo/predict-openset.npz"
"$build/mer" eval --gt data/sample/check-openset.csv --pred "$build/demo/predict-openset.npz"
