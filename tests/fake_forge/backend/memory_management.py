"""``backend.memory_management``: Forge's loaded-model list, loading, CPU swap (names and signatures of Forge main).

The fake "GPU" is the CPU. What it keeps from Forge:

- ``load_models_gpu(models, memory_required=0, hard_memory_preservation=0)`` loads patchers not yet
  in ``current_loaded_models``; a load **moves** the module, which the fake does by re-creating every
  tensor under ``torch.inference_mode()`` (what a real ``.to(cuda)`` inside Forge's inference mode
  gives: new inference tensors), then calls the patcher's ``refresh_loras()``;
- when the free memory (``get_free_memory``; tests set ``fake_free_memory``) is short of the module,
  ``LoadedModel.model_load`` goes to CPU swap: the biggest layers get ``parameters_manual_cast = True``
  (their weights stay on the offload device) and ``model_accelerated`` is set;
- ``free_memory`` evicts the least recently loaded models, ``unload_all_models`` all of them.

Neo (``fake_flavor.NEO``, ComfyUI's manager): no ``model_accelerated``; a loaded model answers
``model_offloaded_memory()`` (its size less what was loaded: > 0 in CPU swap); a load calls the patcher's
``patch_model()`` (merging its ``patches``), an unload its ``unpatch_model()``, and a loaded patcher whose
``patches_uuid`` is not the one merged is loaded again.
"""

import fake_flavor
import torch

cpu = torch.device("cpu")
current_loaded_models = []
fake_free_memory = None  # bytes free on the fake GPU; None: always enough
signal_empty_cache = False


def get_torch_device():
    return cpu


def get_free_memory(dev=None, torch_free_too=False):
    free = float("inf") if fake_free_memory is None else fake_free_memory
    return (free, free) if torch_free_too else free


def minimum_inference_memory():
    return 0


def module_size(module, exclude_device=None, include_device=None, return_split=False):
    module_mem = weight_mem = 0
    for key, p in module.named_parameters():
        if exclude_device is not None and p.device == exclude_device:
            continue
        if include_device is not None and p.device != include_device:
            continue
        size = p.nelement() * p.element_size()
        module_mem += size
        if key == "weight":
            weight_mem += size
    if return_split:
        return module_mem, weight_mem, module_mem - weight_mem
    return module_mem


def _move(module: torch.nn.Module) -> None:
    """A device move inside Forge's inference mode: every parameter and buffer becomes a new inference tensor."""
    with torch.inference_mode():
        for sub in module.modules():
            for name, p in list(sub._parameters.items()):
                if p is not None:
                    sub._parameters[name] = torch.nn.Parameter(p.detach().clone(), requires_grad=False)
            for name, b in list(sub._buffers.items()):
                if b is not None:
                    sub._buffers[name] = b.clone()


