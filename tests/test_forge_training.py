"""Training on Forge's loaded model (the fake Forge of ``tests/fake_forge``): no second copy, the model and
Forge's patch state handed back exactly, previews pinned and re-checked, and clean one-line refusals."""

from __future__ import annotations

import re

import pytest
from forge import FORGE_ROOT, FakeInitialModel, add_checkpoint, fake_forge, select_checkpoint
from train_support import make_dataset

from lora_ext.config import TrainConfig
from lora_ext.errors import HostUnavailable
from lora_ext.training.events import TrainEvents
from lora_ext.training.run import train_lora


@pytest.fixture
def forge(make_ldm_model, monkeypatch, tmp_path):
    with fake_forge(FORGE_ROOT, monkeypatch) as forge:
        from modules import paths, shared

        monkeypatch.setattr(paths, "data_path", str(tmp_path / "webui"))
        monkeypatch.setattr(paths, "models_path", str(tmp_path / "webui" / "models"))
        monkeypatch.setattr(shared.cmd_opts, "lora_dir", str(tmp_path / "webui" / "models" / "Lora"))
        forge.make = make_ldm_model
        yield forge


def _load(forge, layout="sd1", engine=None, storage_dtype=None, prompt="a cat <lora:x:0.8>"):
    """A checkpoint chosen in Forge's dropdown and loaded by a first generation (which also applies a LoRA)."""
    model = add_checkpoint(forge, forge.make(layout), engine=engine or layout, storage_dtype=storage_dtype)
    select_checkpoint(model)
    _generate(prompt)
    return model


def _merge_forge_lora(engine, strength: float = 0.5) -> str:
    """A LoRA Forge merged into one UNet weight (``add_patches`` + the memory manager's ``refresh_loras``)."""
    import torch
    from backend import memory_management

    kmodel = engine.forge_objects.unet.model
    key = next(k for k, _ in kmodel.named_parameters() if k.endswith("attn1.to_q.weight"))
    delta = torch.ones_like(dict(kmodel.named_parameters())[key]).clone()
    unet = engine.forge_objects_original.unet.clone()
    unet.add_patches(filename="merged.safetensors", patches={key: ("diff", (delta,))}, strength_patch=strength)
    engine.forge_objects_after_applying_lora.unet = unet
    engine.forge_objects = engine.forge_objects_after_applying_lora.shallow_copy()
    with torch.inference_mode():
        memory_management.load_models_gpu([unet])
    assert key in kmodel.lora_loader.backup
    return key


def _generate(prompt: str):
    from modules import processing

    p = processing.StableDiffusionProcessingTxt2Img(prompt=prompt, seed=3, steps=2, width=64, height=64)
    return processing.process_images(p).images[0].tobytes()


def _config(dataset, **changes) -> TrainConfig:
    values = dict(
        dataset_dir=str(dataset),
        resolution=64,
        min_bucket_reso=64,
        max_bucket_reso=128,
        rank=2,
        alpha=2.0,
        max_steps=4,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        default_repeats=1,
        save_dtype="fp32",
        seed=3,
    )
    values.update(changes)
    return TrainConfig(**values)


def _state(engine) -> dict:
    """Every tensor Forge holds for the model (object, bytes, dtype, device, inference-ness, requires_grad)
    and Forge's patch state (patchers, their LoRA patches and options, the LoRA loader's backups and hash)."""
    import torch

    tensors = {}
    with torch.inference_mode():
        for part, module in engine.modules_for_tests().items():
            for key, tensor in [*module.named_parameters(), *module.named_buffers()]:
                # a copy: .numpy() of the tensor itself would mark its storage for good as not resizable
                data = tensor.detach().to("cpu", copy=True).contiguous().view(torch.uint8).numpy().tobytes()
                tensors[f"{part}.{key}"] = (
                    id(tensor),
                    data,
                    tensor.dtype,
                    tensor.device,
                    tensor.is_inference(),
                    tensor.requires_grad,
                )
    objects = engine.forge_objects
    patchers = [objects.unet, objects.clip.patcher, engine.forge_objects_after_applying_lora.unet]
    loaders = [objects.unet.model.lora_loader, objects.clip.patcher.model.lora_loader]
    patch_state = (
        [id(p) for p in patchers],
        [repr(p.lora_patches) for p in patchers],
        [repr(p.model_options) for p in patchers],
        [(loader.loaded_hash, {k: id(v) for k, v in loader.backup.items()}) for loader in loaders],
        engine.current_lora_hash,
        [layer.__dict__.get("forge_online_loras") is not None for layer in objects.unet.model.modules()],
    )
    return {"tensors": tensors, "patch_state": patch_state}


