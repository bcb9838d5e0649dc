#!/usr/bin/env bash
# run.sh [DATA_DIR...] - the codec benchmark; writes docs/BENCHMARKS.md (codec section).
# For each .safetensors in the given folders (default: ../shared/data, plus $WCODEC_BENCH_DATA,
# e.g. the output of ../shared/data/fetch.sh OUT --large): our ratio next to zstd -19 and next
# to the order-0 bound of our byte planes; our encode MB/s; our decode GB/s on one thread next
# to `zstd -b -d` (in-memory decompression, one thread) of the same file, in the same run.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x build/wcodec ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$(nproc)" >/dev/null; }
dirs=("$@"); [ ${#dirs[@]} -gt 0 ] || dirs=(../shared/data ${WCODEC_BENCH_DATA:-})
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
rows=()
for d in "${dirs[@]}"; do
  for f in "$d"/*.safetensors; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .safetensors)
    case " ${seen:-} " in *" $name "*) continue;; esac; seen="${seen:-} $name"
    echo "bench: $name" >&2
    build/wcodec bench -j "$(nproc)" "$f" > "$T/ours"
    get() { awk -F': ' -v k="$1" '$1==k {print $2}' "$T/ours"; }
    zstd -19 -T"$(nproc)" -q -f "$f" -o "$T/z.zst"
    src=$(stat -c %s "$f"); zsz=$(stat -c %s "$T/z.zst")
    zdec=$(zstd -b -d -i3 "$T/z.zst" 2>&1 | tr '\r' '\n' | grep -o '[0-9.]* MB/s *$' | tail -1 | awk '{print $1/1000}')
    ours_dec=$(get decode_GBps_1thread)
    rows+=("| $name | $src | $(get ratio) | $(awk -v a="$zsz" -v b="$src" 'BEGIN{printf "%.4f", a/b}') | $(get order0_bound_ratio) | $(get encode_MBps_1thread) | $ours_dec | $zdec | $(awk -v a="$ours_dec" -v b="$zdec" 'BEGIN{printf "%.2f", a/b}') | $(get decode_GBps_$(nproc)threads || true) |")
  done
done
i8=""
for d in "${dirs[@]}"; do [ -f "$d/use-lite.int8.safetensors" ] && { i8=$(/usr/bin/python3 tests/bench/i8_predictors.py "$d/use-lite.int8.safetensors"); break; }; done
machine="$(lscpu | awk -F': *' '/Model name/ {print $2; exit}'), $(nproc) cores, $(uname -r), $(date -u +%F)"
{
  echo "Command: \`bash tests/bench/run.sh ../shared/data /path/to/fetch.sh/output\`."
  echo "Machine: $machine."
  echo
  echo "Ratios are container/source (lower is better). \"order-0 bound\" is the entropy of our byte"
  echo "planes per tensor, i.e. the best a per-tensor order-0 coder of these planes could reach."
  echo "Decode is memory to memory (payloads preloaded), one thread, output bytes per second, next"
  echo "to \`zstd -b -d\` decompressing the \`zstd -19\` file of the same source, also in memory on one"
  echo "thread, measured in the same run. Encode is one thread, to a file on local disk."
  echo
  echo "| file | bytes | ours | zstd -19 | order-0 bound | encode MB/s | decode GB/s | zstd -d GB/s | decode vs zstd | decode GB/s, $(nproc) threads |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  if [ -n "$i8" ]; then
    echo
    echo "### I8 prediction"
    echo
    echo "Order-0 entropy of use-lite.int8's I8 weights and of the residuals of the seed design's"
    echo "predictors over the 2-D view (\`python3 tests/bench/i8_predictors.py FILE\`), per 256 KiB tile;"
    echo "\"best per tile\" picks the best of the five for each tile:"
    echo
    echo '```'
    echo "$i8"
    echo '```'
    echo
    echo "No predictor wins on any tile of real quantized weights (neighbouring weights are nearly"
    echo "independent), so the codec keeps none: I8 bytes are entropy-coded as they are."
  fi
} | bash tests/bench/put_section.sh docs/BENCHMARKS.md "## Codec (CPU)"
echo "wrote docs/BENCHMARKS.md" >&2
