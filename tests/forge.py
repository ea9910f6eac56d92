"""A fake Forge (or reForge) around the fake WebUI: its packages on ``sys.path``, its placeholder
model, its lazy-loading ``process_images`` and a built-in LoRA that writes no weight.

Use ``with fake_forge(FORGE_ROOT) as forge:`` (or ``REFORGE_ROOT``); everything is undone
afterwards, so no later test sees a Forge.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import torch
from webui import install_fake_webui, reset_fake_webui

TESTS = Path(__file__).resolve().parent
FORGE_ROOT = TESTS / "fake_forge"
REFORGE_ROOT = TESTS / "fake_reforge"
FORGE_PACKAGES = ("modules_forge", "backend", "ldm_patched")
# the UNet weight the fake reForge and Neo built-ins patch (keys below ``sd_model.model`` / Neo's KModel: same name)
REFORGE_BUILTIN_KEY = "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"


class FakeInitialModel:
    """Forge's ``shared.sd_model`` until the first generation loads the checkpoint (truthy, no weights)."""

    def __init__(self):
        self.cond_stage_model = None
        self.chunk_length = 75

    def get_prompt_lengths_on_ui(self, prompt):
        count = len(prompt.replace(" ", ",").split(","))
        return count, math.ceil(max(count, 1) / self.chunk_length) * self.chunk_length


def make_builtin_lora() -> types.ModuleType:
    """Forge's ``sd_forge_lora``: ``networks.loaded_networks`` and an ``ExtraNetworkLora`` that only
    records patches in ``forge_objects_after_applying_lora`` (Forge merges them at load time with its
    own backups; here they act per forward, so the weights stay as loaded)."""
    from modules import extra_networks

    networks = types.ModuleType("networks")
    networks.loaded_networks = []
    networks.activations = []

    class ExtraNetworkLora(extra_networks.ExtraNetwork):
        def __init__(self):
            super().__init__("lora")

        def activate(self, p, params_list):
            wanted = {
                str(params.items[0]): float(params.items[1]) if len(params.items) > 1 else 1.0 for params in params_list
            }
            networks.activations.append(wanted)
            networks.loaded_networks[:] = list(wanted)
            from modules import shared

            model = p.sd_model or shared.sd_model
            if getattr(model, "current_lora_hash", None) == str(sorted(wanted.items())):
                return  # Forge's networks.load_networks: the same LoRAs as last time, nothing to do
            # as the real load_networks: from the originals, one clone per file (load_lora_for_models); none without
            unet = model.forge_objects_original.unet
            for name, multiplier in wanted.items():
                unet = unet.clone()
                if hasattr(unet, "lora_loader"):  # Forge: add_patches (the fake's files are empty)
                    unet.add_patches(filename=name, patches={}, strength_patch=multiplier)
                else:  # reForge's and Neo's ComfyUI patchers: the file stands in as a diff of ones on one UNet weight
                    weight = dict(unet.model.named_parameters())[REFORGE_BUILTIN_KEY]
                    unet.add_patches({REFORGE_BUILTIN_KEY: ("diff", (torch.ones_like(weight),))}, multiplier)
            model.forge_objects_after_applying_lora = model.forge_objects_original.shallow_copy()
            model.forge_objects_after_applying_lora.unet = unet
            model.current_lora_hash = str(sorted(wanted.items()))
            if wanted:
                p.extra_generation_params["Lora hashes"] = ", ".join(f"{name}: forge" for name in wanted)

        def deactivate(self, p):
            pass

    def before_ui():
        networks.extra_network_lora = ExtraNetworkLora()
        extra_networks.register_extra_network(networks.extra_network_lora)
        extra_networks.register_extra_network_alias(networks.extra_network_lora, "lyco")

    networks.before_ui = before_ui
    return networks


def forge_model_reload(forge: SimpleNamespace):
    """Forge's ``sd_models.forge_model_reload``: (re)load when ``forge_loading_parameters`` changed (or nothing is
    loaded yet), fire ``on_model_loaded``; ``forge.checkpoints`` maps a checkpoint's filename to its engine."""
    from backend import memory_management
    from modules import script_callbacks, sd_models, shared

    @torch.inference_mode()
    def reload():
        data = sd_models.model_data
        current_hash = str(data.forge_loading_parameters)
        if data.forge_hash == current_hash and not isinstance(shared.sd_model, FakeInitialModel):
            return data.sd_model, False
        memory_management.unload_all_models()
        info = data.forge_loading_parameters["checkpoint_info"]
        data.sd_model = shared.sd_model = forge.checkpoints[info.filename]
        data.forge_hash = current_hash
        script_callbacks.model_loaded_callback(shared.sd_model)
        return shared.sd_model, True

    return reload