def _host():
    from lora_ext.hosts.forge import ForgeHost

    return ForgeHost()


@pytest.mark.parametrize(("layout", "text_encoder"), [("sd1", False), ("sd1", True), ("sdxl", False), ("sdxl", True)])
def test_training_on_forge_s_loaded_model_hands_model_and_patch_state_back_exactly(
    forge, tmp_path, layout, text_encoder
):
    import torch
    from modules import call_queue

    engine = _load(forge, layout)
    merged_key = _merge_forge_lora(engine)
    kmodel = engine.forge_objects.unet.model
    clean = kmodel.lora_loader.backup[merged_key]
    seen_weights = []
    host = _host()
    real_predict = host.predict

    def predict(*args):  # what the UNet holds while training: ordinary tensors, the merged LoRA left out
        weight = dict(kmodel.named_parameters())[merged_key]
        seen_weights.append((weight.is_inference(), torch.equal(weight, clean)))
        return real_predict(*args)

    host.predict = predict
    before = _state(engine)
    assert all(inference for _, _, _, _, inference, _ in before["tensors"].values())
    seen, previews = [], []
    events = TrainEvents(
        on_progress=lambda info: seen.append(call_queue.queue_lock.locked()),
        on_sample=lambda images, paths: previews.append(paths),
    )
    config = _config(
        make_dataset(tmp_path / "data", 2),
        train_text_encoder=text_encoder,
        sample_prompts="a cat --w 64 --h 64 --s 2",
        sample_every_n_steps=2,
    )
    result = train_lora(host, config, events)
    assert result.status == "finished" and result.path.is_file() and result.steps == 4
    assert seen_weights and set(seen_weights) == {(False, True)}
    assert seen and all(seen)
    assert len(previews) >= 2 and all(path.is_file() for paths in previews for path in paths)  # steps 2 and 4
    assert _state(engine) == before
    from safetensors.torch import load_file

    keys = load_file(str(result.path)).keys()
    assert any(".attn1.to_q." in k or "_attn1_to_q." in k for k in keys)  # ForgeOperations.Linear layers trained
    assert any(k.startswith("lora_te") for k in keys) == text_encoder
    if layout == "sdxl" and text_encoder:
        assert any(k.startswith("lora_te2_") for k in keys)


def test_a_preview_that_moves_the_model_is_re_checked_and_the_run_goes_on(forge, tmp_path, monkeypatch):
    """Forge's memory manager may unload and reload the UNet for a preview (new inference tensors)."""
    import torch
    from backend import memory_management
    from modules import processing

    engine = _load(forge)
    before = _state(engine)
    real = processing.process_images
    moves = []

    def process_images(p):
        with torch.inference_mode():  # another model needed the room: everything is moved out, then back in
            memory_management.unload_all_models()
        moves.append(len(memory_management.current_loaded_models))
        return real(p)

    monkeypatch.setattr(processing, "process_images", process_images)
    config = _config(
        make_dataset(tmp_path / "data", 2), sample_prompts="a cat --w 64 --h 64 --s 2", sample_every_n_steps=1
    )
    result = train_lora(_host(), config)
    assert result.status == "finished" and len(moves) >= 3
    after = _state(engine)
    assert after["patch_state"] == before["patch_state"]
    assert _values(after) == _values(before)  # every tensor bit-exact, same dtype/device, still inference tensors
    # the UNet and text encoders get their original tensor objects back (Forge itself moved the rest)
    ours = ("unet.diffusion_model.", "clip.")
    assert {k: v for k, v in after["tensors"].items() if k.startswith(ours)} == {
        k: v for k, v in before["tensors"].items() if k.startswith(ours)
    }


