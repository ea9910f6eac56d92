"""Forge Neo (Haoming02/sd-webui-forge-classic branch ``neo``, as packaged in exo101/sd-webui-forge-neo-v3
``5692d2d1e6c293faf5486f7cb18c27c9a3faa758``, "neo-2.26"): what ``lora_ext/hosts/neo.py`` relies on. Neo keeps
Forge's engine layout (the checks shared with ``forge.py``) and differs in its patcher, its patch types and its
memory manager. Needs a loaded SD1 engine (after one generation)."""

from __future__ import annotations

import torch

from . import common, forge
from .forge import engine


def linear_layers_subclass_torch_s() -> None:
    """Unlike Forge's, Neo's ``Linear`` is an ``nn.Linear`` (with ``weight_function`` lists for online LoRAs)."""
    layer = engine().forge_objects.unet.model.diffusion_model.get_submodule(
        "input_blocks.1.1.transformer_blocks.0.attn1.to_q"
    )
    assert isinstance(layer, torch.nn.Linear) and common.is_linear_like(layer)
    assert isinstance(type(layer).weight_function, list), "no weight_function holder for online LoRAs"


def the_patcher_is_comfyui_s_with_backups_shared_by_clones() -> None:
    """No ``LoraLoader``: a patcher's ``patches`` by key, merged at load; the originals in ``backup`` (one dict
    for every clone) as ``(weight, inplace_update)``."""
    from backend.patcher import lora

    assert not hasattr(lora, "LoraLoader")
    unet = engine().forge_objects_original.unet
    clone = unet.clone()
    assert clone.backup is unet.backup and isinstance(unet.backup, dict)
    assert isinstance(clone.patches, dict) and clone.patches_uuid == unet.patches_uuid
    for saved in unet.backup.values():
        assert hasattr(saved, "weight") and hasattr(saved, "inplace_update")


def forge_s_patch_tuples_are_refused() -> None:
    """Neo's merge takes weight-adapter objects, ``diff`` and ``set``: a Forge ``("lora", …)`` tuple raises (and
    fails the whole generation), which is why the Neo takeover hands it adapters."""
    from backend.patcher.lora import merge_lora_to_weight

    base = torch.zeros(4, 3)
    patch = ("lora", (torch.ones(4, 1), torch.ones(1, 3), 1.0, None, None))
    try:
        merge_lora_to_weight([(1.0, patch, 1.0, None, None)], base, "contract")
        raise AssertionError("Neo merged a Forge lora tuple")
    except ValueError:
        pass


def patch_types_merge_as_our_delta() -> None:
    from lora_ext.hosts.neo import NeoLoraTakeover

    forge.merges_as_our_delta(NeoLoraTakeover.patch_value.__get__(NeoLoraTakeover.__new__(NeoLoraTakeover)))


def the_memory_manager_says_what_is_offloaded() -> None:
    """ComfyUI's: a loaded model's ``model_offloaded_memory()`` (no ``model_accelerated``)."""
    from backend import memory_management

    entries = memory_management.current_loaded_models
    assert entries and all(isinstance(entry.model_offloaded_memory(), int) for entry in entries)
    assert any(entry.model is engine().forge_objects.unet for entry in entries)


def online_mode_is_a_dynamic_argument() -> None:
    from backend.args import dynamic_args

    assert isinstance(dynamic_args.get("online_lora", False), bool)


CHECKS = (
    *common.CHECKS,
    forge.the_checkpoint_loads_lazily,
    forge.the_engine_keeps_its_torch_modules_in_forge_objects,
    forge.text_encoders_sit_in_a_plain_module_by_name,
    linear_layers_subclass_torch_s,
    forge.transformer_blocks_add_residuals_in_place,
    forge.forge_s_gradient_checkpointing_is_not_implemented,
    the_patcher_is_comfyui_s_with_backups_shared_by_clones,
    forge_s_patch_tuples_are_refused,
    patch_types_merge_as_our_delta,
    forge.lora_hashes_are_the_whole_file_s_sha256,
    the_memory_manager_says_what_is_offloaded,
    online_mode_is_a_dynamic_argument,
    forge.the_vae_s_posterior_comes_from_its_encoder,
    forge.learned_conditioning_is_made_in_inference_mode,
)
