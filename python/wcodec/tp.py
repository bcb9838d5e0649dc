"""wcodec.tp: tensor-parallel shards read straight from containers, each rank decoding only the
tiles of its own part where the layout allows it (docs/TP.md).

    import wcodec.tp
    plan = {"model.layers.*.self_attn.q_proj": "colwise", "model.layers.*.self_attn.o_proj": "rowwise"}
    state, coded = wcodec.tp.load_shards("llama.wc", plan, rank, world)
    with wcodec.safe_open("model.wcodec") as f:
        w = wcodec.tp.shard(f, "lm_head.weight", 0, rank, world)

The split rule is transformers' (src/transformers/integrations/tensor_parallel.py,
get_tensor_shard), which follows torch.chunk and DTensor's Shard placement so that a model
sharded here matches one sharded by transformers' tp_plan: a dimension of n is cut into parts of
ceil(n / world); rank r gets [r * part, min((r + 1) * part, n)), so the last ranks get less, and
nothing (a zero-length dimension) where r * part >= n. Example: 37 over 2 ranks is 19 + 18; 16
over 14 ranks is 2 for ranks 0-7 and 0 for ranks 8-13. (Older transformers cut n // world and
dropped the remainder; this rule keeps every element. transformers returns an int64 tensor for an
empty part; here it keeps the tensor's dtype.)

Which dimension, as transformers' ColwiseParallel and RowwiseParallel partition nn.Linear: colwise
splits a weight on dim -2 (an nn.Linear weight [out, in]: its rows, dim 0) and a bias (or any 1-D
weight) on dim -1; rowwise splits a weight on dim -1 (its columns, dim 1) and keeps the bias
whole (it is added once, after the all-reduce). A colwise shard is a run of rows: only its rows'
tiles are decoded. A rowwise shard takes a part of every row: every tile of the tensor is decoded
(docs/TP.md)."""
import fnmatch

from . import WcodecError, safe_open

# transformers' style names whose weight partition is that of colwise or rowwise (the *_rep and
# local_* variants differ in what happens to the activations, not in the weights)
STYLES = {"colwise": "colwise", "colwise_rep": "colwise", "local_colwise": "colwise",
          "rowwise": "rowwise", "rowwise_rep": "rowwise", "local_rowwise": "rowwise"}


def split(n, rank, world):
    """The part [start, stop) of a dimension of n that rank `rank` of `world` holds."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} of world {world}: expected 0 <= rank < world")
    part = -(-n // world)
    start = min(rank * part, n)
    return start, min(start + part, n)


def shard(f, name, dim, rank, world):
    """Rank `rank`'s part of tensor `name` of the open container `f` (a wcodec.safe_open), split
    on `dim` into `world` parts by transformers' rule (see the module's docstring)."""
    s = f.get_slice(name)
    shape = s.get_shape()
    if not -len(shape) <= dim < len(shape):
        raise ValueError(f"{name}: dim {dim} is out of range for a tensor of shape {shape}")
    dim %= len(shape)
    start, stop = split(shape[dim], rank, world)
    return s[(slice(None),) * dim + (slice(start, stop),)]


def style_of(name, plan):
    """The style (colwise or rowwise) `plan` gives the parameter `name`, or None: a pattern
    (fnmatch) matches the parameter's name or its module's (the name less its last part), as in
    transformers, where "model.layers.*.mlp.up_proj" covers that module's weight and bias."""
    module = name.rsplit(".", 1)[0] if "." in name else None
    for target in (name, module):
        for pattern, style in plan.items():
            if target is not None and fnmatch.fnmatchcase(target, pattern):
                if style not in STYLES:
                    raise ValueError(f"{pattern}: style {style!r}: expected one of {sorted(STYLES)}")
                return STYLES[style]
    return None


def shard_dim(name, ndim, style):
    """The dimension transformers splits a parameter on under `style`; None where it stays whole
    (a rowwise bias, or no style)."""
    bias = name.rsplit(".", 1)[-1] == "bias"
    if style == "colwise":
        return -1 if bias or ndim == 1 else -2
    if style == "rowwise" and not bias:
        return -1
    return None


