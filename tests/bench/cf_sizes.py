#!/usr/bin/python3
"""cf_sizes.py [--detail] - size of candidate GPU "compute formats" for BF16 weight matrices: the
exact (lossless) layouts a decode-fused matrix kernel would read, as a fraction of BF16's 16 bits
per weight. Run with Debian's python (numpy; no torch):  /usr/bin/python3 tests/bench/cf_sizes.py

BF16 = sign(1) exponent(8) mantissa(7); every candidate keeps the sign+mantissa byte raw (8 bits)
and codes the exponent:
  x12   4-bit code per weight, c in 1..15 = exponent base+c with one base per tensor (the window
        of 15 exponents covering most weights); c = 0 escapes, each escape costs 4 bytes in a
        patch list; one uint32 offset per 16x64 block; the matrix padded to 16 rows x 64 columns
        (padding counts as stored).
  x11   3-bit code for the tensor's 7 most frequent exponents (a 7-byte table), code 7 = fallback:
        the exponent in an 8-bit fallback array plus a 2-byte position; one uint32 offset per
        64x64 block; padded to 64x64 (ZipServ-like).
  x12b  x12 with the base chosen per strip of 16 rows (one byte per strip).
  vlr   Huffman code of the exponents, one table per tensor (lengths capped at 16 bits, a byte per
        symbol for the table) + one uint32 offset per row per 64-column slice.
  H0+8  order-0 entropy of the tensor's exponents + 8 bits: the bound of any exponent-only coder
        with one table per tensor, no offsets or tables counted.
Inputs: (a) the matrices of ../shared/data/use-lite.bf16.safetensors (tensors whose shape is 2-D
once size-1 dimensions are dropped, so its [1,1,512,1536] kernels count and [1,128] does not),
shapes as stored; totals weighted by element count. Skipped with a message when the file is
absent. (b) random-init Llama: normal(0, 0.02) float32 rounded to BF16 (nearest even), as
transformers initialises Linear weights, for the Linear shapes [out, in] of one layer of
Llama-3.1-8B and of TinyLlama-1.1B (all layers alike, so one layer's mix is the model's). Those
are sampled: whole 16-row strips of at least 4M elements per shape; the per-element counts are
scaled up to the full shape, padding and offsets are computed from the full shape.
--detail prints a line per use-lite matrix (bits/weight, escape fractions, x12's window)."""
import heapq
import json
import os
import struct
import sys

import numpy as np

SAMPLE = 4 << 20
LLAMA8B = [(4096, 4096), (1024, 4096), (1024, 4096), (4096, 4096), (14336, 4096), (14336, 4096), (4096, 14336)]
TINY = [(2048, 2048), (256, 2048), (256, 2048), (2048, 2048), (5632, 2048), (5632, 2048), (2048, 5632)]
NAMES = ["x12", "x11", "x12b", "vlr", "H0+8"]


def huffman_lengths(counts, cap=16):
    """Huffman code lengths (bits) of every symbol of `counts`; counts halved until none is > cap."""
    c = counts.astype(np.int64)
    while True:
        lens = np.zeros(len(c), np.int64)
        heap = [(int(n), s, [s]) for s, n in enumerate(c) if n > 0]
        if len(heap) == 1:
            lens[heap[0][1]] = 1
        heapq.heapify(heap)
        while len(heap) > 1:
            n1, i1, s1 = heapq.heappop(heap)
            n2, _, s2 = heapq.heappop(heap)
            lens[s1 + s2] += 1
            heapq.heappush(heap, (n1 + n2, i1, s1 + s2))
        if lens.max() <= cap:
            return lens
        c = np.where(c > 0, np.maximum(c >> 1, 1), 0)


def window_cover(hist):
    """For every window start k of exponents k..k+14 (base k-1) along the last axis: weights covered."""
    cs = np.concatenate([np.zeros(hist.shape[:-1] + (1,), np.int64), np.cumsum(hist, -1)], -1)
    return cs[..., 15:257] - cs[..., 0:242]


