#!/usr/bin/env bash
# test_cli.sh WCODEC - the wcodec tool as a user runs it: directory trees, exit codes, messages,
# nothing left behind on errors. Prints TAP-like lines and a closing 'N passed, N failed'.
set -u
W=${1:?usage: test_cli.sh path/to/wcodec}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { echo "ok - $1"; pass=$((pass+1)); }
no() { echo "not ok - $1"; fail=$((fail+1)); }
check() { local name=$1; shift; if "$@" >"$T/out" 2>"$T/err"; then ok "$name"; else no "$name"; sed 's/^/#   /' "$T/err"; fi; }
check_fails() { local name=$1; shift; if "$@" >"$T/out" 2>"$T/err"; then no "$name (exit 0)"; else ok "$name"; fi; }

# A model folder: two safetensors files (one in a subfolder), a config, a tokenizer.
mk() { # mk FILE NAME DTYPE NBYTES: one tensor of pseudo-random bytes
  python3 - "$@" <<'PY'
import json, struct, sys, random
path, name, dtype, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
w = {"U8": 1, "BF16": 2, "F32": 4}[dtype]
r = random.Random(n)
data = bytes(r.choice((0x3c, 0x3d, 0xbc, 0xbd, 0x3e)) if i % 2 else r.randrange(256) for i in range(n))
hdr = json.dumps({"__metadata__": {"format": "pt"}, name: {"dtype": dtype, "shape": [n // w], "data_offsets": [0, n]}}).encode()
hdr += b" " * (-len(hdr) % 8)
open(path, "wb").write(struct.pack("<Q", len(hdr)) + hdr + data)
PY
}
mkdir -p "$T/model/sub"
mk "$T/model/model-00001-of-00002.safetensors" a BF16 600000
mk "$T/model/sub/model-00002-of-00002.safetensors" b F32 300000
echo '{"hidden_size": 8}' > "$T/model/config.json"
echo '{"tok": 1}' > "$T/model/sub/tokenizer.json"

check "help" "$W" --help
check "--version" "$W" --version
grep -qE "^wcodec [0-9]+\.[0-9]+\.[0-9]+$" "$T/out" && ok "--version prints the release" || no "--version prints the release"
check "encode --help" "$W" encode --help
grep -q -- "--tile-size" "$T/out" && ok "encode --help names --tile-size" || no "encode --help names --tile-size"
check "encode a directory" "$W" encode -j 2 "$T/model" "$T/wc"
[ -f "$T/wc/model-00001-of-00002.wcodec" ] && [ -f "$T/wc/sub/model-00002-of-00002.wcodec" ] \
  && ok "containers named .wcodec, subfolders kept" || no "containers named .wcodec, subfolders kept"
cmp -s "$T/model/config.json" "$T/wc/config.json" && cmp -s "$T/model/sub/tokenizer.json" "$T/wc/sub/tokenizer.json" \
  && ok "other files copied" || no "other files copied"
check "decode a directory" "$W" decode "$T/wc" "$T/back"
check "decoded tree identical" diff -r "$T/model" "$T/back"
# the manifest an HTTP mount lists the folder by
manifest_paths() { python3 -c 'import json, sys; print(" ".join(f["path"] for f in json.load(open(sys.argv[1]))["files"]))' "$1"; }
[ "$(manifest_paths "$T/wc/wcodec-manifest.json")" = "config.json model-00001-of-00002.wcodec sub/model-00002-of-00002.wcodec sub/tokenizer.json" ] \
  && ok "encode writes a manifest of every file" || no "encode writes a manifest of every file"
python3 -c 'import json, os, sys
d = sys.argv[1]; m = json.load(open(d + "/wcodec-manifest.json"))
sys.exit(0 if all(f["size"] == os.path.getsize(d + "/" + f["path"]) for f in m["files"]) else 1)' "$T/wc" \
  && ok "manifest sizes are the files'" || no "manifest sizes are the files'"
echo '{}' > "$T/wc/sub/added.json"
check "manifest DIR rewrites it" "$W" manifest "$T/wc"
manifest_paths "$T/wc/wcodec-manifest.json" | grep -q "sub/added.json" && ok "and lists a file added since" || no "and lists a file added since"
rm "$T/wc/sub/added.json"; "$W" manifest "$T/wc"
check_fails "manifest of a file refused" "$W" manifest "$T/wc/config.json"
grep -q "not a directory" "$T/err" && ok "saying so" || no "saying so"
check "manifest --help" "$W" manifest --help
check "verify with original" "$W" verify "$T/wc/model-00001-of-00002.wcodec" "$T/model/model-00001-of-00002.safetensors"
check "info" "$W" info "$T/wc/model-00001-of-00002.wcodec"
grep -q "^a  *BF16  *\[300000\]" "$T/out" && ok "info names the tensor, dtype, shape" || no "info names the tensor, dtype, shape"

# habits: -j, '-' for standard output, -q, --json, long names
check "decode -j 2" "$W" decode -j 2 -q "$T/wc/model-00001-of-00002.wcodec" "$T/j2.safetensors"
check "decode -j 2: identical" cmp "$T/j2.safetensors" "$T/model/model-00001-of-00002.safetensors"
"$W" decode -q "$T/wc/model-00001-of-00002.wcodec" - > "$T/stdout.bin" 2>"$T/err" && cmp -s "$T/stdout.bin" "$T/model/model-00001-of-00002.safetensors" \
  && ok "decode FILE - writes the original to standard output" || no "decode FILE - writes the original to standard output"
sum_pipe=$("$W" decode -q -j 2 "$T/wc/model-00001-of-00002.wcodec" - | sha256sum | cut -d' ' -f1)
[ "$sum_pipe" = "$(sha256sum < "$T/model/model-00001-of-00002.safetensors" | cut -d' ' -f1)" ] && ok "decode - | sha256sum" || no "decode - | sha256sum"
check_fails "encode to '-' refused" "$W" encode "$T/model/model-00001-of-00002.safetensors" -
check_fails "a directory to '-' refused" "$W" decode "$T/wc" -
grep -q "standard output" "$T/err" && ok "the refusal says why" || no "the refusal says why"
check "verify -j 2 -q" "$W" verify -j 2 -q "$T/wc/model-00001-of-00002.wcodec" "$T/model/model-00001-of-00002.safetensors"
[ ! -s "$T/err" ] && ok "verify -q prints nothing" || no "verify -q prints nothing"
check_fails "verify -j 0 refused" "$W" verify -j 0 "$T/wc/model-00001-of-00002.wcodec"
check "info --json" "$W" info --json "$T/wc/model-00001-of-00002.wcodec"
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); t = d["tensors"][0]
assert (t["name"], t["dtype"], t["shape"], t["source_bytes"]) == ("a", "BF16", [300000], 600000), t
assert d["source_bytes"] > d["container_bytes"] > 0 and d["tiles"] >= 1, d' "$T/out" 2>"$T/err" \
  && ok "info --json: valid JSON with the tensor's name, dtype, shape, sizes" || no "info --json: valid JSON with the tensor's name, dtype, shape, sizes"
long=$(printf 'model.layers.%s.weight' "$(printf 'x%.0s' $(seq 1 150))")
mk "$T/long.safetensors" "$long" BF16 4096
"$W" encode -q "$T/long.safetensors" "$T/long.wcodec" && "$W" info "$T/long.wcodec" > "$T/out" 2>"$T/err"
hdr_col=$(head -1 "$T/out" | grep -bo "dtype" | head -1 | cut -d: -f1)
row_col=$(sed -n 2p "$T/out" | grep -bo "BF16" | head -1 | cut -d: -f1)
[ -n "$hdr_col" ] && [ "$hdr_col" = "$row_col" ] && ok "info: a 160-character name keeps the columns aligned" || no "info: a 160-character name keeps the columns aligned ($hdr_col vs $row_col)"
grep -q "^total: 1 tensors" "$T/out" && ok "info ends with the totals" || no "info ends with the totals"
"$W" decode "$T/wc/model-00001-of-00002.wcodec" "$T/noprog.safetensors" 2>"$T/err" >/dev/null
! grep -q $'\r' "$T/err" && ok "no progress line when stderr is not a terminal" || no "no progress line when stderr is not a terminal"

# errors: one line on stderr, non-zero exit, nothing left
check_fails "missing input fails" "$W" encode "$T/nope.safetensors" "$T/nope.wcodec"
[ "$(wc -l < "$T/err")" -eq 1 ] && grep -q "^wcodec: " "$T/err" && ok "one clear error line" || no "one clear error line"
check_fails "existing output refused" "$W" encode "$T/model/model-00001-of-00002.safetensors" "$T/wc/model-00001-of-00002.wcodec"
check "-f overwrites" "$W" encode -f -q "$T/model/model-00001-of-00002.safetensors" "$T/wc/model-00001-of-00002.wcodec"
printf '\x10\x00\x00\x00\x00\x00\x00\x00{"w": {"dtype"' > "$T/bad.safetensors"
check_fails "malformed safetensors refused" "$W" encode "$T/bad.safetensors" "$T/bad.wcodec"
grep -q "bad.safetensors" "$T/err" && ok "message names the file" || no "message names the file"
[ ! -e "$T/bad.wcodec" ] && [ -z "$(ls -A "$T" | grep tmp)" ] && ok "no output, no temporary" || no "no output, no temporary"
cp "$T/wc/model-00001-of-00002.wcodec" "$T/corrupt.wcodec"
size=$(stat -c %s "$T/corrupt.wcodec")
printf '\xff' | dd of="$T/corrupt.wcodec" bs=1 seek=$((size - 100)) conv=notrunc 2>/dev/null
check_fails "verify catches a corrupted payload" "$W" verify "$T/corrupt.wcodec"
grep -q "checksum\|corrupt" "$T/err" && ok "verify says why" || no "verify says why"
check_fails "bench of a corrupted container fails" "$W" bench "$T/corrupt.wcodec"
grep -q "corrupt.wcodec" "$T/err" && ok "bench names the file" || no "bench names the file"
check_fails "bench --tile-size of a container refused" "$W" bench --tile-size 4096 "$T/wc/model-00001-of-00002.wcodec"
grep -q "container keeps its tiles" "$T/err" && ok "bench says why" || no "bench says why"
check "bench of a container" "$W" bench -j 2 "$T/wc/model-00001-of-00002.wcodec"
grep -qx "source_bytes: $(stat -c %s "$T/model/model-00001-of-00002.safetensors")" "$T/out" &&
  grep -qx "container_bytes: $(stat -c %s "$T/wc/model-00001-of-00002.wcodec")" "$T/out" &&
  grep -q "^decode_GBps_2threads: " "$T/out" && ok "bench of a container: its sizes and speeds" || no "bench of a container: its sizes and speeds"
check_fails "decode of a corrupted container fails" "$W" decode "$T/corrupt.wcodec" "$T/corrupt.out"
[ ! -e "$T/corrupt.out" ] && ok "no partial decode left" || no "no partial decode left"
"$W" decode -q "$T/corrupt.wcodec" - > "$T/corrupt.stream" 2>"$T/err"; rc=$?
[ $rc -ne 0 ] && grep -q "checksum\|corrupt" "$T/err" && ok "decode to '-' of a corrupted container fails, says why" || no "decode to '-' of a corrupted container fails, says why"
orig_size=$(stat -c %s "$T/model/model-00001-of-00002.safetensors"); got=$(stat -c %s "$T/corrupt.stream")
[ "$got" -lt "$orig_size" ] && cmp -s -n "$got" "$T/corrupt.stream" "$T/model/model-00001-of-00002.safetensors" \
  && ok "the stream stops before the bad tile; what came out is right" || no "the stream stops before the bad tile; what came out is right"
mkdir -p "$T/dir.wcodec"; : > "$T/empty.wcodec"
for f in dir.wcodec empty.wcodec; do
  check_fails "info on $f fails" "$W" info "$T/$f"
  [ "$(wc -l < "$T/err")" -eq 1 ] && grep -q "$f: \(Is a directory\|0 bytes, too short\)" "$T/err" && ok "$f: one line saying why" || no "$f: one line saying why"
done
# Decoding to a file holds a few tiles a thread, whatever the file's size: a 192 MiB BF16 file
# decodes in under 32 MiB resident (the whole file was held at once before: 71 MB for 112 MB).
python3 - "$T/big.safetensors" <<'PY'
import json, random, struct, sys
r = random.Random(7)
block = bytes(r.choice((0x3c, 0x3d, 0xbc, 0xbd, 0x3e)) if i % 2 else r.randrange(256) for i in range(1 << 20))
n = 192 << 20
hdr = json.dumps({"w": {"dtype": "BF16", "shape": [n // 2], "data_offsets": [0, n]}}).encode()
hdr += b" " * (-len(hdr) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(hdr)) + hdr)
    for i in range(192):
        f.write(block[i:] + block[:i])  # shifted: tiles are not copies of each other
PY
check "encode a 192 MiB file" "$W" encode -q -j 2 "$T/big.safetensors" "$T/big.wcodec"
for j in 1 2; do
  /usr/bin/time -f %M -o "$T/rss" "$W" decode -q -f -j $j "$T/big.wcodec" "$T/big.out"
  rss=$(( $(tail -1 "$T/rss") / 1024 ))
  cmp -s "$T/big.out" "$T/big.safetensors" && ok "decode -j $j of 192 MiB: identical" || no "decode -j $j of 192 MiB: identical"
  if ldd "$W" | grep -q libasan; then echo "# sanitizer build: RSS bound not checked (shadow memory; $rss MiB)"
  else [ "${rss:-999}" -le 32 ] && ok "decode -j $j of 192 MiB: $rss MiB resident (<= 32)" || no "decode -j $j of 192 MiB: $rss MiB resident (<= 32)"; fi
done
rm -f "$T/big.safetensors" "$T/big.wcodec" "$T/big.out"
check_fails "unknown command" "$W" frobnicate
check_fails "bad -j" "$W" encode -j 0 "$T/model" "$T/wc2"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
