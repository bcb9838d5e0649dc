#!/usr/bin/env python3
"""py_load.py METHOD DIR [DEVICE] - one timed load of a model folder, for py_bench.sh; prints
'seconds bytes'. CUDA is initialized before the clock starts.
  wcodec       wcodec.torch.load_dir(DIR) (DIR holds .wcodec containers)
  safetensors  safetensors.torch.load_file of every *.safetensors in DIR (the raw folder, or the mount)
  numpy1       wcodec containers decoded to host memory on one thread (DEVICE ignored)
  raw1         the raw *.safetensors files read into host memory (np.fromfile)"""
import glob
import os
import sys
import time

method, d = sys.argv[1], sys.argv[2]
device = sys.argv[3] if len(sys.argv) > 3 else "cpu"
if method in ("wcodec", "safetensors"):
    import torch
    if device.startswith("cuda"):
        torch.zeros(1, device=device)
        sync = torch.cuda.synchronize
    else:
        sync = lambda: None  # noqa: E731
import wcodec  # noqa: E402

t0 = time.perf_counter()
nbytes = 0
if method == "wcodec":
    import wcodec.torch
    sd = wcodec.torch.load_dir(d, device=device)
    sync()
    nbytes = sum(t.numel() * t.element_size() for t in sd.values())
elif method == "safetensors":
    from safetensors.torch import load_file
    sd = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        sd.update(load_file(f, device=device))
    sync()
    nbytes = sum(t.numel() * t.element_size() for t in sd.values())
elif method == "numpy1":
    import numpy as np
    for f in sorted(glob.glob(os.path.join(d, "*.wcodec"))):
        c = wcodec.Container(f)
        out = np.empty(c.source_size - c.data_start, dtype=np.uint8)
        c.read_into(c.data_start, out.nbytes, out.ctypes.data, threads=1)
        nbytes += out.nbytes
        c.close()
elif method == "raw1":
    import numpy as np
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        nbytes += np.fromfile(f, dtype=np.uint8).nbytes
else:
    sys.exit(f"py_load.py: unknown method {method}")
print(f"{time.perf_counter() - t0:.4f} {nbytes}")