def forge_process_images(forge: SimpleNamespace):
    """Forge's ``process_images``: ``forge_model_reload()``, extra networks into ``forge_objects``, the memory
    manager loads the UNet (moving it and merging LoRAs), and sampling — all under ``torch.inference_mode()``."""
    from backend import memory_management
    from modules import extra_networks, processing, sd_models

    def process_images(p):
        with torch.inference_mode():
            model, _ = sd_models.forge_model_reload()
            p.sd_model = model
            prompts, p.extra_network_data = extra_networks.parse_prompts([p.prompt])
            model.forge_objects = model.forge_objects_original.shallow_copy()
            if not p.disable_extra_networks:
                extra_networks.activate(p, p.extra_network_data)
            model.forge_objects = model.forge_objects_after_applying_lora.shallow_copy()
            cond = processing.learned_conditioning(p, model, prompts)
            context, y = (cond["crossattn"], cond["vector"]) if isinstance(cond, dict) else (cond, None)
            unet = model.forge_objects.unet
            memory_management.load_models_gpu([unet])
            # Forge's built-in records empty patches: a stand-in for their effect (Neo's fake built-in merges a diff)
            strength = sum(key[1] for key in getattr(unet, "lora_patches", {}))
            kmodel = unet.model

            def predict_noise(x_in, t):
                return kmodel.diffusion_model(x_in.to(kmodel.computation_dtype), timesteps=t, context=context, y=y)

            alphas = kmodel.predictor.alphas_cumprod.float()
            x = processing.euler_sample(predict_noise, processing.initial_noise(p), alphas, p.steps)
            # a stand-in for the LoRA's effect (the fake's LoRA files are empty; the tiny UNet barely moves the image)
            decoded = model.decode_first_stage(x) + 0.25 * strength
            if not p.disable_extra_networks and p.extra_network_data:
                extra_networks.deactivate(p, p.extra_network_data)
        return processing.Processed(p, processing.images_from(decoded), processing.infotext_of(p))

    return process_images


def add_checkpoint(forge: SimpleNamespace, tiny_model, name: str = "tiny", engine: str = "sd1", storage_dtype=None):
    """Forge's engine for a tiny model (``backend.loader.forge_loader``), registered as checkpoint ``name``."""
    from backend.args import dynamic_args
    from backend.loader import forge_loader
    from modules import sd_models

    dynamic_args["forge_unet_storage_dtype"] = storage_dtype
    try:
        model = forge_loader(tiny_model, engine=engine)
    finally:
        dynamic_args["forge_unet_storage_dtype"] = None
    info = sd_models.CheckpointInfo(f"/m/{name}.safetensors", name, shorthash="abcdef1234")
    model.sd_checkpoint_info, model.sd_model_hash, model.filename = info, "abcdef1234", info.filename
    forge.checkpoints[info.filename] = model
    return model


def select_checkpoint(model) -> None:
    """What Forge's checkpoint dropdown does: set ``forge_loading_parameters`` (no load, no queue lock)."""
    from modules import sd_models

    sd_models.model_data.forge_loading_parameters = {"checkpoint_info": model.sd_checkpoint_info}


