"""Forge (lllyasviel/stable-diffusion-webui-forge main ``dfdcbab685e57677014f05a3309b48cc87383167``): what
``lora_ext/hosts/forge.py`` and ``forge_loader.py`` rely on. Needs a loaded SD1 engine (after one generation).
``tests/fake_forge`` implements the same; ``docs/hosts.md`` says why each matters."""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile

import torch

from . import common


def engine():
    model = common.loaded_model()
    assert type(model).__name__ == "StableDiffusion", f"needs a loaded SD1 engine, not {type(model).__name__}"
    return model


def the_checkpoint_loads_lazily() -> None:
    """Until the first generation ``shared.sd_model`` is ``FakeInitialModel``; the dropdown only records
    ``forge_loading_parameters``, ``forge_model_reload()`` loads them."""
    from modules import sd_models

    assert isinstance(sd_models.FakeInitialModel, type)
    assert isinstance(sd_models.model_data.forge_loading_parameters, dict)
    assert callable(sd_models.forge_model_reload)


def the_engine_keeps_its_torch_modules_in_forge_objects() -> None:
    model = engine()
    assert model.is_sd1 and not getattr(model, "is_sdxl", False)
    for name in ("forge_objects", "forge_objects_original", "forge_objects_after_applying_lora"):
        assert callable(getattr(model, name).shallow_copy), name
    assert isinstance(model.current_lora_hash, str)
    kmodel = model.forge_objects.unet.model
    unet = kmodel.diffusion_model
    for name in ("input_blocks", "middle_block", "output_blocks"):
        assert hasattr(unet, name), name
    assert "input_blocks.1.1.transformer_blocks.0.attn1.to_q" in dict(unet.named_modules())  # ldm names
    assert kmodel.predictor.alphas_cumprod.numel() == 1000
    assert kmodel.predictor.prediction_type in ("epsilon", "v_prediction")
    assert isinstance(kmodel.computation_dtype, torch.dtype)


def text_encoders_sit_in_a_plain_module_by_name() -> None:
    """``forge_objects.clip.cond_stage_model`` is a ``JointTextEncoder``: Forge's own ``ModuleDict``, a plain
    ``nn.Module`` (no ``in``, no ``[name]``): read its children by name. HF CLIP layout inside."""
    encoders = engine().forge_objects.clip.cond_stage_model
    assert type(encoders).__name__ == "JointTextEncoder"
    assert not isinstance(encoders, torch.nn.ModuleDict)
    children = dict(encoders.named_children())
    assert list(children) == ["clip_l"], list(children)
    assert children["clip_l"] is engine().text_processing_engine.text_encoder
    layer = children["clip_l"].get_submodule("transformer.text_model.encoder.layers.0.self_attn.q_proj")
    assert common.is_linear_like(layer)


def linear_layers_are_forge_s_own() -> None:
    """Forge's ``Linear`` is not an ``nn.Linear``: our trainer finds it by shape (``is_linear``)."""
    layer = engine().forge_objects.unet.model.diffusion_model.get_submodule(
        "input_blocks.1.1.transformer_blocks.0.attn1.to_q"
    )
    assert not isinstance(layer, torch.nn.Linear), type(layer).__mro__
    assert common.is_linear_like(layer)


def _transformer_block():
    unet = engine().forge_objects.unet.model.diffusion_model
    return next(m for m in unet.modules() if type(m).__name__ == "BasicTransformerBlock")


