#!/usr/bin/env python3
"""url_check.py LLM_DIR URL LOG - the Python package by URL onto the GPU.

LLM_DIR is a raw folder (a Llama: config.json, model.safetensors, and other .safetensors);
URL serves, under llm.wc/ and llama.wc/, its encoded folder and the Llama's alone, each with its
wcodec-manifest.json (range_server.py; LOG is its request log).
1. wcodec.torch.load_dir(URL, "cuda") and load_file(URL of one container, "cuda") equal
   safetensors' load of the raw files, bitwise; on the GPU path (one pipeline over the shards).
2. wcodec.hf.from_pretrained(LlamaForCausalLM, URL, device="cuda"): parameters and logits equal
   transformers' from the raw folder; the folder's listing asked for once.
3. The same with keep="gpu" (weights kept compressed, attached by URL): logits equal.
Prints 'not ok' lines for failures and ends with 'N passed, N failed'."""
import glob
import os
import sys

import torch
from safetensors.torch import load_file as st_load_file
from transformers import LlamaForCausalLM

import wcodec.hf
import wcodec.torch
from tally import check, done, same

raw, url, log = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]


def requests_for(name):
    with open(log) as f:
        return sum(1 for line in f if name in line.split()[0])


ref = {}
for f in sorted(glob.glob(os.path.join(raw, "*.safetensors"))):
    ref.update(st_load_file(f, device="cuda"))
got = wcodec.torch.load_dir(f"{url}/llm.wc/", device="cuda")
check(sorted(got) == sorted(ref), "load_dir(URL, cuda): the same tensor names")
check(all(same(got[k], ref[k]) and got[k].device.type == "cuda" for k in ref if k in got),
      "load_dir(URL, cuda): tensors equal to the raw files'")
one = wcodec.torch.load_file(f"{url}/llm.wc/model.wcodec", device="cuda")
check(all(same(one[k], ref[k]) for k in one) and len(one) > 0, "load_file(URL, cuda): tensors equal")

before = requests_for("wcodec-manifest.json")
a = LlamaForCausalLM.from_pretrained(raw, dtype=torch.bfloat16).to("cuda").eval()
b = wcodec.hf.from_pretrained(LlamaForCausalLM, f"{url}/llama.wc/", device="cuda", dtype=torch.bfloat16)
listings = requests_for("wcodec-manifest.json") - before
check(listings == 1, f"hf.from_pretrained(URL): the folder listed once (listed {listings} times)")
pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
check(pa.keys() == pb.keys() and all(same(pa[k], pb[k]) for k in pa), "hf.from_pretrained(URL): parameters equal")
ids = torch.arange(1, 33, device="cuda").reshape(1, 32)
with torch.no_grad():
    want = a(ids).logits
    check(torch.equal(want, b(ids).logits), "hf.from_pretrained(URL): logits equal")
    del b
    k = wcodec.hf.from_pretrained(LlamaForCausalLM, f"{url}/llama.wc/", device="cuda", keep="gpu",
                                  dtype=torch.bfloat16)
    check(torch.equal(want, k(ids).logits), "hf.from_pretrained(URL, keep='gpu'): logits equal")
done()
