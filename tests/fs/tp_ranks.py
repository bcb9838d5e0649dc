#!/usr/bin/env python3
"""tp_ranks.py MOUNTED ORIGINAL RANK [WORLD] - one rank of a tensor-parallel load, reading its
shard of every tensor of a .safetensors file as transformers' tp_plan slices them (torch.chunk's
rule): rows split for every other tensor (one run), columns split for the rest (a piece of every
row). Compares each read with the same bytes of ORIGINAL; prints the count of mismatches and exits
1 if any. Standard library only (any python3). Used by tests/fs/test_mount.sh and
tests/bench/tp_mount_bench.sh."""
import json
import os
import struct
import sys

mnt, orig, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
world = int(sys.argv[4]) if len(sys.argv) > 4 else 2
f, g = os.open(mnt, os.O_RDONLY), os.open(orig, os.O_RDONLY)
n = struct.unpack("<Q", os.pread(g, 8, 0))[0]
hdr = {k: v for k, v in json.loads(os.pread(g, n, 8)).items() if k != "__metadata__"}
bad = 0
for i, (name, t) in enumerate(sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0])):
    a, b = t["data_offsets"]
    rows = (t["shape"] or [1])[0]
    row = (b - a) // max(rows, 1)
    if not rows or not row:
        continue
    part = -(-rows // world)  # torch.chunk's rule
    if i % 2 == 0 or row % world:  # rows split: one run
        r0, r1 = min(rank * part, rows), min((rank + 1) * part, rows)
        spans = [(8 + n + a + r0 * row, (r1 - r0) * row)]
    else:  # columns split: a piece of every row
        w = row // world
        spans = [(8 + n + a + r * row + rank * w, w) for r in range(rows)]
    for off, ln in spans:
        if ln and os.pread(f, ln, off) != os.pread(g, ln, off):
            bad += 1
print(bad)
sys.exit(1 if bad else 0)
