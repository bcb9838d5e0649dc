"""wcodec.torch.attach: a torch module whose weights stay compressed and are decoded block by block,
just before each block runs (see attach's docstring)."""
import ctypes
import math
import types
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from . import _lib
from . import _file
from . import _tensors as wtorch

ALIGN = 256  # each tensor's place in a group's decode area: torch's own allocation alignment


def _blocks(module):
    """The blocks: the elements of the module's first nn.ModuleList (a transformer's layers), else
    its children. As [(prefix, block module)]."""
    for name, m in module.named_modules():
        if isinstance(m, nn.ModuleList) and len(m):
            return [(f"{name}.{i}" if name else str(i), b) for i, b in enumerate(m)]
    return [(name, m) for name, m in module.named_children()]


def _module_tensors(module):
    """Every parameter and persistent buffer as [(kind, object, [(owning module, attribute, full
    name)])], one entry per object: a tensor tied under several names is one entry."""
    seen = {}
    for mname, mod in module.named_modules(remove_duplicate=False):
        for kind, table in (("param", mod._parameters), ("buffer", mod._buffers)):
            for a, t in table.items():
                if t is None or (kind == "buffer" and a in mod._non_persistent_buffers_set):
                    continue
                full = f"{mname}.{a}" if mname else a
                e = seen.setdefault(id(t), (kind, t, []))
                if all(u[2] != full for u in e[2]):
                    e[2].append((mod, a, full))
    return list(seen.values())


def _owner_block(full, prefixes):
    for i, p in enumerate(prefixes):
        if full.startswith(p + "."):
            return i
    return None


class _oom:
    """Turns torch's out-of-memory error into a MemoryError that says how much was needed, where,
    and for what."""

    def __init__(self, nbytes, what, where):
        self.nbytes, self.what, self.where = nbytes, what, where

    def __enter__(self):
        return self

    def __exit__(self, typ, e, tb):
        if typ is not None and issubclass(typ, RuntimeError) and "out of memory" in str(e):
            where = self.where if isinstance(self.where, str) else f"memory on {self.where}"
            raise MemoryError(f"wcodec.attach: {self.nbytes} bytes of {where} needed for {self.what}: "
                              f"{e}") from None
        return False


def _layout(group):
    """Places a group's tensors in its decode area (ALIGN apart); returns the bytes it needs."""
    at = 0
    for t in group:
        t.offset = at
        at += (t.size + ALIGN - 1) // ALIGN * ALIGN
    return at


def _chunks(mod, t, area):
    """An nn.Linear's or nn.Embedding's weight cut into row ranges of whole tiles that fit `area`
    bytes, as _Tensors of their own (rows = (r0, r1)); None where the module is another kind or no
    row boundary falls on a tile boundary often enough."""
    linear = isinstance(mod, nn.Linear) and t.uses[0][1] == "weight"
    embed = isinstance(mod, nn.Embedding) and t.uses[0][1] == "weight" and mod.max_norm is None
    if not (linear or embed) or len(t.shape) != 2 or len(t.uses) != 1:
        return None
    rows = t.shape[0]
    row = t.size // rows
    step = math.lcm(row, t.c.tile_size) // row  # rows from one tile-and-row boundary to the next
    per = area // (step * row) * step
    if not per:
        return None
    out = []
    for r0 in range(0, rows, per):
        r1 = min(rows, r0 + per)
        p = _Tensor()
        p.name, p.c, p.uses, p.requires_grad, p.rows = f"{t.name}[{r0}:{r1}]", t.c, [], False, (r0, r1)
        p.dtype, p.st_dtype, p.shape = t.dtype, t.st_dtype, [r1 - r0] + t.shape[1:]
        p.begin, p.size, p.offset = t.begin + r0 * row, (r1 - r0) * row, 0
        out.append(p)
    return out


class _Tensor:
    """One weight kept compressed: where it is in its container, where it goes in its group's area,
    and the module attributes that hold it."""
    __slots__ = ("name", "c", "begin", "size", "dtype", "st_dtype", "shape", "uses", "offset",
                 "placeholder", "requires_grad", "rows")


