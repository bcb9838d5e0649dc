#!/usr/bin/env bash
# fs_bench.sh [BF16_FILE] - the mount benchmark, side by side in one run; writes the section
# "## Filesystem ($HEADING)" of docs/BENCHMARKS.md (HEADING defaults to this machine's CPU).
# A real BF16 file (default ../shared/data/use-lite.bf16.safetensors) has its tensors repeated
# COPIES times (default 20) into one model file, stored under DIR (default /dev/shm: tmpfs, so
# that storage is out of the way and the figures show the daemon's own ceiling):
#  - the original file read directly ("local"), the same daemon serving raw-stored containers
#    (`wcodec encode --raw`: the FUSE path without decode), and serving coded containers, with
#    gpu=off and, where a GPU is usable, gpu=on;
#  - cold sequential reads (fresh mount, page cache dropped) by 1, 4 and 8 readers, each reader
#    `dd bs=1M` over its own slice of the file, and by 4 and 8 readers of the same weights as a
#    model in 8 files; warm (page cache) by 1 and 4 readers; the one cold reader's own system
#    time against the elapsed time (near 100%: the reader's thread is the limit);
#  - the daemon's CPU seconds (user + system) per GB served, in the 1-reader cold read;
#  - with torch and a CUDA device: safetensors safe_open(device="cuda") of every tensor, cold;
#  - random 4 KiB and 1 MiB O_DIRECT reads per second (4 threads, 5 s);
#  - a one-tensor read: bytes decoded / tensor bytes; peak RSS against cache_size.
# Needs root (for drop_caches and the mount's read-ahead window) and /dev/fuse.
# Environment: COPIES, REPS (runs per MB/s figure, the best kept; default 3), DIR, HEADING, PYTHON (an interpreter with torch+safetensors, for the
# safe_open rows; default python3), WCODEC_LIBS (extra shared libraries), BUILD (default build).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${BUILD:-build}
PY_LIBS=${LD_LIBRARY_PATH:-} # Python and torch keep their own libraries, not WCODEC_LIBS
[ -n "${WCODEC_LIBS:-}" ] && export LD_LIBRARY_PATH=$(realpath "$WCODEC_LIBS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
[ -x "$B/wcodecfs" ] && [ -x "$B/tests/fs_check" ] || { cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$B" -j"$(nproc)" >/dev/null; }
SRC=${1:-../shared/data/use-lite.bf16.safetensors}; COPIES=${COPIES:-20}; PY=${PYTHON:-python3}
NP=/usr/bin/python3; [ -x "$NP" ] || NP=python3 # the model builder needs only the standard library
T=$(mktemp -d "${DIR:-/dev/shm}/wcfs-bench.XXXXXX"); M=$T/m; mkdir -p "$M" "$T/orig"
unmount() { fusermount3 -u "$1" 2>/dev/null || umount "$1"; }
# under set -e a failing command in the trap would end it before the rm: nothing may fail here
cleanup() { fusermount3 -u -z "$M" 2>/dev/null || umount -l "$M" 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
$NP tests/bench/repeat_model.py "$SRC" "$COPIES" "$T/orig/model.safetensors"
F=model.safetensors; SIZE=$(stat -c %s "$T/orig/$F")
# the same weights as a sharded model: 8 files of COPIES/8 copies each (one folder per kind)
mkdir -p "$T/orig/shards"; $NP tests/bench/repeat_model.py "$SRC" $(( COPIES >= 8 ? COPIES / 8 : 1 )) "$T/orig/shards/s0.safetensors"
for i in 1 2 3 4 5 6 7; do cp "$T/orig/shards/s0.safetensors" "$T/orig/shards/s$i.safetensors"; done
SHARDS=$(( 8 * $(stat -c %s "$T/orig/shards/s0.safetensors") ))
"$B/wcodec" encode -q -j "$(nproc)" "$T/orig" "$T/coded"; "$B/wcodec" encode -q --raw "$T/orig" "$T/raw"
# freshly written pages read slowly the first times on some VMs: settle them before timing
for k in 1 2 3; do find "$T/orig" "$T/coded" "$T/raw" -type f -exec cat {} + > /dev/null; done

drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && echo dropped || echo "not dropped"; }
now() { date +%s.%N; }
mbps() { awk -v s="$1" -v a="$2" -v b="$3" 'BEGIN {printf "%.0f", s / (b - a) / 1e6}'; }
readers() { # MB/s of N concurrent `dd bs=1M` readers, each over its own slice of FILE
  local file=$1 n=$2 mib=$(( (SIZE + 1048575) >> 20 )) t0 i
  local per=$(( (mib + n - 1) / n ))
  t0=$(now)
  for ((i = 0; i < n; i++)); do dd if="$file" of=/dev/null bs=1M skip=$((i * per)) count=$per status=none & done
  wait
  mbps "$SIZE" "$t0" "$(now)"; }
shard_readers() { # MB/s of N concurrent readers over the 8 shards under DIR, 8/N shards each
  local dir=$1 n=$2 t0 i j
  t0=$(now)
  for ((i = 0; i < n; i++)); do
    (for ((j = i; j < 8; j += n)); do dd if="$dir/s$j.safetensors" of=/dev/null bs=1M status=none; done) &
  done
  wait
  mbps "$SHARDS" "$t0" "$(now)"; }
reader_busy() { # one cold reader of FILE: its system CPU time as a % of the elapsed time
  local t; TIMEFORMAT='%R %S'
  t=$( { time dd if="$1" of=/dev/null bs=1M status=none; } 2>&1 )
  awk -v r="${t% *}" -v s="${t#* }" 'BEGIN {printf "%.0f", 100 * s / r}'; }
rnd() { "$B/tests/fs_check" randread "$1" "$2" 5 4 | awk '{print $2}'; }
mnt() { "$B/wcodecfs" "$1" "$M" -o "index_dir=$T/index,cache_size=${2:-1G}${3:+,$3}" 2>>"$T/mount.log"; }
stat_of() { awk -F': ' -v k="$2" '$1==k {print $2}' "$1/.wcodecfs-stats"; }
daemon_pid() { pgrep -f "wcodecfs $1 $M" | head -1; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$1/stat"; }
has_gpu=0; command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && has_gpu=1
has_torch=0; [ $has_gpu = 1 ] && LD_LIBRARY_PATH=$PY_LIBS $PY -c "import torch, safetensors; assert torch.cuda.is_available()" 2>/dev/null && has_torch=1
safe_open_cuda() { # GB/s of safe_open(device="cuda") reading every tensor of FILE
  LD_LIBRARY_PATH=$PY_LIBS $PY - "$1" "$SIZE" <<'PY'
import sys, time, torch
from safetensors import safe_open
torch.cuda.init(); torch.zeros(1, device="cuda")
t0 = time.perf_counter()
with safe_open(sys.argv[1], framework="pt", device="cuda") as f:
    ts = [f.get_tensor(k) for k in f.keys()]
torch.cuda.synchronize()
print("%.2f" % (int(sys.argv[2]) / (time.perf_counter() - t0) / 1e9))
PY
}

declare -A R
# columns: local, raw-stored, coded (gpu=off), coded with push=256M on 8 or more CPUs (pushing
# needs idle cores), coded gpu=on (GPU machines)
cols=(local raw coded); [ "$(nproc)" -ge 8 ] && cols+=(coded_push); [ $has_gpu = 1 ] && cols+=(coded_gpu)
src_of() { case $1 in raw) echo "$T/raw" ;; *) echo "$T/coded" ;; esac; }
opts_of() { case $1 in coded_gpu) echo gpu=on ;; coded_push) echo gpu=off,push=256M ;; *) echo gpu=off ;; esac; }
# a cold read by the column's reader: local file (page cache dropped) or a fresh mount
cold() { # COL what... : what = readers FILE N | shard_readers DIR N | reader_busy FILE, paths under the mount
  local col=$1; shift
  if [ "$col" = local ]; then drop >/dev/null; "$@"; return; fi
  mnt "$(src_of "$col")" 1G "$(opts_of "$col")"; drop >/dev/null; "$@"; unmount "$M"; }
