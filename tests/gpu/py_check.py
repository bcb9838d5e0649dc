#!/usr/bin/env python3
"""py_check.py ORIG_DIR WC_DIR [LLAMA_DIR LLAMA_WC_DIR] - the Python package on the GPU.

1. For every *.safetensors under ORIG_DIR and its container under WC_DIR:
   wcodec.torch.load_file(device="cuda") and safe_open(framework="pt", device="cuda").get_tensor
   equal safetensors.torch.load_file(device="cuda") bitwise, dtypes and shapes included; a row
   slice decoded on the GPU equals the same slice of the full tensor.
2. load_dir(device="cuda") of a model cut into 3 shards (all files in one pipeline) equals the
   tensors saved; with one shard damaged, the error names that shard.
3. With a Llama folder and its encoded folder: wcodec.hf.from_pretrained(LlamaForCausalLM, ...,
   device="cuda") has every parameter equal to transformers' from_pretrained of the raw folder,
   and the same logits on a fixed input.
Prints 'not ok' lines for failures and ends with 'N passed, N failed'."""
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file as st_load_file, save_file as st_save_file

import wcodec
import wcodec.hf
import wcodec.torch
from tally import check, done, same

orig_dir, wc_dir = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(orig_dir)):
    if not name.endswith(".safetensors"):
        continue
    ref = st_load_file(os.path.join(orig_dir, name), device="cuda")
    wc = os.path.join(wc_dir, name[:-len(".safetensors")] + ".wcodec")
    got = wcodec.torch.load_file(wc, device="cuda")
    check(sorted(got) == sorted(ref), f"{name}: load_file keys")
    check(all(same(got[k], ref[k]) and got[k].device.type == "cuda" for k in ref if k in got),
          f"{name}: load_file(device='cuda') tensors equal")
    with wcodec.safe_open(wc, framework="pt", device="cuda:0") as f:
        check(all(same(f.get_tensor(k), ref[k]) for k in f.keys()), f"{name}: safe_open get_tensor equal")
        big = max(ref, key=lambda k: ref[k].numel())
        if ref[big].dim() >= 1 and ref[big].shape[0] >= 4:
            n = ref[big].shape[0]
            check(same(f.get_slice(big)[n // 4:n // 2], ref[big][n // 4:n // 2]), f"{name}: get_slice rows equal")
print(f"# load_file(device='cuda') checked on {len(os.listdir(wc_dir))} files")

with tempfile.TemporaryDirectory() as t:  # shards: every tensor of the biggest file, dealt out in 3
    big = max((n for n in os.listdir(orig_dir) if n.endswith(".safetensors")),
              key=lambda n: os.path.getsize(os.path.join(orig_dir, n)))
    ref = st_load_file(os.path.join(orig_dir, big))
    names = sorted(ref)
    os.makedirs(os.path.join(t, "raw"))
    for i in range(3):
        st_save_file({k: ref[k].contiguous() for k in names[i::3]}, os.path.join(t, "raw", f"s{i}.safetensors"))
    subprocess.run([os.environ.get("WCODEC_BIN", "wcodec"), "encode", "-q", os.path.join(t, "raw"),
                    os.path.join(t, "wc")], check=True)
    got = wcodec.torch.load_dir(os.path.join(t, "wc"), device="cuda")
    check(sorted(got) == names and all(same(got[k].cpu(), ref[k]) and got[k].is_cuda for k in names),
          f"load_dir(device='cuda'): 3 shards of {big}, {len(names)} tensors equal")
    victim = os.path.join(t, "wc", "s1.wcodec")
    c = wcodec.Container(victim)  # a byte in the payload of the tile in the middle of the file
    tile = wcodec._lib.wc_container_tile(c._c, wcodec._lib.wc_container_find_tile(c._c, c.source_size // 2)).contents
    at = tile.payload_offset + tile.coded_size // 2
    c.close()
    with open(victim, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x24]))
    try:
        wcodec.torch.load_dir(os.path.join(t, "wc"), device="cuda")
        check(False, "load_dir(device='cuda'): a damaged shard was not refused")
    except wcodec.WcodecError as e:
        check("s1.wcodec" in str(e) and "tile" in str(e), f"load_dir(device='cuda'): the damaged shard named: {e}")

if len(sys.argv) > 4:
    from transformers import LlamaForCausalLM
    raw, enc = sys.argv[3], sys.argv[4]
    a = LlamaForCausalLM.from_pretrained(raw, dtype=torch.bfloat16).to("cuda").eval()
    b = wcodec.hf.from_pretrained(LlamaForCausalLM, enc, device="cuda", dtype=torch.bfloat16).eval()
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    check(pa.keys() == pb.keys() and all(same(pa[k], pb[k]) for k in pa), "hf.from_pretrained: parameters equal")
    ids = torch.arange(1, 65, device="cuda").unsqueeze(0)
    with torch.no_grad():
        check(torch.equal(a(ids).logits, b(ids).logits), "hf.from_pretrained: logits equal")
done()
