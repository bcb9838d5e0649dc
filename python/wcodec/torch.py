"""wcodec.torch: containers to torch tensors, on the CPU (the C decoder's threads) or on a CUDA
device (the GPU decoder, straight into the tensors' memory); attach(): a module whose weights
stay compressed and are decoded block by block as it runs."""
import glob
import os

import torch

from ._file import Container, check_size

DTYPES = {k: getattr(torch, v) for k, v in {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16",
    "U32": "uint32", "I32": "int32", "U64": "uint64", "I64": "int64", "F16": "float16",
    "BF16": "bfloat16", "F32": "float32", "F64": "float64", "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2"}.items() if hasattr(torch, v)}


def check_device(device):
    d = torch.device(device)
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r}: torch sees no CUDA device")
        return torch.device("cuda", d.index if d.index is not None else torch.cuda.current_device())
    if d.type != "cpu":
        raise ValueError(f"device {device!r}: expected 'cpu' or 'cuda[:N]'")
    return d


def _dtype(c, dtype):
    if dtype not in DTYPES:
        raise TypeError(f"{c.path}: dtype {dtype} has no torch equivalent in torch {torch.__version__}")
    return DTYPES[dtype]


def _itemsize(dt):
    return torch.empty((), dtype=dt).element_size()  # dtype.itemsize is new in torch 2.1


def _fill(c, t, begin, size, device):
    if not size:
        return t
    if device.type == "cuda":
        c.read_into_gpu(begin, size, t.data_ptr(), device.index)
    else:
        c.read_into(begin, size, t.data_ptr())
    return t


def tensor(c, dtype, shape, begin, size, device):
    """The original bytes [begin, begin + size) as a tensor of `dtype` (safetensors' name)."""
    dt = _dtype(c, dtype)
    check_size(c.path, dtype, shape, _itemsize(dt), size)
    return _fill(c, torch.empty(list(shape), dtype=dt, device=device), begin, size, device)


def _load(c, device):
    items = sorted(c.header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    if device.type != "cuda" or not items:
        return {k: tensor(c, v["dtype"], v["shape"], c.data_start + v["data_offsets"][0],
                          v["data_offsets"][1] - v["data_offsets"][0], device) for k, v in items}
    # On the GPU the whole data area goes as one decode (large batches), and the tensors are
    # views of it where their offsets allow, copies where they are not aligned to their dtype.
    for k, v in items:  # every entry consistent, and inside the file, before anything is allocated
        b, e = v["data_offsets"]
        check_size(c.path, v["dtype"], v["shape"], _itemsize(_dtype(c, v["dtype"])), e - b)
        if not 0 <= b <= e <= c.source_size - c.data_start:
            raise ValueError(f"{c.path}: {k}: data_offsets {v['data_offsets']} are outside the file")
    lo, hi = items[0][1]["data_offsets"][0], max(v["data_offsets"][1] for _, v in items)
    block = _fill(c, torch.empty(hi - lo, dtype=torch.uint8, device=device), c.data_start + lo, hi - lo, device)
    out = {}
    for k, v in items:
        b, e = v["data_offsets"]
        dt = _dtype(c, v["dtype"])
        raw = block[b - lo:e - lo]
        if (b - lo) % _itemsize(dt):
            raw = raw.clone()
        out[k] = raw.view(dt).reshape(v["shape"])
    return out


def load_file(path, device="cpu"):
    """Every tensor of the container at `path`, as {name: tensor} on `device`."""
    d = check_device(device)
    c = Container(path)
    try:
        return _load(c, d)
    finally:
        c.close()


def container_paths(path):
    """[path] for a container, the folder's *.wcodec files (sorted) for a folder."""
    if not os.path.isdir(path):
        return [os.fspath(path)]
    files = sorted(glob.glob(os.path.join(os.fspath(path), "*.wcodec")))
    if not files:
        raise FileNotFoundError(f"{path}: no .wcodec files")
    return files


def load_dir(path, device="cpu"):
    """Every tensor of every .wcodec container in the folder `path` (a sharded model), as one
    {name: tensor}; a name found in two shards is an error."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: not a folder of .wcodec files")
    out = {}
    for f in container_paths(path):
        for k, t in load_file(f, device).items():
            if k in out:
                raise ValueError(f"{f}: tensor {k!r} is in another shard too")
            out[k] = t
    return out


from ._attach import attach, Attached  # noqa: E402  (it uses the functions above)
