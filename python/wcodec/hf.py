"""wcodec.hf: a Hugging Face model from a folder of .wcodec containers, without a mount.

    model = wcodec.hf.from_pretrained(transformers.AutoModelForCausalLM, "llama.wc", device="cuda")
    model = wcodec.hf.from_pretrained(LlamaForCausalLM, "llama.wc", device="cuda", keep="gpu")

The folder is what `wcodec encode` makes of a model folder: config.json and the tokenizer files
copied, each .safetensors shard a .wcodec container. The model is built from the folder's config
with its parameters on the meta device (no memory, no random init), then its weights are decoded
(on the GPU for a CUDA device) straight into their parameters, or, with keep, attached: kept
compressed and decoded block by block at each forward (wcodec.torch.attach)."""
import contextlib
import os
import tempfile
import warnings

import torch
from torch import nn

from . import _url
from . import torch as wtorch


@contextlib.contextmanager
def params_on_meta():
    """Modules built inside get their parameters on the meta device (their initialisation then
    costs nothing); buffers are made as usual, since no checkpoint holds the non-persistent ones
    (rotary frequencies) that a model computes when it is built."""
    register = nn.Module.register_parameter

    def on_meta(module, name, param):
        register(module, name, param)
        p = module._parameters.get(name)
        if p is not None and p.device.type != "meta":
            module._parameters[name] = nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def _build(cls, config, kwargs):
    """cls's model for config, parameters on meta. Auto classes (from_config) and model classes
    (_from_config) both; the dtype defaults to the config's, as transformers' from_pretrained."""
    if not any(k in kwargs for k in ("dtype", "torch_dtype")):
        dt = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        if isinstance(dt, str):
            dt = getattr(torch, dt, None)
        if isinstance(dt, torch.dtype):
            kwargs = dict(kwargs, dtype=dt)
    with params_on_meta():
        make = cls.from_config if hasattr(cls, "from_config") else cls._from_config
        try:
            return make(config, **kwargs)
        except TypeError:
            if "dtype" not in kwargs:
                raise
            kwargs = dict(kwargs)  # transformers 4 names it torch_dtype
            kwargs["torch_dtype"] = kwargs.pop("dtype")
            return make(config, **kwargs)


def _buffers_to(model, device):
    for mod in model.modules():
        for name, b in mod._buffers.items():
            if b is not None and b.device != device:
                mod._buffers[name] = b.to(device)


def _assign(model, state, path):
    """Puts the loaded tensors in place of the meta parameters (and persistent buffers), under every
    name a tied tensor has."""
    from ._attach import _module_tensors

    used = set()
    for kind, obj, uses in _module_tensors(model):
        hit = [u[2] for u in uses if u[2] in state]
        if not hit:
            continue
        t = state[hit[0]]
        used.update(hit)
        if obj.shape != t.shape or obj.dtype != t.dtype:
            raise ValueError(f"{path}: tensor {hit[0]!r} is {t.dtype}{list(t.shape)}; the model's is "
                             f"{obj.dtype}{list(obj.shape)}")
        new = nn.Parameter(t, requires_grad=obj.requires_grad) if kind == "param" else t
        for mod, a, _ in uses:
            (mod._parameters if kind == "param" else mod._buffers)[a] = new
    for name in sorted(set(state) - used):
        warnings.warn(f"{path}: tensor {name!r} is not in the model; ignored")


def from_pretrained(cls, path, device="cpu", keep=None, **kwargs):
    """A transformers model of class `cls` (a model class or an Auto class) from the folder `path`
    of containers (or its URL: https://host/model/, s3://bucket/model), on `device`, in eval mode.

    keep=None loads every weight decoded; keep="gpu" or "host" attaches them instead
    (wcodec.torch.attach: the model then holds its weights compressed, on the GPU or in pinned
    host memory, and decodes each layer just before it runs); the handle is model.wcodec.
    decoded=, verify= and compute= go to attach (compute="fused": the Linear layers run on the
    compressed weights; see attach). Other kwargs (dtype, attn_implementation, ...) go to the
    model's construction; config= replaces the folder's config.json."""
    with _url.listed_once():  # a URL's folder: one listing for the configs and the shards
        return _from_pretrained(cls, path, device, keep, kwargs)


def _from_pretrained(cls, path, device, keep, kwargs):
    import transformers

    d = wtorch.check_device(device)
    config = kwargs.pop("config", None) or _config(transformers.AutoConfig, path, "config.json")
    attach_kw = {k: kwargs.pop(k) for k in ("decoded", "verify", "compute") if k in kwargs}
    model = _build(cls, config, kwargs)
    _buffers_to(model, d)
    if keep is None:
        _assign(model, wtorch.load_dir(path, device=d), path)
    else:
        model.wcodec = wtorch.attach(model, path, device=d, keep=keep, **attach_kw)
    missing = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if missing:
        raise ValueError(f"{path}: no tensor {missing[0]!r} ({len(missing)} parameters missing)")
    if getattr(model, "generation_config", None) is not None:
        gen = _config(transformers.GenerationConfig, path, "generation_config.json", missing_ok=True)
        if gen is not None:
            model.generation_config = gen
    return model.eval()


def _config(kind, path, name, missing_ok=False):
    """kind.from_pretrained of the folder `path`, or of its URL (the one file fetched into a
    temporary folder); None where missing_ok and the file is not there."""
    if not _url.is_url(path):
        if missing_ok and not os.path.exists(os.path.join(path, name)):
            return None
        return kind.from_pretrained(path)
    names = {p for p, _ in _url.list_folder(path)}
    if name not in names:
        if missing_ok:
            return None
        raise FileNotFoundError(f"{_url.join(path, name)}: not in the folder's listing")
    with tempfile.TemporaryDirectory() as t:
        with open(os.path.join(t, name), "wb") as f:
            f.write(_url.fetch(_url.join(path, name)))
        return kind.from_pretrained(t)
