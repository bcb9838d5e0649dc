#!/usr/bin/env bash
# test_remote.sh BUILD_DIR - wcodecfs mounting http:// and s3:// roots served on loopback by
# servers this script starts and stops: nginx (Debian's) for HTTP, and for S3 s3rver (npm,
# installed by mount-scripts/install-deps.sh under .deps/) behind tests/net/sigv4_proxy.py,
# which checks every request's Signature V4 (s3rver itself does not). Ends with
# 'N passed, N failed'.
set -u
B=$(realpath "${1:?usage: test_remote.sh BUILD_DIR}")
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
W=$B/wcodec; FS=$B/wcodecfs
PY=$(command -v python3 || echo /usr/bin/python3) # standard library only: either interpreter
S3RVER=$ROOT/.deps/npm/node_modules/.bin/s3rver
T=$(mktemp -d /tmp/wcfs-remote.XXXXXX); chmod 755 "$T" # nginx workers run as another user
MNTS=(); PIDS=()
cleanup() {
  [ -n "${KEEP:-}" ] && return
  for m in "${MNTS[@]}"; do fusermount3 -u -z "$m" 2>/dev/null; done
  [ -f "$T/ng/nginx.pid" ] && kill "$(cat "$T/ng/nginx.pid")" 2>/dev/null
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
. "$HERE/harness.sh" # t, t_fails, said, ok, no; pass, fail, skip
stat_of() { awk -F': ' -v k="$2" '$1==k {print $2}' "$1/.wcodecfs-stats"; }
umnt() { for i in $(seq 50); do mountpoint -q "$1" || return 0; fusermount3 -u "$1" 2>/dev/null; sleep 0.1; done; return 1; }
mnt() { # mnt URL MNT [opts]
  mkdir -p "$2"; MNTS+=("$2")
  "$FS" "$1" "$2" -o "log=$T/wcfs.log${3:+,$3}" 2>"$T/mount.log"
}
. "$HERE/servers.sh" # nginx_conf, free_port, wait_port, s3_up, s3_put

if [ ! -e /dev/fuse ]; then echo "# /dev/fuse missing: skipped"; echo "0 passed, 0 failed, 1 skipped"; exit 0; fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then echo "# nginx missing (mount-scripts/install-deps.sh installs it)"; echo "0 passed, 1 failed"; exit 1; fi

# ---- fixtures: every dtype, a multi-tile BF16 file, plain files, a subfolder, an odd name
mkdir -p "$T/orig/sub" "$T/www"
"$B/tests/make_fixtures" "$T/orig" >/dev/null || { echo "make_fixtures failed"; exit 1; }
mv "$T/orig/edge.safetensors" "$T/orig/sub/"
echo '{"architectures": ["X"]}' > "$T/orig/config.json"
echo 'secret stuff' > "$T/orig/denied.txt"
echo 'flaky but there' > "$T/orig/flaky.txt"
echo 'here today' > "$T/orig/gone.txt"
echo 'a name with spaces' > "$T/orig/sub/with space.txt"
"$W" encode -q -j 2 "$T/orig" "$T/www/enc" || { echo "encode failed"; exit 1; }
# a Hugging Face cache's shape: a blob named by its hash, no extension (its container keeps the
# name "abc"), and relative links to it and to a plain file, which the manifest lists
mkdir -p "$T/orig/blobs" "$T/orig/snap" "$T/www/enc/blobs" "$T/www/enc/snap"
cp "$T/orig/all_dtypes.safetensors" "$T/orig/blobs/abc"
"$W" encode -q "$T/orig/blobs/abc" "$T/www/enc/blobs/abc.wcodec" || { echo "encode of the blob failed"; exit 1; }
for d in orig www/enc; do ln -s ../blobs/abc "$T/$d/snap/model.safetensors"; ln -s ../config.json "$T/$d/snap/config.json"; done
cp "$T/www/enc/big_bf16.wcodec" "$T/www/enc/broken.wcodec" # answered 500 at mount
"$W" manifest "$T/www/enc"

# ---- nginx: a fast port, a slow one (limit_rate) for a transfer cut mid-read, and https with
# a certificate of our own
P1=$(free_port); P2=$(free_port); P5=$(free_port)
make_cert "$T"
nginx_conf "$T/ng" <<EOF
  log_format ranges '\$uri \$status \$body_bytes_sent "\$http_range"';
  access_log $T/ng/logs/access.log ranges;
  server {
    listen 127.0.0.1:$P1; root $T/www;
    location = /enc/denied.txt { return 403; }
    location = /enc/broken.wcodec { return 500; }
    location = /enc/flaky.txt { if (-f $T/flag500) { return 500; } }
  }
  server { listen 127.0.0.1:$P2; root $T/www; limit_rate 2m; }
  server { listen 127.0.0.1:$P5 ssl; root $T/www; ssl_certificate $T/cert.pem; ssl_certificate_key $T/key.pem; }
EOF
ng_start() { nginx_start "$T/ng" "$P1" "$P2"; }
ng_stop() { nginx_stop "$T/ng"; }
t "nginx serves the encoded folder" ng_start
URL=http://127.0.0.1:$P1/enc/
ALOG=$T/ng/logs/access.log

M=$T/m
t "mount $URL" mnt "$URL" "$M" "retry_time=2"
listing() { (cd "$1" && find . ! -name .wcodecfs-stats | sort); }
t "the listing is the local folder's" diff <(listing "$M") <(cd "$T/orig" && find . | sort)
for f in $(cd "$T/orig" && find . -type f ! -name denied.txt ! -name gone.txt ! -name 'with space.txt' | sort); do
  t "cmp $f" cmp "$T/orig/$f" "$M/$f"
done
t "cmp a name with spaces" cmp "$T/orig/sub/with space.txt" "$M/sub/with space.txt"
links_ok() { # links_ok MNT PREFIX: the manifest's links and the named container, as in the local tree
  t "$2a link: readlink as the manifest says" test "$(readlink "$1/snap/model.safetensors")" = ../blobs/abc -a \
    "$(readlink "$1/snap/config.json")" = ../config.json -a "$(stat -c %F "$1/snap/model.safetensors")" = "symbolic link"
  t "$2through the link: the blob's source bytes" cmp "$T/orig/blobs/abc" "$1/snap/model.safetensors"
  t "$2through the link to a plain file" cmp "$T/orig/config.json" "$1/snap/config.json"
  t "$2the named container presents as abc, not abc.safetensors" test "$(ls "$1/blobs")" = abc
  t "$2listed as links (DT_LNK: scandir takes the listing's type)" test "$("$PY" -c '
import os, sys; print(sum(e.is_symlink() for e in os.scandir(sys.argv[1])))' "$1/snap")" = 2
}
links_ok "$M" ""
t "sizes exact before any read" test "$(stat -c %s "$M/all_dtypes.safetensors")" = "$(stat -c %s "$T/orig/all_dtypes.safetensors")"
t "a container answered 500 at mount is skipped, and said" grep -q "skipping broken.wcodec: .*broken.wcodec: HTTP 500" "$T/wcfs.log"
t_fails "403 on a plain file" cat "$M/denied.txt"
said "403 reads as EACCES" "Permission denied"
t "the 403 logged once, naming the URL" test "$(grep -c "enc/denied.txt: HTTP 403" "$T/wcfs.log")" = 1
rm "$T/www/enc/gone.txt"
t_fails "404 on a plain file gone from the server" cat "$M/gone.txt"
said "404 reads as ENOENT" "No such file"
touch "$T/flag500"
(sleep 1; rm -f "$T/flag500") &
t "500 answered for a second: retried, then served" cmp "$T/orig/flaky.txt" "$M/flaky.txt"
t "retries counted" test "$(stat_of "$M" net_retries)" -ge 1
t_fails "writes refused" touch "$M/new"
t "unmount" umnt "$M"
# the container answering 500 has been seen; from here on it is not listed
rm "$T/www/enc/broken.wcodec"; "$W" manifest "$T/www/enc"

# ---- one tensor read alone: its tiles and at most one more on each side are fetched
read -r TOFF TLEN < <("$PY" -c '
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
a, z = h["layers.0.weight"]["data_offsets"]; print(8 + n + a, z - a)' "$T/orig/big_bf16.safetensors")
read -r CODED TILE < <("$W" info --json "$T/www/enc/big_bf16.wcodec" | "$PY" -c '
import json, sys; j = json.load(sys.stdin)
print([t["coded_bytes"] for t in j["tensors"] if t["name"] == "layers.0.weight"][0], j["tile_size"])')
t "mount for a one-tensor read" mnt "$URL" "$M"
: > "$ALOG"
t "read layers.0.weight alone (O_DIRECT)" dd if="$M/big_bf16.safetensors" of="$T/tensor" bs=1M iflag=direct,skip_bytes,count_bytes skip="$TOFF" count="$TLEN"
t "its bytes are the original's" cmp "$T/tensor" <(tail -c +$((TOFF + 1)) "$T/orig/big_bf16.safetensors" | head -c "$TLEN")
FETCHED=$(awk '$1 == "/enc/big_bf16.wcodec" {s += $3} END {print s + 0}' "$ALOG")
BOUND=$((CODED + 2 * TILE + 64 * 16))
t "fetched $FETCHED bytes <= tensor's tiles $CODED + 2 tiles ($BOUND)" test "$FETCHED" -le "$BOUND" -a "$FETCHED" -ge "$CODED"
t "adjacent tiles coalesced: $(grep -c big_bf16 "$ALOG") GETs for 12 tiles" test "$(grep -c big_bf16 "$ALOG")" -le 6
umnt "$M"

# ---- the disk cache: kept across mounts, checked on use, bounded
DC=$T/dc
t "mount with a disk cache" mnt "$URL" "$M" "disk_cache=$DC"
t "first read through it" cmp "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors"
umnt "$M"
: > "$ALOG"
t "remount with the same disk cache" mnt "$URL" "$M" "disk_cache=$DC"
t "the remount fetched no container's tables: only the listing ($(grep -c '\.wcodec ' "$ALOG") container GETs)" \
  test "$(grep -c '\.wcodec ' "$ALOG")" = 0 -a "$(grep -c 'wcodec-manifest.json' "$ALOG")" = 1
t "every container's tables came from the disk cache" test "$(stat_of "$M" tables_from_disk_cache)" = "$(stat_of "$M" containers)"
t "read again" cmp "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors"
t "no tile fetched: all from disk ($(grep -c big_bf16 "$ALOG") GETs)" test "$(grep -c big_bf16 "$ALOG")" = 0
t "disk cache hits counted" test "$(stat_of "$M" disk_cache_hits)" -ge 20
ng_stop
t "the server stopped: cached tiles still served (O_DIRECT)" sh -c "dd if='$M/big_bf16.safetensors' bs=1M iflag=direct 2>/dev/null | cmp - '$T/orig/big_bf16.safetensors'"
t "nginx back" ng_start
umnt "$M"
victim=$(find "$DC" -type f ! -name '.*' | head -1)
printf 'X' | dd of="$victim" bs=1 seek=100 conv=notrunc 2>/dev/null
t "remount after damaging an entry" mnt "$URL" "$M" "disk_cache=$DC"
t "the damaged entry is fetched again: bytes identical" cmp "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors"
t "and counted as bad" test "$(stat_of "$M" disk_cache_bad)" = 1
umnt "$M"
t "mount with a 1 MiB disk cache" mnt "$URL" "$M" "disk_cache=$T/dc2,disk_cache_size=1M"
t "every container read through it" sh -c "cmp '$T/orig/big_bf16.safetensors' '$M/big_bf16.safetensors' && cmp '$T/orig/all_dtypes.safetensors' '$M/all_dtypes.safetensors'"
t "the disk cache holds <= 1 MiB ($(du -sb --exclude='.*' "$T/dc2" | cut -f1) bytes of files)" \
  test "$(find "$T/dc2" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')" -le $((1 << 20))
t "entries were evicted" test "$(stat_of "$M" disk_cache_evicted)" -ge 1
umnt "$M"

# ---- an object replaced on the server while mounted: EIO, never a mix; a remount serves it
t "mount" mnt "$URL" "$M"
t "the first MiB read (old version)" dd if="$M/big_bf16.safetensors" of="$T/head" bs=1M count=1 iflag=direct
cp "$T/www/enc/all_dtypes.wcodec" "$T/www/enc/.new" && mv "$T/www/enc/.new" "$T/www/enc/big_bf16.wcodec"
t_fails "reading on after the replacement fails" dd if="$M/big_bf16.safetensors" of="$T/rest" bs=1M iflag=direct
said "with EIO" "Input/output error"
t "the bytes it did return are the old version's" cmp -n "$(stat -c %s "$T/rest")" "$T/rest" "$T/orig/big_bf16.safetensors"
t "logged as changed on the server" grep -q "big_bf16.wcodec: changed on the server" "$T/wcfs.log"
umnt "$M"
t "a remount serves the new version" sh -c "'$FS' '$URL' '$M' && cmp '$T/orig/all_dtypes.safetensors' '$M/big_bf16.safetensors'"
umnt "$M"
cp "$T/www/enc/all_dtypes.wcodec" /dev/null
"$W" encode -q -f "$T/orig/big_bf16.safetensors" "$T/www/enc/big_bf16.wcodec"

# ---- the server gone mid-read: EIO within the bound, then served again without a remount
SLOW=http://127.0.0.1:$P2/enc/
t "mount through the slow port (2 MB/s)" mnt "$SLOW" "$M" "retry_time=5,stall_timeout=5"
start=$(date +%s)
dd if="$M/big_bf16.safetensors" of=/dev/null bs=1M iflag=direct 2>"$T/dd.err" & DD=$!
sleep 1; ng_stop
wait $DD; rc=$?; took=$(( $(date +%s) - start ))
t "the read in flight fails (rc $rc) within 90 s ($took s)" test "$rc" != 0 -a "$took" -le 90
t "with EIO" grep -q "Input/output error" "$T/dd.err"
t "nginx back" ng_start
t "the same mount serves every byte again" cmp "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors"
t "logged when it answered again" grep -q "answering again" "$T/wcfs.log"
umnt "$M"

t "no credential in any log" sh -c "! grep -rq 'S3CRETKEY' '$T/wcfs.log' '$T/ng/logs'"
mkdir -p "$T/m2"
t_fails "a URL with no manifest is refused at mount" "$FS" "http://127.0.0.1:$P1/nothing/" "$T/m2"
said "saying so" "no wcodec-manifest.json there"
t_fails "a server that is not there is refused at mount" "$FS" "http://127.0.0.1:1/" "$T/m2" -o retry_time=1
t_fails "https: a certificate no CA vouches for is refused" "$FS" "https://127.0.0.1:$P5/enc/" "$T/m2"
said "saying why" "certificate"
t "https: trusted with ca_file" mnt "https://127.0.0.1:$P5/enc/" "$M" "ca_file=$T/cert.pem"
t "https: cmp config.json" cmp "$T/orig/config.json" "$M/config.json"
t "https: cmp big_bf16.safetensors" cmp "$T/orig/big_bf16.safetensors" "$M/big_bf16.safetensors"
umnt "$M"
t_fails "disk_cache on a local SRC is refused" "$FS" "$T/www/enc" "$T/m2" -o disk_cache=$T/x

# ---- S3: s3rver behind the signature check
if [ ! -x "$S3RVER" ]; then
  echo "# s3rver missing ($S3RVER; mount-scripts/install-deps.sh installs it): S3 tests skipped"
  skip=1
else
  # s3rver knows the key id S3RVER; the check holds the secret
  if s3_up "$S3RVER" "$T/s3data" models; then ok "s3rver and the signature check up"; else no "s3rver and the signature check up"; fi
  EP=$S3_EP
  put() { s3_put "$1" "models/$2"; }
  uploaded=0
  for f in $(cd "$T/www/enc" && find . -type f ! -name 'broken.wcodec' ! -name '*space*' | sed 's|^\./||'); do
    put "$T/www/enc/$f" "llama/$f" && uploaded=$((uploaded+1))
  done
  t "objects uploaded ($uploaded)" test "$uploaded" -ge 6
  # the copy a tool that follows links when it uploads (aws s3 sync) leaves at a link's path
  put "$T/orig/config.json" "llama/snap/config.json"
  t_fails "a wrong signature is refused by the check" curl -sS -f --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:wrong -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$EP/models/llama/config.json"
  export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3CRETKEY
  S=$T/s
  t "mount s3://models/llama (credentials from the environment)" mnt "s3://models/llama" "$S" "s3_endpoint=$EP,retry_time=2"
  for f in config.json all_dtypes.safetensors big_bf16.safetensors sub/edge.safetensors sub/tokenizer.json; do
    [ -f "$T/orig/$f" ] && t "s3 cmp $f" cmp "$T/orig/$f" "$S/$f"
  done
  links_ok "$S" "s3: "
  t "s3 mount named without credentials in /proc/mounts" sh -c "grep ' $S ' /proc/mounts | grep -q 's3://models/llama/' && ! grep -q S3CRETKEY /proc/mounts"
  t "s3: replaced object" put "$T/www/enc/all_dtypes.wcodec" "llama/big_bf16.wcodec"
  t_fails "s3: reading the replaced object fails" dd if="$S/big_bf16.safetensors" of=/dev/null bs=1M iflag=direct
  said "s3: with EIO" "Input/output error"
  umnt "$S"
  t "s3: mount with a disk cache" mnt "s3://models/llama" "$S" "s3_endpoint=$EP,disk_cache=$T/s3dc"
  umnt "$S"
  t "s3: a second mount with it" mnt "s3://models/llama" "$S" "s3_endpoint=$EP,disk_cache=$T/s3dc"
  t "s3: it fetched no table: two requests, the listing and the manifest for its links ($(stat_of "$S" net_requests))" \
    test "$(stat_of "$S" net_requests)" = 2
  t "s3: every container's tables from the disk cache" test "$(stat_of "$S" tables_from_disk_cache)" = "$(stat_of "$S" containers)"
  t "s3 (tables from disk): the replaced object's new version served" cmp "$T/orig/all_dtypes.safetensors" "$S/big_bf16.safetensors"
  umnt "$S"
  unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  printf '[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n[test]\n# the profile used\naws_access_key_id = S3RVER\naws_secret_access_key = S3CRETKEY\n' > "$T/credentials"
  t "mount with a credentials file and AWS_PROFILE" env AWS_SHARED_CREDENTIALS_FILE="$T/credentials" AWS_PROFILE=test "$FS" s3://models/llama "$S" -o "s3_endpoint=$EP,log=$T/wcfs.log"
  t "s3 (profile) cmp config.json" cmp "$T/orig/config.json" "$S/config.json"
  umnt "$S"
  t_fails "a wrong secret is refused at mount" env AWS_SHARED_CREDENTIALS_FILE="$T/credentials" "$FS" s3://models/llama "$S" -o "s3_endpoint=$EP,retry_time=1"
  said "as 403" "HTTP 403"
  t "without the secret in the message" sh -c "! grep -q WRONG '$T/err' '$T/wcfs.log'"
  t_fails "no credentials at all: a clear error" env -u AWS_ACCESS_KEY_ID HOME=$T AWS_SHARED_CREDENTIALS_FILE=$T/none "$FS" s3://models/llama "$S" -o "s3_endpoint=$EP"
  said "saying so" "no AWS credentials"
  t "no credential in any log" sh -c "! grep -rq 'S3CRETKEY' '$T/wcfs.log' '$T/mount.log'"
fi

echo "$pass passed, $fail failed$([ "$skip" = 0 ] || echo ", $skip skipped")"
[ "$fail" = 0 ]
