#!/usr/bin/env python3
"""test_attach.py - wcodec.torch.attach on the CPU (the C decoder), with torch (skipped without).

A small model written here (an embedding, a ModuleList of blocks of Linear layers and a norm
weight, a head) is saved as safetensors, encoded with the wcodec tool into tiles small enough
that every weight spans several, and attached: its outputs must equal the uncompressed module's
bit for bit (BF16 and F32), at most one block is decoded at a time, detach() gives the same
parameters back, and each bad input gets its error. Environment: WCODEC_BIN, WCODEC_LIBRARY."""
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_wcodec import write_safetensors  # noqa: E402

WCODEC = os.environ.get("WCODEC_BIN", os.path.join(ROOT, "build", "wcodec"))
try:
    import torch
    from torch import nn
    import wcodec
    import wcodec.hf
    import wcodec.torch
except ImportError:
    torch = None

ST = {"torch.bfloat16": "BF16", "torch.float32": "F32"}

if torch is not None:
    class Block(nn.Module):
        def __init__(self, d, h):
            super().__init__()
            self.up, self.down = nn.Linear(d, h), nn.Linear(h, d, bias=False)
            self.scale = nn.Parameter(torch.randn(d) * 0.1 + 1)

        def forward(self, x):
            return x + self.down(torch.relu(self.up(x * self.scale)))

    class Net(nn.Module):
        def __init__(self, vocab=1000, d=64, h=160, n=4):
            super().__init__()
            self.embed = nn.Embedding(vocab, d)
            self.blocks = nn.ModuleList(Block(d, h) for _ in range(n))
            self.norm = nn.Parameter(torch.ones(d))
            self.head = nn.Linear(d, vocab, bias=False)
            self.register_buffer("pos", torch.arange(8.0), persistent=False)

        def forward(self, ids):
            x = self.embed(ids)
            for b in self.blocks:
                x = b(x)
            return self.head(x * self.norm)


