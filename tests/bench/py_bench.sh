#!/usr/bin/env bash
# py_bench.sh [MODEL_DIR] - the Python package's loaders, side by side in one run; writes the
# section "## Python loader ($HEADING)" of docs/BENCHMARKS.md.
#  - numpy path: containers decoded to host memory on one thread, GB/s of output, next to
#    reading the raw files into memory (page cache warm for both);
#  - with torch and a CUDA device: a BF16 model to GPU memory, cold page cache and warm:
#    wcodec.torch.load_dir(device="cuda") on its containers, safetensors.torch.load_file
#    (device="cuda") on the raw files, and the same through a wcodecfs mount (gpu=auto).
# MODEL_DIR: a raw model folder (*.safetensors + config.json). Default: a Llama of about 1.1B
# parameters (TinyLlama's shape, random BF16 weights) built here with transformers, or, without
# torch, ../shared/data's use-lite.bf16 repeated 20 times. Kept in DIR (default /var/tmp: a
# disk, so that cold reads come from storage). Needs root for drop_caches and the mount.
# Environment: DIR, HEADING, PYTHON (an interpreter with torch for the GPU part; default
# python3), BUILD (default build), WCODEC_LIBS (extra shared libraries).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=$(realpath "${BUILD:-build}")
[ -n "${WCODEC_LIBS:-}" ] && export LD_LIBRARY_PATH=$(realpath "$WCODEC_LIBS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export WCODEC_LIBRARY=$B/libwcodec.so PYTHONPATH=$PWD/python
PY=${PYTHON:-python3}; NP=/usr/bin/python3; [ -x "$NP" ] && $NP -c "import numpy" 2>/dev/null || NP=$PY
T=$(mktemp -d "${DIR:-/var/tmp}/wcodec-pybench.XXXXXX"); M=$T/m; mkdir -p "$M"
# under set -e a failing command in the trap would end it before the rm: nothing may fail here
cleanup() { fusermount3 -u -z "$M" 2>/dev/null || umount -l "$M" 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
has_gpu=0; $PY -c "import torch, safetensors, transformers; assert torch.cuda.is_available()" 2>/dev/null && has_gpu=1
what="$(basename "${1:-}")"
if [ -n "${1:-}" ]; then cp -r "$1" "$T/raw"
elif [ $has_gpu = 1 ]; then
  what="a Llama of 1.1B parameters (TinyLlama's shape; random BF16 weights made with transformers)"
  $PY - "$T/raw" <<'PY'
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                  num_key_value_heads=4, vocab_size=32000, torch_dtype="bfloat16")
with torch.device("cuda"):
    m = LlamaForCausalLM(cfg).to(torch.bfloat16)
m.save_pretrained(sys.argv[1], safe_serialization=True, max_shard_size="1GB")
PY
else what="use-lite.bf16 (real BF16 weights) repeated 20 times"; mkdir -p "$T/raw"; $NP tests/bench/repeat_model.py ../shared/data/use-lite.bf16.safetensors 20 "$T/raw/model.safetensors"; fi
"$B/wcodec" encode -q -j "$(nproc)" "$T/raw" "$T/wc"
raw_bytes=$(du -cb "$T"/raw/*.safetensors | tail -1 | cut -f1); wc_bytes=$(du -cb "$T"/wc/*.wcodec | tail -1 | cut -f1)
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
load() { # METHOD DIR DEVICE -> GB/s (bytes of tensors / seconds), best of 3
  local best=0 r
  for k in 1 2 3; do
    [ "${COLD:-0}" = 1 ] && drop
    r=$($PY tests/bench/py_load.py "$1" "$2" "$3" | awk '{printf "%.2f", $2 / $1 / 1e9}')
    best=$(awk -v a="$best" -v b="$r" 'BEGIN {print (b > a) ? b : a}')
  done; echo "$best"; }
# freshly cached pages read slowly the first times on some VMs: settle them before timing
for k in 1 2 3; do cat "$T"/raw/* "$T"/wc/* > /dev/null; done
# and memory the guest has never touched costs the hypervisor a fault per page the first time:
# touch as much as a load takes once, so that every run meets memory the same way
$NP -c "import numpy; numpy.ones($raw_bytes * 2, dtype=numpy.uint8)"
np1=$(PY=$NP load numpy1 "$T/wc" cpu); raw1=$(PY=$NP load raw1 "$T/raw" cpu)
rows=()
disk=""
if [ $has_gpu = 1 ]; then
  # the storage's own speed: the containers read cold, one stream (what a cold load is bound by)
  drop; t0=$(date +%s.%N); cat "$T"/wc/*.wcodec > /dev/null; t1=$(date +%s.%N)
  disk=$(awk -v b="$wc_bytes" -v a="$t0" -v c="$t1" 'BEGIN {printf "%.2f", b / (c - a) / 1e9}')
  for temp in cold warm; do
    [ $temp = cold ] && c=1 || c=0
    w=$(COLD=$c load wcodec "$T/wc" cuda); s=$(COLD=$c load safetensors "$T/raw" cuda)
    "$B/wcodecfs" "$T/wc" "$M" -o "index_dir=$T/index" 2>/dev/null
    [ $temp = warm ] && cat "$M"/*.safetensors > /dev/null
    m=$(COLD=$c load safetensors "$M" cuda); umount "$M"
    rows+=("| $temp page cache | $w | $s | $m | $(awk -v a="$w" -v b="$s" 'BEGIN {printf "%.2f", a / b}') |")
  done
fi
cpu=$(lscpu | awk -F': *' '/Model name/ {print $2; exit}')
machine="$cpu, $(nproc) cores, $(uname -r), $(date -u +%F)"
[ $has_gpu = 1 ] && machine+=", $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
{
  echo "Command: \`bash tests/bench/py_bench.sh\` (as root). Machine: $machine."
  echo "Model: $what, $(ls "$T/raw" | grep -c safetensors) safetensors files, $raw_bytes bytes (containers: $wc_bytes bytes,"
  echo "$(awk -v a="$raw_bytes" -v b="$wc_bytes" 'BEGIN {printf "%.2f", a / b}')x), on $(df --output=fstype "$T" | tail -1); GB/s of tensor bytes, best of 3 runs, each in a fresh process."
  echo
  echo "numpy path (host memory, one thread, page cache warm): containers decoded $np1 GB/s; the raw"
  echo "files read into memory (np.fromfile) $raw1 GB/s."
  if [ $has_gpu = 1 ]; then
    echo
    echo "| to GPU memory | wcodec.torch.load_dir(cuda), containers | safetensors load_file(cuda), raw files | safetensors load_file(cuda) through wcodecfs | wcodec / safetensors raw |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "The storage, cold (\`cat\` of the containers after drop_caches): $disk GB/s, so a cold load of the"
    echo "containers is bound at $(awk -v d="$disk" -v a="$raw_bytes" -v b="$wc_bytes" 'BEGIN {printf "%.2f", d * a / b}') GB/s of tensor bytes (the disk's speed over the container ratio)."
  fi
} > "$T/section.md"
cat "$T/section.md"
bash tests/bench/put_section.sh docs/BENCHMARKS.md "## Python loader (${HEADING:-$cpu, $(nproc) cores})" < "$T/section.md"
[ -n "${OUT:-}" ] && cp "$T/section.md" "$OUT/py_bench.md"
echo "wrote docs/BENCHMARKS.md" >&2
