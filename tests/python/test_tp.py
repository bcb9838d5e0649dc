#!/usr/bin/env python3
"""test_tp.py - get_slice on any dimension (only the tiles holding the selection decoded) and the
tensor-parallel shards of wcodec.tp, against the original .safetensors parsed independently.

Two ranks run over torch.distributed's gloo backend on the CPU (no GPU needed): their shards must
be the parts transformers' split rule gives (torch.chunk's), gather back into the whole tensors,
read no more tiles than their parts hold, and a missing or damaged container must make every rank
raise the same error in bounded time. numpy is required; what needs torch is skipped (and says
so) where torch does not import. Environment: WCODEC_BIN (the wcodec tool), WCODEC_LIBRARY."""
import datetime
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_wcodec import WCODEC, parse, write_safetensors  # noqa: E402  (also puts python/ on the path)
import wcodec  # noqa: E402
import wcodec.tp  # noqa: E402

try:
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
except ImportError:
    torch = None
if torch is None:
    print("test_tp.py: torch does not import: the torch and two-rank (gloo) tests are skipped", file=sys.stderr)

TILE = 16384
WORLD = 2
PLAN = {"model.layers.*.self_attn.q_proj": "colwise", "model.layers.*.self_attn.o_proj": "rowwise",
        "model.layers.*.mlp.up_proj": "colwise", "model.layers.*.mlp.down_proj": "rowwise"}
Q, UP = "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight"


