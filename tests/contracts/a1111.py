"""AUTOMATIC1111 v1.10.1 (kklouzal/stable-diffusion-webui ``82a973c04367123ae98bd9abdf80d9eda9b910e2``, tag v1.10.1):
what ``lora_ext/hosts/a1111.py``, ``a1111_loader.py``, ``ldm.py`` and ``webui.py`` rely on. Needs a loaded SD1
checkpoint. ``tests/fake_webui`` implements the same; reForge keeps most of it (``reforge.py`` reuses these checks).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import sys
import tempfile
from collections.abc import Iterator

import torch

from . import common

UNET_LAYER = "input_blocks.1.1.transformer_blocks.0.attn1.to_q"  # ldm (CompVis) names
TE_LAYER = "transformer.text_model.encoder.layers.0.self_attn.q_proj"  # HF CLIP under the embedder's ``wrapped``
# what ``WebUIHostBase.generate`` passes to ``StableDiffusionProcessingTxt2Img``
TXT2IMG_FIELDS = (
    "sd_model",
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "cfg_scale",
    "width",
    "height",
    "batch_size",
    "do_not_save_grid",
    "do_not_save_samples",
    "override_settings",
)


def sd1_model():
    model = common.loaded_model()
    assert model is not None, "no checkpoint loaded"
    assert not getattr(model, "is_sdxl", False) and not getattr(model, "is_sd2", False), "needs an SD1 checkpoint"
    return model


# -- the model ---------------------------------------------------------------------------------------------------
def the_model_is_an_ldm_model_with_compvis_names() -> None:
    """``sd_model.model.diffusion_model``: ldm's UNet (``input_blocks``…, torch ``Linear`` layers by ldm name), the
    layout our key map reads and our loader patches."""
    from lora_ext.hosts.ldm import detect_family

    model = sd1_model()
    assert detect_family(model) == "sd1"
    unet = model.model.diffusion_model
    for name in ("input_blocks", "middle_block", "output_blocks"):
        assert isinstance(getattr(unet, name), torch.nn.Module), name
    assert isinstance(unet.get_submodule(UNET_LAYER), torch.nn.Linear)
    assert isinstance(model.first_stage_model, torch.nn.Module)
    assert getattr(model, "parameterization", "eps") in ("eps", "v")


def the_sd1_text_encoder_is_hf_clip_under_wrapped() -> None:
    """``cond_stage_model`` is the WebUI's custom-words wrapper; ``.wrapped`` is ldm's ``FrozenCLIPEmbedder`` with an
    HF ``CLIPTextModel`` at ``.transformer`` (kohya's ``lora_te_text_model_…`` names) and its tokenizer."""
    from lora_ext.hosts.ldm import ldm_parts

    model = sd1_model()
    wrapped = model.cond_stage_model.wrapped
    assert isinstance(wrapped.get_submodule(TE_LAYER), torch.nn.Linear)
    assert callable(wrapped.tokenizer) and hasattr(wrapped.tokenizer, "convert_tokens_to_ids")
    parts = ldm_parts(model)
    assert parts.unet is model.model.diffusion_model
    ((encoder,),) = [parts.text_encoders]
    assert encoder.kind == "hf_clip" and encoder.root is wrapped


def weights_are_ordinary_tensors() -> None:
    """Not inference tensors: our patcher tells a foreign write by the weight's ``_version``."""
    model = sd1_model()
    for weight in (
        model.model.diffusion_model.get_submodule(UNET_LAYER).weight,
        model.cond_stage_model.wrapped.get_submodule(TE_LAYER).weight,
    ):
        assert not weight.is_inference()
        assert isinstance(weight._version, int)


def the_checkpoint_names_itself() -> None:
    """``sd_checkpoint_info`` (``name_for_extra``, ``title``, legacy ``hash``) and ``sd_model_hash``: the model line,
    the saved file's ``ss_sd_model_name`` and the previews' checkpoint pin."""
    model = sd1_model()
    info = model.sd_checkpoint_info
    for name in ("name_for_extra", "title", "hash"):
        assert isinstance(getattr(info, name), str), name
    assert isinstance(model.sd_model_hash, str)


# -- training on the loaded model ----------------------------------------------------------------------------------
def the_unet_runs_without_ldm_s_checkpointing() -> None:
    """The WebUI loads ldm with ``use_checkpoint=False``: ldm's reentrant ``CheckpointFunction`` would drop the
    gradients of our LoRA hooks (our own checkpointing wraps whole blocks, ``training/inject.py``)."""
    unet = sd1_model().model.diffusion_model
    blocks = [m for m in unet.modules() if type(m).__name__ in ("BasicTransformerBlock", "ResBlock")]
    assert blocks
    for block in blocks:
        flag = getattr(block, "checkpoint", getattr(block, "use_checkpoint", None))
        assert flag is False, f"{type(block).__name__} checkpoints ({flag!r})"


def the_schedule_and_the_vae_posterior() -> None:
    """``alphas_cumprod`` (1000 steps), ``encode_first_stage`` → ldm's ``DiagonalGaussianDistribution`` (we draw its
    sample with our own generator) and ``get_first_stage_encoding`` (the scale factor)."""
    model = sd1_model()
    assert model.alphas_cumprod.numel() == 1000
    vae = next(model.first_stage_model.parameters())
    with torch.no_grad():
        posterior = model.encode_first_stage(torch.zeros(1, 3, 16, 16, dtype=vae.dtype, device=vae.device))
        assert posterior.mean.shape == posterior.std.shape == (1, 4, 2, 2), type(posterior)
        encoded = model.get_first_stage_encoding(posterior.mean)
    torch.testing.assert_close(encoded, posterior.mean * model.scale_factor)


@contextlib.contextmanager
def _probes(layers: dict[str, torch.nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks adding a zero that requires grad to each layer's output (as our trainer's hooks add ΔW·x)."""
    added: dict[str, torch.Tensor] = {}

    def hook_for(name):
        def hook(_module, _inputs, output):
            added[name] = torch.zeros((), dtype=output.dtype, device=output.device, requires_grad=True)
            return output + added[name]

        return hook

    handles = [layer.register_forward_hook(hook_for(name)) for name, layer in layers.items()]
    try:
        yield added
    finally:
        for handle in handles:
            handle.remove()


def hooks_on_its_layers_train_through_conditioning_and_apply_model() -> None:
    """Outside ``no_grad``, ``get_learned_conditioning`` and ``apply_model(x, t, cond)`` carry gradients from forward
    hooks on the text encoder's and the UNet's layers (what training on the loaded model needs)."""
    model = sd1_model()
    unet = model.model.diffusion_model
    parameter = next(unet.parameters())
    layers = {"text encoder": model.cond_stage_model.wrapped.get_submodule(TE_LAYER)}
    layers["unet"] = unet.get_submodule(UNET_LAYER)
    with _probes(layers) as added, torch.enable_grad():
        cond = model.get_learned_conditioning(["train tools contract"])
        noisy = torch.zeros(1, 4, 8, 8, dtype=parameter.dtype, device=parameter.device)
        timesteps = torch.tensor([500], device=parameter.device)
        loss = model.apply_model(noisy, timesteps, cond.to(parameter.dtype)).float().square().mean()
        missing = [name for name in layers if name not in added]
        assert not missing, f"the forward hooks of {missing} were not called"
        # only the probes' gradients: the WebUI's own weights may require grad, and .backward() would give each a
        # .grad (the whole UNet's size, kept)
        gradients = torch.autograd.grad(loss, [added[name] for name in layers], allow_unused=True)
    for name, gradient in zip(layers, gradients, strict=True):
        assert gradient is not None, f"no gradient reached the {name} layer's hook"


def the_flags_we_read_for_training() -> None:
    """``--lowvram``/``--medvram``/``--medvram-sdxl``, ``devices.fp8`` (FP8 weight) and ``sd_unet.current_unet``
    (an alternate UNet) decide ``capabilities()``."""
    from modules import devices, sd_unet, shared

    for name in ("lowvram", "medvram", "medvram_sdxl"):
        assert isinstance(getattr(shared.cmd_opts, name), bool), name
    assert isinstance(devices.fp8, bool)
    assert hasattr(sd_unet, "current_unet")


# -- the WebUI around the model ----------------------------------------------------------------------------------------
def the_folders_and_logins_we_read() -> None:
    """``cmd_opts.lora_dir`` (the built-in's ``--lora-dir``), ``paths.models_path``/``data_path``, ``--api-auth``."""
    from modules import paths, shared

    assert isinstance(shared.cmd_opts.lora_dir, str) and shared.cmd_opts.lora_dir
    assert isinstance(paths.models_path, str) and isinstance(paths.data_path, str)
    for name in ("api_auth", "gradio_auth", "gradio_auth_path"):
        assert hasattr(shared.cmd_opts, name), name


def the_options_we_read_and_register() -> None:
    """The WebUI's options our loader reads, ours registered through ``OptionInfo``/``add_option``, and
    ``opts.onchange(key, func, call=False)``."""
    from modules import shared

    from lora_ext import settings

    labels = shared.opts.data_labels
    for key in ("persistent_cond_cache", "extra_networks_default_multiplier", "sd_lora", "lora_add_hashes_to_infotext"):
        assert key in labels, key
    assert settings.LORA_LOADER in labels and labels[settings.LORA_LOADER].section[0] == settings.SECTION[0]
    assert "call" in inspect.signature(shared.opts.onchange).parameters
    assert isinstance(shared.OptionInfo(0, "contract").info("contract"), shared.OptionInfo)


def token_params_split_positional_and_named() -> None:
    """``ExtraNetworkParams``: ``items`` split into ``positional`` and ``named`` (``unet=0.2``), as our spec reads."""
    from modules import extra_networks

    params = extra_networks.ExtraNetworkParams(items=["x", "0.5", "unet=0.2"])
    assert params.positional == ["x", "0.5"] and params.named == {"unet": "0.2"}


def txt2img_takes_what_we_pass_and_closes_without_with() -> None:
    """``StableDiffusionProcessingTxt2Img`` takes the fields ``generate`` passes, has ``disable_extra_networks``,
    ``comments`` and ``extra_generation_params``, and ``close()`` but no ``__enter__`` (``contextlib.closing``)."""
    from modules import processing, shared

    parameters = inspect.signature(processing.StableDiffusionProcessingTxt2Img).parameters
    missing = [name for name in TXT2IMG_FIELDS if name not in parameters]
    assert not missing, missing
    p = processing.StableDiffusionProcessingTxt2Img(sd_model=shared.sd_model, prompt="contract", override_settings={})
    assert p.disable_extra_networks is False
    assert isinstance(p.comments, dict) and isinstance(p.extra_generation_params, dict)
    assert callable(p.close) and not hasattr(p, "__enter__")
    assert callable(processing.process_images) and callable(shared.state.assign_current_image)
    # a render's progress: the samplers count in shared.state (``_sampler_steps`` reads them)
    assert isinstance(shared.state.sampling_step, int) and isinstance(shared.state.sampling_steps, int)


def the_hires_conditioning_cache_is_shared_too() -> None:
    """``cached_hr_c``/``cached_hr_uc`` on ``StableDiffusionProcessingTxt2Img`` are shared the same way (emptied with
    the others, ``drop_cached_conditioning``)."""
    from modules import processing

    cls = processing.StableDiffusionProcessingTxt2Img
    p = cls(prompt="contract")
    for name in ("cached_hr_c", "cached_hr_uc"):
        assert isinstance(vars(cls).get(name), list), name
        assert getattr(p, name) is vars(cls)[name], name


def infotext_calls_a_callable_value() -> None:
    """``create_infotext`` calls a callable in ``extra_generation_params`` (our ``Lora hashes`` are resolved late)."""
    from modules import processing, shared

    p = processing.StableDiffusionProcessingTxt2Img(sd_model=shared.sd_model, prompt="contract", seed=1)
    p.extra_generation_params["Train Tools contract"] = lambda **_: "resolved"
    text = processing.create_infotext(p, ["contract"], [1], [1], all_negative_prompts=[""])
    assert "Train Tools contract: resolved" in text, text


def the_builtin_restores_its_backup_in_place_and_idles_without_networks() -> None:
    """``networks.network_restore_weights_from_backup`` copies a module's backup into its own weight (what we call
    to make the built-in inert), and with ``loaded_networks`` empty and ``network_current_names == ()`` the built-in
    writes no weight at a forward (so it never undoes our merge)."""
    networks = sys.modules["networks"]
    layer = torch.nn.Linear(3, 2)
    original, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    layer.network_layer_name = "train_tools_contract"
    layer.network_weights_backup, layer.network_bias_backup = original.clone(), bias.clone()
    weight = layer.weight
    with torch.no_grad():  # as ``make_builtin_inert`` calls it: the built-in copies into a leaf that requires grad
        weight.add_(1.0)
        networks.network_restore_weights_from_backup(layer)
    assert layer.weight is weight and torch.equal(weight, original)
    saved = list(networks.loaded_networks)
    networks.loaded_networks.clear()
    try:
        layer.network_current_names = ()
        version = weight._version
        networks.network_apply_weights(layer)
        with torch.no_grad():
            layer(torch.zeros(1, 3))
        assert weight._version == version, "the built-in wrote a weight with no network loaded"
    finally:
        networks.loaded_networks[:] = saved


def lora_hashes_are_the_tensor_data_hash() -> None:
    """The built-in's ``Lora hashes`` come from ``hashes.sha256(…, use_addnet_hash=True)``: the sha256 of a
    safetensors file's tensor data (our ``addnet_hash``); without the flag, of the whole file."""
    from modules import hashes
    from safetensors.torch import save_file

    from lora_ext.formats.hashes import addnet_hash, lora_short_hash, sha256_file

    tensors = {"x.lora_down.weight": torch.randn(2, 3)}
    with tempfile.TemporaryDirectory(prefix="train-tools-contract-") as folder:
        path = os.path.join(folder, "x.safetensors")
        save_file(tensors, path, metadata={"contract": "train tools"})
        with open(path, "rb") as handle:  # a title of its own: the WebUI caches hashes by title
            title = "train-tools-contract/" + hashlib.sha1(handle.read()).hexdigest()
        found = hashes.sha256(path, title, use_addnet_hash=True)
        whole = hashes.sha256(path, title + "/whole", use_addnet_hash=False)
        assert found == addnet_hash(path) and found[:12] == lora_short_hash(path), found
        assert whole == sha256_file(path) != found, whole


CHECKS = (
    *common.CHECKS,
    the_model_is_an_ldm_model_with_compvis_names,
    the_sd1_text_encoder_is_hf_clip_under_wrapped,
    weights_are_ordinary_tensors,
    the_checkpoint_names_itself,
    the_unet_runs_without_ldm_s_checkpointing,
    the_schedule_and_the_vae_posterior,
    hooks_on_its_layers_train_through_conditioning_and_apply_model,
    the_flags_we_read_for_training,
    the_folders_and_logins_we_read,
    the_options_we_read_and_register,
    token_params_split_positional_and_named,
    txt2img_takes_what_we_pass_and_closes_without_with,
    the_hires_conditioning_cache_is_shared_too,
    infotext_calls_a_callable_value,
    the_builtin_restores_its_backup_in_place_and_idles_without_networks,
    lora_hashes_are_the_tensor_data_hash,
)