class LoadedModel:
    def __init__(self, model):
        self.model = model
        if not fake_flavor.NEO:
            self.model_accelerated = False
        self.device = model.load_device
        self.inclusive_memory = 0
        self.exclusive_memory = 0

    def compute_inclusive_exclusive_memory(self):
        self.inclusive_memory = 0  # nothing counts as already on the fake GPU
        self.exclusive_memory = module_size(self.model.model)

    def model_offloaded_memory(self):  # Neo
        return self.model.model_size() - self.model.loaded_size()

    def should_reload(self):
        """Neo reloads a patcher whose patches are not the ones merged; Forge's ``refresh_loras`` sees to that."""
        return fake_flavor.NEO and self.model.model.current_weight_patches_uuid != self.model.patches_uuid

    def model_load(self, model_gpu_memory_when_using_cpu_swap=-1):
        _move(self.model.model)
        if fake_flavor.NEO:
            self.real_model = self.model.patch_model()
            self.model.model.model_loaded_weight_memory = self.model.model_size()
        else:
            self.real_model = self.model.forge_patch_model(None)
        self.model.current_device = self.model.load_device
        if model_gpu_memory_when_using_cpu_swap >= 0:
            budget = model_gpu_memory_when_using_cpu_swap
            for m in self.real_model.modules():
                if not hasattr(m, "parameters_manual_cast"):
                    continue
                size = module_size(m)
                if size <= budget:
                    budget -= size
                    continue
                m.prev_parameters_manual_cast = m.parameters_manual_cast
                m.parameters_manual_cast = True
            if fake_flavor.NEO:
                self.model.model.model_loaded_weight_memory = model_gpu_memory_when_using_cpu_swap
            else:
                self.model_accelerated = True
        if not fake_flavor.NEO:
            self.model.refresh_loras()
        return self.real_model

    def model_unload(self, avoid_model_moving=False):
        if fake_flavor.NEO:
            self.model.unpatch_model()
            self.model.model.model_loaded_weight_memory = 0
            for m in self.model.model.modules():
                if hasattr(m, "prev_parameters_manual_cast"):
                    m.parameters_manual_cast = m.prev_parameters_manual_cast
                    del m.prev_parameters_manual_cast
        elif self.model_accelerated:
            for m in self.real_model.modules():
                if hasattr(m, "prev_parameters_manual_cast"):
                    m.parameters_manual_cast = m.prev_parameters_manual_cast
                    del m.prev_parameters_manual_cast
            self.model_accelerated = False
        if not avoid_model_moving:
            _move(self.model.model)
        if not fake_flavor.NEO:
            self.model.forge_unpatch_model(None if avoid_model_moving else self.model.offload_device)

    def __eq__(self, other):
        return self.model is other.model


def unload_model_clones(model):
    """Unload every loaded patcher over the same module as ``model`` (a clone with other LoRAs)."""
    for loaded in [m for m in current_loaded_models if m.model.model is model.model]:
        current_loaded_models.remove(loaded)
        loaded.model_unload()


def free_memory(memory_required, device, keep_loaded=[], free_all=False):  # noqa: B006  (Forge's signature)
    global fake_free_memory
    for loaded in reversed(list(current_loaded_models)):
        if not free_all and get_free_memory(device) >= memory_required:
            break
        if loaded in keep_loaded:
            continue
        current_loaded_models.remove(loaded)
        loaded.model_unload()
        if fake_free_memory is not None:
            fake_free_memory += module_size(loaded.model.model)


def load_models_gpu(models, memory_required=0, hard_memory_preservation=0):
    """As Forge's: free room for all models to load first, then load each, in CPU swap when it does not fit."""
    global fake_free_memory
    inference_memory = minimum_inference_memory() + hard_memory_preservation
    to_load, already = [], []
    for model in models:
        loaded = LoadedModel(model)
        if loaded in current_loaded_models:
            current = current_loaded_models.pop(current_loaded_models.index(loaded))
            if current.should_reload():
                current.model_unload()
                to_load.append(loaded)
                continue
            current_loaded_models.insert(0, current)
            already.append(current)
        else:
            to_load.append(loaded)
    if not to_load:
        return
    for loaded in to_load:
        unload_model_clones(loaded.model)
    total = 0
    for loaded in to_load:
        loaded.compute_inclusive_exclusive_memory()
        total += loaded.exclusive_memory
    free_memory(total * 1.3 + max(inference_memory, memory_required), get_torch_device(), already)
    for loaded in to_load:
        free = get_free_memory(loaded.device)
        swap = -1
        if free - loaded.exclusive_memory - inference_memory < 0:
            swap = int(max(0, free - inference_memory))
        loaded.model_load(swap)
        if fake_free_memory is not None:
            fake_free_memory -= min(loaded.exclusive_memory, get_free_memory(loaded.device))
        current_loaded_models.insert(0, loaded)


def load_model_gpu(model):
    return load_models_gpu([model])


def unload_all_models():
    free_memory(1e30, get_torch_device(), free_all=True)


def soft_empty_cache(force=False):
    global signal_empty_cache
    signal_empty_cache = False
