"""Forge Neo on the fake (``tests/fake_forge`` with ``neo=True``): detected by its patcher, ``<lora:…>`` handed to
Neo's ComfyUI patcher as its own weight adapters (equal to our merge, removed exactly), a failure handed to Neo's
built-in, and training on Neo's loaded model that sees the clean checkpoint and hands everything back."""

from __future__ import annotations

import copy

import pytest
import torch
from fastapi import FastAPI
from forge import FORGE_ROOT, REFORGE_BUILTIN_KEY, add_checkpoint, fake_forge, select_checkpoint
from loader_helpers import assert_one_line_per_cause, break_loader
from lora_files import adapter_tensors, spell, write_lora
from train_support import make_dataset
from webui import load_script

from lora_ext.config import TrainConfig
from lora_ext.errors import HostUnavailable
from lora_ext.training.run import train_lora

UNET_MODULE = "input_blocks.1.1.transformer_blocks.0.attn1.to_q"
OUT_MODULE_SUFFIX = "attn1.to_q"
TE_MODULE = "transformer.text_model.encoder.layers.0.self_attn.q_proj"
TE_PREFIX = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"


def _kohya(module: str) -> str:
    return "lora_unet_" + module.replace(".", "_")


@pytest.fixture
def neo(make_ldm_model, monkeypatch, tmp_path):
    with fake_forge(FORGE_ROOT, monkeypatch, neo=True) as forge:
        from modules import paths, script_callbacks, shared

        monkeypatch.setattr(paths, "data_path", str(tmp_path / "webui"))
        monkeypatch.setattr(paths, "models_path", str(tmp_path / "webui" / "models"))
        forge.lora_dir = tmp_path / "webui" / "models" / "Lora"
        monkeypatch.setattr(shared.cmd_opts, "lora_dir", str(forge.lora_dir))
        forge.tiny = make_ldm_model("sd1")
        forge.engine = add_checkpoint(forge, copy.deepcopy(forge.tiny))
        select_checkpoint(forge.engine)
        unet = forge.tiny.model.diffusion_model
        q = unet.get_submodule(UNET_MODULE).weight
        te = getattr(forge.tiny.cond_stage_model, "wrapped", forge.tiny.cond_stage_model).get_submodule(TE_MODULE)
        write_lora(forge.lora_dir / "a.safetensors", spell(_kohya(UNET_MODULE), adapter_tensors("lora", q, seed=1)))
        write_lora(forge.lora_dir / "h.safetensors", spell(_kohya(UNET_MODULE), adapter_tensors("loha", q, seed=2)))
        write_lora(forge.lora_dir / "k.safetensors", spell(_kohya(UNET_MODULE), adapter_tensors("lokr", q, seed=3)))
        write_lora(forge.lora_dir / "t.safetensors", spell(TE_PREFIX, adapter_tensors("lora", te.weight, seed=4)))
        forge.script = load_script()
        script_callbacks.ui_settings_callback()
        script_callbacks.before_ui_callback()
        script_callbacks.app_started_callback(None, FastAPI())
        yield forge
        script_callbacks.script_unloaded_callback()


def _generate(prompt: str):
    from modules import processing

    p = processing.StableDiffusionProcessingTxt2Img(prompt=prompt, seed=3, steps=2, width=64, height=64)
    return processing.process_images(p)


def _weights(engine) -> dict[str, torch.Tensor]:
    objects = engine.forge_objects_original
    return {
        **{f"unet.{k}": v.detach().clone() for k, v in objects.unet.model.diffusion_model.named_parameters()},
        **{f"te.{k}": v.detach().clone() for k, v in objects.clip.cond_stage_model.clip_l.named_parameters()},
    }


def _our_merge(neo, prompt: str) -> dict[str, torch.Tensor]:
    from lora_ext.hosts.ldm import LdmHost
    from lora_ext.loading.loader import NetworkLoader

    model = copy.deepcopy(neo.tiny)
    NetworkLoader.for_host(LdmHost(model, neo.lora_dir)).prompt_hook(prompt)
    te = getattr(model.cond_stage_model, "wrapped", model.cond_stage_model)
    return {
        **{f"unet.{k}": v.detach() for k, v in model.model.diffusion_model.named_parameters()},
        **{f"te.{k}": v.detach() for k, v in te.named_parameters()},
    }


def test_neo_is_detected_by_its_patcher_and_gets_its_own_host(neo):
    from lora_ext.hosts.detect import WebUI, detect_webui
    from lora_ext.hosts.neo import NeoHost, NeoLoraTakeover

    assert detect_webui() is WebUI.NEO
    assert isinstance(neo.script.host, NeoHost)
    assert isinstance(neo.script.host.lora_takeover, NeoLoraTakeover)


