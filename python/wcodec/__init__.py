"""wcodec: load .wcodec containers (losslessly compressed safetensors) as safetensors does.

    import wcodec
    with wcodec.safe_open("model.wcodec", framework="pt", device="cuda") as f:
        w = f.get_tensor("lm_head.weight")          # decoded on the GPU into the tensor
        rows = f.get_slice("embed.weight")[:1024]   # decodes only the tiles of those rows
        cols = f.get_slice("embed.weight")[:, :64]  # any dimension: the tiles holding those elements
    state = wcodec.torch.load_file("model.wcodec", device="cuda:0")
    state = wcodec.torch.load_dir("llama.wc", device="cuda")   # every shard of a model folder
    arrays = wcodec.numpy.load_file("model.wcodec")

The bytes are those of the original .safetensors file, checked tile by tile (xxh3); a damaged
tile raises WcodecError naming it. On a CUDA device tiles are decoded by the GPU straight into
the tensors' memory; on the CPU by the C decoder's threads (all cores). torch is optional: the
numpy path works without it. Library lookup: see wcodec._lib."""
import numbers

from . import _lib
from ._file import Container
from ._lib import WcodecError

__version__ = "0.1.0"
__all__ = ["safe_open", "WcodecError", "Container", "__version__"]


def _framework(name):
    if name in ("pt", "torch", "pytorch"):
        try:
            from . import torch as fw
        except ModuleNotFoundError as e:
            if e.name != "torch":
                raise
            raise ImportError("framework='pt' needs torch; framework='numpy' needs only numpy") from None
    elif name in ("np", "numpy"):
        try:
            from . import numpy as fw
        except ModuleNotFoundError as e:
            if e.name != "numpy":
                raise
            raise ImportError("framework='numpy' needs numpy (pip install numpy, or Debian's "
                              "python3-numpy)") from None
    else:
        raise ValueError(f"framework {name!r}: expected 'pt' or 'numpy'")
    return fw


def _int(k):
    """k as an int where indexing treats it as one (Python and numpy integers, not bools)."""
    return int(k) if isinstance(k, numbers.Integral) and not isinstance(k, bool) else None