def _bf16(rng, n):
    return (rng.normal(0, 0.02, n).astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()


def _f32(rng, n):
    return rng.normal(0, 0.02, n).astype("<f4").tobytes()


def make_model(folder):
    """Two .safetensors shards with odd sizes (37 over 2 ranks is 19 + 18), biases, a tensor of
    ~19 tiles and a 3-D one of several, encoded into folder/wc; returns the source folder."""
    rng = np.random.default_rng(7)
    one = {Q: ("BF16", [37, 50], _bf16(rng, 37 * 50)),
           "model.layers.0.self_attn.q_proj.bias": ("BF16", [37], _bf16(rng, 37)),
           "model.layers.0.self_attn.o_proj.weight": ("F32", [50, 37], _f32(rng, 50 * 37)),
           "model.layers.0.self_attn.o_proj.bias": ("F32", [50], _f32(rng, 50)),
           "model.norm.weight": ("F32", [50], _f32(rng, 50)),
           "cube": ("F32", [7, 33, 41], _f32(rng, 7 * 33 * 41))}
    two = {UP: ("BF16", [301, 517], _bf16(rng, 301 * 517)),
           "model.layers.1.mlp.down_proj.weight": ("F32", [129, 301], _f32(rng, 129 * 301)),
           "model.layers.1.mlp.down_proj.bias": ("F32", [129], _f32(rng, 129))}
    src = os.path.join(folder, "src")
    os.makedirs(src)
    write_safetensors(os.path.join(src, "model-00001-of-00002.safetensors"), one)
    write_safetensors(os.path.join(src, "model-00002-of-00002.safetensors"), two)
    subprocess.run([WCODEC, "encode", "-q", "--tile-size", str(TILE), src, os.path.join(folder, "wc")], check=True)
    return src


def reference(src):
    """{name: torch tensor} from the original files, parsed here (torch.frombuffer, no wcodec)."""
    dt = {"BF16": torch.bfloat16, "F32": torch.float32}
    out = {}
    for n in sorted(os.listdir(src)):
        for k, (d, shape, data) in parse(os.path.join(src, n))[0].items():
            out[k] = torch.frombuffer(bytearray(data), dtype=dt[d]).reshape(shape)
    return out


def chunk_part(t, dim, rank, world):
    """Rank's part as torch.chunk cuts it (the rule transformers follows), empty past the chunks."""
    parts = torch.chunk(t, world, dim)
    n = t.shape[dim]
    return parts[rank] if rank < len(parts) else t[(slice(None),) * (dim % t.dim()) + (slice(n, n),)]


def expected_dim(name, ndim):
    """The dimension PLAN splits `name` on, as transformers does; None: whole."""
    if "q_proj" in name or "up_proj" in name:  # colwise: a weight's rows, a bias
        return -2 if ndim == 2 else -1
    if "o_proj" in name or "down_proj" in name:  # rowwise: a weight's columns; the bias whole
        return None if name.endswith(".bias") else -1
    return None


def corrupt_tile(path, out, name, row):
    """A copy of the container `path` at `out` with one byte flipped in the payload of the tile
    holding `row` of tensor `name`; returns that tile's [start, end) in the original file."""
    c = wcodec.Container(path)
    info, begin, size = c.tensor_range(name)
    i = wcodec._lib.wc_container_find_tile(c._c, begin + row * size // info["shape"][0])
    t = wcodec._lib.wc_container_tile(c._c, i).contents
    payload, coded, start, n = t.payload_offset, t.coded_size, t.src_offset, t.src_size
    c.close()
    with open(path, "rb") as f:
        b = bytearray(f.read())
    b[payload + coded // 2] ^= 0x40
    with open(out, "wb") as f:
        f.write(b)
    return start, start + n


class Model(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wcodec-tp-")
        cls.src = make_model(cls.tmp)
        cls.wc = os.path.join(cls.tmp, "wc")
        cls.one = os.path.join(cls.wc, "model-00001-of-00002.wcodec")
        cls.two = os.path.join(cls.wc, "model-00002-of-00002.wcodec")
        cls.orig = {}
        for n in sorted(os.listdir(cls.src)):
            cls.orig.update(parse(os.path.join(cls.src, n))[0])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)


def keys_for(shape, rng, count):
    """Every form of basic index on every dimension: ints (negative too), slices with any bounds
    and steps (negative ones: numpy takes them, torch refuses them), Ellipsis, None."""
    fixed = []
    for d, n in enumerate(shape):
        pre = (slice(None),) * d
        fixed += [pre + (0,), pre + (n - 1,), pre + (-1,), pre + (slice(1, n - 1),), pre + (slice(None, None, 3),),
                  pre + (slice(n // 2, None),), pre + (slice(-5, None, 2),), pre + (slice(None, None, -2),),
                  pre + (slice(3, 3),), (Ellipsis, n // 3) if d == len(shape) - 1 else pre + (n // 3, Ellipsis),
                  pre + (None, slice(2, 9)), pre + (np.int64(1), slice(np.int32(1), None))]
    out = []
    for _ in range(count):
        k = []
        for n in shape[:rng.randint(1, len(shape))]:
            r = rng.random()
            k.append(rng.randrange(-n, n) if r < 0.3 else None if r < 0.4 else
                     slice(rng.choice([None, 0, 1, n // 2, n - 1, n + 4, -1, -n - 2]),
                           rng.choice([None, 0, 2, n // 2, n, n + 9, -1, -3]), rng.choice([None, 1, 2, 5, -1, -3])))
        if rng.random() < 0.2:
            k.insert(rng.randrange(len(k) + 1), Ellipsis)
        out.append(tuple(k) if len(k) > 1 or rng.random() < 0.5 else k[0])
    return fixed + out


class Slices(Model):
    """get_slice(name)[key] is full[key], and decodes only the tiles holding the selection."""

    def check_same(self, s, full, key, torch_fw):
        try:
            want, want_err = full[key], None
        except (IndexError, ValueError) as e:
            want, want_err = None, e
        if want_err is not None:
            with self.assertRaises(type(want_err), msg=str(key)):
                s[key]
            return
        got = s[key]
        if torch_fw:
            self.assertEqual((got.dtype, got.shape), (want.dtype, want.shape), key)
            self.assertTrue(torch.equal(got, want), key)
        else:
            self.assertIs(type(got), type(want), key)  # numpy: a scalar where numpy gives one
            self.assertEqual((got.dtype, np.shape(got)), (want.dtype, np.shape(want)), key)
            np.testing.assert_array_equal(got, want, err_msg=str(key))

    def test_numpy_every_dimension(self):
        rng = random.Random(1)
        with wcodec.safe_open(self.one, framework="numpy") as f:
            for name in ("cube", "model.layers.0.self_attn.o_proj.weight", "model.norm.weight"):
                full, s = f.get_tensor(name), f.get_slice(name)
                for key in keys_for(list(full.shape), rng, 400):
                    self.check_same(s, full, key, False)
                self.check_same(s, full, [0, 2], False)  # a list: the whole tensor decoded, then indexed
                with self.assertRaises(IndexError):
                    s[(0,) * (full.ndim + 1)]

    @unittest.skipIf(torch is None, "torch does not import")
    def test_torch_every_dimension(self):
        rng = random.Random(2)
        for path, names in ((self.one, ("cube", Q, "model.layers.0.self_attn.q_proj.bias")), (self.two, (UP,))):
            with wcodec.safe_open(path, framework="pt") as f:
                for name in names:
                    full, s = f.get_tensor(name), f.get_slice(name)
                    for key in keys_for(list(full.shape), rng, 300):
                        self.check_same(s, full, key, True)
                    self.check_same(s, full, (Ellipsis, None, 1), True)
                    self.check_same(s, full, torch.tensor([0, 2]), True)

    def needed_tiles(self, c, name, key):
        """The tiles (counted from the tensor's first) holding the elements `key` selects, found
        element by element."""
        info, begin, size = c.tensor_range(name)
        n = int(np.prod(info["shape"]))
        # the rule _plan relies on (docs/FORMAT.md): a tensor's tiles start every TILE bytes
        self.assertEqual({c.tile_start(begin + off) for off in range(0, size, 997)}, set(range(begin, begin + size, TILE)))
        return {int(e) * (size // n) // TILE for e in np.ravel(np.arange(n).reshape(info["shape"])[key])}

    def test_decodes_only_the_tiles_of_the_selection(self):
        for path, name in ((self.two, UP), (self.one, "cube"), (self.two, "model.layers.1.mlp.down_proj.weight")):
            if torch is None and name == UP:  # BF16: torch only
                continue
            c = wcodec.Container(path)
            info, begin, size = c.tensor_range(name)
            shape = info["shape"]
            keys = [(slice(None), slice(0, 3)), (slice(0, 40), slice(100, 120)), (slice(None, None, 50), 7),
                    (slice(shape[0] // 2, None), slice(-3, None)), (5,), (slice(None), -1), (Ellipsis, 2),
                    (slice(None, None, -7), slice(1, 4)), (slice(2, 2), 0)]
            for key in keys:
                tiles = self.needed_tiles(c, name, key)
                reads = []
                with wcodec.safe_open(path, framework="numpy" if info["dtype"] == "F32" else "pt") as f:
                    real = f._c.read_into
                    f._c.read_into = lambda off, n, addr, threads=None: (reads.append((off, n)), real(off, n, addr))
                    try:
                        f.get_slice(name)[key]
                    except ValueError:  # torch refuses a step < 0, and nothing is read for it
                        self.assertLess(key[0].step, 0, key)
                        self.assertEqual((reads, f.coded_bytes_read), ([], 0), key)
                        continue
                    read = f.coded_bytes_read
                spans = [set(range((o - begin) // TILE, (o - begin + n - 1) // TILE + 1)) for o, n in reads]
                self.assertEqual(sum(len(s) for s in spans), len(set().union(*spans)), f"{key}: a tile read twice")
                self.assertEqual(set().union(*spans), tiles, f"{name}{key}: tiles read")
                self.assertEqual(read, sum(c.coded_bytes(begin + t * TILE, 1) for t in tiles), key)
            c.close()

    @unittest.skipIf(torch is None, "torch does not import")
    def test_column_slice_of_some_rows_reads_only_those_rows(self):
        c = wcodec.Container(self.two)
        info, begin, size = c.tensor_range(UP)
        row = size // info["shape"][0]
        self.assertGreater(size // TILE, 10)
        ref = reference(self.src)[UP]
        with wcodec.safe_open(self.two, framework="pt") as f:
            for k in (1, 40, 150, 301):
                before = f.coded_bytes_read
                part = f.get_slice(UP)[:k, 10:20]
                self.assertTrue(torch.equal(part, ref[:k, 10:20]))
                # the tiles from the first row's to the one holding row k-1's column 19
                self.assertEqual(f.coded_bytes_read - before, c.coded_bytes(begin, (k - 1) * row + 20 * 2))
                self.assertTrue(part.is_contiguous())  # a copy: the rows' block is not kept alive
        c.close()

    def test_damaged_tile_fails_only_the_slices_that_touch_it(self):
        bad = os.path.join(self.tmp, "bad-slices.wcodec")
        lo, hi = corrupt_tile(self.two, bad, "model.layers.1.mlp.down_proj.weight", 64)
        c = wcodec.Container(bad)
        info, begin, size = c.tensor_range("model.layers.1.mlp.down_proj.weight")
        row = size // info["shape"][0]
        first, last = (lo - begin) // row, (hi - 1 - begin) // row
        ref = np.frombuffer(self.orig["model.layers.1.mlp.down_proj.weight"][2], dtype="<f4").reshape(info["shape"])
        with wcodec.safe_open(bad, framework="numpy") as f:
            s = f.get_slice("model.layers.1.mlp.down_proj.weight")
            np.testing.assert_array_equal(s[:first, 3:9], ref[:first, 3:9])
            np.testing.assert_array_equal(s[last + 1:, ::4], ref[last + 1:, ::4])
            for key in ((slice(None), 0), (first, slice(None)), (slice(first, last + 1), -1)):
                with self.assertRaisesRegex(wcodec.WcodecError, "tile", msg=str(key)):
                    s[key]
        c.close()


class Rule(unittest.TestCase):
    def test_split_is_torch_chunk(self):
        for n in (0, 1, 2, 5, 16, 37, 50, 301):
            for world in (1, 2, 3, 4, 7, 14, 64):
                t = list(range(n))
                chunks = [c.tolist() for c in torch.chunk(torch.arange(n), world)] if torch and n else []
                size = -(-n // world)
                want = [t[r * size:(r + 1) * size] for r in range(world)]
                if torch is not None:
                    self.assertEqual(want, chunks + [[]] * (world - len(chunks)), (n, world))
                got = [t[slice(*wcodec.tp.split(n, r, world))] for r in range(world)]
                self.assertEqual(got, want, (n, world))
                self.assertEqual(sum(got, []), t)
        # transformers' get_tensor_shard docstring: 16 rows over 4, 14 and 3 ranks
        self.assertEqual([wcodec.tp.split(16, r, 14) for r in (0, 7, 8, 13)], [(0, 2), (14, 16), (16, 16), (16, 16)])
        self.assertEqual([wcodec.tp.split(16, r, 3) for r in range(3)], [(0, 6), (6, 12), (12, 16)])
        with self.assertRaises(ValueError):
            wcodec.tp.split(5, 2, 2)

    def test_plan_styles(self):
        tp = wcodec.tp
        self.assertEqual(tp.style_of("model.layers.3.self_attn.q_proj.weight", PLAN), "colwise")
        self.assertEqual(tp.style_of("model.layers.3.self_attn.q_proj.bias", PLAN), "colwise")
        self.assertEqual(tp.style_of("model.layers.3.self_attn.o_proj.weight", PLAN), "rowwise")
        self.assertIsNone(tp.style_of("model.norm.weight", PLAN))
        self.assertIsNone(tp.style_of("model.layers.3.self_attn.q_proj_extra.weight", PLAN))
        self.assertEqual(tp.style_of("lm_head.weight", {"lm_head": "colwise_rep"}), "colwise")
        with self.assertRaisesRegex(ValueError, "sequence_parallel"):
            tp.style_of("model.norm.weight", {"model.norm": "sequence_parallel"})
        self.assertEqual([tp.shard_dim("a.weight", 2, "colwise"), tp.shard_dim("a.bias", 1, "colwise"),
                          tp.shard_dim("a.weight", 2, "rowwise"), tp.shard_dim("a.bias", 1, "rowwise"),
                          tp.shard_dim("a.weight", 2, None)], [-2, -1, -1, None, None])


@unittest.skipIf(torch is None, "torch does not import")
class Shards(Model):
    """shard() and load_shards() in one process, for each rank in turn."""

    def test_shard_every_rank_and_dim(self):
        ref = reference(self.src)
        for path in (self.one, self.two):
            with wcodec.safe_open(path, framework="pt") as f:
                for name in f.keys():
                    for dim in range(-ref[name].dim(), ref[name].dim()):
                        for world in (1, 2, 3, 5):
                            parts = [wcodec.tp.shard(f, name, dim, r, world) for r in range(world)]
                            for r, p in enumerate(parts):
                                self.assertTrue(torch.equal(p, chunk_part(ref[name], dim, r, world)), (name, dim, r))
                            self.assertTrue(torch.equal(torch.cat(parts, dim), ref[name]), (name, dim, world))

    def test_load_shards_without_a_process_group(self):
        ref = reference(self.src)
        for rank in range(WORLD):
            state, coded = wcodec.tp.load_shards(self.wc, PLAN, rank, WORLD)
            self.assertEqual(sorted(state), sorted(ref))
            for name, t in state.items():
                d = expected_dim(name, t.dim())
                self.assertTrue(torch.equal(t, ref[name] if d is None else chunk_part(ref[name], d, rank, WORLD)), name)
            self.assertEqual(coded, expected_coded(self.wc, rank))
        with self.assertRaisesRegex(ValueError, "rank and world"):
            wcodec.tp.load_shards(self.wc, PLAN)
        with self.assertRaisesRegex(ValueError, "needs torch.distributed"):  # no group to exchange over
            wcodec.tp.load_shards(self.wc, PLAN, 0, WORLD, rowwise="exchange")
        with self.assertRaisesRegex(ValueError, "expected 'slice' or 'exchange'"):
            wcodec.tp.load_shards(self.wc, PLAN, 0, WORLD, rowwise="gather")


def expected_coded(folder, rank, exchange=False):
    """The coded bytes of the tiles that hold rank's parts (colwise: its rows; rowwise: every tile,
    each row holds a part, or with exchange its run of rows; the rest: every tile), by the
    containers' tables."""
    total = 0
    for n in sorted(n for n in os.listdir(folder) if n.endswith(".wcodec")):
        c = wcodec.Container(os.path.join(folder, n))
        for name, info in c.header.items():
            _, begin, size = c.tensor_range(name)
            ndim = len(info["shape"])
            d = expected_dim(name, ndim)
            if d == -ndim or (exchange and d == -1 and ndim >= 2):  # a run of rows
                rows = info["shape"][0]
                lo, hi = wcodec.tp.split(rows, rank, WORLD)
                total += c.coded_bytes(begin + lo * size // rows, (hi - lo) * size // rows)
            else:
                total += c.coded_bytes(begin, size)
        c.close()
    return total


# ---- two ranks over gloo ----

TIME_BOUND = 60  # seconds for a failing load on every rank: a hang would be the process group's timeout


def _worker(rank, tmp, src, cases):
    dist.init_process_group("gloo", init_method="file://" + os.path.join(tmp, "pg"), rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=30))
    ref = reference(src)
    said = {}
    for case, path in cases:
        t0 = time.monotonic()
        try:
            state, coded = wcodec.tp.load_shards(path, PLAN, rowwise="exchange" if case.startswith("exchange") else "slice")
        except Exception as e:  # noqa: BLE001 - what every rank raised is compared by the parent
            said[case] = {"error": f"{type(e).__name__}: {e}", "seconds": time.monotonic() - t0}
            dist.barrier()  # the ranks are still in step after the error
            continue
        for name, t in state.items():  # this rank's parts are transformers' parts
            d = expected_dim(name, t.dim())
            assert torch.equal(t, ref[name] if d is None else chunk_part(ref[name], d, rank, WORLD)), (case, name)
        every = [None] * WORLD
        dist.all_gather_object(every, (state, coded))
        if rank == 0:  # the parts put back together are the whole tensors
            for name in every[0][0]:
                d = expected_dim(name, ref[name].dim())
                whole = every[0][0][name] if d is None else torch.cat([s[name] for s, _ in every], d)
                assert torch.equal(whole, ref[name]), (case, name)
        said[case] = {"coded": coded, "shapes": {k: list(v.shape) for k, v in state.items()}}
    with open(os.path.join(tmp, f"rank{rank}.json"), "w") as f:
        json.dump(said, f)
    dist.destroy_process_group()


@unittest.skipIf(torch is None, "torch does not import")
class TwoRanks(Model):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bad = os.path.join(cls.tmp, "bad")
        os.makedirs(cls.bad)
        shutil.copy(cls.one, cls.bad)
        # a tile of the rows rank 0 holds (colwise): rank 1 alone would not see it
        cls.bad_tile = corrupt_tile(cls.two, os.path.join(cls.bad, os.path.basename(cls.two)), UP, 3)
        run = os.path.join(cls.tmp, "run")
        os.makedirs(run)
        empty = os.path.join(cls.tmp, "empty")
        os.makedirs(empty)
        cases = [("folder", cls.wc), ("file", cls.two), ("missing", os.path.join(cls.tmp, "missing.wcodec")),
                 ("empty", empty), ("damaged", cls.bad), ("exchange", cls.wc), ("exchange damaged", cls.bad)]
        t0 = time.monotonic()
        ctx = mp.spawn(_worker, args=(run, cls.src, cases), nprocs=WORLD, join=False)
        while not ctx.join(timeout=1):
            if time.monotonic() - t0 > TIME_BOUND * len(cases):
                for p in ctx.processes:
                    p.kill()
                raise AssertionError("the ranks did not finish: a hang")
        cls.said = []
        for r in range(WORLD):
            with open(os.path.join(run, f"rank{r}.json")) as f:
                cls.said.append(json.load(f))

    def test_shards_match_transformers_rule(self):
        for case, folder in (("folder", self.wc), ("file", None)):
            for r in range(WORLD):
                shapes = self.said[r][case]["shapes"]
                if case == "folder":
                    self.assertEqual(shapes[Q], [19, 50] if r == 0 else [18, 50])  # 37 rows: 19 + 18
                    self.assertEqual(shapes["model.layers.0.self_attn.o_proj.weight"], [50, 19 if r == 0 else 18])
                    self.assertEqual(shapes["model.layers.0.self_attn.o_proj.bias"], [50])  # rowwise: whole
                    self.assertEqual(shapes["model.layers.0.self_attn.q_proj.bias"], [19 if r == 0 else 18])
                    self.assertEqual(self.said[r][case]["coded"], expected_coded(folder, r))
                self.assertEqual(shapes[UP], [151, 517] if r == 0 else [150, 517])

    def test_exchange_reads_only_each_ranks_rows(self):
        """rowwise="exchange": the same parts (checked in the worker against transformers' rule),
        each rank decoding only its run of rows of the rowwise weights too."""
        for r in range(WORLD):
            self.assertEqual(self.said[r]["exchange"]["shapes"], self.said[r]["folder"]["shapes"])
            self.assertEqual(self.said[r]["exchange"]["coded"], expected_coded(self.wc, r, exchange=True))
            self.assertLess(self.said[r]["exchange"]["coded"], self.said[r]["folder"]["coded"])

    def test_each_rank_reads_its_share_of_a_colwise_tensor(self):
        c = wcodec.Container(self.two)
        _, begin, size = c.tensor_range(UP)
        whole = c.coded_bytes(begin, size)
        rowwise = sum(c.coded_bytes(*c.tensor_range(n)[1:]) for n in c.header if n != UP)
        c.close()
        for r in range(WORLD):
            colwise = self.said[r]["file"]["coded"] - rowwise  # the rowwise and whole tensors: every tile
            self.assertLessEqual(colwise, 1.1 * whole / WORLD, r)

    def test_every_rank_raises_the_same_error(self):
        for case, text in (("missing", "missing.wcodec"), ("empty", "no .wcodec files"), ("damaged", "tile"),
                           ("exchange damaged", "tile")):
            errors = [self.said[r][case].get("error") for r in range(WORLD)]
            self.assertIsNotNone(errors[0], case)
            self.assertEqual(errors, [errors[0]] * WORLD, case)
            self.assertIn(text, errors[0])
            self.assertTrue(errors[0].startswith("WcodecError: rank 0 of 2: "), errors[0])
            for r in range(WORLD):
                self.assertLess(self.said[r][case]["seconds"], TIME_BOUND, case)


if __name__ == "__main__":
    unittest.main(verbosity=2)
