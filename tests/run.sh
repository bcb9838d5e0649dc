#!/usr/bin/env bash
# run.sh - every test: installs dependencies, then builds and runs the unit, integration and CLI
# tests twice (optimized, then under AddressSanitizer + UBSan), then runs each fuzzer briefly.
#   FUZZ_SECONDS=30 (default) per fuzz target; 0 skips fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash mount-scripts/install-deps.sh
jobs=$(nproc)
log=$(mktemp); trap 'rm -f "$log"' EXIT
# ctest, with its summary kept for the closing tally
run_ctest() { ctest --test-dir "$1" --output-on-failure -j"$jobs" 2>&1 | tee -a "$log"; }

# The CUDA decoder is compiled where nvcc is (CI has it, and no GPU: its tests run on a GPU
# machine with tests/gpu/run.sh); everything else is tested here.
cuda=()
for nvcc in "$(command -v nvcc || true)" /usr/local/cuda/bin/nvcc; do
  [ -x "$nvcc" ] && { cuda=(-DCMAKE_CUDA_COMPILER="$nvcc"); break; }
done

echo "== release build + tests${cuda:+ (with the CUDA decoder)}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "${cuda[@]}" >/dev/null
cmake --build build -j"$jobs"
run_ctest build

echo "== AddressSanitizer + UBSan build + tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWC_SANITIZE=ON -DWC_CUDA=OFF >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 run_ctest build-asan

if [ "${FUZZ_SECONDS:-30}" != 0 ]; then
  echo "== fuzzers (libFuzzer, ${FUZZ_SECONDS:-30}s each)"
  CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWC_FUZZ=ON >/dev/null
  cmake --build build-fuzz -j"$jobs" --target fuzz_safetensors fuzz_container fuzz_manifest fuzz_s3_list
  WCODEC=build/wcodec bash tests/fuzz/run.sh build-fuzz "${FUZZ_SECONDS:-30}"
fi
awk '/tests passed, [0-9]+ tests failed out of/ {t += $NF; f += $(NF-5)}
     END {printf "%d passed, %d failed\n", t - f, f}' "$log"