def save(state, path):
    out = {}
    for k, t in state.items():
        t = t.detach().contiguous()
        out[k] = (ST[str(t.dtype)], list(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes())
    write_safetensors(path, out)


@unittest.skipIf(torch is None, "torch does not import")
class Attach(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wcodec-attach-")
        cls.models, cls.paths = {}, {}
        for dt in (torch.bfloat16, torch.float32):
            torch.manual_seed(0)
            m = Net().to(dt).eval()
            name = ST[str(dt)].lower()
            src = os.path.join(cls.tmp, f"{name}.safetensors")
            save(m.state_dict(), src)
            wc = os.path.join(cls.tmp, f"{name}.wcodec")
            subprocess.run([WCODEC, "encode", "-q", "--tile-size", "4096", src, wc], check=True)
            cls.models[dt], cls.paths[dt] = m, wc
        cls.ids = torch.tensor([[1, 5, 9, 333, 996, 0, 717, 2], [3, 3, 4, 650, 960, 959, 320, 999]])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def fresh(self, dt):
        return copy.deepcopy(self.models[dt])

    def block_bytes(self, m):
        return max(sum(p.numel() * p.element_size() for p in b.parameters()) for b in m.blocks)

    def test_outputs_identical_one_block_decoded(self):
        for dt, decoded in ((torch.bfloat16, "none"), (torch.float32, "none"), (torch.bfloat16, "outside")):
            ref = self.models[dt]
            with torch.no_grad():
                want = ref(self.ids)
            m = self.fresh(dt)
            h = wcodec.torch.attach(m, self.paths[dt], device="cpu", decoded=decoded)
            mem = h.memory()
            total = sum(p.numel() * p.element_size() for p in ref.parameters()) - mem["kept_decoded_bytes"]
            self.assertGreater(mem["compressed_bytes"], 0)
            self.assertLess(mem["compressed_bytes"], total)
            # between forwards a block's weights are placeholders: same shape and dtype, no memory
            w = m.blocks[1].up.weight
            self.assertEqual((w.shape, w.dtype, w.stride()), (ref.blocks[1].up.weight.shape, dt, (0, 0)))
            for ctx in (torch.no_grad, torch.inference_mode, torch.enable_grad):
                with ctx():
                    got = m(self.ids)
                self.assertTrue(torch.equal(got, want), f"{dt} {decoded} {ctx.__name__}")
            mem = h.memory()
            self.assertLessEqual(mem["decoded_peak_bytes"] - mem["kept_decoded_bytes"], self.block_bytes(ref))
            self.assertGreater(mem["decoded_peak_bytes"], mem["kept_decoded_bytes"])
            self.assertLessEqual(mem["decoded_bytes"] - mem["kept_decoded_bytes"], self.block_bytes(ref))
            self.assertEqual(m.blocks[2].down.weight.stride(), (0, 0))
            h.detach()
            for (k, a), b in zip(ref.state_dict().items(), m.state_dict().values()):
                self.assertTrue(torch.equal(a, b), k)
            self.assertTrue(all(p.requires_grad for p in m.parameters()))
            with torch.no_grad():
                self.assertTrue(torch.equal(m(self.ids), want))

    def test_compute_fused_falls_back_on_the_cpu(self):
        # compute="fused" needs a CUDA device: on the CPU one warning, then the exact mode, whose
        # outputs are the uncompressed module's bit for bit; a bad mode name is refused
        dt = torch.bfloat16
        with torch.no_grad():
            want = self.models[dt](self.ids)
        m = self.fresh(dt)
        with self.assertWarnsRegex(UserWarning, 'compute="fused" is not available with device cpu'):
            h = wcodec.torch.attach(m, self.paths[dt], device="cpu", compute="fused")
        self.assertEqual(h.memory()["compute_format_bytes"], 0)
        with torch.no_grad():
            self.assertTrue(torch.equal(m(self.ids), want))
        h.detach()
        with self.assertRaisesRegex(ValueError, "compute='fast': expected 'exact' or 'fused'"):
            wcodec.torch.attach(self.fresh(dt), self.paths[dt], device="cpu", compute="fast")

    def test_decoded_none_and_meta_module(self):
        dt = torch.bfloat16
        with torch.no_grad():
            want = self.models[dt](self.ids)
        m = self.fresh(dt)
        h = wcodec.torch.attach(m, self.paths[dt], device="cpu", decoded="none")
        # only the root's own norm stays decoded: its owner holds the blocks. The embedding and the
        # head, each larger than a block, go through the block's area in row ranges
        mem = h.memory()
        self.assertEqual(mem["kept_decoded_bytes"], m.norm.numel() * 2)
        self.assertEqual(len(h.chunked), 2)
        self.assertTrue(all(len(pieces) > 1 for _, _, pieces, _ in h.chunked))
        self.assertEqual(m.embed.weight.stride(), (0, 0))
        with torch.no_grad():
            self.assertTrue(torch.equal(m(self.ids), want))
        mem = h.memory()
        self.assertLessEqual(mem["scratch_bytes"], self.block_bytes(m) + 4 * 256)  # one area on the CPU
        self.assertLessEqual(mem["decoded_peak_bytes"] - mem["kept_decoded_bytes"], self.block_bytes(self.models[dt]))
        h.detach()
        for (k, a), b in zip(self.models[dt].state_dict().items(), m.state_dict().values()):
            self.assertTrue(torch.equal(a, b), k)
        with torch.no_grad():
            self.assertTrue(torch.equal(m(self.ids), want))  # the class's own forward again
        # built without memory: parameters on the meta device, nothing of them read
        torch.manual_seed(1)
        with wcodec.hf.params_on_meta():
            meta = Net().to(dt)
        self.assertEqual(meta.head.weight.device.type, "meta")
        wcodec.torch.attach(meta, self.paths[dt], device="cpu")
        with torch.no_grad():
            self.assertTrue(torch.equal(meta(self.ids), want))

    def write(self, state, name):
        src = os.path.join(self.tmp, name + ".safetensors")
        save(state, src)
        wc = os.path.join(self.tmp, name + ".wcodec")
        subprocess.run([WCODEC, "encode", "-q", "-f", "--tile-size", "4096", src, wc], check=True)
        return wc

    def assert_refused_untouched(self, path, exc, pattern, **kw):
        m = self.fresh(torch.bfloat16)
        before = {k: v.clone() for k, v in m.state_dict().items()}
        with self.assertRaisesRegex(exc, pattern):
            wcodec.torch.attach(m, path, device="cpu", **kw)
        for k, v in m.state_dict().items():  # refused before any weight moved
            self.assertTrue(torch.equal(v, before[k]), k)
        self.assertIsNone(m.blocks[0]._forward_pre_hooks.get(0))
        self.assertEqual(len(m.blocks[0]._forward_pre_hooks), 0)

    def test_mismatches_refused_naming_the_tensor(self):
        state = dict(self.models[torch.bfloat16].state_dict())
        missing = dict(state)
        del missing["blocks.2.up.bias"]
        self.assert_refused_untouched(self.write(missing, "missing"), ValueError, "blocks.2.up.bias")
        shape = dict(state, **{"blocks.1.down.weight": state["blocks.1.down.weight"][:, :10].contiguous()})
        self.assert_refused_untouched(self.write(shape, "shape"), ValueError, r"blocks.1.down.weight.*\[64, 10\]")
        dtype = dict(state, **{"head.weight": state["head.weight"].float()})
        self.assert_refused_untouched(self.write(dtype, "dtype"), ValueError, "head.weight.*F32")
        extra = dict(state, **{"blocks.9.up.weight": state["blocks.0.up.weight"]})
        path = self.write(extra, "extra")
        self.assert_refused_untouched(path, ValueError, "blocks.9.up.weight")
        m = self.fresh(torch.bfloat16)
        wcodec.torch.attach(m, path, device="cpu", strict=False)  # the surplus ignored when asked
        with torch.no_grad():
            self.assertTrue(torch.equal(m(self.ids), self.models[torch.bfloat16](self.ids)))
        self.assert_refused_untouched(self.paths[torch.bfloat16], ValueError, "keep", keep="disk")

    def test_bad_tile_refused_at_attach(self):
        bad = os.path.join(self.tmp, "bad.wcodec")
        shutil.copy(self.paths[torch.float32], bad)
        c = wcodec.Container(bad)
        _, begin, size = c.tensor_range("blocks.3.up.weight")
        first = wcodec._lib.wc_container_find_tile(c._c, begin)
        at = wcodec._lib.wc_container_tile(c._c, first + 1).contents.payload_offset + 200
        c.close()
        with open(bad, "r+b") as f:
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0x41]))
        m = self.fresh(torch.float32)
        with self.assertRaisesRegex(wcodec.WcodecError, r"blocks.3.up.weight.*tile %d" % (first + 1)):
            wcodec.torch.attach(m, bad, device="cpu")

    def test_gradients_refused(self):
        m = self.fresh(torch.float32)
        wcodec.torch.attach(m, self.paths[torch.float32], device="cpu")
        self.assertFalse(any(p.requires_grad for p in m.parameters()))
        x = m.embed(self.ids).detach().requires_grad_(True)
        with self.assertRaisesRegex(RuntimeError, "gradients"):
            m.blocks[0](x)  # its weights would be overwritten before backward
        m.blocks[1].up.weight.requires_grad_(True)
        with self.assertRaisesRegex(RuntimeError, "blocks.1.up.weight.*gradients"):
            with torch.no_grad():
                m(self.ids)


if __name__ == "__main__":
    unittest.main(verbosity=2)
