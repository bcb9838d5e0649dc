#!/usr/bin/env python3
"""gemm_check.py [--bench] - the decode-fused GEMM on a GPU (run by fused_run.sh, beside gemv_check.py).

Checks, on weights drawn as gemv_check.py draws them (escapes planted): the fused GEMM equals its
reference kernel on the plain weights bit for bit for every Linear shape of the 1.1B and 8B Llamas
and odd shapes, at batches from 17 to prefill's, with and without bias, x unaligned too, under
every CTA shape and K split the dispatcher may pick; the fused linear against cuBLAS BF16 stays
within gemv_check's bound; the dispatcher's choice (wcgpu_linear_kernel_for) is what cf12_linear
runs, and its unpack path equals cuBLAS bit for bit; GEMMs feeding each other back to back (PDL)
and replayed from a graph equal the same run one at a time. With --bench: kernel times per
matrix against cuBLAS and against unpack + cuBLAS, with achieved GB/s and TFLOP/s; the 8B and 1.1B
Linear chains at batch 16..256 and prefills in CUDA graphs. Prints 'N passed, N failed'."""
import os
import sys

import torch
from torch.nn import functional as F

import gemv_check as gc
from gemv_check import SHAPES_1B, SHAPES_8B, bits, bounded, graph_time, ok, weights
from wcodec import _cf12, _lib

dev = gc.dev
ODD = [(1, 1), (17, 65), (300, 130), (100, 4104), (7, 7000), (4096, 1)]


def fused_vs_reference(w, cw, m, with_bias, name):
    rows, cols = w.shape
    buf = torch.randn(m * cols + 1, device=dev).to(torch.bfloat16)
    x = buf[m % 2:m % 2 + m * cols].view(m, cols)  # odd m: x 2 bytes past 16-byte alignment
    bias = (torch.randn(rows, device=dev) * 0.1).to(torch.bfloat16) if with_bias else None
    y = _cf12.gemm(x, cw.body, cw.offsets, cw.escapes, rows, cols, cw.base, bias)
    r = _cf12.gemm(x, None, None, None, rows, cols, 0, bias, reference_weight=w)
    ok(torch.equal(bits(y), bits(r)), f"{name} batch {m} bias {with_bias}: GEMM fused == reference")


def check_shape(rows, cols, batches):
    w = weights(rows, cols)
    cw = _cf12.pack(w)
    clean = w.clone()
    clean[~torch.isfinite(w.float())] = 0
    cwc = _cf12.pack(clean)
    name = f"{rows}x{cols}"
    for m in batches:
        for with_bias in (False, True):
            fused_vs_reference(w, cw, m, with_bias, name)
            x = torch.randn(m, cols, device=dev).to(torch.bfloat16)
            bias = (torch.randn(rows, device=dev) * 0.1).to(torch.bfloat16) if with_bias else None
            y = _cf12.gemm(x, cwc.body, cwc.offsets, cwc.escapes, rows, cols, cwc.base, bias).float()
            ok(bounded(y, F.linear(x, clean, bias).float(), x, clean), f"{name} batch {m} bias {with_bias}: GEMM within the bound of cuBLAS")


def probe(cfg, rows=64, batch=128):
    """Where a schedule's outputs come from, when they are wrong: x one-hot (batch row n picks column
    n % 64 of a single 64-column unit), W of distinct values, so y[n, r] should be W[r, n % 64]; each
    wrong element is traced back to the (row, column) of W it holds. Runs the reference kernel
    (plain BF16 W) so that the layout is tested apart from the decode. Returns the mismatches."""
    os.environ["WCGPU_GEMM"] = cfg
    w = (torch.arange(rows * 64, device=dev, dtype=torch.int32) + 0x3C00).to(torch.int16).view(torch.bfloat16).view(rows, 64)
    x = torch.zeros(batch, 64, device=dev, dtype=torch.bfloat16)
    x[torch.arange(batch), torch.arange(batch) % 64] = 1
    y = _cf12.gemm(x, None, None, None, rows, 64, 0, None, reference_weight=w).float()
    os.environ.pop("WCGPU_GEMM")
    want = w.float().t()[torch.arange(batch) % 64]  # [batch, rows]
    bad = (y != want).nonzero().tolist()
    if bad:
        print(f"# probe {cfg}: {len(bad)} of {y.numel()} wrong; first (n, r) -> value, where W holds it:")
        wf = w.float()
        for n, r in bad[:12]:
            where = (wf == y[n, r]).nonzero().tolist()[:3]
            print(f"#   y[{n}, {r}] = {y[n, r].item():g} (want W[{r}, {n % 64}] = {want[n, r].item():g}); W has it at {where}")
    return len(bad)


def check_schedules():
    # mma.sync's "WARPS,KSPLIT", then wgmma's "wg,WARPGROUPS,BATCH_ROWS,KSPLIT" (sm_90a; elsewhere the default runs)
    for cfg in ("4,1", "8,1", "4,3", "8,5", "4,16", "wg,1,128,1", "wg,2,256,1", "wg,1,256,3", "wg,2,128,5"):
        os.environ["WCGPU_GEMM"] = cfg
        for rows, cols in ((4096, 4096), (300, 130), (17, 65), (2048, 5632), (1, 4096)):
            w = weights(rows, cols)
            cw = _cf12.pack(w)
            for m in (17, 64, 100, 129, 300):
                fused_vs_reference(w, cw, m, m == 100, f"WCGPU_GEMM={cfg} {rows}x{cols}")
        os.environ.pop("WCGPU_GEMM")


