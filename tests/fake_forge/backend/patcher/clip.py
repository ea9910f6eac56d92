"""``CLIP`` (``backend/patcher/clip.py``): the text encoders in a ``JointTextEncoder`` (Forge's own ``ModuleDict``,
a plain ``nn.Module``) and their ``ModelPatcher``; the tokenizers in an ``ObjectDict``."""

from backend import memory_management
from backend.nn.base import ModuleDict, ObjectDict
from backend.patcher.base import ModelPatcher


class JointTextEncoder(ModuleDict):
    pass


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
