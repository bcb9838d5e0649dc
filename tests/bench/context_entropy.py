#!/usr/bin/env python3
"""context_entropy.py FILE.safetensors - how far a context model could take BF16 weights below the
order-0 bound our byte planes reach: for every BF16 tensor of at least 4096 elements, the empirical
entropy (bits per element, tables not counted) of
  - the exponent byte alone (what the container codes now, one table per tensor),
  - the exponent given a context: the element to its left, 32 to its left (the same rANS lane's
    previous symbol: free on the GPU), the element above (previous row), the row itself (a table
    per row: the row's scale), each as 256 contexts and in 4 or 8 quantile buckets,
  - the sign and mantissa byte alone (stored raw now) and given the exponent,
  - the whole 16-bit value (the order-0 bound of any coder that sees elements one at a time).
Prints each as bits per element and the container ratio it would give ((bits + 8) / 16 where the
sign and mantissa stay raw). Needs numpy.

For F16 and F32 tensors (a file of them), the same question on the codec's own byte planes (the
element rotated left by one bit, so that the top plane holds the exponent: all 8 bits of it for
F32, F16's 5 and 3 mantissa bits): every plane order-0 per tensor (the bound the container
reaches), then the top plane given its left neighbour, the one 32 to the left, the one above, or
a table per row, and the next plane given the top one; the ratio each would give."""
import json
import struct
import sys

import numpy as np


def entropy_bits(counts):
    c = counts[counts > 0].astype(np.float64)
    return float(-(c * np.log2(c / c.sum())).sum())


def conditional_bits(x, ctx, n_ctx):
    table = np.bincount(ctx.astype(np.int64) * 256 + x, minlength=n_ctx * 256).reshape(n_ctx, 256)
    return sum(entropy_bits(r) for r in table if r.sum())


def main(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    tot, elems = {}, 0
    add = lambda k, v: tot.__setitem__(k, tot.get(k, 0.0) + v)  # noqa: E731
    for name, v in header.items():
        if name == "__metadata__" or v["dtype"] != "BF16":
            continue
        s, e = v["data_offsets"]
        a = np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.uint16).astype(np.int64)
        if a.size < 4096:
            continue
        elems += a.size
        ex, sm = (a >> 7) & 0xFF, ((a >> 8) & 0x80) | (a & 0x7F)
        add("exponent", entropy_bits(np.bincount(ex, minlength=256)))
        add("sign+mantissa", entropy_bits(np.bincount(sm, minlength=256)))
        add("sign+mantissa | exponent", conditional_bits(sm, ex, 256))
        add("whole value", entropy_bits(np.bincount(a, minlength=65536)))
        rows = v["shape"][0] if len(v["shape"]) == 2 else 1
        cols = a.size // rows
        ctxs = {"left": np.concatenate([[0], ex[:-1]]), "32 left": np.concatenate([np.zeros(32, np.int64), ex[:-32]]),
                "above": np.concatenate([np.zeros(cols, np.int64), ex[:-cols]])}
        for k, c in ctxs.items():
            add(f"exponent | {k}", conditional_bits(ex, c, 256))
            for nb in (4, 8):
                qs = np.unique(np.quantile(ex, np.linspace(0, 1, nb + 1)[1:-1]))
                add(f"exponent | {k}, {nb} buckets", conditional_bits(ex, np.searchsorted(qs, c, side="right"), nb))
        add("exponent | row", sum(entropy_bits(np.bincount(r, minlength=256)) for r in ex.reshape(rows, cols)))
    if not elems:
        return float_planes(header, b[8 + n:], path)
    print(f"{path}: {elems} BF16 elements in tensors of >= 4096")
    exp_bits = tot["exponent"] / elems
    for k, v in tot.items():
        bits = v / elems
        # the ratio if this part were coded so and the other byte as now (exponent coded, the rest raw)
        ratio = bits / 16 if k == "whole value" else (bits + 8) / 16 if k.startswith("exponent") else (exp_bits + bits) / 16
        print(f"  {k:36s} {bits:7.4f} bits/element   ratio {ratio:.4f}")


def float_planes(header, data, path):
    widths = {"F16": (2, np.uint16, 15), "F32": (4, np.uint32, 31)}
    tot, elems, width = {}, 0, 0
    add = lambda k, v: tot.__setitem__(k, tot.get(k, 0.0) + v)  # noqa: E731
    for name, v in header.items():
        if name == "__metadata__" or v["dtype"] not in widths:
            continue
        w, dt, top = widths[v["dtype"]]
        s, e = v["data_offsets"]
        a = np.frombuffer(data[s:e], dtype=dt).astype(np.uint64)
        if a.size < 4096:
            continue
        elems, width = elems + a.size, w
        r = ((a << np.uint64(1)) | (a >> np.uint64(top))) & np.uint64((1 << (8 * w)) - 1)
        planes = [((r >> np.uint64(8 * k)) & np.uint64(0xFF)).astype(np.int64) for k in range(w)]
        hi, nxt = planes[w - 1], planes[w - 2]
        order0 = [entropy_bits(np.bincount(p, minlength=256)) for p in planes]
        add("every plane order-0 (the bound)", sum(order0))
        rest = sum(order0[:w - 2])  # the planes no context below touches
        rows = v["shape"][0] if len(v["shape"]) == 2 else 1
        cols = a.size // rows
        ctxs = {"left": np.concatenate([[0], hi[:-1]]), "32 left": np.concatenate([np.zeros(32, np.int64), hi[:-32]]),
                "above": np.concatenate([np.zeros(cols, np.int64), hi[:-cols]])}
        for k, c in ctxs.items():
            add(f"top plane | {k}", conditional_bits(hi, c, 256) + order0[w - 2] + rest)
        add("top plane | row (a table per row)",
            sum(entropy_bits(np.bincount(x, minlength=256)) for x in hi.reshape(rows, cols)) + order0[w - 2] + rest)
        add("next plane | top plane", order0[w - 1] + conditional_bits(nxt, hi, 256) + rest)
        add("top | row and next | top", sum(entropy_bits(np.bincount(x, minlength=256)) for x in hi.reshape(rows, cols))
            + conditional_bits(nxt, hi, 256) + rest)
    print(f"{path}: {elems} F16/F32 elements in tensors of >= 4096, the other planes order-0 in every line")
    for k, v in tot.items():
        print(f"  {k:36s} {v / elems:7.4f} bits/element   ratio {v / elems / (8 * width):.4f}")


if __name__ == "__main__":
    main(sys.argv[1])
