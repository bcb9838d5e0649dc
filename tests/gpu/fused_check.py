#!/usr/bin/env python3
"""fused_check.py RAW_DIR WC_DIR - weights kept in the compute format through transformers
(wcodec.hf.from_pretrained(..., keep="gpu", compute="fused")) against transformers' BF16 load of
the raw folder: every Linear runs fused, logits within the bound stated here, greedy tokens
compared (the first divergence reported), the forward captured and replayed in a CUDA graph,
memory() reporting the format's bytes, detach() giving back every weight bit for bit, a
corrupted container refused at attach naming the tensor. Prints
'N passed, N failed'."""
import os
import shutil
import sys
import tempfile
import warnings

import torch
from transformers import AutoModelForCausalLM

import wcodec.hf

raw, wc = sys.argv[1], sys.argv[2]
passed = failed = 0


def ok(cond, name, detail=""):
    global passed, failed
    passed, failed = passed + bool(cond), failed + (not cond)
    print(f"{'ok' if cond else 'not ok'} - {name} {detail}")


ref = AutoModelForCausalLM.from_pretrained(raw, dtype=torch.bfloat16).cuda().eval()
torch.cuda.synchronize()
before = torch.cuda.memory_allocated()
torch.cuda.reset_peak_memory_stats()
with warnings.catch_warnings(record=True) as wlist:
    warnings.simplefilter("always")
    m = wcodec.hf.from_pretrained(AutoModelForCausalLM, wc, device="cuda", keep="gpu", compute="fused")
torch.cuda.synchronize()
held, load_peak = torch.cuda.memory_allocated() - before, torch.cuda.max_memory_allocated() - before
ok(not [w for w in wlist if "compute format" in str(w.message)], "every Linear weight held in the compute format")
linears = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
ok(all("forward" in mod.__dict__ for mod in linears), f"{len(linears)} Linear layers run fused")
mem = m.wcodec.memory()
lin_bytes = sum(mod.weight.numel() * 2 for mod in ref.modules() if isinstance(mod, torch.nn.Linear))
ratio = mem["compute_format_bytes"] / lin_bytes
ok(0.70 < ratio < 0.77, "memory(): compute_format_bytes", f"{ratio:.4f} of the Linear weights' BF16 bytes")
# the bounds a user relies on: the GPU holds what memory() reports (the compute format, the
# tensors kept decoded such as embeddings and norms, decode areas, the decoder's tables), nothing
# more; loading needs beside that one Linear weight decoded and its packing's scratch (at most 3x
# the largest Linear's BF16 bytes); 32 MiB for the allocator's rounding
ref_bytes = sum(t.numel() * t.element_size() for t in list(ref.parameters()) + list(ref.buffers()))
big = max(mod.weight.numel() * 2 for mod in ref.modules() if isinstance(mod, torch.nn.Linear))
reported = mem["compressed_bytes"] + mem["kept_decoded_bytes"] + mem["scratch_bytes"] + mem["overhead_bytes"]
print(f"# GPU memory: held {held / 2**20:.1f} MiB ({held / ref_bytes:.3f} of the BF16 model's {ref_bytes / 2**20:.1f}), "
      f"memory() {reported / 2**20:.1f} MiB, load peak {load_peak / 2**20:.1f} MiB")
ok(held <= reported + (32 << 20), "GPU memory held after loading is what memory() reports", f"{held / 2**20:.1f} MiB")
ok(load_peak <= held + 3 * big + (32 << 20), "GPU memory peak while loading", f"{load_peak / 2**20:.1f} MiB")

torch.manual_seed(1)
ids = torch.randint(0, ref.config.vocab_size, (1, 32), device="cuda")
with torch.no_grad():
    for b in (1, 4, 8):  # decode-like shapes (fused GEMV) and prefill (unpack + cuBLAS)
        x = ids[:, :b]
        a, r = m(x).logits.float(), ref(x).logits.float()
        d = (a - r).abs().max().item()
        scale = r.abs().max().item()
        # the bound measured on these models: a few BF16 ulps of the logits' scale (each layer's
        # rounding differs from cuBLAS's by at most one ulp; 4 layers compound it)
        ok(d <= scale * 2 ** -4, f"logits, {b} tokens: max |fused - cuBLAS|", f"{d:.4g} (logit scale {scale:.3g})")
    a, r = m(ids).logits.float(), ref(ids).logits.float()
    ok((a - r).abs().max().item() <= r.abs().max().item() * 2 ** -4, "logits, 32 tokens (prefill path)")
    g1 = m.generate(ids[:, :8], max_new_tokens=24, min_new_tokens=24, do_sample=False)
    g2 = ref.generate(ids[:, :8], max_new_tokens=24, min_new_tokens=24, do_sample=False)
    same = (g1 == g2)[0, 8:]
    first = int((~same).nonzero()[0].item()) if not bool(same.all()) else None
    print(f"# greedy tokens: {int(same.sum())}/24 equal to cuBLAS BF16's; first divergence: {first}")
    ok(g1.shape == g2.shape, "greedy generate runs")
    # a forward captured in a CUDA graph and replayed
    x = ids[:, :1].clone()
    eager = m(x, use_cache=False).logits.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        m(x, use_cache=False)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = m(x, use_cache=False).logits
    torch.cuda.current_stream().wait_stream(s)
    g.replay()
    torch.cuda.synchronize()
    ok(torch.equal(out, eager), "a CUDA graph of the fused forward replays to the same logits")
m.wcodec.detach()
sd, rsd = m.state_dict(), ref.state_dict()
ok(all(torch.equal(sd[k].view(torch.int16) if sd[k].dtype == torch.bfloat16 else sd[k],
                   rsd[k].view(torch.int16) if rsd[k].dtype == torch.bfloat16 else rsd[k]) for k in rsd),
   "detach(): every weight back, bit for bit")
# a damaged tile is refused at attach in this mode too, naming its tensor, before any weight runs
with tempfile.TemporaryDirectory() as bad:
    shutil.copytree(wc, bad, dirs_exist_ok=True)
    big = max((os.path.join(bad, f) for f in os.listdir(bad) if f.endswith(".wcodec")), key=os.path.getsize)
    with open(big, "r+b") as f:
        f.seek(os.path.getsize(big) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x55]))
    try:
        wcodec.hf.from_pretrained(AutoModelForCausalLM, bad, device="cuda", keep="gpu", compute="fused")
        ok(False, "a corrupted container refused at attach (compute=fused)")
    except wcodec.WcodecError as e:
        ok("tensor" in str(e), "a corrupted container refused at attach (compute=fused), naming the tensor", str(e)[:120])
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
