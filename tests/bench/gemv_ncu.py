#!/usr/bin/env python3
"""gemv_ncu.py ROWS COLS BATCH - one matrix, the fused GEMV and cuBLAS BF16 three times each, for
ncu to read DRAM bytes and throughput off (the benchmark's kernel rows give the times):
  ncu --clock-control none --metrics dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,\
gpu__time_duration.sum python3 tests/bench/gemv_ncu.py 14336 4096 1"""
import sys

import torch
from torch.nn import functional as F

from wcodec import _cf12

rows, cols, m = (int(a) for a in sys.argv[1:4])
w = (torch.randn(rows, cols, device="cuda") * 0.02).to(torch.bfloat16)
cw = _cf12.pack(w)
x = torch.randn(m, cols, device="cuda").to(torch.bfloat16)
for _ in range(3):
    _cf12.linear(x, cw)
    F.linear(x, w)
torch.cuda.synchronize()
print(f"# {rows}x{cols} batch {m}: cf12 {cw.nbytes()} bytes, BF16 {rows * cols * 2}")