@contextlib.contextmanager
def fake_forge(root: Path, monkeypatch, neo: bool = False) -> Iterator[SimpleNamespace]:
    """The fake WebUI turned into Forge (``FORGE_ROOT``; with ``neo``, Forge Neo) or reForge (``REFORGE_ROOT``),
    undone afterwards."""
    install_fake_webui()
    reset_fake_webui()
    from modules import processing, script_callbacks, shared

    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    if root == FORGE_ROOT:
        import fake_flavor

        fake_flavor.NEO = neo
    networks = make_builtin_lora()
    sys.modules["networks"] = networks
    # the built-in's options (its lora_script registers them when the WebUI loads it)
    shared.opts.add_option("sd_lora", shared.OptionInfo("None", "Add network to prompt"))
    shared.opts.add_option("lora_add_hashes_to_infotext", shared.OptionInfo(True, "Add Lora hashes to infotext"))
    script_callbacks.on_before_ui(networks.before_ui)  # built-ins load first, so their callbacks come first
    forge = SimpleNamespace(root=root, networks=networks, engine=None, checkpoints={}, neo=neo)
    if root == FORGE_ROOT:
        from modules import hashes, sd_models

        monkeypatch.setattr(hashes, "sha256", _forge_sha256)
        shared.sd_model = FakeInitialModel()
        model_data = SimpleNamespace(sd_model=shared.sd_model, forge_loading_parameters={}, forge_hash="")
        monkeypatch.setattr(sd_models, "FakeInitialModel", FakeInitialModel, raising=False)
        monkeypatch.setattr(sd_models, "model_data", model_data, raising=False)
        monkeypatch.setattr(sd_models, "forge_model_reload", forge_model_reload(forge), raising=False)
        monkeypatch.setattr(processing, "process_images", forge_process_images(forge))
    else:
        monkeypatch.setattr(processing, "process_images", reforge_process_images())
    try:
        yield forge
    finally:
        sys.path.remove(str(root))
        for name in list(sys.modules):
            if name.split(".")[0] in (*FORGE_PACKAGES, "networks", "fake_flavor"):
                del sys.modules[name]
        importlib.invalidate_caches()
        reset_fake_webui()


def _forge_sha256(filename, title, use_addnet_hash=False):
    """Forge's ``modules.hashes.sha256``: the whole file, whatever ``use_addnet_hash`` says."""
    import hashlib

    with open(filename, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


class ForgeObjects(SimpleNamespace):
    def shallow_copy(self):
        return ForgeObjects(**vars(self))


def reforge_model(tiny_ldm_model):
    """reForge's ``sd_model``: the ldm shell with ``forge_objects`` (ComfyUI patchers over its own modules),
    weights made under inference mode. Needs ``REFORGE_ROOT`` on ``sys.path`` (``fake_forge``)."""
    import copy

    from ldm_patched.modules import model_management
    from ldm_patched.modules.model_patcher import ModelPatcher
    from ldm_patched.modules.sd import CLIP

    with torch.inference_mode():
        model = copy.deepcopy(tiny_ldm_model)
    device = model_management.get_torch_device()
    model.forge_objects = ForgeObjects(
        unet=ModelPatcher(model.model, load_device=device, offload_device=device),
        clip=CLIP(model.cond_stage_model, load_device=device, offload_device=device),
        vae=ModelPatcher(model.first_stage_model, load_device=device, offload_device=device),
    )
    model.forge_objects_original = model.forge_objects.shallow_copy()
    model.forge_objects_after_applying_lora = model.forge_objects.shallow_copy()
    model.current_lora_hash = str([])
    return model


def reforge_process_images():
    """reForge's ``process_images``: under ``torch.inference_mode()``, ``forge_objects`` reset to the originals,
    extra networks activated, ``forge_objects_after_applying_lora`` taken, and the memory manager loads the
    text encoder and UNet patchers (merging their patches) before conditioning and sampling."""
    from ldm_patched.modules import model_management
    from modules import extra_networks, processing, shared

    def process_images(p):
        model = shared.sd_model
        prompts, p.extra_network_data = extra_networks.parse_prompts([p.prompt])
        p.all_prompts = prompts
        with torch.inference_mode():
            model.forge_objects = model.forge_objects_original.shallow_copy()
            if not p.disable_extra_networks:
                extra_networks.activate(p, p.extra_network_data)
            model.forge_objects = model.forge_objects_after_applying_lora.shallow_copy()
            model_management.load_models_gpu([model.forge_objects.clip.patcher])
            cond = processing.learned_conditioning(p, model, prompts)
            model_management.load_models_gpu([model.forge_objects.unet])
            x = processing.euler_sample(
                lambda x_in, t: model.apply_model(x_in, t, cond),
                processing.initial_noise(p),
                model.alphas_cumprod.float(),
                p.steps,
            )
            decoded = model.decode_first_stage(x)
            if not p.disable_extra_networks and p.extra_network_data:
                extra_networks.deactivate(p, p.extra_network_data)
        return processing.Processed(p, processing.images_from(decoded), processing.infotext_of(p))

    return process_images
