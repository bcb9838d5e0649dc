#!/usr/bin/env bash
# kernel_bench.sh DATA_DIR [GPU_CHECK...] - the GPU decode kernels and the loader, on the device
# machine: `gpu_check bench` (tests/gpu/gpu_check.c) on
#   - a Llama of 1.1B parameters (TinyLlama's shape, random weights made with torch) in BF16, F16
#     and F32, one file each;
#   - DATA_DIR's real weights (use-lite.bf16 and use-lite.int8 containers, decoded here) repeated
#     COPIES (default 100) times.
# With more than one GPU_CHECK (builds to compare, the first one the build under test), the BF16
# inputs run every build, alternated, ROUNDS (default 2) times; the other dtypes run the first.
# Prints the key: value lines of each run under '== MODEL BUILD round N', then one table row per
# run. Environment: DTYPES (the Llama's, default "bfloat16 float16 float32"), BUILD (default build-cuda), DIR (default /dev/shm), PYTHON, WCODEC_LIBS;
# output into $OUT if set.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=$(realpath "${BUILD:-build-cuda}"); DATA=$(realpath "${1:?usage: kernel_bench.sh DATA_DIR [GPU_CHECK...]}"); shift
[ -n "${WCODEC_LIBS:-}" ] && export LD_LIBRARY_PATH=$(realpath "$WCODEC_LIBS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
PY=${PYTHON:-python3}
checks=("${@:-$B/tests/gpu_check}")
T=$(mktemp -d "${DIR:-/dev/shm}/wcodec-kbench.XXXXXX")
trap 'rm -rf "$T"' EXIT
res=${OUT:-$T}/kernel_bench.txt; : > "$res"

for dt in ${DTYPES:-bfloat16 float16 float32}; do # the 1.1B Llama, one file per dtype
  $PY - "$dt" "$T/llama_$dt.safetensors" <<'PY'
import sys, torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
dt = getattr(torch, sys.argv[1])
cfg = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                  num_key_value_heads=4, vocab_size=32000)
with torch.device("cuda"):
    m = LlamaForCausalLM(cfg).to(dt)
save_file({k: v.contiguous() for k, v in m.state_dict().items()}, sys.argv[2])
PY
done
for f in "$DATA"/use-lite.*.wcodec; do
  [ -f "$f" ] || continue
  n=$(basename "$f" .wcodec)
  "$B/wcodec" decode -q "$f" "$T/$n.one.safetensors"
  $PY tests/bench/repeat_model.py "$T/$n.one.safetensors" "${COPIES:-100}" "$T/$n.safetensors"
  rm "$T/$n.one.safetensors"
done
for f in "$T"/*.safetensors; do "$B/wcodec" encode -q -j "$(nproc)" "$f" "${f%.safetensors}.wcodec"; done

run() { # MODEL GPU_CHECK ROUND
  echo "== $1 $(basename "$(dirname "$(dirname "$2")")")/$(basename "$2") round $3"
  "$2" bench "$T/$1.wcodec" "$T/$1.safetensors"
}
for m in llama_bfloat16 use-lite.bf16; do
  for r in $(seq "${ROUNDS:-2}"); do for gc in "${checks[@]}"; do run "$m" "$gc" "$r"; done; done
done >> "$res"
for m in llama_float16 llama_float32 use-lite.int8; do
  [ -f "$T/$m.wcodec" ] && run "$m" "${checks[0]}" 1
done >> "$res"
cat "$res"
echo
echo "| input | build | resident, no hash | resident, hash | batch path | rANS / merge / hash ms | D2D copy | loader | pinned H2D (raw) | ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|"
awk -v T="$T" '
  /^== / { if (name) row(); name = $2; build = $3; delete v; next }
  /: / { k = substr($0, 1, index($0, ": ") - 1); v[k] = substr($0, index($0, ": ") + 2) }
  function row() {
    lg = v["loader_GBps"] != "" ? v["loader_GBps"] : sprintf("%.1f", v["source_bytes"] / v["loader_container_to_device_s"] / 1e9)
    cmd = "stat -c %s " T "/" name ".wcodec " T "/" name ".safetensors"; cmd | getline a; cmd | getline b; close(cmd)
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.4f |\n", name, build, v["gpu_resident_decode_no_hash_GBps"],
      v["gpu_resident_decode_with_hash_GBps"], v["gpu_decode_kernels_GBps"], v["gpu_kernel_ms_rans_merge_hash"],
      v["cudaMemcpy_D2D_GBps"], lg, v["pinned_h2d_raw_GBps"], a / b }
  END { if (name) row() }' "$res"
