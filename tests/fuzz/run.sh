#!/usr/bin/env bash
# run.sh BUILD_DIR SECONDS - runs each libFuzzer target for SECONDS, starting from seeds made
# here (small safetensors files, containers wcodec makes of them, a manifest, a ListObjectsV2
# page). Fails on any crash.
# CORPUS=DIR keeps each target's corpus in DIR/TARGET across runs (long.sh uses it).
set -euo pipefail
B=$(realpath "${1:?usage: run.sh BUILD_DIR SECONDS}"); S=${2:-30}
W=${WCODEC:-$B/wcodec}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir -p "$T/st" "$T/wc"
python3 - "$T/st" <<'PY'
import json, struct, sys, random
out = sys.argv[1]
r = random.Random(1)
def write(name, tensors, meta=None, pad=0, gap=0):
    hdr, data, off = {}, b"", 0
    if meta: hdr["__metadata__"] = meta
    for n, dt, shape, w in tensors:
        cnt = 1
        for d in shape: cnt *= d
        b = bytes(r.choice((0x3c, 0x3d, 0xbc, 0xbd)) if i % w == w - 1 else r.randrange(256) for i in range(cnt * w))
        hdr[n] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        data += b + b"\0" * gap; off += len(b) + gap
    h = json.dumps(hdr).encode() + b" " * pad
    open(f"{out}/{name}.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + data)
write("bf16", [("w", "BF16", [40, 30], 2), ("b", "BF16", [30], 2)], {"format": "pt"}, pad=3)
write("mixed", [("a", "I8", [700], 1), ("s", "F32", [], 4), ("e", "F16", [0], 2), ("u", "X9", [5], 1)], gap=2)
write("f64", [("d", "F64", [300], 8), ("i", "I16", [500], 2), ("z", "BOOL", [90], 1)])
write("empty", [])
PY
for f in "$T"/st/*.safetensors; do "$W" encode -q --tile-size 4096 "$f" "$T/wc/$(basename "$f" .safetensors).wcodec"; done
cp "$T"/st/*.safetensors "$T/wc/" 2>/dev/null || true # a non-container seed too
# the answers of servers a remote mount parses: a manifest, and ListObjectsV2 pages
mkdir -p "$T/manifest" "$T/s3_list"
mkdir -p "$T/tree/sub" && cp "$T"/wc/bf16.wcodec "$T/tree/sub/" && echo '{}' > "$T/tree/config.json"
ln -s ../config.json "$T/tree/sub/link.json" # a link entry
"$W" manifest "$T/tree" && cp "$T/tree/wcodec-manifest.json" "$T/manifest/seed.json"
printf '\001<ListBucketResult><Contents><Key>m/a&amp;b.wcodec</Key><LastModified>2026-11-24T07:22:47.000Z</LastModified><ETag>&quot;e&quot;</ETag><Size>12</Size></Contents><Contents><Key>m/sub/</Key><Size>0</Size></Contents><IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken></ListBucketResult>' > "$T/s3_list/seed.xml"
for target in safetensors container manifest s3_list; do
  case $target in safetensors) seeds=$T/st ;; container) seeds=$T/wc ;; *) seeds=$T/$target ;; esac
  corpus=${CORPUS:+$CORPUS/$target}; corpus=${corpus:-$T/corpus-$target}; mkdir -p "$corpus"
  echo "fuzz_$target: ${S}s"
  "$B/tests/fuzz_$target" -max_total_time="$S" -max_len=65536 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="${CORPUS:-$T}/" "$corpus" "$seeds" 2>"$T/log-$target" || {
    tail -40 "$T/log-$target"; echo "fuzz_$target FAILED"; exit 1; }
  grep -E "stat::number_of_executed_units|cov:" "$T/log-$target" | tail -2
done
echo "fuzzers: no crash"