best() { # the best of REPS (default 3) runs of a MB/s measurement: the machines here are noisy
  local b=0 v k; for ((k = 0; k < ${REPS:-3}; k++)); do v=$("$@"); b=$(awk -v a="$b" -v v="$v" 'BEGIN {print (v + 0 > a + 0) ? v : a}'); done; echo "$b"; }
cache_state=$(drop)
for col in "${cols[@]}"; do
  d=$M; [ "$col" = local ] && d=$T/orig
  for n in 1 4 8; do
    R[$col,cold$n]=$(best cold "$col" readers "$d/$F" "$n")
    [ $n = 1 ] || R[$col,shard$n]=$(best cold "$col" shard_readers "$d/shards" "$n")
  done
  R[$col,busy]=$(cold "$col" reader_busy "$d/$F")
  if [ "$col" = local ]; then
    R[$col,cpu]=-; readers "$d/$F" 1 >/dev/null # warm the page cache
  else # daemon CPU time over one cold read; the counters say who decoded; the mount stays for warm reads
    mnt "$(src_of "$col")" 1G "$(opts_of "$col")"; drop >/dev/null
    pid=$(daemon_pid "$(src_of "$col")"); c0=$(cpu_s "$pid")
    readers "$M/$F" 1 >/dev/null
    R[$col,cpu]=$(awk -v a="$c0" -v b="$(cpu_s "$pid")" -v s="$SIZE" 'BEGIN {printf "%.3f", (b - a) / (s / 1e9)}')
    R[$col,split]="cpu $(stat_of "$M" tiles_decoded_cpu), gpu $(stat_of "$M" tiles_decoded_gpu)"
  fi
  R[$col,warm1]=$(best readers "$d/$F" 1); R[$col,warm4]=$(best readers "$d/$F" 4)
  [ "$col" = local ] || unmount "$M"
  if [ $has_torch = 1 ]; then
    R[$col,st]=$(best cold "$col" safe_open_cuda "$d/$F")
  fi
  if [ "$col" = local ]; then R[$col,r4k]=$(rnd "$T/orig/$F" 4096); R[$col,r1m]=$(rnd "$T/orig/$F" 1048576)
  else
    mnt "$(src_of "$col")" 1G "$(opts_of "$col")"; R[$col,r4k]=$(rnd "$M/$F" 4096); unmount "$M"
    mnt "$(src_of "$col")" 1G "$(opts_of "$col")"; R[$col,r1m]=$(rnd "$M/$F" 1048576); unmount "$M"
  fi
