#!/usr/bin/env bash
# fs_bench.sh [BF16_FILE] - the mount benchmark; writes docs/BENCHMARKS.md "## Filesystem".
# A real BF16 file (default ../shared/data/use-lite.bf16.safetensors) has its tensors repeated
# COPIES times (default 20) into one larger model file. In one run, side by side:
#  - the same daemon serving it coded, and serving raw-stored containers (`wcodec encode --raw`:
#    the same FUSE path without decode), and the original file on local disk;
#  - sequential `dd bs=1M`, cold (fresh mount, page cache dropped where allowed) and warm;
#  - random 4 KiB and 1 MiB O_DIRECT reads per second (4 threads, 5 s, fresh mount);
#  - a one-tensor read: bytes decoded / tensor bytes;
#  - peak RSS of the daemon reading the file twice, vs cache_size.
# Needs root (or the fuse group) and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x build/wcodecfs ] && [ -x build/tests/fs_check ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$(nproc)" >/dev/null; }
SRC=${1:-../shared/data/use-lite.bf16.safetensors}; COPIES=${COPIES:-20}
T=$(mktemp -d /tmp/wcfs-bench.XXXXXX); M=$T/m; mkdir -p "$M" "$T/orig"
trap 'fusermount3 -u -z "$M" 2>/dev/null; rm -rf "$T"' EXIT
/usr/bin/python3 tests/bench/repeat_model.py "$SRC" "$COPIES" "$T/orig/model.safetensors"
F=model.safetensors; SIZE=$(stat -c %s "$T/orig/$F")
build/wcodec encode -q "$T/orig" "$T/coded"; build/wcodec encode -q --raw "$T/orig" "$T/raw"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && echo dropped || echo "not dropped"; }
rate() { # MB/s of dd bs=1M over FILE
  local t0 t1; t0=$(date +%s.%N); dd if="$1" of=/dev/null bs=1M status=none; t1=$(date +%s.%N)
  awk -v s="$SIZE" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", s / (b - a) / 1e6}'; }
rnd() { build/tests/fs_check randread "$1" "$2" 5 4 | awk '{print $2}'; }
mnt() { build/wcodecfs "$1" "$M" -o "index_dir=$T/index,cache_size=${2:-1G}${3:+,$3}" 2>/dev/null; }
stat_of() { awk -F': ' -v k="$2" '$1==k {print $2}' "$1/.wcodecfs-stats"; }

declare -A cold warm r4k r1m
for mode in coded raw; do
  mnt "$T/$mode"; cache_state=$(drop); cold[$mode]=$(rate "$M/$F"); warm[$mode]=$(rate "$M/$F"); fusermount3 -u "$M"
  mnt "$T/$mode"; r4k[$mode]=$(rnd "$M/$F" 4096); fusermount3 -u "$M"
  mnt "$T/$mode"; r1m[$mode]=$(rnd "$M/$F" 1048576); fusermount3 -u "$M"
done
drop >/dev/null; cold[local]=$(rate "$T/orig/$F"); warm[local]=$(rate "$T/orig/$F")
r4k[local]=$(rnd "$T/orig/$F" 4096); r1m[local]=$(rnd "$T/orig/$F" 1048576)

# one tensor, no read-ahead, O_DIRECT: what got decoded for it
read -r off len name < <(/usr/bin/python3 - "$T/orig/$F" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(1 << 22); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
k, v = max(((k, v) for k, v in h.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0])
print(8 + n + v["data_offsets"][0], v["data_offsets"][1] - v["data_offsets"][0], k)
PY
)
mnt "$T/coded" 1G readahead=0; build/tests/fs_check direct "$M/$F" "$off" "$len"
dec=$(stat_of "$M" bytes_decoded); fusermount3 -u "$M"

# peak RSS vs cache_size
rss_rows=()
for cs in 32M 128M; do
  mnt "$T/coded" "$cs"; cat "$M/$F" "$M/$F" > /dev/null
  pid=$(pgrep -f "wcodecfs $T/coded $M" | head -1); hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  peak=$(stat_of "$M" cache_peak_bytes); fusermount3 -u "$M"
  rss_rows+=("| $cs | $((peak >> 20)) MiB | $((hwm >> 10)) MiB |")
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
machine="$(lscpu | awk -F': *' '/Model name/ {print $2; exit}'), $(nproc) cores, $(uname -r), $(date -u +%F)"
{
  echo "Command: \`bash tests/bench/fs_bench.sh\` (as root). Machine: $machine."
  echo "File: $(basename "$SRC") tensors repeated $COPIES times, $SIZE bytes of real BF16 weights;"
  echo "the container is $(stat -c %s "$T/coded/model.wcodec") bytes. Page cache before cold reads: $cache_state."
  echo "\"raw-stored\" is the same daemon serving \`wcodec encode --raw\` containers: the same FUSE path"
  echo "and cache, no decode. Default mount options (128 KiB FUSE requests, 1 GiB cache)."
  echo
  echo "| | coded mount | raw-stored mount | local file | coded / raw-stored |"
  echo "|---|---|---|---|---|"
  echo "| cold sequential dd bs=1M, MB/s | ${cold[coded]} | ${cold[raw]} | ${cold[local]} | $(ratio "${cold[coded]}" "${cold[raw]}") |"
  echo "| warm sequential (page cache), MB/s | ${warm[coded]} | ${warm[raw]} | ${warm[local]} | $(ratio "${warm[coded]}" "${warm[raw]}") |"
  echo "| random 4 KiB O_DIRECT reads/s (4 threads) | ${r4k[coded]} | ${r4k[raw]} | ${r4k[local]} | $(ratio "${r4k[coded]}" "${r4k[raw]}") |"
  echo "| random 1 MiB O_DIRECT reads/s (4 threads) | ${r1m[coded]} | ${r1m[raw]} | ${r1m[local]} | $(ratio "${r1m[coded]}" "${r1m[raw]}") |"
  echo
  echo "One-tensor read (\`$name\`, $len bytes, O_DIRECT, readahead=0): $dec bytes decoded,"
  echo "$(ratio "$dec" "$len") x the tensor (whole tiles; no tile outside the tensor)."
  echo
  echo "Peak memory of the daemon reading the file twice (a file larger than the cache):"
  echo
  echo "| cache_size | cache peak | daemon peak RSS (VmHWM) |"
  echo "|---|---|---|"
  printf '%s\n' "${rss_rows[@]}"
} | bash tests/bench/put_section.sh docs/BENCHMARKS.md "## Filesystem"
echo "wrote docs/BENCHMARKS.md" >&2
