#!/usr/bin/env python3
"""i8_predictors.py FILE.safetensors - would a spatial predictor help I8 weights?

For every I8 tensor (2-D view: rows = shape[0], cols = the rest), per 256 KiB tile, the order-0
entropy of the bytes themselves and of the residuals (x - prediction) mod 256 under the seed
design's predictors: left, top, average of left and top, planar (left + top - topleft). With
'best per tile' the best of all five is taken for each tile (as a per-tile mode byte would).
Prints bits per byte of each, over all I8 bytes. Needs numpy."""
import json, struct, sys
import numpy as np

TILE = 256 * 1024

def h_bits(a):
    c = np.bincount(a.ravel(), minlength=256).astype(np.float64)
    p = c[c > 0] / a.size
    return float(-(p * np.log2(p)).sum() * a.size)

def main(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    names = ["none", "left", "top", "average", "planar"]
    total = {k: 0.0 for k in names + ["best per tile"]}
    count = 0
    for name, t in hdr.items():
        if name == "__metadata__" or t["dtype"] != "I8" or len(t["shape"]) < 2:
            continue
        b, e = t["data_offsets"]
        x = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=np.uint8).astype(np.int32)
        cols = int(np.prod(t["shape"][1:]))
        for start in range(0, x.size, TILE):
            tile = x[start:start + TILE]
            rows = tile.size // cols
            if rows < 2:
                continue
            m = tile[:rows * cols].reshape(rows, cols)
            left = np.zeros_like(m); left[:, 1:] = m[:, :-1]
            top = np.zeros_like(m); top[1:, :] = m[:-1, :]
            tl = np.zeros_like(m); tl[1:, 1:] = m[:-1, :-1]
            sl = (left ^ 0x80) - 0x80; st = (top ^ 0x80) - 0x80; stl = (tl ^ 0x80) - 0x80
            preds = {"none": 0, "left": left, "top": top, "average": ((sl + st) >> 1) & 0xFF,
                     "planar": (sl + st - stl) & 0xFF}
            bits = {k: h_bits(((m - p) & 0xFF).astype(np.uint8)) for k, p in preds.items()}
            for k in names:
                total[k] += bits[k]
            total["best per tile"] += min(bits.values())
            count += m.size
    if not count:
        print("no 2-D I8 tensors"); return
    for k, v in total.items():
        print(f"{k:14s} {v / count:.4f} bits/byte")

main(sys.argv[1])
