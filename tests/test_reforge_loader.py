"""``<lora:…>`` on the fake reForge: our exact in-place merge on its inference-tensor weights, its Forge-style
built-in made inert the reForge way (patched clones dropped, its own merge unpatched) and switched back."""

from __future__ import annotations

import copy

import pytest
import torch
from fastapi import FastAPI
from forge import REFORGE_BUILTIN_KEY, REFORGE_ROOT, fake_forge, reforge_model
from loader_helpers import assert_a_replaced_file_is_seen_at_once, assert_one_line_per_cause, break_loader
from lora_files import adapter_tensors, lora_for_model, spell, write_lora
from webui import load_script

UNET_MODULE = "input_blocks.1.1.transformer_blocks.0.attn1.to_q"  # the module the fake built-in patches too
PREFIX = "lora_unet_" + UNET_MODULE.replace(".", "_")
TE_MODULE = "transformer.text_model.encoder.layers.0.self_attn.q_proj"
TE_PREFIX = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"


@pytest.fixture
def reforge(make_ldm_model, monkeypatch, tmp_path):
    with fake_forge(REFORGE_ROOT, monkeypatch) as forge:
        from modules import paths, script_callbacks, sd_models, shared

        monkeypatch.setattr(paths, "data_path", str(tmp_path / "webui"))
        lora_dir = tmp_path / "Lora"
        monkeypatch.setattr(shared.cmd_opts, "lora_dir", str(lora_dir))
        forge.tiny = make_ldm_model("sd1")
        model = reforge_model(copy.deepcopy(forge.tiny))
        model.sd_checkpoint_info = sd_models.CheckpointInfo("/m/tiny.safetensors", "tiny", shorthash="abcdef1234")
        forge.engine = shared.sd_model = model
        forge.lora_dir = lora_dir
        weight = forge.tiny.model.diffusion_model.get_submodule(UNET_MODULE).weight
        write_lora(lora_dir / "a.safetensors", spell(PREFIX, adapter_tensors("lora", weight, seed=1)))
        write_lora(lora_dir / "h.safetensors", spell(PREFIX, adapter_tensors("loha", weight, seed=2)))
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


def _weight(reforge) -> torch.Tensor:
    return reforge.engine.model.diffusion_model.get_submodule(UNET_MODULE).weight


def _snapshot(reforge) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in reforge.engine.model.named_parameters()}


def _our_merge(reforge, prompt: str) -> torch.Tensor:
    """Our loader on an ordinary (non-inference) copy of the same checkpoint, outside any WebUI."""
    from lora_ext.hosts.ldm import LdmHost
    from lora_ext.loading.loader import NetworkLoader

    model = copy.deepcopy(reforge.tiny)
    NetworkLoader.for_host(LdmHost(model, reforge.lora_dir)).prompt_hook(prompt)
    return model.model.diffusion_model.get_submodule(UNET_MODULE).weight.detach()


def _set_loader(value: str) -> None:
    from modules import shared

    from lora_ext.hosts.a1111_loader import SETTING_LOADER

    shared.opts.set(SETTING_LOADER, value)


def test_our_merge_on_inference_weights_equals_our_merge_elsewhere_and_restores_exactly(reforge):
    from modules import extra_networks

    assert extra_networks.extra_network_registry["lora"] is reforge.script.host.lora_takeover.network
    clean = _snapshot(reforge)
    assert _weight(reforge).is_inference()
    for prompt in ("a cat <lora:a:0.7>", "a cat <lora:h:0.5> <lora:a:-0.3>"):
        processed = _generate(prompt)
        assert processed.comments == "" and "a: " in processed.infotexts[0].split("Lora hashes: ")[1]
        assert _weight(reforge).is_inference()
        torch.testing.assert_close(_weight(reforge).detach(), _our_merge(reforge, prompt), rtol=1e-5, atol=1e-6)
    _generate("a cat")
    assert all(torch.equal(value, clean[key]) for key, value in _snapshot(reforge).items())
    _generate("a cat <lora:a:0.7>")
    _set_loader("Built-in")  # restores at once, outside inference mode
    assert all(torch.equal(value, clean[key]) for key, value in _snapshot(reforge).items())