def check_dispatch():
    """cf12_linear runs what wcgpu_linear_kernel_for names; its unpack path is cuBLAS's bits."""
    w = weights(1024, 4096, plant=False)
    cw = _cf12.pack(w)
    for table in (None, "16,16", "8,256"):  # the GPU's own, GEMM off, GEMM from batch 9 to 256
        if table:
            os.environ["WCGPU_LINEAR"] = table
        for m in (1, 9, 16, 17, 64, 256, 300, 2048):
            x = torch.randn(m, 4096, device=dev).to(torch.bfloat16)
            kernel = _lib.wcgpu_linear_kernel_for(1024, 4096, m)
            y = _cf12.linear(x, cw)
            if kernel == _cf12.UNPACK:
                ok(torch.equal(bits(y), bits(F.linear(x, w))), f"table {table} batch {m}: unpack + cuBLAS == cuBLAS")
            else:
                fn = _cf12.gemv if kernel == _cf12.GEMV else _cf12.gemm
                r = fn(x, cw.body, cw.offsets, cw.escapes, 1024, 4096, cw.base, None)
                ok(torch.equal(bits(y), bits(r)), f"table {table} batch {m}: cf12_linear runs kernel {kernel}")
        os.environ.pop("WCGPU_LINEAR", None)


def check_chain():
    shapes = [(14336, 4096), (4096, 14336), (4096, 4096), (1024, 4096), (4096, 1024), (32000, 4096)]
    cws = [_cf12.pack(weights(r, k, plant=False)) for r, k in shapes]
    for m in (17, 64, 200):
        x = torch.randn(m, 4096, device=dev).to(torch.bfloat16)

        def run(sync):
            h = x
            for cw in cws[:-1]:
                h = _cf12.gemm(h, cw.body, cw.offsets, cw.escapes, cw.rows, cw.cols, cw.base, None)
                if sync:
                    torch.cuda.synchronize()
            return _cf12.gemm(h, cws[-1].body, cws[-1].offsets, cws[-1].escapes, cws[-1].rows, cws[-1].cols,
                              cws[-1].base, None)
        one_by_one = run(True)
        ok(torch.equal(bits(run(False)), bits(one_by_one)), f"GEMM chain batch {m}: back to back == one at a time")
        _, g, out = gc.graph_ms(lambda: run(False), reps=3)
        ok(torch.equal(bits(out), bits(one_by_one)), f"GEMM chain batch {m}: graph replay == one at a time")


def use_cfg(cfg):
    """A GEMM schedule for the benchmark: '-' the dispatcher's, 'mma' the dispatcher's without wgmma,
    else a $WCGPU_GEMM override."""
    os.environ.pop("WCGPU_GEMM", None)
    os.environ.pop("WCGPU_WGMMA", None)
    if cfg == "mma":
        os.environ["WCGPU_WGMMA"] = "0"
    elif cfg != "-":
        os.environ["WCGPU_GEMM"] = cfg


def bench_kernels(batches, cfgs):
    print("| shape (N x K) | batch | schedule | cuBLAS us | fused GEMM us | unpack+cuBLAS us | fused/cuBLAS | fused GB/s (cf12) | fused TFLOP/s | cuBLAS TFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for rows, cols in SHAPES_8B + SHAPES_1B:
        ws, cws, cbytes = gc.bench_weights(rows, cols)
        copies = len(ws)
        for m in batches:
            x = torch.randn(m, cols, device=dev).to(torch.bfloat16)
            tb = graph_time(lambda: [F.linear(x, w) for w in ws]) / copies
            tu = graph_time(lambda: [F.linear(x, c.unpack()) for c in cws]) / copies
            flop = 2.0 * m * rows * cols
            for cfg in cfgs:
                use_cfg(cfg)
                tf = graph_time(lambda: [_cf12.gemm(x, c.body, c.offsets, c.escapes, rows, cols, c.base, None)
                                         for c in cws]) / copies
                print(f"| {rows}x{cols} | {m} | {cfg} | {tb*1e3:.1f} | {tf*1e3:.1f} | {tu*1e3:.1f} | {tb/tf:.3f} | "
                      f"{cbytes/tf/1e6:.0f} | {flop/tf/1e9:.0f} | {flop/tb/1e9:.0f} |", flush=True)
            use_cfg("-")
        del ws, cws
        torch.cuda.empty_cache()


if __name__ == "__main__":
    print("# GPU:", torch.cuda.get_device_name())
    if os.environ.get("CHECKS", "1") == "1":  # CHECKS=0: the benchmark alone
        for cfg in ("8,1", "wg,1,128,1", "wg,2,256,1"):  # the layouts first: a wrong one is traced
            ok(probe(cfg) == 0, f"probe {cfg}: each output is its weight")
        for rows, cols in SHAPES_8B + SHAPES_1B:
            check_shape(rows, cols, (17, 64, 256) if rows * cols > 100_000_000 else (17, 33, 64, 65, 130, 256))
        for rows, cols in ODD:
            check_shape(rows, cols, (17, 31, 64, 77, 257))
        check_shape(4096, 4096, (2048,))
        check_schedules()
        check_dispatch()
        check_chain()
        print(f"# largest |fused - cuBLAS|: {gc.WORST[0]:.2f} BF16 ulps")
        print(f"{gc.passed} passed, {gc.failed} failed", flush=True)
    if "--bench" in sys.argv:
        bench_kernels([int(b) for b in os.environ.get("GEMM_BATCHES", "16 32 64 128 256 2048").split()],
                      os.environ.get("GEMM_CFGS", "-").split())
        for size in os.environ.get("CHAINS", "8b 1.1b").split():
            gc.bench_chain(size, [int(b) for b in os.environ.get("CHAIN_BATCHES", "16 32 64 128 256 2048").split()],
                           os.environ.get("CHAIN_CFGS", "-").split(), use_cfg)
        use_cfg("-")
    sys.exit(1 if gc.failed else 0)
