#!/usr/bin/env python3
"""infer_bench.py SIZE DIR - inference with weights kept compressed, side by side in one run.

SIZE is 1b (TinyLlama-1.1B's shape) or 8b (Llama-3.1-8B's shape); the Llama is made here with
transformers, random BF16 weights drawn as transformers initialises them (normal, std 0.02: no
trained model can be downloaded here), saved under DIR/raw and encoded to DIR/wc (DIR: tmpfs,
so that loads are not storage-bound). Then, on the GPU, for a prompt of 128 random tokens and
greedy generation (min_new_tokens = max_new_tokens, so every run makes the same count):
  - bf16:         transformers' from_pretrained of the raw folder, weights decoded in GPU memory
  - keep=gpu:     wcodec.hf.from_pretrained(..., keep="gpu"), weights compressed in GPU memory
  - keep=gpu, decoded=none: the same with embeddings and head compressed too
  - keep=host:    weights compressed in pinned host memory, streamed per layer
  - offload:      transformers + accelerate, device_map="auto" with max_memory capping the GPU at
                  what keep=host used, the rest in CPU memory
at batch 1 and 16: tokens/s (new tokens over the whole generate call, prefill included) and peak
GPU memory (torch.cuda.max_memory_allocated, plus the decoder's own device memory for keep).
Every run's tokens are compared with bf16's. Also the load time of wcodec.hf.from_pretrained
(keep=None) against transformers' from_pretrained, page cache warm for both.
Environment: NEW (new tokens, default 128), NEW_HOST (for keep=host and offload, default 16:
each of their forwards moves the whole model over PCIe), WCODEC_BIN. Prints a markdown table."""
import gc
import os
import subprocess
import sys
import time

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

import wcodec.hf

SHAPES = {
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=32000),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0, max_position_embeddings=8192),
}
size, work = sys.argv[1], sys.argv[2]
NEW, NEW_HOST = int(os.environ.get("NEW", 128)), int(os.environ.get("NEW_HOST", 16))
NEW_OFFLOAD = int(os.environ.get("NEW_OFFLOAD", NEW_HOST))
raw, enc = os.path.join(work, "raw"), os.path.join(work, "wc")
GiB = 1 << 30


def du(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
               if f.endswith((".safetensors", ".wcodec")))


def make():
    if os.path.exists(os.path.join(raw, "config.json")):
        return
    torch.manual_seed(0)
    cfg = LlamaConfig(**SHAPES[size], tie_word_embeddings=False, dtype="bfloat16")
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        m = LlamaForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    m.save_pretrained(raw, max_shard_size="5GB")
    del m
    torch.cuda.empty_cache()


def free():
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def prompt(batch, vocab):
    g = torch.Generator().manual_seed(batch)
    return torch.randint(3, vocab, (batch, 128), generator=g).to("cuda")


def generate(model, ids, new, extra_bytes=0):
    with torch.inference_mode():
        warm = min(4, new)
        model.generate(ids, max_new_tokens=warm, min_new_tokens=warm, do_sample=False, pad_token_id=0)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    return ids.shape[0] * new / dt, torch.cuda.max_memory_allocated() + extra_bytes, out[:, 128:].cpu()


make()
if not os.path.exists(os.path.join(enc, "config.json")):
    subprocess.run([os.environ.get("WCODEC_BIN", "wcodec"), "encode", "-q", "-j", str(os.cpu_count()), raw, enc],
                   check=True)
ratio = du(enc) / du(raw)
params = None
rows, ref = [], {}


def record(name, model, new, extra=lambda: 0):
    """Logits of the prompt's last positions and greedy tokens, compared with bf16's (the first
    run recorded); tokens/s and peak memory."""
    for batch in (1, 16):
        ids = prompt(batch, model.config.vocab_size)
        with torch.inference_mode():
            logits = model(ids).logits[:, -4:].cpu()
        tps, peak, toks = generate(model, ids, new, extra())
        if batch not in ref:
            ref[batch] = (logits, toks)
            same = "reference"
        else:
            same_l = torch.equal(logits, ref[batch][0])
            same_t = torch.equal(toks, ref[batch][1][:, :toks.shape[1]])
            same = f"logits {'yes' if same_l else 'NO'}, tokens {'yes' if same_t else 'NO'}"
        rows.append((name, batch, new, tps, peak))
        print(f"{name} batch {batch}: {tps:.1f} tokens/s, peak {peak / GiB:.2f} GiB, equal to bf16: {same}",
              flush=True)