def _plan(key, shape, size, tile, negative_steps=True):
    """What decoding `key` (basic indexing: ints, slices, Ellipsis, None) of a tensor of `shape`
    takes: its `size` bytes are cut into tiles of `tile` bytes from its first byte (docs/FORMAT.md).
    Returns the rows [r0, r1) of the first dimension that hold the selection, the key rebased onto
    that block of rows (same meaning), and the runs of the block to decode: (offset, length), the
    tiles holding any selected element, merged so that no tile is in two runs. None for any other
    key (lists, arrays, bools, ...): the caller decodes the whole tensor. Bad keys raise as the
    framework would, in the same order, before anything is decoded: IndexError for an index out of
    bounds, ValueError for a step < 0 where the framework refuses one (negative_steps False: torch)."""
    key = key if isinstance(key, tuple) else (key,)
    if not shape or not shape[0]:
        return None
    for k in key:
        if not (k is None or k is Ellipsis or isinstance(k, slice) or _int(k) is not None):
            return None
    if sum(k is Ellipsis for k in key) > 1:
        return None
    used = sum(k is not None and k is not Ellipsis for k in key)
    if used > len(shape):
        raise IndexError(f"too many indices for tensor of dimension {len(shape)}")
    # Ellipsis, or nothing at the end, stands for full slices of the dimensions not named; it stays
    # in the rebased key (numpy gives a 0-d array, not a scalar, for a[..., i])
    rest = [slice(None)] * (len(shape) - used)
    implicit = Ellipsis not in key
    rebased, lo, hi, r0, r1, rows = [], [], [], 0, shape[0], range(shape[0])
    for k in key + (Ellipsis,) * implicit:
        if k is Ellipsis:
            hi += shape[len(lo):len(lo) + len(rest)]
            lo += [0] * len(rest)
        if k is None or k is Ellipsis:
            rebased.append(k)
            continue
        d, n = len(lo), shape[len(lo)]
        if isinstance(k, slice):
            if not negative_steps and k.step is not None and k.step < 0:
                raise ValueError("step must be greater than zero")
            picked = range(*k.indices(n))
        else:
            i = _int(k)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for dimension {d} with size {n}")
            picked = range(i % n, i % n + 1)
        a, b = (min(picked[0], picked[-1]), max(picked[0], picked[-1]) + 1) if picked else (0, 0)
        if d == 0:
            r0, r1, rows = a, b, range(a, b, abs(picked.step))
            if isinstance(k, slice):  # the same elements, counted from r0 (a step < 0 runs down to r0)
                k = slice(picked.start - a, picked.stop - a if picked.stop >= a else None, picked.step) \
                    if picked else slice(0, 0, picked.step)
            else:
                k = 0
        rebased.append(k)
        lo.append(a)
        hi.append(b)
    if implicit:
        rebased.pop()
    if any(a == b for a, b in zip(lo, hi)):
        return r0, r1, tuple(rebased), []
    # every selected row's bytes lie in one span [a, b) of the row: from its first selected
    # element to its last
    row = size // shape[0]
    item, a, b = row, 0, 0
    for n, l, h in zip(shape[1:], lo[1:], hi[1:]):
        item //= n
        a, b = a * n + l, b * n + h - 1
    a, b = a * item, (b + 1) * item
    if len(rows) == 1 or rows.step * row - (b - a) < tile:  # a gap shorter than a tile holds no whole tile
        runs = [[(r0 * row + a) // tile, (rows[-1] * row + b - 1) // tile]]
    else:  # as many rows as tiles at most
        runs = []
        for r in rows:
            t0, t1 = (r * row + a) // tile, (r * row + b - 1) // tile
            if runs and t0 <= runs[-1][1] + 1:
                runs[-1][1] = t1
            else:
                runs.append([t0, t1])
    base, top = r0 * row, r1 * row
    spans = [(max(t0 * tile, base), min((t1 + 1) * tile, top)) for t0, t1 in runs]
    return r0, r1, tuple(rebased), [(s - base, e - s) for s, e in spans]


class _Slice:
    """What get_slice returns: the shape and dtype, and indexing (as the framework's, on any
    dimension) that decodes only the tiles holding the selected elements."""

    def __init__(self, f, name):
        self._f, self._name = f, name
        self._info, self._begin, self._size = f._c.tensor_range(name)

    def get_shape(self):
        return list(self._info["shape"])

    def get_dtype(self):
        return self._info["dtype"]

    def __getitem__(self, key):
        shape, c = self._info["shape"], self._f._c
        plan = _plan(key, shape, self._size, c.tile_size, self._f._fw.NEGATIVE_STEPS)
        if plan is None:
            return self._f.get_tensor(self._name)[key]
        r0, r1, rebased, runs = plan
        row = self._size // shape[0]
        # the rows' block: the runs decoded into it (one read each), the rest of it never read
        block = self._f._fw.tensor(c, self._info["dtype"], [r1 - r0] + list(shape[1:]),
                                   self._begin + r0 * row, (r1 - r0) * row, self._f._device, runs)
        self._f.coded_bytes_read += sum(c.coded_bytes(self._begin + r0 * row + o, n) for o, n in runs)
        out = block[rebased]
        # a part of the block is copied out, so that the block is freed with the index's result
        n = out.nbytes if hasattr(out, "nbytes") else out.numel() * out.element_size()
        if n < (r1 - r0) * row:
            out = out.clone() if hasattr(out, "clone") else out.copy()
        return out


class safe_open:
    """safe_open(path, framework="pt" | "numpy", device="cpu" | "cuda" | "cuda:N"): as
    safetensors.safe_open, over a .wcodec container. Use it as a context manager."""

    def __init__(self, path, framework="pt", device="cpu"):
        self._fw = _framework(framework)
        self._device = self._fw.check_device(device)
        self._c = Container(path)
        self.coded_bytes_read = 0  # coded bytes of the tiles decoded so far: what was read of the file

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._c.close()

    def keys(self):
        return sorted(self._c.header)

    def metadata(self):
        return self._c.metadata

    def get_tensor(self, name):
        info, begin, size = self._c.tensor_range(name)
        t = self._fw.tensor(self._c, info["dtype"], info["shape"], begin, size, self._device)
        self.coded_bytes_read += self._c.coded_bytes(begin, size)
        return t

    def get_slice(self, name):
        return _Slice(self, name)


def __getattr__(name):  # wcodec.torch, wcodec.numpy, wcodec.hf and wcodec.tp load on first use
    if name in ("torch", "numpy", "hf", "tp"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(name)
