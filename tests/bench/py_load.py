#!/usr/bin/env python3
"""py_load.py METHOD DIR [DEVICE] - one timed load of a model folder, for py_bench.sh; prints
'seconds bytes'. CUDA is initialized before the clock starts.
  wcodec       wcodec.torch.load_dir(DIR) (DIR holds .wcodec containers)
  safetensors  safetensors.torch.load_file of every *.safetensors in DIR (the raw folder, or the mount)
  numpy1       wcodec containers decoded to host memory on one thread (DEVICE ignored)
  raw1         the raw *.safetensors files read into host memory (np.fromfile)
  url          DIR is a folder's URL: every container in its listing decoded to host memory by
               the C decoder's threads (wcodec.Container(URL): ranged GETs overlapped with decoding)
  rawurl       DIR is a raw folder's URL: every *.safetensors in LIST (a file naming them) fetched
               into host memory with urllib, one after another, as a download would"""
import glob
import os
import sys
import time

method, d = sys.argv[1], sys.argv[2]
device = sys.argv[3] if len(sys.argv) > 3 and method not in ("url", "rawurl") else "cpu"
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
elif method == "url":
    import numpy as np
    from wcodec import _url
    for p, _ in _url.list_folder(d):
        if p.endswith(".wcodec"):
            c = wcodec.Container(_url.join(d, p))
            out = np.empty(c.source_size - c.data_start, dtype=np.uint8)
            c.read_into(c.data_start, out.nbytes, out.ctypes.data)
            nbytes += out.nbytes
            c.close()
elif method == "rawurl":
    import urllib.request
    import numpy as np
    for name in open(sys.argv[3]).read().split():
        with urllib.request.urlopen(d.rstrip("/") + "/" + name) as r:
            b = np.frombuffer(r.read(), dtype=np.uint8)
        n = int.from_bytes(b[:8].tobytes(), "little")
        nbytes += b.nbytes - 8 - n
elif method == "raw1":
    import numpy as np
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        nbytes += np.fromfile(f, dtype=np.uint8).nbytes
else:
    sys.exit(f"py_load.py: unknown method {method}")
print(f"{time.perf_counter() - t0:.4f} {nbytes}")
