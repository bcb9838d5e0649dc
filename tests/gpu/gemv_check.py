#!/usr/bin/env python3
"""gemv_check.py [--bench] - the compute format and the fused GEMV on a GPU (run by tests/gpu/run.sh).

Checks, on random BF16 weights drawn as transformers initialises a Llama (normal, std 0.02) with
escapes planted (zeros, NaN, Inf, subnormals, huge values), for every Linear shape of the 1.1B and
8B Llamas and odd shapes: the GPU packer's bytes equal the C reference packer's; unpacking gives
back every bit; the fused GEMV equals the reference kernel on the plain weights bit for bit at
batch 1..16 (with and without bias, x unaligned too); the fused linear against cuBLAS BF16 stays
within the stated bound; a CUDA graph replays it to the same bits. With --bench: kernel times per
shape against cuBLAS and the reference (weights rotated past L2), and the 8B / 1.1B Linear chains
in CUDA graphs. Prints 'N passed, N failed'."""
import ctypes
import os
import sys

import torch
from torch.nn import functional as F

from wcodec import _cf12, _lib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from cuda_timing import graph_ms  # noqa: E402

torch.manual_seed(0)
dev = torch.device("cuda")
passed = failed = 0
WORST = [0.0]  # the largest |fused - cuBLAS| seen where the bound claims one, in BF16 ulps of the larger


def ulp(v):
    return torch.exp2(torch.floor(torch.log2(v.abs().clamp_min(2.0 ** -126))) - 7)


def bounded(y, ref, x, w):
    """The bound the fused linear keeps to cuBLAS BF16: both round an FP32 sum of the same K
    products to BF16, summed in other orders, so |y - ref| <= 1 ulp of BF16 at the larger of the
    two (the roundings) plus 2 K 2^-24 sum |x||w| (each order's worst FP32 error, gamma_K). Where
    sum |x||w| reaches 2^120 (rows of the planted 3e38s) an FP32 partial sum may overflow in one
    order and not in the other: nothing is claimed there; values equal on both sides (the same
    infinity) are within it."""
    same = (y == ref) | (y.isnan() & ref.isnan())
    d = torch.where(same, 0.0, (y - ref).abs())
    big = torch.maximum(y.abs(), ref.abs())
    mag = F.linear(x.float().abs(), w.float().abs())
    claimed = mag < 2.0 ** 120
    WORST[0] = max(WORST[0], torch.where(claimed, d / ulp(big), 0.0).nan_to_num(0.0).max().item())
    return bool((same | ~claimed | (d <= ulp(big) + mag * (2.0 * x.shape[-1] * 2.0 ** -24))).all())


def ok(cond, name, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"not ok - {name} {detail}")


