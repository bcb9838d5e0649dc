"""wcodec: load .wcodec containers (losslessly compressed safetensors) as safetensors does.

    import wcodec
    with wcodec.safe_open("model.wcodec", framework="pt", device="cuda") as f:
        w = f.get_tensor("lm_head.weight")          # decoded on the GPU into the tensor
        rows = f.get_slice("embed.weight")[:1024]   # decodes only the tiles of those rows
    state = wcodec.torch.load_file("model.wcodec", device="cuda:0")
    state = wcodec.torch.load_dir("llama.wc", device="cuda")   # every shard of a model folder
    arrays = wcodec.numpy.load_file("model.wcodec")

The bytes are those of the original .safetensors file, checked tile by tile (xxh3); a damaged
tile raises WcodecError naming it. On a CUDA device tiles are decoded by the GPU straight into
the tensors' memory; on the CPU by the C decoder's threads (all cores). torch is optional: the
numpy path works without it. Library lookup: see wcodec._lib."""
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


def _row_block(key, shape):
    """For an index into a tensor of `shape`: the rows [r0, r1) of its first dimension that the
    index touches, and the index rebased onto that block; None where the whole tensor is needed."""
    if not shape:
        return None
    key = key if isinstance(key, tuple) else (key,)
    if not key or any(k is Ellipsis or k is None for k in key[:1]):
        return None
    first, n = key[0], shape[0]
    if isinstance(first, int):
        i = first + n if first < 0 else first
        if not 0 <= i < n:
            raise IndexError(f"index {first} is out of bounds for dimension 0 with size {n}")
        return i, i + 1, (0,) + key[1:]
    if isinstance(first, slice):
        start, stop, step = first.indices(n)
        if step <= 0:
            return None
        if start >= stop:
            return 0, 0, (slice(0, 0),) + key[1:]
        last = start + (stop - 1 - start) // step * step
        return start, last + 1, (slice(0, last + 1 - start, step),) + key[1:]
    return None


class _Slice:
    """What get_slice returns: the shape and dtype, and indexing that decodes only the rows
    (first dimension) the index selects."""

    def __init__(self, f, name):
        self._f, self._name = f, name
        self._info, self._begin, self._size = f._c.tensor_range(name)

    def get_shape(self):
        return list(self._info["shape"])

    def get_dtype(self):
        return self._info["dtype"]

    def __getitem__(self, key):
        shape = self._info["shape"]
        block = _row_block(key, shape)
        if block is None:
            return self._f.get_tensor(self._name)[key]
        r0, r1, rebased = block
        row = self._size // shape[0] if shape[0] else 0
        part = self._f._fw.tensor(self._f._c, self._info["dtype"], [r1 - r0] + list(shape[1:]),
                                  self._begin + r0 * row, (r1 - r0) * row, self._f._device)
        return part[rebased]


class safe_open:
    """safe_open(path, framework="pt" | "numpy", device="cpu" | "cuda" | "cuda:N"): as
    safetensors.safe_open, over a .wcodec container. Use it as a context manager."""

    def __init__(self, path, framework="pt", device="cpu"):
        self._fw = _framework(framework)
        self._device = self._fw.check_device(device)
        self._c = Container(path)

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
        return self._fw.tensor(self._c, info["dtype"], info["shape"], begin, size, self._device)

    def get_slice(self, name):
        return _Slice(self, name)


def __getattr__(name):  # wcodec.torch, wcodec.numpy and wcodec.hf load on first use
    if name in ("torch", "numpy", "hf"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(name)