def _ordinary_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy with ordinary tensors (Forge makes its weights in inference mode: autograd cannot save them)."""
    twin = copy.deepcopy(module)
    for child in twin.modules():
        for name, parameter in list(child._parameters.items()):
            if parameter is not None:
                child._parameters[name] = torch.nn.Parameter(parameter.detach().clone(), requires_grad=False)
    return twin


def transformer_blocks_add_residuals_in_place() -> None:
    """``BasicTransformerBlock`` writes ``x += n`` into the tensor its norms read (autograd through it fails), with
    checkpointing off; our session hooks (``hosts/inplace_residuals.py``) make a backward pass through it work."""
    from lora_ext.hosts.inplace_residuals import copied_norm_inputs

    block = _ordinary_copy(_transformer_block())
    assert not block.checkpoint
    parameter = next(block.parameters())
    width, context_width = block.norm1.normalized_shape[0], block.attn2.to_k.in_features
    x = torch.randn(1, 4, width, dtype=parameter.dtype, device=parameter.device)
    context = torch.randn(1, 3, context_width, dtype=parameter.dtype, device=parameter.device)
    with torch.no_grad():
        version = x._version
        block(x, context=context)
    assert x._version > version, "the block no longer changes its input in place"
    x = x.detach().requires_grad_(True)
    try:
        block(x.clone(), context=context).sum().backward()
        raise AssertionError("a backward pass through the block works without our hooks")
    except RuntimeError as error:
        assert "inplace operation" in str(error), error
    with copied_norm_inputs(block):
        block(x.clone(), context=context).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def forge_s_gradient_checkpointing_is_not_implemented() -> None:
    from backend.nn import unet

    try:
        unet.checkpoint(lambda: None, (), None, True)
        raise AssertionError("backend.nn.unet.checkpoint works now")
    except NotImplementedError:
        pass


def merges_as_our_delta(patch_value) -> None:
    """The WebUI's ``merge_lora_to_weight`` forms, from ``patch_value``'s patches (what our takeover hands its
    patcher for LoRA, LoHa, LoKr, and a ``diff`` for the rest), the ΔW we compute."""
    from backend.patcher.lora import merge_lora_to_weight

    from lora_ext.formats import parse_module
    from lora_ext.loading.patcher import ParamPatch

    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.3

    base = rand(8, 6)
    files = {
        "lora": {"lora_up.weight": rand(8, 2), "lora_down.weight": rand(2, 6), "alpha": torch.tensor(1.0)},
        "loha": {"hada_w1_a": rand(8, 2), "hada_w1_b": rand(2, 6), "hada_w2_a": rand(8, 2), "hada_w2_b": rand(2, 6)},
        "lokr": {"lokr_w1": rand(2, 3), "lokr_w2": rand(4, 2)},
        "ia3 (as a diff)": {"weight": rand(6), "on_input": torch.tensor(True)},
    }
    for name, tensors in files.items():
        adapter = parse_module(tensors)
        assert adapter is not None, name
        patch = patch_value([ParamPatch(adapter, 0.7)], tuple(base.shape), base)
        merged = merge_lora_to_weight([(1.0, patch, 1.0, None, None)], base.clone(), "contract")
        expected = base + adapter.delta_weight(base, 0.7)
        torch.testing.assert_close(merged, expected, rtol=1e-5, atol=1e-6, msg=name)


def patch_types_merge_as_our_delta() -> None:
    """Forge takes our ``lora``/``loha``/``lokr`` tuples and ``diff``s (``hosts/forge_loader.forge_patch``)."""
    from lora_ext.hosts.forge_loader import forge_patch

    merges_as_our_delta(forge_patch)


def lora_hashes_are_the_whole_file_s_sha256() -> None:
    """Forge writes ``Lora hashes`` as ``hashes.sha256(…, use_addnet_hash=…)`` and ignores the addnet flag."""
    from modules import hashes

    data = os.urandom(4096)
    with tempfile.TemporaryDirectory(prefix="train-tools-contract-") as folder:
        path = os.path.join(folder, "x.safetensors")
        with open(path, "wb") as handle:
            handle.write(data)
        found = hashes.sha256(path, f"train-tools-contract/{hashlib.sha1(data).hexdigest()}", use_addnet_hash=True)
    assert found == hashlib.sha256(data).hexdigest(), found


def the_memory_manager_says_what_sits_in_cpu_swap() -> None:
    from backend import memory_management

    entries = memory_management.current_loaded_models
    assert entries and all(isinstance(entry.model_accelerated, bool) for entry in entries)
    assert any(entry.model is engine().forge_objects.unet for entry in entries)


def the_lora_loader_keeps_its_backups_by_key() -> None:
    """Weights a Forge LoRA merged: their originals are in ``unet.model.lora_loader.backup`` (training copies them)."""
    loader = engine().forge_objects.unet.model.lora_loader
    assert isinstance(loader.backup, dict)
    assert callable(loader.refresh)


def the_vae_s_posterior_comes_from_its_encoder() -> None:
    """We sample latents ourselves (``encode`` draws from the global generator): ``encoder``, optional
    ``quant_conv``, ``backend.nn.vae.DiagonalGaussianDistribution``, then ``process_in``."""
    from backend.nn.vae import DiagonalGaussianDistribution

    vae = engine().forge_objects.vae.first_stage_model
    parameter = next(vae.parameters())
    with torch.no_grad():
        moments = vae.encoder(torch.zeros(1, 3, 16, 16, dtype=parameter.dtype, device=parameter.device))
        if vae.quant_conv is not None:
            moments = vae.quant_conv(moments)
    posterior = DiagonalGaussianDistribution(moments)
    assert posterior.mean.shape == posterior.std.shape == (1, 4, 2, 2), posterior.mean.shape
    assert callable(vae.process_in)


def learned_conditioning_is_made_in_inference_mode() -> None:
    """``get_learned_conditioning`` returns inference tensors (we call the text engine ourselves, outside it)."""
    model = engine()
    assert model.get_learned_conditioning(["contract"]).is_inference()
    assert not model.text_processing_engine(["contract"]).is_inference()


CHECKS = (
    *common.CHECKS,
    the_checkpoint_loads_lazily,
    the_engine_keeps_its_torch_modules_in_forge_objects,
    text_encoders_sit_in_a_plain_module_by_name,
    linear_layers_are_forge_s_own,
    transformer_blocks_add_residuals_in_place,
    forge_s_gradient_checkpointing_is_not_implemented,
    patch_types_merge_as_our_delta,
    lora_hashes_are_the_whole_file_s_sha256,
    the_memory_manager_says_what_sits_in_cpu_swap,
    the_lora_loader_keeps_its_backups_by_key,
    the_vae_s_posterior_comes_from_its_encoder,
    learned_conditioning_is_made_in_inference_mode,
)
