#!/usr/bin/env bash
# tests/gpu/run.sh [BUILD_DIR] [DATA_DIR] - everything GPU in one command, on a machine with an
# NVIDIA GPU, /dev/fuse and root:
#  1. gpu_check: GPU decode == CPU decode for every tile of every container (fixtures of every
#     dtype and edge case, and the real containers in DATA_DIR), corrupted tiles caught on the
#     GPU, the loader API reading tensors into device memory;
#  2. wcodecfs -o gpu=on: every presented file identical, the counters say the GPU decoded, a
#     corrupted tile gives EIO on the GPU path too;
#  3. loading through the mount: safetensors safe_open(device="cuda") and transformers
#     from_pretrained (a small Llama made here) give the same tensors as the original files;
#     the Python package (python/): its tests with torch, load_file/safe_open to CUDA equal to
#     safetensors', and wcodec.hf.from_pretrained equal to transformers' (parameters, logits);
#     weights kept compressed (attach_check.py): logits and greedy tokens equal with keep=gpu/host;
#     by URL (url_check.py, a range server here): load_dir/load_file to CUDA, hf.from_pretrained;
#     the compute format and fused GEMV (fused_run.sh: gemv_check.py, fused_check.py);
#     a Hugging Face cache encoded and mounted (hf_check.py: huggingface_hub and transformers);
#  4. with BENCH=1, the GPU benchmarks (key: value lines; into $OUT if set).
# BUILD_DIR (default build-cuda) holds a CUDA build; libraries the machine lacks may sit in
# $WCODEC_LIBS. DATA_DIR holds real .wcodec containers (optional). Ends 'N passed, N failed'.
set -u
B=$(realpath "${1:-build-cuda}"); DATA=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
[ -n "${WCODEC_LIBS:-}" ] && export LD_LIBRARY_PATH=$(realpath "$WCODEC_LIBS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
PY=${PYTHON:-python3}
T=$(mktemp -d /tmp/wcgpu.XXXXXX); M=$T/m; mkdir -p "$M"
trap 'umount -l "$M" 2>/dev/null; rm -rf "$T"' EXIT
pass=0; fail=0
tally() { # tally LOGFILE: adds a sub-run's 'N passed, N failed' (a run that never said it failed)
  local p f; read -r p f < <(awk '/^[0-9]+ passed, [0-9]+ failed/ {p=$1; f=$3; seen=1} END {print p+0, (seen ? f+0 : 1)}' "$1")
  grep -qE '^[0-9]+ passed, [0-9]+ failed' "$1" || { echo "not ok - $1 ended without its tally:"; tail -5 "$1"; }
  pass=$((pass + p)); fail=$((fail + f)); }
t() { local name=$1; shift; if "$@" > "$T/out" 2>&1; then echo "ok - $name"; pass=$((pass+1)); else echo "not ok - $name"; tail -5 "$T/out"; fail=$((fail+1)); fi; }
stat_of() { awk -F': ' -v k="$2" '$1==k {print $2}' "$1/.wcodecfs-stats"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/# GPU: /'

# ---- 1. GPU == CPU
mkdir -p "$T/orig" "$T/src"
"$B/tests/make_fixtures" "$T/orig"
if [ -n "$DATA" ]; then for c in "$DATA"/*.wcodec; do [ -f "$c" ] && "$B/wcodec" decode -q "$c" "$T/orig/$(basename "$c" .wcodec).safetensors"; done; fi
"$B/wcodec" encode -q -j "$(nproc)" "$T/orig" "$T/src"
"$B/wcodec" encode -q --tile-size 4096 "$T/orig/all_dtypes.safetensors" "$T/src_small_tiles.wcodec"
"$B/tests/gpu_check" compare "$T"/src/*.wcodec "$T/src_small_tiles.wcodec" | tee "$T/compare.log" | grep -v "^ok"
tally "$T/compare.log"

# ---- 2. the mount with gpu=on
# gpu_min_batch=1: every miss goes to the GPU, so that this part tests the GPU path alone
t "mount with gpu=on" "$B/wcodecfs" "$T/src" "$M" -o "gpu=on,gpu_min_batch=1,index_dir=$T/index,readahead=4"
for f in $(cd "$T/orig" && ls *.safetensors); do t "gpu=on: cmp $f" cmp "$T/orig/$f" "$M/$f"; done
t "the GPU decoded (tiles_decoded_gpu > 0, cpu = 0)" test "$(stat_of "$M" tiles_decoded_gpu)" -gt 0 -a "$(stat_of "$M" tiles_decoded_cpu)" -eq 0
t "16 threads x random reads on the GPU path" "$B/tests/fs_check" random "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors" 16 300
umount "$M"
cp -r "$T/src" "$T/bad"; c=$T/bad/big_bf16.wcodec; size=$(stat -c %s "$c")
printf '\x55' | dd of="$c" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
t "mount a corrupted container with gpu=on" "$B/wcodecfs" "$T/bad" "$M" -o "gpu=on,gpu_min_batch=1,index_dir=$T/index2,readahead=0"
"$B/tests/fs_check" ranges "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors" 65536 > "$T/ranges" 2>&1
t "gpu=on: good ranges identical" grep -q "ranges: [0-9]* failed, 0 wrong" "$T/ranges"
nf=$(grep -c "^fail .* Input/output error" "$T/ranges")
t "gpu=on: the bad tile's range fails with EIO ($nf x 64 KiB)" test "$nf" -ge 1 -a "$nf" -le 5
umount "$M"

# ---- 3. loaders through the mount
if $PY -c "import torch, safetensors, transformers" 2>/dev/null; then
  mkdir -p "$T/llm"
  $PY - "$T/llm" <<'PY'
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=8, vocab_size=32000, torch_dtype="bfloat16")
LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(sys.argv[1], safe_serialization=True)
PY
  "$B/wcodec" encode -q -j "$(nproc)" "$T/llm" "$T/llama.wc" # the Llama alone, for wcodec.hf
  cp "$T/orig/big_bf16.safetensors" "$T/orig/all_dtypes.safetensors" "$T/llm/" 2>/dev/null
  "$B/wcodec" encode -q -j "$(nproc)" "$T/llm" "$T/llm.wc"
  # the Python package: its own tests (torch's CPU path included), then the CUDA path
  export WCODEC_LIBRARY=$B/libwcodec.so WCODEC_BIN=$B/wcodec
  t "python package tests (numpy, torch CPU)" $PY "$HERE/../python/test_wcodec.py"
  PYTHONPATH=$HERE/../../python $PY "$HERE/py_check.py" "$T/llm" "$T/llm.wc" "$T/llm" "$T/llama.wc" > "$T/py.log" 2>&1
  grep -v "^[0-9]* passed" "$T/py.log"; tally "$T/py.log"
  # weights kept compressed (wcodec.torch.attach through wcodec.hf), against transformers
  PYTHONPATH=$HERE/../../python $PY "$HERE/attach_check.py" "$T/llm" "$T/llama.wc" > "$T/attach.log" 2>&1
  grep -v "^[0-9]* passed" "$T/attach.log"; tally "$T/attach.log"
  # the compute format and the fused GEMV (kernels, bit-exactness, bounds), transformers with compute="fused"
  bash "$HERE/fused_run.sh" "$B" > "$T/fused.log" 2>&1
  grep -v "^ok" "$T/fused.log" | grep -v "^[0-9]* passed"; tally "$T/fused.log"
  # a Hugging Face cache encoded and mounted as it is: scan_cache_dir, hf_hub_download, from_pretrained offline
  $PY "$HERE/hf_check.py" "$B" > "$T/hf.log" 2>&1
  grep -E "^(not ok|#)" "$T/hf.log"; tally "$T/hf.log"
  for mode in on off; do
    t "mount the model, gpu=$mode" "$B/wcodecfs" "$T/llm.wc" "$M" -o "gpu=$mode,gpu_min_batch=1,index_dir=$T/index3"
    $PY "$HERE/load_check.py" "$T/llm" "$M" > "$T/load_$mode.log" 2>&1; cat "$T/load_$mode.log" | grep -v "^[0-9]* passed"
    tally "$T/load_$mode.log"
    umount "$M"
  done
  # by URL (this machine has no nginx: a small range server): load_dir/load_file to the GPU and
  # wcodec.hf.from_pretrained, against the raw files and transformers
  "$B/wcodec" manifest "$T/llm.wc" && "$B/wcodec" manifest "$T/llama.wc"
  $PY "$HERE/range_server.py" "$T" "$T/port" "$T/http.log" & SRV=$!
  for i in $(seq 50); do [ -s "$T/port" ] && break; sleep 0.1; done
  PYTHONPATH=$HERE/../../python $PY "$HERE/url_check.py" "$T/llm" "http://127.0.0.1:$(cat "$T/port")/" "$T/http.log" > "$T/url.log" 2>&1
  grep -v "^[0-9]* passed" "$T/url.log"; tally "$T/url.log"
  kill "$SRV"
else
  echo "# torch/safetensors/transformers missing: loader checks skipped"
fi

# ---- 4. benchmarks
if [ "${BENCH:-0}" = 1 ]; then
  R=$T/bench; mkdir -p "$R"
  $PY "$HERE/../bench/repeat_model.py" "$T/orig/use-lite.bf16.safetensors" "${COPIES:-100}" "$R/model.safetensors"
  "$B/wcodec" encode -q -j "$(nproc)" "$R/model.safetensors" "$R/model.wcodec"
  { echo "model: use-lite.bf16 tensors x ${COPIES:-100}, $(stat -c %s "$R/model.safetensors") bytes"
    "$B/tests/gpu_check" bench "$R/model.wcodec" "$R/model.safetensors"
    "$B/wcodec" bench -j "$(nproc)" "$R/model.safetensors" | grep -E "decode_GBps"
    for ra in 8 64; do
      for mode in on off; do
        best=0
        for rep in 1 2; do # best of two fresh mounts: that machine is noisy
          "$B/wcodecfs" "$R" "$M" -o "gpu=$mode,index_dir=$T/index4,cache_size=4G,readahead=$ra" 2>/dev/null
          sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
          t0=$(date +%s.%N); dd if="$M/model.safetensors" of=/dev/null bs=1M status=none; t1=$(date +%s.%N)
          r=$(awk -v s="$(stat -c %s "$R/model.safetensors")" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", s/(b-a)/1e6}')
          [ "$r" -gt "$best" ] && { best=$r; split="gpu $(stat_of "$M" tiles_decoded_gpu), cpu $(stat_of "$M" tiles_decoded_cpu)"; }
          umount "$M"
        done
        echo "mount_gpu_${mode}_readahead_${ra}_cold_seq_MBps: $best (best of 2; tiles decoded: $split)"
      done
    done
    read -r off len < <($PY -c "
import json,struct,sys; b=open('$R/model.safetensors','rb').read(1<<24); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n])
k,v=max(((k,v) for k,v in h.items() if k!='__metadata__'), key=lambda kv: kv[1]['data_offsets'][1]-kv[1]['data_offsets'][0]); print(8+n+v['data_offsets'][0], v['data_offsets'][1]-v['data_offsets'][0])")
    for mode in on off; do
      "$B/wcodecfs" "$R" "$M" -o "gpu=$mode,index_dir=$T/index4,readahead=0" 2>/dev/null
      cat "$M/.wcodecfs-stats" > /dev/null
      t0=$(date +%s.%N); "$B/tests/fs_check" direct "$M/model.safetensors" "$off" "$len"; t1=$(date +%s.%N)
      echo "mount_gpu_${mode}_one_tensor_ms: $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", (b-a)*1e3}') ($len bytes, O_DIRECT, readahead=0)"
      umount "$M"
    done
    for mode in on off; do
      [ -f "$T/load_$mode.log" ] && grep -E "^(safe_open_cuda model|transformers)" "$T/load_$mode.log" | sed -E "s/^safe_open_cuda model.safetensors: /safe_open_cuda: /; s/^/load_gpu_${mode}_/"
    done
  } | tee "$T/bench.txt"
  bash "$HERE/../bench/gpu_section.sh" "$T/bench.txt"
  [ -n "${OUT:-}" ] && cp "$T/bench.txt" "$OUT/gpu_bench.txt" && cp "$HERE/../../docs/BENCHMARKS.md" "$OUT/"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
