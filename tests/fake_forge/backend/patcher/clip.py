"""``CLIP`` (``backend/patcher/clip.py``): the text encoders in a ``JointTextEncoder`` and their ``ModelPatcher``."""

import torch

from backend import memory_management
from backend.patcher.base import ModelPatcher


class JointTextEncoder(torch.nn.ModuleDict):
    pass


class ObjectDict:
    """``backend.nn.base.ObjectDict``: the tokenizers as attributes (``clip.tokenizer.clip_l``)."""

    def __init__(self, module_dict):
        for name, module in module_dict.items():
            setattr(self, name, module)


class CLIP:
    def __init__(self, model_dict={}, tokenizer_dict={}, no_init=False):  # noqa: B006  (Forge's signature)
        if no_init:
            return
        device = memory_management.get_torch_device()
        self.cond_stage_model = JointTextEncoder(model_dict)
        self.tokenizer = ObjectDict(tokenizer_dict)
        self.patcher = ModelPatcher(self.cond_stage_model, load_device=device, offload_device=device)

    def clone(self):
        n = CLIP(no_init=True)
        n.patcher = self.patcher.clone()
        n.cond_stage_model = self.cond_stage_model
        n.tokenizer = self.tokenizer
        return n

    def add_patches(self, *arg, **kwargs):
        return self.patcher.add_patches(*arg, **kwargs)
