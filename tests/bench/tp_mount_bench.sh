#!/usr/bin/env bash
# tp_mount_bench.sh FILE WCODECFS [WCODECFS ...] - what readers of one mounted file cost the daemon,
# side by side for each wcodecfs binary given (e.g. the builds before and after a change), runs
# alternated: FILE (.safetensors) encoded onto tmpfs (DIR, default /dev/shm), then on a fresh mount
# each run, one `cat` of it and two tensor-parallel ranks at once (tests/fs/tp_ranks.py: rows split
# for one tensor, columns for the next); for each, seconds and bytes decoded / file size
# (.wcodecfs-stats). REPS runs each (default 3). Needs /dev/fuse. WCODEC_BIN: the encoder
# (default build/wcodec).
set -euo pipefail
SRC=$(realpath "${1:?usage: tp_mount_bench.sh FILE WCODECFS [WCODECFS ...]}"); shift
HERE=$(cd "$(dirname "$0")/.." && pwd); W=${WCODEC_BIN:-$HERE/../build/wcodec}
T=$(mktemp -d "${DIR:-/dev/shm}/tp-bench.XXXXXX"); trap 'fusermount3 -u "$T/m" 2>/dev/null; rm -rf "$T"' EXIT
mkdir -p "$T/orig" "$T/m"; cp "$SRC" "$T/orig/model.safetensors"
"$W" encode -q "$T/orig" "$T/src"
size=$(stat -c %s "$T/orig/model.safetensors")
run() { # run BIN WHAT: one fresh mount, one reading
  "$1" "$T/src" "$T/m" -o "index_dir=$T/idx" 2>/dev/null; sleep 0.3
  local t0 t1; t0=$(date +%s.%N)
  if [ "$2" = cat ]; then cat "$T/m/model.safetensors" > /dev/null
  else
    python3 "$HERE/fs/tp_ranks.py" "$T/m/model.safetensors" "$T/orig/model.safetensors" 0 > /dev/null &
    python3 "$HERE/fs/tp_ranks.py" "$T/m/model.safetensors" "$T/orig/model.safetensors" 1 > /dev/null; wait $!
  fi
  t1=$(date +%s.%N)
  local dec; dec=$(awk -F': ' '$1=="bytes_decoded" {print $2}' "$T/m/.wcodecfs-stats")
  fusermount3 -u "$T/m"
  printf '| %s | %s | %.3f | %.3fx |\n' "$1" "$2" "$(echo "$t1 - $t0" | bc)" "$(echo "scale=4; $dec / $size" | bc)"
}
echo "file: $SRC ($size bytes), tmpfs"
echo "| wcodecfs | reading | s | decoded / file |"
echo "|---|---|---|---|"
for r in $(seq "${REPS:-3}"); do for what in cat ranks; do for b in "$@"; do run "$(realpath "$b")" "$what"; done; done; done
