#!/usr/bin/env bash
# long.sh [SECONDS] - the long fuzz run: every parser of untrusted bytes (safetensors header;
# container header and tables, with checksums made right so that the checks behind them are
# reached; the tile decoder; a remote mount's manifest and ListObjectsV2 pages) under libFuzzer with AddressSanitizer and UBSan, SECONDS per target
# (default 600). The corpus is kept in build-fuzz/corpus (CORPUS=DIR to choose), so that runs
# build on each other; a crash leaves its input there (crash-*). CI runs the short version
# (tests/run.sh, 30 s each). Needs clang (mount-scripts/install-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."
S=${1:-600}
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWC_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_safetensors fuzz_container fuzz_manifest fuzz_s3_list >/dev/null
[ -x build/wcodec ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$(nproc)" >/dev/null; }
export CORPUS=${CORPUS:-$PWD/build-fuzz/corpus}; mkdir -p "$CORPUS"
start=$(date +%s)
WCODEC=build/wcodec bash tests/fuzz/run.sh build-fuzz "$S"
echo "long fuzz: ${S}s per target, $(( $(date +%s) - start ))s in all; corpus in $CORPUS:" \
     "$(ls "$CORPUS/safetensors" | wc -l) safetensors inputs, $(ls "$CORPUS/container" | wc -l) container inputs"
