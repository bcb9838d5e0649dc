#!/usr/bin/env bash
# test_urls.sh BUILD_DIR - containers named by URL, without a mount: `wcodec info|verify|decode`
# and the Python package (wcodec.numpy, safe_open) reading http://, https:// (a private CA) and
# s3:// objects served on loopback by servers this script starts (tests/net/servers.sh), and the
# faults: 404, 403, an object that is not a container, a truncated one, a server that stops
# mid-read, an object replaced mid-read: one clear line (exit 1 / WcodecError naming the URL)
# within a bounded time, and nothing left at the destination. Ends with 'N passed, N failed'.
set -u
B=$(realpath "${1:?usage: test_urls.sh BUILD_DIR}")
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
W=$B/wcodec
S3RVER=$ROOT/.deps/npm/node_modules/.bin/s3rver
T=$(mktemp -d /tmp/wc-urls.XXXXXX); chmod 755 "$T" # nginx workers run as another user
PIDS=()
cleanup() {
  [ -f "$T/ng/nginx.pid" ] && kill "$(cat "$T/ng/nginx.pid")" 2>/dev/null
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "${KEEP:-}" ] && return; rm -rf "$T"
}
trap cleanup EXIT
. "$HERE/servers.sh"
. "$HERE/harness.sh" # t, t_fails, said, ok, no; pass, fail, skip
one_line() { if [ "$(wc -l < "$T/err")" = 1 ]; then ok "$1"; else no "$1 ($(wc -l < "$T/err") lines)"; fi; }
NP=/usr/bin/python3; [ -x "$NP" ] && "$NP" -c "import numpy" 2>/dev/null || NP=python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then echo "# nginx missing (mount-scripts/install-deps.sh installs it)"; echo "0 passed, 1 failed"; exit 1; fi

mkdir -p "$T/orig" "$T/www"
"$B/tests/make_fixtures" "$T/orig" >/dev/null || { echo "make_fixtures failed"; exit 1; }
"$W" encode -q -j 2 "$T/orig" "$T/www/enc" || { echo "encode failed"; exit 1; }
# a small sharded model (two .safetensors of F32, I8 and BF16 tensors, a config.json), encoded with
# its manifest: the folder forms
mkdir -p "$T/model"
"$NP" - "$T/model" <<'PY' || { echo "model failed"; exit 1; }
import json, struct, sys, numpy as np
rng = np.random.default_rng(0)
def save(path, tensors):
    hdr, blobs, pos = {}, [], 0
    for name, (dt, arr) in tensors.items():
        b = arr.tobytes()
        hdr[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [pos, pos + len(b)]}
        blobs.append(b); pos += len(b)
    j = json.dumps(hdr).encode(); j += b" " * (-len(j) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(j)) + j + b"".join(blobs))
