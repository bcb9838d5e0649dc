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
a table per row, and the next plane given the top one; the ratio each would give.

For F8_E4M3 tensors (tests/bench/to_fp8.py makes them from real weights): the byte order-0 per
tensor (its bound) against the byte given its left neighbour, the one 32 to the left, the one
above, or a table per row."""
import itertools
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


def big_tensors(header, data, dtype):
    """(header entry, elements as int64) of every tensor of `dtype` with at least 4096 elements."""
    kinds = {"BF16": np.uint16, "F16": np.uint16, "F32": np.uint32, "F8_E4M3": np.uint8}
    for name, v in header.items():
        if name != "__metadata__" and v["dtype"] == dtype:
            s, e = v["data_offsets"]
            a = np.frombuffer(data[s:e], dtype=kinds[dtype]).astype(np.int64)
            if a.size >= 4096:
                yield v, a


def xval_bits(x, ctx, n_ctx, eps=0.5):
    """Bits to code x given ctx when each half of the tensor is coded with the tables counted on
    the other half (+eps a cell): what a context model's tables are worth on data they were not
    fitted to. The plug-in entropy of 256 contexts x 256 symbols fits tables to the very symbols
    it codes and reads low on tensors of a few hundred thousand elements."""
    half = x.size // 2
    bits = 0.0
    for tr, te in ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))):
        t = np.bincount(ctx[tr] * 256 + x[tr], minlength=n_ctx * 256).reshape(n_ctx, 256) + eps
        p = t / t.sum(axis=1, keepdims=True)
        bits -= float(np.log2(p[ctx[te], x[te]]).sum())
    return bits


def row_classes_bits(x, rows, cols, k, mask=0xFF):
    """Bits to code symbols x (rows x cols) with k tables, each row sent to the table of its class
    (rows ranked by their mean symbol & mask, the row's scale, cut into k equal groups): the
    symbols' entropy, plus each table as the container stores one (32 + 2 bytes a present symbol)
    and log2(k) bits a row for its class; for k = 1, one table, as now."""
    m = x.reshape(rows, cols)
    cls = np.zeros(rows, np.int64)
    if k > 1:
        cls[np.argsort((m & mask).mean(axis=1), kind="stable")] = np.arange(rows) * k // rows
    bits = rows * np.log2(k)
    for c in range(k):
        h = np.bincount(m[cls == c].ravel(), minlength=256)
        if h.sum():
            bits += entropy_bits(h) + 8 * (32 + 2 * int((h > 0).sum()))
    return bits


def add_row_classes(add, x, rows, cols, label, extra_bits, mask=0xFF):
    """Adds 'label, k row classes' lines (tables paid for) for k = 1, 4, 16, when the tensor has
    rows enough."""
    for k in (1, 4, 16):
        if rows >= 4 * k or k == 1:
            add(f"{label}, {k} row classes, tables paid", row_classes_bits(x, rows, cols, k, mask) + extra_bits)
        else:
            add(f"{label}, {k} row classes, tables paid", row_classes_bits(x, rows, cols, 1, mask) + extra_bits)


def main(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    tot, elems = {}, 0
    add = lambda k, v: tot.__setitem__(k, tot.get(k, 0.0) + v)  # noqa: E731
    for v, a in big_tensors(header, b[8 + n:], "BF16"):
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
        add_row_classes(add, ex, rows, cols, "exponent", 0)
        add("exponent order-0, cross-validated", xval_bits(ex, np.zeros(a.size, np.int64), 1))
        add("exponent | left, cross-validated", xval_bits(ex, ctxs["left"], 256))
        add("sign+mantissa | exponent, cross-validated", xval_bits(sm, ex, 256))
    if not elems:
        if any(v.get("dtype") == "F8_E4M3" for k, v in header.items() if k != "__metadata__"):
            return fp8_bytes(header, b[8 + n:], path)
        return float_planes(header, b[8 + n:], path)
    print(f"{path}: {elems} BF16 elements in tensors of >= 4096")
    exp_bits = tot["exponent"] / elems
    for k, v in tot.items():
        bits = v / elems
        # the ratio if this part were coded so and the other byte as now (exponent coded, the rest raw)
        ratio = bits / 16 if k == "whole value" else (bits + 8) / 16 if k.startswith("exponent") else (exp_bits + bits) / 16
        print(f"  {k:36s} {bits:7.4f} bits/element   ratio {ratio:.4f}")


def float_planes(header, data, path):
    tot, elems, width = {}, 0, 0
    add = lambda k, v: tot.__setitem__(k, tot.get(k, 0.0) + v)  # noqa: E731
    pairs = itertools.chain(((t, 2) for t in big_tensors(header, data, "F16")),
                            ((t, 4) for t in big_tensors(header, data, "F32")))
    for (v, a), w in pairs:
        elems, width = elems + a.size, w
        r = ((a << 1) | (a >> (8 * w - 1))) & ((1 << (8 * w)) - 1)
        planes = [(r >> (8 * k)) & 0xFF for k in range(w)]
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
        add_row_classes(add, hi, rows, cols, "top plane", order0[w - 2] + rest)
        add("top | row and next | top", sum(entropy_bits(np.bincount(x, minlength=256)) for x in hi.reshape(rows, cols))
            + conditional_bits(nxt, hi, 256) + rest)
    print(f"{path}: {elems} F16/F32 elements in tensors of >= 4096, the other planes order-0 in every line")
    for k, v in tot.items():
        print(f"  {k:36s} {v / elems:7.4f} bits/element   ratio {v / elems / (8 * width):.4f}")


def fp8_bytes(header, data, path):
    tot, elems = {}, 0
    add = lambda k, v: tot.__setitem__(k, tot.get(k, 0.0) + v)  # noqa: E731
    for v, a in big_tensors(header, data, "F8_E4M3"):
        elems += a.size
        rows = v["shape"][0] if len(v["shape"]) == 2 else 1
        cols = a.size // rows
        add("byte order-0 (the bound)", entropy_bits(np.bincount(a, minlength=256)))
        ctxs = {"left": np.concatenate([[0], a[:-1]]), "32 left": np.concatenate([np.zeros(32, np.int64), a[:-32]]),
                "above": np.concatenate([np.zeros(cols, np.int64), a[:-cols]])}
        for k, c in ctxs.items():
            add(f"byte | {k}", conditional_bits(a, c, 256))
            add(f"byte | {k}'s exponent", conditional_bits(a, (c >> 3) & 0xF, 16))
        add("byte | row (a table per row)", sum(entropy_bits(np.bincount(x, minlength=256)) for x in a.reshape(rows, cols)))
        add_row_classes(add, a, rows, cols, "byte", 0, mask=0x7F)
        zero = np.zeros(a.size, np.int64)
        add("byte order-0, cross-validated", xval_bits(a, zero, 1))
        add("byte | left, cross-validated", xval_bits(a, ctxs["left"], 256))
        add("byte | left's exponent, cross-validated", xval_bits(a, (ctxs["left"] >> 3) & 0xF, 16))
    print(f"{path}: {elems} F8_E4M3 elements in tensors of >= 4096")
    for k, v in tot.items():
        print(f"  {k:36s} {v / elems:7.4f} bits/element   ratio {v / elems / 8:.4f}")


if __name__ == "__main__":
    main(sys.argv[1])
