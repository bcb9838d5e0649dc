#!/usr/bin/env python3
"""step_bench.py SIZE [BATCH...] - a transformers Llama decode step, BF16 against compute="fused",
the same harness on both sides: a static KV cache (prompt 128, room for 256), the decode step
captured in a CUDA graph and replayed, only the Linear layers differing. Then prefills (batch 1,
$PREFILL tokens, default 128 and 2048) the same way: the prompt's forward into a fresh static
cache, captured and replayed, and its Linear layers alone at that many rows.

SIZE: 1b (TinyLlama-1.1B's shape) or 8b (Llama-3.1-8B's). The model is built on the GPU with
random weights as transformers initialises them (normal, std 0.02; no trained model can be
downloaded here), timed in BF16 (cuBLAS), then each nn.Linear's weight is packed into the compute
format (wcodec._cf12.pack, what attach(compute="fused") does after decoding a container) and its
forward replaced by the fused op, and timed again. Also the Linear layers alone in the same step
(their share of it), eager steps, peak GPU memory (weights, cache and activations), and the greedy
tokens of 32 steps compared. Prints a markdown table."""
import inspect
import os
import sys
import types

import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transformers import LlamaConfig, LlamaForCausalLM, StaticCache

from wcodec import _cf12
from cuda_timing import eager_ms, graph_ms

SHAPES = {
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=32000),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0, max_position_embeddings=8192),
}
size = sys.argv[1]
batches = [int(b) for b in sys.argv[2:]] or [1, 4, 8, 16]
PROMPT, ROOM, STEPS = 128, 256, 32
dev = torch.device("cuda")


def make_cache(model, b):
    params = inspect.signature(StaticCache.__init__).parameters
    kw = dict(config=model.config, max_cache_len=ROOM)
    if "max_batch_size" in params:
        kw.update(max_batch_size=b, device=dev, dtype=torch.bfloat16)
    return StaticCache(**kw)


def run(model, b, ids, linears):
    """(graph step ms, eager step ms, peak MiB of the step, Linear-only ms, greedy tokens)."""
    cache = make_cache(model, b)
    with torch.no_grad():
        out = model(input_ids=ids, past_key_values=cache, cache_position=torch.arange(PROMPT, device=dev),
                    use_cache=True)
        tok = out.logits[:, -1:].argmax(-1)
        pos = torch.tensor([PROMPT], device=dev)

        def step():
            return model(input_ids=tok, past_key_values=cache, cache_position=pos, use_cache=True).logits
        torch.cuda.reset_peak_memory_stats()
        try:
            ms, g, logits = graph_ms(step, reps=30)
        except RuntimeError as e:  # a transformers version whose step cannot be captured
            print(f"# batch {b}: the step could not be captured in a CUDA graph ({str(e)[:200]}); eager only")
            ms, g = float("nan"), None
        peak = torch.cuda.max_memory_allocated() / 2 ** 20
        eager = eager_ms(step)
        # greedy: replay the graph (or run eagerly), feeding each step's token to the next
        toks = []
        for i in range(STEPS):
            pos.fill_(PROMPT + i)
            if g is not None:
                g.replay()
            else:
                logits = step()
            tok.copy_(logits[:, -1:].argmax(-1))
            toks.append(tok.clone())
        # the Linear layers alone, as the step calls them, in one graph
        xs = {k: torch.randn(b, k, device=dev).to(torch.bfloat16) for k in {m.in_features for m in linears}}
        lin, _, _ = graph_ms(lambda: [m(xs[m.in_features]) for m in linears])
    del cache, g
    torch.cuda.empty_cache()
    return ms, eager, peak, lin, torch.cat(toks, 1)


