"""wcodec.numpy: containers to numpy arrays (CPU). BF16 and the F8 types have no numpy dtype:
reading them raises TypeError (use framework="pt")."""
import os

import numpy as np

from ._file import Container, check_size

DTYPES = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16,
          "U32": np.uint32, "I32": np.int32, "U64": np.uint64, "I64": np.int64,
          "F16": np.float16, "F32": np.float32, "F64": np.float64}

NEGATIVE_STEPS = True  # numpy's basic indexing takes slices with a step < 0


def check_device(device):
    if device != "cpu":
        raise ValueError(f"device {device!r}: numpy arrays live on the CPU")
    return device


def tensor(c, dtype, shape, begin, size, device="cpu", runs=None):
    """The original bytes [begin, begin + size) as an array of `dtype` (safetensors' name); with
    `runs` ([(offset, length)] within those bytes), only those are decoded, the rest left unset."""
    if dtype not in DTYPES:
        raise TypeError(f"{c.path}: dtype {dtype} has no numpy equivalent; use framework='pt'")
    check_size(c.path, dtype, shape, np.dtype(DTYPES[dtype]).itemsize, size)
    a = np.empty(shape, dtype=DTYPES[dtype])
    for off, n in [(0, size)] if runs is None else runs:
        if n:
            c.read_into(begin + off, n, a.ctypes.data + off)
    return a


def load_file(path):
    """Every tensor of the container at `path`, as {name: numpy array}."""
    c = Container(path)
    try:
        c.advise(c.data_start, c.source_size - c.data_start)  # a URL: fetched ahead, in file order
        arrays = {k: tensor(c, v["dtype"], v["shape"], c.data_start + v["data_offsets"][0],
                            v["data_offsets"][1] - v["data_offsets"][0])
                  for k, v in sorted(c.header.items(), key=lambda kv: kv[1]["data_offsets"][0])}
        return dict(sorted(arrays.items()))
    finally:
        c.close()