def sizes(u, shape):
    """Bits of each candidate and escape counts for a matrix of `shape` whose elements (uint16)
    are `u`: all of it, or its first rows (whole 16-row strips) standing for the rest."""
    rows, cols = shape
    n = rows * cols
    scale = n / u.size                       # sampled element counts stand for the whole matrix
    e = ((u >> 7) & 0xFF).astype(np.int64)
    hist = np.bincount(e.ravel(), minlength=256)
    pad = lambda a, b: -(-rows // a) * a * (-(-cols // b) * b)
    blocks = lambda a, b: -(-rows // a) * -(-cols // b)
    out, esc = {}, {}
    # x12: one window per tensor
    cover = window_cover(hist)
    k = int(cover.argmax())
    esc["x12"] = (u.size - cover[k]) * scale
    out["x12"] = pad(16, 64) * 12 + esc["x12"] * 32 + blocks(16, 64) * 32 + 8
    # x11: top-7 exponents, code 7 = fallback (8-bit exponent + 2-byte position)
    esc["x11"] = (u.size - np.sort(hist)[-7:].sum()) * scale
    out["x11"] = pad(64, 64) * 11 + esc["x11"] * 24 + blocks(64, 64) * 32 + 7 * 8
    # x12b: one window per strip of 16 rows
    strip = np.repeat(np.arange(-(-e.shape[0] // 16)), 16)[: e.shape[0], None]
    sh = np.bincount((strip * 256 + e).ravel(), minlength=(strip[-1, 0] + 1) * 256).reshape(-1, 256)
    esc["x12b"] = (u.size - window_cover(sh).max(1).sum()) * scale
    out["x12b"] = pad(16, 64) * 12 + esc["x12b"] * 32 + blocks(16, 64) * 32 + -(-rows // 16) * 8
    # vlr: Huffman per tensor + a uint32 offset per row per 64-column slice
    out["vlr"] = (hist * huffman_lengths(hist)).sum() * scale + 8 * n + rows * -(-cols // 64) * 32 + 256 * 8
    # H0+8: order-0 bound
    p = hist[hist > 0] / u.size
    out["H0+8"] = n * (8 - (p * np.log2(p)).sum())
    return out, esc, (k, k + 14)


def to_bf16(x):
    v = x.astype(np.float32).view(np.uint32)
    return ((v + 0x7FFF + ((v >> 16) & 1)) >> 16).astype(np.uint16)


def synthetic(shapes, rng):
    for rows, cols in shapes:
        r = min(rows, -(-SAMPLE // cols // 16) * 16)
        yield f"{rows}x{cols}", (rows, cols), to_bf16(rng.normal(0, 0.02, (r, cols)))


def use_lite(path):
    with open(path, "rb") as f:
        hlen = struct.unpack("<Q", f.read(8))[0]
        header, data = json.loads(f.read(hlen)), f.read()
    for name, v in header.items():
        dims = [d for d in v.get("shape", []) if d != 1] if name != "__metadata__" else []
        if v.get("dtype") == "BF16" and len(dims) == 2:
            s, t = v["data_offsets"]
            yield name, tuple(dims), np.frombuffer(data[s:t], np.uint16).reshape(dims)


def measure(items, detail=False):
    bits, escs, n, windows = dict.fromkeys(NAMES, 0.0), dict.fromkeys(NAMES, 0.0), 0, {}
    for name, shape, u in items:
        out, esc, win = sizes(u, shape)
        m = shape[0] * shape[1]
        n += m
        windows[win] = windows.get(win, 0) + m
        for c in NAMES:
            bits[c] += out[c]
            escs[c] += esc.get(c, 0)
        if detail:
            short = "/".join(name.split("/")[-4:])[-60:]
            print(f"  {short:60s} {shape[0]:>5}x{shape[1]:<5} " + " ".join(f"{c} {out[c] / m:.3f}" for c in NAMES)
                  + f"  esc x12 {esc['x12'] / m:.2e} x11 {esc['x11'] / m:.2e} x12b {esc['x12b'] / m:.2e}"
                  + f"  window e{win[0]}..e{win[1]}")
    return {c: bits[c] / (16 * n) for c in NAMES}, {c: escs[c] / n for c in NAMES}, windows, n


def main():
    detail = "--detail" in sys.argv[1:]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/data/use-lite.bf16.safetensors")
    sets = []
    if os.path.exists(path):
        if detail:
            print("use-lite matrices (bits/weight; escape/fallback fraction; x12 window of biased exponents):")
        sets.append(("use-lite 2-D", measure(use_lite(path), detail)))
    else:
        print(f"skipping use-lite: {os.path.normpath(path)} is absent")
    rng = np.random.default_rng(0)
    sets.append(("random 8B", measure(synthetic(LLAMA8B, rng))))
    sets.append(("random 1.1B", measure(synthetic(TINY, rng))))
    print(f"\nrandom sets: normal(0, 0.02) -> BF16 (RNE), one layer's Linear shapes, >= {SAMPLE >> 20}M elements "
          "sampled per shape (whole 16-row strips), counts scaled to the full shape\n")
    print("| candidate | " + " | ".join(f"{s} ({r[3] / 1e6:.2f}M)" for s, r in sets) + " | escape/fallback fraction ("
          + " / ".join(s for s, _ in sets) + ") |")
    print("|---" * (len(sets) + 2) + "|")
    for c in NAMES:
        e = " / ".join(f"{r[1][c]:.2e}" for _, r in sets) if c in ("x12", "x11", "x12b") else "-"
        print(f"| {c} | " + " | ".join(f"{r[0][c]:.4f} ({16 * r[0][c]:.2f} b)" for _, r in sets) + f" | {e} |")
    print("\nx12 windows (biased exponents; share of elements): " + "; ".join(
        f"{s}: " + ", ".join(f"e{a}..e{b} {m / r[3]:.0%}" for (a, b), m in sorted(r[2].items(), key=lambda t: -t[1]))
        for s, r in sets))


if __name__ == "__main__":
    main()
