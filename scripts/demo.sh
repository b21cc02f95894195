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

# ------------------------------------------------------------------------------------------------------
# Face expressions (appended by the face module, issue 7): a 6-second clip made of face-api's six demo
# photographs (1 s each, padded to one size) with espeak-ng speech as its audio, then `mer run` on it.
# Needs the ffmpeg and espeak-ng command-line tools, the models from scripts/deps.d/face.sh, and a mer
# built with FFmpeg (MER_MEDIA=1); otherwise the block says what is missing and is skipped.
face_demo() {
  local photos=models/face-api/demo clip="$build/demo/faces.mp4" speech="$build/demo/speech.wav"
  if ! command -v ffmpeg >/dev/null || ! command -v espeak-ng >/dev/null || [ ! -f "$photos/sample6.jpg" ]; then
    echo "== face demo skipped: needs ffmpeg, espeak-ng and $photos (scripts/deps.sh installs them)"
    return 0
  fi
  echo "== a clip of the six demo photographs (1 s each) with espeak-ng speech: $clip"
  if [ ! -s "$clip" ]; then
    espeak-ng -w "$speech" "Six photographs, one second each: friends laughing, a sad face, and people together."
    local ins=() fl="" cat="" i
    for i in 1 2 3 4 5 6; do
      ins+=(-loop 1 -framerate 25 -t 1 -i "$photos/sample$i.jpg")
      fl+="[$((i - 1)):v]scale=1280:1026:force_original_aspect_ratio=decrease,pad=1280:1026:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[v$i];"
      cat+="[v$i]"
    done
    ffmpeg -v error -y "${ins[@]}" -i "$speech" -filter_complex "${fl}${cat}concat=n=6:v=1:a=0[v]" \
      -map "[v]" -map 6:a -c:v libx264 -crf 18 -preset veryfast -c:a aac -t 6 "$clip"
  fi
  echo "== mer run $clip --frames 12"
  if ! "$build/mer" run "$clip" --frames 12; then
    echo "== face demo: mer run failed (a mer built without FFmpeg cannot read videos)"
  fi
}
face_demo