bf16 = lambda a: (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
save(sys.argv[1] + "/model-00001-of-00002.safetensors",
     {"embed.weight": ("BF16", bf16(rng.normal(0, 0.02, (512, 256)))), "norm.weight": ("F32", np.ones(256, np.float32))})
save(sys.argv[1] + "/model-00002-of-00002.safetensors",
     {"head.weight": ("BF16", bf16(rng.normal(0, 0.02, (300, 256)))), "q.weight": ("I8", rng.integers(-20, 20, (128, 64), dtype=np.int8))})
open(sys.argv[1] + "/config.json", "w").write('{"model_type": "test"}')
PY
"$W" encode -q "$T/model" "$T/www/model" || { echo "encode failed"; exit 1; }
# a Hugging Face cache's shape: a blob named by its hash, no extension (its container keeps the
# name "abc"), and a relative link to it, which the manifest lists
mkdir -p "$T/hf/blobs" "$T/hf/snap" "$T/www/hf/blobs" "$T/www/hf/snap"
cp "$T/orig/all_dtypes.safetensors" "$T/hf/blobs/abc"
"$W" encode -q "$T/hf/blobs/abc" "$T/www/hf/blobs/abc.wcodec" || { echo "encode failed"; exit 1; }
for d in hf www/hf; do ln -s ../blobs/abc "$T/$d/snap/model.safetensors"; done
"$W" manifest "$T/www/hf"
echo '{"not": "a container"}' > "$T/www/enc/config.wcodec"
head -c 3000000 "$T/www/enc/big_bf16.wcodec" > "$T/www/enc/truncated.wcodec"
cp "$T/www/enc/big_bf16.wcodec" "$T/www/enc/replaced.wcodec"
P1=$(free_port); P2=$(free_port); P5=$(free_port)
make_cert "$T"
nginx_conf "$T/ng" <<EOF
  log_format ranges '\$uri \$status \$body_bytes_sent "\$http_range"';
  access_log $T/ng/logs/access.log ranges;
  server { listen 127.0.0.1:$P1; root $T/www; location = /enc/denied.wcodec { return 403; } }
  server { listen 127.0.0.1:$P2; root $T/www; limit_rate 1m; }
  server { listen 127.0.0.1:$P5 ssl; root $T/www; ssl_certificate $T/cert.pem; ssl_certificate_key $T/key.pem; }
EOF
ng_start() { nginx_start "$T/ng" "$P1" "$P2"; }
ng_stop() { nginx_stop "$T/ng"; }
t "nginx up" ng_start
U=http://127.0.0.1:$P1/enc
ALOG=$T/ng/logs/access.log
export WCODEC_RETRY_TIME=2 WCODEC_STALL_TIMEOUT=2 # the fault cases end within seconds

# ---- the CLI over HTTP
t "wcodec info URL" "$W" info "$U/big_bf16.wcodec"
cp "$T/out" "$T/info"
t "it lists the tensors" grep -q "layers.1.weight" "$T/info"
for f in big_bf16 all_dtypes many_small edge; do
  t "wcodec decode URL: $f identical" sh -c "'$W' decode -q '$U/$f.wcodec' '$T/$f.out' && cmp '$T/$f.out' '$T/orig/$f.safetensors'"
done
t "wcodec decode URL - (standard output) identical" sh -c "'$W' decode '$U/big_bf16.wcodec' - | cmp - '$T/orig/big_bf16.safetensors'"
: > "$ALOG"
t "wcodec verify URL ORIGINAL" "$W" verify "$U/all_dtypes.wcodec" "$T/orig/all_dtypes.safetensors"
got=$(awk '$1 == "/enc/all_dtypes.wcodec" {s += $3} END {print s + 0}' "$ALOG"); size=$(stat -c %s "$T/www/enc/all_dtypes.wcodec")
t "verify read each byte once ($got bytes fetched of $size: the 64-byte header twice, alignment gaps never)" \
  test "$got" -le $((size + 64)) -a "$got" -ge $((size * 99 / 100))
t "no range asked for twice" test -z "$(awk '$1 == "/enc/all_dtypes.wcodec" {print $4}' "$ALOG" | sort | uniq -d)"
# the disk cache (WCODEC_DISK_CACHE): a second run fetches the 64-byte pin and nothing else
t "verify with WCODEC_DISK_CACHE" env WCODEC_DISK_CACHE="$T/dc" "$W" verify "$U/all_dtypes.wcodec" "$T/orig/all_dtypes.safetensors"
: > "$ALOG"
t "verify again through it" env WCODEC_DISK_CACHE="$T/dc" "$W" verify "$U/all_dtypes.wcodec" "$T/orig/all_dtypes.safetensors"
got=$(awk '$1 == "/enc/all_dtypes.wcodec" {s += $3} END {print s + 0}' "$ALOG")
t "the second run fetched the pin alone ($got bytes)" test "$got" = 64
printf 'X' | dd of="$(find "$T/dc" -type f ! -name '.*' | head -1)" bs=1 seek=100 conv=notrunc 2>/dev/null
t "a damaged cache entry is fetched again: verify still OK" env WCODEC_DISK_CACHE="$T/dc" "$W" verify "$U/all_dtypes.wcodec" "$T/orig/all_dtypes.safetensors"
t_fails "WCODEC_DISK_CACHE_SIZE that is not a size" env WCODEC_DISK_CACHE="$T/dc" WCODEC_DISK_CACHE_SIZE=lots "$W" info "$U/all_dtypes.wcodec"
said "says so" "WCODEC_DISK_CACHE_SIZE=lots: not a size"

t "wcodec bench URL" "$W" bench "$U/big_bf16.wcodec"
cp "$T/out" "$T/bench"
t "bench by URL: the original's size, a read and a decode speed" sh -c "grep -qx 'source_bytes: $(stat -c %s "$T/orig/big_bf16.safetensors")' '$T/bench' && grep -q '^read_GBps_[0-9]*threads: [0-9.]*[1-9]' '$T/bench' && grep -q '^decode_GBps_1thread: ' '$T/bench'"
t_fails "wcodec bench on a truncated container's URL" "$W" bench "$U/truncated.wcodec"

t "wcodec decode FOLDER-URL/ DIR: the model folder, containers decoded and files fetched" \
  sh -c "'$W' decode -q 'http://127.0.0.1:$P1/model/' '$T/model.out' && diff -r '$T/model' '$T/model.out'"
hf_ok() { # hf_ok DST PREFIX: a decode of the hf folder made the tree it was encoded from
  t "$2the link made again, its target as it was" test "$(readlink "$1/snap/model.safetensors")" = ../blobs/abc
  t "$2the blob decoded to its kept name, byte-identical" cmp "$T/hf/blobs/abc" "$1/blobs/abc"
  t "$2the same tree" diff <(cd "$T/hf" && find . -printf '%y %p\n' | sort) <(cd "$1" && find . -printf '%y %p\n' | sort)
}
t "wcodec decode FOLDER-URL/ DIR of a tree with a link and a named container" "$W" decode -q "http://127.0.0.1:$P1/hf/" "$T/hf.out"
hf_ok "$T/hf.out" ""
t_fails "decoded again over it: refused without -f" "$W" decode -q "http://127.0.0.1:$P1/hf/" "$T/hf.out"
t "and with -f, the same tree" sh -c "'$W' decode -q -f 'http://127.0.0.1:$P1/hf/' '$T/hf.out'"
hf_ok "$T/hf.out" "-f: "

# ---- memory: a decode by URL holds a bounded stage, not the object (384 MiB, 250 MB coded)
"$NP" - "$T/www/huge.safetensors" <<'PY'
import json, random, struct, sys
r = random.Random(7)
block = bytes(r.choice((0x3c, 0x3d, 0xbc, 0xbd, 0x3e)) if i % 2 else r.randrange(256) for i in range(1 << 20))
n = 384 << 20
hdr = json.dumps({"w": {"dtype": "BF16", "shape": [n // 2], "data_offsets": [0, n]}}).encode()
hdr += b" " * (-len(hdr) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(hdr)) + hdr)
    for i in range(384):
        f.write(block[i:] + block[:i])  # shifted: tiles are not copies of each other
PY
"$W" encode -q -j 2 "$T/www/huge.safetensors" "$T/www/huge.wcodec"
/usr/bin/time -f %M -o "$T/rss" "$W" decode -q "$U/../huge.wcodec" "$T/huge.out" 2>"$T/err"
rss=$(( $(tail -1 "$T/rss") / 1024 ))
t "decode of 384 MiB by URL: identical" cmp "$T/huge.out" "$T/www/huge.safetensors"
if ldd "$W" | grep -q libasan; then echo "# sanitizer build: RSS bound not checked (shadow memory; $rss MiB)"
else t "decode of 384 MiB by URL: $rss MiB resident (<= 160: the stage is bounded, not the object)" test "$rss" -le 160; fi
rm -f "$T/huge.out" "$T/www/huge.safetensors" "$T/www/huge.wcodec"

# ---- faults: one line, exit 1, the URL named, nothing left behind
t_fails "a 404" "$W" decode -q "$U/nothing.wcodec" "$T/x.safetensors"
said "says HTTP 404 and names the URL" "$U/nothing.wcodec: HTTP 404"
one_line "in one line"
t "and leaves nothing" test ! -e "$T/x.safetensors"
t_fails "a 403" "$W" verify "$U/denied.wcodec"
said "says HTTP 403" "denied.wcodec: HTTP 403"
t_fails "an object that is not a container" "$W" info "$U/config.wcodec"
said "says so, naming it" "config.wcodec: too short for a container"
one_line "in one line"
t_fails "a truncated container" "$W" decode -q "$U/truncated.wcodec" "$T/x.safetensors"
said "says so, naming it" "truncated.wcodec"
t "and leaves nothing" test ! -e "$T/x.safetensors"
t_fails "a server that is not there" "$W" info "http://127.0.0.1:1/x.wcodec"
said "says why" "127.0.0.1:1/x.wcodec: .*onnect"
t_fails "a URL naming no object" "$W" info "http://127.0.0.1:$P1"
said "says so" "not the URL of an object"
# the server stops mid-read (1 MB/s port): the decode ends within the bound, nothing half-written
start=$(date +%s)
WCODEC_CONNECTIONS=1 "$W" decode -q -j 2 "http://127.0.0.1:$P2/enc/big_bf16.wcodec" "$T/x.safetensors" 2>"$T/derr" & D=$!
sleep 1; ng_stop; wait $D; rc=$?; took=$(( $(date +%s) - start ))
t "the server stopped mid-read: exit 1 (rc $rc) within 20 s ($took s)" test "$rc" = 1 -a "$took" -le 20
cp "$T/derr" "$T/err"; one_line "in one line"
said "naming the URL" "127.0.0.1:$P2/enc/big_bf16.wcodec"
t "and nothing left at the destination" test ! -e "$T/x.safetensors"
t "nginx back" ng_start
# the object replaced mid-read: never a mix of two versions
# (one connection, GETs of 256 KiB: the 4 MB object takes several at 1 MB/s)
WCODEC_CONNECTIONS=1 WCODEC_FETCH_SIZE=256K "$W" decode -q -j 2 "http://127.0.0.1:$P2/enc/replaced.wcodec" "$T/x.safetensors" 2>"$T/derr" & D=$!
sleep 1; cp "$T/www/enc/all_dtypes.wcodec" "$T/www/enc/.new"; mv "$T/www/enc/.new" "$T/www/enc/replaced.wcodec"
wait $D; rc=$?
t "an object replaced mid-read: exit 1 (rc $rc)" test "$rc" = 1
cp "$T/derr" "$T/err"
said "says it changed on the server" "replaced.wcodec: changed on the server"
t "and nothing left at the destination" test ! -e "$T/x.safetensors"

# ---- https with a private CA
t_fails "https: a certificate no CA vouches for is refused" "$W" info "https://127.0.0.1:$P5/enc/edge.wcodec"
said "saying why" "certificate"
t "https: trusted with WCODEC_CA_FILE" env WCODEC_CA_FILE="$T/cert.pem" "$W" verify "https://127.0.0.1:$P5/enc/big_bf16.wcodec" "$T/orig/big_bf16.safetensors"

# ---- the Python package (the interpreter with numpy; libwcodec.so is not built under the sanitizers)
export WCODEC_LIBRARY=$B/libwcodec.so PYTHONPATH=$ROOT/python
if [ ! -f "$B/libwcodec.so" ]; then echo "# $B/libwcodec.so missing (a sanitizer build): Python checks skipped"; else
t "python: Container(URL) reads the original bytes" "$NP" - "$U/all_dtypes.wcodec" "$T/orig/all_dtypes.safetensors" <<'PY'
import sys, wcodec
c = wcodec.Container(sys.argv[1])
assert bytes(c.read(0, c.source_size)) == open(sys.argv[2], "rb").read()
c.close()
PY
t "python: numpy.load_file(URL) equals the local container's (I8, F32, U8...)" "$NP" - "$U/many_small.wcodec" "$T/www/enc/many_small.wcodec" <<'PY'
import sys, wcodec
with wcodec.safe_open(sys.argv[1], framework="numpy") as f, wcodec.safe_open(sys.argv[2], framework="numpy") as g:
    assert list(f.keys()) == list(g.keys())
    ks = [k for k in f.keys() if k.split(".")[1] and int(k.split(".")[1]) % 7 in (2, 3, 4, 6)]  # F32 I8 U8 I32
    assert len(ks) > 500 and all(f.get_tensor(k).tobytes() == g.get_tensor(k).tobytes() for k in ks)
PY
if "$NP" -c "import torch" 2>/dev/null; then
  t "python: torch.load_dir(FOLDER-URL) equals load_dir of the local folder" "$NP" - "http://127.0.0.1:$P1/model/" "$T/www/model" <<'PY'
import sys, torch, wcodec.torch
a, b = wcodec.torch.load_dir(sys.argv[1]), wcodec.torch.load_dir(sys.argv[2])
assert sorted(a) == sorted(b) == ["embed.weight", "head.weight", "norm.weight", "q.weight"], sorted(a)
assert all(torch.equal(a[k], b[k]) for k in a)
PY
  t "python: torch.load_file(URL) equals the local container's (BF16)" "$NP" - "$U/big_bf16.wcodec" "$T/www/enc/big_bf16.wcodec" <<'PY'
import sys, torch, wcodec.torch
a, b = wcodec.torch.load_file(sys.argv[1]), wcodec.torch.load_file(sys.argv[2])
assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
PY
fi
t "python: a 404 raises WcodecError naming the URL" "$NP" - "$U/nothing.wcodec" <<'PY'
import sys, wcodec.numpy
try:
    wcodec.numpy.load_file(sys.argv[1])
    sys.exit("no error")
except wcodec.WcodecError as e:
    assert sys.argv[1] in str(e) and "404" in str(e), str(e)
PY
fi

# ---- S3: s3rver behind the signature check
if [ ! -x "$S3RVER" ]; then
  echo "# s3rver missing ($S3RVER; mount-scripts/install-deps.sh installs it): S3 tests skipped"
  skip=1
else
  if s3_up "$S3RVER" "$T/s3data" models; then ok "s3rver and the signature check up"; else no "s3rver and the signature check up"; fi
  for f in big_bf16 all_dtypes; do s3_put "$T/www/enc/$f.wcodec" "models/llama/$f.wcodec"; done
  for f in $(cd "$T/www/model" && ls); do s3_put "$T/www/model/$f" "models/m/$f"; done
  export AWS_ENDPOINT_URL=$S3_EP AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3CRETKEY
  t "s3: wcodec verify s3://models/llama/big_bf16.wcodec ORIGINAL" "$W" verify s3://models/llama/big_bf16.wcodec "$T/orig/big_bf16.safetensors"
  t "s3: wcodec decode identical" sh -c "'$W' decode -q s3://models/llama/all_dtypes.wcodec '$T/s3.out' && cmp '$T/s3.out' '$T/orig/all_dtypes.safetensors'"
  [ -f "$B/libwcodec.so" ] && t "s3: python Container(s3://...) reads the original bytes" "$NP" - s3://models/llama/all_dtypes.wcodec "$T/orig/all_dtypes.safetensors" <<'PY'
import sys, wcodec
c = wcodec.Container(sys.argv[1])
assert bytes(c.read(0, c.source_size)) == open(sys.argv[2], "rb").read()
c.close()
PY
  t "s3: wcodec decode s3://models/m DIR: the model folder" sh -c "'$W' decode -q s3://models/m '$T/s3model' && diff -r '$T/model' '$T/s3model'"
  for f in $(cd "$T/www/hf" && find . -type f | sed 's|^\./||'); do s3_put "$T/www/hf/$f" "models/hf/$f"; done
  t "s3: wcodec decode s3://models/hf DIR: objects, and the links of its manifest" "$W" decode -q s3://models/hf "$T/s3hf"
  hf_ok "$T/s3hf" "s3: "
  [ -f "$B/libwcodec.so" ] && "$NP" -c "import torch" 2>/dev/null &&
    t "s3: python torch.load_dir(s3://models/m) equals the local folder's" "$NP" - s3://models/m "$T/www/model" <<'PY'
import sys, torch, wcodec.torch
a, b = wcodec.torch.load_dir(sys.argv[1]), wcodec.torch.load_dir(sys.argv[2])
assert sorted(a) == sorted(b) and len(a) == 4 and all(torch.equal(a[k], b[k]) for k in a)
PY
  # a folder with a truncated shard: its shards are opened at once, and the error names that one
  s3_put "$T/www/model/$(cd "$T/www/model" && ls *.wcodec | head -1)" "models/bad/a.wcodec"
  s3_put "$T/www/enc/truncated.wcodec" "models/bad/b.wcodec"
  [ -f "$B/libwcodec.so" ] && "$NP" -c "import torch" 2>/dev/null &&
    t "s3: torch.load_dir of a folder with a truncated shard raises, naming it" "$NP" - s3://models/bad <<'PY'
import sys, wcodec, wcodec.torch
try:
    wcodec.torch.load_dir(sys.argv[1])
except wcodec.WcodecError as e:
    assert "models/bad/b.wcodec" in str(e) and "a.wcodec" not in str(e), e
else:
    raise SystemExit("no error")
PY
  t_fails "s3: a wrong secret" env AWS_SECRET_ACCESS_KEY=WRONGSECRET "$W" info s3://models/llama/big_bf16.wcodec
  said "s3: says HTTP 403" "HTTP 403"
  t "s3: without the secret in the message" sh -c "! grep -q WRONGSECRET '$T/err'"
  t_fails "s3: a missing key" "$W" info s3://models/llama/nothing.wcodec
  said "s3: says HTTP 404" "nothing.wcodec: HTTP 404"
  t_fails "s3: no credentials at all" env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$T" AWS_SHARED_CREDENTIALS_FILE="$T/none" "$W" info s3://models/llama/big_bf16.wcodec
  said "s3: says so" "no AWS credentials"
fi

echo "$pass passed, $fail failed$([ "$skip" = 0 ] || echo ", $skip skipped")"
[ "$fail" = 0 ]