done

# one tensor, no read-ahead, O_DIRECT: what got decoded for it
read -r off len name < <($NP - "$T/orig/$F" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(1 << 22); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
k, v = max(((k, v) for k, v in h.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0])
print(8 + n + v["data_offsets"][0], v["data_offsets"][1] - v["data_offsets"][0], k)
PY
)
mnt "$T/coded" 1G "readahead=0,gpu=off"; "$B/tests/fs_check" direct "$M/$F" "$off" "$len"
dec=$(stat_of "$M" bytes_decoded); unmount "$M"

# peak RSS vs cache_size: O_DIRECT reads of every range, twice, so that tiles stay cached
rss_rows=()
for cs in 32M 128M; do
  mnt "$T/coded" "$cs" gpu=off
  for k in 1 2; do "$B/tests/fs_check" ranges "$T/orig/$F" "$M/$F" 1048576 >/dev/null; done
  pid=$(daemon_pid "$T/coded"); hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  peak=$(stat_of "$M" cache_peak_bytes); unmount "$M"
  rss_rows+=("| $cs | $((peak >> 20)) MiB | $((hwm >> 10)) MiB |")
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
row() { # row LABEL KEY: one table row over the columns, then coded/raw and coded/local
  local line="| $1 |" c
  for c in "${cols[@]}"; do line+=" ${R[$c,$2]:--} |"; done
  echo "$line $(ratio "${R[coded,$2]:-0}" "${R[raw,$2]:-0}") | $(ratio "${R[coded,$2]:-0}" "${R[local,$2]:-0}") |"; }
