#!/usr/bin/env bash
# soak.sh - the mount under a long mixed load: 16 readers of random ranges over 4 files (half
# of them O_DIRECT, past the kernel's page cache), the cache at a tenth of the data, a fresh
# mount every ROUND seconds, for DURATION seconds in all. Every byte read is compared with the
# original; the daemon's peak memory is read each round. Fails on any mismatch or on a daemon
# above cache_size + 96 MiB (its fixed overhead with this many readers in flight). Writes the section "## Soak ($HEADING)" of docs/BENCHMARKS.md.
# Environment: DURATION (default 600), ROUND (default 60), DIR (default /dev/shm), HEADING,
# BUILD (default build). Needs /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${BUILD:-build}; DURATION=${DURATION:-600}; ROUND=${ROUND:-60}
NP=/usr/bin/python3; [ -x "$NP" ] || NP=python3
T=$(mktemp -d "${DIR:-/dev/shm}/wcfs-soak.XXXXXX"); M=$T/m; mkdir -p "$M" "$T/orig"
# under set -e a failing command in the trap would end it before the rm: nothing may fail here
cleanup() { fusermount3 -u -z "$M" 2>/dev/null || umount -l "$M" 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
SRC=../shared/data/use-lite.bf16.safetensors
for i in 0 1 2 3; do $NP tests/bench/repeat_model.py "$SRC" $((3 + i)) "$T/orig/f$i.safetensors"; done
"$B/wcodec" encode -q -j "$(nproc)" "$T/orig" "$T/src"
total=$(du -cb "$T"/orig/*.safetensors | tail -1 | cut -f1)
cache=$(( total / 10 )); limit=$(( cache + (96 << 20) ))
rounds=0 reads=0 bytes=0 bad=0 peak=0 t_end=$(( $(date +%s) + DURATION ))
while [ "$(date +%s)" -lt "$t_end" ]; do
  "$B/wcodecfs" "$T/src" "$M" -o "index_dir=$T/index,cache_size=$cache,log=$T/log"
  pid=$(pgrep -f "wcodecfs $T/src $M" | head -1)
  left=$(( t_end - $(date +%s) )); secs=$(( left < ROUND ? left : ROUND )); [ "$secs" -lt 1 ] && secs=1
  for i in 0 1 2 3; do
    "$B/tests/fs_check" soak "$T/orig/f$i.safetensors" "$M/f$i.safetensors" 4 "$secs" "$((rounds * 4 + i))" > "$T/r$i" 2>&1 &
  done
  wait || true
  hwm=$(awk '/VmHWM/ {print $2 * 1024}' "/proc/$pid/status")
  fusermount3 -u "$M" 2>/dev/null || umount "$M"
  for i in 0 1 2 3; do
    read -r r b m < <(awk '/^soak:/ {print $2, $4, $6}' "$T/r$i")
    reads=$((reads + ${r:-0})); bytes=$((bytes + ${b:-0})); bad=$((bad + ${m:-1}))
    [ "${m:-1}" = 0 ] || sed 's/^/# /' "$T/r$i" | head -5
  done
  [ "$hwm" -gt "$peak" ] && peak=$hwm
  rounds=$((rounds + 1))
  echo "round $rounds: peak RSS $((hwm >> 20)) MiB, mismatches so far $bad"
done
cpu=$(lscpu | awk -F': *' '/Model name/ {print $2; exit}')
{
  echo "Command: \`bash tests/bench/soak.sh\` (DURATION=$DURATION, ROUND=$ROUND). Machine: $cpu, $(nproc) cores, $(uname -r), $(date -u +%F)."
  echo "4 files of real BF16 weights (use-lite.bf16 repeated 3 to 6 times), $total bytes in all, on"
  echo "$(df --output=fstype "$T" | tail -1); cache_size $cache bytes (a tenth); 16 readers (4 per file, half O_DIRECT) of"
  echo "random ranges (a quarter up to 4 MiB, the rest up to 64 KiB), a fresh mount every $ROUND s."
  echo
  echo "| rounds (mounts) | reads | bytes read | mismatches | daemon peak RSS | bound (cache_size + 96 MiB) |"
  echo "|---|---|---|---|---|---|"
  echo "| $rounds | $reads | $bytes | $bad | $((peak >> 20)) MiB | $((limit >> 20)) MiB |"
} > "$T/section.md"
cat "$T/section.md"
bash tests/bench/put_section.sh docs/BENCHMARKS.md "## Soak (${HEADING:-$cpu, $(nproc) cores})" < "$T/section.md"
[ "$bad" -eq 0 ] && [ "$peak" -le "$limit" ]
