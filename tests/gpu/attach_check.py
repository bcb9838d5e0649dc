#!/usr/bin/env python3
"""attach_check.py RAW_DIR WC_DIR - weights kept compressed, on the GPU, against transformers.

RAW_DIR is a transformers Llama saved as safetensors, WC_DIR its encoded folder. The model loaded
by transformers from RAW_DIR is the reference; wcodec.hf.from_pretrained of WC_DIR, through the
Auto class, must give the same logits and the same greedy tokens (KV cache, inference_mode too):
fully loaded (keep=None), and attached with keep="gpu" and keep="host" (decoded="none", the
default, and "outside"; verify="always"); at most two blocks decoded at once; a damaged tile refused at attach
naming tile and tensor; too little GPU memory refused saying how much was needed and for what;
gradients refused. A Llama with tied embeddings (made here) too. Ends 'N passed, N failed'."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

import wcodec
import wcodec.hf
from tally import check, done, expect, same

def run(model, ids):
    with torch.no_grad():
        logits = model(ids).logits
    with torch.inference_mode():
        toks = model.generate(ids, max_new_tokens=12, do_sample=False, min_new_tokens=12,
                              pad_token_id=0)
    return logits, toks


def compare(raw, enc, tag, wcodec_bin):
    ref = AutoModelForCausalLM.from_pretrained(raw, dtype=torch.bfloat16).to("cuda").eval()
    ids = torch.randint(3, ref.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0)).to("cuda")
    want_logits, want_toks = run(ref, ids)
    layer_bytes = max(sum(p.numel() * p.element_size() for p in layer.parameters())
                      for layer in ref.model.layers)
    ref_params = {k: v for k, v in ref.named_parameters()}
    del ref
    torch.cuda.empty_cache()

    m = wcodec.hf.from_pretrained(AutoModelForCausalLM, enc, device="cuda")
    check(all(same(p, ref_params[k]) for k, p in m.named_parameters()), f"{tag}: keep=None parameters equal")
    got_logits, got_toks = run(m, ids)
    check(same(got_logits, want_logits) and torch.equal(got_toks, want_toks),
          f"{tag}: keep=None (Auto class) logits and greedy tokens equal")
    del m
    for keep, kw in (("gpu", {}), ("host", {}), ("gpu", {"decoded": "outside"}), ("gpu", {"verify": "always"})):
        what = f"{tag}: keep={keep} {kw}"
        torch.cuda.empty_cache()
        m = wcodec.hf.from_pretrained(AutoModelForCausalLM, enc, device="cuda", keep=keep, **kw)
        for r in range(2):  # the second run uses what the first learned (prefetch of the next block)
            got_logits, got_toks = run(m, ids)
            check(same(got_logits, want_logits), f"{what}: logits equal (run {r})")
            check(torch.equal(got_toks, want_toks), f"{what}: greedy tokens equal (run {r})")
        mem = m.wcodec.memory()
        check(mem["decoded_peak_bytes"] - mem["kept_decoded_bytes"] <= 2 * max(layer_bytes, 1),
              f"{what}: at most two blocks decoded at once ({mem})")
        check(0 < mem["compressed_bytes"] < sum(ref_params[k].numel() * 2 for k in ref_params), f"{what}: compressed")
        print(f"# {what}: {mem}", flush=True)
        m.wcodec.detach()
        check(all(same(p, ref_params[k]) for k, p in m.named_parameters()), f"{what}: detach() restores")
        del m

    # bad inputs
    bad = tempfile.mkdtemp(prefix="wcodec-bad-")
    try:
        for f in os.listdir(enc):
            shutil.copy(os.path.join(enc, f), bad)
        shard = sorted(f for f in os.listdir(bad) if f.endswith(".wcodec"))[0]
        c = wcodec.Container(os.path.join(bad, shard))
        name = sorted((k for k in c.header if ".layers.1." in k and k.endswith("mlp.up_proj.weight")))[0]
        _, begin, size = c.tensor_range(name)
        tile = wcodec._lib.wc_container_find_tile(c._c, begin) + 1
        at = wcodec._lib.wc_container_tile(c._c, tile).contents.payload_offset + 300
        c.close()
        with open(os.path.join(bad, shard), "r+b") as f:
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0x10]))
        for keep in ("gpu", "host"):
            expect(wcodec.WcodecError, rf"{name}.*tile {tile}\b", f"{tag}: damaged tile refused at attach (keep={keep})",
                   lambda: wcodec.hf.from_pretrained(AutoModelForCausalLM, bad, device="cuda", keep=keep))
    finally:
        shutil.rmtree(bad)
    if sum(v.numel() for v in ref_params.values()) > 20_000_000:
        # in a process of its own, whose allocator has nothing cached: 4 MiB allowed, far too little
        code = ("import sys, torch, wcodec.hf\nfrom transformers import AutoModelForCausalLM\n"
                "torch.cuda.set_per_process_memory_fraction((4 << 20) / torch.cuda.get_device_properties(0).total_memory)\n"
                "try:\n    wcodec.hf.from_pretrained(AutoModelForCausalLM, sys.argv[1], device='cuda', keep='gpu')\n"
                "except MemoryError as e:\n    print('MemoryError:', e)\n")
        r = subprocess.run([sys.executable, "-c", code, enc], capture_output=True, text=True)
        check(re.search(r"MemoryError: wcodec.attach: \d+ bytes of memory on cuda:0 needed for "
                        r"(the compressed weights|a block)", r.stdout) is not None,
              f"{tag}: out of GPU memory says how much and for what: {r.stdout[-300:]} {r.stderr[-300:]}")
    m = wcodec.hf.from_pretrained(AutoModelForCausalLM, enc, device="cuda", keep="gpu")
    m.model.layers[0].mlp.up_proj.weight.requires_grad_(True)
    expect(RuntimeError, "gradients", f"{tag}: gradients through compressed weights refused",
           lambda: m(ids).logits.sum().backward())


raw, enc, wcodec_bin = sys.argv[1], sys.argv[2], os.environ.get("WCODEC_BIN", "wcodec")
compare(raw, enc, "llama", wcodec_bin)
# tied embeddings: the checkpoint has no lm_head.weight
tmp = tempfile.mkdtemp(prefix="wcodec-tied-")
try:
    torch.manual_seed(1)
    cfg = LlamaConfig(hidden_size=256, intermediate_size=768, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=5000, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(os.path.join(tmp, "raw"))
    os.system(f"'{wcodec_bin}' encode -q '{tmp}/raw' '{tmp}/wc'")
    compare(os.path.join(tmp, "raw"), os.path.join(tmp, "wc"), "tied llama", wcodec_bin)
finally:
    shutil.rmtree(tmp)
done()
