#!/usr/bin/env bash
# test_mount.sh BUILD_DIR - wcodecfs really mounted (needs /dev/fuse and root or fuse group):
# identical bytes for every fixture, concurrency, mmap, one-tensor decode, EIO for a bad tile
# only, the cache budget, index reuse, clean unmount, errors, and the mount helpers.
# Ends with 'N passed, N failed'.
set -u
B=$(realpath "${1:?usage: test_mount.sh BUILD_DIR}")
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
W=$B/wcodec; FS=$B/wcodecfs; CHECK=$B/tests/fs_check
T=$(mktemp -d /tmp/wcfs-test.XXXXXX)
MNTS=()
cleanup() { [ -n "${KEEP:-}" ] && return; for m in "${MNTS[@]}"; do fusermount3 -u -z "$m" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
pass=0; fail=0
ok() { echo "ok - $1"; pass=$((pass+1)); }
no() { echo "not ok - $1"; fail=$((fail+1)); [ -f "$T/err" ] && sed 's/^/#   /' "$T/err" | tail -5; }
t() { local name=$1; shift; if "$@" >"$T/out" 2>"$T/err"; then ok "$name"; else no "$name"; fi; }
t_fails() { local name=$1; shift; if "$@" >"$T/out" 2>"$T/err"; then no "$name (succeeded)"; else ok "$name"; fi; }
stat_of() { awk -F': ' -v k="$2" '$1==k {print $2}' "$1/.wcodecfs-stats"; }
mnt() { # mnt SRC MNT [opts]: mounts, remembers for cleanup
  mkdir -p "$2"; MNTS+=("$2")
  "$FS" "$1" "$2" -o "index_dir=$T/index${3:+,$3}" 2>"$T/mount.log"
}
# unmounts, retrying while the mount is briefly busy (the daemon's own start-up stat of it)
umnt() { for i in $(seq 50); do mountpoint -q "$1" || return 0; fusermount3 -u "$1" 2>/dev/null; sleep 0.1; done; return 1; }

if [ ! -e /dev/fuse ]; then echo "# /dev/fuse missing: mount tests skipped"; echo "0 passed, 0 failed, 1 skipped"; exit 0; fi

# ---- fixtures: every dtype, edge cases, a larger BF16 file, real weights if present
mkdir -p "$T/orig/sub" "$T/src"
"$B/tests/make_fixtures" "$T/orig" || { echo "make_fixtures failed"; exit 1; }
mv "$T/orig/edge.safetensors" "$T/orig/sub/"
# 20000 tensors of 64 bytes, a tile each: one read request spans thousands of tiles, more than
# one reply may point at, so the daemon copies them into one buffer a batch at a time
python3 - "$T/orig/many_tiny.safetensors" <<'PY'
import json, struct, sys
n, size = 20000, 64
hdr = {"t%05d" % i: {"dtype": "U8", "shape": [size], "data_offsets": [i * size, (i + 1) * size]} for i in range(n)}
h = json.dumps(hdr).encode()
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + bytes((i * 7 + i // size) & 255 for i in range(n * size)))
PY
echo '{"architectures": ["X"]}' > "$T/orig/config.json"
echo 'tok' > "$T/orig/sub/tokenizer.json"
DATA=$ROOT/../shared/data
[ -d "$DATA" ] && for f in "$DATA"/*.safetensors; do [ -f "$f" ] && cp "$f" "$T/orig/"; done
"$W" encode -q -j 2 "$T/orig" "$T/src" || { echo "encode failed"; exit 1; }

M=$T/m
t "mount" mnt "$T/src" "$M" "cache_size=32M,readahead=4"
t "no .wcodec names under the mount" test -z "$(find "$M" -name '*.wcodec')"
t "the stats file is read by name and never listed (the listing is the source's)" sh -c "grep -q bytes_served '$M/.wcodecfs-stats' && ! ls -a '$M' | grep -q wcodecfs-stats"
t "the manifest encode wrote is not presented" sh -c "test -f '$T/src/wcodec-manifest.json' && ! test -e '$M/wcodec-manifest.json' && ! ls -a '$M' | grep -q manifest"
for f in $(cd "$T/orig" && find . -type f | sort); do
  t "cmp $f" cmp "$T/orig/$f" "$M/$f"
done
t "sizes exact before any read" test "$(stat -c %s "$M/big_bf16.safetensors")" = "$(stat -c %s "$T/orig/big_bf16.safetensors")"
t "16 threads x random reads, zero mismatches" "$CHECK" random "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors" 16 400
t "mmap random pages" "$CHECK" mmap "$T/orig/all_dtypes.safetensors" "$M/all_dtypes.safetensors" 2000
if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
  t "numpy.memmap reads the original bytes" /usr/bin/python3 -c "
import numpy as np, sys
a = np.memmap('$M/big_bf16.safetensors', dtype=np.uint8, mode='r')
b = np.fromfile('$T/orig/big_bf16.safetensors', dtype=np.uint8)
sys.exit(0 if a.shape == b.shape and (a == b).all() else 1)"
fi
t_fails "writes refused" touch "$M/new"
grep -q "Read-only" "$T/err" && ok "EROFS on write" || no "EROFS on write"
t_fails "open for writing refused" sh -c "echo x >> '$M/config.json'"
t "stats readable while mounted" grep -q "^bytes_served: [1-9]" "$M/.wcodecfs-stats"
t "cache never above budget" test "$(stat_of "$M" cache_peak_bytes)" -le $((32 << 20))
t "unmount" umnt "$M"

# ---- a streaming reader: tiles whose bytes all went to the kernel's page cache are not kept
t "mount with a 64 MiB cache" mnt "$T/src" "$M" "cache_size=64M,readahead=4"
t "sequential read identical" cmp "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors"
once=$(stat_of "$M" cache_used_once); left=$(stat_of "$M" cache_bytes)
t "tiles used once are freed ($once freed, $left bytes left <= 2 tiles)" test "$once" -ge 20 -a "$left" -le 524288
umnt "$M"

# ---- pushing: decoded bytes stored into the page cache ahead of a sequential reader
t "mount with push=64M" mnt "$T/src" "$M" "push=64M,push_threads=2,kernel_readahead=1M"
t "sequential read with pushing identical" cmp "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors"
pushed=$(stat_of "$M" push_bytes)
t "bytes were pushed ahead of the reader ($pushed)" test "${pushed:-0}" -gt 0 -a "$(stat_of "$M" push_errors)" = 0
t "an mmap reader of a pushed file reads the original bytes" python3 -c "
import mmap, sys
with open('$M/all_dtypes.safetensors', 'rb') as f, open('$T/orig/all_dtypes.safetensors', 'rb') as g:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    sys.exit(0 if m[:] == g.read() else 1)"
umnt "$M"
t_fails "push=banana refused" "$FS" "$T/src" "$M" -o push=banana
grep -q "push=banana: not a size" "$T/err" && ok "push error says why" || no "push error says why"

# ---- the kernel's read-ahead window (as root: written to the mount's bdi once INIT is done)
bdi_ra() { local d; d=$(awk -v m="$1" '$5 == m {d = $3} END {print d}' /proc/self/mountinfo)
  for i in $(seq 50); do [ "$(cat "/sys/class/bdi/$d/read_ahead_kb" 2>/dev/null)" = "$2" ] && return 0; sleep 0.1; done
  echo "read_ahead_kb of $d: $(cat "/sys/class/bdi/$d/read_ahead_kb" 2>/dev/null), wanted $2"; return 1; }
if [ "$(id -u)" -eq 0 ] && [ -d /sys/class/bdi ]; then
  t "mount with the default kernel_readahead" mnt "$T/src" "$M"
  t "the mount's read_ahead_kb is 16384 (16M default)" bdi_ra "$M" 16384
  umnt "$M"
  t "mount with kernel_readahead=4M" mnt "$T/src" "$M" "kernel_readahead=4M"
  t "the mount's read_ahead_kb is 4096" bdi_ra "$M" 4096
  t "bytes identical with a 4 MiB window" cmp "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors"
  umnt "$M"
fi
t_fails "kernel_readahead=banana refused" "$FS" "$T/src" "$M" -o kernel_readahead=banana
grep -q "kernel_readahead=banana: not a size" "$T/err" && ok "kernel_readahead error says why" || no "kernel_readahead error says why"

# ---- a file larger than the cache, read twice: the budget holds
t "mount with a 2 MiB cache" mnt "$T/src" "$M" "cache_size=2M"
cat "$M/big_bf16.safetensors" "$M/big_bf16.safetensors" > /dev/null
t "read twice through a small cache, bytes identical" cmp "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors"
# (the whole file went through the cache, 2 MiB at a time: whether its tiles then leave by
# eviction or, handed to the page cache whole, are freed, depends on timing)
peak=$(stat_of "$M" cache_peak_bytes); dec=$(stat_of "$M" bytes_decoded); big=$(stat -c %s "$T/orig/big_bf16.safetensors")
t "peak $peak <= budget 2097152 while decoding $dec bytes (the file: $big)" test "$peak" -le 2097152 -a "$dec" -ge "$big"
# the stated bound (README): RSS <= cache_size + 64 MiB of fixed overhead
pid=$(pgrep -f "wcodecfs $T/src $M" | head -1); hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null)
if ldd "$FS" | grep -q libasan; then echo "# sanitizer build: RSS bound not checked (shadow memory)"
else t "daemon peak RSS ${hwm:-?} KiB <= cache_size + 64 MiB" test -n "$hwm" -a "${hwm:-0}" -le $(( (2048 + 65536) )); fi
umnt "$M"

# ---- one tensor: decodes only that tensor's tiles (O_DIRECT: no kernel readahead)
read -r off len < <(/usr/bin/python3 - "$T/orig/big_bf16.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(1 << 20); n = struct.unpack("<Q", b[:8])[0]
t = json.loads(b[8:8 + n])["layers.1.weight"]["data_offsets"]
print(8 + n + t[0], t[1] - t[0])
PY
)
t "mount with readahead=0" mnt "$T/src" "$M" "readahead=0"
t "read one tensor ($len bytes at $off)" "$CHECK" direct "$M/big_bf16.safetensors" "$off" "$len"
want=$(( (len + 262143) / 262144 ))
got=$(stat_of "$M" tiles_decoded_cpu)
t "one tensor decodes its $want tiles and no other (decoded $got)" test "$got" -eq "$want"
t "O_DIRECT reads keep their tiles cached" test "$(stat_of "$M" cache_bytes)" -gt 0
t "index reused on remount" test "$(stat_of "$M" index_reused)" -gt 0 -a "$(stat_of "$M" index_built)" -eq 0
umnt "$M"

# ---- tensor-parallel readers: two ranks read their shards of every tensor at once through one
# mount, rows split for one tensor, columns split (a piece of every row) for the next, as
# transformers' tp_plan slices them; each gets the source's bytes, and the ranks share the page
# cache and the daemon's, so the file is decoded about once (<= 1.1x), not once a rank
t "mount for two ranks" mnt "$T/src" "$M"
python3 "$HERE/tp_ranks.py" "$M/big_bf16.safetensors" "$T/orig/big_bf16.safetensors" 0 > "$T/r0" 2>&1 &
python3 "$HERE/tp_ranks.py" "$M/big_bf16.safetensors" "$T/orig/big_bf16.safetensors" 1 > "$T/r1" 2>&1; r1=$?
wait $!; r0=$?
t "two ranks' shards (rows and columns split) equal the source's bytes" test "$r0" -eq 0 -a "$r1" -eq 0
dec=$(stat_of "$M" bytes_decoded); big=$(stat -c %s "$T/orig/big_bf16.safetensors")
t "the ranks' reads decoded the file about once: $dec bytes for its $big (<= 1.1x)" test "$dec" -le $(( big * 11 / 10 ))
umnt "$M"

# ---- a corrupted tile: EIO for its range, the rest still served
cp -r "$T/src" "$T/bad"
c=$T/bad/big_bf16.wcodec; size=$(stat -c %s "$c")
printf '\x55' | dd of="$c" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
t "mount with a corrupted container" mnt "$T/bad" "$M" "readahead=0,log=$T/bad.log"
"$CHECK" ranges "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors" 65536 > "$T/ranges" 2>&1
t "every good range served identical" grep -q "ranges: [0-9]* failed, 0 wrong" "$T/ranges"
nfail=$(grep -c "^fail .* Input/output error" "$T/ranges")
t "the bad tile's range (and only it) fails with EIO: $nfail x 64 KiB" test "$nfail" -ge 1 -a "$nfail" -le 5
t "tile error counted" test "$(stat_of "$M" tile_errors)" -ge 1
t "the bad tile logged once, by name" test "$(grep -c "big_bf16.wcodec: tile .*serving EIO" "$T/bad.log")" -eq 1
umnt "$M"
# the same through the page cache, with pushing: a pusher meeting the bad tile stores nothing of it
t "mount the corrupted container with push" mnt "$T/bad" "$M" "push=64M,push_threads=2,kernel_readahead=1M"
buffered_ranges() { python3 - "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors" <<'PY'
import os, sys
want = open(sys.argv[1], "rb").read()
fd, failed, wrong = os.open(sys.argv[2], os.O_RDONLY), 0, 0
for off in range(0, len(want), 65536):
    try:
        got = os.pread(fd, 65536, off)
        wrong += got != want[off:off + 65536]
    except OSError:
        failed += 1
print(failed, wrong)
PY
}
read -r nfail nwrong < <(buffered_ranges)
t "buffered reads with pushing: every good range identical, the bad tile's fail ($nfail x 64 KiB)" test "$nwrong" = 0 -a "${nfail:-0}" -ge 1 -a "${nfail:-0}" -le 5
t "and the mount still serves the other files" cmp "$T/orig/all_dtypes.safetensors" "$M/all_dtypes.safetensors"
umnt "$M"

# ---- a damaged index: its tile map is only a cache of the checked tables, which answer instead
if command -v mdb_dump >/dev/null && command -v mdb_load >/dev/null; then
  IX=$T/index_damaged; mkdir -p "$T/mi"; MNTS+=("$T/mi")
  "$FS" "$T/src" "$T/mi" -o "index_dir=$IX" 2>/dev/null && umnt "$T/mi"
  # every tile-map value (the line after each key) set to tile 0: a valid LMDB, wrong answers
  mdb_dump -s tiles "$IX" | awk 'h && ++n % 2 == 0 {print " 00000000"; next} {print} /^HEADER=END/ {h = 1}' > "$T/tiles.dump"
  t "the index's tile map rewritten wrong (mdb_load)" mdb_load -s tiles -f "$T/tiles.dump" "$IX"
  t "mount on the damaged index" sh -c "'$FS' '$T/src' '$T/mi' -o 'index_dir=$IX,log=$T/mi.log' 2>/dev/null"
  t "a damaged index still serves every byte right" cmp "$T/orig/big_bf16.safetensors" "$T/mi/big_bf16.safetensors"
  t "and says so once per file" test "$(grep -c "big_bf16.safetensors: the index .* disagrees" "$T/mi.log")" -eq 1
  umnt "$T/mi"
else
  echo "# mdb_dump/mdb_load missing (lmdb-utils): damaged-index test skipped"
fi

# ---- a replaced container is re-indexed; a broken one is skipped, the rest served
cp "$T/src/edge.wcodec" "$T/src/big_bf16.wcodec" 2>/dev/null || cp "$T/src/sub/edge.wcodec" "$T/src/big_bf16.wcodec"
head -c 100 "$T/src/all_dtypes.wcodec" > "$T/src/broken.wcodec"
t "mount after replacing a container" mnt "$T/src" "$M"
t "replaced container re-indexed" test "$(stat_of "$M" index_built)" -eq 1
t "broken container skipped with a warning" grep -q "skipping .*broken.wcodec" "$T/mount.log"
t "the rest still served" cmp "$T/orig/sub/edge.safetensors" "$M/big_bf16.safetensors"
umnt "$M"
rm -f "$T/src/broken.wcodec"
cp "$T/orig/big_bf16.safetensors" "$T/x.safetensors"; "$W" encode -q -f "$T/x.safetensors" "$T/src/big_bf16.wcodec"

# ---- containers that change under a mount: a read gives bytes of one version, or EIO
# v1 and v2: the same tensors and size, different bytes (v2 has 256 KiB of new data)
CH=$T/chg; mkdir -p "$CH/src"
cp "$T/orig/big_bf16.safetensors" "$CH/v1.safetensors"; cp "$CH/v1.safetensors" "$CH/v2.safetensors"
head -c 262144 /dev/urandom | dd of="$CH/v2.safetensors" bs=4096 seek=256 conv=notrunc status=none
"$W" encode -q "$CH/v1.safetensors" "$CH/v1.wcodec"; "$W" encode -q "$CH/v2.safetensors" "$CH/v2.wcodec"
CM=$T/cm; F=$CM/m.safetensors
fresh() { umnt "$CM" 2>/dev/null; cp "$CH/v1.wcodec" "$CH/src/m.wcodec"; mnt "$CH/src" "$CM" "readahead=2,log=$CH/log"; }
no_mix() { # every range of the file is v1's bytes or an error; prints how many failed
  "$CHECK" ranges "$CH/v1.safetensors" "$F" 65536 > "$T/chg_ranges" 2>&1
  grep -q "ranges: [0-9]* failed, 0 wrong" "$T/chg_ranges" || return 1
  sed -n 's/.*ranges: \([0-9]*\) failed.*/\1/p' "$T/chg_ranges"; }
fresh; cp "$CH/v2.wcodec" "$CH/src/.m.tmp"; mv "$CH/src/.m.tmp" "$CH/src/m.wcodec"
t_fails "replaced (rename) before any open: reads fail" cat "$F"
t "the log (-o log=FILE) says it changed since mount" grep -q "^20.*Z wcodecfs: .*m.wcodec changed since mount; remount" "$CH/log"
fresh; exec 3< "$F"; cp "$CH/v2.wcodec" "$CH/src/.m.tmp"; mv "$CH/src/.m.tmp" "$CH/src/m.wcodec"
cat <&3 > "$CH/got"; exec 3<&-
t "replaced (rename) while open: the open file reads as v1, whole" cmp "$CH/got" "$CH/v1.safetensors"
t "and new opens too, until a remount" cmp "$F" "$CH/v1.safetensors"
umnt "$CM"; mnt "$CH/src" "$CM"
t "the next mount serves v2" cmp "$F" "$CH/v2.safetensors"
fresh; head -c 65536 "$F" > /dev/null; cp "$CH/v2.wcodec" "$CH/src/m.wcodec" # same inode, rewritten
n=$(no_mix); t "rewritten in place: no read mixes versions (v1 bytes or EIO)" test -n "$n"
t "rewritten in place: the changed tiles fail ($n x 64 KiB)" test "${n:-0}" -ge 1
fresh; head -c 65536 "$F" > /dev/null; truncate -s $(( $(stat -c %s "$CH/v1.wcodec") / 2 )) "$CH/src/m.wcodec"
n=$(no_mix); t "truncated: no wrong bytes" test -n "$n"
t "truncated: what is gone fails ($n x 64 KiB)" test "${n:-0}" -ge 1
fresh; exec 3< "$F"; rm "$CH/src/m.wcodec"; cat <&3 > "$CH/got"; exec 3<&-
t "deleted while open: the open file reads as v1, whole" cmp "$CH/got" "$CH/v1.safetensors"
fresh; rm "$CH/src/m.wcodec"
t_fails "deleted before any open: reads fail" cat "$F"
umnt "$CM"
# replaced between mounts by a container of the same size and mtime: the index sees it
"$W" encode -q --raw "$CH/v1.safetensors" "$CH/v1raw.wcodec"; "$W" encode -q --raw "$CH/v2.safetensors" "$CH/v2raw.wcodec"
cp "$CH/v1raw.wcodec" "$CH/src/m.wcodec"; mnt "$CH/src" "$CM"; cat "$F" > /dev/null; umnt "$CM"
cp "$CH/v2raw.wcodec" "$CH/src/m.wcodec"; touch -r "$CH/v1raw.wcodec" "$CH/src/m.wcodec"
t "same size and mtime as before" test "$(stat -c %s.%Y "$CH/src/m.wcodec")" = "$(stat -c %s.%Y "$CH/v1raw.wcodec")"
mnt "$CH/src" "$CM"
t "replaced between mounts (same size, mtime): the new mount serves v2" cmp "$F" "$CH/v2.safetensors"
umnt "$CM"

# ---- clean unmount leaves no process
mnt "$T/src" "$M"
pid=$(pgrep -f "wcodecfs $T/src $M" | head -1)
umnt "$M"
for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
t "fusermount3 -u leaves no process (pid ${pid:-none})" sh -c "[ -n '$pid' ] && ! kill -0 '$pid' 2>/dev/null"

# ---- the daemon's life: signals and unmounts with reads in flight, killed readers, neighbours
BIG=big_bf16.safetensors
gone() { for i in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
done_within() { for i in $(seq $(( $2 * 10 ))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
for sig in TERM INT; do
  mnt "$T/src" "$M"; pid=$(pgrep -f "wcodecfs $T/src $M" | head -1)
  # O_DIRECT readers: each read needs the daemon (buffered ones could go on from the page cache)
  FS_CHECK_ALL_DIRECT=1 "$CHECK" soak "$T/orig/$BIG" "$M/$BIG" 8 30 1 > /dev/null 2>&1 & rd=$!
  sleep 1; kill -$sig "$pid"
  t "SIG$sig with 8 readers in flight: the daemon exits" gone "$pid"
  t "SIG$sig: the mount is gone" sh -c "! mountpoint -q '$M'"
  t "SIG$sig: the readers get errors, not a hang (done within 10 s)" done_within "$rd" 10
  kill "$rd" 2>/dev/null; wait "$rd" 2>/dev/null
  umnt "$M" 2>/dev/null
done
# pushers may wait on pages that a read request holds: the daemon answers it on its way out
mnt "$T/src" "$M" "push=64M,push_threads=4,kernel_readahead=1M"; pid=$(pgrep -f "wcodecfs $T/src $M" | head -1)
(for f in "$M"/*.safetensors "$M"/sub/*.safetensors; do cat "$f" > /dev/null 2>&1 || exit 0; done) & rd=$!
sleep 0.2; kill -TERM "$pid"
t "SIGTERM with pushes in flight: the daemon exits" gone "$pid"
t "SIGTERM with pushes in flight: the reader ends (within 10 s)" done_within "$rd" 10
kill "$rd" 2>/dev/null; wait "$rd" 2>/dev/null; umnt "$M" 2>/dev/null
mnt "$T/src" "$M"; pid=$(pgrep -f "wcodecfs $T/src $M" | head -1)
"$CHECK" soak "$T/orig/$BIG" "$M/$BIG" 4 3 2 > "$T/lazy" 2>&1 & rd=$!
sleep 1; umount -l "$M"
wait "$rd"; t "umount -l with reads in flight: they finish, every byte right" grep -q " 0 mismatches" "$T/lazy"
t "umount -l: then the daemon exits" gone "$pid"
mnt "$T/src" "$M"; pid=$(pgrep -f "wcodecfs $T/src $M" | head -1)
exec 3< "$M/$BIG"
t_fails "fusermount3 -u while a file is open: refused (busy)" fusermount3 -u "$M"
t "and the mount still serves" cmp "$T/orig/$BIG" "$M/$BIG"
exec 3<&-
"$CHECK" soak "$T/orig/$BIG" "$M/$BIG" 8 30 3 > /dev/null 2>&1 & rd=$!
sleep 1; kill -9 "$rd"; wait "$rd" 2>/dev/null
t "readers killed mid-read: the daemon still serves, every byte right" "$CHECK" random "$T/orig/$BIG" "$M/$BIG" 4 100
mkdir -p "$T/m2"
t "both mounts of one index_dir serve (a second daemon)" sh -c "'$FS' '$T/src' '$T/m2' -o index_dir=$T/index 2>/dev/null && cmp '$T/orig/$BIG' '$T/m2/$BIG' && cmp '$T/orig/$BIG' '$M/$BIG'"
MNTS+=("$T/m2"); umnt "$T/m2" 2>/dev/null
umnt "$M"; t "the first daemon exits on unmount" gone "$pid"

# ---- what the source holds: permissions kept, symlinks shown and never followed, odd names
mkdir -p "$T/perm/d.wcodec"
cp "$T/src/big_bf16.wcodec" "$T/perm/secret.wcodec"; chmod 600 "$T/perm/secret.wcodec"
cp "$T/src/big_bf16.wcodec" "$T/perm/open.wcodec"; chmod 644 "$T/perm/open.wcodec"
echo private > "$T/perm/private.txt"; chmod 600 "$T/perm/private.txt"
cp "$T/src/big_bf16.wcodec" "$T/perm/d.wcodec/inside.wcodec"
ln -s /etc/hostname "$T/perm/outside"; ln -s "$T/src/big_bf16.wcodec" "$T/perm/linked.wcodec"
: > "$T/perm/empty.wcodec"
chmod 755 "$T/perm" "$T/perm/d.wcodec"
chmod 711 "$T" # another user may pass through to the mount point, and no further
PM=$T/pm; t "mount with allow_other" mnt "$T/perm" "$PM" "allow_other"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
as_nobody cat "$PM/open.safetensors" > "$T/as_nobody" 2>"$T/err"
t "allow_other: another user reads a 0644 container" cmp "$T/orig/$BIG" "$T/as_nobody"
t_fails "allow_other: a 0600 container stays unreadable to another user" as_nobody cat "$PM/secret.safetensors"
t_fails "allow_other: a 0600 plain file stays unreadable to another user" as_nobody cat "$PM/private.txt"
t "the owner reads the 0600 container" cmp "$T/orig/$BIG" "$PM/secret.safetensors"
t "a symlink out of the source is shown as a link" test "$(readlink "$PM/outside")" = /etc/hostname
t "a symlink to a container is shown as the link, not followed" test "$(readlink "$PM/linked.wcodec")" = "$T/src/big_bf16.wcodec"
t_fails "and presents nothing in its place" test -e "$PM/linked.safetensors"
t "a directory named d.wcodec is a directory, its container served" cmp "$T/orig/$BIG" "$PM/d.wcodec/inside.safetensors"
t "an empty .wcodec is skipped with a warning" grep -q "skipping .*empty.wcodec" "$T/mount.log"
umnt "$PM"

# ---- errors at mount: one line, non-zero exit
t_fails "missing SRC" "$FS" "$T/nope" "$M"
grep -q "no such directory" "$T/err" && ok "missing SRC says so" || no "missing SRC says so"
mkdir -p "$T/full"; touch "$T/full/x"
t_fails "non-empty MNT" "$FS" "$T/src" "$T/full"
t_fails "missing MNT" "$FS" "$T/src" "$T/nomnt"
mnt "$T/src" "$M"
t_fails "a second mount on a busy MNT refused" "$FS" "$T/src" "$M" -o "index_dir=$T/index"
grep -q "not empty" "$T/err" && ok "the refusal says why" || no "the refusal says why"
t "the first mount still serves" cmp "$T/orig/config.json" "$M/config.json"
umnt "$M"
t_fails "gpu=on without a GPU backend" "$FS" "$T/src" "$M" -o gpu=on
grep -q "gpu=on" "$T/err" && ok "gpu=on says why" || no "gpu=on says why"
t_fails "an index_dir that cannot be made" "$FS" "$T/src" "$M" -o index_dir=/dev/null/x
grep -q "index: /dev/null/x" "$T/err" && ok "the error names the index_dir" || no "the error names the index_dir"
for cs in 0 100K 100000G banana; do
  t_fails "cache_size=$cs refused" "$FS" "$T/src" "$M" -o "index_dir=$T/index,cache_size=$cs"
  grep -q "cache_size=$cs: \(out of range\|not a size\)" "$T/err" && ok "cache_size=$cs: says why" || no "cache_size=$cs: says why"
done
t "--help" "$FS" --help
grep -q "cache_size" "$T/out" && ok "--help lists cache_size" || no "--help lists cache_size"
# the FUSE options it lists are the ones that apply, with the defaults in force
grep -q "max_threads=N .*default 10" "$T/out" && ok "--help states the thread default" || no "--help states the thread default"
t "--version" "$FS" --version
grep -qE "^wcodecfs [0-9]+\.[0-9]+\.[0-9]+ \(libfuse 3\." "$T/out" && ok "--version names the release and libfuse" || no "--version names the release and libfuse"

# ---- mount helpers: mount -t fuse.wcodecfs, an fstab line, the systemd unit's options
HELPER=$ROOT/mount-scripts/mount.wcodecfs
# ---- a Hugging Face cache, as huggingface_hub lays it out: blobs/<sha256> (no extension),
# snapshots/<rev>/<file> relative links into blobs, revisions sharing blobs, refs/<branch>
HF=$T/hf/hub; HE=$T/hf.wc
blob() { # blob MODEL FILE: copies FILE into MODEL's blobs under its sha256; prints the name
  local h; h=$(sha256sum "$2" | cut -c1-64); cp -p "$2" "$HF/$1/blobs/$h"; echo "$h"; }
snap() { mkdir -p "$HF/$1/snapshots/$2"; ln -s "../../blobs/$4" "$HF/$1/snapshots/$2/$3"; }
for m in models--org--alpha models--org--beta; do mkdir -p "$HF/$m/blobs" "$HF/$m/refs"; done
a1=$(blob models--org--alpha "$T/orig/all_dtypes.safetensors"); a2=$(blob models--org--alpha "$T/orig/sub/edge.safetensors")
ac=$(blob models--org--alpha "$T/orig/config.json"); b1=$(blob models--org--beta "$T/orig/big_bf16.safetensors")
r1=1111111111111111111111111111111111111111; r2=2222222222222222222222222222222222222222
snap models--org--alpha $r1 model.safetensors "$a1"; snap models--org--alpha $r1 config.json "$ac"
snap models--org--alpha $r2 model.safetensors "$a1"; snap models--org--alpha $r2 extra.safetensors "$a2"
snap models--org--alpha $r2 config.json "$ac"; snap models--org--beta $r1 model.safetensors "$b1"
printf %s $r2 > "$HF/models--org--alpha/refs/main"; printf %s $r1 > "$HF/models--org--beta/refs/main"
mkdir -p "$HF/models--org--beta/snapshots/$r1/odd"
ln -s ../../blobs/gone "$HF/models--org--beta/snapshots/$r1/dangling"
ln -s loop2 "$HF/models--org--beta/snapshots/$r1/odd/loop1"; ln -s loop1 "$HF/models--org--beta/snapshots/$r1/odd/loop2"
ln -s "$T/orig/config.json" "$HF/models--org--beta/snapshots/$r1/odd/absolute"
ln -s ../.. "$HF/models--org--beta/snapshots/$r1/odd/up" # a folder link to an ancestor: not followed
t "encode an HF cache" sh -c "'$W' encode -j 2 '$HF' '$HE' 2>'$T/hf.log'"
t "a blob is a safetensors by its content: every such blob encoded once, at its path" \
  sh -c "test \$(find '$HE' -name '*.wcodec' | wc -l) = 3 && test -f '$HE/models--org--alpha/blobs/$a1.wcodec' && test -f '$HE/models--org--alpha/blobs/$ac'"
t "snapshots hold links only (but the absolute link out of the cache)" \
  sh -c "test \"\$(find '$HE' -path '*snapshots*' -type f)\" = '$HE/models--org--beta/snapshots/$r1/odd/absolute'"
t "one warning line each: dangling, two loop links, the link out of the cache" \
  sh -c "test \$(grep -c 'warning: .*dangling' '$T/hf.log') = 1 && test \$(grep -c 'warning: .*loop of symlinks' '$T/hf.log') = 2 &&
         test \$(grep -c 'warning: .*absolute.*outside SRC; stored as the file' '$T/hf.log') = 1 && test \$(grep -c warning '$T/hf.log') = 4"
HM=$T/hfm
t "mount the encoded cache" mnt "$HE" "$HM"
# the tree, path by path: type, link target, and a regular file's size (before any read)
hf_tree() { (cd "$1" && find . -mindepth 1 ! -path '*/odd/absolute' -printf '%y %P %l %s\n' |
             awk '$1 != "f" {$NF = ""} {print}' | sort); }
t "every path, type, link target and size equal" diff <(hf_tree "$HF") <(hf_tree "$HM")
for f in $(cd "$HF" && find . -type f | sort); do t "cmp hf $f" cmp "$HF/$f" "$HM/$f"; done
t "the link out of the cache is the file it pointed to" cmp "$T/orig/config.json" "$HM/models--org--beta/snapshots/$r1/odd/absolute"
# huggingface_hub's resolution: refs/main -> snapshots/<rev>/FILE -> a blob
hf_resolve() { local rev; rev=$(cat "$1/$2/refs/main") && readlink -e "$1/$2/snapshots/$rev/$3"; }
hf_same_resolution() { local o n; o=$(hf_resolve "$HF" "$1" "$2") && n=$(hf_resolve "$HM" "$1" "$2") &&
  [ "${n#"$HM"}" = "${o#"$HF"}" ] && [[ $n == */blobs/* ]] && cmp "$o" "$n"; }
for mf in models--org--alpha:model.safetensors models--org--alpha:extra.safetensors models--org--alpha:config.json models--org--beta:model.safetensors; do
  t "HF resolution ${mf/:/ }: refs -> snapshot -> the same blob" hf_same_resolution "${mf%%:*}" "${mf#*:}"
done
umnt "$HM"
t "decode restores the tree, links included" sh -c "'$W' decode -q '$HE' '$T/hf.back' && diff -r --no-dereference -x absolute '$HF' '$T/hf.back'"
# re-encoding: nothing rewritten; then a new revision and a blob only touched
stamp() { (cd "$HE" && find . -mindepth 1 -printf '%i %T@ %P\n' | grep -v wcodec-manifest | sort); }
stamp > "$T/hf.st1"
t "re-encode of an unchanged cache rewrites nothing and says so" sh -c "'$W' encode -j 2 '$HF' '$HE' 2>'$T/hf.log2' &&
  grep -q '7 unchanged' '$T/hf.log2' && ! grep -q ' -> .*bytes (' '$T/hf.log2'"
stamp > "$T/hf.st2"
t "... no inode or mtime changed" diff "$T/hf.st1" "$T/hf.st2"
r3=3333333333333333333333333333333333333333
a3=$(blob models--org--alpha "$T/orig/many_tiny.safetensors"); snap models--org--alpha $r3 model.safetensors "$a3"
touch -d '2001-01-01' "$HF/models--org--alpha/blobs/$a2" # same bytes, new mtime: the hash decides
t "an update encodes only the new blob" sh -c "'$W' encode -j 2 '$HF' '$HE' 2>'$T/hf.log3' && test \$(grep -c ' -> .*bytes (' '$T/hf.log3') = 1 &&
  grep -q 'blobs/$a3 -> ' '$T/hf.log3' && grep -q '$a2: unchanged' '$T/hf.log3'"
t "... the touched blob's container kept, its mtime now the source's" sh -c "
  test \"\$(stat -c %i '$HE/models--org--alpha/blobs/$a2.wcodec')\" = \"\$(grep ' models--org--alpha/blobs/$a2.wcodec\$' '$T/hf.st1' | cut -d' ' -f1)\" &&
  test \"\$(stat -c %Y '$HE/models--org--alpha/blobs/$a2.wcodec')\" = \"\$(stat -c %Y '$HF/models--org--alpha/blobs/$a2')\""
t "... and the new revision mounts" sh -c "mkdir -p '$HM' && '$FS' '$HE' '$HM' -o index_dir=$T/index && cmp '$HF/models--org--alpha/blobs/$a3' '$HM/models--org--alpha/snapshots/$r3/model.safetensors'"
umnt "$HM"
rm "$HF/models--org--beta/snapshots/$r1/dangling"
t "a file gone from SRC is named, not deleted" sh -c "'$W' encode -q '$HF' '$HE' 2>'$T/hf.log4'; grep -q 'dangling: not in SRC any more' '$T/hf.log4' && test -L '$HE/models--org--beta/snapshots/$r1/dangling'"
cp "$T/orig/sub/edge.safetensors" "$HF/models--org--alpha/blobs/x"; cp -p "$T/orig/sub/edge.safetensors" "$HF/models--org--alpha/blobs/x.safetensors"
t_fails "two sources of one container name (x and x.safetensors) refused" "$W" encode -q "$HF" "$HE"
rm "$HF/models--org--alpha/blobs/x" "$HF/models--org--alpha/blobs/x.safetensors"

if [ "$(id -u)" -eq 0 ] && command -v mount >/dev/null; then
  PATH="$B:$PATH" t "mount.wcodecfs SRC MNT -o opts" "$HELPER" "$T/src" "$M" -o "ro,index_dir=$T/index,cache_size=16M"
  t "helper mount serves bytes" cmp "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors"
  umnt "$M"
  # mount(8) looks for helpers in /sbin only and runs them with a minimal PATH: install the
  # helper and the daemon where an installed system has them, for this test only.
  INSTALLED=()
  for pair in "$HELPER:/sbin/mount.fuse.wcodecfs" "$FS:/usr/local/bin/wcodecfs"; do
    [ -e "${pair#*:}" ] || { ln -s "${pair%%:*}" "${pair#*:}" && INSTALLED+=("${pair#*:}"); }
  done
  trap 'rm -f "${INSTALLED[@]}"; cleanup' EXIT
  t "mount -t fuse.wcodecfs" mount -t fuse.wcodecfs -o "index_dir=$T/index,nofail" "$T/src" "$M"
  t "mount -t serves bytes" cmp "$T/orig/all_dtypes.safetensors" "$M/all_dtypes.safetensors"
  umnt "$M"
  echo "$T/src $M fuse.wcodecfs noauto,nofail,index_dir=$T/index,cache_size=16M 0 0" > "$T/fstab"
  t "fstab line (mount -T FSTAB MNT)" mount -T "$T/fstab" "$M"
  t "fstab mount serves bytes" cmp "$T/orig/sub/edge.safetensors" "$M/sub/edge.safetensors"
  umnt "$M"
  unit=$ROOT/mount-scripts/mnt-models.mount
  what=$(sed -n 's/^What=//p' "$unit"); type=$(sed -n 's/^Type=//p' "$unit"); opts=$(sed -n 's/^Options=//p' "$unit")
  t "systemd unit's Type and Options mount" mount -t "$type" -o "$opts,index_dir=$T/index" "$T/src" "$M"
  t "unit mount serves bytes" cmp "$T/orig/config.json" "$M/config.json"
  umnt "$M"
  t "unit names What and Where" test -n "$what" -a -n "$(sed -n 's/^Where=//p' "$unit")"
else
  echo "# not root: mount helper tests skipped"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
