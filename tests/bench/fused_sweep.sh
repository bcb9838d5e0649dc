#!/usr/bin/env bash
# fused_sweep.sh BUILD_DIR - the fused kernels' checks and timings on a GPU machine, most needed
# first, each piece run only while $BUDGET seconds (default 540) last: a short lease still brings
# back the first pieces. Logs go to $OUT (or /tmp). Run from the repository root, e.g.
#   WCODEC_LIBS=.carry/libs BUDGET=400 bash tests/bench/fused_sweep.sh build-cuda
# Variants (set_flags in tests/gpu/gemv_check.py): SWEEP (GEMV chains, default: the dispatcher,
# prefetch 2, cluster sums, both), BEST (the variant the later pieces run under, e.g. "-/pf2,cluster";
# unset, the sweep's fastest at batch 1),
# GEMM_TABLE (WCGPU_LINEAR for the GEMM's pieces, default 16,4096: the GEMM for every batch above 16),
# GEMM_CFGS and CHAIN_CFGS (GEMM schedules timed: see use_cfg in tests/gpu/gemm_check.py).
set -u
B=$(realpath "${1:-build-cuda}"); R=$(cd "$(dirname "$0")/../.." && pwd)
START=$(date +%s); BUDGET=${BUDGET:-540}; O=${OUT:-/tmp}
[ -n "${WCODEC_LIBS:-}" ] && export WCODEC_LIBS=$(realpath "$WCODEC_LIBS") LD_LIBRARY_PATH=$(realpath "$WCODEC_LIBS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export WCODEC_LIBRARY=$B/libwcodec.so WCODEC_BIN=$B/wcodec PYTHONPATH=$R/python PYTHONUNBUFFERED=1
left() { echo $((BUDGET - ($(date +%s) - START))); }
# piece NAME LOG NEED CMD...: CMD under what is left of the budget (at most $CAP seconds, where
# set), if NEED seconds are left
piece() { local name=$1 log=$O/$2 need=$3 l; shift 3; l=$(left)
  if [ "$l" -lt "$need" ]; then echo "== $name: skipped ($l s left)"; return; fi
  [ -n "${CAP:-}" ] && [ "$CAP" -lt "$l" ] && l=$CAP
  echo "== $name ($l s)"; timeout "$l" "$@" > "$log" 2>&1
  grep -v Warning "$log" | grep -vE '^ok|^\|---' | tail -60; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
CUOBJ=$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)
[ -x "$CUOBJ" ] && echo "== SASS: $("$CUOBJ" -sass "$B/libwcodec.so" 2>/dev/null | grep -c HGMMA) HGMMA instructions (the wgmma GEMM)"
cd "$R/tests/gpu"
CAP=${GEMM_CHECK_CAP:-150} piece "GEMM checks (mma.sync and wgmma)" gemm.log 30 python3 gemm_check.py
CAP=${GEMV_CHECK_CAP:-120} piece "GEMV checks (prefetch, cluster sums)" gemv.log 30 python3 gemv_check.py
CHECKS=0 KERNELS=0 CHAINS=8b SWEEP=${SWEEP:-"- -/pf2 -/cluster -/pf2,cluster"} \
  piece "GEMV 8B chain, variants" gemv_sweep.log 60 python3 gemv_check.py --bench
if [ -z "${BEST:-}" ] && [ -s "$O/gemv_sweep.log" ]; then # unset: the sweep's best at batch 1
  BEST=$(awk '/^## schedule:/{s=$3} /^\| 1 \|/{split($0,f,"|"); if (f[6]+0 > b) {b = f[6]+0; best = s}} END{print best}' "$O/gemv_sweep.log")
  echo "== BEST, the 8B chain's fastest variant at batch 1: ${BEST:--}"
fi
WCGPU_LINEAR=${GEMM_TABLE:-16,4096} CHECKS=0 CHAINS=8b GEMM_BATCHES=${GEMM_BATCHES:-"32 64 128 256 2048"} \
  GEMM_CFGS=${GEMM_CFGS:-"mma - wg,2,256,1 wg,1,128,1"} CHAIN_CFGS=${CHAIN_CFGS:-"mma -"} \
  CHAIN_BATCHES=${CHAIN_BATCHES:-"16 32 64 128 256 2048"} piece "GEMM kernels and 8B chain" gemm_bench.log 60 python3 gemm_check.py --bench
CHECKS=0 KERNELS=1 CHAINS=1.1b SWEEP="- ${BEST:--}" piece "GEMV kernels, 1.1B chain" gemv_kernels.log 60 python3 gemv_check.py --bench
. <(python3 -c "import sys; sys.path.insert(0, '.'); import os; from gemv_check import set_flags; set_flags('${BEST:--}'); print(' '.join(f'export {k}={v};' for k, v in os.environ.items() if k.startswith('WCGPU_')))")
WCGPU_LINEAR=${GEMM_TABLE:-16,4096} piece "the 8B step (static cache, CUDA graph), prefills" step.log 120 python3 "$R/tests/bench/step_bench.py" 8b 1 4 8 16 64 256
for shape in "14336 4096 1" "4096 4096 1"; do # ncu's DRAM bytes and throughput, fused and cuBLAS, under BEST
  piece "ncu: $shape" "ncu_${shape// /_}.log" 30 ncu --clock-control none --metrics \
    dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,gpu__time_duration.sum \
    python3 "$R/tests/bench/gemv_ncu.py" $shape
done
FUSED_ONLY=1 piece "fused_check (a small Llama through wcodec.hf)" fused_check.log 30 bash "$R/tests/gpu/fused_run.sh" "$B"
echo "== done ($(left) s left)"
