#!/usr/bin/env python3
"""load_check.py ORIG_DIR MNT_DIR - loading through the mount gives the same tensors.

1. safetensors.safe_open(..., framework="pt", device="cuda") on every *.safetensors under ORIG_DIR
   and the same file under MNT_DIR: every tensor equal (bitwise), and the load times.
2. If ORIG_DIR has a config.json: transformers AutoModelForCausalLM.from_pretrained from both:
   every parameter equal, and the load times.
Prints 'key: value' lines and ends with 'N passed, N failed'."""
import os, sys, time
import torch
from safetensors import safe_open

orig, mnt = sys.argv[1], sys.argv[2]
passed = failed = 0

def check(ok, what):
    global passed, failed
    if ok: passed += 1
    else:
        failed += 1; print(f"not ok - {what}")

def load_all(path):
    torch.cuda.synchronize(); t0 = time.perf_counter()
    out = {}
    with safe_open(path, framework="pt", device="cuda") as f:
        for k in f.keys(): out[k] = f.get_tensor(k)
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0

for root, _, files in os.walk(orig):
    for name in sorted(files):
        if not name.endswith(".safetensors"): continue
        rel = os.path.relpath(os.path.join(root, name), orig)
        b, tb = load_all(os.path.join(mnt, rel))   # the mount first: its cold read is the one timed
        a, ta = load_all(os.path.join(orig, rel))
        same = a.keys() == b.keys() and all(
            a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and
            torch.equal(a[k].view(torch.uint8) if a[k].numel() else a[k], b[k].view(torch.uint8) if b[k].numel() else b[k])
            for k in a)
        check(same, f"safe_open(device='cuda') {rel}: tensors differ")
        print(f"safe_open_cuda {rel}: {len(a)} tensors, original {ta:.3f} s, mount {tb:.3f} s")

if os.path.exists(os.path.join(orig, "config.json")):
    from transformers import AutoModelForCausalLM
    def load_model(path):
        t0 = time.perf_counter()
        m = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16)
        return m, time.perf_counter() - t0
    mb, tb = load_model(mnt)
    ma, ta = load_model(orig)
    sa, sb = ma.state_dict(), mb.state_dict()
    check(sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa),
          "transformers from_pretrained: parameters differ")
    print(f"transformers_from_pretrained: {sum(p.numel() for p in ma.parameters())} parameters, "
          f"original {ta:.3f} s, mount {tb:.3f} s")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
