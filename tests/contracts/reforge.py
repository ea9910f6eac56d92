"""reForge (Panchovix/stable-diffusion-webui-reForge main ``3b56b268ad9158ee8b30900973b6ccda4ec22241``): what
``lora_ext/hosts/reforge.py`` (our loader on its A1111 shell, training refused), ``a1111_loader.py``, ``ldm.py`` and
``webui.py`` rely on. reForge keeps A1111's ldm model object and shell (the checks shared with ``a1111.py``), with
ComfyUI's ``ModelPatcher`` (``ldm_patched``) under ``forge_objects`` and a Forge-style built-in Lora. Needs a loaded
SD1 checkpoint. ``tests/fake_reforge`` with ``tests/forge.py`` implements the same."""

from __future__ import annotations

import sys

import torch

from . import a1111, common

NO_LORA = str([])  # ``current_lora_hash`` for "no LoRA": the built-in's ``str(compiled_lora_targets)`` of nothing


def _contains(root: torch.nn.Module, module: torch.nn.Module) -> bool:
    return any(child is module for child in root.modules())


def the_ldm_shell_shares_its_modules_with_forge_objects() -> None:
    """What our loader patches (``sd_model.model.diffusion_model``, the text encoder under ``cond_stage_model.wrapped``)
    is what reForge's patchers sample with and unpatch: one module each, not copies."""
    model = a1111.sd1_model()
    original = model.forge_objects_original
    assert _contains(original.unet.model, model.model.diffusion_model)
    assert _contains(original.clip.patcher.model, model.cond_stage_model.wrapped.transformer)
    for name in ("forge_objects", "forge_objects_after_applying_lora"):
        objects = getattr(model, name)
        assert objects.unet.model is original.unet.model, name
    assert callable(original.shallow_copy)


def the_patchers_share_one_backup_that_unpatch_empties() -> None:
    """``ModelPatcher.clone()`` shares ``backup`` (one dict for every clone); ``add_patches`` draws a new
    ``patches_uuid``; ``patch_model`` merges and backs up, so ``backup`` is non-empty exactly while a merge is in the
    weights; ``unpatch_model(unpatch_weights=True)`` puts the originals back and empties it (a scratch model here)."""
    from ldm_patched.modules.model_patcher import ModelPatcher

    device = torch.device("cpu")
    scratch = torch.nn.Sequential(torch.nn.Linear(3, 2))
    original = scratch[0].weight.detach().clone()
    patcher = ModelPatcher(scratch, load_device=device, offload_device=device)
    clone = patcher.clone()
    assert clone.backup is patcher.backup and clone.patches_uuid == patcher.patches_uuid
    clone.add_patches({"0.weight": ("diff", (torch.ones(2, 3),))}, 1.0)
    assert clone.patches_uuid != patcher.patches_uuid
    assert not patcher.backup
    clone.patch_model(device)
    torch.testing.assert_close(scratch[0].weight.detach(), original + 1)
    assert patcher.backup, "a merge is in the weights and the shared backup is empty"
    patcher.unpatch_model(unpatch_weights=True)
    assert not patcher.backup
    assert torch.equal(scratch[0].weight.detach(), original)


def the_builtin_s_no_lora_state() -> None:
    """The built-in Lora activated with no token leaves ``current_lora_hash == str([])`` and the unpatched originals
    in ``forge_objects_after_applying_lora`` (the state our loader sets to make it inert)."""
    from modules import processing, shared

    networks = sys.modules["networks"]
    model = a1111.sd1_model()
    # copies: the built-in sets the unet and clip of the ``forge_objects`` it finds
    saved = (model.forge_objects.shallow_copy(), model.forge_objects_after_applying_lora, model.current_lora_hash)
    model.current_lora_hash = "train-tools-contract"
    try:
        p = processing.StableDiffusionProcessingTxt2Img(sd_model=shared.sd_model, prompt="contract")
        p.all_prompts = ["contract"]
        networks.extra_network_lora.activate(p, [])
        assert model.current_lora_hash == NO_LORA, model.current_lora_hash
        after = model.forge_objects_after_applying_lora
        assert after.unet is model.forge_objects_original.unet
        assert after.clip is model.forge_objects_original.clip
    finally:
        model.forge_objects, model.forge_objects_after_applying_lora, model.current_lora_hash = saved


CHECKS = (
    *common.CHECKS,
    a1111.the_model_is_an_ldm_model_with_compvis_names,
    a1111.the_sd1_text_encoder_is_hf_clip_under_wrapped,
    a1111.the_checkpoint_names_itself,
    the_ldm_shell_shares_its_modules_with_forge_objects,
    the_patchers_share_one_backup_that_unpatch_empties,
    the_builtin_s_no_lora_state,
    a1111.the_folders_and_logins_we_read,
    a1111.the_options_we_read_and_register,
    a1111.token_params_split_positional_and_named,
    a1111.txt2img_takes_what_we_pass_and_closes_without_with,
    a1111.the_hires_conditioning_cache_is_shared_too,
    a1111.infotext_calls_a_callable_value,
    a1111.lora_hashes_are_the_tensor_data_hash,
)