@pytest.mark.parametrize(
    ("prompt", "adapters"),
    [
        ("a cat <lora:a:0.7>", {"LoRAAdapter"}),
        ("a cat <lora:h:0.5> <lora:k:-0.8>", {"LoHaAdapter", "LoKrAdapter"}),
        ("a cat <lora:t:0.9> <lora:a:0.3:0.6>", {"LoRAAdapter"}),
    ],
)
def test_lora_through_neo_s_patcher_as_its_weight_adapters_equals_our_merge_and_is_removed_exactly(
    neo, prompt, adapters
):
    clean = _weights(neo.engine)
    processed = _generate(prompt)
    assert processed.comments == "" and neo.engine.current_lora_hash.startswith("train_tools:")
    unet = neo.engine.forge_objects_after_applying_lora.unet
    assert {type(patch[1]).__name__ for patches in unet.patches.values() for patch in patches} == adapters
    merged, expected = _weights(neo.engine), _our_merge(neo, prompt)
    assert any(not torch.equal(merged[key], clean[key]) for key in clean)
    for key, value in expected.items():
        torch.testing.assert_close(merged[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert neo.networks.activations == []
    _generate("a cat")  # no token: Neo's patcher puts its backups back
    after = _weights(neo.engine)
    assert all(torch.equal(after[key], clean[key]) for key in clean)


def test_a_failing_loader_hands_the_generation_to_neo_s_builtin_and_logs_one_line(neo, monkeypatch, caplog):
    from lora_ext.loading.loader import NetworkLoader

    clean = _weights(neo.engine)
    _generate("a cat <lora:a:0.7>")
    break_loader(monkeypatch, NetworkLoader, "patch_list")
    with caplog.at_level("ERROR"):
        for _ in range(2):
            _generate("a cat <lora:x:1>")
            assert neo.networks.activations[-1] == {"x": 1.0}
            key = "unet." + REFORGE_BUILTIN_KEY.removeprefix("diffusion_model.")
            torch.testing.assert_close(_weights(neo.engine)[key], clean[key] + 1)  # the built-in's diff, not ours
    assert_one_line_per_cause(caplog)


def test_an_engine_we_do_not_handle_goes_to_neo_s_builtin(neo):
    from modules import extra_networks, processing

    model = add_checkpoint(neo, copy.deepcopy(neo.tiny), name="flux", engine="flux")
    p = processing.StableDiffusionProcessingTxt2Img(sd_model=model, prompt="a cat")
    neo.script.host.lora_takeover.activate(p, [extra_networks.ExtraNetworkParams(items=["a", "0.8"])])
    assert neo.networks.activations == [{"a": 0.8}]


def _config(dataset, **changes) -> TrainConfig:
    values = dict(dataset_dir=str(dataset), resolution=64, min_bucket_reso=64, max_bucket_reso=128, rank=2)
    values.update(alpha=2.0, max_steps=3, lr_scheduler="constant", warmup_ratio=0.0, default_repeats=1, seed=3)
    values.update(save_dtype="fp32", train_text_encoder=True)
    values.update(changes)
    return TrainConfig(**values)


def _tensors(engine) -> dict:
    """Every tensor Neo holds for the model: object, bytes, dtype, inference-ness, requires_grad."""
    tensors = {}
    with torch.inference_mode():
        for part, module in engine.modules_for_tests().items():
            for key, tensor in [*module.named_parameters(), *module.named_buffers()]:
                data = tensor.detach().to("cpu", copy=True).contiguous().view(torch.uint8).numpy().tobytes()
                tensors[f"{part}.{key}"] = (id(tensor), data, tensor.dtype, tensor.is_inference(), tensor.requires_grad)
    return tensors


def test_training_on_neo_s_model_sees_the_clean_checkpoint_and_hands_everything_back(neo, tmp_path):
    from safetensors.torch import load_file

    dataset = make_dataset(tmp_path / "data", 2)
    _generate("a cat")
    clean = train_lora(neo.script.host, _config(dataset, output_name="clean")).path
    _generate("a cat <lora:a:0.7> <lora:t:0.9>")  # Neo merged them: its backups hold the originals
    unet = neo.engine.forge_objects.unet
    assert unet.backup and unet.model.current_weight_patches_uuid == unet.patches_uuid
    before = (_tensors(neo.engine), dict(unet.patches), unet.patches_uuid, set(unet.backup))
    after_lora = train_lora(neo.script.host, _config(dataset, output_name="after")).path
    assert (_tensors(neo.engine), dict(unet.patches), unet.patches_uuid, set(unet.backup)) == before
    first, second = load_file(str(clean)), load_file(str(after_lora))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_online_loras_are_set_aside_for_the_run_and_put_back(neo, tmp_path, monkeypatch):
    from backend.args import dynamic_args

    monkeypatch.setattr(dynamic_args, "online_lora", True)
    _generate("a cat <lora:a:0.7>")
    layer = neo.engine.forge_objects.unet.model.diffusion_model.get_submodule(UNET_MODULE)
    held = layer.__dict__["weight_function"]
    host = neo.script.host
    seen = []
    real_predict = host.predict

    def predict(*args):
        seen.append("weight_function" in layer.__dict__)
        return real_predict(*args)

    host.predict = predict
    assert train_lora(host, _config(make_dataset(tmp_path / "data", 1), train_text_encoder=False)).status == "finished"
    assert seen and not any(seen)
    assert layer.__dict__["weight_function"] is held


def test_a_unet_partly_offloaded_by_neo_s_memory_manager_is_refused(neo, tmp_path):
    from backend import memory_management

    _generate("a cat")
    memory_management.unload_all_models()
    memory_management.fake_free_memory = 1_000_000
    host = neo.script.host
    with pytest.raises(HostUnavailable, match="Forge Neo keeps part of the UNet in CPU swap"):
        train_lora(host, _config(make_dataset(tmp_path / "data", 1)))


def test_training_on_a_neo_sdxl_model_trains_both_text_encoders_and_hands_the_model_back(neo, tmp_path, make_ldm_model):
    from safetensors.torch import load_file

    engine = add_checkpoint(neo, make_ldm_model("sdxl"), name="xl", engine="sdxl")
    select_checkpoint(engine)
    _generate("a cat")
    assert neo.script.host.info.family == "sdxl" and neo.script.host.capabilities().can_train
    before = _tensors(engine)
    result = train_lora(neo.script.host, _config(make_dataset(tmp_path / "data", 2), output_name="xl"))
    assert result.status == "finished" and _tensors(engine) == before
    keys = load_file(str(result.path)).keys()
    assert any(k.startswith("lora_te1_") for k in keys) and any(k.startswith("lora_te2_") for k in keys)
