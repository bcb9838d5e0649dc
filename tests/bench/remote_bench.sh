#!/usr/bin/env bash
# remote_bench.sh [BUILD_DIR] - a model folder over a throttled link: wcodecfs mounting the
# encoded folder by URL, `wcodec decode URL/ DIR`, and the Python package decoding the containers
# by URL, against curl (and Python's urllib) fetching the raw .safetensors files, same link, same run.
#
# The link is real: nginx runs in a network namespace of its own, reached over a veth pair
# whose server side is shaped by tc's token bucket to RATE (default 1600mbit = 200 MB/s), so
# the mount's several connections share the same limit as curl's one. Needs root, iproute2
# (ip, tc) and nginx. Env: RATE, SHARDS (4), COPIES (use-lite.bf16 repeats per shard: 15, about
# 210 MB each), REPS (3: best of), KEEP.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=$(realpath "${1:-build}")
RATE=${RATE:-1600mbit}; SHARDS=${SHARDS:-4}; COPIES=${COPIES:-15}; REPS=${REPS:-3}
NP=$(command -v python3)
SRC=../shared/data/use-lite.bf16.safetensors
[ -f "$SRC" ] || { echo "remote_bench: needs $SRC (real BF16 weights)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "remote_bench: needs root (network namespace, tc)"; exit 1; }
T=$(mktemp -d /var/tmp/wcremote.XXXXXX); chmod 755 "$T"
NS=wcb$$; H=wcbh$$; N=wcbn$$
cleanup() {
  set +e
  [ -n "${S3PID:-}" ] && kill "$S3PID"
  mountpoint -q "$T/m" && fusermount3 -u -z "$T/m"
  [ -f "$T/ng/nginx.pid" ] && kill "$(cat "$T/ng/nginx.pid")"
  ip netns del "$NS" 2>/dev/null; ip link del "$H" 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

mkdir -p "$T/www/raw" "$T/m"
for s in $(seq 1 "$SHARDS"); do
  $NP tests/bench/repeat_model.py "$SRC" "$COPIES" "$T/www/raw/model-0000$s-of-0000$SHARDS.safetensors" "shard$s.copy"
done
echo '{"architectures": ["X"]}' > "$T/www/raw/config.json"
"$B/wcodec" encode -q "$T/www/raw" "$T/www/enc"
raw_bytes=$(du -cb "$T"/www/raw/*.safetensors | tail -1 | cut -f1)
enc_bytes=$(du -cb "$T"/www/enc/*.wcodec | tail -1 | cut -f1)

ip netns add "$NS"
ip link add "$H" type veth peer name "$N"
ip link set "$N" netns "$NS"
ip addr add 10.203.0.1/24 dev "$H"; ip link set "$H" up
ip netns exec "$NS" ip addr add 10.203.0.2/24 dev "$N"
ip netns exec "$NS" ip link set "$N" up
ip netns exec "$NS" ip link set lo up
# the server's side: every byte to the client leaves through the bucket
ip netns exec "$NS" tc qdisc add dev "$N" root tbf rate "$RATE" burst 256kb latency 100ms
. tests/net/servers.sh
nginx_conf "$T/ng" <<EOF
  log_format ranges '\$uri \$status \$body_bytes_sent';
  access_log $T/ng/logs/access.log ranges;
  sendfile on;
  server { listen 10.203.0.2:8080; root $T/www; }
EOF
ip netns exec "$NS" nginx -p "$T/ng" -c "$T/ng/nginx.conf"
for i in $(seq 50); do curl -sf -o /dev/null http://10.203.0.2:8080/raw/config.json && break; sleep 0.1; done

now() { date +%s.%N; }
best() { sort -g | head -1; }
files=$(cd "$T/www/raw" && ls)
curl_raw() { # every file of the raw folder, one after another, as a download would
  for f in $files; do curl -sf -o /dev/null "http://10.203.0.2:8080/raw/$f"; done; }
mount_read() { # mount the encoded folder by URL, read every file, unmount
  "$B/wcodecfs" http://10.203.0.2:8080/enc/ "$T/m" -o cache_size=512M
  for f in $files; do cat "$T/m/$f" > /dev/null; done
  fusermount3 -u "$T/m"; }
# the Python package and the wcodec tool on the folder's URL, no mount (the interpreter with numpy)
PY=/usr/bin/python3; $PY -c "import numpy" 2>/dev/null || PY=$NP
echo "$files" | grep safetensors > "$T/list"
py_url() { WCODEC_LIBRARY=$B/libwcodec.so PYTHONPATH=python $PY tests/bench/py_load.py url http://10.203.0.2:8080/enc/ > "$T/py.out"; }
py_rawurl() { WCODEC_LIBRARY=$B/libwcodec.so PYTHONPATH=python $PY tests/bench/py_load.py rawurl http://10.203.0.2:8080/raw/ "$T/list" > "$T/py.out"; }
# the same folder by wcodec.torch.load_dir on the CPU (numpy has no bfloat16: numpy.load_file
# cannot hold these weights; torch's loader is the one for them), where torch is there
py_load_dir() { WCODEC_LIBRARY=$B/libwcodec.so PYTHONPATH=python $PY tests/bench/py_load.py wcodec http://10.203.0.2:8080/enc/ cpu > "$T/py.out"; }
http_runs=; $PY -c "import torch" 2>/dev/null && http_runs=py_load_dir
decode_url() { rm -rf "$T/dec"; "$B/wcodec" decode -q http://10.203.0.2:8080/enc/ "$T/dec"; }
# S3: s3rver (npm, mount-scripts/install-deps.sh) in the same namespace, behind the same shaping;
# the raw files by curl (signed), the containers by the Python package (s3://)
S3RVER=$PWD/.deps/npm/node_modules/.bin/s3rver; S3PID=; s3_runs=
if [ -x "$S3RVER" ]; then
  mkdir -p "$T/s3data"
  ip netns exec "$NS" "$S3RVER" -d "$T/s3data" -a 10.203.0.2 -p 9000 --silent --configure-bucket models > "$T/s3rver.log" 2>&1 & S3PID=$!
  for i in $(seq 100); do curl -s -o /dev/null http://10.203.0.2:9000/ && break; sleep 0.1; done
  s3curl() { curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }
  for f in $files; do s3curl -T "$T/www/raw/$f" "http://10.203.0.2:9000/models/raw/$f"; done
  for f in $(cd "$T/www/enc" && ls); do s3curl -T "$T/www/enc/$f" "http://10.203.0.2:9000/models/enc/$f"; done
  s3_raw() { for f in $files; do s3curl -o /dev/null "http://10.203.0.2:9000/models/raw/$f"; done; }
  s3_py_url() { AWS_ENDPOINT_URL=http://10.203.0.2:9000 AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER \
    WCODEC_LIBRARY=$B/libwcodec.so PYTHONPATH=python $PY tests/bench/py_load.py url s3://models/enc > "$T/py.out"; }
  # the issue's comparison: the raw files fetched (s3rver serves anonymous GETs) and loaded, by the
  # same Python code as over HTTP, against wcodec.torch.load_dir("s3://...") on the CPU
  s3_rawurl() { WCODEC_LIBRARY=$B/libwcodec.so PYTHONPATH=python $PY tests/bench/py_load.py rawurl http://10.203.0.2:9000/models/raw/ "$T/list" > "$T/py.out"; }
  s3_load_dir() { AWS_ENDPOINT_URL=http://10.203.0.2:9000 AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER \
    WCODEC_LIBRARY=$B/libwcodec.so PYTHONPATH=python $PY tests/bench/py_load.py wcodec s3://models/enc cpu > "$T/py.out"; }
  $PY -c "import torch" 2>/dev/null && s3_runs="s3_rawurl s3_load_dir"
  s3_runs="s3_raw s3_py_url $s3_runs"
fi
# Python runs are timed inside the interpreter (py_load.py), after its imports: torch's import
# alone takes 1.5 s here, and it is not the load. ONLY="curl_raw s3_load_dir ..." runs just those.
declare -A secs
for what in ${ONLY:-curl_raw mount_read py_rawurl py_url $http_runs decode_url $s3_runs}; do
  for r in $(seq "$REPS"); do
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    rm -f "$T/py.out"
    a=$(now); $what; z=$(now)
    if [ -s "$T/py.out" ]; then cut -d' ' -f1 "$T/py.out"; else echo "$z - $a" | bc -l; fi >> "$T/$what.times"
  done
  secs[$what]=$(best < "$T/$what.times")
done
for what in curl_raw mount_read py_rawurl py_url $http_runs decode_url $s3_runs; do : "${secs[$what]:=nan}"; done
# the mount's result is what it read: check it once
"$B/wcodecfs" http://10.203.0.2:8080/enc/ "$T/m"
for f in $files; do cmp "$T/www/raw/$f" "$T/m/$f"; done
fusermount3 -u "$T/m"

# one layer: what a read of one tensor fetches, against that tensor's raw bytes
read -r toff tlen name < <($NP -c '
import json, struct, sys
b = open(sys.argv[1], "rb").read(1 << 20); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
k, v = max(((k, v) for k, v in h.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0])
print(8 + n + v["data_offsets"][0], v["data_offsets"][1] - v["data_offsets"][0], k)' "$T/www/raw/model-00001-of-0000$SHARDS.safetensors")
"$B/wcodecfs" http://10.203.0.2:8080/enc/ "$T/m"
: > "$T/ng/logs/access.log"
dd if="$T/m/model-00001-of-0000$SHARDS.safetensors" of=/dev/null bs=1M iflag=direct,skip_bytes,count_bytes skip="$toff" count="$tlen" 2>/dev/null
fusermount3 -u "$T/m"
fetched=$(awk '{s += $3} END {print s + 0}' "$T/ng/logs/access.log")
coded=$("$B/wcodec" info --json "$T/www/enc/model-00001-of-0000$SHARDS.wcodec" | $NP -c '
import json, sys; j = json.load(sys.stdin); print([t["coded_bytes"] for t in j["tensors"] if t["name"] == sys.argv[1]][0])' "$name")

div() { if [ "$1" = nan ] || [ "$2" = nan ]; then echo nan; else echo "$1 / $2" | bc -l; fi; }
mbs() { printf '%.0f' "$(div "$(div "$1" "$2")" 1000000)"; }
echo "remote_bench: $SHARDS shards of use-lite.bf16 x $COPIES (real BF16 weights), raw $raw_bytes bytes," \
     "encoded $enc_bytes; link $RATE (tc tbf in a network namespace); best of $REPS; $(nproc) cores"
printf '| %-44s | %8s | %8s |\n' "whole folder over the link" "seconds" "MB/s"
printf '| %-44s | %8.2f | %8s |\n' "curl, the raw .safetensors files" "${secs[curl_raw]}" "$(mbs "$raw_bytes" "${secs[curl_raw]}")"
printf '| %-44s | %8.2f | %8s |\n' "wcodecfs mount by URL (mount + read + umount)" "${secs[mount_read]}" "$(mbs "$raw_bytes" "${secs[mount_read]}")"
printf '| %-44s | %8.2f | %8s |\n' "wcodec decode URL/ DIR (the folder, to disk)" "${secs[decode_url]}" "$(mbs "$raw_bytes" "${secs[decode_url]}")"
printf '| %-44s | %8.2f | %8s |\n' "Python: raw files fetched (urllib) into memory" "${secs[py_rawurl]}" "$(mbs "$raw_bytes" "${secs[py_rawurl]}")"
printf '| %-44s | %8.2f | %8s |\n' "Python: wcodec.Container(URL) decoded to memory" "${secs[py_url]}" "$(mbs "$raw_bytes" "${secs[py_url]}")"
[ -n "$http_runs" ] && printf '| %-44s | %8.2f | %8s |\n' "Python: wcodec.torch.load_dir(URL), CPU" "${secs[py_load_dir]}" "$(mbs "$raw_bytes" "${secs[py_load_dir]}")"
if [ -n "$s3_runs" ]; then
  printf '| %-44s | %8.2f | %8s |\n' "S3 (s3rver): curl of the raw files (signed)" "${secs[s3_raw]}" "$(mbs "$raw_bytes" "${secs[s3_raw]}")"
  printf '| %-44s | %8.2f | %8s |\n' "S3: Python wcodec.Container(s3://...) decoded" "${secs[s3_py_url]}" "$(mbs "$raw_bytes" "${secs[s3_py_url]}")"
  printf 'S3: Python by URL / curl of the raw files: %.2fx\n' "$(div "${secs[s3_raw]}" "${secs[s3_py_url]}")"
  if [ -n "${secs[s3_load_dir]:-}" ]; then
    printf '| %-44s | %8.2f | %8s |\n' "S3: Python raw files fetched (urllib) into memory" "${secs[s3_rawurl]}" "$(mbs "$raw_bytes" "${secs[s3_rawurl]}")"
    printf '| %-44s | %8.2f | %8s |\n' "S3: wcodec.torch.load_dir(\"s3://...\"), CPU" "${secs[s3_load_dir]}" "$(mbs "$raw_bytes" "${secs[s3_load_dir]}")"
    printf 'S3: torch.load_dir / the raw files fetched into memory: %.2fx (target >= 1.4x)\n' "$(div "${secs[s3_rawurl]}" "${secs[s3_load_dir]}")"
  fi
fi
printf 'mount / curl speed: %.2fx (target >= 1.4x; the bytes alone allow %.2fx)\n' \
  "$(div "${secs[curl_raw]}" "${secs[mount_read]}")" "$(div "$raw_bytes" "$enc_bytes")"
[ -n "$http_runs" ] && printf 'Python: torch.load_dir(http://...) / Python raw fetch: %.2fx (target >= 1.4x)\n' "$(div "${secs[py_rawurl]}" "${secs[py_load_dir]}")"
printf 'wcodec decode URL / curl: %.2fx; Python URL / Python raw fetch: %.2fx (targets >= 1.4x)\n' \
  "$(div "${secs[curl_raw]}" "${secs[decode_url]}")" "$(div "${secs[py_rawurl]}" "${secs[py_url]}")"
echo "one tensor ($name, $tlen raw bytes): fetched $fetched bytes; its tiles are $coded coded bytes"
