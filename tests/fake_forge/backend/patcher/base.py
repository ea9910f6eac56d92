"""``ModelPatcher`` with the attributes and signatures of Forge main, or of Neo (``fake_flavor.NEO``), not their code.

Forge: ``add_patches`` only records patches in ``lora_patches`` under
``(filename, strength_patch, strength_model, online_mode)``; nothing touches a weight until
the memory manager loads the model and calls ``refresh_loras()`` → ``LoraLoader.refresh``.

Neo (ComfyUI's): ``add_patches(patches, strength_patch, strength_model, *, filename, online_mode)`` appends
``(strength, value, strength_model, offset, function, online_mode)`` to ``patches[key]`` and draws a new
``patches_uuid``; the memory manager's load calls ``patch_model()``, which merges each key (the original saved in
``backup`` — one dict for every clone — as ``(weight, inplace_update)``) or, online, hands the layer a
``weight_function``; ``unpatch_model()`` puts the originals back.
"""

import collections
import copy
import uuid

import fake_flavor
import torch

from backend import memory_management, utils

Saved = collections.namedtuple("Dimension", ["weight", "inplace_update"])  # Neo's backup entries


class ForgeModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, current_device=None, **kwargs):
        self.size = size
        self.model = model
        self.lora_patches = {}
        self.object_patches = {}
        self.object_patches_backup = {}
        self.model_options = {"transformer_options": {}}
        self.model_size()
        self.load_device = load_device
        self.offload_device = offload_device
        if not hasattr(model, "lora_loader"):
            from backend.patcher.lora import LoraLoader

            model.lora_loader = LoraLoader(model)
        self.lora_loader = model.lora_loader
        self.current_device = self.offload_device if current_device is None else current_device

    def model_size(self):
        if self.size > 0:
            return self.size
        self.size = memory_management.module_size(self.model)
        return self.size

    def clone(self):
        n = self.__class__(self.model, self.load_device, self.offload_device, self.size, self.current_device)
        n.lora_patches = self.lora_patches.copy()
        n.object_patches = self.object_patches.copy()
        n.model_options = copy.deepcopy(self.model_options)
        return n

    def is_clone(self, other):
        return hasattr(other, "model") and self.model is other.model

    def add_patches(self, *, filename, patches, strength_patch=1.0, strength_model=1.0, online_mode=False):
        lora_identifier = (filename, strength_patch, strength_model, online_mode)
        this_patches = {}
        p = set()
        model_keys = {k for k, _ in self.model.named_parameters()}
        for k in patches:
            offset = function = None
            if isinstance(k, str):
                key = k
            else:
                key, offset = k[0], k[1]
                if len(k) > 2:
                    function = k[2]
            if key in model_keys:
                p.add(k)
                this_patches.setdefault(key, []).append([strength_patch, patches[k], strength_model, offset, function])
        self.lora_patches[lora_identifier] = this_patches
        return p

    def has_online_lora(self):
        return any(online_mode for (_, _, _, online_mode) in self.lora_patches)

    def refresh_loras(self):
        self.lora_loader.refresh(lora_patches=self.lora_patches, offload_device=self.offload_device)

    def add_object_patch(self, name, obj):
        self.object_patches[name] = obj

    def model_dtype(self):
        if hasattr(self.model, "get_dtype"):
            return self.model.get_dtype()

    def forge_patch_model(self, target_device=None):
        for k, item in self.object_patches.items():
            old = utils.get_attr(self.model, k)
            if k not in self.object_patches_backup:
                self.object_patches_backup[k] = old
            utils.set_attr_raw(self.model, k, item)
        if target_device is not None:
            self.model.to(target_device)
            self.current_device = target_device
        return self.model

    def forge_unpatch_model(self, target_device=None):
        if target_device is not None:
            self.model.to(target_device)
            self.current_device = target_device
        for k in list(self.object_patches_backup):
            utils.set_attr_raw(self.model, k, self.object_patches_backup[k])
        self.object_patches_backup = {}


class NeoModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, *, current_device=None, weight_inplace_update=False):
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
        self.current_device = self.offload_device if current_device is None else current_device
        for name, default in (("model_loaded_weight_memory", 0), ("current_weight_patches_uuid", None)):
            if not hasattr(model, name):
                setattr(model, name, default)
        self.model_size()

    def model_size(self):
        if self.size > 0:
            return self.size
        self.size = memory_management.module_size(self.model)
        return self.size

    def loaded_size(self):
        return self.model.model_loaded_weight_memory

    def clone(self):
        n = self.__class__(
            self.model, self.load_device, self.offload_device, self.size, current_device=self.current_device
        )
        n.patches = {key: patches[:] for key, patches in self.patches.items()}
        n.patches_uuid = self.patches_uuid
        n.object_patches = self.object_patches.copy()
        n.model_options = copy.deepcopy(self.model_options)
        n.parent = self
        n.backup = self.backup
        n.object_patches_backup = self.object_patches_backup
        return n

    def is_clone(self, other):
        return self.model is getattr(other, "model", None)

    def add_patches(self, patches, strength_patch=1.0, strength_model=1.0, *, filename=None, online_mode=None):
        p = set()
        model_keys = {k for k, _ in self.model.named_parameters()}
        for k in patches:
            offset = function = None
            if isinstance(k, str):
                key = k
            else:
                key, offset = k[0], k[1]
                if len(k) > 2:
                    function = k[2]
            if key in model_keys:
                p.add(k)
                entry = (strength_patch, patches[k], strength_model, offset, function, online_mode)
                self.patches.setdefault(key, []).append(entry)
        self.patches_uuid = uuid.uuid4()
        return list(p)

    def has_online_lora(self):
        return any(any(patch[-1] for patch in patches) for patches in self.patches.values())

    def use_online_lora(self, key):
        return any(patch[-1] for patch in self.patches.get(key, []))

    def add_object_patch(self, name, obj):
        self.object_patches[name] = obj

    def model_dtype(self):
        if hasattr(self.model, "get_dtype"):
            return self.model.get_dtype()

    def patch_weight_to_device(self, key):
        from backend.patcher.lora import merge_lora_to_weight

        weight = utils.get_attr(self.model, key)
        if key not in self.backup:
            self.backup[key] = Saved(weight.to(device=self.offload_device), False)
        merged = merge_lora_to_weight(self.patches[key], weight.to(torch.float32, copy=True), key)
        utils.set_attr_raw(self.model, key, torch.nn.Parameter(merged.to(weight.dtype), requires_grad=False))

    @torch.inference_mode()
    def patch_model(self):
        from backend.patcher.lora import merge_lora_to_weight

        for name, item in self.object_patches.items():
            self.object_patches_backup.setdefault(name, utils.get_attr(self.model, name))
            utils.set_attr_raw(self.model, name, item)
        for key in self.patches:
            if self.use_online_lora(key):
                layer, attribute, _ = utils.get_attr_with_parent(self.model, key)
                patches = self.patches[key]
                layer.weight_function = [lambda w, p=patches, k=key: merge_lora_to_weight(p, w, k)]
            else:
                self.patch_weight_to_device(key)
        self.model.current_weight_patches_uuid = self.patches_uuid
        return self.model

    @torch.inference_mode()
    def unpatch_model(self):
        for key, saved in self.backup.items():
            utils.set_attr_raw(self.model, key, utils.tensor2parameter(saved.weight))
        self.backup.clear()
        for layer in self.model.modules():
            layer.__dict__.pop("weight_function", None)
        for name, item in self.object_patches_backup.items():
            utils.set_attr_raw(self.model, name, item)
        self.object_patches_backup.clear()
        self.model.current_weight_patches_uuid = None


ModelPatcher = NeoModelPatcher if fake_flavor.NEO else ForgeModelPatcher