def _load(path, plan, rank, world, device, exchange):
    """(tensors, coded bytes, {name: full shape} of the rowwise weights left to _exchange: for
    those, `exchange` has this rank decode its run of rows, as for a colwise shard)."""
    from ._tensors import container_paths  # torch only here, so that shard() works with numpy too
    out, coded, pending = {}, 0, {}
    for p in container_paths(path):
        with safe_open(p, framework="pt", device=device) as f:
            for name in f.keys():
                if name in out:
                    raise ValueError(f"{p}: tensor {name!r} is in another shard too")
                shape = f.get_slice(name).get_shape()
                dim = shard_dim(name, len(shape), style_of(name, plan))
                if dim is None:
                    out[name] = f.get_tensor(name)
                elif exchange and len(shape) >= 2 and dim % len(shape) == len(shape) - 1:
                    out[name], pending[name] = shard(f, name, 0, rank, world), shape
                else:
                    out[name] = shard(f, name, dim, rank, world)
            coded += f.coded_bytes_read
    return out, coded, pending


def _exchange(rows, shape, rank, world, group):
    """A rowwise (last-dimension) part of a tensor of `shape` from every rank's run of its rows:
    the runs gathered (as bytes, padded to ceil(rows / world), so that any dtype and an uneven
    split travel through any backend), stacked, and this rank's columns copied out."""
    import torch
    import torch.distributed as dist
    part = -(-shape[0] // world)
    pad = torch.zeros([part] + list(shape[1:]), dtype=rows.dtype, device=rows.device)
    pad[:rows.shape[0]] = rows
    flat = pad.reshape(-1).view(torch.uint8)
    every = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(every, flat, group=group)
    whole = torch.cat([e.view(rows.dtype).reshape(pad.shape) for e in every])[:shape[0]]
    lo, hi = split(shape[-1], rank, world)
    return whole[..., lo:hi].clone()


def load_shards(path, plan, rank=None, world=None, device="cpu", group=None, rowwise="slice"):
    """Rank `rank`'s tensors of a container or a folder of containers (`path`), as torch tensors
    on `device`: the parameters `plan` names ({pattern: "colwise" | "rowwise"}, as transformers'
    tp_plan) split as transformers splits them, every other tensor whole. Returns
    ({name: tensor}, coded_bytes): the coded bytes of the tiles this rank decoded (what it read of
    the containers).

    rowwise: how a rowwise weight (its columns split, so every tile holds a part of every rank's)
    is had. "slice": each rank decodes the whole tensor and keeps its columns (no collective).
    "exchange": each rank decodes only its run of rows, as for a colwise shard, and the ranks
    gather the runs over `group` (one all_gather a tensor) and keep their columns: each reads and
    decodes about 1/world of the tensor, and the interconnect carries what the decode saved
    (docs/TP.md). It needs torch.distributed initialized, with `rank` and `world` its own.

    rank and world default to torch.distributed's (of `group`). Where torch.distributed is
    initialized with more than one rank, the ranks agree on the outcome before returning (one
    all_gather_object on `group`): if any rank failed (a missing or damaged container, which
    perhaps only one rank's tiles touch), every rank raises the same WcodecError, naming the first
    failing rank and its error, instead of the others going on into a collective that never
    completes. With NCCL, set the current CUDA device first, as for any object collective."""
    import torch.distributed as dist
    if rowwise not in ("slice", "exchange"):
        raise ValueError(f"rowwise={rowwise!r}: expected 'slice' or 'exchange'")
    distributed = dist.is_available() and dist.is_initialized()
    if rank is None or world is None:
        if not distributed:
            raise ValueError("rank and world are needed where torch.distributed is not initialized")
        rank = dist.get_rank(group) if rank is None else rank
        world = dist.get_world_size(group) if world is None else world
    if rowwise == "exchange" and not (distributed and (rank, world) == (dist.get_rank(group), dist.get_world_size(group))):
        raise ValueError("rowwise='exchange' needs torch.distributed initialized, with rank and world its own")
    if not distributed or dist.get_world_size(group) == 1:
        return _load(path, plan, rank, world, device, False)[:2]
    try:
        result, error = _load(path, plan, rank, world, device, rowwise == "exchange"), None
    except Exception as e:  # noqa: BLE001 - every rank must hear of any failure
        result, error = None, e
    said = [None] * dist.get_world_size(group)
    dist.all_gather_object(said, None if error is None else
                           str(error) if isinstance(error, WcodecError) else f"{type(error).__name__}: {error}",
                           group=group)
    bad = next((r for r, msg in enumerate(said) if msg is not None), None)
    if bad is not None:
        raise WcodecError(f"rank {bad} of {len(said)}: {said[bad]}") from error
    out, coded, pending = result
    for name, shape in pending.items():  # the same names in the same order on every rank
        out[name] = _exchange(out[name], shape, rank, world, group)
    return out, coded