def test_the_builtin_s_merge_is_undone_the_reforge_way_before_ours_and_it_works_again_after(reforge):
    engine = reforge.engine
    clean = _snapshot(reforge)
    _set_loader("Built-in")
    _generate("a cat <lora:x:1>")  # reForge's patcher merges a diff of ones, keeping its own backup
    assert reforge.networks.activations[-1] == {"x": 1.0}
    torch.testing.assert_close(_weight(reforge).detach(), clean[REFORGE_BUILTIN_KEY] + 1)
    assert engine.forge_objects_original.unet.backup  # shared by every clone
    _set_loader("Train Tools")
    _generate("a cat <lora:a:0.7>")
    torch.testing.assert_close(_weight(reforge).detach(), _our_merge(reforge, "a cat <lora:a:0.7>"))  # not + 1
    assert engine.current_lora_hash == "[]" and not engine.forge_objects_original.unet.backup
    assert engine.forge_objects_after_applying_lora.unet is engine.forge_objects_original.unet
    assert reforge.networks.loaded_networks == []
    _generate("a cat")
    assert all(torch.equal(value, clean[key]) for key, value in _snapshot(reforge).items())
    _set_loader("Built-in")
    _generate("a cat <lora:x:0.5>")
    torch.testing.assert_close(_weight(reforge).detach(), clean[REFORGE_BUILTIN_KEY] + 0.5)
    _generate("a cat")  # the built-in's own restore (ComfyUI's unpatch) is untouched by us
    assert all(torch.equal(value, clean[key]) for key, value in _snapshot(reforge).items())


def test_an_unchanged_request_checks_every_inference_weight_in_one_copy_and_sees_a_change(reforge):
    """reForge's weights have no version counter: a repeated request compares a few values of each weight, all
    gathered into one copy per device and dtype (on a GPU one wait per generation, not one per weight)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from lora_ext.formats.keymap import keymap_for_parts

    class Copies(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.to, torch.ops.aten._to_copy, torch.ops.aten.copy_):
                Copies.count += 1
            return func(*args, **(kwargs or {}))

    host = reforge.script.host
    write_lora(reforge.lora_dir / "all.safetensors", lora_for_model(keymap_for_parts(host.parts()), seed=3))
    _generate("a cat <lora:all:0.7>")
    patches = host.lora_takeover.loader.patches
    tracked = [state.param for state in patches._states.values()]
    assert len(tracked) > 20 and all(param.is_inference() for param in tracked)
    with Copies():
        assert patches.intact()
    assert Copies.count <= len({param.dtype for param in tracked})
    loader, reports = host.lora_takeover.loader, []
    apply = loader.apply
    loader.apply = lambda specs: reports.append(apply(specs)) or reports[-1]
    processed = _generate("a cat <lora:all:0.7>")
    assert processed.comments == "" and [report.unchanged for report in reports] == [True]
    with torch.inference_mode():
        tracked[-1].view(-1)[0] += 1  # written behind our back: the next check sees it
    assert not patches.intact()


def test_a_failing_loader_hands_the_generation_to_reforge_s_builtin_and_logs_one_line(reforge, monkeypatch, caplog):
    clean = _snapshot(reforge)
    _generate("a cat <lora:a:0.7>")  # ours first: its merge must be undone by the fault
    break_loader(monkeypatch, reforge.script.host.lora_takeover)
    with caplog.at_level("ERROR"):
        for _ in range(2):
            _generate("a cat <lora:x:1>")
            assert reforge.networks.activations[-1] == {"x": 1.0}
            torch.testing.assert_close(_weight(reforge).detach(), clean[REFORGE_BUILTIN_KEY] + 1)  # not + ours
    assert_one_line_per_cause(caplog)
    monkeypatch.undo()
    _generate("a cat")
    assert all(torch.equal(value, clean[key]) for key, value in _snapshot(reforge).items())


def test_a_lora_replaced_on_disk_under_the_same_token_gives_the_new_conditioning_at_once(reforge):
    te = reforge.tiny.cond_stage_model
    weight = getattr(te, "wrapped", te).get_submodule(TE_MODULE).weight

    def write(name, seed):
        tensors = adapter_tensors("lora", weight, seed=seed)
        write_lora(reforge.lora_dir / f"{name}.safetensors", spell(TE_PREFIX, tensors))

    assert_a_replaced_file_is_seen_at_once(_generate, write)
