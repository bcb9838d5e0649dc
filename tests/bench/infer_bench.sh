#!/usr/bin/env bash
# infer_bench.sh [SIZE...] - weights kept compressed, on the device machine: for each SIZE (1b, 8b;
# default both) a transformers Llama of that shape is made on tmpfs, encoded, and run by
# infer_bench.py (bf16, keep=gpu, keep=host, accelerate offloading; tokens/s and peak GPU memory,
# tokens compared). Then the resident decode kernels (gpu_check bench on the 1b model's largest
# shard; twice, alternated with the gpu_check builds in GPU_CHECK_ALSO). Environment: BUILD (default
# build-cuda), DIR (default /dev/shm), PYTHON, NEW, NEW_HOST, NEW_OFFLOAD, OFFLOAD=0 to skip
# accelerate, WCODEC_LIBS (extra shared libraries). Output into $OUT if set.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=$(realpath "${BUILD:-build-cuda}")
[ -n "${WCODEC_LIBS:-}" ] && export LD_LIBRARY_PATH=$(realpath "$WCODEC_LIBS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export WCODEC_LIBRARY=$B/libwcodec.so WCODEC_BIN=$B/wcodec PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
T=$(mktemp -d "${DIR:-/dev/shm}/wcodec-infer.XXXXXX")
trap 'rm -rf "$T"' EXIT
for size in "${@:-1b 8b}"; do
  for s in $size; do
    mkdir -p "$T/$s"
    res=${OUT:-$T}/infer_$s.txt
    $PY tests/bench/infer_bench.py "$s" "$T/$s" 2>&1 | grep --line-buffered -v -E "Warning|warn\(|^\s*$|it/s\]" | tee "$res"
    if [ "$s" = 1b ]; then
      big=$(ls -S "$T/$s/wc"/*.wcodec | head -1)
      "$B/wcodec" decode -q "$big" "$T/orig.safetensors"
      for round in 1 2; do # alternated with any other builds named in GPU_CHECK_ALSO (kernel variants)
        for gc in "$B/tests/gpu_check" ${GPU_CHECK_ALSO:-}; do
          echo "== $gc, round $round"; "$gc" bench "$big" "$T/orig.safetensors"
        done
      done | tee "${OUT:-$T}/kernels.txt"
      rm -f "$T/orig.safetensors"
    fi
    rm -rf "$T/$s"
  done
done
