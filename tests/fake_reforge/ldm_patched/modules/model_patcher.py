"""reForge's ComfyUI ``ModelPatcher`` (``ldm_patched/modules/model_patcher.py``): its attributes and signatures
as far as the built-in LoRA and the memory manager use them, not its code.

- ``add_patches(patches, strength_patch=1.0, strength_model=1.0)`` records patches per key and draws a new
  ``patches_uuid``; nothing touches a weight;
- ``clone()`` copies the patches and **shares** ``backup`` (one dict for every clone of a model);
- ``patch_model(device_to=None, lowvram_model_memory=0, load_weights=True, force_patch_weights=False)``
  (called by the memory manager) backs up and merges every patched key in fp32 (``set_attr_param``: a new
  ``Parameter``) and sets ``model.current_weight_patches_uuid``;
- ``unpatch_model(device_to=None, unpatch_weights=True)`` puts every backup back and clears it.
"""

import uuid

import torch

from ldm_patched.modules import lora, utils


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.size = size
        self.model = model
        self.patches = {}
        self.backup = {}
        self.object_patches = {}
        self.object_patches_backup = {}
        self.model_options = {"transformer_options": {}}
        self.load_device = load_device
        self.offload_device = offload_device
        self.weight_inplace_update = weight_inplace_update
        self.patches_uuid = uuid.uuid4()
        self.parent = None
        if not hasattr(self.model, "current_weight_patches_uuid"):
            self.model.current_weight_patches_uuid = None

    def clone(self):
        n = self.__class__(self.model, self.load_device, self.offload_device, self.size, self.weight_inplace_update)
        n.patches = {k: v[:] for k, v in self.patches.items()}
        n.patches_uuid = self.patches_uuid
        n.object_patches = self.object_patches.copy()
        n.backup = self.backup
        n.object_patches_backup = self.object_patches_backup
        n.parent = self
        return n

    def is_clone(self, other):
        return hasattr(other, "model") and self.model is other.model

    def add_patches(self, patches, strength_patch=1.0, strength_model=1.0):
        p = set()
        model_sd = self.model.state_dict()
        for k in patches:
            key, offset, function = (
                (k, None, None) if isinstance(k, str) else (k[0], k[1], k[2] if len(k) > 2 else None)
            )
            if key in model_sd:
                p.add(k)
                self.patches.setdefault(key, []).append((strength_patch, patches[k], strength_model, offset, function))
        self.patches_uuid = uuid.uuid4()
        return list(p)

    def patch_weight_to_device(self, key, device_to=None, inplace_update=False):
        if key not in self.patches:
            return
        weight = utils.get_attr(self.model, key)
        inplace_update = self.weight_inplace_update or inplace_update
        if key not in self.backup:
            self.backup[key] = _Backup(weight.to(device=self.offload_device, copy=inplace_update), inplace_update)
        out = lora.calculate_weight(self.patches[key], weight.to(torch.float32, copy=True), key).to(weight.dtype)
        if inplace_update:
            utils.copy_to_param(self.model, key, out)
        else:
            utils.set_attr_param(self.model, key, out)

    def patch_model(self, device_to=None, lowvram_model_memory=0, load_weights=True, force_patch_weights=False):
        if load_weights:
            unpatch = self.model.current_weight_patches_uuid not in (None, self.patches_uuid)
            if unpatch or force_patch_weights:  # another clone's merge is in the weights: undo it first
                self.unpatch_model()
            if self.model.current_weight_patches_uuid is None:
                for key in self.patches:
                    self.patch_weight_to_device(key, device_to)
            self.model.current_weight_patches_uuid = self.patches_uuid
        return self.model

    def unpatch_model(self, device_to=None, unpatch_weights=True):
        if unpatch_weights:
            for k, bk in list(self.backup.items()):
                if bk.inplace_update:
                    utils.copy_to_param(self.model, k, bk.weight)
                else:
                    utils.set_attr_param(self.model, k, bk.weight)
            self.model.current_weight_patches_uuid = None
            self.backup.clear()
            if device_to is not None:
                self.model.to(device_to)

    def detach(self, unpatch_all=True):
        if unpatch_all:
            self.unpatch_model(self.offload_device, unpatch_weights=unpatch_all)
        return self.model


class _Backup:
    """reForge keeps ``namedtuple('Dimension', ['weight', 'inplace_update'])``."""

    def __init__(self, weight, inplace_update):
        self.weight, self.inplace_update = weight, inplace_update
