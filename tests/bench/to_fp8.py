#!/usr/bin/env python3
"""to_fp8.py SRC.safetensors OUT.safetensors - real weights as FP8 E4M3 (the "fn" form: max 448, no
infinities), the way FP8 checkpoints are made: every 2-D tensor of F32 (or F16, BF16) scaled per
row so that its largest magnitude is 448, rounded to nearest even, stored as F8_E4M3 with its
scales beside it (NAME.scale, F32, one per row); other tensors copied as they are. For the codec
benchmarks (context_entropy.py, wcodec bench); needs numpy."""
import json
import struct
import sys

import numpy as np


def e4m3(x):
    """float32 array -> E4M3 codes (uint8), round to nearest even, saturating at 448."""
    a = np.minimum(np.abs(x).astype(np.float64), 448.0)
    code = np.empty(a.shape, np.int64)
    sub = a < 2.0 ** -6
    code[sub] = np.rint(a[sub] / 2.0 ** -9)  # subnormals: 0..8 (8 is the smallest normal)
    n = ~sub
    e = np.floor(np.log2(a[n]))
    mant = np.rint((a[n] / 2.0 ** e - 1) * 8)
    e, mant = np.where(mant == 8, e + 1, e), np.where(mant == 8, 0, mant)
    code[n] = np.minimum((e + 7) * 8 + mant, 0x7E)
    return (code | np.where(np.signbit(x), 0x80, 0)).astype(np.uint8)


def main(src, out):
    b = open(src, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    hdr, parts, pos = {"__metadata__": h.get("__metadata__", {})}, [], 0
    kinds = {"F32": np.float32, "F16": np.float16}

    def put(name, dtype, shape, raw):
        nonlocal pos
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + len(raw)]}
        parts.append(raw)
        pos += len(raw)

    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        if len(v["shape"]) != 2 or v["dtype"] not in kinds and v["dtype"] != "BF16":
            put(k, v["dtype"], v["shape"], raw)
            continue
        if v["dtype"] == "BF16":
            x = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            x = np.frombuffer(raw, kinds[v["dtype"]]).astype(np.float32)
        x = x.reshape(v["shape"])
        scale = np.abs(x).max(axis=1) / 448.0
        scale[scale == 0] = 1.0
        put(k, "F8_E4M3", v["shape"], e4m3(x / scale[:, None]).tobytes())
        put(k + ".scale", "F32", [v["shape"][0]], scale.astype(np.float32).tobytes())
    j = json.dumps(hdr).encode()
    j += b" " * (-len(j) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(j)) + j + b"".join(parts))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
