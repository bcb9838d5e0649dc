#!/usr/bin/env bash
# gpu_section.sh GPU_BENCH.txt - turns the key: value lines of `BENCH=1 tests/gpu/run.sh` into
# the "## GPU (H100)" section of docs/BENCHMARKS.md.
set -euo pipefail
f=${1:?usage: gpu_section.sh GPU_BENCH.txt}; cd "$(dirname "$0")/../.."
get() { awk -v k="$1" 'index($0, k ": ") == 1 {print substr($0, length(k) + 3)}' "$f"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
{
  echo "Command: \`BENCH=1 bash tests/gpu/run.sh BUILD_DIR DATA_DIR\` on the device machine (one"
  echo "$(get device), 16 CPU cores), then \`bash tests/bench/gpu_section.sh gpu_bench.txt\`."
  echo "Input: $(get model) (real BF16 weights), $(get tiles) tiles of 256 KiB."
  echo
  echo "| what | figure |"
  echo "|---|---|"
  echo "| GPU decode, device memory to device memory (3 kernels, event-timed) | $(get gpu_decode_kernels_GBps) GB/s of output |"
  echo "| same buffers, cudaMemcpy device to device | $(get cudaMemcpy_D2D_GBps) GB/s |"
  echo "| GPU decode / copy | $(ratio "$(get gpu_decode_kernels_GBps)" "$(get cudaMemcpy_D2D_GBps)") |"
  echo "| kernel time: rANS / plane merge / xxh3 check | $(get gpu_kernel_ms_rans_merge_hash | sed 's/ / ms, /g') ms |"
  echo "| GPU decode from pageable host payloads (upload and per-tile placement included) | $(get gpu_decode_with_upload_GBps) GB/s |"
  echo "| CPU decoder, 1 thread / 16 threads (\`wcodec bench -j 16\`, same file) | $(get decode_GBps_1thread) / $(get decode_GBps_16threads) GB/s |"
  echo "| loader API \`wcgpu_read_range\`, whole model into device memory (page cache warm) | $(get loader_container_to_device_s) s |"
  echo "| reading the raw .safetensors + cudaMemcpy to the device (page cache warm) | $(get loader_raw_read_plus_copy_s) s |"
  for k in $(awk -F': ' '/^(mount|load)_/ {print $1}' "$f"); do echo "| ${k//_/ } | $(get "$k") |"; done
  echo
  echo '"load" rows: a small Llama (46M parameters, BF16) made by tests/gpu/run.sh, loaded with'
  echo 'safetensors `safe_open(..., device="cuda")` and transformers `from_pretrained` from the'
  echo 'original folder (page cache warm) and from a fresh mount; tensors compared bitwise (equal).'
  echo 'With "gpu on" every tile of these loads went to the GPU (gpu_min_batch=1).'
  echo
  echo "Where the GPU wins: decoding into device memory. The kernels decode at about a fifth of"
  echo "the device's copy bandwidth, $(ratio "$(get gpu_decode_kernels_GBps)" "$(get decode_GBps_16threads)")x the 16-core CPU decoder; the loader API puts a model in"
  echo "GPU memory faster than reading the raw file and copying it up, because it reads a third"
  echo "fewer bytes and decodes on the GPU. Where it does not: through the mount. FUSE hands the"
  echo "daemon 128 KiB to 1 MiB requests and the bytes must come back to host memory, so a GPU batch"
  echo "(upload, three kernels, download) costs more than decoding the same few tiles on CPU threads."
  echo "wcodecfs therefore decodes on the CPU by default (gpu=auto); only with gpu=on does it send"
  echo "reads whose tiles plus read-ahead reach \`gpu_min_batch\` (default 16) to the GPU (the"
  echo "filesystem sections above compare the two). Mount figures on that machine vary by 2x between runs."
} | bash tests/bench/put_section.sh docs/BENCHMARKS.md "## GPU (H100)"
echo "wrote docs/BENCHMARKS.md" >&2
