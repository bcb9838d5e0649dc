"""Torch tensors from containers: what wcodec.torch and attach (_attach.py) both use, so that
neither imports the other for it."""
import glob
import os

import torch

from . import _url
from ._file import check_size, read_into_gpu

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


def _fill(c, t, begin, size, device, runs=None):
    """Decodes bytes [begin, begin + size) into t; or only `runs` of them ([(offset, length)])."""
    runs = [(off, n) for off, n in ([(0, size)] if runs is None else runs) if n]
    if device.type == "cuda":  # one pipeline for all the runs
        read_into_gpu([(c, begin + off, n, t.data_ptr() + off) for off, n in runs], device.index)
    else:
        for off, n in runs:
            c.read_into(begin + off, n, t.data_ptr() + off)
    return t


def tensor(c, dtype, shape, begin, size, device, runs=None):
    """The original bytes [begin, begin + size) as a tensor of `dtype` (safetensors' name); with
    `runs` ([(offset, length)] within those bytes), only those are decoded, the rest left unset."""
    dt = _dtype(c, dtype)
    check_size(c.path, dtype, shape, _itemsize(dt), size)
    return _fill(c, torch.empty(list(shape), dtype=dt, device=device), begin, size, device, runs)


def container_paths(path):
    """[path] for a container, the folder's *.wcodec files (sorted) for a folder; a URL of a
    folder (ending in '/', or an s3:// prefix) by its listing."""
    if _url.is_url(path):
        if path.endswith(".wcodec"):
            return [path]
        files = [_url.join(path, p) for p, _ in _url.list_folder(path) if p.endswith(".wcodec") and "/" not in p]
        if not files:
            raise FileNotFoundError(f"{path}: no .wcodec files")
        return files
    if not os.path.isdir(path):
        return [os.fspath(path)]
    files = sorted(glob.glob(os.path.join(os.fspath(path), "*.wcodec")))
    if not files:
        raise FileNotFoundError(f"{path}: no .wcodec files")
    return files