def test_the_checkpoint_stays_pinned_while_the_dropdown_changes_during_training(forge, tmp_path):
    from modules import sd_models, shared

    engine = _load(forge)
    other = add_checkpoint(forge, forge.make("sd1"), name="other")
    host = _host()
    seen = []
    real_generate = host.generate

    def generate(request):
        select_checkpoint(other)  # the user picks another checkpoint while the run goes on
        images = real_generate(request)
        seen.append(shared.sd_model is engine)
        return images

    host.generate = generate
    config = _config(
        make_dataset(tmp_path / "data", 1), sample_prompts="a cat --w 64 --h 64 --s 2", sample_every_n_steps=2
    )
    assert train_lora(host, config).status == "finished"
    assert seen and all(seen)  # every preview drew with the model being trained
    assert sd_models.model_data.forge_loading_parameters["checkpoint_info"] is other.sd_checkpoint_info  # kept
    _generate("a cat")
    assert shared.sd_model is other  # Forge loads the user's choice at the next generation, as it would


def test_cancel_and_an_error_mid_step_hand_the_model_back_exactly(forge, tmp_path):
    from modules import call_queue

    engine = _load(forge)
    _merge_forge_lora(engine)
    before = _state(engine)
    events = TrainEvents()
    events_progress = TrainEvents(on_progress=lambda info: events_progress.request_stop())
    cancelled = train_lora(_host(), _config(make_dataset(tmp_path / "data", 2)), events_progress)
    assert cancelled.status == "cancelled" and cancelled.steps < 4
    assert _state(engine) == before

    host = _host()
    calls = []
    real_predict = host.predict

    def predict(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_predict(*args)

    host.predict = predict
    with pytest.raises(RuntimeError, match="simulated"):
        train_lora(host, _config(make_dataset(tmp_path / "data", 2)), events)
    assert _state(engine) == before
    assert not call_queue.queue_lock.locked()


def _refusal(host) -> str:
    capabilities = host.capabilities()
    assert capabilities.can_train is False
    (reason,) = capabilities.reasons
    assert "\n" not in reason
    return reason


@pytest.mark.parametrize(
    ("storage", "engine", "expected"),
    [
        ("nf4", "sd1", "the UNet is stored as nf4 (Forge's “Diffusion in Low Bits”)"),
        ("gguf", "sd1", "the UNet is stored as GGUF (Forge's “Diffusion in Low Bits”)"),
        ("float8_e4m3fn", "sdxl", "the UNet is stored in fp8"),
        (None, "flux", "the loaded model is a Flux model; Train Tools trains LoRAs for SD1, SD2 and SDXL"),
    ],
)
def test_refusals_name_the_reason_in_one_line_and_touch_nothing(forge, tmp_path, storage, engine, expected):
    import torch
    from modules import call_queue

    dtype = getattr(torch, storage) if storage and storage.startswith("float8") else storage
    layout = "sdxl" if engine == "sdxl" else "sd1"
    model = add_checkpoint(forge, forge.make(layout), engine=engine, storage_dtype=dtype)
    select_checkpoint(model)
    if engine != "flux":
        _generate("a cat")
    else:
        from modules import sd_models

        sd_models.forge_model_reload()
    before = _state(model) if engine != "flux" else None
    host = _host()
    reason = _refusal(host)
    assert reason.startswith(expected)
    with pytest.raises(HostUnavailable, match=re.escape(expected)):
        train_lora(host, _config(make_dataset(tmp_path / "data", 1)))
    with pytest.raises(HostUnavailable, match="Forge cannot train right now: " + re.escape(expected)):
        with host.training_session(_config(tmp_path)):
            pass
    assert not call_queue.queue_lock.locked()
    if before is not None:
        assert _state(model) == before


def test_a_unet_in_cpu_swap_is_refused(forge, tmp_path):
    from backend import memory_management
    from modules import call_queue

    engine = _load(forge)
    before = _values(_state(engine))
    memory_management.unload_all_models()
    memory_management.fake_free_memory = 1_000_000  # the fake GPU now holds part of the tiny UNet only
    host = _host()
    with pytest.raises(
        HostUnavailable, match="cannot hold the training set-up: Forge keeps part of the UNet in CPU swap"
    ):
        train_lora(host, _config(make_dataset(tmp_path / "data", 1)))
    assert not call_queue.queue_lock.locked()
    assert _refusal(host).startswith("Forge keeps part of the UNet in CPU swap")  # and the Train section says so
    assert _values(_state(engine)) == before  # Forge moved it (its own loading), nothing of ours is left


def _values(state: dict) -> dict:
    """The state without tensor identities (for where Forge itself moved the model)."""
    return {key: value[1:] for key, value in state["tensors"].items()}


def test_before_the_first_generation_the_placeholder_is_refused_with_one_line(forge, tmp_path):
    from modules import shared

    assert isinstance(shared.sd_model, FakeInitialModel)
    host = _host()
    assert host.info.name == "no checkpoint loaded yet"
    assert _refusal(host) == (
        "Forge has not loaded the checkpoint yet (it loads on the first generation): generate one image, then train"
    )
    with pytest.raises(HostUnavailable, match="generate one image, then train"):
        train_lora(host, _config(make_dataset(tmp_path / "data", 1)))


def test_the_session_holds_one_copy_of_the_weights_as_ordinary_tensors_and_autograd_works(forge, tmp_path):
    import torch

    from lora_ext.host import Conditioning

    engine = _load(forge)
    before = _state(engine)
    unet = engine.forge_objects.unet.model.diffusion_model
    originals = list(unet.parameters())
    held = sum(p.untyped_storage().nbytes() for p in originals)
    host = _host()
    with host.training_session(_config(tmp_path)):
        current = list(unet.parameters())
        assert not any(p.is_inference() for p in current)
        # One copy of the weights: each original's storage is released while its ordinary copy is in use
        # (refilled from the copy on the way out), so the UNet holds as many bytes as before, not twice as many.
        assert all(p.untyped_storage().nbytes() == 0 for p in originals)
        assert sum(p.untyped_storage().nbytes() for p in current) == held
        cond = host.encode_prompts(["a cat"])
        latents = host.encode_images(torch.zeros(1, 3, 64, 64), torch.Generator().manual_seed(0))
        assert not cond.crossattn.is_inference() and not latents.is_inference()
        x = latents.clone().requires_grad_(True)
        host.predict(x, torch.tensor([10]), Conditioning(cond.crossattn)).sum().backward()
        assert x.grad is not None
    assert _state(engine) == before


@pytest.mark.parametrize("layout", ["sd1", "sdxl"])
def test_training_runs_through_forge_s_in_place_residual_blocks_with_or_without_checkpointing(forge, tmp_path, layout):
    """Forge's transformer blocks write ``x += n`` into what their norms read; its ``checkpoint()`` raises. Both
    ways of training go through them and give the same file; afterwards the blocks run as Forge wrote them."""
    import torch
    from backend.nn.unet import BasicTransformerBlock
    from safetensors.torch import load_file

    engine = _load(forge, layout)
    unet = engine.forge_objects.unet.model.diffusion_model
    blocks = [m for m in unet.modules() if isinstance(m, BasicTransformerBlock)]
    assert blocks and not any(block.checkpoint for block in blocks)
    dataset = make_dataset(tmp_path / "data", 2)
    files = {}
    for checkpointing in (False, True):
        config = _config(
            dataset, gradient_checkpointing=checkpointing, train_text_encoder=True, output_name=f"c{int(checkpointing)}"
        )
        result = train_lora(_host(), config)
        assert result.status == "finished"
        files[checkpointing] = load_file(str(result.path))
    assert files[False].keys() == files[True].keys()
    for key, tensor in files[False].items():
        torch.testing.assert_close(files[True][key], tensor, rtol=1e-5, atol=1e-7)
    assert not any(block.norm1._forward_pre_hooks or block.norm2._forward_pre_hooks for block in blocks)


def test_a_forge_model_layout_train_tools_does_not_know_is_refused_before_a_run_starts(forge, tmp_path):
    """``/host``'s ``can_train`` is checked against what a run needs, not assumed from the engine's class."""
    from lora_ext.hosts.forge import layout_reason

    engine = _load(forge)
    assert layout_reason(engine) is None and _host().capabilities().can_train
    encoders = engine.forge_objects.clip.cond_stage_model
    encoders.add_module("clip_x", encoders._modules.pop("clip_l"))  # a fork that names its encoder otherwise
    host = _host()
    assert _refusal(host) == (
        "Train Tools does not know this Forge's model layout: its text encoders are named ['clip_x'] (expected clip_l)"
    )
    with pytest.raises(HostUnavailable, match="does not know this Forge's model layout"):
        train_lora(host, _config(make_dataset(tmp_path / "data", 1)))
