#!/usr/bin/env bash
# fused_run.sh BUILD_DIR [--bench] - the compute format and the fused kernels on a GPU machine:
# fused_check.py on a small Llama made here (transformers through wcodec.hf, compute="fused"), then
# gemv_check.py and gemm_check.py (kernels, bit-exactness, bounds; with --bench the kernel and
# chain timings).
set -u
B=$(realpath "${1:-build-cuda}"); shift
HERE=$(cd "$(dirname "$0")" && pwd)
export WCODEC_LIBRARY=$B/libwcodec.so WCODEC_BIN=$B/wcodec PYTHONPATH=$HERE/../../python PYTHONUNBUFFERED=1
[ -n "${WCODEC_LIBS:-}" ] && export LD_LIBRARY_PATH=$(realpath "$WCODEC_LIBS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
PY=${PYTHON:-python3}
T=$(mktemp -d /tmp/wcfused.XXXXXX); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
tally() { local p f; read -r p f < <(awk '/^[0-9]+ passed, [0-9]+ failed/ {p=$1; f=$3; seen=1} END {print p+0, (seen ? f+0 : 1)}' "$1")
  pass=$((pass + p)); fail=$((fail + f)); }
$PY - "$T/llm" <<'PY'
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=4, vocab_size=32000, tie_word_embeddings=False)
LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(sys.argv[1], safe_serialization=True)
PY
"$B/wcodec" encode -q "$T/llm" "$T/llm.wc"
$PY "$HERE/fused_check.py" "$T/llm" "$T/llm.wc" 2>&1 | grep -v Warning | tee "$T/fused.log"; tally "$T/fused.log"
if [ -z "${FUSED_ONLY:-}" ]; then # FUSED_ONLY=1: fused_check.py alone
  $PY "$HERE/gemv_check.py" "$@" 2>&1 | grep -v Warning | tee "$T/gemv.log"; tally "$T/gemv.log"
  $PY "$HERE/gemm_check.py" "$@" 2>&1 | grep -v Warning | tee "$T/gemm.log"; tally "$T/gemm.log"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
