#!/usr/bin/env python3
"""repeat_model.py SRC COPIES OUT [PREFIX] - a larger model file of real weights: every tensor of
the safetensors file SRC, repeated COPIES times under new names (PREFIXN.NAME; PREFIX "copy"),
into OUT. Shards of one model need a PREFIX each: a name must not be in two shards."""
import json, struct, sys

src, copies, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
prefix = sys.argv[4] if len(sys.argv) > 4 else "copy"
b = open(src, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
base = 8 + n
hdr, parts, pos = {"__metadata__": h.get("__metadata__", {})}, [], 0
for c in range(copies):
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        parts.append(b[base + s:base + e])
        hdr[f"{prefix}{c}.{k}"] = {"dtype": v["dtype"], "shape": v["shape"], "data_offsets": [pos, pos + e - s]}
        pos += e - s
j = json.dumps(hdr).encode()
j += b" " * (-len(j) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(j)) + j)
    for p in parts:
        f.write(p)