cpu=$(lscpu | awk -F': *' '/Model name/ {print $2; exit}')
machine="$cpu, $(nproc) cores, $(uname -r), $(date -u +%F)"
[ $has_gpu = 1 ] && machine+=", $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
storage=$(df --output=fstype "$T" | tail -1)
{
  echo "Command: \`bash tests/bench/fs_bench.sh\` (as root; COPIES=$COPIES). Machine: $machine."
  echo "File: $(basename "$SRC") tensors repeated $COPIES times, $SIZE bytes of real BF16 weights;"
  echo "the container is $(stat -c %s "$T/coded/model.wcodec") bytes. Containers and the local file on $storage. Page"
  echo "cache before cold reads: $cache_state. \"raw-stored\" is the same daemon serving \`wcodec encode --raw\`"
  echo "containers: the same FUSE path and cache, no decode. Default mount options (kernel_readahead=16M,"
  echo "1 GiB cache, no pushing). N readers: N \`dd bs=1M\` at once, each over its own 1/N of the file; MB/s of all,"
  echo "the best of ${REPS:-3} runs (each cold run on a fresh mount)."
  echo "The sharded model: 8 files of $((SHARDS / 8)) bytes (the same weights, $(( COPIES >= 8 ? COPIES / 8 : 1 )) copies each)."
  echo "A reader whose own system time is near 100% of the elapsed time is limited by its own kernel"
  echo "work (page cache and FUSE requests, done in the reader's thread), not by the daemon."
  echo
  hdr="| | local file | raw-stored mount | coded mount |"; sep="|---|---|---|---|"
  [ "$(nproc)" -ge 8 ] && { hdr+=" coded mount, push=256M |"; sep+="---|"; }
  [ $has_gpu = 1 ] && { hdr+=" coded mount, gpu=on |"; sep+="---|"; }
  echo "$hdr coded / raw-stored | coded / local |"; echo "$sep---|---|"
  row "cold, 1 reader, MB/s" cold1
  row "cold, 4 readers, MB/s" cold4
  row "cold, 8 readers, MB/s" cold8
  row "cold, 4 readers of a model in 8 files (2 files each), MB/s" shard4
  row "cold, 8 readers of a model in 8 files (1 file each), MB/s" shard8
  row "cold, 1 reader: its own system CPU time, % of elapsed" busy
  row "warm (page cache), 1 reader, MB/s" warm1
  row "warm (page cache), 4 readers, MB/s" warm4
  row "daemon CPU s per GB, cold 1 reader" cpu
  [ $has_torch = 1 ] && row "safe_open(device=\"cuda\") every tensor, cold, GB/s" st
  row "random 4 KiB O_DIRECT reads/s (4 threads)" r4k
  row "random 1 MiB O_DIRECT reads/s (4 threads)" r1m
  echo
  echo "Tiles decoded in the cold 1-reader read: coded ${R[coded,split]}${R[coded_gpu,split]:+; gpu=on ${R[coded_gpu,split]}}."
  echo
  echo "One-tensor read (\`$name\`, $len bytes, O_DIRECT, readahead=0): $dec bytes decoded,"
  echo "$(ratio "$dec" "$len") x the tensor (whole tiles; no tile outside the tensor)."
  echo
  echo "Peak memory of the daemon reading every 1 MiB range twice with O_DIRECT (tiles stay"
  echo "cached; the file is larger than the cache):"
  echo
  echo "| cache_size | cache peak | daemon peak RSS (VmHWM) |"
  echo "|---|---|---|"
  printf '%s\n' "${rss_rows[@]}"
} > "$T/section.md"
cat "$T/section.md"
bash tests/bench/put_section.sh docs/BENCHMARKS.md "## Filesystem (${HEADING:-$cpu, $(nproc) cores})" < "$T/section.md"
[ -n "${OUT:-}" ] && cp "$T/section.md" "$OUT/fs_bench.md" && cp "$T/mount.log" "$OUT/" 2>/dev/null
echo "wrote docs/BENCHMARKS.md" >&2