class Attached:
    """What attach returns: memory() and detach(). Keep it alive as long as the module runs: its
    hooks refer to it."""

    def __init__(self, module, path, device, keep, decoded, verify, strict, compute="exact"):  # see attach()
        if compute not in ("exact", "fused"):
            raise ValueError(f"compute={compute!r}: expected 'exact' or 'fused'")
        if keep not in ("gpu", "host"):
            raise ValueError(f"keep={keep!r}: expected 'gpu' or 'host'")
        if decoded not in ("outside", "none"):
            raise ValueError(f"decoded={decoded!r}: expected 'outside' or 'none'")
        if verify not in ("once", "always"):
            raise ValueError(f"verify={verify!r}: expected 'once' or 'always'")
        self.module, self.device, self.keep, self.verify = module, wtorch.check_device(device), keep, verify
        self.fused = compute == "fused" and self._can_fuse(keep)
        self._fused = []  # (module, _Tensor, Cf12Weight): Linear weights held in the compute format
        self.fused_bytes = 0
        self._set = None
        self._hooks = []
        self._containers = [_file.Container(p) for p in wtorch.container_paths(path)]
        try:
            self._plan(path, decoded, strict)
            self._attach()
        except BaseException:
            self._release()
            raise

    # -------------------------------------------------------------- planning (nothing moves)

    def _plan(self, path, decoded, strict):
        stored = {}
        for c in self._containers:
            for name, info in c.header.items():
                if name in stored:
                    raise ValueError(f"{c.path}: tensor {name!r} is in {stored[name][0].path} too")
                stored[name] = (c, info)
        blocks = _blocks(self.module)
        prefixes = [p for p, _ in blocks]
        block_mods = [b for _, b in blocks]
        used, kept, groups, outside, fused = set(), [], [[] for _ in blocks], {}, []
        for kind, obj, uses in _module_tensors(self.module):
            hit = [u for u in uses if u[2] in stored]
            if not hit:
                if kind == "param" and strict:
                    raise ValueError(f"{path}: no tensor {uses[0][2]!r} (a parameter of the module)")
                continue
            name = hit[0][2]
            c, info = stored[name]
            used.update(u[2] for u in hit)
            t = _Tensor()
            t.name, t.c, t.uses, t.requires_grad, t.rows = name, c, uses, obj.requires_grad, None
            t.st_dtype, t.dtype = info["dtype"], wtorch._dtype(c, info["dtype"])
            t.shape = list(info["shape"])
            t.begin, t.size = c.data_start + info["data_offsets"][0], info["data_offsets"][1] - info["data_offsets"][0]
            _file.check_size(c.path, info["dtype"], t.shape, wtorch._itemsize(t.dtype), t.size)
            if t.dtype != obj.dtype or list(obj.shape) != t.shape:
                raise ValueError(f"{c.path}: tensor {name!r} is {info['dtype']}{t.shape}; the module's "
                                 f"is {obj.dtype}{list(obj.shape)}")
            owners = {_owner_block(u[2], prefixes) for u in uses}
            mod = uses[0][0]
            if self.fused and kind == "param" and t.size:
                if _fusable(t, uses):
                    fused.append(t)
                    continue
                if not _linear_weight(uses):
                    kept.append(t)  # norms, embeddings: decoded (tiny, or read by index)
                    continue
                warnings.warn(f"wcodec.attach: {name} ({info['dtype']}{t.shape}) cannot be held in the compute "
                              "format (BF16 2-D Linear weights only); it runs in the exact mode")
            if kind == "buffer" or not t.size or len(owners) != 1:
                kept.append(t)  # buffers, empty tensors and tensors shared across blocks stay decoded
            elif None not in owners:
                groups[owners.pop()].append(t)
            elif decoded == "outside" or len({id(u[0]) for u in uses}) != 1 or any(
                    any(b is m for m in mod.modules()) for b in block_mods):
                kept.append(t)  # (a module that holds the blocks cannot be decoded around them)
            else:
                outside.setdefault(id(mod), (mod, []))[1].append(t)
        if strict:
            extra = sorted(set(stored) - used)
            if extra:
                raise ValueError(f"{stored[extra[0]][0].path}: tensor {extra[0]!r} is not a parameter or "
                                 f"buffer of the module ({len(extra)} such; strict=False ignores them)")
        group_modules = list(block_mods)
        if self.fused:  # blocks left with nothing compressed get no hooks (a graph can capture them)
            group_modules = [m for m, g in zip(group_modules, groups) if g]
            groups = [g for g in groups if g]
        sizes = [_layout(g) for g in groups]
        area = max(sizes, default=0)
        self.chunked = []  # (module, kind, [(group, chunk tensor)], tensor): decoded piece by piece
        for mod, ts in outside.values():  # decoded="none": each owning module a group of its own
            size = _layout(ts)
            if not area or size <= area:
                groups.append(ts)
                group_modules.append(mod)
                sizes.append(size)
                continue
            for t in ts:  # larger than a block: an embedding's or a head's rows go through the areas
                pieces = _chunks(mod, t, area)
                if pieces is None:
                    kept.append(t)
                    continue
                first = len(groups)
                for p in pieces:
                    groups.append([p])
                    group_modules.append(None)
                    sizes.append(p.size)
                self.chunked.append((mod, "embedding" if isinstance(mod, nn.Embedding) else "linear",
                                     list(zip(range(first, len(groups)), pieces)), t))
        self.kept, self.fused_plan = kept, fused
        self.groups, self.group_modules, self.group_bytes = groups, group_modules, sizes
        self.group_weight_bytes = [sum(t.size for t in g) for g in groups]  # decoded bytes it brings
        self.compressed_bytes = sum(t.c.coded_bytes(t.begin, t.size) for g in groups for t in g)
        self.kept_bytes = sum(t.size for t in kept)

    # -------------------------------------------------------------- attaching

    def _alloc(self, nbytes, what, **kw):
        with _oom(nbytes, what, "pinned host memory" if kw.get("pin_memory") else kw.get("device", "cpu")):
            return torch.empty(nbytes, dtype=torch.uint8, **kw)

    def _attach(self):
        dev, cuda = self.device, self.device.type == "cuda"
        big = max(self.group_bytes, default=0)
        self._ranges = [t for g in self.groups for t in g]
        self._areas = []
        if cuda and self.groups:  # (compute="fused" on a BF16 model: none)
            gpu = _file._gpu(dev.index)
            err, s = _lib._Error(), ctypes.c_void_p()
            with gpu.lock:
                keep = 0 if self.keep == "gpu" else 1
                _lib.check(_lib.wcgpu_set_create(gpu.handle, keep, ctypes.byref(s), ctypes.byref(err)), err)
                self._set = s
                for gi, g in enumerate(self.groups):
                    for t in g:
                        _lib.check(_lib.wcgpu_set_add(s, gi, t.c._c, t.begin, t.size, t.offset, ctypes.byref(err)), err)
                pb = _lib.wcgpu_set_payload_bytes(s)
                if self.keep == "gpu":
                    self._payloads = self._alloc(pb, "the compressed weights", device=dev)
                else:
                    self._payloads = self._alloc(pb, "the compressed weights", pin_memory=True)
                self._new_area(big)
                self._new_area(big)  # two: the next block decodes while this one runs
                bad = ctypes.c_uint32(0)
                st = _lib.wcgpu_set_finish(s, self._payloads.data_ptr(), self._areas[0]["buf"].data_ptr(), big,
                                           ctypes.byref(bad), ctypes.byref(err))
                self._check_tiles(st, err, bad)
                self.overhead_bytes = _lib.wcgpu_set_device_bytes(s)
            self._side = torch.cuda.Stream(dev)
        else:
            self.overhead_bytes = 0
            if self.groups:
                self._new_area(big)
            for g in self.groups:  # every tile checked once, here, as on the GPU
                for t in g:
                    self._decode_cpu(t, self._areas[0]["buf"])
        # kept-decoded tensors: ordinary tensors now (one object under all the names of a tied one)
        for t in self.kept:
            with _oom(t.size, f"the weights kept decoded ({t.name})", dev):
                v = self._decode_whole(t, dev)
            is_param = t.uses[0][1] in t.uses[0][0]._parameters
            v = nn.Parameter(v, requires_grad=False) if is_param else v
            for mod, a, _ in t.uses:
                (mod._parameters if is_param else mod._buffers)[a] = v
        self._pack_fused()
        # compressed ones: a placeholder of the right shape, dtype and device, 2 bytes of memory
        base = {}
        for t in [t for g in self.groups for t in g if t.rows is None] + [ch[3] for ch in self.chunked] + \
                [f[1] for f in self._fused]:
            if t.dtype not in base:
                base[t.dtype] = torch.zeros((), dtype=t.dtype, device=dev)
            t.placeholder = nn.Parameter(base[t.dtype].expand(t.shape), requires_grad=False)
            for mod, a, _ in t.uses:
                mod._parameters[a] = t.placeholder
        for c in self._containers if cuda else ():
            c.close()  # the set holds the payloads now; on the CPU the containers are read per block
        self._bound = {}  # group -> area index, while it runs
        self._holds = {}  # area index -> group decoded (or being decoded) there
        self._ready = {}  # group -> (area index, event)
        self._next, self._last = {}, None
        self.decoded_bytes = self.decoded_peak_bytes = self.kept_bytes
        for gi, m in enumerate(self.group_modules):
            if m is not None:
                self._hooks.append(m.register_forward_pre_hook(self._pre_hook(gi)))
                self._hooks.append(m.register_forward_hook(self._post_hook(gi)))
        for mod, kind, pieces, t in self.chunked:
            mod.forward = types.MethodType(self._chunked_forward(kind, pieces, t), mod)
        for mod, t, cw in self._fused:
            mod.forward = types.MethodType(self._fused_forward(t, cw), mod)

    def _can_fuse(self, keep):
        """compute="fused" where it can run: a CUDA device with the fused kernels, keep="gpu"."""
        why = None
        if self.device.type != "cuda":
            why = f"device {self.device} (it needs a CUDA device)"
        elif not _lib.has_gpu or not hasattr(_lib, "wcgpu_gemv_cf12"):
            why = "a libwcodec built without the CUDA kernels"
        elif keep != "gpu":
            why = f'keep="{keep}" (it needs keep="gpu")'
        if why:
            warnings.warn(f'wcodec.attach: compute="fused" is not available with {why}; the exact mode runs')
        return why is None

    @staticmethod
    def _decode_whole(t, dev):
        """Tensor t decoded whole onto dev (every tile's checksum checked); an error names it."""
        try:
            return wtorch.tensor(t.c, t.st_dtype, t.shape, t.begin, t.size, dev)
        except _lib.WcodecError as e:
            raise _lib.WcodecError(f"tensor {t.name!r}: {e}") from None

    def _pack_fused(self):
        """Each fused Linear weight decoded on the GPU (every tile's checksum checked by the loader)
        into a temporary BF16 tensor, packed into the compute format, the temporary dropped."""
        from . import _cf12
        for t in self.fused_plan:
            mod = t.uses[0][0]
            with _oom(t.size, f"decoding {t.name} to pack it", self.device):
                w = self._decode_whole(t, self.device)
            with _oom(2 * t.size, f"the compute format of {t.name}", self.device):
                cw = _cf12.pack(w)
            del w
            self._fused.append((mod, t, cw))
        self.fused_bytes = sum(cw.nbytes() for _, _, cw in self._fused)

    def _fused_forward(self, t, cw):
        from . import _cf12

        def forward(mod, x):
            self._check_grad([t], (x,))
            return _cf12.linear(x, cw, mod.bias)
        return forward

    def _check_tiles(self, st, err, bad):
        """Raises the decoder's error, naming the tensor (and its file) that holds the bad tile."""
        if st != 0 and bad.value < len(self._ranges):
            t = self._ranges[bad.value]
            raise _lib.WcodecError(f"{t.c.path}: tensor {t.name!r}: {err.msg.decode('utf-8', 'replace')}")
        _lib.check(st, err)

    def _new_area(self, nbytes):
        kw = {"device": self.device}
        self._areas.append({"buf": self._alloc(nbytes, "a block's decoded weights", **kw), "done": None})
        return len(self._areas) - 1

    def _decode_cpu(self, t, buf):
        try:
            t.c.read_into(t.begin, t.size, buf.data_ptr() + t.offset)
        except _lib.WcodecError as e:
            raise _lib.WcodecError(f"tensor {t.name!r}: {e}") from None

    # -------------------------------------------------------------- per forward

    def _free_area(self, avoid=None):
        busy = set(self._bound.values())
        for a in range(len(self._areas)):
            if a not in busy and a != avoid and self._holds.get(a) is None:
                return a
        for a in range(len(self._areas)):
            if a not in busy and a != avoid:
                return a
        return self._new_area(self._areas[0]["buf"].numel())  # blocks nested deeper than the areas

    def _enqueue(self, gi, area):
        """Starts decoding group gi into area (on the side stream, after the last reader of that area)."""
        old = self._holds.pop(area, None)
        if old is not None:
            self._ready.pop(old, None)
        buf = self._areas[area]["buf"]
        if self.device.type == "cpu":
            for t in self.groups[gi]:
                self._decode_cpu(t, buf)
            ev = None
        else:
            done = self._areas[area]["done"]
            if done is not None:
                self._side.wait_event(done)
            err = _lib._Error()
            verify = self.verify == "always"
            _lib.check(_lib.wcgpu_set_decode(self._set, gi, buf.data_ptr(), ctypes.c_void_p(self._side.cuda_stream),
                                             int(verify), ctypes.byref(err)), err)
            if verify:
                bad = ctypes.c_uint32(0)
                st = _lib.wcgpu_set_check(self._set, gi, ctypes.c_void_p(self._side.cuda_stream), ctypes.byref(bad),
                                          ctypes.byref(err))
                self._check_tiles(st, err, bad)
            ev = torch.cuda.Event()
            ev.record(self._side)
        self._holds[area] = gi
        self._ready[gi] = (area, ev)
        self._account()

    def _account(self):
        self.decoded_bytes = self.kept_bytes + sum(self.group_weight_bytes[g] for g in self._holds.values())
        self.decoded_peak_bytes = max(self.decoded_peak_bytes, self.decoded_bytes)

    def _check_grad(self, tensors, args):
        for t in tensors:
            if t.placeholder.requires_grad:
                raise RuntimeError(f"wcodec.attach: {t.name} is kept compressed and cannot take gradients "
                                   "(detach() first to train it)")
        if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            raise RuntimeError("wcodec.attach: gradients cannot flow through weights kept compressed (each "
                               "block's decoded weights are overwritten by the next); run under "
                               "torch.no_grad() or torch.inference_mode(), or detach() first")

    def _acquire(self, gi):
        """Group gi decoded and bound in an area (the compute stream waits for its decode); the
        group that ran after it last time starts decoding into another area. Returns the area."""
        if self._last is not None and self._last != gi:
            self._next[self._last] = gi  # learned: which group runs after which
        self._last = gi
        if gi not in self._ready or self._ready[gi][0] in self._bound.values():
            self._enqueue(gi, self._free_area())
        area, ev = self._ready[gi]
        if ev is not None:
            torch.cuda.current_stream(self.device).wait_event(ev)
        self._bound[gi] = area
        nxt = self._next.get(gi)
        if self.device.type == "cuda" and nxt is not None and nxt not in self._bound and nxt not in self._ready:
            self._enqueue(nxt, self._free_area(avoid=area))
        return self._areas[area]["buf"]

    def _release_group(self, gi):
        """After gi's last reader is enqueued: its area may be decoded into once that reader is done."""
        area = self._bound.pop(gi, None)
        if area is not None and self.device.type == "cuda":
            ev = torch.cuda.Event()
            ev.record(torch.cuda.current_stream(self.device))
            self._areas[area]["done"] = ev

    @staticmethod
    def _view(buf, t):
        return buf[t.offset:t.offset + t.size].view(t.dtype).view(t.shape)

    def _pre_hook(self, gi):
        def hook(module, args):
            self._check_grad(self.groups[gi], args)
            buf = self._acquire(gi)
            for t in self.groups[gi]:
                v = self._view(buf, t)
                for mod, a, _ in t.uses:
                    mod._parameters[a] = v
        return hook

    def _post_hook(self, gi):
        def hook(module, args, output):
            self._release_group(gi)
            for t in self.groups[gi]:
                for mod, a, _ in t.uses:
                    mod._parameters[a] = t.placeholder
        return hook

    def _chunked_forward(self, kind, pieces, whole):
        """The forward of an nn.Linear or nn.Embedding whose weight is larger than a block: its
        row ranges decoded one after another through the areas. A Linear's output is the
        concatenation of each range's rows (with its slice of the bias); an Embedding's, each
        id's row from the range that holds it."""
        def forward(mod, x):
            self._check_grad([whole], (x,))
            out = None
            for gi, p in pieces:
                w = self._view(self._acquire(gi), p)
                r0, r1 = p.rows
                if kind == "linear":
                    y = F.linear(x, w, None if mod.bias is None else mod.bias[r0:r1])
                    out = [y] if out is None else out + [y]
                else:
                    e = F.embedding((x - r0).clamp(0, r1 - r0 - 1), w)
                    inside = ((x >= r0) & (x < r1)).unsqueeze(-1)
                    out = e if out is None else torch.where(inside, e, out)
                self._release_group(gi)
            return torch.cat(out, dim=-1) if kind == "linear" else out
        return forward

    # -------------------------------------------------------------- the handle's API

    def memory(self):
        """Bytes: compressed_bytes (the coded weights held, on the GPU or in pinned host memory; on
        the CPU they stay in the containers), decoded_bytes (decoded weights resident now: those
        kept decoded plus the blocks decoded in the areas), decoded_peak_bytes (its maximum so far),
        kept_decoded_bytes, scratch_bytes (the decode areas) and overhead_bytes (the decoder's own
        device memory: job tables); compute_format_bytes: the part of compressed_bytes held in the
        compute format (compute="fused")."""
        return {"compressed_bytes": self.compressed_bytes + self.fused_bytes,
                "compute_format_bytes": self.fused_bytes, "decoded_bytes": self.decoded_bytes,
                "decoded_peak_bytes": self.decoded_peak_bytes, "kept_decoded_bytes": self.kept_bytes,
                "scratch_bytes": sum(a["buf"].numel() for a in self._areas),
                "overhead_bytes": self.overhead_bytes}

    def detach(self):
        """Decodes every compressed weight back into an ordinary parameter (requires_grad as it was
        before attach), removes the hooks and frees the compressed copy."""
        if self._hooks is None:
            return self.module
        for h in self._hooks:
            h.remove()
        self._hooks = None
        whole = {}  # chunk -> the full weight it is rows of
        for mod, kind, pieces, t in self.chunked:
            del mod.forward  # the class's own again
            full = torch.empty(t.shape, dtype=t.dtype, device=self.device)
            whole.update({id(p): full for _, p in pieces})
            mod._parameters[t.uses[0][1]] = nn.Parameter(full, requires_grad=t.requires_grad)
        for mod, t, cw in self._fused:
            del mod.forward
            p = nn.Parameter(cw.unpack(), requires_grad=t.requires_grad)
            for m, a, _ in t.uses:
                m._parameters[a] = p
        self._fused = []
        for gi, g in enumerate(self.groups):
            if self.device.type == "cuda":
                torch.cuda.current_stream(self.device).synchronize()
                self._enqueue(gi, 0)
                self._side.synchronize()
            else:
                self._enqueue(gi, 0)
            buf = self._areas[0]["buf"]
            for t in g:
                if t.rows is not None:
                    with torch.no_grad():
                        whole[id(t)][t.rows[0]:t.rows[1]].copy_(self._view(buf, t))
                    continue
                p = nn.Parameter(self._view(buf, t).clone(), requires_grad=t.requires_grad)
                for mod, a, _ in t.uses:
                    mod._parameters[a] = p
        for t in self.kept:
            for mod, a, _ in t.uses:
                if a in mod._parameters:
                    mod._parameters[a].requires_grad_(t.requires_grad)
        self._release()
        return self.module

    def _release(self):
        if self._hooks:
            for h in self._hooks:
                h.remove()
        for mod, _, _, _ in getattr(self, "chunked", ()):
            mod.__dict__.pop("forward", None)
        for mod, _, _ in getattr(self, "_fused", ()):
            mod.__dict__.pop("forward", None)
        self._fused = []
        if self._set is not None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            _lib.wcgpu_set_close(self._set)
            self._set = None
        self._areas, self._payloads = [], None
        for c in self._containers:
            c.close()


