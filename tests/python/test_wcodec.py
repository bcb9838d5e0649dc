#!/usr/bin/env python3
"""test_wcodec.py - the Python package (python/wcodec) against the original files.

Every dtype fixture and the real weights in ../shared/data (skipped where absent) are encoded
with the wcodec tool, loaded through the package, and compared with the original .safetensors
parsed here independently (struct + json). numpy is required; the torch CPU tests run where torch
imports. Environment: WCODEC_BIN (the wcodec tool), WCODEC_LIBRARY (libwcodec.so)."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
import wcodec  # noqa: E402
import wcodec.numpy  # noqa: E402

WCODEC = os.environ.get("WCODEC_BIN", os.path.join(ROOT, "build", "wcodec"))
DATA = os.path.join(ROOT, "..", "shared", "data")
try:
    import torch
    import wcodec.torch
except ImportError:
    torch = None

NUMPY = {"BOOL": "?", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "U32": "<u4",
         "I32": "<i4", "U64": "<u8", "I64": "<i8", "F16": "<f2", "F32": "<f4", "F64": "<f8"}
WIDTH = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2,
         "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8}


def parse(path):
    """The original file, independently: {name: (dtype, shape, bytes)}, metadata."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in h.items()}, meta


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (dtype, shape, bytes)}, stored in name order, 8-byte aligned."""
    header, blobs, pos = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for k in sorted(tensors):
        dt, shape, data = tensors[k]
        header[k] = {"dtype": dt, "shape": shape, "data_offsets": [pos, pos + len(data)]}
        blobs.append(data)
        pos += len(data)
    j = json.dumps(header).encode()
    j += b" " * (-len(j) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(j)) + j + b"".join(blobs))


def fixture_tensors(seed):
    """Every dtype, shapes with several tiles, realistic floats, and edge shapes."""
    rng = np.random.default_rng(seed)
    t = {}
    for dt, w in WIDTH.items():
        shape = [300, 257] if w <= 2 else [97, 301]
        n = int(np.prod(shape))
        if dt in ("F16", "F32", "F64"):
            data = (rng.normal(0, 0.02, n).astype(NUMPY[dt])).tobytes()
        elif dt == "BF16":
            data = (rng.normal(0, 0.02, n).astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        elif dt == "BOOL":
            data = (rng.random(n) < 0.3).astype("u1").tobytes()
        else:
            data = rng.integers(0, 256, n * w, dtype=np.uint8).tobytes()
        t[f"t.{dt.lower()}"] = (dt, shape, data)
    t["scalar"] = ("F32", [], np.float32(3.5).tobytes())
    t["empty"] = ("F32", [0, 4], b"")
    t["vector"] = ("I32", [1000], rng.integers(-9, 9, 1000, dtype="<i4").tobytes())
    return t


class Fixture(unittest.TestCase):
    """Two shards of every dtype, encoded; the original parsed here."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wcodec-py-")
        src, out = os.path.join(cls.tmp, "src"), os.path.join(cls.tmp, "wc")
        os.makedirs(os.path.join(src))
        write_safetensors(os.path.join(src, "model-00001-of-00002.safetensors"), fixture_tensors(1),
                          {"format": "pt", "note": "one"})
        shard2 = {("second." + k): v for k, v in fixture_tensors(2).items() if k.startswith("t.")}
        write_safetensors(os.path.join(src, "model-00002-of-00002.safetensors"), shard2)
        with open(os.path.join(src, "config.json"), "w") as f:
            f.write("{}")
        subprocess.run([WCODEC, "encode", "-q", "--tile-size", "16384", src, out], check=True)
        cls.src, cls.out = src, out
        cls.orig, cls.meta = parse(os.path.join(src, "model-00001-of-00002.safetensors"))
        cls.wc = os.path.join(out, "model-00001-of-00002.wcodec")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)


