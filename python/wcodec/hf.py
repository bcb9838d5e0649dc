"""wcodec.hf: a Hugging Face model from a folder of .wcodec containers, without a mount.

    model = wcodec.hf.from_pretrained(transformers.AutoModelForCausalLM, "llama.wc", device="cuda")

The folder is what `wcodec encode` makes of a model folder: config.json and the tokenizer files
copied, each .safetensors shard a .wcodec container. The weights are decoded (on the GPU for a
CUDA device) and given to transformers as the state_dict, with the folder's config."""
from . import torch as wtorch


def from_pretrained(cls, path, device="cpu", **kwargs):
    """cls.from_pretrained(None, config=<path/config.json>, state_dict=<the folder's tensors>,
    **kwargs), moved to `device` (tensors decoded there already are not copied)."""
    import transformers

    config = kwargs.pop("config", None) or transformers.AutoConfig.from_pretrained(path)
    state = wtorch.load_dir(path, device=device)
    model = cls.from_pretrained(None, config=config, state_dict=state, **kwargs)
    return model.to(device)
