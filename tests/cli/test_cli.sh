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
check "verify with original" "$W" verify "$T/wc/model-00001-of-00002.wcodec" "$T/model/model-00001-of-00002.safetensors"
check "info" "$W" info "$T/wc/model-00001-of-00002.wcodec"
grep -q "^a  *BF16  *\[300000\]" "$T/out" && ok "info names the tensor, dtype, shape" || no "info names the tensor, dtype, shape"

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
check_fails "decode of a corrupted container fails" "$W" decode "$T/corrupt.wcodec" "$T/corrupt.out"
[ ! -e "$T/corrupt.out" ] && ok "no partial decode left" || no "no partial decode left"
check_fails "unknown command" "$W" frobnicate
check_fails "bad -j" "$W" encode -j 0 "$T/model" "$T/wc2"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
