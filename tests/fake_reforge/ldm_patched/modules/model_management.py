"""reForge's ``ldm_patched.modules.model_management`` (fake): the loaded-model list and ``load_models_gpu``.

As reForge's: loading a patcher detaches every loaded clone of the same model **without** unpatching
(``detach(unpatch_all=False)``); the loaded patcher then undoes another clone's merge itself (its
``patches_uuid`` differs from ``model.current_weight_patches_uuid``) and merges its own patches.
The fake "GPU" is the CPU; it runs inside ``process_images``' ``torch.inference_mode()``.
"""

import torch

current_loaded_models = []


def get_torch_device():
    return torch.device("cpu")


class LoadedModel:
    def __init__(self, model):
        self.model = model
        self.device = model.load_device

    def model_load(self, lowvram_model_memory=0, force_patch_weights=False):
        return self.model.patch_model(self.device, lowvram_model_memory, force_patch_weights=force_patch_weights)

    def model_unload(self, memory_to_free=None, unpatch_weights=True):
        self.model.detach(unpatch_weights)
        return True

    def __eq__(self, other):
        return self.model is other.model


def load_models_gpu(
    models, memory_required=0, force_patch_weights=False, minimum_memory_required=None, force_full_load=False
):
    for model in models:
        loaded = LoadedModel(model)
        if loaded in current_loaded_models:
            continue
        for other in [m for m in current_loaded_models if model.is_clone(m.model)]:
            current_loaded_models.remove(other)
            other.model.detach(unpatch_all=False)
        loaded.model_load(force_patch_weights=force_patch_weights)
        current_loaded_models.insert(0, loaded)


def load_model_gpu(model):
    return load_models_gpu([model])


def unload_all_models():
    for loaded in list(current_loaded_models):
        current_loaded_models.remove(loaded)
        loaded.model_unload()
