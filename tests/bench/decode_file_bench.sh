#!/usr/bin/env bash
# decode_file_bench.sh [FILE] [COPIES] - `wcodec decode` against `zstd -d` on the same weights,
# both pinned to one core (taskset -c 0), three rounds alternating; wall seconds and peak resident
# memory (GNU time) of each: to a file (ours is written beside the destination, fsynced and
# renamed, so that a crash never leaves a partial file under the real name; zstd writes in place
# and does not fsync), and to a pipe into /dev/null (the decode alone). FILE: real BF16 weights
# (default ../shared/data/use-lite.bf16.safetensors) repeated COPIES times (default 8: 112 MB);
# needs /usr/bin/python3 with numpy (repeat_model.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
W=$(realpath "${BUILD:-build}")/wcodec
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
/usr/bin/python3 tests/bench/repeat_model.py "${1:-../shared/data/use-lite.bf16.safetensors}" "${2:-8}" "$T/m.safetensors"
"$W" encode -q "$T/m.safetensors" "$T/m.wcodec"
zstd -q -19 -T0 "$T/m.safetensors" -o "$T/m.zst"
echo "file: $(stat -c %s "$T/m.safetensors") bytes; $(nproc) CPUs;$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
t() { /usr/bin/time -f "%e s, %M KiB" -o "$T/$1" taskset -c 0 "${@:2}"; } # t RESULT COMMAND...
for round in 1 2 3; do
  t a "$W" decode -q -f "$T/m.wcodec" "$T/out"; t b zstd -q -f -d "$T/m.zst" -o "$T/zout"
  echo "to a file: wcodec decode $(cat "$T/a") | zstd -d $(cat "$T/b")"
  t a "$W" decode -q "$T/m.wcodec" - > /dev/null; t b zstd -q -d -c "$T/m.zst" > /dev/null
  echo "to a pipe: wcodec decode $(cat "$T/a") | zstd -d $(cat "$T/b")"
done
cmp "$T/out" "$T/m.safetensors" && echo "decoded file identical"