def weights(rows, cols, plant=True):
    w = (torch.randn(rows, cols, device=dev) * 0.02).to(torch.bfloat16)
    if plant and rows * cols > 8:
        flat = w.view(-1)
        idx = torch.randint(0, rows * cols, (max(8, rows * cols // 5000),), device=dev)
        specials = torch.tensor([0.0, -0.0, 3.0e38, -1.0e-40, 1.0e-39, 70000.0, 2.0 ** -30, 1.5],
                                dtype=torch.float32, device=dev).to(torch.bfloat16)
        flat[idx] = specials[torch.arange(idx.numel(), device=dev) % specials.numel()]
    return w


def cpu_pack(w):
    rows, cols = w.shape
    h = w.cpu().contiguous()
    hist = (ctypes.c_uint64 * 256)()
    _lib.wc_cf12_histogram(h.data_ptr(), h.numel(), hist)
    base = _lib.wc_cf12_pick_base(hist)
    off = torch.empty(_lib.wc_cf12_blocks(rows, cols) + 1, dtype=torch.int32)
    n = _lib.wc_cf12_offsets(h.data_ptr(), rows, cols, base, off.data_ptr())
    body = torch.empty(_lib.wc_cf12_body_bytes(rows, cols), dtype=torch.uint8)
    esc = torch.empty(max(n, 1), dtype=torch.int32)
    err = _lib._Error()
    _lib.check(_lib.wc_cf12_pack(h.data_ptr(), rows, cols, base, off.data_ptr(), body.data_ptr(), esc.data_ptr(),
                                 ctypes.byref(err)), err)
    return base, off, body, esc[:n]


def bits(t):
    return t.contiguous().view(torch.int16)


SHAPES_8B = [(4096, 4096), (1024, 4096), (14336, 4096), (4096, 14336), (128256, 4096)]
SHAPES_1B = [(2048, 2048), (256, 2048), (5632, 2048), (2048, 5632), (32000, 2048)]
ODD = [(1, 1), (1, 4096), (4096, 1), (17, 65), (33, 100), (300, 130), (16, 64), (100, 4104), (7, 7000)]


def check_shape(rows, cols, batches):
    w = weights(rows, cols)
    cw = _cf12.pack(w)
    name = f"{rows}x{cols}"
    if rows * cols <= 60_000_000:
        base, off, body, esc = cpu_pack(w)
        n = int(cw.offsets[-1].item())
        ok(base == cw.base and torch.equal(off, cw.offsets.cpu()) and torch.equal(body, cw.body.cpu())
           and torch.equal(esc, cw.escapes.cpu()[:n]), f"{name}: GPU pack == C pack")
    ok(torch.equal(bits(cw.unpack()), bits(w)), f"{name}: unpack gives back every bit")
    clean = w.clone()  # for the cuBLAS comparison: no Inf/NaN (they make both sides NaN anyway)
    clean[~torch.isfinite(w.float())] = 0
    cwc = _cf12.pack(clean)
    for m in batches:
        for with_bias in (False, True):
            x = (torch.randn(m, cols + 1, device=dev)).to(torch.bfloat16)[:, 1:] if m == 3 else \
                torch.randn(m, cols, device=dev).to(torch.bfloat16)  # m=3: rows not 16-byte aligned
            bias = (torch.randn(rows, device=dev) * 0.1).to(torch.bfloat16) if with_bias else None
            xc = x.contiguous()
            y = _cf12.gemv(xc, cw.body, cw.offsets, cw.escapes, rows, cols, cw.base, bias)
            r = _cf12.gemv(xc, None, None, None, rows, cols, 0, bias, reference_weight=w)
            ok(torch.equal(bits(y), bits(r)), f"{name} batch {m} bias {with_bias}: fused == reference")
            yc = _cf12.linear(x, cwc, bias).float()
            ref = F.linear(x, clean, bias).float()
            ok(bounded(yc, ref, x, clean), f"{name} batch {m} bias {with_bias}: within the bound of cuBLAS")
    # a larger batch through cf12_linear (the GEMM; gemm_check.py checks it against its reference)
    x = torch.randn(20, cols, device=dev).to(torch.bfloat16)
    ok(bounded(_cf12.linear(x, cwc).float(), F.linear(x, clean).float(), x, clean), f"{name} batch 20: within the bound of cuBLAS")


def check_graph():
    w = weights(4096, 4096, plant=False)
    cw = _cf12.pack(w)
    x = torch.randn(1, 4096, device=dev).to(torch.bfloat16)
    eager = _cf12.linear(x, cw)
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        _cf12.linear(x, cw)
        torch.cuda.synchronize()
        with torch.cuda.graph(g):
            out = _cf12.linear(x, cw)
    g.replay()
    torch.cuda.synchronize()
    ok(torch.equal(bits(out), bits(eager)), "CUDA graph replay == eager")
    f = torch.compile(lambda v: _cf12.linear(v, cw) * 2, fullgraph=True)
    ok(torch.equal(bits(f(x)), bits(eager * 2)), "torch.compile(fullgraph) traces cf12_linear")


def set_flags(item):
    """The environment for one schedule: 'CFG/FLAGS', CFG a WCGPU_GEMV value or '-' (or left out:
    the dispatcher's), FLAGS comma-separated: 'nopdl' (WCGPU_PDL=0), 'pfN' (WCGPU_PREFETCH=N),
    'cluster' (WCGPU_CLUSTER=1), 'nocluster' (WCGPU_CLUSTER=0). None: everything back to its default."""
    for k in ("WCGPU_GEMV", "WCGPU_PDL", "WCGPU_PREFETCH", "WCGPU_CLUSTER"):
        os.environ.pop(k, None)
    if not item:
        return
    cfg, _, flags = item.partition("/")
    if cfg in ("cluster", "nocluster", "nopdl") or cfg.startswith("pf"):  # flags alone
        cfg, flags = "-", cfg
    if cfg != "-":
        os.environ["WCGPU_GEMV"] = cfg
    for f in (f for f in flags.split(",") if f):
        if f == "nopdl":
            os.environ["WCGPU_PDL"] = "0"
        elif f in ("cluster", "nocluster"):
            os.environ["WCGPU_CLUSTER"] = "1" if f == "cluster" else "0"
        elif f.startswith("pf"):
            os.environ["WCGPU_PREFETCH"] = f[2:]


def check_cluster():
    """The split K summed in a thread-block cluster gives the bits of the split K summed by the
    reduction kernel (the same K-ranges, added in the same order), fused and reference alike."""
    for rows, cols in ((4096, 4096), (1024, 4096), (300, 130), (4096, 14336)):
        w = weights(rows, cols)
        cw = _cf12.pack(w)
        for cfg in ("4,3", "8,8", "4,2"):
            for m in (1, 5, 16):
                x = torch.randn(m, cols, device=dev).to(torch.bfloat16)
                outs = []
                for flags in ("", "cluster"):
                    set_flags(f"{cfg}/{flags}")
                    outs.append(_cf12.gemv(x, cw.body, cw.offsets, cw.escapes, rows, cols, cw.base, None))
                    outs.append(_cf12.gemv(x, None, None, None, rows, cols, 0, None, reference_weight=w))
                set_flags(None)
                ok(all(torch.equal(bits(o), bits(outs[0])) for o in outs),
                   f"{rows}x{cols} WCGPU_GEMV={cfg} batch {m}: cluster sum == reduction kernel, fused and reference")


def check_chain():
    """GEMVs that feed each other, back to back (each kernel may start before the one ahead ends:
    programmatic dependent launch), eager and replayed from a graph, under every schedule: the
    same bits as the same GEMVs run one at a time with the device synchronized between them."""
    shapes = [(14336, 4096), (4096, 14336), (4096, 4096), (1024, 4096), (4096, 1024), (32000, 4096)]
    cws = [_cf12.pack(weights(r, k, plant=False)) for r, k in shapes]
    for cfg in (None, "stream,4", "8,1", "4,3", "pf0", "pf5", "stream,8/pf7", "cluster", "4,5/cluster,pf2"):
        set_flags(cfg)
        for m in (1, 13):
            x = torch.randn(m, 4096, device=dev).to(torch.bfloat16)

            def run(sync):
                h = x
                for cw in cws[:-1]:
                    h = _cf12.linear(h, cw)
                    if sync:
                        torch.cuda.synchronize()
                return _cf12.linear(h, cws[-1])
            one_by_one = run(True)
            ok(torch.equal(bits(run(False)), bits(one_by_one)), f"chain {cfg or 'dispatcher'} batch {m}: back to back == one at a time")
            g = torch.cuda.CUDAGraph()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                run(False)
                torch.cuda.synchronize()
                with torch.cuda.graph(g):
                    out = run(False)
            torch.cuda.current_stream().wait_stream(s)
            for _ in range(3):
                g.replay()
            torch.cuda.synchronize()
            ok(torch.equal(bits(out), bits(one_by_one)), f"chain {cfg or 'dispatcher'} batch {m}: graph replay == one at a time")
    set_flags(None)


def bench_weights(rows, cols):
    """Distinct copies of a rows x cols weight, enough (>= 400 MB of BF16, at least 2) that a timed
    loop over them reads from HBM, not L2; and their compute-format packs and its bytes."""
    copies = max(2, int(4e8 // (rows * cols * 2)))
    ws = [weights(rows, cols, plant=False) for _ in range(copies)]
    cws = [_cf12.pack(w) for w in ws]
    return ws, cws, cws[0].nbytes()


def bench_kernels():
    print("| shape (N x K) | batch | cuBLAS us | fused us | ref us | fused/cuBLAS | cuBLAS GB/s | fused GB/s |")
    print("|---|---|---|---|---|---|---|---|")
    for rows, cols in SHAPES_8B + SHAPES_1B:
        ws, cws, cbytes = bench_weights(rows, cols)
        copies = len(ws)
        for m in (1, 4, 8, 16):
            x = torch.randn(m, cols, device=dev).to(torch.bfloat16)
            t = {}
            for kind in ("cublas", "fused", "ref"):
                if kind == "ref" and m != 1:
                    continue
                def call(i):
                    if kind == "cublas":
                        return F.linear(x, ws[i])
                    if kind == "fused":
                        return _cf12.linear(x, cws[i])
                    return _cf12.gemv(x, None, None, None, rows, cols, 0, None, reference_weight=ws[i])
                t[kind] = graph_time(lambda: [call(i) for i in range(copies)]) / copies
            print(f"| {rows}x{cols} | {m} | {t['cublas']*1e3:.1f} | {t['fused']*1e3:.1f} | "
                  f"{t['ref']*1e3 if 'ref' in t else float('nan'):.1f} | {t['cublas']/t['fused']:.3f} | "
                  f"{rows*cols*2/t['cublas']/1e6:.0f} | {cbytes/t['fused']/1e6:.0f} |", flush=True)
        del ws, cws
        torch.cuda.empty_cache()


def graph_time(fn, reps=20):
    """Milliseconds one fn() takes, replayed from a CUDA graph (median of reps)."""
    return graph_ms(fn, reps)[0]


LLAMA = {"8b": dict(h=4096, i=14336, kv=1024, layers=32, vocab=128256),
         "1.1b": dict(h=2048, i=5632, kv=256, layers=22, vocab=32000)}


def bench_chain(size, batches=(1, 4, 8, 16), variants=(None,), use=None):
    """The step's Linear layers (every q, k, v, o, gate, up, down and the head, distinct weights) in
    one CUDA graph, cuBLAS BF16 against cf12_linear (the kernel the dispatcher picks per batch; a
    batch of thousands stands for a prefill of that many tokens); the weights made once and timed
    under each of `variants`, set by use(variant) (default set_flags; None: as the environment is)."""
    c = LLAMA[size]
    shapes = [(c["h"], c["h"]), (c["kv"], c["h"]), (c["kv"], c["h"]), (c["h"], c["h"]), (c["i"], c["h"]),
              (c["i"], c["h"]), (c["h"], c["i"])] * c["layers"] + [(c["vocab"], c["h"])]
    ws = [weights(r, k, plant=False) for r, k in shapes]
    bf16_bytes = sum(w.numel() * 2 for w in ws)
    cws = [_cf12.pack(w) for w in ws]
    cf_bytes = sum(cw.nbytes() for cw in cws)
    print(f"{size} Linear chain: {len(ws)} matrices, BF16 {bf16_bytes/1e9:.2f} GB, cf12 {cf_bytes/1e9:.2f} GB "
          f"({cf_bytes/bf16_bytes:.4f})")
    for v in variants:
        if v is not None:
            (use or set_flags)(v)
            print(f"## schedule: {v} (- = the dispatcher's)")
        print("| batch | kernel | cuBLAS BF16 ms | fused ms | fused/cuBLAS | fused GB/s |")
        print("|---|---|---|---|---|---|")
        for m in batches:
            xs = {k: torch.randn(m, k, device=dev).to(torch.bfloat16) for k in {k for _, k in shapes}}
            kern = ("GEMV", "GEMM", "unpack")[_lib.wcgpu_linear_kernel_for(c["h"], c["h"], m)]
            reps = 10 if m <= 256 else 3
            tb = graph_time(lambda: [F.linear(xs[w.shape[1]], w) for w in ws], reps=reps)
            tf = graph_time(lambda: [_cf12.linear(xs[cw.cols], cw) for cw in cws], reps=reps)
            print(f"| {m} | {kern} | {tb:.3f} | {tf:.3f} | {tb/tf:.3f} | {cf_bytes/tf/1e6:.0f} |", flush=True)
    del ws, cws
    torch.cuda.empty_cache()


if __name__ == "__main__":
    print("# GPU:", torch.cuda.get_device_name())
    if os.environ.get("CHECKS", "1") == "1":  # CHECKS=0: the benchmark alone
        for rows, cols in SHAPES_8B + SHAPES_1B:
            check_shape(rows, cols, (1, 8, 16) if rows * cols > 100_000_000 else (1, 2, 3, 4, 8, 9, 16))
        for rows, cols in ODD:
            check_shape(rows, cols, range(1, 17))
        check_graph()
        check_chain()
        check_cluster()
        for cfg in ("stream,4", "stream,8", "8,1", "4,3"):  # every schedule the dispatcher may pick
            os.environ["WCGPU_GEMV"] = cfg
            for rows, cols in ((4096, 4096), (14336, 4096), (300, 130), (1, 4096), (17, 65), (2048, 5632)):
                w = weights(rows, cols)
                cw = _cf12.pack(w)
                for m in (1, 3, 8, 13):
                    x = torch.randn(m, cols, device=dev).to(torch.bfloat16)
                    y = _cf12.gemv(x, cw.body, cw.offsets, cw.escapes, rows, cols, cw.base, None)
                    r = _cf12.gemv(x, None, None, None, rows, cols, 0, None, reference_weight=w)
                    ok(torch.equal(bits(y), bits(r)), f"WCGPU_GEMV={cfg} {rows}x{cols} batch {m}: fused == reference")
            os.environ.pop("WCGPU_GEMV")
        print(f"# largest |fused - cuBLAS|: {WORST[0]:.2f} BF16 ulps")
        print(f"{passed} passed, {failed} failed", flush=True)
    if "--bench" in sys.argv:
        # SWEEP: schedules to time beside the dispatcher's ('-' = the dispatcher), each on the
        # kernels and on the chains (CHAINS, default 8b and 1.1b), as set_flags reads them
        # ('-/pf2,cluster', 'stream,4/nopdl', ...)
        sweep = os.environ.get("SWEEP", "-").split()
        if os.environ.get("KERNELS", "1") == "1":
            for item in sweep:
                set_flags(item)
                print(f"## schedule: {item} (- = the dispatcher's)")
                bench_kernels()
        for size in os.environ.get("CHAINS", "8b 1.1b").split():
            bench_chain(size, [int(b) for b in os.environ.get("GEMV_CHAIN_BATCHES", "1 4 8 16").split()], sweep)
    sys.exit(1 if failed else 0)