class Numpy(Fixture):
    def test_safe_open_keys_metadata(self):
        with wcodec.safe_open(self.wc, framework="numpy") as f:
            self.assertEqual(f.keys(), sorted(self.orig))
            self.assertEqual(f.metadata(), self.meta)

    def test_numpy_every_dtype(self):
        with wcodec.safe_open(self.wc, framework="numpy") as f:
            for k, (dt, shape, data) in self.orig.items():
                if dt not in NUMPY:
                    with self.assertRaisesRegex(TypeError, dt):
                        f.get_tensor(k)
                    continue
                a = f.get_tensor(k)
                self.assertEqual(a.dtype, np.dtype(NUMPY[dt]), k)
                self.assertEqual(list(a.shape), shape, k)
                self.assertEqual(a.tobytes(), data, k)

    def test_numpy_load_file_refuses_bf16(self):
        with self.assertRaisesRegex(TypeError, "BF16|F8"):
            wcodec.numpy.load_file(self.wc)

    def test_slices_match_numpy_indexing(self):
        dt, shape, data = self.orig["t.f32"]
        ref = np.frombuffer(data, dtype=NUMPY[dt]).reshape(shape)
        with wcodec.safe_open(self.wc, framework="numpy") as f:
            s = f.get_slice("t.f32")
            self.assertEqual(s.get_shape(), shape)
            self.assertEqual(s.get_dtype(), "F32")
            for key in [slice(0, 5), slice(10, 90), 7, -1, slice(3, 80, 7), (slice(2, 9), slice(5, 50)),
                        (4, slice(None, None, 3)), slice(50, 50), slice(None), (Ellipsis, 3), slice(96, 200)]:
                np.testing.assert_array_equal(s[key], ref[key], err_msg=str(key))
            with self.assertRaises(IndexError):
                s[97]

    def test_real_weights(self):
        files = [os.path.join(DATA, n) for n in sorted(os.listdir(DATA)) if n.endswith(".safetensors")] \
            if os.path.isdir(DATA) else []
        if not files:
            self.skipTest("../shared/data is absent")
        d = os.path.join(self.tmp, "real")
        os.makedirs(d, exist_ok=True)
        for src in files:
            wc = os.path.join(d, os.path.basename(src)[:-len(".safetensors")] + ".wcodec")
            subprocess.run([WCODEC, "encode", "-q", src, wc], check=True)
            orig, meta = parse(src)
            c = wcodec.Container(wc)
            with wcodec.safe_open(wc, framework="numpy") as f:
                self.assertEqual(f.keys(), sorted(orig))
                for k, (dt, shape, data) in orig.items():
                    if dt in NUMPY:
                        self.assertEqual(f.get_tensor(k).tobytes(), data, k)
                    else:  # BF16: the raw bytes of its range
                        _, begin, size = c.tensor_range(k)
                        self.assertEqual(bytes(c.read(begin, size)), data, k)
            c.close()

    def test_inconsistent_header_refused_before_allocating(self):
        # what a crafted header could claim: checked against the bytes before any allocation
        c = wcodec.Container(self.wc)
        _, begin, size = c.tensor_range("t.f32")
        for shape in ([10 ** 15], [97, -301], [97, 302]):
            with self.assertRaisesRegex(ValueError, "F32"):
                wcodec.numpy.tensor(c, "F32", shape, begin, size)
        c.close()

    def test_corrupted_tile_raises_and_the_rest_reads(self):
        bad = os.path.join(self.tmp, "bad.wcodec")
        with open(self.wc, "rb") as f:
            b = bytearray(f.read())
        b[len(b) * 3 // 4] ^= 0x40  # inside a payload, past the tables
        with open(bad, "wb") as f:
            f.write(b)
        ok = failed = 0
        with wcodec.safe_open(bad, framework="numpy") as f:
            for k, (dt, shape, data) in self.orig.items():
                if dt not in NUMPY:
                    continue
                try:
                    self.assertEqual(f.get_tensor(k).tobytes(), data, k)
                    ok += 1
                except wcodec.WcodecError as e:
                    self.assertIn("tile", str(e))
                    failed += 1
        self.assertGreaterEqual(failed, 1)
        self.assertGreater(ok, 5)

    def test_errors(self):
        with self.assertRaisesRegex(wcodec.WcodecError, "missing.wcodec"):
            wcodec.safe_open(os.path.join(self.tmp, "missing.wcodec"), framework="numpy")
        with self.assertRaisesRegex(wcodec.WcodecError, "config.json"):
            wcodec.safe_open(os.path.join(self.src, "config.json"), framework="numpy")
        if torch is None:
            with self.assertRaisesRegex(ImportError, "framework='pt' needs torch"):
                wcodec.safe_open(self.wc, framework="pt")
        with wcodec.safe_open(self.wc, framework="numpy") as f, self.assertRaises(KeyError):
            f.get_tensor("no.such.tensor")
        with self.assertRaises(ValueError):
            wcodec.safe_open(self.wc, framework="numpy", device="cuda")
        with self.assertRaises(ValueError):
            wcodec.safe_open(self.wc, framework="jax")

    def test_pip_install_bundles_the_library(self):
        if subprocess.run([sys.executable, "-c", "import setuptools, pip"], capture_output=True).returncode:
            self.skipTest("pip or setuptools missing for this interpreter")
        target = os.path.join(self.tmp, "site")
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
                            "--target", target, os.path.join(ROOT, "python")], capture_output=True, text=True,
                           env=dict(os.environ, PIP_NO_INDEX="1"))
        self.assertEqual(r.returncode, 0, r.stderr)
        shutil.rmtree(os.path.join(ROOT, "python", "build"), ignore_errors=True)  # pip's in-tree build
        for egg in os.listdir(os.path.join(ROOT, "python")):
            if egg.endswith(".egg-info"):
                shutil.rmtree(os.path.join(ROOT, "python", egg), ignore_errors=True)
        self.assertTrue(os.path.exists(os.path.join(target, "wcodec", "libwcodec.so")))
        env = {k: v for k, v in os.environ.items() if k != "WCODEC_LIBRARY"}
        env["PYTHONPATH"] = target
        code = ("import wcodec, wcodec._lib as l, wcodec.numpy as n, sys; "
                "assert l.lib._name.startswith(sys.argv[1]), l.lib._name; "
                "a = n.tensor(wcodec.Container(sys.argv[2]), 'F32', [97, 301], *wcodec.Container(sys.argv[2]).tensor_range('t.f32')[1:]); "
                "print(a.tobytes().hex())")
        r = subprocess.run([sys.executable, "-c", code, target, self.wc], env=env, capture_output=True, text=True,
                           cwd=self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(bytes.fromhex(r.stdout.strip()), self.orig["t.f32"][2])

    def test_without_numpy(self):
        """The python3 first on PATH may lack numpy (a pyenv shim here): the package imports, reads
        raw bytes, and framework='numpy' says what it needs."""
        bare = [p for p in {shutil.which("python3"), "/usr/bin/python3"} if p and
                subprocess.run([p, "-c", "import numpy"], capture_output=True).returncode != 0]
        if not bare:
            self.skipTest("every python3 here has numpy")
        want = os.path.join(self.tmp, "t.f32.bytes")
        with open(want, "wb") as f:
            f.write(self.orig["t.f32"][2])
        code = ("import sys, wcodec; c = wcodec.Container(sys.argv[1]); _, b, n = c.tensor_range('t.f32'); "
                "assert bytes(c.read(b, n)) == open(sys.argv[2], 'rb').read(), 'bytes'\n"
                "try:\n    wcodec.safe_open(sys.argv[1], framework='numpy')\nexcept ImportError as e:\n"
                "    print(e)")
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
        r = subprocess.run([bare[0], "-c", code, self.wc, want], env=env,
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("framework='numpy' needs numpy", r.stdout)

    def test_library_not_found_says_so(self):
        env = dict(os.environ, WCODEC_LIBRARY=os.path.join(self.tmp, "nope.so"))
        r = subprocess.run([sys.executable, "-c", "import wcodec"], env=env, capture_output=True, text=True,
                           cwd=os.path.join(ROOT, "python"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("libwcodec.so not found", r.stderr)


@unittest.skipIf(torch is None, "torch does not import")
class Torch(Fixture):
    def test_torch_cpu_every_dtype(self):
        lacking = sorted({dt for dt, _, _ in self.orig.values() if dt not in wcodec.torch.DTYPES})
        if lacking:  # torch 1.13 (Debian's) has no F8 types: a whole-file load says which dtype
            with self.assertRaisesRegex(TypeError, lacking[0]):
                wcodec.torch.load_file(self.wc)
            with wcodec.safe_open(self.wc, framework="pt") as f:
                got = {k: f.get_tensor(k) for k in f.keys() if self.orig[k][0] in wcodec.torch.DTYPES}
        else:
            got = wcodec.torch.load_file(self.wc)
            self.assertEqual(sorted(got), sorted(self.orig))
        for k, (dt, shape, data) in self.orig.items():
            if dt not in wcodec.torch.DTYPES:
                continue
            t = got[k]
            self.assertEqual(t.dtype, wcodec.torch.DTYPES[dt], k)
            self.assertEqual(list(t.shape), shape, k)
            self.assertEqual(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"", data, k)

    def test_torch_inconsistent_header_refused(self):
        c = wcodec.Container(self.wc)
        _, begin, size = c.tensor_range("t.bf16")
        with self.assertRaisesRegex(ValueError, "BF16"):
            wcodec.torch.tensor(c, "BF16", [10 ** 15], begin, size, torch.device("cpu"))
        c.close()

    def test_torch_load_dir_and_slices(self):
        second, _ = parse(os.path.join(self.src, "model-00002-of-00002.safetensors"))
        if all(dt in wcodec.torch.DTYPES for dt, _, _ in self.orig.values()):
            got = wcodec.torch.load_dir(self.out)
            self.assertEqual(sorted(got), sorted(list(self.orig) + list(second)))
        else:
            with self.assertRaisesRegex(TypeError, "F8"):
                wcodec.torch.load_dir(self.out)
        with wcodec.safe_open(self.wc, framework="pt") as f:
            full = f.get_tensor("t.bf16")
            self.assertTrue(torch.equal(f.get_slice("t.bf16")[10:20, 3:9], full[10:20, 3:9]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