def prefill(model, tokens, linears):
    """(graph ms of a prompt's forward, batch 1, into a static cache; its Linear layers alone)."""
    ids = torch.randint(0, model.config.vocab_size, (1, tokens), device=dev)
    params = inspect.signature(StaticCache.__init__).parameters
    kw = dict(config=model.config, max_cache_len=tokens)
    if "max_batch_size" in params:
        kw.update(max_batch_size=1, device=dev, dtype=torch.bfloat16)
    cache = StaticCache(**kw)
    pos = torch.arange(tokens, device=dev)
    g = None
    with torch.no_grad():
        try:
            ms, g, _ = graph_ms(lambda: model(input_ids=ids, past_key_values=cache, cache_position=pos,
                                              use_cache=True, logits_to_keep=1).logits, reps=10)
        except RuntimeError as e:  # a transformers version whose prefill cannot be captured
            print(f"# prefill {tokens}: not captured in a CUDA graph ({str(e)[:200]})")
            ms = float("nan")
        xs = {k: torch.randn(tokens, k, device=dev).to(torch.bfloat16) for k in {m.in_features for m in linears}}
        lin, _, _ = graph_ms(lambda: [m(xs[m.in_features]) for m in linears], reps=10)
    del cache, g
    torch.cuda.empty_cache()
    return ms, lin


def main():
    torch.manual_seed(0)
    cfg = LlamaConfig(**SHAPES[size], tie_word_embeddings=False)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).eval()
    torch.set_default_dtype(torch.float32)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    ids = {b: torch.randint(0, cfg.vocab_size, (b, PROMPT), device=dev) for b in batches}
    print(f"# {torch.cuda.get_device_name()}, Llama {size} shape, prompt {PROMPT}, static cache {ROOM}")
    prompts = [int(p) for p in os.environ.get("PREFILL", "128 2048").split()]
    bf16 = {b: run(model, b, ids[b], linears) for b in batches}
    bf16_pre = {p: prefill(model, p, linears) for p in prompts}
    wbytes = sum(m.weight.numel() * 2 for m in linears)
    for m in linears:  # into the compute format, the BF16 weight freed
        cw = _cf12.pack(m.weight.data)
        m.weight = torch.nn.Parameter(torch.zeros((), dtype=torch.bfloat16, device=dev).expand(m.weight.shape),
                                      requires_grad=False)
        m.forward = types.MethodType(lambda mod, x, cw=cw: _cf12.linear(x, cw, mod.bias), m)
        m.cf12 = cw
    cbytes = sum(m.cf12.nbytes() for m in linears)
    torch.cuda.empty_cache()
    fused = {b: run(model, b, ids[b], linears) for b in batches}
    fused_pre = {p: prefill(model, p, linears) for p in prompts}
    print(f"Linear weights: BF16 {wbytes/1e9:.2f} GB, compute format {cbytes/1e9:.2f} GB ({cbytes/wbytes:.4f})")
    print("| batch | BF16 step ms (graph) | fused step ms (graph) | speed-up | Linear share BF16 / fused (ms) "
          "| eager BF16 / fused ms | peak GPU MiB BF16 / fused (ratio) | greedy tokens equal |")
    print("|---|---|---|---|---|---|---|---|")
    for b in batches:
        s0, e0, p0, l0, t0 = bf16[b]
        s1, e1, p1, l1, t1 = fused[b]
        same = (t0 == t1)
        first = "all" if bool(same.all()) else f"first divergence at step {int((~same).any(0).nonzero()[0])}"
        print(f"| {b} | {s0:.3f} | {s1:.3f} | {s0/s1:.3f} | {l0:.3f} / {l1:.3f} | {e0:.2f} / {e1:.2f} | "
              f"{p0:.0f} / {p1:.0f} ({p1/p0:.3f}) | {int(same.sum())}/{same.numel()} ({first}) |", flush=True)
    if prompts:
        print("| prefill tokens (batch 1) | BF16 ms (graph) | fused ms (graph) | speed-up | Linear layers BF16 / fused ms (ratio) |")
        print("|---|---|---|---|---|")
    for p in prompts:
        (s0, l0), (s1, l1) = bf16_pre[p], fused_pre[p]
        print(f"| {p} | {s0:.3f} | {s1:.3f} | {s0/s1:.3f} | {l0:.3f} / {l1:.3f} ({l0/l1:.3f}) |", flush=True)


main()