# loading, page cache warm (the files were just written; one untimed read of each warms them too)
loads = {"transformers": [], "wcodec": []}
for r in range(2 if size == "1b" else 1):  # the load target is the 1b's; an 8b load costs 10+ s a try
    for name in ("transformers", "wcodec") if size == "1b" else ("transformers",):
        free()
        t0 = time.perf_counter()
        if name == "transformers":
            m = AutoModelForCausalLM.from_pretrained(raw, dtype=torch.bfloat16, device_map="cuda")
        else:
            m = wcodec.hf.from_pretrained(AutoModelForCausalLM, enc, device="cuda")
        torch.cuda.synchronize()
        loads[name].append(time.perf_counter() - t0)
        params = sum(p.numel() for p in m.parameters())
        if r == (1 if size == "1b" else 0) and name == "transformers":
            record("bf16 (transformers)", m, NEW)
        del m
if loads["wcodec"]:
    print(f"load transformers.from_pretrained: {min(loads['transformers']):.2f} s, "
          f"wcodec.hf.from_pretrained: {min(loads['wcodec']):.2f} s (best of 2)", flush=True)

# The same model as wcodec builds it, weights decoded (keep=None): bf16 without transformers' loading
# path, then the kept-compressed runs, then keep=None again (the machine's drift shows between the two)
host_peak = None
runs = [(None, {}, NEW), ("gpu", {"decoded": "outside"}, NEW), ("gpu", {"decoded": "none"}, NEW), (None, {}, NEW),
        ("host", {"decoded": "outside"}, NEW_HOST)]
for i, (keep, kw, new) in enumerate(runs):
    free()
    m = wcodec.hf.from_pretrained(AutoModelForCausalLM, enc, device="cuda", keep=keep, **kw)
    if keep is None:
        record("bf16 (wcodec.hf, keep=None)" + (", again" if i else ""), m, new)
    else:
        name = f"keep={keep}" + (f", decoded={kw['decoded']}" if kw else "")
        record(name, m, new, lambda: m.wcodec.memory()["overhead_bytes"])
        if keep == "host":
            host_peak = max(r[4] for r in rows if r[0] == name)
        print(f"# {name}: {m.wcodec.memory()}", flush=True)
    del m

if os.environ.get("OFFLOAD", "1") == "1":
    free()
    cap = int(host_peak)
    m = AutoModelForCausalLM.from_pretrained(raw, dtype=torch.bfloat16, device_map="auto",
                                             max_memory={0: cap, "cpu": 200 * GiB})
    record(f"offload (accelerate, GPU capped at {cap / GiB:.2f} GiB)", m, NEW_OFFLOAD)
    del m

print(f"\nmodel: Llama {size} shape, {params / 1e9:.2f}B parameters, BF16 {du(raw) / 1e9:.2f} GB; "
      f"containers {ratio:.4f} of it; device {torch.cuda.get_device_name()}")
print("\n| run | batch | new tokens | tokens/s | vs bf16 (faster run) | peak GPU memory GiB | vs bf16 |")
print("|---|---|---|---|---|---|---|")
base = {}
for r in rows:  # the fastest bf16 run
    if r[0].startswith("bf16") and (r[1] not in base or r[3] > base[r[1]][3]):
        base[r[1]] = r
for name, batch, new, tps, peak in rows:
    b = base[batch]
    print(f"| {name} | {batch} | {new} | {tps:.1f} | {tps / b[3]:.2f}x | {peak / GiB:.2f} | {peak / b[4]:.3f}x |")