def _linear_weight(uses):
    return len(uses) == 1 and isinstance(uses[0][0], nn.Linear) and uses[0][1] == "weight"


def _fusable(t, uses):
    """A weight the compute format holds: one nn.Linear's BF16 2-D weight, tied to nothing."""
    return _linear_weight(uses) and t.dtype == torch.bfloat16 and len(t.shape) == 2 and \
        t.shape[0] < 2 ** 31 and t.shape[1] < 2 ** 31


def attach(module, path, device="cuda", keep="gpu", decoded="none", verify="once", strict=True, compute="exact"):
    """Keeps the module's weights compressed and decodes them block by block as it runs.

    path: a .wcodec container or a folder of them (a sharded model), holding the module's
    parameters (and persistent buffers) by their state_dict names. The module may be on any device
    or on the meta device (built without memory, as wcodec.hf does): nothing of its own weights is
    read. Each block (each element of the module's first nn.ModuleList, as a transformer's layers;
    else each child) keeps its tensors compressed: on the GPU (keep="gpu") or in pinned host memory
    (keep="host", the coded bytes cross PCIe at each forward). Just before a block's forward its
    tensors are decoded into one of two reusable areas on `device`, and the block that ran after
    it last time starts decoding into the other on a side stream, so decode overlaps compute.
    After its forward the block's weights are placeholders again (their shape and dtype, 2 bytes).

    decoded="none" (default) compresses the tensors outside the blocks too: each module owning
    some (a final norm) becomes a group of its own, and an nn.Embedding's or nn.Linear's weight
    larger than a block (the embeddings, the head) is decoded in row ranges through the same two
    areas, so no area grows past a block. decoded="outside" keeps them decoded instead: faster at
    large batches, more memory (on an 8B Llama, 0.76x of BF16's peak against 0.72x; see
    docs/BENCHMARKS.md). Tensors tied across modules, and buffers, always stay decoded.
    Every tile's checksum is verified once, at attach (verify="always" checks at every decode too,
    at the cost of a synchronization per block). On device="cpu" the C decoder's threads decode
    straight from the containers (keep is not used there).

    Refused before anything moves: a parameter missing from the containers, a tensor of another
    shape or dtype, a tensor the module lacks (strict=False ignores the last two kinds of surplus).
    A damaged tile is refused at attach, naming tile and tensor. Weights kept compressed take no
    gradients: attach sets requires_grad False, and a forward that would need a block's weights
    for backward raises. Returns an Attached handle: memory(), detach().

    compute="exact" (default) runs every layer on the decoded weights: outputs bit-identical to
    the uncompressed module's. compute="fused" (a CUDA device, keep="gpu") holds each nn.Linear's
    BF16 weight in the compute format (12 bits a weight, docs/FORMAT.md "cf12") and runs it through
    the decode-fused kernels (the torch op wcodec::cf12_linear: batches of up to 16 rows read each
    weight once, compressed, in the fused GEMV; larger ones unpack and call cuBLAS), so a decode
    step moves fewer bytes than BF16 and runs faster; outputs then differ from cuBLAS's by BF16
    rounding (the bound in tests/gpu/gemv_check.py). Nothing else in the module is compressed in
    this mode (norms and embeddings stay decoded), so it has no hooks and a CUDA graph or
    torch.compile captures its forward. Weights the format cannot hold (not BF16) run in the exact
    mode with a warning, as does the whole module where fused cannot run (CPU, keep="host")."""
    return Attached(module, path, device, keep, decoded, verify, strict, compute)
