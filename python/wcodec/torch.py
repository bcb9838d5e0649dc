"""wcodec.torch: containers to torch tensors, on the CPU (the C decoder's threads) or on a CUDA
device (the GPU decoder, straight into the tensors' memory); attach(): a module whose weights
stay compressed and are decoded block by block as it runs."""
import concurrent.futures
import os

import torch

from . import _url
from ._file import Container, check_size, read_into_gpu
from ._tensors import DTYPES, _dtype, _fill, _itemsize, check_device, container_paths, tensor  # noqa: F401
from ._attach import attach, Attached  # noqa: F401

NEGATIVE_STEPS = False  # torch's indexing refuses a slice with a step < 0 (get_slice refuses it before decoding)

def _plan(c):
    """The tensors of c by offset, every entry checked against the file before anything is
    allocated; and the span [lo, hi) of the data area they cover."""
    items = sorted(c.header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    for k, v in items:
        b, e = v["data_offsets"]
        check_size(c.path, v["dtype"], v["shape"], _itemsize(_dtype(c, v["dtype"])), e - b)
        if not 0 <= b <= e <= c.source_size - c.data_start:
            raise ValueError(f"{c.path}: {k}: data_offsets {v['data_offsets']} are outside the file")
    lo = items[0][1]["data_offsets"][0] if items else 0
    return items, lo, max((v["data_offsets"][1] for _, v in items), default=lo)


def _views(c, items, lo, block):
    """The tensors as views of `block` (their span, decoded) where their offsets allow, copies where
    they are not aligned to their dtype."""
    out = {}
    for k, v in items:
        b, e = v["data_offsets"]
        dt = _dtype(c, v["dtype"])
        raw = block[b - lo:e - lo]
        if (b - lo) % _itemsize(dt):
            raw = raw.clone()
        out[k] = raw.view(dt).reshape(v["shape"])
    return out


def _load_cuda(containers, device):
    """Every tensor of every container on the CUDA device: each file's data area decoded as one
    span, all files in one pipeline (files read, uploaded and decoded overlapped)."""
    plans = [_plan(c) for c in containers]
    blocks = [torch.empty(hi - lo, dtype=torch.uint8, device=device) for _, lo, hi in plans]
    read_into_gpu([(c, c.data_start + lo, hi - lo, blk.data_ptr())
                   for c, (_, lo, hi), blk in zip(containers, plans, blocks)], device.index)
    return [_views(c, items, lo, blk) for c, (items, lo, _), blk in zip(containers, plans, blocks)]


_AHEAD = 32 << 20  # what a URL's prefetchers hold ahead of the reader (net/object_source.c)


def _load(c, device, then=None):
    """Every tensor of c, as views of its data area decoded in one block (as on a GPU); on the CPU,
    once what is left of c is within a URL's prefetchers' reach, `then` (a folder's next shard)
    is advised, so that its tiles are on their way."""
    if device.type == "cuda":
        return _load_cuda([c], device)[0]
    items, lo, hi = _plan(c)
    block = torch.empty(hi - lo, dtype=torch.uint8)
    c.advise(c.data_start + lo, hi - lo)
    # two reads: all but the last _AHEAD bytes (cut where a tile starts: none decoded twice), then
    # the rest, with the next shard advised between them
    cut = hi - lo
    if then is not None and hi - lo > _AHEAD:
        cut = max(c.tile_start(c.data_start + hi - _AHEAD) - c.data_start - lo, 0)
    if cut:
        c.read_into(c.data_start + lo, cut, block.data_ptr())
    if then is not None:
        then.advise(then.data_start, then.source_size - then.data_start)
    if hi - lo > cut:
        c.read_into(c.data_start + lo + cut, hi - lo - cut, block.data_ptr() + cut)
    return _views(c, items, lo, block)


def load_file(path, device="cpu"):
    """Every tensor of the container at `path`, as {name: tensor} on `device`: views of one block
    holding the file's data area (a tensor whose offset does not suit its dtype is a copy), so
    the block is freed when the last of them is; clone() one to keep it alone."""
    d = check_device(device)
    c = Container(path)
    try:
        return _load(c, d)
    finally:
        c.close()


def _open_all(files):
    """Every container of a folder, opened in order; a URL's at once, from a thread each (each open
    is requests that wait on the network: its pin and its tables). On an error the first failing
    file's is raised and the ones opened are closed again."""
    workers = min(len(files), 8) if files and _url.is_url(files[0]) else 1
    with concurrent.futures.ThreadPoolExecutor(max(workers, 1)) as pool:
        futures = [pool.submit(Container, f) for f in files]
    errors = [fu.exception() for fu in futures if fu.exception() is not None]
    if errors:
        for fu in futures:
            if fu.exception() is None:
                fu.result().close()
        raise errors[0]
    return [fu.result() for fu in futures]


def load_dir(path, device="cpu"):
    """Every tensor of every .wcodec container in the folder `path` (a sharded model; or its URL:
    https://host/model/, s3://bucket/model), as one {name: tensor}; a name found in two shards is
    an error. On a CUDA device the shards go
    through one pipeline, so that one file's reads overlap another's upload and decode."""
    if not _url.is_url(path) and not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: not a folder of .wcodec files")
    d = check_device(device)
    files = container_paths(path)
    containers = _open_all(files)
    try:
        if d.type == "cuda":
            parts = _load_cuda(containers, d)
        else:
            parts = [_load(c, d, containers[i + 1] if i + 1 < len(containers) else None)
                     for i, c in enumerate(containers)]
    finally:
        for c in containers:
            c.close()
    out = {}
    for f, part in zip(files, parts):
        for k, t in part.items():
            if k in out:
                raise ValueError(f"{f}: tensor {k!r} is in another shard too")
            out[k] = t
    return out


